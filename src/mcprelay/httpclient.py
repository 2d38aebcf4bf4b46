"""The one way mcprelay builds HTTP clients: bounded timeouts, no redirects followed implicitly."""

from __future__ import annotations

import httpx2

from mcprelay import __version__

USER_AGENT = f"mcprelay/{__version__}"


def new_http_client(*, timeout: float = 30.0, auth: httpx2.Auth | None = None) -> httpx2.AsyncClient:
    return httpx2.AsyncClient(
        timeout=httpx2.Timeout(timeout, connect=10.0),
        headers={"User-Agent": USER_AGENT},
        follow_redirects=False,
        auth=auth,
    )
