"""Per-route rate limiting in the counter: exact under concurrency, one call per hit."""

import json
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace

import boto3
import pytest

from tests.conftest import (
    ROOT,
    api_event,
    lambda_context,
    load_module,
    read_item,
    table_definition,
)

LIMIT, WINDOW = 5, 60
T0 = 1_800_000_000.0  # a window start: 1_800_000_000 is a multiple of 60


def limited_counter(monkeypatch, name, limit=LIMIT, window=WINDOW):
    """The counter module deployed with RateLimit/RateLimitWindowSeconds, on a fake clock."""
    monkeypatch.setenv("RATE_LIMIT", str(limit))
    monkeypatch.setenv("RATE_LIMIT_WINDOW_SECONDS", str(window))
    module = load_module(ROOT / "handler" / "counter.py", name)
    module.now = [T0]
    clock = SimpleNamespace(
        time=lambda: module.now[0],
        monotonic=time.monotonic,
        strftime=time.strftime,
        gmtime=time.gmtime,
    )
    monkeypatch.setattr(module, "time", clock)
    return module


def update_calls(module) -> list[dict]:
    """Every UpdateItem the module's client sends, with its parameters."""
    calls = []
    module.dynamodb.meta.events.register(
        "provide-client-params.dynamodb.UpdateItem", lambda params, **_: calls.append(params)
    )
    return calls


def hit(module, path="/api"):
    result = module.handler(api_event(path), lambda_context())
    return result, json.loads(result["body"])


@pytest.fixture
def limited(counter_table, monkeypatch):
    return limited_counter(monkeypatch, "counter_limited")


def test_limit_serves_five_then_429_without_counting(limited, counter_table):
    limited.now[0] = T0 + 15.5
    served = [hit(limited) for _ in range(LIMIT)]
    refused, body = hit(limited)

    assert [r["statusCode"] for r, _ in served] == [200] * LIMIT
    assert [b["count"] for _, b in served] == [1, 2, 3, 4, 5]
    assert [r["headers"]["RateLimit-Remaining"] for r, _ in served] == ["4", "3", "2", "1", "0"]
    assert {r["headers"]["RateLimit-Limit"] for r, _ in served} == {"5"}
    assert {r["headers"]["RateLimit-Reset"] for r, _ in served} == {"45"}  # 60 - 15.5, rounded up

    assert refused["statusCode"] == 429
    assert refused["headers"]["Retry-After"] == "45"
    assert refused["headers"]["RateLimit-Remaining"] == "0"
    assert refused["headers"]["RateLimit-Reset"] == "45"
    assert refused["headers"]["Content-Type"] == "application/json"
    assert "rate limit of 5 hits per 60 s" in body["error"]
    assert "/api" in body["error"]
    item = read_item(counter_table, "/api")
    assert item["count"] == {"N": "5"}
    assert item["lastSeen"]["S"] == served[-1][1]["lastSeen"]


def test_the_next_window_serves_again(limited):
    for _ in range(LIMIT + 3):
        hit(limited)
    limited.now[0] = T0 + WINDOW  # first second of the next window

    result, body = hit(limited)

    assert result["statusCode"] == 200
    assert body["count"] == LIMIT + 1
    assert result["headers"]["RateLimit-Remaining"] == str(LIMIT - 1)
    assert result["headers"]["RateLimit-Reset"] == str(WINDOW)


def test_each_route_has_its_own_limit(limited):
    for _ in range(LIMIT):
        hit(limited, "/a")
    assert hit(limited, "/a")[0]["statusCode"] == 429
    assert hit(limited, "/b")[0]["statusCode"] == 200


def test_every_hit_is_one_call_in_a_window_and_when_it_rolls_over(limited):
    calls = update_calls(limited)

    hit(limited)  # new route: the window starts
    first = len(calls)
    hit(limited)  # same window, served
    second = len(calls) - first
    for _ in range(LIMIT):
        hit(limited)  # 3 served, then refused
    rest = len(calls) - first - second
    limited.now[0] += WINDOW
    hit(limited)  # the window rolls over
    rolled = len(calls) - first - second - rest
    limited.now[0] += 10 * WINDOW
    hit(limited)  # a route idle for ten windows
    idle = len(calls) - first - second - rest - rolled

    assert (first, second, rest, rolled, idle) == (1, 1, LIMIT, 1, 1)
    assert all("ConditionExpression" in c for c in calls)


