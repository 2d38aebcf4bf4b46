"""Debian's chromium driven by Playwright, for the page tests: never a browser download, a fresh profile each time.

``./run test`` installs chromium with apt-get where it is missing (``.ci/chromium.sh``). Without it the page
tests are skipped on a developer's machine, and fail in CI (``CI=true``), where a skip would hide a
missing install step.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = os.environ.get("MCPRELAY_CHROMIUM", "/usr/bin/chromium")
FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]


def require_chromium() -> None:
    if Path(CHROMIUM).exists() and shutil.which(CHROMIUM):
        return
    message = f"{CHROMIUM} is missing: `./run test` installs Debian's chromium (apt-get install chromium)"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message)
    pytest.skip(message)


@asynccontextmanager
async def chromium(profile: Path, **options: Any) -> AsyncIterator[Any]:
    """A persistent browser context on a fresh ``--user-data-dir`` (``profile``), closed on exit."""
    require_chromium()
    from playwright.async_api import async_playwright

    profile.mkdir(parents=True, exist_ok=True)
    async with async_playwright() as playwright:
        context = await playwright.chromium.launch_persistent_context(
            str(profile), executable_path=CHROMIUM, headless=True, args=FLAGS,
            viewport=options.pop("viewport", {"width": 1200, "height": 900}), **options,
        )
        try:
            yield context
        finally:
            await context.close()


def history_urls(profile: Path) -> list[str]:
    """Every URL in the profile's browsing history (read after the browser closed)."""
    import sqlite3

    path = profile / "Default" / "History"
    if not path.exists():
        return []
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return [row[0] for row in conn.execute("SELECT url FROM urls")]
    finally:
        conn.close()
