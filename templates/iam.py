"""IAM roles, written with awacs: each statement names exact actions on exact ARNs."""

from awacs import dynamodb, kms, logs, xray
from awacs.aws import Allow, Policy, Principal, Statement
from awacs.sts import AssumeRole
from troposphere import GetAtt, If, Ref, Sub
from troposphere.iam import Policy as InlinePolicy
from troposphere.iam import Role
from troposphere.logs import LogGroup

from templates.parameters import StackParameters


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


def tracing_statement() -> Statement:
    """X-Ray (TracingConfig Active) sends segments; these actions take no resource but `*`."""
    return Statement(
        Sid="SendTraces",
        Effect=Allow,
        Action=[xray.PutTraceSegments, xray.PutTelemetryRecords],
        Resource=["*"],
    )


def kms_policy(params: StackParameters) -> InlinePolicy:
    """Use of the KmsKeyArn key (function_role adds it only when one is given).

    kms:Decrypt reads the encrypted environment variables and the table's key on each
    access; kms:GenerateDataKey lets DynamoDB encrypt what the function writes.
    """
    return InlinePolicy(
        PolicyName="use-kms-key",
        PolicyDocument=Policy(
            Version="2012-10-17",
            Statement=[
                Statement(
                    Sid="UseStackKey",
                    Effect=Allow,
                    Action=[kms.Decrypt, kms.GenerateDataKey],
                    Resource=[Ref(params.kms_key_arn)],
                )
            ],
        ),
    )


def function_role(
    title: str, statements: list[Statement], params: StackParameters | None = None
) -> Role:
    """A role with one inline policy made of the given statements, and nothing else.

    Given params, a second policy lets the role use KmsKeyArn when one is set. The whole
    list is chosen by Fn::If (not one item of it): no NoValue inside a list.
    """
    base = InlinePolicy(
        PolicyName="least-privilege",
        PolicyDocument=Policy(Version="2012-10-17", Statement=statements),
    )
    policies = (
        [base] if params is None else If(params.has_kms_key, [base, kms_policy(params)], [base])
    )
    return Role(title, AssumeRolePolicyDocument=lambda_trust_policy(), Policies=policies)


def counter_role(table_arn: GetAtt, log_group: LogGroup, params: StackParameters) -> Role:
    """The counter adds to counters, writes its logs and traces: UpdateItem is all it needs."""
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
            tracing_statement(),
        ],
        params,
    )


def api_gateway_logs_role(access_log_group: LogGroup, params: StackParameters) -> Role:
    """The role API Gateway writes CloudWatch Logs with, for every API of this region.

    The actions of the AWS managed policy AmazonAPIGatewayPushToCloudWatchLogs, scoped
    to this account and region: log groups API Gateway creates for execution logs
    (API-Gateway-Execution-Logs_*) and this stack's access log group. Only when
    ApiGatewayAccountRole is 'create'.
    """
    group_arn = "arn:${AWS::Partition}:logs:${AWS::Region}:${AWS::AccountId}:log-group:"
    execution_logs = Sub(group_arn + "API-Gateway-Execution-Logs_*")
    return Role(
        "ApiGatewayCloudWatchRole",
        Condition=params.creates_api_gateway_role,
        AssumeRolePolicyDocument=Policy(
            Version="2012-10-17",
            Statement=[
                Statement(
                    Effect=Allow,
                    Principal=Principal("Service", "apigateway.amazonaws.com"),
                    Action=[AssumeRole],
                )
            ],
        ),
        Policies=[
            InlinePolicy(
                PolicyName="push-to-cloudwatch-logs",
                PolicyDocument=Policy(
                    Version="2012-10-17",
                    Statement=[
                        Statement(
                            Sid="ListLogGroups",
                            Effect=Allow,
                            Action=[logs.DescribeLogGroups],
                            Resource=[Sub(group_arn + "*")],
                        ),
                        Statement(
                            Sid="WriteApiLogs",
                            Effect=Allow,
                            Action=[
                                logs.CreateLogGroup,
                                logs.CreateLogStream,
                                logs.DescribeLogStreams,
                                logs.PutLogEvents,
                                logs.GetLogEvents,
                                logs.FilterLogEvents,
                            ],
                            Resource=[
                                execution_logs,
                                Sub(group_arn + "API-Gateway-Execution-Logs_*:log-stream:*"),
                                GetAtt(access_log_group, "Arn"),
                            ],
                        ),
                    ],
                ),
            )
        ],
    )


def stats_role(table_arn: GetAtt, log_group: LogGroup, params: StackParameters) -> Role:
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
            tracing_statement(),
        ],
        params,
    )
