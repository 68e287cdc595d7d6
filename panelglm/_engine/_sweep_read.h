/*
 * The description a sweep reads (panelglm/_compiled.py writes it) and the
 * arrays it names. The description is an int64 buffer of counts, kinds,
 * coefficient bits and indices into a sequence of operands; every read is
 * checked against its length and every index against the sequence. The
 * operands are objects with the buffer protocol (numpy arrays): each one
 * named is acquired once per call, checked (float64, or float32 if only
 * read; aligned, one axis per axis of the grid, each of the grid's size or
 * 1, strides whole elements, writable if written) and its element strides
 * worked out here, so no mistake on the Python side can make the sweep
 * touch memory outside them.
 * Included once, by panelglm/_engine/_sweep.c.
 */
/* ---------------------------------------------------------------- reading */
typedef struct {
    const void *p; /* NULL: absent */
    const int64_t *st; /* element strides, 0 along the axes it does not vary on */
    Py_ssize_t ix; /* index into the operands; -1: absent */
    int f32; /* float32 elements (an input only), converted to double as read */
} Operand;

typedef struct {
    const int64_t *w;
    Py_ssize_t n, at;
    Py_ssize_t n_operands;
    int bad; /* 1: read past the end; 2: an index out of range (bad_ix) */
    int64_t bad_ix;
} Reader;

static int64_t next(Reader *R)
{
    if (R->at >= R->n) {
        if (!R->bad) R->bad = 1;
        return 0;
    }
    return R->w[R->at++];
}

