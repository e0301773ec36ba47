"""Prompts: text spoken by espeak-ng per language, or WAV files of any rate, converted once to
8 kHz linear 16-bit and cached by content hash. A changed prompt costs one synthesis; a start-up
with an unchanged configuration costs none.

Prompts are kept linear, not in G.711: the line's HAL encodes what it plays once, in the law
its card uses, so an A-law card hears a prompt encoded once (not μ-law, decoded, then A-law)."""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from drivers.audiofile import MediaError, synthesize, to_8k, write_wav

from .config import NodeConfig, Prompt

log = logging.getLogger("node_agent.prompts")
VOICES = {"en": "en", "cmn": "cmn", "yue": "yue"}  # our language codes -> espeak-ng voices
FORMAT = "s16le8k-v2"  # part of every cache key: changing the stored format invalidates the cache
SAMPLE = np.dtype("<i2")  # how a cached prompt is stored: raw 8 kHz little-endian int16


def is_template(prompt: Prompt) -> bool:
    """A text prompt with ``{n}`` in it (the queue position): never spoken as it is."""
    return prompt.wav is None and any("{n}" in t for t in prompt.texts.values())


class PromptError(RuntimeError):
    """A prompt cannot be produced; says which and why."""


@dataclass(frozen=True)
class BuildReport:
    built: int
    cached: int
    cache_dir: Path


class PromptLibrary:
    def __init__(self, config: NodeConfig, cache_dir: Path | None = None) -> None:
        self.config = config
        self.cache_dir = cache_dir or config.data_dir / "prompts"
        self._loaded: dict[tuple[str, str], np.ndarray] = {}

    def _key(self, prompt: Prompt, language: str) -> tuple[str, str | None]:
        """(cache key, text or None for a WAV) of one prompt in one language."""
        if prompt.wav is not None:
            try:
                data = prompt.wav.read_bytes()
            except OSError as exc:
                raise PromptError(f"prompt {prompt.name!r}: cannot read {prompt.wav}: {exc}") from exc
            return hashlib.sha256(FORMAT.encode() + b"\0wav\0" + data).hexdigest(), None
        text = prompt.texts.get(language) or prompt.texts.get(self.config.language) or next(iter(prompt.texts.values()))
        voice = VOICES[language if language in prompt.texts else self.config.language]
        return hashlib.sha256(f"{FORMAT}\0{voice}\0{text}".encode()).hexdigest(), text

    def _file(self, key: str) -> Path:
        return self.cache_dir / f"{key[:32]}.s16"

    def _produce(self, prompt: Prompt, language: str, text: str | None) -> np.ndarray:
        try:
            if text is None:
                return to_8k(prompt.wav)
            return synthesize(text, VOICES[language if language in prompt.texts else self.config.language])
        except MediaError as exc:
            raise PromptError(f"prompt {prompt.name!r} ({language}): {exc}") from exc

    @property
    def languages(self) -> list[str]:
        """Every language a caller can hear: the node's, and each one a language node offers."""
        return sorted({self.config.language} | {
            lang for flow in self.config.flows.values() for node in flow.nodes.values()
            if node.type == "language" for lang in node["options"].values()})

    def build(self) -> BuildReport:
        """Make sure every prompt in every language is in the cache; returns what it had to do."""
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        built = cached = 0
        for prompt in self.config.prompts.values():
            if is_template(prompt):
                continue  # spoken with a number filled in (spoken()), each made on first use
            for language in (self.languages if prompt.wav is None else [self.config.language]):
                key, text = self._key(prompt, language)
                path = self._file(key)
                if path.is_file():
                    cached += 1
                    continue
                pcm = self._produce(prompt, language, text)
                tmp = path.with_suffix(".tmp")
                tmp.write_bytes(pcm.astype(SAMPLE).tobytes())
                tmp.replace(path)  # whole or not at all: a power cut leaves no half prompt
                built += 1
                log.info("prompt %s (%s): %.1f s", prompt.name, language, len(pcm) / 8000)
        return BuildReport(built, cached, self.cache_dir)

    def export(self, folder: Path, languages: list[str] | None = None) -> dict[str, Path]:
        """Each prompt in each language as 8 kHz 16-bit WAV ``NAME.LANG.wav`` in ``folder``, to listen
        to what callers hear; returns {"NAME.LANG": path}."""
        folder.mkdir(parents=True, exist_ok=True)
        out = {}
        for name, prompt in self.config.prompts.items():
            if is_template(prompt):
                continue
            for language in languages or self.languages:
                out[f"{name}.{language}"] = write_wav(folder / f"{name}.{language}.wav", self.get(name, language))
        return out

    def spoken(self, name: str, language: str, n: int) -> np.ndarray:
        """A text prompt with ``{n}`` said as the number ``n`` ("You are number {n} in line."),
        synthesised on first use and cached like any other (so position 3 costs one synthesis ever).
        Blocks while it synthesises: call it off the event loop."""
        hit = self._loaded.get((name, f"{language}#{n}"))
        if hit is not None:
            return hit
        prompt = self.config.prompts.get(name)
        if prompt is None or prompt.wav is not None:
            raise PromptError(f"prompt {name!r} must be a text prompt with {{n}} in {self.config.path}")
        filled = Prompt(name, {lang: text.replace("{n}", str(n)) for lang, text in prompt.texts.items()})
        key, text = self._key(filled, language)
        path = self._file(key)
        if not path.is_file():
            self.cache_dir.mkdir(parents=True, exist_ok=True)
            pcm = self._produce(filled, language, text)
            tmp = path.with_suffix(f".{n}.tmp")
            tmp.write_bytes(pcm.astype(SAMPLE).tobytes())
            tmp.replace(path)
        pcm = np.fromfile(path, dtype=SAMPLE).astype(np.int16)
        self._loaded[(name, f"{language}#{n}")] = pcm
        return pcm

    def get(self, name: str, language: str) -> np.ndarray:
        """A prompt as 8 kHz int16, from the cache (built on first use if missing)."""
        hit = self._loaded.get((name, language))
        if hit is not None:
            return hit
        prompt = self.config.prompts.get(name)
        if prompt is None:
            raise PromptError(f"no prompt {name!r} in {self.config.path}")
        key, text = self._key(prompt, language)
        path = self._file(key)
        if not path.is_file():
            self.cache_dir.mkdir(parents=True, exist_ok=True)
            pcm = self._produce(prompt, language, text)
            tmp = path.with_suffix(".tmp")
            tmp.write_bytes(pcm.astype(SAMPLE).tobytes())
            tmp.replace(path)
        pcm = np.fromfile(path, dtype=SAMPLE).astype(np.int16)
        self._loaded[(name, language)] = pcm
        return pcm
