"""Backend monitoring (docs/monitoring.md): a backend's answers per route, per hour and day, exact.

Each hit is written by the counter's UpdateItem as docs/monitoring.md describes it for a stack
with a backend (its count, status class and latency in one write), into an in-process moto
table with a stream of either view; the records go through the aggregator as Lambda delivers
them, and the stats handler reads what it wrote.
"""

import collections
import json
import random
import re
import time

import boto3
import pytest
from aws_lambda_powertools.utilities.parser.models import DynamoDBStreamModel

from local.streams import stream_event
from tests.conftest import (
    ROOT,
    StreamTables,
    api_event,
    lambda_context,
    load_module,
    stream_records,
    tables_with_stream,
)
from tests.unit.test_aggregator import epoch, lose_the_first_answer, series_items

BOUNDS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 30000)
# (route, time, status the client got, backend latency in ms): latencies on and either side
# of the histogram's bounds, every class, two hours and two days.
ANSWERED = [
    ("/a", "2026-12-01T03:10:00Z", 200, 0),
    ("/a", "2026-12-01T03:11:00Z", 200, 1),
    ("/b", "2026-12-01T03:20:00Z", 404, 2),
    ("/a", "2026-12-01T03:59:59Z", 502, 3),
    ("/a", "2026-12-01T04:00:00Z", 301, 20),
    ("/b", "2026-12-01T04:30:00Z", 200, 21),
    ("/a", "2026-12-01T04:45:00Z", 504, 30000),
    ("/a", "2026-12-02T00:05:00Z", 200, 30001),
    ("/c", "2026-12-02T00:06:00Z", 503, 480),
    ("/c", "2026-12-02T00:07:00Z", 200, 500),
]


def bucket_of(ms: int) -> str:
    return next((f"le{b}" for b in BOUNDS if ms <= b), "leInf")


def expected(hits) -> dict:
    """(route, bucket) -> the answer attributes a bucket must hold: classes, ms, histogram;
    the all-routes items ("#all") too, the all-time one ("#all", "all") included."""
    want = collections.defaultdict(collections.Counter)
    for route, at, status, ms in hits:
        for who in (route, "#all"):
            buckets = [f"h#{at[:13]}", f"d#{at[:10]}"] + (["all"] if who == "#all" else [])
            for bucket in buckets:
                want[(who, bucket)].update({f"s{status // 100}xx": 1, bucket_of(ms): 1})
                want[(who, bucket)]["ms"] += ms
    return {key: dict(+counts) for key, counts in want.items()}


ANSWER_NAMES = re.compile(r"s[2-5]xx|ms|le[0-9]+|leInf")


def stored_answers(table: str) -> dict:
    """(route, bucket) -> the answer attributes each series item holds (top items aside)."""
    return {
        key: {n: int(v["N"]) for n, v in item.items() if ANSWER_NAMES.fullmatch(n)}
        for key, item in series_items(table).items()
        if key[0] != "#top"
    }


@pytest.fixture(params=["NEW_IMAGE", "NEW_AND_OLD_IMAGES"])
def tables(request, template: dict, monkeypatch: pytest.MonkeyPatch):
    """stream_tables (tests/conftest.py) with either stream view: the aggregator takes both."""
    with tables_with_stream(template, monkeypatch, request.param) as tables:
        yield tables


@pytest.fixture
def aggregator(tables):
    return load_module(ROOT / "handler" / "aggregator.py", "aggregator_for_monitoring")


@pytest.fixture
def stats(tables):
    return load_module(ROOT / "handler" / "stats.py", "stats_for_monitoring")


def answer_hit(table: str, route: str, at: str, status: int, ms: int, client=None) -> None:
    """The counter's one write for a hit answered by a backend (docs/monitoring.md)."""
    (client or boto3.client("dynamodb")).update_item(
        TableName=table,
        Key={"route": {"S": route}},
        UpdateExpression="ADD #count :one, #class :one, latencyMsTotal :ms SET lastSeen = :now,"
        " firstSeen = if_not_exists(firstSeen, :now), lastStatus = :status, lastLatencyMs = :ms",
        ExpressionAttributeNames={"#count": "count", "#class": f"s{status // 100}xx"},
        ExpressionAttributeValues={
            ":one": {"N": "1"},
            ":ms": {"N": str(ms)},
            ":now": {"S": at},
            ":status": {"N": str(status)},
        },
    )


