"""An ``httpx2.Auth`` that logs in when the server asks, at whatever request it asks.

For ad-hoc sessions (``mcprelay probe``) with nothing stored: a server may let ``initialize``
through and challenge only ``tools/list`` (401), ask for more scope on ``tools/call`` (403
``insufficient_scope``), or move to another authorization server mid-session (a 401 whose resource
metadata names a new issuer). Each of those is answered with a login driven by that response's
own challenge, then the request is retried. The number of authorizations per session is capped,
so a server that can never be satisfied cannot send the user round a loop of browser tabs.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Awaitable, Callable

import anyio
import httpx2

from mcprelay.errors import ErrorType, McpRelayError
from mcprelay.oauth.grant import StoredGrant
from mcprelay.oauth.rfc6750 import Challenge, auth_challenge
from mcprelay.oauth.rfc9449 import DPoPKey, key_for_tokens, present, resource_nonce_retry

#: Logs in for ``challenge`` (with ``scopes`` when stepping up) and returns the new grant.
LoginFn = Callable[[Challenge, list[str] | None], Awaitable[StoredGrant | None]]

MAX_AUTHORIZATIONS = 3


class LoginOnDemand(httpx2.Auth):
    def __init__(self, login: LoginFn, *, server: str, max_authorizations: int = MAX_AUTHORIZATIONS) -> None:
        self._login = login
        self._server = server
        self._max = max_authorizations
        self._lock = anyio.Lock()
        self.grant: StoredGrant | None = None
        self.authorizations = 0
        self.last_error: McpRelayError | None = None

    @property
    def _token(self) -> str | None:
        return self.grant.tokens.access_token if self.grant else None

    async def async_auth_flow(self, request: httpx2.Request) -> AsyncGenerator[httpx2.Request, httpx2.Response]:
        sent = self._token
        key = self._dpop_key()
        if sent:
            present(request, sent, key)
        response = yield request
        nonce_retries = 0
        while response.status_code in (401, 403):
            if sent and nonce_retries < 2 and resource_nonce_retry(request, response, key):
                nonce_retries += 1
                present(request, sent, key)  # the resource wants a DPoP nonce: a new proof, same token
                response = yield request
                continue
            challenge = auth_challenge(response.headers.get_list("www-authenticate")) or Challenge("bearer", {})
            if response.status_code == 403 and challenge.error != "insufficient_scope":
                return
            try:
                sent = await self._authorize(sent, challenge, step_up=response.status_code == 403)
            except McpRelayError as exc:
                self.last_error = exc
                raise
            key = self._dpop_key()
            present(request, sent, key)
            response = yield request
        if key is not None:
            key.remember_nonce(str(request.url), response.headers)

    def _dpop_key(self) -> DPoPKey | None:
        grant = self.grant
        return key_for_tokens(grant.tokens.token_type, grant.extra) if grant is not None else None

    async def _authorize(self, rejected: str | None, challenge: Challenge, *, step_up: bool) -> str:
        """One login at a time; requests refused together share it."""
        async with self._lock:
            current = self._token
            if current is not None and current != rejected:
                return current  # another request logged in while this one waited
            if self.authorizations >= self._max:
                raise self._gave_up(challenge, step_up)
            self.authorizations += 1
            scopes = self._union(challenge.scope) if step_up else None
            grant = await self._login(challenge, scopes)
            if grant is None:
                raise McpRelayError(
                    ErrorType.CODE_FLOW_FAILED,
                    f"{self._server} refused the request but did not ask for a login when probed",
                    suggestion="the server's authorization behaviour is inconsistent; report it to its operator",
                    server=self._server,
                )
            self.grant = grant
            return grant.tokens.access_token

    def _union(self, challenged: str | None) -> list[str]:
        granted = (self.grant.tokens.scope or self.grant.requested_scope or "").split() if self.grant else []
        return list(dict.fromkeys(granted + (challenged or "").split()))

    def _gave_up(self, challenge: Challenge, step_up: bool) -> McpRelayError:
        if step_up:
            return McpRelayError(
                ErrorType.INSUFFICIENT_SCOPE,
                f"{self._server} still refuses the request for lack of scope after {self.authorizations} "
                f"authorization(s); it asks for: {challenge.scope or '?'}",
                suggestion="the account may not be allowed that scope; ask the server's operator",
                server=self._server,
                details={"required_scopes": (challenge.scope or "").split(), "authorizations": self.authorizations},
            )
        return McpRelayError(
            ErrorType.LOGIN_REQUIRED,
            f"{self._server} still rejects the token after {self.authorizations} authorization(s)",
            suggestion="check the server's resource and audience settings; then log in again",
            server=self._server,
            details={"authorizations": self.authorizations},
        )
