#!/usr/bin/env bash
# The official MCP conformance suite's *server* scenarios against mcprelay's fixture MCP server
# (python -m mcprelay.testing.fixture_server), in three columns per suite version:
#
#   direct   the fixture itself, over streamable HTTP;
#   listen   `mcprelay serve --listen` in front of it (the gateway spawns the fixture over stdio);
#   stdio    `mcprelay serve --stdio` in front of it, reached through .ci/stdio_bridge.py (the suite
#            only speaks HTTP; the bridge starts one `serve --stdio` per handshake session, and shared
#            ones for 2026-07-28 stateless requests).
#
# Called by `./run test` from the repo root; see docs/CONFORMANCE.md ("Server scenarios").
# Scenarios that apply to 2026-07-28 as well as to earlier revisions (tools-list, prompts-get-*, ...)
# run a second time at the 2026-07-28 wire (`--spec-version 2026-07-28`, rows named SCENARIO@2026-07-28);
# by default the suite runs them at 2025-11-25.
#
# Verdict: it exits non-zero when a scenario that passes directly fails through the gateway (listen or
# stdio), or fails directly, unless .ci/conformance-server-baseline.txt lists it for that version and
# column with a reason (or when the servers or the suite cannot be installed or started). Scenarios that
# test the HTTP transport itself (DNS rebinding, header validation, session termination, resumable SSE)
# are not run through the bridge: there the HTTP side is test harness, so the stdio column shows n/a.
#
# Environment:
#   CONFORMANCE_VERSIONS            suite versions, space or comma separated (default: 0.1.16 0.2.0-alpha.12)
#   CONFORMANCE_SERVER_SCENARIOS    scenario names or globs (default: every server scenario of the version);
#                                   a glob also matches the @2026-07-28 rows of the scenarios it names
#   CONFORMANCE_SERVER_COLUMNS      columns to run (default: direct listen stdio; direct always runs)
#   CONFORMANCE_SERVER_WIRE_ROWS    1 (default) adds the SCENARIO@2026-07-28 rows; 0 leaves them out
#   CONFORMANCE_SERVER_UPSTREAM     how the gateways reach the fixture: stdio (default; each gateway spawns
#                                   its own) or http (the direct column's instance)
#   CONFORMANCE_JOBS                scenario runs at once (default: 2)
#   CONFORMANCE_TIMEOUT_MS          the suite's per-scenario timeout (default: 30000)
#   CONFORMANCE_NODE, CONFORMANCE_NODE_SOURCE   as for .ci/conformance.sh
# Installs (cached, gitignored): .ci/node/ and .ci/npm/<version>/ (shared with .ci/conformance.sh).
# Logs: .ci/out/server/ — fixture.log, gateway.log, gateway-upstream.log, gateway-diagnostic.log,
# bridge.log, stdio-children/ (each `serve --stdio` child: stderr, diagnostic log, upstream stderr),
# summary.md, failures.md (every failing check of every gateway-only failure), baseline-candidate.txt,
# and <version>/<direct|listen|stdio>/<row>/{output.txt,suite/**/checks.json,result}.
set -uo pipefail
cd "$(dirname "$0")/.."

