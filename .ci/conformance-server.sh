#!/usr/bin/env bash
# The official MCP conformance suite's *server* scenarios against mcprelay's fixture MCP server
# (python -m mcprelay.testing.fixture_server), in three columns per suite version:
#
#   direct   the fixture itself, over streamable HTTP;
#   listen   `mcprelay serve --listen` in front of it (the gateway spawns the fixture over stdio);
#   bridge   the fixture over stdio, reached through .ci/stdio_bridge.py (the suite only speaks HTTP;
#            the bridge starts one stdio process per handshake session, and shared ones for
#            2026-07-28 stateless requests): the control for the stdio column;
#   stdio    `mcprelay serve --stdio` in front of the fixture, through the same bridge.
#
# Called by `./run test` from the repo root; see docs/CONFORMANCE.md ("Server scenarios").
# Scenarios that apply to 2026-07-28 as well as to earlier revisions (tools-list, prompts-get-*, ...)
# run a second time at the 2026-07-28 wire (`--spec-version 2026-07-28`, rows named SCENARIO@2026-07-28);
# by default the suite runs them at 2025-11-25.
#
# Verdict, check by check: listen is compared with direct, stdio with bridge (same transport on both
# sides). A gateway column fails a row when it has a failing check (FAILURE or WARNING) that its control
# run does not have. The script exits non-zero when a row fails through the gateway, or when a control
# column (direct, bridge) fails, unless .ci/conformance-server-baseline.txt lists that version, row and
# column with a reason (or when the servers or the suite cannot be installed or started). Scenarios that
# test the HTTP transport itself (DNS rebinding, header validation, session termination, resumable SSE)
# are not run through the bridge: there the HTTP side is test harness, so bridge and stdio show n/a.
#
# Environment:
#   CONFORMANCE_VERSIONS            suite versions, space or comma separated (default: 0.1.16 0.2.0-alpha.12)
#   CONFORMANCE_SERVER_SCENARIOS    scenario names or globs (default: every server scenario of the version);
#                                   a glob also matches the @2026-07-28 rows of the scenarios it names
#   CONFORMANCE_SERVER_COLUMNS      columns to run (default: direct listen bridge stdio; direct always runs,
#                                   and stdio brings bridge along)
#   CONFORMANCE_SERVER_WIRE_ROWS    1 (default) adds the SCENARIO@2026-07-28 rows; 0 leaves them out
#   CONFORMANCE_SERVER_UPSTREAM     how the gateways reach the fixture: stdio (default; each gateway spawns
#                                   its own) or http (the direct column's instance)
#   CONFORMANCE_JOBS                scenario runs at once (default: 2)
#   CONFORMANCE_TIMEOUT_MS          the suite's per-scenario timeout (default: 30000)
#   CONFORMANCE_NODE, CONFORMANCE_NODE_SOURCE   as for .ci/conformance.sh
# Installs (cached, gitignored): .ci/node/ and .ci/npm/<version>/ (shared with .ci/conformance.sh).
# Logs: .ci/out/server/ — fixture.log, gateway.log, gateway-upstream.log, gateway-diagnostic.log,
# bridge.log and bridge-children/ (the control bridge: each fixture child's stderr), stdio-bridge.log and
# stdio-bridge-children/ (each `serve --stdio` child: stderr, diagnostic log, upstream stderr),
# summary.md, failures.md (every failing check of every gateway-only failure), baseline-candidate.txt,
# and <version>/<direct|listen|stdio>/<row>/{output.txt,suite/**/checks.json,result}.
set -uo pipefail
cd "$(dirname "$0")/.."

DEFAULT_VERSIONS="0.1.16 0.2.0-alpha.12"
VERSIONS=${CONFORMANCE_VERSIONS:-$DEFAULT_VERSIONS}
VERSIONS=${VERSIONS//,/ }
SCENARIO_GLOBS=${CONFORMANCE_SERVER_SCENARIOS:-*}
COLUMNS=${CONFORMANCE_SERVER_COLUMNS:-direct listen bridge stdio}
COLUMNS=" ${COLUMNS//,/ } direct "
[[ $COLUMNS != *" stdio "* ]] || COLUMNS="$COLUMNS bridge "
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

# ---- scenario runs: one scenario, or a whole batch of them in one node process -----------------------
run_one() {  # version column url row -> $OUT/<v>/<column>/<row>/{output.txt,suite/,result}
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
  "$PY" .ci/conformance_server_results.py row "$dir" "$rc" "$(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.3f", (b - a) / 1e9 }')"
}

