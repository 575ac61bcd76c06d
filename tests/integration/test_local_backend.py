"""`./deploy.sh --local --param Backend=...`: the counter in front of a real backend, end to
end over real sockets (client -> local API -> counter -> backend and back)."""

import base64
import http.client
import json
import textwrap
import uuid

import pytest

from tests.backend_server import BINARY, backend_server, refused_url
from tests.conftest import in_one_period, local_stack, stored_counts
from tests.integration.test_local_api_gateway import request


@pytest.fixture(scope="module")
def backend():
    with backend_server() as running:
        yield running


@pytest.fixture(scope="module")
def stack(backend, tmp_path_factory):
    params = ["--param", f"Backend={backend.url}/base", "--param", "BackendTimeoutSeconds=1"]
    with local_stack(tmp_path_factory.mktemp("backend"), *params) as running:
        yield running


def test_the_banner_names_the_backend(stack, backend):
    assert f"backend:   {backend.url}/base" in stack.output.read_text()


def test_the_banners_first_request_shows_it_is_forwarded_and_counted(stack, backend):
    """With a Backend, the banner's `try:` request is forwarded (not a plain counter's
    /hello): asked with X-Route-Count, the answer is the backend's and carries the count;
    the private stats' curl line follows."""
    banner = stack.output.read_text().split("Ctrl-C to stop.")[0]
    suggested = f"curl -i -H 'X-Route-Count: 1' {stack.url}/hello"
    assert f"  try:       {suggested}  (forwarded to the backend and counted: " in banner
    assert f"curl {stack.url}/hello\n" not in banner
    assert f"{stack.url}/_stats\n" in banner and "try:       curl -u " in banner
    before = len(backend.requests)
    status, headers, body = request(stack.url + "/hello", headers=[("X-Route-Count", "1")])

    assert status == 404 and json.loads(body) == {"error": "no such route"}  # the backend's
    assert backend.paths()[before:] == ["/base/hello"]
    assert int(headers["X-Route-Count"]) >= 1


def test_binary_bodies_both_ways_are_intact(stack, backend):
    status, headers, body = request(
        stack.url + "/binary",
        "PUT",
        BINARY,
        [("Content-Type", "application/octet-stream"), ("Accept", "*/*")],
    )

    assert status == 200
    assert base64.b64decode(backend.requests[-1]["body"]) == BINARY
    assert headers["Content-Type"] == "application/octet-stream"
    assert body == BINARY


def test_repeated_headers_and_cookies_reach_both_sides(stack, backend):
    status, headers, body = request(
        stack.url + "/cookies?tag=a&tag=b", headers=[("X-Tag", "one"), ("Cookie", "c=3")]
    )

    assert status == 200 and body == b"ok"
    assert headers.get_all("Set-Cookie") == ["a=1; Path=/", "b=2; Path=/; HttpOnly"]
    assert headers.get_all("X-Multi") == ["one", "two"]
    seen = backend.requests[-1]
    assert seen["path"] == "/base/cookies?tag=a&tag=b"
    assert ("Cookie", "c=3") in [tuple(h) for h in seen["headers"]]


def test_a_forwarded_answer_has_one_date_the_backends_remapped_as_on_aws(stack):
    """The local API writes its own Date; the backend's (forwarded by the counter) reaches
    the client as x-amzn-Remapped-Date, as API Gateway does: never two Date headers."""
    status, headers, body = request(stack.url + "/cookies")

    assert status == 200 and body == b"ok"
    assert len(headers.get_all("Date")) == 1
    assert len(headers.get_all("x-amzn-Remapped-Date")) == 1
    assert headers["x-amzn-Remapped-Server"].startswith("BaseHTTP")  # http.server's
    assert headers.get_all("Server") is None


def test_head_and_bodiless_answers(stack):
    connection = http.client.HTTPConnection("127.0.0.1", stack.port, timeout=30)
    try:
        connection.request("HEAD", "/binary")
        head = connection.getresponse()
        head.read()
        answers = []
        for path in ("/status/204", "/status/304"):
            connection.request("GET", path)
            answer = connection.getresponse()
            answers.append((answer.status, answer.read(), answer.getheader("ETag")))
    finally:
        connection.close()

    assert head.status == 200
    assert answers == [(204, b"", '"v1"'), (304, b"", '"v1"')]


def test_a_large_answer_passes_and_one_lambda_cannot_carry_is_a_clear_502(stack):
    status, _, body = request(stack.url + "/large?bytes=5000000")
    too_large = request(stack.url + "/large?bytes=4800000&type=application/octet-stream")

    assert status == 200 and body == b"a" * 5_000_000
    assert too_large[0] == 502
    assert "a Lambda function can return" in json.loads(too_large[2])["error"]


