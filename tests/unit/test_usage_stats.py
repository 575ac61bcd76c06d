"""GET <stats>/usage (docs/usage-billing.md): a client's month (total, days, routes) or every
client's month total, as JSON or CSV, read from what the real aggregator wrote from the real
counter's writes (each naming its client: lastClient)."""

import collections
import csv
import html
import io
import json
import random
import time

import pytest

from local.streams import window_event
from tests.conftest import ROOT, api_event, lambda_context, load_module
from tests.unit.test_private_stats import ask, aws, deploy, stats_of  # noqa: F401 (fixture)
from tests.unit.test_stats import BROWSER_ACCEPT
from tests.unit.test_usage_aggregator import CLIENT_HITS, count_with_clients, epoch, run

SHARDS = ["shardId-00000001796097590000-0a1b2c3d", "shardId-00000001796097590001-9f8e7d6c"]


@pytest.fixture
def with_clients(stream_tables, monkeypatch):
    monkeypatch.setenv("CLIENT_IDENTITY", "apikey")
    aggregator = load_module(ROOT / "handler" / "aggregator.py", "aggregator_for_usage")
    stats = load_module(ROOT / "handler" / "stats.py", "stats_for_usage")
    return aggregator, stats


def get(stats, query: dict, accept: str = "application/json") -> dict:
    event = api_event("/_stats/usage", query=query, headers={"Accept": accept})
    return stats.handler(event, lambda_context("StatsFunction"))


def body(stats, query: dict) -> dict:
    answer = get(stats, query)
    assert answer["statusCode"] == 200, answer
    return json.loads(answer["body"])


def aggregate_in_shards(aggregator, records: list, seed: int = 3) -> None:
    """Deliver the records as two shards would (a route's records in one shard), in small
    batches, each twice, in a shuffled order."""
    rng = random.Random(seed)  # noqa: S311 (a reproducible order, not a secret)
    batches = []
    for shard in SHARDS:
        mine = [r for r in records if hash_shard(r) == shard]
        batches += [(shard, mine[i : i + 25]) for i in range(0, len(mine), 25)]
    batches *= 2
    rng.shuffle(batches)
    arn = records[0]["eventSourceARN"]
    for shard, batch in batches:
        event = window_event(batch, arn, shard, epoch("2026-11-30T00:00:00Z"), 900, {})
        assert aggregator.handler(event, lambda_context())["batchItemFailures"] == []


def hash_shard(record: dict) -> str:
    return SHARDS[len(record["dynamodb"]["NewImage"]["route"]["S"]) % 2]


def hits_of(n: int, seed: int = 11) -> list:
    """n hits (route, time, client) of 5 clients on 8 routes (two with commas)
    over 4 days across a month's end."""
    rng = random.Random(seed)  # noqa: S311 (reproducible data, not a secret)
    routes = [f"/r/{i}" for i in range(6)] + ["/a,b", "/x;y=1,2"]
    clients = ["acme", "k-3", 'Zoë, "the" shop', "=HYPERLINK(1)", "@sum"]
    start = epoch("2026-11-29T00:00:00Z")
    times = sorted(start + rng.randrange(4 * 86400) for _ in range(n))
    return [
        (
            rng.choice(routes),
            time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t)),
            rng.choice(clients),
        )
        for t in times
    ]


def test_a_clients_month_is_its_total_its_days_and_its_routes(with_clients):
    aggregator, stats = with_clients
    assert run(aggregator, count_with_clients(CLIENT_HITS)) == {"batchItemFailures": []}
    acme = body(stats, {"client": "acme", "month": "2026-12"})
    assert acme["month"] == "2026-12" and acme["client"] == "acme"
    assert acme["hits"] == 4
    assert {r["route"]: r["hits"] for r in acme["routes"]} == {"/a": 3, "/c": 1}
    days = {d["day"]: d["hits"] for d in acme["days"]}
    assert len(days) == 31 and days["2026-12-01"] == 3 and days["2026-12-02"] == 1
    assert sum(days.values()) == 4
    assert acme["next"] is None
    november = body(stats, {"client": "acme", "month": "2026-11"})
    assert november["hits"] == 1 and len(november["days"]) == 30
    clients = body(stats, {"month": "2026-12"})
    assert clients == {
        "month": "2026-12",
        "clients": [
            {"client": "acme", "hits": 4},
            {"client": 'Zoë, "the" shop', "hits": 2},
            {"client": "k-3", "hits": 1},
        ],
        "next": None,
    }
    # a client with no hits that month: zeros, not an error
    assert body(stats, {"client": "nobody", "month": "2026-12"})["hits"] == 0


