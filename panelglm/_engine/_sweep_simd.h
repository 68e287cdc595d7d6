/*
 * Vector helpers, exp, and the loops of the linear predictor and the family
 * for panelglm/_engine/_sweep.c (see there). Included once, by that file only.
 */
#define MAXD 32
#define TILE 512
#ifndef SPAN_CELLS
#define SPAN_CELLS 16384 /* cells per outer index in a span of axis D-2 (see run) */
#endif
#ifndef AHEAD
#define AHEAD 512 /* cells ahead that a full pass prefetches its streamed operands */
#endif
#define MAXT 4 /* terms of eta fused into one loop */
#define MAXR 3 /* row targets of one op */
#define MAXC 4 /* dot products of one op */
#define ALWAYS static inline __attribute__((always_inline))
#define NOINLINE __attribute__((noinline))

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__) && \
    __GNUC__ >= 12 && !defined(NOCLONE)
#define CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define CLONES
#endif

/* A full pass reads the cell-level columns and y once, from memory or L3,
 * between long runs of ops on each line; the hardware prefetcher, which
 * follows the reads, falls behind there (the linear predictor's loads
 * stalled), so the pass asks AHEAD cells ahead itself. The loss-only pass
 * reads steadily, and the prefetcher keeps up without it. */
#if defined(__GNUC__)
#define PREFETCH(p) __builtin_prefetch((p), 0, 0)
#else
#define PREFETCH(p) ((void)(p))
#endif

#ifndef LANES
#define LANES 4
#endif
typedef double v4 __attribute__((vector_size(8 * LANES)));
typedef int64_t v4i __attribute__((vector_size(8 * LANES)));
typedef uint64_t v4u __attribute__((vector_size(8 * LANES)));

ALWAYS v4 ld(const double *p) { v4 v; memcpy(&v, p, sizeof v); return v; }
ALWAYS void st(double *p, v4 v) { memcpy(p, &v, sizeof v); }
ALWAYS v4 splat(double x) { return (v4){0} + x; }
ALWAYS double hsum(v4 v)
{
    double s = 0.0;
    for (int i = 0; i < LANES; i++) s += v[i];
    return s;
}
ALWAYS v4 blend(v4i mask, v4 a, v4 b) { return (v4)(((v4i)a & mask) | ((v4i)b & ~mask)); }

/* c[0] x^(n-1) + ... + c[n-1] by Horner's rule (unrolled: n is a constant). */
ALWAYS v4 horner(v4 x, const double *c, int n)
{
    v4 p = splat(c[0]);
    for (int i = 1; i < n; i++) p = p * x + splat(c[i]);
    return p;
}

/* 1/13!, 1/12!, ..., 1/1!, 1/0!: exp's Taylor polynomial, highest power first. */
static const double EXP_TAYLOR[14] = {
    1.0 / 6227020800.0, 1.0 / 479001600.0, 1.0 / 39916800.0, 1.0 / 3628800.0, 1.0 / 362880.0,
    1.0 / 40320.0,      1.0 / 5040.0,      1.0 / 720.0,       1.0 / 120.0,     1.0 / 24.0,
    1.0 / 6.0,          0.5,               1.0,               1.0};
/* 2/21, 2/19, ..., 2/3: 2 atanh(s) = 2 s + s^3 (2/3 + 2/5 s^2 + ...), in s^2. */
static const double ATANH_SERIES[10] = {2.0 / 21, 2.0 / 19, 2.0 / 17, 2.0 / 15, 2.0 / 13,
                                        2.0 / 11, 2.0 / 9,  2.0 / 7,  2.0 / 5,  2.0 / 3};

/* exp(r) for |r| <= ln(2)/2: the degree-13 Taylor polynomial (truncation
 * < 1e-17). The terms from r^4 on by Estrin's scheme, the last four by
 * Horner's rule, whose final steps keep the result within an ulp; with
 * fewer dependent multiply-adds than Horner's rule throughout. */
ALWAYS v4 exp_reduced(v4 r)
{
    const double *c = EXP_TAYLOR;
    v4 r2 = r * r, r4 = r2 * r2;
#define PAIR(i) (splat(c[9 - (i)]) + r * splat(c[8 - (i)]))
    v4 q0 = PAIR(0), q1 = PAIR(2), q2 = PAIR(4), q3 = PAIR(6), q4 = PAIR(8);
#undef PAIR
    v4 p = (q0 + r2 * q1) + r4 * ((q2 + r2 * q3) + r4 * q4);
    for (int i = 10; i < 14; i++) p = p * r + splat(c[i]);
    return p;
}

#define LN2_HI 6.93147180369123816490e-01
#define LN2_LO 1.90821492927058770002e-10
#define MAGIC 0x1.8p52 /* t + MAGIC - MAGIC rounds t to an integer; its low bits hold it */

