/* ldm-conform: runs one golden case (shared/golden format, CONFORM.md contract) through the
 * library and writes every output tensor of the case under the golden's names.
 *
 *   ldm-conform MODEL.safetensors CASE.safetensors OUT.safetensors [--backend cpu|vulkan|vulkan-fp16]
 * (vulkan-fp16: Vulkan with ldm_context_params.vulkan_fp16_weights, float16 weight storage)
 *
 * It reads only the case's input tensors and __metadata__; sizes come from the input tensors.
 * It links the internal static library (a test tool, not public API). */
#include "core/context.h"
#include "core/json.h"
#include "core/model.h"
#include "core/nets.h"
#include "core/pipeline.h"
#include "core/safetensors.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- output collection ---- */

typedef struct {
    char name[64];
    float *data;
    size_t count, cap, records;
} trace_buf;

typedef struct {
    trace_buf bufs[64];
    int n;
} trace_set;

static trace_buf *trace_get(trace_set *ts, const char *name) {
    for (int i = 0; i < ts->n; i++)
        if (strcmp(ts->bufs[i].name, name) == 0) return &ts->bufs[i];
    if (ts->n == 64) return NULL;
    trace_buf *b = &ts->bufs[ts->n++];
    memset(b, 0, sizeof *b);
    snprintf(b->name, sizeof b->name, "%s", name);
    return b;
}

static void trace_cb(void *user, const char *name, const float *data, size_t count) {
    trace_buf *b = trace_get(user, name);
    if (!b) return;
    if (b->count + count > b->cap) {
        size_t nc = (b->count + count) * 2;
        float *nd = realloc(b->data, nc * sizeof *nd);
        if (!nd) return;
        b->data = nd;
        b->cap = nc;
    }
    memcpy(b->data + b->count, data, count * sizeof *data);
    b->count += count;
    b->records++;
}

static void trace_free(trace_set *ts) {
    for (int i = 0; i < ts->n; i++) free(ts->bufs[i].data);
}

static int die(const char *what) {
    fprintf(stderr, "ldm-conform: error: %s: %s\n", what, ldm_last_error());
    return 1;
}

static ldm_status add_f32(st_writer *w, const char *name, int ndim, const int64_t *shape, const float *data) {
    return st_writer_add(w, name, LDM_DT_F32, ndim, shape, data);
}

static ldm_status add_i64(st_writer *w, const char *name, int ndim, const int64_t *shape, const float *data,
                          size_t n) {
    int64_t *v = malloc((n ? n : 1) * sizeof *v);
    if (!v) return ldm_fail(LDM_ERR_NO_MEMORY, "out of memory");
    for (size_t i = 0; i < n; i++) v[i] = (int64_t)llroundf(data[i]);
    ldm_status st = st_writer_add(w, name, LDM_DT_I64, ndim, shape, v);
    free(v);
    return st;
}

/* Writes a traced tensor with shape [records, per_record_shape...] or, if flat, as given. */
static ldm_status put_trace(st_writer *w, trace_set *ts, const char *name, bool stepped, int ndim,
                            const int64_t *shape, bool as_int) {
    trace_buf *b = trace_get(ts, name);
    if (!b || !b->count) return LDM_OK;
    int64_t full[8];
    int nd = 0;
    if (stepped) full[nd++] = (int64_t)b->records;
    for (int i = 0; i < ndim; i++) full[nd++] = shape[i];
    size_t n = 1;
    for (int i = 0; i < nd; i++) n *= (size_t)full[i];
    if (n != b->count) return ldm_fail(LDM_ERR_INTERNAL, "trace '%s': %zu values, shape wants %zu", name, b->count, n);
    return as_int ? add_i64(w, name, nd, full, b->data, n) : add_f32(w, name, nd, full, b->data);
}

/* ---- case inputs ---- */

typedef struct {
    st_file *f;
    const char *kind;
} case_file;

static const st_tensor *input(case_file *c, const char *name, ldm_status *st) {
    const st_tensor *t = st_find(c->f, name);
    if (!t && !*st) *st = ldm_fail(LDM_ERR_FORMAT, "case '%s' lacks input tensor '%s'", c->kind, name);
    return t;
}

static float *input_f32(case_file *c, const char *name, ldm_status *st) {
    const st_tensor *t = input(c, name, st);
    if (!t) return NULL;
    float *v = NULL;
    ldm_status s = st_read_f32(t, &v);
    if (s && !*st) *st = s;
    return v;
}

static const char *meta_or(case_file *c, const char *key, const char *fallback) {
    const char *v = st_meta(c->f, key);
    return v ? v : fallback;
}

/* ---- kinds ---- */

