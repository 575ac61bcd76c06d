"""Shared fixtures: the generated template, moto (in-process and as a server), events."""

import calendar
import contextlib
import datetime
import functools
import importlib.util
import json
import os
import re
import resource
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import boto3
import pytest
from moto import mock_aws

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
sys.path.insert(0, str(ROOT))

from generate import build_template, render  # noqa: E402
from local import moto_fidelity  # noqa: E402
from local.atomic_moto import make_dynamodb_atomic  # noqa: E402
from local.emulator import Emulator, free_port  # noqa: E402
from local.events import ApiKeyUsed, proxy_event  # noqa: E402
from local.router import Router  # noqa: E402
from local.tls import write_self_signed_certificate  # noqa: E402

FAKE_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_REGION": "us-east-1",
}


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Why tests were skipped, one line a reason, also where no -rs asks (make test): a
    skipped test with no word of why reads as a test that passed."""
    why: dict[str, set[str]] = {}
    counts: dict[str, int] = {}
    for report in terminalreporter.stats.get("skipped", []):
        if isinstance(report.longrepr, tuple):
            where, reason = report.longrepr[0], report.longrepr[2]
        else:
            where, reason = report.nodeid.split("::")[0], str(report.longrepr)
        reason = reason.removeprefix("Skipped: ")
        why.setdefault(reason, set()).add(os.path.relpath(where, ROOT).split(":")[0])
        counts[reason] = counts.get(reason, 0) + 1
    for reason, files in why.items():
        n = counts[reason]
        terminalreporter.write_line(
            f"{n} {'test' if n == 1 else 'tests'} skipped ({', '.join(sorted(files))}): {reason}"
        )


@pytest.fixture(autouse=True)
def fake_aws_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test can ever reach a real AWS account."""
    for key, value in FAKE_CREDENTIALS.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)


@pytest.fixture(scope="session")
def template() -> dict:
    """The template exactly as `python generate.py` prints it."""
    return json.loads(render(build_template()))


@pytest.fixture(scope="session")
def resources(template: dict) -> dict:
    return template["Resources"]


def role_statements(role: dict) -> list[dict]:
    """A role's statements as deployed with default parameters (no KmsKeyArn)."""
    policies = role["Properties"]["Policies"]
    if "Fn::If" in policies:
        policies = policies["Fn::If"][2]
    return [s for policy in policies for s in policy["PolicyDocument"]["Statement"]]


def table_definition(template: dict) -> dict:
    """CreateTable arguments taken from the template's own table definition."""
    props = template["Resources"]["CounterTable"]["Properties"]
    return {
        "AttributeDefinitions": props["AttributeDefinitions"],
        "KeySchema": props["KeySchema"],
        "BillingMode": "PAY_PER_REQUEST",
    }


def load_module(path: Path, name: str):
    """Import a handler file fresh, the way Lambda imports index.py in a new container."""
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# The last millisecond of a year: a second, minute, hour, UTC day, month and year all turn
# after it. A test whose "now" is this instant, and whose handler's clock is stopped there
# (stop_wall_clock), checks the edge every run instead of once a year by chance.
YEAR_END = calendar.timegm((2026, 12, 31, 23, 59, 59)) + 0.999


def stop_wall_clock(monkeypatch: pytest.MonkeyPatch, module, at: float) -> None:
    """A handler module's wall clock stopped at `at` (epoch seconds): its time.time() and
    datetime.datetime.now() read that instant, so the hour, day or month a test works out
    for "now" is the one the handler works out, at a boundary too. Only the module's names
    are patched: time.monotonic, sleeps, moto and the test's own clock go on as they are."""
    stopped = {
        **{name: getattr(time, name) for name in dir(time) if not name.startswith("_")},
        "time": lambda: at,
        "time_ns": lambda: int(at * 1e9),
        "gmtime": lambda seconds=None: time.gmtime(at if seconds is None else seconds),
    }
    monkeypatch.setattr(module, "time", SimpleNamespace(**stopped))
    if hasattr(module, "datetime"):

        class StoppedDatetime(datetime.datetime):
            @classmethod
            def now(cls, tz=None):
                return datetime.datetime.fromtimestamp(at, tz)

        clock = {name: getattr(datetime, name) for name in dir(datetime) if name[0] != "_"}
        clock["datetime"] = StoppedDatetime
        monkeypatch.setattr(module, "datetime", SimpleNamespace(**clock))


