"""CloudFormation through change sets, as the AWS CLI's own Deployer does it, with events shown.

`Deployer.deploy` is the whole create-or-update: find the stack, (review the parameters),
skip what is unchanged, create the change set, wait, print it, execute it, follow its events.
`./deploy.sh` and `./deploy.sh --local` both go through it; only what they print differs.
"""

from __future__ import annotations

import contextlib
import json
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from botocore.exceptions import BotoCoreError, ClientError

from deployer import safeguards
from deployer.endpoint import client_is_aws, gap_warning, lacks_operation
from deployer.errors import (
    PROG,
    AlreadyExplained,
    AwsCallFailed,
    ChangeSetFailed,
    DeployError,
    DryRunNeedsBucket,
    NothingToChange,
    ProtectionNotOn,
    StackBusy,
    StackFailed,
    StageNotRedeployed,
    StoppedWatching,
)
from deployer.parameters import (
    SERIES_TABLE_ID,
    TABLE_ID,
    TABLE_PROTECTION,
    change_set_parameters,
    given_lines,
    is_unchanged,
    protected_tables,
    tables_leaving,
    with_defaults,
)
from deployer.report import EventProgress, change_lines, changed_ids
from deployer.results import Outcome
from deployer.template_reading import resolve_ref

POLL_SECONDS = 3.0  # between describe calls while waiting on CloudFormation
CAPABILITIES = ["CAPABILITY_IAM"]
NO_CHANGES = ("No updates are to be performed", "didn't contain changes")
# The tables whose data no stack update may lose: the counts, and their history by hour and
# day (the stream holds only 24 hours, so the series cannot be rebuilt).
KEPT_TABLES = (TABLE_ID, SERIES_TABLE_ID)


def stack_policy(leaving: Iterable[str] = ()) -> dict:
    """No update may replace or delete a kept table; one that `leaving` names may leave the
    stack in this update (tables_leaving: its own condition turned off, its data kept)."""
    leaving = set(leaving)
    return {
        "Statement": [
            {"Effect": "Allow", "Principal": "*", "Action": "Update:*", "Resource": "*"},
            *(
                {
                    "Effect": "Deny",
                    "Principal": "*",
                    "Action": ["Update:Replace"]
                    if table in leaving
                    else ["Update:Replace", "Update:Delete"],
                    "Resource": f"LogicalResourceId/{table}",
                }
                for table in KEPT_TABLES
            ),
        ]
    }


STACK_POLICY = stack_policy()

# API Gateway routes what a stage's deployment snapshotted. An update that removes or replaces
# one of these leaves the old one in CloudFormation's deployment (see routes_replaced).
ROUTE_TYPES = ("AWS::ApiGateway::Resource", "AWS::ApiGateway::Method")
STAGE_TYPE = "AWS::ApiGateway::Stage"
REST_API_TYPE = "AWS::ApiGateway::RestApi"

Say = Callable[[str], None]


def quiet(_: str) -> None:
    """A `say` that prints nothing (the local stack prints its own banner)."""


def to_stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def call(what: str, method: Callable, **kwargs: object) -> dict:
    """An AWS call; its error as one DeployError line naming what failed."""
    try:
        return method(**kwargs)
    except (ClientError, BotoCoreError) as error:
        raise AwsCallFailed(what=what, error=error) from None


def parameter_values(stack: dict | None) -> dict[str, str] | None:
    if stack is None:
        return None
    return {p["ParameterKey"]: p.get("ParameterValue") for p in stack.get("Parameters") or []}


