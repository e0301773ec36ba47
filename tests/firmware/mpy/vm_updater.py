# The card's updater (card/updater.py) on the simulator's NOR flash model (sim_flash, the same
# file as simulator/flash.py): a whole update, a power cut at every single flash operation of
# one, trial boots that revert, and every refusal leaving the running slot as it was.
import binascii
import hashlib
import struct

from card import bootmeta as bm
from card import image_header as ih
from card import updater as up
from card import wire
from mpytest import eq, frames
from sim_flash import NorFlash, PowerCut

BOARD = b"BNLC-8FX"
BLOCK = 256
WRITE = 8
PAYLOAD = 4000  # image N+1: 64 + 4000 bytes, 16 blocks of 256 (the exhaustive test's size)
SLOT_BLOCKS = 16
CHUNK = 96  # not a divisor of the block: chunks cross block boundaries


def image(version, security, n=PAYLOAD, seed=1, board=BOARD, digest=None):
    payload = bytes((i * 7 + seed * 31 + (i >> 5)) & 0xFF for i in range(n))
    return ih.pack(board, version, security, n, digest or hashlib.sha256(payload).digest()) + payload


OLD = image((1, 0, 0), 1, 1500, seed=3)
NEW = image((1, 1, 0), 2)


def new_flash(block=BLOCK, write=WRITE, slot_blocks=SLOT_BLOCKS):
    return NorFlash((bm.FIRST_SLOT_BLOCK + 2 * slot_blocks) * block, block, write)


