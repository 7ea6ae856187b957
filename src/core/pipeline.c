#include "pipeline.h"

#include "bert_tokenizer.h"
#include "clip_tokenizer.h"
#include "memory.h"
#include "nets.h"
#include "vae_tiling.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct {
    ldm_sample_run run; /* first: the sampler's callbacks receive &run */
    ldm_context *ctx;
    ldm_exec ex;
    ldm_model *m;
    ldm_gen *g;
    int32_t c, h, w;       /* latent shape */
    int32_t tokens, width; /* context shape */
    float *ctx_batch;      /* [uncond; cond] or [cond] */
    int32_t batch;         /* 2 with guidance, 1 without */
    float *xin, *tin, *out;
    int32_t noise_used;
    /* img2img */
    float *init_latent; /* scale_factor * posterior mean (or sample), NULL for txt2img */
    int32_t t_enc;      /* denoising steps that run */
    uint8_t *preview_rgb;
    /* inpainting (pipeline_inpaint.c): UNet input rows [x; c_concat], and draw 0 kept for
     * re-noising the known region when blending */
    float *xcat, *noise0;
} gen_state;

double pipeline_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* ComfyUI comfy/latent_formats.py, class SD15 `latent_rgb_factors` (rows: latent channels,
 * columns: R, G, B); SD15 sets no `latent_rgb_factors_bias`, so the bias is 0. Applied to the
 * diffusion-space latent as ComfyUI's Latent2RGBPreviewer does, then (v + 1) / 2 to [0, 1]. */
const float pipeline_preview_factors[4][3] = {
    {0.3512f, 0.2297f, 0.3227f},
    {0.3250f, 0.4974f, 0.2350f},
    {-0.2829f, 0.1762f, 0.2721f},
    {-0.2120f, -0.2616f, -0.7177f},
};
const float pipeline_preview_bias[3] = {0.0f, 0.0f, 0.0f};

void pipeline_preview_rgb(const float *x0, int32_t h, int32_t w, uint8_t *rgb) {
    size_t plane = (size_t)h * w;
    for (size_t i = 0; i < plane; i++) {
        for (int k = 0; k < 3; k++) {
            float v = pipeline_preview_bias[k];
            for (int c = 0; c < 4; c++) v += x0[c * plane + i] * pipeline_preview_factors[c][k];
            v = (v + 1.0f) * 0.5f;
            v = v < 0.0f ? 0.0f : v > 1.0f ? 1.0f : v;
            rgb[i * 3 + k] = (uint8_t)lrintf(v * 255.0f);
        }
    }
}

static void trace(gen_state *s, const char *name, const float *data, size_t count) {
    if (s->g->trace) s->g->trace(s->g->trace_user, name, data, count);
}

ldm_status pipeline_encode_prompt(ldm_exec *ex, ldm_model *m, const char *text, int32_t clip_skip, float *out,
                                  int32_t ids[77]) {
    if (m->cond == COND_BERT) { /* LDM-KL-8-G: BERT WordPiece + x-transformers (no clip_skip) */
        ldm_status bst = ldm_bert_encode(m->bert_tokenizer, text, ids);
        return bst ? bst : bert_text_forward(ex, m, ids, 1, out, NULL);
    }
    if (m->cond == COND_NONE) return ldm_fail(LDM_ERR_UNSUPPORTED, "%s models take no text prompt", m->family_name);
    ldm_status st = ldm_clip_encode(m->tokenizer, text, m->clip.pad_id, ids);
    if (st) return st;
    return clip_text_forward(ex, m, ids, 1, clip_skip, out, NULL);
}

/* Runs the UNet on the guidance batch: every row gets x_scaled and t; returns the raw outputs.
 * Inpainting models get cat([x, c_concat], 1) in every row, uncond included (runwayml
 * inpaint_st.py passes the same c_concat in cond and uc_full). */
