"""CloudFormation through change sets, as the AWS CLI's own Deployer does it, with events shown.

A generic engine: it knows stacks, change sets, events and stack policies, nothing of the
app. `Deployer.deploy` is the whole create-or-update: find the stack, (review the
parameters), ask the stack's safeguards for a plan, skip what is unchanged, create the
change set, wait, let the safeguards revise the plan from its changes (once: a change set
made with the wrong values is deleted and made again), print it, execute it under the plan's
stack policy (the policy after restored whatever the outcome), follow its events, then hand
the update to the safeguards' after-step. deployer/safeguards.py is this stack's; every
deploy of it goes through this engine, and its callers differ only in what they print.
"""

from __future__ import annotations

import contextlib
import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

from botocore.exceptions import BotoCoreError, ClientError

from deployer.endpoint import client_is_aws, gap_warning, lacks_operation
from deployer.errors import (
    PROG,
    AlreadyExplained,
    AwsCallFailed,
    ChangeSetFailed,
    DryRunNeedsBucket,
    NothingToChange,
    StackBusy,
    StackFailed,
    StoppedWatching,
)
from deployer.parameters import change_set_parameters, given_lines, is_unchanged, with_defaults
from deployer.report import EventProgress, change_lines, changed_ids
from deployer.results import Outcome

POLL_SECONDS = 3.0  # between describe calls while waiting on CloudFormation
CAPABILITIES = ["CAPABILITY_IAM"]
NO_CHANGES = ("No updates are to be performed", "didn't contain changes")

Say = Callable[[str], None]


def quiet(_: str) -> None:
    """A `say` that prints nothing (the caller prints its own banner)."""


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


@dataclass(frozen=True)
class StackPolicy:
    """A stack policy: body, the lines said before it is set (why), the line once it is set,
    and what it guards (named in the one warning of an emulator that lacks SetStackPolicy)."""

    body: dict
    said: str
    guards: str
    notes: tuple[str, ...] = ()


class Plan(Protocol):
    """What the engine reads of a safeguards' plan (deployer/safeguards.py's Plan is one).

    values: the change set's parameter values; use_previous: a parameter not given keeps its
    value (UsePreviousValue), else takes its default; notes: printed before the change set;
    remake: set by a revision that needs the change set made again with its values (the
    suffix of the new change set's name); policy_during / policy_after: the stack policy while
    the change set runs (None: none set for it) and the one set again after it (None: the
    engine's own)."""

    values: dict[str, str]
    use_previous: bool
    notes: list[str]
    remake: str
    policy_during: StackPolicy | None
    policy_after: StackPolicy | None


@dataclass(frozen=True)
class Update:
    """A change set the engine executed, as the safeguards' after-step gets it."""

    kind: Outcome
    template: dict
    place: dict
    stack: dict
    changes: list[dict]