def test_a_backend_that_stalls_is_a_504_and_one_that_dies_mid_answer_a_502(stack):
    stalled = request(stack.url + "/stall")
    died = request(stack.url + "/die")

    assert stalled[0] == 504
    assert json.loads(stalled[2])["error"] == "the backend did not answer within 1 s"
    assert died[0] == 502
    assert json.loads(died[2])["requestId"]


def test_hits_are_counted_with_the_backends_status(stack):
    route = "/status/204"
    request(stack.url + route)

    assert stored_counts(stack)[route] >= 1


def test_a_refusing_backend_is_a_502_and_the_hit_still_counted(tmp_path):
    with local_stack(tmp_path, "--param", f"Backend={refused_url()}") as running:
        status, _, body = request(running.url + "/anything")
        counts = stored_counts(running)

    assert status == 502
    error = json.loads(body)
    assert error["error"] == "the backend refused the connection or could not be reached"
    assert error["outcome"] == "counted"
    assert counts == {"/anything": 1}


DOWNSTREAM = """\
import json

CALLS = {calls!r}


def handler(event, context):
    with open(CALLS, "a") as calls:
        calls.write(event["path"] + "\\n")
    if event["path"] == "/raise":
        raise RuntimeError("the downstream function broke")
    return {{"statusCode": 200, "multiValueHeaders": {{"Set-Cookie": ["a=1", "b=2"]}},
            "body": json.dumps({{"path": event["path"], "method": event["httpMethod"]}})}}
"""


@pytest.fixture(scope="module")
def function_stack(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("function-backend")
    calls = tmp / "calls.txt"
    (tmp / "downstream.py").write_text(textwrap.dedent(DOWNSTREAM.format(calls=str(calls))))
    params = ["--param", f"Backend=file:{tmp / 'downstream.py'}", "--param", "RateLimit=2"]
    with local_stack(tmp, *params) as running:
        running.calls = calls
        yield running


def test_a_local_python_file_is_the_lambda_backend(function_stack):
    status, headers, body = request(function_stack.url + "/users/7", "POST", b"{}")

    assert status == 200
    assert json.loads(body) == {"path": "/users/7", "method": "POST"}
    assert headers.get_all("Set-Cookie") == ["a=1", "b=2"]
    assert "(as arn:aws:lambda:" in function_stack.output.read_text()


def test_a_downstream_function_that_raises_is_a_502_json(function_stack):
    status, _, body = request(function_stack.url + "/raise")

    assert status == 502
    assert json.loads(body)["error"] == "the backend function failed"
    assert "the downstream function broke" in function_stack.output.read_text()


def test_the_count_header_and_a_rate_limited_request_that_never_reaches_the_function(
    function_stack,
):
    def three_requests() -> tuple[str, list]:
        route = f"/limited/{uuid.uuid4().hex[:8]}"  # a window of its own on a run made again
        asked = [request(function_stack.url + route, headers=[("X-Route-Count", "1")])]
        return route, asked + [request(function_stack.url + route) for _ in range(2)]

    # RateLimit=2 in the default window of 60 s, aligned to the epoch: the three requests in
    # one window (a minute's end between them would serve the third).
    route, asked = in_one_period(lambda t: t // 60, three_requests)

    assert [a[0] for a in asked] == [200, 200, 429]
    assert asked[0][1]["X-Route-Count"] == "1"
    assert asked[1][1]["X-Route-Count"] is None
    assert asked[2][1]["RateLimit-Remaining"] == "0"
    assert function_stack.calls.read_text().splitlines().count(route) == 2


def test_without_binary_media_types_binary_bodies_are_mangled_as_on_aws(backend, tmp_path):
    """BinaryMediaTypes empty: what AWS would corrupt, the local stack corrupts too."""
    params = ["--param", f"Backend={backend.url}", "--param", "BinaryMediaTypes="]
    with local_stack(tmp_path, *params) as running:
        upload = request(
            running.url + "/echo", "PUT", BINARY, [("Content-Type", "application/octet-stream")]
        )
        download = request(running.url + "/binary", headers=[("Accept", "*/*")])

    assert upload[0] == 200
    received = base64.b64decode(json.loads(upload[2])["body"])
    assert received == BINARY.decode("utf-8", errors="replace").encode()
    assert received != BINARY
    assert download[2] == base64.b64encode(BINARY)  # the base64 text, not the bytes
