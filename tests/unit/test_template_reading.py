"""deployer/template_reading.py: the one reader of parameter values, Refs, conditions and
Fn::If that the deployer and the local stack share, with one rule for a missing Default."""

import copy
import socket
import threading

import pytest

from deployer.concurrency import wanted_reservation
from deployer.errors import DeployError
from deployer.parameters import protection_on_create, protection_value, with_defaults
from deployer.template_reading import (
    TemplateError,
    as_deployed,
    condition_holds,
    default_value,
    if_condition,
    names_used,
    parameter_values,
    ref_name,
    resolve_ref,
)
from local import emulator
from local.router import Router
from local.streams import stream_mappings


def with_required_parameter(template: dict) -> dict:
    """Our template plus a parameter without a Default and a condition that reads it."""
    changed = copy.deepcopy(template)
    changed["Parameters"]["Owner"] = {"Type": "String"}
    changed["Conditions"]["HasNoOwner"] = {"Fn::Equals": [{"Ref": "Owner"}, ""]}
    return changed


def test_every_parameter_of_our_template_has_a_default(template):
    """So the missing-Default rule never decides anything for our own stack."""
    assert all("Default" in rule for rule in template["Parameters"].values())


def test_a_parameter_without_default_reads_as_empty_on_both_paths(template):
    """One rule: the local router, the deployer and conditions all read "" (the router used
    to leave such a parameter out, so a condition compared the parameter's own name)."""
    changed = with_required_parameter(template)

    assert default_value(changed["Parameters"]["Owner"]) == ""
    assert parameter_values(changed, {})["Owner"] == ""
    assert Router(changed).parameters == with_defaults(changed, {})
    assert condition_holds(changed, "HasNoOwner", {})
    assert not condition_holds(changed, "HasNoOwner", {"Owner": "ops"})


def test_decisions_on_a_parameter_without_default_are_off(template):
    """Deletion protection and a concurrency reservation with no Default and no value: off."""
    changed = copy.deepcopy(template)
    del changed["Parameters"]["TableDeletionProtection"]["Default"]
    del changed["Parameters"]["ReservedConcurrency"]["Default"]

    assert protection_on_create(changed, {}, keep_previous=False)[1] is False
    assert protection_value(changed, {}, {}, keep_previous=False) == ""
    assert wanted_reservation(changed, {}, None) == 0


def test_given_values_win_over_defaults_and_defaults_are_text(template):
    values = parameter_values(template, {"RateLimit": "5"})

    assert values["RateLimit"] == "5"
    assert values["Analytics"] == "on"
    assert all(isinstance(v, str) for v in values.values())


def test_conditions_evaluate_every_function_cloudformation_allows_in_them():
    template = {
        "Parameters": {"A": {"Type": "String", "Default": "x:y"}, "B": {"Type": "String"}},
        "Conditions": {
            "First": {"Fn::Equals": [{"Fn::Select": [0, {"Fn::Split": [":", {"Ref": "A"}]}]}, "x"]},
            "Both": {
                "Fn::And": [
                    {"Condition": "First"},
                    {"Fn::Not": [{"Fn::Equals": [{"Ref": "B"}, "z"]}]},
                ]
            },
            "Either": {"Fn::Or": [{"Fn::Equals": [{"Ref": "B"}, "z"]}, {"Condition": "First"}]},
            "Region": {"Fn::Equals": [{"Ref": "AWS::Region"}, "AWS::Region"]},
            "Odd": {"Fn::Contains": [["a"], "a"]},
        },
    }

    assert condition_holds(template, "Both", {})
    assert not condition_holds(template, "Both", {"B": "z"})
    assert condition_holds(template, "Either", {"A": "q:x", "B": "z"})
    assert not condition_holds(template, "Either", {"A": "q:x"})
    assert condition_holds(template, "Region", {})  # a pseudo parameter reads as its name
    with pytest.raises(TemplateError, match="Odd: Fn::Contains is not evaluated locally"):
        condition_holds(template, "Odd", {})
    with pytest.raises(TemplateError, match="condition Missing is not declared"):
        condition_holds(template, "Missing", {})


