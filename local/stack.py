"""The local stack: emulator + CloudFormation deploy + the template's API on a local port."""

from __future__ import annotations

import concurrent.futures
import contextlib
import json
import os
import shutil
import socket
import sys
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from local import emulator
from local.events import ApiInfo
from local.router import Router, TemplateError, parameter_values
from local.runtime import Function, FunctionSpec

DEFAULT_STACK_NAME = "route-counter"
MAX_CONCURRENCY = 64


class PortInUse(OSError):
    """The API's port is taken."""


def ensure_port_free(port: int) -> None:
    """Fail before starting anything when the port is taken (the usual start-up mistake)."""
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            raise PortInUse(
                f"port {port} on 127.0.0.1 is in use: stop what uses it or choose --port"
            ) from None


def default_template() -> dict:
    """The template exactly as `python generate.py` prints it."""
    root = str(Path(__file__).resolve().parent.parent)
    if root not in sys.path:
        sys.path.insert(0, root)
    from generate import build_template, render

    return json.loads(render(build_template()))


def _resolve(value: object, params: dict[str, str], physical: dict[str, str]) -> object:
    """A property value with Refs to parameters and resources resolved (best effort)."""
    if isinstance(value, dict) and set(value) == {"Ref"}:
        name = value["Ref"]
        return params.get(name, physical.get(name, name))
    return value


def _stage_name(template: dict, api_id: str, params: dict[str, str]) -> str:
    for resource in template["Resources"].values():
        props = resource.get("Properties", {})
        if resource.get("Type") == "AWS::ApiGateway::Stage" and props.get("RestApiId") == {
            "Ref": api_id
        }:
            return str(_resolve(props.get("StageName"), params, {}))
    return "prod"


def function_specs(
    template: dict,
    logical_ids: set[str],
    endpoint: str,
    physical: dict[str, str],
    params: dict[str, str],
) -> list[FunctionSpec]:
    """Each function's inline code and its configuration as the emulator resolved it."""
    lam = emulator.client("lambda", endpoint)
    specs = []
    for logical_id in sorted(logical_ids):
        props = template["Resources"][logical_id]["Properties"]
        code = props.get("Code", {}).get("ZipFile")
        if not isinstance(code, str):
            raise TemplateError(
                f"{logical_id}: only inline code (Code.ZipFile string) runs locally"
            )
        name = physical.get(logical_id, logical_id)
        try:
            config = lam.get_function_configuration(FunctionName=name)
        except Exception:  # fall back to resolving the template against the stack
            config = {}
        variables = config.get("Environment", {}).get("Variables")
        if variables is None:
            declared = props.get("Environment", {}).get("Variables", {})
            variables = {k: str(_resolve(v, params, physical)) for k, v in declared.items()}
        log_group = config.get("LoggingConfig", {}).get("LogGroup") or _resolve(
            props.get("LoggingConfig", {}).get("LogGroup", ""), params, physical
        )
        specs.append(
            FunctionSpec(
                logical_id=logical_id,
                code=code,
                handler=config.get("Handler") or props.get("Handler", "index.handler"),
                timeout=float(config.get("Timeout") or props.get("Timeout", 3)),
                memory_mb=int(config.get("MemorySize") or 128),
                # Lambda's variables are strings; moto hands Number parameters back as ints.
                environment={k: str(v) for k, v in variables.items()},
                function_name=config.get("FunctionName", name),
                function_arn=config.get("FunctionArn", ""),
                log_group=str(log_group),
            )
        )
    return specs


@dataclass
class LocalStack:
    """A running local stack: `.url` serves the API; `.stop()` stops all it started."""

    url: str
    port: int
    endpoint: str
    stack_name: str
    deploy_result: str
    emulator: emulator.Emulator | None
    functions: dict[str, Function] = field(default_factory=dict)
    _server: object = None
    _thread: threading.Thread | None = None
    _pool: concurrent.futures.ThreadPoolExecutor | None = None
    _code_dir: Path | None = None

    @property
    def emulator_pid(self) -> int | None:
        return self.emulator.pid if self.emulator else None

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
        if self.emulator is not None:
            self.emulator.stop()
        if self._code_dir is not None:
            shutil.rmtree(self._code_dir, ignore_errors=True)


def start_local_stack(
    port: int = 3000,
    params: dict[str, str] | None = None,
    stack_name: str = DEFAULT_STACK_NAME,
    template: dict | None = None,
    endpoint: str | None = None,
    log: Callable[[str], None] | None = None,
) -> LocalStack:
    """Start (or use) the emulator, deploy the template to it, and serve its API.

    port 0 picks a free port. endpoint (default: $AWS_ENDPOINT_URL) names an emulator
    already running; otherwise moto_server is started and stopped with the stack.
    The functions run in this process, so this process's environment is pointed at the
    emulator (AWS_ENDPOINT_URL, fake credentials, region) and keeps the functions' variables.
    """
    from local.server import LocalApiServer

    params = dict(params or {})
    endpoint = endpoint or os.environ.get("AWS_ENDPOINT_URL") or None
    if port:
        ensure_port_free(port)
    emu = None if endpoint else emulator.Emulator()
    try:
        if template is None:
            template = default_template()  # while the emulator boots
        emulator.check_parameters(template, params)
        router = Router(template, parameters=parameter_values(template, params))
        if emu is not None:
            endpoint = emu.endpoint
            emulator.use_emulator_environment(endpoint, fake_credentials=True)
            emu.wait_ready()
        else:
            emulator.use_emulator_environment(endpoint, fake_credentials=False)
        assert endpoint is not None
        result = emulator.deploy(endpoint, json.dumps(template), stack_name, params)
        stack_id, physical = emulator.stack_resources(endpoint, stack_name)
        values = parameter_values(template, params)
        api_id = physical.get(router.api_logical_id, "local")
        resource_ids = {
            resource.path: physical[logical_id]
            for logical_id, resource in router.resources.items()
            if logical_id in physical
        }
        with contextlib.suppress(Exception):
            apigw = emulator.client("apigateway", endpoint)
            resource_ids["/"] = apigw.get_rest_api(restApiId=api_id)["rootResourceId"]
        api = ApiInfo(
            api_id=api_id,
            stage=_stage_name(template, router.api_logical_id, values),
            account_id=stack_id.split(":")[4] if stack_id.count(":") >= 5 else "123456789012",
            resource_ids=resource_ids,
            binary_media_types=tuple(
                template["Resources"][router.api_logical_id]
                .get("Properties", {})
                .get("BinaryMediaTypes", [])
            ),
        )
        specs = function_specs(template, router.functions(), endpoint, physical, values)
        pool = concurrent.futures.ThreadPoolExecutor(MAX_CONCURRENCY, "lambda")
        code_dir = Path(tempfile.mkdtemp(prefix="route-counter-local-"))
        functions = {s.logical_id: Function(s, code_dir, pool) for s in specs}
        server = LocalApiServer(("127.0.0.1", port), router, functions, api, log=log)
        thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.1},
            name="local-api",
            daemon=True,
        )
        thread.start()
    except BaseException:
        if emu is not None:
            emu.stop()
        raise
    bound = server.server_address[1]
    return LocalStack(
        url=f"http://127.0.0.1:{bound}",
        port=bound,
        endpoint=endpoint,
        stack_name=stack_name,
        deploy_result=result,
        emulator=emu,
        functions=functions,
        _server=server,
        _thread=thread,
        _pool=pool,
        _code_dir=code_dir,
    )
