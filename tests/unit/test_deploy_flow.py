"""deploy.sh's flow after its template is generated and linted (cli.Deploy.deploy_template),
against in-process moto with the emulator's fidelity fixes: what the stack, the account and
its buckets hold afterwards. The whole script against a server is
tests/integration/test_deploy.py; these are the unit-tier guards of the same outcomes."""

import json
from collections.abc import Iterator

import boto3
import pytest
from botocore.stub import Stubber
from moto import mock_aws

from deployer import cli, concurrency
from deployer.errors import DeployError
from deployer.options import parse
from deployer.policy import Scope
from deployer.s3 import ensure_managed_bucket
from generate import build_template, render
from local import moto_fidelity
from local.emulator import free_port
from tests.conftest import FAKE_CREDENTIALS
from tests.policy_check import ACCOUNT, REGION, recording, refused_calls

BODY = render(build_template()).encode()
BUCKET = "my-templates"  # a bucket of the user's: --s3-bucket
TABLES = ("CounterTable", "SeriesTable")


@pytest.fixture
def account() -> Iterator[None]:
    """An empty account (in-process moto, patched as the emulator is) with one bucket."""
    moto_fidelity.apply()
    with mock_aws():
        boto3.client("s3").create_bucket(Bucket=BUCKET)
        yield


@pytest.fixture(scope="class")
def created() -> Iterator[None]:
    """One create (with a reservation that fits), shared by the tests of TestACreate, which
    only look at it (its moto ends with the class: the other tests have their own)."""
    moto_fidelity.apply()
    with pytest.MonkeyPatch.context() as patch, mock_aws():
        for key, value in FAKE_CREDENTIALS.items():
            patch.setenv(key, value)
        patch.delenv("AWS_ENDPOINT_URL", raising=False)
        boto3.client("s3").create_bucket(Bucket=BUCKET)
        deploy("--param", "ReservedConcurrency=900")
        yield


def deploy(*args: str, bucket: str | None = BUCKET) -> cli.Deploy:
    """The deploy; then every AWS call it made must be one the deployer's IAM policy
    (deployer/policy.py) allows on the resource it named, whether it succeeded or not."""
    where = ["--s3-bucket", bucket] if bucket else []
    options = parse(["--stack-name", "demo", "--no-smoke", *where, *args], has_terminal=False)
    with pytest.MonkeyPatch.context() as patch, recording(patch) as recorder:
        try:
            flow = cli.Deploy(options)
            flow.aws = cli.connect(options)
            flow.deploy_template(BODY)
        finally:
            scope = Scope(region=REGION, account=ACCOUNT, stack="demo", bucket=bucket or "")
            assert recorder.calls
            assert refused_calls(recorder, scope) == []
    return flow


def physical_ids() -> dict[str, str]:
    found = boto3.client("cloudformation").describe_stack_resources(StackName="demo")
    return {  # moto lists the resources it does not model without ids
        r["LogicalResourceId"]: r["PhysicalResourceId"]
        for r in found["StackResources"]
        if r.get("LogicalResourceId") and r.get("PhysicalResourceId")
    }


def reservation(function: str) -> int | None:
    answer = boto3.client("lambda").get_function_concurrency(FunctionName=function)
    return answer.get("ReservedConcurrentExecutions")


class TestACreate:
    """What a create leaves (mutation survivors: only the integration tier guarded the stack
    policy and the deletion protection turned on after the create)."""

    def test_a_create_ends_with_the_stack_policy_that_keeps_both_tables(self, created):
        policy = json.loads(
            boto3.client("cloudformation").get_stack_policy(StackName="demo")["StackPolicyBody"]
        )
        denied = {
            statement["Resource"]: sorted(statement["Action"])
            for statement in policy["Statement"]
            if statement["Effect"] == "Deny"
        }
        assert denied == {
            f"LogicalResourceId/{table}": ["Update:Delete", "Update:Replace"] for table in TABLES
        }
        assert {"Effect": "Allow", "Principal": "*", "Action": "Update:*", "Resource": "*"} in (
            policy["Statement"]
        )

    def test_a_create_ends_with_both_tables_protected_from_deletion(self, created):
        dynamodb = boto3.client("dynamodb")
        ids = physical_ids()
        for table in TABLES:
            described = dynamodb.describe_table(TableName=ids[table])["Table"]
            assert described["DeletionProtectionEnabled"] is True, table
        with pytest.raises(
            dynamodb.exceptions.ClientError, match="DeletionProtectionEnabled is set to True"
        ):
            dynamodb.delete_table(TableName=ids["CounterTable"])
        stack = boto3.client("cloudformation").describe_stacks(StackName="demo")["Stacks"][0]
        values = {p["ParameterKey"]: p["ParameterValue"] for p in stack["Parameters"]}
        assert values["TableDeletionProtection"] == "true"

    def test_a_reservation_that_fits_is_the_counters_alone(self, created):
        ids = physical_ids()
        assert reservation(ids["CounterFunction"]) == 900
        assert reservation(ids["StatsFunction"]) is None
        assert reservation(ids["AggregatorFunction"]) is None


