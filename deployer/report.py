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
    }
    lines += [f"      {k:<19}  {v}" for k, v in derived.items()]
    return lines, url
