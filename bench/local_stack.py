"""Benchmark 4: hits per second through `./deploy.sh --local`, against bare UpdateItem calls.

Two servers run side by side, each its own process, both on 127.0.0.1:
- the local stack, started exactly as a user starts it (`./deploy.sh --local --port P`):
  API Gateway's proxy, the counter function and its emulator (local/atomic_moto.py);
- a stock `moto_server` of the same moto version, with the counter table created in it.

CLIENTS threads then drive each in turn, rounds interleaved so that a shared machine's
drift hits both alike. Against the stack a client is one kept-alive HTTP connection sending
GET /bench/c<client>/r<n>; against moto_server it is its own boto3 client sending the
handler's own UpdateItem (same key, update expression and ReturnValues), nothing else. The
row is the ratio of the two rates: what API Gateway's and Lambda's stand-ins cost on top of
the DynamoDB call that is the hit itself. A second row gives the same bare UpdateItem against
local/atomic_moto.py (moto with DynamoDB requests serialised, which is what --local runs).

Where the time goes is measured too, on Linux: the CPU time per hit of every process
taking part (the clients, the local API with its functions, the emulators), read from
/proc around each round. It shows which process a hit's cost sits in, without a profiler.

Every client owns its routes, so after the run each route's last answered count must equal
the hits sent to it: a throughput bought with lost hits would show as `counts_exact: false`.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import boto3
from botocore.config import Config

from bench.common import ROOT, TABLE_NAME, bench_env, row, table_definition
from local.emulator import free_port

CLIENTS = 8
ROUTES_PER_CLIENT = 4
GOAL = 0.70
FULL = {"warmup": 40, "hits": 200, "rounds": 3}
QUICK = {"warmup": 3, "hits": 15, "rounds": 1}
READY_LINE = "Route Counter is running locally"
EMULATOR_PID = re.compile(r"\(pid (\d+)\)")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100

Hit = Callable[[int], int]  # send hit number i, return the count the answer carries


def cpu_seconds(pid: int | None) -> float | None:
    """User plus system CPU time of a process and all its threads (None off Linux)."""
    if pid is None:
        return time.process_time()
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime, stime


def _stop(process: subprocess.Popen, timeout: float = 20.0) -> None:
    """SIGTERM, as a user's Ctrl-C would; SIGKILL the whole group if it does not stop."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()


@contextlib.contextmanager
def local_stack() -> Iterator[tuple[str, dict[str, int]]]:
    """`./deploy.sh --local` on a free port: its URL and processes, once it says it is ready."""
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="bench-local-") as tmp:
        log = Path(tmp) / "stdout.log"
        with log.open("wb") as out:
            process = subprocess.Popen(
                ["bash", str(ROOT / "deploy.sh"), "--local", "--port", str(port)],
                cwd=ROOT,
                env=bench_env(),
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            deadline = time.monotonic() + 180
            while READY_LINE not in (text := log.read_text(errors="replace")):
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("deploy.sh --local did not start: " + text[-800:])
                time.sleep(0.1)
            # deploy.sh execs python -m local, which names its emulator's pid when ready.
            processes = {"local API and functions": process.pid}
            if found := EMULATOR_PID.search(text):
                processes["its emulator (atomic_moto)"] = int(found[1])
            yield f"http://127.0.0.1:{port}", processes
        finally:
            _stop(process)


@contextlib.contextmanager
def emulator(command: list[str], port: int) -> Iterator[tuple[str, int]]:
    """A moto server (stock or ours) on 127.0.0.1:port with the counter table in it."""
    process = subprocess.Popen(
        command,
        cwd=ROOT,
        env=bench_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    endpoint = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=2).close()
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"{command[:3]} did not start") from None
                time.sleep(0.1)
        dynamodb(endpoint).create_table(TableName=TABLE_NAME, **table_definition())
        yield endpoint, process.pid
    finally:
        _stop(process)


def dynamodb(endpoint: str):
    return boto3.client(
        "dynamodb",
        endpoint_url=endpoint,
        config=Config(retries={"mode": "standard", "max_attempts": 1}),
    )


def stack_client(url: str, client: int) -> Hit:
    """One kept-alive HTTP connection, as a load generator or a browser keeps it."""
    host, port = url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=30)

    def hit(i: int) -> int:
        connection.request("GET", f"/bench/c{client}/r{i % ROUTES_PER_CLIENT}")
        response = connection.getresponse()
        body = response.read()
        if response.status != 200:
            raise RuntimeError(f"local stack answered {response.status}: {body[:300]!r}")
        return json.loads(body)["count"]

    return hit


def update_item_client(endpoint: str, client: int) -> Hit:
    """The handler's own UpdateItem from its own boto3 client: the floor of a hit."""
    ddb = dynamodb(endpoint)

    def hit(i: int) -> int:
        item = ddb.update_item(
            TableName=TABLE_NAME,
            Key={"route": {"S": f"/bench/c{client}/r{i % ROUTES_PER_CLIENT}"}},
            UpdateExpression="ADD #count :one SET lastSeen = :now, "
            "firstSeen = if_not_exists(firstSeen, :now)",
            ExpressionAttributeNames={"#count": "count"},
            ExpressionAttributeValues={
                ":one": {"N": "1"},
                ":now": {"S": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())},
            },
            ReturnValues="ALL_NEW",
        )["Attributes"]
        return int(item["count"]["N"])

    return hit


