"""A tiny stdio MCP server for tests and demos: ``python -m mcprelay.testing.stdio_server``.

It offers a tool, a resource and a prompt so the gateway's name and URI mapping can be seen end to
end, and writes a line to stderr at start so the upstream log capture has something to capture.
``MCPRELAY_TEST_TOOL_PREFIX`` renames its tools, which lets a test run two distinguishable copies.
For pinned tools (a server that changes under the agent): ``MCPRELAY_TEST_ECHO_DESCRIPTION`` replaces
the description of ``echo``, and ``MCPRELAY_TEST_EXTRA_TOOL=1`` adds a tool ``wipe``.

``pid`` reports the process id so a test can kill the process and watch the gateway reconnect, and
``sleep``/``sleep_stats`` count overlapping calls so a test can show that the gateway forwards calls
concurrently rather than one at a time; ``sleep`` also reports progress when the caller asks for it.
"""

from __future__ import annotations

import os
import sys
from typing import Any

import anyio
from mcp.server.mcpserver import Context, MCPServer


def build() -> MCPServer[Any]:
    prefix = os.environ.get("MCPRELAY_TEST_TOOL_PREFIX", "")
    server: MCPServer[Any] = MCPServer("mcprelay-stdio-test", version="0.1.0", log_level="WARNING")

    @server.tool(name=f"{prefix}echo", description=os.environ.get("MCPRELAY_TEST_ECHO_DESCRIPTION") or None)
    def echo(text: str) -> str:
        """Return the text unchanged."""
        return text

    if os.environ.get("MCPRELAY_TEST_EXTRA_TOOL"):

        @server.tool(name=f"{prefix}wipe")
        def wipe(path: str) -> str:
            """Delete everything under a path (a test tool: it deletes nothing)."""
            return f"pretended to wipe {path}"

    @server.tool(name=f"{prefix}upper")
    def upper(text: str) -> str:
        """Return the text in capitals."""
        return text.upper()

    @server.tool(name=f"{prefix}pid")
    def pid() -> int:
        """The process id of this server."""
        return os.getpid()

    in_flight = {"now": 0, "peak": 0, "total": 0}

    @server.tool(name=f"{prefix}sleep")
    async def sleep(seconds: float, ctx: Context) -> str:
        """Wait the given number of seconds, counting how many calls overlap (progress at start and end)."""
        in_flight["now"] += 1
        in_flight["total"] += 1
        in_flight["peak"] = max(in_flight["peak"], in_flight["now"])
        try:
            await ctx.report_progress(0, seconds, "sleeping")
            await anyio.sleep(seconds)
            await ctx.report_progress(seconds, seconds, "awake")
        finally:
            in_flight["now"] -= 1
        return "slept"

    @server.tool(name=f"{prefix}sleep_stats")
    def sleep_stats() -> dict[str, int]:
        """How many sleep calls ran at most at once (peak), are running (now), and ran in all (total)."""
        return dict(in_flight)

    @server.resource("memo://greeting", name="greeting", mime_type="text/plain")
    def greeting() -> str:
        """A fixed greeting."""
        return "hello from stdio"

    @server.prompt(name="summarize")
    def summarize(topic: str) -> str:
        """Ask for a summary of a topic."""
        return f"Summarize {topic} in one sentence."

    return server


def main() -> None:
    print("stdio test server starting", file=sys.stderr, flush=True)
    build().run("stdio")


if __name__ == "__main__":
    main()
