"""The control plane: what the REST API (and later the web page) may ask of a running gateway.

It sits above the catalog: it reads the gateway's state, and starts logins in its own task group —
asked for through REST, opened on its own at a person's desktop (``autologin.py``), or handed to an
agent whose client can send its user to a URL (:meth:`ControlPlane.login_ticket`, which the
forwarder calls through its ``login_hook``). When a login stores a grant it wakes that upstream,
whose tools then reach every connected client with ``list_changed``.
"""

from __future__ import annotations

from typing import Any

import anyio
from anyio.abc import TaskStatus

from mcprelay.activity import ActivityLog
from mcprelay.errors import ErrorType, McpRelayError
from mcprelay.gateway.catalog.forward import LoginTicket
from mcprelay.gateway.catalog.router import Gateway
from mcprelay.gateway.control.autologin import AutoLogin
from mcprelay.gateway.control.login import LoginRunner


class ControlPlane:
    """Implements :class:`mcprelay.gateway.control.rest.GatewayControl` for a running :class:`Gateway`."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        self.activity: ActivityLog = gateway.activity
        self._logins: LoginRunner | None = None
        self.auto_login = AutoLogin(gateway, lambda: self._logins)

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Host the logins started here until cancelled."""
        async with anyio.create_task_group() as tg:
            gateway = self.gateway
            self._logins = LoginRunner(tg, gateway.home, gateway.store, gateway.http, gateway.wake_upstream)
            gateway.forward.login_hook = self.login_ticket
            await tg.start(self.auto_login.run)
            for upstream in list(gateway.upstreams.values()):
                self.auto_login._changed(upstream)  # the ones that needed a login before we listened
            task_status.started()
            try:
                await anyio.sleep_forever()
            finally:
                gateway.forward.login_hook = None
                self._logins = None

    async def login_ticket(self, name: str) -> LoginTicket:
        """A login for ``name`` whose URL an agent's client opens (URL-mode elicitation), and its outcome."""
        server = self.gateway.server_config(name)
        logins = self._logins
        if server is None or logins is None:
            raise McpRelayError(ErrorType.USAGE_ERROR, f"no login can be started for {name!r}", server=name)
        started = await logins.start(server, open_browser=False)
        url = started.get("authorization_url")
        return LoginTicket(
            url=url if isinstance(url, str) else None,  # None: a machine grant, which needs no page
            elicitation_id=str(started["correlation_id"]),
            done=lambda: logins.finished(name), timeout=server.oauth.login_timeout,
        )

    def list_servers(self) -> list[dict[str, Any]]:
        return self.gateway.list_servers()

    def get_server(self, name: str) -> dict[str, Any] | None:
        return self.gateway.get_server(name)

    def list_tools(self, server: str | None = None) -> list[dict[str, Any]]:
        return self.gateway.list_tools(server)

    def restart_upstream(self, name: str) -> dict[str, Any]:
        if not self.gateway.restart_upstream(name):
            raise McpRelayError(
                ErrorType.USAGE_ERROR, f"no server named {name!r} is configured, or the gateway is stopping",
                suggestion="check the name with `mcprelay upstream list`", server=name,
            )
        server = self.gateway.get_server(name)
        return {"restarted": True, "state": server["state"] if server else "connecting"}

    async def start_login(self, name: str) -> dict[str, Any]:
        server = self.gateway.server_config(name)
        if server is None:
            raise McpRelayError(
                ErrorType.USAGE_ERROR, f"no server named {name!r} is configured",
                suggestion="check the name with `mcprelay upstream list`", server=name,
            )
        if self._logins is None:
            raise McpRelayError(ErrorType.USAGE_ERROR, "the gateway is not running", server=name)
        return await self._logins.start(server)
