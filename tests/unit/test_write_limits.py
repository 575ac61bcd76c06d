"""local/atomic_moto.py's DynamoDB write limits: transaction conflicts and per-item throughput.

Real threads against in-process moto with the emulator's patches. A transaction is held open
inside the emulator (its read of an item waits on an event), never by sleeping.
"""

import sys
import threading
import time

import boto3
import pytest
from botocore.config import Config
from moto import mock_aws
from moto.dynamodb.models import DynamoDBBackend

from local import atomic_moto
from tests.conftest import series_definition

TABLE = "limits"
HELD = "/held"  # the item whose read, inside a transaction, waits until released


@pytest.fixture
def ddb(template):
    """The emulator's DynamoDB in process, with a table shaped as the series table; the SDK
    retries nothing, so each refusal is seen."""
    atomic_moto.make_dynamodb_atomic()
    with mock_aws():
        client = boto3.client("dynamodb", config=Config(retries={"total_max_attempts": 1}))
        client.create_table(TableName=TABLE, **series_definition(template))
        yield client
    atomic_moto.configure()


def key(route: str) -> dict:
    return {"route": {"S": route}, "bucket": {"S": "b"}}


def add(route: str) -> dict:
    return {
        "Update": {
            "TableName": TABLE,
            "Key": key(route),
            "UpdateExpression": "ADD n :one",
            "ExpressionAttributeValues": {":one": {"N": "1"}},
        }
    }


def count(client, route: str) -> int:
    item = client.get_item(TableName=TABLE, Key=key(route), ConsistentRead=True).get("Item")
    return int(item["n"]["N"]) if item else 0


class HeldTransaction:
    """A transaction of HELD and /shared, run on its own thread, that stops inside the
    emulator (while it holds its items) until release()."""

    def __init__(self, client, monkeypatch) -> None:
        self.inside, self.go = threading.Event(), threading.Event()
        self.error: Exception | None = None
        moto_get = DynamoDBBackend.get_item

        def get_item(backend, table_name, key, *args, **kwargs):
            if key.get("route") == {"S": HELD} and threading.current_thread() is self.thread:
                self.inside.set()
                assert self.go.wait(30), "never released"
            return moto_get(backend, table_name, key, *args, **kwargs)

        monkeypatch.setattr(DynamoDBBackend, "get_item", get_item)
        self.thread = threading.Thread(target=self._run, args=(client,))
        self.thread.start()
        assert self.inside.wait(30)

    def _run(self, client) -> None:
        try:
            client.transact_write_items(TransactItems=[add(HELD), add("/shared")])
        except Exception as error:
            self.error = error

    def release(self) -> None:
        self.go.set()
        self.thread.join(30)
        assert not self.thread.is_alive() and self.error is None, self.error


def test_a_transaction_meeting_one_under_way_is_cancelled_with_transaction_conflict(
    ddb, monkeypatch
):
    atomic_moto.configure(conflicts="cancel")
    held = HeldTransaction(ddb, monkeypatch)

    with pytest.raises(ddb.exceptions.TransactionCanceledException) as cancelled:
        ddb.transact_write_items(TransactItems=[add("/own"), add("/shared")])
    reasons = [r["Code"] for r in cancelled.value.response["CancellationReasons"]]
    with pytest.raises(ddb.exceptions.TransactionConflictException):
        ddb.update_item(
            TableName=TABLE,
            Key=key("/shared"),
            UpdateExpression="ADD n :one",
            ExpressionAttributeValues={":one": {"N": "1"}},
        )
    ddb.transact_write_items(TransactItems=[add("/other")])  # no shared item: applied
    held.release()

    assert reasons == ["None", "TransactionConflict"]
    assert (count(ddb, "/shared"), count(ddb, "/own"), count(ddb, "/other")) == (1, 0, 1)
    ddb.transact_write_items(TransactItems=[add("/own"), add("/shared")])  # done: no conflict
    assert count(ddb, "/shared") == 2