def in_one_period(period: Callable[[float], object], attempt: Callable[[], Any]) -> Any:
    """attempt()'s result, from a run that began and ended in one period of the wall clock,
    `period(epoch seconds)`: a rate-limit window (t // 60), a UTC day, a calendar month. For
    the local stack: a process of its own, its clock cannot be stopped, and a boundary
    passing during the run would begin its count again. Such a run is made again (by a new
    key, on a new route: attempt's own); no boundary passes twice within one run."""
    for _ in range(2):
        began = period(time.time())
        result = attempt()
        if period(time.time()) == began:
            return result
    raise AssertionError("a period's end passed during each of two runs")


@contextmanager
def on_send(client, operation: str, hook, stage: str = "before-send") -> Iterator[None]:
    """Run hook where a DynamoDB client's `operation` request would leave (before-send):
    a fault raised or an answer returned there is what the network would have given.
    stage="before-call": where the call is made, before moto (whose own before-send hook
    applies the request whatever ours answers) sees it: the answer is the call's."""
    event = f"{stage}.dynamodb.{operation}"
    client.meta.events.register_first(event, hook)
    try:
        yield
    finally:
        client.meta.events.unregister(event, hook)


def lambda_context(function_name: str = "CounterFunction") -> SimpleNamespace:
    return SimpleNamespace(
        aws_request_id=str(uuid.uuid4()),
        function_name=function_name,
        memory_limit_in_mb=256,
        get_remaining_time_in_millis=lambda: 15000,
    )


def api_event(
    path: str = "/",
    method: str = "GET",
    *,
    query: dict | None = None,
    headers: dict | None = None,
    body: str | None = None,
    api_key_id: str | None = None,
    principal_id: str | None = None,
) -> dict:
    """The REST API proxy event (payload 1.0) the local API builds for this request,
    routed through the generated template's own API (local.events.build_event).
    api_key_id: the request came with an API key of this id; principal_id: an authorizer
    let it through as this principal."""
    return proxy_event(
        default_router(),
        path,
        method,
        query=query,
        headers=headers,
        body=body,
        api_key=ApiKeyUsed(api_key_id, f"value-of-{api_key_id}") if api_key_id else None,
        authorizer={"principalId": principal_id} if principal_id is not None else None,
    )


@functools.cache
def default_router() -> Router:
    return Router(json.loads(render(build_template())))


