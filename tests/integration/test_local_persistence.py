"""`python -m local` keeps its tables across restarts (local/state.py), over real sockets."""

import http.client
import json
import os
import signal
import time
import uuid

import boto3
import pytest

from local.state import SNAPSHOT_EVERY, StackState, read_tables, write_tables
from tests.conftest import (
    RunningLocalStack,
    counter_table_name,
    emulator_client,
    gone_within,
    local_stack,
    seed_routes,
    start_failure,
    stored_counts,
)


def series_items(stack: RunningLocalStack) -> int:
    """How many items the stack's other table, the series table, holds (the aggregator's
    buckets and top item)."""
    dynamodb = emulator_client(stack, "dynamodb")
    (series,) = set(dynamodb.list_tables()["TableNames"]) - {counter_table_name(stack)}
    pages = dynamodb.get_paginator("scan").paginate(TableName=series, Select="COUNT")
    return sum(page["Count"] for page in pages)


def hit(stack: RunningLocalStack, route: str, times: int = 1) -> int:
    """Hit a route on one kept-alive connection; its count after the last hit."""
    connection = http.client.HTTPConnection("127.0.0.1", stack.port, timeout=20)
    try:
        for _ in range(times):
            connection.request("GET", route)
            response = connection.getresponse()
            body = json.loads(response.read())
            assert response.status == 200, body
        return body["count"]
    finally:
        connection.close()


def saved_counts(tmp_path) -> dict[str, int]:
    """The counts in the stack's snapshot file, as a restart would restore them."""
    try:
        saved = json.loads((tmp_path / "state" / "route-counter" / "tables.json").read_text())
    except FileNotFoundError:
        return {}
    items = saved["tables"]["CounterTable"]
    return {i["route"]["S"]: int(i["count"]["N"]) for i in items}


def test_a_restart_keeps_every_count_and_fresh_starts_empty(tmp_path):
    hot, cold = f"/hot/{uuid.uuid4().hex}", f"/cold/{uuid.uuid4().hex}"
    with local_stack(tmp_path) as first:
        seed_routes(first, {f"/seeded/{i}": i + 1 for i in range(300)})
        assert hit(first, hot, 12) == 12
        assert hit(first, cold) == 1
        before = stored_counts(first)
        first.process.send_signal(signal.SIGINT)
        assert first.process.wait(timeout=30) == 0

    with local_stack(tmp_path) as second:
        after = stored_counts(second)
        series = series_items(second)  # what the aggregator wrote of them, restored too
        banner = second.output.read_text()
        assert hit(second, hot) == 13  # counting goes on from there
        second.process.send_signal(signal.SIGTERM)
        assert second.process.wait(timeout=30) == 0

    with local_stack(tmp_path, "--fresh") as fresh:
        empty = stored_counts(fresh)
        assert hit(fresh, hot) == 1

    assert len(before) == 302
    assert after == before
    assert series > 0
    assert "(302 routes restored; --fresh starts empty)" in banner  # not the series' items
    assert empty == {}


def test_a_killed_stack_keeps_the_counts_of_its_last_snapshot(tmp_path):
    """A SIGKILL (no chance to save) loses at most the hits of the last snapshot period:
    hits older than that are in the snapshot, and the next start restores them."""
    route = f"/before-the-crash/{uuid.uuid4().hex}"
    with local_stack(tmp_path) as first:
        emulator = first.emulator_pid
        hit(first, route, 5)
        deadline = time.monotonic() + 3 * SNAPSHOT_EVERY + 10
        while saved_counts(tmp_path).get(route) != 5:
            assert time.monotonic() < deadline, "no snapshot within a snapshot period"
            time.sleep(0.1)
        os.kill(first.process.pid, signal.SIGKILL)
        first.process.wait(timeout=10)
        assert gone_within(emulator, 5)

    with local_stack(tmp_path) as second:
        assert stored_counts(second)[route] == 5
        assert hit(second, route) == 6


@pytest.mark.parametrize("damage", ["not json", '{"format": 99, "tables": {}}', "[]"])
def test_a_damaged_snapshot_stops_the_start_and_says_to_use_fresh(tmp_path, damage):
    state = tmp_path / "state" / "route-counter"
    state.mkdir(parents=True)
    (state / "tables.json").write_text(damage)

    result = start_failure(tmp_path, "--port", "0")

    assert result.returncode == 1
    assert result.stderr.startswith(f"error: cannot read {state}")
    assert result.stderr.rstrip().endswith("use --fresh")
    assert "moto_server" not in result.stdout  # refused before starting anything


def test_a_second_stack_of_the_same_name_and_state_stops_saying_why(tmp_path):
    """Two stacks saving one snapshot would each overwrite the other's counts."""
    with local_stack(tmp_path) as running:
        result = start_failure(tmp_path, "--port", "0")
        assert hit(running, "/still-serving") == 1

    assert result.returncode == 1
    assert result.stderr == (
        f"error: {tmp_path / 'state' / 'route-counter'} is in use by "
        "another local stack of that name: stop it, or choose another --stack-name\n"
    )
    assert "moto_server" not in result.stdout


def test_every_attribute_type_survives_a_save_and_a_restore(moto_server, tmp_path):
    """What the snapshot holds (read from the emulator, saved, loaded, written back into a
    new table) is item for item what the table held, binary values and nesting included."""
    dynamodb = boto3.client("dynamodb", endpoint_url=moto_server)
    key = {"KeySchema": [{"AttributeName": "route", "KeyType": "HASH"}]}
    key["AttributeDefinitions"] = [{"AttributeName": "route", "AttributeType": "S"}]
    names = {"Old": f"old-{uuid.uuid4().hex}", "New": f"new-{uuid.uuid4().hex}"}
    for name in names.values():
        dynamodb.create_table(TableName=name, BillingMode="PAY_PER_REQUEST", **key)
    item = {
        "route": {"S": "/é"},
        "count": {"N": "12345678901234567890"},
        "blob": {"B": b"\x00\xff"},
        "blobs": {"BS": [b"a", b"\x01"]},
        "nested": {"M": {"l": {"L": [{"B": b"\x02"}, {"NULL": True}, {"BOOL": False}]}}},
        "tags": {"SS": ["x", "y"]},
        "sizes": {"NS": ["1", "2.5"]},
    }
    dynamodb.put_item(TableName=names["Old"], Item=item)
    state = StackState(tmp_path, "roundtrip")

    state.save(read_tables(moto_server, "us-east-1", {"CounterTable": names["Old"]}))
    written = write_tables(dynamodb, {"CounterTable": names["New"]}, state.load().tables)

    assert written == 1
    assert dynamodb.scan(TableName=names["New"])["Items"] == [item]
