"""Route Counter aggregator: the counter table's stream -> hits per route per hour and day.

Every counted hit is one stream record: the counter's one UpdateItem adds 1 to `count`
(a refused, rate-limited hit writes nothing), so a record is known by its route, the life
of its item (`firstSeen`: a route deleted and counted again starts a new one) and its
count. A record is a hit only when its old and new images say so: an INSERT of count 1,
or a MODIFY from count n to n + 1 in the same life (docs/exactness.md); a count set by hand
or an imported item is none. Each hit is counted once, in the hour and the day of its own
`lastSeen`:

- a (route, bucket) item holds the ranges of counts it has counted per life (`counted`)
  and their number (`hits`); a record is new to it only when its count is in none;
- the all-routes item of that bucket (route "#all") and the all-time item ("#all", "all")
  add the same new hits, and the routes counted for the first time (count 1). With a
  tumbling window on the mapping, Lambda names the batch's stream shard (`shardId`), and
  each shard adds to its own part of them ("h#<hour>#<part>", "all#<part>": SHARD_PARTS
  parts, summed on read by handler/stats.py): two shards meet on an item only when their ids
  hash to the same part, and Lambda runs one batch of a shard at a time;
  a batch that names no shard adds to the un-suffixed items, as before;
- all of a chunk's items change in one TransactWriteItems, each route's conditioned on the
  ranges read just before. A union of ranges does not depend on order, so a batch that is
  retried, duplicated, split or delivered out of order counts nothing twice and misses
  nothing, and the all-routes totals never drift from the routes'.

Bounded items rank routes (route "#top"; no route can start with "#"): bucket "all" the
TOP_SIZE highest counts, "d#<day>" the TOP_SIZE most hits of that day, each in RANK_PARTS
parts ("all#<part>", "d#<day>#<part>", a hash of the shard id; un-suffixed for a batch that
names no shard), each ranking the routes of its shards. A part is merged by an optimistic
read-merge-write that only raises values and keeps the highest TOP_SIZE, so it is exact and
order-independent: a route leaves only for TOP_SIZE routes with higher values, which never
fall. A part also keeps the first route it left out (`leftOut`): handler/stats.py combines
the parts on read (each route's highest entry), exact for every route ranked ahead of every
part's `leftOut` (docs/analytics-at-scale.md).

With a backend (docs/monitoring.md), a hit's record also carries the answer the client got
(`lastStatus`, `lastLatencyMs`, written by the same UpdateItem as its count): the bucket items
that count the hit add its status class (`s2xx`..`s5xx`), its latency (`ms`, the sum) and one
to its latency bucket (`le1`..`le30000`, `leInf`: hits of at most that many ms and more than
the bound before), in the same conditioned update. A record without an answer adds nothing.

With ClientIdentity on (env CLIENT_IDENTITY not `none`), a hit's image also names its client
(`lastClient`, set by the counter's same UpdateItem): the transaction that counts the hit in
its route's bucket also ADDs it to that client's buckets (docs/usage-billing.md), plain ADDs
made exact by the route bucket's condition in the same transaction:

- "#usage#<c><route>" / "h#<hour>", "d#<day>": the client's hits on that route (c: client_key);
- "#usage#<c>" / "h#<hour><part>", "d#<day><part>": the client's hits on every route, in
  shard parts like the all-routes items (many shards add to one client);
- "#usage#<c>" / "r#<month>#<route key>": the client's hits on that route that month;
- "#clients#<month>" / "<c><part>": the client's hits that month, every client of the month
  in one partition (the usage endpoint lists them).
A hit without `lastClient` counts in no client bucket.
"""

import calendar
import hashlib
import json
import os
import random
import time
import zlib

import boto3
from botocore import exceptions as aws
from botocore.config import Config

