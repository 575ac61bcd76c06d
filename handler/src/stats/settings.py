"""The stack's settings (the function's environment), the AWS clients (created once per
container) and HttpError: the one error style, raised anywhere and answered in app.py."""

import datetime
import os

import boto3
from botocore.config import Config

TABLE_NAME = os.environ.get("TABLE_NAME", "")
# Empty when the stack's Analytics parameter is off: no series, no top routes.
SERIES_TABLE = os.environ.get("SERIES_TABLE", "")
ALLOWED_ORIGIN = os.environ.get("ALLOWED_ORIGIN", "")
STATS_ROUTE = os.environ.get("STATS_ROUTE") or "/_stats"
# PrivateStats: the ARN of the secret holding the stats token; empty: the stats are public.
STATS_TOKEN_SECRET = os.environ.get("STATS_TOKEN_SECRET", "")
UTC = datetime.UTC
# MaxRoutes (docs/routes.md): past it, new routes count as OVERFLOW_ROUTE; the counter keeps
# how many routes it let in on a series-table item (LEDGER_KEY, handler/counter.py's ledger).
MAX_ROUTES = int(os.environ.get("MAX_ROUTES") or 0)
# MaxRoutes' ledger lives in the series table, which has it even with Analytics off
LEDGER_TABLE = os.environ.get("LEDGER_TABLE", "")
# ClientIdentity (docs/clients.md): how a hit names its client; "none": no clients view.
CLIENT_IDENTITY = os.environ.get("CLIENT_IDENTITY", "none")
CLIENTS_ON = CLIENT_IDENTITY not in ("", "none")
CLIENT_CONFIG = Config(
    connect_timeout=1,
    read_timeout=2,
    retries={"mode": "standard", "total_max_attempts": 3},
)
dynamodb = boto3.client("dynamodb", config=CLIENT_CONFIG)
secrets = boto3.client("secretsmanager", config=CLIENT_CONFIG) if STATS_TOKEN_SECRET else None


class HttpError(Exception):
    def __init__(self, status, message, headers=None):
        super().__init__(message)
        self.status, self.headers = status, headers
