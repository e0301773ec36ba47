# The wire format between the line card and the host: the ONE definition, used by the
# card firmware (MicroPython) and imported by the host driver (CPython).
#
# A frame on the wire is COBS(header + body + CRC-32) followed by a 0x00 delimiter.
# header = type (u8), channel (u8), seq (u16 little-endian). See docs/linecard-protocol.md.
try:
    from micropython import const
except ImportError:  # CPython (the host)
    def const(x):
        return x

import binascii
import struct

PROTO_VERSION = const(1)
FRAME_SAMPLES = const(160)  # 20 ms of 8 kHz G.711
FRAME_MS = const(20)
MAX_CHANNELS = const(8)
NO_SEQ = const(0xFFFF)
MAX_COPIES = const(6)
BROADCAST = const(0xFF)  # channel field for card-wide frames

# Frame types. Card -> host: < 0x80; host -> card: >= 0x80; AUDIO goes both ways.
T_HELLO = const(0x01)
T_ACK = const(0x02)  # both ways
T_EVENT = const(0x03)
T_STATUS = const(0x04)
T_STATS = const(0x05)
T_IMAGE_ACK = const(0x06)
T_SLOTS = const(0x07)
T_AUDIO = const(0x10)  # both ways
T_SYNC = const(0x80)
T_CMD = const(0x81)
T_IMAGE = const(0x82)  # a firmware image in chunks (docs/firmware-update.md)

HEADER = "<BBH"
HEADER_LEN = const(4)
CRC_LEN = const(4)
# CRC-32 of a payload followed by its own CRC (little-endian): the same for every valid frame
CRC_RESIDUE = 0x2144DF1C

# Body layouts, by type. AUDIO has two: card->host carries the echo reference first.
HELLO = "<BBBBBBHH8s"  # proto, fw major, minor, patch, channels, law, caps, boot id, board id
ACK = "<B"  # status; header seq = the seq acknowledged
EVENT = "<BhI"  # code, value, card ticks (ms); header channel = line
STATUS = "<IBBB"  # uptime ms, off-hook bits, ringing bits, audio copies
STATS = "<8I"  # 8 counters (names below), header channel = line or BROADCAST for the link
CMD = "<Bhh"  # op, arg1, arg2 (+ digits for PULSE_DIAL)
AUDIO_UP = "<H"  # echo reference: the host seq this card played in the same 20 ms, or NO_SEQ
IMAGE = "<BII"  # image op, image offset, CRC-32 of the data (+ up to IMAGE_DATA_MAX data bytes)
IMAGE_ACK = "<BBI"  # the op answered, its result (IR_*), the image offset the card expects next
SLOTS = "<bBBBBBBBBI8sBBBBI8s"  # running slot (-1: none), active slot, trial boots left, last revert
#   reason (REV_*), reverted slot (0xFF: none), then for slot 0 and slot 1: state (SLOT_*), version
#   major, minor, patch, security counter, the first DIGEST_PREFIX bytes of the payload's SHA-256
#   from the slot's header (all 0 without a readable header): the host tells one build from another

