"""``mcprelay doctor``: what a person would otherwise find out the hard way, each finding with what to do.

Checked, in this order, none of which changes anything:

* the config: it loads, and what the loader warned about;
* the home, the token store (a write, read and delete of a probe entry) and the system keyring;
* the loopback interface: a port can be bound on 127.0.0.1, and every configured ``callback_port``
  (or ``redirect_uri`` port) is free — on Windows, also outside the excluded port ranges
  (``netsh interface ipv4 show excludedportrange protocol=tcp``), where a bind fails with EACCES;
* per server: its secret references resolve; a stdio server's command exists; an HTTP server
  answers, and when it asks for OAuth its metadata is valid (protected resource → issuer, the
  issuer matches, S256 is offered, and there is a way to be a client: a configured ``client_id``,
  a Client ID Metadata Document, or Dynamic Client Registration); this machine's clock agrees with
  the authorization server's ``Date`` header; the client registration in use is still known to the
  authorization server (a token request with a refresh token that cannot exist answers
  ``invalid_grant`` for a live client and ``invalid_client`` for a dead one — nothing is granted or
  consumed); the stored tokens are not about to expire without a refresh token.

Everything goes through the same discovery and token-endpoint code a login uses
(:mod:`mcprelay.oauth.discovery`, :mod:`mcprelay.oauth.rfc8414`, :mod:`mcprelay.oauth.rfc9728`,
:mod:`mcprelay.oauth.rfc6749`), so a finding here is what a login would meet.
"""

from __future__ import annotations

import email.utils
import logging
import os
import re
import secrets
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import anyio

from mcprelay.errors import ErrorType, McpRelayError, new_correlation_id

if TYPE_CHECKING:
    import httpx2

    from mcprelay.config import Config, ServerConfig
    from mcprelay.store.base import TokenStore

log = logging.getLogger(__name__)

Status = Literal["ok", "info", "warning", "problem"]

#: A clock this far from the authorization server's is a warning; ten times as far, a problem.
CLOCK_WARN_S = 30.0
CLOCK_PROBLEM_S = 300.0
#: A token without a refresh token that expires within this is about to need a browser.
EXPIRY_WARN_S = 3600.0
SERVER_TIMEOUT_S = 15.0
_PROBE_KEY = "doctor-probe"


@dataclass
class Finding:
    check: str
    status: Status
    message: str
    suggestion: str = ""
    server: str | None = None
    error_type: str | None = None
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _from_error(check: str, exc: McpRelayError, server: str | None = None) -> Finding:
    return Finding(check, "problem", exc.message, exc.suggestion, server or exc.server, str(exc.error_type),
                   {k: v for k, v in exc.details.items() if k in ("url", "issuer", "tried", "reference", "field")})


# ---------------------------------------------------------------------------- system checks


def check_store(token_store: str, home: Path) -> list[Finding]:
    """The token store opens and round-trips an entry; the keyring's state, said plainly."""
    from mcprelay.store import open_store
    from mcprelay.store.base import current_keyring, keyring_problem

    findings: list[Finding] = []
    try:
        store = open_store(token_store, home)
        key = f"{_PROBE_KEY}/{secrets.token_hex(4)}"
        value = {"probe": secrets.token_hex(8)}
        store.put(key, value)
        try:
            if store.get(key) != value:
                raise McpRelayError(ErrorType.TOKEN_STORE_UNAVAILABLE, f"{store.describe()} did not return "
                                    "what was written to it", suggestion="check the store's disk or keyring")
        finally:
            store.delete(key)
        findings.append(Finding("store", "ok", f"token store {store.describe()}: write, read and delete work"))
    except McpRelayError as exc:
        findings.append(_from_error("store", exc))
    if token_store.startswith(("redis://", "rediss://")):
        return findings
    try:
        problem = keyring_problem(current_keyring())
    except Exception as exc:  # a keyring that cannot even be asked
        problem = f"{type(exc).__name__}: {exc}"
    if problem is None:
        findings.append(Finding("keyring", "ok", "the system keyring works"))
    elif token_store == "keyring":
        findings.append(Finding("keyring", "problem", f"token_store is keyring, but {problem}",
                                'unlock the keyring, or set "token_store": "file"',
                                error_type=str(ErrorType.TOKEN_STORE_UNAVAILABLE)))
    else:
        where = "the encrypted file store (its key in a 0600 file beside it)"
        findings.append(Finding("keyring", "info", f"{problem}; tokens and secrets are kept in {where}"))
    return findings


