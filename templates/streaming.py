"""The aggregator's plumbing: the event source mapping from the counter table's stream,
the queue that keeps what it gave up on, and the alarms that say it is behind."""

from troposphere import GetAtt, If, NoValue, Output, Ref, Sub
from troposphere.awslambda import DestinationConfig, EventSourceMapping, OnFailure
from troposphere.cloudwatch import CompositeAlarm
from troposphere.dynamodb import Table
from troposphere.sns import Topic
from troposphere.sqs import Queue

from templates.monitoring import alarm, sub_ref
from templates.parameters import StackParameters

# SQS's longest retention: time to read what failed and replay it from the table.
FAILURE_RETENTION_SECONDS = 14 * 24 * 3600
# Attempts before a batch goes to the failure queue. Each write is idempotent, so retries
# are harmless; the stream keeps records 24 hours, which bounds them anyway.
MAXIMUM_RETRY_ATTEMPTS = 50
# A tumbling window makes Lambda name the batch's shard in the event (`shardId`): the
# aggregator adds each shard's hits to its own part of the all-routes items, so parallel
# shards do not cancel each other's transactions. The aggregator keeps no window state (it
# answers an empty one); the longest window (Lambda's maximum, 15 minutes) cuts batches
# at its boundaries least often.
TUMBLING_WINDOW_SECONDS = 900
# IteratorAge: how far behind the stream the aggregator is (ms); the series lag by as much.
ITERATOR_AGE_ALARM_MS = 5 * 60 * 1000
# The metric handler/aggregator.py writes (CloudWatch embedded metric format, in its log
# line) for the records of a batch it hands back to Lambda to retry (ReportBatchItemFailures):
# the batch did not fail, so Lambda counts no error. The same names as the handler's.
METRICS_NAMESPACE = "RouteCounter"
RECORDS_NOT_AGGREGATED = "RecordsNotAggregated"
# The stream mapping never invokes the aggregator (the role or the KMS key refuses the
# stream): no IteratorAge, no error, no invocation. Paged when the counter wrote in each of
# two consecutive windows of this length and the aggregator ran in neither.
SILENT_STREAM_WINDOW_SECONDS = 15 * 60


def failure_queue(params: StackParameters) -> Queue:
    """Where Lambda sends a description (shard, sequence numbers) of each batch the
    aggregator gave up on. Encrypted: with KmsKeyArn when given, else SQS managed keys.
    Operational data, like the logs: it goes with the stack (the counts stay in the table)."""
    has_key = params.has_kms_key
    return Queue(
        "AggregatorFailureQueue",
        DeletionPolicy="Delete",
        UpdateReplacePolicy="Delete",
        MessageRetentionPeriod=FAILURE_RETENTION_SECONDS,
        KmsMasterKeyId=If(has_key, Ref(params.kms_key_arn), NoValue),
        SqsManagedSseEnabled=If(has_key, NoValue, True),
    )


def stream_mapping(
    table: Table, function, queue: Queue, params: StackParameters
) -> EventSourceMapping:
    """The counter table's stream into the aggregator, from the oldest record kept, in
    batches of AggregatorBatchSize records or AggregatorBatchingWindowSeconds: at most 1
    write per (route, bucket) pair of a batch, so longer batches write less per hit.

    A fault reports the first failed record (ReportBatchItemFailures): Lambda retries from
    it. An exception bisects the batch, so one poison record cannot stall the shard. The
    tumbling window is there for the shard's id in the event (TUMBLING_WINDOW_SECONDS).
    """
    return EventSourceMapping(
        "AggregatorStreamMapping",
        EventSourceArn=GetAtt(table, "StreamArn"),
        FunctionName=Ref(function),
        StartingPosition="TRIM_HORIZON",
        BatchSize=Ref(params.aggregator_batch_size),
        MaximumBatchingWindowInSeconds=Ref(params.aggregator_batching_window),
        BisectBatchOnFunctionError=True,
        FunctionResponseTypes=["ReportBatchItemFailures"],
        MaximumRetryAttempts=MAXIMUM_RETRY_ATTEMPTS,
        TumblingWindowInSeconds=TUMBLING_WINDOW_SECONDS,
        DestinationConfig=DestinationConfig(OnFailure=OnFailure(Destination=GetAtt(queue, "Arn"))),
    )