@pytest.fixture
def counter_table(template: dict, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """An in-process moto DynamoDB with the template's counter table."""
    with mock_aws():
        name = "route-counter-test"
        boto3.client("dynamodb").create_table(TableName=name, **table_definition(template))
        monkeypatch.setenv("TABLE_NAME", name)
        yield name


@pytest.fixture
def counter(counter_table: str):
    """The counter handler module, imported fresh against the moto table."""
    return load_module(ROOT / "handler" / "counter.py", "counter_under_test")


@pytest.fixture
def tables(template: dict, monkeypatch: pytest.MonkeyPatch) -> Iterator:
    """In-process moto with DynamoDB's atomic writes: the counter table and the series table
    (MaxRoutes' ledger too); its DynamoDB client."""
    make_dynamodb_atomic()  # DynamoDB's transactions and item writes are atomic: moto's not
    with mock_aws():
        client = boto3.client("dynamodb")
        client.create_table(TableName="route-counter-test", **table_definition(template))
        client.create_table(TableName="route-counter-series", **series_definition(template))
        monkeypatch.setenv("TABLE_NAME", "route-counter-test")
        monkeypatch.setenv("SERIES_TABLE", "route-counter-series")
        monkeypatch.setenv("LEDGER_TABLE", "route-counter-series")
        monkeypatch.setenv("STATS_ROUTE", "/_stats")
        yield client


@pytest.fixture
def start(tables, monkeypatch: pytest.MonkeyPatch):
    """A fresh container of the counter, with these parameters' environment variables."""

    def started(**environment):
        for name, value in environment.items():
            monkeypatch.setenv(name, value)
        return load_module(ROOT / "handler" / "counter.py", "counter_under_test")

    return started


def read_item(table: str, route: str) -> dict | None:
    return (
        boto3.client("dynamodb").get_item(TableName=table, Key={"route": {"S": route}}).get("Item")
    )


@contextmanager
def emulator_process(tls: tuple[str, str] | None = None) -> Iterator[Emulator]:
    """The emulator ./deploy.sh --local runs (local.emulator.Emulator: local/atomic_moto.py)
    on 127.0.0.1 and a free port; stopped, with its process group, whatever happens."""
    emulator = Emulator(tls=tls)
    try:
        emulator.wait_ready()
        yield emulator
    finally:
        emulator.stop()


@pytest.fixture(scope="session")
def moto_server() -> Iterator[str]:
    """The emulator over plain HTTP, for the whole session.

    It is moto_server's application with DynamoDB writes serialised as DynamoDB does
    (see local/atomic_moto.py): the emulator `./deploy.sh --local` runs.
    """
    with emulator_process() as emulator:
        yield emulator.endpoint


@dataclass(frozen=True)
class TlsEmulator:
    endpoint: str
    ca_bundle: str  # for AWS_CA_BUNDLE, or a client's verify=


@pytest.fixture(scope="session")
def tls_moto_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsEmulator]:
    """The same emulator over HTTPS, as AWS answers, with a self-signed certificate.

    S3's aws:SecureTransport is then true, as on AWS, so a bucket's TLS-only policy lets
    the deployer's uploads through (local/moto_fidelity.py evaluates it).
    """
    cert, key = write_self_signed_certificate(tmp_path_factory.mktemp("tls"))
    with emulator_process(tls=(str(cert), str(key))) as emulator:
        yield TlsEmulator(emulator.endpoint, str(cert))


def series_definition(template: dict) -> dict:
    """CreateTable arguments taken from the template's series table."""
    props = template["Resources"]["SeriesTable"]["Properties"]
    return {
        "AttributeDefinitions": props["AttributeDefinitions"],
        "KeySchema": props["KeySchema"],
        "BillingMode": props["BillingMode"],
    }


@dataclass
class StreamTables:
    counter: str
    series: str
    stream_arn: str


@pytest.fixture
def stream_tables(template: dict, monkeypatch: pytest.MonkeyPatch) -> Iterator[StreamTables]:
    """In-process moto, with the emulator's stream fixes (local/moto_fidelity.py): the counter
    table with the template's stream, and the series table."""
    with tables_with_stream(template, monkeypatch) as tables:
        yield tables


@contextmanager
def tables_with_stream(
    template: dict, monkeypatch: pytest.MonkeyPatch, view: str | None = None
) -> Iterator[StreamTables]:
    """stream_tables, with the stream's view the template's or `view`."""
    stream = template["Resources"]["CounterTable"]["Properties"]["StreamSpecification"]
    stream = stream["Fn::If"][1]  # with Analytics on (the default)
    if view is not None:
        stream = {**stream, "StreamViewType": view}
    moto_fidelity.apply()
    with mock_aws():
        client = boto3.client("dynamodb")
        created = client.create_table(
            TableName="route-counter-test",
            **table_definition(template),
            StreamSpecification={"StreamEnabled": True, **stream},
        )
        client.create_table(TableName="route-counter-series", **series_definition(template))
        monkeypatch.setenv("TABLE_NAME", "route-counter-test")
        monkeypatch.setenv("SERIES_TABLE", "route-counter-series")
        yield StreamTables(
            "route-counter-test",
            "route-counter-series",
            created["TableDescription"]["LatestStreamArn"],
        )


def stream_records(stream_arn: str) -> list[dict]:
    """Every record the (single-shard) stream holds, oldest first, as GetRecords sends them."""
    streams = boto3.client("dynamodbstreams")
    (shard,) = streams.describe_stream(StreamArn=stream_arn)["StreamDescription"]["Shards"]
    iterator = streams.get_shard_iterator(
        StreamArn=stream_arn, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
    )["ShardIterator"]
    records: list[dict] = []
    while True:
        page = streams.get_records(ShardIterator=iterator)
        if not page["Records"]:
            return records
        records += page["Records"]
        iterator = page["NextShardIterator"]


