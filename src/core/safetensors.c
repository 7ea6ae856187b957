/* safetensors reader (mmap) and writer. Every number in the header is checked against the file
 * before any tensor data is touched: header length, dtype, shape (overflow-checked), offsets
 * (inside the data section, begin <= end, no overlaps, size == numel * dtype size), duplicate
 * names (the JSON object must not repeat a key). */
#include "safetensors.h"

#include "json.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

struct st_file {
    void *map; /* whole file when mmapped, else NULL */
    size_t map_size;
    st_tensor *tensors;
    size_t count;
    uint32_t *index; /* open-addressing hash of tensor indices + 1 (0 = empty) */
    size_t index_cap;
    char **meta_keys, **meta_values;
    size_t meta_count;
    json_value *header;
    /* st_builder files: memory released by st_close (names, converted data, mappings, the
     * component files a diffusers folder was assembled from) */
    struct st_kept {
        st_keep_kind kind;
        void *p;
        size_t n;
    } *kept;
    size_t n_kept, kept_cap;
};

static uint32_t hash_str(const char *s) {
    uint32_t h = 2166136261u; /* FNV-1a */
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 16777619u;
    return h;
}

size_t st_count(const st_file *f) { return f->count; }
const st_tensor *st_at(const st_file *f, size_t i) { return i < f->count ? &f->tensors[i] : NULL; }

const st_tensor *st_find(const st_file *f, const char *name) {
    if (!f || !f->index_cap) return NULL;
    size_t mask = f->index_cap - 1;
    for (size_t i = hash_str(name) & mask;; i = (i + 1) & mask) {
        uint32_t slot = f->index[i];
        if (!slot) return NULL;
        if (strcmp(f->tensors[slot - 1].name, name) == 0) return &f->tensors[slot - 1];
    }
}

const char *st_meta(const st_file *f, const char *key) {
    for (size_t i = 0; f && i < f->meta_count; i++)
        if (strcmp(f->meta_keys[i], key) == 0) return f->meta_values[i];
    return NULL;
}

size_t st_numel(const st_tensor *t) {
    size_t n = 1;
    for (int i = 0; i < t->ndim; i++) n *= (size_t)t->shape[i];
    return n;
}

bool st_is_file_mapped(const st_file *f, const void *p, size_t n) {
    const uintptr_t a = (uintptr_t)p, b = a + n;
    if (!f || b < a) return false;
    if (f->map && a >= (uintptr_t)f->map && b <= (uintptr_t)f->map + f->map_size) return true;
    for (size_t i = 0; i < f->n_kept; i++) {
        const struct st_kept *k = &f->kept[i];
        if (k->kind == ST_KEEP_MUNMAP && a >= (uintptr_t)k->p && b <= (uintptr_t)k->p + k->n) return true;
        if (k->kind == ST_KEEP_FILE && st_is_file_mapped(k->p, p, n)) return true;
    }
    return false;
}

static void release_kept(const struct st_kept *k) {
    if (k->kind == ST_KEEP_MUNMAP) munmap(k->p, k->n);
    else if (k->kind == ST_KEEP_FILE) st_close(k->p);
    else free(k->p);
}

void st_close(st_file *f) {
    if (!f) return;
    if (f->map) munmap(f->map, f->map_size);
    for (size_t i = f->n_kept; i-- > 0;) release_kept(&f->kept[i]);
    free(f->kept);
    free(f->tensors);
    free(f->index);
    free(f->meta_keys);
    free(f->meta_values);
    json_free(f->header);
    free(f);
}

typedef struct {
    size_t begin, end, idx;
} span;

static int span_cmp(const void *a, const void *b) {
    const span *x = a, *y = b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    return x->end < y->end ? -1 : x->end > y->end;
}

