/* Native row walker for streamed PostgreSQL results (proxy.pg._rowwalk).
 *
 * Applies a compiled RowPlan (proxy/pg/rowmask.py) to a run of consecutive DataRow messages in
 * one receive buffer, so a streamed result costs one Python call per buffer instead of a Python
 * loop per row. The Python RowPlan.apply stays the reference: every op here either produces
 * exactly its output or calls the column's Python function for that value.
 *
 * The walk never raises for a malformed row: it stops *before* it (and before a row whose Python
 * function raised a value error), so the caller's reference path handles that row and raises the
 * very same error, after the rows before it were passed on as the reference would have.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#include "_digits.h"

enum {
    OP_PASS = 0,
    OP_CONST = 1,   /* every value, NULL included, becomes arg */
    OP_PYFN = 2,    /* fn(value) -> bytes | None */
    OP_MOBILE = 3,  /* 11 ASCII digits starting with 1: 3 kept, 4 hidden, 4 kept; else fn */
    OP_ID = 4,      /* 17 ASCII digits + digit/X/x: 3 kept, 11 hidden, 4 kept; else fn */
    OP_CARD = 5,    /* 16-19 ASCII digits: 6 kept, n-10 hidden, 4 kept; else fn */
    OP_DETECT = 6,  /* the text masker's own answer where sure (digit finders, gates), else fn */
    OP_NULL = 7,    /* every value becomes NULL (a NULL stays one) */
};

/* DETECT gate bits: which finders the column's text masker runs. */
#define G_DIGITS 1u /* mobile, id_card, bank_card, uscc, landline, passport */
#define G_IP 2u
#define G_EMAIL 4u
#define G_NAME 8u
/* Bits 8..15 of a DETECT gate: the MG_* digit classes (masking/_digits.h) the masker looks for. */
#define G_MG_SHIFT 8
#define MAX_SPANS 16

#define MAX_SCANNED_BYTES (256 * 1024) /* masking/text.py MAX_SCANNED_CHARS: fewer bytes, fewer chars */

typedef struct {
    int op;
    unsigned gate;
    PyObject *arg; /* CONST: bytes */
    PyObject *fn;  /* PYFN, masks, DETECT: the column's ValueFn */
} Col;

typedef struct {
    PyObject_HEAD
    Py_ssize_t ncols;
    Col *cols;
    Py_ssize_t *counts; /* values changed by a native mask, per column, until take_counts() */
    PyObject *value_errors; /* tuple of exception types the reference turns into MessageError */
} Plan;

/* -------------------------------------------------------------- growable output buffer */

typedef struct {
    char *p;
    Py_ssize_t len, cap;
} Out;

static int out_reserve(Out *o, Py_ssize_t more) {
    if (o->len + more <= o->cap) return 0;
    Py_ssize_t cap = o->cap ? o->cap : 4096;
    while (cap < o->len + more) {
        if (cap > PY_SSIZE_T_MAX / 2) {
            PyErr_NoMemory();
            return -1;
        }
        cap *= 2;
    }
    char *np = PyMem_Realloc(o->p, cap);
    if (!np) {
        PyErr_NoMemory();
        return -1;
    }
    o->p = np;
    o->cap = cap;
    return 0;
}

static inline void put_i32(char *p, int32_t v) {
    uint32_t u = (uint32_t)v;
    p[0] = (char)(u >> 24);
    p[1] = (char)(u >> 16);
    p[2] = (char)(u >> 8);
    p[3] = (char)u;
}

