"""IAM roles, written with awacs: each statement names exact actions on exact ARNs."""

from awacs import awslambda, dynamodb, kms, logs, xray
from awacs.aws import Allow, Condition, ForAllValuesStringEquals, Policy, Principal, Statement
from awacs.sts import AssumeRole
from troposphere import GetAtt, If, NoValue, Ref, Sub
from troposphere.iam import Policy as InlinePolicy
from troposphere.iam import PolicyType as PolicyResource
from troposphere.iam import Role
from troposphere.logs import LogGroup

from templates.parameters import StackParameters


def service_trust_policy(service: str) -> Policy:
    """Only the given AWS service may assume the role."""
    return Policy(
        Version="2012-10-17",
        Statement=[
            Statement(Effect=Allow, Principal=Principal("Service", service), Action=[AssumeRole])
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


# dynamodb:ListStreams takes no resource ("Actions defined by Amazon DynamoDB": no resource
# type), so on a stream ARN it authorises nothing; Lambda's documentation and its
# CreateEventSourceMapping error ("ensure the role can perform the GetRecords,
# GetShardIterator, DescribeStream, and ListStreams Actions") still name it for a stream
# mapping. It lists stream ARNs and reads no record: granted on `*`, alone.
LIST_STREAMS_REASON = (
    "dynamodb:ListStreams has no resource type (IAM matches it only against *) and Lambda's "
    "stream event source mapping asks the execution role for it; it lists stream ARNs, "
    "reads no record."
)


def list_streams_statement() -> Statement:
    """ListStreams on `*`, the one resource it matches (see LIST_STREAMS_REASON)."""
    return Statement(
        Sid="ListStreamsForMapping",
        Effect=Allow,
        Action=[dynamodb.ListStreams],
        Resource=["*"],
    )


def kms_key_policy(
    roles: list[Role], params: StackParameters, conditional_roles: list[tuple[str, Role]] = ()
) -> PolicyResource:
    """Use of the KmsKeyArn key by the given roles, and by each (condition, role) of
    conditional_roles when its condition holds; the resource exists only when a key is given.

    kms:Decrypt reads the encrypted environment variables and the table's key on each
    access; kms:GenerateDataKey lets DynamoDB encrypt what the function writes. One
    conditional resource for every role, so no role repeats its policies in a Fn::If.
    """
    return PolicyResource(
        "UseKmsKeyPolicy",
        Condition=params.has_kms_key,
        PolicyName="use-kms-key",
        Roles=[Ref(role) for role in roles]
        + [If(condition, Ref(role), NoValue) for condition, role in conditional_roles],
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


def conditional_policy(
    title: str, condition: str, role: Role, statement: Statement, name: str | None = None
) -> PolicyResource:
    """One statement more for a role, only when the condition holds (awacs takes no Fn::If
    among a policy's statements)."""
    return PolicyResource(
        title,
        Condition=condition,
        PolicyName=name or title,
        Roles=[Ref(role)],
        PolicyDocument=Policy(Version="2012-10-17", Statement=[statement]),
    )


def invoke_backend_policy(role: Role, params: StackParameters) -> PolicyResource:
    """With a Lambda Backend only: the role may invoke exactly that ARN. Lambda authorises
    an Invoke on the ARN it is called with (a qualified ARN is a resource of its own: the
    unqualified ARN does not grant it, nor it the unqualified one), and the counter invokes
    the very ARN given: so the grant is that ARN, qualifier included, and nothing else."""
    return conditional_policy(
        "InvokeBackendPolicy",
        params.has_lambda_backend,
        role,
        allow("InvokeBackend", [awslambda.InvokeFunction], Ref(params.backend)),
        name="invoke-backend",
    )


def function_role(title: str, statements: list[Statement]) -> Role:
    """A role Lambda may assume, with one inline policy made of the given statements."""
    return Role(
        title,
        AssumeRolePolicyDocument=service_trust_policy("lambda.amazonaws.com"),
        Policies=[
            InlinePolicy(
                PolicyName="least-privilege",
                PolicyDocument=Policy(Version="2012-10-17", Statement=statements),
            )
        ],
    )


# The AWS managed policy the API Gateway guide names for this role ("Set up CloudWatch
# logging": it "has all the required permissions"). Our one exception to exact actions on
# exact ARNs: see LEAST_PRIVILEGE_EXCEPTION.
PUSH_TO_CLOUDWATCH_LOGS = (
    "arn:${AWS::Partition}:iam::aws:policy/service-role/AmazonAPIGatewayPushToCloudWatchLogs"
)
LEAST_PRIVILEGE_EXCEPTION = (
    "AWS managed policy, Resource *: setting the account's role, API Gateway checks it by "
    "writing to /aws/apigateway/welcome, and every REST API of the region logs through "
    "it to log groups we cannot name; logs:DescribeLogGroups is granted on * (parliament "
    "finds no narrower resource for it)."
)


def api_gateway_logs_role(params: StackParameters) -> Role:
    """The role API Gateway writes CloudWatch Logs with, for every API of this region.

    Only when ApiGatewayAccountRole is 'create'. Retained on stack delete, on a switch
    away from 'create', on replacement and on a rolled-back create: the account setting
    (account_settings) outlives the stack and must never name a deleted role.
    """
    return Role(
        "ApiGatewayCloudWatchRole",
        Condition=params.creates_api_gateway_role,
        DeletionPolicy="Retain",
        UpdateReplacePolicy="Retain",
        Metadata={"LeastPrivilegeException": LEAST_PRIVILEGE_EXCEPTION},
        AssumeRolePolicyDocument=service_trust_policy("apigateway.amazonaws.com"),
        ManagedPolicyArns=[Sub(PUSH_TO_CLOUDWATCH_LOGS)],
    )


def allow(sid: str, actions: list, resource) -> Statement:
    """One statement: exactly these actions on exactly this resource."""
    return Statement(Sid=sid, Effect=Allow, Action=actions, Resource=[resource])


ROUTE_LEDGER = "#routes"  # partition key of MaxRoutes' ledger item (handler/counter.py)


def route_ledger_statement(series_arn, read: bool = False) -> Statement:
    """MaxRoutes: the counter's transaction adds to one series-table item, the ledger of the
    routes it let in (IAM checks a transaction's Update as UpdateItem); read: the stats read
    that item (GetItem). No other item."""
    return Statement(
        Sid="ReadRouteLedger" if read else "KeepRouteLedger",
        Effect=Allow,
        Action=[dynamodb.GetItem] if read else [dynamodb.UpdateItem],
        Resource=[series_arn],
        Condition=Condition(ForAllValuesStringEquals("dynamodb:LeadingKeys", [ROUTE_LEDGER])),
    )
