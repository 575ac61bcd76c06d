"""AWS faults reach the caller as a clear 5xx JSON answer, and the next request is served.

Throttling and denied access are injected with botocore's Stubber on the handler's own
client; timeouts are raised where the HTTP request would leave (before-send), so the
handler's real retry logic runs; a missing table is a real moto table that was deleted.
The same faults at the transport, against a real emulator: tests/integration/test_exactly_once.py.
"""

import json
import time

import boto3
import pytest
from botocore.awsrequest import AWSResponse
from botocore.exceptions import ConnectTimeoutError, ReadTimeoutError
from botocore.stub import Stubber

from tests.conftest import ROOT, api_event, lambda_context, load_module, on_send, table_definition

BUSY = "the counter is busy, retry shortly"
UNAVAILABLE = "counter unavailable"
UNKNOWN = "the hit may have been counted"


def call(counter, path="/faulty"):
    context = lambda_context()
    result = counter.handler(api_event(path), context)
    return result, json.loads(result["body"]), context.aws_request_id


def log_lines(capsys) -> list[dict]:
    return [json.loads(line) for line in capsys.readouterr().out.splitlines()]


def assert_fault_answer(result, body, request_id, status, message, outcome="not counted"):
    assert result["statusCode"] == status
    assert result["headers"]["Content-Type"] == "application/json"
    assert body == {"error": message, "outcome": outcome, "requestId": request_id}
    assert "Traceback" not in result["body"]
    assert "Exception" not in result["body"]


def assert_one_error_line(capsys, request_id, status, code, outcome="not counted"):
    lines = log_lines(capsys)
    assert len(lines) == 1
    (line,) = lines
    assert line["level"] == "ERROR"
    assert line["outcome"] == outcome
    assert line["errorCode"] == code
    assert line["status"] == status
    assert line["requestId"] == request_id
    assert line["route"] == "/faulty"


def assert_next_request_counts(counter, expected_count=1):
    result, body, _ = call(counter)
    assert result["statusCode"] == 200
    assert (body["route"], body["count"]) == ("/faulty", expected_count)


@pytest.mark.parametrize(
    "code",
    ["ProvisionedThroughputExceededException", "ThrottlingException", "RequestLimitExceeded"],
)
def test_throttling_on_every_attempt_is_a_503_with_retry_after(counter, capsys, monkeypatch, code):
    monkeypatch.setattr(time, "sleep", lambda _: None)  # the handler's backoff, not waited
    with Stubber(counter.dynamodb) as stub:
        for _ in range(counter.ATTEMPTS):
            stub.add_client_error(
                "update_item", service_error_code=code, service_message="Rate exceeded"
            )
        result, body, request_id = call(counter)
        stub.assert_no_pending_responses()  # all three attempts were made

    assert_fault_answer(result, body, request_id, 503, BUSY)
    assert result["headers"]["Retry-After"] == "1"
    assert "Rate exceeded" not in result["body"]
    assert_one_error_line(capsys, request_id, 503, code)
    assert_next_request_counts(counter)


def test_denied_access_is_a_500_without_retry_after(counter, capsys):
    with Stubber(counter.dynamodb) as stub:
        stub.add_client_error(
            "update_item",
            service_error_code="AccessDeniedException",
            service_message="User is not authorized to perform: dynamodb:UpdateItem",
        )
        result, body, request_id = call(counter)

    assert_fault_answer(result, body, request_id, 500, UNAVAILABLE)
    assert "Retry-After" not in result["headers"]
    assert "not authorized" not in result["body"]
    assert_one_error_line(capsys, request_id, 500, "AccessDeniedException")
    assert_next_request_counts(counter)


def test_missing_table_is_a_500_and_counting_resumes_when_it_is_back(
    counter, counter_table, template, capsys
):
    dynamodb = boto3.client("dynamodb")
    dynamodb.delete_table(TableName=counter_table)

    result, body, request_id = call(counter)

    assert_fault_answer(result, body, request_id, 500, UNAVAILABLE)
    assert_one_error_line(capsys, request_id, 500, "ResourceNotFoundException")
    dynamodb.create_table(TableName=counter_table, **table_definition(template))
    assert_next_request_counts(counter)


