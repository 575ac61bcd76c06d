"""The DynamoDB reads: pages of routes, one route, the MaxRoutes ledger, hits over time, the
top routes and the front page's summary; each a bounded number of calls, whatever the table
size."""

from .items import (
    ALL_ROUTES,
    CLASSES,
    DEFAULT_MIN_ANSWERS,
    HISTOGRAM,
    LEDGER_KEY,
    MAX_TOP_LIMIT,
    OVERFLOW_ROUTE,
    PARTS_END,
    SERIES,
    TOP,
    TOP_LIMIT,
    answers,
    combined_top,
    four_digit_year,
    number,
    ranked,
    record,
    summed,
)
from .parsing import encode_token, series_range, whole_number
from .settings import LEDGER_TABLE, MAX_ROUTES, SERIES_TABLE, TABLE_NAME, HttpError, dynamodb

ANALYTICS_OFF = "analytics are off for this stack (Analytics=off): no hits over time, no top routes"
# 1000 items of ~1.2 KB need two 1 MB Scan calls; a third covers sparse pages.
MAX_SCAN_CALLS = 3
# /_stats/top?by=: hits (the ranking), errors or latency (of the ranked routes that had at
# least `min` answers).
TOP_ORDERS = ("hits", "errors", "latency")


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


def read_overflow():
    """MaxRoutes as the stats say it, or None without a cap: one GetItem of the ledger."""
    if MAX_ROUTES <= 0:
        return None
    item = dynamodb.get_item(TableName=LEDGER_TABLE, Key=LEDGER_KEY).get("Item") or {}
    taken = int(item.get("routes", {}).get("N", 0))
    return {
        "route": OVERFLOW_ROUTE,
        "maxRoutes": MAX_ROUTES,
        "routes": taken,
        "reached": taken >= MAX_ROUTES,
    }


def read_series(route, series, first, last, points):
    """Hits per bucket of a route (ALL_ROUTES: of every route, its parts summed) from one
    Query: the aggregator keeps each bucket's hits (handler/aggregator.py); a bucket without
    an item had none."""
    prefix, width, key_format, _, _ = SERIES[series]
    request = {
        "TableName": series_table(),
        # "bucket" is one of DynamoDB's reserved words: it is named through #bucket
        "KeyConditionExpression": "route = :r AND #bucket BETWEEN :lo AND :hi",
        "ExpressionAttributeNames": {"#bucket": "bucket"},
        "ExpressionAttributeValues": {
            ":r": {"S": route},
            ":lo": {"S": prefix + four_digit_year(first, key_format)},
            ":hi": {
                "S": prefix
                + four_digit_year(last, key_format)
                + (PARTS_END if route == ALL_ROUTES else "")
            },
        },
        "ProjectionExpression": ", ".join(("#bucket", "hits", *CLASSES, "ms", *HISTOGRAM)),
    }
    found = summed(query_all(request))
    series = []
    for i in range(points):
        item = found.get(prefix + four_digit_year(first + i * width, key_format), {})
        start = four_digit_year(first + i * width, "%Y-%m-%dT%H:%M:%SZ")
        series.append({"start": start, "count": number(item, "hits"), **answers(item)})
    return series


def query_all(request):
    """Every item a Query finds: one page holds a year of buckets, or a month of 16 shards'
    parts; a second only past 1 MB."""
    items = []
    while True:
        page = dynamodb.query(**request)
        items += page.get("Items", [])
        if "LastEvaluatedKey" not in page:
            return items
        request = {**request, "ExclusiveStartKey": page["LastEvaluatedKey"]}


def read_totals():
    """All routes' totals of all time: the parts of ("#all", "all") summed, from one Query
    (at most SHARD_PARTS + 1 small items: one page)."""
    items = query_all(
        {
            "TableName": SERIES_TABLE,
            "KeyConditionExpression": "route = :r AND #bucket BETWEEN :lo AND :hi",
            "ExpressionAttributeNames": {"#bucket": "bucket"},
            "ExpressionAttributeValues": {
                ":r": {"S": ALL_ROUTES},
                ":lo": {"S": "all"},
                ":hi": {"S": "all" + PARTS_END},
            },
            "ProjectionExpression": "#bucket, hits, routes",
        }
    )
    return summed(items).get("all", {})


def series_table():
    if not SERIES_TABLE:
        raise HttpError(404, ANALYTICS_OFF)
    return SERIES_TABLE


def route_charts(route, now):
    """A route's (ALL_ROUTES: every route's) dashboard charts: the last 24 hours by hour,
    the last 30 days by day (one Query each); none with the analytics off."""
    charts = []
    if not SERIES_TABLE:
        return charts
    for series in ("hour", "day"):
        first, last, points = series_range(series, {}, now)
        charts.append(
            (chart_heading(series, route), read_series(route, series, first, last, points))
        )
    return charts


def chart_heading(series, route):
    span = "per hour, last 24 hours" if series == "hour" else "per day, last 30 days"
    return f"Hits {span}" + (", all routes" if route == ALL_ROUTES else "")


def top_bucket(period, now):
    if period not in ("all", "day"):
        raise HttpError(400, "'period' must be 'all' or 'day' (today, UTC)")
    return "all" if period == "all" else "d#" + now.strftime("%Y-%m-%d")


def read_top_item(bucket):
    """A top item, its parts combined: one Query of `bucket` to `bucket#~` (at most the
    aggregator's RANK_PARTS + 1 items of at most 8 KB: one page); None before any batch."""
    parts = query_all(
        {
            "TableName": series_table(),
            "KeyConditionExpression": "route = :r AND #bucket BETWEEN :lo AND :hi",
            "ExpressionAttributeNames": {"#bucket": "bucket"},
            "ExpressionAttributeValues": {
                ":r": {"S": TOP},
                ":lo": {"S": bucket},
                ":hi": {"S": bucket + PARTS_END},
            },
        }
    )
    return combined_top(parts) if parts else None


def read_top(query, now):
    """The global top routes of all time or of today: one Query of the aggregator's item's
    parts, whatever the table size; by hits, or its routes by error rate or mean latency."""
    period = query.get("period", "all")
    bucket = top_bucket(period, now)
    limit = whole_number(query.get("limit"), "limit", TOP_LIMIT, MAX_TOP_LIMIT)
    by = query.get("by", "hits")
    if by not in TOP_ORDERS:
        raise HttpError(400, "'by' must be 'hits', 'errors' or 'latency'")
    if "min" in query and by == "hits":
        raise HttpError(400, "'min' only comes with by=errors or by=latency")
    least = whole_number(query.get("min"), "min", DEFAULT_MIN_ANSWERS, 9999)
    answer = {**ranked(read_top_item(bucket), limit, by, least), "period": period}
    if by != "hits":
        answer.update(by=by, min=least)
    return {**answer, "day": bucket[2:]} if period == "day" else answer


def read_summary(now):
    """What the dashboard's front page shows besides its page of routes, in three Query
    calls: the top routes of all time and of today (each its parts), and the totals of
    every route (hits and routes counted since the stream was turned on)."""
    today = top_bucket("day", now)
    top, top_today, totals = read_top_item("all"), read_top_item(today), read_totals()
    return {
        "top": ranked(top),
        "today": {**ranked(top_today), "day": today[2:]},
        "totals": {
            "hits": int(totals.get("hits", {}).get("N", 0)),
            "routes": int(totals.get("routes", {}).get("N", 0)),
        },
    }
