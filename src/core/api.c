/* The public entry points that are not a layer of their own: model loading, the component
 * handles, images and ldm_txt2img. Argument checking happens here; the work is done below. */
#include "context.h"
#include "memory.h"
#include "model.h"
#include "nets.h"
#include "pipeline.h"
#include "upscale.h"
#include "vae_tiling.h"

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
    if (!st && (*out)->prediction == LDM_PREDICTION_AUTO) {
        /* SD 2.x without a config or --prediction: probe the UNet as A1111 does (model.c). */
        ldm_exec ex;
        ctx_begin(ctx, &ex);
        st = model_probe_prediction(&ex, *out);
        if (!st) st = ex.status;
        if (st) {
            ldm_model_destroy(*out);
            *out = NULL;
            return st;
        }
        ctx_log(ctx, LDM_LOG_INFO, "prediction type: %s (probe: mean(out - x) = %.3f)",
                (*out)->prediction == LDM_PREDICTION_V ? "v" : "eps", (*out)->probe_value);
    }
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
    CHECK_ARG(ctx && den && x && timesteps && out, "ldm_denoiser_eval: NULL argument");
    const ldm_model *m = den->m;
    bool cross = m->unet.context_dim > 0; /* ldm-sr's UNet has no cross-attention: no context */
    CHECK_ARG(context || !cross, "ldm_denoiser_eval: context is NULL");
    CHECK_ARG(n >= 1 && n <= 64, "ldm_denoiser_eval: batch %d out of range", n);
    CHECK_ARG(c == m->unet.in_channels, "ldm_denoiser_eval: %d channels given, the UNet takes %d", c, m->unet.in_channels);
    CHECK_ARG(h >= 1 && w >= 1 && h <= 1024 && w <= 1024, "ldm_denoiser_eval: latent size %dx%d out of range", w, h);
    CHECK_ARG(!cross || (tokens >= 1 && tokens <= 4096), "ldm_denoiser_eval: tokens %d out of range", tokens);
    CHECK_ARG(m->unet.num_classes == 0, "ldm_denoiser_eval: this UNet takes class labels (the x4 upscaler's noise "
                                        "level); use ldm_upscale");
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
        /* Posterior mean times the scale factor (the deterministic encoding); a VQ first stage
         * gives h = quant_conv(encoder(x)) itself (VQModelInterface.encode). */
        int32_t per = m->vae.kind == FIRST_STAGE_VQ ? 1 : 2;
        for (int b = 0; b < n; b++)
            for (size_t i = 0; i < (size_t)e * plane; i++)
                latent[(size_t)b * e * plane + i] = m->scale_factor * mom[(size_t)b * per * e * plane + i];
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
    /* VQ (decode_first_stage): the nearest codebook entries first. */
    ldm_status st = m->vae.kind == FIRST_STAGE_VQ ? vq_quantize(m, n, h, w, z, z, NULL) : LDM_OK;
    if (!st) st = vae_decode(&ex, m, n, h, w, z, image);
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
    p->width = 0; /* the model's own size (ldm_model_info.image_size) */
    p->height = 0;
    p->steps = 20;
    p->cfg_scale = 7.5f;
    p->sampler = "euler";
    p->scheduler = "discrete";
    p->seed = 42;
    p->batch_count = 1;
    p->rng = LDM_RNG_CUDA;
    p->preview_interval = 1;
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

/* Copies a versioned params struct whose later versions appended fields: `sizes` lists the
 * struct_size of every released layout, oldest first. A size between two layouts would cut a
 * field in half and is refused; a larger one (a newer caller) is copied up to what we know. */
static ldm_status copy_versioned(void *dst, size_t dst_size, const void *src, const size_t *sizes, int n_sizes,
                                 const char *what) {
    size_t given = *(const size_t *)src;
    bool known = given >= dst_size;
    for (int i = 0; i < n_sizes; i++) known |= given == sizes[i];
    if (!known) return ldm_fail(LDM_ERR_INVALID_ARG, "%s.struct_size %zu is not a size of this struct", what, given);
    memcpy(dst, src, LDM_MIN(given, dst_size));
    *(size_t *)dst = dst_size;
    return LDM_OK;
}