static ldm_status run_unet(gen_state *s, const float *x_scaled, float t) {
    size_t n = (size_t)s->run.n, nc = s->xcat ? (size_t)s->m->concat_channels * s->h * s->w : 0;
    for (int b = 0; b < s->batch; b++) {
        memcpy(s->xin + b * n, x_scaled, n * sizeof(float));
        s->tin[b] = t;
        if (s->xcat) {
            memcpy(s->xcat + b * (n + nc), x_scaled, n * sizeof(float));
            memcpy(s->xcat + b * (n + nc) + n, s->g->c_concat, nc * sizeof(float));
        }
    }
    ldm_status st = unet_forward(&s->ex, s->m, s->batch, s->h, s->w, s->xcat ? s->xcat : s->xin, s->tin, s->tokens,
                                 s->ctx_batch, s->out);
    if (st) return st;
    trace(s, "unet_in_x", s->xin, n * s->batch);
    trace(s, "unet_in_t", s->tin, (size_t)s->batch);
    trace(s, "unet_out", s->out, n * s->batch);
    return LDM_OK;
}

/* k-diffusion CompVisDenoiser inside CFGDenoiser: c_in = 1/sqrt(s^2+1), the UNet sees the
 * fractional t = sigma_to_t(s), denoised = x + eps * (-s); guidance on the denoised rows.
 * v models (CompVisVDenoiser, sigma_data 1): denoised = v * c_out + x * c_skip with
 * c_skip = 1/(s^2+1), c_out = -s/sqrt(s^2+1). */
static ldm_status denoise_cb(ldm_sample_run *r, const float *x, float sigma, float *den) {
    gen_state *s = (gen_state *)r;
    size_t n = (size_t)r->n;
    float c_in = 1.0f / sqrtf(sigma * sigma + 1.0f);
    /* Written as den = x * a + out * b: eps a = 1, b = -s; v a = c_skip, b = c_out. */
    bool v = s->m->prediction == LDM_PREDICTION_V;
    float a = v ? 1.0f / (sigma * sigma + 1.0f) : 1.0f, b = v ? -sigma / sqrtf(sigma * sigma + 1.0f) : -sigma;
    float *xs = malloc(n * sizeof *xs);
    if (!xs) return ldm_fail(LDM_ERR_NO_MEMORY, "out of memory");
    for (size_t i = 0; i < n; i++) xs[i] = x[i] * c_in;
    ldm_status st = run_unet(s, xs, schedule_sigma_to_t(r->sched, sigma));
    free(xs);
    if (st) return st;
    if (s->batch == 1) {
        for (size_t i = 0; i < n; i++) den[i] = x[i] * a + s->out[i] * b;
    } else {
        const float *eu = s->out, *ec = s->out + n, g = s->g->cfg_scale;
        for (size_t i = 0; i < n; i++) {
            float du = x[i] * a + eu[i] * b, dc = x[i] * a + ec[i] * b;
            den[i] = du + (dc - du) * g;
        }
    }
    return LDM_OK;
}

/* CompVis DDIM/PLMS: the UNet sees x and the integer t; guidance on the model output. v models
 * (Stability ddim.py p_sample_ddim): guidance on v, then predict_eps_from_z_and_v:
 * e = sqrt_alphas_cumprod[t] v + sqrt_one_minus_alphas_cumprod[t] x. */
static ldm_status eps_cb(ldm_sample_run *r, const float *x, int32_t t, float *eps) {
    gen_state *s = (gen_state *)r;
    size_t n = (size_t)r->n;
    ldm_status st = run_unet(s, x, (float)t);
    if (st) return st;
    if (s->batch == 1) {
        memcpy(eps, s->out, n * sizeof *eps);
    } else {
        const float *eu = s->out, *ec = s->out + n, g = s->g->cfg_scale;
        for (size_t i = 0; i < n; i++) eps[i] = eu[i] + g * (ec[i] - eu[i]);
    }
    if (s->m->prediction == LDM_PREDICTION_V) {
        int32_t ti = t < 0 ? 0 : t > LDM_TRAIN_STEPS - 1 ? LDM_TRAIN_STEPS - 1 : t;
        float sa = s->m->sqrt_alphas_cumprod[ti], sb = s->m->sqrt_one_minus_alphas_cumprod[ti];
        for (size_t i = 0; i < n; i++) eps[i] = sa * eps[i] + sb * x[i];
    }
    return LDM_OK;
}

/* Every draw, draw 0 included, is traced as "draws" (the seeded-run tests compare them). */
static ldm_status randn_cb(ldm_sample_run *r, float *out) {
    gen_state *s = (gen_state *)r;
    if (s->g->noises) {
        if (s->noise_used >= s->g->n_noises)
            return ldm_fail(LDM_ERR_INVALID_ARG, "the sampler needs more than the %d injected noise draws", s->g->n_noises);
        memcpy(out, s->g->noises + (size_t)s->noise_used * r->n, (size_t)r->n * sizeof *out);
        s->noise_used++;
    } else {
        ldm_status st = ldm_rng_randn(s->g->rng, out, (size_t)r->n);
        if (st) return st;
    }
    trace(s, "draws", out, (size_t)r->n);
    return LDM_OK;
}

