"""Run an ASGI app on 127.0.0.1 in a background thread, on a port the OS picks.

The socket is bound before the server thread starts, so the URL is known and connectable as soon
as :func:`serve_in_thread` returns; there is no port race and no polling loop.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import uvicorn


class AppFactory:
    """Wraps ``fn(base_url) -> ASGI app`` for servers that embed their own URL (issuers, resources)."""

    def __init__(self, fn: Callable[[str], Any]) -> None:
        self.build = fn


class ThreadedServer:
    def __init__(self, app: Any, *, host: str = "127.0.0.1", port: int = 0, date_header: bool = True) -> None:
        """``app`` is an ASGI app, or ``AppFactory(fn)`` when the app must know its own base URL.

        ``date_header=False``: uvicorn adds no ``Date`` (for an app that sends its own, such as an
        authorization server with a skewed clock)."""
        # IPPROTO_TCP so that asyncio sets TCP_NODELAY on accepted connections (see gateway/serving/http.py).
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, port))
        self.sock.listen(512)
        self.host, self.port = self.sock.getsockname()[:2]
        if isinstance(app, AppFactory):
            app = app.build(self.url)
        self.app = app
        config = uvicorn.Config(app, log_level="warning", lifespan="auto", timeout_graceful_shutdown=1,
                                date_header=date_header)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self._run, name=f"asgi-{self.port}", daemon=True)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def _run(self) -> None:
        self.server.run(sockets=[self.sock])

    def start(self) -> ThreadedServer:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"test server on {self.url} did not start")
            time.sleep(0.005)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=5)
        with contextlib.suppress(OSError):
            self.sock.close()


@contextlib.contextmanager
def serve_in_thread(app: Any, *, host: str = "127.0.0.1", port: int = 0) -> Iterator[ThreadedServer]:
    server = ThreadedServer(app, host=host, port=port).start()
    try:
        yield server
    finally:
        server.stop()
