"""Benchmark 6: how long `python generate.py` and `cfn-lint` take, in seconds (absolute).

Each is run as a subprocess, as a developer or CI runs it, a few times; rows report the
median wall time. The interpreter's bare start-up (`python -c pass`) is given alongside
for scale. cfn-lint lints the freshly generated template with the checks `make lint` uses.
"""

import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.common import ROOT, bench_env, row, spread

RUNS = 5
RUNS_QUICK = 1
CFN_LINT = Path(sys.executable).parent / "cfn-lint"


def wall_time(argv: list[str], env: dict[str, str]) -> tuple[float, subprocess.CompletedProcess]:
    started = time.perf_counter()
    done = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    return time.perf_counter() - started, done


def run(quick: bool = False) -> dict:
    runs = RUNS_QUICK if quick else RUNS
    env = bench_env()
    times: dict[str, list[float]] = {"python": [], "generate": [], "cfn-lint": []}
    findings = ""
    with tempfile.TemporaryDirectory(prefix="bench-template-") as tmp:
        template = str(Path(tmp) / "template.json")
        for _ in range(runs):
            seconds, _done = wall_time([sys.executable, "-c", "pass"], env)
            times["python"].append(seconds)
            seconds, done = wall_time([sys.executable, "generate.py", "-o", template], env)
            if done.returncode != 0:
                raise RuntimeError(f"generate.py failed: {done.stderr.strip()[-500:]}")
            times["generate"].append(seconds)
            seconds, done = wall_time([str(CFN_LINT), template, "--include-checks", "I"], env)
            if done.returncode != 0 or done.stdout.strip():
                findings = (done.stdout + done.stderr).strip()
            times["cfn-lint"].append(seconds)

    start_up = statistics.median(times["python"])
    return {
        "rows": [
            row(
                "Template: python generate.py",
                value=statistics.median(times["generate"]),
                unit="s",
                goal="absolute",
                note=f"median wall time of {runs}; bare `python -c pass` {start_up:.3f} s",
            ),
            row(
                "Template: cfn-lint --include-checks I",
                value=statistics.median(times["cfn-lint"]),
                unit="s",
                goal="absolute",
                note=f"median wall time of {runs}; "
                + ("clean" if not findings else f"FINDINGS: {findings[:200]}"),
            ),
        ],
        "details": {
            "runs": runs,
            "python_start_s": spread(times["python"]),
            "generate_s": spread(times["generate"]),
            "cfn_lint_s": spread(times["cfn-lint"]),
            "cfn_lint_clean": not findings,
        },
    }
