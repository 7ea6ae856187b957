/* Memory planning and release (memory.h).
 *
 * Activation peaks are not modelled by formulas that would drift from the networks: the real
 * forward functions run on a dry-run backend whose tensors have shapes but no storage and whose
 * ops do nothing, counting live bytes at every allocation and free (plus each op's transient
 * scratch as the CPU backend sizes it). A UNet walk is ~400 ops of bookkeeping: microseconds.
 *
 * Weights: file-mapped weights are resident only while a stage touches them, because the
 * pipeline drops their pages when the stage is done (mem_release_weights); weights the loader
 * converted into its own memory (and derived tensors) stay resident for the model's life. */
#include "memory.h"

#include "nets.h"
#include "pipeline.h"
#include "vae_tiling.h"

#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

/* ---------------------------------------------------------------------------------------- */
/* Weights                                                                                  */
/* ---------------------------------------------------------------------------------------- */

static bool has_prefix(const char *name, const char *prefix) {
    return !prefix || strncmp(name, prefix, strlen(prefix)) == 0;
}

uint64_t mem_weight_bytes(const ldm_model *m, const char *prefix, uint64_t *mapped) {
    uint64_t all = 0, map = 0;
    for (size_t i = 0; m->file && i < st_count(m->file); i++) {
        const st_tensor *t = st_at(m->file, i);
        if (!has_prefix(t->name, prefix)) continue;
        all += t->nbytes;
        if (st_is_file_mapped(m->file, t->data, t->nbytes)) map += t->nbytes;
    }
    if (!prefix)
        for (size_t i = 0; i < m->n_derived; i++)
            all += (uint64_t)ldm_numel(&m->derived[i].t) * ldm_dtype_size(m->derived[i].t.dtype);
    if (mapped) *mapped = map;
    return all;
}

void mem_release_weights(const ldm_model *m, const char *prefix) {
    const uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
    for (size_t i = 0; m->file && i < st_count(m->file); i++) {
        const st_tensor *t = st_at(m->file, i);
        if (!has_prefix(t->name, prefix) || !st_is_file_mapped(m->file, t->data, t->nbytes)) continue;
        /* whole pages only: the partial pages at either end may hold a neighbour still in use */
        uintptr_t a = ((uintptr_t)t->data + page - 1) / page * page, b = ((uintptr_t)t->data + t->nbytes) / page * page;
        if (b > a) (void)madvise((void *)a, b - a, MADV_DONTNEED); /* advice only: failure is harmless */
    }
}

/* ---------------------------------------------------------------------------------------- */
/* The dry-run backend                                                                      */
/* ---------------------------------------------------------------------------------------- */

typedef struct dry_backend {
    ldm_backend base;
    uint64_t live, peak, largest;
} dry_backend;

static unsigned char dry_storage[64]; /* every dry tensor points here: non-NULL, never read */

static void dry_note(ldm_backend *be, uint64_t transient) {
    dry_backend *d = (dry_backend *)be;
    if (d->live + transient > d->peak) d->peak = d->live + transient;
}

static uint64_t tensor_bytes(const ldm_tensor *t) { return t ? (uint64_t)ldm_numel(t) * sizeof(float) : 0; }

