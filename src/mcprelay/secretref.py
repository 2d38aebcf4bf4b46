"""Secrets out of the config file: ``${env:NAME}`` and ``${keyring:NAME}`` references, and where they live.

A config file is copied, committed, pasted into issues; a token written in it is a token given
away. So ``oauth.client_secret``, ``oauth.idp_client_secret``, ``headers`` values and ``env``
values may name a secret instead of holding it — the whole value or part of it
(``"Bearer ${keyring:github-pat}"``):

* ``${env:NAME}``: the environment variable ``NAME`` of the mcprelay process;
* ``${keyring:NAME}``: a secret stored with ``mcprelay secrets set NAME`` — in the system keyring
  (service ``mcprelay``, entries namespaced per home, as the token store does), or, where the
  config's ``token_store`` is ``file`` or no working keyring exists, in the home's encrypted file
  store.

References are resolved at use — each time a server is connected or logged in to — never at load
time: the config loads (and the gateway starts) with a secret missing, and only the server that
needs it fails, with an error that names the reference and how to provide it. A resolved value is
never written back, and only ever lives in a copy of the server's settings held in memory for that
connection (whose fields do not appear in its ``repr``).
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mcprelay.errors import ErrorType, McpRelayError

if TYPE_CHECKING:
    from mcprelay.config import ServerConfig
    from mcprelay.store.base import TokenStore

#: ``${env:NAME}`` / ``${keyring:NAME}``; anything else (``${HOME}``, ``$${...}``) is left as written.
REFERENCE = re.compile(r"\$\{(env|keyring):([A-Za-z0-9_.\-]{1,128})\}")
SECRET_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}")
_INDEX_KEY = "secrets-index"


def _key(name: str) -> str:
    return f"secret/{name}"


def check_name(name: str) -> str:
    if not SECRET_NAME.fullmatch(name):
        raise McpRelayError(
            ErrorType.USAGE_ERROR,
            f"{name[:60]!r} is not a secret name: use letters, digits, '.', '-' and '_' (up to 128)",
            suggestion="pick a name such as github-token",
        )
    return name


def references(text: str) -> list[tuple[str, str]]:
    """The (kind, name) references in ``text``, in order."""
    return [(m.group(1), m.group(2)) for m in REFERENCE.finditer(text)]


def server_references(server: ServerConfig) -> Iterator[tuple[str, str, str]]:
    """(field, kind, name) for every reference in the server's secret-bearing fields."""
    for field, value in _secret_fields(server):
        for kind, name in references(value):
            yield field, kind, name


def _secret_fields(server: ServerConfig) -> Iterator[tuple[str, str]]:
    if server.oauth.client_secret:
        yield "oauth.client_secret", server.oauth.client_secret
    if server.oauth.idp_client_secret:
        yield "oauth.idp_client_secret", server.oauth.idp_client_secret
    for name, value in server.headers.items():
        yield f"headers.{name}", value
    for name, value in server.env.items():
        yield f"env.{name}", value


class SecretStore:
    """Named secrets for ``${keyring:NAME}``, in the store :func:`secret_store` picks.

    Keyrings cannot list their entries, so the names (never the values) are kept in an index
    entry beside them, for ``mcprelay secrets list``.
    """

    def __init__(self, store: TokenStore) -> None:
        self.store = store

    def describe(self) -> str:
        return self.store.describe()

    def get(self, name: str) -> str | None:
        entry = self.store.get(_key(check_name(name)))
        value = entry.get("value") if entry else None
        return value if isinstance(value, str) else None

    def set(self, name: str, value: str) -> None:
        self.store.put(_key(check_name(name)), {"value": value, "set_at": time.time()})
        index = self._index()
        index[name] = {"set_at": time.time()}
        self.store.put(_INDEX_KEY, {"names": index})

    def delete(self, name: str) -> bool:
        existed = self.store.get(_key(check_name(name))) is not None
        self.store.delete(_key(name))
        index = self._index()
        if index.pop(name, None) is not None or existed:
            self.store.put(_INDEX_KEY, {"names": index})
        return existed

    def names(self) -> dict[str, dict[str, Any]]:
        return dict(sorted(self._index().items()))

    def _index(self) -> dict[str, dict[str, Any]]:
        entry = self.store.get(_INDEX_KEY) or {}
        names = entry.get("names")
        return {str(k): v for k, v in names.items() if isinstance(v, dict)} if isinstance(names, dict) else {}


def secret_store(home: Path, tokens: TokenStore | None = None) -> SecretStore:
    """Where ``mcprelay secrets`` keeps secrets: the token store itself when it is the keyring or the
    file store (``auto`` picked one of them); otherwise (``memory``, Redis) the system keyring when a
    working one answers, else the encrypted file store. A memory store would forget them at exit, and
    secrets for one machine's config have no business in a fleet's shared store."""
    if tokens is not None and tokens.name in ("keyring", "file"):
        return SecretStore(tokens)
    from mcprelay.store import open_store

    return SecretStore(open_store("auto", home))


