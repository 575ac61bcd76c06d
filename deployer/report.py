"""What the deployer prints: change sets, stack events with progress, failures, outputs.

Pure functions of CloudFormation's answers (as boto3 returns them), tested on their own.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from deployer.s3 import dns_suffix


def change_lines(changes: list[dict]) -> list[str]:
    """One line per resource change: action, logical id, type, and replacement if any."""
    rows = [c["ResourceChange"] for c in changes if "ResourceChange" in c]
    width = max([len(r["LogicalResourceId"]) for r in rows] + [10])
    lines = []
    for r in rows:
        replace = r.get("Replacement")
        note = f"replacement: {replace}" if r["Action"] == "Modify" and replace else ""
        lines.append(
            f"      {r['Action']:<7} {r['LogicalResourceId']:<{width}}  "
            f"{r['ResourceType']:<30} {note}".rstrip()
        )
    return lines


def changed_ids(changes: list[dict]) -> list[str]:
    return [c["ResourceChange"]["LogicalResourceId"] for c in changes if "ResourceChange" in c]


@dataclass
class EventProgress:
    """Follows a stack's events across polls: each printed once, oldest first, with progress.

    ids are the logical ids the operation changes; a resource counts as done when an event
    reports it *_COMPLETE (not a rollback) or DELETE_SKIPPED (a Retain-ed resource: the table).
    Events at or before `since` (the change set's creation) belong to earlier operations.
    """

    stack_id: str
    since: datetime
    ids: list[str]
    seen: set[str] = field(default_factory=set)
    done: set[str] = field(default_factory=set)
    failed: list[tuple[str, str, str]] = field(default_factory=list)
    resource_events: int = 0
    stack_status: str = ""  # the stack's own status, as its latest event reports it

    def feed(self, events: list[dict]) -> list[str]:
        """Lines for the events (newest first, as DescribeStackEvents lists them) not yet shown."""
        lines = []
        for event in reversed(events):
            if event["EventId"] in self.seen or event["Timestamp"] <= self.since:
                continue
            self.seen.add(event["EventId"])
            status = event["ResourceStatus"]
            reason = event.get("ResourceStatusReason") or ""
            logical = event["LogicalResourceId"]
            clock = event["Timestamp"].strftime("%H:%M:%S")
            is_stack = (
                event["ResourceType"] == "AWS::CloudFormation::Stack"
                and event.get("PhysicalResourceId") == self.stack_id
            )
            if is_stack:
                self.stack_status = status
                progress = ""
            else:
                self.resource_events += 1
                if status.endswith("_FAILED"):
                    self.failed.append((logical, status, reason))
                elif (status.endswith("_COMPLETE") or status == "DELETE_SKIPPED") and (
                    "ROLLBACK" not in status and logical in self.ids
                ):
                    self.done.add(logical)
                progress = f"[{len(self.done)}/{len(self.ids)}]"
            line = f"      {clock}  {progress:>7}  {logical:<28} {status:<24} {reason}"
            lines.append(line.rstrip())
        return lines

    def summary(self) -> str:
        if self.resource_events:
            return f"{len(self.done)}/{len(self.ids)} resource changes reported complete"
        return "the endpoint reported no per-resource events"

    def failure_lines(self) -> list[str]:
        return [f"      {logical}  {status}  {reason}" for logical, status, reason in self.failed]


def output_lines(stack: dict, resources: list[dict]) -> tuple[list[str], str]:
    """The stack's Outputs; without any, values derived from its resources, labelled so.

    Returns the lines and the API's URL ("" if unknown).
    """
    found = {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs") or []}
    if found:
        width = max(len(k) for k in found)
        return [f"      {k:<{width}}  {v}" for k, v in found.items()], found.get("ApiUrl", "")
    lines = [
        "      The stack reports no Outputs (moto never does for change-set stacks);",
        "      derived from its resources instead:",
    ]
    physical = {
        r["LogicalResourceId"]: r.get("PhysicalResourceId")
        for r in resources
        if r.get("LogicalResourceId")
    }
    _, partition, _, region, *_ = stack["StackId"].split(":")
    params = {p["ParameterKey"]: p.get("ParameterValue") for p in stack.get("Parameters") or []}
    stage = physical.get("ApiStage") or params.get("StageName")
    url = ""
    if physical.get("CounterApi") and stage:
        host = f"{physical['CounterApi']}.execute-api.{region}.{dns_suffix(partition)}"
        url = f"https://{host}/{stage}/"
    derived = {
        "ApiUrl": url or "(unknown: no RestApi or stage in the stack's resources)",
        "TableName": physical.get("CounterTable") or "(unknown)",
        "CounterFunctionName": physical.get("CounterFunction") or "(unknown)",
        "SeriesTableName": physical.get("SeriesTable") or "(unknown)",
        # a queue's physical id is its URL
        "AggregatorFailureQueueUrl": physical.get("AggregatorFailureQueue") or "(unknown)",
    }
    width = max(len(k) for k in derived)
    lines += [f"      {k:<{width}}  {v}" for k, v in derived.items()]
    return lines, url


# --- what a stack delete keeps ------------------------------------------------------------------

# The resources that hold data, and what each holds: what --delete names as kept or deleted.
TABLE_TYPE = "AWS::DynamoDB::Table"
QUEUE_TYPE = "AWS::SQS::Queue"
HOLDERS = {
    "CounterTable": ("counter table", "every count"),
    "SeriesTable": ("series table", "every route's hits per hour and day"),
    "AggregatorFailureQueue": ("failure queue", "the batches the aggregator gave up on"),
}
# What CloudFormation keeps when the stack is deleted (RetainExceptOnCreate deletes only on
# the rollback of the operation that created the resource).
RETAINED = ("Retain", "RetainExceptOnCreate")


@dataclass
class Fate:
    """What a stack delete does to a resource that holds data, by its DeletionPolicy."""

    logical_id: str
    resource_type: str
    physical_id: str
    policy: str | None  # None: the stack's template could not be read

    @property
    def kept(self) -> bool | None:
        return None if self.policy is None else self.policy in RETAINED

    @property
    def what(self) -> str:
        kind = "table" if self.resource_type == TABLE_TYPE else "queue"
        return HOLDERS.get(self.logical_id, (f"{kind} {self.logical_id}", ""))[0]

    @property
    def holds(self) -> str:
        return HOLDERS.get(self.logical_id, ("", "its items"))[1] or "its items"


def data_fates(template: dict | None, resources: list[dict]) -> list[Fate]:
    """The stack's tables and queues, each with the DeletionPolicy its template gives it.

    From the deployed template when it could be read (a resource it declares but the stack
    lists no physical id for has ""), else from the stack's resources, policy unknown.
    """
    listed = {
        r["LogicalResourceId"]: r
        for r in resources
        if r.get("LogicalResourceId") and r.get("ResourceStatus") != "DELETE_COMPLETE"
    }
    types = (TABLE_TYPE, QUEUE_TYPE)
    if template is None:
        return [
            Fate(logical, r["ResourceType"], r.get("PhysicalResourceId") or "", None)
            for logical, r in listed.items()
            if r.get("ResourceType") in types
        ]
    return [
        Fate(
            logical,
            declared["Type"],
            (listed.get(logical) or {}).get("PhysicalResourceId") or "",
            declared.get("DeletionPolicy", "Delete"),
        )
        for logical, declared in template.get("Resources", {}).items()
        if declared.get("Type") in types
    ]


def fates_summary(fates: list[Fate]) -> str:
    """One sentence for the question before a delete: what stays and what goes."""
    kept = [f.logical_id for f in fates if f.kept]
    gone = [f.logical_id for f in fates if f.kept is False and f.physical_id]
    unknown = [f.logical_id for f in fates if f.kept is None]
    parts = []
    if kept:
        parts.append(f"Kept: {', '.join(kept)}.")
    if gone:
        parts.append(f"Deleted with it: {', '.join(gone)}.")
    if unknown:
        parts.append(f"Unknown (template unreadable): {', '.join(unknown)}.")
    return " ".join(parts)
