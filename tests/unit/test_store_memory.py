from pathlib import Path
from typing import Any

import pytest

from mcprelay.errors import ErrorType, McpRelayError
from mcprelay.store import open_store
from mcprelay.store.base import TokenStore, check_key
from mcprelay.store.memory import MemoryStore

ODD_KEYS = [
    "tokens/github",
    "registration/github/https://auth.example.com/tenant:1?x=y&z=%2F#frag",
    "tokens/ünïcode ✓/grant:42",
    "../../etc/passwd",
]


def test_round_trip_and_missing() -> None:
    store = MemoryStore()
    assert store.get("tokens/nothing") is None
    for i, key in enumerate(ODD_KEYS):
        store.put(key, {"refresh_token": f"rt-{i}", "n": i, "nested": {"scopes": ["a", "b"]}})
    for i, key in enumerate(ODD_KEYS):
        assert store.get(key) == {"refresh_token": f"rt-{i}", "n": i, "nested": {"scopes": ["a", "b"]}}
    assert store.keys() == sorted(ODD_KEYS)


def test_overwrite_and_delete_are_idempotent() -> None:
    store = MemoryStore()
    store.put("k", {"v": 1})
    store.put("k", {"v": 2})
    assert store.get("k") == {"v": 2}
    store.delete("k")
    store.delete("k")
    store.delete("never-there")
    assert store.get("k") is None


def test_values_are_copied_both_ways() -> None:
    store = MemoryStore()
    value: dict[str, Any] = {"tokens": {"access_token": "at"}, "scopes": ["a"]}
    store.put("k", value)
    value["tokens"]["access_token"] = "changed after put"
    value["scopes"].append("b")
    got = store.get("k")
    assert got == {"tokens": {"access_token": "at"}, "scopes": ["a"]}
    assert got is not None
    got["tokens"]["access_token"] = "changed after get"
    assert store.get("k") == {"tokens": {"access_token": "at"}, "scopes": ["a"]}


def test_rejects_what_a_durable_store_could_not_hold() -> None:
    store = MemoryStore()
    with pytest.raises(TypeError):
        store.put("k", {"when": object()})
    with pytest.raises(TypeError):
        store.put("k", ["not", "a", "dict"])  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        store.put("", {"v": 1})
    with pytest.raises(ValueError):
        check_key("")
    assert store.get("k") is None


def test_describe_and_protocol() -> None:
    store = MemoryStore()
    assert store.name == "memory"
    assert store.describe().startswith("memory")
    assert isinstance(store, TokenStore)


def test_open_store_memory_and_unknown_kinds(tmp_path: Path) -> None:
    store = open_store("memory", tmp_path)
    assert isinstance(store, MemoryStore)
    assert not (tmp_path / "store").exists()
    for kind in ["nope", "", "FILE", "vault"]:
        with pytest.raises(McpRelayError) as info:
            open_store(kind, tmp_path)
        assert info.value.error_type is ErrorType.CONFIG_INVALID
        assert info.value.suggestion


def test_open_store_redis_url_is_config_invalid_without_echoing_the_url(tmp_path: Path) -> None:
    with pytest.raises(McpRelayError) as info:
        open_store("redis://:hunter2@cache.example.com:6379/0", tmp_path)
    assert info.value.error_type is ErrorType.CONFIG_INVALID
    assert "hunter2" not in info.value.message
    assert "hunter2" not in str(info.value.to_dict())
