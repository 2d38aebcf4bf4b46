import json
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mcprelay.gateway.catalog.search import IndexedTool, ToolIndex, tokenize, tools_from_schema

CORPUS = Path(__file__).resolve().parents[2] / "bench" / "tool_corpus.json"


def tool(server: str, name: str, description: str = "", parameters: list[str] | None = None) -> IndexedTool:
    return IndexedTool(f"{server}__{name}", description, parameters or [], server, name)


@pytest.fixture(scope="module")
def index() -> ToolIndex:
    return ToolIndex.build(
        [
            tool("github", "create_issue", "Open a new issue in a repository.", ["owner", "repo", "title"]),
            tool("jira", "create_issue", "Create a Jira issue in a project.", ["project_key", "summary"]),
            tool("github", "list_pull_requests", "List pull requests of a repository.", ["owner", "repo"]),
            tool("kubernetes", "get_pod_logs", "Fetch the logs of a container.", ["namespace", "tail_lines"]),
            tool("filesystem", "read_file", "Read the complete contents of a text file.", ["path"]),
            tool("weather", "get_forecast", "Daily forecast for a location.", ["location", "days"]),
        ]
    )


# -- tokenizer ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    ["get_pod_logs", "getPodLogs", "GetPodLogs", "get-pod-logs", "get.pod.logs", "get/pod/logs", "Get POD logs"],
)
def test_identifier_styles_give_the_same_terms(text: str) -> None:
    terms = tokenize(text)
    assert terms[:3] == ["get", "pod", "log"]


def test_acronym_followed_by_word_is_split() -> None:
    assert {"http", "server"} <= set(tokenize("HTTPServer"))


def test_cased_brand_names_meet_their_identifier_spelling() -> None:
    assert "github" in tokenize("our GitHub repo")
    assert "pr" in tokenize("the open PRs")


def test_lowercase_stopwords_and_single_characters_are_dropped() -> None:
    assert tokenize("The list OF a x") == ["list"]
    assert tokenize("don't send it") == ["send"]


@pytest.mark.parametrize(
    ("words", "stem"),
    [
        (["issue", "issues"], "issu"),
        (["create", "creates", "created", "creating"], "creat"),
        (["repository", "repositories"], "repository"),
        (["branch", "branches"], "branch"),
        (["run", "running"], "run"),
        (["stop", "stopped"], "stop"),
        (["list", "listed", "listing"], "list"),
        (["status", "statuses"], "status"),
    ],
)
def test_light_stemming_joins_inflections(words: list[str], stem: str) -> None:
    assert {term for word in words for term in tokenize(word)} == {stem}


def test_short_and_non_alphabetic_words_are_not_stemmed() -> None:
    assert tokenize("bus k8s string add") == ["bus", "k8s", "string", "add"]


def test_non_ascii_letters_are_kept() -> None:
    assert tokenize("Prévision météo") == ["prévision", "météo"]


# -- ranking -----------------------------------------------------------------------------------------


def test_gateway_name_query_ranks_that_tool_first(index: ToolIndex) -> None:
    for name in ("github__create_issue", "jira__create_issue", "kubernetes__get_pod_logs"):
        assert index.search(name)[0][0].name == name


def test_server_word_decides_between_same_named_tools(index: ToolIndex) -> None:
    assert index.search("create a jira issue")[0][0].name == "jira__create_issue"
    assert index.search("create a github issue")[0][0].name == "github__create_issue"


def test_results_are_best_first_and_positive(index: ToolIndex) -> None:
    results = index.search("create issue", limit=10)
    scores = [score for _, score in results]
    assert scores == sorted(scores, reverse=True)
    assert all(score > 0 for score in scores)
    assert {t.name for t, _ in results[:2]} == {"github__create_issue", "jira__create_issue"}


def test_parameter_names_count(index: ToolIndex) -> None:
    # "tail" and "namespace" appear only as parameter names.
    assert index.search("tail namespace")[0][0].name == "kubernetes__get_pod_logs"


