"""The Lambda entry point: the event checked, access, the dispatch to the stats pages, the
responses; AWS faults answered 5xx with the request id; one JSON log line a request."""

import datetime
import json
import time

from botocore.exceptions import BotoCoreError, ClientError

from .access import check_access
from .dashboard import CSP, dashboard, error_page, usage_page
from .items import ALL_ROUTES
from .parsing import (
    SERIES_PARAMETERS,
    decode_token,
    parse_days,
    parse_limit,
    parse_position,
    series_range,
    wants_html,
)
from .reads import (
    read_overflow,
    read_page,
    read_route,
    read_series,
    read_summary,
    read_top,
    route_charts,
)
from .routes import routed
from .settings import ALLOWED_ORIGIN, SERIES_TABLE, STATS_ROUTE, STATS_TOKEN_SECRET, UTC, HttpError
from .usage import read_usage, usage_csv, usage_link

THROTTLING_CODES = {
    "ProvisionedThroughputExceededException",
    "RequestLimitExceeded",
    "ThrottlingException",
}
METHODS_ALLOWED = "GET, HEAD, OPTIONS"


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


def usage_response(query, headers, now):
    """The usage answer in the format asked for, and the fields to log."""
    body, chosen = read_usage(query, headers, now)
    fields = {"format": chosen, "month": body["month"], "client": "client" in body}
    limit = parse_limit(query.get("limit"))
    extra = {}
    if body["next"]:
        link = usage_link(body["month"], body.get("client"), body["next"], limit)
        extra["Link"] = f'<{link}>; rel="next"'
    if wants_html(headers) and "format" not in query:
        fields["format"] = "html"
        return response(200, body, extra, html_page=usage_page(body, limit, now)), fields
    if chosen == "csv":
        name = f"usage-{body['month']}.csv"
        extra.update(
            {
                "Content-Type": "text/csv; charset=utf-8; header=present",
                "Content-Disposition": f'attachment; filename="{name}"',
            }
        )
        result = response(200, headers=extra)
        result["body"] = usage_csv(body, first_page="next" not in query)
        return result, fields
    return response(200, body, extra), fields


PAGING = {"limit", "next", "at", "back"}  # a page of routes' parameters


def preflight():
    """The answer to a CORS preflight (OPTIONS): what a page of another origin may send."""
    cors = {"Access-Control-Allow-Methods": METHODS_ALLOWED, "Access-Control-Max-Age": "600"}
    if STATS_TOKEN_SECRET and ALLOWED_ORIGIN:
        # A page of the allowed origin that holds the token may send it; no
        # Access-Control-Allow-Credentials ever: a browser's remembered Basic password
        # never reads the stats for another origin (docs/security-private-stats.md).
        cors["Access-Control-Allow-Headers"] = "Authorization"
    return response(204, headers={"Allow": METHODS_ALLOWED, **cors})


def alone(query, name):
    if set(query) & PAGING:
        raise HttpError(400, f"'{name}' cannot be combined with 'limit', 'next', 'at' or 'back'")


def no_range_without_series(query):
    if set(query) & SERIES_PARAMETERS:
        raise HttpError(400, "'from' and 'to' need a 'series' ('hour' or 'day')")


def series_response(route, query, now, fields):
    """Hits over time of one route, or (ALL_ROUTES) of every route, as JSON."""
    first, last, points = series_range(query["series"], query, now)
    named = None if route == ALL_ROUTES else route  # None: every route
    body = {
        "route": named,
        "series": query["series"],
        "points": read_series(route, query["series"], first, last, points),
    }
    return response(200, body), {**fields, "route": named, "points": points}


def route_response(route, query, as_html, now, fields):
    """One route's counter item, or in a browser its page (with its charts)."""
    no_range_without_series(query)
    found = read_route(route)
    if found is None:
        raise HttpError(404, f"route {route} has not been counted")
    page = None
    if as_html:
        charts = route_charts(route, now)
        page = dashboard([found], f"Route {route}", single=True, series=charts)
    return response(200, found, html_page=page), {**fields, "route": route}


