"""The configuration file: both ``mcpServers`` shapes of the contract, validated with pydantic.

A config written for MCPProxy loads as it is: its fields that mcprelay does not use are reported once
as warnings. Any other unknown field is an error naming the field, the server and the file, because
a typo in an OAuth setting (``callback_prot``) silently ignored is exactly the kind of failure that
surfaces weeks later as a broken login.
"""

from __future__ import annotations

import os
import re
import stat
import sys
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from mcprelay import safejson
from mcprelay.errors import ErrorType, McpRelayError, config_error

CONFIG_KEY_CALLBACK_PORT = "mcpServers[].oauth.callback_port"

Protocol = Literal["http", "streamable-http", "sse", "stdio", "auto"]
GrantKind = Literal["authorization_code", "device_code", "client_credentials", "jwt_bearer", "token_exchange"]
MACHINE_GRANTS = frozenset({"client_credentials", "jwt_bearer", "token_exchange"})

# Fields of MCPProxy's mcp_config.json that mcprelay accepts and ignores (with one warning each).
MCPPROXY_TOP_LEVEL_FIELDS = frozenset(
    {
        "tray_endpoint", "enable_socket", "data_dir", "enable_tray", "debug_search", "profiles", "top_k",
        "tools_limit", "tool_response_limit", "call_tool_timeout", "max_result_size_chars",
        "max_concurrent_requests", "queue_size", "queue_timeout", "server_concurrency_defaults",
        "toon_output", "toon_min_savings_pct", "health_check_interval", "tool_discovery_interval",
        "init_timeout", "http_read_timeout", "http_write_timeout", "http_idle_timeout", "environment",
        "logging", "docker_isolation", "tls", "read_only_mode", "disable_management", "allow_server_add",
        "allow_server_remove", "enable_prompts", "check_server_repo", "features", "registries",
        "tokenizer", "enable_code_execution", "code_execution_timeout_ms", "code_execution_max_tool_calls",
        "code_execution_pool_size", "enable_web_ui", "intent_declaration", "sensitive_data_detection",
        "output_sanitization", "quarantine_enabled", "security", "telemetry", "auto_update",
        "require_mcp_auth", "trusted_proxies", "audit_log", "annotation_overrides", "tool_response_mode",
        "direct_tool_response_mode", "activity_retention_days", "activity_max_records",
        "activity_max_response_size", "activity_cleanup_interval_min", "oauth_expiry_warning_hours",
        "forward_headers", "auto_approve_tool_changes", "auto_baseline_scan",
    }
)
MCPPROXY_SERVER_FIELDS = frozenset(
    {
        "working_dir", "quarantined", "created", "updated", "isolation", "repository_url",
        "health_check_interval", "tool_discovery_interval", "init_timeout", "toon_output",
        "skip_quarantine", "disabled_tools", "env_file", "description", "annotation_overrides",
        "max_concurrent_requests", "queue_size", "queue_timeout", "reconnect_on_use", "source",
        "registry", "shared", "forward_headers", "tool_response_mode",
    }
)
MCPPROXY_OAUTH_FIELDS = frozenset({"use_dynamic_registration", "auth_url", "token_url", "provider"})

_NAME_RE = re.compile(r"[A-Za-z0-9_-]+")
_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")  # an RFC 9110 token

#: A configuration file larger than this is refused before it is read: real ones are a few KiB, and
#: reading (and parsing) an arbitrary file whole is how a 47 MB config took 12 s and 544 MB.
MAX_CONFIG_BYTES = 1024 * 1024

#: Names Windows will not create as files, whatever the extension (a server's log and state files).
WINDOWS_DEVICE_NAMES = frozenset(
    {"con", "prn", "aux", "nul", *(f"com{i}" for i in range(1, 10)), *(f"lpt{i}" for i in range(1, 10))}
)

#: The default cap on one upstream message (a tool result), in bytes; ``max_result_bytes`` changes it.
DEFAULT_MAX_RESULT_BYTES = 16 * 1024 * 1024
_MIN_RESULT_BYTES = 1024
_MAX_RESULT_BYTES = 1024 * 1024 * 1024