/* What txt2img and img2img share, after their params are copied and checked. */
typedef struct {
    const char *prompt, *negative_prompt;
    int32_t width, height, steps;
    float cfg_scale;
    const char *sampler, *scheduler;
    uint64_t seed;
    int32_t random_seed, batch_count, clip_skip, rng;
    float eta;
    ldm_progress_fn progress;
    void *user_data;
    ldm_progress_ex_fn progress_ex;
    ldm_preview_fn preview;
    int32_t preview_interval;
    const float *init_image; /* img2img: [1, 3, height, width] in [-1, 1] */
    double strength;
    const float *mask; /* inpaint: [1, 1, height, width] in [0, 1], 1 = repaint */
    float mask_blur;
    int32_t fill, composite;
    uint64_t max_memory; /* 0 = no limit */
    int32_t vae_tile;    /* 0 = automatic, -1 = never, > 0 = latent tile side */
} gen_request;

static ldm_status generate(ldm_context *ctx, ldm_model *model, const gen_request *p, const char *fn,
                           ldm_image **images) {
    double t_start = pipeline_now();
    CHECK_ARG(p->prompt, "%s: prompt is NULL", fn);
    if (model->family == LDM_FAMILY_LDM_SR || model->family == LDM_FAMILY_X4_UPSCALER)
        return ldm_fail(LDM_ERR_UNSUPPORTED, "%s: %s models upscale images (use ldm_upscale)", fn, model->family_name);
    CHECK_ARG(p->batch_count >= 1 && p->batch_count <= 1024, "%s: batch_count %d out of range", fn, p->batch_count);
    for (int i = 0; i < p->batch_count; i++) images[i] = NULL;
    const ldm_sampler_def *sampler = sampler_find(p->sampler ? p->sampler : "euler");
    if (!sampler) return ldm_fail(LDM_ERR_UNSUPPORTED, "unknown sampler '%s'", p->sampler);
    ldm_scheduler_kind sched = LDM_SCHED_DISCRETE;
    if (p->scheduler && !schedule_find(p->scheduler, &sched))
        return ldm_fail(LDM_ERR_UNSUPPORTED, "unknown scheduler '%s'", p->scheduler);
    CHECK_ARG(p->rng == LDM_RNG_CUDA || p->rng == LDM_RNG_CPU, "%s: unknown rng %d", fn, p->rng);
    CHECK_ARG(p->clip_skip >= 0, "%s: clip_skip must be >= 0", fn);
    CHECK_ARG(p->eta >= 0.0f && p->eta <= 10.0f, "%s: eta out of range", fn);
    CHECK_ARG(p->preview_interval >= 0, "%s: preview_interval must be >= 0", fn);
    uint64_t seed0 = p->random_seed ? random_seed(p) : p->seed;
    size_t pixels = (size_t)3 * (p->width > 0 ? p->width : 0) * (p->height > 0 ? p->height : 0);
    CHECK_ARG(pixels > 0 && p->width <= 8192 && p->height <= 8192, "%s: width and height must be in 1..8192", fn);
    /* the memory plan: the VAE tile, and the max_memory check before any work */
    const int32_t min_tile = 2 * vae_tile_halo(model) + 4;
    CHECK_ARG(p->vae_tile >= -1 && (p->vae_tile <= 0 || p->vae_tile >= min_tile),
              "%s: vae_tile must be -1, 0 or at least %d (got %d)", fn, min_tile, p->vae_tile);
    mem_plan plan;
    ldm_status pst = mem_plan_txt2img(model, ctx->n_threads, p->width, p->height, p->cfg_scale == 1.0f ? 1 : 2,
                                      p->vae_tile, p->max_memory, &plan);
    if (pst) return pst;
    if (!plan.fits)
        return ldm_fail(LDM_ERR_NO_MEMORY,
                        "%s: a %dx%d image needs about %llu MiB at its peak (UNet stage %llu MiB, decoder %llu MiB), "
                        "above max_memory %llu MiB",
                        fn, p->width, p->height, (unsigned long long)(plan.total >> 20),
                        (unsigned long long)((plan.fixed + plan.unet) >> 20),
                        (unsigned long long)((plan.fixed + plan.decode) >> 20), (unsigned long long)(p->max_memory >> 20));
    float *image = malloc(pixels * sizeof *image);
    if (!image) return ldm_fail(LDM_ERR_NO_MEMORY, "out of memory for a %dx%d image", p->width, p->height);
    ldm_status st = LDM_OK;
    for (int i = 0; i < p->batch_count && !st; i++) {
        ldm_rng rng;
        uint64_t seed = seed0 + (uint64_t)i; /* item i uses seed + i with its own generator */
        ldm_rng_init(&rng, p->rng == LDM_RNG_CPU ? LDM_RNG_KIND_TORCH_CPU : LDM_RNG_KIND_PHILOX, seed);
        ldm_gen g = {.prompt = p->prompt, .negative_prompt = p->negative_prompt, .width = p->width,
                     .height = p->height, .steps = p->steps, .cfg_scale = p->cfg_scale, .sampler = sampler,
                     .scheduler = sched, .eta = p->eta, .clip_skip = p->clip_skip, .rng = &rng,
                     .progress = p->progress, .user_data = p->user_data, .image = image,
                     .init_image = p->init_image, .strength = p->strength, .progress_ex = p->progress_ex,
                     .preview = p->preview, .preview_interval = p->preview_interval, .batch_index = i,
                     .batch_count = p->batch_count, .t_start = t_start, .mask = p->mask,
                     .mask_blur = p->mask_blur, .fill = p->fill, .composite = p->composite != 0,
                     .vae_tile = plan.vae_tile};
        st = p->mask         ? pipeline_inpaint(ctx, model, &g)
             : p->init_image ? pipeline_img2img(ctx, model, &g)
                             : pipeline_txt2img(ctx, model, &g);
        if (!st) {
            images[i] = image_from_float(image, p->width, p->height, seed);
            if (!images[i]) st = ldm_fail(LDM_ERR_NO_MEMORY, "out of memory");
        }
    }
    free(image);
    if (st) {
        for (int i = 0; i < p->batch_count; i++) {
            ldm_image_destroy(images[i]);
            images[i] = NULL;
        }
    }
    return st;
}