/* An operand's index: -1 for an absent one, else one of the sequence's. */
static Operand operand(Reader *R)
{
    Operand o = {NULL, NULL, -1, 0};
    int64_t ix = next(R);
    if (ix < -1 || ix >= R->n_operands) {
        if (!R->bad) {
            R->bad = 2;
            R->bad_ix = ix;
        }
        ix = -1;
    }
    o.ix = (Py_ssize_t)ix;
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

/* A malformed description: a ValueError saying what, -1. */
static int malformed(const char *what)
{
    PyErr_Format(PyExc_ValueError, "malformed sweep description: %s", what);
    return -1;
}

/* The description's counts, kinds and operand indices (no operand is read
 * yet). -1 with a ValueError set, or -2 when out of memory. */
static int parse(Reader *R, Sweep *S)
{
    /* Counts and kinds are checked as int64, before they are narrowed. */
    const int64_t D = next(R);
    if (R->bad) return -1;
    if (D < 1 || D > MAXD) return malformed("the grid must have 1 to 32 axes");
    S->D = (int)D;
    for (int d = 0; d < S->D; d++) {
        S->shape[d] = next(R);
        if (S->shape[d] < 0) return malformed("a negative size of the grid");
    }
    const int64_t family = next(R), n_terms = next(R), n_ops = next(R);
    if (R->bad) return -1;
    if (family != FAM_POISSON && family != FAM_GAUSSIAN && family != FAM_BINOMIAL)
        return malformed("an unknown family");
    S->family = (int)family;
    /* Each term and op takes at least two words: counts beyond the words left are wrong. */
    if (n_terms < 0 || n_ops < 0 || n_terms > R->n || n_ops > R->n)
        return malformed("a count of terms or ops out of range");
    S->n_terms = (int)n_terms;
    S->n_ops = (int)n_ops;
    S->y = operand(R);
    S->w = operand(R);
    S->m = operand(R);
    if (R->bad) return -1;
    if (S->y.ix < 0) return malformed("the response is absent");
    S->coef = calloc((size_t)S->n_terms + 1, sizeof(double));
    S->term = calloc((size_t)S->n_terms + 1, sizeof(Operand));
    S->op = calloc((size_t)S->n_ops + 1, sizeof(Op));
    if (!S->coef || !S->term || !S->op) return -2;
    for (int t = 0; t < S->n_terms; t++) {
        S->coef[t] = as_double(next(R));
        S->term[t] = operand(R);
        if (R->bad) return -1;
        if (S->term[t].ix < 0) return malformed("a term of the linear predictor is absent");
    }
    for (int i = 0; i < S->n_ops; i++) {
        Op *op = &S->op[i];
        const int64_t base = next(R);
        op->factor = operand(R);
        const int64_t n_dest = next(R);
        if (R->bad) return -1;
        if (base != 0 && base != 1) return malformed("an op's row is neither h nor g");
        op->base = (int)base;
        if (op->base && S->family == FAM_POISSON) return malformed("a Poisson op reads g");
        if (n_dest < 0 || n_dest > 64) return malformed("an op's count of outputs out of range");
        op->n_dest = (int)n_dest;
        op->dest = calloc((size_t)op->n_dest + 1, sizeof(Dest));
        if (!op->dest) return -2;
        int nr = 0, nc = 0, ns = 0;
        for (int j = 0; j < op->n_dest; j++) {
            Dest *dst = &op->dest[j];
            const int64_t kind = next(R);
            dst->kind = kind == DEST_SUM || kind == DEST_ROW || kind == DEST_DOT ? (int)kind : -1;
            dst->out = operand(R);
            dst->col.ix = -1;
            if (dst->kind == DEST_DOT) dst->col = operand(R);
            if (R->bad) return -1;
            if (dst->out.ix < 0) return malformed("an op's output is absent");
            if (dst->kind == DEST_ROW) {
                nr++;
            } else if (dst->kind == DEST_DOT) {
                if (dst->col.ix < 0) return malformed("a dot product's column is absent");
                nc++;
            } else if (dst->kind == DEST_SUM) {
                ns++;
            } else {
                return malformed("an unknown kind of output");
            }
        }
        if (nr > MAXR || nc > MAXC || ns > 8) return malformed("an op with too many outputs");
    }
    if (R->bad) return -1;
    if (R->at != R->n) return malformed("words left over after the last op");
    return 0;
}

/* The error of a parse that ran out of words or met a bad index. */
static void parse_error(const Reader *R)
{
    if (PyErr_Occurred()) return;
    if (R->bad == 2)
        PyErr_Format(PyExc_ValueError,
                     "malformed sweep description: operand index %lld out of range for %zd "
                     "operands",
                     (long long)R->bad_ix, R->n_operands);
    else
        PyErr_SetString(PyExc_ValueError, "malformed sweep description: too short");
}

static void release(Sweep *S)
{
    if (S->op)
        for (int i = 0; i < S->n_ops; i++) free(S->op[i].dest);
    free(S->op);
    free(S->coef);
    free(S->term);
}

/* ------------------------------------------------------------- operands */
enum { USE_READ = 1, USE_WRITE = 2 };

/* The buffers of a call's operands: acquired once each, released together. */
typedef struct {
    Py_ssize_t n;
    Py_buffer *view;
    int64_t *st; /* D element strides per operand */
    unsigned char *f32; /* float32 elements */
    unsigned char *use; /* USE_READ | USE_WRITE; the views of those with a use are held */
    unsigned char *held;
} Operands;

static void note(Operands *O, const Operand *o, int use)
{
    if (o->ix >= 0) O->use[o->ix] |= (unsigned char)use;
}

/* Whether a buffer's format is the native-size type code ('d', 'f'),
 * optionally after a byte-order character that means this machine's order. */
static int is_format(const char *f, const char *code)
{
    const uint16_t one = 1;
    const int little = *(const unsigned char *)&one == 1;
    if (!f) return 0; /* no format: unsigned bytes */
    if (*f == '@' || *f == '=' || (*f == '<' && little) || ((*f == '>' || *f == '!') && !little))
        f++;
    return strcmp(f, code) == 0;
}

static int is_float64(const char *f) { return is_format(f, "d"); }

/* A TypeError or ValueError about operand ix, the error that led to it (if
 * any) as its context. Returns -1. */
static int operand_error(PyObject *type, Py_ssize_t ix, const char *what)
{
    PyObject *t, *v, *tb, *t2, *v2, *tb2;
    PyErr_Fetch(&t, &v, &tb);
    PyErr_NormalizeException(&t, &v, &tb);
    if (v && tb) PyException_SetTraceback(v, tb);
    PyErr_Format(type, "sweep operand %zd %s", ix, what);
    if (v) {
        PyErr_Fetch(&t2, &v2, &tb2);
        PyErr_NormalizeException(&t2, &v2, &tb2);
        PyException_SetContext(v2, v); /* steals v */
        PyErr_Restore(t2, v2, tb2);
    }
    Py_XDECREF(t);
    Py_XDECREF(tb);
    return -1;
}

/* Acquire and check operand ix of seq for a grid of S's shape. */
static int acquire_one(Operands *O, const Sweep *S, PyObject *seq, Py_ssize_t ix)
{
    PyObject *obj = PySequence_Fast_GET_ITEM(seq, ix);
    const int write = (O->use[ix] & USE_WRITE) != 0;
    Py_buffer *v = &O->view[ix];
    if (!PyObject_CheckBuffer(obj)) {
        PyErr_Format(PyExc_TypeError,
                     "sweep operand %zd is a %.100s, not an array (an object with the buffer "
                     "protocol)",
                     ix, Py_TYPE(obj)->tp_name);
        return -1;
    }
    if (PyObject_GetBuffer(obj, v, PyBUF_STRIDES | PyBUF_FORMAT | (write ? PyBUF_WRITABLE : 0)))
        return operand_error(PyExc_ValueError, ix,
                             write ? "is written, but gives no writable strided buffer"
                                   : "gives no strided buffer");
    O->held[ix] = 1;
    if (write && v->readonly) return operand_error(PyExc_ValueError, ix, "is written but read-only");
    /* An input may be float32 (stored values that a pass reads as they are,
     * without a float64 copy); every output is float64. */
    const int f32 = !write && is_format(v->format, "f") && v->itemsize == (Py_ssize_t)sizeof(float);
    if (!f32 && (!is_float64(v->format) || v->itemsize != (Py_ssize_t)sizeof(double)))
        return operand_error(PyExc_ValueError, ix,
                             write ? "is not float64" : "is neither float64 nor float32");
    O->f32[ix] = (unsigned char)f32;
    const Py_ssize_t size = v->itemsize;
    if (v->ndim != S->D || !v->shape || !v->strides)
        return operand_error(PyExc_ValueError, ix, "does not have one axis per axis of the grid");
    if ((uintptr_t)v->buf % (uintptr_t)size)
        return operand_error(PyExc_ValueError, ix, "is not aligned to its element size");
    int64_t *st = O->st + ix * S->D;
    for (int d = 0; d < S->D; d++) {
        if (v->shape[d] != S->shape[d] && v->shape[d] != 1)
            return operand_error(PyExc_ValueError, ix,
                                 "has an axis of neither the grid's size nor 1");
        if (v->strides[d] % size)
            return operand_error(PyExc_ValueError, ix, "has strides of part of an element");
        st[d] = v->shape[d] == 1 ? 0 : (int64_t)(v->strides[d] / size);
    }
    return 0;
}

static void bind(const Operands *O, const Sweep *S, Operand *o)
{
    if (o->ix < 0) return;
    o->p = O->view[o->ix].buf;
    o->st = O->st + o->ix * S->D;
    o->f32 = O->f32[o->ix];
}

/* Every operand S names, acquired and checked, and S's operands pointed at
 * them. -1 with an exception set, -2 when out of memory. */
static int acquire(Operands *O, Sweep *S, PyObject *seq)
{
    const Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    O->n = n;
    O->view = calloc((size_t)n + 1, sizeof(Py_buffer));
    O->st = calloc((size_t)n * S->D + 1, sizeof(int64_t));
    O->use = calloc((size_t)n + 1, 1);
    O->held = calloc((size_t)n + 1, 1);
    O->f32 = calloc((size_t)n + 1, 1);
    if (!O->view || !O->st || !O->use || !O->held || !O->f32) return -2;
    note(O, &S->y, USE_READ);
    note(O, &S->w, USE_READ);
    note(O, &S->m, USE_READ);
    for (int t = 0; t < S->n_terms; t++) note(O, &S->term[t], USE_READ);
    for (int i = 0; i < S->n_ops; i++) {
        const Op *op = &S->op[i];
        note(O, &op->factor, USE_READ);
        for (int j = 0; j < op->n_dest; j++) {
            note(O, &op->dest[j].out, USE_WRITE);
            note(O, &op->dest[j].col, USE_READ);
        }
    }
    for (Py_ssize_t ix = 0; ix < n; ix++)
        if (O->use[ix] && acquire_one(O, S, seq, ix)) return -1;
    bind(O, S, &S->y);
    bind(O, S, &S->w);
    bind(O, S, &S->m);
    for (int t = 0; t < S->n_terms; t++) bind(O, S, &S->term[t]);
    for (int i = 0; i < S->n_ops; i++) {
        Op *op = &S->op[i];
        bind(O, S, &op->factor);
        for (int j = 0; j < op->n_dest; j++) {
            Dest *dst = &op->dest[j];
            bind(O, S, &dst->out);
            bind(O, S, &dst->col);
            /* A row output is added into along a line: contiguous along it. */
            if (dst->kind == DEST_ROW && dst->out.st[S->D - 1] != 1 && S->shape[S->D - 1] != 1) {
                PyErr_Format(PyExc_ValueError,
                             "sweep operand %zd is a row output but not contiguous along the "
                             "last axis",
                             dst->out.ix);
                return -1;
            }
        }
    }
    return 0;
}

static void release_operands(Operands *O)
{
    if (O->view && O->held)
        for (Py_ssize_t ix = 0; ix < O->n; ix++)
            if (O->held[ix]) PyBuffer_Release(&O->view[ix]);
    free(O->view);
    free(O->st);
    free(O->use);
    free(O->held);
    free(O->f32);
}