static inline int32_t get_i32(const unsigned char *p) {
    return (int32_t)(((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3]);
}

static int out_value(Out *o, const char *v, Py_ssize_t n) {
    if (out_reserve(o, 4 + n) < 0) return -1;
    put_i32(o->p + o->len, (int32_t)n);
    if (n > 0) memcpy(o->p + o->len + 4, v, n);
    o->len += 4 + n;
    return 0;
}

static int out_null(Out *o) {
    if (out_reserve(o, 4) < 0) return -1;
    put_i32(o->p + o->len, -1);
    o->len += 4;
    return 0;
}

/* -------------------------------------------------------------- exact display rules */

static inline int all_digits(const unsigned char *s, Py_ssize_t n) {
    for (Py_ssize_t i = 0; i < n; i++)
        if (s[i] < '0' || s[i] > '9') return 0;
    return 1;
}

/* masking/maskers.py mask_mobile / mask_id_card / mask_bank_card, their first (exact) branch
 * only: 1 when written, 0 when the value has another shape (the Python masker decides). */
static int native_mask(int op, const unsigned char *v, Py_ssize_t n, char *dst) {
    Py_ssize_t keep_head, keep_tail;
    switch (op) {
    case OP_MOBILE:
        if (n != 11 || v[0] != '1' || !all_digits(v, 11)) return 0;
        keep_head = 3;
        keep_tail = 4;
        break;
    case OP_ID:
        if (n != 18 || !all_digits(v, 17) || !((v[17] >= '0' && v[17] <= '9') || v[17] == 'X' || v[17] == 'x'))
            return 0;
        keep_head = 3;
        keep_tail = 4;
        break;
    case OP_CARD:
        if (n < 16 || n > 19 || !all_digits(v, n)) return 0;
        keep_head = 6;
        keep_tail = 4;
        break;
    default:
        return 0;
    }
    memcpy(dst, v, keep_head);
    memset(dst + keep_head, '*', n - keep_head - keep_tail);
    memcpy(dst + n - keep_tail, v + n - keep_tail, keep_tail);
    return 1;
}

/* -------------------------------------------------------------- DETECT gate */

static inline int is_d(unsigned char c) { return c >= '0' && c <= '9'; }

static inline int gate_sep(unsigned char c, int plus, int bracket) {
    return c == ' ' || c == '\t' || c == '-' || (plus && c == '+') || (bracket && (c == '(' || c == ')'));
}

/* Does masking/detectors.py _DIGIT_GATE_RE
 *   [0-9]{7}|[0-9]{2}[ \t()+-]{1,4}[0-9]{3,4}[ \t()-]{1,3}[0-9]{4}|[0-9]{6}[ \t-]{1,3}[0-9]{6}
 * match anywhere in s? Bytes >= 0x80 (UTF-8 of non-ASCII characters) match no class of it. */
static int digit_gate(const unsigned char *s, Py_ssize_t n) {
    Py_ssize_t run = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        if (is_d(s[i])) {
            if (++run >= 7) return 1;
        } else {
            run = 0;
        }
    }
    for (Py_ssize_t i = 0; i + 2 <= n; i++) {
        if (!is_d(s[i]) || !is_d(s[i + 1])) continue;
        for (Py_ssize_t a = 1; a <= 4 && i + 2 + a <= n && gate_sep(s[i + 1 + a], 1, 1); a++) {
            Py_ssize_t p = i + 2 + a; /* the first digit after the separators */
            for (Py_ssize_t b = 3; b <= 4 && p + b <= n && all_digits(s + p, b); b++)
                for (Py_ssize_t c = 1; c <= 3 && p + b + c + 4 <= n && gate_sep(s[p + b + c - 1], 0, 1); c++)
                    if (all_digits(s + p + b + c, 4)) return 1;
        }
        if (i + 6 <= n && all_digits(s + i, 6))
            for (Py_ssize_t c = 1; c <= 3 && i + 6 + c + 6 <= n && gate_sep(s[i + 5 + c], 0, 0); c++)
                if (all_digits(s + i + 6 + c, 6)) return 1;
    }
    return 0;
}

/* First characters of the surnames masking/names.py knows (SINGLE_SURNAMES, and the first
 * character of each of COMPOUND_SURNAMES), sorted; set once by rowmask (set_name_starts). Empty:
 * every name context is unsure. */
static Py_UCS4 *name_starts;
static Py_ssize_t n_name_starts;

static int is_name_start(Py_UCS4 cp) {
    Py_ssize_t lo = 0, hi = n_name_starts;
    while (lo < hi) {
        Py_ssize_t mid = (lo + hi) / 2;
        if (name_starts[mid] == cp) return 1;
        if (name_starts[mid] < cp) lo = mid + 1;
        else hi = mid;
    }
    return 0;
}

/* The code point of the (valid, at most 3-byte: checked by the caller) UTF-8 character at s[i]. */
static Py_UCS4 cp_at(const unsigned char *s, Py_ssize_t n, Py_ssize_t i, Py_ssize_t *len) {
    unsigned char c = s[i];
    if (c < 0x80) {
        *len = 1;
        return c;
    }
    if (c < 0xE0) {
        *len = 2;
        return ((Py_UCS4)(c & 0x1F) << 6) | (s[i + 1] & 0x3F);
    }
    *len = 3;
    return ((Py_UCS4)(c & 0x0F) << 12) | ((Py_UCS4)(s[i + 1] & 0x3F) << 6) | (s[i + 2] & 0x3F);
}

