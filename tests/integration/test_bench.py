"""`bench/run.py --quick` runs every benchmark and reports a table and JSON.

These tests check that the benchmarks run and report honestly, never how fast anything is:
the numbers asserted are counts (calls per hit, items read per page, hits counted).
"""

import json
import subprocess
import sys

from bench import calls_per_hit_rate_limited as bench_limited
from bench import run as bench_run
from bench.run import Benchmark, run_benchmark
from tests.conftest import ROOT, gone_within

ROW_NAMES = {
    "1a": "DynamoDB calls per counted hit",
    "1b": "DynamoDB calls per uncounted request",
    "1c": "DynamoDB calls per counted hit, clients on",
    "1ra": "Rate-limited: DynamoDB calls per hit, busy routes",
    "1rb": "Rate-limited: DynamoDB calls per hit, quiet routes",
    "1rc": "Rate-limited: DynamoDB calls per hit, busy routes, 2 containers",
    "1rd": "Rate-limited: DynamoDB calls per hit, busy routes, 5 containers",
    "1re": "Rate-limited: DynamoDB calls per hit, quiet routes, 3 containers",
    "1rf": "Rate-limited: DynamoDB calls per hit, random traffic, quiet routes, 5 containers",
    "1rg": "Rate-limited: DynamoDB calls per hit, random traffic, busy routes, 5 containers",
    "2": "Cold start: counter import",
    "3a": "Warm hit: handler time, 16-byte path",
    "3b": "Warm hit: handler time, 1020-byte path",
    "4a": "Local stack: hits/s, 8 clients (deploy.sh --local)",
    "4b": "Local stack: hits/s vs its own emulator",
    "4c": "Local stack: CPU per hit, all processes",  # read from /proc: Linux, as in CI
    "4d": "Local stack: hits/s, 8 clients, a new connection per hit",
    "5a": "Read endpoint: page of 100, items read at ",
    "5b": "Read endpoint: page of 100, handler time at ",
    "5c": "Read endpoint: page of 1000, items read at ",
    "5d": "Read endpoint: page of 1000, handler time at ",
    "6a": "Template: python generate.py",
    "6b": "Template: cfn-lint --include-checks I",
    "7a": "Aggregator: route buckets written per batch vs distinct (route, bucket) pairs",
    "7b": "Aggregator: calls per batch",
    "7c": "Aggregator: write units per counted hit (estimate)",
    "7d": "Aggregator: write units per counted hit, one hit per batch (estimate)",
    "7e": "Aggregator: hourly buckets that differ from the hits sent",
    "7f": "Read: top, DynamoDB calls",
    "7g": "Read: top today, DynamoDB calls",
    "7h": "Read: series, DynamoDB calls",
    "7i": "Read: all-routes series, DynamoDB calls",
    "7j": "Read: dashboard, DynamoDB calls",
    "7k": "Read: route page, DynamoDB calls",
    "7l": "Aggregator with clients: (client, route) buckets written per batch vs distinct",
    "7m": "Aggregator with clients: write units per counted hit (estimate)",
    "7n": "Usage: every client's month total equals the hits it made",
    "7o": "Read: a client's month, DynamoDB calls",
    "7p": "Read: a page of the month's clients, DynamoDB calls",
    "7q": "Read: a client's month as CSV, DynamoDB calls",
    "8a": "Backend: counter in front of a 20 ms HTTP backend, in-process",
    "8b": "Backend: counter in front of a 20 ms HTTP backend, through the local stack",
    "9a": "Scale: 1 shard, 1,000 hits/s: buckets that differ from the hits sent",
    "9b": "Scale: 1 shard, 1,000 hits/s: writes retried for a conflict",
    "9c": "Scale: 1 shard, 1,000 hits/s: analytics write units per hit (estimate)",
    "9d": "Scale: 1 shard, 1,000 hits/s: hottest item's share of a partition's writes",
    "9e": "Scale: 1 shard, 1,000 hits/s: behind the stream (simulated)",
    "9f": "Scale: 4 shards, 4,000 hits/s: buckets that differ from the hits sent",
    "9g": "Scale: 4 shards, 4,000 hits/s: writes retried for a conflict",
    "9h": "Scale: 4 shards, 4,000 hits/s: analytics write units per hit (estimate)",
    "9i": "Scale: 4 shards, 4,000 hits/s: hottest item's share of a partition's writes",
    "9j": "Scale: 4 shards, 4,000 hits/s: behind the stream (simulated)",
    "9k": "Scale: 16 shards, 16,000 hits/s: buckets that differ from the hits sent",
    "9l": "Scale: 16 shards, 16,000 hits/s: writes retried for a conflict",
    "9m": "Scale: 16 shards, 16,000 hits/s: analytics write units per hit (estimate)",
    "9n": "Scale: 16 shards, 16,000 hits/s: hottest item's share of a partition's writes",
    "9o": "Scale: 16 shards, 16,000 hits/s: behind the stream (simulated)",
    "9p": "Scale: 1 shard, 100 hits/s: buckets that differ from the hits sent",
    "9q": "Scale: 1 shard, 100 hits/s: writes retried for a conflict",
    "9r": "Scale: 1 shard, 100 hits/s: analytics write units per hit (estimate)",
    "9s": "Scale: 1 shard, 100 hits/s: hottest item's share of a partition's writes",
    "9t": "Scale: 1 shard, 100 hits/s: behind the stream (simulated)",
}


