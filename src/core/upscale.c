/* Super-resolution pipelines (ldm-sr, x4-upscaler): see upscale.h. */
#include "upscale.h"

#include "nets.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    ldm_sample_run run; /* first: the sampler's callbacks receive &run */
    ldm_context *ctx;
    ldm_exec ex;
    ldm_model *m;
    ldm_upscale_job *j;
    int32_t c, h, w; /* latent */
    int32_t batch;   /* 2 with guidance (x4), else 1 */
    bool v;          /* v-prediction */
    const float *cond;      /* [3, h, w]: lr (ldm-sr) or x_aug (x4), the same for every row */
    float *ctx_batch;       /* [batch, tokens, width] (x4) */
    int32_t tokens;
    int32_t labels[2];
    float *xin, *tin, *out; /* traced UNet inputs / raw outputs [batch, c, h, w] */
    int32_t noise_used;
    /* tiles */
    int32_t *ty, *tx, nty, ntx, th, tw;
    float *tile_in, *tile_out, *wsum;
} up_state;

static void trace(up_state *s, const char *name, const float *data, size_t count) {
    if (s->j->trace) s->j->trace(s->j->trace_user, name, data, count);
}

/* ---- tiles ---- */

/* Starts of the tiles covering [0, size): 0, stride, 2 stride, ..., and a last one flush with
 * the end. One tile when size <= tile. Returns the count (starts malloc'd). */
static int32_t tile_starts(int32_t size, int32_t tile, int32_t overlap, int32_t **out) {
    int32_t cap = 2, n = 0;
    int32_t *s = malloc((size_t)cap * sizeof *s);
    if (!s) return -1;
    if (tile <= 0 || size <= tile) {
        s[n++] = 0;
    } else {
        int32_t stride = tile - overlap > 0 ? tile - overlap : tile;
        for (int32_t a = 0;; a += stride) {
            if (n == cap) {
                int32_t *ns = realloc(s, (size_t)(cap *= 2) * sizeof *s);
                if (!ns) {
                    free(s);
                    return -1;
                }
                s = ns;
            }
            if (a + tile >= size) {
                s[n++] = size - tile;
                break;
            }
            s[n++] = a;
        }
    }
    *out = s;
    return n;
}

/* Blending weight along one axis at offset i of a tile [a, a + t) in [0, size): a linear ramp
 * over `ramp` positions on each side that has a neighbouring tile, 1 elsewhere (never 0). */
static float axis_weight(int32_t i, int32_t a, int32_t t, int32_t size, int32_t ramp) {
    float w = 1.0f;
    if (ramp > 0 && a > 0) w = fminf(w, (float)(i + 1) / (float)(ramp + 1));
    if (ramp > 0 && a + t < size) w = fminf(w, (float)(t - i) / (float)(ramp + 1));
    return w;
}

/* ---- the model ---- */

/* Raw UNet output (eps or v) for every guidance row at x (the sampler's latent, already scaled
 * by c_in for sigma samplers) and timestep t, tiled when the latent is larger than a tile. */
