#!/usr/bin/env bash
# make test-slurm: the tiny test configuration through a real single-node SLURM cluster with the
# real profile (profiles/slurm, plus the CI overlay tests/slurm/profile), and the same
# configuration on the local executor; then tools/slurm/check_run.py checks that every job but
# `all` went through sbatch and that the result tables of both runs are byte-identical. Also
# checks that profiles/slurm alone asks sbatch for a GPU for training (refused here: no GPU).
# Fault run, at the same time: part of the tiny workflow (the layer-transfer table: 2 pretrain,
# 4 layer_transfer jobs) through the same profiles but with profiles/slurm's own `retries`, while
# tools/slurm/fault.sh requeues one training job in the middle of its rule and scancels another;
# check_run.py then requires Snakemake's retry of the cancelled job in the log, the requeued job
# run again under its id, and the table byte-identical to the local run's.
# Starts the cluster (tools/slurm/start.sh) and stops it again on any exit (trap).
# Needs root (apt-get, daemons). Work dirs and logs: /tmp/transferability-test-slurm.*
# (removed after a pass unless KEEP=1).
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
PY=$REPO/.venv/bin/python
STATE=${TRANSFERABILITY_SLURM_DIR:-/tmp/transferability-slurm}
WORK=$(mktemp -d /tmp/transferability-test-slurm.XXXXXX)

