"""The handlers on events written by others (tests/golden/, sources in its README): API
Gateway REST proxy events and DynamoDB stream records from AWS's documentation, SAM CLI's
`sam local generate-event` templates and Powertools' test events. Every other test builds
its events with our own builder (local/events.py, local/streams.py); a fidelity bug there
would be in those tests too, so the builders' output is also compared with these."""

import base64
import copy
import json

import boto3
import pytest

from local.events import ApiInfo, build_event
from local.streams import stream_event
from tests.backend_server import backend_server
from tests.conftest import (
    ROOT,
    default_router,
    lambda_context,
    load_module,
    read_item,
    route_item,
    stream_records,
)

GOLDEN = ROOT / "tests" / "golden"

# The values `sam local generate-event` fills in when given none: SAM CLI's
# samcli/lib/generated_sample_events/event-mapping.json (tags' defaults; body base64-encoded).
SAM_AWS_PROXY = {
    "body": base64.b64encode(b'{"test":"body"}').decode(),
    "stage": "prod",
    "method": "POST",
    "resource": "/{proxy+}",
    "path": "path/to/resource",
    "account_id": "123456789012",
    "dns_suffix": "us-east-1.amazonaws.com",
}
SAM_DYNAMODB_UPDATE = {
    "account_id": "123456789012",
    "partition": "aws",
    "region": "us-east-1",
    "table": "ExampleTableWithStream",
}


def sam_event(name: str, values: dict[str, str]) -> dict:
    """A SAM CLI event template rendered as `sam local generate-event` renders it (its
    {{{tag}}} placeholders, triple mustaches: substituted as they are)."""
    text = (GOLDEN / name).read_text()
    for tag, value in values.items():
        text = text.replace("{{{" + tag + "}}}", value)
    assert "{{{" not in text
    return json.loads(text)


def aws_docs_event() -> dict:
    """The API Gateway Developer Guide's example input: the page prints multiValueHeaders'
    keys in single quotes (not JSON); nothing else of it is changed."""
    text = (GOLDEN / "apigateway" / "aws-docs-proxy-input-example.txt").read_text()
    return json.loads(text.replace("'", '"'))["input"]


def powertools(name: str) -> dict:
    return json.loads((GOLDEN / name).read_text())


def golden_proxy_events() -> dict[str, dict]:
    return {
        "aws-docs": aws_docs_event(),
        "sam": sam_event("apigateway/sam-AwsProxy.json", SAM_AWS_PROXY),
        "powertools": powertools("apigateway/powertools-apiGatewayProxyEvent.json"),
    }


def golden_stream_events() -> dict[str, dict]:
    return {
        "sam": sam_event("dynamodb/sam-DynamoDBUpdate.json", SAM_DYNAMODB_UPDATE),
        "powertools": powertools("dynamodb/powertools-dynamoStreamEvent.json"),
    }


def answer(result: dict) -> dict:
    assert result["headers"]["Content-Type"].startswith("application/json")
    return json.loads(result["body"])


# --- the counter ---------------------------------------------------------------------------


@pytest.mark.parametrize("source", ["aws-docs", "sam", "powertools"])
def test_the_counter_counts_the_path_of_a_golden_proxy_event(counter, counter_table, source):
    event = golden_proxy_events()[source]

    first = counter.handler(event, lambda_context())
    second = counter.handler(copy.deepcopy(event), lambda_context())

    assert first["statusCode"] == 200 and second["statusCode"] == 200
    # A second can pass between the two hits, so lastSeen may move on; nothing else may.
    later = answer(second)
    assert later["lastSeen"] >= answer(first)["lastSeen"]
    assert answer(first) | {"count": 2, "lastSeen": later["lastSeen"]} == later
    assert answer(second)["route"] == event["path"]
    assert read_item(counter_table, event["path"])["count"] == {"N": "2"}


def test_a_golden_event_without_its_request_context_is_a_clear_400(counter, counter_table):
    event = golden_proxy_events()["powertools"]
    del event["requestContext"]

    result = counter.handler(event, lambda_context())

    assert result["statusCode"] == 400
    assert "not an API Gateway proxy event" in answer(result)["error"]
    assert read_item(counter_table, event["path"]) is None


