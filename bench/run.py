#!/usr/bin/env python3
"""Run the Route Counter benchmarks; print one table and write it as JSON.

    python bench/run.py            # full run (a minute or two), as `make bench` does
    python bench/run.py --quick    # smoke run: every benchmark, few repetitions, two at once
    python bench/run.py --only 2 3 --json /tmp/r.json

Each benchmark is a module of this directory with `run(quick: bool) -> dict` returning
{"rows": [...], "details": {...}}; each runs in a fresh interpreter so none inherits
another's imports or hooks. Timings are printed, never asserted.
"""

import argparse
import contextlib
import datetime
import importlib.metadata
import importlib.util
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import traceback
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.common import row, use_bench_env  # noqa: E402

DEFAULT_JSON = ROOT / "bench" / "results.json"  # committed: docs/performance.md's table
QUICK_JSON = ROOT / "bench" / "results-quick.json"  # a smoke run's, git-ignored
CHILD_TIMEOUT = 900  # seconds for one benchmark


@dataclass(frozen=True)
class Benchmark:
    label: str  # row number in the table
    module: str  # bench.<module> with run(quick) -> dict
    title: str  # row name when it fails to run


BENCHMARKS = [
    Benchmark("1", "calls_per_hit", "DynamoDB calls per counted hit"),
    Benchmark("1r", "calls_per_hit_rate_limited", "DynamoDB calls per rate-limited hit"),
    Benchmark("2", "cold_start", "Cold start: counter import"),
    Benchmark("3", "warm_hit", "Warm hit: handler time"),
    Benchmark("4", "local_stack", "Local stack: HTTP hit over a socket (python -m local)"),
    Benchmark("5", "stats_read", "Read endpoint: GET /_stats"),
    Benchmark("6", "template_time", "Template: generate.py and cfn-lint"),
    Benchmark("7", "analytics", "Analytics: aggregator writes and read costs"),
    Benchmark("8", "backend", "Backend: latency the counter adds in front of a backend"),
    Benchmark("9", "scale", "Scale: the aggregator on 1, 4 and 16 shards"),
]


def run_child(module: str, quick: bool, out: str) -> None:
    """In a fresh interpreter: run one benchmark and write its result to `out`."""
    # SIGTERM (a timeout, a CI job cancelled) unwinds the benchmark: its servers are stopped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
    use_bench_env()
    result = importlib.import_module(f"bench.{module}").run(quick)
    Path(out).write_text(json.dumps(result, default=str), encoding="utf-8")


