"""Where moto 5.2.5 departs from AWS in a way this stack depends on: the one place that
makes the emulator behave as AWS does. `local/atomic_moto.py` applies it at start-up.

Each patch emulates a documented AWS behaviour; none hides one. tests/unit/test_moto_fidelity.py
proves each against moto as shipped.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import string
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from moto import backend_index
from moto.apigateway.models import RestAPI, apigateway_backends
from moto.awslambda import responses as lambda_responses
from moto.awslambda import urls as lambda_urls
from moto.awslambda.models import EventSourceMapping
from moto.cloudformation import models as cfn_models
from moto.cloudformation import parsing
from moto.cloudformation.exceptions import UnformattedGetAttTemplateException
from moto.core.common_models import CloudFormationModel
from moto.core.exceptions import JsonRESTError
from moto.dynamodb import responses as dynamodb_responses
from moto.dynamodb.exceptions import MockValidationException
from moto.dynamodb.models import DynamoDBBackend, dynamodb_backends
from moto.dynamodb.models.dynamo_type import Item
from moto.dynamodb.models.table import StreamRecord, StreamShard, Table
from moto.dynamodb.parsing.reserved_keywords import ReservedKeywords
from moto.dynamodbstreams import models as streams_models
from moto.dynamodbstreams import urls as streams_urls
from moto.iam import access_control, policy_conditions
from moto.s3 import models as s3_models
from moto.secretsmanager.models import secretsmanager_backends

from deployer import template_reading
from deployer.template_reading import names_used

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


# Stack updates that change only parameter values. moto 5.2.5 (1) updates only resources that
# `Ref` a changed parameter, where AWS also updates those that use it through `Fn::Sub` or a
# condition (`Fn::If`): TableDeletionProtection reaches the table only through a condition;
# (2) lists no resource change in the change set of such an update, where AWS lists each one
# with Replacement True, Conditional or False; (3) drops from the stack (physical id gone) a
# resource whose type it cannot update, where AWS updates it; (4) cannot update a table at
# all, where AWS updates DeletionProtectionEnabled in place (no interruption).

# Properties whose change makes AWS replace the resource ("Update requires: Replacement" in
# the resource reference), for the types of this stack that have any.
REPLACED_BY = {
    "AWS::ApiGateway::Resource": {"ParentId", "PathPart", "RestApiId"},
    "AWS::ApiGateway::Method": {"HttpMethod", "ResourceId", "RestApiId"},
    "AWS::ApiGateway::Deployment": {"RestApiId", "DeploymentCanarySettings"},
    "AWS::ApiGateway::Stage": {"RestApiId", "StageName"},
    "AWS::DynamoDB::Table": {"TableName", "KeySchema"},
    "AWS::Lambda::Function": {"FunctionName"},
    "AWS::Lambda::Permission": {"Action", "FunctionName", "Principal", "SourceArn"},
    "AWS::Logs::LogGroup": {"LogGroupName"},
    "AWS::IAM::Role": {"RoleName", "Path"},
    "AWS::SNS::Topic": {"TopicName"},
    "AWS::CloudWatch::Alarm": {"AlarmName"},
    "AWS::CloudWatch::Dashboard": {"DashboardName"},
}


_moto_resource_diff = parsing.ResourceMap.build_resource_diff


def _resource_diff(
    self: parsing.ResourceMap, other_template: dict[str, Any], parameters: Any = None
) -> dict[str, Any]:
    """moto's diff, plus the resources that use a changed parameter other than by Ref."""
    diff = _moto_resource_diff(self, other_template, parameters)
    if parameters:
        changed = {p for p in parameters if self.input_parameters.get(p) != parameters[p]}
        conditions = other_template.get("Conditions", {})
        old = self._resource_json_map
        for name, resource in other_template["Resources"].items():
            same = name in old and old[name] == resource
            if same and name not in diff["Modify"] and changed & names_used(resource, conditions):
                diff["Modify"].append(name)
    # A resource whose condition was false was never created: AWS creates it when its
    # condition turns true and leaves it alone otherwise, where moto "updates" nothing and fails.
    # As an Add, moto creates it only if its condition holds under the new parameters.
    for name in [n for n in diff["Modify"] if n not in self._parsed_resources]:
        if "Condition" in other_template["Resources"][name]:
            diff["Modify"].remove(name)
            diff["Add"].append(name)
    # A resource whose condition turns false: AWS removes it from the stack (deleting it unless
    # its DeletionPolicy keeps it); moto keeps it, as if the condition still held.
    if parameters is not None:
        for name in turned_off(self, other_template, parameters):
            for action in ("Modify", "Add"):
                if name in diff[action]:
                    diff[action].remove(name)
            if name not in diff["Remove"]:
                diff["Remove"].append(name)
    return diff


