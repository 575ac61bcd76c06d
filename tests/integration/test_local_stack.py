"""`python -m local`: the whole stack on this machine, used over real sockets as a user would."""

import http.client
import json
import signal
import socket
import subprocess
import threading
import time
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest

from local.events import ApiInfo
from local.gateway import Gateway
from local.router import Router
from local.server import LocalApiServer
from tests.conftest import BIN, alive, local_stack, port_is_free, start_failure


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    with local_stack(tmp_path_factory.mktemp("local")) as running:
        yield running


def get(url: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(url, timeout=20) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_root_counts_one_then_two(stack):
    first = get(stack.url + "/")
    second = get(stack.url + "/")

    assert first[0] == second[0] == 200
    assert (first[1]["route"], first[1]["count"]) == ("/", 1)
    assert (second[1]["route"], second[1]["count"]) == ("/", 2)


def test_nested_route_counts_one_then_two(stack):
    route = f"/hello/{uuid.uuid4().hex}"

    first = get(stack.url + route)
    second = get(stack.url + route)

    assert first[0] == second[0] == 200
    assert (first[1]["route"], first[1]["count"]) == (route, 1)
    assert (second[1]["route"], second[1]["count"]) == (route, 2)
    assert first[1]["firstSeen"] == second[1]["firstSeen"]


def test_concurrent_clients_lose_no_hit(stack):
    route = f"/busy/{uuid.uuid4().hex}"

    def client(_: int) -> list[int]:
        return [get(stack.url + route)[1]["count"] for _ in range(40)]

    with ThreadPoolExecutor(16) as pool:
        seen = [count for counts in pool.map(client, range(16)) for count in counts]

    assert sorted(seen) == list(range(1, 641))
    assert get(stack.url + route)[1]["count"] == 641


def test_request_lines_show_in_the_terminal(stack):
    route = f"/logged/{uuid.uuid4().hex}"
    get(stack.url + route + "?x=1")

    deadline = time.monotonic() + 5
    while f"GET {route}?x=1 200 " not in stack.output.read_text():
        assert time.monotonic() < deadline, stack.output.read_text()
        time.sleep(0.05)
    log = stack.output.read_text()
    assert "curl http://127.0.0.1:" in log
    assert f'"route": "{route}"' in log  # the handler's own JSON log line


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
def test_signal_stops_everything(tmp_path, signum):
    with local_stack(tmp_path) as running:
        emulator = running.emulator_pid
        emulator_port = running.emulator_port
        assert get(running.url + "/bye")[0] == 200

        running.process.send_signal(signum)
        code = running.process.wait(timeout=15)

        assert code == 0
        assert "Stopped" in running.output.read_text()
        assert not alive(emulator)
        assert port_is_free(running.port)
        assert port_is_free(emulator_port)
        assert subprocess.run(["pgrep", "-g", str(emulator)], capture_output=True).stdout == b""


def test_an_emulator_named_by_aws_endpoint_url_is_used_redeployed_and_left_running(
    tmp_path, moto_server
):
    env = {"AWS_ENDPOINT_URL": moto_server}
    stack_name = f"local-{uuid.uuid4().hex[:8]}"
    route = f"/kept/{uuid.uuid4().hex}"

    with local_stack(tmp_path, "--stack-name", stack_name, env=env) as first:
        first_count = get(first.url + route)[1]["count"]
        first.process.send_signal(signal.SIGTERM)
        assert first.process.wait(timeout=15) == 0
    with local_stack(tmp_path, "--stack-name", stack_name, env=env) as second:
        second_count = get(second.url + route)[1]["count"]
        banner = second.output.read_text()

    assert (first_count, second_count) == (1, 2)  # same table: the stack was not replaced
    assert first.emulator_pid is None
    assert f"{stack_name} (unchanged) on {moto_server}" in banner
    described = subprocess.run(
        [
            str(BIN / "aws"),
            "cloudformation",
            "describe-stacks",
            "--stack-name",
            stack_name,
            "--endpoint-url",
            moto_server,
            "--query",
            "Stacks[0].StackStatus",
            "--output",
            "text",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert described.stdout.strip() == "CREATE_COMPLETE"


def test_a_new_stats_path_is_served_by_the_next_start_on_the_same_stack(tmp_path, moto_server):
    """The local stack routes from the template with the values given: a changed StatsPath
    takes effect on the next start, with no stage to redeploy."""
    env = {"AWS_ENDPOINT_URL": moto_server}
    stack_name = f"local-{uuid.uuid4().hex[:8]}"

    with local_stack(tmp_path, "--stack-name", stack_name, env=env) as first:
        assert "routes" in get(first.url + "/_stats")[1]  # the stats endpoint, not counted
    with local_stack(
        tmp_path, "--stack-name", stack_name, "--param", "StatsPath=s2", env=env
    ) as second:
        moved = get(second.url + "/s2")
        old = get(second.url + "/_stats")
        banner = second.output.read_text()

    assert f"{stack_name} (update) on {moto_server}" in banner
    assert moved[0] == 200 and "routes" in moved[1]
    assert old == (200, {**old[1], "route": "/_stats", "count": 1})  # an ordinary route now


@pytest.mark.parametrize(
    ("param", "says"),
    [
        ("BillingMode=FREE", "must be one of ['PAY_PER_REQUEST', 'PROVISIONED']"),
        ("FunctionMemorySize=64", "must be a whole number from 128 to 10240"),
        ("StageName=my-stage", "letters, digits and underscores"),
        ("Colour=blue", "unknown template parameter Colour"),
    ],
)
def test_a_parameter_cloudformation_would_refuse_stops_the_start(tmp_path, param, says):
    result = start_failure(tmp_path, "--port", "0", "--param", param)

    assert result.returncode == 2  # bad usage, as ./deploy.sh says it
    assert says in result.stderr
    assert "Traceback" not in result.stderr


def test_a_busy_port_is_reported_before_anything_starts(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]

        result = start_failure(tmp_path, "--port", str(port))

    assert result.returncode == 1
    assert f"port {port} on 127.0.0.1 is in use" in result.stderr
    assert "moto_server" not in result.stdout


def test_answers_on_a_kept_alive_connection_go_out_at_once(template):
    """The server sends with TCP_NODELAY: a browser or `curl url url` reusing a connection
    otherwise waits for its own delayed ACK (40 ms on Linux) before each answer's body."""
    gateway = Gateway(Router(template), {}, ApiInfo())
    server = LocalApiServer(("127.0.0.1", 0), gateway, log=len)
    options = []
    serve = server.finish_request

    def finish_request(request, address):
        try:
            serve(request, address)
        finally:
            options.append(request.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))

    server.finish_request = finish_request
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        connection = http.client.HTTPConnection("127.0.0.1", server.server_address[1], timeout=5)
        for _ in range(2):
            connection.request("GET", "/no/such/function")
            connection.getresponse().read()
        connection.close()
        deadline = time.monotonic() + 5
        while not options and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        server.shutdown()
        server.server_close()
        thread.join()

    assert options and all(options)
