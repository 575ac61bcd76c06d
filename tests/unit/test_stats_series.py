"""GET /_stats?route=&series=hour|day: hits per bucket, exact, from one Query.

Hits are counted by the counter's own write into an in-process moto table with the
template's stream; the stream's records go through the aggregator as Lambda delivers them;
the stats handler reads the series table the aggregator wrote.
"""

import collections
import datetime
import html
import json
import os
import random
import re
import time
import urllib.parse
import zlib

import boto3
import pytest
from boto3.dynamodb.conditions import Key
from botocore.exceptions import ReadTimeoutError

from local.streams import stream_event, window_event
from tests.conftest import (
    ROOT,
    YEAR_END,
    api_event,
    lambda_context,
    load_module,
    stop_wall_clock,
    stream_records,
)
from tests.unit.test_aggregator import HITS, epoch
from tests.unit.test_dashboard_words import IMPLEMENTATION_WORDS, visible_text

HOUR = datetime.timedelta(hours=1)
UTC = datetime.UTC


@pytest.fixture
def counter(stream_tables):
    return load_module(ROOT / "handler" / "counter.py", "counter_for_series")


@pytest.fixture
def stats(stream_tables):
    return load_module(ROOT / "handler" / "stats.py", "stats_for_series")


def count_and_aggregate(counter, aggregator, stream_tables, hits, batch=7, seed=1) -> None:
    """Count the hits, then deliver the stream in shuffled batches, each one twice."""
    for route, at in hits:
        counter.count_hit(route, at, time.monotonic() + 4)
    records = stream_event(stream_records(stream_tables.stream_arn), stream_tables.stream_arn)[
        "Records"
    ]
    batches = [records[i : i + batch] for i in range(0, len(records), batch)] * 2
    random.Random(seed).shuffle(batches)  # noqa: S311 (a reproducible order, not a secret)
    for records in batches:
        assert aggregator.handler({"Records": records}, lambda_context()) == {
            "batchItemFailures": []
        }


def queries(stats) -> list:
    calls = []
    stats.dynamodb.meta.events.register("before-call.dynamodb", lambda **kw: calls.append(kw))
    return calls


def get(stats, query: dict):
    result = stats.handler(api_event("/_stats", query=query), lambda_context("StatsFunction"))
    return result["statusCode"], json.loads(result["body"])


def test_hourly_points_are_the_hits_of_each_hour_every_hour_present(
    counter, aggregator, stats, stream_tables
):
    count_and_aggregate(counter, aggregator, stream_tables, [(r, epoch(t)) for r, t in HITS])
    calls = queries(stats)
    query = {"route": "/a", "series": "hour", "from": "2026-12-01T04:00:00Z"}
    status, body = get(stats, {**query, "to": "2026-12-02T01:30:00Z"})
    assert status == 200
    assert body["route"] == "/a" and body["series"] == "hour"
    starts = [p["start"] for p in body["points"]]
    assert starts[0] == "2026-12-01T04:00:00Z" and starts[-1] == "2026-12-02T01:00:00Z"
    assert len(starts) == 22  # every hour, zeros included
    counts = {p["start"]: p["count"] for p in body["points"] if p["count"]}
    # 2 hits at 04h (the 2 of 03h, before the range, are not in it), 1 at 00h next day
    assert counts == {"2026-12-01T04:00:00Z": 2, "2026-12-02T00:00:00Z": 1}
    assert len(calls) == 1  # one Query


def test_each_point_is_the_hits_of_its_own_bucket_whatever_came_before_the_range(
    counter, aggregator, stats, stream_tables
):
    hours = ["02", "03", "04", "05"]
    hits = [("/full", epoch(f"2026-12-01T{h}:10:00Z")) for h in hours]
    count_and_aggregate(counter, aggregator, stream_tables, hits)
    status, body = get(
        stats, {"route": "/full", "series": "hour", "from": "2026-12-01T03", "to": "2026-12-01T05"}
    )
    assert status == 200
    assert [p["count"] for p in body["points"]] == [1, 1, 1]


