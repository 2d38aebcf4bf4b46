"""What each upstream offers for each matrix feature, and what each client can do at all.

A profile says, per feature, which tool (prompt, reference) exercises it on that upstream and what
the answer must contain — or, when the upstream has no such thing, why the feature is n/a there.
Names and URIs are the upstream's own; ``through_gateway`` turns a feature spec into what a client
sees through ``mcprelay serve`` (``SERVER__TOOL``, ``mcprelay://SERVER/<uri>``, README "The
gateway"). ``MARK`` in a spec is replaced by a token unique to the cell, so an answer can only
have come from this cell's own request.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

FEATURES: list[tuple[str, str]] = [
    ("first_list", "first list complete"),
    ("call", "call"),
    ("progress", "progress"),
    ("cancel", "cancel"),
    ("resource_links", "returned resource links readable"),
    ("prompts", "prompts (list + get)"),
    ("completion", "completion"),
    ("logging", "logging"),
    ("elicitation", "elicitation"),
    ("sampling", "sampling"),
    ("roots", "roots"),
]
FEATURE_NAMES = [name for name, _ in FEATURES]
MODES = ["direct", "stdio", "listen"]
MARK = "@MARK@"
ROOT_URI = "file:///tmp/mcprelay-matrix/@MARK@"


@dataclass(frozen=True)
class ClientInfo:
    name: str
    title: str
    # Server-to-client capabilities the client declares (decides which conditional tools an
    # upstream like server-everything registers for it).
    capabilities: frozenset[str]
    # Features the client has no way to do at all, with the reason shown in the matrix.
    lacks: dict[str, str] = field(default_factory=dict)
    # Why the client cannot show notifications/message at all (then logging checks logging/setLevel only).
    no_log_receive: str = ""
    # One process per request (the Inspector CLI): each request pays a whole connection.
    one_shot: bool = False


INSPECTOR_ONE_SHOT = "the Inspector CLI's one-shot mode (--cli --method) has no"
CLIENTS: dict[str, ClientInfo] = {
    c.name: c
    for c in [
        ClientInfo(
            "py-session",
            "Python SDK 2.3 ClientSession (initialize)",
            frozenset({"roots", "elicitation", "sampling"}),
        ),
        ClientInfo(
            "py-auto",
            'Python SDK 2.3 Client(mode="auto")',
            frozenset({"roots", "elicitation", "sampling"}),
        ),
        ClientInfo(
            "ts-sdk",
            "TypeScript SDK 1.32.2 Client",
            frozenset({"roots", "elicitation", "sampling"}),
        ),
        ClientInfo(
            "fastmcp",
            "fastmcp 4.2.3 Client",
            frozenset({"roots", "elicitation", "sampling"}),
        ),
        ClientInfo(
            "inspector",
            "MCP Inspector 2.12.0 CLI one-shot",
            frozenset({"roots"}),
            {
                "progress": f"{INSPECTOR_ONE_SHOT} progress token or progress output",
                "cancel": f"{INSPECTOR_ONE_SHOT} way to cancel a call",
                "completion": f"{INSPECTOR_ONE_SHOT} completion/complete method",
                "elicitation": f"{INSPECTOR_ONE_SHOT} elicitation answer (it does not declare the capability)",
                "sampling": f"{INSPECTOR_ONE_SHOT} sampling answer (it does not declare the capability)",
            },
            no_log_receive=f"{INSPECTOR_ONE_SHOT} output for notifications/message: receiving is not checked",
            one_shot=True,
        ),
    ]
}


@dataclass(frozen=True)
class Upstream:
    name: str  # the server's name in the gateway config (the SERVER of SERVER__TOOL)
    title: str
    base_tools: list[str]
    # Tools the upstream registers only for a client declaring the capability (server-everything).
    conditional_tools: dict[str, list[str]]
    features: dict[str, dict[str, Any]]
    # Features the upstream has no such thing for, with the reason.
    lacks: dict[str, str] = field(default_factory=dict)


EVERYTHING = Upstream(
    name="everything",
    title="server-everything 2026.8.31 (stdio)",
    base_tools=[
        "echo",
        "get-annotated-message",
        "get-env",
        "get-resource-links",
        "get-resource-reference",
        "get-structured-content",
        "get-sum",
        "get-tiny-image",
        "gzip-file-as-resource",
        "toggle-simulated-logging",
        "toggle-subscriber-updates",
        "trigger-long-running-operation",
    ],
    conditional_tools={
        "roots": ["get-roots-list"],
        "elicitation": ["trigger-elicitation-request"],
        "sampling": ["trigger-sampling-request"],
    },
    features={
        "call": {"tool": "echo", "args": {"message": MARK}, "expect": MARK},
        # The tool sends its last notification right before its result, and the TypeScript SDK client
        # drops a progress notification it handles after the response (typescript-sdk#2580); so 4
        # steps, of which the first 3 (well apart from the result) must arrive.
        "progress": {"tool": "trigger-long-running-operation", "args": {"duration": 1, "steps": 4}, "min": 3},
        "cancel": {
            "tool": "trigger-long-running-operation",
            "args": {"duration": 30, "steps": 60},
            # server-everything cannot tell anyone it saw a cancellation (the tool ignores its abort
            # signal): the driver checks that the session still answers, and the runner reads the
            # upstream's wire log (tap.py) for the notifications/cancelled that must have reached it.
            "check": {
                "tool": "echo",
                "args": {"message": MARK},
                "expect": MARK,
                "means": "the session still answers",
            },
            "wire_check": True,
        },
        "resource_links": {"tool": "get-resource-links", "args": {"count": 2}, "read": 2},
        "prompts": {
            "expect": ["simple-prompt", "args-prompt", "completable-prompt", "resource-prompt"],
            "get": {"name": "args-prompt", "args": {"city": MARK}, "expect": MARK},
        },
        "completion": {
            "ref": {"type": "ref/prompt", "name": "completable-prompt"},
            "argument": {"name": "department", "value": "Eng"},
            "expect": "Engineering",
        },
        "logging": {"level": "debug", "tool": "toggle-simulated-logging", "args": {}, "min": 1, "wait_s": 4},
        "elicitation": {"tool": "trigger-elicitation-request", "args": {}, "answer": {"name": MARK}, "expect": MARK},
        "sampling": {
            "tool": "trigger-sampling-request",
            "args": {"prompt": "matrix", "maxTokens": 20},
            "answer": MARK,
            "expect": MARK,
        },
        "roots": {"tool": "get-roots-list", "args": {}, "expect": ROOT_URI},
    },
)

FASTMCP = Upstream(
    name="fastmcp",
    title="FastMCP 4.2.3 server (streamable HTTP)",
    base_tools=["echo", "progress", "slow", "cancelled", "resource_links", "log", "ask", "sample", "roots"],
    conditional_tools={},
    features={
        "call": {"tool": "echo", "args": {"message": MARK}, "expect": MARK},
        "progress": {"tool": "progress", "args": {"steps": 3}, "min": 3},
        "cancel": {
            "tool": "slow",
            "args": {"tag": MARK, "seconds": 30},
            "check": {
                "tool": "cancelled",
                "args": {"tag": MARK},
                "expect": "cancelled",
                "means": "the upstream saw the cancellation",
            },
        },
        "resource_links": {"tool": "resource_links", "args": {}, "read": 2},
        "prompts": {
            "expect": ["greet"],
            "get": {"name": "greet", "args": {"name": MARK, "style": "formal"}, "expect": MARK},
        },
        "completion": {
            "ref": {"type": "ref/resource", "uri": "matrix://items/{item_id}"},
            "argument": {"name": "item_id", "value": "item-4"},
            "expect": "item-42",
        },
        "logging": {"level": "debug", "tool": "log", "args": {"message": MARK}, "min": 2, "wait_s": 3},
        "elicitation": {"tool": "ask", "args": {"question": "matrix?"}, "answer": {"name": MARK}, "expect": MARK},
        "sampling": {"tool": "sample", "args": {"prompt": "matrix"}, "answer": MARK, "expect": MARK},
        "roots": {"tool": "roots", "args": {}, "expect": ROOT_URI},
    },
)

# The project's fixture server (python -m mcprelay.testing.fixture_server, stdio by default), which
# implements the conformance suite's server fixtures. Until it is on the branch, its column is not run.
FIXTURE = Upstream(
    name="fixture",
    title="mcprelay fixture server (stdio)",
    base_tools=[
        "test_simple_text",
        "test_resource_link",
        "test_tool_with_logging",
        "test_tool_with_progress",
        "test_slow",
        "test_sampling",
        "test_elicitation",
        "test_input_required_result_list_roots",
    ],
    conditional_tools={},
    features={
        "call": {"tool": "test_simple_text", "args": {}, "expect": "This is a simple text response for testing."},
        # test_slow reports every 0.1 s (test_tool_with_progress sends its last one right before
        # its result, which the TypeScript SDK client may drop: typescript-sdk#2580).
        "progress": {"tool": "test_slow", "args": {"seconds": 0.5}, "min": 3},
        "cancel": {
            "tool": "test_slow",
            "args": {"seconds": 30},
            "check": {
                "tool": "test_simple_text",
                "args": {},
                "expect": "This is a simple text response for testing.",
                "means": "the session still answers",
            },
            "wire_check": True,
        },
        "resource_links": {"tool": "test_resource_link", "args": {}, "read": 1},
        "prompts": {
            "expect": ["test_simple_prompt", "test_prompt_with_arguments"],
            "get": {"name": "test_prompt_with_arguments", "args": {"arg1": MARK, "arg2": "two"}, "expect": MARK},
        },
        "completion": {
            "ref": {"type": "ref/resource", "uri": "test://template/{id}/data"},
            "argument": {"name": "id", "value": "12"},
            "expect": "123",
        },
        "logging": {"level": "debug", "tool": "test_tool_with_logging", "args": {}, "min": 3, "wait_s": 3},
        "elicitation": {
            "tool": "test_elicitation",
            "args": {"message": "matrix?"},
            "answer": {"username": MARK, "email": "matrix@example.com"},
            "expect": MARK,
        },
        "sampling": {"tool": "test_sampling", "args": {"prompt": "matrix"}, "answer": MARK, "expect": MARK},
        # It reports how many roots it got, not which: one (the client's one root) it must be.
        "roots": {"tool": "test_input_required_result_list_roots", "args": {}, "expect": "Found 1 root(s)"},
    },
)

UPSTREAMS: dict[str, Upstream] = {u.name: u for u in (EVERYTHING, FASTMCP, FIXTURE)}


def expected_tools(upstream: Upstream, client: ClientInfo) -> list[str]:
    tools = list(upstream.base_tools)
    for capability, names in upstream.conditional_tools.items():
        if capability in client.capabilities:
            tools += names
    return tools


def _replace(value: Any, mark: str) -> Any:
    if isinstance(value, str):
        return value.replace(MARK, mark)
    if isinstance(value, list):
        return [_replace(v, mark) for v in value]
    if isinstance(value, dict):
        return {k: _replace(v, mark) for k, v in value.items()}
    return value


def feature_specs(upstream: Upstream, client: ClientInfo, mark: str) -> list[dict[str, Any]]:
    """The plan's feature entries for one cell, upstream names (before ``through_gateway``)."""
    specs = []
    for name in FEATURE_NAMES:
        if name in upstream.lacks or name in client.lacks:
            continue
        if name == "first_list":
            spec: dict[str, Any] = {"expect_tools": expected_tools(upstream, client)}
        elif name in upstream.features:
            spec = copy.deepcopy(upstream.features[name])
        else:
            continue
        spec["name"] = name
        if name == "logging" and client.no_log_receive:
            spec["min"] = 0  # logging/setLevel only: calling the logging tool would show nothing
            spec["receive_note"] = client.no_log_receive
        if name == "resource_links" and client.one_shot:
            spec["read"] = 1  # every request is a whole connection for a one-shot client
        specs.append(_replace(spec, mark))
    return specs


