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
    kind: Annotated[
        str | None,
        typer.Option("--kind", metavar="KIND", help="Only tool_call, login or refresh rows.", show_default=False),
    ] = None,
    json_output: Annotated[bool, typer.Option("--json", help="Print the rows as JSON.")] = False,
) -> None:
    """What happened, newest first: tool calls, logins and refreshes.

    Every error mcprelay prints names a request id; `--request-id ID` shows what happened for it
    (a failed login or refresh included) with its correlation id, which joins the diagnostic log's
    lines of that attempt (<home>/logs/mcprelay.log).
    """
    from mcprelay.activity import KINDS, ActivityLog, activity_path
    from mcprelay.errors import ErrorType, McpRelayError

    if kind is not None and kind not in KINDS:
        raise McpRelayError(ErrorType.USAGE_ERROR, f"unknown --kind {kind!r}",
                            suggestion=f"use one of {', '.join(KINDS)}")
    runtime = get_runtime(ctx)
    json_output = runtime.use_json(json_output)
    log = ActivityLog(activity_path(runtime.home))
    try:
        records = log.query(request_id=request_id, server=server, limit=limit, kind=kind)
    finally:
        log.close()
    if json_output:
        print_json([r.to_dict() for r in records])
        return
    _print_table(records, filtered=bool(request_id or server or kind))


def _print_table(records: list[ActivityRecord], *, filtered: bool) -> None:
    from mcprelay.cli.tables import Column, print_table

    if not records:
        print("no activity matches" if filtered else "no activity recorded yet")
        return
    today = time.strftime("%Y-%m-%d")
    rows = []
    for r in records:
        day = time.strftime("%Y-%m-%d", time.localtime(r.started_at))
        started = time.strftime("%H:%M:%S" if day == today else "%m-%d %H:%M", time.localtime(r.started_at))
        what = r.tool if r.kind == "tool_call" else f"{r.kind}{' (' + r.tool + ')' if r.tool else ''}"
        detail = r.error_type or ""
        if r.correlation_id and r.kind != "tool_call":
            detail = f"{detail} correlation {r.correlation_id}".strip()
        rows.append([started, r.server, what, r.status, f"{r.duration_ms:.0f}", r.request_id, detail])
    print_table(
        [Column("started"), Column("server", max_width=16), Column("what", max_width=28), Column("status"),
         Column("ms", justify="right"), Column("request id"), Column("error", wrap=True)],
        rows,
    )
