"""Matrix driver: the MCP Inspector CLI (npm @modelcontextprotocol/inspector 2.12.0) in one-shot mode.

Every request is its own ``inspector --cli --config FILE --server NAME --method ...`` process, as a
shell user or a script runs it: each connects, does one thing, prints JSON and exits. So every
one-shot's ``tools/list`` is a *first* list, and with ``serve --stdio`` every one-shot spawns a new
gateway. The config file has the shape of the README's desktop-client recipe
(``{"mcpServers": {NAME: {"command": ..., "args": [...]}}}``, or ``{"type": "http", "url": ...}``),
plus the Inspector's own ``roots`` setting so the roots feature has something to show.

The Inspector needs Node ≥ 22.19 (the pinned Node 22 in .ci/node). Its home is the cell's own
directory (``HOME``), and its secret store is memory, so nothing outside the checkout is touched.

Usage: ``.venv/bin/python tests/matrix/drivers/inspector.py PLAN.json``.
"""

from __future__ import annotations

import json
import os
from typing import Any

import anyio
from common import (
    NotApplicable,
    ProgressCallback,
    Results,
    describe_error,
    fail_remaining,
    load_plan,
    run_features,
    short,
)

SERVER = "matrix"


class InspectorError(Exception):
    pass


class InspectorAdapter:
    def __init__(self, plan: dict[str, Any]) -> None:
        from common import Answers

        self.plan = plan
        self.answers = Answers(roots=plan["roots"])
        home = plan["inspector_home"]
        os.makedirs(home, exist_ok=True)
        target = plan["target"]
        entry: dict[str, Any]
        if target["kind"] == "stdio":
            entry = {"command": target["command"], "args": target["args"]}
            if target.get("env"):
                entry["env"] = target["env"]
            if target.get("cwd"):
                entry["cwd"] = target["cwd"]
        else:
            entry = {"type": "http", "url": target["url"]}
            if target.get("headers"):
                entry["headers"] = target["headers"]
        entry["roots"] = plan["roots"]
        self.config = os.path.join(home, "mcp.json")
        with open(self.config, "w", encoding="utf-8") as f:
            json.dump({"mcpServers": {SERVER: entry}}, f, indent=2)
        self.env = {
            **os.environ,
            "HOME": home,
            "MCP_INSPECTOR_SECRET_STORE": "memory",
            "MCP_CLIENT_CONFIG_PATH": os.path.join(home, "client.json"),
            "NO_COLOR": "1",
        }
        self.runs = 0

    async def one_shot(self, method: str, *extra: str) -> Any:
        """Run one ``--cli --method`` invocation and return its ``result`` (raise with its error)."""
        self.runs += 1
        argv = [
            self.plan["node"],
            self.plan["inspector_main"],
            "--cli",
            "--config",
            self.config,
            "--server",
            SERVER,
            "--method",
            method,
            *extra,
            "--format",
            "json",
        ]
        limit = float(self.plan.get("request_timeout_s", 20))
        try:
            with anyio.fail_after(limit):
                proc = await anyio.run_process(argv, env=self.env, check=False, stdin=None)
        except TimeoutError:
            raise InspectorError(f"the one-shot {method} did not finish within {limit:g} s") from None
        out = proc.stdout.decode(errors="replace").strip()
        err = proc.stderr.decode(errors="replace").strip()
        with open(os.path.join(self.plan["inspector_home"], "one-shots.log"), "a", encoding="utf-8") as f:
            f.write(f"$ {' '.join(argv[1:])}\nexit {proc.returncode}\n--- stdout\n{out}\n--- stderr\n{err}\n\n")
        data: Any = None
        for text in (out, err):
            try:
                data = json.loads(text)
                break
            except ValueError:
                lines = [line for line in text.splitlines() if line.startswith("{")]
                for line in reversed(lines):
                    try:
                        data = json.loads(line)
                        break
                    except ValueError:
                        continue
                if data is not None:
                    break
        if isinstance(data, dict) and "result" in data and proc.returncode == 0:
            return data["result"]
        if isinstance(data, dict) and "error" in data:
            raise InspectorError(f"exit {proc.returncode}: {short(data['error'], 400)}")
        raise InspectorError(f"exit {proc.returncode}: {short(err or out, 400)}")

    def era(self) -> str:
        return "initialize per one-shot (legacy era)"

    async def list_tools(self) -> list[str]:
        result = await self.one_shot("tools/list")
        return [t["name"] for t in result.get("tools", [])]

    async def call_tool(
        self, name: str, args: dict[str, Any], progress: ProgressCallback | None = None
    ) -> tuple[bool, list[dict[str, Any]]]:
        if progress is not None:
            raise NotApplicable("the Inspector CLI's one-shot mode has no progress token or progress output")
        result = await self.one_shot("tools/call", "--tool-name", name, "--tool-args-json", json.dumps(args))
        return bool(result.get("isError")), list(result.get("content", []))

    async def read_resource(self, uri: str) -> list[dict[str, Any]]:
        result = await self.one_shot("resources/read", "--uri", uri)
        return list(result.get("contents", []))

    async def list_prompts(self) -> list[str]:
        result = await self.one_shot("prompts/list")
        return [p["name"] for p in result.get("prompts", [])]

    async def get_prompt(self, name: str, args: dict[str, str]) -> list[dict[str, Any]]:
        extra = ["--prompt-name", name]
        if args:
            extra += ["--prompt-args", *(f"{k}={v}" for k, v in args.items())]
        result = await self.one_shot("prompts/get", *extra)
        return list(result.get("messages", []))

    async def complete(
        self, ref: dict[str, Any], argument: dict[str, str], context: dict[str, str] | None
    ) -> list[str]:
        raise NotApplicable("the Inspector CLI's one-shot mode has no completion/complete method")

    async def set_level(self, level: str) -> None:
        await self.one_shot("logging/setLevel", "--log-level", level)


async def main() -> None:
    plan = load_plan()
    results = Results(plan["results"])
    adapter = InspectorAdapter(plan)
    results.info(protocol_version=adapter.era())
    try:
        await run_features(adapter, plan, results)
    except Exception as exc:
        fail_remaining(plan, results, f"driver failed: {describe_error(exc)}")
        raise
    results.info(one_shots=adapter.runs)


if __name__ == "__main__":
    anyio.run(main)
