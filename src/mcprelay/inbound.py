"""What arrives from an upstream server, measured on the way in: liveness from bytes, and the size cap.

Liveness: a supervisor pings a session to notice a peer that hangs. But a ping's answer queues
behind whatever the peer is still sending — a 50 MB result takes seconds on a pipe, longer from a
slow server — and a ping that times out then would restart a perfectly busy upstream and fail every
call in flight on it. So every transport records in a :class:`Liveness` when bytes last arrived, and
a ping that times out while bytes kept coming counts as an answer.

The size cap (``max_result_bytes``): one message (a tool result) larger than the cap is not kept.
Its request gets a JSON-RPC error naming the cap and the size instead (:func:`too_large_error`),
so the call fails at once and clearly, and the gateway's memory per result stays bounded. Which
request it answered is read from the message's first bytes or its last ones (:func:`response_id`):
the Python SDK writes ``{"jsonrpc", "id", "result"}``, the TypeScript SDK ``{"result", "jsonrpc", "id"}``.

Over streamable HTTP each request's answer has a body of its own, so the body is capped
(:class:`CappedResponses`). The legacy HTTP+SSE transport carries every answer as an event on one
long-lived GET stream, so there the cap is per event (:class:`CappedSseEvents`): an event over the
cap is dropped while it streams and an error event for its request takes its place on the stream.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx2
import mcp_types as types
from mcp.shared.message import SessionMessage

#: Marks, in an error's ``data``, a JSON-RPC error the transport made up for a response it could not parse
#: or would not keep: the server sent no error at all, so it is not its error to pass on.
SYNTHESIZED_ERROR_KEY = "dev.mcprelay/synthesized"

#: How much of an oversized message is kept at each end to find its id.
EDGE_BYTES = 512

_HEAD_ID = re.compile(rb'\A\s*\{\s*(?:"jsonrpc"\s*:\s*"2\.0"\s*,\s*)?"id"\s*:\s*(-?\d{1,30}|"(?:[^"\\]|\\.){0,200}")')
_TAIL_ID = re.compile(rb'"id"\s*:\s*(-?\d{1,30}|"(?:[^"\\]|\\.){0,200}")\s*\}\s*\Z')


class Liveness:
    """When bytes last arrived from the peer (``time.monotonic()`` seconds)."""

    def __init__(self) -> None:
        self.last_bytes = time.monotonic()

    def saw_bytes(self) -> None:
        self.last_bytes = time.monotonic()

    def active_since(self, moment: float) -> bool:
        """Whether any bytes arrived after ``moment``."""
        return self.last_bytes > moment


def response_id(head: bytes, tail: bytes) -> str | int | None:
    """The id of the JSON-RPC response that starts with ``head`` and ends with ``tail``, when it shows."""
    import json

    for pattern, edge in ((_HEAD_ID, head), (_TAIL_ID, tail)):
        found = pattern.search(edge)
        if found is not None:
            try:
                value = json.loads(found.group(1))
            except ValueError:
                continue
            if isinstance(value, str | int) and not isinstance(value, bool):
                return value
    return None


def too_large_error(request_id: str | int, size: int, cap: int, *, at_least: bool = False) -> SessionMessage:
    """The error that answers ``request_id`` in place of a result of ``size`` bytes over ``cap``."""
    shown = f"more than {cap:,}" if at_least else f"{size:,}"
    message = (
        f"the server's answer is {shown} bytes, over the limit of {cap:,} bytes (max_result_bytes); "
        "it was dropped. Raise max_result_bytes in the config if results this large are expected"
    )
    data = types.ErrorData(
        code=types.INTERNAL_ERROR, message=message, data={SYNTHESIZED_ERROR_KEY: True, "size": size, "limit": cap}
    )
    return SessionMessage(types.JSONRPCError(jsonrpc="2.0", id=request_id, error=data))


class ResultTooLarge(httpx2.StreamError):
    """A response body passed ``max_result_bytes`` while it streamed (raised inside the SDK's read of it)."""

    def __init__(self, size: int, cap: int) -> None:
        super().__init__(f"the server's answer is more than {cap:,} bytes, over the limit (max_result_bytes)")
        self.size = size
        self.cap = cap


def _posted_request_id(request: httpx2.Request) -> str | int | None:
    import json

    try:
        body = request.content
    except httpx2.RequestNotRead:
        return None
    if b'"id"' not in body or b'"method"' not in body:
        return None
    try:
        message = json.loads(body)
    except ValueError:
        return None
    request_id = message.get("id") if isinstance(message, dict) else None
    return request_id if isinstance(request_id, str | int) and not isinstance(request_id, bool) else None


class _CappedStream(httpx2.AsyncByteStream):
    def __init__(self, inner: Any, cap: int | None, liveness: Liveness, on_over: Callable[[int], None]) -> None:
        self._inner = inner
        self._cap = cap
        self._liveness = liveness
        self._on_over = on_over

    async def __aiter__(self) -> AsyncIterator[bytes]:
        size = 0
        async for chunk in self._inner:
            self._liveness.saw_bytes()
            size += len(chunk)
            if self._cap is not None and size > self._cap:
                self._on_over(size)
                raise ResultTooLarge(size, self._cap)
            yield chunk

    async def aclose(self) -> None:
        await self._inner.aclose()


class QuietOversized(logging.Filter):
    """Drops the SDK's traceback for a body cut at the cap: mcprelay answers that request with a clear error."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        while exc is not None:
            if isinstance(exc, ResultTooLarge):
                return False
            exc = exc.__cause__ or exc.__context__
        return True


logging.getLogger("mcp.client.streamable_http").addFilter(QuietOversized())


#: How an SSE stream may end an event: a blank line, in any of the three line endings SSE allows.
_SSE_BOUNDARY = re.compile(rb"\r\n\r\n|\n\n|\r\r")


def _event_data_edges(head: bytes, tail: bytes) -> tuple[bytes, bytes]:
    """The first and last bytes of an event's ``data`` (what :func:`response_id` reads)."""
    start = head.find(b"data:")
    data_head = head[start + 5:].lstrip(b" ") if start >= 0 else b""
    return data_head, tail.rstrip(b"\r\n")


def oversized_event(request_id: str | int, size: int, cap: int) -> bytes:
    """The SSE event that answers ``request_id`` in place of an event of ``size`` bytes over ``cap``."""
    message = too_large_error(request_id, size, cap, at_least=True).message
    return b"event: message\ndata: " + message.model_dump_json(by_alias=True, exclude_none=True).encode() + b"\n\n"


class _CappedSseStream(httpx2.AsyncByteStream):
    """Passes an SSE stream on event by event; an event over ``cap`` becomes :func:`oversized_event`.

    Each event is held until its blank line (so it never passes half-way before its size is known) and at
    most ``cap`` bytes of it: past that only its first and last :data:`EDGE_BYTES` are kept, to find the
    request it answers. One whose id shows in neither end cannot be answered in its place; the stream
    then ends with :class:`ResultTooLarge`, so the session fails its calls at once rather than leaving
    one to wait for its timeout.
    """

    def __init__(self, inner: Any, cap: int, liveness: Liveness) -> None:
        self._inner = inner
        self._cap = cap
        self._liveness = liveness

    def _in_place_of(self, head: bytes, tail: bytes, size: int) -> bytes:
        """The error event for an event over the cap that began with ``head`` and ended with ``tail``."""
        request_id = response_id(*_event_data_edges(head, tail))
        if request_id is None:
            raise ResultTooLarge(size, self._cap)
        return oversized_event(request_id, size, self._cap)

    async def __aiter__(self) -> AsyncIterator[bytes]:
        pending = bytearray()  # the start of the stream not passed on yet: whole events and one within the cap
        scanned = 0  # how much of ``pending`` is known to hold no boundary
        dropping = False  # the event being received went over the cap: only its edges are kept
        head, tail, size = b"", b"", 0
        async for chunk in self._inner:
            self._liveness.saw_bytes()
            if dropping:
                carry = tail[-3:]  # a boundary may be split between two reads
                found = _SSE_BOUNDARY.search(carry + chunk)
                if found is None:
                    size += len(chunk)
                    tail = (tail + chunk)[-EDGE_BYTES:]
                    continue
                used = found.end() - len(carry)
                size += used
                yield self._in_place_of(head, (tail + chunk[:max(0, found.start() - len(carry))])[-EDGE_BYTES:], size)
                dropping, chunk = False, chunk[used:]
            pending += chunk
            while (found := _SSE_BOUNDARY.search(pending, max(0, scanned - 3))) is not None:
                end = found.end()
                if end > self._cap:  # a whole event over the cap came in one read
                    event = self._in_place_of(bytes(pending[:EDGE_BYTES]),
                                              bytes(pending[max(0, found.start() - EDGE_BYTES):found.start()]), end)
                else:
                    event = bytes(pending[:end])
                del pending[:end]
                scanned = 0
                yield event
            scanned = len(pending)
            if scanned > self._cap:
                dropping, size = True, scanned
                head, tail = bytes(pending[:EDGE_BYTES]), bytes(pending[-EDGE_BYTES:])
                pending.clear()
                scanned = 0
        if pending:
            yield bytes(pending)

    async def aclose(self) -> None:
        await self._inner.aclose()


class CappedSseEvents(httpx2.AsyncBaseTransport):
    """An ``httpx`` transport for the legacy SSE transport: liveness on every chunk, a cap on every event.

    The GET event stream is read through :class:`_CappedSseStream`; the POSTs (answered ``202 Accepted``,
    their results arrive on the stream) only mark liveness.
    """

    def __init__(self, inner: httpx2.AsyncBaseTransport, cap: int, liveness: Liveness) -> None:
        self._inner = inner
        self.cap = cap
        self.liveness = liveness

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        response = await self._inner.handle_async_request(request)
        self.liveness.saw_bytes()
        if request.method != "GET" or "text/event-stream" not in response.headers.get("content-type", ""):
            return response
        return httpx2.Response(
            response.status_code, headers=response.headers,
            stream=_CappedSseStream(response.stream, self.cap, self.liveness),
            extensions=response.extensions, request=request,
        )

    async def aclose(self) -> None:
        await self._inner.aclose()


class CappedResponses(httpx2.AsyncBaseTransport):
    """An ``httpx`` transport that marks :class:`Liveness` on every chunk and caps the answers to requests.

    The body of a POST's response (JSON or the event stream of one request) and of a GET that resumes
    one (``Last-Event-ID``) may hold at most ``cap`` bytes; past that the read fails with
    :class:`ResultTooLarge` and the request's id is recorded in ``oversized``, where the session's read
    stream (``mcprelay.transport``) turns the SDK's resulting error into :func:`too_large_error`. The
    standalone GET stream of server notifications is long-lived and is left to the SDK's per-event cap.
    """

    def __init__(self, inner: httpx2.AsyncBaseTransport, cap: int, liveness: Liveness) -> None:
        self._inner = inner
        self.cap = cap
        self.liveness = liveness
        self.oversized: dict[str | int, int] = {}

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        response = await self._inner.handle_async_request(request)
        self.liveness.saw_bytes()
        capped = request.method == "POST" or "last-event-id" in request.headers
        request_id = _posted_request_id(request) if request.method == "POST" else None

        def over(size: int) -> None:
            if request_id is not None:
                self.oversized[request_id] = size

        return httpx2.Response(
            response.status_code,
            headers=response.headers,
            stream=_CappedStream(response.stream, self.cap if capped else None, self.liveness, over),
            extensions=response.extensions,
            request=request,
        )

    async def aclose(self) -> None:
        await self._inner.aclose()
