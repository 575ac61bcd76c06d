"""`python -m local` runs event source mappings from the counter table's stream as Lambda does:
the functions get the hits' stream records, in Lambda's event shape, retried and reported."""

import copy
import json
import signal
import time
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from aws_lambda_powertools.utilities.parser.models import (
    DynamoDBStreamLambdaOnFailureDestinationModel,
    DynamoDBStreamModel,
)

from tests.conftest import emulator_client, local_stack

RECORDER = """
import json, os

EVENTS = EVENTS_PATH  # not an environment variable: the functions share one process

def handler(event, context):
    with open(EVENTS, "a") as log:
        log.write(json.dumps(event) + "\\n")
"""

# Reports the middle record of its first batch as failed, once.
FAILS_ONCE = """
import json, os

EVENTS = EVENTS_PATH  # not an environment variable: the functions share one process

def handler(event, context):
    first = not os.path.exists(EVENTS)
    with open(EVENTS, "a") as log:
        log.write(json.dumps(event) + "\\n")
    if first:
        middle = event["Records"][len(event["Records"]) // 2]
        return {"batchItemFailures": [{"itemIdentifier": middle["dynamodb"]["SequenceNumber"]}]}
    return {"batchItemFailures": []}
"""

# Fails every batch that holds a hit on a route whose name says poison.
POISONED = """
import json, os

EVENTS = EVENTS_PATH  # not an environment variable: the functions share one process

def handler(event, context):
    if any("poison" in r["dynamodb"]["Keys"]["route"]["S"] for r in event["Records"]):
        raise ValueError("poisoned batch")
    with open(EVENTS, "a") as log:
        log.write(json.dumps(event) + "\\n")
"""


def add_consumer(resources: dict, name: str, code: str, events: Path, **mapping) -> None:
    """A function that reads the counter table's stream through an event source mapping."""
    function = copy.deepcopy(resources["CounterFunction"])
    function["Properties"]["Code"] = {"ZipFile": code.replace("EVENTS_PATH", repr(str(events)))}
    function["Properties"]["Timeout"] = 5
    resources[f"{name}Function"] = function
    resources[f"{name}Mapping"] = {
        "Type": "AWS::Lambda::EventSourceMapping",
        "Properties": {
            "EventSourceArn": {"Fn::GetAtt": ["CounterTable", "StreamArn"]},
            "FunctionName": {"Ref": f"{name}Function"},
            **mapping,
        },
    }


def streamed(template: dict) -> dict:
    """The template with the counter table's stream on."""
    test_template = copy.deepcopy(template)
    test_template["Resources"]["CounterTable"]["Properties"]["StreamSpecification"] = {
        "StreamViewType": "NEW_AND_OLD_IMAGES"
    }
    return test_template


