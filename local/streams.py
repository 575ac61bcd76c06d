"""Event source mappings from a DynamoDB table's stream, run as Lambda runs them.

For each AWS::Lambda::EventSourceMapping whose source is a table's stream, a poller reads
the emulator's stream (DescribeStream, GetShardIterator, GetRecords, as Lambda does, four
times a second) and invokes the target function's inline code with the records in Lambda's
event shape ({"Records": [...]}, each with eventSourceARN and ApproximateCreationDateTime in
epoch seconds). It honours BatchSize, MaximumBatchingWindowInSeconds, StartingPosition,
FunctionResponseTypes ReportBatchItemFailures (the batch is retried from the first failed
sequence number), BisectBatchOnFunctionError, MaximumRetryAttempts and an SQS OnFailure
destination (the invocation record Lambda sends there), and TumblingWindowInSeconds: a batch
holds the records of one window (by their ApproximateCreationDateTime), and its event names
the shard, the window and the state the function returned for it (window_event(); an answer
without `state` fails the invocation); the window's final invocation comes when the next
window's records do. README.md says what it does not.
"""

from __future__ import annotations

import base64
import datetime as dt
import functools
import json
import threading
import time
import traceback
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from deployer.template_reading import (
    TemplateError,
    condition_holds,
    parameter_values,
    ref_name,
    resolve_ref,
)
from local.runtime import Function

POLL_EVERY = 0.25  # Lambda polls a DynamoDB stream's shards four times a second
MAPPING_TYPE = "AWS::Lambda::EventSourceMapping"
# Properties that change which records reach the function, or the event's shape: a mapping
# that declares one is refused rather than run differently from AWS.
NOT_EMULATED = ("FilterCriteria",)


@dataclass
class StreamMapping:
    """One event source mapping from a table's stream, as the template declares it."""

    logical_id: str
    function: str  # the target function's logical id
    table: str  # the source table's logical id
    starting_position: str = "LATEST"
    batch_size: int = 100
    window: float = 0.0  # MaximumBatchingWindowInSeconds
    report_item_failures: bool = False
    bisect: bool = False
    max_retries: int = -1  # -1: until the record expires (24 hours on AWS)
    on_failure: str | None = None  # the OnFailure destination's logical id
    tumbling_window: int = 0  # TumblingWindowInSeconds (0: none)


def _logical_id(value: Any) -> str | None:
    """The resource a Ref or Fn::GetAtt names (None for anything else)."""
    if ref_name(value) is not None:
        return ref_name(value)
    if isinstance(value, dict) and "Fn::GetAtt" in value:
        target = value["Fn::GetAtt"]
        return target[0] if isinstance(target, list) else target.split(".")[0]
    return None


def _flag(value: Any) -> bool:
    return value is True or str(value).lower() == "true"


def _setting(logical_id: str, props: dict, name: str, default: Any, params: dict) -> Any:
    """A property's value: as written, or the parameter it Refs."""
    value = resolve_ref(props.get(name, default), params)
    if isinstance(value, dict):
        raise TemplateError(f"{logical_id}: {name} must be a value or a Ref to a parameter")
    return value


