"""``mcprelay doctor`` as a person runs it: real processes, real config files, the strict servers on real sockets."""

from __future__ import annotations

import json
import socket
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Servers
from tests.integration.gateway_helpers import mcprelay

pytestmark = pytest.mark.integration


def config(tmp: Path, servers: dict[str, Any], **top: Any) -> Path:
    path = tmp / "config.json"
    path.write_text(json.dumps({"token_store": "file", "mcpServers": servers, **top}))
    return path


def doctor(home: Path, cfg: Path, *args: str) -> tuple[int, dict[str, Any]]:
    result = mcprelay(home, cfg, "doctor", "--json", *args, timeout=120)
    assert result.stdout, result.stderr
    return result.returncode, json.loads(result.stdout)


def findings(report: dict[str, Any], check: str, server: str | None = None) -> list[dict[str, Any]]:
    return [f for f in report["findings"] if f["check"] == check and (server is None or f["server"] == server)]


def only(report: dict[str, Any], check: str, server: str | None = None) -> dict[str, Any]:
    found = findings(report, check, server)
    assert len(found) == 1, (check, server, report["findings"])
    return found[0]


def test_a_healthy_setup(strict_servers: Callable[..., Servers], tmp_path: Path) -> None:
    servers = strict_servers()
    home = tmp_path / "home"
    cfg = config(tmp_path, {"strict": {"url": servers.mcp_url}})
    assert mcprelay(home, cfg, "auth", "login", "--server", "strict").returncode == 0
    code, report = doctor(home, cfg)
    assert code == 0 and report["ok"] and report["problems"] == 0, report
    assert only(report, "config")["status"] == "ok"
    assert only(report, "store")["status"] == "ok"
    assert findings(report, "loopback")[0]["status"] == "ok"
    metadata = only(report, "metadata", "strict")
    assert metadata["status"] == "ok" and servers.auth.issuer in metadata["message"]
    assert "S256" in metadata["message"] and "dynamic client registration" in metadata["message"]
    assert only(report, "clock", "strict")["status"] == "ok"
    assert only(report, "registration", "strict")["status"] == "ok"
    assert only(report, "tokens", "strict")["status"] == "ok"
    # Nothing was granted or spent: the probe's refresh token cannot exist, so the server refused it.
    assert servers.auth.counters.token_requests[("refresh_token", 400)] == 1
    assert servers.auth.counters.grants_revoked == 0

    text = mcprelay(home, cfg, "doctor")
    assert text.returncode == 0 and "no problems found" in text.stdout and "strict" in text.stdout


def test_a_skewed_clock(strict_servers: Callable[..., Servers], tmp_path: Path) -> None:
    servers = strict_servers(clock_skew=900)
    home, cfg = tmp_path / "home", config(tmp_path, {"strict": {"url": servers.mcp_url}})
    code, report = doctor(home, cfg)
    clock = only(report, "clock", "strict")
    assert code == 1 and clock["status"] == "problem", clock
    assert 890 <= clock["details"]["skew_s"] <= 910 and "behind" in clock["message"]
    assert "time" in clock["suggestion"]
    text = mcprelay(home, cfg, "doctor").stdout
    assert "PROBLEM" in text and "what to do:" in text


def test_a_dead_registration(strict_servers: Callable[..., Servers], tmp_path: Path) -> None:
    servers = strict_servers()
    home, cfg = tmp_path / "home", config(tmp_path, {"strict": {"url": servers.mcp_url}})
    login = mcprelay(home, cfg, "auth", "login", "--server", "strict", "--json")
    client_id = json.loads(login.stdout)["client_id"]
    assert servers.auth.forget_client(client_id)  # the provider deleted the dynamic registration
    code, report = doctor(home, cfg)
    dead = only(report, "registration", "strict")
    assert code == 1 and dead["status"] == "problem" and client_id in dead["message"]
    assert "invalid_client" in dead["message"]
    assert dead["suggestion"].startswith("mcprelay auth logout --server strict --forget-client")


