"""Whether the deploy talks to AWS or to an emulator, and what an emulator lacks.

An emulator (LocalStack, moto_server) answers a call it does not implement with an error
where AWS would have done it. Against such an endpoint a call that only adds a safeguard
(a stack policy) is skipped with one warning line; against AWS the same failure stays an
error: there it means something else (a permission, an outage).
"""

from __future__ import annotations

from urllib.parse import urlsplit

from botocore.exceptions import ClientError

from deployer.s3 import dns_suffixes

# Answers of an endpoint that lacks the operation: LocalStack's 501 InternalFailure
# ("... not yet implemented or pro feature"), moto's and others' NotImplemented.
NOT_IMPLEMENTED_STATUS = 501
NOT_IMPLEMENTED_CODES = frozenset(
    {"InternalFailure", "NotImplemented", "NotImplementedException", "NotSupported"}
)


def is_aws(endpoint_url: str | None) -> bool:
    """Whether the endpoint is one of AWS's own (a partition's domain, or api.aws)."""
    host = (urlsplit(endpoint_url or "").hostname or "").lower()
    domains = {*dns_suffixes().values(), "api.aws"}
    return any(host == domain or host.endswith("." + domain) for domain in domains)


def client_is_aws(client: object) -> bool:
    """Whether a boto3 client sends its calls to AWS (no AWS_ENDPOINT_URL elsewhere)."""
    return is_aws(getattr(getattr(client, "meta", None), "endpoint_url", None))


def lacks_operation(error: Exception) -> bool:
    """Whether an error is an endpoint's way of saying it does not implement the call."""
    if not isinstance(error, ClientError):
        return False
    status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    code = str(error.response.get("Error", {}).get("Code", ""))
    return status == NOT_IMPLEMENTED_STATUS or code in NOT_IMPLEMENTED_CODES


def gap_warning(endpoint_url: str, operation: str, error: ClientError, skipped: str) -> str:
    """The one line a deploy prints when an emulator lacks a call it then goes on without."""
    code = error.response.get("Error", {}).get("Code", "")
    return (
        f"warning: the endpoint {endpoint_url} does not implement {operation} ({code}): "
        f"{skipped}; the deploy goes on (against AWS this is an error)"
    )
