"""A scripted agent: a headless WebRTC peer (aiortc, not a browser) that works the agent HTTP API
as a person at the console would, for the demo and for tests.

It logs in, goes ready, waits for a call to be offered, answers it with its own WebRTC offer
(``POST /agent/answer {"sdp": offer}`` -> ``{"sdp": answer}``), "says" something the caller hears
(a tone of ``say_hz`` for ``say_s`` seconds: the hub imports no speech synthesis), asks the node to
verify the caller (``POST /agent/verify``), waits for the capture's outcome in its view
(``GET /agent/me``: ``capture.outcome``), hangs up and reports what happened at each step::

    python -m central_link.hq.scripted_agent --url https://127.0.0.1:8444 --name demo \\
        --ca certs/ca.crt --password-file demo.pw        # prints each step; exit 0 when verified

What it hears from the caller is kept (``heard``), decoded by aiortc, so a test can check it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import ssl
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import aiohttp
import av
import numpy as np
from aiortc import MediaStreamTrack, RTCPeerConnection, RTCSessionDescription

from drivers.dsp import ToneGenerator, ToneSpec

from ..media.ice import IceConfig

log = logging.getLogger("central_link.hq.scripted_agent")
FRAME = 160


class ScriptError(RuntimeError):
    """A step of the script failed: the message says which and what the API answered."""


class _Voice(MediaStreamTrack):
    """The agent's microphone: a tone while ``speaking``, else silence; 20 ms frames in real time."""

    kind = "audio"

    def __init__(self, hz: int) -> None:
        super().__init__()
        self._tone = ToneGenerator(ToneSpec(hz, 0, -10, 0, 0))
        self.speaking = False
        self._pts = 0
        self._t0: float | None = None

    async def recv(self) -> av.AudioFrame:
        if self._t0 is None:
            self._t0 = time.monotonic()
        await asyncio.sleep(max(0.0, self._t0 + self._pts / 8000 - time.monotonic()))
        pcm = self._tone.read(FRAME) if self.speaking else np.zeros(FRAME, dtype=np.int16)
        frame = av.AudioFrame.from_ndarray(pcm.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate, frame.pts, frame.time_base = 8000, self._pts, Fraction(1, 8000)
        self._pts += FRAME
        return frame


@dataclass
class Result:
    outcome: str  # the capture's: verified, failed, locked, cancelled, unavailable (or "no capture")
    account: str | None
    call: str
    pop: dict
    steps: list[str] = field(default_factory=list)


class ScriptedAgent:
    def __init__(self, url: str, name: str, password: str, *, ssl_context: ssl.SSLContext | bool | None = None,
                 ice: IceConfig | None = None, say_hz: int = 440, say_s: float = 2.0,
                 fields: tuple[str, ...] = ("account", "pin"), say: Callable[[str], None] | None = None) -> None:
        self.url = url.rstrip("/")
        self.name, self.password = name, password
        self.ssl = ssl_context
        self.ice = ice or IceConfig()
        self.say_hz, self.say_s, self.fields = say_hz, say_s, fields
        self.say = say or (lambda text: log.info("%s", text))
        self.heard: list[np.ndarray] = []
        self.steps: list[str] = []

    def _step(self, text: str) -> None:
        self.steps.append(text)
        self.say(f"scripted agent {self.name}: {text}")

    async def _call(self, http: aiohttp.ClientSession, method: str, path: str, body: dict | None = None) -> dict:
        async with http.request(method, self.url + path, json=body, ssl=self.ssl) as resp:
            data = await resp.json(content_type=None)
            if resp.status != 200:
                raise ScriptError(f"{method} {path}: HTTP {resp.status}: {data.get('error', data)}")
            return data

    async def _until(self, http: aiohttp.ClientSession, cond: Callable[[dict], bool], timeout: float,
                     what: str) -> dict:
        end = time.monotonic() + timeout
        while True:
            me = await self._call(http, "GET", "/agent/me")
            if cond(me):
                return me
            if time.monotonic() > end:
                raise ScriptError(f"no {what} within {timeout:g} s (state {me.get('state')})")
            await asyncio.sleep(0.1)

    async def take_one_call(self, offer_timeout: float = 60.0, capture_timeout: float = 90.0) -> Result:
        """Log in, take the next call, talk, verify the caller, hang up."""
        jar = aiohttp.CookieJar(unsafe=True)  # the hub is reached by IP address (127.0.0.1)
        async with aiohttp.ClientSession(cookie_jar=jar) as http:
            await self._call(http, "POST", "/agent/login", {"name": self.name, "password": self.password})
            await self._call(http, "POST", "/agent/status", {"status": "ready"})
            self._step("logged in and ready, waiting for a call")
            me = await self._until(http, lambda m: m.get("state") == "offered", offer_timeout, "call offered")
            pop = me.get("offered") or {}
            self._step(f"offered call {me.get('call')} (branch {pop.get('node')}, line {pop.get('line')}, "
                       f"caller {pop.get('caller_id')}, language {pop.get('language')})")
            voice = _Voice(self.say_hz)
            pc = RTCPeerConnection(configuration=self.ice.rtc_configuration())
            pc.addTransceiver(voice, direction="sendrecv")
            self.ice.restrict(pc)
            pull: asyncio.Task | None = None

            @pc.on("track")
            def on_track(track) -> None:
                nonlocal pull

                async def drain() -> None:
                    with contextlib.suppress(Exception):
                        while True:
                            self.heard.append((await track.recv()).to_ndarray().ravel().copy())
                pull = asyncio.ensure_future(drain())

            try:
                await pc.setLocalDescription(await pc.createOffer())
                answered = await self._call(http, "POST", "/agent/answer", {"sdp": pc.localDescription.sdp})
                await pc.setRemoteDescription(RTCSessionDescription(self.ice.filter_sdp(answered["sdp"]), "answer"))
                call = answered.get("call") or me.get("call")
                self._step(f"answered call {call}")
                voice.speaking = True
                self._step(f"speaking to the caller ({self.say_hz} Hz for {self.say_s:g} s)")
                await asyncio.sleep(self.say_s)  # the length of what it says, not a wait for a condition
                voice.speaking = False
                await self._call(http, "POST", "/agent/verify", {"fields": list(self.fields)})
                self._step(f"asked the branch to verify the caller ({', '.join(self.fields)})")
                me = await self._until(http, lambda m: (m.get("capture") or {}).get("outcome") is not None,
                                       capture_timeout, "capture outcome")
                cap = me["capture"]
                self._step(f"verification: {cap['outcome']}" + (f", account {cap['account']}"
                                                               if cap.get("account") else ""))
                if me.get("state") == "talking":
                    await self._call(http, "POST", "/agent/hangup", {})
                    self._step("hung up")
                else:
                    self._step(f"the call ended at the branch (now {me.get('state')})")
                return Result(cap["outcome"], cap.get("account"), call, pop, list(self.steps))
            finally:
                if pull is not None:
                    pull.cancel()
                await pc.close()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m central_link.hq.scripted_agent", description=__doc__.split("\n")[0])
    ap.add_argument("--url", required=True, help="the agent console, e.g. https://127.0.0.1:8444")
    ap.add_argument("--name", required=True)
    ap.add_argument("--password-file", type=Path, required=True, help="a file whose first line is the password")
    ap.add_argument("--ca", type=Path, help="the deployment's CA certificate (the console's is the hub's)")
    ap.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for a call")
    args = ap.parse_args(argv)
    ctx = ssl.create_default_context(cafile=str(args.ca)) if args.ca else None
    password = args.password_file.read_text().splitlines()[0]
    agent = ScriptedAgent(args.url, args.name, password, ssl_context=ctx, ice=IceConfig.loopback(), say=print)
    try:
        result = asyncio.run(agent.take_one_call(args.timeout))
    except (ScriptError, aiohttp.ClientError, OSError) as exc:
        print(f"scripted agent: {exc}", file=sys.stderr)
        return 1
    return 0 if result.outcome == "verified" else 3


if __name__ == "__main__":
    sys.exit(main())
