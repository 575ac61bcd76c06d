"""The template's hits-over-time part: the counter table's stream, the series table, the
aggregator with its least-privilege role, its event source mapping, failure queue and alarms."""

import json

from local.moto_fidelity import replacements
from tests.conftest import ROOT, role_statements

STREAM_ARN = {"Fn::GetAtt": ["CounterTable", "StreamArn"]}
SERIES_ARN = {"Fn::GetAtt": ["SeriesTable", "Arn"]}
QUEUE_ARN = {"Fn::GetAtt": ["AggregatorFailureQueue", "Arn"]}


def grants(resources: dict, role: str) -> dict:
    """Sid -> (actions, resources) of a role as deployed with default parameters."""
    return {s["Sid"]: (s["Action"], s["Resource"]) for s in role_statements(resources[role])}


def test_counter_table_streams_new_and_old_images_updated_in_place(template, resources):
    """The aggregator needs each new count and lastSeen, and the old count to tell a hit
    from a count set by hand (docs/exactness.md). The key schema stays (see
    test_data_protection), and a stack of the NEW_IMAGE version updates the table in place:
    StreamSpecification is no property whose change replaces a table."""
    props = resources["CounterTable"]["Properties"]
    assert props["StreamSpecification"] == {
        "Fn::If": [
            "HasAnalytics",
            {"StreamViewType": "NEW_AND_OLD_IMAGES"},
            {"Ref": "AWS::NoValue"},
        ]
    }
    before = json.loads(json.dumps(template))
    before["Resources"]["CounterTable"]["Properties"]["StreamSpecification"] = {
        "Fn::If": ["HasAnalytics", {"StreamViewType": "NEW_IMAGE"}, {"Ref": "AWS::NoValue"}]
    }
    assert replacements(before, template, {}, {})["CounterTable"] == "False"


def test_series_table_is_route_and_bucket_with_hourly_ttl(resources, template):
    props = resources["SeriesTable"]["Properties"]
    assert props["KeySchema"] == [
        {"AttributeName": "route", "KeyType": "HASH"},
        {"AttributeName": "bucket", "KeyType": "RANGE"},
    ]
    assert props["TimeToLiveSpecification"] == {"AttributeName": "expiresAt", "Enabled": True}
    assert props["BillingMode"] == "PAY_PER_REQUEST"
    assert props["SSESpecification"] == resources["CounterTable"]["Properties"]["SSESpecification"]
    parameter = template["Parameters"]["SeriesHourlyDays"]
    assert parameter["Default"] == "30"
    assert (
        parameter["ConstraintDescription"] == "a whole number from 1 to 3650 without leading zeros"
    )
    environment = resources["AggregatorFunction"]["Properties"]["Environment"]["Variables"]
    assert environment == {
        "SERIES_TABLE": {"Ref": "SeriesTable"},
        "SERIES_HOURLY_DAYS": {"Ref": "SeriesHourlyDays"},
        "CLIENT_IDENTITY": {"Ref": "ClientIdentity"},
    }


def test_aggregator_runs_its_handler_file_and_nothing_may_invoke_it_but_its_mapping(resources):
    function = resources["AggregatorFunction"]["Properties"]
    source = (ROOT / "handler" / "aggregator.py").read_text(encoding="utf-8")
    assert function["Code"]["ZipFile"] == source
    permissions = [r for r in resources.values() if r["Type"] == "AWS::Lambda::Permission"]
    assert not any("AggregatorFunction" in json.dumps(p) for p in permissions)


def test_aggregator_role_reads_the_stream_writes_the_series_and_its_queue_only(resources):
    assert grants(resources, "AggregatorFunctionRole") == {
        "ReadCounterStream": (
            ["dynamodb:DescribeStream", "dynamodb:GetRecords", "dynamodb:GetShardIterator"],
            [STREAM_ARN],
        ),
        # ListStreams has no resource type: on the stream ARN it authorised nothing. Lambda's
        # stream mapping asks for it, so it is granted where IAM matches it, alone.
        "ListStreamsForMapping": (["dynamodb:ListStreams"], ["*"]),
        "WriteSeries": (
            ["dynamodb:BatchGetItem", "dynamodb:GetItem", "dynamodb:UpdateItem"],
            [SERIES_ARN],
        ),
        "KeepFailedBatches": (["sqs:SendMessage"], [QUEUE_ARN]),
        "WriteOwnLogs": (
            ["logs:CreateLogStream", "logs:PutLogEvents"],
            [{"Fn::GetAtt": ["AggregatorLogGroup", "Arn"]}],
        ),
        "SendTraces": (["xray:PutTraceSegments", "xray:PutTelemetryRecords"], ["*"]),
    }


