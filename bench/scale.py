"""Benchmark 9: the analytics at scale. The real aggregator on N stream shards in parallel.

What a busy table does on AWS, emulated here: its stream has a shard per partition, each read
by its own aggregator invocation, all at once, and DynamoDB cancels a transaction that meets
another on an item (`TransactionConflict`) instead of making it wait (local/atomic_moto.py,
conflicts="cancel"). For N = 1, 4 and 16 shards, Zipf traffic over 1,000 routes at the hits/s
a table of N partitions takes (1,000 write units a second each; a hit is one) becomes the
stream records the counter's UpdateItem makes (NEW_AND_OLD_IMAGES: route, count, firstSeen,
lastSeen), a route's records always in one shard, in order. One thread per shard plays
Lambda's poller: batches of the mapping's BatchSize, after its batching window or when full,
a reported failure retried from its record. handler/aggregator.py's own handler writes to an
in-process moto series table.

Time is simulated, not waited for: the traffic has its own clock, and an invocation takes
INVOKE_MS plus CALL_MS per DynamoDB call it makes (TRANSACTION_MS for a TransactWriteItems),
assumed latencies stated as such. From that clock come how far behind each shard falls and
the write units each item takes per second. Conflicts are what the emulator's threads meet in
wall-clock time: N invocations at once, as on AWS at full load, but the emulator's call takes
another time than DynamoDB's, so their rate is evidence, not a forecast.

Write units are estimated from each write's item (its key and the values it sets) by
DynamoDB's sizing rules, as bench 7 does: 1 per KB, 2 per KB in a transaction. The hit's own
write (1 unit) is not in them.
"""

import collections
import contextlib
import io
import itertools
import math
import os
import random
import threading
import time
import zlib

import boto3
from botocore.config import Config
from moto import mock_aws

from bench.analytics import item_bytes
from bench.common import (
    aggregator_batching,
    generated_template,
    lambda_context,
    load_handler,
    row,
    series_definition,
)
from local.streams import window_event, window_of

ROUTES = 1000
ZIPF_S = 1.0
PARTITION_UNITS = 1000  # write units a second one partition (and one item) takes
SHARDS = (1, 4, 16)
SECONDS, SECONDS_QUICK = 12.0, 0.2  # simulated seconds at full load: a batch fills in 10
QUIET_RATE = 100  # hits/s of the quiet run (one partition, one shard)
QUIET_SECONDS, QUIET_SECONDS_QUICK = 95.0, 3.0
INVOKE_MS = 20.0  # assumed: Lambda's poller hands a batch to a warm function
CALL_MS = 8.0  # assumed: a DynamoDB read or single-item write, in the same region
TRANSACTION_MS = 20.0  # assumed: a TransactWriteItems of up to 100 items
FAILED_AFTER = 50  # Lambda's attempts (the mapping's MaximumRetryAttempts) before giving up
START = 1_796_097_590  # 2026-12-01T03:59:50Z: the traffic crosses an hour
STREAM_ARN = "arn:aws:dynamodb:us-east-1:123456789012:table/counter/stream/2026-12-01T00:00:00.000"


class Shard:
    """One shard's records, its aggregator (own client) and what the poller saw."""

    def __init__(self, number: int, aggregator) -> None:
        self.number = number
        # as DynamoDB names a stream's shards: a creation time and a random part
        self.shard_id = f"shardId-{START * 1000 + number:020d}-{zlib.crc32(bytes([number])):08x}"
        self.aggregator = aggregator
        self.records: list[tuple[float, dict]] = []  # (arrival, stream record)
        self.clock = 0.0  # simulated seconds since START
        self.invocations = 0
        self.failed_batches = 0
        self.gave_up = 0
        # how long each batch waited, once due (full, or its window over), for the function
        self.lags: list[float] = []
        self.calls: collections.Counter[str] = collections.Counter()
        self.transactions = 0
        self.conflicts = 0
        # The top items are merged by an optimistic read-merge-write (a conditional
        # UpdateItem on their version): a merge another shard got in first is retried.
        self.top_merges = 0
        self.top_retries = 0
        self.other_cancels: collections.Counter[str] = collections.Counter()
        self.writes: list[tuple[float, tuple, int]] = []  # (time, item, units), applied
        self._pending: dict | None = None
        events = aggregator.dynamodb.meta.events
        events.register("before-parameter-build.dynamodb", self._before)
        events.register("after-call.dynamodb", self._after)

    def _before(self, model, params, **_) -> None:
        self.calls[model.name] += 1
        self.clock += (TRANSACTION_MS if model.name == "TransactWriteItems" else CALL_MS) / 1000
        if model.name == "TransactWriteItems":
            self._pending = {
                "at": self.clock,
                "items": [a["Update"] for a in params["TransactItems"]],
            }
        elif model.name == "UpdateItem":
            self._pending = {"at": self.clock, "items": [params], "single": True}
        else:
            self._pending = None

    def _after(self, model, parsed, **_) -> None:
        pending, self._pending = self._pending, None
        failed = "Error" in parsed
        if model.name == "TransactWriteItems":
            self.transactions += 1
            reasons = {r.get("Code") for r in parsed.get("CancellationReasons") or []}
            if failed and "TransactionConflict" in reasons:
                self.conflicts += 1
            elif failed:
                self.other_cancels[parsed["Error"].get("Code", "?")] += 1
        if (
            model.name == "UpdateItem"
            and pending
            and pending["items"][0]["Key"]["route"]["S"] == "#top"
        ):
            self.top_merges += 1
            if failed and parsed["Error"].get("Code") == "ConditionalCheckFailedException":
                self.top_retries += 1
        if pending is None or failed:
            return
        factor = 1 if pending.get("single") else 2
        for update in pending["items"]:
            self.writes.append((pending["at"], item_of(update), factor * write_units(update)))


