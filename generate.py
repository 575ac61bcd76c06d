#!/usr/bin/env python3
"""Print the Route Counter CloudFormation template (JSON) on standard output.

    python generate.py > template.json

Resources are emitted in dependency order (not sorted): CloudFormation does not care,
but change-set deploys on emulators such as moto create them in template order.
"""

import argparse
import json
import sys

from troposphere import GetAtt, Output, Ref, Sub, Template

from templates import api, function, iam, monitoring, parameters, scaling, storage


def build_template() -> Template:
    template = Template(
        Description="Route Counter: an API Gateway REST API whose every request is counted, "
        "per route, by a Lambda function in a DynamoDB table."
    )
    template.set_version("2010-09-09")
    params = parameters.add_parameters(template)

    # Storage
    counter_table = template.add_resource(storage.counter_table(params))
    for kind in ("Read", "Write"):  # PROVISIONED only; target before its policy
        template.add_resource(list(scaling.table_scaling(kind, counter_table, params)))
    stats_route = Sub("/${StatsPath}")

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
                {
                    "TABLE_NAME": Ref(counter_table),
                    "STATS_ROUTE": stats_route,
                    "RATE_LIMIT": Ref(params.rate_limit),
                    "RATE_LIMIT_WINDOW_SECONDS": Ref(params.rate_limit_window),
                },
                params,
                "Counts each API request in the counter table, per route.",
            ),
            params,
        )
    )

    # Stats function: reads the table only
    stats_logs = template.add_resource(function.function_log_group("StatsLogGroup", params))
    stats_role = template.add_resource(
        iam.stats_role(GetAtt(counter_table, "Arn"), stats_logs, params)
    )
    stats_function = template.add_resource(
        function.harden(
            function.inline_function(
                "StatsFunction",
                "stats",
                stats_role,
                stats_logs,
                {
                    "TABLE_NAME": Ref(counter_table),
                    "STATS_ROUTE": stats_route,
                    "ALLOWED_ORIGIN": Ref(params.allowed_origin),
                },
                params,
                "Reads the route counts: JSON pages, one route, or an HTML dashboard.",
            ),
            params,
        )
    )

    # REST API: ANY / and ANY /{proxy+} proxied to the counter; ANY /<StatsPath> and
    # ANY /<StatsPath>/{proxy+} to the stats function (a specific resource beats {proxy+}).
    rest_api = template.add_resource(api.rest_api())
    proxy = template.add_resource(api.path_resource("ProxyResource", rest_api, "{proxy+}"))
    stats = template.add_resource(
        api.path_resource("StatsResource", rest_api, Ref(params.stats_path))
    )
    stats_proxy = template.add_resource(
        api.path_resource("StatsProxyResource", rest_api, "{proxy+}", stats)
    )
    methods = [
        template.add_resource(api.proxy_method("RootMethod", rest_api, None, counter_function)),
        template.add_resource(api.proxy_method("ProxyMethod", rest_api, proxy, counter_function)),
        template.add_resource(api.proxy_method("StatsMethod", rest_api, stats, stats_function)),
        template.add_resource(
            api.proxy_method("StatsProxyMethod", rest_api, stats_proxy, stats_function)
        ),
    ]
    deployment = template.add_resource(
        api.api_deployment(rest_api, methods, [proxy, stats, stats_proxy])
    )
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
        api.invoke_permission("StatsInvokePermission", stats_function, rest_api, params)
    )

    template.add_resource(
        monitoring.monitoring_resources(
            params, rest_api, stage, counter_function, counter_table, stats_function
        )
    )

    template.add_output(
        [
            Output(
                "ApiUrl", Description="Base URL of the API", Value=api.stage_url(rest_api, stage)
            ),
            Output(
                "StatsUrl",
                Description="Read-only stats: JSON, or a dashboard in a browser",
                Value=Sub("${Base}${StatsPath}", Base=api.stage_url(rest_api, stage)),
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


def render(template: Template, indent: int | None = None) -> str:
    """The template as JSON, resources in insertion order, stable byte for byte.

    By default each parameter, condition, resource and output is one compact line: the
    template stays well under the 51,200 bytes CloudFormation accepts inline
    (--template-body; above that it must be uploaded to S3) while diffs and cfn-lint
    findings still point at one resource. indent=N pretty-prints it for reading.
    """
    data = template.to_dict()
    if indent is not None:
        return json.dumps(data, indent=indent) + "\n"

    def compact(value) -> str:
        return json.dumps(value, separators=(",", ":"))

    sections = []
    for key, value in data.items():
        if isinstance(value, dict) and value:
            entries = ",\n".join(f"  {compact(k)}: {compact(v)}" for k, v in value.items())
            sections.append(f" {compact(key)}: {{\n{entries}\n }}")
        else:
            sections.append(f" {compact(key)}: {compact(value)}")
    return "{\n" + ",\n".join(sections) + "\n}\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Print the Route Counter CloudFormation template (JSON) on stdout. "
        "Deploy-time settings are template Parameters: see README.md or "
        "'./deploy.sh --param Key=Value'.",
    )
    parser.add_argument(
        "-o", "--output", metavar="FILE", help="write to FILE instead of standard output"
    )
    parser.add_argument(
        "--indent",
        type=int,
        metavar="N",
        help="pretty-print with N spaces, for reading (default: one line per resource, "
        "which keeps the template under CloudFormation's 51,200-byte inline limit)",
    )
    args = parser.parse_args(argv)
    text = render(build_template(), args.indent)
    if args.output:
        with open(args.output, "w", encoding="utf-8") as out:
            out.write(text)
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
