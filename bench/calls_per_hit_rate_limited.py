"""Benchmark 1r: DynamoDB calls per rate-limited hit (RATE_LIMIT > 0), on a controlled clock.

The counter is loaded with RATE_LIMIT=L and RATE_LIMIT_WINDOW_SECONDS=W; its module's
`time` is replaced by a fake clock (never a sleep), which steps through several windows.
In each window every route gets 3 x L hits: the first L are served (200), the rest are
refused (429). botocore's `before-call.dynamodb.*` hook counts the API calls each hit
costs. A hit is a "roll-over" when it is its route's first hit of a window (the item still
holds an older window, or no window at all): it costs two UpdateItems (the window check
fails, then the new window starts). Every later hit of the window, served or refused,
costs one UpdateItem (the refusal is the failed condition's ALL_OLD answer).
"""

import contextlib
import io
import os
import time
from collections import Counter
from types import SimpleNamespace

import boto3
from moto import mock_aws

from bench.calls_per_hit import CallCounter, routes, stored_counts
from bench.common import TABLE_NAME, api_event, lambda_context, load_counter, row, table_definition

LIMIT, WINDOW = 5, 60
T0 = 1_800_000_000.0  # a window start (a multiple of 60)
HITS_PER_WINDOW = 3 * LIMIT  # per route: L served, 2 x L refused
WINDOWS, WINDOWS_QUICK = 8, 3
ROUTES, ROUTES_QUICK = 10, 3


def limited_counter():
    """The counter as deployed with RateLimit=LIMIT, its clock under our control."""
    os.environ["RATE_LIMIT"] = str(LIMIT)
    os.environ["RATE_LIMIT_WINDOW_SECONDS"] = str(WINDOW)
    try:
        module = load_counter("counter_bench_limited")
    finally:
        del os.environ["RATE_LIMIT"], os.environ["RATE_LIMIT_WINDOW_SECONDS"]
    module.now = [T0]
    module.time = SimpleNamespace(
        time=lambda: module.now[0],
        monotonic=time.monotonic,
        strftime=time.strftime,
        gmtime=time.gmtime,
    )
    return module


def run(quick: bool = False) -> dict:
    windows = WINDOWS_QUICK if quick else WINDOWS
    paths = routes(ROUTES_QUICK if quick else ROUTES)
    first = {"hits": 0, "calls": 0}  # roll-overs: a route's first hit of a window
    later = {"hits": 0, "calls": 0}  # every later hit of the window, served or refused
    statuses: Counter[tuple[str, int]] = Counter()  # (kind, status)
    per_status_calls: Counter[int] = Counter()
    per_status_hits: Counter[int] = Counter()

    with mock_aws():
        boto3.client("dynamodb").create_table(TableName=TABLE_NAME, **table_definition())
        counter = limited_counter()
        with CallCounter(counter.dynamodb) as counted, contextlib.redirect_stdout(io.StringIO()):
            for w in range(windows):
                for i in range(HITS_PER_WINDOW):
                    # Hits spread over the window: never on its last second, so never across.
                    counter.now[0] = T0 + w * WINDOW + i * (WINDOW - 1) / HITS_PER_WINDOW
                    for path in paths:
                        before = sum(counted.calls.values())
                        status = counter.handler(api_event(path), lambda_context())["statusCode"]
                        cost = sum(counted.calls.values()) - before
                        bucket = first if i == 0 else later
                        bucket["hits"] += 1
                        bucket["calls"] += cost
                        statuses[("first" if i == 0 else "later", status)] += 1
                        per_status_calls[status] += cost
                        per_status_hits[status] += 1
        stored = stored_counts(TABLE_NAME)

    hits = first["hits"] + later["hits"]
    calls = first["calls"] + later["calls"]
    overall = calls / hits
    within = later["calls"] / later["hits"]
    rollover = first["calls"] / first["hits"]
    served_ok = per_status_hits[200] == LIMIT * windows * len(paths) and stored == {
        p: LIMIT * windows for p in paths
    }
    refused = per_status_hits[429]
    scenario = (
        f"L={LIMIT} per {WINDOW} s, {windows} windows x {len(paths)} routes x "
        f"{HITS_PER_WINDOW} hits ({LIMIT} served, {HITS_PER_WINDOW - LIMIT} refused 429)"
    )
    return {
        "rows": [
            row(
                "Rate-limited: DynamoDB calls per hit, all hits",
                value=overall,
                unit="calls",
                baseline=1.0,
                baseline_name="one UpdateItem",
                ratio=overall,
                status="info",
                note=f"{hits} hits, {calls} calls; {scenario}; roll-overs cost "
                f"{rollover:.2f} calls each; operations {dict(counted.calls)}"
                + ("" if served_ok else "; SERVED/STORED COUNTS DO NOT MATCH THE LIMIT"),
            ),
            row(
                "Rate-limited: DynamoDB calls per hit within a window",
                value=within,
                unit="calls",
                baseline=1.0,
                baseline_name="one UpdateItem",
                ratio=within,
                goal="<= 1.0",
                passed=within <= 1.0 and served_ok,
                note=f"{later['hits']} hits after their route's first of the window "
                f"({per_status_hits[200] - first['hits']} served, {refused} refused 429); "
                f"the {first['hits']} roll-overs are in the row above",
            ),
        ],
        "details": {
            "limit": LIMIT,
            "window_seconds": WINDOW,
            "windows": windows,
            "routes": len(paths),
            "hits": hits,
            "calls": calls,
            "operations": dict(counted.calls),
            "rollover_hits": first["hits"],
            "rollover_calls": first["calls"],
            "within_window_hits": later["hits"],
            "within_window_calls": later["calls"],
            "calls_per_status": {
                str(s): per_status_calls[s] / per_status_hits[s] for s in per_status_hits
            },
            "statuses": {f"{k}:{s}": n for (k, s), n in statuses.items()},
            "served_and_stored_match_limit": served_ok,
        },
    }
