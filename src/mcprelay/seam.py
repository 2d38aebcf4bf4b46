"""The one place mcprelay touches other libraries' private internals, and the versions it was written for.

Why a seam at all: a few things mcprelay needs have no public API — sending a tool call on the SDK
session's dispatcher as JSON (no models built twice), knowing whether an HTTP session of the SDK's
session manager is alive, keeping that session from idling out while mcprelay serves one of its
requests, hearing when a downstream connection closes, lifting the legacy SSE client's fixed 1 MiB
event limit (mcprelay caps events itself), and two start-up shortcuts in keyring and typer.
Everything of that kind is here, behind functions with plain signatures, so the rest of the code
never names a private attribute.

Why it fails loudly: :func:`check` verifies every internal used here against the installed
libraries, and ``tests/unit/test_seam.py`` runs it. When a library release moves one of them, that
test names the library, its version and the attribute — a fast path is never turned off silently.
At run time an accessor whose internal is missing raises :class:`SeamBroken` with the same words.

Written for (and tested with): ``mcp`` 2.3.x, ``keyring`` 25.x, ``typer`` 0.29.x.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from importlib import metadata
from typing import Any

#: Library → the release series the internals below were read from.
WRITTEN_FOR: dict[str, str] = {"mcp": "2.3", "keyring": "25", "typer": "0.29"}


class SeamBroken(RuntimeError):
    """A private internal mcprelay relies on is not where this module expects it."""

    def __init__(self, library: str, what: str) -> None:
        try:
            installed = metadata.version(library)
        except metadata.PackageNotFoundError:
            installed = "not installed"
        super().__init__(
            f"{library} {installed} lacks {what}, which mcprelay (written for {library} "
            f"{WRITTEN_FOR.get(library, '?')}.x) relies on; see mcprelay/seam.py"
        )
        self.library = library
        self.what = what


def _attr(obj: Any, name: str, library: str, owner: str) -> Any:
    try:
        return getattr(obj, name)
    except AttributeError:
        raise SeamBroken(library, f"{owner}.{name}") from None


# ---------------------------------------------------------------- mcp: the client session's wire


@dataclass(frozen=True)
class SessionWire:
    """What a request needs to go out as JSON on an SDK ``ClientSession``.

    ``stamp(data, opts)`` adds what the session adds to every request it sends (protocol version
    header, and at 2026-07-28 the per-request ``_meta`` envelope); ``send_raw_request`` is the
    dispatcher's, which numbers the request, routes its progress and cancels it when abandoned.
    """

    stamp: Callable[[dict[str, Any], Any], None]
    send_raw_request: Callable[..., Any]


def session_wire(session: Any) -> SessionWire:
    """The stamping function and the dispatcher of an SDK ``ClientSession``."""
    stamp = _attr(session, "_stamp", "mcp", "ClientSession")
    dispatcher = _attr(session, "_dispatcher", "mcp", "ClientSession")
    return SessionWire(stamp, _attr(dispatcher, "send_raw_request", "mcp", "ClientSession._dispatcher"))


# ---------------------------------------------------------------- mcp: the HTTP session manager


def live_http_transport(manager: Any, session_id: str) -> Any | None:
    """The SDK transport of a live, unowned streamable HTTP session, or ``None``.

    Unowned: a session bound to an authenticated principal is the SDK's to serve (it checks the
    owner); mcprelay's own listener never binds one, so this only ever declines foreign setups.
    """
    instances = _attr(manager, "_server_instances", "mcp", "StreamableHTTPSessionManager")
    owners = _attr(manager, "_session_owners", "mcp", "StreamableHTTPSessionManager")
    transport = instances.get(session_id)
    if transport is None or owners.get(session_id) is not None:
        return None
    if _attr(transport, "is_terminated", "mcp", "StreamableHTTPServerTransport"):
        return None
    idle = _attr(transport, "idle_scope", "mcp", "StreamableHTTPServerTransport")
    return None if idle is not None and idle.cancel_called else transport


@contextlib.contextmanager
def holding_http_session(transport: Any) -> Iterator[None]:
    """Keep an SDK HTTP session from idling out while a request of its is served beside the SDK.

    The SDK reaps a stateful session after ``session_idle_timeout`` without a request in flight,
    counting only the requests it serves itself. This does its accounting for ours: the request
    counter goes up, the idle deadline goes away, and both come back as the SDK would restore them.
    """
    idle = _attr(transport, "idle_scope", "mcp", "StreamableHTTPServerTransport")
    timeout = _attr(transport, "_idle_timeout", "mcp", "StreamableHTTPServerTransport")
    if not isinstance(_attr(transport, "_requests_in_flight", "mcp", "StreamableHTTPServerTransport"), int):
        raise SeamBroken("mcp", "StreamableHTTPServerTransport._requests_in_flight as an int")
    if idle is None or timeout is None:  # sessions that never expire: nothing to hold
        yield
        return
    transport._requests_in_flight += 1
    idle.deadline = math.inf
    try:
        yield
    finally:
        transport._requests_in_flight -= 1
        if not transport._requests_in_flight:
            import anyio

            idle.deadline = anyio.current_time() + timeout


# ---------------------------------------------------------------- mcp: the server session's connection


def connection_of(session: Any) -> Any:
    """The SDK ``Connection`` behind a ``ServerSession``: one per downstream connection, where the session
    object is one per request (so it cannot key what the gateway keeps per connection)."""
    return _attr(session, "_connection", "mcp", "ServerSession")


def on_connection_closed(session: Any, callback: Callable[[], Any]) -> None:
    """Run ``callback`` when the downstream connection behind an SDK ``ServerSession`` closes."""
    exit_stack = _attr(connection_of(session), "exit_stack", "mcp", "Connection")
    exit_stack.callback(callback)


# ---------------------------------------------------------------- mcp: the legacy SSE client's event limit


def sse_events_unbounded() -> None:
    """Let the SDK's legacy SSE client read events of any size; idempotent.

    ``mcp.client.sse.sse_client`` opens its event stream with a fixed 1 MiB limit per event, and an
    event over it ends the whole session ("Connection closed") — every call in flight fails, not just
    the one with the big result. mcprelay reads that stream through its own per-event cap at the
    server's ``max_result_bytes`` (``inbound.CappedSseEvents``), which answers only the oversized call
    with an error, so the SDK's limit is lifted here.
    """
    import mcp.client.sse as sse

    original = _attr(sse, "sse_within_origin", "mcp", "mcp.client.sse")
    if getattr(original, "mcprelay_unbounded", False):
        return

    def unbounded(client: Any, url: Any, *, headers: Any = None, max_event_size: int | None = None) -> Any:
        return original(client, url, headers=headers, max_event_size=None)

    unbounded.mcprelay_unbounded = True  # type: ignore[attr-defined]
    setattr(sse, "sse_within_origin", unbounded)  # noqa: B010 (not an exported name of the module)


# ---------------------------------------------------------------- keyring


def keyring_backend_chosen() -> bool:
    """Whether keyring has already settled on a backend (set by the program, a test, or its discovery)."""
    import keyring.core

    return _attr(keyring.core, "_keyring_backend", "keyring", "keyring.core") is not None


def keyring_backend_classes() -> list[Any]:
    """Every concrete keyring backend class defined so far (what keyring's own discovery ranks)."""
    from keyring import backend

    return list(_attr(backend.KeyringBackend, "_classes", "keyring", "KeyringBackend"))


# ---------------------------------------------------------------- typer


def typer_usage_errors() -> tuple[type[BaseException], ...]:
    """The usage-error classes typer raises: click's, and typer ≥ 0.29's bundled copy of them."""
    import click

    classes: tuple[type[BaseException], ...] = (click.ClickException,)
    with contextlib.suppress(ImportError):
        from typer._click.exceptions import ClickException as BundledClickException

        classes = (*classes, BundledClickException)
    return classes


# ---------------------------------------------------------------- the loud check


def check() -> list[str]:
    """Every internal this module reads, looked up on real instances of the installed libraries.

    Returns the problems found (empty when the seam holds); ``tests/unit/test_seam.py`` asserts it
    is empty, so a library release that moves one of them fails that test by name.
    """
    problems: list[str] = []
    for library, series in WRITTEN_FOR.items():
        try:
            installed = metadata.version(library)
        except metadata.PackageNotFoundError:
            continue
        if installed != series and not installed.startswith(series + "."):
            problems.append(
                f"mcprelay/seam.py was written for {library} {series}.x and {library} {installed} is installed: "
                "re-read the internals it uses, then update WRITTEN_FOR"
            )

    def probe(action: Callable[[], Any]) -> None:
        try:
            action()
        except SeamBroken as exc:
            problems.append(str(exc))

    import anyio
    from mcp.client.session import ClientSession
    from mcp.server.connection import Connection
    from mcp.server.lowlevel.server import Server
    from mcp.server.session import ServerSession
    from mcp.server.streamable_http import StreamableHTTPServerTransport
    from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
    from mcp.shared.message import SessionMessage

    send, receive = anyio.create_memory_object_stream[SessionMessage | Exception](1)
    out_send, out_receive = anyio.create_memory_object_stream[SessionMessage](1)
    try:
        session = ClientSession(receive, out_send)
        probe(lambda: session_wire(session))
    finally:
        for stream in (send, receive, out_send, out_receive):
            stream.close()
    manager = StreamableHTTPSessionManager(app=Server("seam-check"))
    probe(lambda: live_http_transport(manager, "absent"))
    transport = StreamableHTTPServerTransport(mcp_session_id="seam-check", idle_timeout=1.0)
    for name in ("is_terminated", "idle_scope", "_idle_timeout", "_requests_in_flight"):
        if not hasattr(transport, name):
            problems.append(str(SeamBroken("mcp", f"StreamableHTTPServerTransport.{name}")))
    connection = Connection(None, protocol_version="2025-11-25")  # type: ignore[arg-type]
    server_session = ServerSession(None, connection)  # type: ignore[arg-type]
    probe(lambda: on_connection_closed(server_session, lambda: None))

    import inspect

    import mcp.client.sse

    within = getattr(mcp.client.sse, "sse_within_origin", None)
    if within is None:
        problems.append(str(SeamBroken("mcp", "mcp.client.sse.sse_within_origin")))
    elif not getattr(within, "mcprelay_unbounded", False) and (
            "max_event_size" not in inspect.signature(within).parameters):
        problems.append(str(SeamBroken("mcp", "the max_event_size parameter of mcp.client.sse.sse_within_origin")))

    import keyring.core
    from keyring import backend

    if not hasattr(keyring.core, "_keyring_backend"):
        problems.append(str(SeamBroken("keyring", "keyring.core._keyring_backend")))
    if not isinstance(getattr(backend.KeyringBackend, "_classes", None), set | list | tuple):
        problems.append(str(SeamBroken("keyring", "KeyringBackend._classes")))
    try:
        from typer._click.exceptions import ClickException  # noqa: F401
    except ImportError:
        if metadata.version("typer").startswith(WRITTEN_FOR["typer"]):
            problems.append(str(SeamBroken("typer", "typer._click.exceptions.ClickException")))
    return problems
