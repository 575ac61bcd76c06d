"""Hits per hour and day stay exact while the aggregator's writes fail and its batches retry.

The whole local stack runs (`python -m local`: the API over HTTP, the counter, the emulator,
the stream poller with the template's own mapping and the aggregator's inline code). Only the
aggregator's DynamoDB traffic goes through tools/faultproxy.py, which loses answers of
transactions the emulator applied, answers 500 after applying them, and throttles, so its
calls fail past the SDK's retries and Lambda's mapping retries and bisects its batches. Every
bucket must still equal the hits the API answered 200 for in it.
"""

import collections
import json
import random
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import boto3
import pytest

from tests.conftest import emulator_process, local_stack
from tests.unit.test_backend_monitoring import answer_hit
from tools.faultproxy import DROP, FORWARD, SERVER_ERROR, THROTTLE, FaultProxy

ROUTES = [f"/exact/{name}" for name in ("a", "b", "c", "d", "e", "f")]
HITS = 240
BOUND = 120.0  # seconds for the aggregator to catch up; a bound, never a fixed sleep


@pytest.fixture(scope="module")
def emulator():
    with emulator_process() as running:
        yield running.endpoint


@pytest.fixture(scope="module")
def proxy(emulator):
    with FaultProxy(emulator) as running:
        yield running


@pytest.fixture(scope="module")
def stack(template, emulator, proxy, tmp_path_factory):
    """The generated template, with the aggregator's DynamoDB endpoint set to the proxy
    (a function's own environment: the stream poller and the counter talk to the
    emulator directly)."""
    tmp = tmp_path_factory.mktemp("analytics-exact")
    faulty = json.loads(json.dumps(template))
    variables = faulty["Resources"]["AggregatorFunction"]["Properties"]["Environment"]
    variables["Variables"]["AWS_ENDPOINT_URL_DYNAMODB"] = proxy.url
    # ClientIdentity on for the aggregator and the stats (the client usage test); hits that
    # name no client count in no client bucket, so the other tests are unchanged by it.
    for function in ("AggregatorFunction", "StatsFunction"):
        environment = faulty["Resources"][function]["Properties"]["Environment"]["Variables"]
        environment["CLIENT_IDENTITY"] = "header:X-Client"
    path = tmp / "template.json"
    path.write_text(json.dumps(faulty))
    # Batches of 100 records within 5 s (the defaults are 10,000 and 30 s): many
    # invocations, so that faults fail some of them.
    batching = [
        "--param",
        "AggregatorBatchSize=100",
        "--param",
        "AggregatorBatchingWindowSeconds=5",
    ]
    with local_stack(
        tmp, "--template", str(path), "--fresh", *batching, env={"AWS_ENDPOINT_URL": emulator}
    ) as running:
        yield running


def hit(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=30) as response:
        assert response.status == 200
        return json.loads(response.read())


def stats(stack, path: str = "/_stats", **query: str) -> dict:
    return hit(f"{stack.url}{path}?{urllib.parse.urlencode(query)}")


def counter_table(client) -> str:
    """The stack's counter table: the one keyed by its hash key alone."""
    (table,) = [
        name
        for name in client.list_tables()["TableNames"]
        if len(client.describe_table(TableName=name)["Table"]["KeySchema"]) == 1
    ]
    return table


def fault_plan(rng: random.Random) -> list[str]:
    """Runs of faults longer than the SDK's 3 attempts fail whole invocations; DROP and
    SERVER_ERROR come after the emulator applied the transaction, THROTTLE before."""
    plan = []
    for _ in range(12):
        plan += [rng.choice([DROP, SERVER_ERROR, THROTTLE]) for _ in range(rng.randint(1, 5))]
        plan += [FORWARD] * rng.randint(0, 2)
    return plan


