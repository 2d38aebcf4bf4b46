"""Whether a person is here to see a browser: the headless switches, and a graphical session.

Logins need a browser. A command run in a terminal asks the person (or prints the URL with
``--headless``); a gateway running in the background may open the browser on its own only when it
runs in someone's desktop session — never in headless mode, in a container, over SSH without a
display, or as a service.
"""

from __future__ import annotations

import os
import sys

_TRUE = {"1", "true", "yes"}


def headless_requested(flag: bool = False) -> bool:
    """``--headless``, ``MCPRELAY_HEADLESS=1`` or ``HEADLESS=true``: print the URL, never open a browser."""
    return (
        flag
        or os.environ.get("MCPRELAY_HEADLESS", "").lower() in _TRUE
        or os.environ.get("HEADLESS", "").lower() in _TRUE
    )


def at_desktop() -> bool:
    """Whether this process runs in a graphical session a browser window can open in.

    macOS and Windows: a process started by a desktop client runs in the user's session (a service
    or an SSH login without a display is the exception, and there ``headless`` is the switch). Linux
    and the BSDs: only with an X11 or Wayland display. ``BROWSER`` alone does not count: under
    ``serve --stdio`` a terminal browser would have no terminal to draw on.
    """
    if headless_requested():
        return False
    if sys.platform in ("darwin", "win32"):
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))
