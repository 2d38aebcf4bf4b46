"""The client side of the stdio transport: a local server's stdin/stdout as newline-delimited JSON-RPC.

Why not the SDK's ``stdio_client``: it decodes the pipe as text and joins every 64 KiB chunk onto the
text still pending (``buffer + chunk``), so one 50 MB line costs quadratic copying — 16 MB took
10 s of CPU, 50 MB about a minute and a half — during which nothing else from the server arrives
(a ping's answer included), and there is no bound on a line. Here:

* bytes are read in chunks and split into lines without rescanning, each line parsed once, from bytes;
* every chunk marks the :class:`~mcprelay.inbound.Liveness` the supervisor's ping consults;
* a line longer than ``max_result_bytes`` is not kept: its first and last bytes are, to find the id
  of the request it answers, which then gets a JSON-RPC error naming the cap and the size
  (:func:`mcprelay.inbound.too_large_error`); an oversized notification is dropped and logged.

The process is handled as the SDK handles it, with the SDK's public helpers: its own session
(process group) on POSIX and a job object on Windows, the inherited environment limited to the
SDK's safe default, and the specification's shutdown order — close stdin, wait, then terminate the
whole tree — with the server's remaining output drained meanwhile so it can exit.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from typing import Any, TextIO

import anyio
import anyio.to_thread
import mcp_types as types
from mcp.client.stdio import get_default_environment
from mcp.shared.message import SessionMessage
from pydantic import ValidationError

from mcprelay.inbound import EDGE_BYTES, Liveness, response_id, too_large_error

logger = logging.getLogger(__name__)

_CHUNK = 1 << 16
#: Seconds the server has to exit after its stdin closes, then after SIGTERM before SIGKILL. Shorter than
#: the SDK's 2 s: an agent that spawned ``serve --stdio`` signals the gateway 2 s after closing its stdin,
#: and the gateway must have ended its upstreams by then.
EXIT_GRACE = 1.0


async def _spawn(command: str, args: list[str], env: dict[str, str], errlog: TextIO) -> Any:
    if sys.platform == "win32":  # pragma: no cover - Windows
        from mcp.os.win32.utilities import create_windows_process, get_windows_executable_command

        executable = await anyio.to_thread.run_sync(get_windows_executable_command, command)
        return await create_windows_process(executable, args, env, errlog, None)
    return await anyio.open_process([command, *args], env=env, stderr=errlog, start_new_session=True)


async def _exited(process: Any, seconds: float) -> bool:
    """Whether the process has exited within ``seconds``. Polled: ``wait()`` also waits for the pipes to
    close, and a grandchild that inherited them would make a dead server look alive."""
    with anyio.move_on_after(seconds):
        while process.returncode is None:  # noqa: ASYNC110 - see above
            await anyio.sleep(0.01)
    return process.returncode is not None


async def _stop(process: Any) -> None:
    """Close stdin, give the server time to exit, then end its whole tree; bounded throughout."""
    with suppress(Exception):
        await process.stdin.aclose()
    if not await _exited(process, EXIT_GRACE):
        if sys.platform == "win32":  # pragma: no cover - Windows
            from mcp.os.win32.utilities import terminate_windows_process_tree

            await terminate_windows_process_tree(process)
        else:
            from mcp.os.posix.utilities import terminate_posix_process_tree

            await terminate_posix_process_tree(process, EXIT_GRACE)
        if not await _exited(process, EXIT_GRACE):
            logger.warning("stdio server %s is still alive after SIGTERM and SIGKILL; leaving it", process.pid)
    if sys.platform == "win32":  # pragma: no cover - Windows
        from mcp.os.win32.utilities import close_process_job

        close_process_job(process)
    with suppress(Exception):
        await process.stdout.aclose()


class _Lines:
    """Splits the server's stdout into messages for the session; see the module docstring."""

    def __init__(self, send: Any, liveness: Liveness, max_bytes: int, label: str) -> None:
        self.send = send
        self.liveness = liveness
        self.max_bytes = max_bytes
        self.label = label
        self.draining = False  # the session is gone: keep reading (so the server can exit), deliver nothing

    async def run(self, stdout: Any) -> None:
        pending = bytearray()
        dropped = 0  # bytes of the current line over the cap, counted and not kept
        head = tail = b""
        while True:
            try:
                chunk = await stdout.receive(_CHUNK)
            except (anyio.EndOfStream, anyio.ClosedResourceError, anyio.BrokenResourceError, OSError):
                break
            self.liveness.saw_bytes()
            start = 0
            while (end := chunk.find(b"\n", start)) >= 0:
                if dropped:
                    tail = (tail + chunk[start:end])[-EDGE_BYTES:]
                    await self._oversized(head, tail, dropped + end - start)
                    dropped, head, tail = 0, b"", b""
                elif pending:
                    pending += chunk[start:end]
                    line, pending = pending, bytearray()
                    await self._deliver(line)
                else:
                    await self._deliver(chunk[start:end])
                start = end + 1
            rest = chunk[start:]
            if dropped:
                dropped += len(rest)
                tail = (tail + rest)[-EDGE_BYTES:]
            elif rest:
                pending += rest
                if len(pending) > self.max_bytes:
                    head, tail, dropped = bytes(pending[:EDGE_BYTES]), bytes(pending[-EDGE_BYTES:]), len(pending)
                    pending = bytearray()
        if dropped:
            await self._oversized(head, tail, dropped)
        elif pending.strip():
            await self._deliver(pending)

    async def _put(self, item: SessionMessage | Exception) -> None:
        if self.draining:
            return
        try:
            await self.send.send(item)
        except (anyio.ClosedResourceError, anyio.BrokenResourceError):
            self.draining = True

    async def _deliver(self, line: bytes | bytearray) -> None:
        if len(line) > self.max_bytes:
            await self._oversized(bytes(line[:EDGE_BYTES]), bytes(line[-EDGE_BYTES:]), len(line))
            return
        if not line.strip() or self.draining:
            return
        try:
            message = types.jsonrpc_message_adapter.validate_json(line, by_name=False)
        except ValidationError as exc:
            # As the SDK does: the session (and mcprelay.transport's read stream) sees why it is not a message.
            await self._put(exc)
            return
        await self._put(SessionMessage(message))

    async def _oversized(self, head: bytes, tail: bytes, size: int) -> None:
        request_id = response_id(head, tail)
        if request_id is None:
            logger.warning("%s sent a message of %d bytes, over max_result_bytes (%d), that answers no request; "
                           "dropped", self.label, size, self.max_bytes)
            return
        await self._put(too_large_error(request_id, size, self.max_bytes))


