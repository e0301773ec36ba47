"""Debian's Chromium (/usr/bin/chromium) as Playwright launches it for the console tests.

Never a downloaded browser: ``executable_path`` is the system's (``make`` installs the Debian
package). The flags are the ones measured to give WebRTC on loopback with no traffic elsewhere:

- fake media: the microphone is a WAV file (``--use-file-for-fake-audio-capture``, it loops) and
  the permission prompt is answered yes;
- ``--allow-loopback-in-peer-connection``: without it Chromium gathers no 127.0.0.1 candidate;
- ``--host-resolver-rules``: no DNS query for anything but 127.0.0.1;
- ``--disable-features`` with ``WebRtcHideLocalIpsWithMdns`` (no mDNS names for candidates):
  Chromium keeps only the last ``--disable-features``, so Playwright's own list is repeated here.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

CHROMIUM = Path("/usr/bin/chromium")
# Playwright 1.65's own list (playwright-core chromiumSwitches.ts), which ours replaces
PLAYWRIGHT_DISABLED = (
    "AvoidUnnecessaryBeforeUnloadCheckSync,DestroyProfileOnBrowserClose,HttpsUpgrades,"
    "HttpsFirstBalancedModeAutoEnable,LensOverlay,MediaRouter,PaintHolding,ThirdPartyStoragePartitioning,"
    "AvoidCorsURLLoaderRestartOnRedirect,TcpPortRandomizationWin,OptimizationHints,NetworkTimeServiceQuerying,"
    "AimEnabled,PreconnectToSearch,msForceBrowserSignIn,msEdgeUpdateLaunchServicesPreferredVersion"
)


def args(mic_wav: Path) -> list[str]:
    return [
        "--use-fake-ui-for-media-stream",
        "--use-fake-device-for-media-stream",
        f"--use-file-for-fake-audio-capture={mic_wav}",
        "--autoplay-policy=no-user-gesture-required",
        "--disable-gpu",
        "--disable-quic",
        "--allow-loopback-in-peer-connection",
        "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
        f"--disable-features={PLAYWRIGHT_DISABLED},WebRtcHideLocalIpsWithMdns",
    ]


def tone_wav(path: Path, freq: float, seconds: float = 2.0, rate: int = 48000, level: float = 0.3) -> Path:
    """A mono 16-bit WAV of a steady tone (a whole number of cycles, so the loop has no click)."""
    import wave

    n = int(rate * seconds)
    cycles = round(freq * seconds)
    pcm = (level * 32767 * np.sin(2 * np.pi * cycles * np.arange(n) / n)).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm.tobytes())
    return path
