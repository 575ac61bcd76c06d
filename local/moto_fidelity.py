"""Where moto 5.2.5 departs from AWS in a way this stack depends on: the one place that
makes the emulator behave as AWS does. `local/atomic_moto.py` applies it at start-up.

Each patch emulates a documented AWS behaviour; none hides one. tests/unit/test_moto_fidelity.py
proves each against moto as shipped.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from typing import Any

from moto.cloudformation import parsing
from moto.iam import access_control, policy_conditions
from moto.s3 import models as s3_models

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


# S3 bucket policies, as the deployer's managed bucket uses them. moto skips a condition whose
# operator it does not know (Bool), so a TLS-only policy (Deny when aws:SecureTransport is
# false) denied every write, over HTTPS too; and moto counts a statement whose condition does
# not hold as a Deny, where AWS ignores the statement.
_request = threading.local()  # werkzeug serves each request on its own thread


def _bool_equals(expected: list[str] | str, actual: str) -> bool:
    values = expected if isinstance(expected, list) else [expected]
    return actual.lower() in [str(v).lower() for v in values]


_moto_statement_permits = access_control.IAMPolicyStatement.is_action_permitted


def _statement_permits(
    self: access_control.IAMPolicyStatement,
    action: str,
    resource: str = "*",
    principal: str | None = None,
    incoming_condition_values: dict[str, str] | None = None,
) -> access_control.PermissionResult:
    if self._statement.get("Condition") and not self._check_conditions(incoming_condition_values):
        return access_control.PermissionResult.NEUTRAL
    return _moto_statement_permits(self, action, resource, principal, incoming_condition_values)


def _bucket_permission(self: s3_models.FakeBucket, action: str, resource: str) -> Any:
    if self.policy is None:
        return access_control.PermissionResult.NEUTRAL
    secure = "true" if getattr(_request, "secure", False) else "false"
    return access_control.IAMPolicy(self.policy.decode()).is_action_permitted(
        action, resource, incoming_condition_values={"aws:SecureTransport": secure}
    )


ACCESS_DENIED = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>AccessDenied</Code>'
    b"<Message>Access Denied</Message></Error>"
)


def wrap(app: Callable) -> Callable:
    """The WSGI app with what S3 checks per request before moto sees it.

    aws:SecureTransport is whether this request came over TLS (atomic_moto --cert), and
    ExpectedBucketOwner (x-amz-expected-bucket-owner), which moto ignores, gets S3's 403
    when the bucket belongs to another account.
    """

    def application(environ: dict, start_response: Callable) -> Iterable[bytes]:
        _request.secure = environ.get("wsgi.url_scheme") == "https"
        expected = environ.get("HTTP_X_AMZ_EXPECTED_BUCKET_OWNER")
        if expected:
            bucket = environ.get("PATH_INFO", "/").lstrip("/").split("/", 1)[0]
            owner = s3_models.s3_backends.bucket_accounts.get(bucket)
            if owner and owner[1] != expected:
                start_response("403 Forbidden", [("Content-Type", "application/xml")])
                return [b"" if environ["REQUEST_METHOD"] == "HEAD" else ACCESS_DENIED]
        return app(environ, start_response)

    return application


def apply() -> None:
    """Patch moto in this process (idempotent); serve the app through wrap()."""
    parsing.ResourceMap._delete_resource = _delete_unless_retained  # type: ignore[method-assign]
    policy_conditions.CONDITION_OPERATIONS["Bool"] = _bool_equals
    access_control.IAMPolicyStatement.is_action_permitted = _statement_permits  # type: ignore[method-assign]
    s3_models.FakeBucket.get_permission = _bucket_permission  # type: ignore[method-assign]
