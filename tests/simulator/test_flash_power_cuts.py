"""A power cut at EVERY flash operation of one whole update of the simulated card, as MCUboot's
simulator does: its W25Q16JV chip (the NOR model behind the SPI bus model), the card's own SPI
driver and updater, the factory image N and an image N+1 built from the sources with FW_VERSION
bumped. The update is the card's from running N to N+1 confirmed: BEGIN, every 152-byte chunk
(as IMAGE frames carry them), FINISH, the reboot's boot() that makes it a trial, the confirm.

For each operation k of that update: the same update from the same start, power cut at k (the
operation does half its work), power on, boot: the card must run N or N+1, byte for byte, with
slot 0 still holding N; then the update is completed as the host would (BEGIN again, which
resumes, the rest of the chunks, FINISH, reboot, confirm) and both slots are checked.
"""

from __future__ import annotations

import binascii
import re
import shutil

import pytest

from firmware.card import bootmeta, wire
from firmware.card.bootmeta import Layout
from firmware.card.spi_nor import SpiNor
from firmware.card.updater import OK, Updater
from simulator import images, spi_nor
from simulator.flash import NorFlash, PowerCut

BOARD = b"BNLC-8FX"
CHUNK = wire.IMAGE_DATA_MAX


@pytest.fixture(scope="module")
def imgs(tmp_path_factory) -> tuple[bytes, bytes]:
    src = tmp_path_factory.mktemp("n1") / "card"
    shutil.copytree(images.OWN_TREE, src, ignore=shutil.ignore_patterns("__pycache__"))
    board = src / "board.py"
    board.write_text(re.sub(r"^FW_VERSION = .*$", "FW_VERSION = (1, 2, 0)", board.read_text(), flags=re.M))
    return images.image(images.OWN_TREE).signed_part, images.image(src).signed_part


@pytest.fixture(scope="module")
def running_n(imgs) -> NorFlash:
    """A card as it leaves the factory, after its first boot (N confirmed); counters at zero."""
    nor = spi_nor.w25q16jv()
    images.program_factory(nor, images.image(images.OWN_TREE))
    assert card(nor).boot(False) == 0
    nor.erases = nor.writes = nor.reads = 0
    return nor


def card(nor: NorFlash) -> Updater:
    """The card's updater after a power-up: a fresh SPI bus state, driver and metadata read."""
    bus = spi_nor.SimSpiNor(nor)
    return Updater(SpiNor(bus, bus, spi_nor.SIZE, spi_nor.BLOCK, spi_nor.PAGE), BOARD)


def transfer(up: Updater, new: bytes) -> int:
    """BEGIN, the chunks from where the card says, FINISH; -> the offset BEGIN resumed at."""
    assert up.begin(new[:64]) == OK
    start = at = up.next_offset
    while at < len(new):
        d = new[at:at + CHUNK]
        assert up.chunk(at, d, binascii.crc32(d)) == OK
        at += len(d)
    assert up.finish() == OK
    return start


def update(nor: NorFlash, new: bytes) -> int:
    """The whole update from a card running N; -> where the transfer resumed."""
    up = card(nor)
    up.boot(False)
    start = transfer(up, new)
    up = card(nor)  # the reboot into the trial
    assert up.boot(False) == 1
    assert up.confirm() == OK
    return start


def slot_bytes(nor: NorFlash, slot: int, n: int) -> bytes:
    at = Layout(nor).slot_addr[slot]
    return bytes(nor.data[at:at + n])


def test_a_power_cut_at_every_flash_operation_of_an_update_leaves_n_or_n1_and_the_update_completes(
        running_n, imgs):
    old, new = imgs
    ref = running_n.copy()
    update(ref, new)
    total = ref.ops
    assert total > 300  # the real image on the real geometry: ~390 erases and page programs
    outcomes = {"N": 0, "N+1": 0}
    resumed = 0
    for k in range(1, total + 1):
        nor = running_n.copy()
        nor.cut_at = k
        with pytest.raises(PowerCut) as cut:
            update(nor, new)
        assert cut.value.op == k
        up = card(nor)  # power on
        slot = up.boot(False)
        runs = slot_bytes(nor, slot, len(new if slot == 1 else old))
        assert slot in (0, 1) and runs == (new if slot == 1 else old), f"cut at operation {k}: boots neither"
        assert slot_bytes(nor, 0, len(old)) == old, f"cut at operation {k}: slot 0 was written"
        outcomes["N+1" if slot == 1 else "N"] += 1
        # `nodectl flash` again: from wherever the cut left the card
        if up.state(1) == bootmeta.TRIAL:
            assert up.confirm() == OK
        elif up.state(1) != bootmeta.CONFIRMED:
            if transfer(up, new) > 64:
                resumed += 1
            up = card(nor)
            assert up.boot(False) == 1 and up.confirm() == OK
        up = card(nor)
        assert up.boot(False) == 1
        assert (up.state(0), up.state(1), up.meta.active) == (bootmeta.CONFIRMED, bootmeta.CONFIRMED, 1)
        assert slot_bytes(nor, 1, len(new)) == new and slot_bytes(nor, 0, len(old)) == old
    print(f"\npower cut at each of the {total} flash operations of one update ({ref.erases} erases, "
          f"{ref.writes} page programs): booted N after {outcomes['N']}, N+1 after {outcomes['N+1']}; "
          f"{resumed} transfers resumed past the header")
    assert outcomes["N"] + outcomes["N+1"] == total
    assert outcomes["N"] and outcomes["N+1"]
    assert resumed > 0  # cuts inside the transfer resume from the journal, not from the start
