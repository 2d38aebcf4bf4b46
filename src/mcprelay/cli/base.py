"""The shape every ``mcprelay`` command shares: its help page, and global options after the command.

Why not typer's own help: it prints a type tag for every option (``--help <bool>``, ``<int range>
[1<=x<=100]``) and ``{url}`` for arguments, which tells a person nothing they can type. The help
here shows what to type instead — ``--server NAME``, ``--tail N``, ``URL`` — one line per option,
and renders without rich, so ``--help`` does not pay for importing it.

Why global options are also accepted after the command: people (and MCPProxy's documentation) write
``mcprelay auth login --server=github --log-level=debug``. Every command (:class:`Command`) parses
the root group's ``--config``, ``--home``, ``--log-level`` and ``--json`` as options of its own — the
same option objects, so values and checks are identical — and hands them to the :class:`Runtime`
before its callback runs. Nothing is read before that (the runtime loads config and home lazily),
so a value given after the command wins just as one given before it would.

Only public click/typer API is used: ``Command.get_params``/``invoke``/``format_help``, parameter
attributes (``opts``, ``metavar``, ``help``, ``default``, ``required``, ``is_flag``, ``nargs``) and
``Context.get_parameter_source``.
"""

from __future__ import annotations

import inspect
import os
import shutil
import textwrap
from typing import Any, ClassVar

import typer
from typer.core import TyperCommand, TyperGroup

#: Parameters of the root group that every command also accepts after its name.
GLOBAL_PARAMS = ("config", "home", "log_level", "json_output")
_GIVEN = ("COMMANDLINE", "ENVIRONMENT")
MAX_WIDTH = 100


def _width() -> int:
    try:
        columns = int(os.environ.get("COLUMNS", ""))
    except ValueError:
        columns = shutil.get_terminal_size((80, 24)).columns
    return max(40, min(MAX_WIDTH, columns))


def _metavar(param: Any) -> str:
    if param.metavar:
        return str(param.metavar)
    return str(param.name or "value").upper().replace("_", "-")


def _option_label(param: Any) -> str:
    names = sorted(list(param.opts) + list(param.secondary_opts), key=lambda o: (o.startswith("--"), o))
    label = ", ".join(names)
    if not getattr(param, "is_flag", False) and not getattr(param, "count", False):
        label += f" {_metavar(param)}"
        if getattr(param, "multiple", False):
            label += " ..."
    return label


def _option_help(param: Any) -> str:
    if param.name == "help":
        return "Show this help and exit."
    text = " ".join((param.help or "").split())
    default = param.default
    if param.required:
        if param.param_type_name == "option":
            text += " (required)"
    elif (
        getattr(param, "show_default", False)
        and not getattr(param, "is_flag", False)
        and default not in (None, "", (), [])
        and not callable(default)
    ):
        text += f" (default: {default})"
    return text


def _argument_label(param: Any) -> str:
    name = _metavar(param)
    if param.nargs != 1 and not name.endswith("..."):
        name += "..."
    return name if param.required else f"[{name}]"


def _rows(lines: list[str], rows: list[tuple[str, str]], width: int) -> None:
    """``label  help`` rows, the help column aligned; a help too long for the line wraps under itself."""
    if not rows:
        return
    column = min(max(len(label) for label, _ in rows) + 2, 30)
    for label, text in rows:
        indent = " " * (2 + column)
        if len(label) + 2 > column:
            lines.append(f"  {label}")
            first = indent
        else:
            first = f"  {label.ljust(column)}"
        wrapped = textwrap.wrap(text, width=max(20, width - len(indent))) or [""]
        lines.append(first + wrapped[0])
        lines.extend(indent + rest for rest in wrapped[1:])


def _paragraphs(text: str, width: int) -> list[str]:
    out: list[str] = []
    for paragraph in inspect.cleandoc(text).split("\n\n"):
        paragraph = paragraph.strip("\n")
        if not paragraph:
            continue
        if paragraph.startswith(("  ", "$ ", "\b")) or "\n  " in paragraph:
            # Examples and lists keep their lines (a leading \b marks a block to keep, as in click).
            out.extend("  " + line for line in paragraph.removeprefix("\b\n").splitlines())
        else:
            out.extend("  " + line for line in textwrap.wrap(" ".join(paragraph.split()), width=width - 2))
        out.append("")
    return out