class _Strict(BaseModel):
    # strict: "enabled": "yes" or "callback_port": "8080" is a mistake to report, not a value to guess at.
    model_config = ConfigDict(extra="forbid", populate_by_name=True, strict=True)


def _no_control(value: str, what: str) -> str:
    if "\x00" in value:
        raise ValueError(f"{what} must not contain a NUL character")
    return value


def _http_url(value: str) -> str:
    """An ``http(s)://host…`` URL, checked the way the transports will parse it later."""
    if not value:
        return value
    try:
        parts = urlsplit(value)
        port = parts.port  # raises for a port that is not a number or out of range
    except ValueError as exc:
        raise ValueError(f"{value!r} is not a valid URL ({exc})") from None
    if parts.scheme not in {"http", "https"}:
        raise ValueError(f"{value!r} must be an http:// or https:// URL, not {parts.scheme or 'scheme-less'}")
    if not parts.hostname:
        raise ValueError(f"{value!r} has no host")
    del port
    return value


class OAuthConfig(_Strict):
    client_id: str = ""
    client_secret: str = Field(default="", repr=False)
    client_metadata_url: str = ""
    redirect_uri: str = ""
    callback_port: int | None = Field(default=None, ge=1, le=65535)
    scopes: list[str] = Field(default_factory=list)
    extra_params: dict[str, str] = Field(default_factory=dict)
    pkce_enabled: bool | None = None
    login_timeout: float = Field(default=300.0, gt=0, le=3600)
    # How tokens are obtained (see the README's "Grants" section). Machine grants need no browser.
    grant: GrantKind = "authorization_code"
    token_endpoint_auth_method: Literal["", "none", "client_secret_basic", "client_secret_post", "private_key_jwt"] = ""
    # private_key_jwt (RFC 7523 client assertion): the PEM key comes from a file or an environment
    # variable, never from argv; the algorithm follows the key (EC P-256 → ES256, RSA → RS256).
    private_key_file: str = ""
    private_key_env: str = ""
    signing_alg: Literal["", "ES256", "RS256"] = ""
    # jwt_bearer (workload identity federation): the workload's JWT, read again at every acquisition.
    assertion_file: str = ""
    assertion_env: str = ""
    # token_exchange (enterprise-managed authorization): the ID token is exchanged at the IdP for an
    # ID-JAG (RFC 8693), which the MCP server's authorization server takes as a JWT bearer grant.
    idp_token_endpoint: str = ""
    idp_client_id: str = ""
    idp_client_secret: str = Field(default="", repr=False)
    id_token_file: str = ""
    id_token_env: str = ""
    # DPoP (RFC 9449): null = when the resource asks for it; true = always; false = never.
    dpop: bool | None = None
    # Identity-provider switches: Entra rejects `resource` next to scopes (AADSTS9010010) and wants
    # `scope` repeated on refresh.
    send_resource: bool = True
    scope_on_refresh: bool = False

    @field_validator("scopes", mode="before")
    @classmethod
    def _split_scopes(cls, value: Any) -> Any:
        return value.split() if isinstance(value, str) else value

    @field_validator("client_metadata_url")
    @classmethod
    def _metadata_url(cls, value: str) -> str:
        return _http_url(value)

    @field_validator("redirect_uri")
    @classmethod
    def _loopback_redirect(cls, value: str) -> str:
        if not value:
            return value
        try:
            parts = urlsplit(value)
            port = parts.port
        except ValueError:
            port = None
            parts = urlsplit("")
        if parts.scheme != "http" or parts.hostname not in {"127.0.0.1", "localhost", "::1"} or not port:
            raise ValueError(
                "must be a loopback URL with a port, such as http://127.0.0.1:8765/callback (RFC 8252 §7.3)"
            )
        return value


