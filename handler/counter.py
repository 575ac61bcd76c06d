"""Route Counter: count every request, per route, in DynamoDB (README.md, "The API")."""

import json
import math
import os
import random
import re
import time
import uuid

import boto3
from botocore import exceptions as aws
from botocore.config import Config

TABLE_NAME = os.environ.get("TABLE_NAME", "")
STATS_ROUTE = os.environ.get("STATS_ROUTE", "")
RATE_LIMIT = int(os.environ.get("RATE_LIMIT") or 0)
WINDOW = int(os.environ.get("RATE_LIMIT_WINDOW_SECONDS") or 60)
ROUTE_TEMPLATES = os.environ.get("ROUTE_TEMPLATES", "")
UNMATCHED_ROUTE = os.environ.get("UNMATCHED_ROUTE") or "self"
MAX_ROUTES = int(os.environ.get("MAX_ROUTES") or 0)
SERIES_TABLE = os.environ.get("SERIES_TABLE", "")
THROTTLING_CODES = {
    "ProvisionedThroughputExceededException",
    "RequestLimitExceeded",
    "ThrottlingException",
}
# ADD is not idempotent: write() retries only what AWS never applied (README, "At most once").
NOT_SENT = (aws.EndpointConnectionError, aws.ConnectTimeoutError)
SENT = (aws.HTTPClientError, aws.ConnectionError)
ATTEMPTS = 3
RETRY_SECONDS = 4  # no retry starts later: 7 s at worst (+ 1 s connect, 2 s read)
BUSY = (503, "the counter is busy, retry shortly", {"Retry-After": "1"}, "not counted")
UNKNOWN = (503, "the hit may have been counted", None, "unknown")
BROKEN = (500, "counter unavailable", None, "not counted")


class NoClient:
    """Stands in for a client the SDK could not build: each write raises why."""

    def __init__(self, error):
        self.error = error

    def update_item(self, **_):
        raise self.error


# Created once per container. No SDK retries: see write().
try:
    dynamodb = boto3.client(
        "dynamodb",
        config=Config(
            connect_timeout=1,
            read_timeout=2,
            retries={"mode": "standard", "total_max_attempts": 1},
        ),
    )
except aws.NoRegionError as error:  # never on Lambda (AWS_REGION): a 500 per hit, no crash
    dynamodb = NoClient(error)


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


# RouteTemplates (docs/routes.md): "/users/{id}" names every "/users/<one segment>";
# "/files/{path+}", as a last segment, every "/files/<one or more segments>".
TEMPLATE_PARAMETER = re.compile(r"\{[A-Za-z0-9._~-]+(\+?)\}")


def template_pattern(template):
    """(regular expression, segments, greedy) of a template, or None if it is not one."""
    if template == "/":
        return "/", 0, False
    segments = template.split("/")[1:] if template.startswith("/") else [""]
    parts, greedy = [], False
    for at, segment in enumerate(segments, 1):
        parameter = TEMPLATE_PARAMETER.fullmatch(segment)
        if parameter and parameter[1] and at == len(segments):
            parts.append("(?:/[^/]+)+")
            greedy = True
        elif parameter and not parameter[1]:
            parts.append("/[^/]+")
        elif (
            segment in ("", ".", "..")
            or "," in segment
            or route_of("/" + segment)[0] != ("/" + segment)
        ):
            return None  # a literal must be written as route_of writes it: never matched
        else:
            parts.append("/" + re.escape(segment))
    return "".join(parts), len(segments), greedy


