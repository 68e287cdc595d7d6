/*
 * One compiled sweep over the cells of a chunk: the linear predictor, the
 * family's loss and curvature, and every reduction, contraction and dot
 * product a pass needs, while each line of cells is in cache.
 *
 * The grid is C-ordered with D axes; a chunk is positions [s, e) of axis 0.
 * Its cells are walked as lines along the last axis (tiles of at most TILE
 * cells), every other index fixed. An operand is an address and D element
 * strides, zero along the axes it does not vary on, so any block layout is
 * one loop. Along a line an operand is constant (stride 0), contiguous
 * (stride 1) or gathered into a scratch tile.
 *
 * Per tile: eta = sum of coef * term; then the family writes the curvature h
 * (and, for the Gaussian, the residual g) and adds the loss; then each "op"
 * forms v = h * factor (or g) once, in registers, and adds it to up to three
 * row targets (targets that keep the last axis), to one running sum (for the
 * targets that drop it) and to up to four dot products with cell-level
 * columns. Each op is a loop specialised at compile time to its shape, so a
 * value is loaded once and every output it feeds is updated in the same
 * iteration.
 *
 * Sums run in 4-lane partial sums (GCC vector extensions), in the same order
 * on every code path and however many threads run the parts; the compiler
 * may fuse multiplies and adds on CPUs that have FMA, so the last bits can
 * differ between machines. Only the Python C API is used; descriptions
 * are int64 buffers (panelglm/_compiled.py writes them, and keeps every array
 * they point into alive for the call). The GIL is released while it runs.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define MAXD 32
#define TILE 512
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

/* exp to about 1 ulp: n = round(x / ln 2), r = x - n ln 2 in two parts, a
 * degree-13 Taylor polynomial on |r| <= ln(2)/2 (truncation < 1e-17), and
 * 2^n applied as two exact powers of two so that results down to the
 * subnormals and up to inf come out right. NaN stays NaN. */
ALWAYS v4 vexp(v4 x)
{
    const v4 magic = splat(0x1.8p52);
    v4 xc = blend(x < splat(-746.0), splat(-746.0), x);
    xc = blend(xc > splat(710.0), splat(710.0), xc);
    v4 n = (xc * splat(0x1.71547652b82fep0) + magic) - magic;
    v4 r = xc - n * splat(6.93147180369123816490e-01);
    r = r - n * splat(1.90821492927058770002e-10);
    v4 p = splat(1.0 / 6227020800.0);
    p = p * r + splat(1.0 / 479001600.0);
    p = p * r + splat(1.0 / 39916800.0);
    p = p * r + splat(1.0 / 3628800.0);
    p = p * r + splat(1.0 / 362880.0);
    p = p * r + splat(1.0 / 40320.0);
    p = p * r + splat(1.0 / 5040.0);
    p = p * r + splat(1.0 / 720.0);
    p = p * r + splat(1.0 / 120.0);
    p = p * r + splat(1.0 / 24.0);
    p = p * r + splat(1.0 / 6.0);
    p = p * r + splat(0.5);
    p = p * r + splat(1.0);
    p = p * r + splat(1.0);
    /* n = n1 + n2 with n1 = floor(n / 2): each 2^ni is a normal number. */
    v4 n1 = ((n * splat(0.5) - splat(0.25)) + magic) - magic;
    v4 n2 = n - n1;
    v4u b1 = ((v4u)(n1 + splat(1023.0) + magic)) << 52;
    v4u b2 = ((v4u)(n2 + splat(1023.0) + magic)) << 52;
    v4 out = p * (v4)b1 * (v4)b2;
    return blend((v4i)(x != x), x, out);
}

/* ---------------------------------------------------------------- reading */
typedef struct {
    const double *p;
    const int64_t *st;
} Operand;

typedef struct {
    const int64_t *w;
    Py_ssize_t n, at;
    int bad;
} Reader;

static int64_t next(Reader *R)
{
    if (R->at >= R->n) {
        R->bad = 1;
        return 0;
    }
    return R->w[R->at++];
}

static Operand operand(Reader *R, int D)
{
    Operand o;
    o.p = (const double *)(intptr_t)next(R);
    o.st = R->w + R->at;
    R->at += D;
    if (R->at > R->n) R->bad = 1;
    return o;
}

static double as_double(int64_t bits)
{
    double x;
    memcpy(&x, &bits, sizeof x);
    return x;
}

enum { DEST_SUM = 0, DEST_ROW = 1, DEST_DOT = 2 };
enum { FAM_POISSON = 0, FAM_GAUSSIAN = 2 };

typedef struct {
    int kind;
    Operand out, col;
} Dest;

typedef struct {
    int base; /* 0: h, 1: g */
    Operand factor;
    int n_dest;
    Dest *dest;
} Op;

typedef struct {
    int D, family, n_terms, n_ops;
    int64_t shape[MAXD];
    Operand y, w;
    double *coef;
    Operand *term;
    Op *op;
} Sweep;

/* ------------------------------------------------------------ line helpers */
/* The operand at the current line and tile start; ``at`` is the line's
 * offset without the tile. */