def test_parameter_descriptions_count_a_little() -> None:
    idx = ToolIndex.build(
        [
            IndexedTool("a__x", "Does a thing.", ["q"], "a", "x", param_text="Glob pattern to match"),
            IndexedTool("b__y", "Does another thing.", ["q"], "b", "y"),
        ]
    )
    assert [t.name for t, _ in idx.search("glob")] == ["a__x"]


def test_name_match_outweighs_description_match() -> None:
    idx = ToolIndex.build(
        [
            tool("s", "archive_page", "Hide a page from the workspace."),
            tool("s", "hide_page", "Archive a page from the workspace."),
        ]
    )
    assert idx.search("archive")[0][0].name == "s__archive_page"


def test_unknown_words_give_nothing(index: ToolIndex) -> None:
    assert index.search("zyzzyva quux") == []
    assert index.search("") == []
    assert index.search("the of and") == []


def test_limit_is_respected(index: ToolIndex) -> None:
    assert len(index.search("repository file issue logs forecast", limit=2)) == 2
    assert index.search("issue", limit=0) == []
    assert index.search("issue", limit=-3) == []


def test_related_words_expand_queries_and_can_be_turned_off(index: ToolIndex) -> None:
    assert index.search("fetch the forecast")[0][0].name == "weather__get_forecast"
    # "ticket" is not in any tool, but it is a usual word for an issue.
    assert index.search("new ticket")[0][0].name.endswith("__create_issue")
    assert index.search("ticket", expand=False) == []


def test_repeating_a_query_word_does_not_change_the_score(index: ToolIndex) -> None:
    assert index.search("logs") == index.search("logs logs logs")


def test_empty_index() -> None:
    idx = ToolIndex.build([])
    assert len(idx) == 0
    assert idx.search("anything") == []


def test_len_and_build_from_iterator(index: ToolIndex) -> None:
    assert len(index) == 6
    assert len(ToolIndex.build(tool("s", f"t{i}") for i in range(3))) == 3


def test_tool_with_empty_text_is_indexed_but_never_found() -> None:
    idx = ToolIndex.build([IndexedTool("", "", [], "", ""), tool("s", "ping")])
    assert [t.name for t, _ in idx.search("ping")] == ["s__ping"]


def test_ties_are_broken_by_name() -> None:
    idx = ToolIndex.build([tool("b", "ping"), tool("a", "ping"), tool("c", "ping")])
    assert [t.name for t, _ in idx.search("ping")] == ["a__ping", "b__ping", "c__ping"]


def test_build_and_search_are_fast_for_a_thousand_tools() -> None:
    tools = [
        tool(f"server{i % 40}", f"do_thing_{i}", f"Performs operation number {i} on widgets and gadgets.", ["id", "q"])
        for i in range(1000)
    ]
    start = time.perf_counter()
    idx = ToolIndex.build(tools)
    built = time.perf_counter() - start
    start = time.perf_counter()
    idx.search("operation widgets gadgets server3", limit=5)
    searched = time.perf_counter() - start
    # Generous bounds (budget: 100 ms and 5 ms) so a loaded CI machine does not flake.
    assert built < 1.0
    assert searched < 0.1


# -- tools_from_schema -------------------------------------------------------------------------------


def test_schema_parameters_and_descriptions_are_extracted() -> None:
    schema = {
        "type": "object",
        "properties": {
            "owner": {"type": "string", "description": "Repository owner"},
            "state": {"type": "string", "enum": ["open", "closed", 3]},
            "filter": {"type": "object", "title": "Filter", "properties": {"label": {"description": "Label name"}}},
            "edits": {"type": "array", "items": {"type": "object", "properties": {"old_text": {}, "new_text": {}}}},
        },
    }
    indexed = tools_from_schema("github", "list_issues", "List issues.", schema)
    assert indexed.name == "github__list_issues"
    assert (indexed.server, indexed.tool, indexed.description) == ("github", "list_issues", "List issues.")
    assert indexed.parameters == ["owner", "state", "filter", "label", "edits", "old_text", "new_text"]
    for text in ("Repository owner", "open", "closed", "Filter", "Label name"):
        assert text in indexed.param_text


