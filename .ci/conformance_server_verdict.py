#!/usr/bin/env python3
"""The verdict of .ci/conformance-server.sh: which rows fail, and why, check by check.

    conformance_server_verdict.py OUT BASELINE COLUMNS TRANSPORT_SCENARIOS ELAPSED

Reads ``OUT/rows.txt`` ("<version> <row>" per line) and every run's ``OUT/<v>/<column>/<row>/``
(``result`` and ``suite/**/checks.json``). Each column but ``direct`` is judged against the run it
differs from by one thing: ``listen`` (the gateway over HTTP) against ``direct`` (the fixture over
HTTP), ``bridge`` (the fixture behind .ci/stdio_bridge.py) against ``direct``, and ``stdio`` (the
gateway behind the bridge) against ``bridge``. A column fails a row when it records a failing check
(FAILURE or WARNING, counted by id and name) that its control does not, or when its run failed
without recording any check; ``direct`` fails a row when it fails at all. Every failure needs a
baseline entry ``<version|*> <row> [column] # reason`` (no column: listen and stdio), or the run fails.

Writes OUT/summary.md, OUT/failures.md (each unexpected failure: its new failing checks with their
details, and where the logs are) and OUT/baseline-candidate.txt (those failures in the baseline's
format); prints the table; exits 1 when a row fails, else 0.
"""

from __future__ import annotations

import glob
import json
import os
import sys
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

CONTROL = {"listen": "direct", "bridge": "direct", "stdio": "bridge"}  # column -> what it is compared with
GATEWAY = ("listen", "stdio")
ORDER = ("direct", "listen", "bridge", "stdio")


@dataclass
class Run:
    status: str  # pass | fail | skip | n/a
    seconds: float = 0.0
    detail: str = ""
    bad: Counter[tuple[str, str]] = field(default_factory=Counter)
    checks: list[dict[str, Any]] = field(default_factory=list)


def load_run(out: str, version: str, column: str, row: str) -> Run:
    base = f"{out}/{version}/{column}/{row}"
    try:
        status, seconds, detail = open(f"{base}/result").read().rstrip("\n").split("\t", 2)
        run = Run(status, float(seconds), detail)
    except (OSError, ValueError):
        return Run("fail", 0.0, "no result recorded")
    for path in sorted(glob.glob(f"{base}/suite/**/checks.json", recursive=True)):
        try:
            run.checks += json.load(open(path))
        except (OSError, ValueError):
            pass
    run.bad = failing(run.checks)
    return run


def failing(checks: list[dict[str, Any]]) -> Counter[tuple[str, str]]:
    return Counter((str(c.get("id")), str(c.get("name"))) for c in checks if c.get("status") in ("FAILURE", "WARNING"))


def new_failures(run: Run, control: Run) -> Counter[tuple[str, str]] | None:
    """The failing checks of ``run`` its control does not have; None when ``run`` does not fail at all.

    A run that failed without a failing check (the suite crashed, timed out, recorded nothing) has
    nothing to compare: it counts as one failure of its own, unless the control failed the same way.
    """
    if run.status != "fail":
        return None
    extra = run.bad - control.bad
    if not run.bad and (control.status != "fail" or control.bad):
        extra = Counter({("(run)", run.detail[:200]): 1})
    return extra


def load_baseline(path: str) -> list[tuple[str, str, str | None, str]]:
    entries = []
    if not os.path.exists(path):
        return entries
    for line in open(path):
        body, _, reason = line.partition("#")
        words = body.split()
        if len(words) >= 2:
            entries.append((words[0], words[1], words[2] if len(words) > 2 else None, reason.strip() or "baselined"))
    return entries


def baselined(entries: list[tuple[str, str, str | None, str]], version: str, row: str, column: str) -> str | None:
    for ver, name, col, reason in entries:
        if ver in (version, "*") and name == row and (col == column or (col is None and column in GATEWAY)):
            return reason
    return None


