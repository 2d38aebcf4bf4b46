"""An ``httpx2.Auth`` that adds the current access token.

This is the transport end of the chain: it knows nothing about how tokens are obtained, only
asks a provider for the current one. A 401 on a request is surfaced to the caller, which decides
whether to refresh or log in (the token manager, next in the design, does exactly that).
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Awaitable, Callable

import httpx2


class BearerAuth(httpx2.Auth):
    def __init__(self, token: Callable[[], Awaitable[str]]) -> None:
        self._token = token

    async def async_auth_flow(self, request: httpx2.Request) -> AsyncGenerator[httpx2.Request, httpx2.Response]:
        request.headers["Authorization"] = f"Bearer {await self._token()}"
        yield request