/* Whether exp(x) is a normal number, lane by lane: |x| <= 708 (false for NaN). */
ALWAYS v4i exp_normal(v4 x) { return (x >= splat(-708.0)) & (x <= splat(708.0)); }

/* exp to about 1 ulp: n = round(x / ln 2), r = x - n ln 2 in two parts,
 * exp(r) by exp_reduced, times 2^n. Where the result is a normal number
 * (exp_normal), 2^n is built from the low bits of the rounding sum in one
 * step (NORMAL: the caller checks that every lane is, see family_tile);
 * otherwise it is applied as two exact powers of two, so that results down
 * to the subnormals and up to inf come out right. The two give the same
 * bits where both apply. NaN stays NaN. */
ALWAYS v4 vexp(int NORMAL, v4 x)
{
    const v4 magic = splat(MAGIC);
    if (NORMAL) {
        v4 t = x * splat(0x1.71547652b82fep0) + magic;
        v4 n = t - magic;
        v4 r = x - n * splat(LN2_HI);
        r = r - n * splat(LN2_LO);
        /* n's low twelve bits, moved into the exponent, plus the bias */
        v4u b = ((v4u)t << 52) + ((v4u){0} + ((uint64_t)1023 << 52));
        /* The blend (a no-op here: no NaN passed the check) keeps the
         * product a rounded value of its own, as on the careful path: the
         * compiler may otherwise fuse it into the caller's y eta - exp(eta)
         * where exp feeds nothing else (the loss-only pass) and not where it
         * also gives h, and the two passes, which the line search compares,
         * would differ in their last bits. */
        return blend((v4i)(x != x), x, exp_reduced(r) * (v4)b);
    }
    v4 xc = blend(x < splat(-746.0), splat(-746.0), x);
    xc = blend(xc > splat(710.0), splat(710.0), xc);
    v4 n = (xc * splat(0x1.71547652b82fep0) + magic) - magic;
    v4 r = xc - n * splat(LN2_HI);
    r = r - n * splat(LN2_LO);
    v4 p = exp_reduced(r);
    /* n = n1 + n2 with n1 = floor(n / 2): each 2^ni is a normal number. */
    v4 n1 = ((n * splat(0.5) - splat(0.25)) + magic) - magic;
    v4 n2 = n - n1;
    v4u b1 = ((v4u)(n1 + splat(1023.0) + magic)) << 52;
    v4u b2 = ((v4u)(n2 + splat(1023.0) + magic)) << 52;
    v4 out = p * (v4)b1 * (v4)b2;
    return blend((v4i)(x != x), x, out);
}

enum { FAM_POISSON = 0, FAM_BINOMIAL = 1, FAM_GAUSSIAN = 2 };

/* log(1 + e) for e in [0, 1], to about 2 ulp, given inv = 1 / (1 + e): with
 * u = 1 + e rounded, log u = k ln 2 + 2 atanh(s), s = (v - 1) / (v + 1),
 * u = 2^k v, v in [sqrt(1/2), sqrt(2)] (|s| <= 0.1716, so the series to
 * s^21 is exact to 4e-18), plus (e - (u - 1)) / u for the rounding of u. */
ALWAYS v4 vlog1p01(v4 e, v4 inv)
{
    const v4 one = splat(1.0);
    v4 u = one + e;
    v4i big = u > splat(1.4142135623730951);
    v4 v = blend(big, u * splat(0.5), u);
    v4 k = blend(big, one, splat(0.0));
    v4 s = (v - one) / (v + one);
    v4 s2 = s * s;
    v4 q = horner(s2, ATANH_SERIES, 10);
    v4 c = (e - (u - one)) * inv;
    v4 lo = k * splat(1.90821492927058770002e-10) + c;
    return k * splat(6.93147180369123816490e-01) + (splat(2.0) * s + (s * s2 * q + lo));
}

/* Tiles: eta, h and g of NB lines, and scratch for gathered operands: the
 * linear predictor's terms, y, w and trials (MAXT + 1), then a block's
 * factors (NB) and dot-product columns (MAXC * NB). */
#define NB 4
#define N_SCRATCH (MAXT + 1 + NB + MAXC * NB)
#define N_TILES (1 + 2 * NB + N_SCRATCH)
/* Loops run four vectors (STEP cells) at a time, each with its own running
 * sums, so that a sum is four independent chains: a line of 100 cells is
 * otherwise bound by the latency of one chain of additions. Then single
 * vectors, then single cells. */
#define STEP (4 * LANES)

