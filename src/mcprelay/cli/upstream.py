"""``mcprelay upstream list | logs | restart``: upstream state, their logs, and a restart in the running gateway.

With a gateway running for this home the state comes from its REST API (the live picture, and no
second copy of every stdio server); without one each upstream is connected once, without logging in.
The commands that edit the config (``add``, ``remove``, ``enable``, ``disable``, ``import``) are in
:mod:`mcprelay.cli.servers` and :mod:`mcprelay.cli.importcmd`.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

import anyio
import typer

from mcprelay.cli import importcmd, servers
from mcprelay.cli.base import new_app
from mcprelay.cli.gatewayapi import gateway_get, gateway_request
from mcprelay.cli.runtime import Runtime, get_runtime, print_json
from mcprelay.gateway.upstreams.stderrlog import tail, upstream_log_path

app = new_app("Servers in the config: add, import, remove; their state, logs.")
servers.register(app)
app.command("import")(importcmd.import_servers)


def server_rows(runtime: Runtime) -> list[dict[str, Any]]:
    data = gateway_get(runtime, "/servers")
    if data is not None:
        return list(data["servers"])
    from mcprelay.gateway.upstreams.snapshot import snapshot

    upstreams = anyio.run(
        lambda: snapshot(runtime.loaded.config, store=runtime.store, home=runtime.home)
    )
    rows = []
    for upstream in upstreams:
        row = upstream.describe()
        if row["transport"] == "http":
            row["transport"] = "streamable-http"
        rows.append(row)
    return rows


@app.command("list")
def list_upstreams(
    ctx: typer.Context,
    json_output: Annotated[bool, typer.Option("--json", help="Print the servers as JSON.")] = False,
) -> None:
    """Each server: transport, state, login state, tools, last error."""
    runtime = get_runtime(ctx)
    json_output = runtime.use_json(json_output)
    rows = server_rows(runtime)
    if json_output:
        print_json({"servers": rows})
        return
    if not rows:
        print("no servers configured: add one with `mcprelay upstream add NAME URL` (or import them: "
              "`mcprelay upstream import FILE`)")
        return
    from mcprelay.cli.tables import Column, print_table

    cells = []
    for row in rows:
        error = row.get("last_error") or {}
        detail = f"{error.get('error_type')}: {error.get('message')}" if error else ""
        cells.append([row["name"], row["transport"], row["state"], row["auth_state"], str(row["tool_count"]), detail])
    print_table([Column("name", max_width=20), Column("transport"), Column("state"), Column("auth"),
                 Column("tools", justify="right"), Column("last error", wrap=True)], cells)


@app.command("logs")
def logs(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(metavar="NAME", help="The server's name in the config.", show_default=False)],
    lines: Annotated[int, typer.Option("--tail", "-n", metavar="N", min=1, help="Show the last N lines.")] = 100,
    json_output: Annotated[bool, typer.Option("--json", help="Print the events as JSON lines.")] = False,
) -> None:
    """A server's stderr (stdio) and its connection and auth events.

    The stderr of a stdio server is kept in <home>/logs/upstreams/NAME.log; the events (connected,
    failed, login and refresh steps, with their correlation ids) come from the diagnostic log,
    <home>/logs/mcprelay.log, for every kind of server.
    """
    from mcprelay.cli.logview import events_for, format_event

    runtime = get_runtime(ctx)
    json_output = runtime.use_json(json_output)
    server = runtime.loaded.config.server(name)
    events = events_for(runtime.home, server.name, lines)
    if json_output:
        for event in events:
            print(json.dumps(event, default=str))
        return
    path = upstream_log_path(runtime.home, server.name)
    if server.transport == "stdio":
        if path.exists() or path.with_name(path.name + ".1").exists():
            print(f"== stderr of {name} ({path}) ==")
            for line in tail(path, lines):
                print(line)
        else:
            print(f"no stderr from {name} yet (it goes to {path})")
    log = runtime.home / "logs" / "mcprelay.log"
    if events:
        print(f"== events of {name} ({log}) ==")
        for event in events:
            print(format_event(event))
    else:
        print(f"no events for {name} in {log} yet: it has not been connected to or logged in to from this home")


@app.command("restart")
def restart(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(metavar="NAME", help="The server's name in the config.", show_default=False)],
    json_output: Annotated[bool, typer.Option("--json", help="Print the outcome as JSON.")] = False,
) -> None:
    """Reconnect one server in the running gateway.

    It asks the gateway running with --listen for this home (POST /api/v1/servers/NAME/restart).
    Without one there is nothing to restart: the next `mcprelay serve` connects afresh anyway.
    """
    runtime = get_runtime(ctx)
    json_output = runtime.use_json(json_output)
    runtime.loaded.config.server(name)  # an unknown name is a config error, as everywhere
    answer = gateway_request(runtime, "POST", f"/servers/{name}/restart")
    if json_output:
        print_json(answer or {"success": True, "server_name": name, "restarted": False,
                              "reason": "no gateway is running for this home"})
        return
    if answer is None:
        print(f"no gateway is running for {runtime.home}; nothing to restart (`mcprelay serve` connects afresh)")
        return
    print(f"{name}: restarting in the running gateway (now {answer.get('state')})")


def dumps(data: Any) -> str:
    return json.dumps(data, indent=2, default=str)