class Target:
    """CLIENTS clients of one server; remembers every route's hits sent and last count."""

    def __init__(self, name: str, make: Callable[[int], Hit], processes: dict[str, int]) -> None:
        self.name = name
        self.clients = [make(c) for c in range(CLIENTS)]
        self.sent = [[0] * ROUTES_PER_CLIENT for _ in range(CLIENTS)]
        self.seen = [[0] * ROUTES_PER_CLIENT for _ in range(CLIENTS)]
        # The clients run in this process (pid None); the servers in their own.
        self.processes: dict[str, int | None] = {"clients (this process)": None, **processes}
        self.cpu = dict.fromkeys(self.processes, 0.0)
        self.measured_hits = 0

    def drive(self, hits: int, measure: bool = True) -> float:
        """Every client sends `hits` hits at once; hits per second over the whole burst."""
        start = threading.Barrier(CLIENTS + 1)
        errors: list[BaseException] = []

        def work(c: int) -> None:
            start.wait()
            try:
                for i in range(hits):
                    self.seen[c][i % ROUTES_PER_CLIENT] = self.clients[c](i)
                    self.sent[c][i % ROUTES_PER_CLIENT] += 1
            except BaseException as error:  # reported below, not lost in a thread
                errors.append(error)

        threads = [threading.Thread(target=work, args=(c,)) for c in range(CLIENTS)]
        for thread in threads:
            thread.start()
        cpu_before = {name: cpu_seconds(pid) for name, pid in self.processes.items()}
        start.wait()
        began = time.perf_counter()
        for thread in threads:
            thread.join()
        elapsed = time.perf_counter() - began
        cpu_after = {name: cpu_seconds(pid) for name, pid in self.processes.items()}
        if errors:
            raise RuntimeError(f"{self.name}: {errors[0]!r}")
        if measure:
            self.measured_hits += CLIENTS * hits
            for name, before in cpu_before.items():
                after = cpu_after[name]
                if before is not None and after is not None:
                    self.cpu[name] += after - before
        return CLIENTS * hits / elapsed

    def cpu_ms_per_hit(self) -> dict[str, float]:
        if not self.measured_hits or not any(self.cpu.values()):
            return {}  # no /proc here
        per_hit = {n: 1000 * s / self.measured_hits for n, s in self.cpu.items()}
        return {
            **{n: round(v, 3) for n, v in per_hit.items()},
            "total": round(sum(per_hit.values()), 3),
        }

    @property
    def counts_exact(self) -> bool:
        return self.seen == self.sent


def run(quick: bool) -> dict:
    plan = QUICK if quick else FULL
    stock_port, atomic_port = free_port(), free_port()
    stock = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(stock_port)]
    atomic = [sys.executable, "-P", str(ROOT / "local" / "atomic_moto.py"), "-p", str(atomic_port)]
    with (
        local_stack() as (url, stack_processes),
        emulator(stock, stock_port) as (stock_endpoint, stock_pid),
        emulator(atomic, atomic_port) as (atomic_endpoint, atomic_pid),
    ):
        targets = {
            "stack": Target("deploy.sh --local", lambda c: stack_client(url, c), stack_processes),
            "moto_server": Target(
                "moto_server",
                lambda c: update_item_client(stock_endpoint, c),
                {"moto_server": stock_pid},
            ),
            "atomic_moto": Target(
                "atomic_moto",
                lambda c: update_item_client(atomic_endpoint, c),
                {"atomic_moto": atomic_pid},
            ),
        }
        for target in targets.values():  # cold starts, connections, moto's lazy loading
            target.drive(plan["warmup"], measure=False)
        rates: dict[str, list[float]] = {name: [] for name in targets}
        for _ in range(plan["rounds"]):
            for name, target in targets.items():
                rates[name].append(target.drive(plan["hits"]))

    stack_rate = statistics.median(rates["stack"])
    stock_rate = statistics.median(rates["moto_server"])
    atomic_rate = statistics.median(rates["atomic_moto"])
    exact = {name: target.counts_exact for name, target in targets.items()}
    ratio = stack_rate / stock_rate
    ratio_atomic = stack_rate / atomic_rate
    workload = f"{CLIENTS} clients x {plan['hits']} hits, median of {plan['rounds']} rounds"
    lost = "" if exact["stack"] else "; HITS LOST: a route's count differs from the hits sent"
    return {
        "rows": [
            row(
                f"Local stack: hits/s, {CLIENTS} clients (deploy.sh --local)",
                value=stack_rate,
                unit="hits/s",
                baseline=stock_rate,
                baseline_name=f"the handler's UpdateItem alone, {CLIENTS} boto3 clients "
                "against a stock moto_server",
                ratio=ratio,
                goal=f">= {GOAL:.2f}",
                passed=ratio >= GOAL and exact["stack"],
                note=workload + lost,
            ),
            row(
                "Local stack: hits/s vs its own emulator",
                value=stack_rate,
                unit="hits/s",
                baseline=atomic_rate,
                baseline_name="the same UpdateItem against local/atomic_moto.py "
                "(moto, DynamoDB requests serialised), which --local runs",
                ratio=ratio_atomic,
                note="what API Gateway's and Lambda's stand-ins add on the emulator --local uses",
            ),
        ],
        "details": {
            "clients": CLIENTS,
            "routes_per_client": ROUTES_PER_CLIENT,
            "plan": plan,
            "rates_hits_per_s": rates,
            "counts_exact": exact,
            "cpu_ms_per_hit": {name: t.cpu_ms_per_hit() for name, t in targets.items()},
        },
    }
