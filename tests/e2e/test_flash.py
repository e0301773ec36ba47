"""End to end: `nodectl flash` -> serial link at 921,600 baud -> a `simctl card` process running the
card's firmware -> its NOR flash file; trial boot, confirm, revert and power cuts (issue 11, 1-3).

Images are built from copies of firmware/card (FW_VERSION bumped; or a self-test made to fail),
registered with the simulator (`--firmware-dir`) and signed with a key the test makes. `nodectl`
runs in this process (`node_agent.cli.main`), on the simulator's socket:// serial URL.
"""

from __future__ import annotations

import _thread
import asyncio
import contextlib
import io
import json
import re
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from firmware.card.bootmeta import Layout
from node_agent.cli import main as nodectl
from simulator import images
from simulator.client import SimClient
from tests.conftest import start_sim, stop_sim
from tests.helpers import answered_call, connected, wait_until
from tests.simulator.test_flash_boot import failing_self_test, tree

N, N1 = "1.1.0", "1.2.0"  # firmware/card/board.py FW_VERSION (the factory image), and the update
# The power cuts run the card's clock at 4x: boots, self-tests and watchdog take a quarter as long,
# and so does the link (the simulator paces it in card time). The update during a call runs at 1x:
# a real 921,600-baud link.
FAST = 4.0
SECTOR = 4096  # the W25Q16JV's erase sector: the journal records the image sector by sector


def slot_base(flash: dict, slot: int) -> int:
    """Flash address of a slot's first byte, by the updater's own layout on the status's geometry."""
    chip = SimpleNamespace(size=flash["size"], block_size=flash["block_size"], write_size=1)
    return Layout(chip).slot_addr[slot]


@pytest.fixture(scope="module")
def fw(tmp_path_factory) -> dict:
    """Key pair, registry with the N+1 and failing trees, signed image files N, N+1 and failing."""
    d = tmp_path_factory.mktemp("fw")
    key = d / "deploy.key"
    assert nodectl(["image", "keygen", str(key)]) == 0
    reg = d / "firmware"
    reg.mkdir()
    trees = {"n": images.OWN_TREE, "n1": tree(d, "n1", (1, 2, 0)),
             "bad": tree(d, "bad", (1, 3, 0), failing_self_test)}
    out = {"key": str(key) + ".pub", "registry": str(reg)}
    for name, src in trees.items():
        if src is not images.OWN_TREE:
            images.add(reg, src)
        path = d / f"{name}.img"
        path.write_bytes(images.image(src, 1).signed_part)
        assert nodectl(["image", "sign", str(path), "--key", str(key)]) == 0
        out[name] = str(path)
    return out


@contextlib.contextmanager
def simulator(tmp_path: Path, fw: dict, speed: float = 1.0):
    sim = start_sim(tmp_path, "--channels", "2", "--speed", str(speed), "--flash", str(tmp_path / "card.flash"),
                    "--firmware-dir", fw["registry"])
    try:
        yield sim
    finally:
        stop_sim(sim)


def control(sim, op: str, **args) -> dict:
    async def go():
        async with SimClient.parse(sim.control) as c:
            return await c.call(op, **args)
    return asyncio.run(go())


def booted(sim) -> dict:
    """The card's status once it runs the application of a valid slot."""
    return wait_until(lambda: (s := control(sim, "status"))["power"]["stage"] == "app" and s["running_slot"] is not None
                    and s, 20, "the card to boot a valid image")


def run(*argv: str, interrupt_when=None) -> tuple[int, str]:
    """``nodectl ARGV`` in this process -> (exit status, stdout + stderr). ``interrupt_when``: a
    condition polled in a thread; when it holds, Ctrl-C (as a technician whose card went dark)."""
    code, out, _ = run_counted(*argv, interrupt_when=interrupt_when)
    return code, out


def run_counted(*argv: str, interrupt_when=None) -> tuple[int, str, int]:
    """:func:`run`, and how many Ctrl-Cs it took to stop nodectl."""
    buf = io.StringIO()
    done = threading.Event()
    presses: list[float] = []

    def watch():
        while not done.wait(0.05):
            if interrupt_when():
                break
        while not done.is_set():  # Ctrl-C, and again every 2.5 s until nodectl has stopped (one must do)
            presses.append(time.monotonic())
            _thread.interrupt_main()
            done.wait(2.5)

    if interrupt_when is not None:
        threading.Thread(target=watch, daemon=True).start()
    try:
        with contextlib.redirect_stdout(buf), contextlib.redirect_stderr(buf):
            code = nodectl(list(argv))
    except KeyboardInterrupt:  # the interrupt came between nodectl's own handlers
        code = 130
    finally:
        done.set()
    return code, buf.getvalue(), len(presses)


