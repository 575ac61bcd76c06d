"""The deployer's own logic, without a stack: parameters, what it prints, URLs, smoke test.

deploy.sh end to end (options, messages, exit codes, the stack on the emulator) is
tests/integration/test_deploy.py; these pin the decisions each of its steps makes.
"""

import contextlib
import http.server
import json
import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import ClassVar

import boto3
import pytest
from botocore.config import Config
from botocore.stub import ANY, Stubber

from deployer import cli, errors, safeguards
from deployer.cli import fate_lines, kept_table_lines
from deployer.deployer import Deployer
from deployer.errors import DeployError, ParameterError
from deployer.options import parse
from deployer.parameters import (
    account_role_choice,
    billing_mode_refusal,
    change_set_parameters,
    check_parameters,
    given_lines,
    is_unchanged,
    needs_account_role,
    protected_tables,
    protection_on_create,
    protection_on_update,
    protection_value,
    tables_added,
    with_defaults,
)
from deployer.report import (
    EventProgress,
    Fate,
    change_lines,
    data_fates,
    fates_summary,
    output_lines,
)
from deployer.results import Outcome
from deployer.s3 import ensure_managed_bucket, managed_bucket_name, template_key, template_url
from deployer.safeguards import STACK_POLICY, routes_replaced, stage_targets
from deployer.smoke import TRIES, Answer, judge, smoke_test
from local.emulator import free_port
from templates import function
from tests.unit.test_template import WHOLE_NUMBERS

STACK_ID = "arn:aws:cloudformation:us-east-1:123456789012:stack/demo/1a2b"
T0 = datetime(2026, 12, 1, 4, 0, 0, tzinfo=UTC)

# --- options ------------------------------------------------------------------------------


def test_options_are_parsed_as_the_help_says():
    options = parse(
        ["--stack-name", "s1", "--region", "eu-west-1", "--param", "A=1", "--param",
         "AllowedOrigin=https://x.example", "--param", "A=2", "--s3-bucket", "my.templates",
         "--dry-run", "--no-smoke"],
        has_terminal=False,
    )  # fmt: skip

    assert options.params == {"A": "2", "AllowedOrigin": "https://x.example"}  # the last wins
    assert (options.s3_bucket, options.dry_run, options.smoke) == ("my.templates", True, False)
    assert options.where() == "--stack-name s1 --region eu-west-1"


@pytest.mark.parametrize(
    ("argv", "code", "says"),
    [
        (["--yes"], 2, "--yes only applies to --delete"),
        (["--stack-name", "9lives"], 2, "invalid stack name '9lives'"),
        (["--region", "--dry-run"], 2, "--region needs a value"),
        (["--delete"], 2, "refusing to delete stack route-counter without confirmation"),
    ],
)
def test_a_bad_command_line_is_one_error(argv, code, says):
    with pytest.raises(DeployError) as refused:
        parse(argv, has_terminal=False)

    assert refused.value.code == code
    assert says in str(refused.value)


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["--stack-name=s1"], "unknown option '--stack-name=s1'"),  # a value is the next word
        (["--dry-run=yes"], "unknown option '--dry-run=yes'"),
        (["--"], "unknown option '--'"),
        (["--dry"], "unknown option '--dry'"),  # no abbreviations
        (["s1"], "unknown option 's1'"),
        (["--region", "-1"], "--region needs a value"),
        (["--param", "-"], "--param needs a value"),
        (["--port", "3000"], "--port is an option of --local (./deploy.sh --local --port N)"),
    ],
)
def test_a_command_line_is_read_word_by_word_as_it_always_was(argv, says):
    with pytest.raises(errors.UsageError) as refused:
        parse(argv, has_terminal=False)

    assert str(refused.value) == f"{says} (see ./deploy.sh --help)"


def test_help_ends_the_command_line():
    assert parse(["--dry-run", "-h", "--frobnicate"], has_terminal=False).help
    with pytest.raises(errors.UsageError, match="unknown option '--frobnicate'"):
        parse(["--frobnicate", "--help"], has_terminal=False)


def test_delete_asks_on_a_terminal():
    assert parse(["--delete"], has_terminal=True).delete


# --- parameters ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "says"),
    [
        ({"Colour": "blue"}, "unknown template parameter Colour (the template's parameters: "),
        ({"BillingMode": "FREE"}, "must be one of ['PAY_PER_REQUEST', 'PROVISIONED']"),
        ({"StageName": "my-stage"}, "must be letters, digits and underscores"),
        ({"FunctionMemorySize": "64"}, "must be a whole number from 128 to 10240"),
        ({"FunctionMemorySize": "lots"}, "must be a whole number from 128 to 10240"),
        ({"FunctionMemorySize": "nan"}, "must be a whole number from 128 to 10240"),
        ({"ThrottlingRateLimit": "inf"}, "must be a finite number"),  # float() takes it
        ({"ThrottlingRateLimit": "lots"}, "must be a number"),
        ({"TargetUtilizationPercent": "1e2"}, "must be at most 90"),
        # the function reads these with int() at start-up: 1.5 would fail every hit
        ({"RateLimit": "1.5"}, "must be a whole number from 0 to 999999999"),
        ({"RateLimit": "nan"}, "must be a whole number from 0 to 999999999"),
        ({"RateLimit": "007"}, "must be a whole number from 0 to 999999999"),
        ({"RateLimitWindowSeconds": "86401"}, "must be a whole number from 1 to 86400"),
        ({"RateLimitWindowSeconds": "0"}, "must be a whole number from 1 to 86400"),
        ({"RateLimitWindowSeconds": "60.5"}, "must be a whole number from 1 to 86400"),
        # a client resolves '.' and '..' away: the stats endpoint would be unreachable
        ({"StatsPath": "."}, "not starting with '.'"),
        ({"StatsPath": ".."}, "not starting with '.'"),
    ],
)
def test_a_value_cloudformation_refuses_is_refused_before_anything(template, given, says):
    with pytest.raises(ParameterError) as refused:
        check_parameters(template, given)

    assert says in str(refused.value)
    assert refused.value.code == 2


