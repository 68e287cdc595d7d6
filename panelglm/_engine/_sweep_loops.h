/*
 * The op loops of panelglm/_engine/_sweep.c (see there), each specialised at compile
 * time to its shape: one line at a time, a block of NB lines, and up to NM
 * ops of one shape on a block. Included once, by that file only.
 */
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

/* ------------------------------------------------------- blocks of lines */
/* NB neighbouring lines along axis D-2 at once. A row target that does not
 * vary along that axis (the ik target of an ijk grid) receives the sum of
 * the NB lines' rows, formed in registers: one read-modify-write for NB
 * lines instead of one each, which is what bounds a line at a time. Rows
 * that do vary along it (NRP, at most one per loop) and the running sums
 * stay per line. */

/* An op's operands at a block of lines, located once per block: line b's
 * operand is line 0's moved by b strides (a gathered tile's stride is TILE). */
typedef struct {
    int fk, nrs, nrp, nc, ns;
    const double *base;
    const double *f; /* fk 1: the factor's tile on line 0; line b's at f + b * fs */
    int64_t fs;
    double fc[NB]; /* fk 2: the factor, constant along each line */
    double *rs[MAXR]; /* rows shared by the NB lines */
    double *rp[MAXR]; /* rows per line, line b's at rp + b * rps */
    int64_t rps[MAXR];
    double *sum_out[8]; /* running sums, line b's at sum_out + b * sos */
    int64_t sos[8];
    double *dot_out[MAXC]; /* dot products, line b's at dot_out + b * dos */
    int64_t dos[MAXC];
    const double *cols[MAXC]; /* their columns, line b's at cols + b * cs */
    int64_t cs[MAXC];
} OpLines;

/* The addresses one loop over a block reads and writes, per line, in a
 * local of the loop's function whose address goes nowhere but the inlined
 * loop body: the compiler keeps them in registers. Read from the caller's
 * arrays instead, they were reloaded at every step, since the stores (memcpy,
 * which may alias anything) could have changed them. */
typedef struct {
    const double *f[NB];
    double fc[NB];
    double *rs[MAXR], *rp[NB];
    const double *cols[MAXC * NB];
} Lines;

/* Line by line addresses of L's operands for a loop that takes its shared
 * rows (NRS), per-line row p (NRP) and dot products (NC). */
ALWAYS void lines_of(int FK, int NRS, int NRP, int NC, const OpLines *L, int p, Lines *o)
{
    for (int b = 0; b < NB; b++) {
        o->f[b] = FK == 1 ? L->f + b * L->fs : NULL;
        o->fc[b] = FK == 2 ? L->fc[b] : 0.0;
        o->rp[b] = NRP ? L->rp[p] + b * L->rps[p] : NULL;
    }
    for (int r = 0; r < NRS; r++) o->rs[r] = L->rs[r];
    for (int c = 0; c < NC; c++)
        for (int b = 0; b < NB; b++) o->cols[c * NB + b] = L->cols[c] + b * L->cs[c];
}

ALWAYS void block_body(int FK, int NRS, int NRP, int NC, const double *h, const Lines *o, v4 *s,
                       v4 (*d)[NB], int64_t k)
{
    v4 v[NB];
    for (int b = 0; b < NB; b++) {
        v[b] = ld(h + b * TILE + k);
        if (FK == 1) v[b] *= ld(o->f[b] + k);
        if (FK == 2) v[b] *= splat(o->fc[b]);
        s[b] += v[b];
    }
    if (NRS > 0) {
        v4 t = (v[0] + v[1]) + (v[2] + v[3]);
        for (int r = 0; r < NRS; r++) st(o->rs[r] + k, ld(o->rs[r] + k) + t);
    }
    if (NRP)
        for (int b = 0; b < NB; b++) st(o->rp[b] + k, ld(o->rp[b] + k) + v[b]);
    for (int c = 0; c < NC; c++)
        for (int b = 0; b < NB; b++) d[c][b] += v[b] * ld(o->cols[c * NB + b] + k);
}

/* One op on NB lines' tiles, with L's shared rows (NRS), its per-line row p
 * (NRP) and its dot products (NC); sums[b] gets line b's sum, dots[c][b]
 * its dots. */
ALWAYS void op_block(int FK, int NRS, int NRP, int NC, const double *restrict h,
                     const OpLines *L, int p, double *sums, double (*dots)[NB], int64_t n)
{
    v4 z = splat(0.0), s[NB], d[MAXC][NB];
    for (int b = 0; b < NB; b++) {
        s[b] = z;
        for (int c = 0; c < MAXC; c++) d[c][b] = z;
    }
    Lines o;
    lines_of(FK, NRS, NRP, NC, L, p, &o);
    int64_t k = 0;
    for (; k + LANES <= n; k += LANES) block_body(FK, NRS, NRP, NC, h, &o, s, d, k);
    for (int b = 0; b < NB; b++) {
        sums[b] = hsum(s[b]);
        for (int c = 0; c < NC; c++) dots[c][b] = hsum(d[c][b]);
    }
    for (; k < n; k++) {
        double v[NB];
        for (int b = 0; b < NB; b++) {
            v[b] = h[b * TILE + k];
            if (FK == 1) v[b] *= o.f[b][k];
            if (FK == 2) v[b] *= o.fc[b];
            sums[b] += v[b];
        }
        for (int r = 0; r < NRS; r++) o.rs[r][k] += (v[0] + v[1]) + (v[2] + v[3]);
        if (NRP)
            for (int b = 0; b < NB; b++) o.rp[b][k] += v[b];
        for (int c = 0; c < NC; c++)
            for (int b = 0; b < NB; b++) dots[c][b] += v[b] * o.cols[c * NB + b][k];
    }
}

