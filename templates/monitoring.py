"""Alarms, their SNS topic and the stack's CloudWatch dashboard."""

import json
from dataclasses import dataclass

from troposphere import AWSObject, If, NoValue, Ref, Sub
from troposphere.apigateway import Stage
from troposphere.awslambda import Function
from troposphere.cloudwatch import Alarm, Dashboard, MetricDimension
from troposphere.dynamodb import Table
from troposphere.logs import LogGroup, MetricFilter, MetricTransformation
from troposphere.sns import SubscriptionResource, Topic

from templates.parameters import StackParameters

PERIOD_SECONDS = 60
LATENCY_ALARM_MS = 1000


def alarm_topic(params: StackParameters) -> Topic:
    """Where every alarm notifies.

    Encrypted with KmsKeyArn when one is given (its key policy must let
    cloudwatch.amazonaws.com use it). Not with the AWS managed alias/aws/sns key: its
    policy cannot let CloudWatch publish, so alarm notifications would be dropped.
    """
    return Topic(
        "AlarmTopic",
        Metadata={
            "checkov": {
                "skip": [
                    {
                        "id": "CKV_AWS_26",
                        "comment": "alias/aws/sns blocks CloudWatch; KmsKeyArn used when set",
                    }
                ]
            }
        },
        # At most 100 characters: a stack name (up to 128) does not fit. The alarm names
        # in each notification carry the stack name.
        DisplayName="Route Counter alarms",
        KmsMasterKeyId=If(params.has_kms_key, Ref(params.kms_key_arn), NoValue),
    )


def alarm_subscription(topic: Topic, params: StackParameters) -> SubscriptionResource:
    """AlarmEmail receives the alarms (after confirming AWS's mail); only when set."""
    return SubscriptionResource(
        "AlarmEmailSubscription",
        Condition=params.has_alarm_email,
        TopicArn=Ref(topic),
        Protocol="email",
        Endpoint=Ref(params.alarm_email),
    )


def alarm(
    title: str,
    topic: Topic | None,
    description: str,
    namespace: str,
    metric: str,
    dimensions: dict,
    threshold: float,
    statistic: str = "Sum",
    evaluation_periods: int = 1,
    datapoints: int = 1,
    period: int = PERIOD_SECONDS,
    comparison: str = "GreaterThanOrEqualToThreshold",
    missing: str = "notBreaching",
) -> Alarm:
    """An alarm on one metric; by default missing data (no traffic) is healthy.

    It notifies on ALARM only. OKActions would also fire on every alarm's first
    INSUFFICIENT_DATA -> OK transition (a mail per alarm on each create), and CloudWatch
    cannot limit them to leaving ALARM; the console and the dashboard show recovery.
    topic None: no action (an input of a composite alarm, which notifies instead).
    """
    # A percentile is an ExtendedStatistic; the two properties exclude each other.
    kind = "ExtendedStatistic" if statistic.startswith("p") else "Statistic"
    actions = {"AlarmActions": [Ref(topic)]} if topic is not None else {}
    return Alarm(
        title,
        AlarmName=Sub("${AWS::StackName}-" + title),
        AlarmDescription=description,
        Namespace=namespace,
        MetricName=metric,
        Dimensions=[MetricDimension(Name=k, Value=v) for k, v in dimensions.items()],
        **{kind: statistic},
        Period=period,
        EvaluationPeriods=evaluation_periods,
        DatapointsToAlarm=datapoints,
        Threshold=threshold,
        ComparisonOperator=comparison,
        TreatMissingData=missing,
        **actions,
    )


def function_alarms(prefix: str, function: Function, topic: Topic) -> list[Alarm]:
    """Any error or throttle of the function (reusable for every function of the stack)."""
    dims = {"FunctionName": Ref(function)}
    return [
        alarm(
            f"{prefix}Errors",
            topic,
            "The function raised or timed out.",
            "AWS/Lambda",
            "Errors",
            dims,
            1,
        ),
        alarm(
            f"{prefix}Throttles",
            topic,
            "Invocations were throttled (concurrency exhausted).",
            "AWS/Lambda",
            "Throttles",
            dims,
            1,
        ),
    ]


def api_alarms(stage: Stage, topic: Topic) -> list[Alarm]:
    # The API's name is the stack name (api.rest_api).
    dims = {"ApiName": Sub("${AWS::StackName}"), "Stage": Ref(stage)}
    return [
        alarm(
            "Api5XXErrors",
            topic,
            "Callers received 5XX answers.",
            "AWS/ApiGateway",
            "5XXError",
            dims,
            1,
        ),
        alarm(
            "ApiLatencyP99",
            topic,
            f"p99 latency at or above {LATENCY_ALARM_MS} ms for 3 of the last 5 minutes.",
            "AWS/ApiGateway",
            "Latency",
            dims,
            LATENCY_ALARM_MS,
            statistic="p99",
            evaluation_periods=5,
            datapoints=3,
        ),
    ]