@pytest.mark.parametrize(
    "given",
    [
        {"BillingMode": "PROVISIONED", "StageName": "dev_1", "FunctionMemorySize": "512"},
        {"RateLimit": "0", "RateLimitWindowSeconds": "1"},
        {"RateLimit": "999999999", "RateLimitWindowSeconds": "86400"},
        {"RateLimitWindowSeconds": "79999"},
        {"RateLimitWindowSeconds": "86399"},
        {"StatsPath": "stats.v2"},
        {"StatsPath": "_"},
    ],
)
def test_values_cloudformation_accepts_pass(template, given):
    check_parameters(template, given)


@pytest.mark.parametrize("value", ["1.5", "1e2"])
@pytest.mark.parametrize("name", [*WHOLE_NUMBERS, "LogRetentionDays"])
def test_a_fraction_or_an_exponent_where_a_whole_number_is_needed_is_one_clear_line(
    template, name, value
):
    """SeriesHourlyDays=1.5 (or 1e2) deployed, then every batch failed: refused before
    anything, in the same words as CloudFormation's constraint."""
    with pytest.raises(ParameterError) as refused:
        check_parameters(template, {name: value})

    said = str(refused.value)
    assert said.startswith(f"parameter {name}='{value}' must be ")
    if name == "LogRetentionDays":
        assert "must be one of ['1', '3', '5', '7', '14', '30'" in said
    else:
        low, high = WHOLE_NUMBERS[name]
        assert f"must be a whole number from {low} to {high} without leading zeros" in said
    assert "\n" not in said and refused.value.code == 2


def test_a_create_passes_only_the_given_values(template):
    assert change_set_parameters(template, {"RateLimit": "5"}, None) == [
        {"ParameterKey": "RateLimit", "ParameterValue": "5"}
    ]


def test_an_update_keeps_every_value_not_given_but_leaves_empty_ones_to_the_default(template):
    previous = {"RateLimit": "5", "LogRetentionDays": "14", "KmsKeyArn": ""}

    result = change_set_parameters(template, {"RateLimit": "7"}, previous)

    assert result == [
        {"ParameterKey": "RateLimit", "ParameterValue": "7"},
        {"ParameterKey": "LogRetentionDays", "UsePreviousValue": True},
    ]


def test_given_values_say_what_they_change_on_an_update():
    lines = given_lines(
        {"RateLimit": "7", "StageName": "prod"}, {"RateLimit": "5", "StageName": "prod"}
    )

    assert lines == ["      RateLimit = 7  (was 5)", "      StageName = prod  (unchanged)"]


def test_unchanged_means_same_template_and_same_given_values(template):
    previous = {"RateLimit": "5"}

    assert is_unchanged(template, template, previous, {"RateLimit": "5"})
    assert not is_unchanged(template, template, previous, {"RateLimit": "6"})
    assert not is_unchanged({**template, "Description": "other"}, template, previous, {})
    assert not is_unchanged(None, template, previous, {})


def test_without_previous_values_an_omitted_parameter_means_its_default(template):
    """The local stack's semantics (keep_previous=False): what it serves is what it was given."""
    limited = with_defaults(template, {"RateLimit": "5"})
    defaults = with_defaults(template, {})

    assert defaults["RateLimit"] == "0" and defaults["KmsKeyArn"] == ""
    assert not is_unchanged(template, template, limited, defaults)
    assert is_unchanged(template, template, {**defaults, "KmsKeyArn": None}, defaults)


# --- ApiGatewayAccountRole: chosen from the account on a create -----------------------------


def test_a_create_chooses_the_account_role_unless_given(template):
    assert needs_account_role(template, {}, None)
    assert not needs_account_role(template, {"ApiGatewayAccountRole": "none"}, None)


def test_an_update_keeps_the_stacks_account_role(template):
    assert not needs_account_role(template, {}, {"ApiGatewayAccountRole": "create"})
    # a stack from before the parameter has no value: chosen as on a create
    assert needs_account_role(template, {}, {"RateLimit": "0"})


def test_an_account_with_a_cloudwatch_role_keeps_it_one_without_gets_ours():
    arn = "arn:aws:iam::123456789012:role/theirs"

    existing = account_role_choice(arn, "eu-west-1")
    create = account_role_choice(None, "eu-west-1")

    assert existing[0] == "existing" and arn in existing[1] and "eu-west-1" in existing[1]
    assert create[0] == "create" and "no CloudWatch role" in create[1]


# --- TableDeletionProtection: off while the stack is created, then on ------------------------

PROTECTION = "TableDeletionProtection"


@pytest.mark.parametrize(
    ("given", "keep_previous", "protect_after"),
    [
        ({}, True, True),  # deploy.sh's default: on once the stack exists
        ({PROTECTION: "true"}, True, True),  # asked for: still created off
        ({PROTECTION: "false"}, True, False),  # explicitly off: stays off
        ({}, False, False),  # the local stack: not given means the template default
        ({PROTECTION: "true"}, False, True),
    ],
)
def test_a_create_runs_with_protection_off_and_turns_it_on_unless_told_not_to(
    template, given, keep_previous, protect_after
):
    values, after = protection_on_create(template, {"RateLimit": "5", **given}, keep_previous)

    assert values == {"RateLimit": "5", PROTECTION: "false"}
    assert after is protect_after


def test_an_update_keeps_the_stacks_protection_and_a_stack_from_before_the_parameter_stays_on(
    template,
):
    assert protection_on_update(template, {}, {PROTECTION: "false"}, True) == {}
    assert protection_on_update(template, {PROTECTION: "false"}, {}, True) == {PROTECTION: "false"}
    # the template protected the table before the parameter existed: the default would not
    assert protection_on_update(template, {}, {"RateLimit": "0"}, True) == {PROTECTION: "true"}
    assert protection_on_update(template, {}, {"RateLimit": "0"}, False) == {}


def stubbed(service: str) -> tuple[object, Stubber]:
    client = boto3.client(service, region_name="us-east-1")
    return client, Stubber(client)


def test_both_tables_follow_the_protection_parameter(template):
    assert protected_tables(template) == ["CounterTable", "SeriesTable"]


def test_only_a_change_set_that_adds_a_table_needs_protection_off_for_its_rollback():
    changes = [
        change("SeriesTable", "AWS::DynamoDB::Table", "Add"),
        change("CounterTable", "AWS::DynamoDB::Table", "Modify", "False"),
        change("AggregatorFailureQueue", "AWS::SQS::Queue", "Add"),
        change("OldTable", "AWS::DynamoDB::Table", "Remove"),
    ]

    assert tables_added(changes) == ["SeriesTable"]
    assert tables_added(changes[1:]) == []


