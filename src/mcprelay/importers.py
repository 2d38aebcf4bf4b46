"""Other MCP clients' config files, read as mcprelay server entries (``mcprelay upstream import``).

Each client writes servers its own way; what is read here is what their documentation specifies:

* ``claude-desktop`` — ``claude_desktop_config.json``: ``{"mcpServers": {NAME: {"command", "args",
  "env"}}}`` (local servers only), beside the app's other settings.
* ``claude-code`` — a project's ``.mcp.json`` (``{"mcpServers": {...}}``) or ``~/.claude.json``
  (user servers at the top, each project's under ``projects.PATH.mcpServers``). Entries have
  ``type`` ``stdio`` (the default), ``http`` or ``sse``; ``${VAR}`` and ``${VAR:-default}`` are
  expanded from the environment by Claude Code.
* ``cursor`` — ``~/.cursor/mcp.json`` or a project's ``.cursor/mcp.json``: ``{"mcpServers": {...}}``
  with ``command``/``args``/``env`` or ``url``/``headers``; ``${env:NAME}``, ``${userHome}``,
  ``${workspaceFolder}`` are interpolated.
* ``vscode`` — ``.vscode/mcp.json`` or the user profile's ``mcp.json`` (JSON with comments):
  ``{"servers": {NAME: {"type": "stdio"|"http"|"sse", ...}}, "inputs": [...]}``, or a
  ``settings.json`` with the same under ``"mcp"``; ``${input:ID}`` prompts the user, ``${env:NAME}``
  and ``${workspaceFolder}`` are interpolated.
* ``codex`` — ``~/.codex/config.toml``: ``[mcp_servers.NAME]`` tables with ``command``, ``args``,
  ``env``, or ``url``, ``bearer_token_env_var``, ``http_headers``, ``env_http_headers``;
  ``enabled = false`` switches one off.

Secrets are carried over as references, never as copies made here: an environment variable the
source would have expanded becomes ``${env:NAME}`` (which mcprelay resolves at use), VS Code's
``${input:ID}`` becomes ``${keyring:ID}`` (store it with ``mcprelay secrets set ID``), a Codex
``bearer_token_env_var`` becomes ``Authorization: Bearer ${env:NAME}``. What mcprelay has no
equivalent for (a working directory, an env file, timeouts, tool filters) is reported and left out.

Pure functions of the file's text: no file is read or written here.
"""

from __future__ import annotations

import json
import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import PurePath
from typing import Any

FORMATS = ("claude-desktop", "claude-code", "cursor", "vscode", "codex")

_NAME_OK = re.compile(r"[A-Za-z0-9_-]+")


class UnreadableConfig(ValueError):
    """The file is not a config of the format asked for (or of any format, when detecting)."""


@dataclass
class Imported:
    """One server read from another client's config, as an mcprelay ``mcpServers`` entry."""

    name: str
    body: dict[str, Any]
    source_name: str
    where: str = ""  # e.g. "projects./home/me/app" in ~/.claude.json
    notes: list[str] = field(default_factory=list)


@dataclass
class ImportResult:
    format: str
    servers: list[Imported]
    notes: list[str] = field(default_factory=list)


# ---------------------------------------------------------------------------- reading the file


def strip_jsonc(text: str) -> str:
    """JSON with comments (``//``, ``/* */``) and trailing commas, as VS Code writes it, as plain JSON.

    Strings are copied untouched (a ``//`` in a URL stays); comments become spaces so that error
    positions still point at the right line.
    """
    out: list[str] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c == '"':
            j = i + 1
            while j < n and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            out.append(text[i:j + 1])
            i = j + 1
        elif text.startswith("//", i):
            j = text.find("\n", i)
            j = n if j < 0 else j
            out.append(" " * (j - i))
            i = j
        elif text.startswith("/*", i):
            j = text.find("*/", i + 2)
            j = n if j < 0 else j + 2
            out.append(re.sub(r"[^\n]", " ", text[i:j]))
            i = j
        else:
            out.append(c)
            i += 1
    joined = "".join(out)
    # A comma followed only by whitespace and a closing bracket (strings are already untouched above,
    # but a string may contain ",]" — so this runs on a copy with strings blanked, positions kept).
    blank = re.sub(r'"(?:[^"\\]|\\.)*"', lambda m: '"' + " " * (len(m.group(0)) - 2) + '"', joined)
    cut = [m.start() for m in re.finditer(r",\s*[\]}]", blank)]
    chars = list(joined)
    for position in cut:
        chars[position] = " "
    return "".join(chars)


