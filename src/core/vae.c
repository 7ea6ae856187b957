/* The KL autoencoder (CompVis ldm/modules/diffusionmodules/model.py Encoder/Decoder and
 * ldm/models/autoencoder.py AutoencoderKL), read by keys under first_stage_model. */
#include "nets.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#define P "first_stage_model."
#define GN_GROUPS 32
#define GN_EPS 1e-6f /* model.py Normalize(): GroupNorm(32, eps=1e-6) */

typedef struct {
    ldm_exec *ex;
    const ldm_model *m;
} vae_run;

#define W(...) model_weightf(r->m, &r->ex->status, __VA_ARGS__)

/* ResnetBlock: norm1, swish, conv1, norm2, swish, (dropout), conv2, + x (nin_shortcut 1x1 when
 * the channel count changes). Keeps x. */
static ldm_tensor *resnet_block(vae_run *r, const ldm_tensor *x, const char *p) {
    ldm_exec *ex = r->ex;
    ldm_tensor *h = op_group_norm(ex, x, W("%snorm1.weight", p), W("%snorm1.bias", p), GN_GROUPS, GN_EPS, 1);
    ldm_tensor *h2 = op_conv2d(ex, h, W("%sconv1.weight", p), W("%sconv1.bias", p), 1, 1);
    op_free(ex, h);
    h = op_group_norm(ex, h2, W("%snorm2.weight", p), W("%snorm2.bias", p), GN_GROUPS, GN_EPS, 1);
    op_free(ex, h2);
    h2 = op_conv2d(ex, h, W("%sconv2.weight", p), W("%sconv2.bias", p), 1, 1);
    op_free(ex, h);
    if (model_has(r->m, "%snin_shortcut.weight", p)) {
        ldm_tensor *s = op_conv2d(ex, x, W("%snin_shortcut.weight", p), W("%snin_shortcut.bias", p), 1, 0);
        return op_add_into(ex, s, h2);
    }
    ldm_tensor *y = op_add(ex, x, h2);
    op_free(ex, h2);
    return y;
}

/* AttnBlock: single-head self-attention over the h*w positions with 1x1-conv q/k/v/proj_out,
 * scale C^-0.5, residual. Keeps x. */
static ldm_tensor *attn_block(vae_run *r, const ldm_tensor *x, const char *p) {
    ldm_exec *ex = r->ex;
    if (!x) return NULL;
    int64_t C = x->ne[1], H = x->ne[2], Wd = x->ne[3];
    ldm_tensor *h = op_group_norm(ex, x, W("%snorm.weight", p), W("%snorm.bias", p), GN_GROUPS, GN_EPS, 0);
    ldm_tensor *qkv[3];
    const char *names[3] = {"q", "k", "v"};
    for (int i = 0; i < 3; i++) {
        ldm_tensor *c = op_conv2d(ex, h, W("%s%s.weight", p, names[i]), W("%s%s.bias", p, names[i]), 1, 0);
        qkv[i] = op_to_nlc(ex, c);
        op_free(ex, c);
    }
    op_free(ex, h);
    ldm_tensor *a = op_attention(ex, qkv[0], qkv[1], qkv[2], 1, 1.0f / sqrtf((float)C), 0);
    for (int i = 0; i < 3; i++) op_free(ex, qkv[i]);
    ldm_tensor *an = op_to_nchw(ex, a, H, Wd);
    op_free(ex, a);
    ldm_tensor *o = op_conv2d(ex, an, W("%sproj_out.weight", p), W("%sproj_out.bias", p), 1, 0);
    op_free(ex, an);
    ldm_tensor *y = op_add(ex, x, o);
    op_free(ex, o);
    return y;
}

/* Applies f(x, prefix) and frees x: keeps the forward pass straight-line. */
static ldm_tensor *step(vae_run *r, ldm_tensor *x, ldm_tensor *(*f)(vae_run *, const ldm_tensor *, const char *),
                        const char *fmt, int a, int b) {
    char p[160];
    snprintf(p, sizeof p, fmt, a, b);
    ldm_tensor *y = f(r, x, p);
    op_free(r->ex, x);
    return y;
}

static ldm_tensor *conv_step(vae_run *r, ldm_tensor *x, const char *wname, const char *bname, int pad) {
    ldm_tensor *y = op_conv2d(r->ex, x, W("%s", wname), W("%s", bname), 1, pad);
    op_free(r->ex, x);
    return y;
}

static ldm_tensor *mid(vae_run *r, ldm_tensor *h, const char *which) {
    h = step(r, h, resnet_block, which[0] == 'e' ? P "encoder.mid.block_1." : P "decoder.mid.block_1.", 0, 0);
    h = step(r, h, attn_block, which[0] == 'e' ? P "encoder.mid.attn_1." : P "decoder.mid.attn_1.", 0, 0);
    h = step(r, h, resnet_block, which[0] == 'e' ? P "encoder.mid.block_2." : P "decoder.mid.block_2.", 0, 0);
    return h;
}

