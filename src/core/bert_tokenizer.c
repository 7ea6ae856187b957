/* BERT WordPiece tokenizer: see bert_tokenizer.h for the behaviour matched (HF tokenizers'
 * BertNormalizer + BertPreTokenizer + WordPiece as BertTokenizerFast configures them for
 * bert-base-uncased). */
#include "bert_tokenizer.h"

#include "bert_unicode_tables.h"

#include <stdlib.h>
#include <string.h>

extern const unsigned char ldm_bert_vocab_txt[];
extern const size_t ldm_bert_vocab_txt_size;

#define MAX_WORD_CHARS 100 /* WordPiece max_input_chars_per_word */

/* ---- growable code point buffer ---- */

typedef struct {
    uint32_t *v;
    size_t n, cap;
    bool oom;
} cpvec;

static void cp_push(cpvec *b, uint32_t c) {
    if (b->oom) return;
    if (b->n == b->cap) {
        size_t nc = b->cap ? b->cap * 2 : 64;
        uint32_t *nv = realloc(b->v, nc * sizeof *nv);
        if (!nv) {
            b->oom = true;
            return;
        }
        b->v = nv;
        b->cap = nc;
    }
    b->v[b->n++] = c;
}

typedef struct {
    int32_t *v;
    size_t n, cap;
    bool oom;
} idvec;

static void id_push(idvec *b, int32_t id) {
    if (b->oom) return;
    if (b->n == b->cap) {
        size_t nc = b->cap ? b->cap * 2 : 64;
        int32_t *nv = realloc(b->v, nc * sizeof *nv);
        if (!nv) {
            b->oom = true;
            return;
        }
        b->v = nv;
        b->cap = nc;
    }
    b->v[b->n++] = id;
}

/* ---- Unicode properties ---- */

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

/* tokenizers' is_whitespace: tab, LF, CR, or Rust's char::is_whitespace (White_Space). */
static bool is_ws(uint32_t c) {
    if (c < 0x80) return c == ' ' || (c >= 0x09 && c <= 0x0D);
    return in_ranges(ldm_u_white_space, ldm_u_white_space_count, c);
}

/* tokenizers' is_control: Cc, Cf, Cn, Co, except tab, LF, CR (counted as whitespace). */
static bool is_control(uint32_t c) {
    if (c == '\t' || c == '\n' || c == '\r') return false;
    return in_ranges(ldm_bert_other, ldm_bert_other_count, c);
}

/* BertPreTokenizer's is_bert_punc: ASCII punctuation or Unicode P*. */
static bool is_punct(uint32_t c) {
    if (c < 0x80) return (c >= 33 && c <= 47) || (c >= 58 && c <= 64) || (c >= 91 && c <= 96) || (c >= 123 && c <= 126);
    return in_ranges(ldm_bert_punct, ldm_bert_punct_count, c);
}

/* BertNormalizer's is_chinese_char: the CJK ideograph blocks (not kana, Hangul or emoji). */
static bool is_cjk(uint32_t c) {
    return (c >= 0x4E00 && c <= 0x9FFF) || (c >= 0x3400 && c <= 0x4DBF) || (c >= 0x20000 && c <= 0x2A6DF) ||
           (c >= 0x2A700 && c <= 0x2B73F) || (c >= 0x2B740 && c <= 0x2B81F) || (c >= 0x2B820 && c <= 0x2CEAF) ||
           (c >= 0xF900 && c <= 0xFAFF) || (c >= 0x2F800 && c <= 0x2FA1F);
}

static uint32_t ccc_of(uint32_t c) {
    if (c < 0x300) return 0;
    size_t lo = 0, hi = ldm_u_ccc_count;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (c < ldm_u_ccc[mid].lo) hi = mid;
        else if (c > ldm_u_ccc[mid].hi) lo = mid + 1;
        else return ldm_u_ccc[mid].val;
    }
    return 0;
}

