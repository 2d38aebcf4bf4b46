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


# ---- hostile files (issue 10, items 2 and 10): every content is exit 2 with a clear error naming the file ----


def _refused(path: Path) -> McpRelayError:
    with pytest.raises(McpRelayError) as info:
        load_config(path)
    err = info.value
    assert err.error_type == ErrorType.CONFIG_INVALID and err.exit_code == EXIT_USAGE
    assert str(path) in err.message
    return err


def _bytes(tmp_path: Path, data: bytes) -> Path:
    path = tmp_path / "config.json"
    path.write_bytes(data)
    return path


@pytest.mark.parametrize(
    ("data", "words"),
    [
        (b'{"mcpServers": ' + b"[" * 100_000, "nested 100001 levels deep"),
        (b'{"mcpServers": {}, "x": "caf\xe9"}', "not UTF-8: byte 0xe9 at offset 28 (line 1)"),
        (b'{"mcpServers": {"a": {"url": "http://h", "oauth": {"callback_port": ' + b"9" * 5000 + b"}}}}",
         "more than 4300 digits"),
        (b'{"mcpServers": {"a": {"url": "http://h", "oauth": {"login_timeout": 1e400}}}}', "1e400 is out of range"),
        (b'{"mcpServers": {"a": {"url": "http://h", "oauth": {"login_timeout": NaN}}}}', "NaN is not a JSON number"),
        (b'{"mcpServers": {"a": {"url": "http://[::1"}}}', "is not a valid URL"),
        (b'{"mcpServers": {"a": {"url": "http://h:99999/mcp"}}}', "is not a valid URL"),
        (b'{"mcpServers": {"a": {"url": "ftp://x"}}}', "must be an http:// or https:// URL, not ftp"),
        (b'{"mcpServers": {"a": {"url": "http:///mcp"}}}', "has no host"),
        (b'{"mcpServers": {"a": {"url": "https://h", "oauth": {"redirect_uri": "http://[::1"}}}}', "redirect_uri"),
        (b'{"mcpServers": {"a": {"url": "https://h", "enabled": "yes"}}}',
         "field 'enabled': Input should be a valid boolean"),
        (b'{"mcpServers": {"a": {"url": "https://h", "oauth": {"callback_port": "8080"}}}}', "callback_port"),
        (b'{"mcpServers": [{"name": "abc\\n", "url": "https://h"}]}', "letters, digits"),
        (b'{"mcpServers": {"a": {"name": "b", "url": "https://h"}}}', "server 'a' has an inner \"name\" 'b'"),
        (b'{"mcpServers": {"a": {"url": "https://h"}, "a": {"command": "x"}}}', "the key 'a' appears twice"),
        (b'{"mcpServers": [{"name": "Git", "url": "https://h"}, {"name": "git", "url": "https://h"}]}',
         "differ only in case"),
        (b'{"mcpServers": {"a": "https://h"}}', "server 'a' must be an object"),
        (b'{"mcpServers": {"a": {"command": "x", "env": {"A=B": "1"}}}}', "not an environment variable name"),
        (b'{"mcpServers": {"a": {"url": "https://h", "headers": {"X": "a\\r\\nInjected: 1"}}}}', "CR, LF or NUL"),
        (b'{"mcpServers": {"a": {"command": "x\\u0000"}}}', "NUL"),
        (b'{"mcpServers": {"a": {"url": "https://h", "max_result_bytes": 5}}}', "max_result_bytes"),
        (b"", "not valid JSON"),
    ],
)
def test_hostile_content_is_a_clear_config_error(tmp_path: Path, data: bytes, words: str) -> None:
    err = _refused(_bytes(tmp_path, data))
    assert words in err.message, err.message


def test_a_utf8_byte_order_mark_is_accepted(tmp_path: Path) -> None:
    """Windows editors save UTF-8 with a BOM."""
    loaded = load_config(_bytes(tmp_path, b'\xef\xbb\xbf{"mcpServers": {"a": {"url": "https://h"}}}'))
    assert loaded.config.server("a").url == "https://h"


def test_the_server_and_field_are_named(tmp_path: Path) -> None:
    err = _refused(_bytes(tmp_path, b'{"mcpServers": {"gh": {"url": "https://h", "enabled": "yes"}}}'))
    assert err.server == "gh" and err.details["field"] == "enabled"
    assert "server 'gh'" in err.message


