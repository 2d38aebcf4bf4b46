"""The RFC 8252 loopback redirect: one small HTTP listener per login, on 127.0.0.1.

Three failures seen in the field shape this module:

- *A pinned port that went bad.* A cached dynamic registration carries a redirect URI with a port.
  When that port can no longer be bound (EACCES in a Windows excluded port range, EADDRINUSE, any
  ``OSError``) the login must not fail forever: the failure is logged (``callback_bind_failed``), a
  port the OS picks is bound instead and the caller is told the cached registration is unusable, so
  it registers again for the port actually held.
- *A busy configured port.* A port the user pinned in the configuration is theirs to fix; carrying on
  would send the browser to whatever else listens there. It fails at once, before any browser opens,
  naming the address, the port, the errno and the configuration key.
- *Misleading state errors.* A callback whose ``state`` belongs to no login in progress (an old tab,
  another program's login) is answered with a page that says exactly that, and the listener keeps
  waiting for the right one. ``state`` is compared in constant time and used once; ``iss`` (RFC 9207)
  is checked when the authorization server advertises it, or whenever it is present.

The listener is a deliberately minimal HTTP/1.1 server on :func:`asyncio.start_server`: one GET per
connection, request line and headers only, size-capped and time-limited. The answer to the valid
callback is held until :meth:`LoopbackListener.finish` is called, so the browser says "logged in"
only after the code exchange succeeded.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import hmac
import html
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from mcprelay import diaglog
from mcprelay.errors import ErrorType, McpRelayError

BindFn = Callable[[str, int], socket.socket]
"""``bind(address, port)`` returns a socket bound to that address (listening or not); raises OSError."""

DEFAULT_PATH = "/callback"
LISTEN_ADDRESS = "127.0.0.1"
CONFIG_KEY_CALLBACK_PORT = "mcpServers[].oauth.callback_port"
CONFIG_KEY_REDIRECT_URI = "mcpServers[].oauth.redirect_uri"
NO_LOGIN_MESSAGE = "This callback belongs to no login in progress in this mcprelay process."
_NO_LOGIN_TITLE = "No login in progress"
_NO_LOGIN_DETAIL = (
    "It may come from an old browser tab of an earlier login, or from another program's login that was "
    "sent to this port. If you are logging in now, finish in the tab the newest login opened; this "
    "mcprelay process is still waiting for it."
)

_LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
_READ_TIMEOUT = 10.0  # a browser sends its request at once; an idle preconnect must not pin a task
_LINE_LIMIT = 16 * 1024  # the request line carries code, state and maybe an error_description
_HEAD_LIMIT = 32 * 1024
_MAX_HEADERS = 100
_MAX_QUERY_FIELDS = 32
_FINISH_GRACE = 1.0
_FLUSH_GRACE = 1.0
_BACKLOG = 16
# Winsock reports its own numbers; map the ones a bind can meet to the names users search for.
_WINSOCK_CODES = {10013: "EACCES", 10048: "EADDRINUSE", 10049: "EADDRNOTAVAIL"}


def errno_code(exc: OSError) -> str:
    """The symbolic errno name (``EACCES``, ``EADDRINUSE``) of ``exc``: what people search for."""
    winerror = getattr(exc, "winerror", None)
    if isinstance(winerror, int) and winerror in _WINSOCK_CODES:
        return _WINSOCK_CODES[winerror]
    if exc.errno is None:
        return "UNKNOWN"
    name = errno.errorcode.get(exc.errno)
    if name is None:
        return f"ERRNO_{exc.errno}"
    return name.removeprefix("WSA")


def _errno_number(exc: OSError) -> int:
    if exc.errno is not None:
        return int(exc.errno)
    winerror = getattr(exc, "winerror", None)
    return int(winerror) if isinstance(winerror, int) else 0


def default_bind(address: str, port: int) -> socket.socket:
    """Bind a TCP socket for the callback.

    On POSIX ``SO_REUSEADDR`` is set so that a port still in TIME_WAIT from an earlier login can be
    bound again; it does not let two sockets listen on one port (Linux and the BSDs refuse a bind
    next to a listening socket), so a port another process listens on still fails with EADDRINUSE.
    ``SO_REUSEPORT`` is never set: it would let us share the port with that other process. On
    Windows ``SO_REUSEADDR`` would allow stealing a port, so ``SO_EXCLUSIVEADDRUSE`` is set instead.
    """
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        if os.name == "posix":
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        elif hasattr(socket, "SO_EXCLUSIVEADDRUSE"):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_EXCLUSIVEADDRUSE, 1)
        sock.bind((address, port))
    except BaseException:
        sock.close()
        raise
    return sock


@dataclass(frozen=True)
class CallbackResult:
    """What a valid callback delivered; the code is a secret and stays out of ``repr``."""

    code: str = field(repr=False)
    iss: str | None = None


@dataclass(frozen=True)
class LoopbackRedirect:
    """A loopback redirect URI taken apart: the host as written, the port, the path."""

    host: str
    port: int
    path: str

    @property
    def listen_address(self) -> str:
        # "localhost" is served on 127.0.0.1 only (RFC 8252 §8.3); "[::1]" needs the IPv6 loopback.
        return "::1" if self.host == "::1" else LISTEN_ADDRESS

    def uri(self, port: int | None = None) -> str:
        host = "[::1]" if self.host == "::1" else self.host
        return f"http://{host}:{self.port if port is None else port}{self.path}"


def parse_loopback_redirect(uri: str) -> LoopbackRedirect | None:
    """``http://<loopback literal>:<port><path>`` taken apart, or None if ``uri`` is not one."""
    try:
        parts = urlsplit(uri)
        port = parts.port
    except ValueError:
        return None
    host = (parts.hostname or "").lower()
    if parts.scheme != "http" or host not in _LOOPBACK_HOSTS or port is None or parts.query or parts.fragment:
        return None
    return LoopbackRedirect(host=host, port=port, path=parts.path or "/")