def render_help(command: Any, ctx: Any, *, width: int | None = None) -> str:
    """The help page of ``command``: usage, description, arguments, options, global options, commands."""
    width = width or _width()
    params = [p for p in command.get_params(ctx) if not getattr(p, "hidden", False)]
    globals_ = _root_globals(ctx)
    arguments = [p for p in params if p.param_type_name == "argument"]
    shared = [p for p in params if any(p is g for g in globals_)]
    own = [p for p in params if p.param_type_name == "option" and not any(p is g for g in globals_)]
    usage = [ctx.command_path]
    required = [p for p in own if p.required]
    usage.extend(f"{max(p.opts, key=len)} {_metavar(p)}" for p in required)
    if len(required) < len(own) or shared:
        usage.append("[OPTIONS]")
    usage.extend(_argument_label(p) for p in arguments)
    if isinstance(command, TyperGroup):
        usage.append("COMMAND [ARGS]...")
    lines = ["Usage: " + " ".join(usage), ""]
    if command.help:
        lines.extend(_paragraphs(command.help.partition("\f")[0], width))
    if arguments:
        lines.append("Arguments:")
        _rows(lines, [(_argument_label(p).strip("[]"), _option_help(p)) for p in arguments], width)
        lines.append("")
    if own:
        lines.append("Options:")
        _rows(lines, [(_option_label(p), _option_help(p)) for p in own], width)
        lines.append("")
    if shared:
        lines.append("Global options (before or after the command):" if own or arguments or ctx.parent else
                     "Options (before or after the command):")
        _rows(lines, [(_option_label(p), _option_help(p)) for p in shared], width)
        lines.append("")
    if isinstance(command, TyperGroup):
        rows = []
        for name in command.list_commands(ctx):
            sub = command.get_command(ctx, name)
            if sub is None or sub.hidden:
                continue
            rows.append((name, _summary(sub)))
        if rows:
            lines.append("Commands:")
            _rows(lines, rows, width)
            lines.append("")
            lines.append(f"Run `{ctx.command_path} COMMAND --help` for a command's options.")
    return "\n".join(lines).rstrip() + "\n"


def _summary(command: Any) -> str:
    """A command's one-line summary: its short help, else the first sentence of its help."""
    if command.short_help:
        return " ".join(command.short_help.split())
    first = inspect.cleandoc(command.help or "").split("\n\n")[0]
    return " ".join(first.split())


def _root_globals(ctx: Any) -> list[Any]:
    root = ctx.find_root().command
    if root is None:
        return []
    return [param for param in root.params if param.name in GLOBAL_PARAMS]


class Command(TyperCommand):
    """A leaf command: the root's global options accepted after it, and the help of :func:`render_help`."""

    def get_params(self, ctx: Any) -> list[Any]:
        params = list(super().get_params(ctx))
        if ctx.parent is None:  # the command run on its own (tests): nothing to share
            return params
        taken = {opt for p in params for opt in (*p.opts, *p.secondary_opts)}
        shared = [p for p in _root_globals(ctx) if not taken.intersection(p.opts)]
        helps = [p for p in params if p.name == "help"]
        rest = [p for p in params if p.name != "help"]
        return [*rest, *shared, *helps]

    def invoke(self, ctx: Any) -> Any:
        given: dict[str, Any] = {}
        for name in GLOBAL_PARAMS:
            if name in ctx.params and not any(p.name == name for p in self.params):
                value = ctx.params.pop(name)
                source = ctx.get_parameter_source(name)
                if source is not None and source.name in _GIVEN:
                    given[name] = value
        if given:
            from mcprelay.cli.runtime import Runtime

            runtime = ctx.find_root().obj
            if isinstance(runtime, Runtime):
                runtime.apply_globals(**given)
        return super().invoke(ctx)

    def format_help(self, ctx: Any, formatter: Any) -> None:
        formatter.write(render_help(self, ctx))


class Group(TyperGroup):
    """A command group with the help of :func:`render_help`."""

    def format_help(self, ctx: Any, formatter: Any) -> None:
        formatter.write(render_help(self, ctx))


class LazyGroup(Group):
    """The root group: each command's module is imported, and its typer app built, only when it runs.

    typer builds every command of the whole tree (inspecting every signature) on every start; with
    twenty commands that is most of ``mcprelay auth status``'s start-up. ``COMMANDS`` maps a name to
    ``"module:attribute"`` — a typer app (a group) or a command function.
    """

    COMMANDS: ClassVar[dict[str, str]] = {}

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._built: dict[str, Any] = {}

    def list_commands(self, ctx: Any) -> list[str]:
        return [*self.commands, *(n for n in self.COMMANDS if n not in self.commands)]

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        if cmd_name in self.commands:
            return self.commands[cmd_name]
        if cmd_name not in self.COMMANDS:
            return None
        if cmd_name not in self._built:
            import importlib

            module, _, attribute = self.COMMANDS[cmd_name].partition(":")
            target = getattr(importlib.import_module(module), attribute)
            built: Any
            if isinstance(target, typer.Typer):
                built = typer.main.get_group(target)  # a group even with one command (`activity list`)
            else:
                single = typer.Typer(add_completion=False)
                single.command(cmd_name, cls=Command)(target)
                built = typer.main.get_command(single)
            built.name = cmd_name
            self._built[cmd_name] = built
        return self._built[cmd_name]


def lazy_group(commands: dict[str, str]) -> type[LazyGroup]:
    return type("MainGroup", (LazyGroup,), {"COMMANDS": dict(commands)})


def new_app(help: str, *, cls: type[Group] = Group, **kwargs: Any) -> typer.Typer:
    """A command group whose commands all get :class:`Command` (use ``@app.command(...)`` as usual)."""
    app = typer.Typer(help=help, cls=cls, no_args_is_help=True, add_completion=False, **kwargs)
    original = app.command

    def command(*args: Any, **options: Any) -> Any:
        options.setdefault("cls", Command)
        return original(*args, **options)

    app.command = command  # type: ignore[method-assign]
    return app
