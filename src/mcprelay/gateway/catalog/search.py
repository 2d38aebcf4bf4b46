"""Tool search for ``routing_mode: search``: BM25 over tool names, descriptions and parameters.

An agent that is shown hundreds of tool schemas spends its context on them and picks worse, so in search
mode the gateway exposes only ``retrieve_tools`` and ``call_tool``; ``retrieve_tools`` (and the CLI's
``mcprelay tools search``) ranks the real tools with the index built here.

Why BM25 and not embeddings: it needs no model, no dependency and no network, builds in milliseconds, and
its answers can be explained ("these words matched"). Tool names are written by programmers
(``listPullRequests``, ``get_pod_logs``, ``google-drive``) while queries are written in prose, so the
tokenizer splits identifiers, lowercases, drops function words and strips common English suffixes so
that "creating issues" meets ``create_issue``.

Scoring is BM25F-style: each field (name, parameter names, description, parameter descriptions) has a
boost and its own length normalization, the boosted term frequencies are summed per tool, and only then
saturated with k1. A word in the tool's name therefore counts more than the same word in its prose, but
repeating a word in many fields cannot make one tool run away with the score.

The index is immutable once built: postings are tuples and every per-term contribution is precomputed,
so concurrent ``search`` calls need no lock and cost one dictionary look-up per query word.
"""

from __future__ import annotations

import heapq
import math
import re
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from types import MappingProxyType
from typing import Any

__all__ = ["IndexedTool", "ToolIndex", "tokenize", "tools_from_schema"]

K1 = 1.2
"""Term-frequency saturation: the second occurrence of a word adds much less than the first."""

B = 0.75
"""Length normalization: a word in a short description says more than the same word in a long one."""

# Field boosts. Names are chosen to be descriptive and are short, so a hit there is the strongest signal;
# parameter names are identifiers too but describe inputs rather than the action; parameter descriptions
# are long and generic ("ID of the ..."), so they only break ties.
_NAME, _PARAMS, _DESCRIPTION, _PARAM_TEXT = range(4)
_FIELD_WEIGHTS = (3.0, 1.5, 1.0, 0.5)

# Junk schemas must not make an index (or a search) arbitrarily expensive.
_MAX_PARAMETERS = 200
_MAX_TEXT = 2000
_MAX_ENUM_VALUES = 20
_MAX_QUERY_CHARS = 4000

# English function words, plus what contractions leave behind once the apostrophe splits them
# ("don't" -> "don", "t"): left in, "don" would match "done".
_STOPWORDS = frozenset(
    """
    a about all also an and any are as at be been but by can could did do does doing for from had has
    have how i if in into is it its just me my of on or our please should so some such than that the
    their them then there these they this those to too us was we were what when where which while who
    whom why will with would you your not no nor
    aren couldn didn doesn don hadn hasn haven isn ll re shouldn ve wasn weren won wouldn
    """.split()
)

_WORD_RE = re.compile(r"[^\W_]+")  # runs of letters and digits: splits on _, -, ., /, spaces, punctuation
# fooBar -> foo|Bar and HTTPServer -> HTTP|Server, but a plural s after capitals stays: PRs, URLs, APIsList.
_CAMEL_RE = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z](?!s(?:[A-Z0-9]|$))[a-z])")
_VOWELS = frozenset("aeiouy")

EXPANSION_WEIGHT = 0.7
"""How much a related word counts: nearly as much as the word the agent wrote, which still wins ties."""