BODY_LEN = {
    T_HELLO: struct.calcsize(HELLO),
    T_ACK: struct.calcsize(ACK),
    T_EVENT: struct.calcsize(EVENT),
    T_STATUS: struct.calcsize(STATUS),
    T_STATS: struct.calcsize(STATS),
    T_IMAGE_ACK: struct.calcsize(IMAGE_ACK),
    T_SLOTS: struct.calcsize(SLOTS),
    T_SYNC: 0,
}
CMD_LEN = struct.calcsize(CMD)
MAX_DIGITS = const(32)
IMAGE_LEN = const(9)  # an IMAGE body without data
DIGEST_PREFIX = const(8)  # bytes of a slot's payload SHA-256 in SLOTS
IMAGE_DATA_MAX = const(152)  # data in one IMAGE frame: fits MAX_PAYLOAD, a multiple of 8 (flash writes)
AUDIO_UP_LEN = const(162)
AUDIO_DOWN_LEN = const(160)
MAX_PAYLOAD = const(HEADER_LEN + AUDIO_UP_LEN + CRC_LEN)
# On the wire a frame of under 254 bytes grows by one COBS code byte and the 0x00 delimiter.
AUDIO_UP_WIRE = const(HEADER_LEN + AUDIO_UP_LEN + CRC_LEN + 2)  # 172: card -> host audio frame
AUDIO_DOWN_WIRE = const(HEADER_LEN + AUDIO_DOWN_LEN + CRC_LEN + 2)  # 170: host -> card audio frame
MAX_WIRE = const(MAX_PAYLOAD + 1)  # longest valid frame between delimiters (COBS code byte included)
AUDIO_HEADROOM_PCT = const(80)  # of the link's byte rate audio may use; the rest: commands, events, STATUS


