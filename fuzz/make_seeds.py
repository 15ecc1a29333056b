#!/usr/bin/env python3
"""Writes the seed corpora under fuzz/corpus/<target>/ from the repository's own fixtures.

Standard library only. Each seed is small (a few KB at most): fixtures are cut short or rebuilt
at a minimal size, so libFuzzer spends its mutations on headers and structure rather than on
sample data. Run from anywhere: `python3 fuzz/make_seeds.py`.
"""

import collections
import io
import json
import math
import pickle
import struct
import sys
import types
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CORPUS = REPO / "fuzz" / "corpus"
AUDIO = REPO / "crates" / "fadlora-audio" / "tests" / "fixtures"


def put(target, name, data):
    folder = CORPUS / target
    folder.mkdir(parents=True, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    (folder / name).write_bytes(data)


def tone(n, amplitude=0.5):
    return [amplitude * math.sin(2 * math.pi * 440 * i / 16000) for i in range(n)]


def wav(rate, channels, bits, samples, fmt_tag=1, extensible=False):
    """A RIFF/WAVE file; `samples` are interleaved floats in [-1, 1)."""
    if fmt_tag == 3:
        data = b"".join(struct.pack("<f", s) for s in samples)
    elif bits == 8:
        data = bytes(int(128 + 127 * s) & 0xFF for s in samples)
    else:
        width = bits // 8
        scale = 2 ** (bits - 1) - 1
        data = b"".join(int(s * scale).to_bytes(width, "little", signed=True) for s in samples)
    block = channels * bits // 8
    if extensible:
        sub_format = struct.pack("<H", fmt_tag) + bytes.fromhex("000000001000800000aa00389b71")
        fmt = struct.pack("<HHIIHHHHI", 0xFFFE, channels, rate, rate * block, block, bits, 22, bits, 0)
        fmt += sub_format
    else:
        fmt = struct.pack("<HHIIHH", fmt_tag, channels, rate, rate * block, block, bits)
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt
    if fmt_tag == 3 and not extensible:
        body += b"fact" + struct.pack("<II", 4, len(samples) // channels)
    body += b"data" + struct.pack("<I", len(data)) + data
    return b"RIFF" + struct.pack("<I", len(body)) + body


def wav_seeds():
    t = "decode_wav"
    put(t, "s16_16k_mono.wav", wav(16000, 1, 16, tone(64)))
    put(t, "u8_8k_mono.wav", wav(8000, 1, 8, tone(64)))
    put(t, "s24_44k1_stereo.wav", wav(44100, 2, 24, tone(64)))
    put(t, "s32_48k_mono.wav", wav(48000, 1, 32, tone(48)))
    put(t, "f32_16k_mono.wav", wav(16000, 1, 32, tone(48), fmt_tag=3))
    put(t, "extensible_s16_3ch.wav", wav(22050, 3, 16, tone(60), extensible=True))
    put(t, "extensible_f32_stereo.wav", wav(16000, 2, 32, tone(48), fmt_tag=3, extensible=True))
    put(t, "truncated_data.wav", wav(16000, 1, 16, tone(64))[:100])
    put(t, "fixture_tone_16k_u8.wav", (AUDIO / "tone_16k_u8.wav").read_bytes())


def flac_seeds():
    t = "decode_flac"
    # The first frames of each fixture: STREAMINFO, any metadata blocks and a few frames, then
    # a truncation the decoder must report.
    for name, keep in [
        ("tone_1k_44k1_stereo_s16.flac", 2500),
        ("speechlike_16k_s16.flac", 2500),
        ("stereo_44k1_s24.flac", 2500),
    ]:
        put(t, name.replace(".flac", "_head.flac"), (AUDIO / name).read_bytes()[:keep])
    whole = (AUDIO / "tone_1k_44k1_stereo_s16.flac").read_bytes()
    put(t, "streaminfo_only.flac", whole[:42])
    # An ID3v2 tag (10-byte header, 16-byte body) before the stream.
    put(t, "id3_tagged.flac", b"ID3\x04\x00\x00\x00\x00\x00\x10" + bytes(16) + whole[:1200])


def protocol_seeds():
    t = "protocols"
    mini = REPO / "datasets" / "mini" / "ASVspoof2019_LA_cm_protocols"
    for path in sorted(mini.glob("*.txt")):
        lines = path.read_text().splitlines(keepends=True)
        put(t, "asvspoof2019_" + path.name.split(".")[3] + ".txt", "".join(lines[:8]))
    put(t, "asvspoof2019_crlf.txt", "LA_0069 LA_D_1047731 - - bonafide\r\nLA_0069 LA_D_1105538 - A03 spoof\r\n\r\n")
    put(
        t,
        "asvspoof2021_la_key.txt",
        "LA_0009 LA_E_9332881 alaw ita_tx A07 spoof notrim eval\n"
        "LA_0013 LA_E_1234567 none - - bonafide notrim progress\n",
    )
    put(
        t,
        "asvspoof2021_df_key.txt",
        "LA_0023 DF_E_2000011 nocodec asvspoof A14 spoof notrim progress traditional_vocoder - - - -\n"
        "VCC2020_TEF1 DF_E_2000013 mp3m4a vcc2020 - bonafide notrim eval - - - - -\n",
    )
    put(
        t,
        "in_the_wild_meta.csv",
        'file,speaker,label\n0.wav,Alec Guinness,spoof\n1.wav,Alec Guinness,bona-fide\n2.wav,"Doe, John",spoof\n',
    )
    put(
        t,
        "csv_list.csv",
        "path,label,speaker,system,split,note\n"
        "audio/spk1/a001.wav,bonafide,spk1,-,train,clean\n"
        "audio/spk1/a002.flac,Spoof,spk1,tts3,Dev,\n",
    )
    put(t, "csv_list_ids.csv", "id,path,label\nutt1,a/x.wav,spoof\nutt2,b/x.wav,bonafide\n")
    put(t, "dataset_spec.txt", "asvspoof2021-df:/data/2021")


def toml_seeds():
    for path in sorted((REPO / "experiments" / "runs").glob("*.toml")):
        put("run_toml", path.name, path.read_bytes())
    for path in sorted((REPO / "experiments").glob("*.toml")):
        put("experiment_toml", path.name, path.read_bytes())


# The harness's `micro_config`: conv 4 channels (kernel 2), hidden 4, one layer, FFN 4,
# positional convolution kernel 2 in one group, pre-LN (stable layer norm) with LayerNorm convs.
H = 4


def micro_tensors():
    shapes = {
        "feature_extractor.conv_layers.0.conv.weight": [4, 1, 2],
        "feature_extractor.conv_layers.0.conv.bias": [4],
        "feature_extractor.conv_layers.0.layer_norm.weight": [4],
        "feature_extractor.conv_layers.0.layer_norm.bias": [4],
        "feature_projection.layer_norm.weight": [4],
        "feature_projection.layer_norm.bias": [4],
        "feature_projection.projection.weight": [H, 4],
        "feature_projection.projection.bias": [H],
        "encoder.pos_conv_embed.conv.weight_g": [1, 1, 2],
        "encoder.pos_conv_embed.conv.weight_v": [H, H, 2],
        "encoder.pos_conv_embed.conv.bias": [H],
        "encoder.layer_norm.weight": [H],
        "encoder.layer_norm.bias": [H],
    }
    layer = "encoder.layers.0."
    for proj in ["q_proj", "k_proj", "v_proj", "out_proj"]:
        shapes[f"{layer}attention.{proj}.weight"] = [H, H]
        shapes[f"{layer}attention.{proj}.bias"] = [H]
    for dense in ["intermediate_dense", "output_dense"]:
        shapes[f"{layer}feed_forward.{dense}.weight"] = [4, 4]
        shapes[f"{layer}feed_forward.{dense}.bias"] = [4]
    for norm in ["layer_norm", "final_layer_norm"]:
        shapes[f"{layer}{norm}.weight"] = [H]
        shapes[f"{layer}{norm}.bias"] = [H]
    out = {}
    for i, (name, shape) in enumerate(sorted(shapes.items())):
        n = math.prod(shape)
        out[name] = (shape, [((i * 7 + j * 3) % 11 - 5) / 8 for j in range(n)])
    return out


def safetensors(tensors, dtype="F32"):
    header, blobs, offset = {}, [], 0
    fmt = {"F32": "<f", "F16": "<e", "F64": "<d"}[dtype]
    for name, (shape, values) in tensors.items():
        blob = b"".join(struct.pack(fmt, v) for v in values)
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + len(blob)]}
        blobs.append(blob)
        offset += len(blob)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + b"".join(blobs)


