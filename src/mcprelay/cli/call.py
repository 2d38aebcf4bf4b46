"""``mcprelay call SERVER TOOL --args JSON``: one tool call on one configured upstream.

Gets a token the way the gateway does (stored grant → refresh under the single-flight rules), logs
in only when a person is at a terminal, and keeps the exit codes of the contract: 3 when
authentication is needed or failed, 4 when the tool or the upstream failed.
"""

from __future__ import annotations

import json
import sys
from typing import Annotated, Any

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
    from mcprelay.httpclient import new_http_client

    server = runtime.loaded.config.server(name)
    login = None
    if interactive:

        async def login(scopes: list[str] | None) -> None:
            await run_login(runtime, server, headless, scopes=scopes)

    request_id = new_correlation_id()
    async with new_http_client() as http:
        try:
            async with open_upstream(server, store=runtime.store, http=http, home=runtime.home, login=login) as (
                client,
                _auth,
            ):
                result = await client.call_tool(tool, arguments)
        except McpRelayError as exc:
            raise exc.with_context(server=name, request_id=request_id) from None
        except Exception as exc:
            raise McpRelayError(
                ErrorType.UPSTREAM_ERROR,
                f"calling {tool} on {name} failed: {type(exc).__name__}: {str(exc)[:300]}",
                suggestion=f"check that {name} is reachable and offers the tool `{tool}` (`mcprelay tools list`)",
                server=name,
                request_id=request_id,
            ) from None
    return {
        "server": name,
        "tool": tool,
        "request_id": request_id,
        **tool_result_fields(result),
    }


def call(
    ctx: typer.Context,
    server: Annotated[
        str, typer.Argument(metavar="SERVER", help="The server's name in the config.", show_default=False)
    ],
    tool: Annotated[str, typer.Argument(metavar="TOOL", help="The tool's name on that server.", show_default=False)],
    args: Annotated[
        str | None, typer.Option("--args", metavar="JSON", help="The tool's arguments as a JSON object.")
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
        for item in result["content"]:
            print(item.get("text") if item.get("type") == "text" else json.dumps(item))
        if not result["content"] and result["structured_content"] is not None:
            print(json.dumps(result["structured_content"], indent=2))
    if result["is_error"]:
        raise typer.Exit(4)
