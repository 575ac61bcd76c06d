"""The counter in front of an HTTP backend: a real server on 127.0.0.1, moto for the table."""

import base64
import json

import pytest
from botocore.exceptions import EndpointConnectionError

from local.events import ApiInfo, build_event
from tests.backend_server import BINARY, backend_server, refused_url
from tests.conftest import (
    ROOT,
    YEAR_END,
    default_router,
    lambda_context,
    load_module,
    on_send,
    read_item,
    stop_wall_clock,
    write_self_signed_certificate,
)

API = ApiInfo(api_id="abc123", binary_media_types=("*/*",))
HOST = "abc123.execute-api.us-east-1.amazonaws.com"


def event(path="/", method="GET", headers=(), body=b""):
    """The event API Gateway builds for this request (BinaryMediaTypes */*)."""
    target_path = path.partition("?")[0]
    return build_event(
        method=method,
        target=path,
        headers=[("Host", HOST), ("Accept", "*/*"), *headers],
        body=body,
        match=default_router().match(method, target_path),
        api=API,
        source_ip="203.0.113.7",
    )


@pytest.fixture
def backend():
    with backend_server() as running:
        yield running


@pytest.fixture
def front(counter_table, backend, monkeypatch):
    """Load the counter with the given settings, in front of the backend."""

    def load(url=None, **settings):
        monkeypatch.setenv("BACKEND", url or backend.url + "/base")
        monkeypatch.setenv("BACKEND_TIMEOUT_SECONDS", "1")
        for name, value in settings.items():
            monkeypatch.setenv(name, value)
        return load_module(ROOT / "handler" / "counter.py", "counter_with_backend")

    return load


def call(counter, evt):
    return counter.handler(evt, lambda_context())


def body_of(result):
    raw = result["body"]
    return base64.b64decode(raw) if result.get("isBase64Encoded") else raw.encode()


def headers_of(result):
    merged = {k: list(v) for k, v in (result.get("multiValueHeaders") or {}).items()}
    for name, value in (result.get("headers") or {}).items():
        merged.setdefault(name, []).append(value)
    return merged


def test_forwards_method_path_query_headers_and_body(front, backend):
    counter = front()
    headers = [
        ("X-Tag", "one"),
        ("X-Tag", "two"),
        ("Connection", "keep-alive, X-Secret-Hop"),
        ("X-Secret-Hop", "not forwarded"),
        ("Keep-Alive", "timeout=5"),
        ("Proxy-Authorization", "Basic eA=="),
        ("TE", "trailers"),
        ("Content-Type", "application/json"),
    ]

    result = call(
        counter, event("/echo/a%20b?tag=x&tag=y&q=caf%C3%A9", "POST", headers, b'{"a":1}')
    )

    assert result["statusCode"] == 200
    seen = json.loads(body_of(result))
    assert seen["method"] == "POST"
    assert seen["path"] == "/base/echo/a%20b?tag=x&tag=y&q=caf%C3%A9"
    names = [name.lower() for name, _ in seen["headers"]]
    sent = dict((name.lower(), value) for name, value in seen["headers"])
    assert [v for n, v in seen["headers"] if n == "X-Tag"] == ["one", "two"]
    for hop in ("connection", "keep-alive", "x-secret-hop", "proxy-authorization", "te"):
        assert hop not in names, hop
    assert sent["host"] == backend.url.removeprefix("http://")
    assert sent["x-forwarded-for"] == "203.0.113.7"
    assert sent["x-forwarded-host"] == HOST
    assert sent["x-forwarded-proto"] == "http"  # as the (local) gateway said
    assert base64.b64decode(seen["body"]) == b'{"a":1}'


def test_binary_body_both_ways_is_intact(front, backend):
    counter = front()
    evt = event("/binary", "PUT", [("Content-Type", "application/octet-stream")], BINARY)
    assert evt["isBase64Encoded"] is True

    result = call(counter, evt)

    assert base64.b64decode(backend.requests[-1]["body"]) == BINARY
    assert result["isBase64Encoded"] is True
    assert body_of(result) == BINARY
    assert headers_of(result)["Content-Type"] == ["application/octet-stream"]


