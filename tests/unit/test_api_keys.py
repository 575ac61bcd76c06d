"""API keys (docs/clients.md): ./deploy.sh keys against in-process moto (deployer/keys.py), and
the local API's emulation of API Gateway's key checks, quotas and throttles (local/api_keys.py)."""

import json

import boto3
import pytest
from moto import mock_aws

from deployer import keys
from local import moto_fidelity
from local.api_keys import Refused, UsagePlans, period_start
from local.router import Router

PLAN_STACK = {
    "Parameters": {"Quota": {"Type": "String", "Default": "2"}},
    "Resources": {
        "Api": {"Type": "AWS::ApiGateway::RestApi", "Properties": {"Name": "keys"}},
        "UsagePlan": {
            "Type": "AWS::ApiGateway::UsagePlan",
            "Properties": {
                "UsagePlanName": "route-counter",
                "ApiStages": [{"ApiId": {"Ref": "Api"}, "Stage": "prod"}],
                "Quota": {"Limit": {"Ref": "Quota"}, "Period": "MONTH"},
            },
        },
    },
}


@pytest.fixture
def aws():
    moto_fidelity.apply()
    with mock_aws():
        cfn, apigw = boto3.client("cloudformation"), boto3.client("apigateway")
        cfn.create_stack(StackName="route-counter", TemplateBody=json.dumps(PLAN_STACK))
        yield apigw, cfn


def deploy_sh_keys(aws, capsys, *argv: str) -> tuple[int, str, str]:
    code = keys.main(list(argv), lambda _: aws, local=False)
    out, err = capsys.readouterr()
    return code, out, err


def plan_id(apigw) -> str:
    (plan,) = apigw.get_usage_plans()["items"]
    return plan["id"]


def test_create_shows_the_value_once_and_the_key_works_in_the_plan(aws, capsys):
    apigw, _ = aws
    code, out, _ = deploy_sh_keys(aws, capsys, "create", "acme")
    assert code == 0
    (key,) = apigw.get_api_keys(includeValues=True)["items"]
    assert key["name"] == "acme" and key["enabled"] is True
    assert f"value: {key['value']}" in out and key["id"] in out
    in_plan = apigw.get_usage_plan_keys(usagePlanId=plan_id(apigw))["items"]
    assert [k["id"] for k in in_plan] == [key["id"]]

    code, listed, _ = deploy_sh_keys(aws, capsys, "list")
    assert code == 0 and key["value"] not in listed
    assert listed.splitlines()[0].split() == ["ID", "NAME", "STATE", "CREATED"]
    assert listed.splitlines()[1].split()[:3] == [key["id"], "acme", "enabled"]


def test_revoke_disables_the_key_and_keeps_its_name(aws, capsys):
    apigw, _ = aws
    deploy_sh_keys(aws, capsys, "create", "acme")
    (key,) = apigw.get_api_keys()["items"]
    code, out, _ = deploy_sh_keys(aws, capsys, "revoke", key["id"])
    assert code == 0 and f"Revoked API key acme (id {key['id']})" in out
    assert apigw.get_api_key(apiKey=key["id"])["enabled"] is False
    assert deploy_sh_keys(aws, capsys, "list")[1].splitlines()[1].split()[:3] == [
        key["id"],
        "acme",
        "revoked",
    ]


def test_a_key_of_another_plan_is_not_revoked(aws, capsys):
    apigw, _ = aws
    other = apigw.create_api_key(name="other", enabled=True)
    code, _, err = deploy_sh_keys(aws, capsys, "revoke", other["id"])
    assert code == 1 and f"no API key {other['id']} in this stack's usage plan" in err
    assert apigw.get_api_key(apiKey=other["id"])["enabled"] is True


def test_a_stack_without_apikey_identity_or_none_at_all_is_named(aws, capsys):
    code, _, err = deploy_sh_keys(aws, capsys, "--stack-name", "absent", "list")
    assert code == 1 and "stack absent does not exist" in err
    _, cfn = aws
    cfn.create_stack(
        StackName="plain",
        TemplateBody=json.dumps({"Resources": {"Api": PLAN_STACK["Resources"]["Api"]}}),
    )
    code, _, err = deploy_sh_keys(aws, capsys, "--stack-name", "plain", "create", "acme")
    assert code == 1 and "--param ClientIdentity=apikey" in err


def test_a_bad_key_name_is_bad_usage_and_makes_no_key(aws, capsys):
    apigw, _ = aws
    code, _, err = deploy_sh_keys(aws, capsys, "create", "a b")
    assert code == 2 and "invalid key name 'a b'" in err
    assert apigw.get_api_keys()["items"] == []


# --- the local API's usage plans -------------------------------------------------------------

DECEMBER = 1796601600.0  # 2026-12-07T00:00:00Z


@pytest.fixture
def plans(aws):
    apigw, _ = aws
    now = {"wall": DECEMBER, "mono": 100.0}
    gate = UsagePlans(
        apigw, [plan_id(apigw)], clock=lambda: now["wall"], monotonic=lambda: now["mono"]
    )
    return apigw, gate, now


def new_key(apigw, name: str) -> dict:
    key = keys.create_key(apigw, plan_id(apigw), name, "route-counter")
    return key


