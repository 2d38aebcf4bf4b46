"""The loopback listener's policy without HTTP: errno names, URI parsing, injected bind failures, pasted URLs.

Bind failures that a test machine cannot produce on demand (EACCES from a Windows excluded port
range) are injected through the ``bind`` hook; the fallback bind is real, on port 0.
"""

from __future__ import annotations

import errno
import socket
from pathlib import Path
from typing import Any

import pytest

from mcprelay.errors import ErrorType, McpRelayError
from mcprelay.oauth.rfc8252 import (
    CallbackResult,
    LoopbackListener,
    LoopbackRedirect,
    acquire_listener,
    default_bind,
    errno_code,
    parse_loopback_redirect,
    render_page,
)
from tests.conftest import events

ISSUER = "https://as.example"
STATE = "s-0123456789abcdef"




def refusing(port: int, err: int = errno.EACCES) -> Any:
    """A bind hook that refuses one port the way the OS would, and binds every other one for real."""
    calls: list[tuple[str, int]] = []

    def bind(address: str, p: int) -> socket.socket:
        calls.append((address, p))
        if p == port:
            raise OSError(err, "refused by the test")
        return default_bind(address, p)

    bind.calls = calls  # type: ignore[attr-defined]
    return bind


# -- helpers ----------------------------------------------------------------------------------


def test_errno_code_names() -> None:
    assert errno_code(OSError(errno.EACCES, "x")) == "EACCES"
    assert errno_code(OSError(errno.EADDRINUSE, "x")) == "EADDRINUSE"
    assert errno_code(OSError("no errno")) == "UNKNOWN"
    assert errno_code(OSError(987654, "x")) == "ERRNO_987654"
    windows = OSError(10013, "An attempt was made to access a socket in a way forbidden")
    windows.winerror = 10013  # type: ignore[attr-defined]
    assert errno_code(windows) == "EACCES"


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("http://127.0.0.1:8765/callback", LoopbackRedirect("127.0.0.1", 8765, "/callback")),
        ("http://localhost:9000/cb", LoopbackRedirect("localhost", 9000, "/cb")),
        ("http://[::1]:9000", LoopbackRedirect("::1", 9000, "/")),
        ("https://127.0.0.1:8765/callback", None),
        ("http://127.0.0.1/callback", None),
        ("http://example.com:8765/callback", None),
        ("http://127.0.0.1:99999/callback", None),
        ("http://127.0.0.1:8765/callback?x=1", None),
        ("not a url", None),
    ],
)
def test_parse_loopback_redirect(uri: str, expected: LoopbackRedirect | None) -> None:
    assert parse_loopback_redirect(uri) == expected


def test_loopback_redirect_listens_on_the_loopback_literal() -> None:
    assert LoopbackRedirect("localhost", 1, "/").listen_address == "127.0.0.1"
    assert LoopbackRedirect("::1", 1, "/").listen_address == "::1"
    assert LoopbackRedirect("::1", 5, "/cb").uri(7) == "http://[::1]:7/cb"


def test_callback_result_hides_the_code() -> None:
    result = CallbackResult(code="secret-code-xyz", iss=ISSUER)
    assert "secret-code-xyz" not in repr(result) and ISSUER in repr(result)


def test_page_escapes_everything() -> None:
    page = render_page("<t>", "a <b>&</b>", "<script>x</script>")
    assert "<b>" not in page and "<script>" not in page and "&lt;t&gt;" in page


@pytest.mark.anyio
async def test_open_refuses_non_loopback_hosts() -> None:
    with pytest.raises(ValueError):
        await LoopbackListener.open(host="0.0.0.0")
    with pytest.raises(ValueError):
        await LoopbackListener.open(path="callback")


# -- bind policy with injected failures -------------------------------------------------------


@pytest.mark.anyio
async def test_cached_port_refused_with_eacces_heals(log_file: Path) -> None:
    bind = refusing(50123)
    listener, usable = await acquire_listener(
        server="srv", correlation_id="cid", cached_redirect_uri="http://127.0.0.1:50123/callback", bind=bind
    )
    async with listener:
        assert usable is False and listener.port not in (0, 50123)
        assert listener.redirect_uri == f"http://127.0.0.1:{listener.port}/callback"
    assert bind.calls == [("127.0.0.1", 50123), ("127.0.0.1", 0)]
    (logged,) = events(log_file, "callback_bind_failed")
    assert logged["server"] == "srv" and logged["correlation_id"] == "cid" and logged["level"] == "warning"
    assert logged["address"] == "127.0.0.1" and logged["port"] == 50123 and logged["errno"] == errno.EACCES
    assert logged["code"] == "EACCES"


@pytest.mark.anyio
async def test_configured_port_refused_with_eacces_is_callback_bind_failed(log_file: Path) -> None:
    with pytest.raises(McpRelayError) as info:
        await acquire_listener(server="srv", correlation_id="cid", configured_port=50124, bind=refusing(50124))
    err = info.value
    assert err.error_type is ErrorType.CALLBACK_BIND_FAILED
    for fragment in ("127.0.0.1:50124", "EACCES", f"errno {errno.EACCES}", "mcpServers[].oauth.callback_port"):
        assert fragment in err.message
    assert err.details == {
        "address": "127.0.0.1", "port": 50124, "errno": errno.EACCES, "code": "EACCES",
        "config_key": "mcpServers[].oauth.callback_port",
    }
    assert len(events(log_file, "callback_bind_failed")) == 1


