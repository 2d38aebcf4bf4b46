"""Results carried between protocol eras: a 2025-11-25 upstream and a 2026-07-28 client, or the reverse.

The two eras differ in a handful of result fields: 2026-07-28 requires ``resultType`` on every result
and ``ttlMs``/``cacheScope`` on cacheable ones (``resources/read``, the lists), stamps ``serverInfo`` in
``_meta``, and knows nothing of fields some handshake-era revisions had. The SDK's per-version
serializer (``serialize_server_result``) sieves a result into a version's shape and validates it; what
it cannot do is invent the fields the *translation* must add, so those are added here first. A result
an upstream sends for the version the client speaks travels as received (the gateway checks only the
fields every client reads, see :func:`tool_result_problem`).

Blame goes where it belongs: when a translated result does not validate, the original is checked
against the version the upstream itself negotiated. Only a result that is wrong there is the
upstream's fault; otherwise it is mcprelay's translation that failed, and the error says so.
"""

from __future__ import annotations

from typing import Any

from mcp_types import SERVER_INFO_META_KEY
from mcp_types.methods import CACHEABLE_METHODS, serialize_server_result
from mcp_types.version import MODERN_PROTOCOL_VERSIONS
from pydantic import ValidationError

#: The field that carries each result's payload. The SDK's 2026-07-28 result unions resolve a result that
#: fits none of their arms to a bare ``{"resultType": "complete"}`` instead of failing, so a translation
#: that lost this field failed, whatever the serializer said.
_PAYLOAD = {"tools/call": "content", "prompts/get": "messages", "resources/read": "contents",
            "completion/complete": "completion"}

#: What a 2026-07-28 client is told about caching a result that crossed from a handshake-era upstream
#: (which said nothing): do not cache, it is this client's view — the gateway's lists change at will.
_NO_CACHE: dict[str, Any] = {"ttlMs": 0, "cacheScope": "private"}


class TranslationError(Exception):
    """A result could not be shaped for the client's protocol version; ``upstream_at_fault`` says whose fault."""

    def __init__(self, message: str, *, upstream_at_fault: bool) -> None:
        super().__init__(message)
        self.upstream_at_fault = upstream_at_fault


def is_modern(version: str | None) -> bool:
    return version in MODERN_PROTOCOL_VERSIONS


def without_upstream_stamp(result: dict[str, Any]) -> dict[str, Any]:
    """The result without the upstream's ``serverInfo`` stamp: to the agent, the server is mcprelay."""
    meta = result.get("_meta")
    if not isinstance(meta, dict) or SERVER_INFO_META_KEY not in meta:
        return result
    trimmed = {k: v for k, v in result.items() if k != "_meta"}
    rest = {k: v for k, v in meta.items() if k != SERVER_INFO_META_KEY}
    if rest:
        trimmed["_meta"] = rest
    return trimmed


def for_client(
    method: str, result: dict[str, Any], *, upstream_version: str | None, client_version: str
) -> dict[str, Any]:
    """``result`` (as the upstream sent it under ``upstream_version``) in the shape ``client_version`` expects.

    Raises :class:`TranslationError` when it cannot be shaped, saying whether the upstream is to blame.
    """
    result = without_upstream_stamp(result)
    modern = is_modern(client_version)
    if modern:
        if "resultType" not in result:
            result = {"resultType": "complete", **result}
        if method in CACHEABLE_METHODS and result.get("resultType") == "complete":
            result = {**_NO_CACHE, **result}
    if upstream_version is not None and is_modern(upstream_version) == modern:
        return result  # same era: forwarded as received (plus the fields above, which the era requires)
    try:
        shaped = serialize_server_result(method, client_version, result)
    except (ValidationError, KeyError, ValueError) as exc:
        raise _blame(method, result, upstream_version, client_version, exc) from None
    payload = _PAYLOAD.get(method)
    if payload is not None and payload in result and payload not in shaped:
        raise _blame(method, result, upstream_version, client_version, ValueError(f"{payload}: not valid"))
    return shaped


def _blame(
    method: str, result: dict[str, Any], upstream_version: str | None, client_version: str, exc: Exception
) -> TranslationError:
    detail = _first_error(exc)
    if upstream_version is not None:
        payload = _PAYLOAD.get(method)
        try:
            own_shape = serialize_server_result(method, upstream_version, result)
            if payload is not None and payload in result and payload not in own_shape:
                raise ValueError(f"{payload}: not valid")
        except (ValidationError, KeyError, ValueError) as own:
            return TranslationError(
                f"does not match protocol version {upstream_version}, which the server itself negotiated: "
                f"{_first_error(own)}",
                upstream_at_fault=True,
            )
    return TranslationError(
        f"valid under {upstream_version or 'its protocol version'} but mcprelay could not carry it to a "
        f"{client_version} client: {detail}",
        upstream_at_fault=False,
    )


def _first_error(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        errors = exc.errors()
        if errors:
            first = errors[0]
            loc = ".".join(str(p) for p in first.get("loc", ()))
            return f"{loc}: {first.get('msg')}"[:300]
    return str(exc)[:300]


def tool_result_problem(result: dict[str, Any], *, modern: bool = False) -> str | None:
    """What would make a client choke on a tool result, checked without building a model.

    A result in the client's own era is forwarded as received, so this is the gateway's one look at
    it: the fields every client reads, in the types the schema gives them. Anything finer (a content
    block's own fields) is the client's to validate, as it would be without a gateway.
    """
    if result.get("resultType", "complete") != "complete":
        return None  # an input_required round: checked where it is relayed
    content = result.get("content")
    if not isinstance(content, list) or not all(
        isinstance(c, dict) and isinstance(c.get("type"), str) for c in content
    ):
        return "content must be a list of content blocks (objects with a string type)"
    if "isError" in result and not isinstance(result["isError"], bool):
        return "isError must be true or false"
    # 2026-07-28 lets structuredContent be any JSON value; before, it had to be an object.
    if not modern and result.get("structuredContent") is not None and not isinstance(result["structuredContent"], dict):
        return "structuredContent must be an object"
    return None