def _sanitize(value: str, limit: int) -> str:
    """Text from the authorization server, reduced to printable ASCII and capped, for messages and logs."""
    cleaned = "".join(ch if " " <= ch <= "~" else "?" for ch in value)
    return cleaned if len(cleaned) <= limit else cleaned[:limit] + "..."


_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>mcprelay: {title}</title>
<style>body{{font-family:system-ui,sans-serif;max-width:40em;margin:4em auto;padding:0 1em;line-height:1.5}}</style>
</head><body><h1>{title}</h1><p>{message}</p>{detail}</body></html>
"""

_REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed", 431: "Too Large"}


def render_page(title: str, message: str, detail: str = "") -> str:
    """The browser page; every piece of text is escaped, since some of it comes from the network."""
    extra = f"<p>{html.escape(detail)}</p>" if detail else ""
    return _PAGE.format(title=html.escape(title), message=html.escape(message), detail=extra)


def _http_response(status: int, body: str, *, extra_headers: tuple[str, ...] = ()) -> bytes:
    payload = body.encode("utf-8")
    head = [
        f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}",
        "Content-Type: text/html; charset=utf-8",
        f"Content-Length: {len(payload)}",
        "Cache-Control: no-store",
        "Referrer-Policy: no-referrer",
        "X-Content-Type-Options: nosniff",
        "Content-Security-Policy: default-src 'none'; style-src 'unsafe-inline'",
        "Connection: close",
        *extra_headers,
    ]
    return ("\r\n".join(head) + "\r\n\r\n").encode("ascii") + payload


class _BadRequest(Exception):
    def __init__(self, status: int = 400) -> None:
        super().__init__(status)
        self.status = status


class _ClientGone(Exception):
    pass


async def _read_request_head(reader: asyncio.StreamReader) -> tuple[str, str]:
    """(method, target) of one request; the headers are read to the blank line and dropped."""
    try:
        line = await reader.readline()
    except ValueError as exc:  # longer than the stream limit
        raise _BadRequest(431) from exc
    if not line.endswith(b"\n"):
        raise _ClientGone
    total = len(line)
    for _ in range(_MAX_HEADERS + 1):
        try:
            header = await reader.readline()
        except ValueError as exc:
            raise _BadRequest(431) from exc
        total += len(header)
        if total > _HEAD_LIMIT:
            raise _BadRequest(431)
        if header in (b"\r\n", b"\n"):
            break
        if not header.endswith(b"\n"):
            raise _ClientGone
    else:
        raise _BadRequest(431)
    parts = line.decode("latin-1").strip().split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/1.") or not parts[1]:
        raise _BadRequest(400)
    return parts[0], parts[1]


def _parse_query(query: str) -> dict[str, str]:
    """The callback parameters; a repeated parameter makes the response ambiguous, so it is refused."""
    try:
        pairs = parse_qsl(query, keep_blank_values=True, max_num_fields=_MAX_QUERY_FIELDS)
    except ValueError as exc:
        raise _BadRequest(400) from exc
    params: dict[str, str] = {}
    for key, value in pairs:
        if key in params:
            raise _BadRequest(400)
        params[key] = value
    return params


@dataclass
class _Expectation:
    state: str
    issuer: str | None
    iss_supported: bool
    consumed: bool = False


@dataclass(frozen=True)
class _Decision:
    """What to answer one callback: a page now, or (``hold``) the page ``finish`` will give."""

    status: int
    title: str
    message: str
    detail: str = ""
    hold: bool = False


class LoopbackListener:
    """The loopback callback listener of one login. Use :meth:`open` or :func:`acquire_listener`."""

    def __init__(
        self,
        sock: socket.socket,
        redirect: LoopbackRedirect,
        redirect_uri: str,
        *,
        server: str | None,
        correlation_id: str | None,
    ) -> None:
        self._sock = sock
        self._redirect = redirect
        self._port = int(sock.getsockname()[1])
        self._redirect_uri = redirect_uri
        self._server_name = server
        self._correlation_id = correlation_id
        self._server: asyncio.Server | None = None
        self._expected: _Expectation | None = None
        self._result: asyncio.Future[CallbackResult] | None = None
        self._unknown_state_callbacks = 0
        self._finished = asyncio.Event()
        self._outcome: tuple[bool, str] = (False, "")
        self._held = 0
        self._connections: set[asyncio.Task[Any]] = set()
        self._held_tasks: set[asyncio.Task[Any]] = set()
        self._closed = False

    # -- construction -------------------------------------------------------------------------

    @classmethod
    async def open(
        cls,
        host: str = LISTEN_ADDRESS,
        port: int = 0,
        path: str = DEFAULT_PATH,
        bind: BindFn | None = None,
        *,
        redirect_uri: str | None = None,
        server: str | None = None,
        correlation_id: str | None = None,
    ) -> LoopbackListener:
        """Bind ``host``:``port`` (0: the OS picks) and start serving; bind errors raise ``OSError``.

        ``host`` is the host of the redirect URI: 127.0.0.1, localhost (served on 127.0.0.1) or ::1.
        ``redirect_uri`` keeps a configured or cached URI verbatim, because authorization servers
        compare redirect URIs as strings.
        """
        host = host.strip("[]").lower()
        if host not in _LOOPBACK_HOSTS:
            raise ValueError(f"not a loopback host: {host!r}")
        if not path.startswith("/"):
            raise ValueError(f"the callback path must start with '/': {path!r}")
        redirect = LoopbackRedirect(host=host, port=port, path=path)
        sock = (bind or default_bind)(redirect.listen_address, port)
        try:
            # listen() is where some systems report a conflict, so it belongs to the bind attempt.
            sock.listen(_BACKLOG)
            sock.setblocking(False)
            bound_port = int(sock.getsockname()[1])
            uri = redirect_uri if redirect_uri and port else redirect.uri(bound_port)
            listener = cls(sock, redirect, uri, server=server, correlation_id=correlation_id)
            listener._server = await asyncio.start_server(listener._serve, sock=sock, limit=_LINE_LIMIT)
        except BaseException:
            sock.close()
            raise
        listener._result = asyncio.get_running_loop().create_future()
        return listener

    # -- properties -----------------------------------------------------------------------------

    @property
    def redirect_uri(self) -> str:
        return self._redirect_uri

    @property
    def port(self) -> int:
        return self._port

    @property
    def address(self) -> str:
        return self._redirect.listen_address

    @property
    def path(self) -> str:
        return self._redirect.path

    @property
    def unknown_state_callbacks(self) -> int:
        return self._unknown_state_callbacks

    # -- the login's side -----------------------------------------------------------------------

    def expect(self, *, state: str, issuer: str | None, iss_supported: bool) -> None:
        """Arm the listener for one authorization request; until then every callback is unknown."""
        self._expected = _Expectation(state=state, issuer=issuer, iss_supported=iss_supported)

    async def wait(self, timeout_seconds: float) -> CallbackResult:
        """The valid callback's result; raises its :class:`McpRelayError`, or a timeout error."""
        assert self._result is not None
        try:
            async with asyncio.timeout(timeout_seconds):
                return await asyncio.shield(self._result)
        except TimeoutError:
            if self._result.done():  # the callback won the race against the deadline
                return self._result.result()
            raise self._timeout_error(timeout_seconds) from None

    def submit_redirect_url(self, url: str) -> None:
        """Accept the redirect URL pasted by a user whose browser could not reach the loopback.

        A URL that cannot be this login's callback raises :class:`McpRelayError` and changes
        nothing, so the user can paste again. A URL carrying this login's ``state`` is handled like
        the loopback callback: its outcome, including an error, is delivered to :meth:`wait`.
        """
        url = url.strip()
        try:
            parts = urlsplit(url)
            params = _parse_query(parts.query)
        except (ValueError, _BadRequest):
            raise self._paste_error("That is not a redirect URL") from None
        if parts.scheme not in ("http", "https") or not parts.netloc or (parts.path or "/") != self.path:
            raise self._paste_error(f"That URL is not a redirect to {self.redirect_uri}")
        if not params.get("state"):
            raise self._paste_error("That URL has no state parameter; copy the whole address")
        if not params.get("code") and not params.get("error"):
            raise self._paste_error("That URL has neither a code nor an error parameter; copy the whole address")
        decision = self._accept(params, via="paste")
        if decision.title == _NO_LOGIN_TITLE:
            raise McpRelayError(
                ErrorType.STATE_MISMATCH,
                "That URL belongs to no login in progress in this mcprelay process "
                "(an old browser tab, or another login)",
                suggestion="paste the URL of the tab opened by this login",
                server=self._server_name,
                correlation_id=self._correlation_id,
            )

    def finish(self, ok: bool, message: str) -> None:
        """Release the held browser page: ``ok`` only once the code has been exchanged and stored."""
        if self._finished.is_set():
            return
        self._outcome = (ok, message)
        self._finished.set()

    # -- lifecycle --------------------------------------------------------------------------------

    async def __aenter__(self) -> LoopbackListener:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Stop listening; a held page gets a short grace for ``finish``, then an honest failure page."""
        if self._closed:
            return
        self._closed = True
        if self._server is not None:
            self._server.close()
        if self._held and not self._finished.is_set():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(_FINISH_GRACE):
                    await self._finished.wait()
            self.finish(False, "The login did not complete. See the terminal where mcprelay runs for the reason.")
        pending = [task for task in self._held_tasks if not task.done()]
        if pending:  # let the held page reach the browser before the connection is cut
            await asyncio.wait(pending, timeout=_FLUSH_GRACE)
        for task in list(self._connections):
            task.cancel()
        for task in list(self._connections):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self._result is not None:
            if not self._result.done():
                self._result.cancel()
            elif not self._result.cancelled():
                self._result.exception()  # an outcome nobody awaited is not an "unretrieved" error
        if self._server is not None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(_FLUSH_GRACE):
                    await self._server.wait_closed()
        self._sock.close()

    # -- callback checks --------------------------------------------------------------------------

    def _event(self, name: str, *, level: str = "info", **fields: object) -> None:
        diaglog.event(name, server=self._server_name, correlation_id=self._correlation_id, level=level, **fields)

    def _fail(self, error: McpRelayError) -> None:
        error.with_context(server=self._server_name, correlation_id=self._correlation_id)
        if self._result is not None and not self._result.done():
            self._result.set_exception(error)

    def _state_matches(self, state: str | None) -> bool:
        expected = self._expected
        if expected is None or expected.consumed or not state:
            return False
        return hmac.compare_digest(state.encode("utf-8"), expected.state.encode("utf-8"))

    def _accept(self, params: dict[str, str], *, via: str) -> _Decision:
        """Check one callback's parameters against the login in progress and settle :meth:`wait`."""
        if not self._state_matches(params.get("state")):
            self._unknown_state_callbacks += 1
            self._event(
                "callback_unknown_state", level="warning", via=via, has_state=bool(params.get("state")),
                has_code="code" in params, has_error="error" in params, count=self._unknown_state_callbacks,
            )
            return _Decision(400, _NO_LOGIN_TITLE, NO_LOGIN_MESSAGE, _NO_LOGIN_DETAIL)
        expected = self._expected
        assert expected is not None
        expected.consumed = True  # single use, whatever the outcome

        iss = params.get("iss")
        iss_problem = self._iss_problem(expected, iss)
        if iss_problem is not None:
            self._event("callback_rejected", level="error", via=via, reason="iss", detail=iss_problem)
            self._fail(
                McpRelayError(
                    ErrorType.CODE_FLOW_FAILED,
                    f"The authorization response failed the RFC 9207 issuer check: {iss_problem}",
                    suggestion="this can be an authorization server mix-up; check the server's configuration "
                    "and log in again",
                    details={"expected_issuer": expected.issuer, "iss": _sanitize(iss, 200) if iss else None},
                )
            )
            return _Decision(
                400, "Login failed",
                "The login failed: the response did not come from the expected authorization server "
                f"({iss_problem}). The code was not used.",
            )

        if "error" in params:
            return self._error_response(params, via=via)

        code = params.get("code", "")
        if not code:
            self._event("callback_rejected", level="error", via=via, reason="no_code")
            self._fail(
                McpRelayError(
                    ErrorType.CODE_FLOW_FAILED,
                    "The authorization response carried neither a code nor an error",
                    suggestion="log in again; if it repeats, the authorization server is misbehaving",
                )
            )
            return _Decision(400, "Login failed", "The login failed: the response carried no authorization code.")

        self._event("callback_received", via=via, iss=_sanitize(iss, 200) if iss else None)
        if self._result is not None and not self._result.done():
            self._result.set_result(CallbackResult(code=code, iss=iss))
        return _Decision(200, "", "", hold=True)

    @staticmethod
    def _iss_problem(expected: _Expectation, iss: str | None) -> str | None:
        if iss is None:
            if expected.iss_supported:
                return "the server advertises the iss parameter but the response had none"
            return None
        if expected.issuer is None or iss != expected.issuer:
            return f"iss was {_sanitize(iss, 200)!r}, expected {expected.issuer!r}"
        return None

    def _error_response(self, params: dict[str, str], *, via: str) -> _Decision:
        error = _sanitize(params.get("error", ""), 64) or "(empty)"
        description = _sanitize(params.get("error_description", ""), 300)
        self._event("callback_error", level="warning", via=via, error=error, error_description=description or None)
        said = f": {description}" if description else ""
        if error == "access_denied":
            self._fail(
                McpRelayError(
                    ErrorType.ACCESS_DENIED,
                    f"The authorization was denied (access_denied){said}",
                    suggestion="log in again and approve the access, or ask whether your account may use this server",
                    details={"error": error, "error_description": description or None},
                )
            )
            return _Decision(400, "Login denied", f"The authorization was denied{said}", "Nothing was stored.")
        self._fail(
            McpRelayError(
                ErrorType.CODE_FLOW_FAILED,
                f"The authorization server returned the error {error!r}{said}",
                suggestion="log in again; if it repeats, check the server's OAuth settings (client, scopes)",
                details={"error": error, "error_description": description or None},
            )
        )
        return _Decision(400, "Login failed", f"The authorization server returned the error {error}{said}")

    def _timeout_error(self, timeout_seconds: float) -> McpRelayError:
        if self._unknown_state_callbacks:
            n = self._unknown_state_callbacks
            return McpRelayError(
                ErrorType.STATE_MISMATCH,
                f"No callback for this login arrived at {self.redirect_uri} within {timeout_seconds:g} s; "
                f"{n} callback{'s' if n != 1 else ''} arrived with a state that matched no login in progress "
                "(an old browser tab of an earlier login, or another program's login on this port)",
                suggestion="close old login tabs and log in again, finishing in the tab this login opens",
                server=self._server_name,
                correlation_id=self._correlation_id,
                details={"redirect_uri": self.redirect_uri, "unknown_state_callbacks": n},
            )
        return McpRelayError(
            ErrorType.LOGIN_TIMEOUT,
            f"No callback arrived at {self.redirect_uri} within {timeout_seconds:g} s",
            suggestion="log in again and finish in the browser in time, or raise mcpServers[].oauth.login_timeout",
            server=self._server_name,
            correlation_id=self._correlation_id,
            details={"redirect_uri": self.redirect_uri, "timeout_seconds": timeout_seconds},
        )

    def _paste_error(self, message: str) -> McpRelayError:
        return McpRelayError(
            ErrorType.USAGE_ERROR,
            message,
            suggestion=f"paste the full address the browser was sent to; it starts with {self.redirect_uri}",
            server=self._server_name,
            correlation_id=self._correlation_id,
        )

    # -- HTTP -------------------------------------------------------------------------------------

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        try:
            try:
                async with asyncio.timeout(_READ_TIMEOUT):
                    method, target = await _read_request_head(reader)
            except _BadRequest as exc:
                writer.write(_http_response(exc.status, render_page("Bad request", "The request was malformed.")))
                await writer.drain()
                return
            except (TimeoutError, _ClientGone, ConnectionError):
                return
            writer.write(await self._respond(method, target))
            await writer.drain()
        except (ConnectionError, OSError):
            pass  # the browser went away; nothing to tell it
        finally:
            self._connections.discard(task)
            self._held_tasks.discard(task)
            writer.close()

    async def _respond(self, method: str, target: str) -> bytes:
        if method != "GET":
            return _http_response(
                405, render_page("Method not allowed", "Only GET is served here."), extra_headers=("Allow: GET",)
            )
        try:
            parts = urlsplit(target)
        except ValueError:
            return _http_response(400, render_page("Bad request", "The request target was malformed."))
        if parts.path == "/favicon.ico":
            return _http_response(404, "")
        if parts.path != self.path:
            return _http_response(404, render_page("Not found", "mcprelay's login callback has nothing here."))
        try:
            params = _parse_query(parts.query)
        except _BadRequest:
            return _http_response(400, render_page("Bad request", "The callback parameters were malformed."))
        decision = self._accept(params, via="loopback")
        if not decision.hold:
            return _http_response(decision.status, render_page(decision.title, decision.message, decision.detail))
        self._held += 1
        task = asyncio.current_task()
        if task is not None:
            self._held_tasks.add(task)
        await self._finished.wait()
        ok, message = self._outcome
        if ok:
            return _http_response(200, render_page("Logged in", message))
        return _http_response(400, render_page("Login failed", message))



