"""Route Counter: count every request, per route, in DynamoDB (README.md, "The API")."""

import base64
import http.client
import json
import math
import os
import random
import re
import select
import ssl
import threading
import time
import uuid
from urllib.parse import quote, urlencode, urlsplit

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
CLIENT_IDENTITY = os.environ.get("CLIENT_IDENTITY") or "none"
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


def segments_of(path):
    """The path's segments, empty ones folded and dot segments removed as RFC 3986 5.2.4
    does: "." is dropped, ".." drops the segment before it (none above the root)."""
    kept = []
    for segment in path.split("/"):
        if segment == "..":
            if kept:
                kept.pop()
        elif segment and segment != ".":
            kept.append(segment)
    return kept


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
    if not (
        path.startswith("/")
        and "//" not in path
        and "/." not in path  # C speed: every dot segment but a leading one starts so
        and (path == "/" or path[-1] != "/")
    ):
        path = "/" + "/".join(segments_of(path))
    if len(path) > MAX_PATH_BYTES:  # ASCII by now
        message = f"the route is {len(path)} bytes; at most {MAX_PATH_BYTES} are counted"
        return None, (414, message)
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


# ClientIdentity (docs/clients.md): who made the hit, written on the route's item with it
# (lastClient) so that its stream record names the client.
MAX_CLIENT_CHARS = 256
IDENTITY_SOURCES = {
    "apikey": ("identity", "apiKeyId", "an API key (x-api-key)"),
    "authorizer": ("authorizer", "principalId", "an authorizer's principal"),
}


def client_of(event):
    """The client the hit is counted for, or None when ClientIdentity is none. Raises
    HttpError 401 when the identity is missing or empty, 403 when it is unusable (over
    MAX_CLIENT_CHARS, or a header given twice with different values)."""
    if CLIENT_IDENTITY == "none":
        return None
    if CLIENT_IDENTITY.startswith("header:"):
        name = CLIENT_IDENTITY[len("header:") :]
        what = f"the {name} header"
        given = event.get("multiValueHeaders") or {
            key: [value] for key, value in (event.get("headers") or {}).items()
        }
        values = {
            value.strip()
            for key, listed in given.items()
            if key.lower() == name.lower()
            for value in listed or []
            if isinstance(value, str)
        }
        if len(values) > 1:
            raise HttpError(403, f"{what} is given more than once, with different values")
        client = values.pop() if values else None
    else:
        part, field, what = IDENTITY_SOURCES[CLIENT_IDENTITY]
        client = (event["requestContext"].get(part) or {}).get(field)
    if not isinstance(client, str) or not client:
        raise HttpError(401, f"this API counts hits per client: {what} is required")
    if len(client) > MAX_CLIENT_CHARS:
        raise HttpError(403, f"the client id ({what}) is over {MAX_CLIENT_CHARS} characters")
    return client


def with_client(update, values, client):
    """The update expression also naming the hit's client (SET lastClient), when there is
    one: every update here ends in its SET clause."""
    if client is None:
        return update
    values[":client"] = {"S": client}
    return update + ", lastClient = :client"


class AnswerCutOff(Exception):
    """DynamoDB's answer arrived without its body."""