_moto_update_map = parsing.ResourceMap.update


def _update_map(
    self: parsing.ResourceMap, template: dict[str, Any], parameters: dict[str, Any] | None = None
) -> None:
    """moto's update; then the resources whose condition is now false are out of the stack
    (moto removed them, and kept listing them)."""
    _moto_update_map(self, template, parameters)
    for name, resource in template.get("Resources", {}).items():
        condition = resource.get("Condition")
        if condition and not self.lazy_condition_map[condition]:
            self._parsed_resources.pop(name, None)


def turned_off(
    deployed: parsing.ResourceMap, template: dict[str, Any], values: dict[str, Any]
) -> list[str]:
    """The resources of the stack (created, still declared) whose condition is false in
    `template` with the parameter `values` (the rest: the template's defaults)."""
    given = {k: str(v) for k, v in values.items()}
    return [
        name
        for name, resource in template.get("Resources", {}).items()
        if "Condition" in resource
        and deployed._parsed_resources.get(name) is not None
        and not template_reading.condition_holds(template, resource["Condition"], given)
    ]


def replacements(
    old: dict[str, Any], new: dict[str, Any], old_values: dict[str, Any], new_values: dict[str, Any]
) -> dict[str, str]:
    """Logical id -> Replacement ("True", "Conditional", "False") of each resource an update
    from template old to template new (parameters old_values to new_values) modifies.

    As CloudFormation decides it: a property whose value changes is static evaluation
    (Replacement True if the property requires replacement); one that uses a resource that
    may be replaced is dynamic evaluation (Conditional); the strongest change wins.
    """
    changed = {
        k for k in set(old_values) | set(new_values) if old_values.get(k) != new_values.get(k)
    }
    conditions = new.get("Conditions", {})
    old_resources, new_resources = old.get("Resources", {}), new.get("Resources", {})
    result: dict[str, str] = {}
    for name, resource in new_resources.items():
        if name not in old_resources:
            continue
        before = old_resources[name].get("Properties", {})
        for prop, value in resource.get("Properties", {}).items():
            if before.get(prop) != value or changed & names_used(value, conditions):
                replaced = prop in REPLACED_BY.get(resource["Type"], ())
                if replaced or result.get(name) != "True":
                    result[name] = "True" if replaced else "False"
    while True:  # what uses a replaced resource gets a new value only when it is replaced
        grown = False
        for name, resource in new_resources.items():
            if name not in old_resources or result.get(name) in ("True", "Conditional"):
                continue
            for prop, value in resource.get("Properties", {}).items():
                uses = names_used(value, conditions)
                if any(result.get(other) in ("True", "Conditional") for other in uses):
                    replaced = prop in REPLACED_BY.get(resource["Type"], ())
                    result[name] = "Conditional" if replaced else result.get(name, "False")
                    grown = grown or replaced
        if not grown:
            return result


_moto_change_set_diff = cfn_models.ChangeSet.diff


def _change_set_diff(self: cfn_models.ChangeSet) -> list[cfn_models.Change]:
    """moto's changes (Add, Remove, template Modify), each Modify with its Replacement, plus
    the resources a parameter change modifies."""
    changes = _moto_change_set_diff(self)
    if self.change_set_type != "UPDATE":
        return changes
    declared = template_reading.declared(self.template_dict)
    given = {k: str(v) for k, v in (self.parameters or {}).items()}
    new_values = template_reading.parameter_values(self.template_dict, given)
    old_values = {k: str(v) for k, v in self.stack.stack_parameters.items() if k in declared}
    deployed = self.stack.resource_map._template  # the stack's template now
    replaced = replacements(deployed, self.template_dict, old_values, new_values)
    listed = {c.logical_resource_id: c for c in changes}
    for name in turned_off(self.stack.resource_map, self.template_dict, new_values):
        change = listed.get(name)
        if change is not None:
            changes.remove(change)
        resource_type = deployed["Resources"][name]["Type"]
        listed[name] = cfn_models.Change("Remove", name, resource_type)
        changes.append(listed[name])
        replaced.pop(name, None)
    for name, replacement in replaced.items():
        change = listed.get(name)
        if change is None:
            resource_type = self.template_dict["Resources"][name]["Type"]
            change = cfn_models.Change("Modify", name, resource_type)
            changes.append(change)
        if change.action == "Modify":
            change.replacement = replacement  # type: ignore[attr-defined]
    return changes


