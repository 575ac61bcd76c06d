"""The local tables' items across restarts: a snapshot file per stack, restored after the deploy.

The emulator keeps its tables in memory, and every start deploys the stack to a new one,
which names each table anew. So the stack saves every DynamoDB table of the template by
logical id (CounterTable, ...) in <state dir>/<stack name>/tables.json: on stop, and every
SNAPSHOT_EVERY seconds while the API serves requests; the next start writes those items
back into the tables its deploy created. A crash (a SIGKILL, a power cut) loses what was
written after the last snapshot: at most SNAPSHOT_EVERY seconds of hits.

A snapshot is a consistent cut: the tables read at one moment, with the stream records each
event source mapping had not delivered by then ("undelivered"), which the next start
delivers first; so the aggregator's series restored plus those records are the counts
restored. A save that fails keeps the previous file; a file that cannot be used stops the
start (StateError, one line) and is never replaced. docs/local-stack.md has the details.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import fcntl
import json
import os
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SNAPSHOT_EVERY = 5.0  # seconds between snapshots while requests come in
DEFAULT_STATE_ROOT = Path(__file__).resolve().parent.parent / ".local-state"
FORMAT = 2  # 2 added "undelivered"; a format 1 file (tables only) is read as it was
READABLE_FORMATS = (1, 2)
BATCH = 25  # BatchWriteItem's limit
ATTRIBUTE_TYPES = frozenset({"S", "N", "B", "SS", "NS", "BS", "M", "L", "NULL", "BOOL"})


class StateError(RuntimeError):
    """The saved state cannot be used (in use, unreadable, or does not fit the tables)."""


@dataclass
class Saved:
    """What a snapshot holds: every table's items, and the stream records each event source
    mapping had not delivered at that moment (its function gets them first on the next start)."""

    tables: dict[str, list[dict]] = field(default_factory=dict)  # by table logical id
    undelivered: dict[str, list[dict]] = field(default_factory=dict)  # by mapping logical id


def _why(error: OSError) -> str:
    """An OSError as one phrase: "File too large", "Not a directory: '/x/y'"."""
    reason = error.strerror or str(error)
    return f"{reason}: '{error.filename}'" if error.filename else reason


def _wire(value: Any, binary: bool = False) -> Any:
    """An AttributeValue as boto3 returns it -> as JSON can hold it (binary as base64)."""
    if isinstance(value, (bytes, bytearray)):
        return base64.b64encode(value).decode()
    if isinstance(value, dict):
        return {k: _wire(v, k in ("B", "BS")) for k, v in value.items()}
    if isinstance(value, list):
        return [_wire(v, binary) for v in value]
    return value


def _unwire(value: Any, binary: bool = False) -> Any:
    if binary and isinstance(value, str):
        return base64.b64decode(value, validate=True)
    if isinstance(value, dict):
        return {k: _unwire(v, k in ("B", "BS")) for k, v in value.items()}
    if isinstance(value, list):
        return [_unwire(v, binary) for v in value]
    return value


def table_logical_ids(template: dict) -> list[str]:
    return sorted(
        logical_id
        for logical_id, resource in template.get("Resources", {}).items()
        if resource.get("Type") == "AWS::DynamoDB::Table"
    )


class StackState:
    """<root>/<stack name>/: the snapshot, and a lock that one running stack holds."""

    def __init__(self, root: Path, stack_name: str) -> None:
        self.path = root / stack_name
        self.snapshot = self.path / "tables.json"
        self._lock_file: Any = None
        self.saved_at: float | None = None

    def lock(self) -> None:
        """Hold the directory for this process: two stacks writing one snapshot lose counts."""
        self.path.mkdir(parents=True, exist_ok=True)
        lock_file = (self.path / "lock").open("a")
        try:
            fcntl.flock(lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            lock_file.close()
            raise StateError(
                f"{self.path} is in use by another local stack of that name: "
                "stop it, or choose another --stack-name"
            ) from None
        self._lock_file = lock_file

    def unlock(self) -> None:
        if self._lock_file is not None:
            self._lock_file.close()  # closing releases the lock
            self._lock_file = None

    def load(self) -> Saved:
        """What the last save holds (nothing when nothing was saved yet).

        A file that is not a snapshot stops the start with one line naming it and what is
        wrong: it is never replaced by an empty one."""
        try:
            text = self.snapshot.read_text()
        except FileNotFoundError:
            return Saved()
        except (OSError, UnicodeDecodeError) as error:
            why = _why(error) if isinstance(error, OSError) else "not UTF-8 text"
            raise self._unreadable(why) from None
        try:
            return parse_snapshot(text)
        except ValueError as error:
            raise self._unreadable(str(error)) from None

    def _unreadable(self, why: str) -> StateError:
        return StateError(
            f"cannot read {self.snapshot} ({why}): fix it, move it away, or use --fresh"
        )

    def save(
        self, tables: dict[str, list[dict]], undelivered: dict[str, list[dict]] | None = None
    ) -> None:
        """Replace the snapshot at once (write aside, then rename): a crash or a full disk
        while saving leaves the previous snapshot whole. A failure raises StateError (one
        line naming the file and the cause) and leaves no partial file behind."""
        now = time.time()
        body = {
            "format": FORMAT,
            "written": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now)),
            "tables": {table: _wire(items) for table, items in tables.items()},
            "undelivered": undelivered or {},
        }
        partial = self.snapshot.with_name(f".tables.{os.getpid()}.tmp")
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            with partial.open("w") as out:
                json.dump(body, out)
                out.flush()
                os.fsync(out.fileno())
            os.replace(partial, self.snapshot)
        except OSError as error:
            with contextlib.suppress(OSError):
                partial.unlink()
            raise StateError(
                f"cannot save {self.snapshot} ({_why(error)}): the previous save is kept"
            ) from None
        with contextlib.suppress(OSError):  # the rename itself survives a power cut
            directory = os.open(self.path, os.O_RDONLY)
            try:
                os.fsync(directory)
            finally:
                os.close(directory)
        self.saved_at = now


def _is_item(value: Any) -> bool:
    """An item as DynamoDB's JSON writes it: attribute name -> {type: value}."""
    return isinstance(value, dict) and all(
        isinstance(v, dict) and len(v) == 1 and next(iter(v)) in ATTRIBUTE_TYPES
        for v in value.values()
    )


