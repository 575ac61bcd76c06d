"""The local API behaves as API Gateway towards functions and clients, over real sockets.

A test-only template (the generated one plus a few functions whose inline code echoes the
event, fails, answers malformed or too late) is served by `python -m local --template`,
so every request takes the real path: socket, router, event, function, response mapping.
"""

import base64
import copy
import http.client
import json
import urllib.request

import pytest
from aws_lambda_powertools.utilities.parser.models import APIGatewayProxyEventModel

from tests.conftest import local_stack

ECHO = """\
import json
import os

def handler(event, context):
    seen = {
        "event": event,
        "context": {
            "function_name": context.function_name,
            "memory_limit_in_mb": context.memory_limit_in_mb,
            "remaining_ms": context.get_remaining_time_in_millis(),
            "aws_request_id": context.aws_request_id,
            "invoked_function_arn": context.invoked_function_arn,
        },
        "table_name": os.environ.get("TABLE_NAME"),
    }
    return {
        "statusCode": 201,
        "headers": {"Content-Type": "application/json", "X-Echo": "yes"},
        "multiValueHeaders": {"Set-Cookie": ["a=1", "b=2"]},
        "body": json.dumps(seen),
    }
"""
PNG = b"\x89PNG\r\n\x1a\n\x00\x01"
IMAGE = f"""\
import base64

def handler(event, context):
    body = base64.b64encode({PNG!r}).decode()
    return {{"statusCode": 200, "headers": {{"Content-Type": "image/png"}},
            "body": body, "isBase64Encoded": True}}
"""
MALFORMED = """\
def handler(event, context):
    return {"statusCode": 200, "body": {"not": "a string"}}
"""
FAILING = """\
def handler(event, context):
    raise RuntimeError("the handler broke on purpose")
"""
SLOW = """\
import time

def handler(event, context):
    time.sleep(3)
    return {"statusCode": 200, "body": "too late"}
"""


def add_function(resources: dict, name: str, path_part: str, code: str, method="ANY") -> None:
    """A function behind /<path_part>, built like the counter (role, env, log group)."""
    function = copy.deepcopy(resources["CounterFunction"])
    function["Properties"]["Code"] = {"ZipFile": code}
    function["Properties"]["Timeout"] = 1
    resources[f"{name}Function"] = function
    resources[f"{name}Resource"] = {
        "Type": "AWS::ApiGateway::Resource",
        "Properties": {
            "RestApiId": {"Ref": "CounterApi"},
            "ParentId": {"Fn::GetAtt": ["CounterApi", "RootResourceId"]},
            "PathPart": path_part,
        },
    }
    method_resource = copy.deepcopy(resources["ProxyMethod"])
    method_resource["Properties"]["ResourceId"] = {"Ref": f"{name}Resource"}
    method_resource["Properties"]["HttpMethod"] = method
    uri = method_resource["Properties"]["Integration"]["Uri"]["Fn::Sub"]
    uri[1]["FunctionArn"] = {"Fn::GetAtt": [f"{name}Function", "Arn"]}
    resources[f"{name}Method"] = method_resource


@pytest.fixture(scope="module")
def stack(template, tmp_path_factory):
    test_template = copy.deepcopy(template)
    resources = test_template["Resources"]
    add_function(resources, "Echo", "echo", ECHO)
    add_function(resources, "Report", "_report", ECHO, method="GET")
    add_function(resources, "Image", "image", IMAGE)
    add_function(resources, "Malformed", "malformed", MALFORMED)
    add_function(resources, "Failing", "failing", FAILING)
    add_function(resources, "Slow", "slow", SLOW)
    resources["CounterApi"]["Properties"]["BinaryMediaTypes"] = ["image/png"]
    tmp = tmp_path_factory.mktemp("local-api")
    path = tmp / "template.json"
    path.write_text(json.dumps(test_template))
    with local_stack(tmp, "--template", str(path), "--param", "StageName=dev") as running:
        yield running


@pytest.mark.parametrize("path", ["/" * 1500 + "echo", "//echo", "/echo//"])
def test_the_path_reaches_the_function_as_sent(stack, path):
    """No slash folded on the way: API Gateway routes //echo to /echo but passes the path."""
    connection = http.client.HTTPConnection("127.0.0.1", stack.port, timeout=20)
    try:
        connection.request("GET", path)
        answer = connection.getresponse()
        status, body = answer.status, answer.read()
    finally:
        connection.close()

    assert status == 201, body
    assert json.loads(body)["event"]["path"] == path


def request(url: str, method="GET", body=None, headers=()):
    req = urllib.request.Request(url, data=body, method=method)
    for name, value in headers:
        req.add_header(name, value)
    try:
        with urllib.request.urlopen(req, timeout=20) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers, error.read()


