"""The grant lock: at most one refresh of a grant at a time, across processes or across machines.

One small interface, two implementations:

* :class:`FileGrantLock` — an OS file lock per grant under ``<home>/locks``, for every process that
  shares a home. The OS releases it when its holder dies, and it cannot lapse while the holder lives,
  so writes under it need no fence.
* :class:`RedisLease` — a lease per grant in Redis (``SET NX PX``), renewed while the refresh runs
  and released only by its holder (compare-and-delete), for replicas that share nothing but Redis.
  A lease can lapse under a live holder (a paused process, a cut link), so it comes with a
  :class:`~mcprelay.store.base.Fence` that the store checks atomically on every write.

Both wait a bounded time for the lock and then fail; a Redis that does not answer is
``token_store_unavailable`` — the refresh is then not sent at all (never fail open: a refresh sent
without the lease can present a refresh token a sibling is presenting at the same moment, and a
server with reuse detection revokes the grant for both).
"""

from __future__ import annotations

import contextlib
import hashlib
import secrets
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import anyio
import anyio.to_thread

from mcprelay import diaglog
from mcprelay.errors import ErrorType, McpRelayError
from mcprelay.store.base import Fence


@dataclass
class Hold:
    """A held grant lock: the fence for fenced writes (None when the lock cannot lapse) and the wait."""

    fence: Fence | None
    waited_s: float
    lost: anyio.Event = field(default_factory=anyio.Event)


class GrantLock(Protocol):
    """Exclusion for one grant. ``hold`` waits a bounded time; it raises :class:`McpRelayError` when the
    lock cannot be had, and releases when the block ends (also on cancellation)."""

    def hold(self, grant_id: str, *, server: str, correlation_id: str) -> contextlib.AbstractAsyncContextManager[Hold]:
        ...


def lock_name(grant_id: str) -> str:
    """A file- and key-safe name for a grant (its id holds URLs)."""
    return hashlib.sha256(grant_id.encode()).hexdigest()[:32]


class FileGrantLock:
    """An OS file lock per grant in ``lock_dir``, waited for at most ``wait`` seconds."""

    def __init__(self, lock_dir: Path, *, wait: float = 30.0) -> None:
        self.lock_dir = lock_dir
        self.wait = wait

    @contextlib.asynccontextmanager
    async def hold(self, grant_id: str, *, server: str, correlation_id: str) -> AsyncIterator[Hold]:
        from filelock import FileLock, Timeout

        self.lock_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        lock = FileLock(self.lock_dir / f"{lock_name(grant_id)}.lock", thread_local=False, mode=0o600)
        started = time.monotonic()
        try:
            await anyio.to_thread.run_sync(lock.acquire, self.wait)
        except Timeout:
            raise McpRelayError(
                ErrorType.REFRESH_FAILED,
                f"another mcprelay process held the refresh lock for {server} longer than {self.wait:.0f} s",
                suggestion="try again; if it persists, look for a hung mcprelay process",
                server=server,
                correlation_id=correlation_id,
            ) from None
        waited = time.monotonic() - started
        diaglog.event("refresh_lock_acquired", server=server, correlation_id=correlation_id,
                      waited_ms=round(waited * 1000, 1))
        try:
            yield Hold(fence=None, waited_s=waited)
        finally:
            await anyio.to_thread.run_sync(lock.release)


class LeaseBackend(Protocol):
    """What a lease needs from the Redis store (see ``store/redis.py``)."""

    def lease_key(self, name: str) -> str: ...

    async def lease_acquire(self, key: str, token: str, ttl_ms: int) -> bool: ...

    async def lease_renew(self, key: str, token: str, ttl_ms: int) -> bool: ...

    async def lease_release(self, key: str, token: str) -> bool: ...

    async def wait_event(self, names: list[str], within: float) -> None: ...

    def unavailable(self, what: str, *, server: str | None, correlation_id: str | None) -> McpRelayError: ...