# --- ReservedConcurrency against the account's concurrency (GetAccountSettings) -------------


def test_a_reservation_lambda_would_refuse_stops_the_deploy_before_any_change_set(account):
    """The default account has 1,000 concurrent executions and Lambda keeps 100 unreserved."""
    with pytest.raises(DeployError) as refused:
        deploy("--param", "ReservedConcurrency=901")

    assert str(refused.value) == (
        "ReservedConcurrency=901 would leave 99 of this region's 1000 concurrent executions "
        "unreserved and Lambda keeps at least 100: reserve at most 900, or ask AWS for a "
        "higher concurrency quota"
    )
    stacks = boto3.client("cloudformation").list_stacks()["StackSummaries"]
    assert stacks == []  # no change set, no REVIEW_IN_PROGRESS stack


def test_an_update_counts_the_reservation_the_stack_already_holds(account):
    deploy("--param", "ReservedConcurrency=800")
    # another function of the account reserves 150: 50 are left unreserved
    other = boto3.client("lambda").get_function(FunctionName=physical_ids()["StatsFunction"])
    lambda_client = boto3.client("lambda")
    lambda_client.create_function(
        FunctionName="someone-elses",
        Runtime="python3.13",
        Role=other["Configuration"]["Role"],
        Handler="index.handler",
        Code={"ZipFile": b"PK\x05\x06" + b"\x00" * 18},  # an empty zip
    )
    lambda_client.put_function_concurrency(
        FunctionName="someone-elses", ReservedConcurrentExecutions=150
    )

    with pytest.raises(DeployError, match=r"would leave 50 .* reserve at most 750,"):
        deploy("--param", "ReservedConcurrency=800", "--param", "RateLimit=5")
    deploy("--param", "ReservedConcurrency=750")  # 800 given back, 750 taken: 100 left

    stack = boto3.client("cloudformation").describe_stacks(StackName="demo")["Stacks"][0]
    values = {p["ParameterKey"]: p["ParameterValue"] for p in stack["Parameters"]}
    assert values["ReservedConcurrency"] == "750"


def test_a_reservation_that_cannot_be_checked_is_said_in_one_line_and_deployed():
    lambda_client = boto3.client("lambda", region_name="us-east-1")
    stubber = Stubber(lambda_client)
    stubber.add_client_error("get_account_settings", "AccessDeniedException", "not authorized")

    with stubber:
        refused, warning = concurrency.check(lambda_client, 5, [])

    assert refused is None
    assert warning.startswith("    ReservedConcurrency=5 not checked against the region's ")
    assert "(AccessDeniedException)" in warning and "\n" not in warning


# --- dry runs change nothing; errors are one line naming the real cause ---------------------


def test_a_dry_run_creates_no_bucket_and_lists_what_a_create_would_add(account, capsys):
    """The template is over 51,200 bytes: a real deploy makes the deployment bucket for it.
    A dry run made it too; now it creates nothing and lists the template's resources."""
    s3 = boto3.client("s3")
    before = [b["Name"] for b in s3.list_buckets()["Buckets"]]

    deploy("--dry-run", bucket=None)

    assert [b["Name"] for b in s3.list_buckets()["Buckets"]] == before == [BUCKET]
    assert boto3.client("cloudformation").list_stacks()["StackSummaries"] == []
    out = capsys.readouterr().out
    for logical_id in json.loads(BODY)["Resources"]:
        assert f" Add     {logical_id} " in out, logical_id
    assert "Dry run: nothing created, nothing deployed." in out


def test_a_dry_run_of_an_update_without_the_bucket_is_one_line_and_changes_nothing(account):
    deploy()  # through --s3-bucket: the managed bucket was never made
    buckets = boto3.client("s3").list_buckets()["Buckets"]

    with pytest.raises(DeployError) as refused:
        deploy("--dry-run", "--param", "RateLimit=5", bucket=None)

    assert str(refused.value).startswith("a dry run creates nothing, and the template needs ")
    assert boto3.client("s3").list_buckets()["Buckets"] == buckets


