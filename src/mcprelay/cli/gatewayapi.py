"""Asking the gateway running for this home through its REST API (``upstream``, ``tools``, ``ui``).

The gateway publishes its URL in ``<home>/state/gateway.json`` (``control/runfile.py``); the CLI presents
the listener's key (the config's ``api_key``, else the home's owner key), which only the owner can read.
"""

from __future__ import annotations

from typing import Any

from mcprelay.cli.runtime import Runtime
from mcprelay.errors import ErrorType, McpRelayError
from mcprelay.gateway.control.runfile import read_runfile


def running_gateway(runtime: Runtime) -> str | None:
    """The base URL of the gateway running for this home (``serve --listen``), or None."""
    running = read_runfile(runtime.home)
    return None if running is None else str(running["url"])


def call_gateway(
    runtime: Runtime, method: str, path: str, body: dict[str, Any] | None = None, *, base: str | None = None
) -> tuple[int, dict[str, Any]] | None:
    """``METHOD /api/v1<path>`` on the running gateway: (status, JSON object), or None when none answers."""
    base = base or running_gateway(runtime)
    if base is None:
        return None
    from mcprelay.gateway.serving.ownerkey import client_key

    headers = {"Accept": "application/json"}
    key = client_key(runtime.home, runtime.loaded.config.api_key)
    if key:
        headers["Authorization"] = f"Bearer {key}"
    import httpx2  # here, not at the top: every command's start-up would pay for it

    try:
        response = httpx2.request(method, f"{base}/api/v1{path}", headers=headers, json=body, timeout=30.0)
    except httpx2.HTTPError:
        return None  # a gateway that does not answer is treated as not running
    try:
        data = response.json()
    except ValueError:
        data = None
    if not isinstance(data, dict):
        raise McpRelayError(
            ErrorType.UPSTREAM_ERROR,
            f"the gateway at {base} answered {method} {path} with {response.status_code} and no JSON",
            suggestion="is another program listening at that address? see <home>/state/gateway.json",
        )
    return response.status_code, data


def raise_for(status: int, data: dict[str, Any], what: str) -> None:
    """A refusal from the gateway, as the error it carries (its type, message, suggestion)."""
    if status < 400:
        return
    try:
        error_type = ErrorType(data.get("error_type", "upstream_error"))
    except ValueError:
        error_type = ErrorType.UPSTREAM_ERROR
    suggestion = str(data.get("suggestion") or "see the gateway's own output")
    if status == 401:
        suggestion = "the running gateway wants another key: check api_key in the config it was started with"
    raise McpRelayError(
        error_type, f"{what}: {data.get('message', status)}", suggestion=suggestion,
        server=data.get("server_name"), details=data.get("details") or {},
    )


def gateway_request(
    runtime: Runtime, method: str, path: str, body: dict[str, Any] | None = None
) -> dict[str, Any] | None:
    """``METHOD /api/v1<path>`` on the running gateway: its JSON answer, None when none runs; a refusal raises."""
    answer = call_gateway(runtime, method, path, body)
    if answer is None:
        return None
    raise_for(*answer, f"the running gateway refused {method} {path}")
    return answer[1]


def gateway_get(runtime: Runtime, path: str) -> dict[str, Any] | None:
    """GET ``/api/v1<path>`` from the gateway running for this home; None when none is running."""
    return gateway_request(runtime, "GET", path)
