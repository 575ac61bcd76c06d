"""Least privilege, optional customer managed encryption, tracing, and only justified skips."""

import json

from generate import build_template, render

# CloudFormation's limit for a template read from S3 (--template-url); deployer/ uploads any
# template over the 51,200 bytes it takes inline.
CLOUDFORMATION_TEMPLATE_URL_LIMIT = 1_000_000
# Checks that conflict with the design, and nothing else, may be skipped (checkov).
ALLOWED_SKIPS = {
    "CKV_AWS_59",  # public API: no authorizer
    "CKV_AWS_116",  # synchronous invocation: no dead-letter queue
    "CKV_AWS_117",  # no VPC
    "CKV_AWS_115",  # ReservedConcurrency reserves for the counter alone (the account's pool)
    "CKV_AWS_120",  # no cache in front of a counter
    "CKV_AWS_76",  # access logs are on unless ApiGatewayAccountRole=none (Fn::If)
    "CKV_AWS_26",  # alias/aws/sns would drop alarm notifications; KmsKeyArn when set
    "CKV_AWS_149",  # the stats token: KmsKeyArn when set, else aws/secretsmanager
    "CKV2_AWS_57",  # the stats token is rotated by its owner: no rotation function to call
}
KMS_WHEN_SET = {"Fn::If": ["HasKmsKey", {"Ref": "KmsKeyArn"}, {"Ref": "AWS::NoValue"}]}


def of_type(resources: dict, kind: str) -> dict:
    return {name: r for name, r in resources.items() if r["Type"] == f"AWS::{kind}"}


def statements(resources: dict):
    """(role or policy resource, policy name, statement) of every IAM policy in the template."""
    for name, role in of_type(resources, "IAM::Role").items():
        for policy in role["Properties"].get("Policies", []):
            for statement in policy["PolicyDocument"]["Statement"]:
                yield name, policy["PolicyName"], statement
    for name, policy in of_type(resources, "IAM::Policy").items():
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]:
            yield name, policy["Properties"]["PolicyName"], statement


def test_template_fits_cloudformation_template_url_limit():
    size = len(render(build_template()).encode())
    print(f"template: {size} bytes")
    assert size < CLOUDFORMATION_TEMPLATE_URL_LIMIT


# Actions with no resource type (the Service Authorization Reference lists none for them):
# IAM matches them only against `*`, so a narrower Resource grants nothing.
STAR_ONLY_ACTIONS = [
    ["xray:PutTraceSegments", "xray:PutTelemetryRecords"],
    ["dynamodb:ListStreams"],  # Lambda's stream mapping asks the aggregator's role for it
]


def test_no_wildcard_action_and_star_resource_only_for_actions_that_take_no_other(resources):
    for name, _, statement in statements(resources):
        assert all("*" not in action for action in statement["Action"])
        if "*" in statement["Resource"]:
            assert statement["Resource"] == ["*"]
            assert statement["Action"] in STAR_ONLY_ACTIONS, name
        else:  # and those actions never on a narrower resource, where they grant nothing
            assert not set(statement["Action"]) & {a for s in STAR_ONLY_ACTIONS for a in s}
    list_streams = [
        name for name, _, s in statements(resources) if s["Action"] == ["dynamodb:ListStreams"]
    ]
    assert list_streams == ["AggregatorFunctionRole"]


# The one documented exception to exact actions on exact ARNs (README "Access logs and the
# account-wide API Gateway role"): API Gateway refuses a narrower role for its account
# setting, which every REST API of the region then logs through.
API_GATEWAY_LOGS_POLICY = {
    "Fn::Sub": "arn:${AWS::Partition}:iam::aws:policy/service-role/"
    "AmazonAPIGatewayPushToCloudWatchLogs"
}


def test_only_the_api_gateway_account_role_has_a_managed_policy_and_says_why(resources):
    managed = {
        name: role["Properties"]["ManagedPolicyArns"]
        for name, role in of_type(resources, "IAM::Role").items()
        if "ManagedPolicyArns" in role["Properties"]
    }
    assert managed == {"ApiGatewayCloudWatchRole": [API_GATEWAY_LOGS_POLICY]}
    role = resources["ApiGatewayCloudWatchRole"]
    assert "Policies" not in role["Properties"]
    reason = role["Metadata"]["LeastPrivilegeException"]
    assert "/aws/apigateway/welcome" in reason
    assert "logs:DescribeLogGroups" in reason


FUNCTION_ROLES = ("CounterFunctionRole", "StatsFunctionRole", "AggregatorFunctionRole")


def test_kms_key_use_is_one_policy_for_every_function_only_when_a_key_is_given(resources):
    kms = resources["UseKmsKeyPolicy"]
    assert kms["Condition"] == "HasKmsKey"
    counter, stats, aggregator = ({"Ref": role} for role in FUNCTION_ROLES)
    no_value = {"Ref": "AWS::NoValue"}
    assert kms["Properties"]["Roles"] == [
        counter,
        stats,
        {"Fn::If": ["HasAnalytics", aggregator, no_value]},
    ]
    assert kms["Properties"]["PolicyDocument"]["Statement"] == [
        {
            "Sid": "UseStackKey",
            "Effect": "Allow",
            "Action": ["kms:Decrypt", "kms:GenerateDataKey"],
            "Resource": [{"Ref": "KmsKeyArn"}],
        }
    ]
    for name in FUNCTION_ROLES:
        policies = resources[name]["Properties"]["Policies"]
        assert [p["PolicyName"] for p in policies] == ["least-privilege"], name
    # The stage (the first request) waits for the key policy when there is one.
    assert resources["ApiStage"]["Metadata"]["KmsKeyPolicy"] == {
        "Fn::If": ["HasKmsKey", {"Ref": "UseKmsKeyPolicy"}, ""]
    }