static ldm_status run_text_encoder(ldm_context *ctx, ldm_model *m, case_file *c, st_writer *w) {
    ldm_status st = LDM_OK;
    const st_tensor *ids_t = input(c, "input_ids", &st);
    if (st) return st;
    if (ids_t->ndim != 2 || ids_t->shape[1] != 77 || ids_t->dtype != LDM_DT_I64)
        return ldm_fail(LDM_ERR_FORMAT, "input_ids must be int64 [N, 77]");
    int32_t n = (int32_t)ids_t->shape[0], W = m->clip.width, L = m->clip.layers;
    int32_t *ids = malloc((size_t)n * 77 * sizeof *ids);
    float *out = malloc((size_t)n * 77 * W * sizeof *out);
    float *hidden = malloc((size_t)(L + 1) * n * 77 * W * sizeof *hidden);
    if (!ids || !out || !hidden) st = ldm_fail(LDM_ERR_NO_MEMORY, "out of memory");
    for (size_t i = 0; !st && i < (size_t)n * 77; i++) {
        int64_t v;
        memcpy(&v, (const char *)ids_t->data + i * 8, 8);
        ids[i] = (int32_t)v;
    }
    ldm_exec ex;
    ctx_begin(ctx, &ex);
    /* clip_skip 1: the last layer + final norm (last_hidden_state) and every hidden state. */
    if (!st) st = clip_text_forward(&ex, m, ids, n, 1, out, hidden);
    if (!st) st = add_f32(w, "last_hidden_state", 3, (int64_t[]){n, 77, W}, out);
    if (!st) st = add_f32(w, "hidden_states", 4, (int64_t[]){L + 1, n, 77, W}, hidden);
    /* OpenCLIP models (SD 2.x): the context is ln_final of the penultimate layer (README 5.1). */
    if (!st && m->clip.kind == CLIP_KIND_OPENCLIP) st = clip_text_forward(&ex, m, ids, n, 2, out, NULL);
    if (!st && m->clip.kind == CLIP_KIND_OPENCLIP) st = add_f32(w, "penultimate_ln", 3, (int64_t[]){n, 77, W}, out);
    free(ids);
    free(out);
    free(hidden);
    return st;
}

static ldm_status run_unet(ldm_context *ctx, ldm_model *m, case_file *c, st_writer *w) {
    ldm_status st = LDM_OK;
    const st_tensor *xt = input(c, "x", &st), *tt = input(c, "timesteps", &st), *ct = input(c, "context", &st);
    if (st) return st;
    if (xt->ndim != 4 || ct->ndim != 3 || tt->ndim != 1 || tt->shape[0] != xt->shape[0] || ct->shape[0] != xt->shape[0])
        return ldm_fail(LDM_ERR_FORMAT, "unet case: inconsistent x/timesteps/context shapes");
    float *x = input_f32(c, "x", &st), *t = input_f32(c, "timesteps", &st), *cx = input_f32(c, "context", &st);
    int32_t n = (int32_t)xt->shape[0], h = (int32_t)xt->shape[2], wd = (int32_t)xt->shape[3];
    float *out = malloc((size_t)n * m->unet.out_channels * h * wd * sizeof *out);
    if (!st && !out) st = ldm_fail(LDM_ERR_NO_MEMORY, "out of memory");
    /* Inpainting (C): unet_input = cat([x, c_concat], 1), the order LatentInpaintDiffusion uses. */
    const st_tensor *cct = st_find(c->f, "c_concat");
    int64_t xc = xt->shape[1], cc = cct ? cct->shape[1] : 0;
    if (!st && cct && (cct->ndim != 4 || cct->shape[0] != n || cct->shape[2] != h || cct->shape[3] != wd))
        st = ldm_fail(LDM_ERR_FORMAT, "c_concat must be [%d, C, %d, %d]", n, h, wd);
    if (!st && xc + cc != m->unet.in_channels)
        st = ldm_fail(LDM_ERR_FORMAT, "x (+ c_concat) has %lld channels, the UNet takes %d", (long long)(xc + cc),
                      m->unet.in_channels);
    if (!st && cct) {
        float *ccd = input_f32(c, "c_concat", &st);
        float *cat = malloc((size_t)n * (xc + cc) * h * wd * sizeof *cat);
        size_t plane = (size_t)h * wd;
        if (!st && !cat) st = ldm_fail(LDM_ERR_NO_MEMORY, "out of memory");
        for (int b = 0; !st && b < n; b++) {
            memcpy(cat + b * (xc + cc) * plane, x + b * xc * plane, xc * plane * sizeof *cat);
            memcpy(cat + (b * (xc + cc) + xc) * plane, ccd + b * cc * plane, cc * plane * sizeof *cat);
        }
        free(ccd);
        free(x);
        x = cat;
        if (!st) st = add_f32(w, "unet_input", 4, (int64_t[]){n, xc + cc, h, wd}, x);
    }
    ldm_exec ex;
    ctx_begin(ctx, &ex);
    if (!st) st = unet_forward(&ex, m, n, h, wd, x, t, (int32_t)ct->shape[1], cx, out);
    if (!st) st = add_f32(w, "out", 4, (int64_t[]){n, m->unet.out_channels, h, wd}, out);
    free(x);
    free(t);
    free(cx);
    free(out);
    return st;
}