def windows_excluded_ranges(output: str) -> list[tuple[int, int]]:
    """The (start, end) port ranges in the output of ``netsh interface ipv4 show excludedportrange``."""
    ranges = []
    for line in output.splitlines():
        match = re.match(r"\s*(\d{1,5})\s+(\d{1,5})\b", line)
        if match:
            start, end = int(match.group(1)), int(match.group(2))
            if 0 < start <= end <= 65535:
                ranges.append((start, end))
    return ranges


def _excluded_on_windows() -> list[tuple[int, int]] | None:
    if sys.platform != "win32":  # pragma: no cover - Windows only
        return None
    try:  # pragma: no cover - Windows only
        out = subprocess.run(
            ["netsh", "interface", "ipv4", "show", "excludedportrange", "protocol=tcp"],
            capture_output=True, text=True, timeout=10, check=False,
        )
    except (OSError, subprocess.SubprocessError):  # pragma: no cover - Windows only
        return None
    return windows_excluded_ranges(out.stdout)  # pragma: no cover - Windows only


def configured_ports(config: Config) -> list[tuple[str, int]]:
    """(server, port) for every loopback port the config pins for a login callback."""
    from urllib.parse import urlsplit

    ports = []
    for server in config.mcp_servers:
        port = server.oauth.callback_port
        if port is None and server.oauth.redirect_uri:
            port = urlsplit(server.oauth.redirect_uri).port
        if port:
            ports.append((server.name, port))
    return ports


def check_loopback(config: Config | None, *, excluded: list[tuple[int, int]] | None = None) -> list[Finding]:
    """127.0.0.1 can be bound; each configured callback port is free (and, on Windows, not excluded)."""
    from mcprelay.oauth.rfc8252 import LISTEN_ADDRESS, default_bind, errno_code

    findings: list[Finding] = []
    try:
        sock = default_bind(LISTEN_ADDRESS, 0)
        port = sock.getsockname()[1]
        sock.close()
        findings.append(Finding("loopback", "ok", f"a login callback can listen on {LISTEN_ADDRESS} (got port {port})"))
    except OSError as exc:
        findings.append(Finding(
            "loopback", "problem", f"nothing can listen on {LISTEN_ADDRESS}: {errno_code(exc)} ({exc.strerror})",
            "a firewall or sandbox blocks loopback sockets; use `mcprelay auth login --device` where the server "
            "offers it, or run mcprelay where it may listen", error_type=str(ErrorType.CALLBACK_BIND_FAILED),
        ))
        return findings
    ranges = excluded if excluded is not None else _excluded_on_windows()
    for server, port in configured_ports(config) if config is not None else []:
        blocked = next(((a, b) for a, b in ranges or [] if a <= port <= b), None)
        if blocked is not None:
            findings.append(Finding(
                "loopback", "problem",
                f"callback port {port} is in a Windows excluded port range ({blocked[0]}-{blocked[1]}): "
                "binding it fails with EACCES", "remove oauth.callback_port (mcprelay picks a free port), or pick "
                "a port outside `netsh interface ipv4 show excludedportrange protocol=tcp`", server,
                str(ErrorType.CALLBACK_BIND_FAILED), {"port": port, "range": list(blocked)},
            ))
            continue
        try:
            sock = default_bind(LISTEN_ADDRESS, port)
            sock.close()
            findings.append(Finding("loopback", "ok", f"callback port {port} is free", server=server))
        except OSError as exc:
            code = errno_code(exc)
            in_use = code == "EADDRINUSE"
            findings.append(Finding(
                "loopback", "problem", f"callback port {port} cannot be bound: {code} "
                f"({'another program listens there' if in_use else exc.strerror})",
                "stop the program on that port, or remove oauth.callback_port (mcprelay then picks a free one)",
                server, str(ErrorType.CALLBACK_PORT_IN_USE if in_use else ErrorType.CALLBACK_BIND_FAILED),
                {"port": port, "code": code},
            ))
    if ranges:
        findings.append(Finding("loopback", "info", f"Windows excludes {len(ranges)} TCP port ranges from binding",
                                details={"ranges": ranges}))
    return findings


# ---------------------------------------------------------------------------- per server


def clock_skew(date_header: str | None, sent_at: float, received_at: float) -> float | None:
    """Seconds the server's clock is ahead of ours (negative: behind), from its ``Date`` header."""
    if not date_header:
        return None
    try:
        parsed = email.utils.parsedate_to_datetime(date_header)
    except (TypeError, ValueError):
        return None
    if parsed is None:
        return None
    # The header has a resolution of a second and was made somewhere between sending and receiving.
    return parsed.timestamp() + 0.5 - (sent_at + received_at) / 2


