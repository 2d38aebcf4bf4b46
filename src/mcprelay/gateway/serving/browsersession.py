"""How a person's browser gets into the gateway's page without ever holding the listener's key.

The key (``api_key`` or the owner key) must not land in an address bar, a history file or a bookmark,
and a browser cannot add an ``Authorization`` header to a navigation anyway. So ``mcprelay ui``,
which can read the key, asks the listener for a **one-time link** (``POST /api/v1/ui/links`` with the
key); the browser opens it, and the listener trades it for a **browser session**:

* the link's token is 32 random bytes, good for :data:`LINK_TTL` seconds and for one use; only its
  SHA-256 is kept, so the table of live links holds nothing that opens the page;
* the token travels in the link's URL fragment (``/ui/open#t=TOKEN``), which a browser never sends
  to any server, so it is in no request line or server log; the small static page there takes it
  out of the address bar at once and trades it (``POST /ui/session``, JSON, from the page's own
  origin) for a session. The trade is a request of the page itself, not a navigation: a navigation
  that began elsewhere (the browser was handed a private ``file://`` page by ``mcprelay ui``) would
  not carry a ``SameSite=Strict`` cookie, and a cookie set by it would not come back on a redirect;
* the answer sets a session cookie (``HttpOnly``: page scripts cannot read it; ``SameSite=Strict``:
  cross-site requests do not carry it; ``Path=/``; named after the listener's port, so the gateways
  of two homes on one machine do not overwrite each other's) and gives the page a second secret,
  which it keeps in ``sessionStorage``;
* every request the page makes carries both: the cookie, and the second secret in the
  ``X-Mcprelay-Csrf`` header. A cross-site form or image cannot set a header, and cookies are not
  isolated by port — any local user's server on another port of 127.0.0.1 may be sent our cookie —
  but ``sessionStorage`` is per origin (port included), so the cookie alone opens nothing but the
  page's static files (no data in them).

Sessions live in the gateway's memory: a restarted gateway forgets them (run ``mcprelay ui`` again).
They end after :data:`SESSION_TTL` seconds. The clock is injectable so the expiry rules are tested
without waiting.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

#: The page's static files (no data in them): a session cookie is enough, as a browser navigation carries no header.
PAGE_PREFIX = "/ui"
#: Where the page's data comes from: cookie and header secret, from the page's own origin.
API_PREFIX = "/api/v1"
#: Minting links and asking about them takes the key itself: a browser session cannot make more sessions.
LINKS_PATH = "/api/v1/ui/links"
LINK_TTL = 60.0
SESSION_TTL = 12 * 3600.0
MAX_LINKS = 32
MAX_SESSIONS = 64
CSRF_HEADER = "x-mcprelay-csrf"
OPEN_PATH = "/ui/open"
#: Where the page trades a link's token for a session (the token is its credential, not the key).
SESSION_PATH = "/ui/session"
#: What a browser without a session may fetch: the page that trades the token, and its script.
_OPEN_FILES = frozenset({OPEN_PATH, "/ui/open.js"})


def cookie_name(port: int) -> str:
    return f"mcprelay_ui_{port}"


def _digest(secret: str) -> bytes:
    return hashlib.sha256(secret.encode("utf-8", errors="replace")).digest()


@dataclass
class _Link:
    link_id: str
    expires_at: float
    used: bool = False


@dataclass(frozen=True)
class _Session:
    csrf_digest: bytes
    expires_at: float


@dataclass(frozen=True)
class Redeemed:
    """What redeeming a link gives the browser: the cookie's value and the header secret for the page."""

    cookie: str
    csrf: str
    max_age: int


