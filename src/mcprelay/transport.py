"""Open an MCP client session to a remote server over the SDK's transports, with our auth plugged in.

This is the far end of the data flow: it takes an ``httpx2.Auth`` and knows nothing of how the
token behind it is obtained.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Literal, TextIO

import anyio
import httpx2
import mcp_types as types
from mcp.client import Transport
from mcp.client.client import Client
from mcp.client.session import ElicitationFnT, ListRootsFnT, LoggingFnT, MessageHandlerFnT, SamplingFnT
from mcp.client.sse import sse_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.message import SessionMessage
from pydantic import ValidationError

from mcprelay import seam
from mcprelay.config import DEFAULT_MAX_RESULT_BYTES
from mcprelay.httpclient import USER_AGENT
from mcprelay.inbound import SYNTHESIZED_ERROR_KEY as SYNTHESIZED_ERROR_KEY
from mcprelay.inbound import CappedResponses, CappedSseEvents, Liveness, too_large_error
from mcprelay.related import RelatedRequestTagging
from mcprelay.stdio_transport import stdio_transport

#: The cap on one message from an upstream when the caller names none (the config's default).
DEFAULT_MAX_MESSAGE_BYTES = DEFAULT_MAX_RESULT_BYTES


#: Called (synchronously, from the session's reader) once the server's side of the connection has ended.
OnClosed = Callable[[], None]


class LogOrder:
    """Log messages an upstream sent before a response are relayed before that response.

    The SDK's client hands notifications to their callbacks from queues on tasks of their own, apart
    from the responses, so a tool's last log messages could reach the agent after its result — or not
    at all, once the result has closed the request's stream. The read stream counts each
    ``notifications/message`` as it arrives, in wire order (:meth:`saw`); the logging callback counts
    each one it has relayed (:meth:`done`); a request whose response came waits, briefly, until every
    log message received before it is relayed (:meth:`caught_up`). A message the SDK never delivers
    (malformed, or its queue full) costs that one wait, and is then written off.
    """

    def __init__(self, wait: float = 1.0) -> None:
        self.received = 0
        self.delivered = 0
        self._wait = wait
        self._changed = anyio.Event()

    def saw(self) -> None:
        self.received += 1

    def done(self) -> None:
        self.delivered += 1
        self._changed.set()
        self._changed = anyio.Event()

    async def caught_up(self) -> None:
        target = self.received
        if self.delivered >= target:
            return
        with anyio.move_on_after(self._wait):
            while self.delivered < target:
                await self._changed.wait()
        self.delivered = max(self.delivered, target)


@dataclass(frozen=True)
class ClientHandlers:
    """What a session does with what the server sends on its own: notifications and server requests.

    ``message`` gets the server's notifications (and transport errors) from before the handshake on.
    ``sampling``, ``elicitation`` and ``list_roots`` answer the server's requests; each one given is
    also declared as a client capability. ``logging`` gets ``notifications/message``. ``tag_related``
    (streamable HTTP) marks each server request and log message with the request whose response
    stream carried it (see :mod:`mcprelay.related`).
    """

    message: MessageHandlerFnT | None = None
    sampling: SamplingFnT | None = None
    elicitation: ElicitationFnT | None = None
    list_roots: ListRootsFnT | None = None
    logging: LoggingFnT | None = None
    tag_related: bool = False
    #: Counts the log messages as they arrive, for ``logging`` to keep them ahead of later responses.
    log_order: LogOrder | None = None


def _client(transport: Transport, handlers: ClientHandlers) -> Client:
    return Client(
        transport,
        mode="auto",
        message_handler=handlers.message,
        sampling_callback=handlers.sampling,
        elicitation_callback=handlers.elicitation,
        list_roots_callback=handlers.list_roots,
        logging_callback=handlers.logging,
    )


class _ReportingReadStream:
    """A transport's read stream that reports its end and answers for responses the SDK cannot parse.

    The end: the SDK's session notices that the server went away (a stdio process died, an SSE
    stream dropped) only when the next request fails, and a supervisor that sends no requests would
    keep a dead session for a whole ping interval. The end of the read stream is the earliest sign.

    Log messages: each is counted here, in wire order, for :class:`LogOrder`.

    Unparseable responses: the SDK's stdio and SSE transports pass a line they cannot parse on as
    the validation error, which no request is waiting for — the request it answered would wait for
    its whole timeout. When the error shows the response's id, it becomes a JSON-RPC error for that
    request here, naming what was wrong, so the call fails at once.

    Oversized answers (streamable HTTP): when :class:`~mcprelay.inbound.CappedResponses` cut a
    response at ``max_result_bytes``, the SDK answers that request with an error of its own ("failed
    to parse", "stream ended"); it is replaced here by the one that names the cap and the size.
    """

    def __init__(
        self, inner: Any, on_closed: OnClosed | None, capped: CappedResponses | None = None,
        log_order: LogOrder | None = None,
    ) -> None:
        """``inner`` is the SDK's read stream (typed ``Any``: the SDK exports no public name for its type)."""
        self._inner = inner
        self._on_closed = on_closed
        self._reported = False
        self._capped = capped
        self._log_order = log_order

    @property
    def last_context(self) -> Any:
        """The SDK reads the sender's context from the stream it was given, so pass the inner one's on."""
        return getattr(self._inner, "last_context", None)

    def _report(self) -> None:
        if not self._reported:
            self._reported = True
            if self._on_closed is not None:
                self._on_closed()

    async def receive(self) -> SessionMessage | Exception:
        try:
            item: SessionMessage | Exception = await self._inner.receive()
        except (anyio.EndOfStream, anyio.ClosedResourceError, anyio.BrokenResourceError):
            self._report()
            raise
        if isinstance(item, ValidationError):
            return _as_error_response(item) or item
        if self._log_order is not None and isinstance(item, SessionMessage):
            message = item.message
            if isinstance(message, types.JSONRPCNotification) and message.method == "notifications/message":
                self._log_order.saw()
        if self._capped is not None and self._capped.oversized and isinstance(item, SessionMessage):
            message = item.message
            if isinstance(message, types.JSONRPCError) and message.id in self._capped.oversized:
                size = self._capped.oversized.pop(message.id)
                return too_large_error(message.id, size, self._capped.cap, at_least=True)
        return item

    async def aclose(self) -> None:
        await self._inner.aclose()

    def __aiter__(self) -> _ReportingReadStream:
        return self

    async def __anext__(self) -> SessionMessage | Exception:
        try:
            return await self.receive()
        except anyio.EndOfStream:
            raise StopAsyncIteration from None

    async def __aenter__(self) -> _ReportingReadStream:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc_val: BaseException | None, exc_tb: TracebackType | None
    ) -> bool | None:
        await self.aclose()
        return None


