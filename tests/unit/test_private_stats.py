"""PrivateStats: the stats and the dashboard need the stack's token (Secrets Manager).

The stack is the generated template deployed to in-process moto (with local/moto_fidelity.py,
which creates its AWS::SecretsManager::Secret as AWS does); the stats handler is imported with
the environment the stack gave its function, as Lambda would.
"""

import base64
import json
from collections.abc import Iterator
from dataclasses import dataclass
from types import SimpleNamespace

import boto3
import pytest
from botocore.exceptions import EndpointConnectionError
from moto import mock_aws

from deployer import cli
from deployer.errors import DeployError
from deployer.options import parse
from generate import build_template, render
from local import moto_fidelity
from tests.conftest import ROOT, api_event, lambda_context, load_module, put_routes
from tests.unit.test_stats import BROWSER_ACCEPT

CHALLENGE = 'Basic realm="Route Counter stats", charset="UTF-8"'


@dataclass
class Stack:
    outputs: dict[str, str]
    physical: dict[str, str]
    environment: dict[str, str]  # the stats function's

    @property
    def token(self) -> str:
        secret = self.physical["StatsTokenSecret"]
        return boto3.client("secretsmanager").get_secret_value(SecretId=secret)["SecretString"]


def deploy(params: dict[str, str]) -> Stack:
    cfn = boto3.client("cloudformation")
    cfn.create_stack(
        StackName="rc",
        TemplateBody=render(build_template()),
        Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in params.items()],
        Capabilities=["CAPABILITY_IAM"],
    )
    stack = cfn.describe_stacks(StackName="rc")["Stacks"][0]
    found = cfn.describe_stack_resources(StackName="rc")["StackResources"]
    physical = {
        r["LogicalResourceId"]: r["PhysicalResourceId"]
        for r in found
        if r.get("LogicalResourceId") and r.get("PhysicalResourceId")
    }
    function = boto3.client("lambda").get_function_configuration(
        FunctionName=physical["StatsFunction"]
    )
    return Stack(
        {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])},
        physical,
        function["Environment"]["Variables"],
    )


@pytest.fixture
def aws() -> Iterator[None]:
    moto_fidelity.apply()
    with mock_aws():
        yield


def stats_of(stack: Stack, monkeypatch: pytest.MonkeyPatch, name: str = "private_stats"):
    for key, value in stack.environment.items():
        monkeypatch.setenv(key, value)
    return load_module(ROOT / "handler" / "stats.py", name)


@pytest.fixture
def private(aws, monkeypatch) -> tuple[Stack, object]:
    stack = deploy({"PrivateStats": "true", "AllowedOrigin": "https://app.example"})
    put_routes(boto3.client("dynamodb"), stack.physical["CounterTable"], {"/secret-route": 7})
    return stack, stats_of(stack, monkeypatch)


def dynamodb_calls(stats) -> list[str]:
    """Every DynamoDB operation the handler's client sends, as it leaves."""
    calls: list[str] = []
    stats.dynamodb.meta.events.register(
        "before-send.dynamodb", lambda request, **_: calls.append(request.url)
    )
    return calls


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def ask(stats, path="/_stats", *, authorization=None, accept="*/*", method="GET", query=None):
    headers = {"Accept": accept, "Host": "abc123.execute-api.us-east-1.amazonaws.com"}
    if authorization is not None:
        headers["Authorization"] = authorization
    event = api_event(path, method, query=query, headers=headers)
    return stats.handler(event, lambda_context("StatsFunction"))


# --- the template ----------------------------------------------------------------------------


def test_the_token_is_generated_by_secrets_manager_never_written_in_the_template(template):
    secret = template["Resources"]["StatsTokenSecret"]
    assert secret["Condition"] == "StatsArePrivate"
    assert "SecretString" not in secret["Properties"]
    assert secret["Properties"]["GenerateSecretString"] == {
        "PasswordLength": 40,
        "ExcludePunctuation": True,
    }
    # Encrypted with the stack's key when there is one, else aws/secretsmanager
    assert secret["Properties"]["KmsKeyId"] == {
        "Fn::If": ["HasKmsKey", {"Ref": "KmsKeyArn"}, {"Ref": "AWS::NoValue"}]
    }
    assert template["Parameters"]["PrivateStats"]["AllowedValues"] == ["auto", "true", "false"]
    assert template["Parameters"]["PrivateStats"]["Default"] == "auto"
    assert template["Parameters"]["Backend"]["Default"] == ""


