"""Pure pieces of the login: PKCE, token responses, client authentication, registration bodies."""

import base64
import hashlib

import pytest

from mcprelay.oauth.pkce import PKCE, new_state, s256
from mcprelay.oauth.rfc6749 import ClientCredentials, _apply_client_auth, choose_auth_method, parse_token_response
from mcprelay.oauth.rfc7591 import ClientRegistration, registration_request


def test_pkce_s256_matches_rfc7636_appendix_b() -> None:
    assert s256("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk") == "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"


def test_pkce_verifier_is_fresh_and_well_formed() -> None:
    a, b = PKCE(), PKCE()
    assert a.verifier != b.verifier and 43 <= len(a.verifier) <= 128
    digest = hashlib.sha256(a.verifier.encode()).digest()
    assert a.challenge == base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
    assert a.method == "S256" and a.verifier not in repr(a)
    assert new_state() != new_state()


def test_token_response_gets_an_absolute_expiry() -> None:
    tokens = parse_token_response(
        {"access_token": "at", "token_type": "bearer", "expires_in": 60, "refresh_token": "rt", "scope": "a b"},
        now=1000.0,
    )
    assert tokens.expires_at == 1060.0 and tokens.refresh_token == "rt" and tokens.scope == "a b"
    assert not tokens.expired(now=1000.0) and tokens.expired(now=1060.0) and tokens.expired(skew=10, now=1050.0)
    assert "at" not in repr(tokens).replace("expires_at", "").replace("issued_at", "")


def test_token_response_keeps_the_old_refresh_token_when_none_is_sent() -> None:
    tokens = parse_token_response({"access_token": "at", "token_type": "Bearer"}, previous_refresh="old")
    assert tokens.refresh_token == "old" and tokens.expires_at is None and not tokens.expired()


@pytest.mark.parametrize(
    "body",
    [None, [], {}, {"access_token": ""}, {"access_token": "a", "token_type": "mac"},
     {"access_token": "a", "expires_in": "soon"}, {"access_token": "a", "refresh_token": 5}],
)
def test_unusable_token_responses_are_refused(body: object) -> None:
    with pytest.raises(ValueError):
        parse_token_response(body)


def test_client_auth_method_choice() -> None:
    assert choose_auth_method(False, ["client_secret_basic"]) == "none"
    assert choose_auth_method(True, None) == "client_secret_basic"
    assert choose_auth_method(True, ["client_secret_post"]) == "client_secret_post"
    assert choose_auth_method(True, ["client_secret_post", "client_secret_basic"]) == "client_secret_basic"


def test_basic_auth_form_encodes_before_joining() -> None:
    form: dict[str, str] = {}
    headers: dict[str, str] = {}
    _apply_client_auth(ClientCredentials("id:1", "p@ss word", "client_secret_basic"), form, headers)
    decoded = base64.b64decode(headers["Authorization"].split()[1]).decode()
    assert decoded == "id%3A1:p%40ss%20word" and "client_secret" not in form
    form, headers = {}, {}
    _apply_client_auth(ClientCredentials("id", "s", "client_secret_post"), form, headers)
    assert form == {"client_id": "id", "client_secret": "s"} and not headers
    form, headers = {}, {}
    _apply_client_auth(ClientCredentials("id"), form, headers)
    assert form == {"client_id": "id"}


def test_registration_request_is_a_public_native_client() -> None:
    body = registration_request("http://127.0.0.1:5000/callback", "a b")
    assert body["application_type"] == "native" and body["token_endpoint_auth_method"] == "none"
    assert body["grant_types"] == ["authorization_code", "refresh_token"]
    assert body["redirect_uris"] == ["http://127.0.0.1:5000/callback"] and body["scope"] == "a b"


def test_registration_round_trip_and_secret_expiry() -> None:
    reg = ClientRegistration(kind="dcr", issuer="https://as", client_id="c", client_secret="s",
                             client_secret_expires_at=100.0)
    assert ClientRegistration.from_dict(reg.to_dict()) == reg
    assert reg.usable(now=99.0) and not reg.usable(now=100.0) and "'s'" not in repr(reg)
