/* The LDM UNet (CompVis ldm/modules/diffusionmodules/openaimodel.py UNetModel with
 * attention.SpatialTransformer), read by checkpoint keys under model.diffusion_model.
 *
 *   input_blocks: [conv_in] + per level (num_res_blocks x [ResBlock (+ SpatialTransformer)]
 *                 + Downsample except on the last level)
 *   middle_block: ResBlock, SpatialTransformer, ResBlock
 *   output_blocks: per level, reversed: (num_res_blocks + 1) x [cat skip, ResBlock
 *                 (+ SpatialTransformer)] + Upsample except on level 0
 *   out: GroupNorm, SiLU, conv */
#include "nets.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define P "model.diffusion_model."
#define GN_GROUPS 32

typedef struct {
    ldm_exec *ex;
    const ldm_model *m;
    const ldm_tensor *context;  /* [n, tokens, context_dim], NULL without cross-attention */
    const ldm_tensor *emb_silu; /* SiLU(time_embed(t) [+ label_emb(y)]), [n, 4*model_channels] */
    bool attn1_on_context;      /* the current level's disable_self_attentions */
} unet_run;

#define W(...) model_weightf(r->m, &r->ex->status, __VA_ARGS__)

void timestep_embedding(const float *t, int32_t n, int32_t dim, float *out) {
    /* openaimodel.timestep_embedding: freqs = exp(-ln(10000) * arange(half) / half) in float32,
     * args = t * freqs, emb = cat(cos(args), sin(args)). */
    int half = dim / 2;
    const float neg_log = -logf(10000.0f);
    for (int b = 0; b < n; b++) {
        for (int i = 0; i < half; i++) {
            float f = expf((neg_log * (float)i) / (float)half);
            float a = t[b] * f;
            out[(size_t)b * dim + i] = cosf(a);
            out[(size_t)b * dim + half + i] = sinf(a);
        }
        if (dim % 2) out[(size_t)b * dim + dim - 1] = 0.0f;
    }
}

/* ResBlock: in_layers (GN, SiLU, conv3x3), + emb_layers(SiLU(emb)) per channel, out_layers (GN,
 * SiLU, dropout, conv3x3), plus the skip path (1x1 conv when the channel count changes). */
static ldm_tensor *res_block(unet_run *r, const ldm_tensor *x, const char *p) {
    ldm_exec *ex = r->ex;
    ldm_tensor *h = op_group_norm(ex, x, W("%sin_layers.0.weight", p), W("%sin_layers.0.bias", p), GN_GROUPS, 1e-5f, 1);
    ldm_tensor *h2 = op_conv2d(ex, h, W("%sin_layers.2.weight", p), W("%sin_layers.2.bias", p), 1, 1);
    op_free(ex, h);
    ldm_tensor *e = op_linear(ex, r->emb_silu, W("%semb_layers.1.weight", p), W("%semb_layers.1.bias", p));
    h = op_add_per_channel(ex, h2, e);
    op_free(ex, h2);
    op_free(ex, e);
    h2 = op_group_norm(ex, h, W("%sout_layers.0.weight", p), W("%sout_layers.0.bias", p), GN_GROUPS, 1e-5f, 1);
    op_free(ex, h);
    h = op_conv2d(ex, h2, W("%sout_layers.3.weight", p), W("%sout_layers.3.bias", p), 1, 1);
    op_free(ex, h2);
    if (model_has(r->m, "%sskip_connection.weight", p)) {
        ldm_tensor *s = op_conv2d(ex, x, W("%sskip_connection.weight", p), W("%sskip_connection.bias", p), 1, 0);
        return op_add_into(ex, s, h);
    }
    ldm_tensor *y = op_add(ex, x, h);
    op_free(ex, h);
    return y;
}

/* CrossAttention: q from x, k/v from ctx (x itself for self-attention), no q/k/v bias. */
static ldm_tensor *cross_attention(unet_run *r, const ldm_tensor *x, const ldm_tensor *ctx, int heads,
                                   const char *p) {
    ldm_exec *ex = r->ex;
    ldm_tensor *q = op_linear(ex, x, W("%sto_q.weight", p), NULL);
    ldm_tensor *k = op_linear(ex, ctx, W("%sto_k.weight", p), NULL);
    ldm_tensor *v = op_linear(ex, ctx, W("%sto_v.weight", p), NULL);
    int64_t inner = q ? q->ne[2] : 1;
    ldm_tensor *a = op_attention(ex, q, k, v, heads, 1.0f / sqrtf((float)(inner / heads)), 0);
    op_free(ex, q);
    op_free(ex, k);
    op_free(ex, v);
    ldm_tensor *o = op_linear(ex, a, W("%sto_out.0.weight", p), W("%sto_out.0.bias", p));
    op_free(ex, a);
    return o;
}

