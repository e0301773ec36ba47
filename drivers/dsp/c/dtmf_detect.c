/* DTMF detection within the ITU-T Q.24 / Bellcore limits at every alignment of the tone.
 *
 * Why not spandsp's dtmf_rx (Debian 0.0.6): its relative-peak and tone-to-total checks are fixed
 * constants tuned for unwindowed 102-sample Goertzel blocks, and its non-overlapping blocks make
 * the verdict depend on where a tone starts. It misses 0 and * at 8 dB normal twist, D with both
 * tones 1.5 % off, and more on a drifting oscillator (pinned in tests/dsp/test_dependency_quirks.py).
 *
 * How: every BN_DTMF_HOP samples, the last BN_DTMF_WINDOW samples are Hann-windowed and measured
 * at the eight DTMF frequencies (a windowed DFT bin each; the window's low leakage keeps the
 * 941 Hz row tone out of the column bins at 8 dB twist). A window passes for a digit when its
 * strongest row and column tones are above the threshold, within the twist limits, clear of the
 * other tones of their group, carry most of the window's energy (a tone covering only part of the
 * window carries proportionally less, which is what makes short tones fail), and each is
 * stronger at its nominal frequency than at nominal x (1 +- 2 max_freq_error) (the Hann window's
 * response is symmetric, so this puts the frequency boundary at max_freq_error). A digit is
 * min_hits passing windows of the same digit with fewer than end_misses failing windows between
 * them; it is reported once end_misses windows in a row fail.
 */
#include "dtmf_detect.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define N BN_DTMF_WINDOW
#define HOP BN_DTMF_HOP
#define DBM0_POWER (22624.0 * 22624.0 / 2.0) /* a 0 dBm0 sine: peak 22624, as spandsp */

static const double FREQ[8] = {697.0, 770.0, 852.0, 941.0, 1209.0, 1336.0, 1477.0, 1633.0};
static const char DIGITS[] = "123A456B789C*0#D";

struct bn_dtmf {
    bn_dtmf_params p;
    float buf[N];         /* the current window; the newest sample last */
    int fill;             /* samples in buf */
    float bins[8][2][N];  /* window x cos, window x sin at each nominal frequency */
    float guard[8][2][2][N]; /* the same below (0) and above (1) each nominal frequency */
    float win2[N];        /* window squared, for the window's energy */
    double bin_norm, energy_norm;
    double threshold, twist, reverse_twist, relative_peak;
    int64_t t;            /* samples seen */
    int64_t lost_end;     /* end of the last lost stretch: windows overlapping it are uncertain */
    int verdict;
    int cur, hits, misses;
    int64_t first_hit, last_hit;
    double level_sum;
};

static void make_bin(float out[2][N], const double *win, double f) {
    for (int n = 0; n < N; n++) {
        double ph = 2.0 * M_PI * f * n / 8000.0;
        out[0][n] = (float)(win[n] * cos(ph));
        out[1][n] = (float)(win[n] * sin(ph));
    }
}

bn_dtmf *bn_dtmf_new(const bn_dtmf_params *p) {
    if (p->min_hits < 1 || p->end_misses < 1 || p->max_freq_error <= 0.0 || p->max_freq_error >= 0.1)
        return NULL;
    bn_dtmf *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    s->p = *p;
    double win[N], sum = 0.0, sum2 = 0.0;
    for (int n = 0; n < N; n++) { /* periodic-free Hann: zero only outside the window */
        win[n] = 0.5 - 0.5 * cos(2.0 * M_PI * (n + 1) / (N + 1));
        sum += win[n];
        sum2 += win[n] * win[n];
        s->win2[n] = (float)(win[n] * win[n]);
    }
    for (int k = 0; k < 8; k++) {
        make_bin(s->bins[k], win, FREQ[k]);
        make_bin(s->guard[k][0], win, FREQ[k] * (1.0 - 2.0 * p->max_freq_error));
        make_bin(s->guard[k][1], win, FREQ[k] * (1.0 + 2.0 * p->max_freq_error));
    }
    s->bin_norm = 2.0 / (sum * sum);  /* a sine of amplitude A measures A^2 / 2, as its power */
    s->energy_norm = 1.0 / sum2;
    s->threshold = DBM0_POWER * pow(10.0, p->threshold_dbm0 / 10.0);
    s->twist = pow(10.0, p->twist_db / 10.0);
    s->reverse_twist = pow(10.0, p->reverse_twist_db / 10.0);
    s->relative_peak = pow(10.0, p->relative_peak_db / 10.0);
    s->fill = N - HOP; /* the stream starts after silence: the first window comes after HOP samples */
    s->cur = -1;
    s->verdict = -1;
    return s;
}

