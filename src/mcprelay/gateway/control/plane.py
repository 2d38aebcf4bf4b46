"""The control plane: what the REST API and the web page may ask of a running gateway.

It sits above the catalog: it reads the gateway's state, and starts logins in its own task group —
asked for through REST, opened on its own at a person's desktop (``autologin.py``), or handed to an
agent whose client can send its user to a URL (:meth:`ControlPlane.login_ticket`, which the
forwarder calls through its ``login_hook``). When a login stores a grant it wakes that upstream,
whose tools then reach every connected client with ``list_changed``. Approving a held tool
(pins.py) goes through here too, and so does the tool search the page offers (the same BM25 index
``retrieve_tools`` uses).
"""

from __future__ import annotations

from typing import Any

import anyio
from anyio.abc import TaskStatus

from mcprelay.activity import ActivityLog
from mcprelay.errors import ErrorType, McpRelayError
from mcprelay.gateway.catalog.forward import LoginTicket
from mcprelay.gateway.catalog.pins import Held
from mcprelay.gateway.catalog.router import Gateway
from mcprelay.gateway.catalog.search import ToolIndex, tools_from_schema
from mcprelay.gateway.control.autologin import AutoLogin
from mcprelay.gateway.control.login import LoginRunner


class ControlPlane:
    """Implements :class:`mcprelay.gateway.control.rest.GatewayControl` for a running :class:`Gateway`."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        self.activity: ActivityLog = gateway.activity
        self._logins: LoginRunner | None = None
        self.auto_login = AutoLogin(gateway, lambda: self._logins)
        self._index: tuple[int, ToolIndex] | None = None
        self.closing = anyio.Event()  # set at shutdown: the page's event streams end

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
        held = self._held_counts()
        return [{**row, "held_count": held.get(row["name"], 0)} for row in self.gateway.list_servers()]

    def get_server(self, name: str) -> dict[str, Any] | None:
        row = self.gateway.get_server(name)
        return None if row is None else {**row, "held_count": self._held_counts().get(name, 0)}

    def _held_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for held in self.gateway.catalog().held.values():
            counts[held.server] = counts.get(held.server, 0) + 1
        return counts

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

    def live_state(self) -> dict[str, Any]:
        """What the page shows that can change, from memory only (compared every fraction of a second)."""
        return {
            "version": self.gateway.version,
            "servers": self.list_servers(),
            "held": len(self.gateway.catalog().held),
            "activity": self.activity.recorded,
            "tool_pinning": self.gateway.config.tool_pinning,
        }

    # ------------------------------------------------------------------ tool search

    def search_tools(self, query: str, limit: int) -> list[dict[str, Any]]:
        """The exposed tools ranked for ``query`` by the index behind ``retrieve_tools`` (BM25, names first)."""
        version = self.gateway.version
        tools = {r.name: r for r in self.gateway.tools()}
        if self._index is None or self._index[0] != version:
            index = ToolIndex.build(
                tools_from_schema(r.upstream.name, r.tool.name, r.tool.description, r.tool.input_schema)
                for r in tools.values()
            )
            self._index = (version, index)
        found = []
        for hit, score in self._index[1].search(query, limit):
            routed = tools.get(hit.name)
            if routed is not None:
                found.append({"name": hit.name, "server": hit.server, "tool": hit.tool,
                              "description": routed.tool.description or "", "input_schema": routed.tool.input_schema,
                              "score": round(score, 4)})
        return found

    # ------------------------------------------------------------------ pinned tools

    def held_tools(self, server: str | None = None) -> list[dict[str, Any]]:
        """Tools held back from the agent (new or changed), with what was approved and the diff."""
        return [held_row(name, held) for name, held in sorted(self.gateway.catalog().held.items())
                if server is None or held.server == server]

    async def approve_tools(self, server: str, tool: str | None = None, digest: str | None = None) -> dict[str, Any]:
        """Approve ``server``'s held tools (or just ``tool``; with ``digest``, only if it is still that definition)."""
        if self.gateway.config.tool_pinning == "off":
            raise McpRelayError(
                ErrorType.USAGE_ERROR, "tool pinning is off: no tool is held, so there is nothing to approve",
                suggestion='set "tool_pinning" to "changed" or "all" in the config to pin tools', server=server,
            )
        held = [h for h in self.gateway.catalog().held.values()
                if h.server == server and (tool is None or h.tool == tool)]
        if tool is not None and not held:
            upstream = self.gateway.upstreams.get(server)
            offered = {t.name for t in upstream.catalog.tools} if upstream is not None else set()
            if tool not in offered:
                state = upstream.state if upstream is not None else "not running"
                raise McpRelayError(
                    ErrorType.USAGE_ERROR,
                    f"{server} offers no tool {tool!r}" + ("" if state == "ready" else f" (the server is {state})"),
                    suggestion=f"see what {server} offers and what is held: `mcprelay tools list --server {server}`",
                    server=server, details={"reason": "unknown_tool", "tool": tool},
                )
        if digest is not None and tool is not None and held and held[0].offered.hash != digest:
            raise McpRelayError(
                ErrorType.USAGE_ERROR,
                f"{server}'s tool {tool!r} changed again since it was shown (now {held[0].offered.hash[:19]}…): "
                "review the new definition before approving it",
                suggestion="reload the held tools and look at the diff again",
                server=server, details={"reason": "definition_changed", "tool": tool, "hash": held[0].offered.hash},
            )
        rows = [held_row(self.gateway.namespace(h_upstream).name(h.tool), h)
                for h in held if (h_upstream := self.gateway.upstreams.get(h.server)) is not None]
        if held:
            await self.gateway.pins.approve(server, [h.offered for h in held])
        return {"server_name": server, "approved": rows}


def held_row(name: str, held: Held) -> dict[str, Any]:
    """A held tool as the REST API and the page show it."""
    diff = held.diff()
    return {
        "name": name, "server": held.server, "tool": held.tool, "reason": held.reason,
        "hash": held.offered.hash, "definition": held.offered.definition,
        "approved_hash": held.approved.hash if held.approved is not None else None,
        "approved_definition": held.approved.definition if held.approved is not None else None,
        "approved_at": held.approved.approved_at if held.approved is not None else None,
        "changed_fields": list(diff.fields), "diff": diff.text,
        "description": held.offered.tool.description or "",
    }
