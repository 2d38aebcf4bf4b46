"""Logins started by the gateway (the REST API's ``POST /servers/{name}/login``).

The REST caller needs the authorization URL at once, while the login itself lasts until the user
has finished in the browser. So the login runs in a background task, and its ``open_browser`` hook
first hands the URL back to the waiting request, then opens the browser as usual. One login per
server at a time: a second request while one runs gets the same URL instead of a second listener.
"""

from __future__ import annotations

import logging
import threading
import webbrowser
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import anyio.from_thread
import httpx2
from anyio.abc import TaskGroup

from mcprelay import diaglog
from mcprelay.config import ServerConfig
from mcprelay.errors import ErrorType, McpRelayError, new_correlation_id
from mcprelay.oauth.flow import LoginOptions
from mcprelay.status import recorded_login
from mcprelay.store.base import TokenStore

logger = logging.getLogger(__name__)

#: How long a login request waits for the browser launcher's answer once the URL is known.
BROWSER_ANSWER_WAIT = 1.0


@dataclass
class _Running:
    correlation_id: str
    open_browser: bool = True  # false: whoever asked opens the URL (an agent sent there by elicitation)
    url_known: anyio.Event = field(default_factory=anyio.Event)
    browser_answered: threading.Event = field(default_factory=threading.Event)
    url: str | None = None
    browser_opened: bool = False
    error: McpRelayError | None = None
    finished: anyio.Event = field(default_factory=anyio.Event)

    def started(self) -> dict[str, Any]:
        return {"authorization_url": self.url, "browser_opened": self.browser_opened,
                "correlation_id": self.correlation_id}


class LoginRunner:
    """Runs logins in the gateway's task group and calls ``on_success(name)`` when one stored a grant."""

    def __init__(
        self,
        task_group: TaskGroup,
        home: Path,
        store: TokenStore,
        http: httpx2.AsyncClient,
        on_success: Callable[[str], None],
        open_browser: Callable[[str], bool] = webbrowser.open,
    ) -> None:
        self.task_group = task_group
        self.home = home
        self.store = store
        self.http = http
        self.on_success = on_success
        self.open_browser = open_browser
        self._running: dict[str, _Running] = {}

    def running(self, name: str) -> bool:
        return name in self._running

    async def finished(self, name: str) -> McpRelayError | None:
        """Wait for the login running for ``name`` to end; its error, or ``None`` when it stored a grant."""
        running = self._running.get(name)
        if running is None:
            return None
        await running.finished.wait()
        return running.error

    async def start(self, server: ServerConfig, *, open_browser: bool = True) -> dict[str, Any]:
        """Start a login (or join the one running) and return once its authorization URL is known.

        ``open_browser=False``: the gateway does not open it — the caller hands it to someone who will.
        """
        if server.transport == "stdio":
            raise McpRelayError(
                ErrorType.USAGE_ERROR,
                f"{server.name} is a stdio server; it has no OAuth login",
                suggestion="configure its credentials with `env` in the server's config entry",
                server=server.name,
            )
        running = self._running.get(server.name)
        if running is None:
            running = _Running(correlation_id=new_correlation_id(), open_browser=open_browser)
            self._running[server.name] = running
            self.task_group.start_soon(self._run, server, running)
        with anyio.fail_after(server.oauth.login_timeout):
            await _first(running.url_known, running.finished)
        if running.url is None and running.finished.is_set() and running.error is None:
            return running.started()  # a machine grant: logged in without any browser
        if running.url is None:
            raise running.error or McpRelayError(
                ErrorType.CODE_FLOW_FAILED, f"the login to {server.name} ended before it started",
                server=server.name, correlation_id=running.correlation_id,
            )
        if not running.open_browser:
            return running.started()
        await anyio.to_thread.run_sync(running.browser_answered.wait, BROWSER_ANSWER_WAIT)
        if not running.browser_answered.is_set():
            running.browser_opened = True  # still running: a launched browser that has not returned yet
        return running.started()

    async def _run(self, server: ServerConfig, running: _Running) -> None:
        def authorization_url(url: str) -> None:
            running.url = url  # the REST answer's authorization_url; the browser gets a private page for it
            running.url_known.set()

        def capture(page_url: str) -> bool:
            # Runs in a worker thread (the flow keeps the event loop free for the callback).
            if not running.open_browser:
                running.browser_answered.set()
                return True  # the URL went to an agent, whose client opens it
            try:
                opened = bool(self.open_browser(page_url))
            except Exception:  # a broken BROWSER setting must not fail the login: the URL is returned anyway
                opened = False
            running.browser_opened = opened
            running.browser_answered.set()
            return opened

        def notify(message: str) -> None:
            logger.info("%s", message.strip())

        try:
            await recorded_login(
                self.home, server, self.store, self.http,
                LoginOptions(open_browser=capture, notify=notify, on_authorization_url=authorization_url,
                             page_dir=self.home / "run"),
                correlation_id=running.correlation_id,
            )
        except McpRelayError as exc:
            running.error = exc
        except Exception as exc:  # the REST caller must get a structured error, never a dead request
            logger.exception("login to %s failed", server.name)
            running.error = McpRelayError(
                ErrorType.CODE_FLOW_FAILED, f"the login to {server.name} failed: {type(exc).__name__}",
                server=server.name, correlation_id=running.correlation_id,
            )
        else:
            diaglog.event("gateway_login_succeeded", server=server.name, correlation_id=running.correlation_id)
            self.on_success(server.name)
        finally:
            self._running.pop(server.name, None)
            running.finished.set()


async def _first(*events: anyio.Event) -> None:
    """Return as soon as any of ``events`` is set."""
    async with anyio.create_task_group() as tg:

        async def wait(event: anyio.Event) -> None:
            await event.wait()
            tg.cancel_scope.cancel()

        for event in events:
            tg.start_soon(wait, event)