def test_repeated_answer_headers_and_cookies_are_kept_and_hop_headers_dropped(front):
    result = call(front(), event("/cookies"))

    headers = headers_of(result)
    assert headers["Set-Cookie"] == ["a=1; Path=/", "b=2; Path=/; HttpOnly"]
    assert headers["X-Multi"] == ["one", "two"]
    assert "Connection" not in headers and "X-Hop" not in headers
    assert "Content-Length" not in headers  # API Gateway sets its own
    assert body_of(result) == b"ok"


@pytest.mark.parametrize(("path", "status"), [("/status/204", 204), ("/status/304", 304)])
def test_bodiless_answers_pass_through(front, path, status):
    result = call(front(), event(path))

    assert result["statusCode"] == status
    assert result["body"] == ""
    assert headers_of(result)["ETag"] == ['"v1"']


def test_head_gets_the_headers_and_no_body(front, backend):
    result = call(front(), event("/binary", "HEAD"))

    assert backend.requests[-1]["method"] == "HEAD"
    assert result["statusCode"] == 200
    assert result["body"] == ""


def test_redirects_are_passed_through_not_followed(front, backend):
    result = call(front(), event("/redirect"))

    assert result["statusCode"] == 302
    assert headers_of(result)["Location"] == ["/elsewhere"]
    assert backend.paths() == ["/base/redirect"]


def test_kept_alive_connection_is_reused_across_invocations(front, backend):
    counter = front()
    for _ in range(3):
        assert call(counter, event("/echo"))["statusCode"] == 200

    assert len(backend.connections) == 1


def test_a_connection_the_backend_closed_while_idle_is_replaced_and_nothing_sent_twice(
    front, backend
):
    counter = front()
    assert call(counter, event("/close"))["statusCode"] == 200  # the backend closes after it

    result = call(counter, event("/echo"))

    assert result["statusCode"] == 200
    assert backend.paths() == ["/base/close", "/base/echo"]
    assert len(backend.connections) == 2


def test_answer_within_the_limit_passes_and_larger_is_a_clear_502(front, counter_table):
    counter = front()
    text = call(counter, event("/large?bytes=5000000"))
    # 4.8 MB of binary is 6.4 MB once base64-encoded: more than Lambda can return.
    binary = call(counter, event("/large?bytes=4800000&type=application/octet-stream"))

    assert text["statusCode"] == 200 and len(body_of(text)) == 5_000_000
    assert binary["statusCode"] == 502
    error = json.loads(binary["body"])
    assert "larger than the 6291456 bytes a Lambda function can return" in error["error"]
    assert error["requestId"]
    assert read_item(counter_table, "/large")["count"] == {"N": "2"}


def test_an_https_backend_is_reached_over_verified_tls(
    counter_table, tmp_path, monkeypatch, capsys
):
    cert, key = write_self_signed_certificate(tmp_path)
    with backend_server(tls=(str(cert), str(key))) as tls_backend:
        monkeypatch.setenv("BACKEND", tls_backend.url)
        untrusted = call(load_module(ROOT / "handler" / "counter.py", "https_untrusted"), event())
        refusal = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
        monkeypatch.setenv("SSL_CERT_FILE", str(cert))  # the system's CAs, here our own
        trusted = call(load_module(ROOT / "handler" / "counter.py", "https_trusted"), event())

    assert untrusted["statusCode"] == 502
    assert "CERTIFICATE_VERIFY_FAILED" in refusal["detail"]
    assert trusted["statusCode"] == 200
    assert tls_backend.paths() == ["/"]  # the untrusted one never sent its request


def test_refused_connection_is_a_502_and_the_hit_counted_as_5xx(front, counter_table, capsys):
    counter = front(refused_url())

    result = call(counter, event("/x"))

    assert result["statusCode"] == 502
    body = json.loads(result["body"])
    assert body["error"] == "the backend refused the connection or could not be reached"
    assert body["outcome"] == "counted" and body["requestId"]
    item = read_item(counter_table, "/x")
    assert item["s5xx"] == {"N": "1"} and item["lastStatus"] == {"N": "502"}
    line = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert line["level"] == "ERROR" and line["status"] == 502


