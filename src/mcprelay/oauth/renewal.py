"""How a stored grant is renewed: the refresh request's form and proof key, or asking again.

Kept out of the token manager so that the single-flight and locking code does not need to know
about provider quirks or DPoP; it asks here what to send.

- The refresh form carries ``resource`` (RFC 8707) unless the login was made without it (Microsoft
  Entra refuses it: ``oauth.send_resource: false``), and repeats ``scope`` when the login asked to
  (Entra wants it on refresh: ``oauth.scope_on_refresh: true``).
- A DPoP-bound grant refreshes with its own key (RFC 9449 §5: the refresh token is bound to it).
- Machine grants (client credentials, JWT bearer, token exchange) have no refresh token: they are
  renewed by asking again (:func:`mcprelay.oauth.acquire.reacquire`).
"""

from __future__ import annotations

from mcprelay.oauth.grant import StoredGrant
from mcprelay.oauth.rfc9449 import DPoPKey, key_from_extra

SCOPE_ON_REFRESH = "scope_on_refresh"


def refresh_form(grant: StoredGrant, refresh_token: str) -> dict[str, str]:
    form = {"grant_type": "refresh_token", "refresh_token": refresh_token}
    if grant.resource:
        form["resource"] = grant.resource
    scope = grant.requested_scope or grant.tokens.scope
    if grant.extra.get(SCOPE_ON_REFRESH) and scope:
        form["scope"] = scope
    return form


def dpop_key(grant: StoredGrant) -> DPoPKey | None:
    """The grant's DPoP key, for the refresh's proof (None for an unbound grant)."""
    return key_from_extra(grant.extra)
