"""Route Counter stats, as JSON or an HTML page; never counts. README.md: "GET /_stats"."""

import base64
import calendar
import csv
import datetime
import hashlib
import hmac
import html
import io
import json
import os
import re
import time
import unicodedata
import urllib.parse
from http import HTTPStatus

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

TABLE_NAME = os.environ.get("TABLE_NAME", "")
# Empty when the stack's Analytics parameter is off: no series, no top routes.
SERIES_TABLE = os.environ.get("SERIES_TABLE", "")
ANALYTICS_OFF = "analytics are off for this stack (Analytics=off): no hits over time, no top routes"
ALLOWED_ORIGIN = os.environ.get("ALLOWED_ORIGIN", "")
STATS_ROUTE = os.environ.get("STATS_ROUTE") or "/_stats"
# PrivateStats: the ARN of the secret holding the stats token; empty: the stats are public.
STATS_TOKEN_SECRET = os.environ.get("STATS_TOKEN_SECRET", "")
# A token read from Secrets Manager is used this long: a rotated-out token stops working
# within it. One that does not match re-reads the secret, at most once per
# TOKEN_REREAD_SECONDS per container: a new token works within that (and a flood of wrong
# tokens costs at most one GetSecretValue per container per TOKEN_REREAD_SECONDS).
TOKEN_TTL_SECONDS = 300
TOKEN_REREAD_SECONDS = 30
# Browsers ask for a user name and password on a 401 with this challenge (RFC 7617).
CHALLENGE = {"WWW-Authenticate": 'Basic realm="Route Counter stats", charset="UTF-8"'}
PRIVATE = (
    "the stats are private: send the stats token as the password of HTTP Basic "
    "authentication (any user name), or as 'Authorization: Bearer <token>'"
)
DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
# 1000 items of ~1.2 KB need two 1 MB Scan calls; a third covers sparse pages.
MAX_SCAN_CALLS = 3
CHART_LABEL = 80  # characters of a route in a chart label
DEFAULT_STALE_DAYS = 7
MAX_STALE_DAYS = 3650
STALE_CHOICES = (1, 7, 30, 90)
# Earlier pages a dashboard link remembers for its "previous" link: a URL has to stay well
# under API Gateway's 10,240 bytes of request line and headers; one token can take 2,731.
MAX_BACK = 8
MAX_BACK_CHARS = 2048
THROTTLING_CODES = {
    "ProvisionedThroughputExceededException",
    "RequestLimitExceeded",
    "ThrottlingException",
}
LIMIT_PATTERN = re.compile(r"[0-9]{1,4}")
AT_PATTERN = re.compile(r"0|[1-9][0-9]{0,8}")
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
# The aggregator's items (handler/aggregator.py): bucket "all" of the top routes and of
# all routes' totals, "d#<day>" of a day's top routes, and the series of all routes.
TOP, ALL_ROUTES = "#top", "#all"
# All routes' items come in parts, one per stream shard: "<bucket>#<part>" (and the
# un-suffixed "<bucket>" of batches that named no shard); a read sums them. "~" sorts after
# every part, so "<bucket>#~" ends a Query range that holds them all.
PARTS_END = "#~"
# MaxRoutes (docs/routes.md): past it, new routes count as OVERFLOW_ROUTE; the counter keeps
# how many routes it let in on this series-table item (handler/counter.py's ledger).
MAX_ROUTES = int(os.environ.get("MAX_ROUTES") or 0)
# MaxRoutes' ledger lives in the series table, which has it even with Analytics off
LEDGER_TABLE = os.environ.get("LEDGER_TABLE", "")
OVERFLOW_ROUTE = "/{overflow}"
LEDGER_KEY = {"route": {"S": "#routes"}, "bucket": {"S": "cap"}}
TOP_LIMIT, MAX_TOP_LIMIT = 10, 100
# A top item written before the rankings came in parts keeps no `leftOut`: it may have left
# routes out when it holds the aggregator's TOP_SIZE (100) routes, or has no room left under
# its TOP_BYTES (8 KB) for the longest entry (a 1 KB route, 24 bytes, 88 with answers).
TOP_SIZE, OLD_TOP_ROOM = 100, 8 * 1024 - (1024 + 24 + 88)
# With a backend (docs/monitoring.md): the status classes the counter item and the buckets
# count, and the bounds (ms) of the buckets' exact latency histogram, as the aggregator
# writes them (handler/aggregator.py); a percentile is read as its bucket's upper bound.
CLASSES = ("s2xx", "s3xx", "s4xx", "s5xx")
LATENCY_BOUNDS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 30000)
HISTOGRAM = (*(f"le{bound}" for bound in LATENCY_BOUNDS), "leInf")
PERCENTILES = (50, 90, 99)
# /_stats/top?by=: hits (the ranking), errors or latency (of the ranked routes that had at
# least `min` answers).
TOP_ORDERS = ("hits", "errors", "latency")
DEFAULT_MIN_ANSWERS = 10
# Client usage (docs/usage-billing.md), as handler/aggregator.py writes it: "#usage#<c>" holds a
# client's day totals ("d#<day>" in shard parts) and its routes of a month ("r#<month>#<route
# key>"); "#clients#<month>" every client's month total ("<c>" in shard parts). <c> and the
# route key are client_key()s; the items keep the client id and the route themselves.
CLIENT_IDENTITY = os.environ.get("CLIENT_IDENTITY", "none")
USAGE, CLIENT_MONTHS = "#usage#", "#clients#"
MONTH_PATTERN = re.compile(r"[0-9]{4}-(0[1-9]|1[0-2])")
KEY_PATTERN = re.compile("[0-9a-f]{32}")  # a `next` token of the usage pages
MAX_CLIENT_CHARS = 256
# A page of clients reads parts: enough per Query for one client's every part (SHARD_PARTS in
# handler/aggregator.py, and its un-suffixed item) besides a few per client asked for.
CLIENT_PARTS = 1025
USAGE_FORMATS = ("json", "csv")
USAGE_COLUMNS = ("kind", "month", "client", "day", "route", "hits")
# A spreadsheet runs a cell that starts with one of these as a formula (CSV injection): such a
# value is written with a leading apostrophe (docs/usage-billing.md).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")

CLIENT_CONFIG = Config(
    connect_timeout=1,
    read_timeout=2,
    retries={"mode": "standard", "total_max_attempts": 3},
)
dynamodb = boto3.client("dynamodb", config=CLIENT_CONFIG)
secrets = boto3.client("secretsmanager", config=CLIENT_CONFIG) if STATS_TOKEN_SECRET else None
token_cache = {"token": "", "read_at": None}  # this container's copy of the stats token


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
        return None, (414, f"its route is {len(path)} bytes long; the limit is {MAX_PATH_BYTES}")
    return path, None


# A route RouteTemplates names (/users/{id}, /files/{path+}) or a route of its own
# (/{overflow}, /{unmatched}): braces a real path never keeps (route_of escapes them), so such
# a name is looked up as it is written.
NAMED_ROUTE = re.compile(
    r"(/([A-Za-z0-9._~!$&'()*+,;=:@-]|%[0-9A-F]{2})+|/\{[A-Za-z0-9._~-]+\+?\})+"
)


def routed(path, what):
    if "{" in path and NAMED_ROUTE.fullmatch(path):
        return path
    route, problem = route_of(path)
    if problem:
        raise HttpError(400, f"invalid {what}: {problem[1]}")
    return route


def number(item, name):
    return int(item.get(name, {}).get("N", 0))


def status_classes(item):
    """{"2xx": .., "5xx": ..} of an item's class counters, or None when it has none."""
    classes = {name[1:]: number(item, name) for name in CLASSES}
    return classes if any(classes.values()) else None