/* The caller's ldm_txt2img_params in the current layout, defaults filled in. Layout 1 ended at
 * user_data; progress_ex, preview and preview_interval came after (layout 2), then max_memory and
 * vae_tile (layout 3). width/height 0 mean the model's own size (model_image_size). */
static ldm_status read_txt2img_params(const ldm_model *model, const ldm_txt2img_params *params,
                                      ldm_txt2img_params *p) {
    ldm_txt2img_params_init(p);
    static const size_t sizes[] = {offsetof(ldm_txt2img_params, progress_ex), offsetof(ldm_txt2img_params, max_memory)};
    ldm_status st = copy_versioned(p, sizeof *p, params, sizes, 2, "ldm_txt2img_params");
    if (st) return st;
    if (p->width == 0) p->width = model_image_size(model);
    if (p->height == 0) p->height = model_image_size(model);
    return LDM_OK;
}

LDM_API ldm_status ldm_txt2img(ldm_context *ctx, ldm_model *model, const ldm_txt2img_params *params,
                               ldm_image **images) {
    CHECK_ARG(ctx && model && params && images, "ldm_txt2img: ctx, model, params and images are required");
    ldm_clear_error();
    ldm_txt2img_params p;
    ldm_status st = read_txt2img_params(model, params, &p);
    if (st) return st;
    gen_request r = {.prompt = p.prompt, .negative_prompt = p.negative_prompt, .width = p.width, .height = p.height,
                     .steps = p.steps, .cfg_scale = p.cfg_scale, .sampler = p.sampler, .scheduler = p.scheduler,
                     .seed = p.seed, .random_seed = p.random_seed, .batch_count = p.batch_count,
                     .clip_skip = p.clip_skip, .rng = p.rng, .eta = p.eta, .progress = p.progress,
                     .user_data = p.user_data, .progress_ex = p.progress_ex, .preview = p.preview,
                     .preview_interval = p.preview_interval, .max_memory = p.max_memory, .vae_tile = p.vae_tile};
    return generate(ctx, model, &r, "ldm_txt2img", images);
}

