"""API Gateway's dispatch of one REST API request, sockets apart: request in, answer out.

The method and route are chosen from the template (local/router.py), a method with
ApiKeyRequired checks the key against the usage plans (local/api_keys.py), the proxy event
is built (local/events.py), the function is invoked (local/runtime.py), and its result, or
its failure, becomes the HTTP answer API Gateway would give. local/server.py reads the
request off the wire and writes this answer back.
"""

from __future__ import annotations

import sys
import traceback
import uuid

from local.api_keys import Refused, UsagePlans, forbidden
from local.events import (
    ApiInfo,
    HttpResponse,
    MalformedResponse,
    build_event,
    endpoint_timeout,
    internal_server_error,
    map_response,
    missing_authentication_token,
)
from local.router import SUPPORTED_METHODS, Router
from local.runtime import Function, FunctionTimeout


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


class Gateway:
    """The REST API a template describes, with the functions its methods integrate."""

    def __init__(
        self,
        router: Router,
        functions: dict[str, Function],
        api: ApiInfo,
        usage_plans: UsagePlans | None = None,
    ) -> None:
        """usage_plans: the stack's, which a method with ApiKeyRequired applies
        (None: no key works)."""
        self.router = router
        self.functions = functions
        self.api = api
        self.usage_plans = usage_plans

    def handle(
        self,
        method: str,
        target: str,
        headers: list[tuple[str, str]],
        body: bytes,
        source_ip: str,
    ) -> HttpResponse:
        """What API Gateway and the function answer to one request.

        target: the path and query as sent; headers: as the client spelled them, in order.
        """
        request_id = str(uuid.uuid4())
        if method not in SUPPORTED_METHODS:  # TRACE, PROPFIND, "get": no such method
            return missing_authentication_token(request_id)
        match = self.router.match(method, target.partition("?")[0])
        if match is None or match.method is None:
            return missing_authentication_token(request_id)
        api_key = None
        if match.method.api_key_required:  # before the integration, as API Gateway checks
            try:
                if self.usage_plans is None:
                    raise forbidden(request_id)
                api_key = self.usage_plans.admit(headers, request_id)
            except Refused as refused:
                return refused.response
            except Exception as error:  # the emulator's API Gateway did not answer
                _stderr(f"{request_id} API key check failed: {type(error).__name__}: {error}")
                return internal_server_error(request_id)
        function = self.functions.get(match.method.function or "")
        if match.method.integration_type != "AWS_PROXY" or function is None:
            _stderr(f"{match.method.logical_id}: only AWS_PROXY Lambda integrations run locally")
            return internal_server_error(request_id)
        event = build_event(
            method=method,
            target=target,
            headers=headers,
            body=body,
            match=match,
            api=self.api,
            source_ip=source_ip,
            request_id=request_id,
            api_key=api_key,
        )
        try:
            result = function.invoke(event, request_id)
        except FunctionTimeout as error:
            _stderr(f"{request_id} {error}")
            return endpoint_timeout(request_id)
        except Exception:
            failure = traceback.format_exc().rstrip()
            _stderr(f"{request_id} {function.spec.logical_id} failed:\n{failure}")
            return internal_server_error(request_id)
        try:
            accept = next((v for n, v in headers if n.lower() == "accept"), None)
            return map_response(result, request_id, accept, self.api.binary_media_types)
        except MalformedResponse as error:
            _stderr(f"{request_id} Malformed Lambda proxy response: {error}: {result!r:.500}")
            return internal_server_error(request_id)
