"""The keyring store, ``open_store`` and the file store's data key, through the real keyring API.

This machine (like most CI runners) has no system keyring, so the tests plug a small dict-backed
backend in with ``keyring.set_keyring``: a genuine ``KeyringBackend`` driven by the real library.
It is removed from the library's auto-discovery registry so that no other test picks it up by
accident, and the previous backend is restored after every test.
"""

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import keyring
import keyring.backend
import pytest
from keyring.backends import chainer, fail, null
from keyring.errors import KeyringLocked, PasswordDeleteError

from mcprelay.errors import ErrorType, McpRelayError
from mcprelay.store import open_store
from mcprelay.store.base import backend_is_real, keyring_problem
from mcprelay.store.file import FileStore
from mcprelay.store.keyring import KeyringStore

pytestmark = pytest.mark.integration


class DictKeyring(keyring.backend.KeyringBackend):
    """A working in-memory backend (priority > 0, like an installed OS keyring)."""

    priority = 1  # type: ignore[assignment]

    def __init__(self) -> None:
        super().__init__()
        self.entries: dict[tuple[str, str], str] = {}

    def get_password(self, service: str, username: str) -> str | None:
        return self.entries.get((service, username))

    def set_password(self, service: str, username: str, password: str) -> None:
        self.entries[(service, username)] = password

    def delete_password(self, service: str, username: str) -> None:
        if (service, username) not in self.entries:
            raise PasswordDeleteError("not found")
        del self.entries[(service, username)]


class LockedKeyring(DictKeyring):
    """Installed but unusable, like a Secret Service whose collection stays locked."""

    def get_password(self, service: str, username: str) -> str | None:
        raise KeyringLocked("collection is locked")

    def set_password(self, service: str, username: str, password: str) -> None:
        raise KeyringLocked("collection is locked")

    def delete_password(self, service: str, username: str) -> None:
        raise KeyringLocked("collection is locked")


class PlaintextKeyring(DictKeyring):
    """Stands in for keyrings.alt.file.PlaintextKeyring: works, but must never hold our tokens."""


for _cls in (DictKeyring, LockedKeyring, PlaintextKeyring):
    keyring.backend.KeyringBackend._classes.discard(_cls)  # type: ignore[attr-defined]


@pytest.fixture
def use_backend() -> Iterator[object]:
    previous = keyring.get_keyring()

    def use(backend: keyring.backend.KeyringBackend) -> keyring.backend.KeyringBackend:
        keyring.set_keyring(backend)
        return backend

    keyring.set_keyring(fail.Keyring())
    try:
        yield use
    finally:
        keyring.set_keyring(previous)


@pytest.fixture
def kr(use_backend: object) -> DictKeyring:
    backend = DictKeyring()
    keyring.set_keyring(backend)
    return backend


def test_backend_is_real() -> None:
    assert backend_is_real(DictKeyring())
    assert not backend_is_real(None)
    assert not backend_is_real(fail.Keyring())
    assert not backend_is_real(null.Keyring())
    assert not backend_is_real(PlaintextKeyring())
    empty_chainer = chainer.ChainerBackend()
    if not empty_chainer.backends:
        assert not backend_is_real(empty_chainer)


def test_keyring_problem_names_the_backend() -> None:
    assert keyring_problem(DictKeyring()) is None
    problem = keyring_problem(fail.Keyring())
    assert problem is not None and "fail" in problem
    problem = keyring_problem(LockedKeyring())
    assert problem is not None and "locked" in problem


def test_probe_leaves_nothing_behind(kr: DictKeyring) -> None:
    assert keyring_problem(kr) is None
    assert kr.entries == {}


def test_keyring_store_round_trip(kr: DictKeyring) -> None:
    store = KeyringStore()
    assert store.name == "keyring"
    key = "registration/github/https://auth.example.com/t:1?a=b"
    assert store.get(key) is None
    store.put(key, {"client_id": "c-1", "client_secret": "cs-1"})
    assert json.loads(kr.entries[("mcprelay", key)]) == {"client_id": "c-1", "client_secret": "cs-1"}
    assert store.get(key) == {"client_id": "c-1", "client_secret": "cs-1"}
    assert KeyringStore().get(key) == {"client_id": "c-1", "client_secret": "cs-1"}
    store.put(key, {"client_id": "c-2"})
    assert store.get(key) == {"client_id": "c-2"}
    store.delete(key)
    store.delete(key)
    assert store.get(key) is None
    assert kr.entries == {}
    assert store.describe() == "keyring (Dict, service 'mcprelay')"
    with pytest.raises(TypeError):
        store.put(key, {"x": object()})


