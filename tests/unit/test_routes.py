"""Routes as the API names them (docs/routes.md): RouteTemplates, UnmatchedRoutes, MaxRoutes.

The counter runs against in-process moto with the template's counter and series tables;
DynamoDB calls are counted where they leave the client (before-send), and faults are
answered there, as the network would.
"""

import json
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace

import boto3
import pytest
from moto import mock_aws

from local.atomic_moto import make_dynamodb_atomic
from tests.conftest import (
    ROOT,
    YEAR_END,
    api_event,
    lambda_context,
    load_module,
    on_send,
    read_item,
    stop_wall_clock,
    stream_records,
    table_definition,
)
from tests.unit.test_aggregator import hits, run, stream_event, totals

TABLE, SERIES = "route-counter-test", "route-counter-series"  # conftest's tables


def hit(counter, path, method="GET"):
    result = counter.handler(api_event(path, method), lambda_context())
    return result["statusCode"], json.loads(result["body"] or "null")


def counts(client) -> dict[str, int]:
    items = client.scan(TableName=TABLE)["Items"]
    return {i["route"]["S"]: int(i["count"]["N"]) for i in items}


@pytest.fixture
def calls(tables):
    """DynamoDB operations a counter's client sends, in order."""

    def counting(counter):
        sent: list[str] = []

        def record(request, **_):
            sent.append(request.headers["X-Amz-Target"].decode().split(".")[1])

        counter.dynamodb.meta.events.register_first("before-send.dynamodb", record)
        return sent

    return counting


# --- RouteTemplates ---------------------------------------------------------------------


def test_paths_count_under_the_first_template_they_match(start, tables):
    counter = start(ROUTE_TEMPLATES="/users/{id},/users/{id}/orders/{order},/users/me")
    assert hit(counter, "/users/42")[1]["route"] == "/users/{id}"
    body = hit(counter, "/users/7")[1]
    assert (body["route"], body["count"]) == ("/users/{id}", 2)
    assert hit(counter, "/users/me")[1]["route"] == "/users/{id}"  # first match wins
    assert hit(counter, "/users/42/orders/9")[1]["route"] == "/users/{id}/orders/{order}"
    assert counts(tables) == {"/users/{id}": 3, "/users/{id}/orders/{order}": 1}


def test_a_literal_listed_before_a_template_takes_its_paths(start):
    counter = start(ROUTE_TEMPLATES="/users/me,/users/{id}")
    assert hit(counter, "/users/me")[1]["route"] == "/users/me"
    assert hit(counter, "/users/mex")[1]["route"] == "/users/{id}"
    assert hit(counter, "/users")[1]["route"] == "/users"  # {id} needs a segment


def test_root_trailing_slash_and_encoded_characters(start):
    counter = start(ROUTE_TEMPLATES="/,/{section},/users/{id}")
    assert hit(counter, "/")[1]["route"] == "/"
    assert hit(counter, "/users/42/")[1]["route"] == "/users/{id}"  # route_of drops the /
    assert hit(counter, "//users//42")[1]["route"] == "/users/{id}"
    assert hit(counter, "/users/caf%c3%a9")[1]["route"] == "/users/{id}"
    assert hit(counter, "/users/a%2Fb")[1]["route"] == "/users/{id}"  # an escaped / is data
    assert hit(counter, "/about")[1]["route"] == "/{section}"


def test_a_greedy_last_segment_takes_one_or_more_segments(start):
    counter = start(ROUTE_TEMPLATES="/files/{path+},/{any}")
    assert hit(counter, "/files/a")[1]["route"] == "/files/{path+}"
    assert hit(counter, "/files/a/b/c")[1]["route"] == "/files/{path+}"
    assert hit(counter, "/files")[1]["route"] == "/{any}"
    assert hit(counter, "/other/x")[1]["route"] == "/other/x"


