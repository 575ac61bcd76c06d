"""API Gateway's dispatch without sockets (local/gateway.py): a request in, an answer out,
through the template's routes and real local functions."""

import base64
import concurrent.futures
import copy
import json

import boto3
import pytest
from moto import mock_aws

from local import moto_fidelity
from local.api_keys import UsagePlans
from local.events import ApiInfo
from local.gateway import Gateway
from local.router import Router
from local.runtime import Function, FunctionSpec

# The counter's stand-in: echoes the event, or fails as the query asks.
ECHO = """\
import base64, json, time

calls = 0

def handler(event, context):
    global calls
    calls += 1
    do = (event["queryStringParameters"] or {}).get("do")
    if do == "raise":
        raise RuntimeError("the handler broke")
    if do == "sleep":
        time.sleep(2)
    if do == "malformed":
        return {"statusCode": "two hundred"}
    if do == "png":
        body = base64.b64encode(b"\\x89PNG").decode()
        return {"statusCode": 200, "headers": {"Content-Type": "image/png"},
                "body": body, "isBase64Encoded": True}
    return {
        "statusCode": 201,
        "headers": {"X-Calls": calls},
        "body": json.dumps(event),
    }
"""


@pytest.fixture
def pool():
    executor = concurrent.futures.ThreadPoolExecutor(4)
    yield executor
    executor.shutdown(wait=False)


@pytest.fixture
def echo(tmp_path, pool) -> Function:
    spec = FunctionSpec(logical_id="CounterFunction", code=ECHO, timeout=0.5)
    return Function(spec, tmp_path, pool)


def gateway_of(template: dict, echo: Function, **options) -> Gateway:
    router = Router(template, parameters=options.pop("parameters", None))
    return Gateway(router, {"CounterFunction": echo}, options.pop("api", ApiInfo()), **options)


def error_of(answer) -> tuple[int, str, str]:
    return (
        answer.status,
        json.loads(answer.body)["message"],
        dict(answer.headers)["x-amzn-ErrorType"],
    )


def test_a_request_reaches_the_function_as_a_proxy_event_and_its_answer_comes_back(template, echo):
    gateway = gateway_of(template, echo)
    headers = [("Content-Type", "text/plain"), ("X-Trace", "a"), ("X-Trace", "b")]

    answer = gateway.handle("POST", "/a/b?x=1&x=2", headers, b"hi", "203.0.113.9")

    assert answer.status == 201
    event = json.loads(answer.body)
    assert (event["httpMethod"], event["path"], event["resource"]) == ("POST", "/a/b", "/{proxy+}")
    assert event["pathParameters"] == {"proxy": "a/b"}
    assert event["multiValueQueryStringParameters"] == {"x": ["1", "2"]}
    assert event["multiValueHeaders"]["X-Trace"] == ["a", "b"]
    assert (event["body"], event["isBase64Encoded"]) == ("hi", False)
    assert event["requestContext"]["identity"]["sourceIp"] == "203.0.113.9"
    answer_headers = dict(answer.headers)
    assert answer_headers["X-Calls"] == "1"
    assert answer_headers["x-amzn-RequestId"] == event["requestContext"]["requestId"]
    assert answer_headers["Content-Type"] == "application/json"  # API Gateway's default


@pytest.mark.parametrize("method", ["TRACE", "PROPFIND", "get"])
def test_a_method_api_gateway_does_not_serve_is_missing_authentication_token(
    template, echo, method
):
    gateway = gateway_of(template, echo)
    answer = gateway.handle(method, "/a", [], b"", "127.0.0.1")
    assert error_of(answer) == (
        403,
        "Missing Authentication Token",
        "MissingAuthenticationTokenException",
    )
    assert dict(gateway.handle("GET", "/a", [], b"", "127.0.0.1").headers)["X-Calls"] == "1"


@pytest.mark.parametrize(
    "do, expected, logged",
    [
        ("raise", (502, "Internal server error", "InternalServerErrorException"), "RuntimeError"),
        (
            "malformed",
            (502, "Internal server error", "InternalServerErrorException"),
            "Malformed Lambda proxy response: statusCode 'two hundred'",
        ),
        (
            "sleep",
            (504, "Endpoint request timed out", "InternalServerErrorException"),
            "Task timed out after 0.50 seconds",
        ),
    ],
)
def test_a_failing_function_is_api_gateways_error_with_one_log_line(
    template, echo, capsys, do, expected, logged
):
    answer = gateway_of(template, echo).handle("GET", f"/a?do={do}", [], b"", "127.0.0.1")
    assert error_of(answer) == expected
    err = capsys.readouterr().err
    assert dict(answer.headers)["x-amzn-RequestId"] in err and logged in err


def test_a_route_without_a_local_proxy_function_is_a_502(template, echo, capsys):
    mock = copy.deepcopy(template)
    mock["Resources"]["ProxyMethod"]["Properties"]["Integration"] = {"Type": "MOCK"}
    gateway = gateway_of(mock, echo)
    assert gateway.handle("GET", "/a", [], b"", "127.0.0.1").status == 502
    assert gateway.handle("GET", "/_stats", [], b"", "127.0.0.1").status == 502  # no function
    err = capsys.readouterr().err
    assert "ProxyMethod: only AWS_PROXY Lambda integrations run locally" in err
    assert "StatsMethod: only AWS_PROXY Lambda integrations run locally" in err
    assert gateway.handle("GET", "/", [], b"", "127.0.0.1").status == 201  # the root still runs


def test_binary_media_types_apply_to_the_request_body_and_the_accept_header(template, echo):
    api = ApiInfo(binary_media_types=("image/png",))
    gateway = gateway_of(template, echo, api=api)
    sent = gateway.handle("PUT", "/a", [("Content-Type", "image/png")], b"\xff\x00", "1.2.3.4")
    event = json.loads(sent.body)
    assert (event["body"], event["isBase64Encoded"]) == (
        base64.b64encode(b"\xff\x00").decode(),
        True,
    )

    png = gateway.handle("GET", "/a?do=png", [("Accept", "image/png")], b"", "127.0.0.1")
    assert (png.status, png.body) == (200, b"\x89PNG")
    text = gateway.handle("GET", "/a?do=png", [("Accept", "text/html")], b"", "127.0.0.1")
    assert text.body == base64.b64encode(b"\x89PNG")


def test_a_method_requiring_a_key_admits_only_a_key_of_the_stacks_plan(template, echo):
    moto_fidelity.apply()
    with mock_aws():
        apigw = boto3.client("apigateway", region_name="us-east-1")
        plan = apigw.create_usage_plan(name="route-counter")["id"]
        key = apigw.create_api_key(name="acme", enabled=True)
        apigw.create_usage_plan_key(usagePlanId=plan, keyId=key["id"], keyType="API_KEY")
        gateway = gateway_of(
            template,
            echo,
            parameters={"ClientIdentity": "apikey"},
            usage_plans=UsagePlans(apigw, [plan]),
        )

        refused = gateway.handle("GET", "/a", [("x-api-key", "guessed")], b"", "127.0.0.1")
        admitted = gateway.handle("GET", "/a", [("X-Api-Key", key["value"])], b"", "127.0.0.1")

    assert error_of(refused) == (403, "Forbidden", "ForbiddenException")
    assert admitted.status == 201
    assert dict(admitted.headers)["X-Calls"] == "1"  # the refused request never ran it
    identity = json.loads(admitted.body)["requestContext"]["identity"]
    assert (identity["apiKey"], identity["apiKeyId"]) == (key["value"], key["id"])
