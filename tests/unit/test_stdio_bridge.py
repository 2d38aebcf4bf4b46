"""The conformance harness's HTTP↔stdio bridge: id rewriting for requests that share one child."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

SUB = "io.modelcontextprotocol/subscriptionId"


def _load(name: str) -> ModuleType:
    path = Path(__file__).resolve().parents[2] / ".ci" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"ci_{name}", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def bridge() -> ModuleType:
    return _load("stdio_bridge")


def request(request_id: object, method: str = "tools/call", **meta: object) -> dict[str, object]:
    params: dict[str, object] = {
        "name": "t",
        "_meta": {"io.modelcontextprotocol/protocolVersion": "2026-07-28", **meta},
    }
    return {"jsonrpc": "2.0", "id": request_id, "method": method, "params": params}


def test_the_same_client_id_from_two_posts_gets_two_child_ids_and_each_answer_finds_its_owner(
    bridge: ModuleType,
) -> None:
    ids = bridge.IdMap()
    first, a = ids.outbound("post-a", request(1))
    second, b = ids.outbound("post-b", request(1))
    assert first["id"] != second["id"]
    assert first["params"] == request(1)["params"]  # nothing else is touched

    owner, restored, final = ids.inbound({"jsonrpc": "2.0", "id": second["id"], "result": {"ok": "b"}})
    assert owner is b and owner.owner == "post-b" and final
    assert restored == {"jsonrpc": "2.0", "id": 1, "result": {"ok": "b"}}
    owner, restored, final = ids.inbound(
        {"jsonrpc": "2.0", "id": first["id"], "error": {"code": -32602, "message": "x"}}
    )
    assert owner is a and restored["id"] == 1 and final
    assert len(ids) == 0


def test_string_and_integer_client_ids_come_back_with_their_own_type(bridge: ModuleType) -> None:
    ids = bridge.IdMap()
    out, _ = ids.outbound("p", request("1"))
    _, restored, _ = ids.inbound({"jsonrpc": "2.0", "id": out["id"], "result": {}})
    assert restored["id"] == "1"


def test_progress_tokens_are_rewritten_too_and_restored_on_progress(bridge: ModuleType) -> None:
    ids = bridge.IdMap()
    a_out, _ = ids.outbound("post-a", request(7, progressToken="progress-test-1"))
    b_out, b = ids.outbound("post-b", request(8, progressToken="progress-test-1"))
    a_token = a_out["params"]["_meta"]["progressToken"]
    b_token = b_out["params"]["_meta"]["progressToken"]
    assert a_token != b_token != "progress-test-1"

    progress = {
        "jsonrpc": "2.0",
        "method": "notifications/progress",
        "params": {"progressToken": b_token, "progress": 50},
    }
    owner, restored, final = ids.inbound(progress)
    assert owner is b and not final
    assert restored["params"] == {"progressToken": "progress-test-1", "progress": 50}


def test_listen_frames_route_by_subscription_id_and_carry_the_clients_id(bridge: ModuleType) -> None:
    ids = bridge.IdMap()
    out, listen = ids.outbound("stream", request(42, method="subscriptions/listen"))
    ack = {
        "jsonrpc": "2.0",
        "method": "notifications/subscriptions/acknowledged",
        "params": {"_meta": {SUB: out["id"]}},
    }
    owner, restored, final = ids.inbound(ack)
    assert owner is listen and not final
    assert restored["params"]["_meta"][SUB] == 42
    change = {"jsonrpc": "2.0", "method": "notifications/tools/list_changed", "params": {"_meta": {SUB: out["id"]}}}
    assert ids.inbound(change)[1]["params"]["_meta"][SUB] == 42
    closing = {"jsonrpc": "2.0", "id": out["id"], "result": {"_meta": {SUB: out["id"]}, "resultType": "complete"}}
    owner, restored, final = ids.inbound(closing)
    assert owner is listen and final
    assert restored == {"jsonrpc": "2.0", "id": 42, "result": {"_meta": {SUB: 42}, "resultType": "complete"}}


def test_messages_that_name_no_pending_request_route_to_no_one(bridge: ModuleType) -> None:
    ids = bridge.IdMap()
    out, _ = ids.outbound("p", request(1))
    log = {"jsonrpc": "2.0", "method": "notifications/message", "params": {"level": "info", "data": "x"}}
    assert ids.inbound(log) == (None, log, False)
    stale = {"jsonrpc": "2.0", "id": out["id"] + 100, "result": {}}
    assert ids.inbound(stale) == (None, stale, False)
    stranger = {
        "jsonrpc": "2.0",
        "method": "notifications/progress",
        "params": {"progressToken": "nope", "progress": 1},
    }
    assert ids.inbound(stranger)[0] is None


def test_a_forgotten_request_no_longer_routes(bridge: ModuleType) -> None:
    ids = bridge.IdMap()
    out, pending = ids.outbound("p", request(1, progressToken=3))
    ids.forget(pending)
    assert ids.inbound({"jsonrpc": "2.0", "id": out["id"], "result": {}})[0] is None
    token = out["params"]["_meta"]["progressToken"]
    progress = {"jsonrpc": "2.0", "method": "notifications/progress", "params": {"progressToken": token, "progress": 1}}
    assert ids.inbound(progress)[0] is None
