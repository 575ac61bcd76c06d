"""The local stack's saved state under faults: a kill between a hit's count and its
aggregation, a disk that fills mid-save, state files it cannot use, stack names that would
leave the state directory. Real processes, real signals, faults where they happen."""

import json
import os
import resource
import signal
import uuid

import pytest

from local.stack import default_template
from local.state import StackState, StateError
from tests.conftest import (
    gone_within,
    local_stack,
    route_item,
    saved_routes,
    start_failure,
)
from tests.integration.test_local_analytics import get, wait_for


def snapshot_file(tmp_path):
    return tmp_path / "state" / "route-counter" / "tables.json"


def saved(tmp_path) -> dict:
    try:
        return json.loads(snapshot_file(tmp_path).read_text())
    except (FileNotFoundError, ValueError):  # not written yet
        return {}


def saved_count(tmp_path, route: str) -> int:
    items = saved(tmp_path).get("tables", {}).get("CounterTable", [])
    return next((int(i["count"]["N"]) for i in items if i["route"]["S"] == route), 0)


def series_hits(stack, route: str) -> tuple[int, int, int]:
    """The route's hits in the hourly series, the daily series, and the all-time top."""
    hour = get(stack, "/_stats", route=route, series="hour")["points"]
    day = get(stack, "/_stats", route=route, series="day")["points"]
    top = get(stack, "/_stats/top", limit="100")["routes"]
    ranked = next((r["count"] for r in top if r["route"] == route), 0)
    return sum(p["count"] for p in hour), sum(p["count"] for p in day), ranked


def test_a_hit_killed_before_its_aggregation_reaches_the_series_once_after_a_restart(tmp_path):
    """kill -9 after the snapshot holds a hit's count but before the aggregator ran on it
    (a 300 s batching window keeps it waiting): the restart delivers it, exactly once."""
    template = default_template()
    template["Resources"]["AggregatorStreamMapping"]["Properties"][
        "MaximumBatchingWindowInSeconds"
    ] = 300
    slow = tmp_path / "slow-window.json"
    slow.write_text(json.dumps(template))
    route = f"/killed/{uuid.uuid4().hex}"

    with local_stack(tmp_path, "--template", str(slow)) as first:
        emulator = first.emulator_pid
        assert get(first, route)["count"] == 1
        wait_for(lambda: saved_count(tmp_path, route), lambda n: n == 1, "snapshot of the hit")
        os.kill(first.process.pid, signal.SIGKILL)
        first.process.wait(timeout=10)
        assert gone_within(emulator, 5)
    series_saved = json.dumps(saved(tmp_path)["tables"].get("SeriesTable", []))
    assert route not in series_saved  # the kill came before the aggregation, as intended

    with local_stack(tmp_path) as second:  # the template's own 5 s window
        wait_for(lambda: series_hits(second, route), lambda s: s == (1, 1, 1), "replayed hit")
        assert get(second, route)["count"] == 2
        after = wait_for(lambda: series_hits(second, route), lambda s: s[0] >= 2, "second hit")
        assert after == (2, 2, 2)


def test_a_disk_full_mid_save_keeps_the_last_snapshot_says_so_once_and_leaves_no_temp_file(
    tmp_path,
):
    """A file size limit (RLIMIT_FSIZE, as a full disk: writes fail with EFBIG partway)
    smaller than the snapshot: every save fails mid-write. The last good snapshot stays
    byte for byte, the failure is one line on stderr naming the file and the cause, and
    the stop says the last save failed (exit status 1)."""
    saved_routes(tmp_path, {f"/restored/{i:05d}/{'x' * 60}": i + 1 for i in range(4000)})
    snapshot = snapshot_file(tmp_path)
    before = snapshot.read_bytes()
    limit = 256 * 1024
    assert len(before) > 2 * limit  # the next save cannot fit

    with local_stack(tmp_path, limits={resource.RLIMIT_FSIZE: limit}) as stack:
        assert get(stack, "/after-the-restore")["count"] == 1
        cause = f"cannot save {snapshot} (File too large): the previous save is kept"
        wait_for(lambda: stack.output.read_text(), lambda out: cause in out, "save failure")
        stack.process.send_signal(signal.SIGINT)
        assert stack.process.wait(timeout=30) == 1
        output = stack.output.read_text()

    assert snapshot.read_bytes() == before
    assert sorted(p.name for p in snapshot.parent.iterdir()) == ["lock", "tables.json"]
    assert [line for line in output.splitlines() if "cannot save" in line] == [f"warning: {cause}"]
    assert "Stopped, but the last save failed." in output
    assert "Traceback" not in output


