"""Which request a server's message belongs to, on streamable HTTP: told by the stream it arrived on.

A server working on a request may send log messages and requests of its own (elicitation, sampling,
roots) before it answers. Over streamable HTTP those travel on the response stream of the POST that
carried the request — the only place the protocol records what they relate to. The SDK's client
transport reads that stream but hands its messages on without saying which POST they came from, so
a gateway sharing one upstream session between many agents could not tell whom to ask.

:class:`RelatedRequestTagging` is an ``httpx`` transport that notes the JSON-RPC id of every request
POSTed through it and, in the server-sent events of that POST's response, adds that id to the
``_meta`` of each server request and log message under :data:`RELATED_REQUEST_META_KEY`, before the
SDK parses them. The key is mcprelay's own (a reverse-domain name, as the spec asks); the gateway
reads it from the callback's ``_meta`` and removes it before anything goes further.

Only those messages are touched: responses, progress (which the SDK routes by token already) and
everything on other streams pass through byte for byte. Over stdio there is one stream and no such
record at all; the gateway attributes those messages by what is in flight instead.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx2

RELATED_REQUEST_META_KEY = "dev.mcprelay/relatedRequest"

#: The server messages worth attributing: the ones that must reach the agent whose request caused them.
_TAGGED_METHODS = frozenset({"elicitation/create", "sampling/createMessage", "roots/list", "notifications/message"})


def related_request(meta: Any) -> str | int | None:
    """The tag :class:`RelatedRequestTagging` put in a message's ``_meta``, if any."""
    if isinstance(meta, dict):
        value = meta.get(RELATED_REQUEST_META_KEY)
        if isinstance(value, str | int) and not isinstance(value, bool):
            return value
    return None


def untagged(meta: Any) -> Any:
    """``meta`` without the tag (``None`` when nothing else was in it)."""
    if not isinstance(meta, dict) or RELATED_REQUEST_META_KEY not in meta:
        return meta
    rest = {k: v for k, v in meta.items() if k != RELATED_REQUEST_META_KEY}
    return rest or None


class RelatedRequestTagging(httpx2.AsyncBaseTransport):
    """Wraps another transport; see the module docstring."""

    def __init__(self, inner: httpx2.AsyncBaseTransport) -> None:
        self._inner = inner

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        response = await self._inner.handle_async_request(request)
        if request.method != "POST" or "text/event-stream" not in response.headers.get("content-type", ""):
            return response
        request_id = _request_id(request)
        if request_id is None:
            return response
        return httpx2.Response(
            response.status_code,
            headers=response.headers,
            stream=_TaggedStream(response.stream, request_id),
            extensions=response.extensions,
            request=request,
        )

    async def aclose(self) -> None:
        await self._inner.aclose()


def _request_id(request: httpx2.Request) -> str | int | None:
    try:
        body = request.content
    except Exception:  # a streamed body (never the SDK's): nothing to learn from it
        return None
    if b'"method"' not in body or b'"id"' not in body:
        return None
    try:
        message = json.loads(body)
    except ValueError:
        return None
    if isinstance(message, dict) and isinstance(message.get("method"), str):
        request_id = message.get("id")
        if isinstance(request_id, str | int) and not isinstance(request_id, bool):
            return request_id
    return None


class _TaggedStream(httpx2.AsyncByteStream):
    """A server-sent-events byte stream with the tag added to the messages worth attributing."""

    def __init__(self, inner: Any, request_id: str | int) -> None:
        self._inner = inner
        self._request_id = request_id

    async def __aiter__(self) -> AsyncIterator[bytes]:
        pending = b""
        async for chunk in self._inner:
            pending += chunk
            # Events end with a blank line; an event may arrive in pieces, so only whole ones are looked at.
            cut = max(pending.rfind(b"\n\n"), pending.rfind(b"\r\n\r\n"))
            if cut < 0:
                continue
            end = cut + (4 if pending.startswith(b"\r\n\r\n", cut) else 2)
            head, pending = pending[:end], pending[end:]
            yield _tag_events(head, self._request_id) if b'"method"' in head else head
        if pending:
            yield pending

    async def aclose(self) -> None:
        await self._inner.aclose()


def _tag_events(block: bytes, request_id: str | int) -> bytes:
    """Whole SSE events, each message worth attributing tagged; anything unexpected left as it was."""
    crlf = b"\r\n\r\n" in block
    separator = b"\r\n\r\n" if crlf else b"\n\n"
    newline = b"\r\n" if crlf else b"\n"
    out = []
    for event in block.split(separator):
        if b'"method"' in event:
            event = _tag_event(event, request_id, newline)
        out.append(event)
    return separator.join(out)


def _tag_event(event: bytes, request_id: str | int, newline: bytes) -> bytes:
    lines = event.split(newline)
    data = [line[5:].removeprefix(b" ") for line in lines if line.startswith(b"data:")]
    if not data:
        return event
    try:
        message = json.loads(b"\n".join(data))
    except ValueError:
        return event
    if not isinstance(message, dict) or message.get("method") not in _TAGGED_METHODS:
        return event
    params = message.get("params")
    if params is None:
        params = {}
    if not isinstance(params, dict):
        return event
    meta = params.get("_meta")
    if meta is not None and not isinstance(meta, dict):
        return event
    message["params"] = {**params, "_meta": {**(meta or {}), RELATED_REQUEST_META_KEY: request_id}}
    kept = [line for line in lines if not line.startswith(b"data:")]
    encoded = json.dumps(message, separators=(",", ":"), ensure_ascii=False).encode()
    return newline.join([*kept, b"data: " + encoded])
