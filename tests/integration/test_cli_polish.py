"""The CLI as a person meets it: errors in a terminal, ids that lead somewhere, logs, tables, quiet output.

Real processes; a real pseudo-terminal where what matters is what a terminal shows.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Servers
from tests.integration.gateway_helpers import cli_env, mcprelay
from tests.integration.terminal import run_in_terminal

pytestmark = pytest.mark.integration

STDIO = {"command": sys.executable, "args": ["-m", "mcprelay.testing.stdio_server"]}
FIXTURE = {"command": sys.executable, "args": ["-m", "mcprelay.testing.fixture_server", "--stdio"]}


def write(path: Path, servers: dict[str, Any]) -> Path:
    path.write_text(json.dumps({"token_store": "file", "mcpServers": servers}))
    return path


def argv(home: Path, cfg: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "mcprelay", "--home", str(home), "--config", str(cfg), *args]


@pytest.mark.skipif(sys.platform == "win32", reason="pseudo-terminals are POSIX")
def test_a_failed_login_in_a_terminal_leads_to_its_activity_and_log(
    strict_servers: Callable[..., Servers], tmp_path: Path
) -> None:
    servers = strict_servers(deny=True)
    home, cfg = tmp_path / "home", write(tmp_path / "config.json", {"strict": {"url": servers.mcp_url}})
    code, shown = run_in_terminal(argv(home, cfg, "auth", "login", "--server", "strict"), env=cli_env(home),
                                  columns=200)
    shown = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", shown)  # colours and cursor moves
    assert code == 3, shown
    assert "Waiting for you to log in to strict in the browser" in shown and "left (Ctrl-C to stop)" in shown
    assert "error: access_denied" in shown
    for label in ("server:", "message:", "what to do:", "Debug", "server log:", "activity:", "request id:",
                  "correlation id:"):
        assert label in shown, (label, shown)
    assert "mcprelay upstream logs strict" in shown
    request_id = re.search(r"mcprelay activity list --request-id ([0-9a-f]{16})", shown).group(1)  # type: ignore[union-attr]
    correlation_id = re.search(r"correlation id:\s+([0-9a-f]{16})", shown).group(1)  # type: ignore[union-attr]

    found = mcprelay(home, cfg, "activity", "list", "--request-id", request_id, "--json")
    (row,) = json.loads(found.stdout)
    assert row["kind"] == "login" and row["status"] == "error" and row["error_type"] == "access_denied"
    assert row["server"] == "strict" and row["correlation_id"] == correlation_id

    logs = mcprelay(home, cfg, "upstream", "logs", "strict")
    assert logs.returncode == 0 and "== events of strict" in logs.stdout
    assert "login_start" in logs.stdout and "login_failed" in logs.stdout and correlation_id in logs.stdout

    # Piped, the same facts: the first line whole for scripts to grep, then the Debug rows.
    piped = mcprelay(home, cfg, "auth", "login", "--server", "strict")
    first = piped.stderr.splitlines()[0]
    assert first.startswith("error (access_denied) [strict]: ") and "request id:" in piped.stderr


def test_global_options_after_the_command(strict_servers: Callable[..., Servers], tmp_path: Path) -> None:
    servers = strict_servers()
    home, cfg = tmp_path / "home", write(tmp_path / "config.json", {"strict": {"url": servers.mcp_url}})
    # MCPProxy's documented spelling, with the home and config given after the command too.
    result = subprocess.run(
        [sys.executable, "-m", "mcprelay", "auth", "login", "--server=strict", "--log-level=debug",
         f"--home={home}", "--config", str(cfg)],
        stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120, env=cli_env(home),
    )
    assert result.returncode == 0, result.stderr
    assert "DEBUG" in result.stderr  # the log level given after the command took effect
    status = mcprelay(home, cfg, "auth", "status", "--json")
    (row,) = json.loads(status.stdout)
    assert row["state"] == "authenticated"
    token = json.loads((home / "logs" / "mcprelay.log").read_text().splitlines()[0])  # a line exists
    assert token["event"]
    assert "access_token" not in result.stderr.replace('"access_token": "[redacted]"', "")
    as_json = subprocess.run(
        [sys.executable, "-m", "mcprelay", "upstream", "list", "--config", str(cfg), "--home", str(home),
         "--json"], stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60, env=cli_env(home),
    )
    assert json.loads(as_json.stdout)["servers"][0]["name"] == "strict"
    bad = subprocess.run([sys.executable, "-m", "mcprelay", "tools", "list", "--log-level", "loud"],
                         capture_output=True, text=True, timeout=60, env=cli_env(home))
    assert bad.returncode == 2 and "'loud' is not a log level" in bad.stderr


def test_call_keeps_stderr_out_and_summarises_binary_content(tmp_path: Path) -> None:
    home, cfg = tmp_path / "home", write(tmp_path / "config.json", {"local": STDIO, "fixture": FIXTURE})
    echo = mcprelay(home, cfg, "call", "local", "echo", "--args", '{"text": "hi"}')
    assert echo.returncode == 0 and echo.stdout == "hi\n"
    assert "stdio test server starting" not in echo.stderr
    logs = mcprelay(home, cfg, "upstream", "logs", "local")
    assert "== stderr of local" in logs.stdout and "stdio test server starting" in logs.stdout

    image = mcprelay(home, cfg, "call", "fixture", "test_image_content")
    assert image.returncode == 0, image.stderr
    assert re.fullmatch(r"\[image, image/png, \d+ bytes; --save DIR writes it to a file\]\n", image.stdout)
    assert "fixture server on stdio" not in image.stderr
    saved = mcprelay(home, cfg, "call", "fixture", "test_multiple_content_types", "--save", str(tmp_path / "out"))
    assert saved.returncode == 0
    (png,) = (tmp_path / "out").glob("*.png")
    assert png.read_bytes().startswith(b"\x89PNG") and str(png) in saved.stdout
    full = mcprelay(home, cfg, "call", "fixture", "test_image_content", "--json")
    assert json.loads(full.stdout)["content"][0]["data"]  # scripts still get the data


def test_tables_fit_80_columns_and_ids_stay_whole(tmp_path: Path) -> None:
    home, cfg = tmp_path / "home", write(tmp_path / "config.json", {"a-rather-long-server-name": STDIO})
    ids = []
    for text in ("one", "two", "three"):
        out = mcprelay(home, cfg, "call", "a-rather-long-server-name", "echo", "--args", json.dumps({"text": text}),
                       "--json")
        ids.append(json.loads(out.stdout)["request_id"])
    env = {**cli_env(home), "COLUMNS": "80"}
    for args in (["activity", "list"], ["auth", "status"], ["upstream", "list"], ["tools", "list"]):
        shown = subprocess.run(argv(home, cfg, *args), capture_output=True, text=True, timeout=60, env=env)
        assert shown.returncode == 0, shown.stderr
        assert all(len(line) <= 80 for line in shown.stdout.splitlines()), shown.stdout
        if args[0] == "activity":
            assert all(i in shown.stdout for i in ids), shown.stdout


def test_auth_status_says_none_where_no_login_is_needed(tmp_path: Path) -> None:
    from mcprelay.testing.asgi import AppFactory, serve_in_thread
    from mcprelay.testing.mcpserver import build_open_app

    with serve_in_thread(AppFactory(build_open_app)) as server:
        home = tmp_path / "home"
        cfg = write(tmp_path / "config.json", {"open": {"url": f"{server.url}/mcp"}, "local": STDIO})
        before = {r["server"]: r["state"] for r in json.loads(mcprelay(home, cfg, "auth", "status", "--json").stdout)}
        assert before == {"open": "not_logged_in", "local": "none"}
        assert mcprelay(home, cfg, "call", "open", "echo", "--args", '{"text": "x"}').returncode == 0
        after = {r["server"]: r["state"] for r in json.loads(mcprelay(home, cfg, "auth", "status", "--json").stdout)}
        assert after == {"open": "none", "local": "none"}


def test_empty_results_say_so(tmp_path: Path) -> None:
    home, cfg = tmp_path / "home", write(tmp_path / "config.json", {})
    assert "no tools: no servers are configured" in mcprelay(home, cfg, "tools", "list").stdout
    assert "no servers configured" in mcprelay(home, cfg, "upstream", "list").stdout
    assert "no activity recorded yet" in mcprelay(home, cfg, "activity", "list").stdout
    assert "no activity matches" in mcprelay(home, cfg, "activity", "list", "--request-id", "feed").stdout
    assert "no servers configured" in mcprelay(home, cfg, "auth", "status").stdout


@pytest.mark.parametrize(("level", "shown"), [("warning", False), ("debug", True)])
def test_library_warnings_only_at_debug(level: str, shown: bool) -> None:
    # The SDK warns (MCPDeprecationWarning) when a server is built with a handler deprecated in 2026-07-28,
    # as the gateway's own server is; a person running a command must not see it.
    code = (
        "import sys\n"
        "from mcprelay.cli.runtime import configure_logging\n"
        "configure_logging(sys.argv[1]) if sys.argv[1] != 'none' else None\n"
        "from mcp.server.lowlevel.server import Server\n"
        "async def level(ctx, params): return None\n"
        "Server('x', on_set_logging_level=level)\n"
    )
    result = subprocess.run([sys.executable, "-c", code, level], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0
    assert ("logging capability is deprecated" in result.stderr) is shown, result.stderr
    bare = subprocess.run([sys.executable, "-c", code, "none"], capture_output=True, text=True, timeout=60)
    assert "logging capability is deprecated" in bare.stderr  # what the CLI used to print


def test_refreshes_and_their_failures_are_in_the_activity_log(
    strict_servers: Callable[..., Servers], tmp_path: Path
) -> None:
    import time

    servers = strict_servers(access_token_ttl=2)
    home, cfg = tmp_path / "home", write(tmp_path / "config.json", {"strict": {"url": servers.mcp_url}})
    assert mcprelay(home, cfg, "auth", "login", "--server", "strict").returncode == 0
    time.sleep(2.2)
    assert mcprelay(home, cfg, "call", "strict", "add", "--args", '{"a": 1, "b": 2}').returncode == 0
    refreshes = json.loads(mcprelay(home, cfg, "activity", "list", "--kind", "refresh", "--json").stdout)
    assert [(r["status"], r["tool"]) for r in refreshes] == [("ok", "refresh_token")]
    assert refreshes[0]["correlation_id"]

    servers.auth.revoke_all()  # the grant is ended at the server: the next refresh is refused
    time.sleep(2.2)
    failed = mcprelay(home, cfg, "call", "strict", "add", "--args", '{"a": 1, "b": 2}')
    assert failed.returncode == 3 and "login_required" in failed.stderr
    request_id = re.search(r"--request-id ([0-9a-f]{16})", failed.stderr).group(1)  # type: ignore[union-attr]
    rows = json.loads(mcprelay(home, cfg, "activity", "list", "--request-id", request_id, "--json").stdout)
    kinds = {r["kind"]: r for r in rows}
    assert set(kinds) == {"refresh", "tool_call"}
    assert kinds["refresh"]["status"] == "error" and kinds["refresh"]["error_type"] == "login_required"
    assert kinds["tool_call"]["error_type"] == "login_required"
