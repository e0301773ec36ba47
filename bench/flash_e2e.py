"""``make bench``'s flashing numbers end to end: the real ``nodectl flash`` (a process of its own) on
a ``simctl card`` process's serial port at 921,600 baud, the card running its firmware from its NOR
flash file (``python -m simulator card``, started as the tests start it).

Images: the factory image N (built from ``firmware/card``) and N+1 (a copy of it with the minor
version raised, registered with the simulator's ``--firmware-dir`` so the card can run it), signed
with a key made for the run. Each run flashes the other image (N+1, then N again: the same security
counter allows it), so every run is a whole update: transfer, reboot, trial, confirm.

Two numbers per run:

* the transfer's throughput as a fraction of the link's raw byte rate (baud / 10 bytes a second,
  8N1): nodectl's own rate at 100 %, from the card's first answer to its last chunk's; the most
  152-byte chunks in 171-byte frames can carry is 88.9 %;
* the time from starting ``nodectl flash`` (the process) to its exit with the new version confirmed.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from firmware.image import build, sign
from simulator import images

ROOT = Path(__file__).resolve().parent.parent
BAUD = 921600
RATE = re.compile(r"flash: 100% [\d.]+/([\d.]+) KiB\s+([\d.]+) KiB/s")
NODECTL = "import sys; from node_agent.cli import main; sys.exit(main(sys.argv[1:]))"


def bumped_tree(dst: Path) -> Path:
    """A copy of the card's sources with the minor version one higher (an image the card can run)."""
    shutil.copytree(images.OWN_TREE, dst, ignore=shutil.ignore_patterns("__pycache__"))
    _board, (major, minor, patch) = build.card_constants(dst)
    board = dst / "board.py"
    text, n = re.subn(r"^FW_VERSION = .*$", f"FW_VERSION = {(major, minor + 1, patch)!r}", board.read_text(),
                      flags=re.M)
    if n != 1:
        raise RuntimeError(f"{board}: no FW_VERSION line to raise")
    board.write_text(text)
    return dst


def start_sim(tmp: Path, *args: str) -> tuple[dict, subprocess.Popen, Path]:
    info, log = tmp / "sim.json", tmp / "sim.log"
    with log.open("w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "simulator", "card", "--control-port", "0", "--info-file",
                                 str(info), *args], cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    while not info.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(f"the simulated card did not start: {log.read_text(errors='replace')}")
        time.sleep(0.05)
    return json.loads(info.read_text()), proc, log


def flash_e2e(runs: int = 5) -> dict:
    tmp = Path(tempfile.mkdtemp(prefix="bench-flash-"))
    try:
        reg = tmp / "firmware"
        reg.mkdir()
        n1_tree = bumped_tree(tmp / "n1")
        images.add(reg, n1_tree)
        key_file, pub, _ = sign.keygen(tmp / "deploy.key")
        key = sign.load_private(key_file)
        files = {}
        for name, tree in (("n", images.OWN_TREE), ("n1", n1_tree)):
            img = sign.sign(images.image(tree), key)
            files[name] = tmp / f"{name}.img"
            files[name].write_bytes(bytes(img))
            files[name + "_version"] = img.header.version_text
        sim, proc, log = start_sim(tmp, "--channels", "2", "--baud", str(BAUD), "--flash", str(tmp / "card.flash"),
                                   "--firmware-dir", str(reg))
        out = []
        try:
            target = "n1"
            for _ in range(runs):
                t0 = time.monotonic()
                res = subprocess.run([sys.executable, "-c", NODECTL, "flash", str(files[target]), "--card",
                                      sim["serial"], "--key", str(pub), "--baud", str(BAUD)],
                                     cwd=ROOT, capture_output=True, text=True, timeout=180)
                took = time.monotonic() - t0
                m = RATE.search(res.stderr)
                confirmed = res.returncode == 0 and f"card runs {files[target + '_version']}" in res.stdout
                if not (m and confirmed):
                    raise RuntimeError(f"nodectl flash exited {res.returncode}:\n{res.stdout}\n{res.stderr}")
                rate = float(m[2]) * 1024
                out.append({"image": files[target + "_version"], "image_kib": float(m[1]),
                            "bytes_per_s": round(rate), "fraction_of_raw_byte_rate": round(rate / (BAUD / 10), 4),
                            "nodectl_to_confirmed_s": round(took, 2)})
                target = "n" if target == "n1" else "n1"
        finally:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
        fractions = sorted(r["fraction_of_raw_byte_rate"] for r in out)
        times = sorted(r["nodectl_to_confirmed_s"] for r in out)
        return {"baud": BAUD, "runs": out, "fraction_of_raw_byte_rate_median": fractions[len(fractions) // 2],
                "nodectl_to_confirmed_s_median": times[len(times) // 2], "confirmed": True,
                "how": "nodectl flash (own process) -> socket serial port -> simctl card process (its firmware, "
                       "NOR flash file)"}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
