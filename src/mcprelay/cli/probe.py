"""``mcprelay probe URL``: an ad-hoc server with no config entry — authenticate, initialize, list tools,
call one tool, print, exit. Nothing is stored: the tokens live in memory for this run only."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import anyio
import typer

from mcprelay.cli.auth import login_options
from mcprelay.cli.runtime import get_runtime, print_json, tool_result_fields
from mcprelay.desktop import headless_requested
from mcprelay.errors import ErrorType, McpRelayError


def parse_args(args: str | None) -> dict[str, Any]:
    if not args:
        return {}
    try:
        value = json.loads(args)
    except json.JSONDecodeError as exc:
        raise McpRelayError(
            ErrorType.USAGE_ERROR,
            f"--args is not valid JSON: {exc.msg}",
            suggestion='pass an object: --args \'{"a": 1}\'',
        ) from None
    if not isinstance(value, dict):
        raise McpRelayError(ErrorType.USAGE_ERROR, "--args must be a JSON object", suggestion='--args \'{"a": 1}\'')
    return value


def _read_oauth_file(path: str) -> dict[str, Any]:
    """``--oauth FILE``: a JSON object of ``oauth`` fields (checked by the config model like any entry)."""
    try:
        value = json.loads(Path(path).expanduser().read_text(encoding="utf-8"))
    except OSError as exc:
        raise McpRelayError(
            ErrorType.USAGE_ERROR, f"cannot read --oauth file {path}: {exc.strerror or exc}",
            suggestion="pass the path of a JSON file with the fields of a server's oauth object",
        ) from None
    except ValueError as exc:
        raise McpRelayError(
            ErrorType.USAGE_ERROR, f"--oauth file {path} is not valid JSON: {exc}",
            suggestion='e.g. {"grant": "client_credentials", "client_id": "…", "private_key_file": "…"}',
        ) from None
    if not isinstance(value, dict):
        raise McpRelayError(ErrorType.USAGE_ERROR, f"--oauth file {path} must hold a JSON object")
    return value


def _arguments_for(tool: Any) -> dict[str, Any]:
    """Minimal arguments for a tool's required parameters, so probing a tool without --args can work."""
    schema = tool.input_schema or {}
    samples = {"string": "probe", "integer": 1, "number": 1, "boolean": True, "array": [], "object": {}}
    out: dict[str, Any] = {}
    for name in schema.get("required", []) or []:
        prop = (schema.get("properties") or {}).get(name, {})
        kind = prop.get("type", "string")
        out[name] = samples.get(kind if isinstance(kind, str) else "string", "probe")
    return out


async def _run(
    url: str, oauth: dict[str, Any], call: str | None, args: dict[str, Any], headless: bool, notify_json: bool,
    home: Path,
) -> dict[str, Any]:
    from mcprelay.config import OAuthConfig, ServerConfig, parse_config
    from mcprelay.httpclient import new_http_client
    from mcprelay.oauth.flow import LoginOutcome, login
    from mcprelay.oauth.grant import StoredGrant
    from mcprelay.oauth.ondemand import LoginOnDemand
    from mcprelay.oauth.rfc6750 import Challenge
    from mcprelay.store.memory import MemoryStore
    from mcprelay.transport import open_session

    # Through the config loader, so that an --oauth file gets the same checks as a config entry.
    server = parse_config({"mcpServers": [{"name": "probe", "url": url, "oauth": oauth}]}, "<probe>").config.server(
        "probe"
    )
    assert isinstance(server, ServerConfig) and isinstance(server.oauth, OAuthConfig)
    store = MemoryStore()
    logins: list[LoginOutcome] = []
    report: dict[str, Any] = {"server": url}
    async with new_http_client() as http:

        async def login_for(challenge: Challenge, scopes: list[str] | None) -> StoredGrant | None:
            # Logins follow the server's challenges as they come: at initialize, at tools/list,
            # on a 403 step-up, or after the server moved to another authorization server.
            outcome = await login(server, store, http, login_options(headless, home=home), challenge=challenge,
                                  scopes=scopes)
            logins.append(outcome)
            return outcome.grant

        auth = LoginOnDemand(login_for, server="probe")
        try:
            async with open_session(url, transport=server.transport if server.transport != "stdio" else "http",
                                    auth=auth) as client:
                tools = (await client.list_tools()).tools
                report["tools"] = [t.name for t in tools]
                name = call or (tools[0].name if tools else None)
                if name is None:
                    report["call"] = None
                else:
                    tool = next((t for t in tools if t.name == name), None)
                    arguments = args if (args or call) else (_arguments_for(tool) if tool else {})
                    result = await client.call_tool(name, arguments)
                    report["call"] = {"tool": name, **tool_result_fields(result)}
        except McpRelayError:
            raise
        except Exception as exc:
            if auth.last_error is not None:
                raise auth.last_error from None
            raise McpRelayError(
                ErrorType.UPSTREAM_ERROR,
                f"the MCP session with {url} failed: {type(exc).__name__}: {str(exc)[:300]}",
                suggestion="check the server URL and that it speaks MCP over streamable HTTP or SSE",
                server="probe",
                correlation_id=logins[-1].correlation_id if logins else None,
            ) from None
    last = logins[-1] if logins else None
    report.update(
        auth_required=bool(logins),
        authorizations=len(logins),
        correlation_id=last.correlation_id if last else None,
        registration_kind=last.registration.kind if last and last.registration else None,
        scope=last.grant.tokens.scope if last and last.grant else None,
    )
    return report


