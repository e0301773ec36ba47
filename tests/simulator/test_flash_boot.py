"""The simulated card boots through its updater from its own flash, runs the code of the image in
its running slot, and takes a new image over the link: trial boot, self-test, confirm or revert;
power cuts from the control port during an update leave a card that boots the old or the new image.

One in-process simulated card per test (2 lines), its flash in the test's folder; images are built
from copies of firmware/card with one thing changed (simulator/images.py caches each build).
"""

from __future__ import annotations

import asyncio
import re
import shutil
import sys
import time
from pathlib import Path

import pytest

from firmware.card import wire
from firmware.image.container import make
from simulator import images
from simulator.card import SimCard
from simulator.control import ControlServer
from tests.helpers import wait_until
from tests.simulator.image_host import ImageHost, LinkLost, connect

N = (1, 1, 0)  # firmware/card/board.py FW_VERSION: the factory image
SPEED = 1.0  # real time: at x2 the 15 s the host has to sync in a trial was 7.5 s, which a busy machine missed
CONFIRM_S = 10.0  # a trial confirms ~0.5 s after the host's SYNC (25 highway blocks); generous for load


def tree(tmp_path: Path, name: str, version: tuple[int, int, int], edit=None) -> Path:
    """A copy of the card's sources with FW_VERSION set (and ``edit(app_source)`` applied to app.py)."""
    dst = tmp_path / name
    shutil.copytree(images.OWN_TREE, dst, ignore=shutil.ignore_patterns("__pycache__"))
    board = dst / "board.py"
    text, n = re.subn(r"^FW_VERSION = .*$", f"FW_VERSION = {version!r}", board.read_text(), flags=re.M)
    assert n == 1
    board.write_text(text)
    if edit is not None:
        app = dst / "app.py"
        app.write_text(edit(app.read_text()))
    return dst


def failing_self_test(app: str) -> str:
    marker = "    def codec_answers(self, ch):\n"
    assert marker in app
    return app.replace(marker, marker + "        return False  # this image's self-test fails\n")


@pytest.fixture
def registry(tmp_path) -> Path:
    d = tmp_path / "firmware"
    d.mkdir()
    return d


@pytest.fixture
def card(tmp_path, registry):
    c = SimCard(channels=2, flash=tmp_path / "card.flash", firmware_dir=registry, speed=SPEED).start()
    yield c
    c.stop()


def control(card: SimCard, **req) -> dict:
    resp = asyncio.run(ControlServer(card).handle(req))
    assert resp["ok"], resp
    return resp


def image_of(registry: Path, src: Path, security: int = 1, register: bool = True) -> bytes:
    if register:
        images.add(registry, src)
    return images.image(src, security).signed_part


def settled(card: SimCard, version: tuple[int, int, int], timeout: float = 20.0):
    """Connect and sync until the card runs ``version`` with no trial left; -> (host, HELLO, SLOTS)."""
    end = time.monotonic() + timeout
    while True:
        host, hello = connect(card.url, max(1.0, end - time.monotonic()))
        try:
            if hello.version == version:
                slots = wait_until(lambda h=host: _no_trial(h), CONFIRM_S, "the trial to confirm or revert")
                return host, hello, slots
        except (LinkLost, AssertionError):
            pass
        host.close()
        if time.monotonic() >= end:
            raise AssertionError(f"the card did not come up running {version} (last HELLO: {hello.version})")
        time.sleep(0.05)


def _no_trial(host: ImageHost):
    s = host.slots()
    return s if wire.SLOT_NAMES.index(s.states[s.running]) != wire.SLOT_TRIAL else None


def running_board(card: SimCard):
    """The board module of the code the card runs (the registry tree it imported at this boot)."""
    return sys.modules[type(card.firmware).__module__.rsplit(".", 1)[0] + ".board"]


def test_a_fresh_card_boots_its_factory_image_from_slot_0(card):
    host, hello = connect(card.url)
    assert hello.version == N and hello.board == b"BNLC-8FX"
    s = host.slots()
    assert (s.running, s.active, s.states) == (0, 0, ("confirmed", "empty"))
    assert s.versions[0] == N
    st = control(card, op="status")
    assert st["flash"]["chip"] == "W25Q16JV" and st["flash"]["size"] == 2 * 1024 * 1024
    assert st["running_slot"] == 0 and st["slots"][0]["state"] == "confirmed"
    assert Path(st["running_tree"]) == images.OWN_TREE
    host.close()


