#!/usr/bin/env bash
# CI stage: `fadlora sweep --slurm` against a real SLURM scheduler (a single-node cluster on this
# machine, tools/slurm/local_cluster.sh). It checks that
#   - a micro sweep of four runs submitted as one job array finishes, and the report lists each
#     run exactly once;
#   - a task cancelled with scancel after its first checkpoint shows as failed in --status, is
#     the only run a second --slurm submits, and resumes from its checkpoint;
#   - a third --slurm submits nothing: a finished run is never resubmitted.
# Usage: tools/slurm/ci_check.sh FADLORA_BINARY   (as root, with slurm-wlm and munge installed)
set -euo pipefail
cd "$(dirname "$0")/../.."

fadlora=$(realpath "$1")
experiment=experiments/slurm_micro.toml
results=$(mktemp -d)/results
sweep() { "$fadlora" sweep "$experiment" --results "$results" "$@"; }
fail() { echo "FAIL: $*" >&2; exit 1; }

# Waits until no task of job $1 is queued or running.
wait_for_job() {
    for _ in $(seq 600); do
        if [ -z "$(squeue --noheader --jobs="$1" 2>/dev/null)" ]; then return 0; fi
        sleep 1
    done
    fail "job $1 still in the queue after 10 minutes"
}

echo "-- starting a single-node SLURM cluster"
tools/slurm/local_cluster.sh start

echo "-- status before any submission"
sweep --status

echo "-- first submission"
out=$(sweep --slurm)
echo "$out"
job=$(sed -n 's/^job id: //p' <<<"$out")
[ -n "$job" ] || fail "no job ID printed"
grep -q "submitted 4 run(s)" <<<"$out" || fail "expected 4 runs submitted"

echo "-- cancelling the first task that has checkpointed an epoch"
victim="" task=""
for _ in $(seq 1200); do
    line=$(sweep --status | grep -E "running \(SLURM task ${job}_[0-9]+ on [^,]+, [0-9]+ epoch" | head -n 1 || true)
    if [ -n "$line" ]; then
        victim=$(awk '{print $1}' <<<"$line")
        task=$(sed -E 's/.*SLURM task ([0-9]+_[0-9]+).*/\1/' <<<"$line")
        break
    fi
    sleep 0.25
done
[ -n "$victim" ] || fail "no task was seen running with a checkpoint"
echo "$line"
scancel "$task"
echo "scancel $task ($victim)"
wait_for_job "$job"

echo "-- status after the first job array"
status=$(sweep --status)
echo "$status"
awk -v id="$victim" '$1 == id && $2 == "failed"' <<<"$status" | grep -q "SLURM task $task" \
    || fail "$victim should show as failed"
[ "$(grep -cE '^ +[^ ]+ +finished$' <<<"$status")" = 3 ] || fail "expected the other 3 runs finished"

echo "-- second submission: only the cancelled run"
out=$(sweep --slurm)
echo "$out"
grep -q "submitted 1 run(s)" <<<"$out" || fail "expected exactly the cancelled run resubmitted"
job2=$(sed -n 's/^job id: //p' <<<"$out")
sweep --status
wait_for_job "$job2"

echo "-- status after the second job array"
status=$(sweep --status)
echo "$status"
[ "$(grep -cE '^ +[^ ]+ +finished$' <<<"$status")" = 4 ] || fail "expected all 4 runs finished"
log="$results/slurm_micro/$victim/train.log"
grep -E "resuming" "$log" | tail -n 1
grep -qE "epochs_done=[1-9]" "$log" || fail "$victim did not resume from a checkpoint"

echo "-- third submission: nothing left"
out=$(sweep --slurm)
echo "$out"
grep -q "nothing to submit" <<<"$out" || fail "a finished run was resubmitted"

echo "-- report"
"$fadlora" report --results "$results" slurm_micro
runs="$results/slurm_micro/report/runs.csv"
sed -n '/^## Summary/,/^This table/p' "$results/slurm_micro/report/report.md"
rows=$(tail -n +2 "$runs" | cut -d, -f1 | sort)
[ "$(wc -l <<<"$rows")" = 4 ] || fail "runs.csv should list 4 runs"
[ "$(uniq <<<"$rows" | wc -l)" = 4 ] || fail "a run is listed twice in runs.csv"
echo "ok: SLURM sweep, cancel and resume, no resubmission of finished runs"
