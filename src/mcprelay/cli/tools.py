"""``mcprelay tools list`` / ``mcprelay tools search QUERY``: what the upstreams offer, as the gateway names it.

Names are the gateway's (``server__tool``) so what is listed here is exactly what an agent calls.
Search uses the same ranking as the gateway's ``retrieve_tools``.
"""

from __future__ import annotations

from typing import Annotated, Any

import anyio
import typer

from mcprelay.cli.base import new_app
from mcprelay.cli.runtime import Runtime, get_runtime, print_json
from mcprelay.cli.upstream import gateway_get

app = new_app("Tools the upstream servers offer.")


def tool_rows(runtime: Runtime, server: str | None) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(tools, servers that offered none because they are not ready) from the gateway or directly."""
    if server is not None:
        runtime.loaded.config.server(server)  # an unknown name is a config error, as everywhere
    data = gateway_get(runtime, "/tools")
    if data is not None:
        servers = gateway_get(runtime, "/servers") or {"servers": []}
        tools = [t for t in data["tools"] if server is None or t["server"] == server]
        return tools, [s for s in servers["servers"] if s["state"] != "ready" and server in (None, s["name"])]
    from mcprelay.config import Config
    from mcprelay.gateway.upstreams.snapshot import snapshot
    from mcprelay.gateway.upstreams.snapshot import tool_rows as rows_of

    config = runtime.loaded.config
    if server is not None:
        config = Config.model_validate({**config.model_dump(by_alias=True), "mcpServers": [
            s.model_dump() for s in config.mcp_servers if s.name == server]})
    upstreams = anyio.run(lambda: snapshot(config, store=runtime.store, home=runtime.home))
    not_ready = [u.describe() for u in upstreams if u.state != "ready"]
    return rows_of(upstreams), not_ready


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
    tools, not_ready = tool_rows(runtime, server)
    if json_output:
        print_json({"tools": tools, "unavailable": not_ready})
        return
    _warn_not_ready(not_ready)
    if not tools:
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
                [[t["name"], _first_line(t["description"])] for t in tools])


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
