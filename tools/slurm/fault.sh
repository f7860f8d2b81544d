#!/usr/bin/env bash
# Fault injection for make test-slurm (tools/slurm/test.sh): while a Snakemake run goes through
# SLURM (partition `fault`: node3, node4), stall one training job past its time limit, kill the
# node of another, and cancel a third, each in the middle of its rule.
#
#   tools/slurm/fault.sh LOG PID RECORD
#
#   LOG     the run's Snakemake log: its "SLURM run ID: <uuid>" line names the run's SLURM jobs
#   PID     the run's process: injection gives up when the run ends before the faults happened
#   RECORD  written once all faults happened, one line each: "stalled <SLURM id> <node> <comment>",
#           "node_failed <SLURM id> <node> <comment>", "cancelled <SLURM id> <node> <comment>"
#           (for tools/slurm/check_run.py --timed-out/--node-failed/--cancelled)
#
# Targets: SLURM jobs of the run in state RUNNING, of a training rule, whose SLURM output shows
# that the Snakemake started by srun inside the job has begun the rule ("localrule <rule>:").
#   stall   a `pretrain` job (the run gives pretrain a 1-minute first attempt, job_resources in
#           its config): SIGSTOP to every process of the job, as a job hung on a dead file system
#           or a slow node. SLURM ends it at its time limit: TIMEOUT. Snakemake retries it
#           (profiles/slurm `retries`) with runtime = base x attempt, i.e. `sbatch -t 2`.
#   node    another training job, on the node the stalled job is not on: that node's slurmd and
#           every process of its jobs are killed with SIGKILL, as a node that loses power. After
#           SlurmdTimeout (10 s) slurmctld marks the node DOWN; its jobs end NODE_FAIL and SLURM
#           requeues them (JobRequeue=1, its default): they run again under their ids on the
#           other node.
#   cancel  a third training job: `scancel`; Snakemake sees CANCELLED and retries it.
# Mapping SLURM ids to rules: snakemake-executor-plugin-slurm 2.6.1 names every SLURM job of a run
# by the run ID (sbatch --job-name <uuid>) and puts the rule into the comment (sbatch --comment
# rule_<rule>_wildcards_<values>), so `squeue --name <run ID> -o "%i %k %N"` lists them; the
# output file is `scontrol show job`'s StdOut. A job's processes are the descendants of its
# `slurmstepd: [<id>.<step>]` processes (proctrack/linuxproc: by parentage).
# Each fault is injected exactly once. Exit 1 with a message when a fault could not be injected
# within FAULT_TIMEOUT s (default 480) of the start, or the run ended first.
set -euo pipefail
export PATH=$PATH:/usr/sbin:/sbin

[ $# = 3 ] || {
    echo "usage: $0 LOG PID RECORD" >&2
    exit 2
}
LOG=$1 PID=$2 RECORD=$3
TIMEOUT=${FAULT_TIMEOUT:-480}
STATE=${TRANSFERABILITY_SLURM_DIR:-/tmp/transferability-slurm}
TRAINING_RULES=pretrain\|finetune\|layer_transfer
t0=$(date +%s)

say() { echo "[fault] $*"; }
die() {
    echo "[test-slurm] FAILED: fault injection: $*" >&2
    exit 1
}
waited() { echo $(($(date +%s) - t0)); }
give_up_unless_alive() { # what we wait for
    kill -0 "$PID" 2>/dev/null || die "the run ended before $1 (log: $LOG)"
    [ "$(waited)" -lt "$TIMEOUT" ] || die "no $1 after $TIMEOUT s (log: $LOG)"
}

run_id=""
until run_id=$(sed -n 's/^SLURM run ID: \([^ ]*\)$/\1/p' "$LOG" 2>/dev/null | head -n 1) \
    && [ -n "$run_id" ]; do
    give_up_unless_alive "its 'SLURM run ID' line"
    sleep 1
done
say "run $run_id: waiting for RUNNING training jobs inside their rule"

in_rule() { # rules exclude_ids exclude_node -> "id node rule comment" of one such job
    local rules=$1 exclude=" $2 " avoid=$3 id comment node rule out
    while read -r id comment node; do
        [[ $exclude != *" $id "* ]] && [ "$node" != "$avoid" ] || continue
        rule=$(sed -nE "s/^rule_($rules)(_wildcards_.*)?$/\1/p" <<<"$comment")
        [ -n "$rule" ] || continue
        out=$(scontrol show job -o "$id" 2>/dev/null | grep -o 'StdOut=[^ ]*' | cut -d= -f2-) || continue
        if [ -n "$out" ] && grep -qx "localrule $rule:" "$out" 2>/dev/null; then
            echo "$id $node $rule $comment"
            return
        fi
    done < <(squeue -h --name "$run_id" --states RUNNING -o "%i %k %N" 2>/dev/null)
}

tree() { # pid -> the pid and all its descendants
    local child
    echo "$1"
    for child in $(pgrep -P "$1"); do tree "$child"; done
}
job_pids() { # SLURM id -> every process of the job on this machine
    local step
    for step in $(pgrep -f "^slurmstepd: \[$1\."); do
        tree "$step" | tail -n +2 # the job's processes; slurmstepd itself is SLURM's
    done
}

TARGETED=""
inject() { # fault rules avoid_node
    local fault=$1 rules=$2 avoid=$3 job id node rule comment pids victims=""
    while :; do
        job=$(in_rule "$rules" "$TARGETED" "$avoid" || true)
        if [ -n "$job" ]; then
            read -r id node rule comment <<<"$job"
            case $fault in
            stalled)
                pids=$(job_pids "$id")
                [ -n "$pids" ] || die "SLURM job $id ($comment) has no processes to stop"
                kill -STOP $pids
                ;;
            node_failed)
                # the node dies: its slurmd first, then every process of its jobs
                victims=$(squeue -h -w "$node" -o %i 2>/dev/null | tr '\n' ' ')
                kill -KILL "$(cat "$STATE/slurmd-$node.pid")"
                for victim in $victims; do
                    pids=$(pgrep -f "^slurmstepd: \[$victim\." || true)
                    for p in $pids; do kill -KILL $(tree "$p") 2>/dev/null || true; done
                done
                ;;
            cancelled)
                scancel "$id" || die "scancel $id failed"
                ;;
            esac
            say "$(date +%T) $fault SLURM job $id ($comment) on $node while RUNNING its rule" \
                "$rule, $(waited) s after the start${victims:+ (jobs on $node: $victims)}"
            echo "$fault $id $node $comment" >>"$RECORD"
            TARGETED="$TARGETED $id"
            INJECTED_NODE=$node
            return 0
        fi
        give_up_unless_alive "training job RUNNING its rule to be $fault"
        sleep 0.5
    done
}

: >"$RECORD.part"
RECORD=$RECORD.part
inject stalled pretrain ""
stalled_node=$INJECTED_NODE
inject node_failed "$TRAINING_RULES" "$stalled_node"
inject cancelled "$TRAINING_RULES" "$INJECTED_NODE" # not on the dead node
mv "$RECORD" "${RECORD%.part}"
