"""Route Counter stats, as JSON or an HTML page; never counts. README.md: "GET /_stats"."""

import base64
import datetime
import hashlib
import html
import json
import os
import re
import time
import unicodedata

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

TABLE_NAME = os.environ.get("TABLE_NAME", "")
SERIES_TABLE = os.environ.get("SERIES_TABLE", "")
ALLOWED_ORIGIN = os.environ.get("ALLOWED_ORIGIN", "")
STATS_ROUTE = os.environ.get("STATS_ROUTE") or "/_stats"
DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
# 1000 items of ~1.2 KB need two 1 MB Scan calls; a third covers sparse pages.
MAX_SCAN_CALLS = 3
CHART_BARS = 20
THROTTLING_CODES = {
    "ProvisionedThroughputExceededException",
    "RequestLimitExceeded",
    "ThrottlingException",
}
LIMIT_PATTERN = re.compile(r"[0-9]{1,4}")
# A `next` token: the base64url of a key DynamoDB can hold (1 to 2048 bytes).
TOKEN_PATTERN = re.compile("[A-Za-z0-9_-]{2,2731}")
METHODS_ALLOWED = "GET, HEAD, OPTIONS"
UTC = datetime.UTC
# series -> (bucket prefix, bucket width, bucket key format, default points, most points)
SERIES = {
    "hour": ("h#", datetime.timedelta(hours=1), "%Y-%m-%dT%H", 24, 24 * 31),
    "day": ("d#", datetime.timedelta(days=1), "%Y-%m-%d", 30, 366),
}
SERIES_PARAMETERS = {"series", "from", "to"}
# The aggregator's bounded item of the all-time top routes (handler/aggregator.py).
TOP_KEY = {"route": {"S": "#top"}, "bucket": {"S": "all"}}
TOP_LIMIT, MAX_TOP_LIMIT = 10, 100

dynamodb = boto3.client(
    "dynamodb",
    config=Config(
        connect_timeout=1,
        read_timeout=2,
        retries={"mode": "standard", "total_max_attempts": 3},
    ),
)


class HttpError(Exception):
    def __init__(self, status, message, headers=None):
        super().__init__(message)
        self.status, self.headers = status, headers


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


def routed(path, what):
    route, problem = route_of(path)
    if problem:
        raise HttpError(400, f"invalid {what}: {problem[1]}")
    return route


def record(item):
    return {
        "route": item["route"]["S"],
        "count": int(item.get("count", {}).get("N", 0)),
        "firstSeen": item.get("firstSeen", {}).get("S"),
        "lastSeen": item.get("lastSeen", {}).get("S"),
    }


def encode_token(key):
    return base64.urlsafe_b64encode(key["route"]["S"].encode()).decode().rstrip("=")


def decode_token(token):
    """The key a page starts after. Not signed: routes are public here (README.md)."""
    try:
        if not TOKEN_PATTERN.fullmatch(token):
            raise ValueError
        route = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
        if not route.startswith("/"):
            raise ValueError
    except ValueError:  # binascii.Error and UnicodeDecodeError are ValueErrors
        raise HttpError(400, "invalid 'next' token: pass back the 'next' value of a page") from None
    return {"route": {"S": route}}


def parse_limit(text):
    if text is None:
        return DEFAULT_LIMIT
    if not LIMIT_PATTERN.fullmatch(text) or not 1 <= int(text) <= MAX_LIMIT:
        raise HttpError(400, f"'limit' must be a whole number from 1 to {MAX_LIMIT}")
    return int(text)


def read_page(limit, start_key):
    """Up to `limit` routes from at most MAX_SCAN_CALLS Scan calls, and the next key."""
    items, key, calls = [], start_key, 0
    while calls < MAX_SCAN_CALLS and len(items) < limit:
        args = {"ExclusiveStartKey": key} if key else {}
        page = dynamodb.scan(TableName=TABLE_NAME, Limit=limit - len(items), **args)
        calls += 1
        items += page.get("Items", [])
        key = page.get("LastEvaluatedKey")
        if not key:
            break
    routes = sorted((record(i) for i in items), key=lambda r: (-r["count"], r["route"]))
    return routes, (encode_token(key) if key else None), calls