DEFAULT_VERSIONS="0.1.16 0.2.0-alpha.12"
VERSIONS=${CONFORMANCE_VERSIONS:-$DEFAULT_VERSIONS}
VERSIONS=${VERSIONS//,/ }
SCENARIO_GLOBS=${CONFORMANCE_SERVER_SCENARIOS:-*}
COLUMNS=${CONFORMANCE_SERVER_COLUMNS:-direct listen stdio}
COLUMNS=${COLUMNS//,/ }
WIRE_ROWS=${CONFORMANCE_SERVER_WIRE_ROWS:-1}
UPSTREAM=${CONFORMANCE_SERVER_UPSTREAM:-stdio}
JOBS=${CONFORMANCE_JOBS:-2}
TIMEOUT_MS=${CONFORMANCE_TIMEOUT_MS:-30000}
BASELINE=.ci/conformance-server-baseline.txt
OUT=.ci/out/server
LOG_PREFIX=conformance-server
MODERN=2026-07-28
# Scenarios about the HTTP transport itself: through the bridge they would test the bridge.
HTTP_TRANSPORT_SCENARIOS="dns-rebinding-protection http-header-validation http-custom-header-server-validation server-session-lifecycle server-sse-polling"
# shellcheck source=.ci/lib.sh
. .ci/lib.sh

# ---- one scenario against one target -------------------------------------------------------------
run_one() {  # version column url row -> $OUT/<v>/<column>/<row>/result: status<TAB>seconds<TAB>summary
  local v=$1 column=$2 url=$3 row=$4 dir=$OUT/$1/$2/$4 start end rc
  local scenario=${row%@*} extra=()
  [ "$scenario" = "$row" ] || extra=(--spec-version "${row#*@}")
  rm -rf "$dir"
  mkdir -p "$dir"
  start=$(date +%s%N)
  [ ! -e "$OUT/$v/.has-timeout" ] || extra+=(--timeout "$TIMEOUT_MS")  # the suite's own limit (0.1.16 has none)
  timeout -k 5 $((TIMEOUT_MS / 1000 + 30)) "$NODE" "$(suite_main "$v")" server --url "$url" --scenario "$scenario" \
    "${extra[@]}" -o "$dir/suite" >"$dir/output.txt" 2>&1 </dev/null
  rc=$?
  end=$(date +%s%N)
  "$PY" - "$dir" "$rc" "$(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.1f", (b - a) / 1e9 }')" <<'EOF' >"$dir/result"
import glob, json, re, sys
d, rc, secs = sys.argv[1], int(sys.argv[2]), sys.argv[3]
out = re.sub(r"\x1b\[[0-9;]*m", "", open(f"{d}/output.txt", errors="replace").read())
checks = []
for path in glob.glob(f"{d}/suite/**/checks.json", recursive=True):
    try:
        checks += json.load(open(path))
    except Exception:
        pass
count = {k: sum(1 for c in checks if c.get("status") == k) for k in ("SUCCESS", "FAILURE", "WARNING", "SKIPPED")}
bad = [c for c in checks if c.get("status") in ("FAILURE", "WARNING")]
# Passing: the suite exits 0 and records no FAILURE and no WARNING. Nothing recorded but skips: skip.
if rc == 0 and not bad:
    status = "pass" if count["SUCCESS"] else "skip"
else:
    status = "fail"
parts = [f"{count['SUCCESS']} ok, {count['FAILURE']} failed, {count['WARNING']} warnings"]
for c in bad[:2]:
    parts.append(f"{c.get('status')} {c.get('id')}: {str(c.get('errorMessage') or c.get('description') or '')[:160]}")
if len(bad) > 2:
    parts.append(f"... {len(bad) - 2} more")
if rc in (124, 137):
    parts.append("killed by the outer timeout")
if not checks and rc != 0:
    tail = [l for l in out.strip().splitlines() if l.strip()][-2:]
    parts.append("no checks recorded: " + " | ".join(tail)[:200])
print("\t".join([status, secs, "; ".join(parts).replace("\t", " ").replace("\n", " ")]))
EOF
}

if [ "${1:-}" = "--run-one" ]; then  # internal: used for parallel runs
  NODE=$2; run_one "$3" "$4" "$5" "$6"; exit 0
fi

# ---- servers: the fixture, the gateway, the bridge; loopback only -------------------------------------
free_port() {
  "$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

PIDS=()
TMP=
cleanup() {
  local pid
  for pid in "${PIDS[@]}"; do  # each was started with setsid: its id is its process group's
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null
  done
  for pid in "${PIDS[@]}"; do
    for _ in 1 2 3 4 5 6 7 8 9 10; do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    kill -KILL -- "-$pid" 2>/dev/null || true
  done
  [ -z "$TMP" ] || rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

wait_until() {  # seconds pid description python-check...: poll until the check succeeds
  local secs=$1 pid=$2 what=$3 i
  shift 3
  for ((i = 0; i < secs * 5; i++)); do
    "$PY" -c "$@" 2>/dev/null && return 0
    kill -0 "$pid" 2>/dev/null || die "$what exited before it was ready"
    sleep 0.2
  done
  die "$what was not ready within $secs s"
}

start_fixture() {  # the fixture over streamable HTTP on 127.0.0.1:$FIXTURE_PORT
  FIXTURE_PORT=$(free_port)
  setsid "$PY" -m mcprelay.testing.fixture_server --http "127.0.0.1:$FIXTURE_PORT" >"$OUT/fixture.log" 2>&1 </dev/null &
  PIDS+=($!)
  wait_until 30 "$!" "the fixture server (log: $OUT/fixture.log)" "
import urllib.request
urllib.request.urlopen('http://127.0.0.1:$FIXTURE_PORT/health', timeout=2).read()"
}

write_gateway_config() {  # -> $TMP/gateway.json: one upstream, the fixture, under its own names
  local upstream
  if [ "$UPSTREAM" = http ]; then
    upstream="{\"url\": \"http://127.0.0.1:$FIXTURE_PORT/mcp\", \"protocol\": \"http\", \"prefix\": false}"
  else
    upstream="{\"command\": \"$VENV_BIN/python\", \"args\": [\"-m\", \"mcprelay.testing.fixture_server\", \"--stdio\"], \"prefix\": false}"
  fi
  printf '{"token_store": "memory", "mcpServers": {"fixture": %s}}\n' "$upstream" >"$TMP/gateway.json"
}

start_listen() {  # mcprelay serve --listen on 127.0.0.1:$LISTEN_PORT
  LISTEN_PORT=$(free_port)
  MCPRELAY_HEADLESS=1 setsid .venv/bin/mcprelay --config "$TMP/gateway.json" --home "$TMP/listen-home" \
    serve --listen "127.0.0.1:$LISTEN_PORT" >"$OUT/gateway.log" 2>&1 </dev/null &
  PIDS+=($!)
  # Ready when its REST API reports the upstream connected (its tools are listed then).
  wait_until 60 "$!" "mcprelay serve --listen (log: $OUT/gateway.log)" "
import json, sys, urllib.request
with urllib.request.urlopen('http://127.0.0.1:$LISTEN_PORT/api/v1/servers', timeout=2) as r:
    rows = json.load(r)['servers']
sys.exit(0 if rows and all(row['state'] == 'ready' for row in rows) else 1)"
}

start_bridge() {  # .ci/stdio_bridge.py on 127.0.0.1:$BRIDGE_PORT, one `serve --stdio` per session
  BRIDGE_PORT=$(free_port)
  mkdir -p "$OUT/stdio-children"
  MCPRELAY_HEADLESS=1 setsid "$PY" .ci/stdio_bridge.py --listen "127.0.0.1:$BRIDGE_PORT" --log "$OUT/bridge.log" \
    --child-logs "$OUT/stdio-children" -- "$VENV_BIN/mcprelay" --config "$TMP/gateway.json" \
    --home "$TMP/stdio-homes/{child}" serve --stdio >"$OUT/bridge.out" 2>&1 </dev/null &
  PIDS+=($!)
  wait_until 30 "$!" "the stdio bridge (log: $OUT/bridge.out)" "
import socket
socket.create_connection(('127.0.0.1', $BRIDGE_PORT), 1).close()"
}

column_on() { [[ " $COLUMNS " == *" $1 "* ]]; }

# ---- main -----------------------------------------------------------------------------------------
t0=$(date +%s)
[ -x .venv/bin/mcprelay ] || die ".venv/bin/mcprelay is missing: run ./run setup first"
VENV_BIN=$(cd .venv/bin && pwd)  # absolute, but not resolved: the venv's python is a symlink to the base one
case "$UPSTREAM" in stdio|http) ;; *) die "CONFORMANCE_SERVER_UPSTREAM must be stdio or http, not '$UPSTREAM'" ;; esac
for c in $COLUMNS; do
  case "$c" in direct|listen|stdio) ;; *) die "CONFORMANCE_SERVER_COLUMNS takes direct, listen and stdio, not '$c'" ;; esac