static ldm_status parse_entry(const char *name, const json_value *e, size_t data_size, st_tensor *t,
                              size_t *begin, size_t *end) {
    if (e->type != JSON_OBJECT) return ldm_fail(LDM_ERR_FORMAT, "safetensors: entry '%s' is not an object", name);
    const json_value *dt = json_get(e, "dtype"), *shape = json_get(e, "shape"), *off = json_get(e, "data_offsets");
    if (!dt || dt->type != JSON_STRING || !shape || shape->type != JSON_ARRAY || !off || off->type != JSON_ARRAY)
        return ldm_fail(LDM_ERR_FORMAT, "safetensors: entry '%s' lacks dtype/shape/data_offsets", name);
    ldm_dtype dtype;
    if (ldm_dtype_from_name(dt->string, &dtype))
        return ldm_fail(LDM_ERR_UNSUPPORTED, "safetensors: tensor '%s' has unsupported dtype '%s'", name, dt->string);
    if (shape->count > ST_MAX_DIMS)
        return ldm_fail(LDM_ERR_FORMAT, "safetensors: tensor '%s' has %zu dimensions (max %d)", name, shape->count,
                        ST_MAX_DIMS);
    size_t bytes = ldm_dtype_size(dtype);
    t->name = name;
    t->dtype = dtype;
    t->ndim = (int32_t)shape->count;
    for (size_t i = 0; i < shape->count; i++) {
        int64_t d;
        if (!json_as_int64(&shape->items[i], &d) || d < 0)
            return ldm_fail(LDM_ERR_FORMAT, "safetensors: tensor '%s' has a bad dimension", name);
        t->shape[i] = d;
        if (!ldm_mul_size(bytes, (size_t)d, &bytes))
            return ldm_fail(LDM_ERR_FORMAT, "safetensors: tensor '%s' has an absurd shape (size overflows)", name);
    }
    int64_t b, en;
    if (off->count != 2 || !json_as_int64(&off->items[0], &b) || !json_as_int64(&off->items[1], &en) || b < 0 ||
        en < b)
        return ldm_fail(LDM_ERR_FORMAT, "safetensors: tensor '%s' has bad data_offsets", name);
    if ((uint64_t)en > data_size)
        return ldm_fail(LDM_ERR_FORMAT, "safetensors: tensor '%s' ends at %lld, past the data section (%zu bytes)",
                        name, (long long)en, data_size);
    if ((uint64_t)(en - b) != bytes)
        return ldm_fail(LDM_ERR_FORMAT,
                        "safetensors: tensor '%s' spans %lld bytes but its shape and dtype need %zu", name,
                        (long long)(en - b), bytes);
    t->nbytes = bytes;
    *begin = (size_t)b;
    *end = (size_t)en;
    return LDM_OK;
}

static ldm_status build_index(st_file *f, const char *what);

