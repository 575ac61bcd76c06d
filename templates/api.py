"""The REST API: every path and method of it goes to one Lambda proxy integration."""

import hashlib
import json

from troposphere import GetAtt, Ref, Sub
from troposphere.apigateway import (
    Deployment,
    EndpointConfiguration,
    Integration,
    Method,
    Resource,
    RestApi,
    Stage,
)
from troposphere.awslambda import Function, Permission

from templates.parameters import StackParameters


def rest_api(title: str = "CounterApi") -> RestApi:
    return RestApi(
        title,
        Name=Sub("${AWS::StackName}"),
        Description="Route Counter: counts every request, per route.",
        EndpointConfiguration=EndpointConfiguration(Types=["REGIONAL"]),
    )


def path_resource(title: str, api: RestApi, path_part: str, parent=None) -> Resource:
    """A path part under the API root (or under parent)."""
    parent_id = Ref(parent) if parent is not None else GetAtt(api, "RootResourceId")
    return Resource(title, RestApiId=Ref(api), ParentId=parent_id, PathPart=path_part)


def proxy_method(title: str, api: RestApi, resource, function: Function, http_method="ANY"):
    """A method whose requests reach the function as REST proxy events (payload 1.0)."""
    resource_id = GetAtt(api, "RootResourceId") if resource is None else Ref(resource)
    return Method(
        title,
        RestApiId=Ref(api),
        ResourceId=resource_id,
        HttpMethod=http_method,
        AuthorizationType="NONE",
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


def api_deployment(api: RestApi, methods: list[Method], resources: list[Resource]) -> Deployment:
    """A deployment whose logical id hashes the API's shape.

    CloudFormation never redeploys an unchanged Deployment resource, so a change to any
    method or integration must change the logical id to reach the stage.
    """
    shape = [r.to_dict() for r in resources] + [m.to_dict() for m in methods]
    digest = hashlib.sha256(json.dumps(shape, sort_keys=True).encode()).hexdigest()[:12]
    return Deployment(
        f"ApiDeployment{digest}",
        RestApiId=Ref(api),
        Description=f"API shape {digest}",
        DependsOn=[m.title for m in methods],
    )


def api_stage(api: RestApi, deployment: Deployment, params: StackParameters, **extra) -> Stage:
    return Stage(
        "ApiStage",
        RestApiId=Ref(api),
        DeploymentId=Ref(deployment),
        StageName=Ref(params.stage_name),
        **extra,
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
