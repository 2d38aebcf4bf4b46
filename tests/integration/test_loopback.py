"""The loopback listener over real sockets and real HTTP: bind policy, held pages, callback checks.

Each test stands for a failure seen in the field: a cached port the OS refuses, a configured port
someone else holds, a callback from an old tab answered with a misleading CSRF page, a text
browser blocking while the callback must still be served.
"""

from __future__ import annotations

import asyncio
import errno
import json
import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx2
import pytest

from mcprelay.errors import ErrorType, McpRelayError
from mcprelay.oauth.rfc8252 import (
    NO_LOGIN_MESSAGE,
    LoopbackListener,
    acquire_listener,
    default_bind,
    errno_code,
)
from tests.conftest import events

pytestmark = pytest.mark.integration

ISSUER = "https://as.example"
STATE = "state-0123456789"




@pytest.fixture
def busy_port() -> Iterator[int]:
    """A port another "program" is listening on, as in the field report."""
    holder = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    holder.bind(("127.0.0.1", 0))
    holder.listen(1)
    try:
        yield int(holder.getsockname()[1])
    finally:
        holder.close()


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def get(url: str) -> httpx2.Response:
    async with httpx2.AsyncClient(timeout=10) as client:
        return await client.get(url)


# -- binding ----------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_port_zero_gives_a_real_port_and_the_matching_redirect_uri() -> None:
    async with await LoopbackListener.open() as listener:
        assert listener.port > 0
        assert listener.redirect_uri == f"http://127.0.0.1:{listener.port}/callback"
        response = await get(f"http://127.0.0.1:{listener.port}/elsewhere")
        assert response.status_code == 404


@pytest.mark.anyio
async def test_listener_releases_its_port_on_close() -> None:
    listener = await LoopbackListener.open()
    port = listener.port
    await listener.aclose()
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        assert probe.connect_ex(("127.0.0.1", port)) != 0


@pytest.mark.anyio
async def test_configured_port_that_is_busy_fails_at_once_naming_the_key(busy_port: int, log_file: Path) -> None:
    started = time.monotonic()
    with pytest.raises(McpRelayError) as info:
        await acquire_listener(server="srv", correlation_id="cid1", configured_port=busy_port)
    assert time.monotonic() - started < 5
    err = info.value
    assert err.error_type is ErrorType.CALLBACK_PORT_IN_USE
    for fragment in ("127.0.0.1", str(busy_port), "EADDRINUSE", f"errno {errno.EADDRINUSE}",
                     "mcpServers[].oauth.callback_port"):
        assert fragment in err.message
    assert "free port" in err.suggestion and err.server == "srv" and err.correlation_id == "cid1"
    assert err.details["code"] == "EADDRINUSE" and err.details["port"] == busy_port
    (logged,) = events(log_file, "callback_bind_failed")
    assert logged["server"] == "srv" and logged["correlation_id"] == "cid1"
    assert logged["address"] == "127.0.0.1" and logged["port"] == busy_port
    assert logged["errno"] == errno.EADDRINUSE and logged["level"] == "warning"


@pytest.mark.anyio
async def test_bind_failure_log_carries_the_errno_name(busy_port: int, log_file: Path) -> None:
    """The README's contract: ``"code": "EADDRINUSE"`` in the log line, the name people search for."""
    listener, _ = await acquire_listener(
        server="srv", correlation_id="c", cached_redirect_uri=f"http://127.0.0.1:{busy_port}/callback"
    )
    await listener.aclose()
    (logged,) = events(log_file, "callback_bind_failed")
    assert logged["code"] == "EADDRINUSE"


@pytest.mark.anyio
async def test_configured_redirect_uri_that_is_busy_fails_the_same_way(busy_port: int) -> None:
    with pytest.raises(McpRelayError) as info:
        await acquire_listener(
            server="srv", correlation_id="c", configured_redirect_uri=f"http://localhost:{busy_port}/cb"
        )
    assert info.value.error_type is ErrorType.CALLBACK_PORT_IN_USE
    assert "mcpServers[].oauth.callback_port" in info.value.message
    assert "mcpServers[].oauth.redirect_uri" in info.value.message


@pytest.mark.anyio
async def test_configured_redirect_uri_is_kept_verbatim() -> None:
    port = free_port()
    uri = f"http://localhost:{port}/oauth/cb"
    listener, usable = await acquire_listener(
        server="srv", correlation_id="c", configured_redirect_uri=uri, cached_redirect_uri=uri
    )
    async with listener:
        assert listener.redirect_uri == uri and listener.port == port and usable
        assert listener.address == "127.0.0.1"
        listener.expect(state=STATE, issuer=ISSUER, iss_supported=False)
        task = asyncio.create_task(get(f"http://127.0.0.1:{port}/oauth/cb?code=c1&state={STATE}"))
        assert (await listener.wait(5)).code == "c1"
        listener.finish(True, "ok")
        assert (await task).status_code == 200


