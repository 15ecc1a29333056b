#!/usr/bin/env python3
"""PyTorch training-step benchmark: Hugging Face Wav2Vec2Model (random init) + mean pooling
+ linear 2-class head, weighted cross-entropy [0.1 spoof, 0.9 bona fide], AdamW.
One step = zero_grad + forward + loss + backward + optimizer.step. Prints ONE JSON object.

    python tools/bench/torch_step.py --mode full                      # tiny, batch 4 x 32000, CPU, 2 threads
    python tools/bench/torch_step.py --mode lora --rank 4 --targets q,v
    python tools/bench/torch_step.py --preset xls-r-300m --device cuda --batch 8 --samples 64600 --mode lora

LoRA uses Hugging Face PEFT (LoraConfig + get_peft_model) on the wav2vec2 encoder; the head
stays trainable. Targets: q,k,v,o,ffn_in,ffn_out (-> q_proj, k_proj, v_proj, out_proj,
intermediate_dense, output_dense). In LoRA mode nothing below the adapted layers needs a
gradient, so by default the conv feature encoder runs without autograd (HF
`freeze_feature_encoder`), as any LoRA training would; `--conv-grad` keeps HF's default
(its feature encoder marks its input as requiring grad in train mode, so backward runs
through the frozen conv stack). In full mode everything trains.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import warnings
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from presets import (  # noqa: E402
    PRESETS,
    add_precision_args,
    apply_precision_args,
    autocast_ctx,
    device_name,
    peak_memory,
    preset_config,
    reset_peak_memory,
    setup,
    summary,
    sync,
    timed,
)

TARGET_MAP = {
    "q": "q_proj",
    "k": "k_proj",
    "v": "v_proj",
    "o": "out_proj",
    "ffn_in": "intermediate_dense",
    "ffn_out": "output_dense",
}


class Detector(nn.Module):
    def __init__(self, encoder: nn.Module, hidden: int):
        super().__init__()
        self.encoder = encoder
        self.head = nn.Linear(hidden, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.encoder(x).last_hidden_state  # [B, T, H]
        return self.head(h.mean(dim=1))  # logits [B, 2]: 0 = spoof, 1 = bona fide


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", "--config", dest="preset", default="tiny", choices=PRESETS)
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--samples", type=int, default=32000)
    ap.add_argument("--mode", default="full", choices=["full", "lora"])
    ap.add_argument("--rank", type=int, default=4)
    ap.add_argument("--alpha", type=float, default=None, help="LoRA alpha (default 2 x rank)")
    ap.add_argument("--targets", default="q,v", help="comma list of q,k,v,o,ffn_in,ffn_out")
    ap.add_argument("--lr", type=float, default=1e-6)
    ap.add_argument("--weight-decay", type=float, default=1e-4)
    ap.add_argument("--dropout", type=float, default=0.1, help="hidden/attention/feat_proj dropout")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--iters", type=int, default=10)
    add_precision_args(ap)
    ap.add_argument("--attn", default="sdpa", choices=["sdpa", "eager"])
    ap.add_argument("--compile", action="store_true", help="torch.compile the detector")
    ap.add_argument(
        "--conv-grad",
        action="store_true",
        help="LoRA: keep HF's default of running autograd through the frozen conv feature encoder "
        "(Wav2Vec2FeatureEncoder sets requires_grad on its input in train mode)",
    )
    args = ap.parse_args()
    apply_precision_args(args)
    warnings.filterwarnings("ignore", category=FutureWarning)

    from transformers import Wav2Vec2Model
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    dev = setup(args.device, args.threads)
    config = preset_config(args.preset, dropout=args.dropout)
    config._attn_implementation = args.attn
    encoder = Wav2Vec2Model(config)

    targets = [t.strip() for t in args.targets.split(",") if t.strip()]
    lora = None
    if args.mode == "lora":
        from peft import LoraConfig, get_peft_model

        unknown = [t for t in targets if t not in TARGET_MAP]
        if unknown:
            raise SystemExit(f"unknown LoRA targets {unknown}; use {list(TARGET_MAP)}")
        alpha = args.alpha if args.alpha is not None else 2.0 * args.rank
        lora = LoraConfig(
            r=args.rank, lora_alpha=alpha, lora_dropout=0.0, target_modules=[TARGET_MAP[t] for t in targets]
        )
        encoder = get_peft_model(encoder, lora)
        if not args.conv_grad:
            encoder.get_base_model().freeze_feature_encoder()  # no autograd through the frozen conv stack

    model = Detector(encoder, config.hidden_size).to(dev).train()
    trainable = [p for p in model.parameters() if p.requires_grad]
    n_trainable = sum(p.numel() for p in trainable)
    n_total = sum(p.numel() for p in model.parameters())
    n_head = sum(p.numel() for p in model.head.parameters())

    opt = torch.optim.AdamW(trainable, lr=args.lr, weight_decay=args.weight_decay)
    loss_fn = nn.CrossEntropyLoss(weight=torch.tensor([0.1, 0.9], device=dev))
    g = torch.Generator().manual_seed(1)
    x = (torch.rand(args.batch, args.samples, generator=g) * 2 - 1).to(dev)
    y = torch.tensor([i % 2 for i in range(args.batch)], device=dev)
    fwd = torch.compile(model) if args.compile else model
    losses = []

    def step(phases: list | None = None):
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        with autocast_ctx(dev, args.amp):
            logits = fwd(x)
            loss = loss_fn(logits.float(), y)
        if phases is not None:
            sync(dev)
            t1 = time.perf_counter()
        loss.backward()
        if phases is not None:
            sync(dev)
            t2 = time.perf_counter()
        opt.step()
        losses.append(loss.detach())
        if phases is not None:
            sync(dev)
            t3 = time.perf_counter()
            phases.append(((t1 - t0) * 1e3, (t2 - t1) * 1e3, (t3 - t2) * 1e3))

    times = timed(step, dev, args.warmup, args.iters, reset_memory=True)
    memory = peak_memory(dev)
    med = summary(times)
    # As fadlora's bench step: separate iterations with a sync after every phase.
    phases: list = []
    for _ in range(args.iters):
        step(phases)
    phase_median = [round(statistics.median(p[i] for p in phases), 3) for i in range(3)]
    result = {
        "framework": "pytorch",
        "torch_version": torch.__version__,
        "transformers_version": __import__("transformers").__version__,
        "peft_version": __import__("peft").__version__ if lora is not None else None,
        "device": args.device,
        "device_name": device_name(dev),
        "threads": torch.get_num_threads(),
        "config": args.preset,
        "batch": args.batch,
        "samples": args.samples,
        "mode": args.mode,
        "rank": args.rank if lora is not None else None,
        "alpha": lora.lora_alpha if lora is not None else None,
        "targets": targets if lora is not None else None,
        "amp": args.amp,
        "tf32": args.tf32,
        "attn_implementation": args.attn,
        "compile": args.compile,
        "conv_stack_autograd": args.mode == "full" or args.conv_grad,
        "optimizer": f"AdamW(lr={args.lr}, weight_decay={args.weight_decay})",
        "loss": "weighted CE [0.1 spoof, 0.9 bona fide], mean pool + linear head",
        "warmup": args.warmup,
        "iters": args.iters,
        "step_ms_median": med["median_ms"],
        "step_ms_p90": med["p90_ms"],
        "step_ms_min": med["min_ms"],
        "utt_per_s": round(args.batch / (med["median_ms"] / 1e3), 2),
        "phase_ms": dict(zip(("forward_ms", "backward_ms", "optimizer_ms"), phase_median)),
        "trainable_params": n_trainable,
        "trainable_params_without_head": n_trainable - n_head,
        "total_params": n_total,
        "head_params": n_head,
        "final_loss": round(float(losses[-1]), 6),
    }
    result.update(memory)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
