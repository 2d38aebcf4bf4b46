#!/usr/bin/env python3
"""A raw JSON-RPC bridge from streamable HTTP to stdio MCP servers, for the conformance harness.

The MCP conformance suite checks servers only over HTTP (``conformance server --url``), but the
gateway mode the README recommends for desktop clients is ``mcprelay serve --stdio``. This bridge
puts a minimal streamable HTTP front on a stdio server so the suite's server scenarios can be run
through ``serve --stdio`` too. It is test harness, not product: it models what the scenarios need
and is honest about the rest.

    .venv/bin/python .ci/stdio_bridge.py --listen 127.0.0.1:PORT [--log FILE] [--child-logs DIR] \\
        -- mcprelay --home /tmp/h/{child} serve --stdio

``{child}`` in the command is replaced by a number unique to each child process it starts.

What it does
------------
* **Handshake era (2024-11-05 … 2025-11-25).** A POST carrying ``initialize`` without a session
  starts one child and a session (``Mcp-Session-Id``, visible ASCII). Messages are relayed
  verbatim, ids untouched (one client per child): the client's requests go to the child and each
  POST answers with an SSE stream that ends with the response to its request; the client's
  notifications and responses are forwarded and answered 202. Server-initiated requests and
  notifications go on the SSE stream of an in-flight POST (``notifications/progress`` to the POST
  whose request carried that progress token, anything else to the most recent in-flight POST),
  or on the session's GET stream when none is in flight (kept until one opens, 256 at most).
  ``DELETE`` ends the session and its child; later requests with that id get 404.
* **2026-07-28 (stateless).** A POST whose ``MCP-Protocol-Version`` header names no handshake
  version carries one self-contained request. Because stdio has no headers, the bridge applies the
  HTTP binding's own header rule itself (``MCP-Protocol-Version``, ``Mcp-Method`` and
  ``Mcp-Name`` must agree with the body, else 400 with -32020, judged by the SDK's
  ``classify_inbound_request``); everything else (a missing ``_meta``, an unsupported version, an
  unknown method) is the child's to answer. Requests go to one shared child, concurrently, with
  their ids (and progress tokens) rewritten to bridge-unique values so that requests from
  different POSTs cannot collide, and restored on the way back, including the
  ``io.modelcontextprotocol/subscriptionId`` that ``subscriptions/listen`` frames carry. The
  answer is JSON with the SDK's error-code→HTTP-status table when the response comes first, an SSE
  stream when a notification comes first (``subscriptions/listen`` always). A client that closes
  the stream cancels the request (``notifications/cancelled`` to the child: stdio's way).
  A request that asks for log messages (``io.modelcontextprotocol/logLevel`` in ``_meta``) gets a
  child of its own for its duration, because on stdio ``notifications/message`` carries nothing
  that says which request it belongs to; on the shared child such a notification (which a correct
  server never sends there) goes to every request in flight on it, so it is seen, not lost.
  Each modern child is opened with a ``server/discover`` probe, as a 2026 stdio client does, so
  its era is settled before any scenario's (possibly malformed) request reaches it.

What it does not model
----------------------
Host/Origin (DNS rebinding) checks, ``Accept`` negotiation, ``Mcp-Param-*`` header validation,
SSE event ids, ``retry`` and ``Last-Event-ID`` resumption, session idle timeouts, JSON-RPC batches,
and client notifications on the stateless path (acknowledged 202 and dropped, as the SDK's HTTP
server does). Scenarios about those test the HTTP transport, which here would be this bridge;
the harness does not run them through it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import secrets
import shlex
import signal
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mcp.shared.inbound import ERROR_CODE_HTTP_STATUS, classify_inbound_request
from mcp_types import HEADER_MISMATCH
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

SUBSCRIPTION_ID = "io.modelcontextprotocol/subscriptionId"
LOG_LEVEL = "io.modelcontextprotocol/logLevel"
MODERN_VERSION = "2026-07-28"
LINE_LIMIT = 64 * 1024 * 1024
GET_BACKLOG = 256

Message = dict[str, Any]


def _key(request_id: Any) -> str:
    """A dict key for a JSON-RPC id that keeps 1 and "1" apart."""
    return json.dumps(request_id, sort_keys=True)


def is_request(msg: Message) -> bool:
    return "method" in msg and "id" in msg


def is_notification(msg: Message) -> bool:
    return "method" in msg and "id" not in msg


def is_response(msg: Message) -> bool:
    return "method" not in msg and ("result" in msg or "error" in msg)


# ---- id rewriting (pure; unit-tested in tests/unit/test_stdio_bridge.py) ----------------------------
@dataclass
class Pending:
    """One client request in flight on a shared child: who asked, under which id and progress token."""

    owner: Any
    client_id: Any
    child_id: int
    client_token: Any = None
    child_token: str | None = None


class IdMap:
    """Rewrites the ids of requests from many HTTP clients that share one child, and restores them.

    ``outbound`` gives each request a fresh integer id (and a fresh progress token when it has
    one) and remembers whose it was; ``inbound`` routes what the child sends back to that owner
    with the client's own values restored: the response id, the progress token of
    ``notifications/progress`` and any ``_meta["io.modelcontextprotocol/subscriptionId"]`` (the
    ``subscriptions/listen`` id). A message that names no pending request routes to no one.
    """

    def __init__(self) -> None:
        self._ids = itertools.count(1)
        self._by_child_id: dict[int, Pending] = {}
        self._by_token: dict[str, Pending] = {}

    def __len__(self) -> int:
        return len(self._by_child_id)

    def outbound(self, owner: Any, msg: Message) -> tuple[Message, Pending]:
        child_id = next(self._ids)
        pending = Pending(owner=owner, client_id=msg.get("id"), child_id=child_id)
        out = dict(msg, id=child_id)
        params = msg.get("params")
        meta = params.get("_meta") if isinstance(params, dict) else None
        if isinstance(meta, dict) and "progressToken" in meta:
            pending.client_token = meta["progressToken"]
            pending.child_token = f"bridge-progress-{child_id}"
            out["params"] = dict(params, _meta=dict(meta, progressToken=pending.child_token))  # type: ignore[arg-type]
            self._by_token[pending.child_token] = pending
        self._by_child_id[child_id] = pending
        return out, pending

    def forget(self, pending: Pending) -> None:
        self._by_child_id.pop(pending.child_id, None)
        if pending.child_token is not None:
            self._by_token.pop(pending.child_token, None)

    def pending(self) -> list[Pending]:
        return list(self._by_child_id.values())

    def inbound(self, msg: Message) -> tuple[Pending | None, Message, bool]:
        """``(owner's pending request or None, the message restored, whether it ends that request)``."""
        if is_response(msg):
            pending = self._by_child_id.get(msg.get("id")) if isinstance(msg.get("id"), int) else None
            if pending is None:
                return None, msg, False
            self.forget(pending)
            return pending, self._restore_meta(dict(msg, id=pending.client_id), pending, "result"), True
        if not is_notification(msg):
            return None, msg, False
        params = msg.get("params")
        if not isinstance(params, dict):
            return None, msg, False
        if msg.get("method") == "notifications/progress":
            token = params.get("progressToken")
            pending = self._by_token.get(token) if isinstance(token, str) else None
            if pending is not None:
                return pending, dict(msg, params=dict(params, progressToken=pending.client_token)), False
        meta = params.get("_meta")
        if isinstance(meta, dict) and isinstance(meta.get(SUBSCRIPTION_ID), int):
            pending = self._by_child_id.get(meta[SUBSCRIPTION_ID])
            if pending is not None:
                return pending, self._restore_meta(msg, pending, "params"), False
        return None, msg, False

    @staticmethod
    def _restore_meta(msg: Message, pending: Pending, where: str) -> Message:
        body = msg.get(where)
        meta = body.get("_meta") if isinstance(body, dict) else None
        if isinstance(body, dict) and isinstance(meta, dict) and meta.get(SUBSCRIPTION_ID) == pending.child_id:
            return dict(msg, **{where: dict(body, _meta=dict(meta, **{SUBSCRIPTION_ID: pending.client_id}))})
        return msg


# ---- children ----------------------------------------------------------------------------------
class Child:
    """One stdio server process: newline-delimited JSON-RPC on its stdin/stdout."""

    _numbers = itertools.count(1)

    def __init__(self, command: list[str], log: Callable[[str], None], logs_dir: Path | None) -> None:
        self.number = next(self._numbers)
        self.command = [part.replace("{child}", str(self.number)) for part in command]
        self.log = log
        self.logs_dir = logs_dir
        self.on_message: Callable[[Message], Awaitable[None]] | None = None
        self.on_exit: Callable[[], Awaitable[None]] | None = None
        self.proc: asyncio.subprocess.Process | None = None
        self._write_lock = asyncio.Lock()
        self._reader: asyncio.Task[None] | None = None

    async def start(self) -> None:
        stderr: Any = asyncio.subprocess.DEVNULL
        if self.logs_dir is not None:
            self.logs_dir.mkdir(parents=True, exist_ok=True)
            stderr = open(self.logs_dir / f"child-{self.number}.stderr.log", "ab")  # noqa: ASYNC230 - a quick local open
        self.proc = await asyncio.create_subprocess_exec(
            *self.command,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=stderr,
            limit=LINE_LIMIT,
        )
        if stderr is not asyncio.subprocess.DEVNULL:
            stderr.close()
        self.log(f"child {self.number} started (pid {self.proc.pid}): {shlex.join(self.command)}")
        self._reader = asyncio.create_task(self._read())

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    async def send(self, msg: Message) -> None:
        assert self.proc is not None and self.proc.stdin is not None
        line = json.dumps(msg, separators=(",", ":")).encode() + b"\n"
        async with self._write_lock:
            self.proc.stdin.write(line)
            await self.proc.stdin.drain()

    async def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        try:
            while True:
                line = await self.proc.stdout.readline()
                if not line:
                    break
                try:
                    msg = json.loads(line)
                except ValueError:
                    self.log(f"child {self.number} wrote a line that is not JSON: {line[:200]!r}")
                    continue
                if not isinstance(msg, dict):
                    self.log(f"child {self.number} wrote a JSON value that is not one message: {line[:200]!r}")
                    continue
                if self.on_message is not None:
                    await self.on_message(msg)
        finally:
            code = await self.proc.wait()
            self.log(f"child {self.number} exited with code {code}")
            if self.on_exit is not None:
                await self.on_exit()

    async def close(self) -> None:
        """Close stdin (the stdio shutdown signal), then terminate, then kill (the child's pid only: children
        share the bridge's process group, so whoever stops the bridge's group stops them too)."""
        if self.proc is None or self.proc.returncode is not None:
            return
        with contextlib.suppress(OSError, RuntimeError):
            assert self.proc.stdin is not None
            self.proc.stdin.close()
        for sig in (None, signal.SIGTERM, signal.SIGKILL):
            if sig is not None:
                with contextlib.suppress(ProcessLookupError):
                    self.proc.send_signal(sig)
            try:
                await asyncio.wait_for(self.proc.wait(), 3)
                return
            except TimeoutError:
                continue


# ---- streams back to HTTP clients ------------------------------------------------------------------
class Outlet:
    """Messages for one HTTP response (a POST's SSE stream or a GET stream), in order."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[Message | None] = asyncio.Queue()
        self.started = time.monotonic()

    def put(self, msg: Message) -> None:
        self.queue.put_nowait(msg)

    def end(self) -> None:
        self.queue.put_nowait(None)


def sse(msg: Message) -> bytes:
    return b"event: message\ndata: " + json.dumps(msg, separators=(",", ":")).encode() + b"\n\n"


async def sse_body(
    outlet: Outlet,
    final_id: Any = None,
    on_close: Callable[[], Awaitable[None]] | None = None,
    first: Message | None = None,
) -> AsyncIterator[bytes]:
    """Stream an outlet (after ``first``, already taken from it); stop after the response to ``final_id``."""
    try:
        while True:
            msg = first if first is not None else await outlet.queue.get()
            first = None
            if msg is None:
                return
            yield sse(msg)
            if final_id is not None and is_response(msg) and _key(msg.get("id")) == _key(final_id):
                return
    finally:
        if on_close is not None:
            await on_close()


# ---- handshake-era sessions ----------------------------------------------------------------------
@dataclass
class Session:
    id: str
    child: Child
    posts: dict[str, tuple[Outlet, Any]] = field(default_factory=dict)  # request id -> (outlet, progress token)
    get: Outlet | None = None
    backlog: list[Message] = field(default_factory=list)
    closed: bool = False

    async def from_child(self, msg: Message) -> None:
        if is_response(msg):
            entry = self.posts.pop(_key(msg.get("id")), None)
            if entry is not None:
                entry[0].put(msg)
                return
            self.child.log(f"session {self.id}: response to no request in flight: {json.dumps(msg)[:200]}")
            return
        target: Outlet | None = None
        if msg.get("method") == "notifications/progress":
            token = (msg.get("params") or {}).get("progressToken")
            target = next((outlet for outlet, t in self.posts.values() if t is not None and t == token), None)
        if target is None and self.posts:
            target = max((outlet for outlet, _ in self.posts.values()), key=lambda o: o.started)
        if target is None:
            target = self.get
        if target is not None:
            target.put(msg)
        elif len(self.backlog) < GET_BACKLOG:
            self.backlog.append(msg)
        else:
            self.child.log(f"session {self.id}: GET backlog full, dropped {msg.get('method')}")

    async def ended(self) -> None:
        self.closed = True
        for outlet, _ in self.posts.values():
            outlet.end()
        self.posts.clear()
        if self.get is not None:
            self.get.end()


# ---- the stateless (2026) path -----------------------------------------------------------------------
class ModernChild:
    """A child serving 2026-07-28 requests, opened with a ``server/discover`` probe."""

    def __init__(self, child: Child) -> None:
        self.child = child
        self.ids = IdMap()
        self.outlets: dict[int, Outlet] = {}  # child id -> outlet
        self.listening: set[int] = set()
        child.on_message = self.from_child
        child.on_exit = self.ended

    async def open(self) -> None:
        await self.child.start()
        probe = {
            "jsonrpc": "2.0",
            "id": "bridge-probe",
            "method": "server/discover",
            "params": {
                "_meta": {
                    "io.modelcontextprotocol/protocolVersion": MODERN_VERSION,
                    "io.modelcontextprotocol/clientInfo": {"name": "mcprelay-stdio-bridge", "version": "1"},
                    "io.modelcontextprotocol/clientCapabilities": {},
                }
            },
        }
        self._probe: asyncio.Future[Message] = asyncio.get_running_loop().create_future()
        await self.child.send(probe)
        answer = await asyncio.wait_for(self._probe, 60)
        if "error" in answer:
            self.child.log(f"child {self.child.number}: server/discover probe answered {json.dumps(answer)[:300]}")

    async def from_child(self, msg: Message) -> None:
        if is_response(msg) and msg.get("id") == "bridge-probe":
            if not self._probe.done():
                self._probe.set_result(msg)
            return
        pending, restored, final = self.ids.inbound(msg)
        if pending is not None:
            outlet = self.outlets.get(pending.child_id)
            if outlet is not None:
                outlet.put(restored)
            if final:
                self.outlets.pop(pending.child_id, None)
                self.listening.discard(pending.child_id)
            return
        if is_notification(msg):
            # Nothing says whose it is (on stdio, notifications/message names no request).
            targets = [o for cid, o in self.outlets.items() if cid not in self.listening]
            for outlet in targets:
                outlet.put(msg)
            self.child.log(
                f"child {self.child.number}: unroutable {msg.get('method')} given to {len(targets)} request(s)"
            )
            return
        self.child.log(f"child {self.child.number}: unexpected message on the stateless path: {json.dumps(msg)[:300]}")

    async def ended(self) -> None:
        for outlet in self.outlets.values():
            outlet.end()
        self.outlets.clear()

    async def submit(self, msg: Message) -> tuple[Outlet, Pending]:
        out, pending = self.ids.outbound(None, msg)
        outlet = Outlet()
        self.outlets[pending.child_id] = outlet
        if msg.get("method") == "subscriptions/listen":
            self.listening.add(pending.child_id)
        await self.child.send(out)
        return outlet, pending

    async def cancel(self, pending: Pending) -> None:
        if pending.child_id in self.outlets:
            self.outlets.pop(pending.child_id, None)
            self.listening.discard(pending.child_id)
            self.ids.forget(pending)
            with contextlib.suppress(OSError, RuntimeError, AssertionError):
                await self.child.send(
                    {"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": pending.child_id}}
                )


# ---- the bridge -------------------------------------------------------------------------------------
class Bridge:
    def __init__(self, command: list[str], log_path: Path | None, logs_dir: Path | None, pool: int) -> None:
        self.command = command
        self.logs_dir = logs_dir
        self._log_file = open(log_path, "a", buffering=1) if log_path else None
        self.sessions: dict[str, Session] = {}
        self.ended_sessions: set[str] = set()
        self.shared: ModernChild | None = None
        self._shared_lock = asyncio.Lock()
        self.idle: list[ModernChild] = []
        self.pool = asyncio.Semaphore(pool)
        self.children: list[Child] = []
        self._closing: set[asyncio.Task[None]] = set()

    def log(self, line: str) -> None:
        stamp = time.strftime("%H:%M:%S")
        if self._log_file is not None:
            self._log_file.write(f"{stamp} {line}\n")

    def _child(self) -> Child:
        child = Child(self.command, self.log, self.logs_dir)
        self.children.append(child)
        return child

    async def close(self) -> None:
        await asyncio.gather(*(child.close() for child in self.children), return_exceptions=True)

    # -- HTTP entry ----------------------------------------------------------------------------------
    async def endpoint(self, request: Request) -> Response:
        session_id = request.headers.get("mcp-session-id")
        version = request.headers.get("mcp-protocol-version")
        if request.method == "DELETE":
            return await self._delete(session_id)
        if request.method == "GET":
            if session_id is None and version is not None and version not in HANDSHAKE_PROTOCOL_VERSIONS:
                return Response(status_code=405, headers={"Allow": "POST"})
            return await self._get(session_id)
        if request.method != "POST":
            return Response(status_code=405, headers={"Allow": "GET, POST, DELETE"})
        try:
            body = json.loads(await request.body())
        except ValueError:
            return _error(None, -32700, "Parse error", 400)
        if not isinstance(body, dict):
            return _error(None, -32600, "Body must be a single JSON-RPC message (batches are not modelled)", 400)
        if session_id is None and version is not None and version not in HANDSHAKE_PROTOCOL_VERSIONS:
            return await self._stateless(request, body)
        if session_id is not None:
            session = self.sessions.get(session_id)
            if session is None or session.closed:
                return _error(body.get("id"), -32001, "Session not found", 404)
            return await self._in_session(session, body)
        if body.get("method") == "initialize":
            return await self._initialize(body)
        return _error(body.get("id"), -32000, "Bad Request: no valid session ID provided", 400)

    # -- handshake era ---------------------------------------------------------------------------------
    async def _initialize(self, body: Message) -> Response:
        child = self._child()
        session = Session(id=secrets.token_hex(16), child=child)
        child.on_message = session.from_child
        child.on_exit = session.ended
        self.sessions[session.id] = session
        await child.start()
        self.log(f"session {session.id} opened on child {child.number}")
        return await self._in_session(session, body, headers={"mcp-session-id": session.id})

    async def _in_session(self, session: Session, body: Message, headers: dict[str, str] | None = None) -> Response:
        if not is_request(body):
            try:
                await session.child.send(body)
            except (OSError, RuntimeError):
                return _error(None, -32603, "the stdio child has gone", 500)
            return Response(status_code=202, headers=headers)
        outlet = Outlet()
        meta = (body.get("params") or {}).get("_meta") if isinstance(body.get("params"), dict) else None
        token = meta.get("progressToken") if isinstance(meta, dict) else None
        session.posts[_key(body["id"])] = (outlet, token)
        try:
            await session.child.send(body)
        except (OSError, RuntimeError):
            session.posts.pop(_key(body["id"]), None)
            return _error(body["id"], -32603, "the stdio child has gone", 500)

        async def closed() -> None:
            session.posts.pop(_key(body["id"]), None)

        return StreamingResponse(
            sse_body(outlet, body["id"], closed), media_type="text/event-stream", headers=_sse_headers(headers)
        )

    async def _get(self, session_id: str | None) -> Response:
        session = self.sessions.get(session_id or "")
        if session is None or session.closed:
            return Response("unknown or missing Mcp-Session-Id", status_code=404 if session_id else 400)
        if session.get is not None:
            return Response("a GET stream is already open for this session", status_code=409)
        outlet = Outlet()
        session.get = outlet
        for msg in session.backlog:
            outlet.put(msg)
        session.backlog.clear()

        async def closed() -> None:
            if session.get is outlet:
                session.get = None

        return StreamingResponse(sse_body(outlet, None, closed), media_type="text/event-stream", headers=_sse_headers())

    async def _delete(self, session_id: str | None) -> Response:
        if session_id is None:
            return Response("missing Mcp-Session-Id", status_code=400)
        session = self.sessions.pop(session_id, None)
        if session is None:
            return Response("unknown session", status_code=404)
        await session.ended()
        task = asyncio.create_task(session.child.close())  # the answer need not wait for the process to exit
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)
        self.log(f"session {session_id} deleted")
        return Response(status_code=200)

    # -- 2026-07-28 -------------------------------------------------------------------------------------
    async def _stateless(self, request: Request, body: Message) -> Response:
        if "id" not in body:
            return Response(status_code=202)  # acknowledged and dropped, as the SDK's HTTP server does
        if "method" not in body:
            return _error(None, -32600, "a client may not POST a response on the stateless path", 400)
        headers = {k: v for k, v in request.headers.items() if k in ("mcp-protocol-version", "mcp-method", "mcp-name")}
        verdict = classify_inbound_request(body, headers=headers)
        if getattr(verdict, "code", None) == HEADER_MISMATCH:
            return _error(body.get("id"), HEADER_MISMATCH, getattr(verdict, "message", "header mismatch"), 400)
        params = body.get("params")
        meta = params.get("_meta") if isinstance(params, dict) else None
        wants_logs = isinstance(meta, dict) and LOG_LEVEL in meta
        if wants_logs:
            await self.pool.acquire()
            while self.idle and not self.idle[-1].child.alive:
                self.idle.pop()
            child = self.idle.pop() if self.idle else await self._open_modern()
            release: Callable[[], Awaitable[None]] | None = self._releaser(child)
        else:
            child = await self._shared_child()
            release = None
        outlet, pending = await child.submit(body)
        return await self._answer(child, outlet, pending, body, release)

    def _releaser(self, child: ModernChild) -> Callable[[], Awaitable[None]]:
        async def release() -> None:
            if child.child.alive:
                self.idle.append(child)
            self.pool.release()

        return release

    async def _open_modern(self) -> ModernChild:
        modern = ModernChild(self._child())
        await modern.open()
        return modern

    async def _shared_child(self) -> ModernChild:
        async with self._shared_lock:
            if self.shared is None or not self.shared.child.alive:
                self.shared = await self._open_modern()
            return self.shared

    async def _answer(
        self,
        child: ModernChild,
        outlet: Outlet,
        pending: Pending,
        body: Message,
        release: Callable[[], Awaitable[None]] | None,
    ) -> Response:
        first = await outlet.queue.get()
        if first is None:
            if release:
                await release()
            return _error(body.get("id"), -32603, "the stdio child exited before answering", 502)
        if is_response(first) and body.get("method") != "subscriptions/listen":
            if release:
                await release()
            status = 200
            if isinstance(first.get("error"), dict):
                status = ERROR_CODE_HTTP_STATUS.get(first["error"].get("code"), 200)
            return JSONResponse(first, status_code=status)

        async def closed() -> None:
            await child.cancel(pending)  # a no-op once the response has arrived
            if release:
                await release()

        return StreamingResponse(
            sse_body(outlet, body.get("id"), closed, first), media_type="text/event-stream", headers=_sse_headers()
        )


def _sse_headers(extra: dict[str, str] | None = None) -> dict[str, str]:
    return {"cache-control": "no-cache", **(extra or {})}


def _error(request_id: Any, code: int, message: str, status: int) -> JSONResponse:
    return JSONResponse(
        {"jsonrpc": "2.0", "id": request_id, "error": {"code": code, "message": message}}, status_code=status
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--listen", required=True, metavar="HOST:PORT")
    parser.add_argument("--log", type=Path, help="the bridge's own log (children, sessions, unroutable messages)")
    parser.add_argument("--child-logs", type=Path, help="directory for each child's stderr")
    parser.add_argument(
        "--pool", type=int, default=4, help="children for requests that ask for log messages (default 4)"
    )
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- the stdio server command")
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("give the stdio server command after --")
    host, _, port = args.listen.rpartition(":")
    bridge = Bridge(command, args.log, args.child_logs, args.pool)

    import uvicorn

    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        await bridge.close()

    app = Starlette(
        routes=[Route("/mcp", bridge.endpoint, methods=["GET", "POST", "DELETE"])],
        lifespan=contextlib.asynccontextmanager(lifespan),
    )
    print(f"stdio bridge listening on http://{host}:{port}/mcp", file=sys.stderr, flush=True)
    uvicorn.run(app, host=host, port=int(port), log_level="warning", timeout_graceful_shutdown=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
