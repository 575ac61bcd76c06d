"""The errors the deployer reports as one `error: ...` line, each with its exit status."""

PROG = "./deploy.sh"


class DeployError(Exception):
    """A failure shown as one line; `code` is the exit status (1 failed, 2 bad usage)."""

    code = 1

    def __init__(self, message: str, code: int | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code


class UsageError(DeployError):
    """A bad command line: exit status 2, and a pointer to --help."""

    code = 2

    def __init__(self, message: str) -> None:
        super().__init__(f"{message} (see {PROG} --help)")


class AlreadyExplained(DeployError):
    """A failure whose explanation was printed on stderr already: no `error:` line."""

    def __init__(self) -> None:
        super().__init__("")


class ParameterError(DeployError):
    """A parameter value CloudFormation would refuse; the same text on every path."""

    code = 2