static ldm_status run_vae_encode(ldm_context *ctx, ldm_model *m, case_file *c, st_writer *w, bool taps) {
    ldm_status st = LDM_OK;
    const st_tensor *it = input(c, "image", &st);
    if (st) return st;
    if (it->ndim != 4 || it->shape[1] != 3) return ldm_fail(LDM_ERR_FORMAT, "image must be [N, 3, H, W]");
    int32_t n = (int32_t)it->shape[0], H = (int32_t)it->shape[2], Wd = (int32_t)it->shape[3];
    int32_t f = m->downscale, e = m->vae.embed_dim, h = H / f, wd = Wd / f;
    size_t lat = (size_t)n * e * h * wd;
    float *img = input_f32(c, "image", &st), *noise = taps ? NULL : input_f32(c, "sample_noise", &st);
    float *mom = malloc(lat * 2 * sizeof *mom), *buf = malloc(lat * 5 * sizeof *buf);
    if (!st && (!mom || !buf)) st = ldm_fail(LDM_ERR_NO_MEMORY, "out of memory");
    ldm_exec ex;
    ctx_begin(ctx, &ex);
    if (!st) st = vae_encode_moments(&ex, m, n, H, Wd, img, mom);
    int64_t ms[4] = {n, 2 * e, h, wd}, ls[4] = {n, e, h, wd};
    if (!st) st = add_f32(w, "moments", 4, ms, mom);
    if (!st && !taps) {
        /* DiagonalGaussianDistribution: logvar clamped to [-30, 20], std = exp(0.5 logvar). */
        float *mean = buf, *logvar = buf + lat, *std = buf + 2 * lat, *z = buf + 3 * lat, *scaled = buf + 4 * lat;
        size_t plane = (size_t)e * h * wd;
        for (int b = 0; b < n; b++) {
            for (size_t i = 0; i < plane; i++) {
                size_t o = (size_t)b * plane + i;
                mean[o] = mom[(size_t)b * 2 * plane + i];
                float lv = mom[(size_t)b * 2 * plane + plane + i];
                lv = lv < -30.0f ? -30.0f : lv > 20.0f ? 20.0f : lv;
                logvar[o] = lv;
                std[o] = expf(0.5f * lv);
                z[o] = mean[o] + std[o] * noise[o];
                scaled[o] = m->scale_factor * z[o];
            }
        }
        const char *names[5] = {"mean", "logvar", "std", "z_sample", "latent_scaled"};
        for (int k = 0; k < 5 && !st; k++) st = add_f32(w, names[k], 4, ls, buf + k * lat);
    }
    if (!st && taps) {
        /* decode(mean): the posterior mode through post_quant_conv and the decoder. */
        float *image = malloc((size_t)n * 3 * H * Wd * sizeof *image);
        size_t plane = (size_t)e * h * wd;
        for (int b = 0; b < n; b++) memcpy(buf + (size_t)b * plane, mom + (size_t)b * 2 * plane, plane * sizeof(float));
        if (!image) st = ldm_fail(LDM_ERR_NO_MEMORY, "out of memory");
        ctx_begin(ctx, &ex);
        if (!st) st = vae_decode(&ex, m, n, h, wd, buf, image);
        if (!st) st = add_f32(w, "decoded_from_mean", 4, (int64_t[]){n, 3, H, Wd}, image);
        free(image);
    }
    free(img);
    free(noise);
    free(mom);
    free(buf);
    return st;
}

static ldm_status run_vae_decode(ldm_context *ctx, ldm_model *m, case_file *c, st_writer *w) {
    ldm_status st = LDM_OK;
    const st_tensor *lt = input(c, "latent_scaled", &st);
    if (st) return st;
    if (lt->ndim != 4 || lt->shape[1] != m->vae.embed_dim) return ldm_fail(LDM_ERR_FORMAT, "latent_scaled has a bad shape");
    int32_t n = (int32_t)lt->shape[0], h = (int32_t)lt->shape[2], wd = (int32_t)lt->shape[3], f = m->downscale;
    size_t count = (size_t)n * m->vae.embed_dim * h * wd;
    float *z = input_f32(c, "latent_scaled", &st);
    float *image = malloc((size_t)n * 3 * h * f * wd * f * sizeof *image);
    if (!st && !image) st = ldm_fail(LDM_ERR_NO_MEMORY, "out of memory");
    for (size_t i = 0; !st && i < count; i++) z[i] /= m->scale_factor;
    ldm_exec ex;
    ctx_begin(ctx, &ex);
    if (!st) st = vae_decode(&ex, m, n, h, wd, z, image);
    if (!st) st = add_f32(w, "z", 4, lt->shape, z);
    if (!st) st = add_f32(w, "image", 4, (int64_t[]){n, 3, h * f, wd * f}, image);
    free(z);
    free(image);
    return st;
}

