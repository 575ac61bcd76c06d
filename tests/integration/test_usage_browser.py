"""The clients view (GET <stats>/usage in a browser) in headless Chromium at 375 px and
1280 px wide, after real counter writes that name their clients (lastClient) aggregated by
the real aggregator."""

from tests.conftest import ROOT, api_event, lambda_context, load_module
from tests.integration.test_dashboard_browser import (  # noqa: F401 (autouse fixture)
    PHONE,
    assert_readable,
    chromium_installed,
)
from tests.unit.test_stats import BROWSER_ACCEPT
from tests.unit.test_usage_aggregator import count_with_clients, run
from tools import browser

LONG_CLIENT = "customer-" + "with-a-very-long-api-key-name-" * 8
HITS = [
    (
        "/api/v1/reports/" + "quarterly-revenue-by-region-" * 6 + "2026",
        f"2026-12-0{d}T10:00:00Z",
        who,
    )
    for d in range(1, 8)
    for who in (LONG_CLIENT, "acme", "\u202egnp.exe")
] + [("/home", "2026-12-03T08:00:00Z", "acme")] * 3


def test_the_clients_view_and_a_clients_month_fit_a_phone_and_a_desktop(stream_tables, monkeypatch):
    monkeypatch.setenv("CLIENT_IDENTITY", "apikey")
    aggregator = load_module(ROOT / "handler" / "aggregator.py", "aggregator_usage_browser")
    stats = load_module(ROOT / "handler" / "stats.py", "stats_usage_browser")
    assert run(aggregator, count_with_clients(HITS)) == {"batchItemFailures": []}
    pages = {}
    for path, query, headings in (
        ("/_stats/usage", {"month": "2026-12"}, ["Top clients"]),
        ("/_stats/usage/acme", {"month": "2026-12", "client": LONG_CLIENT}, ["Routes"]),
    ):
        event = api_event("/_stats/usage", query=query, headers={"Accept": BROWSER_ACCEPT})
        result = stats.handler(event, lambda_context("StatsFunction"))
        assert result["statusCode"] == 200
        for heading in headings:
            assert f"<h2>{heading}</h2>" in result["body"]
        pages[path] = (200, result["headers"], result["body"])
    assert "U+202E" in pages["/_stats/usage"][2]  # a bidi control is shown, not obeyed
    with browser.serve(pages) as url:
        for path in pages:
            seen = browser.measure(f"{url}{path}", PHONE)
            assert_readable(seen)
            wide = browser.measure(f"{url}{path}", 1280)
            assert wide["scrollWidth"] <= 1280 and wide["styled"] == 1