/* eta[k] = c + sum_t coef[t] * term[t][k] for NT contiguous terms. */
ALWAYS void eta_terms(int NT, int ahead, double *restrict eta, int64_t n, int first, double c,
                      const double *const *t, const double *coef)
{
    int64_t k = 0;
    for (; k + LANES <= n; k += LANES) {
        if (ahead && k % 8 == 0) /* one 64-byte line per term */
            for (int j = 0; j < NT; j++) PREFETCH(t[j] + k + AHEAD);
        v4 v = first ? splat(c) : ld(eta + k);
        for (int j = 0; j < NT; j++) v += splat(coef[j]) * ld(t[j] + k);
        st(eta + k, v);
    }
    for (; k < n; k++) {
        double v = first ? c : eta[k];
        for (int j = 0; j < NT; j++) v += coef[j] * t[j][k];
        eta[k] = v;
    }
}

/* The family on one vector at k: writes h (and g), adds the weighted loss.
 * Poisson: f = y eta - exp(eta), h = w exp(eta).  Gaussian: f = -(y-eta)^2/2,
 * g = w (y - eta), h = w.  Binomial (logit, m trials): with e = exp(-|eta|),
 * f = y eta - m (max(eta, 0) + log1p(e)), p = 1 / (1 + e) or e / (1 + e),
 * g = w (y - m p), h = w m e / (1 + e)^2 (p (1 - p) without cancellation). */
ALWAYS v4 family_vec(int fam, int derivs, int NORMAL, v4 e, v4 yy, v4 ww, v4 mm, double *h,
                     double *g, v4i *ok)
{
    if (fam == FAM_POISSON) {
        if (NORMAL) *ok &= exp_normal(e);
        v4 mu = vexp(NORMAL, e);
        if (derivs) st(h, ww * mu);
        return ww * (yy * e - mu);
    }
    if (fam == FAM_BINOMIAL) {
        const v4i sign = (v4i){0} + INT64_MIN; /* splat(-0.0) would be +0.0 + -0.0 = +0.0 */
        v4 ne = (v4)((v4i)e | sign); /* -|eta| */
        if (NORMAL) *ok &= exp_normal(ne);
        v4 x = vexp(NORMAL, ne);
        v4 inv = splat(1.0) / (splat(1.0) + x);
        v4i pos = e > splat(0.0);
        v4 soft = blend(pos, e, splat(0.0)) + vlog1p01(x, inv);
        if (derivs) {
            v4 p = blend(pos, inv, x * inv);
            st(h, ww * mm * (x * inv * inv));
            st(g, ww * (yy - mm * p));
        }
        return ww * (yy * e - mm * soft);
    }
    v4 r = yy - e;
    if (derivs) {
        st(h, ww);
        st(g, ww * r);
    }
    return ww * (splat(-0.5) * r * r);
}

/* The family on a tile: writes h (and g), returns the weighted loss. With
 * NORMAL, exp takes its one-step path, and *all is cleared unless every
 * result was a normal number (then the caller runs the tile again without). */
ALWAYS double family_tile(int fam, int derivs, int NORMAL, int HW, const double *restrict eta,
                          const double *y, const double *w, const double *m,
                          double *restrict h, double *restrict g, int64_t n, int *all)
{
    v4 a0 = splat(0.0), a1 = a0, a2 = a0, a3 = a0;
    v4i ok = (v4i){0} - 1;
#define FAM(acc, k) \
    acc += family_vec(fam, derivs, NORMAL, ld(eta + (k)), ld(y + (k)), \
                      HW ? ld(w + (k)) : splat(1.0), m ? ld(m + (k)) : splat(1.0), h + (k), \
                      g + (k), &ok)
    int64_t k = 0;
    for (; k + STEP <= n; k += STEP) {
        if (derivs)
            for (int b = 0; b < STEP; b += 8) PREFETCH(y + k + AHEAD + b); /* 64-byte lines */
        FAM(a0, k);
        FAM(a1, k + LANES);
        FAM(a2, k + 2 * LANES);
        FAM(a3, k + 3 * LANES);
    }
    for (; k + LANES <= n; k += LANES) FAM(a0, k);
#undef FAM
    double tail = 0.0;
    for (; k < n; k++) {
        double hk[LANES], gk[LANES];
        v4 f = family_vec(fam, derivs, NORMAL, splat(eta[k]), splat(y[k]),
                          splat(HW ? w[k] : 1.0), splat(m ? m[k] : 1.0), hk, gk, &ok);
        tail += f[0];
        if (derivs) {
            h[k] = hk[0];
            if (fam != FAM_POISSON) g[k] = gk[0];
        }
    }
    if (NORMAL)
        for (int i = 0; i < LANES; i++) *all &= (int)(ok[i] != 0);
    return ((hsum(a0) + hsum(a1)) + (hsum(a2) + hsum(a3))) + tail;
}