def judge(
    version: str,
    row: str,
    runs: dict[str, Run],
    entries: list[tuple[str, str, str | None, str]],
) -> tuple[str, list[str], list[tuple[str, Counter[tuple[str, str]]]], list[str]]:
    """``(verdict, notes, unexpected failures as (column, new failing checks), baseline candidates)``."""
    notes: list[str] = []
    unexpected: list[tuple[str, Counter[tuple[str, str]]]] = []
    candidates: list[str] = []
    expected = False
    for column in ORDER:
        run = runs.get(column)
        if run is None or run.status == "n/a":
            continue
        reason = baselined(entries, version, row, column)
        if column in CONTROL:
            control = runs.get(CONTROL[column])
            if control is None or control.status == "n/a":
                continue
            extra = new_failures(run, control)
            failed = bool(extra)
            what = ", ".join(f"{i}" for i, _ in (extra or {})) if failed else ""
            if control.status == "fail" and run.status == "fail" and not failed:
                notes.append(f"{column}: fails like {CONTROL[column]}")
            elif control.status == "fail" and run.status != "fail":
                notes.append(f"{column}: passes (its control {CONTROL[column]} does not)")
            elif control.status == "pass" and run.status == "skip":
                notes.append(f"{column}: the suite skipped every check here (it ran them for {CONTROL[column]})")
        else:
            failed = run.status == "fail"
            what = run.detail
        if failed and reason:
            expected = True
            notes.append(f"{column}: baseline: {reason}")
        elif failed:
            unexpected.append((column, extra if column in CONTROL and extra else Counter()))
            notes.append(f"{column}: {what if column in CONTROL else run.detail}")
            candidates.append(f"{version} {row} {column} # {(run.detail if column not in CONTROL else what)[:200]}")
        elif reason:
            notes.append(f"{column}: baselined but not failing: remove the entry? ({reason})")
    if unexpected:
        verdict = "FAIL"
    elif expected:
        verdict = "XFAIL"
    elif all(r.status in ("skip", "n/a") for r in runs.values()):
        verdict = "skip"
    else:
        verdict = "ok"
    return verdict, notes, unexpected, candidates


def main(argv: list[str]) -> int:
    out, baseline_path, columns, transport, elapsed = argv[1], argv[2], argv[3].split(), set(argv[4].split()), argv[5]
    shown = [c for c in ORDER if c in columns]
    entries = load_baseline(baseline_path)
    rows = [line.split(" ", 1) for line in open(f"{out}/rows.txt").read().splitlines() if line.strip()]
    table, md, failures, candidates = [], [], [], []
    counts: Counter[str] = Counter()
    for version, row in rows:
        scenario = row.split("@")[0]
        runs: dict[str, Run] = {}
        for column in shown:
            if column in ("bridge", "stdio") and scenario in transport:
                runs[column] = Run("n/a", detail="tests the HTTP transport (here: the bridge)")
            else:
                runs[column] = load_run(out, version, column, row)
        verdict, notes, unexpected, row_candidates = judge(version, row, runs, entries)
        counts[verdict] += 1
        failures += [(version, row, column, extra, runs[column]) for column, extra in unexpected]
        candidates += row_candidates
        seconds = "/".join(f"{runs[c].seconds:.1f}" for c in shown)
        table.append(
            f"{version:<15} {row:<50} "
            + " ".join(f"{runs[c].status:<6}" for c in shown)
            + f" {verdict:<6} {seconds:>19}s  {'; '.join(notes)}"
        )
        md.append(
            f"| {version} | {row} | "
            + " | ".join(runs[c].status for c in shown)
            + f" | {verdict} | "
            + "; ".join(notes).replace("|", "\\|")
            + " |"
        )
    print()
    print(
        f"{'version':<15} {'row':<50} " + " ".join(f"{c:<6}" for c in shown) + f" {'result':<6} {'seconds':>20}  notes"
    )
    print("\n".join(table))
    print()
    by_column = Counter(column for _, _, column, _, _ in failures)
    summary = (
        f"{len(rows)} rows: {counts['ok']} ok, {counts['XFAIL']} expected failures (baselined), "
        f"{counts['skip']} skipped by the suite, {counts['FAIL']} FAIL ("
        + ", ".join(f"{c} {by_column[c]}" for c in shown)
        + f"); {elapsed} s"
    )
    print(f"conformance-server: {summary}")
    with open(f"{out}/summary.md", "w") as f:
        f.write("| version | row | " + " | ".join(shown) + " | result | notes |\n")
        f.write("| --- | --- | " + " | ".join("---" for _ in shown) + " | --- | --- |\n")
        f.write("\n".join(md) + f"\n\n{summary}\n")
    with open(f"{out}/baseline-candidate.txt", "w") as f:
        f.write("# Every unexpected failure of this run in the baseline's format (reason: what failed).\n")
        f.write("".join(line + "\n" for line in candidates))
    with open(f"{out}/failures.md", "w") as f:
        for version, row, column, extra, run in failures:
            control = CONTROL.get(column)
            f.write(
                f"## {version} {row} — {column}"
                + (f" (checks that fail here and not in {control})" if control else "")
                + "\n\n"
            )
            wanted = set(extra) if extra else None
            for check in run.checks:
                if check.get("status") not in ("FAILURE", "WARNING"):
                    continue
                if wanted is not None and (str(check.get("id")), str(check.get("name"))) not in wanted:
                    continue
                message = check.get("errorMessage") or check.get("description")
                f.write(f"- {check['status']} `{check.get('id')}`: {message}\n")
                if check.get("details"):
                    f.write(f"  - details: `{json.dumps(check['details'])[:1500]}`\n")
            if not run.checks:
                f.write(f"- {run.detail}\n")
            f.write(f"\nlogs: {out}/{version}/{column}/{row}/\n\n")
    return 1 if counts["FAIL"] else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
