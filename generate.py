#!/usr/bin/env python3
"""Print the Route Counter CloudFormation template (JSON) on standard output.

    python generate.py > template.json

Resources are emitted in dependency order (not sorted): CloudFormation does not care,
but change-set deploys on emulators such as moto create them in template order.
"""

import argparse
import sys

from troposphere import GetAtt, Output, Ref, Template

from templates import api, function, iam, monitoring, parameters, storage


def build_template() -> Template:
    template = Template(
        Description="Route Counter: an API Gateway REST API whose every request is counted, "
        "per route, by a Lambda function in a DynamoDB table."
    )
    template.set_version("2010-09-09")
    params = parameters.add_parameters(template)

    # Storage
    counter_table = template.add_resource(storage.counter_table(params))

    # Counter function: log group, role, function
    counter_logs = template.add_resource(function.function_log_group("CounterLogGroup", params))
    counter_role = template.add_resource(
        iam.counter_role(GetAtt(counter_table, "Arn"), counter_logs, params)
    )
    counter_function = template.add_resource(
        function.harden(
            function.inline_function(
                "CounterFunction",
                "counter",
                counter_role,
                counter_logs,
                {"TABLE_NAME": Ref(counter_table)},
                params,
                "Counts each API request in the counter table, per route.",
            ),
            params,
        )
    )

    # REST API: ANY / and ANY /{proxy+}, both proxied to the counter
    rest_api = template.add_resource(api.rest_api())
    proxy = template.add_resource(api.path_resource("ProxyResource", rest_api, "{proxy+}"))
    methods = [
        template.add_resource(api.proxy_method("RootMethod", rest_api, None, counter_function)),
        template.add_resource(api.proxy_method("ProxyMethod", rest_api, proxy, counter_function)),
    ]
    deployment = template.add_resource(api.api_deployment(rest_api, methods, [proxy]))
    # Access logs: their log group, and the account's CloudWatch role when we set it
    access_logs = template.add_resource(api.access_log_group(params))
    logs_role = template.add_resource(iam.api_gateway_logs_role(access_logs, params))
    account = template.add_resource(api.account_settings(logs_role, params))
    stage = template.add_resource(
        api.api_stage(rest_api, deployment, params, log_group=access_logs, account=account)
    )
    template.add_resource(
        api.invoke_permission("CounterInvokePermission", counter_function, rest_api, params)
    )

    template.add_resource(
        monitoring.monitoring_resources(params, rest_api, stage, counter_function, counter_table)
    )

    template.add_output(
        [
            Output(
                "ApiUrl", Description="Base URL of the API", Value=api.stage_url(rest_api, stage)
            ),
            Output("TableName", Description="DynamoDB counter table", Value=Ref(counter_table)),
            Output(
                "CounterFunctionName",
                Description="Counting Lambda function",
                Value=Ref(counter_function),
            ),
        ]
    )
    return template


def render(template: Template) -> str:
    """Compact but readable JSON, resources in insertion order, stable byte for byte."""
    return template.to_json(indent=1, sort_keys=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Print the Route Counter CloudFormation template (JSON) on stdout. "
        "Deploy-time settings are template Parameters: see README.md or "
        "'./deploy.sh --param Key=Value'.",
    )
    parser.add_argument(
        "-o", "--output", metavar="FILE", help="write to FILE instead of standard output"
    )
    args = parser.parse_args(argv)
    text = render(build_template())
    if args.output:
        with open(args.output, "w", encoding="utf-8") as out:
            out.write(text)
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
