"""The IAM policy of whoever runs ./deploy.sh: `python -m deployer.policy [options]`.

Two sources, kept here and checked by tests/unit/test_deployer_policy.py:

- RESOURCE_ACTIONS: for each resource type of template.json, the actions CloudFormation
  makes with the caller's credentials to create, read, update and delete it (no service
  role), as this template's properties need them: each one is in the type's handler
  permissions as AWS publishes them (the CloudFormation registry schemas cfn-lint ships);
- DEPLOYER_ACTIONS: the calls deployer/ itself makes (checked against every call recorded
  while the deploy tests run against moto).

Each action is granted on the ARNs of this stack's resources where the service authorizes it
by resource: names CloudFormation generates start with the stack's name (STACK-CounterTable-
ABC123), the deployment bucket is named by account and region. The few actions that take
no resource but `*` are UNSCOPED, each with its reason. docs/deployer-policy.json is this
policy for any account and region (`*`); pass --account and --region for the exact one.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass

from awacs import (
    apigateway,
    application_autoscaling,
    awslambda,
    cloudformation,
    cloudwatch,
    dynamodb,
    iam,
    kms,
    logs,
    s3,
    secretsmanager,
    sns,
    sqs,
    sts,
)
from awacs.aws import Action, Allow, Condition, PolicyDocument, Statement, StringEquals, StringLike

from deployer.options import DEFAULT_STACK
from deployer.s3 import KEY_PREFIX

# --- what CloudFormation does with the caller's credentials, per resource type ----------------

PHASES = ("create", "read", "update", "delete")

RESOURCE_ACTIONS: dict[str, dict[str, list[Action]]] = {
    "AWS::ApiGateway::Account": {
        "create": [apigateway.PATCH, iam.GetRole, iam.PassRole],
        "read": [apigateway.GET],
        "update": [apigateway.PATCH, iam.GetRole, iam.PassRole],
        "delete": [apigateway.GET],
    },
    "AWS::ApiGateway::Deployment": {
        "create": [apigateway.GET, apigateway.PATCH, apigateway.POST, apigateway.PUT],
        "read": [apigateway.GET],
        "update": [apigateway.DELETE, apigateway.GET, apigateway.PATCH, apigateway.PUT],
        "delete": [apigateway.DELETE, apigateway.GET],
    },
    "AWS::ApiGateway::Method": {
        "create": [apigateway.GET, apigateway.PUT],
        "read": [apigateway.GET],
        "update": [apigateway.DELETE, apigateway.GET, apigateway.PUT],
        "delete": [apigateway.DELETE],
    },
    "AWS::ApiGateway::Resource": {
        "create": [apigateway.POST],
        "read": [apigateway.GET],
        "update": [apigateway.GET, apigateway.PATCH],
        "delete": [apigateway.DELETE],
    },
    "AWS::ApiGateway::RestApi": {
        "create": [apigateway.GET, apigateway.PATCH, apigateway.POST, apigateway.PUT],
        "read": [apigateway.GET],
        "update": [apigateway.DELETE, apigateway.GET, apigateway.PATCH, apigateway.PUT],
        "delete": [apigateway.DELETE],
    },
    "AWS::ApiGateway::Stage": {
        "create": [apigateway.GET, apigateway.PATCH, apigateway.POST, apigateway.PUT],
        "read": [apigateway.GET],
        "update": [apigateway.DELETE, apigateway.GET, apigateway.PATCH, apigateway.PUT],
        "delete": [apigateway.DELETE],
    },
    # ClientIdentity apikey: the stage's usage plan (templates/clients.py).
    "AWS::ApiGateway::UsagePlan": {
        "create": [apigateway.GET, apigateway.POST, apigateway.PUT],
        "read": [apigateway.GET],
        "update": [apigateway.DELETE, apigateway.GET, apigateway.PATCH, apigateway.PUT],
        "delete": [apigateway.DELETE, apigateway.GET, apigateway.PATCH],
    },
    # BillingMode PROVISIONED: target tracking on the counter table's capacity.
    "AWS::ApplicationAutoScaling::ScalableTarget": {
        "create": [
            application_autoscaling.DescribeScalableTargets,
            application_autoscaling.RegisterScalableTarget,
            application_autoscaling.ListTagsForResource,
            application_autoscaling.TagResource,
            iam.CreateServiceLinkedRole,
            iam.PassRole,
            cloudwatch.DescribeAlarms,
            cloudwatch.PutMetricAlarm,
            cloudwatch.DeleteAlarms,
        ],
        "read": [
            application_autoscaling.DescribeScalableTargets,
            application_autoscaling.ListTagsForResource,
        ],
        "update": [
            application_autoscaling.DescribeScalableTargets,
            application_autoscaling.RegisterScalableTarget,
            application_autoscaling.ListTagsForResource,
            application_autoscaling.TagResource,
            application_autoscaling.UntagResource,
            cloudwatch.DescribeAlarms,
            cloudwatch.PutMetricAlarm,
            cloudwatch.DeleteAlarms,
        ],
        "delete": [application_autoscaling.DeregisterScalableTarget],
    },
    "AWS::ApplicationAutoScaling::ScalingPolicy": {
        "create": [
            application_autoscaling.DescribeScalingPolicies,
            application_autoscaling.PutScalingPolicy,
            cloudwatch.GetMetricData,
        ],
        "read": [application_autoscaling.DescribeScalingPolicies],
        "update": [
            application_autoscaling.DescribeScalingPolicies,
            application_autoscaling.PutScalingPolicy,
            cloudwatch.GetMetricData,
        ],
        "delete": [
            application_autoscaling.DeleteScalingPolicy,
            application_autoscaling.DescribeScalingPolicies,
        ],
    },
    "AWS::CloudWatch::Alarm": {
        "create": [
            cloudwatch.DescribeAlarms,
            cloudwatch.ListTagsForResource,
            cloudwatch.PutMetricAlarm,
            cloudwatch.TagResource,
        ],
        "read": [cloudwatch.DescribeAlarms, cloudwatch.ListTagsForResource],
        "update": [
            cloudwatch.DescribeAlarms,
            cloudwatch.ListTagsForResource,
            cloudwatch.PutMetricAlarm,
            cloudwatch.TagResource,
            cloudwatch.UntagResource,
        ],
        "delete": [cloudwatch.DeleteAlarms, cloudwatch.DescribeAlarms],
    },
    "AWS::CloudWatch::CompositeAlarm": {
        "create": [
            cloudwatch.DescribeAlarms,
            cloudwatch.ListTagsForResource,
            cloudwatch.PutCompositeAlarm,
            cloudwatch.TagResource,
        ],
        "read": [cloudwatch.DescribeAlarms, cloudwatch.ListTagsForResource],
        "update": [
            cloudwatch.DescribeAlarms,
            cloudwatch.ListTagsForResource,
            cloudwatch.PutCompositeAlarm,
            cloudwatch.TagResource,
            cloudwatch.UntagResource,
        ],
        "delete": [cloudwatch.DeleteAlarms, cloudwatch.DescribeAlarms],
    },
    "AWS::CloudWatch::Dashboard": {
        "create": [cloudwatch.GetDashboard, cloudwatch.PutDashboard, cloudwatch.TagResource],
        "read": [cloudwatch.GetDashboard, cloudwatch.ListTagsForResource],
        "update": [
            cloudwatch.ListTagsForResource,
            cloudwatch.PutDashboard,
            cloudwatch.TagResource,
            cloudwatch.UntagResource,
        ],
        "delete": [cloudwatch.DeleteDashboards, cloudwatch.GetDashboard],
    },
    # Streams, on-demand or provisioned, SSE with the AWS owned key or KmsKeyArn's, PITR,
    # deletion protection; no replicas, imports, Kinesis destinations or resource policies.
    "AWS::DynamoDB::Table": {
        "create": [
            dynamodb.CreateTable,
            dynamodb.DescribeTable,
            dynamodb.DescribeContinuousBackups,
            dynamodb.UpdateContinuousBackups,
            dynamodb.DescribeTimeToLive,
            dynamodb.ListTagsOfResource,
            dynamodb.TagResource,
            kms.CreateGrant,
            kms.DescribeKey,
        ],
        "read": [
            dynamodb.DescribeTable,
            dynamodb.DescribeContinuousBackups,
            dynamodb.DescribeContributorInsights,
            dynamodb.DescribeKinesisStreamingDestination,
            dynamodb.DescribeTimeToLive,
            dynamodb.GetResourcePolicy,
            dynamodb.ListTagsOfResource,
        ],
        "update": [
            dynamodb.UpdateTable,
            dynamodb.DescribeTable,
            dynamodb.DescribeContinuousBackups,
            dynamodb.UpdateContinuousBackups,
            dynamodb.DescribeTimeToLive,
            dynamodb.ListTagsOfResource,
            dynamodb.TagResource,
            dynamodb.UntagResource,
            kms.CreateGrant,
            kms.DescribeKey,
        ],
        "delete": [dynamodb.DeleteTable, dynamodb.DescribeTable],
    },
    "AWS::IAM::Policy": {
        "create": [iam.GetRolePolicy, iam.PutRolePolicy],
        "read": [],  # not a registry resource: CloudFormation reads nothing back
        "update": [iam.DeleteRolePolicy, iam.PutRolePolicy],
        "delete": [iam.DeleteRolePolicy],
    },
    "AWS::IAM::Role": {
        "create": [
            iam.CreateRole,
            iam.GetRole,
            iam.GetRolePolicy,
            iam.PutRolePolicy,
            iam.AttachRolePolicy,
            iam.TagRole,
        ],
        "read": [
            iam.GetRole,
            iam.GetRolePolicy,
            iam.ListAttachedRolePolicies,
            iam.ListRolePolicies,
        ],
        "update": [
            iam.AttachRolePolicy,
            iam.DetachRolePolicy,
            iam.PutRolePolicy,
            iam.DeleteRolePolicy,
            iam.TagRole,
            iam.UntagRole,
            iam.UpdateAssumeRolePolicy,
            iam.UpdateRole,
            iam.UpdateRoleDescription,
        ],
        "delete": [
            iam.DeleteRole,
            iam.DeleteRolePolicy,
            iam.DetachRolePolicy,
            iam.GetRole,
            iam.ListAttachedRolePolicies,
            iam.ListRolePolicies,
        ],
    },
    "AWS::Lambda::EventSourceMapping": {
        "create": [
            awslambda.CreateEventSourceMapping,
            awslambda.GetEventSourceMapping,
            awslambda.TagResource,
        ],
        "read": [awslambda.GetEventSourceMapping, awslambda.ListTags],
        "update": [
            awslambda.GetEventSourceMapping,
            awslambda.UpdateEventSourceMapping,
            awslambda.TagResource,
            awslambda.UntagResource,
        ],
        "delete": [awslambda.DeleteEventSourceMapping, awslambda.GetEventSourceMapping],
    },
    # Code inline (ZipFile), no VPC, layers, code signing or provisioned concurrency;
    # ReservedConcurrency; KmsKeyArn encrypts its environment.
    "AWS::Lambda::Function": {
        "create": [
            awslambda.CreateFunction,
            awslambda.GetFunction,
            awslambda.GetFunctionCodeSigningConfig,
            awslambda.GetFunctionRecursionConfig,
            awslambda.GetRuntimeManagementConfig,
            awslambda.PutFunctionConcurrency,
            awslambda.TagResource,
            iam.PassRole,
            kms.CreateGrant,
            kms.DescribeKey,
            kms.Encrypt,
        ],
        "read": [
            awslambda.GetFunction,
            awslambda.GetFunctionCodeSigningConfig,
            awslambda.GetFunctionRecursionConfig,
            awslambda.GetFunctionScalingConfig,
            awslambda.GetRuntimeManagementConfig,
        ],
        "update": [
            awslambda.GetFunction,
            awslambda.GetFunctionCodeSigningConfig,
            awslambda.GetFunctionRecursionConfig,
            awslambda.GetRuntimeManagementConfig,
            awslambda.UpdateFunctionCode,
            awslambda.UpdateFunctionConfiguration,
            awslambda.PutFunctionConcurrency,
            awslambda.DeleteFunctionConcurrency,
            awslambda.TagResource,
            awslambda.UntagResource,
            iam.PassRole,
            kms.CreateGrant,
            kms.DescribeKey,
        ],
        "delete": [awslambda.DeleteFunction, awslambda.GetFunction],
    },
    "AWS::Lambda::Permission": {
        "create": [awslambda.AddPermission],
        "read": [awslambda.GetPolicy],
        "update": [],  # every property change replaces it: created, then the old deleted
        "delete": [awslambda.RemovePermission],
    },
    "AWS::Logs::LogGroup": {
        "create": [
            logs.CreateLogGroup,
            logs.DescribeLogGroups,
            logs.PutRetentionPolicy,
            logs.TagResource,
        ],
        "read": [logs.DescribeLogGroups, logs.ListTagsForResource],
        "update": [
            logs.DescribeLogGroups,
            logs.PutRetentionPolicy,
            logs.DeleteRetentionPolicy,
            logs.AssociateKmsKey,
            logs.DisassociateKmsKey,
            logs.ListTagsForResource,
            logs.TagResource,
            logs.UntagResource,
        ],
        "delete": [logs.DeleteLogGroup, logs.DescribeLogGroups],
    },
    "AWS::Logs::MetricFilter": {
        "create": [logs.DescribeMetricFilters, logs.PutMetricFilter],
        "read": [logs.DescribeMetricFilters],
        "update": [logs.DescribeMetricFilters, logs.PutMetricFilter],
        "delete": [logs.DeleteMetricFilter],
    },
    "AWS::SNS::Subscription": {
        "create": [sns.Subscribe],
        "read": [sns.GetSubscriptionAttributes],
        "update": [sns.SetSubscriptionAttributes],
        "delete": [sns.GetSubscriptionAttributes, sns.Unsubscribe],
    },
    "AWS::SNS::Topic": {
        "create": [sns.CreateTopic, sns.GetTopicAttributes, sns.TagResource],
        "read": [
            sns.GetTopicAttributes,
            sns.ListSubscriptionsByTopic,
            sns.ListTagsForResource,
            sns.GetDataProtectionPolicy,
        ],
        "update": [
            sns.GetTopicAttributes,
            sns.SetTopicAttributes,
            sns.ListSubscriptionsByTopic,
            sns.ListTagsForResource,
            sns.TagResource,
            sns.UntagResource,
        ],
        "delete": [sns.DeleteTopic, sns.GetTopicAttributes],
    },
    "AWS::SQS::Queue": {
        "create": [sqs.CreateQueue, sqs.GetQueueAttributes, sqs.GetQueueUrl, sqs.TagQueue],
        "read": [sqs.GetQueueAttributes, sqs.ListQueueTags],
        "update": [
            sqs.GetQueueAttributes,
            sqs.SetQueueAttributes,
            sqs.ListQueueTags,
            sqs.TagQueue,
            sqs.UntagQueue,
        ],
        "delete": [sqs.DeleteQueue, sqs.GetQueueAttributes],
    },
    # PrivateStats: the token, generated (GenerateSecretString).
    "AWS::SecretsManager::Secret": {
        "create": [
            secretsmanager.CreateSecret,
            secretsmanager.DescribeSecret,
            secretsmanager.GetRandomPassword,
            secretsmanager.TagResource,
        ],
        "read": [secretsmanager.DescribeSecret, secretsmanager.GetSecretValue],
        "update": [
            secretsmanager.GetRandomPassword,
            secretsmanager.GetSecretValue,
            secretsmanager.UpdateSecret,
            secretsmanager.TagResource,
            secretsmanager.UntagResource,
        ],
        "delete": [secretsmanager.DeleteSecret, secretsmanager.DescribeSecret],
    },
}

# --- what deployer/ calls itself -------------------------------------------------------------

DEPLOYER_ACTIONS: list[Action] = [
    sts.GetCallerIdentity,  # needs no permission: AWS answers it for any credentials
    cloudformation.DescribeStacks,
    cloudformation.DescribeStackEvents,
    cloudformation.DescribeStackResource,
    cloudformation.DescribeStackResources,
    cloudformation.GetTemplate,
    cloudformation.CreateChangeSet,
    cloudformation.DescribeChangeSet,
    cloudformation.ExecuteChangeSet,
    cloudformation.DeleteChangeSet,
    cloudformation.SetStackPolicy,
    cloudformation.DeleteStack,  # --delete, and the empty stack of a dry run's create
    # the deployment bucket (deployer/s3.py PERMISSIONS) and the template in it, which
    # CloudFormation reads with the caller's credentials
    s3.ListBucket,
    s3.CreateBucket,
    s3.GetBucketVersioning,
    s3.PutBucketPublicAccessBlock,
    s3.PutEncryptionConfiguration,
    s3.PutBucketPolicy,
    s3.PutLifecycleConfiguration,
    s3.PutBucketVersioning,
    s3.PutObject,
    s3.GetObject,
    apigateway.GET,  # the account's CloudWatch role; a stage and its API's deployments
    apigateway.POST,  # a new deployment after an update that replaced routes; keys create
    apigateway.PATCH,  # keys revoke (the key disabled)
    apigateway.DELETE,  # keys create: a key the usage plan refused is deleted again
    dynamodb.DescribeTable,  # BillingMode given on an update; --delete's kept tables
    awslambda.GetAccountSettings,  # ReservedConcurrency against the region's concurrency
    awslambda.GetFunctionConcurrency,
    secretsmanager.GetSecretValue,  # --stats-token
]

# Permissions no policy needs to grant (AWS's own words in each API reference).
NEEDS_NO_PERMISSION = {
    sts.GetCallerIdentity.JSONrepr(): "No permissions are required to perform this operation",
}

# Actions IAM authorizes on no resource, so `*` is the only Resource they take.
UNSCOPED: dict[str, str] = {
    application_autoscaling.DescribeScalableTargets.JSONrepr(): "lists; no resource type",
    application_autoscaling.DescribeScalingPolicies.JSONrepr(): "lists; no resource type",
    application_autoscaling.PutScalingPolicy.JSONrepr(): (
        "the scalable target's ARN carries an id AWS generates"
    ),
    application_autoscaling.DeleteScalingPolicy.JSONrepr(): "as PutScalingPolicy",
    application_autoscaling.RegisterScalableTarget.JSONrepr(): "as PutScalingPolicy",
    application_autoscaling.DeregisterScalableTarget.JSONrepr(): "as PutScalingPolicy",
    application_autoscaling.ListTagsForResource.JSONrepr(): "as PutScalingPolicy",
    application_autoscaling.TagResource.JSONrepr(): "as PutScalingPolicy",
    application_autoscaling.UntagResource.JSONrepr(): "as PutScalingPolicy",
    cloudwatch.GetMetricData.JSONrepr(): "takes no resource",
    awslambda.GetAccountSettings.JSONrepr(): "account-wide; takes no resource",
    secretsmanager.GetRandomPassword.JSONrepr(): "takes no resource",
    logs.DescribeLogGroups.JSONrepr(): "lists the region's log groups; takes no resource",
}


@dataclass(frozen=True)
class Scope:
    """Where the stack lives: `*` for any account or region."""

    partition: str = "aws"
    region: str = "*"
    account: str = "*"
    stack: str = DEFAULT_STACK
    bucket: str = ""  # --s3-bucket; else the managed bucket

    def arn(self, service: str, resource: str, region: str | None = None) -> str:
        where = self.region if region is None else region
        return f"arn:{self.partition}:{service}:{where}:{self.account}:{resource}"

    @property
    def named(self) -> str:
        """What CloudFormation names the stack's resources: STACK-LogicalId-RANDOM."""
        return f"{self.stack}-*"

    @property
    def buckets(self) -> list[str]:
        managed = f"route-counter-deploy-{self.account}-{self.region}".replace("*-*", "*")
        return [self.bucket] if self.bucket else [managed]


