"""The stack's safeguards as one plan the change-set engine (deployer.Deployer) runs.

The engine knows change sets, events and stack policies; what this app's stack needs around
them is decided here: the parameter values the change set gets (the tables' deletion
protection off while a rollback might have to delete a new table), whether protection is
turned on afterwards, and whether the stage is redeployed after an update.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from deployer.parameters import (
    TABLE_PROTECTION,
    protection_on_create,
    protection_on_update,
    protection_value,
    tables_added,
)
from deployer.results import Outcome


@dataclass(frozen=True)
class Plan:
    """values: what the change set is given; protect_after: turn the tables' deletion
    protection on once it ran; redeploy: redeploy the stages its changes need (an update);
    notes: the lines that say why, printed before the change set."""

    values: dict[str, str]
    protect_after: bool = False
    redeploy: bool = False
    notes: list[str] = field(default_factory=list)


def plan(
    kind: Outcome,
    template: dict,
    given: dict[str, str],
    previous: dict[str, str] | None,
    keep_previous: bool,
) -> Plan:
    """The plan before any change set is made."""
    if kind == Outcome.CREATE:
        values, protect_after = protection_on_create(template, given, keep_previous)
        notes = []
        if protect_after:
            notes.append(
                f"    {TABLE_PROTECTION} = false while the stack is created (the rollback of "
                "a failed create must be able to delete its new table), then true"
            )
        return Plan(values, protect_after, notes=notes)
    if previous is None:
        return Plan(given, redeploy=True)
    kept = protection_on_update(template, given, previous, keep_previous)
    notes = []
    if kept != given:
        notes.append(
            f"    {TABLE_PROTECTION} = true: the stack predates the parameter and its "
            "table is protected; it stays so"
        )
    return Plan(kept, redeploy=True, notes=notes)


def replan_for_changes(
    current: Plan,
    kind: Outcome,
    changes: list[dict],
    template: dict,
    previous: dict[str, str] | None,
    keep_previous: bool,
) -> Plan | None:
    """A new plan when the change set shows the current one unsafe, else None: an update that
    adds a table while protection would be on (its rollback would have to delete the new,
    protected table) runs with protection off, then turns it on."""
    added = tables_added(changes)
    protected = protection_value(template, current.values, previous or {}, keep_previous)
    if kind != Outcome.UPDATE or not added or protected != "true":
        return None
    return replace(
        current,
        values={**current.values, TABLE_PROTECTION: "false"},
        protect_after=True,
        notes=[
            f"    {TABLE_PROTECTION} = false while the update adds {', '.join(added)} (the "
            "rollback of a failed update must be able to delete its new table), then true"
        ],
    )
