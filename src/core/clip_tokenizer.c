/* CLIP BPE tokenizer: a C rendering of openai/CLIP clip/simple_tokenizer.py (@ d05afc43)
 *
 *     text = whitespace_clean(basic_clean(text)).lower()
 *     basic_clean(t)      = html.unescape(html.unescape(ftfy.fix_text(t))).strip()
 *     whitespace_clean(t) = regex.sub(r'\s+', ' ', t).strip()
 *     for piece in regex.findall(PAT, text, IGNORECASE): bytes -> byte encoder -> BPE
 *
 * with ftfy 6.1.1's fix_text defaults (the version the goldens were made with) minus its
 * mojibake repair (fix_encoding: the badness heuristic and re-decoding), which is out of scope:
 * text that ftfy would re-decode is tokenized as written. Everything else fix_text does is here:
 * HTML entities when the line has no '<', C1 controls as Windows-1252, Latin ligatures,
 * full/half-width forms, curly quotes, line breaks, terminal escapes, control characters and
 * NFC, repeated until nothing changes. The Unicode data come from Python's unicodedata via
 * tools/gen_unicode_tables.py, so the behaviour is Python's, not libc's.
 *
 * The text is processed as an array of code points (Python str semantics) and only turned
 * back into UTF-8 bytes per pre-split piece for the byte-level BPE. */
#include "clip_tokenizer.h"

#include "unicode_tables.h"

#include <stdlib.h>
#include <string.h>
#include <zlib.h>

/* Generated from data/vocab/bpe_simple_vocab_16e6.txt.gz by tools/embed_file.py. */
extern const unsigned char ldm_clip_vocab_gz[];
extern const size_t ldm_clip_vocab_gz_size;

/* upstream: merges = lines[1:49152-256-2+1] (line 0 is the "#version" header). */
#define CLIP_NUM_MERGES (49152 - 256 - 2)
/* ftfy TextFixerConfig.max_decode_length: longer lines are fixed in chunks of this size. */
#define FTFY_MAX_DECODE_LENGTH 1000000
/* ftfy loops until the text stops changing; every step only shortens or canonicalises, so a
 * handful of rounds always suffice. The cap only guards against a pathological input. */
#define FTFY_MAX_ROUNDS 64

/* ---------------------------------------------------------------------------------------- */
/* Code point buffers                                                                        */

typedef struct {
    uint32_t *v;
    size_t n, cap;
    bool oom;
} cpbuf;

static bool cb_reserve(cpbuf *b, size_t extra) {
    if (b->oom) return false;
    if (b->n + extra <= b->cap) return true;
    size_t cap = b->cap ? b->cap : 64;
    while (cap < b->n + extra) {
        if (cap > SIZE_MAX / 2 / sizeof(uint32_t)) {
            b->oom = true;
            return false;
        }
        cap *= 2;
    }
    uint32_t *v = realloc(b->v, cap * sizeof(uint32_t));
    if (!v) {
        b->oom = true;
        return false;
    }
    b->v = v;
    b->cap = cap;
    return true;
}

static inline void cb_push(cpbuf *b, uint32_t c) {
    if (b->n < b->cap || cb_reserve(b, 1)) b->v[b->n++] = c;
}

static void cb_append(cpbuf *b, const uint32_t *c, size_t n) {
    if (!n || !cb_reserve(b, n)) return;
    memcpy(b->v + b->n, c, n * sizeof(uint32_t));
    b->n += n;
}

static void cb_free(cpbuf *b) {
    free(b->v);
    b->v = NULL;
    b->n = b->cap = 0;
}

static void cb_swap(cpbuf *a, cpbuf *b) {
    cpbuf t = *a;
    *a = *b;
    *b = t;
}

static bool cb_equal(const cpbuf *a, const cpbuf *b) {
    return a->n == b->n && (a->n == 0 || memcmp(a->v, b->v, a->n * sizeof(uint32_t)) == 0);
}

/* ---------------------------------------------------------------------------------------- */
/* Table look-ups                                                                            */

static bool in_ranges(const ldm_urange *r, size_t n, uint32_t c) {
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (c < r[mid].lo) hi = mid;
        else if (c > r[mid].hi) lo = mid + 1;
        else return true;
    }
    return false;
}

static uint32_t range_val(const ldm_urange_val *r, size_t n, uint32_t c) {
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (c < r[mid].lo) hi = mid;
        else if (c > r[mid].hi) lo = mid + 1;
        else return r[mid].val;
    }
    return 0;
}

static const ldm_umap *find_map(const ldm_umap *m, size_t n, uint32_t c) {
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (c < m[mid].cp) hi = mid;
        else if (c > m[mid].cp) lo = mid + 1;
        else return &m[mid];
    }
    return NULL;
}

static const ldm_uentity *find_entity(const ldm_uentity *e, size_t n, const char *name) {
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        int cmp = strcmp(name, e[mid].name);
        if (cmp < 0) hi = mid;
        else if (cmp > 0) lo = mid + 1;
        else return &e[mid];
    }
    return NULL;
}

static uint32_t gc_class(uint32_t c) {
    if (c < 0x80) {
        if ((c | 0x20) >= 'a' && (c | 0x20) <= 'z') return LDM_UCLS_L;
        if (c >= '0' && c <= '9') return LDM_UCLS_ND;
        return 0;
    }
    return range_val(ldm_u_gc, ldm_u_gc_count, c);
}

/* The `regex` module's \s: the White_Space property. */
static bool is_white_space(uint32_t c) {
    if (c < 0x80) return c == ' ' || (c >= 0x09 && c <= 0x0D);
    return in_ranges(ldm_u_white_space, ldm_u_white_space_count, c);
}

/* Python's str.isspace(), which str.strip() uses: White_Space plus U+001C..U+001F. */
static bool is_py_space(uint32_t c) {
    if (c < 0x80) return c == ' ' || (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x1F);
    return in_ranges(ldm_u_isspace, ldm_u_isspace_count, c);
}

static uint32_t ccc_of(uint32_t c) {
    if (c < 0x300) return 0;
    return range_val(ldm_u_ccc, ldm_u_ccc_count, c);
}

/* ---------------------------------------------------------------------------------------- */
/* UTF-8                                                                                     */