def test_a_file_over_the_size_cap_is_refused_unread(tmp_path: Path) -> None:
    from mcprelay.config import MAX_CONFIG_BYTES

    path = tmp_path / "config.json"
    with path.open("wb") as fh:
        fh.write(b'{"mcpServers": {}, "pad": "')
        fh.truncate(47 * 1024 * 1024)  # sparse: 47 MB without writing them
    err = _refused(path)
    assert "47.0 MiB" in err.message and "limited to 1.0 MiB" in err.message
    assert MAX_CONFIG_BYTES == 1024 * 1024


@pytest.mark.parametrize("special", ["/dev/zero", "/dev/null", "directory", "fifo", "socket", "symlink to /dev/zero"])
def test_anything_but_a_regular_file_is_refused_without_blocking(tmp_path: Path, special: str) -> None:
    import os
    import socket
    import stat
    import sys

    if sys.platform == "win32":
        pytest.skip("POSIX special files")
    if special.startswith("/dev/"):
        path = Path(special)
    elif special == "directory":
        path = tmp_path / "dir.json"
        path.mkdir()
    elif special == "fifo":
        path = tmp_path / "fifo.json"
        os.mkfifo(path)  # nobody writes to it: a blocking open would wait forever
    elif special == "socket":
        path = tmp_path / "s.json"
        server = socket.socket(socket.AF_UNIX)
        server.bind(str(path))
        server.close()
    else:
        path = tmp_path / "link.json"
        path.symlink_to("/dev/zero")
    assert not stat.S_ISREG(path.stat().st_mode)
    err = _refused(path)
    assert "not a regular file" in err.message or "cannot read" in err.message, err.message


def test_a_config_that_grows_while_read_stops_at_the_cap(tmp_path: Path) -> None:
    """The cap holds on what is read, not only on what stat said (a file appended to meanwhile)."""
    from mcprelay import config as config_module

    path = _bytes(tmp_path, b'{"mcpServers": {}}' + b" " * 100)
    limit = config_module.MAX_CONFIG_BYTES
    try:
        config_module.MAX_CONFIG_BYTES = 50  # stat says 118 > 50: refused before reading
        err = _refused(path)
        assert "limited to 50 bytes" in err.message
    finally:
        config_module.MAX_CONFIG_BYTES = limit


def test_max_result_bytes_top_level_applies_to_servers_without_their_own() -> None:
    from mcprelay.config import DEFAULT_MAX_RESULT_BYTES

    config = parse_config({"max_result_bytes": 2048, "mcpServers": {
        "a": {"url": "https://h"}, "b": {"url": "https://h", "max_result_bytes": 4096}}}).config
    assert config.server("a").max_result_bytes == 2048 and config.server("b").max_result_bytes == 4096
    assert parse_config({"mcpServers": {"a": {"url": "https://h"}}}).config.server("a").max_result_bytes == (
        DEFAULT_MAX_RESULT_BYTES
    )


# ---- bounded fuzzing of the loader: any bytes, any JSON → a config or a config_invalid error ----

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                      HealthCheck.function_scoped_fixture])

_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20)
    | st.sampled_from(["http://[::1", "ftp://x", "https://h/mcp", "stdio", "auto", "yes", "abc\n", "gateway"]),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=6), children, max_size=3),
    max_leaves=12,
)
_server_fields = st.sampled_from(["name", "url", "protocol", "command", "args", "env", "headers", "enabled", "oauth",
                                  "max_result_bytes", "quarantined"])
_oauth_fields = st.sampled_from(["client_id", "redirect_uri", "callback_port", "scopes", "extra_params",
                                 "login_timeout", "pkce_enabled"])
_configs = st.fixed_dictionaries({"mcpServers": st.one_of(
    st.dictionaries(st.text(max_size=8), st.dictionaries(_server_fields, _values | st.dictionaries(
        _oauth_fields, _values, max_size=3), max_size=5), max_size=3),
    st.lists(st.dictionaries(_server_fields, _values, max_size=5), max_size=3),
    _values,
)}, optional={"token_store": _values, "routing_mode": _values, "listen": _values, "api_key": _values,
              "owner_only": _values, "max_result_bytes": _values, "top_k": _values})


def _loads_or_config_error(path: Path) -> None:
    try:
        load_config(path)
    except McpRelayError as exc:
        assert exc.error_type == ErrorType.CONFIG_INVALID and str(path) in exc.message


@FUZZ
@given(st.binary(max_size=200))
def test_fuzz_any_bytes(tmp_path: Path, data: bytes) -> None:
    _loads_or_config_error(_bytes(tmp_path, data))


@FUZZ
@given(_configs)
def test_fuzz_config_shapes(tmp_path: Path, raw: dict[str, object]) -> None:
    _loads_or_config_error(_bytes(tmp_path, json.dumps(raw).encode()))
