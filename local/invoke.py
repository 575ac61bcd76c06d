"""Lambda's Invoke API on 127.0.0.1, for a Backend that is a local Python file.

`--param Backend=file:PATH[:HANDLER]` (docs/backends.md): the file runs in the local stack
as the stack's own functions do (local/runtime.py: imported once, its Timeout, a fresh
environment after a timeout), under a function ARN that is what the template is given as
Backend, so the counter's conditions and role are those of a Lambda backend. The counter's
SDK reaches it as it reaches Lambda: `POST /2015-03-31/functions/<name>/invocations`
(AWS_ENDPOINT_URL_LAMBDA in the functions' environment), answered as Lambda answers:
the payload, or the error object with `X-Amz-Function-Error: Unhandled`.
"""

from __future__ import annotations

import json
import os
import threading
import traceback
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

from deployer.template_reading import TemplateError
from local.emulator import DEFAULT_REGION
from local.runtime import Function, FunctionSpec, FunctionTimeout

FILE_PREFIX = "file:"
ACCOUNT_ID = "123456789012"  # the emulator's account
DEFAULT_TIMEOUT = 3.0  # Lambda's default Timeout
# What Lambda returns at most from a synchronous Invoke (its error message names 6291556).
MAX_RESPONSE_BYTES = 6 * 1024 * 1024 + 100
PATH_PREFIX = "/2015-03-31/functions/"
CALLER_DIR = "ROUTE_COUNTER_CALLER_DIR"  # set by ./deploy.sh before it changes directory


def is_file_backend(value: str) -> bool:
    return value.startswith(FILE_PREFIX)


def file_backend_spec(value: str, region: str) -> FunctionSpec:
    """The function a `file:PATH[:HANDLER]` Backend names (HANDLER defaults to handler)."""
    path, _, entry = value.removeprefix(FILE_PREFIX).partition(":")
    # Relative to where ./deploy.sh was run (it runs this from the repository).
    source = Path(os.environ.get(CALLER_DIR, ".")) / Path(path).expanduser()
    if not source.is_file():
        raise TemplateError(f"Backend {value}: no such file {source}")
    entry = entry or "handler"
    name = "local-" + "".join(c if c.isalnum() or c in "-_" else "-" for c in source.stem)
    return FunctionSpec(
        logical_id="LocalBackendFunction",
        code=source.read_text(encoding="utf-8"),
        handler=f"index.{entry}",
        timeout=DEFAULT_TIMEOUT,
        function_name=name[:64],
        function_arn=f"arn:aws:lambda:{region}:{ACCOUNT_ID}:function:{name[:64]}",
    )


def error_payload(error: BaseException, request_id: str) -> dict:
    if isinstance(error, FunctionTimeout):
        return {"errorMessage": f"{request_id} {error}", "errorType": "Sandbox.Timedout"}
    return {
        "errorMessage": str(error),
        "errorType": type(error).__name__,
        "requestId": request_id,
        "stackTrace": traceback.format_tb(error.__traceback__),
    }


class InvokeHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: InvokeServer

    def log_message(self, *args: object) -> None:  # the counter logs the call
        pass

    def _send(self, status: int, body: bytes, headers: dict[str, str]) -> None:
        self.send_response(status)
        for name, value in {"Content-Type": "application/json", **headers}.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:
        request_id = str(uuid.uuid4())
        length = int(self.headers.get("Content-Length") or 0)
        payload = self.rfile.read(length)
        path = urlsplit(self.path).path
        name = unquote(path.removeprefix(PATH_PREFIX).removesuffix("/invocations"))
        function = self.server.function
        if not path.startswith(PATH_PREFIX) or name not in (
            function.spec.function_name,
            function.spec.function_arn,
        ):
            body = json.dumps({"Type": "User", "message": f"Function not found: {name}"})
            self._send(404, body.encode(), {"x-amzn-ErrorType": "ResourceNotFoundException"})
            return
        headers = {"x-amzn-RequestId": request_id, "X-Amz-Executed-Version": "$LATEST"}
        try:
            result = function.invoke(json.loads(payload or b"null"), request_id)
            answer = json.dumps(result).encode()
            if len(answer) > MAX_RESPONSE_BYTES:
                answer = json.dumps(
                    {
                        "errorMessage": "Response payload size exceeded maximum allowed "
                        f"payload size ({MAX_RESPONSE_BYTES} bytes).",
                        "errorType": "Function.ResponseSizeTooLarge",
                    }
                ).encode()
                headers["X-Amz-Function-Error"] = "Unhandled"
        except Exception as error:  # the function raised or timed out: Lambda answers 200
            print(f"{request_id} {function.spec.function_name} failed: {error!r}", flush=True)
            answer = json.dumps(error_payload(error, request_id)).encode()
            headers["X-Amz-Function-Error"] = "Unhandled"
        self._send(200, answer, headers)


class InvokeServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, function: Function) -> None:
        super().__init__(("127.0.0.1", 0), InvokeHandler)
        self.function = function
        self._thread = threading.Thread(
            target=self.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True
        )
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def stop(self) -> None:
        self.shutdown()
        self.server_close()
        self._thread.join()


def region() -> str:
    """The region the stack is deployed in (as use_emulator_environment will set it)."""
    return os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or DEFAULT_REGION