class BrowserSessions:
    """One-time links and the browser sessions they open, for one listener."""

    def __init__(self, port: int, *, clock: Callable[[], float] = time.time) -> None:
        self.port = port
        self.cookie_name = cookie_name(port)
        self._clock = clock
        self._links: OrderedDict[bytes, _Link] = OrderedDict()  # token digest → link
        self._sessions: OrderedDict[bytes, _Session] = OrderedDict()  # cookie digest → session

    # ------------------------------------------------------------------ links

    def mint(self) -> tuple[str, str, float]:
        """A new one-time token: (link id, token, expires_at). The id is for asking whether it was used."""
        self._prune()
        token = secrets.token_urlsafe(32)
        link = _Link(secrets.token_hex(8), self._clock() + LINK_TTL)
        self._links[_digest(token)] = link
        while len(self._links) > MAX_LINKS:
            self._links.popitem(last=False)
        return link.link_id, token, link.expires_at

    def link_state(self, link_id: str) -> dict[str, object] | None:
        """``used`` and ``expires_in`` of a link minted here, or None when it is not (or no longer) known."""
        now = self._clock()
        for link in self._links.values():
            if hmac.compare_digest(link.link_id, link_id):
                return {"used": link.used, "expired": not link.used and now >= link.expires_at,
                        "expires_in": max(0.0, round(link.expires_at - now, 1))}
        return None

    def redeem(self, token: str) -> Redeemed | None:
        """Trade a one-time token for a session; None when it is unknown, used or expired (nothing changes)."""
        link = self._links.get(_digest(token))
        now = self._clock()
        if link is None or link.used or now >= link.expires_at:
            return None
        link.used = True  # kept (used) until it would have expired, so `mcprelay ui` can see it was opened
        cookie, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
        self._sessions[_digest(cookie)] = _Session(_digest(csrf), now + SESSION_TTL)
        while len(self._sessions) > MAX_SESSIONS:
            self._sessions.popitem(last=False)
        return Redeemed(cookie, csrf, int(SESSION_TTL))

    # ------------------------------------------------------------------ sessions

    def has_cookie(self, cookie_header: str | None) -> bool:
        """A live session cookie is among ``cookie_header``'s (enough for the page's static files only)."""
        return self._session(cookie_header) is not None

    def admits(self, cookie_header: str | None, csrf: str | None) -> bool:
        """Both halves of a live session: its cookie and its header secret."""
        session = self._session(cookie_header)
        return session is not None and csrf is not None and hmac.compare_digest(_digest(csrf), session.csrf_digest)

    def _session(self, cookie_header: str | None) -> _Session | None:
        value = _cookie_value(cookie_header, self.cookie_name)
        if value is None:
            return None
        key = _digest(value)
        session = self._sessions.get(key)
        if session is None:
            return None
        if self._clock() >= session.expires_at:
            del self._sessions[key]
            return None
        return session

    def _prune(self) -> None:
        now = self._clock()
        for key in [k for k, link in self._links.items() if now >= link.expires_at]:
            del self._links[key]
        for key in [k for k, s in self._sessions.items() if now >= s.expires_at]:
            del self._sessions[key]

    def admit(self, method: str, path: str, headers: dict[str, str]) -> str | None:
        """Whether a request without the key may pass on this browser's session: ``"link"`` (the one-time link
        itself, checked by its endpoint), ``"page"`` (static files), ``"session"`` (data), or None."""
        if path in _OPEN_FILES and method in {"GET", "HEAD"}:
            return "link"
        host = (headers.get("host") or "").strip().lower()
        origin = headers.get("origin")
        if path == SESSION_PATH and method == "POST":
            return "link" if origin is None or origin.strip().lower().rstrip("/") == f"http://{host}" else None
        cookie = headers.get("cookie")
        if (path == PAGE_PREFIX or path.startswith(PAGE_PREFIX + "/")) and method in {"GET", "HEAD"}:
            return "page" if self.has_cookie(cookie) else None
        if not path.startswith(API_PREFIX + "/") or path == LINKS_PATH or path.startswith(LINKS_PATH + "/"):
            return None
        if origin is not None and origin.strip().lower().rstrip("/") != f"http://{host}":
            return None  # not the page's own origin (another port of 127.0.0.1 is another origin)
        if headers.get("sec-fetch-site", "same-origin") != "same-origin":
            return None
        return "session" if self.admits(cookie, headers.get(CSRF_HEADER)) else None

    def set_cookie_header(self, redeemed: Redeemed) -> str:
        return (f"{self.cookie_name}={redeemed.cookie}; Max-Age={redeemed.max_age}; Path=/; HttpOnly; "
                "SameSite=Strict")


def _cookie_value(header: str | None, name: str) -> str | None:
    """The value of cookie ``name`` in a ``Cookie`` header (the first one, as browsers send the most specific first)."""
    if not header:
        return None
    for part in header.split(";"):
        key, sep, value = part.strip().partition("=")
        if sep and key == name and value:
            return value.strip('"')
    return None