ALWAYS const double *at_line(const Operand *o, const int64_t *idx, int D, int64_t k0)
{
    const double *p = o->p;
    for (int d = 0; d < D - 1; d++) p += idx[d] * o->st[d];
    return p + k0 * o->st[D - 1];
}

/* A contiguous view of an operand along a tile (gathered if strided). */
ALWAYS const double *tile_of(const Operand *o, const int64_t *idx, int D, int64_t k0, int64_t n,
                             double *scratch)
{
    const double *p = at_line(o, idx, D, k0);
    int64_t s = o->st[D - 1];
    if (s == 1) return p;
    for (int64_t k = 0; k < n; k++) scratch[k] = p[k * s];
    return scratch;
}

/* Loops run four vectors (STEP cells) at a time, each with its own running
 * sums, so that a sum is four independent chains: a line of 100 cells is
 * otherwise bound by the latency of one chain of additions. Then single
 * vectors, then single cells. */
#define STEP (4 * LANES)

/* eta[k] = c + sum_t coef[t] * term[t][k] for NT contiguous terms. */
ALWAYS void eta_terms(int NT, double *restrict eta, int64_t n, int first, double c,
                      const double *const *t, const double *coef)
{
    int64_t k = 0;
    for (; k + LANES <= n; k += LANES) {
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
 * g = w (y - eta), h = w. */
ALWAYS v4 family_vec(int fam, int derivs, v4 e, v4 yy, v4 ww, double *h, double *g)
{
    if (fam == FAM_POISSON) {
        v4 mu = vexp(e);
        if (derivs) st(h, ww * mu);
        return ww * (yy * e - mu);
    }
    v4 r = yy - e;
    if (derivs) {
        st(h, ww);
        st(g, ww * r);
    }
    return ww * (splat(-0.5) * r * r);
}

ALWAYS double family_tile(int fam, int derivs, const double *restrict eta, const double *y,
                          const double *w, double *restrict h, double *restrict g, int64_t n)
{
    v4 a0 = splat(0.0), a1 = a0, a2 = a0, a3 = a0;
#define FAM(acc, k) \
    acc += family_vec(fam, derivs, ld(eta + (k)), ld(y + (k)), w ? ld(w + (k)) : splat(1.0), \
                      h + (k), g + (k))
    int64_t k = 0;
    for (; k + STEP <= n; k += STEP) {
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
        v4 f = family_vec(fam, derivs, splat(eta[k]), splat(y[k]), splat(w ? w[k] : 1.0), hk, gk);
        tail += f[0];
        if (derivs) {
            h[k] = hk[0];
            if (fam != FAM_POISSON) g[k] = gk[0];
        }
    }
    return ((hsum(a0) + hsum(a1)) + (hsum(a2) + hsum(a3))) + tail;
}

/* One op on a tile: v = b * factor (FK 0: none, 1: contiguous f, 2: the
 * constant fc), added into NR rows, summed, and dotted with NC columns.
 * Returns the sum; adds the dot products into dots. */
ALWAYS double op_tile(int FK, int NR, int NC, const double *restrict b, const double *restrict f,
                      double fc, double *const *rows, const double *const *cols, double *dots,
                      int64_t n)
{
    /* Local restrict pointers: nothing written through a row aliases the
     * inputs, so every load and the pointers themselves stay in registers. */
    double *restrict r0 = NR > 0 ? rows[0] : NULL;
    double *restrict r1 = NR > 1 ? rows[1] : NULL;
    double *restrict r2 = NR > 2 ? rows[2] : NULL;
    const double *restrict c0 = NC > 0 ? cols[0] : NULL;
    const double *restrict c1 = NC > 1 ? cols[1] : NULL;
    const double *restrict c2 = NC > 2 ? cols[2] : NULL;
    const double *restrict c3 = NC > 3 ? cols[3] : NULL;
    const v4 z = splat(0.0), vfc = splat(fc);
    v4 s0 = z, s1 = z, s2 = z, s3 = z;
    v4 e0 = z, e1 = z, e2 = z, e3 = z, g0 = z, g1 = z, g2 = z, g3 = z; /* dots 0, 1 */
    v4 p0 = z, p1 = z, p2 = z, p3 = z, q0 = z, q1 = z, q2 = z, q3 = z; /* dots 2, 3 */
#define OPV(k, S, E, G, P, Q)                                        \
    do {                                                             \
        v4 v = ld(b + (k));                                          \
        if (FK == 1) v *= ld(f + (k));                               \
        if (FK == 2) v *= vfc;                                       \
        S += v;                                                      \
        if (NR > 0) st(r0 + (k), ld(r0 + (k)) + v);                  \
        if (NR > 1) st(r1 + (k), ld(r1 + (k)) + v);                  \
        if (NR > 2) st(r2 + (k), ld(r2 + (k)) + v);                  \
        if (NC > 0) E += v * ld(c0 + (k));                           \
        if (NC > 1) G += v * ld(c1 + (k));                           \
        if (NC > 2) P += v * ld(c2 + (k));                           \
        if (NC > 3) Q += v * ld(c3 + (k));                           \
    } while (0)
    int64_t k = 0;
    for (; k + STEP <= n; k += STEP) {
        OPV(k, s0, e0, g0, p0, q0);
        OPV(k + LANES, s1, e1, g1, p1, q1);
        OPV(k + 2 * LANES, s2, e2, g2, p2, q2);
        OPV(k + 3 * LANES, s3, e3, g3, p3, q3);
    }
    for (; k + LANES <= n; k += LANES) OPV(k, s0, e0, g0, p0, q0);
#undef OPV
    double ts = 0.0, t0 = 0.0, t1 = 0.0, t2 = 0.0, t3 = 0.0;
    for (; k < n; k++) {
        double v = b[k];
        if (FK == 1) v *= f[k];
        if (FK == 2) v *= fc;
        ts += v;
        if (NR > 0) r0[k] += v;
        if (NR > 1) r1[k] += v;
        if (NR > 2) r2[k] += v;
        if (NC > 0) t0 += v * c0[k];
        if (NC > 1) t1 += v * c1[k];
        if (NC > 2) t2 += v * c2[k];
        if (NC > 3) t3 += v * c3[k];
    }
#define H4(a, b_, c, d) ((hsum(a) + hsum(b_)) + (hsum(c) + hsum(d)))
    if (NC > 0) dots[0] += H4(e0, e1, e2, e3) + t0;
    if (NC > 1) dots[1] += H4(g0, g1, g2, g3) + t1;
    if (NC > 2) dots[2] += H4(p0, p1, p2, p3) + t2;
    if (NC > 3) dots[3] += H4(q0, q1, q2, q3) + t3;
    return H4(s0, s1, s2, s3) + ts;
#undef H4
}

#define OP_NC(FK, NR)                                                             \
    switch (nc) {                                                                 \
    case 0: return op_tile(FK, NR, 0, b, f, fc, rows, cols, dots, n);             \
    case 1: return op_tile(FK, NR, 1, b, f, fc, rows, cols, dots, n);             \
    case 2: return op_tile(FK, NR, 2, b, f, fc, rows, cols, dots, n);             \
    case 3: return op_tile(FK, NR, 3, b, f, fc, rows, cols, dots, n);             \
    default: return op_tile(FK, NR, 4, b, f, fc, rows, cols, dots, n);            \
    }
#define OP_NR(FK)                                                                 \
    switch (nr) {                                                                 \
    case 0: OP_NC(FK, 0)                                                          \
    case 1: OP_NC(FK, 1)                                                          \
    case 2: OP_NC(FK, 2)                                                          \
    default: OP_NC(FK, 3)                                                         \
    }

/* The specialised loops live in a few out-of-line functions, one per factor
 * kind (each compiled for every target): inlined into one sweep function,
 * the two hundred variants would take the compiler minutes. */
#define OP_FK(FK)                                                                        \
    NOINLINE CLONES static double op_fk##FK(int nr, int nc, const double *b,             \
                                            const double *f, double fc,                  \
                                            double *const *rows, const double *const *cols, \
                                            double *dots, int64_t n)                     \
    {                                                                                    \
        OP_NR(FK)                                                                        \
    }
OP_FK(0)
OP_FK(1)
OP_FK(2)

ALWAYS double op_dispatch(int fk, int nr, int nc, const double *b, const double *f, double fc,
                          double *const *rows, const double *const *cols, double *dots, int64_t n)
{
    if (fk == 0) return op_fk0(nr, nc, b, f, fc, rows, cols, dots, n);
    if (fk == 1) return op_fk1(nr, nc, b, f, fc, rows, cols, dots, n);
    return op_fk2(nr, nc, b, f, fc, rows, cols, dots, n);
}

/* ------------------------------------------------------------------ sweep */
/* Tiles: eta, h and g of NB lines, and scratch for gathered operands: the
 * linear predictor's terms, y and w (MAXT + 1), then a block's factors (NB)
 * and dot-product columns (MAXC * NB). */
#define NB 4
#define N_SCRATCH (MAXT + 1 + NB + MAXC * NB)
#define N_TILES (1 + 2 * NB + N_SCRATCH)
typedef struct {
    double *eta, *h, *g, *scratch;
} Buffers;

/* The linear predictor and the family on one line's tile: writes h (and g)
 * into h and g, returns the loss. */
ALWAYS double line_family(const Sweep *S, int derivs, const int64_t *idx, int64_t k0, int64_t n,
                          Buffers *B, double *h, double *g)
{
    const int D = S->D;
    /* eta: the constant terms first, then the varying ones MAXT at a time. */
    double c = 0.0;
    const double *vt[MAXT];
    double vc[MAXT];
    int nv = 0, first = 1;
    for (int t = 0; t < S->n_terms; t++) {
        const Operand *o = &S->term[t];
        if (o->st[D - 1] == 0) c += S->coef[t] * at_line(o, idx, D, k0)[0];
    }
    for (int t = 0; t <= S->n_terms; t++) {
        if (t < S->n_terms) {
            const Operand *o = &S->term[t];
            if (o->st[D - 1] == 0) continue;
            vt[nv] = tile_of(o, idx, D, k0, n, B->scratch + nv * TILE);
            vc[nv++] = S->coef[t];
        }
        if (nv == MAXT || (t == S->n_terms && (nv || first))) {
            switch (nv) {
            case 0: eta_terms(0, B->eta, n, first, c, vt, vc); break;
            case 1: eta_terms(1, B->eta, n, first, c, vt, vc); break;
            case 2: eta_terms(2, B->eta, n, first, c, vt, vc); break;
            case 3: eta_terms(3, B->eta, n, first, c, vt, vc); break;
            default: eta_terms(4, B->eta, n, first, c, vt, vc); break;
            }
            first = 0;
            nv = 0;
        }
    }
    const double *y = tile_of(&S->y, idx, D, k0, n, B->scratch);
    const double *w = S->w.p ? tile_of(&S->w, idx, D, k0, n, B->scratch + TILE) : NULL;
    return S->family == FAM_POISSON ? family_tile(FAM_POISSON, derivs, B->eta, y, w, h, g, n)
                                    : family_tile(FAM_GAUSSIAN, derivs, B->eta, y, w, h, g, n);
}

/* One line: family, then every op with its own loop. */
ALWAYS double do_tile(const Sweep *S, int derivs, const int64_t *idx, int64_t k0, int64_t n,
                      Buffers *B)
{
    const int D = S->D;
    double loss = line_family(S, derivs, idx, k0, n, B, B->h, B->g);
    if (!derivs) return loss;
    for (int i = 0; i < S->n_ops; i++) {
        const Op *op = &S->op[i];
        const double *f = NULL;
        double fc = 0.0;
        int fk = 0;
        if (op->factor.p) {
            if (op->factor.st[D - 1] == 0) {
                fk = 2;
                fc = at_line(&op->factor, idx, D, k0)[0];
            } else {
                fk = 1;
                f = tile_of(&op->factor, idx, D, k0, n, B->scratch);
            }
        }
        double *rows[MAXR];
        const double *cols[MAXC];
        double dots[MAXC] = {0.0, 0.0, 0.0, 0.0};
        double *dot_out[MAXC], *sum_out[8];
        int nr = 0, nc = 0, ns = 0;
        for (int j = 0; j < op->n_dest; j++) {
            const Dest *dst = &op->dest[j];
            double *o = (double *)at_line(&dst->out, idx, D, k0);
            if (dst->kind == DEST_ROW) {
                rows[nr++] = o;
            } else if (dst->kind == DEST_SUM) {
                sum_out[ns++] = o;
            } else {
                dot_out[nc] = o;
                cols[nc] = tile_of(&dst->col, idx, D, k0, n, B->scratch + (1 + nc) * TILE);
                nc++;
            }
        }
        double s = op_dispatch(fk, nr, nc, op->base ? B->g : B->h, f, fc, rows, cols, dots, n);
        for (int j = 0; j < ns; j++) *sum_out[j] += s;
        for (int j = 0; j < nc; j++) *dot_out[j] += dots[j];
    }
    return loss;
}

/* ------------------------------------------------------- blocks of lines */
/* NB neighbouring lines along axis D-2 at once. A row target that does not
 * vary along that axis (the ik target of an ijk grid) receives the sum of
 * the NB lines' rows, formed in registers: one read-modify-write for NB
 * lines instead of one each, which is what bounds a line at a time. Rows
 * that do vary along it (NRP, at most one per loop) and the running sums
 * stay per line. */

ALWAYS void block_body(int FK, int NRS, int NRP, int NC, const double *h, const double *const *f,
                       const double *fc, double *const *rs, double *const *rp,
                       const double *const *cols, v4 *s, v4 (*d)[NB], int64_t k)
{
    v4 v[NB];
    for (int b = 0; b < NB; b++) {
        v[b] = ld(h + b * TILE + k);
        if (FK == 1) v[b] *= ld(f[b] + k);
        if (FK == 2) v[b] *= splat(fc[b]);
        s[b] += v[b];
    }
    if (NRS > 0) {
        v4 t = (v[0] + v[1]) + (v[2] + v[3]);
        for (int r = 0; r < NRS; r++) st(rs[r] + k, ld(rs[r] + k) + t);
    }
    for (int b = 0; b < NRP * NB; b++) st(rp[b] + k, ld(rp[b] + k) + v[b % NB]);
    for (int c = 0; c < NC; c++)
        for (int b = 0; b < NB; b++) d[c][b] += v[b] * ld(cols[c * NB + b] + k);
}

/* One op on NB lines' tiles; sums[b] gets line b's sum, dots[c][b] its dots. */
ALWAYS void op_block(int FK, int NRS, int NRP, int NC, const double *restrict h,
                     const double *const *f, const double *fc, double *const *rs,
                     double *const *rp, const double *const *cols, double *sums,
                     double (*dots)[NB], int64_t n)
{
    v4 z = splat(0.0), s[NB], d[MAXC][NB];
    for (int b = 0; b < NB; b++) {
        s[b] = z;
        for (int c = 0; c < MAXC; c++) d[c][b] = z;
    }
    int64_t k = 0;
    for (; k + LANES <= n; k += LANES) block_body(FK, NRS, NRP, NC, h, f, fc, rs, rp, cols, s, d, k);
    for (int b = 0; b < NB; b++) {
        sums[b] = hsum(s[b]);
        for (int c = 0; c < NC; c++) dots[c][b] = hsum(d[c][b]);
    }
    for (; k < n; k++) {
        double v[NB];
        for (int b = 0; b < NB; b++) {
            v[b] = h[b * TILE + k];
            if (FK == 1) v[b] *= f[b][k];
            if (FK == 2) v[b] *= fc[b];
            sums[b] += v[b];
        }
        for (int r = 0; r < NRS; r++) rs[r][k] += (v[0] + v[1]) + (v[2] + v[3]);
        for (int b = 0; b < NRP * NB; b++) rp[b][k] += v[b % NB];
        for (int c = 0; c < NC; c++)
            for (int b = 0; b < NB; b++) dots[c][b] += v[b] * cols[c * NB + b][k];
    }
}

#define BLK_NC(FK, NRS, NRP)                                                          \
    switch (nc) {                                                                     \
    case 0: op_block(FK, NRS, NRP, 0, h, f, fc, rs, rp, cols, sums, dots, n); return; \
    case 1: op_block(FK, NRS, NRP, 1, h, f, fc, rs, rp, cols, sums, dots, n); return; \
    case 2: op_block(FK, NRS, NRP, 2, h, f, fc, rs, rp, cols, sums, dots, n); return; \
    case 3: op_block(FK, NRS, NRP, 3, h, f, fc, rs, rp, cols, sums, dots, n); return; \
    default: op_block(FK, NRS, NRP, 4, h, f, fc, rs, rp, cols, sums, dots, n); return; \
    }
#define BLK_R(FK)                                      \
    switch (nrs * 2 + nrp) {                           \
    case 0: BLK_NC(FK, 0, 0)                           \
    case 1: BLK_NC(FK, 0, 1)                           \
    case 2: BLK_NC(FK, 1, 0)                           \
    case 3: BLK_NC(FK, 1, 1)                           \
    case 4: BLK_NC(FK, 2, 0)                           \
    case 5: BLK_NC(FK, 2, 1)                           \
    case 6: BLK_NC(FK, 3, 0)                           \
    default: BLK_NC(FK, 3, 1)                          \
    }

#define BLK_FK(FK)                                                                        \
    NOINLINE CLONES static void block_fk##FK(                                             \
        int nrs, int nrp, int nc, const double *h, const double *const *f, const double *fc, \
        double *const *rs, double *const *rp, const double *const *cols, double *sums,    \
        double (*dots)[NB], int64_t n)                                                    \
    {                                                                                     \
        BLK_R(FK)                                                                         \
    }
