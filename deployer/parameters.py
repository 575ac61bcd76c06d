"""Template parameters: checked as CloudFormation checks them, passed as a change set wants them.

Pure functions. The generic ones (checking, passing, comparing values) serve the change-set
engine (deployer.deployer) and the local stack, so the same bad value gets the same message on
both paths; the rules of this stack's own parameters (table protection, the tables a change
adds or lets leave, the account role, the billing mode) serve deployer.safeguards and the CLI.
"""

from __future__ import annotations

import json
import math
import re

from deployer.errors import ParameterError
from deployer.template_reading import declared, default_value, if_condition, parameter_values

ACCOUNT_ROLE = "ApiGatewayAccountRole"
BILLING_MODE = "BillingMode"
TABLE_PROTECTION = "TableDeletionProtection"
TABLE_ID = "CounterTable"  # logical id of the counter table
SERIES_TABLE_ID = "SeriesTable"  # logical id of the series table (hits per hour and day)
TABLE_TYPE = "AWS::DynamoDB::Table"


def check_parameters(template: dict, given: dict[str, str]) -> None:
    """Refuse what CloudFormation refuses (moto 5.2.5 accepts it all), before anything starts.

    Unknown keys, a value outside AllowedValues, off AllowedPattern, not a finite number
    for a Number, or out of MinValue/MaxValue and MinLength/MaxLength: a ParameterError saying so.
    """
    rules = declared(template)
    unknown = [key for key in given if key not in rules]
    if unknown:
        raise ParameterError(
            f"unknown template parameter {', '.join(unknown)} "
            f"(the template's parameters: {', '.join(rules)})"
        )
    for name, value in given.items():
        problem = _problem(rules[name], value)
        if problem:
            raise ParameterError(f"parameter {name}={value!r} {problem}")


def _problem(rule: dict, value: str) -> str | None:
    """What is wrong with value under the parameter's constraints, or None."""
    why = rule.get("ConstraintDescription")
    allowed = [str(v) for v in rule.get("AllowedValues", [])]
    if allowed and value not in allowed:
        return f"must be one of {allowed}"
    if "AllowedPattern" in rule and not re.fullmatch(rule["AllowedPattern"], value):
        return f"must be {why}" if why else f"must match {rule['AllowedPattern']}"
    if rule.get("Type") == "Number":
        try:
            number = float(value)
        except ValueError:
            return "must be a number"
        if not math.isfinite(number):  # float() takes nan and inf; CloudFormation does not
            return "must be a finite number"
        if "MinValue" in rule and number < float(rule["MinValue"]):
            return f"must be at least {rule['MinValue']}"
        if "MaxValue" in rule and number > float(rule["MaxValue"]):
            return f"must be at most {rule['MaxValue']}"
    elif "MinLength" in rule and len(value) < int(rule["MinLength"]):
        return f"must be at least {rule['MinLength']} characters"
    elif "MaxLength" in rule and len(value) > int(rule["MaxLength"]):
        return f"must be at most {rule['MaxLength']} characters"
    return None


def change_set_parameters(
    template: dict, given: dict[str, str], previous: dict[str, str] | None
) -> list[dict]:
    """Parameters of a change set: the given values and, on an update, the previous ones.

    previous is None on a create. On an update a parameter not given keeps its value. An
    empty one is left out, which CloudFormation resolves to the template default (empty for
    each of ours): moto 5.2.5 fails an update given KmsKeyArn="" even though nothing changes.
    """
    result = [{"ParameterKey": k, "ParameterValue": v} for k, v in given.items()]
    if previous is not None:
        result += [
            {"ParameterKey": k, "UsePreviousValue": True}
            for k in declared(template)
            if previous.get(k) and k not in given
        ]
    return result


