"""The counts survive every stack update: nothing may make CloudFormation replace the table.

CloudFormation replaces a table when its logical id, name, key schema or local indexes
change; Retain keeps the data even then, PITR and deletion protection guard the rest.
"""

TABLE = "CounterTable"


def table(resources: dict) -> dict:
    assert TABLE in resources, "renaming the table's logical id replaces the table"
    return resources[TABLE]


def test_counter_table_keeps_its_logical_id_and_type(resources):
    assert table(resources)["Type"] == "AWS::DynamoDB::Table"


def test_key_schema_is_route_string_hash(resources):
    props = table(resources)["Properties"]
    assert props["KeySchema"] == [{"AttributeName": "route", "KeyType": "HASH"}]
    assert {"AttributeName": "route", "AttributeType": "S"} in props["AttributeDefinitions"]


def test_no_property_that_forces_a_replacement(resources):
    props = table(resources)["Properties"]
    # A TableName (or a change of it) replaces the table; so do local indexes and imports.
    assert "TableName" not in props
    assert "LocalSecondaryIndexes" not in props
    assert "ImportSourceSpecification" not in props


def test_table_is_retained_on_delete_and_on_replacement(resources):
    resource = table(resources)
    assert resource["DeletionPolicy"] == "Retain"
    assert resource["UpdateReplacePolicy"] == "Retain"


def test_point_in_time_recovery_and_deletion_protection_are_on(resources):
    props = table(resources)["Properties"]
    assert props["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
    assert props["DeletionProtectionEnabled"] is True


def test_table_is_never_conditional(resources):
    # A Condition on the table would delete it (or retain it orphaned) when false.
    assert "Condition" not in table(resources)
