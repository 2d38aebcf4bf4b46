"""The stored grant: the tokens plus everything needed to refresh them without rediscovery.

One record per server under ``tokens/<server>``. The grant identity is (server, issuer, client id):
a different issuer or client means a different grant, and a record that no longer matches the
current registration is never refreshed with it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from mcprelay.errors import ErrorType, McpRelayError
from mcprelay.oauth.rfc6749 import TokenSet
from mcprelay.store.base import TokenStore


def token_key(server: str) -> str:
    return f"tokens/{server}"


@dataclass
class StoredGrant:
    server: str
    issuer: str
    client_id: str
    resource: str
    token_endpoint: str
    registration_kind: str
    tokens: TokenSet
    redirect_uri: str | None = None
    token_endpoint_auth_method: str = "none"
    requested_scope: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def grant_id(self) -> str:
        return f"{self.server}|{self.issuer}|{self.client_id}"

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["tokens"] = self.tokens.to_dict()
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> StoredGrant:
        fields = {k: data[k] for k in cls.__dataclass_fields__ if k in data and k != "tokens"}
        return cls(tokens=TokenSet.from_dict(data["tokens"]), **fields)


def load_grant(store: TokenStore, server: str) -> StoredGrant | None:
    data = store.get(token_key(server))
    if not data:
        return None
    try:
        return StoredGrant.from_dict(data)
    except (KeyError, TypeError) as exc:
        raise McpRelayError(
            ErrorType.TOKEN_STORE_UNAVAILABLE,
            f"the stored tokens for {server} are in an unknown format ({type(exc).__name__})",
            suggestion=f"run `mcprelay auth logout --server {server}` and log in again",
            server=server,
        ) from None