class _Storage:
    """Stands for a `torch.FloatStorage` class in the pickle: only its qualified name matters."""


def pytorch_bin(tensors):
    """A `torch.save` zip (`archive/data.pkl` + one raw storage per tensor), written without
    torch by giving the pickle the global names `torch.load` resolves."""
    torch_mod = types.ModuleType("torch")
    utils_mod = types.ModuleType("torch._utils")

    def _rebuild_tensor_v2(*args):
        raise NotImplementedError

    _rebuild_tensor_v2.__module__ = "torch._utils"
    _rebuild_tensor_v2.__qualname__ = "_rebuild_tensor_v2"
    utils_mod._rebuild_tensor_v2 = _rebuild_tensor_v2
    storage = type("FloatStorage", (_Storage,), {"__module__": "torch"})
    torch_mod.FloatStorage = storage
    torch_mod._utils = utils_mod
    sys.modules["torch"], sys.modules["torch._utils"] = torch_mod, utils_mod

    class StorageRef:
        def __init__(self, key, numel):
            self.key, self.numel = key, numel

    class TensorRef:
        def __init__(self, ref, shape):
            self.ref, self.shape = ref, shape

        def __reduce__(self):
            stride, acc = [], 1
            for dim in reversed(self.shape):
                stride.insert(0, acc)
                acc *= dim
            return (
                _rebuild_tensor_v2,
                (self.ref, 0, tuple(self.shape), tuple(stride), False, collections.OrderedDict()),
            )

    class Pickler(pickle.Pickler):
        def persistent_id(self, obj):
            if isinstance(obj, StorageRef):
                return ("storage", storage, obj.key, "cpu", obj.numel)
            return None

    state, raw = collections.OrderedDict(), {}
    for i, (name, (shape, values)) in enumerate(tensors.items()):
        key = str(i)
        state[name] = TensorRef(StorageRef(key, len(values)), shape)
        raw[key] = b"".join(struct.pack("<f", v) for v in values)
    buf = io.BytesIO()
    Pickler(buf, protocol=2).dump(state)
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as z:
        z.writestr("archive/data.pkl", buf.getvalue())
        z.writestr("archive/byteorder", "little")
        for key, blob in raw.items():
            z.writestr(f"archive/data/{key}", blob)
        z.writestr("archive/version", "3\n")
    del sys.modules["torch"], sys.modules["torch._utils"]
    return out.getvalue()


