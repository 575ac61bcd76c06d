"""The stack's safeguards as a plan: the stack, the new template and the values given in,
the plan the change-set engine runs out (deployer/safeguards.py). Pure: no AWS, no engine.

How the engine runs a plan against a stack is tests/unit/test_deploy_flow.py (in-process
moto) and tests/integration/test_deploy.py (deploy.sh against a server)."""

import json
import re
from pathlib import Path

import pytest

from deployer import safeguards
from deployer.parameters import is_unchanged
from deployer.results import Outcome
from generate import build_template, render

TEMPLATE = json.loads(render(build_template()))
TABLES = ("CounterTable", "SeriesTable")
PROTECTION = "TableDeletionProtection"
# A stack deploy.sh made with the defaults: protection turned on after its create.
DEPLOYED_VALUES = {PROTECTION: "true", "Analytics": "on", "StageName": "prod"}


def change(logical: str, kind: str, action: str, replacement: str | None = None) -> dict:
    resource = {"LogicalResourceId": logical, "ResourceType": kind, "Action": action}
    if replacement:
        resource["Replacement"] = replacement
    return {"Type": "Resource", "ResourceChange": resource}


def denied(policy: dict) -> dict[str, list[str]]:
    return {
        s["Resource"]: sorted(s["Action"]) for s in policy["Statement"] if s["Effect"] == "Deny"
    }


def update_plan(given: dict[str, str], changes: list[dict], deployed: dict = TEMPLATE):
    """The plan of an update of a stack deploy.sh made, once its change set is known."""
    before = safeguards.plan(Outcome.UPDATE, TEMPLATE, given, DEPLOYED_VALUES, True)
    return safeguards.for_changes(
        before, Outcome.UPDATE, TEMPLATE, changes, DEPLOYED_VALUES, deployed
    )


def test_a_first_create_runs_unprotected_then_protects_both_tables_and_redeploys_nothing():
    adds = [change(table, "AWS::DynamoDB::Table", "Add") for table in TABLES]
    adds.append(change("ApiStage", "AWS::ApiGateway::Stage", "Add"))

    before = safeguards.plan(Outcome.CREATE, TEMPLATE, {}, None, keep_previous=True)
    planned = safeguards.for_changes(before, Outcome.CREATE, TEMPLATE, adds, None, None)

    assert planned.values == {PROTECTION: "false"}
    assert planned.protect == TABLES
    assert planned.remake == ""  # a create's added tables are what protection off is for
    assert planned.policy_during is None
    assert denied(planned.policy_after.body) == {
        f"LogicalResourceId/{table}": ["Update:Delete", "Update:Replace"] for table in TABLES
    }
    assert (planned.redeploy, planned.stages) == (False, None)


def test_a_create_told_protection_false_or_on_the_local_stack_protects_nothing_after():
    told = safeguards.plan(Outcome.CREATE, TEMPLATE, {PROTECTION: "false"}, None, True)
    local = safeguards.plan(Outcome.CREATE, TEMPLATE, {}, None, keep_previous=False)

    assert (told.protect, told.values) == ((), {PROTECTION: "false"})
    assert (local.protect, local.use_previous) == ((), False)


def test_an_unchanged_update_plans_no_values_no_window_no_protection_and_is_unchanged():
    before = safeguards.plan(Outcome.UPDATE, TEMPLATE, {}, DEPLOYED_VALUES, True)

    assert (before.values, before.notes, before.protect) == ({}, [], ())
    assert is_unchanged(TEMPLATE, TEMPLATE, DEPLOYED_VALUES, before.values)
    planned = update_plan({}, [])  # had the endpoint made a change set anyway: nothing in it
    assert (planned.remake, planned.policy_during, planned.stages) == ("", None, None)


