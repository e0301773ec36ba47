"""Hearing the call's audio inside the console page, for tests: the loudest frequency now (WebAudio
AnalyserNode), and a recording of what the page received, brought back as 8 kHz samples so the
project's DSP (spandsp's DTMF detector, an FFT) can be run on it.

Both tap the page's ``<audio id="remote-audio">`` stream (the page attaches the remote stream to
that unmuted element; WebAudio hears silence otherwise). The recorder is a ScriptProcessorNode:
an AudioWorklet would need a module URL, which the console's Content-Security-Policy refuses.
"""

from __future__ import annotations

import numpy as np

PEAK = """() => {
  if (!window.__probe) {
    const audio = document.getElementById("remote-audio");
    const ctx = new AudioContext();
    const an = ctx.createAnalyser();
    an.fftSize = 8192;
    an.smoothingTimeConstant = 0;
    ctx.createMediaStreamSource(audio.srcObject).connect(an);
    window.__probe = { ctx, an };
  }
  const { ctx, an } = window.__probe;
  if (ctx.state !== "running") ctx.resume();
  const bins = new Float32Array(an.frequencyBinCount);
  an.getFloatFrequencyData(bins);
  let k = 1;
  for (let i = 2; i < bins.length; i++) if (bins[i] > bins[k]) k = i;
  return { freq: k * ctx.sampleRate / an.fftSize, db: bins[k], state: ctx.state };
}"""

START = """() => {
  const audio = document.getElementById("remote-audio");
  const ctx = new AudioContext({ sampleRate: 48000 });  // 6 x 8 kHz: decimated exactly in Python
  const node = ctx.createScriptProcessor(4096, 1, 1);
  const rec = { ctx, node, chunks: [], rate: ctx.sampleRate };
  node.onaudioprocess = (e) => rec.chunks.push(Array.from(e.inputBuffer.getChannelData(0)));
  ctx.createMediaStreamSource(audio.srcObject).connect(node);
  node.connect(ctx.destination);  // a ScriptProcessor runs only while connected to the output
  window.__rec = rec;
  if (ctx.state !== "running") ctx.resume();
}"""

SECONDS = "() => window.__rec.chunks.length * 4096 / window.__rec.rate"

STOP = """() => {
  const rec = window.__rec;
  rec.node.disconnect();
  rec.ctx.close();
  return { rate: rec.rate, samples: [].concat(...rec.chunks) };
}"""


async def peak(page) -> dict:
    """``{"freq", "db", "state"}``: the strongest frequency the page hears now and its level."""
    return await page.evaluate(PEAK)


async def start_recording(page) -> None:
    await page.evaluate(START)


async def recorded_seconds(page) -> float:
    return await page.evaluate(SECONDS)


async def stop_recording(page) -> np.ndarray:
    """What the page received since ``start_recording``, as 8 kHz int16 (band-limited, then decimated)."""
    got = await page.evaluate(STOP)
    x = np.asarray(got["samples"], dtype=np.float64)
    rate = int(got["rate"])
    if rate % 8000:
        raise AssertionError(f"the page's audio runs at {rate} Hz: expected a multiple of 8000")
    spec = np.fft.rfft(x)
    spec[int(len(x) * 3800 / rate):] = 0  # below the new Nyquist frequency before taking every n-th sample
    y = np.fft.irfft(spec, len(x))[:: rate // 8000]
    return np.clip(y * 32767, -32768, 32767).astype(np.int16)