finish() {
    local rc=$? f pid pids
    [ -z "${inject_pid:-}" ] || kill "$inject_pid" 2>/dev/null || true # fault injection, if waiting
    # Interrupted: stop the Snakemake runs as Ctrl-C does (the SLURM run scancels its jobs; SIGTERM
    # would make Snakemake wait for them), then the daemons.
    for f in "$WORK"/*.pid; do
        [ -s "$f" ] || continue
        pid=$(cat "$f")
        kill -INT "$pid" 2>/dev/null && echo "[test-slurm] interrupting the $(basename "$f" .pid) run"
        for _ in $(seq 60); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 1
        done
        kill -KILL "$pid" 2>/dev/null || true
    done
    bash "$REPO/tools/slurm/stop.sh" || true
    # Processes of this test's SLURM jobs that outlived them. This cluster tracks a job's
    # processes by parentage (proctrack/linuxproc, no cgroups): a process orphaned when scancel
    # kills the batch shell escapes the kill. Seen in the fault run: the cancelled job's
    # jobstep Snakemake sometimes hangs on SIGTERM. Their command lines name $WORK (unique).
    pids=$(pgrep -f -- "$WORK/" || true)
    if [ -n "$pids" ]; then
        echo "[test-slurm] killing leftover processes of this test's SLURM jobs:" $pids
        kill -KILL $pids 2>/dev/null || true
    fi
    if [ "$rc" = 0 ] && [ "${KEEP:-0}" != 1 ]; then
        rm -rf "$WORK"
    else
        echo "[test-slurm] work dirs and logs kept in $WORK"
    fi
    exit "$rc"
}
trap finish EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

now() { date +%s; }
t0=$(now)
bash "$REPO/tools/slurm/start.sh"
t_start=$(($(now) - t0))

# The tiny configuration with the repository's absolute data folder (as tests/test_workflow.py).
"$PY" - "$REPO" "$WORK/config.yaml" <<'EOF'
import sys
from pathlib import Path

import yaml

repo, out = Path(sys.argv[1]), Path(sys.argv[2])
config = yaml.safe_load((repo / "tests" / "config" / "tiny.yaml").read_text())
config["data_dir"] = str(repo / "resources" / "datasets")
out.write_text(yaml.safe_dump(config))
EOF

# Background commands of a script start with SIGINT ignored; this launcher restores it, so that
# finish() can interrupt a run the way Ctrl-C does.
SNAKEMAKE=("$PY" -c 'import os, signal, sys
signal.signal(signal.SIGINT, signal.SIG_DFL)
os.execv(sys.executable, [sys.executable, "-m", "snakemake", *sys.argv[1:]])'
    -s "$REPO/Snakefile" --configfile "$WORK/config.yaml")
run() { # name args...: one Snakemake run, its log and seconds in $WORK/<name>.{log,secs}
    local name=$1 t rc=0
    shift
    t=$(now)
    "${SNAKEMAKE[@]}" -d "$WORK/$name" "$@" >"$WORK/$name.log" 2>&1 &
    echo $! >"$WORK/$name.pid"
    wait $! || rc=$?
    rm -f "$WORK/$name.pid"
    echo $(($(now) - t)) >"$WORK/$name.secs"
    return "$rc"
}

# Four runs at the same time (the SLURM runs mostly wait: submission, status polls, queue):
#   gpu    the real profile alone on one training job: its sbatch call must ask for the GPU;
#          this node has none, so sbatch refuses the job (and Snakemake fails, as expected)
#   local  the reference, on the local executor
#   slurm  the tiny workflow through SLURM with the real profile plus the CI overlay
#   fault  FAULT_TABLE through the same profiles, with profiles/slurm's `retries` instead of the
#          overlay's 0, while tools/slurm/fault.sh requeues one training job in its rule and
#          cancels another (the requeued job waits cred_expire, 120 s, before it runs again)
FAULT_TABLE=layer_transfer.csv
RETRIES=$("$PY" -c 'import sys, yaml; print(yaml.safe_load(open(sys.argv[1]))["retries"])' \
    "$REPO/profiles/slurm/config.yaml")
[ "$RETRIES" -ge 1 ] || { echo "[test-slurm] FAILED: profiles/slurm has retries: $RETRIES" >&2; exit 1; }
echo "[test-slurm] runs: gpu (profiles/slurm alone, one training job: refused here, no GPU)," \
    "slurm (--profile profiles/slurm --profile tests/slurm/profile), local (--cores 2)," \
    "fault (results/cnn/tables/$FAULT_TABLE, same profiles with --retries $RETRIES:" \
    "one training job requeued, one cancelled)"
run gpu --profile "$REPO/profiles/slurm" --retries 0 results/cnn/checkpoints/mnist/seed0/history.csv &
gpu_pid=$!
run local --cores 2 &
local_pid=$!
run fault --profile "$REPO/profiles/slurm" --profile "$REPO/tests/slurm/profile" \
    --retries "$RETRIES" "results/cnn/tables/$FAULT_TABLE" &
fault_pid=$!
bash "$REPO/tools/slurm/fault.sh" "$WORK/fault.log" "$fault_pid" "$WORK/fault.injected" &
inject_pid=$!
slurm_rc=0
run slurm --profile "$REPO/profiles/slurm" --profile "$REPO/tests/slurm/profile" || slurm_rc=$?
if [ "$slurm_rc" != 0 ]; then # no need to finish the reference and the fault run
    for f in "$WORK/local.pid" "$WORK/fault.pid"; do
        [ -s "$f" ] && kill -INT "$(cat "$f")" 2>/dev/null || true
    done
fi
local_rc=0
wait "$local_pid" || local_rc=$?
gpu_rc=0
wait "$gpu_pid" || gpu_rc=$?
fault_rc=0
wait "$fault_pid" || fault_rc=$?
inject_rc=0
wait "$inject_pid" || inject_rc=$?
inject_pid=""

for name in slurm local fault; do
    rc_var=${name}_rc
    if [ "${!rc_var}" != 0 ]; then
        tail -n 60 "$WORK/$name.log"
        echo "[test-slurm] FAILED: the $name run exited ${!rc_var} (log: $WORK/$name.log)" >&2
        exit 1
    fi
    echo "[test-slurm] $name run done in $(cat "$WORK/$name.secs") s"
done

if [ "$gpu_rc" = 0 ]; then
    echo "[test-slurm] FAILED: a GPU job was accepted by a cluster without GPUs (log: $WORK/gpu.log)" >&2
    exit 1
fi
call=$(grep -m1 -A1 "sbatch call:" "$WORK/gpu.log" | tail -n 1)
for flag in "--gpus=1" "-p gpu" "--mem 4000" "-t 120"; do
    if [[ " $call " != *" $flag "* ]]; then
        tail -n 30 "$WORK/gpu.log"
        echo "[test-slurm] FAILED: the pretrain sbatch call lacks '$flag' (log: $WORK/gpu.log)" >&2
        exit 1
    fi
done
echo "[test-slurm] gpu run: $(grep -m1 -o "sbatch: error: Invalid generic resource.*specification" "$WORK/gpu.log")" \
    "for $(grep -o -- "-p gpu .*--gpus=1" <<<"$call")"

"$PY" "$REPO/tools/slurm/check_run.py" \
    --slurm-dir "$WORK/slurm" --slurm-log "$WORK/slurm.log" \
    --local-dir "$WORK/local" --local-log "$WORK/local.log" \
    --jobcomp "$STATE/jobcomp.log" --local-rules all

# The fault run: both faults injected (fault.sh wrote its record), then the same checks on the
# part of the workflow it ran, plus the requeue and the retry (check_run.py, section (c)).
if [ "$inject_rc" != 0 ] || [ ! -s "$WORK/fault.injected" ]; then
    echo "[test-slurm] FAILED: the fault run finished without both faults injected" \
        "(fault.sh exit $inject_rc; log: $WORK/fault.log)" >&2
    exit 1
fi
requeued=$(awk '$1 == "requeued" { print $2 }' "$WORK/fault.injected")
cancelled=$(awk '$1 == "cancelled" { print $2 }' "$WORK/fault.injected")
echo
echo "[test-slurm] fault run: $(sed 's/$/;/' "$WORK/fault.injected" | tr '\n' ' ')checks:"
"$PY" "$REPO/tools/slurm/check_run.py" \
    --slurm-dir "$WORK/fault" --slurm-log "$WORK/fault.log" \
    --local-dir "$WORK/local" --local-log "$WORK/local.log" \
    --jobcomp "$STATE/jobcomp.log" --local-rules all --subset "$FAULT_TABLE" \
    --requeued "$requeued" --cancelled "$cancelled"

echo "[test-slurm] durations (runs at the same time): start ${t_start} s, SLURM run" \
    "$(cat "$WORK/slurm.secs") s, local run $(cat "$WORK/local.secs") s, gpu run" \
    "$(cat "$WORK/gpu.secs") s, fault run $(cat "$WORK/fault.secs") s; total $(($(now) - t0)) s"