@pytest.mark.parametrize(
    ("given", "previous", "keep_previous", "value"),
    [
        ({}, {PROTECTION: "true"}, True, "true"),  # deploy.sh keeps the stack's value
        ({PROTECTION: "false"}, {PROTECTION: "true"}, True, "false"),  # given wins
        ({}, {}, True, "false"),  # nothing kept: the template default
        ({}, {PROTECTION: "true"}, False, "false"),  # the local stack: the default
        ({PROTECTION: "true"}, {}, False, "true"),
    ],
)
def test_the_protection_an_update_would_set(template, given, previous, keep_previous, value):
    assert protection_value(template, given, previous, keep_previous) == value


def test_the_stack_policy_denies_replacing_or_deleting_either_table():
    denied = {
        s["Resource"]: s["Action"] for s in STACK_POLICY["Statement"] if s["Effect"] == "Deny"
    }

    assert denied == {
        "LogicalResourceId/CounterTable": ["Update:Replace", "Update:Delete"],
        "LogicalResourceId/SeriesTable": ["Update:Replace", "Update:Delete"],
    }


COUNTER_TABLE = Fate("CounterTable", "AWS::DynamoDB::Table", "t-1", "RetainExceptOnCreate")


@pytest.mark.parametrize(
    ("described", "says", "commands"),
    [
        ({"DeletionProtectionEnabled": True}, "deletion protection on", 2),
        ({"DeletionProtectionEnabled": False}, "deletion protection off", 1),
        (None, "whether deletion protection is on is unknown", 2),  # describe-table refused
    ],
)
def test_delete_says_whether_the_kept_table_is_protected_as_dynamodb_reports_it(
    described, says, commands
):
    dynamodb, stubber = stubbed("dynamodb")
    if described is None:
        stubber.add_client_error("describe_table", "AccessDeniedException", http_status_code=400)
    else:
        stubber.add_response("describe_table", {"Table": described}, {"TableName": "t-1"})

    with stubber:
        lines = kept_table_lines(dynamodb, COUNTER_TABLE, " --region eu-west-1")

    text = "\n".join(lines)
    assert says in text
    assert text.count("    aws dynamodb ") == commands
    assert lines[-1] == "    aws dynamodb delete-table --table-name t-1 --region eu-west-1"
    if commands == 2:
        assert lines[-2] == (
            "    aws dynamodb update-table --table-name t-1 --no-deletion-protection-enabled"
            " --region eu-west-1"
        )


STACK_DATA = [
    {"LogicalResourceId": "CounterTable", "PhysicalResourceId": "demo-Counter-1",
     "ResourceType": "AWS::DynamoDB::Table", "ResourceStatus": "UPDATE_COMPLETE"},
    {"LogicalResourceId": "SeriesTable", "PhysicalResourceId": "demo-Series-2",
     "ResourceType": "AWS::DynamoDB::Table", "ResourceStatus": "CREATE_COMPLETE"},
    {"LogicalResourceId": "AggregatorFailureQueue", "ResourceType": "AWS::SQS::Queue",
     "PhysicalResourceId": "https://sqs.us-east-1.amazonaws.com/123456789012/demo-Failures-3",
     "ResourceStatus": "CREATE_COMPLETE"},
    {"LogicalResourceId": "CounterFunction", "PhysicalResourceId": "demo-Counter-4",
     "ResourceType": "AWS::Lambda::Function", "ResourceStatus": "CREATE_COMPLETE"},
]  # fmt: skip


def test_delete_names_what_each_deletion_policy_keeps_and_what_goes(template):
    """The tables are RetainExceptOnCreate, the failure queue Delete: read from the template."""
    fates = data_fates(template, STACK_DATA)

    assert [(f.logical_id, f.physical_id, f.kept) for f in fates] == [
        ("CounterTable", "demo-Counter-1", True),
        ("SeriesTable", "demo-Series-2", True),
        ("AggregatorFailureQueue", STACK_DATA[2]["PhysicalResourceId"], False),
    ]
    assert fates_summary(fates) == (
        "Kept: CounterTable, SeriesTable. Deleted with it: AggregatorFailureQueue."
    )
    dynamodb, stubber = stubbed("dynamodb")
    stubber.add_response(
        "describe_table", {"Table": {"DeletionProtectionEnabled": True}},
        {"TableName": "demo-Series-2"},
    )  # fmt: skip
    with stubber:
        series = fate_lines(dynamodb, fates[1], "")
    assert series[0] == (
        "The series table demo-Series-2 was kept, with every route's hits per hour and day in it"
    )
    assert series[-1] == "    aws dynamodb delete-table --table-name demo-Series-2"
    assert fate_lines(dynamodb, fates[2], "") == [
        f"The failure queue {STACK_DATA[2]['PhysicalResourceId']} was deleted with the stack "
        "(DeletionPolicy Delete), and the batches the aggregator gave up on with it."
    ]


def test_a_policy_changed_in_the_template_changes_what_delete_says(template):
    retained = json.loads(json.dumps(template))
    retained["Resources"]["AggregatorFailureQueue"]["DeletionPolicy"] = "Retain"
    retained["Resources"]["SeriesTable"]["DeletionPolicy"] = "Delete"

    fates = data_fates(retained, STACK_DATA)

    assert fates_summary(fates) == (
        "Kept: CounterTable, AggregatorFailureQueue. Deleted with it: SeriesTable."
    )
    url = STACK_DATA[2]["PhysicalResourceId"]
    assert fate_lines(None, fates[2], " --region eu-west-1")[-1] == (
        f"    aws sqs delete-queue --queue-url {url} --region eu-west-1"
    )
    assert "was deleted with the stack (DeletionPolicy Delete)" in fate_lines(None, fates[1], "")[0]


def test_delete_says_so_when_the_stacks_template_cannot_be_read():
    fates = data_fates(None, STACK_DATA)

    assert [f.kept for f in fates] == [None, None, None]
    assert "Unknown (template unreadable): CounterTable, SeriesTable" in fates_summary(fates)
    lines = fate_lines(None, fates[1], "")
    assert "whether the delete kept it is unknown" in lines[0]
    assert lines[1] == "    aws dynamodb describe-table --table-name demo-Series-2"


# --- a stage redeployed after an update that replaced routes ---------------------------------