/* Inpainting with an ordinary model (CompVis ddim.py p_sample_ddim's `mask`, A1111): outside
 * blend_mask the latent is reset to the init latent noised to the level x is at,
 * ca * init + cb * noise with the fixed noise of draw 0 (diffusers' legacy inpaint pipeline:
 * the noise of the start, not a fresh draw, so the seeded stream is unchanged). */
static void blend_known(gen_state *s, float ca, float cb) {
    const float *m = s->g->blend_mask, *init = s->g->blend_init;
    size_t plane = (size_t)s->h * s->w;
    for (int c = 0; c < s->c; c++)
        for (size_t i = 0; i < plane; i++) {
            size_t j = (size_t)c * plane + i;
            s->run.x[j] = m[i] * s->run.x[j] + (1.0f - m[i]) * (ca * init[j] + cb * s->noise0[j]);
        }
}

/* The noise level x is at after `done` steps (0 = the start): sigma samplers sigmas[done];
 * DDPM samplers the timestep of the next step, and the clean latent after the last one
 * (A1111's final samples * nmask + init_latent * mask). */
static void blend_after(gen_state *s, int32_t done) {
    ldm_sample_run *r = &s->run;
    if (!s->g->blend_mask || !s->noise0) return;
    if (s->g->sampler->space == LDM_SAMPLER_SIGMA) {
        blend_known(s, 1.0f, r->sigmas[done]);
    } else if (done >= r->steps) {
        blend_known(s, 1.0f, 0.0f);
    } else {
        int32_t t = r->timesteps[r->steps - 1 - done];
        t = t > LDM_TRAIN_STEPS - 1 ? LDM_TRAIN_STEPS - 1 : t;
        blend_known(s, s->m->sqrt_alphas_cumprod[t], s->m->sqrt_one_minus_alphas_cumprod[t]);
    }
}

/* After each step: trace, preview, progress callbacks, then the cross-thread cancel flag, so a
 * cancel requested during step k stops the run before step k + 1 starts. */
static ldm_status step_cb(ldm_sample_run *r, int32_t step, const float *x, const float *x0) {
    gen_state *s = (gen_state *)r;
    ldm_gen *g = s->g;
    blend_after(s, step); /* x is r->x: every sampler passes its latent */
    trace(s, "x_steps", x, (size_t)r->n);
    trace(s, g->sampler->space == LDM_SAMPLER_SIGMA ? "denoised_steps" : "pred_x0_steps", x0, (size_t)r->n);
    int32_t every = g->preview_interval > 0 ? g->preview_interval : 1;
    if (g->preview && s->preview_rgb && x0 && (step % every == 0 || step == r->steps)) {
        pipeline_preview_rgb(x0, s->h, s->w, s->preview_rgb);
        ldm_preview_image pv = {.struct_size = sizeof pv, .step = step, .total = r->steps,
                                .batch_index = g->batch_index, .width = s->w, .height = s->h,
                                .stride = (size_t)s->w * 3, .rgb = s->preview_rgb};
        g->preview(&pv, g->user_data);
    }
    if (g->progress && g->progress(step, r->steps, g->user_data))
        return ldm_fail(LDM_ERR_CANCELLED, "cancelled by the progress callback");
    if (g->progress_ex) {
        ldm_progress_info info = {.struct_size = sizeof info, .step = step, .total = r->steps,
                                  .batch_index = g->batch_index, .batch_count = g->batch_count > 0 ? g->batch_count : 1,
                                  .elapsed = pipeline_now() - g->t_start};
        if (g->progress_ex(&info, g->user_data)) return ldm_fail(LDM_ERR_CANCELLED, "cancelled by the progress callback");
    }
    if (atomic_load(&s->ctx->cancel)) return ldm_fail(LDM_ERR_CANCELLED, "cancelled");
    return LDM_OK;
}

static void coeffs_cb(ldm_sample_run *r, const float *c, int32_t count) {
    trace((gen_state *)r, "lms_coeffs", c, (size_t)count);
}

