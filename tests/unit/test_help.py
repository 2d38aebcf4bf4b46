"""The help pages as people read them: real metavars, no type tags, one line per option at 80 columns."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
import typer

from mcprelay.cli.base import render_help
from mcprelay.cli.main import app

# What typer prints in place of a metavar: "<str>", "<bool>", "<int range>", "[1<=x<=100]", "{url}".
TYPE_TAG = re.compile(r"<(str|bool|int|float|path|int range|float range)>|\[\d+<=x<=\d+\]|\{[a-z_]+\}")


def _commands() -> Iterator[tuple[list[str], Any, Any]]:
    """(path, command, context) for the root, every group and every command."""
    root = typer.main.get_command(app)
    root_ctx = root.make_context("mcprelay", [], resilient_parsing=True)

    def walk(path: list[str], command: Any, ctx: Any) -> Iterator[tuple[list[str], Any, Any]]:
        yield path, command, ctx
        for name in getattr(command, "list_commands", lambda _c: [])(ctx):
            sub = command.get_command(ctx, name)
            sub_ctx = sub.make_context(name, [], parent=ctx, resilient_parsing=True)
            yield from walk([*path, name], sub, sub_ctx)

    yield from walk(["mcprelay"], root, root_ctx)


ALL = list(_commands())


def _section(text: str, title: str) -> list[str]:
    lines = text.splitlines()
    starts = [i for i, line in enumerate(lines) if line.startswith(title)]
    if not starts:
        return []
    out = []
    for line in lines[starts[0] + 1:]:
        if not line.strip():
            break
        out.append(line)
    return out


@pytest.mark.parametrize(("path", "command", "ctx"), ALL, ids=[" ".join(p) for p, _c, _x in ALL])
def test_help_has_metavars_and_one_line_per_option(path: list[str], command: Any, ctx: Any) -> None:
    text = render_help(command, ctx, width=80)
    assert not TYPE_TAG.search(text), text
    assert text.startswith(f"Usage: {' '.join(path)}")
    for line in text.splitlines():
        assert len(line) <= 80, line
    for title in ("Options", "Global options", "Arguments", "Commands"):
        rows = _section(text, title)
        for row in rows:
            # A continuation line (help wrapped onto a second line) starts with the help column's indent.
            assert re.match(r"  \S", row) and not row.startswith("   "), f"{' '.join(path)}: wrapped row {row!r}"
    options = [p for p in command.get_params(ctx) if p.param_type_name == "option" and not p.hidden]
    rows = _section(text, "Options") + _section(text, "Global options") + _section(text, "Options (before")
    for option in options:
        long = max(option.opts, key=len)
        assert any(long in row for row in rows), f"{long} missing from {' '.join(path)} --help"
        assert option.help, f"{' '.join(path)} {long} says nothing about what it does"
        if not getattr(option, "is_flag", False):
            assert re.search(re.escape(long) + r" [A-Z][A-Z0-9:=|_.-]*", text), f"{long} has no metavar"


def test_every_command_accepts_the_global_options_after_it() -> None:
    for path, command, ctx in ALL:
        if isinstance(command, typer.core.TyperGroup):
            continue
        names = {opt for p in command.get_params(ctx) for opt in p.opts}
        assert {"--config", "--home", "--log-level", "--json"} <= names, " ".join(path)


def test_auth_login_help_explains_the_browser_and_pasting() -> None:
    _path, command, ctx = next(c for c in ALL if c[0] == ["mcprelay", "auth", "login"])
    text = render_help(command, ctx, width=80)
    assert "BROWSER" in text and "webbrowser" in text
    assert "paste" in text and "/callback?code=" in text
    assert "Usage: mcprelay auth login --server NAME [OPTIONS]" in text


def test_arguments_show_as_metavars_in_usage() -> None:
    for words, usage in ((["probe"], "mcprelay probe [OPTIONS] URL"),
                         (["call"], "mcprelay call [OPTIONS] SERVER TOOL"),
                         (["upstream", "add"], "mcprelay upstream add [OPTIONS] NAME [URL | -- COMMAND [ARGS]...]")):
        _path, command, ctx = next(c for c in ALL if c[0] == ["mcprelay", *words])
        assert render_help(command, ctx, width=80).splitlines()[0] == f"Usage: {usage}"


def test_defaults_are_shown_in_words() -> None:
    _path, command, ctx = next(c for c in ALL if c[0] == ["mcprelay", "upstream", "logs"])
    text = render_help(command, ctx, width=80)
    assert "-n, --tail N" in text and "(default: 100)" in text