def test_daily_points_and_a_time_with_an_offset_is_converted_to_utc(
    counter, aggregator, stats, stream_tables
):
    count_and_aggregate(counter, aggregator, stream_tables, [(r, epoch(t)) for r, t in HITS])
    status, body = get(
        stats,
        {"route": "/a", "series": "day", "from": "2026-11-30", "to": "2026-12-02T01:00+02:00"},
    )
    assert status == 200
    # 2026-12-02T01:00+02:00 is 2026-12-01T23:00Z: the range ends on the 1st
    assert body["points"] == [
        {"start": "2026-11-30T00:00:00Z", "count": 0},
        {"start": "2026-12-01T00:00:00Z", "count": 4},
    ]


def test_every_bucket_equals_the_hits_sent_in_it_after_shuffled_duplicated_batches(
    counter, aggregator, stats, stream_tables
):
    start = epoch("2026-12-01T00:00:00Z")
    rng = random.Random(7)  # noqa: S311 (reproducible data, not a secret)
    hits = sorted(
        ((rng.choice(["/a", "/b", "/c/d"]), start + rng.randrange(3 * 86400)) for _ in range(150)),
        key=lambda hit: hit[1],
    )
    count_and_aggregate(counter, aggregator, stream_tables, hits, batch=11, seed=3)
    for series, width in (("hour", "%Y-%m-%dT%H:00:00Z"), ("day", "%Y-%m-%dT00:00:00Z")):
        for route in ("/a", "/b", "/c/d"):
            sent = collections.Counter(
                time.strftime(width, time.gmtime(at)) for r, at in hits if r == route
            )
            status, body = get(
                stats,
                {
                    "route": route,
                    "series": series,
                    "from": "2026-12-01T00:00:00Z",
                    "to": "2026-12-03T23:00:00Z",
                },
            )
            assert status == 200
            got = {p["start"]: p["count"] for p in body["points"] if p["count"]}
            assert got == dict(sent), (series, route)
            assert len(body["points"]) == (72 if series == "hour" else 3)
        # and every route together, from the aggregator's all-routes buckets
        sent = collections.Counter(time.strftime(width, time.gmtime(at)) for _, at in hits)
        status, body = get(
            stats, {"series": series, "from": "2026-12-01T00:00:00Z", "to": "2026-12-03T23:00:00Z"}
        )
        assert status == 200 and body["route"] is None
        assert {p["start"]: p["count"] for p in body["points"] if p["count"]} == dict(sent)


def test_defaults_are_the_last_24_hours_and_the_last_30_days(
    counter, aggregator, stats, stream_tables, monkeypatch
):
    now = YEAR_END  # the handler's "now" is the test's, even as an hour turns
    stop_wall_clock(monkeypatch, stats, now)
    count_and_aggregate(counter, aggregator, stream_tables, [("/now", now)] * 3)
    this_hour = time.strftime("%Y-%m-%dT%H:00:00Z", time.gmtime(now))
    today = time.strftime("%Y-%m-%dT00:00:00Z", time.gmtime(now))
    for series, points, last in (("hour", 24, this_hour), ("day", 30, today)):
        status, body = get(stats, {"route": "/now", "series": series})
        assert status == 200
        assert len(body["points"]) == points
        assert body["points"][-1] == {"start": last, "count": 3}
        assert sum(p["count"] for p in body["points"]) == 3


def test_a_route_never_counted_is_all_zeros(stats):
    status, body = get(stats, {"route": "/never", "series": "day", "from": "2026-12-01"})
    assert status == 200
    assert body["points"][0] == {"start": "2026-12-01T00:00:00Z", "count": 0}
    assert {p["count"] for p in body["points"]} == {0}


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ({"route": "/a", "series": "week"}, "'series' must be 'hour' or 'day'"),
        ({"route": "/a", "series": "hour", "from": "yesterday"}, "'from' must be an ISO 8601"),
        ({"route": "/a", "series": "day", "to": "2026-13-01"}, "'to' must be an ISO 8601"),
        (
            {"route": "/a", "series": "day", "from": "2026-12-02", "to": "2026-12-01"},
            "'from' must not be after 'to'",
        ),
        (
            {"route": "/a", "series": "hour", "from": "2026-12-01", "to": "2027-01-01T00:00Z"},
            "at most 744 points; this range has 745",
        ),
        (
            {"route": "/a", "series": "day", "from": "2026-01-01", "to": "2027-01-02"},
            "at most 366 points; this range has 367",
        ),
        ({"route": "/a", "series": "day", "to": "0001-01-05"}, "years 1 to 9999"),
        # an offset that takes the time past year 9999 or before year 1 once in UTC
        ({"series": "hour", "to": "9999-12-31T23:00:00-01:00"}, "years 1 to 9999"),
        ({"route": "/a", "series": "day", "from": "0001-01-01T00:30+01:00"}, "years 1 to 9999"),
        ({"series": "hour", "next": "L2E"}, "cannot be combined"),
        ({"route": "/a", "from": "2026-12-01"}, "need a 'series'"),
        ({"to": "2026-12-01"}, "need a 'series'"),
        ({"route": "/a", "series": "hour", "limit": "5"}, "cannot be combined"),
        # from=...T03:00:00+02:00 typed into a URL: the "+" arrives as a space
        (
            {"route": "/a", "series": "hour", "from": "2026-12-01T03:00:00 02:00"},
            "'from' has a space where its offset's sign would be: write the offset's + as %2B"
            " (a bare + in a query is a space): from=2026-12-01T03:00:00%2B02:00",
        ),
        (
            {"route": "/a", "series": "day", "to": "2026-12-01T03 0530"},
            "write the offset's + as %2B (a bare + in a query is a space): to=2026-12-01T03%2B0530",
        ),
    ],
)
def test_bad_values_are_a_clear_400(stats, query, message):
    status, body = get(stats, query)
    assert status == 400
    assert message in body["error"]


def test_times_of_the_first_centuries_are_iso_8601_with_four_digit_years(stats):
    query = {"series": "hour", "from": "0001-01-01T00:00:00", "to": "0001-01-01T01:00:00"}
    status, body = get(stats, query)
    assert status == 200
    assert [p["start"] for p in body["points"]] == [
        "0001-01-01T00:00:00Z",
        "0001-01-01T01:00:00Z",
    ]


def test_the_longest_ranges_are_served(stats):
    for query, points in (
        ({"from": "2026-12-01", "to": "2026-12-31T23:00Z", "series": "hour"}, 744),
        ({"from": "2026-01-01", "to": "2027-01-01", "series": "day"}, 366),
    ):
        status, body = get(stats, {"route": "/a", **query})
        assert status == 200
        assert len(body["points"]) == points


def test_a_lost_answer_is_a_503_json_with_the_request_id(stats, capsys):
    def lose(request, **_):
        raise ReadTimeoutError(endpoint_url=request.url)

    stats.dynamodb.meta.events.register_first("before-send.dynamodb.Query", lose)
    event = api_event("/_stats", query={"route": "/a", "series": "hour"})
    result = stats.handler(event, lambda_context("StatsFunction"))
    assert result["statusCode"] == 503
    body = json.loads(result["body"])
    assert body["requestId"] and "busy" in body["error"]
    line = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert line["level"] == "ERROR" and line["error"] == "ReadTimeoutError"


def test_top_routes_are_the_aggregators_ranking_from_one_query_of_its_parts(
    counter, aggregator, stats, stream_tables
):
    count_and_aggregate(counter, aggregator, stream_tables, [(r, epoch(t)) for r, t in HITS])
    calls = queries(stats)
    result = stats.handler(api_event("/_stats/top"), lambda_context("StatsFunction"))
    assert result["statusCode"] == 200
    assert json.loads(result["body"]) == {
        "routes": [
            {"route": "/a", "count": 5},
            {"route": "/b", "count": 2},
            {"route": "/c", "count": 1},
        ],
        "asOf": "2026-12-02T00:06:00Z",
        "period": "all",
    }
    assert [c["model"].name for c in calls] == ["Query"]
    result = stats.handler(
        api_event("/_stats/top", query={"limit": "2", "period": "all"}), lambda_context()
    )
    assert [r["route"] for r in json.loads(result["body"])["routes"]] == ["/a", "/b"]


def test_top_routes_before_any_batch_is_an_empty_ranking(stats):
    result = stats.handler(api_event("/_stats/top"), lambda_context("StatsFunction"))
    assert result["statusCode"] == 200
    assert json.loads(result["body"]) == {"routes": [], "asOf": None, "period": "all"}


def test_top_routes_of_today_rank_the_days_hits_not_the_all_time_counts(
    counter, aggregator, stats, stream_tables, monkeypatch
):
    now = YEAR_END  # the last second of a day: the handler's "today" is the test's
    stop_wall_clock(monkeypatch, stats, now)
    yesterday = now - 86400
    # /old leads all time from yesterday; today /new has 3 hits, /old 1
    hits = [("/old", yesterday - i) for i in range(5)]
    hits += [("/new", now), ("/old", now), ("/new", now), ("/new", now)]
    count_and_aggregate(counter, aggregator, stream_tables, hits)
    calls = queries(stats)
    result = stats.handler(api_event("/_stats/top", query={"period": "day"}), lambda_context())
    body = json.loads(result["body"])
    assert body == {
        "routes": [{"route": "/new", "count": 3}, {"route": "/old", "count": 1}],
        "asOf": "2026-12-31T23:59:59Z",
        "period": "day",
        "day": "2026-12-31",
    }
    assert [c["model"].name for c in calls] == ["Query"]
    all_time = stats.handler(api_event("/_stats/top"), lambda_context())
    assert [r["route"] for r in json.loads(all_time["body"])["routes"]] == ["/old", "/new"]


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ({"limit": "0"}, "'limit' must be a whole number from 1 to 100"),
        ({"limit": "101"}, "'limit' must be a whole number from 1 to 100"),
        ({"limit": "ten"}, "'limit' must be a whole number from 1 to 100"),
        ({"period": "week"}, "'period' must be 'all' or 'day'"),
    ],
)
def test_bad_top_values_are_a_clear_400(stats, query, message):
    result = stats.handler(api_event("/_stats/top", query=query), lambda_context())
    assert result["statusCode"] == 400
    assert message in json.loads(result["body"])["error"]


BROWSER = {"Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"}


def page(stats, query: dict | None = None) -> str:
    event = api_event("/_stats", query=query, headers=BROWSER)
    result = stats.handler(event, lambda_context("StatsFunction"))
    assert result["statusCode"] == 200, result["body"]
    assert result["headers"]["Content-Type"].startswith("text/html")
    return result["body"]


def chart_rows(html_page: str, heading: str) -> dict:
    """The chart's "Every hour" (or day) table under a heading: {label: hits} of its
    non-zero rows."""
    section = html_page.split(f"<h2>{heading}</h2>", 1)[1].split("</section>", 1)[0]
    rows = re.findall(r"<tr><td>([^<]+)</td><td class=n>([\d,]+)</td></tr>", section)
    return {label: int(hits.replace(",", "")) for label, hits in rows if hits != "0"}


def test_a_picked_routes_page_charts_its_hits_per_hour_and_per_day(
    counter, aggregator, stats, stream_tables
):
    now = time.time()
    hits = [("/picked", now - 5 * 3600)] * 2 + [("/picked", now)] + [("/other", now)] * 4
    count_and_aggregate(counter, aggregator, stream_tables, hits)
    calls = queries(stats)

    shown = page(stats, {"route": "/picked"})

    def hour(at: float) -> str:
        return time.strftime("%b %d %H:00", time.gmtime(at))

    assert chart_rows(shown, "Hits per hour, last 24 hours") == {
        hour(now - 5 * 3600): 2,
        hour(now): 1,
    }
    days = chart_rows(shown, "Hits per day, last 30 days")
    assert sum(days.values()) == 3 and time.strftime("%b %d", time.gmtime(now)) in days
    assert "3 hits in 24 hours" in shown and "3 hits in 30 days" in shown
    # The route's record, then one Query per chart.
    assert [c["model"].name for c in calls] == ["GetItem", "Query", "Query"]


def section(html_page: str, heading: str) -> str:
    return html_page.split(f"<h2>{heading}</h2>", 1)[1].split("</section>", 1)[0]


def ranking(panel: str) -> list[tuple[str, int]]:
    """A top panel's (route as shown, hits) pairs, in order."""
    pairs = re.findall(r'<bdi dir="ltr">([^<]*)</bdi></a></span> <b>([\d,]+)</b>', panel)
    return [(route, int(hits.replace(",", ""))) for route, hits in pairs]


def test_the_front_page_charts_every_routes_hits_per_hour_and_day_and_totals_them(
    counter, aggregator, stats, stream_tables
):
    now = time.time()
    rng = random.Random(5)  # noqa: S311 (reproducible data, not a secret)
    routes = [f"/r/{i}" for i in range(6)]
    # Within the hourly chart (22 h back at most, so an hour turning during the test
    # keeps them in it), within the daily one only, and before both.
    ages = [rng.randrange(22 * 3600) for _ in range(60)]
    ages += [rng.randrange(2, 28) * 86400 + rng.randrange(3600) for _ in range(25)]
    ages += [45 * 86400] * 3
    hits = sorted(((rng.choice(routes), now - age) for age in ages), key=lambda hit: hit[1])
    count_and_aggregate(counter, aggregator, stream_tables, hits, batch=9, seed=4)
    calls = queries(stats)

    shown = page(stats)

    def sent_per(label: str, within: float) -> dict:
        return dict(
            collections.Counter(
                time.strftime(label, time.gmtime(at)) for _, at in hits if within(at)
            )
        )

    hourly = chart_rows(shown, "Hits per hour, last 24 hours, all routes")
    assert hourly == sent_per("%b %d %H:00", lambda at: at > now - 22 * 3600)
    daily = chart_rows(shown, "Hits per day, last 30 days, all routes")
    assert daily == sent_per("%b %d", lambda at: at > now - 28 * 86400)
    totals = section(shown, "All routes, since this stack began keeping hits over time")
    assert f"<b>{len(hits)}</b> hits" in totals
    assert f"<b>{len({r for r, _ in hits})}</b> routes" in totals
    # The page of routes (Scan), the summary (a Query for each top item's parts and one for
    # the totals' parts), a Query per chart.
    assert [c["model"].name for c in calls] == ["Scan", *["Query"] * 5]


def test_the_front_page_ranks_all_time_by_count_and_today_by_todays_hits(
    counter, aggregator, stats, stream_tables, monkeypatch
):
    now = YEAR_END  # the last second of a day: the page's "today" is the test's
    stop_wall_clock(monkeypatch, stats, now)
    yesterday = now - 86400
    hits = [("/old", yesterday - i) for i in range(5)] + [("/x&<y>", yesterday)] * 2
    hits += [("/new", now), ("/old", now), ("/new", now), ("/new", now)]
    count_and_aggregate(counter, aggregator, stream_tables, hits)

    shown = page(stats)

    all_time = section(shown, "Top routes of all time")
    assert ranking(all_time) == [("/old", 6), ("/new", 3), ("/x&amp;&lt;y&gt;", 2)]
    today = section(shown, "Top routes today")
    assert ranking(today) == [("/new", 3), ("/old", 1)]
    assert "By hits on 2026-12-31 (UTC)" in today
    # The page's own routes are in the table, not ranked again in a chart of their own.
    assert shown.count("<h2>Top routes") == 2


