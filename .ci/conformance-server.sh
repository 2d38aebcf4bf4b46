#!/usr/bin/env bash
# The official MCP conformance suite's *server* scenarios, run twice: against the reference server
# npm @modelcontextprotocol/server-everything directly, and through `mcprelay serve` placed in front
# of it. Called by `./run test` from the repo root; see docs/CONFORMANCE.md ("Server scenarios").
#
# The verdict compares the two columns: a scenario that passes directly must pass through the
# gateway too. It exits non-zero when one does not and .ci/conformance-server-baseline.txt does not
# list it for that suite version (or when the servers or the suite cannot be installed or started).
# Scenarios that fail directly (server-everything lacks most of the suite's fixtures) are shown but
# decide nothing.
#
# Environment:
#   CONFORMANCE_VERSIONS            suite versions, space or comma separated (default: 0.1.16 0.2.0-alpha.12)
#   CONFORMANCE_SERVER_SCENARIOS    scenario names or globs (default: every server scenario of the version)
#   CONFORMANCE_SERVER_UPSTREAM     how the gateway reaches server-everything: stdio (default; the gateway
#                                   spawns it) or http (the same streamable HTTP instance the direct runs use)
#   CONFORMANCE_JOBS                scenario runs at once (default: 2)
#   CONFORMANCE_TIMEOUT_MS          the suite's per-scenario timeout (default: 30000)
#   CONFORMANCE_NODE, CONFORMANCE_NODE_SOURCE   as for .ci/conformance.sh
# Installs (cached, gitignored): .ci/node/, .ci/npm/<version>/ (shared with .ci/conformance.sh) and
# .ci/npm/server-everything-<version>/.
# Logs: .ci/out/server/ (everything.log, gateway.log, gateway-upstream.log, summary.md and
# <version>/<direct|gateway>/<scenario>/{output.txt,suite/**/checks.json,result}).
set -uo pipefail
cd "$(dirname "$0")/.."