def test_unmatched_paths_count_as_themselves_or_under_one_route(start, tables):
    counter = start(ROUTE_TEMPLATES="/users/{id}")
    assert hit(counter, "/health")[1]["route"] == "/health"
    counter = start(UNMATCHED_ROUTE="/{unmatched}")
    assert hit(counter, "/health")[1]["route"] == "/{unmatched}"
    body = hit(counter, "/a/b")[1]
    assert (body["route"], body["count"]) == ("/{unmatched}", 2)
    # A real path cannot take a template's name: its braces are escaped
    assert hit(counter, "/users/{id}")[1]["route"] == "/users/{id}"
    assert hit(counter, "/{unmatched}")[1]["route"] == "/{unmatched}"  # unmatched, not itself
    assert "/%7Bunmatched%7D" not in counts(tables)


def test_without_templates_unmatched_routes_changes_nothing(start):
    counter = start(UNMATCHED_ROUTE="/{unmatched}")
    assert hit(counter, "/users/42")[1]["route"] == "/users/42"


def test_the_stats_route_is_excluded_on_the_raw_path(start, tables):
    counter = start(ROUTE_TEMPLATES="/{any+}")
    assert hit(counter, "/_stats/anything")[0] == 404
    assert counts(tables) == {}
    assert hit(counter, "/x/y")[1]["route"] == "/{any+}"


def test_a_template_that_can_never_match_is_logged_once_and_the_rest_work(start, capsys):
    counter = start(ROUTE_TEMPLATES="/caf%c3%a9/{id},/a/./b,/users/{id}")
    (line,) = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert line["level"] == "ERROR"
    assert line["refused"] == ["/caf%c3%a9/{id}", "/a/./b"]
    assert hit(counter, "/users/1")[1]["route"] == "/users/{id}"
    assert hit(counter, "/caf%C3%A9/1")[1]["route"] == "/caf%C3%A9/1"


def test_the_log_line_names_the_template_and_the_path(start, capsys):
    counter = start(ROUTE_TEMPLATES="/users/{id}")
    hit(counter, "/users/42")
    (line,) = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert (line["route"], line["path"], line["status"]) == ("/users/{id}", "/users/42", 200)


def test_a_route_is_tried_only_against_templates_its_first_segment_allows(start):
    templates = [f"/r{i}/{{id}}" for i in range(1000)] + ["/{section}/{id}"]
    counter = start(ROUTE_TEMPLATES=",".join(templates))
    named = counter.TEMPLATES.named
    assert named("/r999/x") == "/r999/{id}"
    assert named("/zzz/x") == "/{section}/{id}"
    assert named("/r5/x/y") is None
    assert named("/r5") is None
    by_first, other = counter.TEMPLATES.by_segments[2]
    assert by_first["r999"][1] == ["/r999/{id}", "/{section}/{id}"]
    assert other[1] == ["/{section}/{id}"]


def test_first_match_wins_across_a_parameter_and_a_literal_first_segment(start):
    counter = start(ROUTE_TEMPLATES="/{any}/x,/lit/x,/lit/{id}")
    assert hit(counter, "/lit/x")[1]["route"] == "/{any}/x"
    assert hit(counter, "/lit/y")[1]["route"] == "/lit/{id}"
    assert hit(counter, "/other/y")[1]["route"] == "/other/y"


# --- MaxRoutes --------------------------------------------------------------------------


def test_past_max_routes_new_routes_count_as_overflow_and_old_ones_as_themselves(start, tables):
    counter = start(MAX_ROUTES="2")
    assert [hit(counter, p)[1]["route"] for p in ("/a", "/b", "/c", "/d", "/a")] == [
        "/a",
        "/b",
        "/{overflow}",
        "/{overflow}",
        "/a",
    ]
    assert counts(tables) == {"/a": 2, "/b": 1, "/{overflow}": 2}
    ledger = tables.get_item(
        TableName=SERIES, Key={"route": {"S": "#routes"}, "bucket": {"S": "cap"}}
    )
    assert ledger["Item"]["routes"] == {"N": "2"}
    # A new container learns the cap is reached from DynamoDB, not from memory
    assert hit(start(), "/e")[1]["route"] == "/{overflow}"
    assert hit(start(), "/b")[1]["count"] == 2


