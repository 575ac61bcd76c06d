"""Deploy-time parameters and the conditions derived from them, declared one way: a table."""

from dataclasses import dataclass, fields

from troposphere import And, Condition, Equals, Not, Or, Parameter, Ref, Select, Split, Template

# RouteTemplates (docs/routes.md): comma-separated templates, each "/" or segments that are
# literals (as the counter writes a path: unreserved, sub-delims but ',', ':', '@', %XX in
# upper case), "{name}" (one segment) or, last only, "{name+}" (one or more segments).
TEMPLATE_LITERAL = "(?:[A-Za-z0-9._~!$&'()*+;=:@-]|%[0-9A-F]{2})+"
TEMPLATE_NAME = "\\{[A-Za-z0-9._~-]+\\}"  # OpenAPI's names: user-id, user.id, ...
TEMPLATE_REST = "\\{[A-Za-z0-9._~-]+\\+\\}"
ROUTE_TEMPLATE = (
    f"(?:/|(?:/(?:{TEMPLATE_LITERAL}|{TEMPLATE_NAME}))*"
    f"/(?:{TEMPLATE_LITERAL}|{TEMPLATE_NAME}|{TEMPLATE_REST}))"
)
# CloudFormation takes 4,096 bytes per parameter value, Lambda 4 KB for all of a function's
# environment variables: the templates get 3 KB, the other variables the rest.
MAX_ROUTE_TEMPLATES_BYTES = 3072

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
    backend: Parameter
    private_stats: Parameter
    backend_timeout: Parameter
    failure_policy: Parameter
    binary_media_types: Parameter
    route_templates: Parameter
    unmatched_routes: Parameter
    max_routes: Parameter
    analytics: Parameter
    aggregator_batch_size: Parameter
    aggregator_batching_window: Parameter
    client_identity: Parameter
    usage_quota_per_month: Parameter
    usage_rate_limit: Parameter
    usage_burst_limit: Parameter
    # condition names
    is_provisioned: str
    protects_table: str
    has_kms_key: str
    creates_api_gateway_role: str
    has_access_logs: str
    has_alarm_email: str
    has_reserved_concurrency: str
    stats_are_private: str
    has_backend: str
    has_lambda_backend: str
    has_binary_media_types: str
    has_analytics: str
    has_max_routes: str
    has_series_table: str
    requires_api_key: str
    requires_no_api_key: str
    has_usage_quota: str
    has_usage_rate_limit: str
    has_usage_burst_limit: str
    has_usage_throttle: str


# Backend: a function ARN (the IAM statement grants exactly it, qualifier included) or a URL.
BACKEND_PATTERN = (
    "^(|arn:aws[a-z-]*:lambda:[a-z]{2}(-[a-z]+)+-[0-9]:[0-9]{12}:function:[A-Za-z0-9_-]{1,64}"
    "(:(\\$LATEST|[A-Za-z0-9_-]{1,128}))?|https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?(/[^\\s?#]*)?)$"
)
MAX_BACKEND_TIMEOUT_SECONDS = 20
MEDIA_TYPE = "[A-Za-z0-9*!#$&^_.+~-]+/[A-Za-z0-9*!#$&^_.+~-]+"
# ClientIdentity (docs/clients.md): a header's name is an RFC 7230 token.
HEADER_NAME = "[!#$%&'*+.^_`|~0-9A-Za-z-]+"


def number(title: str, default: int, description: str, **limits) -> Parameter:
    return Parameter(title, Type="Number", Default=default, Description=description, **limits)


def text(title: str, default: str, description: str, **constraints) -> Parameter:
    return Parameter(title, Type="String", Default=default, Description=description, **constraints)


# The functions int() RateLimit, RateLimitWindowSeconds and SeriesHourlyDays at start-up; the
# resources take only whole capacities, memory and bursts. No bound of ours above (DynamoDB
# capacity, API Gateway burst): the account's quota is.
NO_UPPER_BOUND = 999_999_999


