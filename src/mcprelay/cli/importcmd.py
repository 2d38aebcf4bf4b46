"""``mcprelay upstream import FILE``: the servers of another MCP client's config, added to mcprelay's.

Reading the other client's file is :mod:`mcprelay.importers`; this is the decision per server and
the one atomic write: a server mcprelay does not have is added; one it has the same way is left as
it is; one it has differently is a conflict — reported with both versions and not overwritten
unless ``--replace`` says so. ``--dry-run`` shows all of it and writes nothing.
"""

from __future__ import annotations

import shutil
import sys
import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import typer

from mcprelay.cli.runtime import get_runtime, print_json
from mcprelay.cli.servers import config_path, describe, gateway_note, lock_dir, secret_warnings
from mcprelay.errors import EXIT_USAGE, ErrorType, McpRelayError

MAX_IMPORT_BYTES = 4 * 1024 * 1024  # ~/.claude.json grows with history; a few MiB at most


@dataclass
class Plan:
    added: list[dict[str, Any]] = field(default_factory=list)
    replaced: list[dict[str, Any]] = field(default_factory=list)
    unchanged: list[dict[str, Any]] = field(default_factory=list)
    conflicts: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in ("added", "replaced", "unchanged", "conflicts", "skipped", "notes")}


def _read(path: Path) -> str:
    try:
        with path.open("rb") as handle:
            data = handle.read(MAX_IMPORT_BYTES + 1)
    except FileNotFoundError:
        raise McpRelayError(ErrorType.USAGE_ERROR, f"{path} does not exist",
                            suggestion="give the path of the other client's config file") from None
    except OSError as exc:
        raise McpRelayError(ErrorType.USAGE_ERROR, f"cannot read {path}: {exc.strerror or exc}",
                            suggestion="give the path of a readable config file") from None
    if len(data) > MAX_IMPORT_BYTES:
        raise McpRelayError(ErrorType.USAGE_ERROR, f"{path} is larger than {MAX_IMPORT_BYTES // (1024 * 1024)} MiB",
                            suggestion="check that FILE is an MCP client's config")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise McpRelayError(ErrorType.USAGE_ERROR, f"{path} is not UTF-8 text",
                            suggestion="check that FILE is an MCP client's config") from None


def plan_import(servers: list[Any], existing: Any, *, replace: bool) -> Plan:
    """What importing ``servers`` into the document ``existing`` does, server by server."""
    from mcprelay.importers import mcprelay_name

    plan = Plan()
    taken: dict[str, dict[str, Any]] = {}
    for item in servers:
        plan.notes.extend(item.notes)
        if not item.body:
            plan.skipped.append({"name": item.source_name, "reason": "; ".join(item.notes) or "nothing to import"})
            continue
        name = mcprelay_name(item.name)
        row: dict[str, Any] = {"name": name, "entry": item.body}
        if name != item.source_name:
            row["renamed_from"] = item.source_name
        if item.where:
            row["from"] = item.where
        if name in taken:
            if taken[name] != item.body:
                again = f" in {item.where}" if item.where else ""
                plan.skipped.append({"name": name, "reason": f"appears again{again} with other settings; "
                                     "the first one was taken"})
            continue
        taken[name] = item.body
        current = existing.get(name)
        folded = {n.casefold(): n for n in existing.names()}
        if current is None and name.casefold() in folded:
            row["existing_name"] = folded[name.casefold()]
            current = existing.get(folded[name.casefold()])
        if current is None:
            plan.added.append(row)
        elif current == item.body:
            plan.unchanged.append(row)
        elif replace:
            plan.replaced.append({**row, "was": current})
        else:
            plan.conflicts.append({**row, "configured": current})
    return plan


