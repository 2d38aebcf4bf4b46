"""The doctor's pure parts: Windows' excluded port ranges, the clock from a Date header, the verdicts."""

from __future__ import annotations

import email.utils

from mcprelay.doctor import CLOCK_PROBLEM_S, clock_skew, skew_finding, windows_excluded_ranges

NETSH = """
Protocol tcp Port Exclusion Ranges

Start Port    End Port
----------    --------
      1080        1080
      5357        5357
     49709       49808
     50000       50059     *

* - Administered port exclusions.
"""


def test_windows_excluded_ranges() -> None:
    assert windows_excluded_ranges(NETSH) == [(1080, 1080), (5357, 5357), (49709, 49808), (50000, 50059)]
    assert windows_excluded_ranges("") == []
    assert windows_excluded_ranges("Start Port    End Port\n  70000   70001\n") == []


def test_clock_skew_from_the_date_header() -> None:
    now = 1_800_000_000.0
    ahead = email.utils.formatdate(now + 600, usegmt=True)
    assert abs(clock_skew(ahead, now - 0.1, now + 0.1) - 600.5) < 0.01  # type: ignore[operator]
    assert clock_skew(None, now, now) is None
    assert clock_skew("not a date", now, now) is None


def test_skew_verdicts() -> None:
    assert skew_finding(3, "https://as", "s").status == "ok"
    assert skew_finding(-45, "https://as", "s").status == "warning"
    problem = skew_finding(CLOCK_PROBLEM_S + 1, "https://as", "s")
    assert problem.status == "problem" and "behind" in problem.message
    assert "ahead of" in skew_finding(-CLOCK_PROBLEM_S - 1, "https://as", "s").message