def change(logical: str, kind: str, action: str, replacement: str | None = None) -> dict:
    resource = {"LogicalResourceId": logical, "ResourceType": kind, "Action": action}
    if replacement:
        resource["Replacement"] = replacement
    return {"Type": "Resource", "ResourceChange": resource}


def test_removed_or_replaced_api_resources_and_methods_need_a_new_deployment():
    resource, method = "AWS::ApiGateway::Resource", "AWS::ApiGateway::Method"
    changes = [
        change("StatsResource", resource, "Modify", "True"),
        change("StatsMethod", method, "Modify", "Conditional"),
        change("OldMethod", method, "Remove"),
        change("ProxyMethod", method, "Modify", "False"),  # changed in place
        change("NewResource", resource, "Add"),  # the new Deployment of its hash routes it
        change("StatsFunction", "AWS::Lambda::Function", "Modify", "True"),
    ]

    assert routes_replaced(changes) == ["StatsResource", "StatsMethod", "OldMethod"]
    assert routes_replaced(changes[3:]) == []


def test_the_stage_to_redeploy_is_the_templates_with_the_stacks_values(template):
    assert stage_targets(template, {"CounterApi": "a1b2"}, {"StageName": "v1"}) == [("a1b2", "v1")]


API_RESOURCES = {
    "StackResources": [
        {"LogicalResourceId": "CounterApi", "PhysicalResourceId": "a1b2",
         "ResourceType": "AWS::ApiGateway::RestApi", "ResourceStatus": "UPDATE_COMPLETE",
         "Timestamp": T0},
    ]
}  # fmt: skip
PROD = {
    "StackId": STACK_ID,
    "Parameters": [{"ParameterKey": "StageName", "ParameterValue": "prod"}],
}


def stubbed_redeploy() -> tuple[safeguards.StackSafeguards, Stubber, Stubber, list[str]]:
    apigateway, api_stub = stubbed("apigateway")
    said: list[str] = []
    deployer, cfn_stub = stubbed_deployer([], say=said.append)
    cfn_stub.add_response("describe_stack_resources", API_RESOURCES)
    return safeguards.StackSafeguards(deployer, apigateway=apigateway), cfn_stub, api_stub, said


def test_a_failed_redeploy_says_the_stage_routes_the_old_api_and_gives_the_command(template):
    deployer, cfn_stub, api_stub, _ = stubbed_redeploy()
    api_stub.add_client_error("create_deployment", "AccessDeniedException", http_status_code=403)
    replaced = [change("StatsResource", "AWS::ApiGateway::Resource", "Modify", "True")]

    with cfn_stub, api_stub, pytest.raises(DeployError) as failed:
        deployer.redeploy_stages(template, PROD, replaced)

    assert "the stage still routes the old API" in str(failed.value)
    assert "create-deployment --rest-api-id a1b2 --stage-name prod" in str(failed.value)


def test_a_changed_api_setting_such_as_binary_media_types_is_redeployed_to_the_stage(template):
    """A Backend set or removed changes the API's BinaryMediaTypes, and nothing else of it:
    the stage serves the settings of its deployment's snapshot until a new one."""
    deployer, cfn_stub, api_stub, said = stubbed_redeploy()
    api_stub.add_response(
        "create_deployment", {"id": "new2"}, {"restApiId": "a1b2", "stageName": "prod",
                                              "description": ANY}
    )  # fmt: skip
    api_changed = [change("CounterApi", "AWS::ApiGateway::RestApi", "Modify", "False")]

    with cfn_stub, api_stub:
        deployer.redeploy_stages(template, PROD, api_changed)
    api_stub.assert_no_pending_responses()

    assert [line for line in said if "redeployed" in line] == [
        "==> Stage prod redeployed (deployment new2): the update changed the settings of "
        "CounterApi (BinaryMediaTypes), which a stage serves from a new deployment only."
    ]


@pytest.mark.parametrize("set_back", [True, False])
def test_an_update_of_the_stage_that_set_it_back_to_an_older_deployment_is_repaired(
    template, set_back
):
    """CloudFormation may send the template's DeploymentId when it updates the stage: the
    stage must stay on the newest deployment (the one made after a StatsPath change)."""
    deployer, cfn_stub, api_stub, said = stubbed_redeploy()
    api_stub.add_response("get_stage", {"deploymentId": "tmpl" if set_back else "ours"},
                          {"restApiId": "a1b2", "stageName": "prod"})  # fmt: skip
    api_stub.add_response(
        "get_deployments",
        {"items": [{"id": "tmpl", "createdDate": T0},
                   {"id": "ours", "createdDate": T0 + timedelta(days=1)}]},
    )  # fmt: skip
    if set_back:
        api_stub.add_response("create_deployment", {"id": "new1"})
    stage_updated = [change("ApiStage", "AWS::ApiGateway::Stage", "Modify", "False")]

    with cfn_stub, api_stub:
        deployer.redeploy_stages(template, PROD, stage_updated)
    api_stub.assert_no_pending_responses()

    redeployed = [line for line in said if "redeployed" in line]
    assert redeployed == (
        ["==> Stage prod redeployed (deployment new1): the update set it back to an older "
         "deployment of the API."] if set_back else []
    )  # fmt: skip


# --- BillingMode switches -----------------------------------------------------------------


def test_switching_billing_mode_in_one_deploy_is_refused_in_one_line():
    refusal = billing_mode_refusal(
        "demo",
        {"BillingMode": "PROVISIONED"},
        {"BillingMode": "PAY_PER_REQUEST"},
        "PAY_PER_REQUEST",
    )

    assert refusal is not None and "\n" not in refusal
    assert "from PAY_PER_REQUEST to PROVISIONED" in refusal
    assert "Switching BillingMode" in refusal  # where the two steps are


@pytest.mark.parametrize(
    ("given", "previous", "table"),
    [
        ({"BillingMode": "PROVISIONED"}, None, None),  # a create
        ({"BillingMode": "PROVISIONED"}, {"BillingMode": "PROVISIONED"}, "PROVISIONED"),
        ({}, {"BillingMode": "PAY_PER_REQUEST"}, "PAY_PER_REQUEST"),  # not given: kept
        # step 2 of the two: the table was switched by hand, the deploy records it
        ({"BillingMode": "PROVISIONED"}, {"BillingMode": "PAY_PER_REQUEST"}, "PROVISIONED"),
    ],
)
def test_no_switch_or_a_table_already_switched_goes_ahead(given, previous, table):
    assert billing_mode_refusal("demo", given, previous, table) is None


