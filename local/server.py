"""The local API's HTTP/1.1 front on 127.0.0.1: requests read off the wire, answered by
the gateway (local/gateway.py: API Gateway's dispatch), the answers written back.

h11 parses each request's headers and body (Content-Length and chunked framing, strictly);
the request line is ours, because API Gateway's path is the request target as sent, decoded
as UTF-8, while h11 (rightly, for HTTP) refuses any byte outside visible ASCII there.
A request is read and answered on a reused thread, each read bounded by a timeout and the
whole request by a deadline; a connection idle between requests gives its thread back and
waits on one watcher thread. Connections are capped below the descriptor limit: at the cap
the connection idle longest is closed to make room, or, when every one is mid-request, the
new one is refused with a 503; accept() failing for want of descriptors backs off rather
than spins.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import errno
import re
import resource
import selectors
import socket
import socketserver
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from email.utils import formatdate
from http import HTTPStatus
from urllib.parse import urlsplit

import h11

from local.console import install_line_writer, printable
from local.events import HttpResponse, bad_request, gateway_error, internal_server_error
from local.gateway import Gateway

MAX_PAYLOAD_BYTES = 10 * 1024 * 1024  # API Gateway's request payload quota
MAX_HEAD_BYTES = 16 * 1024  # request line and headers (API Gateway's own limit is 10 KB of headers)
IDLE_TIMEOUT = 300.0  # seconds a kept-alive connection may wait for its next request
KEEP_HOT = 1.0  # seconds an idle connection keeps its thread before it is parked
READ_TIMEOUT = 10.0  # seconds a started request may wait for its next bytes
REQUEST_DEADLINE = 30.0  # seconds a request's head and body may take in all (slowloris)
MAX_CONNECTIONS = 10_000  # open connections at most, and at most ...
CONNECTION_SHARE = 0.75  # ... this share of the descriptor limit (the rest: files, emulator)
ACCEPT_BACKOFF = 0.1  # seconds accepting pauses when no descriptor is left to accept with
CONNECTION_THREADS = 1024  # requests being read or answered at once; more wait their turn
LISTEN_BACKLOG = 1024  # socketserver's default of 5 drops the SYNs of a burst of new connections
DRAIN_IDLE_GRACE = 1.0  # seconds an idle kept-alive connection gets to send one last request

TOKEN = re.compile(rb"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
HTTP_VERSION = re.compile(rb"HTTP/1\.[01]")
ASCII_CONTROLS = re.compile(rb"[\x00-\x20\x7f]")


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@dataclass
class Request:
    method: str
    target: str  # as sent (origin-form), UTF-8-decoded, nothing folded or percent-decoded
    headers: list[tuple[str, str]]  # names as the client spelled them, in order
    body: bytes
    http10: bool
    keep_alive: bool  # the client keeps the connection open after the answer


class BadRequest(Exception):
    """The request cannot be served: answered with a JSON error, then the connection closes."""

    def __init__(self, reason: str, status: int = 400) -> None:
        super().__init__(reason)
        self.status = status


class ClientGone(Exception):
    """The client closed the connection before a request began."""


class Idle(Exception):
    """No request began within KEEP_HOT: the connection is parked, its thread freed."""


def connection_cap() -> int:
    """How many connections may be open at once: below the descriptor limit, so that an
    accept never fails for want of one while an idle connection could be closed instead."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return MAX_CONNECTIONS
    return max(1, min(MAX_CONNECTIONS, int(soft * CONNECTION_SHARE)))


