#!/usr/bin/env bash
# fadlora (flex) against PyTorch on the CPU, in one call: the `tiny` preset, batch 4 x 32,000
# samples, PyTorch limited to as many threads as fadlora's rayon pool (the machine's cores):
# forward (inference), training step with full fine-tuning and with LoRA q+v r=4. Ends with a
# table of ratios (target: <= 1.0 each) and the phase split of each step.
#
#   cargo build --release -p fadlora-cli
#   bash tools/bench/cpu_checks.sh [FADLORA] [PYTHON] [OUT]
# PYTHON needs torch, transformers and peft (tools/fixtures/requirements.txt).
set -uo pipefail
FADLORA=${1:-target/release/fadlora}
PYTHON=${2:-python3}
OUT=${3:-results/cpu_checks}
THREADS=${THREADS:-$(nproc)}
mkdir -p "$OUT"
here=$(cd "$(dirname "$0")" && pwd)
run() { # name command...
    local name=$1
    shift
    "$@" > "$OUT/$name.json" 2> "$OUT/$name.log"
    echo "$name: rc=$?"
}
TINY=(--preset tiny --batch 4 --samples 32000)
run forward_f32_fadlora "$FADLORA" bench forward --backend flex "${TINY[@]}" --warmup 3 --iters 10
run forward_f32_torch "$PYTHON" "$here/torch_forward.py" --device cpu --threads "$THREADS" "${TINY[@]}"
for mode in full lora; do
    lora=()
    [ "$mode" = lora ] && lora=(--rank 4 --targets q,v)
    run "step_${mode}_f32_fadlora" "$FADLORA" bench step --backend flex "${TINY[@]}" --mode "$mode" "${lora[@]}"
    run "step_${mode}_f32_torch" "$PYTHON" "$here/torch_step.py" --device cpu --threads "$THREADS" "${TINY[@]}" --mode "$mode" "${lora[@]}"
done
"$PYTHON" "$here/ratio_table.py" "$OUT" --cpu | tee "$OUT/summary.md"