def table_alarms(table: Table, topic: Topic) -> list[Alarm]:
    return [
        alarm(
            "TableWriteThrottles",
            topic,
            "DynamoDB throttled writes to the counter table.",
            "AWS/DynamoDB",
            "WriteThrottleEvents",
            {"TableName": Ref(table)},
            1,
        )
    ]


UNCOUNTED_NAMESPACE = "RouteCounter"


def uncounted_hits(log_group: LogGroup, topic: Topic, params: StackParameters) -> list:
    """With a Backend, FailurePolicy monitor: a request served whose count failed answers as
    the backend did (no 5XX to alarm on); its log line says "counted": false, and this
    metric and alarm make it seen."""
    metric = Sub("${AWS::StackName}-UncountedHits")
    flag = MetricFilter(
        "UncountedHitsMetricFilter",
        Condition=params.has_backend,
        LogGroupName=Ref(log_group),
        FilterPattern="{ $.counted IS FALSE }",
        MetricTransformations=[
            MetricTransformation(
                MetricNamespace=UNCOUNTED_NAMESPACE, MetricName=metric, MetricValue="1"
            )
        ],
    )
    watch = alarm(
        "UncountedHits",
        topic,
        "Requests were served by the backend but their hit could not be recorded.",
        UNCOUNTED_NAMESPACE,
        "",
        {},
        1,
    )
    watch.MetricName = metric
    watch.Condition = params.has_backend
    return [flag, watch]


def sub_ref(resource: AWSObject) -> str:
    """A Ref to the resource inside a Fn::Sub string."""
    return "${" + resource.title + "}"


@dataclass(frozen=True)
class AnalyticsPanels:
    """What the dashboard shows of the analytics, which exist only when `condition` holds."""

    condition: str
    series: Table
    aggregator: Function
    metrics_namespace: str
    records_not_aggregated: str


def dashboard(
    stage: Stage, functions: list[Function], table: Table, analytics: AnalyticsPanels
) -> Dashboard:
    """Hits, latency percentiles, errors of the API and of every function, consumed
    capacity and, with the analytics on, the aggregator's errors, its transaction conflicts
    (on the series table) and the records it handed back, on one page. Dashboards are global
    to the account: the name has the region. One body for each value of the condition."""
    body = If(
        analytics.condition,
        dashboard_body(stage, [*functions, analytics.aggregator], table, analytics),
        dashboard_body(stage, functions, table, None),
    )
    return Dashboard(
        "Dashboard", DashboardName=Sub("${AWS::StackName}-${AWS::Region}"), DashboardBody=body
    )


def dashboard_body(
    stage: Stage, functions: list[Function], table: Table, analytics: AnalyticsPanels | None
) -> Sub:
    def widget(x: int, y: int, title: str, metrics: list, stat: str = "Sum") -> dict:
        return {
            "type": "metric",
            "x": x,
            "y": y,
            "width": 12,
            "height": 6,
            "properties": {
                "title": title,
                "region": "${AWS::Region}",
                "stat": stat,
                "period": PERIOD_SECONDS,
                "view": "timeSeries",
                "metrics": metrics,
            },
        }

    api_dims = ["ApiName", "${AWS::StackName}", "Stage", sub_ref(stage)]
    latency = [["AWS/ApiGateway", "Latency", *api_dims, {"stat": p}] for p in ("p50", "p90")]
    latency.append(["...", {"stat": "p99"}])
    table_dims = ["TableName", sub_ref(table)]
    body = {
        "widgets": [
            widget(0, 0, "Hits (API requests)", [["AWS/ApiGateway", "Count", *api_dims]]),
            widget(12, 0, "Latency (ms)", latency, stat="p50"),
            widget(
                0,
                6,
                "Errors",
                [
                    ["AWS/ApiGateway", "4XXError", *api_dims],
                    ["AWS/ApiGateway", "5XXError", *api_dims],
                    *(["AWS/Lambda", "Errors", "FunctionName", sub_ref(f)] for f in functions),
                ],
            ),
            widget(
                12,
                6,
                "Consumed capacity (units)",
                [
                    ["AWS/DynamoDB", "ConsumedWriteCapacityUnits", *table_dims],
                    ["AWS/DynamoDB", "ConsumedReadCapacityUnits", *table_dims],
                ],
            ),
        ]
    }
    if analytics is not None:
        body["widgets"] += [
            # Each conflict cancels an aggregator transaction, which reads again and retries.
            widget(
                0,
                12,
                "Series transaction conflicts",
                [["AWS/DynamoDB", "TransactionConflict", "TableName", sub_ref(analytics.series)]],
            ),
            widget(
                12,
                12,
                "Aggregator: records handed back to retry",
                [
                    [
                        analytics.metrics_namespace,
                        analytics.records_not_aggregated,
                        "FunctionName",
                        sub_ref(analytics.aggregator),
                    ]
                ],
            ),
        ]
    return Sub(json.dumps(body, separators=(",", ":")))
