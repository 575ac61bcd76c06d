"""Benchmark 7: analytics. What the aggregator writes per batch, and what each read costs.

In-process moto with the emulator's stream fixes (local/moto_fidelity.py): hits are counted by
the counter's own `count_hit` into a table with the template's stream, spread over routes and
hours; the stream's records go to handler/aggregator.py in batches of the template's
BatchSize, as Lambda delivers them. botocore's hooks count the aggregator's calls, the items
each TransactWriteItems holds, and the stats handler's calls per read. Write units are
estimated from the items' sizes by DynamoDB's sizing rules (a transactional write costs 2
units per KB, a standard one 1); the estimate is labelled as such.

The counter's own calls per counted hit are benchmark 1 (the stream changes nothing there:
DynamoDB writes the stream record itself).
"""

import collections
import contextlib
import io
import json
import math
import os
import random
import time

import boto3
from moto import mock_aws

from bench.common import (
    TABLE_NAME,
    aggregator_batching,
    api_event,
    generated_template,
    lambda_context,
    load_handler,
    row,
    series_definition,
)

HITS, HITS_QUICK = 3000, 400
ROUTES, ROUTES_QUICK = 200, 40
HOURS = 6
QUIET_HITS = 20
SERIES_TABLE = "route-counter-bench-series"


def item_bytes(item: dict) -> int:
    """An item's size as DynamoDB counts it for write units (names + values; a number is
    about 1 byte per 2 digits + 1; a map or a list adds 3 bytes + 1 per element)."""

    def value_bytes(value: dict) -> int:
        ((kind, data),) = value.items()
        if kind == "S":
            return len(data.encode())
        if kind == "N":
            return math.ceil(len(data.lstrip("-").replace(".", "")) / 2) + 1
        if kind == "M":
            return 3 + sum(len(k.encode()) + value_bytes(v) + 1 for k, v in data.items())
        if kind == "L":  # a top item's entry with a backend's answers (docs/monitoring.md)
            return 3 + sum(value_bytes(v) + 1 for v in data)
        return len(json.dumps(data))

    return sum(len(name.encode()) + value_bytes(value) for name, value in item.items())


class Meter:
    """A client's calls per operation; the keys each TransactWriteItems and UpdateItem
    wrote."""

    def __init__(self, client) -> None:
        self.calls: collections.Counter[str] = collections.Counter()
        self.transaction_items: list[int] = []
        self.transacted: list[tuple] = []
        self.updated: list[tuple] = []
        client.meta.events.register("before-parameter-build.dynamodb", self._on_call)

    def _on_call(self, model, params, **_) -> None:
        self.calls[model.name] += 1
        if model.name == "TransactWriteItems":
            self.transaction_items.append(len(params["TransactItems"]))
            self.transacted += [pair(a["Update"]["Key"]) for a in params["TransactItems"]]
        elif model.name == "UpdateItem":
            self.updated.append(pair(params["Key"]))

    def reset(self) -> None:
        self.calls.clear()
        self.transaction_items.clear()
        self.transacted.clear()
        self.updated.clear()


def pair(key: dict) -> tuple:
    return key["route"]["S"], key["bucket"]["S"]


def stored_sizes(client) -> dict:
    """(route, bucket) -> item bytes, every item of the series table."""
    sizes = {}
    for page in client.get_paginator("scan").paginate(TableName=SERIES_TABLE):
        for item in page["Items"]:
            sizes[(item["route"]["S"], item["bucket"]["S"])] = item_bytes(item)
    return sizes


def kb(key: tuple, before: dict, after: dict) -> int:
    """Write units of one standard write of an item: per KB of the larger of its sizes."""
    return math.ceil(max(after[key], before.get(key, 0)) / 1024)


def aggregate(aggregator, meter: Meter, client, records: list, batch_size: int) -> list:
    """Deliver the records in batches; per batch what the aggregator did."""
    per_batch = []
    for first in range(0, len(records), batch_size):
        batch = records[first : first + batch_size]
        pairs = {
            (r["dynamodb"]["NewImage"]["route"]["S"], bucket)
            for r in batch
            for bucket in (
                "h#" + r["dynamodb"]["NewImage"]["lastSeen"]["S"][:13],
                "d#" + r["dynamodb"]["NewImage"]["lastSeen"]["S"][:10],
            )
        }
        before = stored_sizes(client)
        meter.reset()
        result = quiet(aggregator.handler, {"Records": batch}, lambda_context())
        assert result == {"batchItemFailures": []}, result
        after = stored_sizes(client)
        tops_written = list(meter.updated)
        units = 2 * sum(kb(k, before, after) for k in meter.transacted) + sum(
            kb(k, before, after) for k in tops_written
        )
        per_batch.append(
            {
                "records": len(batch),
                "pairs": len(pairs),
                "route_items": sum(1 for k in meter.transacted if not k[0].startswith("#")),
                "client_route_items": sum(1 for k in meter.transacted if per_client_route(k)),
                "client_route_distinct": len({k for k in meter.transacted if per_client_route(k)}),
                "client_totals": sum(1 for k in meter.transacted if per_client(k)),
                "client_totals_distinct": len({k for k in meter.transacted if per_client(k)}),
                "totals_items": sum(1 for k in meter.transacted if k[0] == "#all"),
                "top_items": len(tops_written),
                "calls": dict(meter.calls),
                "transaction_items": list(meter.transaction_items),
                "write_units": units,
                "top_bytes": max((after[k] for k in tops_written), default=0),
            }
        )
    return per_batch


