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
from typing import Any

from deployer.parameters import TABLE_ID
from deployer.results import Outcome
from deployer.template_reading import TemplateError, parameter_values, ref_name
from local import emulator
from local.api_keys import UsagePlans
from local.events import ApiInfo
from local.invoke import InvokeServer, file_backend_spec, is_file_backend, region
from local.router import Router
from local.runtime import Function, FunctionSpec
from local.state import (
    DEFAULT_STATE_ROOT,
    SNAPSHOT_EVERY,
    Saved,
    StackState,
    StateError,
    names,
    not_in_template,
    read_cut,
    table_logical_ids,
    write_tables,
)
from local.streams import StreamMapping, StreamPoller, queue_sender, stream_mappings

DEFAULT_STACK_NAME = "route-counter"
MAX_CONCURRENCY = 64
# Names, not values (templates/private_stats.py's secret; the file that holds its value)
STATS_TOKEN_ID = "StatsTokenSecret"  # noqa: S105
STATS_TOKEN_FILE = "stats-token"  # noqa: S105
USAGE_PLAN_ID = "UsagePlan"  # templates/clients.py's plan (ClientIdentity apikey)
EMULATOR_FILE = "emulator"  # in the state directory while the stack runs: its endpoint


class PortInUse(OSError):
    """The API's port is taken."""

    def __init__(self, port: int) -> None:
        super().__init__(f"port {port} on 127.0.0.1 is in use: stop what uses it or choose --port")


def reserve_port(port: int) -> socket.socket:
    """Hold the port from before anything starts: the server serves this very socket.

    SO_REUSEADDR as the server binds: the TIME_WAIT connections a stopped stack leaves do
    not keep a new one off its port. Listening, so that a second start fails here at once
    (two sockets that only bind may share a port with SO_REUSEADDR on Linux).
    """
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(("127.0.0.1", port))
        sock.listen()
    except OSError:
        sock.close()
        raise PortInUse(port) from None
    return sock


def default_template() -> dict:
    """The template exactly as `python generate.py` prints it."""
    root = str(Path(__file__).resolve().parent.parent)
    if root not in sys.path:
        sys.path.insert(0, root)
    from generate import build_template, render

    return json.loads(render(build_template()))


def _resolve(value: object, params: dict[str, str], physical: dict[str, str]) -> object:
    """A property value with Refs to parameters and resources resolved (best effort: a Ref
    to a name neither knows reads as the name)."""
    name = ref_name(value)
    return value if name is None else params.get(name, physical.get(name, name))


def _stage_name(template: dict, api_id: str, params: dict[str, str]) -> str:
    for resource in template["Resources"].values():
        props = resource.get("Properties", {})
        if (
            resource.get("Type") == "AWS::ApiGateway::Stage"
            and ref_name(props.get("RestApiId")) == api_id
        ):
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


def start_stream_pollers(
    mappings: list[StreamMapping],
    template: dict,
    endpoint: str,
    physical: dict[str, str],
    functions: dict[str, Function],
    log: Callable[[str], None],
    from_latest: bool,
    stream_ends: dict[str, int | None] | None = None,
    replays: dict[str, list[dict]] | None = None,
) -> list[StreamPoller]:
    """A started poller per event source mapping from a table's stream (local/streams.py).

    Each takes its shard iterator before this returns: with StartingPosition LATEST, the
    first hit the API serves is in its stream. from_latest: the stack restored saved items,
    whose writes are in the stream and are no new events. stream_ends (by table name):
    where each stream ends now, when the stack saves what is undelivered. replays (by
    mapping): the records an earlier run saved undelivered."""
    ddb = emulator.client("dynamodb", endpoint)
    streams = emulator.client("dynamodbstreams", endpoint)
    sqs = emulator.client("sqs", endpoint)
    pollers = []
    for mapping in mappings:
        table = ddb.describe_table(TableName=physical[mapping.table])["Table"]
        if "LatestStreamArn" not in table:
            raise TemplateError(f"{mapping.logical_id}: {mapping.table} has no stream")
        send = None
        if mapping.on_failure:
            destination = template["Resources"].get(mapping.on_failure, {})
            if destination.get("Type") != "AWS::SQS::Queue":
                raise TemplateError(
                    f"{mapping.logical_id}: only an SQS queue of the template is emulated "
                    "as the OnFailure destination"
                )
            send = queue_sender(sqs, physical[mapping.on_failure])
        poller = StreamPoller(
            mapping,
            functions[mapping.function],
            table["LatestStreamArn"],
            streams,
            send,
            log,
            latest=from_latest,
            stream_end=None if stream_ends is None else stream_ends[physical[mapping.table]] or 0,
            replay=(replays or {}).get(mapping.logical_id),
        )
        poller.start()
        pollers.append(poller)
    return pollers


