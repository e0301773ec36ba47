/* A DTMF detector for 8 kHz 16-bit audio: the one piece of spandsp we replace (see dtmf_detect.c). */
#ifndef BN_DTMF_DETECT_H
#define BN_DTMF_DETECT_H

#include <stdint.h>

#define BN_DTMF_WINDOW 160 /* samples in each analysis window (20 ms) */
#define BN_DTMF_HOP 20     /* samples between two windows (2.5 ms) */

typedef struct {
    double twist_db;         /* row tone may be this much louder than the column tone */
    double reverse_twist_db; /* column tone may be this much louder than the row tone */
    double threshold_dbm0;   /* lowest level of each tone */
    double max_freq_error;   /* relative frequency error beyond which a tone is refused */
    double relative_peak_db; /* each tone this much above the other tones of its group */
    double tone_to_total;    /* the two tones carry at least this share of the window's energy */
    int min_hits;            /* windows in a row that must pass for a digit */
    int end_misses;          /* windows in a row that must fail to end a digit */
} bn_dtmf_params;

typedef struct {
    char digit;
    int64_t start;      /* sample where the tone began (estimated) */
    int32_t duration;   /* samples */
    float level_dbm0;   /* both tones together */
} bn_dtmf_digit;

typedef struct bn_dtmf bn_dtmf;

bn_dtmf *bn_dtmf_new(const bn_dtmf_params *p);
void bn_dtmf_free(bn_dtmf *s);
/* Feeds n samples; writes at most max digits that ended in them, returns how many. At most one
   digit ends per window, so max >= n / BN_DTMF_HOP + 1 never drops one. */
int bn_dtmf_feed(bn_dtmf *s, const int16_t *amp, int n, bn_dtmf_digit *out, int max);
/* n samples were lost: they neither start nor end a digit. Same output rule as bn_dtmf_feed. */
int bn_dtmf_fill_in(bn_dtmf *s, int n, bn_dtmf_digit *out, int max);
/* The verdict on the last window: a digit index into "123A456B789C*0#D", or -1. */
int bn_dtmf_last_verdict(const bn_dtmf *s);

#endif
