"""A loopback gateway serves only the user who started it (issue 10, item 1): the owner key.

Real ``serve --listen`` processes, a real stdio upstream and the strict OAuth servers; the other
user is a real process under another uid (``setpriv --reuid=65534``, i.e. ``nobody``), which can
reach 127.0.0.1 like any local user but cannot read the home (0700) that holds the key.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx2
import pytest

from tests.conftest import Servers, log_events
from tests.integration.gateway_helpers import (
    api_client,
    auth_headers,
    http_gateway,
    mcp_client,
    mcprelay,
    stdio_server,
    text,
    wait_for_tools,
    write_config,
)

pytestmark = [pytest.mark.integration, pytest.mark.anyio]

NOBODY = 65534

#: What the other user tries, with only the standard library: every door of the listener, and the key file.
ATTEMPTS = textwrap.dedent(
    """
    import json, sys, urllib.request, urllib.error
    base, key_file = sys.argv[1], sys.argv[2]
    mcp = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream"}
    init = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "intruder", "version": "1"}}}
    call = {"jsonrpc": "2.0", "id": 2, "method": "tools/call",
            "params": {"name": "a__sleep", "arguments": {"seconds": 0}}}
    attempts = [
        ("GET", "/api/v1/servers", None, {}),
        ("GET", "/api/v1/tools", None, {}),
        ("GET", "/api/v1/activity", None, {}),
        ("POST", "/api/v1/servers/b/login", b"", {}),
        ("POST", "/mcp", json.dumps(init).encode(), mcp),
        ("POST", "/mcp", json.dumps(call).encode(), {**mcp, "MCP-Protocol-Version": "2025-06-18"}),
        ("POST", "/mcp", json.dumps(call).encode(), {**mcp, "Authorization": "Bearer guess"}),
        ("GET", "/mcp", None, {"Accept": "text/event-stream"}),
        ("GET", "/api/v1/openapi.json", None, {}),
    ]
    results = []
    for method, path, body, headers in attempts:
        request = urllib.request.Request(base + path, data=body, method=method, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                results.append({"path": path, "status": response.status, "body": response.read(2000).decode()})
        except urllib.error.HTTPError as exc:
            results.append({"path": path, "status": exc.code, "body": exc.read(2000).decode(),
                            "www_authenticate": exc.headers.get("WWW-Authenticate")})
    try:
        open(key_file).read()
        key = "readable"
    except OSError as exc:
        key = type(exc).__name__
    print(json.dumps({"uid": __import__("os").getuid(), "results": results, "key_file": key}))
    """
)


def other_user_python() -> list[str]:
    """A command running Python as ``nobody``, or skip: root, ``setpriv`` and an interpreter nobody may run."""
    if sys.platform == "win32" or os.geteuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("needs root and setpriv to run a process as another user (Linux)")
    setpriv = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"]
    for python in (sys.executable, "/usr/bin/python3", shutil.which("python3") or ""):
        if python and subprocess.run([*setpriv, python, "-I", "-S", "-c", "pass"], capture_output=True).returncode == 0:
            return [*setpriv, python, "-I", "-S"]
    pytest.skip("no Python interpreter that uid 65534 may run")


def as_other_user(base: str, home: Path) -> dict[str, Any]:
    result = subprocess.run(
        [*other_user_python(), "-c", ATTEMPTS, base, str(home / "gateway.key")],
        capture_output=True, text=True, timeout=60, cwd="/",
    )
    assert result.returncode == 0, result.stderr
    outcome: dict[str, Any] = json.loads(result.stdout)
    assert outcome["uid"] == NOBODY
    return outcome


async def test_another_uid_gets_401_everywhere_and_runs_nothing(
    strict_servers: Callable[..., Servers], tmp_path: Path
) -> None:
    servers = strict_servers()
    home, config = tmp_path / "home", tmp_path / "config.json"
    write_config(config, {"a": stdio_server(), "b": {"url": servers.mcp_url}})
    async with http_gateway(home, config) as base:
        async with mcp_client(base, home, mode="legacy") as client:
            await wait_for_tools(client, {"a__sleep"})
        outcome = as_other_user(base, home)
        statuses = {(r["path"], r["status"]) for r in outcome["results"]}
        assert {status for _path, status in statuses} == {401}, outcome["results"]
        for row in outcome["results"]:
            assert row["www_authenticate"] == "Bearer"
            assert "authorization_url" not in row["body"] and "a__sleep" not in row["body"]
        assert outcome["key_file"] == "PermissionError"  # the key is in the owner's 0700 home

        # Nothing ran: no tool (its own counter says so), no login (no registration, no authorization request),
        # nothing in the activity log.
        assert servers.auth.counters.registrations == 0 and servers.auth.counters.authorize_requests == 0
        async with mcp_client(base, home, mode="legacy") as client:
            stats = await client.call_tool("a__sleep_stats", {})
            assert stats.structured_content == {"now": 0, "peak": 0, "total": 0}
        activity = mcprelay(home, config, "activity", "list", "--json")
        assert activity.returncode == 0 and "sleep" not in activity.stdout.replace("sleep_stats", "")

        # The owner, with the key, gets everything the other user was refused.
        async with api_client(base, home, timeout=30) as api:
            assert (await api.get("/servers")).status_code == 200
            login = await api.post("/servers/b/login")
            assert login.status_code == 202 and login.json()["authorization_url"]
        assert servers.auth.counters.registrations == 1

        # The CLI finds the running gateway and presents the key by itself.
        listed = mcprelay(home, config, "upstream", "list", "--json")
        assert listed.returncode == 0, listed.stderr
        assert {row["name"] for row in json.loads(listed.stdout)["servers"]} == {"a", "b"}

    key = (home / "gateway.key").read_text().strip()
    assert stat.S_IMODE((home / "gateway.key").stat().st_mode) == 0o600
    assert stat.S_IMODE(home.stat().st_mode) == 0o700
    assert key not in (home / "logs" / "mcprelay.log").read_text()


async def test_owner_only_false_is_an_explicit_warned_opt_out(tmp_path: Path) -> None:
    home, config = tmp_path / "home", tmp_path / "config.json"
    write_config(config, {"a": stdio_server()}, owner_only=False)
    async with http_gateway(home, config) as base:
        outcome = as_other_user(base, home)
        assert {r["path"]: r["status"] for r in outcome["results"]}["/api/v1/servers"] == 200
    assert not (home / "gateway.key").exists()
    warned = [e for e in log_events(home) if e["event"] == "listener_open_to_all_local_users"]
    assert warned and warned[0]["level"] == "warning"


async def test_the_owner_key_and_an_api_key(tmp_path: Path) -> None:
    """Without api_key the owner key is required; with api_key set, that is the key (and the owner key is not)."""
    home, config = tmp_path / "home", tmp_path / "config.json"
    write_config(config, {"a": stdio_server()})
    async with http_gateway(home, config) as base:
        assert httpx2.get(f"{base}/api/v1/servers", timeout=10).status_code == 401
        wrong = httpx2.get(f"{base}/api/v1/servers", headers={"Authorization": "Bearer nope"}, timeout=10)
        assert wrong.status_code == 401 and wrong.json()["details"]["reason"] == "api_key_invalid"
        assert "mcprelay client-config" in wrong.json()["suggestion"]
        owner = auth_headers(home)
        assert httpx2.get(f"{base}/api/v1/servers", headers=owner, timeout=10).status_code == 200
        mcp = httpx2.post(f"{base}/mcp", json={}, headers={"Accept": "application/json, text/event-stream"}, timeout=10)
        assert mcp.status_code == 401 and mcp.json()["jsonrpc"] == "2.0"
    first = owner["Authorization"]
    # The key survives restarts: clients configured once keep working.
    async with http_gateway(home, config) as base:
        assert httpx2.get(f"{base}/api/v1/servers", headers={"Authorization": first}, timeout=10).status_code == 200

    write_config(config, {"a": stdio_server()}, api_key="configured-key-0123456789")
    async with http_gateway(home, config) as base:
        assert httpx2.get(f"{base}/api/v1/servers", headers={"Authorization": first}, timeout=10).status_code == 401
        configured = {"Authorization": "Bearer configured-key-0123456789"}
        assert httpx2.get(f"{base}/api/v1/servers", headers=configured, timeout=10).status_code == 200
        listed = mcprelay(home, config, "tools", "list", "--json")  # the CLI presents the configured key
        assert listed.returncode == 0, listed.stderr


async def test_client_config_prints_what_a_client_pastes_and_it_works(tmp_path: Path) -> None:
    home, config = tmp_path / "home", tmp_path / "config.json"
    write_config(config, {"a": stdio_server()})
    before = mcprelay(home, config, "client-config", "--json")  # before the first start: the key is created
    assert before.returncode == 0, before.stderr
    shown = json.loads(before.stdout)
    assert shown["running"] is False and shown["url"] == "http://127.0.0.1:8080/mcp"
    async with http_gateway(home, config) as base:
        out = mcprelay(home, config, "client-config", "--json")
        data = json.loads(out.stdout)
        assert data["running"] is True and data["url"] == f"{base}/mcp"
        assert data["headers"] == shown["headers"] == auth_headers(home)
        cursor = data["clients"]["cursor"]["mcpServers"]["mcprelay"]
        vscode = data["clients"]["vscode"]["servers"]["mcprelay"]
        assert vscode == {"type": "http", **cursor}
        desktop = data["clients"]["claude-desktop"]["mcpServers"]["mcprelay"]
        assert shown["headers"]["Authorization"] not in " ".join(desktop["args"])  # not in any process's argv
        assert desktop["env"]["MCPRELAY_AUTHORIZATION"] == shown["headers"]["Authorization"]

        # What the cursor shape says is enough to use the gateway.
        from mcp.client.client import Client
        from mcp.client.streamable_http import streamable_http_client

        async with httpx2.AsyncClient(headers=cursor["headers"]) as http, Client(
            streamable_http_client(cursor["url"], http_client=http), mode="legacy"
        ) as client:
            await wait_for_tools(client, {"a__echo"})
            assert text(await client.call_tool("a__echo", {"text": "pasted"})) == "pasted"

        plain = mcprelay(home, config, "client-config", "--client", "vscode")
        assert plain.returncode == 0 and json.loads(plain.stdout) == data["clients"]["vscode"]
        assert ".vscode/mcp.json" in plain.stderr
    bad = mcprelay(home, config, "client-config", "--client", "emacs")
    assert bad.returncode == 2 and "cursor" in bad.stderr
