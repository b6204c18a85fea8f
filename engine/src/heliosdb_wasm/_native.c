/* heliosdb_wasm._native: the numeric fast call path without Python per value.
 *
 * fastcall.RawCall does, per call, through ctypes:
 *     wasmtime_context_set_fuel(ctx, fuel)
 *     wasmtime_context_set_epoch_deadline(ctx, ticks)
 *     wasmtime_func_call_unchecked(ctx, &func, buf, len, &trap)
 * on a wasmtime_val_raw_t buffer. Caller does the same in C. It does not link
 * against libwasmtime: Python hands it the addresses of those three C
 * functions (taken from wasmtime-py's own ctypes handles), the store context
 * and the wasmtime_func_t, so it always calls the very library wasmtime-py
 * loaded.
 *
 * Values are converted exactly as ctypes converts them when RawCall assigns a
 * union field: integers through PyLong_AsUnsignedLongLongMask (wrapping,
 * __index__ honoured, floats refused), floats through PyFloat_AsDouble (ints
 * and __float__ accepted), f32 by a C cast of the double. A batch's values
 * are SQL values and do not wrap (to_raw_sql).
 *
 * The GIL is released around the wasm call, as ctypes does: the engine's
 * epoch ticker is a Python thread, and a guest that loops must still time
 * out.
 *
 * A failed call raises Fault(error_addr, trap_addr): the owned
 * wasmtime_error_t* and wasm_trap_t* as integers (0 when absent), for Python
 * to wrap with wasmtime.WasmtimeError._from_ptr / wasmtime.Trap._from_ptr,
 * which take ownership. A Fault that is never wrapped leaks them.
 *
 * Scalar is a procedure as SQLite calls it: through apsw's
 * create_scalar_function (vectorcall), or, where this file is compiled with
 * sqlite3ext.h, straight from SQLite (scalar_xfunc, see bind_sqlite below):
 * the SQL values of one row in, the SQL value out, with the argument checks,
 * NULL handling, instance handling and metrics of invoke.Runner._call_fast
 * done in C for the common case. Everything else goes back to Python through
 * hooks (see the Scalar docstring); Tally holds its metrics until Python folds
 * them into telemetry.Metrics.
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* wasmtime.h's wasmtime_val_raw_t: a 16-byte union. */
typedef union {
    int32_t i32;
    int64_t i64;
    float f32;
    double f64;
    uint8_t v128[16];
    uint32_t anyref;
    uint32_t externref;
    uint32_t exnref;
    void *funcref;
} val_raw_t;

/* wasmtime_func_t: a plain value naming a function inside its store. */
typedef struct {
    uint64_t store_id;
    void *private_;
} func_t;

_Static_assert(sizeof(val_raw_t) == 16, "wasmtime_val_raw_t is 16 bytes");

typedef void *(*call_fn)(void *ctx, const func_t *func, val_raw_t *args_and_results,
                         size_t len, void **trap);
typedef void *(*set_fuel_fn)(void *ctx, uint64_t fuel);
typedef void (*set_deadline_fn)(void *ctx, uint64_t ticks);

enum { K_I32 = 0, K_I64 = 1, K_F32 = 2, K_F64 = 3, K_BOOL = 4, K_NONE = -1 };

#define LOCAL_SLOTS 8

static PyObject *Fault; /* the exception type */

typedef struct {
    PyObject_HEAD
    vectorcallfunc vectorcall;
    void *ctx;
    func_t func;
    call_fn call;
    set_fuel_fn set_fuel;
    set_deadline_fn set_deadline;
    unsigned char *kinds; /* one per parameter */
    Py_ssize_t nparams;
    int result;           /* K_* or K_NONE */
    size_t len;           /* slots: max(1, nparams, has result) */
    uint64_t fuel;
    uint64_t ticks;
    PyObject *keepalive;  /* the store (and anything else to keep alive) */
} CallerObject;

/* A 32-bit value in a 64-bit slot, the upper half zeroed. */
static inline void
put_i32(val_raw_t *slot, int32_t x)
{
    slot->i64 = 0;
    slot->i32 = x;
}

/* A double into an f64 or (rounded) f32 slot. */
static inline void
put_float(val_raw_t *slot, int kind, double d)
{
    if (kind == K_F64) {
        slot->f64 = d;
    } else {
        slot->i64 = 0;
        slot->f32 = (float)d;
    }
}

/* One Python value into one slot; 0 or -1 with an exception set. */
static inline int
to_raw(PyObject *value, int kind, val_raw_t *slot)
{
    switch (kind) {
    case K_I64: {
        unsigned long long x = PyLong_AsUnsignedLongLongMask(value);
        if (x == (unsigned long long)-1 && PyErr_Occurred())
            return -1;
        slot->i64 = (int64_t)x;
        return 0;
    }
    case K_I32:
    case K_BOOL: {
        unsigned long long x = PyLong_AsUnsignedLongLongMask(value);
        if (x == (unsigned long long)-1 && PyErr_Occurred())
            return -1;
        put_i32(slot, (int32_t)(uint32_t)x);
        return 0;
    }
    case K_F64:
    case K_F32: {
        double d = PyFloat_CheckExact(value) ? PyFloat_AS_DOUBLE(value)
                                             : PyFloat_AsDouble(value);
        if (d == -1.0 && PyErr_Occurred())
            return -1;
        put_float(slot, kind, d);
        return 0;
    }
    }
    PyErr_SetString(PyExc_SystemError, "bad value kind");
    return -1;
}

/* One SQL value into one slot, for batch(): a batch holds the values of SQL
 * parameters, so nothing wraps. An integer outside the parameter's range is
 * an OverflowError, anything but an int for an integer or boolean parameter
 * a TypeError (Runner.call_batch then goes row by row, which names the
 * argument), and a boolean is the value's truth, as the row path converts
 * it. Floats convert as in to_raw. */
static inline int
to_raw_sql(PyObject *value, int kind, val_raw_t *slot)
{
    switch (kind) {
    case K_I64:
    case K_I32: {
        int overflow;
        long long x = PyLong_AsLongLongAndOverflow(value, &overflow);
        if (x == -1 && PyErr_Occurred())
            return -1;
        if (overflow || (kind == K_I32 && (x < INT32_MIN || x > INT32_MAX))) {
            PyErr_Format(PyExc_OverflowError, "a value out of range for a %d-bit parameter",
                         kind == K_I64 ? 64 : 32);
            return -1;
        }
        if (kind == K_I64)
            slot->i64 = (int64_t)x;
        else
            put_i32(slot, (int32_t)x);
        return 0;
    }
    case K_BOOL: {
        if (!PyLong_Check(value)) {
            PyErr_Format(PyExc_TypeError, "a boolean parameter takes bool or int, not %.100s",
                         Py_TYPE(value)->tp_name);
            return -1;
        }
        int truth = PyObject_IsTrue(value);
        if (truth < 0)
            return -1;
        put_i32(slot, truth);
        return 0;
    }
    }
    return to_raw(value, kind, slot);
}

