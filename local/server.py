"""The HTTP front: API Gateway's REST API proxy behaviour on 127.0.0.1."""

from __future__ import annotations

import sys
import time
import traceback
import uuid
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from local.events import (
    ApiInfo,
    HttpResponse,
    MalformedResponse,
    build_event,
    endpoint_timeout,
    gateway_error,
    internal_server_error,
    map_response,
    missing_authentication_token,
)
from local.router import SUPPORTED_METHODS, Router
from local.runtime import Function, FunctionTimeout

MAX_PAYLOAD_BYTES = 10 * 1024 * 1024  # API Gateway's request payload quota


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


class LocalApiServer(ThreadingHTTPServer):
    """One thread per connection; handlers run in the functions' thread pool."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(
        self,
        address: tuple[str, int],
        router: Router,
        functions: dict[str, Function],
        api: ApiInfo,
        log: Callable[[str], None] | None = None,
    ) -> None:
        super().__init__(address, RequestHandler)
        self.router = router
        self.functions = functions
        self.api = api
        self.log = log or (lambda line: print(line, flush=True))

    def answer(
        self, method: str, target: str, headers: list[tuple[str, str]], body: bytes, ip: str
    ) -> HttpResponse:
        """What API Gateway and the function answer to one request."""
        request_id = str(uuid.uuid4())
        match = self.router.match(method, target.partition("?")[0])
        if match is None or match.method is None or method not in SUPPORTED_METHODS:
            return missing_authentication_token(request_id)
        function = self.functions.get(match.method.function or "")
        if match.method.integration_type != "AWS_PROXY" or function is None:
            _stderr(f"{match.method.logical_id}: only AWS_PROXY Lambda integrations run locally")
            return internal_server_error(request_id)
        event = build_event(
            method=method,
            target=target,
            headers=headers,
            body=body,
            match=match,
            api=self.api,
            source_ip=ip,
            request_id=request_id,
        )
        try:
            result = function.invoke(event, request_id)
        except FunctionTimeout as error:
            _stderr(f"{request_id} {error}")
            return endpoint_timeout(request_id)
        except Exception:
            failure = traceback.format_exc().rstrip()
            _stderr(f"{request_id} {function.spec.logical_id} failed:\n{failure}")
            return internal_server_error(request_id)
        try:
            return map_response(result, request_id)
        except MalformedResponse as error:
            _stderr(f"{request_id} Malformed Lambda proxy response: {error}: {result!r:.500}")
            return internal_server_error(request_id)


class RequestHandler(BaseHTTPRequestHandler):
    server: LocalApiServer
    protocol_version = "HTTP/1.1"
    server_version = "route-counter-local"
    # Headers and body go out in separate writes: with Nagle's algorithm the body waits for
    # the client's delayed ACK (~40 ms) on every request of a kept-alive connection.
    disable_nagle_algorithm = True

    def _read_body(self) -> bytes | None:
        """The request body (Content-Length or chunked), None when over the payload quota."""
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks, total = [], 0
            while size := int(self.rfile.readline().split(b";")[0].strip() or b"0", 16):
                total += size
                if total > MAX_PAYLOAD_BYTES:
                    return None
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            while self.rfile.readline().strip():  # trailers
                pass
            return b"".join(chunks)
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_PAYLOAD_BYTES:
            return None
        return self.rfile.read(length) if length else b""

    def _serve(self) -> None:
        started = time.monotonic()
        body = self._read_body()
        if body is None:
            response = gateway_error(413, "Request Too Long", "RequestTooLarge", str(uuid.uuid4()))
            self.close_connection = True
        else:
            response = self.server.answer(
                self.command,
                self.path,
                list(self.headers.items()),
                body,
                self.client_address[0],
            )
        self.send_response(response.status)
        for name, value in response.headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(response.body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(response.body)
        elapsed = (time.monotonic() - started) * 1000
        self.server.log(f"{self.command} {self.path} {response.status} {elapsed:.0f} ms")

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _serve

    def log_message(self, format: str, *args: object) -> None:
        """Our own one line per request replaces http.server's access log."""
