"""Where moto 5.2.5 departs from AWS in a way this stack depends on: the one place that
makes the emulator behave as AWS does. `local/atomic_moto.py` applies it at start-up.

Each patch emulates a documented AWS behaviour; none hides one. tests/test_moto_fidelity.py
proves each against moto as shipped.
"""

from __future__ import annotations

from typing import Any

from moto.cloudformation import parsing

# AWS keeps a resource with these DeletionPolicy values when its stack is deleted or when an
# update removes it from the template (RetainExceptOnCreate deletes it only when the stack's
# first create rolls back, which moto never does). moto 5.2.5 keeps only "Retain", and only
# on stack delete.
RETAINED = ("Retain", "RetainExceptOnCreate")

_moto_delete_resource = parsing.ResourceMap._delete_resource


def _delete_unless_retained(
    self: parsing.ResourceMap, parsed_resource: Any, resource_json: dict[str, Any]
) -> None:
    if resource_json.get("DeletionPolicy") in RETAINED:
        return
    _moto_delete_resource(self, parsed_resource, resource_json)


def apply() -> None:
    """Patch moto in this process (idempotent)."""
    parsing.ResourceMap._delete_resource = _delete_unless_retained  # type: ignore[method-assign]