def run_in_own_group(argv: list[str]) -> subprocess.CompletedProcess:
    """Run a benchmark child in its own process group; on timeout stop it and its servers."""
    child = subprocess.Popen(
        argv,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        stdout, stderr = child.communicate(timeout=CHILD_TIMEOUT)
    except subprocess.TimeoutExpired:
        os.killpg(child.pid, signal.SIGTERM)  # the child stops the servers it started
        try:
            child.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(child.pid, signal.SIGKILL)
            child.communicate()
        return subprocess.CompletedProcess(argv, 1, "", f"timed out after {CHILD_TIMEOUT} s")
    except BaseException:  # Ctrl-C or SIGTERM of the runner: take the child with it
        with contextlib.suppress(ProcessLookupError):
            os.killpg(child.pid, signal.SIGTERM)
        child.wait()
        raise
    return subprocess.CompletedProcess(argv, child.returncode, stdout, stderr)


def run_benchmark(benchmark: Benchmark, quick: bool) -> dict:
    """Rows and details of one benchmark, each row labelled; never raises."""
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        out = Path(tmp) / "result.json"
        argv = [sys.executable, str(Path(__file__).resolve()), "--child", benchmark.module]
        done = run_in_own_group([*argv, str(out), *(["--quick"] if quick else [])])
        if done.returncode == 0 and out.exists():
            result = json.loads(out.read_text(encoding="utf-8"))
        else:
            error = (done.stderr.strip().splitlines() or ["no output"])[-1]
            result = {
                "rows": [row(benchmark.title, value=None, unit="", status="error", note=error)],
                "details": {"stderr": done.stderr[-4000:]},
            }
    print(f"ran {benchmark.label}: {benchmark.module}", file=sys.stderr, flush=True)
    rows = result["rows"]
    for i, line in enumerate(rows):
        suffix = "abcdefghijklmnopqrstuvwxyz"[i] if len(rows) > 1 else ""
        line["id"] = benchmark.label + suffix
        line["benchmark"] = benchmark.module
    return result


def machine() -> dict:
    def version(package: str) -> str:
        try:
            return importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            return "-"

    return {
        "cores": os.cpu_count(),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "platform": platform.platform(),
        "machine": platform.machine(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "boto3": version("boto3"),
        "botocore": version("botocore"),
        "moto": version("moto"),
        "cfn-lint": version("cfn-lint"),
    }


def number(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    if unit == "s":
        return f"{value:.3f} s"
    if unit in ("ms", "us"):
        return f"{value:.1f} {unit}"
    return f"{value:.3f} {unit}".strip()


def table(report: dict) -> str:
    header = ["#", "benchmark", "measured", "floor / baseline", "ratio", "goal", "result"]
    lines = [
        [
            r["id"],
            r["name"],
            number(r["value"], r["unit"]),
            number(r["baseline"], r["unit"]),
            "-" if r["ratio"] is None else f"{r['ratio']:.3f}",
            r["goal"] or "-",
            r["status"].upper() if r["status"] in ("pass", "fail", "error") else r["status"],
        ]
        for r in report["rows"]
    ]
    widths = [max(len(str(x)) for x in col) for col in zip(header, *lines, strict=False)]

    def fmt(cells: list[str]) -> str:
        return "  ".join(str(c).ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip()

    m = report["machine"]
    out = [
        f"Route Counter benchmarks ({report['mode']} run), {report['date']}",
        f"machine: {m['cores']} cores, {m['python']}, {m['platform']}, "
        f"load average {m['load_average']}",
        f"versions: boto3 {m['boto3']}, botocore {m['botocore']}, moto {m['moto']}, "
        f"cfn-lint {m['cfn-lint']}",
        "",
        fmt(header),
        fmt(["-" * w for w in widths]),
        *(fmt(cells) for cells in lines),
        "",
    ]
    for r in report["rows"]:
        notes = [f"floor = {r['baseline_name']}"] if r["baseline_name"] else []
        notes += [r["note"]] if r["note"] else []
        if notes:
            out.append(f"[{r['id']}] " + "; ".join(notes))
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run the Route Counter benchmarks.")
    parser.add_argument("--quick", action="store_true", help="smoke run: few repetitions")
    parser.add_argument(
        "--json",
        metavar="FILE",
        help="where to write the results (default bench/results.json; "
        "bench/results-quick.json with --quick)",
    )
    parser.add_argument(
        "--only", nargs="+", metavar="N", help="run only these benchmark numbers (e.g. 2 3)"
    )
    parser.add_argument("--child", nargs=2, metavar=("MODULE", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.json = args.json or str(QUICK_JSON if args.quick else DEFAULT_JSON)

    if args.child:
        try:
            run_child(args.child[0], args.quick, args.child[1])
        except Exception:
            traceback.print_exc()
            return 1
        return 0

    selected = [b for b in BENCHMARKS if not args.only or b.label in args.only]
    report = {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "mode": "quick" if args.quick else "full",
        "machine": machine(),
        "rows": [],
        "details": {},
    }
    # A full run measures one benchmark at a time; a quick run only checks that they run,
    # so it runs two at once (its numbers are not measurements).
    with ThreadPoolExecutor(max_workers=2 if args.quick else 1) as pool:
        results = pool.map(lambda b: run_benchmark(b, args.quick), selected)
        for benchmark, result in zip(selected, results, strict=True):
            report["rows"] += result["rows"]
            report["details"][benchmark.module] = result.get("details", {})

    print(table(report))
    Path(args.json).write_text(json.dumps(report, indent=1, default=str) + "\n", encoding="utf-8")
    print(f"\nwritten to {args.json}")
    return 1 if any(r["status"] == "error" for r in report["rows"]) else 0


if __name__ == "__main__":
    sys.exit(main())