def answered_records(tables: StreamTables, hits=ANSWERED) -> list[dict]:
    for route, at, status, ms in hits:
        answer_hit(tables.counter, route, at, status, ms)
    event = stream_event(stream_records(tables.stream_arn), tables.stream_arn)
    DynamoDBStreamModel.model_validate(event)  # the shape Lambda delivers
    return event["Records"]


def run(aggregator, records: list[dict]) -> None:
    result = aggregator.handler({"Records": records}, lambda_context("AggregatorFunction"))
    assert result == {"batchItemFailures": []}


def clear(table: str) -> None:
    client = boto3.client("dynamodb")
    for route, bucket in series_items(table):
        client.delete_item(TableName=table, Key={"route": {"S": route}, "bucket": {"S": bucket}})


def top_answers(table: str, bucket: str) -> dict:
    """route -> [value, answered, 4xx, 5xx, latency sum] of a top item."""
    item = series_items(table)[("#top", bucket)]
    return {r: [int(n["N"]) for n in v["L"]] for r, v in item["routes"]["M"].items()}


# --- The aggregator -------------------------------------------------------------------------


def test_each_answer_counts_once_by_class_latency_and_histogram_bucket_whatever_the_batches(
    aggregator, tables
):
    records = answered_records(tables)
    want = expected(ANSWERED)
    run(aggregator, list(reversed(records)))
    assert stored_answers(tables.series) == want
    batches = [records[i : i + 3] for i in range(0, len(records), 3)]
    shuffled = random.Random(7)  # noqa: S311 (a reproducible order, not a secret)
    for _ in range(3):  # split, reordered, each batch delivered twice
        clear(tables.series)
        order = batches * 2
        shuffled.shuffle(order)
        for batch in order:
            run(aggregator, list(reversed(batch)))
        assert stored_answers(tables.series) == want
    run(aggregator, records)  # a replay of everything adds nothing
    assert stored_answers(tables.series) == want
    # The route's hits are still its own count, answers or not.
    assert int(series_items(tables.series)[("/a", "d#2026-12-01")]["hits"]["N"]) == 5


def test_a_transaction_whose_answer_was_lost_adds_the_answers_once(aggregator, tables):
    """Applied, then its connection dropped before the answer: the SDK sends it again, the
    condition refuses it, the buckets are read again and found counted, answers included."""
    lost = lose_the_first_answer(aggregator)
    run(aggregator, answered_records(tables))
    assert lost
    assert stored_answers(tables.series) == expected(ANSWERED)


@pytest.mark.parametrize("tables", ["NEW_AND_OLD_IMAGES"], indirect=True)
def test_a_hit_that_recorded_no_answer_adds_none_though_its_image_shows_the_last_one(
    aggregator, tables
):
    """A count-first hit (a rate-limited stack, metering) writes no answer: its image still
    carries the previous hit's lastStatus and lastLatencyMs, which must not count twice.
    Only the old image tells (docs/monitoring.md)."""
    counter = load_module(ROOT / "handler" / "counter.py", "counter_for_monitoring")
    answer_hit(tables.counter, "/a", "2026-12-01T03:00:00Z", 500, 40)
    for second in range(1, 4):
        counter.count_hit("/a", epoch(f"2026-12-01T03:00:0{second}Z"), time.monotonic() + 4)
    run(aggregator, stream_event(stream_records(tables.stream_arn), tables.stream_arn)["Records"])
    answers = stored_answers(tables.series)
    assert answers[("/a", "h#2026-12-01T03")] == {"s5xx": 1, "ms": 40, "le50": 1}
    assert answers[("#all", "all")] == {"s5xx": 1, "ms": 40, "le50": 1}
    assert int(series_items(tables.series)[("/a", "h#2026-12-01T03")]["hits"]["N"]) == 4


