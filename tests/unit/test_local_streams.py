"""local/streams.py: which mappings run locally, Lambda's partial batch response rules, and
the event of a mapping with a tumbling window."""

import calendar
import concurrent.futures
import copy
import dataclasses
import datetime
import json
import time

import boto3
import pytest

from local.router import TemplateError
from local.runtime import Function, FunctionSpec
from local.streams import StreamPoller, stream_mappings, window_of
from tests.conftest import ROOT, load_module


def with_mapping(template: dict, **properties) -> dict:
    """The template with one test mapping in place of the aggregator's."""
    template = copy.deepcopy(template)
    del template["Resources"]["AggregatorStreamMapping"]
    template["Resources"]["CounterTable"]["Properties"]["StreamSpecification"] = {
        "StreamViewType": "NEW_IMAGE"
    }
    template["Resources"]["Mapping"] = {
        "Type": "AWS::Lambda::EventSourceMapping",
        "Properties": {
            "EventSourceArn": {"Fn::GetAtt": ["CounterTable", "StreamArn"]},
            "FunctionName": {"Ref": "StatsFunction"},
            "StartingPosition": "TRIM_HORIZON",
            **properties,
        },
    }
    return template


def test_the_mapping_is_read_with_lambdas_defaults(template):
    (mapping,) = stream_mappings(with_mapping(template))

    assert (mapping.function, mapping.table) == ("StatsFunction", "CounterTable")
    assert (mapping.batch_size, mapping.window, mapping.max_retries) == (100, 0.0, -1)
    assert not (mapping.report_item_failures or mapping.bisect or mapping.on_failure)


def test_the_aggregators_mapping_runs_locally_with_the_templates_settings(template):
    (mapping,) = stream_mappings(template)

    assert (mapping.logical_id, mapping.function, mapping.table) == (
        "AggregatorStreamMapping",
        "AggregatorFunction",
        "CounterTable",
    )
    assert (mapping.starting_position, mapping.batch_size, mapping.window) == (
        "TRIM_HORIZON",
        10000,
        30,
    )
    assert (mapping.report_item_failures, mapping.bisect, mapping.max_retries) == (True, True, 50)
    assert mapping.on_failure == "AggregatorFailureQueue"
    assert mapping.tumbling_window == 900


def test_a_setting_may_be_a_parameter_of_the_template(template):
    template = with_mapping(template, BatchSize={"Ref": "Size"})
    template["Parameters"]["Size"] = {"Type": "Number", "Default": 100}

    (mapping,) = stream_mappings(template, {"Size": "7"})

    assert mapping.batch_size == 7


def test_a_disabled_mapping_does_not_run(template):
    assert stream_mappings(with_mapping(template, Enabled=False)) == []


@pytest.mark.parametrize("unemulated", ["FilterCriteria"])
def test_a_mapping_that_would_run_differently_is_refused_by_name(template, unemulated):
    with pytest.raises(TemplateError, match=unemulated):
        stream_mappings(with_mapping(template, **{unemulated: {}}))


def test_a_mapping_from_another_source_is_named_as_not_run(template):
    source = {"EventSourceArn": "arn:aws:sqs:us-east-1:123456789012:queue"}
    warnings = []

    assert stream_mappings(with_mapping(template, **source), {}, warnings.append) == []
    assert warnings == ["Mapping: does not run locally: only mappings from a table's stream do"]


BATCH = [{"dynamodb": {"SequenceNumber": n}} for n in ("11", "12", "13")]


@pytest.mark.parametrize(
    ("answer", "first"),
    [
        (None, None),
        ({}, None),
        ({"batchItemFailures": []}, None),
        ({"batchItemFailures": None}, None),
        ({"batchItemFailures": [{"itemIdentifier": "13"}, {"itemIdentifier": "12"}]}, 1),
        ({"batchItemFailures": [{"itemIdentifier": ""}]}, 0),
        ({"batchItemFailures": [{"itemIdentifier": None}]}, 0),
        ({"batchItemFailures": [{"ItemIdentifier": "12"}]}, 0),
        ({"batchItemFailures": [{"itemIdentifier": "99"}]}, 0),
        ("not a response", 0),
    ],
)
def test_a_partial_batch_response_retries_from_the_lowest_failed_record(answer, first):
    assert StreamPoller._first_failed(BATCH, answer) == first


# A function that keeps every event it gets; its first answer has no `state` (Lambda: a
# failed invocation, retried), the next ones count the invocations in their state.
RECORDING_CODE = """
import json

def handler(event, context):
    with open(PATH, "a") as log:
        log.write(json.dumps(event) + "\\n")
    with open(PATH) as log:
        calls = sum(1 for _ in log)
    if calls == 1:
        return {"batchItemFailures": []}
    return {"state": {"calls": calls}, "batchItemFailures": []}
"""


