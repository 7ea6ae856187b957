/* Case kinds of the LDM-paper models and the SD x4 upscaler (ldm-sr-tiny D, x4-upscaler-tiny E,
 * ldm-txt2img-tiny F; shared/golden/README.md sections 5.7 and 9, CONFORM.md). Included by
 * ldm-conform.c after its helpers (input, input_f32, add_f32, put_trace, trace_cb, ...), which it
 * uses as they are; kept in its own file so that the families' runners stay together. */
#include "core/upscale.h"

/* F text_encoder: BERT ids -> last_hidden_state, hidden_states [2L + 1, N, 77, W]. */
static ldm_status run_text_encoder_bert(ldm_context *ctx, ldm_model *m, case_file *c, st_writer *w) {
    ldm_status st = LDM_OK;
    const st_tensor *ids_t = input(c, "input_ids", &st);
    if (st) return st;
    if (ids_t->ndim != 2 || ids_t->shape[1] != 77 || ids_t->dtype != LDM_DT_I64)
        return ldm_fail(LDM_ERR_FORMAT, "input_ids must be int64 [N, 77]");
    int32_t n = (int32_t)ids_t->shape[0], W = m->bert.width, L = 2 * m->bert.layers + 1;
    int32_t *ids = malloc((size_t)n * 77 * sizeof *ids);
    float *out = malloc((size_t)n * 77 * W * sizeof *out);
    float *hidden = malloc((size_t)L * n * 77 * W * sizeof *hidden);
    if (!ids || !out || !hidden) st = ldm_fail(LDM_ERR_NO_MEMORY, "out of memory");
    for (size_t i = 0; !st && i < (size_t)n * 77; i++) {
        int64_t v;
        memcpy(&v, (const char *)ids_t->data + i * 8, 8);
        if (v < 0 || v >= m->bert.vocab) st = ldm_fail(LDM_ERR_FORMAT, "input id %lld out of range", (long long)v);
        ids[i] = (int32_t)v;
    }
    ldm_exec ex;
    ctx_begin(ctx, &ex);
    if (!st) st = bert_text_forward(&ex, m, ids, n, out, hidden);
    if (!st) st = add_f32(w, "last_hidden_state", 3, (int64_t[]){n, 77, W}, out);
    if (!st) st = add_f32(w, "hidden_states", 4, (int64_t[]){L, n, 77, W}, hidden);
    free(ids);
    free(out);
    free(hidden);
    return st;
}

/* Reads an integer tensor (any width) into int32. */
static int32_t *input_i32(case_file *c, const char *name, size_t *count, ldm_status *st) {
    const st_tensor *t = input(c, name, st);
    if (!t) return NULL;
    size_t n = st_numel(t), es = ldm_dtype_size(t->dtype);
    int32_t *v = malloc((n ? n : 1) * sizeof *v);
    if (!v) {
        if (!*st) *st = ldm_fail(LDM_ERR_NO_MEMORY, "out of memory");
        return NULL;
    }
    for (size_t i = 0; i < n; i++) {
        const char *p = (const char *)t->data + i * es;
        int64_t x = 0;
        if (t->dtype == LDM_DT_I64) memcpy(&x, p, 8);
        else if (t->dtype == LDM_DT_I32) { int32_t y; memcpy(&y, p, 4); x = y; }
        else if (t->dtype == LDM_DT_U8) x = *(const uint8_t *)p;
        else if (!*st) *st = ldm_fail(LDM_ERR_FORMAT, "'%s' is not an integer tensor", name);
        v[i] = (int32_t)x;
    }
    *count = n;
    return v;
}

/* D and E UNet cases: unet_input = cat([x, lr_cond | c_concat], 1), D without context, E with
 * noise_level labels (README 5.2, 9.3). */
