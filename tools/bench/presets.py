"""Shared pieces of the PyTorch benchmarks: wav2vec2 presets (docs/reference.md §2-3),
timing helpers, device handling."""

from __future__ import annotations

import resource
import statistics
import time

import torch
from transformers import Wav2Vec2Config

XLSR_KERNELS = [10, 3, 3, 3, 3, 2, 2]
XLSR_STRIDES = [5, 2, 2, 2, 2, 2, 2]


def preset_config(name: str, *, dropout: float = 0.1, layerdrop: float = 0.0) -> Wav2Vec2Config:
    """`tiny` (CPU benchmark config of docs/reference.md §2), `base` (wav2vec2-base layout),
    `xls-r-300m`. SpecAugment masking is off (mask_time_prob 0), so no `masked_spec_embed`;
    LayerDrop off by default so every step runs every layer."""
    common = dict(
        conv_kernel=XLSR_KERNELS,
        conv_stride=XLSR_STRIDES,
        hidden_act="gelu",
        feat_extract_activation="gelu",
        hidden_dropout=dropout,
        attention_dropout=dropout,
        activation_dropout=0.0,
        feat_proj_dropout=dropout,
        layerdrop=layerdrop,
        mask_time_prob=0.0,
        mask_feature_prob=0.0,
        num_conv_pos_embeddings=128,
        num_conv_pos_embedding_groups=16,
    )
    if name == "tiny":
        return Wav2Vec2Config(
            **common,
            hidden_size=256,
            num_hidden_layers=4,
            num_attention_heads=4,
            intermediate_size=1024,
            conv_dim=[256] * 7,
            conv_bias=True,
            feat_extract_norm="layer",
            do_stable_layer_norm=True,
        )
    if name == "base":
        return Wav2Vec2Config(
            **common,
            hidden_size=768,
            num_hidden_layers=12,
            num_attention_heads=12,
            intermediate_size=3072,
            conv_dim=[512] * 7,
            conv_bias=False,
            feat_extract_norm="group",
            do_stable_layer_norm=False,
        )
    if name == "xls-r-300m":
        return Wav2Vec2Config(
            **common,
            hidden_size=1024,
            num_hidden_layers=24,
            num_attention_heads=16,
            intermediate_size=4096,
            conv_dim=[512] * 7,
            conv_bias=True,
            feat_extract_norm="layer",
            do_stable_layer_norm=True,
        )
    raise SystemExit(f"unknown preset {name!r} (tiny, base, xls-r-300m)")


PRESETS = ["tiny", "base", "xls-r-300m"]


def setup(device: str, threads: int, seed: int = 0) -> torch.device:
    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    if device == "cuda":
        if not torch.cuda.is_available():
            raise SystemExit("--device cuda but torch.cuda.is_available() is False")
        torch.cuda.manual_seed_all(seed)
        torch.cuda.reset_peak_memory_stats()
    return torch.device(device)


def sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def timed(fn, dev: torch.device, warmup: int, iters: int, reset_memory: bool = False) -> list[float]:
    """Run fn warmup times, then iters timed runs; returns milliseconds per run. With
    reset_memory, peak memory counts only the timed runs."""
    for _ in range(warmup):
        fn()
    sync(dev)
    if reset_memory:
        reset_peak_memory(dev)
    out = []
    for _ in range(iters):
        sync(dev)
        t0 = time.perf_counter()
        fn()
        sync(dev)
        out.append((time.perf_counter() - t0) * 1e3)
    return out


def p90(xs: list[float]) -> float:
    s = sorted(xs)
    # nearest-rank 90th percentile
    k = max(0, min(len(s) - 1, int(-(-0.9 * len(s) // 1)) - 1))
    return s[k]


def summary(xs: list[float]) -> dict:
    return {
        "median_ms": round(statistics.median(xs), 3),
        "p90_ms": round(p90(xs), 3),
        "min_ms": round(min(xs), 3),
    }


def reset_peak_memory(dev: torch.device) -> None:
    """Forget the peaks so far (called after the warm-up, as fadlora's benchmarks do)."""
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
        torch.cuda.reset_peak_memory_stats(dev)
    else:
        try:  # resets VmHWM to the current RSS (Linux)
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
        except OSError:
            pass


def peak_memory(dev: torch.device) -> dict:
    if dev.type == "cuda":
        allocated = int(torch.cuda.max_memory_allocated(dev))
        return {
            "peak_mem_bytes": allocated,
            "peak_in_use_bytes": allocated,
            "peak_reserved_bytes": int(torch.cuda.max_memory_reserved(dev)),
            "peak_mem_kind": "torch.cuda.max_memory_allocated / max_memory_reserved",
        }
    rss = None
    try:
        for line in open("/proc/self/status"):
            if line.startswith("VmHWM:"):
                rss = int(line.split()[1]) * 1024
    except OSError:
        pass
    if rss is None:  # ru_maxrss is KiB on Linux and cannot be reset
        rss = int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024
    return {
        "peak_mem_bytes": rss,
        "peak_in_use_bytes": rss,
        "peak_reserved_bytes": None,
        "peak_mem_kind": "process peak RSS (VmHWM)",
    }


def device_name(dev: torch.device) -> str:
    if dev.type == "cuda":
        return torch.cuda.get_device_name(dev)
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "cpu"


def autocast_ctx(dev: torch.device, amp: str):
    if amp == "none":
        return torch.autocast(device_type=dev.type, enabled=False)
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}[amp]
    return torch.autocast(device_type=dev.type, dtype=dtype)


def add_precision_args(ap) -> None:
    """The precision flags both benchmark scripts share."""
    ap.add_argument("--amp", default="none", choices=["none", "bf16", "fp16"], help="autocast dtype")
    ap.add_argument("--bf16", action="store_true", help="same as --amp bf16")
    ap.add_argument(
        "--precision",
        choices=["f32", "bf16", "f16"],
        help="fadlora's spelling: f32 = --amp none, bf16 = --amp bf16, f16 = --amp fp16",
    )
    ap.add_argument(
        "--tf32",
        action="store_true",
        help="f32 matmuls and convolutions on TF32 tensor cores (as burn's cubecl does on such GPUs)",
    )


def apply_precision_args(args) -> None:
    if args.bf16:
        args.amp = "bf16"
    if args.precision is not None:
        args.amp = {"f32": "none", "bf16": "bf16", "f16": "fp16"}[args.precision]
    torch.backends.cuda.matmul.allow_tf32 = args.tf32
    torch.backends.cudnn.allow_tf32 = args.tf32
