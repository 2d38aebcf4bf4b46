"""AES-256-GCM sealing of store values under a data key, with a previous key readable during a rotation.

Format, version 1::

    b"MRX" | version (1 byte) | key id (8 bytes) | nonce (12 bytes) | ciphertext + tag

The key id is a hash of the key (it reveals nothing about it) and picks the key to open with, so a
value sealed under the previous key still opens while every new seal uses the current one. The
associated data is the header plus a label (the store key), so a value moved to another key fails
authentication instead of being returned under the wrong name.
"""

from __future__ import annotations

import base64
import hashlib
import secrets

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

MAGIC = b"MRX"
VERSION = 1
_KEY_ID_LEN = 8
_HEADER_LEN = len(MAGIC) + 1 + _KEY_ID_LEN
_NONCE_LEN = 12

#: Printed wherever a data key is missing: one line that makes a good key.
MAKE_KEY = "python3 -c \"import base64, os; print(base64.b64encode(os.urandom(32)).decode())\""


class SealError(ValueError):
    """A value that cannot be opened; the message says why (never what it held)."""


def key_id(key: bytes) -> bytes:
    return hashlib.sha256(b"mcprelay-seal-key-id\0" + key).digest()[:_KEY_ID_LEN]


def decode_key(text: str) -> bytes:
    """A data key from its base64 text; ValueError unless it is exactly 32 bytes."""
    try:
        raw = base64.b64decode(text.strip(), validate=True)
    except ValueError:
        raise ValueError("it is not base64") from None
    if len(raw) != 32:
        raise ValueError(f"it decodes to {len(raw)} bytes, not 32")
    return raw


class Sealer:
    """Seals with ``current``; opens what ``current`` or ``previous`` sealed."""

    def __init__(self, current: bytes, previous: bytes | None = None) -> None:
        self._current = current
        self._current_id = key_id(current)
        self._keys = {self._current_id: current}
        if previous is not None:
            self._keys.setdefault(key_id(previous), previous)

    @property
    def current_id(self) -> str:
        return self._current_id.hex()

    def seal(self, plaintext: bytes, label: str) -> bytes:
        header = MAGIC + bytes([VERSION]) + self._current_id
        nonce = secrets.token_bytes(_NONCE_LEN)
        return header + nonce + AESGCM(self._current).encrypt(nonce, plaintext, header + label.encode())

    def open(self, blob: bytes, label: str) -> bytes:
        if len(blob) < _HEADER_LEN + _NONCE_LEN + 16 or not blob.startswith(MAGIC):
            raise SealError("it is truncated or not an mcprelay sealed value")
        if blob[len(MAGIC)] != VERSION:
            raise SealError(f"it has format version {blob[len(MAGIC)]}, this mcprelay reads version {VERSION}")
        header = blob[:_HEADER_LEN]
        key = self._keys.get(header[len(MAGIC) + 1 :])
        if key is None:
            raise SealError("it was sealed with a data key that is neither MCPRELAY_STORE_KEY nor "
                            "MCPRELAY_STORE_KEY_PREVIOUS")
        nonce = blob[_HEADER_LEN : _HEADER_LEN + _NONCE_LEN]
        try:
            return AESGCM(key).decrypt(nonce, blob[_HEADER_LEN + _NONCE_LEN :], header + label.encode())
        except InvalidTag:
            raise SealError("authentication failed (modified, truncated or moved from another key)") from None
