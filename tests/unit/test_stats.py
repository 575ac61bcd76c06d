"""GET /_stats under moto: JSON pages, one route, the HTML dashboard, and errors."""

import base64
import functools
import hashlib
import json
import re
import time

import boto3
import pytest
from botocore.exceptions import ConnectTimeoutError, ReadTimeoutError
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from tests.conftest import (
    ROOT,
    api_event,
    lambda_context,
    load_module,
    on_send,
    put_routes,
    read_item,
)

BROWSER_ACCEPT = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"


def get(stats, query=None, *, path="/_stats", method="GET", accept="*/*"):
    event = api_event(path, method, query=query, headers={"Accept": accept})
    result = stats.handler(event, lambda_context("StatsFunction"))
    is_json = result["headers"]["Content-Type"] == "application/json"
    return result, json.loads(result["body"]) if is_json and result["body"] else result["body"]


def seed(table: str, counts: dict[str, int]) -> None:
    put_routes(boto3.client("dynamodb"), table, counts)


def scan_all(table: str) -> list[dict]:
    return boto3.client("dynamodb").scan(TableName=table)["Items"]


def test_json_lists_routes_counted_by_the_counter_highest_first(counter, stats):
    for path, hits in {"/a": 3, "/b": 1, "/c/d": 2}.items():
        for _ in range(hits):
            counter.handler(api_event(path), lambda_context())

    result, body = get(stats)

    assert result["statusCode"] == 200
    assert result["headers"]["Cache-Control"] == "no-store"
    assert body["next"] is None
    assert [(r["route"], r["count"]) for r in body["routes"]] == [("/a", 3), ("/c/d", 2), ("/b", 1)]
    assert set(body["routes"][0]) == {"route", "count", "firstSeen", "lastSeen"}
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", body["routes"][0]["lastSeen"])


def test_empty_table_is_an_empty_list(stats):
    _, body = get(stats)
    assert body == {"routes": [], "next": None}


@pytest.mark.parametrize("limit", [None, "1000"])
def test_paging_visits_every_one_of_2500_routes_exactly_once(stats, counter_table, limit):
    counts = {f"/r/{i}": (i * 7919) % 500 + 1 for i in range(2500)}
    seed(counter_table, counts)
    seen, token, pages = [], None, 0
    size = int(limit or 100)

    while True:
        query = {k: v for k, v in {"limit": limit, "next": token}.items() if v}
        result, body = get(stats, query or None)
        assert result["statusCode"] == 200
        page = [r["count"] for r in body["routes"]]
        assert page == sorted(page, reverse=True)  # each page sorted by count
        assert len(page) <= size
        seen += [(r["route"], r["count"]) for r in body["routes"]]
        pages += 1
        token = body["next"]
        if token is None or pages > 2500 // size + 2:
            break

    assert token is None
    assert len(seen) == 2500
    assert dict(seen) == counts


def test_a_full_page_of_the_longest_routes_takes_two_bounded_scan_calls(
    stats, counter_table, capsys
):
    # 1000 routes of 1000 bytes: more than the 1 MB one Scan call may read.
    seed(counter_table, {f"/{i:04d}" + "x" * 995: 1 for i in range(1000)})
    capsys.readouterr()

    _, body = get(stats, {"limit": "1000"})

    log = json.loads(capsys.readouterr().out)
    assert len(body["routes"]) == 1000
    assert log["scanCalls"] == 2


def test_a_page_short_of_routes_still_has_a_next_token_when_more_remain(stats, counter_table):
    seed(counter_table, {f"/p/{i}": 1 for i in range(30)})
    _, first = get(stats, {"limit": "10"})
    assert len(first["routes"]) == 10
    assert re.fullmatch(r"[A-Za-z0-9_-]+", first["next"])  # url-safe, no padding


def test_the_first_page_is_the_global_top_when_everything_fits(stats, counter_table):
    counts = {f"/t/{i}": i for i in range(1, 51)}
    seed(counter_table, counts)
    _, body = get(stats, {"limit": "50"})
    assert body["next"] is None
    assert [r["route"] for r in body["routes"][:3]] == ["/t/50", "/t/49", "/t/48"]


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


