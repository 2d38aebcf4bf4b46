"""``python -m mcprelay.testing.fixture_server [--stdio | --http HOST:PORT]`` (stdio by default)."""

from __future__ import annotations

import argparse
import sys

from mcprelay.testing.fixture_server.transports import serve_http, serve_stdio


def _host_port(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not host:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT (e.g. 127.0.0.1:8765, port 0 for any), got {value!r}")
    return host.strip("[]"), int(port)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mcprelay.testing.fixture_server", description=__doc__)
    wire = parser.add_mutually_exclusive_group()
    wire.add_argument("--stdio", action="store_true", help="serve one client on stdin/stdout (the default)")
    wire.add_argument("--http", type=_host_port, metavar="HOST:PORT", help="serve streamable HTTP at /mcp")
    args = parser.parse_args(argv)
    try:
        if args.http:
            serve_http(*args.http)
        else:
            serve_stdio()
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
