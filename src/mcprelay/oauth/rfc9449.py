"""DPoP (RFC 9449): access tokens bound to a key pair, proved on every request.

A DPoP-bound token is useless to whoever copies it: each request also carries a *proof*, a JWT
signed with the client's private key naming the method (``htm``), the URL (``htu``), the time
(``iat``), a unique id (``jti``) and, for resource requests, the hash of the token (``ath``).

When it is used: when the protected resource asks for it (``dpop_bound_access_tokens_required`` in
its metadata, or a ``DPoP`` challenge without a ``Bearer`` one), or when the configuration says so
(``oauth.dpop: true``). Never merely because the authorization server supports it: the resource
server must accept the ``DPoP`` scheme, and one that expects Bearer would refuse the token.

One key pair per grant. It is created at login, kept in the stored grant (the store seals it like
the tokens), and used for the token request, every refresh and every resource request. Servers may
demand a fresh nonce (§8 at the authorization server, §9 at the resource server): the answer
carrying ``use_dpop_nonce`` and a ``DPoP-Nonce`` header is retried once with a new proof, and the
newest nonce of each endpoint is kept for the next request.

Cost for servers without DPoP: one string comparison per request (:func:`key_for_tokens`).
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import time
from collections import OrderedDict
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

from mcprelay.errors import ErrorType, McpRelayError

if TYPE_CHECKING:
    from joserfc.jwk import ECKey, RSAKey

    from mcprelay.oauth.rfc6750 import Challenge
    from mcprelay.oauth.rfc9728 import ProtectedResourceMetadata

SCHEME = "DPoP"
NONCE_HEADER = "dpop-nonce"
USE_NONCE = "use_dpop_nonce"
GRANT_EXTRA_KEY = "dpop"
SUPPORTED_ALGS = ("ES256", "RS256")
_CACHE_SIZE = 64


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def access_token_hash(token: str) -> str:
    """``ath``: base64url(SHA-256(the ASCII access token)) (§4.2)."""
    return _b64url(hashlib.sha256(token.encode("ascii")).digest())


def target_uri(url: str) -> str:
    """``htu``: the request URI without query and fragment (§4.2)."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, parts.path or "/", "", ""))


class DPoPKey:
    """One grant's key pair, and the nonces servers gave it (in memory, per endpoint: an authorization
    server and a resource server may share an origin and still hand out different nonces)."""

    def __init__(self, key: ECKey | RSAKey, alg: str) -> None:
        self._key = key
        self.alg = alg
        self.public_jwk: dict[str, Any] = dict(key.as_dict(private=False))
        self.thumbprint = key.thumbprint()
        self.nonces: dict[str, str] = {}
        self._header_json = {"typ": "dpop+jwt", "alg": alg, "jwk": self.public_jwk}

    def __repr__(self) -> str:
        return f"DPoPKey(alg={self.alg!r}, jkt={self.thumbprint!r})"

    @classmethod
    def generate(cls, alg: str = "ES256") -> DPoPKey:
        from joserfc.jwk import ECKey, RSAKey

        if alg == "ES256":
            key = cls(ECKey.generate_key("P-256"), alg)
        elif alg == "RS256":
            key = cls(RSAKey.generate_key(2048), alg)
        else:
            raise ValueError(f"unsupported DPoP algorithm {alg!r}")
        _remember(_ident(key.public_jwk), key)  # the nonces it learns at login serve its refreshes too
        return key

    def to_dict(self) -> dict[str, Any]:
        """The private key as a JWK, for the sealed grant record."""
        return {"alg": self.alg, "jwk": dict(self._key.as_dict(private=True))}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DPoPKey:
        from joserfc.jwk import ECKey, RSAKey

        jwk = data["jwk"]
        key: ECKey | RSAKey = ECKey.import_key(jwk) if jwk.get("kty") == "EC" else RSAKey.import_key(jwk)
        return cls(key, str(data.get("alg") or ("ES256" if jwk.get("kty") == "EC" else "RS256")))

    def proof(self, method: str, url: str, *, access_token: str | None = None, now: float | None = None) -> str:
        """A fresh proof for one request (a new ``jti`` every time, the endpoint's latest nonce)."""
        from joserfc import jws

        claims: dict[str, Any] = {
            "jti": secrets.token_urlsafe(16),
            "htm": method.upper(),
            "htu": target_uri(url),
            "iat": int(now if now is not None else time.time()),
        }
        if access_token is not None:
            claims["ath"] = access_token_hash(access_token)
        nonce = self.nonces.get(target_uri(url))
        if nonce:
            claims["nonce"] = nonce
        return jws.serialize_compact(self._header_json, json.dumps(claims, separators=(",", ":")), self._key)

    def remember_nonce(self, url: str, headers: Any) -> bool:
        """Keep a ``DPoP-Nonce`` the server sent (on any answer); True when it is a new one."""
        nonce = headers.get(NONCE_HEADER) if headers is not None else None
        if not nonce or len(nonce) > 512:
            return False
        where = target_uri(url)
        if self.nonces.get(where) == nonce:
            return False
        self.nonces[where] = nonce
        return True