# Stack policies. moto 5.2.5 stores a stack's policy and enforces nothing; AWS checks every
# change of an update against it, and a change it does not allow fails the update, which is
# rolled back (the change set is made all the same: the policy is checked on execution).
# The policy language (AWS CloudFormation User Guide, "Prevent updates to stack resources"):
# Effect, Action or NotAction (Update:Modify, Update:Replace, Update:Delete, Update:*),
# Principal "*", Resource or NotResource ("LogicalResourceId/<id>", with * wildcards), and a
# Condition on ResourceType (StringEquals, StringLike); an explicit Deny wins, and with a
# policy set a change no statement allows is denied. Adding a resource is never checked.
# A replacement listed as "Conditional" is checked as Update:Replace (what it may do).
_moto_execute_change_set = cfn_models.CloudFormationBackend.execute_change_set


def _policy_action(change: cfn_models.Change) -> str | None:
    if change.action == "Remove":
        return "Update:Delete"
    if change.action == "Modify":
        replacement = getattr(change, "replacement", "False")
        return "Update:Replace" if replacement in ("True", "Conditional", True) else "Update:Modify"
    return None


def _policy_matches(pattern: str | list[str], value: str) -> bool:
    patterns = [pattern] if isinstance(pattern, str) else pattern
    return any(re.fullmatch(re.escape(p).replace(r"\*", ".*"), value) for p in patterns)


def _statement_applies(statement: dict[str, Any], action: str, change: cfn_models.Change) -> bool:
    resource = f"LogicalResourceId/{change.logical_resource_id}"
    if "Action" in statement and not _policy_matches(statement["Action"], action):
        return False
    if "NotAction" in statement and _policy_matches(statement["NotAction"], action):
        return False
    if "Resource" in statement and not _policy_matches(statement["Resource"], resource):
        return False
    if "NotResource" in statement and _policy_matches(statement["NotResource"], resource):
        return False
    for operator, tests in (statement.get("Condition") or {}).items():
        wanted = tests.get("ResourceType", [])
        wanted = [wanted] if isinstance(wanted, str) else wanted
        if operator == "StringEquals" and change.resource_type not in wanted:
            return False
        if operator == "StringLike" and not _policy_matches(wanted, change.resource_type):
            return False
    return True


def stack_policy_denial(policy_body: str, change: cfn_models.Change) -> str | None:
    """Why the stack policy denies this change of an update, or None when it allows it."""
    action = _policy_action(change)
    if not policy_body or action is None:
        return None
    statements = json.loads(policy_body).get("Statement", [])
    if isinstance(statements, dict):
        statements = [statements]
    resource = f"LogicalResourceId/{change.logical_resource_id}"
    applying = [
        (number, s)
        for number, s in enumerate(statements, start=1)
        if _statement_applies(s, action, change)
    ]
    for number, statement in applying:
        if statement.get("Effect") == "Deny":
            return (
                f"Action denied by stack policy: Statement [#{number}] does not allow "
                f"[{action}] for resource [{resource}]"
            )
    if any(statement.get("Effect") == "Allow" for _, statement in applying):
        return None
    return f"Action not allowed by stack policy: no statement allows [{action}] for [{resource}]"


def _execute_change_set(
    self: cfn_models.CloudFormationBackend, change_set_name: str, stack_name: str | None = None
) -> None:
    """moto's execution, but an update that the stack's policy denies fails and rolls back:
    the stack keeps its resources and template, and is UPDATE_ROLLBACK_COMPLETE."""
    change_set = self.change_sets.get(change_set_name) or next(
        (c for c in self.change_sets.values() if c.change_set_name == change_set_name), None
    )
    stack = self.stacks.get(change_set.stack_id) if change_set is not None else None
    if change_set is None or stack is None or change_set.change_set_type != "UPDATE":
        return _moto_execute_change_set(self, change_set_name, stack_name)
    denied = [
        (change, reason)
        for change in change_set.changes or []
        if (reason := stack_policy_denial(stack.policy, change))
    ]
    if not denied:
        return _moto_execute_change_set(self, change_set_name, stack_name)
    stack._add_stack_event("UPDATE_IN_PROGRESS", resource_status_reason="User Initiated")
    for change, reason in denied:
        stack.events.append(
            cfn_models.Event(
                stack_id=stack.stack_id,
                stack_name=stack.name,
                logical_resource_id=change.logical_resource_id,
                physical_resource_id="",
                resource_type=change.resource_type,
                resource_status="UPDATE_FAILED",
                resource_status_reason=reason,
                resource_properties=None,
            )
        )
    stack._add_stack_event(
        "UPDATE_ROLLBACK_IN_PROGRESS",
        resource_status_reason="The following resource(s) failed to update: ["
        + ", ".join(c.logical_resource_id for c, _ in denied)
        + "].",
    )
    stack._add_stack_event("UPDATE_ROLLBACK_COMPLETE")
    stack.status = "UPDATE_ROLLBACK_COMPLETE"
    change_set.execution_status = "EXECUTE_FAILED"
    return None


