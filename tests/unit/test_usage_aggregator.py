"""Client usage buckets of the aggregator (docs/usage-billing.md): each counted hit whose
record names its client (lastClient) adds one to that client's buckets, per route and in
all, per hour, day and month, in the transaction that counts it in its route's bucket.

Hits are counted by the real counter's UpdateItem (naming its client: lastClient) into
in-process moto with the
template's stream; the records go to the aggregator as Lambda delivers them.
"""

import collections
import json
import random
import time

import boto3
import pytest

from local.streams import stream_event, window_event
from tests.conftest import ROOT, lambda_context, load_module, stream_records
from tests.unit.test_aggregator import (
    EXPECTED,
    clear,
    epoch,
    hits,
    lose_connections_for,
    lose_the_first_answer,
    run,
    series_items,
)

# (route, time, client): three clients (one id with a comma, a quote and non-ASCII), and a
# hit without a client (its route's first: an item keeps the lastClient of its last hit that
# named one); over two hours, two days and two months
CLIENT_HITS = [
    ("/a", "2026-11-30T23:10:00Z", "acme"),
    ("/a", "2026-12-01T03:10:00Z", "acme"),
    ("/b", "2026-12-01T03:20:00Z", 'Zoë, "the" shop'),
    ("/a", "2026-12-01T03:59:59Z", "acme"),
    ("/a", "2026-12-01T04:00:00Z", 'Zoë, "the" shop'),
    ("/d", "2026-12-01T04:30:00Z", None),
    ("/a", "2026-12-01T04:45:00Z", "acme"),
    ("/a", "2026-12-02T00:05:00Z", "k-3"),
    ("/c", "2026-12-02T00:06:00Z", "acme"),
]


def expected_usage(sent: list) -> dict:
    """(kind, client, route or None, period) -> hits, from the hits sent."""
    want: collections.Counter = collections.Counter()
    for route, at, who in sent:
        if who is None:
            continue
        for period in (f"h#{at[:13]}", f"d#{at[:10]}", f"m#{at[:7]}"):
            want[("client-route", who, route, period)] += 1
            want[("client", who, None, period)] += 1
    return dict(want)


def usage(table: str) -> dict:
    """The client items of the series table read as expected_usage() says them, their shard
    parts summed."""
    found: collections.Counter = collections.Counter()
    for (route, bucket), item in series_items(table).items():
        if not route.startswith(("#usage#", "#clients#")):
            continue
        who, n = item["client"]["S"], int(item["hits"]["N"])
        if route.startswith("#clients#"):
            found[("client", who, None, "m#" + route.removeprefix("#clients#"))] += n
        elif bucket.startswith("r#"):
            found[("client-route", who, item["routeName"]["S"], "m#" + bucket[2:9])] += n
        elif "/" in route:  # "#usage#<client key><route>"
            assert item["routeName"]["S"] == route[route.index("/") :]
            found[("client-route", who, item["routeName"]["S"], bucket)] += n
        else:
            found[("client", who, None, "#".join(bucket.split("#")[:2]))] += n
    return dict(found)


def count_with_clients(sent: list, name: str = "counter_for_usage") -> list:
    """The hits counted by the counter (naming their clients); the stream's records."""
    counter = load_module(ROOT / "handler" / "counter.py", name)
    for route, at, client in sent:
        counter.count_hit(route, epoch(at), time.monotonic() + 4, client=client)
    arn = boto3.client("dynamodb").describe_table(TableName="route-counter-test")["Table"][
        "LatestStreamArn"
    ]
    return stream_event(stream_records(arn), arn)["Records"]


@pytest.fixture
def clients_on(stream_tables, monkeypatch):
    """The aggregator with ClientIdentity on (the stack passes CLIENT_IDENTITY)."""
    monkeypatch.setenv("CLIENT_IDENTITY", "header:X-Client")
    return load_module(ROOT / "handler" / "aggregator.py", "aggregator_with_clients")