def test_a_second_container_pays_one_extra_call_to_join_a_window_then_one_per_hit(
    limited, monkeypatch
):
    other = limited_counter(monkeypatch, "counter_limited_other")  # another Lambda container
    other.now = limited.now
    calls = update_calls(other)
    hit(limited)  # the first container starts the window

    results = [hit(other)[0]["statusCode"] for _ in range(LIMIT)]

    assert results == [200] * (LIMIT - 1) + [429]
    assert len(calls) == LIMIT + 1  # the first of them: 2 calls (its hint was stale)


def test_off_by_default_one_plain_update_and_no_rate_headers(counter, counter_table):
    calls = update_calls(counter)
    results = [counter.handler(api_event("/free"), lambda_context()) for _ in range(20)]

    assert {r["statusCode"] for r in results} == {200}
    assert len(calls) == 20
    assert not any("ConditionExpression" in c for c in calls)
    assert not any("RateLimit-Limit" in r["headers"] for r in results)
    assert read_item(counter_table, "/free")["count"] == {"N": "20"}


def test_turning_the_limit_on_keeps_earlier_counts(counter, counter_table, monkeypatch):
    for _ in range(3):
        counter.handler(api_event("/old"), lambda_context())
    limited = limited_counter(monkeypatch, "counter_turned_on")

    result, body = hit(limited, "/old")

    assert body["count"] == 4
    assert result["headers"]["RateLimit-Remaining"] == "4"


def test_a_refused_hit_is_logged_as_429(limited, capsys):
    for _ in range(LIMIT):
        hit(limited)
    capsys.readouterr()
    hit(limited)
    (line,) = capsys.readouterr().out.strip().splitlines()
    assert json.loads(line)["status"] == 429


@pytest.fixture
def server_counter(moto_server, template, monkeypatch):
    """The limited counter talking over HTTP to the moto server, on a fresh table.

    Its DynamoDB requests are atomic as on AWS (local/atomic_moto.py), while the 20
    client threads still interleave freely between their calls: the race the design
    must survive.
    """
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_server)
    name = f"rate-{uuid.uuid4().hex[:8]}"
    boto3.client("dynamodb").create_table(TableName=name, **table_definition(template))
    monkeypatch.setenv("TABLE_NAME", name)
    module = limited_counter(monkeypatch, "counter_on_server")
    return module, name


def burst(module, count=20):
    """`count` hits on one route released at the same instant from as many threads."""
    gate = threading.Barrier(count)

    def one(_):
        gate.wait()
        return hit(module, "/hot")

    with ThreadPoolExecutor(count) as pool:
        return list(pool.map(one, range(count)))


def test_twenty_simultaneous_hits_serve_exactly_the_limit(server_counter):
    module, table = server_counter
    module.now[0] = T0 + 30

    results = burst(module)

    served = [r for r, _ in results if r["statusCode"] == 200]
    refused = [r for r, _ in results if r["statusCode"] == 429]
    assert (len(served), len(refused)) == (LIMIT, 20 - LIMIT)
    assert sorted(r["headers"]["RateLimit-Remaining"] for r in served) == ["0", "1", "2", "3", "4"]
    assert sorted(b["count"] for r, b in results if r["statusCode"] == 200) == [1, 2, 3, 4, 5]
    for r in refused:
        assert r["headers"]["RateLimit-Remaining"] == "0"
        assert 1 <= int(r["headers"]["Retry-After"]) <= WINDOW
        assert r["headers"]["RateLimit-Reset"] == r["headers"]["Retry-After"]
    item = boto3.client("dynamodb").get_item(TableName=table, Key={"route": {"S": "/hot"}})
    assert item["Item"]["count"] == {"N": str(LIMIT)}

    # The next window: 20 more at once race to roll it over, and again exactly 5 win.
    module.now[0] = T0 + WINDOW + 1
    results = burst(module)

    assert sorted(r["statusCode"] for r, _ in results) == [200] * LIMIT + [429] * (20 - LIMIT)
    assert max(b.get("count", 0) for _, b in results) == 2 * LIMIT


def test_a_container_clock_behind_a_started_window_gets_503_not_a_wrong_count(
    limited, counter_table
):
    # Another container, its clock a little ahead, already started the next window.
    boto3.client("dynamodb").put_item(
        TableName=counter_table,
        Item={
            "route": {"S": "/api"},
            "count": {"N": "7"},
            "windowStart": {"N": str(int(T0) + WINDOW)},
            "windowCount": {"N": "1"},
            "firstSeen": {"S": "2027-01-15T08:00:00Z"},
            "lastSeen": {"S": "2027-01-15T08:01:00Z"},
        },
    )
    limited.now[0] = T0 + WINDOW - 0.01

    result, body = hit(limited)

    assert result["statusCode"] == 503
    assert result["headers"]["Retry-After"] == "1"
    assert body["requestId"]
    assert read_item(counter_table, "/api")["count"] == {"N": "7"}