def read_route(route):
    item = dynamodb.get_item(TableName=TABLE_NAME, Key={"route": {"S": route}}).get("Item")
    return record(item) if item else None


def parse_time(query, name):
    """An ISO 8601 time of the query (UTC unless it says otherwise), or None when absent."""
    text = query.get(name)
    if text is None:
        return None
    try:
        moment = datetime.datetime.fromisoformat(text)
    except ValueError:
        raise HttpError(
            400, f"'{name}' must be an ISO 8601 time such as 2026-12-01T03:00:00Z"
        ) from None
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def bucket_start(moment, width):
    if width == datetime.timedelta(days=1):
        return moment.replace(hour=0, minute=0, second=0, microsecond=0)
    return moment.replace(minute=0, second=0, microsecond=0)


def series_range(series, query, now):
    """The first and last bucket start of the range asked for, and the number of points."""
    if series not in SERIES:
        raise HttpError(400, "'series' must be 'hour' or 'day'")
    _, width, _, default_points, most = SERIES[series]
    first, last = parse_time(query, "from"), parse_time(query, "to")
    try:
        last = bucket_start(last or now, width)
        first = bucket_start(first, width) if first else last - (default_points - 1) * width
    except OverflowError:
        raise HttpError(400, "'from' and 'to' must be years 1 to 9999") from None
    if first > last:
        raise HttpError(400, "'from' must not be after 'to'")
    points = (last - first) // width + 1
    if points > most:
        raise HttpError(
            400, f"a {series} series has at most {most} points; this range has {points}"
        )
    return first, last, points


def read_series(route, series, first, last, points):
    """Hits per bucket from one Query: the highest count of each bucket minus that of the
    route's previous recorded bucket (the one just before the range included)."""
    prefix, width, key_format, _, _ = SERIES[series]
    found = dynamodb.query(
        TableName=SERIES_TABLE,
        KeyConditionExpression="route = :r AND bucket BETWEEN :lo AND :hi",
        ExpressionAttributeValues={
            ":r": {"S": route},
            ":lo": {"S": prefix},
            ":hi": {"S": prefix + last.strftime(key_format)},
        },
        ScanIndexForward=False,  # newest first: the range, then the bucket before it
        Limit=points + 1,
    ).get("Items", [])
    first_key = prefix + first.strftime(key_format)
    highest = {}
    previous = 0
    for item in reversed(found):  # oldest first
        key, count = item["bucket"]["S"], int(item["maxCount"]["N"])
        if key >= first_key:
            # A count below the previous one means the route restarted from 0.
            highest[key] = count - previous if count >= previous else count
        previous = count
    return [
        {
            "start": (first + i * width).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "count": highest.get(prefix + (first + i * width).strftime(key_format), 0),
        }
        for i in range(points)
    ]


def read_top(query):
    """The global top routes: one GetItem of the aggregator's item, whatever the table size."""
    if query.get("period", "all") != "all":
        raise HttpError(400, "'period' must be 'all' (a per-day ranking is not built yet)")
    limit = TOP_LIMIT
    if "limit" in query:
        text = query["limit"]
        if not LIMIT_PATTERN.fullmatch(text) or not 1 <= int(text) <= MAX_TOP_LIMIT:
            raise HttpError(400, f"'limit' must be a whole number from 1 to {MAX_TOP_LIMIT}")
        limit = int(text)
    item = dynamodb.get_item(TableName=SERIES_TABLE, Key=TOP_KEY).get("Item") or {}
    counts = [(r, int(c["N"])) for r, c in item.get("routes", {}).get("M", {}).items()]
    ranked = sorted(counts, key=lambda rc: (-rc[1], rc[0]))[:limit]
    return {
        "routes": [{"route": r, "count": c} for r, c in ranked],
        "asOf": item.get("asOf", {}).get("S"),
    }


def wants_html(headers):
    """True when the Accept header ranks text/html above application/json."""
    accept = next((v for k, v in headers.items() if k.lower() == "accept"), "")
    ranks = {}
    for part in accept.lower().replace(" ", "").split(","):
        name, _, params = part.partition(";")
        q = re.search(r"(?:^|;)q=([01](?:\.[0-9]{0,3})?)(?:;|$)", params)
        ranks[name] = float(q.group(1)) if q else 1.0

    def q(media):
        kind = media.split("/")[0]
        return ranks.get(media, ranks.get(f"{kind}/*", ranks.get("*/*", 0.0)))

    return q("text/html") > q("application/json")


