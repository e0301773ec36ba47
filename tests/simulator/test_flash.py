"""The simulator's NOR flash model (simulator/flash.py): NOR's rules, power cuts at a chosen
operation with the partial effect a real cut can leave, counters, and a file that outlives the
simulated card's power cycle."""

from __future__ import annotations

import binascii
import hashlib

import pytest

from firmware.card import image_header
from firmware.card.bootmeta import CONFIRMED, RECEIVING, TRIAL
from firmware.card.flash import FlashError
from firmware.card.updater import OK, Updater
from simulator.flash import NorFlash, PowerCut

BOARD = b"BNLC-8FX"


def chip(path=None) -> NorFlash:
    return NorFlash(4 * 256, 256, 8, path)


def test_a_new_chip_is_erased_and_reads_back_what_was_written():
    f = chip()
    assert f.read(0, f.size) == b"\xff" * f.size
    f.write(256, b"abcdefgh" * 4)
    assert f.read(256, 32) == b"abcdefgh" * 4
    buf = bytearray(8)
    assert f.read(264, buf) is buf and buf == b"abcdefgh"
    assert (f.erases, f.writes, f.reads, f.ops) == (0, 1, 3, 1)


def test_a_write_to_a_location_not_erased_is_an_error_until_its_block_is_erased():
    f = chip()
    f.write(0, b"\xff" * 8)  # even writing 0xFF programs the location, as MCUboot's simulator holds
    with pytest.raises(FlashError, match="not erased"):
        f.write(0, b"\x00" * 8)
    f.erase(0)
    f.write(0, b"\x00" * 8)
    assert f.read(0, 8) == b"\x00" * 8


@pytest.mark.parametrize("addr,data", [(4, b"x" * 8), (0, b"x" * 7), (1020, b"x" * 8), (-8, b"x" * 8)])
def test_a_misaligned_or_out_of_range_write_is_refused(addr, data):
    f = chip()
    with pytest.raises(FlashError):
        f.write(addr, data)
    assert f.writes == 0 and f.read(0, f.size) == b"\xff" * f.size


def test_out_of_range_erase_and_read_are_refused():
    f = chip()
    with pytest.raises(FlashError, match="block 4 does not exist"):
        f.erase(4)
    with pytest.raises(FlashError, match="outside the chip"):
        f.read(1000, 100)


def test_a_power_cut_in_a_write_programs_only_a_prefix():
    f = chip()
    f.cut_at = 2
    f.write(0, b"A" * 8)
    with pytest.raises(PowerCut) as cut:
        f.write(256, b"B" * 32)
    assert (cut.value.op, cut.value.kind, cut.value.addr) == (2, "write", 256)
    assert f.read(256, 32) == b"B" * 16 + b"\xff" * 16
    assert f.cut_at is None
    with pytest.raises(FlashError):  # the torn part is programmed: erase first, as on NOR
        f.write(256, b"C" * 8)
    f.write(272, b"C" * 16)  # the part the cut never reached is still erased


def test_a_power_cut_in_an_erase_leaves_half_the_block_as_it_was():
    f = chip()
    f.write(0, bytes(range(256)))
    f.cut_at = f.ops + 1
    with pytest.raises(PowerCut) as cut:
        f.erase(0)
    assert cut.value.kind == "erase" and f.erases == 1
    assert f.read(0, 256) == b"\xff" * 128 + bytes(range(128, 256))
    f.write(0, b"z" * 128)  # the erased half takes a write
    with pytest.raises(FlashError):
        f.write(128, b"z" * 8)  # the other half still holds its old bytes


def test_the_flash_file_survives_a_power_cycle(tmp_path):
    path = tmp_path / "card0.flash"
    f = chip(path)
    f.write(512, b"persist!")
    f.cut_at = f.ops + 1
    with pytest.raises(PowerCut):
        f.write(520, b"12345678" * 2)
    f.close()
    g = chip(path)  # the card powered up again
    assert g.read(512, 24) == b"persist!12345678" + b"\xff" * 8
    with pytest.raises(FlashError):
        g.write(512, b"again!!!")  # what was written stays written across the cycle
    g.write(528, b"the rest")
    g.close()
    assert chip(path).read(528, 8) == b"the rest"


def test_a_flash_file_of_another_geometry_is_refused_with_what_to_do(tmp_path):
    path = tmp_path / "card0.flash"
    chip(path).close()
    with pytest.raises(ValueError, match="delete it"):
        NorFlash(8 * 256, 256, 8, path)


def test_copy_is_the_same_chip_with_fresh_counters():
    f = chip()
    f.write(0, b"12345678")
    g = f.copy()
    assert g.read(0, 8) == b"12345678" and g.ops == 0
    with pytest.raises(FlashError):
        g.write(0, b"12345678")
    g.erase(0)
    assert f.read(0, 8) == b"12345678"


def _image(minor: int, n: int) -> bytes:
    payload = bytes((i * 13 + minor) & 0xFF for i in range(n))
    return image_header.pack(BOARD, (1, minor, 0), minor, n, hashlib.sha256(payload).digest()) + payload


def _power_on(path) -> tuple[NorFlash, Updater, int]:
    f = NorFlash(64 * 256, 256, 8, path)
    u = Updater(f, BOARD)
    return f, u, u.boot()


def test_an_update_cut_by_power_resumes_from_the_card_flash_file(tmp_path):
    """The card's updater (run here under CPython, as the simulator runs it) on a file-backed
    flash: after a power cut mid-transfer and a new process, it resumes from what the file kept."""
    path = tmp_path / "card0.flash"
    old, new = _image(0, 3000), _image(1, 6000)
    f = NorFlash(64 * 256, 256, 8, path)
    base = Updater(f, BOARD).layout.slot_addr[0]
    for b in range(len(old) // 256 + 1):
        f.erase(base // 256 + b)
    f.write(base, old + b"\xff" * (-len(old) % 8))
    f.close()

    f, u, slot = _power_on(path)
    assert slot == 0 and u.begin(new[:64]) == OK
    f.cut_at = f.ops + 40  # well into the transfer
    off = u.next_offset
    with pytest.raises(PowerCut):
        while True:
            assert u.chunk(off, new[off:off + 128], binascii.crc32(new[off:off + 128])) == OK
            off += 128
    f.close()

    f, u, slot = _power_on(path)
    assert slot == 0 and u.state(1) == RECEIVING
    assert u.begin(new[:64]) == OK
    assert u.next_offset == off - off % 256 > 64  # the last whole block before the cut
    for off in range(u.next_offset, len(new), 128):
        assert u.chunk(off, new[off:off + 128], binascii.crc32(new[off:off + 128])) == OK
    assert u.finish() == OK
    f.close()
    f, u, slot = _power_on(path)
    assert (slot, u.state(1)) == (1, TRIAL) and u.confirm() == OK
    f.close()
    f, u, slot = _power_on(path)
    assert (slot, u.state(1), u.state(0)) == (1, CONFIRMED, CONFIRMED)
    assert f.read(u.layout.slot_addr[1], len(new)) == new and f.read(base, len(old)) == old