_moto_update_resource = parsing.parse_and_update_resource


def _update_resource(
    logical_id: str,
    resource_json: dict[str, Any],
    resources_map: parsing.ResourceMap,
    account_id: str,
    region_name: str,
) -> Any:
    """moto's update; a resource whose type moto cannot update stays as it was (not dropped).

    moto 5.2.5 holds no object for a conditional AWS::IAM::Policy it deployed (the stats
    role's series reads, with Analytics on), and its update then fails on None (a 500 for
    the whole update); AWS updates the inline policy in place: here it is put again.
    """
    if resources_map._parsed_resources.get(logical_id) is None:
        return parsing.parse_and_create_resource(
            logical_id, resource_json, resources_map, account_id, region_name
        )
    updated = _moto_update_resource(
        logical_id, resource_json, resources_map, account_id, region_name
    )
    return resources_map._parsed_resources.get(logical_id) if updated is None else updated


def _update_table(
    cls: type[Table],
    original_resource: Table,
    new_resource_name: str,
    cloudformation_json: dict[str, Any],
    account_id: str,
    region_name: str,
) -> Table:
    """The table updated in place: DeletionProtectionEnabled, as UpdateTable sets it."""
    protection = cloudformation_json["Properties"].get("DeletionProtectionEnabled", False)
    if isinstance(protection, str):
        protection = protection.lower() == "true"
    backend = dynamodb_backends[account_id][region_name]
    backend.get_table(original_resource.name).deletion_protection_enabled = bool(protection)
    return original_resource


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


# DynamoDB Streams. botocore 1.44's endpoint rules send a request that names a stream
# (DescribeStream, GetShardIterator: StreamArn) to the stream's account endpoint,
# <account>.streams-ddb.<region>.amazonaws.com, and only ListStreams to
# streams.dynamodb.<region>.amazonaws.com, the one host moto 5.2.5 maps to its streams
# backend: in process (mock_aws) the others got moto's 404 "Not yet implemented". A server
# given as AWS_ENDPOINT_URL never saw this (the endpoint overrides the host; moto_server
# dispatches on the signing name and the DynamoDBStreams_ target).
STREAMS_ACCOUNT_HOST = r"https?://(.+)\.streams-ddb\.(.+)\.amazonaws\.com"


def _serve_account_stream_endpoint() -> None:
    if STREAMS_ACCOUNT_HOST not in streams_urls.url_bases:
        streams_urls.url_bases.append(STREAMS_ACCOUNT_HOST)
        backend_index.backend_url_patterns.append(
            ("dynamodbstreams", re.compile(STREAMS_ACCOUNT_HOST))
        )


# A write's stream record. moto 5.2.5 numbers it len(records) + start, unlocked, so two
# writes to different items (which atomic_moto runs alongside each other, as DynamoDB does)
# could get one sequence number; it names us-east-1 as the region whatever the table's; and
# when an event source mapping reads the table's stream it runs the function inside the
# emulator on every write and then empties the stream. On AWS a stream keeps each record for
# 24 hours, under its own increasing sequence number, whoever reads it; and the local stack
# runs event source mappings itself (local/streams.py). An UpdateItem that creates its item
# made two INSERT records in moto (its inner PutItem of the key made one), one on AWS.
_stream_lock = threading.Lock()


def _add_stream_record(self: StreamShard, old: Item | None, new: Item | None) -> None:
    if getattr(_request, "quiet", False):  # the inner PutItem of an UpdateItem
        return
    view = self.table.stream_specification["StreamViewType"]  # type: ignore[index]
    event = "INSERT" if old is None else "REMOVE" if new is None else "MODIFY"
    with _stream_lock:
        sequence = self.starting_sequence_number + len(self.items)
        record = StreamRecord(self.table, view, event, old, new, sequence)
        record.record["awsRegion"] = self.table.region_name
        self.items.append(record)


