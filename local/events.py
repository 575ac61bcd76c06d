"""REST API proxy events (payload format 1.0) in, proxy responses out, as API Gateway does."""

from __future__ import annotations

import base64
import binascii
import json
import time
import uuid
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, urlencode

from local.router import Match, Router


@dataclass(frozen=True)
class ApiInfo:
    """What API Gateway knows about the API a request reaches."""

    api_id: str = "local"
    stage: str = "prod"
    account_id: str = "123456789012"
    resource_ids: dict[str, str] = field(default_factory=dict)  # resource path -> id
    binary_media_types: tuple[str, ...] = ()


@dataclass(frozen=True)
class ApiKeyUsed:
    """The API key a request was let through with: its id and its value."""

    id: str
    value: str


@dataclass
class HttpResponse:
    status: int
    headers: list[tuple[str, str]]
    body: bytes


class MalformedResponse(ValueError):
    """The function's answer is not a valid Lambda proxy response."""


# A REST API's BinaryMediaTypes, as API Gateway applies them to a Lambda proxy integration
# (the one place the local API emulates them; docs/backends.md, "Binary bodies"):
# - a request body goes to the function base64-encoded (isBase64Encoded true) only when its
#   Content-Type matches one of them; any other body is passed as UTF-8 text, so a byte
#   that is not UTF-8 is lost (each invalid sequence becomes U+FFFD);
# - a base64 answer (isBase64Encoded true) is decoded to bytes only when the request's
#   first Accept type matches one of them; otherwise the client gets the base64 text.
# `*/*` matches any type (none given included), `type/*` any subtype, `~1` stands for '/'.


def media_type_matches(value: str | None, binary_media_types: tuple[str, ...]) -> bool:
    """Whether a Content-Type, or an Accept header's first type, is one of BinaryMediaTypes."""
    mime = (value or "").split(",", 1)[0].split(";", 1)[0].strip().lower()
    for pattern in binary_media_types:
        pattern = pattern.replace("~1", "/").strip().lower()
        if pattern in ("*/*", mime) or (
            mime and pattern.endswith("/*") and mime.startswith(pattern[:-1])
        ):
            return True
    return False


def request_body(body: bytes, content_type: str | None, api: ApiInfo) -> tuple[str | None, bool]:
    """The event's body and isBase64Encoded for the request's bytes."""
    if not body:
        return None, False
    if media_type_matches(content_type, api.binary_media_types):
        return base64.b64encode(body).decode("ascii"), True
    return body.decode("utf-8", errors="replace"), False


def request_time(epoch: float) -> str:
    """API Gateway's requestTime: 28/Nov/2026:04:31:32 +0000."""
    return time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(epoch))