static ldm_status encode_contexts(gen_state *s) {
    ldm_gen *g = s->g;
    size_t per = (size_t)s->tokens * s->width;
    int32_t ids[77];
    float *cond = s->ctx_batch + (s->batch - 1) * per;
    ldm_status st = pipeline_encode_prompt(&s->ex, s->m, g->prompt, g->clip_skip, cond, ids);
    if (st) return st;
    float fids[77];
    for (int i = 0; i < 77; i++) fids[i] = (float)ids[i];
    trace(s, "ids_cond", fids, 77);
    trace(s, "context_cond", cond, per);
    if (s->batch == 2) {
        st = pipeline_encode_prompt(&s->ex, s->m, g->negative_prompt ? g->negative_prompt : "", g->clip_skip,
                                    s->ctx_batch, ids);
        if (st) return st;
        for (int i = 0; i < 77; i++) fids[i] = (float)ids[i];
        trace(s, "ids_uncond", fids, 77);
        trace(s, "context_uncond", s->ctx_batch, per);
    }
    return LDM_OK;
}

static ldm_status sample(gen_state *s, ldm_discrete_schedule *sched) {
    ldm_gen *g = s->g;
    ldm_sample_run *r = &s->run;
    size_t n = (size_t)r->n;
    float *sigmas = NULL;
    int32_t *ts = NULL;
    ldm_status st = LDM_OK;
    /* Draw 0: txt2img's initial latent x_T, img2img's noise (SEEDED_CONTRACT item 2). */
    if (g->x_T) memcpy(r->x, g->x_T, n * sizeof(float));
    else if ((st = ldm_rng_randn(g->rng, r->x, n))) return st;
    trace(s, "draws", r->x, n);
    if (s->noise0) memcpy(s->noise0, r->x, n * sizeof(float));
    const float *init = s->init_latent;
    if (g->sampler->space == LDM_SAMPLER_SIGMA) {
        sigmas = malloc((size_t)(g->steps + 1) * sizeof *sigmas);
        if (!sigmas) return ldm_fail(LDM_ERR_NO_MEMORY, "out of memory");
        if ((st = schedule_sigmas(sched, g->scheduler, g->steps, sigmas))) goto done;
        trace(s, "sigmas", sigmas, (size_t)g->steps + 1);
        if (!init) {
            for (size_t i = 0; i < n; i++) r->x[i] *= sigmas[0]; /* x = x_T * sigmas[0] */
            r->steps = g->steps;
            r->sigmas = sigmas;
        } else {
            /* img2img: walk sigmas[steps - t_enc:] from init_latent + noise * its first sigma. */
            int32_t first = g->steps - s->t_enc;
            for (size_t i = 0; i < n; i++) r->x[i] = init[i] + r->x[i] * sigmas[first];
            r->steps = s->t_enc;
            r->sigmas = sigmas + first;
        }
        trace(s, "x_init", r->x, n);
    } else {
        ts = malloc(LDM_TRAIN_STEPS * sizeof *ts);
        float *tab = malloc(4 * LDM_TRAIN_STEPS * sizeof *tab);
        if (!ts || !tab) {
            free(tab);
            st = ldm_fail(LDM_ERR_NO_MEMORY, "out of memory");
            goto done;
        }
        int32_t k = schedule_ddim_timesteps(g->steps, ts);
        float *ft = tab, *al = tab + k, *ap = tab + 2 * k, *sg = tab + 3 * k;
        for (int i = 0; i < k; i++) {
            int32_t t = ts[i] < LDM_TRAIN_STEPS ? ts[i] : LDM_TRAIN_STEPS - 1;
            ft[i] = (float)ts[i];
            al[i] = sched->alphas_cumprod[t];
            ap[i] = i ? sched->alphas_cumprod[ts[i - 1]] : sched->alphas_cumprod[0];
            sg[i] = (float)(g->eta * sqrt((1.0 - ap[i]) / (1.0 - al[i]) * (1.0 - (double)al[i] / ap[i])));
        }
        trace(s, "ddim_timesteps", ft, (size_t)k);
        trace(s, "ddim_alphas", al, (size_t)k);
        trace(s, "ddim_alphas_prev", ap, (size_t)k);
        trace(s, "ddim_sigmas", sg, (size_t)k);
        r->steps = k;
        r->timesteps = ts;
        if (init) {
            /* CompVis DDIMSampler.stochastic_encode at index t_enc, then decode() over
             * ddim_timesteps[:t_enc] (the noise level is one DDIM step above the first
             * denoising step, upstream). t_enc = k (strength 1 where steps gives k timesteps)
             * would index past the table upstream; it encodes at the last timestep instead. */
            int32_t idx = s->t_enc < k ? s->t_enc : k - 1;
            float ca = sqrtf(al[idx]), cb = sqrtf(1.0f - al[idx]);
            for (size_t i = 0; i < n; i++) r->x[i] = ca * init[i] + cb * r->x[i];
            trace(s, "z_enc", r->x, n);
            r->steps = s->t_enc < k ? s->t_enc : k;
        }
        free(tab);
    }
    blend_after(s, 0);
    trace(s, "x_steps", r->x, n);
    if (r->steps > 0) st = g->sampler->run(r); /* img2img at strength 0 runs no step */
done:
    free(sigmas);
    free(ts);
    return st;
}

