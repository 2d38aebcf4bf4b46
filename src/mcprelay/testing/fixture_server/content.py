"""Fixed payloads the fixtures return: a tiny PNG, a tiny WAV, the JSON Schema 2020-12 input schema.

The binary payloads are generated here (a 1×1 PNG, 10 ms of WAV silence) rather than pasted in as
base64 literals, so what they are is readable in the code. They are computed once at import.
"""

from __future__ import annotations

import base64
import io
import struct
import wave
import zlib
from typing import Any

SERVER_NAME = "mcprelay-fixture"
SERVER_VERSION = "1.0.0"
LOGGER_NAME = "mcprelay-fixture"


def _png_1x1(rgb: tuple[int, int, int]) -> bytes:
    """A valid one-pixel truecolour PNG (signature, IHDR, IDAT, IEND)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)  # 1×1, 8 bits, RGB, deflate, no filter, no interlace
    scanline = b"\x00" + bytes(rgb)  # filter type 0, then the pixel
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(scanline)) + chunk(b"IEND", b"")


def _wav_silence(milliseconds: int = 10, rate: int = 8000) -> bytes:
    """A mono 16-bit PCM WAV file of silence."""
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(b"\x00\x00" * (rate * milliseconds // 1000))
    return buffer.getvalue()


PNG_BASE64 = base64.b64encode(_png_1x1((255, 0, 0))).decode("ascii")
WAV_BASE64 = base64.b64encode(_wav_silence()).decode("ascii")

# SEP-1613 / SEP-2106: an inputSchema that uses the JSON Schema 2020-12 vocabulary beyond
# properties/required. A client, SDK or gateway that rebuilds schemas through a narrower model loses
# some of it; json-schema-2020-12 checks that every keyword survives the tools/list round trip.
JSON_SCHEMA_2020_12: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "$defs": {
        "address": {
            "$anchor": "addressDef",
            "type": "object",
            "properties": {"street": {"type": "string"}, "city": {"type": "string"}},
        }
    },
    "properties": {
        "name": {"type": "string"},
        "address": {"$ref": "#/$defs/address"},
        "contactMethod": {"type": "string", "enum": ["phone", "email"]},
        "phone": {"type": "string"},
        "email": {"type": "string"},
    },
    "allOf": [{"anyOf": [{"required": ["phone"]}, {"required": ["email"]}]}],
    "if": {"properties": {"contactMethod": {"const": "phone"}}, "required": ["contactMethod"]},
    "then": {"required": ["phone"]},
    "else": {"required": ["email"]},
    "additionalProperties": False,
}