run_batch() {  # version column url wire -> every scenario applicable at that wire, in one node process
  local v=$1 column=$2 url=$3 wire=$4 dir=$OUT/$1/$2/.batch-$4 extra=() limit
  rm -rf "$dir"
  mkdir -p "$dir"
  [ ! -e "$OUT/$v/.has-timeout" ] || extra+=(--timeout "$TIMEOUT_MS")
  limit=$(( $(wc -l <"$OUT/$v/batch-$wire.txt") * (TIMEOUT_MS / 1000 + 5) + 60 ))
  timeout -k 5 "$limit" "$NODE" "$(suite_main "$v")" server --url "$url" --suite all --spec-version "$wire" \
    "${extra[@]}" -o "$dir/suite" >"$dir/output.txt" 2>&1 </dev/null
  echo $? >"$dir/rc"
  "$PY" .ci/conformance_server_results.py split "$dir" "$OUT/$v/$column" "$wire" "$OUT/$v/batch-$wire.txt" \
    "$(date +%s.%N)"
}

if [ "${1:-}" = "--run" ]; then  # internal: one task of the parallel runs
  NODE=$2
  shift 2
  case "$1" in
    one) run_one "$2" "$3" "$4" "$5" ;;
    batch) run_batch "$2" "$3" "$4" "$5" ;;
  esac
  exit 0
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
  for pid in "${PIDS[@]}"; do  # 5 s each: `serve --listen` takes about 2.5 s to stop on SIGTERM
    for _ in $(seq 25); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
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
  # owner_only false: the conformance suite cannot send the owner key (Authorization: Bearer …) that a
  # loopback serve --listen otherwise requires. Only here, in a throwaway home, on a port that lives for
  # this run (serve --stdio, behind the bridge, has no listener and is not affected).
  printf '{"token_store": "memory", "owner_only": false, "mcpServers": {"fixture": %s}}\n' "$upstream" \
    >"$TMP/gateway.json"
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

start_bridge() {  # name port-variable command...: .ci/stdio_bridge.py on a free port in front of `command`;
  # logs: $OUT/<name>.log (the bridge's), $OUT/<name>-children/ (each child's stderr)
  local name=$1 var=$2 port
  shift 2
  port=$(free_port)
  printf -v "$var" '%s' "$port"
  mkdir -p "$OUT/$name-children"
  MCPRELAY_HEADLESS=1 setsid "$PY" .ci/stdio_bridge.py --listen "127.0.0.1:$port" --log "$OUT/$name.log" \
    --child-logs "$OUT/$name-children" -- "$@" >"$OUT/$name.out" 2>&1 </dev/null &
  PIDS+=($!)
  wait_until 30 "$!" "the bridge $name (log: $OUT/$name.out)" "
import socket
socket.create_connection(('127.0.0.1', $port), 1).close()"
}

column_on() { [[ $COLUMNS == *" $1 "* ]]; }

# ---- main -----------------------------------------------------------------------------------------
t0=$(date +%s)
[ -x .venv/bin/mcprelay ] || die ".venv/bin/mcprelay is missing: run ./run setup first"
VENV_BIN=$(cd .venv/bin && pwd)  # absolute, but not resolved: the venv's python is a symlink to the base one
case "$UPSTREAM" in stdio|http) ;; *) die "CONFORMANCE_SERVER_UPSTREAM must be stdio or http, not '$UPSTREAM'" ;; esac
for c in $COLUMNS; do
  case "$c" in direct|listen|bridge|stdio) ;; *) die "CONFORMANCE_SERVER_COLUMNS takes direct, listen, bridge and stdio, not '$c'" ;; esac
done
ensure_node
log "node $("$NODE" --version) ($NODE)"
# Node 22 keeps compiled code here between its ~400 processes: about a quarter of each start-up.
export NODE_COMPILE_CACHE=${NODE_COMPILE_CACHE:-$PWD/.ci/node/compile-cache}
rm -rf "$OUT"
mkdir -p "$OUT"
TMP=$(mktemp -d "${TMPDIR:-/tmp}/mcprelay-conformance-server.XXXXXX")

