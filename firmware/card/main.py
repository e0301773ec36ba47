# Entry point on the card (the image's /main.py imports this and calls main()).
#
# Two stages. start() is the boot stage: it asks the updater which slot runs (trial boot, revert,
# docs/firmware-update.md). app() is the application of the slot that runs: the card, which
# reports that slot's version in HELLO and confirms a trial once its self-test passes. On a card
# the boot stage stays with the part of the flash an update never replaces, and the slot's
# modules are what the port then imports; the simulator does the same with each slot's code.
from . import board
from .app import Card
from .updater import Updater


def start(hw):
    # -> the updater, after boot() chose the slot to run (updater.running; -1: no valid image)
    up = Updater(hw.flash(), board.BOARD_ID)
    up.boot(hw.watchdog_reset())
    return up


def app(hw, up, **card_args):
    # -> the running slot's application (call its run())
    return Card(hw, updater=up, **card_args)


def main():
    hw = board.Hardware()
    app(hw, start(hw)).run()