/* Strict decoding as Python's bytes.decode('utf-8'): no overlongs, surrogates or > U+10FFFF. */
static ldm_status utf8_decode(const char *text, cpbuf *out) {
    const unsigned char *s = (const unsigned char *)text;
    size_t len = strlen(text);
    if (!cb_reserve(out, len)) return ldm_fail(LDM_ERR_NO_MEMORY, "out of memory decoding the prompt");
    size_t i = 0;
    while (i < len) {
        uint32_t c = s[i];
        size_t need;
        uint32_t min;
        if (c < 0x80) {
            out->v[out->n++] = c;
            i++;
            continue;
        } else if (c >= 0xC2 && c <= 0xDF) {
            need = 1, min = 0x80, c &= 0x1F;
        } else if (c >= 0xE0 && c <= 0xEF) {
            need = 2, min = 0x800, c &= 0x0F;
        } else if (c >= 0xF0 && c <= 0xF4) {
            need = 3, min = 0x10000, c &= 0x07;
        } else {
            return ldm_fail(LDM_ERR_INVALID_ARG, "prompt is not valid UTF-8: byte 0x%02X at offset %zu",
                            s[i], i);
        }
        if (len - i <= need)
            return ldm_fail(LDM_ERR_INVALID_ARG, "prompt is not valid UTF-8: truncated sequence at offset %zu", i);
        for (size_t k = 1; k <= need; k++) {
            if ((s[i + k] & 0xC0) != 0x80)
                return ldm_fail(LDM_ERR_INVALID_ARG,
                                "prompt is not valid UTF-8: bad continuation byte at offset %zu", i + k);
            c = (c << 6) | (s[i + k] & 0x3F);
        }
        if (c < min || c > 0x10FFFF || (c >= 0xD800 && c <= 0xDFFF))
            return ldm_fail(LDM_ERR_INVALID_ARG,
                            "prompt is not valid UTF-8: overlong, surrogate or out-of-range sequence at offset %zu", i);
        out->v[out->n++] = c;
        i += need + 1;
    }
    return LDM_OK;
}

/* Code points -> UTF-8 bytes (the text never holds surrogates, see html_charref). */
static size_t utf8_encode(const uint32_t *c, size_t n, unsigned char *out) {
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        uint32_t v = c[i];
        if (v < 0x80) {
            out[o++] = (unsigned char)v;
        } else if (v < 0x800) {
            out[o++] = (unsigned char)(0xC0 | (v >> 6));
            out[o++] = (unsigned char)(0x80 | (v & 0x3F));
        } else if (v < 0x10000) {
            out[o++] = (unsigned char)(0xE0 | (v >> 12));
            out[o++] = (unsigned char)(0x80 | ((v >> 6) & 0x3F));
            out[o++] = (unsigned char)(0x80 | (v & 0x3F));
        } else {
            out[o++] = (unsigned char)(0xF0 | (v >> 18));
            out[o++] = (unsigned char)(0x80 | ((v >> 12) & 0x3F));
            out[o++] = (unsigned char)(0x80 | ((v >> 6) & 0x3F));
            out[o++] = (unsigned char)(0x80 | (v & 0x3F));
        }
    }
    return o;
}

/* ---------------------------------------------------------------------------------------- */
/* Python's html.unescape                                                                    */

static bool is_ascii_digit(uint32_t c) { return c >= '0' && c <= '9'; }
static bool is_ascii_hex(uint32_t c) {
    return is_ascii_digit(c) || ((c | 0x20) >= 'a' && (c | 0x20) <= 'f');
}
static bool is_ascii_alnum(uint32_t c) {
    return is_ascii_digit(c) || ((c | 0x20) >= 'a' && (c | 0x20) <= 'z');
}

/* html._replace_charref for a numeric reference: Windows-1252 fix-ups for the C1 range and 0,
 * U+FFFD for surrogates and out-of-range numbers, nothing for the other invalid code points. */
static void html_charref(uint32_t num, cpbuf *out) {
    const ldm_umap *m = find_map(ldm_html_invalid_charrefs, ldm_html_invalid_charrefs_count, num);
    if (m) {
        cb_append(out, m->out, m->n);
    } else if ((num >= 0xD800 && num <= 0xDFFF) || num > 0x10FFFF) {
        cb_push(out, 0xFFFD);
    } else if (!in_ranges(ldm_html_invalid_codepoints, ldm_html_invalid_codepoints_count, num)) {
        cb_push(out, num);
    }
}

/* html.unescape: the pattern &(#[0-9]+;?|#[xX][0-9a-fA-F]+;?|[^\t\n\f <&#;]{1,32};?) with
 * named references resolved against html5 (longest prefix of at least 2 characters, as Python
 * does for the legacy names without ';'). Returns the length consumed at s[0] == '&', or 0 for
 * no match. */
static size_t html_unescape_at(const uint32_t *s, size_t n, cpbuf *out) {
    if (n < 2) return 0;
    if (s[1] == '#') {
        size_t i = 2;
        bool hex = false;
        if (i < n && is_ascii_digit(s[i])) {
            hex = false;
        } else if (i + 1 < n && (s[i] == 'x' || s[i] == 'X') && is_ascii_hex(s[i + 1])) {
            hex = true;
            i++;
        } else {
            return 0;
        }
        uint32_t num = 0; /* saturates above U+10FFFF: Python's int is unbounded */
        for (; i < n && (hex ? is_ascii_hex(s[i]) : is_ascii_digit(s[i])); i++) {
            uint32_t d = is_ascii_digit(s[i]) ? s[i] - '0' : (s[i] | 0x20) - 'a' + 10;
            if (num <= 0x10FFFF) num = num * (hex ? 16 : 10) + d;
        }
        if (i < n && s[i] == ';') i++;
        html_charref(num, out);
        return i;
    }
    /* Named: up to 32 characters outside \t \n \f space < & # ; then an optional ';'. */
    size_t len = 0;
    while (len < 32 && 1 + len < n) {
        uint32_t c = s[1 + len];
        if (c == '\t' || c == '\n' || c == '\f' || c == ' ' || c == '<' || c == '&' || c == '#' || c == ';')
            break;
        len++;
    }
    if (len == 0) return 0;
    if (1 + len < n && s[1 + len] == ';') len++;
    /* Entity names are ASCII; any other character (mapped to 0x01) can never match. */
    char name[40];
    for (size_t k = 0; k < len; k++) name[k] = (s[1 + k] > 0 && s[1 + k] < 0x80) ? (char)s[1 + k] : 0x01;
    name[len] = '\0';
    const ldm_uentity *e = find_entity(ldm_html5_entities, ldm_html5_entities_count, name);
    size_t used = len;
    for (size_t x = len - 1; !e && x >= 2; x--) {
        name[x] = '\0';
        e = find_entity(ldm_html5_entities, ldm_html5_entities_count, name);
        used = x;
    }
    if (e) {
        cb_append(out, e->out, e->n);
        cb_append(out, s + 1 + used, len - used);
    } else {
        cb_append(out, s, 1 + len);
    }
    return 1 + len;
}

