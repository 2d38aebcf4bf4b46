"""The client credentials grant (RFC 6749 §4.4) and how a configured client authenticates.

Machine-to-machine: no browser, no user, no refresh token. The client proves who it is at the
token endpoint — with a shared secret (``client_secret_basic`` / ``client_secret_post``) or a
signed assertion (``private_key_jwt``, RFC 7523) — and gets an access token; when that token comes
due it simply asks again, under the same single flight as a refresh.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mcprelay.oauth.rfc6749 import ClientCredentials, choose_auth_method
from mcprelay.oauth.rfc7523 import check_signing_alg, client_assertion, load_signing_key

if TYPE_CHECKING:
    from mcprelay.config import OAuthConfig

CLIENT_CREDENTIALS_GRANT = "client_credentials"


def configured_client(
    oauth: OAuthConfig,
    *,
    server: str,
    issuer: str,
    auth_methods: list[str] | None,
    signing_algs: list[str] | None,
) -> ClientCredentials:
    """The configured client's credentials for the authorization server ``issuer``.

    The method: ``oauth.token_endpoint_auth_method`` when set; ``private_key_jwt`` when a key is
    configured; else by the secret and what the server advertises (Basic preferred). A key is read
    now, so a key rotated on disk is used from the next token request on.
    """
    has_key = bool(oauth.private_key_file or oauth.private_key_env)
    method = oauth.token_endpoint_auth_method or (
        "private_key_jwt" if has_key else choose_auth_method(bool(oauth.client_secret), auth_methods)
    )
    if method != "private_key_jwt":
        return ClientCredentials(oauth.client_id, oauth.client_secret or None, method)
    key = load_signing_key(oauth, server)
    check_signing_alg(key, signing_algs, server=server, issuer=issuer)
    client_id = oauth.client_id

    def assertion() -> str:
        # RFC 7523bis: the audience is the authorization server's issuer identifier.
        return client_assertion(key, client_id=client_id, audience=issuer)

    return ClientCredentials(client_id, None, "private_key_jwt", assertion=assertion)


def client_credentials_form(*, scope: str | None, resource: str | None) -> dict[str, str]:
    form = {"grant_type": CLIENT_CREDENTIALS_GRANT}
    if scope:
        form["scope"] = scope
    if resource:
        form["resource"] = resource
    return form
