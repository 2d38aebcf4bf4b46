"""``mcprelay client-config``: the settings an MCP client pastes to reach ``mcprelay serve --listen``.

The listener requires a bearer key (the config's ``api_key``, else the home's owner key), so a
client needs the URL and an ``Authorization`` header; this prints both in the JSON shape the chosen
client reads. The URL is the running gateway's (``state/gateway.json``) when one runs for this home,
else the config's ``listen`` address. The owner key is created here if ``serve`` has not created it
yet, so a client can be configured before the gateway first starts.

The output holds the key: it goes to stdout only when asked for, and belongs in a file only the
user can read (every supported client keeps its config in the user's own profile).
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

from mcprelay.cli.runtime import get_runtime, print_json
from mcprelay.errors import ErrorType, McpRelayError

FORMATS = ("cursor", "claude-code", "vscode", "claude-desktop", "windsurf")

_WHERE = {
    "cursor": "~/.cursor/mcp.json (or .cursor/mcp.json in a project)",
    "claude-code": ".mcp.json in a project (or `claude mcp add-json mcprelay '<the inner object>'`)",
    "vscode": ".vscode/mcp.json (or the \"mcp\" section of your user settings)",
    "claude-desktop": "claude_desktop_config.json (Claude Desktop runs only local commands: "
    "this uses npx mcp-remote, with the key in its environment, not in its arguments)",
    "windsurf": "~/.codeium/windsurf/mcp_config.json",
}


def shapes(url: str, key: str | None, name: str) -> dict[str, dict[str, Any]]:
    """Each supported client's config object for one server ``name`` at ``url`` with ``key``."""
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    remote: dict[str, Any] = {"command": "npx", "args": ["-y", "mcp-remote", url]}
    if key:
        # mcp-remote substitutes ${VAR} in its arguments: the key stays out of the process list.
        remote["args"] += ["--header", "Authorization:${MCPRELAY_AUTHORIZATION}"]
        remote["env"] = {"MCPRELAY_AUTHORIZATION": f"Bearer {key}"}
    with_headers = {"headers": headers} if headers else {}
    return {
        "cursor": {"mcpServers": {name: {"url": url, **with_headers}}},
        "claude-code": {"mcpServers": {name: {"type": "http", "url": url, **with_headers}}},
        "vscode": {"servers": {name: {"type": "http", "url": url, **with_headers}}},
        "claude-desktop": {"mcpServers": {name: remote}},
        "windsurf": {"mcpServers": {name: {"serverUrl": url, **with_headers}}},
    }


def client_config(
    ctx: typer.Context,
    client: Annotated[
        str, typer.Option("--client", metavar="CLIENT", help="Which client's format (see above).")
    ] = "cursor",
    listen: Annotated[
        str | None,
        typer.Option("--listen", metavar="HOST:PORT", help="The gateway's address (default: the running one's).",
                     show_default=False),
    ] = None,
    name: Annotated[
        str, typer.Option("--name", metavar="NAME", help="The name the client shows for it.")
    ] = "mcprelay",
    json_output: Annotated[bool, typer.Option("--json", help="Print URL, header and every shape as JSON.")] = False,
) -> None:
    """Print what an MCP client pastes to use the gateway (URL, key).

    The gateway is `mcprelay serve --listen`; the output holds its key, so keep it private.
    --client picks the format: cursor (the default), claude-code, vscode, claude-desktop or
    windsurf; --json prints all of them.
    """
    import sys

    from mcprelay.gateway.control.runfile import read_runfile
    from mcprelay.gateway.serving.http import parse_listen
    from mcprelay.gateway.serving.ownerkey import key_path, listener_key

    runtime = get_runtime(ctx)
    json_output = runtime.use_json(json_output)
    if client not in FORMATS:
        raise McpRelayError(
            ErrorType.USAGE_ERROR, f"unknown client {client!r}", suggestion=f"use one of: {', '.join(FORMATS)}"
        )
    config = runtime.loaded.config
    running = read_runfile(runtime.home) if listen is None else None
    if running is not None:
        base = str(running["url"])
    else:
        host, port = parse_listen(listen or config.listen)
        base = f"http://{'[' + host + ']' if ':' in host else host}:{port}"
    url = f"{base}/mcp"
    key = listener_key(runtime.home, config.api_key, config.owner_only)
    source = "api_key in the config" if config.api_key else (str(key_path(runtime.home)) if key else None)
    all_shapes = shapes(url, key, name)
    if json_output:
        print_json({
            "url": url, "headers": {"Authorization": f"Bearer {key}"} if key else {}, "key_source": source,
            "running": running is not None, "clients": all_shapes,
        })
        return
    print_json(all_shapes[client])
    where = _WHERE[client]
    note = f"the key comes from {source}; keep this config private" if key else (
        "owner_only is false: the gateway needs no key (every local user can use it)")
    print(f"# paste into {where}; {note}", file=sys.stderr)
    if running is None:
        print(f"# no gateway is running for {runtime.home}; start it with `mcprelay serve --listen {base[7:]}`",
              file=sys.stderr)