static void html_unescape(const uint32_t *s, size_t n, cpbuf *out) {
    for (size_t i = 0; i < n;) {
        if (s[i] == '&') {
            size_t used = html_unescape_at(s + i, n - i, out);
            if (used) {
                i += used;
                continue;
            }
        }
        cb_push(out, s[i++]);
    }
}

/* ---------------------------------------------------------------------------------------- */
/* ftfy 6.1.1 fixers                                                                         */

/* fixes.unescape_html: &#?[0-9A-Za-z]{1,24}; -- names must end in ';' (html5 plus all-caps
 * spellings of lower-case names), numeric references go through html.unescape and are kept
 * as written unless that consumed the ';'. */
static void ftfy_unescape_html(const uint32_t *s, size_t n, cpbuf *out) {
    for (size_t i = 0; i < n;) {
        if (s[i] != '&') {
            cb_push(out, s[i++]);
            continue;
        }
        size_t k = i + 1;
        bool numeric = k < n && s[k] == '#';
        if (numeric) k++;
        size_t r = 0;
        while (k + r < n && r <= 24 && is_ascii_alnum(s[k + r])) r++;
        if (r < 1 || r > 24 || k + r >= n || s[k + r] != ';') {
            cb_push(out, s[i++]);
            continue;
        }
        size_t end = k + r + 1; /* one past the ';' */
        if (numeric) {
            cpbuf tmp = {0};
            html_unescape(s + i, end - i, &tmp);
            bool keep = tmp.oom;
            for (size_t q = 0; q < tmp.n && !keep; q++) keep = tmp.v[q] == ';';
            if (keep) cb_append(out, s + i, end - i);
            else cb_append(out, tmp.v, tmp.n);
            cb_free(&tmp);
        } else {
            char name[32];
            for (size_t q = 0; q < r + 1; q++) name[q] = (char)s[k + q];
            name[r + 1] = '\0';
            const ldm_uentity *e = find_entity(ldm_html5_entities, ldm_html5_entities_count, name);
            if (!e) e = find_entity(ldm_ftfy_upper_entities, ldm_ftfy_upper_entities_count, name);
            if (e) cb_append(out, e->out, e->n);
            else cb_append(out, s + i, end - i);
        }
        i = end;
    }
}

/* str.translate with one of the generated tables; lo/hi bound the table's keys. */
static void translate(const uint32_t *s, size_t n, cpbuf *out, const ldm_umap *map, size_t count,
                      uint32_t lo, uint32_t hi) {
    for (size_t i = 0; i < n; i++) {
        uint32_t c = s[i];
        const ldm_umap *m = (c >= lo && c <= hi) ? find_map(map, count, c) : NULL;
        if (m) cb_append(out, m->out, m->n);
        else cb_push(out, c);
    }
}

/* uncurl_quotes: [\u02bc\u2018-\u201b] -> ' and [\u201c-\u201f] -> " */
static void ftfy_uncurl_quotes(const uint32_t *s, size_t n, cpbuf *out) {
    for (size_t i = 0; i < n; i++) {
        uint32_t c = s[i];
        if (c == 0x02BC || (c >= 0x2018 && c <= 0x201B)) c = '\'';
        else if (c >= 0x201C && c <= 0x201F) c = '"';
        cb_push(out, c);
    }
}

/* fix_line_breaks: \r\n, \r, U+2028, U+2029, U+0085 -> \n */
static void ftfy_fix_line_breaks(const uint32_t *s, size_t n, cpbuf *out) {
    for (size_t i = 0; i < n; i++) {
        uint32_t c = s[i];
        if (c == '\r') {
            if (i + 1 < n && s[i + 1] == '\n') i++;
            c = '\n';
        } else if (c == 0x2028 || c == 0x2029 || c == 0x85) {
            c = '\n';
        }
        cb_push(out, c);
    }
}

/* remove_terminal_escapes: \033\[((?:\d|;)*)([a-zA-Z]) with Python's Unicode \d (Nd). */
static void ftfy_remove_terminal_escapes(const uint32_t *s, size_t n, cpbuf *out) {
    for (size_t i = 0; i < n;) {
        if (s[i] == 0x1B && i + 1 < n && s[i + 1] == '[') {
            size_t k = i + 2;
            while (k < n && (s[k] == ';' || gc_class(s[k]) == LDM_UCLS_ND)) k++;
            if (k < n && s[k] < 0x80 && (s[k] | 0x20) >= 'a' && (s[k] | 0x20) <= 'z') {
                i = k + 1;
                continue;
            }
        }
        cb_push(out, s[i++]);
    }
}

/* remove_control_chars: deletes chardata.CONTROL_CHARS. */
static void ftfy_remove_control_chars(const uint32_t *s, size_t n, cpbuf *out) {
    for (size_t i = 0; i < n; i++) {
        uint32_t c = s[i];
        bool drop = c < 0x80 ? (c <= 0x08 || c == 0x0B || (c >= 0x0E && c <= 0x1F) || c == 0x7F)
                             : (c >= 0x206A && in_ranges(ldm_ftfy_control, ldm_ftfy_control_count, c));
        if (!drop) cb_push(out, c);
    }
}

/* ---------------------------------------------------------------------------------------- */
/* NFC (unicodedata.normalize('NFC'))                                                        */

enum {
    HANGUL_S = 0xAC00, HANGUL_L = 0x1100, HANGUL_V = 0x1161, HANGUL_T = 0x11A7,
    HANGUL_LN = 19, HANGUL_VN = 21, HANGUL_TN = 28, HANGUL_NN = 21 * 28, HANGUL_SN = 19 * 21 * 28,
};

static const ldm_upair *find_decomp(uint32_t c) {
    size_t lo = 0, hi = ldm_u_decomp_count;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (c < ldm_u_decomp[mid].cp) hi = mid;
        else if (c > ldm_u_decomp[mid].cp) lo = mid + 1;
        else return &ldm_u_decomp[mid];
    }
    return NULL;
}

