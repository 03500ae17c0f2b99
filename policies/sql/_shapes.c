/* Native scanner for policies.sql.shapes.fast_shape: the same rules, one pass in C.
 *
 * scan(sql, mysql, STRING, NUMBER) returns None when the text is outside the subset the fast
 * path knows the tokenizer reads the same way (the caller then asks the tokenizer), () when it is
 * inside it and has no literal slot, else (key, raws, types, spans) as policies/sql/shapes.Shape
 * holds them, with STRING and NUMBER (the caller's TokenType members) as the slot types.
 * tests/policies/sql/test_fast_shape.py holds it equal to the Python fast path and the tokenizer.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

static int is_letter(Py_UCS4 c) { return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == '_'; }
static int is_digit(Py_UCS4 c) { return c >= '0' && c <= '9'; }
static int is_space(Py_UCS4 c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; }

/* What may come right before a slot (shapes._BEFORE_SLOT). */
static int before_slot(Py_UCS4 c) {
    return is_space(c) || c == '(' || c == ',' || c == '=' || c == '<' || c == '>' || c == '+' || c == '-' ||
           c == '*' || c == '/' || c == '%' || c == '[' || c == '|' || c == '!';
}

/* Operators allowed outside quotes (shapes._OUTSIDE_BAD's complement, but names and digits). */
static int allowed_punct(Py_UCS4 c) {
    return is_space(c) || c == '(' || c == ')' || c == ',' || c == '.' || c == ';' || c == '=' || c == '<' ||
           c == '>' || c == '*' || c == '+' || c == '-' || c == '/' || c == '%' || c == ':' || c == '[' ||
           c == ']' || c == '|' || c == '!';
}

#define MAX_SLOTS 1024 /* more: unsure (the tokenizer reads it) */

