"""A store that lives only as long as the process: for tests and one-shot commands (``probe``).

Values are kept as JSON text rather than as objects. That gives callers the deep-copy semantics
every other store has (mutating what ``get`` returned, or what was passed to ``put``, changes
nothing stored) and makes a value that the file or keyring store could not hold fail here too,
in tests, instead of later in production.
"""

from __future__ import annotations

import json
import threading
from typing import Any

from mcprelay.store.base import check_key


class MemoryStore:
    """Dict-backed :class:`~mcprelay.store.base.TokenStore`; thread safe (callers use worker threads)."""

    name = "memory"

    def __init__(self) -> None:
        self._data: dict[str, str] = {}
        self._lock = threading.Lock()

    def get(self, key: str) -> dict[str, Any] | None:
        with self._lock:
            text = self._data.get(check_key(key))
        if text is None:
            return None
        value: dict[str, Any] = json.loads(text)
        return value

    def put(self, key: str, value: dict[str, Any]) -> None:
        if not isinstance(value, dict):
            raise TypeError("a stored value must be a dict")
        text = json.dumps(value, separators=(",", ":"), allow_nan=False)
        with self._lock:
            self._data[check_key(key)] = text

    def delete(self, key: str) -> None:
        with self._lock:
            self._data.pop(check_key(key), None)

    def keys(self) -> list[str]:
        """The stored keys, sorted; tests use it to see what a flow left behind."""
        with self._lock:
            return sorted(self._data)

    def describe(self) -> str:
        return "memory (kept in this process only; gone when it exits)"