def _as_error_response(error: ValidationError) -> SessionMessage | None:
    """The JSON-RPC error answering the request whose response failed validation, when its id shows."""
    for detail in error.errors():
        message = detail.get("input")
        if isinstance(message, dict) and "method" not in message:
            request_id = message.get("id")
            if isinstance(request_id, str | int) and not isinstance(request_id, bool):
                # The parse tried every message kind; what matters is why it is not the kind it claims to be.
                kind = "JSONRPCError" if "error" in message else "JSONRPCResponse"
                details = [d for d in error.errors() if d["loc"][:1] == (kind,)] or error.errors()
                what = "; ".join(
                    f"{'.'.join(map(str, d['loc'][1:] if d['loc'][:1] == (kind,) else d['loc'])) or 'message'}: "
                    f"{d['msg']}"
                    for d in details[:3]
                )
                data = types.ErrorData(
                    code=types.INTERNAL_ERROR,
                    message=f"the server's response is not a valid JSON-RPC response ({what})",
                    data={SYNTHESIZED_ERROR_KEY: True},
                )
                return SessionMessage(types.JSONRPCError(jsonrpc="2.0", id=request_id, error=data))
    return None


def _reporting(
    transport: Transport, on_closed: OnClosed | None, capped: CappedResponses | None = None,
    log_order: LogOrder | None = None,
) -> Transport:
    """``transport`` with its read stream wrapped (see :class:`_ReportingReadStream`)."""
    report = on_closed

    @asynccontextmanager
    async def wrapped() -> AsyncIterator[Any]:
        async with transport as (read, write):
            yield _ReportingReadStream(read, report, capped, log_order), write

    return wrapped()


