#!/usr/bin/env python3
"""Build the fadlora mini corpus: an ASVspoof-2019-LA-style fake-audio corpus from real data.

Bona fide: the Asterisk IVR prompts of five professional voices (en, es, fr, it, ru; Debian
packages asterisk-core-sounds-*-g722). Spoofs: seven systems of different families (formant,
diphone, HMM and clustergen statistical parametric, neural VITS TTS speaking the prompt
texts; WORLD vocoder and Codec 2 resynthesis of the bona fide recordings). See
datasets/README.md for the full description.

    python3 datasets/build/build_mini_corpus.py                 # compact corpus -> datasets/mini
    python3 datasets/build/build_mini_corpus.py --full --out datasets/build-out/full
    python3 datasets/build/build_mini_corpus.py --check-tools
    python3 datasets/build/build_mini_corpus.py --install       # apt-get/pip what is missing
    python3 datasets/build/build_mini_corpus.py --pretrain      # unlabelled speech for SSL
                                                                # pretraining -> datasets/pretrain
"""

from __future__ import annotations

import argparse
import gzip
import json
import multiprocessing as mp
import os
import random
import re
import shutil
import struct
import sys
import time
import traceback
from collections import Counter, defaultdict
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import corpus_tools as tools  # noqa: E402  (no third-party imports in this module)

REPO = HERE.parent.parent
DEFAULT_OUT = REPO / "datasets" / "mini"
SPLITS = ("train", "dev", "eval")
SPLIT_LETTER = {"train": "T", "dev": "D", "eval": "E"}
PROTOCOL_NAME = {
    "train": "ASVspoof2019.LA.cm.train.trn.txt",
    "dev": "ASVspoof2019.LA.cm.dev.trl.txt",
    "eval": "ASVspoof2019.LA.cm.eval.trl.txt",
}
SPLIT_FRACTIONS = {"train": 0.4, "dev": 0.2, "eval": 0.4}
DEFAULT_SEED = 2023

# Compact corpus: counts per split. Bona fide is balanced over the five voices.
COMPACT_BONAFIDE = {"train": 40, "dev": 20, "eval": 40}
COMPACT_KNOWN = {"train": 16, "dev": 8, "eval": 16}  # systems seen in training
COMPACT_UNSEEN = {"train": 0, "dev": 0, "eval": 40}  # eval-only systems
# Eval bona fide beyond COMPACT_BONAFIDE["eval"], so that eval EERs rest on at least 100 bona
# fide trials. They are drawn after everything else (the other utterances, their ids and
# audio stay as they were) and only from recordings whose text an eval spoof already speaks,
# so they add no text to eval and the pretraining set, which leaves out every dev/eval text,
# is the same with or without them.
COMPACT_EVAL_BONAFIDE_EXTRA = 60
# Half of the compact bona fide is English: five of the seven spoof systems are English-only
# TTS, and this keeps the share of English equal in both classes of the training split
# (spoof: 2 English-only + 3 all-language systems = 52% English).
COMPACT_BONAFIDE_SHARES = {"en": 0.5}
COMPACT_MAX_S = 3.0
COMPACT_MIN_RAW_S = 1.2  # prompt length window (raw recording) for the compact selection
COMPACT_MAX_RAW_S = 3.3

SPEAKERS = {
    "en": "ast_en_allison",
    "es": "ast_es_allison",
    "fr": "ast_fr_june",
    "it": "ast_it_carlo",
    "ru": "ast_ru_ivrvoice",
}


# ----------------------------------------------------------------------------- prompts

def clean_text(text: str) -> str:
    """Drop stage directions such as `[beep]`, `<beep ascending>`, `(emphase)`."""
    text = re.sub(r"\[[^\]]*\]|<[^>]*>|\([^)]*\)", " ", text)
    text = text.replace("\ufeff", "")
    text = re.sub(r"\s+", " ", text).strip()
    # leading punctuation ("... callers waiting") crashes festival's kal_diphone voice
    return re.sub(r"^[^\w\"'¿¡«]+", "", text)


