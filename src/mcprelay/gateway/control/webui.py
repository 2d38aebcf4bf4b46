"""The gateway's web page at ``/ui``: static files, the one-time link, and minting links for ``mcprelay ui``.

The page is three hand-written static files (``webui_assets/``: HTML, CSS, JavaScript; no framework,
no build step, nothing fetched from anywhere but this listener). Everything it shows comes from the
REST API under ``/api/v1``, which the page calls with its browser session (``browsersession.py``),
and it stays live on the ``GET /api/v1/events`` stream. Its responses carry a strict Content
Security Policy (scripts and styles from this origin only, no inline script, no framing), so even a
tool description crafted to inject markup cannot run script; the page itself only ever inserts text.

Routes:

* ``GET /ui`` → ``/ui/``; ``GET /ui/`` and ``/ui/app.js``, ``/ui/app.css``: the page (behind the key
  or a session cookie — the guard decides);
* ``GET /ui/open#t=TOKEN`` (and ``/ui/open.js``): the static page a one-time link opens; its script
  trades the token from the fragment for a session with ``POST /ui/session`` (JSON ``{"token"}`` →
  the session cookie and ``{"csrf"}``, kept in ``sessionStorage``) and goes on to ``/ui/``; a used,
  expired or unknown token is ``403``, and the page says to run ``mcprelay ui`` again;
* ``POST /api/v1/ui/links`` (the key only): mint a one-time link; ``GET /api/v1/ui/links/{id}``: was
  it used yet (``mcprelay ui`` waits for that before removing its private hand-off page).
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from mcprelay.errors import ErrorType, McpRelayError
from mcprelay.gateway.control.rest import error_response, json_response
from mcprelay.gateway.serving.browsersession import LINKS_PATH, OPEN_PATH, PAGE_PREFIX, SESSION_PATH, BrowserSessions
from mcprelay.gateway.serving.security import AUTH_SCOPE_KEY

ASSETS = {
    "index.html": "text/html; charset=utf-8",
    "app.js": "text/javascript; charset=utf-8",
    "app.css": "text/css; charset=utf-8",
    "open.html": "text/html; charset=utf-8",
    "open.js": "text/javascript; charset=utf-8",
    "favicon.svg": "image/svg+xml",
}

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
_SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}



@cache
def _asset(name: str) -> bytes:
    return resources.files("mcprelay.gateway.control").joinpath("webui_assets", name).read_bytes()


def _static(name: str) -> Response:
    return Response(_asset(name), media_type=ASSETS[name], headers=_SECURITY_HEADERS)


def page_routes(sessions: BrowserSessions) -> list[BaseRoute]:
    """``/ui`` and the link endpoints; mounted by the listener before the REST API."""

    async def root(request: Request) -> Response:
        return RedirectResponse(f"{PAGE_PREFIX}/", status_code=307, headers=_SECURITY_HEADERS)

    async def asset(request: Request) -> Response:
        name = request.path_params.get("name", "index.html")
        if name not in ASSETS:
            return Response("not found", status_code=404, media_type="text/plain", headers=_SECURITY_HEADERS)
        return _static(name)

    async def index(request: Request) -> Response:
        return _static("index.html")

    async def open_page(request: Request) -> Response:
        return _static("open.html")

    async def open_session(request: Request) -> Response:
        body = await request.body()
        try:
            data = json.loads(body) if len(body) <= 4096 else None
        except ValueError:
            data = None
        token = data.get("token") if isinstance(data, dict) else None
        if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
            token = None  # a cross-site form cannot send JSON; only the page's own script does
        redeemed = sessions.redeem(token) if isinstance(token, str) and token else None
        if redeemed is None:
            error = McpRelayError(
                ErrorType.USAGE_ERROR,
                "this link does not open the page: a link from `mcprelay ui` works once, within a minute, and only "
                "with the gateway that made it",
                suggestion="run `mcprelay ui` again (with the gateway's --home) for a new one",
                details={"reason": "link_refused"},
            )
            return error_response(error, 403, headers={"Cache-Control": "no-store"})
        response = json_response({"success": True, "csrf": redeemed.csrf}, headers={"Cache-Control": "no-store"})
        response.headers.append("Set-Cookie", sessions.set_cookie_header(redeemed))
        return response

    async def mint(request: Request) -> Response:
        if request.scope.get(AUTH_SCOPE_KEY) not in {"key", "open"}:
            error = McpRelayError(
                ErrorType.USAGE_ERROR, "a one-time link for the page is minted with the gateway's key, not a session",
                suggestion="run `mcprelay ui`", details={"reason": "key_required"},
            )
            return error_response(error, 403)
        link_id, token, expires_at = sessions.mint()
        host = request.headers.get("host", f"127.0.0.1:{sessions.port}")
        return json_response({
            "success": True, "link_id": link_id, "url": f"http://{host}{OPEN_PATH}#t={token}",
            "expires_at": expires_at, "page": f"http://{host}{PAGE_PREFIX}/",
        }, 201, headers={"Cache-Control": "no-store"})

    async def link_state(request: Request) -> Response:
        if request.scope.get(AUTH_SCOPE_KEY) not in {"key", "open"}:
            return error_response(McpRelayError(ErrorType.USAGE_ERROR, "this needs the gateway's key",
                                                details={"reason": "key_required"}), 403)
        state = sessions.link_state(request.path_params["link_id"])
        if state is None:
            return error_response(McpRelayError(
                ErrorType.USAGE_ERROR, "no such link (they are forgotten a minute after they expire)",
                suggestion="run `mcprelay ui` again", details={"reason": "unknown_link"}), 404)
        return json_response({"success": True, **state}, headers={"Cache-Control": "no-store"})

    return [
        Route(PAGE_PREFIX, root, methods=["GET", "HEAD"]),
        Route(f"{PAGE_PREFIX}/", index, methods=["GET", "HEAD"]),
        Route(OPEN_PATH, open_page, methods=["GET", "HEAD"]),
        Route(SESSION_PATH, open_session, methods=["POST"]),
        Route(f"{PAGE_PREFIX}/{{name}}", asset, methods=["GET", "HEAD"]),
        Route(LINKS_PATH, mint, methods=["POST"]),
        Route(f"{LINKS_PATH}/{{link_id}}", link_state, methods=["GET"]),
    ]