SERIES_TABLE = os.environ.get("SERIES_TABLE", "")
HOURLY_DAYS = int(os.environ.get("SERIES_HOURLY_DAYS") or 30)
CHANGES = {"INSERT", "MODIFY"}  # REMOVE has no new image: nothing was counted
ALL_ROUTES = "#all"
TOTALS = "all"  # the all-time bucket of ALL_ROUTES and of the top
TOP = "#top"
TOP_SIZE = 100
# A top item is rewritten whole by every batch that changes it, and DynamoDB bills a write
# per KB of the item: routes may be 1 KB long, so 100 of them would make every merge ~100
# write units and cap merges near 10 a second (1,000 units a second per item). The ranking
# keeps the longest prefix (at most TOP_SIZE routes) whose names and counts fit this.
TOP_BYTES = 8 * 1024
# Bytes per ranked route besides its name: its count (a number of up to 21 bytes) and the
# map entry's overhead, counted high so the item stays within TOP_BYTES plus its few fields.
TOP_ENTRY_BYTES = 24
# A ranked route with a backend's answers also keeps [answered, 4xx, 5xx, latency sum]
# (the value becomes a list of 5 numbers): charged this many bytes more.
TOP_ANSWER_BYTES = 4 * 22
# The most bytes one ranked route takes: the longest route the counter counts (1 KB), with
# its answers.
LONGEST_ENTRY_BYTES = 1024 + TOP_ENTRY_BYTES + TOP_ANSWER_BYTES
# Status classes and the exact latency histogram's upper bounds (ms; non-cumulative buckets,
# each (previous bound, bound]): percentiles are read at this resolution (docs/monitoring.md).
CLASSES = ("s2xx", "s3xx", "s4xx", "s5xx")
LATENCY_BOUNDS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 30000)
# Leave the function this much of its time to report what it did not write (Lambda then
# retries from there), rather than be stopped mid-batch (a timeout: the whole batch again,
# bisected).
RESERVE_MS = 10_000
# The all-routes items are split in this many parts, one per stream shard (a hash of its id):
# shards run in parallel and DynamoDB cancels transactions that meet on an item. Shards close
# and are replaced over time, so the part is a hash modulo this bound, not the id: a read sums
# at most this many items per bucket (docs/analytics-at-scale.md).
SHARD_PARTS = 1024
# The top items too are merged per part, a hash of the shard id modulo this bound: shards
# sharing a ranking part still race for it (a merge read again), but a read of a ranking is
# one Query of at most RANK_PARTS + 1 items of at most TOP_BYTES (under 1 MB: one page).
RANK_PARTS = 32
# TransactWriteItems takes at most 100 items; BatchGetItem 100 keys.
MOST_ITEMS = 100
# Another batch changed an item between our read and our write (another shard's totals, a
# duplicate delivery): read again and retry, this many times, then let Lambda retry.
ATTEMPTS = 5
# ClientIdentity (docs/usage-billing.md): `none` (or unset) counts no client bucket.
CLIENTS_ON = os.environ.get("CLIENT_IDENTITY", "none") not in ("", "none")
# Key prefixes of the client usage items ("#" is reserved: no route starts with it).
USAGE = "#usage#"
CLIENT_MONTHS = "#clients#"


class Contended(Exception):
    """Other invocations kept changing the items this batch writes: it retries later."""


class Cancelled(Exception):
    """DynamoDB cancelled a transaction for a reason other than a race (its reasons)."""


# Cancellation reasons that mean another write got there first: read again, write again.
RACES = {"ConditionalCheckFailed", "TransactionConflict", "None", None}


# Created once per container. The SDK retries throttling and lost answers: every write is
# conditioned on what was read, so a repeated one that already applied is refused, re-read
# and found done.
try:
    dynamodb = boto3.client(
        "dynamodb",
        config=Config(connect_timeout=2, read_timeout=3, retries={"mode": "standard"}),
    )
except aws.NoRegionError as error:  # never on Lambda (AWS_REGION)
    dynamodb = None
    NO_CLIENT = error


def buckets(last_seen):
    """The hour and day buckets of a lastSeen time ("2026-12-01T03:04:05Z"), each with the
    epoch second it expires at (None: never); None for a time that is not one."""
    try:
        moment = time.strptime(last_seen, "%Y-%m-%dT%H:%M:%SZ")
    except (TypeError, ValueError):
        return None
    hour_start = calendar.timegm((*moment[:4], 0, 0, 0, 0, 0))
    expires = hour_start + 3600 + HOURLY_DAYS * 86400
    return [(f"h#{last_seen[:13]}", expires), (f"d#{last_seen[:10]}", None)]


def is_hit(record, count, life):
    """Whether a record whose new image holds `count` in `life` is the write of one hit: an
    INSERT of count 1, or a MODIFY that adds 1 to the count of the same life. Anything else
    (a count set by hand, an item imported or overwritten) changed the count but was no hit.
    A record of a NEW_IMAGE stream (from before the stream carried old images) cannot be
    told apart: it is taken as a hit."""
    change = record["dynamodb"]
    if record["eventName"] == "INSERT":
        return count == 1
    old = change.get("OldImage")
    if old is None and change.get("StreamViewType") == "NEW_IMAGE":
        return True
    old = old or {}
    old_count = int(old.get("count", {}).get("N", 0))
    return count == old_count + 1 and old.get("firstSeen", {}).get("S", life) == life


