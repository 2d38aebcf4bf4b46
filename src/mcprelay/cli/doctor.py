"""``mcprelay doctor [--server NAME] [--json]``: the checks of :mod:`mcprelay.doctor`, printed for people.

Exit code 1 when a problem was found (warnings alone exit 0), 2 when ``--server`` names no server.
"""

from __future__ import annotations

import textwrap
from typing import Annotated

import anyio
import typer

from mcprelay.cli.runtime import get_runtime, print_json

_MARK = {"ok": "ok", "info": "info", "warning": "warning", "problem": "PROBLEM"}
EXIT_PROBLEMS = 1


def doctor(
    ctx: typer.Context,
    server: Annotated[
        str | None,
        typer.Option("--server", "-s", metavar="NAME", help="Check only this server (and the system).",
                     show_default=False),
    ] = None,
    json_output: Annotated[bool, typer.Option("--json", help="Print the findings as JSON.")] = False,
) -> None:
    """Find what is wrong: config, servers, OAuth, clock, ports.

    Each server is checked the way a login would meet it: reachable, metadata valid (issuer, PKCE
    S256, a way to be a client), the clock against the authorization server's, the client
    registration still alive, tokens not about to expire without a refresh token. Nothing is
    changed. Exit code 1 when a problem was found.
    """
    from mcprelay.config import resolve_config_path
    from mcprelay.doctor import run_checks

    runtime = get_runtime(ctx)
    json_output = runtime.use_json(json_output)
    path, named = resolve_config_path(runtime.config_option)
    report = anyio.run(lambda: run_checks(config_path=path, config_named=named, home=runtime.home, only=server))
    if json_output:
        print_json(report.to_dict())
    else:
        _print(report)
    if report.problems:
        raise typer.Exit(EXIT_PROBLEMS)


def _print(report: object) -> None:
    import shutil

    from mcprelay.doctor import Report

    assert isinstance(report, Report)
    width = max(60, min(100, shutil.get_terminal_size((80, 24)).columns))
    print(f"mcprelay doctor — config {report.config or '(none)'}, home {report.home}")
    subject_width = max([len(f.server or f.check) for f in report.findings] + [8])
    indent = 2 + 8 + 1 + subject_width + 2
    for finding in report.findings:
        subject = finding.server or finding.check
        head = f"  {_MARK[finding.status]:<8} {subject:<{subject_width}}  "
        lines = textwrap.wrap(finding.message, width=width - indent) or [""]
        print(head + lines[0])
        for line in lines[1:]:
            print(" " * indent + line)
        if finding.suggestion and finding.status in ("warning", "problem"):
            fix = textwrap.wrap("what to do: " + finding.suggestion, width=width - indent)
            for line in fix:
                print(" " * indent + line)
    problems, warnings = report.problems, report.warnings
    verdict = "no problems found" if not problems else f"{problems} problem{'s' if problems != 1 else ''}"
    print(f"{verdict}, {warnings} warning{'s' if warnings != 1 else ''}")