/* NAME_CONTEXT_RE's name class: CJK unified ideographs and NAME_DOTS ("·•・."). */
static int name_class(Py_UCS4 cp, int *dot) {
    *dot = cp == 0xB7 || cp == 0x2022 || cp == 0x30FB || cp == '.';
    return *dot || (cp >= 0x3400 && cp <= 0x4DBF) || (cp >= 0x4E00 && cp <= 0x9FFF);
}

/* Could NAME_CONTEXT_RE's name group starting at s[q] give _find_person_name a candidate? The
 * group is the longest run (2-12) of its class; the candidate is that run trimmed (_trim_name),
 * which keeps its first character unless it holds a dot, and is kept only when surname_length
 * finds a surname, which starts with that first character. So: no when the run is shorter than 2
 * or its first character starts no surname and it holds no dot; else unsure (1). */
static int name_possible_at(const unsigned char *s, Py_ssize_t n, Py_ssize_t q) {
    Py_ssize_t count = 0, len;
    Py_UCS4 first = 0;
    int dot;
    for (Py_ssize_t i = q; i < n && count < 12; i += len) {
        Py_UCS4 cp = cp_at(s, n, i, &len);
        if (!name_class(cp, &dot)) break;
        if (dot) return 1;
        if (count == 0) first = cp;
        count++;
    }
    if (count < 2) return 0;
    return is_name_start(first);
}

static inline int ctx_sep(const unsigned char *s, Py_ssize_t n, Py_ssize_t i, Py_ssize_t *len) {
    if (i >= n) return 0;
    if (s[i] == ' ' || s[i] == '\t' || s[i] == ':') {
        *len = 1;
        return 1;
    }
    if (i + 2 < n && s[i] == 0xEF && s[i + 1] == 0xBC && s[i + 2] == 0x9A) { /* ： */
        *len = 3;
        return 1;
    }
    return 0;
}

/* Every start the name group can have after a context word ending at q0, under
 * `[ \t:：]*(?:为|是)?[ \t:：]*`: 1 when any of them could give a candidate. */
static int name_possible_after(const unsigned char *s, Py_ssize_t n, Py_ssize_t q0) {
    Py_ssize_t len, a = q0;
    for (;;) {
        if (name_possible_at(s, n, a)) return 1;
        if (a + 2 < n && (memcmp(s + a, "为", 3) == 0 || memcmp(s + a, "是", 3) == 0)) {
            Py_ssize_t b = a + 3;
            for (;;) {
                if (name_possible_at(s, n, b)) return 1;
                if (!ctx_sep(s, n, b, &len)) break;
                b += len;
            }
        }
        if (!ctx_sep(s, n, a, &len)) break;
        a += len;
    }
    return 0;
}

/* The ends of NAME_CONTEXT_RE's context words (客户姓名, 收款人姓名 and 开户名 end as 姓名 and 户名 do). */
static const char *const CONTEXT_WORDS[] = {"姓名", "户名", "客户", "客户名称", "收款人", "付款人",
                                            "联系人", "持卡人", "收件人", "患者", "本人"};

/* 1 when _find_person_name could find a candidate in s (fold-stable text, so its own norm): an
 * honorific (HONORIFIC_RE), or a context word after which a name is possible. One pass: every
 * word is CJK, so only the lead bytes of 3-byte characters can start one. */
static int names_possible(const unsigned char *s, Py_ssize_t n) {
    static const char *const HONORIFICS[] = {"先生", "女士", "小姐"};
    if (n_name_starts == 0) return 1;
    for (Py_ssize_t p = 0; p + 6 <= n; p++) {
        if (s[p] < 0xE0) continue;
        for (size_t w = 0; w < sizeof HONORIFICS / sizeof HONORIFICS[0]; w++)
            if (memcmp(s + p, HONORIFICS[w], 6) == 0) return 1;
        for (size_t w = 0; w < sizeof CONTEXT_WORDS / sizeof CONTEXT_WORDS[0]; w++) {
            const char *word = CONTEXT_WORDS[w];
            size_t wl = strlen(word);
            if (s[p] == (unsigned char)word[0] && p + (Py_ssize_t)wl <= n && memcmp(s + p, word, wl) == 0 &&
                name_possible_after(s, n, p + (Py_ssize_t)wl))
                return 1;
        }
    }
    return 0;
}

/* The text masker's (masking/text.py, detectors of `gate`) answer for value s[:n]: 1 when it
 * certainly returns the value unchanged, 2 when dst (n bytes) holds exactly its output, 0 when
 * unsure (the Python masker then runs). Sure only for valid UTF-8 of characters normalisation
 * leaves as they are (mg_fold_stable), so the detectors would see these very characters; the
 * e-mail, IP and name finders only when their gates do not open; digit spans only when each is a
 * bare mobile, ID or card number whose display mask (masking/maskers.py) is written here. */