class RouteTemplates:
    """The templates in their order, compiled once per container: named(route) is the first
    one the route matches. Matchers are built when a route with a new count of segments
    first comes: for each literal first segment, one regular expression of the templates
    that can match a route so led (that literal, or a parameter, first); one more for a
    first segment no template spells. So one fullmatch per hit against a few templates."""

    def __init__(self, text):
        self.templates, self.refused, self.by_segments = [], [], {}
        for template in filter(None, (t.strip() for t in text.split(","))):
            pattern = template_pattern(template)
            if pattern:
                self.templates.append((template, *pattern))
            else:
                self.refused.append(template)

    def matchers(self, count):
        """{first segment: (regex, templates)}, and the one for any other first segment."""
        fitting = [
            (template, pattern, template.split("/")[1])
            for template, pattern, segments, greedy in self.templates
            if segments == count or (greedy and count >= segments)
        ]

        def matcher(first):
            chosen = [(t, p) for t, p, f in fitting if f == first or f.startswith("{")]
            # One group per template, no other: lastindex says which matched
            regex = re.compile("|".join(f"({p})" for _, p in chosen)) if chosen else None
            return regex, [t for t, _ in chosen]

        firsts = {f for _, _, f in fitting if not f.startswith("{")}
        return {first: matcher(first) for first in firsts}, matcher(None)

    def named(self, route):
        count = route.count("/") if route != "/" else 0
        if count not in self.by_segments:
            self.by_segments[count] = self.matchers(count)
        by_first, other = self.by_segments[count]
        regex, names = by_first.get(route.split("/", 2)[1], other)
        found = regex and regex.fullmatch(route)
        return names[found.lastindex - 1] if found else None


TEMPLATES = RouteTemplates(ROUTE_TEMPLATES)


def named_route(route):
    """The route a hit counts under: the first template it matches; else itself, or
    UnmatchedRoutes' one route. Without RouteTemplates, itself."""
    if not TEMPLATES.templates:
        return route
    return TEMPLATES.named(route) or (route if UNMATCHED_ROUTE == "self" else UNMATCHED_ROUTE)


class HttpError(Exception):
    """Any answer but 2xx: answered and logged in handler()."""

    def __init__(self, status, message, headers=None, outcome=None, **log):
        self.status, self.message, self.headers = status, message, headers
        self.log = {"outcome": outcome, **log}


class AnswerCutOff(Exception):
    """DynamoDB's answer arrived without its body."""


def write(deadline, **params):
    """One UpdateItem; the item as it is now (ALL_NEW)."""
    for attempt in range(1, ATTEMPTS + 1):
        try:
            answer = dynamodb.update_item(
                TableName=TABLE_NAME,
                ExpressionAttributeNames={"#count": "count"},
                ReturnValues="ALL_NEW",
                **params,
            )
            if "Attributes" in answer:
                return answer["Attributes"]
            # A 200 whose body was cut off: botocore reads it without checking its length
            # and parses nothing. The write was sent and may have been applied.
            fault, code, kind = AnswerCutOff("UpdateItem answered without the item"), None, UNKNOWN
        except aws.ClientError as error:
            fault, code = error, error.response["Error"].get("Code")
            if code == "ConditionalCheckFailedException":
                raise
            status = error.response["ResponseMetadata"]["HTTPStatusCode"]
            kind = BUSY if code in THROTTLING_CODES else UNKNOWN if status >= 500 else BROKEN
        except NOT_SENT as error:
            fault, code, kind = error, None, BUSY
        except SENT as error:
            fault, code, kind = error, None, UNKNOWN
        except aws.BotoCoreError as error:  # never sent: no credentials, bad input
            fault, code, kind = error, None, BROKEN
        delay = random.random() * 0.05 * 4**attempt  # noqa: S311 (jitter)
        if kind is not BUSY or attempt == ATTEMPTS or time.monotonic() + delay > deadline:
            name = type(fault).__name__
            raise HttpError(*kind, error=name, errorCode=code or name, detail=str(fault))
        time.sleep(delay)


def iso(epoch):
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


def count_hit(route, now, deadline, must_exist=False):
    """Add one hit to the route's counter: one UpdateItem, atomic on the server."""
    item = write(
        deadline,
        Key={"route": {"S": route}},
        UpdateExpression="ADD #count :one SET lastSeen = :now, "
        "firstSeen = if_not_exists(firstSeen, :now)",
        ExpressionAttributeValues={":one": {"N": "1"}, ":now": {"S": iso(now)}},
        **({"ConditionExpression": EXISTING} if must_exist else {}),
    )
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

# hash(route): (windowStart, windowCount, when, own hits), as this container last saw them.
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
    # Shared: a hit since the window began likelier than not, at rate (n - 1) / t (Poisson)?
    started = (seen_count - 1) * (now - start) > 0.69 * (seen_at - seen_start)
    return COUNT_IN_WINDOW if started else START_WINDOW