enum { HANGUL_S = 0xAC00, HANGUL_L = 0x1100, HANGUL_V = 0x1161, HANGUL_T = 0x11A7, HANGUL_NN = 21 * 28,
       HANGUL_TN = 28, HANGUL_SN = 19 * 21 * 28 };

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

/* Full canonical decomposition of one code point (Hangul algorithmically). */
static void decompose(uint32_t c, cpvec *out) {
    if (c >= HANGUL_S && c < HANGUL_S + HANGUL_SN) {
        uint32_t si = c - HANGUL_S;
        cp_push(out, HANGUL_L + si / HANGUL_NN);
        cp_push(out, HANGUL_V + (si % HANGUL_NN) / HANGUL_TN);
        if (si % HANGUL_TN) cp_push(out, HANGUL_T + si % HANGUL_TN);
        return;
    }
    const ldm_upair *d = c >= 0xC0 ? find_decomp(c) : NULL;
    if (!d) {
        cp_push(out, c);
        return;
    }
    decompose(d->a, out);
    if (d->b) decompose(d->b, out);
}

/* NFD: decompose, then the canonical ordering (stable sort of each run of non-starters by ccc). */
static void nfd(const uint32_t *s, size_t n, cpvec *out) {
    for (size_t i = 0; i < n; i++) decompose(s[i], out);
    if (out->oom) return;
    for (size_t i = 1; i < out->n; i++) {
        uint32_t c = out->v[i], k = ccc_of(c);
        if (k == 0) continue;
        size_t j = i;
        while (j > 0) {
            uint32_t kp = ccc_of(out->v[j - 1]);
            if (kp <= k) break; /* kp == 0 (a starter) also stops */
            out->v[j] = out->v[j - 1];
            j--;
        }
        out->v[j] = c;
    }
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

/* Rust's char::to_lowercase: the full mapping of each character on its own (no final-sigma
 * context, so capital sigma is always U+03C3, unlike Python's str.lower()). */
static void lower_char(uint32_t c, cpvec *out) {
    if (c < 0x80) {
        cp_push(out, (c >= 'A' && c <= 'Z') ? c + 32 : c);
        return;
    }
    if (c == 0x3A3) {
        cp_push(out, 0x3C3);
        return;
    }
    const ldm_umap *m = find_map(ldm_u_lower_special, ldm_u_lower_special_count, c);
    if (m) {
        for (uint32_t i = 0; i < m->n; i++) cp_push(out, m->out[i]);
        return;
    }
    cp_push(out, lower_simple(c));
}

/* ---- UTF-8 ---- */

/* Strict decoding (no overlongs, surrogates or > U+10FFFF), as a Rust &str requires. */
static ldm_status utf8_decode(const char *text, cpvec *out) {
    const unsigned char *s = (const unsigned char *)text;
    size_t len = strlen(text), i = 0;
    while (i < len) {
        uint32_t c = s[i];
        size_t need;
        uint32_t min;
        if (c < 0x80) {
            cp_push(out, c);
            i++;
            continue;
        } else if (c >= 0xC2 && c <= 0xDF) {
            need = 1, min = 0x80, c &= 0x1F;
        } else if (c >= 0xE0 && c <= 0xEF) {
            need = 2, min = 0x800, c &= 0x0F;
        } else if (c >= 0xF0 && c <= 0xF4) {
            need = 3, min = 0x10000, c &= 0x07;
        } else {
            return ldm_fail(LDM_ERR_INVALID_ARG, "prompt is not valid UTF-8: byte 0x%02X at offset %zu", s[i], i);
        }
        if (len - i <= need)
            return ldm_fail(LDM_ERR_INVALID_ARG, "prompt is not valid UTF-8: truncated sequence at offset %zu", i);
        for (size_t k = 1; k <= need; k++) {
            if ((s[i + k] & 0xC0) != 0x80)
                return ldm_fail(LDM_ERR_INVALID_ARG, "prompt is not valid UTF-8: bad continuation byte at offset %zu",
                                i + k);
            c = (c << 6) | (s[i + k] & 0x3F);
        }
        if (c < min || c > 0x10FFFF || (c >= 0xD800 && c <= 0xDFFF))
            return ldm_fail(LDM_ERR_INVALID_ARG,
                            "prompt is not valid UTF-8: overlong, surrogate or out-of-range sequence at offset %zu", i);
        cp_push(out, c);
        i += need + 1;
    }
    return out->oom ? ldm_fail(LDM_ERR_NO_MEMORY, "out of memory decoding the prompt") : LDM_OK;
}

static size_t utf8_put(uint32_t v, char *o) {
    if (v < 0x80) {
        o[0] = (char)v;
        return 1;
    }
    if (v < 0x800) {
        o[0] = (char)(0xC0 | (v >> 6));
        o[1] = (char)(0x80 | (v & 0x3F));
        return 2;
    }
    if (v < 0x10000) {
        o[0] = (char)(0xE0 | (v >> 12));
        o[1] = (char)(0x80 | ((v >> 6) & 0x3F));
        o[2] = (char)(0x80 | (v & 0x3F));
        return 3;
    }
    o[0] = (char)(0xF0 | (v >> 18));
    o[1] = (char)(0x80 | ((v >> 12) & 0x3F));
    o[2] = (char)(0x80 | ((v >> 6) & 0x3F));
    o[3] = (char)(0x80 | (v & 0x3F));
    return 4;
}

/* ---- vocabulary: token string -> id ---- */

typedef struct {
    const char *s; /* into the embedded text; NULL = empty slot */
    uint32_t len;
    int32_t id;
} vslot;

struct ldm_bert_tokenizer {
    vslot *slots;
    size_t mask;
    const char **tok; /* id -> string */
    uint32_t *tok_len;
    int32_t n_tokens;
};

static uint64_t hash_bytes(const char *s, size_t n) {
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)s[i]) * 1099511628211ull;
    return h;
}