static void decompose(uint32_t c, cpbuf *out) {
    if (c >= HANGUL_S && c < HANGUL_S + HANGUL_SN) {
        uint32_t si = c - HANGUL_S;
        cb_push(out, HANGUL_L + si / HANGUL_NN);
        cb_push(out, HANGUL_V + (si % HANGUL_NN) / HANGUL_TN);
        if (si % HANGUL_TN) cb_push(out, HANGUL_T + si % HANGUL_TN);
        return;
    }
    const ldm_upair *d = c >= 0xC0 ? find_decomp(c) : NULL;
    if (!d) {
        cb_push(out, c);
        return;
    }
    decompose(d->a, out);
    if (d->b) decompose(d->b, out);
}

static uint32_t compose_pair(uint32_t a, uint32_t b) {
    if (a >= HANGUL_L && a < HANGUL_L + HANGUL_LN && b >= HANGUL_V && b < HANGUL_V + HANGUL_VN)
        return HANGUL_S + ((a - HANGUL_L) * HANGUL_VN + (b - HANGUL_V)) * HANGUL_TN;
    if (a >= HANGUL_S && a < HANGUL_S + HANGUL_SN && (a - HANGUL_S) % HANGUL_TN == 0 && b > HANGUL_T &&
        b < HANGUL_T + HANGUL_TN)
        return a + (b - HANGUL_T);
    size_t lo = 0, hi = ldm_u_comp_count;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        const ldm_upair *p = &ldm_u_comp[mid];
        if (a < p->a || (a == p->a && b < p->b)) hi = mid;
        else if (a > p->a || b > p->b) lo = mid + 1;
        else return p->cp;
    }
    return 0;
}

static void nfc(const uint32_t *s, size_t n, cpbuf *out) {
    /* Quick check: ASCII is always NFC. */
    size_t i0 = 0;
    while (i0 < n && s[i0] < 0x80) i0++;
    if (i0 == n) {
        cb_append(out, s, n);
        return;
    }
    cpbuf d = {0};
    for (size_t i = 0; i < n; i++) decompose(s[i], &d);
    if (d.oom) {
        out->oom = true;
        cb_free(&d);
        return;
    }
    /* Canonical ordering: stable sort of each run of non-starters by combining class
     * (insertion sort for the usual short runs, a counting sort for long ones). */
    for (size_t i = 0; i < d.n;) {
        if (ccc_of(d.v[i]) == 0) {
            i++;
            continue;
        }
        size_t e = i + 1;
        while (e < d.n && ccc_of(d.v[e]) != 0) e++;
        if (e - i <= 16) {
            for (size_t k = i + 1; k < e; k++) {
                uint32_t c = d.v[k], cc = ccc_of(c);
                size_t j = k;
                while (j > i && ccc_of(d.v[j - 1]) > cc) {
                    d.v[j] = d.v[j - 1];
                    j--;
                }
                d.v[j] = c;
            }
        } else {
            uint32_t *tmp = malloc((e - i) * sizeof(uint32_t));
            if (!tmp) {
                out->oom = true;
                cb_free(&d);
                return;
            }
            size_t start[257] = {0};
            for (size_t k = i; k < e; k++) start[ccc_of(d.v[k]) + 1]++;
            for (int k = 1; k <= 256; k++) start[k] += start[k - 1];
            for (size_t k = i; k < e; k++) tmp[start[ccc_of(d.v[k])]++] = d.v[k];
            memcpy(d.v + i, tmp, (e - i) * sizeof(uint32_t));
            free(tmp);
        }
        i = e;
    }
    /* Canonical composition: a character combines with the last starter unless blocked by an
     * intervening character of equal or higher class (or a starter). */
    size_t base = out->n;
    if (d.n && cb_reserve(out, d.n)) {
        uint32_t *o = out->v + base;
        size_t on = 1, starter = 0;
        o[0] = d.v[0];
        uint32_t last_cc = ccc_of(d.v[0]) ? 256 : 0;
        for (size_t i = 1; i < d.n; i++) {
            uint32_t c = d.v[i], cc = ccc_of(c);
            uint32_t comp = (last_cc < cc || last_cc == 0) ? compose_pair(o[starter], c) : 0;
            if (comp) {
                o[starter] = comp;
                continue;
            }
            if (cc == 0) starter = on;
            last_cc = cc;
            o[on++] = c;
        }
        out->n = base + on;
    }
    cb_free(&d);
}

/* ---------------------------------------------------------------------------------------- */
/* ftfy.fix_text                                                                             */

/* fix_and_explain for one segment, fixing steps in ftfy 6.1.1's order, until stable. */
static void ftfy_fix_segment(const uint32_t *s, size_t n, bool unescape, cpbuf *out) {
    cpbuf cur = {0}, tmp = {0}, orig = {0};
    cb_append(&cur, s, n);
    for (int round = 0; round < FTFY_MAX_ROUNDS && !cur.oom && !tmp.oom && !orig.oom; round++) {
        orig.n = 0;
        cb_append(&orig, cur.v, cur.n);
#define STEP(call)                                                                                 \
    do {                                                                                           \
        tmp.n = 0;                                                                                 \
        call;                                                                                      \
        cb_swap(&cur, &tmp);                                                                       \
    } while (0)
        if (unescape) STEP(ftfy_unescape_html(cur.v, cur.n, &tmp));
        /* fix_encoding (mojibake repair) would run here: out of scope, see the file comment. */
        STEP(translate(cur.v, cur.n, &tmp, ldm_ftfy_c1, ldm_ftfy_c1_count, 0x80, 0x9F));
        STEP(translate(cur.v, cur.n, &tmp, ldm_ftfy_ligatures, ldm_ftfy_ligatures_count, 0x132, 0xFB06));
        STEP(translate(cur.v, cur.n, &tmp, ldm_ftfy_width, ldm_ftfy_width_count, 0x3000, 0xFFEF));
        STEP(ftfy_uncurl_quotes(cur.v, cur.n, &tmp));
        STEP(ftfy_fix_line_breaks(cur.v, cur.n, &tmp));
        /* fix_surrogates: nothing to do, the text never holds surrogates. */
        STEP(ftfy_remove_terminal_escapes(cur.v, cur.n, &tmp));
        STEP(ftfy_remove_control_chars(cur.v, cur.n, &tmp));
        STEP(nfc(cur.v, cur.n, &tmp));
#undef STEP
        if (cb_equal(&cur, &orig)) break;
    }
    if (cur.oom || tmp.oom || orig.oom) out->oom = true;
    else cb_append(out, cur.v, cur.n);
    cb_free(&cur);
    cb_free(&tmp);
    cb_free(&orig);
}