static int detect_native(const unsigned char *s, Py_ssize_t n, unsigned gate, char *dst) {
    if (n > MAX_SCANNED_BYTES) return 0; /* may be replaced whole */
    int ascii = 1, at = 0;
    Py_ssize_t dots = 0, colons = 0, dcolon = 0;
    for (Py_ssize_t i = 0; i < n;) {
        unsigned char c = s[i];
        if (c < 0x80) {
            if (c == '@') at = 1;
            else if (c == '.') dots++;
            else if (c == ':') {
                colons++;
                if (i + 1 < n && s[i + 1] == ':') dcolon = 1;
            }
            i++;
            continue;
        }
        ascii = 0;
        unsigned cp;
        Py_ssize_t k;
        if (c >= 0xC2 && c <= 0xDF) {
            cp = c & 0x1F;
            k = 1;
        } else if (c >= 0xE0 && c <= 0xEF) {
            cp = c & 0x0F;
            k = 2;
        } else {
            return 0; /* 4-byte sequences are never fold-stable; the rest is invalid */
        }
        if (i + k >= n) return 0;
        for (Py_ssize_t j = 1; j <= k; j++) {
            if ((s[i + j] & 0xC0) != 0x80) return 0;
            cp = (cp << 6) | (s[i + j] & 0x3F);
        }
        if ((k == 2 && cp < 0x800) || (cp >= 0xD800 && cp <= 0xDFFF) || !mg_fold_stable(cp)) return 0;
        i += k + 1;
    }
    if ((gate & G_EMAIL) && at) return 0;
    if ((gate & G_IP) && (dots >= 3 || dcolon || colons >= 7)) return 0;
    /* Every context word and honorific holds a word of the finder's gate (_NAME_GATE_RE), so
     * when none can give a candidate, whether the gate opens does not matter. */
    if ((gate & G_NAME) && !ascii && names_possible(s, n)) return 0;
    if (!(gate & G_DIGITS)) return 1;
    unsigned mg = (gate >> G_MG_SHIFT) & MG_ALL_DIGIT_CLASSES;
    if (!mg) return digit_gate(s, n) ? 0 : 1;
    mg_span spans[MAX_SPANS];
    int k = mg_find_digits((const char *)s, (size_t)n, mg, spans, MAX_SPANS);
    if (k < 0) return 0;
    if (k == 0) return 1;
    memcpy(dst, s, n);
    for (int j = 0; j < k; j++) {
        int op = spans[j].cls == MG_MOBILE ? OP_MOBILE : spans[j].cls == MG_ID_CARD ? OP_ID
               : spans[j].cls == MG_BANK_CARD ? OP_CARD : -1;
        size_t a = spans[j].start, e = spans[j].end;
        if (op < 0 || e > (size_t)n || a >= e) return 0;
        if (!native_mask(op, s + a, (Py_ssize_t)(e - a), dst + a)) return 0;
    }
    return 2;
}

/* detect_clear for the property tests: 1 when the value is left as it is. */
static int detect_clear(const unsigned char *s, Py_ssize_t n, unsigned gate) {
    char *dst = PyMem_Malloc(n ? n : 1);
    if (!dst) return 0;
    int r = detect_native(s, n, gate, dst);
    PyMem_Free(dst);
    return r == 1;
}

/* -------------------------------------------------------------- Plan */

static void plan_clear(Plan *self) {
    if (self->cols) {
        for (Py_ssize_t i = 0; i < self->ncols; i++) {
            Py_CLEAR(self->cols[i].arg);
            Py_CLEAR(self->cols[i].fn);
        }
        PyMem_Free(self->cols);
        self->cols = NULL;
    }
    PyMem_Free(self->counts);
    self->counts = NULL;
    Py_CLEAR(self->value_errors);
}