/* The result slot as a Python value (a new reference). */
static inline PyObject *
from_raw(int kind, const val_raw_t *slot)
{
    switch (kind) {
    case K_I64:
        return PyLong_FromLongLong(slot->i64);
    case K_I32:
        return PyLong_FromLong(slot->i32);
    case K_BOOL:
        return PyBool_FromLong(slot->i32 != 0);
    case K_F64:
        return PyFloat_FromDouble(slot->f64);
    case K_F32:
        return PyFloat_FromDouble((double)slot->f32);
    default:
        Py_RETURN_NONE;
    }
}

static void
raise_fault(void *error, void *trap)
{
    PyObject *exc = PyObject_CallFunction(Fault, "KK", (unsigned long long)(uintptr_t)error,
                                          (unsigned long long)(uintptr_t)trap);
    if (exc != NULL) {
        PyErr_SetObject(Fault, exc);
        Py_DECREF(exc);
    }
}

/* Arm the limits and call once; returns the error pointer, sets *trap. */
static inline void *
call_once(CallerObject *self, val_raw_t *buf, void **trap)
{
    *trap = NULL;
    /* set_fuel's error (fuel not enabled) is ignored, as RawCall does. */
    (void)self->set_fuel(self->ctx, self->fuel);
    self->set_deadline(self->ctx, self->ticks);
    return self->call(self->ctx, &self->func, buf, self->len, trap);
}

static PyObject *
call_args(CallerObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != self->nparams) {
        PyErr_Format(PyExc_ValueError, "expected %zd argument(s), got %zd", self->nparams,
                     nargs);
        return NULL;
    }
    val_raw_t local[LOCAL_SLOTS];
    val_raw_t *buf = local;
    if (self->len > LOCAL_SLOTS) {
        buf = PyMem_Calloc(self->len, sizeof(val_raw_t));
        if (buf == NULL)
            return PyErr_NoMemory();
    }
    PyObject *out = NULL;
    for (Py_ssize_t i = 0; i < nargs; i++) {
        if (to_raw(args[i], self->kinds[i], &buf[i]) < 0)
            goto done;
    }
    void *trap, *error;
    Py_BEGIN_ALLOW_THREADS
    error = call_once(self, buf, &trap);
    Py_END_ALLOW_THREADS
    if (error != NULL || trap != NULL) {
        raise_fault(error, trap);
        goto done;
    }
    out = from_raw(self->result, &buf[0]);
done:
    if (buf != local)
        PyMem_Free(buf);
    return out;
}

static PyObject *
Caller_vectorcall(PyObject *callable, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    if (kwnames != NULL && PyTuple_GET_SIZE(kwnames) > 0) {
        PyErr_SetString(PyExc_TypeError, "Caller takes no keyword arguments");
        return NULL;
    }
    return call_args((CallerObject *)callable, args, PyVectorcall_NARGS(nargsf));
}

/* call(values): one call with the arguments in a list or tuple. */
static PyObject *
Caller_call_seq(CallerObject *self, PyObject *values)
{
    if (PyList_CheckExact(values) || PyTuple_CheckExact(values))
        return call_args(self, PySequence_Fast_ITEMS(values), PySequence_Fast_GET_SIZE(values));
    PyObject *fast = PySequence_Fast(values, "arguments must be a sequence");
    if (fast == NULL)
        return NULL;
    PyObject *out =
        call_args(self, PySequence_Fast_ITEMS(fast), PySequence_Fast_GET_SIZE(fast));
    Py_DECREF(fast);
    return out;
}

/* batch(columns, rows=None): one call per row, columns[i][row] the i-th
 * argument. All arguments are converted first (to_raw_sql: an OverflowError
 * or TypeError means no row ran), then every row is called with
 * the GIL released once. Returns the list of results; on the first failing
 * row raises Fault with attributes `row` (its index) and `results` (the
 * results of the rows before it). */