# Words that tool authors and agents use interchangeably. Agents phrase requests in everyday words
# ("remove", "folder", "PR") while tool authors pick one API word ("delete", "directory", "pull request"),
# and a purely lexical ranker cannot see that they mean the same thing. These groups are general
# vocabulary of tool APIs (CRUD verbs, common objects, abbreviations), not tied to any one server, and
# they only ever add terms to a query, at EXPANSION_WEIGHT, so exact words keep priority.
_RELATED_GROUPS: tuple[tuple[str, ...], ...] = (
    ("create", "add", "new", "make", "insert", "generate"),
    ("delete", "remove", "trash", "erase", "destroy", "discard", "drop"),
    ("list", "show", "enumerate", "display"),
    ("get", "fetch", "retrieve", "read", "view", "show", "download", "load"),
    ("update", "change", "modify", "edit", "alter", "patch", "set"),
    ("search", "find", "lookup", "look", "locate", "query", "filter"),
    ("send", "post", "publish", "tell", "notify", "message"),
    ("reply", "answer", "respond", "response"),
    ("cancel", "stop", "terminate", "kill", "abort", "end"),
    ("run", "execute", "exec", "invoke"),
    ("move", "rename", "relocate"),
    ("undo", "revert", "rollback", "restore"),
    ("restart", "reboot", "reload"),
    ("resolve", "fix", "close", "done"),
    ("mute", "silence", "ignore", "snooze"),
    ("alert", "warning", "alarm", "notification"),
    ("accept", "approve", "confirm"),
    ("decline", "reject", "refuse", "deny"),
    ("folder", "directory", "dir"),
    ("file", "document", "doc"),
    ("event", "meeting", "appointment", "invitation", "invite"),
    ("issue", "ticket", "bug"),
    ("error", "exception", "crash", "failure"),
    ("user", "member", "person", "people", "account"),
    ("permission", "access", "role"),
    ("payment", "charge", "pay"),
    ("invoice", "bill", "billing"),
    ("refund", "reimburse", "chargeback"),
    ("size", "big", "large", "space"),
    ("free", "available", "availability", "busy"),
    ("email", "mail"),
    ("web", "online", "internet"),
    ("page", "webpage", "website", "site", "article", "url"),
    ("repository", "repo"),
    ("pull", "pr"),
    ("database", "db"),
    ("configuration", "config"),
    ("environment", "env"),
    ("information", "info", "metadata", "detail"),
    ("kubernetes", "k8s", "kube", "kubectl"),
    ("write", "save", "store"),
    ("recent", "latest", "newest", "last"),
    ("forecast", "rain", "snow", "precipitation"),
    ("temperature", "hot", "cold", "warm"),
    ("sunrise", "sunset", "sun"),
    ("coordinate", "latitude", "longitude", "geocode"),
)


def _related_table(groups: Iterable[tuple[str, ...]]) -> Mapping[str, frozenset[str]]:
    table: dict[str, set[str]] = {}
    for group in groups:
        stems = {_stem(word) for word in group}
        for stem in stems:
            table.setdefault(stem, set()).update(stems - {stem})
    return MappingProxyType({stem: frozenset(related) for stem, related in table.items()})


@dataclass(frozen=True)
class IndexedTool:
    """One upstream tool as the index sees it; ``name`` is the gateway name ``server__tool``."""

    name: str
    description: str
    parameters: list[str]
    server: str
    tool: str
    param_text: str = ""
    """Parameter descriptions and enum values: weak evidence, but often the only place a concept appears."""


def _has_vowel(word: str) -> bool:
    return any(ch in _VOWELS for ch in word)


def _undouble(word: str) -> str:
    """``runn`` -> ``run``, ``stopp`` -> ``stop``; but ``add``, ``call``, ``miss`` keep their pair."""
    if len(word) >= 4 and word[-1] == word[-2] and word[-1] not in "lsz" and word[-1] not in _VOWELS:
        return word[:-1]
    return word


@lru_cache(maxsize=16384)
def _stem(word: str) -> str:
    """Light suffix stripping so that plural, -ing and -ed forms meet their base word.

    Deliberately far simpler than Porter: it only has to make "issues", "listing" and "deleted" land
    on the same key as "issue", "list" and "delete", and it must be fast and predictable. The final
    ``e`` is dropped so that "create", "creates", "created" and "creating" all become ``creat``.
    """
    if len(word) == 3 and word.isalpha() and word[2] == "s" and word[1] not in "saeiou":
        return word[:2]  # ids, prs, vms, dbs; but not gas, yes, bus
    if len(word) <= 3 or not word.isalpha():
        return word
    if word.endswith("ies") and len(word) > 4:
        word = word[:-3] + "y"
    elif word.endswith("sses"):
        word = word[:-2]
    elif word.endswith("es") and word[:-2].endswith(("ch", "sh", "x", "z", "us")):
        word = word[:-2]
    elif word.endswith("s") and not word.endswith(("ss", "us", "is")):
        word = word[:-1]
    elif word.endswith("ing") and len(word) >= 6 and _has_vowel(word[:-3]):
        word = _undouble(word[:-3])
    elif word.endswith("ed") and not word.endswith("eed") and len(word) >= 5 and _has_vowel(word[:-2]):
        word = _undouble(word[:-2])
    if len(word) > 3 and word.endswith("e"):
        word = word[:-1]
    return word


