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
from botocore.exceptions import ConnectionClosedError

from local.streams import stream_event
from tests.conftest import ROOT, lambda_context, load_module, stream_records

HOUR = 3600
DAY = 86400


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
EXPECTED = {
    ("/a", "h#2026-12-01T03"): 2,
    ("/a", "h#2026-12-01T04"): 4,
    ("/a", "h#2026-12-02T00"): 5,
    ("/a", "d#2026-12-01"): 4,
    ("/a", "d#2026-12-02"): 5,
    ("/b", "h#2026-12-01T03"): 1,
    ("/b", "h#2026-12-01T04"): 2,
    ("/b", "d#2026-12-01"): 2,
    ("/c", "h#2026-12-02T00"): 1,
    ("/c", "d#2026-12-02"): 1,
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
    """The buckets (the top item, route "#top", aside)."""
    items = boto3.client("dynamodb").scan(TableName=table)["Items"]
    return {(i["route"]["S"], i["bucket"]["S"]): i for i in items if i["route"]["S"] != "#top"}


def top_item(table: str) -> tuple[dict, str] | None:
    """(route -> count, asOf) of the top item."""
    key = {"route": {"S": "#top"}, "bucket": {"S": "all"}}
    item = boto3.client("dynamodb").get_item(TableName=table, Key=key).get("Item")
    if item is None:
        return None
    return {r: int(c["N"]) for r, c in item["routes"]["M"].items()}, item["asOf"]["S"]


TOP = ({"/a": 5, "/b": 2, "/c": 1}, "2026-12-02T00:06:00Z")


def max_counts(table: str) -> dict:
    return {key: int(item["maxCount"]["N"]) for key, item in series_items(table).items()}


def clear(table: str) -> None:
    client = boto3.client("dynamodb")
    for route, bucket in [*series_items(table), ("#top", "all")]:
        client.delete_item(TableName=table, Key={"route": {"S": route}, "bucket": {"S": bucket}})


def run(aggregator, records: list[dict]) -> dict:
    return aggregator.handler({"Records": records}, lambda_context("AggregatorFunction"))


def test_each_bucket_holds_the_highest_count_of_its_hour_and_day(
    aggregator, stream_tables, counted, capsys
):
    assert run(aggregator, counted["Records"]) == {"batchItemFailures": []}
    assert max_counts(stream_tables.series) == EXPECTED
    assert top_item(stream_tables.series) == TOP
    # one JSON line per batch, one write per (route, bucket) pair, and the top item's
    (line,) = capsys.readouterr().out.splitlines()
    logged = json.loads(line)
    assert logged["level"] == "INFO"
    assert logged["buckets"] == logged["written"] == len(EXPECTED)
    assert logged["topChanged"] is True


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
    assert max_counts(stream_tables.series) == EXPECTED
    batches = [records[i : i + 3] for i in range(0, len(records), 3)]
    shuffled = random.Random(13)  # noqa: S311 (a reproducible order, not a secret)
    for _ in range(3):  # each time a new order, each batch delivered twice
        clear(stream_tables.series)
        order = batches * 2
        shuffled.shuffle(order)
        for batch in order:
            assert run(aggregator, list(reversed(batch))) == {"batchItemFailures": []}
        assert max_counts(stream_tables.series) == EXPECTED
        assert top_item(stream_tables.series) == TOP
    # and a replay of everything changes nothing
    assert run(aggregator, records) == {"batchItemFailures": []}
    assert max_counts(stream_tables.series) == EXPECTED
    assert top_item(stream_tables.series) == TOP


def lose_connections_for(aggregator, route: str) -> list[str]:
    """Every UpdateItem of the route's buckets loses its connection (after the SDK's own
    retries too); returns the buckets whose writes were attempted."""
    attempted = []

    def drop(request, **_):
        body = json.loads(request.body)
        if body["Key"]["route"]["S"] == route:
            attempted.append(body["Key"]["bucket"]["S"])
            raise ConnectionClosedError(endpoint_url=request.url)

    aggregator.dynamodb.meta.events.register_first("before-send.dynamodb.UpdateItem", drop)
    return attempted


def test_a_fault_mid_batch_reports_the_first_record_of_the_failed_buckets(
    aggregator, stream_tables, counted, capsys
):
    records = counted["Records"]
    attempted = lose_connections_for(aggregator, "/b")
    result = run(aggregator, records)
    first_b = next(
        r
        for r in records
        if r["dynamodb"]["Keys"]["route"]["S"] == "/b" and "count" in r["dynamodb"]["NewImage"]
    )
    sequence = first_b["dynamodb"]["SequenceNumber"]
    assert result == {"batchItemFailures": [{"itemIdentifier": sequence}]}
    assert set(attempted) == {"h#2026-12-01T03", "h#2026-12-01T04", "d#2026-12-01"}
    line = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert line["level"] == "ERROR"
    assert "ConnectionClosedError" in line["error"]
    assert line["failedFrom"] == sequence
    assert not any(route == "/b" for route, _ in max_counts(stream_tables.series))

    # Lambda retries from the reported record; once the fault is gone, every bucket is exact.
    aggregator.dynamodb.meta.events.unregister("before-send.dynamodb.UpdateItem")
    retry_from = records.index(first_b)
    fresh = load_module(ROOT / "handler" / "aggregator.py", "aggregator_after_fault")
    assert run(fresh, records[retry_from:]) == {"batchItemFailures": []}
    assert max_counts(stream_tables.series) == EXPECTED
    assert top_item(stream_tables.series) == TOP


def test_records_that_carry_no_count_are_skipped_not_retried(aggregator, stream_tables, counted):
    removed = dict(counted["Records"][-1], eventName="REMOVE")
    removed["dynamodb"] = {k: v for k, v in removed["dynamodb"].items() if k != "NewImage"}
    garbled = json.loads(json.dumps(counted["Records"][-1]))
    garbled["dynamodb"]["NewImage"]["lastSeen"] = {"S": "yesterday"}
    DynamoDBStreamModel.model_validate({"Records": [removed, garbled]})
    assert run(aggregator, [removed, garbled]) == {"batchItemFailures": []}
    assert max_counts(stream_tables.series) == {}


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
    assert max_counts(stream_tables.series) == EXPECTED  # the buckets were written
    assert top_item(stream_tables.series) is None
