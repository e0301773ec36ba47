# The firmware image header: the ONE definition, read by the card's updater (MicroPython) and
# written by the host's image tools (CPython). docs/firmware-update.md describes the format.
#
# An image file is  HEADER (64 bytes) + payload + signature trailer.
#   header   magic, format, header size, board id, version, security counter, payload length,
#            SHA-256 of the payload, flags (all little-endian, layout below)
#   payload  the modules the card runs (see the image tools for their layout)
#   trailer  SIG_MAGIC (u16), signature length (u16), an Ed25519 signature over header + payload
# The card stores and checks header + payload (digest, board, security counter); the host checks
# the signature before it sends anything (an MCU without a crypto engine cannot afford Ed25519).
try:
    from micropython import const
except ImportError:  # CPython (the host)
    def const(x):
        return x

import struct

MAGIC = const(0x31494E42)  # b"BNI1" read as a little-endian u32
FORMAT = const(1)
HEADER = "<IHH8sBBHII32sI"  # magic, format, header size, board id, major, minor, patch,
#                              security counter, payload length, payload SHA-256, flags
HEADER_LEN = const(64)
SIG_MAGIC = const(0x5349)  # b"IS" read as a little-endian u16
SIG_TRAILER = "<HH"  # magic, signature length (then the signature)
SIG_TRAILER_LEN = const(4)
ED25519_SIG_LEN = const(64)

# header fields by index in struct.unpack(HEADER, ...)
H_MAGIC = const(0)
H_FORMAT = const(1)
H_SIZE = const(2)
H_BOARD = const(3)
H_MAJOR = const(4)
H_MINOR = const(5)
H_PATCH = const(6)
H_SECURITY = const(7)
H_LENGTH = const(8)
H_SHA256 = const(9)
H_FLAGS = const(10)


def pack(board_id, version, security_counter, payload_len, sha256, flags=0):
    return struct.pack(HEADER, MAGIC, FORMAT, HEADER_LEN, board_id, version[0], version[1],
                       version[2], security_counter, payload_len, sha256, flags)


def unpack(buf):
    # -> the header's fields (H_* indices), or raises ValueError saying what is wrong
    if len(buf) < HEADER_LEN:
        raise ValueError("image header truncated")
    h = struct.unpack(HEADER, bytes(buf[:HEADER_LEN]))
    if h[H_MAGIC] != MAGIC:
        raise ValueError("not a branchnode firmware image (bad magic)")
    if h[H_FORMAT] != FORMAT:
        raise ValueError("image format %d is not supported (this reads format %d)" % (h[H_FORMAT], FORMAT))
    if h[H_SIZE] != HEADER_LEN:
        raise ValueError("image header size %d, expected %d" % (h[H_SIZE], HEADER_LEN))
    return h
