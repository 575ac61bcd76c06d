"""`python -m local` with the generated template: the aggregator runs from the counter table's
stream, so hits sent through the API show up in the series and the top routes, over sockets."""

import datetime
import json
import time
import urllib.error
import urllib.parse
import urllib.request

import pytest

from tests.conftest import counter_table_name, emulator_client, local_stack

# The mapping's batching window is 5 s and the poller reads four times a second; a bound
# well past that keeps a slow shared machine from failing the test, never a fixed sleep.
BOUND = 60.0


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    with local_stack(tmp_path_factory.mktemp("local-analytics")) as running:
        yield running


def get(stack, path: str, **query: str) -> dict:
    url = f"{stack.url}{path}" + (f"?{urllib.parse.urlencode(query)}" if query else "")
    with urllib.request.urlopen(url, timeout=20) as response:
        assert response.status == 200
        return json.loads(response.read())


def hit(stack, route: str, times: int) -> None:
    for _ in range(times):
        with urllib.request.urlopen(stack.url + route, timeout=20) as response:
            assert response.status == 200


def wait_for(read, condition, what: str):
    """Read until the condition holds (bounded); the last read."""
    deadline = time.monotonic() + BOUND
    while not condition(value := read()):
        assert time.monotonic() < deadline, f"no {what} within {BOUND:.0f} s: {value}"
        time.sleep(0.2)
    return value


def hours(points: list[dict]) -> dict:
    return {p["start"]: p["count"] for p in points if p["count"]}


def test_hits_through_the_api_reach_the_hourly_and_daily_series(stack):
    before = datetime.datetime.now(datetime.UTC)
    hit(stack, "/series/a", 3)
    hit(stack, "/series/b", 1)
    hit(stack, "/series/a", 2)
    after = datetime.datetime.now(datetime.UTC)

    def series(route: str, kind: str) -> dict:
        return hours(get(stack, "/_stats", route=route, series=kind)["points"])

    counted = wait_for(lambda: series("/series/a", "hour"), lambda s: sum(s.values()) >= 5, "hits")
    # The hits land in the hour (or, across an hour's end, the two hours) they were sent in.
    sent_in = {before.strftime("%Y-%m-%dT%H:00:00Z"), after.strftime("%Y-%m-%dT%H:00:00Z")}
    assert set(counted) <= sent_in
    assert sum(counted.values()) == 5
    assert sum(series("/series/a", "day").values()) == 5
    assert sum(wait_for(lambda: series("/series/b", "hour"), bool, "/series/b").values()) == 1


def test_the_top_routes_rank_what_was_counted(stack):
    hit(stack, "/top/busy", 4)
    hit(stack, "/top/quiet", 1)

    def ranked() -> dict:
        return {r["route"]: r["count"] for r in get(stack, "/_stats/top", limit="100")["routes"]}

    top = wait_for(ranked, lambda t: t.get("/top/busy") == 4 and "/top/quiet" in t, "top")
    assert top["/top/quiet"] == 1
    answer = get(stack, "/_stats/top", limit="100")
    assert answer["asOf"] is not None
    routes = [r["route"] for r in answer["routes"]]
    assert routes.index("/top/busy") < routes.index("/top/quiet")


def test_the_banner_names_the_aggregators_mapping(stack):
    assert "AggregatorStreamMapping" in stack.output.read_text()


def test_a_count_set_by_hand_and_an_imported_item_change_no_bucket(stack):
    """Writes to the counter table that are no hit (an UpdateItem setting `count`, a
    PutItem importing a route) go through the stream like hits; the aggregator, reading
    their old and new images, counts none of them."""

    def series(route: str | None) -> int:
        query = {"series": "day", **({"route": route} if route else {})}
        return sum(hours(get(stack, "/_stats", **query)["points"]).values())

    hit(stack, "/not-hits/before", 1)  # once it is counted, the stream before it is too
    wait_for(lambda: series("/not-hits/before"), bool, "/not-hits/before")
    all_before = series(None)

    hit(stack, "/not-hits/x", 3)
    dynamodb, table = emulator_client(stack, "dynamodb"), counter_table_name(stack)
    dynamodb.update_item(
        TableName=table,
        Key={"route": {"S": "/not-hits/x"}},
        UpdateExpression="SET #count = :zero",
        ExpressionAttributeNames={"#count": "count"},
        ExpressionAttributeValues={":zero": {"N": "0"}},
    )
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    dynamodb.put_item(
        TableName=table,
        Item={
            "route": {"S": "/not-hits/imported"},
            "count": {"N": "57"},
            "firstSeen": {"S": "2026-01-01T00:00:00Z"},
            "lastSeen": {"S": now},
        },
    )
    hit(stack, "/not-hits/after", 1)  # the stream is in order: counted after the writes

    wait_for(lambda: series("/not-hits/after"), bool, "/not-hits/after")
    assert series("/not-hits/x") == 3
    assert series("/not-hits/imported") == 0
    assert series(None) == all_before + 4


def test_with_analytics_off_the_local_stack_counts_and_has_no_stream_or_series(tmp_path):
    """--param Analytics=off: the emulator's CloudFormation makes no stream, no aggregator,
    no series table; the counter counts and the stats say the analytics are off."""
    with local_stack(tmp_path, "--param", "Analytics=off") as off:
        hit(off, "/plain", 2)
        ddb = emulator_client(off, "dynamodb")
        resources = emulator_client(off, "cloudformation").list_stack_resources(
            StackName="route-counter"
        )["StackResourceSummaries"]
        table = counter_table_name(off)
        description = ddb.describe_table(TableName=table)["Table"]
        other_tables = [name for name in ddb.list_tables()["TableNames"] if name != table]
        routes = get(off, "/_stats")["routes"]
        with pytest.raises(urllib.error.HTTPError) as top:
            urllib.request.urlopen(f"{off.url}/_stats/top", timeout=20)
        output = off.output.read_text()

    logical = {r["LogicalResourceId"] for r in resources}
    assert not logical & {"SeriesTable", "AggregatorFunction", "AggregatorStreamMapping"}
    assert "StreamSpecification" not in description and "LatestStreamArn" not in description
    assert other_tables == []
    assert [(r["route"], r["count"]) for r in routes] == [("/plain", 2)]
    assert top.value.code == 404
    assert "analytics are off" in json.loads(top.value.read())["error"]
    assert "AggregatorStreamMapping" not in output
