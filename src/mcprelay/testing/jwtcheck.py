"""JWT and DPoP proof checks for the strict test servers (the server side of RFC 7523 and RFC 9449).

Written separately from the client code it judges (:mod:`mcprelay.oauth.rfc9449`,
:mod:`mcprelay.oauth.rfc7523`) so that a shared misunderstanding would show up as a failing test
rather than agree with itself; both use joserfc only for the signature primitives.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import time
from typing import Any
from urllib.parse import urlsplit

from joserfc import jws
from joserfc.jwk import ECKey, RSAKey

ASYMMETRIC_ALGS = ("ES256", "ES384", "ES512", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "EdDSA")
IAT_WINDOW_S = 300


class ProofError(Exception):
    """A proof or assertion the server refuses; ``str()`` says why."""


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def sign_jwt(key: ECKey | RSAKey, claims: dict[str, Any], *, typ: str | None = None, alg: str | None = None) -> str:
    """A compact JWS of ``claims`` (what an IdP, a workload platform or a client would send)."""
    header: dict[str, Any] = {"alg": alg or ("ES256" if isinstance(key, ECKey) else "RS256")}
    if typ:
        header["typ"] = typ
    return jws.serialize_compact(header, json.dumps(claims), key)


def new_key() -> ECKey:
    return ECKey.generate_key("P-256")


def _decode_unverified(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    def pad(part: str) -> str:
        return part + "=" * (-len(part) % 4)

    try:
        head, body, _sig = token.split(".")
        header = json.loads(base64.urlsafe_b64decode(pad(head)))
        claims = json.loads(base64.urlsafe_b64decode(pad(body)))
    except (ValueError, TypeError) as exc:
        raise ProofError("not a well-formed JWT") from exc
    if not isinstance(header, dict) or not isinstance(claims, dict):
        raise ProofError("not a well-formed JWT")
    return header, claims


def unverified_header(token: str) -> dict[str, Any]:
    return _decode_unverified(token)[0]


def unverified_claims(token: str) -> dict[str, Any]:
    return _decode_unverified(token)[1]


def import_public(jwk: dict[str, Any]) -> ECKey | RSAKey:
    if jwk.get("kty") == "EC":
        return ECKey.import_key(jwk)
    if jwk.get("kty") == "RSA":
        return RSAKey.import_key(jwk)
    raise ProofError(f"unsupported key type {jwk.get('kty')!r}")


def verify_jwt(
    token: str, key: ECKey | RSAKey, *, audience: str | list[str], now: float | None = None
) -> dict[str, Any]:
    """The claims of a signed JWT whose ``aud`` matches and that is in its validity window."""
    header, _ = _decode_unverified(token)
    if header.get("alg") not in ASYMMETRIC_ALGS:
        raise ProofError(f"alg {header.get('alg')!r} not accepted")
    try:
        verified = jws.deserialize_compact(token, key, algorithms=[str(header["alg"])])
    except Exception as exc:
        raise ProofError("signature does not verify") from exc
    claims = json.loads(verified.payload)
    t = now if now is not None else time.time()
    exp = claims.get("exp")
    if not isinstance(exp, int | float):
        raise ProofError("exp is missing")
    if exp + 5 < t:
        raise ProofError("the JWT is expired")
    nbf = claims.get("nbf")
    if isinstance(nbf, int | float) and nbf - 5 > t:
        raise ProofError("the JWT is not valid yet")
    wanted = [audience] if isinstance(audience, str) else audience
    aud = claims.get("aud")
    auds = aud if isinstance(aud, list) else [aud]
    if not any(a in wanted for a in auds):
        raise ProofError(f"aud {aud!r} is not {wanted[0]!r}")
    return dict(claims)


def _norm_htu(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme.lower()}://{parts.netloc.lower()}{parts.path.rstrip('/')}"


def check_dpop_proof(
    proof: str | None,
    *,
    method: str,
    url: str,
    access_token: str | None = None,
    nonce: str | None = None,
    seen_jtis: set[str] | None = None,
    now: float | None = None,
) -> tuple[str, dict[str, Any]]:
    """RFC 9449 §4.3: (the key's RFC 7638 thumbprint, the claims); raises :class:`ProofError`.

    ``nonce``: the nonce the proof must carry (a missing or stale one raises ``ProofError("nonce")``).
    """
    if not proof:
        raise ProofError("missing DPoP proof")
    if "," in proof:
        raise ProofError("more than one DPoP proof")
    header, _ = _decode_unverified(proof)
    if header.get("typ") != "dpop+jwt":
        raise ProofError("typ must be dpop+jwt")
    alg = header.get("alg")
    if alg not in ASYMMETRIC_ALGS:
        raise ProofError("alg must be asymmetric")
    jwk = header.get("jwk")
    if not isinstance(jwk, dict):
        raise ProofError("jwk header missing")
    if "d" in jwk:
        raise ProofError("jwk contains a private key")
    key = import_public(jwk)
    try:
        verified = jws.deserialize_compact(proof, key, algorithms=[str(alg)])
    except Exception as exc:
        raise ProofError("signature does not verify") from exc
    claims = json.loads(verified.payload)
    jti = claims.get("jti")
    if not isinstance(jti, str) or not jti:
        raise ProofError("jti missing")
    if claims.get("htm") != method.upper():
        raise ProofError("htm does not match")
    htu = claims.get("htu")
    if not isinstance(htu, str) or "?" in htu or "#" in htu or _norm_htu(htu) != _norm_htu(url):
        raise ProofError("htu does not match")
    iat = claims.get("iat")
    t = now if now is not None else time.time()
    if not isinstance(iat, int | float) or abs(t - iat) > IAT_WINDOW_S:
        raise ProofError("iat outside the window")
    if access_token is not None:
        ath = b64url(hashlib.sha256(access_token.encode("ascii")).digest())
        if claims.get("ath") != ath:
            raise ProofError("ath does not match the access token")
    if nonce is not None and claims.get("nonce") != nonce:
        raise ProofError("nonce")
    if seen_jtis is not None:
        if jti in seen_jtis:
            raise ProofError("jti replayed")
        seen_jtis.add(jti)
    return key.thumbprint(), claims


def new_nonce() -> str:
    return secrets.token_urlsafe(12)
