"""The front door of the gateway's HTTP listener: DNS-rebinding protection and the API key.

A gateway on loopback holds live credentials for many upstream servers, and a web page in the
user's browser can reach it: by DNS rebinding (its own name resolving to 127.0.0.1, so the browser
sends ``Host: evil.example:PORT``) or by a plain cross-origin request (the browser sends an
``Origin`` it cannot forge). The MCP specification's streamable HTTP transport therefore requires
servers to validate ``Origin``, and we check ``Host`` as well: a request is served only when

* its ``Host`` is a name of the address we are bound to, with our port (any of ``127.0.0.1``,
  ``localhost`` and ``[::1]`` on loopback; the configured host otherwise; on a wildcard bind such as
  ``0.0.0.0`` the machine's names are unknown, so any ``Host`` passes and the API key, which a
  rebinding page cannot know, is what protects it), and
* its ``Origin``, when present, is a loopback origin (any port) or the request's own host.

Otherwise the answer is ``403``. Every request must also carry ``Authorization: Bearer <key>``
(``401`` with ``WWW-Authenticate: Bearer`` otherwise), where the key is the config's ``api_key`` or,
without one, the home's owner key (``ownerkey.py``) — a port on loopback is open to every user of
the machine, so loopback alone proves nothing about who is asking. Only ``owner_only: false`` (and
no ``api_key``) leaves a loopback listener without a key; listening beyond loopback without an
``api_key`` is refused at start-up by :func:`require_api_key_for`.

A person's browser cannot send the key (and must never see it): the page at ``/ui`` and the REST calls it
makes pass instead on a browser session opened by a one-time link (``browsersession.py``) — never
``/mcp``, and never the endpoint that mints links. The request's ``scope`` says which admitted it
(``scope["mcprelay.auth"]``: ``key``, ``session``, ``page``, ``link`` or ``open``).

Refusals under ``/mcp`` get a JSON-RPC error body (what MCP clients parse); everything else gets the
contract's error JSON with ``error_type: usage_error`` and ``details.reason``. The key and the
``Authorization`` header are never logged.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import logging
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit

from starlette.types import ASGIApp, Receive, Scope, Send

from mcprelay.errors import ErrorType, McpRelayError, config_error
from mcprelay.gateway.serving.browsersession import CSRF_HEADER, PAGE_PREFIX, BrowserSessions

log = logging.getLogger(__name__)

LOOPBACK_NAMES = ("127.0.0.1", "localhost", "[::1]")
_WILDCARDS = frozenset({"", "0.0.0.0", "::"})  # noqa: S104 - recognising wildcards, not binding


def _strip_brackets(host: str) -> str:
    return host[1:-1] if host.startswith("[") and host.endswith("]") else host


def is_loopback(host: str) -> bool:
    """``localhost`` or a loopback address (127.0.0.0/8, ::1), with or without IPv6 brackets."""
    bare = _strip_brackets(host.strip().lower())
    if bare == "localhost":
        return True
    try:
        return ipaddress.ip_address(bare).is_loopback
    except ValueError:
        return False


def _host_literal(host: str) -> str:
    """How a host appears in a ``Host`` header: IPv6 addresses in brackets, names lowercased."""
    bare = _strip_brackets(host.strip().lower())
    return f"[{bare}]" if ":" in bare else bare


def require_api_key_for(host: str, api_key: str | None) -> None:
    """Refuse to listen beyond loopback without an API key: anyone on the network could use the tokens."""
    if is_loopback(host) or api_key:
        return
    raise config_error(
        f"refusing to listen on {host}: beyond loopback the gateway requires an api_key",
        suggestion='set "api_key" in the configuration (clients send it as "Authorization: Bearer KEY"), '
        "or listen on 127.0.0.1",
        host=host,
    )


def allowed_hosts(host: str, port: int, extra: Iterable[str] = ()) -> frozenset[str] | None:
    """The ``Host`` header values to accept, lowercased; ``None`` means any (a wildcard bind)."""
    if _strip_brackets(host.strip().lower()) in _WILDCARDS:
        return None
    names = set(LOOPBACK_NAMES) if is_loopback(host) else set()
    names.add(_host_literal(host))
    names.update(_host_literal(e) for e in extra)
    values = {f"{name}:{port}" for name in names}
    if port == 80:
        # Clients leave the default port out of Host.
        values |= names
    return frozenset(values)


def _split_authority(authority: str, default_port: int) -> tuple[str, int] | None:
    """``host[:port]`` → (host literal, port), or None when it does not parse."""
    try:
        parts = urlsplit(f"//{authority}")
        hostname = parts.hostname
        port = parts.port
    except ValueError:
        return None
    if not hostname:
        return None
    return _host_literal(hostname), port if port is not None else default_port


def origin_allowed(origin: str, host_header: str | None) -> bool:
    """A loopback origin on any port, or the same host and port as the request's ``Host``."""
    try:
        parts = urlsplit(origin.strip())
        hostname = parts.hostname
        port = parts.port
    except ValueError:
        return False
    if parts.scheme not in {"http", "https"} or not hostname:
        return False
    if is_loopback(hostname):
        return True
    default_port = 443 if parts.scheme == "https" else 80
    origin_authority = (_host_literal(hostname), port if port is not None else default_port)
    if host_header is None:
        return False
    return _split_authority(host_header.strip().lower(), default_port) == origin_authority


def _bearer(value: str | None) -> bytes | None:
    if not value:
        return None
    scheme, _, token = value.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip().encode("latin-1")  # the header's raw bytes back; the key compares as UTF-8