@pytest.mark.anyio
async def test_configured_port_disowns_a_cached_registration_for_another_uri() -> None:
    port = free_port()
    listener, usable = await acquire_listener(
        server="srv", correlation_id="c", configured_port=port,
        cached_redirect_uri=f"http://127.0.0.1:{free_port()}/callback",
    )
    async with listener:
        assert listener.port == port and listener.redirect_uri == f"http://127.0.0.1:{port}/callback"
        assert usable is False


@pytest.mark.anyio
async def test_cached_port_that_is_busy_heals_on_a_new_port(busy_port: int, log_file: Path) -> None:
    cached = f"http://127.0.0.1:{busy_port}/callback"
    listener, usable = await acquire_listener(server="srv", correlation_id="cid2", cached_redirect_uri=cached)
    async with listener:
        assert usable is False
        assert listener.port not in (0, busy_port)
        assert listener.redirect_uri == f"http://127.0.0.1:{listener.port}/callback"
    (logged,) = events(log_file, "callback_bind_failed")
    assert logged["server"] == "srv" and logged["correlation_id"] == "cid2" and logged["level"] == "warning"
    assert logged["address"] == "127.0.0.1" and logged["port"] == busy_port
    assert logged["errno"] == errno.EADDRINUSE


@pytest.mark.anyio
async def test_cached_port_that_is_free_is_reused() -> None:
    cached = f"http://127.0.0.1:{free_port()}/callback"
    listener, usable = await acquire_listener(server="srv", correlation_id="c", cached_redirect_uri=cached)
    async with listener:
        assert usable is True and listener.redirect_uri == cached


@pytest.mark.parametrize("holder_reuseaddr", [False, True])
def test_default_bind_refuses_a_port_another_socket_listens_on(holder_reuseaddr: bool) -> None:
    """SO_REUSEADDR on both sides (uvicorn sets it too) must still not let us share a listening port."""
    holder = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if holder_reuseaddr and os.name == "posix":
        holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    holder.bind(("127.0.0.1", 0))
    holder.listen(1)
    try:
        with pytest.raises(OSError) as info:
            default_bind("127.0.0.1", holder.getsockname()[1]).close()
        assert errno_code(info.value) == "EADDRINUSE"
    finally:
        holder.close()


def test_default_bind_refuses_a_port_held_on_the_wildcard_address() -> None:
    holder = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    holder.bind(("0.0.0.0", 0))
    holder.listen(1)
    try:
        port = holder.getsockname()[1]
        if os.name == "posix" and not hasattr(socket, "SO_EXCLUSIVEADDRUSE") and os.uname().sysname != "Linux":
            pytest.skip("the BSDs allow a specific address next to a wildcard listener")
        with pytest.raises(OSError):
            default_bind("127.0.0.1", port).close()
    finally:
        holder.close()


@pytest.mark.skipif(os.name != "posix", reason="SO_REUSEADDR semantics of POSIX")
def test_default_bind_reuses_a_port_in_time_wait() -> None:
    """An earlier login's port, its connection closed by us first, must be bindable again."""
    server = default_bind("127.0.0.1", 0)
    server.listen(1)
    port = server.getsockname()[1]
    client = socket.create_connection(("127.0.0.1", port), timeout=2)
    accepted, _ = server.accept()
    accepted.close()  # the server side closes first: its end of the connection goes to TIME_WAIT
    client.recv(1)
    client.close()
    server.close()
    time.sleep(0.05)
    again = default_bind("127.0.0.1", port)
    again.listen(1)
    again.close()


# -- callbacks --------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_valid_callback_page_is_held_until_finish() -> None:
    async with await LoopbackListener.open() as listener:
        listener.expect(state=STATE, issuer=ISSUER, iss_supported=True)
        browser = asyncio.create_task(
            get(f"{listener.redirect_uri}?code=the-code&state={STATE}&iss=https%3A%2F%2Fas.example")
        )
        result = await listener.wait(5)
        assert result.code == "the-code" and result.iss == ISSUER
        await asyncio.sleep(0.2)
        assert not browser.done(), "the page must wait for the code exchange"
        listener.finish(True, "Logged in to <srv>. You can close this tab.")
        response = await asyncio.wait_for(browser, 5)
    assert response.status_code == 200
    assert "Logged in to &lt;srv&gt;" in response.text and "<srv>" not in response.text
    assert response.headers["cache-control"] == "no-store"


