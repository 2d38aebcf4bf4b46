"""``mcprelay secrets set | get | list | delete NAME``: the secrets ``${keyring:NAME}`` references name.

``set`` never takes the value as an argument — argv is visible to every local user (``ps``) and kept
in shell history. It asks for it without echo when a person is at a terminal, and reads it from
stdin otherwise (``pass show github | mcprelay secrets set github``).
"""

from __future__ import annotations

import sys
import time
from typing import Annotated, Any

import typer

from mcprelay.cli.base import new_app
from mcprelay.cli.runtime import Runtime, get_runtime, print_json
from mcprelay.errors import EXIT_USAGE, ErrorType, McpRelayError

app = new_app("Secrets for ${keyring:NAME} references in the config.")

NameArg = Annotated[str, typer.Argument(metavar="NAME", help="The secret's name, as in ${keyring:NAME}.",
                                        show_default=False)]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print the outcome as JSON.")]
MAX_SECRET_BYTES = 64 * 1024


def _store(runtime: Runtime) -> Any:
    from mcprelay.secretref import secret_store

    return secret_store(runtime.home, runtime.store)


def _read_value(name: str) -> str:
    if sys.stdin is not None and sys.stdin.isatty():
        import getpass

        value = getpass.getpass(f"Value for {name} (not shown): ")
    else:
        value = sys.stdin.read(MAX_SECRET_BYTES + 1) if sys.stdin is not None else ""
        if len(value) > MAX_SECRET_BYTES:
            raise McpRelayError(ErrorType.USAGE_ERROR, f"the value on stdin is longer than {MAX_SECRET_BYTES} bytes",
                                suggestion="a secret is a token or a password, not a file")
        value = value.removesuffix("\n").removesuffix("\r")
    if not value:
        raise McpRelayError(ErrorType.USAGE_ERROR, f"no value given for {name}; nothing was stored",
                            suggestion="type it at the prompt, or pipe it in: … | mcprelay secrets set NAME")
    return value


def _users(runtime: Runtime, name: str) -> list[str]:
    """Where the config refers to ``${keyring:name}``: ``server field`` strings."""
    from mcprelay.secretref import server_references

    try:
        servers = runtime.loaded.config.mcp_servers
    except McpRelayError:
        return []
    return [f"{s.name} {field}" for s in servers for field, kind, ref in server_references(s)
            if kind == "keyring" and ref == name]


@app.command("set")
def set_secret(ctx: typer.Context, name: NameArg, json_output: JsonOpt = False) -> None:
    """Store a secret (asked for unechoed, or read from stdin).

    In a terminal the value is asked for without echo; otherwise it is read from stdin (one
    trailing newline dropped). It is never taken from the command line, which other users can see.
    """
    from mcprelay.secretref import check_name

    runtime = get_runtime(ctx)
    json_output = runtime.use_json(json_output)
    check_name(name)
    value = _read_value(name)
    store = _store(runtime)
    store.set(name, value)
    users = _users(runtime, name)
    if json_output:
        print_json({"success": True, "name": name, "store": store.describe(), "used_by": users})
        return
    print(f"stored {name} in {store.describe()}")
    print(f"used by: {', '.join(users)}" if users else f"refer to it in the config as ${{keyring:{name}}}")


@app.command("get")
def get_secret(ctx: typer.Context, name: NameArg) -> None:
    """Print a secret's value (for piping into another program)."""
    runtime = get_runtime(ctx)
    store = _store(runtime)
    value = store.get(name)
    if value is None:
        raise McpRelayError(ErrorType.USAGE_ERROR, f"no secret named {name!r} in {store.describe()}",
                            suggestion=f"store it with `mcprelay secrets set {name}`; see `mcprelay secrets list`")
    sys.stdout.write(value + ("\n" if sys.stdout.isatty() else ""))


@app.command("list")
def list_secrets(ctx: typer.Context, json_output: JsonOpt = False) -> None:
    """The stored secrets' names (never their values) and their users."""
    from mcprelay.secretref import server_references

    runtime = get_runtime(ctx)
    json_output = runtime.use_json(json_output)
    store = _store(runtime)
    names = store.names()
    wanted: dict[str, list[str]] = {}
    for server in runtime.loaded.config.mcp_servers:
        for field, kind, ref in server_references(server):
            if kind == "keyring":
                wanted.setdefault(ref, []).append(f"{server.name} {field}")
    rows = [{"name": n, "set_at": info.get("set_at"), "used_by": wanted.get(n, [])} for n, info in names.items()]
    missing = [{"name": n, "used_by": users} for n, users in sorted(wanted.items()) if n not in names]
    if json_output:
        print_json({"store": store.describe(), "secrets": rows, "missing": missing})
        return
    if not rows:
        print(f"no secrets stored (in {store.describe()}); add one with `mcprelay secrets set NAME`")
    for row in rows:
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(row["set_at"])) if row["set_at"] else "?"
        used = "used by " + ", ".join(row["used_by"]) if row["used_by"] else "unused"
        print(f"{row['name']:<28} set {when}   {used}")
    for row in missing:
        print(f"{row['name']:<28} MISSING          used by {', '.join(row['used_by'])}: "
              f"`mcprelay secrets set {row['name']}`")
    if missing:
        raise typer.Exit(EXIT_USAGE)


@app.command("delete")
def delete_secret(ctx: typer.Context, name: NameArg, json_output: JsonOpt = False) -> None:
    """Remove a stored secret."""
    runtime = get_runtime(ctx)
    json_output = runtime.use_json(json_output)
    store = _store(runtime)
    existed = store.delete(name)
    users = _users(runtime, name)
    if json_output:
        print_json({"success": True, "name": name, "deleted": existed, "used_by": users})
        return
    print(f"deleted {name}" if existed else f"no secret named {name} was stored")
    if users:
        print(f"warning: {', '.join(users)} still refer to ${{keyring:{name}}}", file=sys.stderr)