static ldm_status run_txt2img(ldm_context *ctx, ldm_model *m, case_file *c, st_writer *w) {
    ldm_status st = LDM_OK;
    const char *kind = c->kind + strlen("txt2img_");
    char sampler_name[64];
    snprintf(sampler_name, sizeof sampler_name, "%s", kind);
    /* A "_<scheduler>" suffix (txt2img_dpmpp_2m_karras, ..._exponential, ...) picks the schedule. */
    ldm_scheduler_kind sched = LDM_SCHED_DISCRETE;
    for (int sk = 1; sk < LDM_SCHED_COUNT; sk++) {
        const char *sn = schedule_name((ldm_scheduler_kind)sk);
        size_t ln = strlen(sampler_name), ls = strlen(sn);
        if (ln > ls + 1 && sampler_name[ln - ls - 1] == '_' && strcmp(sampler_name + ln - ls, sn) == 0) {
            sampler_name[ln - ls - 1] = '\0';
            sched = (ldm_scheduler_kind)sk;
            break;
        }
    }
    /* txt2img_v_<sampler>: a v-prediction model (the prediction type itself comes from the
     * case's parameterization or the model's json, applied in main()). */
    if (strncmp(sampler_name, "v_", 2) == 0) memmove(sampler_name, sampler_name + 2, strlen(sampler_name + 2) + 1);
    const ldm_sampler_def *def = sampler_find(sampler_name);
    if (!def) return ldm_fail(LDM_ERR_UNSUPPORTED, "sampler '%s' is not implemented", sampler_name);
    const st_tensor *xt = input(c, "x_T", &st);
    if (st) return st;
    if (xt->ndim != 4 || xt->shape[0] != 1 || xt->shape[1] != m->latent_channels)
        return ldm_fail(LDM_ERR_FORMAT, "x_T must be [1, %d, h, w]", m->latent_channels);
    float *x_T = input_f32(c, "x_T", &st);
    const st_tensor *nt = st_find(c->f, "noises");
    float *noises = NULL;
    if (nt && !st) st = st_read_f32(nt, &noises);
    int32_t h = (int32_t)xt->shape[2], wd = (int32_t)xt->shape[3], f = m->downscale;
    size_t lat = (size_t)m->latent_channels * h * wd;
    float eta = strcmp(sampler_name, "euler_ancestral") == 0 ? 1.0f : 0.0f;
    if (st_meta(c->f, "eta")) eta = strtof(st_meta(c->f, "eta"), NULL);
    trace_set ts = {0};
    ldm_gen g = {.prompt = meta_or(c, "prompt", ""), .negative_prompt = meta_or(c, "negative_prompt", ""),
                 .width = wd * f, .height = h * f, .steps = atoi(meta_or(c, "steps", "0")),
                 .cfg_scale = strtof(meta_or(c, "guidance_scale", "1"), NULL), .sampler = def, .scheduler = sched,
                 .eta = eta, .x_T = x_T, .noises = noises,
                 .n_noises = noises ? (int32_t)(st_numel(nt) / lat) : 0, .trace = trace_cb, .trace_user = &ts};
    float *latent = malloc(lat * sizeof *latent), *image = malloc((size_t)3 * h * f * wd * f * sizeof *image);
    g.latent_final = latent;
    g.image = image;
    if (!st && (!latent || !image)) st = ldm_fail(LDM_ERR_NO_MEMORY, "out of memory");
    if (!st) st = pipeline_txt2img(ctx, m, &g);
    int64_t ls[4] = {1, m->latent_channels, h, wd};
    int64_t ctxs[3] = {1, 77, m->unet.context_dim}, ids[2] = {1, 77}, b2[4] = {2, m->latent_channels, h, wd};
    int batch = g.cfg_scale == 1.0f ? 1 : 2;
    b2[0] = batch;
    if (!st) st = add_f32(w, "latent_final", 4, ls, latent);
    if (!st) st = add_f32(w, "image", 4, (int64_t[]){1, 3, h * f, wd * f}, image);
    if (!st) st = put_trace(w, &ts, "x_steps", true, 4, ls, false);
    if (!st) st = put_trace(w, &ts, "pred_x0_steps", true, 4, ls, false);
    if (!st) st = put_trace(w, &ts, "denoised_steps", true, 4, ls, false);
    if (!st) st = put_trace(w, &ts, "x_init", false, 4, ls, false);
    if (!st) st = put_trace(w, &ts, "unet_in_x", true, 4, b2, false);
    if (!st) st = put_trace(w, &ts, "unet_out", true, 4, b2, false);
    if (!st) st = put_trace(w, &ts, "unet_in_t", true, 1, (int64_t[]){batch}, false);
    if (!st) st = put_trace(w, &ts, "context_cond", false, 3, ctxs, false);
    if (!st) st = put_trace(w, &ts, "context_uncond", false, 3, ctxs, false);
    if (!st) st = put_trace(w, &ts, "ids_cond", false, 2, ids, true);
    if (!st) st = put_trace(w, &ts, "ids_uncond", false, 2, ids, true);
    if (!st) st = put_trace(w, &ts, "lms_coeffs", true, 1, (int64_t[]){4}, false);
    trace_buf *tb;
    if (!st && (tb = trace_get(&ts, "sigmas")) && tb->count)
        st = put_trace(w, &ts, "sigmas", false, 1, (int64_t[]){(int64_t)tb->count}, false);
    if (!st && (tb = trace_get(&ts, "ddim_timesteps")) && tb->count) {
        int64_t kk[1] = {(int64_t)tb->count};
        st = put_trace(w, &ts, "ddim_timesteps", false, 1, kk, true);
        if (!st) st = put_trace(w, &ts, "ddim_alphas", false, 1, kk, false);
        if (!st) st = put_trace(w, &ts, "ddim_alphas_prev", false, 1, kk, false);
        if (!st) st = put_trace(w, &ts, "ddim_sigmas", false, 1, kk, false);
    }
    trace_free(&ts);
    free(x_T);
    free(noises);
    free(latent);
    free(image);
    return st;
}