static ldm_status model_eval(up_state *s, const float *x, float t, float *out) {
    const ldm_model *m = s->m;
    const int32_t c = s->c, C = c + 3, B = s->batch, h = s->h, w = s->w;
    const size_t n = (size_t)c * h * w, plane = (size_t)h * w;
    for (int b = 0; b < B; b++) {
        memcpy(s->xin + (size_t)b * n, x, n * sizeof(float));
        s->tin[b] = t;
    }
    ldm_status st = LDM_OK;
    const float *ctxb = s->ctx_batch;
    const int32_t *labels = m->unet.num_classes > 0 ? s->labels : NULL;
    if (s->nty * s->ntx == 1) {
        /* cat([x, cond], 1) per row (DiffusionWrapper concat / hybrid-adm). */
        float *in = s->tile_in;
        for (int b = 0; b < B; b++) {
            memcpy(in + (size_t)b * C * plane, x, n * sizeof(float));
            memcpy(in + (size_t)b * C * plane + n, s->cond, 3 * plane * sizeof(float));
        }
        st = unet_forward_ex(&s->ex, m, B, h, w, in, s->tin, labels, s->tokens, ctxb, out);
    } else {
        const int32_t th = s->th, tw = s->tw, ov = s->j->tile_overlap;
        const size_t tplane = (size_t)th * tw;
        memset(out, 0, (size_t)B * n * sizeof(float));
        memset(s->wsum, 0, plane * sizeof(float));
        for (int32_t iy = 0; iy < s->nty && !st; iy++) {
            for (int32_t ix = 0; ix < s->ntx && !st; ix++) {
                int32_t y0 = s->ty[iy], x0 = s->tx[ix];
                for (int b = 0; b < B; b++)
                    for (int32_t ch = 0; ch < C; ch++) {
                        const float *src = ch < c ? x + (size_t)ch * plane : s->cond + (size_t)(ch - c) * plane;
                        float *dst = s->tile_in + ((size_t)b * C + ch) * tplane;
                        for (int32_t yy = 0; yy < th; yy++)
                            memcpy(dst + (size_t)yy * tw, src + (size_t)(y0 + yy) * w + x0, (size_t)tw * sizeof(float));
                    }
                st = unet_forward_ex(&s->ex, m, B, th, tw, s->tile_in, s->tin, labels, s->tokens, ctxb, s->tile_out);
                if (st) break;
                if (atomic_load(&s->ctx->cancel)) st = ldm_fail(LDM_ERR_CANCELLED, "cancelled");
                for (int32_t yy = 0; yy < th && !st; yy++) {
                    float wy = axis_weight(yy, y0, th, h, ov);
                    for (int32_t xx = 0; xx < tw; xx++) {
                        float wt = wy * axis_weight(xx, x0, tw, w, ov);
                        size_t p = (size_t)(y0 + yy) * w + x0 + xx;
                        s->wsum[p] += wt;
                        for (int b = 0; b < B; b++)
                            for (int32_t ch = 0; ch < c; ch++)
                                out[((size_t)b * c + ch) * plane + p] +=
                                    wt * s->tile_out[((size_t)b * c + ch) * tplane + (size_t)yy * tw + xx];
                    }
                }
            }
        }
        for (size_t i = 0; !st && i < (size_t)B * c * plane; i++) out[i] /= s->wsum[i % plane];
    }
    if (st) return st;
    trace(s, "unet_in_x", s->xin, n * B);
    trace(s, "unet_in_t", s->tin, (size_t)B);
    trace(s, "unet_out", out, n * B);
    return LDM_OK;
}

/* Classifier-free guidance on the raw output (CompVis/Stability DDIMSampler: u + s (c - u)). */
static void guide(up_state *s, const float *raw, float *g) {
    size_t n = (size_t)s->run.n;
    if (s->batch == 1) {
        memcpy(g, raw, n * sizeof *g);
        return;
    }
    float scale = s->j->cfg_scale;
    for (size_t i = 0; i < n; i++) g[i] = raw[i] + scale * (raw[n + i] - raw[i]);
}

/* DDIM/PLMS: eps at integer t; v models: e = sqrt(ac[t]) v + sqrt(1 - ac[t]) x
 * (ddpm.py predict_eps_from_z_and_v, float32 buffers of the float64 schedule). */
static ldm_status eps_cb(ldm_sample_run *r, const float *x, int32_t t, float *eps) {
    up_state *s = (up_state *)r;
    ldm_status st = model_eval(s, x, (float)t, s->out);
    if (st) return st;
    guide(s, s->out, eps);
    if (s->v) {
        int32_t ti = t < LDM_TRAIN_STEPS ? t : LDM_TRAIN_STEPS - 1;
        float a = s->m->sqrt_alphas_cumprod[ti], b = s->m->sqrt_one_minus_alphas_cumprod[ti];
        for (int32_t i = 0; i < r->n; i++) eps[i] = a * eps[i] + b * x[i];
    }
    return LDM_OK;
}

/* k-diffusion CompVisDenoiser / CompVisVDenoiser: input x c_in at t = sigma_to_t(sigma);
 * eps: D = x - sigma eps; v: D = v c_out + x c_skip, c_skip = 1 / (s^2 + 1), c_out = -s / sqrt(s^2 + 1). */
static ldm_status denoise_cb(ldm_sample_run *r, const float *x, float sigma, float *den) {
    up_state *s = (up_state *)r;
    size_t n = (size_t)r->n;
    float c_in = 1.0f / sqrtf(sigma * sigma + 1.0f);
    float *xs = malloc(n * sizeof *xs);
    if (!xs) return ldm_fail(LDM_ERR_NO_MEMORY, "out of memory");
    for (size_t i = 0; i < n; i++) xs[i] = x[i] * c_in;
    ldm_status st = model_eval(s, xs, schedule_sigma_to_t(r->sched, sigma), s->out);
    free(xs);
    if (st) return st;
    guide(s, s->out, den);
    if (s->v) {
        float c_skip = 1.0f / (sigma * sigma + 1.0f), c_out = -sigma * c_in;
        for (size_t i = 0; i < n; i++) den[i] = den[i] * c_out + x[i] * c_skip;
    } else {
        for (size_t i = 0; i < n; i++) den[i] = x[i] + den[i] * -sigma;
    }
    return LDM_OK;
}

