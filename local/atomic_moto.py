"""moto_server with DynamoDB's write atomicity: `python local/atomic_moto.py -p PORT`.

moto applies UpdateItem as read, modify, write with no lock, so two concurrent `ADD`s on
one item can both read the old count and one hit is lost. Real DynamoDB serialises the
writes to an item, which is what makes our one-call counter exact. This server runs moto's
own WSGI application, and restores that guarantee without making reads wait for writes or
writes for reads, as on DynamoDB:

- Writes to one item (PutItem, UpdateItem, DeleteItem, each item of a BatchWriteItem) run
  one at a time per partition key; writes to other items run alongside them.
- An UpdateItem works on a private copy of its item and publishes it whole when done: a
  read never sees a half-applied update (moto changes the stored item in place).
- A table's items live in a dict whose iteration (Scan, Query, item counts) walks a copy
  taken at once, so a write adding an item never breaks a Scan under way ("dictionary
  changed size during iteration").
- A TransactWriteItems locks the partitions of its items (in one order: no deadlock) and,
  if cancelled, puts back copies of those items, where moto copies and restores its whole
  tables (seconds for a series table of thousands of items, during which every counter
  write waited). One on a table with a stream checks its conditions first, under those
  locks, and is cancelled before anything is written (no stream record to take back);
  then it runs alone, as before. moto's whole-table rollback would also take back every
  write other requests made to the table meanwhile (MaxRoutes' transaction, on the counter
  table, lost concurrent hits that way).
- Everything else that changes DynamoDB (CreateTable, UpdateTable, ...) runs alone.

Two of DynamoDB's limits are options (configure(); both off by default, as the local stack
has run so far, and on in bench/scale.py; `--transaction-conflicts cancel` on the command
line): a TransactWriteItems that touches an item of another transaction under way is
cancelled (reason `TransactionConflict`) instead of waiting for it, and a PutItem,
UpdateItem or DeleteItem of such an item is refused with TransactionConflictException, as
DynamoDB's "transaction conflict handling" documents; and an item takes at most so many write
units a second (DynamoDB: 1,000 per partition), beyond which a write is refused with
ProvisionedThroughputExceededException and a transaction cancelled (`ThrottlingError`).

Everything else moto serves concurrently, as moto_server does.
"""

import argparse
import base64
import contextlib
import copy
import json
import math
import os
import signal
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from moto import backends as moto_backends
from moto.core import DEFAULT_ACCOUNT_ID
from moto.core.base_backend import BackendDict
from moto.core.exceptions import JsonRESTError
from moto.core.serialize import BaseJSONSerializer
from moto.dynamodb import models as dynamodb_models
from moto.dynamodb.comparisons import get_filter_expression
from moto.dynamodb.exceptions import (
    ERROR_TYPE_PREFIX,
    ConditionalCheckFailed,
    DynamodbException,
    TransactionCanceledException,
)
from moto.dynamodb.models import DynamoDBBackend, dynamodb_backends
from moto.dynamodb.models.dynamo_type import DynamoType, Item
from moto.dynamodb.models.table import Table
from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)
from werkzeug.serving import run_simple

WsgiApp = Callable[[dict, Callable], Iterable[bytes]]

# DynamoDB requests that read, or write single items (each under its partition's lock): they
# share the DynamoDB lock. Any other DynamoDB request takes it alone.
SHARED_REQUESTS = frozenset(
    {
        "GetItem",
        "BatchGetItem",
        "Query",
        "Scan",
        "DescribeTable",
        "ListTables",
        "DescribeTimeToLive",
        "DescribeContinuousBackups",
        "ListTagsOfResource",
        "PutItem",
        "UpdateItem",
        "DeleteItem",
        "BatchWriteItem",
        "TransactWriteItems",
    }
)


