#!/usr/bin/env bash
# make test-slurm: the tiny test configuration through a real single-node SLURM cluster with the
# real profile (profiles/slurm, plus the CI overlay tests/slurm/profile), and the same
# configuration on the local executor; then tools/slurm/check_run.py checks that every job but
# `all` went through sbatch and that the result tables of both runs are byte-identical. Also
# checks that profiles/slurm alone asks sbatch for a GPU for training (refused here: no GPU).
# Starts the cluster (tools/slurm/start.sh) and stops it again on any exit (trap).
# Needs root (apt-get, daemons). Work dirs and logs: /tmp/transferability-test-slurm.*
# (removed after a pass unless KEEP=1).
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
PY=$REPO/.venv/bin/python
STATE=${TRANSFERABILITY_SLURM_DIR:-/tmp/transferability-slurm}
WORK=$(mktemp -d /tmp/transferability-test-slurm.XXXXXX)

finish() {
    local rc=$? f pid
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

# Three runs at the same time (the SLURM run mostly waits: submission, status polls, queue):
#   gpu    the real profile alone on one training job: its sbatch call must ask for the GPU;
#          this node has none, so sbatch refuses the job (and Snakemake fails, as expected)
#   local  the reference, on the local executor
#   slurm  the tiny workflow through SLURM with the real profile plus the CI overlay
echo "[test-slurm] runs: gpu (profiles/slurm alone, one training job: refused here, no GPU)," \
    "slurm (--profile profiles/slurm --profile tests/slurm/profile), local (--cores 2)"
run gpu --profile "$REPO/profiles/slurm" --retries 0 results/cnn/checkpoints/mnist/seed0/history.csv &
gpu_pid=$!
run local --cores 2 &
local_pid=$!
slurm_rc=0
run slurm --profile "$REPO/profiles/slurm" --profile "$REPO/tests/slurm/profile" || slurm_rc=$?
if [ "$slurm_rc" != 0 ] && [ -s "$WORK/local.pid" ]; then
    kill -INT "$(cat "$WORK/local.pid")" 2>/dev/null || true # no need to finish the reference
fi
local_rc=0
wait "$local_pid" || local_rc=$?
gpu_rc=0
wait "$gpu_pid" || gpu_rc=$?

for name in slurm local; do
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

echo "[test-slurm] durations (runs at the same time): start ${t_start} s, SLURM run" \
    "$(cat "$WORK/slurm.secs") s, local run $(cat "$WORK/local.secs") s, gpu run" \
    "$(cat "$WORK/gpu.secs") s; total $(($(now) - t0)) s"