done
ensure_node
log "node $("$NODE" --version) ($NODE)"
rm -rf "$OUT"
mkdir -p "$OUT"
TMP=$(mktemp -d "${TMPDIR:-/tmp}/mcprelay-conformance-server.XXXXXX")

declare -a ALL=() TASKS=()
for v in $VERSIONS; do
  ensure_suite "$v" || die "cannot install @modelcontextprotocol/conformance@$v"
  list=$("$NODE" "$(suite_main "$v")" list --server 2>&1) || die "'conformance list' failed for $v: $list"
  mkdir -p "$OUT/$v"
  if "$NODE" "$(suite_main "$v")" server --help 2>/dev/null | grep -q -- '--timeout'; then touch "$OUT/$v/.has-timeout"; fi
  while read -r name tags; do
    rows=("$name")
    # A scenario for 2026-07-28 and earlier revisions: also at the 2026-07-28 wire.
    if [ "$WIRE_ROWS" = 1 ] && [[ $tags == *"$MODERN"* ]] && [[ $tags =~ 20(24|25)- ]]; then rows+=("$name@$MODERN"); fi
    for row in "${rows[@]}"; do
      match=0
      set -f  # the globs are scenario patterns, not file names
      for g in $SCENARIO_GLOBS; do
        # shellcheck disable=SC2053
        [[ $row == $g || ${row%@*} == $g ]] && match=1
      done
      set +f
      [ $match = 1 ] && ALL+=("$v $row")
    done
  done < <(printf '%s\n' "$list" | sed -n 's/^ *- \([^ ]*\) *\(.*\)$/\1 \2/p')