def test_only_the_stats_function_may_read_the_token_and_nothing_else_of_secrets_manager(
    template,
):
    resources = template["Resources"]
    policy = resources["ReadStatsTokenPolicy"]
    assert policy["Condition"] == "StatsArePrivate"
    assert policy["Properties"]["Roles"] == [{"Ref": "StatsFunctionRole"}]
    assert policy["Properties"]["PolicyDocument"]["Statement"] == [
        {
            "Sid": "ReadStatsToken",
            "Effect": "Allow",
            "Action": ["secretsmanager:GetSecretValue"],
            "Resource": [{"Ref": "StatsTokenSecret"}],
        }
    ]
    text = json.dumps({k: v for k, v in resources.items() if k != "ReadStatsTokenPolicy"})
    assert "secretsmanager:" not in text
    # The stack's key (KmsKeyArn), when given, is one the stats role may decrypt with
    assert {"Ref": "StatsFunctionRole"} in resources["UseKmsKeyPolicy"]["Properties"]["Roles"]
    # The first request waits for the policy
    assert resources["ApiStage"]["Metadata"]["StatsTokenPolicy"] == {
        "Fn::If": ["StatsArePrivate", {"Ref": "ReadStatsTokenPolicy"}, ""]
    }


@pytest.mark.parametrize(
    ("params", "private"),
    [
        ({}, False),  # the defaults: no backend, public as before
        ({"Backend": "http://127.0.0.1:8000"}, True),  # auto: private with a backend
        ({"Backend": "http://127.0.0.1:8000", "PrivateStats": "false"}, False),
        ({"PrivateStats": "true"}, True),
        ({"PrivateStats": "false"}, False),
    ],
)
def test_private_exactly_when_asked_or_auto_with_a_backend(aws, params, private):
    stack = deploy(params)

    assert ("StatsTokenSecret" in stack.physical) is private
    assert ("ReadStatsTokenPolicy" in stack.physical) is private
    assert ("StatsTokenSecretArn" in stack.outputs) is private
    assert bool(stack.environment["STATS_TOKEN_SECRET"]) is private
    if private:  # the function is told where the token is, never the token
        assert stack.environment["STATS_TOKEN_SECRET"] == stack.physical["StatsTokenSecret"]


def test_the_token_is_in_no_output_no_environment_and_no_template(private):
    stack, _ = private
    token = stack.token
    assert len(token) == 40 and token.isalnum()
    cfn = boto3.client("cloudformation")
    shown = json.dumps(
        [stack.outputs, stack.environment, cfn.get_template(StackName="rc")["TemplateBody"]],
        default=str,
    )
    assert token not in shown


# --- the handler -----------------------------------------------------------------------------


def test_without_credentials_every_stats_page_is_a_401_that_makes_browsers_ask(private):
    _, stats = private
    calls = dynamodb_calls(stats)
    for path, query in [
        ("/_stats", None),
        ("/_stats/top", None),
        ("/_stats", {"route": "/secret-route"}),
        ("/_stats", {"series": "day"}),
        ("/_stats/no-such-page", None),  # not a 404: which pages exist is not said either
    ]:
        result = ask(stats, path, query=query)
        assert result["statusCode"] == 401, path
        assert result["headers"]["WWW-Authenticate"] == CHALLENGE
        assert result["headers"]["Content-Type"] == "application/json"
        assert "private" in json.loads(result["body"])["error"]
        assert "secret-route" not in result["body"]

    page = ask(stats, accept=BROWSER_ACCEPT)  # a browser: the same 401, as a page
    assert page["statusCode"] == 401
    assert page["headers"]["WWW-Authenticate"] == CHALLENGE
    assert page["headers"]["Content-Type"].startswith("text/html")
    assert "secret-route" not in page["body"]
    assert calls == []  # nothing read


@pytest.mark.parametrize(
    "authorization",
    [
        "Bearer not-the-token",
        "Bearer ",
        "Basic !!!not-base64!!!",
        "Basic " + base64.b64encode(b"no colon").decode(),
        "Basic " + base64.b64encode(b"\xff\xfe:x").decode(),  # not UTF-8
        "Digest username=x",
        "the-token-without-a-scheme",
    ],
)
def test_a_wrong_or_malformed_credential_is_the_same_401_and_reads_nothing(private, authorization):
    stack, stats = private
    calls = dynamodb_calls(stats)
    missing = ask(stats)

    refused = ask(stats, authorization=authorization.replace("the-token", stack.token))

    assert refused["statusCode"] == 401
    assert refused["headers"] == missing["headers"]
    assert refused["body"] == missing["body"]  # nothing says which part was wrong
    assert calls == []


