"""``mcprelay auth login | status | logout``."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import anyio
import typer

from mcprelay import status as server_status
from mcprelay.cli.base import new_app
from mcprelay.cli.runtime import Runtime, get_runtime, print_json
from mcprelay.desktop import headless_requested
from mcprelay.errors import McpRelayError

if TYPE_CHECKING:
    from mcprelay.config import ServerConfig

app = new_app("Log in to servers, see their login state, log out.")

ServerOpt = Annotated[str, typer.Option("--server", "-s", metavar="NAME", help="The server's name in the config.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print the result as JSON.")]


def remote_shell() -> bool:
    """A shell on another machine (SSH): the user's browser cannot reach our loopback listener."""
    return any(os.environ.get(name) for name in ("SSH_CONNECTION", "SSH_CLIENT", "SSH_TTY"))


def login_options(headless: bool, *, home: Path | None = None, device: bool = False) -> Any:
    from mcprelay.oauth.flow import LoginOptions

    read = None
    if headless and sys.stdin is not None and sys.stdin.isatty():
        read = sys.stdin.readline
    terminal = sys.stderr is not None and sys.stderr.isatty()
    from mcprelay.cli.spinner import browser_wait

    waiting = browser_wait if terminal else None
    return LoginOptions(
        headless=headless,
        read_pasted_url=read,
        device=device,
        remote_shell=remote_shell(),
        page_dir=home / "run" if home is not None else None,
        terminal=terminal,
        waiting=waiting,
    )


async def run_login(
    runtime: Runtime, server: ServerConfig, headless: bool, *, scopes: list[str] | None = None, device: bool = False,
    request_id: str | None = None,
) -> Any:
    from mcprelay.httpclient import new_http_client

    options = login_options(headless, home=runtime.home, device=device)
    async with new_http_client() as http:
        return await server_status.recorded_login(
            runtime.home, server, runtime.store, http, options, scopes=scopes, request_id=request_id
        )


@app.command("login")
def login_command(
    ctx: typer.Context,
    server: ServerOpt,
    headless: Annotated[
        bool, typer.Option("--headless", help="Print the login URL instead of opening a browser.")
    ] = False,
    force: Annotated[
        bool, typer.Option("--force", help="Log in again even if the stored tokens are still valid.")
    ] = False,
    device: Annotated[
        bool, typer.Option("--device", help="Log in with a code entered on another device (RFC 8628).")
    ] = False,
    json_output: JsonOpt = False,
) -> None:
    """Log in to one server: discover, register, authorize, store the tokens.

    The login page opens in your browser, chosen by Python's webbrowser module: set BROWSER to the
    program to use. It gets one argument, the file:// URL of a private page that forwards to the
    login, so the login request never shows in the process list.

    With --headless (or MCPRELAY_HEADLESS=1, or HEADLESS=true) the URL is printed instead; open it
    in any browser. Where the browser cannot reach this machine (a remote shell), paste the URL it
    was sent back to (http://127.0.0.1:PORT/callback?code=...) and press Enter. Over SSH the device
    login (a code entered on another device) is used where the server offers it.
    """
    from mcprelay.oauth.grant import load_grant

    runtime = get_runtime(ctx)
    json_output = runtime.use_json(json_output)
    cfg = runtime.loaded.config.server(server)
    if cfg.transport == "stdio":
        raise typer.BadParameter(f"{server} is a local stdio server; it has no OAuth login", param_hint="--server")
    if not force:
        grant = load_grant(runtime.store, server)
        if grant and not grant.tokens.expired(skew=60):
            message = f"{server}: already logged in (use --force to log in again)"
            print_json({"success": True, "server": server, "already_logged_in": True}) if json_output else print(
                message
            )
            return
    outcome = anyio.run(lambda: run_login(runtime, cfg, headless_requested(headless), device=device))
    if json_output:
        print_json(
            {
                "success": True,
                "server": server,
                "auth_required": outcome.auth_required,
                "correlation_id": outcome.correlation_id,
                "registration_kind": outcome.registration.kind if outcome.registration else None,
                "client_id": outcome.registration.client_id if outcome.registration else None,
                "scope": outcome.grant.tokens.scope if outcome.grant else None,
                "expires_at": outcome.grant.tokens.expires_at if outcome.grant else None,
                "steps_ms": dict(outcome.steps),
            }
        )
    elif not outcome.auth_required:
        print(f"{server}: the server did not ask for authentication; nothing to store")
    else:
        assert outcome.grant and outcome.registration
        print(
            f"{server}: logged in (client {outcome.registration.client_id}, {outcome.registration.kind}; "
            f"scope {outcome.grant.tokens.scope or '-'}; tokens in {runtime.store.describe()})"
        )


