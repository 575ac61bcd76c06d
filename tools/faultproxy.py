"""A TCP proxy in front of the emulator that injects network faults where they happen.

Between a DynamoDB client and the emulator, it forwards HTTP/1.1 requests one at a time and
can, request by request:

- ``DROP``: forward the request, read the emulator's whole answer (the write is applied),
  then close the client's connection without a byte of it: an answer lost on the way back;
- ``STALL``: the same, but hold the connection open until the client gives up (its read
  timeout): a slow answer;
- ``SERVER_ERROR``: forward the request, then answer DynamoDB's ``500 InternalServerError``
  instead of the emulator's answer: what DynamoDB's request router answers when it gave up
  on a storage node that may still apply the write;
- ``THROTTLE`` / ``THROTTLE_RATE``: answer a DynamoDB ``400``
  ``ProvisionedThroughputExceededException`` / ``ThrottlingException`` without forwarding
  anything: a throttled request, never applied;

and, for every connection, ``refuse()``: stop listening (a connection attempt gets
ECONNREFUSED, nothing is sent) until ``listen()``. It records every request it forwarded
with the emulator's status, so a test can tell which writes reached the emulator.

Used by tests/integration/test_exactly_once.py. It binds 127.0.0.1 only; ``close()`` stops it.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import uuid
from collections import deque
from dataclasses import dataclass
from urllib.parse import urlsplit

FORWARD = "forward"
DROP = "drop"
STALL = "stall"
SERVER_ERROR = "server_error"
THROTTLE = "throttle"
THROTTLE_RATE = "throttle_rate"

# DynamoDB's answers, as its JSON protocol sends them (awsJson1_0).
CANNED = {
    THROTTLE: (
        400,
        "Bad Request",
        "com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException",
        "The level of configured provisioned throughput for the table was exceeded. "
        "Consider increasing your provisioning level with the UpdateTable API.",
    ),
    THROTTLE_RATE: (
        400,
        "Bad Request",
        "com.amazon.coral.availability#ThrottlingException",
        "Rate of requests exceeds the allowed throughput.",
    ),
    SERVER_ERROR: (
        500,
        "Internal Server Error",
        "com.amazonaws.dynamodb.v20120810#InternalServerError",
        "Internal server error",
    ),
}
STALL_LIMIT_SECONDS = 30  # a stalled answer is never sent; the connection closes by then


@dataclass(frozen=True)
class Forwarded:
    """A request that reached the emulator, and the status it answered."""

    target: str  # X-Amz-Target, e.g. DynamoDB_20120810.UpdateItem
    status: int
    action: str  # what the proxy did with the answer


def canned_answer(action: str) -> bytes:
    status, reason, error_type, message = CANNED[action]
    body = json.dumps({"__type": error_type, "message": message}).encode()
    head = (
        f"HTTP/1.1 {status} {reason}\r\n"
        f"x-amzn-RequestId: {uuid.uuid4().hex.upper()}\r\n"
        "Content-Type: application/x-amz-json-1.0\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


class _Stream:
    """Reads HTTP messages off a socket: the head up to the blank line, then the body."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = b""

    def _fill(self) -> bool:
        chunk = self.sock.recv(65536)
        self.buffer += chunk
        return bool(chunk)

    def message(self, *, until_close: bool = False) -> tuple[bytes, dict[str, str]] | None:
        """One message (head and body) and its headers, or None at a clean end of stream."""
        while b"\r\n\r\n" not in self.buffer:
            if not self._fill():
                if self.buffer:
                    raise ConnectionError("connection closed inside a message head")
                return None
        head, _, self.buffer = self.buffer.partition(b"\r\n\r\n")
        headers = {}
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        if "content-length" in headers:
            length = int(headers["content-length"])
            while len(self.buffer) < length:
                if not self._fill():
                    raise ConnectionError("connection closed inside a message body")
        elif until_close:  # an answer without a length ends when its connection does
            while self._fill():
                pass
            length = len(self.buffer)
        else:
            length = 0
        body, self.buffer = self.buffer[:length], self.buffer[length:]
        return head + b"\r\n\r\n" + body, headers


