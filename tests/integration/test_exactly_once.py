"""A hit is counted at most once, whatever the network does between the function and DynamoDB.

The faults are injected at the transport: the handler's real boto3 client talks HTTP to a
real emulator (local/atomic_moto.py) through tools/faultproxy.py, which loses answers
after the emulator applied the write, holds them past the client's read timeout, answers
DynamoDB's 500 or throttling errors, or refuses connections. The proxy records which writes
reached the emulator, so each test checks that the stored count is exactly the number of
requests whose write reached it, once each, and that no 200 repeats a count. Every test
runs on the plain counter and on the rate-limited one (RateLimit > 0).
"""

import json
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import boto3
import pytest

from local.events import ApiInfo, build_event
from local.router import Router
from tests.conftest import ROOT, lambda_context, load_module, table_definition
from tools.faultproxy import DROP, SERVER_ERROR, STALL, THROTTLE, THROTTLE_RATE, FaultProxy

ROUTE = "/exact"
UNKNOWN = "the hit may have been counted"
BUSY = "the counter is busy, retry shortly"
CONCURRENT_HITS = 40


@dataclass
class Answer:
    status: int
    headers: dict
    body: dict
    writes: int  # UpdateItems the emulator applied while this request ran
    log: dict  # the request's one JSON log line
    request_id: str


@pytest.fixture(scope="module")
def router(template):
    return Router(template)


@pytest.fixture
def proxy(moto_server):
    with FaultProxy(moto_server) as proxy:
        yield proxy


@pytest.fixture
def table(moto_server, template, monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_server)
    client = boto3.client("dynamodb")
    name = f"exact-{uuid.uuid4().hex[:12]}"
    client.create_table(TableName=name, **table_definition(template))
    try:
        yield client, name
    finally:
        client.delete_table(TableName=name)


@pytest.fixture(params=[0, 1000], ids=["plain", "rate-limited"])
def deploy(request, table, proxy, monkeypatch):
    """A function that loads the counter fresh (a new container) behind the proxy."""
    _, name = table
    monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.url)
    monkeypatch.setenv("TABLE_NAME", name)
    monkeypatch.setenv("RATE_LIMIT", str(request.param))
    containers = []

    def new_container():
        containers.append(load_module(ROOT / "handler" / "counter.py", "counter_behind_proxy"))
        return containers[-1]

    return new_container


@pytest.fixture
def counter(deploy):
    return deploy()


def get(router, path=ROUTE) -> dict:
    """The event API Gateway sends for `GET path`."""
    return build_event(
        method="GET",
        target=path,
        headers=[("Host", "127.0.0.1:3000"), ("User-Agent", "curl/8.5.0")],
        body=b"",
        match=router.match("GET", path),
        api=ApiInfo(),
        source_ip="127.0.0.1",
    )


@pytest.fixture
def hit(router, proxy, capsys):
    def send(counter, path=ROUTE) -> Answer:
        event = get(router, path)
        context = lambda_context()
        capsys.readouterr()
        before = proxy.applied()
        result = counter.handler(event, context)
        writes = proxy.applied() - before
        (line,) = capsys.readouterr().out.splitlines()
        body = json.loads(result["body"])
        return Answer(
            result["statusCode"], result["headers"], body, writes, json.loads(line),
            context.aws_request_id,
        )  # fmt: skip

    return send


def stored_count(table) -> int:
    client, name = table
    item = client.get_item(TableName=name, Key={"route": {"S": ROUTE}}).get("Item")
    return int(item["count"]["N"]) if item else 0


def assert_exact(answers: list[Answer], table) -> None:
    """Stored = writes that reached DynamoDB, at most one per request, one per 200."""
    assert [a.writes for a in answers if a.status == 200] == [1] * sum(
        a.status == 200 for a in answers
    )
    assert all(a.writes <= 1 for a in answers), [(a.status, a.writes) for a in answers]
    assert stored_count(table) == sum(a.writes for a in answers)
    counts = [a.body["count"] for a in answers if a.status == 200]
    assert len(counts) == len(set(counts)), counts


def assert_unknown(answer: Answer, error_code: str) -> None:
    """The 503 that says the hit may have been counted, and its log line."""
    assert answer.status == 503
    assert answer.body == {"error": UNKNOWN, "outcome": "unknown", "requestId": answer.request_id}
    assert "Retry-After" not in answer.headers  # a blind retry may count the hit twice
    assert answer.headers["Content-Type"] == "application/json"
    assert answer.log["outcome"] == "unknown"
    assert answer.log["level"] == "ERROR"
    assert (answer.log["status"], answer.log["requestId"]) == (503, answer.request_id)
    assert answer.log["errorCode"] == error_code


def assert_not_counted(answer: Answer, error_code: str) -> None:
    """The 503 that says nothing was counted: retrying is safe."""
    assert answer.status == 503
    assert answer.body == {"error": BUSY, "outcome": "not counted", "requestId": answer.request_id}
    assert answer.headers["Retry-After"] == "1"
    assert answer.writes == 0
    assert (answer.log["outcome"], answer.log["errorCode"]) == ("not counted", error_code)