def test_an_image_over_the_link_is_tried_confirmed_and_keeps_the_old_one(card, registry, tmp_path):
    new = image_of(registry, tree(tmp_path, "n1", (1, 2, 0)))
    host, _ = connect(card.url)
    assert host.send_image(new) == wire.IR_OK
    s = host.slots()
    assert s.states == ("confirmed", "pending") and s.versions[1] == (1, 2, 0)
    host.reset()
    host.close()
    host, hello, s = settled(card, (1, 2, 0))
    assert hello.version == (1, 2, 0)
    assert (s.running, s.active, s.states) == (1, 1, ("confirmed", "confirmed"))
    assert s.versions == (N, (1, 2, 0)) and s.reason == "none"
    assert running_board(card).FW_VERSION == (1, 2, 0)  # the N+1 tree's code runs, not the simulator's
    host.close()
    card.stop()  # the simulator stops; its flash file stays
    again = SimCard(channels=2, flash=card.flash_path, firmware_dir=registry, speed=SPEED).start()
    try:
        host, hello, s = settled(again, (1, 2, 0))
        assert (s.running, s.states, s.versions) == (1, ("confirmed", "confirmed"), (N, (1, 2, 0)))
        host.close()
    finally:
        again.stop()


def test_hello_reports_the_version_in_the_running_image_header(card, registry):
    # the simulator's own code (FW_VERSION 1.1.0) in an image whose header says 1.1.7
    payload = images.payload(images.OWN_TREE)
    host, _ = connect(card.url)
    assert host.send_image(bytes(make("BNLC-8FX", (1, 1, 7), 1, payload).signed_part)) == wire.IR_OK
    host.reset()
    host.close()
    host, hello, s = settled(card, (1, 1, 7))
    assert s.states == ("confirmed", "confirmed") and running_board(card).FW_VERSION == N
    host.close()


def test_an_image_whose_self_test_fails_is_reverted_with_the_reason(card, registry, tmp_path):
    bad = image_of(registry, tree(tmp_path, "bad", (1, 3, 0), failing_self_test))
    host, _ = connect(card.url)
    assert host.send_image(bad) == wire.IR_OK
    host.reset()
    host.close()
    host, hello, s = settled(card, N)
    assert (s.running, s.active) == (0, 0)
    assert s.states == ("confirmed", "reverted") and s.versions[1] == (1, 3, 0)
    assert (s.reason, s.reverted_slot) == ("self-test failed", 1)
    assert control(card, op="status")["last_revert"] == {"reason": "self-test failed", "slot": 1}
    host.close()


def hangs_in_self_test(app: str) -> str:
    marker = "    def self_test(self, now):\n"
    assert marker in app
    return app.replace(marker, marker + "        while True:  # this image hangs before its self-test ends\n"
                                        "            time.sleep_ms(10)\n")


def test_a_trial_that_hangs_is_reset_by_the_watchdog_and_reverted_as_such(card, registry, tmp_path):
    hung = image_of(registry, tree(tmp_path, "hung", (1, 5, 0), hangs_in_self_test))
    host, _ = connect(card.url)
    assert host.send_image(hung) == wire.IR_OK
    host.reset()
    host.close()
    host, hello, s = settled(card, N)
    assert s.states == ("confirmed", "reverted") and (s.reason, s.reverted_slot) == ("watchdog reset", 1)
    host.close()


def test_an_image_built_from_no_registered_source_cannot_run_and_reverts_as_a_watchdog_reset(card, registry,
                                                                                            tmp_path):
    stray = image_of(registry, tree(tmp_path, "stray", (1, 4, 0)), register=False)
    host, _ = connect(card.url)
    assert host.send_image(stray) == wire.IR_OK
    host.reset()
    host.close()
    host, hello, s = settled(card, N)
    assert s.states == ("confirmed", "reverted") and (s.reason, s.reverted_slot) == ("watchdog reset", 1)
    host.close()


# -- power cuts ---------------------------------------------------------------------------------------
N1 = (1, 2, 0)


@pytest.fixture(scope="module")
def n1_tree(tmp_path_factory) -> Path:
    return tree(tmp_path_factory.mktemp("n1"), "n1", N1)


def update_ops(card: SimCard, new: bytes) -> tuple[int, int]:
    """Run one whole update on ``card`` -> (flash ops of the transfer, of the whole update to the confirm)."""
    host, _ = connect(card.url)
    before = card.nor.ops
    assert host.send_image(new) == wire.IR_OK
    transfer = card.nor.ops - before
    host.reset()
    host.close()
    settled(card, N1)[0].close()
    return transfer, card.nor.ops - before


def run_update_until_cut(card: SimCard, new: bytes) -> None:
    """Send the image and reboot into it, as a host would, until the armed cut switches the card off."""
    try:
        host, _ = connect(card.url)
        host.send_image(new)
        host.reset()
        host.close()
    except (LinkLost, OSError):
        pass  # the cut came during the transfer
    end = time.monotonic() + 15
    while card.powered and time.monotonic() < end:  # the host comes back after the reboot (the trial needs it)
        try:
            host, _ = connect(card.url, 2.0)
        except (LinkLost, OSError):
            continue
        try:
            wait_until(lambda: not card.powered, 3.0, "the cut")
        except AssertionError:
            pass
        host.close()
    assert not card.powered, "the armed cut never struck"


