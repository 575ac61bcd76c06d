"""ReservedConcurrency checked against the region's Lambda concurrency before any change set.

Lambda refuses a reservation that leaves fewer than 100 of the account's concurrent
executions unreserved ("Specified ReservedConcurrentExecutions for function decreases
account's UnreservedConcurrentExecution below its minimum value of [100]"), and the deploy
then fails halfway, in CloudFormation's events. GetAccountSettings tells beforehand: its
UnreservedConcurrentExecutions already leaves out what this stack's functions reserve, which
the update gives back (the template reserves for the counter only).
"""

from __future__ import annotations

from botocore.exceptions import BotoCoreError, ClientError

from deployer.template_reading import declared, default_value

RESERVATION = "ReservedConcurrency"
FUNCTION_TYPE = "AWS::Lambda::Function"
MINIMUM_UNRESERVED = 100  # Lambda keeps at least this many concurrent executions unreserved


def wanted_reservation(
    template: dict, given: dict[str, str], previous: dict[str, str] | None
) -> int:
    """The reservation the deploy would set: given, else the stack's (an update keeps it),
    else the template's default; empty is none."""
    rule = declared(template).get(RESERVATION)
    if rule is None:
        return 0
    value = given.get(RESERVATION)
    if value is None:
        value = (previous or {}).get(RESERVATION) or default_value(rule)
    return int(value) if value.isdigit() else 0


def held_by(lambda_client: object, functions: list[str]) -> int:
    """What the stack's functions reserve now (GetFunctionConcurrency; none when unset)."""
    return sum(
        lambda_client.get_function_concurrency(FunctionName=name).get(
            "ReservedConcurrentExecutions", 0
        )
        for name in functions
    )


def refusal(wanted: int, settings: dict, held: int) -> str | None:
    """Why Lambda would refuse the reservation, in one line, or None if it fits."""
    limit = settings["AccountLimit"]
    total = limit["ConcurrentExecutions"]
    free = limit["UnreservedConcurrentExecutions"] + held  # this stack's given back
    left = free - wanted
    if left >= MINIMUM_UNRESERVED:
        return None
    most = max(free - MINIMUM_UNRESERVED, 0)
    fits = f"at most {most}" if most else "none (0)"
    return (
        f"{RESERVATION}={wanted} would leave {left} of this region's {total} concurrent "
        f"executions unreserved and Lambda keeps at least {MINIMUM_UNRESERVED}: reserve "
        f"{fits}, or ask AWS for a higher concurrency quota"
    )


def check(
    lambda_client: object, wanted: int, functions: list[str]
) -> tuple[str | None, str | None]:
    """(refusal, warning): a refusal when the reservation cannot fit; a warning line when
    the account's settings cannot be read (the deploy goes on, Lambda has the last word)."""
    if wanted <= 0:
        return None, None
    try:
        settings = lambda_client.get_account_settings()
        held = held_by(lambda_client, functions)
    except (ClientError, BotoCoreError) as error:
        return None, (
            f"    {RESERVATION}={wanted} not checked against the region's Lambda concurrency "
            f"(lambda GetAccountSettings/GetFunctionConcurrency failed: {error}); Lambda "
            f"refuses it if it leaves fewer than {MINIMUM_UNRESERVED} unreserved"
        )
    return refusal(wanted, settings, held), None
