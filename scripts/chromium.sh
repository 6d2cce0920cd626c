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

[ "$(id -u)" = 0 ] || die "no chromium on PATH, and installing it needs root (apt-get install chromium)"
command -v apt-get >/dev/null 2>&1 || die "no chromium on PATH and no apt-get to install it"
export DEBIAN_FRONTEND=noninteractive NEEDRESTART_SUSPEND=1
apt() { apt-get -qq -o=Dpkg::Use-Pty=0 "$@" >&2; }
log "apt-get install chromium"
if ! apt install -y --no-install-recommends chromium; then
    log "apt-get update"
    apt update
    apt install -y --no-install-recommends chromium
fi
command -v chromium || die "chromium installed but not on PATH"
