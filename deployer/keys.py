"""./deploy.sh keys: the API keys of a stack deployed with ClientIdentity apikey (docs/clients.md).

A key is made by the deployer, never by the template: CreateApiKey (enabled) then
CreateUsagePlanKey into the stack's usage plan, which is what lets it call the stage. Its
value is printed once, by create; list shows ids, names and states, never a value; revoke
disables the key (API Gateway then answers 403 to it) and keeps it, so that the client id
(the key's id) on past hits still has its name.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from deployer.errors import DeployError, Refused, StackMissing, UsageError
from deployer.options import DEFAULT_STACK, check_stack_name

USAGE_PLAN_ID = "UsagePlan"  # templates/clients.py's logical id
KEY_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,127}")


def usage_plan_of(cloudformation: Any, stack: str) -> str:
    """The stack's usage plan id; DeployError when the stack or its plan does not exist."""
    try:
        found = cloudformation.describe_stack_resources(StackName=stack)["StackResources"]
    except ClientError as error:
        if "does not exist" in str(error):
            raise StackMissing(stack=stack, where="", consequence="no API keys") from None
        raise
    plan = next(
        (r.get("PhysicalResourceId") for r in found if r.get("LogicalResourceId") == USAGE_PLAN_ID),
        None,
    )
    if not plan:
        raise Refused(
            f"stack {stack} takes no API keys (ClientIdentity is not apikey): deploy it with "
            "--param ClientIdentity=apikey first"
        )
    return plan


def create_key(apigateway: Any, plan: str, name: str, stack: str) -> dict:
    """A new enabled key in the plan: {id, name, value}."""
    if not KEY_NAME.fullmatch(name):
        raise UsageError(
            f"invalid key name '{name}': 1-128 letters, digits, '.', '_', '@', '-', "
            "starting with a letter or digit"
        )
    key = apigateway.create_api_key(
        name=name,
        description=f"Route Counter {stack}: {name}",
        enabled=True,
        tags={"route-counter:stack": stack},
    )
    try:
        apigateway.create_usage_plan_key(usagePlanId=plan, keyId=key["id"], keyType="API_KEY")
    except (ClientError, BotoCoreError):
        apigateway.delete_api_key(apiKey=key["id"])  # no key left that works nowhere
        raise
    return {"id": key["id"], "name": name, "value": key["value"]}


def list_keys(apigateway: Any, plan: str) -> list[dict]:
    """The plan's keys, oldest first: {id, name, enabled, created}; never their values."""
    listed = []
    pages = apigateway.get_paginator("get_usage_plan_keys").paginate(usagePlanId=plan)
    for entry in (k for page in pages for k in page.get("items", [])):
        key = apigateway.get_api_key(apiKey=entry["id"], includeValue=False)
        created = key.get("createdDate")
        listed.append(
            {
                "id": key["id"],
                "name": key.get("name") or "",
                "enabled": bool(key.get("enabled")),
                "created": created.strftime("%Y-%m-%dT%H:%M:%SZ") if created else "",
            }
        )
    return sorted(listed, key=lambda k: (k["created"], k["id"]))


def revoke_key(apigateway: Any, plan: str, key_id: str) -> dict:
    """Disable a key of the plan (kept, with its name): {id, name}."""
    if key_id not in {k["id"] for k in list_keys(apigateway, plan)}:
        raise Refused(f"no API key {key_id} in this stack's usage plan ({plan})")
    key = apigateway.update_api_key(
        apiKey=key_id, patchOperations=[{"op": "replace", "path": "/enabled", "value": "false"}]
    )
    return {"id": key_id, "name": key.get("name") or ""}


def add_stack_options(
    options: argparse.ArgumentParser, local: bool, default: Callable[[object], object]
) -> None:
    """Where the stack is; default(value): the value on the command line's parser, SUPPRESS
    on a subcommand's (so what was given before the command stays)."""
    options.add_argument(
        "--stack-name", default=default(DEFAULT_STACK), help="default: route-counter"
    )
    if local:
        options.add_argument(
            "--state-dir", type=Path, default=default(None), help="the local stack's --state-dir"
        )
    else:
        options.add_argument("--region", default=default(""), help="AWS region")
        options.add_argument("--profile", default=default(""), help="AWS CLI profile")


def parse(argv: list[str], local: bool) -> argparse.Namespace:
    prog = "./deploy.sh keys" + (" --local" if local else "")
    description = "API keys of a stack deployed with ClientIdentity apikey (docs/clients.md)"
    description += ": the local stack that runs now" if local else ""
    # The options are taken before the command and after it (`keys create acme --local`,
    # `keys --stack-name s list`): each subcommand has them too, without defaults of its own
    # (argparse would let a subcommand's default overwrite what was given before it).
    parser = argparse.ArgumentParser(prog=prog, description=description)
    add_stack_options(parser, local, lambda value: value)
    common = argparse.ArgumentParser(add_help=False)
    add_stack_options(common, local, lambda _: argparse.SUPPRESS)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    create = commands.add_parser(
        "create", parents=[common], help="make a key; its value is shown this once"
    )
    create.add_argument("name", help="who the key is for, e.g. acme")
    commands.add_parser(
        "list", parents=[common], help="the keys: id, name, state, created (never a value)"
    )
    revoke = commands.add_parser(
        "revoke", parents=[common], help="disable a key: API Gateway answers it 403"
    )
    revoke.add_argument("id", help="the key's id, as list shows it")
    args = parser.parse_args(argv)
    check_stack_name(args.stack_name)
    return args


def run(args: argparse.Namespace, apigateway: Any, cloudformation: Any) -> list[str]:
    """What the command prints, one line each."""
    stack = args.stack_name
    plan = usage_plan_of(cloudformation, stack)
    if args.command == "create":
        key = create_key(apigateway, plan, args.name, stack)
        return [
            f"Created API key {key['name']} (id {key['id']}) for stack {stack}.",
            f"value: {key['value']}",
            "Shown this once: keep it. Clients send it as the x-api-key header; the hits they "
            f"make are counted for client {key['id']}.",
        ]
    if args.command == "revoke":
        key = revoke_key(apigateway, plan, args.id)
        return [f"Revoked API key {key['name']} (id {key['id']}): API Gateway answers it 403."]
    keys = list_keys(apigateway, plan)
    if not keys:
        return [f"No API keys for stack {stack} yet: ./deploy.sh keys create NAME"]
    width = max(len("NAME"), *(len(k["name"]) for k in keys))
    lines = [f"{'ID':<12} {'NAME':<{width}} {'STATE':<8} CREATED"]
    for key in keys:
        state = "enabled" if key["enabled"] else "revoked"
        lines.append(f"{key['id']:<12} {key['name']:<{width}} {state:<8} {key['created']}")
    return lines


def main(
    argv: list[str], clients: Callable[[argparse.Namespace], tuple[Any, Any]], local: bool
) -> int:
    """Parse, run, print; clients(args) -> (apigateway, cloudformation) of where the stack is.
    Exit status 0 done, 1 failed, 2 bad usage (argparse's own too)."""
    args = parse(argv, local)
    try:
        for line in run(args, *clients(args)):
            print(line, flush=True)
    except DeployError as error:
        print(f"error: {error}", file=sys.stderr, flush=True)
        return error.code
    except (ClientError, BotoCoreError) as error:
        print(f"error: AWS call failed: {error}", file=sys.stderr, flush=True)
        return 1
    return 0