@lru_cache(maxsize=16384)
def _run_terms(run: str) -> tuple[str, ...]:
    """Terms of one letters-and-digits run; cached because tool catalogues repeat the same words a lot."""
    parts = _CAMEL_RE.split(run)
    # A cased run is also kept whole: prose writes brand names in camel case ("GitHub", "PRs") while
    # identifiers write them in one piece ("github"), and both must meet.
    words = [part.lower() for part in parts] + ([run.lower()] if len(parts) > 1 else [])
    return tuple(_stem(word) for word in words if len(word) >= 2 and word not in _STOPWORDS)


def tokenize(text: str) -> list[str]:
    """Split identifiers and prose into comparable terms.

    ``getPodLogs``, ``get_pod_logs``, ``get-pod-logs`` and ``get.pod/logs`` all give ``[get, pod, log]``.
    Single characters and stopwords are dropped: they match everything and so rank nothing.
    """
    terms: list[str] = []
    for run in _WORD_RE.findall(text):
        terms.extend(_run_terms(run))
    return terms


_RELATED = _related_table(_RELATED_GROUPS)


def _fields(tool: IndexedTool) -> tuple[list[str], list[str], list[str], list[str]]:
    name_terms = tokenize(tool.server) + tokenize(tool.tool)
    if not name_terms:  # a tool built by hand may only carry the gateway name
        name_terms = tokenize(tool.name)
    return (
        name_terms,
        tokenize(" ".join(tool.parameters)),
        tokenize(tool.description),
        tokenize(tool.param_text),
    )


class ToolIndex:
    """An immutable BM25F index over tools; build once with :meth:`build`, then search from any thread."""

    __slots__ = ("_exact", "_postings", "_tools")

    def __init__(
        self,
        tools: tuple[IndexedTool, ...],
        postings: Mapping[str, tuple[tuple[int, float], ...]],
        exact: Mapping[str, tuple[int, ...]],
    ) -> None:
        """Use :meth:`build`; this only stores already-computed, read-only structures."""
        self._tools = tools
        self._postings = postings
        self._exact = exact

    @classmethod
    def build(cls, tools: Iterable[IndexedTool]) -> ToolIndex:
        """Tokenize every field once and precompute each (term, tool) contribution to the score.

        Doing the whole BM25 arithmetic here (idf, field boosts, length normalization, saturation) leaves
        ``search`` with additions only, which is what makes it cheap enough to run per agent request.
        """
        ordered = tuple(tools)
        n_fields = len(_FIELD_WEIGHTS)
        per_tool: list[list[Counter[str]]] = []
        lengths: list[list[int]] = []
        totals = [0] * n_fields
        df: dict[str, int] = {}
        exact: dict[str, list[int]] = {}
        for doc_id, tool in enumerate(ordered):
            counts: list[Counter[str]] = []
            doc_lengths: list[int] = []
            seen: set[str] = set()
            for field_no, terms in enumerate(_fields(tool)):
                tf = Counter(terms)
                counts.append(tf)
                doc_lengths.append(len(terms))
                totals[field_no] += len(terms)
                seen.update(tf)
            for term in seen:
                df[term] = df.get(term, 0) + 1
            per_tool.append(counts)
            lengths.append(doc_lengths)
            for key in {tool.name.strip().lower(), tool.tool.strip().lower()}:
                if key:
                    exact.setdefault(key, []).append(doc_id)

        n_docs = len(ordered)
        averages = [(total / n_docs) if n_docs and total else 1.0 for total in totals]
        idf = {term: math.log(1.0 + (n_docs - freq + 0.5) / (freq + 0.5)) for term, freq in df.items()}
        postings: dict[str, list[tuple[int, float]]] = {}
        for doc_id, counts in enumerate(per_tool):
            norms = [_FIELD_WEIGHTS[f] / (1.0 - B + B * lengths[doc_id][f] / averages[f]) for f in range(n_fields)]
            weighted: dict[str, float] = {}
            for field_no, tf in enumerate(counts):
                norm = norms[field_no]
                for term, count in tf.items():
                    weighted[term] = weighted.get(term, 0.0) + count * norm
            for term, wtf in weighted.items():
                score = idf[term] * wtf * (K1 + 1.0) / (K1 + wtf)
                postings.setdefault(term, []).append((doc_id, score))
        frozen = {term: tuple(entries) for term, entries in postings.items()}
        return cls(
            ordered,
            MappingProxyType(frozen),
            MappingProxyType({key: tuple(ids) for key, ids in exact.items()}),
        )

    def search(self, query: str, limit: int = 5, *, expand: bool = True) -> list[tuple[IndexedTool, float]]:
        """The best ``limit`` tools for ``query``, best first; tools sharing no term with it are left out.

        Each distinct query term counts once, so "list list list" is no stronger than "list". With
        ``expand`` (the default) related words (``remove`` for ``delete``, ``folder`` for ``directory``) are
        added at a reduced weight; ``expand=False`` gives plain BM25, which the benchmark reports too. A
        query that is exactly a tool's gateway name (or bare tool name) puts that tool first: an agent
        repeating a name it was shown must get that tool back, whatever the descriptions say.
        """
        if limit <= 0 or not self._tools:
            return []
        text = query[:_MAX_QUERY_CHARS]
        terms = set(tokenize(text))
        weights = dict.fromkeys(terms, 1.0)
        if expand:
            for term in terms:
                for related in _RELATED.get(term, ()):
                    weights.setdefault(related, EXPANSION_WEIGHT)
        scores: dict[int, float] = {}
        for term, weight in weights.items():
            for doc_id, contribution in self._postings.get(term, ()):
                scores[doc_id] = scores.get(doc_id, 0.0) + weight * contribution
        exact_ids = self._exact.get(text.strip().lower(), ())
        if exact_ids:
            bonus = max(scores.values(), default=0.0) + 1.0
            for doc_id in exact_ids:
                scores[doc_id] = scores.get(doc_id, 0.0) + bonus
        # Ties are broken by name so that results are stable across runs and processes.
        best = heapq.nsmallest(limit, scores.items(), key=lambda item: (-item[1], self._tools[item[0]].name))
        return [(self._tools[doc_id], score) for doc_id, score in best if score > 0.0]

    def __len__(self) -> int:
        """Number of indexed tools (``retrieve_tools`` reports it so agents know what they searched)."""
        return len(self._tools)


