"""Editing the config file from the CLI (``upstream add``, ``import``, ``remove``, ``enable``, ``disable``).

The file is the user's: it may be the list or the keyed shape of ``mcpServers``, hold MCPProxy's
fields, top-level settings in an order they chose, a byte-order mark, tabs. An edit changes the
servers it is about and nothing else — the document is read as JSON with its key order, changed
in place and written back in the file's own indentation.

Nothing that would not load is ever written: the new text goes through the same strict loader as
every command (:func:`mcprelay.config.parse_config_bytes`) before it replaces the file, and a file
that does not load now is not edited at all (its error is shown; fix it first). The write is
atomic — a temporary file beside the target, fsynced, renamed over it — so a running gateway (which
polls the file) sees the old or the new version, never half of one. The new file keeps the old
one's permission bits (0600 for a file created here); a symlinked config is written at the link's
target, so the link survives. Concurrent edits from two mcprelay processes are serialised by a
lock next to the home's other locks, and an edit made meanwhile by anything else (an editor) is
noticed before the rename: the change is redone on the new content.

Windows: ``os.replace`` is atomic there too (same volume); permission bits are not carried over,
the file's ACL applies.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import stat
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mcprelay import safejson
from mcprelay.config import LoadedConfig, parse_config_bytes, read_config_file
from mcprelay.errors import ErrorType, McpRelayError, config_error

_BOM = b"\xef\xbb\xbf"
_ATTEMPTS = 3


@dataclass
class ConfigDocument:
    """The config file as JSON in memory: its data (key order kept) and how it was written."""

    path: Path
    data: dict[str, Any]
    indent: str | int | None = 2
    bom: bool = False
    trailing_newline: bool = True
    existed: bool = True

    # -- the servers, whatever the shape -----------------------------------------------------

    @property
    def keyed(self) -> bool:
        return not isinstance(self.data.get("mcpServers"), list)

    def names(self) -> list[str]:
        servers = self.data.get("mcpServers")
        if isinstance(servers, dict):
            return list(servers)
        if isinstance(servers, list):
            return [s["name"] for s in servers if isinstance(s, dict) and isinstance(s.get("name"), str)]
        return []

    def get(self, name: str) -> dict[str, Any] | None:
        """The server's entry as written (without the list shape's ``name``), or None."""
        servers = self.data.get("mcpServers")
        if isinstance(servers, dict):
            body = servers.get(name)
            return {k: v for k, v in body.items() if k != "name"} if isinstance(body, dict) else None
        for entry in servers if isinstance(servers, list) else []:
            if isinstance(entry, dict) and entry.get("name") == name:
                return {k: v for k, v in entry.items() if k != "name"}
        return None

    def put(self, name: str, body: dict[str, Any]) -> None:
        """Add ``name`` at the end, or replace its entry where it stands."""
        body = {k: v for k, v in body.items() if k != "name"}
        servers = self.data.get("mcpServers")
        if servers is None:
            servers = self.data["mcpServers"] = {}
        if isinstance(servers, dict):
            servers[name] = body
            return
        entry = {"name": name, **body}
        for index, existing in enumerate(servers):
            if isinstance(existing, dict) and existing.get("name") == name:
                servers[index] = entry
                return
        servers.append(entry)

    def update(self, name: str, **fields: Any) -> None:
        """Set fields of an existing entry in place (its other fields and their order unchanged)."""
        servers = self.data.get("mcpServers")
        target: dict[str, Any] | None = None
        if isinstance(servers, dict):
            target = servers.get(name)
        elif isinstance(servers, list):
            target = next((s for s in servers if isinstance(s, dict) and s.get("name") == name), None)
        if not isinstance(target, dict):
            raise unknown_server(name, self)
        target.update(fields)

    def drop_field(self, name: str, key: str) -> None:
        """Remove one field of an existing entry (absent: nothing to do)."""
        servers = self.data.get("mcpServers")
        target: Any = servers.get(name) if isinstance(servers, dict) else next(
            (s for s in servers if isinstance(s, dict) and s.get("name") == name), None
        ) if isinstance(servers, list) else None
        if not isinstance(target, dict):
            raise unknown_server(name, self)
        target.pop(key, None)

    def remove(self, name: str) -> None:
        servers = self.data.get("mcpServers")
        if isinstance(servers, dict) and name in servers:
            del servers[name]
            return
        if isinstance(servers, list):
            for index, entry in enumerate(servers):
                if isinstance(entry, dict) and entry.get("name") == name:
                    del servers[index]
                    return
        raise unknown_server(name, self)

    # -- text ----------------------------------------------------------------------------------

    def render(self) -> bytes:
        text = json.dumps(self.data, indent=self.indent, ensure_ascii=False)
        if self.trailing_newline:
            text += "\n"
        return (_BOM if self.bom else b"") + text.encode()


def unknown_server(name: str, doc: ConfigDocument) -> McpRelayError:
    known = ", ".join(doc.names()) or "none"
    return McpRelayError(
        ErrorType.CONFIG_INVALID, f"no server named {name!r} in {doc.path} (configured: {known})",
        suggestion="check the name with `mcprelay upstream list`", server=name,
    )


def _indent_of(text: str) -> str | int | None:
    """The indentation the file uses: its first indented line's (tabs or N spaces); None for one line."""
    if "\n" not in text.strip():
        return None
    match = re.search(r"\n([ \t]+)\S", text)
    if match is None:
        return 2
    lead = match.group(1)
    return "\t" if lead.startswith("\t") else len(lead)


