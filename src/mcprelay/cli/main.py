"""Entry point: global options, command groups, and one place where errors become exit codes."""

from __future__ import annotations

import sys
from typing import Annotated

import click
import typer

from mcprelay import seam
from mcprelay.cli.base import lazy_group, new_app
from mcprelay.cli.runtime import Runtime, configure_logging, render_error
from mcprelay.errors import EXIT_USAGE, McpRelayError

#: Every command, in the order `mcprelay --help` lists them; each module is imported only when it runs.
COMMANDS = {
    "auth": "mcprelay.cli.auth:app",
    "call": "mcprelay.cli.call:call",
    "tools": "mcprelay.cli.tools:app",
    "upstream": "mcprelay.cli.upstream:app",
    "serve": "mcprelay.cli.serve:serve",
    "client-config": "mcprelay.cli.clientconfig:client_config",
    "ui": "mcprelay.cli.ui:ui",
    "doctor": "mcprelay.cli.doctor:doctor",
    "secrets": "mcprelay.cli.secretscmd:app",
    "activity": "mcprelay.cli.activity:app",
    "probe": "mcprelay.cli.probe:probe",
    "demo": "mcprelay.cli.demo:demo",
}

app = new_app(
    "Connect agents to many MCP servers and own their OAuth, so authentication never breaks.",
    cls=lazy_group(COMMANDS),
    name="mcprelay",
    pretty_exceptions_enable=False,
)


@app.callback()
def _global(
    ctx: typer.Context,
    config: Annotated[
        str | None,
        typer.Option("--config", metavar="FILE", help="The config file (env MCPRELAY_CONFIG).", show_default=False),
    ] = None,
    home: Annotated[
        str | None,
        typer.Option("--home", metavar="DIR", help="Tokens, logs and activity live here (env MCPRELAY_HOME).",
                     show_default=False),
    ] = None,
    log_level: Annotated[
        str,
        typer.Option("--log-level", metavar="LEVEL", help="Stderr log level: debug, info, warning (default), error.",
                     show_default=False),
    ] = "warning",
    json_output: Annotated[bool, typer.Option("--json", help="Print results and errors as JSON.")] = False,
) -> None:
    configure_logging(log_level)
    ctx.obj = Runtime(config_option=config, home_option=home, log_level=log_level, json_output=json_output)
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
