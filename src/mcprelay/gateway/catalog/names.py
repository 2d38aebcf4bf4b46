"""How an upstream's names and URIs look to the agent, and back.

By default (``prefix: true``) every upstream gets a namespace: tool ``search`` of server ``github`` is
``github__search`` (the contract), prompts alike, and resource ``file:///a.txt`` of server ``docs`` is
``mcprelay://docs/file:///a.txt`` (templates alike), so any name or URI maps back to exactly one server
whatever its scheme. With ``prefix: false`` a server's names and URIs pass unchanged — for one server
behind the gateway, or a client that expects the upstream's own names; the catalog then resolves them
by lookup, and a name another server already exposes is skipped (first in config order wins).

A :class:`Namespace` is pure: it maps strings. The rewriting of whole results lives in ``rewrite.py``.
"""

from __future__ import annotations

from dataclasses import dataclass

SEPARATOR = "__"
RESOURCE_PREFIX = "mcprelay://"


def split_name(name: str) -> tuple[str, str] | None:
    """``server__tool`` → (server, tool); server names never contain ``__``, so the first one splits."""
    server, sep, rest = name.partition(SEPARATOR)
    return (server, rest) if sep and server and rest else None


def split_uri(uri: str) -> tuple[str, str] | None:
    """``mcprelay://server/<uri>`` → (server, uri)."""
    if not uri.startswith(RESOURCE_PREFIX):
        return None
    server, sep, rest = uri[len(RESOURCE_PREFIX) :].partition("/")
    return (server, rest) if sep and server and rest else None


@dataclass(frozen=True)
class Namespace:
    """The names and URIs of one upstream as the agent sees them."""

    server: str
    prefixed: bool = True

    def name(self, original: str) -> str:
        return f"{self.server}{SEPARATOR}{original}" if self.prefixed else original

    def uri(self, original: str) -> str:
        """A resource URI (or URI template) as exposed; templates keep their ``{variables}`` intact."""
        return f"{RESOURCE_PREFIX}{self.server}/{original}" if self.prefixed else original

    def original_name(self, exposed: str) -> str | None:
        """The upstream's own name for ``exposed``, or ``None`` when ``exposed`` is not in this namespace."""
        if not self.prefixed:
            return exposed
        parts = split_name(exposed)
        return parts[1] if parts is not None and parts[0] == self.server else None

    def original_uri(self, exposed: str) -> str | None:
        """The upstream's own URI for ``exposed``, or ``None`` when ``exposed`` is not in this namespace."""
        if not self.prefixed:
            return exposed
        parts = split_uri(exposed)
        return parts[1] if parts is not None and parts[0] == self.server else None