def copies_fit(lines, baud):
    # copies of each audio frame (1..MAX_COPIES) the link carries for `lines` streaming lines at
    # `baud` (8N1: 10 bits a byte), 50 frames a second each, counting the larger audio frame.
    # The host asks for this many; the card never sends more up than fits for the lines it streams
    per_copy = (lines if lines > 1 else 1) * (1000 // FRAME_MS) * max(AUDIO_UP_WIRE, AUDIO_DOWN_WIRE)
    n = AUDIO_HEADROOM_PCT * baud // (1000 * per_copy)
    return 1 if n < 1 else (MAX_COPIES if n > MAX_COPIES else n)

# Reliable frames (CMD host -> card, EVENT card -> host): the same rules at both ends.
RETRY_MS = const(80)  # resend an unacknowledged frame after this long
MAX_TRIES = const(12)  # ~1 s: after the last try the sender gives up and treats the link as down
DEDUPE_WINDOW = const(64)  # sequence numbers a receiver remembers to drop repeated frames
MAX_PENDING = const(32)  # unacknowledged frames a sender keeps in flight (< DEDUPE_WINDOW)
IMAGE_QUEUE = const(16)  # IMAGE frames the card queues: the most the host keeps unanswered

# Capabilities (HELLO caps bits)
CAP_PULSE_DIAL = const(0x01)
CAP_POLARITY = const(0x02)
CAP_LOOP_CURRENT = const(0x04)
CAP_CALLER_ID = const(0x08)
CAP_GAIN = const(0x10)
CAP_REDUNDANCY = const(0x20)

LAW_ALAW = const(0)
LAW_ULAW = const(1)

# ACK status
ST_OK = const(0)
ST_BAD_CHANNEL = const(1)
ST_BAD_ARGS = const(2)
ST_BUSY = const(3)
ST_UNKNOWN_OP = const(4)

# Command ops (CMD body op)
OP_HOOK = const(1)  # arg1: 1 off-hook (answer/seize), 0 on-hook (hang up)
OP_FLASH = const(2)  # arg1: break in ms (hook flash)
OP_PULSE_DIAL = const(3)  # digits follow the body; arg1: make ms, arg2: break ms (0 = 40/60)
OP_GAIN = const(4)  # arg1: receive gain, arg2: transmit gain, in 0.1 dB
OP_LED = const(5)  # arg1: one of the LED_* states below
OP_GET_STATS = const(6)  # replies with STATS frames
OP_REDUNDANCY = const(7)  # arg1: copies of each card->host audio frame (1..MAX_COPIES)
STATUS_MS = const(250)  # the card sends STATUS this often (its heartbeat and line states)

OP_RESET = const(8)  # reboot the card; arg1 RESET_IF_IDLE: only if no line is off-hook or ringing
RESET_IF_IDLE = const(1)  # else ACK ST_BUSY and no reset: a call that rang in after the host's check stays up
OP_CID_WINDOW = const(9)  # arg1: ms to stream on-hook audio for caller ID (0 closes)

# Image ops (IMAGE body op); each is answered by an IMAGE_ACK with the same seq
IMG_BEGIN = const(1)  # data: the image's 64-byte header; the card starts or resumes receiving it
IMG_CHUNK = const(2)  # offset, CRC-32 and data: the image's bytes at that offset
IMG_FINISH = const(3)  # every byte sent: the card checks the image and marks it pending
IMG_STATUS = const(4)  # the card answers with SLOTS instead (same seq)

# Slot states (SLOTS state), kept by the card's updater (firmware/card/bootmeta.py)
SLOT_EMPTY = const(0)
SLOT_RECEIVING = const(1)  # an image is arriving; nothing bootable
SLOT_PENDING = const(2)  # received and checked; the next boot tries it
SLOT_TRIAL = const(3)  # booted, not yet confirmed by its self-test
SLOT_CONFIRMED = const(4)  # the active image, or the previous one kept to fall back on
SLOT_REVERTED = const(5)  # tried and given up (the last revert reason says why)
SLOT_NAMES = ("empty", "receiving", "pending", "trial", "confirmed", "reverted")

# Revert reasons (SLOTS last revert reason)
REV_NONE = const(0)
REV_NOT_CONFIRMED = const(1)  # not confirmed within the trial's boots
REV_WATCHDOG = const(2)  # the trial's last boot ended in a watchdog reset
REV_SELF_TEST = const(3)  # the new firmware's self-test failed
REV_BAD_IMAGE = const(4)  # the slot no longer held a valid image when it was to boot
REV_NAMES = ("none", "not confirmed", "watchdog reset", "self-test failed", "bad image")

# Image results (IMAGE_ACK result): the card's updater's codes (firmware/card/updater.py)
IR_OK = const(0)
IR_HEADER = const(1)
IR_BOARD = const(2)
IR_DOWNGRADE = const(3)
IR_TOO_BIG = const(4)
IR_CHUNK_CRC = const(5)
IR_OFFSET = const(6)
IR_CHUNK_SIZE = const(7)
IR_DIGEST = const(8)
IR_NOT_RECEIVING = const(9)
IR_INCOMPLETE = const(10)
IR_IN_TRIAL = const(11)
IR_FLASH = const(12)
IR_NOT_TRIAL = const(13)
IR_NO_IMAGE = const(14)
IR_UNKNOWN_OP = const(15)
IR_NAMES = ("ok", "not a firmware image header", "image for another board", "security counter lower than the card's",
            "image bigger than a slot", "chunk CRC mismatch", "unexpected offset", "bad chunk size",
            "payload digest mismatch", "no transfer begun", "transfer incomplete", "a trial is running",
            "flash error", "not running a trial", "no valid image on the card", "unknown image op")

# LED states (OP_LED arg1). The card keeps the state it was given until told otherwise; AUTO (the
# state after boot) lets the card show the line: on while off-hook, blinking while it rings.
LED_OFF = const(0)
LED_ON = const(1)
LED_BLINK = const(2)  # 250 ms on, 250 ms off
LED_AUTO = const(3)
LED_BLINK_MS = const(250)

# Event codes (EVENT body code)
EV_RING_ON = const(1)  # value: ring count in this call
EV_RING_OFF = const(2)  # value: how long the ring burst lasted, ms
EV_POLARITY = const(3)  # value: +1 / -1
EV_LOOP_DROP = const(4)  # value: how long the loop current was gone, ms (far end hung up)
EV_HOOK = const(5)  # value: 1 off-hook, 0 on-hook (the relay state, after a HOOK command)
EV_DIAL_DONE = const(6)  # value: digits pulsed
EV_FLASH_DONE = const(7)  # value: break ms
EV_CID_WINDOW = const(8)  # value: 1 opened, 0 closed
EV_LINE_STATE = const(9)  # value: bit0 off-hook, bit1 ringing, bit2 reversed polarity (after SYNC)
EV_RING_STOP = const(10)  # value: ms since the last ring: the caller gave up before answer

# STATS counters: the index of each in the STATS body, and its name (the same order).
LC_RX_FRAMES = const(0)
LC_CRC_ERRORS = const(1)
LC_COBS_ERRORS = const(2)
LC_TRUNCATED = const(3)
LC_OVERSIZED = const(4)
LC_UNKNOWN_TYPE = const(5)
LC_DUPLICATES = const(6)
LC_RETRIES = const(7)
LINK_COUNTERS = ("rx_frames", "crc_errors", "cobs_errors", "truncated", "oversized", "unknown_type",
                 "duplicates", "retries")
CC_AUDIO_UP = const(0)
CC_AUDIO_DOWN = const(1)
CC_UNDERRUNS = const(2)
CC_OVERRUNS = const(3)
CC_LOST = const(4)
CC_LATE = const(5)
CC_EVENTS_DROPPED = const(6)
CC_LONGEST_GAP = const(7)
CHANNEL_COUNTERS = ("audio_up", "audio_down", "underruns", "overruns", "lost", "late", "events_dropped",
                    "longest_gap")
N_COUNTERS = const(8)  # both tables; STATS = "<8I"

# Deframer results
OK = const(0)
E_CRC = const(1)
E_COBS = const(2)
E_TRUNCATED = const(3)
E_OVERSIZED = const(4)
E_UNKNOWN = const(5)
ERROR_NAMES = ("ok", "bad CRC", "bad COBS encoding", "truncated frame", "oversized frame", "unknown frame type")


def cobs_encode(data):
    out = bytearray()
    for block in bytes(data).split(b"\x00"):
        while len(block) >= 254:
            out.append(255)
            out.extend(block[:254])
            block = block[254:]
        out.append(len(block) + 1)
        out.extend(block)
    return out


def cobs_decode(data):
    # raises ValueError on a malformed encoding
    out = bytearray()
    i = 0
    n = len(data)
    while i < n:
        code = data[i]
        if code == 0:
            raise ValueError("zero byte inside a frame")
        j = i + code
        if j > n:
            raise ValueError("COBS block runs past the end")
        out.extend(data[i + 1:j])
        i = j
        if code < 255 and i < n:
            out.append(0)
    return out


def encode(ftype, channel, seq, body=b""):
    payload = bytearray(struct.pack(HEADER, ftype, channel, seq & 0xFFFF))
    payload.extend(body)
    payload.extend(struct.pack("<I", binascii.crc32(payload) & 0xFFFFFFFF))
    out = cobs_encode(payload)
    out.append(0)
    return out


# -- the card's allocation-free path -----------------------------------------------------------
# The card sends and receives 400 audio frames a second; these build and take apart a frame in
# buffers the caller allocated once. Every frame of this protocol is shorter than 254 bytes
# (MAX_PAYLOAD), so COBS can be done in place: one code byte in front, each 0x00 replaced by the
# distance to the next one.
_ZERO = b"\x00"
_CRC_FMT = "<I"
BODY_AT = const(1 + HEADER_LEN)  # where encode_into wants the body: after the COBS code and header


def encode_into(out, ftype, channel, seq, n, crc_view=None):
    # out[BODY_AT:BODY_AT + n] holds the body; this writes the header and the CRC, stuffs the frame
    # in place and ends it with 0x00. -> its length: send out[:length]. crc_view: a memoryview of
    # out[1:BODY_AT + n] made once by a caller that sends frames of one size (no allocation then).
    end = BODY_AT + n
    if end + CRC_LEN + 1 > len(out) or HEADER_LEN + n + CRC_LEN >= 254:
        raise ValueError("frame does not fit")
    struct.pack_into(HEADER, out, 1, ftype, channel, seq & 0xFFFF)
    mv = crc_view if crc_view is not None else memoryview(out)[1:end]
    # the CRC result (an int above 2**30 is a long int on a 32-bit port) is the one allocation left
    struct.pack_into(_CRC_FMT, out, end, binascii.crc32(mv))  # unsigned on both
    end += CRC_LEN
    last = 0
    i = out.find(_ZERO, 1, end)
    while i >= 0:
        out[last] = i - last
        last = i
        i = out.find(_ZERO, i + 1, end)
    out[last] = end - last
    out[end] = 0
    return end + 1


def unstuff(buf, n):
    # COBS-decodes in place the n bytes (delimiter excluded) at buf[0:n]; the payload is then
    # buf[1:n]. -> n - 1, or -1 if malformed. Only for frames under 254 bytes (all of this
    # protocol's): there a code of 255 cannot occur. No allocation.
    if n == 0:
        return -1
    pos = buf[0]
    while pos < n:
        c = buf[pos]
        if c == 0 or c == 255:
            return -1
        buf[pos] = 0
        pos += c
    if pos != n:
        return -1
    return n - 1


def body_ok(ftype, n):
    # the body length a known type must have (CMD may carry digits; AUDIO depends on direction)
    if ftype == T_AUDIO:
        return n == AUDIO_UP_LEN or n == AUDIO_DOWN_LEN
    if ftype == T_CMD:
        return CMD_LEN <= n <= CMD_LEN + MAX_DIGITS
    if ftype == T_IMAGE:
        return IMAGE_LEN <= n <= IMAGE_LEN + IMAGE_DATA_MAX
    want = BODY_LEN.get(ftype)
    if want is None:
        return None
    return n == want


def parse(raw):
    # one delimited frame (without its 0x00) -> (OK, type, channel, seq, body) or (error, ...)
    if len(raw) > MAX_WIRE:
        return (E_OVERSIZED, 0, 0, 0, b"")
    try:
        payload = cobs_decode(raw)
    except ValueError:
        return (E_COBS, 0, 0, 0, b"")
    if len(payload) < HEADER_LEN + CRC_LEN:
        return (E_TRUNCATED, 0, 0, 0, b"")
    crc = struct.unpack("<I", payload[-CRC_LEN:])[0]
    if binascii.crc32(payload[:-CRC_LEN]) & 0xFFFFFFFF != crc:
        return (E_CRC, 0, 0, 0, b"")
    ftype, channel, seq = struct.unpack(HEADER, payload[:HEADER_LEN])
    body = bytes(payload[HEADER_LEN:-CRC_LEN])
    ok = body_ok(ftype, len(body))
    if ok is None:
        return (E_UNKNOWN, ftype, channel, seq, body)
    if not ok:
        return (E_TRUNCATED, ftype, channel, seq, body)
    return (OK, ftype, channel, seq, body)


class Deframer:
    # Splits a byte stream at 0x00 delimiters. After garbage or an oversized run it resyncs at the
    # next delimiter, so one damaged frame never costs the next one.
    def __init__(self):
        self.buf = bytearray()
        self.discarding = False

    def feed(self, data):
        out = []
        start = 0
        n = len(data)
        while start < n:
            z = data.find(b"\x00", start)
            if z < 0:
                if not self.discarding:
                    self.buf.extend(data[start:])
                    if len(self.buf) > MAX_WIRE:
                        self.buf = bytearray()
                        self.discarding = True
                        out.append((E_OVERSIZED, 0, 0, 0, b""))
                break
            if self.discarding:
                self.discarding = False
            else:
                self.buf.extend(data[start:z])
                if self.buf:
                    out.append(parse(self.buf))
            self.buf = bytearray()
            start = z + 1
        return out


def seq_after(a, b):
    # True when 16-bit sequence number a comes after b (RFC 1982 arithmetic)
    return a != b and ((a - b) & 0xFFFF) < 0x8000


def seq_diff(a, b):
    # a - b for 16-bit sequence numbers, in -32768..32767
    d = (a - b) & 0xFFFF
    return d - 0x10000 if d >= 0x8000 else d
