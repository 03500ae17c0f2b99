/* Native Bloom filter insertion for the disclosure ledger (proxy.services._bloom).
 *
 * proxy/services/ledger.py's `add_keys` is the reference: the same bit positions (Kirsch-
 * Mitzenmacher double hashing over a key's first 16 bytes, exact arithmetic: (h1 + i*h2) mod m
 * in 128 bits, as Python's integers compute it), the same bits set in the filter and its delta,
 * the same count returned. One call per batch instead of k Python steps per value.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

static uint64_t be64(const unsigned char *p) {
    uint64_t v = 0;
    for (int i = 0; i < 8; i++) v = (v << 8) | p[i];
    return v;
}

/* add(bits: bytearray, delta: bytearray, keys: bytes, width: int, m: int, k: int) -> int
 * keys: consecutive keys of `width` bytes (>= 16). Returns how many keys set a bit not set before. */
static PyObject *add(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 6) {
        PyErr_SetString(PyExc_TypeError, "add(bits, delta, keys, width, m, k)");
        return NULL;
    }
    if (!PyByteArray_Check(args[0]) || !PyByteArray_Check(args[1]) || !PyBytes_Check(args[2])) {
        PyErr_SetString(PyExc_TypeError, "bits and delta are bytearrays, keys bytes");
        return NULL;
    }
    Py_ssize_t width = PyLong_AsSsize_t(args[3]);
    unsigned long long m = PyLong_AsUnsignedLongLong(args[4]);
    long k = PyLong_AsLong(args[5]);
    if (PyErr_Occurred()) return NULL;
    Py_ssize_t nbits = PyByteArray_GET_SIZE(args[0]);
    if (width < 16 || m == 0 || k < 1 || (unsigned long long)nbits * 8 < m ||
        PyByteArray_GET_SIZE(args[1]) != nbits || PyBytes_GET_SIZE(args[2]) % width != 0) {
        PyErr_SetString(PyExc_ValueError, "inconsistent sizes");
        return NULL;
    }
    unsigned char *bits = (unsigned char *)PyByteArray_AS_STRING(args[0]);
    unsigned char *delta = (unsigned char *)PyByteArray_AS_STRING(args[1]);
    const unsigned char *keys = (const unsigned char *)PyBytes_AS_STRING(args[2]);
    Py_ssize_t n = PyBytes_GET_SIZE(args[2]) / width;
    long changed = 0;
    for (Py_ssize_t j = 0; j < n; j++) {
        const unsigned char *key = keys + j * width;
        unsigned __int128 h1 = be64(key), h2 = be64(key + 8) | 1u;
        int new_bit = 0;
        for (long i = 0; i < k; i++) {
            uint64_t pos = (uint64_t)((h1 + (unsigned __int128)i * h2) % m);
            unsigned char bit = (unsigned char)(1u << (pos & 7));
            if (!(bits[pos >> 3] & bit)) {
                bits[pos >> 3] |= bit;
                delta[pos >> 3] |= bit;
                new_bit = 1;
            }
        }
        changed += new_bit;
    }
    return PyLong_FromLong(changed);
}

/* ---- HMAC-SHA256 of ASCII-digit values (disclosure.py keyer is the reference) ---------------- */

typedef struct {
    uint32_t h[8];
} Sha;

static const uint32_t K256[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2};

#define ROR(x, n) (((x) >> (n)) | ((x) << (32 - (n))))

static void sha_block(Sha *s, const unsigned char *b) {
    uint32_t w[64];
    for (int i = 0; i < 16; i++)
        w[i] = ((uint32_t)b[4 * i] << 24) | ((uint32_t)b[4 * i + 1] << 16) | ((uint32_t)b[4 * i + 2] << 8) | b[4 * i + 3];
    for (int i = 16; i < 64; i++) {
        uint32_t s0 = ROR(w[i - 15], 7) ^ ROR(w[i - 15], 18) ^ (w[i - 15] >> 3);
        uint32_t s1 = ROR(w[i - 2], 17) ^ ROR(w[i - 2], 19) ^ (w[i - 2] >> 10);
        w[i] = w[i - 16] + s0 + w[i - 7] + s1;
    }
    uint32_t a = s->h[0], b_ = s->h[1], c = s->h[2], d = s->h[3], e = s->h[4], f = s->h[5], g = s->h[6], h = s->h[7];
    for (int i = 0; i < 64; i++) {
        uint32_t t1 = h + (ROR(e, 6) ^ ROR(e, 11) ^ ROR(e, 25)) + ((e & f) ^ (~e & g)) + K256[i] + w[i];
        uint32_t t2 = (ROR(a, 2) ^ ROR(a, 13) ^ ROR(a, 22)) + ((a & b_) ^ (a & c) ^ (b_ & c));
        h = g; g = f; f = e; e = d + t1; d = c; c = b_; b_ = a; a = t1 + t2;
    }
    s->h[0] += a; s->h[1] += b_; s->h[2] += c; s->h[3] += d;
    s->h[4] += e; s->h[5] += f; s->h[6] += g; s->h[7] += h;
}