EVERYTHING_VERSION=2026.8.31    # npm @modelcontextprotocol/server-everything, pinned exactly
DEFAULT_VERSIONS="0.1.16 0.2.0-alpha.12"
VERSIONS=${CONFORMANCE_VERSIONS:-$DEFAULT_VERSIONS}
VERSIONS=${VERSIONS//,/ }
SCENARIO_GLOBS=${CONFORMANCE_SERVER_SCENARIOS:-*}
UPSTREAM=${CONFORMANCE_SERVER_UPSTREAM:-stdio}
JOBS=${CONFORMANCE_JOBS:-2}
TIMEOUT_MS=${CONFORMANCE_TIMEOUT_MS:-30000}
BASELINE=.ci/conformance-server-baseline.txt
OUT=.ci/out/server
LOG_PREFIX=conformance-server
EVERYTHING_DIR=.ci/npm/server-everything-$EVERYTHING_VERSION
EVERYTHING_MAIN=$EVERYTHING_DIR/node_modules/@modelcontextprotocol/server-everything/dist/index.js
# shellcheck source=.ci/lib.sh
. .ci/lib.sh

# ---- one scenario against one target -------------------------------------------------------------
run_one() {  # version target url scenario -> $OUT/<v>/<target>/<s>/result: status<TAB>seconds<TAB>summary
  local v=$1 target=$2 url=$3 s=$4 dir=$OUT/$1/$2/$4 start end rc
  rm -rf "$dir"
  mkdir -p "$dir"
  start=$(date +%s%N)
  local limit=()  # the suite's own per-scenario timeout, where the version has one (0.1.16 has not)
  [ ! -e "$OUT/$v/.has-timeout" ] || limit=(--timeout "$TIMEOUT_MS")
  timeout -k 5 $((TIMEOUT_MS / 1000 + 30)) "$NODE" "$(suite_main "$v")" server --url "$url" --scenario "$s" \
    "${limit[@]}" -o "$dir/suite" >"$dir/output.txt" 2>&1 </dev/null
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
    parts.append(f"{c.get('status')} {c.get('id')}: {str(c.get('errorMessage') or c.get('description') or '')[:140]}")
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

# ---- servers: server-everything and the gateway, loopback only -----------------------------------
ensure_everything() {
  npm_install_pinned "$EVERYTHING_DIR" @modelcontextprotocol/server-everything "$EVERYTHING_VERSION" \
    && [ -f "$EVERYTHING_MAIN" ]
}

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

start_everything() {  # starts server-everything over streamable HTTP on 127.0.0.1:$EVERYTHING_PORT
  # server-everything listens on every interface (express app.listen(PORT)); this preload makes a
  # listen() without a host bind 127.0.0.1 instead.
  cat >"$TMP/loopback.mjs" <<'EOF'
import net from "node:net";
const listen = net.Server.prototype.listen;
net.Server.prototype.listen = function (...args) {
  if (typeof args[0] === "number" || (typeof args[0] === "string" && /^\d+$/.test(args[0]))) {
    if (typeof args[1] !== "string") args.splice(1, 0, "127.0.0.1");
  } else if (args[0] && typeof args[0] === "object" && args[0].path === undefined && !args[0].host) {
    args[0] = { ...args[0], host: "127.0.0.1" };
  }
  return listen.apply(this, args);
};
EOF
  EVERYTHING_PORT=$(free_port)
  PORT=$EVERYTHING_PORT setsid "$NODE" --import "$TMP/loopback.mjs" "$EVERYTHING_MAIN" streamableHttp \
    >"$OUT/everything.log" 2>&1 </dev/null &
  PIDS+=($!)
  wait_until 30 "$!" "server-everything (log: $OUT/everything.log)" \
    "import socket; socket.create_connection(('127.0.0.1', $EVERYTHING_PORT), 1).close()"
}

start_gateway() {  # starts mcprelay serve on 127.0.0.1:$GATEWAY_PORT in front of server-everything
  local upstream
  if [ "$UPSTREAM" = http ]; then
    upstream="{\"url\": \"http://127.0.0.1:$EVERYTHING_PORT/mcp\", \"protocol\": \"http\"}"
  else
    upstream="{\"command\": \"$(realpath "$NODE")\", \"args\": [\"$(realpath "$EVERYTHING_MAIN")\", \"stdio\"]}"
  fi
  printf '{"token_store": "memory", "mcpServers": {"everything": %s}}\n' "$upstream" >"$TMP/config.json"
  GATEWAY_PORT=$(free_port)
  MCPRELAY_HEADLESS=1 setsid .venv/bin/mcprelay --config "$TMP/config.json" --home "$TMP/home" \
    serve --listen "127.0.0.1:$GATEWAY_PORT" >"$OUT/gateway.log" 2>&1 </dev/null &
  PIDS+=($!)
  # Ready when its REST API reports the upstream connected (its tools are listed then).
  wait_until 60 "$!" "mcprelay serve (log: $OUT/gateway.log)" "
import json, sys, urllib.request
with urllib.request.urlopen('http://127.0.0.1:$GATEWAY_PORT/api/v1/servers', timeout=2) as r:
    rows = json.load(r)['servers']
sys.exit(0 if rows and all(row['state'] == 'ready' for row in rows) else 1)"
}

# ---- main -----------------------------------------------------------------------------------------
t0=$(date +%s)
[ -x .venv/bin/mcprelay ] || die ".venv/bin/mcprelay is missing: run ./run setup first"
case "$UPSTREAM" in stdio|http) ;; *) die "CONFORMANCE_SERVER_UPSTREAM must be stdio or http, not '$UPSTREAM'" ;; esac
ensure_node
log "node $("$NODE" --version) ($NODE)"
ensure_everything || die "cannot install @modelcontextprotocol/server-everything@$EVERYTHING_VERSION"
rm -rf "$OUT"
mkdir -p "$OUT"
TMP=$(mktemp -d "${TMPDIR:-/tmp}/mcprelay-conformance-server.XXXXXX")

declare -a ALL=() TASKS=()
for v in $VERSIONS; do
  ensure_suite "$v" || die "cannot install @modelcontextprotocol/conformance@$v"
  list=$("$NODE" "$(suite_main "$v")" list --server 2>&1) || die "'conformance list' failed for $v: $list"
  mkdir -p "$OUT/$v"
  if "$NODE" "$(suite_main "$v")" server --help 2>/dev/null | grep -q -- '--timeout'; then touch "$OUT/$v/.has-timeout"; fi
  while read -r name _tags; do
    match=0
    set -f  # the globs are scenario patterns, not file names
    for g in $SCENARIO_GLOBS; do
      # shellcheck disable=SC2053
      [[ $name == $g ]] && match=1
    done
    set +f
    [ $match = 1 ] || continue
    ALL+=("$v $name")
  done < <(printf '%s\n' "$list" | sed -n 's/^ *- \([^ ]*\) *\(.*\)$/\1 \2/p')