/* fix_text: lines (split after each \n, at most max_decode_length long) are fixed one by one;
 * once a line containing '<' is seen, HTML entities are left alone from that line on. */
static void ftfy_fix_text(const uint32_t *s, size_t n, cpbuf *out) {
    bool unescape = true;
    for (size_t pos = 0; pos < n;) {
        size_t brk = pos;
        while (brk < n && s[brk] != '\n') brk++;
        brk = brk < n ? brk + 1 : n;
        if (brk - pos > FTFY_MAX_DECODE_LENGTH) brk = pos + FTFY_MAX_DECODE_LENGTH;
        if (unescape)
            for (size_t i = pos; i < brk; i++)
                if (s[i] == '<') {
                    unescape = false;
                    break;
                }
        ftfy_fix_segment(s + pos, brk - pos, unescape, out);
        pos = brk;
    }
}

/* ---------------------------------------------------------------------------------------- */
/* str.strip, whitespace_clean, str.lower                                                    */

static void py_strip(cpbuf *b) {
    size_t a = 0, e = b->n;
    while (a < e && is_py_space(b->v[a])) a++;
    while (e > a && is_py_space(b->v[e - 1])) e--;
    if (a) memmove(b->v, b->v + a, (e - a) * sizeof(uint32_t));
    b->n = e - a;
}

/* regex.sub(r'\s+', ' ', text) */
static void collapse_white_space(const uint32_t *s, size_t n, cpbuf *out) {
    for (size_t i = 0; i < n;) {
        if (is_white_space(s[i])) {
            while (i < n && is_white_space(s[i])) i++;
            cb_push(out, ' ');
        } else {
            cb_push(out, s[i++]);
        }
    }
}

static uint32_t lower_simple(uint32_t c) {
    size_t lo = 0, hi = ldm_u_lower_count;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        const ldm_ucase_run *r = &ldm_u_lower[mid];
        if (c < r->lo) hi = mid;
        else if (c > r->hi) lo = mid + 1;
        else return (c - r->lo) % r->stride == 0 ? (uint32_t)((int32_t)c + r->delta) : c;
    }
    return c;
}

static bool is_case_ignorable(uint32_t c) {
    return in_ranges(ldm_u_case_ignorable, ldm_u_case_ignorable_count, c);
}
static bool is_cased(uint32_t c) { return in_ranges(ldm_u_cased, ldm_u_cased_count, c); }

/* CPython's handle_capital_sigma: Σ becomes final ς after a cased letter (skipping
 * case-ignorable characters) unless another cased letter follows in the same way. */
static uint32_t lower_sigma(const uint32_t *s, size_t n, size_t i) {
    size_t j = i;
    while (j > 0 && is_case_ignorable(s[j - 1])) j--;
    bool final = j > 0 && is_cased(s[j - 1]);
    if (final) {
        j = i + 1;
        while (j < n && is_case_ignorable(s[j])) j++;
        final = j == n || !is_cased(s[j]);
    }
    return final ? 0x3C2 : 0x3C3;
}

/* str.lower(): full lower-case mapping (U+0130 -> i + U+0307) with the final-sigma rule. */
static void py_lower(const uint32_t *s, size_t n, cpbuf *out) {
    for (size_t i = 0; i < n; i++) {
        uint32_t c = s[i];
        if (c < 0x80) {
            cb_push(out, (c >= 'A' && c <= 'Z') ? c + 32 : c);
        } else if (c == 0x3A3) {
            cb_push(out, lower_sigma(s, n, i));
        } else {
            const ldm_umap *m = find_map(ldm_u_lower_special, ldm_u_lower_special_count, c);
            if (m) cb_append(out, m->out, m->n);
            else cb_push(out, lower_simple(c));
        }
    }
}

/* ---------------------------------------------------------------------------------------- */
/* The tokenizer object: byte encoder ids and the BPE merge table                           */

typedef struct {
    uint64_t key; /* (left id << 32 | right id) + 1; 0 = empty */
    int32_t rank;
    int32_t merged;
} merge_slot;

struct ldm_clip_tokenizer {
    int32_t byte_id[256]; /* bytes_to_unicode order: id of byte b; + 256 for b + "</w>" */
    merge_slot *merges;
    size_t merge_mask;
};

static inline uint64_t hash64(uint64_t x) {
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ULL;
    x ^= x >> 33;
    return x;
}

static const merge_slot *merge_find(const ldm_clip_tokenizer *t, int32_t a, int32_t b) {
    uint64_t key = (((uint64_t)(uint32_t)a << 32) | (uint32_t)b) + 1;
    for (size_t i = hash64(key) & t->merge_mask;; i = (i + 1) & t->merge_mask) {
        const merge_slot *s = &t->merges[i];
        if (s->key == key) return s;
        if (s->key == 0) return NULL;
    }
}

/* GPT-2's bytes_to_unicode(): printable Latin-1 bytes map to themselves, the other 68 to
 * U+0100 onwards; the vocabulary's first 256 ids follow this order. */
static void bytes_to_unicode(uint32_t cp_of_byte[256], int32_t id_of_byte[256]) {
    int32_t id = 0, extra = 0;
    for (int b = 0; b < 256; b++) id_of_byte[b] = -1;
    for (int b = '!'; b <= '~'; b++) cp_of_byte[b] = (uint32_t)b, id_of_byte[b] = id++;
    for (int b = 0xA1; b <= 0xAC; b++) cp_of_byte[b] = (uint32_t)b, id_of_byte[b] = id++;
    for (int b = 0xAE; b <= 0xFF; b++) cp_of_byte[b] = (uint32_t)b, id_of_byte[b] = id++;
    for (int b = 0; b < 256; b++)
        if (id_of_byte[b] < 0) cp_of_byte[b] = 256 + (uint32_t)extra++, id_of_byte[b] = id++;
}

/* A string -> id map used only while building (the encoder dict: later ids win). */
typedef struct {
    const char *s;
    uint32_t len;
    int32_t id;
} str_slot;

typedef struct {
    str_slot *slots;
    size_t mask;
} str_map;