static void dry_destroy(ldm_backend *be) { (void)be; }
static ldm_tensor *dry_new_tensor(ldm_backend *be, int32_t ndim, const int64_t *shape) {
    if (ndim < 1 || ndim > LDM_MAX_DIMS) {
        ldm_fail(LDM_ERR_INVALID_ARG, "dry run: bad rank %d", (int)ndim);
        return NULL;
    }
    ldm_tensor *t = calloc(1, sizeof *t);
    if (!t) {
        ldm_fail(LDM_ERR_NO_MEMORY, "out of memory");
        return NULL;
    }
    t->dtype = LDM_DT_F32;
    t->ndim = ndim;
    for (int i = 0; i < ndim; i++) t->ne[i] = shape[i];
    t->data = dry_storage;
    dry_backend *d = (dry_backend *)be;
    /* the CPU backend rounds every buffer up to 64 bytes */
    d->live += (tensor_bytes(t) + 63) / 64 * 64;
    d->largest = LDM_MAX(d->largest, tensor_bytes(t));
    dry_note(be, 0);
    return t;
}
static void dry_free_tensor(ldm_backend *be, ldm_tensor *t) {
    if (!t) return;
    ((dry_backend *)be)->live -= (tensor_bytes(t) + 63) / 64 * 64;
    free(t);
}
static ldm_status dry_upload(ldm_backend *be, ldm_tensor *dst, const float *src) {
    (void)be, (void)dst, (void)src;
    return LDM_OK;
}
static ldm_status dry_download(ldm_backend *be, const ldm_tensor *src, float *dst) {
    (void)be, (void)src, (void)dst;
    return LDM_OK;
}
static ldm_status dry_conv2d(ldm_backend *be, const ldm_tensor *x, const ldm_tensor *w, const ldm_tensor *b,
                             const ldm_conv2d_params *p, ldm_tensor *y) {
    (void)x, (void)b, (void)y;
    /* the CPU backend's Winograd path (cpu_winograd.c: 3x3 stride 1, >= 32 channels each way)
     * transforms the whole weight for the call: 36 K C floats, at most 64 MiB (an upper bound:
     * cpu_winograd_eligible also wants >= 128 output tiles and enough of them for the threads) */
    if (w && w->ndim == 4 && p && w->ne[2] == 3 && w->ne[3] == 3 && p->stride == 1 && w->ne[0] >= 32 && w->ne[1] >= 32) {
        const uint64_t u = 36 * (uint64_t)w->ne[0] * (uint64_t)w->ne[1] * sizeof(float);
        if (u <= ((uint64_t)64 << 20)) dry_note(be, u);
    }
    return LDM_OK;
}
static ldm_status dry_linear(ldm_backend *be, const ldm_tensor *x, const ldm_tensor *w, const ldm_tensor *b,
                             ldm_tensor *y) {
    (void)be, (void)x, (void)w, (void)b, (void)y;
    return LDM_OK;
}
static ldm_status dry_group_norm(ldm_backend *be, const ldm_tensor *x, const ldm_tensor *g, const ldm_tensor *b,
                                 int32_t groups, float eps, int32_t silu, ldm_tensor *y) {
    (void)be, (void)x, (void)g, (void)b, (void)groups, (void)eps, (void)silu, (void)y;
    return LDM_OK;
}
static ldm_status dry_layer_norm(ldm_backend *be, const ldm_tensor *x, const ldm_tensor *g, const ldm_tensor *b,
                                 float eps, ldm_tensor *y) {
    (void)be, (void)x, (void)g, (void)b, (void)eps, (void)y;
    return LDM_OK;
}
static ldm_status dry_attention(ldm_backend *be, const ldm_tensor *q, const ldm_tensor *k, const ldm_tensor *v,
                                int32_t heads, float scale, int32_t causal, ldm_tensor *y) {
    (void)q, (void)heads, (void)scale, (void)causal, (void)y;
    /* the CPU backend packs K and V^T of every head for the call (cpu_attention.c) */
    dry_note(be, tensor_bytes(k) + tensor_bytes(v) + 64 * 1024);
    return LDM_OK;
}
static ldm_status dry_unary(ldm_backend *be, ldm_unary_op op, const ldm_tensor *x, ldm_tensor *y) {
    (void)be, (void)op, (void)x, (void)y;
    return LDM_OK;
}
static ldm_status dry_xy(ldm_backend *be, const ldm_tensor *x, ldm_tensor *y) {
    (void)be, (void)x, (void)y;
    return LDM_OK;
}
static ldm_status dry_xby(ldm_backend *be, const ldm_tensor *a, const ldm_tensor *b, ldm_tensor *y) {
    (void)be, (void)a, (void)b, (void)y;
    return LDM_OK;
}
static ldm_status dry_scale(ldm_backend *be, const ldm_tensor *x, float s, ldm_tensor *y) {
    (void)be, (void)x, (void)s, (void)y;
    return LDM_OK;
}
static ldm_status dry_embedding(ldm_backend *be, const ldm_tensor *w, const int32_t *ids, int64_t n, ldm_tensor *y) {
    (void)be, (void)w, (void)ids, (void)n, (void)y;
    return LDM_OK;
}

