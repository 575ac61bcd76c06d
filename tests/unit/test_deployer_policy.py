"""The IAM policy of whoever runs ./deploy.sh (deployer/policy.py, docs/deployer-policy.json):
every call the deployer makes is allowed, on the resource it names; every resource type of
the template has CloudFormation's create, update and delete actions in it, each one AWS
publishes for the type."""

import json
from collections.abc import Iterator
from pathlib import Path

import boto3
import cfnlint.data.schemas
import pytest
from moto import mock_aws

from deployer import cli
from deployer.errors import DeployError
from deployer.options import parse
from deployer.policy import (
    DEPLOYER_ACTIONS,
    MANAGED_POLICY_LIMIT,
    PHASES,
    READ_ONLY_VERBS,
    RESOURCE_ACTIONS,
    UNSCOPED,
    Scope,
    all_actions,
    deployer_policy,
    render,
)
from local import moto_fidelity
from tests.conftest import FAKE_CREDENTIALS, ROOT
from tests.policy_check import (
    ACCOUNT,
    REGION,
    Recorder,
    allows,
    matches,
    policy,
    recording,
    refused_calls,
)
from tests.unit.test_deploy_flow import BODY

SCHEMAS = Path(cfnlint.data.schemas.__file__).parent


def as_an_aws_account(patch: pytest.MonkeyPatch) -> None:
    """The deployer's clients on in-process moto as on AWS: credentials, AWS's endpoints, and
    https (no request crosses a socket, so the deployment bucket's TLS-only policy is told)."""
    for key, value in FAKE_CREDENTIALS.items():
        patch.setenv(key, value)
    patch.delenv("AWS_ENDPOINT_URL", raising=False)
    patch.setattr(moto_fidelity._request, "secure", True, raising=False)


@pytest.fixture(scope="module")
def recorded() -> Iterator[tuple[Recorder, dict[str, str]]]:
    """The deployer's calls in a create with the defaults (through the managed bucket), an
    update with every optional feature on, a dry run, a refused billing switch, the stats
    token and a delete: the recorder, and the resources' physical ids before the delete."""
    moto_fidelity.apply()
    with pytest.MonkeyPatch.context() as patch, mock_aws(), recording(patch) as recorder:
        as_an_aws_account(patch)

        def deploy(*args: str) -> None:
            options = parse(["--stack-name", "demo", "--no-smoke", *args], has_terminal=False)
            flow = cli.Deploy(options)
            flow.aws = cli.connect(options)
            flow.deploy_template(BODY)

        deploy()
        deploy("--dry-run", "--param", "RateLimit=5")
        deploy(
            *("--param", "Backend=https://api.example.com"),
            *("--param", "PrivateStats=true"),
            *("--param", "AlarmEmail=ops@example.com"),
            *("--param", "ReservedConcurrency=10"),
            *("--param", "MaxRoutes=100"),
            *("--param", "StatsPath=stats"),  # replaces routes: the stage is redeployed
        )
        with pytest.raises(DeployError, match="refusing to switch BillingMode"):
            deploy("--param", "BillingMode=PROVISIONED")
        cli.print_stats_token(parse(["--stats-token", "--stack-name", "demo"], False))
        found = boto3.client("cloudformation").describe_stack_resources(StackName="demo")
        physical = {
            r["LogicalResourceId"]: r["PhysicalResourceId"]
            for r in found["StackResources"]
            if r.get("PhysicalResourceId")
        }
        cli.delete(parse(["--delete", "--yes", "--stack-name", "demo"], False))
        yield recorder, physical


def test_every_call_the_deployer_makes_is_allowed_on_the_resource_it_names(recorded):
    recorder, _ = recorded
    actions = {action for action, _ in recorder.calls}

    # what the flows above reach (a call no flow made would be untested here)
    assert {
        "cloudformation:CreateChangeSet",
        "cloudformation:SetStackPolicy",
        "cloudformation:DeleteStack",
        "s3:CreateBucket",
        "s3:PutObject",
        "apigateway:GET",
        "apigateway:POST",
        "dynamodb:DescribeTable",
        "lambda:GetAccountSettings",
        "secretsmanager:GetSecretValue",
    } <= actions
    assert refused_calls(recorder, Scope(region=REGION, account=ACCOUNT, stack="demo")) == []
    # and each is one the policy lists as the deployer's
    assert actions <= {a.JSONrepr() for a in DEPLOYER_ACTIONS}


