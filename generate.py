#!/usr/bin/env python3
"""Print the Route Counter CloudFormation template (JSON) on standard output.

    python generate.py > template.json

Resources are emitted in dependency order (not sorted): CloudFormation does not care,
but change-set deploys on emulators such as moto create them in template order.
"""

import argparse
import json
import sys

from awacs import dynamodb, sqs
from troposphere import GetAtt, If, Ref, Sub, Template

from templates import api, iam, monitoring, parameters, scaling, storage, streaming
from templates.constructs import add_lambda, add_routes, add_stage


def build_template() -> Template:
    template = Template(
        Description="Route Counter: an API Gateway REST API whose every request is counted, "
        "per route, by a Lambda function in a DynamoDB table."
    )
    template.set_version("2010-09-09")
    params = parameters.add_parameters(template)

    # Storage: the counter table, auto scaled when PROVISIONED (target before its policy)
    table = template.add_resource(storage.counter_table(params))
    for kind in ("Read", "Write"):
        template.add_resource(list(scaling.table_scaling(kind, table, params)))
    table_arn = GetAtt(table, "Arn")
    # Hits over time, filled from the counter table's stream by the aggregator (Analytics on)
    analytics = params.has_analytics
    series = template.add_resource(storage.series_table(params))
    series_arn = GetAtt(series, "Arn")

    # Where alarms notify, and the API the functions serve
    topic = template.add_resource(monitoring.alarm_topic(params))
    template.add_resource(monitoring.alarm_subscription(topic, params))
    rest_api = template.add_resource(api.rest_api())

    # The functions: each with its log group, role, invoke permission and alarms
    stats_route = Sub("/${StatsPath}")
    shared = {"params": params, "rest_api": rest_api, "alarm_topic": topic}
    counter = add_lambda(
        template,
        "Counter",
        source="counter",
        description="Counts each API request in the counter table, per route.",
        environment={
            "TABLE_NAME": Ref(table),
            "STATS_ROUTE": stats_route,
            "RATE_LIMIT": Ref(params.rate_limit),
            "RATE_LIMIT_WINDOW_SECONDS": Ref(params.rate_limit_window),
        },
        statements=[iam.allow("CountHits", [dynamodb.UpdateItem], table_arn)],
        **shared,
    )
    stats = add_lambda(
        template,
        "Stats",
        source="stats",
        description="Reads the route counts: JSON pages, one route, or an HTML dashboard.",
        environment={
            "TABLE_NAME": Ref(table),
            "STATS_ROUTE": stats_route,
            "ALLOWED_ORIGIN": Ref(params.allowed_origin),
            # Empty with Analytics off: the stats function then answers that they are off
            "SERIES_TABLE": If(analytics, Ref(series), ""),
        },
        statements=[iam.allow("ReadCounts", [dynamodb.Scan, dynamodb.GetItem], table_arn)],
        **shared,
    )
    # BatchGetItem: the dashboard reads its three summary items in one call
    template.add_resource(
        iam.conditional_policy(
            "StatsReadSeriesPolicy",
            analytics,
            stats.role,
            iam.allow(
                "ReadSeries", [dynamodb.Query, dynamodb.GetItem, dynamodb.BatchGetItem], series_arn
            ),
        )
    )
    # The aggregator: the counter table's stream -> the series table, failures to a queue
    failures = streaming.failure_queue(params)
    failures.Condition = analytics
    template.add_resource(failures)
    stream_arn = GetAtt(table, "StreamArn")
    aggregator = add_lambda(
        template,
        "Aggregator",
        source="aggregator",
        description="Keeps each route's hits per hour and per day from the counter stream.",
        environment={
            "SERIES_TABLE": Ref(series),
            "SERIES_HOURLY_DAYS": Ref(params.series_hourly_days),
        },
        statements=[
            iam.allow(
                "ReadCounterStream",
                [
                    dynamodb.DescribeStream,
                    dynamodb.GetRecords,
                    dynamodb.GetShardIterator,
                    dynamodb.ListStreams,
                ],
                stream_arn,
            ),
            # BatchGetItem: a batch's buckets are read before its transactions, whose Update
            # actions IAM checks as UpdateItem; GetItem: the top items are read, merged and
            # written back (optimistic)
            iam.allow(
                "WriteSeries",
                [dynamodb.BatchGetItem, dynamodb.GetItem, dynamodb.UpdateItem],
                series_arn,
            ),
            iam.allow("KeepFailedBatches", [sqs.SendMessage], GetAtt(failures, "Arn")),
        ],
        **{**shared, "rest_api": None},
        condition=analytics,
    )
    mapping = streaming.stream_mapping(table, aggregator.function, failures, params)
    for resource in [mapping, *streaming.aggregator_alarms(aggregator.function, failures, topic)]:
        resource.Condition = analytics
        template.add_resource(resource)
    kms_policy = template.add_resource(
        iam.kms_key_policy([counter.role, stats.role], params, [(analytics, aggregator.role)])
    )

    # The API: routes, their deployment, the stage (access logs, account role)
    deployment = add_routes(template, rest_api, params, counter.function, stats.function)
    stage = add_stage(template, rest_api, deployment, params, kms_policy)

    # Alarms and the dashboard
    template.add_resource(monitoring.api_alarms(stage, topic))
    template.add_resource(monitoring.table_alarms(table, topic))
    functions = [counter.function, stats.function, (analytics, aggregator.function)]
    template.add_resource(monitoring.dashboard(stage, functions, table))

    template.add_output(api.outputs(rest_api, stage, table, counter.function))
    template.add_output(streaming.outputs(series, failures, analytics))
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
