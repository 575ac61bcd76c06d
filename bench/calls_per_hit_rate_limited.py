"""Benchmark 1r: DynamoDB calls per rate-limited hit (RATE_LIMIT > 0), on a controlled clock.

The counter is loaded with RATE_LIMIT=L and RATE_LIMIT_WINDOW_SECONDS=W; its module's
`time` is replaced by a fake clock (never a sleep), which steps through several windows.
botocore's `before-call.dynamodb.*` hook counts the API calls every hit costs, the first
hit of each window (the roll-over) included. The traffic shapes:

- busy routes, one container: every route gets 3 x L hits per window, L served (200), the
  rest refused (429);
- quiet routes, one container: one hit per route per window, so every hit is a roll-over;
- busy routes shared by 2 and by 5 containers taking turns (loads of the module, as Lambda
  execution environments): a container guesses from what it last saw of a route whether
  another one already started the window, and a wrong guess costs one call more;
- quiet routes shared by 3 containers taking turns;
- random traffic: Poisson arrivals, quiet routes (0.3 or 1 hit per window on average) and
  busy ones (3, 10 or 30), each hit sent to one of 5 containers at random (seeded, so every
  run sends the same hits).

After each shape the served counts and the stored counts are checked against the limit.
"""

import contextlib
import io
import os
import random
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
# Random traffic: mean hits per route and window of quiet routes, and of busy ones (up to
# 6 x L), over enough windows that containers new to a route weigh little.
QUIET_RATES, BUSY_RATES = (0.3, 1), (3, 10, 30)
RANDOM_WINDOWS = 24


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


Hit = tuple[float, str, int]  # (time, path, container)


def taking_turns(
    containers: int, hits_per_window: int, windows: int, paths: list[str]
) -> list[Hit]:
    """Every route hit `hits_per_window` times a window, its hits going to containers in turn."""
    hits = []
    for w in range(windows):
        for i in range(hits_per_window):
            # Hits spread over the window: never on its last second, so never across.
            at = T0 + w * WINDOW + i * (WINDOW - 1) / hits_per_window
            hits += [(at, path, (w * hits_per_window + i) % containers) for path in paths]
    return hits


def random_traffic(
    containers: int, windows: int, paths: list[str], rates: tuple[float, ...]
) -> list[Hit]:
    """Poisson arrivals, routes at the given rates in turn, each hit to a container at random."""
    rng = random.Random(20261129)  # seeded: the same hits in every run
    hits = []
    for n, path in enumerate(paths):
        rate = rates[n % len(rates)] / WINDOW
        at = T0 + rng.expovariate(rate)
        while at < T0 + windows * WINDOW:
            hits.append((at, path, rng.randrange(containers)))
            at += rng.expovariate(rate)
    return sorted(hits)


def shape(containers: int, hits: list[Hit]) -> dict:
    """The hits, in time order, on a fresh table; calls, statuses and counts."""
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
            for at, path, container in hits:
                clock[0] = at
                result = counters[container].handler(api_event(path), lambda_context())
                statuses[result["statusCode"]] += 1
        stored = stored_counts(TABLE_NAME)
    # What the limit lets through: up to LIMIT hits per route and window.
    per_window = Counter((path, int((at - T0) // WINDOW)) for at, path, _ in hits)
    served = Counter()
    for (path, _), n in per_window.items():
        served[path] += min(LIMIT, n)
    calls = Counter()
    for meter in meters:
        calls.update(meter.calls)
    return {
        "containers": containers,
        "windows": len({window for _, window in per_window}),
        "hits": len(hits),
        "calls": sum(calls.values()),
        "operations": dict(calls),
        # Without a guess (always "count in the window" first), every window's first hit
        # of a route costs a second call.
        "calls_without_guess": len(hits) + len(per_window),
        "statuses": {str(s): n for s, n in sorted(statuses.items())},
        "served_and_stored_match_limit": statuses[200] == sum(served.values())
        and stored == dict(served),
    }


def run(quick: bool = False) -> dict:
    windows = WINDOWS_QUICK if quick else WINDOWS
    paths = routes(ROUTES_QUICK if quick else ROUTES)
    random_windows = windows if quick else RANDOM_WINDOWS

    def turns(containers: int, hits_per_window: int) -> tuple[int, list[Hit]]:
        return containers, taking_turns(containers, hits_per_window, windows, paths)

    def randomly(rates: tuple[float, ...]) -> tuple[int, list[Hit]]:
        return 5, random_traffic(5, random_windows, paths, rates)

    shapes = {  # key: (row name, (containers, hits), whether the row has the <= 1.0 goal)
        "busy": (f"busy routes ({BUSY_HITS} hits per window)", turns(1, BUSY_HITS), True),
        "quiet": ("quiet routes (1 hit per window)", turns(1, 1), True),
        "two_containers": ("busy routes, 2 containers", turns(2, BUSY_HITS), False),
        "five_containers": ("busy routes, 5 containers", turns(5, BUSY_HITS), False),
        "quiet_shared": ("quiet routes, 3 containers", turns(3, 1), False),
        "random_quiet": (
            "random traffic, quiet routes, 5 containers",
            randomly(QUIET_RATES),
            False,
        ),
        "random_busy": ("random traffic, busy routes, 5 containers", randomly(BUSY_RATES), False),
    }
    results = {key: shape(*traffic) for key, (_, traffic, _) in shapes.items()}
    rows = []
    for key, (name, _, goal) in shapes.items():
        result = results[key]
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
                f"{result['calls']} calls, every window's first hit included "
                f"({result['calls_without_guess']} without the guess); "
                f"L={LIMIT} per {WINDOW} s, {result['windows']} windows x {len(paths)} routes"
                + ("" if exact else "; SERVED/STORED COUNTS DO NOT MATCH THE LIMIT"),
            )
        )
    return {
        "rows": rows,
        "details": {
            "limit": LIMIT,
            "window_seconds": WINDOW,
            **results,
        },
    }
