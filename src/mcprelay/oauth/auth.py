"""The ``httpx2.Auth`` flow: add the token, and on a 401 refresh once and retry.

Written as one generator in the shape of httpx's ``Auth.auth_flow`` so the whole
401 → refresh → retry dance reads top to bottom. It plugs into the SDK's streamable HTTP and SSE
transports. Failures of the token manager are kept on ``last_error`` as well as raised, because the
SDK transport wraps exceptions from the HTTP layer and the structured error must survive that.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator

import httpx2

from mcprelay.errors import McpRelayError
from mcprelay.oauth.tokens import TokenManager


class OAuth(httpx2.Auth):
    def __init__(self, manager: TokenManager) -> None:
        self.manager = manager
        self.last_error: McpRelayError | None = None

    async def async_auth_flow(self, request: httpx2.Request) -> AsyncGenerator[httpx2.Request, httpx2.Response]:
        try:
            token = await self.manager.access_token()
        except McpRelayError as exc:
            self.last_error = exc
            raise
        request.headers["Authorization"] = f"Bearer {token}"
        response = yield request
        if response.status_code != 401:
            return
        try:
            token = await self.manager.refresh_after_rejection(token)
        except McpRelayError as exc:
            self.last_error = exc
            raise
        request.headers["Authorization"] = f"Bearer {token}"
        yield request