BLK_FK(0)
BLK_FK(1)
BLK_FK(2)

ALWAYS void block_dispatch(int fk, int nrs, int nrp, int nc, const double *h,
                           const double *const *f, const double *fc, double *const *rs,
                           double *const *rp, const double *const *cols, double *sums,
                           double (*dots)[NB], int64_t n)
{
    if (fk == 0)
        block_fk0(nrs, nrp, nc, h, f, fc, rs, rp, cols, sums, dots, n);
    else if (fk == 1)
        block_fk1(nrs, nrp, nc, h, f, fc, rs, rp, cols, sums, dots, n);
    else
        block_fk2(nrs, nrp, nc, h, f, fc, rs, rp, cols, sums, dots, n);
}

/* An op's operands at a block of lines. */
typedef struct {
    int fk, nrs, nrp, nc, ns;
    const double *base;
    const double *f[NB];
    double fc[NB];
    double *rs[MAXR], *rp[MAXR * NB], *sum_out[8][NB], *dot_out[MAXC][NB];
    const double *cols[MAXC * NB];
} OpLines;

static void op_lines(const Sweep *S, const Op *op, int64_t (*idx)[MAXD], int64_t k0, int64_t n,
                     const Buffers *B, double *scratch, OpLines *L)
{
    const int D = S->D, ax = D - 2;
    L->fk = 0;
    L->base = op->base ? B->g : B->h;
    if (op->factor.p) {
        L->fk = op->factor.st[D - 1] == 0 ? 2 : 1;
        for (int b = 0; b < NB; b++) {
            if (L->fk == 2)
                L->fc[b] = at_line(&op->factor, idx[b], D, k0)[0];
            else
                L->f[b] = tile_of(&op->factor, idx[b], D, k0, n, scratch + b * TILE);
        }
    }
    L->nrs = L->nrp = L->nc = L->ns = 0;
    for (int j = 0; j < op->n_dest; j++) {
        const Dest *dst = &op->dest[j];
        if (dst->kind == DEST_ROW && dst->out.st[ax] == 0) {
            L->rs[L->nrs++] = (double *)at_line(&dst->out, idx[0], D, k0);
            continue;
        }
        for (int b = 0; b < NB; b++) {
            double *o = (double *)at_line(&dst->out, idx[b], D, k0);
            if (dst->kind == DEST_ROW) {
                L->rp[L->nrp * NB + b] = o;
            } else if (dst->kind == DEST_SUM) {
                L->sum_out[L->ns][b] = o;
            } else {
                L->dot_out[L->nc][b] = o;
                L->cols[L->nc * NB + b] =
                    tile_of(&dst->col, idx[b], D, k0, n, scratch + (NB + L->nc * NB + b) * TILE);
            }
        }
        if (dst->kind == DEST_ROW)
            L->nrp++;
        else if (dst->kind == DEST_SUM)
            L->ns++;
        else
            L->nc++;
    }
}

