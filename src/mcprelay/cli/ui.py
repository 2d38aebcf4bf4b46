"""``mcprelay ui [--no-browser]``: open the running gateway's page in the browser, without the key.

The page sits behind the listener's key, which must never reach a browser's address bar or history.
So this command — which can read the key — asks the gateway for a one-time link (``POST
/api/v1/ui/links``: good for one use within a minute) and hands that to the browser; opening it sets
the page's session cookie (see ``gateway/serving/browsersession.py``).

The browser is started with Python's ``webbrowser`` (``BROWSER`` picks the program, as for logins),
and like a login it gets the ``file://`` URL of a private page (``0600`` under ``<home>/run/``) that
forwards to the link, so the link never appears in a process list where another local user could
use it first. The command waits until the link was used (or expired), then removes that page.
``--no-browser`` (or ``MCPRELAY_HEADLESS=1``) prints the link instead.
"""

from __future__ import annotations

import sys
import time
import webbrowser
from typing import Annotated

import typer

from mcprelay.cli.gatewayapi import call_gateway, raise_for, running_gateway
from mcprelay.cli.runtime import Runtime, get_runtime
from mcprelay.desktop import headless_requested
from mcprelay.errors import ErrorType, McpRelayError
from mcprelay.oauth.handoff import LoginPage

#: How often the command asks whether the browser has used the link.
POLL = 0.25


def ui(
    ctx: typer.Context,
    no_browser: Annotated[
        bool, typer.Option("--no-browser", help="Print the one-time link instead of opening a browser.")
    ] = False,
) -> None:
    """Open the gateway's web page: servers, logins, tools, activity.

    The page shows every server, its login and tools, the held tools and the activity log, live.
    """
    runtime = get_runtime(ctx)
    base = running_gateway(runtime)
    answer = call_gateway(runtime, "POST", "/ui/links", base=base) if base else None
    if answer is None:
        raise McpRelayError(
            ErrorType.USAGE_ERROR,
            f"no gateway with a listener is running for the home {runtime.home}",
            suggestion="start one with `mcprelay serve --listen 127.0.0.1:8080` (with the same --home), "
            "then run `mcprelay ui` again",
        )
    status, data = answer
    raise_for(status, data, "the gateway refused a link for its page")
    link, link_id, page = str(data["url"]), str(data["link_id"]), str(data["page"])
    if no_browser or headless_requested(False):
        print(f"open this link in your browser within a minute (it works once) to reach {page}:", file=sys.stderr)
        print(link, flush=True)
        return
    with LoginPage(link, server="the gateway's page", parent=runtime.home / "run") as handoff:
        try:
            opened = webbrowser.open(handoff.file_url)
        except Exception:  # a broken BROWSER setting: print the link instead
            opened = False
        if not opened:
            print("no browser could be started; open this link within a minute (it works once):", file=sys.stderr)
            print(link, flush=True)
        else:
            print(f"opening {page} in your browser…", file=sys.stderr, flush=True)
        used = _wait_until_used(runtime, base, link_id, float(data["expires_at"]))
    if used:
        print(f"the page is open: {page}", file=sys.stderr)
    elif opened:
        raise McpRelayError(
            ErrorType.USAGE_ERROR, "the browser did not open the link within a minute; it has expired",
            suggestion="run `mcprelay ui --no-browser` and open the printed link yourself",
        )


def _wait_until_used(runtime: Runtime, base: str | None, link_id: str, expires_at: float) -> bool:
    while time.time() < expires_at + 1:
        answer = call_gateway(runtime, "GET", f"/ui/links/{link_id}", base=base)
        if answer is None or answer[0] >= 400:
            return False
        if answer[1].get("used"):
            return True
        if answer[1].get("expired"):
            return False
        time.sleep(POLL)
    return False
