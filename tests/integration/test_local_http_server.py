"""The local API's connection handling, in this process over real sockets on 127.0.0.1:
read timeouts, and the graceful stop (drain) that the stack's stop uses."""

import concurrent.futures
import contextlib
import http.client
import json
import socket
import threading
from collections.abc import Iterator

import pytest

from local import server as local_server
from local.events import ApiInfo
from local.gateway import Gateway
from local.router import Router
from local.runtime import Function, FunctionSpec
from local.server import LocalApiServer

SLOW = """\
import time

def handler(event, context):
    time.sleep(float(event["queryStringParameters"]["sleep"]))
    return {"statusCode": 200, "body": event["path"]}
"""


@contextlib.contextmanager
def serving(template: dict, code_dir) -> Iterator[LocalApiServer]:
    """The template's API in this process, its {proxy+} route served by SLOW."""
    pool = concurrent.futures.ThreadPoolExecutor(8)
    spec = FunctionSpec(logical_id="CounterFunction", code=SLOW, timeout=5)
    functions = {"CounterFunction": Function(spec, code_dir, pool)}
    gateway = Gateway(Router(template), functions, ApiInfo())
    server = LocalApiServer(("127.0.0.1", 0), gateway, len)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
        pool.shutdown(wait=False)


@pytest.fixture
def api(template, tmp_path):
    with serving(template, tmp_path) as server:
        yield server


def read_to_eof(sock: socket.socket) -> bytes:
    received = b""
    while chunk := sock.recv(65536):  # a connection never closed fails on the timeout
        received += chunk
    return received


def test_a_half_sent_request_is_answered_408_and_closed(api, monkeypatch):
    monkeypatch.setattr(local_server, "READ_TIMEOUT", 0.3)
    port = api.server_address[1]
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"GET /half HTTP/1.1\r\nHost: 127")

        answer = read_to_eof(sock)

    assert answer.startswith(b"HTTP/1.1 408 ")
    assert json.loads(answer.partition(b"\r\n\r\n")[2]) == {"message": "Request Timeout"}


def test_an_idle_kept_alive_connection_is_closed(api, monkeypatch):
    monkeypatch.setattr(local_server, "IDLE_TIMEOUT", 0.3)
    port = api.server_address[1]
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"GET /a?sleep=0 HTTP/1.1\r\nHost: x\r\n\r\n")

        answer = read_to_eof(sock)  # one answer, then the connection closes when idle

    assert answer.startswith(b"HTTP/1.1 200 ")
    assert answer.count(b"HTTP/1.1") == 1


def test_drain_finishes_requests_in_flight_and_closes_every_connection(api):
    port = api.server_address[1]
    busy = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    idle = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    idle.request("GET", "/idle?sleep=0")
    assert idle.getresponse().read() == b"/idle"  # now an idle kept-alive connection
    busy.request("GET", "/in-flight?sleep=0.5")
    # Wait for the server's side of `busy` itself: the idle connection can still read as
    # busy for a moment after its answer, and a drain started then would close the listening
    # socket before `busy` was accepted (a reset, as the kernel does to a backlog).
    client_port = busy.sock.getsockname()[1]
    while not any(
        c.busy and c.sock.getpeername()[1] == client_port for c in list(api._connections.values())
    ):
        threading.Event().wait(0.01)
    drained = threading.Thread(target=api.drain, args=(5.0,))
    drained.start()

    idle.request("GET", "/late?sleep=0")  # arrives while draining
    late = idle.getresponse()
    in_flight = busy.getresponse()

    assert (in_flight.status, in_flight.read()) == (200, b"/in-flight")
    assert in_flight.getheader("Connection") == "close"
    assert (late.status, late.read()) == (200, b"/late")
    assert late.getheader("Connection") == "close"
    drained.join(10)
    assert not drained.is_alive()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=5)


def test_a_client_that_expects_100_continue_is_told_to_send_its_body(api):
    """curl sends `Expect: 100-continue` before a body over 1 KB and waits for the go-ahead."""
    port = api.server_address[1]
    body = b"x" * 2048
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(
            b"POST /upload?sleep=0 HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
            b"Content-Length: 2048\r\nConnection: close\r\n\r\n"
        )
        assert sock.recv(25) == b"HTTP/1.1 100 Continue\r\n\r\n"
        sock.sendall(body)

        answer = read_to_eof(sock)

    assert answer.startswith(b"HTTP/1.1 200 ")
    assert answer.endswith(b"/upload")


def test_idle_kept_alive_connections_hold_no_thread(template, tmp_path, monkeypatch):
    """More idle kept-alive clients than request threads: a new client is still served."""
    monkeypatch.setattr(local_server, "CONNECTION_THREADS", 4)
    monkeypatch.setattr(local_server, "KEEP_HOT", 0.05)
    with serving(template, tmp_path) as server:
        port = server.server_address[1]
        idle = [http.client.HTTPConnection("127.0.0.1", port, timeout=10) for _ in range(12)]
        for number, connection in enumerate(idle):
            connection.request("GET", f"/idle-{number}?sleep=0")
            assert connection.getresponse().read() == f"/idle-{number}".encode()

        late = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        late.request("GET", "/late?sleep=0")
        assert late.getresponse().read() == b"/late"
        for number, connection in enumerate(idle):  # and the idle ones still serve
            connection.request("GET", f"/again-{number}?sleep=0")
            assert connection.getresponse().read() == f"/again-{number}".encode()


@pytest.mark.parametrize("split", [False, True], ids=["in-one-piece", "in-pieces"])
def test_headers_over_16_kb_are_refused_with_431(api, split):
    port = api.server_address[1]
    head = b"GET /big?sleep=0 HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 17000 + b"\r\n\r\n"
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        if split:
            sock.sendall(head[:8000])
            threading.Event().wait(0.05)
            sock.sendall(head[8000:])
        else:
            sock.sendall(head)

        answer = read_to_eof(sock)

    assert answer.startswith(b"HTTP/1.1 431 ")
    body = json.loads(answer.partition(b"\r\n\r\n")[2])
    assert body == {"message": "Request Header Fields Too Large"}