def _record_streams_as_aws() -> None:
    """Patch stream records in (idempotent: wraps the writes once, whoever wraps them later)."""
    if getattr(StreamShard, "_route_counter_faithful", False):
        return
    StreamShard._route_counter_faithful = True  # type: ignore[attr-defined]
    moto_update_item, moto_table_put = DynamoDBBackend.update_item, Table.put_item

    def update_item(self: DynamoDBBackend, *args: Any, **kwargs: Any) -> Any:
        _request.updating = True
        try:
            return moto_update_item(self, *args, **kwargs)
        finally:
            _request.updating = False

    def table_put(self: Table, *args: Any, **kwargs: Any) -> Any:
        # Per thread: a write to another item meanwhile keeps its record.
        _request.quiet = getattr(_request, "updating", False)
        try:
            return moto_table_put(self, *args, **kwargs)
        finally:
            _request.quiet = False

    StreamShard.add = _add_stream_record  # type: ignore[method-assign]
    DynamoDBBackend.update_item = update_item  # type: ignore[method-assign]
    Table.put_item = table_put  # type: ignore[method-assign]


# Shard iterators. moto keeps every iterator it ever returned, and GetRecords returns a new
# one each call: a poller reading four times a second grew the emulator by some 23 MB an
# hour per mapping. On AWS an iterator expires 15 minutes after it is returned, and
# GetRecords with it answers ExpiredIteratorException.
ITERATOR_LIFETIME = 15 * 60.0
PRUNE_EVERY = 10.0
_clock = time.monotonic
_moto_iterator_init = streams_models.ShardIterator.__init__
_moto_get_records = streams_models.DynamoDBStreamsBackend.get_records


def _issue_iterator(self: streams_models.ShardIterator, *args: Any, **kwargs: Any) -> None:
    _moto_iterator_init(self, *args, **kwargs)
    self.issued = _clock()  # type: ignore[attr-defined]


def _get_records(
    self: streams_models.DynamoDBStreamsBackend, iterator_arn: str, limit: int
) -> dict[str, Any]:
    now = _clock()
    last = getattr(self, "pruned", None)  # when expired ones were last dropped
    if last is None or not 0 <= now - last < PRUNE_EVERY:
        self.pruned = now  # type: ignore[attr-defined]
        for arn, iterator in list(self.shard_iterators.items()):  # a copy: others insert
            if now - getattr(iterator, "issued", now) >= ITERATOR_LIFETIME:
                self.shard_iterators.pop(arn, None)
    iterator = self.shard_iterators.get(iterator_arn)
    if iterator is None or now - getattr(iterator, "issued", now) >= ITERATOR_LIFETIME:
        raise JsonRESTError(
            "ExpiredIteratorException", "Iterator expired: it was returned over 15 minutes ago"
        )
    return _moto_get_records(self, iterator_arn, limit)


# Lambda's GetAccountSettings (GET /2016-08-19/account-settings/), which the deployer reads
# to check a concurrency reservation before deploying it. moto 5.2.5 answers 404 "Not yet
# implemented". AWS answers the region's concurrency limit (1,000 by default; moto's own
# MOTO_LAMBDA_CONCURRENCY_QUOTA models another quota), and UnreservedConcurrentExecutions:
# that limit less every function's reservation (Lambda keeps it at 100 or more).
ACCOUNT_SETTINGS_PATH = r"{0}/(?P<api_version>[^/]+)/account-settings/?$"
DEFAULT_CONCURRENCY_LIMIT = 1000
CODE_SIZE_LIMITS = {  # bytes, Lambda's documented quotas
    "CodeSizeUnzipped": 262_144_000,
    "CodeSizeZipped": 52_428_800,
    "TotalCodeSize": 80_530_636_800,
}


def _get_account_settings(self: lambda_responses.LambdaResponse) -> tuple[int, dict, str]:
    limit = int(os.environ.get("MOTO_LAMBDA_CONCURRENCY_QUOTA") or DEFAULT_CONCURRENCY_LIMIT)
    functions = self.backend.list_functions()
    reserved = sum(int(f.reserved_concurrency or 0) for f in functions)
    code = sum(int(getattr(f, "code_size", 0) or 0) for f in functions)
    settings = {
        "AccountLimit": {
            **CODE_SIZE_LIMITS,
            "ConcurrentExecutions": limit,
            "UnreservedConcurrentExecutions": limit - reserved,
        },
        "AccountUsage": {"FunctionCount": len(functions), "TotalCodeSize": code},
    }
    return 200, {}, json.dumps(settings)


def _serve_lambda_account_settings() -> None:
    lambda_responses.LambdaResponse.get_account_settings = _get_account_settings  # type: ignore[attr-defined]
    lambda_urls.url_paths.setdefault(
        ACCOUNT_SETTINGS_PATH, lambda_responses.LambdaResponse.dispatch
    )


_moto_parse_key_condition = dynamodb_responses.parse_expression
# A word of a key condition that is not an attribute name: its operators and functions.
KEY_CONDITION_WORDS = {"AND", "BETWEEN", "BEGINS_WITH"}