def _row(runtime: Runtime, cfg: ServerConfig) -> dict[str, Any]:
    from mcprelay.oauth.grant import load_grant
    from mcprelay.oauth.rfc7591 import ClientRegistration, registration_key

    info = server_status.read_status(runtime.home, cfg.name, runtime.store)
    row: dict[str, Any] = {
        "server": cfg.name,
        "url": cfg.url or None,
        "transport": cfg.transport,
        "state": "not_logged_in",
        "expires_at": None,
        "expires_in": None,
        "scopes": None,
        "client_id": cfg.oauth.client_id or None,
        "registration_kind": "preregistered" if cfg.oauth.client_id else None,
        "redirect_uri": None,
        "token_store": runtime.store.describe(),
        "last_error": info.get("last_error"),
    }
    if cfg.transport == "stdio":
        row["state"] = "none"
        row["token_store"] = None
        return row
    try:
        grant = load_grant(runtime.store, cfg.name)
    except McpRelayError as exc:
        row["state"] = "store_error"
        row["last_error"] = {"error_type": str(exc.error_type), "message": exc.message}
        return row
    if grant is not None:
        tokens = grant.tokens
        now = time.time()
        if not tokens.expired(now=now):
            row["state"] = "authenticated"
        else:
            # A machine grant (client credentials, JWT bearer, token exchange) is renewed by asking again.
            renewable = tokens.refresh_token or grant.extra.get("grant")
            row["state"] = "expired_refreshable" if renewable else "login_required"
        row.update(
            expires_at=tokens.expires_at,
            expires_in=round(tokens.expires_at - now) if tokens.expires_at else None,
            scopes=tokens.scope.split() if tokens.scope else None,
            client_id=grant.client_id,
            registration_kind=grant.registration_kind,
            redirect_uri=grant.redirect_uri,
        )
        registration = runtime.store.get(registration_key(cfg.name, grant.issuer))
        if registration and not row["redirect_uri"]:
            row["redirect_uri"] = ClientRegistration.from_dict(registration).redirect_uri
    elif info.get("auth") == "none":
        row["state"] = "none"  # a connection or login found that the server asks for no login
    last = row["last_error"]
    if isinstance(last, dict) and last.get("error_type") == "login_required" and row["state"] != "authenticated":
        row["state"] = "login_required"
    return row


@app.command("status")
def status_command(
    ctx: typer.Context,
    server: Annotated[str | None, typer.Option("--server", "-s", metavar="NAME", help="Only this server.")] = None,
    json_output: JsonOpt = False,
) -> None:
    """Each server's login state, expiry, scopes, client, last error.

    state is one of authenticated, expired_refreshable, login_required, not_logged_in, none (the
    server needs no login: a stdio server, or one that answered without asking), store_error.
    """
    runtime = get_runtime(ctx)
    json_output = runtime.use_json(json_output)
    config = runtime.loaded.config
    servers = [config.server(server)] if server else config.mcp_servers
    rows = [_row(runtime, cfg) for cfg in servers]
    if json_output:
        print_json(rows)
        return
    if not rows:
        print("no servers configured (see the README's configuration section)")
        return
    from mcprelay.cli.tables import Column, print_table

    cells = []
    for row in rows:
        last = row["last_error"]
        client = row["client_id"] or "-"
        if row["registration_kind"] and client != "-":
            client = f"{client} ({row['registration_kind']})"
        cells.append([
            row["server"], row["state"], _expires(row["expires_in"]), " ".join(row["scopes"] or []) or "-", client,
            f"{last['error_type']}: {last['message']}" if isinstance(last, dict) else "-",
        ])
    stores = sorted({row["token_store"] for row in rows if row["token_store"]})
    print_table(
        [Column("server", max_width=20), Column("state"), Column("expires", justify="right"),
         Column("scopes", max_width=20), Column("client", max_width=24), Column("last error", wrap=True)],
        cells, caption=f"tokens in {'; '.join(stores)}" if stores else None,
    )


