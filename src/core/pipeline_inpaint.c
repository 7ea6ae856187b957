/* Inpainting: the mask, the masked-content fill, the 9-channel conditioning of inpainting models
 * and the latent blending of ordinary ones; the sampling itself is the txt2img / img2img core
 * (pipeline.c), which reads g->c_concat and g->blend_*.
 *
 *  - 9-channel models (runwayml scripts/inpaint_st.py, README 5.6): mask thresholded at 0.5,
 *    masked_image = image * (mask < 0.5), mask_latent = nearest (pixel (f i, f j)),
 *    masked_image_latent = scale * VAE(masked_image), c_concat = [mask_latent, masked_image_latent]
 *    in every UNet row (cond and uncond). No blending (runwayml and diffusers do none).
 *  - Ordinary models (CompVis ddim.py `mask`, A1111 img2img with a mask): the latent mask is the
 *    box average of the (blurred) mask over each f x f block, rounded to 0/1 (A1111 np.around);
 *    outside it the latent is reset to the noised init latent after every step.
 *  - Both: the output is composited over the original through the blurred mask (A1111 overlay).
 * Deterministic: the VAE posterior mean is used (as for img2img, SEEDED_CONTRACT item 4) unless
 * g->posterior_noise is injected (the conformance cases). */
#include "pipeline.h"

#include "nets.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static void trace(ldm_gen *g, const char *name, const float *data, size_t count) {
    if (g->trace) g->trace(g->trace_user, name, data, count);
}

/* Reflect-101 border (OpenCV's default, used by A1111's cv2.GaussianBlur mask blur). */
static int reflect101(int i, int n) {
    if (n == 1) return 0;
    while (i < 0 || i >= n) i = i < 0 ? -i : 2 * n - 2 - i;
    return i;
}

/* Separable Gaussian blur of a [H, W] plane in place: A1111 processing.py mask blur,
 * cv2.GaussianBlur with kernel size 2 * int(2.5 sigma + 0.5) + 1 along each axis. */
static ldm_status gaussian_blur(float *img, int W, int H, float sigma) {
    int r = (int)(2.5f * sigma + 0.5f);
    if (r < 1) return LDM_OK;
    float *k = malloc((size_t)(2 * r + 1) * sizeof *k);
    float *tmp = malloc((size_t)W * H * sizeof *tmp);
    if (!k || !tmp) {
        free(k);
        free(tmp);
        return ldm_fail(LDM_ERR_NO_MEMORY, "out of memory");
    }
    double sum = 0.0;
    for (int i = -r; i <= r; i++) sum += exp(-(double)i * i / (2.0 * (double)sigma * sigma));
    for (int i = -r; i <= r; i++) k[i + r] = (float)(exp(-(double)i * i / (2.0 * (double)sigma * sigma)) / sum);
    for (int y = 0; y < H; y++)
        for (int x = 0; x < W; x++) {
            float acc = 0.0f;
            for (int i = -r; i <= r; i++) acc += k[i + r] * img[(size_t)y * W + reflect101(x + i, W)];
            tmp[(size_t)y * W + x] = acc;
        }
    for (int y = 0; y < H; y++)
        for (int x = 0; x < W; x++) {
            float acc = 0.0f;
            for (int i = -r; i <= r; i++) acc += k[i + r] * tmp[(size_t)reflect101(y + i, H) * W + x];
            img[(size_t)y * W + x] = acc;
        }
    free(k);
    free(tmp);
    return LDM_OK;
}

/* Box blur of radius r along rows then columns, edges clamped: three of them approximate a
 * Gaussian (what PIL's GaussianBlur does), in O(1) per pixel for the large radii of `fill`. */
static void box_blur(float *img, float *tmp, int W, int H, int r) {
    for (int y = 0; y < H; y++) {
        const float *row = img + (size_t)y * W;
        double acc = 0.0;
        for (int i = -r; i <= r; i++) acc += row[i < 0 ? 0 : i >= W ? W - 1 : i];
        for (int x = 0; x < W; x++) {
            tmp[(size_t)y * W + x] = (float)(acc / (2 * r + 1));
            int out = x - r, in = x + r + 1;
            acc += row[in >= W ? W - 1 : in] - row[out < 0 ? 0 : out];
        }
    }
    for (int x = 0; x < W; x++) {
        double acc = 0.0;
        for (int i = -r; i <= r; i++) acc += tmp[(size_t)(i < 0 ? 0 : i >= H ? H - 1 : i) * W + x];
        for (int y = 0; y < H; y++) {
            img[(size_t)y * W + x] = (float)(acc / (2 * r + 1));
            int out = y - r, in = y + r + 1;
            acc += tmp[(size_t)(in >= H ? H - 1 : in) * W + x] - tmp[(size_t)(out < 0 ? 0 : out) * W + x];
        }
    }
}

