"""The counter handler under moto, with events shaped as API Gateway sends them."""

import json

import pytest

from tests.conftest import api_event, lambda_context, read_item


def call(counter, event):
    result = counter.handler(event, lambda_context())
    body = json.loads(result["body"]) if result["body"] else None
    return result, body


def test_root_counts_and_answers_json(counter, counter_table):
    first, body1 = call(counter, api_event("/"))
    _, body2 = call(counter, api_event("/"))

    assert first["statusCode"] == 200
    assert first["headers"]["Content-Type"] == "application/json"
    assert first["headers"]["Cache-Control"] == "no-store"
    assert (body1["route"], body1["count"]) == ("/", 1)
    assert (body2["route"], body2["count"]) == ("/", 2)
    assert read_item(counter_table, "/")["count"] == {"N": "2"}


def test_timestamps_first_seen_stays_last_seen_moves(counter, monkeypatch):
    now = [1_700_000_000.0]
    monkeypatch.setattr(counter.time, "time", lambda: now[0])

    _, first = call(counter, api_event("/hello"))
    now[0] += 300
    _, second = call(counter, api_event("/hello"))

    assert first["firstSeen"] == first["lastSeen"] == "2023-11-14T22:13:20Z"
    assert second["firstSeen"] == "2023-11-14T22:13:20Z"
    assert second["lastSeen"] == "2023-11-14T22:18:20Z"
    assert isinstance(second["count"], int)


@pytest.mark.parametrize(
    ("path", "route"),
    [
        ("/", "/"),
        ("/hello", "/hello"),
        ("/a/b/c", "/a/b/c"),
        ("/a/", "/a"),
        ("//a", "/a"),
        ("/a//b///", "/a/b"),
        ("/caf%C3%A9", "/caf%C3%A9"),
        ("/café", "/caf%C3%A9"),  # a raw non-ASCII path is its UTF-8 escapes
        ("/Hello", "/Hello"),
        ("/a b~\xa0", "/a%20b~%C2%A0"),
    ],
)
def test_route_rule(counter, path, route):
    _, body = call(counter, api_event(path))
    assert body["route"] == route


def test_query_string_is_not_part_of_the_route(counter):
    call(counter, api_event("/search", query={"q": "a"}))
    _, body = call(counter, api_event("/search", query={"q": "b"}))
    assert (body["route"], body["count"]) == ("/search", 2)


@pytest.mark.parametrize("method", ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"])
def test_every_method_counts(counter, method):
    result, body = call(counter, api_event("/m", method))
    assert result["statusCode"] == 200
    assert body["count"] == 1


def test_options_answers_204_and_counts_nothing(counter, counter_table):
    result, body = call(counter, api_event("/pre", "OPTIONS"))
    assert result["statusCode"] == 204
    assert body is None
    assert read_item(counter_table, "/pre") is None


@pytest.mark.parametrize(
    ("event", "status", "words"),
    [
        ({}, 400, "not an API Gateway proxy event"),
        ("a string", 400, "not an API Gateway proxy event"),
        ({"httpMethod": "GET", "requestContext": {}}, 400, "'path' must be a string"),
        ({**api_event("/x"), "path": 42}, 400, "'path' must be a string"),
        ({**api_event("/x"), "httpMethod": None}, 400, "not an API Gateway proxy event"),
        (api_event("/" + "a" * 1024), 414, "the route is 1025 bytes; at most 1024 are counted"),
        (api_event("/" + "é" * 512), 414, "the route is 3073 bytes; at most 1024 are counted"),
        (api_event("/a\x00b"), 400, "control characters"),
        (api_event("/a\nb"), 400, "control characters"),
        (api_event("/a\x85b"), 400, "control characters"),
        (api_event("/a\x1fb"), 400, "control characters"),
        (api_event("/a\x7fb"), 400, "control characters"),
        (api_event("/a\x9fb"), 400, "control characters"),
        (api_event("/\ud800"), 400, "not valid UTF-8"),
    ],
)
def test_bad_input_is_a_clear_4xx_and_writes_nothing(counter, counter_table, event, status, words):
    result, body = call(counter, event)

    assert result["statusCode"] == status
    assert words in body["error"]
    items = __import__("boto3").client("dynamodb").scan(TableName=counter_table)["Items"]
    assert items == []


def test_path_of_exactly_1024_bytes_counts(counter):
    result, body = call(counter, api_event("/" + "a" * 1023))
    assert result["statusCode"] == 200
    assert body["count"] == 1


def test_one_json_log_line_per_request(counter, capsys):
    call(counter, api_event("/logged", "POST"))
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 1
    line = json.loads(lines[0])
    assert line["route"] == "/logged"
    assert line["method"] == "POST"
    assert line["status"] == 200
    assert line["level"] == "INFO"
    assert isinstance(line["latencyMs"], float)
    assert line["requestId"]
