"""Scrubbing what we sent out of what a server sends back.

Some authorization servers echo the request in their error text ("invalid request: grant_type=…&
code_verifier=…"). That text ends up in error messages, which reach the terminal, the diagnostic log
and ``state/``. Every secret a request carried is therefore removed from the server's words before
they are used anywhere, in the raw and the form-encoded spelling.
"""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import quote, quote_plus

REDACTED = "[redacted]"
_MIN_SECRET = 4  # shorter values are not secrets worth hunting for, and would shred ordinary text


def redact(text: str, secrets: Iterable[str | None]) -> str:
    """``text`` with every occurrence of each secret (raw, %-encoded, +-encoded) replaced."""
    spellings: set[str] = set()
    for secret in secrets:
        if secret and len(secret) >= _MIN_SECRET:
            spellings.update({secret, quote(secret, safe=""), quote_plus(secret, safe="")})
    for spelling in sorted(spellings, key=len, reverse=True):  # longest first: no partial leftovers
        text = text.replace(spelling, REDACTED)
    return text


# Form fields whose values are secrets, in any request mcprelay sends to an authorization server.
SECRET_FIELDS = frozenset(
    {
        "code", "code_verifier", "refresh_token", "client_secret", "client_assertion", "assertion",
        "subject_token", "actor_token", "device_code", "token", "password",
    }
)


def form_secrets(form: dict[str, str], headers: dict[str, str] | None = None) -> list[str]:
    """The secret values of a request: its secret form fields, its Authorization and DPoP headers."""
    found = [value for key, value in form.items() if key in SECRET_FIELDS]
    for name, value in (headers or {}).items():
        if name.lower() in ("authorization", "dpop"):
            found.append(value)
            found.append(value.partition(" ")[2])
    return found
