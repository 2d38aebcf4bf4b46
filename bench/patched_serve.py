"""``mcprelay`` with one proposed fix applied in memory, to measure it: the gateway's listening socket
is created with ``IPPROTO_TCP``.

Why: ``mcprelay.gateway.app._bind`` creates ``socket.socket(family, SOCK_STREAM)`` (proto 0). Accepted
sockets inherit proto 0, and asyncio sets ``TCP_NODELAY`` on a new connection only when
``sock.proto == IPPROTO_TCP``; so the gateway's HTTP responses (headers and body are written
separately) meet Nagle + the client's delayed ACK: ~40 ms per call. Not used by default; scenario 3
adds a row with it. Run: ``python bench/patched_serve.py [mcprelay args...]``.
"""

from __future__ import annotations

import socket

from mcprelay.cli.main import main as mcprelay_main
from mcprelay.gateway import app as gateway_app

_original_bind = gateway_app._bind


def _bind_tcp(host: str, port: int) -> socket.socket:
    plain = _original_bind(host, port)
    fixed = socket.socket(plain.family, socket.SOCK_STREAM, socket.IPPROTO_TCP, fileno=plain.detach())
    fixed.setblocking(False)
    return fixed


if __name__ == "__main__":
    gateway_app._bind = _bind_tcp
    mcprelay_main()