def _bind_failure_reason(exc: OSError) -> str:
    code = errno_code(exc)
    if code == "EADDRINUSE":
        return "another program is already listening on it"
    if code == "EACCES":
        return (
            "permission denied (on Windows the port may be in an excluded port range: see "
            "`netsh interface ipv4 show excludedportrange protocol=tcp`)"
        )
    return exc.strerror or str(exc)


def _log_bind_failure(
    server: str | None, correlation_id: str | None, address: str, port: int, exc: OSError, *, action: str
) -> None:
    diaglog.event(
        "callback_bind_failed", server=server, correlation_id=correlation_id, level="warning",
        address=address, port=port, errno=_errno_number(exc), code=errno_code(exc), action=action,
    )


async def acquire_listener(
    *,
    server: str,
    correlation_id: str,
    configured_port: int | None = None,
    configured_redirect_uri: str | None = None,
    cached_redirect_uri: str | None = None,
    bind: BindFn | None = None,
) -> tuple[LoopbackListener, bool]:
    """Bind the login's listener; the flag says whether ``cached_redirect_uri`` may be used as is.

    Policy, in order:

    1. a configured redirect URI or port is the user's: bind exactly that, or raise
       ``callback_port_in_use`` / ``callback_bind_failed`` at once, before any browser opens;
    2. a cached registration's port is only a wish: if it cannot be bound, log ``callback_bind_failed``
       and bind a port the OS picks, so that the caller registers again for the port actually held;
    3. otherwise the OS picks the port.
    """
    if configured_redirect_uri or configured_port:
        return await _configured_listener(
            server, correlation_id, configured_port, configured_redirect_uri, cached_redirect_uri, bind
        )
    cached = parse_loopback_redirect(cached_redirect_uri) if cached_redirect_uri else None
    if cached is not None:
        try:
            listener = await LoopbackListener.open(
                cached.host, cached.port, cached.path, bind, redirect_uri=cached_redirect_uri,
                server=server, correlation_id=correlation_id,
            )
        except OSError as exc:
            _log_bind_failure(server, correlation_id, cached.listen_address, cached.port, exc, action="rebind_port_0")
        else:
            _log_bound(listener, server, correlation_id, source="cached_registration")
            return listener, True
    listener = await _ephemeral_listener(server, correlation_id, bind)
    return listener, False


