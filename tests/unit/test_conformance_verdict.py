"""The conformance harness's verdict: each column against its control, check by check, and the baseline."""

from __future__ import annotations

import importlib.util
import sys
from collections import Counter
from pathlib import Path
from types import ModuleType

import pytest


@pytest.fixture(scope="module")
def verdict() -> ModuleType:
    path = Path(__file__).resolve().parents[2] / ".ci" / "conformance_server_verdict.py"
    spec = importlib.util.spec_from_file_location("ci_conformance_server_verdict", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def run(verdict: ModuleType, status: str, *failing: str, detail: str = "") -> object:
    checks = [{"id": f, "name": f, "status": "FAILURE"} for f in failing] + [
        {"id": "ok", "name": "ok", "status": "SUCCESS"}
    ]
    return verdict.Run(status, 1.0, detail, verdict.failing(checks), checks)


def test_a_gateway_column_fails_only_on_checks_its_control_does_not_fail(verdict: ModuleType) -> None:
    runs = {
        "direct": run(verdict, "pass"),
        "listen": run(verdict, "pass"),
        "bridge": run(verdict, "fail", "bridge-only"),
        "stdio": run(verdict, "fail", "bridge-only"),
    }
    entries = [("*", "row", "bridge", "the bridge cannot do it")]
    outcome, notes, unexpected, _ = verdict.judge("v", "row", runs, entries)
    assert outcome == "XFAIL" and unexpected == []
    assert "stdio: fails like bridge" in notes

    runs["stdio"] = run(verdict, "fail", "bridge-only", "gateway-bug")
    outcome, _, unexpected, candidates = verdict.judge("v", "row", runs, entries)
    assert outcome == "FAIL"
    assert unexpected == [("stdio", Counter({("gateway-bug", "gateway-bug"): 1}))]
    assert candidates == ["v row stdio # gateway-bug"]


def test_a_failing_control_without_a_baseline_entry_fails_the_row(verdict: ModuleType) -> None:
    runs = {"direct": run(verdict, "fail", "x", detail="1 failed"), "listen": run(verdict, "fail", "x")}
    outcome, _, unexpected, _ = verdict.judge("v", "row", runs, [])
    assert outcome == "FAIL" and [c for c, _ in unexpected] == ["direct"]
    outcome, _, unexpected, _ = verdict.judge("v", "row", runs, [("v", "row", "direct", "no fixture")])
    assert outcome == "XFAIL" and unexpected == []


def test_a_run_that_recorded_no_check_counts_as_a_failure_of_its_own(verdict: ModuleType) -> None:
    runs = {"direct": run(verdict, "pass"), "listen": verdict.Run("fail", 30.0, "killed by the outer timeout")}
    outcome, _, unexpected, _ = verdict.judge("v", "row", runs, [])
    assert outcome == "FAIL" and unexpected[0][1] == Counter({("(run)", "killed by the outer timeout"): 1})


def test_a_baseline_entry_without_a_column_covers_both_gateway_columns_but_not_the_controls(
    verdict: ModuleType,
) -> None:
    entries = [("*", "row", None, "gateway limitation")]
    assert verdict.baselined(entries, "v", "row", "listen") == "gateway limitation"
    assert verdict.baselined(entries, "v", "row", "stdio") == "gateway limitation"
    assert verdict.baselined(entries, "v", "row", "bridge") is None
    assert verdict.baselined(entries, "v", "row", "direct") is None
    assert verdict.baselined(entries, "v", "other", "listen") is None


def test_a_baselined_column_that_passes_is_pointed_out(verdict: ModuleType) -> None:
    runs = {"direct": run(verdict, "pass"), "listen": run(verdict, "pass")}
    outcome, notes, _, _ = verdict.judge("v", "row", runs, [("v", "row", "listen", "old bug")])
    assert outcome == "ok"
    assert any("baselined but not failing" in note for note in notes)


def test_the_baseline_file_format(verdict: ModuleType, tmp_path: Path) -> None:
    path = tmp_path / "baseline.txt"
    path.write_text(
        "# comment\n\n0.1.16 a-row direct # why it fails\n* b-row@2026-07-28 # both gateway columns\n* c-row\n"
    )
    assert verdict.load_baseline(str(path)) == [
        ("0.1.16", "a-row", "direct", "why it fails"),
        ("*", "b-row@2026-07-28", None, "both gateway columns"),
        ("*", "c-row", None, "baselined"),
    ]
