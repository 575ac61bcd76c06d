"""Benchmark 1: DynamoDB calls per hit, counted with botocore's event hooks against moto.

Every API call the handler's own client makes fires `before-call.dynamodb.<Operation>`
once, and every HTTP attempt (retries included) fires `request-created.dynamodb.<Operation>`
once, so both are counted over many hits: a counted hit must cost exactly one call and one
attempt (one UpdateItem), and a request that is not counted (CORS preflight, bad path) none.
"""

import contextlib
import io
from collections import Counter

import boto3
from moto import mock_aws

from bench.common import TABLE_NAME, api_event, lambda_context, load_counter, row, table_definition

HITS = 500
HITS_QUICK = 50
ROUTES = 25


class CallCounter:
    """Count a botocore client's DynamoDB API calls and HTTP attempts, per operation."""

    def __init__(self, client) -> None:
        self.events = client.meta.events
        self.calls: Counter[str] = Counter()
        self.attempts: Counter[str] = Counter()

    def _on_call(self, model, **_) -> None:
        self.calls[model.name] += 1

    def _on_attempt(self, operation_name, **_) -> None:
        self.attempts[operation_name] += 1

    def __enter__(self) -> "CallCounter":
        self.events.register("before-call.dynamodb.*", self._on_call, unique_id="bench-calls")
        self.events.register(
            "request-created.dynamodb.*", self._on_attempt, unique_id="bench-attempts"
        )
        return self

    def __exit__(self, *_) -> None:
        self.events.unregister("before-call.dynamodb.*", unique_id="bench-calls")
        self.events.unregister("request-created.dynamodb.*", unique_id="bench-attempts")

    def total(self) -> tuple[int, int]:
        return sum(self.calls.values()), sum(self.attempts.values())


def routes(n: int) -> list[str]:
    """The root, short and nested routes, as a site's traffic would hit them."""
    paths = ["/"] + [f"/page-{i}" for i in range(1, n // 2)]
    paths += [f"/api/v1/items/{i}" for i in range(n - len(paths))]
    return paths


def send(counter, events: list[dict]) -> list[int]:
    """Call the handler once per event, its log lines discarded; return the status codes."""
    with contextlib.redirect_stdout(io.StringIO()):
        return [counter.handler(event, lambda_context())["statusCode"] for event in events]


def stored_counts(table: str) -> dict[str, int]:
    items = boto3.client("dynamodb").scan(TableName=table, ConsistentRead=True)["Items"]
    return {item["route"]["S"]: int(item["count"]["N"]) for item in items}


def with_clients(hit_events: list[dict], expected: Counter) -> dict:
    """The counter with ClientIdentity on (CLIENT_IDENTITY=header:X-Client, each request
    naming its client): its one UpdateItem also sets lastClient (docs/usage-billing.md)."""
    import os

    events = []
    for i, event in enumerate(hit_events):
        client = f"c-{i % 7}"  # in both header maps, as API Gateway sends a header
        headers = {**(event.get("headers") or {}), "X-Client": client}
        multi = {**(event.get("multiValueHeaders") or {}), "X-Client": [client]}
        events.append({**event, "headers": headers, "multiValueHeaders": multi})
    os.environ["CLIENT_IDENTITY"] = "header:X-Client"
    try:
        with mock_aws():
            boto3.client("dynamodb").create_table(TableName=TABLE_NAME, **table_definition())
            counter = load_counter("counter_bench_clients")
            with CallCounter(counter.dynamodb) as counted:
                statuses = []
                for event in events:  # the counter reads each hit's client from X-Client
                    statuses += send(counter, [event])
            items = boto3.client("dynamodb").scan(TableName=TABLE_NAME)["Items"]
    finally:
        del os.environ["CLIENT_IDENTITY"]
    stored = {item["route"]["S"]: int(item["count"]["N"]) for item in items}
    named = bool(items) and all("lastClient" in item for item in items)
    calls, attempts = counted.total()
    hits = len(events)
    exact = statuses == [200] * hits and stored == dict(expected) and named
    return row(
        "DynamoDB calls per counted hit, clients on",
        value=calls / hits,
        unit="calls",
        baseline=1.0,
        baseline_name="one UpdateItem",
        ratio=calls / hits,
        goal="= 1.0",
        passed=calls == hits and attempts == calls and exact,
        note=f"{hits} hits of 7 clients (header identity); every item names its last client:"
        f" {named}",
    )


def run(quick: bool = False) -> dict:
    hits = HITS_QUICK if quick else HITS
    paths = routes(ROUTES)
    methods = ["GET", "GET", "GET", "POST", "HEAD"]
    hit_events = [api_event(paths[i % len(paths)], methods[i % len(methods)]) for i in range(hits)]
    expected = Counter(event["path"] for event in hit_events)
    # Requests the counter answers without counting: CORS preflight and refused paths.
    uncounted_events = [
        api_event("/page-1", "OPTIONS"),
        api_event("/" + "x" * 1100),
        api_event("/a\x00b"),
        {"path": "/not-from-api-gateway"},
    ]

    with mock_aws():
        boto3.client("dynamodb").create_table(TableName=TABLE_NAME, **table_definition())
        counter = load_counter()
        with CallCounter(counter.dynamodb) as counted:
            statuses = send(counter, hit_events)
        with CallCounter(counter.dynamodb) as uncounted:
            uncounted_statuses = send(counter, uncounted_events)
        stored = stored_counts(TABLE_NAME)

    calls, attempts = counted.total()
    extra_calls, extra_attempts = uncounted.total()
    all_counted = statuses == [200] * hits and stored == dict(expected)
    per_hit = calls / hits
    per_other = extra_calls / len(uncounted_events)
    return {
        "rows": [
            row(
                "DynamoDB calls per counted hit",
                value=per_hit,
                unit="calls",
                baseline=1.0,
                baseline_name="one UpdateItem",
                ratio=per_hit / 1.0,
                goal="= 1.0",
                passed=per_hit == 1.0 and attempts == calls and all_counted,
                note=f"{hits} hits on {len(paths)} routes; {attempts} HTTP attempts; "
                f"operations {dict(counted.calls)}"
                + ("" if all_counted else "; STORED COUNTS DO NOT MATCH THE HITS"),
            ),
            row(
                "DynamoDB calls per uncounted request",
                value=per_other,
                unit="calls",
                baseline=0.0,
                baseline_name="none",
                ratio=None,
                goal="= 0",
                passed=extra_calls == 0 and extra_attempts == 0,
                note=f"OPTIONS and refused requests answered {sorted(set(uncounted_statuses))}",
            ),
            with_clients(hit_events, expected),
        ],
        "details": {
            "hits": hits,
            "routes": len(paths),
            "calls": calls,
            "attempts": attempts,
            "operations": dict(counted.calls),
            "statuses": dict(Counter(statuses)),
            "stored_counts_match_hits": all_counted,
            "uncounted_requests": len(uncounted_events),
            "uncounted_statuses": sorted(set(uncounted_statuses)),
            "uncounted_calls": extra_calls,
        },
    }
