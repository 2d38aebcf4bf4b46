"""The gateway's REST API (mounted under ``/api/v1``): server state, tools, starting logins, the activity log.

Scripts and dashboards use it instead of scraping the CLI, and the CLI itself asks a running gateway
(``mcprelay tools list``, ``upstream list``) rather than connecting to every upstream again. So every
answer is JSON, every failure is the contract's ``OAuthFlowError`` shape (``McpRelayError.to_dict()``),
and the document at ``/api/v1/openapi.json`` describes all of it. The document is written by hand, not
generated, so that it is the reviewed contract rather than whatever the code happens to do.

Status codes, and why:

* ``404`` with ``config_invalid`` for a server name that is not configured (in the path, or in
  ``GET /tools?server=``): the same error type the
  CLI gives for an unknown ``--server``, so scripts handle both alike. Unknown paths under
  ``/api/v1`` are ``404`` with ``usage_error``; a known path with a wrong method is ``405``.
* ``400`` with ``usage_error`` for bad query parameters (``limit`` not an integer in 1..1000, a search
  without ``q``) or a bad request body.
* ``POST /servers/{name}/tools/approve`` approves held tools (pinned tools, ``pins.py``): ``200`` with
  what was approved; ``404`` for a tool the server does not offer; ``409`` when the definition changed
  again since the caller saw it (``hash`` given and no longer the offered one) or pinning is off.
* ``GET /events`` is a stream of server-sent events (``text/event-stream``) for the web page: one
  ``state`` event at once and another whenever the servers, the held tools, the catalogue or the
  activity log changed.
* ``POST /servers/{name}/login`` answers ``202``: the login has started, and finishes when the user
  completes it in the browser. Its failures are ``409`` when the gateway's own configuration or
  state prevents a login (no client id, stdio server, callback port taken, a login already running),
  ``502`` when the upstream's authorization server failed (discovery, registration, PKCE), ``503``
  when the token store is unavailable, ``504`` on a timeout.
* ``500`` with ``upstream_error`` for a bug in the gateway (logged with its traceback; the response
  carries no internals).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from functools import partial
from typing import Any, Protocol

import anyio
import anyio.to_thread
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import BaseRoute, Match, Route

from mcprelay.activity import ActivityLog
from mcprelay.errors import ErrorType, McpRelayError

log = logging.getLogger(__name__)

API_PREFIX = "/api/v1"
MAX_LIMIT = 1000
DEFAULT_LIMIT = 100
MAX_SEARCH_LIMIT = 50
#: How often the event stream compares the gateway's state with what it last sent (in memory, no I/O).
EVENTS_INTERVAL = 0.25
EVENTS_KEEPALIVE = 15.0


class GatewayControl(Protocol):
    """What the REST API needs from the running gateway; the gateway core implements it."""

    activity: ActivityLog

    def list_servers(self) -> list[dict[str, Any]]:
        """Every configured server: name, url, transport, enabled, state, auth_state, tool_count, last_error."""
        ...

    def get_server(self, name: str) -> dict[str, Any] | None:
        """One server in the shape of :meth:`list_servers`, or ``None`` when it is not configured."""
        ...

    async def start_login(self, name: str) -> dict[str, Any]:
        """Start a login; returns ``authorization_url``, ``browser_opened``, ``correlation_id``."""
        ...

    def list_tools(self, server: str | None = None) -> list[dict[str, Any]]:
        """The tools of the ready servers (all, or ``server``'s): name, server, tool, description, input_schema."""
        ...

    def restart_upstream(self, name: str) -> dict[str, Any]:
        """Reconnect one upstream from scratch; returns ``restarted`` and the new ``state``."""
        ...

    def search_tools(self, query: str, limit: int) -> list[dict[str, Any]]:
        """The exposed tools ranked for ``query`` (the index behind ``retrieve_tools``), with ``score``."""
        ...

    def held_tools(self, server: str | None = None) -> list[dict[str, Any]]:
        """Tools held back from the agent: reason, offered and approved definitions and hashes, the diff."""
        ...

    async def approve_tools(self, server: str, tool: str | None = None, digest: str | None = None) -> dict[str, Any]:
        """Approve held tools of ``server`` (all, or ``tool``; ``digest``: only if still that definition)."""
        ...

    def live_state(self) -> dict[str, Any]:
        """What the page shows that can change (compared for the event stream; from memory only)."""
        ...

    #: Set when the gateway is shutting down: open event streams end so the listener can stop at once.
    closing: anyio.Event


_LOGIN_STATUS: dict[ErrorType, int] = {
    ErrorType.CONFIG_INVALID: 409,
    ErrorType.USAGE_ERROR: 409,
    ErrorType.CLIENT_ID_REQUIRED: 409,
    ErrorType.CALLBACK_PORT_IN_USE: 409,
    ErrorType.CALLBACK_BIND_FAILED: 409,
    ErrorType.TOKEN_STORE_UNAVAILABLE: 503,
    ErrorType.LOGIN_TIMEOUT: 504,
}
_LOGIN_DEFAULT_STATUS = 502

_ALL_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]


