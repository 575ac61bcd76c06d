"""The errors the deployer reports as one `error: ...` line, each with its exit status.

As aws-cli's exceptions.py: one DeployError, and a named subclass per kind of failure with
its message template (`fmt`), so callers and tests match on the class, not on the words.
`DeployError("text")` (or any subclass) takes a ready line; a subclass with a template is
raised with its fields:
`StackBusy(stack="demo", status="UPDATE_IN_PROGRESS")`.
"""

PROG = "./deploy.sh"


class DeployError(Exception):
    """A failure shown as one line; `code` is the exit status (1 failed, 2 bad usage)."""

    code = 1
    fmt = ""  # the line, from the fields a subclass is raised with

    def __init__(self, message: str | None = None, code: int | None = None, **fields: object):
        """message: the line as is; else the class's fmt filled with fields."""
        super().__init__(self.fmt.format(**fields) if message is None else message)
        self.fields = fields
        if code is not None:
            self.code = code


class UsageError(DeployError):
    """A bad command line: exit status 2, and a pointer to --help."""

    code = 2

    def __init__(self, message: str) -> None:
        super().__init__(f"{message} (see {PROG} --help)")


class AlreadyExplained(DeployError):
    """A failure whose explanation was printed on stderr already: no `error:` line."""


class ParameterError(DeployError):
    """A parameter value CloudFormation would refuse; the same text on every path."""

    code = 2


# --- AWS and the machine -------------------------------------------------------------------


class AwsCallFailed(DeployError):
    """An AWS call failed; `what` names it (describe-stacks, create-change-set...)."""

    fmt = "{what}: {error}"


class NoCredentials(DeployError):
    fmt = (
        "no AWS credentials found: run 'aws configure', set AWS_PROFILE (or --profile), "
        "or export AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
    )


class CredentialsCheckFailed(DeployError):
    fmt = "AWS credentials check (aws sts get-caller-identity) failed: {error}"


class NoRegion(DeployError):
    fmt = (
        "no AWS region: pass --region, set AWS_DEFAULT_REGION, or configure one with "
        "'aws configure'"
    )


class UnknownRegion(DeployError):
    fmt = (
        "unknown AWS region '{region}'{hint}: check --region, AWS_REGION, "
        "AWS_DEFAULT_REGION and the profile's region (a region newer than this botocore "
        "needs 'make venv' with a newer boto3)"
    )


class TemplateRejected(DeployError):
    """generate.py or cfn-lint refused the template (their own lines said why)."""


class ToolMissing(DeployError):
    fmt = "{tool} not found: run 'make venv'"


# --- the stack -----------------------------------------------------------------------------


class StackMissing(DeployError):
    fmt = "stack {stack} does not exist{where}: {consequence}"


class StackBusy(DeployError):
    fmt = "stack {stack} is busy ({status}): wait for it to finish, then retry"


class StackFailed(DeployError):
    """A create, update or delete ended in a failed state (its events were printed)."""

    fmt = "{doing} stack {stack} failed"


class StoppedWatching(DeployError):
    """Ctrl-C while following the stack: CloudFormation carries on; exit 130."""

    code = 130
    fmt = (
        "stopped watching; CloudFormation carries on with stack {stack} "
        "(see its events in the console or with aws cloudformation describe-stack-events)"
    )


class ChangeSetFailed(DeployError):
    fmt = "change set failed: {reason}"


class NothingToChange(DeployError):
    """The endpoint made no change set where the deploy needs one."""

    fmt = "the endpoint found nothing to change{detail}"


class DryRunNeedsBucket(DeployError):
    fmt = (
        "a dry run creates nothing, and the template needs the deployment bucket, "
        "which does not exist (or was never set up): deploy once without --dry-run, "
        "or pass --s3-bucket BUCKET; stack {stack} unchanged"
    )


class ProtectionNotOn(DeployError):
    """The stack was deployed, but its tables' deletion protection could not be turned on."""

    fmt = (
        "stack {stack} was {done}, but turning on the deletion protection of its tables "
        "failed ({error}): {tables} may be unprotected; retry with "
        + PROG
        + " --param {parameter}=true {where}"
    )


class StageNotRedeployed(DeployError):
    """The stack was updated, but a stage still serves the old API."""


class Refused(DeployError):
    """A deploy or a command the deployer refuses before changing anything (its reason)."""


class ReservationTooLarge(Refused):
    """A ReservedConcurrency Lambda would refuse (deployer/concurrency.py says why)."""


class BucketUnusable(DeployError):
    """The deployment bucket cannot be made or used (taken, TLS only, a call refused)."""


class SmokeTestFailed(DeployError):
    fmt = "smoke test failed: {detail}"


class EmulatorFailed(DeployError):
    """The emulator a rehearsal deploys to could not be started."""
