"""The refresher: everything that happens once a refresh of a grant is due, under the grant lock.

:class:`~mcprelay.oauth.tokens.TokenManager` decides *when* (and makes sure one task per process
does it); this module decides *how*:

1. take the grant lock (:mod:`mcprelay.oauth.grantlock`: a file lock, or a Redis lease), with a
   deadline it is never held past;
2. read the stored grant as a version: adopt a sibling's rotation, follow a login that replaced the
   grant, refuse a refresh token that a holder which died may already have presented;
3. show that the store can take the write (a reservation as big as the grant) — otherwise nothing
   is sent, and the grant stays intact at the server;
4. send the request (:class:`TokenRequest`: a refresh token today; grant types that re-acquire
   instead, such as client credentials, plug in here), retrying transient failures in the same flight;
   ``invalid_grant`` adopts a sibling's newer grant or ends the grant (compare-and-delete);
   ``invalid_client`` drops a dead dynamic registration and its tokens;
5. write the rotated grant with a compare-and-set on the version read (and, for a lease, on the
   lease itself); a store that refuses leaves the new chain in memory and in a recovery record.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any, Protocol

import anyio
import anyio.to_thread

from mcprelay import diaglog, metrics
from mcprelay.errors import ErrorType, McpRelayError, login_required, new_correlation_id
from mcprelay.oauth._documents import OAUTH_REQUEST_DEADLINE_S
from mcprelay.oauth.grant import Attempt, GrantRecords, Snapshot, StoredGrant, grant_from, spent_hash
from mcprelay.oauth.grantlock import GrantLock, Hold
from mcprelay.oauth.recovery import RecoveryBox
from mcprelay.oauth.renewal import dpop_key, refresh_form
from mcprelay.oauth.rfc6749 import ClientCredentials, TokenEndpointError, TokenSet, token_request
from mcprelay.oauth.rfc7591 import drop_registration_if
from mcprelay.store.base import TokenStore

TRANSIENT_ATTEMPTS = 4
BACKOFF_CAP = 8.0
#: The longest a grant lock is held for one refresh (retries included); the lock is released at it.
HOLD_DEADLINE_S = 90.0
#: This process, as the holder named in attempt records (a pid alone repeats across machines).
PROCESS_ID = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"


def refresh_skew(tokens: TokenSet) -> float:
    """How long before expiry a token counts as due: the smaller of 60 s and 10 % of its lifetime.

    A fixed 60 s margin makes a 5-second token look expired at birth, and every request refreshes.
    """
    if tokens.expires_at is None:
        return 0.0
    lifetime = max(0.0, tokens.expires_at - tokens.issued_at)
    return min(60.0, 0.1 * lifetime)


def is_fresh(tokens: TokenSet, now: float) -> bool:
    return not tokens.expired(skew=refresh_skew(tokens), now=now)


class TokenRequest(Protocol):
    """How new tokens are obtained for a grant — the piece a new grant type replaces.

    ``spends`` is the single-use credential the request presents (a rotating refresh token), or None
    for grant types that can simply ask again (client credentials): only a spent credential needs the
    attempt record and the ``invalid_grant`` rules.
    """

    grant_type: str

    def spends(self, grant: StoredGrant) -> str | None: ...

    def can_renew(self, grant: StoredGrant) -> bool: ...

    async def send(self, grant: StoredGrant, *, correlation_id: str) -> TokenSet: ...


Credentials = ClientCredentials | Callable[[StoredGrant], ClientCredentials]


class RefreshTokenRequest:
    """RFC 6749 §6: ``grant_type=refresh_token`` with the form :func:`~mcprelay.oauth.renewal.refresh_form`
    builds (RFC 8707 resource, provider switches) and, for a DPoP-bound grant, a proof with its key."""

    grant_type = "refresh_token"

    def __init__(self, http: Any, credentials: Credentials, *, deadline: float = OAUTH_REQUEST_DEADLINE_S) -> None:
        self.http = http
        self.credentials = credentials
        self.deadline = deadline

    def spends(self, grant: StoredGrant) -> str | None:
        return grant.tokens.refresh_token

    def can_renew(self, grant: StoredGrant) -> bool:
        return bool(grant.tokens.refresh_token)

    async def send(self, grant: StoredGrant, *, correlation_id: str) -> TokenSet:
        refresh_token = grant.tokens.refresh_token
        assert refresh_token
        # Resolved at refresh time (a login may have changed the registration), off the loop: it reads the store.
        credentials = self.credentials if isinstance(self.credentials, ClientCredentials) else (
            await anyio.to_thread.run_sync(self.credentials, grant)
        )
        return await token_request(
            self.http, grant.token_endpoint, credentials, refresh_form(grant, refresh_token), server=grant.server,
            correlation_id=correlation_id, failure_type=ErrorType.REFRESH_FAILED, previous_refresh=refresh_token,
            dpop=dpop_key(grant), deadline=self.deadline,
        )


#: Asks again for a machine grant (client credentials, JWT bearer, token exchange); see oauth/acquire.py.
Reacquire = Callable[[StoredGrant, str], Awaitable[TokenSet]]


class ReacquireRequest:
    """Renewal without a refresh token: the same grant asked again. Nothing single-use is presented,
    so there is no attempt record to honour and no ``invalid_grant`` rule — a failure is just a failure."""

    grant_type = "reacquire"

    def __init__(self, reacquire: Reacquire) -> None:
        self.reacquire = reacquire

    def spends(self, grant: StoredGrant) -> str | None:
        return None

    def can_renew(self, grant: StoredGrant) -> bool:
        return bool(grant.extra.get("grant"))

    async def send(self, grant: StoredGrant, *, correlation_id: str) -> TokenSet:
        tokens = await self.reacquire(grant, correlation_id)
        diaglog.event("reacquired", server=grant.server, correlation_id=correlation_id,
                      grant=grant.extra.get("grant"), expires_at=tokens.expires_at)
        return tokens


class RenewalByGrant:
    """Picks the strategy per grant: a refresh when there is a refresh token, else (a machine grant) asking
    again. The refresher sees one :class:`TokenRequest`."""

    grant_type = "refresh_token or reacquire"

    def __init__(self, refresh: TokenRequest, reacquire: TokenRequest) -> None:
        self.refresh = refresh
        self.reacquire = reacquire

    def _for(self, grant: StoredGrant) -> TokenRequest:
        if not grant.tokens.refresh_token and self.reacquire.can_renew(grant):
            return self.reacquire
        return self.refresh

    def spends(self, grant: StoredGrant) -> str | None:
        return self._for(grant).spends(grant)

    def can_renew(self, grant: StoredGrant) -> bool:
        return self._for(grant).can_renew(grant)

    async def send(self, grant: StoredGrant, *, correlation_id: str) -> TokenSet:
        return await self._for(grant).send(grant, correlation_id=correlation_id)


class _GrantReplaced(Exception):
    """The stored grant now belongs to another client or issuer; refresh it under its own lock."""

    def __init__(self, grant: StoredGrant) -> None:
        super().__init__(grant.grant_id)
        self.grant = grant


def _store_refused(server: str, exc: McpRelayError, cid: str) -> McpRelayError:
    return McpRelayError(
        ErrorType.TOKEN_STORE_UNAVAILABLE,
        f"the token store cannot take a write for {server} ({exc.message}); the refresh was not sent, so "
        "the grant is intact at the authorization server",
        suggestion=exc.suggestion or "fix the token store (see `mcprelay auth status`), then try again",
        server=server,
        correlation_id=cid,
        details=exc.details,
    )


class GrantRefresher:
    """Refreshes one server's grant; used by one :class:`TokenManager`, which calls it one at a time."""

    def __init__(
        self,
        server: str,
        store: TokenStore,
        lock: GrantLock,
        request: TokenRequest,
        *,
        recovery: RecoveryBox | None = None,
        hold_deadline: float = HOLD_DEADLINE_S,
        clock: Callable[[], float] = time.time,
        on_outcome: Callable[[McpRelayError | None], None] | None = None,
    ) -> None:
        self.server = server
        self.store = store
        self.records = GrantRecords(store, server)
        self.lock = lock
        self.request = request
        self.recovery = recovery
        self.hold_deadline = hold_deadline
        self.clock = clock
        self.on_outcome = on_outcome
        self.refreshes = 0  # token requests sent (for status and benchmarks)
        self.last_correlation_id: str | None = None  # of the newest renewal, for its activity record
        # The newest chain when the store refused it, and the stored version it replaces.
        self._memory: StoredGrant | None = None
        self._memory_over: str | None = None
        self._store_failed = False
        self._failed = False

    # -- what the single-flight layer calls ---------------------------------------------------------

    async def load(self) -> StoredGrant:
        """The grant to start from: a recovery record left by an earlier process, else the store's."""
        if self._memory is not None:
            return self._memory
        if self.recovery is not None and self.recovery.exists(self.server):
            adopted = await self._adopt_recovery()
            if adopted is not None:
                return adopted
        snap = await self.records.read()
        if snap.grant is None:
            raise login_required(self.server, f"not logged in to {self.server}")
        return snap.grant

    async def renew(self, current: StoredGrant, *, stale: str) -> StoredGrant:
        """New tokens for ``current`` whose access token ``stale`` is due or was rejected."""
        cid = self.last_correlation_id = new_correlation_id()
        started, sent = time.monotonic(), self.refreshes
        try:
            grant = await self._renew(current, stale, cid)
        except McpRelayError as exc:
            exc.with_context(server=self.server, correlation_id=cid)
            metrics.refresh(str(exc.error_type), time.monotonic() - started)
            await self._report(exc)
            raise
        metrics.refresh("refreshed" if self.refreshes > sent else "adopted", time.monotonic() - started)
        if self._failed:
            await self._report(None)
        return grant

    # -- under the lock -----------------------------------------------------------------------------

    async def _renew(self, current: StoredGrant, stale: str, cid: str) -> StoredGrant:
        # Twice at most: a login that replaced the grant meanwhile needs that grant's own lock.
        for _ in range(2):
            try:
                async with self.lock.hold(current.grant_id, server=self.server, correlation_id=cid) as hold:
                    metrics.lease_wait("file" if hold.fence is None else "redis", hold.waited_s)
                    try:
                        with anyio.fail_after(self.hold_deadline):
                            return await self._renew_held(current, stale, hold, cid)
                    except TimeoutError:
                        raise McpRelayError(
                            ErrorType.REFRESH_FAILED,
                            f"the refresh of {self.server} did not finish within {self.hold_deadline:g} s; "
                            "the grant lock was released",
                            suggestion="check that the authorization server is up, then try again",
                            server=self.server,
                            correlation_id=cid,
                        ) from None
            except _GrantReplaced as replaced:
                current = replaced.grant
        raise login_required(self.server, f"the stored login for {self.server} kept changing during a refresh",
                             correlation_id=cid)

    async def _renew_held(self, current: StoredGrant, stale: str, hold: Hold, cid: str) -> StoredGrant:
        snap = await self.records.read()
        now = self.clock()
        if snap.grant is None:
            self._forget_memory()
            raise login_required(self.server, self._gone_message(), correlation_id=cid)
        if snap.grant.grant_id != current.grant_id:
            # A new login (another client or authorization server) replaced the grant: the store wins.
            self._forget_memory()
            diaglog.event("grant_replaced", server=self.server, correlation_id=cid, issuer=snap.grant.issuer)
            if is_fresh(snap.grant.tokens, now):
                return snap.grant
            raise _GrantReplaced(snap.grant)
        if self._memory is not None and self._memory.grant_id == current.grant_id and snap.stamp == self._memory_over:
            # The store missed our last rotation: memory holds the newest refresh token, the store an
            # already consumed one. Presenting that would revoke the grant.
            base = self._memory
        else:
            self._forget_memory()
            base = snap.grant  # refresh from what is stored, never from a possibly older copy in memory
        if base.tokens.access_token != stale and is_fresh(base.tokens, now):
            diaglog.event("refresh_adopted", server=self.server, correlation_id=cid, from_memory=base is self._memory)
            return base
        spent = self.request.spends(base)
        if spent and snap.attempt is not None and snap.attempt.spent == spent_hash(spent) and base is not self._memory:
            raise self._unfinished_attempt(snap, cid)
        if not self.request.can_renew(base):
            raise login_required(self.server, f"the access token for {self.server} expired and there is no "
                                 "refresh token", correlation_id=cid)
        await self._reserve(base, spent, hold, cid)
        try:
            try:
                tokens = await self._request(base, cid)
            except _InvalidGrant as dead:
                return await self._after_invalid_grant(dead.presented, base, cid, response_lost=dead.response_lost)
            except TokenEndpointError as exc:
                if exc.oauth_error == "invalid_client":
                    await self._after_invalid_client(base, snap, exc, cid)
                if not exc.details.get("request_sent") or exc.status:
                    # The server answered (or was never reached): nothing was spent, the attempt is over.
                    await self._clear_attempt(hold)
                raise
            rotated = replace(base, tokens=tokens)
            await self._persist(rotated, over=snap.stamp, hold=hold, cid=cid)
        finally:
            await self.records.release()
        diaglog.event("refresh_succeeded", server=self.server, correlation_id=cid, expires_at=tokens.expires_at,
                      rotated=tokens.refresh_token != spent)
        return rotated

    async def _reserve(self, base: StoredGrant, spent: str | None, hold: Hold, cid: str) -> None:
        size = len(json.dumps(base.to_dict())) + 1024  # room for a longer rotated token
        try:
            if self.recovery is not None:
                await anyio.to_thread.run_sync(self.recovery.prepare)
            await self.records.reserve(Attempt(spent_hash(spent) if spent else "", PROCESS_ID), size,
                                       fence=hold.fence)
        except OSError as exc:
            raise _store_refused(self.server, McpRelayError(
                ErrorType.TOKEN_STORE_UNAVAILABLE, f"{exc.strerror or exc}",
                suggestion="free disk space in the mcprelay home, then try again"), cid) from None
        except McpRelayError as exc:
            raise _store_refused(self.server, exc, cid) from None

    async def _clear_attempt(self, hold: Hold) -> None:
        try:
            await self.records.clear_attempt(fence=hold.fence)
        except McpRelayError:
            pass  # a stale attempt for a token that was not spent only costs a login later; never a revocation

    async def _request(self, base: StoredGrant, cid: str) -> TokenSet:
        spent = self.request.spends(base)
        response_lost = False
        for attempt in range(1, TRANSIENT_ATTEMPTS + 1):
            try:
                self.refreshes += 1
                return await self.request.send(base, correlation_id=cid)
            except TokenEndpointError as exc:
                if exc.oauth_error == "invalid_grant" and spent:
                    raise _InvalidGrant(spent, response_lost) from None
                response_lost = response_lost or bool(exc.details.get("request_sent"))
                delay = self._transient_delay(exc, attempt)
                if delay is None:
                    raise
                diaglog.event("refresh_retry", server=self.server, correlation_id=cid, level="warning",
                              attempt=attempt, delay_s=delay, status=exc.status)
                await anyio.sleep(delay)
        raise AssertionError("unreachable")  # pragma: no cover - the loop returns or raises

    @staticmethod
    def _transient_delay(exc: TokenEndpointError, attempt: int) -> float | None:
        if attempt >= TRANSIENT_ATTEMPTS or exc.details.get("deadline_exceeded"):
            return None  # a server that dribbles past the deadline is not retried into the lock's deadline
        if not (exc.status == 0 or exc.status == 429 or exc.status >= 500):
            return None
        delay = min(BACKOFF_CAP, 0.25 * 2 ** (attempt - 1))
        retry_after = exc.details.get("retry_after")
        if retry_after:
            try:
                delay = min(BACKOFF_CAP, max(delay, float(str(retry_after))))
            except ValueError:
                pass
        return float(delay)

    # -- dead grants and dead clients ---------------------------------------------------------------

    async def _after_invalid_grant(self, presented: str, base: StoredGrant, cid: str, *,
                                   response_lost: bool) -> StoredGrant:
        """The refresh token was refused. Adopt a sibling's newer grant, or end the grant — carefully."""
        snap = await self.records.read()
        stored = snap.grant
        if (stored is not None and stored.grant_id == base.grant_id and stored.tokens.refresh_token != presented
                and not stored.tokens.expired(now=self.clock())):
            self._forget_memory()
            diaglog.event("refresh_adopted_after_invalid_grant", server=self.server, correlation_id=cid)
            return stored
        # Compare-and-delete: only wipe the tokens if they are still the ones that failed, so a failing
        # refresher can never delete a sibling's fresh tokens.
        if stored is not None and stored.tokens.refresh_token == presented:
            await self.records.delete_if(snap.stamp)
        elif self._memory is not None and stored is not None and snap.stamp == self._memory_over:
            await self.records.delete_if(snap.stamp)  # the stored one is older still than what failed
        self._forget_memory()
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

    async def _after_invalid_client(self, base: StoredGrant, snap: Snapshot, exc: TokenEndpointError,
                                    cid: str) -> None:
        """The server does not know the client. A dynamic registration is dead for good: drop it and its
        tokens (both compare-and-delete) so that the next login registers again; a configured client is
        the user's to fix."""
        if base.registration_kind != "dcr":
            return
        dropped = await drop_registration_if(self.store, self.server, base.issuer, base.client_id)
        await self.records.delete_if(snap.stamp)
        self._forget_memory()
        diaglog.event("registration_dropped", server=self.server, correlation_id=cid, level="error",
                      client_id=base.client_id, dropped=dropped)
        raise login_required(
            self.server,
            f"the authorization server no longer knows the client {base.client_id} registered for {self.server} "
            "(invalid_client: it was deleted, or the server forgot its registrations); the registration and the "
            "tokens were dropped and the next login registers a new client",
            correlation_id=cid,
        ) from None

    def _unfinished_attempt(self, snap: Snapshot, cid: str) -> McpRelayError:
        assert snap.attempt is not None
        ago = max(0.0, self.clock() - snap.attempt.at)
        who = "this process" if snap.attempt.holder == PROCESS_ID else f"another mcprelay ({snap.attempt.holder})"
        diaglog.event("refresh_attempt_unfinished", server=self.server, correlation_id=cid, level="error",
                      holder=snap.attempt.holder, seconds_ago=round(ago, 1))
        return login_required(
            self.server,
            f"a refresh of {self.server} sent by {who} {ago:.0f} s ago never finished (it died or lost its "
            "answer), so the refresh token may already be spent at the authorization server; presenting it again "
            "would make a server with reuse detection revoke the grant. A new login is needed",
            correlation_id=cid,
        )

    def _gone_message(self) -> str:
        lost = getattr(self.store, "data_lost", None)
        if callable(lost) and lost():
            return (f"the token store {self.store.describe()} no longer holds the login for {self.server}: "
                    "Redis restarted without persistence and its data is gone (enable appendonly); "
                    "a new login is needed")
        return f"no stored tokens for {self.server} (logged out?)"

    # -- persistence ------------------------------------------------------------------------------

    async def _persist(self, rotated: StoredGrant, *, over: str | None, hold: Hold, cid: str) -> None:
        try:
            written = await self.records.commit(rotated, over=over, fence=hold.fence)
        except McpRelayError as exc:
            self._keep(rotated, over, exc, cid)
            return
        if written:
            self._forget_memory()
            self._store_failed = False
            return
        # Not written: the version moved on, or the fence (lease) lapsed while the request ran.
        snap = await self.records.read()
        if snap.stamp == over:
            # Only the lease lapsed; nobody wrote since. Take a fresh lease and write, still compare-and-set.
            diaglog.event("refresh_lease_lapsed", server=self.server, correlation_id=cid, level="warning")
            try:
                async with self.lock.hold(rotated.grant_id, server=self.server, correlation_id=cid) as again:
                    if await self.records.commit(rotated, over=over, fence=again.fence):
                        self._forget_memory()
                        return
            except McpRelayError as exc:
                self._keep(rotated, over, exc, cid)
                return
            snap = await self.records.read()
        self._forget_memory()
        if snap.grant is None:
            raise login_required(self.server, f"{self.server} was logged out while a refresh was running",
                                 correlation_id=cid)
        diaglog.event("refresh_superseded", server=self.server, correlation_id=cid, level="warning")
        if snap.grant.grant_id != rotated.grant_id and is_fresh(snap.grant.tokens, self.clock()):
            raise _GrantReplaced(snap.grant)
        raise login_required(self.server, f"the stored login for {self.server} changed while a refresh was "
                             "running; a new login is needed", correlation_id=cid)

    def _keep(self, rotated: StoredGrant, over: str | None, exc: McpRelayError, cid: str) -> None:
        """The store refused the rotated grant: memory and a recovery record keep the only copy."""
        self._memory, self._memory_over = rotated, over
        saved = self.recovery.save(self.server, rotated.to_dict(), over=over) if self.recovery else False
        diaglog.event("token_store_failed", server=self.server, correlation_id=cid, level="error",
                      message=exc.message, recovery_record=saved)
        if self._store_failed:
            return
        self._store_failed = True
        kept = "in memory and in a recovery record in the mcprelay home" if saved else "in memory for this process only"
        raise McpRelayError(
            ErrorType.TOKEN_STORE_UNAVAILABLE,
            f"refreshed the tokens for {self.server} but could not store them ({exc.message}); they are kept {kept}",
            suggestion="fix the token store (see `mcprelay auth status`); the next mcprelay started with this home "
            "adopts the recovery record",
            server=self.server,
            correlation_id=cid,
        ) from None

    def _forget_memory(self) -> None:
        if self._memory is not None and self.recovery is not None:
            self.recovery.drop(self.server)
        self._memory, self._memory_over = None, None

    async def _adopt_recovery(self) -> StoredGrant | None:
        assert self.recovery is not None
        record = self.recovery.load(self.server)
        if record is None:
            return None
        data, over = record
        try:
            kept = grant_from(data, self.server)
        except McpRelayError:
            kept = None
        if kept is None:
            self.recovery.drop(self.server)
            return None
        cid = new_correlation_id()
        async with self.lock.hold(kept.grant_id, server=self.server, correlation_id=cid) as hold:
            snap = await self.records.read()
            if snap.stamp != over:
                # The store moved on (a logout, a new login, or this record was already adopted): it wins.
                self.recovery.drop(self.server)
                diaglog.event("recovery_record_dropped", server=self.server, correlation_id=cid)
                return None
            try:
                written = await self.records.commit(kept, over=over, fence=hold.fence)
            except McpRelayError:
                written = False
            if not written:
                self._memory, self._memory_over = kept, over  # use it from memory; keep the record
                return kept
        self.recovery.drop(self.server)
        diaglog.event("recovery_record_adopted", server=self.server, correlation_id=cid)
        return kept

    async def _report(self, error: McpRelayError | None) -> None:
        self._failed = error is not None
        if self.on_outcome is not None:
            try:
                # Best effort and bounded: when the store is down, the caller's error must not wait for it.
                with anyio.fail_after(3):
                    await anyio.to_thread.run_sync(self.on_outcome, error, abandon_on_cancel=True)
            except Exception:  # recording the outcome is never a reason for a refresh to fail
                diaglog.event("refresh_outcome_not_recorded", server=self.server, correlation_id=None,
                              level="warning")


class _InvalidGrant(Exception):
    def __init__(self, presented: str, response_lost: bool) -> None:
        super().__init__("invalid_grant")
        self.presented = presented
        self.response_lost = response_lost
