"""The asyncio-pipe stdio transport of ``serve --stdio``: framing, bad lines, large messages, EOF."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import anyio
import mcp_types as types
import pytest
from mcp.shared.message import SessionMessage

from mcprelay.gateway.serving.stdio import pipe_streams

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def _request(i: int, text: str = "hi") -> bytes:
    return json.dumps({"jsonrpc": "2.0", "id": i, "method": "ping", "params": {"text": text}}).encode()


async def _run(incoming: bytes, outgoing: list[SessionMessage]) -> tuple[list[SessionMessage | Exception], bytes]:
    """Feed ``incoming`` then EOF into the transport, send ``outgoing``; return what it read and wrote."""
    in_r, in_w = os.pipe()
    out_r, out_w = os.pipe()
    received: list[SessionMessage | Exception] = []
    written = bytearray()

    async def feed() -> None:
        await anyio.to_thread.run_sync(_write_all, in_w, incoming)

    async def drain() -> None:
        while chunk := await anyio.to_thread.run_sync(os.read, out_r, 1 << 16):
            written.extend(chunk)

    async with anyio.create_task_group() as tg:
        tg.start_soon(feed)
        tg.start_soon(drain)
        async with pipe_streams(in_r, out_w) as (read, write):
            async with write:
                for message in outgoing:
                    await write.send(message)
            async with read:
                async for item in read:
                    received.append(item)
    os.close(out_r)
    return received, bytes(written)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]
    os.close(fd)


async def test_lines_bad_json_and_a_last_line_without_newline() -> None:
    """Bad lines are answered on the wire (framing.py) and never reach the server; blank lines are skipped."""
    incoming = b"\n".join([_request(1), b"{not json", b"", _request(2) + b"\r", _request(3)])  # no final newline
    received, written = await _run(incoming, [])
    assert all(isinstance(x, SessionMessage) for x in received)
    ids = [x.message.id for x in received if isinstance(x, SessionMessage)]  # type: ignore[union-attr]
    assert ids == [1, 2, 3]
    answers = [json.loads(line) for line in written.splitlines()]
    assert len(answers) == 1 and answers[0]["id"] is None and answers[0]["error"]["code"] == -32700
    assert "not valid JSON" in answers[0]["error"]["message"]


async def test_a_line_over_the_size_cap_is_dropped_and_answered() -> None:
    from mcprelay.gateway.serving import framing

    huge = b'{"jsonrpc": "2.0", "id": 9, "method": "ping", "params": {"x": "' + b"y" * (framing.MAX_MESSAGE_BYTES + 10)
    received, written = await _run(huge + b'"}}\n' + _request(2) + b"\n", [])
    assert [x.message.id for x in received] == [2]  # type: ignore[union-attr]
    (answer,) = [json.loads(line) for line in written.splitlines()]
    assert answer["id"] is None and answer["error"]["code"] == -32600
    size = len(huge) + 3
    assert f"message too large: {size:,} bytes" in answer["error"]["message"]
    assert "at most 4,194,304 bytes (4 MiB)" in answer["error"]["message"]


async def test_large_messages_both_ways() -> None:
    big = "x" * 3_000_000  # far larger than a pipe buffer or a read chunk
    incoming = _request(1, big) + b"\n" + _request(2) + b"\n"
    reply = SessionMessage(types.JSONRPCResponse(jsonrpc="2.0", id=7, result={"text": big}))
    received, written = await _run(incoming, [reply, reply])
    assert len(received) == 2 and all(isinstance(x, SessionMessage) for x in received)
    first = received[0]
    assert isinstance(first, SessionMessage)
    assert first.message.params["text"] == big  # type: ignore[union-attr]
    lines = written.split(b"\n")
    assert lines[-1] == b"" and len(lines) == 3
    assert all(json.loads(line)["result"]["text"] == big for line in lines[:2])


async def test_eof_at_once_ends_the_read_stream() -> None:
    received, written = await _run(b"", [])
    assert received == [] and written == b""


def test_serve_stdio_streams_over_real_pipes_restores_the_descriptors() -> None:
    """In a child whose stdin/stdout are pipes: echo each request id back, and stray prints go to stderr."""
    script = textwrap.dedent(
        """
        import os, sys, anyio, mcp_types as types
        from mcp.shared.message import SessionMessage
        from mcprelay.gateway.serving.stdio import serve_stdio_streams

        async def main():
            async with serve_stdio_streams() as (read, write):
                print("stray", flush=True)  # fd 1 is stderr while serving
                async with write:
                    async for item in read:
                        if isinstance(item, Exception):
                            continue
                        await write.send(SessionMessage(
                            types.JSONRPCResponse(jsonrpc="2.0", id=item.message.id, result={})))
            os.write(1, b"restored\\n")  # fd 1 is the wire again, and blocking

        anyio.run(main)
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", script], input=_request(1) + b"\nnope\n" + _request(2) + b"\n",
        capture_output=True, timeout=60, check=True,
    )
    lines = proc.stdout.splitlines()
    answers = [json.loads(line) for line in lines[:3]]
    assert sorted(a["id"] for a in answers if "result" in a) == [1, 2]
    assert [a["error"]["code"] for a in answers if "error" in a] == [-32700]  # "nope", answered by framing
    assert lines[3:] == [b"restored"]
    assert b"stray" in proc.stderr
