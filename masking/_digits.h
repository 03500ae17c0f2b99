/* Digit-run PII finders over UTF-8 bytes: a pure-C core with no Python API.
 *
 * It reproduces the six digit finders of masking/detectors.py (mobile, id_card, bank_card, uscc,
 * landline, passport), their 7-digit gate and their overlap resolution, so that C callers (the row
 * walker) and the Python binding (masking/_native.c) can skip the regexes. The Python code stays
 * the reference: where this core cannot be sure it returns the same spans, it says so (-1) and the
 * caller must run the reference on the text.
 */
#ifndef MASKGATE_DIGITS_H
#define MASKGATE_DIGITS_H

#include <stddef.h>

/* One found value; start/end are byte offsets into the input, cls one MG_* bit. conf is the
 * confidence masking.detectors reports (detect() exposes it; masking callers may ignore it). */
typedef struct {
    size_t start, end;
    int cls;
    double conf;
} mg_span;

enum { MG_MOBILE = 1, MG_ID_CARD = 2, MG_BANK_CARD = 4, MG_USCC = 8, MG_LANDLINE = 16, MG_PASSPORT = 32 };
#define MG_ALL_DIGIT_CLASSES 63u

/* Spans of the requested `classes` found in `utf8` (at most `cap`), sorted by start and
 * overlap-resolved exactly as masking.detectors does among these classes, or -1 = unsure: the
 * caller must run the Python reference on this text. -1 is returned whenever normalisation
 * (NFKC, dash folding) could change the text: any byte sequence other than ASCII or a short list
 * of fold-stable characters (CJK ideographs, common CJK punctuation), digit groups separated
 * more widely than by one space, tab or dash (the reference's wider groupings), invalid UTF-8, more than
 * `cap` spans, or an ID birth date within two days of today. 0 without any work beyond one pass
 * when the text has no run of 7 digits and no grouped number (the common case). */
int mg_find_digits(const char *utf8, size_t len, unsigned classes, mg_span *out, int cap);

/* As mg_find_digits, with MG_NORMALIZED in `flags` when the caller has already normalised the
 * text (masking.normalize.normalize): the fold-stable check is skipped, any valid UTF-8 is fine. */
enum { MG_NORMALIZED = 1 };
int mg_find_digits_ex(const char *utf8, size_t len, unsigned classes, unsigned flags, mg_span *out, int cap);

/* 1 when normalisation leaves the code point unchanged and no detector-relevant fold can involve
 * it (exposed for the property test that checks the list against masking.normalize). */
int mg_fold_stable(unsigned cp);

#endif
