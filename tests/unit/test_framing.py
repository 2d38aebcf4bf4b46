"""``gateway/serving/framing.py`` and ``safejson.py``: what gets past the first look at a message, and what is answered.

The table cases are the inputs that killed or silenced the gateway (issue 10, item 2); the fuzzing
(hypothesis, a few seconds) checks that no input raises and that what passes is what the SDK parses
as the same kind of message.
"""

from __future__ import annotations

import json
from typing import Any

import mcp_types as types
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mcprelay import safejson
from mcprelay.gateway.serving import framing

FUZZ = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def refused(raw: bytes) -> framing.Refusal:
    result = framing.check(raw)
    assert isinstance(result, framing.Refusal), result
    json.loads(result.body())  # the answer itself is always valid JSON-RPC
    return result


@pytest.mark.parametrize(
    ("raw", "code", "words"),
    [
        (b"[" * 100_000, -32700, "nested 100000 levels deep"),
        (b'{"a":' * 100_000 + b"1" + b"}" * 100_000, -32700, "nested 100000 levels deep"),
        (b'{"jsonrpc":"2.0","id":1,"method":"x","params":{"n":' + b"9" * 5000 + b"}}", -32700, "more than 4300 digits"),
        (b'{"jsonrpc":"2.0","id":1,"method":"x","params":{"n":NaN}}', -32700, "NaN is not a JSON number"),
        (b'{"jsonrpc":"2.0","id":1,"method":"x","params":{"n":-Infinity}}', -32700, "-Infinity"),
        (b'{"jsonrpc":"2.0","id":1,"method":"x","params":{"n":1e400}}', -32700, "1e400 is out of range"),
        (b'{"jsonrpc":"2.0","id":1,"method":"\xff"}', -32700, "not UTF-8: byte 0xff"),
        (b"{not json", -32700, "not valid JSON"),
        (b"", -32700, "not valid JSON"),
        (b"[]", -32600, "a batch"),
        (b'"ping"', -32600, "not a JSON str"),
        (b'{"jsonrpc":"2.0","id":{"a":1},"method":"tools/list"}', -32600,
         '"id" must be a string or an integer, not dict'),
        (b'{"jsonrpc":"2.0","id":1.5,"method":"tools/list"}', -32600, "not float"),
        (b'{"jsonrpc":"2.0","id":true,"method":"tools/list"}', -32600, "not bool"),
        (b'{"jsonrpc":"2.0","id":null,"method":"tools/list"}', -32600, "not null"),
        (b'{"jsonrpc":"1.0","id":1,"method":"tools/list"}', -32600, '"jsonrpc" must be "2.0"'),
        (b'{"id":1,"method":"tools/list"}', -32600, '"jsonrpc" must be "2.0"'),
        (b'{"jsonrpc":"2.0","id":1,"method":5}', -32600, '"method" must be a string'),
        (b'{"jsonrpc":"2.0","id":1,"method":"x","params":[1]}', -32600, '"params" must be an object'),
        (b'{"jsonrpc":"2.0","id":1}', -32600, "exactly one of"),
        (b'{"jsonrpc":"2.0","id":1,"result":{},"error":{"code":1,"message":"m"}}', -32600, "exactly one of"),
        (b'{"jsonrpc":"2.0","result":{}}', -32600, 'needs an "id"'),
        (b'{"jsonrpc":"2.0","id":1,"result":[]}', -32600, '"result" must be an object'),
        (b'{"jsonrpc":"2.0","id":1,"error":{"code":"x","message":"m"}}', -32600, 'integer "code"'),
    ],
)
def test_refusals(raw: bytes, code: int, words: str) -> None:
    refusal = refused(raw)
    assert refusal.code == code
    assert words in refusal.message


def test_a_refused_request_with_a_usable_id_is_answered_with_it() -> None:
    assert refused(b'{"jsonrpc":"2.0","id":7,"method":5}').id == 7
    assert refused(b'{"jsonrpc":"2.0","id":"a","method":"x","params":"p"}').id == "a"
    # An unusable id, or a broken response, is answered with id null (JSON-RPC 2.0 §5).
    assert refused(b'{"jsonrpc":"2.0","id":{"x":1},"method":"x"}').id is None
    assert refused(b'{"jsonrpc":"2.0","id":3}').id is None
    assert refused(b'{"jsonrpc":"2.0","id":3,"method":"x","params":{"n":NaN}}').id is None


