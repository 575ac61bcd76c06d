"""End to end through `python -m local` (what `./deploy.sh --local` runs), over real sockets:
the stats endpoint and its dashboard, per-route rate limiting, and the billing mode.

Each parameter set gets one stack per module (its own emulator, so its own table).
"""

import base64
import hashlib
import http.client
import json
import re
import threading
import time
import urllib.parse
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from email.message import Message

import pytest

from tests.conftest import (
    RunningLocalStack,
    counter_table_name,
    emulator_client,
    local_stack,
    seed_routes,
    stored_counts,
)

BROWSER_ACCEPT = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
LIMIT, WINDOW = 5, 3


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    """The stack with default parameters."""
    with local_stack(tmp_path_factory.mktemp("e2e-default")) as running:
        yield running


@pytest.fixture(scope="module")
def paged_stack(tmp_path_factory):
    """Another stack with default parameters, for the 2,500 routes only."""
    with local_stack(tmp_path_factory.mktemp("e2e-paged")) as running:
        yield running


@pytest.fixture(scope="module")
def limited_stack(tmp_path_factory):
    with local_stack(
        tmp_path_factory.mktemp("e2e-limited"),
        "--param",
        f"RateLimit={LIMIT}",
        "--param",
        f"RateLimitWindowSeconds={WINDOW}",
    ) as running:
        yield running


@pytest.fixture(scope="module")
def provisioned_stack(tmp_path_factory):
    with local_stack(
        tmp_path_factory.mktemp("e2e-provisioned"), "--param", "BillingMode=PROVISIONED"
    ) as running:
        yield running


def request(
    stack: RunningLocalStack, target: str, accept: str = "*/*"
) -> tuple[int, Message, bytes]:
    """GET the request target exactly as given (nothing re-encoded), on a fresh connection."""
    connection = http.client.HTTPConnection("127.0.0.1", stack.port, timeout=20)
    try:
        connection.request("GET", target, headers={"Accept": accept})
        response = connection.getresponse()
        return response.status, response.headers, response.read()
    finally:
        connection.close()


def get_json(stack: RunningLocalStack, target: str) -> tuple[int, dict]:
    status, headers, body = request(stack, target)
    assert headers["Content-Type"] == "application/json", (status, body)
    return status, json.loads(body)


def hit(stack: RunningLocalStack, route: str, times: int = 1) -> dict:
    for _ in range(times):
        status, body = get_json(stack, route)
        assert status == 200, body
    return body


def stats(stack: RunningLocalStack, **query: str) -> tuple[int, dict]:
    return get_json(stack, "/_stats" + ("?" + urllib.parse.urlencode(query) if query else ""))


def every_route(stack: RunningLocalStack, **query: str) -> tuple[list[dict], list[int]]:
    """Follow `next` from the first page to the last: all records, and each page's size."""
    records, sizes, token = [], [], None
    while True:
        status, body = stats(stack, **query, **({"next": token} if token else {}))
        assert status == 200, body
        counts = [r["count"] for r in body["routes"]]
        assert counts == sorted(counts, reverse=True)  # each page highest first
        records += body["routes"]
        sizes.append(len(body["routes"]))
        token = body["next"]
        if token is None:
            return records, sizes


# --- The read endpoint's JSON ------------------------------------------------------------


def test_stats_lists_the_routes_hit_through_the_api_highest_first(stack):
    tag = uuid.uuid4().hex[:8]
    hits = {f"/{tag}/a": 3, f"/{tag}/b": 1, f"/{tag}/c/d": 2}
    for route, times in hits.items():
        hit(stack, route, times)

    status, body = stats(stack)

    assert status == 200
    assert body["next"] is None
    counts = [r["count"] for r in body["routes"]]
    assert counts == sorted(counts, reverse=True)
    mine = [(r["route"], r["count"]) for r in body["routes"] if r["route"].startswith(f"/{tag}/")]
    assert mine == [(f"/{tag}/a", 3), (f"/{tag}/c/d", 2), (f"/{tag}/b", 1)]
    assert {r["route"]: r["count"] for r in body["routes"]} == stored_counts(stack)


def test_one_route_is_one_record(stack):
    first = hit(stack, "/hello")
    last = hit(stack, "/hello")

    status, body = stats(stack, route="/hello")

    assert status == 200
    assert body == {
        "route": "/hello",
        "count": last["count"],
        "firstSeen": first["firstSeen"],
        "lastSeen": last["lastSeen"],
    }
    assert body["count"] >= 2