LDM_API ldm_status ldm_memory_estimate(ldm_context *ctx, const ldm_model *model, const ldm_txt2img_params *params,
                                       uint64_t *bytes, int32_t *vae_tile) {
    CHECK_ARG(ctx && model && params && bytes, "ldm_memory_estimate: ctx, model, params and bytes are required");
    ldm_clear_error();
    ldm_txt2img_params p;
    ldm_status st = read_txt2img_params(model, params, &p);
    if (st) return st;
    CHECK_ARG(p.width > 0 && p.height > 0 && p.width <= 8192 && p.height <= 8192,
              "ldm_memory_estimate: width and height must be in 1..8192");
    const int32_t min_tile = 2 * vae_tile_halo(model) + 4;
    CHECK_ARG(p.vae_tile >= -1 && (p.vae_tile <= 0 || p.vae_tile >= min_tile),
              "ldm_memory_estimate: vae_tile must be -1, 0 or at least %d (got %d)", min_tile, p.vae_tile);
    mem_plan plan;
    if ((st = mem_plan_txt2img(model, ctx->n_threads, p.width, p.height, p.cfg_scale == 1.0f ? 1 : 2, p.vae_tile,
                               p.max_memory, &plan)))
        return st;
    *bytes = plan.total;
    if (vae_tile) *vae_tile = plan.vae_tile;
    return LDM_OK;
}

LDM_API void ldm_img2img_params_init(ldm_img2img_params *p) {
    if (!p) return;
    memset(p, 0, sizeof *p);
    p->struct_size = sizeof *p;
    p->strength = 0.75; /* CompVis img2img.py, A1111 and stable-diffusion.cpp default */
    p->steps = 20;
    p->cfg_scale = 7.5f;
    p->sampler = "euler";
    p->scheduler = "discrete";
    p->seed = 42;
    p->batch_count = 1;
    p->rng = LDM_RNG_CUDA;
    p->preview_interval = 1;
}

LDM_API ldm_status ldm_img2img(ldm_context *ctx, ldm_model *model, const ldm_img2img_params *params,
                               ldm_image **images) {
    CHECK_ARG(ctx && model && params && images, "ldm_img2img: ctx, model, params and images are required");
    ldm_clear_error();
    ldm_img2img_params p;
    ldm_img2img_params_init(&p);
    ldm_status st = copy_versioned(&p, sizeof p, params, NULL, 0, "ldm_img2img_params");
    if (st) return st;
    CHECK_ARG(p.batch_count >= 1 && p.batch_count <= 1024, "ldm_img2img: batch_count %d out of range", p.batch_count);
    for (int i = 0; i < p.batch_count; i++) images[i] = NULL;
    CHECK_ARG(p.init_image, "ldm_img2img: init_image is NULL");
    int32_t f = model->downscale, W = p.init_width, H = p.init_height;
    CHECK_ARG(W > 0 && H > 0 && W <= 8192 && H <= 8192 && W % f == 0 && H % f == 0,
              "ldm_img2img: init image %dx%d: width and height must be multiples of %d in 1..8192", W, H, f);
    size_t row = (size_t)W * 3, stride = p.init_stride ? p.init_stride : row;
    CHECK_ARG(stride >= row, "ldm_img2img: init_stride %zu is less than a row (%zu bytes)", stride, row);
    CHECK_ARG(p.strength >= 0.0 && p.strength <= 1.0, "ldm_img2img: strength %g is not in 0..1", p.strength);
    size_t plane = (size_t)W * H;
    float *init = malloc(plane * 3 * sizeof *init);
    if (!init) return ldm_fail(LDM_ERR_NO_MEMORY, "out of memory for a %dx%d init image", W, H);
    /* SEEDED_CONTRACT item 4: u8 -> 2 * (u8 / 255) - 1, NCHW. */
    for (int y = 0; y < H; y++) {
        const uint8_t *src = p.init_image + (size_t)y * stride;
        for (int x = 0; x < W; x++)
            for (int c = 0; c < 3; c++) init[c * plane + (size_t)y * W + x] = 2.0f * ((float)src[x * 3 + c] / 255.0f) - 1.0f;
    }
    gen_request r = {.prompt = p.prompt, .negative_prompt = p.negative_prompt, .width = W, .height = H,
                     .steps = p.steps, .cfg_scale = p.cfg_scale, .sampler = p.sampler, .scheduler = p.scheduler,
                     .seed = p.seed, .random_seed = p.random_seed, .batch_count = p.batch_count,
                     .clip_skip = p.clip_skip, .rng = p.rng, .eta = p.eta, .progress = p.progress,
                     .user_data = p.user_data, .progress_ex = p.progress_ex, .preview = p.preview,
                     .preview_interval = p.preview_interval, .init_image = init, .strength = p.strength};
    st = generate(ctx, model, &r, "ldm_img2img", images);
    free(init);
    return st;
}