def _expires(seconds: int | None) -> str:
    if seconds is None:
        return "-"
    if seconds <= 0:
        return "expired"
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min"
    return f"{seconds / 3600:.0f} h" if seconds < 172800 else f"{seconds // 86400} d"


@app.command("logout")
def logout_command(
    ctx: typer.Context,
    server: ServerOpt,
    forget_client: Annotated[
        bool, typer.Option("--forget-client", help="Also forget the client registration.")
    ] = False,
    json_output: JsonOpt = False,
) -> None:
    """Revoke and forget a server's tokens.

    The refresh token is revoked first where the server offers revocation (RFC 7009); with
    --forget-client the client registration is forgotten too, so the next login registers anew.
    """
    from mcprelay.oauth.grant import load_grant, token_key
    from mcprelay.oauth.rfc7591 import registration_key

    runtime = get_runtime(ctx)
    json_output = runtime.use_json(json_output)
    cfg = runtime.loaded.config.server(server)
    issuer = server_status.read_status(runtime.home, server, runtime.store).get("issuer")
    grant = None
    try:
        grant = load_grant(runtime.store, server)
        issuer = grant.issuer if grant else issuer
    except McpRelayError:
        pass  # undecryptable tokens: deleting them is exactly what logout is for
    revocation = anyio.run(_revoke, runtime, cfg, grant) if grant is not None else None
    runtime.store.delete(token_key(server))
    forgot_registration = False
    if forget_client and issuer:
        runtime.store.delete(registration_key(server, issuer))
        forgot_registration = True
    server_status.forget(runtime.home, server, runtime.store)
    revoked = None if revocation is None or not revocation.attempted else {
        "revoked": revocation.revoked, "endpoint": revocation.endpoint, "token_type_hint": revocation.token_type_hint,
        "error": revocation.error,
    }
    if json_output:
        print_json({"success": True, "server": server, "forgot_registration": forgot_registration,
                    "revocation": revoked})
    else:
        print(f"{server}: logged out" + (" and client registration forgotten" if forgot_registration else ""))
        if revocation is not None and revocation.revoked:
            print(f"{server}: the {revocation.token_type_hint} was revoked at {revocation.endpoint}")
    if revocation is not None and revocation.attempted and not revocation.revoked:
        print(
            f"warning: {server}: the tokens could not be revoked at the authorization server ({revocation.error}); "
            "they were removed here, but stay valid there until they expire",
            file=sys.stderr,
        )


async def _revoke(runtime: Runtime, cfg: ServerConfig, grant: Any) -> Any:
    """RFC 7009 at logout: revoke at the server first (when it offers revocation), never fail the logout."""
    from mcprelay.connect import credentials_for
    from mcprelay.errors import new_correlation_id
    from mcprelay.httpclient import new_http_client
    from mcprelay.oauth.rfc7009 import REVOCATION_ENDPOINT_KEY, Revocation, revoke_grant
    from mcprelay.oauth.rfc8414 import fetch_authorization_server_metadata

    cid = new_correlation_id()
    async with new_http_client(timeout=15) as http:
        endpoint = grant.extra.get(REVOCATION_ENDPOINT_KEY)
        try:
            if endpoint is None:  # a login stored before the endpoint was kept with it
                metadata = await fetch_authorization_server_metadata(
                    http, grant.issuer, server=cfg.name, correlation_id=cid, interactive=False
                )
                endpoint = metadata.revocation_endpoint if metadata else None
            from mcprelay.secretref import resolve_server

            client = credentials_for(resolve_server(cfg, runtime.home, runtime.store), runtime.store)(grant)
        except McpRelayError as exc:
            return Revocation(attempted=bool(endpoint), revoked=False, endpoint=endpoint, error=exc.message)
        return await revoke_grant(http, grant, client, endpoint=endpoint, correlation_id=cid)
