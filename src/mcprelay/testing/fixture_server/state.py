"""The fixture server's mutable state: log levels, resource subscriptions, the listen bus.

Handshake-era state (a ``logging/setLevel`` level, ``resources/subscribe`` subscriptions) belongs
to one connection. The low-level SDK server hands handlers a per-request context without a
connection handle, so connections are told apart by what identifies them on the wire: the
``Mcp-Session-Id`` header over streamable HTTP, and the process itself over stdio (one
connection per process).

2026-era notifications (list changes, resource updates) go to ``subscriptions/listen`` streams
through the SDK's :class:`~mcp.server.subscriptions.InMemorySubscriptionBus`; handshake-era ones
to the subscribing connection's standalone stream (the GET stream over HTTP, the pipe over stdio).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, get_args

import anyio
import mcp_types as types
from mcp.server.connection import allowed_log_levels
from mcp.server.context import ServerRequestContext
from mcp.server.session import ServerSession
from mcp.server.subscriptions import InMemorySubscriptionBus, ResourceUpdated

from mcprelay.testing.fixture_server.asking import is_modern
from mcprelay.testing.fixture_server.content import LOGGER_NAME

LEVELS: tuple[str, ...] = get_args(types.LoggingLevel)  # severity ascending (RFC 5424 order)


def connection_key(ctx: ServerRequestContext[Any, Any]) -> str:
    """Which handshake-era connection a request arrived on (see the module docstring)."""
    headers = getattr(ctx.request, "headers", None)
    if isinstance(headers, Mapping):
        session_id = headers.get("mcp-session-id")
        if session_id:
            return f"http:{session_id}"
        return "http:stateless"
    return "stdio"


@dataclass
class FixtureState:
    """Everything the fixtures remember between requests."""

    bus: InMemorySubscriptionBus = field(default_factory=InMemorySubscriptionBus)
    log_levels: dict[str, str] = field(default_factory=dict)
    subscribers: dict[str, dict[str, ServerSession]] = field(default_factory=dict)  # uri -> connection -> session
    watched_version: int = 0
    tools_revision: int = 0  # bumped by test_trigger_tool_change: test_dynamic_tool's description changes
    prompts_revision: int = 0  # bumped by test_trigger_prompt_change: test_dynamic_prompt's description changes

    # ---- logging ------------------------------------------------------------------------------
    def set_log_level(self, ctx: ServerRequestContext[Any, Any], level: str) -> None:
        self.log_levels[connection_key(ctx)] = level

    def may_log(self, ctx: ServerRequestContext[Any, Any], level: str) -> bool:
        """2026: the request's own ``_meta`` log level decides; 2025: the connection's ``logging/setLevel``."""
        if is_modern(ctx):
            return level in allowed_log_levels(ctx.protocol_version, ctx.meta)
        threshold = self.log_levels.get(connection_key(ctx), "debug")
        return LEVELS.index(level) >= LEVELS.index(threshold)

    async def log(self, ctx: ServerRequestContext[Any, Any], level: types.LoggingLevel, data: Any) -> None:
        """Send ``notifications/message`` on this request's stream, when the client asked for that level."""
        if not self.may_log(ctx, level):
            return
        notification = types.LoggingMessageNotification(
            params=types.LoggingMessageNotificationParams(level=level, data=data, logger=LOGGER_NAME)
        )
        await ctx.session.send_notification(notification, related_request_id=ctx.request_id)

    # ---- resource subscriptions ------------------------------------------------------------------
    def subscribe(self, ctx: ServerRequestContext[Any, Any], uri: str) -> None:
        self.subscribers.setdefault(uri, {})[connection_key(ctx)] = ctx.session

    def unsubscribe(self, ctx: ServerRequestContext[Any, Any], uri: str) -> None:
        self.subscribers.get(uri, {}).pop(connection_key(ctx), None)

    async def resource_updated(self, uri: str) -> int:
        """Tell every subscriber (both eras) that ``uri`` changed; returns how many handshake sessions were told."""
        await self.bus.publish(ResourceUpdated(uri=uri))
        told = 0
        subscribed = self.subscribers.get(uri, {})
        for key, session in list(subscribed.items()):
            try:
                await session.send_resource_updated(uri)  # the connection's standalone channel
                told += 1
            except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                subscribed.pop(key, None)  # that connection is gone
        return told
