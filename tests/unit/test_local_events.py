"""The local API hands functions the REST proxy event API Gateway builds, and maps answers back."""

import base64
import json

import pytest
from aws_lambda_powertools.utilities.parser.models import APIGatewayProxyEventModel

from local.events import (
    ApiInfo,
    MalformedResponse,
    build_event,
    endpoint_timeout,
    internal_server_error,
    map_response,
    missing_authentication_token,
)
from local.router import Router

API = ApiInfo(api_id="a1b2c3", stage="prod", resource_ids={"/": "root1", "/{proxy+}": "prx1"})
CURL = [("Host", "127.0.0.1:3000"), ("User-Agent", "curl/8.5.0"), ("Accept", "*/*")]


@pytest.fixture(scope="module")
def router(template):
    return Router(template)


def event_for(router, method="GET", target="/", headers=CURL, body=b"", api=API) -> dict:
    """Build the event and check it is a valid REST proxy event for powertools' parser."""
    match = router.match(method, target.partition("?")[0])
    event = build_event(
        method=method,
        target=target,
        headers=list(headers),
        body=body,
        match=match,
        api=api,
        source_ip="127.0.0.1",
        now=1_764_300_000.5,
    )
    APIGatewayProxyEventModel.model_validate(event)
    json.dumps(event)  # what Lambda passes is JSON
    return event


def test_root_get_has_api_gateway_shape(router):
    event = event_for(router)

    assert event["resource"] == "/"
    assert event["path"] == "/"
    assert event["httpMethod"] == "GET"
    assert event["pathParameters"] is None
    assert event["queryStringParameters"] is None
    assert event["multiValueQueryStringParameters"] is None
    assert event["stageVariables"] is None
    assert event["body"] is None
    assert event["isBase64Encoded"] is False
    context = event["requestContext"]
    assert context["path"] == "/prod/"
    assert context["stage"] == "prod"
    assert context["resourcePath"] == "/"
    assert context["resourceId"] == "root1"
    assert context["apiId"] == "a1b2c3"
    assert context["httpMethod"] == "GET"
    assert context["identity"]["sourceIp"] == "127.0.0.1"
    assert context["identity"]["userAgent"] == "curl/8.5.0"
    assert context["requestTimeEpoch"] == 1_764_300_000_500
    assert context["requestTime"] == "28/Nov/2025:03:20:00 +0000"
    assert context["domainName"] == "127.0.0.1:3000"
    assert context["protocol"] == "HTTP/1.1"
    assert context["requestId"]


def test_nested_path_keeps_its_encoding_and_the_proxy_parameter_is_decoded(router):
    event = event_for(router, target="/a/b%20c/caf%C3%A9")

    assert event["resource"] == "/{proxy+}"
    assert event["path"] == "/a/b%20c/caf%C3%A9"
    assert event["pathParameters"] == {"proxy": "a/b c/café"}
    assert event["requestContext"]["path"] == "/prod/a/b%20c/caf%C3%A9"
    assert event["requestContext"]["resourceId"] == "prx1"


def test_repeated_query_parameters_keep_the_last_value_and_all_values(router):
    event = event_for(router, target="/search?tag=a&tag=b&q=caf%C3%A9+au+lait&empty=")

    assert event["path"] == "/search"
    assert event["queryStringParameters"] == {"tag": "b", "q": "café au lait", "empty": ""}
    assert event["multiValueQueryStringParameters"] == {
        "tag": ["a", "b"],
        "q": ["café au lait"],
        "empty": [""],
    }


def test_repeated_headers_keep_the_last_value_and_all_values(router):
    headers = [*CURL, ("X-Tag", "one"), ("X-Tag", "two")]

    event = event_for(router, headers=headers)

    assert event["headers"]["X-Tag"] == "two"
    assert event["multiValueHeaders"]["X-Tag"] == ["one", "two"]
    assert event["headers"]["User-Agent"] == "curl/8.5.0"
    assert event["headers"]["X-Forwarded-For"] == "127.0.0.1"
    assert event["headers"]["X-Forwarded-Proto"] == "http"
    assert event["multiValueHeaders"]["X-Forwarded-Port"] == ["3000"]


def test_text_body_is_passed_as_text(router):
    body = json.dumps({"name": "café"}).encode()

    event = event_for(router, "POST", "/items", [*CURL, ("Content-Type", "application/json")], body)

    assert event["httpMethod"] == "POST"
    assert event["body"] == '{"name": "caf\\u00e9"}'
    assert event["isBase64Encoded"] is False


PNG_BYTES = b"\x89PNG\r\n\x1a\n"


def upload(router, types: tuple[str, ...], content_type: str | None) -> dict:
    """The event of a PNG uploaded with this Content-Type to an API with these types."""
    headers = [*CURL, ("Content-Type", content_type)] if content_type else CURL
    api = ApiInfo(binary_media_types=types)
    return event_for(router, "PUT", "/upload", headers, PNG_BYTES, api)


@pytest.mark.parametrize(
    ("types", "content_type"),
    [
        (("image/png",), "image/png"),
        (("image/*",), "image/png; q=1"),
        (("*/*",), "image/png"),
        (("*/*",), None),
        (("application~1octet-stream",), "application/octet-stream"),
    ],
)
def test_a_body_whose_type_is_a_binary_media_type_is_base64_encoded(router, types, content_type):
    event = upload(router, types, content_type)

    assert event["isBase64Encoded"] is True
    assert base64.b64decode(event["body"]) == PNG_BYTES