class FaultProxy:
    """Listens on 127.0.0.1 (a free port) and forwards to ``upstream`` (http://host:port)."""

    def __init__(self, upstream: str, port: int = 0) -> None:
        parts = urlsplit(upstream)
        self.upstream = (parts.hostname or "127.0.0.1", parts.port or 80)
        self.forwarded: list[Forwarded] = []
        self._plan: deque[str] = deque()
        self._lock = threading.Lock()
        self._clients: set[socket.socket] = set()
        self._threads: list[threading.Thread] = []
        self._listener: socket.socket | None = None
        self.port = port
        self.listen()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def plan(self, *actions: str) -> None:
        """What to do with the next requests, in order; then FORWARD again."""
        with self._lock:
            self._plan.extend(actions)

    def clear_plan(self) -> None:
        """Forget the actions planned and not yet taken (a test's leftover plan)."""
        with self._lock:
            self._plan.clear()

    def applied(self, operation: str = "UpdateItem") -> int:
        """How many requests of an operation the emulator answered 200 (writes applied)."""
        with self._lock:
            return sum(
                1 for f in self.forwarded if f.target.endswith("." + operation) and f.status == 200
            )

    def listen(self) -> None:
        """Accept connections (again, on the same port)."""
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self.port = listener.getsockname()[1]
        self._listener = listener
        self._start(self._accept, listener)

    def refuse(self) -> None:
        """Stop listening and drop idle client connections: connecting is refused."""
        listener, self._listener = self._listener, None
        if listener is not None:
            _close(listener)
        with self._lock:
            clients = list(self._clients)
        for client in clients:
            _close(client)

    def close(self) -> None:
        self.refuse()
        for thread in self._threads:
            thread.join(timeout=5)

    def __enter__(self) -> FaultProxy:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def _start(self, target, *args) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)
        self._threads.append(thread)
        thread.start()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:  # the listener was closed: refuse() or close()
                return
            with self._lock:
                self._clients.add(client)
            self._start(self._serve, client)

    def _next_action(self) -> str:
        with self._lock:
            return self._plan.popleft() if self._plan else FORWARD

    def _serve(self, client: socket.socket) -> None:
        try:
            stream = _Stream(client)
            while (request := stream.message()) is not None:
                raw, headers = request
                action = self._next_action()
                if action in (THROTTLE, THROTTLE_RATE):
                    client.sendall(canned_answer(action))
                    continue
                answer, status = self._exchange(raw)
                with self._lock:
                    self.forwarded.append(
                        Forwarded(headers.get("x-amz-target", ""), status, action)
                    )
                if action == DROP:
                    return
                if action == STALL:
                    client.settimeout(STALL_LIMIT_SECONDS)
                    while client.recv(65536):  # until the client gives up and closes
                        pass
                    return
                client.sendall(canned_answer(SERVER_ERROR) if action == SERVER_ERROR else answer)
        except OSError:
            pass  # the client went away, or refuse()/close() closed its connection
        finally:
            with self._lock:
                self._clients.discard(client)
            _close(client)

    def _exchange(self, raw: bytes) -> tuple[bytes, int]:
        """Send one request to the emulator on a connection of its own; its whole answer."""
        with socket.create_connection(self.upstream, timeout=30) as upstream:
            upstream.sendall(raw)
            answer = _Stream(upstream).message(until_close=True)
        if answer is None:
            raise ConnectionError("the emulator closed the connection without an answer")
        message, _ = answer
        status = int(message.split(b" ", 2)[1])
        # Keep-alive or not is between the client and us: the emulator's own
        # connection closes here, so a "Connection: close" it sent is dropped.
        head, _, body = message.partition(b"\r\n\r\n")
        lines = [
            line for line in head.split(b"\r\n") if not line.lower().startswith(b"connection:")
        ]
        return b"\r\n".join(lines) + b"\r\n\r\n" + body, status


def _close(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    sock.close()
