#!/usr/bin/env bash
# fadlora against PyTorch + PEFT on one NVIDIA GPU, in one call, with one table of ratios at
# the end. XLS-R 300M (random init), batch 8 x 64,600 samples:
#   - training step, full fine-tuning and LoRA q+v r=4:
#       fadlora f32 (cubecl runs f32 matmuls on TF32 tensor cores) vs PyTorch f32 + TF32,
#       fadlora bf16 vs PyTorch bf16 autocast + torch.compile;
#   - forward at batch 32 (inference), f32 vs f32 + TF32 and bf16 vs bf16 autocast;
#   - the same f32 training steps on wgpu when a Vulkan driver is there;
#   - f32 forward parity with transformers on the fixtures (features_parity.py), cuda and wgpu.
# Budget: under 8 minutes on an H200 (each command has its own timeout).
#
# Build the binary on any machine (no CUDA toolkit needed), e.g.
#   cargo build --release -p fadlora-cli --no-default-features --features cuda,wgpu
# then, from the repository root on the GPU machine:
#   bash tools/bench/gpu_checks.sh [FADLORA] [PYTHON] [OUT]
# PYTHON needs torch, transformers and peft (tools/fixtures/requirements.txt). Results: one
# JSON file per command in OUT (default results/gpu_checks), the table on stdout and in
# OUT/summary.md.
#
# wgpu needs a Vulkan loader: if libvulkan.so.1 is missing and a libvulkan1_*.deb lies in
# tools/bench/vendor/ (e.g. fetched with `apt-get download libvulkan1`), it is unpacked first.
set -uo pipefail
FADLORA=${1:-target/release/fadlora}
PYTHON=${2:-python3}
OUT=${3:-results/gpu_checks}
mkdir -p "$OUT"
here=$(cd "$(dirname "$0")" && pwd)
start=$(date +%s)
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/gpu.txt"

# The autotune cache (cubecl) lives under target/ next to the nearest Cargo.toml: keep it
# between runs, so only the first run of a shape pays for tuning.
export CUBECL_AUTOTUNE_LEVEL=${CUBECL_AUTOTUNE_LEVEL:-balanced}

run() { # name timeout command...
    local name=$1 limit=$2
    shift 2
    local t0=$(date +%s)
    timeout "$limit" "$@" > "$OUT/$name.json" 2> "$OUT/$name.log"
    local rc=$?
    echo "[$(( $(date +%s) - start ))s] $name: rc=$rc in $(( $(date +%s) - t0 ))s"
}

# f32 forward against transformers' hidden states on the fixtures, within 1e-3 relative (TF32).
run parity_cuda 120 "$PYTHON" "$here/features_parity.py" "$FADLORA" cuda --tol 1e-3

XLSR=(--preset xls-r-300m --batch 8 --samples 64600)
STEP_ITERS=(--warmup 5 --iters 10)
for mode in full lora; do
    lora=()
    [ "$mode" = lora ] && lora=(--rank 4 --targets q,v)
    run "step_${mode}_f32_fadlora" 150 "$FADLORA" bench step --backend cuda "${XLSR[@]}" --mode "$mode" "${lora[@]}" "${STEP_ITERS[@]}" --precision f32
    run "step_${mode}_f32_torch" 90 "$PYTHON" "$here/torch_step.py" --device cuda "${XLSR[@]}" --mode "$mode" "${lora[@]}" "${STEP_ITERS[@]}" --tf32
    run "step_${mode}_bf16_fadlora" 120 "$FADLORA" bench step --backend cuda "${XLSR[@]}" --mode "$mode" "${lora[@]}" "${STEP_ITERS[@]}" --precision bf16
    run "step_${mode}_bf16_torch" 150 "$PYTHON" "$here/torch_step.py" --device cuda "${XLSR[@]}" --mode "$mode" "${lora[@]}" "${STEP_ITERS[@]}" --bf16 --compile
done

FWD=(--preset xls-r-300m --batch 32 --samples 64600 --warmup 3 --iters 10)
run forward_f32_fadlora 90 "$FADLORA" bench forward --backend cuda "${FWD[@]}" --precision f32
run forward_f32_torch 60 "$PYTHON" "$here/torch_forward.py" --device cuda "${FWD[@]}" --tf32 --no-split
run forward_bf16_fadlora 90 "$FADLORA" bench forward --backend cuda "${FWD[@]}" --precision bf16
run forward_bf16_torch 60 "$PYTHON" "$here/torch_forward.py" --device cuda "${FWD[@]}" --bf16 --no-split

# wgpu (Vulkan) on the same GPU, where a driver and loader exist.
if ! ldconfig -p | grep -q libvulkan.so.1; then
    deb=$(ls "$here"/vendor/libvulkan1_*.deb 2>/dev/null | head -1)
    [ -n "$deb" ] && dpkg -x "$deb" / && ldconfig
fi
for icd in /usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json /usr/share/vulkan/icd.d/nvidia_icd.json /etc/vulkan/icd.d/nvidia_icd.json; do
    [ -f "$icd" ] && export VK_DRIVER_FILES=${VK_DRIVER_FILES:-$icd} && break
done
if ldconfig -p | grep -q libvulkan.so.1 && [ -n "${VK_DRIVER_FILES:-}" ]; then
    run parity_wgpu 120 "$PYTHON" "$here/features_parity.py" "$FADLORA" wgpu --tol 1e-3
    for mode in full lora; do
        lora=()
        [ "$mode" = lora ] && lora=(--rank 4 --targets q,v)
        run "wgpu_step_${mode}_f32_fadlora" 150 "$FADLORA" bench step --backend wgpu "${XLSR[@]}" --mode "$mode" "${lora[@]}" "${STEP_ITERS[@]}" --precision f32
    done
else
    echo "no Vulkan loader or NVIDIA ICD: wgpu skipped"
fi

"$PYTHON" "$here/ratio_table.py" "$OUT" | tee "$OUT/summary.md"
echo "total $(( $(date +%s) - start ))s"
