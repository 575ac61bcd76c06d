"""Functions run locally as on Lambda: imported once, given a context, stopped at their Timeout."""

import concurrent.futures
import os

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


ENVIRONMENT_CODE = """\
import os

TABLE_AT_IMPORT = os.environ["TABLE_NAME"]

def handler(event, context):
    if "set" in event:
        os.environ["WRITTEN"] = event["set"]
    return {
        "at_import": TABLE_AT_IMPORT,
        "at_call": os.environ.get("TABLE_NAME"),
        "series": os.environ.get("SERIES_TABLE"),
        "written": os.environ.get("WRITTEN"),
        "region": os.environ.get("AWS_REGION"),
    }
"""


def test_each_function_reads_its_own_environment_at_import_and_at_call(tmp_path, pool, monkeypatch):
    # On Lambda two functions never see each other's variables; here they share a process.
    monkeypatch.setenv("AWS_REGION", "eu-west-1")  # the process's own, as Lambda's AWS_ ones
    counter = function(
        tmp_path,
        pool,
        logical_id="CounterFunction",
        code=ENVIRONMENT_CODE,
        environment={"TABLE_NAME": "counts"},
    )
    aggregator = function(
        tmp_path,
        pool,
        logical_id="AggregatorFunction",
        code=ENVIRONMENT_CODE,
        environment={"TABLE_NAME": "series", "SERIES_TABLE": "series"},
    )

    counter.invoke({}, "r1")  # both cold starts, one after the other
    aggregator.invoke({"set": "by the aggregator"}, "r2")
    seen = counter.invoke({}, "r3")

    assert seen == {
        "at_import": "counts",
        "at_call": "counts",
        "series": None,
        "written": None,
        "region": "eu-west-1",
    }
    assert aggregator.invoke({}, "r4")["at_call"] == "series"
    assert aggregator.invoke({}, "r5")["written"] == "by the aggregator"
    assert "TABLE_NAME" not in os.environ and "WRITTEN" not in os.environ  # the process's own


def test_a_cold_start_after_a_timeout_starts_from_the_functions_variables(tmp_path, pool):
    written = function(tmp_path, pool, code=ENVIRONMENT_CODE, environment={"TABLE_NAME": "t"})
    assert written.invoke({"set": "before"}, "r1")["written"] == "before"
    written.reset()
    assert written.invoke({}, "r2")["written"] is None