def factory(flash, img):
    # what the programmer does at the factory: image N in slot 0, no metadata
    base = bm.Layout(flash).slot_addr[0]
    bs, ws = flash.block_size, flash.write_size
    for b in range((len(img) + bs - 1) // bs):
        flash.erase(base // bs + b)
    n = (len(img) + ws - 1) // ws * ws
    flash.write(base, img + b"\xff" * (n - len(img)))


def power_on(flash, watchdog=False):
    # a boot: RAM is new, only the flash is kept
    u = up.Updater(flash, BOARD)
    return u, u.boot(watchdog)


def slot_bytes(u, slot, n):
    return u.flash.read(u.layout.slot_addr[slot], n)


def send(u, img, chunk=CHUNK, trace=None):
    # the host's side: begin, the chunks from where the card says, finish
    eq(u.begin(img[:ih.HEADER_LEN]), up.OK, "begin")
    off = u.next_offset
    while off < len(img):
        c = img[off:off + chunk]
        if trace is not None:
            trace[0] = off
        eq(u.chunk(off, c, binascii.crc32(c)), up.OK, "chunk at " + str(off))
        off += len(c)
    if trace is not None:
        trace[0] = len(img)
    return u.finish()


def card_n(block=BLOCK, write=WRITE, slot_blocks=SLOT_BLOCKS):
    f = new_flash(block, write, slot_blocks)
    factory(f, OLD)
    u, slot = power_on(f)
    eq(slot, 0, "a factory card boots slot 0")
    return f, u


def test_whole_update_trial_boot_and_confirm():
    f, u = card_n()
    eq(u.state(0), bm.CONFIRMED, "the factory image is confirmed on its first boot")
    eq(send(u, NEW), up.OK, "finish")
    eq(u.state(1), bm.PENDING, "the received slot is pending")
    u, slot = power_on(f)
    eq((slot, u.state(1)), (1, bm.TRIAL), "the next boot is a trial of slot 1")
    eq(u.confirm(), up.OK, "confirm")
    u, slot = power_on(f)
    eq((slot, u.state(1), u.meta.active), (1, bm.CONFIRMED, 1), "confirmed: slot 1 boots from now on")
    eq(slot_bytes(u, 1, len(NEW)), NEW, "slot 1 holds N+1")
    eq(slot_bytes(u, 0, len(OLD)), OLD, "slot 0 still holds N")
    eq(u.header(1)[ih.H_MINOR], 1, "N+1's version")
    eq(u.meta.security, 2, "the card's security counter is N+1's")
    eq(u.begin(OLD[:ih.HEADER_LEN]), up.E_DOWNGRADE, "now N (counter 1) is a downgrade")


def update(flash, trace, chunk):
    # one whole update from a booted card running N: transfer, pending, trial boot, confirm
    u, _ = power_on(flash)
    eq(send(u, NEW, chunk, trace), up.OK, "finish")
    trace[0] = -1
    u, slot = power_on(flash)
    eq(slot, 1, "trial boot")
    eq(u.confirm(), up.OK, "confirm")


def complete(flash, chunk):
    # after a reboot, what `nodectl flash` does again: look at the card, finish what is left
    u, slot = power_on(flash)
    if slot == 1 and u.state(1) == bm.CONFIRMED:
        return u
    if slot != 1:
        eq(send(u, NEW, chunk), up.OK, "resumed finish")
        u, slot = power_on(flash)
    eq((slot, u.state(1)), (1, bm.TRIAL), "trial after the resumed update")
    eq(u.confirm(), up.OK, "confirm after the resumed update")
    return u


def expected_resume(at, block):
    # where the card resumes after a cut while the chunk at image offset `at` was on its way
    done = at - at % block
    return done if done > ih.HEADER_LEN else ih.HEADER_LEN


def every_cut(block, write, chunk, slot_blocks):
    # cut power at each single erase and write of one whole update -> how many there were
    f0, _ = card_n(block, write, slot_blocks)
    probe = f0.copy()
    update(probe, [0], chunk)
    total = probe.ops
    kinds = {}
    for k in range(1, total + 1):
        f = f0.copy()
        f.cut_at = k
        trace = [None]  # image offset of the chunk in flight (len: finishing, -1: after finish)
        try:
            update(f, trace, chunk)
        except PowerCut as cut:
            eq(cut.op, k, "the cut came at the chosen operation")
            kinds[cut.kind] = kinds.get(cut.kind, 0) + 1
        else:
            raise AssertionError(f"no power cut at operation {k} of {total}")
        u, slot = power_on(f)
        if slot == 0:
            eq(slot_bytes(u, 0, len(OLD)), OLD, f"cut {k}: boots N")
        else:
            eq(slot, 1, f"cut {k}: boots a slot")
            eq(slot_bytes(u, 1, len(NEW)), NEW, f"cut {k}: boots N+1")
        if slot == 0 and trace[0] is not None and trace[0] >= 0 and u.state(1) == bm.RECEIVING:
            eq(u.begin(NEW[:ih.HEADER_LEN]), up.OK, f"cut {k}: resume")
            eq(u.next_offset, expected_resume(trace[0], block), f"cut {k} at image offset {trace[0]}: resumes at")
        u = complete(f, chunk)
        u, slot = power_on(f)
        eq((slot, u.state(1), u.state(0)), (1, bm.CONFIRMED, bm.CONFIRMED), f"cut {k}: updated")
        eq(slot_bytes(u, 1, len(NEW)), NEW, f"cut {k}: slot 1 holds N+1")
        eq(slot_bytes(u, 0, len(OLD)), OLD, f"cut {k}: slot 0 still holds N")
    eq(kinds.get("erase", 0) + kinds.get("write", 0), total, "every operation was cut once")
    print("power-cut points:", total, "erases:", kinds.get("erase"), "writes:", kinds.get("write"),
          "image bytes:", len(NEW), "flash:", f0.size, "block:", block, "write size:", write)
    return total


def test_power_cut_at_every_flash_operation_of_an_update():
    every_cut(BLOCK, WRITE, CHUNK, SLOT_BLOCKS)


def test_power_cut_at_every_flash_operation_with_32_byte_writes():
    # a flash that programs 32 bytes at a time: the record and the journal entries are padded
    every_cut(512, 32, 160, 8)


def test_trial_not_confirmed_reverts_after_its_boots():
    f, u = card_n()
    eq(send(u, NEW), up.OK, "finish")
    for i in range(up.TRIAL_BOOTS):
        u, slot = power_on(f)
        eq((slot, u.state(1)), (1, bm.TRIAL), f"trial boot {i + 1} runs N+1")
    u, slot = power_on(f)
    eq((slot, u.state(1), u.meta.last_reason, u.meta.reverted_slot), (0, bm.REVERTED, bm.REV_NOT_CONFIRMED, 1),
       f"not confirmed within {up.TRIAL_BOOTS} boots: back to N, and why")
    eq(u.confirm(), up.E_NOT_TRIAL, "N is not a trial to confirm")
    u, slot = power_on(f)
    eq((slot, u.state(1)), (0, bm.REVERTED), "it stays reverted")


def test_watchdog_reset_in_trial_reverts():
    f, u = card_n()
    eq(send(u, NEW), up.OK, "finish")
    u, slot = power_on(f)
    eq(slot, 1, "trial")
    u, slot = power_on(f, watchdog=True)
    eq((slot, u.state(1), u.meta.last_reason), (0, bm.REVERTED, bm.REV_WATCHDOG), "watchdog in trial: N")


def test_failed_self_test_reverts():
    f, u = card_n()
    eq(send(u, NEW), up.OK, "finish")
    u, slot = power_on(f)
    eq(u.reject(), up.OK, "the self-test failed")
    u, slot = power_on(f)
    eq((slot, u.state(1), u.meta.last_reason), (0, bm.REVERTED, bm.REV_SELF_TEST), "self-test failed: N")
    eq(send(u, NEW), up.OK, "the same image can be sent again after a revert")


def _refused_untouched(img, code, what):
    f, u = card_n()
    before = bytes(f.data)
    ops = f.ops
    eq(u.begin(img[:ih.HEADER_LEN]), code, what)
    eq(f.ops, ops, what + ": nothing written")
    eq(bytes(f.data), before, what + ": flash byte-identical")
    eq(u.chunk(ih.HEADER_LEN, img[64:160], binascii.crc32(img[64:160])), up.E_NOT_RECEIVING, what + ": no chunk")


def test_refusals_before_anything_is_written():
    _refused_untouched(image((1, 1, 0), 0), up.E_DOWNGRADE, "a lower security counter")
    _refused_untouched(image((1, 1, 0), 2, board=b"OTHER-01"), up.E_BOARD, "another board's image")
    _refused_untouched(b"\x00" * 64, up.E_HEADER, "not an image")
    _refused_untouched(image((1, 1, 0), 2, n=SLOT_BLOCKS * BLOCK), up.E_TOO_BIG, "bigger than a slot")


def test_bad_digest_is_refused_and_the_running_slot_untouched():
    f, u = card_n()
    running = slot_bytes(u, 0, SLOT_BLOCKS * BLOCK)
    bad = image((1, 1, 0), 2, digest=b"\x5a" * 32)
    eq(send(u, bad), up.E_DIGEST, "bad digest")
    eq(u.state(1), bm.RECEIVING, "not pending")
    eq(slot_bytes(u, 0, SLOT_BLOCKS * BLOCK), running, "running slot byte-identical")
    u, slot = power_on(f)
    eq((slot, u.state(1)), (0, bm.RECEIVING), "the next boot runs N")
    eq(u.begin(bad[:ih.HEADER_LEN]), up.OK, "begin again")
    eq(u.next_offset, ih.HEADER_LEN, "a bad digest starts the transfer over")


def test_bad_chunk_crc_is_refused_and_the_good_one_taken():
    f, u = card_n()
    running = slot_bytes(u, 0, SLOT_BLOCKS * BLOCK)
    eq(u.begin(NEW[:ih.HEADER_LEN]), up.OK, "begin")
    c = NEW[64:160]
    ops = f.ops
    eq(u.chunk(64, c, binascii.crc32(c) ^ 1), up.E_CHUNK_CRC, "a corrupted chunk")
    eq((u.next_offset, f.ops), (64, ops), "nothing written for it")
    eq(u.chunk(160, NEW[160:256], binascii.crc32(NEW[160:256])), up.E_OFFSET, "a chunk past a gap")
    eq(u.chunk(64, c, binascii.crc32(c)), up.OK, "the chunk sent again")
    eq(u.chunk(64, c, binascii.crc32(c)), up.OK, "a duplicate is acknowledged")
    eq(u.next_offset, 160, "and taken once")
    eq(u.chunk(160, NEW[160:165], binascii.crc32(NEW[160:165])), up.E_CHUNK_SIZE, "not a write unit")
    eq(slot_bytes(u, 0, SLOT_BLOCKS * BLOCK), running, "running slot byte-identical")


def test_a_cut_link_resumes_at_the_last_good_chunk():
    f, u = card_n()
    eq(u.begin(NEW[:ih.HEADER_LEN]), up.OK, "begin")
    for off in range(64, 64 + 5 * CHUNK, CHUNK):
        eq(u.chunk(off, NEW[off:off + CHUNK], binascii.crc32(NEW[off:off + CHUNK])), up.OK, "chunk")
    eq(u.begin(NEW[:ih.HEADER_LEN]), up.OK, "begin again after the link came back")
    eq(u.next_offset, 64 + 5 * CHUNK, "resumes at the last good chunk")
    u, _ = power_on(f)
    eq(u.begin(NEW[:ih.HEADER_LEN]), up.OK, "begin after a reboot")
    eq(u.next_offset, (64 + 5 * CHUNK) // BLOCK * BLOCK, "resumes at the last whole block")
    eq(send(u, NEW), up.OK, "and completes")


def test_no_update_while_a_trial_runs():
    f, u = card_n()
    eq(send(u, NEW), up.OK, "finish")
    u, _ = power_on(f)
    eq(u.begin(image((1, 2, 0), 2)[:64]), up.E_IN_TRIAL, "confirm or revert first")


def test_torn_metadata_write_keeps_the_older_copy():
    f, u = card_n()
    seq = u.meta.seq
    u.meta.states[1] = bm.PENDING
    f.cut_at = f.ops + 2  # the write after the erase of the other copy
    try:
        u.meta.save()
    except PowerCut:
        pass
    else:
        raise AssertionError("no cut")
    m = bm.Meta(f, bm.Layout(f))
    eq((m.load(), m.seq, m.states[1]), (True, seq, bm.EMPTY), "the older record wins")


def _card_with_updater(f=None, u=None):
    import machine
    from card.app import Card
    from fake_time import clock

    machine.clear()
    clock.set(0)
    for ch in range(2):
        machine.adc_values["LOOP" + str(ch)] = 30000
    if f is None:
        f, u = card_n()
    return f, u, Card(channels=2, updater=u), machine.uarts[0], clock


def _slots(card, uart, seq):
    uart.feed(_image_frame(seq, wire.IMG_STATUS))
    card.handle(card.link.poll(), 0)
    while card.image_rx.service():
        pass
    got = [r for r in frames(uart.take()) if r[1] == wire.T_SLOTS]
    eq([r[3] for r in got], [seq], "one SLOTS answer with the STATUS seq")
    return struct.unpack(wire.SLOTS, got[0][4])


def _prefix(img):
    # the first DIGEST_PREFIX bytes of the payload SHA-256 in the image's header (what SLOTS carries)
    return ih.unpack(img)[ih.H_SHA256][:wire.DIGEST_PREFIX]


def test_slots_report_what_runs_each_version_digest_and_the_last_revert():
    f, u, card, uart, _ = _card_with_updater()
    n, n1, none = _prefix(OLD), _prefix(NEW), bytes(wire.DIGEST_PREFIX)
    eq(_slots(card, uart, 5), (0, 0, 0, wire.REV_NONE, 0xFF, wire.SLOT_CONFIRMED, 1, 0, 0, 1, n,
                               wire.SLOT_EMPTY, 0, 0, 0, 0, none), "a factory card")
    eq(send(u, NEW), up.OK, "finish")
    u, slot = power_on(f)
    f, u, card, uart, _ = _card_with_updater(f, u)
    eq(_slots(card, uart, 6), (1, 0, up.TRIAL_BOOTS - 1, wire.REV_NONE, 0xFF, wire.SLOT_CONFIRMED, 1, 0, 0, 1, n,
                               wire.SLOT_TRIAL, 1, 1, 0, 2, n1), "N+1 on trial")
    u, slot = power_on(f, watchdog=True)
    f, u, card, uart, _ = _card_with_updater(f, u)
    eq(_slots(card, uart, 7), (0, 0, up.TRIAL_BOOTS - 1, wire.REV_WATCHDOG, 1, wire.SLOT_CONFIRMED, 1, 0, 0, 1, n,
                               wire.SLOT_REVERTED, 1, 1, 0, 2, n1), "reverted to N by a watchdog reset, and it says so")
    eq(n, hashlib.sha256(OLD[ih.HEADER_LEN:]).digest()[:8], "the payload's own digest, first 8 bytes")


def _image_frame(seq, op, offset=0, data=b"", crc=None):
    body = struct.pack(wire.IMAGE, op, offset, binascii.crc32(data) if crc is None else crc) + data
    return wire.encode(wire.T_IMAGE, wire.BROADCAST, seq, body)


def _acks(u):
    return [(r[3], struct.unpack(wire.IMAGE_ACK, r[4])) for r in frames(u.take()) if r[1] == wire.T_IMAGE_ACK]


def test_an_image_over_the_card_protocol_is_served_after_the_audio():
    f, upd, card, uart, clock = _card_with_updater()
    uart.feed(_image_frame(1, wire.IMG_BEGIN, data=NEW[:64]))
    card.handle(card.link.poll(), clock.ticks_ms())
    eq(card.image_rx.count, 1, "queued, not served while handling frames")
    while card.image_rx.service():
        pass
    eq(_acks(uart), [(1, (wire.IMG_BEGIN, wire.IR_OK, 64))], "BEGIN answered with where to send from")
    seq, off = 2, 64
    while off < len(NEW):
        # the host keeps several chunks in flight; the card queues them all before writing any
        window = []
        for _ in range(4):
            if off >= len(NEW):
                break
            data = NEW[off:off + wire.IMAGE_DATA_MAX]
            uart.feed(_image_frame(seq, wire.IMG_CHUNK, off, data))
            window.append((seq, off + len(data)))
            seq += 1
            off += len(data)
        ops = f.ops
        card.handle(card.link.poll(), clock.ticks_ms())
        eq(f.ops, ops, "no flash operation while the frames are handled")
        card.frame_tick(clock.ticks_ms())  # the audio goes on between them
        while card.image_rx.service():
            pass
        eq(_acks(uart), [(s, (wire.IMG_CHUNK, wire.IR_OK, o)) for s, o in window], "each chunk answered")
    uart.feed(_image_frame(seq, wire.IMG_CHUNK, 64, NEW[64:72], crc=1))
    uart.feed(_image_frame(seq + 1, wire.IMG_FINISH))
    uart.feed(_image_frame(seq + 2, 9))
    card.handle(card.link.poll(), clock.ticks_ms())
    passes = 0
    while True:
        reads = f.reads
        if not card.image_rx.service():
            break
        passes += 1
        if f.reads - reads > up.FINISH_STEP // up.READ_BUF + 1:
            raise AssertionError("one pass read " + str(f.reads - reads) + " times: the audio would wait")
    eq(passes >= 3 + len(NEW) // up.FINISH_STEP, True, "FINISH checks the digest over several passes")
    eq(_acks(uart), [(seq, (wire.IMG_CHUNK, wire.IR_CHUNK_CRC, len(NEW))), (seq + 1, (wire.IMG_FINISH, wire.IR_OK, len(NEW))),
                     (seq + 2, (9, wire.IR_UNKNOWN_OP, len(NEW)))], "a damaged chunk, FINISH, an unknown op")
    u, slot = power_on(f)
    eq((slot, u.state(1)), (1, bm.TRIAL), "the image sent over the protocol boots as a trial")
    eq(slot_bytes(u, 1, len(NEW)), NEW, "byte for byte")


def test_image_frames_past_the_queue_are_dropped_for_the_host_to_resend():
    f, upd, card, uart, clock = _card_with_updater()
    for s in range(20):
        uart.feed(_image_frame(s, wire.IMG_BEGIN, data=NEW[:64]))
    card.handle(card.link.poll(), clock.ticks_ms())
    eq((card.image_rx.count, card.image_rx.dropped), (16, 4), "sixteen queued, the rest dropped")
    while card.image_rx.service():
        pass
    eq([a[0] for a in _acks(uart)], list(range(16)), "the queued ones answered in order")


def test_a_card_without_an_updater_says_so():
    import machine
    from card.app import Card

    machine.clear()
    card = Card(channels=1)
    uart = machine.uarts[0]
    uart.feed(_image_frame(3, wire.IMG_BEGIN, data=NEW[:64]))
    uart.feed(_image_frame(4, wire.IMG_STATUS))
    card.handle(card.link.poll(), 0)
    while card.image_rx.service():
        pass
    eq(_acks(uart), [(3, (wire.IMG_BEGIN, wire.IR_NO_IMAGE, 0)), (4, (wire.IMG_STATUS, wire.IR_NO_IMAGE, 0))],
       "every image op answered NO_IMAGE")
