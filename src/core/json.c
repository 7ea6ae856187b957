/* Strict recursive-descent JSON reader. Depth is capped so a hostile header cannot overflow the
 * stack; strings must be valid UTF-8. */
#include "json.h"

#include <stdlib.h>
#include <string.h>

#define JSON_MAX_DEPTH 64

typedef struct {
    const char *s;
    size_t len, pos;
    int depth;
} json_parser;

static ldm_status perr(json_parser *p, const char *what) {
    return ldm_fail(LDM_ERR_FORMAT, "JSON: %s at byte %zu", what, p->pos);
}

static void skip_ws(json_parser *p) {
    while (p->pos < p->len) {
        char c = p->s[p->pos];
        if (c != ' ' && c != '\t' && c != '\n' && c != '\r') break;
        p->pos++;
    }
}

/* Length of the valid UTF-8 sequence at s (0 if invalid). Rejects overlongs and surrogates. */
static size_t utf8_seq_len(const unsigned char *s, size_t avail) {
    unsigned c = s[0];
    if (c < 0x80) return 1;
    size_t n;
    unsigned min;
    if ((c & 0xe0) == 0xc0) n = 2, min = 0x80, c &= 0x1f;
    else if ((c & 0xf0) == 0xe0) n = 3, min = 0x800, c &= 0x0f;
    else if ((c & 0xf8) == 0xf0) n = 4, min = 0x10000, c &= 0x07;
    else return 0;
    if (avail < n) return 0;
    for (size_t i = 1; i < n; i++) {
        if ((s[i] & 0xc0) != 0x80) return 0;
        c = (c << 6) | (s[i] & 0x3f);
    }
    if (c < min || c > 0x10ffff || (c >= 0xd800 && c <= 0xdfff)) return 0;
    return n;
}

static size_t utf8_put(char *out, unsigned cp) {
    if (cp < 0x80) { out[0] = (char)cp; return 1; }
    if (cp < 0x800) { out[0] = (char)(0xc0 | (cp >> 6)); out[1] = (char)(0x80 | (cp & 0x3f)); return 2; }
    if (cp < 0x10000) {
        out[0] = (char)(0xe0 | (cp >> 12)); out[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
        out[2] = (char)(0x80 | (cp & 0x3f)); return 3;
    }
    out[0] = (char)(0xf0 | (cp >> 18)); out[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3f)); out[3] = (char)(0x80 | (cp & 0x3f)); return 4;
}

static int hex4(const char *s, unsigned *out) {
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
        char c = s[i];
        v <<= 4;
        if (c >= '0' && c <= '9') v |= (unsigned)(c - '0');
        else if (c >= 'a' && c <= 'f') v |= (unsigned)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F') v |= (unsigned)(c - 'A' + 10);
        else return -1;
    }
    *out = v;
    return 0;
}

static ldm_status parse_string(json_parser *p, char **out) {
    /* p->s[p->pos] == '"' */
    p->pos++;
    size_t start = p->pos;
    /* The decoded string is never longer than the source text. */
    size_t end = start;
    while (end < p->len && p->s[end] != '"') end += (p->s[end] == '\\') ? 2 : 1;
    if (end >= p->len) return perr(p, "unterminated string");
    char *buf = malloc(end - start + 1);
    if (!buf) return ldm_fail(LDM_ERR_NO_MEMORY, "JSON: out of memory");
    size_t o = 0;
    while (p->pos < p->len) {
        unsigned char c = (unsigned char)p->s[p->pos];
        if (c == '"') {
            p->pos++;
            buf[o] = '\0';
            *out = buf;
            return LDM_OK;
        }
        if (c < 0x20) { free(buf); return perr(p, "control character in string"); }
        if (c == '\\') {
            if (p->pos + 1 >= p->len) break;
            char e = p->s[p->pos + 1];
            p->pos += 2;
            switch (e) {
            case '"': buf[o++] = '"'; break;
            case '\\': buf[o++] = '\\'; break;
            case '/': buf[o++] = '/'; break;
            case 'b': buf[o++] = '\b'; break;
            case 'f': buf[o++] = '\f'; break;
            case 'n': buf[o++] = '\n'; break;
            case 'r': buf[o++] = '\r'; break;
            case 't': buf[o++] = '\t'; break;
            case 'u': {
                unsigned cp;
                if (p->pos + 4 > p->len || hex4(p->s + p->pos, &cp)) { free(buf); return perr(p, "bad \\u escape"); }
                p->pos += 4;
                if (cp >= 0xd800 && cp <= 0xdbff) {
                    unsigned lo;
                    if (p->pos + 6 > p->len || p->s[p->pos] != '\\' || p->s[p->pos + 1] != 'u' ||
                        hex4(p->s + p->pos + 2, &lo) || lo < 0xdc00 || lo > 0xdfff) {
                        free(buf);
                        return perr(p, "unpaired surrogate");
                    }
                    p->pos += 6;
                    cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
                } else if (cp >= 0xdc00 && cp <= 0xdfff) {
                    free(buf);
                    return perr(p, "unpaired surrogate");
                }
                if (cp == 0) { free(buf); return perr(p, "NUL in string"); }
                /* 6 source bytes (\uXXXX) always cover up to 3 output bytes; a pair (12) covers 4. */
                o += utf8_put(buf + o, cp);
                break;
            }
            default: free(buf); return perr(p, "bad escape");
            }
            continue;
        }
        size_t n = utf8_seq_len((const unsigned char *)p->s + p->pos, p->len - p->pos);
        if (!n) { free(buf); return perr(p, "invalid UTF-8 in string"); }
        memcpy(buf + o, p->s + p->pos, n);
        o += n;
        p->pos += n;
    }
    free(buf);
    return perr(p, "unterminated string");
}

