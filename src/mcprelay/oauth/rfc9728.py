"""Protected resource metadata (RFC 9728) and the identity of a resource (RFC 8707).

The ``resource`` a server advertises decides which audience our tokens are minted for, so it is
checked against the URL the user configured before anything else happens: a server must not be
able to send us off to obtain tokens for some other resource.
"""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field

from mcprelay import diaglog
from mcprelay.errors import ErrorType, McpRelayError
from mcprelay.oauth._documents import fetch_json_object, validate_document

if TYPE_CHECKING:
    import httpx2

WELL_KNOWN = "/.well-known/oauth-protected-resource"
_DEFAULT_PORTS = {"http": 80, "https": 443}
_WHAT = "protected resource metadata"


class ProtectedResourceMetadata(BaseModel):
    model_config = ConfigDict(extra="ignore")

    resource: str
    authorization_servers: list[str] = Field(default_factory=list)
    scopes_supported: list[str] | None = None
    bearer_methods_supported: list[str] | None = None
    resource_name: str | None = None
    resource_documentation: str | None = None
    dpop_bound_access_tokens_required: bool = False  # RFC 9449 §7.1 / RFC 9728 §2
    dpop_signing_alg_values_supported: list[str] | None = None


def _split(url: str) -> tuple[str, str, int, str]:
    """(scheme, host, port, path) with scheme and host lower-cased; ValueError if not http(s)."""
    parts = urlsplit(url.strip())
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS or not parts.hostname:
        raise ValueError(f"not an http(s) URL: {url!r}")
    port = parts.port  # raises ValueError for a malformed port
    return scheme, parts.hostname, port if port is not None else _DEFAULT_PORTS[scheme], parts.path


def origin(url: str) -> str:
    """``scheme://host[:port]``, lower-cased and without a default port."""
    scheme, host, port, _ = _split(url)
    netloc = f"[{host}]" if ":" in host else host
    if port != _DEFAULT_PORTS[scheme]:
        netloc += f":{port}"
    return f"{scheme}://{netloc}"


def canonical_resource(url: str) -> str:
    """The canonical URI of an MCP server, used as the RFC 8707 ``resource``.

    Scheme and host are lower-cased and a default port dropped (they do not change the identity),
    the path keeps its case. Fragment and query go: RFC 8707 forbids the first and discourages the
    second, which is also where API keys end up. No trailing slash, not even for a bare origin, as
    the MCP specification recommends, because authorization servers compare the value as a string.
    """
    _, _, _, path = _split(url)
    return origin(url) + path.rstrip("/")


def _segments(path: str) -> list[str]:
    return path.rstrip("/").split("/")[1:] if path.rstrip("/") else []


def resource_matches(advertised: str, server_url: str) -> bool:
    """Whether the advertised resource covers the server: same origin, path a prefix by segments.

    Segments, not characters: ``/mcp`` covers ``/mcp/v2`` but not ``/mcpx``.
    """
    try:
        a_scheme, a_host, a_port, a_path = _split(advertised)
        s_scheme, s_host, s_port, s_path = _split(server_url)
    except ValueError:
        return False
    if (a_scheme, a_host, a_port) != (s_scheme, s_host, s_port):
        return False
    prefix, full = _segments(a_path), _segments(s_path)
    return full[: len(prefix)] == prefix


def prm_urls(server_url: str, header_url: str | None = None) -> list[str]:
    """Where to look, in order: the challenge's URL, then path insertion, then the root form.

    The well-known forms stay in the list after a header URL, because servers behind proxies
    sometimes advertise a URL that the proxy does not route.
    """
    path = urlsplit(server_url.strip()).path.rstrip("/")
    base = origin(server_url) + WELL_KNOWN
    urls = [header_url] if header_url else []
    if path:
        urls.append(base + path)
    urls.append(base)
    return list(dict.fromkeys(urls))


async def fetch_protected_resource_metadata(
    http: httpx2.AsyncClient,
    server_url: str,
    header_url: str | None,
    *,
    server: str | None,
    correlation_id: str | None,
) -> ProtectedResourceMetadata | None:
    """The first usable document, None when the server publishes none (a 2025-03-26 server).

    A document that is present but unusable, or that is for another resource, stops discovery:
    falling through to the next URL would let a broken or hostile document go unnoticed.
    """
    for url in prm_urls(server_url, header_url):
        data = await fetch_json_object(http, url, what=_WHAT, server=server, correlation_id=correlation_id)
        if data is None:
            continue
        metadata = validate_document(
            ProtectedResourceMetadata, data, what=_WHAT, url=url, server=server, correlation_id=correlation_id
        )
        if not resource_matches(metadata.resource, server_url):
            expected = canonical_resource(server_url)
            diaglog.event(
                "discovery_resource_mismatch", server=server, correlation_id=correlation_id, level="error",
                url=url, advertised=metadata.resource, expected=expected,
            )
            raise McpRelayError(
                ErrorType.METADATA_DISCOVERY_FAILED,
                f"the {_WHAT} at {url} is for resource {metadata.resource!r}, "
                f"not for the configured server {expected!r}",
                suggestion="check the server URL in the configuration; mcprelay will not obtain tokens "
                "for a resource other than the server it talks to",
                server=server,
                correlation_id=correlation_id,
                details={"url": url, "advertised_resource": metadata.resource, "expected_resource": expected},
            )
        diaglog.event(
            "discovery_protected_resource", server=server, correlation_id=correlation_id, url=url,
            resource=metadata.resource, authorization_servers=metadata.authorization_servers,
            scopes_supported=metadata.scopes_supported,
        )
        return metadata
    return None