static int32_t vocab_get(const ldm_bert_tokenizer *t, const char *s, size_t n) {
    for (size_t i = hash_bytes(s, n) & t->mask;; i = (i + 1) & t->mask) {
        const vslot *v = &t->slots[i];
        if (!v->s) return -1;
        if (v->len == n && memcmp(v->s, s, n) == 0) return v->id;
    }
}

ldm_status ldm_bert_tokenizer_create(ldm_bert_tokenizer **out) {
    *out = NULL;
    ldm_bert_tokenizer *t = calloc(1, sizeof *t);
    if (!t) return ldm_fail(LDM_ERR_NO_MEMORY, "out of memory");
    size_t cap = 1;
    while (cap < 2 * LDM_BERT_VOCAB_SIZE) cap <<= 1;
    t->slots = calloc(cap, sizeof *t->slots);
    t->tok = calloc(LDM_BERT_VOCAB_SIZE, sizeof *t->tok);
    t->tok_len = calloc(LDM_BERT_VOCAB_SIZE, sizeof *t->tok_len);
    if (!t->slots || !t->tok || !t->tok_len) {
        ldm_bert_tokenizer_destroy(t);
        return ldm_fail(LDM_ERR_NO_MEMORY, "out of memory");
    }
    t->mask = cap - 1;
    /* One token per line, id = line index (vocab.txt as BertTokenizer's load_vocab reads it). */
    const char *p = (const char *)ldm_bert_vocab_txt, *end = p + ldm_bert_vocab_txt_size;
    int32_t id = 0;
    while (p < end && id < LDM_BERT_VOCAB_SIZE) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *e = nl ? nl : end;
        size_t n = (size_t)(e - p);
        if (n && p[n - 1] == '\r') n--;
        t->tok[id] = p;
        t->tok_len[id] = (uint32_t)n;
        size_t i = hash_bytes(p, n) & t->mask;
        while (t->slots[i].s && !(t->slots[i].len == n && memcmp(t->slots[i].s, p, n) == 0)) i = (i + 1) & t->mask;
        if (!t->slots[i].s) t->slots[i] = (vslot){p, (uint32_t)n, id}; /* first occurrence wins */
        id++;
        p = nl ? nl + 1 : end;
    }
    t->n_tokens = id;
    if (id != LDM_BERT_VOCAB_SIZE) {
        ldm_bert_tokenizer_destroy(t);
        return ldm_fail(LDM_ERR_INTERNAL, "built-in BERT vocabulary has %d entries, %d expected", id, LDM_BERT_VOCAB_SIZE);
    }
    *out = t;
    return LDM_OK;
}

