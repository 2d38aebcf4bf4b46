"""``mcprelay tools list`` / ``search QUERY`` / ``approve SERVER [TOOL]``: what the upstreams offer, as the gateway
names it, and the pinned tools a person approves.

Names are the gateway's (``server__tool``) so what is listed here is exactly what an agent calls.
Search uses the same ranking as the gateway's ``retrieve_tools``. Tools the gateway holds back
(``gateway/catalog/pins.py``: new, or changed since they were approved) are listed marked, and
``approve`` lets the agent see them, printing what changed.
"""

from __future__ import annotations

from typing import Annotated, Any

import anyio
import typer

from mcprelay.cli.base import new_app
from mcprelay.cli.gatewayapi import call_gateway, gateway_get, raise_for
from mcprelay.cli.runtime import Runtime, get_runtime, print_json
from mcprelay.errors import ErrorType, McpRelayError

app = new_app("Tools the upstream servers offer; approve held ones.")


def tool_rows(runtime: Runtime, server: str | None) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(tools, servers that offered none because they are not ready) from the gateway or directly."""
    tools, not_ready, _held = tool_rows_and_held(runtime, server)
    return tools, not_ready


def tool_rows_and_held(
    runtime: Runtime, server: str | None
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
    """(tools the agent sees, servers not ready, tools held back) from the gateway or directly."""
    if server is not None:
        runtime.loaded.config.server(server)  # an unknown name is a config error, as everywhere
    data = gateway_get(runtime, "/tools")
    if data is not None:
        servers = gateway_get(runtime, "/servers") or {"servers": []}
        held = (gateway_get(runtime, "/tools/held") or {"tools": []})["tools"]
        tools = [t for t in data["tools"] if server is None or t["server"] == server]
        return (tools, [s for s in servers["servers"] if s["state"] != "ready" and server in (None, s["name"])],
                [h for h in held if server is None or h["server"] == server])
    upstreams = _snapshot(runtime, server)
    not_ready = [u.describe() for u in upstreams if u.state != "ready"]
    tools, held = _screened_rows(runtime, upstreams)
    return tools, not_ready, held


def _snapshot(runtime: Runtime, server: str | None) -> list[Any]:
    from mcprelay.config import Config
    from mcprelay.gateway.upstreams.snapshot import snapshot

    config = runtime.loaded.config
    if server is not None:
        config = Config.model_validate({**config.model_dump(by_alias=True), "mcpServers": [
            s.model_dump() for s in config.mcp_servers if s.name == server]})
    return anyio.run(lambda: snapshot(config, store=runtime.store, home=runtime.home))


def _screened_rows(runtime: Runtime, upstreams: list[Any]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Without a gateway: the snapshot's tools sorted by the pins on disk, as the gateway would sort them."""
    from mcprelay.gateway.catalog.names import Namespace
    from mcprelay.gateway.catalog.pinbook import screen_offline
    from mcprelay.gateway.control.plane import held_row

    mode = runtime.loaded.config.tool_pinning
    tools: list[dict[str, Any]] = []
    held: list[dict[str, Any]] = []
    for upstream in upstreams:
        ns = Namespace(upstream.name, upstream.config.prefix)
        screened = screen_offline(runtime.home, upstream.name, upstream.catalog.tools, mode)
        tools += [{"name": ns.name(t.name), "server": upstream.name, "tool": t.name,
                   "description": t.description or "", "input_schema": t.input_schema} for t in screened.exposed]
        held += [held_row(ns.name(h.tool), h) for h in screened.held]
    return tools, held


def _warn_not_ready(not_ready: list[dict[str, Any]]) -> None:
    import sys

    for row in not_ready:
        error = row.get("last_error") or {}
        why = f": {error.get('message')}" if error else ""
        hint = f" (run `{error['suggestion']}`)" if error.get("suggestion", "").startswith("mcprelay ") else ""
        print(f"note: {row['name']} is {row['state']}{why}{hint}", file=sys.stderr)


