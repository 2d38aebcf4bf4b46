"""``WWW-Authenticate`` parsing (RFC 9110 §11.6.1, RFC 6750 §3).

The header is written by servers we do not control, so the parser is lenient and total: it accepts
several challenges per header and several headers, unquoted values that are not strictly tokens
(URLs, mostly), and stray garbage, and it returns whatever it could make sense of instead of
raising. A missing challenge only means discovery falls back to the well-known URLs.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

_TCHAR = frozenset("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
_TOKEN68 = frozenset("-._~+/0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
_WS = " \t\r\n"


@dataclass
class Challenge:
    """One challenge; ``scheme`` and parameter names are lower-cased, values are kept verbatim."""

    scheme: str
    params: dict[str, str] = field(default_factory=dict)
    token68: str | None = None

    def _param(self, name: str) -> str | None:
        return self.params.get(name) or None

    @property
    def resource_metadata(self) -> str | None:
        """RFC 9728 §5.1: where the protected resource metadata lives."""
        return self._param("resource_metadata")

    @property
    def scope(self) -> str | None:
        return self._param("scope")

    @property
    def error(self) -> str | None:
        return self._param("error")

    @property
    def error_description(self) -> str | None:
        return self._param("error_description")


class _Cursor:
    """A position in one header value; every method either advances or leaves ``pos`` unchanged."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    @property
    def done(self) -> bool:
        return self.pos >= len(self.text)

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def skip(self, chars: str) -> None:
        while self.pos < len(self.text) and self.text[self.pos] in chars:
            self.pos += 1

    def run(self, allowed: frozenset[str]) -> str:
        start = self.pos
        while self.pos < len(self.text) and self.text[self.pos] in allowed:
            self.pos += 1
        return self.text[start : self.pos]

    def until(self, stops: str) -> str:
        start = self.pos
        while self.pos < len(self.text) and self.text[self.pos] not in stops:
            self.pos += 1
        return self.text[start : self.pos]

    def quoted(self) -> str:
        """A quoted-string starting at ``"``; an unterminated one runs to the end of the value."""
        self.pos += 1
        out: list[str] = []
        while self.pos < len(self.text):
            ch = self.text[self.pos]
            self.pos += 1
            if ch == '"':
                break
            if ch == "\\" and self.pos < len(self.text):
                ch = self.text[self.pos]
                self.pos += 1
            out.append(ch)
        return "".join(out)

    def at_param(self) -> bool:
        """Whether ``name = value`` starts here (as opposed to a token68 or a new scheme)."""
        probe = _Cursor(self.text)
        probe.pos = self.pos
        if not probe.run(_TCHAR):
            return False
        probe.skip(" \t")
        if probe.peek() != "=":
            return False
        probe.pos += 1
        probe.skip(" \t")
        # "abc==" and "abc=" at the end are token68 padding, not a parameter.
        return probe.peek() not in ("=", ",", "")


def _value(cur: _Cursor) -> str:
    if cur.peek() == '"':
        return cur.quoted()
    # Lenient: servers send unquoted URLs, which are not tokens. A value ends at a comma or space.
    return cur.until("," + _WS)


def _parse_one(text: str, into: list[Challenge]) -> None:
    cur = _Cursor(text)
    while not cur.done:
        cur.skip(_WS + ",")
        if cur.done:
            return
        scheme = cur.run(_TCHAR)
        if not scheme:
            cur.until(",")  # garbage where a scheme belongs: drop up to the next list element
            continue
        challenge = Challenge(scheme.lower())
        into.append(challenge)
        cur.skip(_WS)
        if cur.done or cur.peek() == ",":
            continue
        if not cur.at_param():
            start = cur.pos
            token = cur.run(_TOKEN68)
            if token and cur.peek() in ("=", ",", "", " ", "\t", "\r", "\n"):
                challenge.token68 = token + cur.run(frozenset("="))
                continue
            cur.pos = start
            cur.until(",")
            continue
        _params(cur, challenge)


def _params(cur: _Cursor, challenge: Challenge) -> None:
    """Parameters until the next challenge's scheme (a token not followed by ``=``) or the end."""
    while cur.at_param():
        name = cur.run(_TCHAR).lower()
        cur.skip(" \t")
        cur.pos += 1  # the "=" at_param() saw
        cur.skip(" \t")
        value = _value(cur)
        challenge.params.setdefault(name, value)  # RFC 9110: names occur once; first one wins
        cur.skip(_WS)
        if cur.peek() not in (",", ""):
            cur.until(",")  # junk after a value: skip to the next list element
        cur.skip(_WS + ",")


def parse_www_authenticate(values: str | Iterable[str]) -> list[Challenge]:
    """Every challenge in one header value or in several; never raises on any text."""
    challenges: list[Challenge] = []
    for value in [values] if isinstance(values, str) else values:
        if isinstance(value, str):
            _parse_one(value, challenges)
    return challenges


class _HasGetList(Protocol):
    def get_list(self, key: str) -> list[str]: ...


def _header_values(source: _HasGetList | Mapping[str, str] | str | Iterable[str]) -> list[str]:
    if isinstance(source, str):
        return [source]
    if hasattr(source, "get_list"):
        return list(source.get_list("www-authenticate"))
    if isinstance(source, Mapping):
        return [v for k, v in source.items() if isinstance(k, str) and k.lower() == "www-authenticate"]
    return [v for v in source if isinstance(v, str)]


def bearer_challenge(headers_or_values: _HasGetList | Mapping[str, str] | str | Iterable[str]) -> Challenge | None:
    """The first Bearer challenge among response headers (or raw header values), if any."""
    for challenge in parse_www_authenticate(_header_values(headers_or_values)):
        if challenge.scheme == "bearer":
            return challenge
    return None


def auth_challenge(headers_or_values: _HasGetList | Mapping[str, str] | str | Iterable[str]) -> Challenge | None:
    """The challenge to answer: the first Bearer one, else the first DPoP one (RFC 9449 §7.1).

    A resource that offers both accepts both, and Bearer is what every authorization server
    issues; one that offers only DPoP is asking for sender-constrained tokens.
    """
    found = [c for c in parse_www_authenticate(_header_values(headers_or_values)) if c.scheme in ("bearer", "dpop")]
    for challenge in found:
        if challenge.scheme == "bearer":
            return challenge
    return found[0] if found else None