def write(deadline, names=None, **params):
    """One UpdateItem; the item as it is now (ALL_NEW)."""
    for attempt in range(1, ATTEMPTS + 1):
        try:
            answer = dynamodb.update_item(
                TableName=TABLE_NAME,
                ExpressionAttributeNames={"#count": "count", **(names or {})},
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


def count_hit(route, now, deadline, must_exist=False, answer=None, client=None):
    """Add one hit to the route's counter: one UpdateItem, atomic on the server. answer:
    (status, latency in ms) of a backend's answer, recorded in that same write; client: who
    made the hit (lastClient), too."""
    values = {":one": {"N": "1"}, ":now": {"S": iso(now)}}
    update = "ADD #count :one SET lastSeen = :now, firstSeen = if_not_exists(firstSeen, :now)"
    names = None
    if answer is not None:
        update, names = COUNT_ANSWER, {"#class": status_class(answer[0])}
        values.update({":status": {"N": str(answer[0])}, ":ms": {"N": str(answer[1])}})
    item = write(
        deadline,
        names=names,
        Key={"route": {"S": route}},
        UpdateExpression=with_client(update, values, client),
        ExpressionAttributeValues=values,
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


def count_limited(route, now, deadline, must_exist=False, client=None):
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
                UpdateExpression=with_client(update, values, client),
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


def counted(route, now, deadline, must_exist=False, answer=None, client=None):
    """The hit counted under the rate limit, if any: (body, headers). A rate-limited hit is
    counted before its backend is called: it has no answer to record."""
    if RATE_LIMIT > 0:
        return count_limited(route, now, deadline, must_exist, client)
    return count_hit(route, now, deadline, must_exist, answer, client), None


def count(route, now, deadline, answer=None, client=None):
    """Count the hit under MaxRoutes: a route already counted in one conditional UpdateItem,
    as without the cap; a new one also takes a place (claim), or counts as OVERFLOW_ROUTE.
    answer: the backend's (status, latency ms), recorded with the hit (FailurePolicy monitor);
    client: who made it (ClientIdentity), recorded by whichever write counts it."""
    if MAX_ROUTES <= 0 or route == OVERFLOW_ROUTE:
        return counted(route, now, deadline, answer=answer, client=client)
    try:
        return counted(route, now, deadline, must_exist=True, answer=answer, client=client)
    except aws.ClientError:  # write() lets only ConditionalCheckFailed through: a new route
        pass
    outcome = "full" if places["full"] else claim(route, now, deadline, answer, client)
    if outcome == "claimed":
        body = {"route": route, "count": 1, "firstSeen": iso(now), "lastSeen": iso(now)}
        if RATE_LIMIT <= 0:
            return body, None
        window = int(now // WINDOW * WINDOW)
        learn(hash(route), window, 1, now, True)
        return body, rate_headers(1, window, now)
    if outcome == "exists":  # another container created it meanwhile
        return counted(route, now, deadline, answer=answer, client=client)
    places["full"] = True
    return counted(OVERFLOW_ROUTE, now, deadline, answer=answer, client=client)


def claim(route, now, deadline, answer=None, client=None):
    """Create the route's item with its first hit (and its answer, if any) and add one to the
    ledger, while it is under MAX_ROUTES, in one TransactWriteItems: "claimed", "exists" or
    "full"."""
    values = {":one": {"N": "1"}, ":now": {"S": iso(now)}}
    update = "SET #count = :one, firstSeen = :now, lastSeen = :now"
    names = {"#count": "count"}
    if answer is not None:
        update += ", #class = :one, latencyMsTotal = :ms, lastStatus = :status, lastLatencyMs = :ms"
        names["#class"] = status_class(answer[0])
        values.update({":status": {"N": str(answer[0])}, ":ms": {"N": str(answer[1])}})
    if RATE_LIMIT > 0:
        values[":w"] = {"N": str(int(now // WINDOW * WINDOW))}
        update += ", windowStart = :w, windowCount = :one"
    items = [
        {
            "Update": {
                "TableName": TABLE_NAME,
                "Key": {"route": {"S": route}},
                "UpdateExpression": with_client(update, values, client),
                "ConditionExpression": "attribute_not_exists(firstSeen)",
                "ExpressionAttributeNames": names,
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


# --- Backends (docs/backends.md): the counter in front of a Lambda function or a URL --------

BACKEND = os.environ.get("BACKEND", "")
BACKEND_TIMEOUT = int(os.environ.get("BACKEND_TIMEOUT_SECONDS") or 10)
METERING = os.environ.get("FAILURE_POLICY") == "meter"  # else monitor: the backend first
COUNT_HEADER = "x-route-count"  # sent as 1: the answer carries the route's count
# Lambda's synchronous response payload quota (6 MB): the most this function can hand
# API Gateway, JSON and base64 included.
MAX_ANSWER_BYTES = 6 * 1024 * 1024
HOP_BY_HOP = frozenset(
    ("connection", "keep-alive", "te", "trailer", "transfer-encoding", "upgrade")
)
# Set by the counter itself, never copied: the backend's own host, and the hop's framing.
NOT_FORWARDED = frozenset(
    ("host", "content-length", "x-forwarded-for", "x-forwarded-proto", "x-forwarded-host")
)
# A header name HTTP can carry (RFC 9110 token). API Gateway may hand over others (its own
# documentation's example event has a header named ""), which no request can send.
HEADER_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
# A hit with its answer: the status class, the latency total and the last of each.
COUNT_ANSWER = (
    "ADD #count :one, #class :one, latencyMsTotal :ms SET lastStatus = :status, "
    "lastLatencyMs = :ms, lastSeen = :now, firstSeen = if_not_exists(firstSeen, :now)"
)


class BackendFailure(Exception):
    """The backend gave no answer to return: status, message, and what to log."""

    def __init__(self, status, message, **log):
        self.status, self.message, self.log = status, message, log


def lambda_client(arn):
    """No SDK retries: an Invoke that may have run is never sent again."""
    return boto3.client(
        "lambda",
        region_name=arn.split(":")[3],
        config=Config(
            connect_timeout=min(2, BACKEND_TIMEOUT),
            read_timeout=BACKEND_TIMEOUT,
            retries={"mode": "standard", "total_max_attempts": 1},
        ),
    )


backend_function = lambda_client(BACKEND) if BACKEND.startswith("arn:") else None
backend_url = urlsplit(BACKEND) if BACKEND.startswith("http") else None
# Open connections to an HTTP backend, kept across invocations (one per concurrent call).
idle_connections = []
idle_lock = threading.Lock()


def invoke_function(event):
    """The proxy answer of the backend function, invoked with the very event."""
    try:
        answer = backend_function.invoke(FunctionName=BACKEND, Payload=json.dumps(event))
        payload = answer["Payload"].read()
    except aws.ReadTimeoutError as error:
        raise BackendFailure(
            504, f"the backend did not answer within {BACKEND_TIMEOUT} s", detail=str(error)
        ) from None
    except (aws.ConnectTimeoutError, aws.EndpointConnectionError) as error:
        raise BackendFailure(502, "the backend could not be reached", detail=str(error)) from None
    except aws.ClientError as error:
        code = error.response["Error"].get("Code")
        if code == "RequestTooLargeException":
            raise BackendFailure(413, "the request is too large for the backend function") from None
        raise BackendFailure(
            502, "the backend function could not be invoked", errorCode=code, detail=str(error)
        ) from None
    except aws.BotoCoreError as error:
        message = "the backend function failed to answer"
        raise BackendFailure(502, message, detail=str(error)) from None
    if "FunctionError" in answer:
        detail = payload[:1000].decode("utf-8", "replace")
        if "Task timed out after" in detail:  # its own Timeout: it did not answer in time
            raise BackendFailure(504, "the backend function timed out", detail=detail)
        raise BackendFailure(502, "the backend function failed", detail=detail)
    try:
        return json.loads(payload)
    except ValueError:
        detail = payload[:1000].decode("utf-8", "replace")
        raise BackendFailure(
            502, "the backend function's answer is not JSON", detail=detail
        ) from None


def closed_by_peer(connection):
    """An idle kept-alive connection with something to read has been closed by the backend
    (or sent what no request asked for): never reused."""
    return connection.sock is None or bool(select.select([connection.sock], [], [], 0)[0])


def take_connection():
    with idle_lock:
        while idle_connections:
            connection = idle_connections.pop()
            if not closed_by_peer(connection):
                return connection
            connection.close()
    if backend_url.scheme == "https":
        context = ssl.create_default_context()
        return http.client.HTTPSConnection(backend_url.hostname, backend_url.port, context=context)
    return http.client.HTTPConnection(backend_url.hostname, backend_url.port)


def forwarded_headers(event):
    """The client's headers minus the hop's own, then Host and X-Forwarded-*."""
    given = event.get("multiValueHeaders") or {
        name: [value] for name, value in (event.get("headers") or {}).items()
    }
    lower = {name.lower(): values for name, values in given.items()}
    named = {t.strip().lower() for v in lower.get("connection", []) for t in v.split(",")}
    headers = [
        (name, value)
        for name, values in given.items()
        if name.lower() not in HOP_BY_HOP | NOT_FORWARDED | named | {COUNT_HEADER}
        and not name.lower().startswith("proxy-")
        and HEADER_NAME.fullmatch(name)
        for value in values
    ]
    source = (event["requestContext"].get("identity") or {}).get("sourceIp") or ""
    return [
        ("Host", backend_url.netloc),
        *headers,
        ("X-Forwarded-For", ", ".join(lower.get("x-forwarded-for", [])) or source),
        ("X-Forwarded-Proto", (lower.get("x-forwarded-proto") or ["https"])[-1]),
        ("X-Forwarded-Host", (lower.get("host") or [backend_url.netloc])[-1]),
    ]


def request_target(event):
    """The backend URL's path, then the path under the stage, then the query string."""
    path = quote(backend_url.path.rstrip("/") + event["path"], safe="/%:@!$&'()*+,;=-._~")
    query = event.get("multiValueQueryStringParameters") or {
        key: [value] for key, value in (event.get("queryStringParameters") or {}).items()
    }
    pairs = [(key, value) for key, values in query.items() for value in values]
    query = "&".join(filter(None, [backend_url.query, urlencode(pairs, quote_via=quote)]))
    return f"{path}?{query}" if query else path


def fetch(event, deadline):
    """The HTTP backend's answer as a proxy answer. Sent at most once: a kept-alive
    connection the backend closed while idle is dropped before anything is sent on it;
    any failure once the request may have left is a 502 or 504, never a second send."""
    body = event.get("body") or ""
    body = base64.b64decode(body) if event.get("isBase64Encoded") else body.encode()
    connection = take_connection()
    connection.timeout = max(0.001, deadline - time.monotonic())
    try:
        if connection.sock is None:
            connection.connect()
    except OSError as error:
        connection.close()
        raise BackendFailure(
            502, "the backend refused the connection or could not be reached", detail=str(error)
        ) from None
    sock = connection.sock
    try:
        sock.settimeout(max(0.001, deadline - time.monotonic()))
        connection.putrequest(
            event["httpMethod"], request_target(event), skip_host=True, skip_accept_encoding=True
        )
        for name, value in forwarded_headers(event):
            connection.putheader(name, value)
        if body or event["httpMethod"] in ("POST", "PUT", "PATCH"):
            connection.putheader("Content-Length", str(len(body)))
        connection.endheaders(body or None)
        answer = connection.getresponse()
        declared = answer.getheader("Content-Length")
        if declared and declared.isdigit() and int(declared) > MAX_ANSWER_BYTES:
            raise BackendFailure(502, too_large(int(declared)))
        chunks, size = [], 0
        while chunk := answer.read(65536):
            size += len(chunk)
            if size > MAX_ANSWER_BYTES:
                raise BackendFailure(502, too_large(size, "over"))
            chunks.append(chunk)
            # An answer that closes its connection (HTTP/1.0, Connection: close): http.client
            # has closed our socket object and reads on through the answer's own file, under
            # the timeout last set.
            if connection.sock is not None:
                sock.settimeout(max(0.001, deadline - time.monotonic()))
        if answer.length:  # read(n) returns b"" when the backend closed before its end
            raise http.client.IncompleteRead(b"", answer.length)
    except BackendFailure:
        connection.close()
        raise
    except TimeoutError as error:
        connection.close()
        raise BackendFailure(
            504, f"the backend did not answer within {BACKEND_TIMEOUT} s", detail=str(error)
        ) from None
    except (OSError, http.client.HTTPException) as error:
        connection.close()
        raise BackendFailure(
            502, "the backend closed the connection before its whole answer", detail=repr(error)
        ) from None
    if answer.will_close:
        connection.close()
    else:
        with idle_lock:
            idle_connections.append(connection)
    return proxy_answer(answer, b"".join(chunks))


def too_large(size, how="of"):
    return (
        f"the backend's answer ({how} {size} bytes) is larger than the "
        f"{MAX_ANSWER_BYTES} bytes a Lambda function can return"
    )


def proxy_answer(answer, body):
    """Status, headers (repeated ones such as Set-Cookie kept) and body: text if it is
    UTF-8, else base64."""
    named = {t.strip().lower() for t in (answer.getheader("Connection") or "").split(",")}
    headers = {}
    for name, value in answer.msg.items():
        if name.lower() not in HOP_BY_HOP | named | {"content-length"}:
            headers.setdefault(name, []).append(value)
    try:
        text, encoded = body.decode("utf-8"), False
    except UnicodeDecodeError:
        text, encoded = base64.b64encode(body).decode("ascii"), True
    return {
        "statusCode": answer.status,
        "multiValueHeaders": headers,
        "body": text,
        "isBase64Encoded": encoded,
    }


def status_class(status):
    """The counter item's attribute for an answer's status class: s2xx to s5xx (1xx counts
    with 2xx; a status past 5xx with 5xx)."""
    return f"s{min(max(status // 100, 2), 5)}xx"


def header_of(event, name):
    for key, value in (event.get("headers") or {}).items():
        if key.lower() == name:
            return value
    return None


def serve_backend(event, route, method, started, request_id, line, client=None):
    """Count and forward: the backend's answer, or a 502/504 JSON error.

    A rate-limited stack and FailurePolicy meter count first (a refused hit never reaches
    the backend; in meter, a failed count is the 503 and nothing is served); monitor, the
    default, calls the backend first and counts the hit with its answer, and a failed
    count is logged ("counted": false) and served anyway. OPTIONS is forwarded, uncounted.
    """
    counted, limits, first = None, {}, RATE_LIMIT > 0 or METERING
    if first and method != "OPTIONS":
        try:
            counted, limits = count(route, time.time(), started + RETRY_SECONDS, client=client)
            limits = limits or {}
        except HttpError as error:
            if error.status == 429 or METERING:
                raise
            line.update(level="ERROR", counted=False, countError=error.log)
    sent = time.monotonic()
    try:
        if backend_function is not None:
            result = invoke_function(event)
        else:
            result = fetch(event, sent + BACKEND_TIMEOUT)
        failure = None
        status = result.get("statusCode") if isinstance(result, dict) else None
        status = int(status) if str(status).isdigit() else 502
    except BackendFailure as error:
        result, failure, status = None, error, error.status
    latency = round((time.monotonic() - sent) * 1000)
    if not first and method != "OPTIONS":
        try:
            deadline = time.monotonic() + RETRY_SECONDS
            answer = (status, latency)
            counted, _ = count(route, time.time(), deadline, answer=answer, client=client)
        except HttpError as error:
            line.update(level="ERROR", counted=False, countError=error.log)
    line.update(backendStatus=status, backendLatencyMs=latency)
    if counted:
        line["route"] = counted["route"]  # OVERFLOW_ROUTE past MaxRoutes
    if method != "OPTIONS":
        line["counted"] = bool(counted)
    if failure is not None:
        body = {"error": failure.message, "requestId": request_id}
        body["outcome"] = "counted" if counted else "not counted"
        line.update(level="ERROR", backendError=failure.message, **failure.log)
        result = response(failure.status, body)
    if isinstance(result, dict) and isinstance(result.get("headers") or {}, dict):
        extra = dict(limits)
        if counted and header_of(event, COUNT_HEADER) == "1":
            extra["X-Route-Count"] = str(counted["count"])
        if extra:
            result["headers"] = {**(result.get("headers") or {}), **extra}
        size = len(json.dumps(result))
        if size > MAX_ANSWER_BYTES:
            line.update(level="ERROR", backendError="answer too large")
            result = response(502, {"error": too_large(size), "requestId": request_id})
    return result


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
        client = client_of(event)  # before anything is counted or forwarded
        if client is not None:
            line["client"] = client
        if BACKEND:
            result = serve_backend(event, named, method, started, request_id, line, client)
        elif method == "OPTIONS":
            result = response(204)
        else:
            body, headers = count(named, time.time(), started + RETRY_SECONDS, client=client)
            line["route"] = body["route"]  # OVERFLOW_ROUTE past MaxRoutes
            result = response(200, body, headers)
    except HttpError as error:
        body = {"error": error.message}
        if error.status >= 500:
            body.update(outcome=error.log["outcome"], requestId=request_id)
            line.update(level="ERROR", **error.log)
        result = response(error.status, body, error.headers)
    status = result.get("statusCode") if isinstance(result, dict) else None
    line.update(status=status, latencyMs=round((time.monotonic() - started) * 1000, 1))
    log(**line)
    return result