/* BasicTransformerBlock: self-attention, cross-attention, GEGLU feed-forward, each pre-LN and
 * residual. */
static ldm_tensor *transformer_block(unet_run *r, ldm_tensor *x, int heads, const char *p) {
    ldm_exec *ex = r->ex;
    char sub[320];
    ldm_tensor *h = op_layer_norm(ex, x, W("%snorm1.weight", p), W("%snorm1.bias", p), 1e-5f);
    snprintf(sub, sizeof sub, "%sattn1.", p);
    /* Stability BasicTransformerBlock: attn1(norm1(x), context if disable_self_attn else None). */
    ldm_tensor *a = cross_attention(r, h, r->attn1_on_context ? r->context : h, heads, sub);
    op_free(ex, h);
    x = op_add_into(ex, x, a);
    h = op_layer_norm(ex, x, W("%snorm2.weight", p), W("%snorm2.bias", p), 1e-5f);
    snprintf(sub, sizeof sub, "%sattn2.", p);
    a = cross_attention(r, h, r->context, heads, sub);
    op_free(ex, h);
    x = op_add_into(ex, x, a);
    h = op_layer_norm(ex, x, W("%snorm3.weight", p), W("%snorm3.bias", p), 1e-5f);
    ldm_tensor *f = op_linear(ex, h, W("%sff.net.0.proj.weight", p), W("%sff.net.0.proj.bias", p));
    op_free(ex, h);
    ldm_tensor *g = op_geglu(ex, f);
    op_free(ex, f);
    ldm_tensor *o = op_linear(ex, g, W("%sff.net.2.weight", p), W("%sff.net.2.bias", p));
    op_free(ex, g);
    return op_add_into(ex, x, o);
}

/* SpatialTransformer: GroupNorm (eps 1e-6), proj_in (1x1 conv, or Linear after flattening in
 * SD 2.x), transformer blocks over the h*w tokens, proj_out, residual. */
static ldm_tensor *spatial_transformer(unet_run *r, const ldm_tensor *x, const char *p) {
    ldm_exec *ex = r->ex;
    const unet_config *u = &r->m->unet;
    if (!x) return NULL;
    int64_t C = x->ne[1], H = x->ne[2], Wd = x->ne[3];
    /* openaimodel.py: num_head_channels, when set, gives heads = ch / num_head_channels (SD 2.x). */
    int heads = u->num_head_channels > 0 ? (int)(C / u->num_head_channels) : u->num_heads;
    ldm_tensor *h = op_group_norm(ex, x, W("%snorm.weight", p), W("%snorm.bias", p), GN_GROUPS, 1e-6f, 0);
    ldm_tensor *t;
    if (u->linear_proj) {
        t = op_to_nlc(ex, h);
        op_free(ex, h);
        h = op_linear(ex, t, W("%sproj_in.weight", p), W("%sproj_in.bias", p));
        op_free(ex, t);
        t = h;
    } else {
        ldm_tensor *c = op_conv2d(ex, h, W("%sproj_in.weight", p), W("%sproj_in.bias", p), 1, 0);
        op_free(ex, h);
        t = op_to_nlc(ex, c);
        op_free(ex, c);
    }
    for (int d = 0; d < u->transformer_depth; d++) {
        char sub[300];
        snprintf(sub, sizeof sub, "%stransformer_blocks.%d.", p, d);
        t = transformer_block(r, t, heads, sub);
    }
    ldm_tensor *o;
    if (u->linear_proj) {
        ldm_tensor *l = op_linear(ex, t, W("%sproj_out.weight", p), W("%sproj_out.bias", p));
        op_free(ex, t);
        o = op_to_nchw(ex, l, H, Wd);
        op_free(ex, l);
    } else {
        ldm_tensor *c = op_to_nchw(ex, t, H, Wd);
        op_free(ex, t);
        o = op_conv2d(ex, c, W("%sproj_out.weight", p), W("%sproj_out.bias", p), 1, 0);
        op_free(ex, c);
    }
    ldm_tensor *y = op_add(ex, x, o);
    op_free(ex, o);
    return y;
}

/* openaimodel AttentionBlock with QKVAttentionLegacy (LDM-SR): GroupNorm(32, eps 1e-5), qkv
 * conv1d, attention per head with scale ch^-1/2 (applied as ch^-1/4 to q and k upstream),
 * proj_out conv1d, residual; no context. The qkv rows were regrouped head-major at load time
 * (model_ldm.c) so q, k and v are one linear each. */
