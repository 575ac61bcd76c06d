"""Functions run locally as on Lambda: imported once, given a context, stopped at their Timeout."""

import concurrent.futures

import pytest

from local.runtime import Function, FunctionSpec, FunctionTimeout

CODE = """\
import time

calls = 0  # module state: survives between invocations of one environment

def handler(event, context):
    global calls
    calls += 1
    if event.get("sleep"):
        time.sleep(event["sleep"])
    return {
        "calls": calls,
        "name": __name__,
        "remaining_ms": context.get_remaining_time_in_millis(),
        "function_name": context.function_name,
        "request_id": context.aws_request_id,
        "log_group": context.log_group_name,
        "log_stream": context.log_stream_name,
    }
"""


@pytest.fixture
def pool():
    with concurrent.futures.ThreadPoolExecutor(4) as executor:
        yield executor


def function(tmp_path, pool, **spec) -> Function:
    defaults = {"logical_id": "EchoFunction", "code": CODE, "timeout": 2.0}
    return Function(FunctionSpec(**{**defaults, **spec}), tmp_path, pool)


def test_code_is_imported_once_as_index_and_reused(tmp_path, pool):
    echo = function(tmp_path, pool, function_name="stack-EchoFunction-1", log_group="/my/logs")

    first = echo.invoke({}, "req-1")
    second = echo.invoke({}, "req-2")

    assert (first["calls"], second["calls"]) == (1, 2)
    assert first["name"] == "index"
    assert first["function_name"] == "stack-EchoFunction-1"
    assert (first["request_id"], second["request_id"]) == ("req-1", "req-2")
    assert first["log_group"] == "/my/logs"
    # As on Lambda, one log stream per execution environment, not one per invocation.
    assert first["log_stream"] == second["log_stream"]
    assert first["log_stream"].startswith("local/[$LATEST]")
    assert 0 < first["remaining_ms"] <= 2000


def test_two_functions_with_the_same_code_do_not_share_a_module(tmp_path, pool):
    one = function(tmp_path, pool, logical_id="OneFunction")
    two = function(tmp_path, pool, logical_id="TwoFunction")

    one.invoke({}, "a")
    one.invoke({}, "b")

    assert two.invoke({}, "c")["calls"] == 1


def test_a_handler_past_its_timeout_is_cut_off_and_the_next_call_is_a_cold_start(tmp_path, pool):
    slow = function(tmp_path, pool, timeout=0.2)
    warm = slow.invoke({}, "warm")

    with pytest.raises(FunctionTimeout, match=r"Task timed out after 0\.20 seconds"):
        slow.invoke({"sleep": 0.6}, "late")
    after = slow.invoke({}, "next")

    assert after["calls"] == 1  # a fresh module: the timed-out environment is gone
    assert after["log_stream"] != warm["log_stream"]  # and a new environment logs anew


def test_a_handler_setting_other_than_index_is_refused(tmp_path, pool):
    with pytest.raises(ValueError, match="index"):
        function(tmp_path, pool, handler="app.handler")