def json_response(data: Any, status_code: int = 200, headers: dict[str, str] | None = None) -> Response:
    """JSON with ``default=str`` so a stray datetime or Path in a server dict cannot turn into a 500."""
    body = json.dumps(data, default=str, ensure_ascii=False)
    return Response(body, status_code=status_code, headers=headers, media_type="application/json")


def error_response(error: McpRelayError, status_code: int, headers: dict[str, str] | None = None) -> Response:
    return json_response(error.to_dict(), status_code, headers)


def _usage(message: str, suggestion: str, **details: Any) -> McpRelayError:
    return McpRelayError(ErrorType.USAGE_ERROR, message, suggestion=suggestion, details=details)


def _unknown_server(name: str) -> McpRelayError:
    return McpRelayError(
        ErrorType.CONFIG_INVALID,
        f"no server named {name!r} in the gateway's configuration",
        suggestion=f"list the configured servers with GET {API_PREFIX}/servers",
        server=name,
    )


Endpoint = Callable[[Request], Awaitable[Response]]


def _guarded(endpoint: Endpoint) -> Endpoint:
    """Turn anything an endpoint raises into contract JSON, so no failure reaches a client as HTML or text."""

    async def run(request: Request) -> Response:
        try:
            return await endpoint(request)
        except McpRelayError as exc:
            return error_response(exc, 400 if exc.error_type is ErrorType.USAGE_ERROR else 500)
        except Exception:
            log.exception("REST API %s %s failed", request.method, request.url.path)
            error = McpRelayError(
                ErrorType.UPSTREAM_ERROR,
                "the gateway failed while answering this request",
                suggestion="see the gateway's log for the traceback, and report it",
            )
            return error_response(error, 500)

    run.__name__ = endpoint.__name__
    run.__doc__ = endpoint.__doc__
    return run


def _parse_limit(raw: str | None) -> int:
    if raw is None or raw == "":
        return DEFAULT_LIMIT
    try:
        limit = int(raw)
    except ValueError:
        limit = 0
    if not 1 <= limit <= MAX_LIMIT:
        raise _usage(
            f"limit must be an integer from 1 to {MAX_LIMIT}, not {raw[:40]!r}",
            f"pass ?limit=N with 1 <= N <= {MAX_LIMIT}, or leave it out for {DEFAULT_LIMIT}",
            parameter="limit",
        )
    return limit


def _parse_kind(raw: str | None) -> str | None:
    from mcprelay.activity import KINDS

    if not raw:
        return None
    if raw not in KINDS:
        raise _usage(f"kind must be one of {', '.join(KINDS)}, not {raw[:40]!r}",
                     "pass ?kind=tool_call, login or refresh, or leave it out", parameter="kind")
    return raw
MAX_BODY = 64 * 1024


async def _json_body(request: Request) -> dict[str, Any]:
    """An optional JSON object body (empty: ``{}``), at most 64 KiB."""
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY:
            raise _usage(f"the request body is larger than {MAX_BODY} bytes", "send a small JSON object")
    if not body.strip():
        return {}
    from mcprelay import safejson

    try:
        data = safejson.loads(body)
    except ValueError:  # JsonRejected included: too deep, not UTF-8, NaN, a number out of range
        data = None
    if not isinstance(data, dict):
        raise _usage("the request body must be a JSON object", 'send e.g. {"tool": "echo"}, or no body')
    return data