static ldm_tensor *legacy_attention(unet_run *r, const ldm_tensor *x, const char *p) {
    ldm_exec *ex = r->ex;
    const unet_config *u = &r->m->unet;
    if (!x) return NULL;
    int64_t C = x->ne[1], H = x->ne[2], Wd = x->ne[3];
    int heads = u->num_head_channels > 0 ? (int)(C / u->num_head_channels) : u->num_heads;
    ldm_tensor *h = op_group_norm(ex, x, W("%snorm.weight", p), W("%snorm.bias", p), GN_GROUPS, 1e-5f, 0);
    ldm_tensor *t = op_to_nlc(ex, h);
    op_free(ex, h);
    ldm_tensor *q = op_linear(ex, t, W("%sqkv.q.weight", p), W("%sqkv.q.bias", p));
    ldm_tensor *k = op_linear(ex, t, W("%sqkv.k.weight", p), W("%sqkv.k.bias", p));
    ldm_tensor *v = op_linear(ex, t, W("%sqkv.v.weight", p), W("%sqkv.v.bias", p));
    op_free(ex, t);
    ldm_tensor *a = op_attention(ex, q, k, v, heads, 1.0f / sqrtf((float)(C / heads)), 0);
    op_free(ex, q);
    op_free(ex, k);
    op_free(ex, v);
    ldm_tensor *o = op_linear(ex, a, W("%sproj_out.linear", p), W("%sproj_out.bias", p));
    op_free(ex, a);
    ldm_tensor *on = op_to_nchw(ex, o, H, Wd);
    op_free(ex, o);
    ldm_tensor *y = op_add(ex, x, on);
    op_free(ex, on);
    return y;
}

/* One input/output/middle block: ResBlock then, when present, the transformer. Keeps x. */
static ldm_tensor *res_attn_block(unet_run *r, const ldm_tensor *x, const char *block) {
    char p[256];
    snprintf(p, sizeof p, "%s0.", block);
    ldm_tensor *h = res_block(r, x, p);
    if (model_has(r->m, "%s1.norm.weight", block)) {
        snprintf(p, sizeof p, "%s1.", block);
        ldm_tensor *t = r->m->unet.legacy_attn ? legacy_attention(r, h, p) : spatial_transformer(r, h, p);
        op_free(r->ex, h);
        h = t;
    }
    return h;
}

/* Upsample (nearest 2x, conv3x3) at output_blocks.idx.{1|2}.conv. */
static ldm_tensor *upsample(unet_run *r, ldm_tensor *x, int idx) {
    int j = model_has(r->m, P "output_blocks.%d.1.conv.weight", idx) ? 1 : 2;
    ldm_tensor *u = op_upsample2x(r->ex, x);
    op_free(r->ex, x);
    ldm_tensor *y = op_conv2d(r->ex, u, W(P "output_blocks.%d.%d.conv.weight", idx, j),
                              W(P "output_blocks.%d.%d.conv.bias", idx, j), 1, 1);
    op_free(r->ex, u);
    return y;
}

ldm_status unet_forward(ldm_exec *ex, const ldm_model *m, int32_t n, int32_t h, int32_t w, const float *x,
                        const float *t, int32_t tokens, const float *context, float *out) {
    return unet_forward_ex(ex, m, n, h, w, x, t, NULL, tokens, context, out);
}

