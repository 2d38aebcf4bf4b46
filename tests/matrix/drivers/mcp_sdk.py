"""Matrix driver: the official Python SDK (PyPI ``mcp``, the project's pinned 2.3), two ways.

``--api session``: the legacy ``ClientSession`` over ``stdio_client`` / ``streamable_http_client``
with the ``initialize`` handshake, as most code written for SDK 1.x still does.
``--api client``: ``Client(mode="auto")``, which probes ``server/discover`` and speaks 2026-07-28
with a server that answers it (falling back to ``initialize`` otherwise); logging is then the
per-request ``log_level`` opt-in, and sampling, elicitation and roots arrive as
``InputRequiredResult`` rounds the client answers and retries.

Usage: ``.venv/bin/python tests/matrix/drivers/mcp_sdk.py PLAN.json --api session|client``.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from contextlib import AsyncExitStack
from typing import Any

import anyio
import httpx2
import mcp_types as types
from common import (
    Answers,
    NotApplicable,
    ProgressCallback,
    Results,
    describe_error,
    fail_remaining,
    load_plan,
    run_features,
)
from mcp import Client
from mcp.client.session import ClientRequestContext, ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp_types.version import MODERN_PROTOCOL_VERSIONS


def dump(model: Any) -> dict[str, Any]:
    out: dict[str, Any] = model.model_dump(mode="json", by_alias=True, exclude_none=True)
    return out


class SdkAdapter:
    """One adapter for both APIs: ``Client`` delegates to a ``ClientSession`` with the same methods."""

    def __init__(self, answers: Answers) -> None:
        self.answers = answers
        self.session: Any = None  # ClientSession or Client
        self.version = "?"

    # -- the client's handlers (server → client) --
    async def on_sampling(
        self, context: ClientRequestContext, params: types.CreateMessageRequestParams
    ) -> types.CreateMessageResult:
        self.answers.samplings.append(dump(params))
        return types.CreateMessageResult(
            role="assistant",
            content=types.TextContent(type="text", text=self.answers.sampling or "matrix sampling answer"),
            model="matrix-model",
            stop_reason="endTurn",
        )

    async def on_elicitation(
        self, context: ClientRequestContext, params: types.ElicitRequestParams
    ) -> types.ElicitResult:
        self.answers.elicitations.append(dump(params))
        return types.ElicitResult(action="accept", content=self.answers.elicitation)

    async def on_roots(self, context: ClientRequestContext) -> types.ListRootsResult:
        self.answers.roots_asked += 1
        return types.ListRootsResult(roots=[types.Root(uri=r["uri"], name=r.get("name")) for r in self.answers.roots])

    async def on_log(self, params: types.LoggingMessageNotificationParams) -> None:
        self.answers.logs.append(dump(params))

    # -- the adapter --
    def era(self) -> str:
        return self.version

    async def list_tools(self) -> list[str]:
        names: list[str] = []
        cursor: str | None = None
        for _ in range(20):
            if isinstance(self.session, Client):
                page = await self.session.list_tools(cursor=cursor)
            else:
                page = await self.session.list_tools(params=types.PaginatedRequestParams(cursor=cursor))
            names += [t.name for t in page.tools]
            cursor = page.next_cursor
            if not cursor:
                break
        return names

    async def call_tool(
        self, name: str, args: dict[str, Any], progress: ProgressCallback | None = None
    ) -> tuple[bool, list[dict[str, Any]]]:
        result = await self.session.call_tool(name, args, progress_callback=progress)
        return bool(result.is_error), [dump(b) for b in result.content]

    async def read_resource(self, uri: str) -> list[dict[str, Any]]:
        result = await self.session.read_resource(uri)
        return [dump(c) for c in result.contents]

    async def list_prompts(self) -> list[str]:
        if isinstance(self.session, Client):
            page = await self.session.list_prompts()
        else:
            page = await self.session.list_prompts()
        return [p.name for p in page.prompts]

    async def get_prompt(self, name: str, args: dict[str, str]) -> list[dict[str, Any]]:
        result = await self.session.get_prompt(name, args)
        return [dump(m) for m in result.messages]

    async def complete(
        self, ref: dict[str, Any], argument: dict[str, str], context: dict[str, str] | None
    ) -> list[str]:
        reference: types.PromptReference | types.ResourceTemplateReference
        if ref["type"] == "ref/prompt":
            reference = types.PromptReference(type="ref/prompt", name=ref["name"])
        else:
            reference = types.ResourceTemplateReference(type="ref/resource", uri=ref["uri"])
        result = await self.session.complete(reference, argument, context)
        return list(result.completion.values)

    async def set_level(self, level: str) -> None:
        if self.version in MODERN_PROTOCOL_VERSIONS:
            raise NotApplicable(
                f"no logging/setLevel at {self.version} (the era removed it); opted in with _meta logLevel {level}"
            )
        await self.session.set_logging_level(level)


def http_client(target: dict[str, Any]) -> httpx2.AsyncClient:
    return httpx2.AsyncClient(headers=target.get("headers") or {}, timeout=httpx2.Timeout(30, read=300))


async def connect(stack: AsyncExitStack, api: str, target: dict[str, Any], adapter: SdkAdapter) -> None:
    """Open the session the way each API is meant to be used; the handshake happens here."""
    server: StdioServerParameters | None = None
    if target["kind"] == "stdio":
        server = StdioServerParameters(
            command=target["command"],
            args=target["args"],
            env={**os.environ, **target.get("env", {})},
            cwd=target.get("cwd"),
        )
    if api == "session":
        if server is not None:
            read, write = await stack.enter_async_context(stdio_client(server))
        else:
            client = await stack.enter_async_context(http_client(target))
            read, write = await stack.enter_async_context(streamable_http_client(target["url"], http_client=client))
        session = await stack.enter_async_context(
            ClientSession(
                read,
                write,
                sampling_callback=adapter.on_sampling,
                elicitation_callback=adapter.on_elicitation,
                list_roots_callback=adapter.on_roots,
                logging_callback=adapter.on_log,
                client_info=types.Implementation(name="matrix-python-sdk-session", version="1"),
            )
        )
        init = await session.initialize()
        adapter.session = session
        adapter.version = str(init.protocol_version)
        return
    where: Any = server
    if server is None:
        client = await stack.enter_async_context(http_client(target))
        where = streamable_http_client(target["url"], http_client=client)
    sdk_client = await stack.enter_async_context(
        Client(
            where,
            mode="auto",
            sampling_callback=adapter.on_sampling,
            elicitation_callback=adapter.on_elicitation,
            list_roots_callback=adapter.on_roots,
            logging_callback=adapter.on_log,
            log_level="debug",
            client_info=types.Implementation(name="matrix-python-sdk-client", version="1"),
        )
    )
    adapter.session = sdk_client
    adapter.version = sdk_client.protocol_version


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("plan")
    parser.add_argument("--api", choices=["session", "client"], required=True)
    ns = parser.parse_args()
    sys.argv = [sys.argv[0], ns.plan]
    plan = load_plan()
    results = Results(plan["results"])
    adapter = SdkAdapter(Answers(roots=plan["roots"]))
    connect_timeout = float(plan.get("connect_timeout_s", 30))
    connected = False
    try:
        # The deadline bounds connecting and the handshake only; it is lifted once the session is up.
        with anyio.CancelScope(deadline=anyio.current_time() + connect_timeout) as scope:
            async with AsyncExitStack() as stack:
                await connect(stack, ns.api, plan["target"], adapter)
                scope.deadline = math.inf
                connected = True
                results.info(protocol_version=adapter.version, api=ns.api)
                await run_features(adapter, plan, results)
    except Exception as exc:
        fail_remaining(plan, results, f"session failed: {describe_error(exc)}")
        raise
    if not connected:
        fail_remaining(plan, results, f"no session within {connect_timeout:g} s (connect and handshake)")


if __name__ == "__main__":
    anyio.run(main)
