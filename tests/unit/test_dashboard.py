"""The dashboard v2: its components from given data, and paging through the handler."""

import html
import re
import time
import urllib.parse

import pytest

from tests.conftest import api_event, lambda_context
from tests.unit.test_stats import BROWSER_ACCEPT, get, seed

NOW = 1_796_094_000  # 2026-12-01T03:00:00Z


def iso(seconds: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


def outside_svg(page: str) -> str:
    return re.sub(r"<svg.*?</svg>", "", page, flags=re.DOTALL)


# --- The hits-over-time chart, from points as GET /_stats?series= answers them -----------


def test_the_chart_draws_every_bucket_and_shows_zeros(stats):
    points = [{"start": iso(NOW - (3 - i) * 3600), "count": c} for i, c in enumerate([5, 0, 20, 0])]

    chart = stats.series_chart(points, "Hits per hour")

    bars = re.findall(r"<rect ([^>]*)>", chart)
    assert len(bars) == 4  # one per bucket, zeros included
    heights = [float(re.search(r'height="([0-9.]+)"', b).group(1)) for b in bars]
    assert heights[2] == 100 and heights[0] == 25  # proportional to the highest bucket
    assert [h > 0 for h in heights] == [True] * 4  # a zero is a visible stub...
    assert ["class=z" in b for b in bars] == [False, True, False, True]  # ...drawn apart
    assert "Dec 01 01:00 UTC: 0 hits" in chart  # on hover
    assert "25 hits in 4 hours" in chart


def test_the_charts_axis_labels_are_html_text_that_does_not_scale(stats):
    hourly = [{"start": iso(NOW - (23 - i) * 3600), "count": i} for i in range(24)]
    daily = [{"start": iso((NOW // 86400 - 29 + i) * 86400), "count": 0} for i in range(30)]

    hour_chart = stats.series_chart(hourly, "Hits per hour")
    day_chart = stats.series_chart(daily, "Hits per day")

    # Outside the SVG, so a narrow screen does not shrink them with its viewBox.
    axis = re.search(r"<div class=axis>(.*?)</div>", outside_svg(hour_chart)).group(1)
    assert re.findall(r"<span>(.*?)</span>", axis) == [
        "Nov 30 04:00",
        "Nov 30 16:00",
        "Dec 01 03:00",
    ]
    axis = re.search(r"<div class=axis>(.*?)</div>", outside_svg(day_chart)).group(1)
    assert re.findall(r"<span>(.*?)</span>", axis) == ["Nov 02", "Nov 17", "Dec 01"]
    assert "<text" not in hour_chart
    # Every bucket's number is readable too, zeros included.
    assert day_chart.count("<td class=n>0</td>") == 30
    assert 'preserveAspectRatio="none"' in hour_chart


def test_a_chart_without_points_says_so(stats):
    assert "No data points" in stats.series_chart([], "Hits per day")


def test_the_dashboard_shows_the_series_it_is_given(stats):
    points = [{"start": iso(NOW - 3600), "count": 7}, {"start": iso(NOW), "count": 0}]
    page = stats.dashboard([], "Route Counter", series=[("Hits per hour", points)], now=NOW)
    assert "<h2>Hits per hour</h2>" in page and page.count("<rect") == 2


# --- The global top routes, from {"routes", "asOf"} as GET /_stats/top answers ------------


def test_the_top_panel_ranks_the_routes_it_is_given_escaped(stats):
    top = {
        "routes": [
            {"route": "/<b>bold</b>", "count": 400},
            {"route": "/\u202egnp.exe", "count": 100},
        ],
        "asOf": iso(NOW - 180),
    }

    panel = stats.top_panel(top, NOW)

    assert "&lt;b&gt;bold&lt;/b&gt;" in panel and "<b>bold" not in panel
    assert "<span class=cf>U+202E</span>gnp.exe" in panel
    assert panel.index("bold") < panel.index("gnp.exe")
    assert re.findall(r'<rect width="(\d+)"', panel) == ["1000", "250"]
    assert f'<time datetime="{iso(NOW - 180)}" title="2026-12-01 02:57:00 UTC">3 min ago' in panel


def test_an_empty_top_item_says_nothing_was_counted(stats):
    panel = stats.top_panel({"routes": [], "asOf": iso(NOW)}, NOW)
    assert "No route has been counted yet" in panel


# --- Times shown relative, computed on the server ---------------------------------------


@pytest.mark.parametrize(
    ("seconds_ago", "shown"),
    [
        (3, "just now"),
        (45, "45 s ago"),
        (180, "3 min ago"),
        (7200, "2 h ago"),
        (86400, "1 day ago"),
        (86400 * 40, "40 days ago"),
        (-600, "at 2026-12-01 03:10 UTC"),  # a clock ahead of ours is not "ago"
    ],
)
def test_times_are_relative_with_the_utc_time_on_hover(stats, seconds_ago, shown):
    stamp = iso(NOW - seconds_ago)
    shown_html = stats.when(stamp, NOW)
    assert f">{shown}</time>" in shown_html
    assert f'title="{stamp[:10]} {stamp[11:19]} UTC"' in shown_html


def test_a_time_that_is_not_a_stored_time_is_shown_escaped(stats):
    assert stats.when("<i>soon</i>", NOW) == "&lt;i&gt;soon&lt;/i&gt;"
    assert stats.when(None, NOW) == ""


# --- Stale routes --------------------------------------------------------------------------


def seed_seen(table: str, seen: dict[str, float]) -> None:
    """Routes last seen the given number of days ago (real time: the page uses the clock)."""
    import boto3

    now = time.time()
    client = boto3.client("dynamodb")
    for route, days in seen.items():
        client.put_item(
            TableName=table,
            Item={
                "route": {"S": route},
                "count": {"N": "1"},
                "firstSeen": {"S": iso(now - 90 * 86400)},
                "lastSeen": {"S": iso(now - days * 86400)},
            },
        )


def stale_section(page: str) -> str:
    return re.search(r"<h2>Not seen for.*?</section>", page, re.DOTALL).group(0)


def test_stale_routes_are_those_not_seen_for_n_days(stats, counter_table):
    seed_seen(counter_table, {"/fresh": 0.01, "/week": 8, "/month": 31, "/old": 200})

    _, default = get(stats, accept=BROWSER_ACCEPT)
    _, month = get(stats, {"stale": "30"}, accept=BROWSER_ACCEPT)

    assert "Not seen for 7 days or more" in default
    section = stale_section(default)
    assert re.findall(r'<bdi dir="ltr">(/\w+)</bdi>', section) == ["/old", "/month", "/week"]
    assert "Of all routes" in section
    assert re.findall(r'<bdi dir="ltr">(/\w+)</bdi>', stale_section(month)) == ["/old", "/month"]
    assert "200 days ago" in section and "/fresh" not in section


@pytest.mark.parametrize("days", ["0", "3651", "-1", "7d", "", "1.5", "99999"])
def test_a_bad_stale_value_is_a_400_json_error_or_an_error_page(stats, days):
    result, body = get(stats, {"stale": days})
    page_result, page = get(stats, {"stale": days}, accept=BROWSER_ACCEPT)

    assert result["statusCode"] == 400
    assert body == {"error": "'stale' must be a whole number of days from 1 to 3650"}
    assert page_result["statusCode"] == 400
    assert page_result["headers"]["Content-Type"] == "text/html; charset=utf-8"
    assert page_result["headers"]["Content-Security-Policy"].startswith("default-src 'none'")
    assert "<h1>Error 400: Bad Request</h1>" in page
    assert "must be a whole number of days from 1 to 3650" in page


def test_the_dashboards_parameters_leave_the_json_answer_as_it_was(stats, counter_table):
    seed(counter_table, {f"/j/{i}": i for i in range(1, 6)})
    _, first = get(stats, {"limit": "2"})
    _, plain = get(stats, {"limit": "2", "next": first["next"]})
    query = {"limit": "2", "next": first["next"], "at": "2", "back": "0~", "stale": "30"}

    _, body = get(stats, query)

    assert body == plain and set(body) == {"routes", "next"}


# --- Paging: which page, first, previous, next ------------------------------------------------


def follow(stats, href: str) -> str:
    query = dict(urllib.parse.parse_qsl(html.unescape(href).lstrip("?"), keep_blank_values=True))
    event = api_event("/_stats", query=query or None, headers={"Accept": BROWSER_ACCEPT})
    result = stats.handler(event, lambda_context("StatsFunction"))
    assert result["statusCode"] == 200, result["body"]
    return result["body"]


def link(page: str, text: str) -> str | None:
    found = re.search(rf'<a href="([^"]*)">{text}</a>', page)
    return found and found.group(1)


def table_routes(page: str) -> list[str]:
    return re.findall(r'<td class="r">(?:<a href="[^"]*">)?<bdi dir="ltr">([^<]*)</bdi>', page)


def test_each_page_says_which_routes_it_holds_and_links_first_previous_next(stats, counter_table):
    seed(counter_table, {f"/p/{i}": i for i in range(1, 6)})

    first = follow(stats, "?limit=2")
    second = follow(stats, link(first, "Next page"))
    third = follow(stats, link(second, "Next page"))

    assert "Routes 1-2 in stored order, sorted by count within this page" in first
    assert "Routes 3-4 in stored order, sorted by count within this page" in second
    assert "Routes 5-5 in stored order, sorted by count within this page" in third
    assert link(first, "First page") is None and link(first, "Previous page") is None
    assert link(third, "Next page") is None and "<span>Last page</span>" in third
    assert link(second, "First page") == link(third, "First page") == "?limit=2"
    assert link(second, "Previous page") == "?limit=2"  # page 1 has no token
    assert table_routes(follow(stats, link(third, "Previous page"))) == table_routes(second)
    seen = table_routes(first) + table_routes(second) + table_routes(third)
    assert sorted(seen) == [f"/p/{i}" for i in range(1, 6)]
    # Totals say what they cover.
    assert "this page only" in second and "every route." not in second.split("<h2>")[0]


def test_a_page_holding_every_route_says_so(stats, counter_table):
    seed(counter_table, {"/a": 3, "/b": 2})
    _, page = get(stats, accept=BROWSER_ACCEPT)
    assert "All 2 routes, sorted by count." in page
    assert "<b>5 hits</b> over <b>2 routes</b>: every route." in page
    assert "<nav>" not in page


def test_previous_links_reach_back_a_bounded_number_of_pages(stats, counter_table):
    pages = 12
    seed(counter_table, {f"/deep/{i:02}": 1 for i in range(pages)})
    page, walked = follow(stats, "?limit=1"), []
    while link(page, "Next page"):
        walked.append(table_routes(page))
        page = follow(stats, link(page, "Next page"))
        assert len(link(page, "Next page") or "") < 4000  # the URL stays short
    walked.append(table_routes(page))
    assert len(walked) == pages

    back = 0
    while link(page, "Previous page"):
        page = follow(stats, link(page, "Previous page"))
        back += 1
        assert table_routes(page) == walked[-1 - back]  # the same page as on the way there
    assert back == stats.MAX_BACK
    assert "No previous link: a link keeps at most 8 earlier pages" in page
    assert link(page, "First page") == "?limit=1"


def test_a_page_whose_link_has_no_position_says_where_it_starts(stats, counter_table):
    seed(counter_table, {"/q/1": 1, "/q/2": 2, "/q/3": 3})
    _, first = get(stats, {"limit": "1"})
    page = follow(stats, f"?limit=1&next={first['next']}")  # a JSON client's token by hand
    route = stats.decode_token(first["next"])["route"]["S"]
    assert f'after <bdi dir="ltr">{route}</bdi> in stored order' in page
    assert "does not say how many came before" in page


@pytest.mark.parametrize(
    ("query", "words"),
    [
        ({"at": "2"}, "'at' and 'back' only come with 'next'"),
        ({"back": "0~"}, "'at' and 'back' only come with 'next'"),
        ({"next": "L2E", "at": "x"}, "'at' must be the number of routes before this page"),
        ({"next": "L2E", "at": "01"}, "'at' must be the number of routes before this page"),
        ({"next": "L2E", "back": "0~"}, "invalid 'back'"),  # no 'at'
        ({"next": "L2E", "at": "2", "back": "1~"}, "invalid 'back'"),  # only page 1 lacks a token
        ({"next": "L2E", "at": "2", "back": "0~.5~L2I"}, "invalid 'back': its pages must come"),
        ({"next": "L2E", "at": "2", "back": "1~!!"}, "invalid 'back' token"),
        ({"next": "L2E", "at": "9", "back": ".".join(["1~L2I"] * 9)}, "invalid 'back'"),
        ({"next": "L2E", "at": "9", "back": "1~" + "L2I" * 1000}, "invalid 'back'"),
        ({"route": "/a", "at": "2"}, "'route' cannot be combined"),
    ],
)
def test_bad_paging_parameters_are_400(stats, counter_table, query, words):
    result, body = get(stats, query)
    assert result["statusCode"] == 400
    assert body["error"].startswith(words)


def test_an_empty_table_says_nothing_was_counted(stats, counter_table):
    _, page = get(stats, accept=BROWSER_ACCEPT)
    assert "<p>No route has been counted yet.</p>" in page
    assert "All 0 routes" not in page