@app.command("list")
def list_tools(
    ctx: typer.Context,
    server: Annotated[
        str | None, typer.Option("--server", "-s", metavar="NAME", help="Only this server's tools.")
    ] = None,
    json_output: Annotated[bool, typer.Option("--json", help="Print the tools as JSON.")] = False,
) -> None:
    """Every ready server's tools, as the gateway names them.

    The names are SERVER__TOOL (or the tool's own name for a server with "prefix": false), exactly
    what an agent calls through `mcprelay serve`.
    """
    runtime = get_runtime(ctx)
    json_output = runtime.use_json(json_output)
    tools, not_ready, held = tool_rows_and_held(runtime, server)
    if json_output:
        print_json({"tools": tools, "held": held, "unavailable": not_ready})
        return
    _warn_not_ready(not_ready)
    if not tools and not held:
        configured = runtime.loaded.config.mcp_servers
        if not configured:
            print("no tools: no servers are configured (`mcprelay upstream add NAME URL`)")
        elif not_ready:
            print(f"no tools: {len(not_ready)} server{'s are' if len(not_ready) != 1 else ' is'} not ready (see above)")
        else:
            print("no tools: the ready servers offer none" + (f" ({server})" if server else ""))
        return
    from mcprelay.cli.tables import Column, print_table

    print_table([Column("tool", max_width=48), Column("description", wrap=True)],
                [[t["name"], _first_line(t["description"])] for t in tools]
                + [[h["name"], f"[held: {h['reason']}] {_first_line(h['description'])}"] for h in held])
    if held:
        import sys

        count = f"{len(held)} tool{'s are' if len(held) > 1 else ' is'}"
        print(f"note: {count} held back from the agent until approved (new, or changed since approved): "
              "review with `mcprelay tools approve SERVER [TOOL] --dry-run`, then approve without --dry-run",
              file=sys.stderr)


def _first_line(text: str | None) -> str:
    lines = (text or "").strip().splitlines()
    return lines[0] if lines else ""


@app.command("search")
def search(
    ctx: typer.Context,
    query: Annotated[str, typer.Argument(metavar="QUERY", help="What you want to do, in words.", show_default=False)],
    limit: Annotated[
        int, typer.Option("--limit", "-n", metavar="N", min=1, max=100, help="At most N results (1-100).")
    ] = 5,
    json_output: Annotated[bool, typer.Option("--json", help="Print the tools as JSON.")] = False,
) -> None:
    """Rank the tools for a task, the way the gateway's retrieve_tools does."""
    from mcprelay.gateway.catalog.search import ToolIndex, tools_from_schema

    runtime = get_runtime(ctx)
    json_output = runtime.use_json(json_output)
    tools, not_ready = tool_rows(runtime, None)
    index = ToolIndex.build(
        tools_from_schema(t["server"], t["tool"], t["description"], t["input_schema"]) for t in tools
    )
    by_name = {t["name"]: t for t in tools}
    hits = [{**by_name[hit.name], "score": round(score, 4)} for hit, score in index.search(query, limit)
            if hit.name in by_name]
    if json_output:
        print_json({"query": query, "results": hits, "unavailable": not_ready})
        return
    _warn_not_ready(not_ready)
    if not hits:
        print(f"no tools match {query!r}" if tools else "no tools to search: no server is ready")
        return
    from mcprelay.cli.tables import Column, print_table

    print_table([Column("score", justify="right"), Column("tool", max_width=48), Column("description", wrap=True)],
                [[f"{h['score']:.3f}", h["name"], _first_line(h["description"])] for h in hits])


