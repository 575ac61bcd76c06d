"""Constructs: one call adds every resource of a repeated shape, CDK style."""

from collections.abc import Callable
from dataclasses import dataclass

from awacs.aws import Statement
from troposphere import Ref, Template
from troposphere.apigateway import Deployment, RestApi, Stage
from troposphere.awslambda import Function
from troposphere.iam import PolicyType, Role
from troposphere.logs import LogGroup
from troposphere.sns import Topic

from templates import api, clients, function, iam, monitoring
from templates.parameters import StackParameters


@dataclass(frozen=True)
class LambdaFunction:
    function: Function
    role: Role
    log_group: LogGroup


def add_lambda(
    template: Template,
    name: str,
    *,
    source: str,
    description: str,
    environment: dict,
    statements: list[Statement],
    params: StackParameters,
    rest_api: RestApi | None,
    alarm_topic: Topic,
    reserves_concurrency: bool = False,
    role_policy: Callable[[Role], PolicyType] | None = None,
    timeout: object = None,
    condition: str | None = None,
) -> LambdaFunction:
    """A function: <name>LogGroup, <name>FunctionRole (the given statements, plus writing
    its own logs and sending traces), <name>Function (runs handler/<source>.py, hardened),
    <name>InvokePermission (API Gateway may invoke it, from rest_api only; none when
    rest_api is None: a stream mapping invokes it with its role), and the alarms
    <name>Errors and <name>Throttles. reserves_concurrency: ReservedConcurrency applies to it;
    role_policy: a conditional policy resource of the
    role, which the function waits for (its first call may need it); timeout: instead of
    the default for its kind. With a condition, each of them exists only when it holds."""
    log_group = function.function_log_group(f"{name}LogGroup", params)
    role = iam.function_role(
        f"{name}FunctionRole",
        [*statements, iam.write_logs_statement(log_group), iam.tracing_statement()],
    )
    if rest_api is not None:
        skips, default_timeout = function.FUNCTION_SCAN_SKIPS, function.TIMEOUT_SECONDS
    else:
        skips = function.STREAM_CONSUMER_SCAN_SKIPS
        default_timeout = function.STREAM_CONSUMER_TIMEOUT_SECONDS
    policy = role_policy(role) if role_policy else None
    lambda_function = function.hardened_function(
        f"{name}Function",
        source,
        description,
        role,
        log_group,
        environment,
        params,
        skips,
        timeout=timeout or default_timeout,
        reserves_concurrency=reserves_concurrency,
        waits_for=policy,
    )
    resources = [log_group, role, *([policy] if policy else []), lambda_function]
    if rest_api is not None:
        resources.append(
            api.invoke_permission(f"{name}InvokePermission", lambda_function, rest_api, params)
        )
    resources += monitoring.function_alarms(name, lambda_function, alarm_topic)
    for resource in resources:
        if condition is not None and resource is not policy:  # a policy has its own
            resource.Condition = condition
        template.add_resource(resource)
    return LambdaFunction(lambda_function, role, log_group)


def add_routes(
    template: Template,
    rest_api: RestApi,
    params: StackParameters,
    counter: Function,
    stats: Function,
) -> tuple[Deployment, Deployment]:
    """ANY / and ANY /{proxy+} to the counter (an API key required with ClientIdentity
    apikey); ANY /<StatsPath> and ANY /<StatsPath>/{proxy+} to the stats function (a
    specific resource beats {proxy+}; never a key: the stats follow PrivateStats); and the
    deployments of that shape (api.api_deployments)."""
    proxy = template.add_resource(api.path_resource("ProxyResource", rest_api, "{proxy+}"))
    stats_path = template.add_resource(
        api.path_resource("StatsResource", rest_api, Ref(params.stats_path))
    )
    stats_proxy = template.add_resource(
        api.path_resource("StatsProxyResource", rest_api, "{proxy+}", stats_path)
    )
    counted = clients.api_key_required(params)
    routes = [
        ("RootMethod", None, counter, counted),
        ("ProxyMethod", proxy, counter, counted),
        ("StatsMethod", stats_path, stats, None),
        ("StatsProxyMethod", stats_proxy, stats, None),
    ]
    methods = [
        template.add_resource(api.proxy_method(title, rest_api, resource, target, key))
        for title, resource, target, key in routes
    ]
    deployments = api.api_deployments(rest_api, methods, [proxy, stats_path, stats_proxy], params)
    template.add_resource(list(deployments))
    return deployments


def add_stage(
    template: Template,
    rest_api: RestApi,
    deployments: tuple[Deployment, Deployment],
    params: StackParameters,
    policies: dict[str, PolicyType],
) -> Stage:
    """The stage, its access log group, and the region's API Gateway CloudWatch role with
    the account setting that names it (when ApiGatewayAccountRole is 'create'). The first
    request waits for the conditional policies the functions need (name -> policy: the KMS
    key, the stats token, MaxRoutes' ledger)."""
    access_logs = template.add_resource(api.access_log_group(params))
    logs_role = template.add_resource(iam.api_gateway_logs_role(params))
    account = template.add_resource(api.account_settings(logs_role, rest_api, params))
    return template.add_resource(
        api.api_stage(
            rest_api,
            api.deployment_id(deployments, params),
            params,
            access_logs,
            waits_for={"AccountSettings": account, **policies},
        )
    )
