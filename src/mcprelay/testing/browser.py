"""A browser stand-in for auto-consent servers: GET the authorization URL and follow the redirects.

The strict test server (and the conformance suite's mock) consent at once and answer 302 to the
redirect URI, so following redirects lands on mcprelay's loopback listener — the same path a real
browser takes. The listener holds its answer until the code exchange is done, so this call
returns the page the user would see; ``pages`` keeps it for tests that check what the page says.

mcprelay hands the browser a private ``file://`` page that forwards to the authorization URL (so
the URL never shows in a process list); :func:`page_target` reads that page the way a browser
does — its meta refresh, else its link.
"""

from __future__ import annotations

import html
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urlsplit
from urllib.request import url2pathname

import httpx2

pages: list[tuple[int, str]] = []


class _Forward(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.refresh: str | None = None
        self.link: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {k.lower(): v or "" for k, v in attrs}
        if tag == "meta" and values.get("http-equiv", "").lower() == "refresh" and self.refresh is None:
            _, sep, target = values.get("content", "").partition("=")
            if sep:
                self.refresh = target.strip().strip("'\"")
        elif tag == "a" and self.link is None and values.get("href"):
            self.link = values["href"]


def forward_target(page: str) -> str | None:
    """Where an HTML page sends the browser: its meta refresh URL, else its first link."""
    parser = _Forward()
    parser.feed(page)
    target = parser.refresh or parser.link
    return html.unescape(target) if target else None


def page_target(url: str) -> str:
    """``url`` itself, or for a ``file://`` hand-off page the URL it forwards to."""
    if not url.startswith("file:"):
        return url
    text = Path(url2pathname(urlsplit(url).path)).read_text(encoding="utf-8")
    target = forward_target(text)
    if not target:
        raise ValueError(f"the page {url} forwards nowhere")
    return target


def follow(url: str) -> bool:
    """``webbrowser.open``-compatible: returns True once the final page was received."""
    with httpx2.Client(follow_redirects=True, timeout=60) as client:
        response = client.get(page_target(url))
    pages.append((response.status_code, response.text))
    return True


if __name__ == "__main__":  # BROWSER="python -m mcprelay.testing.browser" for subprocess tests
    import sys

    follow(sys.argv[1])
