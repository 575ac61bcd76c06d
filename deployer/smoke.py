"""The smoke test: two requests to a fresh path must count 1, then 2.

With RateLimit=1 the second is refused: a 429 that carries the RateLimit headers is the
counter itself answering, so it passes too.

With a ClientIdentity (docs/clients.md) the smoke test has no client to count for, and
counting one would bill a made-up client: one request without an identity must be refused
before anything is counted, by API Gateway (403 Forbidden: the stage requires an API key)
or by the counter (its 401).
"""

from __future__ import annotations

import http.client
import json
import random
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field

from deployer.errors import SmokeTestFailed

TRIES = 15  # a new API can take a few seconds to resolve in DNS and route
RETRY_SECONDS = 2.0
TIMEOUT_SECONDS = 20.0  # each request's, to connect and to answer
RATE_HEADERS = ("RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset")


@dataclass
class Answer:
    status: int  # 0: no answer (no connection, or the answer was lost)
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    error: str = ""
    # Sent whole, then no answer (a read timeout, a reset): the API may have counted it.
    answer_lost: bool = False

    def header(self, name: str) -> str | None:
        return next((v for k, v in self.headers.items() if k.lower() == name.lower()), None)


def fetch(url: str, timeout: float = TIMEOUT_SECONDS) -> Answer:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 (https only)
            return Answer(response.status, response.read(), dict(response.headers))
    except urllib.error.HTTPError as error:
        return Answer(error.code, error.read(), dict(error.headers))
    except urllib.error.URLError as error:
        # urllib wraps only what fails while connecting (DNS, refused, connect timeout, TLS)
        # and sending: no request reached the API.
        return Answer(0, error=str(error.reason))
    except (OSError, http.client.HTTPException) as error:
        # Sent, then the answer timed out or broke off.
        return Answer(0, error=str(error) or type(error).__name__, answer_lost=True)


def _start(answer: Answer) -> str:
    return answer.body[:300].decode(errors="replace")


def _count(answer: Answer) -> int:
    try:
        return int(json.loads(answer.body)["count"])
    except (ValueError, KeyError, TypeError):
        raise SmokeTestFailed(detail=f"not a counter response: {_start(answer)}") from None


def judge(url: str, path: str, first: Answer, second: Answer) -> str:
    """The OK line for the two answers, or a DeployError saying what is wrong."""
    for which, answer in (("first", first), ("second", second)):
        if answer.answer_lost:
            raise SmokeTestFailed(
                detail=f"the {which} request to {url} was sent but its answer "
                f"was lost ({answer.error}); it may have been counted, so it was not sent "
                "again (a retry could count it twice)"
            )
    if first.status != 200:
        raise SmokeTestFailed(
            detail=f"HTTP {first.status:03d} from {url}: {_start(first)}{first.error}"
        )
    counted = _count(first)
    limited = second.status == 429 and all(second.header(h) is not None for h in RATE_HEADERS)
    if limited and counted == 1:
        return (
            f"    OK: /{path} counted 1, then refused with 429 and RateLimit headers "
            f"(RateLimit-Limit: {second.header('RateLimit-Limit')}): rate limiting is on."
        )
    if second.status != 200:
        raise SmokeTestFailed(detail=f"second request answered HTTP {second.status:03d}")
    again = _count(second)
    if (counted, again) != (1, 2):
        raise SmokeTestFailed(detail=f"expected counts 1 then 2, got {counted} then {again}")
    return f"    OK: /{path} counted 1, then 2."


def message_of(answer: Answer) -> str:
    """API Gateway's {"message": ...}, or the counter's {"error": ...}, or ''."""
    try:
        body = json.loads(answer.body)
    except ValueError:
        return ""
    return str(body.get("message") or body.get("error") or "") if isinstance(body, dict) else ""


def not_routed(answer: Answer, anonymous: bool) -> bool:
    """No request reached the counter: no connection, or a gateway that does not route yet
    (403 or 404), and no answer lost. Without a client, API Gateway's 403 Forbidden is the
    answer awaited: only its Missing Authentication Token is a stage not routing yet."""
    if answer.answer_lost:
        return False
    if anonymous and answer.status == 403:
        return message_of(answer) == "Missing Authentication Token"
    return answer.status in (0, 403, 404)


def judge_anonymous(url: str, path: str, answer: Answer, client_identity: str) -> str:
    """The OK line when a request without an identity was refused as it must be."""
    if answer.answer_lost:
        raise SmokeTestFailed(
            detail=f"the request to {url} was sent but its answer was lost ({answer.error})"
        )
    if client_identity == "apikey":
        if (answer.status, message_of(answer)) == (403, "Forbidden"):
            return f"    OK: /{path} without an API key refused by API Gateway (403 Forbidden)."
        expected = "403 Forbidden from API Gateway (the stage requires an API key)"
    else:
        if answer.status == 401 and "per client" in message_of(answer):
            return f"    OK: /{path} without a client ({client_identity}) refused with 401."
        expected = f"the counter's 401 (ClientIdentity {client_identity})"
    raise SmokeTestFailed(
        detail=f"a request without a client got HTTP {answer.status:03d}, not "
        f"{expected}: {_start(answer)}{answer.error}"
    )


def smoke_test(
    api_url: str,
    say: Callable[[str], None],
    get: Callable[[str, float], Answer] = fetch,
    sleep: Callable[[float], None] = time.sleep,
    timeout: float = TIMEOUT_SECONDS,
    client_identity: str = "none",
) -> None:
    path = f"smoke-test-{int(time.time())}-{random.randrange(10**9)}"  # noqa: S311
    url = f"{api_url}{path}"
    anonymous = client_identity != "none"
    what = "a request without a client" if anonymous else "two requests"
    say(f"==> Smoke test: {what} to {url}")
    # Retry only failures in which no request reached the counter (no connection, or
    # 403/404 from a gateway that does not route yet): a request sent whole whose answer
    # was lost may have been counted, and a retry would count it twice.
    for attempt in range(1, TRIES + 1):
        first = get(url, timeout)
        if not not_routed(first, anonymous) or attempt == TRIES:
            break
        sleep(RETRY_SECONDS)
    if anonymous:
        say(judge_anonymous(url, path, first, client_identity))
        return
    second = get(url, timeout) if first.status == 200 else Answer(0)
    say(judge(url, path, first, second))
