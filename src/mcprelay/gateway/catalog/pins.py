"""Pinned tools (rug-pull protection): what a tool's definition is, its hash, what changed, what is held.

An agent trusts a tool by what its definition says: the description it reads and the schema it fills
in. A server that changes either after the person chose to use it — a description that now tells the
agent to send files somewhere, a new parameter that asks for a token, a new tool that shadows a
familiar one — can turn the agent against the person without anyone noticing. So the gateway pins
each tool: it remembers a hash of the definition a person accepted and holds back any tool whose
definition is not pinned, until a person approves it (``mcprelay tools approve``, the REST API, the
page). This module is the pure part of that — no files, no clock:

* :func:`definition` picks the fields a person's trust rests on, as the upstream sent them: ``name``,
  ``title``, ``description``, ``inputSchema``, ``outputSchema``, ``annotations``. ``_meta``, ``icons``
  and the like are left out: they change for reasons that say nothing about what the tool does, and
  a pin that breaks at every upstream release would train people to approve without reading.
* :func:`fingerprint` hashes it (SHA-256 of canonical JSON: sorted keys, no insignificant space,
  UTF-8), so key order or whitespace never counts as a change.
* :func:`diff` says what changed: the top-level fields, and a unified diff of the two definitions
  pretty-printed the same way.
* :func:`screen` decides, for one server's tools and its pins under a mode, which tools are exposed,
  which are held and why (``new`` or ``changed``), and whether this is the server's first sighting
  (mode ``changed`` pins a server's tools as they are the first time it is seen offering any).

Modes (config ``tool_pinning``): ``off`` — nothing is pinned or held; ``changed`` (default) — trust
on first sight, hold what is added or changed later; ``all`` — every tool must be approved before
its first use.
"""

from __future__ import annotations

import difflib
import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import mcp_types as types

PinMode = Literal["off", "changed", "all"]
PIN_MODES: tuple[PinMode, ...] = ("off", "changed", "all")
HeldReason = Literal["new", "changed"]

#: The fields of a tool definition that are pinned, in the order they are shown.
PINNED_FIELDS = ("name", "title", "description", "inputSchema", "outputSchema", "annotations")
_HASH_PREFIX = "sha256:"


def definition(tool: types.Tool | Mapping[str, Any]) -> dict[str, Any]:
    """The pinned fields of ``tool``, as JSON, exactly as the upstream sent them (unset fields stay out)."""
    raw: Mapping[str, Any]
    if isinstance(tool, types.Tool):
        raw = tool.model_dump(mode="json", by_alias=True, exclude_unset=True)
    else:
        raw = tool
    return {key: raw[key] for key in PINNED_FIELDS if key in raw and raw[key] is not None}


def canonical(value: Any) -> bytes:
    """Canonical JSON: sorted keys, no insignificant whitespace, UTF-8 (not ASCII escapes)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


def fingerprint(pinned: Mapping[str, Any]) -> str:
    """``sha256:<hex>`` of a definition's canonical JSON."""
    return _HASH_PREFIX + hashlib.sha256(canonical(dict(pinned))).hexdigest()


def _pretty(value: Mapping[str, Any] | None) -> list[str]:
    if value is None:
        return []
    # The fields in their reading order, everything inside them sorted: only real changes show as lines.
    ordered = {key: json.loads(canonical(value[key])) for key in PINNED_FIELDS if key in value}
    return json.dumps(ordered, indent=2, ensure_ascii=False).splitlines()


@dataclass(frozen=True)
class Diff:
    """What separates an approved definition from the one the server offers now."""

    fields: tuple[str, ...]  # the top-level pinned fields that differ (all of them for a new tool)
    text: str  # a unified diff, "approved" → "offered"; for a new tool, the whole definition as added lines

    def to_dict(self) -> dict[str, Any]:
        return {"fields": list(self.fields), "text": self.text}


