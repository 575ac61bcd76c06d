"""The aggregator: stream records of counted hits -> the highest count per route and bucket.

Hits are counted by the counter handler's own write into an in-process moto table with the
template's stream; the records are read back from that stream and delivered the way Lambda
delivers them (checked against Powertools' DynamoDBStreamModel).
"""

import calendar
import json
import random
import time

import boto3
import pytest
from aws_lambda_powertools.utilities.parser.models import DynamoDBStreamModel
from botocore.awsrequest import AWSResponse
from botocore.exceptions import ConnectionClosedError

from local.streams import stream_event, window_event
from tests.conftest import ROOT, lambda_context, load_module, stream_records

HOUR = 3600
DAY = 86400


class RawBody:
    """An HTTP body as botocore reads one."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    def stream(self, **_):
        yield self.data


def epoch(text: str) -> int:
    return calendar.timegm(time.strptime(text, "%Y-%m-%dT%H:%M:%SZ"))


# (route, time of the hit): 2 routes over 2 hours of one day and the next day
HITS = [
    ("/a", "2026-12-01T03:10:00Z"),
    ("/b", "2026-12-01T03:20:00Z"),
    ("/a", "2026-12-01T03:59:59Z"),
    ("/a", "2026-12-01T04:00:00Z"),
    ("/b", "2026-12-01T04:30:00Z"),
    ("/a", "2026-12-01T04:45:00Z"),
    ("/a", "2026-12-02T00:05:00Z"),
    ("/c", "2026-12-02T00:06:00Z"),
]
# hits per (route, bucket): each hit in the hour and the day of its own time
EXPECTED = {
    ("/a", "h#2026-12-01T03"): 2,
    ("/a", "h#2026-12-01T04"): 2,
    ("/a", "h#2026-12-02T00"): 1,
    ("/a", "d#2026-12-01"): 4,
    ("/a", "d#2026-12-02"): 1,
    ("/b", "h#2026-12-01T03"): 1,
    ("/b", "h#2026-12-01T04"): 1,
    ("/b", "d#2026-12-01"): 2,
    ("/c", "h#2026-12-02T00"): 1,
    ("/c", "d#2026-12-02"): 1,
}
# all routes per bucket: (hits, routes counted for the first time)
TOTALS = {
    "h#2026-12-01T03": (3, 2),
    "h#2026-12-01T04": (3, 0),
    "h#2026-12-02T00": (2, 1),
    "d#2026-12-01": (6, 2),
    "d#2026-12-02": (2, 1),
    "all": (8, 3),
}


@pytest.fixture
def counted(stream_tables) -> dict:
    """HITS counted by the counter's own UpdateItem; the stream's records as Lambda's event."""
    counter = load_module(ROOT / "handler" / "counter.py", "counter_for_stream")
    for route, at in HITS:
        counter.count_hit(route, epoch(at), time.monotonic() + 4)
    records = stream_records(stream_tables.stream_arn)
    event = stream_event(records, stream_tables.stream_arn)
    DynamoDBStreamModel.model_validate(event)  # the shape Lambda delivers
    return event


def series_items(table: str) -> dict:
    """Every item of the series table by (route, bucket)."""
    items = boto3.client("dynamodb").scan(TableName=table)["Items"]
    return {(i["route"]["S"], i["bucket"]["S"]): i for i in items}


def top_item(table: str, bucket: str = "all") -> tuple[dict, str] | None:
    """(route -> value, asOf) of a top item."""
    key = {"route": {"S": "#top"}, "bucket": {"S": bucket}}
    item = boto3.client("dynamodb").get_item(TableName=table, Key=key).get("Item")
    if item is None:
        return None
    return {r: int(c["N"]) for r, c in item["routes"]["M"].items()}, item["asOf"]["S"]


TOP = ({"/a": 5, "/b": 2, "/c": 1}, "2026-12-02T00:06:00Z")
DAY_TOPS = {
    "d#2026-12-01": ({"/a": 4, "/b": 2}, "2026-12-01T04:45:00Z"),
    "d#2026-12-02": ({"/a": 1, "/c": 1}, "2026-12-02T00:06:00Z"),
}


def hits(table: str) -> dict:
    """(route, bucket) -> hits of the routes' buckets."""
    return {
        key: int(item["hits"]["N"])
        for key, item in series_items(table).items()
        if not key[0].startswith("#")
    }


def totals(table: str) -> dict:
    """bucket -> (hits, new routes) of the all-routes items."""
    return {
        bucket: (int(item["hits"]["N"]), int(item["routes"]["N"]))
        for (route, bucket), item in series_items(table).items()
        if route == "#all"
    }


def assert_exact(table: str) -> None:
    assert hits(table) == EXPECTED
    assert totals(table) == TOTALS
    assert top_item(table) == TOP
    for bucket, top in DAY_TOPS.items():
        assert top_item(table, bucket) == top, bucket