def stream_mappings(
    template: dict,
    params: dict[str, str] | None = None,
    warn: Callable[[str], None] = lambda line: print(line, flush=True),
) -> list[StreamMapping]:
    """The template's enabled event source mappings whose source is a table's StreamArn,
    with params (every parameter's value) resolved; warn names each mapping from another
    source (it does not run locally)."""
    resources = template.get("Resources", {})
    params = parameter_values(template, params or {})  # a parameter not given: its default
    found = []
    for logical_id, resource in sorted(resources.items()):
        if resource.get("Type") != MAPPING_TYPE:
            continue
        condition = resource.get("Condition")  # e.g. HasAnalytics: Analytics=off has none
        if condition and not condition_holds(template, condition, params or {}):
            continue
        props = resource.get("Properties", {})
        source = props.get("EventSourceArn")
        source = source.get("Fn::GetAtt") if isinstance(source, dict) else None
        if isinstance(source, str):
            source = source.split(".", 1)
        table = source[0] if isinstance(source, list) and len(source) == 2 else None
        if resources.get(table, {}).get("Type") != "AWS::DynamoDB::Table" or (
            source[1] != "StreamArn"  # type: ignore[index]
        ):
            warn(f"{logical_id}: does not run locally: only mappings from a table's stream do")
            continue

        setting = functools.partial(_setting, logical_id, props, params=params or {})
        if not _flag(setting("Enabled", True)):
            continue
        declared = [name for name in NOT_EMULATED if name in props]
        if declared:
            raise TemplateError(f"{logical_id}: {', '.join(declared)} is not emulated locally")
        function = _logical_id(props.get("FunctionName"))
        if resources.get(function or "", {}).get("Type") != "AWS::Lambda::Function":
            raise TemplateError(f"{logical_id}: FunctionName must Ref a function of the template")
        on_failure = props.get("DestinationConfig", {}).get("OnFailure", {}).get("Destination")
        if on_failure and not _logical_id(on_failure):
            raise TemplateError(
                f"{logical_id}: the OnFailure destination must be a queue of the template"
            )
        found.append(
            StreamMapping(
                logical_id=logical_id,
                function=function,  # type: ignore[arg-type]
                table=table,
                starting_position=setting("StartingPosition", "LATEST"),
                batch_size=int(setting("BatchSize", 100)),
                window=float(setting("MaximumBatchingWindowInSeconds", 0)),
                report_item_failures="ReportBatchItemFailures"
                in props.get("FunctionResponseTypes", []),
                bisect=_flag(setting("BisectBatchOnFunctionError", False)),
                max_retries=int(setting("MaximumRetryAttempts", -1)),
                on_failure=_logical_id(on_failure) if on_failure else None,
                tumbling_window=int(setting("TumblingWindowInSeconds", 0)),
            )
        )
    return found


