"""Route Counter: count every request to the API, per route, in DynamoDB.

This file is deployed byte for byte as the function's inline code (index.py), so it
depends on nothing beyond the Lambda Python runtime (boto3).

The route rule: the request path relative to the stage, with empty segments folded,
so "/", "/a", "/a/b". "/a/", "//a" and "/a//" all count as "/a"; the query string is
never part of it. A path over 1024 UTF-8 bytes is refused (414), and so is one with
control characters (400). The stats route (STATS_ROUTE, e.g. "/_stats") and everything
under it is never counted (404): API Gateway sends it to the stats function.

Rate limiting (RATE_LIMIT > 0): at most RATE_LIMIT counted hits per route in each
fixed window of RATE_LIMIT_WINDOW_SECONDS aligned to the epoch; the window lives in
the route's own item (windowStart, windowCount). A hit over the limit gets 429 and
counts nothing. With RATE_LIMIT 0 a hit is one plain UpdateItem.
"""

import json
import math
import os
import re
import time

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

TABLE_NAME = os.environ.get("TABLE_NAME", "")
STATS_ROUTE = os.environ.get("STATS_ROUTE", "")
RATE_LIMIT = int(os.environ.get("RATE_LIMIT") or 0)
WINDOW = int(os.environ.get("RATE_LIMIT_WINDOW_SECONDS") or 60)
MAX_PATH_BYTES = 1024
CONTROL_CHARACTERS = re.compile("[\x00-\x1f\x7f-\x9f]")
ASCII_CONTROLS = bytes(range(32)) + b"\x7f"
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
        encoded = path.encode("utf-8")
    except UnicodeEncodeError:
        return None, (400, "path is not valid UTF-8")
    size = len(encoded)
    if size > MAX_PATH_BYTES:
        return None, (414, f"path is {size} bytes long; the limit is {MAX_PATH_BYTES}")
    # Both checks below are C-speed scans of the usual path, a hot spot for 1 KB paths.
    if path.isascii():  # O(1); then the only control characters are bytes 0-31 and 127
        clean = len(encoded.translate(None, ASCII_CONTROLS)) == size
    else:
        clean = path.isprintable() or not CONTROL_CHARACTERS.search(path)
    if not clean:
        return None, (400, "path contains control characters")
    if path.startswith("/") and "//" not in path and (path == "/" or path[-1] != "/"):
        return path, None  # already folded
    return "/" + "/".join(filter(None, path.split("/"))), None


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
    return record(route, item)


def record(route, item):
    return {
        "route": route,
        "count": int(item["count"]["N"]),
        "firstSeen": item["firstSeen"]["S"],
        "lastSeen": item["lastSeen"]["S"],
    }


# Count in the current window while under the limit; or start a new window with this hit.
COUNT_IN_WINDOW = (
    "ADD #count :one, windowCount :one SET lastSeen = :now, "
    "firstSeen = if_not_exists(firstSeen, :now)",
    "windowStart = :w AND windowCount < :limit",
)
START_WINDOW = (
    "ADD #count :one SET windowStart = :w, windowCount = :one, lastSeen = :now, "
    "firstSeen = if_not_exists(firstSeen, :now)",
    "attribute_not_exists(windowStart) OR windowStart < :w",
)


# The window this container last saw each route in. It only picks which update to try
# first, so that a hit costs one call whether it continues its route's window or starts a
# new one; a stale hint costs one more call, never a wrong count (the conditions decide).
window_hint = {}
WINDOW_HINT_ROUTES = 10_000  # beyond this many routes the hints start over: bounded memory


def count_limited(route, now):
    """Count the hit unless the route used up RATE_LIMIT in this window.

    Returns (status, body, headers). One UpdateItem when this container's hint for the
    route is right (served or refused); two when it is not, e.g. the first hit of a window
    that another container started; three only when a concurrent hit wins a race.
    The conditions make the limit exact however many hits race.
    """
    start = int(now // WINDOW * WINDOW)
    reset = str(max(1, math.ceil(start + WINDOW - now)))
    values = {":one": {"N": "1"}, ":now": {"S": iso(now)}, ":w": {"N": str(start)}}
    if window_hint.get(route) == start:
        attempts = (COUNT_IN_WINDOW, START_WINDOW, COUNT_IN_WINDOW)
    else:
        attempts = (START_WINDOW, COUNT_IN_WINDOW, START_WINDOW)
    if len(window_hint) >= WINDOW_HINT_ROUTES:
        window_hint.clear()
    for update, condition in attempts:
        limit = {":limit": {"N": str(RATE_LIMIT)}} if ":limit" in condition else {}
        try:
            item = dynamodb.update_item(
                TableName=TABLE_NAME,
                Key={"route": {"S": route}},
                UpdateExpression=update,
                ConditionExpression=condition,
                ExpressionAttributeNames={"#count": "count"},
                ExpressionAttributeValues={**values, **limit},
                ReturnValues="ALL_NEW",
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )["Attributes"]
        except dynamodb.exceptions.ConditionalCheckFailedException as error:
            old = error.response.get("Item") or {}
            old_start = int(old.get("windowStart", {}).get("N", -1))
            window_hint[route] = old_start
            if old_start >= start and int(old.get("windowCount", {}).get("N", 0)) >= RATE_LIMIT:
                headers = rate_headers(0, reset)
                message = f"rate limit of {RATE_LIMIT} hits per {WINDOW} s reached for {route}"
                return 429, {"error": message}, {**headers, "Retry-After": reset}
            continue
        window_hint[route] = start
        remaining = RATE_LIMIT - int(item["windowCount"]["N"])
        return 200, record(route, item), rate_headers(remaining, reset)
    # Only when the clocks of two containers straddle a window boundary.
    return 503, {"error": "the counter is busy, retry shortly"}, {"Retry-After": "1"}


def rate_headers(remaining, reset):
    return {
        "RateLimit-Limit": str(RATE_LIMIT),
        "RateLimit-Remaining": str(max(0, remaining)),
        "RateLimit-Reset": reset,
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


# Built once: json.dumps(default=...) would build a new encoder on every call.
LOG_ENCODER = json.JSONEncoder(default=str)


def log(**fields):
    # One JSON line per request; CloudWatch Logs Insights parses it without a pattern.
    print(LOG_ENCODER.encode(fields))


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
    elif STATS_ROUTE and (route == STATS_ROUTE or route.startswith(STATS_ROUTE + "/")):
        result = response(404, {"error": f"{STATS_ROUTE} is the stats endpoint; not counted"})
    elif method == "OPTIONS":
        result = response(204)
    else:
        try:
            if RATE_LIMIT > 0:
                status, body, headers = count_limited(route, time.time())
            else:
                status, body, headers = 200, count_hit(route, time.time()), None
            if status == 503:
                body["requestId"] = request_id
                line.update(level="WARN", error="window contended")
            result = response(status, body, headers)
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