class ServerConfig(_Strict):
    name: str
    url: str = ""
    protocol: Protocol = "auto"
    command: str = ""
    args: list[str] = Field(default_factory=list)
    # Not in repr: a resolved copy (see secretref.py) holds the secrets these may refer to.
    env: dict[str, str] = Field(default_factory=dict, repr=False)
    headers: dict[str, str] = Field(default_factory=dict, repr=False)
    enabled: bool = True
    #: Through the gateway: ``SERVER__NAME`` tools and prompts and ``mcprelay://SERVER/URI`` resources (true),
    #: or the server's own names and URIs (false; a name another server already uses is skipped).
    prefix: bool = True
    oauth: OAuthConfig = Field(default_factory=OAuthConfig)
    #: The largest message (tool result) accepted from this server; None: the top-level value.
    max_result_bytes: int | None = Field(default=None, ge=_MIN_RESULT_BYTES, le=_MAX_RESULT_BYTES)

    @field_validator("name")
    @classmethod
    def _valid_name(cls, value: str) -> str:
        if not _NAME_RE.fullmatch(value) or "__" in value:
            raise ValueError("use letters, digits, '-' and '_' only, and no '__' (it separates server and tool)")
        if sys.platform == "win32" and value.lower() in WINDOWS_DEVICE_NAMES:
            raise ValueError(f"{value!r} is a Windows device name and cannot name the server's files; rename it")
        return value

    @field_validator("url")
    @classmethod
    def _valid_url(cls, value: str) -> str:
        return _http_url(value)

    @field_validator("command")
    @classmethod
    def _valid_command(cls, value: str) -> str:
        return _no_control(value, "command")

    @field_validator("args")
    @classmethod
    def _valid_args(cls, value: list[str]) -> list[str]:
        return [_no_control(arg, "an argument") for arg in value]

    @field_validator("env")
    @classmethod
    def _valid_env(cls, value: dict[str, str]) -> dict[str, str]:
        for name, text in value.items():
            if not name or "=" in name or "\x00" in name:
                raise ValueError(f"{name!r} is not an environment variable name")
            _no_control(text, f"the value of {name}")
        return value

    @field_validator("headers")
    @classmethod
    def _valid_headers(cls, value: dict[str, str]) -> dict[str, str]:
        for name, text in value.items():
            if not _HEADER_NAME.fullmatch(name):
                raise ValueError(f"{name!r} is not an HTTP header name")
            if any(c in text for c in "\r\n\x00"):
                raise ValueError(f"the value of header {name!r} must not contain CR, LF or NUL")
        return value

    @property
    def transport(self) -> Literal["http", "sse", "stdio"]:
        """The protocol actually used: ``auto`` is inferred from the other fields."""
        if self.protocol in ("http", "streamable-http"):
            return "http"
        if self.protocol in ("sse", "stdio"):
            return self.protocol
        if self.command:
            return "stdio"
        return "sse" if urlsplit(self.url).path.rstrip("/").endswith("/sse") else "http"


class Config(_Strict):
    mcp_servers: list[ServerConfig] = Field(default_factory=list, alias="mcpServers")
    token_store: str = "auto"
    routing_mode: Literal["aggregate", "search"] = "aggregate"
    listen: str = "127.0.0.1:8080"
    api_key: str = Field(default="", repr=False)
    #: How long the first list request of a session waits for upstreams still making their first connection.
    first_list_timeout: float = Field(default=5.0, ge=0, le=120)
    #: Plain tool calls answered beside the SDK's server (false: through it; slower, for comparison).
    fast_path: bool = True
    #: A gateway in a person's desktop session opens the browser itself for a server that needs a login.
    auto_login: bool = True
    #: A loopback listener without ``api_key`` still requires the per-home key (``<home>/gateway.key``);
    #: ``false`` serves anyone who can reach the port (every local user), with a warning at start-up.
    owner_only: bool = True
    max_result_bytes: int = Field(default=DEFAULT_MAX_RESULT_BYTES, ge=_MIN_RESULT_BYTES, le=_MAX_RESULT_BYTES)
    #: Pinned tools (gateway/catalog/pins.py): hold back tools that are new or changed (``changed``: a server's
    #: tools are pinned as they are when it is first seen; ``all``: every tool waits for approval; ``off``).
    tool_pinning: Literal["off", "changed", "all"] = "changed"

    @field_validator("token_store")
    @classmethod
    def _store_kind(cls, value: str) -> str:
        if value not in {"auto", "keyring", "file", "memory"} and not value.startswith(("redis://", "rediss://")):
            raise ValueError("use auto, keyring, file or a redis:// URL")
        return value

    def server(self, name: str) -> ServerConfig:
        for server in self.mcp_servers:
            if server.name == name:
                return server
        known = ", ".join(s.name for s in self.mcp_servers) or "none"
        raise McpRelayError(
            ErrorType.CONFIG_INVALID,
            f"no server named {name!r} in the configuration (configured: {known})",
            suggestion="check the name with `mcprelay auth status`, or add the server to mcpServers",
            server=name,
        )


