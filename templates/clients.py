"""ClientIdentity apikey (docs/clients.md): the counted methods require an API key, and one
usage plan on the stage holds the keys and what API Gateway enforces per key."""

from troposphere import If, NoValue, Output, Ref, Sub
from troposphere.apigateway import (
    ApiStage,
    QuotaSettings,
    RestApi,
    Stage,
    ThrottleSettings,
    UsagePlan,
)

from templates.parameters import StackParameters


def api_key_required(params: StackParameters) -> If:
    """A counted method's ApiKeyRequired: true exactly with ClientIdentity apikey."""
    return If(params.requires_api_key, True, False)


def usage_plan(api: RestApi, stage: Stage, params: StackParameters) -> UsagePlan:
    """The stack's usage plan (ClientIdentity apikey only): a key works on this stage once
    it is in the plan (./deploy.sh keys create adds it; keys are never in the template).
    Its Ref to the stage makes it wait for the stage: a plan created first fails ("API Stage
    not found"). Quota per calendar month; each throttle limit only when set."""
    return UsagePlan(
        "UsagePlan",
        Condition=params.requires_api_key,
        UsagePlanName=Sub("${AWS::StackName}"),
        Description="Route Counter: the API keys of ClientIdentity apikey, their quota, throttle",
        ApiStages=[ApiStage(ApiId=Ref(api), Stage=Ref(stage))],
        Quota=If(
            params.has_usage_quota,
            QuotaSettings(Limit=Ref(params.usage_quota_per_month), Period="MONTH"),
            NoValue,
        ),
        Throttle=If(
            params.has_usage_throttle,
            ThrottleSettings(
                RateLimit=If(params.has_usage_rate_limit, Ref(params.usage_rate_limit), NoValue),
                BurstLimit=If(params.has_usage_burst_limit, Ref(params.usage_burst_limit), NoValue),
            ),
            NoValue,
        ),
    )


def outputs(plan: UsagePlan, params: StackParameters) -> list[Output]:
    return [
        Output(
            "UsagePlanId",
            Condition=params.requires_api_key,
            Description="The usage plan whose API keys may call the API (./deploy.sh keys)",
            Value=Ref(plan),
        )
    ]
