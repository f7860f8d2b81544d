#!/usr/bin/env bash
# Fault injection for make test-slurm (tools/slurm/test.sh): while a Snakemake run goes through
# SLURM, requeue one training job in the middle of its rule, then cancel another one the same way.
#
#   tools/slurm/fault.sh LOG PID RECORD
#
#   LOG     the run's Snakemake log: its "SLURM run ID: <uuid>" line names the run's SLURM jobs
#   PID     the run's process: injection gives up when the run ends before both faults happened
#   RECORD  written once both faults happened, two lines: "requeued <SLURM id> <comment>" and
#           "cancelled <SLURM id> <comment>" (for tools/slurm/check_run.py --requeued/--cancelled)
#
# Targets: SLURM jobs of the run in state RUNNING, of a training rule (TRAINING_RULES: pretrain,
# finetune, layer_transfer), whose SLURM output shows that the Snakemake started by srun inside
# the job has begun the rule ("localrule <rule>:"), so the fault hits the training itself.
#   requeue  `scontrol requeue <id>`, as SLURM does after a node failure or preemption when jobs
#            are requeueable (JobRequeue=1 is SLURM's default and the plugin never passes
#            --no-requeue, so no setting is needed). SLURM kills the job and, after cred_expire
#            (120 s), runs it again under the same id; Snakemake sees it pending, running again,
#            then COMPLETED, and does nothing itself.
#   cancel   `scancel <id>` on another job (a node failure, timeout or kill without requeue):
#            Snakemake sees it CANCELLED, reports the job failed, and the profile's `retries`
#            submit it again under a new SLURM id.
# Mapping SLURM ids to rules: snakemake-executor-plugin-slurm 2.6.1 names every SLURM job of a run
# by the run ID (sbatch --job-name <uuid>) and puts the rule into the comment (sbatch --comment
# rule_<rule>_wildcards_<values>), so `squeue --name <run ID> -o "%i %k"` lists them; the output
# file is `scontrol show job`'s StdOut (the path the plugin also logs: "Job N has been submitted
# with SLURM jobid S (log: F)").
# Each fault is injected exactly once. Exit 1 with a message when a fault could not be injected
# within FAULT_TIMEOUT s (default 420) of the start, or the run ended first.
set -euo pipefail

[ $# = 3 ] || {
    echo "usage: $0 LOG PID RECORD" >&2
    exit 2
}
LOG=$1 PID=$2 RECORD=$3
TIMEOUT=${FAULT_TIMEOUT:-420}
TRAINING_RULES=${TRAINING_RULES:-pretrain|finetune|layer_transfer}
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
say "run $run_id: waiting for a RUNNING job of rule ${TRAINING_RULES//|/, } inside its rule"

training_in_rule() { # exclude_id -> "id rule comment" of one RUNNING training job inside its rule
    local id comment rule out
    while read -r id comment; do
        [ "$id" != "$1" ] || continue
        rule=$(sed -nE "s/^rule_($TRAINING_RULES)(_wildcards_.*)?$/\1/p" <<<"$comment")
        [ -n "$rule" ] || continue
        out=$(scontrol show job -o "$id" 2>/dev/null | grep -o 'StdOut=[^ ]*' | cut -d= -f2-) || continue
        if [ -n "$out" ] && grep -qx "localrule $rule:" "$out" 2>/dev/null; then
            echo "$id $rule $comment"
            return
        fi
    done < <(squeue -h --name "$run_id" --states RUNNING -o "%i %k" 2>/dev/null)
}

inject() { # action exclude_id: requeue or cancel one training job (not exclude_id) inside its rule
    local action=$1 exclude=$2 job id rule comment out rc past
    while :; do
        job=$(training_in_rule "$exclude" || true)
        if [ -n "$job" ]; then
            read -r id rule comment <<<"$job"
            if [ "$action" = requeue ]; then
                past=requeued
                out=$(scontrol requeue "$id" 2>&1) && rc=0 || rc=$?
            else
                past=cancelled
                out=$(scancel "$id" 2>&1) && rc=0 || rc=$?
            fi
            if [ "$rc" = 0 ]; then
                say "$(date +%T) $past SLURM job $id ($comment) while RUNNING its rule $rule," \
                    "$(waited) s after the start"
                echo "$past $id $comment" >>"$RECORD"
                INJECTED=$id
                return 0
            fi
            # refused: fine only if the job stopped running in the meantime (then try another)
            if squeue -h -j "$id" --states RUNNING -o %i 2>/dev/null | grep -qx "$id"; then
                die "'$action' of RUNNING SLURM job $id ($comment) refused: $out"
            fi
            say "$action of SLURM job $id refused, it no longer runs ($out); waiting for another"
        fi
        give_up_unless_alive "training job RUNNING its rule to $action"
        sleep 0.5
    done
}

: >"$RECORD.part"
RECORD=$RECORD.part
INJECTED=""
inject requeue ""
inject cancel "$INJECTED"
mv "$RECORD" "${RECORD%.part}"