class RedisLease:
    """A Redis lease per grant: ``ttl`` seconds, renewed every ``ttl / 3`` while held; ``wait`` bounds
    both the wait for a sibling's lease and the wait for an unreachable Redis."""

    def __init__(self, backend: LeaseBackend, *, ttl: float = 10.0, wait: float = 60.0,
                 poll: float = 0.25) -> None:
        self.backend = backend
        self.ttl = ttl
        self.wait = wait
        self.poll = poll
        self.acquire_attempts = 0  # for the benchmarks: lease round trips
        # One token per lock (one per token manager): a SET a paused Redis applies late still names us,
        # so our next attempt takes it over instead of waiting out a lease nobody holds.
        self._token = secrets.token_hex(16)

    @contextlib.asynccontextmanager
    async def hold(self, grant_id: str, *, server: str, correlation_id: str) -> AsyncIterator[Hold]:
        key = self.backend.lease_key(lock_name(grant_id))
        token = self._token
        ttl_ms = max(100, int(self.ttl * 1000))
        started = time.monotonic()
        deadline = started + self.wait
        unreachable: BaseException | None = None
        while True:
            self.acquire_attempts += 1
            acquired = False
            with anyio.move_on_after(max(0.05, deadline - time.monotonic())) as attempt:
                try:
                    acquired = await self.backend.lease_acquire(key, token, ttl_ms)
                    unreachable = None
                except McpRelayError as exc:
                    unreachable = exc
            if attempt.cancelled_caught:
                unreachable = McpRelayError(ErrorType.TOKEN_STORE_UNAVAILABLE, "no answer")
            if acquired:
                break
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                if unreachable is not None:
                    raise self.backend.unavailable(
                        f"the refresh of {server} needs the grant's lease and Redis did not answer for "
                        f"{self.wait:g} s; the refresh was not sent", server=server, correlation_id=correlation_id,
                    ) from None
                raise McpRelayError(
                    ErrorType.REFRESH_FAILED,
                    f"another replica held the refresh lease for {server} longer than {self.wait:.0f} s",
                    suggestion="try again; if it persists, look for a hung replica",
                    server=server,
                    correlation_id=correlation_id,
                )
            if unreachable is not None:
                await anyio.sleep(min(self.poll, remaining))
            else:
                # Woken when the holder releases (pub/sub), else polled: the lease expires on its own too.
                await self.backend.wait_event([key], min(max(self.poll, 0.05), remaining))
        waited = time.monotonic() - started
        diaglog.event("refresh_lease_acquired", server=server, correlation_id=correlation_id,
                      waited_ms=round(waited * 1000, 1))
        hold = Hold(fence=Fence(key, token), waited_s=waited)
        failure: BaseException | None = None
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._renew, hold, key, token, ttl_ms, server, correlation_id)
                try:
                    yield hold
                except BaseException as exc:
                    # Raised again below, outside the task group, so that callers see the error itself
                    # (a login_required) rather than an ExceptionGroup around it.
                    failure = exc
                finally:
                    tg.cancel_scope.cancel()
            if failure is not None:
                raise failure
        finally:
            with anyio.CancelScope(shield=True), contextlib.suppress(McpRelayError):
                # Only the holder's own token is deleted: a lease that lapsed and went to a sibling stays.
                await self.backend.lease_release(key, token)

    async def _renew(self, hold: Hold, key: str, token: str, ttl_ms: int, server: str, cid: str) -> None:
        while True:
            await anyio.sleep(self.ttl / 3)
            try:
                still = await self.backend.lease_renew(key, token, ttl_ms)
            except McpRelayError:
                continue  # unknown: the fenced write will tell; keep trying while the lease may live
            if not still:
                diaglog.event("refresh_lease_lost", server=server, correlation_id=cid, level="warning")
                hold.lost.set()
                return


def describe_lock(lock: Any) -> str:
    return "redis lease" if isinstance(lock, RedisLease) else "file lock"