static PyObject *
Caller_batch(CallerObject *self, PyObject *args, PyObject *kwargs)
{
    static char *kwlist[] = {"columns", "rows", NULL};
    PyObject *columns, *rows_obj = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O|O:batch", kwlist, &columns, &rows_obj))
        return NULL;
    PyObject *cols = PySequence_Fast(columns, "columns must be a sequence of sequences");
    if (cols == NULL)
        return NULL;
    Py_ssize_t ncols = PySequence_Fast_GET_SIZE(cols);
    PyObject **fast = NULL;
    val_raw_t *buf = NULL;
    PyObject *results = NULL, *out = NULL;
    Py_ssize_t rows = -1;

    if (ncols != self->nparams) {
        PyErr_Format(PyExc_ValueError, "expected %zd column(s), got %zd", self->nparams, ncols);
        goto done;
    }
    if (rows_obj != Py_None) {
        rows = PyNumber_AsSsize_t(rows_obj, PyExc_OverflowError);
        if (rows == -1 && PyErr_Occurred())
            goto done;
        if (rows < 0) {
            PyErr_SetString(PyExc_ValueError, "rows must not be negative");
            goto done;
        }
    }
    fast = PyMem_Calloc(ncols ? (size_t)ncols : 1, sizeof(PyObject *));
    if (fast == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    for (Py_ssize_t c = 0; c < ncols; c++) {
        fast[c] = PySequence_Fast(PySequence_Fast_GET_ITEM(cols, c),
                                  "each column must be a sequence");
        if (fast[c] == NULL)
            goto done;
        Py_ssize_t n = PySequence_Fast_GET_SIZE(fast[c]);
        if (rows == -1)
            rows = n;
        else if (n != rows) {
            PyErr_Format(PyExc_ValueError, "column %zd has %zd value(s), expected %zd", c, n,
                         rows);
            goto done;
        }
    }
    if (rows == -1) {
        PyErr_SetString(PyExc_ValueError, "rows is required when there are no columns");
        goto done;
    }
    if ((size_t)rows > PY_SSIZE_T_MAX / sizeof(val_raw_t) / self->len) {
        PyErr_NoMemory();
        goto done;
    }
    buf = PyMem_Calloc(rows ? (size_t)rows * self->len : 1, sizeof(val_raw_t));
    if (buf == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    for (Py_ssize_t c = 0; c < ncols; c++) {
        PyObject **items = PySequence_Fast_ITEMS(fast[c]);
        int kind = self->kinds[c];
        for (Py_ssize_t r = 0; r < rows; r++) {
            if (to_raw_sql(items[r], kind, &buf[(size_t)r * self->len + c]) < 0)
                goto done;
        }
    }

    Py_ssize_t done_rows = 0;
    void *trap = NULL, *error = NULL;
    Py_BEGIN_ALLOW_THREADS
    for (; done_rows < rows; done_rows++) {
        error = call_once(self, &buf[(size_t)done_rows * self->len], &trap);
        if (error != NULL || trap != NULL)
            break;
    }
    Py_END_ALLOW_THREADS

    results = PyList_New(done_rows);
    if (results == NULL)
        goto done;
    for (Py_ssize_t r = 0; r < done_rows; r++) {
        PyObject *v = from_raw(self->result, &buf[(size_t)r * self->len]);
        if (v == NULL)
            goto done;
        PyList_SET_ITEM(results, r, v);
    }
    if (done_rows < rows) {
        PyObject *exc = PyObject_CallFunction(Fault, "KK", (unsigned long long)(uintptr_t)error,
                                              (unsigned long long)(uintptr_t)trap);
        if (exc == NULL)
            goto done;
        PyObject *row = PyLong_FromSsize_t(done_rows);
        if (row == NULL || PyObject_SetAttrString(exc, "row", row) < 0 ||
            PyObject_SetAttrString(exc, "results", results) < 0) {
            Py_XDECREF(row);
            Py_DECREF(exc);
            goto done;
        }
        Py_DECREF(row);
        PyErr_SetObject(Fault, exc);
        Py_DECREF(exc);
        goto done;
    }
    out = results;
    results = NULL;
done:
    Py_XDECREF(results);
    PyMem_Free(buf);
    if (fast != NULL) {
        for (Py_ssize_t c = 0; c < ncols; c++)
            Py_XDECREF(fast[c]);
        PyMem_Free(fast);
    }
    Py_DECREF(cols);
    return out;
}

static void *
address(PyObject *obj, const char *what)
{
    void *p = PyLong_AsVoidPtr(obj);
    if (p == NULL && !PyErr_Occurred())
        PyErr_Format(PyExc_ValueError, "%s is a null address", what);
    return p;
}

/* The parameter and result kinds of a signature, checked (Caller and Scalar). */
static int
check_kinds(const char *kinds, Py_ssize_t nkinds, int result)
{
    for (Py_ssize_t i = 0; i < nkinds; i++) {
        if ((unsigned char)kinds[i] > K_BOOL) {
            PyErr_Format(PyExc_ValueError, "bad parameter kind %d", (unsigned char)kinds[i]);
            return -1;
        }
    }
    if (result < K_NONE || result > K_BOOL) {
        PyErr_Format(PyExc_ValueError, "bad result kind %d", result);
        return -1;
    }
    return 0;
}

/* A PyMem copy of the kinds (never a zero-size block), or NULL with MemoryError. */
static unsigned char *
copy_kinds(const char *kinds, Py_ssize_t nkinds)
{
    unsigned char *copy = PyMem_Malloc(nkinds ? (size_t)nkinds : 1);
    if (copy == NULL) {
        PyErr_NoMemory();
        return NULL;
    }
    memcpy(copy, kinds, (size_t)nkinds);
    return copy;
}

static PyObject *
Caller_new(PyTypeObject *type, PyObject *args, PyObject *kwargs)
{
    static char *kwlist[] = {"ctx_addr", "func_addr", "call_addr", "set_fuel_addr",
                             "set_deadline_addr", "param_kinds", "result_kind", "fuel",
                             "ticks", "keepalive", NULL};
    PyObject *ctx_o, *func_o, *call_o, *fuel_fn_o, *deadline_fn_o, *keepalive = Py_None;
    const char *kinds;
    Py_ssize_t nkinds;
    int result;
    unsigned long long fuel, ticks;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OOOOOy#iKK|O:Caller", kwlist, &ctx_o,
                                     &func_o, &call_o, &fuel_fn_o, &deadline_fn_o, &kinds,
                                     &nkinds, &result, &fuel, &ticks, &keepalive))
        return NULL;
    if (check_kinds(kinds, nkinds, result) < 0)
        return NULL;
    void *ctx = address(ctx_o, "ctx_addr");
    if (ctx == NULL)
        return NULL;
    func_t *func = address(func_o, "func_addr");
    if (func == NULL)
        return NULL;
    void *call = address(call_o, "call_addr");
    if (call == NULL)
        return NULL;
    void *set_fuel = address(fuel_fn_o, "set_fuel_addr");
    if (set_fuel == NULL)
        return NULL;
    void *set_deadline = address(deadline_fn_o, "set_deadline_addr");
    if (set_deadline == NULL)
        return NULL;

    CallerObject *self = (CallerObject *)type->tp_alloc(type, 0);
    if (self == NULL)
        return NULL;
    if ((self->kinds = copy_kinds(kinds, nkinds)) == NULL) {
        Py_DECREF(self);
        return NULL;
    }
    self->vectorcall = Caller_vectorcall;
    self->ctx = ctx;
    self->func = *func; /* a value: copied, so the ctypes struct may go */
    self->call = (call_fn)call;
    self->set_fuel = (set_fuel_fn)set_fuel;
    self->set_deadline = (set_deadline_fn)set_deadline;
    self->nparams = nkinds;
    self->result = result;
    self->len = (size_t)(nkinds > 1 ? nkinds : 1);
    self->fuel = fuel;
    self->ticks = ticks;
    Py_INCREF(keepalive);
    self->keepalive = keepalive;
    return (PyObject *)self;
}

static int
Caller_traverse(CallerObject *self, visitproc visit, void *arg)
{
    Py_VISIT(self->keepalive);
    return 0;
}

static int
Caller_clear(CallerObject *self)
{
    Py_CLEAR(self->keepalive);
    return 0;
}

