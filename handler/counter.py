"""Route Counter: count every request to the API, per route, in DynamoDB.

This file is deployed byte for byte as the function's inline code (index.py), so it
depends on nothing beyond the Lambda Python runtime (boto3).

The route rule: the request path relative to the stage, with empty segments folded,
so "/", "/a", "/a/b". "/a/", "//a" and "/a//" all count as "/a"; the query string is
never part of it. A path over 1024 UTF-8 bytes is refused (414), and so is one with
control characters (400).
"""

import json
import os
import re
import time

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

TABLE_NAME = os.environ.get("TABLE_NAME", "")
MAX_PATH_BYTES = 1024
CONTROL_CHARACTERS = re.compile("[\x00-\x1f\x7f-\x9f]")
THROTTLING_CODES = {
    "ProvisionedThroughputExceededException",
    "RequestLimitExceeded",
    "ThrottlingException",
}

# Created once per container. Short timeouts and three attempts in all keep the worst
# case (3 x 3 s plus backoff) well inside the function timeout, itself under API
# Gateway's 29 s, so a caller always gets our JSON answer rather than a gateway timeout.
dynamodb = boto3.client(
    "dynamodb",
    config=Config(
        connect_timeout=1,
        read_timeout=2,
        retries={"mode": "standard", "total_max_attempts": 3},
    ),
)


def route_of(path):
    """Return (route, None), or (None, (status, error)) when the path is not countable."""
    if not isinstance(path, str):
        return None, (400, "not an API Gateway proxy event: 'path' must be a string")
    try:
        size = len(path.encode("utf-8"))
    except UnicodeEncodeError:
        return None, (400, "path is not valid UTF-8")
    if size > MAX_PATH_BYTES:
        return None, (414, f"path is {size} bytes long; the limit is {MAX_PATH_BYTES}")
    if CONTROL_CHARACTERS.search(path):
        return None, (400, "path contains control characters")
    return "/" + "/".join(part for part in path.split("/") if part), None


def iso(epoch):
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


def count_hit(route, now):
    """Add one hit to the route's counter: one UpdateItem, atomic on the server."""
    item = dynamodb.update_item(
        TableName=TABLE_NAME,
        Key={"route": {"S": route}},
        UpdateExpression="ADD #count :one SET lastSeen = :now, "
        "firstSeen = if_not_exists(firstSeen, :now)",
        ExpressionAttributeNames={"#count": "count"},
        ExpressionAttributeValues={":one": {"N": "1"}, ":now": {"S": iso(now)}},
        ReturnValues="ALL_NEW",
    )["Attributes"]
    return {
        "route": route,
        "count": int(item["count"]["N"]),
        "firstSeen": item["firstSeen"]["S"],
        "lastSeen": item["lastSeen"]["S"],
    }


def response(status, body=None, headers=None):
    return {
        "statusCode": status,
        "headers": {
            "Content-Type": "application/json",
            "Cache-Control": "no-store",
            **(headers or {}),
        },
        "body": "" if body is None else json.dumps(body),
    }


def log(**fields):
    # One JSON line per request; CloudWatch Logs Insights parses it without a pattern.
    print(json.dumps(fields, default=str))


def handler(event, context):
    started = time.monotonic()
    request_id = getattr(context, "aws_request_id", None) or "-"
    event = event if isinstance(event, dict) else {}
    method = event.get("httpMethod")
    route, problem = route_of(event.get("path"))
    line = {"level": "INFO", "requestId": request_id, "method": method, "route": route}
    if not isinstance(method, str) or "requestContext" not in event:
        problem = (400, "not an API Gateway proxy event: expected 'httpMethod' and 'path'")
    if problem:
        result = response(problem[0], {"error": problem[1]})
    elif method == "OPTIONS":
        result = response(204)
    else:
        try:
            result = response(200, count_hit(route, time.time()))
        except (ClientError, BotoCoreError) as error:
            # Only a ClientError carries AWS's answer; a ReadTimeoutError's .response is None.
            answer = error.response.get("Error", {}) if isinstance(error, ClientError) else {}
            code = answer.get("Code") or type(error).__name__
            transient = code in THROTTLING_CODES or not isinstance(error, ClientError)
            status = 503 if transient else 500
            message = "the counter is busy, retry shortly" if transient else "counter unavailable"
            line.update(
                level="ERROR", error=type(error).__name__, errorCode=code, detail=str(error)
            )
            result = response(
                status,
                {"error": message, "requestId": request_id},
                {"Retry-After": "1"} if transient else None,
            )
    line.update(
        status=result["statusCode"], latencyMs=round((time.monotonic() - started) * 1000, 1)
    )
    log(**line)
    return result
