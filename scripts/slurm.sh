#!/usr/bin/env bash
# Make sure a local one-node Slurm cluster runs (munged, slurmctld, slurmd), with 4 stand-in GPUs.
# Idempotent: when all is in place it only checks (well under a second).
#
#   scripts/slurm.sh          install, configure and start; wait until the node is idle
#   scripts/slurm.sh --stop   stop slurmd, slurmctld and munged (running jobs' slurmstepd stay)
#
# Installs as root on Debian: slurmctld slurmd slurm-client munge (apt). The node is this host
# (hostname -s, at 127.0.0.1), CPUs = nproc, Gres=gpu:4 on character devices of ours (major 195,
# minors 0-3) in /var/lib/llem-slurm/dev; no cgroups, no accounting daemon, SlurmUser=root.
# Logs: /var/log/slurmctld.log, /var/log/slurmd.log, /var/log/munge/munged.log.
set -euo pipefail
# the daemons and munged live in sbin, which a root login's PATH may lack
PATH=$PATH:/usr/sbin:/sbin

BASE=/var/lib/llem-slurm
DEV_DIR=$BASE/dev
RUN_DIR=/run/llem-slurm
CONF_DIR=/etc/slurm
SLURM_CONF=$CONF_DIR/slurm.conf
GRES_CONF=$CONF_DIR/gres.conf
CTLD_LOG=/var/log/slurmctld.log
SLURMD_LOG=/var/log/slurmd.log
CTLD_PID=$RUN_DIR/slurmctld.pid
SLURMD_PID=$RUN_DIR/slurmd.pid
MUNGE_KEY=/etc/munge/munge.key
MUNGE_RUN=/run/munge
MUNGE_PID=$MUNGE_RUN/munged.pid
MUNGE_LOG=/var/log/munge/munged.log
# munged's own words before it has its log (its log must belong to munge: not a redirect)
MUNGE_OUT=/var/log/munged.out
NGPUS=4
WAIT_S=${LLEM_SLURM_WAIT_S:-60}
LOCK=/var/run/llem-slurm.lock

STOP=0
for arg in "$@"; do
    case $arg in
    --stop) STOP=1 ;;
    -h | --help)
        sed -n '2,11p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
        exit 0
        ;;
    *)
        echo "slurm.sh: unknown argument: $arg" >&2
        exit 2
        ;;
    esac
done

log() { echo "slurm.sh: $*" >&2; }
die() {
    log "error: $*"
    exit 1
}

ROOT_HINT="run as root, or start a Slurm cluster yourself"
# shellcheck source=scripts/lib/apt.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib/apt.sh"
trap apt_policy_cleanup EXIT # apt_install --no-start's policy, should the install be cut short

HOST=$(hostname -s)
[ -n "$HOST" ] || die "hostname -s is empty"

# ---- processes ---------------------------------------------------------------------------------