static void
Caller_dealloc(CallerObject *self)
{
    PyObject_GC_UnTrack(self);
    Caller_clear(self);
    PyMem_Free(self->kinds);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyMethodDef Caller_methods[] = {
    {"call", (PyCFunction)Caller_call_seq, METH_O,
     "call(values) -> result: one call with the arguments in a sequence."},
    {"batch", (PyCFunction)(void (*)(void))Caller_batch, METH_VARARGS | METH_KEYWORDS,
     "batch(columns, rows=None) -> list: one call per row (columns[i][row])."},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject CallerType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "heliosdb_wasm._native.Caller",
    .tp_doc = PyDoc_STR(
        "Caller(ctx_addr, func_addr, call_addr, set_fuel_addr, set_deadline_addr,\n"
        "       param_kinds, result_kind, fuel, ticks, keepalive=None)\n\n"
        "One numeric export of one store, called with Python numbers."),
    .tp_basicsize = sizeof(CallerObject),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_HAVE_VECTORCALL,
    .tp_new = Caller_new,
    .tp_dealloc = (destructor)Caller_dealloc,
    .tp_traverse = (traverseproc)Caller_traverse,
    .tp_clear = (inquiry)Caller_clear,
    .tp_vectorcall_offset = offsetof(CallerObject, vectorcall),
    .tp_call = PyVectorcall_Call,
    .tp_methods = Caller_methods,
};

/* ---- Tally: the metrics of a Scalar's calls, until Python folds them ---- */

typedef struct {
    PyObject_HEAD
    uint64_t calls;
    double seconds;
    double base;       /* telemetry._BASE_SECONDS */
    double per_octave; /* telemetry._BUCKETS_PER_OCTAVE */
    Py_ssize_t nbuckets;
    uint64_t *histogram;
    int attached;      /* a Scalar still counts into it */
} TallyObject;

/* telemetry.bucket_of, with the same floating-point steps. */
static inline Py_ssize_t
bucket_of(TallyObject *t, double seconds)
{
    if (!(seconds > t->base))
        return 0;
    double index = log2(seconds / t->base) * t->per_octave;
    if (!(index < (double)(t->nbuckets - 1)))
        return t->nbuckets - 1;
    Py_ssize_t b = (Py_ssize_t)index + 1;
    return b < t->nbuckets ? b : t->nbuckets - 1;
}

static inline void
tally_count(TallyObject *t, double seconds)
{
    t->calls++;
    t->seconds += seconds;
    t->histogram[bucket_of(t, seconds)]++;
}

static PyObject *
Tally_new(PyTypeObject *type, PyObject *args, PyObject *kwargs)
{
    static char *kwlist[] = {"base_seconds", "per_octave", "buckets", NULL};
    double base, per_octave;
    Py_ssize_t n;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "ddn:Tally", kwlist, &base, &per_octave, &n))
        return NULL;
    if (!(base > 0) || !(per_octave > 0) || n < 1 || n > 1 << 20) {
        PyErr_SetString(PyExc_ValueError, "bad histogram shape");
        return NULL;
    }
    TallyObject *self = (TallyObject *)type->tp_alloc(type, 0);
    if (self == NULL)
        return NULL;
    self->histogram = PyMem_Calloc((size_t)n, sizeof(uint64_t));
    if (self->histogram == NULL) {
        Py_DECREF(self);
        return PyErr_NoMemory();
    }
    self->base = base;
    self->per_octave = per_octave;
    self->nbuckets = n;
    return (PyObject *)self;
}

