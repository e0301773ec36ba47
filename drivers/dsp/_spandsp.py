"""The one place that binds spandsp (Debian ``libspandsp2``) through cffi, in ABI mode.

Every declaration below is copied from spandsp 0.0.6's headers. All state types are
opaque: each ``*_init(NULL, ...)`` allocates its own state, which ``*_free`` releases,
so no struct layout has to be mirrored here.
"""

from __future__ import annotations

import ctypes.util

from cffi import FFI

from .errors import SpanDSPError

CDEF = """
typedef struct dtmf_rx_state_s dtmf_rx_state_t;
typedef struct dtmf_tx_state_s dtmf_tx_state_t;
typedef struct tone_gen_descriptor_s tone_gen_descriptor_t;
typedef struct tone_gen_state_s tone_gen_state_t;
typedef struct super_tone_rx_descriptor_s super_tone_rx_descriptor_t;
typedef struct super_tone_rx_state_s super_tone_rx_state_t;
typedef struct adsi_rx_state_s adsi_rx_state_t;
typedef struct adsi_tx_state_s adsi_tx_state_t;
typedef struct g711_state_s g711_state_t;
typedef struct echo_can_state_s echo_can_state_t;
typedef struct plc_state_s plc_state_t;
typedef struct awgn_state_s awgn_state_t;

typedef void (*digits_rx_callback_t)(void *user_data, const char *digits, int len);
typedef void (*tone_report_func_t)(void *user_data, int code, int level, int delay);
typedef void (*put_msg_func_t)(void *user_data, const uint8_t *msg, int len);

dtmf_rx_state_t *dtmf_rx_init(dtmf_rx_state_t *s, digits_rx_callback_t callback, void *user_data);
void dtmf_rx_set_realtime_callback(dtmf_rx_state_t *s, tone_report_func_t callback, void *user_data);
void dtmf_rx_parms(dtmf_rx_state_t *s, int filter_dialtone, int twist, int reverse_twist, int threshold);
int dtmf_rx(dtmf_rx_state_t *s, const int16_t amp[], int samples);
int dtmf_rx_fillin(dtmf_rx_state_t *s, int samples);
size_t dtmf_rx_get(dtmf_rx_state_t *s, char *digits, int max);
int dtmf_rx_free(dtmf_rx_state_t *s);

dtmf_tx_state_t *dtmf_tx_init(dtmf_tx_state_t *s);
void dtmf_tx_set_level(dtmf_tx_state_t *s, int level, int twist);
void dtmf_tx_set_timing(dtmf_tx_state_t *s, int on_time, int off_time);
int dtmf_tx_put(dtmf_tx_state_t *s, const char *digits, int len);
int dtmf_tx(dtmf_tx_state_t *s, int16_t amp[], int max_samples);
int dtmf_tx_free(dtmf_tx_state_t *s);

tone_gen_descriptor_t *tone_gen_descriptor_init(tone_gen_descriptor_t *s, int f1, int l1, int f2, int l2,
                                                int d1, int d2, int d3, int d4, int repeat);
void tone_gen_descriptor_free(tone_gen_descriptor_t *s);
tone_gen_state_t *tone_gen_init(tone_gen_state_t *s, tone_gen_descriptor_t *t);
int tone_gen(tone_gen_state_t *s, int16_t amp[], int max_samples);
int tone_gen_free(tone_gen_state_t *s);

super_tone_rx_descriptor_t *super_tone_rx_make_descriptor(super_tone_rx_descriptor_t *desc);
int super_tone_rx_free_descriptor(super_tone_rx_descriptor_t *desc);
int super_tone_rx_add_tone(super_tone_rx_descriptor_t *desc);
int super_tone_rx_add_element(super_tone_rx_descriptor_t *desc, int tone, int f1, int f2, int min, int max);
super_tone_rx_state_t *super_tone_rx_init(super_tone_rx_state_t *s, super_tone_rx_descriptor_t *desc,
                                          tone_report_func_t callback, void *user_data);
int super_tone_rx(super_tone_rx_state_t *super, const int16_t amp[], int samples);
int super_tone_rx_free(super_tone_rx_state_t *s);

adsi_rx_state_t *adsi_rx_init(adsi_rx_state_t *s, int standard, put_msg_func_t put_msg, void *user_data);
int adsi_rx(adsi_rx_state_t *s, const int16_t amp[], int len);
int adsi_rx_free(adsi_rx_state_t *s);
adsi_tx_state_t *adsi_tx_init(adsi_tx_state_t *s, int standard);
int adsi_tx(adsi_tx_state_t *s, int16_t amp[], int max_len);
int adsi_tx_put_message(adsi_tx_state_t *s, const uint8_t *msg, int len);
int adsi_tx_free(adsi_tx_state_t *s);
int adsi_next_field(adsi_rx_state_t *s, const uint8_t *msg, int msg_len, int pos, uint8_t *field_type,
                    uint8_t const **field_body, int *field_len);
int adsi_add_field(adsi_tx_state_t *s, uint8_t *msg, int len, uint8_t field_type, uint8_t const *field_body,
                   int field_len);

g711_state_t *g711_init(g711_state_t *s, int mode);
int g711_encode(g711_state_t *s, uint8_t g711_data[], const int16_t amp[], int len);
int g711_decode(g711_state_t *s, int16_t amp[], const uint8_t g711_data[], int g711_bytes);
int g711_free(g711_state_t *s);

echo_can_state_t *echo_can_init(int len, int adaption_mode);
int echo_can_free(echo_can_state_t *ec);
void echo_can_flush(echo_can_state_t *ec);
int16_t echo_can_update(echo_can_state_t *ec, int16_t tx, int16_t rx);

plc_state_t *plc_init(plc_state_t *s);
int plc_rx(plc_state_t *s, int16_t amp[], int len);
int plc_fillin(plc_state_t *s, int16_t amp[], int len);
int plc_free(plc_state_t *s);

awgn_state_t *awgn_init_dbm0(awgn_state_t *s, int idum, float level);
int16_t awgn(awgn_state_t *s);
int awgn_free(awgn_state_t *s);
"""

ffi = FFI()
ffi.cdef(CDEF)


def _load():
    names = ["libspandsp.so.2", ctypes.util.find_library("spandsp")]
    errors = []
    for name in names:
        if not name:
            continue
        try:
            return ffi.dlopen(name)
        except OSError as exc:  # try the next spelling
            errors.append(f"{name}: {exc}")
    raise SpanDSPError(
        "spandsp is not installed (" + "; ".join(errors) + "). "
        "Run `make setup`, or `apt-get install libspandsp2`."
    )


lib = _load()


def check_alloc(ptr, what: str):
    """spandsp returns NULL when an init fails; turn that into an exception."""
    if ptr == ffi.NULL:
        raise SpanDSPError(f"spandsp could not create a {what} (out of memory or bad parameters)")
    return ptr


def check_rc(rc: int, what: str) -> int:
    if rc < 0:
        raise SpanDSPError(f"spandsp {what} failed with code {rc}")
    return rc
