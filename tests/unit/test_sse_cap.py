"""The per-event cap of the legacy SSE transport (``inbound._CappedSseStream``), on byte streams cut every way."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import pytest

from mcprelay.inbound import SYNTHESIZED_ERROR_KEY, Liveness, ResultTooLarge, _CappedSseStream

pytestmark = pytest.mark.anyio

CAP = 1000


class Chunks:
    def __init__(self, data: bytes, size: int) -> None:
        self.data, self.size = data, size

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for start in range(0, len(self.data), self.size):
            yield self.data[start:start + self.size]

    async def aclose(self) -> None:
        pass


async def run(data: bytes, size: int, liveness: Liveness | None = None) -> list[bytes]:
    out = []
    async for piece in _CappedSseStream(Chunks(data, size), CAP, liveness or Liveness()):
        out.append(piece)
    return out


def event(payload: dict[str, object] | str, newline: bytes = b"\n") -> bytes:
    data = payload if isinstance(payload, str) else json.dumps(payload)
    return b"event: message" + newline + b"data: " + data.encode() + newline + newline


def messages(out: list[bytes]) -> list[dict[str, object]]:
    """The JSON-RPC messages a reader of the passed-on stream gets (the events' data)."""
    found = []
    for raw in b"".join(out).replace(b"\r\n", b"\n").split(b"\n\n"):
        for line in raw.split(b"\n"):
            if line.startswith(b"data: ") and line[6:].startswith(b"{"):
                found.append(json.loads(line[6:]))
    return found


CHUNK_SIZES = [1, 2, 3, 5, 64, 999, 1000, 1001, 100_000]


@pytest.mark.parametrize("size", CHUNK_SIZES)
@pytest.mark.parametrize("newline", [b"\n", b"\r\n"], ids=["lf", "crlf"])
async def test_events_within_the_cap_pass_unchanged_and_whole(size: int, newline: bytes) -> None:
    stream = (b"event: endpoint" + newline + b"data: /messages/?session_id=1" + newline + newline
              + event({"jsonrpc": "2.0", "id": 1, "result": {"text": "x" * 900}}, newline)
              + b": keep-alive" + newline + newline
              + event({"jsonrpc": "2.0", "method": "notifications/message", "params": {}}, newline))
    out = await run(stream, size)
    assert b"".join(out) == stream
    assert all(piece.endswith(newline + newline) for piece in out)  # never half an event


@pytest.mark.parametrize("size", CHUNK_SIZES)
@pytest.mark.parametrize("newline", [b"\n", b"\r\n"], ids=["lf", "crlf"])
@pytest.mark.parametrize("order", ["python", "typescript"])
async def test_an_event_over_the_cap_becomes_an_error_for_its_request(size: int, newline: bytes, order: str) -> None:
    big = "y" * 5000
    over = ({"jsonrpc": "2.0", "id": 7, "result": {"text": big}} if order == "python"
            else {"result": {"text": big}, "jsonrpc": "2.0", "id": 7})
    stream = (event({"jsonrpc": "2.0", "id": 6, "result": {}}, newline) + event(over, newline)
              + event({"jsonrpc": "2.0", "id": 8, "result": {"ok": True}}, newline))
    liveness = Liveness()
    before = liveness.last_bytes
    got = messages(await run(stream, size, liveness))
    assert [m.get("id") for m in got] == [6, 7, 8]
    error = got[1]["error"]
    assert isinstance(error, dict) and "max_result_bytes" in error["message"]
    assert error["data"][SYNTHESIZED_ERROR_KEY] is True and error["data"]["limit"] == CAP
    assert error["data"]["size"] > CAP
    assert got[2] == {"jsonrpc": "2.0", "id": 8, "result": {"ok": True}}
    assert liveness.last_bytes >= before


@pytest.mark.parametrize("size", [1, 7, 4096])
async def test_an_oversized_event_whose_id_does_not_show_ends_the_stream(size: int) -> None:
    middle = {"jsonrpc": "2.0", "result": {"a": "z" * 3000, "id_is_elsewhere": True}, "extra": "q" * 600, "id": 3,
              "more": "w" * 600}
    stream = event({"jsonrpc": "2.0", "id": 1, "result": {}}) + event(middle)
    with pytest.raises(ResultTooLarge):
        await run(stream, size)
