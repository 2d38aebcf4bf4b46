"""The client × upstream matrix's pure logic: the verdict, the baseline file, the gateway naming of specs."""

from __future__ import annotations

import json

import pytest

from tests.matrix import profiles, verdict, wire
from tests.matrix.verdict import FAIL, NA, PASS, Outcome

Cells = dict[tuple[str, str, str], dict[str, Outcome]]


def cells(direct: str, stdio: str, listen: str, feature: str = "call") -> Cells:
    return {
        ("ts-sdk", "everything", "direct"): {feature: Outcome(direct, "direct detail")},
        ("ts-sdk", "everything", "stdio"): {feature: Outcome(stdio, "stdio detail")},
        ("ts-sdk", "everything", "listen"): {feature: Outcome(listen, "listen detail")},
    }


def judge_one(direct: str, stdio: str, listen: str, baseline: str = "") -> verdict.Row:
    rows = verdict.judge(
        cells(direct, stdio, listen), ["ts-sdk"], ["everything"], ["call"], verdict.parse_baseline(baseline)
    )
    assert len(rows) == 1
    return rows[0]


def test_passing_everywhere_is_ok() -> None:
    assert judge_one(PASS, PASS, PASS).verdict == "ok"


@pytest.mark.parametrize(("stdio", "listen"), [(FAIL, PASS), (PASS, FAIL), (FAIL, FAIL), (NA, PASS)])
def test_passing_directly_but_not_through_the_gateway_is_a_regression(stdio: str, listen: str) -> None:
    row = judge_one(PASS, stdio, listen)
    assert row.verdict == "REGRESSION"
    assert any("detail" in note for note in row.notes)


def test_failing_directly_decides_nothing() -> None:
    row = judge_one(FAIL, FAIL, FAIL)
    assert row.verdict == "direct-fail"
    assert "fails directly: direct detail" in row.notes


def test_not_applicable_directly_is_not_applicable() -> None:
    assert judge_one(NA, NA, NA).verdict == NA


def test_a_gateway_mode_that_did_not_run_is_not_a_pass() -> None:
    rows = verdict.judge(
        {("ts-sdk", "everything", "direct"): {"call": Outcome(PASS)}}, ["ts-sdk"], ["everything"], ["call"]
    )
    assert rows[0].verdict == verdict.NOT_RUN


def test_a_baselined_third_party_bug_excuses_only_its_own_mode() -> None:
    entry = "ts-sdk everything stdio call # typescript-sdk drops it: https://github.com/o/r/issues/1"
    assert judge_one(PASS, FAIL, PASS, entry).verdict == "baselined"
    assert judge_one(PASS, FAIL, FAIL, entry).verdict == "REGRESSION"
    wildcard = "* everything * call # a bug: https://example.org/bug/2"
    assert judge_one(PASS, FAIL, FAIL, wildcard).verdict == "baselined"


def test_unused_baseline_entries_are_reported() -> None:
    entries = verdict.parse_baseline("ts-sdk everything listen call # bug https://example.org/3")
    rows = verdict.judge(cells(PASS, PASS, PASS), ["ts-sdk"], ["everything"], ["call"], entries)
    assert verdict.unused_baseline(rows, entries) == entries


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("ts-sdk everything stdio call # it is broken", "link it"),
        ("ts-sdk everything stdio call", "link it"),
        ("ts-sdk everything call # https://example.org/1", "expected 'CLIENT UPSTREAM MODE FEATURE"),
        ("ts-sdk everything direct call # https://example.org/1", "mode must be stdio, listen or *"),
    ],
)
def test_baseline_lines_that_are_not_a_linked_third_party_bug_are_refused(line: str, message: str) -> None:
    with pytest.raises(verdict.BaselineError, match=message):
        verdict.parse_baseline(f"# a comment\n\n{line}\n", "matrix-baseline.txt")


def test_the_text_matrix_marks_regressions() -> None:
    rows = verdict.judge(cells(PASS, FAIL, PASS), ["ts-sdk"], ["everything"], ["call"])
    text = verdict.render_text(rows, [("everything", "server-everything")], ["ts-sdk"], [("call", "call")])
    assert "✓ ✗ ✓ !" in text
    markdown = verdict.render_markdown(
        rows, [("everything", "server-everything")], [("ts-sdk", "TypeScript SDK")], [("call", "call")]
    )
    assert "| call | ✓ ✗ ✓ ! |" in markdown


