"""The control plane: what the REST API (and later the web page) may ask of a running gateway.

It sits above the catalog: it reads the gateway's state, and starts logins in its own task group.
When a login stores a grant it wakes that upstream, whose tools then reach every connected client
with ``list_changed`` — the catalog never needs to know that logins exist.
"""

from __future__ import annotations

from typing import Any

import anyio
from anyio.abc import TaskStatus

from mcprelay.activity import ActivityLog
from mcprelay.errors import ErrorType, McpRelayError
from mcprelay.gateway.catalog.router import Gateway
from mcprelay.gateway.control.login import LoginRunner


class ControlPlane:
    """Implements :class:`mcprelay.gateway.control.rest.GatewayControl` for a running :class:`Gateway`."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        self.activity: ActivityLog = gateway.activity
        self._logins: LoginRunner | None = None

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Host the logins started here until cancelled."""
        async with anyio.create_task_group() as tg:
            gateway = self.gateway
            self._logins = LoginRunner(tg, gateway.home, gateway.store, gateway.http, gateway.wake_upstream)
            task_status.started()
            try:
                await anyio.sleep_forever()
            finally:
                self._logins = None

    def list_servers(self) -> list[dict[str, Any]]:
        return self.gateway.list_servers()

    def get_server(self, name: str) -> dict[str, Any] | None:
        return self.gateway.get_server(name)

    def list_tools(self, server: str | None = None) -> list[dict[str, Any]]:
        return self.gateway.list_tools(server)

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
