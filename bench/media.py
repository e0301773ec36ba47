"""The media path alone: concurrent two-way calls on one node process, fed synthetic frames.

This process is the node: ``calls`` ``MediaSession``s ticked by one 20 ms line clock (a 600 Hz
tone in, the agent's audio out to a sink). The agents are plain aiortc peers in a process of their
own (``python -m bench.media agents``), each sending μ-law packets paced by its own clock; SDP goes
between the two processes as JSON lines on stdin/stdout. Everything is on 127.0.0.1.

Measured in the node (time.monotonic is one clock for both processes, but only node-side
intervals are used):

- send path: line slot handed to the session -> its RTP packet handed to aiortc's DTLS/SRTP;
- receive path: RTP packet out of SRTP into our jitter buffer -> played to the line;
- node CPU per call: process CPU time over the measured window;
- one packet lost on call 1 (dropped just before our buffer, as the network would): the receive
  delay of that call before and after, and the same for one extra call received through aiortc's
  own jitter buffer and decoder (the stock path), measured the same way.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import statistics
import sys
import time
from pathlib import Path

from aiortc import RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError

from central_link.media.codecs import preferences
from central_link.media.ice import IceConfig
from central_link.media.receiver import divert
from central_link.media.session import MediaSession
from central_link.media.track import LineTrack
from drivers.dsp import ULAW, ToneGenerator, ToneSpec
from drivers.dsp.receive import RxFrame

ICE = IceConfig.loopback()
FRAME = 160


def _cpu_s(pid: int) -> float:
    """CPU seconds a process has used (user + system), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def pct(values: list[float], q: float) -> float:
    v = sorted(values)
    return round(v[min(len(v) - 1, int(len(v) * q))], 1) if v else float("nan")


class _Null:
    def write(self, frame) -> None:
        pass


class StampedTrack(LineTrack):
    """A LineTrack that remembers when each frame came from the line, for the send-path latency."""

    def __init__(self) -> None:
        super().__init__()
        self.pushed: dict[int, float] = {}
        self.last_pts = 0

    def push(self, pcm) -> None:
        self.pushed[self._pts] = time.monotonic()
        if len(self.pushed) > 200:
            del self.pushed[next(iter(self.pushed))]
        super().push(pcm)

    async def recv(self):
        packet = await super().recv()
        self.last_pts = packet.pts
        return packet


def stamp_sends(pc: RTCPeerConnection, track: StampedTrack, out: list[float]) -> None:
    transport = pc.getTransceivers()[0].sender.transport
    send = transport._send_rtp

    async def stamped(data: bytes) -> None:
        t = track.pushed.get(track.last_pts)
        if t is not None:
            out.append(1000 * (time.monotonic() - t))
        await send(data)

    transport._send_rtp = stamped


# -- the agents' process -----------------------------------------------------------------------
class _Count:
    def __init__(self) -> None:
        self.packets = 0

    def put(self, payload_type: int, timestamp: int, payload: bytes) -> str:
        self.packets += 1
        return "queued"