def test_an_existing_route_stays_one_update_item_per_hit(start, calls):
    counter = start(MAX_ROUTES="2")
    sent = calls(counter)
    hit(counter, "/a")
    assert sent == ["UpdateItem", "TransactWriteItems"]  # a new route takes a place
    sent.clear()
    for _ in range(5):
        hit(counter, "/a")
    assert sent == ["UpdateItem"] * 5
    hit(counter, "/b")
    hit(counter, "/c")  # the cap is reached: DynamoDB says so once
    sent.clear()
    hit(counter, "/d")  # then this container knows: no transaction
    hit(counter, "/a")
    assert sent == ["UpdateItem", "UpdateItem", "UpdateItem"]


def test_the_first_hit_of_a_route_under_the_cap_answers_as_any_hit(start, tables):
    counter = start(MAX_ROUTES="5")
    status, body = hit(counter, "/first")
    item = read_item(TABLE, "/first")
    assert status == 200
    assert body == {
        "route": "/first",
        "count": 1,
        "firstSeen": item["firstSeen"]["S"],
        "lastSeen": item["lastSeen"]["S"],
    }
    assert hit(counter, "/first")[1]["count"] == 2


def test_the_cap_with_a_rate_limit_keeps_the_window_of_a_new_route(start, tables, monkeypatch):
    counter = start(MAX_ROUTES="1", RATE_LIMIT="2")
    # RateLimit's window (60 s, from the epoch) on a stopped clock: the hits in one window
    stop_wall_clock(monkeypatch, counter, YEAR_END)
    first = counter.handler(api_event("/a"), lambda_context())
    assert first["headers"]["RateLimit-Remaining"] == "1"
    assert hit(counter, "/a")[0] == 200
    assert hit(counter, "/a")[0] == 429
    assert hit(counter, "/b")[1]["route"] == "/{overflow}"
    assert counts(tables) == {"/a": 2, "/{overflow}": 1}


def test_templates_are_named_before_the_cap(start, tables):
    counter = start(ROUTE_TEMPLATES="/users/{id}", MAX_ROUTES="1")
    for user in range(20):
        assert hit(counter, f"/users/{user}")[1]["route"] == "/users/{id}"
    assert hit(counter, "/other")[1]["route"] == "/{overflow}"
    assert counts(tables) == {"/users/{id}": 20, "/{overflow}": 1}


def test_concurrent_new_routes_never_exceed_the_cap_and_every_hit_is_counted(start, tables):
    counters = [start(MAX_ROUTES="25") for _ in range(4)]  # four containers
    paths = [f"/random/{n}" for n in range(300)]
    barrier = threading.Barrier(16)

    def send(worker: int) -> list[str]:
        barrier.wait()
        counter = counters[worker % 4]
        return [hit(counter, p)[1]["route"] for p in paths[worker::16]]

    with ThreadPoolExecutor(16) as pool:
        named = Counter(route for routes in pool.map(send, range(16)) for route in routes)
    stored = counts(tables)
    assert len(stored) == 26  # 25 routes and the overflow route
    assert stored["/{overflow}"] == named["/{overflow}"] == 275
    assert sum(stored.values()) == 300
    ledger = tables.get_item(
        TableName=SERIES, Key={"route": {"S": "#routes"}, "bucket": {"S": "cap"}}
    )
    assert ledger["Item"]["routes"] == {"N": "25"}


def test_two_containers_creating_one_route_take_one_place(start, tables):
    first, second = start(MAX_ROUTES="3"), start(MAX_ROUTES="3")
    assert hit(first, "/same")[1]["count"] == 1
    # The second container finds no item (deleted by hand), then the first one recreates it
    # before the second's transaction reaches DynamoDB.
    tables.delete_item(TableName=TABLE, Key={"route": {"S": "/same"}})

    def recreate_before_the_transaction(request, **_):
        first.count_hit("/same", 0, float("inf"))

    with on_send(second.dynamodb, "TransactWriteItems", recreate_before_the_transaction):
        assert hit(second, "/same")[1]["route"] == "/same"
    assert counts(tables) == {"/same": 2}
    ledger = tables.get_item(
        TableName=SERIES, Key={"route": {"S": "#routes"}, "bucket": {"S": "cap"}}
    )
    assert ledger["Item"]["routes"] == {"N": "1"}  # the place was taken once


