"""Pretraining target of the corpus builder: unlabelled real speech for self-supervised
(HuBERT-style) pretraining of a small wav2vec2, from the same Asterisk prompts as the mini
corpus, with nothing that the mini corpus' dev or eval split contains.

Leakage rule, against `datasets/mini/metadata.tsv`: a prompt is left out when its normalised
text occurs in dev or eval (any row, bona fide or spoof, any language), or when its recording
is one that dev or eval uses (bona fide, or the source of a `world` / `codec2-700c` spoof),
compared by path and by content. Prompts without a transcript are left out as well, since
their text cannot be checked. The rule is checked again on the written files before the
output is moved into place.

Each kept prompt: G.722 decode, silence trimming, speed perturbation (0.9, 1.0, 1.1: sox
`speed` + `rate -v`, i.e. resampling that changes tempo and pitch together, as the
Kaldi/HuBERT recipes do), loudness normalisation, chunks of at most 8 s, chunks shorter
than 1 s dropped, 16-bit with TPDF dither, FLAC. About 5 % of the prompts per voice (with all
their speed variants and chunks) form the `valid` split.
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
import multiprocessing as mp
import os
import random
import shutil
import sys
import time
import traceback
from collections import Counter, defaultdict
from pathlib import Path

import build_mini_corpus as bmc
import corpus_tools as tools

DEFAULT_OUT = bmc.REPO / "datasets" / "pretrain"
REFERENCE = bmc.REPO / "datasets" / "mini" / "metadata.tsv"
SPEEDS = (0.9, 1.0, 1.1)
MAX_CHUNK_S = 8.0
MIN_CHUNK_S = 1.0
VALID_FRACTION = 0.05
MANIFEST_HEADER = ["path", "split", "voice", "language", "prompt", "speed", "duration_s"]
HELD_OUT = ("dev", "eval")


def sha256_file(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def source_rel(prompt: dict) -> str:
    return Path(prompt["source"]).relative_to(tools.ASTERISK_SOUNDS).as_posix()


def read_reference(path: Path) -> dict:
    """What the reference corpus holds out: normalised texts, source recordings (path and
    content hash) and prompt names of its dev and eval splits."""
    if not path.is_file():
        raise SystemExit(f"error: {path} not found; the pretraining target needs the bundled "
                         "corpus' metadata to know which prompts dev and eval use")
    texts, sources, keys = set(), set(), set()
    rows = 0
    with open(path, encoding="utf-8", newline="") as f:
        for row in csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE):
            rows += 1
            if row["split"] not in HELD_OUT:
                continue
            texts.add(bmc.norm_text(row["text"]))
            keys.add((row["language"], row["prompt"]))
            if row["source_audio"] != "-":
                sources.add(row["source_audio"])
    if rows == 0:
        raise SystemExit(f"error: {path} has no rows")
    hashes = set()
    for rel in sources:
        src = tools.ASTERISK_SOUNDS / rel
        if not src.is_file():
            raise SystemExit(f"error: {src} (used in dev/eval of {path}) is missing; the "
                             "content check needs it")
        hashes.add(sha256_file(src))
    return {"texts": texts, "sources": sources, "hashes": hashes,
            "prompt_names": {k for _, k in keys}, "sha256": sha256_file(path)}


def leak_reasons(prompt: dict, ref: dict) -> list[str]:
    reasons = []
    if bmc.norm_text(prompt["text"]) in ref["texts"]:
        reasons.append("text")
    if source_rel(prompt) in ref["sources"] or prompt["sha256"] in ref["hashes"]:
        reasons.append("audio")
    return reasons


# ----------------------------------------------------------------------------- audio

def speed_change(x, speed: float):
    import corpus_audio as ca
    import numpy as np

    if speed == 1.0:
        return x
    # -R: sox's defaults are otherwise time-seeded; the halving keeps the resampler's
    # overshoot off sox's float clipping (the level is set afterwards anyway)
    cmd = ["sox", "-V1", "-R", "-t", "raw", "-e", "floating-point", "-b", "32", "-c", "1",
           "-r", str(ca.SR), "-", "-t", "raw", "-e", "floating-point", "-b", "32", "-c", "1",
           "-", "speed", f"{speed}", "rate", "-v", str(ca.SR)]
    out = ca.run(cmd, input_bytes=(0.5 * x).astype("<f4").tobytes())
    return np.frombuffer(out, dtype="<f4").astype(np.float32)


def chunk_bounds(n: int) -> list[tuple[int, int]]:
    """Equal chunks of at most MAX_CHUNK_S: no short remainder is cut off a long prompt."""
    import corpus_audio as ca

    k = max(1, math.ceil(n / (MAX_CHUNK_S * ca.SR)))
    edges = [round(i * n / k) for i in range(k + 1)]
    return list(zip(edges[:-1], edges[1:]))


def stem(prompt: dict, speed: float, chunk: int) -> str:
    return f"{prompt['speaker']}/{prompt['key']}_sp{round(speed * 100):03d}_c{chunk}"


def process_prompt(prompt: dict, staging: Path, min_s: float) -> dict:
    import corpus_audio as ca
    import numpy as np

    x = ca.trim(ca.decode_g722(Path(prompt["source"])))
    files, dropped = [], []
    fade = int(ca.FADE_S * ca.SR)
    for speed in SPEEDS:
        y = ca.normalise(speed_change(x, speed))
        bounds = chunk_bounds(len(y))
        for i, (a, b) in enumerate(bounds):
            seconds = (b - a) / ca.SR
            if seconds < min_s:
                dropped.append(seconds)
                continue
            c = y[a:b].copy()
            # fades only where a long prompt was cut, so the cut makes no click
            if a > 0:
                c[:fade] *= np.linspace(0.0, 1.0, fade, dtype=np.float32)
            if b < len(y):
                c[-fade:] *= np.linspace(1.0, 0.0, fade, dtype=np.float32)
            name = stem(prompt, speed, i)
            ca.write_flac(ca.quantise(c, "pretrain:" + name), staging / f"{name}.flac")
            files.append({"stem": name, "speed": speed, "chunk": i, "seconds": seconds})
    return {"key": (prompt["lang"], prompt["key"]), "files": files, "dropped": dropped}


def _run(task: tuple) -> dict:
    prompt, staging, min_s = task
    try:
        return process_prompt(prompt, Path(staging), min_s)
    except Exception as e:  # noqa: BLE001 - reported with the prompt by the parent
        return {"key": (prompt["lang"], prompt["key"]),
                "error": f"{prompt['lang']}:{prompt['key']}: {e}\n"
                         f"{traceback.format_exc(limit=3)}"}


# ----------------------------------------------------------------------------- splits

def assign_valid(prompts: list[dict], seed: int) -> set[tuple[str, str]]:
    """About VALID_FRACTION of each voice's prompts, drawn as whole groups: prompts of one
    voice whose texts or recordings coincide go together, so valid audio is never a
    near-copy of train audio."""
    valid = set()
    for lang in sorted({p["lang"] for p in prompts}):
        mine = sorted((p for p in prompts if p["lang"] == lang), key=lambda p: p["key"])
        parent = {p["key"]: p["key"] for p in mine}

        def find(a: str) -> str:
            while parent[a] != a:
                parent[a] = parent[parent[a]]
                a = parent[a]
            return a

        first: dict[tuple[str, str], str] = {}
        for p in mine:
            for tag in (("text", bmc.norm_text(p["text"])), ("audio", p["sha256"])):
                if tag in first:
                    ra, rb = find(first[tag]), find(p["key"])
                    if ra != rb:
                        parent[max(ra, rb)] = min(ra, rb)
                else:
                    first[tag] = p["key"]
        groups: dict[str, list[str]] = defaultdict(list)
        for p in mine:
            groups[find(p["key"])].append(p["key"])
        roots = sorted(groups)
        random.Random(f"{seed}:pretrain:valid:{lang}").shuffle(roots)
        target = round(VALID_FRACTION * len(mine))
        taken = 0
        for root in roots:
            if taken >= target:
                break
            valid.update((lang, k) for k in groups[root])
            taken += len(groups[root])
    return valid


# ----------------------------------------------------------------------------- checks

def leakage_check(out: Path, prompts_by_key: dict, reference: Path, jobs: int) -> dict:
    """Re-reads what was written (manifest, pretrain.csv, FLAC headers) and the reference
    metadata from disk, and fails loudly on any dev/eval text or recording, on a prompt in
    both train and valid, or on a file that is not 16 kHz mono 16-bit FLAC."""
    ref = read_reference(reference)
    with open(out / "manifest.csv", encoding="utf-8", newline="") as f:
        reader = csv.reader(f)
        header = next(reader)
        rows = [dict(zip(header, r)) for r in reader]
    assert header == MANIFEST_HEADER, f"manifest header {header}"
    with open(out / "pretrain.csv", encoding="utf-8", newline="") as f:
        plain = list(csv.DictReader(f))
    assert [r["path"] for r in plain] == [r["path"] for r in rows], \
        "pretrain.csv and manifest.csv list different files"
    assert all(r["label"] == "bonafide" for r in plain), "pretrain.csv: a label is not bonafide"

    text_hits, audio_hits, split_of_prompt, by_file = [], [], {}, Counter()
    hashes: dict[tuple[str, str], str] = {}  # hashed afresh, not taken from the build
    for r in rows:
        key = (r["language"], r["prompt"])
        p = prompts_by_key.get(key)
        assert p is not None, f"{r['path']}: prompt {key} is not an Asterisk prompt"
        if key not in hashes:
            hashes[key] = sha256_file(Path(p["source"]))
        reasons = leak_reasons({**p, "sha256": hashes[key]}, ref)
        if "text" in reasons:
            text_hits.append(f"{r['path']} ({p['text']!r})")
        if "audio" in reasons:
            audio_hits.append(f"{r['path']} ({source_rel(p)})")
        if split_of_prompt.setdefault(key, r["split"]) != r["split"]:
            raise AssertionError(f"prompt {key} is in both train and valid")
        assert r["split"] in ("train", "valid"), f"{r['path']}: split {r['split']!r}"
        by_file[r["path"]] += 1
    dup = [p for p, n in by_file.items() if n > 1]
    assert not dup, f"files listed twice: {dup[:5]}"
    if text_hits or audio_hits:
        raise AssertionError(
            f"LEAKAGE: {len(text_hits)} file(s) with a dev/eval text, {len(audio_hits)} with "
            f"dev/eval audio, e.g. {(text_hits + audio_hits)[:5]}")
    # also the other way round: nothing on disk that the manifest does not list
    on_disk = sorted(p.relative_to(out).as_posix() for p in (out / "audio").rglob("*")
                     if p.is_file())
    assert on_disk == sorted(by_file), "audio/ and manifest.csv differ"
    paths = [out / r["path"] for r in rows]
    for p, r in zip(paths, rows):
        rate, ch, bps, n = bmc.read_streaminfo(p)
        assert (rate, ch, bps) == (16000, 1, 16), f"{p}: {rate} Hz, {ch} ch, {bps} bit"
        assert abs(n / rate - float(r["duration_s"])) < 0.002, f"{p}: duration differs"
    chunks = [[str(p) for p in paths[i:i + 200]] for i in range(0, len(paths), 200)]
    with mp.get_context("fork").Pool(jobs) as pool:
        pool.map(bmc._flac_test, chunks)
    return {
        "passed": True,
        "reference": reference.relative_to(bmc.REPO).as_posix()
        if reference.is_relative_to(bmc.REPO) else str(reference),
        "reference_sha256": ref["sha256"],
        "dev_eval_texts": len(ref["texts"]),
        "dev_eval_recordings": len(ref["sources"]),
        "files_checked": len(rows),
        "prompts_checked": len(split_of_prompt),
        "files_with_dev_eval_text": 0,
        "files_with_dev_eval_audio": 0,
        "prompts_in_train_and_valid": 0,
        "flac_decoded_and_md5_checked": len(rows),
    }


# ----------------------------------------------------------------------------- main

def count_asterisk_files() -> tuple[int, float]:
    n, secs = 0, 0.0
    for _, voice_dir in tools.ASTERISK_VOICES:
        for f in (tools.ASTERISK_SOUNDS / voice_dir).rglob("*.g722"):
            n += 1
            secs += f.stat().st_size / 8000.0
    return n, secs


def build(out: Path, seed: int, jobs: int, versions: dict, prompts_per_voice: int | None,
          min_s: float = MIN_CHUNK_S, reference: Path = REFERENCE) -> int:
    n_files, raw_secs = count_asterisk_files()
    prompts = bmc.load_prompts()
    n_transcribed = len(prompts)
    if prompts_per_voice is not None:
        rng = random.Random(f"{seed}:subset")
        subset = []
        for lang, _ in tools.ASTERISK_VOICES:
            mine = sorted((p for p in prompts if p["lang"] == lang), key=lambda p: p["key"])
            subset += rng.sample(mine, min(prompts_per_voice, len(mine)))
        prompts = subset
    for p in prompts:
        p["sha256"] = sha256_file(Path(p["source"]))
    prompts_by_key = {(p["lang"], p["key"]): p for p in prompts}

    ref = read_reference(reference)
    excluded = Counter()
    kept = []
    for p in prompts:
        reasons = leak_reasons(p, ref)
        if "text" in reasons:
            excluded["dev_eval_text"] += 1
        elif reasons:
            excluded["dev_eval_audio_only"] += 1
        else:
            kept.append(p)
    translations = sum(1 for p in kept if p["key"] in ref["prompt_names"])
    print(f"{n_files} Asterisk files ({raw_secs / 60:.1f} min), {n_transcribed} transcribed "
          f"speech prompts; using {len(prompts)}: {len(kept)} kept, "
          f"{excluded['dev_eval_text']} excluded for a dev/eval text, "
          f"{excluded['dev_eval_audio_only']} for dev/eval audio alone", flush=True)
    print(f"building {len(kept)} prompts x speeds {', '.join(map(str, SPEEDS))} into {out} "
          f"with {jobs} jobs", flush=True)

    tmp = tools.fresh_staging_dir(out)
    t0 = time.time()
    try:
        staging = tmp / "staging"
        results = {}
        with mp.get_context("fork").Pool(jobs) as pool:
            tasks = [(p, str(staging), min_s) for p in kept]
            for i, r in enumerate(pool.imap_unordered(_run, tasks, chunksize=4), 1):
                if "error" in r:
                    pool.terminate()
                    raise RuntimeError("failed on " + r["error"])
                results[r["key"]] = r
                if i == len(tasks) or i % 200 == 0:
                    print(f"  {i}/{len(tasks)} prompts ({time.time() - t0:.0f} s)", flush=True)

        with_files = [p for p in kept if results[(p["lang"], p["key"])]["files"]]
        valid = assign_valid(with_files, seed)
        rows = []
        for p in sorted(with_files, key=lambda p: (p["speaker"], p["key"])):
            key = (p["lang"], p["key"])
            split = "valid" if key in valid else "train"
            for f in results[key]["files"]:
                rel = f"audio/{split}/{f['stem']}.flac"
                (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
                (staging / f"{f['stem']}.flac").rename(tmp / rel)
                rows.append({"path": rel, "split": split, "voice": p["speaker"],
                             "language": p["lang"], "prompt": p["key"],
                             "speed": f"{f['speed']:.1f}", "duration_s": f"{f['seconds']:.3f}"})
        leftover = [x for x in staging.rglob("*") if x.is_file()]
        assert not leftover, f"files not placed: {leftover[:3]}"
        shutil.rmtree(staging)

        # the paths and names are [A-Za-z0-9_./-], so no field ever needs quoting
        with open(tmp / "manifest.csv", "w", encoding="utf-8", newline="") as f:
            f.write(",".join(MANIFEST_HEADER) + "\n")
            for r in rows:
                f.write(",".join(r[c] for c in MANIFEST_HEADER) + "\n")
        with open(tmp / "pretrain.csv", "w", encoding="utf-8", newline="") as f:
            f.write("path,label,speaker,system,split\n")
            for r in rows:
                f.write(f"{r['path']},bonafide,{r['voice']},-,{r['split']}\n")

        check = leakage_check(tmp, prompts_by_key, reference, jobs)

        def summary(sel: list[dict]) -> dict:
            return {"prompts": len({(r["language"], r["prompt"]) for r in sel}),
                    "files": len(sel),
                    "minutes": round(sum(float(r["duration_s"]) for r in sel) / 60, 2)}

        splits = {s: summary([r for r in rows if r["split"] == s]) for s in ("train", "valid")}
        per_voice = {v: {s: summary([r for r in rows if r["voice"] == v and r["split"] == s])
                         for s in ("train", "valid")}
                     for v in sorted({r["voice"] for r in rows})}
        per_speed = {sp: summary([r for r in rows if r["speed"] == sp])
                     for sp in sorted({r["speed"] for r in rows})}
        dropped = [s for r in results.values() for s in r["dropped"]]
        total_min = sum(float(r["duration_s"]) for r in rows) / 60
        info = {
            "mode": "pretrain",
            "seed": seed,
            "speeds": list(SPEEDS),
            "max_chunk_seconds": MAX_CHUNK_S,
            "min_chunk_seconds": min_s,
            "valid_fraction": VALID_FRACTION,
            "prompts": {
                "asterisk_files": n_files,
                "asterisk_minutes": round(raw_secs / 60, 2),
                "transcribed_speech_prompts": n_transcribed,
                "used": len(prompts),
                "excluded_dev_eval_text": excluded["dev_eval_text"],
                "excluded_dev_eval_audio_only": excluded["dev_eval_audio_only"],
                "kept": len(kept),
                "kept_minutes_raw": round(sum(p["raw_s"] for p in kept) / 60, 2),
                "kept_without_files_all_chunks_under_min": len(kept) - len(with_files),
                "kept_translations_of_dev_eval_prompt_names": translations,
            },
            "dropped_short_chunks": {"files": len(dropped),
                                     "minutes": round(sum(dropped) / 60, 2)},
            "splits": splits,
            "total_files": len(rows),
            "total_minutes": round(total_min, 2),
            "per_speed": per_speed,
            "per_voice": per_voice,
            "leakage_check": check,
            "tools": versions,
            "python": sys.version.split()[0],
        }
        (tmp / "build_info.json").write_text(json.dumps(info, indent=2, ensure_ascii=False)
                                             + "\n", encoding="utf-8")
        size = bmc.dir_size(tmp)
        bmc.place(tmp, out, marker="manifest.csv")
    except RuntimeError as e:
        shutil.rmtree(tmp, ignore_errors=True)
        raise SystemExit(f"error: {e}") from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise

    print(f"\ndone in {time.time() - t0:.0f} s: {out} ({size / 2**20:.1f} MiB)")
    pr = info["prompts"]
    print(f"prompts: {pr['kept']} kept ({pr['kept_minutes_raw']} min before trimming), "
          f"{pr['excluded_dev_eval_text']} excluded for a dev/eval text, "
          f"{pr['excluded_dev_eval_audio_only']} for dev/eval audio alone; "
          f"{pr['kept_without_files_all_chunks_under_min']} kept prompts too short "
          f"(< {min_s} s) at every speed")
    print(f"dropped {len(dropped)} chunks under {min_s} s "
          f"({sum(dropped) / 60:.2f} min)")
    print("| split | prompts | files | minutes |\n|---|---|---|---|")
    for s, v in splits.items():
        print(f"| {s} | {v['prompts']} | {v['files']} | {v['minutes']:.2f} |")
    print(f"| all | {splits['train']['prompts'] + splits['valid']['prompts']} | {len(rows)} "
          f"| {total_min:.2f} |")
    print(f"leakage check PASSED: {check['files_checked']} files of {check['prompts_checked']} "
          f"prompts, none with any of the {check['dev_eval_texts']} dev/eval texts or "
          f"{check['dev_eval_recordings']} dev/eval recordings, no prompt in both train and "
          f"valid, every FLAC decoded (flac -t)")
    return 0