def test_size_cap() -> None:
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "x", "params": {"s": "y" * 100}}).encode()
    assert isinstance(framing.check(body), dict)
    refusal = refused_with(body, max_bytes=50)
    assert refusal.status == 413 and f"{len(body):,} bytes" in refusal.message


def refused_with(raw: bytes, **limits: Any) -> framing.Refusal:
    result = framing.check(raw, **limits)
    assert isinstance(result, framing.Refusal)
    return result


@pytest.mark.parametrize(
    "message",
    [
        {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "a", "arguments": {"x": [1, 2.5]}}},
        {"jsonrpc": "2.0", "id": "abc", "method": "ping"},
        {"jsonrpc": "2.0", "id": 2**70, "method": "ping", "params": None},
        {"jsonrpc": "2.0", "method": "notifications/initialized"},
        {"jsonrpc": "2.0", "id": 5, "result": {}},
        {"jsonrpc": "2.0", "id": None, "error": {"code": -32700, "message": "parse error"}},
        {"jsonrpc": "2.0", "id": 1, "method": "x", "params": {"deep": [[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]}},
    ],
)
def test_messages_that_pass(message: dict[str, Any]) -> None:
    assert framing.check(json.dumps(message).encode()) == message


def test_nesting_depth_ignores_brackets_in_strings() -> None:
    assert safejson.nesting_depth(b'["[[[[", "\\"[[[", {"a": "]]]]"}]') == 2
    assert safejson.nesting_depth(b"no brackets") == 0
    assert safejson.nesting_depth(b'"\\\\"[[]]') == 2  # an escaped backslash does not escape the quote


# ---- fuzzing -----------------------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=30,
)
ids = st.one_of(st.integers(), st.text(max_size=8), st.none(), st.booleans(), st.floats(), st.just({"a": 1}))
envelopes = st.fixed_dictionaries(
    {},
    optional={
        "jsonrpc": st.sampled_from(["2.0", "1.0", 2]),
        "id": ids,
        "method": st.one_of(st.sampled_from(["ping", "tools/call", "notifications/cancelled"]), st.integers()),
        "params": st.one_of(st.none(), st.dictionaries(st.text(max_size=5), json_values, max_size=3), json_values),
        "result": st.one_of(st.dictionaries(st.text(max_size=5), json_values, max_size=3), json_values),
        "error": st.one_of(
            st.fixed_dictionaries({"code": st.integers(), "message": st.text(max_size=10)}), json_values
        ),
    },
)


@FUZZ
@given(st.binary(max_size=300))
def test_fuzz_bytes_never_raise(raw: bytes) -> None:
    result = framing.check(raw)
    assert isinstance(result, dict | framing.Refusal)


@FUZZ
@given(st.text(alphabet='[]{}"\\:,0123456789eE.-+ aNInfty', max_size=400))
def test_fuzz_json_like_text_never_raises(text: str) -> None:
    result = framing.check(text.encode())
    assert isinstance(result, dict | framing.Refusal)


@FUZZ
@given(envelopes)
def test_fuzz_what_passes_is_what_the_sdk_parses_as_the_same_kind(message: dict[str, Any]) -> None:
    result = framing.check(json.dumps(message).encode())
    if isinstance(result, framing.Refusal):
        if "method" in message and isinstance(message.get("id"), int | str) and not isinstance(message["id"], bool):
            assert result.id == message["id"]  # a request with a usable id is answered with it
        else:
            assert result.id is None
        return
    parsed = types.jsonrpc_message_adapter.validate_python(result, by_name=False)
    if "method" in message:
        expected: type = types.JSONRPCRequest if "id" in message else types.JSONRPCNotification
    else:
        expected = types.JSONRPCResponse if "result" in message else types.JSONRPCError
    assert isinstance(parsed, expected)
    if "id" in message:
        assert parsed.id == message["id"]  # type: ignore[union-attr]


@FUZZ
@given(st.integers(min_value=1, max_value=3000), st.sampled_from([b"[", b"{\"k\":", b'["\\"', b"[1,"]))
def test_fuzz_depth_is_refused_not_recursed(depth: int, opener: bytes) -> None:
    result = framing.check(b'{"jsonrpc":"2.0","id":1,"method":"x","params":{"a":' + opener * depth)
    assert isinstance(result, framing.Refusal)