declare -a ALL=() TASKS=() SINGLE=() BATCHES=()
[ "$SCENARIO_GLOBS" = "*" ] && BATCH=${CONFORMANCE_SERVER_BATCH:-1} || BATCH=0
for v in $VERSIONS; do
  ensure_suite "$v" || die "cannot install @modelcontextprotocol/conformance@$v"
  list=$("$NODE" "$(suite_main "$v")" list --server 2>&1) || die "'conformance list' failed for $v: $list"
  mkdir -p "$OUT/$v"
  if "$NODE" "$(suite_main "$v")" server --help 2>/dev/null | grep -q -- '--timeout'; then touch "$OUT/$v/.has-timeout"; fi
  while read -r name tags; do
    # The row's wire: extension scenarios have none (they run alone, as the suite decides); a scenario
    # for 2026-07-28 only runs at 2026-07-28; any other at 2025-11-25, the suite's default, and, when it
    # is for 2026-07-28 too, again at 2026-07-28 as the row NAME@2026-07-28.
    rows=()
    if [[ $tags == *extension* ]]; then
      rows+=("$name:")
    elif [[ $tags =~ 20(24|25)- ]]; then
      rows+=("$name:2025-11-25")
      if [ "$WIRE_ROWS" = 1 ] && [[ $tags == *"$MODERN"* ]]; then rows+=("$name@$MODERN:$MODERN"); fi
    else
      rows+=("$name:$MODERN")
    fi
    for entry in "${rows[@]}"; do
      row=${entry%:*} wire=${entry##*:}
      match=0
      set -f  # the globs are scenario patterns, not file names
      for g in $SCENARIO_GLOBS; do
        # shellcheck disable=SC2053
        [[ $row == $g || ${row%@*} == $g ]] && match=1
      done
      set +f
      [ $match = 1 ] || continue
      ALL+=("$v $row")
      if [ "$BATCH" = 1 ] && [ -n "$wire" ]; then
        echo "$row" >>"$OUT/$v/batch-$wire.txt"
      else
        SINGLE+=("$v $row")
      fi
    done
  done < <(printf '%s\n' "$list" | sed -n 's/^ *- \([^ ]*\) *\(.*\)$/\1 \2/p')
  for wire in 2025-11-25 "$MODERN"; do
    [ ! -s "$OUT/$v/batch-$wire.txt" ] || BATCHES+=("$v $wire")
  done
done
[ ${#ALL[@]} -gt 0 ] || die "no server scenario matches '$SCENARIO_GLOBS'"

start_fixture
write_gateway_config
column_on listen && start_listen
column_on bridge && start_bridge bridge BRIDGE_PORT "$VENV_BIN/python" -m mcprelay.testing.fixture_server --stdio
column_on stdio && start_bridge stdio-bridge STDIO_PORT "$VENV_BIN/mcprelay" --config "$TMP/gateway.json" \
  --home "$TMP/stdio-homes/{child}" serve --stdio
log "fixture at http://127.0.0.1:$FIXTURE_PORT/mcp" \
  "${LISTEN_PORT:+; serve --listen at http://127.0.0.1:$LISTEN_PORT/mcp}" \
  "${BRIDGE_PORT:+; the fixture over stdio behind the bridge at http://127.0.0.1:$BRIDGE_PORT/mcp}" \
  "${STDIO_PORT:+; serve --stdio behind the bridge at http://127.0.0.1:$STDIO_PORT/mcp}" "(upstream over $UPSTREAM)"

url_of() {  # column -> its MCP endpoint
  case "$1" in
    direct) echo "http://127.0.0.1:$FIXTURE_PORT/mcp" ;;
    listen) echo "http://127.0.0.1:$LISTEN_PORT/mcp" ;;
    bridge) echo "http://127.0.0.1:$BRIDGE_PORT/mcp" ;;
    stdio) echo "http://127.0.0.1:$STDIO_PORT/mcp" ;;
  esac
}
through_bridge() { [[ " $HTTP_TRANSPORT_SCENARIOS " != *" ${1%@*} "* ]]; }
# The longest first (stdio, then the bridge: a process per session), the single scenarios last.
for column in stdio bridge listen direct; do
  column_on "$column" || continue
  for batch in "${BATCHES[@]}"; do
    read -r v wire <<<"$batch"
    TASKS+=("batch $v $column $(url_of "$column") $wire")
  done
done
for single in "${SINGLE[@]}"; do
  read -r v row <<<"$single"
  for column in stdio bridge listen direct; do
    column_on "$column" || continue
    if [ "$column" = stdio ] || [ "$column" = bridge ]; then through_bridge "$row" || continue; fi
    TASKS+=("one $v $column $(url_of "$column") $row")
  done
done
log "${#ALL[@]} rows; ${#TASKS[@]} suite runs (${#BATCHES[@]} batch(es) per column, ${#SINGLE[@]} single scenario(s));" \
  "$JOBS at a time, timeout ${TIMEOUT_MS} ms a scenario"
(  # a subshell, so that `wait` waits for the scenario runs and not for the servers
  running=0
  for task in "${TASKS[@]}"; do
    # shellcheck disable=SC2086
    bash "$0" --run "$NODE" $task &
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
  cp "$home/logs/mcprelay.log" "$OUT/stdio-bridge-children/child-$n.diagnostic.log" 2>/dev/null || true
  cp "$home/logs/upstreams/fixture.log" "$OUT/stdio-bridge-children/child-$n.upstream.log" 2>/dev/null || true
done

# ---- verdict --------------------------------------------------------------------------------------------
printf '%s\n' "${ALL[@]}" >"$OUT/rows.txt"
"$PY" .ci/conformance_server_verdict.py "$OUT" "$BASELINE" "$COLUMNS" "$HTTP_TRANSPORT_SCENARIOS" "$(( $(date +%s) - t0 ))"
rc=$?
if [ "$rc" -ne 0 ]; then
  log "FAILED: see the rows marked FAIL; every failing check is in $OUT/failures.md," \
    "and $OUT/baseline-candidate.txt has them in the baseline's format"
  exit 1
fi
exit 0