done
[ ${#ALL[@]} -gt 0 ] || die "no server scenario matches '$SCENARIO_GLOBS'"

start_everything
start_gateway
log "server-everything $EVERYTHING_VERSION at http://127.0.0.1:$EVERYTHING_PORT/mcp;" \
  "gateway at http://127.0.0.1:$GATEWAY_PORT/mcp (upstream over $UPSTREAM)"

for task in "${ALL[@]}"; do
  read -r v s <<<"$task"
  TASKS+=("$v direct http://127.0.0.1:$EVERYTHING_PORT/mcp $s" "$v gateway http://127.0.0.1:$GATEWAY_PORT/mcp $s")
done
log "${#TASKS[@]} scenario runs, $JOBS at a time, timeout ${TIMEOUT_MS} ms each"
(  # a subshell, so that `wait` waits for the scenario runs and not for the servers
  running=0
  for task in "${TASKS[@]}"; do
    read -r v target url s <<<"$task"
    bash "$0" --run-one "$NODE" "$v" "$target" "$url" "$s" &
    running=$((running + 1))
    if [ "$running" -ge "$JOBS" ]; then wait -n; running=$((running - 1)); fi
  done
  wait
)
for pid in "${PIDS[@]}"; do kill -0 "$pid" 2>/dev/null || log "note: a server exited during the run (logs in $OUT/)"; done
cp "$TMP/home/logs/upstreams/everything.log" "$OUT/gateway-upstream.log" 2>/dev/null || true
cp "$TMP/home/logs/mcprelay.log" "$OUT/gateway-diagnostic.log" 2>/dev/null || true

# ---- results ----------------------------------------------------------------------------------------
result_of() {  # version target scenario -> "status<TAB>secs<TAB>detail"
  local f=$OUT/$1/$2/$3/result
  if [ -s "$f" ]; then cat "$f"; else printf 'fail\t0\tno result recorded\n'; fi
}
regressions=0 same=0 both_fail=0 gateway_only=0 skipped=0 xfail=0 xpass=0
rows=() md=()
for task in "${ALL[@]}"; do
  read -r v s <<<"$task"
  IFS=$'\t' read -r dst dsecs ddetail < <(result_of "$v" direct "$s")
  IFS=$'\t' read -r gst gsecs gdetail < <(result_of "$v" gateway "$s")
  reason=$(baseline_reason "$v" "$s")
  note=""
  if [ "$dst" != fail ] && [ "$gst" = fail ]; then
    if [ -n "$reason" ]; then
      verdict=XFAIL; xfail=$((xfail + 1)); note="baseline: $reason | gateway: $gdetail"
    else
      verdict=FAIL; regressions=$((regressions + 1))
      note="passes directly, not through the gateway: $gdetail (logs: $OUT/$v/gateway/$s/)"
    fi
  elif [ "$dst" = fail ] && [ "$gst" = fail ]; then
    verdict=n/a; both_fail=$((both_fail + 1)); note="fails directly too: $ddetail"
  elif [ "$dst" = fail ]; then
    verdict=ok; gateway_only=$((gateway_only + 1)); note="passes only through the gateway (direct: $ddetail)"
  elif [ "$dst" = skip ] && [ "$gst" = skip ]; then
    verdict=skip; skipped=$((skipped + 1)); note="the suite skipped every check both ways"
  else
    verdict=ok; same=$((same + 1))
  fi
  if [ -n "$reason" ] && [ "$verdict" != XFAIL ]; then
    xpass=$((xpass + 1)); note="baselined but not failing (remove the entry?): $reason${note:+ | $note}"
  fi
  rows+=("$(printf '%-15s %-46s %-7s %-7s %-6s %5ss  %s' "$v" "$s" "$dst" "$gst" "$verdict" "$gsecs" "$note")")
  md+=("| $v | $s | $dst | $gst | $verdict | ${note//|/\\|} |")
done

echo
printf '%-15s %-46s %-7s %-7s %-6s %6s  %s\n' version scenario direct gateway result time notes
printf '%s\n' "${rows[@]}"
echo
elapsed=$(( $(date +%s) - t0 ))
summary="${#ALL[@]} scenarios: ${same} pass both ways, ${gateway_only} pass only through the gateway, ${both_fail} fail both ways (n/a), ${skipped} skipped by the suite, ${regressions} fail only through the gateway, ${xfail} of those baselined; ${elapsed} s"
echo "$LOG_PREFIX: $summary"
{
  echo "| version | scenario | direct | gateway | result | notes |"
  echo "| --- | --- | --- | --- | --- | --- |"
  printf '%s\n' "${md[@]}"
  echo
  echo "$summary"
} >"$OUT/summary.md"
[ "$xpass" -eq 0 ] || log "note: $xpass baselined scenario(s) did not fail through the gateway; see the notes"
if [ "$regressions" -gt 0 ]; then
  log "FAILED: $regressions scenario(s) pass against server-everything but fail through the gateway"
  exit 1
fi
exit 0
