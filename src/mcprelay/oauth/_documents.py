"""Fetching documents from servers that may be missing, slow, huge or hostile.

Every outbound OAuth request (metadata, registration, token, revocation) goes through
:func:`bounded_request`: one overall deadline for the whole exchange (the client's timeouts bound
each read, which a server dripping one byte every few seconds never trips) and a cap on the body
checked while it streams (a 100 MB answer is never buffered whole).

Both kinds of metadata (RFC 9728, RFC 8414) are tried at several URLs in turn, so "nothing here"
and "something unusable here" must be told apart: the first moves on to the next URL, the second
stops discovery with a message naming the URL and what was wrong. Bodies are streamed and capped,
so a hostile server cannot make us buffer an unbounded document.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar, cast

import anyio
import pydantic

from mcprelay import diaglog
from mcprelay.errors import ErrorType, McpRelayError

if TYPE_CHECKING:
    import httpx2  # imported where used, like in rfc6749

MAX_DOCUMENT_BYTES = 1024 * 1024
# The client's timeouts bound each read; this bounds a server that drips bytes for ever.
DOCUMENT_DEADLINE_S = 30.0
#: The overall deadline of one token, registration or revocation exchange (connect to last byte).
OAUTH_REQUEST_DEADLINE_S = 30.0

ModelT = TypeVar("ModelT", bound=pydantic.BaseModel)


def document_error(
    what: str, url: str, problem: str, *, server: str | None, correlation_id: str | None, suggestion: str = ""
) -> McpRelayError:
    return McpRelayError(
        ErrorType.METADATA_DISCOVERY_FAILED,
        f"the {what} at {url} is unusable: {problem}",
        suggestion=suggestion or "this is a server configuration problem; report it to the server's operator",
        server=server,
        correlation_id=correlation_id,
        details={"url": url, "problem": problem},
    )


async def _read_capped(response: httpx2.Response, cap: int = MAX_DOCUMENT_BYTES) -> bytes | None:
    """The body, or None once it grows past the cap (checked while streaming, not after)."""
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > cap:
        return None
    body = bytearray()
    async for chunk in response.aiter_bytes():
        body += chunk
        if len(body) > cap:
            return None
    return bytes(body)


@dataclass(frozen=True)
class BoundedResponse:
    """A response read whole within the deadline; ``body`` is None when it was larger than the cap."""

    status: int
    headers: httpx2.Headers
    body: bytes | None
    elapsed_ms: float

    def json(self) -> Any:
        """The body as JSON, or None when it is absent, too big, not JSON or nested too deeply."""
        if self.body is None:
            return None
        try:
            return json.loads(self.body)
        except (ValueError, RecursionError):
            return None


async def bounded_request(
    http: httpx2.AsyncClient, method: str, url: str, *, cap: int, deadline: float = OAUTH_REQUEST_DEADLINE_S,
    **kwargs: Any,
) -> BoundedResponse:
    """One request whose whole exchange ends within ``deadline`` seconds, its body capped at ``cap`` bytes.

    Raises ``TimeoutError`` at the deadline and the client's ``httpx2.HTTPError`` for transport
    failures; callers turn both into their own typed errors.
    """
    started = time.monotonic()
    with anyio.fail_after(deadline):
        async with http.stream(method, url, **kwargs) as response:
            body = await _read_capped(response, cap)
            return BoundedResponse(
                response.status_code, response.headers, body, round((time.monotonic() - started) * 1000, 1)
            )


async def fetch_json_object(
    http: httpx2.AsyncClient, url: str, *, what: str, server: str | None, correlation_id: str | None
) -> dict[str, Any] | None:
    """The JSON object at ``url``; None when nothing is published there.

    "Nothing" is any status but 200, a transport failure, or an HTML page (sites that answer every
    path with their web app). A 200 that is too big, not JSON, or not an object raises.
    """
    import httpx2

    try:
        with anyio.fail_after(DOCUMENT_DEADLINE_S):
            async with http.stream(
                "GET", url, headers={"Accept": "application/json"}, follow_redirects=True
            ) as response:
                status = response.status_code
                content_type = response.headers.get("content-type", "").lower()
                if status != 200 or content_type.startswith("text/html"):
                    diaglog.event(
                        "discovery_document_absent", server=server, correlation_id=correlation_id,
                        what=what, url=url, status=status, content_type=content_type or None,
                    )
                    return None
                raw = await _read_capped(response)
    except TimeoutError:
        # A document that trickles (or a server that holds the request open) is broken, not absent:
        # moving on would end in some unrelated error later (a "registration failed" for a server
        # whose metadata never arrived).
        raise _slow_or_looping(what, url, f"it did not arrive within {DOCUMENT_DEADLINE_S:g} s",
                               server=server, correlation_id=correlation_id) from None
    except (httpx2.TooManyRedirects, httpx2.ReadTimeout, httpx2.WriteTimeout) as exc:
        why = "its URL redirects in a loop" if isinstance(exc, httpx2.TooManyRedirects) else (
            "the server stopped sending it (read timeout)"
        )
        raise _slow_or_looping(what, url, why, server=server, correlation_id=correlation_id) from None
    except (httpx2.HTTPError, httpx2.InvalidURL) as exc:
        diaglog.event(
            "discovery_document_unreachable", server=server, correlation_id=correlation_id, level="warning",
            what=what, url=url, error=type(exc).__name__,
        )
        return None
    data: Any = None
    problem: str | None = None
    if raw is None:
        problem = f"the document is larger than {MAX_DOCUMENT_BYTES // 1024} KiB"
    else:
        try:
            data = json.loads(raw)
        except (ValueError, RecursionError):
            problem = "the document is not valid JSON"
        else:
            if not isinstance(data, dict):
                problem = f"the document is a JSON {_json_kind(data)}, not an object"
    if problem is not None:
        raise document_error(what, url, problem, server=server, correlation_id=correlation_id)
    diaglog.event("discovery_document_found", server=server, correlation_id=correlation_id, what=what, url=url)
    return cast(dict[str, Any], data)


def _slow_or_looping(
    what: str, url: str, problem: str, *, server: str | None, correlation_id: str | None
) -> McpRelayError:
    diaglog.event("discovery_document_broken", server=server, correlation_id=correlation_id, level="error",
                  what=what, url=url, problem=problem)
    return document_error(
        what, url, problem, server=server, correlation_id=correlation_id,
        suggestion="the server's metadata endpoint is misbehaving; try again later or report it to its operator",
    )


def _json_kind(value: Any) -> str:
    if isinstance(value, list):
        return "array"
    if isinstance(value, str):
        return "string"
    if isinstance(value, bool) or value is None:
        return "literal"
    return "number"


def validate_document(
    model: type[ModelT], data: dict[str, Any], *, what: str, url: str, server: str | None, correlation_id: str | None
) -> ModelT:
    """Validate with pydantic, turning its error into one line that names the offending fields."""
    try:
        return model.model_validate(data)
    except pydantic.ValidationError as exc:
        fields = []
        for error in exc.errors()[:3]:
            location = ".".join(str(part) for part in error["loc"]) or "(document)"
            fields.append(f"{location}: {error['msg'].lower()}")
        more = f" (and {exc.error_count() - 3} more)" if exc.error_count() > 3 else ""
        raise document_error(
            what, url, "; ".join(fields) + more, server=server, correlation_id=correlation_id
        ) from None