/* img2img_<sampler> (README 5.5): init_image -> posterior sample with posterior_noise ->
 * init_latent; encode_noise is draw 0 (the noise added to the init latent). */
static ldm_status run_img2img(ldm_context *ctx, ldm_model *m, case_file *c, st_writer *w) {
    ldm_status st = LDM_OK;
    const char *sampler_name = c->kind + strlen("img2img_");
    const ldm_sampler_def *def = sampler_find(sampler_name);
    if (!def) return ldm_fail(LDM_ERR_UNSUPPORTED, "sampler '%s' is not implemented", sampler_name);
    const st_tensor *it = input(c, "init_image", &st);
    if (st) return st;
    if (it->ndim != 4 || it->shape[0] != 1 || it->shape[1] != 3) return ldm_fail(LDM_ERR_FORMAT, "init_image must be [1, 3, H, W]");
    int32_t H = (int32_t)it->shape[2], Wd = (int32_t)it->shape[3], f = m->downscale, h = H / f, wd = Wd / f;
    size_t lat = (size_t)m->latent_channels * h * wd;
    float *init = input_f32(c, "init_image", &st), *pnoise = input_f32(c, "posterior_noise", &st);
    float *enoise = input_f32(c, "encode_noise", &st);
    const st_tensor *pt = st_find(c->f, "posterior_noise"), *et = st_find(c->f, "encode_noise");
    if (!st && (st_numel(pt) != lat || st_numel(et) != lat))
        st = ldm_fail(LDM_ERR_FORMAT, "posterior_noise and encode_noise must be [1, %d, %d, %d]", m->latent_channels, h, wd);
    const st_tensor *nt = st_find(c->f, "noises");
    float *noises = NULL;
    if (nt && !st) st = st_read_f32(nt, &noises);
    float eta = strcmp(def->name, "euler_ancestral") == 0 ? 1.0f : 0.0f;
    if (st_meta(c->f, "eta")) eta = strtof(st_meta(c->f, "eta"), NULL);
    trace_set ts = {0};
    ldm_gen g = {.prompt = meta_or(c, "prompt", ""), .negative_prompt = meta_or(c, "negative_prompt", ""),
                 .width = Wd, .height = H, .steps = atoi(meta_or(c, "steps", "0")),
                 .cfg_scale = strtof(meta_or(c, "guidance_scale", "1"), NULL), .sampler = def,
                 .scheduler = LDM_SCHED_DISCRETE, .eta = eta, .x_T = enoise, .noises = noises,
                 .n_noises = noises ? (int32_t)(st_numel(nt) / lat) : 0, .trace = trace_cb, .trace_user = &ts,
                 .init_image = init, .strength = strtod(meta_or(c, "strength", "0.75"), NULL),
                 .posterior_noise = pnoise};
    float *latent = malloc(lat * sizeof *latent), *image = malloc((size_t)3 * H * Wd * sizeof *image);
    g.latent_final = latent;
    g.image = image;
    if (!st && (!latent || !image)) st = ldm_fail(LDM_ERR_NO_MEMORY, "out of memory");
    if (!st) st = pipeline_img2img(ctx, m, &g);
    int64_t ls[4] = {1, m->latent_channels, h, wd};
    int batch = g.cfg_scale == 1.0f ? 1 : 2;
    int64_t ctxs[3] = {1, 77, m->unet.context_dim}, ids[2] = {1, 77}, b2[4] = {batch, m->latent_channels, h, wd};
    if (!st) st = add_f32(w, "latent_final", 4, ls, latent);
    if (!st) st = add_f32(w, "image", 4, (int64_t[]){1, 3, H, Wd}, image);
    const char *lat_names[] = {"posterior_mean", "posterior_std", "init_latent", "z_enc", "x_init"};
    for (int i = 0; i < 5 && !st; i++) st = put_trace(w, &ts, lat_names[i], false, 4, ls, false);
    if (!st) st = put_trace(w, &ts, "t_enc", false, 1, (int64_t[]){1}, true);
    if (!st) st = put_trace(w, &ts, "x_steps", true, 4, ls, false);
    if (!st) st = put_trace(w, &ts, "pred_x0_steps", true, 4, ls, false);
    if (!st) st = put_trace(w, &ts, "denoised_steps", true, 4, ls, false);
    if (!st) st = put_trace(w, &ts, "unet_in_x", true, 4, b2, false);
    if (!st) st = put_trace(w, &ts, "unet_out", true, 4, b2, false);
    if (!st) st = put_trace(w, &ts, "unet_in_t", true, 1, (int64_t[]){batch}, false);
    if (!st) st = put_trace(w, &ts, "context_cond", false, 3, ctxs, false);
    if (!st) st = put_trace(w, &ts, "context_uncond", false, 3, ctxs, false);
    if (!st) st = put_trace(w, &ts, "ids_cond", false, 2, ids, true);
    if (!st) st = put_trace(w, &ts, "ids_uncond", false, 2, ids, true);
    trace_buf *tb;
    if (!st && (tb = trace_get(&ts, "sigmas")) && tb->count)
        st = put_trace(w, &ts, "sigmas", false, 1, (int64_t[]){(int64_t)tb->count}, false);
    if (!st && (tb = trace_get(&ts, "ddim_timesteps")) && tb->count) {
        int64_t kk[1] = {(int64_t)tb->count};
        st = put_trace(w, &ts, "ddim_timesteps", false, 1, kk, true);
        if (!st) st = put_trace(w, &ts, "ddim_alphas", false, 1, kk, false);
        if (!st) st = put_trace(w, &ts, "ddim_alphas_prev", false, 1, kk, false);
        if (!st) st = put_trace(w, &ts, "ddim_sigmas", false, 1, kk, false);
    }
    trace_free(&ts);
    free(init);
    free(pnoise);
    free(enoise);
    free(noises);
    free(latent);
    free(image);
    return st;
}