def resources_of(scope: Scope) -> dict[str, list[str]]:
    """Each service's resources of this stack, as IAM names them."""
    named = scope.named
    return {
        "cloudformation": [
            scope.arn("cloudformation", f"stack/{scope.stack}/*"),
            scope.arn("cloudformation", "changeSet/deploy-*/*"),
            scope.arn("cloudformation", "changeSet/protect-*/*"),
        ],
        "apigateway": [
            f"arn:{scope.partition}:apigateway:{scope.region}::/restapis*",  # and /restapis/*
            f"arn:{scope.partition}:apigateway:{scope.region}::/account",
            f"arn:{scope.partition}:apigateway:{scope.region}::/tags/*",
            # the usage plan and its keys (ClientIdentity apikey, ./deploy.sh keys): their
            # ids are API Gateway's, not named after the stack, so no narrower pattern exists
            f"arn:{scope.partition}:apigateway:{scope.region}::/usageplans*",
            f"arn:{scope.partition}:apigateway:{scope.region}::/apikeys*",
        ],
        "dynamodb": [
            scope.arn("dynamodb", f"table/{named}"),
            scope.arn("dynamodb", f"table/{named}/stream/*"),
        ],
        "lambda": [scope.arn("lambda", f"function:{named}")],
        "iam": [f"arn:{scope.partition}:iam::{scope.account}:role/{named}"],
        "logs": [
            # named ends in *, which IAM matches across ":": the groups and their streams
            scope.arn("logs", f"log-group:{named}"),
        ],
        "sns": [scope.arn("sns", named)],
        "sqs": [scope.arn("sqs", named)],
        "cloudwatch": [
            scope.arn("cloudwatch", f"alarm:{named}"),
            # what target tracking names the alarms it makes on the provisioned table
            scope.arn("cloudwatch", f"alarm:TargetTracking-table/{named}"),
            f"arn:{scope.partition}:cloudwatch::{scope.account}:dashboard/{named}",
        ],
        # CloudFormation names a secret without Name "LogicalId-RANDOM", with or without
        # the stack's name first: both match.
        "secretsmanager": [scope.arn("secretsmanager", "secret:*StatsTokenSecret*")],
        "s3": [
            *(f"arn:{scope.partition}:s3:::{bucket}" for bucket in scope.buckets),
            *(f"arn:{scope.partition}:s3:::{bucket}/{KEY_PREFIX}/*" for bucket in scope.buckets),
        ],
        # KmsKeyArn: the key you give; any key of the account unless --kms-key-arn says which
        "kms": [scope.arn("kms", "key/*")],
    }