def per_client_route(key: tuple) -> bool:
    """A (client, route) usage item: "#usage#<c><route>" or "#usage#<c>" / "r#<month>#..."."""
    return key[0].startswith("#usage#") and ("/" in key[0] or key[1].startswith("r#"))


def per_client(key: tuple) -> bool:
    """A client's own usage item (its hour, day or month, in a shard part)."""
    return key[0].startswith(("#usage#", "#clients#")) and not per_client_route(key)


def create_tables(client, template: dict) -> str:
    """The counter table with the template's stream (Analytics on, the default) and the
    series table, in moto; the stream's ARN."""
    counter_props = template["Resources"]["CounterTable"]["Properties"]
    stream_arn = client.create_table(
        TableName=TABLE_NAME,
        AttributeDefinitions=counter_props["AttributeDefinitions"],
        KeySchema=counter_props["KeySchema"],
        BillingMode="PAY_PER_REQUEST",
        StreamSpecification={
            "StreamEnabled": True,
            **counter_props["StreamSpecification"]["Fn::If"][1],
        },
    )["TableDescription"]["LatestStreamArn"]
    client.create_table(TableName=SERIES_TABLE, **series_definition(template))
    os.environ["SERIES_TABLE"] = SERIES_TABLE
    return stream_arn


def quiet(call, *args):
    with contextlib.redirect_stdout(io.StringIO()):
        return call(*args)