/* Every op of ldm_backend_ops needs its dry version here. */
static const ldm_backend_ops dry_ops = {
    .name = "dry-run",
    .destroy = dry_destroy,
    .new_tensor = dry_new_tensor,
    .free_tensor = dry_free_tensor,
    .upload = dry_upload,
    .download = dry_download,
    .conv2d = dry_conv2d,
    .linear = dry_linear,
    .group_norm = dry_group_norm,
    .layer_norm = dry_layer_norm,
    .attention = dry_attention,
    .unary = dry_unary,
    .geglu = dry_xy,
    .add = dry_xby,
    .add_per_channel = dry_xby,
    .scale = dry_scale,
    .upsample_nearest2x = dry_xy,
    .concat_channels = dry_xby,
    .nchw_to_nlc = dry_xy,
    .nlc_to_nchw = dry_xy,
    .embedding = dry_embedding,
};

static void dry_begin(dry_backend *d, ldm_exec *ex, int32_t n_threads) {
    memset(d, 0, sizeof *d);
    d->base.ops = &dry_ops;
    d->base.n_threads = n_threads > 0 ? n_threads : 1;
    ldm_exec_init(ex, &d->base, NULL);
}

static ldm_status dry_end(dry_backend *d, ldm_exec *ex, ldm_status st, uint64_t *bytes) {
    if (!st) st = ex->status;
    *bytes = st ? 0 : d->peak;
    return st;
}

ldm_status mem_peak_text(const ldm_model *m, int32_t n_threads, uint64_t *bytes) {
    dry_backend d;
    ldm_exec ex;
    dry_begin(&d, &ex, n_threads);
    *bytes = 0;
    if (m->cond == COND_NONE) return LDM_OK;
    int32_t width = m->cond == COND_BERT ? m->bert.width : m->clip.width, ids[77];
    float *out = calloc((size_t)77 * (width > 0 ? width : 1), sizeof(float));
    if (!out) return ldm_fail(LDM_ERR_NO_MEMORY, "out of memory");
    /* pipeline_encode_prompt does not modify the model (it takes it non-const for its callers) */
    ldm_status st = pipeline_encode_prompt(&ex, (ldm_model *)m, "", 0, out, ids);
    free(out);
    return dry_end(&d, &ex, st, bytes);
}

ldm_status mem_peak_unet(const ldm_model *m, int32_t n_threads, int32_t batch, int32_t h, int32_t w, uint64_t *bytes) {
    dry_backend d;
    ldm_exec ex;
    dry_begin(&d, &ex, n_threads);
    const unet_config *u = &m->unet;
    const size_t nx = (size_t)batch * u->in_channels * h * w, nc = (size_t)batch * 77 * (u->context_dim > 0 ? u->context_dim : 1);
    float *x = calloc(nx, sizeof(float)), *ctx = calloc(nc, sizeof(float)), *t = calloc((size_t)batch, sizeof(float));
    float *out = calloc((size_t)batch * u->out_channels * h * w, sizeof(float));
    int32_t *labels = calloc((size_t)batch, sizeof(int32_t));
    ldm_status st = LDM_OK;
    if (!x || !ctx || !t || !out || !labels)
        st = ldm_fail(LDM_ERR_NO_MEMORY, "out of memory");
    else
        st = unet_forward_ex(&ex, m, batch, h, w, x, t, u->num_classes > 0 ? labels : NULL,
                             u->context_dim > 0 ? 77 : 0, u->context_dim > 0 ? ctx : NULL, out);
    free(x);
    free(ctx);
    free(t);
    free(out);
    free(labels);
    return dry_end(&d, &ex, st, bytes);
}

