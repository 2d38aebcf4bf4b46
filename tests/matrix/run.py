"""The client × upstream matrix: real MCP clients in front of real upstreams, directly and through the gateway.

Every cell is one client session (one-shot invocations for the Inspector CLI) doing every feature
in sequence against one upstream, in one of three modes:

* ``direct`` — the client talks to the upstream itself (spawns the stdio server, or connects to
  the HTTP one);
* ``stdio`` — the client spawns ``mcprelay --config CFG --home HOME serve --stdio``, the README's
  desktop-client recipe, with that one upstream configured;
* ``listen`` — ``mcprelay serve --listen 127.0.0.1:0`` runs with that one upstream and the client
  connects to the URL it printed (read from ``<home>/state/gateway.json``), without waiting for the
  upstream to be ready: a user does not wait either.

A feature that passes directly must pass in both gateway modes (``verdict.py``). The run prints
the matrix, writes ``.ci/out/matrix/`` (one directory per cell: plan, results, the driver's and
the gateway's logs) and, when every client, upstream and mode ran, ``docs/MATRIX.md``.

Called by ``.ci/matrix.sh``, which installs the pinned third-party software first and passes its
paths in the environment (``MATRIX_NODE``, ``MATRIX_EVERYTHING_MAIN``, ``MATRIX_TS_SDK_DIR``,
``MATRIX_INSPECTOR_MAIN``, ``MATRIX_FASTMCP_PYTHON``); see docs/MATRIX.md for the knobs.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.matrix import profiles, verdict, wire
from tests.matrix.profiles import CLIENTS, FEATURES, MODES, UPSTREAMS, ClientInfo, Upstream
from tests.matrix.verdict import FAIL, NA, NOT_RUN, PASS, Outcome

ROOT = Path(__file__).resolve().parents[2]
DRIVERS = ROOT / "tests" / "matrix" / "drivers"
VENV_PY = ROOT / ".venv" / "bin" / "python"
MCPRELAY = ROOT / ".venv" / "bin" / "mcprelay"
BASELINE = ROOT / ".ci" / "matrix-baseline.txt"
DOC = ROOT / "docs" / "MATRIX.md"
VERSIONS = {
    "server-everything": "2026.8.31",
    "@modelcontextprotocol/sdk": "1.32.2",
    "@modelcontextprotocol/inspector": "2.12.0",
    "fastmcp": "4.2.3",
    "mcp": "2.3.0",
}


def log(message: str) -> None:
    print(f"matrix: {message}", file=sys.stderr, flush=True)


@dataclass
class Env:
    node: str
    everything_main: str
    ts_sdk_dir: str
    inspector_main: str
    fastmcp_python: str
    out: Path
    cell_timeout: float
    feature_timeout: float
    fastmcp_url: str = ""
    tap: bool = False
    fixture_ready: bool = False
    fixture_why: str = ""
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)


def env_path(name: str, default: Path) -> str:
    return os.environ.get(name) or str(default)


# ---- processes ------------------------------------------------------------------------------------


def stop(proc: subprocess.Popen[Any], grace: float = 5.0) -> None:
    """Stop a process started in its own session, and everything it started, by its process group."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            pass
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)  # stragglers of the group (a stdio upstream, a gateway's child)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(2)


def _cell_processes(cell_dir: Path) -> dict[int, str]:
    proc = Path("/proc")
    if not proc.is_dir():
        return {}
    marker = str(cell_dir).encode()
    found: dict[int, str] = {}
    for entry in proc.iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            argv = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if marker in argv:
            found[int(entry.name)] = " ".join(a.decode(errors="replace") for a in argv.split(b"\0") if a)[:200]
    return found


def reap_leftovers(cell_dir: Path) -> list[str]:
    """Stop what a cell left running (found by the cell's directory in its command line) and say what it was.

    Everything a cell starts names the cell's directory in its arguments (the plan, the config, the
    tap's log), including processes in sessions of their own: the gateway starts each stdio upstream
    in a new process group, so a gateway killed by its client leaves its upstream behind. Linux
    only (/proc); elsewhere nothing is reaped.
    """
    found = _cell_processes(cell_dir)
    deadline = time.monotonic() + 3  # a process still on its way out is not a leftover
    while found and time.monotonic() < deadline:
        time.sleep(0.25)
        found = _cell_processes(cell_dir)
    groups = set()
    for pid in found:
        with contextlib.suppress(OSError):
            groups.add(os.getpgid(pid))
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for group in groups:
            with contextlib.suppress(OSError):
                os.killpg(group, sig)
        if sig == signal.SIGTERM and groups:
            time.sleep(1)
    return list(found.values())