ldm_status unet_forward_ex(ldm_exec *ex, const ldm_model *m, int32_t n, int32_t h, int32_t w, const float *x,
                           const float *t, const int32_t *labels, int32_t tokens, const float *context, float *out) {
    const unet_config *u = &m->unet;
    unet_run run = {ex, m, NULL, NULL, false}, *r = &run;
    if (u->num_classes > 0 && !labels)
        return ldm_fail(LDM_ERR_INVALID_ARG, "this UNet is class-conditional (label_emb): labels are required");
    for (int i = 0; labels && i < n; i++)
        if (labels[i] < 0 || labels[i] >= u->num_classes)
            return ldm_fail(LDM_ERR_INVALID_ARG, "class label %d out of range 0..%d", labels[i], u->num_classes - 1);
    if (u->context_dim > 0 && (!context || tokens < 1))
        return ldm_fail(LDM_ERR_INVALID_ARG, "this UNet cross-attends: a context is required");
    int mc = u->model_channels;
    int down = 1 << (u->n_levels - 1);
    if (h % down || w % down)
        return ldm_fail(LDM_ERR_INVALID_ARG, "latent size %dx%d must be a multiple of %d", w, h, down);
    float *temb = malloc((size_t)n * mc * sizeof *temb);
    if (!temb) return ldm_fail(LDM_ERR_NO_MEMORY, "out of memory");
    timestep_embedding(t, n, mc, temb);
    ldm_tensor *te = op_from_host(ex, 2, (int64_t[]){n, mc}, temb);
    free(temb);
    ldm_tensor *e1 = op_linear(ex, te, W(P "time_embed.0.weight"), W(P "time_embed.0.bias"));
    op_free(ex, te);
    ldm_tensor *e1s = op_unary(ex, LDM_UNARY_SILU, e1);
    op_free(ex, e1);
    ldm_tensor *emb = op_linear(ex, e1s, W(P "time_embed.2.weight"), W(P "time_embed.2.bias"));
    op_free(ex, e1s);
    if (u->num_classes > 0) /* openaimodel: emb = emb + self.label_emb(y) (x4 upscaler: noise level) */
        emb = op_add_into(ex, emb, op_embedding(ex, W(P "label_emb.weight"), labels, n));
    r->emb_silu = op_unary(ex, LDM_UNARY_SILU, emb);
    op_free(ex, emb);
    ldm_tensor *ctx = u->context_dim > 0 ? op_from_host(ex, 3, (int64_t[]){n, tokens, u->context_dim}, context) : NULL;
    r->context = ctx;

    /* Input blocks, keeping every output for the skip connections. */
    enum { MAX_SKIPS = 4 * LDM_MAX_LEVELS * 4 };
    ldm_tensor *skips[MAX_SKIPS];
    int ns = 0;
    if (u->n_levels * (u->num_res_blocks + 1) + 1 > MAX_SKIPS)
        return ldm_fail(LDM_ERR_UNSUPPORTED, "UNet has too many blocks");
    ldm_tensor *xin = op_from_host(ex, 4, (int64_t[]){n, u->in_channels, h, w}, x);
    skips[ns++] = op_conv2d(ex, xin, W(P "input_blocks.0.0.weight"), W(P "input_blocks.0.0.bias"), 1, 1);
    op_free(ex, xin);
    int idx = 1;
    for (int level = 0; level < u->n_levels; level++) {
        r->attn1_on_context = u->attn1_on_context[level];
        for (int i = 0; i < u->num_res_blocks; i++, idx++) {
            char block[128];
            snprintf(block, sizeof block, P "input_blocks.%d.", idx);
            skips[ns] = res_attn_block(r, skips[ns - 1], block);
            ns++;
        }
        if (level != u->n_levels - 1) {
            skips[ns] = op_conv2d(ex, skips[ns - 1], W(P "input_blocks.%d.0.op.weight", idx),
                                  W(P "input_blocks.%d.0.op.bias", idx), 2, 1);
            ns++;
            idx++;
        }
    }

    /* Middle block. */
    ldm_tensor *hm = res_block(r, skips[ns - 1], P "middle_block.0.");
    if (model_has(m, P "middle_block.1.norm.weight")) {
        r->attn1_on_context = u->attn1_on_context_mid;
        ldm_tensor *tm = u->legacy_attn ? legacy_attention(r, hm, P "middle_block.1.")
                                        : spatial_transformer(r, hm, P "middle_block.1.");
        op_free(ex, hm);
        hm = tm;
    }
    const char *mid2 = model_has(m, P "middle_block.2.in_layers.0.weight") ? P "middle_block.2." : P "middle_block.1.";
    ldm_tensor *hcur = res_block(r, hm, mid2);
    op_free(ex, hm);

    /* Output blocks: concatenate the matching skip, ResBlock (+ transformer), upsample. */
    idx = 0;
    for (int level = u->n_levels - 1; level >= 0; level--) {
        r->attn1_on_context = u->attn1_on_context[level];
        for (int i = 0; i <= u->num_res_blocks; i++, idx++) {
            ldm_tensor *skip = skips[--ns];
            ldm_tensor *cat = op_concat(ex, hcur, skip);
            op_free(ex, hcur);
            op_free(ex, skip);
            skips[ns] = NULL;
            char block[128];
            snprintf(block, sizeof block, P "output_blocks.%d.", idx);
            hcur = res_attn_block(r, cat, block);
            op_free(ex, cat);
            if (level != 0 && i == u->num_res_blocks) hcur = upsample(r, hcur, idx);
        }
    }
    for (int i = 0; i < ns; i++) op_free(ex, skips[i]); /* only on a mismatch of the block count */

    ldm_tensor *o = op_group_norm(ex, hcur, W(P "out.0.weight"), W(P "out.0.bias"), GN_GROUPS, 1e-5f, 1);
    op_free(ex, hcur);
    ldm_tensor *y = op_conv2d(ex, o, W(P "out.2.weight"), W(P "out.2.bias"), 1, 1);
    op_free(ex, o);
    op_to_host(ex, y, out);
    op_free(ex, y);
    op_free(ex, ctx);
    op_free(ex, (ldm_tensor *)r->emb_silu);
    return ex->status;
}