/* ---- inpainting ---- */

LDM_API void ldm_inpaint_params_init(ldm_inpaint_params *p) {
    if (!p) return;
    memset(p, 0, sizeof *p);
    p->struct_size = sizeof *p;
    p->mask_channels = 1;
    p->mask_blur = 4.0f; /* A1111's default mask blur */
    p->fill = LDM_INPAINT_FILL_ORIGINAL;
    p->composite = 1;
    p->strength = 1.0; /* runwayml inpaint_st.py / diffusers: the whole schedule */
    p->steps = 20;
    p->cfg_scale = 7.5f;
    p->sampler = "euler";
    p->scheduler = "discrete";
    p->seed = 42;
    p->batch_count = 1;
    p->rng = LDM_RNG_CUDA;
    p->preview_interval = 1;
}

LDM_API ldm_status ldm_inpaint(ldm_context *ctx, ldm_model *model, const ldm_inpaint_params *params,
                               ldm_image **images) {
    CHECK_ARG(ctx && model && params && images, "ldm_inpaint: ctx, model, params and images are required");
    ldm_clear_error();
    ldm_inpaint_params p;
    ldm_inpaint_params_init(&p);
    ldm_status st = copy_versioned(&p, sizeof p, params, NULL, 0, "ldm_inpaint_params");
    if (st) return st;
    CHECK_ARG(p.batch_count >= 1 && p.batch_count <= 1024, "ldm_inpaint: batch_count %d out of range", p.batch_count);
    for (int i = 0; i < p.batch_count; i++) images[i] = NULL;
    CHECK_ARG(p.image && p.mask, "ldm_inpaint: image and mask are required");
    int32_t f = model->downscale, W = p.width, H = p.height;
    CHECK_ARG(W > 0 && H > 0 && W <= 8192 && H <= 8192 && W % f == 0 && H % f == 0,
              "ldm_inpaint: image %dx%d: width and height must be multiples of %d in 1..8192", W, H, f);
    CHECK_ARG(p.mask_channels == 1 || p.mask_channels == 3, "ldm_inpaint: mask_channels must be 1 or 3 (got %d)",
              p.mask_channels);
    size_t row = (size_t)W * 3, stride = p.image_stride ? p.image_stride : row;
    size_t mrow = (size_t)W * p.mask_channels, mstride = p.mask_stride ? p.mask_stride : mrow;
    CHECK_ARG(stride >= row, "ldm_inpaint: image_stride %zu is less than a row (%zu bytes)", stride, row);
    CHECK_ARG(mstride >= mrow, "ldm_inpaint: mask_stride %zu is less than a row (%zu bytes)", mstride, mrow);
    CHECK_ARG(p.strength >= 0.0 && p.strength <= 1.0, "ldm_inpaint: strength %g is not in 0..1", p.strength);
    CHECK_ARG(p.mask_blur >= 0.0f && p.mask_blur <= 1024.0f, "ldm_inpaint: mask_blur %g is not in 0..1024",
              (double)p.mask_blur);
    CHECK_ARG(p.fill >= LDM_INPAINT_FILL_ORIGINAL && p.fill <= LDM_INPAINT_FILL_LATENT_NOTHING,
              "ldm_inpaint: unknown fill %d", p.fill);
    size_t plane = (size_t)W * H;
    float *buf = malloc(plane * 4 * sizeof *buf);
    if (!buf) return ldm_fail(LDM_ERR_NO_MEMORY, "out of memory for a %dx%d image", W, H);
    float *image = buf, *mask = buf + 3 * plane;
    /* runwayml inpaint_st.py: image u8 / 127.5 - 1, mask L / 255 (PIL "L" = ITU-R 601-2 luma). */
    for (int y = 0; y < H; y++) {
        const uint8_t *src = p.image + (size_t)y * stride, *msrc = p.mask + (size_t)y * mstride;
        for (int x = 0; x < W; x++) {
            for (int c = 0; c < 3; c++) image[c * plane + (size_t)y * W + x] = (float)src[x * 3 + c] / 127.5f - 1.0f;
            float l = p.mask_channels == 1 ? msrc[x]
                                           : (msrc[x * 3] * 299.0f + msrc[x * 3 + 1] * 587.0f + msrc[x * 3 + 2] * 114.0f) / 1000.0f;
            mask[(size_t)y * W + x] = l / 255.0f;
        }
    }
    gen_request r = {.prompt = p.prompt, .negative_prompt = p.negative_prompt, .width = W, .height = H,
                     .steps = p.steps, .cfg_scale = p.cfg_scale, .sampler = p.sampler, .scheduler = p.scheduler,
                     .seed = p.seed, .random_seed = p.random_seed, .batch_count = p.batch_count,
                     .clip_skip = p.clip_skip, .rng = p.rng, .eta = p.eta, .progress = p.progress,
                     .user_data = p.user_data, .progress_ex = p.progress_ex, .preview = p.preview,
                     .preview_interval = p.preview_interval, .init_image = image, .strength = p.strength,
                     .mask = mask, .mask_blur = p.mask_blur, .fill = p.fill, .composite = p.composite};
    st = generate(ctx, model, &r, "ldm_inpaint", images);
    free(buf);
    return st;
}