/* Writes the per-step, schedule and text traces shared by the sampling kinds. */
static ldm_status put_sampling_traces(st_writer *w, trace_set *ts, const ldm_model *m, int32_t h, int32_t wd,
                                      int batch) {
    ldm_status st = LDM_OK;
    int64_t ls[4] = {1, m->latent_channels, h, wd}, b2[4] = {batch, m->latent_channels, h, wd};
    int64_t ctxs[3] = {1, 77, m->unet.context_dim}, ids[2] = {1, 77};
    if (!st) st = put_trace(w, ts, "x_steps", true, 4, ls, false);
    if (!st) st = put_trace(w, ts, "pred_x0_steps", true, 4, ls, false);
    if (!st) st = put_trace(w, ts, "denoised_steps", true, 4, ls, false);
    if (!st) st = put_trace(w, ts, "x_init", false, 4, ls, false);
    if (!st) st = put_trace(w, ts, "unet_in_x", true, 4, b2, false);
    if (!st) st = put_trace(w, ts, "unet_out", true, 4, b2, false);
    if (!st) st = put_trace(w, ts, "unet_in_t", true, 1, (int64_t[]){batch}, false);
    if (!st) st = put_trace(w, ts, "context_cond", false, 3, ctxs, false);
    if (!st) st = put_trace(w, ts, "context_uncond", false, 3, ctxs, false);
    if (!st) st = put_trace(w, ts, "ids_cond", false, 2, ids, true);
    if (!st) st = put_trace(w, ts, "ids_uncond", false, 2, ids, true);
    trace_buf *tb;
    if (!st && (tb = trace_get(ts, "sigmas")) && tb->count)
        st = put_trace(w, ts, "sigmas", false, 1, (int64_t[]){(int64_t)tb->count}, false);
    if (!st && (tb = trace_get(ts, "ddim_timesteps")) && tb->count) {
        int64_t kk[1] = {(int64_t)tb->count};
        st = put_trace(w, ts, "ddim_timesteps", false, 1, kk, true);
        if (!st) st = put_trace(w, ts, "ddim_alphas", false, 1, kk, false);
        if (!st) st = put_trace(w, ts, "ddim_alphas_prev", false, 1, kk, false);
        if (!st) st = put_trace(w, ts, "ddim_sigmas", false, 1, kk, false);
    }
    return st;
}

/* inpaint_ddim, inpaint_ddim_eta1, inpaint_euler (README 5.6, runwayml inpaint_st.py): image_in
 * and mask_u8 / 255 through pipeline_inpaint (no blur, no composite: the raw decoder output),
 * the masked image encoded with posterior_noise, x_T the start, noises the DDIM eta draws. */