void ldm_bert_tokenizer_destroy(ldm_bert_tokenizer *t) {
    if (!t) return;
    free(t->slots);
    free(t->tok);
    free(t->tok_len);
    free(t);
}

const char *ldm_bert_token(const ldm_bert_tokenizer *t, int32_t id, size_t *len) {
    if (!t || id < 0 || id >= t->n_tokens) return NULL;
    *len = t->tok_len[id];
    return t->tok[id];
}

/* ---- the pipeline ---- */

/* BertNormalizer: clean_text, handle_chinese_chars, strip_accents (NFD, drop Mn), lowercase, in
 * that order (so U+0130 loses its dot as an accent before lower-casing gives plain "i"). */
static void normalize(const uint32_t *s, size_t n, cpvec *out, cpvec *tmp) {
    tmp->n = 0;
    for (size_t i = 0; i < n; i++) {
        uint32_t c = s[i];
        if (c == 0 || c == 0xFFFD || is_control(c)) continue;
        if (is_ws(c)) c = ' ';
        if (is_cjk(c)) {
            cp_push(tmp, ' ');
            cp_push(tmp, c);
            cp_push(tmp, ' ');
        } else {
            cp_push(tmp, c);
        }
    }
    cpvec d = {0};
    nfd(tmp->v, tmp->n, &d);
    for (size_t i = 0; i < d.n; i++) {
        if (in_ranges(ldm_bert_mn, ldm_bert_mn_count, d.v[i])) continue;
        lower_char(d.v[i], out);
    }
    if (d.oom) out->oom = true;
    free(d.v);
}

/* WordPiece on one word (code points): greedy longest match from the left, "##" on every piece
 * but the first; the whole word becomes [UNK] when a position matches nothing. */
static void wordpiece(const ldm_bert_tokenizer *t, const uint32_t *w, size_t n, idvec *ids, char *buf) {
    if (n > MAX_WORD_CHARS) {
        id_push(ids, LDM_BERT_UNK);
        return;
    }
    /* UTF-8 of the word with the byte offset of every character boundary. */
    size_t off[MAX_WORD_CHARS + 1], len = 0;
    char word[4 * MAX_WORD_CHARS];
    for (size_t i = 0; i < n; i++) {
        off[i] = len;
        len += utf8_put(w[i], word + len);
    }
    off[n] = len;
    size_t first = ids->n, start = 0;
    while (start < n) {
        size_t end = n;
        int32_t found = -1;
        for (; end > start; end--) {
            size_t bl = 0;
            if (start > 0) {
                buf[0] = '#';
                buf[1] = '#';
                bl = 2;
            }
            memcpy(buf + bl, word + off[start], off[end] - off[start]);
            bl += off[end] - off[start];
            found = vocab_get(t, buf, bl);
            if (found >= 0) break;
        }
        if (found < 0) {
            ids->n = first; /* drop the pieces found so far */
            id_push(ids, LDM_BERT_UNK);
            return;
        }
        id_push(ids, found);
        start = end;
    }
}