def clear(table: str) -> None:
    client = boto3.client("dynamodb")
    for route, bucket in series_items(table):
        client.delete_item(TableName=table, Key={"route": {"S": route}, "bucket": {"S": bucket}})


def run(aggregator, records: list[dict]) -> dict:
    return aggregator.handler({"Records": records}, lambda_context("AggregatorFunction"))


def test_each_hit_counts_once_in_its_hour_and_day_for_its_route_and_for_all_routes(
    aggregator, stream_tables, counted, capsys
):
    calls = []
    aggregator.dynamodb.meta.events.register(
        "before-parameter-build.dynamodb",
        lambda model, params, **_: calls.append((model.name, params)),
    )
    assert run(aggregator, counted["Records"]) == {"batchItemFailures": []}
    assert_exact(stream_tables.series)
    # one read of the buckets, one transaction writing each (route, bucket) pair once with
    # the totals of the buckets it touched, then each top item read and written
    names = [name for name, _ in calls]
    assert names == ["BatchGetItem", "TransactWriteItems", *["GetItem", "UpdateItem"] * 3]
    written = [a["Update"]["Key"] for a in calls[1][1]["TransactItems"]]
    assert len(written) == len(EXPECTED) + len(TOTALS)
    (line,) = capsys.readouterr().out.splitlines()
    logged = json.loads(line)
    assert logged["level"] == "INFO"
    assert logged["buckets"] == logged["changed"] == len(EXPECTED)
    assert logged["topsChanged"] == 3


def test_hourly_buckets_expire_after_series_hourly_days_and_daily_ones_never(
    aggregator, stream_tables, counted
):
    run(aggregator, counted["Records"])
    items = series_items(stream_tables.series)
    for (route, bucket), item in items.items():
        if bucket.startswith("h#"):
            hour_end = epoch(bucket[2:] + ":00:00Z") + HOUR
            assert int(item["expiresAt"]["N"]) == hour_end + 30 * DAY, (route, bucket)
        else:
            assert "expiresAt" not in item, (route, bucket)


def test_retried_duplicated_and_out_of_order_batches_give_identical_buckets(
    aggregator, stream_tables, counted
):
    records = counted["Records"]
    assert run(aggregator, list(reversed(records))) == {"batchItemFailures": []}
    assert_exact(stream_tables.series)
    batches = [records[i : i + 3] for i in range(0, len(records), 3)]
    shuffled = random.Random(13)  # noqa: S311 (a reproducible order, not a secret)
    for _ in range(3):  # each time a new order, each batch delivered twice
        clear(stream_tables.series)
        order = batches * 2
        shuffled.shuffle(order)
        for batch in order:
            assert run(aggregator, list(reversed(batch))) == {"batchItemFailures": []}
        assert_exact(stream_tables.series)
    # and a replay of everything changes nothing
    assert run(aggregator, records) == {"batchItemFailures": []}
    assert_exact(stream_tables.series)


def lose_connections_for(aggregator, route: str) -> set:
    """Every transaction that writes one of the route's buckets loses its connection (after
    the SDK's own retries too); returns the (route, bucket) pairs they held."""
    dropped = set()

    def drop(request, **_):
        keys = [a["Update"]["Key"] for a in json.loads(request.body)["TransactItems"]]
        pairs = {(k["route"]["S"], k["bucket"]["S"]) for k in keys}
        if any(r == route for r, _ in pairs):
            dropped.update(p for p in pairs if not p[0].startswith("#"))
            raise ConnectionClosedError(endpoint_url=request.url)

    aggregator.dynamodb.meta.events.register_first("before-send.dynamodb.TransactWriteItems", drop)
    return dropped


def pairs_of(record: dict) -> set:
    image = record["dynamodb"]["NewImage"]
    route, at = image["route"]["S"], image["lastSeen"]["S"]
    return {(route, f"h#{at[:13]}"), (route, f"d#{at[:10]}")}