ldm_status mem_peak_decode(const ldm_model *m, int32_t n_threads, int32_t h, int32_t w, uint64_t *bytes) {
    dry_backend d;
    ldm_exec ex;
    dry_begin(&d, &ex, n_threads);
    float *z = calloc((size_t)m->vae.embed_dim * h * w, sizeof(float)), image[1];
    if (!z) return ldm_fail(LDM_ERR_NO_MEMORY, "out of memory");
    ldm_status st = vae_decode(&ex, m, 1, h, w, z, image); /* the dry download never writes `image` */
    free(z);
    return dry_end(&d, &ex, st, bytes);
}

ldm_status mem_peak_decode_tiled(const ldm_model *m, int32_t n_threads, int32_t h, int32_t w, int32_t tile,
                                 uint64_t *bytes) {
    *bytes = 0;
    if (tile <= 0 || (tile >= h && tile >= w)) return mem_peak_decode(m, n_threads, h, w, bytes);
    const int32_t th = LDM_MIN(tile, h), tw = LDM_MIN(tile, w);
    const uint64_t f = (uint64_t)m->downscale;
    /* a tile's decode (its head part too: an upper bound of the part vae_tiling.c runs per tile) */
    dry_backend d;
    ldm_exec ex;
    dry_begin(&d, &ex, n_threads);
    float *z = calloc((size_t)m->vae.embed_dim * th * tw, sizeof(float)), image[1];
    if (!z) return ldm_fail(LDM_ERR_NO_MEMORY, "out of memory");
    ldm_status st = vae_decode(&ex, m, 1, th, tw, z, image);
    free(z);
    uint64_t tile_peak, largest = d.largest;
    if ((st = dry_end(&d, &ex, st, &tile_peak))) return st;
    /* the head over the whole latent */
    dry_begin(&d, &ex, n_threads);
    z = calloc((size_t)m->vae.embed_dim * h * w, sizeof(float));
    if (!z) return ldm_fail(LDM_ERR_NO_MEMORY, "out of memory");
    ldm_tensor *t = vae_decoder_head(&ex, m, 1, h, w, z);
    const uint64_t head_bytes = t ? tensor_bytes(t) : 0;
    op_free(&ex, t);
    free(z);
    uint64_t head_peak;
    if ((st = dry_end(&d, &ex, LDM_OK, &head_peak))) return st;
    /* host: the head's output, the tile's input and image, the statistics download (the
     * largest tensor of a tile at most) */
    const uint64_t host = head_bytes + (uint64_t)th * tw * (uint64_t)LDM_MAX(m->vae.embed_dim, 512) * sizeof(float) +
                          3 * (uint64_t)th * tw * f * f * sizeof(float) + largest;
    *bytes = LDM_MAX(tile_peak, head_peak) + host;
    return LDM_OK;
}

/* ---------------------------------------------------------------------------------------- */
/* The plan of a generation                                                                 */
/* ---------------------------------------------------------------------------------------- */

/* The process itself (code, libraries, the tokenizer tables, thread stacks): measured 18 MiB
 * after loading SD 1.5 on the CPU backend, rounded up; plus the CPU backend's cache of freed
 * activation buffers (CPU_CACHE_MAX_BYTES, 64 MiB). */
#define MEM_BASELINE ((uint64_t)(32 + 64) << 20)
/* Per thread: the CPU backend's kept scratch (cpu_gemm.c pack buffers ~3 MiB, the Winograd
 * chunk buffers up to ~9 MiB) and its stack. */
#define MEM_PER_THREAD ((uint64_t)12 << 20)
/* Activations as the allocator holds them: 64-byte rounding is counted exactly, the heap's
 * fragmentation is not; measured 10-25% above the live peak on sd1-tiny and SD 1.5 runs. */