# --- what a deploy prints -----------------------------------------------------------------


def test_a_change_set_prints_one_aligned_line_per_resource_with_replacements():
    changes = [
        {"ResourceChange": {"Action": "Add", "LogicalResourceId": "CounterTable",
                            "ResourceType": "AWS::DynamoDB::Table"}},
        {"ResourceChange": {"Action": "Modify", "LogicalResourceId": "Fn",
                            "ResourceType": "AWS::Lambda::Function", "Replacement": "True"}},
        {"Type": "Other"},
    ]  # fmt: skip

    assert change_lines(changes) == [
        "      Add     CounterTable  AWS::DynamoDB::Table",
        "      Modify  Fn            AWS::Lambda::Function          replacement: True",
    ]


def event(n: int, logical: str, status: str, reason: str = "", kind: str = "AWS::X::Y") -> dict:
    return {
        "EventId": f"e{n}",
        "Timestamp": T0 + timedelta(seconds=n),
        "LogicalResourceId": logical,
        "PhysicalResourceId": STACK_ID if kind == "AWS::CloudFormation::Stack" else logical,
        "ResourceType": kind,
        "ResourceStatus": status,
        "ResourceStatusReason": reason,
    }


def test_events_show_once_oldest_first_with_progress_across_polls():
    progress = EventProgress(STACK_ID, T0, ["Table", "Fn"])
    stack = "AWS::CloudFormation::Stack"
    old = {**event(0, "demo", "UPDATE_COMPLETE", kind=stack), "EventId": "old"}
    started = event(1, "demo", "CREATE_IN_PROGRESS", "User Initiated", stack)
    first_poll = [event(2, "Table", "CREATE_COMPLETE"), started, old]
    finished = event(4, "demo", "CREATE_COMPLETE", kind=stack)
    second_poll = [finished, event(3, "Fn", "CREATE_COMPLETE"), *first_poll]

    lines = progress.feed(first_poll) + progress.feed(second_poll)

    assert [line.split()[1:] for line in lines] == [
        ["demo", "CREATE_IN_PROGRESS", "User", "Initiated"],
        ["[1/2]", "Table", "CREATE_COMPLETE"],
        ["[2/2]", "Fn", "CREATE_COMPLETE"],
        ["demo", "CREATE_COMPLETE"],
    ]
    assert lines[0].startswith("      04:00:01  ")
    assert progress.stack_status == "CREATE_COMPLETE"
    assert progress.summary() == "2/2 resource changes reported complete"


def test_a_retained_table_counts_as_deleted_and_rollbacks_and_failures_do_not():
    progress = EventProgress(STACK_ID, T0, ["Table", "Fn", "Role"])

    progress.feed(
        [
            event(3, "Role", "DELETE_FAILED", "role in use"),
            event(2, "Fn", "UPDATE_ROLLBACK_COMPLETE"),
            event(1, "Table", "DELETE_SKIPPED"),
        ]
    )

    assert progress.done == {"Table"}
    assert progress.failure_lines() == ["      Role  DELETE_FAILED  role in use"]


def test_no_per_resource_events_is_said_honestly():
    assert EventProgress(STACK_ID, T0, ["Table"]).summary() == (
        "the endpoint reported no per-resource events"
    )


def test_outputs_are_printed_as_the_stack_gives_them():
    stack = {
        "StackId": STACK_ID,
        "Outputs": [{"OutputKey": "ApiUrl", "OutputValue": "https://x/prod/"}],
    }

    lines, url = output_lines(stack, [])

    assert (lines, url) == (["      ApiUrl  https://x/prod/"], "https://x/prod/")


def test_outputs_derived_from_resources_use_the_partitions_domain():
    stack = {
        "StackId": "arn:aws-cn:cloudformation:cn-north-1:123456789012:stack/demo/1",
        "Parameters": [{"ParameterKey": "StageName", "ParameterValue": "prod"}],
    }
    resources = [{"LogicalResourceId": "CounterApi", "PhysicalResourceId": "abc123"}]

    lines, url = output_lines(stack, resources)

    assert url == "https://abc123.execute-api.cn-north-1.amazonaws.com.cn/prod/"
    assert "derived from its resources" in lines[1]


def test_derived_outputs_name_the_series_table_and_the_failure_queue():
    stack = {"StackId": STACK_ID}

    lines, _ = output_lines(stack, STACK_DATA)

    assert "      SeriesTableName            demo-Series-2" in lines
    url = STACK_DATA[2]["PhysicalResourceId"]
    assert f"      AggregatorFailureQueueUrl  {url}" in lines


# --- S3 -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("bucket", "region", "partition", "url"),
    [
        ("b-1", "eu-west-1", "aws", "https://b-1.s3.eu-west-1.amazonaws.com/k.json"),
        ("b-1", "cn-north-1", "aws-cn", "https://b-1.s3.cn-north-1.amazonaws.com.cn/k.json"),
        ("my.b", "us-east-1", "aws", "https://s3.us-east-1.amazonaws.com/my.b/k.json"),
        ("my.b", "cn-northwest-1", "aws-cn", "https://s3.cn-northwest-1.amazonaws.com.cn/my.b/k.json"),
        ("b-1", "us-gov-west-1", "aws-us-gov", "https://b-1.s3.us-gov-west-1.amazonaws.com/k.json"),
    ],
)  # fmt: skip
def test_template_urls_follow_the_partition_and_go_path_style_for_dotted_buckets(
    bucket, region, partition, url
):
    assert template_url(bucket, "k.json", region, partition) == url


def test_the_managed_bucket_is_named_by_account_and_region_and_templates_by_content():
    assert managed_bucket_name("123456789012", "eu-west-1") == (
        "route-counter-deploy-123456789012-eu-west-1"
    )
    assert template_key("demo", b"{}") == template_key("demo", b"{}")
    assert template_key("demo", b"{}") != template_key("demo", b"{ }")
    assert template_key("demo", b"{}").startswith("route-counter/demo/")


# --- the stack's state ----------------------------------------------------------------------


def stubbed_deployer(warned: list[str], **kwargs) -> tuple[Deployer, Stubber]:
    cfn = boto3.client("cloudformation", region_name="us-east-1")
    return Deployer(cfn, "demo", warn=warned.append, **kwargs), Stubber(cfn)


