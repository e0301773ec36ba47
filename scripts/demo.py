"""`make run`: a simulated line card, the node against it, and one scripted call through both.

Everything runs as separate processes on 127.0.0.1, as on a real branch (the card is reached
through its serial URL only). Stops everything at the end; exit status 0 when the node heard
the caller ID and every digit.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable
CID = ("13800138000", "LI NA")
DIGITS = "1234567890*#ABCD"


def stream(proc: subprocess.Popen, prefix: str, lines: list[str]) -> None:
    for line in proc.stdout:
        lines.append(line.rstrip())
        print(f"{prefix} {line.rstrip()}", flush=True)


def main() -> int:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    procs: list[subprocess.Popen] = []
    with tempfile.TemporaryDirectory() as tmp:
        info = Path(tmp) / "sim.json"
        try:
            print("== starting a simulated line card (the real firmware under CPython)")
            card = subprocess.Popen([PY, "-m", "simulator", "card", "--channels", "2", "--control-port", "0",
                                     "--info-file", str(info)], cwd=ROOT, env=env, text=True,
                                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
            procs.append(card)
            threading.Thread(target=stream, args=(card, "[card]", []), daemon=True).start()
            deadline = time.monotonic() + 15
            while not info.exists() and time.monotonic() < deadline and card.poll() is None:
                time.sleep(0.1)
            if not info.exists():
                print("the simulator did not start", file=sys.stderr)
                return 1
            sim = json.loads(info.read_text())
            print(f"== starting the node on {sim['serial']}")
            node_lines: list[str] = []
            node = subprocess.Popen([PY, "-m", "node_agent", "--card", sim["serial"]], cwd=ROOT, env=env,
                                    text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
            procs.append(node)
            threading.Thread(target=stream, args=(node, "[node]", node_lines), daemon=True).start()
            deadline = time.monotonic() + 15
            while not any(line.startswith("node up") for line in node_lines) and time.monotonic() < deadline:
                if node.poll() is not None:
                    print("the node exited", file=sys.stderr)
                    return 1
                time.sleep(0.1)
            print(f"== a caller ({CID[0]}, {CID[1]}) rings line 1, hears the greeting, keys {DIGITS}, hangs up")
            call = subprocess.run([PY, "-m", "simulator", "call", "--sim", sim["control"], "--line", "1",
                                   "--cid-number", CID[0], "--cid-name", CID[1], "--greeting", "2500",
                                   "--digits", DIGITS, "--on-ms", "50", "--off-ms", "50", "--listen", "300",
                                   "--hangup", "loop_break", "--pretty"], cwd=ROOT, env=env, text=True,
                                  capture_output=True, timeout=60)
            print("[caller] " + call.stdout.replace("\n", "\n[caller] ").rstrip())
            if call.returncode != 0:
                print(call.stderr, file=sys.stderr)
                return 1
            time.sleep(1.0)
            cleared = [json.loads(x) for x in node_lines if x.startswith("{") and '"cleared"' in x]
            heard = json.loads(call.stdout)["steps"][1]
            ok = bool(cleared) and cleared[-1]["digits"] == DIGITS and cleared[-1]["caller_id"]["number"] == CID[0]
            print("== result")
            print(f"   node saw caller ID : {cleared[-1]['caller_id'] if cleared else None}")
            print(f"   node heard digits  : {cleared[-1]['digits'] if cleared else None} (sent {DIGITS})")
            print(f"   caller heard       : {heard.get('level_dbm0')} dBm0, main frequencies {heard.get('peak_hz')} Hz")
            print("   " + ("OK: the call went through end to end" if ok else "FAILED"))
            return 0 if ok else 1
        finally:
            for p in reversed(procs):
                p.terminate()
            for p in procs:
                try:
                    p.wait(5)
                except subprocess.TimeoutExpired:
                    p.kill()


if __name__ == "__main__":
    sys.exit(main())
