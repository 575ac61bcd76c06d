"""The counter in front of a Lambda function: invoked over real sockets through the local
stack's Invoke emulation (local/invoke.py), the table in moto."""

import base64
import concurrent.futures
import json

import pytest

from local.invoke import InvokeServer, file_backend_spec
from local.router import TemplateError
from local.runtime import Function
from tests.conftest import (
    ROOT,
    YEAR_END,
    api_event,
    lambda_context,
    load_module,
    read_item,
    stop_wall_clock,
)

DOWNSTREAM = """\
import base64
import json
import time

calls = []


def handler(event, context):
    calls.append(event["path"])
    if event["path"] == "/raise":
        raise ValueError("downstream broke")
    if event["path"] == "/slow":
        time.sleep(2)
    if event["path"] == "/png":
        png = base64.b64encode(b"\\x89PNG\\r\\n\\x1a\\n").decode()
        return {"statusCode": 200, "headers": {"Content-Type": "image/png"},
                "body": png, "isBase64Encoded": True}
    return {
        "statusCode": 201,
        "headers": {"Content-Type": "application/json"},
        "multiValueHeaders": {"Set-Cookie": ["a=1", "b=2"]},
        "cookies": ["ignored-by-rest-apis=1"],
        "body": json.dumps({"seen": event}),
        "isBase64Encoded": False,
    }
"""


@pytest.fixture
def downstream(tmp_path):
    """The downstream function as `--param Backend=file:...` runs it, behind Lambda's API."""
    source = tmp_path / "downstream.py"
    source.write_text(DOWNSTREAM)
    spec = file_backend_spec(f"file:{source}", "us-east-1")
    spec.timeout = 5.0
    pool = concurrent.futures.ThreadPoolExecutor(4)
    server = InvokeServer(Function(spec, tmp_path / "code", pool))
    try:
        yield server
    finally:
        server.stop()
        pool.shutdown(wait=False)


@pytest.fixture
def counter(counter_table, downstream, monkeypatch):
    monkeypatch.setenv("BACKEND", downstream.function.spec.function_arn)
    monkeypatch.setenv("BACKEND_TIMEOUT_SECONDS", "3")
    monkeypatch.setenv("AWS_ENDPOINT_URL_LAMBDA", downstream.url)
    return load_module(ROOT / "handler" / "counter.py", "counter_with_lambda_backend")


def calls(server):
    return server.function._load().calls


def test_the_function_gets_the_very_event_and_its_answer_is_returned_as_is(
    counter, downstream, counter_table
):
    event = api_event("/users/42", "POST", query={"a": "1"}, body='{"x": 1}')

    result = counter.handler(event, lambda_context())

    assert result["statusCode"] == 201
    assert json.loads(result["body"])["seen"] == event
    assert result["multiValueHeaders"] == {"Set-Cookie": ["a=1", "b=2"]}
    assert result["cookies"] == ["ignored-by-rest-apis=1"]
    assert result["isBase64Encoded"] is False
    item = read_item(counter_table, "/users/42")
    assert item["s2xx"] == {"N": "1"} and item["lastStatus"] == {"N": "201"}


def test_a_base64_answer_passes_through(counter):
    result = counter.handler(api_event("/png"), lambda_context())

    assert result["isBase64Encoded"] is True
    assert base64.b64decode(result["body"]) == b"\x89PNG\r\n\x1a\n"


def test_a_function_that_raises_is_a_502_json_with_the_request_id(counter, capsys):
    context = lambda_context()

    result = counter.handler(api_event("/raise"), context)

    assert result["statusCode"] == 502
    body = json.loads(result["body"])
    assert body == {
        "error": "the backend function failed",
        "requestId": context.aws_request_id,
        "outcome": "counted",
    }
    line = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert "downstream broke" in line["detail"]


def test_a_function_past_the_counters_wait_is_a_504_and_invoked_once(counter, downstream):
    counter.BACKEND_TIMEOUT = 1  # the SDK client was built with 3 s: build it again
    counter.backend_function = counter.lambda_client(counter.BACKEND)

    result = counter.handler(api_event("/slow"), lambda_context())

    assert result["statusCode"] == 504
    assert calls(downstream).count("/slow") == 1


def test_the_count_header_and_the_rate_limit_apply_to_a_lambda_backend(
    counter_table, downstream, monkeypatch
):
    monkeypatch.setenv("BACKEND", downstream.function.spec.function_arn)
    monkeypatch.setenv("AWS_ENDPOINT_URL_LAMBDA", downstream.url)
    monkeypatch.setenv("RATE_LIMIT", "1")
    limited = load_module(ROOT / "handler" / "counter.py", "counter_limited_lambda")
    # RateLimit's window (60 s, from the epoch) on a stopped clock: the hits in one window
    stop_wall_clock(monkeypatch, limited, YEAR_END)
    asking = api_event("/once", headers={"X-Route-Count": "1", "Host": "h"})

    first = limited.handler(asking, lambda_context())
    second = limited.handler(asking, lambda_context())

    assert first["headers"]["X-Route-Count"] == "1"
    assert second["statusCode"] == 429
    assert calls(downstream) == ["/once"]


def test_a_function_past_its_own_timeout_is_a_504(counter, downstream):
    downstream.function.spec.timeout = 0.5

    result = counter.handler(api_event("/slow"), lambda_context())

    assert result["statusCode"] == 504
    assert json.loads(result["body"])["error"] == "the backend function timed out"


def test_an_unknown_function_is_a_502(counter, monkeypatch):
    counter.BACKEND = "arn:aws:lambda:us-east-1:123456789012:function:no-such-function"

    result = counter.handler(api_event("/x"), lambda_context())

    assert result["statusCode"] == 502
    assert json.loads(result["body"])["error"] == "the backend function could not be invoked"


def test_a_file_backend_is_found_from_where_deploy_sh_was_run(tmp_path, monkeypatch):
    (tmp_path / "my api.py").write_text("def main(event, context):\n    return {}\n")
    monkeypatch.setenv("ROUTE_COUNTER_CALLER_DIR", str(tmp_path))

    spec = file_backend_spec("file:my api.py:main", "eu-west-1")

    assert spec.handler == "index.main"
    assert spec.function_arn == "arn:aws:lambda:eu-west-1:123456789012:function:local-my-api"
    assert "def main" in spec.code
    with pytest.raises(TemplateError, match="no such file"):
        file_backend_spec("file:missing.py", "eu-west-1")