/* Whether op j can share a loop with op i: the same curvature row, a
 * factor of the same kind that needs no gathering, the same rows, and no
 * dot products. Each op's own running sums and rows; h is loaded once. */
static int fusable(const Sweep *S, const Op *a, const Op *b)
{
    const int D = S->D, ax = D - 2;
    if (a->base != b->base || !a->factor.p || !b->factor.p) return 0;
    int64_t sa = a->factor.st[D - 1], sb = b->factor.st[D - 1];
    if (sa != sb || (sa != 0 && sa != 1) || a->n_dest != b->n_dest) return 0;
    int nrp = 0;
    for (int j = 0; j < a->n_dest; j++) {
        const Dest *x = &a->dest[j], *y = &b->dest[j];
        if (x->kind != y->kind || x->kind == DEST_DOT) return 0;
        if (x->kind == DEST_ROW && ((x->out.st[ax] == 0) != (y->out.st[ax] == 0))) return 0;
        nrp += x->kind == DEST_ROW && x->out.st[ax] != 0;
    }
    return nrp <= 1;
}

#define NM 3 /* ops fused into one loop */

ALWAYS void multi_body(int M, int FK, int NRS, int NRP, const double *h, OpLines *const *L,
                       v4 (*s)[NB], int64_t k)
{
    v4 hb[NB];
    for (int b = 0; b < NB; b++) hb[b] = ld(h + b * TILE + k);
    for (int m = 0; m < M; m++) {
        v4 v[NB];
        for (int b = 0; b < NB; b++) {
            v[b] = hb[b] * (FK == 1 ? ld(L[m]->f[b] + k) : splat(L[m]->fc[b]));
            s[m][b] += v[b];
        }
        if (NRS > 0) {
            v4 t = (v[0] + v[1]) + (v[2] + v[3]);
            for (int r = 0; r < NRS; r++) st(L[m]->rs[r] + k, ld(L[m]->rs[r] + k) + t);
        }
        for (int b = 0; b < NRP * NB; b++)
            st(L[m]->rp[b] + k, ld(L[m]->rp[b] + k) + v[b % NB]);
    }
}