def keep_stats_token(
    endpoint: str, secret_arn: str, state: StackState | None, fresh: bool
) -> Path | None:
    """PrivateStats: the token in <state dir>/stats-token, readable by its owner only (0600),
    so that it is never printed; None when no state is kept (another emulator's).

    Every start deploys to a new emulator, whose Secrets Manager generates a new token: a
    token saved by an earlier start is put back (PutSecretValue, as a rotation would), so a
    browser's saved password keeps working, as the tables keep their counts; --fresh keeps
    the new one."""
    if state is None or not secret_arn:
        return None
    secrets = emulator.client("secretsmanager", endpoint)
    path = state.path / STATS_TOKEN_FILE
    saved = path.read_text(encoding="utf-8").strip() if path.exists() and not fresh else ""
    if saved:
        secrets.put_secret_value(SecretId=secret_arn, SecretString=saved)
        return path
    token = secrets.get_secret_value(SecretId=secret_arn)["SecretString"]
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(descriptor, 0o600)  # a file that was there keeps its mode through O_CREAT
    with os.fdopen(descriptor, "w", encoding="utf-8") as out:
        out.write(token + "\n")
    return path


@dataclass
class LocalStack:
    """A running local stack: `.url` serves the API; `.stop()` stops all it started."""

    url: str
    port: int
    endpoint: str
    stack_name: str
    deploy_result: Outcome
    emulator: emulator.Emulator | None
    functions: dict[str, Function] = field(default_factory=dict)
    state: StackState | None = None  # where its tables are kept (None: not kept)
    tables: dict[str, str] = field(default_factory=dict)  # logical id -> physical name
    restored: int = 0  # items written back from the saved state at start
    routes_restored: int = 0  # ... of them the counter table's: one item a route
    parameters: dict[str, str] = field(default_factory=dict)  # every value the deploy used
    stats_token_secret: str = ""  # PrivateStats: the secret's ARN in the emulator
    stats_token_path: Path | None = None  # ... and the file that holds its value
    _server: Any = None
    _thread: threading.Thread | None = None
    _pool: concurrent.futures.ThreadPoolExecutor | None = None
    _code_dir: Path | None = None
    _saver: threading.Thread | None = None
    _stopping: threading.Event = field(default_factory=threading.Event)
    _saved_finished: int = 0
    _pollers: list[StreamPoller] = field(default_factory=list)
    save_failure: str | None = None  # why the last save failed (None: it worked)
    _kept: Saved = field(default_factory=Saved)  # saved, not in the template: saved as it was
    backend: str = ""  # what the counter forwards to, as the banner says it
    usage_plan: str = ""  # ClientIdentity apikey: the plan whose keys the API takes
    _invoke_server: InvokeServer | None = None

    @property
    def emulator_pid(self) -> int | None:
        return self.emulator.pid if self.emulator else None

    @property
    def stream_mappings(self) -> list[StreamMapping]:
        """The event source mappings from a table's stream that run (local/streams.py)."""
        return [poller.mapping for poller in self._pollers]

    def emulator_failure(self) -> str | None:
        """Why the emulator this stack started is gone (None while it runs)."""
        return self.emulator.exit_reason() if self.emulator else None

    def save_state(self, force: bool = False) -> bool:
        """Snapshot the tables if an invocation finished since the last snapshot (or force).

        Counted before reading: what finished by then is in the read; what finishes during
        it makes the next period save again. The tables are read at one moment, and with
        them the stream records each mapping had not delivered by then (taken before that
        moment, so none is missed; one delivered meanwhile is delivered again after a
        restart, as Lambda may): the saved series plus those records make the saved counts.
        A failed save raises StateError, the previous snapshot left whole."""
        if self.state is None or self.emulator_failure():
            return False
        finished = sum(f.finished for f in self.functions.values())
        if not force and finished == self._saved_finished:
            return False
        held = {poller.mapping.logical_id: poller.held() for poller in self._pollers}
        cut = read_cut(self.endpoint, os.environ["AWS_REGION"], self.tables)
        undelivered = {
            poller.mapping.logical_id: poller.undelivered(
                held[poller.mapping.logical_id], cut.stream_ends[self.tables[poller.mapping.table]]
            )
            for poller in self._pollers
        }
        self.state.save(
            {**self._kept.tables, **cut.tables}, {**self._kept.undelivered, **undelivered}
        )
        self._saved_finished = finished
        return True

    def _save_reporting(self, force: bool = False) -> None:
        """save_state, a failure said once on stderr (and once more when saving works again)."""
        try:
            self.save_state(force)
        except StateError as error:
            if str(error) != self.save_failure:
                print(f"warning: {error}", file=sys.stderr, flush=True)
            self.save_failure = str(error)
            return
        if self.save_failure is not None and self.state and self.state.saved_at:
            print(f"note: saved {self.state.snapshot} again", file=sys.stderr)
            self.save_failure = None

    def _save_periodically(self, every: float) -> None:
        while not self._stopping.wait(every):
            with contextlib.suppress(Exception):  # a dead emulator: the owner reports it
                self._save_reporting()

    def start_saving(self, every: float = SNAPSHOT_EVERY) -> None:
        if self.state is not None:
            self._saver = threading.Thread(
                target=self._save_periodically, args=(every,), name="local-state", daemon=True
            )
            self._saver.start()

    def stop(self, drain_timeout: float = 5.0) -> None:
        """Stop serving (finishing what is in flight), save the tables, stop the emulator."""
        self._stopping.set()
        if self._server is not None:
            # What is in flight finishes; kept-alive clients get Connection: close.
            self._server.drain(drain_timeout)
            self._server.server_close()
            self._server = None
        for poller in self._pollers:  # what the last hits wrote reaches its functions
            poller.stop(drain_timeout)
        if self.state is not None:  # ./deploy.sh keys --local finds no stack from now on
            (self.state.path / EMULATOR_FILE).unlink(missing_ok=True)
        if self._saver is not None:
            self._saver.join()
        try:
            with contextlib.suppress(Exception):  # a dead emulator: the owner reports it
                self._save_reporting(force=True)
        finally:
            if self.emulator is not None:
                self.emulator.stop()
            if self.state is not None:
                self.state.unlock()
            if self._pool is not None:
                self._pool.shutdown(wait=False, cancel_futures=True)
            if self._code_dir is not None:
                shutil.rmtree(self._code_dir, ignore_errors=True)