CSS = (
    "body{font:14px system-ui,sans-serif;margin:2em;color:#222}"
    "table{border-collapse:collapse}td,th{padding:.2em .6em;text-align:left}"
    "tr:nth-child(even){background:#f4f4f4}td.n{text-align:right}"
    ".r{max-width:40em;overflow-wrap:anywhere}svg text{font:12px sans-serif}"
    ".cf{color:#b00;border:1px solid}svg .cf{fill:#b00}"
)
CSP = (
    "default-src 'none'; style-src 'sha256-"
    + base64.b64encode(hashlib.sha256(CSS.encode()).digest()).decode()
    + "'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
# Characters that reorder or hide text (bidi controls, zero-width...), shown as code points.
INVISIBLE = {"Cf", "Zl", "Zp", "Cc"}


def visible(text, mark):
    escaped = html.escape(text)
    if text.isascii() and text.isprintable():
        return escaped
    return "".join(
        mark % f"U+{ord(c):04X}" if unicodedata.category(c) in INVISIBLE else c for c in escaped
    )


def shown(route):
    return f'<bdi dir="ltr">{visible(route, "<span class=cf>%s</span>")}</bdi>'


def dashboard(routes, title, next_token=None, limit=DEFAULT_LIMIT):
    """One self-contained page: no script, nothing loaded from elsewhere, every route escaped."""
    top = routes[:CHART_BARS]
    peak = max([r["count"] for r in top] + [1])
    bars = "".join(
        f'<rect x="0" y="{i * 22}" width="{max(1, 400 * r["count"] // peak)}" height="18"'
        f' fill="#4a7fb0"/><text x="410" y="{i * 22 + 14}" direction="ltr">{r["count"]} '
        f"{visible(r['route'][:80], '<tspan class=cf>%s</tspan>')}</text>"
        for i, r in enumerate(top)
    )
    rows = "".join(
        f'<tr><td class="r">{shown(r["route"])}</td>'
        f'<td class="n">{r["count"]}</td><td>{html.escape(r["firstSeen"] or "")}'
        f"</td><td>{html.escape(r['lastSeen'] or '')}</td></tr>"
        for r in routes
    )
    more = (
        "<p>Sorted by count within this page only; more routes follow: <a href="
        f'"?limit={limit}&amp;next={html.escape(next_token)}">next page</a>.</p>'
        if next_token
        else "<p>All routes, sorted by count.</p>"
    )
    chart = (
        f'<svg role="img" aria-label="top routes by count" width="100%" '
        f'height="{len(top) * 22}" viewBox="0 0 1000 {max(1, len(top) * 22)}">{bars}</svg>'
        if top
        else "<p>No route has been counted yet.</p>"
    )
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        f"<title>{visible(title, '[%s]')}</title><style>{CSS}</style></head><body>"
        f"<h1>{shown(title)}</h1>{chart}{more}<table><thead><tr><th>Route</th>"
        "<th>Count</th><th>First seen (UTC)</th><th>Last seen (UTC)</th></tr></thead>"
        f"<tbody>{rows}</tbody></table></body></html>"
    )


def response(status, body=None, headers=None, html_page=None):
    base = {
        "Content-Type": "application/json",
        "Cache-Control": "no-store",
        "X-Content-Type-Options": "nosniff",
        "Vary": "Accept, Origin" if ALLOWED_ORIGIN else "Accept",
    }
    if ALLOWED_ORIGIN:
        base["Access-Control-Allow-Origin"] = ALLOWED_ORIGIN
    if html_page is not None:
        base.update({"Content-Type": "text/html; charset=utf-8", "Content-Security-Policy": CSP})
    return {
        "statusCode": status,
        "headers": {**base, **(headers or {})},
        "body": html_page if html_page is not None else "" if body is None else json.dumps(body),
    }


