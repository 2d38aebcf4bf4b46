"""The parsers of other clients' config files (pure: text in, mcprelay entries out)."""

from __future__ import annotations

import json

import pytest

from mcprelay.config import parse_config
from mcprelay.importers import UnreadableConfig, detect, mcprelay_name, parse, strip_jsonc

CLAUDE_DESKTOP = json.dumps({
    "globalShortcut": "Ctrl+Space",
    "mcpServers": {
        "filesystem": {"command": "npx", "args": ["-y", "@modelcontextprotocol/server-filesystem", "/Users/me/src"]},
        "github": {"command": "docker", "args": ["run", "-i", "--rm", "ghcr.io/github/github-mcp-server"],
                   "env": {"GITHUB_PERSONAL_ACCESS_TOKEN": "ghp_0123456789abcdefghijABCDEFGHIJ012345"}},
    },
})

CLAUDE_CODE_PROJECT = json.dumps({
    "mcpServers": {
        "sentry": {"type": "http", "url": "https://mcp.sentry.dev/mcp"},
        "asana": {"type": "sse", "url": "https://mcp.asana.com/sse", "headers": {"X-Team": "core"}},
        "api": {"type": "http", "url": "${API_BASE_URL:-https://api.example.com}/mcp",
                "headers": {"Authorization": "Bearer ${API_KEY}"}},
        "memory": {"type": "stdio", "command": "npx", "args": ["-y", "@modelcontextprotocol/server-memory"],
                   "env": {"MEMORY_FILE_PATH": "${HOME}/memory.json"}},
    }
})

CLAUDE_CODE_USER = json.dumps({
    "numStartups": 42,
    "mcpServers": {"notion": {"type": "http", "url": "https://mcp.notion.com/mcp"}},
    "projects": {
        "/home/me/app": {"allowedTools": [], "mcpServers": {
            "db": {"type": "stdio", "command": "uvx", "args": ["mcp-server-postgres"], "env": {}},
            "notion": {"type": "http", "url": "https://mcp.notion.com/mcp"},
        }},
        "/home/me/other": {"mcpServers": {"db": {"command": "uvx", "args": ["mcp-server-sqlite"]}}},
    },
})

CURSOR = """{
  "mcpServers": {
    "linear": {"url": "https://mcp.linear.app/mcp", "headers": {"Authorization": "Bearer ${env:LINEAR_TOKEN}"}},
    "files": {"command": "npx", "args": ["-y", "@modelcontextprotocol/server-filesystem", "${workspaceFolder}"],
              "envFile": "${workspaceFolder}/.env"},
    "home-notes": {"command": "notes-mcp", "args": ["${userHome}/notes"]}
  }
}"""

VSCODE = """// VS Code writes JSON with comments
{
  "inputs": [
    {"type": "promptString", "id": "perplexity-key", "description": "Perplexity API Key", "password": true}
  ],
  "servers": {
    /* a stdio server */
    "perplexity": {
      "type": "stdio",
      "command": "npx",
      "args": ["-y", "server-perplexity-ask"],
      "env": {"PERPLEXITY_API_KEY": "${input:perplexity-key}"},
    },
    "fetch": {"type": "stdio", "command": "uvx", "args": ["mcp-server-fetch"], "cwd": "${workspaceFolder}"},
    "github": {"type": "http", "url": "https://api.githubcopilot.com/mcp/"},  // remote
    "legacy": {"type": "sse", "url": "http://localhost:3000/sse", "headers": {"X-Key": "${env:LEGACY_KEY}"}},
  },
}"""

VSCODE_SETTINGS = json.dumps({"editor.fontSize": 14, "mcp": {"servers": {
    "time": {"type": "stdio", "command": "uvx", "args": ["mcp-server-time"]}}}})

