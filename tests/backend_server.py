"""A real HTTP backend on 127.0.0.1 (a free port) for the counter to stand in front of.

Each path is one behaviour a real API shows: echo, binary, cookies, HEAD, 204/304,
redirects, large answers, a stall, a death mid-answer. It records every request it
received, so a test can tell what reached it (and how many times).
"""

from __future__ import annotations

import base64
import json
import socket
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

BINARY = bytes(range(256)) * 4


@dataclass
class Backend:
    url: str
    requests: list[dict] = field(default_factory=list)
    connections: set[int] = field(default_factory=set)  # client ports seen
    release: threading.Event = field(default_factory=threading.Event)  # ends /stall

    def paths(self) -> list[str]:
        return [r["path"] for r in self.requests]


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as real backends
    backend: Backend

    def log_message(self, *args) -> None:  # quiet
        pass

    def _record(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        self.backend.connections.add(self.client_address[1])
        self.backend.requests.append(
            {
                "method": self.command,
                "path": self.path,
                "headers": list(self.headers.items()),
                "body": base64.b64encode(body).decode(),
                "port": self.client_address[1],
            }
        )
        return body

    def _answer(self, status: int, body: bytes, headers: list[tuple[str, str]] = ()) -> None:
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        if status not in (204, 304):
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD" and status not in (204, 304):
            self.wfile.write(body)

    def _serve(self) -> None:
        body = self._record()
        parts = urlsplit(self.path)
        route = parts.path.removeprefix("/base")
        query = parse_qs(parts.query)
        if route.startswith("/echo") or route == "/":
            seen = self.backend.requests[-1]
            payload = json.dumps({**seen, "body": base64.b64encode(body).decode()}).encode()
            self._answer(200, payload, [("Content-Type", "application/json")])
        elif route == "/binary":
            self._answer(200, BINARY, [("Content-Type", "application/octet-stream")])
        elif route == "/cookies":
            self._answer(
                200,
                b"ok",
                [
                    ("Content-Type", "text/plain"),
                    ("Set-Cookie", "a=1; Path=/"),
                    ("Set-Cookie", "b=2; Path=/; HttpOnly"),
                    ("X-Multi", "one"),
                    ("X-Multi", "two"),
                    ("Connection", "keep-alive, X-Hop"),
                    ("X-Hop", "dropped"),
                ],
            )
        elif route.startswith("/status/"):
            status = int(route.rsplit("/", 1)[1])
            self._answer(status, b"", [("ETag", '"v1"')])
        elif route == "/redirect":
            self._answer(302, b"moved", [("Location", "/elsewhere")])
        elif route == "/large":
            size = int(query["bytes"][0])
            kind = query.get("type", ["text/plain"])[0]
            fill = b"a" if kind == "text/plain" else b"\xff"
            self._answer(200, fill * size, [("Content-Type", kind)])
        elif route == "/stall":
            self.backend.release.wait(30)
            self._answer(200, b"late")
        elif route == "/die":
            self.send_response(200)
            self.send_header("Content-Length", "1000")
            self.end_headers()
            self.wfile.write(b"only part of it")
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)
            self.close_connection = True
        elif route == "/close":  # answers, then closes the kept-alive connection
            self._answer(200, b"bye", [("Content-Type", "text/plain")])
            self.close_connection = True
        else:
            self._answer(404, b'{"error": "no such route"}', [("Content-Type", "application/json")])

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _serve


@contextmanager
def backend_server(
    tls: tuple[str, str] | None = None, protocol: str = "HTTP/1.1"
) -> Iterator[Backend]:
    """Serve on 127.0.0.1 and a free port (over TLS with tls=(cert, key)); always stopped.
    protocol "HTTP/1.0": every answer closes its connection, as http.server's default does."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    scheme = "http"
    if tls is not None:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(*tls)
        server.socket = context.wrap_socket(server.socket, server_side=True)
        scheme = "https"
    backend = Backend(f"{scheme}://127.0.0.1:{server.server_address[1]}")
    server.RequestHandlerClass = type(
        "BoundHandler", (Handler,), {"backend": backend, "protocol_version": protocol}
    )
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield backend
    finally:
        backend.release.set()
        server.shutdown()
        server.server_close()
        thread.join()


def refused_url() -> str:
    """A URL on 127.0.0.1 where nothing listens (the port was free a moment ago)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"