def all_actions() -> list[Action]:
    """Every action the policy grants, each once, in a stable order."""
    found: dict[str, Action] = {}
    for phases in RESOURCE_ACTIONS.values():
        for actions in phases.values():
            for action in actions:
                found.setdefault(action.JSONrepr(), action)
    for action in DEPLOYER_ACTIONS:
        found.setdefault(action.JSONrepr(), action)
    return [found[name] for name in sorted(found)]


# The roles the stack passes: its functions' (Lambda) and API Gateway's CloudWatch role
# (ApiGatewayAccountRole=create). The service-linked role of DynamoDB auto scaling (the
# scalable targets' RoleARN, BillingMode PROVISIONED) is created, never passed: AWS needs no
# iam:PassRole for a service-linked role.
AUTO_SCALING_SERVICE = "dynamodb.application-autoscaling.amazonaws.com"
PASSED_TO = ["lambda.amazonaws.com", "apigateway.amazonaws.com"]

# KmsKeyArn's key is used by the services the stack's resources live in, on the caller's
# behalf (a table's grant, a function's environment): only through them.
KMS_THROUGH_SERVICES = Condition(
    StringLike("kms:ViaService", [f"{s}.*.amazonaws.com" for s in ("dynamodb", "lambda")])
)

# Actions granted with a condition, in a statement of their own.
PASS_ROLE = iam.PassRole.JSONrepr()
SERVICE_LINKED_ROLE = iam.CreateServiceLinkedRole.JSONrepr()
EVENT_SOURCE_MAPPINGS = {
    a.JSONrepr()
    for a in RESOURCE_ACTIONS["AWS::Lambda::EventSourceMapping"]["create"]
    + RESOURCE_ACTIONS["AWS::Lambda::EventSourceMapping"]["update"]
    + RESOURCE_ACTIONS["AWS::Lambda::EventSourceMapping"]["delete"]
    if a.JSONrepr() != awslambda.TagResource.JSONrepr()
    and a.JSONrepr() != awslambda.UntagResource.JSONrepr()
}


