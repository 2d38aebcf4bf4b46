#!/usr/bin/env python3
"""The client command the MCP conformance suite runs: ``conformance_client.py [ARGS...] SERVER_URL``.

The suite appends the server URL as the last argument and describes the scenario in the
environment: ``MCP_CONFORMANCE_SCENARIO`` (its name) and ``MCP_CONFORMANCE_CONTEXT`` (JSON, e.g.
pre-registered ``client_id`` / ``client_secret``). This maps that onto ``mcprelay probe``:

- ``client_id``            -> ``--client-id``
- ``client_secret``        -> env ``MCPRELAY_CLIENT_SECRET`` (never argv: argv is visible to others)
- ``client_metadata_url``  -> ``--client-metadata-url``; without a client id or one in the context,
  the suite's fixed Client ID Metadata Document URL is offered (mcprelay uses it only where the
  authorization server advertises ``client_id_metadata_document_supported``, else it registers)
- ``scope`` / ``scopes``   -> ``--scope``

and runs it with a fresh ``MCPRELAY_HOME`` (so no token, registration or config of the person
running this leaks in), ``BROWSER`` set to ``follow_browser.py`` (which completes the suite's
immediate-redirect "login"), and headless mode off. It exits with mcprelay's exit code.

Extra environment:
- ``MCPRELAY_BIN``: the mcprelay executable (default: the repo's ``.venv/bin/mcprelay``).
- ``MCPRELAY_CONFORMANCE_LOG``: a file to copy mcprelay's diagnostic log (JSON lines, no secrets) to.
- ``MCPRELAY_CONFORMANCE_TIMEOUT``: seconds before mcprelay is stopped (default 25, under the suite's
  30 s, so that a hung client ends with a clear message and exit 124 instead of a killed suite).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
# The CIMD URL the suite's basic-cimd scenario expects as client_id (a constant in the suite).
SUITE_CIMD_URL = "https://conformance-test.local/client-metadata.json"
# Environment that would change how mcprelay behaves here, dropped before it starts.
DROPPED_ENV = (
    "MCPRELAY_CONFIG", "MCPRELAY_HEADLESS", "HEADLESS", "MCPRELAY_CLIENT_SECRET", "SSH_CONNECTION", "SSH_CLIENT",
    "SSH_TTY",
)


def _context() -> dict[str, Any]:
    raw = os.environ.get("MCP_CONFORMANCE_CONTEXT") or "{}"
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as exc:
        print(f"conformance_client: MCP_CONFORMANCE_CONTEXT is not JSON: {exc}", file=sys.stderr)
        return {}
    return value if isinstance(value, dict) else {}


def _browser_script(home: Path) -> Path:
    """An executable that runs follow_browser.py with this Python (BROWSER must be one program)."""
    script = home / "browser.sh"
    script.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{HERE / "follow_browser.py"}" "$@"\n')
    script.chmod(script.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return script


# Environment variables the --oauth file points at for the secret material of the machine grants.
KEY_ENV = "MCPRELAY_CONFORMANCE_PRIVATE_KEY"
ASSERTION_ENV = "MCPRELAY_CONFORMANCE_WORKLOAD_TOKEN"
ID_TOKEN_ENV = "MCPRELAY_CONFORMANCE_ID_TOKEN"


def machine_grant(scenario: str, context: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str]] | None:
    """The ``oauth`` fields (for ``probe --oauth``) and environment of a machine-grant scenario, or None.

    Told apart by what the context carries (a private key, a workload token, an IdP's ID token), and
    for client_secret_basic client credentials by the scenario's name: its context looks exactly like
    the pre-registered authorization-code scenarios'. Secrets go into the environment only.
    """
    client_id = str(context.get("client_id") or "")
    if context.get("private_key_pem"):
        oauth: dict[str, Any] = {"grant": "client_credentials", "client_id": client_id, "private_key_env": KEY_ENV}
        if context.get("signing_algorithm"):
            oauth["signing_alg"] = str(context["signing_algorithm"])
        return oauth, {KEY_ENV: str(context["private_key_pem"])}
    if context.get("idp_id_token"):
        oauth = {
            "grant": "token_exchange", "client_id": client_id, "id_token_env": ID_TOKEN_ENV,
            "idp_token_endpoint": str(context.get("idp_token_endpoint") or ""),
            "idp_client_id": str(context.get("idp_client_id") or ""),
        }
        return oauth, {ID_TOKEN_ENV: str(context["idp_id_token"])}
    if context.get("valid_jwt"):
        oauth = {"grant": "jwt_bearer", "client_id": client_id, "assertion_env": ASSERTION_ENV}
        return oauth, {ASSERTION_ENV: str(context["valid_jwt"])}
    if scenario.startswith("auth/client-credentials"):
        return {"grant": "client_credentials", "client_id": client_id}, {}
    return None


def build_command(
    mcprelay: str, home: Path, url: str, context: dict[str, Any], scenario: str = ""
) -> tuple[list[str], dict[str, str]]:
    """The probe command line and the environment additions for one scenario."""
    cmd = [mcprelay, "--home", str(home), "probe", url, "--json"]
    env: dict[str, str] = {}
    client_id = context.get("client_id")
    machine = machine_grant(scenario, context)
    if machine is not None:
        oauth, secret_env = machine
        oauth_file = home / "oauth.json"
        fd = os.open(oauth_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump(oauth, fh)
        cmd += ["--oauth", str(oauth_file)]
        env.update(secret_env)
        if context.get("client_secret"):
            env["MCPRELAY_CLIENT_SECRET"] = str(context["client_secret"])
    elif client_id:
        cmd += ["--client-id", str(client_id)]
        if context.get("client_secret"):
            env["MCPRELAY_CLIENT_SECRET"] = str(context["client_secret"])
    else:
        cmd += ["--client-metadata-url", str(context.get("client_metadata_url") or SUITE_CIMD_URL)]
    scope = context.get("scope") or context.get("scopes")
    if isinstance(scope, list):
        scope = " ".join(str(s) for s in scope)
    if scope:
        cmd += ["--scope", str(scope)]
    return cmd, env


def main(argv: list[str]) -> int:
    if len(argv) < 2:
        print("usage: conformance_client.py [ARGS...] SERVER_URL (run by the conformance suite)", file=sys.stderr)
        return 2
    url = argv[-1]
    scenario = os.environ.get("MCP_CONFORMANCE_SCENARIO", "?")
    context = _context()
    mcprelay = os.environ.get("MCPRELAY_BIN") or str(REPO / ".venv" / "bin" / "mcprelay")

    home = Path(tempfile.mkdtemp(prefix="mcprelay-conformance-"))
    try:
        cmd, extra_env = build_command(mcprelay, home, url, context, scenario)
        env = {k: v for k, v in os.environ.items() if k not in DROPPED_ENV}
        env.update(extra_env)
        env["MCPRELAY_HOME"] = str(home)
        env["XDG_CONFIG_HOME"] = str(home / "config")  # no config file of the person running this
        env["BROWSER"] = str(_browser_script(home))
        shown = " ".join([*cmd[:1], "--home", "<tmp>", *cmd[3:]])
        secret_names = sorted(k for k in extra_env if k.startswith("MCPRELAY_"))
        secret_note = f" (secrets in {', '.join(secret_names)})" if secret_names else ""
        print(f"conformance_client: scenario {scenario}: {shown}{secret_note}", file=sys.stderr, flush=True)
        timeout = float(os.environ.get("MCPRELAY_CONFORMANCE_TIMEOUT", "25"))
        try:
            child = subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL, start_new_session=True)
        except OSError as exc:
            print(f"conformance_client: cannot run {mcprelay}: {exc}", file=sys.stderr)
            return 2

        def stop() -> None:  # mcprelay and anything it started (its own session, so its own group)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(child.pid, signal.SIGKILL)
            child.wait()

        # The suite ends a client that overruns by killing its shell; take mcprelay down with us.
        def on_term(signum: int, frame: object) -> None:
            stop()
            sys.exit(128 + signum)

        signal.signal(signal.SIGTERM, on_term)
        try:
            code = child.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            stop()
            print(f"conformance_client: mcprelay still running after {timeout:g} s; stopped it", file=sys.stderr)
            code = 124
        log = home / "logs" / "mcprelay.log"
        target = os.environ.get("MCPRELAY_CONFORMANCE_LOG")
        if target and log.exists():
            Path(target).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(log, target)
        print(f"conformance_client: mcprelay exited {code}", file=sys.stderr, flush=True)
        return code
    finally:
        shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