def test_one_route_follows_the_counters_route_rule(stack):
    route = f"/rule/{uuid.uuid4().hex[:8]}"
    hit(stack, route + "//?x=1")

    status, body = stats(stack, route=route + "/")

    assert (status, body["route"], body["count"]) == (200, route, 1)


def test_a_route_never_hit_is_a_404_json_error(stack):
    route = f"/never/{uuid.uuid4().hex}"

    status, body = stats(stack, route=route)

    assert status == 404
    assert route in body["error"]


@pytest.mark.parametrize(
    ("query", "says"),
    [
        ({"limit": "0"}, "'limit' must be a whole number from 1 to 1000"),
        ({"limit": "1001"}, "'limit' must be a whole number from 1 to 1000"),
        ({"limit": "ten"}, "'limit' must be a whole number from 1 to 1000"),
        ({"limit": "-5"}, "'limit' must be a whole number from 1 to 1000"),
        ({"next": "not a token!"}, "invalid 'next' token"),
        ({"next": base64.urlsafe_b64encode(b'{"x":1}').decode()}, "invalid 'next' token"),
        ({"next": ""}, "invalid 'next' token"),
        ({"route": "/hello", "limit": "10"}, "'route' cannot be combined"),
    ],
)
def test_a_bad_query_is_a_400_json_error(stack, query, says):
    status, body = stats(stack, **query)

    assert status == 400
    assert set(body) == {"error"}
    assert says in body["error"]


# --- Paging ------------------------------------------------------------------------------

SEEDED = {f"/page/{i}": (i * 7919) % 500 + 1 for i in range(2500)}
HIT = {"/paged/hello": 2, "/paged/world": 1, "/": 1}


@pytest.fixture(scope="module")
def paged_routes(paged_stack) -> dict[str, int]:
    """2,500 routes written straight into the stack's table, plus a few real hits.

    2,500 HTTP hits in a row take the local stack about 40 s on a 2-core machine (~15 ms
    each), so the routes are seeded as the counter leaves them, 25 per BatchWriteItem.
    """
    seed_routes(paged_stack, SEEDED)
    for route, times in HIT.items():
        hit(paged_stack, route, times)
    return SEEDED | HIT


