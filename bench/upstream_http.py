"""The open MCP test server (echo, sleep, add) on 127.0.0.1:PORT, as its own process for the benchmarks.

Run: ``python bench/upstream_http.py PORT``; stops on SIGTERM or SIGINT.
"""

from __future__ import annotations

import sys

import uvicorn

from mcprelay.testing.mcpserver import build_open_app


def main() -> None:
    port = int(sys.argv[1])
    app = build_open_app(f"http://127.0.0.1:{port}")
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")


if __name__ == "__main__":
    main()