void bn_dtmf_free(bn_dtmf *s) { free(s); }

int bn_dtmf_last_verdict(const bn_dtmf *s) { return s->verdict; }

static double power(const float b[2][N], const float *x, double norm) {
    float re = 0.0f, im = 0.0f;
    for (int n = 0; n < N; n++) {
        re += b[0][n] * x[n];
        im += b[1][n] * x[n];
    }
    return ((double)re * re + (double)im * im) * norm;
}

/* The digit this window shows (0..15), or -1; its two tones' power in *level. */
static int analyse(bn_dtmf *s, double *level) {
    const float *x = s->buf;
    double p[8];
    for (int k = 0; k < 8; k++)
        p[k] = power(s->bins[k], x, s->bin_norm);
    int r = 0, c = 4;
    for (int k = 1; k < 4; k++)
        if (p[k] > p[r]) r = k;
    for (int k = 5; k < 8; k++)
        if (p[k] > p[c]) c = k;
    double pr = p[r], pc = p[c];
    if (pr < s->threshold || pc < s->threshold)
        return -1;
    if (pr > s->twist * pc || pc > s->reverse_twist * pr)
        return -1;
    for (int k = 0; k < 8; k++) {
        if (k == r || k == c) continue;
        if ((k < 4 ? pr : pc) < s->relative_peak * p[k])
            return -1;
    }
    float e = 0.0f;
    for (int n = 0; n < N; n++)
        e += s->win2[n] * x[n] * x[n];
    if (pr + pc < s->p.tone_to_total * e * s->energy_norm)
        return -1;
    const int tones[2] = {r, c};
    for (int i = 0; i < 2; i++) {
        int k = tones[i];
        if (p[k] <= power(s->guard[k][0], x, s->bin_norm) || p[k] <= power(s->guard[k][1], x, s->bin_norm))
            return -1;
    }
    *level = pr + pc;
    return r * 4 + (c - 4);
}

/* Close the current run; returns 1 and fills *out when it was a digit. */
static int finish(bn_dtmf *s, bn_dtmf_digit *out) {
    int got = 0;
    if (s->cur >= 0 && s->hits >= s->p.min_hits) {
        /* the first passing window ends about 0.6 N after the tone starts, the last about
           0.3 N after it ends (measured on clean tones of 40 to 100 ms) */
        out->digit = DIGITS[s->cur];
        out->start = s->first_hit - (int64_t)(0.6 * N);
        out->duration = (int32_t)(s->last_hit - s->first_hit + (int64_t)(0.4 * N));
        out->level_dbm0 = (float)(10.0 * log10(s->level_sum / s->hits / DBM0_POWER));
        got = 1;
    }
    s->cur = -1;
    s->hits = s->misses = 0;
    s->level_sum = 0.0;
    return got;
}

static int step(bn_dtmf *s, bn_dtmf_digit *out) {
    double level = 0.0;
    int d = analyse(s, &level);
    int uncertain = s->t - N < s->lost_end; /* the window holds lost samples */
    int got = 0;
    s->verdict = d;
    if (d >= 0 && d == s->cur) {
        s->hits++;
        s->misses = 0;
        s->last_hit = s->t;
        s->level_sum += level;
    } else if (d >= 0) {
        got = finish(s, out);
        s->cur = d;
        s->hits = 1;
        s->first_hit = s->last_hit = s->t;
        s->level_sum = level;
    } else if (s->cur >= 0 && !uncertain && ++s->misses >= s->p.end_misses) {
        got = finish(s, out);
    }
    return got;
}

static int push(bn_dtmf *s, const int16_t *amp, int n, bn_dtmf_digit *out, int max) {
    int got = 0;
    for (int i = 0; i < n; i++) {
        s->buf[s->fill++] = amp ? (float)amp[i] : 0.0f;
        s->t++;
        if (s->fill == N) {
            bn_dtmf_digit d;
            if (step(s, &d) && got < max)
                out[got++] = d;
            memmove(s->buf, s->buf + HOP, (N - HOP) * sizeof s->buf[0]);
            s->fill = N - HOP;
        }
    }
    return got;
}

int bn_dtmf_feed(bn_dtmf *s, const int16_t *amp, int n, bn_dtmf_digit *out, int max) {
    return push(s, amp, n, out, max);
}

int bn_dtmf_fill_in(bn_dtmf *s, int n, bn_dtmf_digit *out, int max) {
    s->lost_end = s->t + n;
    return push(s, NULL, n, out, max);
}
