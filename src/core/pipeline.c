#include "pipeline.h"

#include "clip_tokenizer.h"
#include "nets.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

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
} gen_state;

static void trace(gen_state *s, const char *name, const float *data, size_t count) {
    if (s->g->trace) s->g->trace(s->g->trace_user, name, data, count);
}

ldm_status pipeline_encode_prompt(ldm_exec *ex, ldm_model *m, const char *text, int32_t clip_skip, float *out,
                                  int32_t ids[77]) {
    ldm_status st = ldm_clip_encode(m->tokenizer, text, m->clip.pad_id, ids);
    if (st) return st;
    return clip_text_forward(ex, m, ids, 1, clip_skip, out, NULL);
}

/* Runs the UNet on the guidance batch: every row gets x_scaled and t; returns the raw outputs. */
static ldm_status run_unet(gen_state *s, const float *x_scaled, float t) {
    size_t n = (size_t)s->run.n;
    for (int b = 0; b < s->batch; b++) {
        memcpy(s->xin + b * n, x_scaled, n * sizeof(float));
        s->tin[b] = t;
    }
    ldm_status st = unet_forward(&s->ex, s->m, s->batch, s->h, s->w, s->xin, s->tin, s->tokens, s->ctx_batch, s->out);
    if (st) return st;
    trace(s, "unet_in_x", s->xin, n * s->batch);
    trace(s, "unet_in_t", s->tin, (size_t)s->batch);
    trace(s, "unet_out", s->out, n * s->batch);
    return LDM_OK;
}

/* k-diffusion CompVisDenoiser inside CFGDenoiser: c_in = 1/sqrt(s^2+1), the UNet sees the
 * fractional t = sigma_to_t(s), denoised = x + eps * (-s); guidance on the denoised rows. */
static ldm_status denoise_cb(ldm_sample_run *r, const float *x, float sigma, float *den) {
    gen_state *s = (gen_state *)r;
    size_t n = (size_t)r->n;
    float c_in = 1.0f / sqrtf(sigma * sigma + 1.0f);
    float *xs = malloc(n * sizeof *xs);
    if (!xs) return ldm_fail(LDM_ERR_NO_MEMORY, "out of memory");
    for (size_t i = 0; i < n; i++) xs[i] = x[i] * c_in;
    ldm_status st = run_unet(s, xs, schedule_sigma_to_t(r->sched, sigma));
    free(xs);
    if (st) return st;
    if (s->batch == 1) {
        for (size_t i = 0; i < n; i++) den[i] = x[i] + s->out[i] * -sigma;
    } else {
        const float *eu = s->out, *ec = s->out + n, g = s->g->cfg_scale;
        for (size_t i = 0; i < n; i++) {
            float du = x[i] + eu[i] * -sigma, dc = x[i] + ec[i] * -sigma;
            den[i] = du + (dc - du) * g;
        }
    }
    return LDM_OK;
}

/* CompVis DDIM/PLMS: the UNet sees x and the integer t; guidance on the model output. */
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
    return LDM_OK;
}

static ldm_status randn_cb(ldm_sample_run *r, float *out) {
    gen_state *s = (gen_state *)r;
    if (s->g->noises) {
        if (s->noise_used >= s->g->n_noises)
            return ldm_fail(LDM_ERR_INVALID_ARG, "the sampler needs more than the %d injected noise draws", s->g->n_noises);
        memcpy(out, s->g->noises + (size_t)s->noise_used * r->n, (size_t)r->n * sizeof *out);
        s->noise_used++;
        return LDM_OK;
    }
    return ldm_rng_randn(s->g->rng, out, (size_t)r->n);
}

static ldm_status step_cb(ldm_sample_run *r, int32_t step, const float *x, const float *x0) {
    gen_state *s = (gen_state *)r;
    trace(s, "x_steps", x, (size_t)r->n);
    trace(s, s->g->sampler->space == LDM_SAMPLER_SIGMA ? "denoised_steps" : "pred_x0_steps", x0, (size_t)r->n);
    if (s->g->progress && s->g->progress(step, r->steps, s->g->user_data))
        return ldm_fail(LDM_ERR_CANCELLED, "cancelled by the progress callback");
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
    /* Draw 0: the initial latent. */
    if (g->x_T) memcpy(r->x, g->x_T, n * sizeof(float));
    else if ((st = ldm_rng_randn(g->rng, r->x, n))) return st;
    if (g->sampler->space == LDM_SAMPLER_SIGMA) {
        sigmas = malloc((size_t)(g->steps + 1) * sizeof *sigmas);
        if (!sigmas) return ldm_fail(LDM_ERR_NO_MEMORY, "out of memory");
        if ((st = schedule_sigmas(sched, g->scheduler, g->steps, sigmas))) goto done;
        trace(s, "sigmas", sigmas, (size_t)g->steps + 1);
        for (size_t i = 0; i < n; i++) r->x[i] *= sigmas[0]; /* x = x_T * sigmas[0] */
        trace(s, "x_init", r->x, n);
        r->steps = g->steps;
        r->sigmas = sigmas;
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
        free(tab);
        r->steps = k;
        r->timesteps = ts;
    }
    trace(s, "x_steps", r->x, n);
    st = g->sampler->run(r);
done:
    free(sigmas);
    free(ts);
    return st;
}

ldm_status pipeline_txt2img(ldm_context *ctx, ldm_model *m, ldm_gen *g) {
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
    ldm_status st = LDM_OK;
    if (!sched || !s.ctx_batch || !s.xin || !s.tin || !s.out || !x) {
        st = ldm_fail(LDM_ERR_NO_MEMORY, "out of memory");
        goto done;
    }
    if (m->clip.width != s.width) {
        st = ldm_fail(LDM_ERR_FORMAT, "text encoder width %d does not match the UNet context %d", m->clip.width, s.width);
        goto done;
    }
    schedule_init(sched, m->alphas_cumprod);
    s.run = (ldm_sample_run){.n = (int32_t)n, .x = x, .sched = sched, .eta = g->eta, .denoise = denoise_cb,
                             .eps = eps_cb, .randn = randn_cb, .step_done = step_cb, .trace_coeffs = coeffs_cb};
    if ((st = encode_contexts(&s))) goto done;
    if ((st = sample(&s, sched))) goto done;
    trace(&s, "latent_final", x, n);
    if (g->latent_final) memcpy(g->latent_final, x, n * sizeof(float));
    if (g->image) {
        for (size_t i = 0; i < n; i++) x[i] /= m->scale_factor;
        st = vae_decode(&s.ex, m, 1, s.h, s.w, x, g->image);
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
    return st;
}