def norm_text(text: str) -> str:
    return re.sub(r"[\W_]+", " ", text.lower(), flags=re.UNICODE).strip()


def load_prompts() -> list[dict]:
    prompts = []
    for lang, voice_dir in tools.ASTERISK_VOICES:
        root = tools.ASTERISK_SOUNDS / voice_dir
        with gzip.open(tools.transcript_path(lang), "rt", encoding="utf-8-sig") as f:
            lines = f.read().splitlines()
        seen = set()
        for line in lines:
            line = line.strip()
            if not line or line.startswith(";") or ":" not in line:
                continue
            key, text = line.split(":", 1)
            key = key.strip()
            if key in seen or not re.fullmatch(r"[A-Za-z0-9_./-]+", key) or ".." in key:
                continue
            seen.add(key)
            text = clean_text(text)
            audio = root / f"{key}.g722"
            if not audio.is_file() or not re.search(r"\w", text):
                continue
            prompts.append({
                "lang": lang,
                "key": key,
                "text": text,
                "source": str(audio),
                "raw_s": audio.stat().st_size / 8000.0,  # G.722 = 64 kbit/s
                "speaker": SPEAKERS[lang],
            })
    return prompts


def assign_splits(prompts: list[dict], seed: int) -> dict[str, str]:
    """Split by prompt: a key and its translations share a split, and keys whose texts
    coincide (in any language) are merged, so no text appears in two splits."""
    parent: dict[str, str] = {}

    def find(a: str) -> str:
        while parent.setdefault(a, a) != a:
            parent[a] = parent[parent[a]]
            a = parent[a]
        return a

    by_text: dict[str, str] = {}
    for p in prompts:
        find(p["key"])
        t = norm_text(p["text"])
        if t in by_text:
            ra, rb = find(by_text[t]), find(p["key"])
            if ra != rb:
                parent[max(ra, rb)] = min(ra, rb)
        else:
            by_text[t] = p["key"]
    groups: dict[str, list[str]] = defaultdict(list)
    for key in sorted(parent):
        groups[find(key)].append(key)
    roots = sorted(groups)
    random.Random(f"{seed}:split").shuffle(roots)
    n = len(roots)
    n_train = round(SPLIT_FRACTIONS["train"] * n)
    n_dev = round(SPLIT_FRACTIONS["dev"] * n)
    split_of = {}
    for i, root in enumerate(roots):
        split = "train" if i < n_train else "dev" if i < n_train + n_dev else "eval"
        for key in groups[root]:
            split_of[key] = split
    return split_of


# ----------------------------------------------------------------------------- planning

def quotas(rng: random.Random, langs: list[str], n: int,
           shares: dict[str, float] | None = None) -> dict[str, int]:
    """Split n over languages: fixed shares where given, the rest evenly; the remainder goes
    to languages drawn at random."""
    shares = {k: v for k, v in (shares or {}).items() if k in langs}
    q = {lang: round(n * shares[lang]) for lang in shares}
    rest = [lang for lang in langs if lang not in q]
    left = n - sum(q.values())
    for lang in rest:
        q[lang] = left // len(rest) if rest else 0
    extra = n - sum(q.values())
    order = sorted(rest or langs)
    rng.shuffle(order)
    for i in range(extra):
        q[order[i % len(order)]] += 1
    return q


def pick(rng: random.Random, pools: dict[str, list[dict]], n: int,
         shares: dict[str, float] | None = None) -> list[dict]:
    """n prompts drawn without replacement, spread over the languages of `pools`."""
    pools = {lang: sorted(p, key=lambda x: x["key"]) for lang, p in pools.items() if p}
    q = quotas(rng, sorted(pools), n, shares)
    out = []
    for lang in sorted(pools):
        if q[lang] > len(pools[lang]):
            raise SystemExit(f"error: only {len(pools[lang])} {lang} prompts available, "
                             f"{q[lang]} needed")
        out += rng.sample(pools[lang], q[lang])
    return out


