"""Deploy-time parameters and the conditions derived from them."""

from dataclasses import dataclass

from troposphere import Equals, Parameter, Ref, Template

LOG_RETENTION_DAYS = [1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096]


@dataclass(frozen=True)
class StackParameters:
    billing_mode: Parameter
    read_capacity: Parameter
    write_capacity: Parameter
    log_retention_days: Parameter
    stage_name: Parameter
    memory_size: Parameter
    is_provisioned: str  # condition name


def add_parameters(template: Template) -> StackParameters:
    """Declare every parameter a deployer may set; the defaults deploy on a fresh account."""
    billing_mode = template.add_parameter(
        Parameter(
            "BillingMode",
            Type="String",
            Default="PAY_PER_REQUEST",
            AllowedValues=["PAY_PER_REQUEST", "PROVISIONED"],
            Description="DynamoDB capacity mode: on-demand (pay per hit) or provisioned.",
        )
    )
    read_capacity = template.add_parameter(
        Parameter(
            "ReadCapacityUnits",
            Type="Number",
            Default=5,
            MinValue=1,
            Description="Table read capacity units, used only when BillingMode is PROVISIONED.",
        )
    )
    write_capacity = template.add_parameter(
        Parameter(
            "WriteCapacityUnits",
            Type="Number",
            Default=5,
            MinValue=1,
            Description="Table write capacity units, used only when BillingMode is PROVISIONED.",
        )
    )
    log_retention_days = template.add_parameter(
        Parameter(
            "LogRetentionDays",
            Type="Number",
            Default=30,
            AllowedValues=LOG_RETENTION_DAYS,
            Description="Days to keep the functions' logs.",
        )
    )
    stage_name = template.add_parameter(
        Parameter(
            "StageName",
            Type="String",
            Default="prod",
            AllowedPattern="^[A-Za-z0-9_]{1,128}$",
            ConstraintDescription="letters, digits and underscores, at most 128",
            Description="API Gateway stage name: the first path segment of the API URL.",
        )
    )
    memory_size = template.add_parameter(
        Parameter(
            "FunctionMemorySize",
            Type="Number",
            Default=256,
            MinValue=128,
            MaxValue=10240,
            Description="Memory (MB) of the functions; CPU, and so cold start, scales with it.",
        )
    )
    is_provisioned = "IsProvisioned"
    template.add_condition(is_provisioned, Equals(Ref(billing_mode), "PROVISIONED"))
    return StackParameters(
        billing_mode=billing_mode,
        read_capacity=read_capacity,
        write_capacity=write_capacity,
        log_retention_days=log_retention_days,
        stage_name=stage_name,
        memory_size=memory_size,
        is_provisioned=is_provisioned,
    )
