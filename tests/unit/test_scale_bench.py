"""bench/scale.py (benchmark 9): its traffic is what a sharded stream delivers, and its
numbers come from the real aggregator against the emulator with conflicts cancelled."""

import collections
import random

import pytest

from bench import scale


class Recorder:
    def __init__(self) -> None:
        self.records: list = []


def test_a_routes_records_are_in_one_shard_in_order_with_their_old_and_new_counts():
    shards = [Recorder() for _ in range(4)]

    truth = scale.traffic(2000, 1.0, shards, random.Random(1))  # noqa: S311

    seen: dict[str, int] = {}
    for number, shard in enumerate(shards):
        arrivals = [at for at, _ in shard.records]
        assert arrivals == sorted(arrivals)
        for _, record in shard.records:
            change = record["dynamodb"]
            route = change["NewImage"]["route"]["S"]
            assert seen.setdefault(route, number) == number  # one shard per route
            count = int(change["NewImage"]["count"]["N"])
            if count == 1:
                assert record["eventName"] == "INSERT" and "OldImage" not in change
            else:
                assert record["eventName"] == "MODIFY"
                assert int(change["OldImage"]["count"]["N"]) == count - 1
    per_route = collections.Counter(
        r["dynamodb"]["NewImage"]["route"]["S"] for s in shards for _, r in s.records
    )
    assert sum(per_route.values()) == 2000 == truth[("#all", "all")]
    # Zipf: the first route takes about 1 / H(1000) of the hits (13%)
    assert 0.10 < per_route["/r/0"] / 2000 < 0.17
    assert all(len(s.records) for s in shards)


@pytest.fixture
def emulator(monkeypatch):
    from moto import mock_aws

    from bench.common import (
        FAKE_AWS_ENV,
        UNSET_AWS_ENV,
        aggregator_batching,
        generated_template,
        series_definition,
    )
    from local import atomic_moto, moto_fidelity

    for name in UNSET_AWS_ENV:
        monkeypatch.delenv(name, raising=False)
    for name, value in {**FAKE_AWS_ENV, "SERIES_TABLE": ""}.items():
        monkeypatch.setenv(name, value)  # run_case sets SERIES_TABLE: put back after
    moto_fidelity.apply()
    atomic_moto.make_dynamodb_atomic()
    atomic_moto.configure(conflicts="cancel")
    template = generated_template()
    with mock_aws():
        import boto3

        yield (
            boto3.client("dynamodb"),
            series_definition(template),
            aggregator_batching(template),
        )
    atomic_moto.configure()


def test_four_shards_in_parallel_count_every_bucket_exactly(emulator):
    client, series, mapping = emulator

    case = scale.run_case(client, series, mapping, 4, 4000, 0.1)

    assert case["hits"] == 400 and case["wrong_buckets"] == 0 and case["lost_records"] == 0
    assert case["transactions"] >= case["invocations"] >= 4
    # The template's tumbling window names each batch's shard: each shard adds to its own
    # parts of the all-routes items, and no transaction meets another's.
    assert mapping["TumblingWindowInSeconds"] > 0
    assert case["conflicts"] == 0 and case["failed_batches"] == 0
    assert case["write_units"] > 0 and case["hottest_units_per_second"] > 0


def test_a_top_merge_that_loses_a_race_is_counted_as_a_retry(emulator):
    """The conflict row counts both ways a shard loses a race: its transaction cancelled, or
    its top merge refused because another shard moved the item's version first."""
    client, series, mapping = emulator

    case = scale.run_case(client, series, mapping, 4, 4000, 0.1)

    assert case["top_merges"] >= case["invocations"]  # each batch merges the rankings
    assert 0 <= case["top_retries"] <= case["top_merges"]
    (retried,) = [r for r in scale.rows_of(case, full=True) if "retried" in r["name"]]
    lost = case["conflicts"] + case["top_retries"]
    assert retried["value"] == pytest.approx(
        100 * lost / (case["transactions"] + case["top_merges"])
    )


def test_sixteen_shards_meet_the_exactness_and_hot_item_goals_and_race_only_on_shared_parts(
    emulator,
):
    """Bench 9's goals at 16 shards (rows 9k and 9n), on a short run: every bucket exact, the
    hottest item under 30% of a partition. Conflicts can only come from shards that share an
    item: a ranking part (top merges) or a totals part (transactions), so where no pair shares
    one, nothing may be retried. How often pairs that share one do race depends on how the
    threads are scheduled, so the rate's goal (row 9l, under 1%) is measured by `make bench`,
    not asserted here (it failed once at 2% on this machine under load). Write units per hit
    need the full run's long batches (bench/run.py)."""
    client, series, mapping = emulator

    case = scale.run_case(client, series, mapping, 16, 16000, 0.1)

    rows = {r["name"].split(": ", 2)[-1]: r for r in scale.rows_of(case, full=True)}
    for name in (
        "buckets that differ from the hits sent",
        "hottest item's share of a partition's writes",
    ):
        assert rows[name]["status"] == "pass", rows[name]
    assert case["top_merges"] >= case["invocations"] >= 16
    if case["pairs_sharing_a_ranking_part"] == 0:
        assert case["top_retries"] == 0
    if case["pairs_sharing_a_totals_part"] == 0:
        assert case["conflicts"] == 0 and case["failed_batches"] == 0
    assert case["lost_records"] == 0
    assert "pairs of shards share a ranking part" in rows["writes retried for a conflict"]["note"]