def test_month_totals_equal_their_days_and_routes_and_every_clients_page(with_clients):
    """Real counter writes, aggregated by two shards in shuffled, duplicated batches: for
    every client and month, the total is the sum of its days and of its routes (read page by
    page), the listing's total is the same, and each is the count of hits sent."""
    aggregator, stats = with_clients
    sent = hits_of(80)
    aggregate_in_shards(aggregator, count_with_clients(sent))
    want = collections.Counter((who, at[:7]) for _, at, who in sent)
    want_routes = collections.Counter((who, at[:7], route) for route, at, who in sent)
    for month in ("2026-11", "2026-12"):
        listed, after = {}, None
        while True:  # every client of the month, two a page
            page = body(stats, {"month": month, "limit": "2", **({"next": after} if after else {})})
            assert len(page["clients"]) <= 2
            for c in page["clients"]:
                assert c["client"] not in listed
                listed[c["client"]] = c["hits"]
            after = page["next"]
            if after is None:
                break
        assert listed == {who: n for (who, m), n in want.items() if m == month}
        for who, total in listed.items():
            routes, after = {}, None
            while True:
                query = {"month": month, "client": who, "limit": "3"}
                page = body(stats, {**query, **({"next": after} if after else {})})
                assert page["hits"] == total
                assert sum(d["hits"] for d in page["days"]) == total
                routes.update({r["route"]: r["hits"] for r in page["routes"]})
                after = page["next"]
                if after is None:
                    break
            assert sum(routes.values()) == total
            assert routes == {
                r: n for (w, m, r), n in want_routes.items() if (w, m) == (who, month)
            }


def csv_rows(answer: dict) -> list[dict]:
    assert answer["headers"]["Content-Type"] == "text/csv; charset=utf-8; header=present"
    assert answer["body"].endswith("\r\n") and "\n" not in answer["body"].replace("\r\n", "")
    return list(csv.DictReader(io.StringIO(answer["body"], newline="")))


def test_the_csv_reconciles_with_the_json_and_the_per_route_totals(with_clients):
    aggregator, stats = with_clients
    sent = hits_of(80, seed=5)
    aggregate_in_shards(aggregator, count_with_clients(sent))
    month = "2026-12"
    listing = body(stats, {"month": month})
    as_csv = csv_rows(get(stats, {"month": month, "format": "csv"}))
    assert [r["kind"] for r in as_csv] == ["client"] * len(listing["clients"])
    # the same clients and hits; ids a spreadsheet would run get a leading apostrophe
    shown = {"=HYPERLINK(1)": "'=HYPERLINK(1)", "@sum": "'@sum"}
    assert [(r["client"], int(r["hits"])) for r in as_csv] == [
        (shown.get(c["client"], c["client"]), c["hits"]) for c in listing["clients"]
    ]
    by_route: collections.Counter = collections.Counter()
    for c in listing["clients"]:
        one = body(stats, {"month": month, "client": c["client"]})
        rows = csv_rows(get(stats, {"month": month, "client": c["client"]}, "text/csv"))
        (total,) = [r for r in rows if r["kind"] == "total"]
        assert int(total["hits"]) == one["hits"] == c["hits"]
        days = [r for r in rows if r["kind"] == "day"]
        assert [(r["day"], int(r["hits"])) for r in days] == [
            (d["day"], d["hits"]) for d in one["days"]
        ]
        routes = [r for r in rows if r["kind"] == "route"]
        assert [(r["route"], int(r["hits"])) for r in routes] == [
            (x["route"], x["hits"]) for x in one["routes"]
        ]
        assert {r["month"] for r in rows} == {month}
        by_route.update({r["route"]: int(r["hits"]) for r in routes})
    # every hit has a client here: the clients' routes add up to each route's own month
    for route in {r for r, _, _ in sent}:
        query = {"route": route, "series": "day", "from": "2026-12-01", "to": "2026-12-31"}
        event = api_event("/_stats", query=query)
        points = json.loads(stats.handler(event, lambda_context("StatsFunction"))["body"])["points"]
        assert sum(p["count"] for p in points) == by_route[route], route
    assert by_route["/a,b"] and by_route["/x;y=1,2"]  # quoted in the CSV, and read back