static uint64_t hash_bytes(const char *s, size_t n) {
    uint64_t h = 0xcbf29ce484222325ULL; /* FNV-1a */
    for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)s[i]) * 0x100000001b3ULL;
    return h;
}

static str_slot *str_map_slot(str_map *m, const char *s, size_t n) {
    for (size_t i = hash_bytes(s, n) & m->mask;; i = (i + 1) & m->mask) {
        str_slot *e = &m->slots[i];
        if (!e->s || (e->len == n && memcmp(e->s, s, n) == 0)) return e;
    }
}

static void str_map_put(str_map *m, const char *s, size_t n, int32_t id) {
    str_slot *e = str_map_slot(m, s, n);
    e->s = s;
    e->len = (uint32_t)n;
    e->id = id;
}

static int32_t str_map_get(str_map *m, const char *s, size_t n) {
    str_slot *e = str_map_slot(m, s, n);
    return e->s ? e->id : -1;
}

static ldm_status inflate_vocab(char **text, size_t *size) {
    z_stream zs;
    memset(&zs, 0, sizeof zs);
    if (inflateInit2(&zs, 16 + MAX_WBITS) != Z_OK)
        return ldm_fail(LDM_ERR_INTERNAL, "zlib inflateInit2 failed for the CLIP vocabulary");
    size_t cap = 4u << 20, n = 0;
    char *buf = malloc(cap + 1);
    if (!buf) {
        inflateEnd(&zs);
        return ldm_fail(LDM_ERR_NO_MEMORY, "out of memory inflating the CLIP vocabulary");
    }
    zs.next_in = (Bytef *)ldm_clip_vocab_gz;
    zs.avail_in = (uInt)ldm_clip_vocab_gz_size;
    int zr = Z_OK;
    while (zr != Z_STREAM_END) {
        if (n == cap) {
            char *nb = realloc(buf, cap * 2 + 1);
            if (!nb) {
                free(buf);
                inflateEnd(&zs);
                return ldm_fail(LDM_ERR_NO_MEMORY, "out of memory inflating the CLIP vocabulary");
            }
            buf = nb;
            cap *= 2;
        }
        zs.next_out = (Bytef *)buf + n;
        zs.avail_out = (uInt)(cap - n);
        zr = inflate(&zs, Z_NO_FLUSH);
        n = cap - zs.avail_out;
        if (zr != Z_OK && zr != Z_STREAM_END) {
            free(buf);
            inflateEnd(&zs);
            return ldm_fail(LDM_ERR_INTERNAL, "the built-in CLIP vocabulary is corrupt (zlib error %d)", zr);
        }
    }
    inflateEnd(&zs);
    buf[n] = '\0';
    *text = buf;
    *size = n;
    return LDM_OK;
}

ldm_status ldm_clip_tokenizer_create(ldm_clip_tokenizer **out) {
    if (!out) return ldm_fail(LDM_ERR_INVALID_ARG, "ldm_clip_tokenizer_create: out is NULL");
    *out = NULL;
    char *text = NULL;
    size_t text_len = 0;
    ldm_status st = inflate_vocab(&text, &text_len);
    if (st) return st;

    /* The merge lines "A B" (lines 1 .. CLIP_NUM_MERGES): la/ll[2m] is A, la/ll[2m+1] is B. */
    const char **la = malloc(sizeof(char *) * CLIP_NUM_MERGES * 2);
    uint32_t *ll = malloc(sizeof(uint32_t) * CLIP_NUM_MERGES * 2);
    ldm_clip_tokenizer *t = calloc(1, sizeof *t);
    char *arena = NULL;
    str_map sm = {0};
    if (!la || !ll || !t) {
        st = ldm_fail(LDM_ERR_NO_MEMORY, "out of memory building the CLIP tokenizer");
        goto done;
    }
    {
        const char *p = memchr(text, '\n', text_len);
        const char *end = text + text_len;
        size_t m = 0;
        while (p && m < CLIP_NUM_MERGES) {
            const char *ls = p + 1;
            const char *le = memchr(ls, '\n', (size_t)(end - ls));
            if (!le) le = end;
            const char *sp = memchr(ls, ' ', (size_t)(le - ls));
            if (!sp || sp == ls || sp + 1 >= le || memchr(sp + 1, ' ', (size_t)(le - sp - 1))) {
                st = ldm_fail(LDM_ERR_INTERNAL, "the built-in CLIP vocabulary has a bad merge on line %zu", m + 1);
                goto done;
            }
            la[2 * m] = ls, ll[2 * m] = (uint32_t)(sp - ls);
            la[2 * m + 1] = sp + 1, ll[2 * m + 1] = (uint32_t)(le - sp - 1);
            m++;
            p = le < end ? le : NULL;
        }
        if (m != CLIP_NUM_MERGES) {
            st = ldm_fail(LDM_ERR_INTERNAL, "the built-in CLIP vocabulary has only %zu merges", m);
            goto done;
        }
    }

    /* The encoder: byte symbols, byte symbols + "</w>", merge results, the two specials. */
    uint32_t cp_of_byte[256];
    bytes_to_unicode(cp_of_byte, t->byte_id);
    size_t arena_len = 256 * 4 + 256 * 8 + 64;
    for (size_t m = 0; m < CLIP_NUM_MERGES; m++) arena_len += ll[2 * m] + ll[2 * m + 1];
    arena = malloc(arena_len);
    sm.mask = 131071; /* 2^17 slots for 49408 strings */
    sm.slots = calloc(sm.mask + 1, sizeof(str_slot));
    if (!arena || !sm.slots) {
        st = ldm_fail(LDM_ERR_NO_MEMORY, "out of memory building the CLIP tokenizer");
        goto done;
    }
    {
        size_t ap = 0;
        for (int b = 0; b < 256; b++) {
            unsigned char u[4];
            size_t ul = utf8_encode(&cp_of_byte[b], 1, u);
            memcpy(arena + ap, u, ul);
            str_map_put(&sm, arena + ap, ul, t->byte_id[b]);
            ap += ul;
            memcpy(arena + ap, u, ul);
            memcpy(arena + ap + ul, "</w>", 4);
            str_map_put(&sm, arena + ap, ul + 4, t->byte_id[b] + 256);
            ap += ul + 4;
        }
        for (size_t m = 0; m < CLIP_NUM_MERGES; m++) {
            memcpy(arena + ap, la[2 * m], ll[2 * m]);
            memcpy(arena + ap + ll[2 * m], la[2 * m + 1], ll[2 * m + 1]);
            size_t l = ll[2 * m] + ll[2 * m + 1];
            str_map_put(&sm, arena + ap, l, (int32_t)(512 + m));
            la[2 * m] = arena + ap; /* now the merged string; the right part is still in text */
            ap += l;
        }
        str_map_put(&sm, "<|startoftext|>", 15, LDM_CLIP_BOS);
        str_map_put(&sm, "<|endoftext|>", 13, LDM_CLIP_EOS);
    }

    /* bpe_ranks: (left, right) -> rank, and the id of the merged symbol. */
    t->merge_mask = 131071;
    t->merges = calloc(t->merge_mask + 1, sizeof(merge_slot));
    if (!t->merges) {
        st = ldm_fail(LDM_ERR_NO_MEMORY, "out of memory building the CLIP tokenizer");
        goto done;
    }
    for (size_t m = 0; m < CLIP_NUM_MERGES; m++) {
        const char *merged = la[2 * m];
        uint32_t lm = ll[2 * m] + ll[2 * m + 1];
        int32_t a = str_map_get(&sm, merged, ll[2 * m]);
        int32_t b = str_map_get(&sm, la[2 * m + 1], ll[2 * m + 1]);
        int32_t ab = str_map_get(&sm, merged, lm);
        if (a < 0 || b < 0) continue; /* a part no symbol can ever be: the merge never applies */
        uint64_t key = (((uint64_t)(uint32_t)a << 32) | (uint32_t)b) + 1;
        size_t i = hash64(key) & t->merge_mask;
        while (t->merges[i].key && t->merges[i].key != key) i = (i + 1) & t->merge_mask;
        t->merges[i].key = key; /* a repeated pair keeps the later rank, as dict(zip()) does */
        t->merges[i].rank = (int32_t)m;
        t->merges[i].merged = ab;
    }
    *out = t;
    t = NULL;

done:
    free(sm.slots);
    free(arena);
    free(la);
    free(ll);
    free(text);
    ldm_clip_tokenizer_destroy(t);
    return st;
}