def test_post_with_body_query_and_headers_reaches_the_function_as_api_gateway_passes_it(stack):
    status, headers, body = request(
        stack.url + "/echo?tag=a&tag=b&q=caf%C3%A9",
        "POST",
        b'{"hello": "world"}',
        [("Content-Type", "application/json"), ("X-Trace", "t-1")],
    )

    assert status == 201
    assert headers["X-Echo"] == "yes"
    assert headers.get_all("Set-Cookie") == ["a=1", "b=2"]
    seen = json.loads(body)
    event = seen["event"]
    APIGatewayProxyEventModel.model_validate(event)
    assert event["resource"] == "/echo"
    assert event["path"] == "/echo"
    assert event["httpMethod"] == "POST"
    assert event["body"] == '{"hello": "world"}'
    assert event["isBase64Encoded"] is False
    assert event["queryStringParameters"] == {"tag": "b", "q": "café"}
    assert event["multiValueQueryStringParameters"] == {"tag": ["a", "b"], "q": ["café"]}
    assert event["headers"]["X-Trace"] == "t-1"
    assert event["multiValueHeaders"]["Content-Type"] == ["application/json"]
    assert event["pathParameters"] is None
    assert event["requestContext"]["stage"] == "dev"
    assert event["requestContext"]["path"] == "/dev/echo"
    assert event["requestContext"]["identity"]["sourceIp"] == "127.0.0.1"
    assert event["requestContext"]["requestId"] == seen["context"]["aws_request_id"]
    assert headers["x-amzn-RequestId"] == seen["context"]["aws_request_id"]


def test_the_function_gets_its_configuration_from_the_deployed_stack(stack):
    seen = json.loads(request(stack.url + "/echo")[2])

    assert seen["table_name"].startswith("route-counter-CounterTable-")
    assert seen["context"]["function_name"].startswith("route-counter-EchoFunction-")
    assert seen["context"]["invoked_function_arn"].startswith("arn:aws:lambda:")
    assert seen["context"]["memory_limit_in_mb"] == 256
    assert 0 < seen["context"]["remaining_ms"] <= 1000


def test_chunked_upload_reaches_the_function_whole(stack):
    parts = iter([b'{"part": ', b'"one", ', b'"more": true}'])  # no length: sent chunked

    _, _, body = request(stack.url + "/echo", "POST", parts, [("Content-Type", "text/plain")])

    event = json.loads(body)["event"]
    assert event["headers"]["Transfer-Encoding"] == "chunked"
    assert event["body"] == '{"part": "one", "more": true}'


def test_binary_body_of_a_binary_media_type_reaches_the_function_base64_encoded(stack):
    raw = bytes(range(256))

    _, _, body = request(stack.url + "/echo", "PUT", raw, [("Content-Type", "image/png")])

    event = json.loads(body)["event"]
    assert event["isBase64Encoded"] is True
    assert base64.b64decode(event["body"]) == raw


def test_binary_body_of_another_type_reaches_the_function_mangled_as_on_aws(stack):
    raw = bytes(range(256))

    _, _, body = request(stack.url + "/echo", "PUT", raw, [("Content-Type", "image/jpeg")])

    event = json.loads(body)["event"]
    assert event["isBase64Encoded"] is False
    assert event["body"] == raw.decode("utf-8", errors="replace")


def test_base64_answer_reaches_a_client_accepting_a_binary_type_as_bytes(stack):
    status, headers, body = request(stack.url + "/image", headers=[("Accept", "image/png")])

    assert status == 200
    assert headers["Content-Type"] == "image/png"
    assert body == PNG


def test_base64_answer_reaches_a_client_accepting_anything_as_base64_text(stack):
    _, _, body = request(stack.url + "/image", headers=[("Accept", "*/*")])

    assert body == base64.b64encode(PNG)


def test_specific_resource_beats_the_greedy_proxy(stack):
    report = json.loads(request(stack.url + "/_report")[2])
    status, _, counted = request(stack.url + "/_report/deeper")

    assert report["event"]["resource"] == "/_report"
    assert report["context"]["function_name"].startswith("route-counter-ReportFunction-")
    assert status == 200
    assert json.loads(counted)["route"] == "/_report/deeper"  # the counter, via {proxy+}


def test_a_method_the_resource_does_not_define_answers_missing_authentication_token(stack):
    status, headers, body = request(stack.url + "/_report", "POST", b"{}")

    assert status == 403
    assert json.loads(body) == {"message": "Missing Authentication Token"}
    assert headers["Content-Type"] == "application/json"


def test_malformed_proxy_response_answers_502_and_says_why_in_the_terminal(stack):
    status, _, body = request(stack.url + "/malformed")

    assert status == 502
    assert json.loads(body) == {"message": "Internal server error"}
    assert "Malformed Lambda proxy response" in stack.output.read_text()


def test_handler_exception_answers_502_with_the_traceback_in_the_terminal(stack):
    status, _, body = request(stack.url + "/failing")

    assert status == 502
    assert json.loads(body) == {"message": "Internal server error"}
    log = stack.output.read_text()
    assert "Traceback" in log
    assert "RuntimeError: the handler broke on purpose" in log


def test_handler_past_its_timeout_answers_504(stack):
    status, _, body = request(stack.url + "/slow")

    assert status == 504
    assert json.loads(body) == {"message": "Endpoint request timed out"}
    assert "Task timed out after 1.00 seconds" in stack.output.read_text()