static ldm_status parse_value(json_parser *p, json_value *v);

static ldm_status parse_number(json_parser *p, json_value *v) {
    size_t start = p->pos;
    if (p->pos < p->len && p->s[p->pos] == '-') p->pos++;
    if (p->pos >= p->len) return perr(p, "bad number");
    if (p->s[p->pos] == '0') {
        p->pos++;
    } else if (p->s[p->pos] >= '1' && p->s[p->pos] <= '9') {
        while (p->pos < p->len && p->s[p->pos] >= '0' && p->s[p->pos] <= '9') p->pos++;
    } else {
        return perr(p, "bad number");
    }
    if (p->pos < p->len && p->s[p->pos] == '.') {
        p->pos++;
        size_t d = p->pos;
        while (p->pos < p->len && p->s[p->pos] >= '0' && p->s[p->pos] <= '9') p->pos++;
        if (p->pos == d) return perr(p, "bad number");
    }
    if (p->pos < p->len && (p->s[p->pos] == 'e' || p->s[p->pos] == 'E')) {
        p->pos++;
        if (p->pos < p->len && (p->s[p->pos] == '+' || p->s[p->pos] == '-')) p->pos++;
        size_t d = p->pos;
        while (p->pos < p->len && p->s[p->pos] >= '0' && p->s[p->pos] <= '9') p->pos++;
        if (p->pos == d) return perr(p, "bad number");
    }
    size_t n = p->pos - start;
    if (n > 64) return perr(p, "number too long");
    v->number_text = malloc(n + 1);
    if (!v->number_text) return ldm_fail(LDM_ERR_NO_MEMORY, "JSON: out of memory");
    memcpy(v->number_text, p->s + start, n);
    v->number_text[n] = '\0';
    v->number = strtod(v->number_text, NULL);
    v->type = JSON_NUMBER;
    return LDM_OK;
}

static ldm_status push_item(json_value *v, size_t *cap, char *key, json_value **slot) {
    if (v->count == *cap) {
        size_t nc = *cap ? *cap * 2 : 8;
        json_value *ni = realloc(v->items, nc * sizeof *ni);
        if (!ni) return ldm_fail(LDM_ERR_NO_MEMORY, "JSON: out of memory");
        v->items = ni;
        if (v->type == JSON_OBJECT) {
            char **nk = realloc(v->keys, nc * sizeof *nk);
            if (!nk) return ldm_fail(LDM_ERR_NO_MEMORY, "JSON: out of memory");
            v->keys = nk;
        }
        *cap = nc;
    }
    memset(&v->items[v->count], 0, sizeof(json_value));
    if (v->type == JSON_OBJECT) v->keys[v->count] = key;
    *slot = &v->items[v->count++];
    return LDM_OK;
}

