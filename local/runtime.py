"""Run a function's inline code (Code.ZipFile, imported as index.py) the way Lambda does."""

from __future__ import annotations

import concurrent.futures
import importlib.util
import os
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType


@dataclass
class FunctionSpec:
    """One AWS::Lambda::Function as deployed: its code and resolved configuration."""

    logical_id: str
    code: str
    handler: str = "index.handler"
    timeout: float = 3.0
    memory_mb: int = 128
    environment: dict[str, str] = field(default_factory=dict)
    function_name: str = ""
    function_arn: str = ""
    log_group: str = ""  # LoggingConfig.LogGroup; Lambda's default is /aws/lambda/<name>


class FunctionTimeout(Exception):
    """The handler did not return within the function's Timeout."""


class LambdaContext:
    """The context object Lambda passes the handler."""

    def __init__(
        self, spec: FunctionSpec, request_id: str, deadline: float, log_stream: str
    ) -> None:
        self.aws_request_id = request_id
        self.function_name = spec.function_name or spec.logical_id
        self.function_version = "$LATEST"
        self.invoked_function_arn = spec.function_arn
        self.memory_limit_in_mb = spec.memory_mb
        self.log_group_name = spec.log_group or f"/aws/lambda/{self.function_name}"
        self.log_stream_name = log_stream
        self._deadline = deadline

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


class Function:
    """A function's code, imported once (cold start) and reused for later invocations."""

    def __init__(self, spec: FunctionSpec, code_dir: Path, pool: concurrent.futures.Executor):
        self.spec = spec
        module_name, _, self.entry = spec.handler.rpartition(".")
        if module_name != "index" or not self.entry:
            raise ValueError(
                f"{spec.logical_id}: Handler {spec.handler!r} must be index.<function>: "
                "inline code (ZipFile) is saved as index.py"
            )
        self.path = code_dir / spec.logical_id / "index.py"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text(spec.code, encoding="utf-8")
        self._pool = pool
        self._lock = threading.Lock()
        self._module: ModuleType | None = None
        # Invocations finished so far, late ones included: whatever they wrote is in the
        # tables once this counts it, so the stack saves its tables again when it grows.
        self.finished = 0
        self.log_stream = self._new_log_stream()

    @staticmethod
    def _new_log_stream() -> str:
        # Lambda names one log stream per execution environment, not per invocation.
        return f"local/[$LATEST]{uuid.uuid4().hex}"

    def _load(self) -> ModuleType:
        """Import index.py in its own namespace (not sys.modules['index'])."""
        with self._lock:
            if self._module is None:
                os.environ.update(self.spec.environment)
                spec = importlib.util.spec_from_file_location("index", self.path)
                assert spec is not None and spec.loader is not None
                module = importlib.util.module_from_spec(spec)
                spec.loader.exec_module(module)
                self._module = module
            return self._module

    def reset(self) -> None:
        """Forget the imported module: the next invocation is a cold start."""
        with self._lock:
            self._module = None
            self.log_stream = self._new_log_stream()

    def _call(self, event: dict, context: LambdaContext) -> object:
        handler = getattr(self._load(), self.entry, None)
        if not callable(handler):
            raise AttributeError(f"Handler {self.spec.handler!r} is not a function of index.py")
        return handler(event, context)

    def _count_finished(self, _: concurrent.futures.Future) -> None:
        with self._lock:
            self.finished += 1

    def invoke(self, event: dict, request_id: str) -> object:
        """Run the handler with the function's Timeout; its exceptions propagate.

        A handler past its Timeout raises FunctionTimeout and, as Lambda does, the next
        invocation starts a fresh environment (the module is imported again). Python
        cannot stop the late thread: it finishes in the background.
        """
        deadline = time.monotonic() + self.spec.timeout
        context = LambdaContext(self.spec, request_id, deadline, self.log_stream)
        future = self._pool.submit(self._call, event, context)
        future.add_done_callback(self._count_finished)
        try:
            return future.result(timeout=self.spec.timeout)
        except concurrent.futures.TimeoutError:
            self.reset()
            raise FunctionTimeout(
                f"{self.spec.function_name or self.spec.logical_id}: "
                f"Task timed out after {self.spec.timeout:.2f} seconds"
            ) from None
