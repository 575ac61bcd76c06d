"""The template's ClientIdentity (docs/clients.md): the parameter and its exact patterns, the
API key on the counted methods only, the usage plan on the stage, and a deployment per value."""

import re

import pytest

from deployer.template_reading import condition_holds

APIKEY = {"ClientIdentity": "apikey"}


def allowed(template: dict, name: str, value: str) -> bool:
    return re.fullmatch(template["Parameters"][name]["AllowedPattern"], value) is not None


@pytest.mark.parametrize(
    "value",
    [
        "none",
        "apikey",
        "authorizer",
        "header:X-Client-Id",
        "header:x_client.id",
        "header:A!#$%&'*+.^_`|~",
    ],
)
def test_client_identity_takes_each_documented_form(template, value):
    assert allowed(template, "ClientIdentity", value)


@pytest.mark.parametrize(
    "value",
    [
        "",
        "None",
        "api-key",
        "header:",
        "header:X Client",
        "header:X:Y",
        "header:é",
        "Header:X",
        "header:X(1)",
    ],
)
def test_client_identity_refuses_anything_else(template, value):
    assert not allowed(template, "ClientIdentity", value)


@pytest.mark.parametrize("name", ["UsageQuotaPerMonth", "UsageRateLimit", "UsageBurstLimit"])
def test_usage_limits_are_whole_numbers_zero_for_none(template, name):
    assert template["Parameters"][name]["Default"] == "0"
    for value in ("0", "1", "250", "999999999"):
        assert allowed(template, name, value), value
    for value in ("01", "-1", "1.5", "1e3", "", "1000000000"):
        assert not allowed(template, name, value), value


def key_required(template: dict, method: str, values: dict) -> bool:
    """The method's ApiKeyRequired as deployed with these parameter values."""
    required = template["Resources"][method]["Properties"].get("ApiKeyRequired", False)
    if isinstance(required, dict):
        condition, yes, no = required["Fn::If"]
        return yes if condition_holds(template, condition, values) else no
    return required


def test_only_the_counted_methods_need_a_key_and_only_with_apikey(template):
    for values in ({}, {"ClientIdentity": "header:X-Client"}, {"ClientIdentity": "authorizer"}):
        assert not any(
            key_required(template, m, values)
            for m in ("RootMethod", "ProxyMethod", "StatsMethod", "StatsProxyMethod")
        )
    assert key_required(template, "RootMethod", APIKEY)
    assert key_required(template, "ProxyMethod", APIKEY)
    # The stats are never counted and follow PrivateStats: a browser sends no x-api-key
    assert not key_required(template, "StatsMethod", APIKEY)
    assert not key_required(template, "StatsProxyMethod", APIKEY)


def test_the_usage_plan_exists_with_apikey_on_the_stage(template, resources):
    plan = resources["UsagePlan"]
    assert plan["Type"] == "AWS::ApiGateway::UsagePlan"
    assert plan["Condition"] == "RequiresApiKey"
    assert condition_holds(template, "RequiresApiKey", APIKEY)
    assert not condition_holds(template, "RequiresApiKey", {})
    # Its Ref to the stage makes it wait for the stage (a plan made first: "API Stage not found")
    assert plan["Properties"]["ApiStages"] == [
        {"ApiId": {"Ref": "CounterApi"}, "Stage": {"Ref": "ApiStage"}}
    ]
    # Keys are the deployer's (./deploy.sh keys): none in the template
    assert not [r for r in resources.values() if r["Type"] == "AWS::ApiGateway::ApiKey"]
    assert template["Outputs"]["UsagePlanId"]["Condition"] == "RequiresApiKey"


def test_quota_and_throttle_only_when_set(template, resources):
    props = resources["UsagePlan"]["Properties"]
    assert props["Quota"]["Fn::If"][0] == "HasUsageQuota"
    assert props["Quota"]["Fn::If"][1] == {
        "Limit": {"Ref": "UsageQuotaPerMonth"},
        "Period": "MONTH",
    }
    assert not condition_holds(template, "HasUsageQuota", APIKEY)
    assert condition_holds(template, "HasUsageQuota", {**APIKEY, "UsageQuotaPerMonth": "1000"})
    assert not condition_holds(template, "HasUsageThrottle", APIKEY)
    assert condition_holds(template, "HasUsageThrottle", {**APIKEY, "UsageBurstLimit": "5"})
    throttle = props["Throttle"]["Fn::If"][1]
    assert throttle["RateLimit"]["Fn::If"][0] == "HasUsageRateLimit"
    assert throttle["BurstLimit"]["Fn::If"][0] == "HasUsageBurstLimit"


def test_one_deployment_per_value_of_requires_api_key(template, resources):
    deployments = {
        name: r["Condition"]
        for name, r in resources.items()
        if r["Type"] == "AWS::ApiGateway::Deployment"
    }
    assert sorted(deployments.values()) == ["RequiresApiKey", "RequiresNoApiKey"]
    for values in ({}, APIKEY):
        assert [condition_holds(template, c, values) for c in deployments.values()].count(True) == 1


def test_the_counter_is_told_the_identity(resources):
    variables = resources["CounterFunction"]["Properties"]["Environment"]["Variables"]
    assert variables["CLIENT_IDENTITY"] == {"Ref": "ClientIdentity"}
