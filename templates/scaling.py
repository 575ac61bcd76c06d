"""Target-tracking auto scaling of the counter table, for BillingMode PROVISIONED only."""

from troposphere import Ref, Sub
from troposphere.applicationautoscaling import (
    PredefinedMetricSpecification,
    ScalableTarget,
    ScalingPolicy,
    TargetTrackingScalingPolicyConfiguration,
)
from troposphere.dynamodb import Table

from templates.parameters import StackParameters

# Application Auto Scaling creates this service-linked role on first use (recommended by
# the ScalableTarget RoleARN documentation over a role of our own).
SERVICE_LINKED_ROLE = (
    "arn:${AWS::Partition}:iam::${AWS::AccountId}:role/aws-service-role/"
    "dynamodb.application-autoscaling.amazonaws.com/"
    "AWSServiceRoleForApplicationAutoScaling_DynamoDBTable"
)
DIMENSIONS = {
    "Read": ("ReadCapacityUnits", "DynamoDBReadCapacityUtilization"),
    "Write": ("WriteCapacityUnits", "DynamoDBWriteCapacityUtilization"),
}


def table_scaling(
    kind: str, table: Table, params: StackParameters
) -> tuple[ScalableTarget, ScalingPolicy]:
    """A scalable target (min = the table's own capacity) and its target-tracking policy."""
    dimension, metric = DIMENSIONS[kind]
    minimum, maximum = {
        "Read": (params.read_capacity, params.max_read_capacity),
        "Write": (params.write_capacity, params.max_write_capacity),
    }[kind]
    target = ScalableTarget(
        f"Table{kind}ScalableTarget",
        Condition=params.is_provisioned,
        ServiceNamespace="dynamodb",
        ScalableDimension=f"dynamodb:table:{dimension}",
        ResourceId=Sub("table/${Table}", Table=Ref(table)),
        MinCapacity=Ref(minimum),
        MaxCapacity=Ref(maximum),
        RoleARN=Sub(SERVICE_LINKED_ROLE),
    )
    policy = ScalingPolicy(
        f"Table{kind}ScalingPolicy",
        Condition=params.is_provisioned,
        PolicyName=Sub(f"${{AWS::StackName}}-table-{kind.lower()}"),
        PolicyType="TargetTrackingScaling",
        ScalingTargetId=Ref(target),
        TargetTrackingScalingPolicyConfiguration=TargetTrackingScalingPolicyConfiguration(
            TargetValue=Ref(params.target_utilization),
            PredefinedMetricSpecification=PredefinedMetricSpecification(
                PredefinedMetricType=metric
            ),
        ),
    )
    return target, policy
