"""The matrix's FastMCP upstream: one of every capability the matrix exercises, over streamable HTTP.

Run with the fastmcp venv (``.ci/venvs/fastmcp-<version>/bin/python``), not the project's .venv:
FastMCP is third-party software under test here, installed pinned by ``.ci/matrix.sh``. It binds
127.0.0.1 on a free port (or ``--port``) and prints ``MATRIX_URL http://127.0.0.1:PORT/mcp`` on
stdout once the socket is bound, so the runner never races for a port.

What it offers (names as the matrix profiles use them):

* tools ``echo`` (call), ``progress`` (three progress notifications), ``slow`` (sleeps, reports
  progress, records a cancellation under its ``tag``) with ``cancelled`` (reports what happened to
  a tag: so the matrix can tell that the *upstream* saw the cancellation, not only the client),
  ``resource_links`` (``resource_link`` blocks to a static resource and a template instance),
  ``log`` (two ``notifications/message`` during the call), ``ask`` (elicitation), ``sample``
  (sampling) and ``roots`` (lists the client's roots);
* resources ``matrix://static/hello`` and the template ``matrix://items/{item_id}``;
* prompt ``greet(name, style)`` and argument completion for ``style`` and for ``item_id``.

Server-to-client requests (elicitation, sampling, roots) work in both protocol eras: on a
handshake-era session the tool sends the request on the back channel; on a 2026-07-28 session,
which has none, it returns an ``InputRequiredResult`` and reads the answer when the client retries
(FastMCP's guard pattern, SEP-2322).
"""

from __future__ import annotations

import argparse
import socket
import sys
from typing import Any

import anyio
import mcp_types as types
from fastmcp import Context, FastMCP
from mcp_types.version import MODERN_PROTOCOL_VERSIONS

mcp: FastMCP[Any] = FastMCP("matrix-fastmcp")

# What happened to each `slow` call, by its tag: "running", "finished" or "cancelled".
SLOW_CALLS: dict[str, str] = {}
STYLES = ["formal", "friendly", "funny"]
ITEMS = ["item-1", "item-2", "item-42"]


def _modern(ctx: Context) -> bool:
    rc = ctx.request_context
    return rc is not None and rc.protocol_version in MODERN_PROTOCOL_VERSIONS


@mcp.tool
def echo(message: str) -> str:
    """Return the message unchanged."""
    return message


@mcp.tool
async def progress(ctx: Context, steps: int = 3) -> str:
    """Report `steps` progress notifications, then finish."""
    for i in range(1, steps + 1):
        await ctx.report_progress(i, steps, f"step {i} of {steps}")
        # A pause after each one, so the last is not read together with the result (a client that
        # handles the response first drops it: typescript-sdk#2580).
        await anyio.sleep(0.1)
    return f"progress done after {steps} steps"


@mcp.tool
async def slow(ctx: Context, tag: str, seconds: float = 30.0) -> str:
    """Sleep for `seconds`, reporting progress each half second; a cancellation is recorded under `tag`."""
    SLOW_CALLS[tag] = "running"
    steps = max(1, int(seconds * 2))
    try:
        for i in range(1, steps + 1):
            await ctx.report_progress(i, steps)
            await anyio.sleep(0.5)
    except BaseException:
        with anyio.CancelScope(shield=True):
            SLOW_CALLS[tag] = "cancelled"
        raise
    SLOW_CALLS[tag] = "finished"
    return f"slow {tag} finished"


@mcp.tool
def cancelled(tag: str) -> str:
    """What became of the `slow` call with this tag: running, finished, cancelled or unknown."""
    return f"slow {tag}: {SLOW_CALLS.get(tag, 'unknown')}"


@mcp.tool
def resource_links() -> list[types.ContentBlock]:
    """Two resource links: the static resource and one instance of the template."""
    return [
        types.TextContent(type="text", text="two resource links follow"),
        types.ResourceLink(type="resource_link", uri="matrix://static/hello", name="hello", mime_type="text/plain"),
        types.ResourceLink(type="resource_link", uri="matrix://items/item-42", name="item-42", mime_type="text/plain"),
    ]