def test_no_other_role_reaches_the_stream_or_the_queue_and_only_stats_reads_the_series(
    resources,
):
    for role in ("CounterFunctionRole", "StatsFunctionRole"):
        text = json.dumps(role_statements(resources[role]))
        for arn in (STREAM_ARN, QUEUE_ARN):
            assert json.dumps(arn) not in text, role
    # The counter's own role never reaches the series table: MaxRoutes' ledger is a
    # conditional policy of its own (only with MaxRoutes), on that one item
    assert json.dumps(SERIES_ARN) not in json.dumps(
        role_statements(resources["CounterFunctionRole"])
    )
    for title, role, sid, action in (
        ("RouteLedgerPolicy", "CounterFunctionRole", "KeepRouteLedger", "dynamodb:UpdateItem"),
        ("StatsReadLedgerPolicy", "StatsFunctionRole", "ReadRouteLedger", "dynamodb:GetItem"),
    ):
        ledger = resources[title]
        assert ledger["Condition"] == "HasMaxRoutes"
        assert ledger["Properties"]["Roles"] == [{"Ref": role}]
        ((statement),) = ledger["Properties"]["PolicyDocument"]["Statement"]
        assert (statement["Sid"], statement["Action"], statement["Resource"]) == (
            sid,
            [action],
            [SERIES_ARN],
        )
        assert statement["Condition"] == {
            "ForAllValues:StringEquals": {"dynamodb:LeadingKeys": ["#routes"]}
        }
    series = resources["StatsReadSeriesPolicy"]  # only with Analytics on
    assert series["Condition"] == "HasAnalytics"
    assert series["Properties"]["Roles"] == [{"Ref": "StatsFunctionRole"}]
    ((statement),) = series["Properties"]["PolicyDocument"]["Statement"]
    assert (statement["Sid"], statement["Action"], statement["Resource"]) == (
        "ReadSeries",
        ["dynamodb:Query"],
        [SERIES_ARN],
    )


def test_stream_mapping_batches_reports_item_failures_bisects_and_keeps_what_it_gave_up(
    resources,
    template,
):
    props = resources["AggregatorStreamMapping"]["Properties"]
    assert props["EventSourceArn"] == STREAM_ARN
    assert props["FunctionName"] == {"Ref": "AggregatorFunction"}
    assert props["StartingPosition"] == "TRIM_HORIZON"  # nothing counted before it is skipped
    assert props["BatchSize"] == {"Ref": "AggregatorBatchSize"}
    assert props["MaximumBatchingWindowInSeconds"] == {"Ref": "AggregatorBatchingWindowSeconds"}
    size = template["Parameters"]["AggregatorBatchSize"]
    window = template["Parameters"]["AggregatorBatchingWindowSeconds"]
    # Whole numbers of their ranges (test_template.py's WHOLE_NUMBERS checks the patterns)
    assert (size["Type"], size["Default"]) == ("String", "10000")
    assert (window["Type"], window["Default"]) == ("String", "30")
    assert props["BisectBatchOnFunctionError"] is True
    assert props["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    # A tumbling window, for the shard's id in each event (the aggregator's all-routes
    # parts): Lambda's longest, so batches are cut at its boundaries least often.
    assert props["TumblingWindowInSeconds"] == 900
    assert "ParallelizationFactor" not in props  # one batch of a shard at a time
    assert 0 <= props["MaximumRetryAttempts"] <= 10000
    assert props["DestinationConfig"] == {"OnFailure": {"Destination": QUEUE_ARN}}


def test_failure_queue_is_encrypted_and_keeps_messages_for_two_weeks(resources):
    queue = resources["AggregatorFailureQueue"]
    props = queue["Properties"]
    assert props["KmsMasterKeyId"] == {
        "Fn::If": ["HasKmsKey", {"Ref": "KmsKeyArn"}, {"Ref": "AWS::NoValue"}]
    }
    assert props["SqsManagedSseEnabled"] == {"Fn::If": ["HasKmsKey", {"Ref": "AWS::NoValue"}, True]}
    assert props["MessageRetentionPeriod"] == 14 * 24 * 3600
    assert queue["DeletionPolicy"] == queue["UpdateReplacePolicy"] == "Delete"


def test_alarms_say_when_the_aggregator_falls_behind_or_gives_up(resources):
    age = resources["AggregatorIteratorAge"]["Properties"]
    assert (age["Namespace"], age["MetricName"], age["Statistic"]) == (
        "AWS/Lambda",
        "IteratorAge",
        "Maximum",
    )
    assert age["Dimensions"] == [{"Name": "FunctionName", "Value": {"Ref": "AggregatorFunction"}}]
    assert age["AlarmActions"] == [{"Ref": "AlarmTopic"}]
    gave_up = resources["AggregatorGaveUp"]["Properties"]
    assert gave_up["MetricName"] == "ApproximateNumberOfMessagesVisible"
    assert gave_up["Dimensions"] == [
        {"Name": "QueueName", "Value": {"Fn::GetAtt": ["AggregatorFailureQueue", "QueueName"]}}
    ]
    for name in ("AggregatorErrors", "AggregatorThrottles"):
        assert resources[name]["Type"] == "AWS::CloudWatch::Alarm"


def test_the_aggregator_has_time_to_report_a_batch_before_lambda_stops_it(resources):
    """It stops writing RESERVE_MS before its timeout and reports the rest; the API's
    functions keep the shorter timeout under API Gateway's 29 s."""
    from tests.conftest import load_module

    aggregator = load_module(ROOT / "handler" / "aggregator.py", "aggregator_for_timeout")
    timeout = resources["AggregatorFunction"]["Properties"]["Timeout"]
    assert timeout * 1000 >= 4 * aggregator.RESERVE_MS
    counter = resources["CounterFunction"]["Properties"]["Timeout"]["Fn::If"][1:]
    for timeout in [*counter, resources["StatsFunction"]["Properties"]["Timeout"]]:
        assert timeout < 29
