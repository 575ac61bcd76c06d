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


def test_table_is_retained_on_delete_and_on_replacement_but_not_after_a_failed_create(
    resources,
):
    """RetainExceptOnCreate: a stack delete or an update that drops or replaces the table
    keeps it; only rolling back the create that made it (an empty table) deletes it."""
    resource = table(resources)
    assert resource["DeletionPolicy"] == "RetainExceptOnCreate"
    assert resource["UpdateReplacePolicy"] == "Retain"


def test_deletion_protection_is_off_until_the_stack_exists(template, resources):
    """DynamoDB refuses DeleteTable on a protected table, so a protected table would turn
    the rollback of a failed first create into ROLLBACK_FAILED and an orphan. The
    parameter defaults to off; deploy.sh turns it on once the create has succeeded."""
    props = table(resources)["Properties"]
    assert props["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
    assert props["DeletionProtectionEnabled"] == {"Fn::If": ["ProtectsTable", True, False]}
    assert template["Conditions"]["ProtectsTable"] == {
        "Fn::Equals": [{"Ref": "TableDeletionProtection"}, "true"]
    }
    parameter = template["Parameters"]["TableDeletionProtection"]
    assert parameter["Default"] == "false"
    assert parameter["AllowedValues"] == ["false", "true"]


def test_table_is_never_conditional(resources):
    # A Condition on the table would delete it (or retain it orphaned) when false.
    assert "Condition" not in table(resources)


def test_series_table_is_kept_and_protected_like_the_counter_table(template, resources):
    """Its history cannot be rebuilt (the stream holds 24 hours): retained on delete and
    replacement, PITR, no name; conditional only on Analytics (turned off, the stack drops it
    and RetainExceptOnCreate keeps it). Deletion protection follows the same
    parameter as the counter table's. The table first appears in an update, possibly of a
    stack already protected, and that update's rollback must be able to delete it: deploy.sh
    runs any update that adds a table with TableDeletionProtection=false, then turns it on
    (tests/unit/test_deployer.py, tests/integration/test_deploy.py)."""
    series = resources["SeriesTable"]
    props = series["Properties"]
    assert series["DeletionPolicy"] == "RetainExceptOnCreate"
    assert series["UpdateReplacePolicy"] == "Retain"
    # With Analytics on, or MaxRoutes (the series table keeps its ledger)
    assert series["Condition"] == "HasSeriesTable"
    assert "TableName" not in props
    assert props["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
    assert props["DeletionProtectionEnabled"] == {"Fn::If": ["ProtectsTable", True, False]}
    assert template["Parameters"]["TableDeletionProtection"]["Default"] == "false"
