"""The deployer's AWS calls, recorded, and whether deployer/policy.py's policy allows each
(tests/unit/test_deployer_policy.py, tests/unit/test_deploy_flow.py)."""

import fnmatch
import json
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from botocore import xform_name

from deployer import cli
from deployer.policy import NEEDS_NO_PERMISSION, Scope, deployer_policy, render
from deployer.s3 import PERMISSIONS
from tests.conftest import FAKE_CREDENTIALS

ACCOUNT, REGION = "123456789012", FAKE_CREDENTIALS["AWS_REGION"]


def policy(scope: Scope | None = None) -> dict:
    return json.loads(render(deployer_policy(scope)))


def matches(pattern: str, value: str, case: bool = True) -> bool:
    """IAM's wildcards: * any run of characters, ? one; actions compare case-insensitively."""
    if not case:
        pattern, value = pattern.lower(), value.lower()
    return fnmatch.fnmatchcase(value, pattern)


def listed(value: object) -> list[str]:
    return value if isinstance(value, list) else [value]


def allows(document: dict, action: str, resource: str | None = None) -> bool:
    """Whether an Allow statement grants action (on resource, if given: then only a
    statement without a Condition counts, as the deployer's calls meet none)."""
    for statement in document["Statement"]:
        if statement["Effect"] != "Allow":
            continue
        if not any(matches(a, action, case=False) for a in listed(statement["Action"])):
            continue
        if resource is None:
            return True
        if "Condition" not in statement and any(
            matches(r, resource) for r in listed(statement["Resource"])
        ):
            return True
    return False


# --- the calls the deployer makes -------------------------------------------------------------


class Recorder:
    """Every AWS call made through a boto3 session of this process: (action, resource)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []
        self._params: dict = {}

    def parameters(self, params: dict, **_: object) -> None:
        self._params = dict(params)

    def call(self, model, params: dict, **_: object) -> None:
        service = model.service_model.signing_name
        operation = model.name
        given, self._params = self._params, {}
        if service == "apigateway":
            action = f"apigateway:{params['method']}"
            resource = f"arn:aws:apigateway:{REGION}::{params['url_path'].split('?')[0]}"
        elif service == "s3":
            action = PERMISSIONS[xform_name(operation)]
            resource = f"arn:aws:s3:::{given['Bucket']}"
            if "Key" in given:
                resource += f"/{given['Key']}"
        else:
            action = f"{service}:{operation}"
            resource = self.resource(service, given)
        self.calls.append((action, resource))

    @staticmethod
    def resource(service: str, given: dict) -> str:
        if service == "cloudformation":
            stack = given["StackName"]
            if stack.startswith("arn:"):
                return stack
            return f"arn:aws:cloudformation:{REGION}:{ACCOUNT}:stack/{stack}/0-0-0"
        if service == "dynamodb":
            return f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{given['TableName']}"
        if service == "lambda" and "FunctionName" in given:
            return f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{given['FunctionName']}"
        if service == "secretsmanager":
            return given["SecretId"]
        return "*"


@contextmanager
def recording(monkeypatch: pytest.MonkeyPatch) -> Iterator[Recorder]:
    """Record the calls of every session the deployer connects (cli.connect), and only those."""
    recorder = Recorder()
    connect = cli.connect

    def recorded_connect(options):
        aws = connect(options)
        aws.session.events.register("before-parameter-build", recorder.parameters)
        aws.session.events.register("before-call", recorder.call)
        return aws

    with monkeypatch.context() as patch:
        patch.setattr(cli, "connect", recorded_connect)
        yield recorder


def refused_calls(recorder: Recorder, scope: Scope) -> list[tuple[str, str]]:
    """The recorded calls the exact policy of scope does not allow on their resource."""
    exact = policy(scope)
    return [
        (action, resource)
        for action, resource in recorder.calls
        if action not in NEEDS_NO_PERMISSION and not allows(exact, action, resource)
    ]