def test_kms_key_encrypts_table_logs_environment_and_topic_when_given(template, resources):
    assert template["Parameters"]["KmsKeyArn"]["Default"] == ""
    sse = resources["CounterTable"]["Properties"]["SSESpecification"]
    assert sse["KMSMasterKeyId"] == KMS_WHEN_SET
    assert sse["SSEEnabled"] == {"Fn::If": ["HasKmsKey", True, False]}
    for group in of_type(resources, "Logs::LogGroup").values():
        assert group["Properties"]["KmsKeyId"] == KMS_WHEN_SET
    for function in of_type(resources, "Lambda::Function").values():
        assert function["Properties"]["KmsKeyArn"] == KMS_WHEN_SET
    assert resources["AlarmTopic"]["Properties"]["KmsMasterKeyId"] == KMS_WHEN_SET


def test_functions_and_stage_are_traced(resources):
    for function in of_type(resources, "Lambda::Function").values():
        assert function["Properties"]["TracingConfig"] == {"Mode": "Active"}
    traced_roles = {role for role, _, s in statements(resources) if s.get("Sid") == "SendTraces"}
    for function in of_type(resources, "Lambda::Function").values():
        assert function["Properties"]["Role"]["Fn::GetAtt"][0] in traced_roles
    assert resources["ApiStage"]["Properties"]["TracingEnabled"] is True


def test_stage_is_throttled_with_detailed_metrics(resources):
    (setting,) = resources["ApiStage"]["Properties"]["MethodSettings"]
    assert setting == {
        "HttpMethod": "*",
        "MetricsEnabled": True,
        "ResourcePath": "/*",
        "ThrottlingBurstLimit": {"Ref": "ThrottlingBurstLimit"},
        "ThrottlingRateLimit": {"Ref": "ThrottlingRateLimit"},
    }


def test_access_logs_are_one_json_object_per_request(resources):
    access = resources["ApiStage"]["Properties"]["AccessLogSetting"]["Fn::If"]
    assert access[0] == "HasAccessLogs"
    assert access[1]["DestinationArn"] == {"Fn::GetAtt": ["ApiAccessLogGroup", "Arn"]}
    fields = json.loads(access[1]["Format"])
    assert set(fields) == {
        "requestId",
        "ip",
        "method",
        "resourcePath",
        "path",
        "status",
        "responseLength",
        "latency",
        "integrationLatency",
        "requestTime",
    }
    assert resources["ApiAccessLogGroup"]["Properties"]["RetentionInDays"] == {
        "Ref": "LogRetentionDays"
    }


def test_account_wide_api_gateway_role_is_set_only_on_create(resources):
    assert resources["ApiGatewayAccount"]["Condition"] == "CreatesApiGatewayRole"
    assert resources["ApiGatewayCloudWatchRole"]["Condition"] == "CreatesApiGatewayRole"
    trust = resources["ApiGatewayCloudWatchRole"]["Properties"]["AssumeRolePolicyDocument"]
    assert trust["Statement"][0]["Principal"] == {"Service": "apigateway.amazonaws.com"}


def test_account_setting_never_outlives_the_role_it_names(resources):
    """API Gateway has no call that unsets the account's role: deleting the stack, leaving
    'create' or rolling back a create must keep the role the setting points at."""
    for name in ("ApiGatewayCloudWatchRole", "ApiGatewayAccount"):
        assert resources[name]["DeletionPolicy"] == "Retain", name
        assert resources[name]["UpdateReplacePolicy"] == "Retain", name


def test_account_setting_waits_for_the_api(resources):
    """Set on a fresh region while the API is being created, it fails (the CDK waits too)."""
    assert resources["ApiGatewayAccount"]["DependsOn"] == ["CounterApi"]


def test_every_scan_skip_is_a_design_decision_with_a_reason(resources):
    skipped = set()
    for resource in resources.values():
        for skip in resource.get("Metadata", {}).get("checkov", {}).get("skip", []):
            assert skip["comment"]
            skipped.add(skip["id"])
    assert skipped <= ALLOWED_SKIPS


def test_only_the_counter_reserves_concurrency_and_the_others_say_why(resources):
    """checkov's CKV_AWS_115 wants a reservation on every function; one per function took
    three times ReservedConcurrency from the account's pool (issue 19)."""
    for name in ("CounterFunction", "StatsFunction", "AggregatorFunction"):
        function = resources[name]
        skips = {s["id"] for s in function["Metadata"]["checkov"]["skip"]}
        reserves = "ReservedConcurrentExecutions" in function["Properties"]
        assert reserves == (name == "CounterFunction"), name
        assert ("CKV_AWS_115" in skips) == (not reserves), name
