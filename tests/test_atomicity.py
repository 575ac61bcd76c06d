"""Counting is atomic: concurrent hits on one route never lose or repeat a count."""

import json
from concurrent.futures import ThreadPoolExecutor

import boto3
import pytest

from tests.conftest import ROOT, api_event, lambda_context, load_module, table_definition

THREADS = 16
HITS_PER_THREAD = 25


@pytest.fixture
def counter_on_server(moto_server, template, monkeypatch):
    """The handler talking over HTTP to a real moto_server, as Lambda talks to DynamoDB."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_server)
    name = "atomicity-test"
    client = boto3.client("dynamodb")
    client.create_table(TableName=name, **table_definition(template))
    monkeypatch.setenv("TABLE_NAME", name)
    try:
        yield load_module(ROOT / "handler" / "counter.py", "counter_on_server"), client, name
    finally:
        client.delete_table(TableName=name)


def test_sixteen_threads_give_an_exact_count(counter_on_server):
    counter, client, table = counter_on_server

    def hit(_):
        result = counter.handler(api_event("/hot"), lambda_context())
        assert result["statusCode"] == 200
        return json.loads(result["body"])["count"]

    with ThreadPoolExecutor(max_workers=THREADS) as pool:
        counts = list(pool.map(hit, range(THREADS * HITS_PER_THREAD)))

    total = THREADS * HITS_PER_THREAD
    # Every hit saw a distinct count: no two requests were given the same number.
    assert sorted(counts) == list(range(1, total + 1))
    item = client.get_item(TableName=table, Key={"route": {"S": "/hot"}})["Item"]
    assert item["count"] == {"N": str(total)}
