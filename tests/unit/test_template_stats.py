"""The template's stats endpoint, rate-limit settings and provisioned auto scaling."""

import json

import pytest

from generate import build_template
from templates import api
from tests.conftest import ROOT, role_statements

WRITE_ACTIONS = {
    "dynamodb:PutItem",
    "dynamodb:UpdateItem",
    "dynamodb:DeleteItem",
    "dynamodb:BatchWriteItem",
    "dynamodb:TransactWriteItems",
    "dynamodb:PartiQLInsert",
    "dynamodb:PartiQLUpdate",
    "dynamodb:PartiQLDelete",
}
TABLE_ARN = {"Fn::GetAtt": ["CounterTable", "Arn"]}


def statements(resources: dict, role: str) -> list[dict]:
    return role_statements(resources[role])


def test_stats_function_runs_handler_stats_py_byte_for_byte(resources):
    props = resources["StatsFunction"]["Properties"]
    source = (ROOT / "handler" / "stats.py").read_text(encoding="utf-8")
    assert props["Code"]["ZipFile"] == source
    assert props["Handler"] == "index.handler"
    assert props["Role"] == {"Fn::GetAtt": ["StatsFunctionRole", "Arn"]}
    assert props["LoggingConfig"]["LogGroup"] == {"Ref": "StatsLogGroup"}
    assert props["Environment"]["Variables"] == {
        "TABLE_NAME": {"Ref": "CounterTable"},
        "STATS_ROUTE": {"Fn::Sub": "/${StatsPath}"},
        "ALLOWED_ORIGIN": {"Ref": "AllowedOrigin"},
        "SERIES_TABLE": {"Fn::If": ["HasAnalytics", {"Ref": "SeriesTable"}, ""]},
        # PrivateStats: where the token is (the secret's ARN), never the token
        "STATS_TOKEN_SECRET": {"Fn::If": ["StatsArePrivate", {"Ref": "StatsTokenSecret"}, ""]},
        "MAX_ROUTES": {"Ref": "MaxRoutes"},
        "LEDGER_TABLE": {"Fn::If": ["HasMaxRoutes", {"Ref": "SeriesTable"}, ""]},
        "CLIENT_IDENTITY": {"Ref": "ClientIdentity"},
    }


def test_stats_role_may_only_read_the_tables_and_write_its_own_logs(resources):
    reads, logs, traces = statements(resources, "StatsFunctionRole")
    # The series table's reads: a policy of their own, only with Analytics on
    policy = resources["StatsReadSeriesPolicy"]
    assert policy["Condition"] == "HasAnalytics"
    (series,) = policy["Properties"]["PolicyDocument"]["Statement"]

    assert reads["Action"] == ["dynamodb:Scan", "dynamodb:GetItem"]
    assert reads["Resource"] == [TABLE_ARN]
    assert series["Action"] == ["dynamodb:Query"]  # each top item and series is a range of parts
    assert series["Resource"] == [{"Fn::GetAtt": ["SeriesTable", "Arn"]}]
    assert logs["Action"] == ["logs:CreateLogStream", "logs:PutLogEvents"]
    assert logs["Resource"] == [{"Fn::GetAtt": ["StatsLogGroup", "Arn"]}]
    assert traces["Action"] == ["xray:PutTraceSegments", "xray:PutTelemetryRecords"]
    actions = {a for s in (reads, series, logs, traces) for a in s["Action"]}
    assert not actions & WRITE_ACTIONS
    assert all("*" not in a for a in actions)


def test_stats_path_and_everything_under_it_go_to_the_stats_function(resources):
    stats, under = resources["StatsResource"], resources["StatsProxyResource"]
    assert stats["Properties"]["PathPart"] == {"Ref": "StatsPath"}
    assert stats["Properties"]["ParentId"] == {"Fn::GetAtt": ["CounterApi", "RootResourceId"]}
    assert under["Properties"]["PathPart"] == "{proxy+}"
    assert under["Properties"]["ParentId"] == {"Ref": "StatsResource"}
    for method, resource in (
        ("StatsMethod", "StatsResource"),
        ("StatsProxyMethod", "StatsProxyResource"),
    ):
        props = resources[method]["Properties"]
        assert props["ResourceId"] == {"Ref": resource}
        assert props["HttpMethod"] == "ANY"
        assert props["Integration"]["Type"] == "AWS_PROXY"
        assert props["Integration"]["Uri"]["Fn::Sub"][1] == {
            "FunctionArn": {"Fn::GetAtt": ["StatsFunction", "Arn"]}
        }