def test_the_front_page_links_each_top_route_to_its_own_page(
    counter, aggregator, stats, stream_tables
):
    now = time.time()
    # As the counter stores a path's route: percent-encoded as sent.
    hits = [("/busy", now)] * 3 + [("/a&b%3Cc%3E", now)] * 2 + [("/quiet", now)]
    count_and_aggregate(counter, aggregator, stream_tables, hits)

    shown = page(stats, {"limit": "1"})  # a page of one route; the top panel has them all

    top = section(shown, "Top routes of all time")
    links = re.findall(r'<a href="([^"]+)">', top)
    assert [html.unescape(link) for link in links] == [
        "?route=/busy",
        "?route=/a%26b%253Cc%253E",
        "?route=/quiet",
    ]
    assert "/a&amp;b%3Cc%3E" in top and "/a&b" not in top  # the route's name is escaped
    # Followed as a browser follows it: the query decoded, the route's own page.
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(html.unescape(links[1])).query)
    followed = page(stats, {k: v[0] for k, v in query.items()})
    assert "Route /a&amp;b%3Cc%3E" in followed
    assert sum(chart_rows(followed, "Hits per hour, last 24 hours").values()) == 2


def test_before_any_batch_the_front_page_says_nothing_was_aggregated_not_zero_hits(stats, counter):
    counter.count_hit("/first", time.time(), time.monotonic() + 4)
    calls = queries(stats)

    shown = page(stats)

    assert "No totals yet." in section(shown, "All routes")
    # No chart of zeros, no "0 hits": the hit is counted, only not aggregated yet.
    assert "<svg" not in shown and "0 hits" not in shown and "Top routes" not in shown
    assert '<a href="?route=/first"><bdi dir="ltr">/first</bdi></a>' in shown  # the table has it
    assert [c["model"].name for c in calls] == ["Scan", *["Query"] * 5]


def test_all_routes_parts_of_several_shards_and_older_items_sum_exactly_on_read(
    counter, aggregator, stats, stream_tables
):
    """Batches of three shards (a tumbling window names each one's shard: window_event), and
    batches from before the mapping had one (no shard: the un-suffixed items), shuffled and
    each delivered twice: the all-routes series and totals still equal the hits sent."""
    start = epoch("2026-12-01T00:00:00Z")
    rng = random.Random(11)  # noqa: S311 (reproducible data, not a secret)
    hits = sorted(
        (
            (rng.choice(["/a", "/b", "/c/d", "/e"]), start + rng.randrange(2 * 86400))
            for _ in range(120)
        ),
        key=lambda hit: hit[1],
    )
    for route, at in hits:
        counter.count_hit(route, at, time.monotonic() + 4)
    arn = stream_tables.stream_arn
    records = stream_event(stream_records(arn), arn)["Records"]
    shards = ["shardId-00000001796097590000-0a1b2c3d", "shardId-00000001796097590001-9f8e7d6c"]
    shards.append("shardId-00000001796097590002-44556677")
    events = []
    for i in range(0, len(records), 9):
        batch = records[i : i + 9]
        if i < len(records) // 3:  # before the change: Lambda named no shard
            events.append({"Records": batch})
        else:
            events.append(window_event(batch, arn, rng.choice(shards), start, 900, {}))
    events *= 2
    rng.shuffle(events)
    for event in events:
        expected = {"batchItemFailures": []} | ({"state": {}} if "window" in event else {})
        assert aggregator.handler(event, lambda_context()) == expected

    table = boto3.resource("dynamodb").Table(os.environ["SERIES_TABLE"])
    buckets = [
        i["bucket"] for i in table.query(KeyConditionExpression=Key("route").eq("#all"))["Items"]
    ]
    assert "all" in buckets and len([b for b in buckets if b.startswith("all#")]) == 3
    for series, width in (("hour", "%Y-%m-%dT%H:00:00Z"), ("day", "%Y-%m-%dT00:00:00Z")):
        sent = collections.Counter(time.strftime(width, time.gmtime(at)) for _, at in hits)
        status, body = get(
            stats, {"series": series, "from": "2026-12-01T00:00:00Z", "to": "2026-12-02T23:00:00Z"}
        )
        assert status == 200
        assert {p["start"]: p["count"] for p in body["points"] if p["count"]} == dict(sent)
    totals = section(page(stats), "All routes, since this stack began keeping hits over time")
    assert f"<b>{len(hits)}</b> hits" in totals
    assert f"<b>{len({r for r, _ in hits})}</b> routes" in totals