@pytest.mark.parametrize(
    ("query", "words"),
    [
        ({"limit": "0"}, "'limit' must be a whole number from 1 to 1000"),
        ({"limit": "1001"}, "'limit' must be"),
        ({"limit": "-1"}, "'limit' must be"),
        ({"limit": "ten"}, "'limit' must be"),
        ({"limit": "1.5"}, "'limit' must be"),
        ({"limit": ""}, "'limit' must be"),
        ({"limit": "99999999999999999999"}, "'limit' must be"),
        ({"next": "!!!"}, "invalid 'next' token"),
        ({"next": ""}, "invalid 'next' token"),
        ({"next": "abc"}, "invalid 'next' token"),
        ({"next": b64(b"not json")}, "invalid 'next' token"),
        ({"next": b64(b'{"r": 5}')}, "invalid 'next' token"),
        ({"next": b64(b'["/a"]')}, "invalid 'next' token"),
        ({"next": b64(b'{"r": "/a", "x": 1}')}, "invalid 'next' token"),
        ({"next": b64(b'{"r": "a//b"}')}, "invalid 'next' token"),
        ({"next": b64(b'{"r": "/a\\u0000"}')}, "invalid 'next' token"),
        ({"next": b64(b"\xff\xfe")}, "invalid 'next' token"),
        ({"next": "A" * 5000}, "invalid 'next' token"),
        ({"next": b64(b"[" * 1500)}, "invalid 'next' token"),  # not a route: no JSON parsed
        ({"next": b64(b"/" + b"a" * 2048)}, "invalid 'next' token"),  # over DynamoDB's key size
        ({"next": b64(b"a/b")}, "invalid 'next' token"),  # every route starts with "/"
        ({"next": b64(b"/ab") + "A"}, "invalid 'next' token"),  # 4n+1 characters: not base64
        ({"route": "/a", "limit": "5"}, "cannot be combined"),
        ({"route": "/a\nb"}, "control characters"),
        ({"route": "/" + "a" * 1024}, "the route is 1025 bytes; at most 1024 are counted"),
    ],
)
def test_bad_query_is_a_400_json_error(stats, counter_table, query, words):
    seed(counter_table, {"/a": 1})
    result, body = get(stats, query)
    assert result["statusCode"] == 400
    assert result["headers"]["Content-Type"] == "application/json"
    assert words in body["error"]


def test_a_token_from_a_page_is_accepted_and_continues_after_it(stats, counter_table):
    seed(counter_table, {f"/k/{i}": 1 for i in range(5)})
    _, first = get(stats, {"limit": "2"})
    _, rest = get(stats, {"next": first["next"]})
    assert {r["route"] for r in first["routes"]}.isdisjoint(r["route"] for r in rest["routes"])
    assert len(first["routes"]) + len(rest["routes"]) == 5


def test_one_route_by_the_counters_route_rule(counter, stats):
    for _ in range(3):
        counter.handler(api_event("/docs/intro"), lambda_context())

    result, body = get(stats, {"route": "//docs/intro/"})

    assert result["statusCode"] == 200
    assert body["route"] == "/docs/intro"
    assert body["count"] == 3
    assert body["firstSeen"] <= body["lastSeen"]


def test_unknown_route_is_404(stats):
    result, body = get(stats, {"route": "/never"})
    assert result["statusCode"] == 404
    assert "/never" in body["error"]


def test_reading_counts_nothing(counter, stats, counter_table):
    counter.handler(api_event("/x"), lambda_context())
    before = scan_all(counter_table)

    get(stats)
    get(stats, {"route": "/x"})
    get(stats, accept=BROWSER_ACCEPT)
    get(stats, {"limit": "1"})

    assert scan_all(counter_table) == before
    assert read_item(counter_table, "/_stats") is None


