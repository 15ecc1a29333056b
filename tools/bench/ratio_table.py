#!/usr/bin/env python3
"""One Markdown table of fadlora / PyTorch ratios from a folder of benchmark JSON files.

    python tools/bench/ratio_table.py results/gpu_checks
    python tools/bench/ratio_table.py results/cpu_checks --cpu

Pairs files named `<case>_fadlora.json` with `<case>_torch.json` (as gpu_checks.sh and
cpu_checks.sh write them; a file that is empty or not JSON counts as a failed run) and prints,
per case, step or forward time, the phase split, peak memory and the ratio with the issue's
target. Cases without a PyTorch twin (wgpu) are compared with the f32 PyTorch run of the same
mode. Standard library only.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

# case prefix -> (what is compared, target, direction)
GPU_TARGETS = {
    "step_full": ("step time", 0.9, "<="),
    "step_lora": ("step time", 0.8, "<="),
    "forward": ("utt/s", 1.2, ">="),
}
CPU_TARGETS = {
    "step_full": ("step time", 1.0, "<="),
    "step_lora": ("step time", 1.0, "<="),
    "forward": ("time", 1.0, "<="),
}
TARGETS = GPU_TARGETS


def load(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text().strip().splitlines()[-1])
    except (OSError, IndexError, json.JSONDecodeError):
        return None


def target_of(case: str):
    for prefix, target in TARGETS.items():
        if case.removeprefix("wgpu_").startswith(prefix):
            return target
    return None


def mib(value) -> str:
    return "-" if value is None else f"{value / 2**20:,.0f}"


def phases(result: dict) -> str:
    p = result.get("phase_ms")
    if not p:
        return "-"
    return f"{p['forward_ms']:.1f} / {p['backward_ms']:.1f} / {p['optimizer_ms']:.1f}"


def main() -> None:
    global TARGETS
    args = [a for a in sys.argv[1:] if a != "--cpu"]
    if "--cpu" in sys.argv[1:]:
        TARGETS = CPU_TARGETS
    folder = Path(args[0] if args else "results/gpu_checks")
    cases = sorted(p.name.removesuffix("_fadlora.json") for p in folder.glob("*_fadlora.json"))
    rows = []
    for case in cases:
        ours = load(folder / f"{case}_fadlora.json")
        twin_case = case.removeprefix("wgpu_")
        theirs = load(folder / f"{twin_case}_torch.json")
        what, target, direction = target_of(case) or ("", None, "")
        if ours is None or theirs is None:
            missing = "fadlora" if ours is None else "PyTorch"
            cells = [case, what, f"{missing} run failed (see {folder}/{case}*.log)"] + [""] * 7
            rows.append("| " + " | ".join(cells) + " |")
            continue
        if what == "utt/s":
            a, b = ours["utterances_per_s"], theirs["utt_per_s"]
            ratio = a / b
            values = f"{a:.1f} | {b:.1f}"
        elif what == "time" and "median_ms" in ours:
            a, b = ours["median_ms"], theirs["median_ms"]
            ratio = a / b
            values = f"{a:.1f} ms | {b:.1f} ms"
        else:
            a, b = ours["step_ms_median"], theirs["step_ms_median"]
            ratio = a / b
            values = f"{a:.1f} ms | {b:.1f} ms"
        mem_ours = ours.get("peak_in_use_bytes", ours.get("peak_mem_bytes"))
        mem_theirs = theirs.get("peak_in_use_bytes", theirs.get("peak_mem_bytes"))
        mem_ratio = "-" if not (mem_ours and mem_theirs) else f"{mem_ours / mem_theirs:.2f}"
        reserved = f"{mib(ours.get('peak_reserved_bytes'))} / {mib(theirs.get('peak_reserved_bytes'))}"
        met = ""
        if target is not None:
            ok = ratio <= target if direction == "<=" else ratio >= target
            met = f"{direction} {target}: {'yes' if ok else 'no'}"
        rows.append(
            f"| {case} | {what} | {values} | **{ratio:.2f}** | {met} | {phases(ours)} | {phases(theirs)} "
            f"| {mib(mem_ours)} / {mib(mem_theirs)} ({mem_ratio}) | {reserved} |"
        )
    print(
        "| case | measure | fadlora | PyTorch | fadlora / PyTorch | target | fadlora fwd / bwd / optim ms "
        "| PyTorch fwd / bwd / optim ms | peak in use MiB (ratio) | peak reserved MiB |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for row in rows:
        print(row)
    for path in sorted(folder.glob("parity_*.json")):
        result = load(path)
        if result is None:
            print(f"\nforward parity {path.stem}: run failed (see {folder}/{path.stem}.log)")
            continue
        verdict = "ok" if not result["over"] else f"over: {', '.join(result['over'])}"
        print(
            f"\nforward parity against transformers on {result['backend']}: max relative diff "
            f"{result['max_relative_diff']:.2e} (bound {result['tolerance_relative']:g}): {verdict}"
        )


if __name__ == "__main__":
    main()