static ldm_status run_inpaint(ldm_context *ctx, ldm_model *m, case_file *c, st_writer *w) {
    ldm_status st = LDM_OK;
    const char *rest = c->kind + strlen("inpaint_");
    char sampler_name[64];
    snprintf(sampler_name, sizeof sampler_name, "%s", rest);
    bool eta1 = false;
    size_t ln = strlen(sampler_name);
    if (ln > 5 && strcmp(sampler_name + ln - 5, "_eta1") == 0) {
        sampler_name[ln - 5] = '\0';
        eta1 = true;
    }
    const ldm_sampler_def *def = sampler_find(sampler_name);
    if (!def) return ldm_fail(LDM_ERR_UNSUPPORTED, "sampler '%s' is not implemented", sampler_name);
    const st_tensor *it = input(c, "image_in", &st), *mt = input(c, "mask_u8", &st), *xt = input(c, "x_T", &st);
    if (st) return st;
    if (it->ndim != 4 || it->shape[0] != 1 || it->shape[1] != 3) return ldm_fail(LDM_ERR_FORMAT, "image_in must be [1, 3, H, W]");
    int32_t H = (int32_t)it->shape[2], Wd = (int32_t)it->shape[3], f = m->downscale, h = H / f, wd = Wd / f;
    size_t plane = (size_t)H * Wd, lat = (size_t)m->latent_channels * h * wd;
    if (mt->dtype != LDM_DT_U8 || st_numel(mt) != plane) return ldm_fail(LDM_ERR_FORMAT, "mask_u8 must be uint8 [1, 1, %d, %d]", H, Wd);
    if (st_numel(xt) != lat) return ldm_fail(LDM_ERR_FORMAT, "x_T must be [1, %d, %d, %d]", m->latent_channels, h, wd);
    float *image = input_f32(c, "image_in", &st), *x_T = input_f32(c, "x_T", &st);
    const st_tensor *pt = st_find(c->f, "posterior_noise"), *nt = st_find(c->f, "noises");
    float *pnoise = NULL, *noises = NULL;
    if (pt && !st) st = st_read_f32(pt, &pnoise);
    if (nt && !st) st = st_read_f32(nt, &noises);
    float *mask = malloc(plane * sizeof *mask);
    if (!st && !mask) st = ldm_fail(LDM_ERR_NO_MEMORY, "out of memory");
    /* inpaint_st.py: mask = L / 255 (thresholded inside pipeline_inpaint). */
    for (size_t i = 0; !st && i < plane; i++) mask[i] = (float)((const uint8_t *)mt->data)[i] / 255.0f;
    float eta = eta1 ? 1.0f : 0.0f;
    if (st_meta(c->f, "eta")) eta = strtof(st_meta(c->f, "eta"), NULL);
    trace_set ts = {0};
    ldm_gen g = {.prompt = meta_or(c, "prompt", ""), .negative_prompt = meta_or(c, "negative_prompt", ""),
                 .width = Wd, .height = H, .steps = atoi(meta_or(c, "steps", "0")),
                 .cfg_scale = strtof(meta_or(c, "guidance_scale", "1"), NULL), .sampler = def,
                 .scheduler = LDM_SCHED_DISCRETE, .eta = eta, .x_T = x_T, .noises = noises,
                 .n_noises = noises ? (int32_t)(st_numel(nt) / lat) : 0, .trace = trace_cb, .trace_user = &ts,
                 .init_image = image, .strength = 1.0, .posterior_noise = pnoise, .mask = mask};
    float *latent = malloc(lat * sizeof *latent), *out_image = malloc((size_t)3 * plane * sizeof *out_image);
    g.latent_final = latent;
    g.image = out_image;
    if (!st && (!latent || !out_image)) st = ldm_fail(LDM_ERR_NO_MEMORY, "out of memory");
    if (!st) st = pipeline_inpaint(ctx, m, &g);
    int batch = g.cfg_scale == 1.0f ? 1 : 2;
    int64_t ls[4] = {1, m->latent_channels, h, wd};
    if (!st) st = add_f32(w, "latent_final", 4, ls, latent);
    if (!st) st = add_f32(w, "image", 4, (int64_t[]){1, 3, H, Wd}, out_image);
    if (!st) st = put_trace(w, &ts, "mask", false, 4, (int64_t[]){1, 1, H, Wd}, false);
    if (!st) st = put_trace(w, &ts, "masked_image", false, 4, (int64_t[]){1, 3, H, Wd}, false);
    if (!st) st = put_trace(w, &ts, "mask_latent", false, 4, (int64_t[]){1, 1, h, wd}, false);
    if (!st) st = put_trace(w, &ts, "masked_image_latent", false, 4, (int64_t[]){1, m->latent_channels, h, wd}, false);
    if (!st) st = put_trace(w, &ts, "c_concat", false, 4, (int64_t[]){1, m->concat_channels, h, wd}, false);
    if (!st) st = put_sampling_traces(w, &ts, m, h, wd, batch);
    trace_free(&ts);
    free(image);
    free(x_T);
    free(pnoise);
    free(noises);
    free(mask);
    free(latent);
    free(out_image);
    return st;
}