def _log_bound(listener: LoopbackListener, server: str, correlation_id: str, *, source: str) -> None:
    diaglog.event(
        "callback_listener_bound", server=server, correlation_id=correlation_id,
        address=listener.address, port=listener.port, redirect_uri=listener.redirect_uri, source=source,
    )


async def _ephemeral_listener(server: str, correlation_id: str, bind: BindFn | None) -> LoopbackListener:
    try:
        listener = await LoopbackListener.open(
            LISTEN_ADDRESS, 0, DEFAULT_PATH, bind, server=server, correlation_id=correlation_id
        )
    except OSError as exc:
        _log_bind_failure(server, correlation_id, LISTEN_ADDRESS, 0, exc, action="fail")
        raise McpRelayError(
            ErrorType.CALLBACK_BIND_FAILED,
            f"Cannot listen for the OAuth callback on {LISTEN_ADDRESS} on any port: "
            f"{exc.strerror or exc} ({errno_code(exc)}, errno {_errno_number(exc)})",
            suggestion="check that the loopback interface is up and that no firewall or policy forbids "
            "listening on 127.0.0.1",
            server=server,
            correlation_id=correlation_id,
            details={"address": LISTEN_ADDRESS, "port": 0, "errno": _errno_number(exc), "code": errno_code(exc)},
        ) from exc
    _log_bound(listener, server, correlation_id, source="os")
    return listener


