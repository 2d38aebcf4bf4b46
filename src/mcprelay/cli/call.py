"""``mcprelay call SERVER TOOL --args JSON``: one tool call on one configured upstream.

Gets a token the way the gateway does (stored grant → refresh under the single-flight rules), logs
in only when a person is at a terminal, and keeps the exit codes of the contract: 3 when
authentication is needed or failed, 4 when the tool or the upstream failed.
"""

from __future__ import annotations

import contextlib
import json
import sys
import time
from pathlib import Path
from typing import Annotated, Any, TextIO

import anyio
import typer

from mcprelay.cli.probe import parse_args
from mcprelay.cli.runtime import Runtime, get_runtime, print_json, tool_result_fields
from mcprelay.desktop import headless_requested
from mcprelay.errors import ErrorType, McpRelayError, new_correlation_id


async def _call(runtime: Runtime, name: str, tool: str, arguments: dict[str, Any], interactive: bool,
                headless: bool) -> dict[str, Any]:
    from mcprelay.cli.auth import run_login
    from mcprelay.connect import open_upstream
    from mcprelay.gateway.upstreams.stderrlog import captured_stderr, upstream_log_path
    from mcprelay.httpclient import new_http_client

    server = runtime.loaded.config.server(name)
    request_id = new_correlation_id()
    login = None
    if interactive:

        async def login(scopes: list[str] | None) -> None:
            await run_login(runtime, server, headless, scopes=scopes, request_id=request_id)

    # A stdio server's stderr goes to its log, as under the gateway: the terminal shows the result only.
    errlog: contextlib.AbstractContextManager[TextIO | None] = (
        captured_stderr(upstream_log_path(runtime.home, server.name)) if server.transport == "stdio"
        else contextlib.nullcontext(None)
    )
    started = time.time()
    try:
        with errlog as stderr:
            async with new_http_client() as http:
                try:
                    async with open_upstream(
                        server, store=runtime.store, http=http, home=runtime.home, login=login, errlog=stderr,
                    ) as (client, _auth):
                        result = await client.call_tool(tool, arguments)
                except McpRelayError as exc:
                    raise exc.with_context(server=name, request_id=request_id) from None
                except Exception as exc:
                    raise McpRelayError(
                        ErrorType.UPSTREAM_ERROR,
                        f"calling {tool} on {name} failed: {type(exc).__name__}: {str(exc)[:300]}",
                        suggestion=f"check that {name} is reachable and offers the tool `{tool}` "
                        f"(`mcprelay tools list`); its log: `mcprelay upstream logs {name}`",
                        server=name,
                        request_id=request_id,
                    ) from None
    except McpRelayError as exc:
        # A failed refresh or login on the way already named its own row: the call's joins it under that id.
        await anyio.to_thread.run_sync(_record, runtime, name, tool, exc.request_id or request_id, started,
                                       arguments, None, exc)
        raise
    fields = {"server": name, "tool": tool, "request_id": request_id, **tool_result_fields(result)}
    await anyio.to_thread.run_sync(_record, runtime, name, tool, request_id, started, arguments, fields, None)
    return fields


def _record(runtime: Runtime, name: str, tool: str, request_id: str, started: float, arguments: dict[str, Any],
            result: dict[str, Any] | None, error: McpRelayError | None) -> None:
    """The call's row in the activity log (``activity list --request-id`` finds it, as a gateway call)."""
    from mcprelay.activity import ActivityRecord, record_now

    status = "error" if error is not None else ("tool_error" if result and result["is_error"] else "ok")
    record_now(runtime.home, ActivityRecord(
        request_id=request_id, correlation_id=error.correlation_id if error else None, server=name, tool=tool,
        started_at=started, duration_ms=round((time.time() - started) * 1000, 1), status=status,
        error_type=str(error.error_type) if error else None, request_bytes=len(json.dumps(arguments)),
        response_bytes=len(json.dumps(result["content"], default=str)) if result else 0,
    ))


_BINARY_TYPES = ("image", "audio")
_EXTENSIONS = {"image/png": ".png", "image/jpeg": ".jpg", "image/gif": ".gif", "image/webp": ".webp",
               "image/svg+xml": ".svg", "audio/wav": ".wav", "audio/x-wav": ".wav", "audio/mpeg": ".mp3",
               "audio/ogg": ".ogg", "application/pdf": ".pdf", "application/json": ".json", "text/plain": ".txt"}


