"""How well and how fast tool search finds the right tool: recall@1, recall@5, MRR, build and search time.

Run: ``.venv/bin/python bench/search_recall.py [corpus.json]`` (prints a markdown table; exits 0).
The corpus (``bench/tool_corpus.json`` by default) holds hand-written MCP tools and natural-language
queries, each labelled with every tool that would be a correct answer. A query counts as found at k when
any expected tool is among the first k results; MRR uses the rank of the first expected tool found.
Queries come in two splits: ``dev`` (whose misses guided the tokenizer and related-words table) and
``holdout`` (scored only after those choices were frozen), reported separately and together, each with
query expansion on (what the gateway does) and off (plain BM25).
Timings: index build is the best of several builds (to hide one-off noise such as the stem cache filling),
and search time is the median over all queries repeated, on the corpus and on a 1,000-tool copy of it.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mcprelay.gateway.catalog.search import IndexedTool, ToolIndex, tools_from_schema

DEFAULT_CORPUS = Path(__file__).with_name("tool_corpus.json")
LARGE = 1000
REPEATS = 20


@dataclass(frozen=True)
class Query:
    text: str
    expected: frozenset[str]
    split: str


@dataclass(frozen=True)
class Metrics:
    recall_at_1: float
    recall_at_5: float
    mrr: float
    misses: list[tuple[str, list[str]]]


def load_corpus(path: Path) -> tuple[list[IndexedTool], list[Query]]:
    """Tools as the gateway would index them (through ``tools_from_schema``) and the labelled queries."""
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    tools = [
        tools_from_schema(item["server"], item["name"], item.get("description"), item.get("inputSchema"))
        for item in data["tools"]
    ]
    queries = [
        Query(item["query"], frozenset(item["expected"]), str(item.get("split", "dev"))) for item in data["queries"]
    ]
    return tools, queries


def evaluate(index: ToolIndex, queries: list[Query], *, expand: bool = True) -> Metrics:
    """Recall@1, recall@5 and MRR (over the first 10 results) of ``index`` on ``queries``."""
    hits1 = hits5 = 0
    reciprocal = 0.0
    misses: list[tuple[str, list[str]]] = []
    for query in queries:
        names = [tool.name for tool, _ in index.search(query.text, limit=10, expand=expand)]
        rank = next((i for i, name in enumerate(names, start=1) if name in query.expected), None)
        if rank is not None:
            reciprocal += 1.0 / rank
            hits1 += rank == 1
            hits5 += rank <= 5
        if rank is None or rank > 5:
            misses.append((query.text, names[:3]))
    count = len(queries) or 1
    return Metrics(hits1 / count, hits5 / count, reciprocal / count, misses)


def best_build_ms(tools: list[IndexedTool], rounds: int = 5) -> float:
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        ToolIndex.build(tools)
        best = min(best, time.perf_counter() - start)
    return best * 1000.0


def median_search_ms(index: ToolIndex, queries: list[Query]) -> float:
    samples: list[float] = []
    for _ in range(REPEATS):
        for query in queries:
            start = time.perf_counter()
            index.search(query.text, limit=5)
            samples.append(time.perf_counter() - start)
    return statistics.median(samples) * 1000.0


def enlarge(tools: list[IndexedTool], size: int) -> list[IndexedTool]:
    """A ``size``-tool catalogue made of renamed copies, so timings reflect a large gateway."""
    out: list[IndexedTool] = []
    copy = 0
    while len(out) < size:
        for tool in tools:
            if len(out) >= size:
                break
            server = tool.server if copy == 0 else f"{tool.server}{copy}"
            out.append(
                IndexedTool(
                    f"{server}__{tool.tool}",
                    tool.description,
                    list(tool.parameters),
                    server,
                    tool.tool,
                    tool.param_text,
                )
            )
        copy += 1
    return out


def main(argv: list[str]) -> int:
    path = Path(argv[1]) if len(argv) > 1 else DEFAULT_CORPUS
    tools, queries = load_corpus(path)
    index = ToolIndex.build(tools)
    large_tools = enlarge(tools, LARGE)
    large_index = ToolIndex.build(large_tools)
    splits = sorted({query.split for query in queries})
    groups = [(split, [q for q in queries if q.split == split]) for split in splits]
    if len(groups) > 1:
        groups.append(("all", queries))

    print(f"Tool search on `{path.name}`: {len(tools)} tools from {len({t.server for t in tools})} servers\n")
    print("| queries | expansion | n | recall@1 | recall@5 | MRR |")
    print("|---|---|---|---|---|---|")
    for label, subset in groups:
        for expand in (True, False):
            m = evaluate(index, subset, expand=expand)
            print(
                f"| {label} | {'on' if expand else 'off'} | {len(subset)} | {m.recall_at_1:.3f} | "
                f"{m.recall_at_5:.3f} | {m.mrr:.3f} |"
            )
    print("\n| timing | value |")
    print("|---|---|")
    print(f"| index build, {len(tools)} tools (best of 5) | {best_build_ms(tools):.2f} ms |")
    print(f"| index build, {len(large_tools)} tools (best of 5) | {best_build_ms(large_tools):.2f} ms |")
    print(f"| median search, {len(tools)} tools | {median_search_ms(index, queries):.3f} ms |")
    print(f"| median search, {len(large_tools)} tools | {median_search_ms(large_index, queries):.3f} ms |")
    misses = evaluate(index, queries).misses
    if misses:
        print("\nNot in the top 5 (expansion on):\n")
        for text, top in misses:
            print(f"- {text!r} -> {', '.join(top) or '(nothing)'}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
