"""Deploy-time parameters and the conditions derived from them, declared one way: a table."""

from dataclasses import dataclass, fields

from troposphere import Equals, Not, Or, Parameter, Ref, Template

LOG_RETENTION_DAYS = [1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096]


@dataclass(frozen=True)
class StackParameters:
    """Every parameter (a troposphere Parameter) and every condition (its name)."""

    billing_mode: Parameter
    read_capacity: Parameter
    write_capacity: Parameter
    max_read_capacity: Parameter
    max_write_capacity: Parameter
    target_utilization: Parameter
    table_deletion_protection: Parameter
    stage_name: Parameter
    stats_path: Parameter
    allowed_origin: Parameter
    rate_limit: Parameter
    rate_limit_window: Parameter
    memory_size: Parameter
    log_retention_days: Parameter
    kms_key_arn: Parameter
    api_gateway_account_role: Parameter
    throttling_rate_limit: Parameter
    throttling_burst_limit: Parameter
    alarm_email: Parameter
    reserved_concurrency: Parameter
    series_hourly_days: Parameter
    analytics: Parameter
    aggregator_batch_size: Parameter
    aggregator_batching_window: Parameter
    # condition names
    is_provisioned: str
    protects_table: str
    has_kms_key: str
    creates_api_gateway_role: str
    has_access_logs: str
    has_alarm_email: str
    has_reserved_concurrency: str
    has_analytics: str


def number(title: str, default: int, description: str, **limits) -> Parameter:
    return Parameter(title, Type="Number", Default=default, Description=description, **limits)


def text(title: str, default: str, description: str, **constraints) -> Parameter:
    return Parameter(title, Type="String", Default=default, Description=description, **constraints)


def whole_number(title: str, default: str, description: str, pattern: str, says: str) -> Parameter:
    """A whole number the function reads as an int: a String with a pattern, as a Number
    parameter takes fractions."""
    return text(title, default, description, AllowedPattern=pattern, ConstraintDescription=says)