def test_the_token_with_one_character_more_or_less_is_refused(private):
    stack, stats = private
    for wrong in (stack.token[:-1], stack.token + "x", stack.token.lower(), " " + stack.token):
        assert ask(stats, authorization=basic("", wrong))["statusCode"] == 401
        assert ask(stats, authorization=f"Bearer x{wrong}")["statusCode"] == 401


def test_two_authorization_headers_are_malformed(private):
    stack, stats = private
    event = api_event("/_stats", headers={"Accept": "*/*"})
    event["headers"]["Authorization"] = f"Bearer {stack.token}"
    event["multiValueHeaders"]["Authorization"] = [f"Bearer {stack.token}", "Bearer other"]
    assert stats.handler(event, lambda_context("StatsFunction"))["statusCode"] == 401


@pytest.mark.parametrize(
    "scheme",
    [
        lambda token: basic("", token),  # curl -u :TOKEN
        lambda token: basic("any user name", token),  # a browser's prompt
        lambda token: basic("me", token).replace("Basic", "basic"),
        lambda token: f"Bearer {token}",
        lambda token: f"bearer {token}",
    ],
)
def test_the_token_reads_the_json_and_the_dashboard(private, scheme):
    stack, stats = private
    authorization = scheme(stack.token)

    page = ask(stats, authorization=authorization)
    top = ask(stats, "/_stats/top", authorization=authorization)
    dashboard = ask(stats, authorization=authorization, accept=BROWSER_ACCEPT)

    assert page["statusCode"] == 200
    assert json.loads(page["body"])["routes"][0]["route"] == "/secret-route"
    assert top["statusCode"] == 200
    assert dashboard["statusCode"] == 200 and "/secret-route" in dashboard["body"]
    assert ask(stats, "/_stats/nope", authorization=authorization)["statusCode"] == 404


def test_cross_origin_a_page_may_send_the_token_but_never_a_remembered_password(private):
    stack, stats = private
    preflight = ask(stats, method="OPTIONS")  # browsers send no credentials in a preflight
    assert preflight["statusCode"] == 204
    assert preflight["headers"]["Access-Control-Allow-Headers"] == "Authorization"
    assert preflight["headers"]["Access-Control-Allow-Origin"] == "https://app.example"
    answers = [
        preflight,
        ask(stats),
        ask(stats, authorization=f"Bearer {stack.token}"),
        ask(stats, authorization=basic("u", stack.token), accept=BROWSER_ACCEPT),
    ]
    for result in answers:
        names = {name.lower() for name in result["headers"]}
        assert "access-control-allow-credentials" not in names


def test_no_log_line_holds_the_token_or_the_credentials(private, capsys):
    stack, stats = private
    token = stack.token
    for authorization in (None, f"Bearer {token}", basic("me", token), "Bearer wrong-guess"):
        ask(stats, authorization=authorization)
        ask(stats, authorization=authorization, accept=BROWSER_ACCEPT)
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 8
    assert [json.loads(line)["status"] for line in lines] == [
        401,
        401,
        200,
        200,
        200,
        200,
        401,
        401,
    ]
    encoded = base64.b64encode(f"me:{token}".encode()).decode()
    for line in lines:
        assert token not in line and encoded not in line and "wrong-guess" not in line


