"""What the counter's and the aggregator's items hold (handler/aggregator.py writes them), and
how a read sums their parts and ranks their routes: no I/O."""

import datetime

# series -> (bucket prefix, bucket width, bucket key format, default points, most points)
SERIES = {
    "hour": ("h#", datetime.timedelta(hours=1), "%Y-%m-%dT%H", 24, 24 * 31),
    "day": ("d#", datetime.timedelta(days=1), "%Y-%m-%d", 30, 366),
}
# The aggregator's items (handler/aggregator.py): bucket "all" of the top routes and of
# all routes' totals, "d#<day>" of a day's top routes, and the series of all routes.
TOP, ALL_ROUTES = "#top", "#all"
# All routes' items come in parts, one per stream shard: "<bucket>#<part>" (and the
# un-suffixed "<bucket>" of batches that named no shard); a read sums them. "~" sorts after
# every part, so "<bucket>#~" ends a Query range that holds them all.
PARTS_END = "#~"
# MaxRoutes: the route past it, and the item on which the counter keeps how many it let in.
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
# Ranked by errors or latency: the routes with at least this many answers (`min`).
DEFAULT_MIN_ANSWERS = 10


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


def series_key(route, bucket):
    return {"route": {"S": route}, "bucket": {"S": bucket}}


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
