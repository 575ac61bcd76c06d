"""local/moto_fidelity.py: the emulator keeps what AWS keeps."""

import json

import boto3
import pytest
from botocore.exceptions import ClientError
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


# --- updates that change only parameter values ------------------------------------------------

PARAMETERS = {"Protect": {"Type": "String", "Default": "false"}, "Path": {"Type": "String"}}
CONDITIONS = {"Protected": {"Fn::Equals": [{"Ref": "Protect"}, "true"]}}


def api_and_table() -> dict:
    """A table protected through a condition, and an API resource (and its child) at a path."""
    resources = table("Table", "RetainExceptOnCreate")
    resources["Table"]["Properties"]["DeletionProtectionEnabled"] = {
        "Fn::If": ["Protected", True, False]
    }
    resources |= {
        "Api": {"Type": "AWS::ApiGateway::RestApi", "Properties": {"Name": "api"}},
        "Top": {
            "Type": "AWS::ApiGateway::Resource",
            "Properties": {
                "RestApiId": {"Ref": "Api"},
                "ParentId": {"Fn::GetAtt": ["Api", "RootResourceId"]},
                "PathPart": {"Ref": "Path"},
            },
        },
        "Below": {
            "Type": "AWS::ApiGateway::Resource",
            "Properties": {
                "RestApiId": {"Ref": "Api"},
                "ParentId": {"Ref": "Top"},
                "PathPart": "{proxy+}",
            },
        },
    }
    return {"Parameters": PARAMETERS, "Conditions": CONDITIONS, "Resources": resources}


def values(**given: str) -> list[dict]:
    return [{"ParameterKey": k, "ParameterValue": v} for k, v in given.items()]


def update_through_change_set(cfn, **given: str) -> list[dict]:
    """A parameter-only update by change set, as deploy.sh makes it; the changes it listed."""
    cfn.create_change_set(
        StackName="s",
        ChangeSetName="c",
        ChangeSetType="UPDATE",
        UsePreviousTemplate=True,
        Parameters=values(**given),
    )
    changes = cfn.describe_change_set(StackName="s", ChangeSetName="c")["Changes"]
    cfn.execute_change_set(StackName="s", ChangeSetName="c")
    return [c["ResourceChange"] for c in changes]


def test_a_parameter_that_reaches_the_table_through_a_condition_updates_it_in_place(aws):
    cfn, ddb = aws
    cfn.create_stack(
        StackName="s", TemplateBody=json.dumps(api_and_table()), Parameters=values(Path="a")
    )
    name = cfn.describe_stack_resource(StackName="s", LogicalResourceId="Table")[
        "StackResourceDetail"
    ]["PhysicalResourceId"]
    assert ddb.describe_table(TableName=name)["Table"]["DeletionProtectionEnabled"] is False

    update_through_change_set(cfn, Protect="true", Path="a")

    assert ddb.describe_table(TableName=name)["Table"]["DeletionProtectionEnabled"] is True
    kept = cfn.describe_stack_resource(StackName="s", LogicalResourceId="Table")
    assert kept["StackResourceDetail"]["PhysicalResourceId"] == name  # the same table
    with pytest.raises(ClientError, match="DeletionProtectionEnabled"):
        ddb.delete_table(TableName=name)


def test_a_parameter_only_change_set_lists_what_it_modifies_and_what_it_replaces(aws):
    cfn, _ = aws
    cfn.create_stack(
        StackName="s", TemplateBody=json.dumps(api_and_table()), Parameters=values(Path="a")
    )

    changes = update_through_change_set(cfn, Protect="true", Path="b")

    listed = {c["LogicalResourceId"]: (c["Action"], c.get("Replacement")) for c in changes}
    assert listed == {
        "Table": ("Modify", "False"),  # DeletionProtectionEnabled: no interruption
        "Top": ("Modify", "True"),  # PathPart: replacement
        "Below": ("Modify", "Conditional"),  # ParentId of a replaced resource
    }


