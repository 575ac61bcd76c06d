"""Run a function's inline code (Code.ZipFile, imported as index.py) the way Lambda does."""

from __future__ import annotations

import concurrent.futures
import contextvars
import importlib.util
import os
import threading
import time
import uuid
from collections.abc import Iterator, MutableMapping
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

# The environment of the function whose code runs in this thread (None: the stack's own).
_function_environment: contextvars.ContextVar[dict[str, str] | None] = contextvars.ContextVar(
    "function_environment", default=None
)


class FunctionEnviron(MutableMapping[str, str]):
    """os.environ as each function sees it. On Lambda every function has an environment of
    its own; here all functions share one process, so a variable one function's cold start
    wrote (TABLE_NAME) would be read by another at call time. Inside a function's code this
    reads its Environment.Variables over the process's environment (the credentials and the
    emulator's endpoint, as Lambda adds its own AWS_ variables), and its writes stay its own;
    outside, it is the process's environment unchanged."""

    def __init__(self, process: MutableMapping[str, str]) -> None:
        self.process = process

    def _layers(self) -> tuple[dict[str, str] | None, MutableMapping[str, str]]:
        return _function_environment.get(), self.process

    def __getitem__(self, key: str) -> str:
        own, process = self._layers()
        if own is not None and key in own:
            return own[key]
        return process[key]

    def __setitem__(self, key: str, value: str) -> None:
        own, process = self._layers()
        if own is None:
            process[key] = value
        else:
            own[key] = value

    def __delitem__(self, key: str) -> None:
        own, process = self._layers()
        if own is None:
            del process[key]
        elif key in own:
            del own[key]
        else:
            raise KeyError(key)  # the process's variables are not the function's to remove

    def __iter__(self) -> Iterator[str]:
        own, process = self._layers()
        return iter({**process, **(own or {})})

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def copy(self) -> dict[str, str]:
        return dict(self)


def _install_function_environ() -> None:
    if not isinstance(os.environ, FunctionEnviron):
        # Not clearing it: the process keeps its variables; functions see theirs over them.
        os.environ = FunctionEnviron(os.environ)  # type: ignore[assignment]  # noqa: B003


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
        _install_function_environ()
        self.environment = dict(spec.environment)  # this function's own, as on Lambda
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
            self.environment = dict(self.spec.environment)
            self.log_stream = self._new_log_stream()

    def _call(self, event: dict, context: LambdaContext) -> object:
        token = _function_environment.set(self.environment)
        try:
            handler = getattr(self._load(), self.entry, None)
            if not callable(handler):
                raise AttributeError(f"Handler {self.spec.handler!r} is not a function of index.py")
            return handler(event, context)
        finally:
            _function_environment.reset(token)

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