static ldm_status parse_container(json_parser *p, json_value *v, bool object) {
    char close = object ? '}' : ']';
    v->type = object ? JSON_OBJECT : JSON_ARRAY;
    if (++p->depth > JSON_MAX_DEPTH) return perr(p, "nesting too deep");
    p->pos++;
    size_t cap = 0;
    skip_ws(p);
    if (p->pos < p->len && p->s[p->pos] == close) {
        p->pos++;
        p->depth--;
        return LDM_OK;
    }
    for (;;) {
        skip_ws(p);
        char *key = NULL;
        ldm_status st;
        if (object) {
            if (p->pos >= p->len || p->s[p->pos] != '"') return perr(p, "expected a key");
            if ((st = parse_string(p, &key))) return st;
            skip_ws(p);
            if (p->pos >= p->len || p->s[p->pos] != ':') { free(key); return perr(p, "expected ':'"); }
            p->pos++;
        }
        json_value *slot = NULL;
        if ((st = push_item(v, &cap, key, &slot))) { free(key); return st; }
        if ((st = parse_value(p, slot))) return st;
        skip_ws(p);
        if (p->pos >= p->len) return perr(p, "unterminated container");
        if (p->s[p->pos] == ',') { p->pos++; continue; }
        if (p->s[p->pos] == close) { p->pos++; break; }
        return perr(p, "expected ',' or a closing bracket");
    }
    p->depth--;
    return LDM_OK;
}

static bool match_lit(json_parser *p, const char *lit) {
    size_t n = strlen(lit);
    if (p->len - p->pos < n || memcmp(p->s + p->pos, lit, n) != 0) return false;
    p->pos += n;
    return true;
}

static ldm_status parse_value(json_parser *p, json_value *v) {
    skip_ws(p);
    if (p->pos >= p->len) return perr(p, "unexpected end");
    char c = p->s[p->pos];
    if (c == '{') return parse_container(p, v, true);
    if (c == '[') return parse_container(p, v, false);
    if (c == '"') {
        v->type = JSON_STRING;
        return parse_string(p, &v->string);
    }
    if (c == '-' || (c >= '0' && c <= '9')) return parse_number(p, v);
    if (match_lit(p, "true")) { v->type = JSON_BOOL; v->boolean = true; return LDM_OK; }
    if (match_lit(p, "false")) { v->type = JSON_BOOL; v->boolean = false; return LDM_OK; }
    if (match_lit(p, "null")) { v->type = JSON_NULL; return LDM_OK; }
    return perr(p, "unexpected character");
}

static void json_clear(json_value *v) {
    free(v->string);
    free(v->number_text);
    for (size_t i = 0; i < v->count; i++) {
        if (v->keys) free(v->keys[i]);
        json_clear(&v->items[i]);
    }
    free(v->keys);
    free(v->items);
}

void json_free(json_value *v) {
    if (!v) return;
    json_clear(v);
    free(v);
}

ldm_status json_parse(const char *text, size_t len, json_value **out) {
    *out = NULL;
    json_parser p = {text, len, 0, 0};
    json_value *v = calloc(1, sizeof *v);
    if (!v) return ldm_fail(LDM_ERR_NO_MEMORY, "JSON: out of memory");
    ldm_status st = parse_value(&p, v);
    if (st == LDM_OK) {
        skip_ws(&p);
        if (p.pos != p.len) st = perr(&p, "trailing data");
    }
    if (st) {
        json_free(v);
        return st;
    }
    *out = v;
    return LDM_OK;
}

const json_value *json_get(const json_value *obj, const char *key) {
    if (!obj || obj->type != JSON_OBJECT) return NULL;
    for (size_t i = 0; i < obj->count; i++)
        if (strcmp(obj->keys[i], key) == 0) return &obj->items[i];
    return NULL;
}

const json_value *json_path(const json_value *root, const char *dotted) {
    char part[128];
    const json_value *v = root;
    while (v && *dotted) {
        const char *dot = strchr(dotted, '.');
        size_t n = dot ? (size_t)(dot - dotted) : strlen(dotted);
        if (n >= sizeof part) return NULL;
        memcpy(part, dotted, n);
        part[n] = '\0';
        v = json_get(v, part);
        dotted += n + (dot ? 1 : 0);
    }
    return v;
}

bool json_as_int64(const json_value *v, int64_t *out) {
    if (!v || v->type != JSON_NUMBER || !v->number_text) return false;
    const char *s = v->number_text;
    bool neg = *s == '-';
    if (neg) s++;
    uint64_t acc = 0;
    for (; *s; s++) {
        if (*s < '0' || *s > '9') return false;
        if (acc > (UINT64_MAX - 9) / 10) return false;
        acc = acc * 10 + (uint64_t)(*s - '0');
    }
    if (acc > (uint64_t)INT64_MAX + (neg ? 1u : 0u)) return false;
    *out = neg ? (int64_t)(0 - acc) : (int64_t)acc;
    return true;
}

double json_number_or(const json_value *v, double fallback) {
    return (v && v->type == JSON_NUMBER) ? v->number : fallback;
}
