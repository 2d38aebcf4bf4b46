"""The REST API over real HTTP: every endpoint, every error in the contract's shape, the OpenAPI document."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2
import pytest
from starlette.applications import Starlette
from starlette.routing import Mount, Route

from mcprelay.activity import ActivityLog, ActivityRecord, activity_path
from mcprelay.errors import ErrorType, McpRelayError
from mcprelay.gateway.control.rest import API_PREFIX, OPENAPI_DOCUMENT, GatewayControl, rest_routes
from mcprelay.gateway.control.webui import page_routes
from mcprelay.gateway.serving.browsersession import BrowserSessions
from mcprelay.testing.asgi import serve_in_thread

ERROR_FIELDS = {
    "success",
    "error_type",
    "server_name",
    "message",
    "suggestion",
    "correlation_id",
    "request_id",
    "details",
}


class FakeGateway:
    """A small but real GatewayControl: in-memory servers, a real activity log, logins that succeed or fail."""

    def __init__(self, activity: ActivityLog) -> None:
        self.activity = activity
        self.logins: list[str] = []
        self.servers: dict[str, dict[str, Any]] = {
            "github": {
                "name": "github",
                "url": "https://api.example.com/mcp",
                "transport": "streamable-http",
                "enabled": True,
                "state": "connected",
                "auth_state": "logged_in",
                "tool_count": 3,
                "last_error": None,
            },
            "broken": {
                "name": "broken",
                "url": "https://broken.example/mcp",
                "transport": "streamable-http",
                "enabled": True,
                "state": "failed",
                "auth_state": "login_required",
                "tool_count": 0,
                "last_error": McpRelayError(
                    ErrorType.METADATA_DISCOVERY_FAILED, "no metadata", server="broken"
                ).to_dict(),
            },
            "local": {
                "name": "local",
                "url": None,
                "transport": "stdio",
                "enabled": False,
                "state": "disabled",
                "auth_state": "none",
                "tool_count": 0,
                "last_error": None,
            },
        }

    def list_servers(self) -> list[dict[str, Any]]:
        return list(self.servers.values())

    def get_server(self, name: str) -> dict[str, Any] | None:
        return self.servers.get(name)

    def list_tools(self, server: str | None = None) -> list[dict[str, Any]]:
        rows = [
            {"name": f"github__{tool}", "server": "github", "tool": tool, "description": f"{tool} things",
             "input_schema": {"type": "object", "properties": {"q": {"type": "string"}}}}
            for tool in ("search", "get_issue", "create_issue")
        ]
        return [r for r in rows if server is None or r["server"] == server]

    async def start_login(self, name: str) -> dict[str, Any]:
        self.logins.append(name)
        if name == "broken":
            raise McpRelayError(
                ErrorType.METADATA_DISCOVERY_FAILED,
                "no authorization server metadata at https://broken.example",
                suggestion="check the server URL",
                correlation_id="corr-broken",
            )
        if name == "local":
            raise McpRelayError(ErrorType.USAGE_ERROR, "local is a stdio server", suggestion="it needs no login")
        if name == "github" and self.logins.count("github") > 1:
            raise McpRelayError(
                ErrorType.CALLBACK_PORT_IN_USE, "port 33418 is in use", suggestion="free it", correlation_id="corr-2"
            )
        return {
            "authorization_url": "https://auth.example.com/authorize?client_id=abc",
            "browser_opened": False,
            "correlation_id": "corr-1",
        }


def _typed(gateway: FakeGateway) -> GatewayControl:
    return gateway  # mypy checks here that the fake really implements the protocol


@pytest.fixture
def api(home: Path) -> Iterator[tuple[httpx2.Client, FakeGateway]]:
    activity = ActivityLog(activity_path(home))
    gateway = FakeGateway(activity)

    async def other(request: Any) -> Any:
        from starlette.responses import PlainTextResponse

        return PlainTextResponse("not the api")

    app = Starlette(routes=[Mount("/api/v1", routes=rest_routes(_typed(gateway))), Route("/other", other)])
    with serve_in_thread(app) as server, httpx2.Client(base_url=f"{server.url}/api/v1") as client:
        yield client, gateway
    activity.close()


def assert_error(response: httpx2.Response, status: int, error_type: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body: dict[str, Any] = response.json()
    assert set(body) == ERROR_FIELDS
    assert body["success"] is False
    assert body["error_type"] == error_type
    assert body["message"] and body["suggestion"]
    return body


def test_list_and_get_servers(api: tuple[httpx2.Client, FakeGateway]) -> None:
    client, gateway = api
    response = client.get("/servers")
    assert response.status_code == 200
    body = response.json()
    assert body["success"] is True
    assert [s["name"] for s in body["servers"]] == ["github", "broken", "local"]

    one = client.get("/servers/broken").json()
    assert one["success"] is True and one["server"] == gateway.servers["broken"]
    assert one["server"]["last_error"]["error_type"] == "metadata_discovery_failed"

    body = assert_error(client.get("/servers/nope"), 404, "config_invalid")
    assert body["server_name"] == "nope"


def test_login(api: tuple[httpx2.Client, FakeGateway]) -> None:
    client, gateway = api
    response = client.post("/servers/github/login")
    assert response.status_code == 202
    assert response.json() == {
        "success": True,
        "server_name": "github",
        "authorization_url": "https://auth.example.com/authorize?client_id=abc",
        "browser_opened": False,
        "correlation_id": "corr-1",
    }

    body = assert_error(client.post("/servers/github/login"), 409, "callback_port_in_use")
    assert body["server_name"] == "github" and body["correlation_id"] == "corr-2"

    body = assert_error(client.post("/servers/broken/login"), 502, "metadata_discovery_failed")
    assert body["server_name"] == "broken" and body["correlation_id"] == "corr-broken"

    assert_error(client.post("/servers/local/login"), 409, "usage_error")

    assert_error(client.post("/servers/nope/login"), 404, "config_invalid")
    assert "nope" not in gateway.logins  # unknown names never reach the gateway


def test_tools(api: tuple[httpx2.Client, FakeGateway]) -> None:
    client, _ = api
    body = client.get("/tools").json()
    assert body["success"] is True
    assert [t["name"] for t in body["tools"]] == ["github__search", "github__get_issue", "github__create_issue"]
    assert body["tools"][0]["input_schema"]["properties"] == {"q": {"type": "string"}}
    assert len(client.get("/tools", params={"server": "github"}).json()["tools"]) == 3
    assert client.get("/tools", params={"server": "local"}).json() == {"success": True, "tools": []}
    body = assert_error(client.get("/tools", params={"server": "nope"}), 404, "config_invalid")
    assert body["server_name"] == "nope"


def test_activity_filters_and_limit(api: tuple[httpx2.Client, FakeGateway]) -> None:
    client, gateway = api
    assert client.get("/activity").json() == {"success": True, "activity": []}
    for n in range(6):
        gateway.activity.record(
            ActivityRecord(
                request_id=f"req-{n}",
                correlation_id=None,
                server="github" if n % 2 else "broken",
                tool="search",
                started_at=1_700_000_000.0 + n,
                duration_ms=2.0,
                status="ok" if n % 2 else "error",
                error_type=None if n % 2 else "login_required",
                request_bytes=12,
                response_bytes=34,
            )
        )
    # No flush here: the API must see what was recorded before the request.
    rows = client.get("/activity").json()["activity"]
    assert [r["request_id"] for r in rows] == ["req-5", "req-4", "req-3", "req-2", "req-1", "req-0"]
    assert rows[0] == {
        "request_id": "req-5",
        "correlation_id": None,
        "server": "github",
        "tool": "search",
        "started_at": 1_700_000_005.0,
        "duration_ms": 2.0,
        "status": "ok",
        "error_type": None,
        "request_bytes": 12,
        "response_bytes": 34,
        "arguments": None,
        "kind": "tool_call",
    }
    by_kind = client.get("/activity", params={"kind": "login"}).json()["activity"]
    assert by_kind == []
    bad_kind = client.get("/activity", params={"kind": "nope"})
    assert bad_kind.status_code == 400 and bad_kind.json()["error_type"] == "usage_error"
    by_request = client.get("/activity", params={"request_id": "req-2"}).json()["activity"]
    assert [r["request_id"] for r in by_request] == ["req-2"]
    by_server = client.get("/activity", params={"server": "broken"}).json()["activity"]
    assert [r["request_id"] for r in by_server] == ["req-4", "req-2", "req-0"]
    limited = client.get("/activity", params={"server": "github", "limit": "2"}).json()["activity"]
    assert [r["request_id"] for r in limited] == ["req-5", "req-3"]
    assert len(client.get("/activity", params={"limit": "1000"}).json()["activity"]) == 6


@pytest.mark.parametrize("limit", ["0", "1001", "-3", "ten", "1.5"])
def test_bad_limit_is_400(api: tuple[httpx2.Client, FakeGateway], limit: str) -> None:
    client, _ = api
    body = assert_error(client.get("/activity", params={"limit": limit}), 400, "usage_error")
    assert body["details"]["parameter"] == "limit"


def test_unknown_routes_and_methods(api: tuple[httpx2.Client, FakeGateway]) -> None:
    client, _ = api
    assert_error(client.get("/nope"), 404, "usage_error")
    assert_error(client.get("/servers/github/tools/extra"), 404, "usage_error")
    assert_error(client.delete("/"), 404, "usage_error")
    response = client.delete("/servers/github")
    assert_error(response, 405, "usage_error")
    assert response.headers["allow"] == "GET, HEAD"
    assert client.get("/servers/github/login").status_code == 405
    assert client.post("/servers").headers["allow"] == "GET, HEAD"
    # Routes outside the mount are untouched.
    assert client.get(client.base_url.copy_with(path="/other")).text == "not the api"


def test_a_bug_in_the_gateway_is_a_500_in_contract_shape(api: tuple[httpx2.Client, FakeGateway]) -> None:
    client, gateway = api

    def explode() -> list[dict[str, Any]]:
        raise RuntimeError("secret internals")

    gateway.list_servers = explode  # type: ignore[method-assign]
    body = assert_error(client.get("/servers"), 500, "upstream_error")
    assert "secret internals" not in str(body)


def documented_operations() -> set[tuple[str, str]]:
    return {(path, method.upper()) for path, item in OPENAPI_DOCUMENT["paths"].items() for method in item}


def test_openapi_document_is_valid_and_lists_every_route(api: tuple[httpx2.Client, FakeGateway]) -> None:
    client, _ = api
    response = client.get("/openapi.json")
    assert response.status_code == 200
    document = response.json()
    assert document == OPENAPI_DOCUMENT
    assert document["openapi"].startswith("3.1")

    served: set[tuple[str, str]] = set()
    for route in rest_routes(_typed(FakeGateway(None))):  # type: ignore[arg-type]
        assert isinstance(route, Route)
        if route.path == "/{path:path}":
            continue
        served |= {(route.path, m) for m in route.methods or () if m != "HEAD"}
    # The page's link endpoints live under /api/v1 too, beside the page's own routes.
    for route in page_routes(BrowserSessions(8080)):
        assert isinstance(route, Route)
        if route.path.startswith(API_PREFIX + "/"):
            served |= {(route.path.removeprefix(API_PREFIX), m) for m in route.methods or () if m != "HEAD"}
    assert served == documented_operations()

    schemas = document["components"]["schemas"]
    assert {"Server", "Tool", "Activity", "LoginStarted", "OAuthFlowError"} <= set(schemas)
    assert set(schemas["OAuthFlowError"]["required"]) == ERROR_FIELDS
    assert set(schemas["OAuthFlowError"]["properties"]["error_type"]["enum"]) == {str(t) for t in ErrorType}
    assert set(schemas["Activity"]["properties"]) == set(ActivityRecord.__dataclass_fields__)

    validator = pytest.importorskip("openapi_spec_validator")
    validator.validate(document)


def test_responses_match_the_documented_schemas(api: tuple[httpx2.Client, FakeGateway]) -> None:
    """The document is the contract: check real answers against its schemas, not just its syntax."""
    jsonschema = pytest.importorskip("jsonschema")
    client, gateway = api
    gateway.activity.record(ActivityRecord("req-1", "c", "github", "search", 1.0, 2.0, "ok", None, 1, 2))
    components = {"components": OPENAPI_DOCUMENT["components"]}

    def check(response: httpx2.Response, path: str, method: str) -> None:
        declared = OPENAPI_DOCUMENT["paths"][path][method]["responses"][str(response.status_code)]
        if "$ref" in declared:
            declared = OPENAPI_DOCUMENT["components"]["responses"][declared["$ref"].rsplit("/", 1)[1]]
        schema = {**declared["content"]["application/json"]["schema"], **components}
        jsonschema.Draft202012Validator(schema).validate(response.json())

    check(client.get("/servers"), "/servers", "get")
    check(client.get("/servers/broken"), "/servers/{name}", "get")
    check(client.get("/servers/nope"), "/servers/{name}", "get")
    check(client.post("/servers/github/login"), "/servers/{name}/login", "post")
    check(client.post("/servers/broken/login"), "/servers/{name}/login", "post")
    check(client.post("/servers/github/login"), "/servers/{name}/login", "post")
    check(client.get("/tools"), "/tools", "get")
    check(client.get("/tools", params={"server": "nope"}), "/tools", "get")
    check(client.get("/activity"), "/activity", "get")
    check(client.get("/activity", params={"limit": "x"}), "/activity", "get")
