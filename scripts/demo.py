"""`make run`: a simulated line card, the branch node with the demo configuration, and one
scripted call that walks the menu and authenticates by keypad.

Everything runs as separate processes on 127.0.0.1, as on a real branch (the node reaches the
card through its serial URL only). The node keeps its state in `data/demo/` (the demo
configuration's data directory), so `nodectl -c config/demo-branch.toml calls` shows the calls
afterwards. Exit status 0 when the call went the way the script expects.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from node_agent.config import load  # noqa: E402
from node_agent.prompts import PromptLibrary  # noqa: E402
from simulator.client import SimClient  # noqa: E402

PY = sys.executable
CONFIG = ROOT / "config" / "demo-branch.toml"
CID = ("13800138000", "LI NA")
ACCOUNT, PIN, NAME = "6222001234", "246810", "LI NA"


def say(text: str) -> None:
    print(text, flush=True)


def stream(proc: subprocess.Popen, prefix: str, lines: list[str], show: bool) -> None:
    for line in proc.stdout:
        lines.append(line.rstrip())
        if show:
            print(f"{prefix} {line.rstrip()}", flush=True)


def nodectl(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([PY, "-m", "node_agent.cli", "-c", str(CONFIG), *args], cwd=ROOT, input=stdin,
                          capture_output=True, text=True, timeout=120)


async def call(control: str, refs: dict[str, str]) -> dict:
    """The caller: rings line 1, chooses English, account services, keys account and PIN."""
    steps: list[tuple[str, dict, str]] = [
        ("ring", {"cid": {"number": CID[0], "name": CID[1]}, "timeout_ms": 20000},
         f"the caller ({CID[0]}, {CID[1]}) rings line 1"),
        ("listen", {"until": "choose_language.en", "ms": 20000}, "listens to the language choice"),
        ("dtmf", {"digits": "3"}, "presses 3 for English"),
        ("listen", {"until": "welcome.en", "ms": 10000}, "listens to the welcome"),
        ("listen", {"ms": 2500}, "listens to the start of the menu"),
        ("dtmf", {"digits": "1"}, "presses 1 for account services, without waiting for the menu to end"),
        ("listen", {"until": "account_number.en", "ms": 10000}, "listens"),
        ("dtmf", {"digits": ACCOUNT + "#", "on_ms": 80, "off_ms": 80}, f"keys the account number {ACCOUNT}#"),
        ("listen", {"until": "pin.en", "ms": 10000}, "listens"),
        ("dtmf", {"digits": PIN + "#", "on_ms": 80, "off_ms": 80}, "keys the PIN (6 digits) and #"),
        ("listen", {"until": "goodbye.en", "ms": 15000}, "listens"),
        ("wait_onhook", {"timeout_ms": 5000}, "waits for the node to hang up"),
    ]
    seen = 0
    result: dict = {}
    async with SimClient.parse(control) as sim:
        for op, args, what in steps:
            say(f"[caller] {what}")
            if op == "listen":
                args = {**args, "prompts": refs}
            r = await sim.call(op, line=1, **args)
            if op == "ring" and not r.get("answered"):
                raise RuntimeError("the node did not answer")
            if op == "listen":
                for p in r["prompts"][seen:]:
                    say(f"[caller]   hears {p['prompt']:<22} at {p['at_ms'] / 1000:5.1f} s"
                        f"{'' if p['ms'] >= p['full_ms'] - 300 else ' (cut short by a key)'}")
                seen = len(r["prompts"])
                result["heard"] = [p["prompt"] for p in r["prompts"]]
                if "until" in args and not r.get("until_heard"):
                    raise RuntimeError(f"the caller never heard {args['until']}")
            if op == "wait_onhook":
                result["onhook"] = r["onhook"]
    return result


def call_record(placed: datetime, timeout: float = 15.0) -> dict:
    """The record of the call placed at ``placed``, once the node has written it."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        rows = json.loads(nodectl("calls", "--json", "--limit", "1").stdout or "[]")
        if rows and rows[0]["ended"] and datetime.fromisoformat(rows[0]["started"]) >= placed:
            return rows[0]
        time.sleep(0.2)
    raise RuntimeError(f"the node wrote no record of the call within {timeout:.0f} s")


