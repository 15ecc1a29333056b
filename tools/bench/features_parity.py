#!/usr/bin/env python3
"""Forward parity of a backend against Hugging Face transformers, through the binary.

Runs `fadlora features --layers all --backend BACKEND` on both wav2vec2 fixtures (their WAV and
checkpoint) and compares every hidden state with transformers' own output, stored at fixture
time in fixtures/wav2vec2/<model>/features_reference.safetensors. The measure is relative:
max |fadlora - reference| / max |reference| per tensor. On a GPU, f32 matmuls run on TF32
tensor cores (10-bit mantissa), so 1e-3 is the bound there; on the CPU the absolute bound of
the Rust parity tests (1e-4) applies.

    python tools/bench/features_parity.py FADLORA BACKEND [--tol 1e-3]

Prints one JSON object on one line (as the benchmarks do); exits 1 when any tensor is over the bound.
"""
import argparse
import json
import pathlib
import subprocess
import sys
import tempfile

import numpy as np
from safetensors.numpy import load_file

ROOT = pathlib.Path(__file__).resolve().parents[2]
FIXTURES = {
    # model -> checkpoint spelling whose preprocessor config matches the reference features
    "stable_layer": "safetensors_weight_g",
    "base_group": "bin_prefixed_pretraining",
}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("fadlora")
    ap.add_argument("backend")
    ap.add_argument("--tol", type=float, default=1e-3)
    args = ap.parse_args()
    worst = {}
    for model, spelling in FIXTURES.items():
        base = ROOT / "fixtures" / "wav2vec2" / model
        reference = load_file(str(base / "features_reference.safetensors"))
        with tempfile.TemporaryDirectory() as out:
            subprocess.run(
                [args.fadlora, "features", "--backend", args.backend,
                 "--checkpoint", str(base / spelling), "--layers", "all",
                 "--out", out, str(base / "audio.wav")],
                check=True, stdout=subprocess.DEVNULL,
            )
            for npy in sorted(pathlib.Path(out).glob("audio.*.npy")):
                tag = npy.stem.split(".", 1)[1]
                key = "last_hidden_state" if tag == "last" else f"hidden_states.{tag[5:]}"
                got, want = np.load(npy), reference[key]
                rel = float(np.abs(got - want).max() / np.abs(want).max())
                worst[f"{model}/{key}"] = rel
    over = {k: v for k, v in worst.items() if not v <= args.tol}
    print(json.dumps({
        "backend": args.backend,
        "tolerance_relative": args.tol,
        "max_relative_diff": max(worst.values()),
        "tensors": worst,
        "over": over,
    }))
    return 1 if over or not worst else 0


if __name__ == "__main__":
    sys.exit(main())