/* ldm-sr, x4-upscaler, ldm-txt2img: text_encoder (BERT), unet_* with concat/labels,
 * vq_encode_decode, noise_augmentation, sr_*, upscale_* (run_paper_case). */
#include "conform_paper.c"

/* The model's hyper-parameter file lies beside it: X.safetensors -> X.json. */
static char *config_path_for(const char *model) {
    size_t n = strlen(model);
    char *p = malloc(n + 8);
    if (!p) return NULL;
    memcpy(p, model, n + 1);
    char *dot = strrchr(p, '.');
    char *slash = strrchr(p, '/');
    if (dot && (!slash || dot > slash)) *dot = '\0';
    strcat(p, ".json");
    FILE *f = fopen(p, "rb");
    if (!f) {
        free(p);
        return NULL;
    }
    fclose(f);
    return p;
}

int main(int argc, char **argv) {
    const char *backend = "cpu";
    const char *pos[3];
    int np = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--backend") == 0 && i + 1 < argc) backend = argv[++i];
        else if (np < 3 && argv[i][0] != '-') pos[np++] = argv[i];
        else {
            fprintf(stderr, "ldm-conform: error: unexpected argument '%s'\n", argv[i]);
            return 2;
        }
    }
    if (np != 3) {
        fprintf(stderr, "usage: ldm-conform MODEL.safetensors CASE.safetensors OUT.safetensors "
                        "[--backend cpu|vulkan|vulkan-fp16]\n");
        return 2;
    }
    ldm_context_params cp;
    ldm_context_params_init(&cp);
    if (strcmp(backend, "cpu") == 0) cp.backend = LDM_BACKEND_CPU;
    else if (strcmp(backend, "vulkan") == 0) cp.backend = LDM_BACKEND_VULKAN;
    else if (strcmp(backend, "vulkan-fp16") == 0) {
        cp.backend = LDM_BACKEND_VULKAN;
        cp.vulkan_fp16_weights = 1;
    } else {
        fprintf(stderr, "ldm-conform: error: unknown backend '%s'\n", backend);
        return 2;
    }
    ldm_context *ctx = NULL;
    if (ldm_context_create(&cp, &ctx)) return die("context");
    ldm_model_params mp;
    ldm_model_params_init(&mp);
    char *cfg = config_path_for(pos[0]);
    mp.config_path = cfg;
    ldm_model *m = NULL;
    ldm_status st = ldm_model_load(ctx, pos[0], &mp, &m);
    free(cfg);
    if (st) {
        ldm_context_destroy(ctx);
        return die("loading the model");
    }
    case_file c = {0};
    st = st_open(pos[1], &c.f);
    if (!st) {
        c.kind = st_meta(c.f, "case");
        if (!c.kind) st = ldm_fail(LDM_ERR_FORMAT, "case file has no __metadata__ 'case'");
        /* CONFORM.md: the case's parameterization, when given, overrides the model's json. */
        const char *pz = st_meta(c.f, "parameterization");
        if (!st && pz) m->prediction = strcmp(pz, "v") == 0 ? LDM_PREDICTION_V : LDM_PREDICTION_EPS;
    }
    st_writer *w = st_writer_new();
    if (!st && !w) st = ldm_fail(LDM_ERR_NO_MEMORY, "out of memory");
    if (!st) {
        const char *k = c.kind;
        if (run_paper_case(ctx, m, &c, w, k, &st)) {
        } else if (strcmp(k, "text_encoder") == 0) st = run_text_encoder(ctx, m, &c, w);
        else if (strncmp(k, "unet_", 5) == 0) st = run_unet(ctx, m, &c, w);
        else if (strcmp(k, "vae_encode") == 0 || strcmp(k, "vae_encode_nonsquare") == 0) st = run_vae_encode(ctx, m, &c, w, false);
        else if (strcmp(k, "vae_taps") == 0) st = run_vae_encode(ctx, m, &c, w, true);
        else if (strcmp(k, "vae_decode") == 0 || strcmp(k, "vae_decode_nonsquare") == 0) st = run_vae_decode(ctx, m, &c, w);
        else if (strncmp(k, "txt2img_", 8) == 0) st = run_txt2img(ctx, m, &c, w);
        else if (strncmp(k, "img2img_", 8) == 0) st = run_img2img(ctx, m, &c, w);
        else if (strncmp(k, "inpaint_", 8) == 0) st = run_inpaint(ctx, m, &c, w);
        else st = ldm_fail(LDM_ERR_UNSUPPORTED, "unknown or unsupported case kind '%s'", k);
    }
    if (!st) st = st_writer_save(w, pos[2]);
    int rc = st ? die(c.kind ? c.kind : "case") : 0;
    st_writer_free(w);
    st_close(c.f);
    ldm_model_destroy(m);
    ldm_context_destroy(ctx);
    return rc;
}