class Resolver:
    """Resolves references, opening the secret store only when a ``${keyring:…}`` reference asks for it."""

    def __init__(self, home: Path, tokens: TokenStore | None = None, *, environ: dict[str, str] | None = None) -> None:
        self.home = home
        self.tokens = tokens
        self.environ = environ if environ is not None else os.environ
        self._secrets: SecretStore | None = None

    def _store(self) -> SecretStore:
        if self._secrets is None:
            self._secrets = secret_store(self.home, self.tokens)
        return self._secrets

    def value(self, kind: str, name: str, *, server: str, field: str) -> str:
        reference = f"${{{kind}:{name}}}"
        if kind == "env":
            found = self.environ.get(name)
            if found is None:
                raise McpRelayError(
                    ErrorType.CONFIG_INVALID,
                    f"server {server!r}, {field}: {reference} refers to the environment variable {name}, "
                    "which is not set",
                    suggestion=f"set {name} in the environment that runs mcprelay, or store the value with "
                    f"`mcprelay secrets set {name.lower()}` and write ${{keyring:{name.lower()}}} instead",
                    server=server, details={"reference": reference, "field": field},
                )
            return found
        try:
            stored = self._store().get(name)
        except McpRelayError as exc:
            raise McpRelayError(
                exc.error_type,
                f"server {server!r}, {field}: {reference} could not be read: {exc.message}",
                suggestion=exc.suggestion, server=server, details={"reference": reference, "field": field},
            ) from None
        if stored is None:
            raise McpRelayError(
                ErrorType.CONFIG_INVALID,
                f"server {server!r}, {field}: {reference} names a secret that is not stored "
                f"(in {self._store().describe()})",
                suggestion=f"store it: mcprelay secrets set {name}", server=server,
                details={"reference": reference, "field": field},
            )
        return stored

    def text(self, text: str, *, server: str, field: str) -> str:
        if "${" not in text:
            return text
        return REFERENCE.sub(lambda m: self.value(m.group(1), m.group(2), server=server, field=field), text)

    def server(self, server: ServerConfig) -> ServerConfig:
        """A copy of ``server`` with every reference resolved (``server`` itself when it has none)."""
        if not any(True for _ in server_references(server)):
            return server
        name = server.name
        oauth = server.oauth.model_copy(update={
            "client_secret": self.text(server.oauth.client_secret, server=name, field="oauth.client_secret"),
            "idp_client_secret": self.text(
                server.oauth.idp_client_secret, server=name, field="oauth.idp_client_secret"
            ),
        })
        headers = {k: self.text(v, server=name, field=f"headers.{k}") for k, v in server.headers.items()}
        for header, value in headers.items():
            if any(c in value for c in "\r\n\x00"):
                raise McpRelayError(
                    ErrorType.CONFIG_INVALID,
                    f"server {name!r}, headers.{header}: the secret it refers to contains a line break or NUL, "
                    "which no HTTP header may hold",
                    suggestion="store the value again without the line break (`mcprelay secrets set NAME`)",
                    server=name,
                )
        env = {k: self.text(v, server=name, field=f"env.{k}") for k, v in server.env.items()}
        return server.model_copy(update={"oauth": oauth, "headers": headers, "env": env})


def resolve_server(server: ServerConfig, home: Path, tokens: TokenStore | None = None) -> ServerConfig:
    """``server`` with its secret references resolved (see the module docstring)."""
    return Resolver(home, tokens).server(server)


_SECRET_NAME_HINTS = re.compile(r"(TOKEN|SECRET|PASSWORD|PASSWD|API_?KEY|ACCESS_?KEY|PRIVATE|CREDENTIAL|AUTH|PAT\b)",
                                re.IGNORECASE)
_SECRET_VALUE_PREFIXES = (
    "ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_", "glpat-", "xoxb-", "xoxp-", "xoxa-", "sk-", "sk_live_",
    "rk_live_", "AKIA", "ASIA", "AIza", "ya29.", "eyJ", "npm_", "pypi-", "hf_", "dop_v1_", "shpat_",
)


def looks_secret(name: str, value: str) -> bool:
    """Whether ``name=value`` (an env var, a header) probably holds a credential written in plain text.

    A hint for a warning, not a guarantee: the name says so (``*_TOKEN``, ``Authorization``), the value
    starts like a well-known token, or it is long and random-looking. A reference is never a secret.
    """
    if not value or REFERENCE.search(value) or value.startswith("${"):
        return False
    if _SECRET_NAME_HINTS.search(name) and len(value) >= 8:
        return True
    bare = value.removeprefix("Bearer ").removeprefix("bearer ").strip()
    if bare.startswith(_SECRET_VALUE_PREFIXES) and len(bare) >= 16:
        return True
    if len(bare) >= 24 and not any(c in bare for c in " /\\:") and re.search(r"[a-z]", bare) and (
        re.search(r"[A-Z]", bare) or re.search(r"\d", bare)
    ) and sum(c.isdigit() for c in bare) >= 3:
        return True
    return False


def suggested_name(server: str, key: str) -> str:
    """A secret name for ``key`` of ``server``: lower case, dashes (``github-token``)."""
    base = re.sub(r"[^A-Za-z0-9]+", "-", f"{server}-{key}").strip("-").lower()
    return base[:128] or "secret"
