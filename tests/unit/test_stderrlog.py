"""The size-capped log a stdio upstream's stderr goes to."""

from __future__ import annotations

import stat
from pathlib import Path

from mcprelay.gateway.upstreams.stderrlog import RotatingLog


def test_private_and_capped(tmp_path: Path) -> None:
    path = tmp_path / "logs" / "upstreams" / "a.log"
    log = RotatingLog(path, max_bytes=100)
    log.write(b"x" * 60)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    log.write(b"y" * 60)  # would pass the cap: the old file becomes a.log.1
    assert path.read_bytes() == b"y" * 60
    assert (path.parent / "a.log.1").read_bytes() == b"x" * 60
    log.write(b"z" * 500)  # one write larger than the cap keeps its newest bytes only
    assert path.read_bytes() == b"z" * 100
