#!/usr/bin/env bash
# Stop the SLURM cluster that tools/slurm/start.sh started: exactly the daemons whose PID files
# are in its state folder (each node's slurmd, slurmctld, and munged only if start.sh started it).
# Jobs still queued or running on that private cluster are cancelled first. Safe to run twice.
set -uo pipefail
export PATH=$PATH:/usr/sbin:/sbin # slurmctld, slurmd, munged

STATE=${TRANSFERABILITY_SLURM_DIR:-/tmp/transferability-slurm}
say() { echo "[slurm] $*"; }

# A PID file names our daemon only if that process still runs the expected program.
ours() { # name pidfile -> prints the pid
    local name=$1 file=$2 pid
    [ -s "$file" ] || return 1
    pid=$(tr -dc '0-9' <"$file")
    [ -n "$pid" ] && [ -r "/proc/$pid/comm" ] && [ "$(cat "/proc/$pid/comm")" = "$name" ] || return 1
    echo "$pid"
}

stop() { # name pidfile
    local name=$1 file=$2 pid
    if pid=$(ours "$name" "$file"); then
        kill -TERM "$pid" 2>/dev/null
        for _ in $(seq 100); do
            [ -d "/proc/$pid" ] || break
            sleep 0.1
        done
        if [ -d "/proc/$pid" ]; then
            say "$name ($pid) ignored SIGTERM for 10 s; SIGKILL"
            kill -KILL "$pid" 2>/dev/null
        fi
        say "stopped $name ($pid)"
    elif [ -e "$file" ]; then
        say "$name: stale PID file, no such daemon running"
    fi
    rm -f "$file"
}

if ours slurmctld "$STATE/slurmctld.pid" >/dev/null; then
    SLURM_CONF=$STATE/slurm.conf timeout 10 scancel --full --user="$(id -un)" 2>/dev/null || true
fi
for pidfile in "$STATE"/slurmd-*.pid "$STATE/slurmd.pid"; do # one slurmd per node
    [ -e "$pidfile" ] && stop slurmd "$pidfile"
done
stop slurmctld "$STATE/slurmctld.pid"
stop munged "$STATE/munged.pid"
# the /etc/slurm links that start.sh made (nothing else there is touched)
for name in slurm.conf gres.conf; do
    if [ "$(readlink "/etc/slurm/$name" 2>/dev/null)" = "$STATE/$name" ]; then
        rm -f "/etc/slurm/$name"
    fi
done
exit 0
