"""The ``httpx2.Auth`` flow: add the token; on a 401 refresh once and retry; on a 403 step up.

Written as one generator in the shape of httpx's ``Auth.auth_flow`` so the whole
401 → refresh → retry and 403 → step-up → retry dance reads top to bottom. It plugs into the SDK's
streamable HTTP and SSE transports. Failures are kept on ``last_error`` as well as raised, because
the SDK transport wraps exceptions from the HTTP layer and the structured error must survive that.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Awaitable, Callable

import anyio
import httpx2

from mcprelay.errors import ErrorType, McpRelayError
from mcprelay.oauth.rfc6750 import auth_challenge
from mcprelay.oauth.rfc9449 import DPoPKey, key_for_tokens, present, resource_nonce_retry
from mcprelay.oauth.tokens import TokenManager

#: Called with the scopes to ask for (granted ∪ challenged); logs in again and stores the new grant.
StepUp = Callable[[list[str]], Awaitable[None]]

MAX_STEP_UPS = 2


class OAuth(httpx2.Auth):
    def __init__(self, manager: TokenManager, *, step_up: StepUp | None = None) -> None:
        self.manager = manager
        self.step_up = step_up
        self.last_error: McpRelayError | None = None
        self._step_up_lock = anyio.Lock()

    async def async_auth_flow(self, request: httpx2.Request) -> AsyncGenerator[httpx2.Request, httpx2.Response]:
        try:
            token = await self.manager.access_token()
            grant = self.manager.grant
            if grant is None or grant.tokens.token_type != "DPoP":
                # The common case, kept to one comparison: a Bearer token.
                request.headers["Authorization"] = f"Bearer {token}"
                response = yield request
            else:
                key = self._dpop_key()
                present(request, token, key)
                response = yield request
                if resource_nonce_retry(request, response, key):
                    present(request, token, key)  # the same token, a new proof with the server's nonce
                    response = yield request

            if response.status_code == 401:
                token = await self.manager.refresh_after_rejection(token)
                key = self._dpop_key()
                present(request, token, key)
                response = yield request

            step_ups = 0
            while response.status_code == 403:
                challenge = auth_challenge(response.headers.get_list("www-authenticate"))
                if challenge is None or challenge.error != "insufficient_scope":
                    return
                wanted = self._scopes_after(challenge.scope)
                if self.step_up is None or step_ups >= MAX_STEP_UPS:
                    raise self._insufficient_scope(wanted, step_ups)
                step_ups += 1
                token = await self._step_up_once(token, wanted)
                present(request, token, self._dpop_key())
                response = yield request
        except McpRelayError as exc:
            self.last_error = exc
            raise

    def _dpop_key(self) -> DPoPKey | None:
        """The grant's DPoP key when its tokens are DPoP-bound; None (one comparison) for Bearer tokens."""
        grant = self.manager.grant
        return key_for_tokens(grant.tokens.token_type, grant.extra) if grant is not None else None

    async def _step_up_once(self, rejected: str, wanted: list[str]) -> str:
        """One step-up login at a time: requests refused together share the login the first one starts."""
        assert self.step_up is not None
        async with self._step_up_lock:
            current = await self.manager.reload()
            if current != rejected:
                return current  # another request stepped up while this one waited
            await self.step_up(wanted)
            return await self.manager.reload()

    def _scopes_after(self, challenged: str | None) -> list[str]:
        """The union of what was granted and what the server now asks for, in a stable order."""
        grant = self.manager.grant
        have = (grant.tokens.scope or grant.requested_scope or "").split() if grant else []
        out = list(dict.fromkeys(have + (challenged or "").split()))
        return out

    def _insufficient_scope(self, wanted: list[str], step_ups: int) -> McpRelayError:
        server = self.manager.server
        after = f" after {step_ups} step-up login(s)" if step_ups else ""
        return McpRelayError(
            ErrorType.INSUFFICIENT_SCOPE,
            f"{server} refused the request for lack of scope{after}; it asks for: {' '.join(wanted) or '?'}",
            suggestion=(
                f"add the scopes to mcpServers[].oauth.scopes for {server} and run "
                f"`mcprelay auth login --server {server} --force`"
            ),
            server=server,
            details={"required_scopes": wanted, "step_ups": step_ups},
        )