# pid_of PIDFILE COMM: the pid in PIDFILE when that process runs COMM and is no zombie
# (a killed daemon can linger as a zombie when PID 1 does not reap)
pid_of() {
    local pid stat
    [ -s "$1" ] || return 1
    pid=$(cat "$1" 2>/dev/null) || return 1
    [ -n "$pid" ] && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$2" ] || return 1
    stat=$(cat "/proc/$pid/stat" 2>/dev/null) || return 1
    stat=${stat##*) }
    [ "${stat%% *}" != Z ] || return 1
    echo "$pid"
}

# stop_daemon NAME PIDFILE: TERM, up to 10 s, then KILL
stop_daemon() {
    local pid i
    pid=$(pid_of "$2" "$1") || {
        rm -f "$2"
        return 0
    }
    log "stopping $1 (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    for i in $(seq 100); do
        pid_of "$2" "$1" >/dev/null || break
        sleep 0.1
    done
    if pid_of "$2" "$1" >/dev/null; then
        log "$1 (pid $pid) ignores SIGTERM; killing it"
        kill -KILL "$pid" 2>/dev/null || true
        sleep 0.2
    fi
    rm -f "$2"
}

# ---- munge -------------------------------------------------------------------------------------

munge_up() { [ -S "$MUNGE_RUN/munge.socket.2" ] && timeout 5 munge -n </dev/null >/dev/null 2>&1; }

ensure_munge() {
    if [ ! -s "$MUNGE_KEY" ]; then
        log "creating $MUNGE_KEY"
        install -d -o munge -g munge -m 0700 /etc/munge
        dd if=/dev/urandom of="$MUNGE_KEY" bs=1 count=1024 status=none
    fi
    # munged refuses a key others can read, and a key it does not own
    chown munge:munge "$MUNGE_KEY"
    chmod 0400 "$MUNGE_KEY"
    pid_of "$MUNGE_PID" munged >/dev/null && munge_up && return 0
    stop_daemon munged "$MUNGE_PID"
    install -d -o munge -g munge -m 0755 "$MUNGE_RUN"
    install -d -o munge -g munge -m 0700 /var/log/munge /var/lib/munge
    [ ! -e "$MUNGE_LOG" ] || chown munge:munge "$MUNGE_LOG"
    rm -f "$MUNGE_RUN/munge.socket.2" "$MUNGE_RUN/munge.socket.2.lock"
    log "starting munged (log: $MUNGE_LOG)"
    # munged daemonizes itself and writes $MUNGE_PID; 9>&-: not the lock
    echo "---- $(date -u +%FT%TZ) slurm.sh: munged" >>"$MUNGE_OUT"
    runuser -u munge -- /usr/sbin/munged 9>&- </dev/null >>"$MUNGE_OUT" 2>&1 ||
        die "munged did not start; last lines of $MUNGE_OUT:
$(tail -n 5 "$MUNGE_OUT")
last lines of $MUNGE_LOG:
$(tail -n 10 "$MUNGE_LOG" 2>/dev/null)"
    local i
    for i in $(seq 50); do
        munge_up && return 0
        sleep 0.1
    done
    die "munged does not answer; last lines of $MUNGE_LOG:
$(tail -n 15 "$MUNGE_LOG" 2>/dev/null)"
}

# ---- devices and configuration -----------------------------------------------------------------

# slurmd takes only character devices as gres files: nvidia-like ones (major 195), never opened
ensure_devices() {
    local i f
    for i in $(seq 0 $((NGPUS - 1))); do
        f=$DEV_DIR/nvidia$i
        [ -c "$f" ] && [ "$(stat -c '%t:%T' "$f")" = "c3:$(printf '%x' "$i")" ] && continue
        mkdir -p "$DEV_DIR"
        rm -f "$f"
        mknod -m 0666 "$f" c 195 "$i" || die "mknod $f c 195 $i failed (no CAP_MKNOD?)"
    done
}

mem_mb() {
    local kb
    kb=$(awk '/^MemTotal:/ {print $2}' /proc/meminfo)
    # in whole GiB, a little under what slurmd reads, so the config stays put
    echo $((kb / 1024 / 1024 * 1024))
}

slurm_conf() {
    cat <<EOF
# written by llem's scripts/slurm.sh: a one-node test cluster; edits are overwritten
ClusterName=llem-test
SlurmctldHost=$HOST(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
StateSaveLocation=$BASE/state
SlurmdSpoolDir=$BASE/spool
SlurmctldPidFile=$CTLD_PID
SlurmdPidFile=$SLURMD_PID
SlurmctldLogFile=$CTLD_LOG
SlurmdLogFile=$SLURMD_LOG
SlurmctldDebug=info
SlurmdDebug=info
# no cgroups (a container), no accounting daemon
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
SwitchType=switch/none
# CR_CPU: two 1-CPU array tasks run at once on 2 CPUs, whatever the core/thread layout
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=2,bf_interval=1
GresTypes=gpu
# finished jobs stay visible (squeue, scontrol show job) 5 minutes; SIGKILL 10 s after SIGTERM
MinJobAge=300
KillWait=10
ReturnToService=2
JobRequeue=1
InactiveLimit=0
MailProg=/bin/true
SlurmdParameters=config_overrides
NodeName=$HOST NodeAddr=127.0.0.1 CPUs=$(nproc) RealMemory=$(mem_mb) Gres=gpu:$NGPUS State=UNKNOWN
PartitionName=llem Nodes=$HOST Default=YES MaxTime=INFINITE State=UP
EOF
}

gres_conf() {
    cat <<EOF
# written by llem's scripts/slurm.sh: $NGPUS stand-in GPUs (character devices, never opened)
AutoDetect=off
NodeName=$HOST Name=gpu File=$DEV_DIR/nvidia[0-$((NGPUS - 1))]
EOF
}

# put_file PATH CONTENT: write only when different; return 0 when it was written
put_file() {
    if [ -f "$1" ] && [ "$(cat "$1")" = "$2" ]; then
        return 1
    fi
    as_root "write $1"
    mkdir -p "$(dirname "$1")"
    printf '%s\n' "$2" >"$1.tmp.$$"
    mv -f "$1.tmp.$$" "$1"
    log "wrote $1"
    return 0
}

# ---- slurm daemons -----------------------------------------------------------------------------

node_state() { timeout 10 sinfo -h -N -n "$HOST" -o %T 2>/dev/null | head -n 1; }

node_ready() {
    case $(node_state) in
    idle | mixed | allocated | completing) return 0 ;;
    *) return 1 ;;
    esac
}