def test_a_state_directory_that_is_a_file_fails_the_save_in_one_line(tmp_path):
    (tmp_path / "state").write_text("not a directory")
    state = StackState(tmp_path / "state", "route-counter")

    with pytest.raises(StateError) as failed:
        state.save({"CounterTable": [route_item("/a", 1)]})

    assert str(failed.value) == (
        f"cannot save {state.snapshot} (Not a directory: '{state.path}'): the previous save is kept"
    )
    assert (tmp_path / "state").read_text() == "not a directory"


def test_a_table_the_template_lacks_is_kept_in_the_snapshot_as_it_was(tmp_path):
    """Restoring the other tables and saving them alone would drop that table's items for
    good: they are carried into every save as they were, and the start says so."""
    retired = [route_item("/old", 9), {"route": {"S": "/bin"}, "blob": {"B": b"\x00\xff"}}]
    StackState(tmp_path / "state", "route-counter").save(
        {"CounterTable": [route_item("/a", 3)], "RetiredTable": retired}
    )
    snapshot = snapshot_file(tmp_path)

    with local_stack(tmp_path) as stack:
        assert get(stack, "/a")["count"] == 4
        stack.process.send_signal(signal.SIGINT)
        assert stack.process.wait(timeout=30) == 0
        output = stack.output.read_text()

    assert (
        f"warning: {snapshot} holds table RetiredTable, which the template does not "
        "have: not restored, kept in the file as it is\n"
    ) in output
    after = StackState(tmp_path / "state", "route-counter").load()
    assert after.tables["RetiredTable"] == retired
    assert [i["count"]["N"] for i in after.tables["CounterTable"] if i["route"]["S"] == "/a"] == [
        "4"
    ]


@pytest.mark.parametrize(
    ("content", "why"),
    [
        (b'{"format": 1}', '"tables" is not an object of table names'),
        (b'{"format": 1, "tables": []}', '"tables" is not an object of table names'),
        (b'{"format": 1, "tables": {"CounterTable": "x"}}', "table CounterTable is not a list"),
        (b'{"format": 1, "tables": {"CounterTable": [1]}}', "table CounterTable is not a list"),
        (
            b'{"format": 1, "tables": {"CounterTable": [{"route": {"B": "***"}}]}}',
            "a binary value (B, BS) is not base64",
        ),
        (b'{"format": 1, "tables": {}, "undelivered": {"M": [{}]}}', "undelivered M is not"),
        (b"\xff\xfe{}", "not UTF-8 text"),
    ],
)
def test_a_malformed_snapshot_is_one_line_naming_the_file_and_the_fault(tmp_path, content, why):
    snapshot = snapshot_file(tmp_path)
    snapshot.parent.mkdir(parents=True)
    snapshot.write_bytes(content)

    result = start_failure(tmp_path, "--port", "0")

    assert result.returncode == 1
    assert result.stderr.count("\n") == 1
    assert result.stderr.startswith(f"error: cannot read {snapshot} ({why}")
    assert snapshot.read_bytes() == content


def test_a_stack_name_with_slashes_is_refused_before_anything_is_written(tmp_path):
    escape = f"escaped-{uuid.uuid4().hex}"

    result = start_failure(tmp_path, "--port", "0", "--stack-name", f"../../{escape}")

    assert result.returncode == 2
    assert result.stderr == (
        f"error: invalid stack name '../../{escape}': letters, digits and "
        "hyphens, starting with a letter, at most 128 (see ./deploy.sh --help)\n"
    )
    assert not (tmp_path.parent / escape).exists()
    assert not (tmp_path / "state").exists()