@pytest.fixture(scope="module")
def stack(template, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("local-streams")
    test_template = streamed(template)
    resources = test_template["Resources"]
    resources["FailuresQueue"] = {"Type": "AWS::SQS::Queue"}
    add_consumer(
        resources,
        "Recorder",
        RECORDER,
        tmp / "recorder.jsonl",
        StartingPosition="TRIM_HORIZON",
        BatchSize=10,
        MaximumBatchingWindowInSeconds=1,
    )
    add_consumer(
        resources,
        "FailsOnce",
        FAILS_ONCE,
        tmp / "fails-once.jsonl",
        StartingPosition="LATEST",
        BatchSize=5,
        MaximumBatchingWindowInSeconds=1,
        FunctionResponseTypes=["ReportBatchItemFailures"],
    )
    add_consumer(
        resources,
        "Poisoned",
        POISONED,
        tmp / "poisoned.jsonl",
        StartingPosition="TRIM_HORIZON",
        BatchSize=8,
        MaximumBatchingWindowInSeconds=1,
        BisectBatchOnFunctionError=True,
        MaximumRetryAttempts=1,
        DestinationConfig={"OnFailure": {"Destination": {"Fn::GetAtt": ["FailuresQueue", "Arn"]}}},
    )
    path = tmp / "template.json"
    path.write_text(json.dumps(test_template))
    with local_stack(tmp, "--template", str(path)) as running:
        running.tmp = tmp
        yield running


def hit(stack, route: str, times: int) -> None:
    for _ in range(times):
        with urllib.request.urlopen(stack.url + route, timeout=20) as response:
            assert response.status == 200


def events(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def records(path: Path) -> list[dict]:
    return [record for event in events(path) for record in event["Records"]]


def route_of(record: dict) -> str:
    return record["dynamodb"]["Keys"]["route"]["S"]


def wait_for(condition, what: str, timeout: float = 60.0):
    """Poll a condition (bounded); its value once true."""
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        assert time.monotonic() < deadline, f"no {what} within {timeout:.0f} s"
        time.sleep(0.1)
    return value


def fenced(stack, path: Path) -> list[dict]:
    """The records a consumer got up to a hit made now: the stream's one shard is in order,
    so all that came before the fence has been delivered once the fence has."""
    fence = f"/fence/{uuid.uuid4().hex}"
    hit(stack, fence, 1)
    wait_for(lambda: any(route_of(r) == fence for r in records(path)), f"{fence} in {path.name}")
    return records(path)


def test_each_hit_reaches_the_mapped_function_once_as_a_stream_record(stack):
    route = f"/streamed/{uuid.uuid4().hex}"
    hit(stack, route, 12)

    delivered = fenced(stack, stack.tmp / "recorder.jsonl")

    mine = [r for r in delivered if route_of(r) == route]
    assert [r["dynamodb"]["NewImage"]["count"]["N"] for r in mine] == [str(n) for n in range(1, 13)]
    assert [r["eventName"] for r in mine] == ["INSERT"] + ["MODIFY"] * 11
    numbers = [int(r["dynamodb"]["SequenceNumber"]) for r in delivered]
    assert numbers == sorted(set(numbers))  # each record once, in order
    banner = stack.output.read_text()
    assert "stream:    CounterTable -> RecorderFunction (RecorderMapping, BatchSize 10)" in banner
    for event in events(stack.tmp / "recorder.jsonl"):
        DynamoDBStreamModel.model_validate(event)  # the shape Lambda delivers
        assert 1 <= len(event["Records"]) <= 10  # BatchSize
    table = emulator_client(stack, "dynamodb").describe_table(
        TableName=mine[0]["eventSourceARN"].split("/")[1]
    )
    assert {r["eventSourceARN"] for r in delivered} == {table["Table"]["LatestStreamArn"]}


def test_concurrent_hits_on_many_routes_make_one_record_each_under_its_own_number(stack):
    routes = [f"/busy/{n}/{uuid.uuid4().hex}" for n in range(8)]
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda route: hit(stack, route, 10), routes))

    delivered = fenced(stack, stack.tmp / "recorder.jsonl")

    for route in routes:
        mine = [r for r in delivered if route_of(r) == route]
        assert [int(r["dynamodb"]["NewImage"]["count"]["N"]) for r in mine] == list(range(1, 11))
    numbers = [int(r["dynamodb"]["SequenceNumber"]) for r in delivered]
    assert numbers == sorted(set(numbers))


def test_a_reported_item_failure_is_delivered_again_from_that_record(stack):
    hit(stack, f"/partial/{uuid.uuid4().hex}", 6)

    path = stack.tmp / "fails-once.jsonl"
    delivered = fenced(stack, path)

    first, retry, *_ = events(path)
    numbers = [r["dynamodb"]["SequenceNumber"] for r in first["Records"]]
    failed = len(numbers) // 2
    retried = [r["dynamodb"]["SequenceNumber"] for r in retry["Records"]]
    assert retried[0] == numbers[failed]
    seen = [r["dynamodb"]["SequenceNumber"] for r in delivered]
    assert all(seen.count(n) == 1 for n in numbers[:failed])  # checkpointed before it
    assert seen.count(numbers[failed]) == 2
    every = sorted({int(n) for n in seen})
    assert every == list(range(every[0], every[-1] + 1))  # no record skipped


