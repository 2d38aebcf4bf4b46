"""The spinner a terminal shows while a login waits for the browser: what it waits for, and the time left.

Only in a terminal (the caller decides): a spinner written into a pipe or a log is noise. Messages
printed meanwhile (the URL when no browser could be started) appear above it, not through it. The
time left is computed each time rich redraws the line, so no task of ours runs beside the wait.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any


def _left(seconds: float) -> str:
    seconds = max(0, int(seconds))
    return f"{seconds // 60}:{seconds % 60:02d}"


class _Countdown:
    def __init__(self, server: str, seconds: float) -> None:
        self.server = server
        self.deadline = time.monotonic() + seconds

    def __rich__(self) -> Any:
        from rich.text import Text

        text = Text("Waiting for you to log in to ")
        text.append(self.server, style="bold")
        text.append(f" in the browser… {_left(self.deadline - time.monotonic())} left (Ctrl-C to stop)")
        return text


@contextlib.asynccontextmanager
async def browser_wait(server: str, seconds: float) -> AsyncIterator[None]:
    """``Waiting for you to log in to SERVER in the browser… M:SS left`` with a spinner, until the body ends."""
    from rich.console import Console

    console = Console(stderr=True, highlight=False)
    with console.status(_Countdown(server, seconds), spinner="dots"):
        yield