static ldm_status parse_buffer(st_file *f, const unsigned char *buf, size_t size) {
    if (size < 8) return ldm_fail(LDM_ERR_FORMAT, "safetensors: file is %zu bytes, too short for a header", size);
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = (hlen << 8) | buf[i];
    if (hlen > ST_MAX_HEADER)
        return ldm_fail(LDM_ERR_FORMAT, "safetensors: header length %llu exceeds the %zu-byte cap",
                        (unsigned long long)hlen, ST_MAX_HEADER);
    if (hlen > size - 8)
        return ldm_fail(LDM_ERR_FORMAT, "safetensors: header length %llu runs past the end of the file (%zu bytes)",
                        (unsigned long long)hlen, size);
    if (hlen < 2) return ldm_fail(LDM_ERR_FORMAT, "safetensors: header too short");
    const char *htext = (const char *)buf + 8;
    /* The header may be padded with trailing spaces (allowed by the format). */
    ldm_status st = json_parse(htext, (size_t)hlen, &f->header);
    if (st) {
        /* ldm_fail() formats into the buffer ldm_last_error() returns: copy the message out first. */
        char why[512];
        snprintf(why, sizeof why, "%s", ldm_last_error());
        return ldm_fail(st, "safetensors: bad header: %s", why);
    }
    const json_value *h = f->header;
    if (h->type != JSON_OBJECT) return ldm_fail(LDM_ERR_FORMAT, "safetensors: header is not a JSON object");
    const unsigned char *data = buf + 8 + hlen;
    size_t data_size = size - 8 - (size_t)hlen;

    /* Duplicate keys: the JSON object keeps them all, so compare after hashing below. */
    f->tensors = calloc(h->count ? h->count : 1, sizeof *f->tensors);
    span *spans = calloc(h->count ? h->count : 1, sizeof *spans);
    if (!f->tensors || !spans) {
        free(spans);
        return ldm_fail(LDM_ERR_NO_MEMORY, "safetensors: out of memory");
    }
    for (size_t i = 0; i < h->count; i++) {
        const char *name = h->keys[i];
        if (strcmp(name, "__metadata__") == 0) {
            const json_value *m = &h->items[i];
            if (f->meta_keys) {
                free(spans);
                return ldm_fail(LDM_ERR_FORMAT, "safetensors: duplicate __metadata__");
            }
            if (m->type != JSON_OBJECT) {
                free(spans);
                return ldm_fail(LDM_ERR_FORMAT, "safetensors: __metadata__ is not an object");
            }
            f->meta_keys = calloc(m->count ? m->count : 1, sizeof(char *));
            f->meta_values = calloc(m->count ? m->count : 1, sizeof(char *));
            if (!f->meta_keys || !f->meta_values) {
                free(spans);
                return ldm_fail(LDM_ERR_NO_MEMORY, "safetensors: out of memory");
            }
            for (size_t j = 0; j < m->count; j++) {
                if (m->items[j].type != JSON_STRING) {
                    free(spans);
                    return ldm_fail(LDM_ERR_FORMAT, "safetensors: __metadata__ value '%s' is not a string",
                                    m->keys[j]);
                }
                f->meta_keys[f->meta_count] = m->keys[j];
                f->meta_values[f->meta_count++] = m->items[j].string;
            }
            continue;
        }
        st_tensor *t = &f->tensors[f->count];
        size_t b = 0, e = 0;
        if ((st = parse_entry(name, &h->items[i], data_size, t, &b, &e))) {
            free(spans);
            return st;
        }
        t->data = data + b;
        spans[f->count] = (span){b, e, f->count};
        f->count++;
    }
    /* Overlaps: sorted by start, each non-empty tensor must begin at or after the furthest end
     * seen so far (comparing with the previous span alone misses an overlap when an empty
     * tensor sits between the two). */
    qsort(spans, f->count, sizeof *spans, span_cmp);
    size_t far_end = 0, far_idx = 0;
    for (size_t i = 0; i < f->count; i++) {
        if (spans[i].end == spans[i].begin) continue;
        if (spans[i].begin < far_end) {
            const char *a = f->tensors[far_idx].name, *b = f->tensors[spans[i].idx].name;
            free(spans);
            return ldm_fail(LDM_ERR_FORMAT, "safetensors: tensors '%s' and '%s' overlap", a, b);
        }
        far_end = spans[i].end;
        far_idx = spans[i].idx;
    }
    free(spans);
    return build_index(f, "safetensors");
}

/* Name index; a repeated name is an error (the format forbids it, and which one wins would be
 * arbitrary). */
static ldm_status build_index(st_file *f, const char *what) {
    if (f->count > UINT32_MAX - 1) return ldm_fail(LDM_ERR_FORMAT, "%s: too many tensors (%zu)", what, f->count);
    size_t cap = 16;
    while (cap < f->count * 2) cap <<= 1;
    f->index = calloc(cap, sizeof *f->index);
    if (!f->index) return ldm_fail(LDM_ERR_NO_MEMORY, "%s: out of memory", what);
    f->index_cap = cap;
    for (size_t i = 0; i < f->count; i++) {
        size_t j = hash_str(f->tensors[i].name) & (cap - 1);
        while (f->index[j]) {
            if (strcmp(f->tensors[f->index[j] - 1].name, f->tensors[i].name) == 0)
                return ldm_fail(LDM_ERR_FORMAT, "%s: duplicate tensor name '%s'", what, f->tensors[i].name);
            j = (j + 1) & (cap - 1);
        }
        f->index[j] = (uint32_t)(i + 1);
    }
    return LDM_OK;
}

ldm_status st_open_memory(const void *data, size_t size, st_file **out) {
    *out = NULL;
    st_file *f = calloc(1, sizeof *f);
    if (!f) return ldm_fail(LDM_ERR_NO_MEMORY, "safetensors: out of memory");
    ldm_status st = parse_buffer(f, data, size);
    if (st) {
        st_close(f);
        return st;
    }
    *out = f;
    return LDM_OK;
}