@pytest.mark.parametrize(
    ("timeout", "attempts", "status", "message", "outcome"),
    [
        # Nothing was sent: retried, then "busy", nothing counted.
        (ConnectTimeoutError, 3, 503, BUSY, "not counted"),
        # Sent, answer not read in time: the write may have been applied. Never retried.
        (ReadTimeoutError, 1, 503, UNKNOWN, "unknown"),
    ],
)
def test_timeouts(counter, capsys, monkeypatch, timeout, attempts, status, message, outcome):
    sent = []

    def network_times_out(request, **_):
        sent.append(request.url)
        raise timeout(endpoint_url=request.url)

    backoffs = []
    monkeypatch.setattr(time, "sleep", backoffs.append)  # the handler's backoff, not waited
    with on_send(counter.dynamodb, "UpdateItem", network_times_out):
        result, body, request_id = call(counter)

    assert len(sent) == attempts
    assert len(backoffs) == attempts - 1
    assert all(0 <= delay <= 1 for delay in backoffs)
    assert_fault_answer(result, body, request_id, status, message, outcome)
    assert ("Retry-After" in result["headers"]) == (outcome == "not counted")
    assert_one_error_line(capsys, request_id, status, timeout.__name__, outcome)
    assert_next_request_counts(counter)


class CutOffBody:
    """A body of which nothing arrived: the connection closed after the headers."""

    def stream(self, **_):
        return iter([b""])


def test_an_answer_cut_off_after_its_headers_is_a_503_unknown_not_a_crash(counter, capsys):
    # botocore reads a body without checking Content-Length, so a 200 whose body never
    # came parses as an answer without the item (seen when the emulator was killed).
    sent = []

    def answer_cut_off(request, **_):
        sent.append(request.url)
        return AWSResponse(request.url, 200, {"Content-Length": "180"}, CutOffBody())

    with on_send(counter.dynamodb, "UpdateItem", answer_cut_off):
        result, body, request_id = call(counter)

    assert len(sent) == 1  # sent: it may have been applied, so never retried
    assert_fault_answer(result, body, request_id, 503, UNKNOWN, "unknown")
    assert_one_error_line(capsys, request_id, 503, "AnswerCutOff", "unknown")
    # botocore emits before-send to every handler: moto's applied the write, then this
    # answer (the first one given) was used. So the hit was counted, as "unknown" allows.
    assert_next_request_counts(counter, expected_count=2)


def test_an_invalid_table_name_is_a_500_not_a_retry(counter_table, monkeypatch, capsys):
    monkeypatch.setenv("TABLE_NAME", "")  # a misconfigured function: botocore refuses it
    counter = load_module(ROOT / "handler" / "counter.py", "counter_without_table")

    result, body, request_id = call(counter)

    assert_fault_answer(result, body, request_id, 500, UNAVAILABLE)
    assert "Retry-After" not in result["headers"]
    assert_one_error_line(capsys, request_id, 500, "ParamValidationError")


@pytest.mark.parametrize("rate_limit", ["0", "5"])
def test_no_region_is_a_500_for_each_hit_not_a_crash(monkeypatch, tmp_path, capsys, rate_limit):
    """Lambda always sets AWS_REGION; anywhere else a missing one must not look transient."""
    for name in ("AWS_REGION", "AWS_DEFAULT_REGION"):
        monkeypatch.delenv(name, raising=False)
    empty = tmp_path / "empty-aws-config"
    empty.touch()
    monkeypatch.setenv("AWS_CONFIG_FILE", str(empty))
    monkeypatch.setenv("RATE_LIMIT", rate_limit)
    monkeypatch.setattr(boto3, "DEFAULT_SESSION", None)  # a new container's boto3
    counter = load_module(ROOT / "handler" / "counter.py", "counter_without_region")

    for _ in range(2):
        result, body, request_id = call(counter)
        assert_fault_answer(result, body, request_id, 500, UNAVAILABLE)
    (line, _) = log_lines(capsys)
    assert (line["errorCode"], line["outcome"]) == ("NoRegionError", "not counted")