def run(quick: bool = False) -> dict:
    from local import moto_fidelity

    hits, routes = (HITS_QUICK, ROUTES_QUICK) if quick else (HITS, ROUTES)
    template = generated_template()
    batch_size = aggregator_batching(template)["BatchSize"]
    moto_fidelity.apply()
    rng = random.Random(7)
    with mock_aws():
        client = boto3.client("dynamodb")
        stream_arn = create_tables(client, template)
        counter = load_handler("counter", "counter_bench_analytics")
        aggregator = load_handler("aggregator", "aggregator_bench")
        stats = load_handler("stats", "stats_bench_analytics")
        # Zipf-like traffic: a few routes take most hits, over HOURS hours of one day
        weights = [1 / (i + 1) for i in range(routes)]
        start = int(time.time()) // 86400 * 86400
        times = sorted(start + rng.randrange(HOURS * 3600) for _ in range(hits))
        sent = collections.Counter()
        for at in times:
            route = f"/r/{rng.choices(range(routes), weights)[0]}"
            counter.count_hit(route, at, time.monotonic() + 4)
            sent[(route, time.strftime("h#%Y-%m-%dT%H", time.gmtime(at)))] += 1

        from local.streams import stream_event
        from tests.conftest import stream_records

        records = stream_event(stream_records(stream_arn), stream_arn)["Records"]
        meter = Meter(aggregator.dynamodb)
        per_batch = aggregate(aggregator, meter, client, records, batch_size)
        # a quiet site: every hit alone in its batch (the batching window finds no other)
        for i in range(QUIET_HITS):
            at = start + HOURS * 3600 + i * 60
            counter.count_hit(f"/q/{i % 5}", at, time.monotonic() + 4)
            sent[(f"/q/{i % 5}", time.strftime("h#%Y-%m-%dT%H", time.gmtime(at)))] += 1
        later = stream_event(stream_records(stream_arn), stream_arn)["Records"][len(records) :]
        quiet_batches = aggregate(aggregator, meter, client, later, 1)

        # exactness: every hourly bucket of every route against the hits sent
        stored = {}
        for page in client.get_paginator("scan").paginate(TableName=SERIES_TABLE):
            for item in page["Items"]:
                key = (item["route"]["S"], item["bucket"]["S"])
                if key[1].startswith("h#") and not key[0].startswith("#"):
                    stored[key] = int(item["hits"]["N"])
        wrong = sum(1 for key in set(stored) | set(sent) if stored.get(key) != sent.get(key))

        # the reads: calls per request of the stats handler
        reads = {}
        stats_meter = Meter(stats.dynamodb)
        for name, path, query, accept in (
            ("top", "/_stats/top", {}, None),
            ("top today", "/_stats/top", {"period": "day"}, None),
            ("series", "/_stats", {"route": "/r/0", "series": "hour"}, None),
            ("all-routes series", "/_stats", {"series": "day"}, None),
            ("dashboard", "/_stats", {}, "text/html"),
            ("route page", "/_stats", {"route": "/r/0"}, "text/html"),
        ):
            event = api_event(path)
            event["queryStringParameters"] = query or None
            if accept:
                event["headers"]["Accept"] = accept
            stats_meter.reset()
            result = quiet(stats.handler, event, lambda_context())
            assert result["statusCode"] == 200, (name, result)
            reads[name] = dict(stats_meter.calls)

    records_total = sum(b["records"] for b in per_batch)
    over = [b for b in per_batch + quiet_batches if b["route_items"] > b["pairs"]]
    units = sum(b["write_units"] for b in per_batch)
    quiet_units = sum(b["write_units"] for b in quiet_batches) / len(quiet_batches)
    quiet_calls = collections.Counter()
    for b in quiet_batches:
        quiet_calls.update(b["calls"])
    calls = collections.Counter()
    for b in per_batch:
        calls.update(b["calls"])
    n = len(per_batch)
    rows = [
        row(
            "Aggregator: route buckets written per batch vs distinct (route, bucket) pairs",
            value=sum(b["route_items"] for b in per_batch) / n,
            unit="items",
            baseline=sum(b["pairs"] for b in per_batch) / n,
            baseline_name="distinct pairs per batch",
            ratio=sum(b["route_items"] for b in per_batch) / sum(b["pairs"] for b in per_batch),
            goal="<= 1 in every batch",
            passed=not over,
            note=f"{n} batches of up to {batch_size} records, {hits} hits on {routes} routes "
            f"over {HOURS} hours; plus per batch "
            f"{sum(b['totals_items'] for b in per_batch) / n:.1f} all-routes items and "
            f"{sum(b['top_items'] for b in per_batch) / n:.1f} top items",
        ),
        row(
            "Aggregator: calls per batch",
            value=sum(calls.values()) / n,
            unit="calls",
            status="info",
            note=", ".join(f"{op} {count / n:.2f}" for op, count in sorted(calls.items()))
            + "; items per transaction: max "
            + str(max(i for b in per_batch for i in b["transaction_items"])),
        ),
        row(
            "Aggregator: write units per counted hit (estimate)",
            value=units / records_total,
            unit="WCU",
            status="info",
            note="full batches as above; transactional writes 2 per KB, top items 1 per KB; "
            f"largest top item {max(b['top_bytes'] for b in per_batch)} bytes; the hit itself "
            "is 1 WCU",
        ),
        row(
            "Aggregator: write units per counted hit, one hit per batch (estimate)",
            value=quiet_units,
            unit="WCU",
            status="info",
            note=f"{QUIET_HITS} hits on 5 routes a minute apart, each batch one record: "
            + ", ".join(
                f"{op} {count / len(quiet_batches):.2f}"
                for op, count in sorted(quiet_calls.items())
            )
            + " calls per batch",
        ),
        row(
            "Aggregator: hourly buckets that differ from the hits sent",
            value=float(wrong),
            unit="buckets",
            goal="= 0",
            passed=wrong == 0,
            note=f"{len(sent)} (route, hour) buckets checked",
        ),
    ]
    expected = {
        "top": {"Query": 1},  # the top item's ranking parts
        "top today": {"Query": 1},
        "series": {"Query": 1},
        "all-routes series": {"Query": 1},
        "dashboard": {"Query": 5, "Scan": 1},
        "route page": {"GetItem": 1, "Query": 2},
    }
    for name, got in reads.items():
        want = expected.get(name)
        rows.append(
            row(
                f"Read: {name}, DynamoDB calls",
                value=float(sum(got.values())),
                unit="calls",
                goal=""
                if want is None
                else " + ".join(f"{c} {op}" for op, c in sorted(want.items())),
                passed=None if want is None else got == want,
                note=", ".join(f"{op} {c}" for op, c in sorted(got.items())),
            )
        )
    rows += client_rows(quick)
    return {"rows": rows, "details": {"batches": per_batch, "reads": reads}}


CLIENT_HITS, CLIENT_HITS_QUICK = 800, 200
CLIENTS = 12