@pytest.mark.parametrize(
    ("fault", "error_code"),
    [
        (DROP, "ConnectionClosedError"),  # connection closed after the write, no answer
        (STALL, "ReadTimeoutError"),  # the answer comes after the 2 s read timeout
        (SERVER_ERROR, "InternalServerError"),  # DynamoDB's 500: may or may not be applied
    ],
)
def test_a_lost_answer_is_a_503_unknown_and_the_hit_counts_once(
    counter, proxy, hit, table, fault, error_code
):
    first = hit(counter)
    proxy.plan(fault)
    lost = hit(counter)
    after = [hit(counter), hit(counter)]

    assert lost.writes == 1  # the write reached DynamoDB, once: never retried
    assert_unknown(lost, error_code)
    assert [a.status for a in (first, *after)] == [200, 200, 200]
    assert [a.body["count"] for a in (first, *after)] == [1, 3, 4]  # the lost hit is in
    assert_exact([first, lost, *after], table)


@pytest.mark.parametrize("deploy", [1000], ids=["rate-limited"], indirect=True)
def test_a_lost_answer_after_a_failed_window_guess_counts_once(deploy, proxy, hit, table):
    # Only with RateLimit: a second container guesses wrong (its first conditional update
    # fails and returns the item), then the answer of the update that counts is lost.
    first = hit(deploy())
    second = deploy()
    proxy.plan("forward", DROP)

    lost = hit(second)
    after = hit(second)

    assert [f.status for f in proxy.forwarded[1:3]] == [400, 200]  # the guess, the write
    assert_unknown(lost, "ConnectionClosedError")
    assert (after.status, after.body["count"]) == (200, 3)
    assert_exact([first, lost, after], table)


def test_concurrent_hits_with_lost_answers_never_count_twice(counter, proxy, router, table):
    # 8 clients at once; DynamoDB's answer to every 4th call is lost after it reached it.
    proxy.plan(*[DROP if i % 4 == 3 else "forward" for i in range(CONCURRENT_HITS)])

    def one_hit(_):
        result = counter.handler(get(router), lambda_context())
        return result["statusCode"], json.loads(result["body"])

    with ThreadPoolExecutor(max_workers=8) as pool:
        answers = list(pool.map(one_hit, range(CONCURRENT_HITS)))

    counted = [body["count"] for status, body in answers if status == 200]
    unknown = [body for status, body in answers if body.get("outcome") == "unknown"]
    dropped = [f for f in proxy.forwarded if f.action == DROP]
    assert len(counted) + len(unknown) == CONCURRENT_HITS
    assert len(unknown) == len(dropped) == CONCURRENT_HITS // 4  # each loss ends one request
    # Every applied write is a 200's or a lost answer's (with RateLimit, a lost answer may
    # also be a failed condition, which wrote nothing): none was sent twice.
    applied_and_lost = sum(f.status == 200 for f in dropped)
    assert proxy.applied() == len(counted) + applied_and_lost
    assert stored_count(table) == proxy.applied()
    assert len(set(counted)) == len(counted)  # no 200 repeats a count


def test_throttling_is_retried_and_counts_once(counter, proxy, hit, table):
    proxy.plan(THROTTLE, THROTTLE_RATE)  # two throttled attempts, then DynamoDB answers

    answer = hit(counter)

    assert (answer.status, answer.body["count"], answer.writes) == (200, 1, 1)
    assert_exact([answer], table)


def test_throttled_on_every_attempt_is_a_503_that_counted_nothing(counter, proxy, hit, table):
    proxy.plan(THROTTLE, THROTTLE, THROTTLE)

    busy = hit(counter)
    after = hit(counter)

    assert_not_counted(busy, "ProvisionedThroughputExceededException")
    assert (after.status, after.body["count"]) == (200, 1)
    assert_exact([busy, after], table)
    assert len(proxy.forwarded) == 1  # the three throttled attempts never reached it


def test_a_refused_connection_is_retried_and_counts_once(counter, proxy, hit, table):
    attempts = []

    def listen_again_at_the_third_attempt(**_):
        attempts.append(1)
        if len(attempts) == 3:
            proxy.listen()

    counter.dynamodb.meta.events.register(
        "before-send.dynamodb.UpdateItem", listen_again_at_the_third_attempt
    )
    proxy.refuse()

    answer = hit(counter)

    assert len(attempts) == 3
    assert (answer.status, answer.body["count"]) == (200, 1)
    assert_exact([answer], table)


def test_refused_on_every_attempt_is_a_503_that_counted_nothing(counter, proxy, hit, table):
    proxy.refuse()
    busy = hit(counter)
    proxy.listen()
    after = hit(counter)

    assert_not_counted(busy, "EndpointConnectionError")
    assert (after.status, after.body["count"]) == (200, 1)
    assert_exact([busy, after], table)


def test_no_credentials_is_a_500_and_nothing_is_sent(table, proxy, hit, monkeypatch, tmp_path):
    # A permanent fault on our side: "retry shortly" would be a lie.
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    for name in ("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_CONTAINER_CREDENTIALS_FULL_URI"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")  # and no instance metadata
    monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.url)
    monkeypatch.setenv("TABLE_NAME", table[1])
    monkeypatch.setattr(boto3, "DEFAULT_SESSION", None)  # a new container's boto3
    counter = load_module(ROOT / "handler" / "counter.py", "counter_without_credentials")

    answer = hit(counter)

    assert answer.status == 500
    assert answer.body == {
        "error": "counter unavailable",
        "outcome": "not counted",
        "requestId": answer.request_id,
    }
    assert "Retry-After" not in answer.headers
    assert (answer.log["errorCode"], answer.log["outcome"]) == ("NoCredentialsError", "not counted")
    assert proxy.forwarded == []