def test_refs_resolve_against_what_is_known_and_nothing_else():
    assert ref_name({"Ref": "Table"}) == "Table"
    assert ref_name({"Ref": "Table", "Other": 1}) is None
    assert ref_name({"Fn::GetAtt": ["Table", "Arn"]}) is None
    assert resolve_ref({"Ref": "Stage"}, {"Stage": "v1"}) == "v1"
    assert resolve_ref({"Ref": "Unknown"}, {"Stage": "v1"}) == {"Ref": "Unknown"}
    assert resolve_ref("literal", {"literal": "no"}) == "literal"
    assert if_condition({"Fn::If": ["HasKmsKey", "a", "b"]}) == "HasKmsKey"
    assert if_condition({"Ref": "HasKmsKey"}) is None


def test_the_deployed_template_drops_false_conditions_and_resolves_fn_if(template):
    off = as_deployed(template, {"Analytics": "off", "MaxRoutes": "0"})
    on = as_deployed(template, {})

    assert "AggregatorFunction" in on["Resources"]
    assert "AggregatorFunction" not in off["Resources"]
    assert "SeriesTable" not in off["Resources"]
    stream = {"StreamViewType": "NEW_AND_OLD_IMAGES"}
    assert on["Resources"]["CounterTable"]["Properties"]["StreamSpecification"] == stream
    assert "StreamSpecification" not in off["Resources"]["CounterTable"]["Properties"]


def test_names_used_follow_sub_getatt_and_conditions():
    conditions = {"HasKey": {"Fn::Not": [{"Fn::Equals": [{"Ref": "KmsKeyArn"}, ""]}]}}
    fragment = {
        "Fn::If": [
            "HasKey",
            {"Fn::Sub": ["${Table.Arn}/${Suffix}", {"Suffix": {"Ref": "Stage"}}]},
            {"Fn::GetAtt": "Queue.Arn"},
        ]
    }

    assert names_used(fragment, conditions) == {"KmsKeyArn", "Table", "Stage", "Queue"}


def test_the_local_streams_read_conditions_and_settings_through_the_same_rule(template):
    """The aggregator's mapping exists under the default values and not with Analytics off,
    and a setting that Refs a parameter takes that parameter's value."""
    (mapping,) = stream_mappings(template, {}, warn=lambda _: None)
    assert mapping.logical_id == "AggregatorStreamMapping"
    assert mapping.batch_size == int(template["Parameters"]["AggregatorBatchSize"]["Default"])
    assert stream_mappings(template, {"Analytics": "off"}, warn=lambda _: None) == []


def test_the_emulator_failing_to_start_is_the_deployers_one_error():
    """One DeployError: a moto_server that cannot bind its port exits, and the local stack
    reports it as ./deploy.sh reports any deploy failure (one line, its exit status), not as a
    second error class shown with its Python name."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        process = emulator.Emulator(port=taken.getsockname()[1])
        try:
            with pytest.raises(DeployError, match="moto_server exited with status") as failed:
                process.wait_ready(timeout=60)
        finally:
            process.stop()
    assert failed.value.code == 1


def test_an_answer_that_is_no_http_is_not_the_emulator_being_ready(tmp_path):
    """While moto starts, a connect to its port can be given that very port as its source
    and read its own request back (TCP simultaneous open). wait_ready takes no such answer
    for readiness, nor fails on it: it asks again, until the emulator answers HTTP."""
    asked = []

    def serve(listener: socket.socket) -> None:
        for reply in (None, b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"):
            connection, _ = listener.accept()
            with connection:
                request = connection.recv(65536)
                asked.append(request.split(b"\r\n", 1)[0])
                connection.sendall(reply or request)  # first: the request itself, echoed

    sleeper = tmp_path / "sleeper.py"  # stands in for moto_server; the test serves its port
    sleeper.write_text("import time\ntime.sleep(60)\n")
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        server = threading.Thread(target=serve, args=(listener,), daemon=True)
        server.start()
        process = emulator.Emulator(port=listener.getsockname()[1], server=sleeper)
        try:
            process.wait_ready(timeout=10)
        finally:
            process.stop()
        server.join(5)
    assert asked == [b"GET /moto-api/ HTTP/1.1"] * 2
