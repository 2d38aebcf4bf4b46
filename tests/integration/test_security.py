"""The gateway's front door over real HTTP: Host and Origin checks (DNS rebinding) and the API key."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import httpx2
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from mcprelay.errors import McpRelayError
from mcprelay.gateway.serving.security import allowed_hosts, guard, is_loopback, origin_allowed, require_api_key_for
from mcprelay.testing.asgi import AppFactory, ThreadedServer

KEY = "s3cret-key-\u00e9"  # a non-ASCII key must not break the constant-time comparison


async def ok(request: Request) -> JSONResponse:
    return JSONResponse({"ok": True, "path": request.url.path})


INNER = Starlette(routes=[Route("/api/v1/servers", ok), Route("/mcp", ok, methods=["GET", "POST"])])


@pytest.fixture
def serve() -> Iterator[Callable[..., ThreadedServer]]:
    """``serve(host=..., api_key=...)``: the guarded app on 127.0.0.1, guard configured with that host."""
    started: list[ThreadedServer] = []

    def start(*, host: str = "127.0.0.1", api_key: str | None = None) -> ThreadedServer:
        def build(base: str) -> Any:
            return guard(INNER, host=host, port=int(base.rsplit(":", 1)[1]), api_key=api_key)

        server = ThreadedServer(AppFactory(build)).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


def get(server: ThreadedServer, path: str = "/api/v1/servers", **headers: str) -> httpx2.Response:
    return httpx2.get(server.url + path, headers=headers)


def test_loopback_hosts_pass(serve: Callable[..., ThreadedServer]) -> None:
    server = serve()
    assert get(server).json() == {"ok": True, "path": "/api/v1/servers"}
    for name in ("localhost", "LOCALHOST", "127.0.0.1", "[::1]"):
        assert get(server, host=f"{name}:{server.port}").status_code == 200, name
    assert httpx2.post(server.url + "/mcp").status_code == 200


@pytest.mark.parametrize(
    "host",
    ["evil.example:{port}", "evil.example", "localhost", "localhost:1", "127.0.0.1:{port}.evil.example", "localhost."],
)
def test_rebinding_host_is_refused(serve: Callable[..., ThreadedServer], host: str) -> None:
    server = serve()
    response = get(server, host=host.format(port=server.port))
    assert response.status_code == 403
    body = response.json()
    assert body["success"] is False and body["error_type"] == "usage_error"
    assert body["details"] == {"reason": "host_not_allowed"}
    assert set(body) >= {"message", "suggestion", "correlation_id", "request_id", "server_name"}


def test_refusal_on_mcp_is_json_rpc(serve: Callable[..., ThreadedServer]) -> None:
    server = serve()
    response = httpx2.post(server.url + "/mcp", headers={"host": f"evil.example:{server.port}"}, json={})
    assert response.status_code == 403
    body = response.json()
    assert body["jsonrpc"] == "2.0" and body["id"] is None and body["error"]["code"] == -32000


@pytest.mark.parametrize("origin", ["https://evil.example", "http://evil.example:8080", "null", "file://", "garbage"])
def test_foreign_origin_is_refused(serve: Callable[..., ThreadedServer], origin: str) -> None:
    server = serve()
    response = get(server, origin=origin)
    assert response.status_code == 403
    assert response.json()["details"] == {"reason": "origin_not_allowed"}


@pytest.mark.parametrize(
    "origin", ["http://localhost:3000", "https://127.0.0.1", "http://[::1]:5173", "http://127.0.0.1:{port}"]
)
def test_loopback_origin_passes(serve: Callable[..., ThreadedServer], origin: str) -> None:
    server = serve()
    assert get(server, origin=origin.format(port=server.port)).status_code == 200


def test_api_key(serve: Callable[..., ThreadedServer]) -> None:
    server = serve(api_key=KEY)
    missing = get(server)
    assert missing.status_code == 401
    assert missing.headers["www-authenticate"] == "Bearer"
    assert missing.json()["details"] == {"reason": "api_key_missing"}
    assert KEY not in missing.text

    for wrong in ("Bearer nope", f"Basic {KEY}", "Bearer", f"Bearer {KEY}x"):
        response = httpx2.get(server.url + "/api/v1/servers", headers={b"authorization": wrong.encode()})
        assert response.status_code == 401, wrong
        assert response.headers["www-authenticate"] == "Bearer"
        assert KEY not in response.text

    right = {b"authorization": f"Bearer {KEY}".encode()}
    assert httpx2.get(server.url + "/api/v1/servers", headers=right).status_code == 200
    assert httpx2.get(server.url + "/api/v1/servers", headers={b"authorization": f"bearer {KEY}".encode()}).is_success
    mcp = httpx2.post(server.url + "/mcp", json={})
    assert mcp.status_code == 401 and mcp.json()["jsonrpc"] == "2.0"
    # The key does not excuse a rebinding Host.
    rebinding = {**right, b"host": f"evil.example:{server.port}".encode()}
    assert httpx2.get(server.url + "/api/v1/servers", headers=rebinding).status_code == 403


def test_non_loopback_host_accepts_only_its_own_name(serve: Callable[..., ThreadedServer]) -> None:
    server = serve(host="192.0.2.10", api_key=KEY)
    auth = {b"authorization": f"Bearer {KEY}".encode()}
    own = {**auth, b"host": f"192.0.2.10:{server.port}".encode()}
    assert httpx2.get(server.url + "/api/v1/servers", headers=own).status_code == 200
    same_origin = {**own, b"origin": f"http://192.0.2.10:{server.port}".encode()}
    assert httpx2.get(server.url + "/api/v1/servers", headers=same_origin).status_code == 200
    other_port = {**own, b"origin": b"http://192.0.2.10:1"}
    assert httpx2.get(server.url + "/api/v1/servers", headers=other_port).status_code == 403
    assert httpx2.get(server.url + "/api/v1/servers", headers=auth).status_code == 403  # Host: 127.0.0.1:PORT


def test_require_api_key_for() -> None:
    for host in ("0.0.0.0", "::", "192.168.1.5", "gateway.example"):
        with pytest.raises(McpRelayError) as info:
            require_api_key_for(host, None)
        assert info.value.error_type == "config_invalid"
        assert info.value.exit_code == 2
        with pytest.raises(McpRelayError):
            require_api_key_for(host, "")
        require_api_key_for(host, KEY)
    for host in ("127.0.0.1", "localhost", "::1", "[::1]", "127.0.0.2"):
        require_api_key_for(host, None)


def test_helpers() -> None:
    assert is_loopback("127.8.9.10") and is_loopback("[::1]") and not is_loopback("0.0.0.0")
    assert allowed_hosts("0.0.0.0", 8080) is None
    assert allowed_hosts("127.0.0.1", 80) == frozenset(
        {"127.0.0.1:80", "localhost:80", "[::1]:80", "127.0.0.1", "localhost", "[::1]"}
    )
    assert allowed_hosts("fe80::1", 9000) == frozenset({"[fe80::1]:9000"})
    assert allowed_hosts("gw.example", 9000, ["alias.example"]) == frozenset({"gw.example:9000", "alias.example:9000"})
    assert origin_allowed("https://gw.example", "gw.example:443")
    assert not origin_allowed("https://gw.example", "gw.example:80")
    assert not origin_allowed("http://gw.example", None)
    assert not origin_allowed("http://[::1", "localhost:1")