void ldm_clip_tokenizer_destroy(ldm_clip_tokenizer *tok) {
    if (!tok) return;
    free(tok->merges);
    free(tok);
}

/* ---------------------------------------------------------------------------------------- */
/* BPE                                                                                       */

typedef struct {
    int32_t *v;
    size_t n, cap;
    bool oom;
} idvec;

static void id_push(idvec *b, int32_t id) {
    if (b->oom) return;
    if (b->n == b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 64;
        int32_t *v = realloc(b->v, cap * sizeof(int32_t));
        if (!v) {
            b->oom = true;
            return;
        }
        b->v = v;
        b->cap = cap;
    }
    b->v[b->n++] = id;
}

typedef struct {
    int32_t *sym, *next, *prev;
    uint64_t *heap; /* (rank << 32 | position), a binary min-heap */
    size_t cap, heap_n;
} bpe_work;

static void heap_push(bpe_work *w, uint64_t x) {
    size_t i = w->heap_n++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (w->heap[p] <= x) break;
        w->heap[i] = w->heap[p];
        i = p;
    }
    w->heap[i] = x;
}

static uint64_t heap_pop(bpe_work *w) {
    uint64_t top = w->heap[0], x = w->heap[--w->heap_n];
    size_t i = 0, n = w->heap_n;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n) break;
        if (c + 1 < n && w->heap[c + 1] < w->heap[c]) c++;
        if (w->heap[c] >= x) break;
        w->heap[i] = w->heap[c];
        i = c;
    }
    if (n) w->heap[i] = x;
    return top;
}

static void push_pair(const ldm_clip_tokenizer *t, bpe_work *w, int32_t pos) {
    if (pos < 0 || w->next[pos] < 0) return;
    const merge_slot *m = merge_find(t, w->sym[pos], w->sym[w->next[pos]]);
    if (m) heap_push(w, ((uint64_t)(uint32_t)m->rank << 32) | (uint32_t)pos);
}

/* simple_tokenizer.bpe(): repeatedly merge the lowest-ranked adjacent pair, all its
 * occurrences left to right. A heap ordered by (rank, position) gives the same merges in the
 * same order as upstream's rescans; stale entries are skipped when popped. */
static ldm_status bpe_piece(const ldm_clip_tokenizer *t, const unsigned char *b, size_t n, idvec *out) {
    if (n == 15 && memcmp(b, "<|startoftext|>", 15) == 0) { /* upstream's pre-seeded cache */
        id_push(out, LDM_CLIP_BOS);
        return LDM_OK;
    }
    if (n == 13 && memcmp(b, "<|endoftext|>", 13) == 0) {
        id_push(out, LDM_CLIP_EOS);
        return LDM_OK;
    }
    if (n == 1) {
        id_push(out, t->byte_id[b[0]] + 256);
        return LDM_OK;
    }
    if (n > INT32_MAX / 4) return ldm_fail(LDM_ERR_INVALID_ARG, "prompt word too long (%zu bytes)", n);
    bpe_work w = {0};
    w.sym = malloc(n * sizeof(int32_t));
    w.next = malloc(n * sizeof(int32_t));
    w.prev = malloc(n * sizeof(int32_t));
    w.heap = malloc(3 * n * sizeof(uint64_t));
    ldm_status st = LDM_OK;
    if (!w.sym || !w.next || !w.prev || !w.heap) {
        st = ldm_fail(LDM_ERR_NO_MEMORY, "out of memory in BPE");
        goto done;
    }
    for (size_t i = 0; i < n; i++) {
        w.sym[i] = t->byte_id[b[i]] + (i + 1 == n ? 256 : 0); /* the last symbol ends in </w> */
        w.next[i] = i + 1 < n ? (int32_t)(i + 1) : -1;
        w.prev[i] = (int32_t)i - 1;
    }
    for (size_t i = 0; i + 1 < n; i++) push_pair(t, &w, (int32_t)i);
    while (w.heap_n) {
        uint64_t e = heap_pop(&w);
        int32_t rank = (int32_t)(e >> 32), pos = (int32_t)(uint32_t)e;
        int32_t nx = w.next[pos];
        if (w.sym[pos] < 0 || nx < 0) continue;
        const merge_slot *m = merge_find(t, w.sym[pos], w.sym[nx]);
        if (!m || m->rank != rank) continue; /* stale: the pair there has changed */
        w.sym[pos] = m->merged;
        w.sym[nx] = -1;
        w.next[pos] = w.next[nx];
        if (w.next[nx] >= 0) w.prev[w.next[nx]] = pos;
        push_pair(t, &w, w.prev[pos]);
        push_pair(t, &w, pos);
    }
    for (int32_t i = 0; i >= 0; i = w.next[i]) id_push(out, w.sym[i]);
done:
    free(w.sym);
    free(w.next);
    free(w.prev);
    free(w.heap);
    return st;
}