CODEX = """
model = "gpt-5.1"

[mcp_servers.docs]
command = "docs-server"
args = ["--port", "4000"]
env = { "API_KEY" = "value" }
env_vars = ["LOCAL_TOKEN"]
startup_timeout_sec = 20

[mcp_servers.figma]
url = "https://mcp.figma.com/mcp"
bearer_token_env_var = "FIGMA_OAUTH_TOKEN"
http_headers = { "X-Figma-Region" = "us-east-1" }
env_http_headers = { "X-Org-Id" = "FIGMA_ORG_ID" }

[mcp_servers.parked]
command = "npx"
args = ["-y", "some-server"]
enabled = false

[mcp_servers."my.server"]
url = "https://example.com/mcp"
"""


def bodies(result: object) -> dict[str, dict[str, object]]:
    return {s.name: s.body for s in result.servers}  # type: ignore[attr-defined]


def loads_in_mcprelay(result: object) -> None:
    """Whatever an importer produces must load with the strict loader."""
    servers = {mcprelay_name(s.name): s.body for s in result.servers if s.body}  # type: ignore[attr-defined]
    parse_config({"mcpServers": servers})


@pytest.mark.parametrize(("text", "filename", "expected"), [
    (CLAUDE_DESKTOP, "/Users/me/Library/Application Support/Claude/claude_desktop_config.json", "claude-desktop"),
    (CLAUDE_CODE_PROJECT, "/home/me/app/.mcp.json", "claude-code"),
    (CLAUDE_CODE_USER, "/home/me/.claude.json", "claude-code"),
    (CURSOR, "/home/me/.cursor/mcp.json", "cursor"),
    (VSCODE, "/home/me/app/.vscode/mcp.json", "vscode"),
    (VSCODE_SETTINGS, "/home/me/.config/Code/User/settings.json", "vscode"),
    (CODEX, "/home/me/.codex/config.toml", "codex"),
    # By content alone, under a name that says nothing:
    (CLAUDE_DESKTOP, "/tmp/a.json", "claude-desktop"),
    (CLAUDE_CODE_PROJECT, "/tmp/b.json", "claude-code"),
    (CLAUDE_CODE_USER, "/tmp/c.json", "claude-code"),
    (VSCODE, "/tmp/d.json", "vscode"),
    (CODEX, "/tmp/e.conf", "codex"),
    (json.dumps({"mcpServers": {"x": {"url": "https://x.example/mcp"}}}), "/tmp/f.json", "cursor"),
])
def test_detect(text: str, filename: str, expected: str) -> None:
    assert detect(text, filename) == expected


def test_claude_desktop() -> None:
    result = parse(CLAUDE_DESKTOP, "claude_desktop_config.json")
    assert result.format == "claude-desktop"
    assert bodies(result) == {
        "filesystem": {"command": "npx", "args": ["-y", "@modelcontextprotocol/server-filesystem", "/Users/me/src"]},
        "github": {"command": "docker", "args": ["run", "-i", "--rm", "ghcr.io/github/github-mcp-server"],
                   "env": {"GITHUB_PERSONAL_ACCESS_TOKEN": "ghp_0123456789abcdefghijABCDEFGHIJ012345"}},
    }
    loads_in_mcprelay(result)


def test_claude_code_project_variables_become_references_only_where_mcprelay_resolves_them() -> None:
    result = parse(CLAUDE_CODE_PROJECT, "/home/me/app/.mcp.json")
    got = bodies(result)
    assert got["sentry"] == {"url": "https://mcp.sentry.dev/mcp", "protocol": "http"}
    assert got["asana"] == {"url": "https://mcp.asana.com/sse", "protocol": "sse", "headers": {"X-Team": "core"}}
    # A header is resolved at use by mcprelay: the reference survives as ${env:…}, the value is never copied.
    assert got["api"]["headers"] == {"Authorization": "Bearer ${env:API_KEY}"}
    # A URL is not: kept as written, with a note saying so.
    assert got["api"]["url"] == "${API_BASE_URL:-https://api.example.com}/mcp"
    notes = " ".join(n for s in result.servers for n in s.notes)
    assert "API_BASE_URL" in notes and "not by mcprelay" in notes
    assert got["memory"]["env"] == {"MEMORY_FILE_PATH": "${env:HOME}/memory.json"}