def test_analytics_off_on_a_stack_deploy_sh_made_opens_a_window_for_the_series_table_alone():
    removes = [change("SeriesTable", "AWS::DynamoDB::Table", "Remove")]

    planned = update_plan({"Analytics": "off"}, removes)

    assert planned.values == {"Analytics": "off"} and planned.remake == ""
    assert denied(planned.policy_during.body) == {
        "LogicalResourceId/CounterTable": ["Update:Delete", "Update:Replace"],
        "LogicalResourceId/SeriesTable": ["Update:Replace"],
    }
    assert planned.policy_during.notes[0].startswith("    SeriesTable leaves the stack")
    assert planned.policy_after is safeguards.KEEP_TABLES  # restored after the update


def test_a_table_removed_that_its_deployed_deletion_policy_would_not_keep_gets_no_window():
    deployed = json.loads(json.dumps(TEMPLATE))
    deployed["Resources"]["SeriesTable"]["DeletionPolicy"] = "Delete"
    removes = [change("SeriesTable", "AWS::DynamoDB::Table", "Remove")]

    assert update_plan({"Analytics": "off"}, removes, deployed).policy_during is None


@pytest.mark.parametrize(
    ("changes", "why", "only_if_behind"),
    [
        (
            [change("StatsResource", "AWS::ApiGateway::Resource", "Modify", "True")],
            "the update removed or replaced StatsResource, which the stage's previous "
            "deployment still routed",
            False,
        ),
        (
            [change("CounterApi", "AWS::ApiGateway::RestApi", "Modify", "False")],
            "the update changed the settings of CounterApi (BinaryMediaTypes), which a "
            "stage serves from a new deployment only",
            False,
        ),
        (
            [change("ApiStage", "AWS::ApiGateway::Stage", "Modify", "False")],
            "the update set it back to an older deployment of the API",
            True,
        ),
    ],
)
def test_an_update_that_leaves_the_stage_on_an_old_api_plans_its_redeploy(
    changes, why, only_if_behind
):
    planned = update_plan({"StatsPath": "metrics"}, changes)

    assert planned.stages == safeguards.Redeploy(why, only_if_behind)


def test_an_update_that_touches_no_route_plans_no_redeploy():
    changes = [change("CounterFunction", "AWS::Lambda::Function", "Modify", "False")]

    assert update_plan({"RateLimit": "5"}, changes).stages is None


def test_an_update_adding_a_table_to_a_protected_stack_is_made_again_unprotected_then_protects():
    adds = [change("SeriesTable", "AWS::DynamoDB::Table", "Add")]

    planned = update_plan({}, adds)

    assert planned.remake == "-adds-table"  # the change set made protected is not executed
    assert planned.values == {PROTECTION: "false"}
    assert planned.protect == TABLES
    # the change set made again with these values needs no further change
    again = safeguards.for_changes(
        planned, Outcome.UPDATE, TEMPLATE, adds, DEPLOYED_VALUES, TEMPLATE
    )
    assert (again.remake, again.values, again.protect) == ("", {PROTECTION: "false"}, TABLES)


def test_an_update_adding_a_table_to_an_unprotected_stack_protects_nothing_after():
    adds = [change("SeriesTable", "AWS::DynamoDB::Table", "Add")]

    planned = update_plan({PROTECTION: "false"}, adds)

    assert (planned.remake, planned.protect) == ("", ())


# --- the engine knows none of it ---------------------------------------------------------------

APP_WORDS = [
    *TEMPLATE["Parameters"],  # this stack's parameters (Analytics, StageName, ...)
    *TEMPLATE["Resources"],  # and its logical ids (CounterTable, SeriesTable, ApiStage, ...)
    "apigateway",
    "ApiGateway",
    "DynamoDB",
    "keep_previous",  # the local stack's "parameters not given take their defaults"
]


def test_the_change_set_engine_names_nothing_of_this_app():
    engine = (Path(__file__).parents[2] / "deployer" / "deployer.py").read_text()

    named = [word for word in APP_WORDS if re.search(rf"\b{re.escape(word)}\b", engine)]
    named += re.findall(r"(?i)\b(?:stages?|tables?)\b", engine)

    assert named == []
