"""The REST API: every path and method of it goes to one Lambda proxy integration."""

import hashlib
import json

from troposphere import AWSObject, GetAtt, If, NoValue, Output, Ref, Split, Sub
from troposphere.apigateway import (
    AccessLogSetting,
    Account,
    Deployment,
    EndpointConfiguration,
    Integration,
    Method,
    MethodSetting,
    Resource,
    RestApi,
    Stage,
)
from troposphere.awslambda import Function, Permission
from troposphere.dynamodb import Table
from troposphere.iam import Role
from troposphere.logs import LogGroup

from templates.parameters import StackParameters


def rest_api(params: StackParameters) -> RestApi:
    """The API. With a Backend, its BinaryMediaTypes: a REST API hands a body whose type
    matches none of them to the function as UTF-8 text (any other byte is lost), and
    decodes a base64 answer only for a client whose first Accept type matches one."""
    return RestApi(
        "CounterApi",
        Name=Sub("${AWS::StackName}"),
        Description="Route Counter: counts every request, per route.",
        EndpointConfiguration=EndpointConfiguration(Types=["REGIONAL"]),
        BinaryMediaTypes=If(
            params.has_binary_media_types,
            Split(",", Ref(params.binary_media_types)),
            NoValue,
        ),
    )


def path_resource(title: str, api: RestApi, path_part: str, parent=None) -> Resource:
    """A path part under the API root (or under parent)."""
    parent_id = Ref(parent) if parent is not None else GetAtt(api, "RootResourceId")
    return Resource(title, RestApiId=Ref(api), ParentId=parent_id, PathPart=path_part)


def proxy_method(
    title: str, api: RestApi, resource, function: Function, api_key_required: object = None
) -> Method:
    """ANY method whose requests reach the function as REST proxy events (payload 1.0);
    api_key_required: its ApiKeyRequired (unset: none required)."""
    resource_id = GetAtt(api, "RootResourceId") if resource is None else Ref(resource)
    key = {} if api_key_required is None else {"ApiKeyRequired": api_key_required}
    return Method(
        title,
        RestApiId=Ref(api),
        ResourceId=resource_id,
        HttpMethod="ANY",
        AuthorizationType="NONE",
        **key,
        Metadata={
            "checkov": {
                "skip": [{"id": "CKV_AWS_59", "comment": "Public API by design; stage throttled"}]
            }
        },
        Integration=Integration(
            Type="AWS_PROXY",
            IntegrationHttpMethod="POST",
            Uri=Sub(
                "arn:${AWS::Partition}:apigateway:${AWS::Region}:lambda:path"
                "/2015-03-31/functions/${FunctionArn}/invocations",
                FunctionArn=GetAtt(function, "Arn"),
            ),
        ),
    )


def api_deployment(
    api: RestApi, methods: list[Method], resources: list[Resource], prefix: str = "Api"
) -> Deployment:
    """A deployment whose logical id hashes the API's shape.

    CloudFormation never redeploys an unchanged Deployment resource, so a change to any
    method or integration must change the logical id to reach the stage.
    """
    shape = [r.to_dict() for r in resources] + [m.to_dict() for m in methods]
    digest = hashlib.sha256(json.dumps(shape, sort_keys=True).encode()).hexdigest()[:12]
    return Deployment(
        f"{prefix}Deployment{digest}",
        RestApiId=Ref(api),
        Description=f"API shape {digest}",
        DependsOn=[m.title for m in methods],
    )


# One JSON object per request in the stage's access log group.
ACCESS_LOG_FORMAT = json.dumps(
    {
        "requestId": "$context.requestId",
        "ip": "$context.identity.sourceIp",
        "method": "$context.httpMethod",
        "resourcePath": "$context.resourcePath",
        "path": "$context.path",
        "status": "$context.status",
        "responseLength": "$context.responseLength",
        "latency": "$context.responseLatency",
        "integrationLatency": "$context.integrationLatency",
        "requestTime": "$context.requestTime",
    },
    separators=(",", ":"),
)


def access_log_group(params: StackParameters) -> LogGroup:
    """The stage's access logs; only when ApiGatewayAccountRole is not 'none'."""
    return LogGroup(
        "ApiAccessLogGroup",
        Condition=params.has_access_logs,
        DeletionPolicy="Delete",
        UpdateReplacePolicy="Delete",
        RetentionInDays=Ref(params.log_retention_days),
        KmsKeyId=If(params.has_kms_key, Ref(params.kms_key_arn), NoValue),
    )