def test_each_shard_adds_to_its_own_parts_of_the_all_routes_items(
    aggregator, stream_tables, counted
):
    """With a tumbling window, Lambda names the batch's shard: two shards' transactions
    share no all-routes item (DynamoDB would cancel one of two that meet), and the parts
    sum to the totals however the batches are split, duplicated and ordered."""
    records, arn = counted["Records"], stream_tables.stream_arn
    shards = ["shardId-00000001796097590000-0a1b2c3d", "shardId-00000001796097590001-9f8e7d6c"]
    written: dict[str, set] = {shard: set() for shard in shards}
    batches = [(shards[i // 3 % 2], records[i : i + 3]) for i in range(0, len(records), 3)]
    order = batches * 2
    random.Random(17).shuffle(order)  # noqa: S311 (a reproducible order, not a secret)
    keys: list = []  # every TransactWriteItems' item keys, in order
    aggregator.dynamodb.meta.events.register(
        "provide-client-params.dynamodb.TransactWriteItems",
        lambda params, **_: keys.extend(
            (a["Update"]["Key"]["route"]["S"], a["Update"]["Key"]["bucket"]["S"])
            for a in params["TransactItems"]
        ),
    )
    for shard, batch in order:
        before = len(keys)
        event = window_event(batch, arn, shard, epoch("2026-12-01T00:00:00Z"), 900, {})
        assert aggregator.handler(event, lambda_context()) == {
            "state": {},
            "batchItemFailures": [],
        }
        written[shard] |= {key for key in keys[before:] if key[0] == "#all"}
    assert written[shards[0]] and written[shards[1]]
    assert not written[shards[0]] & written[shards[1]]
    assert all(
        bucket.count("#") == (1 if bucket.startswith("all") else 2)
        for _, bucket in written[shards[0]]
    )
    whole_bucket = load_module(ROOT / "handler" / "stats.py", "stats_for_parts").whole_bucket
    summed: dict = {}
    for bucket, (hit_count, routes) in totals(stream_tables.series).items():
        whole = whole_bucket(bucket)  # the stats' own rule
        was = summed.get(whole, (0, 0))
        summed[whole] = (was[0] + hit_count, was[1] + routes)
    assert summed == TOTALS
    assert hits(stream_tables.series) == EXPECTED


def test_a_fault_mid_batch_reports_the_first_record_of_the_failed_transaction(
    aggregator, stream_tables, counted, capsys
):
    records = counted["Records"]
    aggregator.MOST_ITEMS = 8  # several transactions, one of which loses its connection
    dropped = lose_connections_for(aggregator, "/c")
    result = run(aggregator, records)
    first = next(r for r in records if pairs_of(r) & dropped)
    sequence = first["dynamodb"]["SequenceNumber"]
    assert result == {"batchItemFailures": [{"itemIdentifier": sequence}]}
    line = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert line["level"] == "ERROR"
    assert "ConnectionClosedError" in line["error"]
    assert line["failedFrom"] == sequence
    # each day's top says as of the newest hit its written buckets counted
    for day in DAY_TOPS:
        written = {p for p in EXPECTED if p[1] == day} - dropped
        if written:
            newest = max(t for r, t in HITS if (r, "d#" + t[:10]) in written)
            assert top_item(stream_tables.series, day)[1] == newest, day
    # the other transactions were written; the dropped ones were not, nor their totals
    assert set(hits(stream_tables.series)) == set(EXPECTED) - dropped
    assert 0 < sum(hits(stream_tables.series).values()) < sum(EXPECTED.values())
    assert totals(stream_tables.series)["all"][0] < TOTALS["all"][0]

    # Lambda retries from the reported record; once the fault is gone, every bucket is exact.
    aggregator.dynamodb.meta.events.unregister("before-send.dynamodb.TransactWriteItems")
    retry_from = records.index(first)
    fresh = load_module(ROOT / "handler" / "aggregator.py", "aggregator_after_fault")
    assert run(fresh, records[retry_from:]) == {"batchItemFailures": []}
    assert_exact(stream_tables.series)


def test_a_transaction_whose_answer_was_lost_is_retried_and_counts_nothing_twice(
    aggregator, stream_tables, counted
):
    """The first transaction is applied, then its connection drops before the answer: the
    SDK sends it again, the conditions refuse it, the buckets are read again and found
    counted."""
    lost = lose_the_first_answer(aggregator)
    assert run(aggregator, counted["Records"]) == {"batchItemFailures": []}
    assert lost
    assert_exact(stream_tables.series)


def lose_the_first_answer(aggregator) -> list:
    """The first transaction reaches DynamoDB and is applied, then its connection drops
    before the answer (the SDK sends it again); returns the transactions that were lost."""
    applier = boto3.client("dynamodb")
    lost = []

    def apply_then_lose_the_answer(request, **_):
        if not lost:
            lost.append(json.loads(request.body))
            applier.transact_write_items(**lost[0])
            raise ConnectionClosedError(endpoint_url=request.url)

    aggregator.dynamodb.meta.events.register_first(
        "before-send.dynamodb.TransactWriteItems", apply_then_lose_the_answer
    )
    return lost


def test_a_lost_answer_to_a_transaction_on_existing_buckets_counts_the_totals_once(
    aggregator, stream_tables, counted
):
    """Every bucket the retried transaction writes exists already (the route's and the
    all-routes hour, day and all-time ones): its repeat must be refused because the ranges
    are no longer what was read, not let through because the items exist, which would add
    the all-routes totals twice."""
    records = counted["Records"]
    later = [records[2], records[5]]  # /a at 03:59:59 and 04:45: buckets the others make
    assert run(aggregator, [r for r in records if r not in later]) == {"batchItemFailures": []}
    assert set(hits(stream_tables.series)) == set(EXPECTED)
    assert set(totals(stream_tables.series)) == set(TOTALS)

    lost = lose_the_first_answer(aggregator)
    assert run(aggregator, later) == {"batchItemFailures": []}

    (transaction,) = lost
    written = {
        tuple(a["Update"]["Key"][k]["S"] for k in ("route", "bucket"))
        for a in transaction["TransactItems"]
    }
    assert written == {
        ("/a", "h#2026-12-01T03"),
        ("/a", "h#2026-12-01T04"),
        ("/a", "d#2026-12-01"),
        ("#all", "h#2026-12-01T03"),
        ("#all", "h#2026-12-01T04"),
        ("#all", "d#2026-12-01"),
        ("#all", "all"),
    }
    assert_exact(stream_tables.series)


def test_a_hit_committed_after_a_later_stamped_one_counts_in_its_own_hour(
    aggregator, stream_tables
):
    """Two containers either side of an hour: the hit stamped 04:00:00 commits first (count
    4), the one stamped 03:59:59 second (count 5). Each counts in the hour it carries."""
    counter = load_module(ROOT / "handler" / "counter.py", "counter_for_boundary")
    for at in ("03:00:00", "03:10:00", "03:20:00", "04:00:00", "03:59:59"):
        counter.count_hit("/x", epoch(f"2026-12-01T{at}Z"), time.monotonic() + 4)
    records = stream_event(stream_records(stream_tables.stream_arn), stream_tables.stream_arn)
    for batch in (records["Records"][:4], records["Records"][4:]):  # the boundary between
        assert run(aggregator, batch) == {"batchItemFailures": []}
    assert hits(stream_tables.series) == {
        ("/x", "h#2026-12-01T03"): 4,
        ("/x", "h#2026-12-01T04"): 1,
        ("/x", "d#2026-12-01"): 5,
    }
    assert totals(stream_tables.series)["h#2026-12-01T04"] == (1, 0)


def test_a_route_deleted_and_counted_again_keeps_counting_in_the_same_hour(
    aggregator, stream_tables
):
    counter = load_module(ROOT / "handler" / "counter.py", "counter_for_lives")
    client = boto3.client("dynamodb")
    for at in ("03:00:00", "03:01:00", "03:02:00"):
        counter.count_hit("/x", epoch(f"2026-12-01T{at}Z"), time.monotonic() + 4)
    client.delete_item(TableName=stream_tables.counter, Key={"route": {"S": "/x"}})
    for at in ("03:30:00", "03:31:00"):  # count 1 and 2 again, in a new life
        counter.count_hit("/x", epoch(f"2026-12-01T{at}Z"), time.monotonic() + 4)
    records = stream_event(stream_records(stream_tables.stream_arn), stream_tables.stream_arn)
    assert run(aggregator, records["Records"]) == {"batchItemFailures": []}
    assert hits(stream_tables.series)[("/x", "h#2026-12-01T03")] == 5
    assert totals(stream_tables.series)["all"] == (5, 2)  # counted for the first time twice


def test_a_batch_of_more_buckets_than_one_transaction_takes_is_exact(aggregator, stream_tables):
    counter = load_module(ROOT / "handler" / "counter.py", "counter_for_chunks")
    start = epoch("2026-12-01T03:00:00Z")
    for i in range(70):  # 70 routes: 140 (route, bucket) pairs + 3 totals
        counter.count_hit(f"/r{i}", start + i, time.monotonic() + 4)
    counter.count_hit("/r0", start + 3600, time.monotonic() + 4)
    records = stream_event(stream_records(stream_tables.stream_arn), stream_tables.stream_arn)
    sizes = []
    aggregator.dynamodb.meta.events.register(
        "before-parameter-build.dynamodb.TransactWriteItems",
        lambda params, **_: sizes.append(len(params["TransactItems"])),
    )
    assert run(aggregator, records["Records"]) == {"batchItemFailures": []}
    assert len(sizes) == 2 and max(sizes) <= 100
    assert totals(stream_tables.series) == {
        "h#2026-12-01T03": (70, 70),
        "h#2026-12-01T04": (1, 0),
        "d#2026-12-01": (71, 70),
        "all": (71, 70),
    }
    assert sum(hits(stream_tables.series).values()) == 71 * 2


def test_records_that_carry_no_count_are_skipped_not_retried(aggregator, stream_tables, counted):
    removed = dict(counted["Records"][-1], eventName="REMOVE")
    removed["dynamodb"] = {k: v for k, v in removed["dynamodb"].items() if k != "NewImage"}
    garbled = json.loads(json.dumps(counted["Records"][-1]))
    garbled["dynamodb"]["NewImage"]["lastSeen"] = {"S": "yesterday"}
    DynamoDBStreamModel.model_validate({"Records": [removed, garbled]})
    assert run(aggregator, [removed, garbled]) == {"batchItemFailures": []}
    assert series_items(stream_tables.series) == {}


def test_the_top_item_is_the_exact_top_n_whatever_the_batches_and_their_order(
    aggregator, stream_tables
):
    counter = load_module(ROOT / "handler" / "counter.py", "counter_for_top")
    rng = random.Random(5)  # noqa: S311 (reproducible data, not a secret)
    start = epoch("2026-12-01T00:00:00Z")
    sent = {}
    for i in range(120):
        route = f"/r{rng.randrange(12)}"
        sent[route] = sent.get(route, 0) + 1
        counter.count_hit(route, start + i, time.monotonic() + 4)
    records = stream_event(stream_records(stream_tables.stream_arn), stream_tables.stream_arn)[
        "Records"
    ]
    aggregator.TOP_SIZE = 4
    batches = [records[i : i + 9] for i in range(0, len(records), 9)] * 2
    rng.shuffle(batches)
    for batch in batches:
        assert run(aggregator, batch) == {"batchItemFailures": []}
    ranked = sorted(sent.items(), key=lambda rc: (-rc[1], rc[0]))[:4]
    assert top_item(stream_tables.series) == (dict(ranked), "2026-12-01T00:01:59Z")


def test_a_merge_that_loses_a_race_merges_again_and_keeps_both(aggregator, stream_tables, counted):
    """Invocations of two shards merge into the same item: the loser reads it again."""
    rival = boto3.client("dynamodb")
    raced = []

    def other_shard_merges_first(request, **_):
        if b'"#top"' in request.body and not raced:
            raced.append(True)
            rival.put_item(
                TableName=stream_tables.series,
                Item={
                    "route": {"S": "#top"},
                    "bucket": {"S": "all"},
                    "routes": {"M": {"/other": {"N": "3"}}},
                    "version": {"N": "1"},
                    "asOf": {"S": "2026-12-03T00:00:00Z"},
                },
            )

    aggregator.dynamodb.meta.events.register_first(
        "before-send.dynamodb.UpdateItem", other_shard_merges_first
    )
    assert run(aggregator, counted["Records"]) == {"batchItemFailures": []}
    assert raced
    assert top_item(stream_tables.series) == (
        {**TOP[0], "/other": 3},
        "2026-12-03T00:00:00Z",
    )


def test_a_fault_in_the_top_merge_retries_the_batch_from_its_first_counted_record(
    aggregator, stream_tables, counted
):
    def drop(request, **_):
        raise ConnectionClosedError(endpoint_url=request.url)

    aggregator.dynamodb.meta.events.register_first("before-send.dynamodb.GetItem", drop)
    records = counted["Records"]
    first = next(r for r in records if "count" in r["dynamodb"]["NewImage"])
    assert run(aggregator, records) == {
        "batchItemFailures": [{"itemIdentifier": first["dynamodb"]["SequenceNumber"]}]
    }
    assert hits(stream_tables.series) == EXPECTED  # the buckets were written
    assert totals(stream_tables.series) == TOTALS
    assert top_item(stream_tables.series) is None


def test_long_routes_keep_the_top_items_small_and_still_the_exact_leaders(
    aggregator, stream_tables
):
    """Routes of up to 1 KB would make a top item of 100 routes ~100 KB, rewritten by every
    batch: the ranking keeps the longest prefix that fits TOP_BYTES."""
    counter = load_module(ROOT / "handler" / "counter.py", "counter_for_long_routes")
    start = epoch("2026-12-01T03:00:00Z")
    sent = {}
    for i in range(20):
        route = f"/{i:02d}" + "x" * 996  # 1,000 bytes
        for _ in range(i + 1):
            counter.count_hit(route, start + len(sent), time.monotonic() + 4)
        sent[route] = i + 1
    records = stream_event(stream_records(stream_tables.stream_arn), stream_tables.stream_arn)
    batches = [records["Records"][i : i + 17] for i in range(0, len(records["Records"]), 17)]
    random.Random(3).shuffle(batches)  # noqa: S311 (a reproducible order, not a secret)
    for batch in batches * 2:
        assert run(aggregator, batch) == {"batchItemFailures": []}
    fits = aggregator.TOP_BYTES // (1000 + aggregator.TOP_ENTRY_BYTES)
    leaders = dict(sorted(sent.items(), key=lambda rc: -rc[1])[:fits])
    for bucket in ("all", "d#2026-12-01"):
        ranked, _ = top_item(stream_tables.series, bucket)
        assert ranked == leaders, bucket
        item = series_items(stream_tables.series)[("#top", bucket)]
        size = sum(len(r.encode()) + len(c["N"]) for r, c in item["routes"]["M"].items())
        assert size <= aggregator.TOP_BYTES


def test_a_transaction_cancelled_for_another_reason_than_a_race_is_reported_at_once(
    aggregator, stream_tables, counted, capsys
):
    """An item over DynamoDB's 400 KB, or throttling, cancels a transaction too: that is
    reported with its reason on the first try, not retried as a race five times."""
    sent = []

    def cancel(request, **_):
        sent.append(request.url)
        body = {
            "__type": "com.amazonaws.dynamodb.v20120810#TransactionCanceledException",
            "message": "Transaction cancelled, please refer cancellation reasons for specific "
            "reasons [None, ValidationError]",
            "CancellationReasons": [
                {"Code": "None"},
                {"Code": "ValidationError", "Message": "Item size has exceeded the maximum"},
            ],
        }
        return AWSResponse(request.url, 400, {}, RawBody(json.dumps(body).encode()))

    aggregator.dynamodb.meta.events.register_first(
        "before-send.dynamodb.TransactWriteItems", cancel
    )
    result = run(aggregator, counted["Records"])
    first = next(r for r in counted["Records"] if "count" in r["dynamodb"]["NewImage"])
    assert result == {
        "batchItemFailures": [{"itemIdentifier": first["dynamodb"]["SequenceNumber"]}]
    }
    assert len(sent) == 1
    line = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert line["error"] == "Cancelled: transaction cancelled: ValidationError"


def test_a_batch_short_of_time_writes_nothing_more_and_reports_where_to_resume(
    aggregator, stream_tables, counted
):
    context = lambda_context("AggregatorFunction")
    context.get_remaining_time_in_millis = lambda: aggregator.RESERVE_MS - 1
    result = aggregator.handler({"Records": counted["Records"]}, context)
    first = next(r for r in counted["Records"] if "count" in r["dynamodb"]["NewImage"])
    assert result == {
        "batchItemFailures": [{"itemIdentifier": first["dynamodb"]["SequenceNumber"]}]
    }
    assert hits(stream_tables.series) == {}
    assert run(aggregator, counted["Records"]) == {"batchItemFailures": []}
    assert_exact(stream_tables.series)


def test_writes_that_are_not_hits_count_in_no_bucket(aggregator, stream_tables):
    """A count set by hand, an item imported (a new one, or one overwriting a route with
    another life) change `count` but are no hit: only an INSERT of count 1 or a MODIFY to
    the old count + 1 in the same life is (the records' old and new images say which)."""
    counter = load_module(ROOT / "handler" / "counter.py", "counter_for_not_hits")
    client = boto3.client("dynamodb")
    table = stream_tables.counter

    def set_count(route: str, count: int) -> None:
        client.update_item(
            TableName=table,
            Key={"route": {"S": route}},
            UpdateExpression="SET #count = :count",
            ExpressionAttributeNames={"#count": "count"},
            ExpressionAttributeValues={":count": {"N": str(count)}},
        )

    def imported(route: str, count: int, first: str) -> None:
        item = {
            "route": {"S": route},
            "count": {"N": str(count)},
            "firstSeen": {"S": first},
            "lastSeen": {"S": "2026-12-01T03:30:00Z"},
        }
        client.put_item(TableName=table, Item=item)

    for at in ("03:00:00", "03:01:00", "03:02:00"):
        counter.count_hit("/x", epoch(f"2026-12-01T{at}Z"), time.monotonic() + 4)
    counter.count_hit("/y", epoch("2026-12-01T03:05:00Z"), time.monotonic() + 4)
    set_count("/x", 10)  # 3 -> 10 by hand
    counter.count_hit("/x", epoch("2026-12-01T03:10:00Z"), time.monotonic() + 4)  # 11: a hit
    set_count("/x", 0)  # a reset by hand
    imported("/imported", 57, "2026-01-01T00:00:00Z")  # INSERT of count 57
    imported("/y", 2, "2025-06-01T00:00:00Z")  # count 1 -> 2, but another life
    records = stream_event(stream_records(stream_tables.stream_arn), stream_tables.stream_arn)
    DynamoDBStreamModel.model_validate(records)
    # As DynamoDB writes them: an INSERT without an old image, a MODIFY with one.
    events = [r["eventName"] for r in records["Records"]]
    assert events == ["INSERT", "MODIFY", "MODIFY", "INSERT", *["MODIFY"] * 3, "INSERT", "MODIFY"]
    assert all(
        ("OldImage" in r["dynamodb"]) == (r["eventName"] == "MODIFY") for r in records["Records"]
    )

    assert run(aggregator, records["Records"]) == {"batchItemFailures": []}

    assert hits(stream_tables.series) == {
        ("/x", "h#2026-12-01T03"): 4,
        ("/x", "d#2026-12-01"): 4,
        ("/y", "h#2026-12-01T03"): 1,
        ("/y", "d#2026-12-01"): 1,
    }
    assert totals(stream_tables.series)["all"] == (5, 2)
    assert top_item(stream_tables.series)[0] == {"/x": 11, "/y": 1}


STREAM = "arn:aws:dynamodb:us-east-1:123456789012:table/t/stream/2026-12-01T00:00:00.000"


def record_of(event: str, new: dict | None, old: dict | None, view: str) -> dict:
    """A stream record as Lambda delivers one, with the images the view type carries."""
    change = {
        "Keys": {"route": (new or old)["route"]},
        "SequenceNumber": "100",
        "SizeBytes": 100,
        "StreamViewType": view,
        "ApproximateCreationDateTime": 1796094000,
    }
    if new is not None and view != "OLD_IMAGE":
        change["NewImage"] = new
    if old is not None and view == "NEW_AND_OLD_IMAGES":
        change["OldImage"] = old
    return {
        "eventID": "1",
        "eventName": event,
        "eventVersion": "1.1",
        "eventSource": "aws:dynamodb",
        "awsRegion": "us-east-1",
        "dynamodb": change,
        "eventSourceARN": STREAM,
    }


def image(count: int | None, first: str | None = "2026-12-01T03:00:00Z") -> dict:
    item = {"route": {"S": "/r"}, "lastSeen": {"S": "2026-12-01T03:30:00Z"}}
    if count is not None:
        item["count"] = {"N": str(count)}
    if first is not None:
        item["firstSeen"] = {"S": first}
    return item


@pytest.mark.parametrize(
    ("event", "new", "old", "view", "hit"),
    [
        ("INSERT", image(1), None, "NEW_AND_OLD_IMAGES", True),
        ("INSERT", image(57), None, "NEW_AND_OLD_IMAGES", False),  # an import
        ("MODIFY", image(6), image(5), "NEW_AND_OLD_IMAGES", True),
        ("MODIFY", image(0), image(5), "NEW_AND_OLD_IMAGES", False),  # SET count = 0
        ("MODIFY", image(5), image(5), "NEW_AND_OLD_IMAGES", False),  # SET lastSeen by hand
        ("MODIFY", image(9), image(5), "NEW_AND_OLD_IMAGES", False),
        ("MODIFY", image(6, "2026-01-01T00:00:00Z"), image(5), "NEW_AND_OLD_IMAGES", False),
        ("MODIFY", image(1), image(None, None), "NEW_AND_OLD_IMAGES", True),  # a bare item
        # A record the NEW_IMAGE stream wrote before the update: nothing to compare with.
        ("MODIFY", image(9), image(5), "NEW_IMAGE", True),
        ("REMOVE", None, image(5), "NEW_AND_OLD_IMAGES", False),
    ],
)
def test_a_record_is_a_hit_when_its_images_say_one_was_added(
    aggregator, stream_tables, event, new, old, view, hit
):
    record = record_of(event, new, old, view)
    DynamoDBStreamModel.model_validate({"Records": [record]})

    assert run(aggregator, [record]) == {"batchItemFailures": []}

    assert sum(hits(stream_tables.series).values()) == (2 if hit else 0)


# Two stream shards whose ids hash to different ranking parts (checked where used).
SHARD_A = "shardId-00000001796097590000-0a1b2c3d"
SHARD_B = "shardId-00000001796097590001-9f8e7d6c"


def test_each_shard_merges_its_own_ranking_part_and_a_batch_naming_none_the_old_item(
    aggregator, stream_tables, counted
):
    """A tumbling window names the batch's shard: its top items are "all#<part>" and
    "d#<day>#<part>" (a hash of the shard id modulo RANK_PARTS), so shards do not merge into
    the same item; a batch that names no shard merges into the un-suffixed items."""
    parts = {aggregator.shard_part(s, aggregator.RANK_PARTS) for s in (SHARD_A, SHARD_B)}
    assert len(parts) == 2 and all(p.startswith("#") for p in parts)
    records, arn = counted["Records"], stream_tables.stream_arn
    start = epoch("2026-12-01T00:00:00Z")
    for shard, batch in ((SHARD_A, records[:4]), (SHARD_B, records[4:])):
        assert aggregator.handler(
            window_event(batch, arn, shard, start, 900, {}), lambda_context()
        ) == {"state": {}, "batchItemFailures": []}
    assert run(aggregator, records[:2]) == {"batchItemFailures": []}
    part_a, part_b = (aggregator.shard_part(s, aggregator.RANK_PARTS) for s in (SHARD_A, SHARD_B))
    tops = {b: i for (r, b), i in series_items(stream_tables.series).items() if r == "#top"}
    assert sorted(tops) == sorted(
        [
            "all",
            "all" + part_a,
            "all" + part_b,
            "d#2026-12-01",
            "d#2026-12-01" + part_a,
            "d#2026-12-01" + part_b,
            "d#2026-12-02" + part_b,
        ]
    )
    ranked = {b: {r: int(v["N"]) for r, v in i["routes"]["M"].items()} for b, i in tops.items()}
    # the first 4 hits: /a 3 times (its count up to 3), /b once; then the rest
    assert ranked["all" + part_a] == {"/a": 3, "/b": 1}
    assert ranked["all" + part_b] == {"/a": 5, "/b": 2, "/c": 1}
    assert ranked["all"] == {"/a": 1, "/b": 1}
    assert all(i["leftOut"] == {"NULL": True} for i in tops.values())  # none left out


def test_a_ranking_part_keeps_the_first_route_it_left_out(aggregator, stream_tables, counted):
    """handler/stats.py combines the parts exactly only as far as each part is complete: a
    part that left routes out says which was first (the best-ranked), as (count, route)."""
    aggregator.TOP_SIZE = 2
    assert run(aggregator, counted["Records"]) == {"batchItemFailures": []}
    item = series_items(stream_tables.series)[("#top", "all")]
    assert {r: int(v["N"]) for r, v in item["routes"]["M"].items()} == {"/a": 5, "/b": 2}
    assert item["leftOut"] == {"L": [{"N": "1"}, {"S": "/c"}]}
    # a later merge that leaves /c out still says so, and the best route left out wins
    counter = load_module(ROOT / "handler" / "counter.py", "counter_for_left_out")
    counter.count_hit("/d", epoch("2026-12-02T00:07:00Z"), time.monotonic() + 4)
    counter.count_hit("/d", epoch("2026-12-02T00:08:00Z"), time.monotonic() + 4)
    later = stream_event(stream_records(stream_tables.stream_arn), stream_tables.stream_arn)
    assert run(aggregator, later["Records"][-1:]) == {"batchItemFailures": []}
    item = series_items(stream_tables.series)[("#top", "all")]
    assert item["leftOut"] == {"L": [{"N": "2"}, {"S": "/d"}]}  # ahead of /c (1)


def test_two_shards_merging_their_tops_at_the_same_moment_never_retry(
    aggregator, stream_tables, counted
):
    """Every batch of every shard merged the same top items: at 16 shards one merge in ten
    lost a race and was read and merged again (bench 9). Shards of different ranking parts
    never race: while shard A is about to write its top, shard B merges all of its own, and
    A's write goes through on its first try."""
    rival = load_module(ROOT / "handler" / "aggregator.py", "aggregator_of_shard_b")
    records, arn = counted["Records"], stream_tables.stream_arn
    start = epoch("2026-12-01T00:00:00Z")
    rival_done, top_reads = [], []

    def shard_b_merges_first(request, **_):
        if b'"#top"' in request.body and not rival_done:
            rival_done.append(
                rival.handler(window_event(records, arn, SHARD_B, start, 900, {}), None)
            )

    aggregator.dynamodb.meta.events.register_first(
        "before-send.dynamodb.UpdateItem", shard_b_merges_first
    )
    aggregator.dynamodb.meta.events.register(
        "before-parameter-build.dynamodb.GetItem", lambda params, **_: top_reads.append(params)
    )
    event = window_event(records, arn, SHARD_A, start, 900, {})
    assert aggregator.handler(event, lambda_context()) == {"state": {}, "batchItemFailures": []}
    assert rival_done == [{"state": {}, "batchItemFailures": []}]
    assert len(top_reads) == 3  # all time and two days, each read once: no merge retried


def test_an_old_full_top_item_merged_again_is_exact_only_down_to_its_last_route(
    aggregator, stream_tables, counted
):
    """A top item written before the rankings came in parts has no `leftOut`: holding
    TOP_SIZE routes, it may have left some out, unknown. A batch that names no shard merges
    into it and says so: its bound is just behind its last route (the third value, true)."""
    aggregator.TOP_SIZE = 2
    series = boto3.client("dynamodb")
    series.put_item(  # as the aggregator wrote it before parts
        TableName=stream_tables.series,
        Item={
            "route": {"S": "#top"},
            "bucket": {"S": "all"},
            "routes": {"M": {"/old": {"N": "9"}, "/z": {"N": "6"}}},
            "version": {"N": "4"},
            "asOf": {"S": "2026-11-30T00:00:00Z"},
        },
    )
    assert run(aggregator, counted["Records"]) == {"batchItemFailures": []}
    item = series_items(stream_tables.series)[("#top", "all")]
    assert {r: int(v["N"]) for r, v in item["routes"]["M"].items()} == {"/old": 9, "/z": 6}
    # /a (5) is the first route left out now, but a route of 6 hits ranked after /z may have
    # been left out before: the part is exact down to /z only
    assert item["leftOut"] == {"L": [{"N": "6"}, {"S": "/z"}, {"BOOL": True}]}