static ldm_status randn_cb(ldm_sample_run *r, float *out) {
    up_state *s = (up_state *)r;
    if (s->j->noises) {
        if (s->noise_used >= s->j->n_noises)
            return ldm_fail(LDM_ERR_INVALID_ARG, "the sampler needs more than the %d injected noise draws", s->j->n_noises);
        memcpy(out, s->j->noises + (size_t)s->noise_used * r->n, (size_t)r->n * sizeof *out);
        s->noise_used++;
        return LDM_OK;
    }
    return ldm_rng_randn(s->j->rng, out, (size_t)r->n);
}

static ldm_status step_cb(ldm_sample_run *r, int32_t step, const float *x, const float *x0) {
    up_state *s = (up_state *)r;
    ldm_upscale_job *j = s->j;
    trace(s, "x_steps", x, (size_t)r->n);
    trace(s, j->sampler->space == LDM_SAMPLER_SIGMA ? "denoised_steps" : "pred_x0_steps", x0, (size_t)r->n);
    if (j->progress && j->progress(step, r->steps, j->user_data))
        return ldm_fail(LDM_ERR_CANCELLED, "cancelled by the progress callback");
    if (j->progress_ex) {
        ldm_progress_info info = {.struct_size = sizeof info, .step = step, .total = r->steps, .batch_index = 0,
                                  .batch_count = 1, .elapsed = pipeline_now() - j->t_start};
        if (j->progress_ex(&info, j->user_data)) return ldm_fail(LDM_ERR_CANCELLED, "cancelled by the progress callback");
    }
    if (atomic_load(&s->ctx->cancel)) return ldm_fail(LDM_ERR_CANCELLED, "cancelled");
    return LDM_OK;
}

/* The sampler walk from x_T (already in run.x), as pipeline.c's txt2img. */
static ldm_status sample(up_state *s, const ldm_discrete_schedule *sched) {
    ldm_upscale_job *j = s->j;
    ldm_sample_run *r = &s->run;
    size_t n = (size_t)r->n;
    float *sigmas = NULL, *tab = NULL;
    int32_t *ts = NULL;
    ldm_status st = LDM_OK;
    if (j->sampler->space == LDM_SAMPLER_SIGMA) {
        sigmas = malloc((size_t)(j->steps + 1) * sizeof *sigmas);
        if (!sigmas) return ldm_fail(LDM_ERR_NO_MEMORY, "out of memory");
        if ((st = schedule_sigmas(sched, j->scheduler, j->steps, sigmas))) goto done;
        trace(s, "sigmas", sigmas, (size_t)j->steps + 1);
        for (size_t i = 0; i < n; i++) r->x[i] *= sigmas[0];
        trace(s, "x_init", r->x, n);
        r->steps = j->steps;
        r->sigmas = sigmas;
    } else {
        ts = malloc(LDM_TRAIN_STEPS * sizeof *ts);
        tab = malloc(4 * LDM_TRAIN_STEPS * sizeof *tab);
        if (!ts || !tab) {
            st = ldm_fail(LDM_ERR_NO_MEMORY, "out of memory");
            goto done;
        }
        /* make_ddim_sampling_parameters: alphas at the timesteps, alphas_prev with ac[0] first,
         * sigmas = eta sqrt((1 - a_prev) / (1 - a) (1 - a / a_prev)). */
        int32_t k = schedule_ddim_timesteps(j->steps, ts);
        float *ft = tab, *al = tab + k, *ap = tab + 2 * k, *sg = tab + 3 * k;
        for (int i = 0; i < k; i++) {
            int32_t t = ts[i] < LDM_TRAIN_STEPS ? ts[i] : LDM_TRAIN_STEPS - 1;
            ft[i] = (float)ts[i];
            al[i] = sched->alphas_cumprod[t];
            ap[i] = i ? sched->alphas_cumprod[ts[i - 1]] : sched->alphas_cumprod[0];
            sg[i] = (float)(j->eta * sqrt((1.0 - ap[i]) / (1.0 - al[i]) * (1.0 - (double)al[i] / ap[i])));
        }
        trace(s, "ddim_timesteps", ft, (size_t)k);
        trace(s, "ddim_alphas", al, (size_t)k);
        trace(s, "ddim_alphas_prev", ap, (size_t)k);
        trace(s, "ddim_sigmas", sg, (size_t)k);
        r->steps = k;
        r->timesteps = ts;
    }
    trace(s, "x_steps", r->x, n);
    st = j->sampler->run(r);
done:
    free(sigmas);
    free(ts);
    free(tab);
    return st;
}