def rest_routes(control: GatewayControl) -> list[BaseRoute]:
    """The REST API's routes, with paths relative to where the gateway mounts them (``/api/v1``)."""

    async def list_servers(request: Request) -> Response:
        return json_response({"success": True, "servers": control.list_servers()})

    async def get_server(request: Request) -> Response:
        name = request.path_params["name"]
        server = control.get_server(name)
        if server is None:
            return error_response(_unknown_server(name), 404)
        return json_response({"success": True, "server": server})

    async def list_tools(request: Request) -> Response:
        server = request.query_params.get("server") or None
        if server is not None and control.get_server(server) is None:
            return error_response(_unknown_server(server), 404)
        return json_response({"success": True, "tools": control.list_tools(server)})

    async def start_login(request: Request) -> Response:
        name = request.path_params["name"]
        if control.get_server(name) is None:
            return error_response(_unknown_server(name), 404)
        try:
            started = await control.start_login(name)
        except McpRelayError as exc:
            exc.with_context(server=name)
            return error_response(exc, _LOGIN_STATUS.get(exc.error_type, _LOGIN_DEFAULT_STATUS))
        return json_response({"success": True, "server_name": name, **started}, 202)

    async def restart_server(request: Request) -> Response:
        name = request.path_params["name"]
        if control.get_server(name) is None:
            return error_response(_unknown_server(name), 404)
        try:
            restarted = control.restart_upstream(name)
        except McpRelayError as exc:
            return error_response(exc.with_context(server=name), 409)
        return json_response({"success": True, "server_name": name, **restarted}, 202)

    async def list_activity(request: Request) -> Response:
        params = request.query_params
        limit = _parse_limit(params.get("limit"))
        query = partial(
            control.activity.query,
            request_id=params.get("request_id") or None,
            server=params.get("server") or None,
            limit=limit,
            kind=_parse_kind(params.get("kind")),
        )
        # query() waits for the writer thread's flush and reads SQLite: keep it off the event loop.
        records = await anyio.to_thread.run_sync(query)
        return json_response({"success": True, "activity": [r.to_dict() for r in records]})

    async def search_tools(request: Request) -> Response:
        params = request.query_params
        query = params.get("q", "")
        if not query.strip():
            raise _usage("a search needs words: pass ?q=WORDS", f"e.g. {API_PREFIX}/tools/search?q=create+issue",
                         parameter="q")
        limit = _parse_limit(params.get("limit") or "10")
        limit = min(limit, MAX_SEARCH_LIMIT)
        return json_response({"success": True, "query": query, "results": control.search_tools(query, limit)})

    async def held_tools(request: Request) -> Response:
        server = request.query_params.get("server") or None
        if server is not None and control.get_server(server) is None:
            return error_response(_unknown_server(server), 404)
        return json_response({"success": True, "tools": control.held_tools(server)})

    async def approve_tools(request: Request) -> Response:
        name = request.path_params["name"]
        if control.get_server(name) is None:
            return error_response(_unknown_server(name), 404)
        body = await _json_body(request)
        tool, digest = body.get("tool"), body.get("hash")
        if not isinstance(tool, str | None) or not isinstance(digest, str | None):
            raise _usage("tool and hash must be strings when given", 'send e.g. {"tool": "echo", "hash": "sha256:…"}')
        try:
            approved = await control.approve_tools(name, tool, digest)
        except McpRelayError as exc:
            exc.with_context(server=name)
            reason = exc.details.get("reason")
            return error_response(exc, 404 if reason == "unknown_tool" else 409)
        return json_response({"success": True, **approved})

    async def events(request: Request) -> Response:
        closing = control.closing

        async def stream() -> AsyncIterator[bytes]:
            yield b"retry: 2000\n\n"
            last: Any = None
            quiet_since = time.monotonic()
            while not closing.is_set():
                state = control.live_state()
                if state != last:
                    last = state
                    quiet_since = time.monotonic()
                    yield b"event: state\ndata: " + json.dumps(state, default=str).encode() + b"\n\n"
                elif time.monotonic() - quiet_since > EVENTS_KEEPALIVE:
                    quiet_since = time.monotonic()
                    yield b": still here\n\n"
                with anyio.move_on_after(EVENTS_INTERVAL):
                    await closing.wait()

        return StreamingResponse(stream(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})

    async def openapi(request: Request) -> Response:
        return json_response(OPENAPI_DOCUMENT)

    routes: list[BaseRoute] = [
        Route("/servers", _guarded(list_servers), methods=["GET"], name="api_servers"),
        Route("/servers/{name}", _guarded(get_server), methods=["GET"], name="api_server"),
        Route("/servers/{name}/login", _guarded(start_login), methods=["POST"], name="api_server_login"),
        Route("/servers/{name}/restart", _guarded(restart_server), methods=["POST"], name="api_server_restart"),
        Route("/servers/{name}/tools/approve", _guarded(approve_tools), methods=["POST"], name="api_approve_tools"),
        Route("/tools", _guarded(list_tools), methods=["GET"], name="api_tools"),
        Route("/tools/search", _guarded(search_tools), methods=["GET"], name="api_tools_search"),
        Route("/tools/held", _guarded(held_tools), methods=["GET"], name="api_tools_held"),
        Route("/events", _guarded(events), methods=["GET"], name="api_events"),
        Route("/activity", _guarded(list_activity), methods=["GET"], name="api_activity"),
        Route("/openapi.json", _guarded(openapi), methods=["GET"], name="api_openapi"),
    ]
    known = list(routes)

    async def not_found(request: Request) -> Response:
        """Last route: a wrong method on a known path is 405, anything else 404, both as contract JSON."""
        allowed: set[str] = set()
        for route in known:
            match, _ = route.matches(request.scope)
            if match is Match.PARTIAL and isinstance(route, Route) and route.methods:
                allowed |= route.methods
        if allowed:
            error = _usage(
                f"{request.method} is not allowed here",
                f"use {' or '.join(sorted(allowed))}; see {API_PREFIX}/openapi.json",
                method=request.method,
            )
            return error_response(error, 405, {"Allow": ", ".join(sorted(allowed))})
        error = _usage(
            f"no such endpoint: {request.url.path[:200]}",
            f"see {API_PREFIX}/openapi.json for the endpoints",
            path=request.url.path[:200],
        )
        return error_response(error, 404)

    routes.append(Route("/{path:path}", _guarded(not_found), methods=_ALL_METHODS, name="api_not_found"))
    return routes