static void plan_dealloc(Plan *self) {
    PyObject_GC_UnTrack(self);
    plan_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static int plan_traverse(Plan *self, visitproc visit, void *arg) {
    if (self->cols)
        for (Py_ssize_t i = 0; i < self->ncols; i++) {
            Py_VISIT(self->cols[i].arg);
            Py_VISIT(self->cols[i].fn);
        }
    Py_VISIT(self->value_errors);
    return 0;
}

static int plan_tp_clear(Plan *self) {
    plan_clear(self);
    self->ncols = 0;
    return 0;
}

/* Plan(ops, value_errors): ops is a sequence of (op, gate, const_or_None, fn_or_None). */
static int plan_init(Plan *self, PyObject *args, PyObject *kw) {
    PyObject *ops, *errs;
    if (!PyArg_ParseTuple(args, "OO!", &ops, &PyTuple_Type, &errs)) return -1;
    PyObject *seq = PySequence_Fast(ops, "ops must be a sequence");
    if (!seq) return -1;
    plan_clear(self);
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    self->ncols = 0;
    self->cols = PyMem_Calloc(n ? n : 1, sizeof(Col));
    self->counts = PyMem_Calloc(n ? n : 1, sizeof(Py_ssize_t));
    if (!self->cols || !self->counts) {
        Py_DECREF(seq);
        PyErr_NoMemory();
        return -1;
    }
    self->ncols = n;
    Py_INCREF(errs);
    self->value_errors = errs;
    for (Py_ssize_t i = 0; i < n; i++) {
        int op;
        unsigned gate;
        PyObject *arg, *fn;
        if (!PyArg_ParseTuple(PySequence_Fast_GET_ITEM(seq, i), "iIOO", &op, &gate, &arg, &fn)) goto fail;
        if (op < OP_PASS || op > OP_NULL) {
            PyErr_SetString(PyExc_ValueError, "unknown op");
            goto fail;
        }
        if (op == OP_CONST && !PyBytes_Check(arg)) {
            PyErr_SetString(PyExc_TypeError, "a constant must be bytes");
            goto fail;
        }
        if (op >= OP_PYFN && op <= OP_DETECT && !PyCallable_Check(fn)) {
            PyErr_SetString(PyExc_TypeError, "op needs a function");
            goto fail;
        }
        self->cols[i].op = op;
        self->cols[i].gate = gate;
        if (op == OP_CONST) {
            Py_INCREF(arg);
            self->cols[i].arg = arg;
        }
        if (op >= OP_PYFN && op <= OP_DETECT) {
            Py_INCREF(fn);
            self->cols[i].fn = fn;
        }
    }
    Py_DECREF(seq);
    return 0;
fail:
    Py_DECREF(seq);
    return -1;
}

/* Validate one DataRow body exactly as RowPlan.apply does: 1 when well formed. */
static int row_ok(const unsigned char *b, Py_ssize_t start, Py_ssize_t end, int16_t *ncols_out) {
    if (end - start < 7) return 0;
    int16_t n = (int16_t)(((unsigned)b[start + 5] << 8) | b[start + 6]);
    Py_ssize_t pos = start + 7;
    for (int i = 0; i < n; i++) {
        if (pos + 4 > end) return 0;
        int32_t ln = get_i32(b + pos);
        pos += 4;
        if (ln < 0) {
            if (ln != -1) return 0;
            continue;
        }
        if ((Py_ssize_t)ln > end - pos) return 0;
        pos += ln;
    }
    *ncols_out = n;
    return pos == end;
}

/* The result of fn(value) appended to out. 1 appended, 0 the fn raised a value error (cleared:
 * the reference path re-runs it and raises MessageError), -1 another error. *changed set. */
static int call_fn(Plan *self, PyObject *fn, const char *v, Py_ssize_t ln, Out *o, int *changed) {
    PyObject *val = PyBytes_FromStringAndSize(v, ln);
    if (!val) return -1;
    PyObject *res = PyObject_CallOneArg(fn, val);
    if (!res) {
        Py_DECREF(val);
        if (PyErr_ExceptionMatches(self->value_errors)) {
            PyErr_Clear();
            return 0;
        }
        return -1;
    }
    int rc = 1;
    if (res == Py_None) {
        *changed = 1;
        if (out_null(o) < 0) rc = -1;
    } else if (PyBytes_Check(res)) {
        Py_ssize_t rn = PyBytes_GET_SIZE(res);
        if (rn > INT32_MAX) {
            PyErr_SetString(PyExc_OverflowError, "value too long");
            rc = -1;
        } else {
            *changed = res != val && (rn != ln || memcmp(PyBytes_AS_STRING(res), v, ln) != 0);
            if (out_value(o, PyBytes_AS_STRING(res), rn) < 0) rc = -1;
        }
    } else {
        PyErr_SetString(PyExc_TypeError, "a value function must return bytes or None");
        rc = -1;
    }
    Py_DECREF(res);
    Py_DECREF(val);
    return rc;
}

/* walk(buf, start, end, max_rows, ncols, max_len) -> (out | None, consumed, rows, changed)
 *
 * Consumes consecutive DataRow messages of buf[start:end]; stops at the first other message, an
 * incomplete one, one longer than max_len (the framer's limit: it refuses it), a row whose column
 * count is not ncols (ncols < 0: any), a malformed row, a row whose Python function raised a
 * value error, or after max_rows rows (< 0: no limit). `consumed` is the offset after the last
 * row walked; out is None when no value changed (the input bytes are the output). */
static PyObject *plan_walk(Plan *self, PyObject *args) {
    Py_buffer view;
    Py_ssize_t start, end, max_rows, max_len;
    int ncols;
    if (!PyArg_ParseTuple(args, "y*nnnin", &view, &start, &end, &max_rows, &ncols, &max_len)) return NULL;
    if (start < 0 || end > view.len || start > end) {
        PyBuffer_Release(&view);
        PyErr_SetString(PyExc_ValueError, "bad range");
        return NULL;
    }
    const unsigned char *b = view.buf;
    Out o = {NULL, 0, 0};
    Py_ssize_t pos = start, rows = 0, changed_total = 0;
    int any = 0;
    Py_ssize_t pn = self->ncols;
    unsigned char hits[256];
    unsigned char *hit = pn <= 256 ? hits : PyMem_Malloc(pn);
    if (!hit) {
        PyBuffer_Release(&view);
        return PyErr_NoMemory();
    }
    while (max_rows < 0 || rows < max_rows) {
        if (end - pos < 5 || b[pos] != 'D') break;
        int32_t mlen = get_i32(b + pos + 1);
        if (mlen < 4 || mlen > max_len || (Py_ssize_t)mlen + 1 > end - pos) break;
        Py_ssize_t mend = pos + 1 + mlen;
        int16_t n;
        if (!row_ok(b, pos, mend, &n) || (ncols >= 0 && n != ncols)) break;
        Py_ssize_t row_at = o.len;
        if (out_reserve(&o, 7) < 0) goto error;
        memcpy(o.p + o.len, b + pos, 7);
        o.len += 7;
        Py_ssize_t vp = pos + 7;
        Py_ssize_t row_changed = 0;
        if (pn) memset(hit, 0, pn);
        int stop = 0;
        for (int i = 0; i < n; i++) {
            int32_t ln = get_i32(b + vp);
            const char *v = (const char *)b + vp + 4;
            vp += 4 + (ln > 0 ? ln : 0);
            Col *c = i < pn ? &self->cols[i] : NULL;
            int op = c ? c->op : OP_PASS;
            if (op == OP_CONST) {
                /* Concealed: NULL too becomes the constant. */
                PyObject *k = c->arg;
                Py_ssize_t kn = PyBytes_GET_SIZE(k);
                if (ln != kn || memcmp(v, PyBytes_AS_STRING(k), kn) != 0) row_changed++;
                if (out_value(&o, PyBytes_AS_STRING(k), kn) < 0) goto error;
                continue;
            }
            if (ln < 0) {
                if (out_null(&o) < 0) goto error;
                continue;
            }
            if (op == OP_PASS) {
                if (out_value(&o, v, ln) < 0) goto error;
                continue;
            }
            if (op == OP_NULL) {
                if (out_null(&o) < 0) goto error;
                row_changed++;
                continue;
            }
            if (op >= OP_MOBILE && op <= OP_CARD) {
                if (out_reserve(&o, 4 + ln) < 0) goto error;
                if (native_mask(op, (const unsigned char *)v, ln, o.p + o.len + 4)) {
                    put_i32(o.p + o.len, ln);
                    o.len += 4 + ln;
                    row_changed++; /* a digit became '*': always a change */
                    hit[i] = 1;
                    continue;
                }
            } else if (op == OP_DETECT) {
                if (out_reserve(&o, 4 + ln) < 0) goto error;
                int r = detect_native((const unsigned char *)v, ln, c->gate, o.p + o.len + 4);
                if (r == 1) {
                    if (out_value(&o, v, ln) < 0) goto error;
                    continue;
                }
                if (r == 2) {
                    put_i32(o.p + o.len, ln);
                    o.len += 4 + ln;
                    row_changed++; /* a digit became '*' */
                    hit[i] = 1;
                    continue;
                }
            }
            int ch = 0;
            int rc = call_fn(self, c->fn, v, ln, &o, &ch);
            if (rc < 0) goto error;
            if (rc == 0) {
                stop = 1;
                break;
            }
            row_changed += ch;
        }
        if (stop) {
            o.len = row_at;
            break;
        }
        Py_ssize_t body = o.len - row_at - 1;
        if (body > INT32_MAX) {
            PyErr_SetString(PyExc_OverflowError, "row too long");
            goto error;
        }
        put_i32(o.p + row_at + 1, (int32_t)body);
        if (row_changed) {
            any = 1;
            changed_total += row_changed;
            for (Py_ssize_t i = 0; i < pn; i++) self->counts[i] += hit[i];
        }
        rows++;
        pos = mend;
    }
    if (hit != hits) PyMem_Free(hit);
    PyBuffer_Release(&view);
    PyObject *outb;
    if (any) {
        outb = PyBytes_FromStringAndSize(o.p, o.len);
    } else {
        outb = Py_None;
        Py_INCREF(outb);
    }
    PyMem_Free(o.p);
    if (!outb) return NULL;
    PyObject *r = Py_BuildValue("(Nnnn)", outb, pos, rows, changed_total);
    return r;
error:
    if (hit != hits) PyMem_Free(hit);
    PyMem_Free(o.p);
    PyBuffer_Release(&view);
    return NULL;
}

/* take_counts() -> tuple of per-column counts of values a native mask changed, then zeroed; None
 * when there are none (the caller adds them to the maskers' metrics). */
static PyObject *plan_take_counts(Plan *self, PyObject *unused) {
    int any = 0;
    for (Py_ssize_t i = 0; i < self->ncols; i++)
        if (self->counts[i]) any = 1;
    if (!any) Py_RETURN_NONE;
    PyObject *t = PyTuple_New(self->ncols);
    if (!t) return NULL;
    for (Py_ssize_t i = 0; i < self->ncols; i++) {
        PyObject *v = PyLong_FromSsize_t(self->counts[i]);
        if (!v) {
            Py_DECREF(t);
            return NULL;
        }
        PyTuple_SET_ITEM(t, i, v);
        self->counts[i] = 0;
    }
    return t;
}

/* detect_clear(value, gate) -> bool, exposed for the property tests of the gate. */
static PyObject *py_detect_clear(PyObject *mod, PyObject *args) {
    Py_buffer v;
    unsigned gate;
    if (!PyArg_ParseTuple(args, "y*I", &v, &gate)) return NULL;
    int r = detect_clear(v.buf, v.len, gate);
    PyBuffer_Release(&v);
    return PyBool_FromLong(r);
}

static PyMethodDef plan_methods[] = {
    {"walk", (PyCFunction)plan_walk, METH_VARARGS, "Mask a run of DataRow messages."},
    {"take_counts", (PyCFunction)plan_take_counts, METH_NOARGS, "Native mask counts per column."},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject PlanType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "proxy.pg._rowwalk.Plan",
    .tp_basicsize = sizeof(Plan),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)plan_init,
    .tp_dealloc = (destructor)plan_dealloc,
    .tp_traverse = (traverseproc)plan_traverse,
    .tp_clear = (inquiry)plan_tp_clear,
    .tp_methods = plan_methods,
};

