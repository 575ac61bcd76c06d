"""local/atomic_moto.py's emulator over TLS, with the S3 access checks the deployer relies on.

`python tests/tls_moto.py -p PORT --cert CERT --key KEY`: the same moto application, served
over HTTPS, plus two behaviours of S3 that moto 5.2.5 lacks, emulated here in one place:

- Bucket policy conditions on `aws:SecureTransport`. moto skips a condition whose operator
  it does not know (`Bool`), so a TLS-only policy (Deny when aws:SecureTransport is false)
  denies every object write, over HTTPS too; and a statement whose condition does not hold
  counts as a Deny in moto, where AWS ignores the statement.
- `ExpectedBucketOwner` (the x-amz-expected-bucket-owner header): AWS answers 403 when the
  bucket belongs to another account; moto ignores the header.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from moto.iam import access_control, policy_conditions
from moto.s3 import models as s3_models
from werkzeug.serving import run_simple

from local.atomic_moto import QuietRequestHandler, moto_application

_request = threading.local()  # werkzeug serves each request on its own thread


def _bool_equals(expected: list[str] | str, actual: str) -> bool:
    values = expected if isinstance(expected, list) else [expected]
    return actual.lower() in [str(v).lower() for v in values]


policy_conditions.CONDITION_OPERATIONS["Bool"] = _bool_equals
_statement_permits = access_control.IAMPolicyStatement.is_action_permitted


def _is_action_permitted(
    self: access_control.IAMPolicyStatement,
    action: str,
    resource: str = "*",
    principal: str | None = None,
    incoming_condition_values: dict[str, str] | None = None,
) -> access_control.PermissionResult:
    # AWS: a statement whose condition does not hold does not apply (moto: Deny).
    if self._statement.get("Condition") and not self._check_conditions(incoming_condition_values):
        return access_control.PermissionResult.NEUTRAL
    return _statement_permits(self, action, resource, principal, incoming_condition_values)


def _bucket_permission(self: s3_models.FakeBucket, action: str, resource: str) -> Any:
    if self.policy is None:
        return access_control.PermissionResult.NEUTRAL
    secure = "true" if getattr(_request, "secure", False) else "false"
    return access_control.IAMPolicy(self.policy.decode()).is_action_permitted(
        action, resource, incoming_condition_values={"aws:SecureTransport": secure}
    )


access_control.IAMPolicyStatement.is_action_permitted = _is_action_permitted
s3_models.FakeBucket.get_permission = _bucket_permission

ACCESS_DENIED = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>AccessDenied</Code>'
    b"<Message>Access Denied</Message></Error>"
)


def with_s3_checks(app: Callable) -> Callable:
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-p", "--port", type=int, required=True)
    parser.add_argument("--cert", required=True)
    parser.add_argument("--key", required=True)
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    run_simple(
        "127.0.0.1",
        args.port,
        with_s3_checks(moto_application()),
        threaded=True,
        request_handler=QuietRequestHandler,
        ssl_context=(args.cert, args.key),
    )


if __name__ == "__main__":
    main()
