/* Digit-run PII finders: a byte-level transcription of masking/detectors.py (see _digits.h).
 *
 * Each finder below is the hand-compiled form of one regex of detectors.py, matched the way
 * Python's `re.finditer` matches it: leftmost position first, alternatives and greedy quantifiers
 * in the regex's own order, and the scan resumes after a match whether or not the match then passes
 * validation (a 12-digit run is not retried from its second digit). The comments name the regex
 * part a branch stands for; where a quantifier cannot backtrack usefully (the next token cannot
 * match what it would give back) the code takes the single viable choice and says so once.
 *
 * Why bytes work: every one of those regexes is ASCII-only (re.ASCII), so a non-ASCII character
 * is "other" to every character class and lookaround, as each of its UTF-8 bytes (>= 0x80) is
 * here; spans are all-ASCII, so their byte length is their character length. The context windows
 * (16 characters before a card or passport) are counted in characters.
 */
#define _POSIX_C_SOURCE 200809L /* localtime_r */
#include "_digits.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef unsigned char u8;

typedef struct {
    const u8 *b;
    size_t lo, n; /* the segment the finders work on (see segments below); context reads before lo */
    int unsure;
    int have_today;
    long day_lo, day_hi; /* yyyymmdd of today - 2 and today + 2 (local time, as date.today()) */
    mg_span *c;
    size_t nc, capc;
    int owned;
} scan_t;