def whole_in_range(title: str, default: int, description: str, low: int, high: int) -> Parameter:
    """A whole number from low to high, for a property or a function that takes only whole
    ones. A Number parameter takes 1.5 and 1e2 (its MinValue/MaxValue bound the value, not
    its form), which then fail the deploy or every batch: a String whose pattern is exactly
    the decimal forms of low..high without leading zeros."""
    return text(
        title,
        str(default),
        description,
        AllowedPattern=range_pattern(low, high),
        ConstraintDescription=f"a whole number from {low} to {high} without leading zeros",
    )


def range_pattern(low: int, high: int) -> str:
    """A regular expression (Java's and Python's alike: no lookaround) matching exactly the
    decimal numbers low..high (0 <= low <= high) written without leading zeros."""
    alternatives = []
    for digits in range(len(str(low)), len(str(high)) + 1):
        first = max(low, 10 ** (digits - 1) if digits > 1 else 0)
        last = min(high, 10**digits - 1)
        alternatives += _same_length_range(str(first), str(last))
    return "^(" + "|".join(alternatives) + ")$"


def _same_length_range(low: str, high: str) -> list[str]:
    """Patterns matching the numbers from low to high, both of the same number of digits."""
    if len(low) == 1:
        return [low if low == high else f"[{low}-{high}]"]
    rest = len(low) - 1
    if low[0] == high[0]:
        return [low[0] + tail for tail in _same_length_range(low[1:], high[1:])]
    out = []
    head_from, head_to = int(low[0]), int(high[0])
    if low[1:] != "0" * rest:  # low's first digit covers only part of its tails
        out += [low[0] + tail for tail in _same_length_range(low[1:], "9" * rest)]
        head_from += 1
    full_high = high[1:] == "9" * rest
    if not full_high:
        head_to -= 1
    if head_from <= head_to:
        head = str(head_from) if head_from == head_to else f"[{head_from}-{head_to}]"
        out.append(head + ("[0-9]" if rest == 1 else f"[0-9]{{{rest}}}"))
    if not full_high:
        out += [high[0] + tail for tail in _same_length_range("0" * rest, high[1:])]
    return out


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
        "read_capacity": whole_in_range(
            "ReadCapacityUnits",
            5,
            "Table read capacity units, used only when BillingMode is PROVISIONED.",
            1,
            NO_UPPER_BOUND,
        ),
        "write_capacity": whole_in_range(
            "WriteCapacityUnits",
            5,
            "Table write capacity units, used only when BillingMode is PROVISIONED.",
            1,
            NO_UPPER_BOUND,
        ),
        # Whole by its AllowedValues: 1.5 and 1e2 are none of them.
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
        "memory_size": whole_in_range(
            "FunctionMemorySize",
            256,
            "Memory (MB) of the functions; CPU, and so cold start, scales with it.",
            128,
            10240,
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
        "rate_limit": whole_in_range(
            "RateLimit",
            0,
            "Counted hits allowed per route per window; more get 429. 0 turns rate limiting off.",
            0,
            NO_UPPER_BOUND,
        ),
        "rate_limit_window": whole_in_range(
            "RateLimitWindowSeconds",
            60,
            "Length of the fixed rate-limit window (1-86400 s), aligned to the epoch.",
            1,
            86400,
        ),
        "max_read_capacity": whole_in_range(
            "MaxReadCapacityUnits",
            100,
            "PROVISIONED only: auto scaling raises reads up to this "
            "(ReadCapacityUnits is the minimum).",
            1,
            NO_UPPER_BOUND,
        ),
        "max_write_capacity": whole_in_range(
            "MaxWriteCapacityUnits",
            100,
            "PROVISIONED only: auto scaling raises writes up to this "
            "(WriteCapacityUnits is the minimum).",
            1,
            NO_UPPER_BOUND,
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
        "throttling_burst_limit": whole_in_range(
            "ThrottlingBurstLimit",
            200,
            "Requests the stage accepts in a burst above the steady rate.",
            1,
            NO_UPPER_BOUND,
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
            "Concurrent executions reserved for (and capping) the counter function. "
            "Empty or 0: no reservation (new accounts cannot reserve any).",
            AllowedPattern="^(0|[1-9][0-9]{0,5})?$",
            ConstraintDescription="empty, or a whole number without leading zeros",
        ),
        # The aggregator int()s it at start-up: 1.5 would fail every batch.
        "series_hourly_days": whole_in_range(
            "SeriesHourlyDays",
            30,
            "Days the hourly hit series of each route is kept (DynamoDB TTL); "
            "the daily series is kept for good.",
            1,
            3650,
        ),
        # Backends (docs/backends.md): what stands behind the counter, and how it is called.
        "backend": text(
            "Backend",
            "",
            "What the counter forwards each request to, once counted: a Lambda function "
            "ARN of this stack's region (a version or alias qualifier allowed), or an "
            "http(s) URL. Empty: the counter answers with the count itself.",
            AllowedPattern=BACKEND_PATTERN,
            ConstraintDescription="empty, a Lambda function ARN (arn:aws:lambda:REGION:"
            "ACCOUNT:function:NAME[:QUALIFIER]), or an http:// or https:// URL",
        ),
        "backend_timeout": whole_in_range(
            "BackendTimeoutSeconds",
            10,
            "Seconds the counter waits for the backend's whole answer before a 504 "
            f"(1-{MAX_BACKEND_TIMEOUT_SECONDS}: with the count's own 7 s at worst, the "
            "function answers before API Gateway's 29 s).",
            1,
            MAX_BACKEND_TIMEOUT_SECONDS,
        ),
        "failure_policy": text(
            "FailurePolicy",
            "monitor",
            "With a Backend: 'monitor' calls the backend first and records the hit with "
            "its status and latency (a failed count never fails the request: logged and "
            "alarmed); 'meter' counts first and answers 503 when the count failed, so "
            "nothing uncounted is served.",
            AllowedValues=["monitor", "meter"],
        ),
        "binary_media_types": text(
            "BinaryMediaTypes",
            "*/*",
            "With a Backend: the API's binary media types (comma-separated), whose bodies "
            "API Gateway passes intact (base64) both ways; others are passed as UTF-8 text. "
            "Empty: none.",
            AllowedPattern=f"^({MEDIA_TYPE}(,{MEDIA_TYPE})*)?$",
            ConstraintDescription="empty, or media types such as */*, image/png, "
            "application/octet-stream separated by commas",
        ),
        # Private stats (docs/security-private-stats.md): the stats token, when it is needed.
        "private_stats": text(
            "PrivateStats",
            "auto",
            "Whether /<StatsPath> and its dashboard need the stats token (kept in Secrets "
            "Manager): 'auto' is private exactly when Backend is set.",
            AllowedValues=["auto", "true", "false"],
        ),
        "route_templates": text(
            "RouteTemplates",
            "",
            "Comma-separated route templates, e.g. /users/{id},/orders/{id}/items: a path "
            "counts under the first it matches. Empty: every path is its own route.",
            AllowedPattern=f"^({ROUTE_TEMPLATE}(,{ROUTE_TEMPLATE})*)?$",
            MaxLength=MAX_ROUTE_TEMPLATES_BYTES,
            ConstraintDescription="empty, or comma-separated templates such as /users/{id} "
            "(segments: literals as a normalised path writes them, {name}, or a last {name+})",
        ),
        "unmatched_routes": text(
            "UnmatchedRoutes",
            "self",
            "With RouteTemplates: a path matching none counts as itself ('self') or under "
            "this one route, e.g. /{unmatched}.",
            AllowedPattern="^(self|/\\{[A-Za-z_][A-Za-z0-9_]*\\})$",
            ConstraintDescription="'self', or one braced segment such as /{unmatched}",
        ),
        "max_routes": whole_in_range(
            "MaxRoutes",
            0,
            "Most distinct routes counted; past it new routes count as /{overflow}. 0: no cap.",
            0,
            999_999_999,
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
        "aggregator_batch_size": whole_in_range(
            "AggregatorBatchSize",
            10000,
            "Most stream records the aggregator gets in one invocation (Lambda: 1-10000).",
            1,
            10000,
        ),
        "aggregator_batching_window": whole_in_range(
            "AggregatorBatchingWindowSeconds",
            30,
            "Longest wait (s) to fill a batch: the series and top routes lag by up to this; "
            "longer batches cost fewer write units per hit.",
            0,
            300,
        ),
        # Added by issue 20 (usage per client, the edge): who the client is, and the usage
        # plan API Gateway enforces per API key (docs/clients.md).
        "client_identity": text(
            "ClientIdentity",
            "none",
            "Who made each hit, written with it (lastClient): 'none'; 'apikey' (the counted "
            "methods require an API key of this stack's usage plan: ./deploy.sh keys); "
            "'authorizer' (the authorizer's principalId); 'header:<Name>' (a header set by a "
            "trusted upstream). A hit without one gets 401.",
            AllowedPattern=f"^(none|apikey|authorizer|header:{HEADER_NAME})$",
            ConstraintDescription="none, apikey, authorizer, or header: and a header name "
            "(letters, digits and !#$%&'*+.^_`|~-)",
        ),
        "usage_quota_per_month": whole_in_range(
            "UsageQuotaPerMonth",
            0,
            "ClientIdentity apikey: requests each API key may make per calendar month (UTC); "
            "more get 429. 0: no quota.",
            0,
            NO_UPPER_BOUND,
        ),
        "usage_rate_limit": whole_in_range(
            "UsageRateLimit",
            0,
            "ClientIdentity apikey: steady requests per second each API key may make; more "
            "get 429. 0: none (the stage's throttling applies).",
            0,
            NO_UPPER_BOUND,
        ),
        "usage_burst_limit": whole_in_range(
            "UsageBurstLimit",
            0,
            "ClientIdentity apikey: requests each API key may make in a burst above its "
            "steady rate. 0: none (the stage's throttling applies).",
            0,
            NO_UPPER_BOUND,
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
        "stats_are_private": (
            "StatsArePrivate",
            Or(
                Equals(Ref(p["private_stats"]), "true"),
                And(Equals(Ref(p["private_stats"]), "auto"), is_not("backend", "")),
            ),
        ),
        "has_backend": ("HasBackend", is_not("backend", "")),
        # A Lambda backend is an ARN: its text up to the first ':' is 'arn' ('https', 'http'
        # or '' otherwise).
        "has_lambda_backend": (
            "HasLambdaBackend",
            Equals(Select(0, Split(":", Ref(p["backend"]))), "arn"),
        ),
        "has_binary_media_types": (
            "HasBinaryMediaTypes",
            And(Condition("HasBackend"), is_not("binary_media_types", "")),
        ),
        "has_max_routes": ("HasMaxRoutes", is_not("max_routes", "0")),
        # The series table holds the analytics and MaxRoutes' ledger: it exists for either.
        "has_series_table": (
            "HasSeriesTable",
            Or(Condition("HasAnalytics"), Condition("HasMaxRoutes")),
        ),
        "requires_api_key": ("RequiresApiKey", Equals(Ref(p["client_identity"]), "apikey")),
        "requires_no_api_key": ("RequiresNoApiKey", is_not("client_identity", "apikey")),
        "has_usage_quota": (
            "HasUsageQuota",
            And(Condition("RequiresApiKey"), is_not("usage_quota_per_month", "0")),
        ),
        "has_usage_rate_limit": ("HasUsageRateLimit", is_not("usage_rate_limit", "0")),
        "has_usage_burst_limit": ("HasUsageBurstLimit", is_not("usage_burst_limit", "0")),
        "has_usage_throttle": (
            "HasUsageThrottle",
            And(
                Condition("RequiresApiKey"),
                Or(Condition("HasUsageRateLimit"), Condition("HasUsageBurstLimit")),
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