static void
Tally_dealloc(TallyObject *self)
{
    PyMem_Free(self->histogram);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* drain() -> (calls, seconds, {bucket: calls}), and start again from zero. */
static PyObject *
Tally_drain(TallyObject *self, PyObject *Py_UNUSED(ignored))
{
    PyObject *histogram = PyDict_New();
    if (histogram == NULL)
        return NULL;
    for (Py_ssize_t b = 0; b < self->nbuckets && self->calls; b++) {
        if (!self->histogram[b])
            continue;
        PyObject *key = PyLong_FromSsize_t(b);
        PyObject *value = PyLong_FromUnsignedLongLong(self->histogram[b]);
        if (key == NULL || value == NULL || PyDict_SetItem(histogram, key, value) < 0) {
            Py_XDECREF(key);
            Py_XDECREF(value);
            Py_DECREF(histogram);
            return NULL;
        }
        Py_DECREF(key);
        Py_DECREF(value);
    }
    PyObject *out = Py_BuildValue("KdN", (unsigned long long)self->calls, self->seconds,
                                  histogram);
    if (out == NULL)
        return NULL;
    if (self->calls)
        memset(self->histogram, 0, (size_t)self->nbuckets * sizeof(uint64_t));
    self->calls = 0;
    self->seconds = 0.0;
    return out;
}

/* count(seconds): count one call, as a Scalar does (for tests). */
static PyObject *
Tally_count(TallyObject *self, PyObject *arg)
{
    double seconds = PyFloat_AsDouble(arg);
    if (seconds == -1.0 && PyErr_Occurred())
        return NULL;
    tally_count(self, seconds);
    Py_RETURN_NONE;
}

static PyObject *
Tally_get_attached(TallyObject *self, void *Py_UNUSED(closure))
{
    return PyBool_FromLong(self->attached);
}

static PyMethodDef Tally_methods[] = {
    {"drain", (PyCFunction)Tally_drain, METH_NOARGS,
     "drain() -> (calls, seconds, {bucket: calls}): what was counted since the last drain."},
    {"count", (PyCFunction)Tally_count, METH_O, "count(seconds): count one successful call."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef Tally_getset[] = {
    {"attached", (getter)Tally_get_attached, NULL,
     "True while a Scalar may still count into this tally.", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject TallyType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "heliosdb_wasm._native.Tally",
    .tp_doc = PyDoc_STR(
        "Tally(base_seconds, per_octave, buckets)\n\n"
        "Successful calls of a Scalar: their number, total seconds and latency\n"
        "histogram (telemetry.bucket_of's buckets), until drained."),
    .tp_basicsize = sizeof(TallyObject),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_new = Tally_new,
    .tp_dealloc = (destructor)Tally_dealloc,
    .tp_methods = Tally_methods,
    .tp_getset = Tally_getset,
};

/* ---- Scalar: a procedure as SQLite calls it ---- */

typedef struct {
    PyObject_HEAD
    vectorcallfunc vectorcall;
    unsigned char *kinds; /* one per parameter */
    Py_ssize_t nparams;
    int result;           /* K_* or K_NONE */
    int null_call;        /* CALLED ON NULL INPUT: NULL arrives as zero */
    int busy;             /* a call is running (the GIL may be released) */
    int python_only;      /* acquire() said no: every call goes to `slow` */
    size_t len;           /* slots: max(1, nparams) */
    PyObject *acquire;    /* acquire() -> (owner, instance, Caller, on_fault) | None */
    PyObject *slow;       /* slow(*args) -> the SQL result, the Python path */
    TallyObject *tally;
    PyObject *owners;     /* a dict, or NULL: the instance is used only while */
    PyObject *key;        /* owners[key] is its owner (the version is current) */
    /* The instance held while bound, its owner, Caller and fault hook; all
     * NULL when there is none yet, the last one faulted or went stale. */
    PyObject *owner;
    PyObject *instance;
    CallerObject *caller;
    PyObject *on_fault;   /* on_fault(instance, error_addr, trap_addr, seconds) raises */
} ScalarObject;

static inline int64_t
now_ns(void)
{
#if PY_VERSION_HEX >= 0x030D0000
    PyTime_t t;
    (void)PyTime_PerfCounterRaw(&t);
    return (int64_t)t;
#else
    return (int64_t)_PyTime_GetPerfCounter();
#endif
}

/* Let go of the instance held (discarded: it is not handed back). */
static void
Scalar_drop(ScalarObject *self)
{
    Py_CLEAR(self->owner);
    Py_CLEAR(self->instance);
    Py_CLEAR(self->caller);
    Py_CLEAR(self->on_fault);
}

static int
Scalar_acquire(ScalarObject *self)
{
    PyObject *got = PyObject_CallNoArgs(self->acquire);
    if (got == NULL)
        return -1;
    if (got == Py_None) {
        Py_DECREF(got);
        self->python_only = 1;
        return 0;
    }
    if (!PyTuple_CheckExact(got) || PyTuple_GET_SIZE(got) != 4 ||
        !PyObject_TypeCheck(PyTuple_GET_ITEM(got, 2), &CallerType) ||
        !PyCallable_Check(PyTuple_GET_ITEM(got, 3))) {
        Py_DECREF(got);
        PyErr_SetString(PyExc_TypeError,
                        "acquire() must return None or (owner, instance, Caller, on_fault)");
        return -1;
    }
    CallerObject *caller = (CallerObject *)PyTuple_GET_ITEM(got, 2);
    if (caller->nparams != self->nparams || caller->result != self->result ||
        (self->nparams && memcmp(caller->kinds, self->kinds, (size_t)self->nparams) != 0)) {
        Py_DECREF(got);
        PyErr_SetString(PyExc_TypeError, "the Caller's signature differs from the Scalar's");
        return -1;
    }
    Scalar_drop(self);
    self->owner = Py_NewRef(PyTuple_GET_ITEM(got, 0));
    self->instance = Py_NewRef(PyTuple_GET_ITEM(got, 1));
    self->caller = (CallerObject *)Py_NewRef((PyObject *)caller);
    self->on_fault = Py_NewRef(PyTuple_GET_ITEM(got, 3));
    Py_DECREF(got);
    return 0;
}

/* The wasm call failed: hand the instance, the error and the time to Python,
 * which discards the instance, counts the error and raises the typed one. */
static PyObject *
Scalar_fault(ScalarObject *self, void *error, void *trap, double seconds)
{
    PyObject *instance = Py_NewRef(self->instance), *on_fault = Py_NewRef(self->on_fault);
    Scalar_drop(self);
    PyObject *r = PyObject_CallFunction(on_fault, "OKKd", instance,
                                        (unsigned long long)(uintptr_t)error,
                                        (unsigned long long)(uintptr_t)trap, seconds);
    Py_DECREF(instance);
    Py_DECREF(on_fault);
    if (r != NULL) {
        Py_DECREF(r);
        PyErr_SetString(PyExc_SystemError, "on_fault() returned instead of raising");
    }
    return NULL;
}

static PyObject *
Scalar_vectorcall(PyObject *callable, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    ScalarObject *self = (ScalarObject *)callable;
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    /* busy: called again while a call runs (another thread): the Python
     * path, with an instance of its own from the pool. */
    if (nargs != self->nparams || self->busy || self->python_only ||
        (kwnames != NULL && PyTuple_GET_SIZE(kwnames) > 0))
        return PyObject_Vectorcall(self->slow, args, nargsf, kwnames);

    int64_t started = now_ns();
    val_raw_t local[LOCAL_SLOTS];
    val_raw_t *buf = local;
    if (self->len > LOCAL_SLOTS) {
        buf = PyMem_Calloc(self->len, sizeof(val_raw_t));
        if (buf == NULL)
            return PyErr_NoMemory();
    }
    PyObject *out = NULL;
    /* The checks of Runner._fast_arguments, in its order; a value they would
     * hand to values.coerce goes to the Python path whole. */
    for (Py_ssize_t i = 0; i < nargs; i++) {
        PyObject *v = args[i];
        val_raw_t *slot = &buf[i];
        if (v == Py_None) {
            if (!self->null_call) { /* RETURNS NULL ON NULL INPUT: no call */
                out = Py_NewRef(Py_None);
                goto done;
            }
            slot->i64 = 0; /* 0, 0.0 and false alike */
            continue;
        }
        switch (self->kinds[i]) {
        case K_I64:
        case K_I32: {
            if (!PyLong_CheckExact(v))
                goto slow_buf;
            int overflow;
            long long x = PyLong_AsLongLongAndOverflow(v, &overflow);
            if (overflow || (x == -1 && PyErr_Occurred())) {
                PyErr_Clear();
                goto slow_buf;
            }
            if (self->kinds[i] == K_I64) {
                slot->i64 = x;
            } else {
                if (x < INT32_MIN || x > INT32_MAX)
                    goto slow_buf; /* out of range: coerce says so */
                put_i32(slot, (int32_t)x);
            }
            break;
        }
        case K_BOOL:
            if (!PyLong_CheckExact(v))
                goto slow_buf;
            put_i32(slot, PyObject_IsTrue(v));
            break;
        case K_F64:
        case K_F32: {
            double d;
            if (PyFloat_CheckExact(v)) {
                d = PyFloat_AS_DOUBLE(v);
            } else if (PyLong_CheckExact(v)) {
                d = PyLong_AsDouble(v); /* float(int) */
                if (d == -1.0 && PyErr_Occurred()) {
                    PyErr_Clear();
                    goto slow_buf;
                }
            } else {
                goto slow_buf;
            }
            put_float(slot, self->kinds[i], d);
            break;
        }
        default:
            goto slow_buf;
        }
    }

    self->busy = 1; /* from here the GIL may be released */
    if (self->caller != NULL && self->owners != NULL) {
        /* Still the current version's? (One lookup of a str key.) */
        PyObject *current = PyDict_GetItemWithError(self->owners, self->key);
        if (current != self->owner) {
            if (current == NULL && PyErr_Occurred()) {
                self->busy = 0;
                goto done;
            }
            Scalar_drop(self); /* unbound or replaced: acquire again */
        }
    }
    if (self->caller == NULL) {
        if (Scalar_acquire(self) < 0) {
            self->busy = 0;
            goto done;
        }
        if (self->python_only) {
            self->busy = 0;
            goto slow_buf;
        }
    }
    CallerObject *caller = self->caller;
    void *trap, *error;
    Py_BEGIN_ALLOW_THREADS
    error = call_once(caller, buf, &trap);
    Py_END_ALLOW_THREADS
    double seconds = (double)(now_ns() - started) / 1e9;
    self->busy = 0;
    if (error != NULL || trap != NULL) {
        out = Scalar_fault(self, error, trap, seconds);
        goto done;
    }
    tally_count(self->tally, seconds);
    if (self->result == K_BOOL) /* values.to_sqlite: a boolean is 0 or 1 */
        out = PyLong_FromLong(buf[0].i32 != 0);
    else
        out = from_raw(self->result, &buf[0]);
done:
    if (buf != local)
        PyMem_Free(buf);
    return out;
slow_buf:
    if (buf != local)
        PyMem_Free(buf);
    return PyObject_Vectorcall(self->slow, args, nargsf, kwnames);
}

static PyObject *
Scalar_new(PyTypeObject *type, PyObject *args, PyObject *kwargs)
{
    static char *kwlist[] = {"param_kinds", "result_kind", "called_on_null_input", "acquire",
                             "slow", "tally", "owners", "key", NULL};
    const char *kinds;
    Py_ssize_t nkinds;
    int result, null_call;
    PyObject *acquire, *slow, *owners = Py_None, *key = Py_None;
    TallyObject *tally;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "y#ipOOO!|OO:Scalar", kwlist, &kinds,
                                     &nkinds, &result, &null_call, &acquire, &slow, &TallyType,
                                     &tally, &owners, &key))
        return NULL;
    if (owners != Py_None && (!PyDict_Check(owners) || key == Py_None)) {
        PyErr_SetString(PyExc_TypeError, "owners must be a dict, and then key is required");
        return NULL;
    }
    if (check_kinds(kinds, nkinds, result) < 0)
        return NULL;
    if (!PyCallable_Check(acquire) || !PyCallable_Check(slow)) {
        PyErr_SetString(PyExc_TypeError, "acquire and slow must be callable");
        return NULL;
    }
    if (tally->attached) {
        PyErr_SetString(PyExc_ValueError, "the tally belongs to another Scalar");
        return NULL;
    }
    ScalarObject *self = (ScalarObject *)type->tp_alloc(type, 0);
    if (self == NULL)
        return NULL;
    if ((self->kinds = copy_kinds(kinds, nkinds)) == NULL) {
        Py_DECREF(self);
        return NULL;
    }
    self->vectorcall = Scalar_vectorcall;
    self->nparams = nkinds;
    self->result = result;
    self->null_call = null_call;
    self->len = (size_t)(nkinds > 1 ? nkinds : 1);
    self->acquire = Py_NewRef(acquire);
    self->slow = Py_NewRef(slow);
    self->tally = (TallyObject *)Py_NewRef((PyObject *)tally);
    tally->attached = 1;
    if (owners != Py_None) {
        self->owners = Py_NewRef(owners);
        self->key = Py_NewRef(key);
    }
    return (PyObject *)self;
}

static int
Scalar_traverse(ScalarObject *self, visitproc visit, void *arg)
{
    Py_VISIT(self->acquire);
    Py_VISIT(self->slow);
    Py_VISIT(self->owners);
    Py_VISIT(self->key);
    Py_VISIT(self->owner);
    Py_VISIT(self->instance);
    Py_VISIT(self->caller);
    Py_VISIT(self->on_fault);
    return 0;
}

static int
Scalar_clear(ScalarObject *self)
{
    Py_CLEAR(self->acquire);
    Py_CLEAR(self->slow);
    Py_CLEAR(self->owners);
    Py_CLEAR(self->key);
    Scalar_drop(self);
    return 0;
}

static void
Scalar_dealloc(ScalarObject *self)
{
    PyObject_GC_UnTrack(self);
    Scalar_clear(self);
    if (self->tally != NULL) {
        self->tally->attached = 0; /* Python folds what is left, then lets it go */
        Py_CLEAR(self->tally);
    }
    PyMem_Free(self->kinds);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* release() -> the instance it held, or None: it holds none afterwards. */
static PyObject *
Scalar_release(ScalarObject *self, PyObject *Py_UNUSED(ignored))
{
    if (self->busy) {
        PyErr_SetString(PyExc_RuntimeError, "the Scalar is being called");
        return NULL;
    }
    PyObject *instance = self->instance != NULL ? Py_NewRef(self->instance) : Py_NewRef(Py_None);
    Scalar_drop(self);
    return instance;
}

static PyObject *
Scalar_get_instance(ScalarObject *self, void *Py_UNUSED(closure))
{
    return Py_NewRef(self->instance != NULL ? self->instance : Py_None);
}

static PyObject *
Scalar_get_python_only(ScalarObject *self, void *Py_UNUSED(closure))
{
    return PyBool_FromLong(self->python_only);
}

static PyMethodDef Scalar_methods[] = {
    {"release", (PyCFunction)Scalar_release, METH_NOARGS,
     "release() -> the instance held (or None); the next call acquires one."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef Scalar_getset[] = {
    {"instance", (getter)Scalar_get_instance, NULL, "The instance held, or None.", NULL},
    {"python_only", (getter)Scalar_get_python_only, NULL,
     "True once acquire() returned None: every call goes to slow().", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject ScalarType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "heliosdb_wasm._native.Scalar",
    .tp_doc = PyDoc_STR(
        "Scalar(param_kinds, result_kind, called_on_null_input, acquire, slow, tally,\n"
        "       owners=None, key=None)\n\n"
        "A numeric procedure as SQLite calls it: Scalar(*sql_values) -> sql_value.\n"
        "Exact ints (in range) and floats are checked and converted in C, NULL\n"
        "gives NULL (or 0 when called_on_null_input), and the export is called\n"
        "through the Caller from acquire() (owner, instance, Caller, on_fault),\n"
        "held until a call fails, or until owners[key] is no longer owner; then\n"
        "the next call acquires again. A failed call calls on_fault(instance,\n"
        "error_addr, trap_addr, seconds), which raises. Any other value, and\n"
        "every call once acquire() returned None, goes to slow(*args).\n"
        "Successful calls are counted in the tally."),
    .tp_basicsize = sizeof(ScalarObject),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_HAVE_VECTORCALL,
    .tp_new = Scalar_new,
    .tp_dealloc = (destructor)Scalar_dealloc,
    .tp_traverse = (traverseproc)Scalar_traverse,
    .tp_clear = (inquiry)Scalar_clear,
    .tp_vectorcall_offset = offsetof(ScalarObject, vectorcall),
    .tp_call = PyVectorcall_Call,
    .tp_methods = Scalar_methods,
    .tp_getset = Scalar_getset,
};

/* ---- SQLite calling a Scalar directly, without apsw or Python per row ----
 *
 * apsw calls a Python function per row with the GIL taken and every value
 * boxed; for a numeric procedure that is most of the cost. When this module
 * is loaded as an SQLite extension (fastcall.sqlite_direct, once per
 * process: the entry point only keeps SQLite's API table), bind_sqlite
 * registers a Scalar with sqlite3_create_function_v2 on apsw's own
 * connection, and scalar_xfunc runs a row in C: SQLite values straight into
 * the raw buffer, the wasm call, the result straight back. The GIL is only
 * taken for what needs Python: acquiring an instance, a fault (the typed
 * error is raised in Python and left pending, which apsw reports when the
 * statement fails, as it does for its own functions) and the values the
 * fast path does not take (they go to `slow`, as from the vectorcall path).
 *
 * The instance is not checked against `owners` here (that needs the GIL):
 * the Database releases a bound Scalar's instance whenever its Runner
 * changes.
 */
#if defined(__has_include)
#if __has_include(<sqlite3ext.h>)
#define HELIOSDB_SQLITE 1
#endif
#endif

#ifdef HELIOSDB_SQLITE
#include <sqlite3ext.h>
SQLITE_EXTENSION_INIT1

#if defined(__GNUC__)
__attribute__((visibility("default")))
#endif
int
sqlite3_heliosdbwasm_init(sqlite3 *db, char **pzErrMsg, const sqlite3_api_routines *pApi)
{
    (void)db;
    (void)pzErrMsg;
    SQLITE_EXTENSION_INIT2(pApi);
    return SQLITE_OK;
}

/* A Python value (the result of `slow`) as the SQL result; -1 with an
 * exception set if it is none of the types to_sqlite gives. */
static int
result_from_python(sqlite3_context *c, PyObject *v)
{
    if (v == Py_None) {
        sqlite3_result_null(c);
    } else if (PyLong_Check(v)) {
        int overflow;
        long long x = PyLong_AsLongLongAndOverflow(v, &overflow);
        if (overflow) {
            PyErr_SetString(PyExc_OverflowError, "the result does not fit in 64 bits");
            return -1;
        }
        if (x == -1 && PyErr_Occurred())
            return -1;
        sqlite3_result_int64(c, x);
    } else if (PyFloat_Check(v)) {
        sqlite3_result_double(c, PyFloat_AS_DOUBLE(v));
    } else if (PyUnicode_Check(v)) {
        Py_ssize_t n;
        const char *utf8 = PyUnicode_AsUTF8AndSize(v, &n);
        if (utf8 == NULL)
            return -1;
        sqlite3_result_text64(c, utf8, (sqlite3_uint64)n, SQLITE_TRANSIENT, SQLITE_UTF8);
    } else if (PyBytes_Check(v)) {
        sqlite3_result_blob64(c, PyBytes_AS_STRING(v), (sqlite3_uint64)PyBytes_GET_SIZE(v),
                              SQLITE_TRANSIENT);
    } else {
        PyErr_Format(PyExc_TypeError, "a procedure result cannot be a %s",
                     Py_TYPE(v)->tp_name);
        return -1;
    }
    return 0;
}

static PyObject *
value_to_python(sqlite3_value *v)
{
    switch (sqlite3_value_type(v)) {
    case SQLITE_INTEGER:
        return PyLong_FromLongLong(sqlite3_value_int64(v));
    case SQLITE_FLOAT:
        return PyFloat_FromDouble(sqlite3_value_double(v));
    case SQLITE_TEXT:
        return PyUnicode_DecodeUTF8((const char *)sqlite3_value_text(v), sqlite3_value_bytes(v),
                                    NULL);
    case SQLITE_BLOB: {
        const void *p = sqlite3_value_blob(v);
        return PyBytes_FromStringAndSize(p ? p : "", sqlite3_value_bytes(v));
    }
    default:
        Py_RETURN_NONE;
    }
}

/* The pending Python exception as the statement's error; it stays pending
 * for apsw to raise (it prefers a pending exception to SQLite's message). */
static void
result_from_exception(sqlite3_context *c)
{
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    PyErr_NormalizeException(&type, &value, &tb);
    PyObject *text = value ? PyObject_Str(value) : NULL;
    const char *msg = text ? PyUnicode_AsUTF8(text) : NULL;
    sqlite3_result_error(c, msg ? msg : "procedure failed", -1);
    PyErr_Clear();
    Py_XDECREF(text);
    PyErr_Restore(type, value, tb);
}

/* The whole row through `slow(*args)`, under the GIL. */
static void
xfunc_slow(ScalarObject *self, sqlite3_context *c, int argc, sqlite3_value **argv)
{
    PyObject *local[8];
    PyObject **args = argc <= 8 ? local : PyMem_Calloc((size_t)argc, sizeof(PyObject *));
    if (args == NULL) {
        sqlite3_result_error_nomem(c);
        return;
    }
    int n = 0;
    PyObject *out = NULL;
    for (; n < argc; n++) {
        if ((args[n] = value_to_python(argv[n])) == NULL)
            goto done;
    }
    out = PyObject_Vectorcall(self->slow, args, (size_t)argc, NULL);
    if (out != NULL && result_from_python(c, out) == 0)
        goto cleanup;
done:
    result_from_exception(c);
cleanup:
    Py_XDECREF(out);
    for (int i = 0; i < n; i++)
        Py_DECREF(args[i]);
    if (args != local)
        PyMem_Free(args);
}

static void
scalar_xfunc(sqlite3_context *c, int argc, sqlite3_value **argv)
{
    ScalarObject *self = (ScalarObject *)sqlite3_user_data(c);
    val_raw_t local[LOCAL_SLOTS];
    val_raw_t *buf = local;
    PyGILState_STATE gil;
    if (argc != self->nparams || self->busy || self->python_only ||
        (size_t)self->len > LOCAL_SLOTS)
        goto slow;
    for (int i = 0; i < argc; i++) {
        sqlite3_value *v = argv[i];
        val_raw_t *slot = &buf[i];
        int type = sqlite3_value_type(v);
        if (type == SQLITE_NULL) {
            if (!self->null_call) { /* RETURNS NULL ON NULL INPUT: no call */
                sqlite3_result_null(c);
                return;
            }
            slot->i64 = 0;
            continue;
        }
        switch (self->kinds[i]) {
        case K_I64:
            if (type != SQLITE_INTEGER)
                goto slow;
            slot->i64 = sqlite3_value_int64(v);
            break;
        case K_I32: {
            if (type != SQLITE_INTEGER)
                goto slow;
            sqlite3_int64 x = sqlite3_value_int64(v);
            if (x < INT32_MIN || x > INT32_MAX)
                goto slow; /* out of range: coerce says so */
            put_i32(slot, (int32_t)x);
            break;
        }
        case K_BOOL:
            if (type != SQLITE_INTEGER)
                goto slow;
            put_i32(slot, sqlite3_value_int64(v) != 0);
            break;
        case K_F64:
        case K_F32: {
            double d;
            if (type == SQLITE_FLOAT)
                d = sqlite3_value_double(v);
            else if (type == SQLITE_INTEGER)
                d = (double)sqlite3_value_int64(v); /* float(int): round to nearest */
            else
                goto slow;
            put_float(slot, self->kinds[i], d);
            break;
        }
        default:
            goto slow;
        }
    }
    if (self->caller == NULL) {
        gil = PyGILState_Ensure();
        int failed = Scalar_acquire(self) < 0;
        if (failed)
            result_from_exception(c);
        int python_only = self->python_only;
        PyGILState_Release(gil);
        if (failed)
            return;
        if (python_only)
            goto slow;
    }
    CallerObject *caller = self->caller;
    int64_t started = now_ns();
    void *trap, *error;
    self->busy = 1;
    if (PyGILState_Check()) {
        /* apsw kept the GIL for this statement: release it for the call, for
         * the epoch ticker (a Python thread) and other threads. */
        Py_BEGIN_ALLOW_THREADS
        error = call_once(caller, buf, &trap);
        Py_END_ALLOW_THREADS
    } else {
        error = call_once(caller, buf, &trap);
    }
    self->busy = 0;
    double seconds = (double)(now_ns() - started) / 1e9;
    if (error != NULL || trap != NULL) {
        gil = PyGILState_Ensure();
        Py_XDECREF(Scalar_fault(self, error, trap, seconds));
        result_from_exception(c);
        PyGILState_Release(gil);
        return;
    }
    tally_count(self->tally, seconds);
    switch (self->result) {
    case K_I64:
        sqlite3_result_int64(c, buf[0].i64);
        break;
    case K_I32:
        sqlite3_result_int64(c, buf[0].i32);
        break;
    case K_BOOL: /* values.to_sqlite: a boolean is 0 or 1 */
        sqlite3_result_int64(c, buf[0].i32 != 0);
        break;
    case K_F64:
        sqlite3_result_double(c, buf[0].f64);
        break;
    case K_F32:
        sqlite3_result_double(c, (double)buf[0].f32);
        break;
    default:
        sqlite3_result_null(c);
    }
    return;
slow:
    gil = PyGILState_Ensure();
    xfunc_slow(self, c, argc, argv);
    PyGILState_Release(gil);
}

static void
scalar_destroy(void *p)
{
    PyGILState_STATE gil = PyGILState_Ensure();
    Py_DECREF((PyObject *)p);
    PyGILState_Release(gil);
}
#endif /* HELIOSDB_SQLITE */

/* bind_sqlite(db_addr, name, nargs, scalar): register scalar as the SQL
 * function name/nargs on the sqlite3* at db_addr (apsw's
 * Connection.sqlite3_pointer()). */
static PyObject *
native_bind_sqlite(PyObject *module, PyObject *args)
{
    (void)module;
    unsigned long long addr;
    const char *name;
    int nargs;
    PyObject *scalar;
    if (!PyArg_ParseTuple(args, "KsiO!:bind_sqlite", &addr, &name, &nargs, &ScalarType, &scalar))
        return NULL;
#ifdef HELIOSDB_SQLITE
    if (sqlite3_api == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "not loaded as an SQLite extension");
        return NULL;
    }
    if (nargs != ((ScalarObject *)scalar)->nparams) {
        PyErr_SetString(PyExc_ValueError, "nargs differs from the Scalar's parameters");
        return NULL;
    }
    Py_INCREF(scalar);
    int rc = sqlite3_create_function_v2((sqlite3 *)(uintptr_t)addr, name, nargs, SQLITE_UTF8,
                                        scalar, scalar_xfunc, NULL, NULL, scalar_destroy);
    /* On failure SQLite has already called scalar_destroy. */
    if (rc != SQLITE_OK) {
        PyErr_Format(PyExc_RuntimeError, "sqlite3_create_function_v2: %s",
                     sqlite3_errstr(rc));
        return NULL;
    }
    Py_RETURN_NONE;
#else
    (void)addr;
    (void)name;
    (void)nargs;
    PyErr_SetString(PyExc_RuntimeError, "built without sqlite3ext.h");
    return NULL;
#endif
}

static PyObject *
native_sqlite_ready(PyObject *module, PyObject *Py_UNUSED(ignored))
{
    (void)module;
#ifdef HELIOSDB_SQLITE
    return PyBool_FromLong(sqlite3_api != NULL);
#else
    Py_RETURN_FALSE;
#endif
}

static PyObject *
native_sqlite_supported(PyObject *module, PyObject *Py_UNUSED(ignored))
{
    (void)module;
#ifdef HELIOSDB_SQLITE
    Py_RETURN_TRUE;
#else
    Py_RETURN_FALSE;
#endif
}

static PyMethodDef native_methods[] = {
    {"bind_sqlite", native_bind_sqlite, METH_VARARGS,
     "bind_sqlite(db_addr, name, nargs, scalar): SQLite calls scalar's C entry directly."},
    {"sqlite_ready", native_sqlite_ready, METH_NOARGS,
     "sqlite_ready() -> whether the SQLite extension entry point has run."},
    {"sqlite_supported", native_sqlite_supported, METH_NOARGS,
     "sqlite_supported() -> whether this build can bind functions to SQLite."},
    {NULL, NULL, 0, NULL},
};

static int
native_exec(PyObject *m)
{
    if (PyType_Ready(&CallerType) < 0 || PyType_Ready(&TallyType) < 0 ||
        PyType_Ready(&ScalarType) < 0)
        return -1;
    if (PyModule_AddObjectRef(m, "Caller", (PyObject *)&CallerType) < 0 ||
        PyModule_AddObjectRef(m, "Tally", (PyObject *)&TallyType) < 0 ||
        PyModule_AddObjectRef(m, "Scalar", (PyObject *)&ScalarType) < 0)
        return -1;
    if (Fault == NULL)
        Fault = PyErr_NewExceptionWithDoc(
            "heliosdb_wasm._native.Fault",
            "A failed call: args are (wasmtime_error_t* address, wasm_trap_t* address), "
            "0 when absent; both are owned by whoever wraps them.",
            NULL, NULL);
    if (Fault == NULL)
        return -1;
    if (PyModule_AddObjectRef(m, "Fault", Fault) < 0)
        return -1;
    if (PyModule_AddIntConstant(m, "I32", K_I32) < 0 ||
        PyModule_AddIntConstant(m, "I64", K_I64) < 0 ||
        PyModule_AddIntConstant(m, "F32", K_F32) < 0 ||
        PyModule_AddIntConstant(m, "F64", K_F64) < 0 ||
        PyModule_AddIntConstant(m, "BOOL", K_BOOL) < 0 ||
        PyModule_AddIntConstant(m, "NONE", K_NONE) < 0)
        return -1;
    return 0;
}

static PyModuleDef_Slot native_slots[] = {
    {Py_mod_exec, native_exec},
    {0, NULL},
};

static struct PyModuleDef native_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "heliosdb_wasm._native",
    .m_doc = "The numeric fast call path in C (see fastcall.py).",
    .m_size = 0,
    .m_methods = native_methods,
    .m_slots = native_slots,
};

PyMODINIT_FUNC
PyInit__native(void)
{
    return PyModuleDef_Init(&native_module);
}
