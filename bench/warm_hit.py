"""Benchmark 3: warm cost per hit, the handler's own time with DynamoDB stubbed out.

botocore's Stubber answers the handler's UpdateItem in-process (parameter validation and
serialisation still run, no network), so what is left is the handler's own work plus the
SDK's. The floor is a bare `client.update_item(**same arguments)` on the same client under
the same Stubber: the arguments are captured from the handler's own call, so the two can
never drift apart. Batches of each are interleaved; the row reports the median ratio.
It is measured for a typical route and for a path near the 1 KB limit (the worst case).

    python -m bench.warm_hit --profile [--long]   # where the handler's time goes (cProfile)
"""

import argparse
import contextlib
import copy
import cProfile
import gc
import os
import pstats
import time

from botocore.stub import Stubber

from bench.common import api_event, lambda_context, load_counter, row, spread, use_bench_env

REPETITIONS = 41
REPETITIONS_QUICK = 3
BATCH = 100
BATCH_QUICK = 20
GOAL = 1.25
PATH = "/api/v1/items/42"  # a typical route
LONG_PATH = "/" + "/".join(f"segment-{i:03d}" for i in range(85))  # 1020 bytes: the limit is 1024
STAMP = "2026-01-01T00:00:00Z"


def stub_response(path: str) -> dict:
    return {
        "Attributes": {
            "route": {"S": path},
            "count": {"N": "1234"},
            "firstSeen": {"S": STAMP},
            "lastSeen": {"S": STAMP},
        }
    }


class Bench:
    """The handler module with a Stubber on its client, and the handler's own call args."""

    def __init__(self, path: str = PATH) -> None:
        self.counter = load_counter("counter_warm_bench")
        self.client = self.counter.dynamodb
        self.stubber = Stubber(self.client)
        self.stubber.activate()
        self.response = stub_response(path)
        self.event = api_event(path)
        self.context = lambda_context()
        self.devnull = open(os.devnull, "w")  # noqa: SIM115 - closed in close()
        self.args = self._capture_handler_args()

    def _capture_handler_args(self) -> dict:
        captured = []

        def capture(params, **_) -> None:
            captured.append(copy.deepcopy(params))

        events = self.client.meta.events
        events.register("provide-client-params.dynamodb.UpdateItem", capture, unique_id="cap")
        try:
            self.hit_batch(1)
        finally:
            events.unregister("provide-client-params.dynamodb.UpdateItem", unique_id="cap")
        return captured[0]

    def queue(self, n: int) -> None:
        for _ in range(n):
            self.stubber.add_response("update_item", self.response)

    def hit_batch(self, n: int) -> float:
        """Seconds per handler call over n calls, each answered 200 by the stub."""
        self.queue(n)
        handler, event, context = self.counter.handler, self.event, self.context
        with contextlib.redirect_stdout(self.devnull):
            started = time.perf_counter()
            for _ in range(n):
                result = handler(event, context)
            elapsed = time.perf_counter() - started
        assert result["statusCode"] == 200, result
        self.stubber.assert_no_pending_responses()
        return elapsed / n

    def bare_batch(self, n: int) -> float:
        """Seconds per bare update_item with the handler's arguments over n calls."""
        self.queue(n)
        update_item, args = self.client.update_item, self.args
        with contextlib.redirect_stdout(self.devnull):
            started = time.perf_counter()
            for _ in range(n):
                update_item(**args)
            elapsed = time.perf_counter() - started
        self.stubber.assert_no_pending_responses()
        return elapsed / n

    def close(self) -> None:
        self.stubber.deactivate()
        self.devnull.close()


def measure(path: str, reps: int, batch: int) -> dict:
    """Interleaved batches of handler hits and bare calls on one path; medians and ratio."""
    bench = Bench(path)
    try:
        bench.hit_batch(batch)  # warm both paths once (lazy loaders, caches)
        bench.bare_batch(batch)
        gc.collect()  # start clean; the garbage collector then runs as it would in Lambda
        hit_us, bare_us, ratios = [], [], []
        for i in range(reps):
            if i % 2 == 0:
                hit, bare = bench.hit_batch(batch), bench.bare_batch(batch)
            else:
                bare, hit = bench.bare_batch(batch), bench.hit_batch(batch)
            hit_us.append(hit * 1e6)
            bare_us.append(bare * 1e6)
            ratios.append(hit / bare)
    finally:
        bench.close()
    return {
        "path_bytes": len(path.encode()),
        "repetitions": reps,
        "batch": batch,
        "handler_us": spread(hit_us),
        "bare_update_item_us": spread(bare_us),
        "ratio": spread(ratios),
        "update_item_args": bench.args,
    }


def run(quick: bool = False) -> dict:
    reps = REPETITIONS_QUICK if quick else REPETITIONS
    batch = BATCH_QUICK if quick else BATCH
    rows, details = [], {}
    for name, path in (("typical", PATH), ("long", LONG_PATH)):
        result = details[name] = measure(path, reps, batch)
        ratio = result["ratio"]["median"]
        label = f"{result['path_bytes']}-byte path"
        rows.append(
            row(
                f"Warm hit: handler time, {label}",
                value=result["handler_us"]["median"],
                unit="us",
                baseline=result["bare_update_item_us"]["median"],
                baseline_name="bare client.update_item, same args and Stubber",
                ratio=ratio,
                goal=f"<= {GOAL:.2f}",
                passed=ratio <= GOAL,
                note=f"median ratio of {reps} interleaved batches of {batch} calls",
            )
        )
    return {"rows": rows, "details": details}


def profile(path: str = PATH, calls: int = 2000, top: int = 25) -> None:
    """Print where the handler's time goes, by cumulative and by own time."""
    bench = Bench(path)
    try:
        bench.hit_batch(200)
        profiler = cProfile.Profile()
        profiler.enable()
        bench.hit_batch(calls)
        profiler.disable()
    finally:
        bench.close()
    stats = pstats.Stats(profiler)
    stats.sort_stats("cumulative").print_stats(top)
    stats.sort_stats("tottime").print_stats(top)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", action="store_true", help="cProfile the handler instead")
    parser.add_argument("--long", action="store_true", help="profile the 1 KB path")
    parser.add_argument("--quick", action="store_true", help="few repetitions (smoke run)")
    args = parser.parse_args()
    use_bench_env()
    if args.profile:
        profile(LONG_PATH if args.long else PATH)
    else:
        for line in run(args.quick)["rows"]:
            print(line)


if __name__ == "__main__":
    main()
