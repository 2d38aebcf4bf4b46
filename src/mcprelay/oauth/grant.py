"""The stored grant: the tokens plus everything needed to refresh them without rediscovery.

One record per server under ``tokens/<server>``. The grant identity is (server, issuer, client id):
a different issuer or client means a different grant, and a record that no longer matches the
current registration is never refreshed with it.

:class:`GrantRecords` is how the refresher reads and writes that record *as versions*: every read
carries a stamp, and a write or delete names the stamp it replaces (compare-and-set), so a refresher
can never overwrite tokens that changed since it read them. Beside the grant lives the *attempt*
record ``attempt/<server>``: written before a refresh token is presented (as big as the grant, so it
doubles as the proof that the store can take the write) and removed with the rotated tokens. An
attempt left behind by a holder that died means "this refresh token may have been spent": nobody
presents it again.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import anyio.to_thread

from mcprelay.errors import ErrorType, McpRelayError
from mcprelay.oauth.rfc6749 import TokenSet
from mcprelay.store.base import Fence, TokenStore, VersionedStore, versioned


def token_key(server: str) -> str:
    return f"tokens/{server}"


def attempt_key(server: str) -> str:
    return f"attempt/{server}"


@dataclass
class StoredGrant:
    server: str
    issuer: str
    client_id: str
    resource: str
    token_endpoint: str
    registration_kind: str
    tokens: TokenSet
    redirect_uri: str | None = None
    token_endpoint_auth_method: str = "none"
    requested_scope: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def grant_id(self) -> str:
        return f"{self.server}|{self.issuer}|{self.client_id}"

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["tokens"] = self.tokens.to_dict()
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> StoredGrant:
        fields = {k: data[k] for k in cls.__dataclass_fields__ if k in data and k != "tokens"}
        return cls(tokens=TokenSet.from_dict(data["tokens"]), **fields)


def _unknown_format(server: str, exc: Exception) -> McpRelayError:
    return McpRelayError(
        ErrorType.TOKEN_STORE_UNAVAILABLE,
        f"the stored tokens for {server} are in an unknown format ({type(exc).__name__})",
        suggestion=f"run `mcprelay auth logout --server {server}` and log in again",
        server=server,
    )


def grant_from(data: dict[str, Any] | None, server: str) -> StoredGrant | None:
    if not data:
        return None
    try:
        return StoredGrant.from_dict(data)
    except (KeyError, TypeError, ValueError) as exc:
        raise _unknown_format(server, exc) from None


def load_grant(store: TokenStore, server: str) -> StoredGrant | None:
    try:
        data = store.get(token_key(server))
    except McpRelayError as exc:
        # The store cannot say which server a key belongs to; we can, so the suggestion names it.
        if exc.error_type == ErrorType.TOKEN_STORE_UNAVAILABLE and not exc.server:
            exc.server = server
            if "NAME" in exc.suggestion:
                exc.suggestion = exc.suggestion.replace("NAME", server)
            elif not exc.suggestion:
                exc.suggestion = (f"run `mcprelay auth logout --server {server}` and then "
                                  f"`mcprelay auth login --server {server}`")
        raise
    return grant_from(data, server)


def spent_hash(refresh_token: str) -> str:
    """What an attempt record keeps of the refresh token it presents: a hash, never the token."""
    return hashlib.sha256(b"mcprelay-attempt\0" + refresh_token.encode()).hexdigest()[:32]


@dataclass(frozen=True)
class Attempt:
    """A refresh in progress (or abandoned): who presented which refresh token, and when."""

    spent: str
    holder: str
    at: float = field(default_factory=time.time)

    def to_dict(self, size: int = 0) -> dict[str, Any]:
        data: dict[str, Any] = {"spent": self.spent, "holder": self.holder, "at": self.at}
        # Padded to the size of the grant it precedes: writing it shows the store can take that write.
        data["pad"] = "0" * max(0, size - len(json.dumps(data)) - 10)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> Attempt | None:
        if not isinstance(data, dict) or not isinstance(data.get("spent"), str):
            return None
        return cls(str(data["spent"]), str(data.get("holder", "")), float(data.get("at", 0.0)))


@dataclass(frozen=True)
class Snapshot:
    """One consistent read: the grant, the version (stamp) it was read at, and any unfinished attempt."""

    grant: StoredGrant | None
    stamp: str | None
    attempt: Attempt | None


class GrantRecords:
    """Versioned reads and fenced writes of one server's grant, on any store.

    With a store that has atomic versioned operations (Redis) they are used directly, fenced by the
    grant lease. With the local stores (file, keyring, memory) the same operations are emulated by
    read-compare-write; that is atomic because the caller holds the grant's OS file lock and every
    writer of this home takes it.
    """

    def __init__(self, store: TokenStore, server: str) -> None:
        self.store = store
        self.server = server
        self.key = token_key(server)
        self.attempt_key = attempt_key(server)
        self._native: VersionedStore | None = versioned(store)

    async def read(self) -> Snapshot:
        if self._native is not None:
            (value, stamp), (attempt, _) = await self._native.read_versions([self.key, self.attempt_key])
        else:
            value, stamp, attempt = await anyio.to_thread.run_sync(self._read_local)
        return Snapshot(grant_from(value, self.server), stamp, Attempt.from_dict(attempt))

    def _read_local(self) -> tuple[dict[str, Any] | None, str | None, dict[str, Any] | None]:
        value = self.store.get(self.key)
        attempt = self.store.get(self.attempt_key)
        return value, local_stamp(value), attempt

    async def reserve(self, attempt: Attempt, size: int, *, fence: Fence | None) -> None:
        """Record the attempt, padded to ``size`` bytes; raises when the store cannot take the write."""
        value = attempt.to_dict(size)
        if self._native is not None:
            await self._native.put_fenced(self.attempt_key, value, fence=fence, reserve_for=self.key)
            return

        def write() -> None:
            reserve = getattr(self.store, "reserve", None)
            if reserve is not None:
                reserve(self.key, size)  # the file store preallocates the grant's next file
            self.store.put(self.attempt_key, value)

        await anyio.to_thread.run_sync(write)

    async def commit(self, grant: StoredGrant, *, over: str | None, fence: Fence | None) -> bool:
        """Write the rotated grant if the record is still at ``over`` (and the fence holds); clear the attempt.

        False: somebody else changed the record (a login, a logout) or the lease lapsed; nothing written.
        """
        value = grant.to_dict()
        if self._native is not None:
            return await self._native.write_if(self.key, value, stamp=over, fence=fence, clear=[self.attempt_key])

        def write() -> bool:
            if local_stamp(self.store.get(self.key)) != over:
                return False
            self.store.put(self.key, value)
            self.store.delete(self.attempt_key)
            return True

        return await anyio.to_thread.run_sync(write)

    async def release(self) -> None:
        """Give back a reservation that was not used (the file store's preallocated file)."""
        unreserve = getattr(self.store, "unreserve", None)
        if self._native is None and unreserve is not None:
            await anyio.to_thread.run_sync(unreserve, self.key)

    async def clear_attempt(self, *, fence: Fence | None) -> None:
        """The outcome of the attempt is known and nothing rotated (the server answered an error)."""
        if self._native is not None:
            await self._native.delete_fenced(self.attempt_key, fence=fence)
            return
        await anyio.to_thread.run_sync(self.store.delete, self.attempt_key)

    async def delete_if(self, over: str | None) -> bool:
        """Compare-and-delete: remove the grant (and its attempt) only if it is still at ``over``."""
        if over is None:
            return False
        if self._native is not None:
            return await self._native.delete_if(self.key, stamp=over, also=[self.attempt_key])

        def delete() -> bool:
            if local_stamp(self.store.get(self.key)) != over:
                return False
            self.store.delete(self.key)
            self.store.delete(self.attempt_key)
            return True

        return await anyio.to_thread.run_sync(delete)


def local_stamp(value: dict[str, Any] | None) -> str | None:
    """The version of a record in a store without versions: a hash of its content."""
    if value is None:
        return None
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:24]