start_daemon() { # NAME LOG
    log "starting $1 (log: $2)"
    echo "---- $(date -u +%FT%TZ) slurm.sh: $1" >>"$2"
    # the daemon forks into the background and writes its pid file; 9>&-: not the lock
    "$1" 9>&- </dev/null >>"$2" 2>&1 || die "$1 did not start; last lines of $2:
$(tail -n 15 "$2")"
}

wait_ready() {
    local waited=0 state resumed=0
    while [ "$waited" -lt $((WAIT_S * 2)) ]; do
        node_ready && return 0
        state=$(node_state || true)
        case $state in
        down* | drain* | fail*)
            if [ "$resumed" = 0 ] || [ $((waited % 10)) = 0 ]; then
                log "node $HOST is $state; resuming it"
                timeout 10 scontrol update nodename="$HOST" state=resume >/dev/null 2>&1 || true
                resumed=1
            fi
            ;;
        esac
        pid_of "$CTLD_PID" slurmctld >/dev/null || die "slurmctld exited; last lines of $CTLD_LOG:
$(tail -n 15 "$CTLD_LOG")"
        pid_of "$SLURMD_PID" slurmd >/dev/null || die "slurmd exited; last lines of $SLURMD_LOG:
$(tail -n 15 "$SLURMD_LOG")"
        sleep 0.5
        waited=$((waited + 1))
    done
    die "node $HOST not idle after ${WAIT_S}s (state: ${state:-no answer}); last lines of $SLURMD_LOG:
$(tail -n 10 "$SLURMD_LOG")
last lines of $CTLD_LOG:
$(tail -n 10 "$CTLD_LOG")"
}

stop_all() {
    stop_daemon slurmd "$SLURMD_PID"
    stop_daemon slurmctld "$CTLD_PID"
    stop_daemon munged "$MUNGE_PID"
}

ensure_slurm() {
    local want_slurm want_gres
    want_slurm=$(slurm_conf)
    want_gres=$(gres_conf)
    # the fast path: everything there and the node answering
    if have sbatch && have slurmd && have slurmctld && have munged &&
        [ "$(cat "$SLURM_CONF" 2>/dev/null)" = "$want_slurm" ] &&
        [ "$(cat "$GRES_CONF" 2>/dev/null)" = "$want_gres" ] &&
        pid_of "$MUNGE_PID" munged >/dev/null && pid_of "$CTLD_PID" slurmctld >/dev/null &&
        pid_of "$SLURMD_PID" slurmd >/dev/null && node_ready; then
        return 0
    fi
    as_root "start Slurm"
    # one starter at a time
    exec 9>"$LOCK"
    flock -w $((WAIT_S + 120)) 9 || die "another slurm.sh holds $LOCK"

    apt_install --no-start munge slurmctld slurmd slurm-client
    ensure_munge
    ensure_devices
    mkdir -p "$BASE/state" "$BASE/spool" "$RUN_DIR"
    local changed=0
    put_file "$SLURM_CONF" "$want_slurm" && changed=1
    put_file "$GRES_CONF" "$want_gres" && changed=1
    if [ "$changed" = 1 ]; then
        stop_daemon slurmd "$SLURMD_PID"
        stop_daemon slurmctld "$CTLD_PID"
    fi
    if ! pid_of "$CTLD_PID" slurmctld >/dev/null; then
        rm -f "$CTLD_PID"
        start_daemon slurmctld "$CTLD_LOG"
    fi
    if ! pid_of "$SLURMD_PID" slurmd >/dev/null; then
        rm -f "$SLURMD_PID"
        start_daemon slurmd "$SLURMD_LOG"
    fi
    wait_ready
    log "Slurm up: node $HOST $(node_state), $(sinfo -h -N -n "$HOST" -o '%c CPUs, %G' 2>/dev/null)"
}

if [ "$STOP" = 1 ]; then
    as_root "stop Slurm"
    exec 9>"$LOCK"
    flock -w 60 9 || die "another slurm.sh holds $LOCK"
    stop_all
    exit 0
fi
ensure_slurm
exit 0