/* A1111 modules/masking.py fill(): the known pixels as premultiplied RGBa (alpha = 1 - mask),
 * blurred at radii 256, 64, 16, 4, 2, 0 (repeated 1, 1, 2, 4, 2, 1 times) and alpha-composited
 * in that order, so the masked region takes the colours of its surroundings. image [3, H, W]
 * in place; only the masked pixels change (the last pass puts the known ones back on top). */
static ldm_status fill_masked(float *image, const float *mask, int W, int H) {
    static const int radius[6] = {256, 64, 16, 4, 2, 0}, repeats[6] = {1, 1, 2, 4, 2, 1};
    size_t plane = (size_t)W * H;
    float *buf = malloc(plane * 9 * sizeof *buf);
    if (!buf) return ldm_fail(LDM_ERR_NO_MEMORY, "out of memory");
    float *src = buf, *dst = buf + 4 * plane, *tmp = buf + 8 * plane; /* [r g b a] premultiplied, dst straight */
    memset(dst, 0, 4 * plane * sizeof *dst);
    for (int p = 0; p < 6; p++) {
        for (size_t i = 0; i < plane; i++) {
            float a = 1.0f - mask[i];
            for (int c = 0; c < 3; c++) src[c * plane + i] = image[c * plane + i] * a;
            src[3 * plane + i] = a;
        }
        /* Three box passes of width w with 3 (w^2 - 1) / 12 = sigma^2. */
        int rb = radius[p] ? (int)lrint((sqrt(4.0 * radius[p] * radius[p] + 1.0) - 1.0) / 2.0) : 0;
        for (int pass = 0; pass < 3 && rb > 0; pass++)
            for (int c = 0; c < 4; c++) box_blur(src + c * plane, tmp, W, H, rb);
        for (int k = 0; k < repeats[p]; k++) {
            for (size_t i = 0; i < plane; i++) {
                float sa = src[3 * plane + i], da = dst[3 * plane + i], oa = sa + da * (1.0f - sa);
                if (oa <= 0.0f) continue;
                for (int c = 0; c < 3; c++) {
                    float sc = sa > 0.0f ? src[c * plane + i] / sa : 0.0f; /* un-premultiply (RGBa -> RGBA) */
                    dst[c * plane + i] = (sc * sa + dst[c * plane + i] * da * (1.0f - sa)) / oa;
                }
                dst[3 * plane + i] = oa;
            }
        }
    }
    for (size_t i = 0; i < plane; i++)
        if (mask[i] > 0.0f && dst[3 * plane + i] > 0.0f)
            for (int c = 0; c < 3; c++) image[c * plane + i] = dst[c * plane + i];
    free(buf);
    return LDM_OK;
}

/* scale_factor * z of an image, z = posterior mean, or mean + std * noise when noise is given
 * (DiagonalGaussianDistribution.sample(), logvar clamped to [-30, 20]). */
static ldm_status encode_latent(ldm_exec *ex, const ldm_model *m, int32_t H, int32_t W, const float *image,
                                const float *noise, float *latent) {
    size_t n = (size_t)m->vae.embed_dim * (H / m->downscale) * (W / m->downscale);
    float *mom = malloc(2 * n * sizeof *mom);
    if (!mom) return ldm_fail(LDM_ERR_NO_MEMORY, "out of memory");
    ldm_status st = vae_encode_moments(ex, m, 1, H, W, image, mom);
    for (size_t i = 0; !st && i < n; i++) {
        float lv = mom[n + i];
        lv = lv < -30.0f ? -30.0f : lv > 20.0f ? 20.0f : lv;
        float z = noise ? mom[i] + expf(0.5f * lv) * noise[i] : mom[i];
        latent[i] = m->scale_factor * z;
    }
    free(mom);
    return st;
}