def test_claude_code_user_file_reads_user_and_project_servers() -> None:
    result = parse(CLAUDE_CODE_USER, "/home/me/.claude.json")
    names = [(s.name, s.where) for s in result.servers]
    assert names == [("notion", ""), ("db", "project /home/me/app"), ("notion", "project /home/me/app"),
                     ("db", "project /home/me/other")]
    assert result.servers[1].body == {"command": "uvx", "args": ["mcp-server-postgres"]}


def test_cursor_interpolation() -> None:
    result = parse(CURSOR, "/home/me/proj/.cursor/mcp.json", home_dir="/home/me")
    got = bodies(result)
    assert got["linear"] == {"url": "https://mcp.linear.app/mcp",
                             "headers": {"Authorization": "Bearer ${env:LINEAR_TOKEN}"}}
    assert got["files"]["args"][-1] == "/home/me/proj"  # ${workspaceFolder}: the project holding .cursor/
    assert got["home-notes"]["args"] == ["/home/me/notes"]
    assert any("envFile" in n for n in result.servers[1].notes)
    loads_in_mcprelay(result)


def test_vscode_with_comments_inputs_and_types() -> None:
    result = parse(VSCODE, "/home/me/app/.vscode/mcp.json")
    got = bodies(result)
    assert got["perplexity"] == {"command": "npx", "args": ["-y", "server-perplexity-ask"],
                                 "env": {"PERPLEXITY_API_KEY": "${keyring:perplexity-key}"}}
    assert "mcprelay secrets set perplexity-key" in " ".join(result.servers[0].notes)
    assert got["fetch"] == {"command": "uvx", "args": ["mcp-server-fetch"]}
    assert any("cwd" in n for n in result.servers[1].notes)
    assert got["github"] == {"url": "https://api.githubcopilot.com/mcp/", "protocol": "http"}
    assert got["legacy"] == {"url": "http://localhost:3000/sse", "protocol": "sse",
                             "headers": {"X-Key": "${env:LEGACY_KEY}"}}
    loads_in_mcprelay(result)


def test_vscode_settings_json() -> None:
    assert bodies(parse(VSCODE_SETTINGS, "settings.json")) == {
        "time": {"command": "uvx", "args": ["mcp-server-time"]}}


def test_codex() -> None:
    result = parse(CODEX, "/home/me/.codex/config.toml")
    got = bodies(result)
    assert got["docs"] == {"command": "docs-server", "args": ["--port", "4000"], "env": {"API_KEY": "value"}}
    assert got["figma"] == {"url": "https://mcp.figma.com/mcp", "protocol": "http", "headers": {
        "X-Figma-Region": "us-east-1", "X-Org-Id": "${env:FIGMA_ORG_ID}",
        "Authorization": "Bearer ${env:FIGMA_OAUTH_TOKEN}"}}
    assert got["parked"]["enabled"] is False
    notes = " ".join(result.servers[0].notes)
    assert "env_vars" in notes and "startup_timeout_sec" in notes
    assert mcprelay_name("my.server") == "my-server"
    loads_in_mcprelay(result)


def test_jsonc_keeps_strings_whole() -> None:
    text = '{"a": "http://x/y // not a comment", /* c */ "b": [1, 2,], // end\n "c": "x,]"}'
    assert json.loads(strip_jsonc(text)) == {"a": "http://x/y // not a comment", "b": [1, 2], "c": "x,]"}


@pytest.mark.parametrize("name,expected", [
    ("github", "github"), ("my server", "my-server"), ("a__b", "a_b"), ("gateway", "gateway-server"),
    ("!!!", "server"), ("ok-name_1", "ok-name_1"),
])
def test_names(name: str, expected: str) -> None:
    assert mcprelay_name(name) == expected


@pytest.mark.parametrize("text,fmt", [
    ("not json at all {", None), ("[1, 2]", "claude-desktop"), ('{"servers": []}', "vscode"),
    ('{"other": 1}', None), ("x = [", "codex"),
])
def test_unreadable(text: str, fmt: str | None) -> None:
    with pytest.raises(UnreadableConfig):
        parse(text, "/tmp/x.json", fmt)
