"""python -m local: run the whole stack on this machine (no AWS account, no Docker)."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import socket
import sys
import textwrap
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

from local.stack import DEFAULT_STACK_NAME, LocalStack, PortInUse
from local.state import DEFAULT_STATE_ROOT, SNAPSHOT_EVERY

PARAMETER_WIDTH = 88  # the banner's parameter lines wrap here (100 columns with the labels)
EMPTY = "''"  # an empty parameter value, as a shell would take it back
EMULATOR_CHECK_EVERY = 0.2  # seconds: a dead emulator stops the stack well within 5 s


def parse_param(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected Key=Value, got {text!r}")
    return key, value


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="./deploy.sh --local",
        description="Run the Route Counter stack on this machine: an embedded AWS emulator "
        "(moto_server), the generated template deployed to it through CloudFormation, and the "
        "template's REST API served on http://127.0.0.1:PORT with the functions' inline code. "
        "No AWS account, no Docker. Ctrl-C stops everything.",
        epilog="Set AWS_ENDPOINT_URL to use an emulator that is already running "
        "(it is then neither started nor stopped).",
    )
    parser.add_argument(
        "--port", type=int, default=3000, help="local port of the API (default 3000; 0: any)"
    )
    parser.add_argument(
        "--param",
        action="append",
        default=[],
        type=parse_param,
        metavar="Key=Value",
        help="a CloudFormation parameter of the template (repeatable), e.g. --param StageName=dev",
    )
    parser.add_argument(
        "--openapi",
        type=Path,
        metavar="FILE",
        help="count routes as this OpenAPI document (JSON or YAML) names them: its paths "
        "become RouteTemplates (docs/routes.md)",
    )
    parser.add_argument(
        "--stack-name",
        default=DEFAULT_STACK_NAME,
        help=f"CloudFormation stack name in the emulator (default {DEFAULT_STACK_NAME})",
    )
    parser.add_argument(
        "--template",
        type=Path,
        metavar="FILE",
        help="deploy and serve this template JSON instead of generate.py's",
    )
    parser.add_argument(
        "--fresh",
        action="store_true",
        help="start with empty tables (the saved ones are replaced at the next save)",
    )
    parser.add_argument(
        "--state-dir",
        type=Path,
        default=DEFAULT_STATE_ROOT,
        metavar="DIR",
        help="keep the tables across restarts in DIR/<stack name>/ (default: .local-state "
        f"in the repository; saved on stop and every {SNAPSHOT_EVERY:.0f} s while serving)",
    )
    return parser.parse_args(argv)


class Stop(BaseException):
    """A signal asked us to stop (a BaseException: no `except Exception` swallows it)."""


def key_clients(args: argparse.Namespace) -> tuple[object, object]:
    """./deploy.sh keys --local: the clients of the emulator the running local stack named
    in its state directory (or of AWS_ENDPOINT_URL's)."""
    from deployer.errors import DeployError
    from local import emulator
    from local.stack import EMULATOR_FILE

    endpoint = os.environ.get("AWS_ENDPOINT_URL", "")
    fake = not endpoint
    if not endpoint:
        path = (args.state_dir or DEFAULT_STATE_ROOT) / args.stack_name / EMULATOR_FILE
        if not path.is_file():
            raise DeployError(
                f"no local stack {args.stack_name} is running (no {path}): start it with "
                "./deploy.sh --local --param ClientIdentity=apikey"
            )
        endpoint = path.read_text(encoding="utf-8").strip()
        address = urlsplit(endpoint)
        try:  # a stack that was killed left its file behind
            socket.create_connection((address.hostname, address.port), timeout=2).close()
        except OSError:
            raise DeployError(
                f"no local stack {args.stack_name} is running (its emulator at {endpoint} does "
                "not answer): start it with ./deploy.sh --local --param ClientIdentity=apikey"
            ) from None
    emulator.use_emulator_environment(endpoint, fake_credentials=fake)
    return emulator.client("apigateway", endpoint), emulator.client("cloudformation", endpoint)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["keys"]:
        from deployer import keys

        return keys.main(argv[1:], key_clients, local=True)
    args = parse_args(argv)
    # The functions' own log lines (print) show as they happen, even through a pipe.
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    started = time.monotonic()
    stopping = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        stopping.set()
        raise Stop(signal.Signals(signum).name)

    # SIGHUP: the terminal was closed. All three stop the stack the same way.
    handled = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    for signum in handled:
        signal.signal(signum, on_signal)

    from deployer.errors import DeployError, ParameterError
    from deployer.openapi import route_templates
    from local.server import raise_descriptor_limit
    from local.stack import start_local_stack

    raise_descriptor_limit()  # every client connection takes one

    stack = None
    failure = None
    try:
        template = read_template(args.template) if args.template else None
        params = dict(args.param)
        if args.openapi:
            if "RouteTemplates" in params:
                raise ParameterError("give --openapi or --param RouteTemplates=..., not both")
            params["RouteTemplates"] = route_templates(args.openapi)
        given = dict(params)  # as typed: the start replaces a Backend=file:PATH by its ARN
        stack = start_local_stack(
            port=args.port,
            params=params,
            stack_name=args.stack_name,
            template=template,
            state_root=args.state_dir,
            fresh=args.fresh,
        )
        emulator = (
            f"moto_server {stack.endpoint} (pid {stack.emulator_pid})"
            if stack.emulator
            else f"{stack.endpoint} (AWS_ENDPOINT_URL)"
        )
        print(
            f"Route Counter is running locally, ready in {time.monotonic() - started:.1f} s\n"
            f"  API:       {stack.url}/\n"
            + try_line(stack)
            + f"  stack:     {stack.stack_name} ({stack.deploy_result.lower()}) on {emulator}\n"
            f"  counts:    {kept(stack, args.fresh)}\n"
            + parameter_lines(given, stack.parameters)
            + private_stats_lines(stack)
            + (f"  backend:   {stack.backend}\n" if stack.backend else "")
            + (
                f"  api keys:  required (usage plan {stack.usage_plan}); make one: "
                "./deploy.sh keys create NAME --local\n"
                if stack.usage_plan
                else ""
            )
            + "".join(
                f"  stream:    {m.table} -> {m.function} "
                f"({m.logical_id}, BatchSize {m.batch_size})\n"
                for m in stack.stream_mappings
            )
            + "Ctrl-C to stop.",
            flush=True,
        )
        while not stopping.wait(EMULATOR_CHECK_EVERY):
            if why := stack.emulator_failure():
                failure = f"the emulator (moto_server, pid {stack.emulator_pid}) {why}"
                break
    except Stop:
        pass
    except DeployError as error:  # ./deploy.sh's words and exit status (2: bad usage)
        print(f"error: {error}", file=sys.stderr)
        return error.code
    except Exception as error:  # one line in the user's words, not a traceback
        print(f"error: {start_failure(error)}", file=sys.stderr)
        return 1
    finally:
        for signum in handled:
            signal.signal(signum, signal.SIG_IGN)
        if stack is not None:
            stack.stop(drain_timeout=1.0 if failure else 5.0)
    # After a SIGHUP the terminal may be gone: nothing left to say then.
    with contextlib.suppress(OSError):
        if failure:
            assert stack is not None
            print(f"error: {failure}; stopped. {saved(stack)}", file=sys.stderr)
            return 1
        if stack is not None and stack.save_failure:  # said on stderr when it failed
            print(f"Stopped, but the last save failed. {saved(stack)}", file=sys.stderr)
            return 1
        print(f"Stopped: the local API and the emulator are gone. {saved(stack)}", flush=True)
    return 0


def read_template(path: Path) -> dict:
    from deployer.errors import DeployError

    try:
        template = json.loads(path.read_text())
    except OSError as error:
        raise DeployError(f"--template {path}: cannot read it ({error.strerror})") from None
    except ValueError as error:  # not UTF-8, not JSON
        raise DeployError(f"--template {path}: not a JSON template ({error})") from None
    if not isinstance(template, dict):
        raise DeployError(f"--template {path}: not a JSON template (not an object)")
    return template


def start_failure(error: Exception) -> str:
    """What stopped the start, in words: the local stack's own errors say it already; a
    file or port the system refused is named with the system's reason."""
    if isinstance(error, OSError) and error.strerror and not isinstance(error, PortInUse):
        where = f" {error.filename}:" if error.filename else ""
        return f"cannot start the local stack:{where} {error.strerror.lower()}"
    return str(error) or "the local stack stopped while starting, for no reason it gave"


def parameter_lines(given: dict[str, str], values: dict[str, str]) -> str:
    """The template's parameters in effect: those given with --param (or --openapi), then
    the others at their defaults, wrapped under one another."""

    def listed(pairs: dict[str, str]) -> str:
        return " ".join(f"{name}={value or EMPTY}" for name, value in sorted(pairs.items()))

    defaults = {name: value for name, value in values.items() if name not in given}
    lines = [f"given: {listed(given)}"] if given else []
    if defaults:
        lines.append(f"{'the others at their ' if given else ''}defaults: {listed(defaults)}")
    wrapped = [
        part
        for line in lines
        for part in textwrap.wrap(line, PARAMETER_WIDTH, subsequent_indent="  ")
    ]
    return "".join(f"  {'params:' if i == 0 else '':<11}{part}\n" for i, part in enumerate(wrapped))


def try_line(stack: LocalStack) -> str:
    """A first request to make. With a Backend it reaches the backend (and is counted):
    asked with X-Route-Count, its answer shows both the backend's answer and the count."""
    if not stack.backend:
        return f"  try:       curl {stack.url}/hello\n"
    return (
        f"  try:       curl -i -H 'X-Route-Count: 1' {stack.url}/hello"
        "  (forwarded to the backend and counted: its answer, the count in X-Route-Count)\n"
    )


def private_stats_lines(stack: LocalStack) -> str:
    """Where the stats token is (PrivateStats), never the token itself: this goes to logs."""
    if not stack.stats_token_secret:
        return ""
    if stack.stats_token_path is None:
        fetch = (
            "aws secretsmanager get-secret-value --query SecretString --output text "
            f"--endpoint-url {stack.endpoint} --secret-id {stack.stats_token_secret}"
        )
        return f"  stats:     private; the token: {fetch}\n"
    path = stack.stats_token_path
    return (
        f"  stats:     private; the token is in {path} (0600): any user name, the token as"
        " password\n"
        f'  try:       curl -u ":$(cat {path})" {stack.url}/_stats\n'
    )


def kept(stack: LocalStack, fresh: bool) -> str:
    if stack.state is None:
        return "kept by the emulator at AWS_ENDPOINT_URL (not saved by this stack)"
    if fresh:
        return f"saved in {stack.state.path} (started empty: --fresh)"
    routes = f"{stack.routes_restored} route{'' if stack.routes_restored == 1 else 's'}"
    return f"saved in {stack.state.path} ({routes} restored; --fresh starts empty)"


def saved(stack: LocalStack | None) -> str:
    if stack is None or stack.state is None:
        return "Bye."
    if stack.state.saved_at is None:  # the file, if any, is still the one restored at start
        return f"Nothing saved since the start: {stack.state.path} is as it was then."
    at = time.strftime("%H:%M:%S", time.localtime(stack.state.saved_at))
    return f"Counts as of {at} are saved in {stack.state.path}."


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    # A handler still running past its timeout cannot be stopped and would hold up a normal
    # interpreter exit (the pool's threads are joined): everything we started is stopped.
    os._exit(code)