def test_a_poisoned_record_is_isolated_retried_and_sent_to_the_failure_queue(stack):
    route = f"/poison/{uuid.uuid4().hex}"
    neighbours = [f"/healthy/{uuid.uuid4().hex}" for _ in range(3)]
    for name in (neighbours[0], route, *neighbours[1:]):
        hit(stack, name, 1)

    delivered = fenced(stack, stack.tmp / "poisoned.jsonl")

    assert {route_of(r) for r in delivered} >= set(neighbours)  # bisected around it
    assert route not in {route_of(r) for r in delivered}
    (poison,) = wait_for(
        lambda: [r for r in records(stack.tmp / "recorder.jsonl") if route_of(r) == route],
        f"{route} in recorder.jsonl",
    )
    sqs = emulator_client(stack, "sqs")
    queue = sqs.get_queue_url(QueueName=_queue_name(stack))["QueueUrl"]
    messages = wait_for(
        lambda: sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10).get("Messages"),
        "failure record",
    )
    (failure,) = [json.loads(m["Body"]) for m in messages]
    parsed = DynamoDBStreamLambdaOnFailureDestinationModel.model_validate(failure)
    batch = parsed.ddb_stream_batch_info
    assert batch.start_sequence_number == batch.end_sequence_number
    assert batch.start_sequence_number == poison["dynamodb"]["SequenceNumber"]
    assert batch.batch_size == 1
    assert batch.stream_arn == poison["eventSourceARN"]
    assert parsed.request_context.condition == "RetryAttemptsExhausted"
    # Alone, it was invoked 1 + MaximumRetryAttempts times, after the bisected batches.
    assert parsed.request_context.approximate_invoke_count >= 2
    assert parsed.response_context.function_error == "Unhandled"
    assert parsed.request_context.function_arn.endswith(":function:" + _function_name(stack))


def _physical(stack, logical_id: str) -> str:
    found = emulator_client(stack, "cloudformation").describe_stack_resources(
        StackName="route-counter"
    )["StackResources"]
    return next(r["PhysicalResourceId"] for r in found if r.get("LogicalResourceId") == logical_id)


def _queue_name(stack) -> str:
    return _physical(stack, "FailuresQueue").rsplit("/", 1)[-1]


def _function_name(stack) -> str:
    return _physical(stack, "PoisonedFunction")


def test_the_last_hits_before_ctrl_c_are_delivered_and_not_again_after_a_restart(
    template, tmp_path
):
    test_template = streamed(template)
    recorded = tmp_path / "recorder.jsonl"
    add_consumer(
        test_template["Resources"],
        "Recorder",
        RECORDER,
        recorded,
        StartingPosition="TRIM_HORIZON",
        BatchSize=100,
        MaximumBatchingWindowInSeconds=30,  # only the drain on stop delivers them
    )
    path = tmp_path / "template.json"
    path.write_text(json.dumps(test_template))
    route = f"/last/{uuid.uuid4().hex}"
    with local_stack(tmp_path, "--template", str(path)) as running:
        hit(running, route, 5)
        running.process.send_signal(signal.SIGINT)
        assert running.process.wait(timeout=30) == 0, running.output.read_text()

    assert [route_of(r) for r in records(recorded)] == [route] * 5

    # The restart writes the saved counts back: no new hits, so no records (TRIM_HORIZON).
    with local_stack(tmp_path, "--template", str(path)) as running:
        assert "(1 route restored;" in running.output.read_text(), running.output.read_text()
        fence = f"/fence/{uuid.uuid4().hex}"
        hit(running, fence, 1)
        running.process.send_signal(signal.SIGINT)
        assert running.process.wait(timeout=30) == 0, running.output.read_text()

    assert [route_of(r) for r in records(recorded)] == [route] * 5 + [fence]
