"""The CLI as users and scripts run it: real processes, the real config file, exit codes of the contract."""

from __future__ import annotations

import json
import os
import shlex
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import Servers


def script(path: Path, body: str) -> str:
    """``BROWSER`` names one program (``webbrowser`` does not split it), so wrap commands in a script."""
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(0o700)
    return str(path)


def run(
    home: Path, config: Path, *args: str, browser: str | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    if browser is None:
        home.parent.mkdir(parents=True, exist_ok=True)
        browser = script(
            home.parent / "follow.sh", f'exec {shlex.quote(sys.executable)} -m mcprelay.testing.browser "$1"'
        )
    return subprocess.run(
        [sys.executable, "-m", "mcprelay", "--home", str(home), "--config", str(config), *args],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "BROWSER": browser, "MCPRELAY_HEADLESS": ""},
    )


def config_for(tmp: Path, url: str, **oauth: object) -> Path:
    path = tmp / "config.json"
    server: dict[str, object] = {"name": "strict", "url": url}
    if oauth:
        server["oauth"] = oauth
    path.write_text(json.dumps({"token_store": "file", "mcpServers": [server]}))
    return path


def test_login_status_logout(strict_servers: Callable[..., Servers], tmp_path: Path) -> None:
    servers = strict_servers()
    home, config = tmp_path / "home", config_for(tmp_path, servers.mcp_url)

    login = run(home, config, "auth", "login", "--server", "strict", "--json")
    assert login.returncode == 0, login.stderr
    body = json.loads(login.stdout)
    assert body["success"] and body["registration_kind"] == "dcr"

    status = run(home, config, "auth", "status", "--json")
    assert status.returncode == 0, status.stderr
    (row,) = json.loads(status.stdout)
    assert row["state"] == "authenticated" and row["registration_kind"] == "dcr"
    assert row["redirect_uri"].startswith("http://127.0.0.1:") and row["token_store"].startswith("file")
    assert row["expires_in"] > 0 and row["client_id"]

    table = run(home, config, "auth", "status")
    assert table.returncode == 0 and "authenticated" in table.stdout

    again = run(home, config, "auth", "login", "--server", "strict", "--json")
    assert json.loads(again.stdout).get("already_logged_in") is True

    call = run(home, config, "call", "strict", "add", "--args", '{"a": 2, "b": 3}', "--json")
    assert call.returncode == 0, call.stderr
    assert "5" in json.dumps(json.loads(call.stdout)["content"])

    logout = run(home, config, "auth", "logout", "--server", "strict", "--forget-client", "--json")
    assert logout.returncode == 0 and json.loads(logout.stdout)["forgot_registration"] is True
    (row,) = json.loads(run(home, config, "auth", "status", "--json").stdout)
    assert row["state"] == "not_logged_in"

    # Nothing secret on disk in the clear, and the store is private.
    store_files = [p for p in (home / "store").rglob("*") if p.is_file()]
    for path in store_files:
        assert path.stat().st_mode & 0o077 == 0, path


def test_busy_configured_port_fails_fast_with_exit_3_and_no_browser(
    strict_servers: Callable[..., Servers], tmp_path: Path
) -> None:
    servers = strict_servers()
    squatter = socket.socket()
    squatter.bind(("127.0.0.1", 0))
    squatter.listen(1)
    port = squatter.getsockname()[1]
    marker = tmp_path / "opened"
    try:
        result = run(
            tmp_path / "home",
            config_for(tmp_path, servers.mcp_url, callback_port=port),
            "auth",
            "login",
            "--server",
            "strict",
            browser=script(tmp_path / "b.sh", f"touch {marker}"),
        )
    finally:
        squatter.close()
    assert result.returncode == 3
    assert str(port) in result.stderr and "mcpServers[].oauth.callback_port" in result.stderr
    assert "callback_port_in_use" in result.stderr
    assert not marker.exists()


def test_login_error_as_json(strict_servers: Callable[..., Servers], tmp_path: Path) -> None:
    servers = strict_servers(pkce_methods=None)
    result = run(
        tmp_path / "home", config_for(tmp_path, servers.mcp_url), "auth", "login", "--server", "strict", "--json"
    )
    assert result.returncode == 3
    body = json.loads(result.stdout)
    assert body["success"] is False and body["error_type"] == "pkce_unsupported"
    assert body["server_name"] == "strict" and body["correlation_id"] and body["suggestion"]


def test_probe_an_ad_hoc_server(strict_servers: Callable[..., Servers], tmp_path: Path) -> None:
    servers = strict_servers()
    result = run(
        tmp_path / "home",
        tmp_path / "none.json",
        "probe",
        servers.mcp_url,
        "--call",
        "echo",
        "--args",
        '{"text": "probed"}',
        "--json",
    )
    assert result.returncode == 0, result.stderr
    body = json.loads(result.stdout)
    assert body["auth_required"] and set(body["tools"]) >= {"echo", "sleep", "whoami", "add"}
    assert body["call"]["content"][0]["text"] == "probed"


def test_config_error_names_file_server_and_field(tmp_path: Path) -> None:
    config = tmp_path / "bad.json"
    config.write_text(json.dumps({"mcpServers": {"gh": {"url": "https://x.example/mcp", "oauth": {"scopez": []}}}}))
    result = run(tmp_path / "home", config, "auth", "status")
    assert result.returncode == 2
    assert "bad.json" in result.stderr and "[gh]" in result.stderr and "scopez" in result.stderr


def test_unknown_server_is_a_usage_error(tmp_path: Path) -> None:
    config = tmp_path / "c.json"
    config.write_text(json.dumps({"mcpServers": {"a": {"url": "https://x.example/mcp"}}}))
    result = run(tmp_path / "home", config, "auth", "login", "--server", "nope")
    assert result.returncode == 2
    assert "nope" in result.stderr


@pytest.mark.parametrize("args", [["--help"], ["auth", "--help"], ["call", "--help"], ["probe", "--help"]])
def test_help(args: list[str], tmp_path: Path) -> None:
    result = run(tmp_path / "home", tmp_path / "c.json", *args)
    assert result.returncode == 0 and "Usage" in result.stdout