def waiting_for_a_lock(thread: threading.Thread) -> bool:
    """Whether the thread is inside the emulator's transaction, acquiring a partition lock."""
    frame = sys._current_frames().get(thread.ident)
    names = []
    while frame is not None:
        names.append(frame.f_code.co_name)
        frame = frame.f_back
    return bool(names) and names[0] == "enter_context" and "locked_transaction" in names


def test_by_default_a_transaction_meeting_one_under_way_waits_for_it(ddb, monkeypatch):
    held = HeldTransaction(ddb, monkeypatch)
    finished = []
    second = threading.Thread(
        target=lambda: finished.append(
            ddb.transact_write_items(TransactItems=[add("/own"), add("/shared")])
        )
    )
    second.start()
    deadline = time.monotonic() + 30
    while not waiting_for_a_lock(second):
        assert time.monotonic() < deadline, "the second transaction never waited"
        time.sleep(0.01)

    held.release()
    second.join(30)

    assert len(finished) == 1
    assert (count(ddb, "/shared"), count(ddb, "/own")) == (2, 1)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_an_item_over_its_write_units_a_second_is_throttled(ddb):
    clock = Clock()
    atomic_moto.configure(units_per_second=3, clock=clock)

    def update(route: str) -> None:
        ddb.update_item(
            TableName=TABLE,
            Key=key(route),
            UpdateExpression="ADD n :one",
            ExpressionAttributeValues={":one": {"N": "1"}},
        )

    for _ in range(3):
        update("/hot")
    with pytest.raises(ddb.exceptions.ProvisionedThroughputExceededException):
        update("/hot")
    update("/cold")  # another item has its own units
    clock.now += 1
    # a transactional write costs 2 units: one fits the second, two do not
    ddb.transact_write_items(TransactItems=[add("/hot")])
    with pytest.raises(ddb.exceptions.TransactionCanceledException) as cancelled:
        ddb.transact_write_items(TransactItems=[add("/cold"), add("/hot")])

    reasons = [r["Code"] for r in cancelled.value.response["CancellationReasons"]]
    assert reasons == ["None", "ThrottlingError"]
    assert (count(ddb, "/hot"), count(ddb, "/cold")) == (4, 1)


def test_the_limits_are_off_by_default(ddb):
    for _ in range(50):
        ddb.update_item(
            TableName=TABLE,
            Key=key("/hot"),
            UpdateExpression="ADD n :one",
            ExpressionAttributeValues={":one": {"N": "1"}},
        )
    assert count(ddb, "/hot") == 50


def test_a_cancelled_transactions_writes_are_never_seen_by_a_reader(ddb, monkeypatch):
    """moto writes a transaction's items one by one and puts them back when a condition
    fails; DynamoDB never shows a cancelled transaction's writes. What a reader would find
    is read each time the transaction reads an item."""
    moto_get = DynamoDBBackend.get_item
    seen = []

    def get_item(backend, table_name, wanted, *args, **kwargs):
        if wanted.get("route") == {"S": "/guard"}:
            found = moto_get(backend, table_name, key("/added"))
            seen.append(int(found.attrs["n"].value) if found else 0)
        return moto_get(backend, table_name, wanted, *args, **kwargs)

    monkeypatch.setattr(DynamoDBBackend, "get_item", get_item)
    guard = {
        "Update": {
            "TableName": TABLE,
            "Key": key("/guard"),
            "UpdateExpression": "SET v = :v",
            "ConditionExpression": "attribute_exists(v)",  # it does not: cancelled
            "ExpressionAttributeValues": {":v": {"N": "1"}},
        }
    }
    with pytest.raises(ddb.exceptions.TransactionCanceledException):
        ddb.transact_write_items(TransactItems=[add("/added"), guard])
    assert set(seen) <= {0}
    assert count(ddb, "/added") == 0