/* detect(value, gate) -> the text masker's output (bytes) where sure, else None; for tests. */
static PyObject *py_detect(PyObject *mod, PyObject *args) {
    Py_buffer v;
    unsigned gate;
    if (!PyArg_ParseTuple(args, "y*I", &v, &gate)) return NULL;
    PyObject *res = PyBytes_FromStringAndSize(NULL, v.len);
    if (!res) {
        PyBuffer_Release(&v);
        return NULL;
    }
    int r = detect_native(v.buf, v.len, gate, PyBytes_AS_STRING(res));
    if (r == 1) memcpy(PyBytes_AS_STRING(res), v.buf, v.len);
    PyBuffer_Release(&v);
    if (r == 0) {
        Py_DECREF(res);
        Py_RETURN_NONE;
    }
    return res;
}

/* set_name_starts(str): the characters a known surname starts with (see is_name_start). */
static PyObject *py_set_name_starts(PyObject *mod, PyObject *arg) {
    if (!PyUnicode_Check(arg) || PyUnicode_READY(arg) < 0) {
        PyErr_SetString(PyExc_TypeError, "a str of surname characters");
        return NULL;
    }
    Py_ssize_t k = PyUnicode_GET_LENGTH(arg);
    Py_UCS4 *cps = PyMem_Malloc((k ? k : 1) * sizeof(Py_UCS4));
    if (!cps) return PyErr_NoMemory();
    for (Py_ssize_t i = 0; i < k; i++) {
        cps[i] = PyUnicode_READ_CHAR(arg, i);
        if (i && cps[i] <= cps[i - 1]) {
            PyMem_Free(cps);
            PyErr_SetString(PyExc_ValueError, "surname characters must be sorted and distinct");
            return NULL;
        }
    }
    PyMem_Free(name_starts);
    name_starts = cps;
    n_name_starts = k;
    Py_RETURN_NONE;
}

