"""Logins that come to the person: the agent's client sends its user to the login page (URL-mode
elicitation), or a gateway at a desktop opens the browser itself.

Real parts throughout: the strict authorization server and protected MCP server of
``mcprelay.testing`` on real sockets, a real ``mcprelay serve`` process, the official Python SDK as the
agent's client, and the auto-consent browser stand-in where a person would click.
"""

from __future__ import annotations

import json
import os
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import mcp_types as types
import pytest
from mcp.client.client import Client
from mcp.client.stdio import StdioServerParameters

from mcprelay.testing import browser
from tests.conftest import Servers, log_events
from tests.integration.gateway_helpers import error_payload, text, write_config

pytestmark = [pytest.mark.anyio, pytest.mark.integration]


class Person:
    """An agent's client with URL-mode elicitation: it 'opens' the page (the browser stand-in follows it)."""

    def __init__(self) -> None:
        self.pages: list[str] = []
        self.completed: list[str] = []

    async def elicit(self, context: Any, params: types.ElicitRequestParams) -> types.ElicitResult:
        assert isinstance(params, types.ElicitRequestURLParams), params
        self.pages.append(params.url)
        await anyio.to_thread.run_sync(browser.follow, params.url)
        return types.ElicitResult(action="accept")

    async def on_message(self, message: Any) -> None:
        if isinstance(message, types.ElicitCompleteNotification):
            self.completed.append(message.params.elicitation_id)


def _gateway(home: Path, config: Path, **env: str) -> StdioServerParameters:
    return StdioServerParameters(
        command=sys.executable,
        args=["-m", "mcprelay", "--home", str(home), "--config", str(config), "serve", "--stdio"],
        env={**os.environ, "MCPRELAY_HEADLESS": "", **env},
    )


@pytest.mark.parametrize("mode", ["legacy", "auto"])
async def test_a_call_to_a_server_that_needs_a_login_sends_the_user_to_sign_in_then_succeeds(
    strict_servers: Callable[..., Servers], tmp_path: Path, mode: str
) -> None:
    servers = strict_servers(access_token_ttl=3600)
    home, config = tmp_path / "home", tmp_path / "config.json"
    write_config(config, {"b": {"url": servers.mcp_url}}, token_store="file", auto_login=False)
    person = Person()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        async with Client(_gateway(home, config), mode=mode, elicitation_callback=person.elicit,
                          message_handler=person.on_message) as client:
            # No login yet: the call brings the sign-in page to the agent's user, then goes through.
            with anyio.fail_after(60):
                assert text(await client.call_tool("b__echo", {"text": "first"})) == "first"
            assert len(person.pages) == 1 and servers.auth.counters.authorize_requests == 1
            if mode == "legacy":  # 2025-11-25: the completion is announced by the elicitation's id
                assert len(person.completed) == 1
            names = {t.name for t in (await client.list_tools()).tools}
            assert {"b__echo", "b__sleep"} <= names

            # The grant dies at the authorization server: the call that finds out brings the sign-in page
            # (or, if the supervisor noticed first, fails with the login error); the server's tools stay
            # listed, and a call after that goes through.
            servers.auth.revoke_all()
            with anyio.fail_after(60):
                outcome = await client.call_tool("b__echo", {"text": "revoked"})
            if outcome.is_error:
                assert error_payload(outcome)["error_type"] in ("login_required", "upstream_error")
            with anyio.fail_after(60):
                again = await client.call_tool("b__echo", {"text": "again"})
            assert not again.is_error, ("again", outcome.content, again.content, person.pages)
            assert len(person.pages) == 2
            assert "b__echo" in {t.name for t in (await client.list_tools()).tools}


async def test_a_client_without_url_elicitation_gets_the_structured_error_at_once(
    strict_servers: Callable[..., Servers], tmp_path: Path
) -> None:
    servers = strict_servers()
    home, config = tmp_path / "home", tmp_path / "config.json"
    write_config(config, {"b": {"url": servers.mcp_url}}, token_store="file", auto_login=False)
    async with Client(_gateway(home, config), mode="legacy") as client:
        with anyio.fail_after(20):
            payload = error_payload(await client.call_tool("b__echo", {"text": "x"}))
    assert payload["error_type"] == "login_required"
    assert servers.auth.counters.authorize_requests == 0


def _browser_script(tmp_path: Path, marker: Path) -> str:
    script = tmp_path / "browser.sh"
    script.write_text(
        f"#!/bin/sh\necho \"$1\" >> {marker}\nexec {sys.executable} -m mcprelay.testing.browser \"$1\"\n"
    )
    script.chmod(0o700)
    return str(script)


async def test_a_gateway_at_a_desktop_opens_the_browser_itself_and_the_tools_appear(
    strict_servers: Callable[..., Servers], tmp_path: Path
) -> None:
    servers = strict_servers()
    home, config = tmp_path / "home", tmp_path / "config.json"
    write_config(config, {"b": {"url": servers.mcp_url}}, token_store="file")
    marker = tmp_path / "opened.txt"
    changed = anyio.Event()

    async def on_message(message: Any) -> None:
        if isinstance(message, types.ToolListChangedNotification):
            changed.set()

    env = {"DISPLAY": ":99", "BROWSER": _browser_script(tmp_path, marker)}  # a desktop session
    async with Client(_gateway(home, config, **env), mode="legacy", message_handler=on_message) as client:
        with anyio.fail_after(60):
            while "b__echo" not in {t.name for t in (await client.list_tools()).tools}:
                await changed.wait()
                changed = anyio.Event()
        assert text(await client.call_tool("b__echo", {"text": "logged in by itself"})) == "logged in by itself"
    assert len(marker.read_text().splitlines()) == 1
    assert not any(line.startswith(("http://", "https://")) for line in marker.read_text().splitlines()), (
        "the browser got the authorization URL itself instead of the private page"
    )
    started = [e for e in log_events(home) if e.get("event") == "auto_login_started"]
    assert [e["server"] for e in started] == ["b"]


@pytest.mark.parametrize("setting", ["auto_login false", "headless", "no display"])
async def test_no_browser_opens_on_its_own_when_it_must_not(
    strict_servers: Callable[..., Servers], tmp_path: Path, setting: str
) -> None:
    servers = strict_servers()
    home, config = tmp_path / "home", tmp_path / "config.json"
    write_config(config, {"b": {"url": servers.mcp_url}}, token_store="file",
                 **({"auto_login": False} if setting == "auto_login false" else {}))
    marker = tmp_path / "opened.txt"
    env = {"BROWSER": _browser_script(tmp_path, marker)}
    if setting != "no display":
        env["DISPLAY"] = ":99"
    if setting == "headless":
        env["MCPRELAY_HEADLESS"] = "1"
    params = _gateway(home, config, **env)
    if setting == "no display":
        params.env = {k: v for k, v in (params.env or {}).items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    if setting == "headless":
        params.env = {**(params.env or {}), "MCPRELAY_HEADLESS": "1"}
    async with Client(params, mode="legacy") as client:
        deadline = time.monotonic() + 20
        while True:  # until the gateway has settled on login_required for b
            payload = error_payload(await client.call_tool("b__echo", {"text": "x"}))
            if payload["error_type"] == "login_required" or time.monotonic() > deadline:
                break
            await anyio.sleep(0.2)
        assert payload["error_type"] == "login_required"
        await anyio.sleep(2)  # time in which an automatic login would have opened the browser
    assert not marker.exists()
    assert servers.auth.counters.authorize_requests == 0
    assert not [e for e in log_events(home) if e.get("event") == "auto_login_started"]
    json.dumps(payload)  # the structured error is plain JSON
