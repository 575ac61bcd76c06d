"""The stack's safeguards as one plan the change-set engine (deployer.Deployer) runs.

The engine knows change sets, events and stack policies; what this app's stack needs around
them is decided here, as a Plan made from the stack (its previous values, its deployed
template), the new template and the values given:

- the values the change set gets: the tables' deletion protection off while a rollback
  might have to delete a new table (a create; an update that adds one), kept on for a stack
  from before the parameter;
- the stack policy: no update replaces or deletes a kept table; for one update that takes a
  table out by its own condition (Analytics off), a window that lets it leave, the full
  policy restored after it whatever the outcome;
- after the change set: the tables whose protection a parameter-only update turns on, and
  the stages that a new deployment must serve.

Only the change set shows which tables an update adds or removes and which routes it
replaces, so the plan made before it is revised once from its changes (for_changes). A table
added while protection would be on needs other values, and values are the change set's
parameters: that change set is deleted unexecuted and made again ("-adds-table").
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

from botocore.exceptions import BotoCoreError, ClientError

from deployer.deployer import Deployer, StackPolicy, Update, parameter_values
from deployer.errors import PROG, DeployError, ProtectionNotOn, StageNotRedeployed
from deployer.parameters import (
    SERIES_TABLE_ID,
    TABLE_ID,
    TABLE_PROTECTION,
    protected_tables,
    protection_on_create,
    protection_on_update,
    protection_value,
    tables_added,
    tables_leaving,
)
from deployer.results import Outcome
from deployer.template_reading import resolve_ref

# --- the stack policy ------------------------------------------------------------------------

# The tables whose data no stack update may lose: the counts, and their history by hour and
# day (the stream holds only 24 hours, so the series cannot be rebuilt).
KEPT_TABLES = (TABLE_ID, SERIES_TABLE_ID)
GUARDS = f"keeps updates from replacing or deleting {' or '.join(KEPT_TABLES)}"


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
KEEP_TABLES = StackPolicy(
    STACK_POLICY,
    said=f"Stack policy set: no stack update may replace or delete {' or '.join(KEPT_TABLES)}.",
    guards=GUARDS,
)


def leaving_window(leaving: list[str]) -> StackPolicy:
    """The stack policy for the one update that takes the `leaving` tables out of the stack."""
    names = ", ".join(leaving)
    return StackPolicy(
        stack_policy(leaving),
        said=f"Stack policy set for this update: {names} may leave it.",
        guards=GUARDS,
        notes=(
            f"    {names} leaves the stack (its condition is off) and keeps its data "
            "(DeletionPolicy); the stack policy lets this update remove it, then denies it "
            "again",
        ),
    )


# --- the stages ------------------------------------------------------------------------------

# API Gateway routes what a stage's deployment snapshotted. An update that removes or replaces
# one of these leaves the old one in CloudFormation's deployment (see routes_replaced).
ROUTE_TYPES = ("AWS::ApiGateway::Resource", "AWS::ApiGateway::Method")
STAGE_TYPE = "AWS::ApiGateway::Stage"
REST_API_TYPE = "AWS::ApiGateway::RestApi"


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


@dataclass(frozen=True)
class Redeploy:
    """A new deployment of the stack's stages after the update: why (said with it), and
    whether only a stage that serves an older deployment than the API's newest gets one."""

    why: str
    only_if_behind: bool = False


def stage_redeploy(changes: list[dict]) -> Redeploy | None:
    """Whether an update with these changes leaves its stages serving an old API."""
    replaced = routes_replaced(changes)
    if replaced:
        return Redeploy(
            f"the update removed or replaced {', '.join(replaced)}, which the stage's "
            "previous deployment still routed"
        )
    apis = [
        c["ResourceChange"]["LogicalResourceId"]
        for c in changes
        if c.get("ResourceChange", {}).get("ResourceType") == REST_API_TYPE
        and c["ResourceChange"].get("Action") == "Modify"
    ]
    if apis:
        # Its BinaryMediaTypes (Backend): a stage applies the API's settings as they were
        # when its deployment was taken.
        return Redeploy(
            f"the update changed the settings of {', '.join(apis)} (BinaryMediaTypes), "
            "which a stage serves from a new deployment only"
        )
    if any(c.get("ResourceChange", {}).get("ResourceType") == STAGE_TYPE for c in changes):
        # Updating the stage may set it back to the template's deployment, older than the
        # one a previous deploy made: the API's newest deployment is the one to serve.
        return Redeploy("the update set it back to an older deployment of the API", True)
    return None


