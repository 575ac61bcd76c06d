"""local/moto_fidelity.py: the emulator keeps what AWS keeps."""

import json

import boto3
import pytest
from moto import mock_aws

from local import moto_fidelity


def table(logical_id: str, policy: str) -> dict:
    return {
        logical_id: {
            "Type": "AWS::DynamoDB::Table",
            "DeletionPolicy": policy,
            "Properties": {
                "AttributeDefinitions": [{"AttributeName": "k", "AttributeType": "S"}],
                "KeySchema": [{"AttributeName": "k", "KeyType": "HASH"}],
                "BillingMode": "PAY_PER_REQUEST",
            },
        }
    }


@pytest.fixture
def aws():
    moto_fidelity.apply()
    with mock_aws():
        yield boto3.client("cloudformation"), boto3.client("dynamodb")


def deploy(cfn, resources: dict, update: bool = False) -> None:
    body = json.dumps({"Resources": resources})
    if update:
        cfn.update_stack(StackName="s", TemplateBody=body)
    else:
        cfn.create_stack(StackName="s", TemplateBody=body)


@pytest.mark.parametrize("policy", ["Retain", "RetainExceptOnCreate"])
def test_deleting_the_stack_keeps_a_retained_table(aws, policy):
    cfn, ddb = aws
    deploy(cfn, {**table("Kept", policy), **table("Gone", "Delete")})
    assert len(ddb.list_tables()["TableNames"]) == 2

    cfn.delete_stack(StackName="s")

    (name,) = ddb.list_tables()["TableNames"]
    assert "Kept" in name


@pytest.mark.parametrize("policy", ["Retain", "RetainExceptOnCreate"])
def test_an_update_that_drops_a_retained_table_keeps_it(aws, policy):
    cfn, ddb = aws
    deploy(cfn, {**table("Kept", policy), **table("Other", "Delete")})

    deploy(cfn, table("Other", "Delete"), update=True)

    names = ddb.list_tables()["TableNames"]
    assert len(names) == 2 and any("Kept" in n for n in names)
