"""The encrypted file store against the real file system and real processes.

Every test runs with the keyring library's ``fail`` backend (in this process and in the child
processes) so the data key goes to ``<home>/store/.key`` and nothing touches a developer's real
keyring; the keyring placement is covered in ``test_store_keyring.py``.
"""

import base64
import json
import os
import stat
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import keyring
import pytest
from keyring.backends import fail

from mcprelay.errors import ErrorType, McpRelayError
from mcprelay.store.base import TokenStore
from mcprelay.store.file import FileStore

pytestmark = pytest.mark.integration

SECRET = "rt-secret-123"
POSIX = os.name == "posix"
needs_posix_modes = pytest.mark.skipif(not POSIX, reason="POSIX permission bits")


@pytest.fixture(autouse=True)
def no_keyring() -> Iterator[None]:
    previous = keyring.get_keyring()
    keyring.set_keyring(fail.Keyring())
    try:
        yield
    finally:
        keyring.set_keyring(previous)


def child_env() -> dict[str, str]:
    return {**os.environ, "PYTHON_KEYRING_BACKEND": "keyring.backends.fail.Keyring"}


def run_child(code: str, *args: str) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        capture_output=True, text=True, env=child_env(), timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return result


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def enc_files(home: Path) -> list[Path]:
    return sorted((home / "store").glob("*.json.enc"))


def grant(secret: str = SECRET) -> dict[str, object]:
    return {"server": "github", "tokens": {"access_token": "at-xyz", "refresh_token": secret, "expires_in": 3600}}


def test_round_trip_with_opaque_keys(tmp_path: Path) -> None:
    store = FileStore(tmp_path)
    assert isinstance(store, TokenStore)
    assert store.name == "file"
    keys = [
        "tokens/github/grant-1",
        "registration/github/https://auth.example.com/tenant:1?x=y&z=%2F#frag",
        "tokens/ünïcode ✓/g",
        "../../escape",
    ]
    assert store.get(keys[0]) is None
    for i, key in enumerate(keys):
        store.put(key, {"i": i, "key": key, "nested": {"list": [1, 2.5, None, True]}})
    for i, key in enumerate(keys):
        assert store.get(key) == {"i": i, "key": key, "nested": {"list": [1, 2.5, None, True]}}
    assert len(enc_files(tmp_path)) == len(keys)
    assert {p.name for p in (tmp_path / "store").iterdir()} >= {".key", ".key-location"}
    assert not (tmp_path.parent / "escape").exists()

    store.put(keys[0], {"v": "new"})
    assert store.get(keys[0]) == {"v": "new"}
    store.delete(keys[0])
    store.delete(keys[0])
    store.delete("never-written")
    assert store.get(keys[0]) is None
    assert len(enc_files(tmp_path)) == len(keys) - 1


def test_reading_never_creates_a_key(tmp_path: Path) -> None:
    store = FileStore(tmp_path)
    assert store.get("tokens/x") is None
    store.delete("tokens/x")
    assert not (tmp_path / "store" / ".key").exists()
    assert "not created yet" in store.describe()


@needs_posix_modes
def test_permissions(tmp_path: Path) -> None:
    old_umask = os.umask(0o022)
    try:
        store = FileStore(tmp_path)
        store.put("tokens/a", grant())
        store.put("tokens/a", grant("rt-2"))
    finally:
        os.umask(old_umask)
    directory = tmp_path / "store"
    assert mode(directory) == 0o700
    for path in directory.iterdir():
        assert mode(path) == 0o600, path
    assert mode(directory / ".key") == 0o600


@needs_posix_modes
def test_loose_directory_and_key_file_are_tightened(tmp_path: Path) -> None:
    FileStore(tmp_path).put("tokens/a", grant())
    directory = tmp_path / "store"
    os.chmod(directory, 0o755)
    os.chmod(directory / ".key", 0o644)
    store = FileStore(tmp_path)
    assert mode(directory) == 0o700
    assert store.get("tokens/a") == grant()
    assert mode(directory / ".key") == 0o600


