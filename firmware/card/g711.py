# G.711 octet <-> linear for the card's gain tables (the codec chip does the companding of the
# audio itself; the card only remaps octets when a gain other than 0 dB is set).


def ulaw_to_linear(u):
    u = ~u & 0xFF
    t = (((u & 0x0F) << 3) + 0x84) << ((u & 0x70) >> 4)
    return (0x84 - t) if (u & 0x80) else (t - 0x84)


def linear_to_ulaw(x):
    if x < 0:
        x = 0x84 - x
        mask = 0x7F
    else:
        x = x + 0x84
        mask = 0xFF
    if x > 0x7FFF:
        x = 0x7FFF
    seg = 0
    v = x >> 8
    while v:
        seg += 1
        v >>= 1
    if seg > 7:
        seg = 7
    return ((seg << 4) | ((x >> (seg + 3)) & 0x0F)) ^ mask


def alaw_to_linear(a):
    a ^= 0x55
    t = (a & 0x0F) << 4
    seg = (a & 0x70) >> 4
    if seg == 0:
        t += 8
    elif seg == 1:
        t += 0x108
    else:
        t = (t + 0x108) << (seg - 1)
    return t if (a & 0x80) else -t


def linear_to_alaw(x):
    if x >= 0:
        mask = 0xD5
    else:
        mask = 0x55
        x = -x - 1
    if x > 0x7FFF:
        x = 0x7FFF
    seg = 0
    v = x >> 8
    while v and seg < 7:
        seg += 1
        v >>= 1
    if seg < 2:
        y = (seg << 4) | ((x >> 4) & 0x0F)
    else:
        y = (seg << 4) | ((x >> (seg + 3)) & 0x0F)
    return y ^ mask


def gain_table(law_ulaw, tenth_db):
    # 256-octet map applying a gain in 0.1 dB, or None for 0 dB
    if tenth_db == 0:
        return None
    g = 10 ** (tenth_db / 200.0)
    dec = ulaw_to_linear if law_ulaw else alaw_to_linear
    enc = linear_to_ulaw if law_ulaw else linear_to_alaw
    t = bytearray(256)
    for i in range(256):
        v = int(dec(i) * g)
        t[i] = enc(max(-32768, min(32767, v)))
    return t


def apply(table, frame):
    if table is None:
        return frame
    out = bytearray(len(frame))
    for i in range(len(frame)):
        out[i] = table[frame[i]]
    return out