def test_quick_run_prints_the_table_and_writes_json(tmp_path):
    out = tmp_path / "results.json"

    done = subprocess.run(
        [sys.executable, "bench/run.py", "--quick", "--json", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )

    assert done.returncode == 0, done.stderr
    assert "Route Counter benchmarks (quick run)" in done.stdout
    assert "machine: " in done.stdout and " cores, " in done.stdout
    for name in ROW_NAMES.values():
        assert name in done.stdout

    report = json.loads(out.read_text())
    rows = {r["id"]: r for r in report["rows"]}
    assert list(rows) == list(ROW_NAMES)
    assert report["mode"] == "quick"
    assert report["machine"]["cores"] >= 1 and report["machine"]["python"]
    for row_id, name in ROW_NAMES.items():
        assert rows[row_id]["name"].startswith(name)
        assert isinstance(rows[row_id]["value"], float)
        assert rows[row_id]["value"] >= 0
    assert not [r for r in report["rows"] if r["status"] in ("error", "n/a")]

    # Counts, not timings: these hold on any machine.
    # A counted hit is one UpdateItem, no more; an OPTIONS or refused request is none.
    assert rows["1a"]["value"] == 1.0 and rows["1a"]["status"] == "pass"
    assert report["details"]["calls_per_hit"]["operations"] == {"UpdateItem": 50}
    assert rows["1b"]["value"] == 0.0 and rows["1b"]["status"] == "pass"
    # Rate-limited, every hit is one call, served or refused, a window's first included,
    # when one container serves a route, or when the route is quiet. Containers sharing a
    # busy route pay one call more per route and window (the first window: one per
    # container new to the route).
    limited = report["details"]["calls_per_hit_rate_limited"]
    for row_id, shape in (("1ra", "busy"), ("1rb", "quiet"), ("1re", "quiet_shared")):
        assert rows[row_id]["value"] == 1.0
        assert limited[shape]["served_and_stored_match_limit"]
    assert rows["1ra"]["status"] == rows["1rb"]["status"] == "pass"
    windows, routes = bench_limited.WINDOWS_QUICK, bench_limited.ROUTES_QUICK
    for shape in ("two_containers", "five_containers"):
        shared = limited[shape]
        assert shared["served_and_stored_match_limit"]
        new_containers = shared["containers"] - 1
        assert shared["calls"] - shared["hits"] == routes * (windows - 1 + new_containers)
    # Random traffic over 5 containers (seeded): the guess saves calls on quiet routes; on
    # busy ones it may cost up to one call more per container new to a route.
    quiet, busy = limited["random_quiet"], limited["random_busy"]
    assert quiet["served_and_stored_match_limit"] and busy["served_and_stored_match_limit"]
    assert quiet["calls"] < quiet["calls_without_guess"]
    assert busy["calls"] <= busy["calls_without_guess"] + routes * (busy["containers"] - 1)
    # A page of the read endpoint reads as many items from a larger table.
    for row_id in ("5a", "5c"):
        assert rows[row_id]["ratio"] == 1.0 and rows[row_id]["status"] == "pass"
    # Every hit sent through the local stack and to the emulators was counted exactly.
    local = report["details"]["local_stack"]
    assert local["counts_exact"] == {
        "stack": True,
        "stack_new_connections": True,
        "moto_server": True,
        "atomic_moto": True,
    }
    assert rows["4a"]["baseline"] > 0 and rows["4b"]["baseline"] > 0

    # Ratios against a floor measured in the same run.
    for row_id in ("2", "3a", "3b", "4a"):
        row = rows[row_id]
        assert row["baseline"] > 0 and row["value"] > 0
        assert isinstance(row["ratio"], float) and row["ratio"] > 0
        assert row["status"] in ("pass", "fail")
    assert rows["2"]["ratio"] == rows["2"]["value"] / rows["2"]["baseline"]
    assert rows["4a"]["ratio"] == rows["4a"]["value"] / rows["4a"]["baseline"]
    assert rows["6a"]["unit"] == rows["6b"]["unit"] == "s"
    # The aggregator writes each (route, bucket) pair at most once per batch, every hourly
    # bucket equals the hits sent, and each read costs the calls it promises.
    assert rows["7a"]["status"] == "pass" and rows["7a"]["ratio"] <= 1.0
    assert rows["7e"]["value"] == 0.0 and rows["7e"]["status"] == "pass"
    assert rows["1c"]["value"] == 1.0 and rows["1c"]["status"] == "pass"
    for row_id in ("7l", "7n", "7o", "7p", "7q"):
        assert rows[row_id]["status"] == "pass", rows[row_id]
    for row_id in ("7f", "7g", "7h", "7i", "7j", "7k"):
        assert rows[row_id]["status"] == "pass", rows[row_id]
    # At scale, with conflicts cancelled as on DynamoDB, every bucket is still exact.
    for row_id in ("9a", "9f", "9k", "9p"):
        assert rows[row_id]["value"] == 0.0 and rows[row_id]["status"] == "pass", rows[row_id]
    # No transaction cancelled, no top merge retried for a conflict (each shard writes its
    # own parts of the all-routes items and of the rankings), no item near a partition's
    # capacity, at every shard count. (Write units per hit need the full run's long batches.)
    for row_id in ("9b", "9g", "9l", "9q", "9d", "9i", "9n", "9s"):
        assert rows[row_id]["status"] == "pass", rows[row_id]


def test_benchmark_that_crashes_is_reported_as_an_error_not_a_number():
    broken = Benchmark("99", "no_such_benchmark", "A broken benchmark")

    result = run_benchmark(broken, quick=True)

    (row,) = result["rows"]
    assert row["status"] == "error"
    assert "No module named 'bench.no_such_benchmark'" in row["note"]
    assert row["value"] is None


def test_a_benchmark_past_its_time_is_stopped_with_everything_it_started(tmp_path, monkeypatch):
    pid_file = tmp_path / "server.pid"
    hangs = (
        "import subprocess, sys, time\n"
        "server = subprocess.Popen(['sleep', '300'])\n"
        f"open({str(pid_file)!r}, 'w').write(str(server.pid))\n"
        "time.sleep(300)\n"
    )
    monkeypatch.setattr(bench_run, "CHILD_TIMEOUT", 3)

    done = bench_run.run_in_own_group([sys.executable, "-c", hangs])

    assert done.returncode == 1 and done.stderr == "timed out after 3 s"
    server = int(pid_file.read_text())
    assert gone_within(server, 5)  # SIGTERMed with its group: exiting, if not yet gone
