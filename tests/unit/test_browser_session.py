"""The page's one-time links and browser sessions: single use, short lived, both halves needed, right origin."""

from __future__ import annotations

from mcprelay.gateway.serving.browsersession import LINK_TTL, SESSION_TTL, BrowserSessions


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def headers(sessions: BrowserSessions, cookie: str, csrf: str | None, **extra: str) -> dict[str, str]:
    found = {"host": "127.0.0.1:8080", "cookie": f"other=1; {sessions.cookie_name}={cookie}"}
    if csrf is not None:
        found["x-mcprelay-csrf"] = csrf
    found.update(extra)
    return found


def test_a_link_works_once() -> None:
    sessions = BrowserSessions(8080, clock=Clock())
    link_id, token, _ = sessions.mint()
    assert sessions.link_state(link_id) == {"used": False, "expired": False, "expires_in": LINK_TTL}
    first = sessions.redeem(token)
    assert first is not None and first.cookie != first.csrf
    assert sessions.redeem(token) is None
    assert sessions.link_state(link_id)["used"] is True  # type: ignore[index]
    assert sessions.redeem("not-a-token") is None and sessions.redeem("") is None


def test_a_link_expires() -> None:
    clock = Clock()
    sessions = BrowserSessions(8080, clock=clock)
    link_id, token, expires_at = sessions.mint()
    clock.now = expires_at
    assert sessions.link_state(link_id)["expired"] is True  # type: ignore[index]
    assert sessions.redeem(token) is None


def test_a_session_needs_both_its_cookie_and_its_header_secret() -> None:
    sessions = BrowserSessions(8080, clock=Clock())
    redeemed = sessions.redeem(sessions.mint()[1])
    assert redeemed is not None
    ok = headers(sessions, redeemed.cookie, redeemed.csrf)
    assert sessions.admit("GET", "/api/v1/servers", ok) == "session"
    assert sessions.admit("POST", "/api/v1/servers/a/login", ok) == "session"
    # The cookie alone (what any server on another port of 127.0.0.1 may be sent) opens only the static page.
    alone = headers(sessions, redeemed.cookie, None)
    assert sessions.admit("GET", "/api/v1/servers", alone) is None
    assert sessions.admit("GET", "/ui/", alone) == "page"
    assert sessions.admit("GET", "/ui/app.js", alone) == "page"
    assert sessions.admit("GET", "/api/v1/servers", headers(sessions, redeemed.cookie, "wrong")) is None
    assert sessions.admit("GET", "/api/v1/servers", headers(sessions, "wrong", redeemed.csrf)) is None
    # Never /mcp, never minting links, and not from another origin (another port is another origin).
    assert sessions.admit("POST", "/mcp", ok) is None
    assert sessions.admit("POST", "/api/v1/ui/links", ok) is None
    assert sessions.admit("GET", "/api/v1/ui/links/abc", ok) is None
    assert sessions.admit("POST", "/api/v1/servers/a/login", {**ok, "origin": "http://127.0.0.1:9999"}) is None
    assert sessions.admit("POST", "/api/v1/servers/a/login", {**ok, "origin": "http://127.0.0.1:8080"}) == "session"
    assert sessions.admit("GET", "/api/v1/servers", {**ok, "sec-fetch-site": "same-site"}) is None
    # No session at all: only the link itself passes (its endpoint checks the token).
    assert sessions.admit("GET", "/ui/open", {"host": "127.0.0.1:8080"}) == "link"
    assert sessions.admit("GET", "/ui/open.js", {"host": "127.0.0.1:8080"}) == "link"
    own, other = "http://127.0.0.1:8080", "http://127.0.0.1:9"
    assert sessions.admit("POST", "/ui/session", {"host": "127.0.0.1:8080", "origin": own}) == "link"
    assert sessions.admit("POST", "/ui/session", {"host": "127.0.0.1:8080", "origin": other}) is None
    assert sessions.admit("GET", "/ui/app.js", {"host": "127.0.0.1:8080"}) is None
    assert sessions.admit("GET", "/ui/", {"host": "127.0.0.1:8080"}) is None


def test_a_session_ends() -> None:
    clock = Clock()
    sessions = BrowserSessions(8080, clock=clock)
    redeemed = sessions.redeem(sessions.mint()[1])
    assert redeemed is not None
    clock.now += SESSION_TTL
    assert sessions.admit("GET", "/api/v1/servers", headers(sessions, redeemed.cookie, redeemed.csrf)) is None


def test_the_cookie_is_http_only_strict_and_named_after_the_port() -> None:
    sessions = BrowserSessions(41234, clock=Clock())
    redeemed = sessions.redeem(sessions.mint()[1])
    assert redeemed is not None
    header = sessions.set_cookie_header(redeemed)
    assert header.startswith(f"mcprelay_ui_41234={redeemed.cookie};")
    assert "HttpOnly" in header and "SameSite=Strict" in header and "Path=/" in header
    # Another listener's session does not open this one.
    other = BrowserSessions(41235, clock=Clock())
    assert other.admit("GET", "/api/v1/servers", {"host": "127.0.0.1:41235",
                                                   "cookie": f"mcprelay_ui_41235={redeemed.cookie}",
                                                   "x-mcprelay-csrf": redeemed.csrf}) is None