@asynccontextmanager
async def open_session(
    url: str,
    *,
    transport: Literal["http", "sse"] = "http",
    auth: httpx2.Auth | None = None,
    headers: dict[str, str] | None = None,
    request_timeout: float = 60.0,
    handlers: ClientHandlers | None = None,
    on_closed: OnClosed | None = None,
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
    liveness: Liveness | None = None,
) -> AsyncIterator[Client]:
    """An initialized SDK ``Client``. ``auto`` asks ``server/discover`` first (servers of the 2026 spec
    refuse a bare ``initialize``) and falls back to the ``initialize`` handshake for older ones.

    ``handlers`` are given to the ``Client`` at construction so that they are in place before the
    handshake: a notification sent right after ``initialize`` is not lost, and the SDK's own
    response-cache eviction still runs in front of them. ``on_closed`` is told when the server's side
    of the connection ends (see :class:`_ReportingReadStream`). Over streamable HTTP the answer to
    each request is capped at ``max_message_bytes`` and every byte received marks ``liveness``
    (:class:`~mcprelay.inbound.CappedResponses`); over the legacy SSE transport each event is capped
    instead, its request answered by an error event in its place (:class:`~mcprelay.inbound.CappedSseEvents`).
    """
    handlers = handlers or ClientHandlers()
    all_headers = {"User-Agent": USER_AGENT, **(headers or {})}
    if transport == "sse":
        seam.sse_events_unbounded()  # the cap per event is CappedSseEvents', at max_message_bytes
        sse_liveness = liveness or Liveness()

        def factory(headers: Any = None, timeout: Any = None, auth: Any = None) -> httpx2.AsyncClient:
            events = CappedSseEvents(httpx2.AsyncHTTPTransport(), max_message_bytes, sse_liveness)
            return httpx2.AsyncClient(headers=headers, timeout=timeout, auth=auth, transport=events)

        async with _client(
            _reporting(sse_client(url, headers=all_headers, auth=auth, httpx_client_factory=factory), on_closed,
                       log_order=handlers.log_order),
            handlers,
        ) as client:
            yield client
        return
    capped = CappedResponses(httpx2.AsyncHTTPTransport(), max_message_bytes, liveness or Liveness())
    http = httpx2.AsyncClient(
        headers=all_headers, auth=auth, timeout=httpx2.Timeout(request_timeout, read=max(request_timeout, 300.0)),
        transport=RelatedRequestTagging(capped) if handlers.tag_related else capped,
    )
    # The SDK's own per-event cap (1 MiB by default) must not cut results the configured cap allows.
    streams = streamable_http_client(url, http_client=http, max_sse_event_size=max_message_bytes + 65536)
    async with http, _client(_reporting(streams, on_closed, capped, handlers.log_order), handlers) as client:
        yield client


@asynccontextmanager
async def open_stdio_session(
    command: str,
    args: list[str],
    env: dict[str, str] | None = None,
    *,
    errlog: TextIO | None = None,
    handlers: ClientHandlers | None = None,
    on_closed: OnClosed | None = None,
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
    liveness: Liveness | None = None,
) -> AsyncIterator[Client]:
    """An initialized SDK ``Client`` on a local server subprocess (stdin/stdout); see :func:`open_session`.

    ``on_closed`` fires when the process closes its stdout, which is how its death shows. The pipe is
    read by :mod:`mcprelay.stdio_transport` (linear framing, ``max_message_bytes`` per message,
    ``liveness`` marked on every chunk), not by the SDK's ``stdio_client``.
    """
    transport = stdio_transport(
        command, list(args), env, errlog=errlog, max_message_bytes=max_message_bytes, liveness=liveness
    )
    handlers = handlers or ClientHandlers()
    async with _client(_reporting(transport, on_closed, log_order=handlers.log_order), handlers) as client:
        yield client