ldm_status st_open(const char *path, st_file **out) {
    *out = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return ldm_fail(LDM_ERR_IO, "cannot open '%s': %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        close(fd);
        return ldm_fail(LDM_ERR_IO, "'%s' is not a regular file", path);
    }
    size_t size = (size_t)sb.st_size;
    if (size < 8) {
        close(fd);
        return ldm_fail(LDM_ERR_FORMAT, "'%s': file is %zu bytes, too short for a safetensors header", path, size);
    }
    void *map = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (map == MAP_FAILED) return ldm_fail(LDM_ERR_IO, "cannot map '%s': %s", path, strerror(errno));
    st_file *f = calloc(1, sizeof *f);
    if (!f) {
        munmap(map, size);
        return ldm_fail(LDM_ERR_NO_MEMORY, "safetensors: out of memory");
    }
    f->map = map;
    f->map_size = size;
    ldm_status st = parse_buffer(f, map, size);
    if (st) {
        char why[512];
        snprintf(why, sizeof why, "%s", ldm_last_error());
        ldm_fail(st, "'%s': %s", path, why);
        st_close(f);
        return st;
    }
    *out = f;
    return LDM_OK;
}

ldm_status st_read_f32(const st_tensor *t, float **out) {
    *out = NULL;
    if (t->dtype != LDM_DT_F32 && t->dtype != LDM_DT_F16 && t->dtype != LDM_DT_BF16 && t->dtype != LDM_DT_F64)
        return ldm_fail(LDM_ERR_FORMAT, "tensor '%s' is %s, expected a float type", t->name, ldm_dtype_name(t->dtype));
    size_t n = st_numel(t);
    float *buf = malloc((n ? n : 1) * sizeof(float));
    if (!buf) return ldm_fail(LDM_ERR_NO_MEMORY, "out of memory reading '%s'", t->name);
    /* Tensor data need not be aligned to its element size (the header length is arbitrary), and
     * ldm_convert_to_f32 reads typed elements: convert from an aligned copy when it is not. */
    if ((uintptr_t)t->data % ldm_dtype_size(t->dtype) != 0) {
        void *aligned = malloc(t->nbytes ? t->nbytes : 1);
        if (!aligned) {
            free(buf);
            return ldm_fail(LDM_ERR_NO_MEMORY, "out of memory reading '%s'", t->name);
        }
        memcpy(aligned, t->data, t->nbytes);
        ldm_convert_to_f32(t->dtype, aligned, buf, n);
        free(aligned);
    } else {
        ldm_convert_to_f32(t->dtype, t->data, buf, n);
    }
    *out = buf;
    return LDM_OK;
}

/* ---- builder ----------------------------------------------------------------------------- */

struct st_builder {
    st_file *f;
    size_t tensor_cap, meta_cap;
};

st_builder *st_builder_new(void) {
    st_builder *b = calloc(1, sizeof *b);
    if (b && !(b->f = calloc(1, sizeof *b->f))) {
        free(b);
        b = NULL;
    }
    return b;
}

void st_builder_free(st_builder *b) {
    if (!b) return;
    st_close(b->f);
    free(b);
}

ldm_status st_builder_keep(st_builder *b, st_keep_kind kind, void *p, size_t n) {
    st_file *f = b->f;
    if (f->n_kept == f->kept_cap) {
        size_t nc = f->kept_cap ? f->kept_cap * 2 : 16;
        struct st_kept *nk = realloc(f->kept, nc * sizeof *nk);
        if (!nk) {
            release_kept(&(struct st_kept){kind, p, n});
            return ldm_fail(LDM_ERR_NO_MEMORY, "out of memory");
        }
        f->kept = nk;
        f->kept_cap = nc;
    }
    f->kept[f->n_kept++] = (struct st_kept){kind, p, n};
    return LDM_OK;
}

/* A copy of s owned by the builder's file. */
static char *keep_string(st_builder *b, const char *s) {
    char *c = ldm_strdup(s);
    if (!c || st_builder_keep(b, ST_KEEP_FREE, c, 0)) return NULL;
    return c;
}

