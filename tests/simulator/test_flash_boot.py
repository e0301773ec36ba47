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
from simulator import images
from simulator.card import SimCard
from simulator.control import ControlServer
from tests.simulator.image_host import ImageHost, LinkLost, connect

N = (1, 1, 0)  # firmware/card/board.py FW_VERSION: the factory image
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
    c = SimCard(channels=2, flash=tmp_path / "card.flash", firmware_dir=registry).start()
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


def wait_for(cond, timeout: float, what: str):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        got = cond()
        if got:
            return got
        time.sleep(0.02)
    raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")


def settled(card: SimCard, version: tuple[int, int, int], timeout: float = 20.0):
    """Connect and sync until the card runs ``version`` with no trial left; -> (host, HELLO, SLOTS)."""
    end = time.monotonic() + timeout
    while True:
        host, hello = connect(card.url, max(1.0, end - time.monotonic()))
        try:
            if hello.version == version:
                slots = wait_for(lambda h=host: _no_trial(h), CONFIRM_S, "the trial to confirm or revert")
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