ldm_status vae_encode_moments(ldm_exec *ex, const ldm_model *m, int32_t n, int32_t H, int32_t Wd, const float *image,
                              float *moments) {
    vae_run run = {ex, m}, *r = &run;
    const vae_config *v = &m->vae;
    if (H % m->downscale || Wd % m->downscale)
        return ldm_fail(LDM_ERR_INVALID_ARG, "image size %dx%d must be a multiple of %d", Wd, H, m->downscale);
    ldm_tensor *x = op_from_host(ex, 4, (int64_t[]){n, v->in_channels, H, Wd}, image);
    ldm_tensor *h = conv_step(r, x, P "encoder.conv_in.weight", P "encoder.conv_in.bias", 1);
    for (int i = 0; i < v->n_levels; i++) {
        for (int j = 0; j < v->num_res_blocks; j++) {
            h = step(r, h, resnet_block, P "encoder.down.%d.block.%d.", i, j);
            if (model_has(m, P "encoder.down.%d.attn.%d.norm.weight", i, j))
                h = step(r, h, attn_block, P "encoder.down.%d.attn.%d.", i, j);
        }
        if (i != v->n_levels - 1) {
            /* Downsample: pad (0, 1, 0, 1) then a stride-2 3x3 conv (model.py Downsample). */
            ldm_conv2d_params p = {2, 0, 0, 1, 1};
            ldm_tensor *d = op_conv2d_ex(ex, h, W(P "encoder.down.%d.downsample.conv.weight", i),
                                         W(P "encoder.down.%d.downsample.conv.bias", i), &p);
            op_free(ex, h);
            h = d;
        }
    }
    h = mid(r, h, "enc");
    ldm_tensor *o = op_group_norm(ex, h, W(P "encoder.norm_out.weight"), W(P "encoder.norm_out.bias"), GN_GROUPS, GN_EPS, 1);
    op_free(ex, h);
    o = conv_step(r, o, P "encoder.conv_out.weight", P "encoder.conv_out.bias", 1);
    o = conv_step(r, o, P "quant_conv.weight", P "quant_conv.bias", 0);
    op_to_host(ex, o, moments);
    op_free(ex, o);
    return ex->status;
}

/* The decoder up to and including the blocks of its lowest-resolution level, all at the
 * latent's size: post_quant_conv, conv_in, mid, up[n_levels - 1] blocks (vae_tiling.c runs this
 * part whole and tiles the rest). */
ldm_tensor *vae_decoder_head(ldm_exec *ex, const ldm_model *m, int32_t n, int32_t h, int32_t w, const float *z) {
    vae_run run = {ex, m}, *r = &run;
    const vae_config *v = &m->vae;
    ldm_tensor *x = op_from_host(ex, 4, (int64_t[]){n, v->embed_dim, h, w}, z);
    ldm_tensor *t = conv_step(r, x, P "post_quant_conv.weight", P "post_quant_conv.bias", 0);
    t = conv_step(r, t, P "decoder.conv_in.weight", P "decoder.conv_in.bias", 1);
    t = mid(r, t, "dec");
    const int i = v->n_levels - 1;
    for (int j = 0; j <= v->num_res_blocks; j++) {
        t = step(r, t, resnet_block, P "decoder.up.%d.block.%d.", i, j);
        if (model_has(m, P "decoder.up.%d.attn.%d.norm.weight", i, j)) t = step(r, t, attn_block, P "decoder.up.%d.attn.%d.", i, j);
    }
    return t;
}

ldm_status vae_decode_untiled(ldm_exec *ex, const ldm_model *m, int32_t n, int32_t h, int32_t w, const float *z,
                              float *image) {
    vae_run run = {ex, m}, *r = &run;
    const vae_config *v = &m->vae;
    ldm_tensor *t = vae_decoder_head(ex, m, n, h, w, z);
    for (int i = v->n_levels - 1; i >= 0; i--) {
        for (int j = 0; i != v->n_levels - 1 && j <= v->num_res_blocks; j++) {
            t = step(r, t, resnet_block, P "decoder.up.%d.block.%d.", i, j);
            if (model_has(m, P "decoder.up.%d.attn.%d.norm.weight", i, j))
                t = step(r, t, attn_block, P "decoder.up.%d.attn.%d.", i, j);
        }
        if (i != 0) {
            ldm_tensor *u = op_upsample2x(ex, t);
            op_free(ex, t);
            t = op_conv2d(ex, u, W(P "decoder.up.%d.upsample.conv.weight", i), W(P "decoder.up.%d.upsample.conv.bias", i), 1, 1);
            op_free(ex, u);
        }
    }
    ldm_tensor *o = op_group_norm(ex, t, W(P "decoder.norm_out.weight"), W(P "decoder.norm_out.bias"), GN_GROUPS, GN_EPS, 1);
    op_free(ex, t);
    o = conv_step(r, o, P "decoder.conv_out.weight", P "decoder.conv_out.bias", 1);
    op_to_host(ex, o, image);
    op_free(ex, o);
    return ex->status;
}
