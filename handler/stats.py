"""Route Counter stats: read the counts, as JSON or as an HTML dashboard. Never counts.

Deployed byte for byte as the function's inline code (index.py): nothing beyond the
Lambda Python runtime (boto3). Its API is in README.md, "Reading: GET /_stats".
"""

import base64
import binascii
import hashlib
import html
import json
import os
import re
import time

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

TABLE_NAME = os.environ.get("TABLE_NAME", "")
ALLOWED_ORIGIN = os.environ.get("ALLOWED_ORIGIN", "")
STATS_ROUTE = os.environ.get("STATS_ROUTE") or "/_stats"
MAX_PATH_BYTES = 1024
DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
# A Scan call reads at most 1 MB; 1000 items of at most ~1.2 KB need two. A third call
# covers sparse pages; a page short of `limit` then still carries a `next` token.
MAX_SCAN_CALLS = 3
CHART_BARS = 20
THROTTLING_CODES = {
    "ProvisionedThroughputExceededException",
    "RequestLimitExceeded",
    "ThrottlingException",
}
LIMIT_PATTERN = re.compile(r"[0-9]{1,4}")

dynamodb = boto3.client(
    "dynamodb",
    config=Config(
        connect_timeout=1,
        read_timeout=2,
        retries={"mode": "standard", "total_max_attempts": 3},
    ),
)


class BadRequest(Exception):
    pass


def route_of(path):
    """The counter's route rule, duplicated (each handler file stands alone)."""
    if not isinstance(path, str):
        return None, (400, "not an API Gateway proxy event: 'path' must be a string")
    try:
        size = len(path.encode("utf-8"))
    except UnicodeEncodeError:
        return None, (400, "path is not valid UTF-8")
    if size > MAX_PATH_BYTES:
        return None, (414, f"path is {size} bytes long; the limit is {MAX_PATH_BYTES}")
    if any(c < " " or "\x7f" <= c <= "\x9f" for c in path):
        return None, (400, "path contains control characters")
    return "/" + "/".join(part for part in path.split("/") if part), None


def record(item):
    return {
        "route": item["route"]["S"],
        "count": int(item.get("count", {}).get("N", 0)),
        "firstSeen": item.get("firstSeen", {}).get("S"),
        "lastSeen": item.get("lastSeen", {}).get("S"),
    }


