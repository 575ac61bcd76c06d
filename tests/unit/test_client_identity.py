"""ClientIdentity (docs/clients.md): who made each hit, checked before anything is counted or
forwarded, and written on the route's item (lastClient) by the hit's own one write.

The counter runs against in-process moto with the template's tables; DynamoDB calls are
counted where they leave the client (before-send).
"""

import json

import pytest

from tests.backend_server import backend_server
from tests.conftest import (
    ROOT,
    YEAR_END,
    api_event,
    lambda_context,
    load_module,
    read_item,
    stop_wall_clock,
    stream_records,
    tables_with_stream,
)

TABLE, SERIES = "route-counter-test", "route-counter-series"


def hit(counter, event):
    result = counter.handler(event, lambda_context())
    return result["statusCode"], json.loads(result["body"] or "null")


def items(client) -> list[dict]:
    return client.scan(TableName=TABLE)["Items"]


def last_client(route: str) -> str | None:
    item = read_item(TABLE, route) or {}
    return item.get("lastClient", {}).get("S")


def sent_by(counter) -> list[tuple[str, dict]]:
    """Every DynamoDB request the counter's client sends from now on: (operation, body)."""
    sent: list[tuple[str, dict]] = []

    def record(request, **_):
        operation = request.headers["X-Amz-Target"].decode().split(".")[1]
        sent.append((operation, json.loads(request.body)))

    counter.dynamodb.meta.events.register_first("before-send.dynamodb", record)
    return sent


def test_a_header_identity_is_written_with_the_hit(start):
    counter = start(CLIENT_IDENTITY="header:X-Client-Id")
    assert hit(counter, api_event("/a", headers={"X-Client-Id": "acme"}))[0] == 200
    assert last_client("/a") == "acme"
    # Header names are case-insensitive; the value's surrounding blanks are not part of it
    status, body = hit(counter, api_event("/a", headers={"x-client-id": " globex "}))
    assert (status, body["count"]) == (200, 2)
    assert last_client("/a") == "globex"


def test_one_update_item_per_hit_with_the_client(start):
    counter = start(CLIENT_IDENTITY="header:X-Client-Id")
    sent = sent_by(counter)
    for n in range(3):
        hit(counter, api_event("/one", headers={"X-Client-Id": f"c{n}"}))
    assert [op for op, _ in sent] == ["UpdateItem"] * 3
    assert [body["ExpressionAttributeValues"][":client"]["S"] for _, body in sent] == [
        "c0",
        "c1",
        "c2",
    ]


@pytest.mark.parametrize(
    "headers, status, words",
    [
        ({}, 401, "the X-Client-Id header is required"),
        ({"X-Client-Id": ""}, 401, "is required"),
        ({"X-Client-Id": "   "}, 401, "is required"),
        ({"X-Client-Id": "x" * 257}, 403, "over 256 characters"),
        ({"X-Other": "acme"}, 401, "is required"),
    ],
)
def test_a_missing_or_unusable_header_is_refused_and_nothing_is_written(
    start, tables, headers, status, words
):
    counter = start(CLIENT_IDENTITY="header:X-Client-Id")
    sent = sent_by(counter)
    answer, body = hit(counter, api_event("/refused", headers=headers))
    assert answer == status
    assert words in body["error"]
    assert sent == [] and items(tables) == []


def test_a_client_id_of_256_characters_is_counted(start):
    counter = start(CLIENT_IDENTITY="header:X-Client-Id")
    assert hit(counter, api_event("/long", headers={"X-Client-Id": "é" * 256}))[0] == 200
    assert last_client("/long") == "é" * 256


def test_a_header_given_twice_counts_once_or_is_refused(start, tables):
    counter = start(CLIENT_IDENTITY="header:X-Client-Id")
    twice = api_event("/twice", headers={"X-Client-Id": "acme"})
    twice["multiValueHeaders"]["X-Client-Id"] = ["acme", "acme"]
    assert hit(counter, twice)[0] == 200
    assert last_client("/twice") == "acme"
    # Two different clients in one request: which one pays is not ours to guess
    differ = api_event("/differ", headers={"X-Client-Id": "evil"})
    differ["multiValueHeaders"]["x-client-id"] = ["acme"]
    status, body = hit(counter, differ)
    assert status == 403 and "different values" in body["error"]
    assert read_item(TABLE, "/differ") is None


