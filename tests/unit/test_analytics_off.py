"""Analytics=off: the counter alone. No stream, no aggregator, no series table; the stats
endpoints that need the series say the analytics are off; the dashboard shows the routes."""

import json
import subprocess

import boto3
import pytest

from deployer.template_reading import as_deployed as deployed
from local.streams import stream_mappings
from tests.conftest import BIN, ROOT, api_event, lambda_context, load_module

ANALYTICS_RESOURCES = {
    "SeriesTable",
    "AggregatorLogGroup",
    "AggregatorFunctionRole",
    "AggregatorFunction",
    "AggregatorErrors",
    "AggregatorThrottles",
    "AggregatorFailureQueue",
    "AggregatorStreamMapping",
    "AggregatorIteratorAge",
    "AggregatorGaveUp",
    "StatsReadSeriesPolicy",
}


def test_analytics_on_is_the_default_and_has_every_analytics_resource(template):
    assert template["Parameters"]["Analytics"]["Default"] == "on"
    on = deployed(template, {})["Resources"]
    assert set(on) >= ANALYTICS_RESOURCES
    assert on["CounterTable"]["Properties"]["StreamSpecification"]["StreamViewType"]
    stats = on["StatsFunction"]["Properties"]["Environment"]["Variables"]
    assert stats["SERIES_TABLE"] == {"Ref": "SeriesTable"}


def test_analytics_off_has_no_stream_no_aggregator_no_series_table(template):
    off = deployed(template, {"Analytics": "off"})
    resources = off["Resources"]

    assert not ANALYTICS_RESOURCES & set(resources)
    assert "StreamSpecification" not in resources["CounterTable"]["Properties"]
    assert not {"SeriesTableName", "AggregatorFailureQueueUrl"} & set(off["Outputs"])
    # Nothing left refers to a resource that is not there.
    text = json.dumps(resources)
    for gone in ANALYTICS_RESOURCES:
        assert f'"{gone}"' not in text, gone
    stats = resources["StatsFunction"]["Properties"]["Environment"]["Variables"]
    assert stats["SERIES_TABLE"] == ""
    # The counter table itself is the same table: same logical id, keys, retention.
    assert resources["CounterTable"]["DeletionPolicy"] == "RetainExceptOnCreate"
    # Turning the analytics off keeps an existing series table (not a create's rollback).
    assert template["Resources"]["SeriesTable"]["DeletionPolicy"] == "RetainExceptOnCreate"
    assert stream_mappings(template, {"Analytics": "off"}) == []
    assert [m.logical_id for m in stream_mappings(template, {})] == ["AggregatorStreamMapping"]


def test_the_template_with_analytics_off_by_default_passes_cfn_lint(template, tmp_path):
    off = json.loads(json.dumps(template))
    off["Parameters"]["Analytics"]["Default"] = "off"
    path = tmp_path / "off.json"
    path.write_text(json.dumps(off))
    done = subprocess.run(
        [str(BIN / "cfn-lint"), str(path), "--include-checks", "I"], capture_output=True, text=True
    )
    assert done.returncode == 0 and done.stdout == "", done.stdout + done.stderr


@pytest.fixture
def stats_off(counter_table, monkeypatch):
    monkeypatch.setenv("SERIES_TABLE", "")
    calls = []
    module = load_module(ROOT / "handler" / "stats.py", "stats_analytics_off")
    module.dynamodb.meta.events.register(
        "before-call.dynamodb", lambda model, **_: calls.append(model.name)
    )
    boto3.client("dynamodb").update_item(
        TableName=counter_table,
        Key={"route": {"S": "/a"}},
        UpdateExpression="SET #c = :one, firstSeen = :t, lastSeen = :t",
        ExpressionAttributeNames={"#c": "count"},
        ExpressionAttributeValues={":one": {"N": "1"}, ":t": {"S": "2026-12-01T03:00:00Z"}},
    )
    return module, calls


def call(stats, path: str, query: dict | None = None, html: bool = False) -> dict:
    headers = {"Accept": "text/html"} if html else None
    return stats.handler(
        api_event(path, query=query, headers=headers), lambda_context("StatsFunction")
    )


@pytest.mark.parametrize(
    ("path", "query"),
    [
        ("/_stats/top", None),
        ("/_stats/top", {"period": "day"}),
        ("/_stats", {"series": "hour"}),
        ("/_stats", {"route": "/a", "series": "day"}),
    ],
)
def test_what_needs_the_series_says_the_analytics_are_off(stats_off, path, query):
    stats, calls = stats_off

    result = call(stats, path, query)

    assert result["statusCode"] == 404
    assert "analytics are off for this stack" in json.loads(result["body"])["error"]
    assert calls == []  # no call to a table that is not there


def test_the_routes_and_the_dashboard_without_its_analytics_panels(stats_off):
    stats, calls = stats_off

    page = call(stats, "/_stats", {}, html=True)
    route = call(stats, "/_stats", {"route": "/a"}, html=True)
    routes = json.loads(call(stats, "/_stats")["body"])["routes"]

    assert page["statusCode"] == route["statusCode"] == 200
    assert "/a" in page["body"] and "Routes" in page["body"]
    for body in (page["body"], route["body"]):
        assert "Top routes" not in body and "Hits per hour" not in body
    assert [r["route"] for r in routes] == ["/a"]
    assert set(calls) == {"Scan", "GetItem"}  # the counter table only