def _load_json(text: str, jsonc: bool) -> Any:
    try:
        return json.loads(strip_jsonc(text) if jsonc else text)
    except ValueError as exc:
        if not jsonc:
            try:
                return json.loads(strip_jsonc(text))
            except ValueError:
                pass
        raise UnreadableConfig(f"not valid JSON: {exc}") from None


def detect(text: str, filename: str) -> str:
    """The format of a config file from its name and content (see the module docstring)."""
    path = PurePath(filename.replace("\\", "/"))
    name = path.name.lower()
    parents = [p.lower() for p in path.parts[:-1]]
    if name.endswith(".toml"):
        return "codex"
    if name == "claude_desktop_config.json":
        return "claude-desktop"
    if name in (".mcp.json", ".claude.json") or ".claude" in parents:
        return "claude-code"
    if ".cursor" in parents:
        return "cursor"
    if ".vscode" in parents or name == "settings.json":
        return "vscode"
    try:
        data = _load_json(text, jsonc=True)
    except UnreadableConfig:
        try:
            tomllib.loads(text)
        except tomllib.TOMLDecodeError:
            raise UnreadableConfig("neither JSON nor TOML: not a config file of claude-desktop, claude-code, cursor, "
                               "vscode or codex") from None
        return "codex"
    if not isinstance(data, dict):
        raise UnreadableConfig("the top level is not an object")
    if isinstance(data.get("servers"), dict) or isinstance(data.get("mcp"), dict):
        return "vscode"
    if isinstance(data.get("projects"), dict):
        return "claude-code"
    servers = data.get("mcpServers")
    if isinstance(servers, dict):
        bodies = [b for b in servers.values() if isinstance(b, dict)]
        if any("type" in b for b in bodies):
            return "claude-code"
        if any("url" in b for b in bodies):
            return "cursor"
        return "claude-desktop"
    raise UnreadableConfig("no MCP servers found (no \"mcpServers\", \"servers\" or [mcp_servers] section)")


def parse(text: str, filename: str, fmt: str | None = None, *, home_dir: str | None = None) -> ImportResult:
    """The servers of one config file; ``fmt`` None detects it (:func:`detect`)."""
    fmt = fmt or detect(text, filename)
    if fmt not in FORMATS:
        raise UnreadableConfig(f"unknown format {fmt!r}; use one of {', '.join(FORMATS)}")
    ctx = _Context(fmt, filename, home_dir or os.path.expanduser("~"))
    if fmt == "codex":
        return _codex(text, ctx)
    data = _load_json(text, jsonc=fmt in ("vscode", "cursor"))
    if not isinstance(data, dict):
        raise UnreadableConfig("the top level is not an object")
    if fmt == "vscode":
        return _vscode(data, ctx)
    return _mcp_servers(data, ctx)


@dataclass
class _Context:
    fmt: str
    filename: str
    home_dir: str

    @property
    def workspace(self) -> str | None:
        """The workspace folder of a project file (``PROJECT/.vscode/mcp.json`` → ``PROJECT``)."""
        parts = PurePath(self.filename.replace("\\", "/"))
        for marker in (".vscode", ".cursor"):
            if parts.parent.name == marker:
                return str(parts.parent.parent)
        if parts.name == ".mcp.json":
            return str(parts.parent)
        return None


# ---------------------------------------------------------------------------- variables


def _claude_vars(text: str, ctx: _Context, notes: list[str], where: str, *, secret_field: bool) -> str:
    """Claude Code's ``${VAR}`` / ``${VAR:-default}``: a reference where mcprelay resolves one (env and
    header values); elsewhere (command, args, url) kept as written, with a note."""

    def one(m: re.Match[str]) -> str:
        name, default = m.group(1), m.group(3)
        if secret_field:
            if default is not None:
                notes.append(f"{where}: ${{{name}:-…}} has a default, which mcprelay does not support; it now "
                             f"needs {name} to be set")
            return f"${{env:{name}}}"
        # Never copied from this environment into the file: the variable may hold a secret.
        notes.append(f"{where}: ${{{name}}} is expanded by Claude Code but not by mcprelay (it expands only env "
                     "and header values); kept as written, replace it with the value")
        return m.group(0)

    return re.sub(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(:-([^}]*))?\}", one, text)


