"""The downstream stdio transport for ``serve --stdio``: stdin and stdout as asyncio pipes.

Why it exists: the SDK's ``mcp.server.stdio.stdio_server`` reads and writes through
``anyio.wrap_file``, so every message costs worker-thread hops (a ``readline`` per request, a
``write`` and a ``flush`` per response), each with its wake-up of the event loop. Profiling the
gateway under sequential echo calls showed those hops as the largest avoidable cost in the
process. When stdin and stdout are pipes or sockets (how MCP clients spawn a stdio server) this
module serves the same thing on the event loop itself (``loop.connect_read_pipe`` /
``loop.connect_write_pipe``) and hands the SDK server the same pair of streams: received items are
``SessionMessage``; sent items are ``SessionMessage``, written as one line of JSON each
(newline-delimited, as the SDK does). Every line is checked by ``framing.py`` first: a line that is
not an acceptable JSON-RPC message (too long, too deep, not JSON, an unusable ``id``, …) is answered
with a JSON-RPC error on the wire at once and goes no further; blank lines are skipped. Where
stdin/stdout are something else (a terminal, a regular file, ``/dev/null``, Windows, a non-asyncio
loop) worker threads read and write them instead (:func:`thread_streams`), with the same framing.

On pipes, as the SDK does, while serving fd 0 reads the null device and fd 1 writes to stderr, so
children and stray prints cannot touch the wire; both are restored (blocking again) on exit.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import stat
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Protocol

import anyio
import anyio.to_thread
import mcp_types as types
from anyio.abc import TaskStatus
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream
from mcp.shared.message import SessionMessage
from pydantic import ValidationError

from mcprelay.gateway.serving import framing

_CHUNK = 1 << 16

ReadStream = MemoryObjectReceiveStream[SessionMessage | Exception]
WriteStream = MemoryObjectSendStream[SessionMessage]


class Shortcut(Protocol):
    """Serves some messages beside the SDK server on the same wire (see ``gateway/serving/fastpath.py``)."""

    async def run(
        self, write: Callable[[bytes], Awaitable[None]], *, task_status: TaskStatus[None] = ...
    ) -> None: ...

    def take(self, line: bytes) -> bool: ...

    def sent(self, message: types.JSONRPCMessage) -> None: ...


@contextlib.asynccontextmanager
async def serve_stdio_streams(shortcut: Shortcut | None = None) -> AsyncIterator[tuple[Any, Any]]:
    """The (read, write) streams for the process's stdin/stdout: asyncio pipes when possible, else worker
    threads (:func:`thread_streams`); the same framing and ``shortcut`` either way."""
    claimed = _claim_std_fds() if _pipes_usable(0, 1) else None
    if claimed is None:
        async with thread_streams(shortcut) as streams:
            yield streams
        return
    (keep_in, wire_in), (keep_out, wire_out) = claimed
    try:
        async with pipe_streams(wire_in, wire_out, shortcut) as streams:
            yield streams
    finally:
        _release(1, keep_out)
        _release(0, keep_in)


def _pipes_usable(*fds: int) -> bool:
    if sys.platform == "win32":  # pragma: no cover
        return False
    try:
        asyncio.get_running_loop()  # anyio on asyncio (under trio there is none)
        # Pipes and sockets only: O_NONBLOCK lands on the shared file description, which a terminal
        # shares with the shell; regular files cannot be polled.
        return all(stat.S_ISFIFO(m) or stat.S_ISSOCK(m) for m in (os.fstat(fd).st_mode for fd in fds))
    except (OSError, RuntimeError):
        return False


def _claim_std_fds() -> tuple[tuple[int, int], tuple[int, int]] | None:
    """For fd 0 and 1: (a duplicate to restore from, a duplicate for the transport), the fd diverted."""
    import fcntl

    opened: list[int] = []
    try:
        claims: list[tuple[int, int]] = []
        for fd in (0, 1):
            keep = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 3)
            opened.append(keep)
            wire = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 3)
            opened.append(wire)
            claims.append((keep, wire))
        for fd in (0, 1):
            diversion = os.open(os.devnull, os.O_RDONLY) if fd == 0 else os.dup(2)
            try:
                os.dup2(diversion, fd)
            finally:
                os.close(diversion)
    except OSError:
        for fd, (keep, _wire) in zip((0, 1), claims, strict=False):
            with contextlib.suppress(OSError):
                os.dup2(keep, fd)
        for dup in opened:
            with contextlib.suppress(OSError):
                os.close(dup)
        return None
    return claims[0], claims[1]


def _release(fd: int, keep: int) -> None:
    with contextlib.suppress(OSError):
        os.set_blocking(keep, True)  # the transport left the shared file description non-blocking
    with contextlib.suppress(OSError):
        os.dup2(keep, fd)
    with contextlib.suppress(OSError):
        os.close(keep)


class _WriteProtocol(asyncio.BaseProtocol):
    """Flow control for the stdout pipe: ``drain`` waits while the pipe is full, raises once it is gone.

    Several writers may wait at once (the SDK server's writer and passthrough calls), so every waiter
    gets its own future.
    """

    def __init__(self) -> None:
        self._paused = False
        self._waiters: list[asyncio.Future[None]] = []
        self.lost: BaseException | None = None

    def pause_writing(self) -> None:
        self._paused = True

    def resume_writing(self) -> None:
        self._paused = False
        self._wake()

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = exc or BrokenPipeError("stdout closed")
        self._wake()

    def _wake(self) -> None:
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    async def drain(self) -> None:
        while self.lost is None and self._paused:
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            await waiter
        if self.lost is not None:
            raise self.lost


@contextlib.asynccontextmanager
async def pipe_streams(
    read_fd: int, write_fd: int, shortcut: Shortcut | None = None
) -> AsyncIterator[tuple[ReadStream, WriteStream]]:
    """Newline-delimited JSON-RPC over two pipe descriptors, which this takes over (and closes).

    ``shortcut`` is offered every received line before it is parsed for the SDK server, and told of
    every message the server sends.
    """
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    read_file = os.fdopen(read_fd, "rb", buffering=0)
    try:
        write_file = os.fdopen(write_fd, "wb", buffering=0)
    except OSError:
        read_file.close()
        os.close(write_fd)
        raise
    read_transport: asyncio.ReadTransport | None = None
    write_transport: asyncio.WriteTransport | None = None
    try:
        read_transport, _ = await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), read_file)
        write_transport, protocol = await loop.connect_write_pipe(_WriteProtocol, write_file)

        async def write_line(data: bytes) -> None:
            if protocol.lost is not None:
                raise protocol.lost
            assert write_transport is not None
            write_transport.write(data)
            await protocol.drain()

        async def flush() -> None:
            # The server is done: let the last bytes reach the pipe before the loop can end.
            assert write_transport is not None
            write_transport.set_write_buffer_limits(high=0)
            await protocol.drain()

        async with line_streams(lambda: reader.read(_CHUNK), write_line, flush, shortcut) as streams:
            yield streams
    finally:
        if read_transport is not None:
            read_transport.close()
        else:
            read_file.close()
        if write_transport is not None:
            write_transport.close()
        else:
            write_file.close()


@contextlib.asynccontextmanager
async def thread_streams(shortcut: Shortcut | None = None) -> AsyncIterator[tuple[ReadStream, WriteStream]]:
    """The same wire over the process's stdin/stdout read and written on worker threads: where the
    descriptors cannot go on the event loop (Windows, a terminal, a regular file), every line still
    passes :mod:`framing` and the ``shortcut``. A read blocked in its thread is abandoned at the end."""
    stdin: Any = sys.stdin.buffer  # a BufferedReader (read1 returns what one read of the descriptor gave)
    stdout = sys.stdout.buffer
    lock = anyio.Lock()

    def put(data: bytes) -> None:
        stdout.write(data)
        stdout.flush()

    async def read_chunk() -> bytes:
        return await anyio.to_thread.run_sync(stdin.read1, _CHUNK, abandon_on_cancel=True)

    async def write_line(data: bytes) -> None:
        async with lock:  # one whole line at a time, whoever writes it
            await anyio.to_thread.run_sync(put, data)

    async def flush() -> None:
        return None  # every line was flushed as it was written

    async with line_streams(read_chunk, write_line, flush, shortcut) as streams:
        yield streams


@contextlib.asynccontextmanager
async def line_streams(
    read_chunk: Callable[[], Awaitable[bytes]],
    write_line: Callable[[bytes], Awaitable[None]],
    flush: Callable[[], Awaitable[None]],
    shortcut: Shortcut | None = None,
) -> AsyncIterator[tuple[ReadStream, WriteStream]]:
    """Newline-delimited JSON-RPC on top of a byte source (``read_chunk``, ``b""`` at the end) and a line
    sink (``write_line`` writes one complete line; ``flush`` waits until the last one is out)."""
    read_send, read_receive = anyio.create_memory_object_stream[SessionMessage | Exception](0)
    write_send, write_receive = anyio.create_memory_object_stream[SessionMessage](0)

    async def refuse(refusal: framing.Refusal) -> None:
        with contextlib.suppress(OSError, RuntimeError):  # the client stopped reading: nothing to tell it
            await write_line(refusal.body() + b"\n")

    async def deliver(line: bytes) -> None:
        if not line.strip():
            return  # a blank line is not a message (and a client's "\r\n" leaves "\r")
        checked = framing.check(line)
        if isinstance(checked, framing.Refusal):
            await refuse(checked)
            return
        if shortcut is not None and shortcut.take(line):
            return
        try:
            message = types.jsonrpc_message_adapter.validate_json(line, by_name=False)
        except ValidationError as exc:
            # framing.check passed the envelope, so this is rare; the client still gets an answer.
            request_id = checked.get("id") if "method" in checked else None
            what = exc.errors()[0]["msg"] if exc.errors() else "not a JSON-RPC message"
            await refuse(framing.Refusal(framing.INVALID_REQUEST, f"invalid request: {what}", request_id))
            return
        await read_send.send(SessionMessage(message))

    async def read_lines() -> None:
        # Split on b"\n" without rescanning: a message spread over many chunks costs linear time. A line
        # longer than framing allows is not kept: its bytes are counted and dropped up to its newline.
        try:
            async with read_send:
                pending = bytearray()
                dropped = 0  # bytes of the current line already discarded for being too long
                while chunk := await read_chunk():
                    start = 0
                    while (end := chunk.find(b"\n", start)) >= 0:
                        if dropped:
                            await refuse(framing.too_large(dropped + end - start))
                            dropped = 0
                        elif pending:
                            pending += chunk[start:end]
                            line = bytes(pending)
                            pending.clear()
                            await deliver(line)
                        else:
                            await deliver(chunk[start:end])
                        start = end + 1
                    if dropped:
                        dropped += len(chunk) - start
                    else:
                        pending += chunk[start:]
                        if len(pending) > framing.MAX_MESSAGE_BYTES:
                            dropped = len(pending)
                            pending = bytearray()
                if dropped:
                    await refuse(framing.too_large(dropped))
                elif pending:
                    await deliver(bytes(pending))
        except (anyio.ClosedResourceError, anyio.BrokenResourceError):  # the server stopped reading
            pass

    async def write_lines() -> None:
        try:
            async with write_receive:
                async for session_message in write_receive:
                    if shortcut is not None:
                        shortcut.sent(session_message.message)
                    data = session_message.message.model_dump_json(by_alias=True, exclude_unset=True)
                    await write_line(data.encode() + b"\n")
            await flush()
        except anyio.ClosedResourceError:
            pass

    async with anyio.create_task_group() as tg:
        shortcut_scope = anyio.CancelScope()
        if shortcut is not None:

            async def run_shortcut(*, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
                assert shortcut is not None
                with shortcut_scope:
                    await shortcut.run(write_line, task_status=task_status)

            await tg.start(run_shortcut)
        tg.start_soon(read_lines)
        tg.start_soon(write_lines)
        try:
            yield read_receive, write_send
        finally:
            shortcut_scope.cancel()  # the session is over: calls still in flight have no one to answer