def item_of(update: dict) -> tuple:
    return update["Key"]["route"]["S"], update["Key"]["bucket"]["S"]


def write_units(update: dict) -> int:
    """Units of one write: the item's key and the values it sets (not the condition's)."""
    values = {
        name: value
        for name, value in update.get("ExpressionAttributeValues", {}).items()
        if name not in (":was", ":version")
    }
    return max(1, math.ceil(item_bytes({**update["Key"], **values}) / 1024))


def iso(at: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(int(at)))


def traffic(rate: float, seconds: float, shards: list[Shard], rng: random.Random) -> dict:
    """Zipf hits over ROUTES routes at `rate` a second into the shards' records; returns
    the hits per (route, bucket) and per all-routes bucket they should give."""
    weights = list(itertools.accumulate(1 / (i + 1) ** ZIPF_S for i in range(ROUTES)))
    total = round(rate * seconds)
    arrivals = sorted(rng.uniform(0, seconds) for _ in range(total))
    routes = rng.choices(range(ROUTES), cum_weights=weights, k=total)
    counts: dict[str, int] = {}
    first_seen: dict[str, str] = {}
    last_seen: dict[str, str] = {}
    truth: collections.Counter[tuple] = collections.Counter()
    for sequence, (arrival, index) in enumerate(zip(arrivals, routes, strict=True)):
        route = f"/r/{index}"
        now = iso(START + arrival)
        old = counts.get(route)
        counts[route] = (old or 0) + 1
        first = first_seen.setdefault(route, now)
        new_image = {
            "route": {"S": route},
            "count": {"N": str(counts[route])},
            "firstSeen": {"S": first},
            "lastSeen": {"S": now},
        }
        change = {
            "Keys": {"route": {"S": route}},
            "NewImage": new_image,
            "SequenceNumber": f"{sequence + 1:021d}",
            "SizeBytes": item_bytes(new_image),
            "StreamViewType": "NEW_AND_OLD_IMAGES",
            "ApproximateCreationDateTime": START + arrival,
        }
        if old is not None:
            change["OldImage"] = {
                **new_image,
                "count": {"N": str(old)},
                "lastSeen": {"S": last_seen[route]},
            }
        last_seen[route] = now
        record = {
            "eventID": f"e{sequence}",
            "eventName": "INSERT" if old is None else "MODIFY",
            "eventVersion": "1.1",
            "eventSource": "aws:dynamodb",
            "awsRegion": "us-east-1",
            "dynamodb": change,
        }
        shard = shards[zlib.crc32(route.encode()) % len(shards)]
        shard.records.append((arrival, record))
        for bucket in (f"h#{now[:13]}", f"d#{now[:10]}"):
            truth[(route, bucket)] += 1
            truth[("#all", bucket)] += 1
        truth[("#all", "all")] += 1
    return truth


def poll(shard: Shard, batch_size: int, window: float, tumbling: int = 0) -> None:
    """Lambda's poller for one shard: a batch when full or `window` after its first record
    arrived; the function's reported failure retried from its record. With a tumbling
    window (`tumbling` seconds), a batch holds one window's records and its event names the
    shard and the window (local/streams.py's window_event)."""
    records, position, attempts = shard.records, 0, 0
    while position < len(records):
        first = records[position][0]
        full = (
            records[position + batch_size - 1][0] if position + batch_size <= len(records) else None
        )
        due = first + window if full is None else min(first + window, full)
        ready = max(shard.clock, due)
        batch = [r for t, r in records[position : position + batch_size] if t <= ready]
        event = {"Records": batch}
        if tumbling:
            start = window_of(batch[0], tumbling)
            batch = [r for r in batch if window_of(r, tumbling) == start]
            event = window_event(batch, STREAM_ARN, shard.shard_id, start, tumbling, {})
        shard.lags.append(ready - due)
        shard.clock = ready + INVOKE_MS / 1000
        shard.invocations += 1
        answer = shard.aggregator.handler(event, lambda_context())
        assert not tumbling or answer.get("state") == {}, answer  # else Lambda: failed
        failures = answer["batchItemFailures"]
        if not failures:
            position += len(batch)
            attempts = 0
            continue
        shard.failed_batches += 1
        attempts += 1
        failed = failures[0]["itemIdentifier"]
        at = next(i for i, r in enumerate(batch) if r["dynamodb"]["SequenceNumber"] == failed)
        if attempts >= FAILED_AFTER:  # Lambda sends the batch to the failure queue: lost
            shard.gave_up += len(batch) - at
            position += len(batch)
            attempts = 0
        else:
            position += at


def stored_hits(client, table: str) -> dict:
    """(route, bucket) -> hits stored, all routes' parts (one per shard) summed by the stats'
    own rule (handler/stats.py's whole_bucket)."""
    whole_bucket = load_handler("stats", "stats_for_scale").whole_bucket
    hits: collections.Counter[tuple] = collections.Counter()
    for page in client.get_paginator("scan").paginate(TableName=table):
        for item in page["Items"]:
            if "hits" in item:
                route, bucket = item["route"]["S"], item["bucket"]["S"]
                hits[(route, whole_bucket(bucket) if route == "#all" else bucket)] += int(
                    item["hits"]["N"]
                )
    return dict(hits)