async def agents() -> None:
    """Answer each offer on stdin with a peer that sends a 1 kHz μ-law tone, paced in real time."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=1 << 20)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    tracks: list[LineTrack] = []
    pcs: list[RTCPeerConnection] = []
    tone = ToneGenerator(ToneSpec(1000, 0, -10, 0, 0))

    async def clock() -> None:
        t = time.monotonic()
        while True:
            pcm = tone.read(FRAME)
            for tr in tracks:
                tr.push(pcm)
            t += 0.02
            await asyncio.sleep(max(0.0, t - time.monotonic()))

    ticking = asyncio.ensure_future(clock())
    while line := await reader.readline():
        msg = json.loads(line)
        pc = RTCPeerConnection(configuration=ICE.rtc_configuration())
        track = LineTrack()
        tr = pc.addTransceiver(track, direction="sendrecv")
        tr.setCodecPreferences(preferences(ULAW))  # the track's packets are μ-law
        divert(tr.receiver, _Count())  # the far end only counts what it gets
        ICE.restrict(pc)
        await pc.setRemoteDescription(RTCSessionDescription(msg["offer"], "offer"))
        await pc.setLocalDescription(await pc.createAnswer())
        tracks.append(track)
        pcs.append(pc)
        sys.stdout.write(json.dumps({"call": msg["call"], "answer": pc.localDescription.sdp}) + "\n")
        sys.stdout.flush()
    ticking.cancel()
    for pc in pcs:
        await pc.close()


# -- the node (this process) -------------------------------------------------------------------
class StockCall:
    """One call received through aiortc's own jitter buffer and decoder, for comparison."""

    def __init__(self) -> None:
        self.pc = RTCPeerConnection(configuration=ICE.rtc_configuration())
        self.track = LineTrack()
        self.tr = self.pc.addTransceiver(self.track, direction="sendrecv")
        self.tr.setCodecPreferences(preferences(ULAW))  # G.711, like the node's calls
        ICE.restrict(self.pc)
        self.arrived: dict[int, float] = {}
        self.waits: list[tuple[float, float]] = []  # (when played, ms since arrival)
        self.drop = False
        self._first: int | None = None
        buf = self.tr.receiver._RTCRtpReceiver__jitter_buffer
        add = buf.add

        def stamped(packet):
            if self.drop:
                self.drop = False
                return False, None
            if self._first is None:
                self._first = packet.timestamp
            self.arrived[(packet.timestamp - self._first) & 0xFFFFFFFF] = time.monotonic()
            return add(packet)

        buf.add = stamped
        self._pull = None
        self.pc.on("track", self._on_track)

    def _on_track(self, track) -> None:
        async def pull() -> None:
            with contextlib.suppress(MediaStreamError):  # the call ended
                while True:
                    frame = await track.recv()
                    t = self.arrived.pop(frame.pts, None)
                    if t is not None:
                        now = time.monotonic()
                        self.waits.append((now, 1000 * (now - t)))
        self._pull = asyncio.ensure_future(pull())


