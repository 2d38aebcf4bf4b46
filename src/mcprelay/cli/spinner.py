"""The spinner a terminal shows while a login waits for the browser: what it waits for, and the time left.

Only in a terminal (the caller decides): a spinner written into a pipe or a log is noise. Messages
printed meanwhile (the URL when no browser could be started) appear above it, not through it.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import anyio


def _left(seconds: float) -> str:
    seconds = max(0, int(seconds))
    return f"{seconds // 60}:{seconds % 60:02d}"


@contextlib.asynccontextmanager
async def browser_wait(server: str, seconds: float) -> AsyncIterator[None]:
    """A rich status line ``Waiting for you to log in to SERVER in the browser… M:SS left``, updated each second."""
    from rich.console import Console

    console = Console(stderr=True, highlight=False)
    deadline = anyio.current_time() + seconds

    def text() -> str:
        return (f"Waiting for you to log in to [bold]{server}[/] in the browser… "
                f"{_left(deadline - anyio.current_time())} left (Ctrl-C to stop)")

    with console.status(text(), spinner="dots") as status:
        async with anyio.create_task_group() as tg:

            async def tick() -> None:
                while True:
                    await anyio.sleep(1)
                    status.update(text())

            tg.start_soon(tick)
            try:
                yield
            finally:
                tg.cancel_scope.cancel()
