"""Entry point: global options, command groups, and one place where errors become exit codes."""

from __future__ import annotations

import logging
import sys
from typing import Annotated

import click
import typer

from mcprelay import seam
from mcprelay.cli import activity, auth, call, clientconfig, demo, probe, serve, tools, ui, upstream
from mcprelay.cli.runtime import Runtime, render_error
from mcprelay.errors import EXIT_USAGE, McpRelayError

app = typer.Typer(
    name="mcprelay",
    help="Connect agents to many MCP servers and own their OAuth, so authentication never breaks.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.add_typer(auth.app, name="auth")
app.add_typer(activity.app, name="activity")
app.command("probe")(probe.probe)
app.command("call")(call.call)
app.command("demo")(demo.demo)
app.command("serve")(serve.serve)
app.command("client-config")(clientconfig.client_config)
app.command("ui")(ui.ui)
app.add_typer(upstream.app, name="upstream")
app.add_typer(tools.app, name="tools")


@app.callback()
def _global(
    ctx: typer.Context,
    config: Annotated[
        str | None, typer.Option("--config", help="Config file (env MCPRELAY_CONFIG).", show_default=False)
    ] = None,
    home: Annotated[
        str | None,
        typer.Option("--home", help="Where tokens, logs and activity live (env MCPRELAY_HOME).", show_default=False),
    ] = None,
    log_level: Annotated[str, typer.Option("--log-level", help="Console log level.")] = "warning",
) -> None:
    logging.basicConfig(level=log_level.upper(), stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")
    ctx.obj = Runtime(config_option=config, home_option=home, log_level=log_level)
    _current.append(ctx.obj)


_current: list[Runtime] = []

# Typer ≥ 0.29 raises from its own bundled copy of click; older releases raise click's own classes.
_EXIT: tuple[type[BaseException], ...] = (typer.Exit, click.exceptions.Exit)
_ABORT: tuple[type[BaseException], ...] = (typer.Abort, click.exceptions.Abort, KeyboardInterrupt)
_USAGE: tuple[type[BaseException], ...] = seam.typer_usage_errors()


def main(argv: list[str] | None = None) -> None:
    """Run the CLI; every failure ends here as a rendered error and a contract exit code."""
    try:
        result = app(args=argv, standalone_mode=False)
    except McpRelayError as exc:
        json_output = bool(_current and _current[-1].json_output) or "--json" in (argv or sys.argv)
        sys.exit(render_error(exc, json_output))
    except _EXIT as exc:
        sys.exit(getattr(exc, "exit_code", 1))
    except _USAGE as exc:
        show = getattr(exc, "show", None)
        if callable(show):
            show()
        else:
            print(f"error: {exc}", file=sys.stderr)
        sys.exit(EXIT_USAGE)
    except _ABORT:
        print("aborted", file=sys.stderr)
        sys.exit(130)
    sys.exit(result if isinstance(result, int) else 0)
