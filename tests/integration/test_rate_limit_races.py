"""Rate limiting under real races: hits released at one instant from many threads, over
HTTP to the emulator (local/atomic_moto.py), whose writes to one item are atomic as on AWS."""

import threading
import uuid
from concurrent.futures import ThreadPoolExecutor

import boto3
import pytest

from tests.conftest import table_definition
from tests.unit.test_rate_limit import LIMIT, T0, WINDOW, hit, limited_counter


@pytest.fixture
def server_counter(moto_server, template, monkeypatch):
    """The limited counter talking over HTTP to the moto server, on a fresh table.

    Its DynamoDB requests are atomic as on AWS (local/atomic_moto.py), while the 20
    client threads still interleave freely between their calls: the race the design
    must survive.
    """
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_server)
    name = f"rate-{uuid.uuid4().hex[:8]}"
    boto3.client("dynamodb").create_table(TableName=name, **table_definition(template))
    monkeypatch.setenv("TABLE_NAME", name)
    module = limited_counter(monkeypatch, "counter_on_server")
    return module, name


def burst(*modules, count=20):
    """`count` hits on one route released at the same instant from as many threads,
    sent to the given modules (Lambda containers) in turn."""
    gate = threading.Barrier(count)

    def one(n):
        gate.wait()
        return hit(modules[n % len(modules)], "/hot")

    with ThreadPoolExecutor(count) as pool:
        return list(pool.map(one, range(count)))


def test_twenty_simultaneous_hits_serve_exactly_the_limit(server_counter):
    module, table = server_counter
    module.now[0] = T0 + 30

    results = burst(module)

    served = [r for r, _ in results if r["statusCode"] == 200]
    refused = [r for r, _ in results if r["statusCode"] == 429]
    assert (len(served), len(refused)) == (LIMIT, 20 - LIMIT)
    assert sorted(r["headers"]["RateLimit-Remaining"] for r in served) == ["0", "1", "2", "3", "4"]
    assert sorted(b["count"] for r, b in results if r["statusCode"] == 200) == [1, 2, 3, 4, 5]
    for r in refused:
        assert r["headers"]["RateLimit-Remaining"] == "0"
        assert 1 <= int(r["headers"]["Retry-After"]) <= WINDOW
        assert r["headers"]["RateLimit-Reset"] == r["headers"]["Retry-After"]
    item = boto3.client("dynamodb").get_item(TableName=table, Key={"route": {"S": "/hot"}})
    assert item["Item"]["count"] == {"N": str(LIMIT)}

    # The next window: 20 more at once race to roll it over, and again exactly 5 win.
    module.now[0] = T0 + WINDOW + 1
    results = burst(module)

    assert sorted(r["statusCode"] for r, _ in results) == [200] * LIMIT + [429] * (20 - LIMIT)
    assert max(b.get("count", 0) for _, b in results) == 2 * LIMIT


def test_containers_guessing_opposite_ways_at_a_roll_over_serve_exactly_the_limit(
    server_counter, monkeypatch
):
    first, _ = server_counter
    second = limited_counter(monkeypatch, "counter_on_server_2")  # another Lambda container
    second.now = first.now
    first.now[0] = T0 + 10
    hit(first, "/hot")  # served alone by `first` so far: it will guess "start a window"
    for _ in range(LIMIT - 1):
        hit(second, "/hot")  # `second` saw a shared, full window: it will guess "count"
    first.now[0] = T0 + WINDOW + 1
    guesses = [
        container.first_update(container.window_hint[hash("/hot")], T0 + WINDOW, first.now[0])
        for container in (first, second)
    ]
    assert guesses == [first.START_WINDOW, first.COUNT_IN_WINDOW]

    statuses = sorted(r["statusCode"] for r, _ in burst(first, second))

    assert statuses == [200] * LIMIT + [429] * (20 - LIMIT)