class Safeguards(Protocol):
    """What a stack needs around its change set, as a plan the engine runs."""

    def plan(
        self, kind: Outcome, template: dict, given: dict[str, str], previous: dict[str, str] | None
    ) -> Plan:
        """The plan before any change set: its values and notes."""

    def for_changes(
        self,
        plan: Plan,
        kind: Outcome,
        template: dict,
        changes: list[dict],
        previous: dict[str, str] | None,
        deployed: dict | None,
    ) -> Plan:
        """The plan once the change set's changes are known (deployed: the stack's template)."""

    def after(self, plan: Plan, update: Update) -> dict:
        """What follows a successful change set; the stack as it is then."""


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
        policy: StackPolicy | None = None,
    ) -> None:
        """policy: the stack policy set_stack_policy sets when given none."""
        self.cfn = cfn
        self.policy = policy
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
        safeguards: Safeguards,
        review: Reviewer | None = None,
        dry_run: bool = False,
    ) -> tuple[Outcome, dict | None]:
        """Create or update the stack to template with the given values, as safeguards plan.

        source() gives the template's place in the change set (TemplateBody or TemplateURL),
        asked only when a change set is needed; None in a dry run (no bucket to read it
        from yet). review(stack, previous) may add values and lines before anything is
        decided. Then safeguards.plan gives the values; safeguards.for_changes revises the
        plan from the change set (a plan with `remake` has the change set deleted and made
        again with its values, once); the plan's policy_during is set while the change set
        runs and its policy_after set again in a `finally`; safeguards.after follows.
        Returns the Outcome (CREATE, UPDATE, UNCHANGED or DRY_RUN) and the stack as it is now
        (None after a dry run of a create).
        """
        stack = self.describe()
        kind = self.kind(stack)
        previous = parameter_values(stack) if kind == Outcome.UPDATE else None
        given = self._announce(kind, stack, given, previous, review)
        plan = safeguards.plan(kind, template, given, previous)
        for line in plan.notes:
            self.say(line)

        # The same template with the same values: nothing to do, and no change set to make.
        wanted = plan.values if plan.use_previous else with_defaults(template, plan.values)
        deployed = self.deployed_template(stack["StackId"]) if kind == Outcome.UPDATE else None
        if kind == Outcome.UPDATE and is_unchanged(deployed, template, previous, wanted):
            return self._no_changes(stack, dry_run)

        name = f"deploy-{datetime.now(UTC):%Y%m%d-%H%M%S}"
        place = source()
        if place is None:  # a dry run with no place for the template that creates nothing
            return self._dry_run_from_template(kind, template, stack)
        made = self._make_change_set(name, kind, place, template, plan, previous)
        if made is None:
            return self._no_changes(stack, dry_run)
        stack_id, change_set = made
        revised = safeguards.for_changes(
            plan, kind, template, change_set["Changes"], previous, deployed
        )
        if revised.remake:
            self.discard(stack_id, name, kind)
            for line in revised.notes:
                self.say(line)
            name = f"{name}{revised.remake}"
            made = self._make_change_set(name, kind, place, template, revised, previous)
            if made is None:
                raise NothingToChange(detail=" in the update")
            stack_id, change_set = made
            revised = safeguards.for_changes(
                revised, kind, template, change_set["Changes"], previous, deployed
            )
        plan = revised
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
        if plan.policy_during:
            self.set_stack_policy(stack_id, plan.policy_during)
        try:
            stack = self._execute(stack_id, name, change_set)
        finally:
            if plan.policy_during:  # the policy after, whatever the outcome
                self.set_stack_policy(stack_id, plan.policy_after)
        update = Update(kind, template, place, stack, change_set["Changes"])
        return kind, safeguards.after(plan, update)

    def update_parameters(
        self, name: str, template: dict, place: dict, values: dict[str, str], stack: dict
    ) -> dict:
        """A parameter-only update of the stack just created or updated: the same template
        (sent again from place, not UsePreviousTemplate, which some emulators refuse and AWS
        treats the same), these values, every other kept. The stack after it."""
        previous = parameter_values(stack)
        parameters = change_set_parameters(template, values, previous)
        made = self._change_set_made(name, Outcome.UPDATE, place, parameters)
        if made is None:
            raise NothingToChange(detail="")
        stack_id, change_set = made
        self._print_change_set(name, change_set)
        return self._execute(stack_id, name, change_set)

    def _make_change_set(
        self,
        name: str,
        kind: Outcome,
        place: dict,
        template: dict,
        plan: Plan,
        previous: dict[str, str] | None,
    ) -> tuple[str, dict] | None:
        """The stack id and the change set with the plan's values; None when there is
        nothing to change."""
        kept = previous if plan.use_previous else None
        parameters = change_set_parameters(template, plan.values, kept)
        return self._change_set_made(name, kind, place, parameters)

    def _change_set_made(
        self, name: str, kind: Outcome, place: dict, parameters: list[dict]
    ) -> tuple[str, dict] | None:
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

    # --- after a deploy, and delete ----------------------------------------------------------

    def set_stack_policy(self, stack_id: str, policy: StackPolicy | None = None) -> None:
        """Set the stack policy (the engine's own when none is given); an emulator that lacks
        SetStackPolicy (LocalStack) is one warning line and no policy, AWS's refusal an
        error."""
        policy = policy or self.policy
        if policy is None:
            return
        for line in policy.notes:
            self.say(line)
        try:
            self.cfn.set_stack_policy(StackName=stack_id, StackPolicyBody=json.dumps(policy.body))
        except (ClientError, BotoCoreError) as error:
            if not client_is_aws(self.cfn) and lacks_operation(error):
                self.warn(
                    gap_warning(
                        self.cfn.meta.endpoint_url,
                        "SetStackPolicy",
                        error,
                        f"no stack policy set (on AWS it {policy.guards})",
                    )
                )
                return
            raise AwsCallFailed(what="set-stack-policy", error=error) from None
        self.step(policy.said)

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