def test_routes_counted_before_the_backend_add_the_answers_of_their_later_hits(aggregator, tables):
    """A stack given a backend: its routes' items already hold counts without answers."""
    counter = load_module(ROOT / "handler" / "counter.py", "counter_before_backend")
    for second in range(3):
        counter.count_hit("/a", epoch(f"2026-12-01T02:00:0{second}Z"), time.monotonic() + 4)
    run(aggregator, answered_records(tables, ANSWERED[:2]))
    answers = stored_answers(tables.series)
    assert answers[("/a", "h#2026-12-01T02")] == {}
    assert answers[("/a", "h#2026-12-01T03")] == {"s2xx": 2, "ms": 1, "le1": 2}
    assert answers[("#all", "all")] == {"s2xx": 2, "ms": 1, "le1": 2}


def test_without_a_backend_the_buckets_and_top_items_hold_what_they_did(aggregator, tables):
    counter = load_module(ROOT / "handler" / "counter.py", "counter_for_no_backend")
    for route, at, _, _ in ANSWERED:
        counter.count_hit(route, epoch(at), time.monotonic() + 4)
    run(aggregator, stream_event(stream_records(tables.stream_arn), tables.stream_arn)["Records"])
    for (route, _), item in series_items(tables.series).items():
        names = set(item) - {"route", "bucket", "expiresAt"}
        if route == "#top":
            assert names == {"routes", "leftOut", "version", "asOf"}
            assert all("N" in v for v in item["routes"]["M"].values())  # a count, no list
        else:
            assert names == ({"hits", "routes"} if route == "#all" else {"counted", "hits"})


def test_the_top_items_keep_each_routes_answers_exact_in_any_order(aggregator, tables):
    records = answered_records(tables)
    rng = random.Random(3)  # noqa: S311 (a reproducible order, not a secret)
    batches = [records[i : i + 4] for i in range(0, len(records), 4)] * 2
    rng.shuffle(batches)
    for batch in batches:
        run(aggregator, batch)
    # all time: [count, answered, 4xx, 5xx, latency sum] of the counter item
    assert top_answers(tables.series, "all") == {
        "/a": [6, 6, 0, 2, 0 + 1 + 3 + 20 + 30000 + 30001],
        "/b": [2, 2, 1, 0, 2 + 21],
        "/c": [2, 2, 0, 1, 480 + 500],
    }
    # a day: that day's hits and answers
    assert top_answers(tables.series, "d#2026-12-01") == {
        "/a": [5, 5, 0, 2, 0 + 1 + 3 + 20 + 30000],
        "/b": [2, 2, 1, 0, 23],
    }


def test_a_route_with_answers_takes_more_of_the_top_items_bytes(aggregator, tables):
    """Room for 3 routes of 100 bytes with counts alone, for 2 with their answers too."""
    entry = 100 + aggregator.TOP_ENTRY_BYTES
    aggregator.TOP_BYTES = 2 * (entry + aggregator.TOP_ANSWER_BYTES)
    assert aggregator.TOP_BYTES // entry == 3
    hits = [(f"/{i}" + "x" * 98, "2026-12-01T03:00:00Z", 200, 5) for i in range(3)]
    run(aggregator, answered_records(tables, [h for _ in range(3) for h in hits]))
    assert list(top_answers(tables.series, "all")) == [f"/{i}" + "x" * 98 for i in range(2)]


@pytest.mark.parametrize(
    ("ms", "bucket"),
    [
        (0, "le1"),
        (1, "le1"),
        (2, "le2"),
        (3, "le5"),
        (20, "le20"),
        (21, "le50"),
        (30000, "le30000"),
        (30001, "leInf"),
    ],
)
def test_a_latency_falls_in_the_bucket_of_the_first_bound_it_does_not_exceed(
    aggregator, ms, bucket
):
    assert aggregator.latency_bucket(ms) == bucket