def client_rows(quick: bool) -> list[dict]:
    """ClientIdentity on (docs/usage-billing.md): the same Zipf-like traffic, each hit made by
    one of CLIENTS clients (Zipf-like too), its lastClient set on the counter's own UpdateItem
    (the counter's count_hit with the hit's client).
    What the aggregator writes per batch, and what a month's usage read costs."""
    from local import moto_fidelity
    from local.streams import stream_event
    from tests.conftest import stream_records

    hits = CLIENT_HITS_QUICK if quick else CLIENT_HITS
    routes = ROUTES_QUICK if quick else ROUTES
    template = generated_template()
    batch_size = aggregator_batching(template)["BatchSize"]
    moto_fidelity.apply()
    rng = random.Random(9)
    os.environ["CLIENT_IDENTITY"] = "apikey"
    try:
        with mock_aws():
            client = boto3.client("dynamodb")
            stream_arn = create_tables(client, template)
            counter = load_handler("counter", "counter_bench_clients")
            aggregator = load_handler("aggregator", "aggregator_bench_clients")
            stats = load_handler("stats", "stats_bench_clients")
            route_weights = [1 / (i + 1) for i in range(routes)]
            client_weights = [1 / (i + 1) for i in range(CLIENTS)]
            start = int(time.time()) // 86400 * 86400
            times = sorted(start + rng.randrange(HOURS * 3600) for _ in range(hits))
            sent = collections.Counter()
            for at in times:
                who = f"key-{rng.choices(range(CLIENTS), client_weights)[0]}"
                route = f"/r/{rng.choices(range(routes), route_weights)[0]}"
                counter.count_hit(route, at, time.monotonic() + 4, client=who)
                sent[who] += 1
            records = stream_event(stream_records(stream_arn), stream_arn)["Records"]
            meter = Meter(aggregator.dynamodb)
            per_batch = aggregate(aggregator, meter, client, records, batch_size)
            month = time.strftime("%Y-%m", time.gmtime(start))
            stats_meter = Meter(stats.dynamodb)
            reads, listed = {}, {}
            for name, query in (
                ("a client's month", {"client": "key-0", "month": month}),
                ("a page of the month's clients", {"month": month}),
                ("a client's month as CSV", {"client": "key-0", "month": month, "format": "csv"}),
            ):
                event = api_event("/_stats/usage")
                event["queryStringParameters"] = query
                stats_meter.reset()
                result = quiet(stats.handler, event, lambda_context())
                assert result["statusCode"] == 200, (name, result)
                reads[name] = dict(stats_meter.calls)
                if name == "a page of the month's clients":
                    listed = {c["client"]: c["hits"] for c in json.loads(result["body"])["clients"]}
    finally:
        del os.environ["CLIENT_IDENTITY"]
    n = len(per_batch)
    written = sum(b["client_route_items"] for b in per_batch)
    distinct = sum(b["client_route_distinct"] for b in per_batch)
    over = [b for b in per_batch if b["client_route_items"] > b["client_route_distinct"]]
    units = sum(b["write_units"] for b in per_batch)
    rows = [
        row(
            "Aggregator with clients: (client, route) buckets written per batch vs distinct",
            value=written / n,
            unit="items",
            baseline=distinct / n,
            baseline_name="distinct (client, route) buckets per batch",
            ratio=written / distinct,
            goal="<= 1 in every batch",
            passed=not over,
            note=f"{n} batches of up to {batch_size} records, {hits} hits of {CLIENTS} clients on"
            f" {routes} routes; per batch also"
            f" {sum(b['client_totals'] for b in per_batch) / n:.1f} writes of"
            f" {sum(b['client_totals_distinct'] for b in per_batch) / n:.1f} per-client items"
            " (each once per transaction that holds it, like the all-routes totals), in"
            f" {sum(len(b['transaction_items']) for b in per_batch) / n:.1f} transactions",
        ),
        row(
            "Aggregator with clients: write units per counted hit (estimate)",
            value=units / len(records),
            unit="WCU",
            status="info",
            note="transactional writes 2 per KB, top items 1 per KB (as 7c, clients on)",
        ),
        row(
            "Usage: every client's month total equals the hits it made",
            value=float(sum(1 for c in sent if listed.get(c) != sent[c])),
            unit="clients wrong",
            goal="= 0",
            passed=listed == dict(sent),
            note=f"{len(sent)} clients, {hits} hits, read from GET <stats>/usage",
        ),
    ]
    expected = {
        "a client's month": {"Query": 3},
        "a page of the month's clients": {"Query": 1},
        "a client's month as CSV": {"Query": 3},
    }
    for name, got in reads.items():
        want = expected[name]
        rows.append(
            row(
                f"Read: {name}, DynamoDB calls",
                value=float(sum(got.values())),
                unit="calls",
                goal=" + ".join(f"{c} {op}" for op, c in sorted(want.items())),
                passed=got == want,
                note=", ".join(f"{op} {c}" for op, c in sorted(got.items()))
                + " (per page, whatever the traffic: tests/unit/test_usage_stats.py)",
            )
        )
    return rows
