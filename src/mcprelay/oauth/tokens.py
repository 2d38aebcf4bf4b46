"""The token manager: one per grant (server + authorization server issuer + client id).

Concurrency contract
--------------------
``await manager.access_token()`` may be called by any number of tasks at once. It returns the
current access token without any lock while that token is fresh, so requests run in parallel.
When the token is due (within ``min(60 s, 10 % of its lifetime)`` of expiry) or a server rejected
it (:meth:`refresh_after_rejection`), exactly one refresh of the grant is in flight:

- in this process, the first caller refreshes and every other caller waits for that same result;
- across processes (and anything else sharing the home directory), the refresh runs under an OS
  file lock for the grant; under the lock the store is re-read, and tokens that a sibling already
  rotated are adopted instead of presenting the old refresh token again;
- the rotated tokens are written to the store (durably) before the lock is released and before
  any waiter is woken, and the refresh itself is shielded from cancellation, so a caller giving up
  cannot lose the newest refresh token half way.

A refresh token is therefore never presented twice by mcprelay. The one loss no client can
prevent is a response lost in transit after the server committed the rotation: the next refresh
then presents a consumed token, the server revokes the grant, and the user sees
``login_required``.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import anyio
import anyio.to_thread
import httpx2
from filelock import FileLock, Timeout

from mcprelay import diaglog
from mcprelay.errors import ErrorType, McpRelayError, login_required, new_correlation_id
from mcprelay.oauth.grant import StoredGrant, load_grant, token_key
from mcprelay.oauth.renewal import dpop_key, refresh_form
from mcprelay.oauth.rfc6749 import ClientCredentials, TokenEndpointError, TokenSet, token_request
from mcprelay.store.base import TokenStore

#: Renews a grant that has no refresh token by asking again (machine grants); see oauth/acquire.py.
Reacquire = Callable[[StoredGrant, str], Awaitable[TokenSet]]

TRANSIENT_ATTEMPTS = 4
BACKOFF_CAP = 8.0


def refresh_skew(tokens: TokenSet) -> float:
    """How long before expiry a token counts as due: the smaller of 60 s and 10 % of its lifetime.

    A fixed 60 s margin makes a 5-second token look expired at birth, and every request refreshes.
    """
    if tokens.expires_at is None:
        return 0.0
    lifetime = max(0.0, tokens.expires_at - tokens.issued_at)
    return min(60.0, 0.1 * lifetime)


class _GrantReplaced(Exception):
    """The stored grant now belongs to another client or issuer; refresh it under its own lock."""


class _Flight:
    """One refresh in progress in this process; waiters block on ``done``."""

    def __init__(self) -> None:
        self.done = anyio.Event()
        self.token: str | None = None
        self.error: BaseException | None = None


class TokenManager:
    def __init__(
        self,
        server: str,
        store: TokenStore,
        http: httpx2.AsyncClient,
        credentials: ClientCredentials | Callable[[StoredGrant], ClientCredentials],
        *,
        lock_dir: Path,
        lock_timeout: float = 30.0,
        clock: Callable[[], float] = time.time,
        reacquire: Reacquire | None = None,
    ) -> None:
        self.server = server
        self._store = store
        self._http = http
        self._credentials = credentials
        self._lock_dir = lock_dir
        self._lock_timeout = lock_timeout
        self._clock = clock
        self._reacquire = reacquire
        self._grant: StoredGrant | None = None
        self._flight: _Flight | None = None
        self._store_failed = False
        self.refreshes = 0  # refresh requests this manager sent (for status and benchmarks)

    # -- public API ---------------------------------------------------------------------------

    async def access_token(self) -> str:
        grant = self._grant or await self._load()
        if not grant.tokens.expired(skew=refresh_skew(grant.tokens), now=self._clock()):
            return grant.tokens.access_token
        return await self._single_flight(stale=grant.tokens.access_token)

    async def refresh_after_rejection(self, rejected: str) -> str:
        """The server answered 401 to ``rejected``: refresh, unless another caller already did."""
        grant = self._grant or await self._load()
        if grant.tokens.access_token != rejected:
            return grant.tokens.access_token
        return await self._single_flight(stale=rejected)

    async def reload(self) -> str:
        """Forget the grant in memory and read the store again (after a login stored a new one)."""
        self._grant = None
        return await self.access_token()

    @property
    def grant(self) -> StoredGrant | None:
        return self._grant

    # -- single flight ------------------------------------------------------------------------

    async def _single_flight(self, *, stale: str) -> str:
        while True:
            flight = self._flight
            if flight is None:
                break
            await flight.done.wait()
            if flight.error is not None:
                raise flight.error
            assert flight.token is not None
            if flight.token != stale:
                return flight.token
        flight = self._flight = _Flight()
        try:
            # Shielded: once the refresh request is sent, its answer must be stored even if the
            # caller that started it is cancelled — otherwise the newest refresh token is lost.
            with anyio.CancelScope(shield=True):
                token = await self._refresh_locked(stale=stale)
            flight.token = token
            return token
        except BaseException as exc:
            flight.error = exc
            raise
        finally:
            self._flight = None
            flight.done.set()

    async def _refresh_locked(self, *, stale: str) -> str:
        # Twice at most: a login that replaced the grant meanwhile needs that grant's own lock.
        for _ in range(2):
            try:
                return await self._refresh_under_grant_lock(stale=stale)
            except _GrantReplaced:
                continue
        raise login_required(self.server, f"the stored login for {self.server} kept changing during a refresh")

    async def _refresh_under_grant_lock(self, *, stale: str) -> str:
        cid = new_correlation_id()
        self._lock_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        assert self._grant is not None
        lock = FileLock(self._lock_dir / f"{self._lock_name(self._grant)}.lock", thread_local=False, mode=0o600)
        started = time.monotonic()
        try:
            await anyio.to_thread.run_sync(lock.acquire, self._lock_timeout)
        except Timeout:
            raise McpRelayError(
                ErrorType.REFRESH_FAILED,
                f"another mcprelay process held the refresh lock for {self.server} longer than "
                f"{self._lock_timeout:.0f} s",
                suggestion="try again; if it persists, look for a hung mcprelay process",
                server=self.server,
                correlation_id=cid,
            ) from None
        diaglog.event(
            "refresh_lock_acquired", server=self.server, correlation_id=cid,
            waited_ms=round((time.monotonic() - started) * 1000, 1),
        )
        try:
            return await self._refresh_under_lock(stale=stale, cid=cid)
        finally:
            await anyio.to_thread.run_sync(lock.release)

    async def _refresh_under_lock(self, *, stale: str, cid: str) -> str:
        adopted = await self._adopt_sibling(stale=stale, cid=cid)
        if adopted is not None:
            return adopted
        assert self._grant is not None
        grant = self._grant
        refresh_token = grant.tokens.refresh_token
        if not refresh_token and self._reacquire is not None and grant.extra.get("grant"):
            # A machine grant: no refresh token, so ask again — under this same single flight and lock.
            self.refreshes += 1
            grant.tokens = await self._reacquire(grant, cid)
            await self._persist(grant, cid)
            diaglog.event("reacquired", server=self.server, correlation_id=cid, grant=grant.extra.get("grant"),
                          expires_at=grant.tokens.expires_at)
            return grant.tokens.access_token
        if not refresh_token:
            raise login_required(self.server, f"the access token for {self.server} expired and there is "
                                  "no refresh token", correlation_id=cid)
        form = refresh_form(grant, refresh_token)
        response_lost = False
        for attempt in range(1, TRANSIENT_ATTEMPTS + 1):
            try:
                self.refreshes += 1
                credentials = self._credentials if isinstance(self._credentials, ClientCredentials) else (
                    self._credentials(grant)
                )
                tokens = await token_request(
                    self._http, grant.token_endpoint, credentials, form, server=self.server,
                    correlation_id=cid, failure_type=ErrorType.REFRESH_FAILED, previous_refresh=refresh_token,
                    dpop=dpop_key(grant),
                )
                break
            except TokenEndpointError as exc:
                if exc.oauth_error == "invalid_grant":
                    return await self._after_invalid_grant(refresh_token, cid, response_lost=response_lost)
                response_lost = response_lost or bool(exc.details.get("request_sent"))
                delay = self._transient_delay(exc, attempt)
                if delay is None:
                    raise
                diaglog.event("refresh_retry", server=self.server, correlation_id=cid, level="warning",
                              attempt=attempt, delay_s=delay, status=exc.status)
                await anyio.sleep(delay)
        else:  # pragma: no cover - the loop either breaks or raises
            raise AssertionError("unreachable")
        grant.tokens = tokens
        await self._persist(grant, cid)
        diaglog.event("refresh_succeeded", server=self.server, correlation_id=cid, expires_at=tokens.expires_at,
                      rotated=tokens.refresh_token != refresh_token)
        return tokens.access_token

    async def _adopt_sibling(self, *, stale: str, cid: str) -> str | None:
        """Under the lock: if the store holds tokens newer than ours, use them instead of refreshing."""
        stored = await anyio.to_thread.run_sync(load_grant, self._store, self.server)
        if stored is None:
            raise login_required(self.server, f"no stored tokens for {self.server} (logged out?)", correlation_id=cid)
        assert self._grant is not None
        if stored.grant_id != self._grant.grant_id:
            # A new login (another client or authorization server) replaced the grant: the store wins.
            self._grant = stored
            self._store_failed = False
            diaglog.event("grant_replaced", server=self.server, correlation_id=cid, issuer=stored.issuer)
            if not stored.tokens.expired(skew=refresh_skew(stored.tokens), now=self._clock()):
                return stored.tokens.access_token
            raise _GrantReplaced
        if self._store_failed:
            # The store missed our last rotation: memory holds the newest refresh token, the store an
            # already consumed one. Presenting that would revoke the grant.
            return None
        # Refresh from what is on disk, never from a possibly older copy in memory.
        self._grant = stored
        if stored.tokens.access_token != stale and not stored.tokens.expired(
            skew=refresh_skew(stored.tokens), now=self._clock()
        ):
            diaglog.event("refresh_adopted", server=self.server, correlation_id=cid)
            return stored.tokens.access_token
        return None

    async def _after_invalid_grant(self, presented: str, cid: str, *, response_lost: bool = False) -> str:
        """The refresh token was refused. Adopt a sibling's rotation, or end the grant — carefully."""
        stored = await anyio.to_thread.run_sync(load_grant, self._store, self.server)
        if stored is not None and stored.tokens.refresh_token != presented and not stored.tokens.expired(
            now=self._clock()
        ):
            self._grant = stored
            diaglog.event("refresh_adopted_after_invalid_grant", server=self.server, correlation_id=cid)
            return stored.tokens.access_token
        # Compare-and-delete: only wipe the tokens if they are still the ones that failed, so a
        # failing refresher can never delete a sibling's fresh tokens.
        if stored is not None and stored.tokens.refresh_token == presented:
            await anyio.to_thread.run_sync(self._store.delete, token_key(self.server))
        diaglog.event("refresh_invalid_grant", server=self.server, correlation_id=cid, level="error",
                      after_lost_response=response_lost)
        if response_lost:
            message = (
                f"a refresh for {self.server} reached the authorization server but its answer was lost in "
                "transit; the server had already rotated the refresh token, so the new one never arrived and "
                "the old one is now refused. No client can recover from that; a new login is needed"
            )
        else:
            message = (
                f"the authorization server no longer accepts the refresh token for {self.server} "
                "(expired, revoked, or the grant was ended); a new login is needed"
            )
        raise login_required(self.server, message, correlation_id=cid)

    def _transient_delay(self, exc: TokenEndpointError, attempt: int) -> float | None:
        if attempt >= TRANSIENT_ATTEMPTS or not (exc.status == 0 or exc.status == 429 or exc.status >= 500):
            return None
        delay = min(BACKOFF_CAP, 0.25 * 2 ** (attempt - 1))
        retry_after = exc.details.get("retry_after")
        if retry_after:
            try:
                delay = min(BACKOFF_CAP, max(delay, float(str(retry_after))))
            except ValueError:
                pass
        return float(delay)

    async def _persist(self, grant: StoredGrant, cid: str) -> None:
        try:
            await anyio.to_thread.run_sync(self._store.put, token_key(self.server), grant.to_dict())
            self._store_failed = False
        except McpRelayError as exc:
            # Keep the new tokens in memory: losing them would lose the chain for good.
            diaglog.event("token_store_failed", server=self.server, correlation_id=cid, level="error",
                          message=exc.message)
            if not self._store_failed:
                self._store_failed = True
                raise McpRelayError(
                    ErrorType.TOKEN_STORE_UNAVAILABLE,
                    f"refreshed the tokens for {self.server} but could not store them ({exc.message}); "
                    "they are kept in memory for this process only",
                    suggestion="fix the token store (see `mcprelay auth status`); other processes will need "
                    "a new login if this one exits first",
                    server=self.server,
                    correlation_id=cid,
                ) from None

    async def _load(self) -> StoredGrant:
        grant = await anyio.to_thread.run_sync(load_grant, self._store, self.server)
        if grant is None:
            raise login_required(self.server, f"not logged in to {self.server}")
        self._grant = grant
        return grant

    @staticmethod
    def _lock_name(grant: StoredGrant) -> str:
        return hashlib.sha256(grant.grant_id.encode()).hexdigest()[:32]
