"""Constructs: one call adds every resource of a repeated shape, CDK style."""

from dataclasses import dataclass

from awacs.aws import Statement
from troposphere import Template
from troposphere.apigateway import RestApi
from troposphere.awslambda import Function
from troposphere.iam import Role
from troposphere.logs import LogGroup
from troposphere.sns import Topic

from templates import api, function, iam, monitoring
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
    rest_api: RestApi,
    alarm_topic: Topic,
) -> LambdaFunction:
    """A function API Gateway invokes: <name>LogGroup, <name>FunctionRole (the given
    statements, plus writing its own logs and sending traces), <name>Function (runs
    handler/<source>.py, hardened), <name>InvokePermission (this API only), and the alarms
    <name>Errors and <name>Throttles."""
    log_group = template.add_resource(function.function_log_group(f"{name}LogGroup", params))
    role = template.add_resource(
        iam.function_role(
            f"{name}FunctionRole",
            [*statements, iam.write_logs_statement(log_group), iam.tracing_statement()],
        )
    )
    lambda_function = template.add_resource(
        function.hardened_function(
            f"{name}Function", source, description, role, log_group, environment, params
        )
    )
    template.add_resource(
        api.invoke_permission(f"{name}InvokePermission", lambda_function, rest_api, params)
    )
    template.add_resource(monitoring.function_alarms(name, lambda_function, alarm_topic))
    return LambdaFunction(lambda_function, role, log_group)
