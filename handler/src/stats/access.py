"""Private stats (docs/security-private-stats.md): the stats token an Authorization header
presents, checked against the secret's before any table is read."""

import base64
import hashlib
import hmac
import time

from .settings import STATS_TOKEN_SECRET, HttpError, secrets

# A token read from Secrets Manager is used this long: a rotated-out token stops working
# within it. One that does not match re-reads the secret, at most once per
# TOKEN_REREAD_SECONDS per container: a new token works within that (and a flood of wrong
# tokens costs at most one GetSecretValue per container per TOKEN_REREAD_SECONDS).
TOKEN_TTL_SECONDS = 300
TOKEN_REREAD_SECONDS = 30
# Browsers ask for a user name and password on a 401 with this challenge (RFC 7617).
CHALLENGE = {"WWW-Authenticate": 'Basic realm="Route Counter stats", charset="UTF-8"'}
PRIVATE = (
    "the stats are private: send the stats token as the password of HTTP Basic "
    "authentication (any user name), or as 'Authorization: Bearer <token>'"
)
token_cache = {"token": "", "read_at": None}  # this container's copy of the stats token


def presented_token(headers, multi):
    """The token an Authorization header carries (Basic: its password, whatever the user
    name; Bearer), None without one; HttpError 401 for one that is not well formed (two
    Authorization headers are not)."""
    values = [v for k, v in headers.items() if k.lower() == "authorization"]
    multi = multi if isinstance(multi, dict) else {}
    repeated = any(
        k.lower() == "authorization" and isinstance(v, list) and len(v) > 1
        for k, v in multi.items()
    )
    if not values:
        return None
    scheme, _, credentials = values[0].strip().partition(" ")
    credentials, token = credentials.strip(), ""
    if scheme.lower() == "bearer":
        token = credentials
    elif scheme.lower() == "basic":
        try:
            _user, colon, token = (
                base64.b64decode(credentials, validate=True).decode().partition(":")
            )
        except ValueError:  # binascii.Error and UnicodeDecodeError are ValueErrors
            colon = ""
        token = token if colon else ""
    if repeated or len(values) > 1 or not token:
        raise HttpError(401, PRIVATE, CHALLENGE)
    return token


def same_token(presented, token):
    # Digests of equal length: compare_digest takes as long whatever matches, and the
    # length of the token leaks neither.
    return bool(token) and hmac.compare_digest(
        hashlib.sha256(presented.encode()).digest(), hashlib.sha256(token.encode()).digest()
    )


def read_token():
    value = secrets.get_secret_value(SecretId=STATS_TOKEN_SECRET)["SecretString"]
    token_cache.update(token=value, read_at=time.monotonic())


def check_access(headers, multi):
    """Private stats: nothing when the request carries the stats token, else HttpError 401
    with the challenge that makes a browser ask (missing, malformed and wrong alike: see
    docs/security-private-stats.md). Runs before any table is read."""
    presented = presented_token(headers, multi)
    if presented is None:
        raise HttpError(401, PRIVATE, CHALLENGE)
    read_at = token_cache["read_at"]
    if read_at is None or time.monotonic() - read_at >= TOKEN_TTL_SECONDS:
        read_token()
    if same_token(presented, token_cache["token"]):
        return
    if time.monotonic() - token_cache["read_at"] >= TOKEN_REREAD_SECONDS:
        read_token()  # rotated since we read it?
        if same_token(presented, token_cache["token"]):
            return
    raise HttpError(401, PRIVATE, CHALLENGE)
