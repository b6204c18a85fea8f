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
 * and __float__ accepted), f32 by a C cast of the double.
 *
 * The GIL is released around the wasm call, as ctypes does: the engine's
 * epoch ticker is a Python thread, and a guest that loops must still time
 * out.
 *
 * A failed call raises Fault(error_addr, trap_addr): the owned
 * wasmtime_error_t* and wasm_trap_t* as integers (0 when absent), for Python
 * to wrap with wasmtime.WasmtimeError._from_ptr / wasmtime.Trap._from_ptr,
 * which take ownership. A Fault that is never wrapped leaks them.
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
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
        slot->i64 = 0;
        slot->i32 = (int32_t)(uint32_t)x;
        return 0;
    }
    case K_F64: {
        double d = PyFloat_CheckExact(value) ? PyFloat_AS_DOUBLE(value)
                                             : PyFloat_AsDouble(value);
        if (d == -1.0 && PyErr_Occurred())
            return -1;
        slot->f64 = d;
        return 0;
    }
    case K_F32: {
        double d = PyFloat_CheckExact(value) ? PyFloat_AS_DOUBLE(value)
                                             : PyFloat_AsDouble(value);
        if (d == -1.0 && PyErr_Occurred())
            return -1;
        slot->i64 = 0;
        slot->f32 = (float)d;
        return 0;
    }
    }
    PyErr_SetString(PyExc_SystemError, "bad value kind");
    return -1;
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
 * argument. All arguments are converted first, then every row is called with
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
            if (to_raw(items[r], kind, &buf[(size_t)r * self->len + c]) < 0)
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
    for (Py_ssize_t i = 0; i < nkinds; i++) {
        if ((unsigned char)kinds[i] > K_BOOL) {
            PyErr_Format(PyExc_ValueError, "bad parameter kind %d", (unsigned char)kinds[i]);
            return NULL;
        }
    }
    if (result < K_NONE || result > K_BOOL) {
        PyErr_Format(PyExc_ValueError, "bad result kind %d", result);
        return NULL;
    }
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
    self->kinds = PyMem_Malloc(nkinds ? (size_t)nkinds : 1);
    if (self->kinds == NULL) {
        Py_DECREF(self);
        return PyErr_NoMemory();
    }
    memcpy(self->kinds, kinds, (size_t)nkinds);
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

static int
native_exec(PyObject *m)
{
    if (PyType_Ready(&CallerType) < 0)
        return -1;
    if (PyModule_AddObjectRef(m, "Caller", (PyObject *)&CallerType) < 0)
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
    .m_slots = native_slots,
};

PyMODINIT_FUNC
PyInit__native(void)
{
    return PyModuleDef_Init(&native_module);
}