@asynccontextmanager
async def stdio_transport(
    command: str,
    args: list[str],
    env: dict[str, str] | None = None,
    *,
    errlog: TextIO | None = None,
    max_message_bytes: int,
    liveness: Liveness | None = None,
) -> AsyncIterator[tuple[Any, Any]]:
    """The (read, write) streams of an MCP session with ``command`` run as a subprocess (see the module docstring)."""
    process = await _spawn(command, list(args), get_default_environment() | (env or {}), errlog or sys.stderr)
    read_send, read_receive = anyio.create_memory_object_stream[SessionMessage | Exception](0)
    write_send, write_receive = anyio.create_memory_object_stream[SessionMessage](0)
    lines = _Lines(read_send, liveness or Liveness(), max_message_bytes, command)

    async def read() -> None:
        async with read_send:
            await lines.run(process.stdout)

    async def write() -> None:
        try:
            async with write_receive:
                async for session_message in write_receive:
                    data = session_message.message.model_dump_json(by_alias=True, exclude_unset=True)
                    await process.stdin.send(data.encode() + b"\n")
        except (anyio.ClosedResourceError, anyio.BrokenResourceError, OSError):
            # The server stopped reading: end the session's view of it rather than leave a request hanging.
            await read_send.aclose()

    async with anyio.create_task_group() as tg:
        tg.start_soon(read)
        tg.start_soon(write)
        try:
            yield read_receive, write_send
        finally:
            with anyio.CancelScope(shield=True):
                lines.draining = True
                write_send.close()
                read_receive.close()
                await _stop(process)
            tg.cancel_scope.cancel()
