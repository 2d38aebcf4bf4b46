#!/usr/bin/env python3
"""Per-row results of .ci/conformance-server.sh, from single scenario runs or from whole-suite batches.

    conformance_server_results.py row DIR RC SECONDS
        DIR holds one scenario run (output.txt, suite/**/checks.json); writes DIR/result.
    conformance_server_results.py split BATCH COLUMN_DIR WIRE ROWS_FILE END_EPOCH
        BATCH holds one `conformance server --suite all --spec-version WIRE` run (output.txt, suite/);
        moves the checks of each scenario whose row ROWS_FILE lists into COLUMN_DIR/<row>/ and writes
        its output.txt and result (the others ran for nothing: the suite cannot run fewer). A
        scenario's row is SCENARIO@WIRE where ROWS_FILE lists that (its default wire is another
        revision), else its name.

``result`` is one line: ``status<TAB>seconds<TAB>summary``. A run passes when the suite records no
FAILURE and no WARNING (and, for a single run, exits 0); a run that records nothing but skips is
``skip``. One node process per batch instead of one per scenario is most of the harness's speed: a
scenario run costs the suite about 0.6 s of CPU to start, and there are some 450 of them.
"""

from __future__ import annotations

import datetime
import glob
import json
import os
import re
import shutil
import sys
from typing import Any

_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_RESULT_DIR = re.compile(r"^server-(?P<scenario>.+)-(?P<stamp>\d{4}-\d\d-\d\dT\d\d-\d\d-\d\d-\d{3}Z)$")


def summarize(directory: str, rc: int, seconds: float) -> str:
    out = _ANSI.sub("", open(f"{directory}/output.txt", errors="replace").read())
    checks: list[dict[str, Any]] = []
    for path in glob.glob(f"{directory}/suite/**/checks.json", recursive=True):
        try:
            checks += json.load(open(path))
        except (OSError, ValueError):
            pass
    count = {k: sum(1 for c in checks if c.get("status") == k) for k in ("SUCCESS", "FAILURE", "WARNING", "SKIPPED")}
    bad = [c for c in checks if c.get("status") in ("FAILURE", "WARNING")]
    if rc == 0 and not bad:
        status = "pass" if count["SUCCESS"] else "skip"
    else:
        status = "fail"
    parts = [f"{count['SUCCESS']} ok, {count['FAILURE']} failed, {count['WARNING']} warnings"]
    for c in bad[:2]:
        message = str(c.get("errorMessage") or c.get("description") or "")[:160]
        parts.append(f"{c.get('status')} {c.get('id')}: {message}")
    if len(bad) > 2:
        parts.append(f"... {len(bad) - 2} more")
    if rc in (124, 137):
        parts.append("killed by the outer timeout")
    if not checks and rc != 0:
        tail = [line for line in out.strip().splitlines() if line.strip()][-2:]
        parts.append("no checks recorded: " + " | ".join(tail)[:200])
    summary = "; ".join(parts).replace("\t", " ").replace("\n", " ")
    return f"{status}\t{seconds:.1f}\t{summary}"


def _started(stamp: str) -> float:
    moment = datetime.datetime.strptime(stamp, "%Y-%m-%dT%H-%M-%S-%fZ").replace(tzinfo=datetime.UTC)
    return moment.timestamp()


def split(batch: str, column_dir: str, wire: str, rows_file: str, end: float) -> list[str]:
    """Distribute a batch's scenarios into row directories; returns the rows written."""
    wanted = set(open(rows_file).read().split())
    output = open(f"{batch}/output.txt", errors="replace").read()
    sections: dict[str, str] = {}
    for part in re.split(r"^(?==== Running scenario: )", output, flags=re.MULTILINE):
        match = re.match(r"=== Running scenario: (\S+) ===", part)
        if match:
            sections[match.group(1)] = part
    found = []
    for entry in os.listdir(f"{batch}/suite") if os.path.isdir(f"{batch}/suite") else []:
        match = _RESULT_DIR.match(entry)
        if match:
            found.append((_started(match.group("stamp")), match.group("scenario"), entry))
    found.sort()
    rows = []
    for index, (started, scenario, entry) in enumerate(found):
        finished = found[index + 1][0] if index + 1 < len(found) else end
        row = f"{scenario}@{wire}" if f"{scenario}@{wire}" in wanted else scenario
        if row not in wanted:
            continue
        target = f"{column_dir}/{row}"
        shutil.rmtree(target, ignore_errors=True)
        os.makedirs(f"{target}/suite")
        shutil.move(f"{batch}/suite/{entry}", f"{target}/suite/{entry}")
        with open(f"{target}/output.txt", "w") as f:
            f.write(sections.get(scenario, f"(no output section for {scenario} in {batch}/output.txt)\n"))
        recorded = os.path.exists(f"{target}/suite/{entry}/checks.json")
        with open(f"{target}/result", "w") as f:
            f.write(summarize(target, 0 if recorded else 1, max(0.0, finished - started)) + "\n")
        rows.append(row)
    return rows


def main(argv: list[str]) -> int:
    if len(argv) == 5 and argv[1] == "row":
        with open(f"{argv[2]}/result", "w") as f:
            f.write(summarize(argv[2], int(argv[3]), float(argv[4])) + "\n")
        return 0
    if len(argv) == 7 and argv[1] == "split":
        split(argv[2], argv[3], argv[4], argv[5], float(argv[6]))
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
