# shellcheck shell=bash
# Shared by scripts/engine.sh, scripts/slurm.sh and scripts/chromium.sh (sourced, not run):
# installing Debian packages as root, the package lists updated only when needed.
# The sourcing script defines log and die first, and may set ROOT_HINT (what to do without root).

have() { command -v "$1" >/dev/null 2>&1; }

as_root() {
    [ "$(id -u)" = 0 ] || die "need root to $* (${ROOT_HINT:-run as root})"
}

APT_UPDATED=0
apt_update() {
    if [ "$APT_UPDATED" = 0 ]; then
        log "apt-get update"
        apt_get update
        APT_UPDATED=1
    fi
}

apt_get() {
    DEBIAN_FRONTEND=noninteractive NEEDRESTART_SUSPEND=1 apt-get -qq -o=Dpkg::Use-Pty=0 "$@" >&2
}

# While apt_install --no-start runs, a policy that keeps the packages' init scripts from starting
# daemons the caller starts itself (no systemd here); a caller using it removes it on exit too:
# trap apt_policy_cleanup EXIT.
APT_POLICY_RC=/usr/sbin/policy-rc.d
APT_POLICY_ADDED=0
apt_policy_cleanup() {
    [ "$APT_POLICY_ADDED" = 0 ] || rm -f "$APT_POLICY_RC"
    APT_POLICY_ADDED=0
}

# apt_install [--no-start] PKG...: install those not installed yet; update the lists only when
# needed (no lists yet, no candidate for a package, or an install that failed without them).
apt_install() {
    local no_start=0 missing=() p rc=0
    if [ "${1:-}" = --no-start ]; then
        no_start=1
        shift
    fi
    for p in "$@"; do
        case $(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true) in
        *'install ok installed'*) ;;
        *) missing+=("$p") ;;
        esac
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    as_root "install ${missing[*]}"
    have apt-get || die "no apt-get: install ${missing[*]} by hand"
    for p in "${missing[@]}"; do
        # (no `| grep -q` under pipefail: an early grep exit fails the pipe with SIGPIPE)
        if ! [[ $(apt-cache policy "$p" 2>/dev/null || true) =~ Candidate:\ [^\(] ]]; then
            apt_update
            break
        fi
    done
    log "apt-get install ${missing[*]}"
    if [ "$no_start" = 1 ] && [ ! -e "$APT_POLICY_RC" ]; then
        printf '#!/bin/sh\nexit 101\n' >"$APT_POLICY_RC"
        chmod 0755 "$APT_POLICY_RC"
        APT_POLICY_ADDED=1
    fi
    if ! apt_get install -y --no-install-recommends "${missing[@]}"; then
        if [ "$APT_UPDATED" = 1 ]; then
            rc=1
        else
            apt_update
            apt_get install -y --no-install-recommends "${missing[@]}" || rc=1
        fi
    fi
    apt_policy_cleanup
    [ "$rc" = 0 ] || die "apt-get install ${missing[*]} failed"
}
