"""local/streams.py: which mappings run locally, and Lambda's partial batch response rules."""

import copy

import pytest

from local.router import TemplateError
from local.streams import StreamPoller, stream_mappings


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


def test_a_setting_may_be_a_parameter_of_the_template(template):
    template = with_mapping(template, BatchSize={"Ref": "Size"})
    template["Parameters"]["Size"] = {"Type": "Number", "Default": 100}

    (mapping,) = stream_mappings(template, {"Size": "7"})

    assert mapping.batch_size == 7


def test_a_disabled_mapping_does_not_run(template):
    assert stream_mappings(with_mapping(template, Enabled=False)) == []


@pytest.mark.parametrize("unemulated", ["FilterCriteria", "TumblingWindowInSeconds"])
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