def lines_idle(timeout: float = 10.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        st = nodectl("status", "--json")
        if st.returncode == 0 and all(ln["state"] == "idle" for ln in json.loads(st.stdout)["lines"]):
            return
        time.sleep(0.2)
    raise RuntimeError(f"the node's lines were not idle {timeout:.0f} s after the call")


def main() -> int:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    procs: list[subprocess.Popen] = []
    cfg = load(CONFIG)
    with tempfile.TemporaryDirectory() as tmp:
        info = Path(tmp) / "sim.json"
        try:
            say("== the demo branch: " + nodectl("config", "check").stdout.strip())
            say("== building the prompts (espeak-ng, once; cached in data/demo/prompts)")
            built = nodectl("prompts", "build")
            if built.returncode != 0:
                print(built.stderr, file=sys.stderr)
                return 1
            say("   " + built.stdout.strip())
            # what the caller can recognise: every prompt in English, and the language choice in all three
            refs = {name: str(path) for name, path in PromptLibrary(cfg).export(Path(tmp) / "prompts").items()
                    if name.endswith(".en") or name.startswith("choose_language.")}
            added = nodectl("accounts", "add", ACCOUNT, "--name", NAME, "--pin-stdin", "--replace", stdin=PIN + "\n")
            if added.returncode != 0:
                print(added.stderr, file=sys.stderr)
                return 1
            cleared = json.loads(nodectl("alarms", "list", "--json").stdout or "[]")
            for alarm in cleared:  # an earlier interrupted demo must not leave the demo account locked
                nodectl("alarms", "clear", str(alarm["id"]), "--by", "make-run")
            say(f"== caller account {ACCOUNT} ({NAME}) with its PIN, hashed (scrypt) in data/demo/node.db")

            say("== starting a simulated line card (the real firmware under CPython)")
            card = subprocess.Popen([PY, "-m", "simulator", "card", "--channels", "2", "--control-port", "0",
                                     "--info-file", str(info)], cwd=ROOT, env=env, text=True,
                                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
            procs.append(card)
            threading.Thread(target=stream, args=(card, "[card]", [], False), daemon=True).start()
            deadline = time.monotonic() + 15
            while not info.exists() and time.monotonic() < deadline and card.poll() is None:
                time.sleep(0.1)
            if not info.exists():
                print("the simulator did not start", file=sys.stderr)
                return 1
            sim = json.loads(info.read_text())
            say(f"== starting the node (python -m node_agent -c config/demo-branch.toml --card {sim['serial']})")
            node_lines: list[str] = []
            node = subprocess.Popen([PY, "-m", "node_agent", "-c", str(CONFIG), "--card", sim["serial"], "-v"],
                                    cwd=ROOT, env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
            procs.append(node)
            threading.Thread(target=stream, args=(node, "[node]", node_lines, True), daemon=True).start()
            deadline = time.monotonic() + 60
            while not any(line.startswith(f"node {cfg.node_id} up:") for line in node_lines):
                if node.poll() is not None or time.monotonic() > deadline:
                    print("the node did not come up", file=sys.stderr)
                    return 1
                time.sleep(0.1)

            say("== a call")
            placed = datetime.now(UTC)
            result = asyncio.run(call(sim["control"], refs))
            rec = call_record(placed)  # written as the call clears, just after the hang-up
            lines_idle()  # the status the node publishes each second has caught up
            say("== nodectl status")
            say(nodectl("status").stdout.rstrip())
            say("== nodectl calls (newest first)")
            say(nodectl("calls", "--limit", "3").stdout.rstrip())

            path = json.loads(rec["ivr_path"])
            ok = (rec["auth_outcome"] == "verified" and rec["account"] == ACCOUNT and rec["caller_number"] == CID[0]
                  and path[-2:] == ["account_status", "goodbye"] and result.get("onhook")
                  and "account_ok.en" in result.get("heard", []) and PIN not in "\n".join(node_lines))
            say("== result")
            if "night_menu.en" in result.get("heard", []):
                say("   (outside the branch's business hours the caller gets the night menu)")
            say(f"   caller ID {rec['caller_number']} / {rec['caller_name']}, path {' > '.join(path)}, "
                f"authentication {rec['auth_outcome']}, {rec['disposition']}")
            say("   " + ("OK: the call went through the IVR and the caller was authenticated" if ok else "FAILED"))
            return 0 if ok else 1
        except (RuntimeError, OSError, ConnectionError) as exc:
            print(f"demo failed: {exc}", file=sys.stderr)
            return 1
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