@pytest.mark.anyio
async def test_configured_port_in_use_is_callback_port_in_use() -> None:
    with pytest.raises(McpRelayError) as info:
        await acquire_listener(
            server="srv", correlation_id="c", configured_port=50125, bind=refusing(50125, errno.EADDRINUSE)
        )
    assert info.value.error_type is ErrorType.CALLBACK_PORT_IN_USE
    assert "already listening" in info.value.message


@pytest.mark.anyio
async def test_no_port_at_all_is_callback_bind_failed() -> None:
    def never(address: str, port: int) -> socket.socket:
        raise OSError(errno.EADDRNOTAVAIL, "no loopback")

    with pytest.raises(McpRelayError) as info:
        await acquire_listener(server="srv", correlation_id="c", bind=never)
    assert info.value.error_type is ErrorType.CALLBACK_BIND_FAILED and "EADDRNOTAVAIL" in info.value.message


@pytest.mark.anyio
async def test_unparseable_cached_uri_just_binds_a_fresh_port() -> None:
    listener, usable = await acquire_listener(
        server="srv", correlation_id="c", cached_redirect_uri="https://app.example/callback"
    )
    async with listener:
        assert usable is False and listener.port > 0


@pytest.mark.anyio
async def test_non_loopback_configured_uri_is_a_config_error() -> None:
    with pytest.raises(McpRelayError) as info:
        await acquire_listener(
            server="srv", correlation_id="c", configured_redirect_uri="http://example.com:8000/callback"
        )
    assert info.value.error_type is ErrorType.CONFIG_INVALID


# -- pasted redirect URLs ---------------------------------------------------------------------


@pytest.mark.anyio
async def test_pasted_url_delivers_the_code() -> None:
    async with await LoopbackListener.open() as listener:
        listener.expect(state=STATE, issuer=ISSUER, iss_supported=True)
        listener.submit_redirect_url(f"  {listener.redirect_uri}?code=pasted&state={STATE}&iss={ISSUER}\n")
        result = await listener.wait(1)
        assert result.code == "pasted" and result.iss == ISSUER
        listener.finish(True, "ok")  # nothing is held for a pasted URL; finish is still harmless


@pytest.mark.anyio
@pytest.mark.parametrize(
    "url",
    [
        "",
        "hello",
        "http://127.0.0.1:1/elsewhere?code=c&state=" + STATE,
        "{base}?code=c",
        "{base}?state=" + STATE,
        "{base}?code=c&state=wrong",
        "{base}?code=c&state=a&state=b",
    ],
)
async def test_wrong_pasted_urls_are_refused_and_change_nothing(url: str) -> None:
    async with await LoopbackListener.open() as listener:
        listener.expect(state=STATE, issuer=ISSUER, iss_supported=False)
        with pytest.raises(McpRelayError):
            listener.submit_redirect_url(url.format(base=listener.redirect_uri))
        # the login is still open: the right URL works afterwards
        listener.submit_redirect_url(f"{listener.redirect_uri}?code=good&state={STATE}")
        assert (await listener.wait(1)).code == "good"


@pytest.mark.anyio
async def test_pasted_url_with_unknown_state_says_no_login() -> None:
    async with await LoopbackListener.open() as listener:
        listener.expect(state=STATE, issuer=ISSUER, iss_supported=False)
        with pytest.raises(McpRelayError) as info:
            listener.submit_redirect_url(f"{listener.redirect_uri}?code=c&state=other")
        assert info.value.error_type is ErrorType.STATE_MISMATCH
        assert "no login in progress in this mcprelay process" in info.value.message


@pytest.mark.anyio
async def test_pasted_error_response_is_delivered_to_wait() -> None:
    async with await LoopbackListener.open() as listener:
        listener.expect(state=STATE, issuer=ISSUER, iss_supported=False)
        listener.submit_redirect_url(f"{listener.redirect_uri}?error=access_denied&state={STATE}")
        with pytest.raises(McpRelayError) as info:
            await listener.wait(1)
        assert info.value.error_type is ErrorType.ACCESS_DENIED


@pytest.mark.anyio
async def test_pasted_state_is_single_use() -> None:
    async with await LoopbackListener.open() as listener:
        listener.expect(state=STATE, issuer=ISSUER, iss_supported=False)
        url = f"{listener.redirect_uri}?code=c&state={STATE}"
        listener.submit_redirect_url(url)
        with pytest.raises(McpRelayError) as info:
            listener.submit_redirect_url(url)
        assert info.value.error_type is ErrorType.STATE_MISMATCH


@pytest.mark.anyio
async def test_unicode_state_does_not_crash_the_comparison() -> None:
    async with await LoopbackListener.open() as listener:
        listener.expect(state=STATE, issuer=ISSUER, iss_supported=False)
        with pytest.raises(McpRelayError):
            listener.submit_redirect_url(f"{listener.redirect_uri}?code=c&state=%C3%A9t%C3%A9")
        assert listener.unknown_state_callbacks == 1
