"""Pure pieces of the OAuth extensions: redaction, DPoP proofs, device responses, challenges, assertions."""

from __future__ import annotations

import pytest
from joserfc.jwk import ECKey

from mcprelay.errors import McpRelayError
from mcprelay.oauth.redact import form_secrets, redact
from mcprelay.oauth.rfc6750 import auth_challenge
from mcprelay.oauth.rfc7523 import client_assertion, signing_key_from_pem
from mcprelay.oauth.rfc8628 import instructions, parse_device_authorization
from mcprelay.oauth.rfc9449 import DPoPKey, access_token_hash, key_from_extra, target_uri, wanted
from mcprelay.testing.jwtcheck import ProofError, check_dpop_proof, unverified_claims, verify_jwt


def test_redact_removes_raw_and_form_encoded_secrets() -> None:
    form = {"grant_type": "authorization_code", "code": "c0de+/=x", "code_verifier": "v" * 43}
    text = "bad request: grant_type=authorization_code&code=c0de%2B%2F%3Dx&code_verifier=" + "v" * 43
    out = redact(text, form_secrets(form))
    assert "v" * 43 not in out and "c0de" not in out and out.count("[redacted]") == 2
    assert "grant_type=authorization_code" in out


def test_dpop_proof_is_what_a_strict_server_accepts() -> None:
    key = DPoPKey.generate("ES256")
    proof = key.proof("post", "https://rs.example/mcp?x=1#f", access_token="tok")
    jkt, claims = check_dpop_proof(proof, method="POST", url="https://rs.example/mcp", access_token="tok")
    assert jkt == key.thumbprint and claims["htu"] == "https://rs.example/mcp" and claims["ath"] == access_token_hash(
        "tok"
    )
    assert proof != key.proof("POST", "https://rs.example/mcp", access_token="tok")  # a fresh jti each time
    with pytest.raises(ProofError, match="ath"):
        check_dpop_proof(proof, method="POST", url="https://rs.example/mcp", access_token="other")


def test_dpop_nonces_are_kept_per_endpoint() -> None:
    key = DPoPKey.generate("ES256")
    assert key.remember_nonce("https://h/token", {"dpop-nonce": "as-1"})
    assert not key.remember_nonce("https://h/token", {"dpop-nonce": "as-1"})
    assert key.remember_nonce("https://h/mcp", {"dpop-nonce": "rs-1"})
    assert unverified_claims(key.proof("POST", "https://h/token"))["nonce"] == "as-1"
    assert unverified_claims(key.proof("POST", "https://h/mcp"))["nonce"] == "rs-1"
    assert "nonce" not in unverified_claims(key.proof("POST", "https://other/mcp"))


def test_dpop_key_round_trips_through_the_grant_record() -> None:
    key = DPoPKey.generate("RS256")
    again = key_from_extra({"dpop": key.to_dict()})
    assert again is not None and again.thumbprint == key.thumbprint and again.alg == "RS256"
    assert key_from_extra({}) is None
    assert target_uri("https://a.example:8443/p/q?x#y") == "https://a.example:8443/p/q"


def test_dpop_is_wanted_only_when_asked_for() -> None:
    from mcprelay.oauth.rfc6750 import Challenge
    from mcprelay.oauth.rfc9728 import ProtectedResourceMetadata

    prm = ProtectedResourceMetadata(resource="https://r", dpop_bound_access_tokens_required=True)
    assert wanted(None, Challenge("bearer"), prm)
    assert wanted(None, Challenge("dpop"), None)
    assert not wanted(None, Challenge("bearer"), ProtectedResourceMetadata(resource="https://r"))
    assert not wanted(False, Challenge("dpop"), prm) and wanted(True, Challenge("bearer"), None)


def test_auth_challenge_prefers_bearer_and_finds_dpop() -> None:
    assert auth_challenge('DPoP algs="ES256", Bearer realm="x"').scheme == "bearer"  # type: ignore[union-attr]
    only = auth_challenge('DPoP error="use_dpop_nonce", resource_metadata="https://r/.well-known/x"')
    assert only is not None and only.scheme == "dpop" and only.resource_metadata == "https://r/.well-known/x"
    assert auth_challenge('Basic realm="x"') is None


def test_client_assertion_claims_and_key_checks() -> None:
    key = ECKey.generate_key("P-256")
    signing = signing_key_from_pem(key.as_pem(private=True).decode(), alg="", server="s", where="test")
    token = client_assertion(signing, client_id="cid", audience="https://as.example")
    claims = verify_jwt(token, key, audience="https://as.example")
    assert claims["iss"] == claims["sub"] == "cid" and claims["exp"] - claims["iat"] == 60 and claims["jti"]
    with pytest.raises(McpRelayError, match="RS256"):
        signing_key_from_pem(key.as_pem(private=True).decode(), alg="RS256", server="s", where="test")
    with pytest.raises(McpRelayError, match="public key"):
        signing_key_from_pem(key.as_pem(private=False).decode(), alg="", server="s", where="test")
    with pytest.raises(McpRelayError, match="not a PEM"):
        signing_key_from_pem("garbage", alg="", server="s", where="test")


def test_device_authorization_response_parsing_and_instructions() -> None:
    device = parse_device_authorization({"device_code": "d", "user_code": "ABCD-EFGH", "verification_uri": "https://v",
                                         "verification_uri_complete": "https://v?c=ABCD-EFGH", "expires_in": 600})
    assert device.interval == 5 and "device_code" not in repr(device) and "'d'" not in repr(device)
    text = instructions(device, server="gh", terminal=True)
    assert "ABCD-EFGH" in text and "https://v?c=ABCD-EFGH" in text and "█" in text and "10 minute" in text
    assert "█" not in instructions(device, server="gh", terminal=False)
    with pytest.raises(ValueError, match="user_code"):
        parse_device_authorization({"device_code": "d", "verification_uri": "https://v"})
    with pytest.raises(ValueError, match="out of range"):
        parse_device_authorization({"device_code": "d", "user_code": "u", "verification_uri": "v",
                                    "expires_in": "Infinity"})