@pytest.fixture
def aggregator(stream_tables: StreamTables):
    """The aggregator handler module, imported fresh against the moto series table."""
    return load_module(ROOT / "handler" / "aggregator.py", "aggregator_under_test")


@pytest.fixture
def stats(counter_table: str, template: dict, monkeypatch: pytest.MonkeyPatch):
    """The stats handler module, imported fresh against the moto tables it reads when
    deployed: the counter table and the (empty) series table."""
    series = "route-counter-series"
    boto3.client("dynamodb").create_table(TableName=series, **series_definition(template))
    monkeypatch.setenv("SERIES_TABLE", series)
    return load_module(ROOT / "handler" / "stats.py", "stats_under_test")


@dataclass
class RunningLocalStack:
    """`python -m local` started as a user starts it, in its own process group."""

    url: str
    process: subprocess.Popen
    output: Path  # its stdout and stderr

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])

    def _emulator(self) -> tuple[int, int] | tuple[None, None]:
        """The port and pid of the emulator it started, as its banner shows them."""
        found = re.search(
            r"moto_server http://127.0.0.1:(\d+) \(pid (\d+)\)", self.output.read_text()
        )
        return (int(found.group(1)), int(found.group(2))) if found else (None, None)

    @property
    def emulator_port(self) -> int | None:
        return self._emulator()[0]

    @property
    def emulator_pid(self) -> int | None:
        return self._emulator()[1]

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()


def start_failure(tmp_dir: Path, *args: str) -> subprocess.CompletedProcess:
    """`python -m local *args` (its state in tmp_dir/state), expected to stop on its own."""
    return subprocess.run(
        [sys.executable, "-m", "local", "--state-dir", str(tmp_dir / "state"), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **FAKE_CREDENTIALS},
    )


@contextmanager
def local_stack(
    tmp_dir: Path,
    *args: str,
    env: dict | None = None,
    port: int | None = None,
    limits: dict[int, int] | None = None,
    wait: bool = True,
) -> Iterator[RunningLocalStack]:
    """Start `python -m local --port <free> *args`, wait until it serves, always stop it.

    limits: resource limits of the process ({resource.RLIMIT_FSIZE: bytes}: a full disk).
    wait=False: hand it over at once, while it starts.

    Its tables are saved in tmp_dir/state, not in the repository (a second stack started
    with the same tmp_dir finds them).

    On the way out whatever is left is killed: the local stack's own process group, and the
    emulator's (it runs in a group of its own, as it must survive Ctrl-C in the terminal).
    """
    # No port given: the stack binds a free one itself (--port 0) and its banner says which;
    # a port picked here and bound there later could be taken in between. (wait=False needs
    # the port before the banner: one picked here.)
    port = port or (free_port() if not wait else 0)
    if "--template" not in args and not any("AggregatorBatchingWindowSeconds" in a for a in args):
        # The default batches 30 s of hits (cheaper per hit on AWS); tests wait for 1 s.
        args = ("--param", "AggregatorBatchingWindowSeconds=1", *args)
    output = tmp_dir / f"local-{port or 'any'}-{uuid.uuid4().hex[:6]}.log"
    state = ["--state-dir", str(tmp_dir / "state")]
    with output.open("wb") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", "local", "--port", str(port), *state, *args],
            cwd=ROOT,
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env={**os.environ, **FAKE_CREDENTIALS, **(env or {})},
            preexec_fn=(lambda: set_limits(limits)) if limits else None,
        )
    stack = RunningLocalStack(f"http://127.0.0.1:{port}", process, output)
    emulator = None
    try:
        deadline = time.monotonic() + 60
        while wait and "Ctrl-C to stop" not in output.read_text():
            assert process.poll() is None, output.read_text()
            assert time.monotonic() < deadline, output.read_text()
            time.sleep(0.05)
        emulator = stack.emulator_pid
        if wait:
            stack.url = re.search(r"API: +(http://127\.0\.0\.1:\d+)/", output.read_text())[1]
            connect(stack.port, timeout=5).close()  # no request: no hit
        yield stack
    finally:
        emulator = emulator or stack.emulator_pid
        stack.stop()
        if emulator and _is_local_emulator(emulator):  # only if it is still that emulator
            with contextlib.suppress(ProcessLookupError):
                os.killpg(emulator, signal.SIGKILL)