def feature_specs_args(spec: dict[str, Any], mark: str) -> dict[str, Any]:
    """A feature spec's tool arguments as the cell sent them (MARK replaced)."""
    args: dict[str, Any] = _replace(spec.get("args", {}), mark)
    return args


def not_applicable(upstream: Upstream, client: ClientInfo) -> dict[str, str]:
    """Features that are n/a in every mode of this client × upstream pair, with the reason."""
    out = {}
    for name in FEATURE_NAMES:
        if name in upstream.lacks:
            out[name] = f"{upstream.title}: {upstream.lacks[name]}"
        elif name in client.lacks:
            out[name] = client.lacks[name]
        elif name != "first_list" and name not in upstream.features:
            out[name] = f"{upstream.title} has no such feature"
    return out


def gateway_tool(server: str, tool: str) -> str:
    return f"{server}__{tool}"


def gateway_uri(server: str, uri: str) -> str:
    return f"mcprelay://{server}/{uri}"


def through_gateway(spec: dict[str, Any], server: str) -> dict[str, Any]:
    """The same feature spec as a client sees it through the gateway (README "The gateway": Names)."""
    out = copy.deepcopy(spec)
    if "expect_tools" in out:
        out["expect_tools"] = [gateway_tool(server, t) for t in out["expect_tools"]]
    for holder in (out, out.get("check")):
        if isinstance(holder, dict) and "tool" in holder:
            holder["tool"] = gateway_tool(server, holder["tool"])
    if out["name"] == "prompts":
        out["expect"] = [gateway_tool(server, p) for p in out["expect"]]
        out["get"]["name"] = gateway_tool(server, out["get"]["name"])
    if out["name"] == "completion":
        ref = out["ref"]
        if ref["type"] == "ref/prompt":
            ref["name"] = gateway_tool(server, ref["name"])
        else:
            ref["uri"] = gateway_uri(server, ref["uri"])
    return out