def percentile(histogram, share):
    """The upper bound (ms) of the latency bucket that holds the `share` percentile by
    nearest rank (the ceil(share% * n)-th answer), None past the last bound or with no
    answers: exact at the buckets' resolution."""
    rank = -(-sum(histogram) * share // 100)
    seen = 0
    for bound, hits in zip((*LATENCY_BOUNDS, None), histogram, strict=True):
        seen += hits
        if rank and seen >= rank:
            return bound
    return None


def answers(item):
    """A series bucket's answers: {"status": {...}, "latencyMs": {mean, p50, p90, p99}}, or
    {} when its hits had none (a stack without a backend)."""
    classes = status_classes(item)
    if classes is None:
        return {}
    histogram = [number(item, name) for name in HISTOGRAM]
    latency = {"mean": round(number(item, "ms") / sum(classes.values()), 1)}
    latency.update({f"p{share}": percentile(histogram, share) for share in PERCENTILES})
    return {"status": classes, "latencyMs": latency}


def record(item):
    found = {
        "route": item["route"]["S"],
        "count": int(item.get("count", {}).get("N", 0)),
        "firstSeen": item.get("firstSeen", {}).get("S"),
        "lastSeen": item.get("lastSeen", {}).get("S"),
    }
    classes = status_classes(item)
    if classes:  # the counter item's answers of all time, with a backend
        mean = number(item, "latencyMsTotal") / sum(classes.values())
        found.update(status=classes, latencyMs={"mean": round(mean, 1)})
    return found


def encode_token(key):
    return base64.urlsafe_b64encode(key["route"]["S"].encode()).decode().rstrip("=")


def decode_token(token, name="'next' token"):
    """The key a page starts after. Not signed: it names a route its reader may list anyway."""
    try:
        if not TOKEN_PATTERN.fullmatch(token):
            raise ValueError
        route = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
        if not route.startswith("/"):
            raise ValueError
    except ValueError:  # binascii.Error and UnicodeDecodeError are ValueErrors
        raise HttpError(400, f"invalid {name}: pass back the 'next' value of a page") from None
    return {"route": {"S": route}}


def whole_number(text, name, default, most):
    """A query parameter's whole number from 1 to most, or default when it is absent."""
    if text is None:
        return default
    if not LIMIT_PATTERN.fullmatch(text) or not 1 <= int(text) <= most:
        raise HttpError(400, f"'{name}' must be a whole number from 1 to {most}")
    return int(text)


def parse_limit(text):
    return whole_number(text, "limit", DEFAULT_LIMIT, MAX_LIMIT)


def parse_days(text):
    if text is None:
        return DEFAULT_STALE_DAYS
    if not LIMIT_PATTERN.fullmatch(text) or not 1 <= int(text) <= MAX_STALE_DAYS:
        raise HttpError(400, f"'stale' must be a whole number of days from 1 to {MAX_STALE_DAYS}")
    return int(text)


def parse_position(query):
    """(token, routes before the page or None, earlier pages [(at, token)]) or None: where a
    dashboard link says a page is. `at` and `back` only label pages and link back."""
    if "next" not in query:
        if set(query) & {"at", "back"}:
            raise HttpError(400, "'at' and 'back' only come with 'next'")
        return None
    token = query["next"]
    decode_token(token)
    at = query.get("at")
    if at is not None and not AT_PATTERN.fullmatch(at):
        raise HttpError(400, "'at' must be the number of routes before this page")
    at = None if at is None else int(at)
    back, trail = [], query.get("back")
    if trail is not None:
        entries = [entry.partition("~") for entry in trail.split(".")]
        if (
            at is None
            or len(trail) > MAX_BACK_CHARS
            or len(entries) > MAX_BACK
            or not all(AT_PATTERN.fullmatch(a) and (t or a == "0") for a, _, t in entries)
        ):
            raise HttpError(400, "invalid 'back': pass back a dashboard link as it was")
        back = [(int(a), t) for a, _, t in entries]
        for _, earlier_token in back:
            if earlier_token:
                decode_token(earlier_token, "'back' token")
        places = [a for a, _ in back] + [at]
        if places != sorted(set(places)):
            raise HttpError(400, "invalid 'back': its pages must come before this one in order")
    return token, at, back


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


def series_key(route, bucket):
    return {"route": {"S": route}, "bucket": {"S": bucket}}


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


def overflow_note(overflow):
    if not overflow:
        return ""
    taken, cap = overflow["routes"], overflow["maxRoutes"]
    state = "reached" if overflow["reached"] else f"{taken:,} of {cap:,} routes taken"
    return (
        f"<p class=note><b>MaxRoutes {cap:,}: {state}.</b> Past it, every new route counts"
        f" as {shown(overflow['route'])}.</p>"
    )


def query_time(query, name):
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
    try:
        return moment.astimezone(UTC)
    except OverflowError:  # an offset that takes it past year 9999 or before year 1
        raise HttpError(400, "'from' and 'to' must be years 1 to 9999") from None


def bucket_start(moment, width):
    if width == datetime.timedelta(days=1):
        return moment.replace(hour=0, minute=0, second=0, microsecond=0)
    return moment.replace(minute=0, second=0, microsecond=0)


def series_range(series, query, now):
    """The first and last bucket start of the range asked for, and the number of points."""
    if series not in SERIES:
        raise HttpError(400, "'series' must be 'hour' or 'day'")
    _, width, _, default_points, most = SERIES[series]
    first, last = query_time(query, "from"), query_time(query, "to")
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


def four_digit_year(moment, layout):
    """strftime with the year as ISO 8601 writes it: glibc's %Y does not pad year 1 to 0001."""
    return moment.strftime(layout.replace("%Y", f"{moment.year:04d}"))


def whole_bucket(bucket):
    """The bucket an all-routes item counts for: its name without a shard part."""
    kept = 2 if bucket[:2] in ("h#", "d#") else 1  # "h#<hour>", "d#<day>" or "all"
    return "#".join(bucket.split("#")[:kept])


def summed(items):
    """bucket -> one item whose numbers are the sums of the items of that bucket's parts."""
    found = {}
    for item in items:
        whole = found.setdefault(whole_bucket(item["bucket"]["S"]), {})
        for name, value in item.items():
            if "N" in value:
                total = int(whole.get(name, {"N": "0"})["N"]) + int(value["N"])
                whole[name] = {"N": str(total)}
    return found


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


def answers_heading(heading):
    """The answers chart's heading beside its hits chart's ("Hits per hour, ...")."""
    return "Answers" + heading.removeprefix("Hits")


def chart_heading(series, route):
    span = "per hour, last 24 hours" if series == "hour" else "per day, last 30 days"
    return f"Hits {span}" + (", all routes" if route == ALL_ROUTES else "")


def top_bucket(period, now):
    if period not in ("all", "day"):
        raise HttpError(400, "'period' must be 'all' or 'day' (today, UTC)")
    return "all" if period == "all" else "d#" + now.strftime("%Y-%m-%d")


def top_route(route, value):
    """A top item's entry as answered: its count, and with a backend's answers its error
    rates and mean latency (the aggregator stores [count, answered, 4xx, 5xx, latency sum])."""
    if "N" in value:
        return {"route": route, "count": int(value["N"])}
    count, answered, s4xx, s5xx, total_ms = (int(n["N"]) for n in value["L"])
    return {
        "route": route,
        "count": count,
        "answered": answered,
        "errorRate": {"4xx": round(s4xx / answered, 4), "5xx": round(s5xx / answered, 4)},
        "latencyMs": {"mean": round(total_ms / answered, 1)},
    }


def error_order(route):
    rates = route["errorRate"]
    return -rates["5xx"], -rates["4xx"], route["route"]


def ordered(routes, by, least):
    """The ranked routes by hits, or (of those with at least `least` answers) by error rate
    (5xx, then 4xx) or by mean latency, highest first."""
    if by == "hits":
        return sorted(routes, key=lambda r: (-r["count"], r["route"]))
    answered = [r for r in routes if r.get("answered", 0) >= least]
    if by == "errors":
        return sorted(answered, key=error_order)
    return sorted(answered, key=lambda r: (-r["latencyMs"]["mean"], r["route"]))


def ranked(item, limit=MAX_TOP_LIMIT, by="hits", least=DEFAULT_MIN_ANSWERS):
    """A top item as answered: {"routes": [{"route", "count", ...}], "asOf"}, highest first
    by `by` (ordered())."""
    entries = (item or {}).get("routes", {}).get("M", {}).items()
    routes = ordered([top_route(r, v) for r, v in entries], by, least)
    return {"routes": routes[:limit], "asOf": (item or {}).get("asOf", {}).get("S")}


def entry_value(value):
    """(count, has answers) of a top item's entry: a number, or [count, answers...]."""
    return (int(value["N"]), False) if "N" in value else (int(value["L"][0]["N"]), True)


def entry_bytes(route, value):
    return len(route.encode()) + 24 + (0 if "N" in value else 88)


def left_out(item):
    """The bound of a top part as (-count, route, after): its ranking holds every route ranked
    ahead of the route it left out first (after: ahead of or at it); None when it holds every
    route it was given. A part written before parts (no `leftOut`) that may have been cut is
    exact down to its last route only."""
    if "leftOut" in item:
        stored = item["leftOut"].get("L")
        return (-int(stored[0]["N"]), stored[1]["S"], len(stored) > 2) if stored else None
    entries = item.get("routes", {}).get("M", {})
    size = sum(entry_bytes(r, v) for r, v in entries.items())
    if entries and (len(entries) >= TOP_SIZE or size > OLD_TOP_ROOM):
        return max((-entry_value(v)[0], r, True) for r, v in entries.items())
    return None


def combined_top(parts):
    """A top item's parts (one per ranking part of the stream shards, and the un-suffixed one
    of batches that named no shard) as one item. A route lives in one shard and its entries
    only grow, so its highest entry across parts is its entry; every route ranked ahead of
    the first route each part left out is in that part (if it has any), so those routes are
    exact and complete, and they start with the ranking one item of all routes would hold
    (docs/analytics-at-scale.md)."""
    best, bounds = {}, []
    for part in parts:
        for route, value in part.get("routes", {}).get("M", {}).items():
            if route not in best or entry_value(value) > entry_value(best[route]):
                best[route] = value
        bound = left_out(part)
        if bound is not None:
            bounds.append(bound)
    bound = min(bounds, default=None)
    ranks = sorted((-entry_value(v)[0], r) for r, v in best.items())
    kept = [route for minus, route in ranks if bound is None or (minus, route, False) < bound]
    as_of = max((p["asOf"]["S"] for p in parts if "asOf" in p), default=None)
    combined = {"routes": {"M": {r: best[r] for r in kept[:TOP_SIZE]}}}
    return {**combined, "asOf": {"S": as_of}} if as_of else combined


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


def client_key(text):
    """A client's (or a route's) name in the usage items' keys (handler/aggregator.py's)."""
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def parse_month(text, now):
    """A query's month ("2026-12"), this month (UTC) when absent."""
    if text is None:
        return now.strftime("%Y-%m")
    if not MONTH_PATTERN.fullmatch(text):
        raise HttpError(400, "'month' must be a calendar month such as 2026-12")
    return text


def parse_client(text):
    if text is None:
        return None
    if not 1 <= len(text) <= MAX_CLIENT_CHARS or CONTROL_CHARACTERS.search(text):
        raise HttpError(
            400, f"'client' must be a client id of 1 to {MAX_CLIENT_CHARS} printable characters"
        )
    return text


def parse_key_token(text):
    if text is not None and not KEY_PATTERN.fullmatch(text):
        raise HttpError(400, "invalid 'next' token: pass back the 'next' value of a page")
    return text


def usage_format(query, headers):
    """ "csv" for format=csv or an Accept that ranks text/csv above JSON, else "json"."""
    chosen = query.get("format")
    if chosen is not None and chosen not in USAGE_FORMATS:
        raise HttpError(400, "'format' must be 'json' or 'csv'")
    return chosen or ("csv" if ranked_above(headers, "text/csv", "application/json") else "json")


def usage_query(request):
    """The usage items a Query of the series table finds (every page)."""
    return query_all({"TableName": series_table(), **request})


def client_month_total(who, month):
    """The client's hits of the month: its parts summed, one Query (at most CLIENT_PARTS
    small items)."""
    key = client_key(who)
    items = usage_query(
        {
            "KeyConditionExpression": "route = :r AND #bucket BETWEEN :lo AND :hi",
            "ExpressionAttributeNames": {"#bucket": "bucket"},
            "ExpressionAttributeValues": {
                ":r": {"S": CLIENT_MONTHS + month},
                ":lo": {"S": key},
                ":hi": {"S": key + PARTS_END},
            },
            "ProjectionExpression": "hits",
        }
    )
    return sum(number(item, "hits") for item in items)


def client_days(who, month):
    """[{"day", "hits"}] of every day of the month, the parts summed: one Query (31 days of
    at most CLIENT_PARTS parts each)."""
    items = usage_query(
        {
            "KeyConditionExpression": "route = :r AND begins_with(#bucket, :day)",
            "ExpressionAttributeNames": {"#bucket": "bucket"},
            "ExpressionAttributeValues": {
                ":r": {"S": USAGE + client_key(who)},
                ":day": {"S": f"d#{month}-"},
            },
            "ProjectionExpression": "#bucket, hits",
        }
    )
    found = summed(items)
    year, number_of_month = (int(part) for part in month.split("-"))
    days = calendar.monthrange(year, number_of_month)[1]
    return [
        {"day": f"{month}-{d:02d}", "hits": number(found.get(f"d#{month}-{d:02d}", {}), "hits")}
        for d in range(1, days + 1)
    ]


def client_routes(who, month, limit, after):
    """A page of the client's routes that month ([{"route", "hits"}], by hits within the
    page) and the next token: at most MAX_SCAN_CALLS Query calls (a route is 1 KB at most)."""
    own = USAGE + client_key(who)
    request = {
        "TableName": series_table(),
        "KeyConditionExpression": "route = :r AND begins_with(#bucket, :month)",
        "ExpressionAttributeNames": {"#bucket": "bucket"},
        "ExpressionAttributeValues": {":r": {"S": own}, ":month": {"S": f"r#{month}#"}},
        "ProjectionExpression": "#bucket, hits, routeName",
    }
    key = {"route": {"S": own}, "bucket": {"S": f"r#{month}#{after}"}} if after else None
    items, calls = [], 0
    while calls < MAX_SCAN_CALLS and len(items) < limit:
        start = {"ExclusiveStartKey": key} if key else {}
        page = dynamodb.query(**request, Limit=limit - len(items), **start)
        calls += 1
        items += page.get("Items", [])
        key = page.get("LastEvaluatedKey")
        if not key:
            break
    routes = [{"route": i["routeName"]["S"], "hits": number(i, "hits")} for i in items]
    routes.sort(key=lambda r: (-r["hits"], r["route"]))
    return routes, (key["bucket"]["S"].rsplit("#", 1)[1] if key else None)


def month_clients(month, limit, after):
    """A page of the month's clients ([{"client", "hits"}], by hits within the page; a page
    may hold fewer than `limit`) and the next token: each client's parts summed, from at most
    MAX_SCAN_CALLS Query calls, each of which can hold a client's every part."""
    values = {":r": {"S": CLIENT_MONTHS + month}}
    condition = "route = :r"
    if after:
        condition += " AND #bucket > :after"
        values[":after"] = {"S": after + PARTS_END}
    request = {
        "TableName": series_table(),
        "KeyConditionExpression": condition,
        "ExpressionAttributeNames": {"#bucket": "bucket", "#client": "client"},
        "ExpressionAttributeValues": values,
        "ProjectionExpression": "#bucket, hits, #client",
        "Limit": CLIENT_PARTS + 4 * (limit + 1),
    }
    groups, more, calls = {}, True, 0  # client key -> [client, hits], in key order
    while calls < MAX_SCAN_CALLS and len(groups) <= limit:
        page = dynamodb.query(**request)
        calls += 1
        for item in page.get("Items", []):
            entry = groups.setdefault(item["bucket"]["S"][:32], [item["client"]["S"], 0])
            entry[1] += number(item, "hits")
        more = "LastEvaluatedKey" in page
        if not more:
            break
        request["ExclusiveStartKey"] = page["LastEvaluatedKey"]
    keys = list(groups)
    if more:
        keys = keys[:-1]  # its parts may go on past what was read
    keys = keys[:limit]
    clients = [{"client": groups[k][0], "hits": groups[k][1]} for k in keys]
    clients.sort(key=lambda c: (-c["hits"], c["client"]))
    has_next = more or len(groups) > len(keys)
    return clients, (keys[-1] if has_next and keys else None)


def read_usage(query, headers, now):
    """GET <stats>/usage: a client's month (total, days, a page of routes) or a page of the
    month's clients; as JSON, CSV or (in a browser) the clients view."""
    unknown = set(query) - {"month", "client", "limit", "next", "format"}
    if unknown:
        raise HttpError(400, f"unknown parameter: {sorted(unknown)[0]}; see docs/usage-billing.md")
    month = parse_month(query.get("month"), now)
    who = parse_client(query.get("client"))
    limit = parse_limit(query.get("limit"))
    after = parse_key_token(query.get("next"))
    chosen = usage_format(query, headers)
    if who is None:
        clients, next_token = month_clients(month, limit, after)
        body = {"month": month, "clients": clients, "next": next_token}
    else:
        routes, next_token = client_routes(who, month, limit, after)
        body = {
            "month": month,
            "client": who,
            "hits": client_month_total(who, month),
            "days": client_days(who, month),
            "routes": routes,
            "next": next_token,
        }
    return body, chosen


def csv_cell(value):
    """A value as a CSV cell: one a spreadsheet would run as a formula gets a leading
    apostrophe (OWASP's advice), so it is shown as text."""
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(FORMULA_STARTS) else text


def usage_csv(body, first_page=True):
    """The usage as RFC 4180 CSV (CRLF, fields quoted when they hold a comma, quote or line
    break): one row per client of the page, or the client's routes of the page, after its
    total and days on the first page only (a billing import adds up every page's rows)."""
    rows = []
    month = body["month"]
    if "clients" in body:
        rows += [("client", month, c["client"], None, None, c["hits"]) for c in body["clients"]]
    else:
        who = body["client"]
        if first_page:
            rows.append(("total", month, who, None, None, body["hits"]))
            rows += [("day", month, who, d["day"], None, d["hits"]) for d in body["days"]]
        rows += [("route", month, who, None, r["route"], r["hits"]) for r in body["routes"]]
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(USAGE_COLUMNS)
    writer.writerows([csv_cell(v) for v in row] for row in rows)
    return out.getvalue()


def usage_link(month, who=None, after=None, limit=DEFAULT_LIMIT):
    query = [("month", month)]
    query += [("client", who)] if who is not None else []
    query += [("limit", str(limit))] if limit != DEFAULT_LIMIT else []
    query += [("next", after)] if after else []
    return "?" + urllib.parse.urlencode(query)


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


def dashboard_href():
    """The dashboard's address relative to <stats>/usage."""
    return "../" + STATS_ROUTE.rsplit("/", 1)[-1]


def client_link(month, who, text):
    href = html.escape(usage_link(month, who), quote=True)
    return f'<a href="{href}">{text}</a>'


def usage_page(body, limit, now):
    """The clients view: the month's top clients (this page of them), or one client's month:
    its total, hits per day and routes. Same style and policy as the dashboard."""
    month = body["month"]
    year, number_of_month = (int(part) for part in month.split("-"))
    earlier = datetime.date(year, number_of_month, 1) - datetime.timedelta(days=1)
    later = datetime.date(year, number_of_month, 28) + datetime.timedelta(days=4)
    nav = (
        f'<nav><a href="{dashboard_href()}">Dashboard</a>'
        + (
            f'<a href="{html.escape(usage_link(month))}">All clients</a>'
            if "client" in body
            else ""
        )
        + f'<a href="{html.escape(usage_link(earlier.strftime("%Y-%m"), body.get("client")))}">'
        f"{earlier.strftime('%B %Y')}</a>"
        + f'<a href="{html.escape(usage_link(later.strftime("%Y-%m"), body.get("client")))}">'
        f"{later.strftime('%B %Y')}</a></nav>"
    )
    more = ""
    if body["next"]:
        href = usage_link(month, body.get("client"), body["next"], limit)
        more = f'<nav><a href="{html.escape(href)}">Next page</a></nav>'
    title = datetime.date(year, number_of_month, 1).strftime("%B %Y")
    if "client" in body:
        who = body["client"]
        heading = f"Client {who}, {title} (UTC)"
        points = [{"start": d["day"] + "T00:00:00Z", "count": d["hits"]} for d in body["days"]]
        rows = "".join(
            f'<tr><td class="r">{shown(r["route"])}</td>'
            f'<td class="n" data-label="hits">{r["hits"]:,}</td></tr>'
            for r in body["routes"]
        )
        content = (
            f"<section><div class=totals><p><b>{body['hits']:,}</b> "
            f"{plural(body['hits'], 'hit')} this month</p></div><p class=note>Exact: each hit"
            " counted once, in the month, day and route of its own time (UTC).</p></section>"
            + series_chart(points, "Hits per day")
            + "<section><h2>Routes</h2><p class=note>By hits, within this page.</p><table>"
            "<thead><tr><th>Route</th><th class=n>Hits</th></tr></thead>"
            f"<tbody>{rows}</tbody></table></section>"
        )
    else:
        heading = f"Clients, {title} (UTC)"
        clients = body["clients"]
        bars = "".join(
            f"<li><span class=lbl>{client_link(month, c['client'], visible(c['client'], '[%s]'))}"
            f"</span> <b>{c['hits']:,}</b>"
            '<svg class=bar viewBox="0 0 1000 10" preserveAspectRatio="none" aria-hidden="true">'
            f'<rect width="{max(6, int(1000 * c["hits"] / max(clients[0]["hits"], 1)))}"'
            ' height="10"/></svg></li>'
            for c in clients
        )
        content = (
            "<section><h2>Top clients</h2><p class=note>By hits this month"
            + (", within this page" if body["next"] else "")
            + ".</p>"
            + (f"<ol class=bars>{bars}</ol>" if clients else "<p>No client hits this month.</p>")
            + "</section>"
        )
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        f"<title>{visible(heading, '[%s]')}</title><style>{CSS}</style></head><body>"
        f"<h1>{visible(heading, '[%s]')}</h1>{nav}{content}{more}</body></html>"
    )


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