def complete_update(card: SimCard, new: bytes) -> tuple[int, int]:
    """After power comes back: what the card boots, then finish the update as `nodectl flash` again would."""
    host, hello = connect(card.url)
    booted = hello.version
    s = wait_until(lambda: _no_trial(host), CONFIRM_S, "the trial to confirm or revert")
    resumed_at = None
    if not (s.versions[s.running] == N1 and s.states[s.running] == "confirmed"):
        res, resumed_at = host.image_op(wire.IMG_BEGIN, 0, new[:64])
        assert res == wire.IR_OK
        assert host.send_image(new) == wire.IR_OK
        host.reset()
    host.close()
    host, hello, s = settled(card, N1)
    assert (s.running, s.states, s.versions) == (1, ("confirmed", "confirmed"), (N, N1))
    host.close()
    return booted, resumed_at


@pytest.fixture(scope="module")
def ops_of_one_update(tmp_path_factory, n1_tree) -> tuple[int, int]:
    d = tmp_path_factory.mktemp("count")
    reg = d / "firmware"
    reg.mkdir()
    c = SimCard(channels=2, flash=d / "card.flash", firmware_dir=reg, speed=SPEED).start()
    try:
        return update_ops(c, image_of(reg, n1_tree))
    finally:
        c.stop()


# where the cut strikes, and what the card must boot after it: during the transfer (the record
# that marks the slot pending is its last write) the old image; once the new one is pending, the new
CUTS = [("flash_op", "first", N), ("flash_op", "middle", N), ("flash_op", "last of the transfer", N),
        ("image_byte", 10_000, N), ("reboot", None, N1), ("trial", None, N1)]


@pytest.mark.parametrize("at,where,boots", CUTS, ids=[f"{a}-{w}" for a, w, _ in CUTS])
def test_a_power_cut_during_an_update_leaves_a_card_that_boots_n_or_n1_and_finishes_it(
        card, registry, n1_tree, ops_of_one_update, at, where, boots):
    new = image_of(registry, n1_tree)
    transfer, _ = ops_of_one_update
    n = {"first": 1, "middle": transfer // 2, "last of the transfer": transfer}.get(where, where)
    connect(card.url)[0].close()  # the card is up: its boot's flash operations are behind it
    armed = control(card, op="cut", at=at, **({"n": n} if n is not None else {}))
    assert armed["cut"]["at"] == at
    run_update_until_cut(card, new)
    st = control(card, op="status")
    assert st["power"]["on"] is False and st["last_cut"]["at"] == at and st["cut"] is None
    if at == "flash_op":
        assert st["last_cut"]["op"] == armed["ops"] + n
    if at in ("reboot", "trial"):  # in the boot stage's record of the trial; in the trial's confirm
        assert st["last_cut"]["stage"] == ("boot" if at == "reboot" else "app") and st["last_cut"]["kind"]
    control(card, op="power", on=True)
    booted, resumed_at = complete_update(card, new)
    assert booted == boots
    if at == "image_byte":  # resumed at the last block the journal recorded, not from the start
        assert resumed_at == 10_000 // 4096 * 4096


def test_simctl_card_keeps_its_flash_file_and_switches_power_from_the_control_port(sim_factory, tmp_path, registry):
    from simulator.client import SimClient

    flash = tmp_path / "kept.flash"

    async def status(sim, **op):
        async with SimClient.parse(sim.control) as c:
            if op:
                await c.call(op.pop("op"), **op)
            return await c.call("status")

    sim = sim_factory("--channels", "2", "--flash", str(flash), "--firmware-dir", str(registry))
    wait_until(lambda: asyncio.run(status(sim))["power"]["stage"] == "app", 10, "the card's first boot")
    st = asyncio.run(status(sim))
    assert st["flash"]["file"] == str(flash) and st["slots"][0]["state"] == "confirmed"
    st = asyncio.run(status(sim, op="power", on=False))
    assert st["power"] == {"on": False, "stage": "off", "reset_cause": "power on"}
    boots = st["boots"]
    st = asyncio.run(status(sim, op="power", on=True))
    wait_until(lambda: asyncio.run(status(sim))["power"]["stage"] == "app", 10, "the card to boot again")
    st = asyncio.run(status(sim))
    assert st["boots"] == boots + 1 and st["power"]["reset_cause"] == "power on"
    assert flash.stat().st_size > 2 * 1024 * 1024  # the chip's bytes and which are programmed