def checkpoint_seeds():
    t = "checkpoint"
    tensors = micro_tensors()
    put(t, "micro.safetensors", safetensors(tensors))
    put(t, "micro_f16.safetensors", safetensors(tensors, "F16"))
    prefixed = {"wav2vec2." + k: v for k, v in tensors.items()}
    prefixed["quantizer.codevectors"] = ([1, 2, 2], [0.0] * 4)
    put(t, "micro_prefixed_pretraining.safetensors", safetensors(prefixed))
    parametrized = dict(tensors)
    g = parametrized.pop("encoder.pos_conv_embed.conv.weight_g")
    v = parametrized.pop("encoder.pos_conv_embed.conv.weight_v")
    parametrized["encoder.pos_conv_embed.conv.parametrizations.weight.original0"] = g
    parametrized["encoder.pos_conv_embed.conv.parametrizations.weight.original1"] = v
    put(t, "micro_parametrizations.safetensors", safetensors(parametrized))
    put(t, "micro.bin", pytorch_bin(tensors))
    put(t, "micro_prefixed.bin", pytorch_bin(prefixed))


def adapter_seeds():
    peft = REPO / "fixtures" / "peft"
    for name in ["qv_r4", "all_r2", "qv_r4_rslora", "broken_wrong_rank", "broken_unknown_target"]:
        config = (peft / name / "adapter_config.json").read_bytes()
        # PEFT writes every option it knows; the ones at their defaults only slow mutation down.
        parsed = {k: v for k, v in json.loads(config).items() if not (v is None or v is False or v == {})}
        config = json.dumps(parsed, separators=(",", ":")).encode()
        weights = (peft / name / "adapter_model.safetensors").read_bytes()
        put("adapter", name + ".bin", struct.pack("<H", len(config)) + config + weights)


def fairseq_seeds():
    """The small fairseq fixtures and the omegaconf one, and copies of a small omegaconf one whose
    pickle is cut short or has bytes changed (the zip rewritten around it, so the damage reaches
    the pickle machine rather than the zip reader)."""
    import random

    t = "fairseq_checkpoint"
    fixtures = REPO / "fixtures" / "wav2vec2" / "fairseq"
    rng = random.Random(20261202)
    for pt in sorted(fixtures.glob("*.pt")):
        if not (pt.name.startswith("broken_") or pt.name == "stable_layer_omegaconf.pt"):
            continue
        data = pt.read_bytes()
        put(t, pt.name, data)
        if pt.name != "broken_wrong_shape.pt":
            continue
        with zipfile.ZipFile(io.BytesIO(data)) as z:
            entries = [(i, z.read(i.filename)) for i in z.infolist()]
        pkl = next(n for n, (i, _) in enumerate(entries) if i.filename.endswith("data.pkl"))
        original = entries[pkl][1]
        variants = [("cut%d" % k, original[: len(original) * k // 8]) for k in range(1, 8)]
        for k in range(12):
            damaged = bytearray(original)
            for _ in range(1 + k % 3):
                damaged[rng.randrange(len(damaged))] = rng.randrange(256)
            variants.append(("flip%d" % k, bytes(damaged)))
        for tag, pickled in variants:
            out = io.BytesIO()
            with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as z:
                for n, (info, blob) in enumerate(entries):
                    # A fixed timestamp keeps the seeds byte-identical from run to run.
                    entry = zipfile.ZipInfo(info.filename, date_time=(1980, 1, 1, 0, 0, 0))
                    z.writestr(entry, pickled if n == pkl else blob)
            put(t, "wrong_shape_%s.pt" % tag, out.getvalue())


def main():
    wav_seeds()
    flac_seeds()
    protocol_seeds()
    toml_seeds()
    checkpoint_seeds()
    adapter_seeds()
    fairseq_seeds()
    total = sum(p.stat().st_size for p in CORPUS.rglob("*") if p.is_file())
    print(f"{sum(1 for p in CORPUS.rglob('*') if p.is_file())} seeds, {total} bytes")


if __name__ == "__main__":
    main()
