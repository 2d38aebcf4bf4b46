"""A keyring backend for subprocess tests: ``PYTHON_KEYRING_BACKEND=tests.keyring_file.JsonFileKeyring``.

A genuine ``keyring`` backend (the real library loads and drives it, as it would the OS keyring), kept
in the JSON file ``MCPRELAY_TEST_KEYRING_FILE`` so that several processes share it, like a system
keyring. Plaintext: for tests only.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import keyring.backend
from keyring.errors import PasswordDeleteError


class JsonFileKeyring(keyring.backend.KeyringBackend):
    priority = 1  # type: ignore[assignment]

    @property
    def path(self) -> Path:
        return Path(os.environ["MCPRELAY_TEST_KEYRING_FILE"])

    def _load(self) -> dict[str, str]:
        try:
            data = json.loads(self.path.read_text())
        except FileNotFoundError:
            return {}
        return data if isinstance(data, dict) else {}

    def _save(self, data: dict[str, str]) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data))
        tmp.replace(self.path)

    def get_password(self, service: str, username: str) -> str | None:
        return self._load().get(f"{service}\x00{username}")

    def set_password(self, service: str, username: str, password: str) -> None:
        data = self._load()
        data[f"{service}\x00{username}"] = password
        self._save(data)

    def delete_password(self, service: str, username: str) -> None:
        data = self._load()
        if data.pop(f"{service}\x00{username}", None) is None:
            raise PasswordDeleteError("not found")
        self._save(data)


keyring.backend.KeyringBackend._classes.discard(JsonFileKeyring)  # type: ignore[attr-defined]