def test_browser_gets_a_self_contained_dashboard_with_escaped_routes(stats, counter_table):
    evil = "/<script>alert(1)</script>"
    seed(counter_table, {evil: 9, '/"><img src=x onerror=alert(2)>': 4, "/home": 12})

    result, page = get(stats, accept=BROWSER_ACCEPT)

    headers = result["headers"]
    assert result["statusCode"] == 200
    assert headers["Content-Type"] == "text/html; charset=utf-8"
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Cache-Control"] == "no-store"
    csp = headers["Content-Security-Policy"]
    assert "default-src 'none'" in csp
    assert "script-src" not in csp and "unsafe" not in csp
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "&quot;&gt;&lt;img src=x onerror=alert(2)&gt;" in page
    assert "<script" not in page.lower()
    assert "<img" not in page.lower()
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", page, re.IGNORECASE)
    assert "@import" not in page and "url(" not in page
    # The one inline style block is the one the CSP hash allows.
    (css,) = re.findall(r"<style>(.*?)</style>", page, re.DOTALL)
    digest = base64.b64encode(hashlib.sha256(css.encode()).digest()).decode()
    assert f"style-src 'sha256-{digest}'" in csp
    # The table, highest count first.
    assert page.index("/home") < page.index("&lt;script&gt;")
    assert "2026-01-02T00:00:00Z" in page


def test_dashboard_links_to_the_next_page_when_more_routes_remain(stats, counter_table):
    seed(counter_table, {f"/n/{i}": i for i in range(1, 6)})
    _, page = get(stats, {"limit": "2"}, accept=BROWSER_ACCEPT)
    assert re.search(r'href="\?limit=2&amp;next=[A-Za-z0-9_-]+&amp;at=2&amp;back=0~"', page)
    assert "Routes 1-2 in stored order, sorted by count within this page" in page


@pytest.mark.parametrize(
    ("accept", "kind"),
    [
        ("*/*", "application/json"),
        ("application/json", "application/json"),
        ("text/html;q=0.5, application/json", "application/json"),
        ("text/html", "text/html; charset=utf-8"),
        (BROWSER_ACCEPT, "text/html; charset=utf-8"),
        ("", "application/json"),
        ("text/html;q=.", "text/html; charset=utf-8"),
        ("application/json;q=abc, text/html;q=0.9", "application/json"),
        ("text/*;q=0.9, */*;q=0.1", "text/html; charset=utf-8"),
        ("TEXT/HTML", "text/html; charset=utf-8"),
    ],
)
def test_content_negotiation(stats, accept, kind):
    result, _ = get(stats, accept=accept)
    assert result["headers"]["Content-Type"] == kind
    assert "Accept" in result["headers"]["Vary"]


def test_other_methods_are_405_and_options_is_204(stats):
    post, body = get(stats, method="POST")
    options, _ = get(stats, method="OPTIONS")
    assert post["statusCode"] == 405
    assert post["headers"]["Allow"] == "GET, HEAD, OPTIONS"
    assert "GET" in body["error"]
    assert options["statusCode"] == 204


def test_paths_under_the_stats_path_are_404(stats):
    result, body = get(stats, path="/_stats/x")
    assert result["statusCode"] == 404
    assert "GET /_stats" in body["error"]


def test_no_cors_headers_unless_an_origin_is_allowed(stats):
    result, _ = get(stats)
    assert "Access-Control-Allow-Origin" not in result["headers"]


def test_allowed_origin_adds_cors_headers(counter_table, monkeypatch):
    monkeypatch.setenv("ALLOWED_ORIGIN", "https://dash.example.com")
    stats = load_module(ROOT / "handler" / "stats.py", "stats_with_cors")
    for method in ("GET", "OPTIONS"):
        result, _ = get(stats, method=method)
        assert result["headers"]["Access-Control-Allow-Origin"] == "https://dash.example.com"
        assert "Origin" in result["headers"]["Vary"]


def test_aws_fault_is_a_500_with_request_id_and_one_error_log_line(stats, monkeypatch, capsys):
    monkeypatch.setattr(stats, "TABLE_NAME", "no-such-table")
    capsys.readouterr()

    result, body = get(stats)

    assert result["statusCode"] == 500
    assert body["error"] == "stats unavailable"
    (line,) = capsys.readouterr().out.strip().splitlines()
    log = json.loads(line)
    assert log["level"] == "ERROR"
    assert log["requestId"] == body["requestId"]
    assert log["errorCode"] == "ResourceNotFoundException"


def test_throttling_is_a_503_with_retry_after(stats, monkeypatch):
    from botocore.exceptions import ClientError

    def throttled(**_):
        raise ClientError({"Error": {"Code": "ThrottlingException"}}, "Scan")

    monkeypatch.setattr(stats.dynamodb, "scan", throttled)
    result, body = get(stats)
    assert result["statusCode"] == 503
    assert result["headers"]["Retry-After"] == "1"
    assert body["requestId"]