@pytest.mark.anyio
async def test_failed_exchange_is_not_reported_as_success() -> None:
    async with await LoopbackListener.open() as listener:
        listener.expect(state=STATE, issuer=ISSUER, iss_supported=False)
        browser = asyncio.create_task(get(f"{listener.redirect_uri}?code=c&state={STATE}"))
        await listener.wait(5)
        listener.finish(False, "The authorization server refused the code: invalid_grant.")
        response = await asyncio.wait_for(browser, 5)
    assert response.status_code == 400
    assert "refused the code" in response.text and "Logged in" not in response.text


@pytest.mark.anyio
async def test_closing_without_finish_sends_an_honest_page() -> None:
    listener = await LoopbackListener.open()
    listener.expect(state=STATE, issuer=ISSUER, iss_supported=False)
    browser = asyncio.create_task(get(f"{listener.redirect_uri}?code=c&state={STATE}"))
    await listener.wait(5)
    await listener.aclose()
    response = await asyncio.wait_for(browser, 5)
    assert "did not complete" in response.text and "Logged in" not in response.text


@pytest.mark.anyio
async def test_unknown_state_says_so_and_the_right_callback_still_works(log_file: Path) -> None:
    async with await LoopbackListener.open() as listener:
        listener.expect(state=STATE, issuer=ISSUER, iss_supported=False)
        wrong = await get(f"{listener.redirect_uri}?code=old&state=from-an-old-tab")
        assert wrong.status_code == 400
        assert NO_LOGIN_MESSAGE in wrong.text
        assert "This callback belongs to no login in progress in this mcprelay process" in wrong.text
        assert "old browser tab" in wrong.text and "CSRF" not in wrong.text
        browser = asyncio.create_task(get(f"{listener.redirect_uri}?code=new&state={STATE}"))
        assert (await listener.wait(5)).code == "new"
        listener.finish(True, "done")
        assert (await browser).status_code == 200
        assert listener.unknown_state_callbacks == 1
    (logged,) = events(log_file, "callback_unknown_state")
    assert "from-an-old-tab" not in json.dumps(logged) and logged["has_code"] is True


@pytest.mark.anyio
async def test_callback_without_state_or_before_expect_belongs_to_no_login() -> None:
    async with await LoopbackListener.open() as listener:
        early = await get(f"{listener.redirect_uri}?code=c&state={STATE}")
        assert early.status_code == 400 and NO_LOGIN_MESSAGE in early.text
        listener.expect(state=STATE, issuer=ISSUER, iss_supported=False)
        stateless = await get(f"{listener.redirect_uri}?code=c")
        assert stateless.status_code == 400 and NO_LOGIN_MESSAGE in stateless.text


@pytest.mark.anyio
async def test_timeout_after_unknown_state_is_state_mismatch() -> None:
    async with await LoopbackListener.open() as listener:
        listener.expect(state=STATE, issuer=ISSUER, iss_supported=False)
        await get(f"{listener.redirect_uri}?code=c&state=nope")
        with pytest.raises(McpRelayError) as info:
            await listener.wait(0.3)
    err = info.value
    assert err.error_type is ErrorType.STATE_MISMATCH
    assert "matched no login" in err.message and err.details["unknown_state_callbacks"] == 1


@pytest.mark.anyio
async def test_plain_timeout_is_login_timeout() -> None:
    async with await LoopbackListener.open(server="srv") as listener:
        listener.expect(state=STATE, issuer=ISSUER, iss_supported=False)
        started = time.monotonic()
        with pytest.raises(McpRelayError) as info:
            await listener.wait(0.2)
        assert time.monotonic() - started < 3
    assert info.value.error_type is ErrorType.LOGIN_TIMEOUT
    assert listener.redirect_uri in info.value.message and info.value.server == "srv"


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("iss_supported", "query_iss"),
    [(True, None), (True, "https%3A%2F%2Fevil.example"), (False, "https%3A%2F%2Fevil.example")],
)
async def test_iss_missing_or_different_fails_the_login(iss_supported: bool, query_iss: str | None) -> None:
    async with await LoopbackListener.open() as listener:
        listener.expect(state=STATE, issuer=ISSUER, iss_supported=iss_supported)
        extra = f"&iss={query_iss}" if query_iss else ""
        page = await get(f"{listener.redirect_uri}?code=c&state={STATE}{extra}")
        with pytest.raises(McpRelayError) as info:
            await listener.wait(5)
    assert info.value.error_type is ErrorType.CODE_FLOW_FAILED and "RFC 9207" in info.value.message
    assert page.status_code == 400 and "expected authorization server" in page.text


@pytest.mark.anyio
async def test_matching_iss_without_advertisement_is_accepted() -> None:
    async with await LoopbackListener.open() as listener:
        listener.expect(state=STATE, issuer=ISSUER, iss_supported=False)
        browser = asyncio.create_task(get(f"{listener.redirect_uri}?code=c&state={STATE}&iss={ISSUER}"))
        assert (await listener.wait(5)).iss == ISSUER
        listener.finish(True, "ok")
        await browser


