"""Logins that come to the person: a gateway at someone's desktop opens the browser when a server needs one.

A server needs a login on its first connection, or when a refresh ends in ``login_required``. A
gateway run unattended parks it and waits for ``mcprelay auth login``; a gateway run in a person's
desktop session (:func:`mcprelay.desktop.at_desktop`: never headless, never without a display) does
what MCPProxy users expect and opens the browser for it, in the background: one login at a time,
at most once per server per :data:`RETRY_AFTER` seconds (a person who closed the tab is not asked
again at once), and not at all with ``"auto_login": false``. When the login stores a grant, the
upstream reconnects and its tools reach every agent with ``list_changed``, as after any login.

Agents whose client supports URL-mode elicitation are sent to the login page from inside the agent
instead, by the forwarder (see :meth:`ControlPlane.login_ticket`); this module is for everyone else.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import anyio
from anyio.abc import TaskStatus

from mcprelay import diaglog
from mcprelay.desktop import at_desktop
from mcprelay.errors import McpRelayError
from mcprelay.gateway.catalog.router import Gateway
from mcprelay.gateway.control.login import LoginRunner
from mcprelay.gateway.upstreams.supervisor import Upstream

logger = logging.getLogger(__name__)

#: Seconds before the same server's browser login is opened again on its own.
RETRY_AFTER = 300.0


class AutoLogin:
    """Watches upstream states and runs browser logins for the ones that need them; see the module docstring."""

    def __init__(self, gateway: Gateway, logins: Callable[[], LoginRunner | None]) -> None:
        self.gateway = gateway
        self._logins = logins
        self._queue: list[str] = []
        self._wake = anyio.Event()
        self._last: dict[str, float] = {}
        gateway.add_state_listener(self._changed)

    def enabled(self) -> bool:
        return self.gateway.config.auto_login and at_desktop()

    def _changed(self, upstream: Upstream) -> None:
        if upstream.state != "login_required" or upstream.name in self._queue or not self.enabled():
            return
        last = self._last.get(upstream.name)
        if last is not None and anyio.current_time() - last < RETRY_AFTER:
            return
        self._queue.append(upstream.name)
        self._wake.set()

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Run the queued logins one after the other until cancelled."""
        task_status.started()
        while True:
            await self._wake.wait()
            self._wake = anyio.Event()
            while self._queue:
                await self._login(self._queue.pop(0))

    async def _login(self, name: str) -> None:
        server = self.gateway.server_config(name)
        upstream = self.gateway.upstreams.get(name)
        logins = self._logins()
        if server is None or upstream is None or logins is None or upstream.state != "login_required":
            return  # removed, logged in meanwhile, or the gateway is stopping
        self._last[name] = anyio.current_time()
        try:
            started = await logins.start(server)
        except McpRelayError as exc:
            diaglog.event("auto_login_failed", server=name, correlation_id=exc.correlation_id, level="warning",
                          error_type=str(exc.error_type), message=exc.message)
            return
        diaglog.event("auto_login_started", server=name, correlation_id=started.get("correlation_id"),
                      browser_opened=started.get("browser_opened"))
        error = await logins.finished(name)
        if error is not None:
            diaglog.event("auto_login_failed", server=name, correlation_id=error.correlation_id, level="warning",
                          error_type=str(error.error_type), message=error.message)
