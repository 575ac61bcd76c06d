"""The local tables' items across restarts: a snapshot file per stack, restored after the deploy.

The emulator keeps its tables in memory, and every start deploys the stack to a new one,
which names each table anew. So the stack saves every DynamoDB table of the template by
logical id (CounterTable, ...) in <state dir>/<stack name>/tables.json: on stop, and every
SNAPSHOT_EVERY seconds while the API serves requests; the next start writes those items
back into the tables its deploy created. A crash (a SIGKILL, a power cut) loses what was
written after the last snapshot: at most SNAPSHOT_EVERY seconds of hits.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import os
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

SNAPSHOT_EVERY = 5.0  # seconds between snapshots while requests come in
DEFAULT_STATE_ROOT = Path(__file__).resolve().parent.parent / ".local-state"
FORMAT = 1
BATCH = 25  # BatchWriteItem's limit


class StateError(RuntimeError):
    """The saved state cannot be used (in use, unreadable, or does not fit the tables)."""


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
        return base64.b64decode(value)
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

    def load(self) -> dict[str, list[dict]]:
        """Items by table logical id ({} when nothing was saved yet)."""
        try:
            saved = json.loads(self.snapshot.read_text())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as error:
            raise StateError(f"cannot read {self.snapshot} ({error}): use --fresh") from None
        if not isinstance(saved, dict) or saved.get("format") != FORMAT:
            raise StateError(f"cannot read {self.snapshot} (not format {FORMAT}): use --fresh")
        return {table: _unwire(items) for table, items in saved["tables"].items()}

    def save(self, tables: dict[str, list[dict]]) -> None:
        """Replace the snapshot at once (write aside, then rename): a crash while saving
        leaves the previous snapshot whole."""
        self.path.mkdir(parents=True, exist_ok=True)
        now = time.time()
        body = {
            "format": FORMAT,
            "written": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now)),
            "tables": {table: _wire(items) for table, items in tables.items()},
        }
        partial = self.snapshot.with_name(f".tables.{os.getpid()}.tmp")
        with partial.open("w") as out:
            json.dump(body, out)
            out.flush()
            os.fsync(out.fileno())
        os.replace(partial, self.snapshot)
        with contextlib.suppress(OSError):  # the rename itself survives a power cut
            directory = os.open(self.path, os.O_RDONLY)
            try:
                os.fsync(directory)
            finally:
                os.close(directory)
        self.saved_at = now


def read_tables(endpoint: str, region: str, tables: dict[str, str]) -> dict[str, list[dict]]:
    """Every item of each table (logical id -> physical name), from our emulator's
    /_local/items (local/atomic_moto.py): a whole table at once, cheaper than a Scan."""
    found = {}
    for logical_id, name in tables.items():
        query = urllib.parse.urlencode({"table": name, "region": region})
        with urllib.request.urlopen(f"{endpoint}/_local/items?{query}", timeout=30) as answer:  # noqa: S310
            found[logical_id] = _unwire(json.loads(answer.read())["Items"])
    return found


def write_tables(dynamodb: Any, tables: dict[str, str], saved: dict[str, list[dict]]) -> int:
    """Put the saved items back (logical id -> physical name); returns how many."""
    written = 0
    for logical_id, items in saved.items():
        name = tables.get(logical_id)
        if name is None:
            continue  # the template no longer has that table
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