async def run(calls: int, seconds: float, loss: bool) -> dict:
    root = Path(__file__).resolve().parent.parent
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "bench.media", "agents", cwd=root,
                                                stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
                                                limit=1 << 20)
    sends: list[list[float]] = [[] for _ in range(calls)]
    sessions: list[MediaSession] = []
    stock = StockCall() if loss else None
    try:
        for i in range(calls):
            track = StampedTrack()
            s = MediaSession(_Null(), ice=ICE, track=track)
            stamp_sends(s.pc, track, sends[i])
            sessions.append(s)
        peers = [s.pc for s in sessions] + ([stock.pc] if stock else [])
        t_setup = time.monotonic()
        for i, pc in enumerate(peers):
            await pc.setLocalDescription(await pc.createOffer())
            proc.stdin.write((json.dumps({"call": i, "offer": pc.localDescription.sdp}) + "\n").encode())
        await proc.stdin.drain()
        for _ in peers:
            msg = json.loads(await asyncio.wait_for(proc.stdout.readline(), 60))
            pc = peers[msg["call"]]
            if msg["call"] < calls:
                await sessions[msg["call"]].accept_answer(msg["answer"])
            else:
                await pc.setRemoteDescription(RTCSessionDescription(ICE.filter_sdp(msg["answer"]), "answer"))
        deadline = time.monotonic() + 60
        while not all(pc.connectionState == "connected" for pc in peers):
            if time.monotonic() > deadline:
                raise RuntimeError("media bench: not every call connected within 60 s")
            await asyncio.sleep(0.05)
        setup_s = time.monotonic() - t_setup
        tone = ToneGenerator(ToneSpec(600, 0, -10, 0, 0))
        lossy: dict = {"armed": False}
        if loss:
            div = sessions[0].transceiver.receiver._RTCRtpReceiver__jitter_buffer
            add = div.add

            def dropping(packet):
                if lossy["armed"]:
                    lossy["armed"] = False
                    lossy["at"] = time.monotonic()
                    return False, None
                return add(packet)

            div.add = dropping
        call1: list[tuple[float, float]] = []

        async def clock(stop_at: float) -> None:
            t, slot = time.monotonic(), 0
            while t < stop_at:
                pcm = tone.read(FRAME)
                frame = RxFrame(slot * 20, pcm, False)
                for s in sessions:
                    s.on_line_frame(frame)
                if stock:
                    stock.track.push(pcm)
                w = sessions[0].playout.waits_ms
                if w:
                    call1.append((time.monotonic(), w[-1]))
                slot += 1
                t += 0.02
                await asyncio.sleep(max(0.0, t - time.monotonic()))

        warm = time.monotonic() + 2.0
        await clock(warm)  # warm-up: the first frames after connecting are not measured
        for s in sends:
            s.clear()
        for s in sessions:
            s.playout.waits_ms.clear()
        played0 = [s.playout.buffer.stats.played for s in sessions]
        dropped0 = sum(s.track.dropped for s in sessions)
        c0, a0, t0 = time.process_time(), _cpu_s(proc.pid), time.monotonic()
        if loss:
            asyncio.get_running_loop().call_later(seconds / 2, lambda: (lossy.update(armed=True),
                                                                         setattr(stock, "drop", True)))
        await clock(t0 + seconds)
        cpu, agents_cpu, wall = time.process_time() - c0, _cpu_s(proc.pid) - a0, time.monotonic() - t0
        load = os.getloadavg()[0]
        recv = [w for s in sessions for w in s.playout.waits_ms]
        send = [w for s in sends for w in s]
        fps = [(s.playout.buffer.stats.played - p) / wall for s, p in zip(sessions, played0)]
        out = {
            "calls": calls, "seconds": round(wall, 1), "setup_s": round(setup_s, 2),
            "send_ms": {"p50": pct(send, 0.5), "p99": pct(send, 0.99)},
            "receive_ms": {"p50": pct(recv, 0.5), "p99": pct(recv, 0.99)},
            "one_way_node_added_ms": {"p50": round(pct(send, 0.5) + pct(recv, 0.5), 1),
                                      "p99": round(pct(send, 0.99) + pct(recv, 0.99), 1)},
            "node_cpu_percent_per_call": round(100 * cpu / wall / calls, 2),
            "node_cpu_percent_of_core": round(100 * cpu / wall, 1),
            "frames_per_s_per_call_min": round(min(fps), 1),
            "agents_cpu_percent_of_core": round(100 * agents_cpu / wall, 1),
            "machine_load_1min": round(load, 2),
            "send_frames_dropped": sum(s.track.dropped for s in sessions) - dropped0,
            "concealed": sum(s.playout.buffer.stats.lost + s.playout.buffer.stats.held for s in sessions),
        }
        if loss and "at" in lossy:
            at = lossy["at"]
            before = [w for t, w in call1 if at - 1.0 <= t < at]
            after = [w for t, w in call1 if at + 1.0 <= t]
            sb = [w for t, w in stock.waits if at - 1.0 <= t < at]
            sa = [w for t, w in stock.waits if at + 1.0 <= t]
            med = lambda v: round(statistics.median(v), 1) if v else float("nan")  # noqa: E731
            out["one_lost_packet_receive_ms"] = {"ours_before": med(before), "ours_after": med(after),
                                                 "aiortc_before": med(sb), "aiortc_after": med(sa)}
        return out
    finally:
        for s in sessions:
            await s.close()
        if stock:
            await stock.pc.close()
        proc.stdin.close()
        try:
            await asyncio.wait_for(proc.wait(), 20)
        except TimeoutError:
            proc.kill()


def bench_media(quick: bool = False) -> dict:
    secs = 6 if quick else 20
    return {"calls_8": asyncio.run(run(8, secs, loss=True)), "calls_30": asyncio.run(run(30, secs, loss=False))}


if __name__ == "__main__":
    if sys.argv[1:] == ["agents"]:
        asyncio.run(agents())
    else:
        print(json.dumps(bench_media("--quick" in sys.argv), indent=2))
