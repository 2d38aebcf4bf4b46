#!/usr/bin/env python3
"""A stand-in browser for the conformance suite: ``BROWSER=... follow_browser.py URL``.

The suite's mock authorization endpoint answers the authorization request with an immediate
redirect to the client's redirect URI, so "logging in" is a GET of the authorization URL with the
redirects followed until the request lands on the loopback listener (127.0.0.1 / localhost / [::1])
that mcprelay is running. The listener answers that last request once the code exchange is over,
so this script waits for it (bounded), reports on stderr what happened, and exits 0: Python's
``webbrowser`` module treats a non-zero exit as "no browser", and mcprelay's listener is the judge
of whether the login worked, not this script.

Only the standard library is used; proxies from the environment are ignored (everything here is on
this machine).
"""

from __future__ import annotations

import html
import html.parser
import os
import sys
import urllib.error
import urllib.parse
import urllib.request

LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1"}
TIMEOUT_S = float(os.environ.get("FOLLOW_BROWSER_TIMEOUT", "30"))
# mcprelay holds its answer to the callback until the code exchange is over, which takes well under
# a second here. Waiting longer would only hide a client that waits for the browser to exit before
# it handles the callback (a deadlock with any browser that blocks): give up, say so, exit 0.
CALLBACK_TIMEOUT_S = float(os.environ.get("FOLLOW_BROWSER_CALLBACK_TIMEOUT", "5"))
MAX_HOPS = 10


def _log(message: str) -> None:
    print(f"follow_browser: {message}", file=sys.stderr, flush=True)


def _redact(url: str) -> str:
    """The URL without its query values (codes and states are not for logs)."""
    parts = urllib.parse.urlsplit(url)
    keys = [k for k, _ in urllib.parse.parse_qsl(parts.query, keep_blank_values=True)]
    query = "&".join(f"{k}=…" for k in keys)
    return urllib.parse.urlunsplit((parts.scheme, parts.netloc, parts.path, query, ""))


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """Redirects are followed by hand, one hop at a time, so each hop can be logged and checked."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):  # type: ignore[no-untyped-def]
        return None


class _Forward(html.parser.HTMLParser):
    """A page's meta refresh target, else its first link (how mcprelay's hand-off page forwards)."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.target: str | None = None
        self.link: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {k.lower(): v or "" for k, v in attrs}
        if tag == "meta" and values.get("http-equiv", "").lower() == "refresh" and self.target is None:
            _, sep, target = values.get("content", "").partition("=")
            if sep:
                self.target = target.strip().strip("'\"")
        elif tag == "a" and self.link is None and values.get("href"):
            self.link = values["href"]


def _open_page(url: str) -> str | None:
    """The URL a local file:// page forwards to (mcprelay hands the browser such a private page)."""
    path = urllib.request.url2pathname(urllib.parse.urlsplit(url).path)
    try:
        with open(path, encoding="utf-8") as fh:
            text = fh.read(65536)
    except OSError as exc:
        _log(f"cannot read the page {url}: {exc}")
        return None
    parser = _Forward()
    parser.feed(text)
    target = parser.target or parser.link
    if not target:
        _log(f"the page {url} forwards nowhere")
        return None
    _log("read the hand-off page (file://); following its meta refresh")
    return html.unescape(target)


def follow(url: str) -> int:
    if url.startswith("file:"):
        target = _open_page(url)
        if target is None:
            return 1
        url = target
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}), _NoRedirect())
    for hop in range(MAX_HOPS):
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in {"http", "https"}:
            _log(f"stopping at a non-HTTP redirect target {_redact(url)}")
            return 1
        # The suite's own servers are on loopback too: the callback is the loopback URL redirected to.
        on_loopback_callback = hop > 0 and parts.hostname in LOOPBACK_HOSTS
        _log(f"GET {_redact(url)}")
        # The scheme was checked above: http(s) only.
        request = urllib.request.Request(url, headers={"User-Agent": "mcprelay-conformance-browser/1"})  # noqa: S310
        timeout = CALLBACK_TIMEOUT_S if on_loopback_callback else TIMEOUT_S
        try:
            with opener.open(request, timeout=timeout) as response:
                status, headers = response.status, response.headers
                body = response.read(4096)
        except urllib.error.HTTPError as exc:  # 3xx (redirects are not followed by the opener) and 4xx/5xx
            status, headers = exc.code, exc.headers
            body = exc.read(4096) if exc.fp is not None else b""
        except TimeoutError:
            if on_loopback_callback:
                _log(
                    f"the loopback callback did not answer within {timeout:g} s; exiting anyway. If the client "
                    "handles the callback only after this browser exits, that is a deadlock in the client."
                )
            else:
                _log(f"no answer within {timeout:g} s")
            return 1
        except (urllib.error.URLError, OSError) as exc:
            _log(f"request failed: {exc}")
            return 1
        location = headers.get("Location") if headers else None
        if 300 <= status < 400 and location:
            url = urllib.parse.urljoin(url, location)
            continue
        text = body.decode("utf-8", "replace").strip().replace("\n", " ")[:300]
        if on_loopback_callback:
            _log(f"callback answered {status}: {text}")
            return 0 if status < 400 else 1
        _log(f"ended at {_redact(url)} with {status} before reaching a loopback callback: {text}")
        return 1
    _log(f"more than {MAX_HOPS} redirects")
    return 1


def main(argv: list[str]) -> int:
    if len(argv) < 2:
        _log("usage: follow_browser.py URL")
        return 0
    try:
        follow(argv[1])
    except Exception as exc:  # never let a traceback stand in for the listener's verdict
        _log(f"unexpected {type(exc).__name__}: {exc}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
