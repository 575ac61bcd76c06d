"""./deploy.sh's flow: the AWS account, then deploy (generate, lint, change set, finish) or delete.

Every failure is one `error: ...` line on stderr; exit status 0 done (also when there was
nothing to change), 1 failed, 2 bad usage, 130 stopped with Ctrl-C.
"""

from __future__ import annotations

import difflib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError
from botocore.parsers import ResponseParserError

from deployer import concurrency
from deployer.deployer import Deployer, Review
from deployer.errors import (
    AlreadyExplained,
    AwsCallFailed,
    CredentialsCheckFailed,
    DeployError,
    NoCredentials,
    NoRegion,
    Refused,
    ReservationTooLarge,
    SmokeTestFailed,
    StackMissing,
    TemplateRejected,
    ToolMissing,
    UnknownRegion,
)
from deployer.options import USAGE, Options, parse
from deployer.parameters import (
    BILLING_MODE,
    TABLE_ID,
    account_role_choice,
    billing_mode_refusal,
    check_parameters,
    needs_account_role,
)
from deployer.report import TABLE_TYPE, Fate, data_fates, fates_summary, output_lines
from deployer.results import Outcome
from deployer.s3 import (
    INLINE_LIMIT,
    ensure_managed_bucket,
    existing_managed_bucket,
    template_key,
    template_url,
    upload,
)
from deployer.safeguards import KEEP_TABLES, StackSafeguards
from deployer.smoke import smoke_test


def say(line: str) -> None:
    print(line, flush=True)


def step(text: str) -> None:
    say(f"==> {text}")


# --- the AWS account ----------------------------------------------------------------------------


@dataclass
class Aws:
    """The session the deploy runs in: region, account and partition, and its clients."""

    session: boto3.Session
    region: str
    account: str
    partition: str

    def client(self, service: str) -> object:
        # AWS_ENDPOINT_URL (botocore >= 1.31) points every client at an emulator.
        config = Config(retries={"mode": "standard", "max_attempts": 5})
        return self.session.client(service, region_name=self.region, config=config)


def connect(options: Options) -> Aws:
    """Region and credentials, each missing one named in one line."""
    try:
        session = boto3.Session(profile_name=options.profile or None)
        configured = session.region_name
    except BotoCoreError as error:  # an unknown profile
        raise CredentialsCheckFailed(error=error) from None
    region = (
        options.region
        or os.environ.get("AWS_REGION")
        or os.environ.get("AWS_DEFAULT_REGION")
        or configured
    )
    if not region:
        raise NoRegion
    check_region(session, region)
    aws = Aws(session, region, "", "aws")
    try:
        identity = aws.client("sts").get_caller_identity()
    except NoCredentialsError:
        raise NoCredentials from None
    except (ClientError, BotoCoreError) as error:
        raise CredentialsCheckFailed(error=error) from None
    aws.account = identity["Account"]
    aws.partition = identity["Arn"].split(":")[1]
    return aws


def check_region(session: boto3.Session, region: str) -> None:
    """A region no partition has stops here, named: AWS's endpoint for it does not resolve
    (a credentials check that 'could not connect') and an emulator answers an HTML 500."""
    known = {
        name
        for partition in session.get_available_partitions()
        for name in session.get_available_regions("cloudformation", partition_name=partition)
    }
    if region in known:
        return
    close = difflib.get_close_matches(region.strip().lower(), sorted(known), n=3, cutoff=0.85)
    hint = f" (did you mean {' or '.join(sorted(close))}?)" if close else ""
    raise UnknownRegion(region=region, hint=hint)


# --- deploy -------------------------------------------------------------------------------------


def generate() -> bytes:
    """The template, byte for byte as `python generate.py` prints it; its failure in one line."""
    from generate import build_template, render  # troposphere and awacs: only for a deploy

    try:
        return render(build_template()).encode()
    except Exception as error:  # a building block's or troposphere's refusal, a handler unread
        raise TemplateRejected(f"generate.py failed: {error}") from None


def cfn_lint() -> str:
    """The venv's cfn-lint, else the one on PATH."""
    beside = Path(sys.prefix) / "bin" / "cfn-lint"
    found = str(beside) if beside.exists() else shutil.which("cfn-lint")
    if not found:
        raise ToolMissing(tool="cfn-lint")
    return found


