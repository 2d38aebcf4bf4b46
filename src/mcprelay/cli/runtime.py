"""What every command needs: the config, the home, the store, and how to print results and errors."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from mcprelay import diaglog
from mcprelay.errors import McpRelayError
from mcprelay.paths import resolve_home
from mcprelay.store.base import TokenStore

if TYPE_CHECKING:
    # Imported when a command loads it: the config module brings pydantic (~80 ms), which `--help` does not need.
    from mcprelay.config import LoadedConfig


@dataclass
class Runtime:
    config_option: str | None
    home_option: str | None
    log_level: str
    json_output: bool = False
    _loaded: LoadedConfig | None = field(default=None, repr=False)
    _home: Path | None = field(default=None, repr=False)
    _store: TokenStore | None = field(default=None, repr=False)

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


def render_error(error: McpRelayError, json_output: bool) -> int:
    """Render an error for people (rich, on stderr) or scripts (JSON, on stdout); return its exit code."""
    if json_output:
        print_json(error.to_dict())
    else:
        from rich.console import Console
        from rich.markup import escape

        # soft_wrap: a piped or captured message stays on one line, whole, for scripts to grep.
        console = Console(stderr=True, highlight=False, soft_wrap=True)
        where = f" {escape('[' + error.server + ']')}" if error.server else ""
        console.print(f"[bold red]error[/] ({error.error_type}){where}: {escape(error.message)}")
        if error.suggestion:
            console.print(f"[bold]what to do:[/] {escape(error.suggestion)}")
        ids = [f"correlation_id={error.correlation_id}"] if error.correlation_id else []
        if error.request_id:
            ids.append(f"request_id={error.request_id}")
        if ids:
            console.print(f"[dim]{' '.join(ids)}[/]")
    return error.exit_code