static ldm_status run_unet_concat(ldm_context *ctx, ldm_model *m, case_file *c, st_writer *w) {
    ldm_status st = LDM_OK;
    bool x4 = m->family == LDM_FAMILY_X4_UPSCALER;
    const st_tensor *xt = input(c, "x", &st), *tt = input(c, "timesteps", &st);
    const st_tensor *cct = input(c, x4 ? "c_concat" : "lr_cond", &st);
    const st_tensor *ct = x4 ? input(c, "context", &st) : NULL;
    if (st) return st;
    int32_t n = (int32_t)xt->shape[0], xc = (int32_t)xt->shape[1], h = (int32_t)xt->shape[2], wd = (int32_t)xt->shape[3];
    if (xt->ndim != 4 || cct->ndim != 4 || tt->ndim != 1 || tt->shape[0] != n || cct->shape[0] != n ||
        cct->shape[2] != h || cct->shape[3] != wd || xc + cct->shape[1] != m->unet.in_channels ||
        (ct && (ct->ndim != 3 || ct->shape[0] != n)))
        return ldm_fail(LDM_ERR_FORMAT, "unet case: inconsistent x/%s/timesteps/context shapes", x4 ? "c_concat" : "lr_cond");
    int32_t cc = (int32_t)cct->shape[1], C = xc + cc;
    size_t plane = (size_t)h * wd, nl = 0;
    float *x = input_f32(c, "x", &st), *t = input_f32(c, "timesteps", &st), *ccd = input_f32(c, x4 ? "c_concat" : "lr_cond", &st);
    float *cx = ct ? input_f32(c, "context", &st) : NULL;
    int32_t *labels = x4 ? input_i32(c, "noise_level", &nl, &st) : NULL;
    if (!st && x4 && nl != (size_t)n) st = ldm_fail(LDM_ERR_FORMAT, "noise_level must be [%d]", n);
    float *in = malloc((size_t)n * C * plane * sizeof *in), *out = malloc((size_t)n * m->unet.out_channels * plane * sizeof *out);
    if (!st && (!in || !out)) st = ldm_fail(LDM_ERR_NO_MEMORY, "out of memory");
    for (int b = 0; !st && b < n; b++) {
        memcpy(in + (size_t)b * C * plane, x + (size_t)b * xc * plane, (size_t)xc * plane * sizeof *in);
        memcpy(in + ((size_t)b * C + xc) * plane, ccd + (size_t)b * cc * plane, (size_t)cc * plane * sizeof *in);
    }
    ldm_exec ex;
    ctx_begin(ctx, &ex);
    if (!st) st = add_f32(w, "unet_input", 4, (int64_t[]){n, C, h, wd}, in);
    if (!st) st = unet_forward_ex(&ex, m, n, h, wd, in, t, labels, ct ? (int32_t)ct->shape[1] : 0, cx, out);
    if (!st) st = add_f32(w, "out", 4, (int64_t[]){n, m->unet.out_channels, h, wd}, out);
    free(x);
    free(t);
    free(ccd);
    free(cx);
    free(labels);
    free(in);
    free(out);
    return st;
}

/* D vq_encode_decode: h = quant_conv(encoder(image)), quant + indices (VectorQuantizer2), decoded
 * with and without the quantisation. */