# -- the OpenAPI document ---------------------------------------------------------------------------

_NULLABLE_STRING: dict[str, Any] = {"type": ["string", "null"]}


def _error_response(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/OAuthFlowError"}}},
    }


def _ok(description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


_NAME_PARAMETER: dict[str, Any] = {
    "name": "name",
    "in": "path",
    "required": True,
    "description": "The server's name in the configuration.",
    "schema": {"type": "string"},
}

OPENAPI_DOCUMENT: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {
        "title": "mcprelay gateway API",
        "version": "1.0.0",
        "description": (
            "Server state, logins, tools (search, held tools and their approval) and the activity log of a running "
            "`mcprelay serve`. Every failure is an OAuthFlowError. Every request needs `Authorization: Bearer KEY` "
            "(the config's api_key, else the home's owner key) or, from the web page, its browser session."
        ),
    },
    "servers": [{"url": API_PREFIX}],
    "security": [{}, {"bearer": []}],
    "paths": {
        "/servers": {
            "get": {
                "operationId": "listServers",
                "summary": "Every configured upstream server and its state.",
                "responses": {
                    "200": _ok(
                        "The servers.",
                        {
                            "type": "object",
                            "required": ["success", "servers"],
                            "properties": {
                                "success": {"const": True},
                                "servers": {"type": "array", "items": {"$ref": "#/components/schemas/Server"}},
                            },
                        },
                    ),
                    "401": {"$ref": "#/components/responses/Unauthorized"},
                },
            }
        },
        "/servers/{name}": {
            "get": {
                "operationId": "getServer",
                "summary": "One upstream server and its state.",
                "parameters": [_NAME_PARAMETER],
                "responses": {
                    "200": _ok(
                        "The server.",
                        {
                            "type": "object",
                            "required": ["success", "server"],
                            "properties": {
                                "success": {"const": True},
                                "server": {"$ref": "#/components/schemas/Server"},
                            },
                        },
                    ),
                    "401": {"$ref": "#/components/responses/Unauthorized"},
                    "404": {"$ref": "#/components/responses/UnknownServer"},
                },
            }
        },
        "/servers/{name}/login": {
            "post": {
                "operationId": "startLogin",
                "summary": "Start an OAuth login; the user finishes it at the authorization URL.",
                "parameters": [_NAME_PARAMETER],
                "responses": {
                    "202": _ok("The login has started.", {"$ref": "#/components/schemas/LoginStarted"}),
                    "401": {"$ref": "#/components/responses/Unauthorized"},
                    "404": {"$ref": "#/components/responses/UnknownServer"},
                    "409": _error_response(
                        "The gateway's configuration or state prevents a login (e.g. client_id_required, "
                        "callback_port_in_use, a login already running, a stdio server)."
                    ),
                    "502": _error_response(
                        "The upstream's authorization server failed (metadata_discovery_failed, dcr_failed, "
                        "pkce_unsupported, ...)."
                    ),
                    "503": _error_response("The token store is unavailable (token_store_unavailable)."),
                    "504": _error_response("Timed out (login_timeout)."),
                },
            }
        },
        "/servers/{name}/restart": {
            "post": {
                "operationId": "restartServer",
                "summary": "Reconnect one upstream from scratch (a stdio server is started again).",
                "parameters": [_NAME_PARAMETER],
                "responses": {
                    "202": _ok("The upstream is reconnecting.", {"$ref": "#/components/schemas/Restarted"}),
                    "401": {"$ref": "#/components/responses/Unauthorized"},
                    "404": {"$ref": "#/components/responses/UnknownServer"},
                    "409": _error_response("The gateway is stopping (usage_error)."),
                },
            }
        },
        "/tools": {
            "get": {
                "operationId": "listTools",
                "summary": "The tools of the ready upstream servers, under the names the gateway exposes them by.",
                "parameters": [
                    {
                        "name": "server",
                        "in": "query",
                        "required": False,
                        "description": "Only this server's tools.",
                        "schema": {"type": "string"},
                    }
                ],
                "responses": {
                    "200": _ok(
                        "The tools; servers that are not ready contribute none.",
                        {
                            "type": "object",
                            "required": ["success", "tools"],
                            "properties": {
                                "success": {"const": True},
                                "tools": {"type": "array", "items": {"$ref": "#/components/schemas/Tool"}},
                            },
                        },
                    ),
                    "401": {"$ref": "#/components/responses/Unauthorized"},
                    "404": {"$ref": "#/components/responses/UnknownServer"},
                },
            }
        },
        "/activity": {
            "get": {
                "operationId": "listActivity",
                "summary": "Forwarded tool calls, logins and refreshes, most recently recorded first.",
                "parameters": [
                    {
                        "name": "request_id",
                        "in": "query",
                        "required": False,
                        "description": "Only the call with this request id.",
                        "schema": {"type": "string"},
                    },
                    {
                        "name": "server",
                        "in": "query",
                        "required": False,
                        "description": "Only calls to this server.",
                        "schema": {"type": "string"},
                    },
                    {
                        "name": "kind",
                        "in": "query",
                        "required": False,
                        "description": "Only rows of this kind.",
                        "schema": {"type": "string", "enum": ["tool_call", "login", "refresh"]},
                    },
                    {
                        "name": "limit",
                        "in": "query",
                        "required": False,
                        "description": "At most this many records.",
                        "schema": {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT, "default": DEFAULT_LIMIT},
                    },
                ],
                "responses": {
                    "200": _ok(
                        "The records.",
                        {
                            "type": "object",
                            "required": ["success", "activity"],
                            "properties": {
                                "success": {"const": True},
                                "activity": {"type": "array", "items": {"$ref": "#/components/schemas/Activity"}},
                            },
                        },
                    ),
                    "400": _error_response("A query parameter is invalid (usage_error)."),
                    "401": {"$ref": "#/components/responses/Unauthorized"},
                },
            }
        },
        "/servers/{name}/tools/approve": {
            "post": {
                "operationId": "approveTools",
                "summary": "Approve held tools of a server (pinned tools): the agent sees them from now on.",
                "parameters": [_NAME_PARAMETER],
                "requestBody": {
                    "required": False,
                    "description": "Without a body (or without `tool`), every held tool of the server is approved.",
                    "content": {"application/json": {"schema": {
                        "type": "object",
                        "properties": {
                            "tool": {"type": "string", "description": "Only this tool (the server's own name)."},
                            "hash": {"type": "string", "description": (
                                "Approve only if the offered definition still has this hash (as GET /tools/held "
                                "showed it); otherwise 409.")},
                        },
                    }}},
                },
                "responses": {
                    "200": _ok("What was approved (empty when nothing was held).", {
                        "type": "object",
                        "required": ["success", "server_name", "approved"],
                        "properties": {
                            "success": {"const": True},
                            "server_name": {"type": "string"},
                            "approved": {"type": "array", "items": {"$ref": "#/components/schemas/HeldTool"}},
                        },
                    }),
                    "400": _error_response("The body is not a JSON object with string fields (usage_error)."),
                    "401": {"$ref": "#/components/responses/Unauthorized"},
                    "404": _error_response("No such server (config_invalid), or the server offers no such tool "
                                           "(usage_error, details.reason unknown_tool)."),
                    "409": _error_response("The definition changed again since it was shown (details.reason "
                                           "definition_changed), or tool_pinning is off (usage_error)."),
                },
            }
        },
        "/tools/search": {
            "get": {
                "operationId": "searchTools",
                "summary": "The exposed tools ranked for a query, by the index behind retrieve_tools (BM25).",
                "parameters": [
                    {"name": "q", "in": "query", "required": True, "description": "What you want to do, in words.",
                     "schema": {"type": "string"}},
                    {"name": "limit", "in": "query", "required": False, "description": "At most this many results.",
                     "schema": {"type": "integer", "minimum": 1, "maximum": MAX_SEARCH_LIMIT, "default": 10}},
                ],
                "responses": {
                    "200": _ok("The best matches first; tools that match no word are left out.", {
                        "type": "object",
                        "required": ["success", "query", "results"],
                        "properties": {
                            "success": {"const": True},
                            "query": {"type": "string"},
                            "results": {"type": "array", "items": {"allOf": [
                                {"$ref": "#/components/schemas/Tool"},
                                {"type": "object", "required": ["score"], "properties": {"score": {"type": "number"}}},
                            ]}},
                        },
                    }),
                    "400": _error_response("No query words, or a bad limit (usage_error)."),
                    "401": {"$ref": "#/components/responses/Unauthorized"},
                },
            }
        },
        "/tools/held": {
            "get": {
                "operationId": "listHeldTools",
                "summary": "Tools held back from the agent because they are new or changed since approved.",
                "parameters": [{"name": "server", "in": "query", "required": False,
                                "description": "Only this server's held tools.", "schema": {"type": "string"}}],
                "responses": {
                    "200": _ok("The held tools, with what changed.", {
                        "type": "object",
                        "required": ["success", "tools"],
                        "properties": {
                            "success": {"const": True},
                            "tools": {"type": "array", "items": {"$ref": "#/components/schemas/HeldTool"}},
                        },
                    }),
                    "401": {"$ref": "#/components/responses/Unauthorized"},
                    "404": {"$ref": "#/components/responses/UnknownServer"},
                },
            }
        },
        "/events": {
            "get": {
                "operationId": "streamEvents",
                "summary": "Server-sent events for the web page: a `state` event now and on every change.",
                "description": (
                    "Each `state` event's data is a LiveState. The stream sends a comment every 15 s when nothing "
                    "changed, and ends when the gateway shuts down (reconnect after the `retry` time)."
                ),
                "responses": {
                    "200": {"description": "An event stream.", "content": {"text/event-stream": {
                        "schema": {"type": "string"}, "x-event-data": {"$ref": "#/components/schemas/LiveState"}}}},
                    "401": {"$ref": "#/components/responses/Unauthorized"},
                },
            }
        },
        "/ui/links": {
            "post": {
                "operationId": "mintPageLink",
                "summary": "A one-time link that opens the web page (what `mcprelay ui` opens). Needs the key itself.",
                "description": (
                    "The link (`/ui/open#t=TOKEN`) works once, within `expires_at`; opening it gives that browser a "
                    "session (an HttpOnly SameSite=Strict cookie and a header secret) for /ui and this API. "
                    "A browser session cannot mint links (403)."
                ),
                "responses": {
                    "201": _ok("The link.", {"$ref": "#/components/schemas/PageLink"}),
                    "401": {"$ref": "#/components/responses/Unauthorized"},
                    "403": _error_response("Asked with a browser session instead of the key (usage_error)."),
                },
            }
        },
        "/ui/links/{link_id}": {
            "get": {
                "operationId": "getPageLink",
                "summary": "Whether a one-time link was used yet (`mcprelay ui` waits for it). Needs the key.",
                "parameters": [{"name": "link_id", "in": "path", "required": True, "schema": {"type": "string"}}],
                "responses": {
                    "200": _ok("Its state.", {
                        "type": "object",
                        "required": ["success", "used", "expired", "expires_in"],
                        "properties": {"success": {"const": True}, "used": {"type": "boolean"},
                                       "expired": {"type": "boolean"}, "expires_in": {"type": "number"}},
                    }),
                    "401": {"$ref": "#/components/responses/Unauthorized"},
                    "403": _error_response("Asked with a browser session instead of the key (usage_error)."),
                    "404": _error_response("No such link, or forgotten after it expired (usage_error)."),
                },
            }
        },
        "/openapi.json": {
            "get": {
                "operationId": "getOpenApi",
                "summary": "This document.",
                "responses": {
                    "200": _ok("The OpenAPI 3.1 document.", {"type": "object"}),
                    "401": {"$ref": "#/components/responses/Unauthorized"},
                },
            }
        },
    },
    "components": {
        "securitySchemes": {
            "bearer": {
                "type": "http",
                "scheme": "bearer",
                "description": "The gateway's api_key; required when the gateway has one.",
            }
        },
        "responses": {
            "Unauthorized": _error_response("The gateway has an API key and the request did not carry it."),
            "UnknownServer": _error_response("No server of this name is configured (config_invalid)."),
        },
        "schemas": {
            "Server": {
                "type": "object",
                "required": ["name", "transport", "enabled", "state", "auth_state", "tool_count"],
                "properties": {
                    "name": {"type": "string"},
                    "url": {**_NULLABLE_STRING, "description": "Null for stdio servers."},
                    "transport": {"type": "string", "examples": ["streamable-http", "sse", "stdio"]},
                    "enabled": {"type": "boolean"},
                    "state": {"type": "string", "description": "Connection state of the upstream."},
                    "auth_state": {"type": "string", "description": "Login state of the upstream."},
                    "tool_count": {"type": "integer", "minimum": 0},
                    "last_error": {
                        "description": "The last failure, in OAuthFlowError shape, or null.",
                        "oneOf": [{"$ref": "#/components/schemas/OAuthFlowError"}, {"type": "null"}],
                    },
                    "expires_at": {"type": ["number", "null"], "description": (
                        "When the access token of the live session expires (seconds since the epoch); null without "
                        "one.")},
                    "held_count": {"type": "integer", "minimum": 0,
                                   "description": "Tools of this server held back from the agent (pinned tools)."},
                },
            },
            "HeldTool": {
                "type": "object",
                "required": ["name", "server", "tool", "reason", "hash", "definition", "approved_hash",
                             "approved_definition", "changed_fields", "diff", "description"],
                "properties": {
                    "name": {"type": "string", "description": "The gateway's name for it once approved."},
                    "server": {"type": "string"},
                    "tool": {"type": "string", "description": "The upstream's own name for it."},
                    "reason": {"type": "string", "enum": ["new", "changed"]},
                    "hash": {"type": "string", "description": "sha256:HEX of the offered definition."},
                    "definition": {"type": "object", "description": (
                        "What is pinned: name, title, description, inputSchema, outputSchema, annotations.")},
                    "approved_hash": _NULLABLE_STRING,
                    "approved_definition": {"type": ["object", "null"]},
                    "approved_at": {"type": ["number", "null"]},
                    "changed_fields": {"type": "array", "items": {"type": "string"}},
                    "diff": {"type": "string", "description": "A unified diff, approved → offered now."},
                    "description": {"type": "string"},
                },
            },
            "LiveState": {
                "type": "object",
                "required": ["version", "servers", "held", "activity", "tool_pinning"],
                "properties": {
                    "version": {"type": "integer", "description": "Changes whenever the catalogue may have changed."},
                    "servers": {"type": "array", "items": {"$ref": "#/components/schemas/Server"}},
                    "held": {"type": "integer", "minimum": 0},
                    "activity": {"type": "integer", "description": "Changes when a call was recorded."},
                    "tool_pinning": {"type": "string", "enum": ["off", "changed", "all"]},
                },
            },
            "PageLink": {
                "type": "object",
                "required": ["success", "link_id", "url", "expires_at", "page"],
                "properties": {
                    "success": {"const": True},
                    "link_id": {"type": "string"},
                    "url": {"type": "string", "format": "uri"},
                    "expires_at": {"type": "number"},
                    "page": {"type": "string", "format": "uri"},
                },
            },
            "Tool": {
                "type": "object",
                "required": ["name", "server", "tool", "description", "input_schema"],
                "properties": {
                    "name": {"type": "string", "description": "The gateway's name for it: SERVER__TOOL."},
                    "server": {"type": "string"},
                    "tool": {"type": "string", "description": "The upstream's own name for it."},
                    "description": {"type": "string"},
                    "input_schema": {"type": "object", "description": "The upstream's JSON Schema for the arguments."},
                },
            },
            "Activity": {
                "type": "object",
                "required": [
                    "request_id",
                    "server",
                    "tool",
                    "started_at",
                    "duration_ms",
                    "status",
                    "request_bytes",
                    "response_bytes",
                ],
                "properties": {
                    "request_id": {"type": "string"},
                    "correlation_id": _NULLABLE_STRING,
                    "server": {"type": "string"},
                    "tool": {"type": "string"},
                    "started_at": {"type": "number", "description": "Seconds since the epoch."},
                    "duration_ms": {"type": "number"},
                    "status": {"type": "string", "enum": ["ok", "tool_error", "error"]},
                    "error_type": _NULLABLE_STRING,
                    "request_bytes": {"type": "integer", "minimum": 0},
                    "response_bytes": {"type": "integer", "minimum": 0},
                    "arguments": {
                        **_NULLABLE_STRING,
                        "description": "The call's arguments as JSON; null unless the gateway records them.",
                    },
                    "kind": {
                        "type": "string", "enum": ["tool_call", "login", "refresh"],
                        "description": "What the row records; for a login or refresh `tool` names the grant.",
                    },
                },
            },
            "LoginStarted": {
                "type": "object",
                "required": ["success", "server_name", "authorization_url", "browser_opened", "correlation_id"],
                "properties": {
                    "success": {"const": True},
                    "server_name": {"type": "string"},
                    "authorization_url": {**_NULLABLE_STRING, "format": "uri"},
                    "browser_opened": {"type": "boolean"},
                    "correlation_id": {"type": "string"},
                },
            },
            "Restarted": {
                "type": "object",
                "required": ["success", "server_name", "restarted", "state"],
                "properties": {
                    "success": {"const": True},
                    "server_name": {"type": "string"},
                    "restarted": {"const": True},
                    "state": {"type": "string", "description": "The upstream's state right after the restart."},
                },
            },
            "OAuthFlowError": {
                "type": "object",
                "required": [
                    "success",
                    "error_type",
                    "server_name",
                    "message",
                    "suggestion",
                    "correlation_id",
                    "request_id",
                    "details",
                ],
                "properties": {
                    "success": {"const": False},
                    "error_type": {"type": "string", "enum": [str(t) for t in ErrorType]},
                    "server_name": _NULLABLE_STRING,
                    "message": {"type": "string"},
                    "suggestion": {"type": "string"},
                    "correlation_id": _NULLABLE_STRING,
                    "request_id": _NULLABLE_STRING,
                    "details": {"type": "object"},
                },
            },
        },
    },
}
