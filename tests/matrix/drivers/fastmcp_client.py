"""Matrix driver: the fastmcp client (PyPI ``fastmcp`` 4.2.3), run from its own venv under ``.ci/venvs/``.

``fastmcp.Client`` with its default ``mode="auto"`` (it negotiates 2026-07-28 through
``server/discover`` where the server answers it), its handlers for sampling, elicitation, roots and
log messages, ``call_tool_mcp`` (the raw result, so an ``isError`` is seen rather than raised).

Usage: ``.ci/venvs/fastmcp-4.2.3/bin/python tests/matrix/drivers/fastmcp_client.py PLAN.json``.
"""

from __future__ import annotations

import os
from typing import Any

import anyio
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
from fastmcp import Client
from fastmcp.client.transports import StdioTransport, StreamableHttpTransport
from mcp_types.version import MODERN_PROTOCOL_VERSIONS


def dump(model: Any) -> dict[str, Any]:
    out: dict[str, Any] = model.model_dump(mode="json", by_alias=True, exclude_none=True)
    return out


class FastMcpAdapter:
    def __init__(self, answers: Answers) -> None:
        self.answers = answers
        self.client: Any = None

    async def on_sampling(self, messages: Any, params: Any, context: Any) -> str:
        self.answers.samplings.append(dump(params))
        return self.answers.sampling or "matrix sampling answer"

    async def on_elicitation(self, message: str, response_type: Any, params: Any, context: Any) -> dict[str, Any]:
        self.answers.elicitations.append(dump(params))
        return dict(self.answers.elicitation)

    async def on_roots(self, context: Any) -> list[types.Root]:
        self.answers.roots_asked += 1
        return [types.Root(uri=r["uri"], name=r.get("name")) for r in self.answers.roots]

    async def on_log(self, message: types.LoggingMessageNotificationParams) -> None:
        self.answers.logs.append(dump(message))

    def era(self) -> str:
        return str(self.client.protocol_version)

    async def list_tools(self) -> list[str]:
        return [t.name for t in await self.client.list_tools()]

    async def call_tool(
        self, name: str, args: dict[str, Any], progress: ProgressCallback | None = None
    ) -> tuple[bool, list[dict[str, Any]]]:
        result = await self.client.call_tool_mcp(name, args, progress_handler=progress)
        return bool(result.is_error), [dump(b) for b in result.content]

    async def read_resource(self, uri: str) -> list[dict[str, Any]]:
        return [dump(c) for c in await self.client.read_resource(uri)]

    async def list_prompts(self) -> list[str]:
        return [p.name for p in await self.client.list_prompts()]

    async def get_prompt(self, name: str, args: dict[str, str]) -> list[dict[str, Any]]:
        result = await self.client.get_prompt(name, args)
        return [dump(m) for m in result.messages]

    async def complete(
        self, ref: dict[str, Any], argument: dict[str, str], context: dict[str, str] | None
    ) -> list[str]:
        reference: Any
        if ref["type"] == "ref/prompt":
            reference = types.PromptReference(type="ref/prompt", name=ref["name"])
        else:
            reference = types.ResourceTemplateReference(type="ref/resource", uri=ref["uri"])
        completion = await self.client.complete(reference, argument, context)
        return list(completion.values)

    async def set_level(self, level: str) -> None:
        if self.client.protocol_version in MODERN_PROTOCOL_VERSIONS:
            raise NotApplicable(
                f"no logging/setLevel at {self.client.protocol_version} (the era removed it); "
                "fastmcp opts in to every level per request"
            )
        await self.client.set_logging_level(level)


async def main() -> None:
    plan = load_plan()
    results = Results(plan["results"])
    adapter = FastMcpAdapter(Answers(roots=plan["roots"]))
    target = plan["target"]
    if target["kind"] == "stdio":
        transport: Any = StdioTransport(
            target["command"],
            target["args"],
            env={**os.environ, **target.get("env", {})},
            cwd=target.get("cwd"),
        )
    else:
        transport = StreamableHttpTransport(target["url"], headers=target.get("headers") or None)
    client = Client(
        transport,
        roots=adapter.on_roots,
        sampling_handler=adapter.on_sampling,
        elicitation_handler=adapter.on_elicitation,
        log_handler=adapter.on_log,
        timeout=float(plan.get("feature_timeout_s", 20)) + 5,
        init_timeout=float(plan.get("connect_timeout_s", 30)),
    )
    adapter.client = client
    try:
        async with client:
            results.info(protocol_version=str(client.protocol_version))
            await run_features(adapter, plan, results)
    except Exception as exc:
        fail_remaining(plan, results, f"session failed: {describe_error(exc)}")
        raise


if __name__ == "__main__":
    anyio.run(main)