static ldm_status run_vq_encode_decode(ldm_context *ctx, ldm_model *m, case_file *c, st_writer *w) {
    ldm_status st = LDM_OK;
    const st_tensor *it = input(c, "image", &st);
    if (st) return st;
    if (it->ndim != 4 || it->shape[1] != 3) return ldm_fail(LDM_ERR_FORMAT, "image must be [N, 3, H, W]");
    int32_t n = (int32_t)it->shape[0], H = (int32_t)it->shape[2], Wd = (int32_t)it->shape[3];
    int32_t f = m->downscale, e = m->vae.embed_dim, h = H / f, wd = Wd / f;
    size_t lat = (size_t)n * e * h * wd, pix = (size_t)n * 3 * H * Wd;
    float *img = input_f32(c, "image", &st);
    float *hb = malloc(lat * sizeof *hb), *q = malloc(lat * sizeof *q), *dec = malloc(pix * sizeof *dec);
    int32_t *idx = malloc((size_t)n * h * wd * sizeof *idx);
    if (!st && (!hb || !q || !dec || !idx)) st = ldm_fail(LDM_ERR_NO_MEMORY, "out of memory");
    ldm_exec ex;
    ctx_begin(ctx, &ex);
    if (!st) st = vae_encode_moments(&ex, m, n, H, Wd, img, hb);
    if (!st) st = add_f32(w, "h", 4, (int64_t[]){n, e, h, wd}, hb);
    if (!st) st = vq_quantize(m, n, h, wd, hb, q, idx);
    if (!st) st = add_f32(w, "quant", 4, (int64_t[]){n, e, h, wd}, q);
    if (!st) {
        int64_t *i64 = malloc((size_t)n * h * wd * sizeof *i64);
        if (!i64) st = ldm_fail(LDM_ERR_NO_MEMORY, "out of memory");
        for (size_t i = 0; !st && i < (size_t)n * h * wd; i++) i64[i] = idx[i];
        if (!st) st = st_writer_add(w, "indices", LDM_DT_I64, 3, (int64_t[]){n, h, wd}, i64);
        free(i64);
    }
    if (!st) st = vae_decode(&ex, m, n, h, wd, q, dec);
    if (!st) st = add_f32(w, "decoded", 4, (int64_t[]){n, 3, H, Wd}, dec);
    if (!st) st = vae_decode(&ex, m, n, h, wd, hb, dec);
    if (!st) st = add_f32(w, "decoded_noquant", 4, (int64_t[]){n, 3, H, Wd}, dec);
    free(img);
    free(hb);
    free(q);
    free(dec);
    free(idx);
    return st;
}

/* E noise_augmentation: x_aug = q_sample(lr_image, noise_level, noise) and the two factors. */
static ldm_status run_noise_augmentation(ldm_model *m, case_file *c, st_writer *w) {
    ldm_status st = LDM_OK;
    if (m->family != LDM_FAMILY_X4_UPSCALER) return ldm_fail(LDM_ERR_UNSUPPORTED, "noise augmentation is the x4 upscaler's");
    const st_tensor *lt = input(c, "lr_image", &st), *nt = input(c, "noise", &st);
    if (st) return st;
    size_t nl = 0;
    int32_t *levels = input_i32(c, "noise_level", &nl, &st);
    int32_t n = (int32_t)lt->shape[0];
    if (!st && (lt->ndim != 4 || st_numel(nt) != st_numel(lt) || nl != (size_t)n))
        st = ldm_fail(LDM_ERR_FORMAT, "noise_augmentation: lr_image, noise and noise_level disagree");
    float *lr = input_f32(c, "lr_image", &st), *noise = input_f32(c, "noise", &st);
    size_t per = n ? st_numel(lt) / (size_t)n : 0;
    float *xa = malloc((st_numel(lt) + 2 * (size_t)n + 1) * sizeof *xa);
    if (!st && !xa) st = ldm_fail(LDM_ERR_NO_MEMORY, "out of memory");
    if (!st) st = upscale_noise_augment(m, n, per, lr, levels, noise, xa);
    if (!st) st = add_f32(w, "x_aug", lt->ndim, lt->shape, xa);
    if (!st) {
        float *fa = xa + st_numel(lt), *fb = fa + n;
        for (int b = 0; b < n; b++) {
            fa[b] = m->lr_sqrt_alphas_cumprod[levels[b]];
            fb[b] = m->lr_sqrt_one_minus_alphas_cumprod[levels[b]];
        }
        st = add_f32(w, "sqrt_alphas_cumprod_lr", 1, (int64_t[]){n}, fa);
        if (!st) st = add_f32(w, "sqrt_one_minus_alphas_cumprod_lr", 1, (int64_t[]){n}, fb);
    }
    free(levels);
    free(lr);
    free(noise);
    free(xa);
    return st;
}

