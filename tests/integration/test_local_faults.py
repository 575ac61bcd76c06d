"""`python -m local` under load and faults, over real sockets: reads beside writes, signals,
a dead emulator, restarts on the same port, two starts at once."""

import http.client
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.conftest import (
    FAKE_CREDENTIALS,
    ROOT,
    RunningLocalStack,
    alive,
    free_port,
    gone_within,
    local_stack,
    port_is_free,
    saved_routes,
    stored_counts,
)


def get_json(stack: RunningLocalStack, target: str) -> tuple[int, dict]:
    connection = http.client.HTTPConnection("127.0.0.1", stack.port, timeout=20)
    try:
        connection.request("GET", target)
        response = connection.getresponse()
        return response.status, json.loads(response.read())
    finally:
        connection.close()


READERS = 8
COUNTERS = 8
HITS_PER_COUNTER = 25


def test_readers_of_a_large_table_never_make_a_hit_fail(tmp_path):
    """8 clients reading /_stats?limit=1000 of a 10,000-route table over and over, while 8
    others count: every hit is answered 200 with its exact count (no write waits out the
    counter's 2 s DynamoDB timeout behind the reads)."""
    # Saved by an "earlier run": written into the table before the aggregator's mapping
    # starts, not as 10,000 hits of stream for it to work through while this test counts.
    saved_routes(tmp_path, {f"/seeded/{i}": i % 97 + 1 for i in range(10_000)})
    with local_stack(tmp_path) as stack:
        stop = threading.Event()
        reads_done = threading.Semaphore(0)
        read_statuses: list[int] = []

        def reader() -> None:
            connection = http.client.HTTPConnection("127.0.0.1", stack.port, timeout=60)
            first = True
            while not stop.is_set():
                connection.request("GET", "/_stats?limit=1000")
                response = connection.getresponse()
                body = json.loads(response.read())
                read_statuses.append(response.status)
                assert response.status != 200 or len(body["routes"]) == 1000
                if first:
                    reads_done.release()
                    first = False
            connection.close()

        route = f"/counted/{uuid.uuid4().hex}"

        def counter(i: int) -> list[tuple[int, int | None]]:
            connection = http.client.HTTPConnection("127.0.0.1", stack.port, timeout=60)
            seen = []
            for _ in range(HITS_PER_COUNTER):
                connection.request("GET", f"{route}/{i}")
                response = connection.getresponse()
                body = json.loads(response.read())
                seen.append((response.status, body.get("count")))
            connection.close()
            return seen

        with ThreadPoolExecutor(READERS + COUNTERS) as pool:
            readers = [pool.submit(reader) for _ in range(READERS)]
            try:
                for _ in range(READERS):  # every reader is busy before the hits start
                    assert reads_done.acquire(timeout=120)
                hits = list(pool.map(counter, range(COUNTERS), timeout=300))
            finally:
                stop.set()
            for future in readers:
                future.result(timeout=120)

        expected = [(200, n) for n in range(1, HITS_PER_COUNTER + 1)]
        assert hits == [expected] * COUNTERS
        assert set(read_statuses) == {200}
        stored = stored_counts(stack)
        assert all(stored[f"{route}/{i}"] == HITS_PER_COUNTER for i in range(COUNTERS))


# --- Signals and a dead emulator ---------------------------------------------------------


class Load:
    """Kept-alive clients hitting the stack until told to stop or their connection ends."""

    def __init__(self, stack: RunningLocalStack, clients: int = 8) -> None:
        self.stack = stack
        self.route = f"/load/{uuid.uuid4().hex}"
        self.statuses: list[int] = []
        self.stop = threading.Event()
        self.answered = threading.Semaphore(0)
        self.threads = [threading.Thread(target=self._client) for _ in range(clients)]
        for thread in self.threads:
            thread.start()
        for _ in range(clients):  # every client got an answer: the load is on
            assert self.answered.acquire(timeout=60)

    def _client(self) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", self.stack.port, timeout=30)
        first = True
        try:
            while not self.stop.is_set():
                connection.request("GET", self.route)
                response = connection.getresponse()
                response.read()
                self.statuses.append(response.status)
                if first:
                    self.answered.release()
                    first = False
                if response.getheader("Connection", "").lower() == "close":
                    return
        except OSError:  # the server closed the connection or is gone: this client is done
            pass
        finally:
            connection.close()

    def finish(self) -> list[int]:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=60)
        return self.statuses