def import_servers(
    ctx: typer.Context,
    file: Annotated[str, typer.Argument(metavar="FILE", help="The other client's config file.", show_default=False)],
    fmt: Annotated[
        str | None,
        typer.Option("--format", "-f", metavar="FORMAT",
                     help="The file's format (default: detected from the file).",
                     show_default=False),
    ] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show what would change; write nothing.")] = False,
    replace: Annotated[
        bool, typer.Option("--replace", help="Take the imported version of conflicting servers.")
    ] = False,
    json_output: Annotated[bool, typer.Option("--json", help="Print the outcome as JSON.")] = False,
) -> None:
    """Add the servers of another MCP client's config file.

    Reads Claude Desktop's claude_desktop_config.json, Claude Code's .mcp.json or ~/.claude.json,
    Cursor's mcp.json, VS Code's mcp.json (or settings.json) and Codex's config.toml (--format
    claude-desktop, claude-code, cursor, vscode or codex; detected when not given). A server
    configured already the same way is left alone; one configured differently is a conflict: it is
    reported, and kept as it is unless --replace. Secrets stay references: an environment variable
    becomes ${env:NAME}, a VS Code input ${keyring:ID}. Exit code 2 when conflicts were left.
    """
    from mcprelay.configedit import edit_config, read_document
    from mcprelay.importers import FORMATS, UnreadableConfig, parse

    runtime = get_runtime(ctx)
    json_output = runtime.use_json(json_output)
    if fmt is not None and fmt not in FORMATS:
        raise McpRelayError(ErrorType.USAGE_ERROR, f"unknown --format {fmt!r}",
                            suggestion=f"use one of {', '.join(FORMATS)}, or leave it out to detect it")
    source = Path(file).expanduser()
    try:
        result = parse(_read(source), str(source), fmt)
    except UnreadableConfig as exc:
        raise McpRelayError(
            ErrorType.USAGE_ERROR, f"{source}: {exc}",
            suggestion=f"check the file, or name its format with --format ({', '.join(FORMATS)})",
        ) from None
    path = config_path(runtime)
    plans: list[Plan] = []

    def change(doc: Any) -> None:
        plans.clear()
        plan = plan_import(result.servers, doc, replace=replace)
        plans.append(plan)
        for row in [*plan.added, *plan.replaced]:
            doc.put(row.get("existing_name", row["name"]), row["entry"])

    written = False
    if not result.servers:
        plans.append(plan_import([], read_document(path), replace=replace))
    else:
        outcome = edit_config(path, change, lock_dir=lock_dir(runtime), dry_run=dry_run)
        written = outcome.written and bool(plans[0].added or plans[0].replaced)
    plan = plans[0]
    warnings = [w for row in [*plan.added, *plan.replaced] for w in secret_warnings(row["name"], row["entry"])]
    running, note = gateway_note(runtime, path)
    if json_output:
        print_json({"success": not plan.conflicts, "source": str(source), "format": result.format,
                    "config": str(path), "dry_run": dry_run, "written": written, "gateway_running": running,
                    "warnings": warnings, **plan.to_dict()})
    else:
        _print(plan, source, result.format, path, dry_run, written, note, warnings)
    if plan.conflicts:
        raise typer.Exit(EXIT_USAGE)


def _print(plan: Plan, source: Path, fmt: str, path: Path, dry_run: bool, written: bool, note: str | None,
           warnings: list[str]) -> None:
    print(f"{'Would import' if dry_run else 'Importing'} {source} ({fmt}) into {path}")
    width = max([len(r["name"]) for r in [*plan.added, *plan.replaced, *plan.unchanged, *plan.conflicts,
                                          *plan.skipped]] + [4])
    for verb, rows in (("added", plan.added), ("replaced", plan.replaced), ("unchanged", plan.unchanged)):
        for row in rows:
            renamed = f" (was {row['renamed_from']!r})" if "renamed_from" in row else ""
            label = "would add" if dry_run and verb == "added" else verb
            print(f"  {label:<10} {row['name']:<{width}}  {describe(row['entry'])}{renamed}")
    for row in plan.conflicts:
        print(f"  {'conflict':<10} {row['name']:<{width}}  configured: {describe(row['configured'])}")
        print(f"  {'':<10} {'':<{width}}  imported:   {describe(row['entry'])}")
    for row in plan.skipped:
        print(f"  {'skipped':<10} {row['name']:<{width}}  {row['reason']}")
    columns = max(60, min(100, shutil.get_terminal_size((80, 24)).columns))
    for text in plan.notes:
        print(textwrap.fill(text, width=columns, initial_indent="  note: ", subsequent_indent="        "))
    counts = [f"{len(plan.added)} {'to add' if dry_run else 'added'}", f"{len(plan.unchanged)} unchanged"]
    if plan.replaced:
        counts.append(f"{len(plan.replaced)} replaced")
    if plan.conflicts:
        counts.append(f"{len(plan.conflicts)} conflict{'s' if len(plan.conflicts) != 1 else ''} (yours kept; "
                      "--replace takes the imported version)")
    if plan.skipped:
        counts.append(f"{len(plan.skipped)} skipped")
    tail = "dry run: nothing written" if dry_run else ("written" if written else "nothing to write")
    print(f"{', '.join(counts)}; {tail}")
    if note and written:
        print(note)
    for warning in warnings:
        print(f"warning: {warning}", file=sys.stderr)