def top_of(stats, query: dict | None = None) -> list[tuple[str, int]]:
    result = stats.handler(api_event("/_stats/top", query=query), lambda_context("StatsFunction"))
    assert result["statusCode"] == 200
    return [(r["route"], r["count"]) for r in json.loads(result["body"])["routes"]]


def leaders(counts: collections.Counter, size: int) -> list[tuple[str, int]]:
    return sorted(counts.items(), key=lambda rc: (-rc[1], rc[0]))[:size]


def test_the_top_combined_from_ranking_parts_resharded_routes_and_old_items_is_exact(
    counter, aggregator, stats, stream_tables
):
    """Each shard's batches merge into their ranking part; a third of the stream came before
    the change (no shard: the un-suffixed items); halfway, the two parent shards close and
    every route goes on in a child shard of another part (its entries are in two parts). The
    un-suffixed items lose `leftOut`, as written before the rankings came in parts.
    Shuffled, each batch twice: the top of all time and of each day is the exact ranking."""
    aggregator.TOP_SIZE = stats.TOP_SIZE = 4  # parts that leave routes out
    parents = ["shardId-00000001796097590000-0a1b2c3d", "shardId-00000001796097590001-9f8e7d6c"]
    children = ["shardId-00000001796200000000-44556677", "shardId-00000001796200000001-8899aabb"]
    parts = {aggregator.shard_part(s, aggregator.RANK_PARTS) for s in parents + children}
    assert len(parts) == 4
    start = epoch("2026-12-01T00:00:00Z")
    rng = random.Random(7)  # noqa: S311 (reproducible data, not a secret)
    routes = [f"/r{i}" for i in range(14)]
    hits = sorted(
        ((rng.choice(routes[: rng.randrange(1, 15)]), start + rng.randrange(2 * 86400)))
        for _ in range(300)
    )
    hits.sort(key=lambda hit: hit[1])
    for route, at in hits:
        counter.count_hit(route, at, time.monotonic() + 4)
    arn = stream_tables.stream_arn
    records = stream_event(stream_records(arn), arn)["Records"]
    by_shard = collections.defaultdict(list)
    for index, record in enumerate(records):
        route = record["dynamodb"]["NewImage"]["route"]["S"]
        side = zlib.crc32(route.encode()) % 2
        era = (
            None
            if index < len(records) // 3
            else parents
            if index < 2 * len(records) // 3
            else children
        )
        by_shard[era and era[side]].append(record)
    events = []
    for shard, shard_records in by_shard.items():
        for i in range(0, len(shard_records), 11):
            batch = shard_records[i : i + 11]
            event = (
                {"Records": batch}
                if shard is None
                else window_event(batch, arn, shard, start, 900, {})
            )
            events.append(event)
    events *= 2
    rng.shuffle(events)
    for event in events:
        assert aggregator.handler(event, lambda_context())["batchItemFailures"] == []

    table = boto3.resource("dynamodb").Table(os.environ["SERIES_TABLE"])
    stored = table.query(KeyConditionExpression=Key("route").eq("#top"))["Items"]
    assert len([i for i in stored if i["bucket"].startswith("all")]) == 5  # 4 parts and the old
    for item in stored:  # the un-suffixed items as the aggregator wrote them before parts
        if item["bucket"].count("#") == (0 if item["bucket"] == "all" else 1):
            assert len(item["routes"]) == 4  # full: it may have left routes out
            table.update_item(
                Key={"route": "#top", "bucket": item["bucket"]}, UpdateExpression="REMOVE leftOut"
            )
    assert top_of(stats) == leaders(collections.Counter(r for r, _ in hits), 4)
    for day in (start, start + 86400):  # the day's top, read as on that day
        answer = stats.read_top({"period": "day"}, datetime.datetime.fromtimestamp(day, UTC))
        expected = leaders(collections.Counter(r for r, at in hits if day <= at < day + 86400), 4)
        assert [(r["route"], r["count"]) for r in answer["routes"]] == expected