@pytest.mark.anyio
async def test_access_denied() -> None:
    async with await LoopbackListener.open() as listener:
        listener.expect(state=STATE, issuer=ISSUER, iss_supported=True)
        page = await get(
            f"{listener.redirect_uri}?error=access_denied&error_description=User+said+no&state={STATE}&iss={ISSUER}"
        )
        with pytest.raises(McpRelayError) as info:
            await listener.wait(5)
    assert info.value.error_type is ErrorType.ACCESS_DENIED and "User said no" in info.value.message
    assert "denied" in page.text


@pytest.mark.anyio
async def test_other_errors_are_code_flow_failed_sanitised_and_escaped() -> None:
    async with await LoopbackListener.open() as listener:
        listener.expect(state=STATE, issuer=ISSUER, iss_supported=False)
        hostile = "%3Cscript%3Ealert(1)%3C%2Fscript%3E%0A" + "x" * 2000
        page = await get(f"{listener.redirect_uri}?error=server_error&error_description={hostile}&state={STATE}")
        with pytest.raises(McpRelayError) as info:
            await listener.wait(5)
    err = info.value
    assert err.error_type is ErrorType.CODE_FLOW_FAILED and "server_error" in err.message
    assert len(err.details["error_description"]) < 400 and "\n" not in err.details["error_description"]
    assert "<script>" not in page.text and "&lt;script&gt;" in page.text


@pytest.mark.anyio
async def test_state_is_single_use() -> None:
    async with await LoopbackListener.open() as listener:
        listener.expect(state=STATE, issuer=ISSUER, iss_supported=False)
        url = f"{listener.redirect_uri}?code=c&state={STATE}"
        first = asyncio.create_task(get(url))
        await listener.wait(5)
        second = await get(url)
        assert second.status_code == 400 and NO_LOGIN_MESSAGE in second.text
        listener.finish(True, "ok")
        assert (await first).status_code == 200


@pytest.mark.anyio
async def test_other_paths_methods_and_malformed_requests() -> None:
    async with await LoopbackListener.open() as listener:
        base = f"http://127.0.0.1:{listener.port}"
        assert (await get(f"{base}/favicon.ico")).status_code == 404
        assert (await get(f"{base}/")).status_code == 404
        async with httpx2.AsyncClient(timeout=10) as client:
            post = await client.post(listener.redirect_uri, content=b"")
        assert post.status_code == 405 and post.headers["allow"] == "GET"
        dup = await get(f"{listener.redirect_uri}?state=a&state=b&code=c")
        assert dup.status_code == 400
        assert listener.unknown_state_callbacks == 0

        reader, writer = await asyncio.open_connection("127.0.0.1", listener.port)
        writer.write(b"GET /callback?" + b"a" * 40000 + b" HTTP/1.1\r\n\r\n")
        await writer.drain()
        status = await asyncio.wait_for(reader.readline(), 5)
        assert status.startswith(b"HTTP/1.1 431")
        writer.close()

        reader, writer = await asyncio.open_connection("127.0.0.1", listener.port)
        writer.write(b"NONSENSE\r\n\r\n")
        await writer.drain()
        assert (await asyncio.wait_for(reader.readline(), 5)).startswith(b"HTTP/1.1 400")
        writer.close()


@pytest.mark.anyio
async def test_an_idle_connection_does_not_block_the_callback() -> None:
    async with await LoopbackListener.open() as listener:
        _, idle = await asyncio.open_connection("127.0.0.1", listener.port)  # a browser preconnect
        listener.expect(state=STATE, issuer=ISSUER, iss_supported=False)
        browser = asyncio.create_task(get(f"{listener.redirect_uri}?code=c&state={STATE}"))
        assert (await listener.wait(5)).code == "c"
        listener.finish(True, "ok")
        assert (await browser).status_code == 200
        idle.close()


@pytest.mark.anyio
async def test_callback_is_served_while_a_text_browser_blocks_its_thread() -> None:
    """Like w3m or lynx launched by ``webbrowser``: a thread blocked in a GET until the page arrives."""
    async with await LoopbackListener.open() as listener:
        listener.expect(state=STATE, issuer=ISSUER, iss_supported=False)
        pages: list[httpx2.Response] = []
        url = f"{listener.redirect_uri}?code=from-text-browser&state={STATE}"
        browser = threading.Thread(target=lambda: pages.append(httpx2.get(url, timeout=10)), daemon=True)
        browser.start()
        result = await listener.wait(5)
        assert result.code == "from-text-browser"
        assert browser.is_alive() and not pages
        listener.finish(True, "Logged in.")
        await asyncio.to_thread(browser.join, 10)
    assert pages and pages[0].status_code == 200 and "Logged in." in pages[0].text
