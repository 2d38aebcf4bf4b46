"""A home that is yours (issue 10, item 9): real processes, a real home on disk, planted symlinks.

The home is refused when another user owns it or may write to it; created 0700; every file mcprelay
writes there is 0600 and written without following a symlink someone planted; a server name cannot
collide with mcprelay's own files. POSIX checks (Linux here; macOS has the same calls; Windows
relies on the profile directory's ACL and skips them, see ``mcprelay/paths.py``).
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import anyio
import pytest

from tests.conftest import Servers
from tests.integration.gateway_helpers import (
    cli_env,
    http_gateway,
    mcp_client,
    mcprelay,
    stdio_server,
    text,
    wait_for_tools,
    write_config,
)

pytestmark = [
    pytest.mark.integration,
    pytest.mark.anyio,
    pytest.mark.skipif(sys.platform == "win32", reason="POSIX owners, modes and O_NOFOLLOW"),
]


def test_a_home_owned_by_another_user_is_refused(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to give a directory to another user")
    home = tmp_path / "home"
    home.mkdir(mode=0o700)
    os.chown(home, 65534, 65534)
    result = mcprelay(home, write_config(tmp_path / "config.json", {}), "activity", "list", "--json")
    assert result.returncode == 2, result.stderr
    error = json.loads(result.stdout)
    assert error["error_type"] == "usage_error" and "belongs to uid 65534" in error["message"]
    assert not (home / "logs").exists()  # nothing was written into it


@pytest.mark.parametrize(("mode", "who"), [(0o777, "its group and others"), (0o770, "its group"),
                                           (0o703, "others")])
def test_a_home_others_may_write_to_is_refused(tmp_path: Path, mode: int, who: str) -> None:
    home = tmp_path / "home"
    home.mkdir()
    home.chmod(mode)
    result = mcprelay(home, write_config(tmp_path / "config.json", {}), "activity", "list")
    assert result.returncode == 2
    assert f"is writable by {who}" in result.stderr and "chmod 700" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_new_home_is_created_0700_whatever_the_umask(tmp_path: Path) -> None:
    home = tmp_path / "home"
    config = write_config(tmp_path / "config.json", {})
    result = mcprelay(home, config, "activity", "list")
    assert result.returncode == 0, result.stderr
    assert stat.S_IMODE(home.stat().st_mode) == 0o700


async def test_a_server_named_gateway_keeps_its_status_apart_from_the_run_file(tmp_path: Path) -> None:
    """The contract allows any name of letters, digits, '-' and '_': "gateway" too. Its login status must
    not land on ``state/gateway.json``, where CLI commands find the running gateway."""
    from mcprelay import status
    from mcprelay.gateway.control.runfile import read_runfile, runfile_path

    home, config = tmp_path / "home", tmp_path / "config.json"
    write_config(config, {"gateway": stdio_server(), "Gateway2": stdio_server()})
    async with http_gateway(home, config) as base:
        status.write_status(home, "gateway", registration_kind="dynamic")
        running = read_runfile(home)
        assert running is not None and running["url"] == base
        assert runfile_path(home).exists() and (home / "state" / "gateway.server.json").exists()
        listed = mcprelay(home, config, "upstream", "list", "--json")
        assert listed.returncode == 0, listed.stderr
        assert {row["name"] for row in json.loads(listed.stdout)["servers"]} == {"gateway", "Gateway2"}
        assert status.read_status(home, "gateway")["registration_kind"] == "dynamic"


async def test_planted_symlinks_are_never_written_through(tmp_path: Path) -> None:
    """Links to a victim file where the diagnostic log, the run file, an upstream's log and the activity
    database go: the gateway runs, and the victim is untouched."""
    home, config = tmp_path / "home", tmp_path / "config.json"
    write_config(config, {"a": stdio_server()})
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    for sub in ("logs/upstreams", "state"):
        (home / sub).mkdir(parents=True, mode=0o700)
    home.chmod(0o700)
    planted = [home / "logs" / "mcprelay.log", home / "state" / "gateway.json", home / "logs" / "upstreams" / "a.log",
               home / "activity.db-wal"]
    for link in planted:
        link.symlink_to(victim)
    runfile = home / "state" / "gateway.json"
    process = subprocess.Popen(
        [sys.executable, "-m", "mcprelay", "--home", str(home), "--config", str(config), "serve", "--listen",
         "127.0.0.1:0"], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=cli_env(home),
    )
    try:
        deadline = time.monotonic() + 30
        while runfile.is_symlink():  # until the gateway has published itself
            assert process.poll() is None and time.monotonic() < deadline
            await anyio.sleep(0.1)
        base = json.loads(runfile.read_text())["url"]  # the link was replaced, not followed
        assert stat.S_IMODE(runfile.stat().st_mode) == 0o600
        async with mcp_client(base, home, mode="legacy") as client:
            await wait_for_tools(client, {"a__echo"})
            assert text(await client.call_tool("a__echo", {"text": "hi"})) == "hi"
    finally:
        process.terminate()
        _out, err = process.communicate(timeout=20)
    assert process.returncode == 0, err
    assert victim.read_text() == "precious\n"
    for link in (home / "logs" / "mcprelay.log", home / "logs" / "upstreams" / "a.log"):
        assert link.is_symlink()  # refused and left alone; nothing was appended through it
    # The activity database was refused rather than opened beside a link SQLite would follow.
    assert not (home / "activity.db-wal").exists() or (home / "activity.db-wal").is_symlink()


async def test_every_file_in_the_home_is_0600_and_every_directory_0700(
    strict_servers: Callable[..., Servers], tmp_path: Path
) -> None:
    """After a login, a refresh under the grant lock, and a gateway that ran and logged: nothing is wider."""
    servers = strict_servers(access_token_ttl=2)
    home, config = tmp_path / "home", tmp_path / "config.json"
    write_config(config, {"s": {"url": servers.mcp_url}, "a": stdio_server()})
    assert mcprelay(home, config, "auth", "login", "--server", "s").returncode == 0
    time.sleep(2.2)  # expired: the next call refreshes under the cross-process lock file
    call = mcprelay(home, config, "call", "s", "echo", "--args", '{"text": "x"}', "--json")
    assert call.returncode == 0, call.stderr
    assert servers.auth.counters.refresh_total == 1
    async with http_gateway(home, config) as base, mcp_client(base, home, mode="legacy") as client:
        await wait_for_tools(client, {"a__echo"})
        await client.call_tool("a__echo", {"text": "logged"})
    assert list((home / "locks").glob("*.lock")), "the refresh took no lock file"
    wide = []
    for path in [home, *home.rglob("*")]:
        mode = stat.S_IMODE(path.lstat().st_mode)
        expected = 0o700 if path.is_dir() else 0o600
        if mode != expected:
            wide.append(f"{path.relative_to(home)}: {mode:04o}")
    assert not wide, wide
