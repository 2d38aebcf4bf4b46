"""Secret material named in the configuration: read from a file or an environment variable.

Private keys, workload tokens and ID tokens never come from argv (every local user can read the
process list) and never live in the configuration file itself. They are read again at every use,
because the things that write them rotate them: a Kubernetes projected service-account token is
replaced on disk every hour, an SSO helper refreshes the ID token it leaves behind.
"""

from __future__ import annotations

import os
from pathlib import Path

from mcprelay.errors import ErrorType, McpRelayError

_MAX_BYTES = 64 * 1024


def read_material(what: str, *, file: str, env: str, server: str, key: str) -> str:
    """The text of ``what`` (e.g. "the private key") from ``file`` or the variable ``env``.

    ``key`` is the configuration prefix (``oauth.private_key``) for messages that say what to fix.
    """
    if env:
        value = os.environ.get(env, "")
        if not value.strip():
            raise McpRelayError(
                ErrorType.CONFIG_INVALID,
                f"{what} for {server} should be in the environment variable {env} ({key}_env), which is "
                "unset or empty",
                suggestion=f"export {env} in the environment mcprelay runs in, or set {key}_file instead",
                server=server,
                details={"env": env},
            )
        return value.strip()
    if not file:
        raise McpRelayError(
            ErrorType.CONFIG_INVALID,
            f"{what} for {server} is not configured",
            suggestion=f"set {key}_file or {key}_env in mcpServers[].oauth",
            server=server,
        )
    path = Path(file).expanduser()
    try:
        with path.open("rb") as fh:
            data = fh.read(_MAX_BYTES + 1)
    except OSError as exc:
        raise McpRelayError(
            ErrorType.CONFIG_INVALID,
            f"cannot read {what} for {server} from {path} ({key}_file): {exc.strerror or exc}",
            suggestion="check the path and that the file is readable by the user running mcprelay",
            server=server,
            details={"file": str(path)},
        ) from None
    if len(data) > _MAX_BYTES:
        raise McpRelayError(
            ErrorType.CONFIG_INVALID,
            f"{path} ({key}_file) is larger than {_MAX_BYTES // 1024} KiB; it cannot be {what}",
            suggestion=f"point {key}_file at the right file",
            server=server,
        )
    text = data.decode("utf-8", errors="replace").strip()
    if not text:
        raise McpRelayError(
            ErrorType.CONFIG_INVALID,
            f"{path} ({key}_file) is empty; it should hold {what}",
            suggestion="check whatever writes that file (a projected token, an SSO helper)",
            server=server,
        )
    return text
