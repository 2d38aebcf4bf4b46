"""The matrix's verdict and its two renderings (terminal and docs/MATRIX.md); pure logic, unit-tested.

A cell is one client × upstream × mode (direct, or through ``serve --stdio`` / ``serve --listen``);
each cell decides every feature pass, fail or n/a. The rule: a feature that passes directly must
pass through the gateway in both modes. A feature that fails directly decides nothing (it is shown,
with the reason). The baseline may excuse a gateway failure only when a third-party bug causes it:
every entry names the bug and links it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

PASS, FAIL, NA, NOT_RUN = "pass", "fail", "n/a", "not run"
SYMBOL = {PASS: "✓", FAIL: "✗", NA: "–", NOT_RUN: "·"}
GATEWAY_MODES = ("stdio", "listen")


@dataclass(frozen=True)
class Outcome:
    status: str
    detail: str = ""


# (client, upstream, mode) -> feature -> Outcome
Cells = Mapping[tuple[str, str, str], Mapping[str, Outcome]]


@dataclass(frozen=True)
class BaselineEntry:
    client: str
    upstream: str
    mode: str
    feature: str
    reason: str

    def matches(self, client: str, upstream: str, mode: str, feature: str) -> bool:
        return all(
            mine in ("*", theirs)
            for mine, theirs in (
                (self.client, client),
                (self.upstream, upstream),
                (self.mode, mode),
                (self.feature, feature),
            )
        )


class BaselineError(ValueError):
    pass


def parse_baseline(text: str, source: str = "baseline") -> list[BaselineEntry]:
    """``CLIENT UPSTREAM MODE FEATURE # reason with a link``, one per line; ``*`` matches anything.

    Only third-party bugs may be baselined, so a reason must name the bug and link it (an http(s)
    URL); an entry without one is an error, as is a malformed line.
    """
    entries = []
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        body, _, reason = line.partition("#")
        fields = body.split()
        reason = reason.strip()
        if len(fields) != 4:
            raise BaselineError(f"{source}:{number}: expected 'CLIENT UPSTREAM MODE FEATURE # reason', got {raw!r}")
        if not re.search(r"https?://\S+", reason):
            raise BaselineError(
                f"{source}:{number}: the reason must name the third-party bug and link it (an http(s) URL): {raw!r}"
            )
        if fields[2] not in ("*", *GATEWAY_MODES):
            raise BaselineError(f"{source}:{number}: mode must be stdio, listen or *, not {fields[2]!r}")
        entries.append(BaselineEntry(*fields, reason=reason))
    return entries


@dataclass
class Row:
    """One client × upstream × feature across the three modes, and what it means."""

    client: str
    upstream: str
    feature: str
    outcomes: dict[str, Outcome]
    verdict: str  # ok | REGRESSION | baselined | direct-fail | n/a | not run
    notes: list[str] = field(default_factory=list)


def judge(
    cells: Cells,
    clients: Iterable[str],
    upstreams: Iterable[str],
    features: Iterable[str],
    baseline: Iterable[BaselineEntry] = (),
) -> list[Row]:
    rows = []
    entries = list(baseline)
    features = list(features)
    upstream_list = list(upstreams)
    for client in clients:
        for upstream in upstream_list:
            for feature in features:
                outcomes = {
                    mode: cells.get((client, upstream, mode), {}).get(feature, Outcome(NOT_RUN))
                    for mode in ("direct", *GATEWAY_MODES)
                }
                rows.append(_judge_row(client, upstream, feature, outcomes, entries))
    return rows


def _judge_row(
    client: str, upstream: str, feature: str, outcomes: dict[str, Outcome], baseline: list[BaselineEntry]
) -> Row:
    direct = outcomes["direct"]
    row = Row(client, upstream, feature, outcomes, "ok")
    if direct.status == NOT_RUN:
        row.verdict = NOT_RUN
        return row
    if direct.status == NA:
        row.verdict = NA
        row.notes.append(direct.detail)
        return row
    if direct.status == FAIL:
        row.verdict = "direct-fail"
        row.notes.append(f"fails directly: {direct.detail}")
        return row
    regressions = []
    excused = []
    for mode in GATEWAY_MODES:
        got = outcomes[mode]
        if got.status == PASS:
            continue
        if got.status == NOT_RUN:
            row.notes.append(f"{mode}: not run")
            continue
        entry = next((e for e in baseline if e.matches(client, upstream, mode, feature)), None)
        if entry is None:
            regressions.append(f"{mode}: {got.status}: {got.detail}")
        else:
            excused.append(f"{mode}: baselined ({entry.reason}): {got.detail}")
    if regressions:
        row.verdict = "REGRESSION"
    elif excused:
        row.verdict = "baselined"
    elif any(outcomes[m].status == NOT_RUN for m in GATEWAY_MODES):
        row.verdict = NOT_RUN
    row.notes += regressions + excused
    return row


def unused_baseline(rows: Iterable[Row], baseline: Iterable[BaselineEntry]) -> list[BaselineEntry]:
    """Entries that excused nothing in this run (the bug may be fixed: remove them)."""
    used = set()
    for row in rows:
        if row.verdict != "baselined":
            continue
        for mode in GATEWAY_MODES:
            if row.outcomes[mode].status in (FAIL, NA):
                for entry in baseline:
                    if entry.matches(row.client, row.upstream, mode, row.feature):
                        used.add(entry)
    return [e for e in baseline if e not in used]


def triple(row: Row) -> str:
    return " ".join(SYMBOL[row.outcomes[m].status] for m in ("direct", *GATEWAY_MODES))


def _grid(rows: list[Row], upstream: str, clients: list[str], features: list[tuple[str, str]]) -> list[list[str]]:
    by_key = {(r.client, r.feature): r for r in rows if r.upstream == upstream}
    grid = []
    for feature, title in features:
        line = [title]
        for client in clients:
            row = by_key.get((client, feature))
            if row is None:
                line.append("")
                continue
            mark = triple(row)
            if row.verdict == "REGRESSION":
                mark += " !"
            elif row.verdict == "baselined":
                mark += " b"
            line.append(mark)
        grid.append(line)
    return grid


def render_text(
    rows: list[Row], upstreams: list[tuple[str, str]], clients: list[str], features: list[tuple[str, str]]
) -> str:
    """The matrix for the terminal: one block per upstream, each cell 'direct stdio listen'."""
    out = [
        "legend: each cell is 'direct stdio listen'; ✓ pass, ✗ fail, – n/a, · not run; ! = fails only "
        "through the gateway (a regression), b = baselined third-party bug"
    ]
    for upstream, title in upstreams:
        grid = _grid(rows, upstream, clients, features)
        widths = [max(len(title), *(len(g[0]) for g in grid))] + [
            max(len(c), *(len(g[i + 1]) for g in grid)) for i, c in enumerate(clients)
        ]
        out.append("")
        out.append("  ".join([title.ljust(widths[0])] + [c.ljust(w) for c, w in zip(clients, widths[1:], strict=True)]))
        for g in grid:
            out.append("  ".join(v.ljust(w) for v, w in zip(g, widths, strict=True)))
    return "\n".join(out)


def _md(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render_markdown(
    rows: list[Row],
    upstreams: list[tuple[str, str]],
    clients: list[tuple[str, str]],
    features: list[tuple[str, str]],
) -> str:
    lines = []
    client_names = [c for c, _ in clients]
    for upstream, title in upstreams:
        lines.append(f"### {title}")
        lines.append("")
        lines.append("| feature | " + " | ".join(f"{t}" for _, t in clients) + " |")
        lines.append("| --- |" + " --- |" * len(clients))
        for g in _grid(rows, upstream, client_names, features):
            lines.append("| " + " | ".join(_md(v) for v in g) + " |")
        lines.append("")
    return "\n".join(lines)


def summary(rows: list[Row]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for row in rows:
        counts[row.verdict] = counts.get(row.verdict, 0) + 1
    return counts
