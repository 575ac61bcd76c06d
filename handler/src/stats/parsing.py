"""The request's parameters: limits, paging tokens and positions, time ranges, and which media
type the Accept header ranks first. Bad input is an HttpError 400."""

import base64
import datetime
import re

from .items import SERIES
from .settings import UTC, HttpError

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
DEFAULT_STALE_DAYS = 7
MAX_STALE_DAYS = 3650
# Earlier pages a dashboard link remembers for its "previous" link: a URL has to stay well
# under API Gateway's 10,240 bytes of request line and headers; one token can take 2,731.
MAX_BACK = 8
MAX_BACK_CHARS = 2048
LIMIT_PATTERN = re.compile(r"[0-9]{1,4}")
AT_PATTERN = re.compile(r"0|[1-9][0-9]{0,8}")
# A `next` token: the base64url of a key DynamoDB can hold (1 to 2048 bytes).
TOKEN_PATTERN = re.compile("[A-Za-z0-9_-]{2,2731}")
SERIES_PARAMETERS = {"series", "from", "to"}


def encode_token(key):
    return base64.urlsafe_b64encode(key["route"]["S"].encode()).decode().rstrip("=")


def decode_token(token, name="'next' token"):
    """The key a page starts after. Not signed: it names a route its reader may list anyway."""
    try:
        if not TOKEN_PATTERN.fullmatch(token):
            raise ValueError
        route = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
        if not route.startswith("/"):
            raise ValueError
    except ValueError:  # binascii.Error and UnicodeDecodeError are ValueErrors
        raise HttpError(400, f"invalid {name}: pass back the 'next' value of a page") from None
    return {"route": {"S": route}}


def whole_number(text, name, default, most):
    """A query parameter's whole number from 1 to most, or default when it is absent."""
    if text is None:
        return default
    if not LIMIT_PATTERN.fullmatch(text) or not 1 <= int(text) <= most:
        raise HttpError(400, f"'{name}' must be a whole number from 1 to {most}")
    return int(text)


def parse_limit(text):
    return whole_number(text, "limit", DEFAULT_LIMIT, MAX_LIMIT)


def parse_days(text):
    if text is None:
        return DEFAULT_STALE_DAYS
    if not LIMIT_PATTERN.fullmatch(text) or not 1 <= int(text) <= MAX_STALE_DAYS:
        raise HttpError(400, f"'stale' must be a whole number of days from 1 to {MAX_STALE_DAYS}")
    return int(text)


def parse_position(query):
    """(token, routes before the page or None, earlier pages [(at, token)]) or None: where a
    dashboard link says a page is. `at` and `back` only label pages and link back."""
    if "next" not in query:
        if set(query) & {"at", "back"}:
            raise HttpError(400, "'at' and 'back' only come with 'next'")
        return None
    token = query["next"]
    decode_token(token)
    at = query.get("at")
    if at is not None and not AT_PATTERN.fullmatch(at):
        raise HttpError(400, "'at' must be the number of routes before this page")
    at = None if at is None else int(at)
    back, trail = [], query.get("back")
    if trail is not None:
        entries = [entry.partition("~") for entry in trail.split(".")]
        if (
            at is None
            or len(trail) > MAX_BACK_CHARS
            or len(entries) > MAX_BACK
            or not all(AT_PATTERN.fullmatch(a) and (t or a == "0") for a, _, t in entries)
        ):
            raise HttpError(400, "invalid 'back': pass back a dashboard link as it was")
        back = [(int(a), t) for a, _, t in entries]
        for _, earlier_token in back:
            if earlier_token:
                decode_token(earlier_token, "'back' token")
        places = [a for a, _ in back] + [at]
        if places != sorted(set(places)):
            raise HttpError(400, "invalid 'back': its pages must come before this one in order")
    return token, at, back


def offset_sent_bare(text):
    """The time as it should have been sent (its last space a "%2B"), or None: an offset such
    as +02:00 put in a query string unencoded arrives with a space for its "+". Only a value
    that then parses as a time is echoed back."""
    before, space, after = text.rpartition(" ")
    if not space:
        return None
    try:
        valid = datetime.datetime.fromisoformat(f"{before}+{after}").tzinfo is not None
    except ValueError:
        return None
    return f"{before}%2B{after}" if valid else None


def query_time(query, name):
    """An ISO 8601 time of the query (UTC unless it says otherwise), or None when absent."""
    text = query.get(name)
    if text is None:
        return None
    try:
        moment = datetime.datetime.fromisoformat(text)
    except ValueError:
        if encoded := offset_sent_bare(text):
            raise HttpError(
                400,
                f"'{name}' has a space where its offset's sign would be: write the offset's +"
                f" as %2B (a bare + in a query is a space): {name}={encoded}",
            ) from None
        raise HttpError(
            400, f"'{name}' must be an ISO 8601 time such as 2026-12-01T03:00:00Z"
        ) from None
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    try:
        return moment.astimezone(UTC)
    except OverflowError:  # an offset that takes it past year 9999 or before year 1
        raise HttpError(400, "'from' and 'to' must be years 1 to 9999") from None


def bucket_start(moment, width):
    if width == datetime.timedelta(days=1):
        return moment.replace(hour=0, minute=0, second=0, microsecond=0)
    return moment.replace(minute=0, second=0, microsecond=0)


def series_range(series, query, now):
    """The first and last bucket start of the range asked for, and the number of points."""
    if series not in SERIES:
        raise HttpError(400, "'series' must be 'hour' or 'day'")
    _, width, _, default_points, most = SERIES[series]
    first, last = query_time(query, "from"), query_time(query, "to")
    try:
        last = bucket_start(last or now, width)
        first = bucket_start(first, width) if first else last - (default_points - 1) * width
    except OverflowError:
        raise HttpError(400, "'from' and 'to' must be years 1 to 9999") from None
    if first > last:
        raise HttpError(400, "'from' must not be after 'to'")
    points = (last - first) // width + 1
    if points > most:
        raise HttpError(
            400, f"a {series} series has at most {most} points; this range has {points}"
        )
    return first, last, points


def wants_html(headers):
    """True when the Accept header ranks text/html above application/json."""
    return ranked_above(headers, "text/html", "application/json")


def ranked_above(headers, media, other):
    """True when the Accept header ranks `media` above `other`."""
    accept = next((v for k, v in headers.items() if k.lower() == "accept"), "")
    ranks = {}
    for part in accept.lower().replace(" ", "").split(","):
        name, _, params = part.partition(";")
        q = re.search(r"(?:^|;)q=([01](?:\.[0-9]{0,3})?)(?:;|$)", params)
        ranks[name] = float(q.group(1)) if q else 1.0

    def q(media):
        kind = media.split("/")[0]
        return ranks.get(media, ranks.get(f"{kind}/*", ranks.get("*/*", 0.0)))

    return q(media) > q(other)
