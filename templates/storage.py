"""The counter table (one item per route) and the series table (one item per route and
hour or day bucket), which the aggregator fills from the counter table's stream."""

from troposphere import If, NoValue, Ref
from troposphere.dynamodb import (
    AttributeDefinition,
    KeySchema,
    PointInTimeRecoverySpecification,
    ProvisionedThroughput,
    SSESpecification,
    StreamSpecification,
    Table,
    TimeToLiveSpecification,
)

from templates.parameters import StackParameters

# Changing either of these makes CloudFormation replace the table and lose every count.
# tests/unit/test_data_protection.py guards them.
COUNTER_TABLE_ID = "CounterTable"
PARTITION_KEY = "route"
SERIES_TABLE_ID = "SeriesTable"
SORT_KEY = "bucket"
# The attribute DynamoDB's TTL deletes hourly buckets by (epoch seconds, set by the aggregator).
EXPIRES_AT = "expiresAt"


def counter_table(params: StackParameters) -> Table:
    """The table keeps every count: retained on stack delete and on replacement.

    RetainExceptOnCreate: only the rollback of the create that made it deletes it (a failed
    first deploy leaves no empty table behind). That delete is refused while deletion
    protection is on, so protection is a parameter, off until the stack exists.
    """
    return Table(
        COUNTER_TABLE_ID,
        DeletionPolicy="RetainExceptOnCreate",
        UpdateReplacePolicy="Retain",
        AttributeDefinitions=[AttributeDefinition(AttributeName=PARTITION_KEY, AttributeType="S")],
        KeySchema=[KeySchema(AttributeName=PARTITION_KEY, KeyType="HASH")],
        BillingMode=Ref(params.billing_mode),
        ProvisionedThroughput=If(
            params.is_provisioned,
            ProvisionedThroughput(
                ReadCapacityUnits=Ref(params.read_capacity),
                WriteCapacityUnits=Ref(params.write_capacity),
            ),
            NoValue,
        ),
        PointInTimeRecoverySpecification=PointInTimeRecoverySpecification(
            PointInTimeRecoveryEnabled=True
        ),
        DeletionProtectionEnabled=If(params.protects_table, True, False),
        SSESpecification=table_encryption(params),
        # What the aggregator reads, with Analytics on; the old image tells it a hit (count
        # + 1) from a count set by hand or an import. Turning a stream on or off, or changing
        # its view type, is an in-place update of the table (StreamSpecification: "Update
        # requires: No interruption"), never a replacement; turned off, the stream's records
        # go with it; a new view type is a new stream (new StreamArn), so CloudFormation
        # replaces the event source mapping (docs/exactness.md).
        StreamSpecification=If(
            params.has_analytics,
            StreamSpecification(StreamViewType="NEW_AND_OLD_IMAGES"),
            NoValue,
        ),
    )


def series_table(params: StackParameters) -> Table:
    """Hits over time: per route, the highest count seen in each hour ("h#2026-12-01T03")
    and each day ("d#2026-12-01"). Kept like the counter table (its history cannot be
    rebuilt: the stream holds 24 hours); hourly buckets expire by TTL.

    Always on-demand: its writes follow the stream in batches, and provisioned capacity
    without auto scaling would throttle the aggregator behind a burst.

    Only with Analytics on, or MaxRoutes (whose ledger it holds). Turned off, CloudFormation
    removes it from the stack, and RetainExceptOnCreate keeps it (removal is not the rollback
    of its create): the history is never deleted by a parameter. Turned on again, the stack
    creates a new, empty one.
    """
    return Table(
        SERIES_TABLE_ID,
        Condition=params.has_series_table,
        DeletionPolicy="RetainExceptOnCreate",
        UpdateReplacePolicy="Retain",
        AttributeDefinitions=[
            AttributeDefinition(AttributeName=PARTITION_KEY, AttributeType="S"),
            AttributeDefinition(AttributeName=SORT_KEY, AttributeType="S"),
        ],
        KeySchema=[
            KeySchema(AttributeName=PARTITION_KEY, KeyType="HASH"),
            KeySchema(AttributeName=SORT_KEY, KeyType="RANGE"),
        ],
        BillingMode="PAY_PER_REQUEST",
        PointInTimeRecoverySpecification=PointInTimeRecoverySpecification(
            PointInTimeRecoveryEnabled=True
        ),
        # The counter table's parameter. This table first appears in an update of a stack
        # whose TableDeletionProtection may already be true, and the rollback of that update
        # must be able to delete it (RetainExceptOnCreate): deploy.sh runs any update that
        # adds a table with the parameter false, then turns it on (deployer/parameters.py).
        DeletionProtectionEnabled=If(params.protects_table, True, False),
        SSESpecification=table_encryption(params),
        TimeToLiveSpecification=TimeToLiveSpecification(AttributeName=EXPIRES_AT, Enabled=True),
    )


def table_encryption(params: StackParameters) -> SSESpecification:
    """The KmsKeyArn key when one is given; otherwise DynamoDB's AWS owned key (no cost).

    Changing the key is an in-place update of the table, never a replacement.
    """
    has_key = params.has_kms_key
    return SSESpecification(
        SSEEnabled=If(has_key, True, False),
        SSEType=If(has_key, "KMS", NoValue),
        KMSMasterKeyId=If(has_key, Ref(params.kms_key_arn), NoValue),
    )