def _editor_vars(text: str, ctx: _Context, notes: list[str], where: str, *, secret_field: bool) -> str:
    """Cursor's and VS Code's ``${env:NAME}``, ``${input:ID}``, ``${userHome}``, ``${workspaceFolder}``."""

    def one(m: re.Match[str]) -> str:
        kind, _, arg = m.group(1).partition(":")
        if kind == "env" and arg:
            if secret_field:
                return f"${{env:{arg}}}"
            notes.append(f"{where}: ${{env:{arg}}} is expanded by {ctx.fmt} but not by mcprelay (it expands only "
                         "env and header values); kept as written, replace it with the value")
            return m.group(0)
        if kind == "input" and arg:
            notes.append(f"{where}: ${{input:{arg}}} (which {ctx.fmt} asks you for) became ${{keyring:{arg}}}: "
                         f"store it with `mcprelay secrets set {arg}`")
            return f"${{keyring:{arg}}}"
        if kind == "userHome":
            return ctx.home_dir
        if kind in ("workspaceFolder", "workspaceRoot") and ctx.workspace:
            return ctx.workspace
        if kind == "workspaceFolderBasename" and ctx.workspace:
            return PurePath(ctx.workspace).name
        if kind in ("pathSeparator", "/"):
            return os.sep
        notes.append(f"{where}: ${{{m.group(1)}}} cannot be resolved outside {ctx.fmt}; kept as written")
        return m.group(0)

    return re.sub(r"\$\{([A-Za-z/][^}]*)\}", one, text)


def _vars(text: Any, ctx: _Context, notes: list[str], where: str, *, secret_field: bool = False) -> Any:
    if not isinstance(text, str) or "${" not in text:
        return text
    if ctx.fmt == "claude-code":
        return _claude_vars(text, ctx, notes, where, secret_field=secret_field)
    if ctx.fmt in ("cursor", "vscode"):
        return _editor_vars(text, ctx, notes, where, secret_field=secret_field)
    return text


# ---------------------------------------------------------------------------- entries


_IGNORED = {
    "cwd": "mcprelay starts servers in its own working directory",
    "envFile": "set those variables with --env or `mcprelay secrets`",
    "env_file": "set those variables with --env or `mcprelay secrets`",
    "timeout": "mcprelay has its own timeouts", "startup_timeout_sec": "mcprelay has its own timeouts",
    "startup_timeout_ms": "mcprelay has its own timeouts", "tool_timeout_sec": "mcprelay has its own timeouts",
    "enabled_tools": "mcprelay offers all of a server's tools",
    "disabled_tools": "mcprelay offers all of a server's tools",
    "dev": "VS Code's own debugging settings", "sandbox": "no sandbox setting in mcprelay",
    "trust": "no trust setting in mcprelay", "env_vars": "mcprelay passes its whole environment to servers",
    "description": None, "alwaysAllow": "mcprelay approves no tools by itself",
    "autoApprove": "mcprelay approves no tools by itself",
    "oauth": "mcprelay discovers and registers its OAuth client by itself",
}


def _entry(name: str, raw: Any, ctx: _Context, where: str) -> Imported | None:
    if not isinstance(raw, dict):
        return None
    notes: list[str] = []
    label = f"{name}{f' ({where})' if where else ''}"
    kind = str(raw.get("type") or raw.get("transport") or "").lower()
    url = raw.get("url") or raw.get("serverUrl")
    body: dict[str, Any] = {}
    if url or kind in ("http", "sse", "streamable-http", "streamablehttp", "streamable_http"):
        if not isinstance(url, str) or not url:
            notes.append(f"{label}: type {kind!r} without a url; skipped")
            return Imported(name, {}, name, where, notes)
        body["url"] = _vars(url, ctx, notes, f"{label} url")
        if kind == "sse":
            body["protocol"] = "sse"
        elif kind in ("http", "streamable-http", "streamablehttp", "streamable_http"):
            body["protocol"] = "http"
        headers = raw.get("headers") or raw.get("http_headers")
        if isinstance(headers, dict) and headers:
            body["headers"] = {str(k): _vars(str(v), ctx, notes, f"{label} header {k}", secret_field=True)
                               for k, v in headers.items()}
    elif isinstance(raw.get("command"), str) and raw["command"]:
        body["command"] = _vars(raw["command"], ctx, notes, f"{label} command")
        args = raw.get("args")
        if isinstance(args, list) and args:
            body["args"] = [str(_vars(str(a), ctx, notes, f"{label} args")) for a in args]
        env = raw.get("env")
        if isinstance(env, dict) and env:
            body["env"] = {str(k): _vars(str(v), ctx, notes, f"{label} env {k}", secret_field=True)
                           for k, v in env.items()}
    else:
        notes.append(f"{label}: neither a command nor a url; skipped")
        return Imported(name, {}, name, where, notes)
    if raw.get("disabled") is True or raw.get("enabled") is False:
        body["enabled"] = False
    for key, what in _IGNORED.items():
        if key in raw and what:
            notes.append(f"{label}: {key} left out ({what})")
    return Imported(name, body, name, where, notes)


