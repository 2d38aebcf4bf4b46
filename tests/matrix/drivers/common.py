"""The feature sequence every Python client driver of the matrix runs, against a small adapter.

A driver is a program that gets a plan (JSON, written by ``tests/matrix/run.py``): where the
server is, the roots the client declares, and one entry per feature naming the tool, prompt or
reference to use and what the answer must contain. It opens **one** client session and runs the
features in order, appending one JSON line per feature to the plan's ``results`` file as soon as
it is decided, so a driver that hangs or dies still leaves everything it decided before that.

The features are the same for every client; only the adapter (how a given client library lists,
calls, reads, completes, ...) differs. ``ts_sdk.mjs`` implements the same sequence in JavaScript;
keep the two in step (the checks and the wording of the details).

Only the standard library, anyio and the client library under test are imported here: the fastmcp
driver runs this module from the fastmcp venv, the SDK drivers from the project's .venv.
"""

from __future__ import annotations

import json
import sys
import time
import traceback
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import anyio

ProgressCallback = Callable[[float, float | None, str | None], Awaitable[None]]


class NotApplicable(Exception):
    """Raised by an adapter for something the client cannot do at all (the message says why)."""


class Failed(Exception):
    """A request failed; the message names the request and what came back."""


@dataclass
class Answers:
    """What the client's handlers answer, and what they were asked (filled in by the adapter's callbacks)."""

    roots: list[dict[str, str]]
    elicitation: dict[str, Any] = field(default_factory=dict)
    sampling: str = ""
    elicitations: list[Any] = field(default_factory=list)
    samplings: list[Any] = field(default_factory=list)
    roots_asked: int = 0
    logs: list[dict[str, Any]] = field(default_factory=list)


class Adapter(Protocol):
    answers: Answers

    def era(self) -> str: ...
    async def list_tools(self) -> list[str]: ...
    async def call_tool(
        self, name: str, args: dict[str, Any], progress: ProgressCallback | None = None
    ) -> tuple[bool, list[dict[str, Any]]]: ...
    async def read_resource(self, uri: str) -> list[dict[str, Any]]: ...
    async def list_prompts(self) -> list[str]: ...
    async def get_prompt(self, name: str, args: dict[str, str]) -> list[dict[str, Any]]: ...
    async def complete(
        self, ref: dict[str, Any], argument: dict[str, str], context: dict[str, str] | None
    ) -> list[str]: ...
    async def set_level(self, level: str) -> None: ...