def test_one_json_log_line_per_request(stats, capsys):
    get(stats, {"limit": "5"})
    (line,) = capsys.readouterr().out.strip().splitlines()
    log = json.loads(line)
    assert (log["level"], log["status"], log["format"], log["routes"]) == ("INFO", 200, "json", 0)
    assert log["scanCalls"] == 1


@pytest.fixture
def guarded_counter(counter_table, monkeypatch):
    """The counter as deployed: told where the stats endpoint is."""
    monkeypatch.setenv("STATS_ROUTE", "/_stats")
    return load_module(ROOT / "handler" / "counter.py", "counter_with_stats_route")


@pytest.mark.parametrize(
    "path",
    ["/_stats", "/_stats/", "//_stats", "/_stats/x", "/_stats/a/b", "/%5Fstats", "/%5fst%61ts/x"],
)
@pytest.mark.parametrize("method", ["GET", "POST"])
def test_counter_never_counts_the_stats_path(guarded_counter, counter_table, path, method):
    result = guarded_counter.handler(api_event(path, method), lambda_context())
    assert result["statusCode"] == 404
    assert "stats endpoint" in json.loads(result["body"])["error"]
    assert scan_all(counter_table) == []


@pytest.mark.parametrize("path", ["/_statsx", "/x/_stats", "/_STATS"])
def test_paths_that_only_look_like_the_stats_path_count(guarded_counter, path):
    result = guarded_counter.handler(api_event(path), lambda_context())
    assert result["statusCode"] == 200


@pytest.mark.parametrize("timeout", [ReadTimeoutError, ConnectTimeoutError])
def test_a_dynamodb_timeout_is_a_503_json_answer_not_a_crash(stats, capsys, monkeypatch, timeout):
    def network_times_out(request, **_):
        raise timeout(endpoint_url=request.url)

    monkeypatch.setattr(time, "sleep", lambda _: None)  # the SDK's backoff, not waited
    with on_send(stats.dynamodb, "Scan", network_times_out):
        result = stats.handler(api_event("/_stats"), lambda_context())

    assert result["statusCode"] == 503
    assert result["headers"]["Retry-After"] == "1"
    assert json.loads(result["body"])["requestId"]
    (line,) = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert (line["level"], line["errorCode"]) == ("ERROR", timeout.__name__)


# --- `next` tokens -----------------------------------------------------------------------


# Every key the table can hold: routes counted by any version of the route rule, legacy
# ones with raw characters included (1 to 2048 UTF-8 bytes, starting with "/").
@functools.cache
def stats_module():
    """The stats handler, imported once for properties that only call its pure functions."""
    return load_module(ROOT / "handler" / "stats.py", "stats_pure")


any_key = st.text(st.characters(exclude_categories=("Cs",)), max_size=700).map(lambda t: "/" + t)


@settings(max_examples=150, deadline=None)
@given(route=any_key | st.text(st.sampled_from('\\"é語😀%/a'), max_size=600).map("/{}".format))
def test_every_token_issued_is_accepted_back(route):
    assume(len(route.encode()) <= 2048)
    stats = stats_module()
    key = {"route": {"S": route}}

    token = stats.encode_token(key)

    assert re.fullmatch(r"[A-Za-z0-9_-]+", token)  # url-safe as a query value, no padding
    assert stats.decode_token(token) == key


@settings(max_examples=150, deadline=None)
@given(
    path=st.lists(
        st.tuples(st.sampled_from('\\"é語😀%/aA~ \u202e'), st.integers(1, 1100)), max_size=3
    ).map(lambda runs: "/" + "".join(c * n for c, n in runs))
)
def test_the_token_of_every_countable_route_is_accepted_back(path):
    stats = stats_module()
    route, problem = stats.route_of(path)
    assume(problem is None)
    key = {"route": {"S": route}}

    assert stats.decode_token(stats.encode_token(key)) == key


@pytest.mark.parametrize(
    "route",
    [
        "/" + "\\" * 1023,
        "/" + '"' * 1023,
        "/" + "é" * 1023,  # 2047 bytes: counted raw before escapes were part of the rule
        "/" + "😀" * 511,
        "/" + "%C3%A9" * 170,
    ],
)
def test_paging_over_the_longest_routes_accepts_every_token(stats, counter_table, route):
    routes = {route[:-1] + c: 1 for c in "abcde"}
    seed(counter_table, routes)
    seen, token = [], None
    for _ in range(6):
        result, body = get(stats, {"limit": "1", **({"next": token} if token else {})})
        assert result["statusCode"] == 200, body
        seen += [r["route"] for r in body["routes"]]
        token = body["next"]
        if token is None:
            break

    assert sorted(seen) == sorted(routes)


