"""``tools/call`` on the gateway's own stdio wire, answered without the SDK server's models.

Why it exists: a tool call is the one message an agent sends over and over, and the gateway has
nothing to add to it but routing. Through the SDK's server each call is parsed into models, runs
the middleware chain and is validated and serialized again on the way out — the largest share of
the gateway's CPU per call once the transports are cheap. Here the pipe transport offers every
incoming line to :meth:`ToolCallPassthrough.take` first; a plain ``tools/call`` is routed to the
upstream and its result written back as JSON text, and everything else — the handshake, listings,
resources, prompts, search mode, anything unusual — goes to the SDK server as before.

What a call taken here still gets: the upstream error handling and activity record of
:meth:`Gateway.forward_tool_call`, progress (when the client sent a ``progressToken``), cancellation
(``notifications/cancelled`` for a request in flight here cancels it, and the SDK client then tells
the upstream), and a result shaped for the client's protocol version.

Which calls are taken: only once the SDK server has answered ``initialize`` with a handshake-era
version (2026-era clients, which stamp every request instead, keep the SDK path), in aggregate
mode, with ``params`` holding nothing but ``name``, ``arguments`` (an object) and ``_meta``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import mcp_types as types
from anyio.abc import TaskGroup, TaskStatus
from mcp.shared.dispatcher import ProgressFnT
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS

from mcprelay import diaglog
from mcprelay.gateway.core import Gateway

logger = logging.getLogger(__name__)

#: Writes one complete line (JSON text plus newline) to the client, waiting while the pipe is full.
WriteLine = Callable[[bytes], Awaitable[None]]

_TAKEN_PARAMS = frozenset({"name", "arguments", "_meta"})


class ToolCallPassthrough:
    """Serves plain ``tools/call`` requests of one stdio client; see the module docstring."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        self.version: str | None = None  # the client's protocol version, once the SDK server answered initialize
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
        if not self.version or self._tg is None or self.gateway.config.routing_mode != "aggregate":
            return False
        if b'"tools/call"' in line:
            return self._take_call(line)
        if b'"notifications/cancelled"' in line:
            return self._take_cancel(line)
        return False

    def _take_call(self, line: bytes) -> bool:
        message = _loads(line)
        if message is None or message.get("method") != "tools/call" or message.get("jsonrpc") != "2.0":
            return False
        request_id = message.get("id")
        params = message.get("params")
        if not isinstance(request_id, str | int) or isinstance(request_id, bool) or not isinstance(params, dict):
            return False
        name, arguments, meta = params.get("name"), params.get("arguments"), params.get("_meta")
        if (
            not params.keys() <= _TAKEN_PARAMS
            or not isinstance(name, str)
            or not (arguments is None or isinstance(arguments, dict))
            or not (meta is None or isinstance(meta, dict))
        ):
            return False  # the SDK server answers malformed or extended requests with its own errors
        key = (type(request_id), request_id)
        if key in self._inflight:
            return False
        token = meta.get("progressToken") if meta else None
        scope = anyio.CancelScope()
        self._inflight[key] = scope
        self.answered += 1
        assert self._tg is not None
        self._tg.start_soon(self._serve, key, scope, request_id, name, arguments, token)
        return True

    def _take_cancel(self, line: bytes) -> bool:
        message = _loads(line)
        params = message.get("params") if message else None
        if message is None or message.get("method") != "notifications/cancelled" or not isinstance(params, dict):
            return False
        request_id = params.get("requestId")
        if not isinstance(request_id, str | int):
            return False
        scope = self._inflight.get((type(request_id), request_id))
        if scope is None:
            return False  # not ours: the SDK server's request, or already answered
        scope.cancel()
        return True

    async def _serve(
        self, key: tuple[type, str | int], scope: anyio.CancelScope, request_id: str | int, name: str,
        arguments: dict[str, Any] | None, token: object,
    ) -> None:
        assert self._write is not None and self.version
        write = self._write
        head = b'{"jsonrpc":"2.0","id":' + json.dumps(request_id).encode() + b',"result":'
        progress = _progress_sender(write, token) if isinstance(token, str | int) else None
        try:
            with scope:
                try:
                    text = await self.gateway.forward_tool_call(
                        name, arguments, version=self.version, progress=progress
                    )
                    line = head + text.encode() + b"}\n"
                except Exception as exc:  # a bug of ours: the client still gets an answer, never silence
                    logger.exception("passthrough of tools/call %s failed", name)
                    error = {"code": types.INTERNAL_ERROR, "message": f"mcprelay: {type(exc).__name__}: {exc}"}
                    line = json.dumps({"jsonrpc": "2.0", "id": request_id, "error": error}).encode() + b"\n"
                await write(line)
        except (anyio.BrokenResourceError, anyio.ClosedResourceError, BrokenPipeError, ConnectionError):
            pass  # the client is gone; the end of its stdin ends the session
        finally:
            self._inflight.pop(key, None)


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