def test_csv_cells_that_a_spreadsheet_would_run_are_made_text(with_clients):
    _, stats = with_clients
    assert [stats.csv_cell(v) for v in ("=1+1", "+1", "-1", "@A1", "\tx", "\rx", "a=b", 7)] == [
        "'=1+1",
        "'+1",
        "'-1",
        "'@A1",
        "'\tx",
        "'\rx",
        "a=b",
        "7",
    ]


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ({"month": "2026-13"}, "'month'"),
        ({"month": "2026-1"}, "'month'"),
        ({"month": "26-12"}, "'month'"),
        ({"client": "x" * 257}, "'client'"),
        ({"client": "a\x01b"}, "'client'"),
        ({"limit": "0"}, "'limit'"),
        ({"limit": "1001"}, "'limit'"),
        ({"next": "not-a-token"}, "'next'"),
        ({"format": "xml"}, "'format'"),
        ({"route": "/a"}, "unknown parameter"),
    ],
)
def test_bad_usage_queries_are_400_json(with_clients, query, message):
    _, stats = with_clients
    answer = get(stats, query, "text/csv")
    assert answer["statusCode"] == 400
    assert answer["headers"]["Content-Type"] == "application/json"
    assert message in json.loads(answer["body"])["error"]


def calls_of(stats) -> list:
    calls: list = []
    stats.dynamodb.meta.events.register(
        "before-parameter-build.dynamodb", lambda model, **_: calls.append(model.name)
    )
    return calls


def test_a_months_read_is_three_queries_and_a_page_of_clients_one_whatever_the_traffic(
    with_clients,
):
    aggregator, stats = with_clients
    measured = []
    done = 0
    for n, seed in ((10, 1), (60, 2)):  # and more: the same calls
        records = count_with_clients(hits_of(n, seed), f"c{n}")[done:]
        done += len(records)
        for i in range(0, len(records), 100):
            assert run(aggregator, records[i : i + 100]) == {"batchItemFailures": []}
        calls = calls_of(stats)
        body(stats, {"client": "acme", "month": "2026-12"})
        one_client = list(calls)
        calls.clear()
        body(stats, {"month": "2026-12"})
        measured.append((one_client, list(calls)))
    assert measured[0] == measured[1] == (["Query"] * 3, ["Query"])


def test_the_clients_view_in_a_browser(with_clients):
    aggregator, stats = with_clients
    run(aggregator, count_with_clients(CLIENT_HITS))
    page = get(stats, {"month": "2026-12"}, BROWSER_ACCEPT)
    assert page["headers"]["Content-Type"] == "text/html; charset=utf-8"
    html_text = page["body"]
    assert "Top clients" in html_text and "Zoë, &quot;the&quot; shop" in html_text
    assert "?month=2026-12&amp;client=acme" in html_text
    one = get(stats, {"month": "2026-12", "client": "acme"}, BROWSER_ACCEPT)["body"]
    assert "Hits per day" in one and "/a" in one and "<b>4</b> hits this month" in one


