"""Pure logic: sealing, the Redis store URL, and range checks of hostile token responses."""

from __future__ import annotations

import json
import os

import pytest

from mcprelay.errors import ErrorType, McpRelayError
from mcprelay.oauth.grant import Attempt, local_stamp, spent_hash
from mcprelay.oauth.rfc6749 import parse_token_response
from mcprelay.store.redis import parse_redis_url
from mcprelay.store.seal import Sealer, SealError, decode_key


def test_sealed_values_open_with_the_current_or_previous_key_only() -> None:
    old, new, other = os.urandom(32), os.urandom(32), os.urandom(32)
    blob = Sealer(old).seal(b"secret", "tokens/a")
    assert b"secret" not in blob
    assert Sealer(new, previous=old).open(blob, "tokens/a") == b"secret"
    with pytest.raises(SealError, match="neither"):
        Sealer(new, previous=other).open(blob, "tokens/a")
    with pytest.raises(SealError, match="authentication failed"):
        Sealer(old).open(blob, "tokens/b")  # moved to another key
    with pytest.raises(SealError, match="truncated"):
        Sealer(old).open(blob[:10], "tokens/a")


def test_data_keys_must_be_32_bytes_of_base64() -> None:
    with pytest.raises(ValueError, match="not 32"):
        decode_key("c2hvcnQ=")
    with pytest.raises(ValueError, match="not base64"):
        decode_key("not base64!")


def test_redis_urls_keep_their_password_out_of_what_is_shown(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MCPRELAY_REDIS_PASSWORD", raising=False)
    client, shown, prefix, ttl, wait = parse_redis_url("rediss://u:p%40ss@redis.example:6380/2?prefix=t1:&lease_ttl=5")
    assert shown == "rediss://redis.example:6380/2" and prefix == "t1:" and ttl == 5 and wait == 60
    assert "prefix" not in client and "p%40ss" in client
    monkeypatch.setenv("MCPRELAY_REDIS_PASSWORD", "from-env")
    client, shown, *_ = parse_redis_url("redis://10.0.0.1/0")
    assert "from-env" in client and "from-env" not in shown and shown == "redis://10.0.0.1:6379/0"
    for bad in ("redis://h/0?lease_ttl=0", "redis://h/0?wait=abc", "http://h/0", "redis:///0"):
        with pytest.raises(McpRelayError) as caught:
            parse_redis_url(bad)
        assert caught.value.error_type == ErrorType.CONFIG_INVALID


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        ('{"access_token": "a", "expires_in": 1e400}', "finite"),
        ('{"access_token": "a", "expires_in": "Infinity"}', "not a number"),
        ('{"access_token": "a", "expires_in": -5}', "outside"),
        ('{"access_token": "a", "expires_in": 0}', "outside"),
        ('{"access_token": "a", "expires_in": 1e12}', "outside"),
        ('{"access_token": "a", "expires_in": true}', "not a number"),
        ('{"access_token": "a", "token_type": {"x": 1}}', "token_type"),
    ],
)
def test_hostile_token_responses_are_refused_by_name(body: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        parse_token_response(json.loads(body))


def test_a_numeric_string_lifetime_is_accepted() -> None:
    assert parse_token_response({"access_token": "a", "expires_in": "3600"}, now=0).expires_at == 3600


def test_attempt_records_hold_a_hash_and_pad_to_the_grant_size() -> None:
    attempt = Attempt(spent_hash("rt-secret"), "p1", at=1.0)
    data = attempt.to_dict(2000)
    assert "rt-secret" not in json.dumps(data) and 1900 < len(json.dumps(data)) <= 2010
    assert Attempt.from_dict(data) == attempt
    assert local_stamp({"a": 1}) == local_stamp({"a": 1}) != local_stamp({"a": 2})