class Results:
    """Appends one JSON line per decided feature to the plan's results file."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.decided: set[str] = set()

    def write(self, record: dict[str, Any]) -> None:
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
            f.flush()

    def feature(self, name: str, status: str, detail: str) -> None:
        self.decided.add(name)
        self.write({"feature": name, "status": status, "detail": detail})
        print(f"matrix driver: {name}: {status}: {detail}", file=sys.stderr, flush=True)

    def info(self, **info: Any) -> None:
        self.write({"info": info})


def load_plan() -> dict[str, Any]:
    with open(sys.argv[1], encoding="utf-8") as f:
        plan: dict[str, Any] = json.load(f)
    return plan


def short(value: Any, limit: int = 300) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def describe_error(exc: BaseException) -> str:
    """An exception as the client library reported it: type, JSON-RPC code when there is one, message."""
    code = getattr(getattr(exc, "error", None), "code", None)
    if code is None:
        code = getattr(exc, "code", None)
    name = type(exc).__name__
    if isinstance(exc, BaseExceptionGroup):
        inner = [describe_error(e) for e in exc.exceptions[:3]]
        return f"{name}: " + "; ".join(inner)
    return f"{name}{f' {code}' if code is not None else ''}: {short(str(exc), 400)}"


def block_text(blocks: list[dict[str, Any]]) -> str:
    """Every text a result carries: text blocks, embedded resources' text, resource links' URIs."""
    parts: list[str] = []
    for b in blocks:
        if b.get("type") == "text":
            parts.append(str(b.get("text", "")))
        elif b.get("type") == "resource":
            res = b.get("resource") or {}
            parts.append(str(res.get("text", "")))
            parts.append(str(res.get("uri", "")))
        elif b.get("type") == "resource_link":
            parts.append(str(b.get("uri", "")))
    return "\n".join(parts)


def message_text(messages: list[dict[str, Any]]) -> str:
    parts = []
    for m in messages:
        content = m.get("content")
        blocks = content if isinstance(content, list) else [content] if isinstance(content, dict) else []
        parts.append(block_text(blocks))
    return "\n".join(parts)


def call_label(name: str, args: dict[str, Any]) -> str:
    return f"tools/call {name} {short(args, 120)}"


async def request(label: str, coro: Awaitable[Any]) -> Any:
    """Await one request; a failure becomes ``Failed("<request> → <what came back>")``."""
    try:
        return await coro
    except (NotApplicable, Failed):
        raise
    except Exception as exc:
        raise Failed(f"{label} → {describe_error(exc)}") from exc


async def call(
    adapter: Adapter, name: str, args: dict[str, Any], progress: ProgressCallback | None = None
) -> tuple[bool, list[dict[str, Any]]]:
    result: tuple[bool, list[dict[str, Any]]] = await request(
        call_label(name, args), adapter.call_tool(name, args, progress)
    )
    return result


async def _call_expect(adapter: Adapter, spec: dict[str, Any]) -> tuple[str, str]:
    is_error, blocks = await call(adapter, spec["tool"], spec.get("args", {}))
    text = block_text(blocks)
    label = call_label(spec["tool"], spec.get("args", {}))
    if is_error:
        return "fail", f"{label} → isError: {short(text)}"
    if spec["expect"] not in text:
        return "fail", f"{label} → result lacks {spec['expect']!r}: {short(text)}"
    return "pass", f"{label} → {short(text, 120)}"


# ---- the features ---------------------------------------------------------------------------------


async def f_first_list(adapter: Adapter, spec: dict[str, Any]) -> tuple[str, str]:
    names = await request("first tools/list", adapter.list_tools())
    missing = [t for t in spec["expect_tools"] if t not in names]
    if missing:
        return "fail", f"first tools/list → {len(names)} tools, missing {len(missing)}: {short(missing, 400)}"
    return "pass", f"first tools/list → {len(names)} tools, all {len(spec['expect_tools'])} expected"


async def f_call(adapter: Adapter, spec: dict[str, Any]) -> tuple[str, str]:
    return await _call_expect(adapter, spec)


async def f_progress(adapter: Adapter, spec: dict[str, Any]) -> tuple[str, str]:
    seen: list[tuple[float, float | None]] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        seen.append((progress, total))

    label = call_label(spec["tool"], spec.get("args", {}))
    is_error, blocks = await call(adapter, spec["tool"], spec.get("args", {}), on_progress)
    await anyio.sleep(0.2)  # a notification sent just before the result may be handled just after it
    if is_error:
        return "fail", f"{label} → isError: {short(block_text(blocks))}"
    values = [p for p, _ in seen]
    shown = ", ".join(f"{p:g}/{t:g}" if t is not None else f"{p:g}" for p, t in seen[:6])
    if len(seen) < spec["min"]:
        return "fail", f"{label} with a progressToken → {len(seen)} progress notifications, expected ≥ {spec['min']}"
    if values != sorted(values):
        return "fail", f"{label} → progress not increasing: {shown}"
    return "pass", f"{label} → {len(seen)} progress notifications ({shown})"


async def f_cancel(adapter: Adapter, spec: dict[str, Any]) -> tuple[str, str]:
    started = anyio.Event()
    outcome: dict[str, Any] = {}
    label = call_label(spec["tool"], spec.get("args", {}))

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        started.set()

    async def run(scope: anyio.CancelScope) -> None:
        with scope:
            try:
                outcome["result"] = await adapter.call_tool(spec["tool"], spec.get("args", {}), on_progress)
            except Exception as exc:
                outcome["error"] = describe_error(exc)
        outcome["ended"] = time.monotonic()

    scope = anyio.CancelScope()
    async with anyio.create_task_group() as tg:
        tg.start_soon(run, scope)
        with anyio.move_on_after(15) as waited:
            await started.wait()
        if waited.cancelled_caught:
            scope.cancel()
            return "fail", f"{label} → no progress notification within 15 s, so nothing to cancel"
        t0 = time.monotonic()
        scope.cancel()
    if "result" in outcome:
        return (
            "fail",
            f"{label} was cancelled after its first progress notification but completed: {short(outcome['result'])}",
        )
    took = outcome.get("ended", time.monotonic()) - t0
    ended = f"ended {took:.2f} s after the cancellation" + (
        f" raising {outcome['error']}" if "error" in outcome else ""
    )
    check = spec.get("check")
    if check is None:
        return "pass", f"{label} cancelled after its first progress notification; {ended}"
    deadline = time.monotonic() + 5
    while True:
        status, detail = await _call_expect(adapter, check)
        if status == "pass" or time.monotonic() > deadline:
            break
        await anyio.sleep(0.25)
    if status != "pass":
        return "fail", f"{label} cancelled ({ended}); {check['means']}: no: {detail}"
    return "pass", f"{label} cancelled ({ended}); {check['means']}: {detail}"


async def f_resource_links(adapter: Adapter, spec: dict[str, Any]) -> tuple[str, str]:
    label = call_label(spec["tool"], spec.get("args", {}))
    is_error, blocks = await call(adapter, spec["tool"], spec.get("args", {}))
    if is_error:
        return "fail", f"{label} → isError: {short(block_text(blocks))}"
    links = [b["uri"] for b in blocks if b.get("type") == "resource_link"]
    if not links:
        return "fail", f"{label} → no resource_link blocks: {short(blocks)}"
    read = []
    for uri in links[: spec.get("read", 2)]:
        try:
            contents = await adapter.read_resource(uri)
        except NotApplicable:
            raise
        except Exception as exc:
            return "fail", f"{label} → resource_link {uri}; resources/read {uri} → {describe_error(exc)}"
        if not contents or not any(c.get("text") or c.get("blob") for c in contents):
            return "fail", f"resources/read {uri} → no contents: {short(contents)}"
        read.append(uri)
    return "pass", f"{label} → {len(links)} links; read {', '.join(read)}"


async def f_prompts(adapter: Adapter, spec: dict[str, Any]) -> tuple[str, str]:
    names = await request("prompts/list", adapter.list_prompts())
    missing = [p for p in spec["expect"] if p not in names]
    if missing:
        return "fail", f"prompts/list → {len(names)} prompts, missing {missing}"
    get = spec["get"]
    try:
        messages = await adapter.get_prompt(get["name"], get.get("args", {}))
    except NotApplicable:
        raise
    except Exception as exc:
        return "fail", f"prompts/get {get['name']} {short(get.get('args', {}))} → {describe_error(exc)}"
    text = message_text(messages)
    if get["expect"] not in text:
        return "fail", f"prompts/get {get['name']} → lacks {get['expect']!r}: {short(text)}"
    return "pass", f"prompts/list → {len(names)}; prompts/get {get['name']} → {short(text, 100)}"


async def f_completion(adapter: Adapter, spec: dict[str, Any]) -> tuple[str, str]:
    ref = spec["ref"]
    what = ref.get("name") or ref.get("uri")
    label = f"completion/complete {ref['type']} {what} {spec['argument']['name']}={spec['argument']['value']!r}"
    try:
        values = await adapter.complete(ref, spec["argument"], spec.get("context"))
    except NotApplicable:
        raise
    except Exception as exc:
        return "fail", f"{label} → {describe_error(exc)}"
    if spec["expect"] not in values:
        return "fail", f"{label} → {short(values)}, expected {spec['expect']!r} among them"
    return "pass", f"{label} → {short(values, 100)}"


async def f_logging(adapter: Adapter, spec: dict[str, Any]) -> tuple[str, str]:
    notes = []
    try:
        await adapter.set_level(spec["level"])
        notes.append(f"logging/setLevel {spec['level']} → ok")
    except NotApplicable as why:
        notes.append(str(why))
    except Exception as exc:
        return "fail", f"logging/setLevel {spec['level']} → {describe_error(exc)}"
    if spec["min"] == 0:
        return "pass", f"{'; '.join(notes)} ({spec.get('receive_note', 'receiving is not checked')})"
    before = len(adapter.answers.logs)
    label = call_label(spec["tool"], spec.get("args", {}))
    is_error, blocks = await call(adapter, spec["tool"], spec.get("args", {}))
    if is_error:
        return "fail", f"{'; '.join(notes)}; {label} → isError: {short(block_text(blocks))}"
    with anyio.move_on_after(spec.get("wait_s", 3)):
        while len(adapter.answers.logs) - before < spec["min"]:
            await anyio.sleep(0.05)
    got = adapter.answers.logs[before:]
    if len(got) < spec["min"]:
        return "fail", (
            f"{'; '.join(notes)}; {label} → {len(got)} notifications/message within {spec.get('wait_s', 3)} s, "
            f"expected ≥ {spec['min']}"
        )
    sample = got[0]
    return "pass", (
        f"{'; '.join(notes)}; {label} → {len(got)} notifications/message "
        f"(first: level {sample.get('level')}, logger {sample.get('logger')!r}, {short(sample.get('data'), 80)})"
    )


async def f_elicitation(adapter: Adapter, spec: dict[str, Any]) -> tuple[str, str]:
    before = len(adapter.answers.elicitations)
    adapter.answers.elicitation = spec["answer"]
    status, detail = await _call_expect(adapter, spec)
    asked = len(adapter.answers.elicitations) - before
    if asked == 0:
        return "fail", f"{detail} (the client was never asked: no elicitation/create reached it)"
    return status, f"{detail} (client answered {asked} elicitation/create)"


async def f_sampling(adapter: Adapter, spec: dict[str, Any]) -> tuple[str, str]:
    before = len(adapter.answers.samplings)
    adapter.answers.sampling = spec["answer"]
    status, detail = await _call_expect(adapter, spec)
    asked = len(adapter.answers.samplings) - before
    if asked == 0:
        return "fail", f"{detail} (the client was never asked: no sampling/createMessage reached it)"
    return status, f"{detail} (client answered {asked} sampling/createMessage)"


async def f_roots(adapter: Adapter, spec: dict[str, Any]) -> tuple[str, str]:
    status, detail = await _call_expect(adapter, spec)
    asked = adapter.answers.roots_asked
    return status, f"{detail} (client answered roots/list {asked}×)"


FEATURES: dict[str, Callable[[Adapter, dict[str, Any]], Awaitable[tuple[str, str]]]] = {
    "first_list": f_first_list,
    "call": f_call,
    "progress": f_progress,
    "cancel": f_cancel,
    "resource_links": f_resource_links,
    "prompts": f_prompts,
    "completion": f_completion,
    "logging": f_logging,
    "elicitation": f_elicitation,
    "sampling": f_sampling,
    "roots": f_roots,
}


async def run_features(adapter: Adapter, plan: dict[str, Any], results: Results) -> None:
    """Run every planned feature in order, each bounded by the plan's per-feature timeout."""
    limit = float(plan.get("feature_timeout_s", 20))
    for spec in plan["features"]:
        name = spec["name"]
        t0 = time.monotonic()
        try:
            with anyio.fail_after(limit):
                status, detail = await FEATURES[name](adapter, spec)
        except NotApplicable as why:
            status, detail = "n/a", str(why)
        except Failed as failed:
            status, detail = "fail", str(failed)
        except TimeoutError:
            status, detail = "fail", f"no answer within {limit:g} s ({name})"
        except Exception as exc:
            status, detail = "fail", describe_error(exc)
            traceback.print_exc(file=sys.stderr)
        results.feature(name, status, f"{detail} [{time.monotonic() - t0:.1f} s]")


def fail_remaining(plan: dict[str, Any], results: Results, why: str) -> None:
    for spec in plan["features"]:
        if spec["name"] not in results.decided:
            results.feature(spec["name"], "fail", why)