class LoadedConfig:
    """A validated config, the file it came from, and the warnings produced while loading it."""

    def __init__(self, config: Config, path: Path | None, warnings: list[str]) -> None:
        self.config = config
        self.path = path
        self.warnings = warnings


def _strip_mcpproxy_fields(
    raw: dict[str, Any], allowed: frozenset[str], where: str, warnings: list[str]
) -> dict[str, Any]:
    kept = {}
    for key, value in raw.items():
        if key in allowed:
            warnings.append(f"{where}: field {key!r} (from MCPProxy) is not used by mcprelay and is ignored")
        else:
            kept[key] = value
    return kept


def _normalise(raw: Any, source: str, warnings: list[str]) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise config_error(f"{source}: the top level must be a JSON object with an 'mcpServers' field", file=source)
    raw = _strip_mcpproxy_fields(raw, MCPPROXY_TOP_LEVEL_FIELDS, source, warnings)
    servers = raw.get("mcpServers", [])
    if isinstance(servers, dict):
        keyed = []
        for name, body in servers.items():
            if not isinstance(body, dict):
                raise config_error(f"{source}: server {name!r} must be an object", server=name, file=source)
            inner = body.get("name", name)
            if inner != name:
                raise config_error(
                    f"{source}: server {name!r} has an inner \"name\" {inner!r}; "
                    "in the keyed shape the key is the name",
                    suggestion="remove the inner \"name\", or rename the key",
                    server=name, file=source, field="name",
                )
            keyed.append({**body, "name": name})
        servers = keyed
    if not isinstance(servers, list):
        raise config_error(
            f"{source}: 'mcpServers' must be a list of servers or an object keyed by server name", file=source
        )
    cleaned = []
    for index, server in enumerate(servers):
        if not isinstance(server, dict):
            raise config_error(f"{source}: mcpServers[{index}] must be an object", file=source)
        label = f"{source}: server {server.get('name', index)!r}"
        server = _strip_mcpproxy_fields(server, MCPPROXY_SERVER_FIELDS, label, warnings)
        if isinstance(server.get("oauth"), dict):
            server["oauth"] = _strip_mcpproxy_fields(server["oauth"], MCPPROXY_OAUTH_FIELDS, label, warnings)
        cleaned.append(server)
    return {**raw, "mcpServers": cleaned}


def _describe(error: ValidationError, data: dict[str, Any], source: str) -> McpRelayError:
    first = error.errors()[0]
    loc = list(first["loc"])
    server_name: str | None = None
    if len(loc) >= 2 and loc[0] == "mcpServers" and isinstance(loc[1], int):
        servers = data.get("mcpServers", [])
        name = servers[loc[1]].get("name", loc[1]) if loc[1] < len(servers) else loc[1]
        server_name = name if isinstance(name, str) else str(loc[1])
        field = ".".join(str(p) for p in loc[2:]) or "(server)"
        where = f"server {server_name!r}, field {field!r}"
    else:
        field = ".".join(str(p) for p in loc) or "(top level)"
        where = f"field {field!r}"
    if first["type"] == "extra_forbidden":
        what = "unknown field"
        hint = "remove it or fix its spelling; see the README's configuration section"
    else:
        what = first["msg"]
        hint = "fix the value; see the README's configuration section"
    more = f" (and {len(error.errors()) - 1} more problem(s))" if len(error.errors()) > 1 else ""
    return config_error(
        f"{source}: {where}: {what}{more}",
        suggestion=hint,
        server=server_name,
        file=source,
        field=field,
    )


