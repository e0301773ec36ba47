"""Prompts are synthesised or converted once, cached by content, and a change costs one synthesis."""

from __future__ import annotations

import subprocess

import numpy as np
import pytest

from node_agent.config import load
from node_agent.prompts import PromptError, PromptLibrary
from simulator.analysis import analyse
from tests.node.test_config import GOOD


def test_build_once_then_only_what_changed(tmp_path):
    cfg_path = tmp_path / "branch.toml"
    cfg_path.write_text(GOOD, encoding="utf-8")
    lib = PromptLibrary(load(cfg_path))
    first = lib.build()
    assert first.built == 6 and first.cached == 0  # 3 prompts x 2 languages
    again = PromptLibrary(load(cfg_path)).build()
    assert again.built == 0 and again.cached == 6  # a restart synthesises nothing
    cfg_path.write_text(GOOD.replace('en = "Goodbye"', 'en = "Goodbye and thank you"'), encoding="utf-8")
    changed = PromptLibrary(load(cfg_path)).build()
    assert changed.built == 1 and changed.cached == 5
    bye_en = PromptLibrary(load(cfg_path)).get("bye", "en")
    bye_cmn = PromptLibrary(load(cfg_path)).get("bye", "cmn")
    assert len(bye_en) > 8000 * 0.8 and analyse(bye_en)["active_fraction"] > 0.5
    assert len(bye_cmn) != len(bye_en)  # a different language, a different recording


def test_wav_prompts_of_any_rate_are_converted(tmp_path):
    wav = tmp_path / "hold.wav"
    subprocess.run(["sox", "-n", "-r", "44100", "-c", "2", str(wav), "synth", "1.5", "sine", "700"], check=True)
    cfg_path = tmp_path / "branch.toml"
    cfg_path.write_text(GOOD + '\n[prompts.hold]\nwav = "hold.wav"\n', encoding="utf-8")
    lib = PromptLibrary(load(cfg_path))
    pcm = lib.get("hold", "en")
    assert abs(len(pcm) - 12000) < 50
    assert abs(analyse(pcm)["peak_hz"][0] - 700) < 5


def test_a_wav_that_disappears_gives_a_clear_error(tmp_path):
    wav = tmp_path / "hold.wav"
    subprocess.run(["sox", "-n", "-r", "8000", "-c", "1", str(wav), "synth", "0.2", "sine", "500"], check=True)
    cfg_path = tmp_path / "branch.toml"
    cfg_path.write_text(GOOD + '\n[prompts.hold]\nwav = "hold.wav"\n', encoding="utf-8")
    cfg = load(cfg_path)
    wav.unlink()
    with pytest.raises(PromptError, match="prompt 'hold': cannot read .*hold.wav"):
        PromptLibrary(cfg).build()


def test_nodectl_exports_every_prompt_as_wav_to_listen_to(tmp_path):
    import sys
    import wave

    import numpy as np

    from tests.conftest import ROOT

    cfg_path = tmp_path / "branch.toml"
    cfg_path.write_text(GOOD, encoding="utf-8")
    out = tmp_path / "listen"
    res = subprocess.run([sys.executable, "-m", "node_agent.cli", "-c", str(cfg_path), "prompts", "export", str(out)],
                         cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0 and "6 WAV file(s) written" in res.stdout, res.stderr
    lib = PromptLibrary(load(cfg_path))
    assert sorted(p.name for p in out.iterdir()) == sorted(f"{n}.{lang}.wav" for n in lib.config.prompts
                                                           for lang in ("cmn", "en"))
    with wave.open(str(out / "bye.cmn.wav")) as w:
        assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (8000, 1, 2)
        pcm = np.frombuffer(w.readframes(w.getnframes()), "<i2")
    assert np.array_equal(pcm, lib.get("bye", "cmn"))  # what callers hear, sample for sample


def test_a_position_prompt_is_spoken_with_its_number_once_per_number(tmp_path, monkeypatch):
    cfg_path = tmp_path / "branch.toml"
    cfg_path.write_text(GOOD + '\n[prompts.place]\nen = "You are number {n} in line"\ncmn = "您排在第{n}位"\n',
                        encoding="utf-8")
    lib = PromptLibrary(load(cfg_path))
    assert lib.build().built == 6  # the template itself is never spoken
    assert "place.en" not in lib.export(tmp_path / "out", ["en"])
    two, three = lib.spoken("place", "en", 2), lib.spoken("place", "en", 3)
    assert len(two) > 8000 and analyse(two)["active_fraction"] > 0.5 and not np.array_equal(two[:len(three)], three)
    import node_agent.prompts as prompts

    def no_synthesis(*a, **k):
        raise AssertionError("synthesised again: the number's prompt was not cached")

    monkeypatch.setattr(prompts, "synthesize", no_synthesis)
    again = PromptLibrary(load(cfg_path)).spoken("place", "en", 2)  # a restart: from the cache
    assert np.array_equal(again, two)
    with pytest.raises(PromptError, match="text prompt with {n}"):
        PromptLibrary(load(cfg_path)).spoken("nope", "en", 2)