def probe(
    ctx: typer.Context,
    url: Annotated[
        str, typer.Argument(metavar="URL", help="The MCP endpoint, e.g. https://example.com/mcp.", show_default=False)
    ],
    client_id: Annotated[
        str | None, typer.Option("--client-id", metavar="ID", help="A client registered with the server beforehand.")
    ] = None,
    client_secret: Annotated[
        str | None,
        typer.Option("--client-secret", metavar="SECRET", help="Its secret (safer: env MCPRELAY_CLIENT_SECRET)."),
    ] = None,
    client_metadata_url: Annotated[
        str | None, typer.Option("--client-metadata-url", metavar="URL", help="Your Client ID Metadata Document's URL.")
    ] = None,
    scope: Annotated[
        str | None, typer.Option("--scope", metavar="SCOPES", help="Scopes to ask for, space separated.")
    ] = None,
    call: Annotated[
        str | None, typer.Option("--call", metavar="TOOL", help="The tool to call (default: the first one listed).")
    ] = None,
    args: Annotated[
        str | None, typer.Option("--args", metavar="JSON", help="The tool's arguments as a JSON object.")
    ] = None,
    headless: Annotated[
        bool, typer.Option("--headless", help="Print the login URL instead of opening a browser.")
    ] = False,
    oauth_file: Annotated[
        str | None,
        typer.Option("--oauth", metavar="FILE", help="A JSON file with a server's oauth fields."),
    ] = None,
    json_output: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Try a server not in the config: log in, list tools, call one.

    Nothing is stored: the tokens live in memory for this run only.
    """
    import os

    runtime = get_runtime(ctx)
    json_output = runtime.use_json(json_output)
    home = runtime.home  # also configures the diagnostic log
    oauth: dict[str, Any] = _read_oauth_file(oauth_file) if oauth_file else {}
    if client_id:
        oauth["client_id"] = client_id
    secret = client_secret or os.environ.get("MCPRELAY_CLIENT_SECRET")
    if secret:
        oauth["client_secret"] = secret
    if client_metadata_url:
        oauth["client_metadata_url"] = client_metadata_url
    if scope:
        oauth["scopes"] = scope.split()
    report = anyio.run(_run, url, oauth, call, parse_args(args), headless_requested(headless), json_output, home)
    if json_output:
        print_json(report)
    else:
        print(f"server: {url}")
        kind = report["registration_kind"]
        print(f"auth: {f'required, {kind} client' if report['auth_required'] else 'none'}")
        print(f"tools ({len(report.get('tools', []))}): {', '.join(report.get('tools', [])) or '-'}")
        call_report = report.get("call")
        if call_report:
            print(f"call {call_report['tool']}: {'ERROR' if call_report['is_error'] else 'ok'}")
            for item in call_report["content"]:
                print("  " + (item.get("text") if item.get("type") == "text" else json.dumps(item))[:2000])
    call_report = report.get("call")
    if call_report and call_report["is_error"]:
        sys.exit(4)
