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
 * input), which the reference handles. Written here rather than PyUnicode_AsUTF8AndSize so that
 * the encoding is not cached on every scanned value for its lifetime. */
static Py_ssize_t encode(PyObject *text, char *buf) {
    int kind = PyUnicode_KIND(text);
    const void *data = PyUnicode_DATA(text);
    Py_ssize_t n = PyUnicode_GET_LENGTH(text), o = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        Py_UCS4 c = PyUnicode_READ(kind, data, i);
        if (c < 0x80) {
            buf[o++] = (char)c;
        } else if (c < 0x800) {
            buf[o++] = (char)(0xC0 | c >> 6);
            buf[o++] = (char)(0x80 | (c & 0x3F));
        } else if (c < 0x10000) {
            if (c >= 0xD800 && c <= 0xDFFF) return -1;
            buf[o++] = (char)(0xE0 | c >> 12);
            buf[o++] = (char)(0x80 | (c >> 6 & 0x3F));
            buf[o++] = (char)(0x80 | (c & 0x3F));
        } else {
            buf[o++] = (char)(0xF0 | c >> 18);
            buf[o++] = (char)(0x80 | (c >> 12 & 0x3F));
            buf[o++] = (char)(0x80 | (c >> 6 & 0x3F));
            buf[o++] = (char)(0x80 | (c & 0x3F));
        }
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
        len = encode(text, buf);
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
    if (len >= 0 && cap <= INT_MAX)
        found = mg_find_digits_ex(utf8, (size_t)len, (unsigned)classes, normalized ? MG_NORMALIZED : 0, spans,
                                  (int)cap);
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
        PyObject *item = k < 0 ? NULL : Py_BuildValue("(nnOd)", at[0], at[1], class_names[k], spans[i].conf);
        if (item == NULL) {
            if (!PyErr_Occurred()) PyErr_SetString(PyExc_SystemError, "masking._native: bad class");
            Py_CLEAR(result);
            goto done;
        }
        PyList_SET_ITEM(result, i, item);
    }
done:
    if (spans != NULL && spans != stack_spans) PyMem_Free(spans);
    if (buf != NULL && buf != stack_buf) PyMem_Free(buf);
    return result;
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
