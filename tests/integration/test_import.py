"""``mcprelay upstream import FILE``: other clients' real config files, detected, added, conflicts kept apart."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from tests.integration.gateway_helpers import mcprelay

pytestmark = pytest.mark.integration


def _files(tmp: Path) -> dict[str, Path]:
    desktop = tmp / "Claude" / "claude_desktop_config.json"
    desktop.parent.mkdir()
    desktop.write_text(json.dumps({"globalShortcut": "", "mcpServers": {
        "local": {"command": sys.executable, "args": ["-m", "mcprelay.testing.stdio_server"]},
        "shared": {"command": "npx", "args": ["-y", "server-memory"]},
    }}))
    vscode = tmp / "proj" / ".vscode" / "mcp.json"
    vscode.parent.mkdir(parents=True)
    vscode.write_text("""{
      // comments, as VS Code allows
      "inputs": [{"type": "promptString", "id": "api-key", "password": true}],
      "servers": {
        "remote": {"type": "http", "url": "https://remote.example/mcp", "headers": {"X-Key": "${input:api-key}"}},
        "shared": {"type": "stdio", "command": "npx", "args": ["-y", "server-memory", "--other"]},
      }
    }""")
    codex = tmp / ".codex" / "config.toml"
    codex.parent.mkdir()
    codex.write_text('[mcp_servers.figma]\nurl = "https://mcp.figma.com/mcp"\nbearer_token_env_var = "FIGMA"\n')
    return {"desktop": desktop, "vscode": vscode, "codex": codex}


def test_import_detects_adds_and_reports_conflicts(tmp_path: Path) -> None:
    files = _files(tmp_path)
    home, cfg = tmp_path / "home", tmp_path / "config.json"
    cfg.write_text(json.dumps({"token_store": "file", "mcpServers": [{"name": "mine", "url": "https://m.example/mcp"}]},
                              indent=2))

    first = mcprelay(home, cfg, "upstream", "import", str(files["desktop"]))
    assert first.returncode == 0, first.stderr
    assert f"Importing {files['desktop']} (claude-desktop)" in first.stdout
    assert "2 added, 0 unchanged; written" in first.stdout, first.stdout
    doc = json.loads(cfg.read_text())
    assert [s["name"] for s in doc["mcpServers"]] == ["mine", "local", "shared"]  # the list shape kept

    # VS Code's file: one new server, one that conflicts with what the first import added.
    before = cfg.read_bytes()
    dry = mcprelay(home, cfg, "upstream", "import", str(files["vscode"]), "--dry-run")
    assert dry.returncode == 2 and "dry run: nothing written" in dry.stdout
    assert cfg.read_bytes() == before
    second = mcprelay(home, cfg, "upstream", "import", str(files["vscode"]), "--json")
    report = json.loads(second.stdout)
    assert second.returncode == 2 and report["format"] == "vscode" and report["written"] is True
    assert [r["name"] for r in report["added"]] == ["remote"]
    assert report["added"][0]["entry"]["headers"] == {"X-Key": "${keyring:api-key}"}
    (conflict,) = report["conflicts"]
    assert conflict["name"] == "shared" and conflict["configured"]["args"] == ["-y", "server-memory"]
    assert any("mcprelay secrets set api-key" in note for note in report["notes"])
    shared = next(s for s in json.loads(cfg.read_text())["mcpServers"] if s["name"] == "shared")
    assert shared["args"] == ["-y", "server-memory"]  # not overwritten

    again = mcprelay(home, cfg, "upstream", "import", str(files["vscode"]), "--replace")
    assert again.returncode == 0 and "0 added, 1 unchanged, 1 replaced; written" in again.stdout
    shared = next(s for s in json.loads(cfg.read_text())["mcpServers"] if s["name"] == "shared")
    assert shared["args"] == ["-y", "server-memory", "--other"]

    codex = mcprelay(home, cfg, "upstream", "import", str(files["codex"]))
    assert codex.returncode == 0 and "(codex)" in codex.stdout
    figma = next(s for s in json.loads(cfg.read_text())["mcpServers"] if s["name"] == "figma")
    assert figma["headers"] == {"Authorization": "Bearer ${env:FIGMA}"}

    # Everything imported loads, and the local server imported from Claude Desktop answers.
    call = mcprelay(home, cfg, "call", "local", "echo", "--args", '{"text": "imported"}')
    assert call.returncode == 0 and call.stdout.strip() == "imported"


def test_import_names_the_format_problem(tmp_path: Path) -> None:
    home, cfg = tmp_path / "home", tmp_path / "config.json"
    junk = tmp_path / "notes.json"
    junk.write_text('{"hello": "world"}')
    result = mcprelay(home, cfg, "upstream", "import", str(junk))
    assert result.returncode == 2 and "no MCP servers found" in result.stderr and "--format" in result.stderr
    missing = mcprelay(home, cfg, "upstream", "import", str(tmp_path / "absent.json"))
    assert missing.returncode == 2 and "does not exist" in missing.stderr
    wrong = mcprelay(home, cfg, "upstream", "import", str(junk), "--format", "emacs")
    assert wrong.returncode == 2 and "unknown --format 'emacs'" in wrong.stderr
    assert not cfg.exists()


def test_import_renames_what_mcprelay_cannot_name(tmp_path: Path) -> None:
    home, cfg = tmp_path / "home", tmp_path / "config.json"
    source = tmp_path / ".cursor" / "mcp.json"
    source.parent.mkdir()
    source.write_text(json.dumps({"mcpServers": {"my server.v2": {"url": "https://x.example/mcp"}}}))
    result = mcprelay(home, cfg, "upstream", "import", str(source))
    assert result.returncode == 0 and "(was 'my server.v2')" in result.stdout
    assert list(json.loads(cfg.read_text())["mcpServers"]) == ["my-server-v2"]
