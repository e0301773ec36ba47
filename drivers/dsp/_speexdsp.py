"""The one place that binds speexdsp's echo canceller (Debian ``libspeexdsp1``) through cffi."""

from __future__ import annotations

import ctypes.util

from cffi import FFI

from .errors import SpanDSPError

ffi = FFI()
ffi.cdef("""
typedef struct SpeexEchoState_ SpeexEchoState;
SpeexEchoState *speex_echo_state_init(int frame_size, int filter_length);
void speex_echo_state_destroy(SpeexEchoState *st);
void speex_echo_cancellation(SpeexEchoState *st, const int16_t *rec, const int16_t *play, int16_t *out);
int speex_echo_ctl(SpeexEchoState *st, int request, void *ptr);
void speex_echo_state_reset(SpeexEchoState *st);
""")
SET_SAMPLING_RATE = 24  # SPEEX_ECHO_SET_SAMPLING_RATE


def _load():
    for name in ("libspeexdsp.so.1", ctypes.util.find_library("speexdsp")):
        if name:
            try:
                return ffi.dlopen(name)
            except OSError:
                continue
    raise SpanDSPError("speexdsp is not installed: run `make setup`, or `apt-get install libspeexdsp1`")


lib = _load()