# IAM takes at most 6,144 characters (whitespace aside) in a managed policy; the exact list
# is over that. Read-only actions of a service go in one wildcard per verb, granted on this
# stack's resources only: they read what the stack made (a Get*/List*/Describe* that writes
# does not exist).
READ_ONLY_VERBS = ("Describe", "Get", "List")
MANAGED_POLICY_LIMIT = 6_144


def read_only_as_wildcards(actions: list[Action]) -> list[Action]:
    """The actions, each read-only one folded into its service's Describe*, Get* or List*."""
    kept: dict[str, Action] = {}
    for action in actions:
        prefix, name = action.JSONrepr().split(":")
        verb = next((v for v in READ_ONLY_VERBS if name.startswith(v)), None)
        folded = Action(prefix, f"{verb}*") if verb else action
        kept.setdefault(folded.JSONrepr(), folded)
    return [kept[name] for name in sorted(kept)]


def unscoped_actions() -> list[Action]:
    """The UNSCOPED actions; a service's read-only ones folded into wildcards only when every
    action granted of that service is unscoped (a wildcard on `*` must not reach further)."""
    granted = all_actions()
    unscoped = [a for a in granted if a.JSONrepr() in UNSCOPED]
    services = {a.JSONrepr().split(":")[0] for a in unscoped}
    whole = {
        service
        for service in services
        if all(a.JSONrepr() in UNSCOPED for a in granted if a.JSONrepr().startswith(service + ":"))
    }
    folded = read_only_as_wildcards([a for a in unscoped if a.JSONrepr().split(":")[0] in whole])
    kept = [a for a in unscoped if a.JSONrepr().split(":")[0] not in whole]
    return sorted([*folded, *kept], key=lambda a: a.JSONrepr())