def routes_replaced(changes: list[dict]) -> list[str]:
    """Logical ids of the API resources and methods a change set removes or may replace.

    A stage serves the snapshot its deployment took. CloudFormation creates the replacements
    first and deletes the old ones only in its cleanup phase, after any new Deployment was
    taken, so no deployment made by the update routes the change (serverless#7542, #9686;
    REST stages have no AutoDeploy, cloudformation-coverage-roadmap#623): a changed StatsPath
    replaces its resource and methods. Replacement Conditional counts (a method on a replaced
    resource gets a new ResourceId only when the update runs).
    """
    found = []
    for change in changes:
        resource = change.get("ResourceChange") or {}
        if resource.get("ResourceType") not in ROUTE_TYPES:
            continue
        action, replacement = resource.get("Action"), resource.get("Replacement")
        if action == "Remove" or (action == "Modify" and replacement in ("True", "Conditional")):
            found.append(resource["LogicalResourceId"])
    return found


def stage_targets(
    template: dict, physical: dict[str, str], values: dict[str, str]
) -> list[tuple[str, str]]:
    """(rest api id, stage name) of each AWS::ApiGateway::Stage of the template, as deployed."""

    def resolve(value: object, known: dict[str, str]) -> str | None:
        value = resolve_ref(value, known)
        return value if isinstance(value, str) else None

    targets = []
    for resource in template.get("Resources", {}).values():
        if resource.get("Type") == "AWS::ApiGateway::Stage":
            props = resource.get("Properties", {})
            api, stage = (
                resolve(props.get("RestApiId"), physical),
                resolve(props.get("StageName"), values),
            )
            if api and stage:
                targets.append((api, stage))
    return targets


@dataclass
class Review:
    """What a deploy's review adds before the change set: values it chose, lines saying why."""

    chosen: dict[str, str]
    notes: list[str]


Reviewer = Callable[[dict | None, dict[str, str] | None], Review]