ldm_status st_builder_add(st_builder *b, const char *name, ldm_dtype dt, int32_t ndim, const int64_t *shape,
                          const void *data) {
    st_file *f = b->f;
    if (ndim < 0 || ndim > ST_MAX_DIMS || (unsigned)dt >= LDM_DT_COUNT)
        return ldm_fail(LDM_ERR_INVALID_ARG, "st_builder_add: bad ndim or dtype for '%s'", name);
    size_t bytes = ldm_dtype_size(dt);
    for (int i = 0; i < ndim; i++)
        if (shape[i] < 0 || !ldm_mul_size(bytes, (size_t)shape[i], &bytes))
            return ldm_fail(LDM_ERR_FORMAT, "tensor '%s' has an absurd shape", name);
    if (f->count == b->tensor_cap) {
        size_t nc = b->tensor_cap ? b->tensor_cap * 2 : 64;
        st_tensor *nt = realloc(f->tensors, nc * sizeof *nt);
        if (!nt) return ldm_fail(LDM_ERR_NO_MEMORY, "out of memory");
        f->tensors = nt;
        b->tensor_cap = nc;
    }
    st_tensor *t = &f->tensors[f->count];
    memset(t, 0, sizeof *t);
    if (!(t->name = keep_string(b, name))) return ldm_fail(LDM_ERR_NO_MEMORY, "out of memory");
    t->dtype = dt;
    t->ndim = ndim;
    for (int i = 0; i < ndim; i++) t->shape[i] = shape[i];
    t->nbytes = bytes;
    t->data = data;
    f->count++;
    return LDM_OK;
}

ldm_status st_builder_meta(st_builder *b, const char *key, const char *value) {
    st_file *f = b->f;
    if (f->meta_count == b->meta_cap) {
        size_t nc = b->meta_cap ? b->meta_cap * 2 : 8;
        char **nk = realloc(f->meta_keys, nc * sizeof *nk);
        if (!nk) return ldm_fail(LDM_ERR_NO_MEMORY, "out of memory");
        f->meta_keys = nk;
        char **nv = realloc(f->meta_values, nc * sizeof *nv);
        if (!nv) return ldm_fail(LDM_ERR_NO_MEMORY, "out of memory");
        f->meta_values = nv;
        b->meta_cap = nc;
    }
    char *k = keep_string(b, key), *v = k ? keep_string(b, value) : NULL;
    if (!v) return ldm_fail(LDM_ERR_NO_MEMORY, "out of memory");
    f->meta_keys[f->meta_count] = k;
    f->meta_values[f->meta_count++] = v;
    return LDM_OK;
}

ldm_status st_builder_finish(st_builder *b, st_file **out) {
    *out = NULL;
    st_file *f = b->f;
    free(b);
    ldm_status st = build_index(f, "checkpoint");
    if (st) {
        st_close(f);
        return st;
    }
    *out = f;
    return LDM_OK;
}

/* ------------------------------------------------------------------------------------------ */

typedef struct {
    char *name;
    ldm_dtype dtype;
    int32_t ndim;
    int64_t shape[ST_MAX_DIMS];
    void *data;
    size_t nbytes;
} st_wentry;

struct st_writer {
    st_wentry *e;
    size_t n, cap;
    char **mk, **mv;
    size_t mn;
};

st_writer *st_writer_new(void) { return calloc(1, sizeof(st_writer)); }

void st_writer_free(st_writer *w) {
    if (!w) return;
    for (size_t i = 0; i < w->n; i++) {
        free(w->e[i].name);
        free(w->e[i].data);
    }
    for (size_t i = 0; i < w->mn; i++) {
        free(w->mk[i]);
        free(w->mv[i]);
    }
    free(w->mk);
    free(w->mv);
    free(w->e);
    free(w);
}

