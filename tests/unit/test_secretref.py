"""Secret references (pure parts): finding them, resolving ``${env:…}``, the missing-secret errors, the hints."""

from __future__ import annotations

import pytest

from mcprelay.config import parse_config
from mcprelay.errors import ErrorType, McpRelayError
from mcprelay.secretref import Resolver, looks_secret, references, server_references


def server(**body: object) -> object:
    return parse_config({"mcpServers": {"s": body}}).config.mcp_servers[0]


def test_references_anywhere_in_a_value() -> None:
    assert references("Bearer ${keyring:gh} and ${env:X_1}") == [("keyring", "gh"), ("env", "X_1")]
    assert references("${HOME} $${env:} ${other:x}") == []


def test_server_references_cover_every_secret_field() -> None:
    s = server(url="https://x.example/mcp", headers={"Authorization": "Bearer ${keyring:tok}"},
               oauth={"client_id": "c", "client_secret": "${env:SECRET}"})
    assert sorted(server_references(s)) == [("headers.Authorization", "keyring", "tok"),
                                            ("oauth.client_secret", "env", "SECRET")]


def test_env_resolved_in_a_copy_and_never_in_repr(tmp_path: object) -> None:
    s = server(command="x", env={"TOKEN": "${env:MY_TOKEN}", "PLAIN": "1"})
    resolved = Resolver(tmp_path, environ={"MY_TOKEN": "s3cret-value"}).server(s)  # type: ignore[arg-type]
    assert resolved.env == {"TOKEN": "s3cret-value", "PLAIN": "1"}
    assert s.env["TOKEN"] == "${env:MY_TOKEN}"  # type: ignore[attr-defined]
    assert "s3cret-value" not in repr(resolved)


def test_missing_env_names_the_reference(tmp_path: object) -> None:
    s = server(url="https://x.example/mcp", headers={"X-Key": "${env:NOPE_NOT_SET}"})
    with pytest.raises(McpRelayError) as info:
        Resolver(tmp_path, environ={}).server(s)  # type: ignore[arg-type]
    assert info.value.error_type == ErrorType.CONFIG_INVALID
    assert "${env:NOPE_NOT_SET}" in info.value.message and "headers.X-Key" in info.value.message
    assert info.value.server == "s" and "mcprelay secrets set" in info.value.suggestion


def test_a_resolved_header_may_not_smuggle_a_line_break(tmp_path: object) -> None:
    s = server(url="https://x.example/mcp", headers={"X-Key": "${env:K}"})
    with pytest.raises(McpRelayError, match="line break"):
        Resolver(tmp_path, environ={"K": "a\r\nX-Evil: 1"}).server(s)  # type: ignore[arg-type]


@pytest.mark.parametrize(("name", "value", "secret"), [
    ("GITHUB_TOKEN", "ghp_0123456789abcdefghij", True),
    ("Authorization", "Bearer abcdefghijklmnopqrstuvwxyz123", True),
    ("OPENAI_API_KEY", "sk-proj-0123456789abcdef", True),
    ("X", "ghp_0123456789abcdefghijkl", True),
    ("DATA", "aB3dE5gH7jK9mN1pQ3sT5vW7", True),
    ("GITHUB_TOKEN", "${keyring:gh}", False),
    ("Authorization", "Bearer ${env:TOKEN}", False),
    ("LOG_LEVEL", "debug", False),
    ("PATH", "/usr/local/bin:/usr/bin:/bin", False),
    ("ALLOWED_DIR", "/home/me/projects/some-long-directory-name", False),
])
def test_looks_secret(name: str, value: str, secret: bool) -> None:
    assert looks_secret(name, value) is secret
