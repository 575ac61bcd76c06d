"""The first count on a fresh clone: `./deploy.sh --local` from `git clone` to a counted hit.

Not part of `make bench` (it downloads every package, and takes a minute with pip): run it by
hand, with the Python a newcomer has (Debian's /usr/bin/python3), from the project root:

    /usr/bin/python3 bench/first_run.py --installer uv --cache cold
    /usr/bin/python3 bench/first_run.py --installer pip --cache warm

Each run clones this repository's HEAD into a temporary directory (no .venv, no saved
state), starts `./deploy.sh --local --port P` there with ROUTE_COUNTER_INSTALLER set, and
connects to P every 10 ms; the moment a connection is accepted it sends `GET /first-run` and
waits for the answer. The time printed is from the start of deploy.sh to that answer: what
a newcomer waits between typing the command and seeing a count. --cache cold gives pip and
uv an empty cache directory; warm gives them one that an earlier run of this script filled
(run it twice: the first run of a warm series fills the cache).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import resource
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# This machine's settings that a newcomer's shell does not have (Python then writes no
# bytecode, which bootstrap.py has uv compile at install, as pip always does).
NOT_A_NEWCOMERS = ("PYTHONDONTWRITEBYTECODE",)
WARM_CACHE = Path(tempfile.gettempdir()) / "route-counter-first-run-cache"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def first_count(clone: Path, env: dict[str, str], log: Path) -> tuple[float, dict, float]:
    """Seconds from deploy.sh's start to the first answer, the answer, and the install's
    seconds as bootstrap.py says them."""
    port = free_port()
    started = time.monotonic()
    with log.open("wb") as sink:
        process = subprocess.Popen(
            ["./deploy.sh", "--local", "--port", str(port)],
            cwd=clone,
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        while True:
            if process.poll() is not None:
                raise SystemExit(f"deploy.sh stopped:\n{log.read_text()}")
            try:
                connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
                connection.connect()
                break
            except OSError:
                time.sleep(0.01)
        connection.request("GET", "/first-run")
        answer = json.loads(connection.getresponse().read())
        said = re.search(r"Installed \d+ Python packages in ([\d.]+) s", log.read_text())
        return time.monotonic() - started, answer, float(said.group(1)) if said else 0.0
    finally:
        os.killpg(process.pid, signal.SIGINT)
        process.wait(timeout=30)


def children_cpu() -> float:
    """CPU seconds (user and system) of the children waited for so far."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--installer", choices=("uv", "pip"), default="uv")
    parser.add_argument("--cache", choices=("cold", "warm"), default="cold")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="first-run-") as work:
        clone = Path(work) / "route-counter"
        subprocess.run(["git", "clone", "--quiet", str(ROOT), str(clone)], check=True)
        cache = Path(work) / "cache" if args.cache == "cold" else WARM_CACHE
        env = {
            **{k: v for k, v in os.environ.items() if k not in NOT_A_NEWCOMERS},
            "ROUTE_COUNTER_INSTALLER": args.installer,
            "PIP_CACHE_DIR": str(cache / "pip"),
            "UV_CACHE_DIR": str(cache / "uv"),
        }
        log = Path(work) / "deploy.log"
        cpu = children_cpu()
        seconds, answer, install = first_count(clone, env, log)
        cpu = children_cpu() - cpu
        print(log.read_text(), file=sys.stderr)
        print(
            f"{args.installer}, {args.cache} cache: first count in {seconds:.1f} s "
            f"(packages installed in {install:.1f} s; {cpu:.1f} CPU s in all); "
            f"answer {answer}; load average "
            f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"
        )


if __name__ == "__main__":
    main()