def encode_token(key):
    raw = json.dumps({"r": key["route"]["S"]}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_token(token):
    """The ExclusiveStartKey a `next` token stands for; BadRequest when it is not ours."""
    try:
        if len(token) > 2 * MAX_PATH_BYTES or not re.fullmatch(r"[A-Za-z0-9_-]+", token):
            raise ValueError
        data = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        route = data["r"]
        if set(data) != {"r"} or route_of(route) != (route, None):
            raise ValueError
    except (ValueError, TypeError, KeyError, binascii.Error, UnicodeDecodeError):
        raise BadRequest("invalid 'next' token: pass back the 'next' value of a page") from None
    return {"route": {"S": route}}


def parse_limit(text):
    if text is None:
        return DEFAULT_LIMIT
    if not LIMIT_PATTERN.fullmatch(text) or not 1 <= int(text) <= MAX_LIMIT:
        raise BadRequest(f"'limit' must be a whole number from 1 to {MAX_LIMIT}")
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
)
CSP = (
    "default-src 'none'; style-src 'sha256-"
    + base64.b64encode(hashlib.sha256(CSS.encode()).digest()).decode()
    + "'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)


def dashboard(routes, title, next_token=None, limit=DEFAULT_LIMIT):
    """One self-contained page: no script, nothing loaded from elsewhere, every route escaped."""
    top = routes[:CHART_BARS]
    peak = max([r["count"] for r in top] + [1])
    bars = "".join(
        f'<rect x="0" y="{i * 22}" width="{max(1, 400 * r["count"] // peak)}" height="18"'
        f' fill="#4a7fb0"/><text x="410" y="{i * 22 + 14}">{r["count"]} '
        f"{html.escape(r['route'][:80], quote=True)}</text>"
        for i, r in enumerate(top)
    )
    rows = "".join(
        f'<tr><td class="r">{html.escape(r["route"], quote=True)}</td>'
        f'<td class="n">{r["count"]}</td><td>{html.escape(r["firstSeen"] or "", quote=True)}'
        f"</td><td>{html.escape(r['lastSeen'] or '', quote=True)}</td></tr>"
        for r in routes
    )
    more = (
        "<p>Sorted by count within this page only; more routes follow: <a href="
        f'"?limit={limit}&amp;next={html.escape(next_token, quote=True)}">next page</a>.</p>'
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
        f"<title>{html.escape(title)}</title><style>{CSS}</style></head><body>"
        f"<h1>{html.escape(title)}</h1>{chart}{more}<table><thead><tr><th>Route</th>"
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


def answer(method, path, query, headers, line):
    """The response to a well-formed proxy event, and what to log about it."""
    route, problem = route_of(path)
    if problem:
        raise BadRequest(problem[1])
    if route != STATS_ROUTE:
        return response(404, {"error": f"no such stats page: {route}; use GET {STATS_ROUTE}"})
    if method == "OPTIONS":
        return response(
            204,
            headers={
                "Allow": "GET, HEAD, OPTIONS",
                "Access-Control-Allow-Methods": "GET, HEAD, OPTIONS",
                "Access-Control-Max-Age": "600",
            },
        )
    if method not in ("GET", "HEAD"):
        return response(
            405,
            {"error": f"{method} is not allowed here; the stats are read with GET"},
            {"Allow": "GET, HEAD, OPTIONS"},
        )
    as_html = wants_html(headers)
    line["format"] = "html" if as_html else "json"
    if "route" in query:
        if set(query) & {"limit", "next"}:
            raise BadRequest("'route' cannot be combined with 'limit' or 'next'")
        route, problem = route_of(query["route"])
        if problem:
            raise BadRequest(f"invalid 'route': {problem[1]}")
        line.update(route=route)
        found = read_route(route)
        if found is None:
            return response(404, {"error": f"route {route} has not been counted"})
        page = dashboard([found], f"Route {route}") if as_html else None
        return response(200, found, html_page=page)
    limit = parse_limit(query.get("limit"))
    start = decode_token(query["next"]) if "next" in query else None
    routes, next_token, calls = read_page(limit, start)
    line.update(routes=len(routes), scanCalls=calls)
    page = dashboard(routes, "Route Counter", next_token, limit) if as_html else None
    return response(200, {"routes": routes, "next": next_token}, html_page=page)


def log(**fields):
    # One JSON line per request; CloudWatch Logs Insights parses it without a pattern.
    print(json.dumps(fields, default=str))


def handler(event, context):
    started = time.monotonic()
    request_id = getattr(context, "aws_request_id", None) or "-"
    event = event if isinstance(event, dict) else {}
    method, path = event.get("httpMethod"), event.get("path")
    line = {"level": "INFO", "requestId": request_id, "method": method, "path": path}
    try:
        if not (isinstance(method, str) and isinstance(path, str) and "requestContext" in event):
            raise BadRequest("not an API Gateway proxy event: expected 'httpMethod' and 'path'")
        query = event.get("queryStringParameters") or {}
        headers = event.get("headers") or {}
        if not (isinstance(query, dict) and isinstance(headers, dict)) or not all(
            isinstance(v, str) for v in [*query.values(), *headers.values()]
        ):
            raise BadRequest("not an API Gateway proxy event: bad query string or headers")
        result = answer(method, path, query, headers, line)
    except BadRequest as error:
        result = response(400, {"error": str(error)})
    except (ClientError, BotoCoreError) as error:
        # Only a ClientError carries AWS's answer; a ReadTimeoutError's .response is None.
        answer_ = error.response.get("Error", {}) if isinstance(error, ClientError) else {}
        code = answer_.get("Code") or type(error).__name__
        transient = code in THROTTLING_CODES or not isinstance(error, ClientError)
        status = 503 if transient else 500
        message = "the stats are busy, retry shortly" if transient else "stats unavailable"
        line.update(level="ERROR", error=type(error).__name__, errorCode=code, detail=str(error))
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