def _is_record(value: Any) -> bool:
    """A stream record as GetRecords returns it (its "dynamodb" part an object)."""
    return isinstance(value, dict) and isinstance(value.get("dynamodb"), dict)


def parse_snapshot(text: str) -> Saved:
    """A snapshot file's text; ValueError says in a few words what is wrong with it."""
    try:
        saved = json.loads(text)
    except ValueError as error:
        raise ValueError(f"not JSON: {error}") from None
    if not isinstance(saved, dict):
        raise ValueError("not a JSON object")
    if saved.get("format") not in READABLE_FORMATS:
        raise ValueError(f"format {saved.get('format')!r}, not {FORMAT}")
    tables = saved.get("tables")
    if not isinstance(tables, dict):
        raise ValueError('"tables" is not an object of table names')
    undelivered = saved.get("undelivered", {})
    if not isinstance(undelivered, dict):
        raise ValueError('"undelivered" is not an object of mapping names')
    for name, items in tables.items():
        if not isinstance(items, list) or not all(_is_item(item) for item in items):
            raise ValueError(f"table {name} is not a list of items in DynamoDB's JSON")
    for name, records in undelivered.items():
        if not isinstance(records, list) or not all(_is_record(r) for r in records):
            raise ValueError(f"undelivered {name} is not a list of stream records")
    try:
        return Saved({table: _unwire(items) for table, items in tables.items()}, undelivered)
    except (binascii.Error, TypeError):
        raise ValueError("a binary value (B, BS) is not base64") from None


@dataclass
class Cut:
    """The tables (by logical id) and where their streams end (by physical name), at one
    moment of the emulator."""

    tables: dict[str, list[dict]]
    stream_ends: dict[str, int | None]


def read_cut(endpoint: str, region: str, tables: dict[str, str]) -> Cut:
    """Every item of each table (logical id -> physical name), and where each table's stream
    ends, at one moment, from our emulator's /_local/items (local/atomic_moto.py): cheaper
    than a Scan, and consistent across tables."""
    query = urllib.parse.urlencode({"table": list(tables.values()), "region": region}, doseq=True)
    with urllib.request.urlopen(f"{endpoint}/_local/items?{query}", timeout=30) as answer:  # noqa: S310
        found = json.loads(answer.read())
    ends = {name: None if end is None else int(end) for name, end in found["StreamEnds"].items()}
    items = {logical_id: _unwire(found["Tables"][name]) for logical_id, name in tables.items()}
    return Cut(items, ends)


def read_tables(endpoint: str, region: str, tables: dict[str, str]) -> dict[str, list[dict]]:
    """Every item of each table (logical id -> physical name), at one moment."""
    return read_cut(endpoint, region, tables).tables


def not_in_template(saved: Saved, tables: list[str], mappings: list[str]) -> Saved:
    """What the snapshot holds that the template lacks: not restored, and carried into every
    later save as it is (a template without a table must not erase what it held)."""
    return Saved(
        {name: items for name, items in saved.tables.items() if name not in tables},
        {name: records for name, records in saved.undelivered.items() if name not in mappings},
    )


def names(saved: Saved) -> str:
    """ "table A, mapping M": what a Saved holds, in a few words."""
    found = [f"table {name}" for name in sorted(saved.tables)]
    return ", ".join(found + [f"mapping {name}" for name in sorted(saved.undelivered)])


def write_tables(dynamodb: Any, tables: dict[str, str], saved: dict[str, list[dict]]) -> int:
    """Put the saved items back (logical id -> physical name); returns how many."""
    written = 0
    for logical_id, items in saved.items():
        name = tables.get(logical_id)
        if name is None:
            continue  # not in the template: kept in the file (not_in_template), not restored
        for start in range(0, len(items), BATCH):
            batch = {name: [{"PutRequest": {"Item": i}} for i in items[start : start + BATCH]]}
            try:
                while batch:
                    batch = dynamodb.batch_write_item(RequestItems=batch)["UnprocessedItems"]
            except Exception as error:
                raise StateError(
                    f"cannot restore {logical_id} from the saved state ({error}): "
                    "use --fresh to start empty"
                ) from None
        written += len(items)
    return written
