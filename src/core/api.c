/* The public entry points that are not a layer of their own: model loading, the component
 * handles, images and ldm_txt2img. Argument checking happens here; the work is done below. */
#include "context.h"
#include "model.h"
#include "nets.h"
#include "pipeline.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct ldm_conditioner { ldm_model *m; };
struct ldm_denoiser { ldm_model *m; };
struct ldm_autoencoder { ldm_model *m; };
struct ldm_sampler { const ldm_sampler_def *def; };
struct ldm_image {
    int32_t width, height;
    uint64_t seed;
    uint8_t *data;
};

#define CHECK_ARG(cond, ...)                                                                                     \
    do {                                                                                                         \
        if (!(cond)) return ldm_fail(LDM_ERR_INVALID_ARG, __VA_ARGS__);                                         \
    } while (0)

/* Copies a caller's versioned params struct over defaults; `min_size` is the first version's size. */
static ldm_status copy_params(void *dst, size_t dst_size, const void *src, size_t min_size, const char *what) {
    size_t given = *(const size_t *)src;
    if (given < min_size) return ldm_fail(LDM_ERR_INVALID_ARG, "%s.struct_size %zu is too small", what, given);
    memcpy(dst, src, LDM_MIN(given, dst_size));
    *(size_t *)dst = dst_size;
    return LDM_OK;
}

LDM_API ldm_status ldm_model_load(ldm_context *ctx, const char *path, const ldm_model_params *params, ldm_model **out) {
    CHECK_ARG(out, "ldm_model_load: out is NULL");
    *out = NULL;
    CHECK_ARG(ctx && path, "ldm_model_load: ctx and path are required");
    ldm_clear_error();
    ldm_model_params p;
    ldm_model_params_init(&p);
    if (params) {
        ldm_status st = copy_params(&p, sizeof p, params, sizeof p, "ldm_model_params");
        if (st) return st;
    }
    ldm_status st = ldm_model_load_internal(path, &p, out);
    if (!st) ctx_log(ctx, LDM_LOG_INFO, "loaded %s model from %s", (*out)->family_name, path);
    return st;
}

/* ---- components ---- */