def build_event(
    *,
    method: str,
    target: str,
    headers: list[tuple[str, str]],
    body: bytes,
    match: Match,
    api: ApiInfo,
    source_ip: str,
    request_id: str | None = None,
    now: float | None = None,
    api_key: ApiKeyUsed | None = None,
    authorizer: dict | None = None,
) -> dict:
    """The event API Gateway sends a Lambda proxy integration for this HTTP request.

    api_key: the key API Gateway checked for a method with ApiKeyRequired (the event's
    identity then carries apiKey and apiKeyId); authorizer: the requestContext.authorizer
    an authorizer returned (its principalId and context).

    target is the request target as sent ("/a%20b/c?x=1&x=2"). Like API Gateway's REST
    API, `path` keeps the percent-encoding of the request while `pathParameters` and the
    query string parameters are decoded; the single-value maps keep the last value.
    """
    now = time.time() if now is None else now
    request_id = request_id or str(uuid.uuid4())
    path, _, query = target.partition("?")
    path = path or "/"

    single_headers: dict[str, str] = {}
    multi_headers: dict[str, list[str]] = {}
    for name, value in headers:
        single_headers[name] = value
        multi_headers.setdefault(name, []).append(value)
    lower = {k.lower(): v for k, v in single_headers.items()}
    trace_id = f"Root=1-{int(now):08x}-{uuid.uuid4().hex[:24]}"
    for name, value in (
        ("X-Amzn-Trace-Id", trace_id),
        ("X-Forwarded-For", source_ip),
        ("X-Forwarded-Port", (lower.get("host", "").rpartition(":")[2] or "80")),
        ("X-Forwarded-Proto", "http"),
    ):
        if name.lower() not in lower:
            single_headers[name] = value
            multi_headers[name] = [value]

    single_query: dict[str, str] = {}
    multi_query: dict[str, list[str]] = {}
    for key, value in parse_qsl(query, keep_blank_values=True):
        single_query[key] = value
        multi_query.setdefault(key, []).append(value)

    event_body, encoded = request_body(body, lower.get("content-type"), api)

    resource_path = match.resource.path
    return {
        "resource": resource_path,
        "path": path,
        "httpMethod": method,
        "headers": single_headers,
        "multiValueHeaders": multi_headers,
        "queryStringParameters": single_query or None,
        "multiValueQueryStringParameters": multi_query or None,
        "pathParameters": match.path_parameters or None,
        "stageVariables": None,
        "requestContext": {
            "resourceId": api.resource_ids.get(resource_path, "local"),
            "resourcePath": resource_path,
            "httpMethod": method,
            "extendedRequestId": request_id,
            "requestTime": request_time(now),
            "path": f"/{api.stage}{path}",
            "accountId": api.account_id,
            "protocol": "HTTP/1.1",
            "stage": api.stage,
            "domainPrefix": lower.get("host", "localhost").split(".", 1)[0],
            "requestTimeEpoch": int(now * 1000),
            "requestId": request_id,
            "identity": {
                "cognitoIdentityPoolId": None,
                "accountId": None,
                "cognitoIdentityId": None,
                "caller": None,
                "sourceIp": source_ip,
                "principalOrgId": None,
                "accessKey": None,
                "cognitoAuthenticationType": None,
                "cognitoAuthenticationProvider": None,
                "userArn": None,
                "userAgent": lower.get("user-agent"),
                "user": None,
                **({"apiKey": api_key.value, "apiKeyId": api_key.id} if api_key else {}),
            },
            **({"authorizer": authorizer} if authorizer is not None else {}),
            "domainName": lower.get("host", "localhost"),
            "apiId": api.api_id,
        },
        "body": event_body,
        "isBase64Encoded": encoded,
    }


def gateway_error(status: int, message: str, error_type: str, request_id: str) -> HttpResponse:
    """An answer API Gateway itself gives (the function is not involved or failed)."""
    return HttpResponse(
        status,
        [
            ("Content-Type", "application/json"),
            ("x-amzn-RequestId", request_id),
            ("x-amzn-ErrorType", error_type),
        ],
        json.dumps({"message": message}).encode(),
    )


def missing_authentication_token(request_id: str) -> HttpResponse:
    """API Gateway's answer when no resource and method match the request."""
    return gateway_error(
        403, "Missing Authentication Token", "MissingAuthenticationTokenException", request_id
    )


BAD_REQUEST_MESSAGES = {
    400: "Bad Request",
    408: "Request Timeout",
    431: "Request Header Fields Too Large",
}


def bad_request(status: int, request_id: str) -> HttpResponse:
    """The answer to a request that is not valid HTTP, or not one API Gateway accepts
    (a target that is not a path or not UTF-8, conflicting framing, a request too slow)."""
    message = BAD_REQUEST_MESSAGES.get(status, "Bad Request")
    return gateway_error(status, message, "BadRequestException", request_id)


def internal_server_error(request_id: str) -> HttpResponse:
    """API Gateway's answer to a function error or a malformed proxy response."""
    return gateway_error(502, "Internal server error", "InternalServerErrorException", request_id)


def endpoint_timeout(request_id: str) -> HttpResponse:
    """API Gateway's answer when the integration does not answer in time."""
    return gateway_error(
        504, "Endpoint request timed out", "InternalServerErrorException", request_id
    )


def _header_value(name: str, value: object) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if value is None or isinstance(value, (int, float, str)):
        return "" if value is None else str(value)
    raise MalformedResponse(f"header {name!r} has a {type(value).__name__} value")


# What a REST API does with these headers of a Lambda proxy answer (AWS's "important notes
# for REST APIs", as LocalStack's AWS-validated gateway applies them to proxy integrations):
# API Gateway writes its own Date, Server, Connection, Content-Length and x-amzn-RequestId,
# and hands the function's as x-amzn-Remapped-<Name>; it drops Transfer-Encoding.
REMAPPED_HEADERS = {
    name.lower(): name
    for name in ("Connection", "Content-Length", "Date", "Server", "x-amzn-RequestId")
}
DROPPED_HEADERS = {"transfer-encoding"}