def test_a_token_names_the_route_a_page_starts_after(stats, counter_table):
    seed(counter_table, {f"/k/{i}": 1 for i in range(6)})
    _, first = get(stats, {"limit": "2"})
    last_scanned = boto3.client("dynamodb").scan(TableName=counter_table, Limit=2)["Items"][-1]

    # Anyone can write a token: it is the route, base64url. It starts a page after that
    # route's place in the table, whether or not the route was ever counted.
    assert first["next"] == b64(last_scanned["route"]["S"].encode())
    _, forged = get(stats, {"next": b64(b"/never-counted")})
    assert forged["routes"] or forged["next"] is None


def test_the_docs_token_examples_are_tokens_this_endpoint_reads(stats, counter_table):
    docs = [ROOT / "README.md", ROOT / "docs" / "api.md"]
    examples = [
        token
        for doc in docs
        for token in re.findall(r"\?limit=1&next=([A-Za-z0-9_-]+)'", doc.read_text())
    ]
    seed(counter_table, {"/hello": 3, "/": 1})

    assert examples
    for token in examples:
        assert stats.decode_token(token)["route"]["S"] in ("/", "/hello")
        assert get(stats, {"limit": "1", "next": token})[0]["statusCode"] == 200


# --- ?route= takes the route as the stats show it -----------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        "/caf%C3%A9",  # as the stats show it (the query value sent as %2Fcaf%25C3%25A9)
        "/café",  # ?route=/caf%C3%A9 typed in a browser: API Gateway decodes query values
        "/caf%c3%a9",
        "//caf%C3%A9/",
    ],
)
def test_route_query_finds_the_route_counted_from_an_encoded_path(counter, stats, value):
    counter.handler(api_event("/caf%C3%A9"), lambda_context())
    counter.handler(api_event("/caf%c3%a9"), lambda_context())

    result, body = get(stats, {"route": value})

    assert result["statusCode"] == 200
    assert (body["route"], body["count"]) == ("/caf%C3%A9", 2)


# --- What a route can look like on the dashboard -------------------------------------------

INVISIBLE = re.compile("[\u00ad\u061c\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff]")


def test_bidi_controls_cannot_make_a_route_look_like_another(stats, counter_table):
    # Routes stored before the rule escaped non-ASCII characters may still hold them.
    spoof = "/\u202egnp.exe"  # RIGHT-TO-LEFT OVERRIDE: displays as /exe.png
    hidden = "/a\u200bdmin\u2066x\u2069"  # a zero-width space and an isolate
    seed(counter_table, {spoof: 2, hidden: 1, "/exe.png": 1})

    _, page = get(stats, accept=BROWSER_ACCEPT)
    _, one = get(stats, {"route": "/exe.png"}, accept=BROWSER_ACCEPT)

    assert not INVISIBLE.search(page)
    assert '<bdi dir="ltr">/<span class=cf>U+202E</span>gnp.exe</bdi>' in page
    assert "/a<span class=cf>U+200B</span>dmin<span class=cf>U+2066</span>x" in page
    # Shown in the stale list (seeded long ago) and the table, each time boxed; the table's
    # link to the route's page holds it percent-encoded, never raw.
    assert page.count('<bdi dir="ltr">/<span class=cf>U+202E</span>gnp.exe</bdi>') == 2
    assert page.count('href="?route=/%E2%80%AEgnp.exe"') == 1
    assert page.count("gnp.exe") == 3
    assert page.count('<bdi dir="ltr">') == 1 + 3 * 2
    assert '<bdi dir="ltr">Route /exe.png</bdi>' in one
    css = re.search("<style>(.*?)</style>", page).group(1)
    digest = base64.b64encode(hashlib.sha256(css.encode()).digest()).decode()
    assert (
        f"'sha256-{digest}'"
        in get(stats, accept=BROWSER_ACCEPT)[0]["headers"]["Content-Security-Policy"]
    )
