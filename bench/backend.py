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
"""

import contextlib
import gc
import http.client
import io
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
    import os

    os.environ.update(BACKEND=f"http://127.0.0.1:{port}", FAILURE_POLICY="monitor")
    counter = load_counter("counter_backend_bench")
    event, context = api_event(PATH), lambda_context()
    direct = http.client.HTTPConnection("127.0.0.1", port)
    write = capture_write(counter, event, context)

    def counted_batch() -> float:
        started = time.perf_counter()
        with contextlib.redirect_stdout(io.StringIO()):
            for _ in range(batch):
                assert counter.handler(event, context)["statusCode"] == 200
        return (time.perf_counter() - started) / batch

    def alone_batch() -> float:
        started = time.perf_counter()
        for _ in range(batch):
            direct.request("GET", PATH)
            answer = direct.getresponse()
            answer.read()
            counter.dynamodb.update_item(**write)
        return (time.perf_counter() - started) / batch

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
    direct.close()
    return {
        "backend_ms": BACKEND_MS,
        "repetitions": reps,
        "batch": batch,
        "counter_ms": spread(counted_ms),
        "backend_plus_update_item_ms": spread(alone_ms),
        "ratio": spread(ratios),
        "update_item_args": write,
    }


def run(quick: bool = False) -> dict:
    reps = REPETITIONS_QUICK if quick else REPETITIONS
    batch = BATCH_QUICK if quick else BATCH
    with mock_aws(), backend_server() as port:
        boto3.client("dynamodb").create_table(TableName=TABLE_NAME, **table_definition())
        result = measure(port, reps, batch)
    ratio = result["ratio"]["median"]
    return {
        "rows": [
            row(
                f"Backend: counter in front of a {BACKEND_MS} ms HTTP backend, in-process",
                value=result["counter_ms"]["median"],
                unit="ms",
                baseline=result["backend_plus_update_item_ms"]["median"],
                baseline_name="the backend alone (kept-alive) + one bare UpdateItem, same args",
                ratio=ratio,
                goal=f"<= {GOAL:.2f}",
                passed=ratio <= GOAL,
                note=f"median ratio of {reps} interleaved batches of {batch} requests",
            )
        ],
        "details": result,
    }