# --- Stats JSON ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("counts", "want"),
    [
        ({"le1": 1}, {"p50": 1, "p90": 1, "p99": 1}),
        # 90 of 100 at most 10 ms: the 90th is in le10, the 91st and the 99th in le100
        ({"le10": 90, "le100": 10}, {"p50": 10, "p90": 10, "p99": 100}),
        ({"le10": 89, "le100": 11}, {"p50": 10, "p90": 100, "p99": 100}),
        # 2 answers: p50 is the 1st (nearest rank ceil(0.5 * 2)), p90 and p99 the 2nd
        ({"le5": 1, "le2000": 1}, {"p50": 5, "p90": 2000, "p99": 2000}),
        ({"le30000": 99, "leInf": 1}, {"p50": 30000, "p90": 30000, "p99": 30000}),
        ({"le30000": 98, "leInf": 2}, {"p50": 30000, "p90": 30000, "p99": None}),
    ],
)
def test_percentiles_are_the_upper_bound_of_the_nearest_ranks_bucket(stats, counts, want):
    item = {name: {"N": str(n)} for name, n in counts.items()}
    total = sum(counts.values())
    item |= {"s2xx": {"N": str(total)}, "ms": {"N": str(3 * total)}}
    latency = stats.answers(item)["latencyMs"]
    assert latency == {"mean": 3.0, **want}


def get(stats, path: str, query: dict) -> dict:
    result = stats.handler(api_event(path, query=query), lambda_context("StatsFunction"))
    assert result["statusCode"] == 200, result["body"]
    return json.loads(result["body"])


def test_series_points_carry_classes_and_latency_where_a_backend_answered(
    aggregator, stats, tables
):
    run(aggregator, answered_records(tables))
    query = {"route": "/a", "series": "hour", "from": "2026-12-01T02:00:00Z"}
    points = get(stats, "/_stats", {**query, "to": "2026-12-01T04:00:00Z"})["points"]
    assert points == [
        {"start": "2026-12-01T02:00:00Z", "count": 0},  # no hits: the shape of old
        {
            "start": "2026-12-01T03:00:00Z",
            "count": 3,
            "status": {"2xx": 2, "3xx": 0, "4xx": 0, "5xx": 1},
            "latencyMs": {"mean": round(4 / 3, 1), "p50": 1, "p90": 5, "p99": 5},
        },
        {
            "start": "2026-12-01T04:00:00Z",
            "count": 2,
            "status": {"2xx": 0, "3xx": 1, "4xx": 0, "5xx": 1},
            "latencyMs": {"mean": 15010.0, "p50": 20, "p90": 30000, "p99": 30000},
        },
    ]
    day = get(stats, "/_stats", {"series": "day", "from": "2026-12-02", "to": "2026-12-02"})
    (point,) = day["points"]  # all routes
    assert point["status"] == {"2xx": 2, "3xx": 0, "4xx": 0, "5xx": 1}
    assert point["latencyMs"] == {"mean": 10327.0, "p50": 500, "p90": None, "p99": None}


def test_a_routes_record_carries_its_answers_of_all_time(aggregator, stats, tables):
    answered_records(tables)
    assert get(stats, "/_stats", {"route": "/b"}) == {
        "route": "/b",
        "count": 2,
        "firstSeen": "2026-12-01T03:20:00Z",
        "lastSeen": "2026-12-01T04:30:00Z",
        "status": {"2xx": 1, "3xx": 0, "4xx": 1, "5xx": 0},
        "latencyMs": {"mean": 11.5},
    }


def test_top_routes_by_errors_and_by_latency_among_those_with_enough_answers(
    aggregator, stats, tables
):
    run(aggregator, answered_records(tables))
    top = get(stats, "/_stats/top", {})
    assert top["routes"][0] == {
        "route": "/a",
        "count": 6,
        "answered": 6,
        "errorRate": {"4xx": 0.0, "5xx": round(2 / 6, 4)},
        "latencyMs": {"mean": round(60025 / 6, 1)},
    }
    errors = get(stats, "/_stats/top", {"by": "errors", "min": "2"})
    assert [r["route"] for r in errors["routes"]] == ["/c", "/a", "/b"]  # 50%, 33%, 0% 5xx
    assert (errors["by"], errors["min"]) == ("errors", 2)
    slowest = get(stats, "/_stats/top", {"by": "latency", "min": "2", "limit": "2"})
    assert [r["route"] for r in slowest["routes"]] == ["/a", "/c"]
    assert get(stats, "/_stats/top", {"by": "latency", "min": "3"})["routes"] == [top["routes"][0]]
    assert get(stats, "/_stats/top", {"by": "latency"})["routes"] == []  # default min 10


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ({"by": "slow"}, "'by' must be 'hits', 'errors' or 'latency'"),
        ({"by": "errors", "min": "0"}, "'min' must be a whole number from 1 to 9999"),
        ({"by": "latency", "min": "x"}, "'min' must be a whole number from 1 to 9999"),
        ({"min": "5"}, "'min' only comes with by=errors or by=latency"),
    ],
)
def test_bad_top_orders_are_a_clear_400(stats, query, message):
    result = stats.handler(api_event("/_stats/top", query=query), lambda_context())
    assert result["statusCode"] == 400
    assert json.loads(result["body"]) == {"error": message}


