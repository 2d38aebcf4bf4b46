"""The gateway's pins: one file per server in ``<home>/pins/``, the held set in memory, approvals.

:mod:`pins` decides what is held; this module keeps what it decides from: the approved definitions
of each server's tools, in ``<home>/pins/<server>.json`` (``0600`` in a ``0700`` directory, written
atomically through :mod:`mcprelay.paths`, read-modify-written under a file lock so that two gateways
of one home, or a gateway and ``mcprelay tools approve``, never lose each other's approvals).

The tool-call path never touches these files: :meth:`PinBook.screen` is called when the catalogue is
rebuilt (after a change), answers from memory, and caches its answer per server until the server's
tool list or its pins change. A server's file is read the first time the server is screened; what
must be written — a first sighting's pins, an approval — is written off the event loop. Every second
the book looks (``stat``) at the files it has read, so an approval by another process (``mcprelay
tools approve`` beside a ``serve --stdio`` gateway) takes effect here too; any change of the pins
calls ``on_change``, and the gateway then tells its clients ``tools/list_changed``.

A file that cannot be read as pins (damaged, hand-edited) counts as a server seen but with nothing
approved: its tools are held, never exposed by a fresh first sighting.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

import anyio
import anyio.to_thread
import mcp_types as types
from filelock import FileLock

from mcprelay import diaglog, paths
from mcprelay.errors import ErrorType, McpRelayError
from mcprelay.gateway.catalog.pins import Held, Offered, Pin, PinMode, Screened, screen

logger = logging.getLogger(__name__)

PINS_DIR = "pins"
FORMAT = 1
#: How often the book looks for approvals written by another process.
POLL_INTERVAL = 1.0
MAX_FILE_BYTES = 64 * 1024 * 1024
LOCK_TIMEOUT = 10.0

_Stamp = tuple[int, int, int] | None


def pins_dir(home: Path) -> Path:
    return home / PINS_DIR


def pin_path(home: Path, server: str) -> Path:
    return pins_dir(home) / f"{server}.json"


def _stamp(path: Path) -> _Stamp:
    try:
        info = os.stat(path)
    except FileNotFoundError:
        return None
    return (info.st_mtime_ns, info.st_size, info.st_ino)


def read_pins(home: Path, server: str) -> dict[str, Pin] | None:
    """The server's pins from its file: None when the server was never seen (no file); a damaged file is
    logged and counts as nothing approved."""
    path = pin_path(home, server)
    try:
        data = paths.read_private(path, MAX_FILE_BYTES)
    except (OSError, McpRelayError) as exc:
        logger.error("%s: cannot read the pins of %s (%s); its tools stay held", path, server, exc)
        return {}
    if data is None:
        return None
    try:
        raw = json.loads(data)
        tools = raw["tools"] if isinstance(raw, dict) else None
        if not isinstance(tools, dict):
            raise ValueError("no 'tools' object")
    except (ValueError, KeyError, TypeError) as exc:
        logger.error("%s is not a pin file (%s); the tools of %s stay held until approved", path, exc, server)
        return {}
    pins: dict[str, Pin] = {}
    for name, entry in tools.items():
        pin = Pin.from_dict(entry)
        if isinstance(name, str) and pin is not None:
            pins[name] = pin
    return pins


def write_pins(home: Path, server: str, pins: Mapping[str, Pin]) -> None:
    paths.private_dir(pins_dir(home))
    body = {"format": FORMAT, "server": server, "tools": {name: pin.to_dict() for name, pin in sorted(pins.items())}}
    paths.write_private(pin_path(home, server), json.dumps(body, indent=1, ensure_ascii=False).encode())


def update_pins(
    home: Path, server: str, change: Callable[[dict[str, Pin] | None], dict[str, Pin] | None]
) -> tuple[dict[str, Pin] | None, _Stamp]:
    """Read, ``change`` and write the server's pins under its lock; returns what the file then holds.

    ``change`` gets the current pins (None: no file) and returns the pins to write, or None to write
    nothing. Blocking: call it from a worker thread.
    """
    paths.private_dir(pins_dir(home))
    lock = FileLock(str(pins_dir(home) / f".{server}.lock"), timeout=LOCK_TIMEOUT, mode=0o600, thread_local=False)
    with lock:
        current = read_pins(home, server)
        wanted = change(None if current is None else dict(current))
        if wanted is not None:
            write_pins(home, server, wanted)
            current = wanted
        return current, _stamp(pin_path(home, server))


def approved(offered: Iterable[Offered], now: float | None = None) -> dict[str, Pin]:
    at = time.time() if now is None else now
    return {o.tool.name: Pin(o.hash, o.definition, at, "approved") for o in offered}


def held_error(held: Held, exposed_name: str, request_id: str | None) -> McpRelayError:
    """The structured error a call to a held tool gets: what is held, why, and how a person approves it."""
    why = (
        "it is new on this server and has not been approved"
        if held.reason == "new"
        else f"its definition changed since it was approved ({', '.join(held.diff().fields) or 'definition'})"
    )
    return McpRelayError(
        ErrorType.USAGE_ERROR,
        f"tool {exposed_name!r} is held back by the gateway: {why}",
        suggestion=(
            f"ask the user to review and approve it: `mcprelay tools approve {held.server} {held.tool}` "
            "(or the Approve button on the gateway's page, `mcprelay ui`)"
        ),
        server=held.server,
        request_id=request_id,
        details={"reason": "tool_held", "held": held.reason, "tool": held.tool, "hash": held.offered.hash,
                 "approved_hash": held.approved.hash if held.approved is not None else None},
    )


class PinBook:
    """Pins of every server of one gateway, in memory, kept in step with ``<home>/pins/``."""

    def __init__(self, home: Path, mode: Callable[[], PinMode], on_change: Callable[[], None]) -> None:
        self.home = home
        self._mode = mode
        self._on_change = on_change
        self._pins: dict[str, dict[str, Pin] | None] = {}  # servers read so far; None: never seen
        self._stamps: dict[str, _Stamp] = {}
        self._cache: dict[str, tuple[tuple[types.Tool, ...], int, PinMode, Screened]] = {}
        self._generation = 0
        self._pending: dict[str, dict[str, Pin]] = {}  # first sightings not written yet
        self._wake: anyio.Event | None = None

    @property
    def mode(self) -> PinMode:
        return self._mode()

    # ------------------------------------------------------------------ screening (the catalogue build)

    def screen(self, server: str, tools: tuple[types.Tool, ...]) -> Screened:
        """``server``'s ``tools`` sorted into exposed and held; from memory after the first call per server."""
        mode = self._mode()
        cached = self._cache.get(server)
        if cached is not None and cached[0] is tools and cached[1] == self._generation and cached[2] == mode:
            return cached[3]
        if mode == "off":
            result = Screened(exposed=list(tools))
        else:
            if server not in self._pins:
                self._load(server)
            offered = [Offered.of(tool) for tool in tools]
            result = screen(server, offered, self._pins[server], mode)
            if result.first_sight is not None:
                # Trust on first sight: these are the server's pins from now on (written in the background).
                self._pins[server] = dict(result.first_sight)
                self._pending[server] = dict(result.first_sight)
                self._generation += 1
                self._kick()
                diaglog.event("tools_pinned_first_sight", server=server, correlation_id=None,
                              tools=len(result.first_sight))
        self._cache[server] = (tools, self._generation, mode, result)
        return result

    def _load(self, server: str) -> None:
        path = pin_path(self.home, server)
        self._stamps[server] = _stamp(path)
        self._pins[server] = read_pins(self.home, server)

    # ------------------------------------------------------------------ approvals

    async def approve(self, server: str, offered: list[Offered]) -> None:
        """Pin ``offered`` (the definitions a person approved) for ``server``; effective at once."""
        pins = approved(offered)

        def change(current: dict[str, Pin] | None) -> dict[str, Pin]:
            return {**(current or {}), **pins}

        result, stamp = await anyio.to_thread.run_sync(update_pins, self.home, server, change)
        self._adopt(server, result, stamp)
        for o in offered:
            diaglog.event("tool_approved", server=server, correlation_id=None, tool=o.tool.name, hash=o.hash)

    def _adopt(self, server: str, pins: dict[str, Pin] | None, stamp: _Stamp) -> None:
        self._stamps[server] = stamp
        if self._pins.get(server, False) != pins:
            self._pins[server] = pins
            self._generation += 1
            self._on_change()

    # ------------------------------------------------------------------ the background task

    def _kick(self) -> None:
        if self._wake is not None:
            self._wake.set()

    async def run(self) -> None:
        """Write first sightings and notice other processes' approvals; runs until cancelled."""
        while True:
            self._wake = anyio.Event()
            if not self._pending:
                with anyio.move_on_after(POLL_INTERVAL):
                    await self._wake.wait()
            try:
                await self._write_pending()
                await self._look_at_files()
            except Exception:  # the book must outlive a full disk or a stray file: log it and go on
                logger.exception("pins: could not read or write %s", pins_dir(self.home))
                await anyio.sleep(POLL_INTERVAL)

    async def _write_pending(self) -> None:
        while self._pending:
            server, first = next(iter(self._pending.items()))

            def keep_existing(current: dict[str, Pin] | None, first: dict[str, Pin] = first) -> dict[str, Pin] | None:
                return first if current is None else None  # another process saw it first: its pins stand

            result, stamp = await anyio.to_thread.run_sync(update_pins, self.home, server, keep_existing)
            if self._pending.get(server) is first:
                del self._pending[server]
            self._adopt(server, result, stamp)

    async def _look_at_files(self) -> None:
        servers = list(self._pins)
        if not servers:
            return
        stamps = await anyio.to_thread.run_sync(lambda: {s: _stamp(pin_path(self.home, s)) for s in servers})
        for server, stamp in stamps.items():
            if server in self._pending or self._stamps.get(server) == stamp:
                continue
            pins = await anyio.to_thread.run_sync(read_pins, self.home, server)
            logger.info("pins of %s changed on disk; applying them", server)
            self._adopt(server, pins, stamp)


# ---------------------------------------------------------------------- without a gateway (the CLI)


def screen_offline(home: Path, server: str, tools: Iterable[types.Tool], mode: PinMode) -> Screened:
    """What a gateway would hold of ``tools`` with the pins on disk now; writes nothing (a server never seen
    counts as a first sighting in mode ``changed``: nothing held)."""
    return screen(server, [Offered.of(t) for t in tools], read_pins(home, server) if mode != "off" else None, mode)


def approve_offline(home: Path, server: str, offered: list[Offered]) -> None:
    """Pin ``offered`` in the server's file (blocking); running gateways of this home pick it up within a second."""
    pins = approved(offered)
    update_pins(home, server, lambda current: {**(current or {}), **pins})
    for o in offered:
        diaglog.event("tool_approved", server=server, correlation_id=None, tool=o.tool.name, hash=o.hash)