def gateway_headers(headers: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """A Lambda proxy answer's headers as API Gateway sends them on: the ones it writes
    itself remapped to x-amzn-Remapped-<Name>, so each is sent once, and the dropped ones."""
    out = []
    for name, value in headers:
        key = name.lower()
        if key in REMAPPED_HEADERS:
            out.append((f"x-amzn-Remapped-{REMAPPED_HEADERS[key]}", value))
        elif key not in DROPPED_HEADERS:
            out.append((name, value))
    return out


def map_response(
    result: object,
    request_id: str,
    accept: str | None = None,
    binary_media_types: tuple[str, ...] = (),
) -> HttpResponse:
    """The HTTP answer API Gateway makes of a Lambda proxy response, for a request whose
    Accept header is `accept`, on an API with these BinaryMediaTypes.

    Raises MalformedResponse for what API Gateway rejects as "Malformed Lambda proxy
    response" (and answers 502).
    """
    if not isinstance(result, dict):
        raise MalformedResponse(f"the response is a {type(result).__name__}, not an object")
    status = result.get("statusCode")
    if isinstance(status, str) and status.isdigit():
        status = int(status)
    if isinstance(status, bool) or not isinstance(status, int) or not 100 <= status <= 599:
        raise MalformedResponse(f"statusCode {status!r} is not an HTTP status")
    headers = result.get("headers") or {}
    multi = result.get("multiValueHeaders") or {}
    if not isinstance(headers, dict) or not isinstance(multi, dict):
        raise MalformedResponse("headers and multiValueHeaders must be objects")
    merged: dict[str, list[str]] = {}
    for name, values in multi.items():
        if not isinstance(values, list):
            raise MalformedResponse(f"multiValueHeaders {name!r} is not a list")
        merged[name] = [_header_value(name, v) for v in values]
    for name, value in headers.items():  # merged; a pair given in both appears once
        values = merged.setdefault(name, [])
        if _header_value(name, value) not in values:
            values.append(_header_value(name, value))
    body = result.get("body")
    if body is not None and not isinstance(body, str):
        raise MalformedResponse(f"body is a {type(body).__name__}, not a string")
    encoded = result.get("isBase64Encoded", False)
    if not isinstance(encoded, bool):
        raise MalformedResponse("isBase64Encoded is not a boolean")
    if encoded and body and media_type_matches(accept or "*/*", binary_media_types):
        try:
            payload = base64.b64decode(body, validate=True)
        except (binascii.Error, ValueError) as error:
            raise MalformedResponse(f"body is not valid base64: {error}") from error
    else:
        payload = (body or "").encode("utf-8")
    out = gateway_headers([(name, value) for name, values in merged.items() for value in values])
    names = {name.lower() for name, _ in out}
    if "content-type" not in names:
        out.append(("Content-Type", "application/json"))
    out.append(("x-amzn-RequestId", request_id))
    return HttpResponse(status, out, payload)


def proxy_event(
    router: Router,
    path: str = "/",
    method: str = "GET",
    *,
    query: dict[str, str] | None = None,
    headers: dict[str, str] | None = None,
    body: str | None = None,
    api: ApiInfo | None = None,
    api_key: ApiKeyUsed | None = None,
    authorizer: dict | None = None,
) -> dict:
    """build_event for a request given by its parts, routed through the template's API.

    For tests and benchmarks that call a handler directly: the event is the one the local
    API would build for the same request (one builder for both).
    """
    match = router.match(method, path)
    if match is None:
        raise ValueError(f"no resource of the API matches {path!r}")
    target = path + ("?" + urlencode(query) if query else "")
    headers = headers or {"Accept": "*/*", "Host": "abc123.execute-api.us-east-1.amazonaws.com"}
    return build_event(
        method=method,
        target=target,
        headers=list(headers.items()),
        body=(body or "").encode(),
        match=match,
        api=api or ApiInfo(api_id="abc123"),
        source_ip="203.0.113.7",
        api_key=api_key,
        authorizer=authorizer,
    )