def test_plaintext_never_reaches_the_disk(tmp_path: Path) -> None:
    store = FileStore(tmp_path)
    store.put("tokens/github", grant())
    store.put("registration/github/https://issuer.example.com", {"client_secret": "cs-secret-456"})
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert files
    for path in files:
        data = path.read_bytes()
        for needle in [SECRET, "cs-secret-456", "at-xyz"]:
            assert needle.encode() not in data, path
            assert needle.encode("utf-16-le") not in data, path
            assert base64.b64encode(needle.encode()) not in data, path
        assert b"tokens/github" not in data
        assert "github" not in path.name


def test_a_second_instance_sees_what_the_first_wrote(tmp_path: Path) -> None:
    first, second = FileStore(tmp_path), FileStore(tmp_path)
    first.put("tokens/a", grant())
    assert second.get("tokens/a") == grant()
    second.put("tokens/a", grant("rt-rotated"))
    assert first.get("tokens/a") == grant("rt-rotated")
    first.delete("tokens/a")
    assert second.get("tokens/a") is None


def test_one_process_writes_another_reads(tmp_path: Path) -> None:
    run_child(
        """
        import sys
        from pathlib import Path
        from mcprelay.store.file import FileStore
        FileStore(Path(sys.argv[1])).put("tokens/srv/g-1", {"refresh_token": sys.argv[2]})
        """,
        str(tmp_path), SECRET,
    )
    result = run_child(
        """
        import json, sys
        from pathlib import Path
        from mcprelay.store.file import FileStore
        print(json.dumps(FileStore(Path(sys.argv[1])).get("tokens/srv/g-1")))
        """,
        str(tmp_path),
    )
    assert json.loads(result.stdout) == {"refresh_token": SECRET}
    assert FileStore(tmp_path).get("tokens/srv/g-1") == {"refresh_token": SECRET}


def test_concurrent_first_use_yields_one_key(tmp_path: Path) -> None:
    go = tmp_path / "go"
    code = textwrap.dedent(
        """
        import sys, time
        from pathlib import Path
        from mcprelay.store.file import FileStore
        home, go, n = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
        while not go.exists():
            time.sleep(0.005)
        store = FileStore(home)
        store.put("tokens/p" + n, {"writer": n})
        print(store.get("tokens/p" + n)["writer"])
        """
    )
    home = tmp_path / "home"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code, str(home), str(go), str(n)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=child_env(),
        )
        for n in range(4)
    ]
    time.sleep(0.5)  # let every interpreter start and wait on the same signal
    go.touch()
    for n, proc in enumerate(procs):
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        assert out.strip() == str(n)
    store = FileStore(home)
    for n in range(4):
        assert store.get(f"tokens/p{n}") == {"writer": str(n)}
    key_files = [p for p in (home / "store").iterdir() if p.name.startswith(".key") and p.name != ".key-location"]
    assert [p.name for p in key_files] == [".key"]


@pytest.mark.parametrize("where", ["magic", "version", "key-id", "nonce", "ciphertext", "tag", "truncate", "empty"])
def test_tampering_is_detected_and_reported(tmp_path: Path, where: str) -> None:
    store = FileStore(tmp_path)
    store.put("tokens/a", grant())
    (path,) = enc_files(tmp_path)
    data = bytearray(path.read_bytes())
    offsets = {"magic": 0, "version": 3, "key-id": 5, "nonce": 14, "ciphertext": 30, "tag": len(data) - 1}
    if where == "truncate":
        data = data[:-5]
    elif where == "empty":
        data = bytearray()
    else:
        data[offsets[where]] ^= 0x01
    path.write_bytes(bytes(data))
    for reader in [store, FileStore(tmp_path)]:
        with pytest.raises(McpRelayError) as info:
            reader.get("tokens/a")
        err = info.value
        assert err.error_type is ErrorType.TOKEN_STORE_UNAVAILABLE
        assert str(path) in err.message
        assert "decrypt" in err.message
        assert "auth logout" in err.suggestion
        assert SECRET not in json.dumps(err.to_dict())
    assert path.exists(), "an unreadable file must not be deleted silently"