/* column_values(buf, start, end, wanted: bytes) -> list
 * For the whole, well-formed DataRow messages in buf[start:end] (rows the walker or the reference
 * already went through), the values of the columns i with wanted[i] != 0, row by row, as
 * (i, bytes) pairs; NULLs are left out. RowPlan.note's reference loop in proxy/pg/rowmask.py
 * gives the same list. Raises ValueError on a message that does not frame. */
static PyObject *py_column_values(PyObject *mod, PyObject *args) {
    Py_buffer view;
    Py_ssize_t start, end;
    const unsigned char *wanted;
    Py_ssize_t nwanted;
    if (!PyArg_ParseTuple(args, "y*nny#", &view, &start, &end, &wanted, &nwanted)) return NULL;
    PyObject *out = PyList_New(0);
    if (out == NULL) goto fail;
    const unsigned char *b = (const unsigned char *)view.buf;
    if (start < 0 || end > view.len || start > end) goto bad;
    Py_ssize_t pos = start;
    while (pos < end) {
        if (end - pos < 7 || b[pos] != 'D') goto bad;
        Py_ssize_t mend = pos + 1 + (Py_ssize_t)get_i32(b + pos + 1);
        if (mend > end || mend < pos + 7) goto bad;
        int ncols = (b[pos + 5] << 8) | b[pos + 6];
        Py_ssize_t p = pos + 7;
        for (int i = 0; i < ncols && i < nwanted; i++) {
            if (p + 4 > mend) goto bad;
            int32_t ln = get_i32(b + p);
            p += 4;
            if (ln > 0 && p + ln > mend) goto bad;
            if (wanted[i] && ln >= 0) {
                PyObject *pair = Py_BuildValue("(iy#)", i, (const char *)(b + p), (Py_ssize_t)ln);
                if (pair == NULL) goto fail;
                int rc = PyList_Append(out, pair);
                Py_DECREF(pair);
                if (rc < 0) goto fail;
            }
            if (ln > 0) p += ln;
        }
        pos = mend;
    }
    PyBuffer_Release(&view);
    return out;
bad:
    PyErr_SetString(PyExc_ValueError, "not a run of DataRow messages");
fail:
    Py_XDECREF(out);
    PyBuffer_Release(&view);
    return NULL;
}

