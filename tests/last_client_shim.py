"""TEST SHIM, until helper clients-edge's counter lands: the real counter's own UpdateItem
also does `SET lastClient = :client` (docs contract 1: the client of the hit, on the counter
item, in the same write), so the stream carries records exactly as the counter will write
them. The shim adds that one SET clause to the UpdateItem where the counter's boto3 client
builds it; everything else is the real counter.count_hit. At merge, the lead switches the
callers of `counter_names_clients` to the real counter (with CLIENT_IDENTITY set) and
deletes this file.
"""

from collections.abc import Iterator
from contextlib import contextmanager


class NextClient:
    """The client the next counted hit is made by (None: a hit without a client)."""

    def __init__(self) -> None:
        self.client: str | None = None


@contextmanager
def counter_names_clients(counter) -> Iterator[NextClient]:
    """While open, each UpdateItem of `counter` (a loaded handler/counter.py) also sets
    lastClient to the NextClient's client, when it names one."""
    who = NextClient()

    def add_last_client(params, **_):
        # (a counter that names clients itself already sets it: left as it is)
        if who.client is not None and "lastClient" not in params["UpdateExpression"]:
            params["UpdateExpression"] += ", lastClient = :client"
            params["ExpressionAttributeValues"][":client"] = {"S": who.client}

    event = "provide-client-params.dynamodb.UpdateItem"
    counter.dynamodb.meta.events.register(event, add_last_client)
    try:
        yield who
    finally:
        counter.dynamodb.meta.events.unregister(event, add_last_client)


def client_hit(dynamodb, table: str, route: str, at: str, client: str) -> dict:
    """Contract 1's write for a hit of `client`, for a stack whose counter does not name
    clients yet: the counter's own UpdateItem (ADD count, SET lastSeen and firstSeen) plus
    `SET lastClient`. Returns the item as the counter's answer says it."""
    return dynamodb.update_item(
        TableName=table,
        Key={"route": {"S": route}},
        UpdateExpression="ADD #count :one SET lastSeen = :now,"
        " firstSeen = if_not_exists(firstSeen, :now), lastClient = :client",
        ExpressionAttributeNames={"#count": "count"},
        ExpressionAttributeValues={":one": {"N": "1"}, ":now": {"S": at}, ":client": {"S": client}},
        ReturnValues="ALL_NEW",
    )["Attributes"]
