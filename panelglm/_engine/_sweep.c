/*
 * One compiled sweep over the cells of a chunk: the linear predictor, the
 * family's loss and curvature, and every reduction, contraction and dot
 * product a pass needs, while each line of cells is in cache.
 *
 * The grid is C-ordered with D axes; a chunk is positions [s, e) of axis 0.
 * Its cells are walked as lines along the last axis (tiles of at most TILE
 * cells), every other index fixed. An operand is the start of an array's
 * buffer and D element strides, zero along the axes it does not vary on, so
 * any block layout is one loop. Along a line an operand is constant (stride 0), contiguous
 * (stride 1) or gathered into a scratch tile; a float32 input (stored cells) is converted,
 * exactly, as it is gathered.
 *
 * Per tile: eta = sum of coef * term; then the family writes the curvature h
 * (and, for the Gaussian and binomial, the residual g) and adds the loss; then
 * each "op" forms v = h * factor (or g) once, in registers, and adds it to up
 * to three row targets (targets that keep the last axis), to one running sum
 * (for the targets that drop it) and to up to four dot products with
 * cell-level columns. Each op is a loop specialised at compile time to its
 * shape, so a value is loaded once and every output it feeds is updated in the
 * same iteration. Lines go in blocks of NB along axis D-2, so that a row
 * target they share takes one add for the block; up to NM ops of one shape
 * share a loop. Axis D-2 is walked in spans of about SPAN_CELLS cells, every
 * outer index per span, so that row targets varying along it but not along the
 * outer axes (jk of an i x j x k grid) stay in L2 while the outer axes run.
 *
 * Files: _sweep_simd.h (vector helpers, exp, the linear predictor's and the
 * family's loops), _sweep_loops.h (the op loops), _sweep_read.h (reading a
 * description), _sweep_lines.h (locating operands on lines and blocks of
 * lines; which ops share a loop), and this one (the walk over lines and the
 * Python entry).
 *
 * Sums run in 4-lane partial sums (GCC vector extensions), in the same order
 * on every code path and however many threads run the parts; the compiler
 * may fuse multiplies and adds on CPUs that have FMA, so the last bits can
 * differ between machines. Only the Python C API is used: a description is
 * an int64 buffer of counts, kinds and indices into a sequence of operand
 * arrays (panelglm/_compiled.py writes both), whose buffers the sweep
 * acquires and checks itself (_sweep_read.h). The GIL is released while it
 * runs.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "_sweep_simd.h"
#include "_sweep_loops.h"

#include "_sweep_read.h"
#include "_sweep_lines.h"

/* ------------------------------------------------------------------ sweep */
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
        if (o->st[D - 1] == 0) c += S->coef[t] * value_at(o, offset_at(o, idx, D, k0));
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
            case 0: eta_terms(0, derivs, B->eta, n, first, c, vt, vc); break;
            case 1: eta_terms(1, derivs, B->eta, n, first, c, vt, vc); break;
            case 2: eta_terms(2, derivs, B->eta, n, first, c, vt, vc); break;
            case 3: eta_terms(3, derivs, B->eta, n, first, c, vt, vc); break;
            default: eta_terms(4, derivs, B->eta, n, first, c, vt, vc); break;
            }
            first = 0;
            nv = 0;
        }
    }
    const double *y = tile_of(&S->y, idx, D, k0, n, B->scratch);
    const double *w = S->w.p ? tile_of(&S->w, idx, D, k0, n, B->scratch + TILE) : NULL;
    const double *m = S->m.p ? tile_of(&S->m, idx, D, k0, n, B->scratch + 2 * TILE) : NULL;
    /* exp by its one-step path; the tile again by the careful one if any
     * result was not a normal number (the same bits where both apply). The
     * common shapes (weights or not) are specialised; the rare pass not. */
    int all = 1;
    /* the trials are binomial's only (a constant NULL for the others) */
#define FAMILY(FAM, NORMAL, HW) \
    family_tile(FAM, derivs, NORMAL, HW, B->eta, y, w, FAM == FAM_BINOMIAL ? m : NULL, h, g, n, &all)
    if (S->family == FAM_GAUSSIAN) return w ? FAMILY(FAM_GAUSSIAN, 0, 1) : FAMILY(FAM_GAUSSIAN, 0, 0);
    double f;
    if (S->family == FAM_POISSON)
        f = w ? FAMILY(FAM_POISSON, 1, 1) : FAMILY(FAM_POISSON, 1, 0);
    else
        f = w ? FAMILY(FAM_BINOMIAL, 1, 1) : FAMILY(FAM_BINOMIAL, 1, 0);
    if (all) return f;
    return S->family == FAM_POISSON ? FAMILY(FAM_POISSON, 0, w != NULL)
                                    : FAMILY(FAM_BINOMIAL, 0, w != NULL);
