/* Checkpoint containers other than safetensors (src/core/checkpoint.c, pickle.c, zip.c):
 *  - real torch.save files (tests/data/ckpt, torch 1.13.1: views, strides, shared storages,
 *    f16/bf16/f64/i64, Parameters, numpy metadata, pickle protocol 2 and 4) give bit-identical
 *    tensors to the contiguous copies torch wrote beside them; the legacy format is refused;
 *  - sd1-tiny, sd2-tiny and sd1-inpaint-tiny re-saved as .ckpt (f32, f16, bf16) and as diffusers
 *    folders (f32 safetensors; fp16 variants with the old VAE attention names and a .bin text
 *    encoder) by tools/ckpt_variants.py index the same tensors as the safetensors original
 *    (bit-identical, or equal to its IEEE round-to-nearest-even f16/bf16 conversion; SD 2.x's
 *    fused q/k/v rebuilt exactly, its dropped last text layer back as an all-zero identity) and
 *    load with the same hyper-parameters;
 *  - broken archives and hostile pickles (every truncation and single-bit flip of a small
 *    checkpoint, lying sizes, compressed entries, unknown opcodes, disallowed globals such as
 *    os.system, huge memo indices, deep nesting, self-referencing containers, object floods)
 *    are refused with an error status and a message, never a crash or a leak;
 *  - the diffusers -> single-file name mapping on the SD 1.5 layout.
 * usage: test_checkpoint DATA_DIR VARIANTS_DIR TMP_PARENT [EXTRA.ckpt ...]
 *   DATA_DIR      tests/data
 *   VARIANTS_DIR  where tools/ckpt_variants.py wrote sd1-tiny.ckpt, ... (the build dir)
 *   EXTRA         further sd1-tiny checkpoints (e.g. made by torch.save) to compare */
#include "core/checkpoint.h"
#include "core/context.h"
#include "core/model.h"
#include "core/pickle.h"
#include "core/zip.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int g_failures = 0, g_checks = 0, g_cases = 0;

#define CHECK(cond, ...)                                                                           \
    do {                                                                                           \
        g_checks++;                                                                                \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__);                                   \
            fprintf(stderr, __VA_ARGS__);                                                          \
            fprintf(stderr, "\n");                                                                 \
            g_failures++;                                                                          \
        }                                                                                          \
    } while (0)

static char g_tmp[4096];

/* ---- bytes -------------------------------------------------------------------------------- */

typedef struct {
    unsigned char *p;
    size_t n, cap;
} buf;

static void put(buf *b, const void *data, size_t n) {
    if (b->n + n > b->cap) {
        size_t nc = b->cap ? b->cap : 256;
        while (nc < b->n + n) nc *= 2;
        unsigned char *np = realloc(b->p, nc);
        if (!np) {
            fprintf(stderr, "out of memory\n");
            exit(2);
        }
        b->p = np;
        b->cap = nc;
    }
    if (n) memcpy(b->p + b->n, data, n);
    b->n += n;
}
static void put1(buf *b, unsigned v) {
    unsigned char c = (unsigned char)v;
    put(b, &c, 1);
}
static void put_le(buf *b, uint64_t v, int n) {
    for (int i = 0; i < n; i++) put1(b, (unsigned)(v >> (8 * i)) & 0xff);
}
static void puts_(buf *b, const char *s) { put(b, s, strlen(s)); }

static void write_file(const char *path, const void *data, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f || (n && fwrite(data, 1, n, f) != n) || fclose(f) != 0) {
        fprintf(stderr, "cannot write %s\n", path);
        exit(2);
    }
}

/* ---- a tiny ZIP writer (stored entries) ---------------------------------------------------- */

typedef struct {
    const char *name;
    const void *data;
    size_t n;
    uint16_t method, flags;
    bool bad_crc;
} zentry;

/* Writes local headers + data, the central directory and the end record; zip64 adds the ZIP64
 * end record and locator with the 32-bit fields saturated. Offsets of each central header are
 * returned in cd_at (for patching). */
static buf make_zip(const zentry *e, size_t n, bool zip64, size_t *cd_at, size_t *eocd_at) {
    buf b = {0}, cd = {0};
    size_t *lho = calloc(n ? n : 1, sizeof *lho);
    for (size_t i = 0; i < n; i++) {
        lho[i] = b.n;
        uint32_t crc = zip_crc32(e[i].data, e[i].n) ^ (e[i].bad_crc ? 1u : 0u);
        put_le(&b, 0x04034b50u, 4);
        put_le(&b, 20, 2);
        put_le(&b, e[i].flags, 2);
        put_le(&b, e[i].method, 2);
        put_le(&b, 0, 4);
        put_le(&b, crc, 4);
        put_le(&b, e[i].n, 4);
        put_le(&b, e[i].n, 4);
        put_le(&b, strlen(e[i].name), 2);
        put_le(&b, 0, 2);
        puts_(&b, e[i].name);
        put(&b, e[i].data, e[i].n);
    }
    size_t cd_off = b.n;
    for (size_t i = 0; i < n; i++) {
        if (cd_at) cd_at[i] = cd_off + cd.n;
        uint32_t crc = zip_crc32(e[i].data, e[i].n) ^ (e[i].bad_crc ? 1u : 0u);
        put_le(&cd, 0x02014b50u, 4);
        put_le(&cd, 20, 2);
        put_le(&cd, 20, 2);
        put_le(&cd, e[i].flags, 2);
        put_le(&cd, e[i].method, 2);
        put_le(&cd, 0, 4);
        put_le(&cd, crc, 4);
        put_le(&cd, zip64 ? 0xffffffffu : e[i].n, 4);
        put_le(&cd, zip64 ? 0xffffffffu : e[i].n, 4);
        put_le(&cd, strlen(e[i].name), 2);
        put_le(&cd, zip64 ? 28 : 0, 2);
        put_le(&cd, 0, 2);
        put_le(&cd, 0, 2);
        put_le(&cd, 0, 2);
        put_le(&cd, 0, 4);
        put_le(&cd, zip64 ? 0xffffffffu : lho[i], 4);
        puts_(&cd, e[i].name);
        if (zip64) {
            put_le(&cd, 1, 2);
            put_le(&cd, 24, 2);
            put_le(&cd, e[i].n, 8);
            put_le(&cd, e[i].n, 8);
            put_le(&cd, lho[i], 8);
        }
    }
    put(&b, cd.p, cd.n);
    if (zip64) {
        size_t z64 = b.n;
        put_le(&b, 0x06064b50u, 4);
        put_le(&b, 44, 8);
        put_le(&b, 45, 2);
        put_le(&b, 45, 2);
        put_le(&b, 0, 4);
        put_le(&b, 0, 4);
        put_le(&b, n, 8);
        put_le(&b, n, 8);
        put_le(&b, cd.n, 8);
        put_le(&b, cd_off, 8);
        put_le(&b, 0x07064b50u, 4);
        put_le(&b, 0, 4);
        put_le(&b, z64, 8);
        put_le(&b, 1, 4);
    }
    if (eocd_at) *eocd_at = b.n;
    put_le(&b, 0x06054b50u, 4);
    put_le(&b, 0, 2);
    put_le(&b, 0, 2);
    put_le(&b, zip64 ? 0xffff : n, 2);
    put_le(&b, zip64 ? 0xffff : n, 2);
    put_le(&b, zip64 ? 0xffffffffu : cd.n, 4);
    put_le(&b, zip64 ? 0xffffffffu : cd_off, 4);
    put_le(&b, 0, 2);
    free(cd.p);
    free(lho);
    return b;
}

/* ---- a tiny pickle assembler ---------------------------------------------------------------- */

static void pk_str(buf *b, const char *s) {
    put1(b, 'X');
    put_le(b, strlen(s), 4);
    puts_(b, s);
}
static void pk_int(buf *b, int64_t v) {
    if (v >= 0 && v < 256) {
        put1(b, 'K');
        put1(b, (unsigned)v);
    } else if (v >= INT32_MIN && v <= INT32_MAX) {
        put1(b, 'J');
        put_le(b, (uint64_t)v, 4);
    } else {
        put1(b, 0x8a);
        put1(b, 8);
        put_le(b, (uint64_t)v, 8);
    }
}
static void pk_global(buf *b, const char *mod, const char *name) {
    put1(b, 'c');
    puts_(b, mod);
    put1(b, '\n');
    puts_(b, name);
    put1(b, '\n');
}
static void pk_ints(buf *b, const int64_t *v, int n) {
    put1(b, '(');
    for (int i = 0; i < n; i++) pk_int(b, v[i]);
    put1(b, 't');
}
/* torch._utils._rebuild_tensor_v2(('storage', torch.<storage>, key, 'cpu', numel), offset, size,
 * stride, False, OrderedDict()) */
static void pkt_tensor(buf *b, const char *storage, const char *key, int64_t numel, int64_t offset, const int64_t *shape,
                      const int64_t *stride, int nd) {
    pk_global(b, "torch._utils", "_rebuild_tensor_v2");
    put1(b, '(');
    put1(b, '(');
    pk_str(b, "storage");
    pk_global(b, "torch", storage);
    pk_str(b, key);
    pk_str(b, "cpu");
    pk_int(b, numel);
    put1(b, 't');
    put1(b, 'Q');
    pk_int(b, offset);
    pk_ints(b, shape, nd);
    pk_ints(b, stride, nd);
    put1(b, 0x89);
    pk_global(b, "collections", "OrderedDict");
    put1(b, ')');
    put1(b, 'R');
    put1(b, 't');
    put1(b, 'R');
}

