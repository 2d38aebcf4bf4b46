"""Secrets out of the config file: ``mcprelay secrets``, and ``${env:…}``/``${keyring:…}`` resolved at use.

Real processes throughout; the servers that need the secrets check them on real sockets and pipes.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Servers
from tests.integration.gateway_helpers import cli_env
from tests.integration.terminal import run_in_terminal

pytestmark = pytest.mark.integration

SECRET = "s3cr3t-Value-that-must-not-leak-0123456789"


def cli(home: Path, cfg: Path, *args: str, stdin: str | None = None, env: dict[str, str] | None = None
        ) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mcprelay", "--home", str(home), "--config", str(cfg), *args],
        input=stdin, stdin=None if stdin is not None else subprocess.DEVNULL, capture_output=True, text=True,
        timeout=120, env={**cli_env(home), **(env or {})},
    )


def write(cfg: Path, servers: dict[str, Any], **top: Any) -> Path:
    cfg.write_text(json.dumps({"token_store": "file", "mcpServers": servers, **top}))
    return cfg


def everything_written(home: Path, cfg: Path) -> bytes:
    """The bytes of every file mcprelay wrote that is not encrypted (logs, state, activity, the config)."""
    found = cfg.read_bytes()
    for path in home.rglob("*"):
        if path.is_file() and "store" not in path.parts:
            found += path.read_bytes()
    return found


def test_set_get_list_delete_from_stdin(tmp_path: Path) -> None:
    home, cfg = tmp_path / "home", write(tmp_path / "config.json", {
        "api": {"url": "https://api.example/mcp", "headers": {"Authorization": "Bearer ${keyring:api-token}"}},
    })
    listed = cli(home, cfg, "secrets", "list")
    assert listed.returncode == 2 and "api-token" in listed.stdout and "MISSING" in listed.stdout
    stored = cli(home, cfg, "secrets", "set", "api-token", stdin=SECRET + "\n")
    assert stored.returncode == 0, stored.stderr
    assert "stored api-token in file" in stored.stdout and "used by: api headers.Authorization" in stored.stdout
    got = cli(home, cfg, "secrets", "get", "api-token")
    assert got.returncode == 0 and got.stdout == SECRET  # the trailing newline of the input dropped
    listed = cli(home, cfg, "secrets", "list", "--json")
    body = json.loads(listed.stdout)
    assert [s["name"] for s in body["secrets"]] == ["api-token"] and body["missing"] == []
    assert SECRET not in listed.stdout
    assert SECRET.encode() not in everything_written(home, cfg)
    assert cli(home, cfg, "secrets", "delete", "api-token").stdout.startswith("deleted api-token")
    assert cli(home, cfg, "secrets", "get", "api-token").returncode == 2
    empty = cli(home, cfg, "secrets", "set", "x", stdin="")
    assert empty.returncode == 2 and "nothing was stored" in empty.stderr
    bad = cli(home, cfg, "secrets", "set", "../etc", stdin="v")
    assert bad.returncode == 2 and "not a secret name" in bad.stderr


@pytest.mark.skipif(sys.platform == "win32", reason="pseudo-terminals are POSIX")
def test_set_in_a_terminal_asks_without_echo(tmp_path: Path) -> None:
    home, cfg = tmp_path / "home", write(tmp_path / "config.json", {})
    argv = [sys.executable, "-m", "mcprelay", "--home", str(home), "--config", str(cfg), "secrets", "set", "tty-one"]
    code, shown = run_in_terminal(argv, env=cli_env(home), typed=SECRET.encode() + b"\n", type_after=b"not shown")
    assert code == 0, shown
    assert "Value for tty-one (not shown):" in shown and SECRET not in shown
    assert cli(home, cfg, "secrets", "get", "tty-one").stdout == SECRET


def test_keyring_entries_are_namespaced_per_home(tmp_path: Path) -> None:
    ring = tmp_path / "ring.json"
    env = {"PYTHON_KEYRING_BACKEND": "tests.keyring_file.JsonFileKeyring", "MCPRELAY_TEST_KEYRING_FILE": str(ring),
           "PYTHONPATH": os.pathsep.join([str(Path(__file__).resolve().parents[2]), os.environ.get("PYTHONPATH", "")])}
    cfg = write(tmp_path / "config.json", {}, token_store="auto")
    one, two = tmp_path / "one", tmp_path / "two"
    assert cli(one, cfg, "secrets", "set", "shared", stdin="from-one", env=env).returncode == 0
    stored = cli(two, cfg, "secrets", "set", "shared", stdin="from-two", env=env)
    assert stored.returncode == 0 and "in keyring (JsonFile" in stored.stdout, stored.stdout + stored.stderr
    assert cli(one, cfg, "secrets", "get", "shared", env=env).stdout == "from-one"
    assert cli(two, cfg, "secrets", "get", "shared", env=env).stdout == "from-two"
    entries = json.loads(ring.read_text())
    names = sorted(k.split("\x00", 1)[1] for k in entries if "secret/shared" in k)
    assert len(names) == 2 and all(n.startswith("home-") and n.endswith(":secret/shared") for n in names)


def _header_checking_app(expected: str) -> Any:
    """The open MCP test server behind a check of ``X-Api-Key``, as an API-key server does it."""
    from starlette.responses import JSONResponse

    from mcprelay.testing.mcpserver import build_open_app

    def build(base: str) -> Any:
        inner = build_open_app(base)

        async def app(scope: Any, receive: Any, send: Any) -> None:
            if scope["type"] == "http":
                headers = dict(scope["headers"])
                if headers.get(b"x-api-key") != expected.encode():
                    await JSONResponse({"error": "bad key"}, status_code=403)(scope, receive, send)
                    return
            await inner(scope, receive, send)

        return app

    return build


def test_references_resolved_at_use_in_headers_and_env(tmp_path: Path) -> None:
    from mcprelay.testing.asgi import AppFactory, ThreadedServer

    server = ThreadedServer(AppFactory(_header_checking_app(SECRET))).start()
    try:
        home, cfg = tmp_path / "home", tmp_path / "config.json"
        # The stdio server starts only with the right TOKEN (compared by hash: the config must not hold it).
        digest = hashlib.sha256(SECRET.encode()).hexdigest()
        checker = (f"import hashlib, os, runpy, sys; sys.exit(3) if hashlib.sha256(os.environ['TOKEN'].encode())"
                   f".hexdigest() != {digest!r} else runpy.run_module('mcprelay.testing.stdio_server', "
                   "run_name='__main__')")
        write(cfg, {
            "api": {"url": f"{server.url}/mcp", "headers": {"X-Api-Key": "${keyring:api-key}"}},
            "local": {"command": sys.executable, "args": ["-c", checker], "env": {"TOKEN": "${env:LOCAL_TOKEN}"}},
        })
        # Missing: the config loads, and the server that needs the secret fails naming the reference.
        status = cli(home, cfg, "auth", "status", "--json")
        assert status.returncode == 0
        missing = cli(home, cfg, "call", "api", "echo", "--args", '{"text": "x"}')
        assert missing.returncode == 2 and "${keyring:api-key}" in missing.stderr
        assert "mcprelay secrets set api-key" in missing.stderr
        unset = cli(home, cfg, "call", "local", "echo", "--args", '{"text": "x"}')
        assert unset.returncode == 2 and "${env:LOCAL_TOKEN}" in unset.stderr and "not set" in unset.stderr

        assert cli(home, cfg, "secrets", "set", "api-key", stdin=SECRET).returncode == 0
        ok = cli(home, cfg, "call", "api", "echo", "--args", '{"text": "through the header"}')
        assert ok.returncode == 0 and "through the header" in ok.stdout, ok.stderr
        local = cli(home, cfg, "call", "local", "echo", "--args", '{"text": "through env"}',
                    env={"LOCAL_TOKEN": SECRET})
        assert local.returncode == 0 and local.stdout.strip() == "through env", local.stderr
        wrong = cli(home, cfg, "call", "local", "echo", "--args", '{"text": "x"}', env={"LOCAL_TOKEN": "wrong"})
        assert wrong.returncode == 4  # the server refused to start: the value really was passed through
        assert json.loads(cfg.read_text())["mcpServers"]["api"]["headers"]["X-Api-Key"] == "${keyring:api-key}"
        assert SECRET.encode() not in everything_written(home, cfg)
    finally:
        server.stop()


def test_a_client_secret_from_the_keyring(strict_servers: Callable[..., Servers], tmp_path: Path) -> None:
    servers = strict_servers(dcr_enabled=False)
    servers.auth.add_client("confidential", secret=SECRET, redirect_uris=["http://127.0.0.1/callback"],
                            application_type="native")
    home, cfg = tmp_path / "home", write(tmp_path / "config.json", {
        "strict": {"url": servers.mcp_url, "oauth": {"client_id": "confidential",
                                                     "client_secret": "${keyring:strict-secret}"}}})
    refused = cli(home, cfg, "auth", "login", "--server", "strict")
    assert refused.returncode == 2 and "${keyring:strict-secret}" in refused.stderr
    assert cli(home, cfg, "secrets", "set", "strict-secret", stdin=SECRET).returncode == 0
    login = cli(home, cfg, "auth", "login", "--server", "strict", "--json")
    assert login.returncode == 0, login.stderr
    assert json.loads(login.stdout)["client_id"] == "confidential"
    assert cli(home, cfg, "call", "strict", "add", "--args", '{"a": 1, "b": 2}').returncode == 0
    assert SECRET.encode() not in everything_written(home, cfg)
    assert all(form.get("client_secret") in (None, SECRET) for form in servers.auth.token_forms)
