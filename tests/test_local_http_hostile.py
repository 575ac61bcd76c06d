"""The local API under hostile HTTP, over raw sockets on 127.0.0.1.

Each request below is one that a fuzzer, a proxy or a careless client sends. The stack
must answer it as API Gateway would: the path as sent to the function, or a JSON 4xx,
with nothing counted and the next request on a new connection served normally.
"""

import json
import re
import socket
import uuid
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import quote

import pytest

from tests.conftest import local_stack


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    with local_stack(tmp_path_factory.mktemp("local-http")) as running:
        yield running


def exchange(port: int, data: bytes, timeout: float = 10) -> tuple[int, dict, bytes]:
    """Send raw bytes, read the answer until the server closes the connection."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(data)
        received = b""
        while chunk := sock.recv(65536):  # a server that never answers fails on the timeout
            received += chunk
    head, _, body = received.partition(b"\r\n\r\n")
    lines = head.decode("utf-8").split("\r\n")
    status = int(lines[0].split(" ")[1])
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    return status, headers, body


def get(port: int, target: bytes, method: bytes = b"GET") -> tuple[int, dict, bytes]:
    return exchange(
        port, method + b" " + target + b" HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )


def count(port: int, route: str) -> int:
    """Count one more hit on route (sent as raw UTF-8) and return its count."""
    status, _, body = get(port, route.encode("utf-8"))
    assert status == 200, body
    answer = json.loads(body)
    # The route rule (README): what a URI path cannot hold raw is percent-encoded, UTF-8.
    assert answer["route"] == quote(route, safe="/!$&'()*+,;=:@")
    return answer["count"]


def assert_refused(answer: tuple[int, dict, bytes], status: int = 400) -> None:
    """A JSON error like API Gateway's, and the connection closed (exchange read to EOF)."""
    got, headers, body = answer
    assert got == status, body
    assert headers["content-type"] == "application/json"
    assert set(json.loads(body)) == {"message"}


def unique(prefix: str) -> str:
    return f"/{prefix}-{uuid.uuid4().hex[:12]}"


def test_raw_utf8_in_the_path_is_counted_as_the_characters_sent(stack):
    cafe, dots = unique("café"), unique("wait…")

    assert count(stack.port, cafe) == 1  # "/caf%C3%A9-…", not "/cafÃ©" ("/caf%C3%83%C2%A9-…")
    assert count(stack.port, dots) == 1  # not 400 "control characters" (U+2026 as Latin-1)
    assert count(stack.port, cafe) == 2


def test_invalid_utf8_in_the_path_is_refused_and_not_counted(stack):
    route = unique("inv")

    assert_refused(get(stack.port, route.encode() + b"\xff\xfe"))
    assert count(stack.port, route + "ÿþ") == 1  # what Latin-1 decoding counted before


def test_an_absolute_form_target_is_counted_by_its_path(stack):
    route = unique("absform")
    target = f"http://127.0.0.1:{stack.port}{route}".encode()

    status, _, body = get(stack.port, target)

    assert status == 200, body
    assert json.loads(body)["route"] == route  # not "/http:/127.0.0.1:P/absform"
    assert count(stack.port, route) == 2


def test_a_target_without_a_leading_slash_is_refused_and_not_counted(stack):
    route = unique("noslash")

    assert_refused(get(stack.port, route[1:].encode()))
    assert count(stack.port, route) == 1


def test_an_asterisk_target_is_refused_and_not_counted(stack):
    before = count(stack.port, "/*")

    assert_refused(get(stack.port, b"*"))
    assert count(stack.port, "/*") == before + 1


BAD_FRAMING = {
    "content-length-abc": b"Content-Length: abc\r\n\r\n",
    "content-length-negative": b"Content-Length: -1\r\n\r\n",
    "bad-chunk-size": b"Transfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n",
    "chunk-size-overflow": b"Transfer-Encoding: chunked\r\n\r\n-5\r\nhello\r\n0\r\n\r\n",
}


@pytest.mark.parametrize("framing", BAD_FRAMING.values(), ids=BAD_FRAMING)
def test_bad_body_framing_is_refused_and_not_counted(stack, framing):
    route = unique("framing")
    request = f"POST {route} HTTP/1.1\r\nHost: 127.0.0.1\r\n".encode() + framing

    assert_refused(exchange(stack.port, request))
    assert count(stack.port, route) == 1


def test_a_request_smuggled_behind_conflicting_framing_never_runs(stack):
    outer, hidden = unique("outer"), unique("hidden")
    smuggled = f"GET {hidden} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode()
    body = b"0\r\n\r\n" + smuggled
    request = (
        f"POST {outer} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {len(body)}\r\n"
        "Transfer-Encoding: chunked\r\n\r\n"
    ).encode() + body

    assert_refused(exchange(stack.port, request))
    assert count(stack.port, outer) == 1
    assert count(stack.port, hidden) == 1


@pytest.mark.parametrize("method", [b"TRACE", b"PROPFIND", b"get", b"CONNECT"])
def test_a_method_api_gateway_does_not_define_gets_its_json_403(stack, method):
    route = unique("method")

    status, headers, body = get(stack.port, route.encode(), method)

    assert status == 403
    assert headers["content-type"] == "application/json"
    assert json.loads(body) == {"message": "Missing Authentication Token"}
    assert count(stack.port, route) == 1


def test_terminal_lines_carry_no_raw_control_bytes(stack):
    route = unique("esc")
    csi = route + "\u009b2J"  # C1 "control sequence introducer", sent as valid UTF-8

    assert_refused(get(stack.port, route.encode() + b"\x1b[2J\x00"))
    status, _, _ = get(stack.port, csi.encode("utf-8"))

    assert status == 400  # the counter refuses control characters itself
    log = stack.output.read_bytes().decode("utf-8")
    assert f"GET {route}\\x9b2J 400" in log
    assert not re.search("[\x00\x1b\x9b]", log)


def test_json_log_lines_of_concurrent_requests_stay_whole(stack):
    route = unique("lines")

    def client(_: int) -> None:
        for _ in range(25):
            count(stack.port, route)

    with ThreadPoolExecutor(16) as pool:
        list(pool.map(client, range(16)))

    lines = [line for line in stack.output.read_text().splitlines() if route in line]
    logged = [json.loads(line) for line in lines if not line.startswith("GET ")]
    assert len({entry["requestId"] for entry in logged if entry["status"] == 200}) == 400
    assert len([line for line in lines if line.startswith(f"GET {route} 200 ")]) == 400


def test_idle_half_open_connections_do_not_delay_a_request(stack):
    """300 connections each holding half a request (a slowloris) leave room for others."""
    held = []
    try:
        for _ in range(300):
            sock = socket.create_connection(("127.0.0.1", stack.port), timeout=10)
            sock.sendall(b"GET /half HTTP/1.1\r\nHost: 127")
            held.append(sock)
        with socket.create_connection(("127.0.0.1", stack.port), timeout=10) as sock:
            # The failure bound: no answer within it raises. OPTIONS runs the counter but
            # calls no DynamoDB, so a slow emulator on a loaded machine cannot trip it.
            sock.settimeout(1.0)
            sock.sendall(b"OPTIONS /any HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            assert sock.recv(12) == b"HTTP/1.1 204"
    finally:
        for sock in held:
            sock.close()