def extra_eval_bonafide(items: list[dict], eval_pools: dict[str, list[dict]],
                        seed: int) -> list[dict]:
    """COMPACT_EVAL_BONAFIDE_EXTRA more eval bona fide recordings: the Asterisk recordings of
    prompts that an eval spoof already speaks or resynthesises and that are not eval bona
    fide yet (so no new text enters eval), drawn with their own seed stream."""
    spoken = {(it["lang"], it["key"]) for it in items
              if it["split"] == "eval" and it["system"] != "-"}
    bonafide = {(it["lang"], it["key"]) for it in items
                if it["split"] == "eval" and it["system"] == "-"}
    candidates = sorted((p for lang in sorted(eval_pools) for p in eval_pools[lang]
                         if (p["lang"], p["key"]) in spoken - bonafide),
                        key=lambda p: (p["lang"], p["key"]))
    if len(candidates) < COMPACT_EVAL_BONAFIDE_EXTRA:
        raise SystemExit(f"error: only {len(candidates)} eval recordings with an eval spoof's "
                         f"text, {COMPACT_EVAL_BONAFIDE_EXTRA} needed")
    return random.Random(f"{seed}:eval:bonafide-extra").sample(candidates,
                                                               COMPACT_EVAL_BONAFIDE_EXTRA)


def plan(prompts: list[dict], split_of: dict[str, str], full: bool, seed: int) -> list[dict]:
    import corpus_systems as cs

    by_split_lang: dict[str, dict[str, list[dict]]] = {s: defaultdict(list) for s in SPLITS}
    for p in prompts:
        if not full and not (COMPACT_MIN_RAW_S <= p["raw_s"] <= COMPACT_MAX_RAW_S):
            continue
        by_split_lang[split_of[p["key"]]][p["lang"]].append(p)

    items = []

    def add(p: dict, split: str, system: str) -> None:
        speaker = cs.speaker_for(system, p["lang"], p["speaker"], p["key"])
        items.append({**p, "split": split, "system": system, "speaker": speaker,
                      "label": "bonafide" if system == "-" else "spoof"})

    for split in SPLITS:
        pools = by_split_lang[split]
        # bona fide
        chosen = ([p for lang in sorted(pools) for p in pools[lang]] if full else pick(
            random.Random(f"{seed}:{split}:bonafide"), pools, COMPACT_BONAFIDE[split],
            COMPACT_BONAFIDE_SHARES))
        for p in chosen:
            add(p, split, "-")
        for system in cs.SYSTEMS:
            if system.unseen and split != "eval":
                continue
            sub = {lang: list(v) for lang, v in pools.items() if lang in system.langs}
            if full:
                chosen = [p for lang in sorted(sub) for p in sub[lang]]
            else:
                n = (COMPACT_UNSEEN if system.unseen else COMPACT_KNOWN)[split]
                chosen = pick(random.Random(f"{seed}:{split}:{system.token}"), sub, n)
            for p in chosen:
                add(p, split, system.token)

    # utterance ids: random 7-digit numbers, in an order unrelated to class or system
    for split in SPLITS:
        its = sorted((it for it in items if it["split"] == split),
                     key=lambda it: (it["system"], it["lang"], it["key"]))
        rng = random.Random(f"{seed}:{split}:ids")
        rng.shuffle(its)
        numbers = sorted(rng.sample(range(1_000_000, 10_000_000), len(its)))
        for it, num in zip(its, numbers):
            it["utt"] = f"LA_{SPLIT_LETTER[split]}_{num:07d}"
    if not full:
        # ids of their own, so that every other utterance keeps its id (and its audio)
        taken = {it["utt"] for it in items}
        rng = random.Random(f"{seed}:eval:ids-extra")
        for p in extra_eval_bonafide(items, by_split_lang["eval"], seed):
            add(p, "eval", "-")
            utt = None
            while utt is None or utt in taken:
                utt = f"LA_{SPLIT_LETTER['eval']}_{rng.randrange(1_000_000, 10_000_000):07d}"
            taken.add(utt)
            items[-1]["utt"] = utt
    items.sort(key=lambda it: it["utt"])
    split_of_text: dict[str, str] = {}
    for it in items:
        t = norm_text(it["text"])
        if split_of_text.setdefault(t, it["split"]) != it["split"]:
            raise AssertionError(f"text {it['text']!r} in {split_of_text[t]} and {it['split']}")
    return items


