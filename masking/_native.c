/* Python binding of the digit-run finders (_digits.c) for masking.detectors and masking.text.
 *
 * find_digits(text, classes, normalized) returns the overlap-resolved candidates
 * [(start, end, class name, confidence), ...] with offsets in characters of `text`, or None when
 * the C core is unsure (then the caller runs the Python reference). `classes` is a bit set of the
 * MG_* values; `normalized` says `text` is already normalize()d, so any character is fine.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include "_digits.h"

static PyObject *class_names[6];

static const char *const CLASS_STR[6] = {"mobile", "id_card", "bank_card", "uscc", "landline", "passport"};

static int bit_index(int cls) {
    for (int i = 0; i < 6; i++)
        if (cls == 1 << i) return i;
    return -1;
}

/* UTF-8 of `text` into buf (>= 4 bytes a character); -1 on a lone surrogate (surrogateescape
 * input), which the reference handles, or, when `stable` is set, on a character outside
 * mg_fold_stable (the raw-text check of mg_find_digits, done here on code points, which spares
 * the C core a decoding pass). Written here rather than PyUnicode_AsUTF8AndSize so that the
 * encoding is not cached on every scanned value for its lifetime. */
#define ENCODE_LOOP(T)                                                                                   \
    do {                                                                                                 \
        const T *d = (const T *)data;                                                                    \
        for (Py_ssize_t i = 0; i < n; i++) {                                                             \
            Py_UCS4 c = d[i];                                                                            \
            if (c < 0x80) {                                                                              \
                buf[o++] = (char)c;                                                                      \
                continue;                                                                                \
            }                                                                                            \
            if (stable && !mg_fold_stable(c)) return -1;                                                 \
            if (c < 0x800) {                                                                             \
                buf[o++] = (char)(0xC0 | c >> 6);                                                        \
                buf[o++] = (char)(0x80 | (c & 0x3F));                                                    \
            } else if (c < 0x10000) {                                                                    \
                if (c >= 0xD800 && c <= 0xDFFF) return -1;                                               \
                buf[o++] = (char)(0xE0 | c >> 12);                                                       \
                buf[o++] = (char)(0x80 | (c >> 6 & 0x3F));                                               \
                buf[o++] = (char)(0x80 | (c & 0x3F));                                                    \
            } else {                                                                                     \
                buf[o++] = (char)(0xF0 | c >> 18);                                                       \
                buf[o++] = (char)(0x80 | (c >> 12 & 0x3F));                                              \
                buf[o++] = (char)(0x80 | (c >> 6 & 0x3F));                                               \
                buf[o++] = (char)(0x80 | (c & 0x3F));                                                    \
            }                                                                                            \
        }                                                                                                \
    } while (0)

static Py_ssize_t encode(PyObject *text, char *buf, int stable) {
    const void *data = PyUnicode_DATA(text);
    Py_ssize_t n = PyUnicode_GET_LENGTH(text), o = 0;
    switch (PyUnicode_KIND(text)) {
    case PyUnicode_1BYTE_KIND: ENCODE_LOOP(Py_UCS1); break;
    case PyUnicode_2BYTE_KIND: ENCODE_LOOP(Py_UCS2); break;
    default: ENCODE_LOOP(Py_UCS4); break;
    }
    return o;
}

static PyObject *find_digits(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 3 || !PyUnicode_Check(args[0])) {
        PyErr_SetString(PyExc_TypeError, "find_digits(text: str, classes: int, normalized: bool)");
        return NULL;
    }
    PyObject *text = args[0];
    unsigned long classes = PyLong_AsUnsignedLong(args[1]);
    if (classes == (unsigned long)-1 && PyErr_Occurred()) return NULL;
    int normalized = PyObject_IsTrue(args[2]);
    if (normalized < 0) return NULL;

    Py_ssize_t n = PyUnicode_GET_LENGTH(text);
    int ascii = PyUnicode_IS_ASCII(text);
    char stack_buf[2048];
    char *buf = NULL;
    const char *utf8;
    Py_ssize_t len;
    if (ascii) {
        utf8 = (const char *)PyUnicode_DATA(text);
        len = n;
    } else {
        if (n > PY_SSIZE_T_MAX / 4) return PyErr_NoMemory();
        buf = n * 4 <= (Py_ssize_t)sizeof stack_buf ? stack_buf : PyMem_Malloc(n * 4);
        if (buf == NULL) return PyErr_NoMemory();
        len = encode(text, buf, !normalized);
        utf8 = buf;
    }

    /* Spans are at least 8 bytes long and never overlap: this many always fit. */
    mg_span stack_spans[32];
    Py_ssize_t cap = len / 8 + 2;
    mg_span *spans = cap <= 32 ? stack_spans : PyMem_Malloc(cap * sizeof *spans);
    PyObject *result = NULL;
    int found = -1;
    if (spans == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    /* MG_NORMALIZED either way: valid UTF-8 by construction, and encode() has done the
     * fold-stable check a raw text needs. */
    if (len >= 0 && cap <= INT_MAX)
        found = mg_find_digits_ex(utf8, (size_t)len, (unsigned)classes, MG_NORMALIZED, spans, (int)cap);
    if (found < 0) {
        result = Py_NewRef(Py_None);
        goto done;
    }
    result = PyList_New(found);
    if (result == NULL) goto done;
    size_t byte = 0, chr = 0; /* byte offset -> character offset, walking forward */
    for (int i = 0; i < found; i++) {
        size_t pos[2] = {spans[i].start, spans[i].end};
        Py_ssize_t at[2];
        for (int j = 0; j < 2; j++) {
            if (ascii) {
                at[j] = (Py_ssize_t)pos[j];
                continue;
            }
            for (; byte < pos[j]; byte++)
                if (((unsigned char)utf8[byte] & 0xC0) != 0x80) chr++;
            at[j] = (Py_ssize_t)chr;
        }
        int k = bit_index(spans[i].cls);
        PyObject *item = k < 0 ? NULL : PyTuple_New(4);
        if (item != NULL) {
            PyList_SET_ITEM(result, i, item);
            PyObject *a = PyLong_FromSsize_t(at[0]), *b = PyLong_FromSsize_t(at[1]);
            PyObject *conf = PyFloat_FromDouble(spans[i].conf);
            PyTuple_SET_ITEM(item, 0, a);
            PyTuple_SET_ITEM(item, 1, b);
            PyTuple_SET_ITEM(item, 2, Py_NewRef(class_names[k]));
            PyTuple_SET_ITEM(item, 3, conf);
            if (a == NULL || b == NULL || conf == NULL) item = NULL;
        }
        if (item == NULL) {
            if (!PyErr_Occurred()) PyErr_SetString(PyExc_SystemError, "masking._native: bad class");
            Py_CLEAR(result);
            goto done;
        }
    }
done:
    if (spans != NULL && spans != stack_spans) PyMem_Free(spans);
    if (buf != NULL && buf != stack_buf) PyMem_Free(buf);
    return result;
}

