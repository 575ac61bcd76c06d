"""The template's Backend settings: what they accept, what they create, what they grant."""

import json
import re

import boto3
import pytest
from moto import mock_aws

from tests.conftest import role_statements

FUNCTION = "arn:aws:lambda:eu-west-1:123456789012:function:orders-api"


@pytest.mark.parametrize(
    ("value", "accepted"),
    [
        ("", True),
        (FUNCTION, True),
        (FUNCTION + ":prod", True),
        (FUNCTION + ":7", True),
        (FUNCTION + ":$LATEST", True),
        ("arn:aws-cn:lambda:cn-north-1:123456789012:function:f", True),
        ("http://127.0.0.1:8000", True),
        ("https://api.example.com/v1/", True),
        ("arn:aws:lambda:eu-west-1:1234:function:orders-api", False),
        ("arn:aws:lambda:eu-west-1:123456789012:function:orders api", False),
        ("arn:aws:s3:::a-bucket", False),
        ("ftp://example.com", False),
        ("https://", False),
        ("https://api.example.com/a b", False),
        ("https://api.example.com/?q=1", False),
        ("orders-api", False),
    ],
)
def test_backend_is_empty_a_function_arn_or_an_http_url(template, value, accepted):
    pattern = template["Parameters"]["Backend"]["AllowedPattern"]
    assert bool(re.fullmatch(pattern, value)) is accepted


@pytest.mark.parametrize(
    ("value", "accepted"),
    [("1", True), ("10", True), ("20", True), ("0", False), ("21", False), ("29", False)],
)
def test_the_backend_timeout_leaves_the_count_its_time_under_api_gateways_29_s(
    template, value, accepted
):
    pattern = template["Parameters"]["BackendTimeoutSeconds"]["AllowedPattern"]
    assert bool(re.fullmatch(pattern, value)) is accepted


def test_the_counter_may_invoke_exactly_the_lambda_backend_and_only_when_there_is_one(resources):
    policy = resources["InvokeBackendPolicy"]
    (statement,) = policy["Properties"]["PolicyDocument"]["Statement"]

    assert policy["Condition"] == "HasLambdaBackend"
    assert policy["Properties"]["Roles"] == [{"Ref": "CounterFunctionRole"}]
    assert statement["Action"] == ["lambda:InvokeFunction"]
    assert statement["Resource"] == [{"Ref": "Backend"}]  # as given: qualifier included
    assert not any(
        "lambda:InvokeFunction" in s["Action"]
        for s in role_statements(resources["CounterFunctionRole"])
    )
    # The function waits for the grant it may need on its first call.
    waits = resources["CounterFunction"]["Metadata"]["InvokeBackendPolicy"]
    assert waits == {"Fn::If": ["HasLambdaBackend", {"Ref": "InvokeBackendPolicy"}, ""]}


def conditioned(template: dict, given: dict[str, str]) -> set[str]:
    """Which of the backend conditions hold for these parameter values, as CloudFormation
    (moto) evaluates them."""
    names = ["HasBackend", "HasLambdaBackend", "HasBinaryMediaTypes"]
    probe = {
        "Parameters": template["Parameters"],
        "Conditions": template["Conditions"],
        "Resources": {
            "AlwaysQueue": {"Type": "AWS::SQS::Queue"},
            **{f"{name}Queue": {"Type": "AWS::SQS::Queue", "Condition": name} for name in names},
        },
    }
    with mock_aws():
        cfn = boto3.client("cloudformation")
        cfn.create_stack(
            StackName="probe",
            TemplateBody=json.dumps(probe),
            Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in given.items()],
        )
        made = cfn.describe_stack_resources(StackName="probe")["StackResources"]
    # (moto lists a resource left out by its condition without a logical id)
    created = {r["LogicalResourceId"] for r in made if "LogicalResourceId" in r}
    return {name.removesuffix("Queue") for name in created} - {"Always"}


@pytest.mark.parametrize(
    ("given", "holding"),
    [
        ({}, set()),
        (
            {"Backend": FUNCTION + ":prod"},
            {"HasBackend", "HasLambdaBackend", "HasBinaryMediaTypes"},
        ),
        ({"Backend": "https://api.example.com"}, {"HasBackend", "HasBinaryMediaTypes"}),
        ({"Backend": "http://127.0.0.1:8000", "BinaryMediaTypes": ""}, {"HasBackend"}),
    ],
)
def test_backend_conditions(template, given, holding):
    assert conditioned(template, given) == holding


def test_binary_media_types_are_set_on_the_api_only_with_a_backend(resources):
    types = resources["CounterApi"]["Properties"]["BinaryMediaTypes"]
    assert types == {
        "Fn::If": [
            "HasBinaryMediaTypes",
            {"Fn::Split": [",", {"Ref": "BinaryMediaTypes"}]},
            {"Ref": "AWS::NoValue"},
        ]
    }


def test_a_counted_hit_the_backend_served_but_the_table_missed_is_alarmed(resources):
    metric = resources["UncountedHitsMetricFilter"]
    alarm = resources["UncountedHits"]

    assert metric["Condition"] == alarm["Condition"] == "HasBackend"
    assert metric["Properties"]["FilterPattern"] == "{ $.counted IS FALSE }"
    transformation = metric["Properties"]["MetricTransformations"][0]
    assert alarm["Properties"]["MetricName"] == transformation["MetricName"]
    assert alarm["Properties"]["Namespace"] == transformation["MetricNamespace"]
    assert alarm["Properties"]["AlarmActions"] == [{"Ref": "AlarmTopic"}]