/* M fused ops on NB lines' tiles; sums[m][b] gets op m's sum on line b. */
ALWAYS void multi_block(int M, int FK, int NRS, int NRP, const double *restrict h,
                        OpLines *const *L, double (*sums)[NB], int64_t n)
{
    v4 s[NM][NB];
    for (int m = 0; m < M; m++)
        for (int b = 0; b < NB; b++) s[m][b] = splat(0.0);
    int64_t k = 0;
    for (; k + LANES <= n; k += LANES) multi_body(M, FK, NRS, NRP, h, L, s, k);
    for (int m = 0; m < M; m++)
        for (int b = 0; b < NB; b++) sums[m][b] = hsum(s[m][b]);
    for (; k < n; k++) {
        for (int m = 0; m < M; m++) {
            double v[NB];
            for (int b = 0; b < NB; b++) {
                v[b] = h[b * TILE + k] * (FK == 1 ? L[m]->f[b][k] : L[m]->fc[b]);
                sums[m][b] += v[b];
            }
            for (int r = 0; r < NRS; r++) L[m]->rs[r][k] += (v[0] + v[1]) + (v[2] + v[3]);
            for (int b = 0; b < NRP * NB; b++) L[m]->rp[b][k] += v[b % NB];
        }
    }
}

#define MULTI_R(M, FK)                                                      \
    switch (nrs * 2 + nrp) {                                                \
    case 0: multi_block(M, FK, 0, 0, h, L, sums, n); return;                \
    case 1: multi_block(M, FK, 0, 1, h, L, sums, n); return;                \
    case 2: multi_block(M, FK, 1, 0, h, L, sums, n); return;                \
    case 3: multi_block(M, FK, 1, 1, h, L, sums, n); return;                \
    case 4: multi_block(M, FK, 2, 0, h, L, sums, n); return;                \
    case 5: multi_block(M, FK, 2, 1, h, L, sums, n); return;                \
    case 6: multi_block(M, FK, 3, 0, h, L, sums, n); return;                \
    default: multi_block(M, FK, 3, 1, h, L, sums, n); return;               \
    }