/* {"state_dict": {"w": <F32 [2, 3] view of storage "0">}} with the given view. */
static buf pickle_one(const char *storage, int64_t numel, int64_t offset, const int64_t *shape, const int64_t *stride,
                      int nd) {
    buf b = {0};
    put1(&b, 0x80);
    put1(&b, 2);
    put1(&b, '}');
    pk_str(&b, "state_dict");
    put1(&b, '}');
    pk_str(&b, "w");
    pkt_tensor(&b, storage, "0", numel, offset, shape, stride, nd);
    put1(&b, 's');
    put1(&b, 's');
    put1(&b, '.');
    return b;
}

static const float g_w[6] = {1.5f, -2.0f, 3.25f, 0.0f, 1e-3f, -7.0f};

/* A zip holding archive/data.pkl = pkl and archive/data/0 = storage. */
static buf ckpt_zip(const buf *pkl, const void *storage, size_t storage_n) {
    zentry e[] = {{"archive/data.pkl", pkl->p, pkl->n, 0, 0, false},
                  {"archive/data/0", storage, storage_n, 0, 0, false},
                  {"archive/version", "3\n", 2, 0, 0, false}};
    return make_zip(e, 3, false, NULL, NULL);
}

static buf valid_ckpt(void) {
    int64_t shape[] = {2, 3}, stride[] = {3, 1};
    buf pkl = pickle_one("FloatStorage", 6, 0, shape, stride, 2);
    buf z = ckpt_zip(&pkl, g_w, sizeof g_w);
    free(pkl.p);
    return z;
}

/* ---- expectations ------------------------------------------------------------------------- */

static bool contains(const char *hay, const char *needle) { return !needle || strstr(hay, needle) != NULL; }

/* Loads an in-memory torch zip (from a private heap copy, so ASan sees over-reads). Returns the
 * status; on success the file is checked for consistency and closed. */
static ldm_status load_mem(const void *data, size_t n) {
    unsigned char *copy = malloc(n ? n : 1);
    if (n) memcpy(copy, data, n);
    st_file *f = (st_file *)(uintptr_t)1;
    ldm_clear_error();
    ldm_status st = ckpt_open_torch_memory(copy, n, &f);
    if (st == LDM_OK) {
        for (size_t i = 0; i < st_count(f); i++) {
            const st_tensor *t = st_at(f, i);
            volatile unsigned char sink = 0;
            if (t->nbytes) sink ^= ((const unsigned char *)t->data)[0] ^ ((const unsigned char *)t->data)[t->nbytes - 1];
            (void)sink;
            if (st_find(f, t->name) != t) st = LDM_ERR_INTERNAL;
        }
        st_close(f);
    } else if (f != NULL || ldm_last_error()[0] == '\0') {
        st = LDM_ERR_INTERNAL; /* an error must come with NULL and a message */
    }
    free(copy);
    return st;
}

static void expect_mem(const char *what, const buf *b, ldm_status want, const char *needle) {
    g_cases++;
    ldm_status st = load_mem(b->p, b->n);
    CHECK(st == want, "%s: got %s (%s), expected %s", what, ldm_status_string(st), ldm_last_error(),
          ldm_status_string(want));
    if (st == want && want != LDM_OK)
        CHECK(contains(ldm_last_error(), needle), "%s: message '%s' lacks '%s'", what, ldm_last_error(), needle);
}

/* A pickle as the data.pkl of an otherwise valid archive. */
static void expect_pickle(const char *what, const buf *pkl, ldm_status want, const char *needle) {
    buf z = ckpt_zip(pkl, g_w, sizeof g_w);
    expect_mem(what, &z, want, needle);
    /* the same bytes straight through the pickle reader */
    unsigned char *copy = malloc(pkl->n ? pkl->n : 1);
    if (pkl->n) memcpy(copy, pkl->p, pkl->n);
    pk_state_dict sd;
    ldm_status st = pk_load_state_dict(copy, pkl->n, &sd);
    /* an error must be the expected one; success is fine when the archive stage is what refuses
     * (a view beyond its storage) */
    CHECK(st == LDM_OK ? (want != LDM_OK || sd.count <= 2) : st == want, "%s: pk_load_state_dict gave %s (%s)", what,
          ldm_status_string(st), ldm_last_error());
    pk_state_dict_free(&sd);
    free(copy);
    free(z.p);
}

/* ---- real torch.save files ------------------------------------------------------------------ */

/* Every tensor of `ref` is in `f` with the same dtype, shape and bytes; and nothing else is. */
static void same_tensors(const char *what, const st_file *ref, const st_file *f) {
    CHECK(st_count(ref) == st_count(f), "%s: %zu tensors, expected %zu", what, st_count(f), st_count(ref));
    size_t bad = 0;
    for (size_t i = 0; i < st_count(ref); i++) {
        const st_tensor *r = st_at(ref, i), *t = st_find(f, r->name);
        if (!t || t->dtype != r->dtype || t->ndim != r->ndim || t->nbytes != r->nbytes ||
            memcmp(t->shape, r->shape, sizeof(int64_t) * (size_t)r->ndim) != 0 ||
            (r->nbytes && memcmp(t->data, r->data, r->nbytes) != 0)) {
            if (bad++ < 5) fprintf(stderr, "  %s: tensor '%s' differs\n", what, r->name);
        }
    }
    CHECK(bad == 0, "%s: %zu tensors differ from the reference", what, bad);
}

static void test_torch_refs(const char *data_dir) {
    char path[4200], ref_path[4200];
    snprintf(ref_path, sizeof ref_path, "%s/ckpt/views.safetensors", data_dir);
    st_file *ref = NULL;
    ldm_status st = st_open(ref_path, &ref);
    CHECK(st == LDM_OK, "open %s: %s", ref_path, ldm_last_error());
    if (st) return;
    const char *files[] = {"views.ckpt", "views_proto4.pt"};
    for (int i = 0; i < 2; i++) {
        g_cases++;
        snprintf(path, sizeof path, "%s/ckpt/%s", data_dir, files[i]);
        st_file *f = NULL;
        st = ckpt_open(path, &f);
        CHECK(st == LDM_OK, "ckpt_open %s: %s", path, ldm_last_error());
        if (st) continue;
        same_tensors(files[i], ref, f);
        const char *c = st_meta(f, "ldm.container"), *nested = st_meta(f, "ldm.torch.state_dict");
        CHECK(c && strcmp(c, "torch-zip") == 0, "%s: container meta '%s'", files[i], c ? c : "(null)");
        CHECK((nested != NULL) == (i == 0), "%s: state_dict unwrapping meta", files[i]);
        const st_tensor *t = st_find(f, "transposed");
        CHECK(t && t->ndim == 2 && t->shape[0] == 6 && t->shape[1] == 4, "%s: transposed view shape", files[i]);
        st_close(f);
    }
    g_cases++;
    snprintf(path, sizeof path, "%s/ckpt/legacy.pt", data_dir);
    st_file *f = NULL;
    st = ckpt_open(path, &f);
    CHECK(st == LDM_ERR_UNSUPPORTED && f == NULL && contains(ldm_last_error(), "legacy"),
          "legacy torch file: %s (%s)", ldm_status_string(st), ldm_last_error());
    st_close(ref);
}

/* ---- sd1-tiny variants ---------------------------------------------------------------------- */

