"""The AWS emulator (moto_server) and the CloudFormation deploy to it."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

FAKE_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
}
DEFAULT_REGION = "us-east-1"
CAPABILITIES = ["CAPABILITY_IAM", "CAPABILITY_NAMED_IAM", "CAPABILITY_AUTO_EXPAND"]
NO_CHANGES = ("No updates are to be performed", "didn't contain changes")


class DeployError(RuntimeError):
    """The stack could not be deployed to the emulator."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def use_emulator_environment(endpoint: str, fake_credentials: bool) -> None:
    """Point every boto3 client of this process (the handlers' too) at the emulator.

    With our own emulator the credentials are always fake ones: nothing can reach AWS.
    With a given endpoint, fake credentials and region fill in only what is unset.
    """
    os.environ["AWS_ENDPOINT_URL"] = endpoint
    for key, value in FAKE_CREDENTIALS.items():
        if fake_credentials:
            os.environ[key] = value
        else:
            os.environ.setdefault(key, value)
    if fake_credentials:
        os.environ.pop("AWS_PROFILE", None)
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or DEFAULT_REGION
    os.environ["AWS_REGION"] = os.environ["AWS_DEFAULT_REGION"] = region


class Emulator:
    """moto_server on 127.0.0.1 and a free port, a child in its own process group.

    Its own group keeps a Ctrl-C in the terminal from killing it before the stack has
    stopped serving; it exits by itself when this process is gone (--parent-pid), so not
    even a SIGKILL of the stack leaves it running.
    """

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        # moto_server's app with DynamoDB's write atomicity: see atomic_moto.py for why.
        command = [sys.executable, "-P", str(Path(__file__).with_name("atomic_moto.py"))]
        self.process = subprocess.Popen(
            [*command, "-H", "127.0.0.1", "-p", str(self.port), "--parent-pid", str(os.getpid())],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # its own process group: stopped as a whole
        )

    @property
    def pid(self) -> int:
        return self.process.pid

    def exit_reason(self) -> str | None:
        """None while it runs; else how it ended, e.g. "was killed by SIGKILL"."""
        code = self.process.poll()
        if code is None:
            return None
        if code < 0:
            return f"was killed by {signal.Signals(-code).name}"
        return f"exited with status {code}"

    def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise DeployError(f"moto_server exited with status {self.process.returncode}")
            try:
                urllib.request.urlopen(self.endpoint + "/moto-api/", timeout=1).close()  # noqa: S310
                return
            except (urllib.error.URLError, OSError):
                if time.monotonic() > deadline:
                    raise DeployError(f"moto_server not ready after {timeout:.0f} s") from None
                time.sleep(0.05)

    def stop(self) -> None:
        """Stop the emulator's whole process group: nothing is left behind."""
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()


def client(service: str, endpoint: str) -> Any:
    """A boto3 client of the emulator (boto3 is imported late: the emulator boots meanwhile)."""
    import boto3
    from botocore.config import Config

    return boto3.client(
        service,
        endpoint_url=endpoint,
        config=Config(retries={"mode": "standard", "max_attempts": 3}),
    )


def _wait_status(describe, wanted: set[str], failed_marker: str, timeout: float) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        state = describe()
        status = state.get("Status") or state.get("StackStatus", "")
        if status in wanted:
            return state
        if failed_marker in status or status.endswith(("FAILED", "ROLLBACK_COMPLETE")):
            return state
        if time.monotonic() > deadline:
            raise DeployError(f"still {status} after {timeout:.0f} s")
        time.sleep(0.05)


def _stack_exists(cfn: Any, stack_name: str) -> bool:
    from botocore.exceptions import ClientError

    try:
        stacks = cfn.describe_stacks(StackName=stack_name)["Stacks"]
    except ClientError as error:
        if "does not exist" in str(error):
            return False
        raise
    return bool(stacks) and stacks[0]["StackStatus"] != "REVIEW_IN_PROGRESS"