#define MULTI_FN(M, FK)                                                                  \
    NOINLINE CLONES static void multi_##M##_##FK(int nrs, int nrp, const double *h,      \
                                                 OpLines *const *L, double (*sums)[NB],  \
                                                 int64_t n)                              \
    {                                                                                    \
        MULTI_R(M, FK)                                                                   \
    }
MULTI_FN(2, 1)
MULTI_FN(2, 2)
MULTI_FN(3, 1)
MULTI_FN(3, 2)

ALWAYS void multi_dispatch(int m, int fk, int nrs, int nrp, const double *h, OpLines *const *L,
                           double (*sums)[NB], int64_t n)
{
    if (m == 2)
        (fk == 1 ? multi_2_1 : multi_2_2)(nrs, nrp, h, L, sums, n);
    else
        (fk == 1 ? multi_3_1 : multi_3_2)(nrs, nrp, h, L, sums, n);
}

/* NB lines: idx is the first; line b has idx[D-2] + b. */
/* Each line's loss is added into *loss in line order, as the loss-only
 * sweep (the same walk, without ops) adds them: both give the same bits. */
ALWAYS void do_block(const Sweep *S, int derivs, const int64_t *idx0, int64_t k0, int64_t n,
                     Buffers *B, double *loss)
{
    const int D = S->D, ax = D - 2;
    int64_t idx[NB][MAXD];
    for (int b = 0; b < NB; b++) {
        memcpy(idx[b], idx0, sizeof(int64_t) * D);
        idx[b][ax] += b;
        *loss += line_family(S, derivs, idx[b], k0, n, B, B->h + b * TILE, B->g + b * TILE);
    }
    if (!derivs) return;
    double *scratch = B->scratch + (MAXT + 1) * TILE; /* the tiles line_family left free */
    OpLines lines[NM];
    for (int i = 0; i < S->n_ops;) {
        int m = 1;
        while (m < NM && i + m < S->n_ops && fusable(S, &S->op[i], &S->op[i + m])) m++;
        if (m > 1) {
            OpLines *L[NM];
            double sums[NM][NB];
            for (int j = 0; j < m; j++) {
                op_lines(S, &S->op[i + j], idx, k0, n, B, scratch, &lines[j]);
                L[j] = &lines[j];
            }
            multi_dispatch(m, lines[0].fk, lines[0].nrs, lines[0].nrp, lines[0].base, L, sums, n);
            for (int j = 0; j < m; j++)
                for (int q = 0; q < lines[j].ns; q++)
                    for (int b = 0; b < NB; b++) *lines[j].sum_out[q][b] += sums[j][b];
            i += m;
            continue;
        }
        OpLines *L = &lines[0];
        op_lines(S, &S->op[i], idx, k0, n, B, scratch, L);
        double sums[NB], dots[MAXC][NB];
        /* Rows that vary along axis D-2 one per loop: the first loop also
         * takes the shared rows, the sums and the dot products. */
        for (int p = 0; p == 0 || p < L->nrp; p++) {
            double tmp[NB], tdots[MAXC][NB];
            block_dispatch(L->fk, p ? 0 : L->nrs, L->nrp > 0, p ? 0 : L->nc, L->base, L->f, L->fc,
                           L->rs, L->rp + p * NB, L->cols, p ? tmp : sums, p ? tdots : dots, n);
        }
        for (int j = 0; j < L->ns; j++)
            for (int b = 0; b < NB; b++) *L->sum_out[j][b] += sums[b];
        for (int c = 0; c < L->nc; c++)
            for (int b = 0; b < NB; b++) *L->dot_out[c][b] += dots[c][b];
        i++;
    }
}

