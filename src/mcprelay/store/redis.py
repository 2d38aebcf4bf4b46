"""The fleet store: grants, client registrations and login status in Redis, shared by gateway replicas.

``token_store: "redis://[user:password@]host:port/db"`` (``rediss://`` for TLS). Query parameters
mcprelay reads (and removes before the URL reaches the ``redis`` client): ``prefix`` (key prefix,
default ``mcprelay:``, so several fleets can share one Redis), ``lease_ttl`` (seconds a refresh lease
lives between renewals, default 10) and ``wait`` (how long a due refresh waits for a lease or for an
unreachable Redis, default 60). The password may instead come from ``MCPRELAY_REDIS_PASSWORD``.

Values are sealed with AES-256-GCM (:mod:`mcprelay.store.seal`) under ``MCPRELAY_STORE_KEY``;
``MCPRELAY_STORE_KEY_PREVIOUS`` is read during a rotation, every write uses the current key. Nothing
in Redis is readable as a token. Layout under the prefix::

    k:<store key>   hash {v: sealed value, s: stamp}   (the stamp changes with every write)
    lease:<grant>   a refresh lease (SET NX PX), its value the holder's random token
    epoch           written once; its disappearance means Redis lost its data
    events          pub/sub channel: "put <key>" / "del <key>" / "rel <lease key>" after each change

Why a private event loop: :class:`~mcprelay.store.base.TokenStore` is synchronous and is called
from worker threads (the gateway reads grants off its loop, ``auth status`` has no loop at all),
while the ``redis`` package's asyncio client binds its connections to the loop that made them. So the
store owns one event loop in a daemon thread and runs every Redis operation there: the synchronous
facade submits a coroutine and waits for it (bounded by the socket timeout), and the asynchronous
operations the token manager and the gateway use (leases, versioned writes, change notifications)
are awaited from any loop through ``asyncio.wrap_future``. One connection pool, one subscriber
connection, no loop confusion; the thread hop costs tens of microseconds, and only refreshes, logins
and status reads pay it — a tool call with a fresh token never reaches this module.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import json
import os
import secrets
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

from mcprelay.errors import ErrorType, McpRelayError, config_error
from mcprelay.store.base import Fence, check_key
from mcprelay.store.seal import MAKE_KEY, Sealer, SealError, decode_key

_T = TypeVar("_T")

DEFAULT_PREFIX = "mcprelay:"
SOCKET_TIMEOUT_S = 2.0
_EPOCH_FILE = "fleet-epoch"

_READ = """
local out = {}
for i = 2, #KEYS do
  local v = redis.call('HMGET', KEYS[i], 'v', 's')
  out[#out + 1] = v[1] or false
  out[#out + 1] = v[2] or false
end
out[#out + 1] = redis.call('GET', KEYS[1]) or false
return out
"""

# KEYS: epoch, key, [clear...]; ARGV: sealed, stamp, channel, event, epoch value
_PUT = """
redis.call('HSET', KEYS[2], 'v', ARGV[1], 's', ARGV[2])
for i = 3, #KEYS do redis.call('DEL', KEYS[i]) end
redis.call('SET', KEYS[1], ARGV[5], 'NX')
redis.call('PUBLISH', ARGV[3], ARGV[4])
return 1
"""

# KEYS: epoch, key, lease (or key again when unfenced), [clear...]
# ARGV: expected stamp ('' = absent), lease token ('' = unfenced), sealed, new stamp, channel, event, epoch value
_WRITE_IF = """
if ARGV[2] ~= '' and redis.call('GET', KEYS[3]) ~= ARGV[2] then return 0 end
local s = redis.call('HGET', KEYS[2], 's') or ''
if s ~= ARGV[1] then return -1 end
redis.call('HSET', KEYS[2], 'v', ARGV[3], 's', ARGV[4])
for i = 4, #KEYS do redis.call('DEL', KEYS[i]) end
redis.call('SET', KEYS[1], ARGV[7], 'NX')
redis.call('PUBLISH', ARGV[5], ARGV[6])
return 1
"""

# KEYS: key, [also...]; ARGV: expected stamp, channel, event
_DELETE_IF = """
if (redis.call('HGET', KEYS[1], 's') or '') ~= ARGV[1] then return 0 end
for i = 1, #KEYS do redis.call('DEL', KEYS[i]) end
redis.call('PUBLISH', ARGV[2], ARGV[3])
return 1
"""

# KEYS: key, lease (or key when unfenced); ARGV: lease token ('' = unfenced), sealed ('' = delete), stamp
_FENCED = """
if ARGV[1] ~= '' and redis.call('GET', KEYS[2]) ~= ARGV[1] then return 0 end
if ARGV[2] == '' then redis.call('DEL', KEYS[1]) else redis.call('HSET', KEYS[1], 'v', ARGV[2], 's', ARGV[3]) end
return 1
"""

# KEYS: lease; ARGV: token, ttl ms. Ours already (a late SET from an attempt we gave up on): extend it.
_ACQUIRE = """
local v = redis.call('GET', KEYS[1])
if v == ARGV[1] then redis.call('PEXPIRE', KEYS[1], ARGV[2]) return 1 end
if v then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
"""

_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
"""

_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  redis.call('PUBLISH', ARGV[2], ARGV[3])
  return 1
end
return 0
"""


def _positive(query: dict[str, str], name: str, default: float) -> float:
    raw = query.pop(name, None)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not 0 < value <= 3600:
        raise config_error(f"token_store: {name}={raw!r} is not a number of seconds between 0 and 3600",
                           suggestion=f"fix {name} in the redis:// URL of token_store", field="token_store")
    return value


def parse_redis_url(url: str) -> tuple[str, str, str, float, float]:
    """(URL for the redis client, display address, prefix, lease TTL, wait); the display never has a password."""
    parts = urlsplit(url)
    if parts.scheme not in {"redis", "rediss"} or not parts.hostname:
        raise config_error("token_store: a Redis store URL looks like redis://[user:password@]host:port/db",
                           suggestion="fix token_store in the config", field="token_store")
    query = dict(parse_qsl(parts.query, keep_blank_values=True))
    prefix = query.pop("prefix", DEFAULT_PREFIX)
    if not prefix or len(prefix) > 100:
        raise config_error("token_store: prefix must be 1 to 100 characters", field="token_store")
    lease_ttl = _positive(query, "lease_ttl", 10.0)
    wait = _positive(query, "wait", 60.0)
    netloc = parts.netloc
    if parts.password is None and os.environ.get("MCPRELAY_REDIS_PASSWORD"):
        user = parts.username or ""
        from urllib.parse import quote

        host = netloc.rpartition("@")[2]
        netloc = f"{quote(user, safe='')}:{quote(os.environ['MCPRELAY_REDIS_PASSWORD'], safe='')}@{host}"
    try:
        port = parts.port or 6379
    except ValueError:
        raise config_error("token_store: the Redis URL has an invalid port", field="token_store") from None
    db = unquote(parts.path.lstrip("/")) or "0"
    shown = f"{parts.scheme}://{parts.hostname}:{port}/{db}"
    client_url = urlunsplit((parts.scheme, netloc, parts.path, urlencode(query), ""))
    return client_url, shown, prefix, lease_ttl, wait


def sealer_from_env() -> Sealer:
    """The data key from ``MCPRELAY_STORE_KEY`` (and the previous one); a clear config error without it."""
    text = os.environ.get("MCPRELAY_STORE_KEY", "")
    how = f"make one with: {MAKE_KEY} — then set MCPRELAY_STORE_KEY to it on every replica (the same key)"
    if not text.strip():
        raise config_error(
            "token_store is a Redis URL but MCPRELAY_STORE_KEY is not set; the fleet store seals every value "
            "with that key (32 random bytes, base64) and refuses to start without it",
            suggestion=how, field="MCPRELAY_STORE_KEY",
        )
    try:
        current = decode_key(text)
    except ValueError as exc:
        raise config_error(f"MCPRELAY_STORE_KEY is not a usable key: {exc}", suggestion=how,
                           field="MCPRELAY_STORE_KEY") from None
    previous: bytes | None = None
    old = os.environ.get("MCPRELAY_STORE_KEY_PREVIOUS", "")
    if old.strip():
        try:
            previous = decode_key(old)
        except ValueError as exc:
            raise config_error(f"MCPRELAY_STORE_KEY_PREVIOUS is not a usable key: {exc}", suggestion=how,
                               field="MCPRELAY_STORE_KEY_PREVIOUS") from None
    return Sealer(current, previous)


class _Loop:
    """The store's private event loop in a daemon thread."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="mcprelay-redis", daemon=True)
        self.thread.start()

    def submit(self, coro: Coroutine[Any, Any, _T]) -> asyncio.Future[_T]:
        return asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, self.loop))

    def run(self, coro: Coroutine[Any, Any, _T], timeout: float) -> _T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)