def cancelled(reason: str):
    """TransactWriteItems' answer when DynamoDB cancelled it, nothing written: given before
    the call is made (moto would apply the transaction whatever a before-send hook answers)."""
    parsed = {
        "Error": {"Code": "TransactionCanceledException", "Message": f"[None, {reason}]"},
        "CancellationReasons": [{"Code": "None"}, {"Code": reason}],
        "ResponseMetadata": {"HTTPStatusCode": 400},
    }
    return SimpleNamespace(status_code=400), parsed


def test_a_transaction_conflict_is_retried_with_the_same_token(start, tables):
    counter = start(MAX_ROUTES="3")
    tokens: list[str] = []

    def conflict_once(params, **_):
        tokens.append(json.loads(params["body"])["ClientRequestToken"])
        return cancelled("TransactionConflict") if len(tokens) == 1 else None

    with on_send(counter.dynamodb, "TransactWriteItems", conflict_once, "before-call"):
        status, body = hit(counter, "/new")
    assert (status, body["route"], body["count"]) == (200, "/new", 1)
    assert len(tokens) == 2 and tokens[0] == tokens[1]
    assert hit(counter, "/new")[1]["count"] == 2
    assert counts(tables) == {"/new": 2}


def test_a_lasting_conflict_answers_busy_and_counts_nothing(start, tables, capsys):
    counter = start(MAX_ROUTES="3")
    always = lambda **_: cancelled("TransactionConflict")  # noqa: E731
    with on_send(counter.dynamodb, "TransactWriteItems", always, "before-call"):
        result = counter.handler(api_event("/new"), lambda_context())
    body = json.loads(result["body"])
    assert result["statusCode"] == 503
    assert result["headers"]["Retry-After"] == "1"
    assert (body["error"], body["outcome"]) == ("the counter is busy, retry shortly", "not counted")
    assert counts(tables) == {}
    line = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert (line["level"], line["errorCode"]) == ("ERROR", "TransactionCanceledException")
    assert hit(counter, "/new")[1]["count"] == 1  # the next request takes the place


def test_the_stats_say_the_cap_and_its_overflow_route(start, monkeypatch):
    counter = start(MAX_ROUTES="2")
    for path in ("/a", "/b", "/c"):
        hit(counter, path)
    stats = load_module(ROOT / "handler" / "stats.py", "stats_under_test")
    answer = stats.handler(api_event("/_stats"), lambda_context("StatsFunction"))
    body = json.loads(answer["body"])
    assert body["overflow"] == {
        "route": "/{overflow}",
        "maxRoutes": 2,
        "routes": 2,
        "reached": True,
    }
    assert {r["route"]: r["count"] for r in body["routes"]} == {"/a": 1, "/b": 1, "/{overflow}": 1}
    html = stats.handler(
        api_event("/_stats", headers={"Accept": "text/html"}), lambda_context("StatsFunction")
    )["body"]
    assert "MaxRoutes 2: reached." in html
    assert "/{overflow}" in html


def test_without_a_cap_the_stats_answer_as_before(start):
    counter = start()
    hit(counter, "/a")
    stats = load_module(ROOT / "handler" / "stats.py", "stats_under_test")
    body = json.loads(stats.handler(api_event("/_stats"), lambda_context("StatsFunction"))["body"])
    assert set(body) == {"routes", "next"}


