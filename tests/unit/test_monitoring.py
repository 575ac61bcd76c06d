"""Alarms reach the alarm topic (and AlarmEmail when set); the dashboard shows the essentials."""

import json
import re

import pytest

from tests.conftest import ROOT


def alarms(resources: dict) -> dict:
    return {
        (r["Properties"]["Namespace"], str(r["Properties"]["MetricName"])): r["Properties"]
        for r in resources.values()
        if r["Type"] == "AWS::CloudWatch::Alarm"
    }


@pytest.mark.parametrize(
    ("namespace", "metric", "dimensions"),
    [
        ("AWS/Lambda", "Errors", ["FunctionName"]),
        ("AWS/Lambda", "Throttles", ["FunctionName"]),
        ("AWS/ApiGateway", "5XXError", ["ApiName", "Stage"]),
        ("AWS/ApiGateway", "Latency", ["ApiName", "Stage"]),
        ("AWS/DynamoDB", "WriteThrottleEvents", ["TableName"]),
        ("AWS/Lambda", "DestinationDeliveryFailures", ["FunctionName"]),
        ("RouteCounter", "RecordsNotAggregated", ["FunctionName"]),
    ],
)
def test_alarm_notifies_the_topic_and_ignores_idle_periods(
    resources, namespace, metric, dimensions
):
    alarm = alarms(resources)[(namespace, metric)]

    assert [d["Name"] for d in alarm["Dimensions"]] == dimensions
    assert alarm["AlarmActions"] == [{"Ref": "AlarmTopic"}]
    assert alarm["TreatMissingData"] == "notBreaching"


def test_alarms_mail_only_when_they_fire(resources):
    """OKActions fire on each new alarm's INSUFFICIENT_DATA -> OK too: 7 mails per create."""
    for props in alarms(resources).values():
        assert "OKActions" not in props
        assert "InsufficientDataActions" not in props


def test_topic_display_name_fits_sns_limit_for_the_longest_stack_name(resources):
    """SNS DisplayName takes at most 100 characters; a stack name takes up to 128."""
    name = resources["AlarmTopic"]["Properties"]["DisplayName"]
    if isinstance(name, dict):
        name = name["Fn::Sub"].replace("${AWS::StackName}", "s" * 128)
    assert 0 < len(name) <= 100


def test_latency_alarm_watches_a_high_percentile(resources):
    latency = alarms(resources)[("AWS/ApiGateway", "Latency")]
    assert latency["ExtendedStatistic"] in ("p90", "p99")
    assert "Statistic" not in latency


def test_api_alarms_name_the_api_by_the_name_it_is_given(resources):
    api_name = resources["CounterApi"]["Properties"]["Name"]
    for (namespace, _), alarm in alarms(resources).items():
        if namespace == "AWS/ApiGateway":
            dims = {d["Name"]: d["Value"] for d in alarm["Dimensions"]}
            assert dims == {"ApiName": api_name, "Stage": {"Ref": "ApiStage"}}


def test_email_is_subscribed_only_when_given(template, resources):
    assert template["Parameters"]["AlarmEmail"]["Default"] == ""
    subscription = resources["AlarmEmailSubscription"]
    assert subscription["Condition"] == "HasAlarmEmail"
    assert subscription["Properties"] == {
        "Endpoint": {"Ref": "AlarmEmail"},
        "Protocol": "email",
        "TopicArn": {"Ref": "AlarmTopic"},
    }
    assert "Condition" not in resources["AlarmTopic"]


def dashboard_body(resources: dict, analytics: bool = True) -> dict:
    """The dashboard as deployed with Analytics on (the default) or off."""
    condition, on, off = resources["Dashboard"]["Properties"]["DashboardBody"]["Fn::If"]
    assert condition == "HasAnalytics"
    text = (on if analytics else off)["Fn::Sub"]
    known = {"AWS::Region": "eu-west-1", "AWS::StackName": "rc"} | {
        name: f"<{name}>" for name in resources
    }
    used = set(re.findall(r"\$\{([^}]+)\}", text))
    assert used <= set(known), f"unknown Fn::Sub variables {used - set(known)}"
    return json.loads(re.sub(r"\$\{([^}]+)\}", lambda m: known[m.group(1)], text))


def test_dashboard_shows_hits_latency_errors_and_capacity(resources):
    widgets = dashboard_body(resources)["widgets"]
    shown = set()
    for widget in widgets:
        for metric in widget["properties"]["metrics"]:
            names = [m for m in metric if isinstance(m, str)]
            stat = next((m["stat"] for m in metric if isinstance(m, dict)), None)
            shown.add((names[1], stat) if names[0] != "..." else ("Latency", stat))

    assert ("Count", None) in shown
    assert {("Latency", "p50"), ("Latency", "p90"), ("Latency", "p99")} <= shown
    assert {("4XXError", None), ("5XXError", None), ("Errors", None)} <= shown
    assert {("ConsumedReadCapacityUnits", None), ("ConsumedWriteCapacityUnits", None)} <= shown


def test_dashboard_errors_widget_shows_every_function(resources):
    (errors,) = [
        w for w in dashboard_body(resources)["widgets"] if w["properties"]["title"] == "Errors"
    ]
    lambda_errors = {
        m[3] for m in errors["properties"]["metrics"] if m[:2] == ["AWS/Lambda", "Errors"]
    }
    functions = [n for n, r in resources.items() if r["Type"] == "AWS::Lambda::Function"]
    assert len(functions) == 3  # counter, stats, aggregator
    assert lambda_errors == {f"<{name}>" for name in functions}
    # With Analytics off there is no aggregator, and the dashboard names none.
    (errors,) = [
        w
        for w in dashboard_body(resources, analytics=False)["widgets"]
        if w["properties"]["title"] == "Errors"
    ]
    assert {m[3] for m in errors["properties"]["metrics"] if m[0] == "AWS/Lambda"} == {
        "<CounterFunction>",
        "<StatsFunction>",
    }