def account_settings(role: Role, api: RestApi, params: StackParameters) -> Account:
    """Sets the region's API Gateway CloudWatch Logs role: an account-wide setting.

    Only when ApiGatewayAccountRole is 'create'. API Gateway has no call that unsets it,
    so deleting this resource leaves the setting as it is: the role it names is retained
    (iam.api_gateway_logs_role), and so is this resource, which says what it did. After
    the API: on a fresh region, setting the account races the API's creation (the CDK
    adds the same dependency).
    """
    return Account(
        "ApiGatewayAccount",
        Condition=params.creates_api_gateway_role,
        DeletionPolicy="Retain",
        UpdateReplacePolicy="Retain",
        DependsOn=[api.title],
        CloudWatchRoleArn=GetAtt(role, "Arn"),
    )


def api_deployments(
    api: RestApi, methods: list[Method], resources: list[Resource], params: StackParameters
) -> tuple[Deployment, Deployment]:
    """Two deployments of the same shape, one per value of RequiresApiKey: the methods'
    ApiKeyRequired follows a parameter, which changes no logical id, so changing
    ClientIdentity to or from apikey on a stack creates the other deployment and moves
    the stage to it (one Deployment would leave the stage serving the old snapshot)."""
    without_keys = api_deployment(api, methods, resources)
    without_keys.Condition = params.requires_no_api_key
    with_keys = api_deployment(api, methods, resources, prefix="ApiKey")
    with_keys.Condition = params.requires_api_key
    return without_keys, with_keys


def deployment_id(deployments: tuple[Deployment, Deployment], params: StackParameters) -> If:
    """The stage's deployment: the one of api_deployments whose condition holds."""
    without_keys, with_keys = deployments
    return If(params.requires_api_key, Ref(with_keys), Ref(without_keys))


def api_stage(
    api: RestApi,
    deployment: object,
    params: StackParameters,
    log_group: LogGroup,
    waits_for: dict[str, AWSObject],
) -> Stage:
    """The stage: X-Ray tracing, detailed metrics, throttling, JSON access logs.

    waits_for: conditional resources the stage must come after. DependsOn cannot name a
    conditional resource; a conditional Ref in Metadata can (the account's CloudWatch
    role before access logs, the KMS key policy before the first request).
    """
    return Stage(
        "ApiStage",
        Metadata={
            "checkov": {
                "skip": [
                    {"id": "CKV_AWS_120", "comment": "Every hit must reach the counter"},
                    {
                        "id": "CKV_AWS_76",
                        "comment": "On unless ApiGatewayAccountRole=none (Fn::If)",
                    },
                ]
            },
            **{key: If(r.Condition, Ref(r), "") for key, r in waits_for.items()},
        },
        RestApiId=Ref(api),
        DeploymentId=deployment,
        StageName=Ref(params.stage_name),
        TracingEnabled=True,
        MethodSettings=[
            MethodSetting(
                ResourcePath="/*",
                HttpMethod="*",
                MetricsEnabled=True,
                ThrottlingRateLimit=Ref(params.throttling_rate_limit),
                ThrottlingBurstLimit=Ref(params.throttling_burst_limit),
            )
        ],
        AccessLogSetting=If(
            params.has_access_logs,
            AccessLogSetting(DestinationArn=GetAtt(log_group, "Arn"), Format=ACCESS_LOG_FORMAT),
            NoValue,
        ),
    )


def invoke_permission(title: str, function: Function, api: RestApi, params: StackParameters):
    """API Gateway may invoke the function, for this API's stage only."""
    return Permission(
        title,
        Action="lambda:InvokeFunction",
        FunctionName=GetAtt(function, "Arn"),
        Principal="apigateway.amazonaws.com",
        SourceArn=Sub(
            "arn:${AWS::Partition}:execute-api:${AWS::Region}:${AWS::AccountId}:${Api}/${Stage}/*",
            Api=Ref(api),
            Stage=Ref(params.stage_name),
        ),
    )


def stage_url(api: RestApi, stage: Stage) -> Sub:
    return Sub(
        "https://${Api}.execute-api.${AWS::Region}.${AWS::URLSuffix}/${Stage}/",
        Api=Ref(api),
        Stage=Ref(stage),
    )


def outputs(api: RestApi, stage: Stage, table: Table, counter: Function) -> list[Output]:
    base_url = stage_url(api, stage)
    return [
        Output("ApiUrl", Description="Base URL of the API", Value=base_url),
        Output(
            "StatsUrl",
            Description="Read-only stats: JSON, or a dashboard in a browser",
            Value=Sub("${Base}${StatsPath}", Base=base_url),
        ),
        Output("TableName", Description="DynamoDB counter table", Value=Ref(table)),
        Output("CounterFunctionName", Description="Counting Lambda function", Value=Ref(counter)),
    ]