def test_usage_follows_private_stats(aws, monkeypatch):  # noqa: F811 (the fixture)
    stack = deploy({"PrivateStats": "true", "ClientIdentity": "header:X-Client"})
    stats = stats_of(stack, monkeypatch, "private_usage")
    refused = ask(stats, "/_stats/usage", query={"month": "2026-12"})
    assert refused["statusCode"] == 401
    as_csv = ask(stats, "/_stats/usage", query={"format": "csv"}, accept="text/csv")
    assert as_csv["statusCode"] == 401
    token = f"Bearer {stack.token}"
    allowed = ask(stats, "/_stats/usage", authorization=token, query={"month": "2026-12"})
    assert allowed["statusCode"] == 200
    assert json.loads(allowed["body"]) == {"month": "2026-12", "clients": [], "next": None}


@pytest.mark.parametrize("identity", ["none", ""])
def test_usage_with_client_identity_off_says_so_instead_of_an_empty_month(
    stream_tables, monkeypatch, identity
):
    """ClientIdentity=none (the default; "" as the variable unset): no hit names its client,
    so /usage answers 404 naming the parameter, as the series reads do with Analytics=off;
    never an empty month that reads as "nobody used it"."""
    monkeypatch.setenv("CLIENT_IDENTITY", identity)
    stats = load_module(ROOT / "handler" / "stats.py", f"stats_clients_off_{identity or 'unset'}")
    said = (
        "usage per client is off for this stack (ClientIdentity=none): no hit names its "
        "client; set ClientIdentity to apikey, authorizer or header:<Name> (docs/clients.md)"
    )
    for query in ({}, {"month": "2026-12"}, {"client": "acme"}, {"format": "csv"}):
        answer = get(stats, query)
        assert answer["statusCode"] == 404, query
        assert json.loads(answer["body"]) == {"error": said}
    page = get(stats, {"client": "acme"}, BROWSER_ACCEPT)
    assert page["statusCode"] == 404
    assert page["headers"]["Content-Type"] == "text/html; charset=utf-8"
    assert "<h1>Error 404: Not Found</h1>" in page["body"] and html.escape(said) in page["body"]
    # its link leads to the dashboard (/_stats from /_stats/usage), not back to this error
    assert '<a href="../_stats">Back to the dashboard</a>' in page["body"]


def test_the_dashboard_links_the_clients_view_only_with_client_identity_on(
    stream_tables, monkeypatch
):
    pages = {}
    for identity in ("none", "header:X-Client"):
        monkeypatch.setenv("CLIENT_IDENTITY", identity)
        stats = load_module(ROOT / "handler" / "stats.py", f"stats_link_{identity[:4]}")
        event = api_event("/_stats", headers={"Accept": BROWSER_ACCEPT})
        pages[identity] = stats.handler(event, lambda_context("StatsFunction"))["body"]
    link = '<a href="_stats/usage">Clients this month</a>'
    assert link not in pages["none"] and link in pages["header:X-Client"]


def test_a_clients_csv_pages_carry_the_total_and_days_once(with_clients):
    """Every page's rows added up make the month once: the total and the days come with the
    first page, each later page has its routes only; the next page is in a Link header."""
    aggregator, stats = with_clients
    assert run(aggregator, count_with_clients(CLIENT_HITS)) == {"batchItemFailures": []}
    query = {"client": "acme", "month": "2026-12", "limit": "1", "format": "csv"}
    pages, after = [], None
    while True:
        answer = get(stats, {**query, **({"next": after} if after else {})})
        pages.append(csv_rows(answer))
        after = body(stats, {**query, "format": "json", **({"next": after} if after else {})})[
            "next"
        ]
        if after is None:
            assert "Link" not in answer["headers"]
            break
        assert answer["headers"]["Link"] == f'<?{query_text(query, after)}>; rel="next"'
    rows = [r for page in pages for r in page]
    assert [r["kind"] for r in rows].count("total") == 1
    assert sum(int(r["hits"]) for r in rows if r["kind"] == "day") == 4
    assert sum(int(r["hits"]) for r in rows if r["kind"] == "route") == 4
    assert len(pages) == 2 and all(r["kind"] == "route" for r in pages[1])


def query_text(query: dict, after: str) -> str:
    import urllib.parse

    ordered = [("month", query["month"]), ("client", query["client"]), ("limit", query["limit"])]
    return urllib.parse.urlencode([*ordered, ("next", after)])
