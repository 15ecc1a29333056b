#!/usr/bin/env python3
"""PyTorch forward (inference) benchmark of Hugging Face Wav2Vec2Model, random weights,
eval mode, no_grad. Prints ONE JSON object.

    python tools/bench/torch_forward.py                      # tiny, batch 4 x 32000, 2 threads, CPU
    python tools/bench/torch_forward.py --preset xls-r-300m --device cuda --batch 32 --samples 64600

split_ms times the three blocks separately (same inputs, each its own median):
feature_encoder = the 7-conv stack (`model.feature_extractor`), positional_conv =
`model.encoder.pos_conv_embed` (weight-normed grouped conv + pad removal + GELU),
transformer_layers = all `model.encoder.layers` in sequence. The remainder of the whole
forward (feature projection, LayerNorms, residual add) is `other`.
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path

import torch

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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", "--config", dest="preset", default="tiny", choices=PRESETS)
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--samples", type=int, default=32000)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--iters", type=int, default=10)
    add_precision_args(ap)
    ap.add_argument("--attn", default="sdpa", choices=["sdpa", "eager"], help="HF attention implementation")
    ap.add_argument("--no-split", action="store_true", help="skip the per-block timings")
    args = ap.parse_args()
    apply_precision_args(args)
    warnings.filterwarnings("ignore", category=FutureWarning)

    from transformers import Wav2Vec2Model
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    dev = setup(args.device, args.threads)
    config = preset_config(args.preset)
    config._attn_implementation = args.attn
    model = Wav2Vec2Model(config).to(dev).eval()
    x = (torch.rand(args.batch, args.samples, generator=torch.Generator().manual_seed(1)) * 2 - 1).to(dev)

    def full():
        with torch.no_grad(), autocast_ctx(dev, args.amp):
            return model(x).last_hidden_state

    times = timed(full, dev, args.warmup, args.iters, reset_memory=True)
    memory = peak_memory(dev)
    out = full()
    result = {
        "framework": "pytorch",
        "torch_version": torch.__version__,
        "transformers_version": __import__("transformers").__version__,
        "device": args.device,
        "device_name": device_name(dev),
        "threads": torch.get_num_threads(),
        "config": args.preset,
        "batch": args.batch,
        "samples": args.samples,
        "frames": int(out.shape[1]),
        "amp": args.amp,
        "tf32": args.tf32,
        "attn_implementation": args.attn,
        "warmup": args.warmup,
        "iters": args.iters,
        **summary(times),
        "utt_per_s": round(args.batch / (summary(times)["median_ms"] / 1e3), 2),
        "params": sum(p.numel() for p in model.parameters()),
    }

    if not args.no_split:
        with torch.no_grad(), autocast_ctx(dev, args.amp):
            feats = model.feature_extractor(x).transpose(1, 2)
            h, _ = model.feature_projection(feats)
            h = h.contiguous()
            if config.do_stable_layer_norm:
                layer_in = h + model.encoder.pos_conv_embed(h)
            else:
                layer_in = model.encoder.layer_norm(h + model.encoder.pos_conv_embed(h))

        def fe():
            with torch.no_grad(), autocast_ctx(dev, args.amp):
                return model.feature_extractor(x)

        def pos():
            with torch.no_grad(), autocast_ctx(dev, args.amp):
                return model.encoder.pos_conv_embed(h)

        def layers():
            with torch.no_grad(), autocast_ctx(dev, args.amp):
                y = layer_in
                for layer in model.encoder.layers:
                    y = layer(y)
                    y = y[0] if isinstance(y, tuple) else y
                return y

        split = {}
        for name, fn in (("feature_encoder", fe), ("positional_conv", pos), ("transformer_layers", layers)):
            split[name] = summary(timed(fn, dev, args.warmup, args.iters))["median_ms"]
        split["other"] = round(result["median_ms"] - sum(split.values()), 3)
        result["split_ms"] = split

    result.update(memory)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
