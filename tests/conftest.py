"""Shared fixtures: a private home, and the strict authorization server + MCP server on real sockets."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from mcprelay import diaglog


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """A fresh mcprelay home with the diagnostic log pointed into it."""
    path = tmp_path / "home"
    path.mkdir(mode=0o700)
    diaglog.configure(path)
    return path


@pytest.fixture
def log_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The diagnostic log pointed into this test's directory (and pointed back afterwards)."""
    monkeypatch.setattr(diaglog, "_path", diaglog.log_path())
    return diaglog.configure(tmp_path)


def events(path: Path, name: str) -> list[dict[str, Any]]:
    """The diagnostic log's events called ``name``."""
    if not path.exists():
        return []
    records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [r for r in records if r["event"] == name]


def log_events(home: Path) -> list[dict[str, Any]]:
    log = home / "logs" / "mcprelay.log"
    if not log.exists():
        return []
    return [json.loads(line) for line in log.read_text().splitlines() if line.strip()]


@dataclass
class Servers:
    """The strict authorization server and the protected MCP server sharing one origin."""

    auth: Any  # StrictAuthServer
    base: str

    @property
    def mcp_url(self) -> str:
        return f"{self.base}/mcp"


@pytest.fixture
def strict_servers() -> Iterator[Callable[..., Servers]]:
    """Factory: ``strict_servers(**AuthServerSettings fields)`` starts a fresh pair on 127.0.0.1."""
    from mcprelay.testing.asgi import AppFactory, ThreadedServer
    from mcprelay.testing.authserver import AuthServerSettings, StrictAuthServer
    from mcprelay.testing.mcpserver import build_app

    started: list[ThreadedServer] = []

    def start(
        *, required_scopes: list[str] | None = None, dpop_required: bool = False, dpop_nonce: bool = False,
        **settings: Any,
    ) -> Servers:
        auth = StrictAuthServer(AuthServerSettings(**settings))
        server = ThreadedServer(
            AppFactory(lambda base: build_app(base, auth=auth, required_scopes=required_scopes,
                                              dpop_required=dpop_required, dpop_nonce=dpop_nonce)),
            date_header=not auth.settings.clock_skew,  # a skewed server sends its own Date
        ).start()
        started.append(server)
        return Servers(auth=auth, base=server.url)

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[Callable[..., Any]]:
    """Factory: ``redis_server(appendonly=True)`` starts a real redis-server on a free port in tmp_path."""
    from tests.redis_helpers import RedisServer

    started: list[Any] = []

    def start(*, appendonly: bool = True) -> Any:
        server = RedisServer(tmp_path / f"redis-{len(started)}", appendonly=appendonly)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def store_key(monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh MCPRELAY_STORE_KEY in this process's environment (and so in the replicas it starts)."""
    from tests.redis_helpers import new_store_key

    key = new_store_key()
    monkeypatch.setenv("MCPRELAY_STORE_KEY", key)
    monkeypatch.delenv("MCPRELAY_STORE_KEY_PREVIOUS", raising=False)
    return key