/* The fold normalize.py gives c, when it is one character known here, else -1; *relevant is
 * set when the fold is one a detector can see (these are what make normalize() fold at all). */
static long simple_fold(Py_UCS4 c, int *relevant) {
    if (c < 0x80) return (long)c;
    int fullwidth = c >= 0xFF01 && c <= 0xFF5E; /* NFKC: the ASCII character 0xFEE0 below */
    if (mg_fold_stable(c)) return fullwidth ? (long)(c - 0xFEE0) : (long)c;
    if (fullwidth) { /* digits, letters and % ( ) + - . @ _ */
        *relevant = 1;
        return c == 0xFF0D ? '-' : (long)(c - 0xFEE0);
    }
    if (c == 0x3000) { /* ideographic space */
        *relevant = 1;
        return ' ';
    }
    if ((c >= 0x2010 && c <= 0x2015) || c == 0x2212 || c == 0x30FC) { /* normalize.DASHES */
        *relevant = 1;
        return '-';
    }
    return -1;
}

/* normalize(text)[0] when every character of text is one simple_fold knows (each folds to one
 * character, so normalize's offsets are None), else None. */
static PyObject *fold_simple(PyObject *self, PyObject *text) {
    if (!PyUnicode_Check(text)) {
        PyErr_SetString(PyExc_TypeError, "fold_simple(text: str)");
        return NULL;
    }
    int kind = PyUnicode_KIND(text);
    const void *data = PyUnicode_DATA(text);
    Py_ssize_t n = PyUnicode_GET_LENGTH(text);
    int relevant = 0;
    Py_UCS4 maxchar = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        long f = simple_fold(PyUnicode_READ(kind, data, i), &relevant);
        if (f < 0) Py_RETURN_NONE;
        if ((Py_UCS4)f > maxchar) maxchar = (Py_UCS4)f;
    }
    if (!relevant) return Py_NewRef(text); /* needs_folding() is False: normalize returns text */
    PyObject *out = PyUnicode_New(n, maxchar);
    if (out == NULL) return NULL;
    int okind = PyUnicode_KIND(out);
    void *odata = PyUnicode_DATA(out);
    for (Py_ssize_t i = 0; i < n; i++)
        PyUnicode_WRITE(okind, odata, i, (Py_UCS4)simple_fold(PyUnicode_READ(kind, data, i), &relevant));
    return out;
}

static PyObject *fold_stable(PyObject *self, PyObject *arg) {
    unsigned long cp = PyLong_AsUnsignedLong(arg);
    if (cp == (unsigned long)-1 && PyErr_Occurred()) return NULL;
    return PyBool_FromLong(cp <= 0x10FFFF && mg_fold_stable((unsigned)cp));
}

static PyMethodDef methods[] = {
    {"find_digits", (PyCFunction)(void (*)(void))find_digits, METH_FASTCALL,
     "find_digits(text, classes, normalized) -> [(start, end, class, confidence)] or None when unsure"},
    {"fold_stable", fold_stable, METH_O, "fold_stable(codepoint) -> True when normalisation cannot involve it"},
    {"fold_simple", fold_simple, METH_O, "fold_simple(text) -> normalize(text)[0] with offsets None, or None"},
    {NULL, NULL, 0, NULL}};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "masking._native", NULL, -1, methods, NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__native(void) {
    PyObject *m = PyModule_Create(&module);
    if (m == NULL) return NULL;
    for (int i = 0; i < 6; i++) {
        class_names[i] = PyUnicode_InternFromString(CLASS_STR[i]);
        if (class_names[i] == NULL) {
            Py_DECREF(m);
            return NULL;
        }
    }
    if (PyModule_AddIntConstant(m, "MOBILE", MG_MOBILE) < 0 || PyModule_AddIntConstant(m, "ID_CARD", MG_ID_CARD) < 0 ||
        PyModule_AddIntConstant(m, "BANK_CARD", MG_BANK_CARD) < 0 || PyModule_AddIntConstant(m, "USCC", MG_USCC) < 0 ||
        PyModule_AddIntConstant(m, "LANDLINE", MG_LANDLINE) < 0 ||
        PyModule_AddIntConstant(m, "PASSPORT", MG_PASSPORT) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
