"""RFC 7636 PKCE (S256 only) and the ``state`` value.

Plain PKCE is never offered: it protects nothing against an attacker who can read the
authorization request, and OAuth 2.1 and the MCP authorization spec require S256.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
from dataclasses import dataclass, field


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def s256(verifier: str) -> str:
    return _b64url(hashlib.sha256(verifier.encode("ascii")).digest())


@dataclass(frozen=True)
class PKCE:
    """A fresh verifier (43 characters from 32 random bytes, the RFC's recommended size) and its S256 challenge."""

    verifier: str = field(default_factory=lambda: _b64url(secrets.token_bytes(32)), repr=False)

    @property
    def challenge(self) -> str:
        return s256(self.verifier)

    method = "S256"


def new_state() -> str:
    return _b64url(secrets.token_bytes(24))
