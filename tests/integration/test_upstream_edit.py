"""``mcprelay upstream add | remove | enable | disable | restart``: real processes, real config files, a gateway."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest

from tests.integration.gateway_helpers import api_client, cli_env, http_gateway, mcp_client, mcprelay, text

pytestmark = pytest.mark.integration

STDIO = [sys.executable, "-m", "mcprelay.testing.stdio_server"]


def run(home: Path, cfg: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return mcprelay(home, cfg, "upstream", *args)


def test_add_to_the_keyed_shape_keeps_everything_else(tmp_path: Path) -> None:
    home, cfg = tmp_path / "home", tmp_path / "config.json"
    original = (
        '{\n    "routing_mode": "aggregate",\n    "mcpServers": {\n        "one": {"url": "https://one.example/mcp",'
        ' "working_dir": "/x"}\n    },\n    "tray_endpoint": "keep me",\n    "listen": "127.0.0.1:8765"\n}\n'
    )
    cfg.write_bytes(b"\xef\xbb\xbf" + original.encode())
    cfg.chmod(0o640)
    added = run(home, cfg, "add", "two", "https://two.example/mcp", "--header", "X-Team: core")
    assert added.returncode == 0, added.stderr
    assert "added two: streamable HTTP https://two.example/mcp" in added.stdout
    raw = cfg.read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf") and raw.endswith(b"}\n")
    doc = json.loads(raw[3:])
    assert list(doc) == ["routing_mode", "mcpServers", "tray_endpoint", "listen"]  # key order kept
    assert doc["mcpServers"] == {
        "one": {"url": "https://one.example/mcp", "working_dir": "/x"},
        "two": {"url": "https://two.example/mcp", "headers": {"X-Team": "core"}},
    }
    assert '\n    "mcpServers"' in raw.decode("utf-8-sig")  # the file's 4-space indentation
    assert stat.S_IMODE(cfg.stat().st_mode) == 0o640  # the file's own mode
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_add_to_the_list_shape_a_command_after_the_double_dash(tmp_path: Path) -> None:
    home, cfg = tmp_path / "home", tmp_path / "config.json"
    cfg.write_text(json.dumps({"mcpServers": [{"name": "one", "url": "https://one.example/mcp"}]}))
    added = run(home, cfg, "add", "files", "--env", "LOG_LEVEL=debug", "--", "npx", "-y", "server-fs", "--root", "/")
    assert added.returncode == 0, added.stderr
    servers = json.loads(cfg.read_text())["mcpServers"]
    assert servers[1] == {"name": "files", "command": "npx", "args": ["-y", "server-fs", "--root", "/"],
                          "env": {"LOG_LEVEL": "debug"}}
    listed = mcprelay(home, cfg, "auth", "status", "--json")
    assert [r["server"] for r in json.loads(listed.stdout)] == ["one", "files"]


def test_a_new_config_file_is_private(tmp_path: Path) -> None:
    home, cfg = tmp_path / "home", tmp_path / "conf" / "mcprelay" / "config.json"
    assert run(home, cfg, "add", "one", "https://one.example/mcp").returncode == 0
    assert stat.S_IMODE(cfg.stat().st_mode) == 0o600
    assert stat.S_IMODE(cfg.parent.stat().st_mode) == 0o700
    assert json.loads(cfg.read_text()) == {"mcpServers": {"one": {"url": "https://one.example/mcp"}}}


def test_refusals_write_nothing(tmp_path: Path) -> None:
    home, cfg = tmp_path / "home", tmp_path / "config.json"
    cfg.write_text(json.dumps({"mcpServers": {"one": {"url": "https://one.example/mcp"}}}))
    before = cfg.read_bytes()
    cases = [
        (["add", "one", "https://other.example/mcp"], "already configured", 2),
        (["add", "two__x", "https://two.example/mcp"], "no '__'", 2),
        (["add", "two", "ftp://two.example"], "not an http:// or https:// URL", 2),
        (["add", "two", "https://two.example/mcp", "--header", "novalue"], "is not KEY=VALUE", 2),
        (["add", "two"], "say what to add", 2),
        (["remove", "nope"], "no server named 'nope'", 2),
        (["disable", "nope"], "no server named 'nope'", 2),
    ]
    for args, message, code in cases:
        result = run(home, cfg, *args)
        assert result.returncode == code and message in result.stderr, (args, result.stderr)
        assert cfg.read_bytes() == before, args
    # The same entry again is no change at all.
    same = run(home, cfg, "add", "one", "https://one.example/mcp")
    assert same.returncode == 0 and same.stdout.startswith("unchanged one")
    replaced = run(home, cfg, "add", "one", "https://other.example/mcp", "--replace")
    assert replaced.returncode == 0 and "replaced one" in replaced.stdout
    assert json.loads(cfg.read_text())["mcpServers"]["one"] == {"url": "https://other.example/mcp"}
    # "gateway" is a name like any other (its status file keeps apart from the run file).
    named = run(home, cfg, "add", "gateway", "https://two.example/mcp")
    assert named.returncode == 0 and "gateway" in json.loads(cfg.read_text())["mcpServers"], named.stderr


def test_a_broken_config_is_not_edited(tmp_path: Path) -> None:
    home, cfg = tmp_path / "home", tmp_path / "config.json"
    cfg.write_text('{"mcpServers": {"one": {"url": "https://one.example/mcp", "enabeld": false}}}')
    before = cfg.read_bytes()
    result = run(home, cfg, "add", "two", "https://two.example/mcp")
    assert result.returncode == 2 and "enabeld" in result.stderr and "unknown field" in result.stderr
    assert cfg.read_bytes() == before


def test_a_symlinked_config_stays_a_link(tmp_path: Path) -> None:
    home = tmp_path / "home"
    target = tmp_path / "dotfiles" / "mcprelay.json"
    target.parent.mkdir()
    target.write_text(json.dumps({"mcpServers": {}}))
    link = tmp_path / "config.json"
    link.symlink_to(target)
    assert run(home, link, "add", "one", "https://one.example/mcp").returncode == 0
    assert link.is_symlink() and "one" in json.loads(target.read_text())["mcpServers"]


def test_enable_disable_and_remove(tmp_path: Path) -> None:
    home, cfg = tmp_path / "home", tmp_path / "config.json"
    cfg.write_text(json.dumps({"mcpServers": {"one": {"url": "https://one.example/mcp"}}}))
    assert run(home, cfg, "disable", "one").stdout.startswith("disabled one")
    assert json.loads(cfg.read_text())["mcpServers"]["one"]["enabled"] is False
    assert run(home, cfg, "disable", "one").stdout.startswith("unchanged one")
    assert run(home, cfg, "enable", "one").stdout.startswith("enabled one")
    assert json.loads(cfg.read_text())["mcpServers"]["one"] == {"url": "https://one.example/mcp"}
    assert run(home, cfg, "remove", "one", "--json").returncode == 0
    assert json.loads(cfg.read_text())["mcpServers"] == {}


def test_concurrent_adds_lose_nothing(tmp_path: Path) -> None:
    home, cfg = tmp_path / "home", tmp_path / "config.json"
    cfg.write_text(json.dumps({"mcpServers": {}}))
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "mcprelay", "--home", str(home), "--config", str(cfg), "upstream", "add",
             f"s{i}", f"https://s{i}.example/mcp"], env=cli_env(home), stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE, text=True,
        )
        for i in range(6)
    ]
    for proc in procs:
        assert proc.wait(timeout=60) == 0, proc.stderr.read() if proc.stderr else ""
        if proc.stderr:
            proc.stderr.close()
    assert sorted(json.loads(cfg.read_text())["mcpServers"]) == [f"s{i}" for i in range(6)]


def test_a_secret_looking_env_value_earns_a_warning(tmp_path: Path) -> None:
    home, cfg = tmp_path / "home", tmp_path / "config.json"
    result = run(home, cfg, "add", "gh", "--env", "GITHUB_TOKEN=ghp_0123456789abcdefghijABCDEFGHIJ012345", "--",
                 "docker", "run", "-i", "ghcr.io/github/github-mcp-server")
    assert result.returncode == 0
    assert "env GITHUB_TOKEN of gh looks like a secret" in result.stderr
    assert "mcprelay secrets set gh-github-token" in result.stderr
    assert "--env 'GITHUB_TOKEN=${keyring:gh-github-token}'" in result.stderr
    quiet = run(home, cfg, "add", "gh2", "--env", "GITHUB_TOKEN=${keyring:gh-token}", "--", "docker", "run")
    assert quiet.returncode == 0 and "warning" not in quiet.stderr


async def _server_state(base: str, home: Path, name: str) -> dict[str, Any] | None:
    async with api_client(base, home) as api:
        servers = (await api.get("/servers")).json()["servers"]
    return next((s for s in servers if s["name"] == name), None)


async def _wait_for(base: str, home: Path, name: str, states: set[str | None], timeout: float = 30) -> None:
    with anyio.fail_after(timeout):
        while True:
            row = await _server_state(base, home, name)
            if (row["state"] if row else None) in states:
                return
            await anyio.sleep(0.2)


@pytest.mark.anyio
async def test_a_running_gateway_applies_edits_and_restarts(tmp_path: Path) -> None:
    home, cfg = tmp_path / "home", tmp_path / "config.json"
    cfg.write_text(json.dumps({"token_store": "file", "mcpServers": {}}))
    async with http_gateway(home, cfg) as base:
        added = run(home, cfg, "add", "local", "--", *STDIO)
        assert added.returncode == 0 and "the running gateway" in added.stdout
        await _wait_for(base, home, "local", {"ready"})
        async with mcp_client(base, home) as client:
            first_pid = text(await client.call_tool("local__pid", {}))
            restarted = run(home, cfg, "restart", "local")
            assert restarted.returncode == 0 and "restarting in the running gateway" in restarted.stdout
            await anyio.sleep(0.5)
            await _wait_for(base, home, "local", {"ready"})
            second_pid = text(await client.call_tool("local__pid", {}))
            assert first_pid != second_pid  # a new process
            assert os.path.exists(f"/proc/{first_pid}") is False or sys.platform != "linux"
        assert run(home, cfg, "disable", "local").returncode == 0
        await _wait_for(base, home, "local", {"disabled"})
        assert run(home, cfg, "remove", "local").returncode == 0
        await _wait_for(base, home, "local", {None})
        unknown = run(home, cfg, "restart", "nope")
        assert unknown.returncode == 2 and "no server named 'nope'" in unknown.stderr
    idle = run(home, cfg, "add", "again", "https://x.example/mcp")
    assert "the running gateway" not in idle.stdout
    nothing = run(home, cfg, "restart", "again")
    assert nothing.returncode == 0 and "no gateway is running" in nothing.stdout