/* D sr_ddim_eta0/1 and E upscale_ddim[_nonsquare]: the pipeline from lr_u8 (README 5.7, 9.3). */
static ldm_status run_upscale_case(ldm_context *ctx, ldm_model *m, case_file *c, st_writer *w) {
    ldm_status st = LDM_OK;
    bool x4 = m->family == LDM_FAMILY_X4_UPSCALER;
    if (!x4 && m->family != LDM_FAMILY_LDM_SR) return ldm_fail(LDM_ERR_UNSUPPORTED, "%s is not an upscaling model", m->family_name);
    const st_tensor *xt = input(c, "x_T", &st), *ut = input(c, "lr_u8", &st);
    if (st) return st;
    if (xt->ndim != 4 || xt->shape[0] != 1 || xt->shape[1] != m->latent_channels || ut->ndim != 4 || ut->shape[0] != 1 ||
        ut->shape[1] != 3 || ut->shape[2] != xt->shape[2] || ut->shape[3] != xt->shape[3] || ut->dtype != LDM_DT_U8)
        return ldm_fail(LDM_ERR_FORMAT, "x_T must be [1, %d, h, w] and lr_u8 uint8 [1, 3, h, w]", m->latent_channels);
    int32_t h = (int32_t)xt->shape[2], wd = (int32_t)xt->shape[3], f = m->downscale;
    size_t lat = (size_t)m->latent_channels * h * wd, plane = (size_t)h * wd, pix = (size_t)3 * h * f * wd * f;
    float *x_T = input_f32(c, "x_T", &st), *lr = malloc(3 * plane * sizeof *lr);
    float *aug = x4 ? input_f32(c, "aug_noise", &st) : NULL;
    if (!st && x4 && st_numel(st_find(c->f, "aug_noise")) != 3 * plane) st = ldm_fail(LDM_ERR_FORMAT, "aug_noise must be [1, 3, h, w]");
    const st_tensor *nt = st_find(c->f, "noises");
    float *noises = NULL;
    if (nt && !st) st = st_read_f32(nt, &noises);
    if (!st && !lr) st = ldm_fail(LDM_ERR_NO_MEMORY, "out of memory");
    if (!st) upscale_lr_from_u8(m, (const uint8_t *)ut->data, 3 * plane, lr);
    int32_t level = 0;
    if (x4) {
        size_t nl = 0;
        int32_t *lv = st_find(c->f, "noise_level") ? input_i32(c, "noise_level", &nl, &st) : NULL;
        level = lv && nl ? lv[0] : atoi(meta_or(c, "noise_level", "20"));
        free(lv);
    }
    /* eta: metadata, else from the name (*_eta1 -> 1). */
    float eta = strstr(c->kind, "_eta1") ? 1.0f : 0.0f;
    if (st_meta(c->f, "eta")) eta = strtof(st_meta(c->f, "eta"), NULL);
    trace_set ts = {0};
    ldm_upscale_job j = {.lr = lr, .h = h, .w = wd, .prompt = meta_or(c, "prompt", ""),
                         .negative_prompt = meta_or(c, "negative_prompt", ""),
                         .cfg_scale = x4 ? strtof(meta_or(c, "guidance_scale", "1"), NULL) : 1.0f, .noise_level = level,
                         .steps = atoi(meta_or(c, "steps", "0")), .sampler = sampler_find("ddim"),
                         .scheduler = LDM_SCHED_DISCRETE, .eta = eta, .x_T = x_T, .aug_noise = aug, .noises = noises,
                         .n_noises = noises ? (int32_t)(st_numel(nt) / lat) : 0, .trace = trace_cb, .trace_user = &ts};
    float *latent = malloc(lat * sizeof *latent), *image = malloc(pix * sizeof *image);
    float *noquant = x4 ? NULL : malloc(pix * sizeof *noquant);
    int32_t *idx = x4 ? NULL : malloc(plane * sizeof *idx);
    j.latent_final = latent;
    j.image_noquant = noquant;
    j.final_indices = idx;
    if (!st && (!latent || !image || (!x4 && (!noquant || !idx)))) st = ldm_fail(LDM_ERR_NO_MEMORY, "out of memory");
    if (!st) st = pipeline_upscale(ctx, m, &j);
    /* README 5.7: `image` is the decode of the runner's own latent_final (VQ: quantised). */
    if (!st) {
        ldm_exec ex;
        ctx_begin(ctx, &ex);
        st = upscale_decode(&ex, m, h, wd, latent, 0, false, NULL, image);
    }
    int batch = x4 && j.cfg_scale != 1.0f ? 2 : 1;
    int64_t ls[4] = {1, m->latent_channels, h, wd}, b2[4] = {batch, m->latent_channels, h, wd};
    int64_t ctxs[3] = {1, 77, m->clip.width}, ids2[2] = {1, 77};
    if (!st) st = add_f32(w, "latent_final", 4, ls, latent);
    if (!st) st = add_f32(w, "image", 4, (int64_t[]){1, 3, h * f, wd * f}, image);
    if (!st && noquant) st = add_f32(w, "image_noquant", 4, (int64_t[]){1, 3, h * f, wd * f}, noquant);
    if (!st && idx) {
        int64_t *i64 = malloc(plane * sizeof *i64);
        if (!i64) st = ldm_fail(LDM_ERR_NO_MEMORY, "out of memory");
        for (size_t i = 0; !st && i < plane; i++) i64[i] = idx[i];
        if (!st) st = st_writer_add(w, "final_indices", LDM_DT_I64, 3, (int64_t[]){1, h, wd}, i64);
        free(i64);
    }
    if (!st) st = put_trace(w, &ts, "x_steps", true, 4, ls, false);
    if (!st) st = put_trace(w, &ts, "pred_x0_steps", true, 4, ls, false);
    if (!st) st = put_trace(w, &ts, "unet_in_x", true, 4, b2, false);
    if (!st) st = put_trace(w, &ts, "unet_out", true, 4, b2, false);
    if (!st) st = put_trace(w, &ts, "unet_in_t", true, 1, (int64_t[]){batch}, false);
    if (!st && x4) {
        st = put_trace(w, &ts, "x_aug", false, 4, (int64_t[]){1, 3, h, wd}, false);
        if (!st) st = put_trace(w, &ts, "context_cond", false, 3, ctxs, false);
        if (!st) st = put_trace(w, &ts, "context_uncond", false, 3, ctxs, false);
        if (!st) st = put_trace(w, &ts, "ids_cond", false, 2, ids2, true);
        if (!st) st = put_trace(w, &ts, "ids_uncond", false, 2, ids2, true);
    }
    trace_buf *tb;
    if (!st && (tb = trace_get(&ts, "ddim_timesteps")) && tb->count) {
        int64_t kk[1] = {(int64_t)tb->count};
        st = put_trace(w, &ts, "ddim_timesteps", false, 1, kk, true);
        if (!st) st = put_trace(w, &ts, "ddim_alphas", false, 1, kk, false);
        if (!st) st = put_trace(w, &ts, "ddim_alphas_prev", false, 1, kk, false);
        if (!st) st = put_trace(w, &ts, "ddim_sigmas", false, 1, kk, false);
    }
    trace_free(&ts);
    free(x_T);
    free(lr);
    free(aug);
    free(noises);
    free(latent);
    free(image);
    free(noquant);
    free(idx);
    return st;
}

/* Runs the kinds this file owns; false when `kind` is not one of them (for this model). */
static bool run_paper_case(ldm_context *ctx, ldm_model *m, case_file *c, st_writer *w, const char *kind, ldm_status *st) {
    bool concat = m->family == LDM_FAMILY_LDM_SR || m->family == LDM_FAMILY_X4_UPSCALER;
    if (strcmp(kind, "text_encoder") == 0 && m->cond == COND_BERT) *st = run_text_encoder_bert(ctx, m, c, w);
    else if (strncmp(kind, "unet_", 5) == 0 && concat) *st = run_unet_concat(ctx, m, c, w);
    else if (strcmp(kind, "vq_encode_decode") == 0) *st = run_vq_encode_decode(ctx, m, c, w);
    else if (strcmp(kind, "noise_augmentation") == 0) *st = run_noise_augmentation(m, c, w);
    else if (strncmp(kind, "sr_", 3) == 0 || strncmp(kind, "upscale_", 8) == 0) *st = run_upscale_case(ctx, m, c, w);
    else return false;
    return true;
}
