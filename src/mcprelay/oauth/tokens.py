"""The token manager: one per grant, shaped like ``golang.org/x/oauth2``'s ``ReuseTokenSource``.

It holds the current grant and hands out its access token while that is fresh; when it is not, it
asks its :class:`GrantSource` (the refresher, :mod:`mcprelay.oauth.refresher`) for a new one. All
the OAuth — requests, retries, locks across processes and replicas, persistence — is the source's;
this type only decides *when*, and makes sure a process asks once.

Concurrency contract
--------------------
``await manager.access_token()`` may be called by any number of tasks at once. While the token is
fresh it is returned from memory without any lock, store read or network round trip, so requests
run in parallel and a fresh call touches no file and no Redis. When it is due (within
``min(60 s, 10 % of its lifetime)`` of expiry) or a server rejected it (:meth:`refresh_after_rejection`),
exactly one renewal is in flight in this process: the first caller starts it and every other
caller waits for that same result (success or error). The one lock is the in-flight renewal itself
(``_flight``); there is no await between checking it and setting it.

The renewal is shielded from cancellation: once a refresh request may be on the wire, its answer is
stored even if the caller that started it gave up, so the newest refresh token is never lost half way.
Across processes and replicas the source takes the grant lock (an OS file lock, or a Redis lease)
and re-reads the store under it, so tokens a sibling already rotated are adopted instead of
presenting the old refresh token again. A refresh token is therefore never presented twice by
mcprelay. The one loss no client can prevent is a response lost in transit after the server
committed the rotation: the next refresh then presents a consumed token, the server revokes the
grant, and the user sees ``login_required``.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Protocol

import anyio

from mcprelay.oauth.grant import StoredGrant
from mcprelay.oauth.refresher import is_fresh, refresh_skew

__all__ = ["GrantSource", "TokenManager", "refresh_skew"]


class GrantSource(Protocol):
    """Where a manager's grant comes from: the stored one, and a renewed one when it is due."""

    refreshes: int

    async def load(self) -> StoredGrant: ...

    async def renew(self, current: StoredGrant, *, stale: str) -> StoredGrant: ...


class _Flight:
    """One renewal in progress in this process; waiters block on ``done``."""

    def __init__(self) -> None:
        self.done = anyio.Event()
        self.grant: StoredGrant | None = None
        self.error: BaseException | None = None


#: Told of each renewal this manager ran: (the grant, when it started, the error or None). Only renewals that
#: sent a token request or failed are reported — adopting a sibling's rotation is no refresh of ours.
RenewalHook = Callable[[StoredGrant, float, BaseException | None], Awaitable[None]]


class TokenManager:
    def __init__(
        self, server: str, source: GrantSource, *, clock: Callable[[], float] = time.time,
        on_renewal: RenewalHook | None = None,
    ) -> None:
        self.server = server
        self.source = source
        self.on_renewal = on_renewal
        self._clock = clock
        self._grant: StoredGrant | None = None
        self._flight: _Flight | None = None

    @property
    def refreshes(self) -> int:
        """Token requests the source sent (for status and benchmarks)."""
        return self.source.refreshes

    @property
    def grant(self) -> StoredGrant | None:
        return self._grant

    async def access_token(self) -> str:
        grant = self._grant
        if grant is not None and is_fresh(grant.tokens, self._clock()):
            return grant.tokens.access_token
        if grant is None:
            grant = await self._single_flight(None)
            if is_fresh(grant.tokens, self._clock()):
                return grant.tokens.access_token
        return (await self._single_flight(grant.tokens.access_token)).tokens.access_token

    async def refresh_after_rejection(self, rejected: str) -> str:
        """The server answered 401 to ``rejected``: renew, unless another caller already did."""
        grant = self._grant or await self._single_flight(None)
        if grant.tokens.access_token != rejected:
            return grant.tokens.access_token
        return (await self._single_flight(rejected)).tokens.access_token

    async def reload(self) -> str:
        """Forget the grant in memory and read the store again (after a login stored a new one)."""
        self._grant = None
        return await self.access_token()

    def forget(self) -> None:
        """Drop the grant in memory (the store said it changed); the next call reads it again."""
        self._grant = None

    async def _renew(self, current: StoredGrant, stale: str) -> StoredGrant:
        if self.on_renewal is None:
            return await self.source.renew(current, stale=stale)
        started, sent = time.time(), self.source.refreshes
        try:
            grant = await self.source.renew(current, stale=stale)
        except BaseException as exc:
            await self.on_renewal(current, started, exc)
            raise
        if self.source.refreshes > sent:
            await self.on_renewal(grant, started, None)
        return grant

    async def _single_flight(self, stale: str | None) -> StoredGrant:
        """Load (``stale`` None) or renew the grant whose access token is ``stale``, once per process."""
        while (flight := self._flight) is not None:
            await flight.done.wait()
            if flight.error is not None:
                raise flight.error
            assert flight.grant is not None
            if stale is None or flight.grant.tokens.access_token != stale:
                return flight.grant
        flight = self._flight = _Flight()
        try:
            # Shielded: once the refresh request is sent, its answer must be stored even if the caller
            # that started it is cancelled — otherwise the newest refresh token is lost.
            with anyio.CancelScope(shield=True):
                current = self._grant
                if stale is None or current is None:
                    grant = await self.source.load()
                else:
                    grant = await self._renew(current, stale)
            self._grant = flight.grant = grant
            return grant
        except BaseException as exc:
            flight.error = exc
            raise
        finally:
            self._flight = None
            flight.done.set()