def _wire(value: Any) -> Any:
    """A record as GetRecords sent it: boto3 parsed binaries to bytes, times to datetimes."""
    if isinstance(value, dict):
        return {k: _wire(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_wire(v) for v in value]
    if isinstance(value, (bytes, bytearray)):
        return base64.b64encode(value).decode()
    if isinstance(value, dt.datetime):
        return int(value.timestamp())  # Lambda passes epoch seconds
    return value


def stream_event(records: list[dict], stream_arn: str) -> dict:
    """The event one invocation of a mapping from a table's stream receives: the GetRecords
    records as sent on the wire, each naming the stream (eventSourceARN)."""
    return {"Records": [{**_wire(record), "eventSourceARN": stream_arn} for record in records]}


def window_of(record: dict, seconds: int) -> int:
    """The start (epoch seconds) of the tumbling window a record belongs to: Lambda draws the
    boundaries by the time the record was put in the stream."""
    created = record["dynamodb"]["ApproximateCreationDateTime"]
    created = created.timestamp() if isinstance(created, dt.datetime) else float(created)
    return int(created) // seconds * seconds


def window_event(
    records: list[dict],
    stream_arn: str,
    shard_id: str,
    start: int,
    seconds: int,
    state: dict,
    final: bool = False,
) -> dict:
    """The event of an invocation of a mapping with a tumbling window (TumblingWindowInSeconds):
    the records, and beside them the shard they come from, the window, the state the function
    returned last in that window ({} at its start), and whether this is the window's final
    invocation (no records: the window is over)."""

    def iso(moment: int) -> str:
        return dt.datetime.fromtimestamp(moment, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")

    return {
        **stream_event(records, stream_arn),
        "window": {"start": iso(start), "end": iso(start + seconds)},
        "state": state,
        "shardId": shard_id,
        "eventSourceARN": stream_arn,
        "isFinalInvokeForWindow": final,
        "isWindowTerminatedEarly": False,
    }


def _iso(moment: dt.datetime | float) -> str:
    if not isinstance(moment, dt.datetime):  # a record saved undelivered: epoch seconds
        moment = dt.datetime.fromtimestamp(moment, dt.UTC)
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.") + (
        f"{moment.microsecond // 1000:03d}Z"
    )


class BatchFailed(Exception):
    """The function failed a batch: records from `first` on are to be retried."""

    def __init__(self, first: int, error: str | None) -> None:
        super().__init__(error or "batch item failures")
        self.first = first  # index into the batch of the first record to retry
        self.error = error  # "Unhandled" for a function error; None for reported failures


class StreamPoller:
    """Runs one mapping: polls its stream, batches, invokes, retries, reports failures."""

    def __init__(
        self,
        mapping: StreamMapping,
        function: Function,
        stream_arn: str,
        streams: Any,
        send_failure: Callable[[dict], None] | None,
        log: Callable[[str], None],
        latest: bool = False,
        stream_end: int | None = None,
        replay: list[dict] | None = None,
    ) -> None:
        """latest: start at the stream's end whatever StartingPosition says (the stack's own
        restore of saved tables wrote the records before it). stream_end: the sequence
        number of the stream's last record now (0: it is empty), given when the stack saves
        what is undelivered: a save reads the stream again from where this poller is, and
        LATEST is no such place (it moves on). replay: records an earlier run saved
        undelivered, delivered first."""
        self.mapping = mapping
        self.function = function
        self.stream_arn = stream_arn
        self._streams = streams
        self._send_failure = send_failure
        self._log = log
        self._stopping = threading.Event()
        self._draining = threading.Event()  # stopping: deliver what is there, then end
        (shard,) = streams.describe_stream(StreamArn=stream_arn)["StreamDescription"]["Shards"]
        self.shard_id = shard["ShardId"]
        self._position = {"ShardIteratorType": "LATEST" if latest else mapping.starting_position}
        if self._position["ShardIteratorType"] == "LATEST" and stream_end is not None:
            empty = {"ShardIteratorType": "TRIM_HORIZON"}  # the same place, one that stays
            self._position = _after(stream_end) if stream_end else empty
        # Whether the position is one to read from again (not LATEST, which moves on).
        self._known = self._position["ShardIteratorType"] != "LATEST"
        self._iterator = self._new_iterator()
        self._lock = threading.Lock()  # the buffer, the batch in flight, the position
        self._buffer: list[dict] = list(replay or [])
        self._in_flight: list[dict] = []  # the batch being delivered
        self._first_buffered = time.monotonic() if replay else 0.0  # the oldest's read time
        self._failing = False  # the last read failed (said once per run of failures)
        self._window: int | None = None  # the tumbling window being delivered, its state
        self._state: dict = {}
        self._thread = threading.Thread(
            target=self._run, name=f"stream-{mapping.logical_id}", daemon=True
        )

    def start(self) -> None:
        self._thread.start()

    def stop(self, drain_timeout: float = 5.0) -> None:
        """Deliver what the stream holds by now (within drain_timeout), then stop polling;
        a batch being invoked finishes first (within its function's Timeout)."""
        self._draining.set()
        if self._thread.is_alive():
            self._thread.join(drain_timeout)
        self._stopping.set()
        if self._thread.is_alive():
            self._thread.join(self.function.spec.timeout + 1)

    def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                draining = self._draining.is_set()
                if (
                    len(self._buffer) < self.mapping.batch_size
                    and not self._read()
                    and (draining and not self._buffer)
                ):
                    return
                full = draining or len(self._buffer) >= self.mapping.batch_size
                waited = time.monotonic() - self._first_buffered
                if self._buffer and (full or waited >= self.mapping.window):
                    with self._lock:
                        batch = self._in_flight = self._one_window(
                            self._buffer[: self.mapping.batch_size]
                        )
                        del self._buffer[: len(batch)]
                    self._first_buffered = time.monotonic()
                    self._deliver(batch)
                    with self._lock:
                        self._in_flight = []
                    continue
                self._failing = False
            except Exception as error:  # the emulator gone or refusing: say so once, go on
                if not self._failing:
                    self._log(f"{self.mapping.logical_id}: reading the stream failed: {error}")
                self._failing = True
            self._stopping.wait(POLL_EVERY)

    def _new_iterator(self) -> str:
        return self._streams.get_shard_iterator(
            StreamArn=self.stream_arn, ShardId=self.shard_id, **self._position
        )["ShardIterator"]

    def _read(self) -> int:
        """Read what the stream holds past our iterator; how many records came."""
        try:
            answer = self._streams.get_records(ShardIterator=self._iterator, Limit=1000)
        except self._streams.exceptions.ExpiredIteratorException:
            # Unused for 15 minutes (a batch retried that long): go on after the last read.
            self._iterator = self._new_iterator()
            answer = self._streams.get_records(ShardIterator=self._iterator, Limit=1000)
        self._iterator = answer["NextShardIterator"]
        records = answer["Records"]
        with self._lock:
            if records:
                self._position = _after(int(records[-1]["dynamodb"]["SequenceNumber"]))
                self._known = True
            if records and not self._buffer:
                self._first_buffered = time.monotonic()
            self._buffer.extend(records)
        return len(records)

    def held(self) -> tuple[list[dict], dict | None]:
        """The records read and not yet delivered (the batch in flight, then the buffer),
        and where reading goes on (None: LATEST, which cannot be read from again)."""
        with self._lock:
            return self._in_flight + self._buffer, dict(self._position) if self._known else None

    def undelivered(self, held: tuple[list[dict], dict | None], through: int | None) -> list[dict]:
        """The records of `held` (taken earlier by held()) and those the stream holds after
        them up to sequence number `through`, as JSON can hold them: what a restart must
        deliver for the function to see every record up to `through`, if those delivered
        after held() was taken are delivered again (Lambda delivers at least once)."""
        records, position = held
        found = [*records]
        if position is not None and through is not None:
            iterator = self._streams.get_shard_iterator(
                StreamArn=self.stream_arn, ShardId=self.shard_id, **position
            )["ShardIterator"]
            while iterator:
                answer = self._streams.get_records(ShardIterator=iterator, Limit=1000)
                wanted = [
                    r for r in answer["Records"] if int(r["dynamodb"]["SequenceNumber"]) <= through
                ]
                found += wanted
                if len(wanted) < len(answer["Records"]) or not answer["Records"]:
                    break
                iterator = answer.get("NextShardIterator")
        return [_wire(record) for record in found]

    def _one_window(self, records: list[dict]) -> list[dict]:
        """The first records that share a tumbling window (all of them without one)."""
        seconds = self.mapping.tumbling_window
        if not seconds or not records:
            return records
        first = window_of(records[0], seconds)
        return [r for r in records if window_of(r, seconds) == first]

    def _event(self, batch: list[dict]) -> dict:
        seconds = self.mapping.tumbling_window
        if not seconds:
            return stream_event(batch, self.stream_arn)
        start = window_of(batch[0], seconds)
        if self._window is not None and start != self._window:
            self._close_window()
        if start != self._window:
            self._window, self._state = start, {}
        return window_event(batch, self.stream_arn, self.shard_id, start, seconds, self._state)

    def _close_window(self) -> None:
        """The window's final invocation (no records, isFinalInvokeForWindow): sent once the
        next window's records come. Unlike Lambda, which stops the shard until it succeeds,
        a failed one is logged and the window dropped."""
        seconds, start = self.mapping.tumbling_window, self._window
        event = window_event(
            [], self.stream_arn, self.shard_id, start or 0, seconds, self._state, True
        )
        try:
            self.function.invoke(event, str(uuid.uuid4()))
        except Exception as error:
            self._log(f"{self.mapping.logical_id}: a window's final invocation failed: {error}")
        self._window, self._state = None, {}

    def _invoke(self, batch: list[dict]) -> None:
        """One invocation; BatchFailed says from which record to retry."""
        request_id = str(uuid.uuid4())
        try:
            answer = self.function.invoke(self._event(batch), request_id)
        except Exception as error:
            self._log(
                json.dumps(
                    {
                        "eventSourceMapping": self.mapping.logical_id,
                        "requestId": request_id,
                        "records": len(batch),
                        "error": f"{type(error).__name__}: {error}",
                        "traceback": traceback.format_exc(),
                    }
                )
            )
            raise BatchFailed(0, "Unhandled") from None
        if self.mapping.tumbling_window:
            if not isinstance(answer, dict) or not isinstance(answer.get("state"), dict):
                # Lambda: "If the response does not contain a state property, Lambda
                # considers this a failed invocation."
                self._log(f"{self.mapping.logical_id}: the answer has no state: {answer!r}")
                raise BatchFailed(0, "Unhandled")
            self._state = answer["state"]
        if not self.mapping.report_item_failures:
            return
        first = self._first_failed(batch, answer)
        if first is not None:
            raise BatchFailed(first, None)

    @staticmethod
    def _first_failed(batch: list[dict], answer: object) -> int | None:
        """Index of the first record to retry, per Lambda's partial batch response rules:
        none, an empty list or None is success; an identifier that is empty, null, under
        another key or not a sequence number of the batch (as earlier versions of the
        documentation said) fails the whole batch, as does an answer that is no object."""
        if not isinstance(answer, dict) or not answer.get("batchItemFailures"):
            return None if answer is None or isinstance(answer, dict) else 0
        numbers = [record["dynamodb"]["SequenceNumber"] for record in batch]
        failed = []
        for failure in answer["batchItemFailures"]:
            identifier = failure.get("itemIdentifier") if isinstance(failure, dict) else None
            if not identifier or identifier not in numbers:
                return 0
            failed.append(numbers.index(identifier))
        return min(failed)

    def _deliver(self, batch: list[dict]) -> None:
        """Invoke until the batch succeeds, or is given up after MaximumRetryAttempts."""
        # (records, retries so far, invocations that included them so far)
        pending = [(batch, 0, 0)]
        while pending and not self._stopping.is_set():
            records, retries, invocations = pending.pop(0)
            try:
                self._invoke(records)
                continue
            except BatchFailed as failed:
                invocations += 1
                rest = records[failed.first :]
                if failed.error and self.mapping.bisect and len(rest) > 1:
                    half = len(rest) // 2  # splitting uses no retry
                    pending[:0] = [(rest[:half], 0, invocations), (rest[half:], 0, invocations)]
                    continue
                if 0 <= self.mapping.max_retries <= retries:
                    self._give_up(rest, invocations, failed.error)
                    continue
                pending.insert(0, (rest, retries + 1, invocations))
            self._stopping.wait(POLL_EVERY)

    def _give_up(self, records: list[dict], invocations: int, error: str | None) -> None:
        """Skip the records; send the OnFailure destination Lambda's invocation record."""
        self._log(
            f"{self.mapping.logical_id}: {len(records)} records skipped after "
            f"{invocations} invocations (MaximumRetryAttempts {self.mapping.max_retries})"
        )
        if self._send_failure is None:
            return
        first, last = records[0]["dynamodb"], records[-1]["dynamodb"]
        response = {"statusCode": 200, "executedVersion": "$LATEST"}
        if error:
            response["functionError"] = error
        record = {
            "requestContext": {
                "requestId": str(uuid.uuid4()),
                "functionArn": self.function.spec.function_arn,
                "condition": "RetryAttemptsExhausted",
                "approximateInvokeCount": invocations,
            },
            "responseContext": response,
            "version": "1.0",
            "timestamp": _iso(dt.datetime.now(dt.UTC)),
            "DDBStreamBatchInfo": {
                "shardId": self.shard_id,
                "startSequenceNumber": first["SequenceNumber"],
                "endSequenceNumber": last["SequenceNumber"],
                "approximateArrivalOfFirstRecord": _iso(first["ApproximateCreationDateTime"]),
                "approximateArrivalOfLastRecord": _iso(last["ApproximateCreationDateTime"]),
                "batchSize": len(records),
                "streamArn": self.stream_arn,
            },
        }
        try:
            self._send_failure(record)
        except Exception as failure:  # the records are skipped all the same
            self._log(f"{self.mapping.logical_id}: sending the failure record failed: {failure}")


def _after(sequence_number: int) -> dict:
    return {"ShardIteratorType": "AFTER_SEQUENCE_NUMBER", "SequenceNumber": str(sequence_number)}


def queue_sender(sqs: Any, queue_url: str) -> Callable[[dict], None]:
    """Send an invocation record to an SQS queue as one message, as Lambda does."""

    def send(record: dict) -> None:
        sqs.send_message(QueueUrl=queue_url, MessageBody=json.dumps(record))

    return send