def start_fastmcp(env: Env) -> None:
    logfile = open(env.out / "fastmcp-server.log", "wb")
    proc = subprocess.Popen(
        [env.fastmcp_python, str(ROOT / "tests" / "matrix" / "upstreams" / "fastmcp_server.py")],
        stdout=subprocess.PIPE,
        stderr=logfile,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
        cwd=env.out,
    )
    env.processes.append(proc)
    assert proc.stdout is not None
    deadline = time.monotonic() + 60
    line = b""
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if line.startswith(b"MATRIX_URL "):
            env.fastmcp_url = line.split()[1].decode()
            break
        if not line and proc.poll() is not None:
            break
    if not env.fastmcp_url:
        raise SystemExit(f"matrix: the FastMCP server did not start (log: {env.out / 'fastmcp-server.log'})")
    # Drain its stdout so a chatty server never blocks on a full pipe.
    threading.Thread(target=lambda: [None for _ in proc.stdout or []], daemon=True).start()
    log(f"FastMCP server at {env.fastmcp_url}")


def check_fixture(env: Env) -> None:
    probe = subprocess.run(
        [str(VENV_PY), "-c", "import mcprelay.testing.fixture_server"],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    env.fixture_ready = probe.returncode == 0
    if not env.fixture_ready:
        env.fixture_why = "mcprelay.testing.fixture_server is not on this branch yet"


# ---- targets ------------------------------------------------------------------------------------


def tapped(target: dict[str, Any], wire_log: Path | None) -> dict[str, Any]:
    """The same stdio target behind ``tests/matrix/tap.py``, which logs every line it carries."""
    if wire_log is None or target["kind"] != "stdio":
        return target
    args = [str(ROOT / "tests" / "matrix" / "tap.py"), str(wire_log), "--", target["command"], *target["args"]]
    return {**target, "command": str(VENV_PY), "args": args}


def upstream_target(env: Env, upstream: Upstream, wire_log: Path | None = None) -> dict[str, Any]:
    """How a client (or the gateway) reaches the upstream.

    A stdio upstream always sits behind the tap (``wire_log``): the upstream's side of the wire is
    the one place that shows what really reached it (a ``notifications/cancelled``, say), in every
    mode alike. The tap only copies lines, so neither the client nor the gateway can tell.
    """
    if upstream.name == "everything":
        target = {"kind": "stdio", "command": env.node, "args": [env.everything_main, "stdio"]}
    elif upstream.name == "fastmcp":
        target = {"kind": "http", "url": env.fastmcp_url}
    else:
        target = {"kind": "stdio", "command": str(VENV_PY), "args": ["-m", "mcprelay.testing.fixture_server"]}
    return tapped(target, wire_log)


def gateway_entry(target: dict[str, Any]) -> dict[str, Any]:
    """The upstream as a server entry of the gateway's config file."""
    if target["kind"] == "http":
        return {"url": target["url"], "protocol": "http"}
    entry: dict[str, Any] = {"command": target["command"], "args": target["args"]}
    return entry


def listener_headers(home: Path) -> dict[str, str]:
    """Headers a client needs for the loopback listener of this home: its owner key (``<home>/gateway.key``,
    written by ``serve --listen`` before it listens), as ``mcprelay client-config`` would print it."""
    key = (home / "gateway.key").read_text().strip()
    return {"Authorization": f"Bearer {key}"}


@contextlib.contextmanager
def gateway_target(env: Env, upstream: Upstream, mode: str, cell_dir: Path) -> Iterator[dict[str, Any]]:
    """A running gateway (listen) or the command to spawn one (stdio), configured with this one upstream."""
    home = Path(tempfile.mkdtemp(prefix="mcprelay-matrix-home-"))
    config = cell_dir / "gateway-config.json"
    entry = gateway_entry(upstream_target(env, upstream, cell_dir / "wire-upstream.log"))
    config.write_text(json.dumps({"token_store": "memory", "mcpServers": {upstream.name: entry}}))
    gateway_env = {"MCPRELAY_HEADLESS": "1"}
    try:
        if mode == "stdio":
            command = {
                "kind": "stdio",
                "command": str(MCPRELAY),
                "args": ["--config", str(config), "--home", str(home), "serve", "--stdio"],
                "env": gateway_env,
            }
            yield tapped(command, cell_dir / "wire-client-gateway.log" if env.tap else None)
            return
        logfile = open(cell_dir / "gateway-stderr.log", "wb")
        proc = subprocess.Popen(
            [str(MCPRELAY), "--config", str(config), "--home", str(home), "serve", "--listen", "127.0.0.1:0"],
            stdout=logfile,
            stderr=logfile,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            env={**os.environ, **gateway_env},
        )
        try:
            runfile = home / "state" / "gateway.json"
            deadline = time.monotonic() + 30
            url = ""
            while time.monotonic() < deadline and proc.poll() is None:
                with contextlib.suppress(OSError, ValueError):
                    url = json.loads(runfile.read_text())["url"]
                if url:
                    break
                time.sleep(0.05)
            if not url:
                raise RuntimeError(f"mcprelay serve --listen did not write {runfile} within 30 s (exit {proc.poll()})")
            yield {"kind": "http", "url": url.rstrip("/") + "/mcp", "headers": listener_headers(home)}
        finally:
            stop(proc)
            logfile.close()
    finally:
        for name in ("logs/mcprelay.log", f"logs/upstreams/{upstream.name}.log"):
            src = home / name
            if src.exists():
                shutil.copy(src, cell_dir / ("gateway-" + Path(name).name))
        shutil.rmtree(home, ignore_errors=True)


# ---- one cell -------------------------------------------------------------------------------------


def driver_command(env: Env, client: str, plan_path: Path) -> list[str]:
    if client == "py-session":
        return [str(VENV_PY), str(DRIVERS / "mcp_sdk.py"), str(plan_path), "--api", "session"]
    if client == "py-auto":
        return [str(VENV_PY), str(DRIVERS / "mcp_sdk.py"), str(plan_path), "--api", "client"]
    if client == "fastmcp":
        return [env.fastmcp_python, str(DRIVERS / "fastmcp_client.py"), str(plan_path)]
    if client == "ts-sdk":
        return [env.node, str(DRIVERS / "ts_sdk.mjs"), str(plan_path)]
    if client == "inspector":
        return [str(VENV_PY), str(DRIVERS / "inspector.py"), str(plan_path)]
    raise ValueError(client)


@dataclass
class CellResult:
    outcomes: dict[str, Outcome]
    info: dict[str, Any]
    seconds: float


def run_cell(env: Env, client: ClientInfo, upstream: Upstream, mode: str) -> CellResult:
    t0 = time.monotonic()
    cell_dir = env.out / "cells" / f"{upstream.name}.{client.name}.{mode}"
    shutil.rmtree(cell_dir, ignore_errors=True)
    cell_dir.mkdir(parents=True)
    na = profiles.not_applicable(upstream, client)
    outcomes = {name: Outcome(NA, why) for name, why in na.items()}
    if upstream.name == "fixture" and not env.fixture_ready:
        return CellResult({name: Outcome(NOT_RUN, env.fixture_why) for name, _ in FEATURES}, {}, 0.0)
    mark = "m" + secrets.token_hex(4)
    specs = profiles.feature_specs(upstream, client, mark)
    if mode != "direct":
        specs = [profiles.through_gateway(s, upstream.name) for s in specs]
    results_path = cell_dir / "results.jsonl"
    info: dict[str, Any] = {}
    try:
        with contextlib.ExitStack() as stack:
            if mode == "direct":
                target = upstream_target(env, upstream, cell_dir / "wire-upstream.log")
            else:
                target = stack.enter_context(gateway_target(env, upstream, mode, cell_dir))
            plan = {
                "client": client.name,
                "upstream": upstream.name,
                "mode": mode,
                "target": target,
                "roots": [{"uri": profiles.ROOT_URI.replace(profiles.MARK, mark), "name": "matrix root"}],
                "features": specs,
                "results": str(results_path),
                # A one-shot client pays a whole connection per request: a feature may take several.
                "feature_timeout_s": env.feature_timeout * (3 if client.name == "inspector" else 1),
                "request_timeout_s": env.feature_timeout,
                "connect_timeout_s": 30,
                "node": env.node,
                "ts_sdk_dir": env.ts_sdk_dir,
                "inspector_main": env.inspector_main,
                "inspector_home": str(cell_dir / "inspector-home"),
            }
            plan_path = cell_dir / "plan.json"
            plan_path.write_text(json.dumps(plan, indent=2))
            with open(cell_dir / "driver.log", "wb") as driver_log:
                proc = subprocess.Popen(
                    driver_command(env, client.name, plan_path),
                    stdout=driver_log,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    start_new_session=True,
                    cwd=cell_dir,
                )
                limit = env.cell_timeout * (2 if client.name == "inspector" else 1)
                try:
                    proc.wait(limit)
                    timed_out = False
                except subprocess.TimeoutExpired:
                    timed_out = True
                finally:
                    stop(proc)
        leftovers = reap_leftovers(cell_dir)
        if leftovers:
            info["leftovers"] = leftovers
        decided = read_results(results_path, info)
        wire_check(upstream, specs, decided, cell_dir / "wire-upstream.log", mark)
        for spec in specs:
            name = spec["name"]
            if name in decided:
                # The cell's token is in the logs for correlation; the matrix shows it as MARK.
                outcomes[name] = Outcome(decided[name].status, decided[name].detail.replace(mark, "MARK"))
            elif timed_out:
                outcomes[name] = Outcome(FAIL, f"the cell did not finish within {limit:g} s")
            else:
                outcomes[name] = Outcome(
                    FAIL, f"the driver exited ({proc.returncode}) before deciding it; see {cell_dir}/driver.log"
                )
    except Exception as exc:  # a gateway that does not start, a driver that cannot be run
        for spec in specs:
            outcomes.setdefault(spec["name"], Outcome(FAIL, f"cell set-up failed: {exc}"))
            if outcomes[spec["name"]].status == NOT_RUN:
                outcomes[spec["name"]] = Outcome(FAIL, f"cell set-up failed: {exc}")
    return CellResult(outcomes, info, time.monotonic() - t0)


def wire_check(
    upstream: Upstream, specs: list[dict[str, Any]], decided: dict[str, Outcome], log: Path, mark: str
) -> None:
    """A cancel the client saw end must also have reached a stdio upstream as notifications/cancelled."""
    spec = upstream.features.get("cancel")
    got = decided.get("cancel")
    if not spec or not spec.get("wire_check") or got is None or got.status != PASS:
        return
    if not log.exists():
        decided["cancel"] = Outcome(FAIL, f"{got.detail}; but no wire log of the upstream ({log.name}) to check it")
        return
    args = profiles.feature_specs_args(spec, mark)
    evidence = wire.cancel_reached(wire.parse(log.read_text(encoding="utf-8").splitlines()), spec["tool"], args)
    if evidence.cancelled:
        decided["cancel"] = Outcome(PASS, f"{got.detail}; {evidence.detail}")
    else:
        decided["cancel"] = Outcome(FAIL, f"{got.detail}; but {evidence.detail} (wire: {log.name})")


def read_results(path: Path, info: dict[str, Any]) -> dict[str, Outcome]:
    decided: dict[str, Outcome] = {}
    if not path.exists():
        return decided
    for line in path.read_text(encoding="utf-8").splitlines():
        with contextlib.suppress(ValueError):
            record = json.loads(line)
            if "info" in record:
                info.update(record["info"])
            elif "feature" in record:
                decided[record["feature"]] = Outcome(record["status"], record.get("detail", ""))
    return decided


# ---- the whole run --------------------------------------------------------------------------------


def choose(value: str | None, allowed: list[str], what: str) -> list[str]:
    if not value:
        return list(allowed)
    chosen = [v.strip() for v in value.replace(",", " ").split() if v.strip()]
    unknown = [v for v in chosen if v not in allowed]
    if unknown:
        raise SystemExit(f"matrix: unknown {what} {unknown}; choose from {allowed}")
    return chosen


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run the client × upstream matrix.")
    parser.add_argument("--clients", default=os.environ.get("MATRIX_CLIENTS"))
    parser.add_argument("--upstreams", default=os.environ.get("MATRIX_UPSTREAMS"))
    parser.add_argument("--modes", default=os.environ.get("MATRIX_MODES"))
    parser.add_argument("--jobs", type=int, default=int(os.environ.get("MATRIX_JOBS", "2")))
    parser.add_argument("--cell-timeout", type=float, default=float(os.environ.get("MATRIX_CELL_TIMEOUT", "120")))
    parser.add_argument("--feature-timeout", type=float, default=float(os.environ.get("MATRIX_FEATURE_TIMEOUT", "20")))
    parser.add_argument(
        "--report-only",
        action="store_true",
        default=os.environ.get("MATRIX_MODE") == "report",
        help="print and write the matrix but exit 0 even when the gateway fails a cell",
    )
    args = parser.parse_args(argv)
    clients = choose(args.clients, list(CLIENTS), "client")
    upstreams = choose(args.upstreams, list(UPSTREAMS), "upstream")
    modes = choose(args.modes, MODES, "mode")
    full = clients == list(CLIENTS) and upstreams == list(UPSTREAMS) and modes == MODES

    out = ROOT / ".ci" / "out" / "matrix"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    env = Env(
        node=env_path("MATRIX_NODE", Path(shutil.which("node") or "node")),
        everything_main=env_path(
            "MATRIX_EVERYTHING_MAIN",
            ROOT
            / ".ci/npm/server-everything-2026.8.31/node_modules/@modelcontextprotocol/server-everything/dist/index.js",
        ),
        ts_sdk_dir=env_path("MATRIX_TS_SDK_DIR", ROOT / ".ci/npm/sdk-1.32.2/node_modules/@modelcontextprotocol/sdk"),
        inspector_main=env_path(
            "MATRIX_INSPECTOR_MAIN",
            ROOT
            / ".ci/npm/inspector-2.12.0/node_modules/@modelcontextprotocol/inspector/clients/launcher/build/index.js",
        ),
        fastmcp_python=env_path("MATRIX_FASTMCP_PYTHON", ROOT / ".ci/venvs/fastmcp-4.2.3/bin/python"),
        out=out,
        cell_timeout=args.cell_timeout,
        feature_timeout=args.feature_timeout,
        tap=os.environ.get("MATRIX_TAP") == "1",
    )
    baseline = verdict.parse_baseline(BASELINE.read_text(encoding="utf-8"), str(BASELINE)) if BASELINE.exists() else []
    t0 = time.monotonic()
    try:
        if "fastmcp" in upstreams:
            start_fastmcp(env)
        if "fixture" in upstreams:
            check_fixture(env)
            if not env.fixture_ready:
                log(f"fixture column not run: {env.fixture_why}")
        tasks = [(CLIENTS[c], UPSTREAMS[u], m) for u in upstreams for c in clients for m in modes]
        # The longest cells first (one-shot clients through serve --stdio spawn a gateway per
        # request), so that no long cell is left running alone at the end.
        tasks.sort(key=lambda t: (not t[0].one_shot, t[2] != "stdio"))
        log(
            f"{len(tasks)} cells ({len(clients)} clients × {len(upstreams)} upstreams × {len(modes)} modes), "
            f"{args.jobs} at a time, {args.cell_timeout:g} s each at most"
        )
        cells: dict[tuple[str, str, str], dict[str, Outcome]] = {}
        infos: dict[tuple[str, str, str], dict[str, Any]] = {}

        def work(task: tuple[ClientInfo, Upstream, str]) -> None:
            client, upstream, mode = task
            result = run_cell(env, client, upstream, mode)
            key = (client.name, upstream.name, mode)
            cells[key] = result.outcomes
            infos[key] = result.info
            passed = sum(1 for o in result.outcomes.values() if o.status == "pass")
            failed = sum(1 for o in result.outcomes.values() if o.status == FAIL)
            era = result.info.get("protocol_version", "")
            log(
                f"{upstream.name:10} {client.name:10} {mode:6} {passed:2} pass {failed:2} fail  "
                f"{result.seconds:5.1f} s {era}"
            )

        with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
            list(pool.map(work, tasks))
    finally:
        for proc in env.processes:
            stop(proc)
    elapsed = time.monotonic() - t0
    rows = verdict.judge(cells, clients, upstreams, [f for f, _ in FEATURES], baseline)
    upstream_titles = [(u, UPSTREAMS[u].title) for u in upstreams]
    print()
    print(verdict.render_text(rows, upstream_titles, clients, FEATURES))
    print()
    report = details(rows, infos, clients, upstreams)
    print(report)
    print(era_table(infos, clients, upstreams))
    counts = verdict.summary(rows)
    regressions = counts.get("REGRESSION", 0)
    line = (
        f"{len(rows)} client × upstream × feature rows: {counts.get('ok', 0)} pass in every mode, "
        f"{regressions} pass directly but fail through the gateway, {counts.get('baselined', 0)} baselined, "
        f"{counts.get('direct-fail', 0)} fail directly, {counts.get('n/a', 0)} n/a, {counts.get(NOT_RUN, 0)} not run; "
        f"{elapsed:.0f} s"
    )
    print(f"matrix: {line}")
    markdown = document(rows, infos, clients, upstreams, line, report)
    (out / "MATRIX.md").write_text(markdown, encoding="utf-8")
    if full:
        DOC.write_text(markdown, encoding="utf-8")
        log(f"wrote {DOC.relative_to(ROOT)}")
    for entry in verdict.unused_baseline(rows, baseline):
        log(f"note: baseline entry excused nothing (remove it?): {entry}")
    if regressions:
        log(
            f"FAILED: {regressions} feature(s) pass directly but fail through the gateway "
            f"(details above; logs in {out}/cells/)"
        )
        if args.report_only:
            log("MATRIX_MODE=report: not failing the run")
            return 0
        return 1
    return 0


def details(
    rows: list[verdict.Row], infos: dict[tuple[str, str, str], dict[str, Any]], clients: list[str], upstreams: list[str]
) -> str:
    """The failures, one line each: the request sent and what came back."""
    out = []
    regressions = [r for r in rows if r.verdict == "REGRESSION"]
    if regressions:
        out.append("Pass directly, fail through the gateway:")
        for r in regressions:
            for note in r.notes:
                out.append(f"  {r.upstream} / {r.client} / {r.feature} / {note}")
    direct = [r for r in rows if r.verdict == "direct-fail"]
    if direct:
        out.append("Fail directly (decide nothing):")
        for r in direct:
            gateway = ", ".join(f"{m} {r.outcomes[m].status}" for m in verdict.GATEWAY_MODES)
            out.append(f"  {r.upstream} / {r.client} / {r.feature} / {r.outcomes['direct'].detail} ({gateway})")
    left = [(key, info["leftovers"]) for key, info in sorted(infos.items()) if info.get("leftovers")]
    if left:
        out.append("Processes still running after the cell ended (stopped by the matrix):")
        for (client, upstream, mode), commands in left:
            for command in commands:
                out.append(f"  {upstream} / {client} / {mode}: {command}")
    return "\n".join(out)


def era_table(infos: dict[tuple[str, str, str], dict[str, Any]], clients: list[str], upstreams: list[str]) -> str:
    """The protocol version each cell negotiated: the direct column and the gateway's may differ."""
    lines = ["| upstream | client | direct | stdio | listen |", "| --- | --- | --- | --- | --- |"]
    for upstream in upstreams:
        for client in clients:
            eras = [str(infos.get((client, upstream, m), {}).get("protocol_version", "")) for m in MODES]
            if any(eras):
                lines.append(f"| {upstream} | {client} | " + " | ".join(e or "·" for e in eras) + " |")
    return "\n".join(lines) if len(lines) > 2 else ""


def document(
    rows: list[verdict.Row],
    infos: dict[tuple[str, str, str], dict[str, Any]],
    clients: list[str],
    upstreams: list[str],
    line: str,
    report: str,
) -> str:
    titles = [(c, CLIENTS[c].title) for c in clients]
    parts = [
        (Path(__file__).parent / "header.md").read_text(encoding="utf-8").strip(),
        "",
        "## The matrix",
        "",
        f"Last full run: {line}.",
        "",
    ]
    parts.append(verdict.render_markdown(rows, [(u, UPSTREAMS[u].title) for u in upstreams], titles, FEATURES))
    na = sorted({(r.client, r.upstream, r.feature, r.notes[0]) for r in rows if r.verdict == NA and r.notes})
    if na:
        parts += ["## Why n/a", ""]
        for client, upstream, feature, why in na:
            parts.append(f"- {upstream} / {client} / {feature}: {why}")
        parts.append("")
    steady = re.sub(r" \[\d+\.\d s\]", "", report)  # timings change every run; the doc should not
    parts += ["## Failures", "", "```", steady or "(none)", "```", ""]
    eras = era_table(infos, clients, upstreams)
    if eras:
        parts += ["## Negotiated protocol versions", "", eras, ""]
    return "\n".join(parts)


if __name__ == "__main__":
    raise SystemExit(main())