def number(image, name):
    """An N attribute of a stream image as an int, or None."""
    try:
        return int(image[name]["N"])
    except (KeyError, TypeError, ValueError):
        return None


def latency_bucket(ms):
    """The histogram attribute a latency of `ms` adds one to."""
    return next((f"le{bound}" for bound in LATENCY_BOUNDS if ms <= bound), "leInf")


def own_answer(record, image):
    """(status class, latency ms) of the answer this record's own hit got, or None. The
    counter SETs lastStatus and lastLatencyMs with each answer it records, so an image also
    carries them after a hit that recorded none (a count-first policy). With the old image
    (NEW_AND_OLD_IMAGES) the hit's own answer is the one whose class counter it raised;
    with the new image alone there is no telling, and the image's answer is taken as the
    hit's (exact while every hit records one: docs/monitoring.md)."""
    status, ms = number(image, "lastStatus"), number(image, "lastLatencyMs")
    if status is None or ms is None or not 200 <= status <= 599 or ms < 0:
        return None
    name = CLASSES[status // 100 - 2]
    old = (record.get("dynamodb") or {}).get("OldImage")
    if old and (number(image, name) or 0) != (number(old, name) or 0) + 1:
        return None
    return name, ms


def lifetime_answers(image):
    """The item's all-time [answered, 4xx, 5xx, latency sum] (its own class counters and
    latencyMsTotal), or None when it has recorded no answer."""
    classes = [number(image, c) or 0 for c in CLASSES]
    if not any(classes):
        return None
    return (sum(classes), classes[2], classes[3], number(image, "latencyMsTotal") or 0)


def counted_hits(records):
    """(route, bucket) -> {"records": {(life, count): index}, "expires": ..., "newest": the
    newest lastSeen, "answers": {(life, count): (own_answer, lifetime_answers)}, "clients":
    {(life, count): the hit's client, when it has one}}, and the
    number of records that carry no counted hit (skipped: retrying them cannot help)."""
    pairs = {}
    skipped = 0
    for index, record in enumerate(records):
        image = (record.get("dynamodb") or {}).get("NewImage") or {}
        try:
            route = image["route"]["S"]
            count = int(image["count"]["N"])
            found = buckets(image["lastSeen"]["S"])
            life = image.get("firstSeen", {}).get("S", "")
            if record["eventName"] not in CHANGES or not is_hit(record, count, life):
                found = None
        except (KeyError, TypeError, ValueError, AttributeError):
            found = None
        if not found or not route.startswith("/"):
            skipped += 1
            continue
        last_seen = image["lastSeen"]["S"]
        who = hit_client(image)
        for bucket, expires in found:
            pair = pairs.setdefault(
                (route, bucket),
                {"records": {}, "expires": expires, "newest": "", "answers": {}, "clients": {}},
            )
            pair["records"].setdefault((life, count), index)
            if who:
                pair["clients"].setdefault((life, count), who)
            answers = own_answer(record, image), lifetime_answers(image)
            if answers != (None, None):
                pair["answers"].setdefault((life, count), answers)
            pair["newest"] = max(pair["newest"], last_seen)
    return pairs, skipped


def key(route, bucket):
    return {"route": {"S": route}, "bucket": {"S": bucket}}


def client():
    if dynamodb is None:
        raise NO_CLIENT
    return dynamodb


def read_stored(pairs):
    """(route, bucket) -> the stored item (or None), read consistently, 100 keys a call."""
    stored = dict.fromkeys(pairs)
    wanted = list(pairs)
    for start in range(0, len(wanted), MOST_ITEMS):
        request = {
            SERIES_TABLE: {
                "Keys": [key(*pair) for pair in wanted[start : start + MOST_ITEMS]],
                "ConsistentRead": True,
            }
        }
        for _ in range(ATTEMPTS):
            answer = client().batch_get_item(RequestItems=request)
            for item in answer["Responses"].get(SERIES_TABLE, []):
                stored[(item["route"]["S"], item["bucket"]["S"])] = item
            request = answer.get("UnprocessedKeys") or {}
            if not request:
                break
            time.sleep(random.uniform(0, 0.05))  # noqa: S311 (jitter, not a secret)
        else:
            raise Contended("DynamoDB left keys unread after every attempt")
    return stored


def counted_of(item):
    """life -> sorted disjoint [first, last] count ranges a stored bucket has counted."""
    if item is None:
        return {}
    return {life: [tuple(r) for r in ranges] for life, ranges in json.loads(item["counted"]["S"])}


def with_counts(counted, keys):
    """The ranges of `counted` with the (life, count) keys added."""
    merged = {}
    for life in {*counted, *(life for life, _ in keys)}:
        added = [(count, count) for key_life, count in keys if key_life == life]
        ranges = sorted([*counted.get(life, []), *added])
        joined = []
        for first, last in ranges:
            if joined and first <= joined[-1][1] + 1:
                joined[-1] = (joined[-1][0], max(joined[-1][1], last))
            else:
                joined.append((first, last))
        merged[life] = joined
    return merged


def size(counted):
    return sum(last - first + 1 for ranges in counted.values() for first, last in ranges)


def fresh_keys(pair, counted):
    """The (life, count) keys of the pair's records that its bucket's ranges do not hold."""
    return sorted(
        (life, count)
        for life, count in pair["records"]
        if not any(first <= count <= last for first, last in counted.get(life, []))
    )


def wire(counted):
    return json.dumps(sorted([life, [list(r) for r in ranges]] for life, ranges in counted.items()))


def answered(pair, fresh):
    """attribute -> what the fresh records' own answers add to it (empty: none had one)."""
    added = {}
    for record_key in fresh:
        answer = (pair["answers"].get(record_key) or (None, None))[0]
        if answer:
            name, ms = answer
            for attribute, value in ((name, 1), ("ms", ms), (latency_bucket(ms), 1)):
                added[attribute] = added.get(attribute, 0) + value
    return added


def adds(values, added):
    """The ADD clauses ("name :name") of each attribute's added value, put in `values`."""
    values.update({f":{name}": {"N": str(value)} for name, value in added.items()})
    return [f"{name} :{name}" for name in sorted(added)]


def pair_update(route, bucket, pair, item, counted, fresh):
    """The Update of one (route, bucket) item (stored as `item`, whose ranges are
    `counted`) that counts its fresh records, and adds their answers."""
    counted = with_counts(counted, fresh)
    values = {":counted": {"S": wire(counted)}, ":hits": {"N": str(size(counted))}}
    update = "SET counted = :counted, hits = :hits"
    if pair["expires"] is not None:
        update += ", expiresAt = :expires"
        values[":expires"] = {"N": str(pair["expires"])}
    clauses = adds(values, answered(pair, fresh))
    if clauses:
        update += " ADD " + ", ".join(clauses)
    if item is None:
        condition = "attribute_not_exists(counted)"
    else:  # exactly what was read: the ranges are the item's version
        condition = "counted = :was"
        values[":was"] = item["counted"]
    return {
        "Update": {
            "TableName": SERIES_TABLE,
            "Key": key(route, bucket),
            "UpdateExpression": update,
            "ConditionExpression": condition,
            "ExpressionAttributeValues": values,
        }
    }


def shard_part(shard_id, parts=SHARD_PARTS):
    """The suffix of the all-routes items (`parts` SHARD_PARTS) or of the top items
    (RANK_PARTS) a stream shard writes ("#3a7"), or "" when the event names no shard (a
    mapping without a tumbling window)."""
    if not isinstance(shard_id, str) or not shard_id:
        return ""
    return f"#{zlib.crc32(shard_id.encode()) % parts:03x}"


def total_update(bucket, hits, routes, expires, added, part=""):
    values = {":hits": {"N": str(hits)}, ":routes": {"N": str(routes)}}
    update = "ADD " + ", ".join(["hits :hits", "routes :routes", *adds(values, added)])
    if expires is not None:
        update += " SET expiresAt = :expires"
        values[":expires"] = {"N": str(expires)}
    return {
        "Update": {
            "TableName": SERIES_TABLE,
            "Key": key(ALL_ROUTES, bucket + part),
            "UpdateExpression": update,
            "ExpressionAttributeValues": values,
        }
    }


def all_routes_buckets(bucket):
    """The all-routes buckets a route's bucket adds its hits to: its own, and for an hourly
    one the all-time total too (each hit is in exactly one hour)."""
    return [bucket, TOTALS] if bucket.startswith("h#") else [bucket]


def chunks(pair_keys, pairs, part=""):
    """The pairs in groups whose items (theirs, the totals they add to and their records'
    client items) fit one transaction; a pair whose own items do not (a route bucket with
    more than ~24 clients in one batch) gets a group of its own, which transaction() writes
    in more than one."""
    group, items = [], set()
    for pair_key in pair_keys:
        needed = pair_items(pair_key, pairs[pair_key], part)
        if group and len(items | needed) > MOST_ITEMS:
            yield group
            group, items = [], set()
        group.append(pair_key)
        items |= needed
    if group:
        yield group


def pair_items(pair_key, pair, part):
    """The keys of every item that counting all of the pair's records writes."""
    route, bucket = pair_key
    keys = {pair_key, *((ALL_ROUTES, b + part) for b in all_routes_buckets(bucket))}
    for who in set(pair["clients"].values()):
        keys.update(client_buckets(who, route, bucket, part))
    return keys


def hit_client(image):
    """The client of the hit whose new image this is (`lastClient`), or None: with clients
    off, or when the counter named none."""
    if not CLIENTS_ON:
        return None
    who = (image.get("lastClient") or {}).get("S")
    return who if isinstance(who, str) and who else None


def client_key(text):
    """A client's (or a route's) fixed-length name in item keys: a client id may be 256
    characters and a route 1 KB, and a sort key holds 1 KB. 128 bits of SHA-256: the items
    also keep the client id and the route themselves, which is what is read back."""
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def client_buckets(who, route, bucket, part):
    """{key: route or None} of the client items a hit of client `who` counted in the route's
    `bucket` adds one to (the module docstring lists them): the (client, route) items keep
    the route, the client's own ones none. A day bucket carries its month's items."""
    if not who:
        return {}
    own = USAGE + client_key(who)
    keys = {(own + route, bucket): route, (own, bucket + part): None}
    if bucket.startswith("d#"):
        month = bucket[2:9]
        keys[(own, f"r#{month}#{client_key(route)}")] = route
        keys[(CLIENT_MONTHS + month, client_key(who) + part)] = None
    return keys


def client_update(item_key, added):
    """A client item's Update: a plain ADD, exact because the same transaction's route
    bucket Update is conditioned on the ranges it counts (docs/usage-billing.md)."""
    values = {":hits": {"N": str(added["hits"])}, ":client": {"S": added["client"]}}
    update = "ADD hits :hits SET #client = :client"
    if added["route"] is not None:  # "route" is the key's name: the route is kept as this
        update += ", routeName = :route"
        values[":route"] = {"S": added["route"]}
    if added["expires"] is not None:
        update += ", expiresAt = :expires"
        values[":expires"] = {"N": str(added["expires"])}
    return {
        "Update": {
            "TableName": SERIES_TABLE,
            "Key": key(*item_key),
            "UpdateExpression": update,
            "ExpressionAttributeNames": {"#client": "client"},
            "ExpressionAttributeValues": values,
        }
    }


def transaction(pairs, group, stored, part):
    """The actions of one transaction that counts fresh records of the group, and the pairs
    it writes. chunks() made the group fit one transaction whole, unless one pair's own items
    do not fit (a hit's client adds up to 4): then its fresh records are taken in part (the
    ranges it sets hold exactly the records taken), the rest by the next transaction."""
    actions, written, items = [], [], set()
    totals = {}  # bucket -> [hits, new routes, expires, answers added]
    added = {}  # client item key -> {"hits", "client", "route", "expires"}
    for pair_key in group:
        pair, item = pairs[pair_key], stored[pair_key]
        counted = counted_of(item)
        route, bucket = pair_key
        total_keys = pair_items(pair_key, {"clients": {}}, part)
        fresh = fresh_keys(pair, counted)
        if not fresh:
            continue
        taken = []
        # a client's records together: their items are shared
        for record_key in sorted(fresh, key=lambda k: (client_of(pair, k), k)):
            who = client_of(pair, record_key)
            needed = {*total_keys, *client_buckets(who, route, bucket, part)}
            if len(items | needed) > MOST_ITEMS:
                break
            items |= needed
            taken.append(record_key)
            for item_key, item_route in client_buckets(who, route, bucket, part).items():
                entry = added.setdefault(
                    item_key,
                    {"hits": 0, "client": who, "route": item_route, "expires": pair["expires"]},
                )
                entry["hits"] += 1
        if not taken:
            break  # full: the next transaction takes the rest
        taken.sort()
        actions.append(pair_update(route, bucket, pair, item, counted, taken))
        written.append(pair_key)
        first_hits = sum(1 for _, count in taken if count == 1)
        answers_added = answered(pair, taken)
        for total in all_routes_buckets(bucket):
            entry = totals.setdefault(total, [0, 0, None, {}])
            entry[0] += len(taken)
            entry[1] += first_hits
            for name, value in answers_added.items():
                entry[3][name] = entry[3].get(name, 0) + value
            if total == bucket:
                entry[2] = pair["expires"]
    actions += [total_update(b, *entry, part=part) for b, entry in totals.items()]
    actions += [client_update(item_key, entry) for item_key, entry in added.items()]
    return actions, written


def client_of(pair, record_key):
    return pair["clients"].get(record_key) or ""


def write_chunk(pairs, group, stored, part=""):
    """Count the group's new records in as few transactions as fit (one without clients);
    re-read and retry when another write got there first. Returns the number of buckets
    changed."""
    changed, races = set(), 0
    while True:
        actions, written = transaction(pairs, group, stored, part)
        if not actions:
            return len(changed)
        try:
            client().transact_write_items(TransactItems=actions)
        except aws.ClientError as error:
            if error.response.get("Error", {}).get("Code") != "TransactionCanceledException":
                raise
            reasons = {r.get("Code") for r in error.response.get("CancellationReasons") or []}
            if reasons - RACES:  # e.g. ValidationError, ThrottlingError: say which
                causes = ", ".join(sorted(reasons - RACES))
                raise Cancelled(f"transaction cancelled: {causes}") from error
            races += 1
            if races >= ATTEMPTS:
                raise Contended(
                    f"the buckets changed under {ATTEMPTS} transactions in a row"
                ) from error
            time.sleep(random.uniform(0, 0.02 * races))  # noqa: S311 (jitter)
            stored.update(read_stored({pair_key: None for pair_key in group}))
            continue
        races = 0
        for action in actions:  # what is stored now, for the day's top and the next one
            update = action["Update"]
            pair_key = (update["Key"]["route"]["S"], update["Key"]["bucket"]["S"])
            if pair_key not in written:
                continue
            values = update["ExpressionAttributeValues"]
            was = stored[pair_key] or {}
            stored[pair_key] = {"counted": values[":counted"], "hits": values[":hits"]}
            for name in (*CLASSES, "ms"):  # the day's top ranks these too
                total = number(was, name) or 0
                total += int(values[f":{name}"]["N"]) if f":{name}" in values else 0
                if total:
                    stored[pair_key][name] = {"N": str(total)}
        changed.update(written)


def ranking(values):
    """The longest prefix of the routes by value (highest first, ties by name) of at most
    TOP_SIZE routes whose entries fit TOP_BYTES together; `values` is route -> (value,
    answers or None). Values only rise, and an entry only grows (its answers come with a
    higher value), so a route leaves it only for routes with higher values that fill it, and
    it stays exact in any order."""
    top, size = {}, 0
    for route, entry in sorted(values.items(), key=rank_key)[:TOP_SIZE]:
        size += len(route.encode()) + TOP_ENTRY_BYTES + (TOP_ANSWER_BYTES if entry[1] else 0)
        if size > TOP_BYTES:
            break
        top[route] = entry
    return top


def rank_key(route_entry):
    """The order of a ranking: highest value first, ties by name."""
    route, (value, _) = route_entry
    return -value, route


def first_left_out(merged, top, was):
    """The rank key (-value, route, after) of the best-ranked route a part's ranking does not
    hold, or None when it holds every route it was given: of the routes merged now, and the
    bound it kept before (`was`). Values only rise, so an old bound still holds (the routes
    that filled the ranking then are still ahead of it). `after` (True) puts the bound just
    behind `route` rather than on it."""
    out = [(-value, route, False) for route, (value, _) in merged.items() if route not in top]
    return min([*out, *([was] if was else [])], default=None)


def left_out_of(item, current):
    """The stored part's bound (first_left_out()), or None. An item written before parts
    (no `leftOut`) that may have been cut (TOP_SIZE routes, or no room left for the longest
    route) is exact down to its last route only: the bound is just behind it."""
    if item is None:
        return None
    if "leftOut" in item:
        stored = item["leftOut"].get("L")
        if not stored:
            return None
        return -int(stored[0]["N"]), stored[1]["S"], len(stored) > 2
    size = sum(
        len(r.encode()) + TOP_ENTRY_BYTES + (TOP_ANSWER_BYTES if answers else 0)
        for r, (_, answers) in current.items()
    )
    if current and (len(current) >= TOP_SIZE or size > TOP_BYTES - LONGEST_ENTRY_BYTES):
        route, (value, _) = max(current.items(), key=rank_key)
        return -value, route, True
    return None


def stored_bound(bound):
    """A bound as `leftOut` holds it: [value, route] (and true when just behind the route),
    or NULL."""
    if bound is None:
        return {"NULL": True}
    value, route, after = bound
    return {"L": [{"N": str(-value)}, {"S": route}, *([{"BOOL": True}] if after else [])]}


def higher(entry, other):
    """The entry of the higher value; of equal ones, the one that has answers."""
    return other if (other[0], other[1] is not None) > (entry[0], entry[1] is not None) else entry


def top_entry(value):
    """(value, answers or None) of a top item's stored entry: a number, or a list of the
    value and [answered, 4xx, 5xx, latency sum]."""
    if "N" in value:
        return int(value["N"]), None
    numbers = [int(n["N"]) for n in value["L"]]
    return numbers[0], tuple(numbers[1:])


def stored_entry(entry):
    value, answers = entry
    if answers is None:
        return {"N": str(value)}
    return {"L": [{"N": str(n)} for n in (value, *answers)]}


def merge_top(bucket, values, newest):
    """Merge route -> (value, answers) into a top item (a part), keeping its ranking() and
    its first left-out route; True when it changed."""
    for attempt in range(ATTEMPTS):
        if attempt:
            time.sleep(random.uniform(0, 0.02 * attempt))  # noqa: S311 (jitter, not a secret)
        item = (
            client()
            .get_item(TableName=SERIES_TABLE, Key=key(TOP, bucket), ConsistentRead=True)
            .get("Item")
        )
        current = {r: top_entry(v) for r, v in item["routes"]["M"].items()} if item else {}
        was_left_out = left_out_of(item, current)
        merged = dict(current)
        for route, entry in values.items():
            merged[route] = higher(merged.get(route, (0, None)), entry)
        top = ranking(merged)
        left_out = first_left_out(merged, top, was_left_out)
        if top == current and left_out == was_left_out and item and "leftOut" in item:
            return False
        version = int(item["version"]["N"]) if item else 0
        as_of = max(newest, item["asOf"]["S"]) if item else newest
        try:
            client().update_item(
                TableName=SERIES_TABLE,
                Key=key(TOP, bucket),
                UpdateExpression="SET #routes = :routes, leftOut = :leftOut, version = :next, "
                "asOf = :asOf",
                ConditionExpression="attribute_not_exists(version) OR version = :version",
                ExpressionAttributeNames={"#routes": "routes"},
                ExpressionAttributeValues={
                    ":routes": {"M": {r: stored_entry(e) for r, e in top.items()}},
                    ":leftOut": stored_bound(left_out),
                    ":next": {"N": str(version + 1)},
                    ":version": {"N": str(version)},
                    ":asOf": {"S": as_of},
                },
            )
        except aws.ClientError as error:
            if error.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
                continue
            raise
        return True
    raise Contended(f"the top item changed under {ATTEMPTS} merges in a row")


def bucket_answers(item):
    """A bucket item's [answered, 4xx, 5xx, latency sum], or None when it has no answers."""
    classes = [number(item, c) or 0 for c in CLASSES]
    if not any(classes):
        return None
    return (sum(classes), classes[2], classes[3], number(item, "ms") or 0)


def tops(pairs, stored, written):
    """bucket of the top item -> (route -> (value, answers), as of): the highest count of
    each route for all time (with the all-time answers of the item at that count), as of the
    newest hit of the batch; each written day bucket's hits (and answers) for that day's, as
    of the newest hit those buckets counted."""
    ranked = {TOTALS: ({}, "")}
    for (route, bucket), pair in pairs.items():
        counts, newest = ranked[TOTALS]
        for life, count in pair["records"]:
            lifetime = (pair["answers"].get((life, count)) or (None, None))[1]
            counts[route] = higher(counts.get(route, (0, None)), (count, lifetime))
        ranked[TOTALS] = counts, max(newest, pair["newest"])
        item = stored.get((route, bucket))
        if bucket.startswith("d#") and (route, bucket) in written and item is not None:
            hits, newest = ranked.get(bucket, ({}, ""))
            hits[route] = int(item["hits"]["N"]), bucket_answers(item)
            ranked[bucket] = hits, max(newest, pair["newest"])
    return ranked


FAULTS = (aws.ClientError, aws.BotoCoreError, Contended, Cancelled)


def out_of_time(context):
    remaining = getattr(context, "get_remaining_time_in_millis", None)
    return remaining is not None and remaining() < RESERVE_MS


def handler(event, context):
    started = time.monotonic()
    event = event or {}
    records = event.get("Records") or []
    part = shard_part(event.get("shardId"))
    rank_part = shard_part(event.get("shardId"), RANK_PARTS)
    pairs, skipped = counted_hits(records)
    changed = 0
    failed = set()  # pairs whose records were not counted
    written = set()  # pairs stored as of this batch (counted now or before)
    errors = []
    stored = {}
    try:
        stored = read_stored(pairs) if pairs else {}
    except FAULTS as fault:
        errors.append(f"{type(fault).__name__}: {fault}")
        failed = set(pairs)
    for group in chunks([p for p in pairs if p not in failed], pairs, part):
        if out_of_time(context):
            errors.append("OutOfTime: stopped before the function's timeout")
            failed.update(group)
            continue
        try:
            changed += write_chunk(pairs, group, stored, part)
            written.update(group)
        except FAULTS as fault:
            errors.append(f"{type(fault).__name__}: {fault}")
            failed.update(group)
    tops_changed = 0
    for bucket, (values, as_of) in tops(pairs, stored, written).items():
        if not values:
            continue
        try:
            if out_of_time(context):
                raise Contended("stopped before the function's timeout")
            tops_changed += merge_top(bucket + rank_part, values, as_of)
        except FAULTS as fault:
            # Every record of the batch may feed the all-time top: retry from the first.
            errors.append(f"{type(fault).__name__}: {fault}")
            failed = set(pairs)
    failures = []
    if failed:
        # Lambda retries from the lowest sequence number reported: that record and all after
        # it. Records counted already are found counted and change nothing.
        first = min(min(pairs[p]["records"].values()) for p in failed)
        failures.append({"itemIdentifier": records[first]["dynamodb"]["SequenceNumber"]})
    line = {
        "level": "ERROR" if failures else "INFO",
        "requestId": getattr(context, "aws_request_id", None) or "-",
        "records": len(records),
        "skipped": skipped,
        "buckets": len(pairs),
        "changed": changed,
        "topsChanged": tops_changed,
        "failedFrom": failures[0]["itemIdentifier"] if failures else None,
        "latencyMs": round((time.monotonic() - started) * 1000, 1),
    }
    if errors:
        line["error"] = errors[0]
    if failures:
        line.update(records_not_aggregated_metric(len(records) - first, context))
    print(json.dumps(line))
    if "window" in event:  # a tumbling window: an answer without `state` is a failed one
        return {"state": {}, "batchItemFailures": failures}
    return {"batchItemFailures": failures}


# A batch handed back in part (batchItemFailures) is no Lambda error: this metric is what
# alarms on it (templates/streaming.py, same names). CloudWatch Logs reads it from the log
# line itself (embedded metric format): no PutMetricData call, no permission.
METRICS_NAMESPACE = "RouteCounter"
RECORDS_NOT_AGGREGATED = "RecordsNotAggregated"


def records_not_aggregated_metric(count, context):
    """The log line's fields that make CloudWatch record `count` records handed back to
    Lambda (they and every later record of the batch are retried), per function."""
    function = getattr(context, "function_name", None) or os.environ.get(
        "AWS_LAMBDA_FUNCTION_NAME", "-"
    )
    return {
        "_aws": {
            "Timestamp": int(time.time() * 1000),
            "CloudWatchMetrics": [
                {
                    "Namespace": METRICS_NAMESPACE,
                    "Dimensions": [["FunctionName"]],
                    "Metrics": [{"Name": RECORDS_NOT_AGGREGATED, "Unit": "Count"}],
                }
            ],
        },
        "FunctionName": function,
        RECORDS_NOT_AGGREGATED: count,
    }
