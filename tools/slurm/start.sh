#!/usr/bin/env bash
# Start a real single-node SLURM cluster (slurmctld + slurmd, authenticated by munge) on this
# machine, for `make test-slurm` (tools/slurm/test.sh). Debian/Ubuntu, as root.
#
#   tools/slurm/start.sh      # installs slurm-wlm + munge with apt-get when missing, then starts
#   sinfo; sbatch --wrap hostname; squeue   # the usual clients, as on any cluster
#   tools/slurm/stop.sh       # stops exactly the daemons this script started (PID files)
#
# Everything lives in one private state folder outside the repository (TRANSFERABILITY_SLURM_DIR,
# default /tmp/transferability-slurm): slurm.conf, controller state, slurmd spool, logs, PID
# files and jobcomp.log (one line per finished job: tools/slurm/check_run.py reads it).
# /etc/slurm/slurm.conf becomes a symlink to that slurm.conf (stop.sh removes it): SLURM_CONF
# alone is not enough, because the jobstep plugin clears SLURM_* variables before its `srun`
# inside each job, so srun must find the configuration at the default path. An
# /etc/slurm/slurm.conf that start.sh did not make is never replaced.
#
# No slurmdbd: sacct does not work here, so the profile asks the executor plugin to track jobs
# with squeue (slurm-status-command: squeue), which needs finished jobs to stay visible for a
# while: MinJobAge=300 s (the plugin wants >= 3 x its first status-check delay).
# No cgroups: proctrack/linuxproc and task/none work in containers and sandboxes.
# Re-running is safe: daemons of an earlier start are stopped first (by PID) and the controller
# starts from a clean state.
set -euo pipefail
export PATH=$PATH:/usr/sbin:/sbin # slurmctld, slurmd, munged

STATE=${TRANSFERABILITY_SLURM_DIR:-/tmp/transferability-slurm}
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
PARTITION=debug
CONF=$STATE/slurm.conf

die() {
    echo "tools/slurm/start.sh: ERROR: $*" >&2
    exit 1
}
say() { echo "[slurm] $*"; }

[ "$(id -u)" = 0 ] || die "needs root (apt-get install, munged, slurmd run as root here)"

# 0. Daemons of an earlier start still alive? Stop them (by their PID files) first.
if compgen -G "$STATE/*.pid" >/dev/null; then
    say "stopping daemons of an earlier start"
    bash "$HERE/stop.sh"
fi

# 1. Packages, installed once (Debian 12: SLURM 22.05, munge 0.5.15).
missing=()
for tool in slurmctld slurmd sbatch squeue scontrol sinfo munged munge unmunge; do
    command -v "$tool" >/dev/null || missing+=("$tool")
done
if [ ${#missing[@]} -gt 0 ]; then
    command -v apt-get >/dev/null || die "missing ${missing[*]} and no apt-get to install slurm-wlm munge"
    say "installing slurm-wlm munge (missing: ${missing[*]})"
    apt-get update -qq || die "apt-get update failed"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurm-wlm munge >/dev/null \
        || die "apt-get install slurm-wlm munge failed"
fi

mkdir -p "$STATE"
chmod 0755 "$STATE"

# 2. munge: a key, and a running munged (ours only if none answers yet).
if [ ! -s /etc/munge/munge.key ]; then
    say "creating /etc/munge/munge.key"
    install -d -o munge -g munge -m 0700 /etc/munge
    if command -v mungekey >/dev/null; then
        mungekey --create --keyfile /etc/munge/munge.key --force
    else
        dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
    fi
fi
chown munge:munge /etc/munge/munge.key
chmod 0400 /etc/munge/munge.key

munge_works() { munge -n 2>/dev/null | unmunge >/dev/null 2>&1; }
if munge_works; then
    say "munged already running (not started here, so stop.sh leaves it alone)"
else
    install -d -o munge -g munge -m 0755 /run/munge
    install -d -o munge -g munge -m 0700 /var/lib/munge /var/log/munge
    say "starting munged as user munge"
    runuser -u munge -- /usr/sbin/munged || die "munged did not start (see /var/log/munge/munged.log)"
    for _ in $(seq 50); do munge_works && break; sleep 0.2; done
    munge_works || die "munged started but 'munge -n | unmunge' fails (see /var/log/munge/munged.log)"
    cp /run/munge/munged.pid "$STATE/munged.pid"
fi

# 3. slurm.conf for this one node: its CPUs and memory as slurmd itself detects them.
HOST=$(hostname -s)
NODE=$(slurmd -C | head -n 1) # NodeName=<host> CPUs=.. Boards=.. ... RealMemory=..
case "$NODE" in NodeName=*) ;; *) die "unexpected 'slurmd -C' output: $NODE" ;; esac
rm -rf "$STATE/ctld" "$STATE/spool"
mkdir -p "$STATE/ctld" "$STATE/spool" "$STATE/log"
: >"$STATE/jobcomp.log"
cat >"$CONF" <<EOF
# Written by tools/slurm/start.sh: a private single-node cluster for make test-slurm.
ClusterName=transferability
SlurmctldHost=$HOST(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SwitchType=switch/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
SchedulerType=sched/backfill
ReturnToService=2
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
# No accounting database, but a plain-text record of every finished job (for check_run.py).
JobCompType=jobcomp/filetxt
JobCompLoc=$STATE/jobcomp.log
# Finished jobs stay visible to squeue/scontrol this long (squeue-based status tracking).
MinJobAge=300
StateSaveLocation=$STATE/ctld
SlurmdSpoolDir=$STATE/spool
SlurmctldPidFile=$STATE/slurmctld.pid
SlurmdPidFile=$STATE/slurmd.pid
SlurmctldLogFile=$STATE/log/slurmctld.log
SlurmdLogFile=$STATE/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
$NODE NodeAddr=127.0.0.1 State=UNKNOWN
PartitionName=$PARTITION Nodes=$HOST Default=YES MaxTime=INFINITE State=UP
EOF
ETC_CONF=/etc/slurm/slurm.conf
if [ -e "$ETC_CONF" ] || [ -L "$ETC_CONF" ]; then
    [ "$(readlink "$ETC_CONF")" = "$CONF" ] \
        || die "$ETC_CONF exists and is not start.sh's link to $CONF: another SLURM is configured here"
fi
mkdir -p /etc/slurm
ln -sfn "$CONF" "$ETC_CONF"

# 4. The daemons (they fork into the background and write their PID files).
say "starting slurmctld and slurmd (logs in $STATE/log)"
slurmctld -f "$CONF" -c || die "slurmctld did not start: $(tail -n 20 "$STATE/log/slurmctld.log" 2>/dev/null)"
slurmd -f "$CONF" || die "slurmd did not start: $(tail -n 20 "$STATE/log/slurmd.log" 2>/dev/null)"

# 5. Ready when sinfo shows the node idle.
state=""
for _ in $(seq 60); do
    state=$(sinfo -h -N -n "$HOST" -o "%T" 2>/dev/null || true)
    [ "$state" = idle ] && break
    sleep 1
done
if [ "$state" != idle ]; then
    echo "--- sinfo" >&2
    sinfo -N -l >&2 || true
    echo "--- slurmctld.log" >&2
    tail -n 20 "$STATE/log/slurmctld.log" >&2 || true
    echo "--- slurmd.log" >&2
    tail -n 20 "$STATE/log/slurmd.log" >&2 || true
    die "node $HOST is '${state:-not listed}', not idle, after 60 s (see the logs above)"
fi
say "node $HOST idle in partition $PARTITION: $(sinfo -h -N -o '%c CPUs, %m MB' -n "$HOST")"