async def _configured_listener(
    server: str,
    correlation_id: str,
    configured_port: int | None,
    configured_redirect_uri: str | None,
    cached_redirect_uri: str | None,
    bind: BindFn | None,
) -> tuple[LoopbackListener, bool]:
    if configured_redirect_uri:
        redirect = parse_loopback_redirect(configured_redirect_uri)
        if redirect is None:
            raise McpRelayError(
                ErrorType.CONFIG_INVALID,
                f"{CONFIG_KEY_REDIRECT_URI} {configured_redirect_uri!r} is not a loopback URL with a port",
                suggestion="use a URL such as http://127.0.0.1:8765/callback (RFC 8252 §7.3), or remove it",
                server=server,
                correlation_id=correlation_id,
            )
        key = CONFIG_KEY_REDIRECT_URI if not configured_port else CONFIG_KEY_CALLBACK_PORT
    else:
        assert configured_port is not None
        redirect = LoopbackRedirect(host=LISTEN_ADDRESS, port=configured_port, path=DEFAULT_PATH)
        key = CONFIG_KEY_CALLBACK_PORT
    address, port = redirect.listen_address, redirect.port
    try:
        listener = await LoopbackListener.open(
            redirect.host, port, redirect.path, bind, redirect_uri=configured_redirect_uri or None,
            server=server, correlation_id=correlation_id,
        )
    except OSError as exc:
        _log_bind_failure(server, correlation_id, address, port, exc, action="fail")
        code, number = errno_code(exc), _errno_number(exc)
        keys = CONFIG_KEY_CALLBACK_PORT if key == CONFIG_KEY_CALLBACK_PORT else (
            f"the port in {CONFIG_KEY_REDIRECT_URI} (or {CONFIG_KEY_CALLBACK_PORT})"
        )
        raise McpRelayError(
            ErrorType.CALLBACK_PORT_IN_USE if code == "EADDRINUSE" else ErrorType.CALLBACK_BIND_FAILED,
            f"Cannot listen for the OAuth callback on {address}:{port}, the port set by {key}: "
            f"{_bind_failure_reason(exc)} ({code}, errno {number}). "
            f"Change {keys} to a free port, or remove it so that mcprelay picks a free port.",
            suggestion=f"set {CONFIG_KEY_CALLBACK_PORT} to a free port, or remove it (and "
            f"{CONFIG_KEY_REDIRECT_URI}) so that mcprelay picks one",
            server=server,
            correlation_id=correlation_id,
            details={"address": address, "port": port, "errno": number, "code": code, "config_key": key},
        ) from exc
    _log_bound(listener, server, correlation_id, source="configuration")
    return listener, cached_redirect_uri is not None and cached_redirect_uri == listener.redirect_uri