LDM_API void ldm_outpaint_params_init(ldm_outpaint_params *p) {
    if (!p) return;
    memset(p, 0, sizeof *p);
    p->struct_size = sizeof *p;
    p->overlap = 8;
    p->multiple = 64;
}

static ldm_image *image_new(int32_t w, int32_t h) {
    ldm_image *img = calloc(1, sizeof *img);
    if (!img) return NULL;
    img->data = malloc((size_t)w * h * 3);
    if (!img->data) {
        free(img);
        return NULL;
    }
    img->width = w;
    img->height = h;
    return img;
}

LDM_API ldm_status ldm_outpaint_prepare(const uint8_t *image, int32_t width, int32_t height, size_t stride,
                                        const ldm_outpaint_params *params, ldm_image **canvas, ldm_image **mask) {
    CHECK_ARG(canvas && mask, "ldm_outpaint_prepare: canvas and mask are required");
    *canvas = NULL;
    *mask = NULL;
    CHECK_ARG(image && params, "ldm_outpaint_prepare: image and params are required");
    ldm_clear_error();
    ldm_outpaint_params p;
    ldm_outpaint_params_init(&p);
    ldm_status st = copy_versioned(&p, sizeof p, params, NULL, 0, "ldm_outpaint_params");
    if (st) return st;
    CHECK_ARG(width > 0 && height > 0 && width <= 8192 && height <= 8192, "ldm_outpaint_prepare: bad image size %dx%d",
              width, height);
    size_t row = (size_t)width * 3, st_row = stride ? stride : row;
    CHECK_ARG(st_row >= row, "ldm_outpaint_prepare: stride %zu is less than a row (%zu bytes)", st_row, row);
    CHECK_ARG(p.left >= 0 && p.top >= 0 && p.right >= 0 && p.bottom >= 0 && p.overlap >= 0 && p.left <= 8192 &&
                  p.top <= 8192 && p.right <= 8192 && p.bottom <= 8192 && p.overlap <= 8192,
              "ldm_outpaint_prepare: padding and overlap must be in 0..8192");
    CHECK_ARG(p.multiple >= 1 && p.multiple <= 1024, "ldm_outpaint_prepare: multiple %d is not in 1..1024", p.multiple);
    /* Grow right/bottom until the canvas fits the model (a multiple of `multiple`). */
    int32_t W = width + p.left + p.right, H = height + p.top + p.bottom;
    W += (p.multiple - W % p.multiple) % p.multiple;
    H += (p.multiple - H % p.multiple) % p.multiple;
    CHECK_ARG(W <= 8192 && H <= 8192, "ldm_outpaint_prepare: the canvas %dx%d exceeds 8192", W, H);
    ldm_image *c = image_new(W, H), *m = image_new(W, H);
    if (!c || !m) {
        ldm_image_destroy(c);
        ldm_image_destroy(m);
        return ldm_fail(LDM_ERR_NO_MEMORY, "out of memory for a %dx%d canvas", W, H);
    }
    /* The original inset by `overlap` on the sides that grew stays unmasked. */
    int32_t kx0 = p.left + (p.left ? p.overlap : 0), ky0 = p.top + (p.top ? p.overlap : 0);
    int32_t kx1 = p.left + width - (W - p.left - width > 0 ? p.overlap : 0);
    int32_t ky1 = p.top + height - (H - p.top - height > 0 ? p.overlap : 0);
    for (int32_t y = 0; y < H; y++) {
        int32_t sy = y - p.top < 0 ? 0 : y - p.top >= height ? height - 1 : y - p.top;
        for (int32_t x = 0; x < W; x++) {
            int32_t sx = x - p.left < 0 ? 0 : x - p.left >= width ? width - 1 : x - p.left;
            memcpy(c->data + ((size_t)y * W + x) * 3, image + (size_t)sy * st_row + (size_t)sx * 3, 3);
            uint8_t v = (x >= kx0 && x < kx1 && y >= ky0 && y < ky1) ? 0 : 255;
            memset(m->data + ((size_t)y * W + x) * 3, v, 3);
        }
    }
    *canvas = c;
    *mask = m;
    return LDM_OK;
}

