"""Counting is atomic: concurrent hits on one route never lose or repeat a count."""

import json
import threading
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


def test_scans_beside_writes_of_new_items_see_only_whole_items(counter_on_server):
    """Reads run beside writes in the emulator (as on DynamoDB): a Scan while new items
    are added neither fails nor sees an item half-updated (a count without its firstSeen)."""
    counter, client, table = counter_on_server
    client.batch_write_item(
        RequestItems={
            table: [
                {"PutRequest": {"Item": {"route": {"S": f"/seed/{i}"}, "count": {"N": "1"}}}}
                for i in range(25)
            ]
        }
    )
    done = threading.Event()
    problems: list[str] = []

    def scan() -> int:
        scans = 0
        while not done.is_set():
            try:
                pages = client.get_paginator("scan").paginate(TableName=table)
                items = [item for page in pages for item in page["Items"]]
            except Exception as error:  # a 500 from the emulator
                problems.append(repr(error))
                return scans
            problems.extend(
                str(item)
                for item in items
                if "count" in item and "firstSeen" not in item
                if not item["route"]["S"].startswith("/seed/")
            )
            scans += 1
        return scans

    def hit(i: int) -> None:
        assert counter.handler(api_event(f"/new/{i}"), lambda_context())["statusCode"] == 200

    with ThreadPoolExecutor(max_workers=8) as pool:
        scanners = [pool.submit(scan) for _ in range(4)]
        try:
            list(pool.map(hit, range(400)))
        finally:
            done.set()
        scans = sum(future.result(timeout=60) for future in scanners)

    assert problems == []
    assert scans >= 4
    assert client.scan(TableName=table, Select="COUNT")["Count"] == 425


@pytest.fixture
def series_on_server(moto_server, template, monkeypatch):
    """A table shaped as the series table, on the emulator."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_server)
    props = template["Resources"]["SeriesTable"]["Properties"]
    client = boto3.client("dynamodb")
    name = "atomicity-series"
    client.create_table(
        TableName=name,
        AttributeDefinitions=props["AttributeDefinitions"],
        KeySchema=props["KeySchema"],
        BillingMode="PAY_PER_REQUEST",
    )
    try:
        yield client, name
    finally:
        client.delete_table(TableName=name)


def test_transactions_beside_each_other_apply_whole_or_not_at_all(series_on_server):
    """The emulator runs transactions beside other writes (locking their items, as DynamoDB
    does) and undoes a cancelled one item by item: with 8 threads adding to one shared total
    and to their own items, and a third of the transactions cancelled by a condition, the
    total equals the transactions that succeeded, and no cancelled one left a trace."""
    client, table = series_on_server

    def key(route: str, bucket: str = "b") -> dict:
        return {"route": {"S": route}, "bucket": {"S": bucket}}

    def add(route: str) -> dict:
        return {
            "Update": {
                "TableName": table,
                "Key": key(route),
                "UpdateExpression": "ADD n :one",
                "ExpressionAttributeValues": {":one": {"N": "1"}},
            }
        }

    client.put_item(TableName=table, Item={**key("/blocked"), "n": {"N": "0"}})

    def transact(i: int) -> bool:
        own = add(f"/own/{i}")
        cancelled = i % 3 == 0
        check = {
            "Update": {
                "TableName": table,
                "Key": key("/blocked" if cancelled else f"/free/{i}"),
                "UpdateExpression": "SET seen = :one",
                "ConditionExpression": "attribute_not_exists(n)",
                "ExpressionAttributeValues": {":one": {"N": "1"}},
            }
        }
        try:
            client.transact_write_items(TransactItems=[own, add("#total"), check])
        except client.exceptions.TransactionCanceledException:
            return False
        return True

    with ThreadPoolExecutor(max_workers=8) as pool:
        applied = list(pool.map(transact, range(240)))

    assert applied.count(False) == 80
    total = client.get_item(TableName=table, Key=key("#total"), ConsistentRead=True)["Item"]
    assert total["n"] == {"N": str(applied.count(True))}
    items = {i["route"]["S"] for i in client.scan(TableName=table)["Items"]}
    for i, done in enumerate(applied):
        assert (f"/own/{i}" in items) is done, i
    assert "seen" not in client.get_item(TableName=table, Key=key("/blocked"))["Item"]