def parse_config(raw: Any, source: str = "<config>") -> LoadedConfig:
    warnings: list[str] = []
    data = _normalise(raw, source, warnings)
    try:
        config = Config.model_validate(data)
    except ValidationError as exc:
        raise _describe(exc, data, source) from None
    seen: dict[str, str] = {}
    for server in config.mcp_servers:
        folded = server.name.casefold()
        if folded in seen:
            other = seen[folded]
            same = "twice" if other == server.name else f"twice ({other!r} and {server.name!r} differ only in case, " \
                "and share their files on macOS and Windows)"
            raise config_error(f"{source}: server {server.name!r} is defined {same}", server=server.name, file=source)
        seen[folded] = server.name
        if server.max_result_bytes is None:
            server.max_result_bytes = config.max_result_bytes
        label = f"{source}: server {server.name!r}"
        if server.transport == "stdio" and not server.command:
            raise config_error(f"{label}: protocol stdio needs 'command'", server=server.name)
        if server.transport != "stdio" and not server.url:
            raise config_error(f"{label}: needs 'url' (or 'command' for a local stdio server)", server=server.name)
        if server.oauth.pkce_enabled is False:
            warnings.append(f"{label}: 'pkce_enabled: false' is ignored: mcprelay always uses PKCE S256")
        _check_grant(server.oauth, label, server.name)
        if server.oauth.redirect_uri and server.oauth.callback_port:
            port = urlsplit(server.oauth.redirect_uri).port
            if port != server.oauth.callback_port:
                raise config_error(
                    f"{label}: oauth.redirect_uri port {port} and oauth.callback_port "
                    f"{server.oauth.callback_port} disagree",
                    suggestion="set only one of them",
                    server=server.name,
                )
    return LoadedConfig(config, None, warnings)


def _check_grant(oauth: OAuthConfig, label: str, server: str) -> None:
    """What each grant needs, checked at load time so that a missing key is named before any request."""

    def need(condition: bool, what: str) -> None:
        if not condition:
            raise config_error(f"{label}: oauth.grant {oauth.grant!r} needs {what}", server=server,
                               suggestion="see the README's Grants table")

    for a, b in (("private_key_file", "private_key_env"), ("assertion_file", "assertion_env"),
                 ("id_token_file", "id_token_env")):
        if getattr(oauth, a) and getattr(oauth, b):
            raise config_error(f"{label}: set only one of oauth.{a} and oauth.{b}", server=server)
    has_key = bool(oauth.private_key_file or oauth.private_key_env)
    if oauth.token_endpoint_auth_method == "private_key_jwt" and not has_key:
        raise config_error(
            f"{label}: oauth.token_endpoint_auth_method 'private_key_jwt' needs oauth.private_key_file or "
            "oauth.private_key_env", server=server,
        )
    if oauth.grant == "client_credentials":
        need(bool(oauth.client_id), "oauth.client_id (a client registered with the authorization server)")
        need(bool(oauth.client_secret) or has_key, "oauth.client_secret or a private key (oauth.private_key_file "
             "or oauth.private_key_env)")
    elif oauth.grant == "jwt_bearer":
        need(bool(oauth.assertion_file or oauth.assertion_env), "oauth.assertion_file or oauth.assertion_env "
             "(where the workload's JWT is)")
    elif oauth.grant == "token_exchange":
        need(bool(oauth.client_id), "oauth.client_id (the client at the MCP server's authorization server)")
        need(bool(oauth.idp_token_endpoint), "oauth.idp_token_endpoint (the enterprise IdP's token endpoint)")
        need(bool(oauth.idp_client_id), "oauth.idp_client_id (this client's id at the IdP)")
        need(bool(oauth.id_token_file or oauth.id_token_env), "oauth.id_token_file or oauth.id_token_env "
             "(where the ID token from the IdP is)")


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "not a regular file"


def _size_text(n: int) -> str:
    return f"{n / (1024 * 1024):.1f} MiB" if n >= 1024 * 1024 else f"{n:,} bytes"