def shared_parts(players: list[Shard], parts_of: str) -> int:
    """Pairs of shards whose ids hash to the same part (the aggregator's SHARD_PARTS or
    RANK_PARTS): each such pair writes one item, and races on it."""
    aggregator = players[0].aggregator
    found = collections.Counter(
        aggregator.shard_part(p.shard_id, getattr(aggregator, parts_of)) for p in players
    )
    return sum(n * (n - 1) // 2 for n in found.values())


def run_case(client, series: dict, mapping: dict, shards: int, rate: float, seconds: float) -> dict:
    """Traffic at `rate` hits/s for `seconds` over `shards` shards, aggregated in parallel
    into a new series table (`series`: its CreateTable arguments)."""
    table = f"scale-series-{shards}-{int(rate)}"
    client.create_table(TableName=table, **series)
    os.environ["SERIES_TABLE"] = table
    players = [
        Shard(n, load_handler("aggregator", f"aggregator_scale_{table}_{n}")) for n in range(shards)
    ]
    truth = traffic(rate, seconds, players, random.Random(shards * 1000 + int(rate)))
    started = time.monotonic()
    threads = [
        threading.Thread(
            target=poll,
            args=(
                p,
                mapping["BatchSize"],
                mapping["MaximumBatchingWindowInSeconds"],
                mapping.get("TumblingWindowInSeconds", 0),
            ),
        )
        for p in players
    ]
    with contextlib.redirect_stdout(io.StringIO()):  # the handlers' log lines
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    wall = time.monotonic() - started
    stored = stored_hits(client, table)
    wrong = sum(1 for k in truth if stored.get(k) != truth[k])
    hits = sum(len(p.records) for p in players)
    per_second: collections.Counter[tuple] = collections.Counter()
    for p in players:
        for at, item, units in p.writes:
            per_second[(item, int(at))] += units
    (hot_item, _), hot_units = per_second.most_common(1)[0]
    transactions = sum(p.transactions for p in players)
    return {
        "shards": shards,
        "rate": rate,
        "seconds": seconds,
        "hits": hits,
        "wall_seconds": round(wall, 1),
        "buckets": len(truth),
        "wrong_buckets": wrong,
        "lost_records": sum(p.gave_up for p in players),
        "invocations": sum(p.invocations for p in players),
        "failed_batches": sum(p.failed_batches for p in players),
        "transactions": transactions,
        "conflicts": sum(p.conflicts for p in players),
        "top_merges": sum(p.top_merges for p in players),
        "top_retries": sum(p.top_retries for p in players),
        "pairs_sharing_a_ranking_part": shared_parts(players, "RANK_PARTS"),
        "pairs_sharing_a_totals_part": shared_parts(players, "SHARD_PARTS"),
        "other_cancels": dict(sum((p.other_cancels for p in players), collections.Counter())),
        "calls": dict(sum((p.calls for p in players), collections.Counter())),
        "write_units": sum(units for p in players for _, _, units in p.writes),
        "hottest_item": list(hot_item),
        "hottest_units_per_second": hot_units,
        "max_lag_seconds": max(lag for p in players for lag in p.lags),
        "caught_up_after_seconds": max(p.clock for p in players) - seconds,
        "window": mapping["MaximumBatchingWindowInSeconds"],
    }


def rows_of(case: dict, full: bool) -> list[dict]:
    n, hits = case["shards"], case["hits"]
    label = f"Scale: {n} shard{'s' if n > 1 else ''}, {case['rate']:,.0f} hits/s"
    # Both ways a shard can lose a race to another: a transaction cancelled for a conflict, a
    # top merge whose version moved (each is retried)
    lost = case["conflicts"] + case["top_retries"]
    retries = lost / max(case["transactions"] + case["top_merges"], 1)
    units = case["write_units"] / hits
    hot = case["hottest_units_per_second"] / PARTITION_UNITS
    out = [
        row(
            f"{label}: buckets that differ from the hits sent",
            value=float(case["wrong_buckets"]),
            unit="buckets",
            goal="= 0",
            passed=case["wrong_buckets"] == 0,
            note=f"{case['buckets']} buckets (route and all-routes, hour and day) from {hits} "
            f"hits over {case['seconds']} simulated s; records given up on: "
            f"{case['lost_records']}",
        ),
        row(
            f"{label}: writes retried for a conflict",
            value=100 * retries,
            unit="%",
            goal="< 1%",
            passed=retries < 0.01,
            note=f"{case['conflicts']} of {case['transactions']} transactions cancelled, "
            f"{case['top_retries']} of {case['top_merges']} top merges retried "
            f"({case['pairs_sharing_a_ranking_part']} pairs of shards share a ranking part, "
            f"{case['pairs_sharing_a_totals_part']} a totals part); "
            f"{case['failed_batches']} of {case['invocations']} invocations reported a "
            f"failure (retried); other cancellations: {case['other_cancels'] or 'none'}",
        ),
        row(
            f"{label}: analytics write units per hit (estimate)",
            value=units,
            unit="WCU",
            goal="<= 0.5" if full else "<= 1",
            passed=units <= (0.5 if full else 1),
            note="transactional writes 2 per KB, top items 1 per KB; calls: "
            + ", ".join(f"{op} {c}" for op, c in sorted(case["calls"].items())),
        ),
        row(
            f"{label}: hottest item's share of a partition's writes",
            value=100 * hot,
            unit="%",
            goal="< 30%",
            passed=hot < 0.3,
            note=f"{case['hottest_units_per_second']} units in one simulated second on "
            f"{tuple(case['hottest_item'])}; a partition takes {PARTITION_UNITS}",
        ),
        row(
            f"{label}: behind the stream (simulated)",
            value=case["max_lag_seconds"],
            unit="s",
            status="info",
            note=f"caught up {max(case['caught_up_after_seconds'], 0):.2f} s after the "
            f"traffic ended (the last batch waits out the {case['window']} s batching "
            f"window); invocation {INVOKE_MS:.0f} ms + {CALL_MS:.0f} ms a call, "
            f"{TRANSACTION_MS:.0f} ms a transaction (assumed); {case['wall_seconds']} s wall",
        ),
    ]
    return out


def run(quick: bool = False) -> dict:
    from local import atomic_moto, moto_fidelity

    template = generated_template()
    series = series_definition(template)
    mapping = aggregator_batching(template)
    moto_fidelity.apply()
    atomic_moto.make_dynamodb_atomic()
    atomic_moto.configure(conflicts="cancel")
    seconds = SECONDS_QUICK if quick else SECONDS
    cases = []
    with mock_aws():
        client = boto3.client("dynamodb", config=Config(retries={"mode": "standard"}))
        for shards in SHARDS:
            cases.append(
                run_case(client, series, mapping, shards, shards * PARTITION_UNITS, seconds)
            )
        quiet = run_case(
            client,
            series,
            mapping,
            1,
            QUIET_RATE,
            QUIET_SECONDS_QUICK if quick else QUIET_SECONDS,
        )
    rows = [line for case in cases for line in rows_of(case, full=True)]
    rows += rows_of(quiet, full=False)
    return {
        "rows": rows,
        "details": {
            "cases": [*cases, quiet],
            "mapping": {k: mapping[k] for k in ("BatchSize", "MaximumBatchingWindowInSeconds")},
        },
    }