CLONES static double run(const Sweep *S, int64_t s, int64_t e, int derivs, Buffers *B)
{
    const int D = S->D;
    int64_t idx[MAXD] = {0};
    double loss = 0.0;
    if (s >= e) return 0.0;
    for (int d = 0; d < D; d++)
        if (S->shape[d] == 0) return 0.0; /* no cells */
    if (D == 1) { /* one line: positions [s, e) of the only axis */
        for (int64_t k0 = 0; k0 < e - s; k0 += TILE)
            loss += do_tile(S, derivs, idx, s + k0, e - s - k0 < TILE ? e - s - k0 : TILE, B);
        return loss;
    }
    const int64_t len = S->shape[D - 1];
    const int ax = D - 2; /* lines are taken NB at a time along this axis */
    const int64_t lo = ax == 0 ? s : 0, hi = ax == 0 ? e : S->shape[ax];
    idx[0] = s;
    for (;;) {
        int64_t j = lo;
        for (; j + NB <= hi; j += NB) {
            idx[ax] = j;
            for (int64_t k0 = 0; k0 < len; k0 += TILE)
                do_block(S, derivs, idx, k0, len - k0 < TILE ? len - k0 : TILE, B, &loss);
        }
        for (; j < hi; j++) {
            idx[ax] = j;
            for (int64_t k0 = 0; k0 < len; k0 += TILE)
                loss += do_tile(S, derivs, idx, k0, len - k0 < TILE ? len - k0 : TILE, B);
        }
        /* the next index over axes 0 .. D-3 */
        int d = D - 3;
        for (; d >= 0; d--) {
            idx[d]++;
            if (idx[d] < (d == 0 ? e : S->shape[d])) break;
            idx[d] = d == 0 ? s : 0;
        }
        if (d < 0) break;
    }
    return loss;
}