done
[ ${#ALL[@]} -gt 0 ] || die "no server scenario matches '$SCENARIO_GLOBS'"

start_fixture
write_gateway_config
column_on listen && start_listen
column_on stdio && start_bridge
log "fixture at http://127.0.0.1:$FIXTURE_PORT/mcp" \
  "${LISTEN_PORT:+; serve --listen at http://127.0.0.1:$LISTEN_PORT/mcp}" \
  "${BRIDGE_PORT:+; serve --stdio behind the bridge at http://127.0.0.1:$BRIDGE_PORT/mcp}" "(upstream over $UPSTREAM)"

for task in "${ALL[@]}"; do
  read -r v row <<<"$task"
  TASKS+=("$v direct http://127.0.0.1:$FIXTURE_PORT/mcp $row")
  column_on listen && TASKS+=("$v listen http://127.0.0.1:$LISTEN_PORT/mcp $row")
  if column_on stdio && [[ " $HTTP_TRANSPORT_SCENARIOS " != *" ${row%@*} "* ]]; then
    TASKS+=("$v stdio http://127.0.0.1:$BRIDGE_PORT/mcp $row")
  fi
done
log "${#ALL[@]} rows, ${#TASKS[@]} scenario runs, $JOBS at a time, timeout ${TIMEOUT_MS} ms each"
(  # a subshell, so that `wait` waits for the scenario runs and not for the servers
  running=0
  for task in "${TASKS[@]}"; do
    read -r v column url row <<<"$task"
    bash "$0" --run-one "$NODE" "$v" "$column" "$url" "$row" &
    running=$((running + 1))
    if [ "$running" -ge "$JOBS" ]; then wait -n; running=$((running - 1)); fi
  done
  wait
)
for pid in "${PIDS[@]}"; do kill -0 "$pid" 2>/dev/null || log "note: a server exited during the run (logs in $OUT/)"; done
cp "$TMP/listen-home/logs/upstreams/fixture.log" "$OUT/gateway-upstream.log" 2>/dev/null || true
cp "$TMP/listen-home/logs/mcprelay.log" "$OUT/gateway-diagnostic.log" 2>/dev/null || true
for home in "$TMP"/stdio-homes/*; do  # each `serve --stdio` child's own logs, beside its stderr
  [ -d "$home/logs" ] || continue
  n=$(basename "$home")
  cp "$home/logs/mcprelay.log" "$OUT/stdio-children/child-$n.diagnostic.log" 2>/dev/null || true
  cp "$home/logs/upstreams/fixture.log" "$OUT/stdio-children/child-$n.upstream.log" 2>/dev/null || true
done

# ---- verdict --------------------------------------------------------------------------------------------
printf '%s\n' "${ALL[@]}" >"$OUT/rows.txt"
"$PY" - "$OUT" "$BASELINE" "$COLUMNS" "$HTTP_TRANSPORT_SCENARIOS" "$(( $(date +%s) - t0 ))" <<'EOF'
import json, os, re, sys
out, baseline_path, columns, transport, elapsed = sys.argv[1], sys.argv[2], sys.argv[3].split(), set(sys.argv[4].split()), sys.argv[5]
GATEWAY = [c for c in ("listen", "stdio") if c in columns]

def result(v, column, row):
    try:
        status, secs, detail = open(f"{out}/{v}/{column}/{row}/result").read().rstrip("\n").split("\t", 2)
        return status, float(secs), detail
    except (OSError, ValueError):
        return "fail", 0.0, "no result recorded"

# Baseline: "<version|*> <row> [direct|listen|stdio] # reason"; no column means every gateway column.
entries = []
for line in open(baseline_path) if os.path.exists(baseline_path) else []:
    body, _, reason = line.partition("#")
    words = body.split()
    if len(words) >= 2:
        entries.append((words[0], words[1], words[2] if len(words) > 2 else None, reason.strip() or "baselined"))

def baselined(v, row, column):
    for ver, name, col, reason in entries:
        if ver in (v, "*") and name == row and (col == column or (col is None and column != "direct")):
            return reason
    return None

rows = [line.split(" ", 1) for line in open(f"{out}/rows.txt").read().splitlines()]
table, md, failures, candidates, notes = [], [], [], [], []
counts = {"ok": 0, "FAIL": 0, "XFAIL": 0, "n/a": 0, "skip": 0}
for v, row in rows:
    scenario = row.split("@")[0]
    d = result(v, "direct", row)
    cells = {"direct": d}
    for c in GATEWAY:
        cells[c] = ("n/a", 0.0, "tests the HTTP transport (here: the bridge)") if c == "stdio" and scenario in transport else result(v, c, row)
    problems, expected, note = [], [], []
    if d[0] == "fail":
        reason = baselined(v, row, "direct")
        if reason:
            expected.append("direct")
            note.append(f"fails directly (baseline: {reason})")
        else:
            problems.append("direct")
            note.append(f"fails directly: {d[2]}")
            candidates.append(f"{v} {row} direct # {d[2][:200]}")
    for c in GATEWAY:
        status, secs, detail = cells[c]
        reason = baselined(v, row, c)
        if d[0] != "fail" and status == "fail":
            if reason:
                expected.append(c)
                note.append(f"{c}: baseline: {reason}")
            else:
                problems.append(c)
                note.append(f"{c}: {detail}")
                failures.append((v, row, c))
                candidates.append(f"{v} {row} {c} # {detail[:200]}")
        elif d[0] == "fail" and status != "fail" and status != "n/a":
            note.append(f"passes through {c} only")
    if problems:
        verdict = "FAIL"
    elif expected:
        verdict = "XFAIL"
    elif d[0] == "skip" and all(cells[c][0] in ("skip", "n/a") for c in GATEWAY):
        verdict = "skip"
    else:
        verdict = "ok"
    counts[verdict] += 1
    for ver, name, col, reason in entries:  # an entry for a column that no longer fails can go
        if ver in (v, "*") and name == row:
            for c in [col] if col else GATEWAY:
                if c in cells and cells[c][0] not in ("fail", "n/a") and not (c != "direct" and d[0] == "fail"):
                    note.append(f"baselined for {c} but not failing there: remove the entry? ({reason})")
    times = "/".join(f"{cells[c][1]:.1f}" for c in ["direct", *GATEWAY])
    table.append(f"{v:<15} {row:<54} {d[0]:<6} " + " ".join(f"{cells[c][0]:<6}" for c in GATEWAY)
                 + f" {verdict:<6} {times:>14}s  {'; '.join(note)}")
    md.append(f"| {v} | {row} | {d[0]} | " + " | ".join(cells[c][0] for c in GATEWAY) + f" | {verdict} | "
              + "; ".join(note).replace("|", "\\|") + " |")

print()
print(f"{'version':<15} {'row':<54} {'direct':<6} " + " ".join(f"{c:<6}" for c in GATEWAY) + f" {'result':<6} {'seconds':>15}  notes")
print("\n".join(table))
print()
summary = (f"{len(rows)} rows: {counts['ok']} ok, {counts['XFAIL']} expected failures (baselined), {counts['skip']} skipped by the suite, "
           f"{counts['FAIL']} FAIL (" + ", ".join(f"{c} {sum(1 for f in failures if f[2] == c)}" for c in GATEWAY)
           + f", direct {sum(1 for line in candidates if line.split()[2] == 'direct')}); {elapsed} s")
print(f"conformance-server: {summary}")
with open(f"{out}/summary.md", "w") as f:
    f.write("| version | row | direct | " + " | ".join(GATEWAY) + " | result | notes |\n")
    f.write("| --- | --- | --- | " + " | ".join("---" for _ in GATEWAY) + " | --- | --- |\n")
    f.write("\n".join(md) + f"\n\n{summary}\n")
with open(f"{out}/baseline-candidate.txt", "w") as f:
    f.write("# Every unexpected failure of this run, in the baseline's format (reason: the first failing check).\n")
    f.write("\n".join(candidates) + "\n")
with open(f"{out}/failures.md", "w") as f:
    for v, row, c in failures:
        f.write(f"## {v} {row} — {c}\n\n")
        for path in sorted(__import__("glob").glob(f"{out}/{v}/{c}/{row}/suite/**/checks.json", recursive=True)):
            for check in json.load(open(path)):
                if check.get("status") in ("FAILURE", "WARNING"):
                    f.write(f"- {check['status']} `{check.get('id')}`: {check.get('errorMessage') or check.get('description')}\n")
                    details = check.get("details")
                    if details:
                        f.write(f"  - details: `{json.dumps(details)[:1500]}`\n")
        f.write(f"\nlogs: {out}/{v}/{c}/{row}/\n\n")
sys.exit(1 if counts["FAIL"] else 0)
EOF
rc=$?
if [ "$rc" -ne 0 ]; then
  log "FAILED: see the rows marked FAIL; every failing check is in $OUT/failures.md," \
    "and $OUT/baseline-candidate.txt has them in the baseline's format"
  exit 1
fi
exit 0