ldm_status st_writer_add(st_writer *w, const char *name, ldm_dtype dt, int32_t ndim, const int64_t *shape,
                         const void *data) {
    if (ndim < 0 || ndim > ST_MAX_DIMS) return ldm_fail(LDM_ERR_INVALID_ARG, "st_writer_add: bad ndim");
    if (w->n == w->cap) {
        size_t nc = w->cap ? w->cap * 2 : 16;
        st_wentry *ne = realloc(w->e, nc * sizeof *ne);
        if (!ne) return ldm_fail(LDM_ERR_NO_MEMORY, "out of memory");
        w->e = ne;
        w->cap = nc;
    }
    st_wentry *e = &w->e[w->n];
    memset(e, 0, sizeof *e);
    size_t bytes = ldm_dtype_size(dt);
    for (int i = 0; i < ndim; i++) {
        e->shape[i] = shape[i];
        bytes *= (size_t)shape[i];
    }
    e->name = ldm_strdup(name);
    e->data = malloc(bytes ? bytes : 1);
    if (!e->name || !e->data) {
        free(e->name);
        free(e->data);
        return ldm_fail(LDM_ERR_NO_MEMORY, "out of memory");
    }
    memcpy(e->data, data, bytes);
    e->dtype = dt;
    e->ndim = ndim;
    e->nbytes = bytes;
    w->n++;
    return LDM_OK;
}

ldm_status st_writer_meta(st_writer *w, const char *key, const char *value) {
    char **nk = realloc(w->mk, (w->mn + 1) * sizeof *nk);
    if (!nk) return ldm_fail(LDM_ERR_NO_MEMORY, "out of memory");
    w->mk = nk;
    char **nv = realloc(w->mv, (w->mn + 1) * sizeof *nv);
    if (!nv) return ldm_fail(LDM_ERR_NO_MEMORY, "out of memory");
    w->mv = nv;
    w->mk[w->mn] = ldm_strdup(key);
    w->mv[w->mn] = ldm_strdup(value);
    w->mn++;
    return LDM_OK;
}

/* Appends s as a JSON string literal. */
static void put_json_string(FILE *f, const char *s) {
    fputc('"', f);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') fprintf(f, "\\%c", c);
        else if (c < 0x20) fprintf(f, "\\u%04x", c);
        else fputc(c, f);
    }
    fputc('"', f);
}

ldm_status st_writer_save(st_writer *w, const char *path) {
    char *hdr = NULL;
    size_t hlen = 0;
    FILE *h = open_memstream(&hdr, &hlen);
    if (!h) return ldm_fail(LDM_ERR_NO_MEMORY, "out of memory");
    fputc('{', h);
    bool first = true;
    if (w->mn) {
        fputs("\"__metadata__\":{", h);
        for (size_t i = 0; i < w->mn; i++) {
            if (i) fputc(',', h);
            put_json_string(h, w->mk[i]);
            fputc(':', h);
            put_json_string(h, w->mv[i]);
        }
        fputc('}', h);
        first = false;
    }
    size_t off = 0;
    for (size_t i = 0; i < w->n; i++) {
        st_wentry *e = &w->e[i];
        if (!first) fputc(',', h);
        first = false;
        put_json_string(h, e->name);
        fprintf(h, ":{\"dtype\":\"%s\",\"shape\":[", ldm_dtype_name(e->dtype));
        for (int d = 0; d < e->ndim; d++) fprintf(h, "%s%lld", d ? "," : "", (long long)e->shape[d]);
        fprintf(h, "],\"data_offsets\":[%zu,%zu]}", off, off + e->nbytes);
        off += e->nbytes;
    }
    fputc('}', h);
    while ((ftell(h) % 8) != 0) fputc(' ', h);
    fclose(h);
    FILE *f = fopen(path, "wb");
    if (!f) {
        free(hdr);
        return ldm_fail(LDM_ERR_IO, "cannot create '%s': %s", path, strerror(errno));
    }
    unsigned char len8[8];
    for (int i = 0; i < 8; i++) len8[i] = (unsigned char)((uint64_t)hlen >> (8 * i));
    bool ok = fwrite(len8, 1, 8, f) == 8 && fwrite(hdr, 1, hlen, f) == hlen;
    for (size_t i = 0; ok && i < w->n; i++) ok = fwrite(w->e[i].data, 1, w->e[i].nbytes, f) == w->e[i].nbytes;
    free(hdr);
    if (fclose(f) != 0) ok = false;
    if (!ok) return ldm_fail(LDM_ERR_IO, "write error on '%s'", path);
    return LDM_OK;
}