/* ------------------------------------------------------------ Python entry */
static int parse(Reader *R, Sweep *S)
{
    S->D = (int)next(R);
    if (S->D < 1 || S->D > MAXD) return -1;
    for (int d = 0; d < S->D; d++) {
        S->shape[d] = next(R);
        if (S->shape[d] < 0) return -1;
    }
    S->family = (int)next(R);
    S->n_terms = (int)next(R);
    S->n_ops = (int)next(R);
    if (R->bad || S->n_terms < 0 || S->n_ops < 0 ||
        (S->family != FAM_POISSON && S->family != FAM_GAUSSIAN))
        return -1;
    S->y = operand(R, S->D);
    S->w = operand(R, S->D);
    if (!S->y.p) return -1;
    S->coef = calloc((size_t)S->n_terms + 1, sizeof(double));
    S->term = calloc((size_t)S->n_terms + 1, sizeof(Operand));
    S->op = calloc((size_t)S->n_ops + 1, sizeof(Op));
    if (!S->coef || !S->term || !S->op) return -2;
    for (int t = 0; t < S->n_terms; t++) {
        S->coef[t] = as_double(next(R));
        S->term[t] = operand(R, S->D);
        if (!S->term[t].p) return -1;
    }
    for (int i = 0; i < S->n_ops && !R->bad; i++) {
        Op *op = &S->op[i];
        op->base = (int)next(R);
        op->factor = operand(R, S->D);
        op->n_dest = (int)next(R);
        if (op->n_dest < 0 || op->n_dest > 64) return -1;
        op->dest = calloc((size_t)op->n_dest + 1, sizeof(Dest));
        if (!op->dest) return -2;
        int nr = 0, nc = 0, ns = 0;
        for (int j = 0; j < op->n_dest; j++) {
            Dest *dst = &op->dest[j];
            dst->kind = (int)next(R);
            dst->out = operand(R, S->D);
            if (R->bad || !dst->out.p) return -1;
            if (dst->kind == DEST_ROW) {
                if (dst->out.st[S->D - 1] != 1 && S->shape[S->D - 1] != 1) return -1;
                nr++;
            } else if (dst->kind == DEST_DOT) {
                dst->col = operand(R, S->D);
                if (!dst->col.p) return -1;
                nc++;
            } else if (dst->kind == DEST_SUM) {
                ns++;
            } else {
                return -1;
            }
        }
        if (nr > MAXR || nc > MAXC || ns > 8 || (op->base && S->family == FAM_POISSON)) return -1;
    }
    return R->bad || R->at != R->n ? -1 : 0;
}

static void release(Sweep *S)
{
    if (S->op)
        for (int i = 0; i < S->n_ops; i++) free(S->op[i].dest);
    free(S->op);
    free(S->coef);
    free(S->term);
}

PyDoc_STRVAR(sweep_doc,
             "sweep(description, s, e, derivs) -> float\n\n"
             "Run the pass described by an int64 buffer over positions [s, e) of\n"
             "axis 0; returns the weighted log-likelihood sum (see _compiled.py).");

static PyObject *sweep(PyObject *self, PyObject *args)
{
    Py_buffer buf;
    long long s, e;
    int derivs;
    if (!PyArg_ParseTuple(args, "y*LLp", &buf, &s, &e, &derivs)) return NULL;
    if (buf.itemsize != 8 || buf.len % 8) {
        PyBuffer_Release(&buf);
        PyErr_SetString(PyExc_ValueError, "description must be an int64 buffer");
        return NULL;
    }
    Reader R = {(const int64_t *)buf.buf, buf.len / 8, 0, 0};
    Sweep S;
    memset(&S, 0, sizeof S);
    int rc = parse(&R, &S);
    Buffers B = {NULL, NULL, NULL, NULL};
    double *mem = NULL;
    if (rc == 0) {
        mem = malloc(sizeof(double) * TILE * N_TILES);
        if (!mem) rc = -2;
    }
    if (rc == 0 && (s < 0 || e < s || e > S.shape[0])) rc = -1;
    double loss = 0.0;
    if (rc == 0) {
        B.eta = mem;
        B.h = mem + TILE;
        B.g = mem + (1 + NB) * TILE;
        B.scratch = mem + (1 + 2 * NB) * TILE;
        Py_BEGIN_ALLOW_THREADS
        loss = run(&S, s, e, derivs, &B);
        Py_END_ALLOW_THREADS
    }
    free(mem);
    release(&S);
    PyBuffer_Release(&buf);
    if (rc == -2) return PyErr_NoMemory();
    if (rc) {
        PyErr_SetString(PyExc_ValueError, "malformed sweep description");
        return NULL;
    }
    return PyFloat_FromDouble(loss);
}

static PyMethodDef methods[] = {{"sweep", sweep, METH_VARARGS, sweep_doc}, {NULL, NULL, 0, NULL}};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_sweep",
                                    "Compiled sweep over the cells of a panel (optional).", -1,
                                    methods};

PyMODINIT_FUNC PyInit__sweep(void) { return PyModule_Create(&module); }