def wants_html(headers):
    """True when the Accept header ranks text/html above application/json."""
    return ranked_above(headers, "text/html", "application/json")


def ranked_above(headers, media, other):
    """True when the Accept header ranks `media` above `other`."""
    accept = next((v for k, v in headers.items() if k.lower() == "accept"), "")
    ranks = {}
    for part in accept.lower().replace(" ", "").split(","):
        name, _, params = part.partition(";")
        q = re.search(r"(?:^|;)q=([01](?:\.[0-9]{0,3})?)(?:;|$)", params)
        ranks[name] = float(q.group(1)) if q else 1.0

    def q(media):
        kind = media.split("/")[0]
        return ranks.get(media, ranks.get(f"{kind}/*", ranks.get("*/*", 0.0)))

    return q(media) > q(other)


CSS = (
    "body{font:16px/1.45 system-ui,sans-serif;margin:0 auto;padding:1em;max-width:72em;"
    "color:#222}h1{font-size:1.5em;margin:.2em 0;overflow-wrap:anywhere}"
    "h2{font-size:1.15em;margin:1.4em 0 .4em}a{color:#0a58a8}p{margin:.4em 0}"
    "nav a,nav span{display:inline-block;margin:0 1.2em .3em 0}"
    "table{border-collapse:collapse;width:100%}td,th{padding:.3em .5em;text-align:left;"
    "vertical-align:top}th{font-size:.875em}tr:nth-child(even){background:#f4f4f4}"
    ".n{text-align:right;white-space:nowrap}.t{white-space:nowrap}.r{overflow-wrap:anywhere;word-break:break-word}"
    "li{overflow-wrap:anywhere}ol.bars{list-style:none;padding:0;margin:0}"
    "ol.bars li{margin:.35em 0}"
    ".lbl{overflow-wrap:anywhere;word-break:break-word}"
    ".bar{display:block;width:100%;height:10px}.bar rect,.chart rect{fill:#4a7fb0}"
    ".chart svg{display:block;width:100%;height:10em;background:#f6f8fa}"
    ".chart rect.z{fill:#8a8a8a}.axis{display:flex;justify-content:space-between;"
    "gap:.5em;font-size:.8125em;color:#555}.note{color:#555;font-size:.875em}"
    "time[title]{border-bottom:1px dotted #888}.err{border-left:4px solid #b00;padding-left:.8em}"
    ".cf{color:#b00;border:1px solid}"
    # A backend's answers: 5xx and 4xx shares, latency (p90 light, mean dark).
    ".chart rect.e5{fill:#b02a2a}.chart rect.e4{fill:#d98b2b}.chart rect.p9{fill:#b9cde0}"
    ".scroll{overflow-x:auto}"
    # Two panels side by side where each gets 20em, one above the other on a phone.
    ".cols{display:grid;grid-template-columns:repeat(auto-fit,minmax(min(20em,100%),1fr));"
    "gap:0 2.5em}.cols>section{min-width:0}"
    ".totals{display:flex;flex-wrap:wrap;gap:.3em 2.5em;margin:.4em 0}"
    ".totals b{display:block;font-size:1.75em;line-height:1.2}"
    # Narrow screens: each table row becomes a block, its cells labelled by data-label.
    "@media (max-width:40em){body{padding:.6em}h1{font-size:1.25em}thead{display:none}"
    "tr{display:block;padding:.3em 0}td{display:inline-block;padding:0 .8em 0 .3em}"
    "td.r{display:block}td.n{text-align:left}"
    "td[data-label]:before{content:attr(data-label) ' ';color:#555}}"
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


# A stored route escapes every non-ASCII character (route_of): runs of such escapes.
UTF8_ESCAPES = re.compile(r"(?:%[89A-Fa-f][0-9A-Fa-f])+")
# Characters that hide, reorder or blur text, and those outside UTF-8: kept escaped.
KEPT_ESCAPED = INVISIBLE | {"Cn", "Co", "Cs", "Zs"}


def readable(route):
    """The route as people write it: "/caf%C3%A9" reads "/café". Only escapes of non-ASCII
    characters are decoded: an ASCII one (%2F, %20, %25) decoded would read as another
    route. Bytes that are not UTF-8, invisible or bidi characters, spaces, and a combining
    mark that would sit on the "/" before it stay as stored."""
    if "%" not in route:
        return route

    def decode(match):
        text = bytes.fromhex(match[0].replace("%", "")).decode("utf-8", "surrogateescape")
        out = []
        for c in text:
            kind = unicodedata.category(c)
            after = out[-1] if out else route[: match.start()][-1:]
            if kind in KEPT_ESCAPED or (kind[0] == "M" and after in ("/", "")):
                raw = c.encode("utf-8", "surrogateescape")
                out.append("".join(f"%{byte:02X}" for byte in raw))
            else:
                out.append(c)
        return "".join(out)

    return UTF8_ESCAPES.sub(decode, route)


def shown(route, limit=None):
    """A route as readable() shows it, at most `limit` characters (a chart label: the table
    below shows it whole); its stored form on hover when it reads otherwise."""
    text = readable(route)
    cut = limit is not None and len(text) > limit
    hover = f' title="{visible(route, "[%s]")}"' if cut or text != route else ""
    body = visible(text[:limit] if cut else text, "<span class=cf>%s</span>")
    return f'<bdi dir="ltr"{hover}>{body}</bdi>' + ("\u2026" if cut else "")


def label(route):
    return shown(route, CHART_LABEL)


def stored_seconds(text):
    """Seconds since the epoch of a stored UTC time ("2026-12-01T03:00:00Z"), or None."""
    try:
        return calendar.timegm(time.strptime(text or "", "%Y-%m-%dT%H:%M:%SZ"))
    except ValueError:
        return None


def ago(seconds):
    if seconds < 60:
        return "just now" if seconds < 10 else f"{int(seconds)} s ago"
    for unit, size in (("day", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            n = int(seconds // size)
            return f"{n} {unit}{'s' if unit == 'day' and n != 1 else ''} ago"


def when(text, now):
    """A stored time as "3 min ago", with the UTC time on hover, computed here (no script)."""
    stamp = stored_seconds(text)
    if stamp is None:
        return html.escape(text or "")
    utc = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(stamp))
    shown_as = ago(now - stamp) if stamp <= now else f"at {utc[:16]} UTC"
    return f'<time datetime="{html.escape(text)}" title="{utc}">{shown_as}</time>'


def plural(number, word):
    return word if number == 1 else word + "s"


def route_link(route, text):
    """A link to the route's own page (its hits over time)."""
    href = html.escape("?route=" + urllib.parse.quote(route, safe="/"), quote=True)
    return f'<a href="{href}">{text}</a>'


def hit_count(route):
    return route["count"], f"{route['count']:,}"


def ranked_bars(routes, linked=False, measure=hit_count):
    """Routes as horizontal bars, labels in HTML so they wrap and keep their size; linked,
    each label opens the route's page. `measure` gives a route's (value, text)."""
    measured = [(r, *measure(r)) for r in routes]
    peak = max([value for _, value, _ in measured] + [1])
    return (
        "<ol class=bars>"
        + "".join(
            "<li><span class=lbl>"
            f"{route_link(r['route'], label(r['route'])) if linked else label(r['route'])}"
            f"</span> <b>{text}</b>"
            '<svg class=bar viewBox="0 0 1000 10" preserveAspectRatio="none" aria-hidden="true">'
            f'<rect width="{max(6, int(1000 * value / peak))}" height="10"/></svg></li>'
            for r, value, text in measured
        )
        + "</ol>"
    )


def percent(part, whole):
    return f"{100 * part / whole:.1f}%" if whole else "-"


def milliseconds(value):
    """A latency as shown: a percentile's bucket bound is 'at most' it; None is past 30 s."""
    if value is None:
        return f"&gt;{LATENCY_BOUNDS[-1]:,} ms"
    return f"{value:,.1f} ms" if isinstance(value, float) else f"\u2264{value:,} ms"


def answer_rows(points, hourly):
    """The "Every bucket" rows of the answers charts."""
    rows = []
    for p in points:
        classes, latency = p.get("status"), p.get("latencyMs")
        cells = ["0", "-", "-", "-", "-"]
        if classes:
            n = sum(classes.values())
            cells = [f"{n:,}", percent(classes["5xx"], n), percent(classes["4xx"], n)]
            cells += [milliseconds(latency["mean"]), milliseconds(latency["p90"])]
        rows.append(
            f"<tr><td>{point_label(p['start'], hourly)}</td>"
            + "".join(
                f'<td class=n data-label="{name}">{cell}</td>'
                for name, cell in zip(("answers", "5xx", "4xx", "mean", "p90"), cells, strict=True)
            )
            + "</tr>"
        )
    return "".join(rows)


def answers_chart(points, heading):
    """A backend's answers per bucket, from the series points' "status" and "latencyMs":
    the 5xx and 4xx shares (stacked bars, of 100%) and the mean and p90 latency (p90 light
    behind the mean; p90 past the last bound drawn at it). Empty when no point has any."""
    answered = [p for p in points if p.get("status")]
    if not answered:
        return ""
    n, hourly = len(points), any((stored_seconds(p["start"]) or 0) % 86400 for p in points)
    slowest = max(
        [p["latencyMs"]["p90"] or LATENCY_BOUNDS[-1] for p in answered]
        + [p["latencyMs"]["mean"] for p in answered]
        + [1]
    )
    errors, latency = [], []
    for i, p in enumerate(points):
        if not p.get("status"):
            continue
        classes, ms = p["status"], p["latencyMs"]
        total, at = sum(classes.values()), point_label(p["start"], hourly)
        e5, e4 = 100 * classes["5xx"] / total, 100 * classes["4xx"] / total
        tip = (
            f"<title>{at} UTC: {total:,} answers, 5xx {percent(classes['5xx'], total)},"
            f" 4xx {percent(classes['4xx'], total)}, mean {milliseconds(ms['mean'])},"
            f" p90 {milliseconds(ms['p90'])}</title>"
        )
        errors.append(
            f'<rect class=e5 x="{i * 10 + 1}" y="{100 - e5:.1f}" width="8" height="{e5:.1f}">'
            f'{tip}</rect><rect class=e4 x="{i * 10 + 1}" y="{100 - e5 - e4:.1f}" width="8"'
            f' height="{e4:.1f}">{tip}</rect>'
        )
        p90 = 100 * (ms["p90"] or LATENCY_BOUNDS[-1]) / slowest
        mean = max(1, 100 * ms["mean"] / slowest)
        latency.append(
            f'<rect class=p9 x="{i * 10 + 1}" y="{100 - p90:.1f}" width="8" height="{p90:.1f}">'
            f'{tip}</rect><rect x="{i * 10 + 1}" y="{100 - mean:.1f}" width="8"'
            f' height="{mean:.1f}">{tip}</rect>'
        )
    ticks = [points[0], points[n // 2], points[-1]] if n > 2 else points
    axis = (
        "<div class=axis>"
        + "".join(f"<span>{point_label(p['start'], hourly)}</span>" for p in ticks)
        + "</div>"
    )

    def svg(label_text, bars):
        return (
            f'<svg role="img" aria-label="{html.escape(label_text)}" viewBox="0 0 {n * 10} 100"'
            f' preserveAspectRatio="none">{"".join(bars)}</svg>{axis}'
        )

    worst = max(answered, key=lambda p: p["status"]["5xx"] / sum(p["status"].values()))
    worst_share = percent(worst["status"]["5xx"], sum(worst["status"].values()))
    return (
        f"<section class=chart><h2>{html.escape(heading)}</h2>"
        f"<p class=note>Error rate: 5xx (red) and 4xx (orange) of the answers; the worst"
        f" {period(hourly)}'s 5xx share is {worst_share}.</p>"
        + svg(f"{heading}: error rate", errors)
        + f"<p class=note>Latency: mean (dark) and p90 (light, rounded up: latencies are"
        f" counted in ranges); the tallest is {milliseconds(float(slowest))}.</p>"
        + svg(f"{heading}: latency", latency)
        + f"<details><summary>Every {period(hourly)}</summary><div class=scroll><table><thead>"
        "<tr><th>Start (UTC)</th><th class=n>Answers</th><th class=n>5xx</th><th class=n>4xx"
        "</th><th class=n>Mean</th><th class=n>p90</th></tr></thead><tbody>"
        f"{answer_rows(points, hourly)}</tbody></table></div></details></section>"
    )


def period(hourly):
    return "hour" if hourly else "day"


def point_label(start, hourly):
    stamp = stored_seconds(start)
    if stamp is None:
        return html.escape(str(start))
    return time.strftime("%b %d %H:%M" if hourly else "%b %d", time.gmtime(stamp))


def series_chart(points, heading):
    """Hits per bucket as inline SVG bars, from points [{"start", "count"}] as the series
    endpoint answers them. Every bucket gets a bar (a grey stub for zero hits); the axis
    labels are HTML, so they keep their size however narrow the chart gets."""
    if not points:
        return f"<section><h2>{html.escape(heading)}</h2><p>No data points.</p></section>"
    n, peak = len(points), max([p["count"] for p in points] + [1])
    hourly = any((stored_seconds(p["start"]) or 0) % 86400 for p in points)
    bars = "".join(
        f'<rect x="{i * 10 + 1}" y="{100 - max(1, 100 * p["count"] / peak):.1f}" width="8"'
        f' height="{max(1, 100 * p["count"] / peak):.1f}"{" class=z" if not p["count"] else ""}>'
        f"<title>{point_label(p['start'], hourly)} UTC: {p['count']:,} hits</title></rect>"
        for i, p in enumerate(points)
    )
    ticks = [points[0], points[n // 2], points[-1]] if n > 2 else points
    rows = "".join(
        f"<tr><td>{point_label(p['start'], hourly)}</td><td class=n>{p['count']:,}</td></tr>"
        for p in points
    )
    total = sum(p["count"] for p in points)
    return (
        f"<section class=chart><h2>{html.escape(heading)}</h2>"
        f"<p class=note>{total:,} hits in {n} {period(hourly)}s; the highest bar is {peak:,};"
        f" grey stubs are {period(hourly)}s with no hits. Times in UTC.</p>"
        f'<svg role="img" aria-label="{html.escape(heading)}" viewBox="0 0 {n * 10} 100"'
        f' preserveAspectRatio="none">{bars}</svg><div class=axis>'
        + "".join(f"<span>{point_label(p['start'], hourly)}</span>" for p in ticks)
        + f"</div><details><summary>Every {period(hourly)}</summary><table><thead><tr>"
        f"<th>Start (UTC)</th><th class=n>Hits</th></tr></thead><tbody>{rows}</tbody></table>"
        "</details></section>"
    )


def top_panel(top, now, heading="Top routes of all time", what="By count", empty=None):
    """Global top routes, as `GET /_stats/top` answers them ({"routes", "asOf"}): the
    TOP_LIMIT highest of the aggregator's item, each linked to its route's page."""
    routes = (top.get("routes") or [])[:TOP_LIMIT]
    if not routes:
        body = f"<p>{empty or 'No route has been counted yet.'}</p>"
        return f"<section><h2>{heading}</h2>{body}</section>"
    return (
        f"<section><h2>{heading}</h2><p class=note>{what}; exact as of its newest hit,"
        f" {when(top.get('asOf'), now)}.</p>"
        f"{ranked_bars(routes, linked=True)}</section>"
    )


def mean_latency(route):
    mean = route["latencyMs"]["mean"]
    return mean, milliseconds(float(mean))


def error_rate(route):
    rates = route["errorRate"]
    return rates["5xx"], f"5xx {rates['5xx']:.1%}, 4xx {rates['4xx']:.1%}"


def monitoring_panels(top, period):
    """The slowest routes and those of the highest error rate among the ranked routes with
    at least DEFAULT_MIN_ANSWERS answers (ordered()); nothing without a backend's answers."""
    shown = []
    for by, heading, measure in (
        ("latency", "Slowest routes", mean_latency),
        ("errors", "Highest error rate", error_rate),
    ):
        routes = ordered(top.get("routes") or [], by, DEFAULT_MIN_ANSWERS)[:TOP_LIMIT]
        if routes:
            shown.append(
                f"<section><h2>{heading} {period}</h2><p class=note>"
                + ("By mean latency" if by == "latency" else "By 5xx share, then 4xx")
                + f" of the answers, among the top routes with at least {DEFAULT_MIN_ANSWERS}"
                f" answers.</p>{ranked_bars(routes, linked=True, measure=measure)}</section>"
            )
    return f"<div class=cols>{''.join(shown)}</div>" if shown else ""


def summary_panels(summary, charts, now):
    """The front page's view of every route, from the aggregator (read_summary, and
    route_charts of ALL_ROUTES): totals, hits over time, the top routes of all time and of
    today. Before its first batch there is nothing to show, and the page says so rather
    than draw zeros that would read as "no hits"."""
    totals, top, today = summary["totals"], summary["top"], summary["today"]
    if top["asOf"] is None and not totals["hits"]:
        return (
            "<section><h2>All routes</h2><p><b>No totals yet.</b> The totals, the hits over"
            " time and the top routes are added up a few seconds after the hits are counted"
            " (30 s at most by default), and none has been added up yet."
            " The routes counted so far are in the table below.</p></section>"
        )
    head = (
        "<section><h2>All routes, since analytics was turned on</h2><div class=totals>"
        f"<p><b>{totals['hits']:,}</b> {plural(totals['hits'], 'hit')}</p>"
        f"<p><b>{totals['routes']:,}</b> {plural(totals['routes'], 'route')}</p>"
        "</div><p class=note>The hits counted since analytics was turned on (Analytics=on),"
        " and the routes first counted since then; hits from before are only in the routes'"
        " counts below.</p></section>"
    )
    charts_html = "".join(series_chart(points, heading) for heading, points in charts)
    charts_html += "".join(answers_chart(p, answers_heading(h)) for h, p in charts)
    tops = top_panel(top, now) + top_panel(
        today,
        now,
        "Top routes today",
        f"By hits on {today['day']} (UTC)",  # the day whose item was read
        "No hits counted today yet.",
    )
    watch = monitoring_panels(top, "of all time") + monitoring_panels(today, "today")
    return f"{head}<div class=cols>{charts_html}</div><div class=cols>{tops}</div>{watch}"


def all_time_answers(route):
    """A route's answers of all time, from its counter item (record())."""
    classes = route["status"]
    n = sum(classes.values())
    shares = ", ".join(f"{name} {percent(count, n)}" for name, count in classes.items())
    return (
        "<section><h2>Answers of all time</h2><div class=totals>"
        f"<p><b>{n:,}</b> {plural(n, 'answer')}</p>"
        f"<p><b>{percent(classes['5xx'], n)}</b> 5xx</p>"
        f"<p><b>{percent(classes['4xx'], n)}</b> 4xx</p>"
        f"<p><b>{milliseconds(float(route['latencyMs']['mean']))}</b> mean latency</p>"
        f"</div><p class=note>By status class: {shares}.</p></section>"
    )


def page_link(limit, stale, position=None):
    """A link to the page at `position` (see parse_position; None is the first page)."""
    query = [("limit", str(limit))] if limit != DEFAULT_LIMIT else []
    if stale != DEFAULT_STALE_DAYS:
        query.append(("stale", str(stale)))
    if position:
        token, at, back = position
        trail = [f"{a}~{t}" for a, t in back]
        while trail and (len(trail) > MAX_BACK or len(".".join(trail)) > MAX_BACK_CHARS):
            trail.pop(0)  # the oldest pages go first; "first" always works
        query.append(("next", token))
        query += [("at", str(at))] if at is not None else []
        query += [("back", ".".join(trail))] if trail else []
    return html.escape("?" + "&".join(f"{k}={v}" for k, v in query), quote=True)


def paging(routes, limit, stale, next_token, position):
    """The page's label and its first, previous and next links."""
    token, at, back = position or (None, 0, [])
    count = f"{len(routes):,} route{'s' if len(routes) != 1 else ''}"
    if not (token or next_token):
        return (f"All {count}, sorted by count" if routes else "No route has been counted yet"), ""
    if at is None:
        where = f"{count} after {label(decode_token(token)['route']['S'])} in stored order"
        where += " (this link does not say how many came before)"
    else:
        where = f"Routes {at + 1:,}-{at + len(routes):,} in stored order" if routes else "No routes"
    links = []
    if token:
        links.append(f'<a href="{page_link(limit, stale)}">First page</a>')
        if back:
            (prev_at, prev_token), earlier = back[-1], back[:-1]
            before = (prev_token, prev_at, earlier) if prev_token else None
            links.append(f'<a href="{page_link(limit, stale, before)}">Previous page</a>')
        else:
            links.append(
                f"<span class=note>No previous link: a link keeps at most {MAX_BACK} earlier"
                " pages (fewer with long routes); start again from the first page</span>"
            )
    if next_token:
        after = (next_token, None, [])
        if at is not None:
            after = (next_token, at + len(routes), [*back, (at, token or "")])
        links.append(f'<a href="{page_link(limit, stale, after)}">Next page</a>')
    else:
        links.append("<span>Last page</span>")
    return f"{where}, sorted by count within this page", f"<nav>{''.join(links)}</nav>"


def overview(routes, limit, stale, next_token, position, now):
    """What a list of routes says about itself: which page, its totals, its stale routes."""
    where, nav = paging(routes, limit, stale, next_token, position)
    whole = not (next_token or position)
    hits = sum(r["count"] for r in routes)
    totals = (
        f"<p><b>{hits:,} {plural(hits, 'hit')}</b> over "
        f"<b>{len(routes):,} {plural(len(routes), 'route')}</b>: "
        + (
            "every route."
            if whole
            else "this page only (the totals of all routes need every page)."
        )
        + "</p>"
    )
    cutoff = now - stale * 86400
    quiet = sorted(
        (r for r in routes if (stored_seconds(r["lastSeen"]) or now) <= cutoff),
        key=lambda r: r["lastSeen"],
    )
    choices = " ".join(
        f'<a href="{page_link(limit, days, position)}">{days} day{"s" if days != 1 else ""}</a>'
        for days in STALE_CHOICES
        if days != stale
    )
    stale_rows = "".join(
        f"<li>{shown(r['route'])}: last seen {when(r['lastSeen'], now)}</li>" for r in quiet
    )
    stale_section = (
        f"<section><h2>Not seen for {stale} days or more</h2><p class=note>"
        + ("Of all routes" if whole else "Of the routes on this page only")
        + f", from their last hit. Other thresholds: {choices}.</p>"
        + (f"<ul>{stale_rows}</ul>" if quiet else "<p>None.</p>")
        + "</section>"
    )
    return f"<p>{where}.</p>{nav}{totals}", stale_section, nav


def dashboard(
    routes,
    title,
    next_token=None,
    limit=DEFAULT_LIMIT,
    *,
    position=None,
    single=False,
    stale=DEFAULT_STALE_DAYS,
    now=None,
    series=None,
    summary=None,
    overflow=None,
):
    """One self-contained page: no script, nothing loaded from elsewhere, every route escaped.
    `position` is where a paged view is (see parse_position), `single` says the page is one
    route's; `series` is [(heading, points)], shown when given; `summary` (read_summary's)
    makes it the front page (summary_panels); `overflow` (read_overflow's) says MaxRoutes.

    The front page ranks no page of routes in a chart: the global top does that for every
    route, and a page of a paged view is a slice of scan order, whose "top" means nothing.
    The page's routes stay in the table, sorted by count, with where the page is."""
    now = time.time() if now is None else now
    back, where, stale_section, nav = ("", "", "", "")
    if single:
        back = '<p><a href="?">All routes</a></p>'
    elif CLIENT_IDENTITY not in ("", "none"):  # ClientIdentity on: link the clients view
        href = html.escape(STATS_ROUTE.rsplit("/", 1)[-1] + "/usage", quote=True)
        back = f'<p><a href="{href}">Clients this month</a></p>'
    if not single:
        where, stale_section, nav = overview(routes, limit, stale, next_token, position, now)
        where += overflow_note(overflow)
    if summary is not None:
        panels = summary_panels(summary, series or [], now)
    else:
        charts = "".join(series_chart(points, heading) for heading, points in series or [])
        panels = f"<div class=cols>{charts}</div>" if charts else ""
        watch = "".join(answers_chart(p, answers_heading(h)) for h, p in series or [])
        panels += f"<div class=cols>{watch}</div>" if watch else ""
    if single and routes and routes[0].get("status"):
        panels = all_time_answers(routes[0]) + panels
    rows = "".join(
        f'<tr><td class="r">'
        f"{shown(r['route']) if single else route_link(r['route'], shown(r['route']))}</td>"
        f'<td class="n" data-label="hits">{r["count"]:,}</td><td class=t data-label="first seen">'
        f'{when(r["firstSeen"], now)}</td><td class=t data-label="last seen">'
        f"{when(r['lastSeen'], now)}</td></tr>"
        for r in routes
    )
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        f"<title>{visible(readable(title), '[%s]')}</title><style>{CSS}</style></head><body>"
        f"<h1>{shown(title)}</h1>{back}{panels}{stale_section}<section><h2>Routes</h2>{where}"
        "<table><thead><tr><th>Route</th><th class=n>Hits</th>"
        "<th>First seen</th><th>Last seen</th></tr></thead>"
        f"<tbody>{rows}</tbody></table><p class=note>Times are relative to when this page was"
        f" made; hover one for its UTC time.</p></section>{nav}</body></html>"
    )


def error_page(status, message):
    """An error as a browser user reads it: same style and policy as the dashboard."""
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        f"<title>Error {status}</title><style>{CSS}</style></head><body>"
        f"<h1>Error {status}: {HTTPStatus(status).phrase}</h1>"
        f"<p class=err>{visible(message, '[%s]')}</p>"
        '<p><a href="?">Back to the dashboard</a></p></body></html>'
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


def presented_token(headers, multi):
    """The token an Authorization header carries (Basic: its password, whatever the user
    name; Bearer), None without one; HttpError 401 for one that is not well formed (two
    Authorization headers are not)."""
    values = [v for k, v in headers.items() if k.lower() == "authorization"]
    multi = multi if isinstance(multi, dict) else {}
    repeated = any(
        k.lower() == "authorization" and isinstance(v, list) and len(v) > 1
        for k, v in multi.items()
    )
    if not values:
        return None
    scheme, _, credentials = values[0].strip().partition(" ")
    credentials, token = credentials.strip(), ""
    if scheme.lower() == "bearer":
        token = credentials
    elif scheme.lower() == "basic":
        try:
            _user, colon, token = (
                base64.b64decode(credentials, validate=True).decode().partition(":")
            )
        except ValueError:  # binascii.Error and UnicodeDecodeError are ValueErrors
            colon = ""
        token = token if colon else ""
    if repeated or len(values) > 1 or not token:
        raise HttpError(401, PRIVATE, CHALLENGE)
    return token


def same_token(presented, token):
    # Digests of equal length: compare_digest takes as long whatever matches, and the
    # length of the token leaks neither.
    return bool(token) and hmac.compare_digest(
        hashlib.sha256(presented.encode()).digest(), hashlib.sha256(token.encode()).digest()
    )


def read_token():
    value = secrets.get_secret_value(SecretId=STATS_TOKEN_SECRET)["SecretString"]
    token_cache.update(token=value, read_at=time.monotonic())


def check_access(headers, multi):
    """Private stats: nothing when the request carries the stats token, else HttpError 401
    with the challenge that makes a browser ask (missing, malformed and wrong alike: see
    docs/security-private-stats.md). Runs before any table is read."""
    presented = presented_token(headers, multi)
    if presented is None:
        raise HttpError(401, PRIVATE, CHALLENGE)
    read_at = token_cache["read_at"]
    if read_at is None or time.monotonic() - read_at >= TOKEN_TTL_SECONDS:
        read_token()
    if same_token(presented, token_cache["token"]):
        return
    if time.monotonic() - token_cache["read_at"] >= TOKEN_REREAD_SECONDS:
        read_token()  # rotated since we read it?
        if same_token(presented, token_cache["token"]):
            return
    raise HttpError(401, PRIVATE, CHALLENGE)


def answer(method, path, query, headers):
    """The response to a well-formed proxy event, and the fields to log about it."""
    route = routed(path, "path")
    if route not in (STATS_ROUTE, STATS_ROUTE + "/top", STATS_ROUTE + "/usage"):
        raise HttpError(404, f"no such stats page: {route}; use GET {STATS_ROUTE}")
    if method == "OPTIONS":
        cors = {"Access-Control-Allow-Methods": METHODS_ALLOWED, "Access-Control-Max-Age": "600"}
        if STATS_TOKEN_SECRET and ALLOWED_ORIGIN:
            # A page of the allowed origin that holds the token may send it; no
            # Access-Control-Allow-Credentials ever: a browser's remembered Basic password
            # never reads the stats for another origin (docs/security-private-stats.md).
            cors["Access-Control-Allow-Headers"] = "Authorization"
        return response(204, headers={"Allow": METHODS_ALLOWED, **cors}), {}
    if method not in ("GET", "HEAD"):
        message = f"{method} is not allowed here; the stats are read with GET"
        raise HttpError(405, message, {"Allow": METHODS_ALLOWED})
    now = datetime.datetime.now(UTC)
    if route == STATS_ROUTE + "/usage":
        return usage_response(query, headers, now)
    if route != STATS_ROUTE:
        top = read_top(query, now)
        return response(200, top), {"format": "json", "routes": len(top["routes"])}
    as_html = wants_html(headers)
    fields = {"format": "html" if as_html else "json"}
    # The dashboard's own parameters are checked for JSON too; they never change its shape.
    stale = parse_days(query.get("stale"))
    if "route" in query:
        if set(query) & {"limit", "next", "at", "back"}:
            raise HttpError(400, "'route' cannot be combined with 'limit', 'next', 'at' or 'back'")
        route = routed(query["route"], "'route'")
        if "series" in query:
            first, last, points = series_range(query["series"], query, now)
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
        page = None
        if as_html:
            charts = route_charts(route, now)
            page = dashboard([found], f"Route {route}", single=True, series=charts)
        return response(200, found, html_page=page), {**fields, "route": route}
    if "series" in query:
        if set(query) & {"limit", "next", "at", "back"}:
            raise HttpError(400, "'series' cannot be combined with 'limit', 'next', 'at' or 'back'")
        first, last, points = series_range(query["series"], query, now)
        body = {
            "route": None,  # every route
            "series": query["series"],
            "points": read_series(ALL_ROUTES, query["series"], first, last, points),
        }
        return response(200, body), {**fields, "route": None, "points": points}
    if set(query) & SERIES_PARAMETERS:
        raise HttpError(400, "'from' and 'to' need a 'series' ('hour' or 'day')")
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
            page = error_page(error.status, str(error))
            result = response(error.status, headers=error.headers, html_page=page)
    except (ClientError, BotoCoreError) as error:
        result, fields = aws_fault(error, request_id)
    latency = round((time.monotonic() - started) * 1000, 1)
    level = "ERROR" if result["statusCode"] >= 500 else "INFO"
    line = {"level": level, "requestId": request_id, "method": method, "path": path}
    log(**line, **fields, status=result["statusCode"], latencyMs=latency)
    return result