/* BertPreTokenizer on a normalised segment, then WordPiece per word. */
static void split_words(const ldm_bert_tokenizer *t, const uint32_t *s, size_t n, idvec *ids) {
    char buf[4 * MAX_WORD_CHARS + 2];
    size_t i = 0;
    while (i < n) {
        if (is_ws(s[i])) {
            i++;
            continue;
        }
        if (is_punct(s[i])) {
            wordpiece(t, s + i, 1, ids, buf);
            i++;
            continue;
        }
        size_t j = i;
        while (j < n && !is_ws(s[j]) && !is_punct(s[j])) j++;
        wordpiece(t, s + i, j - i, ids, buf);
        i = j;
    }
}

/* The added special tokens (normalized=false): matched in the raw text before normalisation. */
static const struct {
    const char *s;
    int32_t id;
} SPECIALS[] = {{"[PAD]", LDM_BERT_PAD}, {"[UNK]", LDM_BERT_UNK}, {"[CLS]", LDM_BERT_CLS},
                {"[SEP]", LDM_BERT_SEP}, {"[MASK]", LDM_BERT_MASK}};

static int special_at(const uint32_t *s, size_t n, size_t i, size_t *len) {
    for (size_t k = 0; k < sizeof SPECIALS / sizeof SPECIALS[0]; k++) {
        size_t L = strlen(SPECIALS[k].s);
        if (n - i < L) continue;
        size_t j = 0;
        while (j < L && s[i + j] == (uint32_t)(unsigned char)SPECIALS[k].s[j]) j++;
        if (j == L) {
            *len = L;
            return (int)k;
        }
    }
    return -1;
}

ldm_status ldm_bert_tokenize(const ldm_bert_tokenizer *t, const char *text, int32_t **ids_out, size_t *n_out) {
    *ids_out = NULL;
    *n_out = 0;
    if (!t || !text) return ldm_fail(LDM_ERR_INVALID_ARG, "ldm_bert_tokenize: NULL argument");
    cpvec cps = {0}, seg = {0}, tmp = {0};
    idvec ids = {0};
    ldm_status st = utf8_decode(text, &cps);
    size_t start = 0;
    for (size_t i = 0; !st && i <= cps.n; i++) {
        size_t L = 0;
        int k = i < cps.n ? special_at(cps.v, cps.n, i, &L) : -1;
        if (k < 0 && i < cps.n) continue;
        seg.n = 0;
        normalize(cps.v + start, i - start, &seg, &tmp);
        split_words(t, seg.v, seg.n, &ids);
        if (k >= 0) {
            id_push(&ids, SPECIALS[k].id);
            i += L - 1;
            start = i + 1;
        }
    }
    if (!st && (cps.oom || seg.oom || tmp.oom || ids.oom)) st = ldm_fail(LDM_ERR_NO_MEMORY, "out of memory tokenizing");
    if (!st && !ids.v) {
        ids.v = malloc(sizeof *ids.v);
        if (!ids.v) st = ldm_fail(LDM_ERR_NO_MEMORY, "out of memory");
    }
    free(cps.v);
    free(seg.v);
    free(tmp.v);
    if (st) {
        free(ids.v);
        return st;
    }
    *ids_out = ids.v;
    *n_out = ids.n;
    return LDM_OK;
}

ldm_status ldm_bert_encode(const ldm_bert_tokenizer *t, const char *text, int32_t out[LDM_BERT_CONTEXT_LENGTH]) {
    int32_t *ids;
    size_t n;
    ldm_status st = ldm_bert_tokenize(t, text, &ids, &n);
    if (st) return st;
    size_t keep = n < LDM_BERT_CONTEXT_LENGTH - 2 ? n : LDM_BERT_CONTEXT_LENGTH - 2;
    out[0] = LDM_BERT_CLS;
    for (size_t i = 0; i < keep; i++) out[1 + i] = ids[i];
    out[1 + keep] = LDM_BERT_SEP;
    for (size_t i = keep + 2; i < LDM_BERT_CONTEXT_LENGTH; i++) out[i] = LDM_BERT_PAD;
    free(ids);
    return LDM_OK;
}