def _parse_key_condition(key_condition_expression: str, *args: Any, **kwargs: Any) -> Any:
    """AWS refuses a KeyConditionExpression that names an attribute by a reserved word
    ("Invalid KeyConditionExpression: Attribute name is a reserved keyword; reserved
    keyword: hash", aws-sdk-php#1233); moto 5.2.5 checks condition, filter, projection and
    update expressions for them, not key conditions."""
    for word in re.findall(r"(?<![#:\w])[A-Za-z_]\w*", key_condition_expression):
        upper = word.upper()
        if upper not in KEY_CONDITION_WORDS and upper in ReservedKeywords.get_reserved_keywords():
            raise MockValidationException(
                "Invalid KeyConditionExpression: Attribute name is a reserved keyword; "
                f"reserved keyword: {word}"
            )
    return _moto_parse_key_condition(key_condition_expression, *args, **kwargs)


# AWS::SecretsManager::Secret. moto 5.2.5 has no CloudFormation model for it: a stack that
# declares one deploys without it (a warning), its Ref is the bare logical id, and nothing is
# in Secrets Manager. As AWS does: the secret is created with its SecretString, or one that
# GenerateSecretString makes (from a cryptographic source, as Secrets Manager's
# GetRandomPassword: moto's own generator is Python's seeded `random`); its Ref and its Id
# are its ARN; a stack delete deletes it.
PUNCTUATION = string.punctuation  # what ExcludePunctuation removes (GetRandomPassword's set)


def generated_secret_string(spec: dict[str, Any]) -> str:
    """A value as GenerateSecretString describes it (PasswordLength 32 by default; every
    included kind of character at least once unless RequireEachIncludedType is false; with
    GenerateStringKey, that key added to the JSON of SecretStringTemplate)."""

    def flag(name: str, default: bool = False) -> bool:
        value = spec.get(name, default)
        return value.lower() == "true" if isinstance(value, str) else bool(value)

    excluded = set(spec.get("ExcludeCharacters", ""))
    kinds = [
        kind
        for kind, off in (
            (string.ascii_lowercase, flag("ExcludeLowercase")),
            (string.ascii_uppercase, flag("ExcludeUppercase")),
            (string.digits, flag("ExcludeNumbers")),
            (PUNCTUATION, flag("ExcludePunctuation")),
            (" ", not flag("IncludeSpace")),
        )
        if not off
    ]
    kinds = [kept for kept in ("".join(c for c in k if c not in excluded) for k in kinds) if kept]
    length = int(spec.get("PasswordLength", 32))
    if not kinds or not 1 <= length <= 4096:
        raise ValueError("GenerateSecretString: no character left to use or bad PasswordLength")
    alphabet = "".join(kinds)
    while True:
        value = "".join(secrets.choice(alphabet) for _ in range(length))
        wanted = flag("RequireEachIncludedType", True) and length >= len(kinds)
        if not wanted or all(any(c in kind for c in value) for kind in kinds):
            break
    key = spec.get("GenerateStringKey")
    if key:
        return json.dumps({**json.loads(spec.get("SecretStringTemplate", "{}")), key: value})
    return value


class KnownByPhysicalId:
    """A resource our models make: its Ref and its GetAtt Id are its physical id. A mixin,
    not a CloudFormationModel: moto lists only that class's direct subclasses."""

    def __init__(self, physical_id: str) -> None:
        self.physical_id = physical_id

    @property
    def physical_resource_id(self) -> str:
        return self.physical_id

    @classmethod
    def has_cfn_attr(cls, attr: str) -> bool:
        return attr == "Id"

    def get_cfn_attribute(self, attribute_name: str) -> str:
        if attribute_name == "Id":
            return self.physical_id
        raise UnformattedGetAttTemplateException()


