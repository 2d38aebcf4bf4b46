"""Which lines the stdio fast path leaves to the SDK server (the taken ones are end to end in
``tests/integration/test_gateway_passthrough.py``), and the result helpers it relies on."""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any, cast

import anyio
import mcp_types as types
import pytest

from mcprelay.gateway.catalog.eras import without_upstream_stamp
from mcprelay.gateway.serving.fastpath import StdioFastPath
from mcprelay.gateway.serving.server import Downstream

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def _downstream(mode: str = "aggregate") -> Downstream:
    """Only the routing mode is read before a line is taken; a refused line never reaches the gateway."""
    return cast(Downstream, SimpleNamespace(gateway=SimpleNamespace(config=SimpleNamespace(routing_mode=mode))))


def _line(message: dict[str, Any]) -> bytes:
    return json.dumps(message).encode()


def _call(**params: Any) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "a__echo", **params}}


def _initialized(passthrough: StdioFastPath, version: str) -> None:
    result = {"protocolVersion": version, "capabilities": {}, "serverInfo": {"name": "mcprelay", "version": "0"}}
    passthrough.sent(types.JSONRPCResponse(jsonrpc="2.0", id=0, result=result))


async def _hosted(passthrough: StdioFastPath, check: Any) -> None:
    async def write(data: bytes) -> None:
        raise AssertionError(f"nothing may be written for a refused line: {data!r}")

    async with anyio.create_task_group() as tg:
        await tg.start(passthrough.run, write)
        check()
        tg.cancel_scope.cancel()


@pytest.mark.parametrize(
    "message",
    [
        {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {"cursor": "tools/call"}},
        {"jsonrpc": "2.0", "method": "tools/call", "params": {"name": "a__echo"}},  # a notification
        {"jsonrpc": "2.0", "id": True, "method": "tools/call", "params": {"name": "a__echo"}},
        {"jsonrpc": "2.0", "id": None, "method": "tools/call", "params": {"name": "a__echo"}},
        {"jsonrpc": "1.0", "id": 1, "method": "tools/call", "params": {"name": "a__echo"}},
        {"jsonrpc": "2.0", "id": 1, "method": "tools/call"},
        _call(arguments=["a", "list"]),
        _call(arguments={"x": 1}, task={"ttl": 1000}),  # task-augmented: the SDK server's
        _call(inputResponses={}),  # 2026 multi-round-trip: the SDK server's
        _call(_meta="not an object"),
        {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": 7}},
    ],
)
async def test_unusual_calls_go_to_the_sdk_server(message: dict[str, Any]) -> None:
    passthrough = StdioFastPath(_downstream())
    _initialized(passthrough, "2025-06-18")
    await _hosted(passthrough, lambda: _assert_refused(passthrough, _line(message)))


_STAMP = {
    "io.modelcontextprotocol/protocolVersion": "2026-07-28",
    "io.modelcontextprotocol/clientCapabilities": {},
    "io.modelcontextprotocol/clientInfo": {"name": "t", "version": "1"},
}


async def test_each_era_is_taken_only_in_its_own_shape() -> None:
    plain = _line(_call(arguments={"text": "x"}))
    stamped = _line(_call(arguments={"text": "x"}, _meta=_STAMP))

    # No handshake yet: an unstamped call is the SDK server's (it refuses calls before initialize).
    before = StdioFastPath(_downstream())
    await _hosted(before, lambda: _assert_refused(before, plain))

    # After a handshake, a call stamped with a 2026-era version is not a handshake-era call.
    handshake = StdioFastPath(_downstream())
    _initialized(handshake, "2025-11-25")
    await _hosted(handshake, lambda: _assert_refused(handshake, stamped))

    # Without a handshake, a stamp the SDK's ladder rejects (unknown version, missing capabilities) is
    # the SDK server's to explain.
    for meta in (
        {**_STAMP, "io.modelcontextprotocol/protocolVersion": "2099-01-01"},
        {k: v for k, v in _STAMP.items() if not k.endswith("clientCapabilities")},
    ):
        modern = StdioFastPath(_downstream())
        await _hosted(modern, lambda p=modern, m=meta: _assert_refused(p, _line(_call(arguments={}, _meta=m))))

    search = StdioFastPath(_downstream("search"))
    _initialized(search, "2025-11-25")
    await _hosted(search, lambda: _assert_refused(search, plain))


async def test_a_cancellation_for_a_request_not_in_flight_here_goes_to_the_sdk_server() -> None:
    passthrough = StdioFastPath(_downstream())
    _initialized(passthrough, "2025-06-18")
    cancel = _line({"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 1}})
    await _hosted(passthrough, lambda: _assert_refused(passthrough, cancel))


def _assert_refused(passthrough: StdioFastPath, line: bytes) -> None:
    assert passthrough.take(line) is False
    assert passthrough.answered == 0


def test_the_upstreams_server_info_stamp_is_removed_and_other_meta_kept() -> None:
    stamp = {"io.modelcontextprotocol/serverInfo": {"name": "up", "version": "1"}}
    assert without_upstream_stamp({"content": [], "_meta": stamp}) == {"content": []}
    kept = without_upstream_stamp({"content": [], "_meta": {**stamp, "trace": "t1"}})
    assert kept == {"content": [], "_meta": {"trace": "t1"}}
    plain = {"content": [], "_meta": {"trace": "t1"}}
    assert without_upstream_stamp(plain) is plain