def given_lines(given: dict[str, str], previous: dict[str, str] | None) -> list[str]:
    """One line per given value; on an update, whether it changes."""
    lines = []
    for key, value in given.items():
        if previous is not None and key in previous:
            note = "unchanged" if previous[key] == value else f"was {previous[key]}"
            lines.append(f"      {key} = {value}  ({note})")
        else:
            lines.append(f"      {key} = {value}")
    return lines


def is_unchanged(
    deployed_template: dict | None,
    template: dict,
    previous: dict[str, str],
    given: dict[str, str],
) -> bool:
    """The stack already runs this template with these values: nothing to deploy."""
    same_values = all((previous.get(k) or "") == v for k, v in given.items())
    return deployed_template == template and same_values


def with_defaults(template: dict, given: dict[str, str]) -> dict[str, str]:
    """Every parameter's value when those not given take their defaults (not their previous)."""
    return parameter_values(template, given)


def needs_account_role(
    template: dict, given: dict[str, str], previous: dict[str, str] | None
) -> bool:
    """Whether the deploy must choose ApiGatewayAccountRole: not given, and the stack has none.

    The API Gateway CloudWatch role is one per account and region. A create (or a stack from
    before the parameter) chooses by looking at the account; an update keeps the stack's value.
    """
    if ACCOUNT_ROLE not in declared(template) or ACCOUNT_ROLE in given:
        return False
    return previous is None or not previous.get(ACCOUNT_ROLE)


def account_role_choice(role_arn: str | None, region: str) -> tuple[str, str]:
    """ApiGatewayAccountRole for an account whose API Gateway role in region is role_arn.

    An account that already has a role uses it (`existing`): ours would replace it for every
    API in the region. One without gets ours (`create`). Returns the value and a line saying so.
    """
    if role_arn:
        return "existing", (
            f"    {ACCOUNT_ROLE} = existing: API Gateway in {region} already has a CloudWatch "
            f"role ({role_arn}); the stack's access logs use it and leave it as it is"
        )
    return "create", (
        f"    {ACCOUNT_ROLE} = create: API Gateway in {region} has no CloudWatch role yet; "
        "the stack creates one and sets it for the region"
    )


def billing_mode_refusal(
    stack_name: str,
    given: dict[str, str],
    previous: dict[str, str] | None,
    table_mode: str | None,
) -> str | None:
    """Why a BillingMode switch on an existing stack is refused, or None to go ahead.

    CloudFormation does not switch a table's capacity mode safely in one update: going to
    PROVISIONED, the auto scaling targets it creates can collide with the ones Application
    Auto Scaling kept for the table ("ScalableTarget already exists", aws-cdk#16302,
    #15318) and the failed update cannot roll the table back; DynamoDB allows four switches
    to on-demand per 24 hours. So the table is switched first, by hand, and the deploy that
    follows only records the mode it already has (table_mode, from DescribeTable).
    """
    wanted = given.get(BILLING_MODE)
    was = (previous or {}).get(BILLING_MODE)
    if not wanted or not was or wanted == was or table_mode == wanted:
        return None
    return (
        f"refusing to switch BillingMode of stack {stack_name} from {was} to {wanted} in one "
        "deploy (CloudFormation cannot do it safely): switch the table first, then deploy; "
        "see 'Switching BillingMode' in docs/operations.md"
    )


def protection_on_create(
    template: dict, given: dict[str, str], keep_previous: bool
) -> tuple[dict[str, str], bool]:
    """A create's values, with the tables' deletion protection off, and whether to turn it on
    once the stack exists.

    The tables are RetainExceptOnCreate: the rollback of a failed first create deletes them,
    which DynamoDB refuses while deletion protection is on (the stack would end
    ROLLBACK_FAILED and leave an orphan table). So the create always runs with
    TableDeletionProtection=false, and protection follows unless the caller said false:
    deploy.sh's default is on; the local stack's (keep_previous=False, "not given means the
    template default") is the template's.
    """
    rule = declared(template).get(TABLE_PROTECTION)
    if rule is None:
        return given, False
    default = "true" if keep_previous else default_value(rule)
    wanted = given.get(TABLE_PROTECTION, default)
    return {**given, TABLE_PROTECTION: "false"}, wanted == "true"