_cache: OrderedDict[str, DPoPKey] = OrderedDict()


def key_from_extra(extra: dict[str, Any]) -> DPoPKey | None:
    """The grant's key (one object per key in this process, so nonces are shared), or None."""
    data = extra.get(GRANT_EXTRA_KEY)
    if not isinstance(data, dict) or not isinstance(data.get("jwk"), dict):
        return None
    ident = _ident(data["jwk"])
    key = _cache.get(ident)
    if key is None:
        try:
            key = DPoPKey.from_dict(data)
        except Exception:
            raise McpRelayError(
                ErrorType.TOKEN_STORE_UNAVAILABLE,
                "the DPoP key stored with the login is unreadable",
                suggestion="log in again (`mcprelay auth login --server NAME --force`)",
            ) from None
        _remember(ident, key)
    return key


def _ident(jwk: dict[str, Any]) -> str:
    return f"{jwk.get('kty')}:{jwk.get('x') or jwk.get('n')}:{jwk.get('y', '')}"


def _remember(ident: str, key: DPoPKey) -> None:
    _cache[ident] = key
    while len(_cache) > _CACHE_SIZE:
        _cache.popitem(last=False)


def key_for_tokens(token_type: str, extra: dict[str, Any]) -> DPoPKey | None:
    """The key to prove with when presenting these tokens; None for Bearer tokens (the common case)."""
    if token_type != SCHEME:
        return None
    return key_from_extra(extra)


def wanted(configured: bool | None, challenge: Challenge | None, prm: ProtectedResourceMetadata | None) -> bool:
    """Whether a login should bind its tokens with DPoP (see the module docstring)."""
    if configured is not None:
        return configured
    if prm is not None and prm.dpop_bound_access_tokens_required:
        return True
    return challenge is not None and challenge.scheme == "dpop"


def choose_alg(as_algs: list[str] | None, rs_algs: list[str] | None, *, server: str) -> str:
    """ES256 unless the servers name algorithms without it; RS256 as the fallback."""
    allowed = [a for a in SUPPORTED_ALGS if (not as_algs or a in as_algs) and (not rs_algs or a in rs_algs)]
    if not allowed:
        raise McpRelayError(
            ErrorType.METADATA_DISCOVERY_FAILED,
            f"DPoP is required for {server}, but the servers accept only proof algorithms "
            f"{', '.join(as_algs or rs_algs or [])}; mcprelay signs ES256 or RS256",
            suggestion="ask the operator to allow ES256 (or RS256) DPoP proofs",
            server=server,
            details={"authorization_server": as_algs, "resource_server": rs_algs},
        )
    return allowed[0]


def nonce_requested(status: int, headers: Any, body_error: str | None = None) -> bool:
    """An answer asking for a (new) nonce: ``use_dpop_nonce`` from the AS (400) or the RS (401)."""
    if not headers.get(NONCE_HEADER):
        return False
    if body_error == USE_NONCE:
        return True
    if status == 401:
        from mcprelay.oauth.rfc6750 import parse_www_authenticate

        values = headers.get_list("www-authenticate") if hasattr(headers, "get_list") else [
            headers.get("www-authenticate", "")
        ]
        return any(c.scheme == "dpop" and c.error == USE_NONCE for c in parse_www_authenticate(values))
    return False


def present(request: Any, token: str, key: DPoPKey | None) -> None:
    """Put the token on ``request`` (an ``httpx2.Request``): Bearer, or DPoP with a fresh proof."""
    if key is None:
        request.headers["Authorization"] = f"Bearer {token}"
        return
    request.headers["Authorization"] = f"{SCHEME} {token}"
    request.headers["DPoP"] = key.proof(request.method, str(request.url), access_token=token)


def resource_nonce_retry(request: Any, response: Any, key: DPoPKey | None) -> bool:
    """After a resource answer: keep its nonce; True when it asked for one and the request is worth resending."""
    if key is None:
        return False
    fresh = key.remember_nonce(str(request.url), response.headers)
    return fresh and response.status_code == 401 and nonce_requested(401, response.headers)