/* ---------------------------------------------------------------------------------------- */
/* Pre-split: <\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|    */
/*            [^\s\p{L}\p{N}]+   with regex.IGNORECASE                                       */

/* Literal match under the regex module's simple case folding. After str.lower() the only
 * other code point that folds onto one of these letters is U+017F LATIN SMALL LETTER LONG S
 * (folds to 's'). */
static size_t match_literal(const uint32_t *s, size_t n, size_t i, const char *lit) {
    size_t len = strlen(lit);
    if (n - i < len) return 0;
    for (size_t k = 0; k < len; k++) {
        uint32_t c = s[i + k], p = (unsigned char)lit[k];
        if (c >= 'A' && c <= 'Z') c += 32;
        if (c != p && !(c == 0x17F && p == 's')) return 0;
    }
    return len;
}

enum { PIECE_NONE, PIECE_L, PIECE_N, PIECE_OTHER };

static int piece_class(uint32_t c) {
    /* U+0345 COMBINING GREEK YPOGEGRAMMENI case-folds to a letter (iota), so under IGNORECASE
     * the regex module leaves it out of [^\s\p{L}\p{N}] while [\p{L}] still rejects it: no
     * alternative matches and findall skips it like whitespace. */
    if (c == 0x345) return PIECE_NONE;
    uint32_t g = gc_class(c);
    if (g == LDM_UCLS_L) return PIECE_L;
    if (g) return PIECE_N;
    return is_white_space(c) ? PIECE_NONE : PIECE_OTHER;
}

static const char *const LITERALS[] = {"<|startoftext|>", "<|endoftext|>", "'s", "'t", "'re", "'ve",
                                       "'m",              "'ll",           "'d"};

static ldm_status split_and_bpe(const ldm_clip_tokenizer *t, const uint32_t *s, size_t n, idvec *out) {
    unsigned char *bytes = malloc(n * 4 + 1);
    if (!bytes) return ldm_fail(LDM_ERR_NO_MEMORY, "out of memory tokenizing");
    ldm_status st = LDM_OK;
    for (size_t i = 0; i < n && !st;) {
        size_t len = 0;
        for (size_t k = 0; k < sizeof LITERALS / sizeof LITERALS[0] && !len; k++)
            len = match_literal(s, n, i, LITERALS[k]);
        if (!len) {
            int cls = piece_class(s[i]);
            if (cls == PIECE_NONE) {
                i++;
                continue;
            }
            len = 1;
            if (cls != PIECE_N)
                while (i + len < n && piece_class(s[i + len]) == cls) len++;
        }
        size_t nb = utf8_encode(s + i, len, bytes);
        st = bpe_piece(t, bytes, nb, out);
        i += len;
    }
    free(bytes);
    return st;
}

/* ---------------------------------------------------------------------------------------- */
/* Entry points                                                                              */

ldm_status ldm_clip_tokenize(const ldm_clip_tokenizer *tok, const char *text, int32_t **ids, size_t *n) {
    if (ids) *ids = NULL;
    if (n) *n = 0;
    if (!tok || !text || !ids || !n) return ldm_fail(LDM_ERR_INVALID_ARG, "ldm_clip_tokenize: NULL argument");
    cpbuf a = {0}, b = {0};
    idvec out = {0};
    ldm_status st = utf8_decode(text, &a);
    if (st) goto done;

    /* basic_clean: ftfy.fix_text, html.unescape twice, strip */
    ftfy_fix_text(a.v, a.n, &b);
    cb_swap(&a, &b);
    b.n = 0;
    html_unescape(a.v, a.n, &b);
    cb_swap(&a, &b);
    b.n = 0;
    html_unescape(a.v, a.n, &b);
    cb_swap(&a, &b);
    py_strip(&a);
    /* whitespace_clean: \s+ -> ' ', strip */
    b.n = 0;
    collapse_white_space(a.v, a.n, &b);
    cb_swap(&a, &b);
    py_strip(&a);
    /* .lower() */
    b.n = 0;
    py_lower(a.v, a.n, &b);
    cb_swap(&a, &b);
    if (a.oom || b.oom) {
        st = ldm_fail(LDM_ERR_NO_MEMORY, "out of memory normalising the prompt");
        goto done;
    }
    st = split_and_bpe(tok, a.v, a.n, &out);
    if (!st && out.oom) st = ldm_fail(LDM_ERR_NO_MEMORY, "out of memory tokenizing");
    if (!st && !out.v) {
        out.v = malloc(sizeof(int32_t));
        if (!out.v) st = ldm_fail(LDM_ERR_NO_MEMORY, "out of memory tokenizing");
    }
done:
    cb_free(&a);
    cb_free(&b);
    if (st) {
        free(out.v);
        return st;
    }
    *ids = out.v;
    *n = out.n;
    return LDM_OK;
}

ldm_status ldm_clip_encode(const ldm_clip_tokenizer *tok, const char *text, int32_t pad_id,
                           int32_t out[LDM_CLIP_CONTEXT_LENGTH]) {
    if (!out) return ldm_fail(LDM_ERR_INVALID_ARG, "ldm_clip_encode: out is NULL");
    int32_t *ids = NULL;
    size_t n = 0;
    ldm_status st = ldm_clip_tokenize(tok, text, &ids, &n);
    if (st) return st;
    /* [BOS] + bpe[:75] + [EOS], then padding: HF truncates before adding the specials and
     * open_clip cuts to 77 then forces EOS last; both give this. */
    size_t body = LDM_MIN(n, (size_t)LDM_CLIP_CONTEXT_LENGTH - 2);
    out[0] = LDM_CLIP_BOS;
    memcpy(out + 1, ids, body * sizeof(int32_t));
    out[1 + body] = LDM_CLIP_EOS;
    for (size_t i = 2 + body; i < LDM_CLIP_CONTEXT_LENGTH; i++) out[i] = pad_id;
    free(ids);
    return LDM_OK;
}
