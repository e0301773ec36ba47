"""Audio files and speech as 8 kHz int16: WAV of any rate through sox (8 kHz WAV out), text through espeak-ng.

Used for the node's prompts and the simulated callers' speech alike."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
import wave
from pathlib import Path

import numpy as np


class MediaError(RuntimeError):
    """A tool is missing or refused the input; the message says which and what to do."""

    pass


def _need(tool: str, package: str) -> str:
    path = shutil.which(tool)
    if not path:
        raise MediaError(f"{tool} is not installed: run `make setup` (or apt-get install {package})")
    return path


def to_8k(path: str | Path) -> np.ndarray:
    """Any WAV (any rate, channels, width) as 8 kHz mono int16, converted by sox."""
    p = Path(path)
    if not p.is_file():
        raise MediaError(f"audio file {p} does not exist")
    sox = _need("sox", "sox")
    res = subprocess.run([sox, str(p), "-t", "raw", "-r", "8000", "-c", "1", "-b", "16", "-e", "signed-integer",
                          "-L", "-"], capture_output=True, check=False)
    if res.returncode != 0:
        raise MediaError(f"sox could not read {p}: {res.stderr.decode(errors='replace').strip()}")
    return np.frombuffer(res.stdout, dtype="<i2").astype(np.int16)


def write_wav(path: str | Path, pcm: np.ndarray) -> Path:
    """8 kHz int16 samples as a mono 16-bit WAV file (what callers hear, or what they said)."""
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(np.asarray(pcm).astype("<i2").tobytes())
    return Path(path)


def synthesize(text: str, voice: str = "en") -> np.ndarray:
    """``text`` spoken by espeak-ng in ``voice`` (en, cmn, yue, ...), as 8 kHz int16 (no cache)."""
    espeak = _need("espeak-ng", "espeak-ng")
    with tempfile.TemporaryDirectory() as tmp:
        wav = Path(tmp) / "speech.wav"
        # the text goes on stdin, never in argv: there a text starting with "-" is an option
        # (`-f FILE` reads a file), and an argument is limited to 128 KiB
        res = subprocess.run([espeak, "-v", voice, "-w", str(wav), "--stdin"], input=text.encode(),
                             capture_output=True, check=False)
        if res.returncode != 0 or not wav.is_file():
            raise MediaError(f"espeak-ng failed for voice {voice!r}: {res.stderr.decode(errors='replace').strip()}")
        return to_8k(wav)


def speak(text: str, voice: str = "en", cache_dir: str | Path | None = None) -> np.ndarray:
    """:func:`synthesize`, cached by text and voice (for simulated callers and tests)."""
    cache = Path(cache_dir or os.environ.get("BRANCHNODE_CACHE", Path.home() / ".cache" / "branchnode")) / "speech"
    key = hashlib.sha256(f"{voice}\0{text}".encode()).hexdigest()[:24]
    raw = cache / f"{key}.s16"
    if raw.is_file():
        return np.fromfile(raw, dtype="<i2").astype(np.int16)
    pcm = synthesize(text, voice)
    cache.mkdir(parents=True, exist_ok=True)
    tmp = raw.with_suffix(".tmp")
    pcm.astype("<i2").tofile(tmp)
    tmp.replace(raw)
    return pcm