def set_limits(limits: dict[int, int]) -> None:
    """Lower resource limits, soft and hard (in a child, before it runs Python)."""
    for which, value in limits.items():
        resource.setrlimit(which, (value, value))


def emulator_client(stack: RunningLocalStack, service: str):
    """A boto3 client of the emulator the stack started (its banner names the port)."""
    return boto3.client(
        service,
        endpoint_url=f"http://127.0.0.1:{stack.emulator_port}",
        region_name=FAKE_CREDENTIALS["AWS_REGION"],
        aws_access_key_id=FAKE_CREDENTIALS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=FAKE_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
    )


def counter_table_name(stack: RunningLocalStack, stack_name: str = "route-counter") -> str:
    found = emulator_client(stack, "cloudformation").describe_stack_resources(
        StackName=stack_name, LogicalResourceId="CounterTable"
    )["StackResources"]
    return found[0]["PhysicalResourceId"]


def seed_routes(stack: RunningLocalStack, counts: dict[str, int]) -> None:
    """Write routes straight into the stack's table as the counter leaves them
    (thousands of HTTP hits in a row take the local stack minutes on a 2-core machine)."""
    put_routes(emulator_client(stack, "dynamodb"), counter_table_name(stack), counts)


def saved_routes(tmp_dir: Path, counts: dict[str, int]) -> None:
    """Routes in the snapshot local_stack(tmp_dir) restores when it starts, as a table saved
    by an earlier run comes back: restored before the stream mappings start, so they are no
    new hits for the aggregator (seed_routes' writes are, through the table's stream)."""
    from local.state import StackState

    items = [route_item(route, count) for route, count in counts.items()]
    StackState(tmp_dir / "state", "route-counter").save({"CounterTable": items})


def route_item(route: str, count: int) -> dict:
    return {
        "route": {"S": route},
        "count": {"N": str(count)},
        "firstSeen": {"S": "2026-01-01T00:00:00Z"},
        "lastSeen": {"S": "2026-01-02T00:00:00Z"},
    }


def put_routes(client, table: str, counts: dict[str, int]) -> None:
    """Route items as the counter leaves them, 25 per BatchWriteItem, retried until stored."""
    items = [route_item(route, count) for route, count in counts.items()]
    for i in range(0, len(items), 25):
        batch = {table: [{"PutRequest": {"Item": item}} for item in items[i : i + 25]]}
        while batch:
            batch = client.batch_write_item(RequestItems=batch)["UnprocessedItems"]


def stored_counts(stack: RunningLocalStack) -> dict[str, int]:
    """Every route's count as the table holds it, read straight from the emulator."""
    pages = (
        emulator_client(stack, "dynamodb")
        .get_paginator("scan")
        .paginate(TableName=counter_table_name(stack))
    )
    return {i["route"]["S"]: int(i["count"]["N"]) for page in pages for i in page["Items"]}


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie is gone for good but shows until its parent reaps it
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(") ", 1)[1][0] != "Z"
    except FileNotFoundError:
        return False


def gone_within(pid: int, seconds: float) -> bool:
    """Whether the process exits within `seconds` (checked every 50 ms)."""
    deadline = time.monotonic() + seconds
    while alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def connect(port: int, timeout: float) -> socket.socket:
    """A connection to what listens on 127.0.0.1:port, else ConnectionRefusedError. A
    connect to a port nobody listens on can be given that very port as its own (the kernel
    picks the source port from the range free_port's come from) and "succeed", connected to
    itself (TCP simultaneous open): it reads back what it sends, and holds the port a
    server is about to bind. That is no listener: closed, and refused here."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    if sock.getsockname() == sock.getpeername():
        sock.close()
        raise ConnectionRefusedError(f"127.0.0.1:{port} connected to itself: nothing listens")
    return sock


def port_is_free(port: int) -> bool:
    try:
        connect(port, timeout=5).close()
    except ConnectionRefusedError:
        return True
    return False


def _is_local_emulator(pid: int) -> bool:
    try:
        return b"atomic_moto" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