AUTH_SCOPE_KEY = "mcprelay.auth"


class _Guard:
    def __init__(
        self, app: ASGIApp, hosts: frozenset[str] | None, api_key: str | None, sessions: BrowserSessions | None
    ) -> None:
        self.app = app
        self.hosts = hosts
        self.key = api_key.encode("utf-8") if api_key else None
        self.sessions = sessions

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in {"http", "websocket"}:
            await self.app(scope, receive, send)
            return
        headers = _headers(scope)
        path = str(scope.get("path", ""))
        refusal = self._check(headers)
        if refusal is not None and refusal[0] == 401 and refusal[1] == "api_key_missing" and self.sessions is not None:
            admitted = self.sessions.admit(str(scope.get("method", "GET")), path, headers)
            if admitted is not None:
                refusal = None
                scope[AUTH_SCOPE_KEY] = admitted
        elif refusal is None:
            scope[AUTH_SCOPE_KEY] = "key" if self.key is not None else "open"
        if refusal is None:
            await self.app(scope, receive, send)
            return
        status, reason, message = refusal
        log.warning(
            "refused %s %s: %s (host=%r origin=%r)",
            scope.get("method", "WEBSOCKET"),
            path[:200],
            reason,
            (headers.get("host") or "")[:200],
            (headers.get("origin") or "")[:200],
        )
        if scope["type"] == "websocket":
            # Closing before accepting makes the server answer the handshake with 403.
            await send({"type": "websocket.close", "code": 1008})
            return
        await _refuse(send, path, status, reason, message)

    def _check(self, headers: dict[str, str]) -> tuple[int, str, str] | None:
        host = headers.get("host")
        if self.hosts is not None and (host is None or host.strip().lower() not in self.hosts):
            return 403, "host_not_allowed", "the Host header does not name this gateway (DNS rebinding protection)"
        origin = headers.get("origin")
        if origin is not None and not origin_allowed(origin, host):
            return 403, "origin_not_allowed", "requests from this Origin are not allowed"
        if self.key is not None:
            token = _bearer(headers.get("authorization"))
            if token is None:
                return 401, "api_key_missing", "this gateway requires its key (Authorization: Bearer <key>)"
            if not hmac.compare_digest(token, self.key):
                return 401, "api_key_invalid", "the key is not this gateway's"
        return None


def _headers(scope: Scope) -> dict[str, str]:
    """The headers we check, decoded; a repeated Host/Origin/Authorization is kept as its first value."""
    wanted = {b"host", b"origin", b"authorization", b"cookie", b"sec-fetch-site", CSRF_HEADER.encode()}
    found: dict[str, str] = {}
    for raw_name, raw_value in scope.get("headers", []):
        name = bytes(raw_name).lower()
        if name in wanted and name.decode() not in found:
            found[name.decode()] = bytes(raw_value).decode("latin-1")
    return found


async def _refuse(send: Send, path: str, status: int, reason: str, message: str) -> None:
    suggestion = (
        'send "Authorization: Bearer <key>": the config\'s api_key, or without one the owner key that '
        "`mcprelay client-config` prints (only the user who started the gateway can read it)"
        if status == 401
        else "connect to the gateway by its own address (e.g. http://127.0.0.1:PORT) and not from a web page"
    )
    body: dict[str, Any]
    if status == 401 and (path == PAGE_PREFIX or path.startswith(PAGE_PREFIX + "/")):
        await _refuse_page(send, status)
        return
    if path == "/mcp" or path.startswith("/mcp/"):
        body = {"jsonrpc": "2.0", "id": None, "error": {"code": -32000, "message": f"{message} ({reason})"}}
    else:
        error = McpRelayError(ErrorType.USAGE_ERROR, message, suggestion=suggestion, details={"reason": reason})
        body = error.to_dict()
    payload = json.dumps(body).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]
    if status == 401:
        headers.append((b"www-authenticate", b"Bearer"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": payload})


_PAGE_REFUSED = b"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>mcprelay: open the page with mcprelay ui</title></head>
<body><main><h1>This page needs a session</h1>
<p>The gateway's page opens through a one-time link. Run <code>mcprelay ui</code> in a terminal (with the same
<code>--home</code> as the gateway): it opens the page in your browser.</p></main></body></html>
"""


async def _refuse_page(send: Send, status: int) -> None:
    """A person who opened ``/ui`` without a session gets a page that says what to run, not JSON."""
    headers = [(b"content-type", b"text/html; charset=utf-8"), (b"content-length", str(len(_PAGE_REFUSED)).encode()),
               (b"cache-control", b"no-store"), (b"referrer-policy", b"no-referrer"),
               (b"content-security-policy", b"default-src 'none'"), (b"www-authenticate", b"Bearer")]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": _PAGE_REFUSED})


def guard(
    app: ASGIApp, *, host: str, port: int, api_key: str | None, extra_hosts: Iterable[str] = (),
    sessions: BrowserSessions | None = None,
) -> ASGIApp:
    """Wrap the gateway's ASGI app with the Host/Origin checks and, when ``api_key`` is set, the key check.

    ``host``/``port`` are what the listener is bound to; ``extra_hosts`` are further names the
    gateway is reached by (e.g. behind a reverse proxy) and are accepted with the same port.
    ``sessions``: the browser sessions that may stand in for the key on the page and its REST calls.
    """
    return _Guard(app, allowed_hosts(host, port, extra_hosts), api_key or None, sessions)
