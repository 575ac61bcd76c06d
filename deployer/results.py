"""What a deploy ended in: Deployer.deploy's outcome, a string enum (compares to its value)."""

from enum import StrEnum


class Outcome(StrEnum):
    """CREATE and UPDATE are also the change set's ChangeSetType (Deployer.kind)."""

    CREATE = "CREATE"
    UPDATE = "UPDATE"
    UNCHANGED = "UNCHANGED"
    DRY_RUN = "DRY_RUN"
