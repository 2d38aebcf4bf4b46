import json
from pathlib import Path

import pytest

from mcprelay.config import load_config, parse_config
from mcprelay.errors import EXIT_USAGE, ErrorType, McpRelayError


def write(tmp_path: Path, data: object) -> Path:
    path = tmp_path / "config.json"
    path.write_text(json.dumps(data) if not isinstance(data, str) else data)
    return path


def test_list_shape_and_dict_shape_are_equivalent(tmp_path: Path) -> None:
    listed = parse_config(
        {"mcpServers": [{"name": "github", "url": "https://api.example.com/mcp", "protocol": "http",
                         "oauth": {"scopes": ["repo"]}, "enabled": True}]}
    ).config
    keyed = parse_config({"mcpServers": {"github": {"url": "https://api.example.com/mcp", "protocol": "http",
                                                    "oauth": {"scopes": ["repo"]}}}}).config
    assert listed.mcp_servers == keyed.mcp_servers
    assert listed.server("github").oauth.scopes == ["repo"]


def test_stdio_inferred_from_command() -> None:
    config = parse_config({"mcpServers": {"local": {"command": "uvx", "args": ["some-server"], "env": {}}}}).config
    assert config.server("local").transport == "stdio"
    assert parse_config({"mcpServers": {"s": {"url": "http://h/sse"}}}).config.server("s").transport == "sse"
    assert parse_config({"mcpServers": {"s": {"url": "http://h/mcp"}}}).config.server("s").transport == "http"
    streamable = parse_config({"mcpServers": {"s": {"url": "http://h/sse", "protocol": "streamable-http"}}})
    assert streamable.config.server("s").transport == "http"


def test_unknown_server_field_names_field_server_and_file(tmp_path: Path) -> None:
    path = write(tmp_path, {"mcpServers": {"github": {"url": "https://x/mcp", "oauth": {"callback_prot": 1}}}})
    with pytest.raises(McpRelayError) as info:
        load_config(path)
    err = info.value
    assert err.error_type == ErrorType.CONFIG_INVALID and err.exit_code == EXIT_USAGE
    assert "callback_prot" in err.message and "'github'" in err.message and str(path) in err.message
    assert err.server == "github"


def test_unknown_top_level_field_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(McpRelayError, match="tokenstore"):
        load_config(write(tmp_path, {"mcpServers": [], "tokenstore": "file"}))


def test_bad_values_are_explained(tmp_path: Path) -> None:
    with pytest.raises(McpRelayError, match="callback_port"):
        parse_config({"mcpServers": {"a": {"url": "http://h/mcp", "oauth": {"callback_port": 70000}}}})
    with pytest.raises(McpRelayError, match="redirect_uri"):
        parse_config({"mcpServers": {"a": {"url": "http://h/mcp", "oauth": {"redirect_uri": "https://evil/cb"}}}})
    with pytest.raises(McpRelayError, match="letters, digits"):
        parse_config({"mcpServers": {"a__b": {"url": "http://h/mcp"}}})
    with pytest.raises(McpRelayError, match="needs 'url'"):
        parse_config({"mcpServers": {"a": {"protocol": "http"}}})
    with pytest.raises(McpRelayError, match="defined twice"):
        parse_config({"mcpServers": [{"name": "a", "url": "http://h"}, {"name": "a", "url": "http://h"}]})


def test_malformed_json_names_line_and_column(tmp_path: Path) -> None:
    with pytest.raises(McpRelayError) as info:
        load_config(write(tmp_path, '{"mcpServers": [,]}'))
    assert "line 1" in info.value.message and info.value.exit_code == EXIT_USAGE


def test_missing_named_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(McpRelayError, match="does not exist"):
        load_config(tmp_path / "nope.json")


def test_mcpproxy_config_loads_with_warnings() -> None:
    loaded = parse_config(
        {
            "listen": "127.0.0.1:8080",
            "data_dir": "~/.mcpproxy",
            "enable_tray": True,
            "top_k": 5,
            "tools_limit": 15,
            "mcpServers": [
                {"name": "gh", "url": "https://api.example.com/mcp", "protocol": "http", "enabled": True,
                 "quarantined": False, "created": "2025-01-01T00:00:00Z",
                 "oauth": {"client_id": "", "scopes": ["repo"], "pkce_enabled": False,
                           "extra_params": {"audience": "x"}}}
            ],
        }
    )
    assert loaded.config.server("gh").oauth.extra_params == {"audience": "x"}
    text = "\n".join(loaded.warnings)
    for field in ("data_dir", "enable_tray", "top_k", "tools_limit", "quarantined", "created"):
        assert field in text
    assert "PKCE S256" in text


def test_scopes_accept_a_space_separated_string() -> None:
    config = parse_config({"mcpServers": {"a": {"url": "http://h/mcp", "oauth": {"scopes": "a b"}}}}).config
    assert config.server("a").oauth.scopes == ["a", "b"]


def test_unknown_server_lookup_lists_known_names() -> None:
    config = parse_config({"mcpServers": {"a": {"url": "http://h/mcp"}}}).config
    with pytest.raises(McpRelayError, match="configured: a"):
        config.server("b")


def test_secrets_do_not_appear_in_repr() -> None:
    config = parse_config(
        {"api_key": "k-123", "mcpServers": {"a": {"url": "http://h/mcp", "oauth": {"client_secret": "s-456"}}}}
    ).config
    assert "s-456" not in repr(config) and "k-123" not in repr(config)