def check_parameters(template: dict, params: dict[str, str]) -> None:
    """Refuse parameter values CloudFormation refuses; moto 5.2.5 accepts them all.

    Unknown keys, a value outside AllowedValues, off AllowedPattern, not a number for a
    Number, or out of MinValue/MaxValue and MinLength/MaxLength: a DeployError saying so.
    """
    declared = template.get("Parameters", {})
    unknown = sorted(set(params) - set(declared))
    if unknown:
        raise DeployError(f"Parameters: {unknown} do not exist in the template")
    for name, value in params.items():
        rule = declared[name]
        why = rule.get("ConstraintDescription")
        allowed = [str(v) for v in rule.get("AllowedValues", [])]
        problem = None
        if allowed and value not in allowed:
            problem = f"must be one of {allowed}"
        elif "AllowedPattern" in rule and not re.fullmatch(rule["AllowedPattern"], value):
            problem = why or f"must match {rule['AllowedPattern']}"
        elif rule.get("Type") == "Number":
            try:
                number = float(value)
            except ValueError:
                problem = "must be a number"
            else:
                if "MinValue" in rule and number < float(rule["MinValue"]):
                    problem = f"must be at least {rule['MinValue']}"
                elif "MaxValue" in rule and number > float(rule["MaxValue"]):
                    problem = f"must be at most {rule['MaxValue']}"
        elif "MinLength" in rule and len(value) < int(rule["MinLength"]):
            problem = f"must be at least {rule['MinLength']} characters"
        elif "MaxLength" in rule and len(value) > int(rule["MaxLength"]):
            problem = f"must be at most {rule['MaxLength']} characters"
        if problem:
            raise DeployError(f"Parameter {name}={value!r}: {problem}")


def deploy(
    endpoint: str,
    template_body: str,
    stack_name: str,
    params: dict[str, str],
    timeout: float = 60.0,
) -> str:
    """Create or update the stack through a change set, as a real deploy does.

    Returns "CREATE", "UPDATE" or "UNCHANGED".
    """
    from botocore.exceptions import ClientError

    cfn = client("cloudformation", endpoint)
    kind = "UPDATE" if _stack_exists(cfn, stack_name) else "CREATE"
    change_set = f"local-{int(time.time() * 1000)}"
    try:
        cfn.create_change_set(
            StackName=stack_name,
            ChangeSetName=change_set,
            ChangeSetType=kind,
            TemplateBody=template_body,
            Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in params.items()],
            Capabilities=CAPABILITIES,
        )
    except ClientError as error:
        if any(text in str(error) for text in NO_CHANGES):
            return "UNCHANGED"
        raise DeployError(f"create-change-set failed: {error}") from error
    state = _wait_status(
        lambda: cfn.describe_change_set(StackName=stack_name, ChangeSetName=change_set),
        {"CREATE_COMPLETE"},
        "FAILED",
        timeout,
    )
    if state["Status"] != "CREATE_COMPLETE":
        reason = state.get("StatusReason", "")
        if any(text in reason for text in NO_CHANGES):
            cfn.delete_change_set(StackName=stack_name, ChangeSetName=change_set)
            return "UNCHANGED"
        raise DeployError(f"change set {state['Status']}: {reason}")
    cfn.execute_change_set(StackName=stack_name, ChangeSetName=change_set)
    done = f"{kind}_COMPLETE"
    stack = _wait_status(
        lambda: cfn.describe_stacks(StackName=stack_name)["Stacks"][0],
        {done},
        "FAILED",
        timeout,
    )
    if stack["StackStatus"] != done:
        events = cfn.describe_stack_events(StackName=stack_name)["StackEvents"]
        reasons = [
            f"{e['LogicalResourceId']}: {e['ResourceStatusReason']}"
            for e in events
            if "FAILED" in e.get("ResourceStatus", "") and e.get("ResourceStatusReason")
        ]
        raise DeployError(f"stack {stack['StackStatus']}: {'; '.join(reasons) or 'no reason'}")
    return kind


def stack_resources(endpoint: str, stack_name: str) -> tuple[str, dict[str, str]]:
    """The stack id and its resources' physical ids by logical id."""
    cfn = client("cloudformation", endpoint)
    stack_id = cfn.describe_stacks(StackName=stack_name)["Stacks"][0]["StackId"]
    found = cfn.describe_stack_resources(StackName=stack_name)["StackResources"]
    physical = {
        r["LogicalResourceId"]: r["PhysicalResourceId"]
        for r in found
        if r.get("LogicalResourceId") and r.get("PhysicalResourceId")
    }
    return stack_id, physical
