"""Benchmark 1r: DynamoDB calls per rate-limited hit (RATE_LIMIT > 0), on a controlled clock.

The counter is loaded with RATE_LIMIT=L and RATE_LIMIT_WINDOW_SECONDS=W; its module's
`time` is replaced by a fake clock (never a sleep), which steps through several windows.
botocore's `before-call.dynamodb.*` hook counts the API calls every hit costs, the first
hit of each window (the roll-over) included. Three traffic shapes:

- busy routes, one container: every route gets 3 x L hits per window, L served (200), the
  rest refused (429);
- quiet routes, one container: one hit per route per window, so every hit is a roll-over;
- busy routes, two containers taking turns (two loads of the module, as two Lambda
  execution environments): a container whose hint about a route's window is stale pays
  one extra call, at most once per route per window.

After each shape the served counts and the stored counts are checked against the limit.
"""

import contextlib
import io
import os
import time
from collections import Counter
from types import ModuleType, SimpleNamespace

import boto3
from moto import mock_aws

from bench.calls_per_hit import CallCounter, routes, stored_counts
from bench.common import TABLE_NAME, api_event, lambda_context, load_counter, row, table_definition

LIMIT, WINDOW = 5, 60
T0 = 1_800_000_000.0  # a window start (a multiple of 60)
BUSY_HITS = 3 * LIMIT  # per route and window: L served, 2 x L refused
WINDOWS, WINDOWS_QUICK = 8, 3
ROUTES, ROUTES_QUICK = 10, 3


def limited_counter(name: str, clock: list[float]) -> ModuleType:
    """The counter as deployed with RateLimit=LIMIT, reading the time from clock[0]."""
    os.environ["RATE_LIMIT"] = str(LIMIT)
    os.environ["RATE_LIMIT_WINDOW_SECONDS"] = str(WINDOW)
    try:
        module = load_counter(name)
    finally:
        del os.environ["RATE_LIMIT"], os.environ["RATE_LIMIT_WINDOW_SECONDS"]
    module.time = SimpleNamespace(
        time=lambda: clock[0],
        monotonic=time.monotonic,
        strftime=time.strftime,
        gmtime=time.gmtime,
    )
    return module


def shape(containers: int, hits_per_window: int, windows: int, paths: list[str]) -> dict:
    """Hits on a fresh table from `containers` counters taking turns; calls and statuses."""
    clock = [T0]
    with mock_aws():
        boto3.client("dynamodb").create_table(TableName=TABLE_NAME, **table_definition())
        counters = [limited_counter(f"counter_bench_limited_{c}", clock) for c in range(containers)]
        meters = [CallCounter(counter.dynamodb) for counter in counters]
        statuses: Counter[int] = Counter()
        with contextlib.ExitStack() as stack:
            for meter in meters:
                stack.enter_context(meter)
            stack.enter_context(contextlib.redirect_stdout(io.StringIO()))
            for w in range(windows):
                for i in range(hits_per_window):
                    # Hits spread over the window: never on its last second, so never across.
                    clock[0] = T0 + w * WINDOW + i * (WINDOW - 1) / hits_per_window
                    # Each route's successive hits go to the containers in turn.
                    counter = counters[(w * hits_per_window + i) % containers]
                    for path in paths:
                        result = counter.handler(api_event(path), lambda_context())
                        statuses[result["statusCode"]] += 1
        stored = stored_counts(TABLE_NAME)
    hits = windows * hits_per_window * len(paths)
    served = min(LIMIT, hits_per_window) * windows
    calls = Counter()
    for meter in meters:
        calls.update(meter.calls)
    return {
        "containers": containers,
        "hits": hits,
        "calls": sum(calls.values()),
        "operations": dict(calls),
        "statuses": {str(s): n for s, n in sorted(statuses.items())},
        "served_and_stored_match_limit": statuses[200] == served * len(paths)
        and stored == dict.fromkeys(paths, served),
    }


def run(quick: bool = False) -> dict:
    windows = WINDOWS_QUICK if quick else WINDOWS
    paths = routes(ROUTES_QUICK if quick else ROUTES)
    busy = shape(1, BUSY_HITS, windows, paths)
    quiet = shape(1, 1, windows, paths)
    shared = shape(2, BUSY_HITS, windows, paths)
    rows = []
    for name, result, goal in (
        (f"busy routes ({BUSY_HITS} hits per window)", busy, True),
        ("quiet routes (1 hit per window)", quiet, True),
        ("busy routes, 2 containers", shared, False),
    ):
        per_hit = result["calls"] / result["hits"]
        exact = result["served_and_stored_match_limit"]
        rows.append(
            row(
                f"Rate-limited: DynamoDB calls per hit, {name}",
                value=per_hit,
                unit="calls",
                baseline=1.0,
                baseline_name="one UpdateItem",
                ratio=per_hit,
                goal="<= 1.0" if goal else "",
                passed=(per_hit <= 1.0 and exact) if goal else None,
                note=f"{result['hits']} hits ({result['statuses']} by status), "
                f"{result['calls']} calls, every window's first hit included; "
                f"L={LIMIT} per {WINDOW} s, {windows} windows x {len(paths)} routes"
                + ("" if exact else "; SERVED/STORED COUNTS DO NOT MATCH THE LIMIT"),
            )
        )
    return {
        "rows": rows,
        "details": {
            "limit": LIMIT,
            "window_seconds": WINDOW,
            "busy": busy,
            "quiet": quiet,
            "two_containers": shared,
        },
    }