class SharedExclusiveLock:
    """Many shared holders or one exclusive holder; a waiting exclusive one goes first."""

    def __init__(self) -> None:
        self._condition = threading.Condition()
        self._shared = 0
        self._exclusive = False
        self._waiting_exclusive = 0

    @contextmanager
    def shared(self) -> Iterator[None]:
        with self._condition:
            self._condition.wait_for(lambda: not self._exclusive and not self._waiting_exclusive)
            self._shared += 1
        try:
            yield
        finally:
            with self._condition:
                self._shared -= 1
                self._condition.notify_all()

    @contextmanager
    def exclusive(self) -> Iterator[None]:
        with self._condition:
            self._waiting_exclusive += 1
            self._condition.wait_for(lambda: not self._exclusive and not self._shared)
            self._waiting_exclusive -= 1
            self._exclusive = True
        try:
            yield
        finally:
            with self._condition:
                self._exclusive = False
                self._condition.notify_all()


class SnapshotDict(defaultdict):
    """A dict whose iteration walks a copy: list() of a dict view runs in C, holding the GIL,
    so the copy is taken at once however many threads insert meanwhile."""

    def __missing__(self, key: Any) -> Any:
        # moto reads a range-key table as items[hash][range], which adds an empty partition
        # for a missing hash: setdefault (one step in C) makes a read racing the partition's
        # first write share its dict instead of replacing it, and the item with it.
        if self.default_factory is None:
            raise KeyError(key)
        return dict.setdefault(self, key, self.default_factory())

    def __iter__(self) -> Iterator[Any]:
        return iter(list(dict.keys(self)))

    def keys(self) -> list[Any]:  # type: ignore[override]
        return list(dict.keys(self))

    def values(self) -> list[Any]:  # type: ignore[override]
        return list(dict.values(self))

    def items(self) -> list[tuple[Any, Any]]:  # type: ignore[override]
        return list(dict.items(self))


def _partition_items() -> SnapshotDict:
    return SnapshotDict(None)


# Striped: two partitions share a lock only by chance. A transaction holds one stripe per
# item (the aggregator's: up to 100), so stripes are many, or a counter write would often
# wait behind a transaction on another table.
PARTITION_LOCKS = tuple(threading.RLock() for _ in range(4096))
_drafts = threading.local()  # the item this thread's UpdateItem builds, not yet published


def _stripe(table: Table, hash_key: DynamoType) -> int:
    return hash((id(table), hash_key)) % len(PARTITION_LOCKS)


def _partition_lock(table: Table, hash_key: DynamoType) -> Any:
    # Reentrant: a transaction writes several items from one thread, maybe on one stripe.
    return PARTITION_LOCKS[_stripe(table, hash_key)]


# Transactions moto runs its own way (a table with a stream) run one at a time.
TRANSACTIONS_ALONE = threading.Lock()
_no_table_copies = threading.local()  # set while this thread runs a partition-locked one


class _TableCopies:
    """moto.dynamodb.models' `copy` module: its transaction backs up whole tables with
    copy.deepcopy; in a partition-locked transaction a table is 'copied' as itself (moto's
    rollback then puts back the same table, and our copies of the items restore them)."""

    def __getattr__(self, name: str) -> Any:
        return getattr(copy, name)

    @staticmethod
    def deepcopy(value: Any, *args: Any) -> Any:
        if isinstance(value, Table) and getattr(_no_table_copies, "active", False):
            return value
        return copy.deepcopy(value, *args)


@dataclass
class WriteLimits:
    """DynamoDB's limits the emulator applies (see the module docstring)."""

    conflicts: str = "wait"  # "cancel": as DynamoDB, a transaction never waits for another
    units_per_second: int | None = None  # write units per item per second; None: no limit
    clock: Callable[[], float] = time.monotonic  # whose seconds the limit counts


LIMITS = WriteLimits()
_in_flight: set[tuple] = set()  # (table, hash key, range key) of transactions under way
_in_flight_lock = threading.Lock()
_units_used: dict[tuple, list] = {}  # item -> [second, write units used in it]
_in_transaction = threading.local()  # set while this thread runs a transaction's own writes
UNIT_BYTES = 1024  # a write unit per KB of the item