def _clip(text: str) -> str:
    return text[:_MAX_TEXT]


def _collect(schema: Mapping[str, Any], depth: int, names: list[str], texts: list[str], seen: set[str]) -> None:
    properties = schema.get("properties")
    if not isinstance(properties, Mapping):
        return
    for key, sub in properties.items():
        if len(names) >= _MAX_PARAMETERS:
            return
        if not isinstance(key, str) or not key.strip():
            continue
        if key not in seen:
            seen.add(key)
            names.append(key)
        if not isinstance(sub, Mapping):
            continue
        for field in ("title", "description"):
            value = sub.get(field)
            if isinstance(value, str) and value.strip():
                texts.append(_clip(value))
        enum = sub.get("enum")
        if isinstance(enum, list):
            texts.extend(_clip(value) for value in enum[:_MAX_ENUM_VALUES] if isinstance(value, str))
        if depth == 0:
            _collect(sub, 1, names, texts, seen)
            items = sub.get("items")
            if isinstance(items, Mapping):
                _collect(items, 1, names, texts, seen)


def tools_from_schema(
    server: str, tool: str, description: str | None, input_schema: dict[str, Any] | None
) -> IndexedTool:
    """An :class:`IndexedTool` for an upstream tool, from what ``tools/list`` returned for it.

    Upstream schemas are not validated by anyone before they reach us, so everything is checked:
    non-dict schemas, non-dict properties, non-string names or descriptions are skipped rather than
    raised on, because one sloppy server must not take search down for all the others. Properties are
    read at the top level and one level down (nested objects and arrays of objects), which is where
    the meaningful names of real tools live; deeper levels add noise more than signal.
    """
    names: list[str] = []
    texts: list[str] = []
    schema: object = input_schema
    if isinstance(schema, Mapping):
        _collect(schema, 0, names, texts, set())
    return IndexedTool(
        name=f"{server}__{tool}",
        description=_clip(description) if isinstance(description, str) else "",
        parameters=names,
        server=server,
        tool=tool,
        param_text="\n".join(texts),
    )