def test_each_hit_of_a_client_counts_once_in_its_client_buckets(clients_on, stream_tables):
    records = count_with_clients(CLIENT_HITS)
    calls = []
    clients_on.dynamodb.meta.events.register(
        "before-parameter-build.dynamodb", lambda model, **_: calls.append(model.name)
    )
    assert run(clients_on, records) == {"batchItemFailures": []}
    assert usage(stream_tables.series) == expected_usage(CLIENT_HITS)
    # the same one transaction as without clients: client items ride in it
    assert calls.count("TransactWriteItems") == 1
    # the route buckets are the same as ever; the hit without a client is in them
    assert hits(stream_tables.series)[("/d", "h#2026-12-01T04")] == 1


def test_client_hour_items_expire_like_the_route_hours_and_days_and_months_never(
    clients_on, stream_tables
):
    run(clients_on, count_with_clients(CLIENT_HITS))
    items = series_items(stream_tables.series)
    seen = set()
    for (route, bucket), item in items.items():
        if not route.startswith(("#usage#", "#clients#")):
            continue
        hourly = bucket.startswith("h#")
        seen.add(hourly)
        if hourly:
            hour_end = epoch(bucket[2:15] + ":00:00Z") + 3600
            assert int(item["expiresAt"]["N"]) == hour_end + 30 * 86400, (route, bucket)
        else:
            assert "expiresAt" not in item, (route, bucket)
    assert seen == {True, False}


def test_without_client_identity_no_client_item_is_written(aggregator, stream_tables):
    """CLIENT_IDENTITY unset (ClientIdentity=none): records that name a client cost nothing
    more, the transaction holds the route and all-routes items alone."""
    records = count_with_clients(CLIENT_HITS)
    sizes = []
    aggregator.dynamodb.meta.events.register(
        "before-parameter-build.dynamodb.TransactWriteItems",
        lambda params, **_: sizes.append(len(params["TransactItems"])),
    )
    assert run(aggregator, records) == {"batchItemFailures": []}
    assert usage(stream_tables.series) == {}
    routes = {p for p in series_items(stream_tables.series) if not p[0].startswith("#")}
    alls = {p for p in series_items(stream_tables.series) if p[0] == "#all"}
    assert sizes == [len(routes) + len(alls)]


def test_retried_split_duplicated_and_reordered_batches_count_each_client_hit_once(
    clients_on, stream_tables
):
    records = count_with_clients(CLIENT_HITS)
    want = expected_usage(CLIENT_HITS)
    shuffled = random.Random(23)  # noqa: S311 (a reproducible order, not a secret)
    for size in (1, 2, 4):
        clear(stream_tables.series)
        batches = [records[i : i + size] for i in range(0, len(records), size)] * 2
        shuffled.shuffle(batches)
        for batch in batches:
            assert run(clients_on, list(reversed(batch))) == {"batchItemFailures": []}
        assert usage(stream_tables.series) == want, size
    assert run(clients_on, records) == {"batchItemFailures": []}  # a replay of it all
    assert usage(stream_tables.series) == want


def test_a_lost_answer_to_a_transaction_counts_no_client_hit_twice(clients_on, stream_tables):
    lost = lose_the_first_answer(clients_on)
    assert run(clients_on, count_with_clients(CLIENT_HITS)) == {"batchItemFailures": []}
    (transaction,) = lost
    assert any(
        a["Update"]["Key"]["route"]["S"].startswith("#usage#") for a in transaction["TransactItems"]
    )
    assert usage(stream_tables.series) == expected_usage(CLIENT_HITS)


def test_a_connection_lost_mid_batch_writes_no_client_hit_of_it_until_retried(
    clients_on, stream_tables
):
    records = count_with_clients(CLIENT_HITS)
    clients_on.MOST_ITEMS = 12  # several transactions, those of /c lose their connection
    lose_connections_for(clients_on, "/c")
    result = run(clients_on, records)
    assert result["batchItemFailures"]
    got = usage(stream_tables.series)
    assert ("client-route", "acme", "/c", "m#2026-12") not in got
    assert got[("client", "acme", None, "m#2026-11")] == 1  # other transactions went through
    # Lambda retries from the record reported, in a container without the fault
    sequences = [r["dynamodb"]["SequenceNumber"] for r in records]
    first = sequences.index(result["batchItemFailures"][0]["itemIdentifier"])
    fresh = load_module(ROOT / "handler" / "aggregator.py", "aggregator_with_clients_after")
    assert run(fresh, records[first:]) == {"batchItemFailures": []}
    assert usage(stream_tables.series) == expected_usage(CLIENT_HITS)