def test_keyring_store_errors_are_token_store_unavailable(use_backend: object) -> None:
    store = KeyringStore(backend=LockedKeyring())
    for call in [lambda: store.get("tokens/a"), lambda: store.put("tokens/a", {"v": 1}), lambda: store.delete("x")]:
        with pytest.raises(McpRelayError) as info:
            call()
        assert info.value.error_type is ErrorType.TOKEN_STORE_UNAVAILABLE
        assert "file" in info.value.suggestion


def test_keyring_store_refuses_a_corrupt_entry(kr: DictKeyring) -> None:
    kr.entries[("mcprelay", "tokens/a")] = "rt-secret-123 is not json"
    with pytest.raises(McpRelayError) as info:
        KeyringStore().get("tokens/a")
    assert info.value.error_type is ErrorType.TOKEN_STORE_UNAVAILABLE
    assert "rt-secret-123" not in json.dumps(info.value.to_dict())


def test_open_store_auto_without_a_real_backend_is_file(use_backend: object, tmp_path: Path) -> None:
    assert isinstance(open_store("auto", tmp_path), FileStore)
    use_backend(null.Keyring())  # type: ignore[operator]
    assert isinstance(open_store("auto", tmp_path), FileStore)
    use_backend(PlaintextKeyring())  # type: ignore[operator]
    assert isinstance(open_store("auto", tmp_path), FileStore)
    use_backend(LockedKeyring())  # type: ignore[operator]
    assert isinstance(open_store("auto", tmp_path), FileStore)


def test_open_store_auto_with_a_real_backend_is_keyring(kr: DictKeyring, tmp_path: Path) -> None:
    store = open_store("auto", tmp_path)
    assert isinstance(store, KeyringStore)
    assert store.describe().startswith("keyring (")
    assert kr.entries == {}, "the probe must clean up after itself"
    assert isinstance(open_store("keyring", tmp_path), KeyringStore)


@pytest.mark.parametrize("backend", [fail.Keyring, LockedKeyring, PlaintextKeyring])
def test_open_store_keyring_without_a_working_backend(
    use_backend: object, tmp_path: Path, backend: type[keyring.backend.KeyringBackend]
) -> None:
    use_backend(backend())  # type: ignore[operator]
    with pytest.raises(McpRelayError) as info:
        open_store("keyring", tmp_path)
    err = info.value
    assert err.error_type is ErrorType.TOKEN_STORE_UNAVAILABLE
    assert '"file"' in err.suggestion
    assert "keyring" in err.message


def test_open_store_file_and_unknown(kr: DictKeyring, tmp_path: Path) -> None:
    assert isinstance(open_store("file", tmp_path), FileStore)
    with pytest.raises(McpRelayError) as info:
        open_store("keychain", tmp_path)
    assert info.value.error_type is ErrorType.CONFIG_INVALID


def test_file_store_keeps_its_data_key_in_a_real_keyring(kr: DictKeyring, tmp_path: Path) -> None:
    store = FileStore(tmp_path)
    store.put("tokens/a", {"refresh_token": "rt-secret-123"})
    username = f"file-store-key:{tmp_path.resolve()}"
    assert set(kr.entries) == {("mcprelay", username)}
    assert not (tmp_path / "store" / ".key").exists()
    assert "system keyring" in store.describe()
    assert kr.entries[("mcprelay", username)] not in store.describe()
    assert FileStore(tmp_path).get("tokens/a") == {"refresh_token": "rt-secret-123"}
    for path in (tmp_path / "store").iterdir():
        assert b"rt-secret-123" not in path.read_bytes()


def test_file_store_key_location_is_sticky(use_backend: object, tmp_path: Path) -> None:
    # Created with the key in the keyring: losing the keyring later is an error, not a silent new key.
    in_keyring = tmp_path / "a"
    use_backend(DictKeyring())  # type: ignore[operator]
    FileStore(in_keyring).put("tokens/a", {"v": 1})
    use_backend(fail.Keyring())  # type: ignore[operator]
    assert FileStore(in_keyring).get("tokens/missing") is None
    with pytest.raises(McpRelayError) as info:
        FileStore(in_keyring).get("tokens/a")
    assert info.value.error_type is ErrorType.TOKEN_STORE_UNAVAILABLE
    assert "keyring" in info.value.message
    with pytest.raises(McpRelayError):
        FileStore(in_keyring).put("tokens/b", {"v": 2})
    assert not (in_keyring / "store" / ".key").exists()

    # Created with the key in a file: a keyring appearing later does not move it.
    in_file = tmp_path / "b"
    FileStore(in_file).put("tokens/a", {"v": 1})
    backend = use_backend(DictKeyring())  # type: ignore[operator]
    store = FileStore(in_file)
    assert store.get("tokens/a") == {"v": 1}
    store.put("tokens/b", {"v": 2})
    assert backend.entries == {}
    assert str(in_file.resolve() / "store" / ".key") in store.describe()


