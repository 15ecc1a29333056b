"""Signal processing shared by every utterance of the corpus, bona fide and spoof alike.

The same functions, with the same parameters, run on both classes so that the only
difference a detector can find is the way the speech was produced:

* `load_16k_mono`     any file -> float32 mono at 16 kHz (sox `rate -v`, very high quality)
* `g722_round_trip`   16 kHz -> G.722 (64 kbit/s) -> 16 kHz with ffmpeg (spoofs only: the
                      bona fide Asterisk prompts are distributed as G.722 already)
* `trim`              energy-based trimming of leading/trailing silence
* `crop`              keep the first `max_s` seconds (20 ms fade-out where cut)
* `normalise`         active speech level to -26 dBFS, peak capped at -1 dBFS
* `write_flac`        TPDF dither to 16-bit, FLAC (flac -8, no padding)
"""

from __future__ import annotations

import hashlib
import subprocess
import tempfile
import wave
from pathlib import Path

import numpy as np

SR = 16000
TARGET_DBFS = -26.0  # active speech level (as ITU-T P.56 targets for telephony)
PEAK_DBFS = -1.0
FRAME = 400  # 25 ms
HOP = 160  # 10 ms
TRIM_REL_DB = 40.0  # frames quieter than (loudest frame - 40 dB) are silence
TRIM_ABS_DB = -60.0  # ... and anything below -60 dBFS is silence
TRIM_PAD_S = 0.05  # keep 50 ms around the speech
FADE_S = 0.02


class ToolError(RuntimeError):
    pass


def run(cmd: list[str], *, input_bytes: bytes | None = None) -> bytes:
    try:
        proc = subprocess.run(cmd, input=input_bytes, capture_output=True, timeout=600)
    except FileNotFoundError as e:
        raise ToolError(f"tool not found: {cmd[0]}") from e
    except subprocess.TimeoutExpired as e:
        raise ToolError(f"timed out: {' '.join(cmd)}") from e
    if proc.returncode != 0:
        err = proc.stderr.decode("utf-8", "replace").strip()[-2000:]
        raise ToolError(f"command failed ({proc.returncode}): {' '.join(cmd)}\n{err}")
    return proc.stdout


def load_16k_mono(path: Path, *, fmt: list[str] | None = None) -> np.ndarray:
    """Decode any file sox reads (or raw input described by `fmt`) to float32 16 kHz mono."""
    cmd = ["sox", "-V1", "-R", *(fmt or []), str(path), "-t", "raw", "-e", "floating-point",
           "-b", "32", "-c", "1", "-", "remix", "-", "rate", "-v", str(SR)]
    data = run(cmd)
    return np.frombuffer(data, dtype="<f4").astype(np.float32)


def decode_g722(path: Path) -> np.ndarray:
    """Asterisk .g722 (raw G.722 bit stream) -> float32 16 kHz."""
    data = run(["ffmpeg", "-nostdin", "-v", "error", "-f", "g722", "-i", str(path),
                "-f", "s16le", "-ac", "1", "-ar", str(SR), "-"])
    return np.frombuffer(data, dtype="<i2").astype(np.float32) / 32768.0


def to_s16(x: np.ndarray) -> bytes:
    return (np.clip(np.round(x * 32767.0), -32768, 32767).astype("<i2")).tobytes()


def g722_round_trip(x: np.ndarray) -> np.ndarray:
    with tempfile.TemporaryDirectory(prefix="g722-") as tmp:
        enc = Path(tmp) / "x.g722"
        run(["ffmpeg", "-nostdin", "-v", "error", "-f", "s16le", "-ar", str(SR), "-ac", "1",
             "-i", "-", "-c:a", "g722", "-f", "g722", "-y", str(enc)], input_bytes=to_s16(x))
        return decode_g722(enc)


def frame_db(x: np.ndarray) -> np.ndarray:
    if len(x) < FRAME:
        x = np.pad(x, (0, FRAME - len(x)))
    n = 1 + (len(x) - FRAME) // HOP
    idx = np.arange(FRAME)[None, :] + HOP * np.arange(n)[:, None]
    power = np.mean(x[idx].astype(np.float64) ** 2, axis=1)
    return 10.0 * np.log10(power + 1e-12)


def active_mask(db: np.ndarray) -> np.ndarray:
    thr = max(float(db.max()) - TRIM_REL_DB, TRIM_ABS_DB)
    return db > thr


def trim(x: np.ndarray) -> np.ndarray:
    db = frame_db(x)
    act = np.flatnonzero(active_mask(db))
    if len(act) == 0:
        return x[:0]
    pad = int(TRIM_PAD_S * SR)
    start = max(0, act[0] * HOP - pad)
    end = min(len(x), act[-1] * HOP + FRAME + pad)
    return x[start:end]


def crop(x: np.ndarray, max_s: float | None) -> np.ndarray:
    if max_s is None or len(x) <= int(max_s * SR):
        return x
    y = x[: int(max_s * SR)].copy()
    fade = int(FADE_S * SR)
    y[-fade:] *= np.linspace(1.0, 0.0, fade, dtype=np.float32)
    return y


def active_level_db(x: np.ndarray) -> float:
    db = frame_db(x)
    mask = active_mask(db)
    return float(10.0 * np.log10(np.mean(10.0 ** (db[mask] / 10.0)) + 1e-12))


def normalise(x: np.ndarray) -> np.ndarray:
    if len(x) == 0:
        return x
    gain = 10.0 ** ((TARGET_DBFS - active_level_db(x)) / 20.0)
    y = x * gain
    peak = float(np.max(np.abs(y)))
    limit = 10.0 ** (PEAK_DBFS / 20.0)
    if peak > limit:
        y *= limit / peak
    return y.astype(np.float32)


def seed_of(text: str) -> int:
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little")


def quantise(x: np.ndarray, seed_text: str) -> np.ndarray:
    """TPDF dither (+-1 LSB) and rounding to int16, seeded by the utterance id."""
    rng = np.random.default_rng(seed_of(seed_text))
    d = rng.random(len(x)) - rng.random(len(x))
    return np.clip(np.round(x.astype(np.float64) * 32767.0 + d), -32768, 32767).astype("<i2")


def write_flac(pcm: np.ndarray, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    wav = path.with_suffix(".tmp.wav")
    with wave.open(str(wav), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(SR)
        w.writeframes(pcm.tobytes())
    try:
        run(["flac", "-8", "--silent", "--force", "--no-padding", "--no-seektable",
             "-o", str(path), str(wav)])
    finally:
        wav.unlink(missing_ok=True)


def finish(x: np.ndarray, max_s: float | None, utt_id: str, path: Path) -> float:
    """The common tail of the pipeline: trim, crop, normalise, dither, FLAC. Returns seconds."""
    y = trim(x)
    if len(y) < int(0.05 * SR):
        raise ToolError(f"{utt_id}: no speech left after trimming ({len(y)} samples)")
    y = normalise(crop(y, max_s))
    write_flac(quantise(y, utt_id), path)
    return len(y) / SR