def refusal(gate: UsagePlans, headers: list[tuple[str, str]]) -> tuple[int, dict, str]:
    with pytest.raises(Refused) as refused:
        gate.admit(headers)
    response = refused.value.response
    error_type = dict(response.headers)["x-amzn-ErrorType"]
    return response.status, json.loads(response.body), error_type


def test_a_request_without_a_working_key_is_forbidden_as_api_gateway_answers(plans):
    apigw, gate, _ = plans
    key = new_key(apigw, "acme")
    stray = apigw.create_api_key(name="stray", enabled=True)  # in no plan of the stack
    disabled = new_key(apigw, "gone")
    keys.revoke_key(apigw, plan_id(apigw), disabled["id"])
    forbidden = (403, {"message": "Forbidden"}, "ForbiddenException")
    assert refusal(gate, []) == forbidden
    assert refusal(gate, [("x-api-key", "")]) == forbidden
    assert refusal(gate, [("x-api-key", "not-a-key-of-anyone-at-all")]) == forbidden
    assert refusal(gate, [("x-api-key", stray["value"])]) == forbidden
    assert refusal(gate, [("X-API-Key", disabled["value"])]) == forbidden
    used = gate.admit([("X-Api-Key", key["value"])])
    assert (used.id, used.value) == (key["id"], key["value"])


def test_the_monthly_quota_is_per_key_and_per_calendar_month(plans):
    apigw, gate, now = plans
    acme, globex = new_key(apigw, "acme"), new_key(apigw, "globex")
    for _ in range(2):
        gate.admit([("x-api-key", acme["value"])])
    limit = (429, {"message": "Limit Exceeded"}, "LimitExceededException")
    assert refusal(gate, [("x-api-key", acme["value"])]) == limit
    assert gate.admit([("x-api-key", globex["value"])]).id == globex["id"]  # its own quota
    now["wall"] = DECEMBER + 25 * 86400  # 2027-01-01
    assert gate.admit([("x-api-key", acme["value"])]).id == acme["id"]


def test_the_throttle_is_a_token_bucket_per_key(plans):
    apigw, gate, now = plans
    plan = plan_id(apigw)
    apigw.update_usage_plan(
        usagePlanId=plan,
        patchOperations=[
            {"op": "replace", "path": "/throttle/rateLimit", "value": "1"},
            {"op": "replace", "path": "/throttle/burstLimit", "value": "2"},
            {"op": "remove", "path": "/quota"},
        ],
    )
    acme = [("x-api-key", new_key(apigw, "acme")["value"])]
    gate.admit(acme)
    gate.admit(acme)  # the burst
    too_many = (429, {"message": "Too Many Requests"}, "TooManyRequestsException")
    assert refusal(gate, acme) == too_many
    now["mono"] += 1.0  # one token back a second
    gate.admit(acme)
    assert refusal(gate, acme) == too_many


def test_quota_periods_are_utc_calendar_ones():
    assert period_start("MONTH", DECEMBER) == "2026-12"
    assert period_start("DAY", DECEMBER - 1) == "2026-12-06"
    assert period_start("WEEK", DECEMBER) == "2026-W50"


def test_the_router_reads_api_key_required_as_deployed(template):
    methods = {m.logical_id: m for m in Router(template).methods}
    assert not any(m.api_key_required for m in methods.values())
    keyed = Router(template, parameters={"ClientIdentity": "apikey"}).methods
    assert {m.logical_id for m in keyed if m.api_key_required} == {"RootMethod", "ProxyMethod"}


def test_the_local_api_checks_the_key_before_the_integration_and_survives_a_dead_emulator(
    template, capsys
):
    from local.emulator import client, free_port
    from local.events import ApiInfo
    from local.gateway import Gateway

    router = Router(template, parameters={"ClientIdentity": "apikey"})
    gone = client("apigateway", f"http://127.0.0.1:{free_port()}")  # nothing listens there
    for usage_plans, status in ((None, 403), (UsagePlans(gone, ["plan"]), 502)):
        gateway = Gateway(router, {}, ApiInfo(), usage_plans=usage_plans)
        answer = gateway.handle("GET", "/hello", [("x-api-key", "k" * 40)], b"", "127.0.0.1")
        assert answer.status == status
    assert json.loads(answer.body) == {"message": "Internal server error"}
    assert "API key check failed: EndpointConnectionError" in capsys.readouterr().err
    # The stats route needs no key: its missing function is the answer
    gateway = Gateway(router, {}, ApiInfo())
    assert gateway.handle("GET", "/_stats", [], b"", "127.0.0.1").status == 502


def test_the_options_are_taken_before_the_command_and_after_it():
    """`./deploy.sh keys create acme --stack-name s`, as the usage line writes it, and
    `./deploy.sh keys --stack-name s list` both name stack s; none given: the default."""
    after = keys.parse(["create", "acme", "--stack-name", "s", "--region", "eu-west-1"], False)
    before = keys.parse(["--stack-name", "s", "list"], False)
    neither = keys.parse(["list"], False)
    assert (after.stack_name, after.region, after.name) == ("s", "eu-west-1", "acme")
    assert (before.stack_name, before.command) == ("s", "list")
    assert (neither.stack_name, neither.region, neither.profile) == ("route-counter", "", "")
