#!/usr/bin/env bash
# Debian's chromium for the page tests (tests/integration/test_webui.py, driven by Playwright with
# executable_path): installed with apt-get where it is missing. Never a browser download of Playwright's
# own (`playwright install` is not used anywhere). Where it cannot be installed (not root, no apt-get),
# say so: the page tests then skip on a developer's machine and fail in CI.
set -euo pipefail
CHROMIUM=${MCPRELAY_CHROMIUM:-/usr/bin/chromium}
if [ -x "$CHROMIUM" ]; then
  exit 0
fi
if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  echo "chromium: installing Debian's chromium (apt-get)" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >/dev/null
  [ -x "$CHROMIUM" ] || { echo "chromium: apt-get ran but $CHROMIUM is missing" >&2; exit 2; }
else
  echo "chromium: $CHROMIUM is missing and cannot be installed here (needs root and apt-get); the page tests skip" >&2
fi