static inline int at(const scan_t *s, size_t p) { return p < s->n ? s->b[p] : -1; }
static inline int isd(int c) { return c >= '0' && c <= '9'; }
static inline int isalnum_a(int c) { return isd(c) || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z'); }
static inline int is_sep(int c) { return c == ' ' || c == '\t' || c == '-'; } /* [ \t-] */
static inline int is_blank(int c) { return c == ' ' || c == '\t'; }          /* [ \t] */

static int digits_at(const scan_t *s, size_t p, size_t k) {
    for (size_t i = 0; i < k; i++)
        if (!isd(at(s, p + i))) return 0;
    return 1;
}

/* (?<![0-9A-Za-z]) and (?<![0-9+]) */
static inline int lb_alnum_ok(const scan_t *s, size_t p) { return p == s->lo || !isalnum_a(s->b[p - 1]); }
static inline int lb_digit_plus_ok(const scan_t *s, size_t p) {
    return p == s->lo || !(isd(s->b[p - 1]) || s->b[p - 1] == '+');
}

static void add(scan_t *s, size_t start, size_t end, int cls, double conf) {
    if (s->nc == s->capc) {
        size_t cap = s->capc * 2;
        mg_span *grown = malloc(cap * sizeof *grown);
        if (grown == NULL) {
            s->unsure = 1;
            return;
        }
        memcpy(grown, s->c, s->nc * sizeof *grown);
        if (s->owned) free(s->c);
        s->c = grown;
        s->capc = cap;
        s->owned = 1;
    }
    s->c[s->nc++] = (mg_span){start, end, cls, conf};
}

/* ---- dates: birth_date_ok(y, m, d) = a real date in [1800-01-01, date.today()] ---- */

static long ymd_of(time_t t) {
    struct tm tm;
    if (localtime_r(&t, &tm) == NULL) return -1;
    return (tm.tm_year + 1900L) * 10000L + (tm.tm_mon + 1) * 100L + tm.tm_mday;
}

static int days_in_month(int y, int m) {
    static const int dm[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    if (m == 2 && ((y % 4 == 0 && y % 100 != 0) || y % 400 == 0)) return 29;
    return dm[m - 1];
}

/* 1 valid, 0 not; sets unsure near today, where the reference's own clock read decides. */
static int birth_ok(scan_t *s, int y, int m, int d) {
    if (y < 1800 || m < 1 || m > 12 || d < 1 || d > days_in_month(y, m)) return 0;
    if (!s->have_today) {
        /* localtime_r costs more than a whole line's scan: the bounds are kept a minute per
         * thread, which the two-day margin on either side of today more than covers. */
        static _Thread_local time_t cached_at;
        static _Thread_local long cached_lo = -1, cached_hi = -1;
        time_t now = time(NULL);
        if (cached_lo < 0 || now < cached_at || now - cached_at > 60) {
            cached_lo = ymd_of(now - 2 * 86400);
            cached_hi = ymd_of(now + 2 * 86400);
            cached_at = now;
            if (now == (time_t)-1 || cached_hi < 0) cached_lo = -1;
        }
        s->day_lo = cached_lo;
        s->day_hi = cached_hi;
        s->have_today = 1;
    }
    if (s->day_lo < 0) {
        s->unsure = 1;
        return 0;
    }
    long v = y * 10000L + m * 100L + d;
    if (v < s->day_lo) return 1;
    if (v > s->day_hi) return 0;
    s->unsure = 1;
    return 0;
}

static int num(const scan_t *s, size_t p, size_t k) {
    int v = 0;
    for (size_t i = 0; i < k; i++) v = v * 10 + (s->b[p + i] - '0');
    return v;
}

/* checksums.region_ok: a leading 9 or a province code */
static int region_ok(int first2) {
    static const unsigned char prov[] = {11, 12, 13, 14, 15, 21, 22, 23, 31, 32, 33, 34, 35, 36, 37, 41, 42,
                                         43, 44, 45, 46, 50, 51, 52, 53, 54, 61, 62, 63, 64, 65, 71, 81, 82, 83};
    if (first2 / 10 == 9) return 1;
    for (size_t i = 0; i < sizeof prov; i++)
        if (prov[i] == first2) return 1;
    return 0;
}

/* (?:0[1-9]|1[0-2]) and (?:0[1-9]|[12][0-9]|3[01]) */
static int month_re(const scan_t *s, size_t p) {
    int a = at(s, p), b = at(s, p + 1);
    return (a == '0' && b >= '1' && b <= '9') || (a == '1' && b >= '0' && b <= '2');
}
static int day_re(const scan_t *s, size_t p) {
    int a = at(s, p), b = at(s, p + 1);
    return (a == '0' && b >= '1' && b <= '9') || ((a == '1' || a == '2') && isd(b)) ||
           (a == '3' && (b == '0' || b == '1'));
}

/* ---- id_card: ID18_RE then ID15_RE, validate_id18 / validate_id15 ---- */

/* The end of the alphanumeric token starting at p. ID, USCC, card and passport regexes open with
 * (?<![0-9A-Za-z]) and close with (?![0-9A-Za-z]) (the grouped card form: at its last group), so
 * they match only at a token start, and a failed start can skip the rest of its token, whose
 * positions all fail the lookbehind. */
static size_t token_end(const scan_t *s, size_t p) {
    while (p < s->n && isalnum_a(s->b[p])) p++;
    return p;
}

/* ID18_RE and ID15_RE on the token [p, t) */
static void id_token(scan_t *s, size_t p, size_t t) {
    static const int w[17] = {7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2};
    static const char check[] = "10X98765432";
    {
        int c0 = s->b[p];
        if (t - p == 18) { /* ID18_RE */
            int y1 = s->b[p + 6], y2 = s->b[p + 7], last = s->b[p + 17];
            if (c0 >= '1' && c0 <= '9' && digits_at(s, p + 1, 5) &&
                ((y1 == '1' && (y2 == '8' || y2 == '9')) || (y1 == '2' && y2 == '0')) && digits_at(s, p + 8, 2) &&
                month_re(s, p + 10) && day_re(s, p + 12) && digits_at(s, p + 14, 3) &&
                (isd(last) || last == 'X' || last == 'x')) {
                int sum = 0;
                for (int i = 0; i < 17; i++) sum += (s->b[p + i] - '0') * w[i];
                int up = last == 'x' ? 'X' : last;
                if (region_ok(num(s, p, 2)) && check[sum % 11] == up &&
                    birth_ok(s, num(s, p + 6, 4), num(s, p + 10, 2), num(s, p + 12, 2)))
                    add(s, p, p + 18, MG_ID_CARD, 0.95);
            }
        } else if (t - p == 15) { /* ID15_RE */
            if (c0 >= '1' && c0 <= '8' && digits_at(s, p + 1, 7) && month_re(s, p + 8) && day_re(s, p + 10) &&
                digits_at(s, p + 12, 3)) {
                /* No check digit: region and date pass for ~1.4 % of random 15-digit runs. */
                if (region_ok(num(s, p, 2)) &&
                    birth_ok(s, 1900 + num(s, p + 6, 2), num(s, p + 8, 2), num(s, p + 10, 2)))
                    add(s, p, p + 15, MG_ID_CARD, 0.6);
            }
        }
    }
}

/* ---- context windows: regex.search(norm, max(0, start - 16), start) ---- */

static size_t window_start(const scan_t *s, size_t start) {
    size_t lo = start;
    for (int k = 0; lo > 0 && k < 16;) {
        lo--;
        if ((s->b[lo] & 0xC0) != 0x80) k++;
    }
    return lo;
}

typedef struct {
    const char *w;
    size_t len;
} word_t;
#define WORD(s) {s, sizeof s - 1}

/* BANK_CONTEXT_RE (re.I: only its ASCII words have case; no character of normalised text
 * case-folds onto their letters c a r d t o u n), PASSPORT_CONTEXT_RE (re.I, ditto for
 * p a s o r t: the long s folds to 's' but NFKC has already turned it into one),
 * TAIWAN_PERMIT_CONTEXT_RE. Each list ends with an empty word. */
static const word_t BANK_WORDS[] = {WORD("银行"), WORD("卡号"), WORD("账号"),     WORD("帐号"),  WORD("借记卡"),
                                    WORD("信用卡"), WORD("储蓄卡"), WORD("收款账户"), WORD("账户"),  WORD("帐户"),
                                    WORD("card"),   WORD("acct"),   WORD("account"),  {NULL, 0}};
static const word_t PASSPORT_WORDS[] = {WORD("护照"),   WORD("回乡证"), WORD("通行证"),   WORD("台胞证"),
                                        WORD("港澳"),   WORD("旅行证"), WORD("passport"), {NULL, 0}};
static const word_t TAIWAN_WORDS[] = {WORD("台胞证"), WORD("台湾居民"), WORD("台湾通行证"), {NULL, 0}};

/* Does an ASCII word (lower case) start at p, the text compared case-insensitively? */
static int ascii_word_at(const scan_t *s, size_t p, size_t hi, const word_t *w) {
    if (p + w->len > hi) return 0;
    for (size_t i = 0; i < w->len; i++) {
        int c = s->b[p + i];
        if (c >= 'A' && c <= 'Z') c += 32;
        if (c != (u8)w->w[i]) return 0;
    }
    return 1;
}

/* Any of `words` in the 16 characters before start (regex.search(norm, start - 16, start)).
 * Words are tried at character starts only: a UTF-8 word cannot match from inside a character. */
static int context(const scan_t *s, size_t start, const word_t *words) {
    size_t lo = window_start(s, start);
    for (size_t p = lo; p < start; p++) {
        u8 c = s->b[p];
        if ((c & 0xC0) == 0x80) continue;
        if (c < 0x80) {
            int lower = c >= 'A' && c <= 'Z' ? c + 32 : c;
            if (lower < 'a' || lower > 'z') continue;
            for (const word_t *w = words; w->w; w++)
                if ((u8)w->w[0] == lower && ascii_word_at(s, p, start, w)) return 1;
            continue;
        }
        if (p + 3 > start) break;
        u8 c1 = s->b[p + 1], c2 = s->b[p + 2];
        for (const word_t *w = words; w->w; w++)
            if ((u8)w->w[0] == c && (u8)w->w[1] == c1 && (u8)w->w[2] == c2 && p + w->len <= start &&
                memcmp(s->b + p + 3, w->w + 3, w->len - 3) == 0)
                return 1;
    }
    return 0;
}

/* ---- bank_card: BANK_RE, Luhn, context or card-like prefix ---- */

static int bank_tail_ok(const scan_t *s, size_t e) {
    /* (?![ -][0-9]) (?![0-9A-Za-z]) */
    int c = at(s, e);
    return !((c == ' ' || c == '-') && isd(at(s, e + 1))) && !isalnum_a(c);
}

static size_t bank_match(const scan_t *s, size_t p) {
    size_t r = 0;
    while (isd(at(s, p + r))) r++;
    /* [0-9]{16,19}(?![0-9A-Za-z]): a shorter take leaves a digit next, so only the whole run can match */
    if (r >= 16 && r <= 19 && !isalnum_a(at(s, p + r))) return p + r;
    /* [0-9]{4}(?:[ -][0-9]{4}){3}(?:[ -]?[0-9]{1,3})?(?![ -][0-9]) */
    if (r != 4) return 0;
    size_t q = p + 4;
    for (int g = 0; g < 3; g++) {
        int c = at(s, q);
        if (!((c == ' ' || c == '-') && digits_at(s, q + 1, 4))) return 0;
        q += 5;
    }
    int c = at(s, q);
    if (c == ' ' || c == '-')
        for (size_t k = 3; k >= 1; k--)
            if (digits_at(s, q + 1, k) && bank_tail_ok(s, q + 1 + k)) return q + 1 + k;
    for (size_t k = 3; k >= 1; k--)
        if (digits_at(s, q, k) && bank_tail_ok(s, q + k)) return q + k;
    return bank_tail_ok(s, q) ? q : 0;
}

/* BANK_RE at the token start p (a digit); the match end or 0 */
static size_t bank_at(scan_t *s, size_t p) {
    static const char *const bins[] = {"427020", "427030", "530990", "955880", "621226", "622200", "601382", "603367"};
    {
        size_t e = bank_match(s, p);
        if (!e) return 0;
        char d[24];
        int nd = 0;
        for (size_t i = p; i < e && nd < 23; i++)
            if (isd(s->b[i])) d[nd++] = (char)s->b[i];
        d[nd] = 0;
        int sum = 0;
        for (int i = 0; i < nd; i++) {
            int v = d[nd - 1 - i] - '0';
            if (i & 1) {
                v *= 2;
                if (v > 9) v -= 9;
            }
            sum += v;
        }
        if (nd >= 16 && nd <= 19 && sum % 10 == 0) {
            double conf = 0;
            int known = 0;
            for (size_t i = 0; i < sizeof bins / sizeof *bins; i++)
                if (memcmp(d, bins[i], 6) == 0) known = 1;
            if (context(s, p, BANK_WORDS))
                conf = 0.9;
            else if ((d[0] == '6' && d[1] == '2') || known)
                conf = 0.7;
            else if (d[0] == '4' || d[0] == '5' || d[0] == '9' || (d[0] == '3' && d[1] == '5'))
                conf = 0.5;
            if (conf > 0) add(s, p, e, MG_BANK_CARD, conf);
        }
        return e;
    }
}

/* ---- mobile: MOBILE_RE, segment table ---- */

/* Longest-prefix segment lookup folded onto 5-digit prefixes 13000-19999 (generated from
 * masking/segments.py; tests/masking/test_native.py checks every prefix against it):
 * 0 = no segment or IoT (is_cn_mobile refuses both), 1 = valid, 2 = valid with a low score. */
static const int SEG_RUNS[][2] = {{13000, 1}, {14000, 0}, {14500, 1}, {14600, 0}, {14700, 1}, {14800, 0}, {14900, 2},
                                  {15000, 1}, {15400, 0}, {15500, 1}, {16000, 0}, {16100, 2}, {16110, 0}, {16200, 1},
                                  {16300, 0}, {16500, 1}, {16800, 0}, {17000, 1}, {17406, 2}, {17413, 0}, {17490, 2},
                                  {17500, 1}, {17900, 0}, {18000, 1}, {19400, 0}, {19500, 1}};

static int segment_code(int prefix5) {
    int code = 0;
    for (size_t i = 0; i < sizeof SEG_RUNS / sizeof *SEG_RUNS && SEG_RUNS[i][0] <= prefix5; i++)
        code = SEG_RUNS[i][1];
    return code;
}

/* (?P<nat>1[3-9][0-9][ \t-]?[0-9]{4}[ \t-]?[0-9]{4})(?![0-9]); a [ \t-]? is taken exactly when
 * a separator is there (the [0-9]{4} after it cannot start on one). Returns the end or 0. */
static size_t mobile_nat(const scan_t *s, size_t q, int *prefix5) {
    int c1 = at(s, q + 1);
    if (at(s, q) != '1' || c1 < '3' || c1 > '9' || !isd(at(s, q + 2))) return 0;
    int v = num(s, q, 3);
    q += 3;
    if (is_sep(at(s, q))) q++;
    if (!digits_at(s, q, 4)) return 0;
    v = v * 100 + num(s, q, 2);
    q += 4;
    if (is_sep(at(s, q))) q++;
    if (!digits_at(s, q, 4) || isd(at(s, q + 4))) return 0;
    *prefix5 = v;
    return q + 4;
}

/* MOBILE_RE at p: the optional country code (tried first, greedy), then nat. Every way into the
 * country code starts with ( + 0 or 8 and nat with 1, so at most one of the two can apply. */
static size_t mobile_match(const scan_t *s, size_t p, int *prefix5) {
    size_t q = p;
    int c = at(s, q);
    if (c == '1') return mobile_nat(s, p, prefix5);
    if (c == '(') { /* \([ \t]*(?:\+|00)?86[ \t]*\) */
        q++;
        while (is_blank(at(s, q))) q++;
        if (at(s, q) == '+')
            q++;
        else if (at(s, q) == '0' && at(s, q + 1) == '0')
            q += 2;
        if (!(at(s, q) == '8' && at(s, q + 1) == '6')) return 0;
        q += 2;
        while (is_blank(at(s, q))) q++;
        if (at(s, q) != ')') return 0;
        q++;
    } else { /* (?:\+|00)?86 */
        if (c == '+')
            q++;
        else if (c == '0' && at(s, q + 1) == '0')
            q += 2;
        if (!(at(s, q) == '8' && at(s, q + 1) == '6')) return 0;
        q += 2;
    }
    if (is_sep(at(s, q))) q++; /* [ \t-]? */
    return mobile_nat(s, q, prefix5);
}

/* MOBILE_RE at p; the match end or 0 */
static size_t mobile_at(scan_t *s, size_t p) {
    int prefix5 = 0;
    size_t e = lb_digit_plus_ok(s, p) ? mobile_match(s, p, &prefix5) : 0;
    if (e) {
        int code = segment_code(prefix5);
        if (code) add(s, p, e, MG_MOBILE, code == 2 ? 0.5 : 0.85);
    }
    return e;
}

/* ---- uscc: USCC_RE, GB 32100 check, GB 11714 check for all-digit codes ---- */

static int uscc_value(int c) { /* index in USCC_CHARS, or -1 outside [0-9A-HJ-NP-RTUW-Y] */
    static const signed char letters[26] = {10, 11, 12, 13, 14, 15, 16, 17, -1, 18, 19, 20, 21,
                                            22, -1, 23, 24, 25, -1, 26, 27, -1, 28, 29, 30, -1};
    if (isd(c)) return c - '0';
    return c >= 'A' && c <= 'Z' ? letters[c - 'A'] : -1;
}

/* USCC_RE on the token [p, t) */
static void uscc_token(scan_t *s, size_t p, size_t t) {
    static const char chars[] = "0123456789ABCDEFGHJKLMNPQRTUWXY";
    static const int orgw[8] = {3, 7, 9, 10, 5, 8, 4, 2};
    {
        int c0 = s->b[p];
        int ok = t - p == 18 && ((c0 >= '1' && c0 <= '9') || c0 == 'A' || c0 == 'N' || c0 == 'Y') &&
                 uscc_value(s->b[p + 1]) >= 0 && digits_at(s, p + 2, 6);
        for (size_t i = 8; ok && i < 18; i++) ok = uscc_value(s->b[p + i]) >= 0;
        if (ok) {
            static const int w[17] = {1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28}; /* 3^i % 31 */
            int sum = 0, all_digits = 1;
            for (size_t i = 0; i < 17; i++) {
                sum += uscc_value(s->b[p + i]) * w[i];
                all_digits &= isd(s->b[p + i]);
            }
            int valid = chars[(31 - sum % 31) % 31] == s->b[p + 17];
            if (valid && all_digits && isd(s->b[p + 17])) {
                int o = 0;
                for (int i = 0; i < 8; i++) o += (s->b[p + 8 + i] - '0') * orgw[i];
                int c = 11 - o % 11;
                int expect = c == 10 ? 'X' : c == 11 ? '0' : '0' + c;
                valid = s->b[p + 16] == expect;
            }
            if (valid) add(s, p, p + 18, MG_USCC, 0.9);
        }
    }
}

/* ---- landline: LANDLINE_RE ---- */

/* (?P<ac>10|2[0-9]|[3-9][0-9]{2}): the first digit picks the alternative. Returns the length. */
static size_t area_code(const scan_t *s, size_t q) {
    int c = at(s, q);
    if (c == '1') return at(s, q + 1) == '0' ? 2 : 0;
    if (c == '2') return isd(at(s, q + 1)) ? 2 : 0;
    if (c >= '3' && c <= '9') return digits_at(s, q + 1, 2) ? 3 : 0;
    return 0;
}

/* [ \t-]? (?P<sub>[2-9][0-9]{2,3}[ \t-]?[0-9]{4}) (?![0-9]) after the area code; end or 0. */
static size_t landline_sub(const scan_t *s, size_t q) {
    if (is_sep(at(s, q))) q++;
    int c = at(s, q);
    if (c < '2' || c > '9') return 0;
    for (size_t k = 3; k >= 2; k--) {
        if (!digits_at(s, q + 1, k)) continue;
        size_t r = q + 1 + k;
        if (is_sep(at(s, r))) r++;
        if (digits_at(s, r, 4) && !isd(at(s, r + 4))) return r + 4;
    }
    return 0;
}

/* 1 when the area code is a freephone / shared-cost prefix (400, 800 with or without the 0) */
static int not_area(const scan_t *s, size_t q, size_t k) {
    return k == 3 && (s->b[q] == '4' || s->b[q] == '8') && s->b[q + 1] == '0' && s->b[q + 2] == '0';
}

static size_t landline_match(const scan_t *s, size_t p, int *freephone) {
    /* (?:\+|00)86[ \t-]?(?:\(0?\)[ \t]?)?(?P<ac1>...) */
    size_t q = p;
    if (at(s, q) == '+')
        q++;
    else if (at(s, q) == '0' && at(s, q + 1) == '0')
        q += 2;
    if (q > p && at(s, q) == '8' && at(s, q + 1) == '6') {
        q += 2;
        if (is_sep(at(s, q))) q++;
        if (at(s, q) == '(') {
            size_t r = q + 1;
            if (at(s, r) == '0') r++;
            if (at(s, r) == ')') {
                r++;
                if (is_blank(at(s, r))) r++;
                q = r;
            }
        }
        size_t k = area_code(s, q);
        size_t e = k ? landline_sub(s, q + k) : 0;
        if (e) {
            *freephone = not_area(s, q, k);
            return e;
        }
    }
    /* (?P<open>\()?(?P<ac2>0(?:10|2[0-9]|[3-9][0-9]{2}))(?(open)\)) */
    q = p;
    int open = at(s, q) == '(';
    if (open) q++;
    if (at(s, q) != '0') return 0;
    size_t k = area_code(s, q + 1);
    if (!k) return 0;
    size_t r = q + 1 + k;
    if (open) {
        if (at(s, r) != ')') return 0;
        r++;
    }
    size_t e = landline_sub(s, r);
    if (e) *freephone = not_area(s, q + 1, k);
    return e;
}

/* LANDLINE_RE at p; the match end or 0 */
static size_t landline_at(scan_t *s, size_t p) {
    int freephone = 0;
    size_t e = lb_digit_plus_ok(s, p) ? landline_match(s, p, &freephone) : 0;
    if (e && !freephone) add(s, p, e, MG_LANDLINE, 0.7);
    return e;
}

/* ---- passport: PASSPORT_RE and its context ---- */

/* [A-HJ-NP-Z] */
static int letter_no_io(int c) { return c >= 'A' && c <= 'Z' && c != 'I' && c != 'O'; }

/* Every alternative is followed by (?![0-9A-Za-z]) and preceded by (?<![0-9A-Za-z]), so a match
 * is a whole alphanumeric token of one of these shapes. */
static int passport_token(const scan_t *s, size_t p, size_t len) {
    int c0 = s->b[p], c1 = len > 1 ? s->b[p + 1] : 0;
    if (len == 9) {
        if ((c0 == 'E' || c0 == 'G' || c0 == 'K' || c0 == 'H' || c0 == 'M') && digits_at(s, p + 1, 8)) return 1;
        if (c0 == 'E' && letter_no_io(c1) && digits_at(s, p + 2, 7)) return 1;
        if ((c0 == 'P' || c0 == 'S' || c0 == 'D') && c1 == 'E' && digits_at(s, p + 2, 7)) return 1;
        if (c0 == 'M' && c1 == 'A' && digits_at(s, p + 2, 7)) return 1;
        if (c0 == 'C' && (isd(c1) || letter_no_io(c1)) && digits_at(s, p + 2, 7)) return 1;
        return 0;
    }
    if (len == 11) return (c0 == 'H' || c0 == 'M') && digits_at(s, p + 1, 10);
    if (len == 8 || len == 10) return digits_at(s, p, len);
    return 0;
}

/* PASSPORT_RE on the token [p, t) */
static void passport_at_token(scan_t *s, size_t p, size_t t) {
    if (passport_token(s, p, t - p)) {
        int ctx = context(s, p, isd(s->b[p]) ? TAIWAN_WORDS : PASSPORT_WORDS);
        if (ctx) add(s, p, t, MG_PASSPORT, 0.6);
    }
}

/* ---- the 7-digit gate: _DIGIT_GATE_RE ---- */

/* [0-9]{7}|[0-9]{2}[ \t()+-]{1,3}[0-9]{3,4}[ \t-][0-9]{4} anywhere */
static int gate(const scan_t *s) {
    size_t run = 0;
    for (size_t i = s->lo; i < s->n; i++) {
        if (!isd(s->b[i])) {
            run = 0;
            continue;
        }
        if (++run >= 7) return 1;
        if (run < 2) continue;
        /* b[i-1..i] are two digits: try the grouped form after them */
        for (size_t k = 1; k <= 3; k++) {
            int c = at(s, i + k);
            if (!(c == ' ' || c == '\t' || c == '(' || c == ')' || c == '+' || c == '-')) break;
            for (size_t m = 3; m <= 4; m++)
                if (digits_at(s, i + k + 1, m) && is_sep(at(s, i + k + 1 + m)) && digits_at(s, i + k + 2 + m, 4))
                    return 1;
        }
    }
    return 0;
}

/* ---- wider groupings: the reference's only, so "unsure" ---- */

static inline int group_sep(u8 c) { return c == ' ' || c == '\t' || c == '-' || c == '(' || c == ')'; }

/* 1 when the text may hold a match of the wider groupings of detectors.py (_PHONE_SEP,
 * _GROUP_SEP, the grouped ID forms) that the single-separator grammar this core implements would
 * not make (or would make differently): on such text only the reference is sure. Every such match
 * has, between two digits, a run of [ \t()-] that is
 *   - two or more long without a bracket (card, phone, landline and ID groups), or three or
 *     more with one (a landline's area code in brackets, then two or more separators), or
 *   - one holding a bracket (mobile groups only, _PHONE_SEP) after a run ending in the
 *     national number's first group or first two (1xx, 1xx1234, with 86/0086 glued in front) or
 *     after a middle group of 4, and before at least 4 digits; or
 *   - one to three long between six digits and six digits (an ID in groups).
 * Narrow on purpose: (010)2345-6789 and 010 2345 6789 keep the fast path. */
static int wide_gap(const u8 *b, size_t n) {
    size_t run = 0; /* digits ending at i */
    for (size_t i = 0; i < n; i++) {
        if (isd(b[i])) {
            run++;
            continue;
        }
        if (!run || !group_sep(b[i])) {
            run = 0;
            continue;
        }
        size_t j = i;
        int bracket = 0;
        while (j < n && group_sep(b[j])) bracket |= b[j] == '(' || b[j] == ')', j++;
        size_t k = j - i, after = 0;
        while (j + after < n && isd(b[j + after])) after++;
        if (after) {
            /* the national number's 1xx or 1xx1234 (with 86 or 0086 glued in front: 2 or 4 more) */
            int mobile_group = ((run == 3 || run == 5 || run == 7) && b[i - 3] == '1') || run == 4 || run == 7 ||
                               run == 9 || run == 11;
            if (bracket ? (mobile_group && after >= 4) || k >= 3 : k >= 2) return 1;
            if (k <= 3 && run >= 6 && after >= 6) return 1;
        }
        run = 0;
        i = j - 1;
    }
    return 0;
}

/* ---- input check ---- */

int mg_fold_stable(unsigned cp) {
    /* Each of these is its own NFKC form, is no dash of normalize.DASHES and case-folds onto no
     * ASCII letter, so text made of them and ASCII is returned unchanged by normalize(). */
    if (cp < 0x80 || (cp >= 0x4E00 && cp <= 0x9FFF)) return 1;
    if (cp == 0xB7 || cp == 0x2018 || cp == 0x2019 || cp == 0x201C || cp == 0x201D) return 1;
    if ((cp >= 0x3001 && cp <= 0x3002) || (cp >= 0x3008 && cp <= 0x3011) || (cp >= 0x3014 && cp <= 0x3015)) return 1;
    if ((cp >= 0x3400 && cp <= 0x4DBF) || (cp >= 0x4E00 && cp <= 0x9FFF)) return 1;
    /* Fullwidth punctuation folding to ASCII none of the detectors looks at (！＂＃＄＆＇＊，／：；＜＝＞？［＼］＾｀｛｜｝～);
     * ％（）＋－．＠＿, digits and letters fold to characters they do look at. */
    if ((cp >= 0xFF01 && cp <= 0xFF04) || cp == 0xFF06 || cp == 0xFF07 || cp == 0xFF0A || cp == 0xFF0C ||
        cp == 0xFF0F || (cp >= 0xFF1A && cp <= 0xFF1F) || (cp >= 0xFF3B && cp <= 0xFF3E) || cp == 0xFF40 ||
        (cp >= 0xFF5B && cp <= 0xFF5E))
        return 1;
    return 0;
}

/* 1 when b is valid UTF-8 (and, unless normalised, made only of fold-stable characters). */
static int input_ok(const scan_t *s, int normalized) {
    const u8 *b = s->b;
    size_t n = s->n;
    for (size_t i = 0; i < n;) {
        u8 c = b[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        unsigned cp;
        size_t k;
        if (c >= 0xC2 && c <= 0xDF) {
            cp = c & 0x1F;
            k = 1;
        } else if (c >= 0xE0 && c <= 0xEF) {
            cp = c & 0x0F;
            k = 2;
        } else if (c >= 0xF0 && c <= 0xF4) {
            cp = c & 0x07;
            k = 3;
        } else {
            return 0;
        }
        for (size_t j = 1; j <= k; j++) {
            if (i + j >= n || (b[i + j] & 0xC0) != 0x80) return 0;
            cp = cp << 6 | (b[i + j] & 0x3F);
        }
        if ((k == 2 && (cp < 0x800 || (cp >= 0xD800 && cp <= 0xDFFF))) || (k == 3 && (cp < 0x10000 || cp > 0x10FFFF)))
            return 0;
        if (!normalized && !mg_fold_stable(cp)) return 0;
        i += k + 1;
    }
    return 1;
}

/* ---- overlap resolution: detectors._resolve ---- */

static int priority(int cls) {
    switch (cls) {
    case MG_ID_CARD: return 0;
    case MG_BANK_CARD: return 1;
    case MG_MOBILE: return 2;
    case MG_USCC: return 3;
    case MG_LANDLINE: return 4;
    default: return 5;
    }
}

static int by_priority(const void *pa, const void *pb) {
    const mg_span *a = pa, *b = pb;
    int d = priority(a->cls) - priority(b->cls);
    if (d) return d;
    size_t la = a->end - a->start, lb = b->end - b->start;
    if (la != lb) return la > lb ? -1 : 1;
    return a->start < b->start ? -1 : a->start > b->start;
}

/* Keeps candidates in order, skipping any that overlaps one kept; `kept` ends up sorted by start
 * (kept spans never overlap, so one bisection finds the only two neighbours to compare). */
static size_t resolve(mg_span *c, size_t n, mg_span *kept) {
    qsort(c, n, sizeof *c, by_priority);
    size_t nk = 0;
    for (size_t j = 0; j < n; j++) {
        size_t lo = 0, hi = nk; /* bisect_right on start */
        while (lo < hi) {
            size_t mid = (lo + hi) / 2;
            if (kept[mid].start <= c[j].start)
                lo = mid + 1;
            else
                hi = mid;
        }
        if ((lo && kept[lo - 1].end > c[j].start) || (lo < nk && kept[lo].start < c[j].end)) continue;
        memmove(kept + lo + 1, kept + lo, (nk - lo) * sizeof *kept);
        kept[lo] = c[j];
        nk++;
    }
    return nk;
}

/* Every character any of the six regexes (and the gate) can match: [0-9A-Za-z \t()+-]. A match
 * lies inside one maximal run of them, and the character outside a run is "other" to every
 * lookaround, exactly as the text's start and end are; so the finders run on each run that holds a
 * digit (every match holds one) as if it were the whole text, which skips the CJK text around. */
static inline int in_segment(u8 c) {
    static const unsigned long long bits[2] = {0x3ff2b0100000200ULL, 0x7fffffe07fffffeULL};
    return c < 128 && (bits[c >> 6] >> (c & 63) & 1);
}

/* The next segment holding a digit at or after *pos: [*lo, *hi); 0 when there is none. */
static int next_segment(const u8 *b, size_t n, size_t *pos, size_t *lo, size_t *hi) {
    size_t p = *pos;
    while (p < n) {
        while (p < n && !in_segment(b[p])) p++;
        size_t start = p;
        int digit = 0;
        while (p < n && in_segment(b[p])) digit |= isd(b[p++]);
        if (digit) {
            *lo = start;
            *hi = *pos = p;
            return 1;
        }
    }
    *pos = p;
    return 0;
}

/* All requested finders over one segment in a single pass. Each keeps its own resume position,
 * as each regex's finditer does: a match hides the positions it covers from its own regex only. */
static void find_in_segment(scan_t *s, unsigned classes) {
    const unsigned token_classes = MG_ID_CARD | MG_USCC | MG_BANK_CARD | MG_PASSPORT;
    size_t bank_next = s->lo, mobile_next = s->lo, landline_next = s->lo;
    for (size_t p = s->lo; p < s->n;) {
        int c = s->b[p];
        if ((classes & token_classes) && isalnum_a(c) && lb_alnum_ok(s, p)) {
            size_t t = token_end(s, p);
            if (classes & MG_ID_CARD) id_token(s, p, t);
            if (classes & MG_USCC) uscc_token(s, p, t);
            if ((classes & MG_BANK_CARD) && p >= bank_next && isd(c)) {
                size_t e = bank_at(s, p);
                if (e) bank_next = e;
            }
            if (classes & MG_PASSPORT) passport_at_token(s, p, t);
        }
        if ((classes & MG_MOBILE) && p >= mobile_next && (c == '1' || c == '(' || c == '+' || c == '0' || c == '8')) {
            size_t e = mobile_at(s, p);
            if (e) mobile_next = e;
        }
        if ((classes & MG_LANDLINE) && p >= landline_next && (c == '+' || c == '0' || c == '(')) {
            size_t e = landline_at(s, p);
            if (e) landline_next = e;
        }
        /* The rest of a digit run starts nothing: every regex opens with a lookbehind refusing a
         * digit before it, (?<![0-9+]) or (?<![0-9A-Za-z]). */
        p++;
        if (isd(c))
            while (p < s->n && isd(s->b[p])) p++;
    }
}

int mg_find_digits_ex(const char *utf8, size_t len, unsigned classes, unsigned flags, mg_span *out, int cap) {
    mg_span local[32];
    scan_t s = {(const u8 *)utf8, 0, len, 0, 0, 0, 0, local, 0, sizeof local / sizeof *local, 0};
    if (cap < 0 || (len && utf8 == NULL)) return -1;
    if (!input_ok(&s, flags & MG_NORMALIZED)) return -1;
    classes &= MG_ALL_DIGIT_CLASSES;
    if (!classes) return 0;
    /* The segments are found once: the first pass stops at the end, or at 64 segments and then
     * the second pass finds them again. */
    size_t seg[64][2], nseg = 0, pos = 0;
    int open = 0;
    /* A wider grouping (wide_gap) lies inside one segment, as all its characters are in_segment:
     * checking each segment once costs nothing on text without digits. */
    while (nseg < 64 && next_segment(s.b, len, &pos, &s.lo, &s.n)) {
        if (wide_gap(s.b + s.lo, s.n - s.lo)) return -1;
        seg[nseg][0] = s.lo;
        seg[nseg++][1] = s.n;
        open = open || gate(&s);
    }
    int more = nseg == 64;
    while (!open && next_segment(s.b, len, &pos, &s.lo, &s.n)) {
        if (wide_gap(s.b + s.lo, s.n - s.lo)) return -1;
        open = gate(&s);
    }
    if (!open) return 0;
    /* detectors._FINDERS; the order of candidates is immaterial (resolve sorts on a total order) */
    for (size_t i = 0; i < nseg; i++) {
        s.lo = seg[i][0];
        s.n = seg[i][1];
        find_in_segment(&s, classes);
    }
    for (pos = nseg ? seg[nseg - 1][1] : 0; more && next_segment(s.b, len, &pos, &s.lo, &s.n);) {
        if (wide_gap(s.b + s.lo, s.n - s.lo)) {
            s.unsure = 1;
            break;
        }
        find_in_segment(&s, classes);
    }
    int result = -1;
    if (!s.unsure) {
        mg_span kept_local[32];
        mg_span *kept = s.nc <= 32 ? kept_local : malloc(s.nc * sizeof *kept);
        if (kept != NULL) {
            size_t nk = resolve(s.c, s.nc, kept);
            if (nk <= (size_t)cap) {
                memcpy(out, kept, nk * sizeof *kept);
                result = (int)nk;
            }
            if (kept != kept_local) free(kept);
        }
    }
    if (s.owned) free(s.c);
    return result;
}

int mg_find_digits(const char *utf8, size_t len, unsigned classes, mg_span *out, int cap) {
    return mg_find_digits_ex(utf8, len, classes, 0, out, cap);
}
