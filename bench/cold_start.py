"""Benchmark 2: cold start, the counter module's import (client creation included).

Lambda imports the inline code as index.py from a read-only directory, so it is compiled
on every cold start: each fresh process here imports a copy of handler/counter.py named
index.py, with `python -B` (no bytecode written). The floor is what any boto3 function
pays, `import boto3; boto3.client("dynamodb")`, in fresh processes of the same interpreter,
same flags, same environment, interleaved with the counter's so drift hits both alike.
Each process times its own import with time.perf_counter (interpreter start-up excluded)
and prints it; the row compares the medians. Each process also reports the CPU time of
its import (time.process_time), which other processes' load on a shared machine does not
inflate: its ratio, in the note, is the cross-check when the wall-clock ratio is noisy.
"""

import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from bench.common import COUNTER_PATH, bench_env, row, spread

PROCESSES = 25  # per side, at least 9
PROCESSES_QUICK = 2
WARMUP = 1  # pairs run first and discarded (file cache)
GOAL = 1.10

CHILD = """
import sys, time
sys.path.insert(0, sys.argv[2])
started, cpu_started = time.perf_counter(), time.process_time()
if sys.argv[1] == "counter":
    import index
else:
    import boto3
    boto3.client("dynamodb")
print(time.perf_counter() - started, time.process_time() - cpu_started)
"""


def import_time(kind: str, task_root: Path, env: dict[str, str]) -> tuple[float, float]:
    """Wall and CPU seconds a fresh process spends importing the counter or the floor."""
    out = subprocess.run(
        [sys.executable, "-B", "-c", CHILD, kind, str(task_root)],
        cwd=task_root,
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    wall, cpu = out.stdout.split()
    return float(wall), float(cpu)


def run(quick: bool = False) -> dict:
    pairs = PROCESSES_QUICK if quick else PROCESSES
    warmup = 0 if quick else WARMUP
    env = bench_env()
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    times: dict[str, list[float]] = {"counter": [], "floor": []}
    cpu: dict[str, list[float]] = {"counter": [], "floor": []}
    with tempfile.TemporaryDirectory(prefix="bench-task-") as task_root:
        root = Path(task_root)
        shutil.copyfile(COUNTER_PATH, root / "index.py")
        for i in range(warmup + pairs):
            order = ("floor", "counter") if i % 2 == 0 else ("counter", "floor")
            sample = {kind: import_time(kind, root, env) for kind in order}
            if i >= warmup:
                for kind, (wall, cpu_seconds) in sample.items():
                    times[kind].append(wall)
                    cpu[kind].append(cpu_seconds)

    counter_ms = statistics.median(times["counter"]) * 1000
    floor_ms = statistics.median(times["floor"]) * 1000
    ratio = counter_ms / floor_ms
    pair_ratios = [c / f for c, f in zip(times["counter"], times["floor"], strict=True)]
    cpu_ratio = statistics.median(cpu["counter"]) / statistics.median(cpu["floor"])
    return {
        "rows": [
            row(
                "Cold start: counter import",
                value=counter_ms,
                unit="ms",
                baseline=floor_ms,
                baseline_name='import boto3; boto3.client("dynamodb")',
                ratio=ratio,
                goal=f"<= {GOAL:.2f}",
                passed=ratio <= GOAL,
                note=f"median of {pairs} fresh processes per side, interleaved; "
                f"CPU-time ratio {cpu_ratio:.3f}",
            )
        ],
        "details": {
            "processes_per_side": pairs,
            "warmup_pairs_discarded": warmup,
            "counter_ms": spread([t * 1000 for t in times["counter"]]),
            "floor_ms": spread([t * 1000 for t in times["floor"]]),
            "median_pair_ratio": statistics.median(pair_ratios),
            "counter_cpu_ms": spread([t * 1000 for t in cpu["counter"]]),
            "floor_cpu_ms": spread([t * 1000 for t in cpu["floor"]]),
            "cpu_ratio": cpu_ratio,
        },
    }