@pytest.mark.parametrize(
    ("types", "content_type"),
    [((), "image/png"), (("image/jpeg",), "image/png"), (("image/png",), None)],
)
def test_any_other_body_is_passed_as_utf8_text_and_its_other_bytes_are_lost(
    router, types, content_type
):
    """As API Gateway does: a binary upload without a matching BinaryMediaTypes arrives
    mangled, so a local test cannot pass where AWS would corrupt the body."""
    event = upload(router, types, content_type)

    assert event["isBase64Encoded"] is False
    assert event["body"] == "\ufffdPNG\r\n\x1a\n"
    assert event["body"].encode() != PNG_BYTES


def test_proxy_response_maps_status_headers_and_body():
    response = map_response(
        {
            "statusCode": 201,
            "headers": {"Content-Type": "text/plain", "X-One": 1},
            "multiValueHeaders": {"Set-Cookie": ["a=1", "b=2"]},
            "body": "created",
        },
        "req-1",
    )

    assert response.status == 201
    assert ("Content-Type", "text/plain") in response.headers
    assert ("X-One", "1") in response.headers
    assert [v for k, v in response.headers if k == "Set-Cookie"] == ["a=1", "b=2"]
    assert ("x-amzn-RequestId", "req-1") in response.headers
    assert response.body == b"created"


def test_headers_api_gateway_writes_itself_are_remapped_and_transfer_encoding_dropped():
    """A function's (a forwarded backend's) Date, Server, Connection, Content-Length and
    x-amzn-RequestId reach the client as x-amzn-Remapped-<Name>, as on AWS: the gateway's
    own are sent once; Transfer-Encoding is dropped."""
    backend_date = "Mon, 07 Dec 2026 23:59:59 GMT"
    response = map_response(
        {
            "statusCode": 200,
            "headers": {
                "date": backend_date,
                "Server": "nginx",
                "Connection": "keep-alive",
                "Content-Length": "999",
                "X-Amzn-RequestId": "backend-request",
                "Transfer-Encoding": "chunked",
                "X-Route-Count": "7",
            },
            "body": "hello",
        },
        "req-1",
    )

    assert response.headers == [
        ("x-amzn-Remapped-Date", backend_date),
        ("x-amzn-Remapped-Server", "nginx"),
        ("x-amzn-Remapped-Connection", "keep-alive"),
        ("x-amzn-Remapped-Content-Length", "999"),
        ("x-amzn-Remapped-x-amzn-RequestId", "backend-request"),
        ("X-Route-Count", "7"),
        ("Content-Type", "application/json"),
        ("x-amzn-RequestId", "req-1"),
    ]


def test_base64_response_body_is_decoded_and_content_type_defaults_to_json():
    png = b"\x89PNG\r\n\x1a\n\x00"
    answer = {"statusCode": 200, "body": base64.b64encode(png).decode(), "isBase64Encoded": True}

    binary = map_response(answer, "r", "image/png, */*", ("image/png",))
    empty = map_response({"statusCode": 204}, "r")

    assert binary.body == png
    assert ("Content-Type", "application/json") in empty.headers
    assert empty.body == b""


@pytest.mark.parametrize(
    ("accept", "types", "decoded"),
    [
        ("image/png", ("image/png",), True),
        ("image/png, text/html", ("image/*",), True),
        ("text/html, image/png", ("image/png",), False),  # only the first Accept type counts
        ("*/*", ("image/png",), False),
        (None, ("image/png",), False),
        (None, ("*/*",), True),
        ("text/html", ("*/*",), True),
        ("image/png", (), False),
    ],
)
def test_a_base64_answer_is_decoded_only_for_a_first_accept_type_that_is_binary(
    accept, types, decoded
):
    png = b"\x89PNG\r\n\x1a\n\x00"
    text = base64.b64encode(png).decode()
    answer = {"statusCode": 200, "body": text, "isBase64Encoded": True}

    response = map_response(answer, "r", accept, types)

    assert response.body == (png if decoded else text.encode())


@pytest.mark.parametrize(
    "result",
    [
        None,
        "hello",
        {"body": "no status"},
        {"statusCode": "two hundred"},
        {"statusCode": 200, "body": {"not": "a string"}},
        {"statusCode": 200, "headers": ["X-A", "1"]},
        {"statusCode": 200, "multiValueHeaders": {"X-A": "1"}},
        {"statusCode": 200, "isBase64Encoded": True, "body": "not base64!"},
    ],
)
def test_malformed_proxy_responses_are_refused(result):
    with pytest.raises(MalformedResponse):
        map_response(result, "r", "*/*", ("*/*",))


@pytest.mark.parametrize(
    ("answer", "status", "message"),
    [
        (missing_authentication_token, 403, "Missing Authentication Token"),
        (internal_server_error, 502, "Internal server error"),
        (endpoint_timeout, 504, "Endpoint request timed out"),
    ],
)
def test_gateway_errors_answer_as_api_gateway(answer, status, message):
    response = answer("req-9")

    assert response.status == status
    assert json.loads(response.body) == {"message": message}
    assert ("x-amzn-RequestId", "req-9") in response.headers
