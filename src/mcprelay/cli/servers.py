"""``mcprelay upstream add | remove | enable | disable``: servers managed from the command line.

Each one is an edit of the config file (:mod:`mcprelay.configedit`: atomic, shape and other content
kept, checked by the strict loader before it is written). A running gateway watches that file and
applies the change within a second; the command says whether one runs, and whether it watches this
file.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from mcprelay.cli.runtime import Runtime, get_runtime, print_json
from mcprelay.errors import ErrorType, McpRelayError

PROTOCOLS = ("http", "streamable-http", "sse", "stdio", "auto")


def config_path(runtime: Runtime) -> Path:
    """The file the edit goes to: --config, MCPRELAY_CONFIG, else the default (created if missing)."""
    from mcprelay.config import resolve_config_path

    path, _named = resolve_config_path(runtime.config_option)
    return path


def lock_dir(runtime: Runtime) -> Path:
    return runtime.home / "locks"


def gateway_note(runtime: Runtime, path: Path) -> tuple[bool, str | None]:
    """(whether a gateway for this home runs, a sentence about whether it sees the edit)."""
    from mcprelay.gateway.control.runfile import read_runfile

    running = read_runfile(runtime.home)
    if running is None:
        return False, None
    watched = running.get("config")
    if watched and Path(watched) != path.resolve():
        return True, (f"note: the gateway running for this home (pid {running['pid']}) watches {watched}, "
                      f"not {path}; it will not see this change")
    return True, f"the running gateway (pid {running['pid']}) applies it within a second"


def parse_pairs(values: list[str] | None, what: str, *, header: bool = False) -> dict[str, str]:
    """``K=V`` (and for headers ``K: V``) options as a dict, or a usage error naming the bad one."""
    pairs: dict[str, str] = {}
    for raw in values or []:
        # A header name holds neither "=" nor ":", so the first of them separates it (curl's "K: V" works).
        cut = min((i for i in (raw.find("="), raw.find(":") if header else -1) if i >= 0), default=-1)
        key, sep, value = (raw[:cut], raw[cut], raw[cut + 1:]) if cut >= 0 else (raw, "", "")
        key = key.strip()
        if not sep or not key:
            example = "--header 'Authorization=Bearer ${keyring:NAME}'" if header else "--env KEY=VALUE"
            raise McpRelayError(
                ErrorType.USAGE_ERROR, f"{what} {raw[:80]!r} is not KEY=VALUE", suggestion=f"write it as {example}",
            )
        pairs[key] = value.strip() if header else value
    return pairs


def entry_for(
    target: list[str], *, headers: dict[str, str], env: dict[str, str], protocol: str | None, disabled: bool,
) -> dict[str, Any]:
    """The config entry ``upstream add`` writes for its arguments (URL, or COMMAND ARGS…)."""
    if not target:
        raise McpRelayError(
            ErrorType.USAGE_ERROR, "say what to add: a URL, or -- and the command that starts the server",
            suggestion="mcprelay upstream add github https://api.example.com/mcp  or  "
            "mcprelay upstream add files -- npx -y @modelcontextprotocol/server-filesystem ~/src",
        )
    if protocol is not None and protocol not in PROTOCOLS:
        raise McpRelayError(ErrorType.USAGE_ERROR, f"unknown --protocol {protocol!r}",
                            suggestion=f"use one of {', '.join(PROTOCOLS)}")
    body: dict[str, Any]
    first = target[0]
    if len(target) == 1 and "://" in first and not first.lower().startswith(("http://", "https://")):
        raise McpRelayError(ErrorType.USAGE_ERROR, f"{first!r} is not an http:// or https:// URL",
                            suggestion="give the server's http(s) URL, or -- and a command to run")
    if len(target) == 1 and first.lower().startswith(("http://", "https://")):
        body = {"url": first}
        if env:
            raise McpRelayError(ErrorType.USAGE_ERROR, "--env is for local (stdio) servers, not a URL",
                                suggestion="use --header for a remote server")
        if headers:
            body["headers"] = headers
    else:
        body = {"command": first}
        if target[1:]:
            body["args"] = list(target[1:])
        if env:
            body["env"] = env
        if headers:
            raise McpRelayError(ErrorType.USAGE_ERROR, "--header is for remote servers, not a command",
                                suggestion="use --env to give a local server its settings")
    if protocol is not None and protocol != "auto":
        body["protocol"] = protocol
    if disabled:
        body["enabled"] = False
    return body


def secret_warnings(name: str, body: dict[str, Any]) -> list[str]:
    """Warnings for values that look like credentials written in plain text (they belong in the keyring)."""
    from mcprelay.secretref import looks_secret, suggested_name

    warnings = []
    for field, flag in (("env", "--env"), ("headers", "--header")):
        for key, value in (body.get(field) or {}).items():
            if looks_secret(key, value):
                secret = suggested_name(name, key)
                prefix = "Bearer " if value.lower().startswith("bearer ") else ""
                warnings.append(
                    f"{'header' if field == 'headers' else 'env'} {key} of {name} looks like a secret, and it is now "
                    f"in the config file in plain text (and in your shell history). Keep it in the keyring instead: "
                    f"`mcprelay secrets set {secret}`, then run this command again with --replace and "
                    f"{flag} '{key}={prefix}${{keyring:{secret}}}'"
                )
    return warnings


def describe(body: dict[str, Any]) -> str:
    if "url" in body:
        kind = {"sse": "SSE", "stdio": "stdio"}.get(body.get("protocol", ""), "streamable HTTP")
        return f"{kind} {body['url']}"
    return "stdio " + " ".join([body.get("command", ""), *body.get("args", [])])


def _report(runtime: Runtime, json_output: bool, path: Path, action: str, name: str, **extra: Any) -> None:
    running, note = gateway_note(runtime, path)
    if json_output:
        print_json({"success": True, "action": action, "server": name, "config": str(path),
                    "gateway_running": running, **extra})
        return
    entry = extra.get("entry")
    what = f": {describe(entry)}" if entry else ""
    print(f"{action} {name}{what} ({path})")
    if note and action != "unchanged":
        print(note)
    for warning in extra.get("warnings", []):
        print(f"warning: {warning}", file=sys.stderr)


NameArg = Annotated[str, typer.Argument(metavar="NAME", help="The server's name in the config.", show_default=False)]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print the outcome as JSON.")]


def register(app: typer.Typer) -> None:
    """Add the editing commands to the ``upstream`` group."""

    @app.command("add")
    def add(
        ctx: typer.Context,
        name: Annotated[str, typer.Argument(metavar="NAME", help="A name for the server: letters, digits, - and _.",
                                            show_default=False)],
        target: Annotated[
            list[str] | None,
            typer.Argument(metavar="URL | -- COMMAND [ARGS]...",
                           help="The URL, or -- and the command that starts it.", show_default=False),
        ] = None,
        header: Annotated[
            list[str] | None,
            typer.Option("--header", "-H", metavar="KEY=VALUE", help="A header to send (repeatable).",
                         show_default=False),
        ] = None,
        env: Annotated[
            list[str] | None,
            typer.Option("--env", "-e", metavar="KEY=VALUE", help="An environment variable (repeatable).",
                         show_default=False),
        ] = None,
        protocol: Annotated[
            str | None,
            typer.Option("--protocol", metavar="PROTOCOL", help="http, sse or stdio (default: from the target).",
                         show_default=False),
        ] = None,
        disabled: Annotated[bool, typer.Option("--disabled", help="Add it switched off.")] = False,
        replace: Annotated[bool, typer.Option("--replace", help="Replace a server of that name.")] = False,
        json_output: JsonOpt = False,
    ) -> None:
        """Add a server to the config: a URL, or a command after --.

        Values may be secret references: --header 'Authorization=Bearer ${keyring:gh}' (store the
        secret with `mcprelay secrets set gh`) or --env 'TOKEN=${env:TOKEN}'. A value that looks
        like a credential written out earns a warning.

        \b
          mcprelay upstream add github https://api.githubcopilot.com/mcp/
          mcprelay upstream add fs -- npx -y @modelcontextprotocol/server-filesystem ~
        """
        from mcprelay.configedit import edit_config

        runtime = get_runtime(ctx)
        json_output = runtime.use_json(json_output)
        body = entry_for(
            target or [], headers=parse_pairs(header, "--header", header=True), env=parse_pairs(env, "--env"),
            protocol=protocol, disabled=disabled,
        )
        path = config_path(runtime)
        outcome = {"action": "added"}

        def change(doc: Any) -> None:
            existing = doc.get(name)
            if existing is not None:
                if existing == body:
                    outcome["action"] = "unchanged"
                    return
                if not replace:
                    raise McpRelayError(
                        ErrorType.USAGE_ERROR,
                        f"a server named {name!r} is already configured in {path}, differently "
                        f"({describe(existing)})",
                        suggestion="pick another name, or add --replace to replace it", server=name,
                    )
                outcome["action"] = "replaced"
            doc.put(name, body)

        edit_config(path, change, lock_dir=lock_dir(runtime))
        _report(runtime, json_output, path, outcome["action"], name, entry=body,
                warnings=secret_warnings(name, body))

    @app.command("remove")
    def remove(ctx: typer.Context, name: NameArg, json_output: JsonOpt = False) -> None:
        """Remove a server from the config (its tokens stay stored).

        Revoke them first with `mcprelay auth logout --server NAME` if you will not use it again.
        """
        from mcprelay.configedit import edit_config

        runtime = get_runtime(ctx)
        json_output = runtime.use_json(json_output)
        path = config_path(runtime)
        edit_config(path, lambda doc: doc.remove(name), lock_dir=lock_dir(runtime))
        _report(runtime, json_output, path, "removed", name)

    def switch(ctx: typer.Context, name: str, on: bool, json_output: bool) -> None:
        from mcprelay.configedit import edit_config, unknown_server

        runtime = get_runtime(ctx)
        json_output = runtime.use_json(json_output)
        path = config_path(runtime)
        outcome = {"action": "enabled" if on else "disabled"}

        def change(doc: Any) -> None:
            existing = doc.get(name)
            if existing is None:
                raise unknown_server(name, doc)
            if existing.get("enabled", True) is on:
                outcome["action"] = "unchanged"
                return
            if on:
                doc.drop_field(name, "enabled")  # enabled is the default: back to the entry as it was
            else:
                doc.update(name, enabled=False)

        edit_config(path, change, lock_dir=lock_dir(runtime))
        _report(runtime, json_output, path, outcome["action"], name, enabled=on)

    @app.command("enable")
    def enable(ctx: typer.Context, name: NameArg, json_output: JsonOpt = False) -> None:
        """Switch a server on (the gateway connects to it)."""
        switch(ctx, name, True, json_output)

    @app.command("disable")
    def disable(ctx: typer.Context, name: NameArg, json_output: JsonOpt = False) -> None:
        """Switch a server off without removing it from the config."""
        switch(ctx, name, False, json_output)