def count_limited(route, now, deadline, must_exist=False):
    """Count the hit, unless the route used up RATE_LIMIT in its window: (body, headers)."""
    key, start = hash(route), int(now // WINDOW * WINDOW)
    seen = window_hint.get(key)
    window = max(start, seen[0]) if seen else start
    update, condition = first_update(seen, start, now)
    for _ in range(3):
        values = {":one": {"N": "1"}, ":now": {"S": iso(now)}, ":w": {"N": str(window)}}
        if ":limit" in condition:
            values[":limit"] = {"N": str(RATE_LIMIT)}
        try:
            item = write(
                deadline,
                Key={"route": {"S": route}},
                UpdateExpression=update,
                ConditionExpression=f"{EXISTING} AND ({condition})" if must_exist else condition,
                ExpressionAttributeValues=values,
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except aws.ClientError as error:  # write() lets only ConditionalCheckFailed through
            old = error.response.get("Item") or {}
            if must_exist and not old:
                raise  # a new route: count() takes it from here
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
                raise HttpError(429, message, headers) from None
            if time.monotonic() > deadline:
                break
            continue
        count = int(item["windowCount"]["N"])
        learn(key, window, count, now, True)
        return record(route, item), rate_headers(count, window, now)
    # Only when the window moves under every try: clocks straddling a window's boundary.
    raise HttpError(*BUSY, error="window contended")


def rate_headers(count, window, now):
    # The next grid boundary: a window stored before WINDOW changed may be off the grid.
    reset = max(1, math.ceil((window // WINDOW + 1) * WINDOW - now))
    return {
        "RateLimit-Limit": str(RATE_LIMIT),
        "RateLimit-Remaining": str(max(0, RATE_LIMIT - count)),
        "RateLimit-Reset": str(reset),
    }


# MaxRoutes (docs/routes.md): a route not yet counted takes one of MAX_ROUTES places in one
# transaction that creates its item and adds one to the ledger, a series-table item no
# reader of the counter table ever meets. Past the cap, new routes count as OVERFLOW_ROUTE.
OVERFLOW_ROUTE = "/{overflow}"  # braces: a real path's are escaped, it never collides
LEDGER_KEY = {"route": {"S": "#routes"}, "bucket": {"S": "cap"}}
EXISTING = "attribute_exists(firstSeen)"
TRANSIENT_CODES = {"TransactionCanceledException", "TransactionInProgressException"}
TRANSIENT_REASONS = {
    "None",
    "TransactionConflict",
    "ThrottlingError",
    "ProvisionedThroughputExceeded",
}
places = {"full": False}  # once DynamoDB said the cap is reached: the ledger never goes down


def counted(route, now, deadline, must_exist=False):
    """The hit counted under the rate limit, if any: (body, headers)."""
    if RATE_LIMIT > 0:
        return count_limited(route, now, deadline, must_exist)
    return count_hit(route, now, deadline, must_exist), None


def count(route, now, deadline):
    """Count the hit under MaxRoutes: a route already counted in one conditional UpdateItem,
    as without the cap; a new one also takes a place (claim), or counts as OVERFLOW_ROUTE."""
    if MAX_ROUTES <= 0 or route == OVERFLOW_ROUTE:
        return counted(route, now, deadline)
    try:
        return counted(route, now, deadline, must_exist=True)
    except aws.ClientError:  # write() lets only ConditionalCheckFailed through: a new route
        pass
    outcome = "full" if places["full"] else claim(route, now, deadline)
    if outcome == "claimed":
        body = {"route": route, "count": 1, "firstSeen": iso(now), "lastSeen": iso(now)}
        if RATE_LIMIT <= 0:
            return body, None
        window = int(now // WINDOW * WINDOW)
        learn(hash(route), window, 1, now, True)
        return body, rate_headers(1, window, now)
    if outcome == "exists":  # another container created it meanwhile
        return counted(route, now, deadline)
    places["full"] = True
    return counted(OVERFLOW_ROUTE, now, deadline)


def claim(route, now, deadline):
    """Create the route's item with its first hit and add one to the ledger, while it is
    under MAX_ROUTES, in one TransactWriteItems: "claimed", "exists" or "full"."""
    values = {":one": {"N": "1"}, ":now": {"S": iso(now)}}
    update = "SET #count = :one, firstSeen = :now, lastSeen = :now"
    if RATE_LIMIT > 0:
        values[":w"] = {"N": str(int(now // WINDOW * WINDOW))}
        update += ", windowStart = :w, windowCount = :one"
    items = [
        {
            "Update": {
                "TableName": TABLE_NAME,
                "Key": {"route": {"S": route}},
                "UpdateExpression": update,
                "ConditionExpression": "attribute_not_exists(firstSeen)",
                "ExpressionAttributeNames": {"#count": "count"},
                "ExpressionAttributeValues": values,
            }
        },
        {
            "Update": {
                "TableName": SERIES_TABLE,
                "Key": LEDGER_KEY,
                "UpdateExpression": "ADD routes :one",
                "ConditionExpression": "attribute_not_exists(routes) OR routes < :max",
                "ExpressionAttributeValues": {":one": {"N": "1"}, ":max": {"N": str(MAX_ROUTES)}},
            }
        },
    ]
    # One token for every attempt: DynamoDB applies a transaction at most once per token
    # (10 minutes), so a retry after a lost answer cannot take a second place.
    token, kind = uuid.uuid4().hex, BUSY
    for attempt in range(1, ATTEMPTS + 1):
        try:
            dynamodb.transact_write_items(TransactItems=items, ClientRequestToken=token)
            return "claimed"
        except aws.ClientError as error:
            fault, code = error, error.response["Error"].get("Code")
            reasons = [r.get("Code") for r in error.response.get("CancellationReasons") or []]
            if reasons[:1] == ["ConditionalCheckFailed"]:
                return "exists"
            if reasons[1:2] == ["ConditionalCheckFailed"]:
                return "full"
            status = error.response["ResponseMetadata"]["HTTPStatusCode"]
            # TransactionConflict (one ledger item under a burst of new routes), throttling
            busy = set(reasons) <= TRANSIENT_REASONS if reasons else code in TRANSIENT_CODES
            if code in THROTTLING_CODES or busy:
                kind = kind if kind is UNKNOWN else BUSY
            else:
                kind = UNKNOWN if status >= 500 else BROKEN
        except NOT_SENT as error:
            fault, code, kind = error, None, kind if kind is UNKNOWN else BUSY
        except SENT as error:
            fault, code, kind = error, None, UNKNOWN
        except aws.BotoCoreError as error:
            fault, code, kind = error, None, BROKEN
        delay = random.random() * 0.05 * 4**attempt  # noqa: S311 (jitter)
        if kind is BROKEN or attempt == ATTEMPTS or time.monotonic() + delay > deadline:
            name = type(fault).__name__
            raise HttpError(*kind, error=name, errorCode=code or name, detail=str(fault))
        time.sleep(delay)


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


LOG_ENCODER = json.JSONEncoder(default=str)  # built once, not per json.dumps(default=)


def log(**fields):
    print(LOG_ENCODER.encode(fields))  # one JSON line: Logs Insights needs no pattern


if TEMPLATES.refused:  # what the parameter's AllowedPattern lets through but never matches
    log(level="ERROR", message="RouteTemplates: ignored, never matched", refused=TEMPLATES.refused)


def handler(event, context):
    started = time.monotonic()
    request_id = getattr(context, "aws_request_id", None) or "-"
    event = event if isinstance(event, dict) else {}
    method = event.get("httpMethod")
    route, problem = route_of(event.get("path"))
    line = {"level": "INFO", "requestId": request_id, "method": method, "route": route}
    try:
        if not isinstance(method, str) or "requestContext" not in event:
            problem = (400, "not an API Gateway proxy event: expected 'httpMethod' and 'path'")
        if problem:
            raise HttpError(*problem)
        if STATS_ROUTE and (route == STATS_ROUTE or route.startswith(STATS_ROUTE + "/")):
            raise HttpError(404, f"{STATS_ROUTE} is the stats endpoint; not counted")
        if (named := named_route(route)) != route:
            line.update(route=named, path=route)
        if method == "OPTIONS":
            result = response(204)
        else:
            body, headers = count(named, time.time(), started + RETRY_SECONDS)
            line["route"] = body["route"]  # OVERFLOW_ROUTE past MaxRoutes
            result = response(200, body, headers)
    except HttpError as error:
        body = {"error": error.message}
        if error.status >= 500:
            body.update(outcome=error.log["outcome"], requestId=request_id)
            line.update(level="ERROR", **error.log)
        result = response(error.status, body, error.headers)
    line.update(
        status=result["statusCode"], latencyMs=round((time.monotonic() - started) * 1000, 1)
    )
    log(**line)
    return result
