"""What every command needs: the config, the home, the store, and how to print results and errors."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from mcprelay import diaglog
from mcprelay.errors import ErrorType, McpRelayError
from mcprelay.paths import resolve_home
from mcprelay.store.base import TokenStore

if TYPE_CHECKING:
    # Imported when a command loads it: the config module brings pydantic (~80 ms), which `--help` does not need.
    from mcprelay.config import LoadedConfig


LOG_LEVELS = "debug, info, warning, error"


def configure_logging(level: str) -> None:
    """Console logging at ``level``; library warnings (the SDK's deprecations) only at ``debug``.

    A warning a library prints about its own API is noise to a person running a command, and it lands
    in the middle of a tool result or a table; with ``--log-level debug`` they are logged like the rest.
    """
    import logging
    import warnings

    name = level.strip().upper()
    if name.lower() not in LOG_LEVELS.split(", ") and name != "CRITICAL":
        raise McpRelayError(
            ErrorType.USAGE_ERROR, f"--log-level {level!r} is not a log level",
            suggestion=f"use one of {LOG_LEVELS}",
        )
    root = logging.getLogger()
    if not any(getattr(h, "mcprelay_console", False) for h in root.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        handler.mcprelay_console = True  # type: ignore[attr-defined]
        root.addHandler(handler)
    root.setLevel(name)
    logging.captureWarnings(True)
    warnings.simplefilter("default")
    logging.getLogger("py.warnings").setLevel(logging.DEBUG if name == "DEBUG" else logging.CRITICAL)


@dataclass
class Runtime:
    config_option: str | None
    home_option: str | None
    log_level: str
    json_output: bool = False
    _loaded: LoadedConfig | None = field(default=None, repr=False)
    _home: Path | None = field(default=None, repr=False)
    _store: TokenStore | None = field(default=None, repr=False)

    def apply_globals(
        self, *, config: str | None = None, home: str | None = None, log_level: str | None = None,
        json_output: bool | None = None,
    ) -> None:
        """Global options given after the command (see :mod:`mcprelay.cli.base`); nothing was read yet."""
        if config is not None:
            self.config_option = config
            self._loaded = None
            self._store = None
        if home is not None:
            self.home_option = home
            self._home = None
            self._store = None
        if log_level is not None:
            configure_logging(log_level)
            self.log_level = log_level
        if json_output:
            self.json_output = True

    def use_json(self, flag: bool) -> bool:
        """Whether to print JSON: the command's own ``--json`` or the global one."""
        self.json_output = self.json_output or flag
        return self.json_output

    @property
    def home(self) -> Path:
        if self._home is None:
            self._home = resolve_home(self.home_option)
            diaglog.configure(self._home)
        return self._home

    @property
    def loaded(self) -> LoadedConfig:
        if self._loaded is None:
            from mcprelay.config import load_config, resolve_config_path

            path, named = resolve_config_path(self.config_option)
            self._loaded = load_config(path if (named or path.exists()) else None)
            for warning in self._loaded.warnings:
                print(f"warning: {warning}", file=sys.stderr)
        return self._loaded

    @property
    def store(self) -> TokenStore:
        if self._store is None:
            from mcprelay.store import open_store

            self._store = open_store(self.loaded.config.token_store, self.home)
        return self._store


def get_runtime(ctx: typer.Context) -> Runtime:
    runtime = ctx.find_root().obj
    assert isinstance(runtime, Runtime)
    return runtime


def tool_result_fields(result: Any) -> dict[str, Any]:
    """A tool result as plain JSON, the same keys for every command that prints one."""
    return {
        "is_error": bool(result.is_error),
        "content": [c.model_dump(mode="json", exclude_none=True) for c in result.content],
        "structured_content": result.structured_content,
    }


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


def debug_commands(error: McpRelayError) -> list[tuple[str, str]]:
    """The Debug block of an error: the commands to run next and the ids, as (label, value) rows."""
    rows: list[tuple[str, str]] = []
    if error.server and error.error_type not in (ErrorType.CONFIG_INVALID, ErrorType.USAGE_ERROR):
        rows.append(("server log", f"mcprelay upstream logs {error.server}"))
    if error.request_id:
        rows.append(("activity", f"mcprelay activity list --request-id {error.request_id}"))
        rows.append(("request id", error.request_id))
    if error.correlation_id:
        rows.append(("correlation id", error.correlation_id))
    return rows


def render_error(error: McpRelayError, json_output: bool, *, terminal: bool | None = None) -> int:
    """Render an error for people (on stderr) or scripts (JSON, on stdout); return its exit code.

    In a terminal: the type, server, message and suggestion on lines of their own, then a Debug
    block with the commands to run next (the server's log, the activity of the request) and both
    ids. Piped or captured: the same facts, the first line ``error (TYPE) [SERVER]: MESSAGE`` whole
    on one line for scripts to grep.
    """
    if json_output:
        print_json(error.to_dict())
        return error.exit_code
    if terminal is None:
        terminal = sys.stderr is not None and sys.stderr.isatty()
    from rich.console import Console
    from rich.markup import escape

    debug = debug_commands(error)
    if terminal:
        console = Console(stderr=True, highlight=False)
        console.print(f"[bold red]error:[/] [bold]{error.error_type}[/]")
        rows = [("server", error.server), ("message", error.message), ("what to do", error.suggestion)]
        for label, value in rows:
            if value:
                console.print(f"  [bold]{label + ':':<12}[/] {escape(value)}")
        if debug:
            console.print("\n  [bold]Debug[/]")
            for label, value in debug:
                console.print(f"    {label + ':':<16} {escape(value)}")
        return error.exit_code
    # soft_wrap: a piped or captured message stays on one line, whole, for scripts to grep.
    console = Console(stderr=True, highlight=False, soft_wrap=True)
    where = f" {escape('[' + error.server + ']')}" if error.server else ""
    console.print(f"error ({error.error_type}){where}: {escape(error.message)}")
    if error.suggestion:
        console.print(f"what to do: {escape(error.suggestion)}")
    if debug:
        console.print("debug:")
        for label, value in debug:
            console.print(f"  {label + ':':<16} {escape(value)}")
    return error.exit_code