# ----------------------------------------------------------------------------- building

def flac_path(root: Path, item: dict) -> Path:
    return root / f"ASVspoof2019_LA_{item['split']}" / "flac" / f"{item['utt']}.flac"


def _process_one(item: dict, root: Path, max_s: float | None, piper=None) -> dict:
    import corpus_audio as ca
    import corpus_systems as cs

    x = piper(item) if item["system"] == "piper-vits" else cs.generate(item)
    if item["system"] != "-":
        # spoofs: same level as the final corpus, then through the codec the bona fide carries
        x = ca.g722_round_trip(ca.normalise(ca.trim(x)))
    seconds = ca.finish(x, max_s, item["utt"], flac_path(root, item))
    return {"utt": item["utt"], "seconds": seconds}


def run_task(task: tuple) -> list[dict]:
    """One task: a single utterance, or the whole piper batch (sequential, reproducible).
    A failed utterance comes back with an `error` message instead of a duration."""
    items, root, max_s, seed = task
    piper = None
    results = []
    for it in items:
        try:
            if it["system"] == "piper-vits" and piper is None:
                import corpus_systems as cs

                piper = cs.PiperSynth(seed)
            results.append(_process_one(it, Path(root), max_s, piper))
        except Exception as e:  # noqa: BLE001 - reported with the utterance by the parent
            results.append({"utt": it["utt"], "error": (
                f"{it['utt']} ({it['system']}, {it['lang']}:{it['key']}, text {it['text']!r}): "
                f"{e}\n{traceback.format_exc(limit=3)}")})
    return results


def build_audio(items: list[dict], root: Path, max_s: float | None, jobs: int, seed: int,
                skip_failures: bool) -> list[dict]:
    """Makes every FLAC; returns the items that were built. A failure aborts the build unless
    `skip_failures` (then the utterance is left out and reported)."""
    piper_items = [it for it in items if it["system"] == "piper-vits"]
    tasks = [(piper_items, str(root), max_s, seed)] if piper_items else []
    tasks += [([it], str(root), max_s, seed) for it in items if it["system"] != "piper-vits"]
    seconds, errors = {}, {}
    done, total, t0 = 0, len(items), time.time()
    ctx = mp.get_context("fork")
    with ctx.Pool(jobs) as pool:
        for results in pool.imap_unordered(run_task, tasks):
            for r in results:
                if "error" in r:
                    errors[r["utt"]] = r["error"]
                    print(f"  FAILED {r['error'].splitlines()[0]}", flush=True)
                    if not skip_failures:
                        pool.terminate()
                        raise RuntimeError("failed on " + r["error"])
                else:
                    seconds[r["utt"]] = r["seconds"]
            done += len(results)
            if done == total or done % 50 < len(results):
                print(f"  {done}/{total} utterances ({time.time() - t0:.0f} s)", flush=True)
    built = []
    for it in items:
        if it["utt"] in seconds:
            it["seconds"] = seconds[it["utt"]]
            built.append(it)
    if errors:
        print(f"warning: {len(errors)} utterance(s) failed and were left out:", flush=True)
        for msg in errors.values():
            print("  " + msg.splitlines()[0], flush=True)
    return built