def protection_on_update(
    template: dict, given: dict[str, str], previous: dict[str, str], keep_previous: bool
) -> dict[str, str]:
    """An update's values: a stack made before TableDeletionProtection existed had its table
    protected by the template itself, so it keeps protection on unless told otherwise (the
    parameter's default, false, would turn it off)."""
    if (
        keep_previous
        and TABLE_PROTECTION in declared(template)
        and TABLE_PROTECTION not in given
        and not previous.get(TABLE_PROTECTION)
    ):
        return {**given, TABLE_PROTECTION: "true"}
    return given


def protection_value(
    template: dict, given: dict[str, str], previous: dict[str, str], keep_previous: bool
) -> str:
    """TableDeletionProtection as an update with these values would set it ("" if the
    template has no such parameter)."""
    if TABLE_PROTECTION not in declared(template):
        return ""
    if TABLE_PROTECTION in given:
        return given[TABLE_PROTECTION]
    if keep_previous and previous.get(TABLE_PROTECTION):
        return previous[TABLE_PROTECTION]
    return default_value(declared(template)[TABLE_PROTECTION])


def tables_added(changes: list[dict]) -> list[str]:
    """Logical ids of the DynamoDB tables a change set adds.

    A table that an update adds is one its rollback deletes (RetainExceptOnCreate keeps a
    resource only from operations other than the one that created it), which DynamoDB
    refuses while the table's deletion protection is on: the rollback would end
    UPDATE_ROLLBACK_FAILED. So such an update runs with TableDeletionProtection=false, and
    protection is turned on once it succeeded, as after a create.
    """
    return [
        change["ResourceChange"]["LogicalResourceId"]
        for change in changes
        if (change.get("ResourceChange") or {}).get("Action") == "Add"
        and change["ResourceChange"].get("ResourceType") == TABLE_TYPE
    ]


# DeletionPolicy values that keep a table's data when an update takes it out of the stack.
KEEPING_POLICIES = ("Retain", "RetainExceptOnCreate")


def tables_leaving(changes: list[dict], template: dict, deployed: dict | None) -> list[str]:
    """Logical ids of the tables an update takes out of the stack on purpose, their data kept.

    Turning Analytics and MaxRoutes off removes the series table by its condition; the stack
    policy denies Update:Delete of it (a fail-safe against a removal nobody meant, such as a
    renamed logical id), and AWS checks the policy when the change set runs, so such an
    update would be rolled back. A removal is meant when the new template still declares the
    table under a condition, and the DeletionPolicy it was deployed with keeps its data.
    """
    resources = template.get("Resources", {})
    old = (deployed or {}).get("Resources", {})
    return [
        change["ResourceChange"]["LogicalResourceId"]
        for change in changes
        if (rc := change.get("ResourceChange") or {}).get("Action") == "Remove"
        and rc.get("ResourceType") == TABLE_TYPE
        and "Condition" in resources.get(rc["LogicalResourceId"], {})
        and old.get(rc["LogicalResourceId"], {}).get("DeletionPolicy") in KEEPING_POLICIES
    ]


def protected_tables(template: dict) -> list[str]:
    """Logical ids of the tables whose deletion protection follows TableDeletionProtection."""
    conditions = template.get("Conditions", {})
    found = []
    for logical_id, resource in template.get("Resources", {}).items():
        setting = resource.get("Properties", {}).get("DeletionProtectionEnabled")
        if resource.get("Type") != TABLE_TYPE or not isinstance(setting, dict):
            continue
        condition = if_condition(setting)
        used = json.dumps([setting, conditions.get(condition)])
        if json.dumps({"Ref": TABLE_PROTECTION}) in used:
            found.append(logical_id)
    return found
