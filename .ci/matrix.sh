#!/usr/bin/env bash
# The client × upstream matrix (docs/MATRIX.md): real MCP clients in front of real upstreams, each cell
# run directly and through `mcprelay serve --stdio` and `serve --listen`. Called by `./run test` from
# the repo root. Installs what it needs, pinned exactly and cached in the checkout (gitignored):
#   .ci/node/                                  Node 22 (shared with the conformance scripts)
#   .ci/npm/server-everything-<version>/       the stdio upstream (shared with conformance-server.sh)
#   .ci/npm/sdk-<version>/                     the TypeScript SDK client
#   .ci/npm/inspector-<version>/               the MCP Inspector CLI (needs Node >= 22.19)
#   .ci/venvs/fastmcp-<version>/               fastmcp (client and the FastMCP upstream), its own venv
# then runs tests/matrix/run.py, which prints the matrix, writes .ci/out/matrix/ and docs/MATRIX.md,
# and exits non-zero when a feature passes directly but fails through the gateway.
#
# Environment (see docs/MATRIX.md): MATRIX_MODE=enforce (default) | report (never fail) | off (skip);
# MATRIX_CLIENTS, MATRIX_UPSTREAMS, MATRIX_MODES, MATRIX_JOBS, MATRIX_CELL_TIMEOUT, MATRIX_FEATURE_TIMEOUT;
# CONFORMANCE_NODE, CONFORMANCE_NODE_SOURCE as for .ci/conformance.sh.
set -uo pipefail
cd "$(dirname "$0")/.."

EVERYTHING_VERSION=2026.8.31    # npm @modelcontextprotocol/server-everything
TS_SDK_VERSION=1.32.2           # npm @modelcontextprotocol/sdk
INSPECTOR_VERSION=2.12.0        # npm @modelcontextprotocol/inspector
FASTMCP_VERSION=4.2.3           # PyPI fastmcp
LOG_PREFIX=matrix
MODE=${MATRIX_MODE:-enforce}
# shellcheck source=.ci/lib.sh
. .ci/lib.sh

case "$MODE" in
  off) log "MATRIX_MODE=off: skipped"; exit 0 ;;
  enforce|report) ;;
  *) die "MATRIX_MODE must be enforce, report or off, not '$MODE'" ;;
esac
[ -x .venv/bin/mcprelay ] || die ".venv/bin/mcprelay is missing: run ./run setup first"

ensure_node
log "node $("$NODE" --version) ($NODE)"
NODE=$(realpath "$NODE")
# npm and the packages' install scripts run on this Node too (the Inspector refuses Node < 22.19).
export PATH="$(dirname "$NODE"):$PATH"

EVERYTHING_DIR=.ci/npm/server-everything-$EVERYTHING_VERSION
TS_SDK_DIR=.ci/npm/sdk-$TS_SDK_VERSION
INSPECTOR_DIR=.ci/npm/inspector-$INSPECTOR_VERSION
npm_install_pinned "$EVERYTHING_DIR" @modelcontextprotocol/server-everything "$EVERYTHING_VERSION" \
  || die "cannot install @modelcontextprotocol/server-everything@$EVERYTHING_VERSION"
npm_install_pinned "$TS_SDK_DIR" @modelcontextprotocol/sdk "$TS_SDK_VERSION" \
  || die "cannot install @modelcontextprotocol/sdk@$TS_SDK_VERSION"
npm_install_pinned "$INSPECTOR_DIR" @modelcontextprotocol/inspector "$INSPECTOR_VERSION" \
  || die "cannot install @modelcontextprotocol/inspector@$INSPECTOR_VERSION"

# fastmcp pins its own dependency ranges; a venv of its own keeps them out of the project's .venv.
FASTMCP_VENV=.ci/venvs/fastmcp-$FASTMCP_VERSION
if [ ! -f "$FASTMCP_VENV/.installed" ]; then
  log "installing fastmcp==$FASTMCP_VERSION into $FASTMCP_VENV/"
  rm -rf "$FASTMCP_VENV"
  "$PY" -m venv "$FASTMCP_VENV" || die "cannot create $FASTMCP_VENV"
  "$FASTMCP_VENV/bin/python" -m pip install --quiet --disable-pip-version-check "fastmcp==$FASTMCP_VERSION" >&2 \
    || die "cannot install fastmcp==$FASTMCP_VERSION"
  touch "$FASTMCP_VENV/.installed"
fi

export MATRIX_NODE=$NODE
export MATRIX_EVERYTHING_MAIN=$PWD/$EVERYTHING_DIR/node_modules/@modelcontextprotocol/server-everything/dist/index.js
export MATRIX_TS_SDK_DIR=$PWD/$TS_SDK_DIR/node_modules/@modelcontextprotocol/sdk
export MATRIX_INSPECTOR_MAIN=$PWD/$INSPECTOR_DIR/node_modules/@modelcontextprotocol/inspector/clients/launcher/build/index.js
export MATRIX_FASTMCP_PYTHON=$PWD/$FASTMCP_VENV/bin/python
export MATRIX_MODE=$MODE
exec .venv/bin/python -m tests.matrix.run "$@"