def test_a_rolled_back_create_is_explained_with_the_command_that_clears_it():
    warned: list[str] = []
    deployer, _ = stubbed_deployer(warned, where="--stack-name demo --region eu-west-1")

    with pytest.raises(DeployError) as stopped:
        deployer.kind({"StackStatus": "ROLLBACK_COMPLETE"})

    assert stopped.value.code == 1
    assert "ROLLBACK_COMPLETE" in warned[0]
    assert warned[-1] == "    ./deploy.sh --delete --stack-name demo --region eu-west-1"


def test_the_stack_kind_is_an_outcome_callers_can_match_by_identity():
    deployer, _ = stubbed_deployer([])

    assert deployer.kind(None) is Outcome.CREATE
    assert deployer.kind({"StackStatus": "REVIEW_IN_PROGRESS"}) is Outcome.CREATE
    assert deployer.kind({"StackStatus": "UPDATE_COMPLETE"}) is Outcome.UPDATE
    assert Outcome.DRY_RUN == "DRY_RUN"  # and still its old string, for the local banner


def test_a_busy_stack_is_not_touched():
    deployer, _ = stubbed_deployer([])

    with pytest.raises(DeployError, match=r"busy \(UPDATE_IN_PROGRESS\)"):
        deployer.kind({"StackStatus": "UPDATE_IN_PROGRESS"})


def test_ctrl_c_while_watching_stops_watching_only_and_says_so():
    """A real SIGINT to this process while the stack is still in progress."""
    warned: list[str] = []

    def interrupted_sleep(_: float) -> None:
        os.kill(os.getpid(), signal.SIGINT)

    deployer, stubber = stubbed_deployer(warned, sleep=interrupted_sleep)
    in_progress = {
        **event(1, "demo", "UPDATE_IN_PROGRESS", kind="AWS::CloudFormation::Stack"),
        "StackId": STACK_ID,
        "StackName": "demo",
    }
    stubber.add_response("describe_stack_events", {"StackEvents": [in_progress]})

    with stubber, pytest.raises(DeployError) as stopped:
        deployer.watch(STACK_ID, EventProgress(STACK_ID, T0, []))

    assert stopped.value.code == 130
    assert str(stopped.value).startswith(
        "stopped watching; CloudFormation carries on with stack demo"
    )


# --- the template ---------------------------------------------------------------------------


def test_the_deploy_builds_the_template_generate_py_prints_byte_for_byte():
    root = Path(__file__).resolve().parents[2]
    printed = subprocess.run(
        [sys.executable, "generate.py"], cwd=root, capture_output=True, check=True
    ).stdout

    assert cli.generate() == printed


def test_a_template_that_cannot_be_built_stops_the_deploy_with_one_line(monkeypatch, tmp_path):
    monkeypatch.setattr(function, "HANDLER_DIR", tmp_path)  # no handler/*.py to inline

    with pytest.raises(errors.TemplateRejected) as failed:
        cli.generate()

    line = str(failed.value)
    assert line.startswith("generate.py failed: [Errno 2] No such file or directory: ")
    assert "counter.py" in line and "\n" not in line and failed.value.code == 1


# --- the safeguards' plan ---------------------------------------------------------------------


def test_a_create_plans_protection_off_then_on_and_no_redeploy():
    template = json.loads(cli.generate())

    planned = safeguards.plan(Outcome.CREATE, template, {}, None, keep_previous=True)

    assert planned.values == {"TableDeletionProtection": "false"}
    assert (planned.protect_after, planned.redeploy) == (True, False)
    assert planned.notes[0].startswith("    TableDeletionProtection = false while the stack")


def test_an_update_that_adds_a_table_while_protected_is_replanned_unprotected_then_on():
    template = json.loads(cli.generate())
    previous = {"TableDeletionProtection": "true"}
    planned = safeguards.plan(Outcome.UPDATE, template, {}, previous, keep_previous=True)
    adds = [{"ResourceChange": {"Action": "Add", "LogicalResourceId": "SeriesTable",
                                "ResourceType": "AWS::DynamoDB::Table"}}]  # fmt: skip

    replanned = safeguards.replan_for_changes(
        planned, Outcome.UPDATE, adds, template, previous, True
    )

    assert (planned.protect_after, planned.redeploy) == (False, True)
    assert replanned.values == {"TableDeletionProtection": "false"}
    assert (replanned.protect_after, replanned.redeploy) == (True, True)
    assert (
        safeguards.replan_for_changes(planned, Outcome.UPDATE, [], template, previous, True) is None
    )


# --- named errors ---------------------------------------------------------------------------

# Each named error with its fields, and the line the deployer printed before it had names
# (copied from the f-strings it replaced): callers match the class, users read the same line.
NAMED_ERRORS = [
    (
        errors.StackBusy(stack="demo", status="UPDATE_IN_PROGRESS"),
        "stack demo is busy (UPDATE_IN_PROGRESS): wait for it to finish, then retry",
        1,
    ),
    (errors.ChangeSetFailed(reason="Bad"), "change set failed: Bad", 1),
    (errors.StackFailed(doing="deploying", stack="demo"), "deploying stack demo failed", 1),
    (errors.AwsCallFailed(what="describe-stacks", error="boom"), "describe-stacks: boom", 1),
    (
        errors.StoppedWatching(stack="demo"),
        "stopped watching; CloudFormation carries on with stack demo (see its events in the "
        "console or with aws cloudformation describe-stack-events)",
        130,
    ),
    (
        errors.DryRunNeedsBucket(stack="demo"),
        "a dry run creates nothing, and the template needs the deployment bucket, which does "
        "not exist (or was never set up): deploy once without --dry-run, or pass --s3-bucket "
        "BUCKET; stack demo unchanged",
        1,
    ),
    (
        errors.ProtectionNotOn(
            code=2,
            stack="demo",
            done="created",
            error="x",
            tables="CounterTable",
            parameter="TableDeletionProtection",
            where="--stack-name demo",
        ),
        "stack demo was created, but turning on the deletion protection of its tables failed "
        "(x): CounterTable may be unprotected; retry with ./deploy.sh --param "
        "TableDeletionProtection=true --stack-name demo",
        2,
    ),
    (
        errors.StackMissing(stack="demo", where=" in eu-west-1", consequence="nothing to delete"),
        "stack demo does not exist in eu-west-1: nothing to delete",
        1,
    ),
    (
        errors.NoRegion(),
        "no AWS region: pass --region, set AWS_DEFAULT_REGION, or configure one with "
        "'aws configure'",
        1,
    ),
    (errors.ToolMissing(tool="cfn-lint"), "cfn-lint not found: run 'make venv'", 1),
    (errors.SmokeTestFailed(detail="HTTP 500"), "smoke test failed: HTTP 500", 1),
    (errors.UsageError("unknown option '-x'"), "unknown option '-x' (see ./deploy.sh --help)", 2),
    (errors.Refused("cancelled"), "cancelled", 1),
    (errors.AlreadyExplained(), "", 1),
]