def streamed_table(ddb, name: str = "streamed") -> str:
    ddb.create_table(
        TableName=name,
        KeySchema=[{"AttributeName": "k", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "k", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
        StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"},
    )
    return ddb.describe_table(TableName=name)["Table"]["LatestStreamArn"]


@pytest.mark.parametrize("region", ["us-east-1", "eu-west-1"])
def test_a_table_stream_is_read_through_the_endpoints_botocore_chooses(aws, region):
    """DescribeStream and GetShardIterator go to <account>.streams-ddb.<region>.amazonaws.com;
    moto as shipped answered them 404 "Not yet implemented"."""
    ddb = boto3.client("dynamodb", region_name=region)
    arn = streamed_table(ddb)
    for key in ("a", "b", "a"):
        ddb.update_item(
            TableName="streamed",
            Key={"k": {"S": key}},
            UpdateExpression="ADD n :one",
            ExpressionAttributeValues={":one": {"N": "1"}},
        )
    streams = boto3.client("dynamodbstreams", region_name=region)
    hosts = []
    streams.meta.events.register("before-send", lambda request, **_: hosts.append(request.url))

    (shard,) = streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"]
    iterator = streams.get_shard_iterator(
        StreamArn=arn, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
    )["ShardIterator"]
    records = streams.get_records(ShardIterator=iterator)["Records"]

    assert any(".streams-ddb." in url for url in hosts)
    assert [r["eventName"] for r in records] == ["INSERT", "INSERT", "MODIFY"]
    assert [r["dynamodb"]["NewImage"]["n"]["N"] for r in records] == ["1", "1", "2"]
    # the item as it was before each write (the aggregator compares the two counts)
    assert [r["dynamodb"].get("OldImage", {}).get("n") for r in records] == [None, None, {"N": "1"}]
    assert {r["awsRegion"] for r in records} == {region}
    numbers = [int(r["dynamodb"]["SequenceNumber"]) for r in records]
    assert numbers == sorted(set(numbers))


def test_a_stream_keeps_its_records_when_an_event_source_mapping_reads_it(aws):
    """moto ran the mapped function itself on each write and then emptied the stream."""
    ddb = boto3.client("dynamodb")
    arn = streamed_table(ddb)
    iam = boto3.client("iam")
    role = iam.create_role(RoleName="r", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
    lam = boto3.client("lambda")
    lam.create_function(
        FunctionName="f",
        Runtime="python3.12",
        Role=role,
        Handler="index.handler",
        Code={"ZipFile": b"not run"},
    )
    lam.create_event_source_mapping(EventSourceArn=arn, FunctionName="f", StartingPosition="LATEST")
    for key in ("a", "b"):
        ddb.put_item(TableName="streamed", Item={"k": {"S": key}})

    streams = boto3.client("dynamodbstreams")
    (shard,) = streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"]
    iterator = streams.get_shard_iterator(
        StreamArn=arn, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
    )["ShardIterator"]
    records = streams.get_records(ShardIterator=iterator)["Records"]
    assert [r["dynamodb"]["Keys"]["k"]["S"] for r in records] == ["a", "b"]


def test_a_shard_iterator_expires_15_minutes_after_it_was_returned_and_is_dropped(aws, monkeypatch):
    """moto kept every iterator for ever (a poller grew the emulator ~20 MB an hour)."""
    now = [1000.0]
    monkeypatch.setattr(moto_fidelity, "_clock", lambda: now[0])
    arn = streamed_table(boto3.client("dynamodb"))
    streams = boto3.client("dynamodbstreams")
    (shard,) = streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"]

    def fresh() -> str:
        return streams.get_shard_iterator(
            StreamArn=arn, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]

    old = fresh()
    for _ in range(50):  # a poller's reads: each returns a new iterator
        streams.get_records(ShardIterator=old)
    now[0] += 15 * 60

    with pytest.raises(ClientError) as expired:
        streams.get_records(ShardIterator=old)
    assert expired.value.response["Error"]["Code"] == "ExpiredIteratorException"
    assert "Records" in streams.get_records(ShardIterator=fresh())
    held = moto_fidelity.streams_models.dynamodbstreams_backends["123456789012"]["us-east-1"]
    assert len(held.shard_iterators) <= 2  # the new iterator and the one its read returned


def test_a_key_condition_naming_an_attribute_by_a_reserved_word_is_refused_as_aws_does(aws):
    _, dynamodb = aws
    dynamodb.create_table(
        TableName="series",
        AttributeDefinitions=[
            {"AttributeName": "route", "AttributeType": "S"},
            {"AttributeName": "bucket", "AttributeType": "S"},
        ],
        KeySchema=[
            {"AttributeName": "route", "KeyType": "HASH"},
            {"AttributeName": "bucket", "KeyType": "RANGE"},
        ],
        BillingMode="PAY_PER_REQUEST",
    )
    values = {":r": {"S": "/a"}, ":lo": {"S": "h#"}, ":hi": {"S": "h#~"}}
    with pytest.raises(ClientError) as refused:
        dynamodb.query(
            TableName="series",
            KeyConditionExpression="route = :r AND bucket BETWEEN :lo AND :hi",
            ExpressionAttributeValues=values,
        )
    assert refused.value.response["Error"]["Code"] == "ValidationException"
    assert "reserved keyword: bucket" in refused.value.response["Error"]["Message"]
    named = dynamodb.query(
        TableName="series",
        KeyConditionExpression="route = :r AND #b BETWEEN :lo AND :hi",
        ExpressionAttributeNames={"#b": "bucket"},
        ExpressionAttributeValues=values,
    )
    assert named["Items"] == []
    begins = dynamodb.query(
        TableName="series",
        KeyConditionExpression="route = :r AND begins_with(#b, :lo)",
        ExpressionAttributeNames={"#b": "bucket"},
        ExpressionAttributeValues={":r": {"S": "/a"}, ":lo": {"S": "h#"}},
    )
    assert begins["Items"] == []


# --- AWS::SecretsManager::Secret in a stack ------------------------------------------------

GENERATED = {"PasswordLength": 40, "ExcludePunctuation": True}


def secret_stack(cfn, properties: dict, name: str = "s") -> dict[str, str]:
    """Deploy one secret; its outputs (Ref and GetAtt Id)."""
    cfn.create_stack(
        StackName=name,
        TemplateBody=json.dumps(
            {
                "Resources": {
                    "Token": {"Type": "AWS::SecretsManager::Secret", "Properties": properties}
                },
                "Outputs": {
                    "Ref": {"Value": {"Ref": "Token"}},
                    "Id": {"Value": {"Fn::GetAtt": ["Token", "Id"]}},
                },
            }
        ),
    )
    outputs = cfn.describe_stacks(StackName=name)["Stacks"][0]["Outputs"]
    return {o["OutputKey"]: o["OutputValue"] for o in outputs}


def test_a_stacks_secret_exists_with_a_generated_value_and_its_ref_is_its_arn(aws):
    cfn, _ = aws
    secrets = boto3.client("secretsmanager")

    first = secret_stack(cfn, {"GenerateSecretString": GENERATED})
    second = secret_stack(cfn, {"GenerateSecretString": GENERATED}, name="t")

    assert first["Ref"] == first["Id"]
    assert first["Ref"].startswith("arn:aws:secretsmanager:us-east-1:123456789012:secret:s-Token")
    values = [secrets.get_secret_value(SecretId=o["Ref"])["SecretString"] for o in (first, second)]
    for value in values:
        assert len(value) == 40 and value.isalnum()
        assert any(c.isdigit() for c in value) and any(c.isupper() for c in value)
    assert values[0] != values[1]


def test_a_stacks_secret_takes_its_given_string_or_a_generated_key_of_a_json_template(aws):
    cfn, _ = aws
    secrets = boto3.client("secretsmanager")
    given = secret_stack(cfn, {"SecretString": "kept as given"})
    keyed = secret_stack(
        cfn,
        {
            "GenerateSecretString": {
                "SecretStringTemplate": '{"username": "admin"}',
                "GenerateStringKey": "password",
                "PasswordLength": 12,
                "ExcludeCharacters": "abcdefghijklmnopqrstuvwxyz",
            }
        },
        name="t",
    )

    assert secrets.get_secret_value(SecretId=given["Ref"])["SecretString"] == "kept as given"
    value = json.loads(secrets.get_secret_value(SecretId=keyed["Ref"])["SecretString"])
    assert value["username"] == "admin"
    assert len(value["password"]) == 12 and not set(value["password"]) & set(
        "abcdefghijklmnopqrstuvwxyz"
    )


def test_deleting_the_stack_deletes_its_secret(aws):
    cfn, _ = aws
    secrets = boto3.client("secretsmanager")
    arn = secret_stack(cfn, {"GenerateSecretString": GENERATED})["Ref"]

    cfn.delete_stack(StackName="s")

    with pytest.raises(ClientError) as gone:
        secrets.get_secret_value(SecretId=arn)
    assert gone.value.response["Error"]["Code"] == "ResourceNotFoundException"


def test_lambda_account_settings_answer_the_concurrency_left_unreserved(aws, monkeypatch):
    """GetAccountSettings, which the deployer reads before reserving concurrency: moto as
    shipped answered 404 "Not yet implemented". Lambda answers the region's limit and what
    the functions' reservations leave of it."""
    lambda_client = boto3.client("lambda")
    assert lambda_client.get_account_settings()["AccountLimit"]["ConcurrentExecutions"] == 1000
    role = boto3.client("iam").create_role(RoleName="r", AssumeRolePolicyDocument="{}")
    for name in ("f", "g"):
        lambda_client.create_function(
            FunctionName=name,
            Runtime="python3.13",
            Role=role["Role"]["Arn"],
            Handler="index.handler",
            Code={"ZipFile": b"PK\x05\x06" + b"\x00" * 18},  # an empty zip
        )
    lambda_client.put_function_concurrency(FunctionName="f", ReservedConcurrentExecutions=150)

    settings = lambda_client.get_account_settings()

    assert settings["AccountLimit"]["ConcurrentExecutions"] == 1000
    assert settings["AccountLimit"]["UnreservedConcurrentExecutions"] == 850
    assert settings["AccountUsage"]["FunctionCount"] == 2
    monkeypatch.setenv("MOTO_LAMBDA_CONCURRENCY_QUOTA", "400")  # moto's own quota setting
    limit = lambda_client.get_account_settings()["AccountLimit"]
    assert (limit["ConcurrentExecutions"], limit["UnreservedConcurrentExecutions"]) == (400, 250)


# --- a conditional resource that was never created -----------------------------------------

CONDITIONAL_POLICY = {
    "Parameters": {
        "Private": {"Type": "String", "Default": "false"},
        "Other": {"Type": "String", "Default": "a"},
    },
    "Conditions": {"IsPrivate": {"Fn::Equals": [{"Ref": "Private"}, "true"]}},
    "Resources": {
        "Role": {
            "Type": "AWS::IAM::Role",
            "Properties": {
                "AssumeRolePolicyDocument": {
                    "Version": "2012-10-17",
                    "Statement": [
                        {
                            "Effect": "Allow",
                            "Principal": {"Service": "lambda.amazonaws.com"},
                            "Action": "sts:AssumeRole",
                        }
                    ],
                },
                "Tags": [{"Key": "other", "Value": {"Ref": "Other"}}],
            },
        },
        "Policy": {
            "Type": "AWS::IAM::Policy",
            "Condition": "IsPrivate",
            "Properties": {
                "PolicyName": {"Fn::Sub": "p-${Other}-${Private}"},
                "Roles": [{"Ref": "Role"}],
                "PolicyDocument": {
                    "Version": "2012-10-17",
                    "Statement": [
                        {"Effect": "Allow", "Action": "s3:ListAllMyBuckets", "Resource": "*"}
                    ],
                },
            },
        },
    },
}


def test_an_update_leaves_a_never_created_resource_alone_and_creates_it_when_its_condition_holds(
    aws,
):
    cfn, _ = aws
    iam = boto3.client("iam")
    body = json.dumps(CONDITIONAL_POLICY)
    cfn.create_stack(StackName="s", TemplateBody=body)

    def policies() -> list[str]:
        role = cfn.describe_stack_resource(StackName="s", LogicalResourceId="Role")
        name = role["StackResourceDetail"]["PhysicalResourceId"]
        return iam.list_role_policies(RoleName=name)["PolicyNames"]

    # A parameter its condition uses changes, the condition stays false: nothing to update
    cfn.update_stack(
        StackName="s",
        TemplateBody=body,
        Parameters=[{"ParameterKey": "Other", "ParameterValue": "b"}],
    )
    assert cfn.describe_stacks(StackName="s")["Stacks"][0]["StackStatus"] == "UPDATE_COMPLETE"
    assert policies() == []

    # The condition turns true: the policy is created
    cfn.update_stack(
        StackName="s",
        TemplateBody=body,
        Parameters=[
            {"ParameterKey": "Other", "ParameterValue": "b"},
            {"ParameterKey": "Private", "ParameterValue": "true"},
        ],
    )
    assert policies() == ["p-b-true"]


def test_a_rest_api_keeps_its_binary_media_types_from_the_template_and_updates_them(aws):
    """The local API applies what GetRestApi answers: moto left them out of a template's API."""
    cfn, apigw = boto3.client("cloudformation"), boto3.client("apigateway")

    def api(types: list[str]) -> dict:
        props = {"Name": "binary", "BinaryMediaTypes": types} if types else {"Name": "binary"}
        return {"Api": {"Type": "AWS::ApiGateway::RestApi", "Properties": props}}

    deploy(cfn, api(["*/*"]))
    (created,) = apigw.get_rest_apis()["items"]
    deploy(cfn, api(["image/png", "application/octet-stream"]), update=True)
    updated = apigw.get_rest_api(restApiId=created["id"])
    deploy(cfn, api([]), update=True)
    removed = apigw.get_rest_api(restApiId=created["id"])

    assert created["binaryMediaTypes"] == ["*/*"]
    assert updated["binaryMediaTypes"] == ["image/png", "application/octet-stream"]
    assert removed.get("binaryMediaTypes", []) == []


# --- stack policies ---------------------------------------------------------------------------

KEEP_TABLE = {
    "Statement": [
        {"Effect": "Allow", "Principal": "*", "Action": "Update:*", "Resource": "*"},
        {
            "Effect": "Deny",
            "Principal": "*",
            "Action": ["Update:Replace", "Update:Delete"],
            "Resource": "LogicalResourceId/Kept",
        },
    ]
}


def execute(cfn, resources: dict, name: str) -> str:
    """Update stack s to `resources` through a change set; the stack's status after."""
    cfn.create_change_set(
        StackName="s",
        ChangeSetName=name,
        ChangeSetType="UPDATE",
        TemplateBody=json.dumps({"Resources": resources}),
    )
    cfn.execute_change_set(StackName="s", ChangeSetName=name)
    return cfn.describe_stacks(StackName="s")["Stacks"][0]["StackStatus"]


def test_an_update_the_stack_policy_denies_fails_and_rolls_back_with_the_reason(aws):
    cfn, _ = aws
    deploy(cfn, {**table("Kept", "Retain"), **table("Other", "Delete")})
    cfn.set_stack_policy(StackName="s", StackPolicyBody=json.dumps(KEEP_TABLE))

    status = execute(cfn, table("Other", "Delete"), "drop-kept")

    assert status == "UPDATE_ROLLBACK_COMPLETE"
    ids = {
        r["LogicalResourceId"]
        for r in cfn.describe_stack_resources(StackName="s")["StackResources"]
    }
    assert "Kept" in ids  # still in the stack: nothing was applied
    reasons = [
        e.get("ResourceStatusReason", "")
        for e in cfn.describe_stack_events(StackName="s")["StackEvents"]
        if e["LogicalResourceId"] == "Kept"
    ]
    assert any("Action denied by stack policy" in r and "[Update:Delete]" in r for r in reasons), (
        reasons
    )


def test_an_update_the_stack_policy_allows_is_applied(aws):
    cfn, _ = aws
    deploy(cfn, {**table("Kept", "Retain"), **table("Other", "Delete")})
    cfn.set_stack_policy(StackName="s", StackPolicyBody=json.dumps(KEEP_TABLE))

    status = execute(cfn, table("Kept", "Retain"), "drop-other")

    assert status == "UPDATE_COMPLETE"
    ids = {
        r["LogicalResourceId"]
        for r in cfn.describe_stack_resources(StackName="s")["StackResources"]
    }
    assert ids == {"Kept"}


@pytest.mark.parametrize(
    ("statement", "denied"),
    [
        ({"Effect": "Allow", "Action": "Update:Modify", "Resource": "*"}, True),  # no allow
        ({"Effect": "Allow", "NotAction": "Update:Delete", "Resource": "*"}, True),
        ({"Effect": "Allow", "Action": "Update:*", "NotResource": "LogicalResourceId/K*"}, True),
        ({"Effect": "Allow", "Action": "Update:*", "Resource": "LogicalResourceId/K*"}, False),
        (
            {
                "Effect": "Allow",
                "Action": "Update:*",
                "Resource": "*",
                "Condition": {"StringEquals": {"ResourceType": ["AWS::S3::Bucket"]}},
            },
            True,
        ),
    ],
)
def test_a_stack_policy_is_read_as_aws_documents_it(statement, denied):
    from moto.cloudformation.models import Change

    body = json.dumps({"Statement": [{"Principal": "*", **statement}]})
    removal = Change("Remove", "Kept", "AWS::DynamoDB::Table")
    assert (moto_fidelity.stack_policy_denial(body, removal) is not None) is denied


# --- AWS::ApiGateway::UsagePlan in a stack -------------------------------------------------


def plan_stack(quota: str, rate: str) -> dict:
    """A plan whose numbers come from String parameters, as the template's do."""
    return {
        "Parameters": {"Quota": {"Type": "String"}, "Rate": {"Type": "String"}},
        "Resources": {
            "Api": {"Type": "AWS::ApiGateway::RestApi", "Properties": {"Name": "keys"}},
            "UsagePlan": {
                "Type": "AWS::ApiGateway::UsagePlan",
                "Properties": {
                    "UsagePlanName": "plan",
                    "ApiStages": [{"ApiId": {"Ref": "Api"}, "Stage": "prod"}],
                    "Quota": {"Limit": {"Ref": "Quota"}, "Period": "MONTH"},
                    "Throttle": {"RateLimit": {"Ref": "Rate"}, "BurstLimit": "3"},
                },
            },
        },
        "Outputs": {"Plan": {"Value": {"Ref": "UsagePlan"}}},
    }


def test_a_stacks_usage_plan_exists_with_its_numbers_and_keeps_its_keys_on_update(aws):
    cfn, apigw = boto3.client("cloudformation"), boto3.client("apigateway")

    def deployed(quota: str, rate: str, update: bool = False) -> None:
        params = [
            {"ParameterKey": "Quota", "ParameterValue": quota},
            {"ParameterKey": "Rate", "ParameterValue": rate},
        ]
        call = cfn.update_stack if update else cfn.create_stack
        call(StackName="k", TemplateBody=json.dumps(plan_stack(quota, rate)), Parameters=params)

    deployed("1000", "5")
    outputs = cfn.describe_stacks(StackName="k")["Stacks"][0]["Outputs"]
    plan_id = outputs[0]["OutputValue"]
    plan = apigw.get_usage_plan(usagePlanId=plan_id)
    (api,) = apigw.get_rest_apis()["items"]
    assert plan["quota"] == {"limit": 1000, "period": "MONTH"}
    assert plan["throttle"] == {"rateLimit": 5.0, "burstLimit": 3}
    assert plan["apiStages"] == [{"apiId": api["id"], "stage": "prod"}]

    key = apigw.create_api_key(name="acme", enabled=True)
    apigw.create_usage_plan_key(usagePlanId=plan_id, keyId=key["id"], keyType="API_KEY")
    deployed("2000", "5", update=True)
    assert apigw.get_usage_plan(usagePlanId=plan_id)["quota"]["limit"] == 2000
    assert [k["id"] for k in apigw.get_usage_plan_keys(usagePlanId=plan_id)["items"]] == [key["id"]]

    cfn.delete_stack(StackName="k")
    assert apigw.get_usage_plans()["items"] == []
