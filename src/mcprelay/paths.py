"""Where mcprelay keeps its files: ``--home`` / ``MCPRELAY_HOME`` / the platform data dir."""

from __future__ import annotations

import os
from pathlib import Path


def resolve_home(option: str | None) -> Path:
    if option:
        home = Path(option)
    elif os.environ.get("MCPRELAY_HOME"):
        home = Path(os.environ["MCPRELAY_HOME"])
    else:
        import platformdirs

        home = Path(platformdirs.user_data_dir("mcprelay"))
    home = home.expanduser().resolve()
    home.mkdir(parents=True, exist_ok=True, mode=0o700)
    return home
