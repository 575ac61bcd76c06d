"""Route Counter aggregator: the counter table's stream -> hits per route per hour and day.

Each stream record carries a route's new `count` and its `lastSeen` time. Per (route,
bucket) of a batch the highest count is written with a conditional update that only
raises `maxCount`: retried, duplicated or out-of-order batches never change a result.
Hits in a bucket = its maxCount minus the maxCount of the route's previous recorded
bucket of the same kind (handler/stats.py computes that on read).

The all-time top routes live in one bounded item of the same table (route "#top", which no
route can be: routes start with "/"): the TOP_SIZE highest counts, merged per batch by an
optimistic read-merge-write. Merging only raises counts and keeps the highest TOP_SIZE, so
it is exact and order-independent too: a route leaves the item only for TOP_SIZE routes
with higher counts, which never fall.
"""

import calendar
import json
import os
import time

import boto3
from botocore import exceptions as aws
from botocore.config import Config

SERIES_TABLE = os.environ.get("SERIES_TABLE", "")
HOURLY_DAYS = int(os.environ.get("SERIES_HOURLY_DAYS") or 30)
CHANGES = {"INSERT", "MODIFY"}  # REMOVE has no new image: nothing was counted
ONLY_RAISES = "attribute_not_exists(maxCount) OR maxCount < :c"
TOP_KEY = {"route": {"S": "#top"}, "bucket": {"S": "all"}}
TOP_SIZE = 100
# Invocations of other shards merge into the same item: a lost race reads and merges again.
TOP_ATTEMPTS = 5


class TopContended(Exception):
    """Other invocations kept changing the top item: this batch retries later."""


# Created once per container; SDK retries for throttling and lost answers (writes are
# idempotent), then the batch reports its first failed record and Lambda retries from it.
try:
    dynamodb = boto3.client(
        "dynamodb",
        config=Config(connect_timeout=2, read_timeout=3, retries={"mode": "standard"}),
    )
except aws.NoRegionError as error:  # never on Lambda (AWS_REGION)
    dynamodb = None
    NO_CLIENT = error


def buckets(last_seen):
    """The hour and day buckets of a lastSeen time ("2026-12-01T03:04:05Z"), with the
    epoch second an hourly bucket expires at; None for a time that is not one."""
    try:
        moment = time.strptime(last_seen, "%Y-%m-%dT%H:%M:%SZ")
    except (TypeError, ValueError):
        return None
    hour_start = calendar.timegm((*moment[:4], 0, 0, 0, 0, 0))
    expires = hour_start + 3600 + HOURLY_DAYS * 86400
    return [(f"h#{last_seen[:13]}", expires), (f"d#{last_seen[:10]}", None)]


def highest_counts(records):
    """(route, bucket) -> [highest count, expiresAt, index of its first record], the newest
    lastSeen, and the number of records that carry no count (skipped: retrying them
    cannot help)."""
    highest = {}
    newest = ""
    skipped = 0
    for index, record in enumerate(records):
        image = (record.get("dynamodb") or {}).get("NewImage") or {}
        try:
            route = image["route"]["S"]
            count = int(image["count"]["N"])
            found = buckets(image["lastSeen"]["S"])
        except (KeyError, TypeError, ValueError):
            found = None
        if record.get("eventName") not in CHANGES or not found:
            skipped += 1
            continue
        newest = max(newest, image["lastSeen"]["S"])
        for bucket, expires in found:
            entry = highest.setdefault((route, bucket), [count, expires, index])
            entry[0] = max(entry[0], count)
    return highest, newest, skipped


def raise_max(route, bucket, count, expires):
    """One conditional write; False when the bucket already holds this count or more."""
    update = "SET maxCount = :c"
    values = {":c": {"N": str(count)}}
    if expires is not None:
        update += ", expiresAt = :e"
        values[":e"] = {"N": str(expires)}
    if dynamodb is None:
        raise NO_CLIENT
    try:
        dynamodb.update_item(
            TableName=SERIES_TABLE,
            Key={"route": {"S": route}, "bucket": {"S": bucket}},
            UpdateExpression=update,
            ConditionExpression=ONLY_RAISES,
            ExpressionAttributeValues=values,
        )
    except aws.ClientError as error:
        if error.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
            return False
        raise
    return True


def merge_top(counts, newest):
    """Merge route -> highest count of a batch into the top item; True when it changed."""
    for _ in range(TOP_ATTEMPTS):
        item = dynamodb.get_item(TableName=SERIES_TABLE, Key=TOP_KEY, ConsistentRead=True)
        item = item.get("Item")
        current = {r: int(c["N"]) for r, c in item["routes"]["M"].items()} if item else {}
        merged = dict(current)
        for route, count in counts.items():
            merged[route] = max(count, merged.get(route, 0))
        top = dict(sorted(merged.items(), key=lambda rc: (-rc[1], rc[0]))[:TOP_SIZE])
        if top == current:
            return False
        version = int(item["version"]["N"]) if item else 0
        as_of = max(newest, item["asOf"]["S"]) if item else newest
        try:
            dynamodb.update_item(
                TableName=SERIES_TABLE,
                Key=TOP_KEY,
                UpdateExpression="SET #routes = :routes, version = :next, asOf = :asOf",
                ConditionExpression="attribute_not_exists(version) OR version = :version",
                ExpressionAttributeNames={"#routes": "routes"},
                ExpressionAttributeValues={
                    ":routes": {"M": {r: {"N": str(c)} for r, c in top.items()}},
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
    raise TopContended(f"the top item changed under {TOP_ATTEMPTS} merges in a row")


def handler(event, context):
    started = time.monotonic()
    records = (event or {}).get("Records") or []
    highest, newest, skipped = highest_counts(records)
    written = unchanged = 0
    first_failed = None  # index of the earliest record whose bucket was not written
    error = None
    for (route, bucket), (count, expires, index) in highest.items():
        try:
            if raise_max(route, bucket, count, expires):
                written += 1
            else:
                unchanged += 1
        except (aws.ClientError, aws.BotoCoreError) as fault:
            error = error or f"{type(fault).__name__}: {fault}"
            first_failed = index if first_failed is None else min(first_failed, index)
    counts = {}
    for (route, _), (count, _, _) in highest.items():
        counts[route] = max(count, counts.get(route, 0))
    top_changed = False
    if counts:
        try:
            if dynamodb is None:
                raise NO_CLIENT
            top_changed = merge_top(counts, newest)
        except (aws.ClientError, aws.BotoCoreError, TopContended) as fault:
            # The whole batch went into the merge: retry from its first counted record.
            error = error or f"{type(fault).__name__}: {fault}"
            first_failed = min(index for _, _, index in highest.values())
    failures = []
    if first_failed is not None:
        # Lambda retries from the lowest sequence number reported: that record and all
        # after it. Writes that succeeded are repeated harmlessly (they only raise).
        sequence = records[first_failed]["dynamodb"]["SequenceNumber"]
        failures.append({"itemIdentifier": sequence})
    line = {
        "level": "ERROR" if failures else "INFO",
        "requestId": getattr(context, "aws_request_id", None) or "-",
        "records": len(records),
        "skipped": skipped,
        "buckets": len(highest),
        "written": written,
        "unchanged": unchanged,
        "topChanged": top_changed,
        "failedFrom": failures[0]["itemIdentifier"] if failures else None,
        "latencyMs": round((time.monotonic() - started) * 1000, 1),
    }
    if error:
        line["error"] = error
    print(json.dumps(line))
    return {"batchItemFailures": failures}