/* ---- super-resolution (upscale.c) ---- */

LDM_API void ldm_upscale_params_init(ldm_upscale_params *p) {
    if (!p) return;
    memset(p, 0, sizeof *p);
    p->struct_size = sizeof *p;
    p->steps = 50;
    p->cfg_scale = 9.0f;  /* Stability's streamlit script and diffusers' upscale pipeline */
    p->noise_level = 20;  /* both Stability scripts */
    p->sampler = "ddim";
    p->scheduler = "discrete";
    p->eta = -1.0f;
    p->seed = 42;
    p->rng = LDM_RNG_CUDA;
    p->tile_overlap = 32;
}

LDM_API ldm_status ldm_upscale(ldm_context *ctx, ldm_model *model, const ldm_upscale_params *params, ldm_image **out) {
    CHECK_ARG(out, "ldm_upscale: out is NULL");
    *out = NULL;
    CHECK_ARG(ctx && model && params, "ldm_upscale: ctx, model and params are required");
    ldm_clear_error();
    ldm_upscale_params p;
    ldm_upscale_params_init(&p);
    ldm_status st = copy_versioned(&p, sizeof p, params, NULL, 0, "ldm_upscale_params");
    if (st) return st;
    bool x4 = model->family == LDM_FAMILY_X4_UPSCALER;
    if (!x4 && model->family != LDM_FAMILY_LDM_SR)
        return ldm_fail(LDM_ERR_UNSUPPORTED, "ldm_upscale: a %s model does not upscale (ldm-sr and x4-upscaler do)",
                        model->family_name);
    CHECK_ARG(p.image, "ldm_upscale: image is NULL");
    const int32_t W = p.width, H = p.height;
    CHECK_ARG(W >= 1 && H >= 1 && W <= 2048 && H <= 2048, "ldm_upscale: image %dx%d: sides must be in 1..2048", W, H);
    size_t row = (size_t)W * 3, stride = p.stride ? p.stride : row;
    CHECK_ARG(stride >= row, "ldm_upscale: stride %zu is less than a row (%zu bytes)", stride, row);
    CHECK_ARG(p.steps >= 1 && p.steps <= 1000, "ldm_upscale: steps %d is not in 1..1000", p.steps);
    CHECK_ARG(!x4 || (p.noise_level >= 0 && p.noise_level <= model->max_noise_level),
              "ldm_upscale: noise_level %d is not in 0..%d", p.noise_level, model->max_noise_level);
    CHECK_ARG(p.rng == LDM_RNG_CUDA || p.rng == LDM_RNG_CPU, "ldm_upscale: unknown rng %d", p.rng);
    CHECK_ARG(p.eta <= 10.0f, "ldm_upscale: eta out of range");
    const ldm_sampler_def *sampler = sampler_find(p.sampler ? p.sampler : "ddim");
    if (!sampler) return ldm_fail(LDM_ERR_UNSUPPORTED, "unknown sampler '%s'", p.sampler);
    ldm_scheduler_kind sched = LDM_SCHED_DISCRETE;
    if (p.scheduler && !schedule_find(p.scheduler, &sched))
        return ldm_fail(LDM_ERR_UNSUPPORTED, "unknown scheduler '%s'", p.scheduler);
    /* Edge-pad to the UNet's multiple; the result is cropped back to 4x the input. */
    const int32_t down = 1 << (model->unet.n_levels - 1), f = model->downscale;
    const int32_t h = (H + down - 1) / down * down, w = (W + down - 1) / down * down;
    int32_t tile = p.tile;
    CHECK_ARG(tile == -1 || tile == 0 || (tile > 0 && tile % down == 0),
              "ldm_upscale: tile %d must be -1, 0 or a positive multiple of %d", tile, down);
    if (tile == 0) tile = 128; /* ~1 GB of activations for the full-size LDM-SR and x4 UNets */
    if (tile < 0 || (h <= tile && w <= tile)) tile = 0;
    CHECK_ARG(!tile || (p.tile_overlap >= 0 && p.tile_overlap < tile), "ldm_upscale: tile_overlap %d is not in 0..%d",
              p.tile_overlap, tile - 1);
    size_t plane = (size_t)h * w, big = (size_t)h * f * w * f;
    uint8_t *u8 = malloc(3 * plane);
    float *lr = malloc(3 * plane * sizeof *lr), *image = malloc(3 * big * sizeof *image);
    if (!u8 || !lr || !image) {
        free(u8);
        free(lr);
        free(image);
        return ldm_fail(LDM_ERR_NO_MEMORY, "out of memory for a %dx%d upscale", 4 * W, 4 * H);
    }
    for (int32_t y = 0; y < h; y++) {
        const uint8_t *src = p.image + (size_t)(y < H ? y : H - 1) * stride;
        for (int32_t x = 0; x < w; x++)
            for (int c = 0; c < 3; c++) u8[c * plane + (size_t)y * w + x] = src[(size_t)(x < W ? x : W - 1) * 3 + c];
    }
    upscale_lr_from_u8(model, u8, 3 * plane, lr);
    free(u8);
    uint64_t seed = p.random_seed ? random_seed(&p) : p.seed;
    ldm_rng rng;
    ldm_rng_init(&rng, p.rng == LDM_RNG_CPU ? LDM_RNG_KIND_TORCH_CPU : LDM_RNG_KIND_PHILOX, seed);
    ldm_upscale_job j = {.lr = lr, .h = h, .w = w, .prompt = p.prompt, .negative_prompt = p.negative_prompt,
                         .cfg_scale = x4 ? p.cfg_scale : 1.0f, .noise_level = p.noise_level, .steps = p.steps,
                         .sampler = sampler, .scheduler = sched, .eta = p.eta >= 0.0f ? p.eta : (x4 ? 0.0f : 1.0f),
                         .rng = &rng, .tile = tile, .tile_overlap = tile ? p.tile_overlap : 0,
                         .decode_tile = tile, .progress = p.progress, .progress_ex = p.progress_ex,
                         .user_data = p.user_data, .t_start = pipeline_now(), .image = image};
    st = pipeline_upscale(ctx, model, &j);
    if (!st) {
        /* Crop [3, f h, f w] to [3, f H, f W] in place (rows only move towards the start). */
        size_t OW = (size_t)f * W, OH = (size_t)f * H, PW = (size_t)f * w, PH = (size_t)f * h;
        for (int c = 0; c < 3; c++)
            for (size_t y = 0; y < OH; y++) memmove(image + (c * OH + y) * OW, image + (c * PH + y) * PW, OW * sizeof *image);
        *out = image_from_float(image, (int32_t)OW, (int32_t)OH, seed);
        if (!*out) st = ldm_fail(LDM_ERR_NO_MEMORY, "out of memory");
    }
    free(lr);
    free(image);
    return st;
}
