"""The device authorization grant (RFC 8628): logging in from a machine without a usable browser.

For SSH sessions, containers and headless servers, where a loopback callback cannot reach the
machine mcprelay runs on. mcprelay asks the authorization server for a device code, shows the user
a short *user code* and where to enter it (and, in a terminal, a QR code of
``verification_uri_complete`` to scan with a phone), then polls the token endpoint:

- ``authorization_pending`` → keep polling at ``interval`` seconds (default 5);
- ``slow_down`` → poll 5 seconds less often from now on (§3.5);
- ``access_denied`` → the user said no: ``access_denied``;
- ``expired_token`` or the code's ``expires_in`` running out → ``login_timeout``.
"""

from __future__ import annotations

import io
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import anyio

from mcprelay import diaglog
from mcprelay.errors import ErrorType, McpRelayError
from mcprelay.oauth.rfc6749 import ClientCredentials, TokenEndpointError, TokenSet, token_endpoint_call, token_request

if TYPE_CHECKING:
    import httpx2

    from mcprelay.oauth.rfc9449 import DPoPKey

DEVICE_CODE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
DEFAULT_INTERVAL_S = 5.0
SLOW_DOWN_STEP_S = 5.0
MAX_EXPIRES_S = 3600.0


@dataclass(frozen=True)
class DeviceAuthorization:
    """The device authorization response (§3.2); the device code is a secret."""

    device_code: str = field(repr=False)
    user_code: str
    verification_uri: str
    verification_uri_complete: str | None
    expires_in: float
    interval: float


def parse_device_authorization(body: dict[str, Any]) -> DeviceAuthorization:
    """ValueError naming what is missing or malformed."""
    for name in ("device_code", "user_code", "verification_uri"):
        if not isinstance(body.get(name), str) or not body[name]:
            raise ValueError(f"{name} is missing")
    complete = body.get("verification_uri_complete")
    try:
        expires = float(body.get("expires_in", 600))
        interval = float(body.get("interval", DEFAULT_INTERVAL_S))
    except (TypeError, ValueError):
        raise ValueError("expires_in or interval is not a number") from None
    if not (0 < expires < float("inf")) or not (0 <= interval < 3600):
        raise ValueError("expires_in or interval is out of range")
    return DeviceAuthorization(
        device_code=body["device_code"],
        user_code=body["user_code"],
        verification_uri=body["verification_uri"],
        verification_uri_complete=complete if isinstance(complete, str) and complete else None,
        expires_in=min(expires, MAX_EXPIRES_S),
        interval=interval,
    )


def qr_text(data: str) -> str:
    """A QR code of ``data`` drawn with Unicode half blocks (two modules per character cell)."""
    import segno

    out = io.StringIO()
    segno.make(data, error="l", micro=False).terminal(out=out, compact=True)
    return out.getvalue()


def instructions(device: DeviceAuthorization, *, server: str, terminal: bool) -> str:
    """What the user reads: where to go, the code to enter, and (in a terminal) a QR code."""
    lines = [
        f"To log in to {server}, open {device.verification_uri} on any device and enter the code:",
        "",
        f"    {device.user_code}",
        "",
    ]
    if device.verification_uri_complete:
        lines.append(f"(or open {device.verification_uri_complete} , which carries the code)")
        if terminal:
            lines += ["", qr_text(device.verification_uri_complete)]
    minutes = max(1, round(device.expires_in / 60))
    lines.append(f"Waiting for the approval (the code is valid for about {minutes} minute(s))...")
    return "\n".join(lines)


async def request_device_code(
    http: httpx2.AsyncClient,
    endpoint: str,
    client: ClientCredentials,
    *,
    scope: str | None,
    resource: str | None,
    server: str,
    correlation_id: str,
) -> DeviceAuthorization:
    form: dict[str, str] = {}
    if scope:
        form["scope"] = scope
    if resource:
        form["resource"] = resource
    body = await token_endpoint_call(
        http, endpoint, client, form, server=server, correlation_id=correlation_id,
        failure_type=ErrorType.CODE_FLOW_FAILED, what="device authorization endpoint",
        request_name="the device authorization request",
    )
    try:
        device = parse_device_authorization(body)
    except ValueError as exc:
        raise McpRelayError(
            ErrorType.CODE_FLOW_FAILED,
            f"the device authorization endpoint {endpoint} sent an unusable response: {exc}",
            suggestion="this is an authorization server problem; report it to its operator",
            server=server,
            correlation_id=correlation_id,
        ) from None
    diaglog.event(
        "device_authorization", server=server, correlation_id=correlation_id, endpoint=endpoint,
        verification_uri=device.verification_uri, expires_in=device.expires_in, interval=device.interval,
    )
    return device


async def poll_for_tokens(
    http: httpx2.AsyncClient,
    token_endpoint: str,
    client: ClientCredentials,
    device: DeviceAuthorization,
    *,
    resource: str | None,
    dpop: DPoPKey | None,
    server: str,
    correlation_id: str,
    sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> TokenSet:
    """Poll until the user approves, denies, or the code expires."""
    deadline = clock() + device.expires_in
    interval = device.interval
    form = {"grant_type": DEVICE_CODE_GRANT, "device_code": device.device_code}
    if resource:
        form["resource"] = resource
    polls = 0
    while True:
        await sleep(interval)
        if clock() >= deadline:
            break
        polls += 1
        try:
            return await token_request(
                http, token_endpoint, client, form, server=server, correlation_id=correlation_id,
                failure_type=ErrorType.CODE_FLOW_FAILED, dpop=dpop,
            )
        except TokenEndpointError as exc:
            error = exc.oauth_error
            if error == "authorization_pending":
                continue
            if error == "slow_down":
                interval += SLOW_DOWN_STEP_S
                diaglog.event("device_slow_down", server=server, correlation_id=correlation_id, interval=interval)
                continue
            if error == "access_denied":
                raise McpRelayError(
                    ErrorType.ACCESS_DENIED,
                    f"the login to {server} was denied on the verification page (access_denied)",
                    suggestion="log in again and approve the access, or ask whether your account may use this server",
                    server=server,
                    correlation_id=correlation_id,
                ) from None
            if error == "expired_token":
                break
            if exc.status == 0 or exc.status >= 500 or exc.status == 429:
                continue  # a passing fault: the user may still be approving
            raise
    diaglog.event("device_code_expired", server=server, correlation_id=correlation_id, polls=polls)
    raise McpRelayError(
        ErrorType.LOGIN_TIMEOUT,
        f"the device code for {server} expired before the login was approved (after {polls} poll(s))",
        suggestion=f"run `mcprelay auth login --server {server} --device` again and enter the new code in time",
        server=server,
        correlation_id=correlation_id,
        details={"polls": polls},
    )