@pytest.mark.parametrize(("error", "line", "code"), NAMED_ERRORS)
def test_a_named_error_prints_the_line_it_always_printed(error, line, code):
    assert isinstance(error, DeployError)
    assert (str(error), error.code) == (line, code)


def test_a_busy_stack_is_refused_with_its_named_error():
    deployer, _ = stubbed_deployer([])

    with pytest.raises(errors.StackBusy) as busy:
        deployer.kind({"StackStatus": "DELETE_IN_PROGRESS"})

    assert busy.value.fields == {"stack": "demo", "status": "DELETE_IN_PROGRESS"}


# --- smoke test -----------------------------------------------------------------------------

LIMITED = {"RateLimit-Limit": "1", "RateLimit-Remaining": "0", "RateLimit-Reset": "40"}


def counted(n: int) -> Answer:
    return Answer(200, json.dumps({"route": "/p", "count": n}).encode())


@pytest.mark.parametrize(
    ("first", "second", "says"),
    [
        (counted(1), counted(2), "counted 1, then 2."),
        (counted(1), Answer(429, b"{}", LIMITED), "then refused with 429 and RateLimit headers"),
    ],
)
def test_a_working_api_passes(first, second, says):
    assert says in judge("https://x/prod/p", "p", first, second)


@pytest.mark.parametrize(
    ("first", "second", "says"),
    [
        (Answer(500, b'{"error": "boom"}'), Answer(0), 'HTTP 500 from https://x/prod/p: {"error"'),
        (Answer(0, error="timed out"), Answer(0), "HTTP 000 from https://x/prod/p: timed out"),
        (counted(1), Answer(429, b"{}", {}), "second request answered HTTP 429"),  # throttled
        (counted(3), counted(4), "expected counts 1 then 2, got 3 then 4"),
        (
            counted(1),
            Answer(0, error="timed out", answer_lost=True),
            "the second request to https://x/prod/p was sent but its answer was lost",
        ),
        (Answer(200, b"<html>"), counted(2), "not a counter response: <html>"),
    ],
)
def test_a_broken_api_fails_with_one_line(first, second, says):
    with pytest.raises(DeployError) as failed:
        judge("https://x/prod/p", "p", first, second)

    assert says in str(failed.value)


class NotRoutedYet(http.server.BaseHTTPRequestHandler):
    """A new API: 404 from the gateway for its first requests, then the counter."""

    misses = 2
    counts: ClassVar[dict[str, int]] = {}

    def do_GET(self) -> None:
        if NotRoutedYet.misses:
            NotRoutedYet.misses -= 1
            self.send_response(404)
            self.end_headers()
            return
        NotRoutedYet.counts[self.path] = NotRoutedYet.counts.get(self.path, 0) + 1
        body = json.dumps({"route": self.path, "count": NotRoutedYet.counts[self.path]})
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(body.encode())

    def log_message(self, *_: object) -> None:
        pass


def test_the_smoke_test_waits_for_a_new_api_to_route():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), NotRoutedYet)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    said, slept = [], []
    try:
        smoke_test(
            f"http://127.0.0.1:{server.server_address[1]}/prod/", said.append, sleep=slept.append
        )
    finally:
        server.shutdown()
        server.server_close()
        thread.join()

    assert len(slept) == 2  # two 404s retried
    assert said[-1].endswith("counted 1, then 2.")


@contextlib.contextmanager
def never_answering() -> Iterator[tuple[str, list[bytes]]]:
    """A server on 127.0.0.1 that takes connections and never answers: the kernel accepts
    them (backlog) and keeps what the client sends. Yields its URL and, once the block is
    done, what each connection sent."""
    listener = socket.create_server(("127.0.0.1", 0), backlog=32)
    received: list[bytes] = []
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}/prod/", received
        listener.setblocking(False)
        while True:
            try:
                connection, _ = listener.accept()
            except BlockingIOError:
                break
            with connection:
                connection.settimeout(1)
                received.append(connection.recv(65536))
    finally:
        listener.close()


def test_a_request_sent_but_never_answered_is_not_sent_again_and_fails_saying_so():
    said, slept = [], []
    with never_answering() as (url, received), pytest.raises(DeployError) as failed:
        smoke_test(url, said.append, sleep=slept.append, timeout=1.0)

    assert len(received) == 1 and received[0].startswith(b"GET /prod/smoke-test-")
    assert slept == []
    assert "the first request to " in str(failed.value)
    assert "was sent but its answer was lost (timed out); it may have been counted" in str(
        failed.value
    )


def test_a_refused_connection_is_retried_as_no_request_reached_the_api():
    slept: list[float] = []
    url = f"http://127.0.0.1:{free_port()}/prod/"  # nothing listens

    with pytest.raises(DeployError, match=r"HTTP 000 from .*Connection refused"):
        smoke_test(url, lambda _: None, sleep=slept.append, timeout=1.0)

    assert len(slept) == TRIES - 1


# --- the managed bucket's answers from S3 (botocore's Stubber: the service's own replies) ----

ACCOUNT = "123456789012"
BUCKET = managed_bucket_name(ACCOUNT, "eu-west-1")
OWNER = {"Bucket": BUCKET, "ExpectedBucketOwner": ACCOUNT}


def stubbed_s3() -> tuple[object, Stubber]:
    s3 = boto3.client("s3", region_name="eu-west-1")
    return s3, Stubber(s3)