def test_many_clients_on_one_route_bucket_take_several_transactions_and_stay_exact(
    clients_on, stream_tables
):
    """60 clients on one route in one hour: 2 route items and 4 + 2 client items each, more
    than one transaction takes; each holds at most 100 items and counts the records it
    takes, the rest the next."""
    sent = [("/hot", f"2026-12-01T03:{i % 60:02d}:00Z", f"client-{i:02d}") for i in range(60)]
    records = count_with_clients(sent)
    sizes = []
    clients_on.dynamodb.meta.events.register(
        "before-parameter-build.dynamodb.TransactWriteItems",
        lambda params, **_: sizes.append(len(params["TransactItems"])),
    )
    assert run(clients_on, records) == {"batchItemFailures": []}
    assert len(sizes) > 1 and max(sizes) <= 100
    assert usage(stream_tables.series) == expected_usage(sent)
    assert hits(stream_tables.series) == {
        ("/hot", "h#2026-12-01T03"): 60,
        ("/hot", "d#2026-12-01"): 60,
    }


def test_each_shard_adds_to_its_own_parts_of_the_client_totals(clients_on, stream_tables):
    """Per-client totals are written from every shard whose routes a client hits: like the
    all-routes totals, each shard adds to its own part (two shards' transactions share no
    item), and the parts sum to the exact totals."""
    records = count_with_clients(CLIENT_HITS)
    arn = stream_tables.stream_arn
    shards = ["shardId-00000001796097590000-0a1b2c3d", "shardId-00000001796097590001-9f8e7d6c"]
    written: dict[str, set] = {shard: set() for shard in shards}
    keys: list = []
    clients_on.dynamodb.meta.events.register(
        "provide-client-params.dynamodb.TransactWriteItems",
        lambda params, **_: keys.extend(
            (a["Update"]["Key"]["route"]["S"], a["Update"]["Key"]["bucket"]["S"])
            for a in params["TransactItems"]
        ),
    )
    # a route's records are all in one shard (the stream shards by the item's key)
    on = {shards[0]: [], shards[1]: []}
    for r in records:
        on[shards[r["dynamodb"]["NewImage"]["route"]["S"] != "/a"]].append(r)
    batches = [(shard, got[i : i + 2]) for shard, got in on.items() for i in range(0, len(got), 2)]
    for shard, batch in batches * 2:
        before = len(keys)
        event = window_event(batch, arn, shard, epoch("2026-12-01T00:00:00Z"), 900, {})
        assert clients_on.handler(event, lambda_context())["batchItemFailures"] == []
        written[shard] |= {k for k in keys[before:] if k[0].startswith("#")}
    assert written[shards[0]] and written[shards[1]]
    assert not written[shards[0]] & written[shards[1]]
    assert usage(stream_tables.series) == expected_usage(CLIENT_HITS)


def test_route_buckets_stay_exact_with_clients_on(clients_on, stream_tables):
    """The hits of tests/unit/test_aggregator.py, now with clients: the route buckets are the
    same as without."""
    from tests.unit.test_aggregator import HITS

    sent = [(route, at, "acme" if i % 2 else "k-3") for i, (route, at) in enumerate(HITS)]
    assert run(clients_on, count_with_clients(sent)) == {"batchItemFailures": []}
    assert hits(stream_tables.series) == EXPECTED
    assert usage(stream_tables.series) == expected_usage(sent)
    line_items = {k for k in series_items(stream_tables.series) if k[0].startswith("#usage#")}
    assert all(json.dumps(k).isascii() for k in line_items)  # keys are hex digests and routes