def test_file_store_lost_keyring_entry_policy(kr: DictKeyring, tmp_path: Path) -> None:
    FileStore(tmp_path).put("tokens/old", {"v": 1})
    kr.entries.clear()
    store = FileStore(tmp_path)
    with pytest.raises(McpRelayError) as info:
        store.get("tokens/old")
    assert info.value.error_type is ErrorType.TOKEN_STORE_UNAVAILABLE
    store.put("tokens/new", {"v": 2})
    assert FileStore(tmp_path).get("tokens/new") == {"v": 2}
    with pytest.raises(McpRelayError):
        FileStore(tmp_path).get("tokens/old")


# A child process (a fresh keyring): ``current_keyring`` next to what keyring's own discovery picks.
_DISCOVERY_CHILD = """
import sys, types
import keyring.backend, keyring.core

def define(module, name, priority):
    mod = sys.modules.setdefault(module, types.ModuleType(module))
    body = {"priority": priority, "__module__": module,
            "get_password": lambda self, s, u: None, "set_password": lambda self, s, u, p: None}
    setattr(mod, name, type(name, (keyring.backend.KeyringBackend,), body))

for spec in sys.argv[1:]:
    module, name, priority = spec.split(":")
    define(module, name, float(priority))

from mcprelay.store.base import current_keyring
ours = current_keyring()
shortcut = "keyring.backends.macOS" not in sys.modules
theirs = keyring.core._detect_backend()
name = lambda kr: f"{type(kr).__module__}.{type(kr).__name__}"
print(name(ours), name(theirs), shortcut)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the discovery shortcut is for Linux only")
@pytest.mark.parametrize(
    ("case", "backends", "shortcut_for"),
    [
        # shortcut_for: keyring's answer for which the macOS module must not have been imported.
        ("nothing chosen", [], "keyring.backends.fail.Keyring"),
        ("one usable backend", ["keyring.backends.fake:Fake:5"], "keyring.backends.fake.Fake"),
        ("two usable backends: keyring chains them", ["keyring.backends.fake:A:5", "keyring.backends.fake:B:4"], ""),
        ("a backend defined outside keyring", ["thirdparty:Fake:5"], ""),
        ("PYTHON_KEYRING_BACKEND", [], ""),
        ("keyringrc.cfg", [], ""),
    ],
)
def test_current_keyring_picks_what_keyring_would(
    tmp_path: Path, case: str, backends: list[str], shortcut_for: str
) -> None:
    """The Linux discovery shortcut (no macOS module import) answers as keyring does, or steps aside."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHON_KEYRING_BACKEND"}
    env["XDG_CONFIG_HOME"] = str(tmp_path)
    if case == "PYTHON_KEYRING_BACKEND":
        env["PYTHON_KEYRING_BACKEND"] = "keyring.backends.null.Keyring"
    if case == "keyringrc.cfg":
        (tmp_path / "python_keyring").mkdir()
        (tmp_path / "python_keyring" / "keyringrc.cfg").write_text(
            "[backend]\ndefault-keyring=keyring.backends.null.Keyring\n"
        )
    result = subprocess.run(
        [sys.executable, "-c", _DISCOVERY_CHILD, *backends], env=env, capture_output=True, text=True, check=True
    )
    ours, theirs, used_shortcut = result.stdout.split()
    assert ours == theirs
    if case in {"PYTHON_KEYRING_BACKEND", "keyringrc.cfg"}:
        assert theirs == "keyring.backends.null.Keyring"
    if len(backends) == 2:
        assert theirs == "keyring.backends.chainer.ChainerBackend"
    # A machine with a working system keyring may rightly have keyring decide (it chains two backends).
    if theirs == shortcut_for:
        assert used_shortcut == "True"
    elif backends:
        assert used_shortcut == "False"
