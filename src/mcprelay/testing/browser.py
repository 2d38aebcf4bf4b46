"""A browser stand-in for auto-consent servers: GET the authorization URL and follow the redirects.

The strict test server (and the conformance suite's mock) consent at once and answer 302 to the
redirect URI, so following redirects lands on mcprelay's loopback listener — the same path a real
browser takes. The listener holds its answer until the code exchange is done, so this call
returns the page the user would see; ``pages`` keeps it for tests that check what the page says.
"""

from __future__ import annotations

import httpx2

pages: list[tuple[int, str]] = []


def follow(url: str) -> bool:
    """``webbrowser.open``-compatible: returns True once the final page was received."""
    with httpx2.Client(follow_redirects=True, timeout=60) as client:
        response = client.get(url)
    pages.append((response.status_code, response.text))
    return True


if __name__ == "__main__":  # BROWSER="python -m mcprelay.testing.browser" for subprocess tests
    import sys

    follow(sys.argv[1])
