/*
 * The description a sweep reads (panelglm/_compiled.py writes it): counts,
 * addresses, element strides and coefficient bits in an int64 buffer, every
 * read checked against its length. Included once, by panelglm/_sweep.c.
 */
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

typedef struct {
    int kind;
    Operand out, col;
} Dest;

typedef struct {
    int base; /* 0: h, 1: g */
    Operand factor;
    int n_dest;
    Dest *dest;
    int fused; /* ops from this one on that share its loop (0 inside a group) */
} Op;

typedef struct {
    int D, family, n_terms, n_ops;
    int64_t shape[MAXD];
    Operand y, w, m; /* m: binomial trials (absent: 1) */
    double *coef;
    Operand *term;
    Op *op;
} Sweep;

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
        (S->family != FAM_POISSON && S->family != FAM_GAUSSIAN && S->family != FAM_BINOMIAL))
        return -1;
    S->y = operand(R, S->D);
    S->w = operand(R, S->D);
    S->m = operand(R, S->D);
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