def diff(old: Mapping[str, Any] | None, new: Mapping[str, Any]) -> Diff:
    """The fields that changed and a unified diff of the pretty-printed definitions (``old`` None: new tool)."""
    keys = [k for k in PINNED_FIELDS if k in new or (old is not None and k in old)]
    if old is None:
        changed = tuple(k for k in keys if k in new)
    else:
        changed = tuple(k for k in keys if canonical(old.get(k)) != canonical(new.get(k)))
    lines = difflib.unified_diff(
        _pretty(old), _pretty(new), fromfile="approved" if old is not None else "(not approved)",
        tofile="offered now", lineterm="", n=3,
    )
    return Diff(changed, "\n".join(lines))


@dataclass(frozen=True)
class Pin:
    """One approved definition of one tool."""

    hash: str
    definition: dict[str, Any]
    approved_at: float | None = None  # seconds since the epoch; None for what first sight pinned
    how: str = "approved"  # "approved" (by a person) or "first_seen" (mode changed, the server's first sighting)

    def to_dict(self) -> dict[str, Any]:
        return {"hash": self.hash, "definition": self.definition, "approved_at": self.approved_at, "how": self.how}

    @classmethod
    def from_dict(cls, data: Any) -> Pin | None:
        """A pin read from a file; None when the entry is not one, or its hash is not its definition's (a
        damaged or hand-edited file must not expose a tool: the tool is held again)."""
        if not isinstance(data, dict):
            return None
        pinned, digest = data.get("definition"), data.get("hash")
        if not isinstance(pinned, dict) or not isinstance(digest, str):
            return None
        try:
            if fingerprint(pinned) != digest:
                return None
        except (TypeError, ValueError):
            return None
        approved_at = data.get("approved_at")
        how = data.get("how")
        return cls(
            hash=digest, definition=pinned,
            approved_at=float(approved_at) if isinstance(approved_at, int | float) else None,
            how=how if isinstance(how, str) else "approved",
        )


@dataclass(frozen=True)
class Offered:
    """A tool as a server offers it now, with its pinned definition and hash worked out once."""

    tool: types.Tool
    definition: dict[str, Any]
    hash: str

    @classmethod
    def of(cls, tool: types.Tool) -> Offered:
        pinned = definition(tool)
        return cls(tool, pinned, fingerprint(pinned))


@dataclass(frozen=True)
class Held:
    """A tool held back from the agent: why, what is offered, and what was approved (if anything)."""

    server: str
    offered: Offered
    reason: HeldReason
    approved: Pin | None

    @property
    def tool(self) -> str:
        return self.offered.tool.name

    def diff(self) -> Diff:
        return diff(self.approved.definition if self.approved is not None else None, self.offered.definition)


@dataclass
class Screened:
    """One server's tools sorted into exposed and held, and the pins a first sighting makes."""

    exposed: list[types.Tool] = field(default_factory=list)
    held: list[Held] = field(default_factory=list)
    #: Mode ``changed``, a server never seen before: its tools as they are, to be recorded as pinned.
    first_sight: dict[str, Pin] | None = None


def screen(
    server: str, offered: Iterable[Offered], pins: Mapping[str, Pin] | None, mode: PinMode
) -> Screened:
    """Sort ``server``'s ``offered`` tools by its ``pins`` (None: the server was never seen) under ``mode``."""
    result = Screened()
    tools = list(offered)
    if mode == "off":
        result.exposed = [o.tool for o in tools]
        return result
    if pins is None and mode == "changed":
        result.exposed = [o.tool for o in tools]
        if not tools:
            # Nothing seen yet (a server that has not listed, e.g. one waiting for its first login): the
            # first sighting is the first listing that offers something.
            return result
        result.first_sight = {o.tool.name: Pin(o.hash, o.definition, None, "first_seen") for o in tools}
        return result
    known = pins or {}
    for o in tools:
        pin = known.get(o.tool.name)
        if pin is not None and pin.hash == o.hash:
            result.exposed.append(o.tool)
        else:
            result.held.append(Held(server, o, "changed" if pin is not None else "new", pin))
    return result
