/*
 * Locating operands along lines of cells for panelglm/_engine/_sweep.c (see there):
 * one line's, a block of lines' (an op's operands as line 0's address and a
 * stride), and which ops of a sweep share a loop. Included once, by that
 * file only.
 */

/* The tiles a sweep works in: eta, h and g of NB lines, and scratch. */
typedef struct {
    double *eta, *h, *g, *scratch;
} Buffers;

/* ------------------------------------------------------------ line helpers */
/* An operand's element offset at the current line and tile start; ``at``
 * is the line's offset without the tile. */
ALWAYS int64_t offset_at(const Operand *o, const int64_t *idx, int D, int64_t k0)
{
    int64_t off = k0 * o->st[D - 1];
    for (int d = 0; d < D - 1; d++) off += idx[d] * o->st[d];
    return off;
}

/* An output (always float64) at the current line and tile start. */
ALWAYS double *out_at(const Operand *o, const int64_t *idx, int D, int64_t k0)
{
    return (double *)o->p + offset_at(o, idx, D, k0);
}

/* An input's value at an element offset, as a double (float32 exactly so). */
ALWAYS double value_at(const Operand *o, int64_t off)
{
    return o->f32 ? (double)((const float *)o->p)[off] : ((const double *)o->p)[off];
}

/* n float32 values from q at element stride s, as doubles in scratch. The
 * pass reads stored float32 cells this way, a tile at a time while it is
 * in cache, instead of a float64 copy of every chunk made beforehand; it
 * asks for the values ahead itself, as the float64 loops do (see PREFETCH). */
ALWAYS const double *widen_tile(const float *q, int64_t s, int64_t n, double *scratch)
{
    if (s != 1) {
        for (int64_t k = 0; k < n; k++) scratch[k] = (double)q[k * s];
        return scratch;
    }
    int64_t k = 0;
    for (; k + 16 <= n; k += 16) { /* one 64-byte line of floats per step */
        PREFETCH(q + k + AHEAD);
        for (int j = 0; j < 16; j++) scratch[k + j] = (double)q[k + j];
    }
    for (; k < n; k++) scratch[k] = (double)q[k];
    return scratch;
}

/* A contiguous float64 view of n of an input's values from element offset
 * off at stride s: the operand itself when it is float64 and contiguous,
 * else gathered (and converted) into scratch. */
ALWAYS const double *tile_from(const Operand *o, int64_t off, int64_t s, int64_t n,
                               double *scratch)
{
    if (o->f32) return widen_tile((const float *)o->p + off, s, n, scratch);
    const double *p = (const double *)o->p + off;
    if (s == 1) return p;
    for (int64_t k = 0; k < n; k++) scratch[k] = p[k * s];
    return scratch;
}

/* A contiguous view of an input along a tile (see tile_from). */
ALWAYS const double *tile_of(const Operand *o, const int64_t *idx, int D, int64_t k0, int64_t n,
                             double *scratch)
{
    return tile_from(o, offset_at(o, idx, D, k0), o->st[D - 1], n, scratch);
}

/* The op's operands on the NB lines of a block: line b is line 0 moved by
 * b positions along axis D-2, so each operand is located once. */
static void op_lines(const Sweep *S, const Op *op, const int64_t *idx, int64_t k0, int64_t n,
                     const Buffers *B, double *scratch, OpLines *L)
{
    const int D = S->D, ax = D - 2;
    L->fk = 0;
    L->base = op->base ? B->g : B->h;
    if (op->factor.p) {
        const Operand *o = &op->factor;
        const int64_t off = offset_at(o, idx, D, k0);
        const int64_t sb = o->st[ax], s = o->st[D - 1];
        L->fk = s == 0 ? 2 : 1;
        if (L->fk == 2) {
            for (int b = 0; b < NB; b++) L->fc[b] = value_at(o, off + b * sb);
        } else if (s == 1 && !o->f32) {
            L->f = (const double *)o->p + off;
            L->fs = sb;
        } else {
            for (int b = 0; b < NB; b++) tile_from(o, off + b * sb, s, n, scratch + b * TILE);
            L->f = scratch;
            L->fs = TILE;
        }
    }
    L->nrs = L->nrp = L->nc = L->ns = 0;
    for (int j = 0; j < op->n_dest; j++) {
        const Dest *dst = &op->dest[j];
        double *o = out_at(&dst->out, idx, D, k0);
        const int64_t sb = dst->out.st[ax];
        if (dst->kind == DEST_ROW) {
            if (sb == 0) {
                L->rs[L->nrs++] = o;
            } else {
                L->rp[L->nrp] = o;
                L->rps[L->nrp++] = sb;
            }
        } else if (dst->kind == DEST_SUM) {
            L->sum_out[L->ns] = o;
            L->sos[L->ns++] = sb;
        } else {
            const Operand *col = &dst->col;
            const int64_t c = offset_at(col, idx, D, k0);
            const int64_t cb = col->st[ax], cs = col->st[D - 1];
            L->dot_out[L->nc] = o;
            L->dos[L->nc] = sb;
            if (cs == 1 && !col->f32) {
                L->cols[L->nc] = (const double *)col->p + c;
                L->cs[L->nc] = cb;
            } else {
                double *t = scratch + (NB + L->nc * NB) * TILE;
                for (int b = 0; b < NB; b++) tile_from(col, c + b * cb, cs, n, t + b * TILE);
                L->cols[L->nc] = t;
                L->cs[L->nc] = TILE;
            }
            L->nc++;
        }
    }
}

/* Whether op j can share a loop with op i: the same curvature row, a
 * factor of the same kind that needs no gathering (nor converting), the
 * same rows, and no dot products. Each op's own running sums and rows; h is
 * loaded once. */
static int fusable(const Sweep *S, const Op *a, const Op *b)
{
    const int D = S->D, ax = D - 2;
    if (a->base != b->base || !a->factor.p || !b->factor.p) return 0;
    int64_t sa = a->factor.st[D - 1], sb = b->factor.st[D - 1];
    if (sa != sb || (sa != 0 && sa != 1) || a->n_dest != b->n_dest) return 0;
    if (sa == 1 && (a->factor.f32 || b->factor.f32)) return 0;
    int nrp = 0;
    for (int j = 0; j < a->n_dest; j++) {
        const Dest *x = &a->dest[j], *y = &b->dest[j];
        if (x->kind != y->kind || x->kind == DEST_DOT) return 0;
        if (x->kind == DEST_ROW && ((x->out.st[ax] == 0) != (y->out.st[ax] == 0))) return 0;
        nrp += x->kind == DEST_ROW && x->out.st[ax] != 0;
    }
    return nrp <= 1;
}

/* Groups of up to NM consecutive fusable ops, chosen once per sweep. */
static void plan_fusion(Sweep *S)
{
    if (S->D < 2) return; /* one line: no blocks of lines (see run), and no axis D-2 */
    for (int i = 0; i < S->n_ops;) {
        int m = 1;
        while (m < NM && i + m < S->n_ops && fusable(S, &S->op[i], &S->op[i + m])) m++;
        S->op[i].fused = m;
        i += m;
    }
}