def skew_finding(skew: float, issuer: str, server: str) -> Finding:
    ahead = "ahead of" if skew < 0 else "behind"
    text = f"this machine's clock is {abs(skew):.0f} s {ahead} the authorization server's ({issuer})"
    fix = "turn on time synchronisation (timedatectl set-ntp true; on macOS and Windows: set the time automatically)"
    if abs(skew) >= CLOCK_PROBLEM_S:
        return Finding("clock", "problem", text + ": tokens will look expired too early or too late, and signed "
                       "assertions and DPoP proofs are refused", fix, server, details={"skew_s": round(skew, 1)})
    if abs(skew) >= CLOCK_WARN_S:
        return Finding("clock", "warning", text, fix, server, details={"skew_s": round(skew, 1)})
    return Finding("clock", "ok", f"clock agrees with {issuer} (within {max(abs(skew), 1):.0f} s)", server=server,
                   details={"skew_s": round(skew, 1)})


async def _clock(http: httpx2.AsyncClient, issuer: str, server: str) -> Finding | None:
    from mcprelay.oauth.rfc8414 import metadata_urls

    for url in metadata_urls(issuer):
        try:
            sent = time.time()
            response = await http.get(url, headers={"Accept": "application/json"})
            received = time.time()
        except Exception as exc:  # another metadata URL may answer
            log.debug("doctor: GET %s failed: %s", url, exc)
            continue
        skew = clock_skew(response.headers.get("date"), sent, received)
        if skew is not None:
            return skew_finding(skew, issuer, server)
    return Finding("clock", "info", f"the authorization server ({issuer}) sends no Date header; the clock could not "
                   "be compared", server=server)


async def _registration_alive(
    http: httpx2.AsyncClient, token_endpoint: str, client: Any, issuer: str, server: str, label: str,
) -> Finding:
    """Whether the authorization server still knows ``client``: a refresh with a token that cannot exist."""
    from mcprelay.oauth.rfc6749 import TokenEndpointError, token_endpoint_call

    form = {"grant_type": "refresh_token", "refresh_token": "mcprelay-doctor-" + secrets.token_urlsafe(24)}
    try:
        await token_endpoint_call(
            http, token_endpoint, client, form, server=server, correlation_id=new_correlation_id(),
            failure_type=ErrorType.REFRESH_FAILED, what="token endpoint", request_name="the doctor's probe",
        )
    except TokenEndpointError as exc:
        if exc.oauth_error in ("invalid_grant", "unsupported_grant_type"):
            return Finding("registration", "ok", f"{label} {client.client_id} is known to {issuer}", server=server)
        if exc.oauth_error in ("invalid_client", "unauthorized_client") or exc.status == 401:
            return Finding(
                "registration", "problem",
                f"{label} {client.client_id} is no longer accepted by {issuer} ({exc.oauth_error}): the "
                "registration was deleted or expired there",
                f"mcprelay auth logout --server {server} --forget-client, then mcprelay auth login --server {server}"
                if label != "configured client" else "check oauth.client_id and oauth.client_secret with the "
                "provider", server, str(ErrorType.LOGIN_REQUIRED), {"client_id": client.client_id},
            )
        return Finding("registration", "warning", f"could not tell whether {issuer} knows {label} "
                       f"{client.client_id}: {exc.message}", server=server)
    return Finding("registration", "warning", f"{issuer} answered a refresh with a token that cannot exist; "
                   "its token endpoint is not to be trusted", server=server)


def _duration(seconds: float) -> str:
    seconds = max(0, round(seconds))
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min"
    return f"{seconds / 3600:.1f} h"


def _token_findings(grant: Any, server: ServerConfig, now: float) -> list[Finding]:
    tokens = grant.tokens
    machine = bool(grant.extra.get("grant"))
    if tokens.expires_at is None:
        return [Finding("tokens", "ok", "logged in (the access token does not expire)", server=server.name)]
    left = tokens.expires_at - now
    if tokens.refresh_token or machine:
        how = "asked for again" if machine else "refreshed"
        state = f"expires in {_duration(left)}" if left > 0 else "expired"
        return [Finding("tokens", "ok", f"logged in; the access token {state} and is {how} by itself",
                        server=server.name)]
    if left <= 0:
        return [Finding("tokens", "problem", "the access token expired and there is no refresh token",
                        f"mcprelay auth login --server {server.name}", server.name, str(ErrorType.LOGIN_REQUIRED))]
    if left <= EXPIRY_WARN_S:
        return [Finding("tokens", "warning", f"the access token expires in {_duration(left)} and there is no "
                        "refresh token: a browser login will be needed then", "log in again before it expires "
                        f"(mcprelay auth login --server {server.name}); servers that offer offline_access give a "
                        "refresh token", server.name, details={"expires_in": round(left)})]
    return [Finding("tokens", "ok", f"logged in; the access token expires in {_duration(left)} (no refresh token)",
                    server=server.name)]