class Deployer:
    """One stack's CloudFormation calls, with what they print going to say (and warn)."""

    def __init__(
        self,
        cfn: object,
        stack_name: str,
        say: Say = quiet,
        warn: Say = to_stderr,
        where: str = "",
        region: str = "",
        account: str = "",
        poll_seconds: float = POLL_SECONDS,
        capabilities: list[str] | None = None,
        sleep: Callable[[float], None] = time.sleep,
        apigateway: object | None = None,
    ) -> None:
        """apigateway: a client to redeploy stages after an update that replaced routes; None
        (the local stack, which routes from the template itself) skips that step."""
        self.cfn = cfn
        self.apigateway = apigateway
        self.stack_name = stack_name
        self.say = say
        self.warn = warn
        self.where = where or f"--stack-name {stack_name}"
        self.region = region
        self.account = account
        self.poll_seconds = poll_seconds
        self.capabilities = capabilities or CAPABILITIES
        self.sleep = sleep

    def step(self, text: str) -> None:
        self.say(f"==> {text}")

    # --- the stack ---------------------------------------------------------------------------

    def describe(self, stack: str | None = None) -> dict | None:
        """The stack (by name or id), or None if there is none."""
        try:
            return self.cfn.describe_stacks(StackName=stack or self.stack_name)["Stacks"][0]
        except ClientError as error:
            if "does not exist" in str(error):
                return None
            raise AwsCallFailed(what="describe-stacks", error=error) from None
        except BotoCoreError as error:
            raise AwsCallFailed(what="describe-stacks", error=error) from None

    def resources(self, stack_id: str) -> list[dict]:
        found = call(
            "describe-stack-resources", self.cfn.describe_stack_resources, StackName=stack_id
        )
        return found["StackResources"]

    def deployed_template(self, stack_id: str) -> dict | None:
        with contextlib.suppress(ClientError, BotoCoreError, ValueError):
            body = self.cfn.get_template(StackName=stack_id, TemplateStage="Original")
            body = body["TemplateBody"]
            return json.loads(body) if isinstance(body, str) else body
        return None

    def explain_rollback_complete(self) -> None:
        self.warn(
            f"Stack {self.stack_name} is in ROLLBACK_COMPLETE: its creation failed and was "
            "rolled back."
        )
        self.warn("CloudFormation cannot update such a stack; delete it, then deploy again:")
        self.warn(f"    {PROG} --delete {self.where}")

    def kind(self, stack: dict | None) -> Outcome:
        """CREATE or UPDATE; a stack CloudFormation cannot update now stops the deploy."""
        status = stack["StackStatus"] if stack else ""
        if status in ("", "REVIEW_IN_PROGRESS"):
            return Outcome.CREATE
        if status == "ROLLBACK_COMPLETE":
            self.explain_rollback_complete()
            raise AlreadyExplained
        if status.endswith("_IN_PROGRESS"):
            raise StackBusy(stack=self.stack_name, status=status)
        return Outcome.UPDATE

    # --- change sets -------------------------------------------------------------------------

    def create_change_set(
        self, name: str, kind: Outcome, source: dict, parameters: list[dict]
    ) -> str | None:
        """The new change set's stack id; None when the endpoint refuses an empty update."""
        try:
            created = self.cfn.create_change_set(
                StackName=self.stack_name,
                ChangeSetName=name,
                ChangeSetType=kind,
                Parameters=parameters,
                Capabilities=self.capabilities,
                Description=PROG,
                **source,
            )
        except (ClientError, BotoCoreError) as error:
            # Some endpoints (moto) refuse an empty update outright instead of failing it.
            if "No updates are to be performed" in str(error):
                return None
            raise AwsCallFailed(what="create-change-set", error=error) from None
        return created["StackId"]

    def wait_for_change_set(self, stack_id: str, name: str) -> dict:
        """The change set once made (or failed), with every page of its changes."""
        while True:
            described = call(
                "describe-change-set",
                self.cfn.describe_change_set,
                StackName=stack_id,
                ChangeSetName=name,
            )
            if described["Status"] not in ("CREATE_PENDING", "CREATE_IN_PROGRESS"):
                break
            self.sleep(self.poll_seconds)
        changes = list(described.get("Changes") or [])
        while described.get("NextToken"):
            described = call(
                "describe-change-set",
                self.cfn.describe_change_set,
                StackName=stack_id,
                ChangeSetName=name,
                NextToken=described["NextToken"],
            )
            changes += described.get("Changes") or []
        return {**described, "Changes": changes}

    def discard(self, stack_id: str, name: str, kind: Outcome) -> None:
        """Delete the change set, and the empty REVIEW_IN_PROGRESS stack a CREATE one made."""
        with contextlib.suppress(ClientError, BotoCoreError):
            self.cfn.delete_change_set(StackName=stack_id, ChangeSetName=name)
        if kind == Outcome.CREATE:
            with contextlib.suppress(ClientError, BotoCoreError):
                self.cfn.delete_stack(StackName=stack_id)

    # --- following an operation --------------------------------------------------------------

    def watch(self, stack_id: str, progress: EventProgress) -> dict:
        """Print the stack's events as they come until it leaves *_IN_PROGRESS; the stack.

        Ctrl-C stops watching, not CloudFormation: exit 130 saying so.
        """
        polls = 0
        try:
            while True:
                events = call(
                    "describe-stack-events",
                    self.cfn.describe_stack_events,
                    StackName=stack_id,
                )["StackEvents"]
                for line in progress.feed(events):
                    self.say(line)
                polls += 1
                settled = progress.stack_status and not progress.stack_status.endswith(
                    "_IN_PROGRESS"
                )
                if settled or polls % 10 == 0:
                    stack = self.describe(stack_id)
                    if stack and not stack["StackStatus"].endswith("_IN_PROGRESS"):
                        return stack
                self.sleep(self.poll_seconds)
        except KeyboardInterrupt:
            self.warn("")
            raise StoppedWatching(stack=self.stack_name) from None

    def report_failure(self, stack: dict, progress: EventProgress) -> None:
        self.warn(f"Stack {self.stack_name}: {stack['StackStatus']}")
        failures = progress.failure_lines()
        if failures:
            self.warn("    Failed resources:")
            for line in failures:
                self.warn(line)
        if stack.get("StackStatusReason"):
            self.warn(f"    Stack status reason: {stack['StackStatusReason']}")

    # --- the whole deploy --------------------------------------------------------------------

    def deploy(
        self,
        template: dict,
        given: dict[str, str],
        source: Callable[[], dict | None],
        review: Reviewer | None = None,
        dry_run: bool = False,
        keep_previous: bool = True,
    ) -> tuple[Outcome, dict | None]:
        """Create or update the stack to template with the given values.

        source() gives the template's place in the change set (TemplateBody or TemplateURL),
        asked only when a change set is needed; None in a dry run (no bucket to read it
        from yet). review(stack, previous) may add values and
        lines before anything is decided. keep_previous=False gives the parameters not given
        their defaults on an update too (the local stack: what it serves is what it was given).
        A create, and an update that adds a table while protection would be on, run with the
        tables' deletion protection off, then turn it on with a parameter-only update
        (safeguards.plan, replan_for_changes); an update that removed or replaced API routes
        is followed by a new deployment of the stage (routes_replaced).
        Returns the Outcome (CREATE, UPDATE, UNCHANGED or DRY_RUN) and the stack as it is now
        (None after a dry run of a create).
        """
        stack = self.describe()
        kind = self.kind(stack)
        previous = parameter_values(stack) if kind == Outcome.UPDATE else None
        given = self._announce(kind, stack, given, previous, review)
        planned = safeguards.plan(kind, template, given, previous, keep_previous)
        for line in planned.notes:
            self.say(line)
        given = planned.values

        # The same template with the same values: nothing to do, and no change set to make.
        wanted = given if keep_previous else with_defaults(template, given)
        deployed = self.deployed_template(stack["StackId"]) if kind == Outcome.UPDATE else None
        if kind == Outcome.UPDATE and is_unchanged(deployed, template, previous, wanted):
            return self._no_changes(stack, dry_run)

        name = f"deploy-{datetime.now(UTC):%Y%m%d-%H%M%S}"
        place = source()
        if place is None:  # a dry run with no place for the template that creates nothing
            return self._dry_run_from_template(kind, template, stack)
        made = self._make_change_set(name, kind, place, template, given, previous, keep_previous)
        if made is None:
            return self._no_changes(stack, dry_run)
        stack_id, change_set = made
        replanned = safeguards.replan_for_changes(
            planned, kind, change_set["Changes"], template, previous, keep_previous
        )
        if replanned is not None:
            self.discard(stack_id, name, kind)
            for line in replanned.notes:
                self.say(line)
            planned, given = replanned, replanned.values
            name = f"{name}-adds-table"
            made = self._make_change_set(
                name, kind, place, template, given, previous, keep_previous
            )
            if made is None:
                raise NothingToChange(detail=" in the update")
            stack_id, change_set = made
        self._print_change_set(name, change_set)
        if dry_run:
            self.discard(stack_id, name, kind)
            if kind == Outcome.CREATE:
                self.step(
                    "Dry run: change set and the empty REVIEW_IN_PROGRESS stack deleted; "
                    "nothing deployed."
                )
            else:
                self.step(f"Dry run: change set deleted; stack {self.stack_name} unchanged.")
            return Outcome.DRY_RUN, stack
        leaving = tables_leaving(change_set["Changes"], template, deployed)
        if leaving:
            self.say(
                f"    {', '.join(leaving)} leaves the stack (its condition is off) and keeps its "
                "data (DeletionPolicy); the stack policy lets this update remove it, then "
                "denies it again"
            )
            self.set_stack_policy(stack_id, leaving)
        try:
            stack = self._execute(stack_id, name, change_set)
        finally:
            if leaving:  # the full policy again, whatever the outcome
                self.set_stack_policy(stack_id)
        if planned.protect_after:
            stack = self.protect_tables(template, stack, kind, place)
        if planned.redeploy:
            self.redeploy_stages(template, stack, change_set["Changes"])
        return kind, stack

    def _make_change_set(
        self,
        name: str,
        kind: Outcome,
        place: dict,
        template: dict,
        given: dict[str, str],
        previous: dict[str, str] | None,
        keep_previous: bool,
    ) -> tuple[str, dict] | None:
        """The stack id and the change set, made; None when there is nothing to change."""
        parameters = change_set_parameters(template, given, previous if keep_previous else None)
        stack_id = self.create_change_set(name, kind, place, parameters)
        if stack_id is None:
            return None
        change_set = self.wait_for_change_set(stack_id, name)
        if change_set["Status"] == "FAILED":
            reason = change_set.get("StatusReason") or ""
            self.discard(stack_id, name, kind)
            if any(text in reason for text in NO_CHANGES):
                return None
            raise ChangeSetFailed(reason=reason)
        return stack_id, change_set

    def _announce(
        self,
        kind: Outcome,
        stack: dict | None,
        given: dict[str, str],
        previous: dict[str, str] | None,
        review: Reviewer | None,
    ) -> dict[str, str]:
        """Say what happens to which stack with which values; the values, with those chosen."""
        if kind == Outcome.CREATE:
            self.step(f"Stack {self.stack_name} does not exist{self._in}: creating it")
        else:
            self.step(f"Stack {self.stack_name}{self._in} is {stack['StackStatus']}: updating it")
        reviewed = review(stack, previous) if review else Review({}, [])
        if given:
            self.say("    Parameters:")
            for line in given_lines(given, previous):
                self.say(line)
        elif kind == Outcome.CREATE:
            self.say("    Parameters: template defaults")
        else:
            self.say("    Parameters: current values kept")
        for line in reviewed.notes:
            self.say(line)
        return {**given, **reviewed.chosen}

    def _print_change_set(self, name: str, change_set: dict) -> None:
        lines = change_lines(change_set["Changes"])
        if not lines:
            self.step(f"Change set {name}: no resource changes listed (parameters or outputs only)")
            return
        self.step(f"Change set {name}:")
        for line in lines:
            self.say(line)

    def _execute(self, stack_id: str, name: str, change_set: dict) -> dict:
        """Execute the change set and follow it to the end; the stack, or a DeployError."""
        self.step("Executing the change set; stack events:")
        call(
            "execute-change-set",
            self.cfn.execute_change_set,
            StackName=stack_id,
            ChangeSetName=name,
        )
        progress = EventProgress(
            stack_id, change_set["CreationTime"], changed_ids(change_set["Changes"])
        )
        stack = self.watch(stack_id, progress)
        status = stack["StackStatus"]
        if status not in ("CREATE_COMPLETE", "UPDATE_COMPLETE"):
            self.report_failure(stack, progress)
            if status == "ROLLBACK_COMPLETE":
                self.explain_rollback_complete()
            elif status == "UPDATE_ROLLBACK_COMPLETE":
                self.warn("The update was rolled back: the stack runs its previous version.")
            raise StackFailed(doing="deploying", stack=self.stack_name)
        self.step(f"Stack {self.stack_name} is {status} ({progress.summary()})")
        return stack

    @property
    def _in(self) -> str:
        where = f" in {self.region}" if self.region else ""
        return f"{where} (account {self.account})" if self.account else where

    def _dry_run_from_template(
        self, kind: Outcome, template: dict, stack: dict | None
    ) -> tuple[Outcome, dict | None]:
        """A dry run whose template is too big to pass inline and has no bucket to be read
        from yet: a create lists the template's resources, all added; an update cannot be
        shown without a change set."""
        if kind != Outcome.CREATE:
            raise DryRunNeedsBucket(stack=self.stack_name)
        changes = [
            {
                "ResourceChange": {
                    "Action": "Add",
                    "LogicalResourceId": logical_id,
                    "ResourceType": resource.get("Type", ""),
                }
            }
            for logical_id, resource in template.get("Resources", {}).items()
        ]
        self.step(
            "No change set: the deployment bucket does not exist yet and a dry run creates "
            "nothing. The template's resources, all to be added:"
        )
        for line in change_lines(changes):
            self.say(line)
        self.step("Dry run: nothing created, nothing deployed.")
        return Outcome.DRY_RUN, stack

    def _no_changes(self, stack: dict, dry_run: bool) -> tuple[Outcome, dict]:
        if dry_run:
            self.step(
                f"No changes: stack {self.stack_name} already matches the template and parameters."
            )
            return Outcome.DRY_RUN, stack
        self.step(
            f"No changes: stack {self.stack_name} ({stack['StackStatus']}) already matches the "
            "template and parameters."
        )
        return Outcome.UNCHANGED, stack

    # --- after a create or an update ----------------------------------------------------------

    def protect_tables(self, template: dict, stack: dict, kind: Outcome, place: dict) -> dict:
        """Turn on the tables' deletion protection: a parameter-only update of the stack just
        created or updated (same template, every other value kept). The stack after it.

        place is where the deploy's change set read the template (TemplateBody or
        TemplateURL): sent again, not UsePreviousTemplate, which some emulators refuse
        (LocalStack) and which AWS treats the same."""
        tables = " and ".join(protected_tables(template)) or TABLE_ID
        self.step(
            f"Turning on the deletion protection of {tables} ({TABLE_PROTECTION}=true, "
            "same template, every other value kept):"
        )
        name = f"protect-{datetime.now(UTC):%Y%m%d-%H%M%S}"
        given, previous = {TABLE_PROTECTION: "true"}, parameter_values(stack)
        try:
            made = self._make_change_set(
                name, Outcome.UPDATE, place, template, given, previous, True
            )
            if made is None:
                raise NothingToChange(detail="")
            stack_id, change_set = made
            self._print_change_set(name, change_set)
            stack = self._execute(stack_id, name, change_set)
        except DeployError as error:
            done = "created" if kind == Outcome.CREATE else "updated"
            raise ProtectionNotOn(
                code=error.code,
                stack=self.stack_name,
                done=done,
                error=error,
                tables=tables,
                parameter=TABLE_PROTECTION,
                where=self.where,
            ) from None
        self.step(
            f"Deletion protection of {tables} is on: DynamoDB refuses to delete them until it "
            "is turned off. Later updates keep it."
        )
        return stack

    def redeploy_stages(self, template: dict, stack: dict, changes: list[dict]) -> None:
        """After an update (and its cleanup): a new deployment of each stage that would
        otherwise route an old version of the API."""
        if self.apigateway is None:
            return
        replaced = routes_replaced(changes)
        if replaced:
            why = (
                f"the update removed or replaced {', '.join(replaced)}, which the stage's "
                "previous deployment still routed"
            )
            for api_id, stage in self._stages(template, stack, why):
                self._redeploy(api_id, stage, why)
        elif apis := [
            c["ResourceChange"]["LogicalResourceId"]
            for c in changes
            if c.get("ResourceChange", {}).get("ResourceType") == REST_API_TYPE
            and c["ResourceChange"].get("Action") == "Modify"
        ]:
            # Its BinaryMediaTypes (Backend): a stage applies the API's settings as they were
            # when its deployment was taken.
            why = (
                f"the update changed the settings of {', '.join(apis)} (BinaryMediaTypes), "
                "which a stage serves from a new deployment only"
            )
            for api_id, stage in self._stages(template, stack, why):
                self._redeploy(api_id, stage, why)
        elif any(c.get("ResourceChange", {}).get("ResourceType") == STAGE_TYPE for c in changes):
            # Updating the stage may set it back to the template's deployment, older than the
            # one a previous deploy made: the API's newest deployment is the one to serve.
            why = "the update set it back to an older deployment of the API"
            for api_id, stage in self._stages(template, stack, why):
                if self._behind(api_id, stage):
                    self._redeploy(api_id, stage, why)

    def _stages(self, template: dict, stack: dict, why: str) -> list[tuple[str, str]]:
        physical = {
            r["LogicalResourceId"]: r.get("PhysicalResourceId") or ""
            for r in self.resources(stack["StackId"])
            if r.get("LogicalResourceId")
        }
        targets = stage_targets(template, physical, parameter_values(stack) or {})
        if not targets:
            raise StageNotRedeployed(
                f"{why}, but no stage of stack {self.stack_name} was found to redeploy: run "
                "aws apigateway create-deployment --rest-api-id ID --stage-name STAGE"
            )
        return targets

    def _behind(self, api_id: str, stage: str) -> bool:
        """Whether the stage serves a deployment older than the API's newest."""
        try:
            current = self.apigateway.get_stage(restApiId=api_id, stageName=stage)
            pages = self.apigateway.get_paginator("get_deployments").paginate(restApiId=api_id)
            deployments = [d for page in pages for d in page.get("items", [])]
        except (ClientError, BotoCoreError):
            return False  # no such stage (yet), or not allowed to look: nothing to repair
        newest = max(deployments, key=lambda d: d["createdDate"], default=None)
        return newest is not None and newest["id"] != current.get("deploymentId")

    def _redeploy(self, api_id: str, stage: str, why: str) -> None:
        try:
            created = self.apigateway.create_deployment(
                restApiId=api_id,
                stageName=stage,
                description=f"{PROG}: stack {self.stack_name}: {why}"[:1024],
            )
        except (ClientError, BotoCoreError) as error:
            raise StageNotRedeployed(
                f"stack {self.stack_name} was updated, but redeploying its stage {stage} "
                f"failed ({error}): the stage still routes the old API; run aws apigateway "
                f"create-deployment --rest-api-id {api_id} --stage-name {stage}"
            ) from None
        self.step(f"Stage {stage} redeployed (deployment {created['id']}): {why}.")

    # --- after a deploy, and delete ----------------------------------------------------------

    def set_stack_policy(self, stack_id: str, leaving: Iterable[str] = ()) -> None:
        """The stack policy (stack_policy(leaving)); an emulator that lacks SetStackPolicy
        (LocalStack) is one warning line and no policy, AWS's refusal an error."""
        try:
            self.cfn.set_stack_policy(
                StackName=stack_id, StackPolicyBody=json.dumps(stack_policy(leaving))
            )
        except (ClientError, BotoCoreError) as error:
            if not client_is_aws(self.cfn) and lacks_operation(error):
                self.warn(
                    gap_warning(
                        self.cfn.meta.endpoint_url,
                        "SetStackPolicy",
                        error,
                        "no stack policy set (on AWS it keeps updates from replacing or "
                        f"deleting {' or '.join(KEPT_TABLES)})",
                    )
                )
                return
            raise AwsCallFailed(what="set-stack-policy", error=error) from None
        if leaving:
            self.step(f"Stack policy set for this update: {', '.join(leaving)} may leave it.")
            return
        self.step(
            f"Stack policy set: no stack update may replace or delete {' or '.join(KEPT_TABLES)}."
        )

    def delete(self, stack: dict, resources: list[dict]) -> dict:
        """Delete the stack, following its events; the stack's last state."""
        stack_id = stack["StackId"]
        events = call("describe-stack-events", self.cfn.describe_stack_events, StackName=stack_id)[
            "StackEvents"
        ]
        since = events[0]["Timestamp"] if events else datetime(1970, 1, 1, tzinfo=UTC)
        ids = [r["LogicalResourceId"] for r in resources if r.get("LogicalResourceId")]
        self.step(f"Deleting stack {self.stack_name} ({self.region}); events:")
        call("delete-stack", self.cfn.delete_stack, StackName=stack_id)
        progress = EventProgress(stack_id, since, ids)
        final = self.watch(stack_id, progress)
        if final["StackStatus"] != "DELETE_COMPLETE":
            self.report_failure(final, progress)
            raise StackFailed(doing="deleting", stack=self.stack_name)
        self.step(f"Stack {self.stack_name} deleted ({progress.summary()}).")
        return final