def test_a_part_that_left_out_a_long_route_keeps_a_shorter_one_out_of_the_top(
    counter, aggregator, stats, stream_tables
):
    """A ranking keeps at most TOP_BYTES of routes: shard A's part holds 8 routes of 1,000
    bytes and leaves out the ninth (/i...) of 2 hits; shard B's ranks /short with 1 hit. One
    ranking of all the routes would stop at /i...: the combined top does not show /short in
    its place, ahead of a route with more hits."""
    long_routes = [f"/{letter}" + "x" * 998 for letter in "abcdefghi"]
    start = epoch("2026-12-01T00:00:00Z")
    for count, route in zip(range(10, 1, -1), long_routes, strict=True):
        for i in range(count):
            counter.count_hit(route, start + i, time.monotonic() + 4)
    arn = stream_tables.stream_arn
    records = stream_event(stream_records(arn), arn)["Records"]
    shard_a, shard_b = (
        "shardId-00000001796097590000-0a1b2c3d",
        "shardId-00000001796097590001-9f8e7d6c",
    )
    assert aggregator.handler(window_event(records, arn, shard_a, start, 900, {}), None)
    counter.count_hit("/short", start + 60, time.monotonic() + 4)
    short = stream_event(stream_records(arn), arn)["Records"][-1:]
    assert aggregator.handler(window_event(short, arn, shard_b, start, 900, {}), None)

    ranked = top_of(stats, {"limit": "100"})
    assert aggregator.TOP_BYTES // (1000 + aggregator.TOP_ENTRY_BYTES) == 8
    assert ranked == [(route, 10 - i) for i, route in enumerate(long_routes[:8])]


def test_the_dashboard_says_nothing_of_how_it_is_built(counter, aggregator, stats, stream_tables):
    """No stream, aggregator, scan, bucket... in what the pages show (the words' tests are in
    test_dashboard_words.py; here, because the front page needs aggregated hits)."""
    now = time.time()
    counter.count_hit("/home", now - 3600, time.monotonic() + 4)
    before = visible_text(page(stats))  # counted, not added up yet
    hits = [("/home", now - 3600)] * 2 + [("/caf%C3%A9", now)] * 2
    count_and_aggregate(counter, aggregator, stream_tables, hits)
    pages = {
        "before any total": before,
        "front page": visible_text(page(stats)),
        "paged": visible_text(page(stats, {"limit": "1"})),
        "a route's page": visible_text(page(stats, {"route": "/home"})),
    }

    said = {name: IMPLEMENTATION_WORDS.findall(text) for name, text in pages.items()}

    assert said == {name: [] for name in pages}
    assert "No totals yet." in pages["before any total"]
    assert "All routes, since this stack began keeping hits over time" in pages["front page"]
    assert "Analytics=on" not in pages["front page"]  # the default: nobody turned it on
    assert "in stored order" in pages["paged"]
