"""The dashboard in headless Chromium at 375 px wide, as a phone user sees it."""

import os
import time

import pytest

from local.streams import stream_event
from tests.conftest import ROOT, api_event, lambda_context, load_module, stream_records
from tests.unit.test_backend_monitoring import answer_hit
from tests.unit.test_stats import BROWSER_ACCEPT, seed
from tests.unit.test_stats_series import count_and_aggregate
from tools import browser

MISSING = (
    "Chromium is not installed (Debian: apt-get install chromium); it is optional: only the"
    " dashboard's browser tests need it"
)


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("true", "1", "yes")


@pytest.fixture(autouse=True, scope="module")
def chromium_installed() -> None:
    """Skipped where Chromium is missing, but not in CI: CI installs what its tests need
    (.ci/run does), so there a missing browser is a failure that says so."""
    if browser.chromium() is None:
        if in_ci():
            pytest.fail(f"{MISSING}: CI must install it (.ci/run does)", pytrace=False)
        pytest.skip(MISSING)


PHONE = 375
LONG_ROUTE = "/api/v1/reports/" + "quarterly-revenue-by-region-" * 6 + "2026"
UNBROKEN_ROUTE = "/" + "x" * 300  # no hyphen or slash to break at


def handler_page(stats, counter_table, query=None) -> tuple[int, dict, str]:
    seed(counter_table, {LONG_ROUTE: 40, UNBROKEN_ROUTE: 7, "/\u202egnp.exe": 3, "/home": 900})
    event = api_event("/_stats", query=query, headers={"Accept": BROWSER_ACCEPT})
    result = stats.handler(event, lambda_context("StatsFunction"))
    return result["statusCode"], result["headers"], result["body"]


def at_phone_width(status: int, headers: dict, page: str) -> dict:
    """Served with the handler's own headers (its Content-Security-Policy too)."""
    with browser.serve({"/_stats": (status, headers, page)}) as url:
        return browser.measure(f"{url}/_stats", PHONE)


def assert_readable(seen: dict) -> None:
    assert seen["viewport"] == PHONE
    assert seen["scrollWidth"] <= PHONE, "the page scrolls sideways"
    assert seen["smallestFont"] >= 11, f"text drawn smaller than 11 px: {seen['small']}"
    assert seen["styled"] == 1, "the policy refused the page's style (its hash?)"


def test_a_page_of_long_routes_fits_a_phone_without_tiny_text(stats, counter_table):
    seen = at_phone_width(*handler_page(stats, counter_table, {"limit": "3"}))
    assert_readable(seen)


def test_the_sample_front_page_fits_a_phone_without_tiny_text():
    # What `make screenshots` shows: the front page, paged, every panel filled.
    stats = browser.load_stats()
    headers = {"Content-Type": "text/html; charset=utf-8", "Content-Security-Policy": stats.CSP}
    assert_readable(at_phone_width(200, headers, browser.sample_page(stats)))


def test_a_bad_query_is_a_readable_error_page(stats, counter_table):
    status, headers, page = handler_page(stats, counter_table, {"stale": "soon"})
    assert status == 400
    assert "&#x27;stale&#x27; must be a whole number of days" in page
    assert_readable(at_phone_width(status, headers, page))


def test_the_front_page_and_a_routes_page_after_real_hits_fit_a_phone(stream_tables, aggregator):
    # Hits counted, aggregated from the stream, then the handler's own pages at 375 px:
    # the front page with its totals, all-routes charts and both top panels.
    counter = load_module(ROOT / "handler" / "counter.py", "counter_for_browser")
    stats = load_module(ROOT / "handler" / "stats.py", "stats_for_browser")
    now = time.time()
    hits = [(LONG_ROUTE, now - hours * 3600) for hours in range(0, 21, 3)] + [("/home", now)] * 3
    hits += [(UNBROKEN_ROUTE, now - days * 86400) for days in (2, 9)]
    count_and_aggregate(counter, aggregator, stream_tables, hits)

    assert_pages_readable(
        stats,
        {
            "route": (
                {"route": LONG_ROUTE},
                ["Hits per hour, last 24 hours", "Hits per day, last 30 days"],
            ),
            "front": (
                None,
                [
                    "All routes, since this stack began keeping hits over time",
                    "Hits per hour, last 24 hours, all routes",
                    "Hits per day, last 30 days, all routes",
                    "Top routes of all time",
                    "Top routes today",
                    "Not seen for 7 days or more",
                ],
            ),
        },
    )


def assert_pages_readable(stats, pages: dict, widths: tuple = ()) -> None:
    """Each page (name -> (query, its headings)) has its panels and is readable at 375 px;
    at each of `widths` it does not scroll sideways either."""
    for query, panels in pages.values():
        event = api_event("/_stats", query=query, headers={"Accept": BROWSER_ACCEPT})
        result = stats.handler(event, lambda_context("StatsFunction"))
        assert result["statusCode"] == 200
        for heading in panels:
            assert f"<h2>{heading}</h2>" in result["body"]
        assert_readable(at_phone_width(200, result["headers"], result["body"]))
        with browser.serve({"/_stats": (200, result["headers"], result["body"])}) as url:
            for width in widths:
                seen = browser.measure(f"{url}/_stats", width)
                assert seen["scrollWidth"] <= width and seen["styled"] == 1, width


def test_a_backends_answers_on_the_front_page_and_a_routes_page_fit_a_phone(
    stream_tables, aggregator
):
    # docs/monitoring.md: hits answered by a backend (the counter's contract write), then
    # the answers charts and the slowest / highest error rate panels at 375 and 1280 px.
    stats = load_module(ROOT / "handler" / "stats.py", "stats_for_browser_answers")
    now = time.time()
    for i in range(36):
        route = (LONG_ROUTE, UNBROKEN_ROUTE, "/home")[i % 3]
        at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now - (i % 12) * 3600 * 30))
        answer_hit(stream_tables.counter, route, at, (200, 404, 503)[i % 5 % 3], 7 * i)
    records = stream_event(stream_records(stream_tables.stream_arn), stream_tables.stream_arn)
    assert aggregator.handler(records, lambda_context()) == {"batchItemFailures": []}

    assert_pages_readable(
        stats,
        {
            "route": (
                {"route": LONG_ROUTE},
                ["Answers of all time", "Answers per hour, last 24 hours"],
            ),
            "front": (
                None,
                [
                    "Answers per day, last 30 days, all routes",
                    "Slowest routes of all time",
                    "Highest error rate of all time",
                ],
            ),
        },
        widths=(1280,),
    )


def test_a_route_reads_decoded_in_the_browser_with_its_stored_form_on_hover(stats, counter_table):
    """As Chromium draws it: the text a reader sees, and the tooltip (title) on hover; a
    right-to-left override in a route is shown as its code point, never applied."""
    seed(counter_table, {"/caf%C3%A9/men%C3%BC": 5, "/%E2%80%AEgnp.exe": 2})
    event = api_event("/_stats", headers={"Accept": BROWSER_ACCEPT})
    result = stats.handler(event, lambda_context("StatsFunction"))
    routes = (
        "[...document.querySelectorAll('td.r bdi')]"
        ".map(b => [b.innerText, b.getAttribute('title')])"
    )

    pages = {"/_stats": (200, result["headers"], result["body"])}
    with browser.serve(pages) as url, browser.tab() as page:
        page.open(f"{url}/_stats", PHONE)
        seen = page.evaluate(routes)

    assert seen == [["/café/menü", "/caf%C3%A9/men%C3%BC"], ["/%E2%80%AEgnp.exe", None]]
