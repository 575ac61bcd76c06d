"""IAM roles, written with awacs: each statement names exact actions on exact ARNs."""

from awacs import dynamodb, logs
from awacs.aws import Allow, Policy, Principal, Statement
from awacs.sts import AssumeRole
from troposphere import GetAtt
from troposphere.iam import Policy as InlinePolicy
from troposphere.iam import Role
from troposphere.logs import LogGroup


def lambda_trust_policy() -> Policy:
    """Only the Lambda service may assume the role."""
    return Policy(
        Version="2012-10-17",
        Statement=[
            Statement(
                Effect=Allow,
                Principal=Principal("Service", "lambda.amazonaws.com"),
                Action=[AssumeRole],
            )
        ],
    )


def write_logs_statement(log_group: LogGroup) -> Statement:
    """The function's own log group; Lambda creates streams in it and writes events."""
    return Statement(
        Sid="WriteOwnLogs",
        Effect=Allow,
        Action=[logs.CreateLogStream, logs.PutLogEvents],
        Resource=[GetAtt(log_group, "Arn")],
    )


def function_role(title: str, statements: list[Statement]) -> Role:
    """A role with one inline policy made of the given statements, and nothing else."""
    return Role(
        title,
        AssumeRolePolicyDocument=lambda_trust_policy(),
        Policies=[
            InlinePolicy(
                PolicyName="least-privilege",
                PolicyDocument=Policy(Version="2012-10-17", Statement=statements),
            )
        ],
    )


def counter_role(table_arn: GetAtt, log_group: LogGroup) -> Role:
    """The counter may add to counters and write its logs: UpdateItem is all it needs."""
    return function_role(
        "CounterFunctionRole",
        [
            Statement(
                Sid="CountHits",
                Effect=Allow,
                Action=[dynamodb.UpdateItem],
                Resource=[table_arn],
            ),
            write_logs_statement(log_group),
        ],
    )


def stats_role(table_arn: GetAtt, log_group: LogGroup) -> Role:
    """The stats function only reads: Scan for pages, GetItem for one route. No write."""
    return function_role(
        "StatsFunctionRole",
        [
            Statement(
                Sid="ReadCounts",
                Effect=Allow,
                Action=[dynamodb.Scan, dynamodb.GetItem],
                Resource=[table_arn],
            ),
            write_logs_statement(log_group),
        ],
    )