class RedisStore:
    """:class:`~mcprelay.store.base.TokenStore` (plus versioned writes, leases and change feeds) on Redis."""

    name = "redis"
    shared = True  # status lives here too: every replica shows the same

    def __init__(self, url: str, *, home: Path | None = None, sealer: Sealer | None = None) -> None:
        self._client_url, self.address, self.prefix, self.lease_ttl, self.wait = parse_redis_url(url)
        self._sealer = sealer or sealer_from_env()
        self._home = home
        self._loop: _Loop | None = None
        self._client: Any = None
        self._scripts: dict[str, Any] = {}
        self._start_lock = threading.Lock()
        self._listeners: dict[str, set[Callable[[str], None]]] = {}
        self._listeners_lock = threading.Lock()
        self._subscriber: asyncio.Task[None] | None = None
        self._epoch_seen: str | None = self._read_epoch_file()
        self._epoch_lost = False
        self.channel = self.prefix + "events"
        self.epoch_key = self.prefix + "epoch"

    # -- plumbing ---------------------------------------------------------------------------------

    def _ensure(self) -> _Loop:
        with self._start_lock:
            if self._loop is None:
                import redis.asyncio as aioredis
                from redis.asyncio.retry import Retry
                from redis.backoff import ExponentialBackoff

                loop = _Loop()

                async def connect() -> Any:
                    # One quick retry: a pooled connection that died with a Redis restart is replaced.
                    return aioredis.Redis.from_url(
                        self._client_url, socket_timeout=SOCKET_TIMEOUT_S,
                        socket_connect_timeout=SOCKET_TIMEOUT_S, retry=Retry(ExponentialBackoff(0.2, 0.05), 1),
                        decode_responses=False,
                    )

                self._client = loop.run(connect(), 10)
                for name, body in (("read", _READ), ("put", _PUT), ("write_if", _WRITE_IF),
                                   ("delete_if", _DELETE_IF), ("fenced", _FENCED), ("acquire", _ACQUIRE),
                                   ("renew", _RENEW), ("release", _RELEASE)):
                    self._scripts[name] = self._client.register_script(body)
                self._loop = loop
                atexit.register(self.close)
            return self._loop

    def _error(self, exc: BaseException, action: str) -> McpRelayError:
        return McpRelayError(
            ErrorType.TOKEN_STORE_UNAVAILABLE,
            f"the Redis token store at {self.address} could not {action}: {type(exc).__name__}: {str(exc)[:200]}",
            suggestion=self._suggestion(exc), details={"store": self.address},
        )

    def _suggestion(self, exc: BaseException) -> str:
        """What to do, with the two TLS mistakes named: an untrusted certificate, and plain text to a TLS port."""
        text = str(exc)
        if "CERTIFICATE_VERIFY_FAILED" in text or "certificate verify failed" in text:
            return ("the Redis server's TLS certificate is not trusted here: add ssl_ca_certs=/path/to/ca.pem to "
                    "the token_store URL's query (rediss://host:port/0?ssl_ca_certs=…)")
        if self.address.startswith("redis://") and ("reset by peer" in text or "Connection closed" in text):
            return ("check that Redis is running and reachable; if it only speaks TLS, write the token_store URL "
                    "as rediss://…")
        return "check that Redis is running and reachable from this machine, then try again"

    def unavailable(self, what: str, *, server: str | None, correlation_id: str | None) -> McpRelayError:
        return McpRelayError(
            ErrorType.TOKEN_STORE_UNAVAILABLE, what,
            suggestion=f"check that Redis at {self.address} is running and reachable, then try again",
            server=server, correlation_id=correlation_id, details={"store": self.address},
        )

    async def _guard(self, coro: Awaitable[_T], action: str) -> _T:
        from redis.exceptions import RedisError

        try:
            return await coro
        except (TimeoutError, RedisError, OSError) as exc:
            raise self._error(exc, action) from None

    def _sync(self, factory: Callable[[], Awaitable[_T]], action: str) -> _T:
        loop = self._ensure()

        async def run() -> _T:
            return await self._guard(factory(), action)

        try:
            return loop.run(run(), SOCKET_TIMEOUT_S * 3 + 1)
        except TimeoutError:
            raise self._error(TimeoutError("no answer"), action) from None

    async def _async(self, factory: Callable[[], Awaitable[_T]], action: str) -> _T:
        loop = self._ensure()

        async def run() -> _T:
            return await self._guard(factory(), action)

        return await loop.submit(run())

    def _k(self, key: str) -> str:
        return self.prefix + "k:" + check_key(key)

    def _seal(self, key: str, value: dict[str, Any]) -> bytes:
        if not isinstance(value, dict):
            raise TypeError("a stored value must be a dict")
        return self._sealer.seal(json.dumps(value, separators=(",", ":"), allow_nan=False).encode(), key)

    def _open(self, key: str, blob: Any) -> dict[str, Any] | None:
        if not blob:
            return None
        try:
            value = json.loads(self._sealer.open(blob, key))
        except (SealError, ValueError) as exc:
            raise McpRelayError(
                ErrorType.TOKEN_STORE_UNAVAILABLE,
                f"cannot open the stored entry {key!r} in the Redis token store at {self.address}: {exc}",
                suggestion="give every replica the same MCPRELAY_STORE_KEY (and the old one as "
                "MCPRELAY_STORE_KEY_PREVIOUS during a rotation); otherwise run "
                "`mcprelay auth logout --server NAME` and log in again",
                details={"key": key},
            ) from None
        if not isinstance(value, dict):
            raise McpRelayError(ErrorType.TOKEN_STORE_UNAVAILABLE, f"the stored entry {key!r} is not mcprelay data")
        return value

    @staticmethod
    def _stamp() -> str:
        return secrets.token_hex(8)

    def _event(self, op: str, key: str) -> str:
        return f"{op} {key}"

    def _new_epoch(self) -> str:
        return secrets.token_hex(8)

    # -- TokenStore (synchronous facade) ---------------------------------------------------------------

    def get(self, key: str) -> dict[str, Any] | None:
        ((value, _stamp),) = self._sync(lambda: self._read([key]), "read")
        return value

    def put(self, key: str, value: dict[str, Any]) -> None:
        blob = self._seal(key, value)
        self._sync(lambda: self._scripts["put"](
            keys=[self.epoch_key, self._k(key)],
            args=[blob, self._stamp(), self.channel, self._event("put", key), self._new_epoch()],
        ), "write")

    def delete(self, key: str) -> None:
        async def delete() -> None:
            assert self._client is not None
            async with self._client.pipeline(transaction=True) as pipe:
                pipe.delete(self._k(key))
                pipe.publish(self.channel, self._event("del", key))
                await pipe.execute()

        self._sync(delete, "delete")

    def describe(self) -> str:
        return f"redis ({self.address}, prefix {self.prefix!r}; values sealed with AES-256-GCM)"

    # -- versioned operations (VersionedStore) ----------------------------------------------------

    async def _read(self, keys: list[str]) -> list[tuple[dict[str, Any] | None, str | None]]:
        raw = await self._scripts["read"](keys=[self.epoch_key, *[self._k(k) for k in keys]], args=[])
        epoch = raw[-1]
        self._note_epoch(epoch.decode() if isinstance(epoch, bytes) else None)
        out: list[tuple[dict[str, Any] | None, str | None]] = []
        for index, key in enumerate(keys):
            blob, stamp = raw[2 * index], raw[2 * index + 1]
            out.append((self._open(key, blob or None), stamp.decode() if isinstance(stamp, bytes) else None))
        return out

    async def read_versions(self, keys: list[str]) -> list[tuple[dict[str, Any] | None, str | None]]:
        return await self._async(lambda: self._read(keys), "read")

    async def write_if(self, key: str, value: dict[str, Any], *, stamp: str | None, fence: Fence | None,
                       clear: list[str]) -> bool:
        blob = self._seal(key, value)
        lease = fence.lease_key if fence else self._k(key)
        result = await self._async(lambda: self._scripts["write_if"](
            keys=[self.epoch_key, self._k(key), lease, *[self._k(c) for c in clear]],
            args=[stamp or "", fence.token if fence else "", blob, self._stamp(), self.channel,
                  self._event("put", key), self._new_epoch()],
        ), "write")
        return int(result) == 1

    async def delete_if(self, key: str, *, stamp: str, also: list[str]) -> bool:
        result = await self._async(lambda: self._scripts["delete_if"](
            keys=[self._k(key), *[self._k(a) for a in also]], args=[stamp, self.channel, self._event("del", key)],
        ), "delete")
        return int(result) == 1

    async def put_fenced(self, key: str, value: dict[str, Any], *, fence: Fence | None,
                         reserve_for: str | None = None) -> None:
        blob = self._seal(key, value)
        ok = await self._async(lambda: self._scripts["fenced"](
            keys=[self._k(key), fence.lease_key if fence else self._k(key)],
            args=[fence.token if fence else "", blob, self._stamp()],
        ), "write")
        if int(ok) != 1:
            raise self.unavailable(f"the refresh lease for {key} lapsed before the write", server=None,
                                   correlation_id=None)

    async def delete_fenced(self, key: str, *, fence: Fence | None) -> None:
        await self._async(lambda: self._scripts["fenced"](
            keys=[self._k(key), fence.lease_key if fence else self._k(key)],
            args=[fence.token if fence else "", "", ""],
        ), "delete")

    # -- leases (grantlock.LeaseBackend) ------------------------------------------------------------

    def lease_key(self, name: str) -> str:
        return self.prefix + "lease:" + name

    async def lease_acquire(self, key: str, token: str, ttl_ms: int) -> bool:
        result = await self._async(lambda: self._scripts["acquire"](keys=[key], args=[token, ttl_ms]),
                                   "take a refresh lease")
        return int(result) == 1

    async def lease_renew(self, key: str, token: str, ttl_ms: int) -> bool:
        result = await self._async(lambda: self._scripts["renew"](keys=[key], args=[token, ttl_ms]), "renew a lease")
        return int(result) == 1

    async def lease_release(self, key: str, token: str) -> bool:
        result = await self._async(
            lambda: self._scripts["release"](keys=[key], args=[token, self.channel, self._event("rel", key)]),
            "release a lease",
        )
        return int(result) == 1

    def grant_lock(self) -> Any:
        from mcprelay.oauth.grantlock import RedisLease

        return RedisLease(self, ttl=self.lease_ttl, wait=self.wait)

    # -- change notifications ---------------------------------------------------------------------

    def _listen(self, name: str, callback: Callable[[str], None]) -> Callable[[], None]:
        loop = self._ensure()
        with self._listeners_lock:
            self._listeners.setdefault(name, set()).add(callback)
        loop.loop.call_soon_threadsafe(self._start_subscriber)

        def stop() -> None:
            with self._listeners_lock:
                listeners = self._listeners.get(name)
                if listeners is not None:
                    listeners.discard(callback)
                    if not listeners:
                        del self._listeners[name]

        return stop

    def _start_subscriber(self) -> None:
        if self._subscriber is None or self._subscriber.done():
            self._subscriber = asyncio.get_running_loop().create_task(self._subscribe_forever())

    def _fire(self, name: str | None, op: str) -> None:
        with self._listeners_lock:
            targets = [cb for n, cbs in self._listeners.items() if name is None or n == name for cb in cbs]
        for callback in targets:
            with contextlib.suppress(Exception):
                callback(op)

    async def _subscribe_forever(self) -> None:
        """One subscriber connection; after a reconnect every listener is woken (events may have been missed)."""
        backoff = 0.1
        while True:
            pubsub = self._client.pubsub()
            try:
                await pubsub.subscribe(self.channel)
                self._fire(None, "resync")
                backoff = 0.1
                while True:
                    message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
                    if message is None:
                        continue
                    data = message.get("data")
                    text = data.decode(errors="replace") if isinstance(data, bytes) else str(data)
                    op, _, name = text.partition(" ")
                    self._fire(name, op)
            except asyncio.CancelledError:
                raise
            except Exception:
                await asyncio.sleep(backoff)
                backoff = min(2.0, backoff * 2)
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()

    @contextlib.asynccontextmanager
    async def watch(self, key: str, wake: Callable[[str], None]) -> AsyncIterator[None]:
        """Call ``wake(op)`` on the caller's loop when ``key`` is written (``put``) or deleted (``del``)."""
        caller = asyncio.get_running_loop()

        def notify(op: str) -> None:
            with contextlib.suppress(RuntimeError):  # the caller's loop has closed
                caller.call_soon_threadsafe(wake, op)

        stop = self._listen(key, notify)
        try:
            yield
        finally:
            stop()

    async def wait_event(self, names: list[str], within: float) -> None:
        """Return when one of ``names`` changed (pub/sub), or after ``within`` seconds (the polling fallback)."""
        caller = asyncio.get_running_loop()
        event = asyncio.Event()

        def notify(_op: str) -> None:
            with contextlib.suppress(RuntimeError):
                caller.call_soon_threadsafe(event.set)

        stops = [self._listen(name, notify) for name in names]
        try:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(event.wait(), within)
        finally:
            for stop in stops:
                stop()

    # -- health and data loss ---------------------------------------------------------------------

    def ping(self) -> float:
        """Round-trip time of a PING in seconds; raises ``token_store_unavailable``."""
        started = time.monotonic()

        async def ping() -> None:
            assert self._client is not None
            await self._client.ping()

        self._sync(ping, "answer a PING")
        return time.monotonic() - started

    def _epoch_record(self) -> dict[str, Any]:
        from mcprelay.paths import read_private

        assert self._home is not None
        try:
            record = json.loads(read_private(self._home / "state" / _EPOCH_FILE, 64 * 1024) or b"{}")
        except (OSError, ValueError, McpRelayError):
            return {}
        return record if isinstance(record, dict) else {}

    def _read_epoch_file(self) -> str | None:
        if self._home is None:
            return None
        value = self._epoch_record().get(self.address + "|" + self.prefix)
        return value if isinstance(value, str) else None

    def _note_epoch(self, epoch: str | None) -> None:
        if epoch is None:
            self._epoch_lost = self._epoch_seen is not None
            return
        self._epoch_lost = self._epoch_seen is not None and epoch != self._epoch_seen
        if epoch != self._epoch_seen:
            self._epoch_seen = epoch
            self._write_epoch_file(epoch)

    def _write_epoch_file(self, epoch: str) -> None:
        """Remember Redis's epoch in this home, so a later process can tell that Redis lost its data."""
        if self._home is None:
            return
        from mcprelay.paths import private_dir, write_private

        with contextlib.suppress(OSError, ValueError, McpRelayError):
            record = self._epoch_record()
            record[self.address + "|" + self.prefix] = epoch
            write_private(private_dir(self._home / "state") / _EPOCH_FILE, json.dumps(record).encode())

    def data_lost(self) -> bool:
        """True when the last read found Redis without the data it had before (restarted without persistence)."""
        return self._epoch_lost

    def close(self) -> None:
        loop, self._loop = self._loop, None
        if loop is None:
            return

        async def shutdown() -> None:
            if self._subscriber is not None:
                self._subscriber.cancel()
                with contextlib.suppress(BaseException):
                    await self._subscriber
            with contextlib.suppress(Exception):
                await self._client.aclose()

        with contextlib.suppress(Exception):
            loop.run(shutdown(), 2)
        loop.loop.call_soon_threadsafe(loop.loop.stop)
        loop.thread.join(2)