def aggregator_alarms(function, queue: Queue, topic: Topic, table: Table) -> list:
    dims = {"FunctionName": Ref(function)}
    return [
        alarm(
            "AggregatorRecordsNotAggregated",
            topic,
            "The aggregator handed records of a batch back to Lambda to retry (a write "
            "failed: throttled, conflicting, out of time); a partial batch failure is no "
            "Lambda error, so AggregatorErrors does not see it.",
            METRICS_NAMESPACE,
            RECORDS_NOT_AGGREGATED,
            dims,
            1,
        ),
        alarm(
            "AggregatorDestinationFailures",
            topic,
            "Lambda could not send the description of a batch the aggregator gave up on to "
            "its failure queue (queue policy, KMS key): that batch is lost without a trace.",
            "AWS/Lambda",
            "DestinationDeliveryFailures",
            dims,
            1,
        ),
        *silent_stream_alarms(function, topic, table),
        alarm(
            "AggregatorIteratorAge",
            topic,
            "The aggregator is over 5 minutes behind the counter table's stream for 3 of "
            "the last 5 minutes: the hit series lag (records older than 24 hours are lost).",
            "AWS/Lambda",
            "IteratorAge",
            dims,
            ITERATOR_AGE_ALARM_MS,
            statistic="Maximum",
            evaluation_periods=5,
            datapoints=3,
        ),
        alarm(
            "AggregatorGaveUp",
            topic,
            "The aggregator gave up on a batch of stream records (see its failure queue).",
            "AWS/SQS",
            "ApproximateNumberOfMessagesVisible",
            {"QueueName": GetAtt(queue, "QueueName")},
            1,
            statistic="Maximum",
        ),
    ]


def silent_stream_alarms(function, topic: Topic, table: Table) -> list:
    """AggregatorNotInvoked: the counter table takes writes, each a stream record, while
    Lambda invokes the aggregator not at all.

    A mapping that cannot read its stream (the role lacks an action, the KMS key refuses it)
    invokes nothing, so IteratorAge, Errors and the failure queue all stay silent. Lambda
    sends Invocations only for invocations that happen: no data is none, so that input
    treats missing data as breaching; the writes input treats it as not (an idle site is
    healthy). Two inputs without actions, one composite alarm that notifies.
    """
    window = {
        "period": SILENT_STREAM_WINDOW_SECONDS,
        "evaluation_periods": 2,
        "datapoints": 2,
    }
    writes = alarm(
        "CounterTableWrites",
        None,
        "Input of AggregatorNotInvoked: the counter wrote (each write is a stream record) "
        "in each of the last two windows.",
        "AWS/DynamoDB",
        "SuccessfulRequestLatency",
        {"TableName": Ref(table), "Operation": "UpdateItem"},
        1,
        statistic="SampleCount",
        **window,
    )
    idle = alarm(
        "AggregatorIdle",
        None,
        "Input of AggregatorNotInvoked: Lambda invoked the aggregator in neither of the "
        "last two windows (no data means no invocation).",
        "AWS/Lambda",
        "Invocations",
        {"FunctionName": Ref(function)},
        1,
        comparison="LessThanThreshold",
        missing="breaching",
        **window,
    )
    minutes = SILENT_STREAM_WINDOW_SECONDS // 60
    silent = CompositeAlarm(
        "AggregatorNotInvoked",
        AlarmName=Sub("${AWS::StackName}-AggregatorNotInvoked"),
        AlarmDescription=f"The counter wrote hits in each of two {minutes}-minute windows and "
        "the stream mapping invoked the aggregator in neither: it cannot read the stream "
        "(IAM or KMS denial, mapping disabled); the series miss those hits.",
        AlarmRule=Sub(f'ALARM("{sub_ref(writes)}") AND ALARM("{sub_ref(idle)}")'),
        AlarmActions=[Ref(topic)],
    )
    return [writes, idle, silent]


def outputs(series: Table, queue: Queue, series_condition: str, condition: str) -> list[Output]:
    """The series table's name (when it exists: series_condition) and the failure queue's URL
    (when the aggregator does: condition)."""
    return [
        Output(
            "SeriesTableName",
            Condition=series_condition,
            Description="DynamoDB series table",
            Value=Ref(series),
        ),
        Output(
            "AggregatorFailureQueueUrl",
            Condition=condition,
            Description="Batches the aggregator gave up on",
            Value=Ref(queue),
        ),
    ]