@pytest.mark.parametrize(
    ("head", "create"),
    [
        ("403", None),  # another account's: ExpectedBucketOwner
        ("301", None),  # the name lives in another region
        ("404", "BucketAlreadyExists"),  # made by someone else between the two calls
    ],
)
def test_a_bucket_name_that_is_not_ours_is_never_used(head, create):
    s3, stubber = stubbed_s3()
    stubber.add_client_error("head_bucket", head, http_status_code=int(head))
    if create:
        stubber.add_client_error("create_bucket", create, http_status_code=409)

    with stubber, pytest.raises(DeployError, match="is taken by another AWS account"):
        ensure_managed_bucket(s3, ACCOUNT, "eu-west-1", "aws", lambda _: None)
    stubber.assert_no_pending_responses()  # nothing configured, nothing uploaded


def test_a_bucket_whose_set_up_was_interrupted_is_set_up_again():
    s3, stubber = stubbed_s3()
    stubber.add_response("head_bucket", {}, OWNER)
    stubber.add_response("get_bucket_versioning", {}, OWNER)  # never versioned: set-up cut short
    for call in ("put_public_access_block", "put_bucket_encryption", "put_bucket_policy",
                 "put_bucket_lifecycle_configuration", "put_bucket_versioning"):  # fmt: skip
        stubber.add_response(call, {})
    said: list[str] = []

    with stubber:
        assert ensure_managed_bucket(s3, ACCOUNT, "eu-west-1", "aws", said.append) == BUCKET
    stubber.assert_no_pending_responses()

    assert "set up again" in said[0]


def test_a_bucket_of_ours_is_reused_as_it_is():
    s3, stubber = stubbed_s3()
    stubber.add_response("head_bucket", {}, OWNER)
    stubber.add_response("get_bucket_versioning", {"Status": "Enabled"}, OWNER)
    said: list[str] = []

    with stubber:
        ensure_managed_bucket(s3, ACCOUNT, "eu-west-1", "aws", said.append)

    assert said == [f"Deployment bucket s3://{BUCKET} (this account's, reused)"]


@pytest.mark.parametrize(
    ("refused", "permission"),
    [
        ("get_bucket_versioning", "s3:GetBucketVersioning"),
        ("put_bucket_encryption", "s3:PutEncryptionConfiguration"),  # not the call's name
    ],
)
def test_a_permission_the_bucket_set_up_lacks_stops_the_deploy_in_one_line(refused, permission):
    s3, stubber = stubbed_s3()
    stubber.add_response("head_bucket", {}, OWNER)
    for call in ("get_bucket_versioning", "put_public_access_block", "put_bucket_encryption"):
        if call == refused:
            stubber.add_client_error(call, "AccessDenied", "Access Denied", 403)
            break
        stubber.add_response(call, {})

    with stubber, pytest.raises(DeployError) as failed:
        ensure_managed_bucket(s3, ACCOUNT, "eu-west-1", "aws", lambda _: None)
    stubber.assert_no_pending_responses()  # and nothing called after the refusal

    said = str(failed.value)
    assert said.startswith(f"setting up the deployment bucket {BUCKET} (this needs {permission})")
    assert "(AccessDenied)" in said and "Access Denied" in said
    assert "\n" not in said


def test_no_answer_from_s3_stops_the_deploy_in_one_line():
    unreachable = f"https://127.0.0.1:{free_port()}"  # nothing listens: connection refused
    s3 = boto3.client(
        "s3",
        region_name="eu-west-1",
        endpoint_url=unreachable,
        config=Config(retries={"total_max_attempts": 1}, connect_timeout=2),
    )

    with pytest.raises(DeployError) as failed:
        ensure_managed_bucket(s3, ACCOUNT, "eu-west-1", "aws", lambda _: None)

    assert str(failed.value).startswith(
        f"checking the deployment bucket {BUCKET} (this needs s3:ListBucket): "
        f'Could not connect to the endpoint URL: "{unreachable}/'
    )


def test_an_aws_error_no_step_explains_is_one_line_and_exit_1(monkeypatch, capsys):
    s3, stubber = stubbed_s3()
    stubber.add_client_error("list_buckets", "AccessDenied", "not authorized: s3:ListAllMyBuckets")

    def delete(_options: object) -> None:
        with stubber:
            s3.list_buckets()  # botocore's own ClientError, raised by no step of ours

    monkeypatch.setattr(cli, "delete", delete)

    assert cli.main(["--delete", "--yes", "--stack-name", "demo"]) == 1
    err = capsys.readouterr().err
    assert err.splitlines() == [
        "error: AWS call failed: An error occurred (AccessDenied) when calling the ListBuckets "
        "operation: not authorized: s3:ListAllMyBuckets"
    ]


# --- the smoke test with a ClientIdentity (docs/clients.md) ----------------------------------


def gateway(status: int, message: str) -> Answer:
    return Answer(status, json.dumps({"message": message}).encode())


@pytest.mark.parametrize(
    "identity, answers, said",
    [
        (
            "apikey",
            [gateway(403, "Missing Authentication Token"), gateway(403, "Forbidden")],
            "without an API key refused by API Gateway (403 Forbidden).",
        ),
        (
            "header:X-Client-Id",
            [
                Answer(404),
                Answer(
                    401,
                    b'{"error": "this API counts hits per client: the X-Client-Id'
                    b' header is required"}',
                ),
            ],
            "without a client (header:X-Client-Id) refused with 401.",
        ),
    ],
)
def test_with_a_client_identity_the_smoke_test_sends_one_request_that_must_be_refused(
    identity, answers, said
):
    sent, slept, lines = [], [], []

    def get(url, timeout):
        sent.append(url)
        return answers[len(sent) - 1]

    smoke_test("https://x/prod/", lines.append, get, slept.append, client_identity=identity)
    assert len(sent) == 2 and len(slept) == 1  # the stage routed at the second try
    assert lines[-1].endswith(said)


@pytest.mark.parametrize(
    "identity, answer, words",
    [
        ("apikey", counted(1), "HTTP 200, not 403 Forbidden from API Gateway"),
        ("authorizer", counted(1), "HTTP 200, not the counter's 401 (ClientIdentity authorizer)"),
        ("apikey", Answer(0, error="timed out", answer_lost=True), "its answer was lost"),
    ],
)
def test_with_a_client_identity_a_request_counted_without_one_fails_the_smoke_test(
    identity, answer, words
):
    sent = []

    def get(url, timeout):
        sent.append(url)
        return answer

    with pytest.raises(DeployError) as failed:
        smoke_test("https://x/prod/", lambda _: None, get, lambda _: None, client_identity=identity)
    assert words in str(failed.value)
    assert len(sent) == 1  # nothing retried that reached the counter
