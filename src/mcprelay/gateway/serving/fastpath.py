"""Plain ``tools/call`` answered beside the SDK server: on the stdio wire, and in front of ``/mcp``.

Why it exists: a tool call is the one message an agent sends over and over, and the gateway has
nothing to add to it but routing. Through the SDK's server each call is parsed into models, runs
the middleware chain and is validated and serialized again on the way out — the largest share of
the gateway's CPU per call once the transports are cheap (``bench/RESULTS.md`` has the figures).
So the stdio wire offers every incoming line to :meth:`StdioFastPath.take` first, and
:class:`HttpFastPath` looks at every POST to ``/mcp`` first; a plain call goes to the same forwarder
the SDK server's handler uses (``catalog/forward.py``), and its result is written back as JSON text.
Everything else — the handshake, listings, resources, prompts, search mode, retries of multi
round-trip requests, anything unusual — goes to the SDK server as before.

A call taken here loses nothing: its origin (:class:`_WireOrigin`) carries progress and log
messages, and — for a handshake-era client — the upstream's requests for input, sent to the client
under ids of our own (``mcprelay-ask-N``) whose answers this module picks out of the incoming
messages before the SDK server sees them. Over HTTP the response starts as plain JSON and turns
into an event stream only when something has to travel before the result. Cancellation is
``notifications/cancelled`` for a request in flight here or, over HTTP, a closed connection.

Which calls are taken: plain ones — ``params`` holding nothing but ``name``, ``arguments`` (an
object) and ``_meta`` — in aggregate mode, from a handshake-era client once the SDK server has
answered its ``initialize`` (over HTTP: on a live session), or from a 2026-era client whose
per-request envelope the SDK's own inbound ladder accepts.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from itertools import count
from typing import Any

import anyio
import mcp_types as types
from anyio.abc import TaskGroup, TaskStatus
from mcp.shared.exceptions import MCPError
from mcp.shared.inbound import (
    ERROR_CODE_HTTP_STATUS,
    InboundModernRoute,
    classify_inbound_request,
    find_duplicated_routing_header,
)
from mcp_types import CLIENT_CAPABILITIES_META_KEY, LOG_LEVEL_META_KEY, PROTOCOL_VERSION_META_KEY
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS, MODERN_PROTOCOL_VERSIONS
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mcprelay import diaglog, seam
from mcprelay.gateway.serving.server import Downstream

logger = logging.getLogger(__name__)

#: Writes one complete line (JSON text plus newline) to the client, waiting while the pipe is full.
WriteLine = Callable[[bytes], Awaitable[None]]

_TAKEN_PARAMS = frozenset({"name", "arguments", "_meta"})
_ASK_PREFIX = "mcprelay-ask-"


@dataclass(frozen=True)
class PlainCall:
    """A ``tools/call`` request with nothing a fast path would have to understand beyond routing."""

    request_id: str | int
    name: str
    arguments: dict[str, Any] | None
    progress_token: str | int | None
    meta: dict[str, Any] | None

    @property
    def stamped(self) -> bool:
        """Its ``_meta`` carries a 2026-era protocol version."""
        return self.meta is not None and PROTOCOL_VERSION_META_KEY in self.meta


def plain_tool_call(message: dict[str, Any] | None) -> PlainCall | None:
    """The call, when ``message`` is a well-formed ``tools/call`` whose params hold only ``name``,
    ``arguments`` (an object) and ``_meta``; ``None`` for anything the SDK server should see."""
    if message is None or message.get("method") != "tools/call" or message.get("jsonrpc") != "2.0":
        return None
    request_id, params = message.get("id"), message.get("params")
    if not isinstance(request_id, str | int) or isinstance(request_id, bool) or not isinstance(params, dict):
        return None
    name, arguments, meta = params.get("name"), params.get("arguments"), params.get("_meta")
    if (
        not params.keys() <= _TAKEN_PARAMS
        or not isinstance(name, str)
        or not (arguments is None or isinstance(arguments, dict))
        or not (meta is None or isinstance(meta, dict))
    ):
        return None
    token = meta.get("progressToken") if meta else None
    return PlainCall(request_id, name, arguments, token if isinstance(token, str | int) else None, meta)


def modern_version(message: dict[str, Any] | None, headers: dict[str, str] | None) -> str | None:
    """The 2026-era version a request names, when the SDK's own validation ladder accepts its envelope
    (and, over HTTP, its routing headers); ``None`` sends it to the SDK server, which explains why not."""
    if message is None:
        return None
    verdict = classify_inbound_request(message, headers=headers)
    return verdict.protocol_version if isinstance(verdict, InboundModernRoute) else None


def cancelled_request(message: dict[str, Any] | None) -> str | int | None:
    """The request id a ``notifications/cancelled`` names, else ``None``."""
    params = message.get("params") if message else None
    if message is None or message.get("method") != "notifications/cancelled" or not isinstance(params, dict):
        return None
    request_id = params.get("requestId")
    return request_id if isinstance(request_id, str | int) and not isinstance(request_id, bool) else None


class _Asks:
    """Requests sent to a client from here, waiting for the answers that arrive as ordinary messages."""

    def __init__(self) -> None:
        self._pending: dict[str, tuple[anyio.Event, list[dict[str, Any]]]] = {}
        self._ids = count(1)

    def open(self) -> tuple[str, anyio.Event, list[dict[str, Any]]]:
        request_id = f"{_ASK_PREFIX}{next(self._ids)}"
        done, box = anyio.Event(), list[dict[str, Any]]()
        self._pending[request_id] = (done, box)
        return request_id, done, box

    def close(self, request_id: str) -> None:
        self._pending.pop(request_id, None)

    def settle(self, message: dict[str, Any] | None) -> bool:
        """Hand ``message`` to its waiter when it answers one of ours; whether it did."""
        if message is None or "method" in message:
            return False
        entry = self._pending.get(message.get("id"))  # type: ignore[arg-type]
        if entry is None:
            return False
        entry[1].append(message)
        entry[0].set()
        return True

    async def ask(self, send: Callable[[dict[str, Any]], Awaitable[None]], method: str,
                  params: dict[str, Any]) -> dict[str, Any]:
        request_id, done, box = self.open()
        try:
            await send({"jsonrpc": "2.0", "id": request_id, "method": method, "params": params})
            await done.wait()
        finally:
            self.close(request_id)
        answer = box[0]
        if isinstance(answer.get("error"), dict):
            error = answer["error"]
            raise MCPError(int(error.get("code", types.INTERNAL_ERROR)), str(error.get("message", "")),
                           error.get("data"))
        result = answer.get("result")
        if not isinstance(result, dict):
            raise MCPError(types.INTERNAL_ERROR, f"the client's answer to {method} has no result object")
        return result


class _WireOrigin:
    """A call taken by a fast path, as the forwarder's :class:`~mcprelay.gateway.catalog.origin.Origin`."""

    def __init__(
        self, call: PlainCall, version: str, *, session: object, capabilities: dict[str, Any],
        log_level: str | None, send: Callable[[dict[str, Any]], Awaitable[None]], asks: _Asks,
    ) -> None:
        self._call = call
        self.version = version
        self.session = session
        self.capabilities = capabilities
        self.log_level = log_level
        self.wants_progress = call.progress_token is not None
        self.can_ask = version not in MODERN_PROTOCOL_VERSIONS
        self._send = send
        self._asks = asks

    async def progress(self, progress: float, total: float | None, message: str | None) -> None:
        params: dict[str, Any] = {"progressToken": self._call.progress_token, "progress": progress}
        if total is not None:
            params["total"] = total
        if message is not None:
            params["message"] = message
        await self._send({"jsonrpc": "2.0", "method": "notifications/progress", "params": params})

    async def log(self, params: dict[str, Any]) -> None:
        await self._send({"jsonrpc": "2.0", "method": "notifications/message", "params": params})

    async def ask(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        return await self._asks.ask(self._send, method, params)


def _envelope(call: PlainCall, version: str) -> tuple[dict[str, Any] | None, str | None]:
    """A 2026-era request's own capabilities and log level (handshake-era clients have them per session)."""
    if version not in MODERN_PROTOCOL_VERSIONS or call.meta is None:
        return None, None
    caps, level = call.meta.get(CLIENT_CAPABILITIES_META_KEY), call.meta.get(LOG_LEVEL_META_KEY)
    return (caps if isinstance(caps, dict) else {}), (level if isinstance(level, str) else None)


async def _answer(downstream: Downstream, call: PlainCall, version: str, origin: _WireOrigin) -> bytes:
    """The JSON-RPC response line (no newline) for ``call``: its result, or an error — never silence."""
    head = b'{"jsonrpc":"2.0","id":' + json.dumps(call.request_id).encode() + b',"result":'
    try:
        text = await downstream.gateway.forward.call_tool_text(
            call.name, call.arguments, origin,
            server_info=downstream.server_info() if version in MODERN_PROTOCOL_VERSIONS else None,
        )
    except MCPError as exc:  # the upstream's own protocol error, passed on as it is
        return _error_line(call.request_id, exc.error.model_dump(by_alias=True, mode="json", exclude_none=True))
    except Exception as exc:  # a bug of ours: the client still gets an answer
        logger.exception("tools/call %s taken by the fast path failed", call.name)
        return _error_line(call.request_id,
                           {"code": types.INTERNAL_ERROR, "message": f"mcprelay: {type(exc).__name__}: {exc}"})
    return head + text.encode() + b"}"


def _error_line(request_id: str | int, error: dict[str, Any]) -> bytes:
    return json.dumps({"jsonrpc": "2.0", "id": request_id, "error": error}, separators=(",", ":"),
                      ensure_ascii=False).encode()


def _loads(data: bytes) -> dict[str, Any] | None:
    try:
        message = json.loads(data)
    except ValueError:
        return None
    return message if isinstance(message, dict) else None


def _line(message: dict[str, Any]) -> bytes:
    return json.dumps(message, separators=(",", ":"), ensure_ascii=False).encode() + b"\n"


# ---------------------------------------------------------------------- stdio


class StdioFastPath:
    """Serves plain ``tools/call`` requests of one stdio client; see the module docstring."""

    def __init__(self, downstream: Downstream) -> None:
        self.downstream = downstream
        #: The handshake-era version the SDK server answered ``initialize`` with ("" for any other answer);
        #: ``None`` until then — and for good with a 2026-era client, whose requests each name their version.
        self.version: str | None = None
        self._inflight: dict[tuple[type, str | int], anyio.CancelScope] = {}
        self._asks = _Asks()
        self._tg: TaskGroup | None = None
        self._write: WriteLine | None = None
        self.answered = 0  # calls taken here, reported when the session ends

    async def run(self, write: WriteLine, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Host the calls in flight until cancelled (the pipe transport runs this beside its reader)."""
        self._write = write
        try:
            async with anyio.create_task_group() as tg:
                self._tg = tg
                task_status.started()
                await anyio.sleep_forever()
        finally:
            self._tg = None
            diaglog.event(
                "stdio_session_ended", server=None, correlation_id=None,
                protocol_version=self.version or None, tool_calls_passed_through=self.answered,
            )

    def sent(self, message: types.JSONRPCMessage) -> None:
        """Learn the negotiated version from the SDK server's answer to ``initialize``."""
        if self.version is None and isinstance(message, types.JSONRPCResponse):
            result = message.result
            version = result.get("protocolVersion") if isinstance(result, dict) else None
            if isinstance(version, str) and "serverInfo" in result:
                self.version = version if version in HANDSHAKE_PROTOCOL_VERSIONS else ""

    def take(self, line: bytes) -> bool:
        """Whether this line was served here; ``False`` hands it to the SDK server unchanged."""
        if self._tg is None:
            return False
        if _ASK_PREFIX.encode() in line and self._asks.settle(_loads(line)):
            return True
        if self.downstream.gateway.config.routing_mode != "aggregate":
            return False
        if b'"tools/call"' in line:
            return self._take_call(line)
        if b'"notifications/cancelled"' in line:
            return self._take_cancel(line)
        return False

    def _take_call(self, line: bytes) -> bool:
        message = _loads(line)
        call = plain_tool_call(message)
        if call is None:
            return False  # the SDK server answers malformed or extended requests with its own errors
        if self.version is None:  # no handshake: a 2026-era request names its version in its own _meta
            version = modern_version(message, None)
        else:
            version = self.version if not call.stamped else None
        if not version:
            return False
        key = (type(call.request_id), call.request_id)
        if key in self._inflight:
            return False
        scope = anyio.CancelScope()
        self._inflight[key] = scope
        self.answered += 1
        assert self._tg is not None
        self._tg.start_soon(self._serve, key, scope, call, version)
        return True

    def _take_cancel(self, line: bytes) -> bool:
        request_id = cancelled_request(_loads(line))
        scope = self._inflight.get((type(request_id), request_id)) if request_id is not None else None
        if scope is None:
            return False  # not ours: the SDK server's request, or already answered
        scope.cancel()
        return True

    def _origin(self, call: PlainCall, version: str, write: WriteLine) -> _WireOrigin:
        caps, level = _envelope(call, version)
        session: object = self
        if caps is None:  # handshake era: what the client declared at initialize, and its log level
            connection = self.downstream.only_connection()
            caps = connection[1].capabilities if connection is not None else {}
            if connection is not None:
                session = connection[0]
                level = self.downstream.gateway.session_log_level(session)

        async def send(message: dict[str, Any]) -> None:
            await write(_line(message))

        return _WireOrigin(call, version, session=session, capabilities=caps, log_level=level, send=send,
                           asks=self._asks)

    async def _serve(
        self, key: tuple[type, str | int], scope: anyio.CancelScope, call: PlainCall, version: str
    ) -> None:
        assert self._write is not None
        write = self._write
        try:
            with scope:
                line = await _answer(self.downstream, call, version, self._origin(call, version, write))
                await write(line + b"\n")
        except (anyio.BrokenResourceError, anyio.ClosedResourceError, BrokenPipeError, ConnectionError):
            pass  # the client is gone; the end of its stdin ends the session
        finally:
            self._inflight.pop(key, None)


# ---------------------------------------------------------------------- HTTP


class _HttpReply:
    """One POST's response: plain JSON unless something must travel before the result, then events."""

    def __init__(self, send: Send) -> None:
        self._send = send
        self._lock = anyio.Lock()
        self.streaming = False
        self.gone = False

    async def event(self, message: dict[str, Any]) -> None:
        data = json.dumps(message, separators=(",", ":"), ensure_ascii=False).encode()
        async with self._lock:
            if self.gone:
                raise anyio.ClosedResourceError
            try:
                if not self.streaming:
                    self.streaming = True
                    await self._send({"type": "http.response.start", "status": 200, "headers": [
                        (b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache"),
                    ]})
                await self._send({"type": "http.response.body", "body": b"event: message\ndata: " + data + b"\n\n",
                                  "more_body": True})
            except OSError:
                self.gone = True
                raise anyio.ClosedResourceError from None

    async def finish(self, line: bytes | None, status: int = 200) -> None:
        """The result (``None``: the call was cancelled, which gets no JSON-RPC response); ``status`` is the
        HTTP status for a plain-JSON answer (a 2026-07-28 error maps to 400 or 404, as the SDK's does)."""
        async with self._lock:
            if self.gone:
                return
            try:
                if self.streaming:
                    body = b"event: message\ndata: " + line + b"\n\n" if line is not None else b""
                    await self._send({"type": "http.response.body", "body": body})
                elif line is None:
                    await self._send({"type": "http.response.start", "status": 202, "headers": []})
                    await self._send({"type": "http.response.body", "body": b""})
                else:
                    await self._send({"type": "http.response.start", "status": status, "headers": [
                        (b"content-type", b"application/json"), (b"content-length", str(len(line)).encode()),
                    ]})
                    await self._send({"type": "http.response.body", "body": line})
            except OSError:
                pass  # the connection is gone


class HttpFastPath:
    """The same fast path in front of the SDK's streamable HTTP endpoint (``serve --listen``, ``/mcp``).

    A POST is answered here when it carries one plain ``tools/call`` on a live session of a
    handshake-era client — its ``MCP-Protocol-Version`` header names the version to shape the result
    for — or a 2026-era call the SDK's ladder accepts, and accepts what the SDK itself requires (JSON
    and event streams). A POST answering one of our requests to the client settles it. A
    ``notifications/cancelled`` for a call in flight here cancels it; so does the client closing its
    connection. Every other request reaches the SDK unchanged, its body replayed.

    Whether a session is live is the session manager's knowledge, read through :mod:`mcprelay.seam`.
    """

    def __init__(self, inner: ASGIApp, manager: Any, downstream: Downstream) -> None:
        self.inner = inner
        self.manager = manager
        self.downstream = downstream
        self.answered = 0
        self._inflight: dict[tuple[str, type, str | int], anyio.CancelScope] = {}
        self._asks = _Asks()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            await self.inner(scope, receive, send)
            return
        headers = Headers(scope=scope)
        version = headers.get("mcp-protocol-version")
        session = headers.get("mcp-session-id")
        accept = headers.get("accept", "")
        transport = None
        if version in HANDSHAKE_PROTOCOL_VERSIONS:
            transport = self._live_transport(session, scope) if session is not None else None
            eligible = transport is not None
        else:
            # 2026-era: no session; Mcp-Param-* headers and duplicated routing headers are the SDK's to judge.
            raw = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in scope["headers"]]
            eligible = (
                version in MODERN_PROTOCOL_VERSIONS
                and not any(k.lower().startswith("mcp-param-") for k, _ in raw)
                and find_duplicated_routing_header(raw) is None
            )
        if (
            not eligible
            or "application/json" not in accept
            or "text/event-stream" not in accept
            or not headers.get("content-type", "").lower().startswith("application/json")
        ):
            await self.inner(scope, receive, send)
            return
        assert version is not None
        if transport is None:
            await self._take_or_pass(scope, receive, send, version, session, headers)
            return
        with seam.holding_http_session(transport):
            await self._take_or_pass(scope, receive, send, version, session, headers)

    async def _take_or_pass(
        self, scope: Scope, receive: Receive, send: Send, version: str, session: str | None, headers: Headers
    ) -> None:
        body, complete = await _read_body(receive)
        if not complete:
            return  # the client left before sending its request
        message = _loads(body) if len(body) <= _MAX_BODY else None
        if session is not None and self._asks.settle(message):
            await _empty(send, 202)
            return
        if self.downstream.gateway.config.routing_mode == "aggregate":
            call = plain_tool_call(message)
            if call is not None:
                if version in HANDSHAKE_PROTOCOL_VERSIONS and not call.stamped and session is not None:
                    key = (session, type(call.request_id), call.request_id)
                    if key not in self._inflight:
                        await self._serve(key, call, version, session, receive, send)
                        return
                elif modern_version(message, dict(headers)) == version and not self._needs_header_check(call):
                    await self._serve(None, call, version, None, receive, send)
                    return
            cancelled = cancelled_request(message)
            target = None
            if session is not None and cancelled is not None:
                target = self._inflight.get((session, type(cancelled), cancelled))
            if target is not None:
                target.cancel()
                await _empty(send, 202)
                return
        await self.inner(scope, replay_body(body, receive), send)

    def _live_transport(self, session: str, scope: Scope) -> Any:
        """The SDK transport of a live session that the SDK would serve this request on, else ``None``."""
        if scope.get("user") is not None:
            return None
        return seam.live_http_transport(self.manager, session)

    def _needs_header_check(self, call: PlainCall) -> bool:
        """A tool with ``x-mcp-header`` parameters: the SDK's server checks its ``Mcp-Param-*`` headers."""
        routed = self.downstream.gateway.catalog().tool_map.get(call.name)
        return routed is None or routed.param_headers

    def _origin(self, call: PlainCall, version: str, session_id: str | None, reply: _HttpReply) -> _WireOrigin:
        caps, level = _envelope(call, version)
        session: object = reply
        if caps is None:
            key = self.downstream.connection_key(session_id) if session_id is not None else None
            connected = self.downstream.connections.get(key) if key is not None else None
            caps = connected.capabilities if connected is not None else {}
            if key is not None:
                session = key
                level = self.downstream.gateway.session_log_level(key)
        return _WireOrigin(call, version, session=session, capabilities=caps, log_level=level, send=reply.event,
                           asks=self._asks)

    async def _serve(
        self, key: tuple[str, type, str | int] | None, call: PlainCall, version: str, session_id: str | None,
        receive: Receive, send: Send,
    ) -> None:
        """Answer ``call``; ``key`` registers it for ``notifications/cancelled`` (sessions only: without a
        session, request ids are not unique across clients, and closing the connection is the signal)."""
        scope = anyio.CancelScope()
        if key is not None:
            self._inflight[key] = scope
        self.answered += 1
        reply = _HttpReply(send)
        line: bytes | None = None
        try:
            async with anyio.create_task_group() as tg:

                async def watch_disconnect() -> None:
                    while (await receive())["type"] != "http.disconnect":
                        pass
                    reply.gone = True
                    scope.cancel()  # the client gave up on this call: so does the upstream

                tg.start_soon(watch_disconnect)
                with scope:
                    line = await _answer(self.downstream, call, version, self._origin(call, version, session_id, reply))
                tg.cancel_scope.cancel()
        finally:
            if key is not None:
                self._inflight.pop(key, None)
        await reply.finish(line, _http_status(line, version))


def _http_status(line: bytes | None, version: str) -> int:
    """200, or for a 2026-07-28 JSON-RPC error the status the spec's table gives its code."""
    if line is None or version not in MODERN_PROTOCOL_VERSIONS or not line.startswith(b'{"jsonrpc":"2.0","id":'):
        return 200
    if b',"error":' not in line[:200]:
        return 200
    message = _loads(line)
    error = message.get("error") if message else None
    code = error.get("code") if isinstance(error, dict) else None
    return ERROR_CODE_HTTP_STATUS.get(code, 200) if isinstance(code, int) else 200


async def _empty(send: Send, status: int) -> None:
    await send({"type": "http.response.start", "status": status, "headers": []})
    await send({"type": "http.response.body", "body": b""})


#: The largest request body parsed here (the SDK's own limit for a message); larger ones go to the SDK.
_MAX_BODY = 4 * 1024 * 1024


async def _read_body(receive: Receive) -> tuple[bytes, bool]:
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return b"".join(chunks), False
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks), True


def replay_body(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that yields the already-read body once, then whatever the connection sends next."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay
