"""``mcprelay upstream list`` / ``mcprelay upstream logs NAME``: upstream state and their stderr logs.

With a gateway running for this home the state comes from its REST API (the live picture, and no
second copy of every stdio server); without one each upstream is connected once, without logging in.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

import anyio
import typer

from mcprelay.cli.runtime import Runtime, get_runtime, print_json
from mcprelay.errors import ErrorType, McpRelayError
from mcprelay.gateway.control.runfile import read_runfile
from mcprelay.gateway.upstreams.stderrlog import tail, upstream_log_path

app = typer.Typer(help="Upstream servers: state and logs.", no_args_is_help=True)


def gateway_get(runtime: Runtime, path: str) -> dict[str, Any] | None:
    """GET ``/api/v1<path>`` from the gateway running for this home; None when none is running."""
    running = read_runfile(runtime.home)
    if running is None:
        return None
    from mcprelay.gateway.serving.ownerkey import client_key

    headers = {}
    key = client_key(runtime.home, runtime.loaded.config.api_key)
    if key:
        headers["Authorization"] = f"Bearer {key}"
    url = f"{running['url']}/api/v1{path}"
    import httpx2  # here, not at the top: every command's start-up would pay for it

    try:
        response = httpx2.get(url, headers=headers, timeout=10.0)
    except httpx2.HTTPError:
        return None  # a gateway that does not answer is treated as not running
    try:
        data = response.json()
    except ValueError:
        data = None
    if response.status_code >= 400 or not isinstance(data, dict):
        raise McpRelayError(
            ErrorType(data.get("error_type", "upstream_error")) if isinstance(data, dict) else ErrorType.UPSTREAM_ERROR,
            f"the running gateway refused {path}: {data.get('message') if isinstance(data, dict) else response.text}",
            suggestion="the running gateway wants another key: check api_key in the config it was started with",
        )
    return data


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
    json_output: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """One row per configured server: transport, state, login state, tools, last error."""
    runtime = get_runtime(ctx)
    runtime.json_output = json_output
    rows = server_rows(runtime)
    if json_output:
        print_json({"servers": rows})
        return
    if not rows:
        print("no servers configured")
        return
    print(f"{'NAME':<20} {'TRANSPORT':<16} {'STATE':<15} {'AUTH':<15} {'TOOLS':>5}  LAST ERROR")
    for row in rows:
        error = row.get("last_error") or {}
        detail = f"{error.get('error_type')}: {error.get('message')}" if error else ""
        print(
            f"{row['name']:<20} {row['transport']:<16} {row['state']:<15} {row['auth_state']:<15} "
            f"{row['tool_count']:>5}  {detail}"
        )


@app.command("logs")
def logs(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Server name from the config.")],
    lines: Annotated[int, typer.Option("--tail", "-n", help="How many lines from the end.")] = 100,
) -> None:
    """The captured stderr of a stdio upstream (kept at <home>/logs/upstreams/NAME.log, size-capped)."""
    runtime = get_runtime(ctx)
    server = runtime.loaded.config.server(name)
    path = upstream_log_path(runtime.home, server.name)
    if not path.exists() and not path.with_name(path.name + ".1").exists():
        hint = "" if server.transport == "stdio" else " (only stdio servers have a stderr log)"
        print(f"no log for {name} yet{hint}; expected at {path}", flush=True)
        return
    for line in tail(path, lines):
        print(line)


def dumps(data: Any) -> str:
    return json.dumps(data, indent=2, default=str)
