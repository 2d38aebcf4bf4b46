"""Handing the authorization URL to the browser without putting it in any process's argv.

The browser program named by ``BROWSER`` (or the platform's opener) is started with the URL as its
argument, and argv is readable by every local user (``ps``, ``/proc/*/cmdline``). A user who reads
the authorization request (client id, redirect URI, PKCE challenge, ``state``) can log in to their
*own* account with it and deliver their code to our loopback listener: the victim's agent then
works in the attacker's account (authorization code injection).

So the browser gets the ``file://`` URL of a page that only this user can read — a 0600 file in a
0700 directory under the mcprelay home — which sends it on to the authorization URL (a meta refresh,
and a link for browsers that ignore it). The page is removed once the login is over. With PAR the
URL it points to carries no ``state`` or challenge either.

On Windows the directory inherits the user profile's ACL (private to the user); POSIX modes are set
where they mean something.
"""

from __future__ import annotations

import contextlib
import html
import os
import shutil
import tempfile
from pathlib import Path

_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="referrer" content="no-referrer">
<meta http-equiv="refresh" content="0;url={url}">
<title>mcprelay: log in to {server}</title></head>
<body><p>Continuing to the login page of {server}&hellip; If nothing happens,
<a id="continue" href="{url}">continue here</a>.</p></body></html>
"""


class LoginPage:
    """A private page that forwards to one authorization URL; use as a context manager."""

    def __init__(self, url: str, *, server: str, parent: Path | None) -> None:
        self._url = url
        self._server = server
        self._parent = parent
        self._dir: Path | None = None
        self.path: Path | None = None

    def __enter__(self) -> LoginPage:
        parent = self._parent
        if parent is not None:
            parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        # mkdtemp creates the directory 0700, with a name nobody can guess.
        self._dir = Path(tempfile.mkdtemp(prefix="login-", dir=str(parent) if parent is not None else None))
        path = self._dir / "continue.html"
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
        fd = os.open(path, flags, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(_PAGE.format(url=html.escape(self._url, quote=True), server=html.escape(self._server)))
        self.path = path
        return self

    @property
    def file_url(self) -> str:
        assert self.path is not None
        return self.path.as_uri()

    def __exit__(self, *exc: object) -> None:
        if self._dir is not None:
            with contextlib.suppress(OSError):
                shutil.rmtree(self._dir)
            self._dir = None
