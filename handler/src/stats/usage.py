"""Client usage (docs/usage-billing.md): a client's month or a page of the month's clients, from
the aggregator's usage items, and its CSV export."""

import calendar
import csv
import hashlib
import io
import re
import urllib.parse

from .items import PARTS_END, number, summed
from .parsing import DEFAULT_LIMIT, parse_limit, ranked_above
from .reads import MAX_SCAN_CALLS, query_all, series_table
from .routes import CONTROL_CHARACTERS
from .settings import CLIENTS_ON, HttpError, dynamodb

# Client usage (docs/usage-billing.md), as handler/aggregator.py writes it: "#usage#<c>" holds a
# client's day totals ("d#<day>" in shard parts) and its routes of a month ("r#<month>#<route
# key>"); "#clients#<month>" every client's month total ("<c>" in shard parts). <c> and the
# route key are client_key()s; the items keep the client id and the route themselves.
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
CLIENTS_OFF = (
    "usage per client is off for this stack (ClientIdentity=none): no hit names its client; "
    "set ClientIdentity to apikey, authorizer or header:<Name> (docs/clients.md)"
)


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
    month's clients; as JSON, CSV or (in a browser) the clients view. 404 with
    ClientIdentity=none, as the analytics' reads with Analytics=off: no client to show."""
    if not CLIENTS_ON:
        raise HttpError(404, CLIENTS_OFF)
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
