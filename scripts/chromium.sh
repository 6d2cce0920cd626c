#!/usr/bin/env bash
# Install Debian's chromium when no Chromium is on PATH (make test runs this: the test
# tests/e2e/test_report_browser.py opens llem report's HTML in headless Chromium).
#
#   bash scripts/chromium.sh     prints the browser's path on stdout
#
# Needs root only to install (apt-get, as scripts/engine.sh does for its packages); a machine
# that already has chromium / chromium-browser / google-chrome needs nothing.
set -euo pipefail

log() { echo "chromium.sh: $*" >&2; }
die() {
    log "error: $*"
    exit 1
}

for name in chromium chromium-browser google-chrome google-chrome-stable; do
    if path=$(command -v "$name" 2>/dev/null); then
        echo "$path"
        exit 0
    fi
done

ROOT_HINT="or install chromium yourself"
# shellcheck source=scripts/lib/apt.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib/apt.sh"
apt_install chromium
command -v chromium || die "chromium installed but not on PATH"