/* img2img's first stage (CompVis img2img.py): init_latent = scale_factor * z with z the
 * posterior mean (SEEDED_CONTRACT item 4), or mean + std * posterior_noise when injected
 * (DiagonalGaussianDistribution.sample(), logvar clamped to [-30, 20]). */
static ldm_status encode_init(gen_state *s, float *init_latent) {
    ldm_gen *g = s->g;
    const ldm_model *m = s->m;
    size_t n = (size_t)s->c * s->h * s->w;
    if (m->vae.embed_dim != s->c)
        return ldm_fail(LDM_ERR_UNSUPPORTED, "VAE latent has %d channels, the UNet %d", m->vae.embed_dim, s->c);
    float *mom = malloc(n * 3 * sizeof *mom);
    if (!mom) return ldm_fail(LDM_ERR_NO_MEMORY, "out of memory");
    float *stdv = mom + 2 * n;
    ldm_status st = vae_encode_moments(&s->ex, m, 1, g->height, g->width, g->init_image, mom);
    if (!st) {
        for (size_t i = 0; i < n; i++) {
            float lv = mom[n + i];
            lv = lv < -30.0f ? -30.0f : lv > 20.0f ? 20.0f : lv;
            stdv[i] = expf(0.5f * lv);
            float z = g->posterior_noise ? mom[i] + stdv[i] * g->posterior_noise[i] : mom[i];
            init_latent[i] = m->scale_factor * z;
        }
        trace(s, "posterior_mean", mom, n);
        trace(s, "posterior_std", stdv, n);
        trace(s, "init_latent", init_latent, n);
    }
    free(mom);
    return st;
}