def test_metadata_problems_are_named(strict_servers: Callable[..., Servers], tmp_path: Path) -> None:
    no_pkce = strict_servers(pkce_methods=None)
    no_dcr = strict_servers(dcr_enabled=False)
    home = tmp_path / "home"
    cfg = config(tmp_path, {"nopkce": {"url": no_pkce.mcp_url}, "nodcr": {"url": no_dcr.mcp_url},
                            "configured": {"url": no_dcr.mcp_url, "oauth": {"client_id": "known-client"}}})
    no_dcr.auth.add_client("known-client", redirect_uris=["http://127.0.0.1/callback"], application_type="native")
    code, report = doctor(home, cfg)
    assert code == 1
    assert only(report, "metadata", "nopkce")["error_type"] == "pkce_unsupported"
    missing = [f for f in findings(report, "metadata", "nodcr") if f["status"] == "problem"]
    assert missing and missing[0]["error_type"] == "client_id_required"
    configured = only(report, "metadata", "configured")
    assert configured["status"] == "ok" and "configured client known-client" in configured["message"]
    assert only(report, "registration", "configured")["status"] == "ok"


def test_unreachable_and_missing_commands(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed = sock.getsockname()[1]  # nothing listens once the socket is closed
    home = tmp_path / "home"
    cfg = config(tmp_path, {
        "gone": {"url": f"http://127.0.0.1:{closed}/mcp"},
        "nocmd": {"command": "definitely-not-a-command-mcprelay"},
        "local": {"command": sys.executable, "args": ["-m", "mcprelay.testing.stdio_server"]},
        "off": {"url": "https://example.invalid/mcp", "enabled": False},
    })
    code, report = doctor(home, cfg)
    assert code == 1
    assert only(report, "reachable", "gone")["error_type"] == "upstream_error"
    assert only(report, "command", "nocmd")["status"] == "problem"
    assert only(report, "command", "local")["status"] == "ok"
    assert only(report, "server", "off")["status"] == "info"
    code, report = doctor(home, cfg, "--server", "local")
    assert code == 0 and {f["server"] for f in report["findings"]} == {None, "local"}
    unknown = mcprelay(home, cfg, "doctor", "--server", "nope")
    assert unknown.returncode == 2 and "config_invalid" in unknown.stderr


def test_a_busy_callback_port_and_config_warnings(tmp_path: Path) -> None:
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    port = holder.getsockname()[1]
    try:
        home = tmp_path / "home"
        cfg = config(tmp_path, {"pinned": {"url": "https://example.invalid/mcp", "enabled": False,
                                           "oauth": {"callback_port": port, "pkce_enabled": False}}},
                     tray_endpoint="x")
        code, report = doctor(home, cfg)
        busy = [f for f in findings(report, "loopback") if f["server"] == "pinned"]
        assert code == 1 and busy[0]["error_type"] == "callback_port_in_use" and str(port) in busy[0]["message"]
        warnings = [f["message"] for f in findings(report, "config") if f["status"] == "warning"]
        assert any("tray_endpoint" in w for w in warnings) and any("pkce_enabled" in w for w in warnings)
    finally:
        holder.close()


def test_tokens_about_to_expire_without_a_refresh_token(
    strict_servers: Callable[..., Servers], tmp_path: Path
) -> None:
    servers = strict_servers(issue_refresh_tokens=False, access_token_ttl=900)
    home, cfg = tmp_path / "home", config(tmp_path, {"strict": {"url": servers.mcp_url}})
    assert mcprelay(home, cfg, "auth", "login", "--server", "strict").returncode == 0
    code, report = doctor(home, cfg)
    tokens = only(report, "tokens", "strict")
    assert code == 0 and tokens["status"] == "warning" and "no refresh token" in tokens["message"]
    assert tokens["suggestion"].startswith("log in again")


def test_a_broken_config_and_a_missing_secret(tmp_path: Path) -> None:
    home = tmp_path / "home"
    bad = tmp_path / "bad.json"
    bad.write_text('{"mcpServers": {"x": {"url": "https://x.example/mcp", "enabeld": true}}}')
    code, report = doctor(home, bad)
    assert code == 1 and only(report, "config")["error_type"] == "config_invalid"
    assert "enabeld" in only(report, "config")["message"]
    assert findings(report, "store")  # the system checks still ran
    cfg = config(tmp_path, {"api": {"url": "https://x.example/mcp",
                                    "headers": {"X-Key": "${keyring:api-key}"}}})
    code, report = doctor(home, cfg)
    secret = only(report, "secrets", "api")
    assert code == 1 and "${keyring:api-key}" in secret["message"]
    assert secret["suggestion"] == "store it: mcprelay secrets set api-key"