@mcp.resource("matrix://static/hello", mime_type="text/plain")
def hello() -> str:
    """A static text resource."""
    return "hello from the matrix FastMCP server"


@mcp.resource("matrix://items/{item_id}", mime_type="text/plain")
def item(item_id: str) -> str:
    """One item per id."""
    return f"item {item_id} from the matrix FastMCP server"


@mcp.prompt
def greet(name: str, style: str = "friendly") -> str:
    """A greeting for `name` in a `style` (completable)."""
    return f"Write a {style} greeting for {name}."


@mcp.completion
def complete(ref: Any, argument: Any, context: Any) -> list[str] | None:
    """Completions for greet's `style` and the item template's `item_id`."""
    if isinstance(ref, types.PromptReference) and ref.name == "greet" and argument.name == "style":
        return [s for s in STYLES if s.startswith(argument.value)]
    if isinstance(ref, types.ResourceTemplateReference) and argument.name == "item_id":
        return [i for i in ITEMS if i.startswith(argument.value)]
    return None


@mcp.tool
async def log(ctx: Context, message: str) -> str:
    """Send two log messages (info, warning) during the call."""
    await ctx.info(f"log info: {message}")
    await anyio.sleep(0.05)
    await ctx.warning(f"log warning: {message}")
    return f"logged {message}"


ASK_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"name": {"type": "string", "description": "Your name"}},
    "required": ["name"],
}


@mcp.tool
async def ask(ctx: Context, question: str) -> Any:
    """Ask the user (elicitation) and report the answer."""
    if _modern(ctx):
        answers = ctx.input_responses or {}
        answer = answers.get("ask")
        if answer is None:
            request = types.ElicitRequest(
                params=types.ElicitRequestFormParams(message=question, requested_schema=ASK_SCHEMA)
            )
            return types.InputRequiredResult(input_requests={"ask": request})
        if not isinstance(answer, types.ElicitResult):
            return f"ask: unexpected answer {answer!r}"
        return f"ask: {answer.action} {answer.content}"
    result = await ctx.session.elicit(message=question, requested_schema=ASK_SCHEMA, related_request_id=ctx.request_id)
    return f"ask: {result.action} {result.content}"


@mcp.tool
async def sample(ctx: Context, prompt: str) -> Any:
    """Ask the client's model (sampling) and report what it said."""
    messages = [types.SamplingMessage(role="user", content=types.TextContent(type="text", text=prompt))]
    if _modern(ctx):
        answer = (ctx.input_responses or {}).get("sample")
        if answer is None:
            request = types.CreateMessageRequest(
                params=types.CreateMessageRequestParams(messages=messages, max_tokens=50)
            )
            return types.InputRequiredResult(input_requests={"sample": request})
    else:
        answer = await ctx.session.create_message(messages=messages, max_tokens=50, related_request_id=ctx.request_id)
    content = getattr(answer, "content", None)
    text = getattr(content, "text", None)
    return f"sample: {text if text is not None else answer!r}"


@mcp.tool
async def roots(ctx: Context) -> Any:
    """The client's roots, one URI per line."""
    if _modern(ctx):
        answer = (ctx.input_responses or {}).get("roots")
        if answer is None:
            return types.InputRequiredResult(input_requests={"roots": types.ListRootsRequest()})
    else:
        answer = await ctx.session.list_roots()
    listed = getattr(answer, "roots", None)
    if listed is None:
        return f"roots: unexpected answer {answer!r}"
    return "roots:\n" + "\n".join(str(r.uri) for r in listed)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", args.port))
    port = sock.getsockname()[1]
    print(f"MATRIX_URL http://127.0.0.1:{port}/mcp", flush=True)
    sys.stdout.flush()
    anyio.run(
        lambda: mcp.run_http_async(show_banner=False, host="127.0.0.1", port=port, log_level="warning", sockets=[sock])
    )


if __name__ == "__main__":
    main()
