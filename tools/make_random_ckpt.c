/* make-random-ckpt: writes a random-weight F16 safetensors checkpoint with the keys and shapes of
 * a manifest ({key: [shape], "__metadata__": {dtypes, values}}, the format of the shared
 * manifests), for machines without Python/numpy (scripts/gpu-check.sh makes the full-size SD 1.5
 * checkpoint on the GPU machine with it). Same initialisation rules as the shared
 * make_random_checkpoint.py, not the same numbers:
 *   metadata values (DDPM buffers, position_ids): exact; other integer tensors: 0, or arange
 *   over the last dimension for *position_ids; 1-D *.weight: 1; *bias: 0; embedding tables:
 *   N(0, 0.02^2); other >= 2-D weights: N(0, 1/fan_in); scalars: 0.
 * usage: make-random-ckpt MANIFEST.json OUT.safetensors [SEED] */
#include "core/common.h"
#include "core/dtype.h"
#include "core/json.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static uint64_t splitmix(uint64_t *s) {
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static double normal(uint64_t *s) { /* Box-Muller */
    double u1 = ((double)(splitmix(s) >> 11) + 1.0) * (1.0 / 9007199254740993.0);
    double u2 = (double)(splitmix(s) >> 11) * (1.0 / 9007199254740992.0);
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

static bool ends(const char *s, const char *suf) {
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && strcmp(s + a - b, suf) == 0;
}

static bool is_embedding(const char *k) {
    static const char *const pats[] = {"token_embedding", "position_embedding", "positional_embedding", "token_emb",
                                       "pos_emb", "embed_tokens", "word_embeddings", "label_emb.", NULL};
    for (int i = 0; pats[i]; i++)
        if (strstr(k, pats[i])) return true;
    return ends(k, ".embedding.weight");
}

static int b64v(int c) {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    return c == '+' ? 62 : c == '/' ? 63 : -1;
}

static unsigned char *b64_decode(const char *s, size_t *n) {
    size_t len = strlen(s);
    unsigned char *out = malloc(len / 4 * 3 + 3);
    size_t o = 0;
    uint32_t acc = 0;
    int bits = 0;
    for (size_t i = 0; out && i < len; i++) {
        int v = b64v((unsigned char)s[i]);
        if (v < 0) continue;
        acc = (acc << 6) | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[o++] = (unsigned char)(acc >> bits);
        }
    }
    *n = o;
    return out;
}

typedef struct entry {
    const char *key;
    const json_value *shape;
    const char *dtype; /* "F16", "I64", ... */
    const json_value *value;
    int64_t numel;
    size_t bytes;
} entry;

static size_t dsize(const char *dt) {
    return strcmp(dt, "I64") == 0 || strcmp(dt, "F64") == 0 ? 8 : strcmp(dt, "F32") == 0 || strcmp(dt, "I32") == 0 ? 4
                                                             : strcmp(dt, "I8") == 0 || strcmp(dt, "U8") == 0 ? 1 : 2;
}

static int fail(const char *what) {
    fprintf(stderr, "make-random-ckpt: %s: %s\n", what, ldm_last_error());
    return 1;
}