def _binary(item: dict[str, Any]) -> tuple[str, str, str] | None:
    """(what, MIME type, base64 data) of a binary content block, or None for text and links."""
    kind = item.get("type")
    if kind in _BINARY_TYPES and isinstance(item.get("data"), str):
        return str(kind), _mime(item), item["data"]
    resource = item.get("resource")
    if kind == "resource" and isinstance(resource, dict) and isinstance(resource.get("blob"), str):
        return f"resource {resource.get('uri', '')}".strip(), _mime(resource), resource["blob"]
    return None


def _mime(block: dict[str, Any]) -> str:
    # The SDK's models dump as mime_type; a block passed through as the wire JSON has mimeType.
    return str(block.get("mime_type") or block.get("mimeType") or "application/octet-stream")


def render_content(items: list[dict[str, Any]], *, save_dir: Path | None, request_id: str) -> list[str]:
    """The lines ``call`` prints for a result's content: text as it is, binary as type and size (or its file)."""
    import base64
    import binascii

    lines: list[str] = []
    for index, item in enumerate(items, start=1):
        binary = _binary(item)
        if binary is None:
            if item.get("type") == "text":
                lines.append(str(item.get("text", "")))
            elif item.get("type") == "resource_link":
                lines.append(f"[link {item.get('uri')}{' (' + str(item['name']) + ')' if item.get('name') else ''}]")
            elif item.get("type") == "resource" and isinstance(item.get("resource"), dict):
                lines.append(str(item["resource"].get("text", "")))
            else:
                lines.append(json.dumps(item))
            continue
        what, mime, data = binary
        try:
            raw = base64.b64decode(data, validate=False)
        except (binascii.Error, ValueError):
            lines.append(f"[{what}, {mime}, not valid base64 ({len(data):,} characters)]")
            continue
        if save_dir is None:
            lines.append(f"[{what}, {mime}, {len(raw):,} bytes; --save DIR writes it to a file]")
            continue
        path = save_dir / f"{request_id}-{index}{_EXTENSIONS.get(mime, '.bin')}"
        save_dir.mkdir(parents=True, exist_ok=True)
        with open(path, "xb") as handle:
            handle.write(raw)
        lines.append(f"[{what}, {mime}, {len(raw):,} bytes → {path}]")
    return lines


def call(
    ctx: typer.Context,
    server: Annotated[
        str, typer.Argument(metavar="SERVER", help="The server's name in the config.", show_default=False)
    ],
    tool: Annotated[str, typer.Argument(metavar="TOOL", help="The tool's name on that server.", show_default=False)],
    args: Annotated[
        str | None, typer.Option("--args", metavar="JSON", help="The tool's arguments as a JSON object.")
    ] = None,
    save: Annotated[
        str | None,
        typer.Option("--save", metavar="DIR", help="Write images, audio and other binary content into DIR.",
                     show_default=False),
    ] = None,
    headless: Annotated[
        bool, typer.Option("--headless", help="If a login is needed, print its URL instead of opening a browser.")
    ] = False,
    json_output: Annotated[bool, typer.Option("--json", help="Print the whole result as JSON.")] = False,
) -> None:
    """Call one tool on one configured server and print the result.

    Tokens are refreshed as needed; in a terminal a login starts when one is needed. What the
    server writes to stderr goes to its log (`mcprelay upstream logs SERVER`), not here. Images,
    audio and other binary content are shown as their type and size; --save DIR writes them there.
    Exit codes: 0 ok, 3 authentication needed or failed, 4 the tool or the server failed.
    """
    runtime = get_runtime(ctx)
    json_output = runtime.use_json(json_output)
    arguments = parse_args(args)
    interactive = sys.stdin is not None and sys.stdin.isatty()
    result = anyio.run(_call, runtime, server, tool, arguments, interactive, headless_requested(headless))
    if json_output:
        print_json(result)
    else:
        save_dir = Path(save).expanduser() if save else None
        for line in render_content(result["content"], save_dir=save_dir, request_id=result["request_id"]):
            print(line)
        if not result["content"] and result["structured_content"] is not None:
            print(json.dumps(result["structured_content"], indent=2))
        if not result["content"] and result["structured_content"] is None:
            print("(the tool returned no content)")
    if result["is_error"]:
        raise typer.Exit(4)