def declarations() -> dict[str, Parameter]:
    """Every parameter a deployer may set, in console order; the defaults deploy on a fresh
    account and cost nothing beyond what is used."""
    return {
        "billing_mode": text(
            "BillingMode",
            "PAY_PER_REQUEST",
            "DynamoDB capacity mode: on-demand (pay per hit) or provisioned.",
            AllowedValues=["PAY_PER_REQUEST", "PROVISIONED"],
        ),
        "read_capacity": number(
            "ReadCapacityUnits",
            5,
            "Table read capacity units, used only when BillingMode is PROVISIONED.",
            MinValue=1,
        ),
        "write_capacity": number(
            "WriteCapacityUnits",
            5,
            "Table write capacity units, used only when BillingMode is PROVISIONED.",
            MinValue=1,
        ),
        "log_retention_days": number(
            "LogRetentionDays",
            30,
            "Days to keep the functions' logs.",
            AllowedValues=LOG_RETENTION_DAYS,
        ),
        "stage_name": text(
            "StageName",
            "prod",
            "API Gateway stage name: the first path segment of the API URL.",
            AllowedPattern="^[A-Za-z0-9_]{1,128}$",
            ConstraintDescription="letters, digits and underscores, at most 128",
        ),
        "memory_size": number(
            "FunctionMemorySize",
            256,
            "Memory (MB) of the functions; CPU, and so cold start, scales with it.",
            MinValue=128,
            MaxValue=10240,
        ),
        "stats_path": text(
            "StatsPath",
            "_stats",
            "Path segment of the read-only stats endpoint (GET /<StatsPath>); "
            "requests to it and under it are never counted.",
            # Not led by a dot: clients resolve a segment of dots ('.', '..') away, so the
            # endpoint would be unreachable.
            AllowedPattern="^[A-Za-z0-9_-][A-Za-z0-9._-]{0,63}$",
            ConstraintDescription="one path segment of at most 64 letters, digits, '.', '_', "
            "'-', not starting with '.'",
        ),
        "allowed_origin": text(
            "AllowedOrigin",
            "",
            "Origin allowed to read the stats endpoint from a browser (CORS); "
            "empty sends no CORS headers.",
            AllowedPattern="^(|\\*|https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?)$",
            ConstraintDescription="empty, '*', or an origin such as https://example.com",
        ),
        # The function reads these two with int() when it starts: a Number parameter would
        # also take 1.5, and every hit would fail. Whole numbers only, as text.
        "rate_limit": whole_number(
            "RateLimit",
            "0",
            "Counted hits allowed per route per window; more get 429. 0 turns rate limiting off.",
            pattern="^(0|[1-9][0-9]{0,8})$",
            says="a whole number from 0 to 999999999 without leading zeros",
        ),
        "rate_limit_window": whole_number(
            "RateLimitWindowSeconds",
            "60",
            "Length of the fixed rate-limit window (1-86400 s), aligned to the epoch.",
            pattern="^([1-9][0-9]{0,3}|[1-7][0-9]{4}|8[0-5][0-9]{3}|86[0-3][0-9]{2}|86400)$",
            says="a whole number from 1 to 86400 without leading zeros",
        ),
        "max_read_capacity": number(
            "MaxReadCapacityUnits",
            100,
            "PROVISIONED only: auto scaling raises reads up to this "
            "(ReadCapacityUnits is the minimum).",
            MinValue=1,
        ),
        "max_write_capacity": number(
            "MaxWriteCapacityUnits",
            100,
            "PROVISIONED only: auto scaling raises writes up to this "
            "(WriteCapacityUnits is the minimum).",
            MinValue=1,
        ),
        "target_utilization": number(
            "TargetUtilizationPercent",
            70,
            "PROVISIONED only: consumed/provisioned capacity that auto scaling keeps the table at.",
            MinValue=20,
            MaxValue=90,
        ),
        "table_deletion_protection": text(
            "TableDeletionProtection",
            "false",
            "DynamoDB deletion protection of the counter and series tables. Off while a "
            "deploy creates a table (a protected table would block the rollback of a failed "
            "deploy); deploy.sh turns it on once the deploy succeeded.",
            AllowedValues=["false", "true"],
        ),
        "kms_key_arn": text(
            "KmsKeyArn",
            "",
            "Customer managed KMS key for the table, the log groups, the functions' "
            "environment and the alarm topic. Empty: AWS owned/managed encryption.",
            AllowedPattern="^(arn:aws[a-z-]*:kms:[a-z0-9-]+:[0-9]{12}:key/[A-Za-z0-9-]+)?$",
            ConstraintDescription="empty, or the ARN of a KMS key (not an alias)",
        ),
        "api_gateway_account_role": text(
            "ApiGatewayAccountRole",
            "create",
            "API access logs need the region's API Gateway CloudWatch Logs role: "
            "'create' sets one (account-wide setting), 'existing' uses the one already set, "
            "'none' turns access logs off.",
            AllowedValues=["create", "existing", "none"],
        ),
        "throttling_rate_limit": number(
            "ThrottlingRateLimit",
            100,
            "Steady requests per second the stage accepts before answering 429.",
            MinValue=1,
        ),
        "throttling_burst_limit": number(
            "ThrottlingBurstLimit",
            200,
            "Requests the stage accepts in a burst above the steady rate.",
            MinValue=1,
        ),
        "alarm_email": text(
            "AlarmEmail",
            "",
            "E-mail address subscribed to the alarm topic (confirm the mail AWS "
            "sends). Empty: no subscription.",
            AllowedPattern="^([^@\\s]+@[^@\\s]+\\.[^@\\s]+)?$",
            ConstraintDescription="empty, or one e-mail address",
        ),
        "reserved_concurrency": text(
            "ReservedConcurrency",
            "",
            "Concurrent executions reserved for (and capping) each function. "
            "Empty or 0: no reservation (new accounts cannot reserve any).",
            AllowedPattern="^(0|[1-9][0-9]{0,5})?$",
            ConstraintDescription="empty, or a whole number without leading zeros",
        ),
        "series_hourly_days": number(
            "SeriesHourlyDays",
            30,
            "Days the hourly hit series of each route is kept (DynamoDB TTL); "
            "the daily series is kept for good.",
            MinValue=1,
            MaxValue=3650,
        ),
        # Added by issue 19 (analytics at scale); new parameters go after this block.
        "analytics": text(
            "Analytics",
            "on",
            "Hits over time and top routes. 'off': the counter alone, with no stream, "
            "aggregator or series table (an existing series table is kept, not deleted).",
            AllowedValues=["on", "off"],
        ),
        # Defaults from bench 8 (docs/analytics-at-scale.md): a (route, bucket) item is
        # written once per batch however many of its hits the batch holds, so long batches
        # cost less per hit: at most 0.5 write units a hit at 1,000 hits/s a shard, 1 at 100.
        "aggregator_batch_size": number(
            "AggregatorBatchSize",
            10000,
            "Most stream records the aggregator gets in one invocation (Lambda: 1-10000).",
            MinValue=1,
            MaxValue=10000,
        ),
        "aggregator_batching_window": number(
            "AggregatorBatchingWindowSeconds",
            30,
            "Longest wait (s) to fill a batch: the series and top routes lag by up to this; "
            "longer batches cost fewer write units per hit.",
            MinValue=0,
            MaxValue=300,
        ),
    }


def conditions(p: dict[str, Parameter]) -> dict[str, tuple[str, object]]:
    """field -> (condition name, condition), over the declared parameters."""

    def is_not(field: str, value: str):
        return Not(Equals(Ref(p[field]), value))

    return {
        "is_provisioned": ("IsProvisioned", Equals(Ref(p["billing_mode"]), "PROVISIONED")),
        "protects_table": ("ProtectsTable", Equals(Ref(p["table_deletion_protection"]), "true")),
        "has_kms_key": ("HasKmsKey", is_not("kms_key_arn", "")),
        "creates_api_gateway_role": (
            "CreatesApiGatewayRole",
            Equals(Ref(p["api_gateway_account_role"]), "create"),
        ),
        "has_access_logs": ("HasAccessLogs", is_not("api_gateway_account_role", "none")),
        "has_alarm_email": ("HasAlarmEmail", is_not("alarm_email", "")),
        "has_analytics": ("HasAnalytics", Equals(Ref(p["analytics"]), "on")),
        "has_reserved_concurrency": (
            "HasReservedConcurrency",
            Not(
                Or(
                    Equals(Ref(p["reserved_concurrency"]), ""),
                    Equals(Ref(p["reserved_concurrency"]), "0"),
                )
            ),
        ),
    }


def add_parameters(template: Template) -> StackParameters:
    """Declare every parameter and condition on the template."""
    declared = {field: template.add_parameter(p) for field, p in declarations().items()}
    names = {}
    for field, (name, condition) in conditions(declared).items():
        template.add_condition(name, condition)
        names[field] = name
    values = {**declared, **names}
    return StackParameters(**{f.name: values[f.name] for f in fields(StackParameters)})