int main(int argc, char **argv) {
    if (argc < 3 || argc > 4) {
        fprintf(stderr, "usage: make-random-ckpt MANIFEST.json OUT.safetensors [SEED]\n");
        return 2;
    }
    uint64_t seed = argc == 4 ? strtoull(argv[3], NULL, 10) : 0;
    char *text;
    size_t len;
    json_value *root;
    if (ldm_read_file(argv[1], &text, &len) || json_parse(text, len, &root)) return fail(argv[1]);
    const json_value *meta = json_get(root, "__metadata__");
    const json_value *dtypes = meta ? json_get(meta, "dtypes") : NULL, *values = meta ? json_get(meta, "values") : NULL;
    entry *e = calloc(root->count, sizeof *e);
    size_t n = 0, off = 0;
    /* header */
    size_t hcap = 1 << 20, hl = 0;
    char *hdr = malloc(hcap);
    hl += (size_t)snprintf(hdr + hl, hcap - hl, "{");
    for (size_t i = 0; i < root->count; i++) {
        if (strcmp(root->keys[i], "__metadata__") == 0 || root->items[i].type != JSON_ARRAY) continue;
        entry *t = &e[n];
        t->key = root->keys[i];
        t->shape = &root->items[i];
        const json_value *dt = dtypes ? json_get(dtypes, t->key) : NULL;
        t->dtype = dt && dt->type == JSON_STRING ? dt->string : "F16";
        t->value = values ? json_get(values, t->key) : NULL;
        t->numel = 1;
        for (size_t d = 0; d < t->shape->count; d++) {
            int64_t s = 0;
            json_as_int64(&t->shape->items[d], &s);
            t->numel *= s;
        }
        t->bytes = (size_t)t->numel * dsize(t->dtype);
        if (hcap - hl < 4096) {
            hcap *= 2;
            hdr = realloc(hdr, hcap);
        }
        hl += (size_t)snprintf(hdr + hl, hcap - hl, "%s\"%s\":{\"dtype\":\"%s\",\"shape\":[", n ? "," : "", t->key, t->dtype);
        for (size_t d = 0; d < t->shape->count; d++)
            hl += (size_t)snprintf(hdr + hl, hcap - hl, "%s%s", d ? "," : "", t->shape->items[d].number_text);
        hl += (size_t)snprintf(hdr + hl, hcap - hl, "],\"data_offsets\":[%zu,%zu]}", off, off + t->bytes);
        off += t->bytes;
        n++;
    }
    hl += (size_t)snprintf(hdr + hl, hcap - hl, "}");
    while (hl % 8) hdr[hl++] = ' ';
    FILE *f = fopen(argv[2], "wb");
    if (!f) {
        fprintf(stderr, "make-random-ckpt: cannot write %s\n", argv[2]);
        return 1;
    }
    uint64_t hl64 = hl;
    fwrite(&hl64, 8, 1, f);
    fwrite(hdr, 1, hl, f);
    enum { CH = 1 << 20 };
    uint16_t *buf = malloc(CH * sizeof *buf);
    for (size_t i = 0; i < n; i++) {
        entry *t = &e[i];
        uint64_t st = seed ^ 0x51ed270b27a1f1e5ull;
        for (const char *c = t->key; *c; c++) st = (st ^ (unsigned char)*c) * 1099511628211ull;
        const json_value *vd = t->value ? json_get(t->value, "data_b64") : NULL;
        const json_value *vt = t->value ? json_get(t->value, "dtype") : NULL;
        if (vd && vd->type == JSON_STRING) { /* exact values, floats cast to F16 */
            size_t nb;
            unsigned char *raw = b64_decode(vd->string, &nb);
            const char *sdt = vt && vt->type == JSON_STRING ? vt->string : t->dtype;
            if (strcmp(t->dtype, "F16") == 0 && strcmp(sdt, "F32") == 0) {
                for (int64_t k = 0; k < t->numel; k++) {
                    float v = 0;
                    if ((size_t)(k + 1) * 4 <= nb) memcpy(&v, raw + 4 * k, 4);
                    uint16_t h = ldm_f32_to_f16(v);
                    fwrite(&h, 2, 1, f);
                }
            } else {
                for (size_t k = 0; k < t->bytes; k++) fputc(k < nb ? raw[k] : 0, f);
            }
            free(raw);
            continue;
        }
        if (strcmp(t->dtype, "F16") != 0) { /* integers */
            int64_t last = 1;
            json_as_int64(&t->shape->items[t->shape->count ? t->shape->count - 1 : 0], &last);
            for (int64_t k = 0; k < t->numel; k++) {
                int64_t v = ends(t->key, "position_ids") && last > 0 ? k % last : 0;
                fwrite(&v, dsize(t->dtype) < 8 ? dsize(t->dtype) : 8, 1, f);
            }
            continue;
        }
        double sd = 0.0, cst = 0.0;
        int64_t fan_in = 1;
        for (size_t d = 1; d < t->shape->count; d++) {
            int64_t s = 1;
            json_as_int64(&t->shape->items[d], &s);
            fan_in *= s;
        }
        if (t->shape->count == 0) cst = ends(t->key, "logit_scale") ? log(1.0 / 0.07) : 0.0;
        else if (ends(t->key, "bias") || ends(t->key, "_bias")) cst = 0.0;
        else if (t->shape->count == 1 && ends(t->key, ".weight")) cst = 1.0;
        else if (is_embedding(t->key)) sd = 0.02;
        else if (t->shape->count >= 2) sd = 1.0 / sqrt((double)fan_in);
        for (int64_t k0 = 0; k0 < t->numel; k0 += CH) {
            int64_t cnt = t->numel - k0 < CH ? t->numel - k0 : CH;
            for (int64_t k = 0; k < cnt; k++) buf[k] = ldm_f32_to_f16((float)(sd > 0 ? sd * normal(&st) : cst));
            fwrite(buf, 2, (size_t)cnt, f);
        }
    }
    int bad = ferror(f);
    bad |= fclose(f) != 0;
    if (bad) {
        fprintf(stderr, "make-random-ckpt: write error on %s\n", argv[2]);
        return 1;
    }
    printf("wrote %s: %zu tensors, %.1f MiB\n", argv[2], n, (double)off / (1 << 20));
    free(buf);
    free(hdr);
    free(e);
    json_free(root);
    free(text);
    return 0;
}