def stage_targets(
    template: dict, physical: dict[str, str], values: dict[str, str]
) -> list[tuple[str, str]]:
    """(rest api id, stage name) of each AWS::ApiGateway::Stage of the template, as deployed."""

    def resolve(value: object, known: dict[str, str]) -> str | None:
        value = resolve_ref(value, known)
        return value if isinstance(value, str) else None

    targets = []
    for resource in template.get("Resources", {}).values():
        if resource.get("Type") == STAGE_TYPE:
            props = resource.get("Properties", {})
            api, stage = (
                resolve(props.get("RestApiId"), physical),
                resolve(props.get("StageName"), values),
            )
            if api and stage:
                targets.append((api, stage))
    return targets


# --- the plan --------------------------------------------------------------------------------

ADDS_TABLE = "-adds-table"  # the name's suffix of a change set made again to add a table


@dataclass(frozen=True)
class Plan:
    """values: what the change set is given (use_previous: a parameter not given keeps the
    stack's value, else takes its default); protect: the tables whose deletion protection a
    parameter-only update turns on once it ran; redeploy: an update, whose stages are looked
    at once its changes are known (stages: the redeploy they need, if any); notes: the lines
    that say why, printed before the change set; remake: the change set made is deleted and
    made again with these values; policy_during / policy_after: the stack policy while it
    runs (None: the standing one stays) and the one set again after it."""

    values: dict[str, str]
    protect: tuple[str, ...] = ()
    redeploy: bool = False
    notes: list[str] = field(default_factory=list)
    use_previous: bool = True
    remake: str = ""
    policy_during: StackPolicy | None = None
    policy_after: StackPolicy | None = KEEP_TABLES
    stages: Redeploy | None = None

    @property
    def protect_after(self) -> bool:
        return bool(self.protect)


def tables_to_protect(template: dict) -> tuple[str, ...]:
    return tuple(protected_tables(template)) or (TABLE_ID,)


def plan(
    kind: Outcome,
    template: dict,
    given: dict[str, str],
    previous: dict[str, str] | None,
    keep_previous: bool,
) -> Plan:
    """The plan before any change set is made."""
    if kind == Outcome.CREATE:
        values, protect_after = protection_on_create(template, given, keep_previous)
        notes = []
        if protect_after:
            notes.append(
                f"    {TABLE_PROTECTION} = false while the stack is created (the rollback of "
                "a failed create must be able to delete its new table), then true"
            )
        protect = tables_to_protect(template) if protect_after else ()
        return Plan(values, protect, notes=notes, use_previous=keep_previous)
    if previous is None:
        return Plan(given, redeploy=True, use_previous=keep_previous)
    kept = protection_on_update(template, given, previous, keep_previous)
    notes = []
    if kept != given:
        notes.append(
            f"    {TABLE_PROTECTION} = true: the stack predates the parameter and its "
            "table is protected; it stays so"
        )
    return Plan(kept, redeploy=True, notes=notes, use_previous=keep_previous)


def replan_for_changes(
    current: Plan,
    kind: Outcome,
    changes: list[dict],
    template: dict,
    previous: dict[str, str] | None,
    keep_previous: bool,
) -> Plan | None:
    """A new plan when the change set shows the current one unsafe, else None: an update that
    adds a table while protection would be on (its rollback would have to delete the new,
    protected table) runs with protection off, then turns it on."""
    added = tables_added(changes)
    protected = protection_value(template, current.values, previous or {}, keep_previous)
    if kind != Outcome.UPDATE or not added or protected != "true":
        return None
    return replace(
        current,
        values={**current.values, TABLE_PROTECTION: "false"},
        protect=tables_to_protect(template),
        notes=[
            f"    {TABLE_PROTECTION} = false while the update adds {', '.join(added)} (the "
            "rollback of a failed update must be able to delete its new table), then true"
        ],
    )


def for_changes(
    current: Plan,
    kind: Outcome,
    template: dict,
    changes: list[dict],
    previous: dict[str, str] | None,
    deployed: dict | None,
) -> Plan:
    """The plan once the change set's changes are known: made again with other values (an
    update that adds a table while protected), or run with the window for the tables it
    takes out of the stack and the stage redeploy its changes need."""
    replanned = replan_for_changes(current, kind, changes, template, previous, current.use_previous)
    if replanned is not None:
        return replace(replanned, remake=ADDS_TABLE)
    leaving = tables_leaving(changes, template, deployed)
    return replace(
        current,
        remake="",
        policy_during=leaving_window(leaving) if leaving else None,
        stages=stage_redeploy(changes) if current.redeploy else None,
    )