async def check_http_server(
    server: ServerConfig, store: TokenStore, http: httpx2.AsyncClient, home: Path,
) -> list[Finding]:
    """Reachable; metadata valid; clock; registration alive; tokens. ``server`` has its secrets resolved."""
    from mcprelay.config import MACHINE_GRANTS
    from mcprelay.connect import credentials_for
    from mcprelay.oauth.discovery import discover, probe
    from mcprelay.oauth.grant import load_grant
    from mcprelay.oauth.rfc7591 import ClientRegistration, registration_key

    name = server.name
    findings: list[Finding] = []
    try:
        challenge = await probe(http, server.url)
    except McpRelayError as exc:
        return [_from_error("reachable", exc, name)]
    if challenge is None:
        return [Finding("reachable", "ok", f"{server.url} answers and needs no login", server=name)]
    machine = server.oauth.grant in MACHINE_GRANTS
    cid = new_correlation_id()
    try:
        found = await discover(http, server.url, challenge=challenge, server=name, correlation_id=cid,
                               interactive=not machine)
    except McpRelayError as exc:
        return [Finding("reachable", "ok", f"{server.url} answers and asks for OAuth", server=name),
                _from_error("metadata", exc, name)]
    md = found.metadata
    if machine:
        how = f"{server.oauth.grant} with client {server.oauth.client_id or '(from the assertion)'}"
    elif server.oauth.client_id:
        how = f"the configured client {server.oauth.client_id}"
    elif server.oauth.client_metadata_url and md.client_id_metadata_document_supported:
        how = "a Client ID Metadata Document"
    elif md.registration_endpoint:
        how = "dynamic client registration"
    else:
        how = ""
        findings.append(Finding(
            "metadata", "problem", f"{md.issuer} offers no dynamic client registration and no client is configured",
            f"register a client with the provider and set mcpServers[].oauth.client_id for {name}",
            name, str(ErrorType.CLIENT_ID_REQUIRED),
        ))
    origin = "2025-03-26 default endpoints" if found.legacy else f"issuer {md.issuer}"
    pkce = "" if machine else ", PKCE S256"
    findings.insert(0, Finding("metadata", "ok", f"OAuth metadata valid: {origin}{pkce}"
                               + (f", client via {how}" if how else ""), server=name,
                               details={"issuer": md.issuer, "resource": found.resource}))
    findings.insert(0, Finding("reachable", "ok", f"{server.url} answers and asks for OAuth", server=name))
    clock = await _clock(http, md.issuer, name)
    if clock is not None:
        findings.append(clock)
    try:
        grant = await anyio.to_thread.run_sync(load_grant, store, name)
    except McpRelayError as exc:
        findings.append(_from_error("tokens", exc, name))
        return findings
    client = label = None
    if grant is not None and grant.issuer == md.issuer:
        try:
            client = credentials_for(server, store)(grant)
            label = {"dcr": "registered client", "preregistered": "configured client",
                     "cimd": "metadata-document client"}.get(grant.registration_kind, "client")
        except McpRelayError as exc:
            findings.append(_from_error("registration", exc, name))
        findings.extend(_token_findings(grant, server, time.time()))
    else:
        cached = await anyio.to_thread.run_sync(store.get, registration_key(name, md.issuer))
        if cached and not server.oauth.client_id:
            registration = ClientRegistration.from_dict(cached)
            client, label = registration.credentials, "registered client"
        elif server.oauth.client_id and not machine:
            from mcprelay.oauth.rfc7591 import preregistered

            client, label = preregistered(md, server.oauth.client_id, server.oauth.client_secret or None).credentials, (
                "configured client")
        findings.append(Finding("tokens", "info" if machine else "warning",
                                "not logged in yet" + ("" if machine else ": the first call will need a login"),
                                "" if machine else f"mcprelay auth login --server {name}", name))
    if client is not None and label is not None and md.token_endpoint and not found.legacy:
        findings.append(await _registration_alive(http, md.token_endpoint, client, md.issuer, name, label))
    return findings


