"""The aggregator's plumbing: the event source mapping from the counter table's stream,
the queue that keeps what it gave up on, and the alarms that say it is behind."""

from troposphere import GetAtt, If, NoValue, Output, Ref
from troposphere.awslambda import DestinationConfig, EventSourceMapping, OnFailure
from troposphere.cloudwatch import Alarm
from troposphere.dynamodb import Table
from troposphere.sns import Topic
from troposphere.sqs import Queue

from templates.monitoring import alarm
from templates.parameters import StackParameters

# SQS's longest retention: time to read what failed and replay it from the table.
FAILURE_RETENTION_SECONDS = 14 * 24 * 3600
# Attempts before a batch goes to the failure queue. Each write is idempotent, so retries
# are harmless; the stream keeps records 24 hours, which bounds them anyway.
MAXIMUM_RETRY_ATTEMPTS = 50
# IteratorAge: how far behind the stream the aggregator is (ms); the series lag by as much.
ITERATOR_AGE_ALARM_MS = 5 * 60 * 1000


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
    it. An exception bisects the batch, so one poison record cannot stall the shard.
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
        DestinationConfig=DestinationConfig(OnFailure=OnFailure(Destination=GetAtt(queue, "Arn"))),
    )


def aggregator_alarms(function, queue: Queue, topic: Topic) -> list[Alarm]:
    return [
        alarm(
            "AggregatorIteratorAge",
            topic,
            "The aggregator is over 5 minutes behind the counter table's stream for 3 of "
            "the last 5 minutes: the hit series lag (records older than 24 hours are lost).",
            "AWS/Lambda",
            "IteratorAge",
            {"FunctionName": Ref(function)},
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


def outputs(series: Table, queue: Queue, condition: str) -> list[Output]:
    return [
        Output(
            "SeriesTableName",
            Condition=condition,
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
