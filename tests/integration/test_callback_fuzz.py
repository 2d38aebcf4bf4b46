"""Bounded fuzzing of the loopback callback (``oauth/rfc8252.py``): whatever reaches the listener's socket or the
paste prompt, the answer is an HTTP response or a clear error, never an exception, and a login in progress is
neither completed nor broken by it (issue 10: callback parsing in the fuzzing).

Each example is real: a listener bound on 127.0.0.1 port 0, a TCP connection, the bytes, the answer read back.
"""

from __future__ import annotations

import asyncio
import socket
from typing import Any
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mcprelay.errors import ErrorType, McpRelayError
from mcprelay.oauth.rfc8252 import LoopbackListener, parse_loopback_redirect

pytestmark = pytest.mark.integration

STATE = "s-fuzz-0123456789abcdefghijklmnop"  # the login's state: hypothesis does not guess it
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
STATUSES = {b"200", b"400", b"404", b"405", b"431"}

_text = st.text(alphabet=st.characters(codec="utf-8"), max_size=40)
_params = st.dictionaries(
    st.sampled_from(["code", "state", "error", "error_description", "iss", "x", ""]) | _text,
    _text | st.just(STATE),
    max_size=5,
)


def _query(params: dict[str, str], extra: list[tuple[str, str]]) -> str:
    pairs = [*params.items(), *extra]
    return "&".join(f"{quote(k, safe='')}={quote(v, safe='')}" for k, v in pairs)


_targets = st.one_of(
    st.builds(lambda p, extra: "/callback?" + _query(p, extra), _params,
              st.lists(st.tuples(st.sampled_from(["state", "code"]), _text), max_size=2)),
    st.builds(lambda path, q: path + "?" + q, st.sampled_from(["/callback", "/", "/favicon.ico", "//x", "/callback/"]),
              _text),
    _text.map(lambda t: "/" + t),
    _text,
)
_requests = st.one_of(
    st.builds(lambda method, target, headers: f"{method} {target} HTTP/1.1\r\nHost: 127.0.0.1\r\n{headers}\r\n"
              .encode("utf-8", "surrogatepass"),
              st.sampled_from(["GET", "POST", "HEAD", "get", ""]), _targets,
              st.text(alphabet="abc:\r\n -", max_size=60)),
    st.binary(max_size=400),
    st.builds(lambda n: b"GET /callback?" + b"a" * n + b" HTTP/1.1\r\n\r\n", st.integers(0, 40_000)),
)


async def _settled(listener: LoopbackListener) -> bool:
    """Whether a callback settled the login (its result or its error is there): waiting no time tells."""
    try:
        await listener.wait(0.001)
    except McpRelayError as exc:
        return exc.error_type not in (ErrorType.LOGIN_TIMEOUT, ErrorType.STATE_MISMATCH)
    return True


async def _exchange(raw: bytes) -> tuple[bytes, list[Any], bool]:
    """Send ``raw`` to a fresh listener; (answer, unhandled exceptions, whether the login was settled)."""
    loop = asyncio.get_running_loop()
    problems: list[Any] = []
    loop.set_exception_handler(lambda _loop, context: problems.append(context))
    listener = await LoopbackListener.open()
    listener.expect(state=STATE, issuer=None, iss_supported=False)
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", listener.port)
        writer.write(raw)
        await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()  # what was sent is all there is: the listener must not wait for more
        try:
            answer = await asyncio.wait_for(reader.read(), 15)
        except (ConnectionError, OSError):
            answer = b""
        writer.close()
        settled = await _settled(listener)
        listener.finish(False, "fuzz")
    finally:
        await listener.aclose()
    return answer, problems, settled


@FUZZ
@given(_requests)
def test_fuzz_whatever_reaches_the_socket_gets_an_http_answer(raw: bytes) -> None:
    answer, problems, settled = asyncio.run(_exchange(raw))
    assert not problems, problems
    if answer:
        assert answer.startswith(b"HTTP/1.1 ") and answer[9:12] in STATUSES, answer[:80]
        assert b"Content-Security-Policy" in answer
    # Without the login's state nothing can settle it (with it, only a code or an error does).
    if STATE.encode() not in raw:
        assert not settled


@FUZZ
@given(st.one_of(_targets.map(lambda t: "http://127.0.0.1:1" + t), _text, _targets))
def test_fuzz_a_pasted_url_is_accepted_or_a_clear_error(url: str) -> None:
    async def paste() -> None:
        listener = await LoopbackListener.open()
        listener.expect(state=STATE, issuer=None, iss_supported=False)
        try:
            try:
                listener.submit_redirect_url(url)
            except McpRelayError as exc:
                assert exc.message and exc.suggestion
        finally:
            listener.finish(False, "fuzz")
            await listener.aclose()

    asyncio.run(paste())


@FUZZ
@given(st.one_of(_text, _targets.map(lambda t: "http://[::1]:8" + t), st.builds(
    lambda host, port, path: f"http://{host}:{port}{path}",
    st.sampled_from(["127.0.0.1", "localhost", "[::1]", "[::1", "::1", "example.com", ""]),
    st.one_of(st.integers(-5, 70_000).map(str), _text), _text)))
def test_fuzz_redirect_uri_parsing_never_raises(uri: str) -> None:
    parsed = parse_loopback_redirect(uri)
    if parsed is not None:
        assert 0 <= parsed.port <= 65535 and parsed.host in {"127.0.0.1", "localhost", "::1"}
        assert parse_loopback_redirect(parsed.uri()) == parsed


def test_the_listener_still_completes_a_login_after_garbage() -> None:
    """The fuzzing's premise checked once: garbage first, then the real callback is accepted."""

    async def login() -> None:
        listener = await LoopbackListener.open()
        listener.expect(state=STATE, issuer=None, iss_supported=False)
        try:
            for junk in (b"\x00\xff garbage\r\n\r\n", b"GET /callback?state=nope&code=x HTTP/1.1\r\n\r\n"):
                with socket.create_connection(("127.0.0.1", listener.port)) as sock:
                    sock.sendall(junk)
                    sock.shutdown(socket.SHUT_WR)
                    await asyncio.sleep(0.05)
            reader, writer = await asyncio.open_connection("127.0.0.1", listener.port)
            writer.write(f"GET /callback?state={STATE}&code=the-code HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            await writer.drain()
            result = await listener.wait(5)
            assert result.code == "the-code"
            listener.finish(True, "done")
            assert (await reader.read()).startswith(b"HTTP/1.1 200")
            writer.close()
        finally:
            await listener.aclose()

    asyncio.run(login())