def test_every_bucket_equals_the_hits_sent_in_it_through_failing_retried_batches(stack, proxy):
    proxy.clear_plan()  # not what an earlier test left planned
    proxy.plan(*fault_plan(random.Random(11)))  # noqa: S311 (a reproducible plan)
    before = len(proxy.forwarded)
    # The module's stack is shared: the all-routes buckets hold the hits of the tests that
    # ran before this one (all counted: each waits for its own). What this test adds to
    # them is compared, over hours and days around its hits.
    began = time.time()
    around = {
        kind: {"from": iso(began - span), "to": iso(began + 2 * span)}
        for kind, span in (("hour", 3600), ("day", 86400))
    }
    all_before = {kind: points_of(stack, kind, **around[kind]) for kind in around}

    answers = []
    lock = threading.Lock()

    def send(i: int) -> None:
        answer = hit(stack.url + ROUTES[i % len(ROUTES)])
        with lock:
            answers.append(answer)

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(send, range(HITS)))
    assert len(answers) == HITS

    sent = {"hour": collections.Counter(), "day": collections.Counter()}
    for answer in answers:
        sent["hour"][(answer["route"], answer["lastSeen"][:13] + ":00:00Z")] += 1
        sent["day"][(answer["route"], answer["lastSeen"][:10] + "T00:00:00Z")] += 1
    first = min(a["lastSeen"] for a in answers)
    last = max(a["lastSeen"] for a in answers)

    def series(kind: str, route: str | None) -> dict:
        query = {"series": kind, "from": first, "to": last}
        if route:
            query["route"] = route
        points = stats(stack, **query)["points"]
        return {p["start"]: p["count"] for p in points if p["count"]}

    def counted() -> int:
        return sum(sum(series("hour", route).values()) for route in ROUTES)

    def top_counts() -> dict:
        top = {r["route"]: r["count"] for r in stats(stack, "/_stats/top", limit="100")["routes"]}
        return {route: top.get(route) for route in ROUTES}

    sent_per_route = {
        route: sum(n for (r, _), n in sent["day"].items() if r == route) for route in ROUTES
    }
    # The series are written before the top is merged (handler/aggregator.py): a batch whose
    # merge failed is retried after its buckets are complete. Wait for both, then compare.
    deadline = time.monotonic() + BOUND
    while counted() < HITS or top_counts() != sent_per_route:
        assert time.monotonic() < deadline, (
            f"the aggregator counted {counted()} of {HITS} hits, top {top_counts()}, "
            f"within {BOUND:.0f} s\n{stack.output.read_text()[-3000:]}"
        )
        time.sleep(0.5)

    for kind in ("hour", "day"):
        for route in ROUTES:
            expected = {at: n for (r, at), n in sent[kind].items() if r == route}
            assert series(kind, route) == expected, (kind, route)
        every_route = collections.Counter()
        for (_, at), n in sent[kind].items():
            every_route[at] += n
        all_after = points_of(stack, kind, **around[kind])
        added = {
            start: all_after.get(start, 0) - all_before[kind].get(start, 0)
            for start in set(all_after) | set(all_before[kind])
        }
        assert {start: n for start, n in added.items() if n} == dict(every_route), kind

    # the faults happened: transactions were applied and their answers lost or turned into
    # 500s, and invocations failed and were retried, and none was given up
    applied_unanswered = [
        f
        for f in proxy.forwarded[before:]
        if f.target.endswith(".TransactWriteItems") and f.status == 200 and f.action != FORWARD
    ]
    assert applied_unanswered, "no applied transaction lost its answer"
    log = stack.output.read_text()
    assert '"failedFrom": "' in log  # an invocation reported a failed record
    assert "records skipped after" not in log
    assert top_counts() == sent_per_route


def test_answers_stay_exact_by_class_and_latency_through_failing_retried_batches(
    stack, proxy, emulator
):
    """docs/monitoring.md: each hit's status class and latency count once in its buckets,
    however the aggregator's transactions fail and its batches are retried and bisected."""
    client = boto3.client("dynamodb", endpoint_url=emulator)
    table = counter_table(client)
    rng = random.Random(11)  # noqa: S311 (reproducible data, not a secret)
    proxy.clear_plan()  # not what an earlier test left planned
    proxy.plan(*fault_plan(rng))
    routes = ["/answered/a", "/answered/b", "/answered/c"]
    sent = [
        (routes[i % 3], rng.choice([200, 200, 200, 404, 503]), rng.randrange(300))
        for i in range(90)
    ]
    before = len(proxy.forwarded)
    started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    with ThreadPoolExecutor(8) as pool:
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        list(pool.map(lambda s: answer_hit(table, s[0], now, *s[1:], client=client), sent))
    ended = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())

    def day_point(route: str) -> dict:
        query = {"series": "day", "from": started, "to": ended, "route": route}
        return {"count": 0} | next((p for p in stats(stack, **query)["points"] if p["count"]), {})

    def answered() -> dict:
        top = {r["route"]: r for r in stats(stack, "/_stats/top", limit="100")["routes"]}
        return {route: top.get(route, {}).get("answered") for route in routes}

    sent_per_route = {route: sum(1 for r, _, _ in sent if r == route) for route in routes}
    # Buckets first, then the top (merged after them, retried with its batch): wait for both.
    deadline = time.monotonic() + BOUND
    while (
        sum(day_point(route)["count"] for route in routes) < len(sent)
        or answered() != sent_per_route
    ):
        assert time.monotonic() < deadline, stack.output.read_text()[-3000:]
        time.sleep(0.5)
    for route in routes:
        mine = [(status, ms) for r, status, ms in sent if r == route]
        point = day_point(route)
        classes = collections.Counter(f"{status // 100}xx" for status, _ in mine)
        assert point["status"] == {c: classes.get(c, 0) for c in ("2xx", "3xx", "4xx", "5xx")}
        assert point["latencyMs"]["mean"] == round(sum(ms for _, ms in mine) / len(mine), 1)
        record = stats(stack, route=route)
        assert record["status"] == point["status"]  # the counter item's, all time
    # the faults happened to the aggregator's calls (answers lost or turned into 500s after
    # the emulator answered): a lost answer of an applied transaction, deterministically,
    # is tests/unit/test_usage_aggregator.py's
    assert [f for f in proxy.forwarded[before:] if f.action != FORWARD]
    top = {r["route"]: r for r in stats(stack, "/_stats/top", limit="100")["routes"]}
    for route in routes:
        mine = [status for r, status, _ in sent if r == route]
        assert top[route]["answered"] == len(mine)
        assert top[route]["errorRate"]["5xx"] == round(mine.count(503) / len(mine), 4)


def iso(epoch: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


def points_of(stack, kind: str, **query: str) -> dict:
    """Every route's hits per bucket (the all-routes series), its non-zero points."""
    points = stats(stack, series=kind, **query)["points"]
    return {p["start"]: p["count"] for p in points if p["count"]}


def client_hit(dynamodb, table: str, route: str, at: str, client: str) -> dict:
    """The counter's one UpdateItem for a hit of `client` (ADD count, SET lastSeen and
    firstSeen, SET lastClient: handler/counter.py with ClientIdentity on), sent straight to
    the emulator so that many threads can make hits while the aggregator's calls fail."""
    return dynamodb.update_item(
        TableName=table,
        Key={"route": {"S": route}},
        UpdateExpression="ADD #count :one SET lastSeen = :now,"
        " firstSeen = if_not_exists(firstSeen, :now), lastClient = :client",
        ExpressionAttributeNames={"#count": "count"},
        ExpressionAttributeValues={":one": {"N": "1"}, ":now": {"S": at}, ":client": {"S": client}},
        ReturnValues="ALL_NEW",
    )["Attributes"]


def test_client_usage_stays_exact_through_failing_retried_batches(stack, proxy, emulator):
    """docs/usage-billing.md: hits that name their client (the counter's write, made here
    by client_hit: this stack's counter runs without ClientIdentity) count once in each
    client's month, days and routes, however the aggregator's transactions fail, and the
    usage endpoint's totals equal the sums of its days and routes."""
    client = boto3.client("dynamodb", endpoint_url=emulator)
    table = counter_table(client)
    rng = random.Random(11)  # noqa: S311 (reproducible data, not a secret)
    proxy.clear_plan()  # not what an earlier test left planned
    proxy.plan(*fault_plan(rng))
    clients = ["acme", "k-3", 'Zoë, "the" shop']
    routes = ["/billed/a", "/billed/b", "/billed/c,d"]
    sent = [(routes[i % 3], rng.choice(clients)) for i in range(90)]
    before = len(proxy.forwarded)

    def send(hit_of: tuple) -> str:
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        return client_hit(client, table, hit_of[0], now, hit_of[1])["lastSeen"]["S"]

    with ThreadPoolExecutor(8) as pool:
        stamps = list(pool.map(send, sent))
    made = [(route, who, stamp[:7]) for (route, who), stamp in zip(sent, stamps, strict=True)]
    months = {month for _, _, month in made}
    want = collections.Counter((who, month) for _, who, month in made)

    def usage(who: str, month: str) -> dict:
        return stats(stack, "/_stats/usage", client=who, month=month)

    deadline = time.monotonic() + BOUND
    while sum(usage(w, m)["hits"] for w in clients for m in months) < len(sent):
        assert time.monotonic() < deadline, stack.output.read_text()[-3000:]
        time.sleep(0.5)
    for month in months:
        listed = {
            c["client"]: c["hits"] for c in stats(stack, "/_stats/usage", month=month)["clients"]
        }
        for who in clients:
            mine = usage(who, month)
            assert mine["hits"] == want[(who, month)] == listed.get(who, 0), (who, month)
            assert sum(d["hits"] for d in mine["days"]) == mine["hits"]
            assert {r["route"]: r["hits"] for r in mine["routes"]} == dict(
                collections.Counter(r for r, w, m in made if (w, m) == (who, month))
            )
    # the faults happened to the aggregator's calls (answers lost or turned into 500s after
    # the emulator answered); a lost answer of an applied transaction, deterministically,
    # is tests/unit/test_usage_aggregator.py's
    assert [f for f in proxy.forwarded[before:] if f.action != FORWARD]