static PyMethodDef methods[] = {
    {"column_values", py_column_values, METH_VARARGS, "The wanted columns' values of a run of DataRows."},
    {"set_name_starts", py_set_name_starts, METH_O, "The characters a known surname starts with."},
    {"detect_clear", py_detect_clear, METH_VARARGS, "Is this text certainly left unchanged?"},
    {"detect", py_detect, METH_VARARGS, "The text masker's output where sure, else None."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, .m_name = "proxy.pg._rowwalk", .m_size = -1, .m_methods = methods};

PyMODINIT_FUNC PyInit__rowwalk(void) {
    if (PyType_Ready(&PlanType) < 0) return NULL;
    PyObject *m = PyModule_Create(&module);
    if (!m) return NULL;
    Py_INCREF(&PlanType);
    if (PyModule_AddObject(m, "Plan", (PyObject *)&PlanType) < 0) {
        Py_DECREF(&PlanType);
        Py_DECREF(m);
        return NULL;
    }
    PyModule_AddIntConstant(m, "PASS", OP_PASS);
    PyModule_AddIntConstant(m, "CONST", OP_CONST);
    PyModule_AddIntConstant(m, "PYFN", OP_PYFN);
    PyModule_AddIntConstant(m, "MOBILE", OP_MOBILE);
    PyModule_AddIntConstant(m, "ID", OP_ID);
    PyModule_AddIntConstant(m, "CARD", OP_CARD);
    PyModule_AddIntConstant(m, "DETECT", OP_DETECT);
    PyModule_AddIntConstant(m, "NULL", OP_NULL);
    PyModule_AddIntConstant(m, "G_DIGITS", G_DIGITS);
    PyModule_AddIntConstant(m, "G_IP", G_IP);
    PyModule_AddIntConstant(m, "G_EMAIL", G_EMAIL);
    PyModule_AddIntConstant(m, "G_NAME", G_NAME);
    PyModule_AddIntConstant(m, "G_MG_SHIFT", G_MG_SHIFT);
    return m;
}
