"""Route Counter: count every request to the API, per route, in DynamoDB.

Deployed byte for byte as the function's inline code (index.py): nothing beyond the
Lambda Python runtime (boto3). The rules it implements (the route rule, the stats route
never counted, rate limiting) are in README.md, "The API".
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


MAX_PATH_BYTES = 1024
CONTROL_CHARACTERS = re.compile("[\x00-\x1f\x7f-\x9f]")
UNRESERVED = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
PATH_BYTES = bytes(UNRESERVED) + b"!$&'()*+,;=:@/"  # what a path holds unescaped
NOT_NORMAL = re.compile(r"%([0-9A-Fa-f]{2})|[^A-Za-z0-9\-._~!$&'()*+,;=:@/]")


def normal_escape(match):
    # An escape as RFC 3986 6.2.2 normalises it, or a character as RFC 3987 3.1 maps it
    if match[1]:
        byte = int(match[1], 16)
        return chr(byte) if byte in UNRESERVED else "%" + match[1].upper()
    return "".join(f"%{byte:02X}" for byte in match[0].encode())


def route_of(path):
    """(route, None) or (None, (status, error)): README.md's route rule."""
    if not isinstance(path, str):
        return None, (400, "not an API Gateway proxy event: 'path' must be a string")
    try:
        odd = path.encode().translate(None, PATH_BYTES)  # C speed: usually empty
    except UnicodeEncodeError:
        return None, (400, "path is not valid UTF-8")
    if odd:
        if CONTROL_CHARACTERS.search(path):
            return None, (400, "path contains control characters")
        path = NOT_NORMAL.sub(normal_escape, path)
    if not (path.startswith("/") and "//" not in path and (path == "/" or path[-1] != "/")):
        path = "/" + "/".join(filter(None, path.split("/")))
    if len(path) > MAX_PATH_BYTES:  # ASCII by now
        return None, (414, f"its route is {len(path)} bytes long; the limit is {MAX_PATH_BYTES}")
    return path, None


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

# What this container last saw of each route's window, by hash(route): (windowStart,
# windowCount, when, how many of those hits were its own). It only picks the update to try
# first: a wrong guess costs one more call, never a wrong count.
window_hint = {}
WINDOW_HINT_ROUTES = 10_000


def learn(key, start, count, now, counted):
    seen = window_hint.pop(key, None)  # re-inserted last: the dict's order is recency
    own = seen[3] if seen and seen[0] == start else 0
    if len(window_hint) >= WINDOW_HINT_ROUTES:
        for oldest in window_hint:  # forget the route seen longest ago
            window_hint.pop(oldest, None)  # (None: safe when the local stack runs threads)
            break
    window_hint[key] = (start, count, now, own + counted)


def first_update(seen, start, now):
    """Guess whether another hit already started this window."""
    if seen is None:
        return START_WINDOW
    seen_start, seen_count, seen_at, own = seen
    if seen_start >= start:
        return COUNT_IN_WINDOW  # the window is running
    if own == seen_count:
        return START_WINDOW  # this container served all of the route's last window
    if seen_count >= RATE_LIMIT:
        return COUNT_IN_WINDOW  # a route shared and crowded: its window starts early
    # Shared: the route's rate in that window (Poisson estimate (n - 1) / t) makes a hit
    # since this window's start likelier than not (1 - exp(-rate x elapsed) > 1/2)?
    started = (seen_count - 1) * (now - start) > 0.69 * (seen_at - seen_start)
    return COUNT_IN_WINDOW if started else START_WINDOW


def count_limited(route, now):
    """Count the hit unless the route used up RATE_LIMIT in its window: (status, body, headers).

    A failed try returns the item, which says what to try next; the conditions keep the
    limit exact, and the item's window is the truth, even for a clock that lags behind it.
    """
    key, start = hash(route), int(now // WINDOW * WINDOW)
    seen = window_hint.get(key)
    window = max(start, seen[0]) if seen else start
    update, condition = first_update(seen, start, now)
    for _ in range(3):
        values = {":one": {"N": "1"}, ":now": {"S": iso(now)}, ":w": {"N": str(window)}}
        if ":limit" in condition:
            values[":limit"] = {"N": str(RATE_LIMIT)}
        try:
            item = dynamodb.update_item(
                TableName=TABLE_NAME,
                Key={"route": {"S": route}},
                UpdateExpression=update,
                ConditionExpression=condition,
                ExpressionAttributeNames={"#count": "count"},
                ExpressionAttributeValues=values,
                ReturnValues="ALL_NEW",
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )["Attributes"]
        except dynamodb.exceptions.ConditionalCheckFailedException as error:
            old = error.response.get("Item") or {}
            window = int(old.get("windowStart", {}).get("N", -1))
            count = int(old.get("windowCount", {}).get("N", 0))
            learn(key, window, count, now, False)
            if window < start:
                window, (update, condition) = start, START_WINDOW
            elif count < RATE_LIMIT:
                update, condition = COUNT_IN_WINDOW
            else:
                headers = rate_headers(RATE_LIMIT, window, now)
                headers["Retry-After"] = headers["RateLimit-Reset"]
                message = f"rate limit of {RATE_LIMIT} hits per {WINDOW} s reached for {route}"
                return 429, {"error": message}, headers
            continue
        count = int(item["windowCount"]["N"])
        learn(key, window, count, now, True)
        return 200, record(route, item), rate_headers(count, window, now)
    # Only when the window moves under every try: clocks straddling a window's boundary.
    return 503, {"error": "the counter is busy, retry shortly"}, {"Retry-After": "1"}


def rate_headers(count, window, now):
    # The next grid boundary: a window stored before WINDOW changed may be off the grid.
    reset = max(1, math.ceil((window // WINDOW + 1) * WINDOW - now))
    return {
        "RateLimit-Limit": str(RATE_LIMIT),
        "RateLimit-Remaining": str(max(0, RATE_LIMIT - count)),
        "RateLimit-Reset": str(reset),
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