@pytest.mark.parametrize("source", ["aws-docs", "sam", "powertools"])
def test_the_counter_in_front_of_a_backend_forwards_a_golden_proxy_event(
    counter_table, monkeypatch, source
):
    """The AWS docs' event carries a header with an empty name ('' in multiValueHeaders): no
    HTTP request can carry it, so it is not forwarded; the rest of the request is, and the
    hit is counted (http.client refused the whole request with a ValueError: no answer but
    Lambda's error, a 502 from API Gateway)."""
    event = golden_proxy_events()[source]
    with backend_server() as backend:
        monkeypatch.setenv("BACKEND", backend.url + "/base")
        counter = load_module(ROOT / "handler" / "counter.py", "counter_golden_backend")

        result = counter.handler(event, lambda_context())

        (seen,) = backend.requests
    # the test backend's own answer to a path it does not serve, passed through
    assert result["statusCode"] == 404
    assert json.loads(result["body"]) == {"error": "no such route"}
    body = event["body"].encode()
    assert base64.b64decode(seen["body"]) == (
        base64.b64decode(body) if event["isBase64Encoded"] else body
    )
    assert seen["method"] == event["httpMethod"]
    assert seen["path"].startswith("/base" + event["path"] + "?")
    sent = {name for name, _ in seen["headers"]}
    assert {name for name in event["multiValueHeaders"] if name} <= sent | {"Host"}
    assert "" not in sent
    assert read_item(counter_table, event["path"])["count"] == {"N": "1"}


# --- the stats endpoint --------------------------------------------------------------------


def stats_get(event: dict, path: str) -> dict:
    """A golden GET event sent to `path` of the stats resource: path, resource and the
    context's paths changed, nothing else."""
    event = copy.deepcopy(event)
    event["path"] = event["resource"] = path
    event["requestContext"]["resourcePath"] = path
    event["requestContext"]["path"] = f"/{event['requestContext']['stage']}{path}"
    return event


def test_the_stats_endpoint_answers_golden_get_events_with_json(counter, stats):
    """Powertools' GET (its query string, parameter1 and parameter2, is none of the stats'
    parameters and changes nothing) on /_stats, /_stats/top and a page that does not exist."""
    for source in ("aws-docs", "sam", "powertools"):
        counter.handler(golden_proxy_events()[source], lambda_context())
    event = golden_proxy_events()["powertools"]

    listed = stats.handler(stats_get(event, "/_stats"), lambda_context("StatsFunction"))
    top = stats.handler(stats_get(event, "/_stats/top"), lambda_context("StatsFunction"))
    other = stats.handler(stats_get(event, "/_stats/my/path"), lambda_context("StatsFunction"))

    assert listed["statusCode"] == 200 and top["statusCode"] == 200
    routes = {r["route"]: r["count"] for r in answer(listed)["routes"]}
    assert routes == {"/hello/world": 1, "/path/to/resource": 1, "/my/path": 1}
    assert answer(top)["routes"] == []  # no aggregator ran: the series is empty
    assert other["statusCode"] == 404 and "no such stats page" in answer(other)["error"]


def test_a_golden_post_to_the_stats_endpoint_is_a_clear_4xx(stats):
    event = stats_get(golden_proxy_events()["sam"], "/_stats")  # SAM's is a POST

    result = stats.handler(event, lambda_context("StatsFunction"))

    assert 400 <= result["statusCode"] < 500
    assert answer(result)["error"]


# --- the aggregator ------------------------------------------------------------------------


def series_items(table: str) -> list[dict]:
    return boto3.client("dynamodb").scan(TableName=table)["Items"]


@pytest.mark.parametrize("source", ["sam", "powertools"])
def test_golden_stream_records_of_another_table_are_skipped_and_write_nothing(
    aggregator, stream_tables, source, capsys
):
    """Records of a table that is not ours (an Id and a Message): skipped, not retried (no
    batchItemFailures), nothing half-written, one log line saying how many."""
    event = golden_stream_events()[source]

    result = aggregator.handler(event, lambda_context("AggregatorFunction"))

    assert result == {"batchItemFailures": []}
    assert series_items(stream_tables.series) == []
    (line,) = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert line["level"] == "INFO"
    assert line["records"] == line["skipped"] == len(event["Records"])


@pytest.mark.parametrize("source", ["sam", "powertools"])
def test_golden_stream_records_with_our_items_are_counted_in_their_hour_and_day(
    aggregator, stream_tables, source
):
    """The golden records with only their NewImage's attributes replaced by a counter item's:
    the INSERT of count 1 and the MODIFY whose old image had no count (so 1 was added) are
    one hit each; the REMOVE (no new image) counts nothing."""
    event = golden_stream_events()[source]
    for record in event["Records"]:
        if "NewImage" in record["dynamodb"]:
            record["dynamodb"]["NewImage"] = route_item("/golden", 1)  # a counter item

    result = aggregator.handler(event, lambda_context("AggregatorFunction"))

    assert result == {"batchItemFailures": []}
    ddb = boto3.client("dynamodb")
    for bucket in ("h#2026-01-02T00", "d#2026-01-02"):  # its lastSeen's hour and day
        key = {"route": {"S": "/golden"}, "bucket": {"S": bucket}}
        item = ddb.get_item(TableName=stream_tables.series, Key=key)["Item"]
        # INSERT and MODIFY of the same (firstSeen, count): one hit, counted once
        assert item["hits"] == {"N": "1"}


