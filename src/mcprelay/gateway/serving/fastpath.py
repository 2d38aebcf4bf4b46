"""``tools/call`` answered without the SDK server's models: on the stdio wire, and in front of ``/mcp``.

Why it exists: a tool call is the one message an agent sends over and over, and the gateway has
nothing to add to it but routing. Through the SDK's server each call is parsed into models, runs
the middleware chain and is validated and serialized again on the way out — the largest share of
the gateway's CPU per call once the transports are cheap. So the stdio pipe transport offers every
incoming line to :meth:`ToolCallPassthrough.take` first, and :class:`HttpToolCallPassthrough` looks at
every POST to ``/mcp`` first; a plain ``tools/call`` is routed to the upstream and its result written
back as JSON text, and everything else — the handshake, listings, resources, prompts, search mode,
anything unusual — goes to the SDK server as before.

What a call taken here still gets: the upstream error handling and activity record of
:meth:`Gateway.forward_tool_call`, progress (stdio, when the client sent a ``progressToken``),
cancellation (``notifications/cancelled`` for a request in flight here, or over HTTP a closed
connection; the SDK client then tells the upstream), and a result shaped for the client's protocol
version, with the ``resultType`` and ``serverInfo`` stamp a 2026-era client expects.

Which calls are taken: plain ones — ``params`` holding nothing but ``name``, ``arguments`` (an
object) and ``_meta`` — in aggregate mode, from a handshake-era client once the SDK server has
answered its ``initialize`` (over HTTP: on a live session), or from a 2026-era client whose
per-request envelope the SDK's own inbound ladder accepts. Over HTTP, a call with a progress token
stays with the SDK, whose event stream can carry the progress.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import anyio
import mcp_types as types
from anyio.abc import TaskGroup, TaskStatus
from mcp.shared.dispatcher import ProgressFnT
from mcp.shared.inbound import InboundModernRoute, classify_inbound_request, find_duplicated_routing_header
from mcp_types import PROTOCOL_VERSION_META_KEY
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS, MODERN_PROTOCOL_VERSIONS
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mcprelay import diaglog, seam
from mcprelay.gateway.catalog.router import Gateway

logger = logging.getLogger(__name__)

#: The downstream server's identity stamp for 2026-era results (``Server.server_info_stamp``).
ServerInfo = Callable[[], dict[str, Any]]
#: Writes one complete line (JSON text plus newline) to the client, waiting while the pipe is full.
WriteLine = Callable[[bytes], Awaitable[None]]

_TAKEN_PARAMS = frozenset({"name", "arguments", "_meta"})


class ToolCallPassthrough:
    """Serves plain ``tools/call`` requests of one stdio client; see the module docstring."""

    def __init__(self, gateway: Gateway, server_info: ServerInfo) -> None:
        self.gateway = gateway
        self.server_info = server_info
        #: The handshake-era version the SDK server answered ``initialize`` with ("" for any other answer);
        #: ``None`` until then — and for good with a 2026-era client, whose requests each name their version.
        self.version: str | None = None
        self._inflight: dict[tuple[type, str | int], anyio.CancelScope] = {}
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
        if self._tg is None or self.gateway.config.routing_mode != "aggregate":
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

    async def _serve(
        self, key: tuple[type, str | int], scope: anyio.CancelScope, call: PlainCall, version: str
    ) -> None:
        assert self._write is not None
        write = self._write
        token = call.progress_token
        progress = _progress_sender(write, token) if token is not None else None
        try:
            with scope:
                line = await _answer(self.gateway, call, version, self.server_info, progress)
                await write(line + b"\n")
        except (anyio.BrokenResourceError, anyio.ClosedResourceError, BrokenPipeError, ConnectionError):
            pass  # the client is gone; the end of its stdin ends the session
        finally:
            self._inflight.pop(key, None)


@dataclass(frozen=True)
class PlainCall:
    """A ``tools/call`` request with nothing a passthrough would have to understand beyond routing."""

    request_id: str | int
    name: str
    arguments: dict[str, Any] | None
    progress_token: str | int | None
    stamped: bool  # its _meta carries a 2026-era protocol version


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
    stamped = meta is not None and PROTOCOL_VERSION_META_KEY in meta
    return PlainCall(request_id, name, arguments, token if isinstance(token, str | int) else None, stamped)


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


async def _answer(
    gateway: Gateway, call: PlainCall, version: str, server_info: ServerInfo, progress: ProgressFnT | None
) -> bytes:
    """The JSON-RPC response line (no newline) for ``call``: its result, or an error — never silence."""
    head = b'{"jsonrpc":"2.0","id":' + json.dumps(call.request_id).encode() + b',"result":'
    try:
        text = await gateway.forward_tool_call(
            call.name, call.arguments, version=version, progress=progress,
            server_info=server_info() if version in MODERN_PROTOCOL_VERSIONS else None,
        )
    except Exception as exc:  # a bug of ours: the client still gets an answer
        logger.exception("passthrough of tools/call %s failed", call.name)
        error = {"code": types.INTERNAL_ERROR, "message": f"mcprelay: {type(exc).__name__}: {exc}"}
        return json.dumps({"jsonrpc": "2.0", "id": call.request_id, "error": error}).encode()
    return head + text.encode() + b"}"


def _progress_sender(write: WriteLine, token: str | int) -> ProgressFnT:
    async def send(progress: float, total: float | None, message: str | None) -> None:
        params: dict[str, Any] = {"progressToken": token, "progress": progress}
        if total is not None:
            params["total"] = total
        if message is not None:
            params["message"] = message
        line = {"jsonrpc": "2.0", "method": "notifications/progress", "params": params}
        await write(json.dumps(line, separators=(",", ":")).encode() + b"\n")

    return send


def _loads(line: bytes) -> dict[str, Any] | None:
    try:
        message = json.loads(line)
    except ValueError:
        return None
    return message if isinstance(message, dict) else None


class HttpToolCallPassthrough:
    """The same passthrough in front of the SDK's streamable HTTP endpoint (``serve --listen``, ``/mcp``).

    A POST is answered here, with ``application/json``, when it carries one plain ``tools/call``
    without a progress token (progress needs the SDK's event stream) on a live session of a
    handshake-era client — its ``MCP-Protocol-Version`` header names the version to shape the result
    for — and accepts what the SDK itself requires (JSON and event streams). A
    ``notifications/cancelled`` for a call in flight here cancels it; so does the client closing its
    connection. Every other request reaches the SDK unchanged, its body replayed.

    Whether a session is live is the session manager's knowledge, read through :mod:`mcprelay.seam`.
    """

    def __init__(self, inner: ASGIApp, manager: Any, gateway: Gateway, server_info: ServerInfo) -> None:
        self.inner = inner
        self.manager = manager
        self.gateway = gateway
        self.server_info = server_info
        self.answered = 0
        self._inflight: dict[tuple[str, type, str | int], anyio.CancelScope] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or self.gateway.config.routing_mode != "aggregate":
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
        with seam.holding_http_session(transport) if transport is not None else contextlib.nullcontext():
            await self._take_or_pass(scope, receive, send, version, session, headers)

    async def _take_or_pass(
        self, scope: Scope, receive: Receive, send: Send, version: str, session: str | None, headers: Headers
    ) -> None:
        body, complete = await _read_body(receive)
        if not complete:
            return  # the client left before sending its request
        message = _loads(body) if len(body) <= _MAX_BODY else None
        call = plain_tool_call(message)
        if call is not None and call.progress_token is None:
            if version in HANDSHAKE_PROTOCOL_VERSIONS and not call.stamped and session is not None:
                key = (session, type(call.request_id), call.request_id)
                if key not in self._inflight:
                    await self._serve(key, call, version, receive, send)
                    return
            elif modern_version(message, dict(headers)) == version:
                await self._serve(None, call, version, receive, send)
                return
        cancelled = cancelled_request(message)
        target = None
        if session is not None and cancelled is not None:
            target = self._inflight.get((session, type(cancelled), cancelled))
        if target is not None:
            target.cancel()
            await send({"type": "http.response.start", "status": 202, "headers": []})
            await send({"type": "http.response.body", "body": b""})
            return
        await self.inner(scope, _replay(body, receive), send)

    def _live_transport(self, session: str, scope: Scope) -> Any:
        """The SDK transport of a live session that the SDK would serve this request on, else ``None``."""
        if scope.get("user") is not None:
            return None
        return seam.live_http_transport(self.manager, session)

    async def _serve(
        self, key: tuple[str, type, str | int] | None, call: PlainCall, version: str, receive: Receive, send: Send
    ) -> None:
        """Answer ``call``; ``key`` registers it for ``notifications/cancelled`` (sessions only: without a
        session, request ids are not unique across clients, and closing the connection is the signal)."""
        scope = anyio.CancelScope()
        if key is not None:
            self._inflight[key] = scope
        self.answered += 1
        line: bytes | None = None
        try:
            async with anyio.create_task_group() as tg:

                async def watch_disconnect() -> None:
                    while (await receive())["type"] != "http.disconnect":
                        pass
                    scope.cancel()  # the client gave up on this call: so does the upstream

                tg.start_soon(watch_disconnect)
                with scope:
                    line = await _answer(self.gateway, call, version, self.server_info, None)
                tg.cancel_scope.cancel()
        finally:
            if key is not None:
                self._inflight.pop(key, None)
        if line is None:  # cancelled: a cancelled request gets no JSON-RPC response
            status, body, headers = 202, b"", []
        else:
            status, body = 200, line
            headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        try:
            await send({"type": "http.response.start", "status": status, "headers": headers})
            await send({"type": "http.response.body", "body": body})
        except OSError:
            pass  # the connection is gone


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


def _replay(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that yields the already-read body once, then whatever the connection sends next."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay
