"""Reading a CloudFormation template as CloudFormation reads it: parameter values, Refs,
conditions and Fn::If. The one place for it: the deployer (deployer/) and the local stack
(local/) both read templates through these functions, so the same template means the same
values on both paths.

A parameter with no Default (the one rule): its value, when none is given, is the empty
string. CloudFormation refuses a create or update that leaves such a parameter without a
value ("Parameters: [X] must have values"), so it is that refusal the user sees, from
CloudFormation or the emulator; until then "" stands for "no value": what a condition
compares, what an unchanged-stack check compares, and what decides nothing (a protection or
a reservation that is "" is off). Every parameter of our own template has a Default
(tests/unit/test_template_reading.py checks it), so the rule only ever applies to a
template someone else wrote.

Pure functions on the template's JSON; this module imports nothing of the project, so
anything may import it.
"""

from __future__ import annotations

import re
from typing import Any

NO_VALUE = {"Ref": "AWS::NoValue"}
SUB_VARIABLE = re.compile(r"\$\{([A-Za-z0-9_:]+)(?:\.[A-Za-z0-9_.]+)?\}")


class TemplateError(ValueError):
    """The template cannot be read (or served locally) as CloudFormation would."""


def declared(template: dict) -> dict[str, dict]:
    """The template's parameters, by name, each with its rules (Type, Default, ...)."""
    return template.get("Parameters", {})


def default_value(rule: dict) -> str:
    """A parameter's value when none is given: its Default as text, "" when it has none."""
    return str(rule.get("Default", ""))


def parameter_values(template: dict, given: dict[str, str]) -> dict[str, str]:
    """Every parameter's value for a deploy: the given ones, else the defaults."""
    defaults = {name: default_value(rule) for name, rule in declared(template).items()}
    return defaults | given


def ref_name(value: object) -> str | None:
    """The name a {"Ref": name} names; None for any other value."""
    if isinstance(value, dict) and set(value) == {"Ref"} and isinstance(value["Ref"], str):
        return value["Ref"]
    return None


def resolve_ref(value: object, known: dict[str, Any]) -> object:
    """value with a Ref to a name of `known` (parameter values, physical ids) replaced by
    its value; any other value as it is."""
    name = ref_name(value)
    return known[name] if name is not None and name in known else value


def condition_holds(template: dict, name: str, values: dict[str, str]) -> bool:
    """Whether the template's condition `name` holds for these parameter values (the
    defaults for the others), as CloudFormation evaluates it."""
    values = parameter_values(template, values)
    conditions = template.get("Conditions", {})
    if name not in conditions:
        raise TemplateError(f"condition {name} is not declared in the template's Conditions")

    def evaluate(node: object) -> object:
        if not isinstance(node, dict) or len(node) != 1:
            return node
        ((function, argument),) = node.items()
        if function == "Ref":  # a parameter's value; a pseudo parameter reads as its name
            return values.get(argument, argument)
        if function == "Condition":
            return condition_holds(template, argument, values)
        arguments = [evaluate(a) for a in argument]
        if function == "Fn::Equals":
            return str(arguments[0]) == str(arguments[1])
        if function == "Fn::Not":
            return not arguments[0]
        if function == "Fn::And":
            return all(arguments)
        if function == "Fn::Or":
            return any(arguments)
        if function == "Fn::Split":
            return str(arguments[1]).split(str(arguments[0]))
        if function == "Fn::Select":
            return arguments[1][int(arguments[0])]
        raise TemplateError(f"condition {name}: {function} is not evaluated locally")

    return bool(evaluate(conditions[name]))


def if_condition(value: object) -> str | None:
    """The condition an {"Fn::If": [condition, yes, no]} chooses by; None for any other value."""
    if isinstance(value, dict) and set(value) == {"Fn::If"}:
        return value["Fn::If"][0]
    return None


def as_deployed(template: dict, values: dict[str, str]) -> dict:
    """The template as CloudFormation deploys it with these parameter values: resources and
    outputs whose condition is false dropped, each Fn::If resolved, AWS::NoValue removed."""
    dropped = object()

    def resolve(node: Any) -> Any:
        if isinstance(node, list):
            return [v for v in (resolve(i) for i in node) if v is not dropped]
        if isinstance(node, dict):
            condition = if_condition(node)
            if condition is not None:
                _, yes, no = node["Fn::If"]
                return resolve(yes if condition_holds(template, condition, values) else no)
            if node == NO_VALUE:
                return dropped
            return {k: v for k, v in ((k, resolve(v)) for k, v in node.items()) if v is not dropped}
        return node

    result = dict(template)
    for section in ("Resources", "Outputs"):
        result[section] = {
            name: resolve(body)
            for name, body in template.get(section, {}).items()
            if "Condition" not in body or condition_holds(template, body["Condition"], values)
        }
    return result


def names_used(node: Any, conditions: dict[str, Any]) -> set[str]:
    """Parameters and resources a template fragment uses: Ref, GetAtt, Fn::Sub's ${X}, and,
    through Fn::If and Condition, what its conditions use."""
    found: set[str] = set()
    if isinstance(node, list):
        for item in node:
            found |= names_used(item, conditions)
    elif isinstance(node, dict):
        for key, value in node.items():
            if key == "Ref" and isinstance(value, str):
                found.add(value)
            elif key == "Fn::GetAtt":
                found.add(value[0] if isinstance(value, list) else value.split(".")[0])
            elif key == "Fn::Sub":
                text, variables = (value, {}) if isinstance(value, str) else value
                found |= set(SUB_VARIABLE.findall(text)) - set(variables)
                found |= names_used(variables, conditions)
            elif key == "Fn::If":
                found |= names_used(conditions.get(value[0]), conditions)
                found |= names_used(value[1:], conditions)
            elif key == "Condition" and isinstance(value, str):
                found |= names_used(conditions.get(value), conditions)
            else:
                found |= names_used(value, conditions)
    return found