def test_specs_through_the_gateway_use_the_gateway_names() -> None:
    client = profiles.CLIENTS["py-session"]
    specs = {s["name"]: s for s in profiles.feature_specs(profiles.FASTMCP, client, "m1234")}
    assert specs["call"]["args"] == {"message": "m1234"}
    assert specs["roots"]["expect"] == "file:///tmp/mcprelay-matrix/m1234"
    gateway = {name: profiles.through_gateway(spec, "fastmcp") for name, spec in specs.items()}
    assert gateway["call"]["tool"] == "fastmcp__echo"
    assert gateway["cancel"]["check"]["tool"] == "fastmcp__cancelled"
    assert gateway["first_list"]["expect_tools"][0] == "fastmcp__echo"
    assert gateway["prompts"]["expect"] == ["fastmcp__greet"]
    assert gateway["prompts"]["get"]["name"] == "fastmcp__greet"
    assert gateway["completion"]["ref"]["uri"] == "mcprelay://fastmcp/matrix://items/{item_id}"
    # the direct spec is untouched
    assert specs["call"]["tool"] == "echo"
    everything = {s["name"]: s for s in profiles.feature_specs(profiles.EVERYTHING, client, "m1")}
    ref = profiles.through_gateway(everything["completion"], "everything")["ref"]
    assert ref == {"type": "ref/prompt", "name": "everything__completable-prompt"}


def test_the_first_list_expects_the_tools_a_client_capability_unlocks() -> None:
    full = profiles.expected_tools(profiles.EVERYTHING, profiles.CLIENTS["ts-sdk"])
    roots_only = profiles.expected_tools(profiles.EVERYTHING, profiles.CLIENTS["inspector"])
    assert "trigger-sampling-request" in full
    assert "get-roots-list" in roots_only
    assert "trigger-sampling-request" not in roots_only


def test_features_a_client_or_upstream_lacks_are_not_planned_but_explained() -> None:
    inspector = profiles.CLIENTS["inspector"]
    planned = {s["name"] for s in profiles.feature_specs(profiles.EVERYTHING, inspector, "m")}
    assert "completion" not in planned
    assert "first_list" in planned
    why = profiles.not_applicable(profiles.EVERYTHING, inspector)
    assert "completion/complete" in why["completion"]
    logging = next(s for s in profiles.feature_specs(profiles.EVERYTHING, inspector, "m") if s["name"] == "logging")
    assert logging["min"] == 0
    assert profiles.not_applicable(profiles.FASTMCP, profiles.CLIENTS["ts-sdk"]) == {}
    lacking = profiles.Upstream("u", "an upstream", ["t"], {}, {"call": {}}, {"cancel": "no slow tool"})
    assert profiles.not_applicable(lacking, profiles.CLIENTS["ts-sdk"])["cancel"] == "an upstream: no slow tool"
    assert "has no such feature" in profiles.not_applicable(lacking, profiles.CLIENTS["ts-sdk"])["progress"]


def wire_lines(*entries: tuple[float, str, dict[str, object] | str]) -> list[wire.WireLine]:
    text = []
    for seconds, direction, message in entries:
        body = message if isinstance(message, str) else json.dumps(message)
        text.append(f"{seconds:9.3f} {direction} {body}")
    return wire.parse(text)


CALL = {"jsonrpc": "2.0", "id": "g-3", "method": "tools/call", "params": {"name": "slow", "arguments": {"s": 30}}}
CANCEL = {"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": "g-3"}}


def test_the_wire_shows_a_cancellation_that_reached_the_upstream() -> None:
    lines = wire_lines((0.1, "->", CALL), (0.4, "<-", "not json"), (0.9, "->", CANCEL), (1.0, "->", "<EOF>"))
    evidence = wire.cancel_reached(lines, "slow", {"s": 30})
    assert evidence.call_seen and evidence.cancelled
    assert "'g-3'" in evidence.detail


def test_the_wire_shows_a_cancellation_that_never_arrived() -> None:
    other = {**CANCEL, "params": {"requestId": "g-2"}}
    from_upstream = {**CANCEL}  # the wrong direction does not count
    done = {"jsonrpc": "2.0", "id": "g-3", "result": {"content": []}}
    lines = wire_lines((0.1, "->", CALL), (0.5, "->", other), (0.6, "<-", from_upstream), (0.9, "<-", done))
    evidence = wire.cancel_reached(lines, "slow", {"s": 30})
    assert evidence.call_seen and not evidence.cancelled
    assert "never got notifications/cancelled" in evidence.detail and "ran to its end" in evidence.detail
    assert not wire.cancel_reached(lines, "slow", {"s": 31}).call_seen