@pytest.mark.parametrize(("limit", "size"), [(None, 100), ("1000", 1000)])
def test_following_next_visits_each_of_2500_routes_exactly_once(
    paged_stack, paged_routes, limit, size
):
    records, sizes = every_route(paged_stack, **({"limit": limit} if limit else {}))

    seen = Counter(r["route"] for r in records)
    assert seen.most_common(1)[0][1] == 1  # no route twice
    assert {r["route"]: r["count"] for r in records} == paged_routes  # and none missing
    assert all(n == size for n in sizes[:-1])
    assert 1 <= sizes[-1] <= size
    assert len(sizes) == -(-len(paged_routes) // size)


# --- The HTML dashboard ------------------------------------------------------------------


def test_the_dashboard_is_self_contained_and_shows_routes_escaped(stack):
    # A browser asked for /<script>alert(1)</script> sends this (WHATWG URL path encoding);
    # API Gateway's REST API keeps the encoding in the event's path, so it is the route.
    tag = uuid.uuid4().hex[:6]
    browser_target = f"/%3Cscript%3Ealert({tag})%3C/script%3E"
    raw_target = f"/<script>alert({tag})</script>"  # as curl sends it
    quote_route = f"/a&b'{tag}"  # "&" and "'" may stay raw in a path
    assert hit(stack, browser_target)["route"] == browser_target
    # One route: the raw and the encoded target count on the same item. Only lastSeen may
    # differ (a second can pass between the two hits).
    as_raw, as_browser = hit(stack, raw_target), hit(stack, browser_target)
    assert as_browser == as_raw | {"count": 3, "lastSeen": as_browser["lastSeen"]}
    assert hit(stack, quote_route)["route"] == quote_route

    status, headers, body = request(stack, "/_stats", accept=BROWSER_ACCEPT)
    page = body.decode("utf-8")

    assert status == 200
    assert headers["Content-Type"] == "text/html; charset=utf-8"
    assert f'<bdi dir="ltr">{browser_target}</bdi>' in page
    assert f'<bdi dir="ltr">/a&amp;b&#x27;{tag}</bdi>' in page
    assert "<script" not in page.lower()
    assert not re.search(r"""(?:src|href)\s*=\s*["']?\s*(?:https?:)?//""", page, re.I)
    assert "@import" not in page and "url(" not in page
    assert "<link" not in page.lower() and "<img" not in page.lower()


def html_escaped(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def test_the_dashboard_has_a_strict_content_security_policy(stack):
    hit(stack, "/styled")

    _, headers, body = request(stack, "/_stats", accept=BROWSER_ACCEPT)
    policy = {
        name: values
        for name, *values in (d.split() for d in headers["Content-Security-Policy"].split(";"))
    }
    style = re.search(r"<style>(.*?)</style>", body.decode(), re.S).group(1)
    digest = base64.b64encode(hashlib.sha256(style.encode()).digest()).decode()

    assert policy["default-src"] == ["'none'"]  # no script, image, font, fetch or frame
    assert policy["style-src"] == [f"'sha256-{digest}'"]  # only the page's own style
    assert policy["frame-ancestors"] == ["'none'"]
    assert policy["base-uri"] == ["'none'"] and policy["form-action"] == ["'none'"]
    assert "script-src" not in policy
    assert headers["X-Content-Type-Options"] == "nosniff"


def test_one_routes_dashboard_escapes_the_route_in_its_title(stack):
    route = f"/&lt;b&gt;{uuid.uuid4().hex[:6]}"  # "&" and ";" may stay raw in a path
    hit(stack, route)

    status, headers, body = request(
        stack, "/_stats?" + urllib.parse.urlencode({"route": route}), accept=BROWSER_ACCEPT
    )
    page = body.decode()

    assert status == 200
    assert headers["Content-Type"] == "text/html; charset=utf-8"
    assert f"<title>Route {html_escaped(route)}</title>" in page
    assert "<b>" not in page and "&lt;b&gt;" not in page


# --- Routes in normal form, through real URLs ---------------------------------------------


def test_the_spellings_of_an_encoded_path_are_one_route_found_by_route_query(stack):
    tag = uuid.uuid4().hex[:6]
    route = f"/caf%C3%A9/{tag}"
    counted = [hit(stack, target) for target in (route, f"/caf%c3%a9/{tag}", f"/%63af%C3%A9/{tag}")]

    assert [c["route"] for c in counted] == [route] * 3
    assert [c["count"] for c in counted] == [1, 2, 3]
    for target in [
        f"/_stats?route=/caf%C3%A9/{tag}",  # typed by hand: API Gateway decodes it to /café
        "/_stats?" + urllib.parse.urlencode({"route": route}),  # the route as shown, encoded
        f"/_stats?route=/caf%25c3%25a9/{tag}",
    ]:
        status, body = get_json(stack, target)
        assert (status, body["route"], body["count"]) == (200, route, 3), target


# --- Reading counts nothing --------------------------------------------------------------


def test_reading_the_stats_counts_nothing(stack):
    hit(stack, "/read/me", 2)
    before = stored_counts(stack)

    for target in [
        "/_stats",
        "/_stats?limit=1",
        "/_stats?route=/read/me",
        "/_stats?route=/never-counted",
        "/_stats?limit=0",
        "/_stats/",
        "/_stats/anything/below",
        "//_stats",
    ] * 3:
        for accept in ("application/json", BROWSER_ACCEPT):
            status, _, _ = request(stack, target, accept=accept)
            assert status in (200, 400, 404)

    assert stored_counts(stack) == before
    _, body = stats(stack)
    assert not [r for r in body["routes"] if r["route"].startswith("/_stats")]
    assert stats(stack, route="/_stats")[0] == 404


# --- Rate limiting -----------------------------------------------------------------------


def burst(stack: RunningLocalStack, route: str, n: int = 20) -> tuple[list, float, float]:
    """n hits on one route released together, each on its own open connection.

    Released just after a rate-limit window starts (the window is aligned to the epoch),
    so that the burst normally falls in one window. Returns the responses and the
    wall-clock times just before release and after the last answer.
    """
    connections = [
        http.client.HTTPConnection("127.0.0.1", stack.port, timeout=20) for _ in range(n)
    ]
    for connection in connections:
        connection.connect()
    gate = threading.Barrier(n + 1)

    def one(connection: http.client.HTTPConnection) -> tuple[int, Message, dict, float]:
        gate.wait()
        connection.request("GET", route)
        response = connection.getresponse()
        body = json.loads(response.read())
        return response.status, response.headers, body, time.monotonic()

    with ThreadPoolExecutor(n) as pool:
        futures = [pool.submit(one, c) for c in connections]
        window_start = (time.time() // WINDOW + 1) * WINDOW
        while time.time() < window_start + 0.05:
            time.sleep(0.005)
        released = time.time()
        gate.wait()
        results = [f.result() for f in futures]
    finished = time.time()
    for connection in connections:
        connection.close()
    return results, released, finished


def one_window_burst(stack: RunningLocalStack) -> tuple[str, list]:
    """A burst on a fresh route that fell in one window (on a loaded machine it may have
    straddled a window boundary: then it is done again on another fresh route)."""
    for _ in range(3):
        route = f"/burst/{uuid.uuid4().hex[:8]}"
        results, released, finished = burst(stack, route)
        if released // WINDOW == finished // WINDOW:
            return route, results
    pytest.fail("three bursts of 20 hits each straddled a rate-limit window boundary")


def test_twenty_simultaneous_hits_serve_the_limit_then_the_next_window_serves_again(
    limited_stack,
):
    route, results = one_window_burst(limited_stack)

    served = [(h, b) for status, h, b, _ in results if status == 200]
    refused = [(h, b) for status, h, b, _ in results if status == 429]
    assert (len(served), len(refused)) == (LIMIT, 20 - LIMIT)
    assert sorted(int(h["RateLimit-Remaining"]) for h, _ in served) == [0, 1, 2, 3, 4]
    assert sorted(b["count"] for _, b in served) == [1, 2, 3, 4, 5]
    for headers, _ in served + refused:
        assert headers["RateLimit-Limit"] == str(LIMIT)
        assert 1 <= int(headers["RateLimit-Reset"]) <= WINDOW
        assert headers["Content-Type"] == "application/json"
    for headers, body in refused:
        assert headers["RateLimit-Remaining"] == "0"
        assert headers["Retry-After"] == headers["RateLimit-Reset"]
        assert body == {"error": f"rate limit of {LIMIT} hits per {WINDOW} s reached for {route}"}
    assert stats(limited_stack, route=route)[1]["count"] == LIMIT

    # Wait (not assert) until every Reset announced has passed: the next window has begun.
    resume = max(at + int(h["RateLimit-Reset"]) for _, h, _, at in results)
    while time.monotonic() < resume:
        time.sleep(0.05)
    status, headers, body = request(limited_stack, route)

    assert status == 200
    assert json.loads(body)["count"] == LIMIT + 1
    assert headers["RateLimit-Remaining"] == str(LIMIT - 1)
    assert stats(limited_stack, route=route)[1]["count"] == LIMIT + 1


def test_the_stats_endpoint_is_not_rate_limited(limited_stack):
    route = f"/watched/{uuid.uuid4().hex[:8]}"
    hit(limited_stack, route)

    answers = [stats(limited_stack, route=route) for _ in range(3 * LIMIT)]

    assert {(status, body["count"]) for status, body in answers} == {(200, 1)}


# --- Billing mode ------------------------------------------------------------------------


def describe_table(stack: RunningLocalStack) -> dict:
    return emulator_client(stack, "dynamodb").describe_table(TableName=counter_table_name(stack))[
        "Table"
    ]


def test_the_table_is_on_demand_by_default(stack):
    table = describe_table(stack)

    assert table["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"
    assert table["ProvisionedThroughput"]["ReadCapacityUnits"] == 0
    assert table["ProvisionedThroughput"]["WriteCapacityUnits"] == 0


def test_provisioned_billing_deploys_a_provisioned_table_that_counts(provisioned_stack):
    # moto 5.2.5 creates no Application Auto Scaling resources from CloudFormation: the
    # scaling targets and policies are checked in the template (test_template_stats.py).
    table = describe_table(provisioned_stack)
    first = hit(provisioned_stack, "/provisioned")
    second = hit(provisioned_stack, "/provisioned")

    assert table["BillingModeSummary"]["BillingMode"] == "PROVISIONED"
    assert table["ProvisionedThroughput"]["ReadCapacityUnits"] == 5
    assert table["ProvisionedThroughput"]["WriteCapacityUnits"] == 5
    assert (first["count"], second["count"]) == (1, 2)