void upscale_lr_from_u8(const ldm_model *m, const uint8_t *u8, size_t count, float *lr) {
    for (size_t i = 0; i < count; i++) {
        if (m->family == LDM_FAMILY_X4_UPSCALER) {
            lr[i] = (float)u8[i] / 127.5f - 1.0f;
        } else {
            float t = (float)u8[i] / 255.0f;
            lr[i] = 2.0f * t - 1.0f;
        }
    }
}

ldm_status upscale_noise_augment(const ldm_model *m, int32_t n, size_t count, const float *lr, const int32_t *levels,
                                 const float *noise, float *x_aug) {
    for (int32_t b = 0; b < n; b++) {
        if (levels[b] < 0 || levels[b] >= LDM_TRAIN_STEPS)
            return ldm_fail(LDM_ERR_INVALID_ARG, "noise level %d out of range 0..%d", levels[b], LDM_TRAIN_STEPS - 1);
        float a = m->lr_sqrt_alphas_cumprod[levels[b]], c = m->lr_sqrt_one_minus_alphas_cumprod[levels[b]];
        for (size_t i = 0; i < count; i++) {
            size_t o = (size_t)b * count + i;
            float p = a * lr[o], q = c * noise[o]; /* q_sample: two products, then the sum */
            x_aug[o] = p + q;
        }
    }
    return LDM_OK;
}

ldm_status upscale_decode(ldm_exec *ex, const ldm_model *m, int32_t h, int32_t w, const float *latent, int32_t tile,
                          bool noquant, int32_t *indices, float *image) {
    const int32_t c = m->vae.embed_dim, f = m->downscale;
    const size_t n = (size_t)c * h * w, plane = (size_t)h * w;
    float *z = malloc(n * sizeof *z);
    if (!z) return ldm_fail(LDM_ERR_NO_MEMORY, "out of memory");
    /* decode_first_stage: z = 1 / scale_factor * z (the reciprocal in double, then a float32 product). */
    float inv = (float)(1.0 / (double)m->scale_factor);
    for (size_t i = 0; i < n; i++) z[i] = inv * latent[i];
    ldm_status st = LDM_OK;
    if (m->vae.kind == FIRST_STAGE_VQ && (!noquant || indices))
        st = vq_quantize(m, 1, h, w, z, noquant ? NULL : z, indices);
    if (st || !image) {
        free(z);
        return st;
    }
    int32_t *ys = NULL, *xs = NULL;
    const int32_t ov = tile > 0 ? LDM_MAX(tile / 8, 4) : 0;
    int32_t ny = tile_starts(h, tile, ov, &ys), nx = tile_starts(w, tile, ov, &xs);
    if (ny < 0 || nx < 0) st = ldm_fail(LDM_ERR_NO_MEMORY, "out of memory");
    if (!st && ny * nx == 1) {
        st = vae_decode(ex, m, 1, h, w, z, image);
    } else if (!st) {
        /* Overlapping latent tiles, blended in pixel space with ramps over the overlap. */
        const int32_t th = LDM_MIN(tile, h), tw = LDM_MIN(tile, w), H = h * f, W = w * f;
        const size_t tp = (size_t)th * tw, TP = (size_t)th * f * tw * f, P = (size_t)H * W;
        float *zt = malloc((size_t)c * tp * sizeof *zt), *it = malloc(3 * TP * sizeof *it);
        float *ws = calloc(P, sizeof *ws);
        if (!zt || !it || !ws) st = ldm_fail(LDM_ERR_NO_MEMORY, "out of memory");
        if (!st) memset(image, 0, 3 * P * sizeof *image);
        for (int32_t iy = 0; iy < ny && !st; iy++) {
            for (int32_t ix = 0; ix < nx && !st; ix++) {
                int32_t y0 = ys[iy], x0 = xs[ix];
                for (int32_t ch = 0; ch < c; ch++)
                    for (int32_t yy = 0; yy < th; yy++)
                        memcpy(zt + (size_t)ch * tp + (size_t)yy * tw, z + (size_t)ch * plane + (size_t)(y0 + yy) * w + x0,
                               (size_t)tw * sizeof *zt);
                st = vae_decode(ex, m, 1, th, tw, zt, it);
                for (int32_t yy = 0; yy < th * f && !st; yy++) {
                    float wy = axis_weight(yy, y0 * f, th * f, H, ov * f);
                    for (int32_t xx = 0; xx < tw * f; xx++) {
                        float wt = wy * axis_weight(xx, x0 * f, tw * f, W, ov * f);
                        size_t p = (size_t)(y0 * f + yy) * W + (size_t)x0 * f + xx;
                        ws[p] += wt;
                        for (int ch = 0; ch < 3; ch++) image[ch * P + p] += wt * it[ch * TP + (size_t)yy * tw * f + xx];
                    }
                }
            }
        }
        for (size_t i = 0; !st && i < 3 * P; i++) image[i] /= ws[i % P];
        free(zt);
        free(it);
        free(ws);
    }
    free(ys);
    free(xs);
    free(z);
    return st;
}

