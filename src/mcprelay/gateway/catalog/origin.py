"""The downstream request a forwarded request comes from, as the catalog sees it.

An upstream working on a forwarded request may report progress, log, or need input from the user
(elicitation, sampling, the client's roots). All of that must reach the one downstream request —
and client — that caused it, in that client's own protocol era. The catalog and the upstream
supervisors only ever talk to an :class:`Origin`; the serving layer implements it three times (a
request served by the SDK's server, and the stdio and HTTP fast paths), so nothing below knows what
wire the agent is on.

Era rules the implementations follow:

* handshake-era clients (``initialize``, up to 2025-11-25) can be sent requests while their request
  runs (:meth:`Origin.ask`) and receive log messages for their session's level;
* 2026-07-28 clients cannot be sent requests at all: input reaches them as an ``input_required``
  result of their own request (multi round-trip requests), which the forwarder arranges, and they
  receive log messages only for a request that carried ``io.modelcontextprotocol/logLevel``.
"""

from __future__ import annotations

from typing import Any, Protocol

from mcp_types import LoggingLevel

#: syslog severities, lowest first (RFC 5424, as MCP uses them).
LOG_LEVELS: tuple[LoggingLevel, ...] = (
    "debug", "info", "notice", "warning", "error", "critical", "alert", "emergency",
)


def level_admits(wanted: str | None, level: str) -> bool:
    """Whether a message at ``level`` passes a threshold of ``wanted`` (``None``: no threshold set)."""
    if wanted is None:
        return True
    try:
        return LOG_LEVELS.index(level) >= LOG_LEVELS.index(wanted)
    except ValueError:
        return True  # an unknown level is the receiver's to judge


class Origin(Protocol):
    """One downstream request, with the channel back to the client that sent it."""

    @property
    def version(self) -> str:
        """The protocol version the downstream request speaks."""
        ...

    @property
    def session(self) -> object:
        """Identifies the downstream connection (handshake era) or client (2026-07-28) for grouping."""
        ...

    @property
    def capabilities(self) -> dict[str, Any]:
        """The client's capabilities as JSON (``sampling``, ``elicitation``, ``roots``, …)."""
        ...

    @property
    def log_level(self) -> str | None:
        """The level this request (2026-07-28) or its session (handshake era) asked log messages at."""
        ...

    @property
    def wants_progress(self) -> bool:
        """Whether the client sent a progress token (only then is the upstream asked for progress)."""
        ...

    @property
    def can_ask(self) -> bool:
        """Whether :meth:`ask` can reach the client now (handshake era, a channel back that is open)."""
        ...

    async def progress(self, progress: float, total: float | None, message: str | None) -> None:
        """Report progress for the request (a no-op when the client sent no progress token)."""
        ...

    async def log(self, params: dict[str, Any]) -> None:
        """Deliver one ``notifications/message`` (already filtered by level) for this request."""
        ...

    async def ask(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        """Send the client a request (elicitation, sampling, roots) and return its result as JSON.

        Raises ``MCPError`` with the client's error when it refuses.
        """
        ...


class NoClient:
    """An origin with no agent behind it (a call made by the gateway itself, or a test): it cannot be
    asked anything, and progress and log messages go nowhere."""

    def __init__(self, version: str = "2025-11-25") -> None:
        self.version = version
        self.session: object = self
        self.capabilities: dict[str, Any] = {}
        self.log_level: str | None = None
        self.wants_progress = False
        self.can_ask = False

    async def progress(self, progress: float, total: float | None, message: str | None) -> None:
        return None

    async def log(self, params: dict[str, Any]) -> None:
        return None

    async def ask(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        from mcp.shared.exceptions import MCPError
        from mcp_types import METHOD_NOT_FOUND

        raise MCPError(METHOD_NOT_FOUND, f"no agent is there to answer {method}")