class CloudFormationSecret(KnownByPhysicalId, CloudFormationModel):
    """A secret a stack made: its ARN is its physical id."""

    @staticmethod
    def cloudformation_name_type() -> str:
        return "Name"

    @staticmethod
    def cloudformation_type() -> str:
        return "AWS::SecretsManager::Secret"

    @classmethod
    def create_from_cloudformation_json(  # type: ignore[misc]
        cls,
        resource_name: str,
        cloudformation_json: dict[str, Any],
        account_id: str,
        region_name: str,
        **kwargs: Any,
    ) -> CloudFormationSecret:
        props = cloudformation_json.get("Properties", {})
        value = props.get("SecretString")
        if value is None:
            value = generated_secret_string(props.get("GenerateSecretString", {}))
        created = secretsmanager_backends[account_id][region_name].create_secret(
            name=resource_name,
            secret_string=value,
            secret_binary=None,
            description=props.get("Description"),
            tags=props.get("Tags"),
            kms_key_id=props.get("KmsKeyId"),
            client_request_token=None,
            replica_regions=[],
            force_overwrite=False,
        )
        return cls(json.loads(created)["ARN"])

    @classmethod
    def update_from_cloudformation_json(  # type: ignore[misc]
        cls,
        original_resource: CloudFormationSecret,
        new_resource_name: str,
        cloudformation_json: dict[str, Any],
        account_id: str,
        region_name: str,
    ) -> CloudFormationSecret:
        # Kept as it was, value included: what our template may change (Description,
        # KmsKeyId) keeps the secret's value on AWS too
        return original_resource

    @classmethod
    def delete_from_cloudformation_json(  # type: ignore[misc]
        cls,
        resource_name: str,
        cloudformation_json: dict[str, Any],
        account_id: str,
        region_name: str,
    ) -> None:
        backend = secretsmanager_backends[account_id][region_name]
        backend.delete_secret(resource_name, None, force_delete_without_recovery=True)


def _serve_stack_models() -> None:
    # moto lists its CloudFormation models once (lru_cache): list ours (the secret, the
    # usage plan) too
    for cached in (parsing.get_model_list, parsing.get_model_map, parsing.get_name_type_map):
        cached.cache_clear()


# A REST API's BinaryMediaTypes: moto 5.2.5 creates the API from a template without them (and
# cannot update one), where API Gateway keeps them; the local API applies what the
# emulator's GetRestApi answers (local/events.py).
_moto_create_rest_api = RestAPI.create_from_cloudformation_json.__func__  # type: ignore[attr-defined]


def _create_rest_api(cls: type[RestAPI], *args: Any, **kwargs: Any) -> RestAPI:
    api = _moto_create_rest_api(cls, *args, **kwargs)
    cloudformation_json = kwargs.get("cloudformation_json") or args[1]
    api.binaryMediaTypes = list(cloudformation_json["Properties"].get("BinaryMediaTypes") or [])
    return api


def _update_rest_api(
    cls: type[RestAPI],
    original_resource: RestAPI,
    new_resource_name: str,
    cloudformation_json: dict[str, Any],
    account_id: str,
    region_name: str,
) -> RestAPI:
    """BinaryMediaTypes updated in place, as API Gateway does (the rest as moto leaves it)."""
    types = cloudformation_json["Properties"].get("BinaryMediaTypes") or []
    original_resource.binaryMediaTypes = list(types)
    return original_resource


# A String parameter given to an Integer property: CloudFormation converts "10000" to 10000
# (our whole-number parameters are Strings with an exact pattern, as a Number parameter takes
# 1.5); moto hands the event source mapping the text, which it then compares with numbers.
MAPPING_INTEGERS = (
    "BatchSize",
    "MaximumBatchingWindowInSeconds",
    "MaximumRecordAgeInSeconds",
    "MaximumRetryAttempts",
    "ParallelizationFactor",
    "TumblingWindowInSeconds",
)


def _integer_properties(cloudformation_json: dict[str, Any]) -> dict[str, Any]:
    properties = dict(cloudformation_json.get("Properties", {}))
    for name in MAPPING_INTEGERS:
        value = properties.get(name)
        if isinstance(value, str) and re.fullmatch(r"-?[0-9]+", value):
            properties[name] = int(value)
    return {**cloudformation_json, "Properties": properties}


_moto_create_mapping = EventSourceMapping.create_from_cloudformation_json.__func__  # type: ignore[attr-defined]
_moto_update_mapping = EventSourceMapping.update_from_cloudformation_json.__func__  # type: ignore[attr-defined]


def _create_mapping(
    cls: type, resource_name: str, cloudformation_json: dict, *args: Any, **kwargs: Any
) -> Any:
    converted = _integer_properties(cloudformation_json)
    return _moto_create_mapping(cls, resource_name, converted, *args, **kwargs)


def _update_mapping(cls: type, *args: Any, **kwargs: Any) -> Any:
    kwargs["cloudformation_json"] = _integer_properties(kwargs["cloudformation_json"])
    return _moto_update_mapping(cls, *args, **kwargs)


# ClientIdentity apikey's usage plan (templates/clients.py): moto 5.2.5 has the API's usage
# plans but no CloudFormation type for them (a template's plan is skipped, never made). This
# makes it in the emulator's API Gateway, its numbers as CloudFormation converts a String
# parameter given to an Integer or Double property; the local API enforces it
# (local/api_keys.py).