def raise_descriptor_limit() -> None:
    """The soft limit on open files raised to the hard one (often 1,024 of 1,048,576):
    each client connection takes a descriptor."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def request_target(raw: bytes) -> str:
    """The path and query API Gateway sees for a request target, as sent.

    Origin-form ("/a/b?x") is taken as it is; absolute-form ("http://host/a/b?x", which
    proxies send) is reduced to its path and query (RFC 9112, section 3.2.2); "*" and a
    target without a leading slash reach no resource. Raw bytes outside ASCII are decoded
    as UTF-8; no slash is folded and nothing is percent-decoded.
    """
    if ASCII_CONTROLS.search(raw):
        raise BadRequest("the request target contains control characters")
    try:
        target = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise BadRequest("the request target is not valid UTF-8") from None
    if target.startswith("/"):
        return target
    if "://" in target:
        parts = urlsplit(target)
        if parts.scheme.lower() in ("http", "https") and parts.netloc:
            path = parts.path or "/"
            return f"{path}?{parts.query}" if "?" in target.partition("://")[2] else path
    raise BadRequest(f"the request target {printable(target)!r} is not a path")


def http_date() -> str:
    return formatdate(usegmt=True)


def _response_head(
    status: int, headers: list[tuple[str, str]], length: int, close: bool, keep_alive_10: bool
) -> bytes:
    try:
        reason = HTTPStatus(status).phrase
    except ValueError:
        reason = ""
    lines = [f"HTTP/1.1 {status} {reason}", f"Date: {http_date()}"]
    for name, value in headers:
        lines.append(f"{name}: {value}")
    lines.append(f"Content-Length: {length}")
    if close:
        lines.append("Connection: close")
    elif keep_alive_10:
        lines.append("Connection: keep-alive")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8")


UNSAFE_HEADER = re.compile(r"[\r\n\x00]")


def safe_headers(headers: list[tuple[str, str]]) -> bool:
    """No header of the answer can split it (a CR, LF or NUL in a name or value)."""
    return not any(UNSAFE_HEADER.search(name + value) for name, value in headers)


class Connection:
    """One client connection: requests read in turn, each answered before the next is read."""

    def __init__(self, server: LocalApiServer, sock: socket.socket, address: tuple) -> None:
        self.server = server
        self.sock = sock
        self.ip = address[0] if address else "127.0.0.1"
        self.buffer = b""
        self.busy = False  # a request is being read or answered
        self.last_active = time.monotonic()  # the connection idle longest is closed first
        self.deadline = 0.0  # when the request being read must be whole

    def _recv(self, timeout: float) -> bytes:
        """The next bytes from the client; TimeoutError when none come within timeout."""
        self.sock.settimeout(timeout)
        return self.sock.recv(65536)

    def _recv_request(self) -> bytes:
        """More of the request begun: within READ_TIMEOUT, and before its deadline."""
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise BadRequest("the request was not sent in time", 408)
        try:
            return self._recv(min(READ_TIMEOUT, left))
        except TimeoutError:
            raise BadRequest("the request was not sent in time", 408) from None

    def _read_head(self) -> tuple[bytes, bytes]:
        """The request line and the rest of the head (headers and what followed).

        Raises ClientGone when the connection ends, Idle when it idles, before a request.
        """
        started = False
        while True:
            self.buffer = self.buffer.lstrip(b"\r\n")  # RFC 9112 2.2: empty lines before it
            if self.buffer and not started:  # its first bytes: the deadline runs from here
                started = self.busy = True
                self.deadline = time.monotonic() + REQUEST_DEADLINE
            end = self.buffer.find(b"\r\n\r\n")
            if 0 <= end <= MAX_HEAD_BYTES:
                line, _, rest = self.buffer.partition(b"\r\n")
                return line, rest
            if len(self.buffer) > MAX_HEAD_BYTES:
                raise BadRequest("the request line and headers are too long", 431)
            if started:
                data = self._recv_request()
            else:
                try:
                    data = self._recv(self.server.keep_hot())
                except TimeoutError:
                    raise Idle from None
            if not data:
                if started:
                    raise BadRequest("the connection closed in the middle of a request")
                raise ClientGone
            self.buffer += data

    def _read_request(self) -> Request:
        line, rest = self._read_head()
        parts = line.split(b" ")
        if len(parts) != 3 or not TOKEN.fullmatch(parts[0]):
            raise BadRequest("the request line is not METHOD TARGET HTTP/1.x")
        method, raw_target, version = parts
        if not HTTP_VERSION.fullmatch(version):
            raise BadRequest("only HTTP/1.0 and HTTP/1.1 are served")
        target = request_target(raw_target)
        parser = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEAD_BYTES)
        parser.receive_data(method + b" / " + version + b"\r\n" + rest)
        self.buffer = b""
        request = None
        continued = False
        chunks: list[bytes] = []
        size = 0
        try:
            while True:
                event = parser.next_event()
                if event is h11.NEED_DATA:
                    if parser.they_are_waiting_for_100_continue and not continued:
                        continued = True  # curl waits a second for it before a large body
                        self.sock.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
                    parser.receive_data(self._recv_request())
                elif isinstance(event, h11.Request):
                    request = event
                    names = {name for name, _ in event.headers}
                    if b"transfer-encoding" in names and b"content-length" in names:
                        # RFC 9112 6.3: a request smuggling attempt; never guess which wins
                        raise BadRequest("both Content-Length and Transfer-Encoding are given")
                    length = dict(event.headers).get(b"content-length", b"0")
                    if int(length) > MAX_PAYLOAD_BYTES:  # h11 checked that it is digits
                        raise BadRequest("Request Too Long", 413)
                elif isinstance(event, h11.Data):
                    size += len(event.data)
                    if size > MAX_PAYLOAD_BYTES:
                        raise BadRequest("Request Too Long", 413)
                    chunks.append(event.data)
                elif isinstance(event, h11.EndOfMessage):
                    break
                else:  # ConnectionClosed, PAUSED: nothing more to read for this request
                    raise BadRequest("the connection closed in the middle of a request")
        except h11.RemoteProtocolError as error:
            status = error.error_status_hint if 400 <= error.error_status_hint < 500 else 400
            raise BadRequest(str(error), status) from None
        assert request is not None
        self.buffer = parser.trailing_data[0]  # a pipelined next request
        tokens = {
            t.strip().lower()
            for name, value in request.headers
            if name == b"connection"
            for t in value.split(b",")
        }
        http10 = version == b"HTTP/1.0"
        raw_headers = request.headers.raw_items()  # as spelled: API Gateway passes them so
        return Request(
            method=method.decode("ascii"),
            target=target,
            headers=[(n.decode("latin-1"), v.decode("latin-1")) for n, v in raw_headers],
            body=b"".join(chunks),
            http10=http10,
            keep_alive=b"keep-alive" in tokens if http10 else b"close" not in tokens,
        )

    def _send(self, response: HttpResponse, method: str, close: bool, http10: bool) -> None:
        body = b"" if method == "HEAD" else response.body
        head = _response_head(response.status, response.headers, len(response.body), close, http10)
        self.sock.sendall(head + body)

    def serve(self) -> bool:
        """Serve requests until the connection closes (False) or idles (True: park it)."""
        try:
            while True:
                self.busy = bool(self.buffer)
                started = time.monotonic()
                try:
                    request = self._read_request()
                except Idle:
                    return True
                except ClientGone:
                    return False
                except BadRequest as error:
                    self._refuse(error, started)
                    return False
                self.busy = True
                method, target = request.method, request.target
                response = self.server.gateway.handle(
                    method, target, request.headers, request.body, self.ip
                )
                close = not request.keep_alive or self.server.draining
                if not safe_headers(response.headers):
                    _stderr(f"{method} {printable(target)}: an answer header holds CR, LF or NUL")
                    response = internal_server_error(str(uuid.uuid4()))
                self._send(response, method, close, request.http10)
                self.last_active = time.monotonic()
                elapsed = (self.last_active - started) * 1000
                self.server.log(f"{method} {printable(target)} {response.status} {elapsed:.0f} ms")
                if close:
                    return False
        except OSError:  # reset by the peer, or shut down by drain()
            return False
        finally:
            self.busy = False

    def _refuse(self, error: BadRequest, started: float) -> None:
        request_id = str(uuid.uuid4())
        if error.status == 413:
            response = gateway_error(413, "Request Too Long", "RequestTooLarge", request_id)
        else:
            response = bad_request(error.status, request_id)
        try:
            self._send(response, "GET", close=True, http10=False)
            self.sock.shutdown(socket.SHUT_WR)
            # Read (and drop) what the client still sends for a moment: closing with unread
            # bytes resets the connection, and the client could lose the answer.
            deadline = time.monotonic() + 1.0
            unread = 1024 * 1024
            while unread > 0 and (left := deadline - time.monotonic()) > 0:
                data = self._recv(left)
                if not data:
                    break
                unread -= len(data)
        except OSError:  # TimeoutError included
            pass
        elapsed = (time.monotonic() - started) * 1000
        self.server.log(f"- - {response.status} {elapsed:.0f} ms ({printable(str(error))})")


class IdleConnections:
    """Kept-alive connections between requests: one thread watches them all, hands a
    connection back to the pool when its next request arrives, closes it after
    IDLE_TIMEOUT. Idle clients hold no thread, however many there are."""

    def __init__(self, server: LocalApiServer) -> None:
        self._server = server
        self._selector = selectors.DefaultSelector()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stopped = False

    def park(self, connection: Connection) -> None:
        with self._lock:
            if not self._stopped:
                deadline = time.monotonic() + IDLE_TIMEOUT
                self._selector.register(connection.sock, selectors.EVENT_READ, deadline)
                if self._thread is None:
                    self._thread = threading.Thread(target=self._watch, name="http-idle")
                    self._thread.daemon = True
                    self._thread.start()
                return
        self._server.close_connection(connection.sock)

    def _take(self, sock: socket.socket) -> bool:
        with self._lock:
            try:
                self._selector.unregister(sock)
            except (KeyError, ValueError):  # taken already
                return False
            return True

    def _watch(self) -> None:
        while not self._stopped:
            for key, _ in self._selector.select(timeout=0.25):
                if self._take(key.fileobj):  # type: ignore[arg-type]
                    self._server.resume(key.fileobj)  # type: ignore[arg-type]
            now = time.monotonic()
            with self._lock:
                expired = [k.fileobj for k in self._selector.get_map().values() if k.data < now]
            for sock in expired:
                if self._take(sock):  # type: ignore[arg-type]
                    self._server.close_connection(sock)  # type: ignore[arg-type]

    def close(self) -> None:
        with self._lock:
            self._stopped = True
            parked = [key.fileobj for key in self._selector.get_map().values()]
            for sock in parked:
                self._selector.unregister(sock)
        for sock in parked:
            self._server.close_connection(sock)  # type: ignore[arg-type]


class LocalApiServer(socketserver.TCPServer):
    """Requests on reused threads, idle connections parked; each request read is answered
    by the gateway (local/gateway.py), whose functions run in their own thread pool."""

    allow_reuse_address = True
    request_queue_size = LISTEN_BACKLOG

    def __init__(
        self,
        address: tuple[str, int],
        gateway: Gateway,
        log: Callable[[str], None] | None = None,
        sock: socket.socket | None = None,
    ) -> None:
        """sock: a socket bound and listening already (local/stack.py holds the port from
        the first instant), served as it is: a connection made while the stack starts
        waits in its backlog and is answered once this serves, where closing it and
        binding anew would reset that connection."""
        super().__init__(address, socketserver.BaseRequestHandler, bind_and_activate=sock is None)
        if sock is not None:
            self.socket.close()
            self.socket = sock
            self.server_address = sock.getsockname()
            sock.listen(self.request_queue_size)  # the backlog a burst of clients needs
        self.gateway = gateway
        install_line_writer()  # the functions print from many threads: one line, one write
        self.log = log or (lambda line: print(line, flush=True))
        self.draining = False
        self._drain_started = 0.0
        self._connections: dict[socket.socket, Connection] = {}
        self._lock = threading.Lock()
        self._closed = threading.Condition(self._lock)
        self._threads = concurrent.futures.ThreadPoolExecutor(CONNECTION_THREADS, "http")
        self._idle = IdleConnections(self)
        self._serving = False
        self.max_connections = connection_cap()

    def keep_hot(self) -> float:
        """How long a connection between requests keeps its thread."""
        if self.draining:
            return max(0.01, self._drain_started + DRAIN_IDLE_GRACE - time.monotonic())
        return KEEP_HOT

    def serve_forever(self, poll_interval: float = 0.5) -> None:
        self._serving = True
        try:
            super().serve_forever(poll_interval)
        finally:
            self._serving = False

    def get_request(self) -> tuple[socket.socket, tuple]:
        """accept(); out of descriptors, close an idle connection or pause accepting a
        moment (the listening socket stays readable: retrying at once would spin)."""
        try:
            return self.socket.accept()
        except OSError as error:
            if error.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                with self._lock:
                    evicted = self._evict_idle()
                if not evicted:
                    time.sleep(ACCEPT_BACKOFF)
            raise  # socketserver drops this attempt and polls again

    def _evict_idle(self) -> bool:
        """Close the connection idle longest (none that is mid-request); holds _lock."""
        idle = [c for c in self._connections.values() if not c.busy]
        if not idle:
            return False
        oldest = min(idle, key=lambda c: c.last_active)
        del self._connections[oldest.sock]
        # Its thread reads the end and closes it; parked, the watcher finds it and closes it.
        with contextlib.suppress(OSError):
            oldest.sock.shutdown(socket.SHUT_RDWR)
        return True

    def process_request(self, request: socket.socket, client_address: tuple) -> None:  # type: ignore[override]
        connection = Connection(self, request, client_address)
        with self._lock:
            admitted = len(self._connections) < self.max_connections or self._evict_idle()
            if admitted:
                self._connections[request] = connection
        if not admitted:
            self._refuse_busy(request)
            return
        try:
            self._threads.submit(self._process, request, client_address)
        except RuntimeError:  # stopped: no new connection is served
            self.close_connection(request)

    def _refuse_busy(self, request: socket.socket) -> None:
        """Every connection is mid-request: a 503 at once, not a wait or an accept loop."""
        response = gateway_error(
            503, "Service Unavailable", "ServiceUnavailable", str(uuid.uuid4())
        )
        head = _response_head(503, response.headers, len(response.body), True, False)
        with contextlib.suppress(OSError):
            request.settimeout(1.0)
            request.sendall(head + response.body)
        self.shutdown_request(request)
        self.log(f"- - 503 0 ms (all {self.max_connections} connections are mid-request)")

    def _process(self, request: socket.socket, client_address: tuple) -> None:
        try:
            idle = self.finish_request(request, client_address)
        except Exception:
            self.handle_error(request, client_address)
            idle = False
        self._park_or_close(request, bool(idle))

    def finish_request(self, request: socket.socket, client_address: tuple) -> bool:  # type: ignore[override]
        """Serve a new connection's requests; True when it is left idle and open."""
        with self._lock:
            connection = self._connections.get(request)
        if connection is None:  # closed already to make room for a newer one
            return False
        request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return connection.serve()

    def _resumed(self, connection: Connection) -> None:
        idle = False
        try:
            idle = connection.serve()
        finally:
            self._park_or_close(connection.sock, idle)

    def _park_or_close(self, sock: socket.socket, idle: bool) -> None:
        with self._lock:
            connection = self._connections.get(sock)
        if idle and connection is not None and not self.draining:
            self._idle.park(connection)
        else:
            self.close_connection(sock)

    def resume(self, sock: socket.socket) -> None:
        """A parked connection's next request has begun to arrive: serve it on a thread."""
        with self._lock:
            connection = self._connections.get(sock)
        if connection is None:  # closed to make room for a new one
            self.shutdown_request(sock)
            return
        try:
            self._threads.submit(self._resumed, connection)
        except RuntimeError:  # stopped
            self.close_connection(sock)

    def close_connection(self, sock: socket.socket) -> None:
        with self._lock:
            self._connections.pop(sock, None)
            self._closed.notify_all()
        self.shutdown_request(sock)

    def drain(self, timeout: float) -> None:
        """Stop gracefully: refuse new connections, finish the requests in flight, answer
        the requests that still arrive on open connections with `Connection: close`, then
        close what is left once `timeout` seconds have passed."""
        deadline = time.monotonic() + timeout
        self._drain_started = time.monotonic()
        self.draining = True
        if self._serving:
            self.shutdown()
        self.socket.close()  # new connections are refused from now on
        with self._lock:
            while self._connections and time.monotonic() < deadline:
                idle = all(not c.busy for c in self._connections.values())
                if idle and time.monotonic() >= self._drain_started + DRAIN_IDLE_GRACE:
                    break
                self._closed.wait(0.05)
        self.server_close()

    def server_close(self) -> None:
        super().server_close()
        self._idle.close()
        with self._lock:
            for sock in list(self._connections):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
        self._threads.shutdown(wait=False)