def routes_response(query, as_html, stale, now, fields):
    """A page of routes, or in a browser the dashboard's front page."""
    no_range_without_series(query)
    limit = parse_limit(query.get("limit"))
    position = parse_position(query)
    routes, next_token, calls = read_page(limit, position and decode_token(position[0]))
    overflow = read_overflow()
    page = None
    if as_html:  # 1 BatchGetItem and 2 Query besides the page's Scan, whatever the table size
        summary = read_summary(now) if SERIES_TABLE else None  # off: the routes alone
        charts = route_charts(ALL_ROUTES, now)
        page = dashboard(
            routes,
            "Route Counter",
            next_token,
            limit,
            position=position,
            stale=stale,
            now=now.timestamp(),
            series=charts,
            summary=summary,
            overflow=overflow,
        )
    body = {"routes": routes, "next": next_token}
    if overflow:
        body["overflow"] = overflow
    result = response(200, body, html_page=page)
    return result, {**fields, "routes": len(routes), "scanCalls": calls}


def stats_response(query, headers, now):
    """GET <stats>: one route (`route`), hits over time (`series`) or a page of routes; as
    JSON, or in a browser as the dashboard."""
    as_html = wants_html(headers)
    fields = {"format": "html" if as_html else "json"}
    # The dashboard's own parameters are checked for JSON too; they never change its shape.
    stale = parse_days(query.get("stale"))
    if "route" in query:
        alone(query, "route")
        route = routed(query["route"], "'route'")
        if "series" in query:
            return series_response(route, query, now, fields)
        return route_response(route, query, as_html, now, fields)
    if "series" in query:
        alone(query, "series")
        return series_response(ALL_ROUTES, query, now, fields)
    return routes_response(query, as_html, stale, now, fields)


def top_response(query, headers, now):
    """GET <stats>/top: the global top routes, as JSON."""
    top = read_top(query, now)
    return response(200, top), {"format": "json", "routes": len(top["routes"])}


# The stats pages by their path below STATS_ROUTE: each answers (query, headers, now) with
# the response and the fields to log.
PAGES = {"": stats_response, "/top": top_response, "/usage": usage_response}


def answer(method, path, query, headers):
    """The response to a well-formed proxy event, and the fields to log about it."""
    route = routed(path, "path")
    page = PAGES.get(route.removeprefix(STATS_ROUTE)) if route.startswith(STATS_ROUTE) else None
    if page is None:
        raise HttpError(404, f"no such stats page: {route}; use GET {STATS_ROUTE}")
    if method == "OPTIONS":
        return preflight(), {}
    if method not in ("GET", "HEAD"):
        message = f"{method} is not allowed here; the stats are read with GET"
        raise HttpError(405, message, {"Allow": METHODS_ALLOWED})
    return page(query, headers, datetime.datetime.now(UTC))


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
    html_errors = False
    try:
        if not (isinstance(method, str) and isinstance(path, str) and "requestContext" in event):
            raise HttpError(400, "not an API Gateway proxy event: expected 'httpMethod' and 'path'")
        query = event.get("queryStringParameters") or {}
        headers = event.get("headers") or {}
        if not (isinstance(query, dict) and isinstance(headers, dict)) or not all(
            isinstance(v, str) for v in [*query.values(), *headers.values()]
        ):
            raise HttpError(400, "not an API Gateway proxy event: bad query string or headers")
        html_errors = method in ("GET", "HEAD") and wants_html(headers)
        # A preflight carries no credentials (Fetch standard) and reads nothing.
        if STATS_TOKEN_SECRET and method != "OPTIONS":
            check_access(headers, event.get("multiValueHeaders"))
        result, fields = answer(method, path, query, headers)
    except HttpError as error:
        result, fields = response(error.status, {"error": str(error)}, error.headers), {}
        if html_errors:
            page = error_page(error.status, str(error), path.startswith(STATS_ROUTE + "/"))
            result = response(error.status, headers=error.headers, html_page=page)
    except (ClientError, BotoCoreError) as error:
        result, fields = aws_fault(error, request_id)
    latency = round((time.monotonic() - started) * 1000, 1)
    level = "ERROR" if result["statusCode"] >= 500 else "INFO"
    line = {"level": level, "requestId": request_id, "method": method, "path": path}
    log(**line, **fields, status=result["statusCode"], latencyMs=latency)
    return result