# --- The dashboard ---------------------------------------------------------------------------


@pytest.fixture
def pages():
    """The stats module for its page components, which read nothing."""
    return load_module(ROOT / "handler" / "stats.py", "stats_for_monitoring_pages")


NOW = 1_796_094_000  # 2026-12-01T03:00:00Z


def point(hour: int, classes: tuple = (), mean: float = 0.0, p90: int | None = 0) -> dict:
    start = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(NOW - (3 - hour) * 3600))
    if not classes:
        return {"start": start, "count": 0}
    status = dict(zip(("2xx", "3xx", "4xx", "5xx"), classes, strict=True))
    latency = {"mean": mean, "p50": 10, "p90": p90, "p99": p90}
    return {"start": start, "count": sum(classes), "status": status, "latencyMs": latency}


def test_a_routes_answers_chart_shows_error_rates_and_mean_and_p90_latency(pages):
    points = [
        point(0, (8, 0, 1, 1), 12.5, 20),
        point(1),
        point(2, (0, 0, 0, 4), 250.0, 500),
        point(3, (3, 0, 0, 0), 100.0, None),
    ]

    chart = pages.answers_chart(points, "Answers per hour, last 24 hours")

    rows = re.findall(r"<tr><td>([^<]+)</td>((?:<td class=n[^>]*>[^<]*</td>)+)</tr>", chart)
    cells = [(at, re.findall(r"<td class=n[^>]*>([^<]*)</td>", tds)) for at, tds in rows]
    assert cells == [
        ("Dec 01 00:00", ["10", "10.0%", "10.0%", "12.5 ms", "\u226420 ms"]),
        ("Dec 01 01:00", ["0", "-", "-", "-", "-"]),
        ("Dec 01 02:00", ["4", "100.0%", "0.0%", "250.0 ms", "\u2264500 ms"]),
        ("Dec 01 03:00", ["3", "0.0%", "0.0%", "100.0 ms", "&gt;30,000 ms"]),
    ]
    # Error rate: a 5xx and a 4xx bar per answered bucket, of 100%.
    errors = re.search(r'aria-label="[^"]*error rate"[^>]*>(.*?)</svg>', chart).group(1)
    heights = re.findall(r'<rect class=(e[45]) [^>]*height="([0-9.]+)"', errors)
    assert [h for _, h in heights] == ["10.0", "10.0", "100.0", "0.0", "0.0", "0.0"]
    assert [c for c, _ in heights] == ["e5", "e4"] * 3
    assert "the worst hour's 5xx share is 100.0%" in chart
    # Latency: p90 behind the mean, scaled to the tallest (p90 past 30 s drawn at 30 s).
    latency = re.search(r'aria-label="[^"]*latency"[^>]*>(.*?)</svg>', chart).group(1)
    assert re.findall(r'<rect class=p9 [^>]*height="([0-9.]+)"', latency)[-1] == "100.0"