static ldm_status run_gen(ldm_context *ctx, ldm_model *m, ldm_gen *g, bool img2img) {
    if (g->width <= 0 || g->height <= 0 || g->width % m->downscale || g->height % m->downscale)
        return ldm_fail(LDM_ERR_INVALID_ARG, "width and height must be positive multiples of %d (got %dx%d)",
                        m->downscale, g->width, g->height);
    if (g->width > 8192 || g->height > 8192) return ldm_fail(LDM_ERR_INVALID_ARG, "width and height are limited to 8192");
    if (g->steps < 1 || g->steps > 1000) return ldm_fail(LDM_ERR_INVALID_ARG, "steps must be in 1..1000 (got %d)", g->steps);
    if (!(g->cfg_scale >= 0.0f && g->cfg_scale < 1000.0f)) return ldm_fail(LDM_ERR_INVALID_ARG, "cfg scale out of range");
    gen_state s;
    memset(&s, 0, sizeof s);
    s.ctx = ctx;
    ctx_begin(ctx, &s.ex);
    s.m = m;
    s.g = g;
    s.c = m->latent_channels;
    s.h = g->height / m->downscale;
    s.w = g->width / m->downscale;
    s.tokens = 77;
    s.width = m->unet.context_dim;
    s.batch = g->cfg_scale == 1.0f ? 1 : 2; /* scale 1 needs no unconditional pass */
    size_t n = (size_t)s.c * s.h * s.w;
    ldm_discrete_schedule *sched = malloc(sizeof *sched);
    s.ctx_batch = malloc((size_t)s.batch * s.tokens * s.width * sizeof(float));
    s.xin = malloc(n * s.batch * sizeof(float));
    s.tin = malloc((size_t)s.batch * sizeof(float));
    s.out = malloc(n * s.batch * sizeof(float));
    float *x = malloc(n * sizeof(float));
    if (img2img) s.init_latent = malloc(n * sizeof(float));
    if (g->preview && s.c == 4) s.preview_rgb = malloc((size_t)s.h * s.w * 3);
    /* Inpainting models always get c_concat (pipeline_inpaint.c builds the A1111 default for
     * txt2img / img2img: all masked, masked image 0). */
    float *own_cc = NULL;
    size_t ncc = (size_t)m->concat_channels * s.h * s.w;
    if (m->concat_channels) {
        s.xcat = malloc((n + ncc) * s.batch * sizeof(float));
        if (!g->c_concat && (own_cc = malloc(ncc * sizeof(float)))) g->c_concat = own_cc;
    }
    if (g->blend_mask && g->blend_init) s.noise0 = malloc(n * sizeof(float));
    if (!g->t_start) g->t_start = pipeline_now();
    ldm_status st = LDM_OK;
    if (!sched || !s.ctx_batch || !s.xin || !s.tin || !s.out || !x || (img2img && !s.init_latent) ||
        (g->preview && s.c == 4 && !s.preview_rgb) || (m->concat_channels && (!s.xcat || !g->c_concat)) ||
        (g->blend_mask && g->blend_init && !s.noise0)) {
        st = ldm_fail(LDM_ERR_NO_MEMORY, "out of memory");
        goto done;
    }
    if (own_cc && (st = pipeline_full_mask_concat(&s.ex, m, g->height, g->width, own_cc))) goto done;
    if (m->clip.width != s.width) {
        st = ldm_fail(LDM_ERR_FORMAT, "text encoder width %d does not match the UNet context %d", m->clip.width, s.width);
        goto done;
    }
    schedule_init(sched, m->alphas_cumprod);
    s.run = (ldm_sample_run){.n = (int32_t)n, .x = x, .sched = sched, .eta = g->eta, .denoise = denoise_cb,
                             .eps = eps_cb, .randn = randn_cb, .step_done = step_cb, .trace_coeffs = coeffs_cb};
    if (img2img) {
        /* t_enc = int(strength * steps) in double, as Python computes it (0.7 * 10 -> 7). */
        s.t_enc = (int32_t)(g->strength * (double)g->steps);
        float fte = (float)s.t_enc;
        trace(&s, "t_enc", &fte, 1);
        if (g->init_latent) memcpy(s.init_latent, g->init_latent, n * sizeof(float)); /* inpainting: prepared */
        else if ((st = encode_init(&s, s.init_latent))) goto done;
        mem_release_weights(m, MEM_PREFIX_VAE_ENCODER);
    }
    /* each stage's mapped weights are dropped from RSS once it is done (core/memory.h) */
    if ((st = encode_contexts(&s))) goto done;
    mem_release_weights(m, MEM_PREFIX_COND);
    if ((st = sample(&s, sched))) goto done;
    mem_release_weights(m, MEM_PREFIX_UNET);
    trace(&s, "latent_final", x, n);
    if (g->latent_final) memcpy(g->latent_final, x, n * sizeof(float));
    if (g->image) {
        for (size_t i = 0; i < n; i++) x[i] /= m->scale_factor;
        st = vae_decode_tiled(&s.ex, m, 1, s.h, s.w, x, g->image, g->vae_tile);
        if (!st) trace(&s, "image", g->image, (size_t)3 * g->width * g->height);
    }
done:
    if (!st && s.ex.status) st = s.ex.status;
    free(sched);
    free(s.ctx_batch);
    free(s.xin);
    free(s.tin);
    free(s.out);
    free(x);
    free(s.init_latent);
    free(s.preview_rgb);
    free(s.xcat);
    free(s.noise0);
    if (own_cc) {
        g->c_concat = NULL;
        free(own_cc);
    }
    return st;
}

ldm_status pipeline_txt2img(ldm_context *ctx, ldm_model *m, ldm_gen *g) { return run_gen(ctx, m, g, false); }

ldm_status pipeline_img2img(ldm_context *ctx, ldm_model *m, ldm_gen *g) {
    if (!g->init_image) return ldm_fail(LDM_ERR_INVALID_ARG, "img2img needs an init image");
    if (!(g->strength >= 0.0 && g->strength <= 1.0))
        return ldm_fail(LDM_ERR_INVALID_ARG, "strength must be in 0..1 (got %g)", g->strength);
    return run_gen(ctx, m, g, true);
}
