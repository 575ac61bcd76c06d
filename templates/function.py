"""Lambda functions whose code is a file under handler/, inlined byte for byte."""

from pathlib import Path

from troposphere import AWSObject, GetAtt, If, NoValue, PropsDictType, Ref
from troposphere.awslambda import Code, Environment, Function, LoggingConfig, TracingConfig
from troposphere.iam import Role
from troposphere.logs import LogGroup

from templates.parameters import StackParameters


class FunctionLoggingConfig(LoggingConfig):
    """Lambda's LoggingConfig: troposphere 4.11 shadows it with a class lacking LogFormat."""

    props: PropsDictType = {**LoggingConfig.props, "LogFormat": (str, False)}  # noqa: RUF012


HANDLER_DIR = Path(__file__).resolve().parent.parent / "handler"
RUNTIME = "python3.13"
# Above the handler's worst case (three SDK attempts of at most 3 s, plus backoff) and
# well under API Gateway's 29 s integration timeout.
TIMEOUT_SECONDS = 15
# With a Backend: its answer (BackendTimeoutSeconds, at most 20 s) and then, or before it,
# the count (7 s at worst) fit in 28 s, still under API Gateway's 29 s. A timeout is a cap,
# not a cost: raised only when a backend is configured (HasBackend).
BACKEND_TIMEOUT_SECONDS = 28


def counter_timeout(params: StackParameters) -> If:
    return If(params.has_backend, BACKEND_TIMEOUT_SECONDS, TIMEOUT_SECONDS)


# A stream consumer answers no client: its time goes to a batch's writes and their retries
# (handler/aggregator.py stops RESERVE_MS before it to report what it did not write).
STREAM_CONSUMER_TIMEOUT_SECONDS = 60


def handler_source(name: str) -> str:
    """The exact text of handler/<name>.py: what is tested is what is deployed."""
    return (HANDLER_DIR / f"{name}.py").read_text(encoding="utf-8")


def function_log_group(title: str, params: StackParameters) -> LogGroup:
    """An explicit log group, so retention is ours to set.

    Logs are operational data, not the product's data: they go with the stack.
    """
    return LogGroup(
        title,
        DeletionPolicy="Delete",
        UpdateReplacePolicy="Delete",
        RetentionInDays=Ref(params.log_retention_days),
        KmsKeyId=If(params.has_kms_key, Ref(params.kms_key_arn), NoValue),
    )


# Checks that do not fit a synchronous, public, VPC-less function (see README "Security scan").
FUNCTION_SCAN_SKIPS = [
    {"id": "CKV_AWS_116", "comment": "Invoked synchronously by API Gateway: no async DLQ"},
    {"id": "CKV_AWS_117", "comment": "Reaches AWS APIs and the public Backend: no VPC needed"},
]
# Each reservation comes out of the account's pool (Lambda keeps 100 unreserved): the counter,
# whose capacity decides what is counted, is the one function ReservedConcurrency reserves for.
UNRESERVED_SCAN_SKIP = {
    "id": "CKV_AWS_115",
    "comment": "ReservedConcurrency reserves for the counter alone: a reservation per function "
    "would take three times the value from the account's unreserved pool",
}
# A stream consumer has no asynchronous invocations either: what it gives up on goes to its
# event source mapping's on-failure queue (templates/streaming.py).
STREAM_CONSUMER_SCAN_SKIPS = [
    {"id": "CKV_AWS_116", "comment": "Invoked by a stream mapping: its OnFailure queue"},
    FUNCTION_SCAN_SKIPS[1],
]


def hardened_function(
    title: str,
    source_name: str,
    description: str,
    role: Role,
    log_group: LogGroup,
    environment: dict,
    params: StackParameters,
    scan_skips: list[dict] = FUNCTION_SCAN_SKIPS,
    timeout: int | If = TIMEOUT_SECONDS,
    reserves_concurrency: bool = False,
    waits_for: AWSObject | None = None,
) -> Function:
    """A python function, arm64, whose index.py is handler/<source_name>.py, with
    production settings: X-Ray tracing, the environment encrypted with KmsKeyArn when one
    is given (its role needs iam.tracing_statement() and iam.kms_key_policy), and, when
    reserves_concurrency, the ReservedConcurrency reservation (one function only: each
    reservation comes out of the account's pool, which Lambda keeps at 100 or more).
    waits_for: a conditional resource created first (DependsOn cannot name one; a
    conditional Ref can)."""
    reservation = (
        {
            "ReservedConcurrentExecutions": If(
                params.has_reserved_concurrency, Ref(params.reserved_concurrency), NoValue
            )
        }
        if reserves_concurrency
        else {}
    )
    if not reserves_concurrency:
        scan_skips = [*scan_skips, UNRESERVED_SCAN_SKIP]
    metadata: dict = {"checkov": {"skip": scan_skips}}
    if waits_for is not None:
        metadata[waits_for.title] = If(waits_for.Condition, Ref(waits_for), "")
    return Function(
        title,
        Metadata=metadata,
        Description=description,
        Runtime=RUNTIME,
        Architectures=["arm64"],
        Handler="index.handler",
        Code=Code(ZipFile=handler_source(source_name)),
        Role=GetAtt(role, "Arn"),
        MemorySize=Ref(params.memory_size),
        Timeout=timeout,
        Environment=Environment(Variables=environment),
        LoggingConfig=FunctionLoggingConfig(LogGroup=Ref(log_group), LogFormat="Text"),
        TracingConfig=TracingConfig(Mode="Active"),
        KmsKeyArn=If(params.has_kms_key, Ref(params.kms_key_arn), NoValue),
        **reservation,
    )