def test_the_stacks_resources_fall_within_the_policys_name_patterns(recorded):
    """What CloudFormation creates is named after the stack (moto names as AWS does,
    STACK-LogicalId-RANDOM): the policy's patterns cover each resource it acts on."""
    _, physical = recorded
    exact = policy(Scope(region=REGION, account=ACCOUNT, stack="demo"))
    arn = f"{REGION}:{ACCOUNT}"
    resources = {
        "dynamodb:CreateTable": f"arn:aws:dynamodb:{arn}:table/{physical['CounterTable']}",
        "dynamodb:UpdateTable": f"arn:aws:dynamodb:{arn}:table/{physical['SeriesTable']}",
        "lambda:CreateFunction": f"arn:aws:lambda:{arn}:function:{physical['CounterFunction']}",
        "lambda:DeleteFunction": f"arn:aws:lambda:{arn}:function:{physical['StatsFunction']}",
        "iam:CreateRole": f"arn:aws:iam::{ACCOUNT}:role/{physical['CounterFunctionRole']}",
        "iam:PutRolePolicy": f"arn:aws:iam::{ACCOUNT}:role/{physical['StatsFunctionRole']}",
        "logs:CreateLogGroup": f"arn:aws:logs:{arn}:log-group:{physical['CounterLogGroup']}",
        "sqs:CreateQueue": f"arn:aws:sqs:{arn}:{physical['AggregatorFailureQueue'].split('/')[-1]}",
        "sns:CreateTopic": physical["AlarmTopic"],
        "secretsmanager:CreateSecret": physical["StatsTokenSecret"],
        "cloudwatch:PutMetricAlarm": f"arn:aws:cloudwatch:{arn}:alarm:demo-CounterErrors",
        "apigateway:POST": f"arn:aws:apigateway:{REGION}::/restapis",
        "apigateway:PUT": f"arn:aws:apigateway:{REGION}::/restapis/{physical['CounterApi']}",
    }
    outside = {a: r for a, r in resources.items() if not allows(exact, a, r)}
    assert outside == {}
    # and another stack's are outside them
    assert not allows(exact, "dynamodb:DeleteTable", f"arn:aws:dynamodb:{arn}:table/other-T")


# --- what CloudFormation needs, per resource type ---------------------------------------------


def handler_permissions(resource_type: str) -> dict[str, set[str]]:
    """AWS's published handler permissions of a type (the registry schema cfn-lint ships)."""
    providers = json.loads((SCHEMAS / "providers" / "us-east-1.json").read_text())
    schema = json.loads((SCHEMAS / "resources" / f"{providers[resource_type]}.json").read_text())
    handlers = schema["handlers"]
    return {phase: set(handlers.get(phase, {}).get("permissions", [])) for phase in PHASES}


def test_every_resource_type_of_the_template_has_its_actions_in_the_policy(template):
    document = policy()
    types = {resource["Type"] for resource in template["Resources"].values()}

    assert set(RESOURCE_ACTIONS) == types
    for resource_type, phases in RESOURCE_ACTIONS.items():
        assert phases["create"] and phases["delete"], resource_type
        for phase, actions in phases.items():
            for action in actions:
                assert allows(document, action.JSONrepr()), (resource_type, phase, action)


def test_each_action_of_a_type_is_one_aws_publishes_for_that_type_and_phase():
    invented = {
        (resource_type, phase, action.JSONrepr())
        for resource_type, phases in RESOURCE_ACTIONS.items()
        for phase, actions in phases.items()
        for action in actions
        if action.JSONrepr() not in handler_permissions(resource_type)[phase]
    }
    assert invented == set()


