"""Benchmark 8: the latency the counter adds in front of a backend (docs/backends.md).

A real HTTP backend on 127.0.0.1 answers each request after 20 ms; the counter (Backend set
to it, FailurePolicy monitor) runs in-process against moto's DynamoDB. Its answer time is
compared, in the same run, with the backend alone (one request on a kept-alive connection)
plus one bare `UpdateItem` on the counter's own client with the very arguments of the
counter's own write (captured from it, as benchmark 3 does: moto's time grows with the
update expression, DynamoDB's hardly): what a client would pay calling the backend and then
recording the same hit by itself. Batches of each are interleaved; the row reports
the median ratio. A ratio over 1 is the counter's own work (the event, the forwarding, the
answer's mapping).

Row b is the same through the local stack, started as a user starts it
(`./deploy.sh --local --param Backend=http://127.0.0.1:<port>`): a kept-alive HTTP client
against the backend alone plus the same UpdateItem on an emulator of the same kind
(local/atomic_moto.py) on its own.
"""

import contextlib
import gc
import http.client
import io
import os
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import boto3
from moto import mock_aws

from bench.common import (
    TABLE_NAME,
    api_event,
    lambda_context,
    load_counter,
    row,
    spread,
    table_definition,
)

BACKEND_MS = 20
REPETITIONS = 15
REPETITIONS_QUICK = 3
BATCH = 20
BATCH_QUICK = 5
GOAL = 1.10
PATH = "/api/v1/items/42"
BODY = b'{"id": 42, "name": "an item", "tags": ["a", "b"]}'


class SlowBackend(BaseHTTPRequestHandler):
    """Answers a small JSON body after BACKEND_MS, on a kept-alive connection."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body leave at once, as a real server sends them

    def log_message(self, *args) -> None:
        pass

    def do_GET(self) -> None:
        time.sleep(BACKEND_MS / 1000)
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(BODY)))
        self.end_headers()
        self.wfile.write(BODY)


@contextlib.contextmanager
def backend_server():
    server = ThreadingHTTPServer(("127.0.0.1", 0), SlowBackend)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def capture_write(counter, event: dict, context) -> dict:
    """The arguments of the counter's own UpdateItem for this event, on another route."""
    seen: dict = {}

    def capture(params, **_) -> None:
        seen.update(params)

    events = counter.dynamodb.meta.events
    events.register("provide-client-params.dynamodb.UpdateItem", capture, unique_id="capture")
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            counter.handler(event, context)
    finally:
        events.unregister("provide-client-params.dynamodb.UpdateItem", unique_id="capture")
    return {**seen, "Key": {"route": {"S": PATH + "-bare"}}}


def measure(port: int, reps: int, batch: int) -> dict:
    os.environ.update(BACKEND=f"http://127.0.0.1:{port}", FAILURE_POLICY="monitor")
    counter = load_counter("counter_backend_bench")
    event, context = api_event(PATH), lambda_context()
    direct = http.client.HTTPConnection("127.0.0.1", port)
    write = capture_write(counter, event, context)

    def counted() -> None:
        assert counter.handler(event, context)["statusCode"] == 200

    def alone() -> None:
        get(direct)
        counter.dynamodb.update_item(**write)

    def counted_batch() -> float:
        with contextlib.redirect_stdout(io.StringIO()):  # the handler's log lines
            return timed(batch, counted)

    result = interleave(counted_batch, lambda: timed(batch, alone), reps)
    direct.close()
    for name in ("BACKEND", "FAILURE_POLICY"):  # the local stack's come from its template
        os.environ.pop(name)
    return {
        "backend_ms": BACKEND_MS,
        "repetitions": reps,
        "batch": batch,
        **result,
        "update_item_args": write,
    }


def interleave(counted_batch, alone_batch, reps: int) -> dict:
    """Batches of each, alternating which goes first; per-request medians and ratio."""
    counted_batch(), alone_batch()  # warm both (connections, lazy loaders)
    gc.collect()
    counted_ms, alone_ms, ratios = [], [], []
    for i in range(reps):
        if i % 2 == 0:
            counted, alone = counted_batch(), alone_batch()
        else:
            alone, counted = alone_batch(), counted_batch()
        counted_ms.append(counted * 1000)
        alone_ms.append(alone * 1000)
        ratios.append(counted / alone)
    return {
        "counter_ms": spread(counted_ms),
        "backend_plus_update_item_ms": spread(alone_ms),
        "ratio": spread(ratios),
    }


def timed(batch: int, once) -> float:
    started = time.perf_counter()
    for _ in range(batch):
        once()
    return (time.perf_counter() - started) / batch


def get(connection: http.client.HTTPConnection) -> None:
    connection.request("GET", PATH)
    answer = connection.getresponse()
    answer.read()
    assert answer.status == 200, answer.status


def measure_local_stack(backend: int, write: dict, reps: int, batch: int) -> dict:
    from bench.local_stack import atomic_moto, dynamodb, emulator, local_stack

    param = f"Backend=http://127.0.0.1:{backend}"
    with emulator(atomic_moto) as (endpoint, _), local_stack("--param", param) as (url, _):
        stack = http.client.HTTPConnection("127.0.0.1", int(url.rsplit(":", 1)[1]))
        direct = http.client.HTTPConnection("127.0.0.1", backend)
        client = dynamodb(endpoint)

        def alone() -> None:
            get(direct)
            client.update_item(**write)

        result = interleave(
            lambda: timed(batch, lambda: get(stack)), lambda: timed(batch, alone), reps
        )
        stack.close()
        direct.close()
    return {"backend_ms": BACKEND_MS, "repetitions": reps, "batch": batch, **result}


def result_row(name: str, result: dict, baseline: str) -> dict:
    reps, batch, ratio = result["repetitions"], result["batch"], result["ratio"]["median"]
    return row(
        name,
        value=result["counter_ms"]["median"],
        unit="ms",
        baseline=result["backend_plus_update_item_ms"]["median"],
        baseline_name=baseline,
        ratio=ratio,
        goal=f"<= {GOAL:.2f}",
        passed=ratio <= GOAL,
        note=f"median ratio of {reps} interleaved batches of {batch} requests",
    )


def run(quick: bool = False) -> dict:
    reps = REPETITIONS_QUICK if quick else REPETITIONS
    batch = BATCH_QUICK if quick else BATCH
    with backend_server() as port:
        with mock_aws():
            boto3.client("dynamodb").create_table(TableName=TABLE_NAME, **table_definition())
            in_process = measure(port, reps, batch)
        through_stack = measure_local_stack(port, in_process["update_item_args"], reps, batch)
    name = f"Backend: counter in front of a {BACKEND_MS} ms HTTP backend"
    return {
        "rows": [
            result_row(
                f"{name}, in-process",
                in_process,
                "the backend alone (kept-alive) + one bare UpdateItem, same args",
            ),
            result_row(
                f"{name}, through the local stack",
                through_stack,
                "the backend alone + the same UpdateItem on atomic_moto alone",
            ),
        ],
        "details": {"in_process": in_process, "local_stack": through_stack},
    }
