#!/usr/bin/env bash
# GPU checks of issues 3 and 5 in one go, for a machine with an NVIDIA GPU.
# Build here first (CUDA needs no toolkit at build time):
#   cargo build --release -p fadlora-cli --no-default-features --features cuda,wgpu
# then run from the repository root:  bash tools/bench/gpu_checks.sh [FADLORA] [OUT]
# Each result is one JSON file in OUT (default: results/gpu_checks).
set -uo pipefail
FADLORA=${1:-target/release/fadlora}
OUT=${2:-results/gpu_checks}
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"

run() {
    local name=$1; shift
    local t0=$(date +%s)
    echo "== $name: $*"
    timeout 240 "$FADLORA" "$@" > "$OUT/$name.json" 2> "$OUT/$name.log"
    echo "   rc=$? in $(( $(date +%s) - t0 ))s: $(tail -c 600 "$OUT/$name.json")"
}

# Issue 3: XLS-R 300M forward at batch 32 x 64,600 (DESIGN.md §5: PyTorch 258 utt/s).
run forward_xlsr_b32 bench forward --backend cuda --preset xls-r-300m --batch 32 --samples 64600 --warmup 2 --iters 5
# Issue 5: training step at batch 8 x 64,600 (PyTorch: full 109.4 ms / 8.42 GiB, LoRA q+v r4 81.1 ms / 4.19 GiB).
run step_xlsr_full bench step --backend cuda --preset xls-r-300m --mode full --batch 8 --samples 64600 --warmup 3 --iters 10
run step_xlsr_lora_qv_r4 bench step --backend cuda --preset xls-r-300m --mode lora --rank 4 --targets q,v --batch 8 --samples 64600 --warmup 3 --iters 10
# A few steps on wgpu (Vulkan) too.
run step_tiny_wgpu bench step --backend wgpu --preset tiny --mode lora --rank 4 --targets q,v --batch 4 --samples 32000 --warmup 2 --iters 5
run step_tiny_cuda bench step --backend cuda --preset tiny --mode lora --rank 4 --targets q,v --batch 4 --samples 32000 --warmup 2 --iters 5
"$FADLORA" train --config experiments/runs/micro_smoke.toml --backend wgpu --output-dir "$OUT/micro_smoke_wgpu" --no-progress > "$OUT/micro_smoke_wgpu.txt" 2>&1
echo "== micro_smoke on wgpu: rc=$?"; tail -5 "$OUT/micro_smoke_wgpu.txt"