def read_document(path: Path) -> ConfigDocument:
    """The config file at ``path`` as an editable document; a missing file is an empty keyed one.

    The file must load as it is (the strict loader's error otherwise): an edit on top of a broken
    file could not be checked, and guessing at what its author meant could lose their work.
    """
    try:
        raw = read_config_file(path)
    except McpRelayError as exc:
        if "does not exist" in exc.message:
            return ConfigDocument(path, {"mcpServers": {}}, existed=False)
        raise
    parse_config_bytes(raw, str(path))  # raises the loader's own error, naming the file and field
    bom = raw.startswith(_BOM)
    body = raw[len(_BOM):] if bom else raw
    data = safejson.loads(body)
    text = body.decode("utf-8")
    return ConfigDocument(
        path, data, indent=_indent_of(text), bom=bom, trailing_newline=text.endswith("\n"), existed=True,
    )


def _target(path: Path) -> Path:
    """Where to write: a symlinked config is written at its target, so the link stays a link."""
    return Path(os.path.realpath(path)) if path.is_symlink() else path


def _digest(path: Path) -> str | None:
    try:
        return hashlib.sha256(read_config_file(path)).hexdigest()
    except McpRelayError:
        return None


def _write_atomically(path: Path, data: bytes, mode: int) -> None:
    target = _target(path)
    directory = target.parent
    tmp = directory / f".{target.name}.{os.getpid()}.{os.urandom(4).hex()}.tmp"
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0) | getattr(os, "O_CLOEXEC", 0)
    fd = os.open(tmp, flags, mode)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        if sys.platform != "win32":
            os.chmod(tmp, mode)  # the umask may have narrowed it; the old file's bits are what we keep
        os.replace(tmp, target)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
    if sys.platform != "win32":
        dir_fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


@contextlib.contextmanager
def _edit_lock(path: Path, lock_dir: Path | None) -> Iterator[None]:
    if lock_dir is None:
        yield
        return
    from filelock import FileLock, Timeout

    lock_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    name = hashlib.sha256(str(_target(path).resolve()).encode()).hexdigest()[:24]
    lock = FileLock(lock_dir / f"config-{name}.lock", mode=0o600)
    try:
        lock.acquire(timeout=30)
    except Timeout:
        raise McpRelayError(
            ErrorType.USAGE_ERROR, f"another mcprelay command has been editing {path} for 30 s",
            suggestion="try again; if it persists, look for a hung mcprelay process",
        ) from None
    try:
        yield
    finally:
        lock.release()


@dataclass
class EditResult:
    loaded: LoadedConfig
    written: bool
    created: bool


def edit_config(
    path: Path, change: Callable[[ConfigDocument], None], *, lock_dir: Path | None = None, dry_run: bool = False,
) -> EditResult:
    """Apply ``change`` to the config at ``path`` and write it back atomically (unless ``dry_run``).

    ``change`` may raise :class:`McpRelayError` to refuse (nothing is written). What it produces is
    loaded with the strict loader before anything is written; the loader's error (naming the file,
    server and field) is raised instead when it would not load.
    """
    with _edit_lock(path, lock_dir):
        for _attempt in range(_ATTEMPTS):
            before = _digest(path)
            doc = read_document(path)
            change(doc)
            data = doc.render()
            try:
                loaded = parse_config_bytes(data, str(path))
            except McpRelayError as exc:
                raise config_error(
                    f"the change would leave {path} invalid, so nothing was written: {exc.message}",
                    suggestion=exc.suggestion, server=exc.server, file=str(path),
                ) from None
            loaded.path = path
            if dry_run:
                return EditResult(loaded, written=False, created=not doc.existed)
            if _digest(path) != before:
                continue  # edited meanwhile by something else: redo the change on what is there now
            mode = 0o600
            if doc.existed:
                mode = stat.S_IMODE(os.stat(_target(path)).st_mode)
            else:
                _create_parent(path)
            _write_atomically(path, data, mode)
            return EditResult(loaded, written=True, created=not doc.existed)
    raise McpRelayError(
        ErrorType.USAGE_ERROR, f"{path} kept changing while mcprelay edited it; nothing was written",
        suggestion="close the editor that is saving it, then try again",
    )


def _create_parent(path: Path) -> None:
    """A config directory created here is private: the config may name secrets (or hold them)."""
    parent = path.parent
    if not parent.exists():
        parent.mkdir(parents=True, mode=0o700)