def start_local_stack(
    port: int = 3000,
    params: dict[str, str] | None = None,
    stack_name: str = DEFAULT_STACK_NAME,
    template: dict | None = None,
    endpoint: str | None = None,
    log: Callable[[str], None] | None = None,
    state_root: Path | None = DEFAULT_STATE_ROOT,
    fresh: bool = False,
) -> LocalStack:
    """Start (or use) the emulator, deploy the template to it, and serve its API.

    port 0 picks a free port. endpoint (default: $AWS_ENDPOINT_URL) names an emulator
    already running; otherwise moto_server is started and stopped with the stack, and its
    tables are kept in state_root/<stack_name>/ across restarts (see local/state.py): saved
    on stop and while serving, written back after the deploy unless fresh (or state_root
    is None). The functions run in this process, so this process's environment is pointed
    at the emulator (AWS_ENDPOINT_URL, fake credentials, region) and keeps the functions'
    variables.
    """
    from deployer.options import check_stack_name
    from local.gateway import Gateway
    from local.server import LocalApiServer

    check_stack_name(stack_name)  # it names a directory under state_root too
    params = dict(params or {})
    endpoint = endpoint or os.environ.get("AWS_ENDPOINT_URL") or None
    # Everything this start made so far, undone in reverse order if it fails.
    undo = contextlib.ExitStack()
    with undo:
        reserved = reserve_port(port)  # the server's own socket: connections wait in its backlog
        undo.callback(reserved.close)
        state = None
        if state_root is not None and not endpoint:  # another emulator keeps its own state
            state = StackState(state_root, stack_name)
            state.lock()
            undo.callback(state.unlock)
        saved = state.load() if state is not None and not fresh else Saved()  # fail before starting
        emu = None if endpoint else emulator.Emulator()
        if emu is not None:
            undo.callback(emu.stop)
        if template is None:
            template = default_template()  # while the emulator boots
        backend = params.get("Backend", "")
        downstream = file_backend_spec(backend, region()) if is_file_backend(backend) else None
        if downstream is not None:  # deployed as the Lambda backend it stands for
            params["Backend"] = downstream.function_arn
            backend = f"{backend} (as {downstream.function_arn})"
        emulator.check_parameters(template, params)
        router = Router(template, parameters=parameter_values(template, params))
        say = log or (lambda line: print(line, flush=True))
        mappings = stream_mappings(template, parameter_values(template, params), say)
        kept = not_in_template(saved, table_logical_ids(template), [m.logical_id for m in mappings])
        if state is not None and (kept.tables or kept.undelivered):
            print(
                f"warning: {state.snapshot} holds {names(kept)}, which the template "
                "does not have: not restored, kept in the file as it is",
                file=sys.stderr,
                flush=True,
            )
        if emu is not None:
            endpoint = emu.endpoint
            emulator.use_emulator_environment(endpoint, fake_credentials=True)
            emu.wait_ready()
        else:
            emulator.use_emulator_environment(endpoint, fake_credentials=False)
        assert endpoint is not None
        result = emulator.deploy(endpoint, json.dumps(template), stack_name, params)
        stack_id, physical = emulator.stack_resources(endpoint, stack_name)
        tables = {i: physical[i] for i in table_logical_ids(template) if i in physical}
        restored = write_tables(emulator.client("dynamodb", endpoint), tables, saved.tables)
        routes_restored = len(saved.tables.get(TABLE_ID, [])) if TABLE_ID in tables else 0
        token_secret = physical.get(STATS_TOKEN_ID, "")
        token_path = keep_stats_token(endpoint, token_secret, state, fresh)
        values = parameter_values(template, params)
        api_id = physical.get(router.api_logical_id, "local")
        resource_ids = {
            resource.path: physical[logical_id]
            for logical_id, resource in router.resources.items()
            if logical_id in physical
        }
        binary_media_types: list[str] = []
        with contextlib.suppress(Exception):
            apigw = emulator.client("apigateway", endpoint)
            deployed_api = apigw.get_rest_api(restApiId=api_id)
            resource_ids["/"] = deployed_api["rootResourceId"]
            binary_media_types = deployed_api.get("binaryMediaTypes", [])
        api = ApiInfo(
            api_id=api_id,
            stage=_stage_name(template, router.api_logical_id, values),
            account_id=stack_id.split(":")[4] if stack_id.count(":") >= 5 else "123456789012",
            resource_ids=resource_ids,
            binary_media_types=tuple(binary_media_types),
        )
        targets = router.functions() | {m.function for m in mappings}
        specs = function_specs(template, targets, endpoint, physical, values)
        pool = concurrent.futures.ThreadPoolExecutor(MAX_CONCURRENCY, "lambda")
        undo.callback(pool.shutdown, wait=False, cancel_futures=True)
        code_dir = Path(tempfile.mkdtemp(prefix="route-counter-local-"))
        undo.callback(shutil.rmtree, code_dir, ignore_errors=True)
        invoke_server = None
        if downstream is not None:
            invoke_server = InvokeServer(Function(downstream, code_dir, pool))
            undo.callback(invoke_server.stop)
            for spec in specs:  # their Lambda clients invoke it as they would on AWS
                spec.environment["AWS_ENDPOINT_URL_LAMBDA"] = invoke_server.url
        functions = {s.logical_id: Function(s, code_dir, pool) for s in specs}
        # Where the streams end now (what the restore wrote): where the pollers start, as
        # positions a save can read from again. An emulator of AWS_ENDPOINT_URL: not saved.
        ends = read_cut(endpoint, os.environ["AWS_REGION"], tables).stream_ends if state else None
        if invoke_server is not None:
            functions[downstream.logical_id] = invoke_server.function
        pollers = start_stream_pollers(
            mappings,
            template,
            endpoint,
            physical,
            functions,
            say,
            from_latest=restored > 0,
            stream_ends=ends,
            replays=saved.undelivered,
        )
        for poller in pollers:
            undo.callback(poller.stop, 0)
        usage_plan = physical.get(USAGE_PLAN_ID, "")
        plans = UsagePlans(
            emulator.client("apigateway", endpoint), [usage_plan] if usage_plan else []
        )
        if state is not None:  # where ./deploy.sh keys --local finds this stack's emulator
            (state.path / EMULATOR_FILE).write_text(endpoint + "\n", encoding="utf-8")
            undo.callback((state.path / EMULATOR_FILE).unlink, missing_ok=True)
        gateway = Gateway(router, functions, api, usage_plans=plans)
        server = LocalApiServer(("127.0.0.1", port), gateway, log, reserved)
        undo.callback(server.server_close)
        thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.1},
            name="local-api",
            daemon=True,
        )
        thread.start()
        undo.pop_all()  # started: from now on LocalStack.stop() undoes it all
    bound = server.server_address[1]
    stack = LocalStack(
        url=f"http://127.0.0.1:{bound}",
        port=bound,
        endpoint=endpoint,
        stack_name=stack_name,
        deploy_result=result,
        emulator=emu,
        functions=functions,
        state=state,
        tables=tables,
        restored=restored,
        routes_restored=routes_restored,
        parameters=values,
        stats_token_secret=token_secret,
        stats_token_path=token_path,
        _server=server,
        _thread=thread,
        _pool=pool,
        _code_dir=code_dir,
        _pollers=pollers,
        _kept=kept,
        backend=backend,
        _invoke_server=invoke_server,
        usage_plan=usage_plan,
    )
    stack.start_saving()
    return stack