class Deploy:
    """./deploy.sh without --delete: the template, checked, deployed, then tried."""

    def __init__(self, options: Options) -> None:
        self.options = options

    def run(self) -> None:
        options = self.options
        body = generate()
        template = json.loads(body)
        check_parameters(template, options.params)
        with tempfile.TemporaryDirectory(prefix="deploy.") as tmp:
            path = Path(tmp) / "route-counter.template.json"
            path.write_bytes(body)
            # Lint in the background while the AWS checks run; nothing is deployed before
            # it passes.
            lint = subprocess.Popen(
                [cfn_lint(), str(path), "--include-checks", "I"],
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
            try:
                self.aws = connect(options)
                found = lint.communicate()[0]
            finally:
                if lint.poll() is None:
                    lint.kill()
                    lint.wait()
            if lint.returncode != 0:
                print(found.replace(str(path), "template.json"), end="", file=sys.stderr)
                raise TemplateRejected(
                    "cfn-lint found problems in the generated template: nothing was deployed"
                )
        step("Template generated (python generate.py) and linted (cfn-lint): OK")
        self.deploy_template(body)

    def deploy_template(self, body: bytes) -> None:
        """The checked template to the connected account (self.aws): change set, then the
        stack policy, the outputs and the smoke test (none after a dry run)."""
        options = self.options
        template = json.loads(body)
        self.body = body
        self.deployer = Deployer(
            self.aws.client("cloudformation"),
            options.stack,
            say=say,
            where=options.where(),
            region=self.aws.region,
            account=self.aws.account,
            policy=KEEP_TABLES,
        )
        safeguards = StackSafeguards(self.deployer, apigateway=self.aws.client("apigateway"))
        outcome, stack = self.deployer.deploy(
            template, options.params, self.source, safeguards, self.review, options.dry_run
        )
        if outcome is not Outcome.DRY_RUN:
            self.finish(stack)

    def review(self, stack: dict | None, previous: dict[str, str] | None) -> Review:
        """Values the deploy chooses, and switches it refuses, before any change set."""
        template = json.loads(self.body)
        given = self.options.params
        switching = given.get(BILLING_MODE) not in (None, (previous or {}).get(BILLING_MODE))
        if stack is not None and previous and switching:
            table_mode = self.table_billing_mode(stack)  # asked only for a switch
            refusal = billing_mode_refusal(self.options.stack, given, previous, table_mode)
            if refusal:
                raise Refused(refusal)
        notes = self.check_reservation(template, stack, previous)
        if not needs_account_role(template, given, previous):
            return Review({}, notes)
        try:
            account = self.aws.client("apigateway").get_account()
        except (ClientError, BotoCoreError) as error:
            raise AwsCallFailed(
                f"reading API Gateway's account settings (apigateway get-account) failed: "
                f"{error}; pass --param ApiGatewayAccountRole=create, existing or none"
            ) from None
        value, line = account_role_choice(account.get("cloudwatchRoleArn"), self.aws.region)
        return Review({"ApiGatewayAccountRole": value}, [*notes, line])

    def check_reservation(
        self, template: dict, stack: dict | None, previous: dict[str, str] | None
    ) -> list[str]:
        """Refuse a ReservedConcurrency Lambda would refuse, before any change set; a line
        when it could not be checked."""
        wanted = concurrency.wanted_reservation(template, self.options.params, previous)
        if wanted <= 0:
            return []
        functions = []
        if stack is not None:
            functions = [
                r["PhysicalResourceId"]
                for r in self.deployer.resources(stack["StackId"])
                if r.get("ResourceType") == concurrency.FUNCTION_TYPE
                and r.get("PhysicalResourceId")
            ]
        refused, warning = concurrency.check(self.aws.client("lambda"), wanted, functions)
        if refused:
            raise ReservationTooLarge(refused)
        return [warning] if warning else []

    def table_billing_mode(self, stack: dict) -> str | None:
        """The counter table's capacity mode as DynamoDB reports it, or None if unknown."""
        try:
            resource = self.deployer.cfn.describe_stack_resource(
                StackName=stack["StackId"], LogicalResourceId=TABLE_ID
            )["StackResourceDetail"]
            table = self.aws.client("dynamodb").describe_table(
                TableName=resource["PhysicalResourceId"]
            )["Table"]
        except (ClientError, BotoCoreError, KeyError):
            return None
        # A table created provisioned before on-demand existed reports no summary.
        return table.get("BillingModeSummary", {}).get("BillingMode", "PROVISIONED")

    def source(self) -> dict | None:
        """The template's place in the change set: inline, or uploaded to S3. None in a dry
        run that would need the deployment bucket before it exists: a dry run creates
        nothing."""
        size = len(self.body)
        bucket = self.options.s3_bucket
        if not bucket and size <= INLINE_LIMIT:
            return {"TemplateBody": self.body.decode()}
        s3 = self.aws.client("s3")
        if not bucket:
            step(
                f"Template is {size} bytes, over the 51,200 CloudFormation takes inline: "
                "deploying it from this account's deployment bucket"
            )
            if self.options.dry_run:
                bucket = existing_managed_bucket(s3, self.aws.account, self.aws.region)
                if bucket is None:
                    return None
            else:
                bucket = ensure_managed_bucket(
                    s3, self.aws.account, self.aws.region, self.aws.partition, step
                )
        key = template_key(self.options.stack, self.body)
        upload(s3, bucket, key, self.body, self.aws.account)
        step(f"Template uploaded to s3://{bucket}/{key}")
        return {"TemplateURL": template_url(bucket, key, self.aws.region, self.aws.partition)}

    def finish(self, stack: dict) -> None:
        """After a deploy (or a no-change one): stack policy, outputs, smoke test."""
        self.deployer.set_stack_policy(stack["StackId"])
        resources = [] if stack.get("Outputs") else self.deployer.resources(stack["StackId"])
        step("Outputs:")
        lines, url = output_lines(stack, resources)
        for line in lines:
            say(line)
        outputs = {o["OutputKey"] for o in stack.get("Outputs") or []}
        ids = {r.get("LogicalResourceId") for r in resources}
        if outputs & {STATS_TOKEN_OUTPUT} or STATS_TOKEN_ID in ids:
            step(
                "The stats are private (PrivateStats): './deploy.sh --stats-token "
                f"{self.options.where()}' prints their token"
            )
        endpoint = os.environ.get("AWS_ENDPOINT_URL")
        if not self.options.smoke:
            step("Smoke test skipped (--no-smoke).")
        elif endpoint:
            step(
                f"Smoke test skipped: AWS_ENDPOINT_URL is set ({endpoint}), an emulator "
                "serves no real API."
            )
        elif not url:
            raise SmokeTestFailed("smoke test: no ApiUrl to test (pass --no-smoke to skip it)")
        else:
            given = {
                p["ParameterKey"]: p.get("ParameterValue") for p in stack.get("Parameters") or []
            }
            smoke_test(url, say, client_identity=given.get("ClientIdentity") or "none")


# --- the stats token ----------------------------------------------------------------------------

# Names, not values: templates/private_stats.py's secret and output
STATS_TOKEN_ID = "StatsTokenSecret"  # noqa: S105
STATS_TOKEN_OUTPUT = "StatsTokenSecretArn"  # noqa: S105


def print_stats_token(options: Options) -> None:
    """The stats token on stdout, alone (TOKEN=$(./deploy.sh --stats-token) works), read
    with GetSecretValue: it is never written anywhere else, nor logged."""
    aws = connect(options)
    cfn = aws.client("cloudformation")
    try:
        found = cfn.describe_stack_resources(StackName=options.stack)["StackResources"]
    except ClientError as error:
        if "does not exist" in str(error):
            raise StackMissing(
                stack=options.stack, where=f" in {aws.region}", consequence="no stats token"
            ) from None
        raise
    physical = {r.get("LogicalResourceId"): r.get("PhysicalResourceId") for r in found}
    arn = physical.get(STATS_TOKEN_ID)
    if not arn:
        raise Refused(
            f"the stats of stack {options.stack} are public (PrivateStats false, or auto "
            "without a Backend): there is no token; deploy with --param PrivateStats=true"
        )
    try:
        token = aws.client("secretsmanager").get_secret_value(SecretId=arn)["SecretString"]
    except ClientError as error:
        raise AwsCallFailed(
            f"reading the stats token (secretsmanager get-secret-value on {arn}) failed: {error}"
        ) from None
    print(token, flush=True)


# --- delete -------------------------------------------------------------------------------------


def delete(options: Options) -> None:
    aws = connect(options)
    deployer = Deployer(
        aws.client("cloudformation"),
        options.stack,
        say=say,
        where=options.where(),
        region=aws.region,
        account=aws.account,
    )
    stack = deployer.describe()
    if stack is None:
        raise StackMissing(
            stack=options.stack, where=f" in {aws.region}", consequence="nothing to delete"
        )
    resources = deployer.resources(stack["StackId"])
    fates = data_fates(deployer.deployed_template(stack["StackId"]), resources)
    if not options.yes:
        print(
            f"Delete stack {options.stack} ({stack['StackStatus']}) in {aws.region}, account "
            f"{aws.account}? {fates_summary(fates)} [y/N] ",
            end="",
            flush=True,
        )
        answer = sys.stdin.readline().strip()
        if answer.lower() not in ("y", "yes"):
            raise Refused(f"cancelled: stack {options.stack} was not deleted")
    deployer.delete(stack, resources)
    extra = options.where().removeprefix(f"--stack-name {options.stack}")
    dynamodb = aws.client("dynamodb")
    for fate in fates:
        for line in fate_lines(dynamodb, fate, extra):
            say(line)


def table_protection(dynamodb: object, table: str) -> tuple[bool | None, str]:
    """The table's DeletionProtectionEnabled as DynamoDB reports it, or None and why not."""
    try:
        described = dynamodb.describe_table(TableName=table)["Table"]
    except (ClientError, BotoCoreError) as error:
        return None, str(error)
    return bool(described.get("DeletionProtectionEnabled")), ""


def fate_lines(dynamodb: object, fate: Fate, extra: str) -> list[str]:
    """What --delete says of a table or queue, by its DeletionPolicy: kept (and the commands
    that remove it for good) or deleted with the stack."""
    is_table = fate.resource_type == TABLE_TYPE
    name = fate.physical_id
    if fate.kept is None:
        look = (
            f"aws dynamodb describe-table --table-name {name}"
            if is_table
            else f"aws sqs get-queue-attributes --queue-url {name}"
        )
        return [
            f"The {fate.what} {name}: whether the delete kept it is unknown (the stack's "
            "template, which gives its DeletionPolicy, could not be read). Look with:",
            f"    {look}{extra}",
        ]
    if not fate.kept:
        if not name:
            return []
        return [
            f"The {fate.what} {name} was deleted with the stack (DeletionPolicy "
            f"{fate.policy}), and {fate.holds} with it."
        ]
    if is_table:
        return kept_table_lines(dynamodb, fate, extra)
    return [
        f"The {fate.what} {name} was kept (DeletionPolicy {fate.policy}), with {fate.holds} "
        "in it. To delete it for good:",
        f"    aws sqs delete-queue --queue-url {name}{extra}",
    ]


def kept_table_lines(dynamodb: object, fate: Fate, extra: str) -> list[str]:
    """What --delete says of a table it kept, and the commands that remove it for good."""
    table, policy = fate.physical_id, fate.policy
    if not table:
        return [
            f"The stack listed no physical id for {fate.logical_id}. If the table was ever "
            f"created, it was kept (DeletionPolicy {policy}): look for it with "
            f"'aws dynamodb list-tables{extra}'.",
        ]
    unprotect = (
        f"    aws dynamodb update-table --table-name {table} --no-deletion-protection-enabled"
        f"{extra}"
    )
    remove = f"    aws dynamodb delete-table --table-name {table}{extra}"
    protected, why = table_protection(dynamodb, table)
    lines = [f"The {fate.what} {table} was kept, with {fate.holds} in it"]
    if protected is None:
        return [
            *lines,
            f"(DeletionPolicy {policy}; whether deletion protection is on is unknown:",
            f"dynamodb describe-table failed: {why}). To delete it for good (the first command",
            "only if protection is on):",
            unprotect,
            remove,
        ]
    if protected:
        return [
            *lines,
            f"(DeletionPolicy {policy}, deletion protection on). To delete it for good:",
            unprotect,
            remove,
        ]
    return [
        *lines,
        f"(DeletionPolicy {policy}; deletion protection off). To delete it for good:",
        remove,
    ]


# --- main ---------------------------------------------------------------------------------------


def aws_key_clients(args: object) -> tuple[object, object]:
    """./deploy.sh keys: the API Gateway and CloudFormation clients of the stack's account."""
    options = Options(stack=args.stack_name, region=args.region, profile=args.profile)
    aws = connect(options)
    return aws.client("apigateway"), aws.client("cloudformation")


def main(argv: list[str] | None = None) -> int:
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["keys"]:
        from deployer import keys

        return keys.main(argv[1:], aws_key_clients, local=False)
    try:
        options = parse(argv, sys.stdin.isatty())
        if options.help:
            print(USAGE)
            return 0
        if options.emulator:
            from deployer.rehearsal import rehearse  # starts local/'s emulator: only when asked

            rehearse(options, Deploy, say)
        elif options.delete:
            delete(options)
        elif options.stats_token:
            print_stats_token(options)
        else:
            Deploy(options).run()
    except DeployError as error:
        if not isinstance(error, AlreadyExplained):
            print(f"error: {error}", file=sys.stderr, flush=True)
        return error.code
    except (ClientError, BotoCoreError) as error:
        # Each step names what failed in its own words; an AWS call none explains still
        # ends as one line (AWS's message names the operation and, if refused, the action).
        print(f"error: AWS call failed: {error}", file=sys.stderr, flush=True)
        return 1
    except ResponseParserError as error:
        # An endpoint that answered with something else than AWS's answer (an emulator's
        # HTML error page): its first line, which names the status.
        said = str(error).splitlines()[0] if str(error) else "an unreadable answer"
        print(f"error: the AWS endpoint's answer could not be read: {said}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(file=sys.stderr)
        return 130
    return 0