def read_config_file(path: Path) -> bytes:
    """The bytes of ``path``: a regular file of at most :data:`MAX_CONFIG_BYTES`, else a config error.

    Opened without blocking (a FIFO must not hang the reader) and checked on the open descriptor, so
    what is checked is what is read; read with the cap applied, so a file that grows while it is
    read (or lies about its size, as ``/dev/zero`` does) never costs more than the cap.
    """
    source = str(path)
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_BINARY", 0)
    flags |= getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        raise config_error(
            f"configuration file {source} does not exist",
            suggestion="create it, or point --config / MCPRELAY_CONFIG at the right file",
            file=source,
        ) from None
    except OSError as exc:
        kind = ""
        try:
            kind = f" ({_kind(os.stat(path).st_mode)})" if not stat.S_ISREG(os.stat(path).st_mode) else ""
        except OSError:
            pass
        raise config_error(
            f"cannot read configuration file {source}{kind}: {exc.strerror or exc}", file=source,
            suggestion="point --config / MCPRELAY_CONFIG at a readable JSON file",
        ) from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise config_error(
                f"configuration file {source} is {_kind(info.st_mode)}, not a regular file",
                suggestion="point --config / MCPRELAY_CONFIG at a JSON file", file=source,
            )
        too_big = config_error(
            f"configuration file {source} is {_size_text(max(info.st_size, MAX_CONFIG_BYTES + 1))}; "
            f"configuration files are limited to {_size_text(MAX_CONFIG_BYTES)}",
            suggestion="check that --config names the right file (a config is a few KiB)", file=source,
        )
        if info.st_size > MAX_CONFIG_BYTES:
            raise too_big
        if sys.platform != "win32":
            os.set_blocking(fd, True)  # a regular file: reads never block for long, and EAGAIN must not occur
        chunks: list[bytes] = []
        size = 0
        while chunk := os.read(fd, MAX_CONFIG_BYTES + 1 - size):
            chunks.append(chunk)
            size += len(chunk)
            if size > MAX_CONFIG_BYTES:
                raise too_big
        return b"".join(chunks)
    except OSError as exc:
        raise config_error(f"cannot read configuration file {source}: {exc.strerror or exc}", file=source) from None
    finally:
        os.close(fd)


def _no_duplicate_keys(source: str) -> Any:
    def pairs_to_dict(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        result: dict[str, Any] = {}
        for key, value in pairs:
            if key in result:
                raise config_error(
                    f"{source}: the key {key!r} appears twice in one object (JSON would keep only the last)",
                    suggestion="remove one of them", file=source, field=key,
                )
            result[key] = value
        return result

    return pairs_to_dict


def parse_config_bytes(data: bytes, source: str) -> LoadedConfig:
    """A config from the bytes of a file: strict JSON (see :mod:`mcprelay.safejson`), then :func:`parse_config`."""
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]  # a UTF-8 byte order mark, as Windows editors write it
    try:
        raw = safejson.loads(data, object_pairs_hook=_no_duplicate_keys(source))
    except safejson.JsonRejected as exc:
        hint = {
            "not_utf8": "save the file as UTF-8",
            "not_json": "fix the JSON syntax (a trailing comma is the usual culprit)",
        }.get(exc.reason, "fix the value; see the README's configuration section")
        raise config_error(f"{source}: {exc.message}", suggestion=hint, file=source) from None
    return parse_config(raw, source)


def load_config(path: Path | None) -> LoadedConfig:
    """Load ``path``; a missing default file is an empty config, a missing named file is an error.

    Whatever the file holds, the outcome is a :class:`LoadedConfig` or a ``config_invalid``
    :class:`McpRelayError` (exit code 2) that names the file and, where it applies, the server and field.
    """
    if path is None:
        return LoadedConfig(Config(), None, [])
    loaded = parse_config_bytes(read_config_file(path), str(path))
    loaded.path = path
    return loaded


def default_config_path() -> Path:
    import platformdirs

    return Path(platformdirs.user_config_dir("mcprelay")) / "config.json"


def resolve_config_path(option: str | None) -> tuple[Path, bool]:
    """The config path and whether the user named it (a named file must exist)."""
    if option:
        return Path(option).expanduser(), True
    env = os.environ.get("MCPRELAY_CONFIG")
    if env:
        return Path(env).expanduser(), True
    return default_config_path(), False