def test_an_api_key_identity_is_its_id(start, tables):
    counter = start(CLIENT_IDENTITY="apikey")
    assert hit(counter, api_event("/k", api_key_id="k1a2b3"))[0] == 200
    assert last_client("/k") == "k1a2b3"
    status, body = hit(counter, api_event("/k"))  # a method without ApiKeyRequired
    assert status == 401 and "API key" in body["error"]
    assert int(read_item(TABLE, "/k")["count"]["N"]) == 1


def test_an_authorizer_identity_is_its_principal(start):
    counter = start(CLIENT_IDENTITY="authorizer")
    assert hit(counter, api_event("/p", principal_id="user|42"))[0] == 200
    assert last_client("/p") == "user|42"
    assert hit(counter, api_event("/p", principal_id=""))[0] == 401
    assert hit(counter, api_event("/p"))[0] == 401


def test_without_client_identity_no_client_is_written(start):
    counter = start(CLIENT_IDENTITY="none")
    assert hit(counter, api_event("/n", headers={"X-Client-Id": "acme"}))[0] == 200
    assert "lastClient" not in read_item(TABLE, "/n")


def test_rate_limited_hits_carry_their_client(start, tables, monkeypatch):
    counter = start(CLIENT_IDENTITY="header:X-Client-Id", RATE_LIMIT="2")
    # RateLimit's window (60 s, from the epoch) on a stopped clock: the hits in one window
    stop_wall_clock(monkeypatch, counter, YEAR_END)
    sent = sent_by(counter)
    for name in ("acme", "globex"):  # a window started, then counted in it
        assert hit(counter, api_event("/rl", headers={"X-Client-Id": name}))[0] == 200
        assert last_client("/rl") == name
    assert hit(counter, api_event("/rl", headers={"X-Client-Id": "initech"}))[0] == 429
    assert last_client("/rl") == "globex"  # a refused hit is nobody's
    assert [op for op, _ in sent] == ["UpdateItem"] * 3  # the refused one's write failed


def test_a_route_claimed_under_max_routes_carries_its_client(start, tables):
    counter = start(CLIENT_IDENTITY="header:X-Client-Id", MAX_ROUTES="5")
    assert hit(counter, api_event("/new", headers={"X-Client-Id": "acme"}))[0] == 200
    assert last_client("/new") == "acme"
    assert hit(counter, api_event("/new", headers={"X-Client-Id": "globex"}))[0] == 200
    assert last_client("/new") == "globex"


def test_each_stream_record_names_its_hits_client(template, monkeypatch):
    with tables_with_stream(template, monkeypatch) as tables:
        monkeypatch.setenv("CLIENT_IDENTITY", "header:X-Client-Id")
        counter = load_module(ROOT / "handler" / "counter.py", "counter_stream_clients")
        for name in ("acme", "globex", "acme"):
            hit(counter, api_event("/s", headers={"X-Client-Id": name}))
        images = [r["dynamodb"]["NewImage"] for r in stream_records(tables.stream_arn)]
    assert [(i["count"]["N"], i["lastClient"]["S"]) for i in images] == [
        ("1", "acme"),
        ("2", "globex"),
        ("3", "acme"),
    ]


@pytest.mark.parametrize("policy", ["monitor", "meter"])
def test_a_backend_never_sees_a_request_without_its_client(tables, monkeypatch, policy):
    with backend_server() as backend:
        monkeypatch.setenv("BACKEND", backend.url + "/base")
        monkeypatch.setenv("FAILURE_POLICY", policy)
        monkeypatch.setenv("CLIENT_IDENTITY", "header:X-Client-Id")
        counter = load_module(ROOT / "handler" / "counter.py", "counter_front_clients")
        status, body = hit(counter, api_event("/echo"))
        assert status == 401 and "X-Client-Id" in body["error"]
        assert backend.requests == [] and items(tables) == []
        result = counter.handler(
            api_event("/echo", headers={"X-Client-Id": "acme"}), lambda_context()
        )
        assert result["statusCode"] == 200
        assert backend.paths() == ["/base/echo"]
    assert last_client("/echo") == "acme"
