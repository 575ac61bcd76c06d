"""The AWS emulator (moto_server) and the CloudFormation deploy to it."""

from __future__ import annotations

import contextlib
import http.client
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from deployer.errors import DeployError
from deployer.results import Outcome

FAKE_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
}
DEFAULT_REGION = "us-east-1"
CAPABILITIES = ["CAPABILITY_IAM", "CAPABILITY_NAMED_IAM", "CAPABILITY_AUTO_EXPAND"]


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

    def __init__(
        self,
        port: int | None = None,
        tls: tuple[str, str] | None = None,
        server: Path | None = None,
    ) -> None:
        """tls=(certificate, key), both PEM files: serve HTTPS, as AWS does (the tests, and
        ./deploy.sh --emulator). server: a script taking atomic_moto.py's arguments that
        runs it otherwise (a test's)."""
        self.port = port or free_port()
        self.endpoint = f"{'https' if tls else 'http'}://127.0.0.1:{self.port}"
        self.ca_bundle = tls[0] if tls else None  # a self-signed certificate is its own CA
        # moto_server's app with DynamoDB's write atomicity: see atomic_moto.py for why.
        script = server or Path(__file__).with_name("atomic_moto.py")
        command = [sys.executable, "-P", str(script)]
        command += ["-H", "127.0.0.1", "-p", str(self.port), "--parent-pid", str(os.getpid())]
        if tls:
            command += ["--cert", tls[0], "--key", tls[1]]
        self.process = subprocess.Popen(
            command,
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
        context = ssl.create_default_context(cafile=self.ca_bundle) if self.ca_bundle else None
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise DeployError(f"moto_server exited with status {self.process.returncode}")
            try:
                urllib.request.urlopen(  # noqa: S310
                    self.endpoint + "/moto-api/", timeout=1, context=context
                ).close()
                return
            except (urllib.error.URLError, OSError, http.client.HTTPException):
                # HTTPException: no HTTP answer, e.g. a connect to the port before moto binds
                # it was given that very port as its own and read its own request back.
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


def check_parameters(template: dict, params: dict[str, str]) -> None:
    """Refuse parameter values CloudFormation refuses, as ./deploy.sh does (same messages)."""
    from deployer.parameters import check_parameters as check

    check(template, params)


def deploy(
    endpoint: str,
    template_body: str,
    stack_name: str,
    params: dict[str, str],
    timeout: float = 60.0,
) -> Outcome:
    """Create or update the stack through a change set, with ./deploy.sh's own Deployer.

    Quiet, polling fast, the template inline; parameters not given take their defaults, as
    the local router assumes. Returns Outcome.CREATE, UPDATE or UNCHANGED.
    """
    import json

    from deployer.deployer import Deployer
    from deployer.safeguards import StackSafeguards

    deadline = time.monotonic() + timeout

    def sleep(seconds: float) -> None:
        if time.monotonic() > deadline:
            raise DeployError(f"stack {stack_name} still in progress after {timeout:.0f} s")
        time.sleep(seconds)

    deployer = Deployer(
        client("cloudformation", endpoint),
        stack_name,
        warn=lambda _: None,
        poll_seconds=0.05,
        capabilities=CAPABILITIES,
        sleep=sleep,
    )
    # The local API is served with the defaults of the parameters not given.
    safeguards = StackSafeguards(deployer, keep_previous=False)
    try:
        outcome, _ = deployer.deploy(
            json.loads(template_body), params, lambda: {"TemplateBody": template_body}, safeguards
        )
    except DeployError as error:
        if str(error):
            raise
        # AlreadyExplained: ./deploy.sh explains a ROLLBACK_COMPLETE stack on stderr; here, quiet
        reason = f"stack {stack_name} is in ROLLBACK_COMPLETE: delete it, then retry"
        raise DeployError(reason) from error
    return outcome


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
