"""``python -m bench``: DTMF detection capacity, serial link efficiency, host CPU per channel, the
node under eight lines of IVR calls, and flashing a card's firmware over the link. Prints a table, then each target missed; exit status 1
when any was.

Timings are CPU time (``time.process_time``), compared as ratios measured in the same run:
the machines here are shared and noisy, wall-clock numbers alone would mislead.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.dtmf_mask import bench_dtmf_mask, mask_rows  # noqa: E402
from bench.flash_e2e import flash_e2e  # noqa: E402
from bench.media import bench_media  # noqa: E402
from drivers.dsp import DtmfGenerator, DtmfReceiver  # noqa: E402
from drivers.dsp._spandsp import ffi, lib  # noqa: E402
from firmware.card import wire  # noqa: E402
from simulator.load import ACCOUNTS, Flow, caller  # noqa: E402


def test_audio(seconds: int) -> np.ndarray:
    """Digits, silence and noise-like speech stand-in: what a detector sees on a busy line."""
    rng = np.random.default_rng(1)
    gen = DtmfGenerator(level_dbm0=-10, on_ms=80, off_ms=120)
    parts = []
    while sum(len(p) for p in parts) < seconds * 8000:
        gen.put("1234567890*#ABCD")
        parts.append(gen.read(16 * 1600))
        n = 8000 * 3
        env = np.repeat(rng.uniform(0, 1, n // 800) > 0.3, 800)
        parts.append((np.convolve(rng.standard_normal(n), np.ones(5) / 5, "same") * 3000 * env).astype(np.int16))
    return np.concatenate(parts)[: seconds * 8000]


def bench_dtmf(seconds: int, repeats: int) -> dict:
    pcm = test_audio(seconds)
    frames = [np.ascontiguousarray(pcm[i:i + 160]) for i in range(0, len(pcm), 160)]

    def ours() -> int:
        rx = DtmfReceiver()
        return sum(len(rx.feed(f)) for f in frames)

    def raw() -> int:
        s = lib.dtmf_rx_init(ffi.NULL, ffi.NULL, ffi.NULL)
        buf = ffi.new("char[]", 128)
        n = 0
        for f in frames:
            lib.dtmf_rx(s, ffi.from_buffer("int16_t[]", f), 160)
            n += lib.dtmf_rx_get(s, buf, 128)
        lib.dtmf_rx_free(s)
        return n

    best: dict[str, tuple[float, int]] = {}
    for _ in range(repeats):  # interleaved, best of each: the least disturbed runs
        for name, fn in (("raw_cffi", raw), ("wrapper", ours)):
            t = time.process_time()
            digits = fn()
            took = time.process_time() - t
            if name not in best or took < best[name][0]:
                best[name] = (took, digits)
    out = {name: {"cpu_s": round(t, 4), "digits": d, "channels_per_core": round(seconds / t, 1)}
           for name, (t, d) in best.items()}
    out["wrapper_vs_raw"] = round(best["raw_cffi"][0] / best["wrapper"][0], 3)
    out["audio_s"] = seconds
    return out


def framing_efficiency() -> dict:
    up = wire.encode(wire.T_AUDIO, 0, 1234, b"\x00\x00" + bytes(range(1, 161)))
    down = wire.encode(wire.T_AUDIO, 0, 1234, bytes(range(1, 161)))
    return {"card_to_host": round(160 / len(up), 4), "host_to_card": round(160 / len(down), 4),
            "wire_bytes_up": len(up), "wire_bytes_down": len(down)}


async def start_card(channels: int) -> tuple[dict, subprocess.Popen]:
    """A simulated card in a process of its own; its serial URL and control address."""
    tmp = Path(tempfile.mkdtemp())
    info, log = tmp / "sim.json", tmp / "sim.log"
    with log.open("w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "simulator", "card", "--channels", str(channels),
                                 "--control-port", "0", "--info-file", str(info)], cwd=ROOT,
                                stdout=out, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 30
    while not info.exists():  # written whole, then renamed, once the card is up
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(f"the simulated card did not start: {log.read_text(errors='replace')}")
        await asyncio.sleep(0.05)
    return json.loads(info.read_text()), proc


def stop_card(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()


async def card_path(channels: int, seconds: float) -> dict:
    """A simulated card (own process) with ``channels`` calls up; this process is the host."""
    import hal
    from drivers.dsp import ToneGenerator, ToneSpec
    from simulator.client import SimClient

    sim, proc = await start_card(8)
    try:
        board = hal.open(sim["serial"])
        await board.start(10)
        client = await SimClient.parse(sim["control"]).connect()
        for n in range(1, channels + 1):
            ring = asyncio.create_task(client.call("ring", line=n, cadence=[300, 300]))
            line = board.lines[n - 1]
            deadline = time.monotonic() + 30
            while not line.offhook:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"line {n} never rang")
                e = await line.next_event(1)
                if type(e).__name__ == "Ring":
                    await line.answer()
            await ring
            line.audio.write(ToneGenerator(ToneSpec(500 + 50 * n, 0, -15, 0, 0)).read(int(8000 * (seconds + 5))))
            await client.call("dtmf", line=n, digits="1" * int(seconds), on_ms=500, off_ms=500, wait=False)
        await asyncio.sleep(1.0)  # warm-up before the measured window (not a synchronisation)
        before = await client.call("status")
        audio_before = sum(ln.counters.frames for ln in board.lines)
        c0, t0 = time.process_time(), time.monotonic()
        await asyncio.sleep(seconds)  # the measured window
        cpu, wall = time.process_time() - c0, time.monotonic() - t0
        after = await client.call("status")
        frames = sum(ln.counters.frames for ln in board.lines) - audio_before
        up = after["port"]["bytes_up"] - before["port"]["bytes_up"]
        down = after["port"]["bytes_down"] - before["port"]["bytes_down"]
        stats = await board.stats()
        await client.close()
        await board.close()
    finally:
        stop_card(proc)
    underruns = sum(stats["card"][f"line{n}"]["underruns"] for n in range(1, channels + 1))
    return {
        "channels": channels, "seconds": round(wall, 1), "audio_copies": stats["link"]["audio_copies"],
        "host_cpu_percent_of_core": round(100 * cpu / wall, 1),
        "host_cpu_percent_per_channel": round(100 * cpu / wall / channels, 2),
        "link_efficiency_up": round(frames * 160 / up, 4) if up else None,
        "wire_bytes_per_s_up": round(up / wall), "wire_bytes_per_s_down": round(down / wall),
        "underruns": underruns,
    }


async def flashing(payload_bytes: int, call: bool) -> dict:
    """``nodectl flash``'s transfer (drivers.linecard.flasher) to an in-process card running the real
    updater on the simulator's flash model, over a link paced at 921,600 baud (bench/flash_card.py);
    with ``call``, line 1 is in a call meanwhile (audio both ways, one copy)."""
    import hashlib

    from bench.flash_card import UpdaterCard, new_flash, program
    from drivers.linecard import LineCardLink, LinkListener
    from drivers.linecard.flasher import Flasher
    from firmware.image import container

    baud = 921600
    old = container.make("BNLC-8FX", (1, 0, 0), 1, hashlib.shake_256(b"old").digest(20000)).signed_part
    new = container.make("BNLC-8FX", (1, 1, 0), 1, hashlib.shake_256(b"new").digest(payload_bytes)).signed_part
    f = new_flash()
    program(f, old)
    card = UpdaterCard(f, baud=baud)
    card.offhook = 1 if call else 0
    link = LineCardLink("fake://card", LinkListener(), baud=baud, transport=card.transport)
    await link.start(5)
    sent_at: dict[int, float] = {}

    async def talk() -> None:
        seq, nxt = 0, time.monotonic()
        while True:
            sent_at[seq] = time.monotonic()
            link.send_audio(0, seq, bytes(160))
            seq, nxt = seq + 1, nxt + 0.02
            await asyncio.sleep(max(0.0, nxt - time.monotonic()))

    talker = asyncio.create_task(talk()) if call else None
    try:
        fl = Flasher(link)
        t0 = time.monotonic()
        res = await fl.transfer(new)
        if talker:
            talker.cancel()
        await fl.reboot()
        st = await fl.wait_confirmed(10)
        confirmed = time.monotonic() - t0
    finally:
        await link.close()
    got = {seq: t for t, ch, seq in card.counters.audio_down if ch == 0}
    delays = sorted(got[s] - sent_at[s] for s in sent_at if s in got)
    raw = baud / 10
    return {"image_bytes": len(new), "call": call, "baud": baud,
            "fraction_of_raw_byte_rate": round((len(new) - 64) / res.chunk_seconds / raw, 4),
            "bytes_per_s": round((len(new) - 64) / res.chunk_seconds), "resent_bytes": res.resent_bytes,
            "transfer_s": round(res.seconds, 3), "to_confirmed_s": round(confirmed, 3),
            "confirmed": st.running == 1 and st.slots[1].state == "confirmed",
            "audio_frames_lost": len([s for s in sent_at if s not in got and sent_at[s] < t0 + res.seconds - 0.1]),
            "audio_delay_ms": {"p50": pct([d * 1000 for d in delays], 0.5), "p95": pct([d * 1000 for d in delays], 0.95),
                               "max": pct([d * 1000 for d in delays], 1.0)}
            if delays else None}


def pct(values: list[float], q: float) -> float:
    v = sorted(values)
    return round(v[min(len(v) - 1, int(len(v) * q))], 1) if v else float("nan")


DEMO = ROOT / "config" / "demo-branch.toml"
# the demo branch's flow, as the load callers walk it (English; account services is 1 day and night)
DEMO_FLOW = Flow(language_key="3", after_language="welcome.en", menu_key="1", account_prompt="account_number.en",
                 pin_prompt="pin.en", verified="account_ok.en", wrong="wrong_pin.en")


async def node_load(seconds: float) -> dict:
    """The node (this process) running the demo branch on 8 lines, with back-to-back IVR calls
    from a simulated card (``simulator.load``: the callers time the node's answers as they hear them)."""
    from node_agent.config import LineConfig, load
    from node_agent.daemon import Node
    from node_agent.prompts import PromptLibrary

    demo = load(DEMO)
    tmp = Path(tempfile.mkdtemp())
    sim, proc = await start_card(8)
    try:
        cfg = replace(demo, card=sim["serial"], data_dir=tmp / "data", answer_on_ring=2,
                      lines={n: LineConfig(n, f"0755-8888-000{n}", "main") for n in range(1, 9)})
        node = Node(cfg)
        # the prompts cache of `make run` (keyed by what each prompt is made of): built once
        node.prompts = node.ivr.prompts = PromptLibrary(cfg, cache_dir=demo.data_dir / "prompts")
        ready = asyncio.Event()
        task = asyncio.create_task(node.run(ready))
        await asyncio.wait_for(ready.wait(), 300)  # a first run synthesises the prompts
        refs = {name: str(path) for name, path in node.prompts.export(tmp / "prompts", ["en"]).items()}
        for account, pin in ACCOUNTS.values():
            node.auth.add_account(account, pin)
        node.auth.verify_ms.clear()
        c0, t0 = time.process_time(), time.monotonic()
        reports = await asyncio.gather(*(caller(sim["control"], n, t0 + seconds, flow=DEMO_FLOW, refs=refs)
                                         for n in range(1, 9)))
        cpu, wall = time.process_time() - c0, time.monotonic() - t0
        ring = [x for r in node.runners for x in r.ring_to_answer_ms]
        in_node = list(node.ivr.key_to_response_ms)
        verify = list(node.auth.verify_ms)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    finally:
        stop_card(proc)
    menu = [ms for r in reports for ms in r.heard_ms("language", "menu", "account")]
    pin = [ms for r in reports for ms in r.heard_ms("pin")]
    return {"seconds": round(wall, 1), "calls": sum(len(r.outcomes) for r in reports),
            "ring_to_answer_ms": {"p50": pct(ring, 0.5), "p99": pct(ring, 0.99)},
            "key_to_response_heard_ms": {"p50": pct(menu, 0.5), "p99": pct(menu, 0.99), "n": len(menu)},
            "pin_to_outcome_heard_ms": {"p50": pct(pin, 0.5), "p99": pct(pin, 0.99), "n": len(pin)},
            "answers_not_heard": sum(len(r.missed()) for r in reports),
            "failed_calls": [f"line {r.line}: {f}" for r in reports for f in r.failures],
            "calls_not_timed": sum(r.unmeasured_calls for r in reports),
            "key_to_response_in_node_ms": {"p50": pct(in_node, 0.5), "p99": pct(in_node, 0.99)},
            "pin_verify_ms": {"p50": pct(verify, 0.5), "p99": pct(verify, 0.99)},
            "node_cpu_percent_per_active_call": round(100 * cpu / wall / 8, 2)}


async def pin_burst(rounds: int) -> dict:
    """The worst case independent callers practically never make: eight PINs checked at once."""
    from node_agent.auth import Authenticator
    from node_agent.store import Store

    with tempfile.TemporaryDirectory() as tmp:
        store = Store(Path(tmp) / "node.db")
        auth = Authenticator(store)
        auth.add_account("6222001234", "482913")
        for r in range(rounds):
            await asyncio.gather(*(auth.verify("6222001234", "482913", call_id=f"burst-{r}-{n}") for n in range(8)))
        store.close()
    times = list(auth.verify_ms)
    return {"checks": len(times), "p50": pct(times, 0.5), "p99": pct(times, 0.99)}


def target(met: bool, what: str) -> str:
    return f"{what} {'OK' if met else 'MISSED'}"


def table(rows: list[tuple[str, str, str]]) -> str:
    w = [max(len(r[i]) for r in rows) for i in range(3)]
    line = "+".join("-" * (x + 2) for x in w)
    out = ["+" + line + "+"]
    for i, r in enumerate(rows):
        out.append("| " + " | ".join(c.ljust(w[j]) for j, c in enumerate(r)) + " |")
        if i == 0:
            out.append("+" + line + "+")
    out.append("+" + line + "+")
    return "\n".join(out)


def flash_rows(fl_e2e: dict, fl_idle: dict, fl_call: dict) -> list[tuple[str, str, str]]:
    runs = fl_e2e["runs"]
    each = ", ".join(f"{r['fraction_of_raw_byte_rate']:.1%}" for r in runs)
    return [
        (f"flash throughput, nodectl flash -> simctl card process at 921,600 baud ({runs[0]['image_kib']} KiB "
         f"firmware image, {len(runs)} runs, median)",
         f"{fl_e2e['fraction_of_raw_byte_rate_median']:.1%} of the raw byte rate "
         f"({each})",
         target(fl_e2e["fraction_of_raw_byte_rate_median"] >= 0.85 and fl_e2e["confirmed"], ">= 85%")),
        ("  nodectl flash started to new version confirmed (transfer, reboot, trial, self-test)",
         f"{fl_e2e['nodectl_to_confirmed_s_median']} s ({', '.join(str(r['nodectl_to_confirmed_s']) for r in runs)} s)",
         "no target"),
        (f"  in-process card (real updater), {fl_idle['image_bytes'] // 1024} KiB image: throughput",
         f"{fl_idle['fraction_of_raw_byte_rate']:.1%} ({fl_idle['bytes_per_s']} B/s), transfer {fl_idle['transfer_s']} s",
         target(fl_idle["fraction_of_raw_byte_rate"] >= 0.85 and fl_idle["confirmed"], ">= 85%")),
        ("  the same during a call on line 1: throughput, audio delay p50 / p95 / max",
         f"{fl_call['fraction_of_raw_byte_rate']:.1%}, {fl_call['audio_delay_ms']['p50']} / "
         f"{fl_call['audio_delay_ms']['p95']} / {fl_call['audio_delay_ms']['max']} ms, "
         f"{fl_call['audio_frames_lost']} frames lost",
         target(fl_call["audio_frames_lost"] == 0 and fl_call["audio_delay_ms"]["p95"] < 40, "0 lost, p95 < 40 ms")),
    ]


def report(rows: list[tuple[str, str, str]], result: dict, out: str) -> int:
    missed = [f"{row[0].strip()}: {row[1]} (target {row[2].removesuffix(' MISSED')})"
              for row in rows[1:] if row[2].endswith("MISSED")]
    result["missed"] = missed
    Path(out).write_text(json.dumps(result, indent=2))
    print(table(rows))
    print(f"results written to {out}")
    for m in missed:
        print(f"MISSED {m}", file=sys.stderr)
    return 1 if missed else 0


def main() -> int:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    p.add_argument("--quick", action="store_true", help="shorter runs (for a smoke check)")
    p.add_argument("--out", help="where the JSON goes (default bench/results.json; bench/results-flash.json with "
                                 "--only-flash)")
    p.add_argument("--only-flash", action="store_true",
                   help="only the flashing benchmarks (nodectl flash to a simctl card process; the in-process card)")
    p.add_argument("--media-only", action="store_true", help="only the media path (central_link.media)")
    p.add_argument("--mask-only", action="store_true", help="only the caller -> agent DTMF mask (seconds)")
    args = p.parse_args()
    if args.mask_only:
        mask = bench_dtmf_mask(args.quick)
        return report([("benchmark", "result", "target"), *mask_rows(mask, target)],
                      {"when": time.strftime("%Y-%m-%dT%H:%M:%S"), "cpu_count": os.cpu_count(), "dtmf_mask": mask},
                      args.out or str(ROOT / "bench" / "results-mask.json"))
    args.out = args.out or str(ROOT / "bench" / ("results-flash.json" if args.only_flash else
                                                 "results-media.json" if args.media_only else "results.json"))
    if args.media_only:
        media = bench_media(args.quick)
        return report([("benchmark", "result", "target"), *media_rows(media)],
                      {"when": time.strftime("%Y-%m-%dT%H:%M:%S"), "cpu_count": os.cpu_count(), "media": media},
                      args.out)
    fsize = 60000 if args.quick else 110000
    if args.only_flash:
        fl_e2e = flash_e2e(3 if args.quick else 5)
        fl_idle, fl_call = asyncio.run(flashing(fsize, call=False)), asyncio.run(flashing(fsize, call=True))
        return report([("benchmark", "result", "target"), *flash_rows(fl_e2e, fl_idle, fl_call)],
                      {"when": time.strftime("%Y-%m-%dT%H:%M:%S"),
                       "flashing": {"end_to_end": fl_e2e, "idle": fl_idle, "during_a_call": fl_call}}, args.out)
    secs = 20 if args.quick else 120
    # 120 s of audio takes spandsp ~15 ms: too short a run to time on a shared machine
    dtmf = bench_dtmf(secs * 5, 3 if args.quick else 7)
    eff = framing_efficiency()
    cp1 = asyncio.run(card_path(1, 5 if args.quick else 15))
    cp8 = asyncio.run(card_path(8, 5 if args.quick else 15))
    load = asyncio.run(node_load(30 if args.quick else 90))
    load["pin_verify_8_at_once_ms"] = asyncio.run(pin_burst(3 if args.quick else 10))
    fl_e2e = flash_e2e(3 if args.quick else 5)
    fl_idle, fl_call = asyncio.run(flashing(fsize, call=False)), asyncio.run(flashing(fsize, call=True))
    result = {"when": time.strftime("%Y-%m-%dT%H:%M:%S"), "cpu_count": os.cpu_count(), "dtmf": dtmf,
              "framing": eff, "card_path": [cp1, cp8], "node_load": load,
              "flashing": {"end_to_end": fl_e2e, "idle": fl_idle, "during_a_call": fl_call},
              "media": bench_media(args.quick), "dtmf_mask": bench_dtmf_mask(args.quick)}
    ratio = dtmf["wrapper_vs_raw"]
    rows = [("benchmark", "result", "target"),
            ("DTMF detect, spandsp via raw cffi", f"{dtmf['raw_cffi']['channels_per_core']} channels/core", ""),
            ("DTMF detect, our wrapper", f"{dtmf['wrapper']['channels_per_core']} channels/core", ""),
            ("wrapper / raw cffi", f"{ratio:.0%}", target(ratio >= 0.8, ">= 80%")),
            ("link payload efficiency, card->host", f"{eff['card_to_host']:.1%} ({eff['wire_bytes_up']} B/frame)", ""),
            ("link payload efficiency, host->card", f"{eff['host_to_card']:.1%} ({eff['wire_bytes_down']} B/frame)", ""),
            ]
    for cp in (cp1, cp8):
        rows.append((f"host CPU, {cp['channels']} active line(s)",
                     f"{cp['host_cpu_percent_per_channel']}% of a core per line "
                     f"({cp['host_cpu_percent_of_core']}% total, {cp['audio_copies']} cop{'y' if cp['audio_copies'] == 1 else 'ies'})",
                     ""))
        rows.append((f"measured link efficiency up, {cp['channels']} line(s), {cp['audio_copies']} cop{'y' if cp['audio_copies'] == 1 else 'ies'}",
                     f"{cp['link_efficiency_up']:.1%} ({cp['wire_bytes_per_s_up']} B/s)", ""))
    k, v, r = load["key_to_response_heard_ms"], load["pin_verify_ms"], load["ring_to_answer_ms"]
    kp, kn = load["pin_to_outcome_heard_ms"], load["key_to_response_in_node_ms"]
    rows += [
        (f"node, 8 lines of IVR calls ({load['calls']} calls)", "", ""),
        ("  ring-to-answer p50 / p99 (answers on ring 2)", f"{r['p50']} / {r['p99']} ms", ""),
        (f"  key-to-response heard by the caller p50 / p99 ({k['n']} keys)", f"{k['p50']} / {k['p99']} ms",
         target(k["p99"] <= 100, "p99 <= 100 ms")),
        (f"  PIN # to outcome heard by the caller p50 / p99 ({kp['n']})", f"{kp['p50']} / {kp['p99']} ms",
         "includes the PIN check"),
        ("  answers the callers never heard", f"{load['answers_not_heard']} (+ {load['calls_not_timed']} calls not timed)",
         target(load["answers_not_heard"] == 0, "0")),
        ("  calls that went wrong (see failed_calls in the JSON)", str(len(load["failed_calls"])),
         target(not load["failed_calls"], "0")),
        ("  key-to-response in the node p50 / p99", f"{kn['p50']} / {kn['p99']} ms", "key in -> prompt queued"),
        ("  PIN verify p50 / p99", f"{v['p50']} / {v['p99']} ms", target(v["p99"] <= 150, "p99 <= 150 ms")),
        ("  node CPU per active call", f"{load['node_cpu_percent_per_active_call']}% of a core", ""),
        *flash_rows(fl_e2e, fl_idle, fl_call),
        ("PIN verify, 8 at the same instant (idle node)",
         f"{load['pin_verify_8_at_once_ms']['p50']} / {load['pin_verify_8_at_once_ms']['p99']} ms", "worst case, no target"),
    ]
    return report(rows + media_rows(result["media"]) + mask_rows(result["dtmf_mask"], target), result, args.out)


def media_rows(media: dict) -> list[tuple[str, str, str]]:
    rows = []
    for key in ("calls_8", "calls_30"):
        m = media[key]
        lat, snd, rcv = m["one_way_node_added_ms"], m["send_ms"], m["receive_ms"]
        backlog = m["send_frames_dropped"] == 0 and m["frames_per_s_per_call_min"] >= 49
        rows += [
            (f"media, {m['calls']} two-way calls (synthetic frames, agents in another process)", "", ""),
            ("  node-added one-way latency p50 / p99 (send + receive)", f"{lat['p50']} / {lat['p99']} ms",
             target(lat["p99"] <= 40, "p99 <= 40 ms") if m["calls"] >= 30 else ""),
            ("  send path (line -> RTP) / receive path (RTP -> line) p99",
             f"{snd['p99']} / {rcv['p99']} ms (p50 {snd['p50']} / {rcv['p50']})", ""),
            ("  node CPU per call", f"{m['node_cpu_percent_per_call']}% of a core ({m['node_cpu_percent_of_core']}% total)", ""),
            ("  backlog: frames dropped before aiortc, slowest call's frames/s",
             f"{m['send_frames_dropped']}, {m['frames_per_s_per_call_min']}/s", target(backlog, "0, >= 49/s")),
        ]
    loss = media["calls_8"].get("one_lost_packet_receive_ms")
    if loss:
        rows += [
            ("media, one lost packet: receive delay before / after, ours", f"{loss['ours_before']} / {loss['ours_after']} ms",
             target(loss["ours_after"] <= loss["ours_before"] + 5, "no lasting delay")),
            ("  the same through aiortc's own jitter buffer", f"{loss['aiortc_before']} / {loss['aiortc_after']} ms",
             "for comparison"),
        ]
    return rows


if __name__ == "__main__":
    sys.exit(main())
