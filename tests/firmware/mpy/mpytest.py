# Assertions for the checks that run on the MicroPython VM: a failure says what differed, in hex.
import binascii

from card import wire


def hx(b):
    return binascii.hexlify(bytes(b)).decode()


def eq(got, want, what):
    if got != want:
        if isinstance(got, (bytes, bytearray)) and isinstance(want, (bytes, bytearray)):
            raise AssertionError(what + ":\n  got  " + hx(got) + "\n  want " + hx(want))
        raise AssertionError(what + ": got " + repr(got) + ", want " + repr(want))


def frames(data):
    # the frames in bytes the card sent -> list of (result, type, channel, seq, body)
    return wire.Deframer().feed(bytes(data))