def test_files_cannot_be_swapped_between_keys(tmp_path: Path) -> None:
    store = FileStore(tmp_path)
    store.put("tokens/a", {"who": "a"})
    store.put("tokens/b", {"who": "b"})
    path_a, path_b = store.path_for("tokens/a"), store.path_for("tokens/b")
    data_a, data_b = path_a.read_bytes(), path_b.read_bytes()
    path_a.write_bytes(data_b)
    path_b.write_bytes(data_a)
    for key in ["tokens/a", "tokens/b"]:
        with pytest.raises(McpRelayError) as info:
            store.get(key)
        assert info.value.error_type is ErrorType.TOKEN_STORE_UNAVAILABLE


def test_atomic_writes_leave_no_temp_files(tmp_path: Path) -> None:
    store = FileStore(tmp_path)
    for i in range(25):
        store.put("tokens/a", {"i": i})
        store.put(f"tokens/k{i % 3}", {"i": i})
    names = sorted(p.name for p in (tmp_path / "store").iterdir())
    assert not [n for n in names if n.endswith(".tmp")]
    assert len([n for n in names if n.endswith(".json.enc")]) == 4
    assert store.get("tokens/a") == {"i": 24}


def test_stale_temp_files_from_a_crash_are_removed(tmp_path: Path) -> None:
    FileStore(tmp_path)
    stale = tmp_path / "store" / ".abc.json.enc.0123456789ab.tmp"
    fresh = tmp_path / "store" / ".def.json.enc.0123456789ab.tmp"
    stale.write_bytes(b"x")
    fresh.write_bytes(b"x")
    old = time.time() - 2 * 3600
    os.utime(stale, (old, old))
    FileStore(tmp_path)
    assert not stale.exists()
    assert fresh.exists(), "a young temp file may belong to a write in progress"


def test_lost_key_file_old_entries_raise_new_writes_work(tmp_path: Path) -> None:
    store = FileStore(tmp_path)
    store.put("tokens/old", grant())
    (tmp_path / "store" / ".key").unlink()

    fresh = FileStore(tmp_path)
    with pytest.raises(McpRelayError) as info:
        fresh.get("tokens/old")
    assert info.value.error_type is ErrorType.TOKEN_STORE_UNAVAILABLE
    assert "missing" in info.value.message
    assert not (tmp_path / "store" / ".key").exists(), "a read must not mint a key"

    fresh.put("tokens/new", {"v": 1})
    assert fresh.get("tokens/new") == {"v": 1}
    with pytest.raises(McpRelayError) as info:
        fresh.get("tokens/old")
    assert "different data key" in info.value.message
    assert store.path_for("tokens/old").exists()
    # The instance that cached the old key notices the replacement instead of writing with it.
    assert store.get("tokens/new") == {"v": 1}
    # Logging out and in again repairs the entry.
    fresh.delete("tokens/old")
    fresh.put("tokens/old", grant("rt-new"))
    assert FileStore(tmp_path).get("tokens/old") == grant("rt-new")


def test_corrupt_key_file(tmp_path: Path) -> None:
    FileStore(tmp_path).put("tokens/a", grant())
    (tmp_path / "store" / ".key").write_text("not base64 at all!\n")
    with pytest.raises(McpRelayError) as info:
        FileStore(tmp_path).get("tokens/a")
    assert info.value.error_type is ErrorType.TOKEN_STORE_UNAVAILABLE
    assert "corrupt" in info.value.message


def test_describe_names_directory_and_key_location(tmp_path: Path) -> None:
    store = FileStore(tmp_path)
    store.put("tokens/a", grant())
    text = store.describe()
    assert text.startswith("file (")
    assert str(tmp_path.resolve() / "store") in text
    assert str(tmp_path.resolve() / "store" / ".key") in text
    key = (tmp_path / "store" / ".key").read_text().strip()
    assert key not in text and SECRET not in text


def test_rejects_non_dict_values(tmp_path: Path) -> None:
    store = FileStore(tmp_path)
    with pytest.raises(TypeError):
        store.put("k", "text")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        store.put("k", {"x": {1, 2}})
    assert store.get("k") is None


def test_unusable_store_directory(tmp_path: Path) -> None:
    (tmp_path / "store").write_text("a file where the directory should be")
    with pytest.raises(McpRelayError) as info:
        FileStore(tmp_path)
    assert info.value.error_type is ErrorType.TOKEN_STORE_UNAVAILABLE
    assert str(tmp_path.resolve() / "store") in info.value.message
