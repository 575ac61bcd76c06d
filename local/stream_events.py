"""DynamoDB stream records in, the events Lambda's event source mapping invokes with out.

Not wired into the local stack yet (issue 13: the next step polls the emulator's stream with
these and invokes the aggregator); the unit tests build their events here.
"""

from __future__ import annotations

import datetime

import boto3
from botocore.config import Config

# botocore (1.44 here) sends a call that names a stream ARN to an account endpoint,
# https://<account>.streams-ddb.<region>.amazonaws.com; in process, moto 5.2.5 routes only
# streams.dynamodb.<region>, so DescribeStream, GetShardIterator (and GetRecords) answer
# 404 "Not yet implemented" while ListStreams (no ARN) works. (With an endpoint_url, as
# against moto_server, the host is the given one and all of them work.) The regional
# endpoint is what AWS also serves: this changes the host, not the API.
REGIONAL_ENDPOINT = Config(account_id_endpoint_mode="disabled")


def streams_client(**kwargs):
    """A DynamoDB Streams client that reaches moto (in process or as a server) and AWS."""
    return boto3.client("dynamodbstreams", config=REGIONAL_ENDPOINT, **kwargs)


def read_stream(client, stream_arn: str) -> list[dict]:
    """Every record the stream holds, shard by shard, oldest first (as GetRecords gives them)."""
    records = []
    shards = client.describe_stream(StreamArn=stream_arn)["StreamDescription"]["Shards"]
    for shard in shards:
        iterator = client.get_shard_iterator(
            StreamArn=stream_arn, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        while iterator:
            page = client.get_records(ShardIterator=iterator)
            records.extend(page["Records"])
            if not page["Records"]:
                break
            iterator = page.get("NextShardIterator")
    return records


def lambda_record(record: dict, stream_arn: str) -> dict:
    """A GetRecords record as Lambda delivers it: eventVersion 1.1, the stream's ARN as
    eventSourceARN, ApproximateCreationDateTime in epoch seconds (boto3 parses it to a
    datetime; Lambda's JSON has the number)."""
    change = dict(record["dynamodb"])
    created = change.get("ApproximateCreationDateTime")
    if isinstance(created, datetime.datetime):
        change["ApproximateCreationDateTime"] = float(int(created.timestamp()))
    return {
        "eventID": record["eventID"],
        "eventName": record["eventName"],
        "eventVersion": "1.1",
        "eventSource": "aws:dynamodb",
        "awsRegion": record["awsRegion"],
        "dynamodb": change,
        "eventSourceARN": stream_arn,
    }


def stream_event(records: list[dict], stream_arn: str) -> dict:
    """The event one invocation of a DynamoDB event source mapping receives."""
    return {"Records": [lambda_record(record, stream_arn) for record in records]}
