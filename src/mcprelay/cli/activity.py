"""``mcprelay activity list``: what the gateway forwarded, read from ``<home>/activity.db``.

It reads the same SQLite file the running gateway writes (WAL mode, so reading never blocks the
gateway), which is why it works whether or not a gateway is running.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Annotated

import typer

from mcprelay.cli.base import new_app
from mcprelay.cli.runtime import get_runtime, print_json

if TYPE_CHECKING:
    from mcprelay.activity import ActivityRecord

app = new_app("The activity log: tool calls, logins, refreshes and their ids.")


@app.command("list")
def list_command(
    ctx: typer.Context,
    request_id: Annotated[
        str | None,
        typer.Option("--request-id", metavar="ID", help="Only what happened for this request id.", show_default=False),
    ] = None,
    server: Annotated[
        str | None, typer.Option("--server", "-s", metavar="NAME", help="Only this server.", show_default=False)
    ] = None,
    limit: Annotated[
        int, typer.Option("--limit", "-n", metavar="N", min=1, help="At most N rows, newest first.")
    ] = 100,
    json_output: Annotated[bool, typer.Option("--json", help="Print the rows as JSON.")] = False,
) -> None:
    """What happened, newest first: tool calls, logins and refreshes.

    Every error mcprelay prints names a request id; `--request-id ID` shows what happened for it
    (a failed login or refresh included) with its correlation id, which joins the diagnostic log's
    lines of that attempt (<home>/logs/mcprelay.log).
    """
    from mcprelay.activity import ActivityLog, activity_path

    runtime = get_runtime(ctx)
    json_output = runtime.use_json(json_output)
    log = ActivityLog(activity_path(runtime.home))
    try:
        records = log.query(request_id=request_id, server=server, limit=limit)
    finally:
        log.close()
    if json_output:
        print_json([r.to_dict() for r in records])
        return
    _print_table(records)


def _print_table(records: list[ActivityRecord]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(highlight=False)
    if not records:
        console.print("no activity recorded")
        return
    table = Table(show_edge=False)
    for column, justify in (
        ("started", "left"),
        ("server", "left"),
        ("tool", "left"),
        ("status", "left"),
        ("ms", "right"),
        ("in/out bytes", "right"),
        ("request_id", "left"),
        ("error", "left"),
    ):
        table.add_column(column, justify=justify, overflow="fold")  # type: ignore[arg-type]
    for r in records:
        style = {"ok": "green", "tool_error": "yellow"}.get(r.status, "red")
        table.add_row(
            time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(r.started_at)),
            r.server,
            r.tool,
            f"[{style}]{r.status}[/]",
            f"{r.duration_ms:.1f}",
            f"{r.request_bytes}/{r.response_bytes}",
            r.request_id,
            r.error_type or "",
        )
    console.print(table)