def answer(method, path, query, headers):
    """The response to a well-formed proxy event, and the fields to log about it."""
    route = routed(path, "path")
    if route not in (STATS_ROUTE, STATS_ROUTE + "/top"):
        raise HttpError(404, f"no such stats page: {route}; use GET {STATS_ROUTE}")
    if method == "OPTIONS":
        cors = {"Access-Control-Allow-Methods": METHODS_ALLOWED, "Access-Control-Max-Age": "600"}
        return response(204, headers={"Allow": METHODS_ALLOWED, **cors}), {}
    if method not in ("GET", "HEAD"):
        message = f"{method} is not allowed here; the stats are read with GET"
        raise HttpError(405, message, {"Allow": METHODS_ALLOWED})
    if route != STATS_ROUTE:
        top = read_top(query)
        return response(200, top), {"format": "json", "routes": len(top["routes"])}
    as_html = wants_html(headers)
    fields = {"format": "html" if as_html else "json"}
    if "route" in query:
        if set(query) & {"limit", "next"}:
            raise HttpError(400, "'route' cannot be combined with 'limit' or 'next'")
        route = routed(query["route"], "'route'")
        if "series" in query:
            first, last, points = series_range(query["series"], query, datetime.datetime.now(UTC))
            body = {
                "route": route,
                "series": query["series"],
                "points": read_series(route, query["series"], first, last, points),
            }
            return response(200, body), {**fields, "route": route, "points": points}
        if set(query) & SERIES_PARAMETERS:
            raise HttpError(400, "'from' and 'to' need a 'series' ('hour' or 'day')")
        found = read_route(route)
        if found is None:
            raise HttpError(404, f"route {route} has not been counted")
        page = dashboard([found], f"Route {route}") if as_html else None
        return response(200, found, html_page=page), {**fields, "route": route}
    if set(query) & SERIES_PARAMETERS:
        raise HttpError(400, "'series', 'from' and 'to' need a 'route'")
    limit = parse_limit(query.get("limit"))
    start = decode_token(query["next"]) if "next" in query else None
    routes, next_token, calls = read_page(limit, start)
    page = dashboard(routes, "Route Counter", next_token, limit) if as_html else None
    result = response(200, {"routes": routes, "next": next_token}, html_page=page)
    return result, {**fields, "routes": len(routes), "scanCalls": calls}


def aws_fault(error, request_id):
    # Only a ClientError carries AWS's answer; a ReadTimeoutError's .response is None.
    aws = isinstance(error, ClientError)
    code = (aws and error.response.get("Error", {}).get("Code")) or type(error).__name__
    busy = code in THROTTLING_CODES or not aws
    message = "the stats are busy, retry shortly" if busy else "stats unavailable"
    body = {"error": message, "requestId": request_id}
    result = response(503 if busy else 500, body, {"Retry-After": "1"} if busy else None)
    return result, {"error": type(error).__name__, "errorCode": code, "detail": str(error)}


def log(**fields):
    # One JSON line per request; CloudWatch Logs Insights parses it without a pattern.
    print(json.dumps(fields, default=str))


def handler(event, context):
    started = time.monotonic()
    request_id = getattr(context, "aws_request_id", None) or "-"
    event = event if isinstance(event, dict) else {}
    method, path = event.get("httpMethod"), event.get("path")
    try:
        if not (isinstance(method, str) and isinstance(path, str) and "requestContext" in event):
            raise HttpError(400, "not an API Gateway proxy event: expected 'httpMethod' and 'path'")
        query = event.get("queryStringParameters") or {}
        headers = event.get("headers") or {}
        if not (isinstance(query, dict) and isinstance(headers, dict)) or not all(
            isinstance(v, str) for v in [*query.values(), *headers.values()]
        ):
            raise HttpError(400, "not an API Gateway proxy event: bad query string or headers")
        result, fields = answer(method, path, query, headers)
    except HttpError as error:
        result, fields = response(error.status, {"error": str(error)}, error.headers), {}
    except (ClientError, BotoCoreError) as error:
        result, fields = aws_fault(error, request_id)
    latency = round((time.monotonic() - started) * 1000, 1)
    level = "ERROR" if result["statusCode"] >= 500 else "INFO"
    line = {"level": level, "requestId": request_id, "method": method, "path": path}
    log(**line, **fields, status=result["statusCode"], latencyMs=latency)
    return result