def card_info(sim) -> dict:
    code, out = run("card", "info", "--card", sim.serial, "--json")
    assert code == 0, out
    return json.loads(out)


# -- 1. N+1 during a call, no daemon running (the HAL left line 2 off-hook) ------------------------------------------------------------------------------
def test_n1_is_flashed_during_a_call_whose_audio_flows_and_the_reboot_waits_for_the_call(tmp_path, fw):
    with simulator(tmp_path, fw) as sim:
        async def call_on_line_2():  # answered by the HAL, as the daemon would; left off-hook when it stops
            async with connected(sim) as (board, client):
                await answered_call(board, client, 2)
        asyncio.run(call_on_line_2())
        st = control(sim, "status")
        assert st["lines"][1]["offhook"] and st["slots"][0]["version"] == N
        control(sim, "silence", line=2, ms=600_000, wait=False)  # the caller's side keeps sending
        before = control(sim, "status")
        marks: list[dict] = []

        def waiting_for_the_call():  # nodectl has sent the image and now waits for line 2
            s = control(sim, "status")
            if s["slots"][1]["state"] == "pending" and not marks:
                marks.append(s)
            return bool(marks) and s["card_ms"] - marks[0]["card_ms"] > 1000  # 1 s more: no reboot
        code, out = run("flash", fw["n1"], "--card", sim.serial, "--key", fw["key"],
                        interrupt_when=waiting_for_the_call)
        print(out)
        assert code == 130 and "waiting for line(s) 2 to be free before rebooting" in out, out
        sent = re.search(r"sent (\d+) bytes in ([\d.]+) s \((\d+) sent again\)", out)
        assert sent and int(sent[1]) == len(Path(fw["n1"]).read_bytes()) - 68, out  # header + payload
        st = control(sim, "status")
        assert st["running_slot"] == 0 and st["slots"][0]["version"] == N and st["slots"][1]["state"] == "pending"
        assert st["boots"] == before["boots"]  # no reboot while line 2 is in a call
        # the call's audio flowed up the link through the transfer: a frame every 20 ms of card time
        t = marks[0]
        frames = t["firmware"]["lines"][1]["audio_up"] - before["firmware"]["lines"][1]["audio_up"]
        expected = (t["card_ms"] - before["card_ms"]) / 20
        print(f"during the transfer line 2 sent {frames} audio frames up, {expected:.0f} due")
        # bound: 5 % lost at most, and 2 frames for the two status snapshots (each reads the clock and
        # the counters a moment apart)
        assert expected > 10 and frames >= 0.95 * expected - 2, (frames, expected)
        assert t["firmware"]["lines"][1]["longest_gap"] <= 60, t["firmware"]["lines"][1]
        # --now reboots at once into the pending image (the call drops), which confirms itself
        code, out = run("flash", fw["n1"], "--card", sim.serial, "--key", fw["key"], "--now")
        print(out)
        assert code == 0 and f"card runs {N1} from slot 1, confirmed" in out, out
        info = card_info(sim)
        assert info["firmware"] == N1 and info["running_slot"] == 1 and info["last_revert"] is None
        assert [(s["state"], s["version"]) for s in info["slots"]] == [("confirmed", N), ("confirmed", N1)]


# -- 1. N+1 flashed by the running node daemon during a call ----------------------------------------------
HOLD_CONFIG = """
[node]
id = "flash-branch"
card = "{card}"
data_dir = "{data}"
language = "en"
answer_on_ring = 1

[lines.1]
number = "100"
flow = "hold"
[lines.2]
number = "200"
flow = "hold"

[prompts.main]
en = "Main menu, please choose."
cmn = "主菜单，请选择。"
[prompts.bye]
en = "Goodbye."
cmn = "再见。"

[flows.hold]
start = "menu"
[flows.hold.nodes.menu]
type = "menu"
prompt = "main"
options = {{ "1" = "bye" }}
timeout_ms = 300000
retries = 1
on_fail = "bye"
[flows.hold.nodes.bye]
type = "hangup"
prompt = "bye"
"""