def usage_plan_payload(properties: dict[str, Any]) -> dict[str, Any]:
    """CreateUsagePlan's input for an AWS::ApiGateway::UsagePlan's properties."""
    quota = properties.get("Quota") or {}
    throttle = properties.get("Throttle") or {}
    return {
        "name": properties.get("UsagePlanName"),
        "description": properties.get("Description"),
        "apiStages": [
            {"apiId": stage.get("ApiId"), "stage": stage.get("Stage")}
            for stage in properties.get("ApiStages") or []
        ],
        "quota": {
            key: int(quota[name]) if name != "Period" else quota[name]
            for name, key in (("Limit", "limit"), ("Period", "period"), ("Offset", "offset"))
            if name in quota
        },
        "throttle": {
            key: convert(throttle[name])
            for name, key, convert in (
                ("RateLimit", "rateLimit", float),
                ("BurstLimit", "burstLimit", int),
            )
            if name in throttle
        },
    }


class CloudFormationUsagePlan(KnownByPhysicalId, CloudFormationModel):
    """A usage plan a stack made: its id is its physical id (Ref)."""

    @staticmethod
    def cloudformation_name_type() -> str:
        return "UsagePlanName"

    @staticmethod
    def cloudformation_type() -> str:
        return "AWS::ApiGateway::UsagePlan"

    @classmethod
    def create_from_cloudformation_json(  # type: ignore[misc]
        cls,
        resource_name: str,
        cloudformation_json: dict[str, Any],
        account_id: str,
        region_name: str,
        **kwargs: Any,
    ) -> CloudFormationUsagePlan:
        payload = usage_plan_payload(cloudformation_json.get("Properties", {}))
        payload["name"] = payload["name"] or resource_name
        plan = apigateway_backends[account_id][region_name].create_usage_plan(payload)
        return cls(plan.id)

    @classmethod
    def update_from_cloudformation_json(  # type: ignore[misc]
        cls,
        original_resource: CloudFormationUsagePlan,
        new_resource_name: str,
        cloudformation_json: dict[str, Any],
        account_id: str,
        region_name: str,
    ) -> CloudFormationUsagePlan:
        """In place, as AWS updates a plan (its keys stay in it)."""
        plan = apigateway_backends[account_id][region_name].get_usage_plan(
            original_resource.physical_id
        )
        payload = usage_plan_payload(cloudformation_json.get("Properties", {}))
        plan.description = payload["description"]
        plan.quota, plan.throttle = payload["quota"], payload["throttle"]
        return original_resource

    @classmethod
    def delete_from_cloudformation_json(  # type: ignore[misc]
        cls,
        resource_name: str,
        cloudformation_json: dict[str, Any],
        account_id: str,
        region_name: str,
    ) -> None:
        backend = apigateway_backends[account_id][region_name]
        backend.usage_plans.pop(resource_name, None)
        backend.usage_plan_keys.pop(resource_name, None)


def apply() -> None:
    """Patch moto in this process (idempotent); serve the app through wrap()."""
    parsing.ResourceMap._delete_resource = _delete_unless_retained  # type: ignore[method-assign]
    policy_conditions.CONDITION_OPERATIONS["Bool"] = _bool_equals
    access_control.IAMPolicyStatement.is_action_permitted = _statement_permits  # type: ignore[method-assign]
    s3_models.FakeBucket.get_permission = _bucket_permission  # type: ignore[method-assign]
    parsing.ResourceMap.build_resource_diff = _resource_diff  # type: ignore[method-assign]
    parsing.parse_and_update_resource = _update_resource
    parsing.ResourceMap.update = _update_map  # type: ignore[method-assign]
    cfn_models.ChangeSet.diff = _change_set_diff  # type: ignore[method-assign]
    cfn_models.CloudFormationBackend.execute_change_set = _execute_change_set  # type: ignore[method-assign]
    Table.update_from_cloudformation_json = classmethod(_update_table)  # type: ignore[assignment]
    RestAPI.create_from_cloudformation_json = classmethod(_create_rest_api)  # type: ignore[assignment]
    RestAPI.update_from_cloudformation_json = classmethod(_update_rest_api)  # type: ignore[assignment]
    _serve_account_stream_endpoint()
    _record_streams_as_aws()
    streams_models.ShardIterator.__init__ = _issue_iterator  # type: ignore[method-assign]
    streams_models.DynamoDBStreamsBackend.get_records = _get_records  # type: ignore[method-assign]
    dynamodb_responses.parse_expression = _parse_key_condition
    _serve_stack_models()
    _serve_lambda_account_settings()
    EventSourceMapping.create_from_cloudformation_json = classmethod(_create_mapping)  # type: ignore[assignment]
    EventSourceMapping.update_from_cloudformation_json = classmethod(_update_mapping)  # type: ignore[assignment]