def write_protocols(items: list[dict], root: Path) -> None:
    proto = root / "ASVspoof2019_LA_cm_protocols"
    proto.mkdir(parents=True, exist_ok=True)
    for split in SPLITS:
        with open(proto / PROTOCOL_NAME[split], "w", encoding="utf-8") as f:
            for it in items:
                if it["split"] == split:
                    f.write(f"{it['speaker']} {it['utt']} - {it['system']} {it['label']}\n")
    import corpus_systems as cs

    with open(root / "metadata.tsv", "w", encoding="utf-8") as f:
        f.write("utt\tsplit\tlabel\tsystem\tspeaker\tlanguage\tprompt\tseconds\tsource_audio"
                "\ttext\n")
        for it in items:
            sys_ = cs.SYSTEMS_BY_TOKEN.get(it["system"])
            source = ("-" if sys_ is not None and sys_.source == "text" else
                      Path(it["source"]).relative_to(tools.ASTERISK_SOUNDS).as_posix())
            f.write("\t".join([it["utt"], it["split"], it["label"], it["system"], it["speaker"],
                               it["lang"], it["key"], f"{it['seconds']:.3f}", source,
                               it["text"].replace("\t", " ")]) + "\n")


def read_streaminfo(path: Path) -> tuple[int, int, int, int]:
    """(sample rate, channels, bits per sample, total samples) from a FLAC header."""
    with open(path, "rb") as f:
        head = f.read(42)
    if len(head) < 42 or head[:4] != b"fLaC" or head[4] & 0x7F != 0:
        raise ValueError(f"{path}: not a FLAC file")
    si = head[8:42]
    bits = int.from_bytes(si[10:18], "big")
    rate = bits >> 44
    channels = ((bits >> 41) & 0x7) + 1
    bps = ((bits >> 36) & 0x1F) + 1
    samples = bits & ((1 << 36) - 1)
    return rate, channels, bps, samples


def verify(items: list[dict], root: Path, jobs: int) -> None:
    """Every FLAC: 16 kHz mono 16-bit header, and a full decode with MD5 check (flac -t)."""
    paths = [flac_path(root, it) for it in items]
    for p in paths:
        rate, ch, bps, n = read_streaminfo(p)
        if (rate, ch, bps) != (16000, 1, 16) or n == 0:
            raise SystemExit(f"error: {p}: {rate} Hz, {ch} ch, {bps} bit, {n} samples")
    chunks = [paths[i:i + 200] for i in range(0, len(paths), 200)]
    with mp.get_context("fork").Pool(jobs) as pool:
        pool.map(_flac_test, [[str(p) for p in c] for c in chunks])


def _flac_test(paths: list[str]) -> None:
    import corpus_audio as ca

    ca.run(["flac", "-t", "--silent", *paths])


def stats_table(items: list[dict]) -> str:
    import corpus_systems as cs

    systems = ["-"] + [s.token for s in cs.SYSTEMS]
    rows = ["| split | " + " | ".join("bona fide" if s == "-" else f"`{s}`" for s in systems)
            + " | total | hours |",
            "|---" * (len(systems) + 3) + "|"]
    for split in (*SPLITS, "all"):
        sel = [it for it in items if split == "all" or it["split"] == split]
        c = Counter(it["system"] for it in sel)
        secs = sum(it["seconds"] for it in sel)
        rows.append(f"| {split} | " + " | ".join(str(c.get(s, 0)) for s in systems)
                    + f" | {len(sel)} | {secs / 3600:.2f} |")
    return "\n".join(rows)


def language_table(items: list[dict]) -> str:
    langs = sorted({it["lang"] for it in items})
    rows = ["| split | label | " + " | ".join(langs) + " |", "|---" * (len(langs) + 2) + "|"]
    for split in SPLITS:
        for label in ("bonafide", "spoof"):
            c = Counter(it["lang"] for it in items if it["split"] == split and it["label"] == label)
            rows.append(f"| {split} | {label} | " + " | ".join(str(c.get(x, 0)) for x in langs)
                        + " |")
    return "\n".join(rows)