def configure(
    conflicts: str = "wait",
    units_per_second: int | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> None:
    """Set the emulator's write limits (the defaults turn both off)."""
    if conflicts not in ("wait", "cancel"):
        raise ValueError(f"conflicts is 'wait' or 'cancel', not {conflicts!r}")
    LIMITS.conflicts, LIMITS.units_per_second, LIMITS.clock = conflicts, units_per_second, clock
    with _in_flight_lock:
        _units_used.clear()


class TransactionConflict(DynamodbException):
    def __init__(self) -> None:
        super().__init__(
            ERROR_TYPE_PREFIX + "TransactionConflictException",
            "Transaction is ongoing for the item",
        )


class ThroughputExceeded(DynamodbException):
    def __init__(self) -> None:
        super().__init__(
            ERROR_TYPE_PREFIX + "ProvisionedThroughputExceededException",
            "Throughput exceeds the current capacity of your table or index.",
        )


def _item_id(table: Table, hash_key: Any, range_key: Any) -> tuple:
    return (id(table), hash_key, range_key)


def _write_units(table: Table, hash_key: Any, range_key: Any) -> int:
    """A write's units, sized by the item as it is before the write (at least 1)."""
    item = table.get_item(hash_key, range_key)
    return max(1, math.ceil(item.size() / UNIT_BYTES)) if item is not None else 1


def _over_limit(items: list[tuple[tuple, int]]) -> list[bool]:
    """Charge each (item, units) to its second unless one of them would exceed the limit:
    then nothing is charged, and which ones would is returned. Caller holds _in_flight_lock."""
    limit = LIMITS.units_per_second
    if limit is None:
        return [False] * len(items)
    second = int(LIMITS.clock())
    used = {i: _units_used.get(i, [second, 0]) for i, _ in items}
    over = [(used[i][1] if used[i][0] == second else 0) + units > limit for i, units in items]
    if not any(over):
        for item, units in items:
            spent = used[item][1] if used[item][0] == second else 0
            _units_used[item] = [second, spent + units]
    return over


def _single_write(table: Table, hash_key: Any, range_key: Any) -> None:
    """Refuse a single-item write as DynamoDB would: its item is in a transaction under way,
    or it would take the item over its write units this second. A transaction's own writes
    were checked with it."""
    if getattr(_in_transaction, "active", False):
        return
    if LIMITS.conflicts == "wait" and LIMITS.units_per_second is None:
        return
    item = _item_id(table, hash_key, range_key)
    units = _write_units(table, hash_key, range_key) if LIMITS.units_per_second else 0
    with _in_flight_lock:
        if LIMITS.conflicts == "cancel" and item in _in_flight:
            raise TransactionConflict()
        if _over_limit([(item, units)])[0]:
            raise ThroughputExceeded()


@contextmanager
def _transaction_admitted(targets: list[tuple]) -> Iterator[None]:
    """Hold a transaction's items as under way, or cancel it as DynamoDB does: an item in
    another transaction under way (TransactionConflict, with conflicts="cancel"), or one
    that would exceed its write units (ThrottlingError; a transactional write costs 2)."""
    items = [_item_id(t, h, r) for t, h, r in targets]
    cancel = LIMITS.conflicts == "cancel"
    units = [2 * _write_units(t, h, r) if LIMITS.units_per_second else 0 for t, h, r in targets]
    with _in_flight_lock:
        busy = [cancel and item in _in_flight for item in items]
        if any(busy):
            reason = ("TransactionConflict", "Transaction is ongoing for the item", None)
            raise TransactionCanceledException([reason if b else (None, None, None) for b in busy])
        over = _over_limit(list(zip(items, units, strict=True)))
        if any(over):
            reason = ("ThrottlingError", "Throughput exceeds the current capacity.", None)
            raise TransactionCanceledException([reason if o else (None, None, None) for o in over])
        if cancel:
            _in_flight.update(items)
    _in_transaction.active = True
    try:
        yield
    finally:
        _in_transaction.active = False
        if cancel:
            with _in_flight_lock:
                _in_flight.difference_update(items)


def _transaction_target(backend: DynamoDBBackend, entry: dict) -> tuple:
    """(table, hash key, range key) of one action of a TransactWriteItems."""
    ((kind, action),) = entry.items()
    table = backend.get_table(action["TableName"])
    hash_key, range_key = backend.get_keys_value(
        table, action["Item"] if kind == "Put" else action["Key"]
    )
    return table, hash_key, range_key


def _restore(table: Table, hash_key: Any, range_key: Any, item: Item | None) -> None:
    """Put an item back as it was before a cancelled transaction (None: it did not exist)."""
    if item is not None:
        _publish(table, item)
    elif table.range_key_attr is not None:
        table.items[hash_key].pop(range_key, None)
    else:
        table.items.pop(hash_key, None)


def _cancel_unless_conditions_hold(
    transact_items: list[dict], targets: list[tuple], read: Callable
) -> None:
    """Raise moto's TransactionCanceledException, nothing written, if a condition fails:
    each item read as it is now (the caller holds their partitions' locks)."""
    reasons: list = []
    for entry, (table, hash_key, range_key) in zip(transact_items, targets, strict=True):
        ((_, action),) = entry.items()
        current = read(table, hash_key, range_key)
        condition = action.get("ConditionExpression")
        holds = condition is None or get_filter_expression(
            condition,
            action.get("ExpressionAttributeNames"),
            action.get("ExpressionAttributeValues"),
        ).expr(current)
        if holds:
            reasons.append((None, None, None))
            continue
        wants_old = action.get("ReturnValuesOnConditionCheckFailure") == "ALL_OLD"
        old = current.to_json()["Attributes"] if wants_old and current else None
        reasons.append(("ConditionalCheckFailed", ConditionalCheckFailed(item=old).message, old))
    if any(code for code, _, _ in reasons):
        raise TransactionCanceledException(reasons)


def _same_key(a: DynamoType | None, b: DynamoType | None) -> bool:
    return a == b if a is not None and b is not None else a is b


def _draft_for(table: Table, hash_key: Any, range_key: Any) -> list | None:
    draft = getattr(_drafts, "draft", None)
    if draft and draft[0] is table and _same_key(draft[1], hash_key):
        return draft if _same_key(draft[2], range_key) else None
    return None


def _publish(table: Table, item: Item) -> None:
    if table.range_key_attr is not None:
        table.items[item.hash_key][item.range_key] = item
    else:
        table.items[item.hash_key] = item


def make_dynamodb_atomic() -> None:
    """Patch moto's DynamoDB models as the module docstring says (idempotent)."""
    if getattr(Table, "_route_counter_atomic", False):
        return
    Table._route_counter_atomic = True
    table_init, table_get, table_put = Table.__init__, Table.get_item, Table.put_item
    backend_put = DynamoDBBackend.put_item
    backend_update = DynamoDBBackend.update_item
    backend_delete = DynamoDBBackend.delete_item

    def init(self: Table, *args: Any, **kwargs: Any) -> None:
        table_init(self, *args, **kwargs)
        self.items = SnapshotDict(_partition_items)

    def get_item(self: Table, hash_key: Any, range_key: Any = None, *args: Any, **kw: Any) -> Any:
        if draft := _draft_for(self, hash_key, range_key):
            return draft[3]
        return table_get(self, hash_key, range_key, *args, **kw)

    def put_item(self: Table, item_attrs: dict, *args: Any, **kwargs: Any) -> Item:
        draft = getattr(_drafts, "draft", None)
        if draft and draft[0] is self:  # UpdateItem creating its item: keep it private
            key = DynamoType(item_attrs[self.hash_key_attr])
            sort = DynamoType(item_attrs[self.range_key_attr]) if self.range_key_attr else None
            if _draft_for(self, key, sort):
                draft[3] = Item(key, sort, item_attrs)
                return draft[3]
        return table_put(self, item_attrs, *args, **kwargs)

    def update_item(self: DynamoDBBackend, table_name: str, key: dict, *args: Any, **kw: Any):
        table = self.get_table(table_name)
        try:
            hash_key, range_key = self.get_keys_value(table, key)
        except Exception:  # a bad key: moto's own error, nothing written
            return backend_update(self, table_name, key, *args, **kw)
        _single_write(table, hash_key, range_key)  # before waiting for a transaction's lock
        with _partition_lock(table, hash_key):
            current = table_get(table, hash_key, range_key)
            _drafts.draft = [table, hash_key, range_key, copy.deepcopy(current)]
            try:
                item = backend_update(self, table_name, key, *args, **kw)
            finally:
                _drafts.draft = None
            _publish(table, item)
            return item

    def put_one(self: DynamoDBBackend, table_name: str, item_attrs: dict, *args: Any, **kw: Any):
        table = self.get_table(table_name)
        if table.hash_key_attr not in item_attrs:  # moto's own validation error
            return backend_put(self, table_name, item_attrs, *args, **kw)
        hash_key = DynamoType(item_attrs[table.hash_key_attr])
        range_attr = table.range_key_attr
        range_key = DynamoType(item_attrs[range_attr]) if item_attrs.get(range_attr) else None
        _single_write(table, hash_key, range_key)  # before waiting for a transaction's lock
        with _partition_lock(table, hash_key):
            return backend_put(self, table_name, item_attrs, *args, **kw)

    def delete_one(self: DynamoDBBackend, table_name: str, key: dict, *args: Any, **kw: Any):
        table = self.get_table(table_name)
        try:
            hash_key, range_key = self.get_keys_value(table, key)
        except Exception:  # a bad key: moto's own error, nothing deleted
            return backend_delete(self, table_name, key, *args, **kw)
        _single_write(table, hash_key, range_key)  # before waiting for a transaction's lock
        with _partition_lock(table, hash_key):
            return backend_delete(self, table_name, key, *args, **kw)

    def all_items(self: Table) -> list[Item]:
        # moto's order (by key), each key's value worked out once rather than per comparison.
        if self.range_key_attr is None:
            items = self.items.values()
            return sorted(items, key=lambda item: item.hash_key.cast_value)
        items = [item for partition in self.items.values() for item in partition.values()]
        return sorted(
            items,
            key=lambda item: (
                (item.hash_key.cast_value, item.range_key.cast_value)
                if item.range_key
                else (item.hash_key.cast_value,)
            ),
        )

    backend_transact = DynamoDBBackend.transact_write_items

    def transact_write_items(self: DynamoDBBackend, transact_items: list[dict]) -> None:
        try:
            targets = [_transaction_target(self, entry) for entry in transact_items]
        except Exception:  # a bad request: moto's own validation error, nothing written
            targets = None
        if not targets:
            with TRANSACTIONS_ALONE:  # moto copies and restores the whole tables
                return backend_transact(self, transact_items)
        with _transaction_admitted(targets):
            return locked_transaction(self, transact_items, targets)

    def locked_transaction(self: DynamoDBBackend, transact_items: list[dict], targets: list):
        stripes = sorted({_stripe(table, hash_key) for table, hash_key, _ in targets})
        with contextlib.ExitStack() as held:
            for stripe in stripes:
                held.enter_context(PARTITION_LOCKS[stripe])
            # moto writes every item it can, then puts the tables back when a condition
            # failed: readers, which take no lock, would see a cancelled transaction's writes
            # (DynamoDB never shows them). Its conditions are checked first, items held.
            _cancel_unless_conditions_hold(transact_items, targets, table_get)
            if any(table.stream_shard is not None for table, _, _ in targets):
                with TRANSACTIONS_ALONE:  # moto copies and restores the whole tables
                    return backend_transact(self, transact_items)
            before = [(t, h, r, copy.deepcopy(table_get(t, h, r))) for t, h, r in targets]
            _no_table_copies.active = True
            try:
                return backend_transact(self, transact_items)
            except Exception:
                for table, hash_key, range_key, item in before:
                    _restore(table, hash_key, range_key, item)
                raise
            finally:
                _no_table_copies.active = False

    Table.__init__ = init
    Table.all_items = all_items
    DynamoDBBackend.transact_write_items = transact_write_items
    dynamodb_models.copy = _TableCopies()
    Table.get_item = get_item
    Table.put_item = put_item
    DynamoDBBackend.update_item = update_item
    DynamoDBBackend.put_item = put_one
    DynamoDBBackend.delete_item = delete_one


SCALAR_ATTRIBUTE_TYPES = {"S": str, "N": str, "BOOL": bool, "NULL": bool}


def make_attribute_values_fast() -> None:
    """Serialise a DynamoDB AttributeValue that is one string, number, bool or null as is.

    moto walks every item of an answer through the service model, member by member: a
    Scan page of 1,000 items costs it about a second of CPU, which under the GIL starves
    every other request. For these values that walk returns its input unchanged (the
    wire form is already what moto holds); binary, set, map and list values still take it.
    """
    if getattr(BaseJSONSerializer, "_route_counter_fast", False):
        return
    BaseJSONSerializer._route_counter_fast = True
    serialize_structure = BaseJSONSerializer._serialize_type_structure

    def structure(self: BaseJSONSerializer, serialized: Any, value: Any, shape: Any, key: str):
        if shape.name == "AttributeValue" and type(value) is dict and len(value) == 1:
            ((kind, scalar),) = value.items()
            if type(scalar) is SCALAR_ATTRIBUTE_TYPES.get(kind):
                self._default_serialize(serialized, value, shape, key)
                return
        serialize_structure(self, serialized, value, shape, key)

    BaseJSONSerializer._serialize_type_structure = structure


ITEMS_PATH = "/_local/items"  # not AWS: the local stack's snapshots (local/state.py)


def _base64(value: object) -> str:
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    raise TypeError(f"{type(value).__name__} in an item")


def _stream_end(table: Table) -> str | None:
    """The sequence number of the last record in the table's stream (None: none yet)."""
    shard = getattr(table, "stream_shard", None)
    if shard is None or not shard.items:
        return None
    return str(shard.starting_sequence_number + len(shard.items) - 1)


def table_items(environ: dict, start_response: Callable) -> list[bytes]:
    """GET /_local/items?table=A&table=B&region=R: every item of each table, in DynamoDB's
    JSON ("Tables"), and where each table's stream ends ("StreamEnds": the last record's
    sequence number, or null), all at one moment: the caller holds the DynamoDB lock alone.

    What a Scan of the whole table returns, without its pages and moto's serialising: the
    local stack saves its tables every few seconds while it serves, and a Scan of 10,000
    items cost the emulator about a second of CPU each time, this a tenth of that. The one
    moment is what makes a snapshot consistent: the aggregator's series hold every record
    up to the stream ends it names that the stack did not save as undelivered.
    """
    query = parse_qs(environ.get("QUERY_STRING", ""))
    region = query.get("region", ["us-east-1"])[0]
    tables, ends = {}, {}
    for name in query.get("table", []):
        try:
            table = dynamodb_backends[DEFAULT_ACCOUNT_ID][region].get_table(name)
        except (KeyError, JsonRESTError) as error:
            start_response("404 Not Found", [("Content-Type", "application/json")])
            return [json.dumps({"message": f"no such table: {error}"}).encode()]
        tables[name] = [item.to_json()["Attributes"] for item in table.all_items()]
        ends[name] = _stream_end(table)
    # moto holds B as bytes
    body = json.dumps({"Tables": tables, "StreamEnds": ends}, default=_base64).encode()
    start_response("200 OK", [("Content-Type", "application/json")])
    return [body]


def make_dispatch_fast() -> None:
    """List moto's service packages once, not on every request; look a backend up without
    a global lock once it exists.

    moto_server's dispatcher finds each request's service under one global lock, and to do
    so lists its own package directory (os.listdir, then isdir per entry) for every request
    whose host is not a package name: every DynamoDB call. With the stream pollers and the
    aggregator's calls beside the counter's, that lock was where the emulator's request
    threads spent most of their time. The packages do not change while it runs.
    """
    if getattr(moto_backends, "_route_counter_listed", False):
        return
    modules = tuple(moto_backends.list_of_moto_modules())
    moto_backends.list_of_moto_modules = lambda: modules
    moto_backends._route_counter_listed = True
    # Every backend lookup (dynamodb_backends[account]) also takes one global lock to create
    # the account's backends if they are missing: once they exist, that lock changes nothing.
    create = BackendDict._create_account_specific_backend

    def create_once(self: BackendDict, account_id: str) -> None:
        if dict.__contains__(self, account_id) and self in BackendDict._instances:
            return
        create(self, account_id)

    BackendDict._create_account_specific_backend = create_once


def serialise_dynamodb(app: WsgiApp) -> WsgiApp:
    """Wrap a WSGI app so that DynamoDB requests are as atomic as on DynamoDB (see above)."""
    make_dynamodb_atomic()
    make_attribute_values_fast()
    make_dispatch_fast()
    lock = SharedExclusiveLock()

    def application(environ: dict, start_response: Callable) -> Iterable[bytes]:
        target = environ.get("HTTP_X_AMZ_TARGET", "")
        if environ.get("PATH_INFO") == ITEMS_PATH:
            with lock.exclusive():  # no write runs meanwhile: the tables at one moment
                return table_items(environ, start_response)
        if not target.startswith("DynamoDB_"):
            return app(environ, start_response)
        hold = lock.shared if target.partition(".")[2] in SHARED_REQUESTS else lock.exclusive
        with hold():
            # Drain the body inside the lock: the request runs while it is produced.
            return list(app(environ, start_response))

    return application


class QuietRequestHandler(MotoRequestHandler):
    """moto_server's handler without its access log: one line per request, formatted and
    written for nobody (--local discards the emulator's output), costs the emulator about
    3% of its time per request. Errors are still logged."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass


def moto_application() -> WsgiApp:
    return serialise_dynamodb(DomainDispatcherApplication(create_backend_app))


def exit_with_parent(parent_pid: int, every: float = 0.2) -> None:
    """Exit as soon as the process that started us is gone, however it went (SIGKILL too):
    we are then reparented, so our parent pid changes. Polling works on Linux and macOS."""

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(every)
        os._exit(0)

    threading.Thread(target=watch, name="parent-watchdog", daemon=True).start()


def main(
    argv: list[str] | None = None, middleware: Callable[[WsgiApp], WsgiApp] | None = None
) -> None:
    """middleware: wraps the whole application (a test's emulator of another emulator's
    gaps, tests/localstack_gaps.py)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-H", "--host", default="127.0.0.1", help="address to bind")
    parser.add_argument("-p", "--port", type=int, default=5000, help="port to bind")
    parser.add_argument("--cert", help="serve HTTPS with this certificate (PEM), as AWS does")
    parser.add_argument("--key", help="the certificate's private key (PEM)")
    parser.add_argument(
        "--parent-pid", type=int, help="exit when this process (our parent) is gone"
    )
    parser.add_argument(
        "--transaction-conflicts",
        choices=("wait", "cancel"),
        default="wait",
        help="a transaction that meets another on an item: waits for it, or is cancelled "
        "(TransactionConflict) as on DynamoDB",
    )
    parser.add_argument(
        "--item-write-units",
        type=int,
        metavar="N",
        help="refuse writes beyond N write units per item per second (DynamoDB: 1,000 per "
        "partition)",
    )
    args = parser.parse_args(argv)
    configure(args.transaction_conflicts, args.item_write_units)
    if args.parent_pid is not None:
        exit_with_parent(args.parent_pid)
    # A waiting thread gets the interpreter lock after this long (5 ms by default). A write
    # takes it some ten times (each socket read or write gives it up), so behind eight
    # threads each serialising a Scan page it waited ~0.4 s; at 0.5 ms, a tenth of that.
    sys.setswitchinterval(0.0005)

    def stop(*_: Any) -> None:
        sys.exit(0)

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    # moto loads a service on its first request, and CloudFormation pulls in most of them:
    # load it before listening, while the caller is busy with its own start-up.
    import moto.cloudformation.models  # noqa: F401

    # Run as a script (python -P local/atomic_moto.py): the project root holds local/.
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from local import moto_fidelity

    moto_fidelity.apply()

    application = moto_fidelity.wrap(moto_application())
    run_simple(
        args.host,
        args.port,
        middleware(application) if middleware else application,
        threaded=True,
        request_handler=QuietRequestHandler,
        ssl_context=(args.cert, args.key) if args.cert else None,
    )


if __name__ == "__main__":
    main()
