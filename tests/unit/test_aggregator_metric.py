"""The aggregator's metric for records it hands back to Lambda (ReportBatchItemFailures): a
partial batch failure is no Lambda error, so this CloudWatch embedded-metric-format line is
what AggregatorRecordsNotAggregated alarms on."""

import json

from tests.conftest import lambda_context
from tests.unit import test_aggregator
from tests.unit.test_aggregator import lose_connections_for, pairs_of

counted = test_aggregator.counted  # the fixture: HITS counted, as Lambda's stream event


def emf_metrics(line: dict) -> dict[tuple[str, str, tuple], float]:
    """(namespace, metric, dimension values) -> value, as CloudWatch Logs extracts an EMF
    log event (its _aws block names the metrics; the values are the line's own fields)."""
    found = {}
    for directive in line["_aws"]["CloudWatchMetrics"]:
        for dimensions in directive["Dimensions"]:
            values = tuple(line[d] for d in dimensions)
            for metric in directive["Metrics"]:
                found[(directive["Namespace"], metric["Name"], values)] = line[metric["Name"]]
    assert isinstance(line["_aws"]["Timestamp"], int)
    return found


def test_records_handed_back_are_a_metric_in_the_log_line_the_alarm_watches(
    aggregator,
    counted,
    capsys,
    resources,
):
    records = counted["Records"]
    aggregator.MOST_ITEMS = 8  # several transactions; the one with /c loses its connection
    dropped = lose_connections_for(aggregator, "/c")

    result = aggregator.handler({"Records": records}, lambda_context("AggregatorFunction"))

    (failure,) = result["batchItemFailures"]
    first = next(i for i, r in enumerate(records) if pairs_of(r) & dropped)
    assert failure["itemIdentifier"] == records[first]["dynamodb"]["SequenceNumber"]
    (line,) = [json.loads(out) for out in capsys.readouterr().out.splitlines()]
    assert line["level"] == "ERROR"  # still the one log line of the invocation
    alarm = resources["AggregatorRecordsNotAggregated"]["Properties"]
    # what Lambda retries: the reported record and every one after it
    assert emf_metrics(line) == {
        (alarm["Namespace"], alarm["MetricName"], ("AggregatorFunction",)): len(records) - first
    }
    assert [d["Name"] for d in alarm["Dimensions"]] == ["FunctionName"]


def test_a_batch_written_whole_reports_no_metric(aggregator, counted, capsys):
    result = aggregator.handler(counted, lambda_context("AggregatorFunction"))

    assert result == {"batchItemFailures": []}
    (line,) = [json.loads(out) for out in capsys.readouterr().out.splitlines()]
    assert "_aws" not in line