ldm_status pipeline_full_mask_concat(ldm_exec *ex, const ldm_model *m, int32_t H, int32_t W, float *out) {
    /* Only inpainting models (mask + latent); the SR models' concat is a low-res image. */
    if (m->concat_channels != 1 + m->vae.embed_dim)
        return ldm_fail(LDM_ERR_UNSUPPORTED, "the %s model is conditioned on a low-resolution image: use ldm_upscale",
                        m->family_name);
    size_t lplane = (size_t)(H / m->downscale) * (W / m->downscale);
    float *zero = calloc((size_t)3 * H * W, sizeof *zero);
    if (!zero) return ldm_fail(LDM_ERR_NO_MEMORY, "out of memory");
    for (size_t i = 0; i < lplane; i++) out[i] = 1.0f;
    ldm_status st = encode_latent(ex, m, H, W, zero, NULL, out + lplane);
    free(zero);
    return st;
}

ldm_status pipeline_inpaint(ldm_context *ctx, ldm_model *m, ldm_gen *g) {
    if (!g->init_image || !g->mask) return ldm_fail(LDM_ERR_INVALID_ARG, "inpainting needs an image and a mask");
    int32_t W = g->width, H = g->height, f = m->downscale;
    if (W <= 0 || H <= 0 || W % f || H % f || W > 8192 || H > 8192)
        return ldm_fail(LDM_ERR_INVALID_ARG, "width and height must be multiples of %d in 1..8192 (got %dx%d)", f, W, H);
    if (!(g->strength >= 0.0 && g->strength <= 1.0))
        return ldm_fail(LDM_ERR_INVALID_ARG, "strength must be in 0..1 (got %g)", g->strength);
    if (!(g->mask_blur >= 0.0f && g->mask_blur <= 1024.0f))
        return ldm_fail(LDM_ERR_INVALID_ARG, "mask blur %g out of range 0..1024", (double)g->mask_blur);
    if (g->fill < LDM_INPAINT_FILL_ORIGINAL || g->fill > LDM_INPAINT_FILL_LATENT_NOTHING)
        return ldm_fail(LDM_ERR_INVALID_ARG, "unknown masked-content fill %d", g->fill);
    int32_t h = H / f, w = W / f, c = m->latent_channels, cc = m->concat_channels;
    size_t plane = (size_t)W * H, lplane = (size_t)h * w, n = (size_t)c * lplane;
    if (cc && cc != 1 + m->vae.embed_dim)
        return ldm_fail(LDM_ERR_UNSUPPORTED, "the %s model is conditioned on a low-resolution image, not a mask",
                        m->family_name);
    bool concat = cc > 0, partial = g->strength < 1.0;
    ldm_exec ex;
    ctx_begin(ctx, &ex);
    /* One allocation: blurred mask, a working image, c_concat, latent mask, init latent, noise. */
    float *mb = malloc((plane * 4 + (size_t)cc * lplane + lplane + 2 * n) * sizeof *mb);
    if (!mb) return ldm_fail(LDM_ERR_NO_MEMORY, "out of memory for a %dx%d inpainting", W, H);
    float *img = mb + plane, *cat = img + 3 * plane, *lmask = cat + (size_t)cc * lplane, *init = lmask + lplane;
    float *noise = init + n;
    ldm_status st = LDM_OK;
    for (size_t i = 0; i < plane; i++) mb[i] = g->mask[i] < 0.0f ? 0.0f : g->mask[i] > 1.0f ? 1.0f : g->mask[i];
    if (g->mask_blur > 0.0f) st = gaussian_blur(mb, W, H, g->mask_blur);

    if (!st && concat) {
        /* inpaint_st.py make_batch_sd: mask < 0.5 -> 0 else 1; masked_image = image * (mask < 0.5). */
        float *masked = img; /* [3, H, W] */
        float *binary = malloc(plane * sizeof *binary);
        if (!binary) st = ldm_fail(LDM_ERR_NO_MEMORY, "out of memory");
        for (size_t i = 0; !st && i < plane; i++) binary[i] = mb[i] < 0.5f ? 0.0f : 1.0f;
        if (!st) trace(g, "mask", binary, plane);
        for (int ch = 0; !st && ch < 3; ch++)
            for (size_t i = 0; i < plane; i++)
                masked[ch * plane + i] = g->init_image[ch * plane + i] * (binary[i] < 0.5f ? 1.0f : 0.0f);
        if (!st) trace(g, "masked_image", masked, 3 * plane);
        /* F.interpolate(mask, size=latent) in its default nearest mode: pixel (f i, f j). */
        for (int y = 0; !st && y < h; y++)
            for (int x = 0; x < w; x++) cat[(size_t)y * w + x] = binary[(size_t)y * f * W + (size_t)x * f];
        if (!st) trace(g, "mask_latent", cat, lplane);
        if (!st) st = encode_latent(&ex, m, H, W, masked, g->posterior_noise, cat + lplane);
        if (!st && ex.status) st = ex.status;
        if (!st) trace(g, "masked_image_latent", cat + lplane, (size_t)(cc - 1) * lplane);
        if (!st) trace(g, "c_concat", cat, (size_t)cc * lplane);
        free(binary);
    }

    /* The init latent: blended back outside the mask (ordinary models) and the start of a
     * partial-strength run. */
    bool need_init = !concat || partial;
    if (!st && need_init) {
        memcpy(img, g->init_image, 3 * plane * sizeof *img);
        if (g->fill == LDM_INPAINT_FILL_FILL) st = fill_masked(img, mb, W, H);
        if (!st) st = encode_latent(&ex, m, H, W, img, NULL, init);
        if (!st && ex.status) st = ex.status;
        /* A1111: the mask resized to the latent, np.around (0.5 rounds to 0). */
        for (int y = 0; !st && y < h; y++)
            for (int x = 0; x < w; x++) {
                double a = 0.0;
                for (int dy = 0; dy < f; dy++)
                    for (int dx = 0; dx < f; dx++) a += mb[(size_t)(y * f + dy) * W + x * f + dx];
                lmask[(size_t)y * w + x] = a / (f * f) > 0.5 ? 1.0f : 0.0f;
            }
        if (!st && (g->fill == LDM_INPAINT_FILL_LATENT_NOISE || g->fill == LDM_INPAINT_FILL_LATENT_NOTHING)) {
            /* A1111: "latent noise" is the seed's own noise (create_random_tensors with the same
             * seeds), i.e. draw 0, read here from a copy of the stream so it is not advanced. */
            if (g->fill == LDM_INPAINT_FILL_LATENT_NOISE) {
                if (g->x_T) memcpy(noise, g->x_T, n * sizeof *noise);
                else if (g->rng) {
                    ldm_rng copy = *g->rng;
                    st = ldm_rng_randn(&copy, noise, n);
                } else st = ldm_fail(LDM_ERR_INVALID_ARG, "latent noise fill needs a noise stream");
            }
            for (int ch = 0; !st && ch < c; ch++)
                for (size_t i = 0; i < lplane; i++) {
                    float v = g->fill == LDM_INPAINT_FILL_LATENT_NOISE ? noise[ch * lplane + i] : 0.0f;
                    init[ch * lplane + i] = init[ch * lplane + i] * (1.0f - lmask[i]) + v * lmask[i];
                }
        }
        if (!st) trace(g, "init_latent", init, n);
    }

    /* The sampling core starts a new call on ctx (ctx_begin clears the cancel flag): a cancel
     * requested during the preparation above must not be lost. */
    if (!st && atomic_load(&ctx->cancel)) st = ldm_fail(LDM_ERR_CANCELLED, "cancelled");
    if (!st) {
        const float *saved_cc = g->c_concat, *saved_bm = g->blend_mask, *saved_bi = g->blend_init,
                    *saved_il = g->init_latent;
        if (concat) g->c_concat = cat;
        if (!concat) {
            g->blend_mask = lmask;
            g->blend_init = init;
        }
        if (partial) g->init_latent = init;
        /* Strength 1 starts from pure noise like txt2img (diffusers' is_strength_max), so the
         * 9-channel golden cases are txt2img runs with c_concat. */
        st = partial ? pipeline_img2img(ctx, m, g) : pipeline_txt2img(ctx, m, g);
        g->c_concat = saved_cc;
        g->blend_mask = saved_bm;
        g->blend_init = saved_bi;
        g->init_latent = saved_il;
    }
    if (!st && g->composite && g->image) {
        /* A1111 apply_overlay: the original shows through outside the (blurred) mask. */
        for (int ch = 0; ch < 3; ch++)
            for (size_t i = 0; i < plane; i++) {
                float *o = &g->image[ch * plane + i];
                *o = g->init_image[ch * plane + i] * (1.0f - mb[i]) + *o * mb[i];
            }
    }
    free(mb);
    return st;
}
