"""Deploy-time parameters and the conditions derived from them."""

from dataclasses import dataclass

from troposphere import Equals, Not, Or, Parameter, Ref, Template

LOG_RETENTION_DAYS = [1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096]


@dataclass(frozen=True)
class StackParameters:
    billing_mode: Parameter
    read_capacity: Parameter
    write_capacity: Parameter
    log_retention_days: Parameter
    stage_name: Parameter
    memory_size: Parameter
    kms_key_arn: Parameter
    api_gateway_account_role: Parameter
    throttling_rate_limit: Parameter
    throttling_burst_limit: Parameter
    alarm_email: Parameter
    reserved_concurrency: Parameter
    stats_path: Parameter
    allowed_origin: Parameter
    rate_limit: Parameter
    rate_limit_window: Parameter
    max_read_capacity: Parameter
    max_write_capacity: Parameter
    target_utilization: Parameter
    # condition names
    is_provisioned: str
    has_kms_key: str
    creates_api_gateway_role: str
    has_access_logs: str
    has_alarm_email: str
    has_reserved_concurrency: str


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
        **add_production_parameters(template),
    )


def add_production_parameters(template: Template) -> dict:
    """Encryption, access logs, throttling, alarms and the concurrency guard.

    Every default deploys on a fresh account and costs nothing beyond what is used.
    """
    kms_key_arn = template.add_parameter(
        Parameter(
            "KmsKeyArn",
            Type="String",
            Default="",
            AllowedPattern="^(arn:aws[a-z-]*:kms:[a-z0-9-]+:[0-9]{12}:key/[A-Za-z0-9-]+)?$",
            ConstraintDescription="empty, or the ARN of a KMS key (not an alias)",
            Description="Customer managed KMS key for the table, the log groups, the functions' "
            "environment and the alarm topic. Empty: AWS owned/managed encryption.",
        )
    )
    api_gateway_account_role = template.add_parameter(
        Parameter(
            "ApiGatewayAccountRole",
            Type="String",
            Default="create",
            AllowedValues=["create", "existing", "none"],
            Description="API access logs need the region's API Gateway CloudWatch Logs role: "
            "'create' sets one (account-wide setting), 'existing' uses the one already set, "
            "'none' turns access logs off.",
        )
    )
    throttling_rate_limit = template.add_parameter(
        Parameter(
            "ThrottlingRateLimit",
            Type="Number",
            Default=100,
            MinValue=1,
            Description="Steady requests per second the stage accepts before answering 429.",
        )
    )
    throttling_burst_limit = template.add_parameter(
        Parameter(
            "ThrottlingBurstLimit",
            Type="Number",
            Default=200,
            MinValue=1,
            Description="Requests the stage accepts in a burst above the steady rate.",
        )
    )
    alarm_email = template.add_parameter(
        Parameter(
            "AlarmEmail",
            Type="String",
            Default="",
            AllowedPattern="^([^@\\s]+@[^@\\s]+\\.[^@\\s]+)?$",
            ConstraintDescription="empty, or one e-mail address",
            Description="E-mail address subscribed to the alarm topic (confirm the mail AWS "
            "sends). Empty: no subscription.",
        )
    )
    reserved_concurrency = template.add_parameter(
        Parameter(
            "ReservedConcurrency",
            Type="String",
            Default="",
            AllowedPattern="^(0|[1-9][0-9]{0,5})?$",
            ConstraintDescription="empty, or a whole number without leading zeros",
            Description="Concurrent executions reserved for (and capping) each function. "
            "Empty or 0: no reservation (new accounts cannot reserve any).",
        )
    )
    conditions = {
        "has_kms_key": ("HasKmsKey", Not(Equals(Ref(kms_key_arn), ""))),
        "creates_api_gateway_role": (
            "CreatesApiGatewayRole",
            Equals(Ref(api_gateway_account_role), "create"),
        ),
        "has_access_logs": ("HasAccessLogs", Not(Equals(Ref(api_gateway_account_role), "none"))),
        "has_alarm_email": ("HasAlarmEmail", Not(Equals(Ref(alarm_email), ""))),
        "has_reserved_concurrency": (
            "HasReservedConcurrency",
            Not(Or(Equals(Ref(reserved_concurrency), ""), Equals(Ref(reserved_concurrency), "0"))),
        ),
    }
    for name, condition in conditions.values():
        template.add_condition(name, condition)
    return {
        "kms_key_arn": kms_key_arn,
        "api_gateway_account_role": api_gateway_account_role,
        "throttling_rate_limit": throttling_rate_limit,
        "throttling_burst_limit": throttling_burst_limit,
        "alarm_email": alarm_email,
        "reserved_concurrency": reserved_concurrency,
        **{key: name for key, (name, _) in conditions.items()},
    }