def test_each_types_main_create_and_delete_calls_are_there():
    """The call that makes each type and the one that removes it, as AWS names them."""
    for resource_type, phases in RESOURCE_ACTIONS.items():
        published = handler_permissions(resource_type)
        for phase in ("create", "delete"):
            main = {p for p in published[phase] if p.split(":")[1].startswith(phase.capitalize())}
            mine = {a.JSONrepr() for a in phases[phase]}
            assert not main or main & mine, (resource_type, phase, main)


# --- the file, and the reasons for `*` ---------------------------------------------------------


def test_the_checked_in_policy_is_the_generated_one():
    assert (ROOT / "docs" / "deployer-policy.json").read_text() == render(deployer_policy())


def test_only_actions_that_take_no_resource_are_granted_on_star_and_the_docs_say_why():
    docs = (ROOT / "docs" / "deploying.md").read_text()
    granted = {a.JSONrepr() for a in all_actions()}
    for statement in policy()["Statement"]:
        if statement["Resource"] == ["*"] and "Condition" not in statement:
            covered = {a for a in granted for p in statement["Action"] if matches(p, a, False)}
            assert covered <= set(UNSCOPED)
    for action in UNSCOPED:
        assert f"`{action}`" in docs, action


def test_the_only_wildcard_actions_are_read_only_verbs():
    for statement in policy()["Statement"]:
        for action in statement["Action"]:
            if "*" in action:
                assert action.split(":")[1] in {f"{v}*" for v in READ_ONLY_VERBS}, action


def test_the_policy_fits_a_managed_policy_for_a_stack_name_of_20_characters():
    """IAM counts a managed policy's characters, whitespace aside: at most 6,144."""
    regions = boto3.Session().get_available_regions("cloudformation")
    longest = max(regions, key=len)
    scope = Scope(region=longest, account=ACCOUNT, stack="r" * 20, bucket="")
    size = len("".join(render(deployer_policy(scope)).split()))
    assert size <= MANAGED_POLICY_LIMIT, (longest, size)


def test_the_command_names_your_bucket_and_key_instead_of_the_patterns(capsys):
    from deployer.policy import main

    key = f"arn:aws:kms:eu-west-1:{ACCOUNT}:key/1234abcd-12ab-34cd-56ef-1234567890ab"
    main(
        [
            *("--account", ACCOUNT, "--region", "eu-west-1", "--stack-name", "counter"),
            *("--s3-bucket", "my-templates", "--kms-key-arn", key),
        ]
    )

    statements = {s["Sid"]: s for s in json.loads(capsys.readouterr().out)["Statement"]}
    assert statements["S3"]["Resource"] == [
        "arn:aws:s3:::my-templates",
        "arn:aws:s3:::my-templates/route-counter/*",
    ]
    assert statements["Kms"]["Resource"] == [key]
    assert statements["Lambda"]["Resource"] == [
        f"arn:aws:lambda:eu-west-1:{ACCOUNT}:function:counter-*"
    ]


def test_the_keys_commands_calls_are_allowed_by_the_policy(capsys):
    """./deploy.sh keys create, list and revoke, on a stack deployed with ClientIdentity
    apikey, call only what the policy allows, on the resources it names."""
    moto_fidelity.apply()
    with pytest.MonkeyPatch.context() as patch, mock_aws(), recording(patch) as recorder:
        as_an_aws_account(patch)
        options = parse(
            ["--stack-name", "demo", "--no-smoke", "--param", "ClientIdentity=apikey"], False
        )
        flow = cli.Deploy(options)
        flow.aws = cli.connect(options)
        flow.deploy_template(BODY)
        recorder.calls.clear()  # the deploy's calls are the test above's

        assert cli.main(["keys", "create", "acme", "--stack-name", "demo"]) == 0
        (key,) = boto3.client("apigateway").get_api_keys()["items"]
        assert cli.main(["keys", "list", "--stack-name", "demo"]) == 0
        assert cli.main(["keys", "revoke", key["id"], "--stack-name", "demo"]) == 0

    actions = {action for action, _ in recorder.calls}
    assert {"apigateway:POST", "apigateway:GET", "apigateway:PATCH"} <= actions
    assert refused_calls(recorder, Scope(region=REGION, account=ACCOUNT, stack="demo")) == []
    assert actions <= {a.JSONrepr() for a in DEPLOYER_ACTIONS}