def test_secrets_manager_unreachable_is_a_503_with_the_request_id_and_reads_nothing(
    private, capsys
):
    stack, stats = private
    calls = dynamodb_calls(stats)

    def unreachable(**_):
        raise EndpointConnectionError(endpoint_url="https://secretsmanager.us-east-1.amazonaws.com")

    stats.secrets.meta.events.register_first("before-send.secrets-manager", unreachable)
    result = ask(stats, authorization=f"Bearer {stack.token}")

    assert result["statusCode"] == 503
    assert json.loads(result["body"])["requestId"]
    assert calls == []
    (line,) = capsys.readouterr().out.splitlines()
    assert json.loads(line)["level"] == "ERROR"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_rotated_token_works_within_the_reread_window_and_the_old_one_stops_within_the_ttl(
    private, monkeypatch
):
    stack, stats = private
    clock = Clock()
    monkeypatch.setattr(stats.time, "monotonic", clock)
    reads = []
    stats.secrets.meta.events.register("before-send.secrets-manager", lambda **_: reads.append(1))
    old = stack.token
    assert ask(stats, authorization=f"Bearer {old}")["statusCode"] == 200
    assert len(reads) == 1  # read once per container...
    for _ in range(5):
        assert ask(stats, authorization=f"Bearer {old}")["statusCode"] == 200
    assert len(reads) == 1  # ...not per request

    boto3.client("secretsmanager").put_secret_value(
        SecretId=stack.physical["StatsTokenSecret"],
        SecretString="N3wTokenAfterRotation0123456789abcdefgh",
    )
    new = stack.token
    clock.now += stats.TOKEN_REREAD_SECONDS - 1
    for _ in range(20):  # a flood of tokens this container does not know: no read
        assert ask(stats, authorization=f"Bearer {new}")["statusCode"] == 401
    assert len(reads) == 1
    clock.now += 1
    assert ask(stats, authorization=f"Bearer {new}")["statusCode"] == 200  # re-read once
    assert len(reads) == 2

    clock.now += stats.TOKEN_TTL_SECONDS  # the old token, once this copy is stale
    assert ask(stats, authorization=f"Bearer {old}")["statusCode"] == 401
    assert ask(stats, authorization=f"Bearer {new}")["statusCode"] == 200


def test_public_stats_read_no_secret_and_need_no_credentials(aws, monkeypatch):
    stack = deploy({})
    stats = stats_of(stack, monkeypatch, "public_stats")
    assert stats.secrets is None
    result = ask(stats)
    assert result["statusCode"] == 200
    assert "WWW-Authenticate" not in result["headers"]


# --- ./deploy.sh --stats-token -----------------------------------------------------------------


def test_deploy_sh_stats_token_prints_the_token_alone_on_stdout(private, capsys):
    stack, _ = private
    capsys.readouterr()

    assert cli.main(["--stats-token", "--stack-name", "rc", "--region", "us-east-1"]) == 0

    out, err = capsys.readouterr()
    assert out == stack.token + "\n"  # TOKEN=$(./deploy.sh --stats-token) works
    assert stack.token not in err


def test_deploy_sh_stats_token_of_public_stats_or_no_stack_is_one_error_line(aws, capsys):
    deploy({})
    capsys.readouterr()

    assert cli.main(["--stats-token", "--stack-name", "rc"]) == 1
    _, err = capsys.readouterr()
    assert err.startswith("error: the stats of stack rc are public") and err.count("\n") == 1

    assert cli.main(["--stats-token", "--stack-name", "other"]) == 1
    _, err = capsys.readouterr()
    assert err == "error: stack other does not exist in us-east-1: no stats token\n"


@pytest.mark.parametrize("extra", [["--delete"], ["--param", "A=1"], ["--dry-run"]])
def test_stats_token_takes_no_deploy_or_delete_options(extra):
    with pytest.raises(DeployError) as refused:
        parse(["--stats-token", *extra], has_terminal=True)
    assert refused.value.code == 2


def test_a_token_is_compared_in_constant_time_whatever_its_length(private, monkeypatch):
    stack, stats = private
    compared = []
    real = stats.hmac.compare_digest

    def recording(a, b):
        compared.append((len(a), len(b)))
        return real(a, b)

    monkeypatch.setattr(stats.hmac, "compare_digest", recording)
    for guess in ("x", stack.token[:20], stack.token + "y" * 100, stack.token):
        ask(stats, authorization=f"Bearer {guess}")

    # Equal-length digests each time: neither the token's length nor a matching prefix shows
    assert compared == [(32, 32)] * 4


@pytest.mark.parametrize("private", [True, False])
def test_a_deploy_of_private_stats_says_how_to_get_the_token(private, capsys):
    outputs = [{"OutputKey": "ApiUrl", "OutputValue": "https://abc.example/prod/"}]
    if private:
        outputs.append(
            {"OutputKey": "StatsTokenSecretArn", "OutputValue": "arn:aws:secretsmanager:x"}
        )
    deploy_sh = cli.Deploy(parse(["--stack-name", "rc", "--no-smoke"], has_terminal=False))
    deploy_sh.deployer = SimpleNamespace(set_stack_policy=lambda _: None)

    deploy_sh.finish(
        {"StackId": "arn:aws:cloudformation:us-east-1:1:stack/rc/1", "Outputs": outputs}
    )

    out = capsys.readouterr().out
    said = "==> The stats are private (PrivateStats): './deploy.sh --stats-token --stack-name rc'"
    assert (said in out) is private
