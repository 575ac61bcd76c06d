"""API Gateway's API keys and usage plans, as the local API applies them to a method with
ApiKeyRequired (ClientIdentity apikey, docs/clients.md): the one place the local stack
emulates them.

As API Gateway does, for such a method, before the function is invoked:
- the key is the `x-api-key` header's value (the API's default ApiKeySource, HEADER); none,
  one no key has, a disabled key, or a key in none of the stack's usage plans: 403
  {"message":"Forbidden"};
- the plan's throttle, per key: a token bucket of BurstLimit tokens refilled at RateLimit a
  second; a request finding it empty: 429 {"message":"Too Many Requests"};
- the plan's quota, per key and period (MONTH: the calendar month in UTC; WEEK, DAY): a
  request past Limit: 429 {"message":"Limit Exceeded"};
- a request let through carries requestContext.identity.apiKey and apiKeyId.
Keys and plans are read from the emulator's API Gateway at each request (./deploy.sh keys
--local writes them there), so a key created or revoked works at once (AWS may take a few
seconds). The quota and throttle counts live in this process: they start at zero when the
local stack starts. A throttle with one limit unset: an unset RateLimit enforces none; an
unset BurstLimit holds one second of RateLimit (at least one request).
"""

from __future__ import annotations

import math
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

from local.events import ApiKeyUsed, HttpResponse, gateway_error

API_KEY_HEADER = "x-api-key"


class Refused(Exception):
    """API Gateway answers the request itself: the function is not invoked."""

    def __init__(self, response: HttpResponse) -> None:
        super().__init__(response.status)
        self.response = response


def forbidden(request_id: str) -> Refused:
    return Refused(gateway_error(403, "Forbidden", "ForbiddenException", request_id))


def limit_exceeded(request_id: str) -> Refused:
    return Refused(gateway_error(429, "Limit Exceeded", "LimitExceededException", request_id))


def too_many_requests(request_id: str) -> Refused:
    return Refused(gateway_error(429, "Too Many Requests", "TooManyRequestsException", request_id))


def period_start(period: str, epoch: float) -> str:
    """The quota period holding `epoch` (UTC), as a key: 2026-12, 2026-W49, 2026-12-07."""
    moment = time.gmtime(epoch)
    if period == "DAY":
        return time.strftime("%Y-%m-%d", moment)
    if period == "WEEK":
        return time.strftime("%G-W%V", moment)
    return time.strftime("%Y-%m", moment)


class UsagePlans:
    """The stack's usage plans (by id), enforced for the methods that require a key."""

    def __init__(
        self,
        apigateway: Any,
        plan_ids: list[str],
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.apigateway = apigateway
        self.plan_ids = plan_ids
        self.clock, self.monotonic = clock, monotonic
        self._lock = threading.Lock()
        self._used: dict[tuple[str, str, str], int] = {}  # (plan, key, period) -> requests
        self._buckets: dict[tuple[str, str], tuple[float, float]] = {}  # -> (tokens, at)

    def admit(self, headers: list[tuple[str, str]], request_id: str | None = None) -> ApiKeyUsed:
        """The key a request is let through with; Refused with API Gateway's answer if not."""
        request_id = request_id or str(uuid.uuid4())
        value = next((v for n, v in reversed(headers) if n.lower() == API_KEY_HEADER), "")
        key = self._key_of(value.strip()) if value.strip() else None
        if key is None or not key.get("enabled"):
            raise forbidden(request_id)
        plan = self._plan_of(key["id"])
        if plan is None:
            raise forbidden(request_id)
        with self._lock:
            self._take_token(plan, key["id"], request_id)
            self._count_quota(plan, key["id"], request_id)
        return ApiKeyUsed(key["id"], key["value"])

    def _key_of(self, value: str) -> dict | None:
        for page in self.apigateway.get_paginator("get_api_keys").paginate(includeValues=True):
            for key in page.get("items", []):
                if key.get("value") == value:
                    return key
        return None

    def _plan_of(self, key_id: str) -> dict | None:
        for plan_id in self.plan_ids:
            keys = self.apigateway.get_paginator("get_usage_plan_keys").paginate(
                usagePlanId=plan_id
            )
            if any(k.get("id") == key_id for page in keys for k in page.get("items", [])):
                return self.apigateway.get_usage_plan(usagePlanId=plan_id)
        return None

    def _take_token(self, plan: dict, key_id: str, request_id: str) -> None:
        throttle = plan.get("throttle") or {}
        rate = float(throttle.get("rateLimit") or 0)
        if rate <= 0:
            return
        capacity = float(throttle.get("burstLimit") or max(1, math.ceil(rate)))
        now = self.monotonic()
        tokens, at = self._buckets.get((plan["id"], key_id), (capacity, now))
        tokens = min(capacity, tokens + (now - at) * rate)
        if tokens < 1:
            self._buckets[(plan["id"], key_id)] = (tokens, now)
            raise too_many_requests(request_id)
        self._buckets[(plan["id"], key_id)] = (tokens - 1, now)

    def _count_quota(self, plan: dict, key_id: str, request_id: str) -> None:
        quota = plan.get("quota") or {}
        limit = int(quota.get("limit") or 0)
        if limit <= 0:
            return
        period = (plan["id"], key_id, period_start(quota.get("period", "MONTH"), self.clock()))
        used = self._used.get(period, 0)
        if used >= limit:
            raise limit_exceeded(request_id)
        self._used[period] = used + 1