def test_a_killed_emulator_stops_the_stack_at_once_saying_why(tmp_path):
    with local_stack(tmp_path) as stack:
        emulator = stack.emulator_pid
        load = Load(stack)
        try:
            os.kill(emulator, signal.SIGKILL)
            code = stack.process.wait(timeout=5)
        finally:
            load.finish()
        output = stack.output.read_text()

    assert code == 1
    assert f"the emulator (moto_server, pid {emulator}) was killed by SIGKILL" in output
    assert "Traceback" not in output
    assert port_is_free(stack.port)


def test_sigterm_under_load_answers_every_request_it_takes(tmp_path):
    """Kept-alive clients see answers, then the connection closed: never a 5xx."""
    with local_stack(tmp_path) as stack:
        load = Load(stack)
        try:
            stack.process.send_signal(signal.SIGTERM)
            code = stack.process.wait(timeout=30)
        finally:
            statuses = load.finish()

    assert code == 0
    assert len(statuses) >= 8
    assert set(statuses) == {200}


@pytest.mark.parametrize("signum", [signal.SIGHUP, signal.SIGKILL])
def test_a_stack_closed_or_killed_leaves_no_process(tmp_path, signum):
    with local_stack(tmp_path) as stack:
        emulator = stack.emulator_pid
        assert alive(emulator)
        os.kill(stack.process.pid, signum)  # the stack alone, as a closed terminal or kill -9

        assert gone_within(emulator, 5)
        assert gone_within(stack.process.pid, 5)
        stack.process.wait(timeout=5)
        assert port_is_free(stack.emulator_port)


def test_a_restart_at_once_on_the_same_port_serves(tmp_path):
    with local_stack(tmp_path) as first:
        connection = http.client.HTTPConnection("127.0.0.1", first.port, timeout=20)
        connection.request("GET", "/before")
        assert connection.getresponse().read()
        first.process.send_signal(signal.SIGINT)  # the connection is still open: the server
        assert first.process.wait(timeout=30) == 0  # closes it, its side is in TIME_WAIT
        connection.close()

    with local_stack(tmp_path, port=first.port) as second:
        status, body = get_json(second, "/after")

    assert (status, body["count"]) == (200, 1)


def test_two_starts_at_once_one_serves_the_other_says_why_and_leaves_nothing(tmp_path):
    temp = tmp_path / "tmp"
    temp.mkdir()
    port = free_port()
    processes = []
    try:
        for name in ("a", "b"):
            command = [sys.executable, "-m", "local", "--port", str(port)]
            command += ["--state-dir", str(tmp_path / name)]
            processes.append(
                subprocess.Popen(
                    command,
                    cwd=ROOT,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    text=True,
                    start_new_session=True,
                    env={**os.environ, **FAKE_CREDENTIALS, "TMPDIR": str(temp)},
                )
            )
        loser = wait_for_first_exit(processes, timeout=120)
        out, err = loser.communicate(timeout=10)
        leaked_while_winner_runs = sorted(p.name for p in temp.iterdir())
    finally:
        for process in processes:
            if process.poll() is None:
                process.send_signal(signal.SIGINT)
                try:
                    process.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    os.killpg(process.pid, signal.SIGKILL)
                    process.wait()

    assert loser.returncode == 1
    assert err.strip().splitlines() == [
        f"error: port {port} on 127.0.0.1 is in use: stop what uses it or choose --port"
    ]
    assert "moto_server" not in out  # it started nothing
    assert len(leaked_while_winner_runs) <= 1  # the winner's code, if it got that far
    assert list(temp.iterdir()) == []  # and nothing once the winner stopped


def wait_for_first_exit(processes: list[subprocess.Popen], timeout: float) -> subprocess.Popen:
    deadline = time.monotonic() + timeout
    while True:
        for process in processes:
            if process.poll() is not None:
                return process
        assert time.monotonic() < deadline, "neither start failed"
        time.sleep(0.05)