def test_schema_properties_deeper_than_one_level_are_ignored() -> None:
    schema: dict[str, Any] = {"properties": {"a": {"properties": {"b": {"properties": {"c": {}}}}}}}
    assert tools_from_schema("s", "t", None, schema).parameters == ["a", "b"]


@pytest.mark.parametrize(
    "schema",
    [
        None,
        {},
        {"properties": None},
        {"properties": []},
        {"properties": "oops"},
        {"properties": {"": {}, "  ": {}}},
        {"properties": {"x": None, "y": 3, "z": ["list"]}},
        {"properties": {"x": {"description": 42, "title": None, "enum": "nope", "items": "no"}}},
        {"properties": {"x": {"properties": {"y": "junk"}, "items": {"properties": 7}}}},
        {"type": "object", "properties": {1: {}, None: {}}},
        [],
        "not a schema",
        42,
    ],
)
def test_junk_schemas_do_not_raise(schema: Any) -> None:
    indexed = tools_from_schema("s", "t", None, schema)
    assert indexed.description == ""
    assert all(isinstance(name, str) and name.strip() for name in indexed.parameters)
    ToolIndex.build([indexed]).search("x y z")


def test_non_string_description_is_ignored() -> None:
    assert tools_from_schema("s", "t", 42, None).description == ""  # type: ignore[arg-type]


def test_huge_schema_is_capped() -> None:
    schema: dict[str, Any] = {"properties": {f"p{i}": {"description": "d" * 10_000} for i in range(1000)}}
    indexed = tools_from_schema("s", "t", "x" * 100_000, schema)
    assert len(indexed.parameters) <= 200
    assert len(indexed.description) <= 2000


# -- corpus and robustness ---------------------------------------------------------------------------


def _recall_at_5(index: ToolIndex, queries: list[dict[str, Any]]) -> float:
    found = 0
    for query in queries:
        names = {t.name for t, _ in index.search(query["query"], limit=5)}
        found += bool(names & set(query["expected"]))
    return found / len(queries)


def test_recall_on_the_bench_corpus() -> None:
    data = json.loads(CORPUS.read_text(encoding="utf-8"))
    idx = ToolIndex.build(
        tools_from_schema(t["server"], t["name"], t.get("description"), t.get("inputSchema")) for t in data["tools"]
    )
    names = {f"{t['server']}__{t['name']}" for t in data["tools"]}
    for query in data["queries"]:
        assert set(query["expected"]) <= names, query
    dev = [q for q in data["queries"] if q["split"] == "dev"]
    holdout = [q for q in data["queries"] if q["split"] == "holdout"]
    assert len(data["tools"]) >= 120 and len(dev) >= 60
    # Floors, not targets: dev guided the tokenizer, holdout did not (see bench/search_recall.py).
    assert _recall_at_5(idx, dev) >= 0.85
    assert _recall_at_5(idx, holdout) >= 0.70


@settings(max_examples=300, deadline=None)
@given(query=st.text(max_size=300), limit=st.integers(min_value=-2, max_value=50))
def test_search_never_raises(index: ToolIndex, query: str, limit: int) -> None:
    results = index.search(query, limit=limit)
    assert len(results) <= max(limit, 0)
    assert all(score > 0 for _, score in results)


@settings(max_examples=100, deadline=None)
@given(text=st.text(max_size=200))
def test_tokenize_never_raises_and_yields_lowercase_terms(text: str) -> None:
    for term in tokenize(text):
        assert len(term) >= 2
        assert term == term.lower() or not term.isascii()