def test_dashboard_name_is_unique_per_region(resources):
    """Dashboards are global to the account: the same stack in two regions needs two."""
    name = resources["Dashboard"]["Properties"]["DashboardName"]
    assert name == {"Fn::Sub": "${AWS::StackName}-${AWS::Region}"}


AGGREGATOR = {"Name": "FunctionName", "Value": {"Ref": "AggregatorFunction"}}


@pytest.mark.parametrize(
    ("title", "namespace", "metric"),
    [
        # ReportBatchItemFailures: a batch handed back in part is no Lambda error, so Errors
        # never sees it; the aggregator's own metric does (test_aggregator_metric).
        ("AggregatorRecordsNotAggregated", "RouteCounter", "RecordsNotAggregated"),
        # Lambda could not put a given-up batch's description in the failure queue, which
        # AggregatorGaveUp watches: the batch is gone without a trace.
        ("AggregatorDestinationFailures", "AWS/Lambda", "DestinationDeliveryFailures"),
    ],
)
def test_what_the_aggregator_could_lose_without_an_error_pages_at_once(
    resources, title, namespace, metric
):
    props = resources[title]["Properties"]
    assert (props["Namespace"], props["MetricName"], props["Statistic"]) == (
        namespace,
        metric,
        "Sum",
    )
    assert props["Dimensions"] == [AGGREGATOR]
    assert (props["Threshold"], props["ComparisonOperator"], props["Period"]) == (
        1,
        "GreaterThanOrEqualToThreshold",
        60,
    )
    assert props["AlarmActions"] == [{"Ref": "AlarmTopic"}]


def test_a_stream_mapping_that_never_invokes_the_aggregator_pages(resources):
    """No invocation means no IteratorAge, no Errors, nothing in the queue: the counter's
    writes (each a stream record) with no aggregator invocation page instead. Lambda sends
    Invocations only when invoked, so its missing data is the breach; the writes' missing
    data is an idle site."""
    composite = resources["AggregatorNotInvoked"]
    assert composite["Type"] == "AWS::CloudWatch::CompositeAlarm"
    rule = composite["Properties"]["AlarmRule"]["Fn::Sub"]
    assert rule == 'ALARM("${CounterTableWrites}") AND ALARM("${AggregatorIdle}")'
    assert composite["Properties"]["AlarmActions"] == [{"Ref": "AlarmTopic"}]

    writes = resources["CounterTableWrites"]["Properties"]
    assert (writes["Namespace"], writes["MetricName"], writes["Statistic"]) == (
        "AWS/DynamoDB",
        "SuccessfulRequestLatency",
        "SampleCount",
    )
    assert writes["Dimensions"] == [
        {"Name": "TableName", "Value": {"Ref": "CounterTable"}},
        {"Name": "Operation", "Value": "UpdateItem"},
    ]
    assert (writes["Threshold"], writes["ComparisonOperator"], writes["TreatMissingData"]) == (
        1,
        "GreaterThanOrEqualToThreshold",
        "notBreaching",
    )
    idle = resources["AggregatorIdle"]["Properties"]
    assert (idle["Namespace"], idle["MetricName"], idle["Statistic"]) == (
        "AWS/Lambda",
        "Invocations",
        "Sum",
    )
    assert idle["Dimensions"] == [AGGREGATOR]
    assert (idle["Threshold"], idle["ComparisonOperator"], idle["TreatMissingData"]) == (
        1,
        "LessThanThreshold",
        "breaching",
    )
    # the same windows, every one of them: a record near a window's end is read in the next
    for key in ("Period", "EvaluationPeriods", "DatapointsToAlarm"):
        assert writes[key] == idle[key]
    assert writes["EvaluationPeriods"] == writes["DatapointsToAlarm"] >= 2
    # inputs only: the composite is what notifies
    assert "AlarmActions" not in writes and "AlarmActions" not in idle


def test_dashboard_shows_the_series_tables_transaction_conflicts(resources):
    metrics = [m for w in dashboard_body(resources)["widgets"] for m in w["properties"]["metrics"]]
    assert ["AWS/DynamoDB", "TransactionConflict", "TableName", "<SeriesTable>"] in metrics
    assert ["RouteCounter", "RecordsNotAggregated", "FunctionName", "<AggregatorFunction>"] in (
        metrics
    )


def test_the_alarms_doc_names_every_alarm_that_notifies(resources):
    """docs/operations-alarms.md's "What pages when" table has a row for every alarm that
    notifies the topic, those made only with some parameters (a Backend's) included."""
    doc = (ROOT / "docs" / "operations-alarms.md").read_text()
    table = doc.split("## What pages when", 1)[1].split("\n\n", 2)[1]
    named = set(re.findall(r"^\| [^|]*", table, flags=re.MULTILINE))
    in_rows = {name for row in named for name in re.findall(r"`(\w+)`", row)}
    notifying = {
        title
        for title, r in resources.items()
        if r["Type"] in ("AWS::CloudWatch::Alarm", "AWS::CloudWatch::CompositeAlarm")
        and r["Properties"].get("AlarmActions")
    }

    assert "UncountedHits" in notifying
    assert notifying - in_rows == set()
