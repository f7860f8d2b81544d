#!/usr/bin/env bash
# Start a real SLURM cluster of four nodes (slurmctld + one slurmd per node, authenticated by
# munge) on this machine, for `make test-slurm` (tools/slurm/test.sh). Debian/Ubuntu, as root.
#
# Nodes: slurmd runs once per node (`slurmd -N node<k>`, each on its own port), every node with
# this machine's CPUs and memory as `slurmd -C` detects them (so the cluster oversubscribes the
# real cores; fine for a test). Partitions:
#   debug  node1 node2 (default)   the workflow's CPU jobs, spread over two nodes
#   gpu    node1 node2             node1 declares two GPUs as a generic resource (GresTypes=gpu,
#                                  Gres=gpu:2, gres.conf with stand-in device files): SLURM
#                                  allocates them, the code runs on the CPU
#   fault  node3 node4             the fault-injection run's own nodes: a node killed there
#                                  (tools/slurm/fault.sh) never touches the other runs' jobs
# A node whose slurmd stops answering is marked DOWN after SlurmdTimeout (10 s) and its jobs end
# NODE_FAIL (and are requeued: JobRequeue=1, SLURM's default); ReturnToService=2 lets it rejoin.
#
#   tools/slurm/start.sh      # installs slurm-wlm + munge with apt-get when missing, then starts
#   sinfo; sbatch --wrap hostname; squeue   # the usual clients, as on any cluster
#   tools/slurm/stop.sh       # stops exactly the daemons this script started (PID files)
#
# Everything lives in one private state folder outside the repository (TRANSFERABILITY_SLURM_DIR,
# default /tmp/transferability-slurm): slurm.conf, controller state, slurmd spool, logs, PID
# files and jobcomp.log (one line per finished job: tools/slurm/check_run.py reads it).
# /etc/slurm/slurm.conf and gres.conf become symlinks to those files (stop.sh removes them): SLURM_CONF
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

# 3. slurm.conf: four nodes, each with this machine's CPUs and memory as slurmd detects them.
HOST=$(hostname -s)
NODE=$(slurmd -C | head -n 1) # NodeName=<host> CPUs=.. Boards=.. ... RealMemory=..
case "$NODE" in NodeName=*) ;; *) die "unexpected 'slurmd -C' output: $NODE" ;; esac
HARDWARE=${NODE#NodeName=* } # CPUs=.. Boards=.. ... RealMemory=..
NODES=(node1 node2 node3 node4)
rm -rf "$STATE/ctld" "$STATE/spool"
mkdir -p "$STATE/ctld" "$STATE/log"
for node in "${NODES[@]}"; do mkdir -p "$STATE/spool/$node"; done
: >"$STATE/jobcomp.log"
cat >"$CONF" <<EOF
# Written by tools/slurm/start.sh: a private four-node cluster on one machine for make test-slurm.
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
# A killed slurmd is noticed within seconds (the fault run's NODE_FAIL), not after 5 minutes.
SlurmdTimeout=10
# GPUs as a generic resource (node1). Without slurmdbd they are not in jobcomp's Tres=; a job's
# allocation shows them in `scontrol -d show job` (JOB_GRES=gpu:1), which test.sh records.
GresTypes=gpu
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
# No accounting database, but a plain-text record of every finished job (for check_run.py).
JobCompType=jobcomp/filetxt
JobCompLoc=$STATE/jobcomp.log
# Finished jobs stay visible to squeue/scontrol this long (squeue-based status tracking).
MinJobAge=300
StateSaveLocation=$STATE/ctld
# one slurmd per node on this host: %n = the node's name
SlurmdSpoolDir=$STATE/spool/%n
SlurmctldPidFile=$STATE/slurmctld.pid
SlurmdPidFile=$STATE/slurmd-%n.pid
SlurmctldLogFile=$STATE/log/slurmctld.log
SlurmdLogFile=$STATE/log/slurmd-%n.log
SlurmctldDebug=info
SlurmdDebug=info
NodeName=node1 NodeHostname=$HOST NodeAddr=127.0.0.1 Port=17001 $HARDWARE Gres=gpu:2 State=UNKNOWN
NodeName=node2 NodeHostname=$HOST NodeAddr=127.0.0.1 Port=17002 $HARDWARE State=UNKNOWN
NodeName=node3 NodeHostname=$HOST NodeAddr=127.0.0.1 Port=17003 $HARDWARE State=UNKNOWN
NodeName=node4 NodeHostname=$HOST NodeAddr=127.0.0.1 Port=17004 $HARDWARE State=UNKNOWN
PartitionName=$PARTITION Nodes=node1,node2 Default=YES MaxTime=INFINITE State=UP
PartitionName=gpu Nodes=node1,node2 MaxTime=INFINITE State=UP
PartitionName=fault Nodes=node3,node4 MaxTime=INFINITE State=UP
EOF
# node1's two GPUs. SLURM 22.05 drops a GPU without a device file ("Removing file-less GPU" in
# slurmd's debug log; the node is then INVAL), so each gets a stand-in character device (the
# numbers of /dev/null): nothing opens them, the code runs on the CPU, and no cgroup enforces them.
mkdir -p "$STATE/dev"
for k in 0 1; do
    [ -c "$STATE/dev/gpu$k" ] || mknod -m 0666 "$STATE/dev/gpu$k" c 1 3
done
cat >"$STATE/gres.conf" <<EOF
NodeName=node1 Name=gpu File=$STATE/dev/gpu[0-1]
EOF
# slurmd reads gres.conf from /etc/slurm too
for name in slurm.conf gres.conf; do
    if [ -e "/etc/slurm/$name" ] || [ -L "/etc/slurm/$name" ]; then
        [ "$(readlink "/etc/slurm/$name")" = "$STATE/$name" ] \
            || die "/etc/slurm/$name exists and is not start.sh's link to $STATE/$name: another SLURM is configured here"
    fi
done
mkdir -p /etc/slurm
ln -sfn "$CONF" /etc/slurm/slurm.conf
ln -sfn "$STATE/gres.conf" /etc/slurm/gres.conf

# 4. The daemons (they fork into the background and write their PID files).
say "starting slurmctld and slurmd for ${NODES[*]} (logs in $STATE/log)"
slurmctld -f "$CONF" -c || die "slurmctld did not start: $(tail -n 20 "$STATE/log/slurmctld.log" 2>/dev/null)"
for node in "${NODES[@]}"; do
    slurmd -f "$CONF" -N "$node" \
        || die "slurmd -N $node did not start: $(tail -n 20 "$STATE/log/slurmd-$node.log" 2>/dev/null)"
done

# 5. Ready when sinfo shows every node idle.
IDLE="node1 idle node2 idle node3 idle node4 idle "
state=""
for _ in $(seq 60); do
    state=$(sinfo -h -N -o "%N %T" 2>/dev/null | sort -u | tr '\n' ' ' || true)
    [ "$state" = "$IDLE" ] && break
    sleep 1
done
if [ "$state" != "$IDLE" ]; then
    echo "--- sinfo" >&2
    sinfo -N -l >&2 || true
    echo "--- slurmctld.log" >&2
    tail -n 20 "$STATE/log/slurmctld.log" >&2 || true
    for node in "${NODES[@]}"; do
        echo "--- slurmd-$node.log" >&2
        tail -n 20 "$STATE/log/slurmd-$node.log" >&2 || true
    done
    die "nodes not all idle after 60 s: '${state:-none listed}' (see the logs above)"
fi
say "nodes idle: $(sinfo -h -N -o '%N (%P, %c CPUs, %m MB, %G)' | sort -u | tr '\n' ' ')"