def check_stdio_server(server: ServerConfig) -> list[Finding]:
    command = server.command
    has_dir = os.sep in command or bool(os.altsep and os.altsep in command)
    found = (command if os.access(command, os.X_OK) else None) if has_dir else shutil.which(command)
    if found is None:
        return [Finding("command", "problem", f"the command {command!r} is not found (or not executable)",
                        "install it, or give its full path in the server's command", server.name,
                        str(ErrorType.UPSTREAM_ERROR))]
    return [Finding("command", "ok", f"stdio server: {found}", server=server.name)]


async def check_server(server: ServerConfig, store: TokenStore, home: Path) -> list[Finding]:
    from mcprelay.httpclient import new_http_client
    from mcprelay.secretref import resolve_server

    if not server.enabled:
        return [Finding("server", "info", "disabled; not checked", server=server.name)]
    try:
        resolved = await anyio.to_thread.run_sync(resolve_server, server, home, store)
    except McpRelayError as exc:
        return [_from_error("secrets", exc, server.name)]
    found: list[Finding] = []
    if any(True for _ in _references(server)):
        found.append(Finding("secrets", "ok", "every secret reference resolves", server=server.name))
    if resolved.transport == "stdio":
        return found + check_stdio_server(resolved)
    async with new_http_client(timeout=SERVER_TIMEOUT_S) as http:
        http.headers.update(resolved.headers)  # an API-key server is probed with its key, as a session would be
        try:
            with anyio.fail_after(SERVER_TIMEOUT_S * 2):
                return found + await check_http_server(resolved, store, http, home)
        except TimeoutError:
            late = Finding("reachable", "problem", f"{server.url} did not answer within {SERVER_TIMEOUT_S * 2:.0f} s",
                           "check the URL and the network", server.name, str(ErrorType.UPSTREAM_ERROR))
            return [*found, late]


def _references(server: ServerConfig) -> Any:
    from mcprelay.secretref import server_references

    return server_references(server)


# ---------------------------------------------------------------------------- everything


@dataclass
class Report:
    config: str | None
    home: str
    findings: list[Finding]

    @property
    def problems(self) -> int:
        return sum(f.status == "problem" for f in self.findings)

    @property
    def warnings(self) -> int:
        return sum(f.status == "warning" for f in self.findings)

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.problems == 0, "problems": self.problems, "warnings": self.warnings,
                "config": self.config, "home": self.home, "findings": [f.to_dict() for f in self.findings]}


async def run_checks(
    *, config_path: Path | None, config_named: bool, home: Path, only: str | None = None,
    excluded_ports: list[tuple[int, int]] | None = None,
) -> Report:
    """Every check (``only``: the system checks and that one server), findings in a stable order."""
    from mcprelay.config import load_config
    from mcprelay.store import open_store

    findings: list[Finding] = []
    loaded = None
    exists = config_path is not None and await anyio.to_thread.run_sync(config_path.exists)
    try:
        loaded = load_config(config_path if (config_named or exists) else None)
    except McpRelayError as exc:
        findings.append(_from_error("config", exc))
    if loaded is not None:
        where = str(loaded.path) if loaded.path else "no config file (nothing configured)"
        count = len(loaded.config.mcp_servers)
        findings.append(Finding("config", "ok", f"{where}: loads, {count} server{'s' if count != 1 else ''}"))
        findings.extend(Finding("config", "warning", text, "remove the field, or ignore this") for text in
                        loaded.warnings)
        if only is not None:
            loaded.config.server(only)  # an unknown name is a usage error, raised to the command
    token_store = loaded.config.token_store if loaded is not None else "auto"
    findings.extend(await anyio.to_thread.run_sync(check_store, token_store, home))
    findings.extend(check_loopback(loaded.config if loaded else None, excluded=excluded_ports))
    if loaded is None:
        return Report(str(config_path) if config_path else None, str(home), findings)
    try:
        store = open_store(token_store, home)
    except McpRelayError:
        return Report(str(loaded.path) if loaded.path else None, str(home), findings)
    servers = [s for s in loaded.config.mcp_servers if only in (None, s.name)]
    results: dict[str, list[Finding]] = {}

    async def one(server: ServerConfig) -> None:
        try:
            results[server.name] = await check_server(server, store, home)
        except McpRelayError as exc:
            results[server.name] = [_from_error("server", exc, server.name)]

    async with anyio.create_task_group() as tg:
        for server in servers:
            tg.start_soon(one, server)
    for server in servers:
        findings.extend(results.get(server.name, []))
    return Report(str(loaded.path) if loaded.path else None, str(home), findings)

