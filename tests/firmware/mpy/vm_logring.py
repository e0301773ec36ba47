# The card's log ring (card/logring.py) on the MicroPython VM, with the pinned micropython-logging
# the image packs (tests/firmware/mpy_vm.py loads it ahead of the VM's own frozen logging).
import logging

from card import logring
from mpytest import eq


def test_pinned_logging_is_the_one_used():
    eq(logging.__file__, "/lib/logging/__init__.py", "logging comes from the pinned package")


def test_keeps_the_last_events_in_order():
    log, ring = logring.attach("t_order", slots=4, text=16)
    for i in range(6):
        log.warning("event %d", i)
    eq(ring.count, 6, "events counted")
    eq(ring.entries(), [(k, logging.WARNING, "event " + str(k)) for k in range(2, 6)], "the last four, oldest first")


def test_keeps_what_the_level_lets_through():
    log, ring = logring.attach("t_level", level=logging.INFO, slots=4, text=16)
    log.debug("noise")
    log.info("link up")
    log.error("reset %s", "watchdog")
    eq(ring.entries(), [(0, logging.INFO, "link up"), (1, logging.ERROR, "reset watchdog")], "debug left out")


def test_cuts_long_messages_never_inside_a_character():
    log, ring = logring.attach("t_cut", slots=2, text=8)
    log.warning("abcdefghij")
    log.warning("abcdefg\u00e9")  # the 2-byte character would straddle the 8-byte cut
    eq(ring.entries(), [(0, logging.WARNING, "abcdefgh"), (1, logging.WARNING, "abcdefg")], "cut messages")


def test_slots_are_allocated_once():
    log, ring = logring.attach("t_alloc", slots=3, text=8)
    buf = ring._buf
    for i in range(50):
        log.warning("e%d", i)
    eq(ring._buf is buf and len(buf) == 24, True, "the same 3 x 8-byte buffer after 50 events")
    eq([e[2] for e in ring.entries()], ["e47", "e48", "e49"], "the last three")


def test_attaching_again_replaces_the_ring():
    log, old = logring.attach("t_again", slots=2, text=8)
    log2, ring = logring.attach("t_again", slots=2, text=8)
    log2.warning("new")
    eq((log2 is log, old.count, ring.entries()), (True, 0, [(0, logging.WARNING, "new")]), "only the new ring logs")
