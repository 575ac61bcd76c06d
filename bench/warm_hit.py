"""Benchmark 3: warm cost per hit, the handler's own time with DynamoDB stubbed out.

botocore's Stubber answers the handler's UpdateItem in-process (parameter validation and
serialisation still run, no network), so what is left is the handler's own work plus the
SDK's. The floor is a bare `client.update_item(**same arguments)` on the same client under
the same Stubber: the arguments are captured from the handler's own call, so the two can
never drift apart. Batches of each are interleaved; the row reports the median ratio.

    python -m bench.warm_hit --profile   # where the handler's time goes (cProfile)
"""

import argparse
import contextlib
import copy
import cProfile
import gc
import os
import pstats
import statistics
import time

from botocore.stub import Stubber

from bench.common import api_event, lambda_context, load_counter, row, spread, use_bench_env

REPETITIONS = 31
REPETITIONS_QUICK = 3
BATCH = 200
BATCH_QUICK = 20
GOAL = 1.25
PATH = "/api/v1/items/42"
STAMP = "2026-01-01T00:00:00Z"
STUB_RESPONSE = {
    "Attributes": {
        "route": {"S": PATH},
        "count": {"N": "1234"},
        "firstSeen": {"S": STAMP},
        "lastSeen": {"S": STAMP},
    }
}


class Bench:
    """The handler module with a Stubber on its client, and the handler's own call args."""

    def __init__(self) -> None:
        self.counter = load_counter("counter_warm_bench")
        self.client = self.counter.dynamodb
        self.stubber = Stubber(self.client)
        self.stubber.activate()
        self.event = api_event(PATH)
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
            self.stubber.add_response("update_item", STUB_RESPONSE)

    def hit_batch(self, n: int) -> float:
        """Seconds per handler call over n calls, each answered 200 by the stub."""
        self.queue(n)
        handler, event, context = self.counter.handler, self.event, self.context
        gc.collect()
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
        gc.collect()
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


def run(quick: bool = False) -> dict:
    reps = REPETITIONS_QUICK if quick else REPETITIONS
    batch = BATCH_QUICK if quick else BATCH
    bench = Bench()
    try:
        bench.hit_batch(batch)  # warm both paths once (lazy loaders, caches)
        bench.bare_batch(batch)
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

    ratio = statistics.median(ratios)
    return {
        "rows": [
            row(
                "Warm hit: handler time",
                value=statistics.median(hit_us),
                unit="us",
                baseline=statistics.median(bare_us),
                baseline_name="bare client.update_item, same args and Stubber",
                ratio=ratio,
                goal=f"<= {GOAL:.2f}",
                passed=ratio <= GOAL,
                note=f"median ratio of {reps} interleaved batches of {batch} calls",
            )
        ],
        "details": {
            "repetitions": reps,
            "batch": batch,
            "handler_us": spread(hit_us),
            "bare_update_item_us": spread(bare_us),
            "ratio": spread(ratios),
            "update_item_args": bench.args,
        },
    }


def profile(calls: int = 2000, top: int = 25) -> None:
    """Print where the handler's time goes, by cumulative and by own time."""
    bench = Bench()
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
    parser.add_argument("--quick", action="store_true", help="few repetitions (smoke run)")
    args = parser.parse_args()
    use_bench_env()
    if args.profile:
        profile()
    else:
        print(run(args.quick)["rows"][0])


if __name__ == "__main__":
    main()