def test_a_tumbling_window_names_the_shard_and_the_window_and_carries_the_state_back(
    template, stream_tables, tmp_path, monkeypatch
):
    # The emulator stamps the three records inside one 900 s window (04:00 to 04:15): on
    # its real clock they could straddle a quarter hour, and the first batch hold one.
    stamped = datetime.datetime(2026, 12, 1, 4, 7, 30)  # naive UTC, as moto's utcnow()
    monkeypatch.setattr("moto.dynamodb.models.table.utcnow", lambda: stamped)
    counter = load_module(ROOT / "handler" / "counter.py", "counter_for_windows")
    for route in ("/a", "/b", "/c"):
        counter.count_hit(route, time.time(), time.monotonic() + 4)
    (mapping,) = stream_mappings(template)
    mapping = dataclasses.replace(mapping, batch_size=2, window=0, bisect=False)
    log = tmp_path / "events.jsonl"
    spec = FunctionSpec("Recorder", f"PATH = {str(log)!r}\n" + RECORDING_CODE, timeout=5)
    streams = boto3.client("dynamodbstreams")
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        function = Function(spec, tmp_path / "code", pool)
        poller = StreamPoller(mapping, function, stream_tables.stream_arn, streams, None, print)
        poller.start()
        deadline = time.monotonic() + 20
        while (
            time.monotonic() < deadline
            and len(log.read_text().splitlines() if log.exists() else []) < 3
        ):
            time.sleep(0.05)
        poller.stop()

    events = [json.loads(line) for line in log.read_text().splitlines()]
    (shard,) = streams.describe_stream(StreamArn=stream_tables.stream_arn)["StreamDescription"][
        "Shards"
    ]
    first, retried, second = events[:3]
    assert [r["eventID"] for r in retried["Records"]] == [r["eventID"] for r in first["Records"]]
    assert len(first["Records"]) == 2 and len(second["Records"]) == 1
    for event in events[:3]:
        assert event["shardId"] == shard["ShardId"]
        assert event["eventSourceARN"] == stream_tables.stream_arn
        assert event["isFinalInvokeForWindow"] is False
        assert event["isWindowTerminatedEarly"] is False
        assert window_of(event["Records"][0], 900) == calendar.timegm((2026, 12, 1, 4, 0, 0))
        assert event["window"] == {"start": "2026-12-01T04:00:00Z", "end": "2026-12-01T04:15:00Z"}
    assert first["state"] == retried["state"] == {}  # a window starts with none
    assert second["state"] == {"calls": 2}  # the state the last answer gave, same window


def test_a_batch_holds_the_records_of_one_tumbling_window(template):
    (mapping,) = stream_mappings(template)
    poller = StreamPoller.__new__(StreamPoller)
    poller.mapping = mapping
    at = 1_796_097_590  # 2026-12-01T03:59:50Z: a 900 s window ends at 04:00:00
    records = [{"dynamodb": {"ApproximateCreationDateTime": at + s}} for s in (0, 9, 10, 11)]

    assert poller._one_window(records) == records[:2]
    assert [window_of(r, 900) for r in records] == [at - 890] * 2 + [at + 10] * 2


def test_a_windows_final_invocation_comes_with_its_state_before_the_next_windows_records(
    template, stream_tables, tmp_path
):
    counter = load_module(ROOT / "handler" / "counter.py", "counter_for_final")
    counter.count_hit("/a", time.time(), time.monotonic() + 4)
    second = int(time.time())
    while int(time.time()) == second:  # the next record in the next 1 s window
        time.sleep(0.01)
    counter.count_hit("/b", time.time(), time.monotonic() + 4)
    (mapping,) = stream_mappings(template)
    mapping = dataclasses.replace(mapping, batch_size=10, window=0, tumbling_window=1)
    log = tmp_path / "events.jsonl"
    code = RECORDING_CODE.replace("if calls == 1:", "if calls == 0:")  # every answer: state
    spec = FunctionSpec("Recorder", f"PATH = {str(log)!r}\n" + code, timeout=5)
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        poller = StreamPoller(
            mapping,
            Function(spec, tmp_path / "code", pool),
            stream_tables.stream_arn,
            boto3.client("dynamodbstreams"),
            None,
            print,
        )
        poller.start()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and (
            len(log.read_text().splitlines()) < 3 if log.exists() else True
        ):
            time.sleep(0.05)
        poller.stop()

    first, final, after = [json.loads(line) for line in log.read_text().splitlines()[:3]]
    assert [r["dynamodb"]["NewImage"]["route"]["S"] for r in first["Records"]] == ["/a"]
    assert final["Records"] == [] and final["isFinalInvokeForWindow"] is True
    assert final["window"] == first["window"] and final["state"] == {"calls": 1}
    assert [r["dynamodb"]["NewImage"]["route"]["S"] for r in after["Records"]] == ["/b"]
    assert after["window"] != first["window"] and after["state"] == {}
    assert after["isFinalInvokeForWindow"] is False