def _mcp_servers(data: dict[str, Any], ctx: _Context) -> ImportResult:
    """The ``mcpServers`` shape (Claude Desktop, Claude Code, Cursor), with ``~/.claude.json``'s projects."""
    found: list[Imported] = []
    sources: list[tuple[str, Any]] = [("", data.get("mcpServers"))]
    projects = data.get("projects")
    if ctx.fmt == "claude-code" and isinstance(projects, dict):
        for path, project in projects.items():
            if isinstance(project, dict):
                sources.append((f"project {path}", project.get("mcpServers")))
    if all(not isinstance(s, dict) or not s for _, s in sources):
        if not any(isinstance(s, dict) for _, s in sources):
            raise UnreadableConfig(f"no \"mcpServers\" object: not a {ctx.fmt} config")
    for where, servers in sources:
        if not isinstance(servers, dict):
            continue
        for name, raw in servers.items():
            entry = _entry(str(name), raw, ctx, where)
            if entry is not None:
                found.append(entry)
    return ImportResult(ctx.fmt, found)


def _vscode(data: dict[str, Any], ctx: _Context) -> ImportResult:
    servers = data.get("servers")
    if servers is None and isinstance(data.get("mcp"), dict):
        servers = data["mcp"].get("servers")
    if not isinstance(servers, dict):
        raise UnreadableConfig("no \"servers\" object: not a VS Code mcp.json")
    found = [e for name, raw in servers.items() if (e := _entry(str(name), raw, ctx, "")) is not None]
    return ImportResult("vscode", found)


def _codex(text: str, ctx: _Context) -> ImportResult:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise UnreadableConfig(f"not valid TOML: {exc}") from None
    servers = data.get("mcp_servers")
    if not isinstance(servers, dict):
        raise UnreadableConfig("no [mcp_servers.NAME] tables: not a Codex config.toml")
    found: list[Imported] = []
    for name, raw in servers.items():
        if not isinstance(raw, dict):
            continue
        entry = _entry(str(name), raw, ctx, "")
        if entry is None:
            continue
        if "url" in entry.body:
            headers = dict(entry.body.get("headers") or {})
            env_headers = raw.get("env_http_headers")
            if isinstance(env_headers, dict):
                for header, variable in env_headers.items():
                    headers[str(header)] = f"${{env:{variable}}}"
            token_var = raw.get("bearer_token_env_var")
            if isinstance(token_var, str) and token_var:
                headers = {k: v for k, v in headers.items() if k.lower() != "authorization"}
                headers["Authorization"] = f"Bearer ${{env:{token_var}}}"
            if headers:
                entry.body["headers"] = headers
            entry.body.setdefault("protocol", "http")
        found.append(entry)
    return ImportResult("codex", found)


# ---------------------------------------------------------------------------- names


def mcprelay_name(name: str) -> str:
    """A server name mcprelay accepts (letters, digits, ``-``, ``_``, no ``__``) for another client's."""
    if _NAME_OK.fullmatch(name) and "__" not in name and name.lower() != "gateway":
        return name
    cleaned = re.sub(r"[^A-Za-z0-9_-]+", "-", name).strip("-") or "server"
    cleaned = re.sub(r"_{2,}", "_", cleaned)
    if cleaned.lower() == "gateway":
        cleaned += "-server"
    return cleaned