static uint64_t heap(uint64_t live) { return live + live / 5; }

ldm_status mem_plan_txt2img(const ldm_model *m, int32_t n_threads, int32_t width, int32_t height, int32_t batch,
                            int32_t vae_tile, uint64_t max_memory, mem_plan *out) {
    memset(out, 0, sizeof *out);
    if (n_threads < 1) n_threads = 1;
    const int32_t f = m->downscale > 0 ? m->downscale : 8, h = height / f, w = width / f;
    if (h < 1 || w < 1) return ldm_fail(LDM_ERR_INVALID_ARG, "image %dx%d is smaller than one latent pixel", width, height);
    uint64_t all_mapped, text_mapped, unet_mapped, vae_mapped, enc_mapped;
    const uint64_t all = mem_weight_bytes(m, NULL, &all_mapped);
    (void)mem_weight_bytes(m, MEM_PREFIX_COND, &text_mapped);
    (void)mem_weight_bytes(m, MEM_PREFIX_UNET, &unet_mapped);
    (void)mem_weight_bytes(m, "first_stage_model.", &vae_mapped);
    (void)mem_weight_bytes(m, MEM_PREFIX_VAE_ENCODER, &enc_mapped);
    const uint64_t dec_mapped = vae_mapped - enc_mapped; /* txt2img never touches the encoder */
    uint64_t a_text, a_unet;
    ldm_status st;
    if ((st = mem_peak_text(m, n_threads, &a_text)) || (st = mem_peak_unet(m, n_threads, batch, h, w, &a_unet)))
        return st;
    const uint64_t lat = (uint64_t)m->latent_channels * h * w * sizeof(float);
    /* host buffers: the pipeline's latents (x, the batch in/out, the concat), the contexts, the
     * float image and the 8-bit result */
    const uint64_t host = (uint64_t)(3 * batch + 3) * lat + (uint64_t)(batch + 1) * 77 * 1024 * sizeof(float) +
                          (uint64_t)width * height * 3 * (sizeof(float) + 1);
    out->fixed = MEM_BASELINE + (uint64_t)n_threads * MEM_PER_THREAD + (all - all_mapped) + host;
    out->text = text_mapped + heap(a_text);
    out->unet = unet_mapped + heap(a_unet);

    /* the decoder: whole, the given tile, or the automatic choice */
    uint64_t a_dec;
    if ((st = mem_peak_decode(m, n_threads, h, w, &a_dec))) return st;
    int32_t tile = 0;
    uint64_t dec = a_dec;
    if (vae_tile > 0 && vae_tile < LDM_MAX(h, w)) {
        tile = vae_tile;
        if ((st = mem_peak_decode_tiled(m, n_threads, h, w, tile, &dec))) return st;
    } else if (vae_tile == 0) {
        const bool whole_ok = a_dec <= MEM_VAE_AUTO_TILE_BYTES && (!max_memory || out->fixed + dec_mapped + heap(a_dec) <= max_memory);
        if (!whole_ok) {
            /* the largest multiple of 8 that fits, down to MEM_VAE_MIN_TILE */
            int32_t t = LDM_MIN(LDM_MAX(h, w) - 1, 160) / 8 * 8;
            for (; t >= MEM_VAE_MIN_TILE && t >= 2 * vae_tile_halo(m) + 4; t -= 8) {
                if ((st = mem_peak_decode_tiled(m, n_threads, h, w, t, &dec))) return st;
                tile = t;
                if (dec <= MEM_VAE_AUTO_TILE_BYTES && (!max_memory || out->fixed + dec_mapped + heap(dec) <= max_memory)) break;
            }
        }
    }
    out->vae_tile = tile;
    out->decode = dec_mapped + heap(dec);
    out->total = out->fixed + LDM_MAX(out->text, LDM_MAX(out->unet, out->decode));
    out->fits = !max_memory || out->total <= max_memory;
    return LDM_OK;
}