def test_the_emulator_cancels_a_transaction_on_a_streamed_table_without_losing_hits(template):
    """local/atomic_moto.py: moto cancels a transaction by putting back a copy of each table
    taken when it began, which took back hits counted meanwhile (the counter table has a
    stream, and MaxRoutes' transaction writes to it)."""
    make_dynamodb_atomic()
    stream = template["Resources"]["CounterTable"]["Properties"]["StreamSpecification"]
    stream = stream["Fn::If"][1]  # with Analytics on (the default)
    with mock_aws():
        client = boto3.client("dynamodb")
        client.create_table(
            TableName=TABLE,
            **table_definition(template),
            StreamSpecification={"StreamEnabled": True, **stream},
        )
        cancelled_transaction = [
            {
                "Update": {
                    "TableName": TABLE,
                    "Key": {"route": {"S": f"/new/{n}"}},
                    "UpdateExpression": "SET #count = :one",
                    "ConditionExpression": "attribute_exists(firstSeen)",
                    "ExpressionAttributeNames": {"#count": "count"},
                    "ExpressionAttributeValues": {":one": {"N": "1"}},
                }
            }
            for n in range(2)
        ]

        def transactions() -> None:
            for _ in range(100):
                with pytest.raises(client.exceptions.TransactionCanceledException):
                    client.transact_write_items(TransactItems=cancelled_transaction)

        def hits() -> None:
            for _ in range(100):
                client.update_item(
                    TableName=TABLE,
                    Key={"route": {"S": "/hot"}},
                    UpdateExpression="ADD #count :one",
                    ExpressionAttributeNames={"#count": "count"},
                    ExpressionAttributeValues={":one": {"N": "1"}},
                )

        with ThreadPoolExecutor(5) as pool:
            done = [pool.submit(transactions), *(pool.submit(hits) for _ in range(4))]
            for future in done:
                future.result()
        assert counts(client) == {"/hot": 400}


def test_the_aggregator_counts_the_first_hit_that_took_a_place(stream_tables, monkeypatch):
    """The transaction writes the route's item with count 1: an INSERT the aggregator counts
    as one hit, as an UpdateItem's; the ledger item is in the series table, off the stream."""
    monkeypatch.setenv("MAX_ROUTES", "1")
    counter = load_module(ROOT / "handler" / "counter.py", "counter_capped")
    aggregator = load_module(ROOT / "handler" / "aggregator.py", "aggregator_capped")
    for path in ("/a", "/a", "/b"):
        hit(counter, path)
    records = stream_records(stream_tables.stream_arn)
    run(aggregator, stream_event(records, stream_tables.stream_arn)["Records"])
    daily = {r: n for (r, bucket), n in hits(stream_tables.series).items() if bucket[:2] == "d#"}
    assert daily == {"/a": 2, "/{overflow}": 1}
    assert set(totals(stream_tables.series).values()) == {(3, 2)}  # hits, new routes


def test_a_transaction_refused_for_good_is_not_retried(start, tables):
    counter = start(MAX_ROUTES="3")
    sent = []

    def invalid(**_):
        sent.append(1)
        return cancelled("ValidationError")

    with on_send(counter.dynamodb, "TransactWriteItems", invalid, "before-call"):
        result = counter.handler(api_event("/new"), lambda_context())
    assert result["statusCode"] == 500
    assert json.loads(result["body"])["error"] == "counter unavailable"
    assert sent == [1]
    assert counts(tables) == {}


def test_a_template_route_is_read_back_by_its_name(start):
    """/_stats?route=/users/{id}: the stats looked up /users/%7Bid%7D (the route rule escapes
    the braces of a real path), so a template route's record and series were never found."""
    counter = start(ROUTE_TEMPLATES="/users/{id}", MAX_ROUTES="5")
    for path in ("/users/42", "/users/7"):
        hit(counter, path)
    stats = load_module(ROOT / "handler" / "stats.py", "stats_under_test")

    def read(route: str) -> dict:
        answer = stats.handler(
            api_event("/_stats", query={"route": route}), lambda_context("StatsFunction")
        )
        return {"status": answer["statusCode"], **json.loads(answer["body"])}

    assert (read("/users/{id}")["status"], read("/users/{id}")["count"]) == (200, 2)
    # A real path with braces is still its escaped self: never the template's record
    assert read("/users/{id}x")["status"] == 404
    assert read("/{overflow}")["status"] == 404  # under the cap: not counted yet