static uint16_t f32_to_bf16_rne(float v) {
    uint32_t x;
    memcpy(&x, &v, 4);
    if ((x & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((x >> 16) | 0x40);
    return (uint16_t)((x + 0x7fffu + ((x >> 16) & 1u)) >> 16);
}

/* `f` holds the tensors of `ref` named by `keep` (NULL: all), floats converted to dtype. */
static void same_converted(const char *what, const st_file *ref, const st_file *f, ldm_dtype dtype,
                           bool (*keep)(const char *)) {
    size_t want = 0, bad = 0;
    for (size_t i = 0; i < st_count(ref); i++) {
        const st_tensor *r = st_at(ref, i);
        if (keep && !keep(r->name)) continue;
        want++;
        const st_tensor *t = st_find(f, r->name);
        ldm_dtype dt = r->dtype == LDM_DT_F32 ? dtype : r->dtype;
        bool ok = t && t->dtype == dt && t->ndim == r->ndim &&
                  memcmp(t->shape, r->shape, sizeof(int64_t) * (size_t)r->ndim) == 0 &&
                  t->nbytes == st_numel(r) * ldm_dtype_size(dt);
        if (ok && dt == r->dtype) {
            ok = !r->nbytes || memcmp(t->data, r->data, r->nbytes) == 0;
        } else if (ok) {
            for (size_t k = 0; ok && k < st_numel(r); k++) {
                float v;
                uint16_t h, e;
                memcpy(&v, (const char *)r->data + 4 * k, 4);
                memcpy(&h, (const char *)t->data + 2 * k, 2);
                e = dt == LDM_DT_F16 ? ldm_f32_to_f16(v) : f32_to_bf16_rne(v);
                ok = h == e;
            }
        }
        if (!ok && bad++ < 5) fprintf(stderr, "  %s: tensor '%s' differs\n", what, r->name);
    }
    CHECK(bad == 0, "%s: %zu of %zu tensors differ", what, bad, want);
    CHECK(st_count(f) == want, "%s: %zu tensors, expected %zu", what, st_count(f), want);
}

/* What a diffusers folder keeps of a single file: the three networks, less (SD 2.x) open_clip's
 * text_projection / logit_scale and the text tower's last layer (g_last_layer, "" when none). */
static char g_last_layer[128];

static bool in_last_layer(const char *name) {
    return g_last_layer[0] && strncmp(name, g_last_layer, strlen(g_last_layer)) == 0;
}

static bool is_network(const char *name) {
    if (strcmp(name, "cond_stage_model.model.text_projection") == 0 ||
        strcmp(name, "cond_stage_model.model.logit_scale") == 0 || in_last_layer(name))
        return false;
    return strncmp(name, "model.diffusion_model.", 22) == 0 || strncmp(name, "first_stage_model.", 18) == 0 ||
           strncmp(name, "cond_stage_model.", 17) == 0;
}

/* The SD 2.x tower's last layer, absent from diffusers, comes back as zeros of the original shapes. */
static void expect_identity_layer(const char *what, const st_file *ref, const st_file *f, ldm_dtype dtype) {
    size_t n = 0, bad = 0;
    for (size_t i = 0; i < st_count(ref); i++) {
        const st_tensor *r = st_at(ref, i), *t;
        if (!in_last_layer(r->name)) continue;
        n++;
        t = st_find(f, r->name);
        bool ok = t && t->dtype == dtype && t->ndim == r->ndim &&
                  memcmp(t->shape, r->shape, sizeof(int64_t) * (size_t)r->ndim) == 0;
        for (size_t k = 0; ok && k < t->nbytes; k++) ok = ((const unsigned char *)t->data)[k] == 0;
        bad += !ok;
    }
    CHECK(n == 12 && bad == 0, "%s: identity layer: %zu of %zu tensors wrong", what, bad, n);
}

/* Loads `path` (with the hyper-parameter file `config`, or none: a diffusers folder states its
 * own) and compares what was derived with the reference model's. */
static void expect_model(const char *what, const char *path, const char *config, const ldm_model *ref) {
    ldm_model *m = NULL;
    ldm_model_params mp;
    ldm_model_params_init(&mp);
    mp.config_path = config;
    ldm_status st = ldm_model_load_internal(path, &mp, &m);
    CHECK(st == LDM_OK, "%s: model load: %s", what, ldm_last_error());
    if (st) return;
    CHECK(m->family == ref->family && m->concat_channels == ref->concat_channels, "%s: family %d", what,
          (int)m->family);
    CHECK(memcmp(&m->unet, &ref->unet, sizeof m->unet) == 0, "%s: UNet hyper-parameters differ", what);
    CHECK(memcmp(&m->vae, &ref->vae, sizeof m->vae) == 0, "%s: VAE hyper-parameters differ", what);
    CHECK(memcmp(&m->clip, &ref->clip, sizeof m->clip) == 0, "%s: text encoder hyper-parameters differ", what);
    CHECK(m->scale_factor == ref->scale_factor && m->prediction == ref->prediction &&
              memcmp(&m->sched, &ref->sched, sizeof m->sched) == 0,
          "%s: scale factor, prediction or schedule differ", what);
    ldm_model_destroy(m);
}

/* The variants tools/ckpt_variants.py made of models/<stem>.safetensors. */
static void test_variants(const char *data_dir, const char *vdir, const char *stem, int n_extra, char **extra) {
    char ref_path[4200], path[4400], config[4200];
    snprintf(ref_path, sizeof ref_path, "%s/models/%s.safetensors", data_dir, stem);
    snprintf(config, sizeof config, "%s/models/%s.json", data_dir, stem);
    st_file *ref = NULL;
    ldm_model *ref_model = NULL;
    ldm_model_params mp;
    ldm_model_params_init(&mp);
    mp.config_path = config;
    if (st_open(ref_path, &ref) || ldm_model_load_internal(ref_path, &mp, &ref_model)) {
        CHECK(false, "open %s: %s", ref_path, ldm_last_error());
        st_close(ref);
        return;
    }
    g_last_layer[0] = '\0';
    if (ref_model->clip.kind == CLIP_KIND_OPENCLIP)
        snprintf(g_last_layer, sizeof g_last_layer, "cond_stage_model.model.transformer.resblocks.%d.",
                 ref_model->clip.layers - 1);
    const char *pred = ref_model->prediction == LDM_PREDICTION_V ? "v_prediction" : "epsilon";
    static const struct {
        const char *suffix;
        ldm_dtype dtype;
        bool diffusers; /* drops the DDPM schedule buffers; states its own hyper-parameters */
    } v[] = {
        {".ckpt", LDM_DT_F32, false},          {"-f16.ckpt", LDM_DT_F16, false},
        {"-bf16.ckpt", LDM_DT_BF16, false},    {"-diffusers", LDM_DT_F32, true},
        {"-diffusers-fp16", LDM_DT_F16, true},
    };
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
        g_cases++;
        char what[200];
        snprintf(what, sizeof what, "%s%s", stem, v[i].suffix);
        snprintf(path, sizeof path, "%s/%s", vdir, what);
        st_file *f = NULL;
        ldm_status st = ckpt_open(path, &f);
        CHECK(st == LDM_OK, "ckpt_open %s: %s", path, ldm_last_error());
        if (st) continue;
        const char *c = st_meta(f, "ldm.container");
        CHECK(c && strcmp(c, v[i].diffusers ? "diffusers" : "torch-zip") == 0, "%s: container '%s'", what,
              c ? c : "(null)");
        if (v[i].diffusers) {
            const char *p = st_meta(f, "diffusers.prediction_type");
            CHECK(p && strcmp(p, pred) == 0, "%s: prediction_type '%s'", what, p ? p : "(null)");
            if (g_last_layer[0]) {
                /* compare all but the synthesized layer, then that layer */
                st_builder *b = st_builder_new();
                for (size_t k = 0; k < st_count(f); k++) {
                    const st_tensor *t = st_at(f, k);
                    if (!in_last_layer(t->name)) st_builder_add(b, t->name, t->dtype, t->ndim, t->shape, t->data);
                }
                st_file *rest = NULL;
                CHECK(st_builder_finish(b, &rest) == LDM_OK, "%s: index copy", what);
                same_converted(what, ref, rest, v[i].dtype, is_network);
                st_close(rest);
                expect_identity_layer(what, ref, f, v[i].dtype);
            } else {
                same_converted(what, ref, f, v[i].dtype, is_network);
            }
        } else {
            same_converted(what, ref, f, v[i].dtype, NULL);
        }
        st_close(f);
        expect_model(what, path, v[i].diffusers ? NULL : config, ref_model);
    }
    for (int i = 0; i < n_extra; i++) {
        g_cases++;
        st_file *f = NULL;
        ldm_status st = ckpt_open(extra[i], &f);
        CHECK(st == LDM_OK, "ckpt_open %s: %s", extra[i], ldm_last_error());
        if (st) continue;
        /* torch.save(model.half()) and the like: compare in the file's float type */
        ldm_dtype dt = LDM_DT_F32;
        const st_tensor *probe = st_find(f, "model.diffusion_model.out.2.weight");
        if (probe) dt = probe->dtype;
        same_converted(extra[i], ref, f, dt, NULL);
        st_close(f);
        expect_model(extra[i], extra[i], config, ref_model);
        printf("extra checkpoint %s: compared with %s\n", extra[i], stem);
    }
    ldm_model_destroy(ref_model);
    st_close(ref);
}

/* ---- broken archives -------------------------------------------------------------------------- */

static void test_valid_small(void) {
    buf z = valid_ckpt();
    unsigned char *copy = malloc(z.n);
    memcpy(copy, z.p, z.n);
    st_file *f = NULL;
    ldm_status st = ckpt_open_torch_memory(copy, z.n, &f);
    CHECK(st == LDM_OK, "small valid checkpoint: %s", ldm_last_error());
    if (!st) {
        const st_tensor *t = st_find(f, "w");
        CHECK(st_count(f) == 1 && t && t->dtype == LDM_DT_F32 && t->ndim == 2 && t->shape[0] == 2 && t->shape[1] == 3 &&
                  memcmp(t->data, g_w, sizeof g_w) == 0,
              "small valid checkpoint: tensor 'w' wrong");
        st_close(f);
    }
    free(copy);

    /* views: a transposed copy, an offset slice, a broadcast (stride 0) */
    struct {
        int64_t offset, shape[2], stride[2];
        float want[6];
        int n;
    } views[] = {
        {0, {3, 2}, {1, 3}, {1.5f, 0.0f, -2.0f, 1e-3f, 3.25f, -7.0f}, 6},
        {1, {2, 2}, {3, 1}, {-2.0f, 3.25f, 1e-3f, -7.0f}, 4},
        {2, {2, 2}, {0, 1}, {3.25f, 0.0f, 3.25f, 0.0f}, 4},
        {5, {1, 1}, {7, 9}, {-7.0f}, 1},
    };
    for (size_t i = 0; i < sizeof views / sizeof views[0]; i++) {
        g_cases++;
        buf pkl = pickle_one("FloatStorage", 6, views[i].offset, views[i].shape, views[i].stride, 2);
        buf zz = ckpt_zip(&pkl, g_w, sizeof g_w);
        f = NULL;
        st = ckpt_open_torch_memory(zz.p, zz.n, &f);
        CHECK(st == LDM_OK, "view %zu: %s", i, ldm_last_error());
        if (!st) {
            const st_tensor *t = st_find(f, "w");
            CHECK(t && t->nbytes == sizeof(float) * (size_t)views[i].n &&
                      memcmp(t->data, views[i].want, t->nbytes) == 0,
                  "view %zu: wrong values", i);
            st_close(f);
        }
        free(pkl.p);
        free(zz.p);
    }

    /* ZIP64 records (torch writes them past 4 GiB) */
    int64_t shape[] = {2, 3}, stride[] = {3, 1};
    buf pkl = pickle_one("FloatStorage", 6, 0, shape, stride, 2);
    zentry e[] = {{"archive/data.pkl", pkl.p, pkl.n, 0, 0, false}, {"archive/data/0", g_w, sizeof g_w, 0, 0, false}};
    buf z64 = make_zip(e, 2, true, NULL, NULL);
    expect_mem("zip64 archive", &z64, LDM_OK, NULL);
    free(z64.p);
    free(pkl.p);
    free(z.p);
}

static void test_truncation_and_flips(void) {
    buf z = valid_ckpt();
    size_t refused = 0, crashed = 0, flips_ok = 0, flips_refused = 0;
    for (size_t n = 0; n < z.n; n++) {
        ldm_status st = load_mem(z.p, n);
        if (st == LDM_OK) {
            /* only a cut inside the trailing comment-free end record could still parse: none here */
            CHECK(false, "truncated to %zu of %zu bytes: accepted", n, z.n);
        } else if (st == LDM_ERR_INTERNAL) {
            crashed++;
        } else {
            refused++;
        }
    }
    CHECK(refused == z.n && crashed == 0, "truncations: %zu of %zu refused cleanly", refused, z.n);
    g_cases += (int)z.n;
    for (size_t i = 0; i < z.n; i++) {
        for (int bit = 0; bit < 8; bit++) {
            z.p[i] ^= (unsigned char)(1u << bit);
            ldm_status st = load_mem(z.p, z.n);
            z.p[i] ^= (unsigned char)(1u << bit);
            if (st == LDM_OK) flips_ok++;
            else if (st == LDM_ERR_INTERNAL) crashed++;
            else flips_refused++;
        }
    }
    g_cases += (int)z.n * 8;
    CHECK(crashed == 0, "bit flips: %zu gave an error without a message", crashed);
    printf("small checkpoint (%zu bytes): %zu truncations refused; %zu single-bit flips: %zu refused, %zu still "
           "load (data bytes, names, unchecked header fields)\n",
           z.n, refused, z.n * 8, flips_refused, flips_ok);
    free(z.p);
}

static void patch32(buf *b, size_t at, uint32_t v) {
    for (int i = 0; i < 4; i++) b->p[at + i] = (unsigned char)(v >> (8 * i));
}
static void patch16(buf *b, size_t at, uint16_t v) {
    b->p[at] = (unsigned char)v;
    b->p[at + 1] = (unsigned char)(v >> 8);
}

static void test_zip_lies(void) {
    int64_t shape[] = {2, 3}, stride[] = {3, 1};
    buf pkl = pickle_one("FloatStorage", 6, 0, shape, stride, 2);
    zentry e[] = {{"archive/data.pkl", pkl.p, pkl.n, 0, 0, false}, {"archive/data/0", g_w, sizeof g_w, 0, 0, false}};
    size_t cd_at[2], eocd;
    buf base = make_zip(e, 2, false, cd_at, &eocd);
    struct {
        const char *what;
        size_t at;
        int width;
        uint32_t value;
        ldm_status want;
        const char *needle;
    } lies[] = {
        {"storage size larger than the file", 0, 4, 1000, LDM_ERR_FORMAT, "runs past"},
        {"central directory offset past the end", 1, 4, 0x7fffffff, LDM_ERR_FORMAT, "outside the file"},
        {"central directory size too large", 2, 4, 0x7fffffff, LDM_ERR_FORMAT, "outside the file"},
        {"entry count too large", 3, 2, 0xfff0, LDM_ERR_FORMAT, "cannot fit"},
        {"local header offset past the end", 4, 4, 0x7ffffff0, LDM_ERR_FORMAT, "local header offset"},
        {"name length past the directory", 5, 2, 0xfff0, LDM_ERR_FORMAT, "past the directory"},
        {"stored sizes disagree", 6, 4, 20, LDM_ERR_FORMAT, "uncompressed"},
        {"saturated without ZIP64", 7, 4, 0xffffffffu, LDM_ERR_FORMAT, "ZIP64"},
        {"multi-disk", 8, 2, 1, LDM_ERR_UNSUPPORTED, "multi-part"},
        {"deflated storage", 9, 2, 8, LDM_ERR_UNSUPPORTED, "compressed"},
        {"encrypted storage", 10, 2, 1, LDM_ERR_UNSUPPORTED, "encrypted"},
    };
    for (size_t i = 0; i < sizeof lies / sizeof lies[0]; i++) {
        buf b = {0};
        put(&b, base.p, base.n);
        size_t c1 = cd_at[1];
        size_t at = 0;
        switch (lies[i].at) {
        case 0: at = c1 + 20; break; /* compressed size of data/0 */
        case 1: at = eocd + 16; break;
        case 2: at = eocd + 12; break;
        case 3: at = eocd + 10; break;
        case 4: at = c1 + 42; break;
        case 5: at = c1 + 28; break;
        case 6: at = c1 + 24; break;
        case 7: at = eocd + 16; break;
        case 8: at = eocd + 4; break;
        case 9: at = c1 + 10; break;
        case 10: at = c1 + 8; break;
        }
        if (lies[i].width == 4) patch32(&b, at, lies[i].value);
        else patch16(&b, at, (uint16_t)lies[i].value);
        if (lies[i].at == 0) patch32(&b, c1 + 24, lies[i].value); /* both sizes: still "stored" */
        if (lies[i].at == 3) patch16(&b, eocd + 8, (uint16_t)lies[i].value);
        expect_mem(lies[i].what, &b, lies[i].want, lies[i].needle);
        free(b.p);
    }
    free(base.p);

    /* archive-level structure */
    buf other = {0};
    zentry no_pkl[] = {{"archive/other.txt", "x", 1, 0, 0, false}};
    other = make_zip(no_pkl, 1, false, NULL, NULL);
    expect_mem("no data.pkl", &other, LDM_ERR_FORMAT, "data.pkl");
    free(other.p);
    zentry two_pkl[] = {{"a/data.pkl", pkl.p, pkl.n, 0, 0, false}, {"b/data.pkl", pkl.p, pkl.n, 0, 0, false}};
    other = make_zip(two_pkl, 2, false, NULL, NULL);
    expect_mem("two data.pkl", &other, LDM_ERR_FORMAT, "more than one");
    free(other.p);
    zentry dup[] = {{"archive/data.pkl", pkl.p, pkl.n, 0, 0, false}, {"archive/data/0", g_w, 24, 0, 0, false},
                    {"archive/data/0", g_w, 24, 0, 0, false}};
    other = make_zip(dup, 3, false, NULL, NULL);
    expect_mem("duplicate entry", &other, LDM_ERR_FORMAT, "duplicate entry");
    free(other.p);
    zentry missing[] = {{"archive/data.pkl", pkl.p, pkl.n, 0, 0, false}};
    other = make_zip(missing, 1, false, NULL, NULL);
    expect_mem("missing storage", &other, LDM_ERR_FORMAT, "lacks");
    free(other.p);
    zentry short_st[] = {{"archive/data.pkl", pkl.p, pkl.n, 0, 0, false}, {"archive/data/0", g_w, 20, 0, 0, false}};
    other = make_zip(short_st, 2, false, NULL, NULL);
    expect_mem("storage shorter than stated", &other, LDM_ERR_FORMAT, "fewer than");
    free(other.p);
    zentry crc[] = {{"archive/data.pkl", pkl.p, pkl.n, 0, 0, true}, {"archive/data/0", g_w, 24, 0, 0, false}};
    other = make_zip(crc, 2, false, NULL, NULL);
    expect_mem("data.pkl CRC mismatch", &other, LDM_ERR_FORMAT, "CRC");
    free(other.p);
    zentry be[] = {{"archive/data.pkl", pkl.p, pkl.n, 0, 0, false}, {"archive/data/0", g_w, 24, 0, 0, false},
                   {"archive/byteorder", "big", 3, 0, 0, false}};
    other = make_zip(be, 3, false, NULL, NULL);
    expect_mem("big-endian byte order", &other, LDM_ERR_UNSUPPORTED, "big-endian");
    free(other.p);
    expect_mem("empty buffer", &(buf){(unsigned char *)"", 0, 0}, LDM_ERR_FORMAT, "too short");
    free(pkl.p);
}

static void test_views(void) {
    struct {
        const char *what;
        const char *storage;
        int64_t numel, offset, shape[3], stride[3];
        int nd;
        ldm_status want;
        const char *needle;
    } c[] = {
        {"view past the storage", "FloatStorage", 6, 1, {2, 3}, {3, 1}, 2, LDM_ERR_FORMAT, "reaches element"},
        {"strided view past the storage", "FloatStorage", 6, 0, {2, 3}, {4, 1}, 2, LDM_ERR_FORMAT, "reaches element"},
        {"numel larger than the entry", "FloatStorage", 7, 0, {2, 3}, {3, 1}, 2, LDM_ERR_FORMAT, "fewer than"},
        {"stride overflow", "FloatStorage", 6, 0, {2, 3}, {INT64_MAX / 2, 1}, 2, LDM_ERR_FORMAT, "reaches element"},
        {"shape overflow", "FloatStorage", 6, 0, {INT64_MAX, INT64_MAX, 4}, {1, 1, 1}, 3, LDM_ERR_FORMAT, "absurd"},
        {"negative size", "FloatStorage", 6, 0, {-1, 3}, {3, 1}, 2, LDM_ERR_FORMAT, "negative"},
        {"negative stride", "FloatStorage", 6, 5, {2, 3}, {-3, 1}, 2, LDM_ERR_FORMAT, "negative"},
        {"half storage view", "HalfStorage", 12, 0, {3, 4}, {4, 1}, 2, LDM_OK, NULL},
        {"bf16 storage, empty view", "BFloat16Storage", 12, 11, {0, 4}, {4, 1}, 2, LDM_OK, NULL},
        {"scalar", "FloatStorage", 6, 5, {0}, {0}, 0, LDM_OK, NULL},
        {"empty storage, empty view", "FloatStorage", 0, 0, {0}, {1}, 1, LDM_OK, NULL},
        {"empty storage, element view", "FloatStorage", 0, 0, {1}, {1}, 1, LDM_ERR_FORMAT, "reaches element"},
        {"broadcast bomb", "FloatStorage", 6, 0, {1 << 20, 1 << 20, 2}, {0, 0, 1}, 3, LDM_ERR_FORMAT, "expand"},
        {"broadcast overflow", "DoubleStorage", 3, 0, {INT64_MAX / 4, 3}, {0, 1}, 2, LDM_ERR_FORMAT, "expand"},
    };
    for (size_t i = 0; i < sizeof c / sizeof c[0]; i++) {
        buf pkl = pickle_one(c[i].storage, c[i].numel, c[i].offset, c[i].shape, c[i].stride, c[i].nd);
        expect_pickle(c[i].what, &pkl, c[i].want, c[i].needle);
        free(pkl.p);
    }
    /* sizes and strides of different lengths, too many dimensions */
    buf b = {0};
    int64_t s9[9] = {1, 1, 1, 1, 1, 1, 1, 1, 1};
    b = pickle_one("FloatStorage", 6, 0, s9, s9, 9);
    expect_pickle("nine dimensions", &b, LDM_ERR_FORMAT, "dimensions");
    free(b.p);
}

/* Wraps body opcodes as a whole pickle: PROTO 2, body, STOP. */
static buf pk_wrap(const void *body, size_t n) {
    buf b = {0};
    put1(&b, 0x80);
    put1(&b, 2);
    put(&b, body, n);
    put1(&b, '.');
    return b;
}

static void test_pickles(void) {
    /* os.system('echo pwned'): the classic payload, through GLOBAL and STACK_GLOBAL */
    buf b = {0};
    put1(&b, 0x80);
    put1(&b, 2);
    pk_global(&b, "os", "system");
    pk_str(&b, "echo pwned");
    put1(&b, 0x85);
    put1(&b, 'R');
    put1(&b, '.');
    expect_pickle("os.system via GLOBAL", &b, LDM_ERR_FORMAT, "refusing global 'os.system'");
    free(b.p);
    b = (buf){0};
    put1(&b, 0x80);
    put1(&b, 4);
    put1(&b, 0x8c);
    put1(&b, 8);
    puts_(&b, "builtins");
    put1(&b, 0x8c);
    put1(&b, 4);
    puts_(&b, "eval");
    put1(&b, 0x93);
    pk_str(&b, "1+1");
    put1(&b, 0x85);
    put1(&b, 'R');
    put1(&b, '.');
    expect_pickle("builtins.eval via STACK_GLOBAL", &b, LDM_ERR_FORMAT, "refusing global 'builtins.eval'");
    free(b.p);
    /* the disallowed global nested deep inside the state dict */
    b = (buf){0};
    put1(&b, 0x80);
    put1(&b, 2);
    put1(&b, '}');
    pk_str(&b, "state_dict");
    put1(&b, '}');
    pk_str(&b, "w");
    pk_global(&b, "subprocess", "Popen");
    put1(&b, 's');
    put1(&b, 's');
    put1(&b, '.');
    expect_pickle("subprocess.Popen as a value", &b, LDM_ERR_FORMAT, "refusing global");
    free(b.p);
    b = (buf){0};
    put1(&b, 0x80);
    put1(&b, 2);
    pk_global(&b, "torch._utils", "_rebuild_qtensor");
    put1(&b, '.');
    expect_pickle("quantized tensor", &b, LDM_ERR_UNSUPPORTED, "does not support");
    free(b.p);

#define BODY(lit) lit, sizeof(lit) - 1
    struct {
        const char *what;
        const char *body;
        size_t n;
        ldm_status want;
        const char *needle;
    } c[] = {
        {"unknown opcode", BODY("\xff"), LDM_ERR_FORMAT, "unknown opcode 0xff"},
        {"INST (protocol 0)", BODY("iposix\nsystem\n"), LDM_ERR_FORMAT, "INST"},
        {"OBJ", BODY("(o"), LDM_ERR_FORMAT, "OBJ"},
        {"EXT1", BODY("\x82\x01"), LDM_ERR_FORMAT, "EXT1"},
        {"text PERSID", BODY("P0\n"), LDM_ERR_FORMAT, "PERSID"},
        {"huge memo index", BODY("}r\xff\xff\xff\x7f"), LDM_ERR_FORMAT, "memo index"},
        {"memo index beyond the opcodes read", BODY("}q\xc8"), LDM_ERR_FORMAT, "memo index"},
        {"unset memo", BODY("h\x05"), LDM_ERR_FORMAT, "never set"},
        {"stack underflow", BODY("R"), LDM_ERR_FORMAT, "underflow"},
        {"pop mark without mark", BODY("1"), LDM_ERR_FORMAT, "MARK"},
        {"odd SETITEMS", BODY("}(K\x01u"), LDM_ERR_FORMAT, "odd"},
        {"APPEND to a tuple", BODY(")K\x01" "a"), LDM_ERR_FORMAT, "APPEND"},
        {"SETITEM to a list", BODY("]K\x01K\x02s"), LDM_ERR_FORMAT, "SETITEM"},
        {"REDUCE of a string", BODY("X\x01\x00\x00\x00" "x)R"), LDM_ERR_FORMAT, "not callable"},
        {"REDUCE with a list", BODY("ccollections\nOrderedDict\n]R"), LDM_ERR_FORMAT, "not a tuple"},
        {"BUILD on a list", BODY("]}b"), LDM_ERR_FORMAT, "BUILD"},
        {"storage type called", BODY("ctorch\nFloatStorage\n)R"), LDM_ERR_FORMAT, "persistent id"},
        {"bad persistent id", BODY("K\x01Q"), LDM_ERR_FORMAT, "persistent id"},
        {"legacy 6-field persistent id",
         BODY("(X\x07\x00\x00\x00" "storage" "ctorch\nFloatStorage\n" "X\x01\x00\x00\x00" "0"
              "X\x03\x00\x00\x00" "cpu" "K\x06" "NtQ"),
         LDM_ERR_FORMAT, "fields"},
        {"string past the end", BODY("X\xff\xff\xff\x00"), LDM_ERR_FORMAT, "past the end"},
        {"8-byte string length", BODY("\x8d\xff\xff\xff\xff\xff\xff\xff\xff"), LDM_ERR_FORMAT, "past the end"},
        {"unterminated GLOBAL", BODY("ctorch"), LDM_ERR_FORMAT, "unterminated"},
        {"top level is a list", BODY("]"), LDM_ERR_FORMAT, "not a dict"},
        {"protocol 6", BODY("\x80\x06}"), LDM_ERR_UNSUPPORTED, "protocol"},
        {"empty", BODY(""), LDM_ERR_FORMAT, "underflow"},
    };
    for (size_t i = 0; i < sizeof c / sizeof c[0]; i++) {
        b = pk_wrap(c[i].body, c[i].n);
        expect_pickle(c[i].what, &b, c[i].want, c[i].needle);
        free(b.p);
    }
    /* no STOP */
    b = (buf){0};
    put1(&b, 0x80);
    put1(&b, 2);
    put1(&b, '}');
    expect_pickle("no STOP", &b, LDM_ERR_FORMAT, "no STOP");
    free(b.p);

    /* a tensor under an integer key; a duplicate key */
    int64_t shape[] = {2, 3}, stride[] = {3, 1};
    b = (buf){0};
    put1(&b, 0x80);
    put1(&b, 2);
    put1(&b, '}');
    pk_int(&b, 7);
    pkt_tensor(&b, "FloatStorage", "0", 6, 0, shape, stride, 2);
    put1(&b, 's');
    put1(&b, '.');
    expect_pickle("non-string tensor key", &b, LDM_ERR_FORMAT, "not a string");
    free(b.p);
    b = (buf){0};
    put1(&b, 0x80);
    put1(&b, 2);
    put1(&b, '}');
    put1(&b, '(');
    for (int i = 0; i < 2; i++) {
        pk_str(&b, "w");
        pkt_tensor(&b, "FloatStorage", "0", 6, 0, shape, stride, 2);
    }
    put1(&b, 'u');
    put1(&b, '.');
    expect_pickle("duplicate tensor key", &b, LDM_ERR_FORMAT, "duplicate tensor name");
    free(b.p);

    /* deep nesting: 200k nested tuples built without recursion (valid, but not a dict) */
    b = (buf){0};
    put1(&b, 0x80);
    put1(&b, 2);
    put1(&b, ')');
    for (int i = 0; i < 200000; i++) put1(&b, 0x85);
    put1(&b, '.');
    expect_pickle("200k nested tuples", &b, LDM_ERR_FORMAT, "not a dict");
    free(b.p);
    /* 1M open MARKs, never closed */
    b = (buf){0};
    put1(&b, 0x80);
    put1(&b, 2);
    for (int i = 0; i < 1000000; i++) put1(&b, '(');
    put1(&b, '.');
    expect_pickle("1M marks", &b, LDM_ERR_FORMAT, "underflow");
    free(b.p);
    /* a dict that is its own state_dict, and a list that contains itself many times */
    b = (buf){0};
    put1(&b, 0x80);
    put1(&b, 2);
    put1(&b, '}');
    put1(&b, 'q');
    put1(&b, 0);
    pk_str(&b, "state_dict");
    put1(&b, 'h');
    put1(&b, 0);
    put1(&b, 's');
    pk_str(&b, "loop");
    put1(&b, ']');
    put1(&b, 'q');
    put1(&b, 1);
    for (int i = 0; i < 1000; i++) {
        put1(&b, 'h');
        put1(&b, 1);
        put1(&b, 'a');
    }
    put1(&b, 's');
    put1(&b, '.');
    expect_pickle("self-referencing containers", &b, LDM_OK, NULL);
    free(b.p);
    /* billion laughs: each level a list of ten references to the previous one */
    b = (buf){0};
    put1(&b, 0x80);
    put1(&b, 2);
    pk_str(&b, "lol");
    put1(&b, 'r');
    put_le(&b, 0, 4);
    for (uint32_t lvl = 1; lvl <= 30; lvl++) {
        put1(&b, '(');
        for (int k = 0; k < 10; k++) {
            put1(&b, 'j');
            put_le(&b, lvl - 1, 4);
        }
        put1(&b, 'l');
        put1(&b, 'r');
        put_le(&b, lvl, 4);
    }
    put1(&b, '0');
    put1(&b, '}');
    put1(&b, '.');
    expect_pickle("billion laughs", &b, LDM_OK, NULL);
    free(b.p);
    /* an object flood: more empty lists (each popped at once) than the evaluator allows */
    b = (buf){0};
    put1(&b, 0x80);
    put1(&b, 2);
    for (int i = 0; i < (1 << 21) + 10; i++) puts_(&b, "]0");
    put1(&b, '.');
    expect_pickle("object flood", &b, LDM_ERR_FORMAT, "objects");
    free(b.p);
    /* DUP flood: the stack cap */
    b = (buf){0};
    put1(&b, 0x80);
    put1(&b, 2);
    put1(&b, '}');
    for (int i = 0; i < (1 << 20) + 10; i++) put1(&b, '2');
    put1(&b, '.');
    expect_pickle("stack flood", &b, LDM_ERR_FORMAT, "stack deeper");
    free(b.p);
    /* inert metadata beside the weights: numpy scalars, Lightning callbacks, sets, bytes, floats */
    b = (buf){0};
    put1(&b, 0x80);
    put1(&b, 2);
    put1(&b, '}');
    put1(&b, '(');
    pk_str(&b, "callbacks");
    pk_global(&b, "pytorch_lightning.callbacks.model_checkpoint", "ModelCheckpoint");
    put1(&b, ')');
    put1(&b, 0x81);
    put1(&b, '}');
    put1(&b, 'b');
    pk_str(&b, "lr");
    pk_global(&b, "numpy.core.multiarray", "scalar");
    pk_global(&b, "numpy", "dtype");
    pk_str(&b, "f8");
    put1(&b, 0x89);
    put1(&b, 0x88);
    put1(&b, 0x87);
    put1(&b, 'R');
    pk_global(&b, "_codecs", "encode");
    pk_str(&b, "\x01\x02");
    pk_str(&b, "latin1");
    put1(&b, 0x86);
    put1(&b, 'R');
    put1(&b, 0x86);
    put1(&b, 'R');
    pk_str(&b, "x");
    put1(&b, 'G');
    put(&b, "\x3f\xf0\0\0\0\0\0\0", 8);
    pk_str(&b, "set");
    put1(&b, 0x8f);
    put1(&b, '(');
    pk_int(&b, 1);
    put1(&b, 0x90);
    pk_str(&b, "bytes");
    put1(&b, 'C');
    put1(&b, 2);
    puts_(&b, "ab");
    pk_str(&b, "big");
    put1(&b, 0x8a);
    put1(&b, 12);
    put(&b, "\1\2\3\4\5\6\7\x08\x09\x0a\x0b\x0c", 12);
    pk_str(&b, "w");
    pkt_tensor(&b, "FloatStorage", "0", 6, 0, shape, stride, 2);
    put1(&b, 'u');
    put1(&b, '.');
    expect_pickle("inert metadata", &b, LDM_OK, NULL);
    free(b.p);
}

/* ---- files and folders --------------------------------------------------------------------- */

static void write_str(const char *path, const char *s) { write_file(path, s, strlen(s)); }

static void expect_open(const char *what, const char *path, ldm_status want, const char *needle) {
    g_cases++;
    st_file *f = (st_file *)(uintptr_t)1;
    ldm_clear_error();
    ldm_status st = ckpt_open(path, &f);
    CHECK(st == want, "%s: got %s (%s), expected %s", what, ldm_status_string(st), ldm_last_error(),
          ldm_status_string(want));
    if (st == LDM_OK) st_close(f);
    else {
        CHECK(f == NULL, "%s: error without a NULL file", what);
        CHECK(contains(ldm_last_error(), needle), "%s: message '%s' lacks '%s'", what, ldm_last_error(), needle);
    }
}

/* A one-tensor safetensors file (F32, the given shape, zeros). */
static void write_st(const char *path, const char *const *names, int n, int64_t dim) {
    st_writer *w = st_writer_new();
    float *zeros = calloc((size_t)(dim * dim), sizeof(float));
    int64_t shape[2] = {dim, dim};
    for (int i = 0; i < n; i++) st_writer_add(w, names[i], LDM_DT_F32, 2, shape, zeros);
    if (st_writer_save(w, path)) {
        fprintf(stderr, "cannot write %s\n", path);
        exit(2);
    }
    st_writer_free(w);
    free(zeros);
}

static void test_files(void) {
    char p[8600], d[4300];
    snprintf(p, sizeof p, "%s/legacy.pt", g_tmp);
    write_file(p, "\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19.", 15);
    expect_open("legacy torch magic", p, LDM_ERR_UNSUPPORTED, "legacy");
    snprintf(p, sizeof p, "%s/bare.pkl", g_tmp);
    write_file(p, "\x80\x04}\x94.", 5);
    expect_open("bare pickle", p, LDM_ERR_UNSUPPORTED, "bare pickle");
    snprintf(p, sizeof p, "%s/missing.ckpt", g_tmp);
    expect_open("missing file", p, LDM_ERR_IO, "cannot open");
    /* a real file holding a malicious pickle */
    buf pkl = {0};
    put1(&pkl, 0x80);
    put1(&pkl, 2);
    pk_global(&pkl, "posix", "system");
    pk_str(&pkl, "touch pwned");
    put1(&pkl, 0x85);
    put1(&pkl, 'R');
    put1(&pkl, '.');
    buf z = ckpt_zip(&pkl, g_w, sizeof g_w);
    snprintf(p, sizeof p, "%s/evil.ckpt", g_tmp);
    write_file(p, z.p, z.n);
    expect_open("posix.system in a .ckpt file", p, LDM_ERR_FORMAT, "refusing global 'posix.system'");
    ldm_model *m = NULL;
    ldm_status st = ldm_model_load_internal(p, NULL, &m);
    CHECK(st == LDM_ERR_FORMAT && m == NULL && contains(ldm_last_error(), "evil.ckpt"),
          "model load of a malicious .ckpt: %s (%s)", ldm_status_string(st), ldm_last_error());
    free(z.p);
    free(pkl.p);

    /* diffusers folders */
    snprintf(d, sizeof d, "%s/notdiffusers", g_tmp);
    mkdir(d, 0755);
    expect_open("directory without unet/", d, LDM_ERR_IO, "not a diffusers folder");
    snprintf(d, sizeof d, "%s/df", g_tmp);
    mkdir(d, 0755);
    const char *subs[] = {"unet", "vae", "text_encoder"};
    for (int i = 0; i < 3; i++) {
        snprintf(p, sizeof p, "%s/%s", d, subs[i]);
        mkdir(p, 0755);
    }
    expect_open("diffusers folder without weights", d, LDM_ERR_FORMAT, "lacks unet/diffusion_pytorch_model");
    const char *unet_ok[] = {"conv_in.weight", "down_blocks.0.resnets.0.conv1.weight"};
    snprintf(p, sizeof p, "%s/unet/diffusion_pytorch_model.fp16.safetensors", d);
    write_st(p, unet_ok, 2, 2);
    expect_open("diffusers folder without vae", d, LDM_ERR_FORMAT, "lacks vae/");
    const char *vae_ok[] = {"decoder.up_blocks.0.resnets.0.conv1.weight", "encoder.mid_block.attentions.0.to_q.weight"};
    snprintf(p, sizeof p, "%s/vae/diffusion_pytorch_model.safetensors", d);
    write_st(p, vae_ok, 2, 3);
    const char *text_ok[] = {"text_model.embeddings.token_embedding.weight"};
    snprintf(p, sizeof p, "%s/text_encoder/model.safetensors", d);
    write_st(p, text_ok, 1, 4);
    expect_open("minimal diffusers folder", d, LDM_OK, NULL);
    st_file *f = NULL;
    if (ckpt_open(d, &f) == LDM_OK) {
        const st_tensor *q = st_find(f, "first_stage_model.encoder.mid.attn_1.q.weight");
        CHECK(q && q->ndim == 4 && q->shape[0] == 3 && q->shape[1] == 3 && q->shape[2] == 1 && q->shape[3] == 1,
              "VAE attention weight not viewed as a 1x1 conv");
        CHECK(st_find(f, "first_stage_model.decoder.up.0.block.0.conv1.weight") != NULL, "VAE decoder up block");
        CHECK(st_find(f, "cond_stage_model.transformer.text_model.embeddings.token_embedding.weight") != NULL,
              "text encoder name");
        CHECK(st_meta(f, "diffusers.prediction_type") == NULL, "no scheduler config, no prediction type");
        st_close(f);
    }
    /* a folder the model code refuses clearly (not enough tensors for SD 1.x) */
    st = ldm_model_load_internal(d, NULL, &m);
    CHECK(st != LDM_OK && m == NULL, "model load of a minimal diffusers folder: %s", ldm_status_string(st));
    const char *unet_bad[] = {"conv_in.weight", "add_embedding.linear_1.weight"};
    snprintf(p, sizeof p, "%s/unet/diffusion_pytorch_model.fp16.safetensors", d);
    write_st(p, unet_bad, 2, 2);
    expect_open("unmappable diffusers name", d, LDM_ERR_FORMAT, "cannot map tensor 'add_embedding.linear_1.weight'");
    write_st(p, unet_ok, 2, 2);
    snprintf(p, sizeof p, "%s/text_encoder/config.json", d);
    write_str(p, "{\"hidden_act\": \"gelu\", \"hidden_size\": 1024}");
    expect_open("SD 2.x text encoder without layers", d, LDM_ERR_FORMAT, "no usable layer 0");
    write_str(p, "{\"hidden_act\": \"relu\"}");
    expect_open("unknown text activation", d, LDM_ERR_UNSUPPORTED, "relu");
    write_str(p, "{\"hidden_act\": ");
    expect_open("broken config.json", d, LDM_ERR_FORMAT, "config.json");
    unlink(p);
    snprintf(p, sizeof p, "%s/scheduler", d);
    mkdir(p, 0755);
    snprintf(p, sizeof p, "%s/scheduler/scheduler_config.json", d);
    write_str(p, "{\"prediction_type\": \"v_prediction\"}");
    if (ckpt_open(d, &f) == LDM_OK) {
        const char *pt = st_meta(f, "diffusers.prediction_type");
        CHECK(pt && strcmp(pt, "v_prediction") == 0, "prediction_type from scheduler_config.json");
        st_close(f);
    }
    /* a .bin component that is not a torch zip */
    snprintf(p, sizeof p, "%s/vae/diffusion_pytorch_model.safetensors", d);
    unlink(p);
    snprintf(p, sizeof p, "%s/vae/diffusion_pytorch_model.bin", d);
    write_file(p, "\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19.", 15);
    expect_open("legacy .bin component", d, LDM_ERR_UNSUPPORTED, "legacy");
}

/* ---- diffusers name mapping ----------------------------------------------------------------- */

static void test_names(void) {
    /* SD 1.5: 4 levels, 2 resnets per down block, attention in all but the lowest-resolution up
     * block (diffusers' convert_diffusers_to_original_stable_diffusion.py tables). */
    ckpt_layout l = {0};
    const char *scan[] = {"down_blocks.3.resnets.1.conv1.weight", "up_blocks.0.resnets.2.conv1.weight",
                          "up_blocks.1.attentions.0.proj_in.weight", "up_blocks.2.attentions.0.proj_in.weight",
                          "up_blocks.3.attentions.2.proj_in.weight"};
    for (size_t i = 0; i < sizeof scan / sizeof scan[0]; i++) ckpt_layout_scan(&l, CKPT_UNET, scan[i]);
    ckpt_layout_scan(&l, CKPT_VAE, "decoder.up_blocks.3.resnets.0.conv1.weight");
    CHECK(l.layers_per_block == 2 && l.n_up == 4 && l.up_has_attn == 0xe && l.n_vae_up == 4, "layout scan");
    ckpt_layout_scan(&l, CKPT_TEXT_OPENCLIP, "text_model.encoder.layers.22.layer_norm1.weight");
    static const struct {
        ckpt_component c;
        const char *from, *to;
        bool conv1x1;
        int qkv_plus1; /* 0: not a q/k/v part */
    } m[] = {
        {CKPT_UNET, "conv_in.weight", "model.diffusion_model.input_blocks.0.0.weight", false, 0},
        {CKPT_UNET, "time_embedding.linear_1.bias", "model.diffusion_model.time_embed.0.bias", false, 0},
        {CKPT_UNET, "time_embedding.linear_2.weight", "model.diffusion_model.time_embed.2.weight", false, 0},
        {CKPT_UNET, "conv_norm_out.weight", "model.diffusion_model.out.0.weight", false, 0},
        {CKPT_UNET, "conv_out.bias", "model.diffusion_model.out.2.bias", false, 0},
        {CKPT_UNET, "down_blocks.0.resnets.0.norm1.weight", "model.diffusion_model.input_blocks.1.0.in_layers.0.weight", false, 0},
        {CKPT_UNET, "down_blocks.0.resnets.1.time_emb_proj.bias", "model.diffusion_model.input_blocks.2.0.emb_layers.1.bias", false, 0},
        {CKPT_UNET, "down_blocks.1.resnets.0.conv_shortcut.weight", "model.diffusion_model.input_blocks.4.0.skip_connection.weight", false, 0},
        {CKPT_UNET, "down_blocks.1.attentions.1.transformer_blocks.0.attn2.to_k.weight",
         "model.diffusion_model.input_blocks.5.1.transformer_blocks.0.attn2.to_k.weight", false, 0},
        {CKPT_UNET, "down_blocks.2.downsamplers.0.conv.weight", "model.diffusion_model.input_blocks.9.0.op.weight", false, 0},
        {CKPT_UNET, "down_blocks.3.resnets.1.conv2.weight", "model.diffusion_model.input_blocks.11.0.out_layers.3.weight", false, 0},
        {CKPT_UNET, "mid_block.resnets.0.norm2.bias", "model.diffusion_model.middle_block.0.out_layers.0.bias", false, 0},
        {CKPT_UNET, "mid_block.attentions.0.proj_out.weight", "model.diffusion_model.middle_block.1.proj_out.weight", false, 0},
        {CKPT_UNET, "mid_block.resnets.1.conv1.weight", "model.diffusion_model.middle_block.2.in_layers.2.weight", false, 0},
        {CKPT_UNET, "up_blocks.0.resnets.2.conv1.weight", "model.diffusion_model.output_blocks.2.0.in_layers.2.weight", false, 0},
        {CKPT_UNET, "up_blocks.0.upsamplers.0.conv.weight", "model.diffusion_model.output_blocks.2.1.conv.weight", false, 0},
        {CKPT_UNET, "up_blocks.1.upsamplers.0.conv.bias", "model.diffusion_model.output_blocks.5.2.conv.bias", false, 0},
        {CKPT_UNET, "up_blocks.2.attentions.1.norm.weight", "model.diffusion_model.output_blocks.7.1.norm.weight", false, 0},
        {CKPT_UNET, "up_blocks.3.attentions.2.transformer_blocks.0.ff.net.0.proj.weight",
         "model.diffusion_model.output_blocks.11.1.transformer_blocks.0.ff.net.0.proj.weight", false, 0},
        {CKPT_VAE, "encoder.conv_in.weight", "first_stage_model.encoder.conv_in.weight", false, 0},
        {CKPT_VAE, "encoder.down_blocks.1.resnets.0.conv_shortcut.bias",
         "first_stage_model.encoder.down.1.block.0.nin_shortcut.bias", false, 0},
        {CKPT_VAE, "encoder.down_blocks.2.downsamplers.0.conv.weight",
         "first_stage_model.encoder.down.2.downsample.conv.weight", false, 0},
        {CKPT_VAE, "encoder.mid_block.resnets.1.norm2.weight", "first_stage_model.encoder.mid.block_2.norm2.weight", false, 0},
        {CKPT_VAE, "encoder.mid_block.attentions.0.group_norm.weight", "first_stage_model.encoder.mid.attn_1.norm.weight", false, 0},
        {CKPT_VAE, "encoder.mid_block.attentions.0.query.weight", "first_stage_model.encoder.mid.attn_1.q.weight", true, 0},
        {CKPT_VAE, "decoder.mid_block.attentions.0.to_out.0.weight", "first_stage_model.decoder.mid.attn_1.proj_out.weight", true, 0},
        {CKPT_VAE, "decoder.mid_block.attentions.0.to_v.bias", "first_stage_model.decoder.mid.attn_1.v.bias", false, 0},
        {CKPT_VAE, "encoder.conv_norm_out.bias", "first_stage_model.encoder.norm_out.bias", false, 0},
        {CKPT_VAE, "decoder.up_blocks.0.resnets.2.conv2.weight", "first_stage_model.decoder.up.3.block.2.conv2.weight", false, 0},
        {CKPT_VAE, "decoder.up_blocks.2.upsamplers.0.conv.weight", "first_stage_model.decoder.up.1.upsample.conv.weight", false, 0},
        {CKPT_VAE, "post_quant_conv.weight", "first_stage_model.post_quant_conv.weight", false, 0},
        {CKPT_TEXT, "text_model.encoder.layers.11.self_attn.q_proj.weight",
         "cond_stage_model.transformer.text_model.encoder.layers.11.self_attn.q_proj.weight", false, 0},
        /* SD 2.x (convert_diffusers_to_original_stable_diffusion.py textenc_conversion_lst) */
        {CKPT_TEXT_OPENCLIP, "text_model.embeddings.token_embedding.weight",
         "cond_stage_model.model.token_embedding.weight", false, 0},
        {CKPT_TEXT_OPENCLIP, "text_model.embeddings.position_embedding.weight",
         "cond_stage_model.model.positional_embedding", false, 0},
        {CKPT_TEXT_OPENCLIP, "text_model.final_layer_norm.bias", "cond_stage_model.model.ln_final.bias", false, 0},
        {CKPT_TEXT_OPENCLIP, "text_model.encoder.layers.22.layer_norm2.weight",
         "cond_stage_model.model.transformer.resblocks.22.ln_2.weight", false, 0},
        {CKPT_TEXT_OPENCLIP, "text_model.encoder.layers.3.mlp.fc1.bias",
         "cond_stage_model.model.transformer.resblocks.3.mlp.c_fc.bias", false, 0},
        {CKPT_TEXT_OPENCLIP, "text_model.encoder.layers.0.mlp.fc2.weight",
         "cond_stage_model.model.transformer.resblocks.0.mlp.c_proj.weight", false, 0},
        {CKPT_TEXT_OPENCLIP, "text_model.encoder.layers.0.self_attn.out_proj.weight",
         "cond_stage_model.model.transformer.resblocks.0.attn.out_proj.weight", false, 0},
        {CKPT_TEXT_OPENCLIP, "text_model.encoder.layers.5.self_attn.k_proj.weight",
         "cond_stage_model.model.transformer.resblocks.5.attn.in_proj_weight", false, 2},
        {CKPT_TEXT_OPENCLIP, "text_model.encoder.layers.5.self_attn.v_proj.bias",
         "cond_stage_model.model.transformer.resblocks.5.attn.in_proj_bias", false, 3},
    };
    char out[512];
    for (size_t i = 0; i < sizeof m / sizeof m[0]; i++) {
        ckpt_name_info info;
        ldm_status st = ckpt_diffusers_name(m[i].c, &l, m[i].from, out, sizeof out, &info);
        int want_qkv = m[i].qkv_plus1 - 1;
        CHECK(st == LDM_OK && strcmp(out, m[i].to) == 0 && info.conv1x1 == m[i].conv1x1 && info.qkv == want_qkv &&
                  !info.drop,
              "map '%s' gave '%s' (%s), expected '%s'", m[i].from, out, st ? ldm_last_error() : "ok", m[i].to);
    }
    ckpt_name_info info;
    CHECK(ckpt_diffusers_name(CKPT_TEXT_OPENCLIP, &l, "text_model.embeddings.position_ids", out, sizeof out, &info) ==
                  LDM_OK &&
              info.drop,
          "OpenCLIP position_ids are dropped");
    static const struct {
        ckpt_component c;
        const char *name;
    } bad[] = {
        {CKPT_UNET, "down_blocks.0.resnets.2.conv1.weight"}, /* beyond layers_per_block */
        {CKPT_UNET, "up_blocks.0.resnets.3.conv1.weight"},
        {CKPT_UNET, "down_blocks.01.resnets.0.conv1.weight"},
        {CKPT_UNET, "down_blocks.0.resnets.0.conv9.weight"},
        {CKPT_UNET, "conv_in.weight.extra"},
        {CKPT_UNET, "mid_block.resnets.2.conv1.weight"},
        {CKPT_UNET, "down_blocks.0.attentions.0."},
        {CKPT_UNET, ""},
        {CKPT_VAE, "decoder.up_blocks.4.resnets.0.conv1.weight"},
        {CKPT_VAE, "decoder.down_blocks.0.resnets.0.conv1.weight"},
        {CKPT_VAE, "encoder.mid_block.attentions.0.to_k"},
        {CKPT_TEXT, "text_projection.weight"},
        {CKPT_TEXT, "text_model."},
        {CKPT_TEXT_OPENCLIP, "text_model.encoder.layers.23.layer_norm1.weight"}, /* beyond the scanned layers */
        {CKPT_TEXT_OPENCLIP, "text_model.encoder.layers.0.self_attn.x_proj.weight"},
        {CKPT_TEXT_OPENCLIP, "text_model.encoder.layers.0.self_attn.q_proj.scale"},
        {CKPT_TEXT_OPENCLIP, "text_projection.weight"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        ckpt_name_info info2;
        ldm_status st = ckpt_diffusers_name(bad[i].c, &l, bad[i].name, out, sizeof out, &info2);
        CHECK(st == LDM_ERR_FORMAT, "'%s' should not map (gave '%s')", bad[i].name, out);
    }
    g_cases += (int)(sizeof m / sizeof m[0] + sizeof bad / sizeof bad[0]);
}

/* ---- main ------------------------------------------------------------------------------------- */

static void remove_tree(const char *path) {
    struct stat sb;
    if (lstat(path, &sb) != 0) return;
    if (S_ISDIR(sb.st_mode)) {
        DIR *d = opendir(path);
        struct dirent *e;
        while (d && (e = readdir(d)) != NULL) {
            if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
            char sub[4600];
            snprintf(sub, sizeof sub, "%s/%s", path, e->d_name);
            remove_tree(sub);
        }
        if (d) closedir(d);
        rmdir(path);
    } else {
        unlink(path);
    }
}

int main(int argc, char **argv) {
    if (argc < 4) {
        fprintf(stderr, "usage: %s DATA_DIR VARIANTS_DIR TMP_PARENT [EXTRA.ckpt ...]\n", argv[0]);
        return 2;
    }
    snprintf(g_tmp, sizeof g_tmp, "%s/test_checkpoint.XXXXXX", argv[3]);
    if (!mkdtemp(g_tmp)) {
        perror("mkdtemp");
        return 2;
    }
    test_valid_small();
    test_truncation_and_flips();
    test_zip_lies();
    test_views();
    test_pickles();
    test_files();
    test_names();
    test_torch_refs(argv[1]);
    /* variants of each model whose files are in VARIANTS_DIR; extra files compare with sd1-tiny */
    static const char *const stems[] = {"sd1-tiny", "sd2-tiny", "sd1-inpaint-tiny"};
    for (size_t i = 0; i < sizeof stems / sizeof stems[0]; i++) {
        char probe[4400];
        snprintf(probe, sizeof probe, "%s/%s.ckpt", argv[2], stems[i]);
        if (i > 0 && access(probe, R_OK) != 0) continue;
        test_variants(argv[1], argv[2], stems[i], i == 0 ? argc - 4 : 0, argv + 4);
        printf("%s: 5 variants compared\n", stems[i]);
    }
    remove_tree(g_tmp);
    printf("%d cases, %d checks, %d failures\n", g_cases, g_checks, g_failures);
    return g_failures ? 1 : 0;
}
