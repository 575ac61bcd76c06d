"""The counter table: one item per route."""

from troposphere import If, NoValue, Ref
from troposphere.dynamodb import (
    AttributeDefinition,
    KeySchema,
    PointInTimeRecoverySpecification,
    ProvisionedThroughput,
    SSESpecification,
    Table,
)

from templates.parameters import StackParameters

# Changing either of these makes CloudFormation replace the table and lose every count.
# tests/unit/test_data_protection.py guards them.
COUNTER_TABLE_ID = "CounterTable"
PARTITION_KEY = "route"


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