def sid(service: str) -> str:
    return "".join(part.capitalize() for part in service.split("-"))


def deployer_policy(scope: Scope | None = None, kms_key_arn: str = "") -> PolicyDocument:
    """The policy: per service, its actions on this stack's resources; then what needs a
    condition or takes only `*`."""
    scope = scope or Scope()
    resources = resources_of(scope)
    if kms_key_arn:
        resources["kms"] = [kms_key_arn]
    auto_scaling_role = (
        f"arn:{scope.partition}:iam::{scope.account}:role/aws-service-role/"
        f"{AUTO_SCALING_SERVICE}/AWSServiceRoleForApplicationAutoScaling_DynamoDBTable"
    )
    special = {PASS_ROLE, SERVICE_LINKED_ROLE, *EVENT_SOURCE_MAPPINGS, *UNSCOPED}
    by_service: dict[str, list[Action]] = {}
    for action in all_actions():
        name = action.JSONrepr()
        if name in NEEDS_NO_PERMISSION or name in special:
            continue
        by_service.setdefault(name.split(":")[0], []).append(action)
    statements = [
        Statement(
            Sid=sid(service),
            Effect=Allow,
            Action=read_only_as_wildcards(actions),
            Resource=resources[service],
            **({"Condition": KMS_THROUGH_SERVICES} if service == "kms" else {}),
        )
        for service, actions in sorted(by_service.items())
    ]
    statements += [
        Statement(
            Sid="PassRoles",
            Effect=Allow,
            Action=[iam.PassRole],
            Resource=resources["iam"],
            Condition=Condition(StringEquals("iam:PassedToService", PASSED_TO)),
        ),
        Statement(
            Sid="AutoScalingRole",
            Effect=Allow,
            Action=[iam.CreateServiceLinkedRole],
            Resource=[auto_scaling_role],
            Condition=Condition(StringEquals("iam:AWSServiceName", AUTO_SCALING_SERVICE)),
        ),
        Statement(
            Sid="StreamMappings",  # their ids are UUIDs AWS generates: by function
            Effect=Allow,
            Action=[a for a in all_actions() if a.JSONrepr() in EVENT_SOURCE_MAPPINGS],
            Resource=["*"],
            Condition=Condition(StringLike("lambda:FunctionArn", resources["lambda"])),
        ),
        Statement(
            Sid="NoResource",  # reasons: UNSCOPED, docs/deploying.md
            Effect=Allow,
            Action=unscoped_actions(),
            Resource=["*"],
        ),
    ]
    return PolicyDocument(Version="2012-10-17", Statement=statements)


def render(policy: PolicyDocument) -> str:
    return json.dumps(json.loads(policy.to_json()), indent=2) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m deployer.policy",
        description="Print the IAM policy of whoever runs ./deploy.sh (docs/deploying.md).",
    )
    parser.add_argument("--account", default="*", help="account id (default: any)")
    parser.add_argument("--region", default="*", help="region (default: any)")
    parser.add_argument("--partition", default="aws", help="partition (default: aws)")
    parser.add_argument("--stack-name", default=DEFAULT_STACK, help="stack name")
    parser.add_argument("--s3-bucket", default="", help="the --s3-bucket you deploy with")
    parser.add_argument("--kms-key-arn", default="", help="the KmsKeyArn you deploy with")
    args = parser.parse_args(argv)
    scope = Scope(args.partition, args.region, args.account, args.stack_name, args.s3_bucket)
    print(render(deployer_policy(scope, args.kms_key_arn)), end="")


if __name__ == "__main__":
    main()