def test_without_answers_no_answers_chart_or_monitoring_panel_is_drawn(pages):
    assert pages.answers_chart([point(0), point(1)], "Answers per hour") == ""
    top = {"routes": [{"route": "/a", "count": 50}], "asOf": "2026-12-01T02:00:00Z"}
    summary = {
        "top": top,
        "today": {**top, "day": "2026-12-01"},
        "totals": {"hits": 50, "routes": 1},
    }
    page = pages.dashboard([], "Route Counter", summary=summary, series=[], now=NOW)
    assert "Slowest" not in page and "error rate" not in page
    single = pages.dashboard(
        [{"route": "/a", "count": 1, "firstSeen": None, "lastSeen": None}],
        "Route /a",
        single=True,
        series=[("Hits per hour", [point(0)])],
        now=NOW,
    )
    assert "Answers" not in single


def test_the_front_page_names_the_slowest_routes_and_the_highest_error_rates(pages):
    def entry(route, count, answered, s4xx, s5xx, total_ms):
        value = {"L": [{"N": str(n)} for n in (count, answered, s4xx, s5xx, total_ms)]}
        return route, value

    item = {
        "routes": {
            "M": dict(
                [
                    entry("/fast", 500, 500, 5, 0, 500 * 12),
                    entry("/slow&<x>", 40, 40, 0, 2, 40 * 900),
                    entry("/broken", 20, 20, 0, 10, 20 * 30),
                    entry("/rare", 9, 9, 0, 9, 9 * 5000),  # fewer than 10 answers
                    ("/counted", {"N": "30"}),  # no answers (before the backend)
                ]
            )
        },
        "asOf": {"S": "2026-12-01T02:59:00Z"},
    }
    top = pages.ranked(item)
    summary = {"top": top, "today": {"routes": [], "asOf": None, "day": "2026-12-01"}}
    summary["totals"] = {"hits": 599, "routes": 5}

    page = pages.dashboard([], "Route Counter", summary=summary, series=[], now=NOW)

    def shown(heading):
        panel = page.split(f"<h2>{heading}</h2>", 1)[1].split("</section>", 1)[0]
        return re.findall(r'<bdi dir="ltr">([^<]*)</bdi></a></span> <b>([^<]*)</b>', panel)

    assert shown("Slowest routes of all time") == [
        ("/slow&amp;&lt;x&gt;", "900.0 ms"),
        ("/broken", "30.0 ms"),
        ("/fast", "12.0 ms"),
    ]
    assert shown("Highest error rate of all time") == [
        ("/broken", "5xx 50.0%, 4xx 0.0%"),
        ("/slow&amp;&lt;x&gt;", "5xx 5.0%, 4xx 0.0%"),
        ("/fast", "5xx 0.0%, 4xx 1.0%"),
    ]
    # today has no answers yet: no panels for it
    assert "Slowest routes today" not in page and "Highest error rate today" not in page


def test_a_routes_page_shows_its_answers_of_all_time_and_per_hour(pages):
    found = {
        "route": "/a",
        "count": 4,
        "firstSeen": "2026-12-01T00:00:00Z",
        "lastSeen": "2026-12-01T02:00:00Z",
        "status": {"2xx": 3, "3xx": 0, "4xx": 0, "5xx": 1},
        "latencyMs": {"mean": 42.25},
    }
    series = [("Hits per hour, last 24 hours", [point(0, (3, 0, 0, 1), 42.2, 50)])]

    page = pages.dashboard([found], "Route /a", single=True, series=series, now=NOW)

    totals = page.split("<h2>Answers of all time</h2>", 1)[1].split("</section>", 1)[0]
    assert re.findall(r"<p><b>([^<]*)</b> ([^<]*)</p>", totals) == [
        ("4", "answers"),
        ("25.0%", "5xx"),
        ("0.0%", "4xx"),
        ("42.2 ms", "mean latency"),
    ]
    assert "<h2>Answers per hour, last 24 hours</h2>" in page


def test_the_stats_read_the_histogram_and_classes_the_aggregator_writes(pages):
    """Each handler is inlined on its own (no shared module): their constants must agree."""
    aggregator = load_module(ROOT / "handler" / "aggregator.py", "aggregator_for_constants")
    assert pages.LATENCY_BOUNDS == aggregator.LATENCY_BOUNDS
    assert pages.CLASSES == aggregator.CLASSES
    written = {aggregator.latency_bucket(ms) for ms in range(40_000)}
    assert written == set(pages.HISTOGRAM)
