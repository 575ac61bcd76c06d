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
    stats_path: Parameter
    allowed_origin: Parameter
    rate_limit: Parameter
    rate_limit_window: Parameter
    max_read_capacity: Parameter
    max_write_capacity: Parameter
    target_utilization: Parameter
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
    stats_path = template.add_parameter(
        Parameter(
            "StatsPath",
            Type="String",
            Default="_stats",
            AllowedPattern="^[A-Za-z0-9._-]{1,64}$",
            ConstraintDescription="one path segment: letters, digits, '.', '_', '-'",
            Description="Path segment of the read-only stats endpoint (GET /<StatsPath>); "
            "requests to it and under it are never counted.",
        )
    )
    allowed_origin = template.add_parameter(
        Parameter(
            "AllowedOrigin",
            Type="String",
            Default="",
            AllowedPattern="^(|\\*|https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?)$",
            ConstraintDescription="empty, '*', or an origin such as https://example.com",
            Description="Origin allowed to read the stats endpoint from a browser (CORS); "
            "empty sends no CORS headers.",
        )
    )
    rate_limit = template.add_parameter(
        Parameter(
            "RateLimit",
            Type="Number",
            Default=0,
            MinValue=0,
            Description="Counted hits allowed per route per window; more get 429. 0 turns "
            "rate limiting off.",
        )
    )
    rate_limit_window = template.add_parameter(
        Parameter(
            "RateLimitWindowSeconds",
            Type="Number",
            Default=60,
            MinValue=1,
            MaxValue=86400,
            Description="Length of the fixed rate-limit window, aligned to the epoch.",
        )
    )
    max_read_capacity = template.add_parameter(
        Parameter(
            "MaxReadCapacityUnits",
            Type="Number",
            Default=100,
            MinValue=1,
            Description="PROVISIONED only: auto scaling raises reads up to this "
            "(ReadCapacityUnits is the minimum).",
        )
    )
    max_write_capacity = template.add_parameter(
        Parameter(
            "MaxWriteCapacityUnits",
            Type="Number",
            Default=100,
            MinValue=1,
            Description="PROVISIONED only: auto scaling raises writes up to this "
            "(WriteCapacityUnits is the minimum).",
        )
    )
    target_utilization = template.add_parameter(
        Parameter(
            "TargetUtilizationPercent",
            Type="Number",
            Default=70,
            MinValue=20,
            MaxValue=90,
            Description="PROVISIONED only: consumed/provisioned capacity that auto scaling "
            "keeps the table at.",
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
        stats_path=stats_path,
        allowed_origin=allowed_origin,
        rate_limit=rate_limit,
        rate_limit_window=rate_limit_window,
        max_read_capacity=max_read_capacity,
        max_write_capacity=max_write_capacity,
        target_utilization=target_utilization,
        is_provisioned=is_provisioned,
    )
