"""Per-route rate limiting in the counter: exact under concurrency, one call per hit."""

import json
import time
from types import SimpleNamespace

import boto3
import pytest

from tests.conftest import (
    ROOT,
    api_event,
    lambda_context,
    load_module,
    read_item,
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
        sleep=time.sleep,  # the backoff between retries of a throttled write
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


def put_window(table: str, start: int, window_count: int, count: int = 7) -> None:
    """The /api item as another container left it: `window_count` hits in window `start`."""
    boto3.client("dynamodb").put_item(
        TableName=table,
        Item={
            "route": {"S": "/api"},
            "count": {"N": str(count)},
            "windowStart": {"N": str(start)},
            "windowCount": {"N": str(window_count)},
            "firstSeen": {"S": "2027-01-15T08:00:00Z"},
            "lastSeen": {"S": "2027-01-15T08:01:00Z"},
        },
    )


def test_a_container_clock_behind_a_started_window_counts_in_that_window(limited, counter_table):
    # Another container, its clock a little ahead, already started the next window: the
    # item's window is the truth, so the hit counts in it, under its limit.
    put_window(counter_table, int(T0) + WINDOW, window_count=LIMIT - 2)
    limited.now[0] = T0 + WINDOW - 0.5
    calls = update_calls(limited)

    results, calls_per_hit = [], []
    for _ in range(3):
        before = len(calls)
        results.append(hit(limited))
        calls_per_hit.append(len(calls) - before)

    assert [(r["statusCode"], b.get("count")) for r, b in results] == [
        (200, 8),
        (200, 9),
        (429, None),
    ]
    assert [r["headers"]["RateLimit-Remaining"] for r, _ in results] == ["1", "0", "0"]
    # That window ends 60.5 s from now.
    assert {r["headers"]["RateLimit-Reset"] for r, _ in results} == {"61"}
    assert results[2][0]["headers"]["Retry-After"] == "61"
    # The first hit learns the item's window (two calls); the next ones aim at it (one).
    assert calls_per_hit == [2, 1, 1]
    item = read_item(counter_table, "/api")
    assert (item["count"], item["windowCount"]) == ({"N": "9"}, {"N": str(LIMIT)})


def test_a_window_that_moves_under_every_try_gets_503_not_a_wrong_count(limited, counter_table):
    # Clocks straddling window boundaries, at the worst moments: before each of the
    # container's tries, another one starts a later window.
    moved = []

    def another_container_starts_a_window(**_):
        moved.append(1)
        put_window(counter_table, int(T0) + WINDOW * len(moved), window_count=1)

    limited.dynamodb.meta.events.register(
        "before-call.dynamodb.UpdateItem", another_container_starts_a_window
    )

    result, body = hit(limited)

    assert len(moved) == 3
    assert result["statusCode"] == 503
    assert result["headers"]["Retry-After"] == "1"
    assert body["outcome"] == "not counted"  # safe to retry
    assert body["requestId"]
    assert read_item(counter_table, "/api")["count"] == {"N": "7"}


def test_a_deleted_item_starts_over_whatever_the_container_remembers(limited, counter_table):
    for _ in range(3):
        hit(limited)
    boto3.client("dynamodb").delete_item(TableName=counter_table, Key={"route": {"S": "/api"}})

    result, body = hit(limited)

    assert (result["statusCode"], body["count"]) == (200, 1)
    assert result["headers"]["RateLimit-Remaining"] == str(LIMIT - 1)


def calls_per_window(limited, monkeypatch, containers: int, hits_per_window: int) -> list[int]:
    """Calls in each of 4 windows, `containers` taking turns at hits spread over each."""
    counters = [limited] + [
        limited_counter(monkeypatch, f"counter_limited_{n}") for n in range(1, containers)
    ]
    calls = []
    for counter in counters:
        counter.now = limited.now
        calls.append(update_calls(counter))
    per_window = []
    for window in range(4):
        before = sum(map(len, calls))
        for i in range(hits_per_window):
            limited.now[0] = T0 + window * WINDOW + i * (WINDOW - 1) / hits_per_window
            hit(counters[i % containers])
        per_window.append(sum(map(len, calls)) - before)
    return per_window


def test_containers_sharing_a_crowded_route_pay_one_call_more_per_window(limited, monkeypatch):
    per_window = calls_per_window(limited, monkeypatch, containers=5, hits_per_window=3 * LIMIT)

    # The first window: four containers new to the route guess wrong once each. After
    # that they know the route is crowded: one wrong guess a window, by its first hit.
    assert per_window == [3 * LIMIT + 4] + [3 * LIMIT + 1] * 3


def test_containers_sharing_a_route_under_its_limit_guess_from_its_rate(limited, monkeypatch):
    per_window = calls_per_window(limited, monkeypatch, containers=2, hits_per_window=LIMIT - 1)

    # After the first window, each container guesses right whether the other one already
    # started the window: the first hit of a window starts it, the second one counts.
    assert per_window == [LIMIT] + [LIMIT - 1] * 3


def test_a_route_one_container_serves_alone_costs_one_call_per_hit(limited):
    calls = update_calls(limited)
    for window in range(4):
        for i in range(3 * LIMIT):
            limited.now[0] = T0 + window * WINDOW + i * 3
            hit(limited)

    assert len(calls) == 4 * 3 * LIMIT


def test_remembered_routes_are_bounded_and_the_recent_ones_kept(limited, monkeypatch):
    monkeypatch.setattr(limited, "WINDOW_HINT_ROUTES", 3)
    calls = update_calls(limited)
    for path in ("/a", "/b", "/c", "/a", "/d"):  # /d makes four: the least recent goes
        hit(limited, path)
    limited.now[0] += 1

    calls_per_hit = {}
    for path in ("/a", "/c", "/b"):
        before = len(calls)
        hit(limited, path)
        calls_per_hit[path] = len(calls) - before

    assert len(limited.window_hint) == 3
    # /a was first seen, but seen again since, and /c is recent: their window is running,
    # one call. /b, the least recent, was forgotten: "new window" is a wrong guess.
    assert calls_per_hit == {"/a": 1, "/c": 1, "/b": 2}


def test_first_seen_stays_the_first_hits_time_across_windows(limited, counter_table):
    """Each hit moves lastSeen; firstSeen stays the first hit's, whichever update counts
    it: the one that starts a window or the one that counts in the running window."""
    calls = update_calls(limited)
    seen, offsets = [], (1, 2, WINDOW + 3, WINDOW + 4, 5 * WINDOW + 5)
    for offset in offsets:
        limited.now[0] = T0 + offset
        result, body = hit(limited)
        assert result["statusCode"] == 200
        seen.append((body["firstSeen"], body["lastSeen"]))

    starts = ["windowStart = :w" in c["UpdateExpression"] for c in calls]
    assert starts == [True, False, True, False, True]  # both updates, each more than once
    first = limited.iso(T0 + 1)
    assert seen == [(first, limited.iso(T0 + offset)) for offset in offsets]
    assert read_item(counter_table, "/api")["firstSeen"] == {"S": first}