#define COMPONENT_CREATE(type, fn)                                                                               \
    LDM_API ldm_status fn(ldm_model *model, type **out) {                                                        \
        CHECK_ARG(out, #fn ": out is NULL");                                                                     \
        *out = NULL;                                                                                             \
        CHECK_ARG(model, #fn ": model is NULL");                                                                 \
        type *c = calloc(1, sizeof *c);                                                                          \
        if (!c) return ldm_fail(LDM_ERR_NO_MEMORY, "out of memory");                                             \
        c->m = model;                                                                                            \
        *out = c;                                                                                                \
        return LDM_OK;                                                                                           \
    }

COMPONENT_CREATE(ldm_conditioner, ldm_conditioner_create)
COMPONENT_CREATE(ldm_denoiser, ldm_denoiser_create)
COMPONENT_CREATE(ldm_autoencoder, ldm_autoencoder_create)

LDM_API void ldm_conditioner_destroy(ldm_conditioner *c) { free(c); }
LDM_API void ldm_denoiser_destroy(ldm_denoiser *d) { free(d); }
LDM_API void ldm_autoencoder_destroy(ldm_autoencoder *a) { free(a); }

LDM_API ldm_status ldm_conditioner_shape(const ldm_conditioner *cond, int32_t *tokens, int32_t *width) {
    CHECK_ARG(cond && tokens && width, "ldm_conditioner_shape: NULL argument");
    *tokens = cond->m->clip.n_pos;
    *width = cond->m->clip.width;
    return LDM_OK;
}

LDM_API ldm_status ldm_conditioner_encode(ldm_context *ctx, ldm_conditioner *cond, const char *text, int32_t clip_skip,
                                          float *out, size_t out_count) {
    CHECK_ARG(ctx && cond && text && out, "ldm_conditioner_encode: NULL argument");
    size_t need = (size_t)cond->m->clip.n_pos * cond->m->clip.width;
    CHECK_ARG(out_count >= need, "ldm_conditioner_encode: out holds %zu floats, %zu needed", out_count, need);
    CHECK_ARG(clip_skip >= 0, "ldm_conditioner_encode: clip_skip must be >= 0");
    ldm_exec ex;
    ctx_begin(ctx, &ex);
    int32_t ids[77];
    ldm_status st = pipeline_encode_prompt(&ex, cond->m, text, clip_skip, out, ids);
    return st ? st : ex.status;
}

LDM_API ldm_status ldm_denoiser_eval(ldm_context *ctx, ldm_denoiser *den, int32_t n, int32_t c, int32_t h, int32_t w,
                                     const float *x, const float *timesteps, int32_t tokens, const float *context,
                                     float *out) {
    CHECK_ARG(ctx && den && x && timesteps && context && out, "ldm_denoiser_eval: NULL argument");
    const ldm_model *m = den->m;
    CHECK_ARG(n >= 1 && n <= 64, "ldm_denoiser_eval: batch %d out of range", n);
    CHECK_ARG(c == m->unet.in_channels, "ldm_denoiser_eval: %d channels given, the UNet takes %d", c, m->unet.in_channels);
    CHECK_ARG(h >= 1 && w >= 1 && h <= 1024 && w <= 1024, "ldm_denoiser_eval: latent size %dx%d out of range", w, h);
    CHECK_ARG(tokens >= 1 && tokens <= 4096, "ldm_denoiser_eval: tokens %d out of range", tokens);
    ldm_exec ex;
    ctx_begin(ctx, &ex);
    return unet_forward(&ex, m, n, h, w, x, timesteps, tokens, context, out);
}

LDM_API ldm_status ldm_autoencoder_encode(ldm_context *ctx, ldm_autoencoder *ae, int32_t n, int32_t h, int32_t w,
                                          const float *image, float *latent) {
    CHECK_ARG(ctx && ae && image && latent, "ldm_autoencoder_encode: NULL argument");
    const ldm_model *m = ae->m;
    CHECK_ARG(n >= 1 && n <= 64 && h >= 1 && w >= 1 && h <= 8192 && w <= 8192, "ldm_autoencoder_encode: bad size");
    CHECK_ARG(h % m->downscale == 0 && w % m->downscale == 0, "ldm_autoencoder_encode: size must be a multiple of %d",
              m->downscale);
    int32_t lh = h / m->downscale, lw = w / m->downscale, e = m->vae.embed_dim;
    size_t plane = (size_t)lh * lw;
    float *mom = malloc((size_t)n * 2 * e * plane * sizeof *mom);
    if (!mom) return ldm_fail(LDM_ERR_NO_MEMORY, "out of memory");
    ldm_exec ex;
    ctx_begin(ctx, &ex);
    ldm_status st = vae_encode_moments(&ex, m, n, h, w, image, mom);
    if (!st) {
        /* Posterior mean times the scale factor (the deterministic encoding). */
        for (int b = 0; b < n; b++)
            for (size_t i = 0; i < (size_t)e * plane; i++)
                latent[(size_t)b * e * plane + i] = m->scale_factor * mom[(size_t)b * 2 * e * plane + i];
    }
    free(mom);
    return st;
}

LDM_API ldm_status ldm_autoencoder_decode(ldm_context *ctx, ldm_autoencoder *ae, int32_t n, int32_t h, int32_t w,
                                          const float *latent, float *image) {
    CHECK_ARG(ctx && ae && latent && image, "ldm_autoencoder_decode: NULL argument");
    const ldm_model *m = ae->m;
    CHECK_ARG(n >= 1 && n <= 64 && h >= 1 && w >= 1 && h <= 1024 && w <= 1024, "ldm_autoencoder_decode: bad size");
    size_t count = (size_t)n * m->vae.embed_dim * h * w;
    float *z = malloc(count * sizeof *z);
    if (!z) return ldm_fail(LDM_ERR_NO_MEMORY, "out of memory");
    for (size_t i = 0; i < count; i++) z[i] = latent[i] / m->scale_factor;
    ldm_exec ex;
    ctx_begin(ctx, &ex);
    ldm_status st = vae_decode(&ex, m, n, h, w, z, image);
    free(z);
    return st;
}

LDM_API ldm_status ldm_sampler_create(const char *name, ldm_sampler **out) {
    CHECK_ARG(out, "ldm_sampler_create: out is NULL");
    *out = NULL;
    CHECK_ARG(name, "ldm_sampler_create: name is NULL");
    const ldm_sampler_def *d = sampler_find(name);
    if (!d) return ldm_fail(LDM_ERR_UNSUPPORTED, "unknown sampler '%s'", name);
    ldm_sampler *s = calloc(1, sizeof *s);
    if (!s) return ldm_fail(LDM_ERR_NO_MEMORY, "out of memory");
    s->def = d;
    *out = s;
    return LDM_OK;
}

LDM_API void ldm_sampler_destroy(ldm_sampler *s) { free(s); }
LDM_API const char *ldm_sampler_name(const ldm_sampler *s) { return s ? s->def->name : NULL; }

/* ---- images ---- */

LDM_API void ldm_image_destroy(ldm_image *img) {
    if (!img) return;
    free(img->data);
    free(img);
}
LDM_API int32_t ldm_image_width(const ldm_image *img) { return img ? img->width : 0; }
LDM_API int32_t ldm_image_height(const ldm_image *img) { return img ? img->height : 0; }
LDM_API int32_t ldm_image_channels(const ldm_image *img) { return img ? 3 : 0; }
LDM_API size_t ldm_image_stride(const ldm_image *img) { return img ? (size_t)img->width * 3 : 0; }
LDM_API const uint8_t *ldm_image_data(const ldm_image *img) { return img ? img->data : NULL; }
LDM_API uint64_t ldm_image_seed(const ldm_image *img) { return img ? img->seed : 0; }

LDM_API ldm_status ldm_image_copy(const ldm_image *img, uint8_t *dst, size_t dst_stride) {
    CHECK_ARG(img && dst, "ldm_image_copy: NULL argument");
    size_t row = (size_t)img->width * 3;
    CHECK_ARG(dst_stride >= row, "ldm_image_copy: stride %zu is less than a row (%zu bytes)", dst_stride, row);
    for (int y = 0; y < img->height; y++) memcpy(dst + (size_t)y * dst_stride, img->data + (size_t)y * row, row);
    return LDM_OK;
}

/* [1,3,H,W] in [-1,1] -> interleaved RGB8: 255 * clamp((x + 1) / 2, 0, 1), rounded. */
static ldm_image *image_from_float(const float *f, int32_t w, int32_t h, uint64_t seed) {
    ldm_image *img = calloc(1, sizeof *img);
    if (!img) return NULL;
    img->data = malloc((size_t)w * h * 3);
    if (!img->data) {
        free(img);
        return NULL;
    }
    img->width = w;
    img->height = h;
    img->seed = seed;
    size_t plane = (size_t)w * h;
    for (size_t i = 0; i < plane; i++) {
        for (int c = 0; c < 3; c++) {
            float v = (f[c * plane + i] + 1.0f) * 0.5f;
            v = v < 0.0f ? 0.0f : v > 1.0f ? 1.0f : v;
            img->data[i * 3 + c] = (uint8_t)lrintf(v * 255.0f);
        }
    }
    return img;
}

LDM_API void ldm_txt2img_params_init(ldm_txt2img_params *p) {
    if (!p) return;
    memset(p, 0, sizeof *p);
    p->struct_size = sizeof *p;
    p->width = 512;
    p->height = 512;
    p->steps = 20;
    p->cfg_scale = 7.5f;
    p->sampler = "euler";
    p->scheduler = "discrete";
    p->seed = 42;
    p->batch_count = 1;
    p->rng = LDM_RNG_CUDA;
}

/* A seed for random_seed: time and address entropy through splitmix64 (no global state). */
static uint64_t random_seed(const void *salt) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    uint64_t z = (uint64_t)ts.tv_sec * 1000000007u ^ (uint64_t)ts.tv_nsec ^ (uint64_t)(uintptr_t)salt;
    z += 0x9e3779b97f4a7c15u;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
    return z ^ (z >> 31);
}

LDM_API ldm_status ldm_txt2img(ldm_context *ctx, ldm_model *model, const ldm_txt2img_params *params,
                               ldm_image **images) {
    CHECK_ARG(ctx && model && params && images, "ldm_txt2img: ctx, model, params and images are required");
    ldm_clear_error();
    ldm_txt2img_params p;
    ldm_txt2img_params_init(&p);
    ldm_status st = copy_params(&p, sizeof p, params, sizeof p, "ldm_txt2img_params");
    if (st) return st;
    CHECK_ARG(p.prompt, "ldm_txt2img: prompt is NULL");
    CHECK_ARG(p.batch_count >= 1 && p.batch_count <= 1024, "ldm_txt2img: batch_count %d out of range", p.batch_count);
    for (int i = 0; i < p.batch_count; i++) images[i] = NULL;
    const ldm_sampler_def *sampler = sampler_find(p.sampler ? p.sampler : "euler");
    if (!sampler) return ldm_fail(LDM_ERR_UNSUPPORTED, "unknown sampler '%s'", p.sampler);
    ldm_scheduler_kind sched;
    if (!p.scheduler || strcmp(p.scheduler, "discrete") == 0 || strcmp(p.scheduler, "normal") == 0) sched = LDM_SCHED_DISCRETE;
    else if (strcmp(p.scheduler, "karras") == 0) sched = LDM_SCHED_KARRAS;
    else return ldm_fail(LDM_ERR_UNSUPPORTED, "unknown scheduler '%s'", p.scheduler);
    CHECK_ARG(p.rng == LDM_RNG_CUDA || p.rng == LDM_RNG_CPU, "ldm_txt2img: unknown rng %d", p.rng);
    CHECK_ARG(p.clip_skip >= 0, "ldm_txt2img: clip_skip must be >= 0");
    CHECK_ARG(p.eta >= 0.0f && p.eta <= 10.0f, "ldm_txt2img: eta out of range");
    uint64_t seed0 = p.random_seed ? random_seed(&p) : p.seed;
    size_t pixels = (size_t)3 * (p.width > 0 ? p.width : 0) * (p.height > 0 ? p.height : 0);
    CHECK_ARG(pixels > 0 && p.width <= 8192 && p.height <= 8192, "ldm_txt2img: width and height must be in 1..8192");
    float *image = malloc(pixels * sizeof *image);
    if (!image) return ldm_fail(LDM_ERR_NO_MEMORY, "out of memory for a %dx%d image", p.width, p.height);
    for (int i = 0; i < p.batch_count && !st; i++) {
        ldm_rng rng;
        uint64_t seed = seed0 + (uint64_t)i; /* item i uses seed + i with its own generator */
        ldm_rng_init(&rng, p.rng == LDM_RNG_CPU ? LDM_RNG_KIND_TORCH_CPU : LDM_RNG_KIND_PHILOX, seed);
        ldm_gen g = {.prompt = p.prompt, .negative_prompt = p.negative_prompt, .width = p.width, .height = p.height,
                     .steps = p.steps, .cfg_scale = p.cfg_scale, .sampler = sampler, .scheduler = sched, .eta = p.eta,
                     .clip_skip = p.clip_skip, .rng = &rng, .progress = p.progress, .user_data = p.user_data,
                     .image = image};
        st = pipeline_txt2img(ctx, model, &g);
        if (!st) {
            images[i] = image_from_float(image, p.width, p.height, seed);
            if (!images[i]) st = ldm_fail(LDM_ERR_NO_MEMORY, "out of memory");
        }
    }
    free(image);
    if (st) {
        for (int i = 0; i < p.batch_count; i++) {
            ldm_image_destroy(images[i]);
            images[i] = NULL;
        }
    }
    return st;
}