def dir_size(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file())


def place(tmp: Path, out: Path, marker: str = "ASVspoof2019_LA_cm_protocols") -> None:
    """Replace `out` by the finished build in `tmp` (same file system: two renames). `marker`
    is what an earlier build of the same kind has in it; anything else is not overwritten."""
    if out.exists():
        if any(out.iterdir()) and not (out / marker).exists():
            raise SystemExit(f"error: {out} exists and is not a build of this kind by this "
                             "script; remove it or choose another --out")
        old = out.parent / f".{out.name}.old-{os.getpid()}"
        out.rename(old)
        tmp.rename(out)
        shutil.rmtree(old)
    else:
        tmp.rename(out)


# ----------------------------------------------------------------------------- main

def check_tools(install: bool, pretrain: bool = False) -> dict[str, str]:
    results = tools.probe_all(pretrain)
    missing = [t for t, v in results if v is None]
    if missing and install:
        tools.install(missing)
        results = tools.probe_all(pretrain)
        missing = [t for t, v in results if v is None]
    if missing:
        raise SystemExit("error: " + tools.missing_message(missing))
    return {t.name: v for t, v in results}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description="Build the fadlora mini corpus (ASVspoof 2019 LA layout) from the Asterisk "
                    "prompts and seven spoofing systems; with --pretrain, unlabelled real speech "
                    "for self-supervised pretraining instead.",
        epilog="--pretrain writes every transcribed Asterisk prompt of the five voices whose "
               "text occurs in no dev/eval row of datasets/mini/metadata.tsv and whose "
               "recording dev/eval does not use, trimmed and levelled like the corpus, at "
               "speeds 0.9, 1.0 and 1.1 (sox speed), cut into chunks of at most 8 s (chunks "
               "under 1 s dropped), with about 5% of the prompts per voice held out as "
               "`valid`. Output (git-ignored): "
               "audio/{train,valid}/VOICE/PROMPT_spNNN_cK.flac, manifest.csv "
               "(path,split,voice,language,prompt,speed,duration_s), pretrain.csv "
               "(path,label,speaker,system,split; for fadlora's csv: reader) and "
               "build_info.json. It needs only ffmpeg, sox, flac, numpy and the Asterisk "
               "packages, and re-checks the leakage rule on the written files before moving "
               "them into place.")
    ap.add_argument("--out", type=Path, default=None,
                    help=f"output directory (default: {DEFAULT_OUT.relative_to(REPO)}; "
                         "with --pretrain datasets/pretrain)")
    ap.add_argument("--pretrain", action="store_true",
                    help="build the unlabelled pretraining set (speed-perturbed train-only "
                         "Asterisk speech, see below) instead of the corpus; the TTS systems "
                         "are not needed")
    ap.add_argument("--pretrain-min-seconds", type=float, default=None, metavar="S",
                    help="--pretrain: drop chunks shorter than S seconds (default 1.0; short "
                         "prompts are single chunks, so this also drops one-word prompts)")
    ap.add_argument("--full", action="store_true",
                    help="every prompt, every system, no cropping (large; use an ignored --out "
                         "such as datasets/build-out/full)")
    ap.add_argument("--check-tools", action="store_true",
                    help="print every tool with its version (or the install command) and exit")
    ap.add_argument("--install", action="store_true",
                    help="apt-get / pip install whatever is missing, then build")
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="parallel workers")
    ap.add_argument("--seed", type=int, default=DEFAULT_SEED,
                    help=f"selection seed (default {DEFAULT_SEED}; the committed corpus uses it; "
                         "with --pretrain it draws the valid prompts)")
    ap.add_argument("--prompts-per-voice", type=int, default=None, metavar="N",
                    help="use only N prompts of each voice (drawn with the seed; splits are "
                         "unchanged): a quick, smaller --full or --pretrain build for smoke tests")
    ap.add_argument("--max-seconds", type=float, default=None,
                    help=f"crop length after trimming (default {COMPACT_MAX_S} s compact, "
                         "none with --full)")
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--"]:  # `cargo xtask dataset build -- ARGS` may pass the separator on
        argv = argv[1:]
    args = ap.parse_args(argv)

    if args.pretrain and args.full:
        raise SystemExit("error: --pretrain and --full are different targets; choose one")
    if args.pretrain_min_seconds is not None and not args.pretrain:
        raise SystemExit("error: --pretrain-min-seconds needs --pretrain")
    if args.pretrain and args.max_seconds is not None:
        raise SystemExit("error: --max-seconds is not used by --pretrain (chunks are at most "
                         "8 s)")
    if args.check_tools:
        results = tools.probe_all(args.pretrain)
        print("tools used by the corpus builder" + (" (--pretrain)" if args.pretrain else "")
              + ":")
        ok = tools.print_report(results)
        if not ok:
            print("\n" + tools.missing_message([t for t, v in results if v is None]))
        return 0 if ok else 1

    versions = check_tools(args.install, args.pretrain)
    jobs = max(1, args.jobs)
    if args.pretrain:
        import corpus_pretrain

        out = (args.out or corpus_pretrain.DEFAULT_OUT).resolve()
        min_s = (corpus_pretrain.MIN_CHUNK_S if args.pretrain_min_seconds is None
                 else args.pretrain_min_seconds)
        return corpus_pretrain.build(out, args.seed, jobs, versions, args.prompts_per_voice,
                                     min_s)
    out = (args.out or DEFAULT_OUT).resolve()
    if args.full and args.out is None:
        raise SystemExit("error: --full needs --out (e.g. --out datasets/build-out/full); the "
                         "committed datasets/mini holds the compact version")
    max_s = args.max_seconds if args.max_seconds is not None else (
        None if args.full else COMPACT_MAX_S)

    prompts = load_prompts()
    split_of = assign_splits(prompts, args.seed)
    if args.prompts_per_voice is not None:
        rng = random.Random(f"{args.seed}:subset")
        subset = []
        for lang, _ in tools.ASTERISK_VOICES:
            mine = sorted((p for p in prompts if p["lang"] == lang), key=lambda p: p["key"])
            subset += rng.sample(mine, min(args.prompts_per_voice, len(mine)))
        prompts = subset
    items = plan(prompts, split_of, args.full, args.seed)
    print(f"{len(prompts)} prompts from {len(tools.ASTERISK_VOICES)} voices; building "
          f"{len(items)} utterances ({'full' if args.full else 'compact'}) into {out} "
          f"with {jobs} jobs", flush=True)

    tmp = tools.fresh_staging_dir(out)
    t0 = time.time()
    try:
        planned = len(items)
        items = build_audio(items, tmp, max_s, jobs, args.seed, args.full)
        write_protocols(items, tmp)
        verify(items, tmp, jobs)
        info = {
            "mode": "full" if args.full else "compact",
            "seed": args.seed,
            "max_seconds": max_s,
            "utterances": len(items),
            "failed_and_left_out": planned - len(items),
            "tools": versions,
            "python": sys.version.split()[0],
        }
        (tmp / "build_info.json").write_text(json.dumps(info, indent=2, ensure_ascii=False)
                                             + "\n", encoding="utf-8")
        size = dir_size(tmp)
        place(tmp, out)
    except RuntimeError as e:
        shutil.rmtree(tmp, ignore_errors=True)
        raise SystemExit(f"error: {e}") from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    print(f"\ndone in {time.time() - t0:.0f} s: {out} ({size / 2**20:.2f} MiB, "
          f"{len(items)} utterances, all FLAC verified)\n")
    print(stats_table(items))
    print()
    print(language_table(items))
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(130)
