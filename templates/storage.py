"""The counter table: one item per route."""

from troposphere import If, NoValue, Ref
from troposphere.dynamodb import (
    AttributeDefinition,
    KeySchema,
    PointInTimeRecoverySpecification,
    ProvisionedThroughput,
    Table,
)

from templates.parameters import StackParameters

# Changing either of these makes CloudFormation replace the table and lose every count.
# tests/test_template.py guards them.
COUNTER_TABLE_ID = "CounterTable"
PARTITION_KEY = "route"


def counter_table(params: StackParameters) -> Table:
    """The table keeps every count: retained on stack delete and on replacement."""
    return Table(
        COUNTER_TABLE_ID,
        DeletionPolicy="Retain",
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
        DeletionProtectionEnabled=True,
    )