# --- the safeguards, run by the engine -------------------------------------------------------


class StackSafeguards:
    """This stack's safeguards for one Deployer: the plan, and what follows its change set.

    apigateway: a client to redeploy stages after an update that needs it; None (the local
    stack, which routes from the template itself) skips that step. keep_previous=False gives
    the parameters not given their defaults on an update too (the local stack: what it
    serves is what it was given)."""

    def __init__(
        self, deployer: Deployer, apigateway: object | None = None, keep_previous: bool = True
    ) -> None:
        self.deployer = deployer
        self.apigateway = apigateway
        self.keep_previous = keep_previous

    def plan(
        self, kind: Outcome, template: dict, given: dict[str, str], previous: dict[str, str] | None
    ) -> Plan:
        return plan(kind, template, given, previous, self.keep_previous)

    for_changes = staticmethod(for_changes)  # pure: the plan and the changes are all it needs

    def after(self, planned: Plan, update: Update) -> dict:
        """Protection on, then the stages redeployed, as planned; the stack after them."""
        stack = update.stack
        if planned.protect:
            stack = self.protect_tables(planned.protect, update)
        if planned.stages:
            self.redeploy(update.template, stack, planned.stages)
        return stack

    # --- deletion protection on ------------------------------------------------------------

    def protect_tables(self, protect: tuple[str, ...], update: Update) -> dict:
        """Turn on the tables' deletion protection: a parameter-only update of the stack just
        created or updated (same template, every other value kept). The stack after it."""
        deployer = self.deployer
        tables = " and ".join(protect)
        deployer.step(
            f"Turning on the deletion protection of {tables} ({TABLE_PROTECTION}=true, "
            "same template, every other value kept):"
        )
        name = f"protect-{datetime.now(UTC):%Y%m%d-%H%M%S}"
        try:
            stack = deployer.update_parameters(
                name, update.template, update.place, {TABLE_PROTECTION: "true"}, update.stack
            )
        except DeployError as error:
            done = "created" if update.kind == Outcome.CREATE else "updated"
            raise ProtectionNotOn(
                code=error.code,
                stack=deployer.stack_name,
                done=done,
                error=error,
                tables=tables,
                parameter=TABLE_PROTECTION,
                where=deployer.where,
            ) from None
        deployer.step(
            f"Deletion protection of {tables} is on: DynamoDB refuses to delete them until it "
            "is turned off. Later updates keep it."
        )
        return stack

    # --- the stages ------------------------------------------------------------------------

    def redeploy_stages(self, template: dict, stack: dict, changes: list[dict]) -> None:
        """After an update (and its cleanup): a new deployment of each stage that would
        otherwise route an old version of the API."""
        needed = stage_redeploy(changes)
        if needed:
            self.redeploy(template, stack, needed)

    def redeploy(self, template: dict, stack: dict, needed: Redeploy) -> None:
        if self.apigateway is None:
            return
        for api_id, stage in self._stages(template, stack, needed.why):
            if not needed.only_if_behind or self._behind(api_id, stage):
                self._redeploy(api_id, stage, needed.why)

    def _stages(self, template: dict, stack: dict, why: str) -> list[tuple[str, str]]:
        physical = {
            r["LogicalResourceId"]: r.get("PhysicalResourceId") or ""
            for r in self.deployer.resources(stack["StackId"])
            if r.get("LogicalResourceId")
        }
        targets = stage_targets(template, physical, parameter_values(stack) or {})
        if not targets:
            raise StageNotRedeployed(
                f"{why}, but no stage of stack {self.deployer.stack_name} was found to "
                "redeploy: run aws apigateway create-deployment --rest-api-id ID "
                "--stage-name STAGE"
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
        stack_name = self.deployer.stack_name
        try:
            created = self.apigateway.create_deployment(
                restApiId=api_id,
                stageName=stage,
                description=f"{PROG}: stack {stack_name}: {why}"[:1024],
            )
        except (ClientError, BotoCoreError) as error:
            raise StageNotRedeployed(
                f"stack {stack_name} was updated, but redeploying its stage {stage} "
                f"failed ({error}): the stage still routes the old API; run aws apigateway "
                f"create-deployment --rest-api-id {api_id} --stage-name {stage}"
            ) from None
        self.deployer.step(f"Stage {stage} redeployed (deployment {created['id']}): {why}.")