@app.command("approve")
def approve(
    ctx: typer.Context,
    server: Annotated[str, typer.Argument(help="The server whose held tools to approve.", metavar="SERVER")],
    tool: Annotated[str | None, typer.Argument(help="Only this tool (the server's own name for it).",
                                               metavar="TOOL")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show what would be approved; approve nothing.")] = False,
    json_output: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Let the agent see held tools (new, or changed since approved).

    Prints what changed. Without TOOL, every held tool of SERVER is approved. Through the running
    gateway when one listens (it applies the approval at once), else by connecting to the server
    once and writing the pins.
    """
    runtime = get_runtime(ctx)
    json_output = runtime.use_json(json_output)
    config = runtime.loaded.config
    config.server(server)  # an unknown name is a config error, as everywhere
    if config.tool_pinning == "off":
        raise McpRelayError(
            ErrorType.USAGE_ERROR, "tool pinning is off in the config: no tool is held",
            suggestion='set "tool_pinning" to "changed" (the default) or "all" to pin tools', server=server,
        )
    rows = _approve_through_gateway(runtime, server, tool, dry_run)
    if rows is None:
        rows = _approve_directly(runtime, server, tool, dry_run)
    if json_output:
        print_json({"server_name": server, "dry_run": dry_run, "approved" if not dry_run else "would_approve": rows})
        return
    verb = "would approve" if dry_run else "approved"
    for row in rows:
        why = "new" if row["reason"] == "new" else f"changed: {', '.join(row['changed_fields']) or 'definition'}"
        print(f"{verb} {row['name']} ({why})")
        for line in row["diff"].splitlines():
            print(f"    {line}")
    if not rows:
        what = f"{server}'s tool {tool!r} is not held: the agent sees it as approved" if tool else (
            f"no tool of {server} is held")
        print(f"nothing to approve: {what}")
    elif not dry_run:
        print(f"{len(rows)} tool{'s' if len(rows) > 1 else ''} of {server} approved; agents see "
              f"{'them' if len(rows) > 1 else 'it'} now")


def _approve_through_gateway(
    runtime: Runtime, server: str, tool: str | None, dry_run: bool
) -> list[dict[str, Any]] | None:
    """Through the running gateway's REST API (it applies the approval at once); None when none runs."""
    if dry_run:
        answer = call_gateway(runtime, "GET", f"/tools/held?server={server}")
        if answer is None:
            return None
        raise_for(*answer, f"the gateway could not list {server}'s held tools")
        return [row for row in answer[1]["tools"] if tool is None or row["tool"] == tool]
    answer = call_gateway(runtime, "POST", f"/servers/{server}/tools/approve", {"tool": tool} if tool else {})
    if answer is None:
        return None
    raise_for(*answer, f"the gateway could not approve {server}'s tools")
    return list(answer[1]["approved"])


def _approve_directly(runtime: Runtime, server: str, tool: str | None, dry_run: bool) -> list[dict[str, Any]]:
    """No gateway with a listener runs: connect to the server once, compare with the pins on disk, write them."""
    from mcprelay.gateway.catalog.names import Namespace
    from mcprelay.gateway.catalog.pinbook import approve_offline, screen_offline
    from mcprelay.gateway.control.plane import held_row

    (upstream,) = _snapshot(runtime, server)
    if upstream.state != "ready":
        error = upstream.last_error
        raise McpRelayError(
            ErrorType.UPSTREAM_ERROR,
            f"{server} is {upstream.state}, so what it offers now cannot be compared with what was approved"
            + (f": {error.message}" if error else ""),
            suggestion=error.suggestion if error and error.suggestion else "see `mcprelay upstream list`",
            server=server,
        )
    screened = screen_offline(runtime.home, server, upstream.catalog.tools, runtime.loaded.config.tool_pinning)
    held = [h for h in screened.held if tool is None or h.tool == tool]
    if tool is not None and not held and tool not in {t.name for t in upstream.catalog.tools}:
        raise McpRelayError(
            ErrorType.USAGE_ERROR, f"{server} offers no tool {tool!r}",
            suggestion=f"see what {server} offers and what is held: `mcprelay tools list --server {server}`",
            server=server,
        )
    ns = Namespace(server, upstream.config.prefix)
    rows = [held_row(ns.name(h.tool), h) for h in held]
    if held and not dry_run:
        approve_offline(runtime.home, server, [h.offered for h in held])
    return rows
