"""The catalogue's pure pieces: names and URIs across namespaces, URI rewriting, era translation."""

from __future__ import annotations

from typing import Any

import pytest

from mcprelay.gateway.catalog.eras import TranslationError, for_client, tool_result_problem, without_upstream_stamp
from mcprelay.gateway.catalog.names import Namespace, split_name, split_uri
from mcprelay.gateway.catalog.origin import level_admits
from mcprelay.gateway.catalog.rewrite import content_to_agent, result_to_agent

PREFIXED = Namespace("docs")
OWN = Namespace("docs", prefixed=False)


def test_names_and_uris_map_there_and_back() -> None:
    assert PREFIXED.name("search") == "docs__search"
    assert PREFIXED.original_name("docs__search") == "search"
    assert PREFIXED.original_name("other__search") is None
    assert PREFIXED.uri("file:///a.txt") == "mcprelay://docs/file:///a.txt"
    assert PREFIXED.original_uri("mcprelay://docs/file:///a.txt") == "file:///a.txt"
    assert PREFIXED.original_uri("mcprelay://other/x") is None
    # A template keeps its variables; the prefix is a literal in front of them.
    assert PREFIXED.uri("memo://note/{id}") == "mcprelay://docs/memo://note/{id}"
    assert OWN.name("search") == "search" and OWN.uri("file:///a.txt") == "file:///a.txt"
    assert OWN.original_name("search") == "search"
    assert split_name("a__b__c") == ("a", "b__c")
    assert split_name("plain") is None and split_name("__x") is None
    assert split_uri("mcprelay://a/b://c") == ("a", "b://c")
    assert split_uri("file:///x") is None and split_uri("mcprelay://a") is None


def test_links_and_embedded_resources_are_rewritten_and_nothing_else_is_copied() -> None:
    content = [
        {"type": "text", "text": "memo://note/1 is mentioned, not linked"},
        {"type": "resource_link", "uri": "memo://note/1", "name": "n1"},
        {"type": "resource", "resource": {"uri": "memo://note/2", "text": "x"}},
        {"type": "resource", "resource": "not an object"},
        "not a block",
    ]
    out = content_to_agent(content, PREFIXED)
    assert out[0] is content[0]
    assert out[1] == {"type": "resource_link", "uri": "mcprelay://docs/memo://note/1", "name": "n1"}
    assert out[2]["resource"]["uri"] == "mcprelay://docs/memo://note/2"
    assert out[3] is content[3] and out[4] == "not a block"
    assert content[1]["uri"] == "memo://note/1"  # the upstream's result is not changed in place
    plain = [{"type": "text", "text": "hi"}]
    assert content_to_agent(plain, PREFIXED) is plain


def test_results_of_each_method_have_their_uris_rewritten() -> None:
    prompt = {"messages": [{"role": "user", "content": {"type": "resource", "resource": {"uri": "a://1", "text": ""}}}]}
    assert result_to_agent("prompts/get", prompt, PREFIXED)["messages"][0]["content"]["resource"]["uri"] == (
        "mcprelay://docs/a://1"
    )
    read = {"contents": [{"uri": "a://1", "text": "x"}]}
    assert result_to_agent("resources/read", read, PREFIXED)["contents"][0]["uri"] == "mcprelay://docs/a://1"
    completion = {"completion": {"values": ["a://1"]}}
    assert result_to_agent("completion/complete", completion, PREFIXED) is completion


def test_a_handshake_result_gains_what_a_2026_client_requires() -> None:
    result = {"content": [{"type": "text", "text": "hi"}]}
    shaped = for_client("tools/call", result, upstream_version="2025-11-25", client_version="2026-07-28")
    assert shaped["resultType"] == "complete" and shaped["content"][0]["text"] == "hi"
    read = for_client("resources/read", {"contents": [{"uri": "a://1", "text": "x"}]},
                      upstream_version="2025-11-25", client_version="2026-07-28")
    assert read["contents"][0]["uri"] == "a://1"  # not silently dropped by a union arm that fits nothing
    assert read["ttlMs"] == 0 and read["cacheScope"] == "private"


def test_a_2026_result_loses_what_a_handshake_client_does_not_know() -> None:
    result = {"resultType": "complete", "content": [{"type": "text", "text": "hi"}],
              "_meta": {"io.modelcontextprotocol/serverInfo": {"name": "up", "version": "1"}, "trace": "t"}}
    shaped = for_client("tools/call", result, upstream_version="2026-07-28", client_version="2025-11-25")
    assert "resultType" not in shaped
    assert shaped["_meta"] == {"trace": "t"}


def test_same_era_results_travel_as_received() -> None:
    result: dict[str, Any] = {"content": [{"type": "text", "text": "hi"}], "extra": 1}
    assert for_client("tools/call", result, upstream_version="2025-06-18", client_version="2025-11-25") is result


def test_the_upstream_is_blamed_only_for_its_own_mistakes() -> None:
    broken = {"content": "not a list"}
    with pytest.raises(TranslationError) as caught:
        for_client("tools/call", broken, upstream_version="2025-11-25", client_version="2026-07-28")
    assert caught.value.upstream_at_fault
    assert "which the server itself negotiated" in str(caught.value)


def test_the_shape_check_reads_only_what_every_client_reads() -> None:
    assert tool_result_problem({"content": [{"type": "text", "text": "x"}]}) is None
    assert tool_result_problem({"content": [{"text": "no type"}]}) is not None
    assert tool_result_problem({"content": [], "isError": "yes"}) == "isError must be true or false"
    assert tool_result_problem({"content": [], "structuredContent": [1]}) == "structuredContent must be an object"
    assert tool_result_problem({"content": [], "structuredContent": [1]}, modern=True) is None
    assert tool_result_problem({"resultType": "input_required", "inputRequests": {}}) is None


def test_the_upstream_stamp_goes_and_the_rest_of_meta_stays() -> None:
    stamp = {"io.modelcontextprotocol/serverInfo": {"name": "up", "version": "1"}}
    assert without_upstream_stamp({"content": [], "_meta": stamp}) == {"content": []}
    plain = {"content": [], "_meta": {"trace": "t1"}}
    assert without_upstream_stamp(plain) is plain


@pytest.mark.parametrize(
    ("wanted", "level", "admitted"),
    [(None, "debug", True), ("info", "debug", False), ("info", "info", True), ("info", "error", True),
     ("error", "warning", False), ("warning", "made-up", True)],
)
def test_log_levels(wanted: str | None, level: str, admitted: bool) -> None:
    assert level_admits(wanted, level) is admitted