def test_a_stalled_backend_is_a_504(front, backend):
    result = call(front(), event("/stall"))

    assert result["statusCode"] == 504
    assert json.loads(result["body"])["error"] == "the backend did not answer within 1 s"
    assert backend.paths() == ["/base/stall"]  # sent once, never again


def test_a_backend_that_dies_mid_answer_is_a_502(front):
    result = call(front(), event("/die"))

    assert result["statusCode"] == 502
    assert "before its whole answer" in json.loads(result["body"])["error"]


def test_monitor_records_status_class_and_latency_in_the_one_write(front, counter_table):
    counter = front()
    call(counter, event("/status/204"))
    call(counter, event("/nothing-here"))  # the backend's 404

    ok, missing = read_item(counter_table, "/status/204"), read_item(counter_table, "/nothing-here")
    assert ok["count"] == ok["s2xx"] == {"N": "1"}
    assert ok["lastStatus"] == {"N": "204"}
    assert int(ok["latencyMsTotal"]["N"]) == int(ok["lastLatencyMs"]["N"]) >= 0
    assert missing["s4xx"] == {"N": "1"} and "s2xx" not in missing


def fail_writes(counter):
    def unreachable(**_):
        raise EndpointConnectionError(endpoint_url="https://dynamodb.us-east-1.amazonaws.com")

    return on_send(counter.dynamodb, "UpdateItem", unreachable)


def test_monitor_serves_the_answer_when_the_count_fails_and_logs_it(front, backend, capsys):
    counter = front()
    with fail_writes(counter):
        result = call(counter, event("/echo"))

    assert result["statusCode"] == 200
    line = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert line["counted"] is False
    assert line["level"] == "ERROR"
    assert backend.paths() == ["/base/echo"]


def test_meter_refuses_with_503_and_never_calls_the_backend_when_the_count_fails(front, backend):
    counter = front(FAILURE_POLICY="meter")
    with fail_writes(counter):
        result = call(counter, event("/echo"))

    assert result["statusCode"] == 503
    assert json.loads(result["body"])["outcome"] == "not counted"
    assert backend.requests == []


def test_meter_counts_then_serves(front, counter_table):
    result = call(front(FAILURE_POLICY="meter"), event("/echo"))

    assert result["statusCode"] == 200
    assert read_item(counter_table, "/echo")["count"] == {"N": "1"}


def test_a_rate_limited_request_never_reaches_the_backend(front, backend, monkeypatch):
    counter = front(RATE_LIMIT="1")
    # RateLimit's window (60 s, from the epoch) on a stopped clock: the hits in one window
    stop_wall_clock(monkeypatch, counter, YEAR_END)
    first = call(counter, event("/echo"))
    second = call(counter, event("/echo"))

    assert first["statusCode"] == 200
    assert first["headers"]["RateLimit-Remaining"] == "0"
    assert second["statusCode"] == 429
    assert second["headers"]["Retry-After"]
    assert backend.paths() == ["/base/echo"]


def test_the_count_reaches_the_client_only_when_asked(front):
    counter = front()
    plain = call(counter, event("/echo"))
    asked = call(counter, event("/echo", headers=[("X-Route-Count", "1")]))

    assert "X-Route-Count" not in headers_of(plain)
    assert headers_of(asked)["X-Route-Count"] == ["2"]


def test_options_is_forwarded_and_not_counted(front, backend, counter_table):
    result = call(front(), event("/echo", "OPTIONS"))

    assert result["statusCode"] == 200
    assert backend.requests[-1]["method"] == "OPTIONS"
    assert read_item(counter_table, "/echo") is None


def test_a_backend_that_closes_each_connection_is_answered_every_time(front):
    """http.server's default (HTTP/1.0): each answer closes its connection. The counter read
    it through a socket http.client had closed: every request was a 502 (EBADF)."""
    with backend_server(protocol="HTTP/1.0") as old:
        counter = front(url=old.url)
        results = [call(counter, event(f"/echo/{i}")) for i in range(3)]

    assert [r["statusCode"] for r in results] == [200, 200, 200]
    assert [json.loads(body_of(r))["path"] for r in results] == ["/echo/0", "/echo/1", "/echo/2"]
    assert len(old.connections) == 3  # one connection each: none reused once closed
