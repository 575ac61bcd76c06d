"""Templates over CloudFormation's inline limit: uploaded to S3, deployed from their URL.

Without --s3-bucket the deployer uses a bucket of its own, as `sam deploy --resolve-s3`
does: one per account and region, named with both, created on first need with encryption,
public access blocked, versioning, a TLS-only policy and a lifecycle rule, then reused.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Callable

from botocore.exceptions import BotoCoreError, ClientError
from botocore.loaders import create_loader

from deployer.errors import BucketUnusable

INLINE_LIMIT = 51_200  # bytes of TemplateBody CloudFormation accepts; from S3, 1 MB
KEY_PREFIX = "route-counter"
TEMPLATE_DAYS = 30  # templates are read once, when the change set is made
NONCURRENT_DAYS = 7


@functools.cache
def dns_suffixes() -> dict[str, str]:
    """Each partition's domain, from botocore's own endpoint data (aws-cn: amazonaws.com.cn)."""
    partitions = create_loader().load_data("endpoints")["partitions"]
    return {p["partition"]: p["dnsSuffix"] for p in partitions}


def dns_suffix(partition: str) -> str:
    return dns_suffixes().get(partition, "amazonaws.com")


def template_url(bucket: str, key: str, region: str, partition: str) -> str:
    """The HTTPS URL CloudFormation reads the template from.

    Virtual-hosted style, except for a bucket name with dots, which would not match S3's
    wildcard TLS certificate: path style then. The domain is the partition's.
    """
    endpoint = f"s3.{region}.{dns_suffix(partition)}"
    if "." in bucket:
        return f"https://{endpoint}/{bucket}/{key}"
    return f"https://{bucket}.{endpoint}/{key}"


def template_key(stack_name: str, body: bytes) -> str:
    """Named by content: an unchanged template is not stored again."""
    return f"{KEY_PREFIX}/{stack_name}/{hashlib.sha256(body).hexdigest()}.json"


def managed_bucket_name(account: str, region: str) -> str:
    return f"route-counter-deploy-{account}-{region}"


def tls_only_policy(bucket: str, partition: str) -> dict:
    arn = f"arn:{partition}:s3:::{bucket}"
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "DenyInsecureTransport",
                "Effect": "Deny",
                "Principal": "*",
                "Action": "s3:*",
                "Resource": [arn, f"{arn}/*"],
                "Condition": {"Bool": {"aws:SecureTransport": "false"}},
            }
        ],
    }


LIFECYCLE = {
    "Rules": [
        {
            "ID": "expire-old-templates",
            "Status": "Enabled",
            "Filter": {"Prefix": f"{KEY_PREFIX}/"},
            "Expiration": {"Days": TEMPLATE_DAYS},
            "NoncurrentVersionExpiration": {"NoncurrentDays": NONCURRENT_DAYS},
            "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 1},
        }
    ]
}


# The IAM action each S3 call needs (README.md, "Permissions"): S3's AccessDenied does not
# always name it, and for some calls it is not the operation's name.
PERMISSIONS = {
    "head_bucket": "s3:ListBucket",
    "create_bucket": "s3:CreateBucket",
    "get_bucket_versioning": "s3:GetBucketVersioning",
    "put_public_access_block": "s3:PutBucketPublicAccessBlock",
    "put_bucket_encryption": "s3:PutEncryptionConfiguration",
    "put_bucket_policy": "s3:PutBucketPolicy",
    "put_bucket_lifecycle_configuration": "s3:PutLifecycleConfiguration",
    "put_bucket_versioning": "s3:PutBucketVersioning",
    "put_object": "s3:PutObject",
}


def _failed(what: str, operation: str, error: Exception) -> BucketUnusable:
    """One line: what failed, the permission its call needs, and AWS's (or botocore's) words."""
    return BucketUnusable(f"{what} (this needs {PERMISSIONS[operation]}): {error}")


def _call(what: str, s3: object, operation: str, **kwargs: object) -> dict:
    try:
        return getattr(s3, operation)(**kwargs)
    except (ClientError, BotoCoreError) as error:
        raise _failed(what, operation, error) from None


def _code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))


def _taken(bucket: str) -> BucketUnusable:
    return BucketUnusable(
        f"the deployment bucket name {bucket} is taken by another AWS account (or these "
        "credentials may not s3:ListBucket it): pass --s3-bucket BUCKET (a bucket of yours in "
        "this region) instead"
    )


def plain_http(s3: object) -> str | None:
    """The S3 endpoint when it is plain HTTP (AWS_ENDPOINT_URL=http://...), else None."""
    endpoint = str(getattr(getattr(s3, "meta", None), "endpoint_url", "") or "")
    return endpoint if endpoint.lower().startswith("http://") else None


def _refuse_plain_http(s3: object, bucket: str) -> None:
    """The managed bucket's policy denies every request not made over TLS, as S3 enforces it:
    over plain HTTP the set-up and the upload would be refused as if a permission lacked."""
    endpoint = plain_http(s3)
    if endpoint:
        raise BucketUnusable(
            f"the S3 endpoint {endpoint} is plain HTTP, and the deployment bucket {bucket} "
            "takes only TLS requests (its policy denies aws:SecureTransport false): use an "
            "https:// endpoint (AWS_ENDPOINT_URL), or pass --s3-bucket BUCKET"
        )


def existing_managed_bucket(s3: object, account: str, region: str) -> str | None:
    """The account's deployment bucket if it exists and is set up; None otherwise (what a
    dry run, which creates nothing, is left with)."""
    bucket = managed_bucket_name(account, region)
    _refuse_plain_http(s3, bucket)
    owner = {"Bucket": bucket, "ExpectedBucketOwner": account}
    checking = f"checking the deployment bucket {bucket}"
    try:
        s3.head_bucket(**owner)
    except BotoCoreError as error:
        raise _failed(checking, "head_bucket", error) from None
    except ClientError as error:
        if _code(error) in ("403", "AccessDenied", "301", "PermanentRedirect"):
            raise _taken(bucket) from None
        if _code(error) in ("404", "NoSuchBucket", "NotFound"):
            return None
        raise _failed(checking, "head_bucket", error) from None
    versioning = _call(checking, s3, "get_bucket_versioning", **owner).get("Status")
    return bucket if versioning == "Enabled" else None


def ensure_managed_bucket(
    s3: object, account: str, region: str, partition: str, say: Callable[[str], None]
) -> str:
    """The account's deployment bucket in region: created and configured once, then reused.

    Every call names the expected owner, so a bucket of the same name in another account
    is never used. Versioning is configured last: a bucket without it is one whose set-up
    was interrupted, and is configured again.
    """
    bucket = managed_bucket_name(account, region)
    _refuse_plain_http(s3, bucket)
    owner = {"Bucket": bucket, "ExpectedBucketOwner": account}
    created = False
    checking = f"checking the deployment bucket {bucket}"
    try:
        s3.head_bucket(**owner)
    except BotoCoreError as error:  # no answer from S3
        raise _failed(checking, "head_bucket", error) from None
    except ClientError as error:
        # 403: another account's (ExpectedBucketOwner); 301: a bucket of that name lives in
        # another region, so it is not the one this account would have made here.
        if _code(error) in ("403", "AccessDenied", "301", "PermanentRedirect"):
            raise _taken(bucket) from None
        if _code(error) not in ("404", "NoSuchBucket", "NotFound"):
            raise _failed(checking, "head_bucket", error) from None
        create = {"Bucket": bucket}
        if region != "us-east-1":
            create["CreateBucketConfiguration"] = {"LocationConstraint": region}
        creating = f"creating the deployment bucket {bucket}"
        try:
            s3.create_bucket(**create)
            created = True
        except ClientError as create_error:
            if _code(create_error) == "BucketAlreadyExists":
                raise _taken(bucket) from None
            if _code(create_error) != "BucketAlreadyOwnedByYou":  # a deploy racing this one
                raise _failed(creating, "create_bucket", create_error) from None
        except BotoCoreError as create_error:
            raise _failed(creating, "create_bucket", create_error) from None
    setting_up = f"setting up the deployment bucket {bucket}"
    versioning = _call(setting_up, s3, "get_bucket_versioning", **owner).get("Status")
    if created or versioning != "Enabled":
        _configure(s3, owner, partition, setting_up)
        done = "created" if created else "set up again (an earlier set-up was interrupted)"
        say(
            f"Deployment bucket s3://{bucket} {done} (encrypted, private, versioned, TLS only; "
            f"templates expire after {TEMPLATE_DAYS} days)"
        )
    else:
        say(f"Deployment bucket s3://{bucket} (this account's, reused)")
    return bucket


def _configure(s3: object, owner: dict, partition: str, what: str) -> None:
    _call(
        what,
        s3,
        "put_public_access_block",
        **owner,
        PublicAccessBlockConfiguration={
            "BlockPublicAcls": True,
            "IgnorePublicAcls": True,
            "BlockPublicPolicy": True,
            "RestrictPublicBuckets": True,
        },
    )
    _call(
        what,
        s3,
        "put_bucket_encryption",
        **owner,
        ServerSideEncryptionConfiguration={
            "Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]
        },
    )
    policy = json.dumps(tls_only_policy(owner["Bucket"], partition))
    _call(what, s3, "put_bucket_policy", **owner, Policy=policy)
    _call(what, s3, "put_bucket_lifecycle_configuration", **owner, LifecycleConfiguration=LIFECYCLE)
    _call(what, s3, "put_bucket_versioning", **owner, VersioningConfiguration={"Status": "Enabled"})


def upload(s3: object, bucket: str, key: str, body: bytes, account: str) -> None:
    """Store the template; never in a bucket of another account (ExpectedBucketOwner)."""
    what = f"uploading the template to s3://{bucket}"
    try:
        s3.put_object(Bucket=bucket, Key=key, Body=body, ExpectedBucketOwner=account)
    except ClientError as error:
        endpoint = plain_http(s3)
        if endpoint and _code(error) in ("403", "AccessDenied"):
            # A TLS-only bucket policy answers a plain-HTTP request as a missing permission.
            raise BucketUnusable(
                f"{what} was refused over plain HTTP ({endpoint}); a bucket policy that "
                "requires TLS (aws:SecureTransport) refuses every such request: use an "
                f"https:// endpoint (AWS_ENDPOINT_URL) ({error})"
            ) from None
        raise _failed(what, "put_object", error) from None
    except BotoCoreError as error:
        raise _failed(what, "put_object", error) from None