class NodeThread:
    """The node daemon (node_agent.daemon.Node) in a thread with its own event loop, as `nodectl run`
    runs it, so that `nodectl` can run in this process's main thread (where Ctrl-C goes)."""

    def __init__(self, config_path: Path) -> None:
        from node_agent.config import load
        from node_agent.daemon import Node
        from node_agent.prompts import PromptLibrary
        from tests.ivr.harness import CACHE

        cfg = load(config_path)

        def make() -> Node:  # in the daemon's thread, as `nodectl run` makes it in its own
            node = Node(cfg)
            node.prompts = node.ivr.prompts = PromptLibrary(cfg, cache_dir=CACHE)
            return node
        self._make = make
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="node daemon")

    def _run(self) -> None:
        async def main():
            self.loop = asyncio.get_running_loop()
            self.node = self._make()
            ready = asyncio.Event()
            self.task = asyncio.create_task(self.node.run(ready))
            waiter = asyncio.create_task(ready.wait())
            await asyncio.wait([self.task, waiter], return_when=asyncio.FIRST_COMPLETED)
            self._ready.set()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
        asyncio.run(main())

    def __enter__(self) -> NodeThread:
        self._thread.start()
        assert self._ready.wait(60), "the node daemon did not start"
        if self.task.done():  # it stopped before it was ready: say why
            self.task.result()
        data = self.node.config.data_dir
        wait_until(lambda: (data / "status.json").exists() and (data / "control.sock").exists(), 10,
                 "the daemon's status and control socket")
        return self

    def __exit__(self, *exc) -> None:
        self.loop.call_soon_threadsafe(self.task.cancel)
        self._thread.join(15)

    def runner(self, line: int):
        return next(r for r in self.node.runners if r.line.number == line)


def test_n1_is_flashed_by_the_running_daemon_while_it_carries_a_call_and_reboots_when_the_call_ends(tmp_path, fw):
    with simulator(tmp_path, fw) as sim:
        cfg = tmp_path / "branch.toml"
        cfg.write_text(HOLD_CONFIG.format(card=sim.serial, data=tmp_path / "data"), encoding="utf-8")
        with NodeThread(cfg) as daemon:
            assert control(sim, "ring", line=2, timeout_ms=15000)["answered"]  # the daemon answers
            wait_until(lambda: daemon.runner(2).state == "ivr", 10, "the call on line 2 in the IVR")
            control(sim, "speak", line=2, text="I am calling about my account, and I will hold while you look.",
                    wait=False)
            control(sim, "silence", line=2, ms=300_000, wait=False)  # and goes on sending: the line stays live
            before = control(sim, "status")
            assert before["running_slot"] == 0 and before["slots"][0]["version"] == N
            marks: list[dict] = []
            hung_up: list[dict] = []

            def caller():  # hangs up once nodectl has sent the image and waited 1 s of card time for line 2
                def pending_then_a_second():
                    s = control(sim, "status")
                    if s["slots"][1]["state"] == "pending" and not marks:
                        marks.append(s)
                    return bool(marks) and s["card_ms"] - marks[0]["card_ms"] > 1000 and s
                s = wait_until(pending_then_a_second, 60, "the image pending on the card")
                hung_up.append(s)
                control(sim, "hangup", line=2, mode="loop_break")
            t = threading.Thread(target=caller, daemon=True)
            t.start()
            code, out = run("-c", str(cfg), "flash", fw["n1"], "--key", fw["key"])
            t.join(10)
            print(out)
            assert code == 0, out
            assert "the node daemon holds the card's port" in out, out
            assert "waiting for line(s) 2 to be free before rebooting the card" in out, out
            assert f"card runs {N1} from slot 1, confirmed (its self-test passed); slot 0 keeps {N}" in out, out
            sent = re.search(r"sent (\d+) bytes in ([\d.]+) s \((\d+) sent again\)", out)
            assert sent and int(sent[1]) == len(Path(fw["n1"]).read_bytes()) - 68, out
            # no reboot while line 2 was in a call: the card booted again only after the caller hung up
            assert hung_up and hung_up[0]["boots"] == before["boots"], (before["boots"], hung_up)
            # the call's audio flowed both ways through the transfer: a frame every 20 ms of card time
            m = marks[0]
            due = (m["card_ms"] - before["card_ms"]) / 20
            b2, m2 = before["firmware"]["lines"][1], m["firmware"]["lines"][1]
            up, down = m2["audio_up"] - b2["audio_up"], m2["audio_down"] - b2["audio_down"]
            missed = (m2["underruns"] - b2["underruns"]) + (m2["lost"] - b2["lost"])
            print(f"during the transfer ({sent[3]} bytes sent again) line 2 sent {up} audio frames up and got "
                  f"{down} down from the daemon, {due:.0f} due; {missed} turns with nothing to play")
            # bound: 5 % lost at most, and 2 frames for the two status snapshots (each reads the clock and
            # the counters a moment apart)
            assert due > 10 and up >= 0.95 * due - 2 and down >= 0.95 * due - 2, (up, down, due)
            assert missed <= 0.05 * due + 2, (missed, due)
            # the daemon's board reconnected to the card's new boot, and card info asks the daemon
            wait_until(lambda: daemon.node.board.identity and daemon.node.board.identity.firmware == N1, 10,
                     "the daemon's board to see N+1")
            conns = control(sim, "status")["port"]["connections"]
            code, text = run("-c", str(cfg), "card", "info", "--json")
            assert code == 0, text
            info = json.loads(text)
            assert control(sim, "status")["port"]["connections"] == conns  # not a port of its own: the daemon's
            assert info["firmware"] == N1 and info["running_slot"] == 1 and info["last_revert"] is None
            assert [(s["state"], s["version"]) for s in info["slots"]] == [("confirmed", N), ("confirmed", N1)]
            # and the node serves calls again: a new call is answered
            wait_until(lambda: daemon.runner(2).state == "idle", 10, "line 2 idle after the hang-up")
            assert control(sim, "ring", line=1, timeout_ms=15000)["answered"]
            wait_until(lambda: daemon.runner(1).state == "ivr", 10, "the new call on line 1 in the IVR")
            control(sim, "hangup", line=1, mode="loop_break")