def test_a_region_typo_is_one_line_naming_the_region(capsys):
    code = cli.main(["--region", "us-est-1", "--dry-run"])

    err = capsys.readouterr().err
    assert code == 1
    assert err.splitlines() == [
        "error: unknown AWS region 'us-est-1' (did you mean us-east-1 or us-west-1?): check "
        "--region, "
        "AWS_REGION, AWS_DEFAULT_REGION and the profile's region (a region newer than this "
        "botocore needs 'make venv' with a newer boto3)"
    ]


def test_a_plain_http_endpoint_is_named_before_the_bucket_is_touched():
    """The managed bucket takes only TLS requests: over http:// every set-up call would be
    refused as if a permission lacked. Nothing listens on the endpoint: any request made
    would fail another way."""
    endpoint = f"http://127.0.0.1:{free_port()}"
    s3 = boto3.client("s3", region_name="us-east-1", endpoint_url=endpoint)

    with pytest.raises(DeployError) as refused:
        ensure_managed_bucket(s3, "123456789012", "us-east-1", "aws", lambda _: None)

    said = str(refused.value)
    assert said.startswith(f"the S3 endpoint {endpoint} is plain HTTP, and the deployment ")
    assert "aws:SecureTransport" in said and "permission" not in said and "\n" not in said


# --- the stack policy on AWS (emulated: moto enforces none) ---------------------------------


def stack_policy_denies() -> dict[str, list[str]]:
    policy = json.loads(
        boto3.client("cloudformation").get_stack_policy(StackName="demo")["StackPolicyBody"]
    )
    return {
        s["Resource"]: sorted(s["Action"]) for s in policy["Statement"] if s["Effect"] == "Deny"
    }


def test_analytics_off_takes_the_series_table_out_of_the_stack_and_keeps_it(account):
    """The stack policy denies Update:Delete of SeriesTable, and AWS checks it when the change
    set runs: without lifting it for this one update, Analytics=off is rolled back."""
    deploy()
    series = physical_ids()["SeriesTable"]

    deploy("--param", "Analytics=off")

    stack = boto3.client("cloudformation").describe_stacks(StackName="demo")["Stacks"][0]
    assert stack["StackStatus"] == "UPDATE_COMPLETE"
    assert "SeriesTable" not in physical_ids()
    assert series in boto3.client("dynamodb").list_tables()["TableNames"]  # retained
    assert stack_policy_denies() == {  # the fail-safe is back for the next update
        f"LogicalResourceId/{table}": ["Update:Delete", "Update:Replace"] for table in TABLES
    }


def test_an_update_that_would_delete_the_counter_table_is_still_refused_by_the_policy(account):
    """Only a kept table that its own condition turns off, and that its DeletionPolicy keeps,
    leaves the stack; anything else the policy denies still fails the update."""
    deploy()
    template = json.loads(BODY)
    del template["Resources"]["CounterTable"]  # e.g. a renamed logical id
    for resource in template["Resources"].values():
        resource.pop("DependsOn", None)
    flow = cli.Deploy(parse(["--stack-name", "demo", "--no-smoke", "--s3-bucket", BUCKET], False))
    flow.aws = cli.connect(flow.options)
    with pytest.raises(DeployError, match="deploying stack demo failed"):
        flow.deploy_template(json.dumps(template).encode())
    assert "CounterTable" in physical_ids()


def test_the_full_policy_is_back_after_an_update_under_the_window_fails(account, capsys):
    """The window that lets SeriesTable leave is set for one change set; when that change set
    fails (here: it also deletes the counter table, which the window still denies), the
    stack keeps the full policy, not the window."""
    deploy()
    template = json.loads(BODY)
    del template["Resources"]["CounterTable"]
    for resource in template["Resources"].values():
        resource.pop("DependsOn", None)
    options = ["--stack-name", "demo", "--no-smoke", "--s3-bucket", BUCKET]
    flow = cli.Deploy(parse([*options, "--param", "Analytics=off"], False))
    flow.aws = cli.connect(flow.options)
    with pytest.raises(DeployError, match="deploying stack demo failed"):
        flow.deploy_template(json.dumps(template).encode())
    assert "Stack policy set for this update: SeriesTable may leave it." in capsys.readouterr().out
    assert {"CounterTable", "SeriesTable"} <= set(physical_ids())  # rolled back
    assert stack_policy_denies() == {
        f"LogicalResourceId/{table}": ["Update:Delete", "Update:Replace"] for table in TABLES
    }