static void sha_init(Sha *s) {
    static const uint32_t iv[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                                   0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
    memcpy(s->h, iv, sizeof iv);
}

/* The last block(s) of a message of `total` bytes whose tail (< 64 bytes) is msg[0:n]. */
static void sha_final(Sha *s, const unsigned char *msg, size_t n, uint64_t total, unsigned char out[32]) {
    unsigned char blk[128];
    memset(blk, 0, sizeof blk);
    memcpy(blk, msg, n);
    blk[n] = 0x80;
    size_t len = n + 1 + 8 <= 64 ? 64 : 128;
    uint64_t bits = total * 8;
    for (int i = 0; i < 8; i++) blk[len - 1 - i] = (unsigned char)(bits >> (8 * i));
    sha_block(s, blk);
    if (len == 128) sha_block(s, blk + 64);
    for (int i = 0; i < 8; i++) {
        out[4 * i] = (unsigned char)(s->h[i] >> 24);
        out[4 * i + 1] = (unsigned char)(s->h[i] >> 16);
        out[4 * i + 2] = (unsigned char)(s->h[i] >> 8);
        out[4 * i + 3] = (unsigned char)s->h[i];
    }
}

/* keys(masking_key: bytes, values: list[bytes]) -> list[bytes | None]
 * HMAC-SHA256 of each value that is 1 to 40 ASCII digits (fold's fast path: a 13-digit value
 * as disclosure.py `_national` folds it); None for any other value (the caller keys it in Python). */
static PyObject *keys(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 2 || !PyBytes_Check(args[0]) || !PyList_Check(args[1])) {
        PyErr_SetString(PyExc_TypeError, "keys(masking_key: bytes, values: list[bytes])");
        return NULL;
    }
    unsigned char block[64], tmp[32];
    memset(block, 0, sizeof block);
    const unsigned char *key = (const unsigned char *)PyBytes_AS_STRING(args[0]);
    Py_ssize_t klen = PyBytes_GET_SIZE(args[0]);
    if (klen > 64) {
        Sha ks;
        sha_init(&ks);
        Py_ssize_t off = 0;
        for (; klen - off >= 64; off += 64) sha_block(&ks, key + off);
        sha_final(&ks, key + off, (size_t)(klen - off), (uint64_t)klen, tmp);
        memcpy(block, tmp, 32);
    } else {
        memcpy(block, key, (size_t)klen);
    }
    unsigned char pad[64];
    Sha inner0, outer0;
    for (int i = 0; i < 64; i++) pad[i] = block[i] ^ 0x36;
    sha_init(&inner0);
    sha_block(&inner0, pad);
    for (int i = 0; i < 64; i++) pad[i] = block[i] ^ 0x5c;
    sha_init(&outer0);
    sha_block(&outer0, pad);

    PyObject *values = args[1];
    Py_ssize_t n = PyList_GET_SIZE(values);
    PyObject *out = PyList_New(n);
    if (out == NULL) return NULL;
    for (Py_ssize_t j = 0; j < n; j++) {
        PyObject *v = PyList_GET_ITEM(values, j);
        PyObject *item = Py_None;
        if (PyBytes_Check(v)) {
            const unsigned char *p = (const unsigned char *)PyBytes_AS_STRING(v);
            Py_ssize_t len = PyBytes_GET_SIZE(v);
            int digits = len >= 1 && len <= 40;
            for (Py_ssize_t i = 0; digits && i < len; i++) digits = p[i] >= '0' && p[i] <= '9';
            if (digits) {
                /* disclosure.py `_national`: country code, international prefix, trunk 0. */
                if ((len == 13 && memcmp(p, "861", 3) == 0) || (len == 14 && memcmp(p, "8601", 4) == 0)) {
                    p += 2;
                    len -= 2;
                } else if ((len == 15 && memcmp(p, "00861", 5) == 0) || (len == 16 && memcmp(p, "008601", 6) == 0)) {
                    p += 4;
                    len -= 4;
                }
                if (len == 12 && p[0] == '0' && p[1] == '1' && p[2] >= '3' && p[2] <= '9') {
                    p += 1;
                    len -= 1;
                }
                Sha s = inner0;
                sha_final(&s, p, (size_t)len, 64 + (uint64_t)len, tmp);
                Sha o = outer0;
                unsigned char digest[32];
                sha_final(&o, tmp, 32, 64 + 32, digest);
                item = PyBytes_FromStringAndSize((const char *)digest, 32);
                if (item == NULL) {
                    Py_DECREF(out);
                    return NULL;
                }
            }
        }
        if (item == Py_None) Py_INCREF(Py_None);
        PyList_SET_ITEM(out, j, item);
    }
    return out;
}

static PyMethodDef methods[] = {
    {"keys", (PyCFunction)(void (*)(void))keys, METH_FASTCALL, "HMAC-SHA256 of ASCII-digit values, else None."},
    {"add", (PyCFunction)(void (*)(void))add, METH_FASTCALL, "Set the keys' bits in a filter and its delta."},
    {NULL, NULL, 0, NULL}};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "proxy.services._bloom", NULL, -1, methods};

PyMODINIT_FUNC PyInit__bloom(void) { return PyModule_Create(&module); }