# -- 3. a failing self-test is reverted ------------------------------------------------------------------
def test_an_image_whose_self_test_fails_is_reverted_to_n_and_card_info_says_why(tmp_path, fw):
    with simulator(tmp_path, fw) as sim:
        code, out = run("flash", fw["bad"], "--card", sim.serial, "--key", fw["key"])
        print(out)
        assert code == 4 and f"the card reverted to {N}" in out and "'self-test failed'" in out, out
        code, out = run("card", "info", "--card", sim.serial)
        print(out)
        assert code == 0
        assert re.search(rf"^0\s+confirmed\s+{re.escape(N)}\s+1\s+[0-9a-f]{{16}}\s+running, active$", out, re.M), out
        assert re.search(r"^1\s+reverted\s+1\.3\.0\s+1\s+[0-9a-f]{16}$", out, re.M), out
        assert "last revert  slot 1: self-test failed" in out, out
        assert card_info(sim)["firmware"] == N


# -- 2. power cuts during real `nodectl flash` runs --------------------------------------------------------
def test_power_cuts_during_nodectl_flash_leave_a_bootable_card_and_the_rerun_completes(tmp_path, fw):
    with simulator(tmp_path, fw, FAST) as sim:
        # one whole update uncut, to count the flash operations of its transfer
        ops0 = control(sim, "status")["flash"]["ops"]
        code, out = run("flash", fw["n1"], "--card", sim.serial, "--key", fw["key"], "--no-reboot")
        assert code == 0, out
        transfer_ops = control(sim, "status")["flash"]["ops"] - ops0
        code, out = run("flash", fw["n1"], "--card", sim.serial, "--key", fw["key"], "--now")
        assert code == 0, out
        size = len(Path(fw["n1"]).read_bytes()) - 68
        cuts = ([("flash_op", 1 + i * (transfer_ops - 1) // 15) for i in range(16)]
                + [("image_byte", b) for b in (64, 4096, 10_000, size // 2, size - 1)]
                + [("reboot", None), ("trial", None), ("reboot", None), ("trial", None)])
        target, other = "n", "n1"  # the card runs N+1: the next update goes back to N (same counter)
        covered = []
        more_presses = 0  # cut runs a first Ctrl-C did not stop
        resent = redone = resumes = 0
        for at, n in cuts:
            want = {"n": N, "n1": N1}[target]
            before = booted(sim)
            control(sim, "cut", at=at, **({} if n is None else {"n": n}))
            code, cut_out, presses = run_counted("flash", fw[target], "--card", sim.serial, "--key", fw["key"],
                                                 "--now", interrupt_when=lambda: not control(sim, "status")["power"]["on"])
            assert code in (130, 3), (at, n, code, cut_out)  # interrupted, or gave up on the dark card
            more_presses += presses > 1
            st = control(sim, "status")
            cut = st["last_cut"]
            assert not st["power"]["on"] and cut["at"] == at, (at, n, code, cut_out)
            control(sim, "power", on=True)
            st = booted(sim)
            got = st["slots"][st["running_slot"]]["version"]
            assert got in (N, N1), (at, n, st)
            if at in ("reboot", "trial"):  # the image was pending: the boot after a cut tries it
                assert got == want, (at, st)
            if at in ("flash_op", "image_byte"):  # cut in the transfer (the app runs it): the old image runs;
                # a load-delayed op count can put the last one in the reboot's record: then the new one
                assert got == ({"n": N1, "n1": N}[target] if cut["stage"] == "app" else want), (at, n, cut, st)
            code, out = run("flash", fw[target], "--card", sim.serial, "--key", fw["key"], "--now")
            assert code == 0, (at, n, out)
            info = card_info(sim)
            run_slot = info["running_slot"]
            assert info["firmware"] == want and info["slots"][run_slot]["state"] == "confirmed", info
            assert info["slots"][1 - run_slot]["version"] == {"n": N1, "n1": N}[target], info
            sent = re.search(r"sent (\d+) bytes in [\d.]+ s \((\d+) sent again(?:, resumed at byte (\d+))?\)", out)
            if sent:
                resumed_at = int(sent[3] or 64)
                resent += int(sent[2])
                cut_addr = cut["addr"] - slot_base(st["flash"], 1 - before["running_slot"])
                if at == "flash_op" and cut_addr > 0:  # in the slot: what the re-run redoes is under 2 sectors
                    assert 0 <= cut_addr - resumed_at < 2 * SECTOR, (at, n, cut, resumed_at)
                    redone = max(redone, cut_addr - resumed_at)
                    resumes += resumed_at > 64
                if at == "image_byte" and n >= 4096 + 64:  # resumed at the last sector the journal recorded
                    assert int(sent[3]) == n // 4096 * 4096, (at, n, out)
            covered.append(f"{at}={n}" if n is not None else at)
            target, other = other, target
        print(f"power cut at {len(covered)} points of real `nodectl flash` runs "
              f"({transfer_ops} flash ops per transfer): {', '.join(covered)}; "
              f"{resumes} re-runs resumed mid-image, at most {redone} bytes before the cut, {resent} bytes sent again "
              f"in all; {more_presses} cut run(s) needed a second Ctrl-C")
        assert len(covered) >= 25
        assert more_presses == 0  # one Ctrl-C ends nodectl, however dark the card


# -- one Ctrl-C while the card is dark ends nodectl at once ----------------------------------------------
def run_interrupted_once(*argv: str, when) -> tuple[int, str, float]:
    """``nodectl ARGV``, with ONE Ctrl-C once ``when()`` holds -> (exit status, output, seconds from
    the Ctrl-C to nodectl's return; inf if it never came)."""
    buf = io.StringIO()
    done = threading.Event()
    pressed: list[float] = []

    def watch():
        while not done.wait(0.02):
            if when():
                pressed.append(time.monotonic())
                _thread.interrupt_main()
                return
    threading.Thread(target=watch, daemon=True).start()
    try:
        with contextlib.redirect_stdout(buf), contextlib.redirect_stderr(buf):
            code = nodectl(list(argv))
    except KeyboardInterrupt:  # reached the test, not nodectl's handler: what a technician sees as a traceback
        code = -1
    finally:
        done.set()
    return code, buf.getvalue(), time.monotonic() - pressed[0] if pressed else float("inf")


def test_one_ctrl_c_while_the_card_is_dark_ends_nodectl_at_once_and_the_rerun_completes(tmp_path, fw):
    with simulator(tmp_path, fw) as sim:
        booted(sim)
        timings = []
        for at, n, dark_s in [("image_byte", 6000, 0.1), ("image_byte", 9000, 0.6), ("image_byte", 12000, 1.3),
                              ("reboot", None, 0.1), ("reboot", None, 0.9)]:
            control(sim, "cut", at=at, **({} if n is None else {"n": n}))
            since: list[float] = []

            def dark_for_a_while(dark_s=dark_s, since=since):  # Ctrl-C once the card has been dark a while
                if not control(sim, "status")["power"]["on"] and not since:
                    since.append(time.monotonic())
                return bool(since) and time.monotonic() - since[0] >= dark_s
            code, out, took = run_interrupted_once("flash", fw["n1"], "--card", sim.serial, "--key", fw["key"],
                                                   "--now", when=dark_for_a_while)
            timings.append(round(took, 2))
            assert code == 130, (at, n, code, out)
            assert out.rstrip().endswith("nodectl: flash interrupted: what the card received is kept; run the same "
                                         "command again to resume"), out
            assert took < 1.0, (at, n, took, out)
            control(sim, "power", on=True)
            booted(sim)
            code, out = run("flash", fw["n1"], "--card", sim.serial, "--key", fw["key"], "--now")
            assert code == 0, out
            code, out = run("flash", fw["n"], "--card", sim.serial, "--key", fw["key"], "--now")  # back to N
            assert code == 0, out
        print(f"one Ctrl-C while the card was dark: nodectl ended {timings} s after it")