static PyObject *scan(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 4 || !PyUnicode_Check(args[0])) {
        PyErr_SetString(PyExc_TypeError, "scan(sql: str, mysql: bool, STRING, NUMBER)");
        return NULL;
    }
    PyObject *sql = args[0];
    int mysql = PyObject_IsTrue(args[1]);
    if (mysql < 0) return NULL;
    PyObject *string_type = args[2], *number_type = args[3];
    if (PyUnicode_READY(sql) < 0) return NULL;
    int kind = PyUnicode_KIND(sql);
    const void *data = PyUnicode_DATA(sql);
    Py_ssize_t n = PyUnicode_GET_LENGTH(sql);
    Py_UCS4 name_quote = mysql ? '`' : '"';

    /* Slots found: start, end, is_string. */
    Py_ssize_t starts[MAX_SLOTS], ends[MAX_SLOTS];
    char strings[MAX_SLOTS];
    Py_ssize_t count = 0;
    int after_semicolon = 0;
    Py_ssize_t i = 0;
    while (i < n) {
        Py_UCS4 c = PyUnicode_READ(kind, data, i);
        if (after_semicolon) {
            if (!is_space(c)) Py_RETURN_NONE; /* several statements, or something after one */
            i++;
            continue;
        }
        if (c == '\'') {
            if (i > 0 && !before_slot(PyUnicode_READ(kind, data, i - 1))) Py_RETURN_NONE;
            Py_ssize_t j = i + 1;
            for (;;) {
                if (j >= n) Py_RETURN_NONE; /* unterminated */
                Py_UCS4 d = PyUnicode_READ(kind, data, j);
                if (d == '\\') Py_RETURN_NONE;
                if (d == '\'') {
                    if (j + 1 < n && PyUnicode_READ(kind, data, j + 1) == '\'') {
                        j += 2;
                        continue;
                    }
                    break;
                }
                j++;
            }
            if (count == MAX_SLOTS) Py_RETURN_NONE;
            starts[count] = i;
            ends[count] = j + 1;
            strings[count++] = 1;
            i = j + 1;
            continue;
        }
        if (c == name_quote) {
            Py_ssize_t j = i + 1;
            for (;;) {
                if (j >= n) Py_RETURN_NONE;
                Py_UCS4 d = PyUnicode_READ(kind, data, j);
                if (d == '\\') Py_RETURN_NONE;
                if (d == c) break;
                j++;
            }
            i = j + 1;
            continue;
        }
        if (is_letter(c)) {
            i++;
            while (i < n) {
                Py_UCS4 d = PyUnicode_READ(kind, data, i);
                if (!is_letter(d) && !is_digit(d)) break;
                i++;
            }
            continue;
        }
        if (is_digit(c)) {
            if (i > 0 && !before_slot(PyUnicode_READ(kind, data, i - 1))) Py_RETURN_NONE;
            Py_ssize_t j = i + 1;
            while (j < n && is_digit(PyUnicode_READ(kind, data, j))) j++;
            if (j + 1 < n && PyUnicode_READ(kind, data, j) == '.' && is_digit(PyUnicode_READ(kind, data, j + 1))) {
                j += 2;
                while (j < n && is_digit(PyUnicode_READ(kind, data, j))) j++;
            }
            if (j < n) {
                Py_UCS4 d = PyUnicode_READ(kind, data, j);
                if (is_letter(d) || is_digit(d) || d == '.') Py_RETURN_NONE; /* glued: 1e5, 1a, 1. */
            }
            if (count == MAX_SLOTS) Py_RETURN_NONE;
            starts[count] = i;
            ends[count] = j;
            strings[count++] = 0;
            i = j;
            continue;
        }
        if (c >= 128 || !allowed_punct(c)) Py_RETURN_NONE;
        if (i + 1 < n) {
            Py_UCS4 d = PyUnicode_READ(kind, data, i + 1);
            if ((c == '-' && d == '-') || (c == '/' && d == '*')) Py_RETURN_NONE; /* a comment */
        }
        if (c == ';') after_semicolon = 1;
        i++;
    }
    if (count == 0) return PyTuple_New(0);

    PyObject *key = PyTuple_New(2 * count + 1), *raws = PyTuple_New(count), *types = PyTuple_New(count),
             *spans = PyTuple_New(count);
    if (!key || !raws || !types || !spans) goto fail;
    Py_ssize_t cut = 0;
    for (Py_ssize_t k = 0; k < count; k++) {
        PyObject *type = strings[k] ? string_type : number_type;
        PyObject *piece = PyUnicode_Substring(sql, cut, starts[k]);
        if (!piece) goto fail;
        PyTuple_SET_ITEM(key, 2 * k, piece);
        Py_INCREF(type);
        PyTuple_SET_ITEM(key, 2 * k + 1, type);
        PyObject *raw = PyUnicode_Substring(sql, starts[k], ends[k]);
        if (!raw) goto fail;
        PyTuple_SET_ITEM(raws, k, raw);
        Py_INCREF(type);
        PyTuple_SET_ITEM(types, k, type);
        PyObject *span = Py_BuildValue("(nn)", starts[k], ends[k]);
        if (!span) goto fail;
        PyTuple_SET_ITEM(spans, k, span);
        cut = ends[k];
    }
    PyObject *tail = PyUnicode_Substring(sql, cut, n);
    if (!tail) goto fail;
    PyTuple_SET_ITEM(key, 2 * count, tail);
    return Py_BuildValue("(NNNN)", key, raws, types, spans);
fail:
    Py_XDECREF(key);
    Py_XDECREF(raws);
    Py_XDECREF(types);
    Py_XDECREF(spans);
    return NULL;
}

static PyMethodDef methods[] = {
    {"scan", (PyCFunction)(void (*)(void))scan, METH_FASTCALL, "The fast path of shapes.shape_of, or None."},
    {NULL, NULL, 0, NULL}};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "policies.sql._shapes", NULL, -1, methods};

PyMODINIT_FUNC PyInit__shapes(void) { return PyModule_Create(&module); }