# --- our builders against the golden events ------------------------------------------------


MAPS = ("headers", "multiValueHeaders", "queryStringParameters", "multiValueQueryStringParameters")
MAPS += ("pathParameters", "stageVariables")


def shape(value: object) -> object:
    """The keys and value types of an event, recursively (None: JSON null); of a map keyed
    by the request's own names (headers, query, ...), the types of its values."""
    if isinstance(value, dict):
        return {
            k: sorted({repr(shape(x)) for x in v.values()}) if k in MAPS and v else shape(v)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [shape(v) for v in value[:1]]
    return type(value).__name__


def same_request_as_the_aws_docs_example() -> dict:
    """Our builder's event for the request the Developer Guide's example shows:
    POST /testStage/hello/world?name=me (and multivalueName=you&multivalueName=me)."""
    return build_event(
        method="POST",
        target="/hello/world?name=me&multivalueName=you&multivalueName=me",
        headers=[
            ("Host", "gy415nuibc.execute-api.us-east-1.amazonaws.com"),
            ("Content-Type", "application/json"),
            ("headerName", "headerValue"),
        ],
        body=b'{\r\n\t"a": 1\r\n}',
        match=default_router().match("POST", "/hello/world"),
        api=ApiInfo(api_id="gy415nuibc", stage="testStage"),
        source_ip="192.168.196.186",
    )


def test_our_proxy_event_has_the_golden_top_level_fields_and_their_types():
    ours = shape(same_request_as_the_aws_docs_example())
    docs = shape(aws_docs_event())

    assert set(ours) == set(docs)
    for key in set(ours) - {"requestContext", "stageVariables"}:
        assert ours[key] == docs[key], key
    assert ours["stageVariables"] == "NoneType"  # our API has none; the example's stage has one


def test_our_request_context_has_only_fields_api_gateway_sends_with_their_types():
    """Every field of our requestContext and identity is in a golden REST event, with the
    same type where the golden one is not null; every field all the golden events share is
    in ours. (authorizer comes with an authorizer, clientCert with mutual TLS, apiKey with a
    method that requires one: none of them is in our API.)"""
    ours = shape(same_request_as_the_aws_docs_example()["requestContext"])
    golden = [shape(e["requestContext"]) for e in golden_proxy_events().values()]

    for section in (None, "identity"):
        mine = ours if section is None else ours[section]
        theirs = [g if section is None else g[section] for g in golden]
        assert set(mine) <= set().union(*theirs), set(mine) - set().union(*theirs)
        assert set.intersection(*(set(t) for t in theirs)) <= set(mine)
        for key, kind in mine.items():
            if key == "identity":
                continue
            seen = {t[key] for t in theirs if key in t and t[key] != "NoneType"}
            assert kind in seen or not seen or kind == "NoneType", (key, kind, seen)


def test_our_proxy_event_has_the_aws_docs_examples_values_for_the_same_request():
    """The values API Gateway derives from the request: path kept, the proxy parameter
    without its leading slash, the single-value query map keeping the last value."""
    ours = same_request_as_the_aws_docs_example()
    docs = aws_docs_event()

    for key in (
        "resource",
        "path",
        "httpMethod",
        "pathParameters",
        "queryStringParameters",
        "multiValueQueryStringParameters",
        "body",
        "isBase64Encoded",
    ):
        assert ours[key] == docs[key], key
    for key in ("resourcePath", "httpMethod", "stage", "apiId"):
        assert ours["requestContext"][key] == docs["requestContext"][key], key
    for name in ("Content-Type", "headerName", "Host"):
        assert ours["headers"][name] == docs["headers"][name]
        assert ours["multiValueHeaders"][name] == docs["multiValueHeaders"][name]


def test_our_stream_records_have_the_golden_records_fields_and_their_types(stream_tables):
    """Records of a real table's stream, as local/streams.py hands them to a function,
    against SAM's INSERT and MODIFY records: the same fields, the same types."""
    counter = load_module(ROOT / "handler" / "counter.py", "counter_for_golden_stream")
    event = golden_proxy_events()["powertools"]
    counter.handler(event, lambda_context())
    counter.handler(event, lambda_context())
    ours = stream_event(stream_records(stream_tables.stream_arn), stream_tables.stream_arn)
    golden = golden_stream_events()["sam"]["Records"]

    for mine, theirs in zip(ours["Records"], golden[:2], strict=True):
        assert mine["eventName"] == theirs["eventName"]
        mine, theirs = shape(mine), shape(theirs)
        for record in (mine, theirs):
            for image in ("Keys", "NewImage", "OldImage"):
                record["dynamodb"].pop(image, None)  # the items' own attributes differ
        assert mine == theirs