def test_deployment_waits_for_and_hashes_the_stats_methods(resources):
    (deployment,) = [k for k in resources if k.startswith("ApiDeployment")]
    assert set(resources[deployment]["DependsOn"]) == {
        "RootMethod",
        "ProxyMethod",
        "StatsMethod",
        "StatsProxyMethod",
    }
    template = build_template()
    rest_api = template.resources["CounterApi"]
    methods = [template.resources[m] for m in resources[deployment]["DependsOn"]]
    shape = [
        template.resources[r] for r in ("ProxyResource", "StatsResource", "StatsProxyResource")
    ]
    assert api.api_deployment(rest_api, methods, shape).title == deployment
    assert api.api_deployment(rest_api, methods, shape[:1]).title != deployment


def test_stats_invoke_permission_is_scoped_like_the_counters(resources):
    stats = resources["StatsInvokePermission"]["Properties"]
    counter = resources["CounterInvokePermission"]["Properties"]
    assert stats["FunctionName"] == {"Fn::GetAtt": ["StatsFunction", "Arn"]}
    assert stats["SourceArn"] == counter["SourceArn"]
    assert stats["Principal"] == "apigateway.amazonaws.com"


def test_counter_is_told_the_rate_limit_and_the_stats_route(resources):
    env = resources["CounterFunction"]["Properties"]["Environment"]["Variables"]
    assert env["RATE_LIMIT"] == {"Ref": "RateLimit"}
    assert env["RATE_LIMIT_WINDOW_SECONDS"] == {"Ref": "RateLimitWindowSeconds"}
    assert env["STATS_ROUTE"] == {"Fn::Sub": "/${StatsPath}"}


@pytest.mark.parametrize(
    ("name", "default"),
    [
        ("StatsPath", "_stats"),
        ("AllowedOrigin", ""),
        ("RateLimit", "0"),  # whole numbers as text: see templates/parameters.py
        ("RateLimitWindowSeconds", "60"),
        ("MaxReadCapacityUnits", "100"),
        ("MaxWriteCapacityUnits", "100"),
        ("TargetUtilizationPercent", 70),
    ],
)
def test_new_parameters_default_to_off_or_safe_values(template, name, default):
    assert template["Parameters"][name]["Default"] == default


def test_stats_url_output(template):
    value = template["Outputs"]["StatsUrl"]["Value"]["Fn::Sub"]
    assert value[0] == "${Base}${StatsPath}"


def test_auto_scaling_exists_only_when_provisioned(resources):
    scaling = {k: v for k, v in resources.items() if v["Type"].startswith("AWS::ApplicationAuto")}
    assert sorted(scaling) == [
        "TableReadScalableTarget",
        "TableReadScalingPolicy",
        "TableWriteScalableTarget",
        "TableWriteScalingPolicy",
    ]
    assert {v["Condition"] for v in scaling.values()} == {"IsProvisioned"}


@pytest.mark.parametrize(
    ("kind", "minimum", "maximum", "metric"),
    [
        ("Read", "ReadCapacityUnits", "MaxReadCapacityUnits", "DynamoDBReadCapacityUtilization"),
        (
            "Write",
            "WriteCapacityUnits",
            "MaxWriteCapacityUnits",
            "DynamoDBWriteCapacityUtilization",
        ),
    ],
)
def test_target_tracking_of_table_capacity(resources, kind, minimum, maximum, metric):
    target = resources[f"Table{kind}ScalableTarget"]["Properties"]
    policy = resources[f"Table{kind}ScalingPolicy"]["Properties"]
    assert target["ServiceNamespace"] == "dynamodb"
    assert target["ScalableDimension"] == f"dynamodb:table:{kind}CapacityUnits"
    assert target["ResourceId"] == {
        "Fn::Sub": ["table/${Table}", {"Table": {"Ref": "CounterTable"}}]
    }
    assert (target["MinCapacity"], target["MaxCapacity"]) == ({"Ref": minimum}, {"Ref": maximum})
    assert target["RoleARN"]["Fn::Sub"].endswith(
        ":role/aws-service-role/dynamodb.application-autoscaling.amazonaws.com/"
        "AWSServiceRoleForApplicationAutoScaling_DynamoDBTable"
    )
    assert policy["PolicyType"] == "TargetTrackingScaling"
    assert policy["ScalingTargetId"] == {"Ref": f"Table{kind}ScalableTarget"}
    tracking = policy["TargetTrackingScalingPolicyConfiguration"]
    assert tracking["TargetValue"] == {"Ref": "TargetUtilizationPercent"}
    assert tracking["PredefinedMetricSpecification"]["PredefinedMetricType"] == metric


def test_resources_come_after_what_they_use(resources):
    """moto creates resources in template order: each after the ones it references."""
    order = list(resources)
    for name, body in resources.items():
        text = json.dumps(body)
        for other in order[order.index(name) + 1 :]:
            assert f'"{other}"' not in text, f"{name} uses {other}, which comes later"