/* x4: the two contexts [uncond; cond] (or [cond]) from the prompt text. */
static ldm_status encode_text(up_state *s) {
    ldm_upscale_job *j = s->j;
    size_t per = (size_t)s->tokens * s->m->clip.width;
    int32_t ids[77];
    float fids[77];
    float *cond = s->ctx_batch + (size_t)(s->batch - 1) * per;
    ldm_status st = pipeline_encode_prompt(&s->ex, s->m, j->prompt ? j->prompt : "", 0, cond, ids);
    if (st) return st;
    for (int i = 0; i < 77; i++) fids[i] = (float)ids[i];
    trace(s, "ids_cond", fids, 77);
    trace(s, "context_cond", cond, per);
    if (s->batch == 2) {
        st = pipeline_encode_prompt(&s->ex, s->m, j->negative_prompt ? j->negative_prompt : "", 0, s->ctx_batch, ids);
        if (st) return st;
        for (int i = 0; i < 77; i++) fids[i] = (float)ids[i];
        trace(s, "ids_uncond", fids, 77);
        trace(s, "context_uncond", s->ctx_batch, per);
    }
    return LDM_OK;
}

ldm_status pipeline_upscale(ldm_context *ctx, ldm_model *m, ldm_upscale_job *j) {
    bool x4 = m->family == LDM_FAMILY_X4_UPSCALER;
    if (m->family != LDM_FAMILY_LDM_SR && !x4)
        return ldm_fail(LDM_ERR_UNSUPPORTED, "%s models do not upscale (ldm-sr and x4-upscaler do)", m->family_name);
    const int32_t down = 1 << (m->unet.n_levels - 1);
    if (j->h <= 0 || j->w <= 0 || j->h % down || j->w % down)
        return ldm_fail(LDM_ERR_INVALID_ARG, "low-res size %dx%d must be a positive multiple of %d", j->w, j->h, down);
    if (j->steps < 1 || j->steps > 1000) return ldm_fail(LDM_ERR_INVALID_ARG, "steps must be in 1..1000 (got %d)", j->steps);
    if (!j->sampler) return ldm_fail(LDM_ERR_INVALID_ARG, "no sampler");
    if (x4 && (j->noise_level < 0 || j->noise_level > m->max_noise_level))
        return ldm_fail(LDM_ERR_INVALID_ARG, "noise level %d out of range 0..%d", j->noise_level, m->max_noise_level);
    if (x4 && !(j->cfg_scale >= 0.0f && j->cfg_scale < 1000.0f)) return ldm_fail(LDM_ERR_INVALID_ARG, "cfg scale out of range");
    if (j->tile < 0 || (j->tile > 0 && (j->tile % down || j->tile_overlap < 0 || j->tile_overlap >= j->tile)))
        return ldm_fail(LDM_ERR_INVALID_ARG, "tile %d must be a multiple of %d with 0 <= overlap (%d) < tile", j->tile,
                        down, j->tile_overlap);
    up_state s;
    memset(&s, 0, sizeof s);
    s.ctx = ctx;
    ctx_begin(ctx, &s.ex);
    s.m = m;
    s.j = j;
    s.c = m->latent_channels;
    s.h = j->h;
    s.w = j->w;
    s.v = m->prediction == LDM_PREDICTION_V;
    s.batch = x4 && j->cfg_scale != 1.0f ? 2 : 1;
    s.tokens = x4 ? m->clip.n_pos : 0;
    s.labels[0] = s.labels[1] = j->noise_level;
    const size_t n = (size_t)s.c * s.h * s.w, plane = (size_t)s.h * s.w;
    ldm_status st = LDM_OK;
    s.nty = tile_starts(s.h, j->tile, j->tile_overlap, &s.ty);
    s.ntx = tile_starts(s.w, j->tile, j->tile_overlap, &s.tx);
    if (s.nty < 0 || s.ntx < 0) {
        st = ldm_fail(LDM_ERR_NO_MEMORY, "out of memory");
        goto done;
    }
    s.th = s.nty > 1 ? j->tile : s.h;
    s.tw = s.ntx > 1 ? j->tile : s.w;
    ldm_discrete_schedule *sched = malloc(sizeof *sched);
    float *x = malloc(n * sizeof *x), *xaug = x4 ? malloc(3 * plane * sizeof *xaug) : NULL;
    s.xin = malloc((size_t)s.batch * n * sizeof(float));
    s.tin = malloc((size_t)s.batch * sizeof(float));
    s.out = malloc((size_t)s.batch * n * sizeof(float));
    s.tile_in = malloc((size_t)s.batch * (s.c + 3) * s.th * s.tw * sizeof(float));
    s.tile_out = malloc((size_t)s.batch * s.c * s.th * s.tw * sizeof(float));
    s.wsum = malloc(plane * sizeof(float));
    if (x4) s.ctx_batch = malloc((size_t)s.batch * s.tokens * m->clip.width * sizeof(float));
    if (!sched || !x || (x4 && (!xaug || !s.ctx_batch)) || !s.xin || !s.tin || !s.out || !s.tile_in || !s.tile_out ||
        !s.wsum) {
        st = ldm_fail(LDM_ERR_NO_MEMORY, "out of memory for a %dx%d upscale", s.w, s.h);
        goto free_all;
    }
    if (!j->t_start) j->t_start = pipeline_now();
    schedule_init(sched, m->alphas_cumprod);
    s.run = (ldm_sample_run){.n = (int32_t)n, .x = x, .sched = sched, .eta = j->eta, .denoise = denoise_cb,
                             .eps = eps_cb, .randn = randn_cb, .step_done = step_cb};
    /* Draw 0: x_T; x4 draw 1: the augmentation noise. */
    if (j->x_T) memcpy(x, j->x_T, n * sizeof *x);
    else if ((st = ldm_rng_randn(j->rng, x, n))) goto free_all;
    if (x4) {
        if (j->aug_noise) memcpy(xaug, j->aug_noise, 3 * plane * sizeof *xaug);
        else if ((st = ldm_rng_randn(j->rng, xaug, 3 * plane))) goto free_all;
        int32_t level = j->noise_level;
        if ((st = upscale_noise_augment(m, 1, 3 * plane, j->lr, &level, xaug, xaug))) goto free_all;
        trace(&s, "x_aug", xaug, 3 * plane);
        s.cond = xaug;
        if ((st = encode_text(&s))) goto free_all;
    } else {
        s.cond = j->lr;
    }
    if ((st = sample(&s, sched))) goto free_all;
    trace(&s, "latent_final", x, n);
    if (j->latent_final) memcpy(j->latent_final, x, n * sizeof *x);
    ctx_log(ctx, LDM_LOG_DEBUG, "upscale: sampled a %dx%d latent in %d x %d UNet tiles", s.w, s.h, s.ntx, s.nty);
    if (j->image || j->final_indices)
        st = upscale_decode(&s.ex, m, s.h, s.w, x, j->decode_tile, false, j->final_indices, j->image);
    if (!st && j->image_noquant && m->vae.kind == FIRST_STAGE_VQ)
        st = upscale_decode(&s.ex, m, s.h, s.w, x, j->decode_tile, true, NULL, j->image_noquant);
free_all:
    free(sched);
    free(x);
    free(xaug);
done:
    if (!st && s.ex.status) st = s.ex.status;
    free(s.xin);
    free(s.tin);
    free(s.out);
    free(s.tile_in);
    free(s.tile_out);
    free(s.wsum);
    free(s.ctx_batch);
    free(s.ty);
    free(s.tx);
    return st;
}