#undef FAMILY
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
                fc = value_at(&op->factor, offset_at(&op->factor, idx, D, k0));
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
            double *o = out_at(&dst->out, idx, D, k0);
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
        const int m = S->op[i].fused;
        if (m > 1) {
            double sums[NM][NB];
            for (int j = 0; j < m; j++) op_lines(S, &S->op[i + j], idx0, k0, n, B, scratch, &lines[j]);
            multi_dispatch(m, lines, sums, n);
            for (int j = 0; j < m; j++)
                for (int q = 0; q < lines[j].ns; q++)
                    for (int b = 0; b < NB; b++)
                        lines[j].sum_out[q][b * lines[j].sos[q]] += sums[j][b];
            i += m;
            continue;
        }
        OpLines *L = &lines[0];
        op_lines(S, &S->op[i], idx0, k0, n, B, scratch, L);
        double sums[NB], dots[MAXC][NB];
        /* Rows that vary along axis D-2 one per loop: the first loop also
         * takes the shared rows, the sums and the dot products. */
        for (int p = 0; p == 0 || p < L->nrp; p++) {
            double tmp[NB], tdots[MAXC][NB];
            block_dispatch(p ? 0 : L->nrs, L->nrp > 0, p ? 0 : L->nc, L, p, p ? tmp : sums,
                           p ? tdots : dots, n);
        }
        for (int j = 0; j < L->ns; j++)
            for (int b = 0; b < NB; b++) L->sum_out[j][b * L->sos[j]] += sums[b];
        for (int c = 0; c < L->nc; c++)
            for (int b = 0; b < NB; b++) L->dot_out[c][b * L->dos[c]] += dots[c][b];
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
    /* Rows of targets that vary along axis D-2 but not along an outer axis
     * (jk in an i x j x k panel) are revisited at every outer index. Axis D-2
     * is walked in spans of about SPAN_CELLS cells, all outer indices per
     * span, so that those rows stay in L2 meanwhile. */
    int64_t span = hi - lo;
    if (ax > 0) {
        int64_t per = SPAN_CELLS / len;
        per = per < NB ? NB : per - per % NB;
        if (per < span) span = per;
    }
    for (int64_t j0 = lo; j0 < hi; j0 += span) {
        const int64_t j1 = hi - j0 < span ? hi : j0 + span;
        for (int d = 0; d < ax; d++) idx[d] = d == 0 ? s : 0;
        for (;;) {
            int64_t j = j0;
            for (; j + NB <= j1; j += NB) {
                idx[ax] = j;
                for (int64_t k0 = 0; k0 < len; k0 += TILE)
                    do_block(S, derivs, idx, k0, len - k0 < TILE ? len - k0 : TILE, B, &loss);
            }
            for (; j < j1; j++) {
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
    }
    return loss;
}

/* ------------------------------------------------------------ Python entry */
PyDoc_STRVAR(sweep_doc,
             "sweep(description, operands, s, e, derivs) -> float\n\n"
             "Run the pass described by an int64 buffer over positions [s, e) of\n"
             "axis 0, on the arrays of the sequence ``operands`` (float64, or float32\n"
             "where only read; one axis per axis of the grid, each of its size or 1)\n"
             "that the description names by index; returns the weighted log-likelihood\n"
             "sum (see compiled.py). A description or operand it cannot run raises\n"
             "ValueError or TypeError.");

static PyObject *sweep(PyObject *self, PyObject *args)
{
    (void)self;
    Py_buffer buf;
    PyObject *given;
    long long s, e;
    int derivs;
    if (!PyArg_ParseTuple(args, "y*OLLp", &buf, &given, &s, &e, &derivs)) return NULL;
    if (buf.itemsize != 8 || buf.len % 8 || (uintptr_t)buf.buf % sizeof(int64_t)) {
        PyBuffer_Release(&buf);
        PyErr_SetString(PyExc_ValueError, "sweep description must be an aligned int64 buffer");
        return NULL;
    }
    PyObject *seq = PySequence_Fast(given, "sweep operands must be a list or tuple of arrays");
    if (!seq) {
        PyBuffer_Release(&buf);
        return NULL;
    }
    Reader R = {(const int64_t *)buf.buf, buf.len / 8, 0, PySequence_Fast_GET_SIZE(seq), 0, 0};
    Sweep S;
    memset(&S, 0, sizeof S);
    Operands O;
    memset(&O, 0, sizeof O);
    int rc = parse(&R, &S);
    if (rc == -1) parse_error(&R);
    if (rc == 0) rc = acquire(&O, &S, seq);
    if (rc == 0) plan_fusion(&S);
    if (rc == 0 && (s < 0 || e < s || e > S.shape[0])) {
        PyErr_Format(PyExc_ValueError, "sweep over positions [%lld, %lld) of an axis of %lld", s,
                     e, (long long)S.shape[0]);
        rc = -1;
    }
    Buffers B = {NULL, NULL, NULL, NULL};
    double *mem = NULL;
    if (rc == 0) {
        mem = malloc(sizeof(double) * TILE * N_TILES);
        if (!mem) rc = -2;
    }
    double loss = 0.0;
    if (rc == 0) {
        B.eta = mem;
        B.h = mem + TILE;
        B.g = mem + (1 + NB) * TILE;
        B.scratch = mem + (1 + 2 * NB) * TILE;
        /* The operands' buffers stay acquired (their memory cannot move or
         * be freed) until they are released below, with the GIL again. */
        Py_BEGIN_ALLOW_THREADS
        loss = run(&S, s, e, derivs, &B);
        Py_END_ALLOW_THREADS
    }
    free(mem);
    release_operands(&O);
    release(&S);
    Py_DECREF(seq);
    PyBuffer_Release(&buf);
    if (rc == -2) return PyErr_NoMemory();
    if (rc) return NULL;
    return PyFloat_FromDouble(loss);
}

/* ------------------------------------------------------------ tally */
PyDoc_STRVAR(tally_doc,
             "tally(y, w, counts) -> int\n\n"
             "Add w[i] (1 where w is None) into counts[y[i]] for every value of y\n"
             "(float64, C-contiguous, any shape; w the same size). Returns one more\n"
             "than the largest value seen; -1 if a value is not a non-negative\n"
             "integer (NaN included), -2 if one is at least len(counts) (counts\n"
             "then partly added).");

/* A C-contiguous float64 buffer of obj (writable if asked); -1 with an exception. */
static int contiguous_float64(PyObject *obj, Py_buffer *v, int write, const char *name)
{
    if (PyObject_GetBuffer(obj, v, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | (write ? PyBUF_WRITABLE : 0))) {
        PyErr_Format(PyExc_ValueError, "tally: %s must be a C-contiguous%s array", name,
                     write ? ", writable" : "");
        return -1;
    }
    if (!is_float64(v->format) || v->itemsize != (Py_ssize_t)sizeof(double) ||
        (uintptr_t)v->buf % sizeof(double)) {
        PyBuffer_Release(v);
        PyErr_Format(PyExc_ValueError, "tally: %s must be aligned float64", name);
        return -1;
    }
    return 0;
}

static PyObject *tally(PyObject *self, PyObject *args)
{
    (void)self;
    PyObject *yo, *wo, *co;
    if (!PyArg_ParseTuple(args, "OOO", &yo, &wo, &co)) return NULL;
    Py_buffer y, w, c;
    const int weighted = wo != Py_None;
    if (contiguous_float64(yo, &y, 0, "y")) return NULL;
    if (weighted && contiguous_float64(wo, &w, 0, "w")) {
        PyBuffer_Release(&y);
        return NULL;
    }
    if (contiguous_float64(co, &c, 1, "counts")) {
        if (weighted) PyBuffer_Release(&w);
        PyBuffer_Release(&y);
        return NULL;
    }
    long long top = -1;
    int failed = 0;
    if (weighted && w.len != y.len) {
        PyErr_SetString(PyExc_ValueError, "tally: w must have as many values as y");
        failed = 1;
    } else {
        const double *yp = (const double *)y.buf, *wp = weighted ? (const double *)w.buf : NULL;
        double *cp = (double *)c.buf;
        const Py_ssize_t n = y.len / (Py_ssize_t)sizeof(double);
        const double size = (double)(c.len / (Py_ssize_t)sizeof(double));
        long long largest = -1;
        int bad = 0;
        Py_BEGIN_ALLOW_THREADS
        for (Py_ssize_t i = 0; i < n; i++) {
            const double v = yp[i];
            /* NaN fails the first test; the range is checked before the cast */
            if (!(v >= 0.0)) bad = 1;
            else if (!(v < size)) bad = 2;
            else if ((double)(long long)v != v) bad = 1;
            if (bad) break;
            const long long k = (long long)v;
            cp[k] += wp ? wp[i] : 1.0;
            if (k > largest) largest = k;
        }
        Py_END_ALLOW_THREADS
        top = bad ? -bad : largest + 1;
    }
    PyBuffer_Release(&c);
    if (weighted) PyBuffer_Release(&w);
    PyBuffer_Release(&y);
    if (failed) return NULL;
    return PyLong_FromLongLong(top);
}

static PyMethodDef methods[] = {{"sweep", sweep, METH_VARARGS, sweep_doc},
                                {"tally", tally, METH_VARARGS, tally_doc},
                                {NULL, NULL, 0, NULL}};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_sweep",
                                    "Compiled sweep over the cells of a panel (optional).", -1,
                                    methods, NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__sweep(void) { return PyModule_Create(&module); }