#define BLK_NC(FK, NRS, NRP)                                                   \
    switch (nc) {                                                              \
    case 0: op_block(FK, NRS, NRP, 0, h, L, p, sums, dots, n); return;         \
    case 1: op_block(FK, NRS, NRP, 1, h, L, p, sums, dots, n); return;         \
    case 2: op_block(FK, NRS, NRP, 2, h, L, p, sums, dots, n); return;         \
    case 3: op_block(FK, NRS, NRP, 3, h, L, p, sums, dots, n); return;         \
    default: op_block(FK, NRS, NRP, 4, h, L, p, sums, dots, n); return;        \
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

#define BLK_FK(FK)                                                                           \
    NOINLINE CLONES static void block_fk##FK(int nrs, int nrp, int nc, const double *h,     \
                                             const OpLines *L, int p, double *sums,         \
                                             double (*dots)[NB], int64_t n)                 \
    {                                                                                        \
        BLK_R(FK)                                                                            \
    }
BLK_FK(0)
BLK_FK(1)
BLK_FK(2)

/* L's op on a block: nrs shared rows, per-line row p if nrp, nc dot products. */
ALWAYS void block_dispatch(int nrs, int nrp, int nc, const OpLines *L, int p, double *sums,
                           double (*dots)[NB], int64_t n)
{
    const double *h = L->base;
    if (L->fk == 0)
        block_fk0(nrs, nrp, nc, h, L, p, sums, dots, n);
    else if (L->fk == 1)
        block_fk1(nrs, nrp, nc, h, L, p, sums, dots, n);
    else
        block_fk2(nrs, nrp, nc, h, L, p, sums, dots, n);
}

#define NM 3 /* ops fused into one loop */

ALWAYS void multi_body(int M, int FK, int NRS, int NRP, const double *h, const Lines *o,
                       v4 (*s)[NB], int64_t k)
{
    v4 hb[NB];
    for (int b = 0; b < NB; b++) hb[b] = ld(h + b * TILE + k);
    for (int m = 0; m < M; m++) {
        v4 v[NB];
        for (int b = 0; b < NB; b++) {
            v[b] = hb[b] * (FK == 1 ? ld(o[m].f[b] + k) : splat(o[m].fc[b]));
            s[m][b] += v[b];
        }
        if (NRS > 0) {
            v4 t = (v[0] + v[1]) + (v[2] + v[3]);
            for (int r = 0; r < NRS; r++) st(o[m].rs[r] + k, ld(o[m].rs[r] + k) + t);
        }
        if (NRP)
            for (int b = 0; b < NB; b++) st(o[m].rp[b] + k, ld(o[m].rp[b] + k) + v[b]);
    }
}

/* M fused ops on NB lines' tiles; sums[m][b] gets op m's sum on line b. */
ALWAYS void multi_block(int M, int FK, int NRS, int NRP, const double *restrict h,
                        const OpLines *L, double (*sums)[NB], int64_t n)
{
    v4 s[NM][NB];
    Lines o[NM];
    for (int m = 0; m < M; m++) {
        for (int b = 0; b < NB; b++) s[m][b] = splat(0.0);
        lines_of(FK, NRS, NRP, 0, &L[m], 0, &o[m]);
    }
    int64_t k = 0;
    for (; k + LANES <= n; k += LANES) multi_body(M, FK, NRS, NRP, h, o, s, k);
    for (int m = 0; m < M; m++)
        for (int b = 0; b < NB; b++) sums[m][b] = hsum(s[m][b]);
    for (; k < n; k++) {
        for (int m = 0; m < M; m++) {
            double v[NB];
            for (int b = 0; b < NB; b++) {
                v[b] = h[b * TILE + k] * (FK == 1 ? o[m].f[b][k] : o[m].fc[b]);
                sums[m][b] += v[b];
            }
            for (int r = 0; r < NRS; r++) o[m].rs[r][k] += (v[0] + v[1]) + (v[2] + v[3]);
            if (NRP)
                for (int b = 0; b < NB; b++) o[m].rp[b][k] += v[b];
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
                                                 const OpLines *L, double (*sums)[NB],   \
                                                 int64_t n)                              \
    {                                                                                    \
        MULTI_R(M, FK)                                                                   \
    }
MULTI_FN(2, 1)
MULTI_FN(2, 2)
MULTI_FN(3, 1)
MULTI_FN(3, 2)

/* m fused ops L[0 .. m-1] of one shape. */
ALWAYS void multi_dispatch(int m, const OpLines *L, double (*sums)[NB], int64_t n)
{
    const int fk = L[0].fk, nrs = L[0].nrs, nrp = L[0].nrp > 0;
    if (m == 2)
        (fk == 1 ? multi_2_1 : multi_2_2)(nrs, nrp, L[0].base, L, sums, n);
    else
        (fk == 1 ? multi_3_1 : multi_3_2)(nrs, nrp, L[0].base, L, sums, n);
}
