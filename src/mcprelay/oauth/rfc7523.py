"""RFC 7523: JWTs for OAuth — as client authentication (``private_key_jwt``) and as a grant.

Two uses of one idea:

- **Client authentication** (§2.2): instead of a shared secret, the client signs a short-lived JWT
  (``iss`` = ``sub`` = client id, ``aud`` = the authorization server's issuer, ``jti``, ``exp``) with
  its private key; the server holds only the public key. The key is read from a file or an
  environment variable at every use (see :mod:`mcprelay.oauth.material`), ES256 or RS256.
- **The JWT-bearer grant** (§2.1): a JWT issued by someone the authorization server trusts (a
  workload's identity token, an enterprise IdP's ID-JAG) is exchanged for an access token.
"""

from __future__ import annotations

import json
import secrets
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from mcprelay.errors import ErrorType, McpRelayError
from mcprelay.oauth.material import read_material

if TYPE_CHECKING:
    from joserfc.jwk import ECKey, RSAKey

    from mcprelay.config import OAuthConfig

JWT_BEARER_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
CLIENT_ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
ASSERTION_LIFETIME_S = 60  # long enough for clock skew, short enough to be useless when captured


@dataclass(frozen=True)
class SigningKey:
    """A private key and the JWS algorithm it signs with."""

    key: ECKey | RSAKey = field(repr=False)
    alg: str

    def sign(self, claims: dict[str, object], *, typ: str = "JWT") -> str:
        from joserfc import jws

        header = {"alg": self.alg, "typ": typ}
        return jws.serialize_compact(header, json.dumps(claims, separators=(",", ":")), self.key)


def signing_key_from_pem(pem: str, *, alg: str, server: str, where: str) -> SigningKey:
    """Import a PEM private key (PKCS#8 or traditional) and pick or check the algorithm."""
    from joserfc.jwk import ECKey, RSAKey

    def bad(problem: str) -> McpRelayError:
        return McpRelayError(
            ErrorType.CONFIG_INVALID,
            f"the private key for {server} ({where}) {problem}",
            suggestion="use an EC P-256 key (ES256) or an RSA key of 2048 bits or more (RS256), in PEM",
            server=server,
        )

    key: ECKey | RSAKey
    try:
        if "BEGIN RSA" in pem:
            key = RSAKey.import_key(pem)
        elif "BEGIN EC" in pem:
            key = ECKey.import_key(pem)
        else:
            try:
                key = ECKey.import_key(pem)
            except Exception:
                key = RSAKey.import_key(pem)
    except Exception:
        raise bad("is not a PEM private key mcprelay can read") from None
    if not key.is_private:
        raise bad("is a public key; the private key is needed to sign")
    if isinstance(key, ECKey):
        if key.curve_name != "P-256":
            raise bad(f"is on curve {key.curve_name}; ES256 needs P-256")
        chosen = alg or "ES256"
        if chosen != "ES256":
            raise bad(f"is an EC key, but oauth.signing_alg is {alg}")
    else:
        if key.raw_value.key_size < 2048:
            raise bad(f"has {key.raw_value.key_size} bits; RS256 needs 2048 or more")
        chosen = alg or "RS256"
        if chosen != "RS256":
            raise bad(f"is an RSA key, but oauth.signing_alg is {alg}")
    return SigningKey(key, chosen)


def load_signing_key(oauth: OAuthConfig, server: str) -> SigningKey:
    """The configured ``private_key_jwt`` key, read now (it may have been rotated on disk)."""
    pem = read_material(
        "the private key", file=oauth.private_key_file, env=oauth.private_key_env, server=server,
        key="oauth.private_key",
    )
    where = f"oauth.private_key_env {oauth.private_key_env}" if oauth.private_key_env else (
        f"oauth.private_key_file {oauth.private_key_file}"
    )
    return signing_key_from_pem(pem, alg=oauth.signing_alg, server=server, where=where)


def client_assertion(key: SigningKey, *, client_id: str, audience: str, now: float | None = None) -> str:
    """A ``private_key_jwt`` assertion for one token request (RFC 7523 §3, RFC 7521 §4.2)."""
    issued = int(now if now is not None else time.time())
    claims: dict[str, object] = {
        "iss": client_id,
        "sub": client_id,
        "aud": audience,
        "iat": issued,
        "exp": issued + ASSERTION_LIFETIME_S,
        "jti": secrets.token_urlsafe(16),
    }
    return key.sign(claims)


def check_signing_alg(key: SigningKey, supported: list[str] | None, *, server: str, issuer: str) -> None:
    """Refuse before sending when the authorization server says it cannot verify our algorithm."""
    if supported and key.alg not in supported:
        raise McpRelayError(
            ErrorType.CONFIG_INVALID,
            f"the authorization server {issuer} accepts client assertions signed with {', '.join(supported)}, "
            f"but the configured key signs {key.alg}",
            suggestion="configure a key of a type the server accepts (EC P-256 for ES256, RSA for RS256)",
            server=server,
            details={"supported": supported, "alg": key.alg},
        )


def jwt_bearer_form(assertion: str, *, scope: str | None, resource: str | None) -> dict[str, str]:
    """The token request of the JWT-bearer grant (RFC 7523 §2.1), with RFC 8707 ``resource``."""
    form = {"grant_type": JWT_BEARER_GRANT, "assertion": assertion}
    if scope:
        form["scope"] = scope
    if resource:
        form["resource"] = resource
    return form
