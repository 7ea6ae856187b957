/* OpenCLIP text transformer as stored in SD 2.x checkpoints (open_clip names under
 * cond_stage_model.model.): token_embedding + positional_embedding, pre-LN residual blocks
 * (nn.MultiheadAttention with a fused in_proj [q; k; v] and a causal mask, MLP c_fc -> exact
 * GELU -> c_proj), ln_final. Stability's FrozenOpenCLIPEmbedder(layer="penultimate") stops
 * before the last block and applies ln_final to that output (encoders/modules.py
 * encode_with_transformer / text_transformer_forward); open_clip v2.7.0 transformer.py. */
#include "nets.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define P "cond_stage_model.model."

typedef struct {
    ldm_exec *ex;
    const ldm_model *m;
} oc_run;

#define W(...) model_weightf(r->m, &r->ex->status, __VA_ARGS__)

/* A row slice of a weight in the mapped file: rows [row0, row0 + rows) of a [R, C] or [R]
 * tensor, same dtype, no copy. */
static void row_view(const ldm_tensor *t, int64_t row0, int64_t rows, ldm_tensor *out) {
    memset(out, 0, sizeof *out);
    int64_t row_elems = t->ndim == 2 ? t->ne[1] : 1;
    out->dtype = t->dtype;
    out->ndim = t->ndim;
    out->ne[0] = rows;
    if (t->ndim == 2) out->ne[1] = t->ne[1];
    out->data = (char *)t->data + (size_t)(row0 * row_elems) * ldm_dtype_size(t->dtype);
}

ldm_status openclip_prepare(ldm_model *m) {
    const clip_config *c = &m->clip;
    int64_t D = c->width;
    m->qkv_views = calloc((size_t)c->layers * 6, sizeof *m->qkv_views);
    if (!m->qkv_views) return ldm_fail(LDM_ERR_NO_MEMORY, "out of memory");
    for (int i = 0; i < c->layers; i++) {
        ldm_status st = LDM_OK;
        const ldm_tensor *w = model_weightf(m, &st, P "transformer.resblocks.%d.attn.in_proj_weight", i);
        const ldm_tensor *b = model_weightf(m, &st, P "transformer.resblocks.%d.attn.in_proj_bias", i);
        if (st) return st;
        if (w->ndim != 2 || w->ne[0] != 3 * D || w->ne[1] != D || b->ndim != 1 || b->ne[0] != 3 * D)
            return ldm_fail(LDM_ERR_FORMAT, "OpenCLIP layer %d: in_proj is not [%lld, %lld] + [%lld]", i,
                            (long long)(3 * D), (long long)D, (long long)(3 * D));
        for (int j = 0; j < 3; j++) {
            row_view(w, j * D, D, &m->qkv_views[i * 6 + j]);
            row_view(b, j * D, D, &m->qkv_views[i * 6 + 3 + j]);
        }
    }
    return LDM_OK;
}

/* nn.MultiheadAttention(need_weights=False) with attn_mask = causal: q, k, v from the fused
 * in_proj rows, softmax(q k^T / sqrt(head_dim)) v per head, out_proj. */
static ldm_tensor *attention(oc_run *r, const ldm_tensor *x, int layer) {
    ldm_exec *ex = r->ex;
    const clip_config *c = &r->m->clip;
    const ldm_tensor *v6 = &r->m->qkv_views[layer * 6];
    ldm_tensor *q = op_linear(ex, x, &v6[0], &v6[3]);
    ldm_tensor *k = op_linear(ex, x, &v6[1], &v6[4]);
    ldm_tensor *v = op_linear(ex, x, &v6[2], &v6[5]);
    ldm_tensor *a = op_attention(ex, q, k, v, c->heads, 1.0f / sqrtf((float)(c->width / c->heads)), 1);
    op_free(ex, q);
    op_free(ex, k);
    op_free(ex, v);
    ldm_tensor *o = op_linear(ex, a, W(P "transformer.resblocks.%d.attn.out_proj.weight", layer),
                              W(P "transformer.resblocks.%d.attn.out_proj.bias", layer));
    op_free(ex, a);
    return o;
}

static ldm_tensor *mlp(oc_run *r, const ldm_tensor *x, int layer) {
    ldm_exec *ex = r->ex;
    ldm_tensor *h = op_linear(ex, x, W(P "transformer.resblocks.%d.mlp.c_fc.weight", layer),
                              W(P "transformer.resblocks.%d.mlp.c_fc.bias", layer));
    ldm_tensor *a = op_unary(ex, r->m->clip.act == CLIP_ACT_QUICK_GELU ? LDM_UNARY_QUICK_GELU : LDM_UNARY_GELU, h);
    op_free(ex, h);
    ldm_tensor *o = op_linear(ex, a, W(P "transformer.resblocks.%d.mlp.c_proj.weight", layer),
                              W(P "transformer.resblocks.%d.mlp.c_proj.bias", layer));
    op_free(ex, a);
    return o;
}

ldm_status openclip_text_forward(ldm_exec *ex, const ldm_model *m, const int32_t *ids, int32_t n, int32_t clip_skip,
                                 float *out, float *hidden) {
    oc_run run = {ex, m}, *r = &run;
    const clip_config *c = &m->clip;
    const int64_t L = c->n_pos, D = c->width;
    if (!m->qkv_views) return ldm_fail(LDM_ERR_INTERNAL, "OpenCLIP weights not prepared");
    if (clip_skip <= 0) clip_skip = c->default_skip > 0 ? c->default_skip : 1;
    int skip = clip_skip - 1;
    if (skip >= c->layers) return ldm_fail(LDM_ERR_INVALID_ARG, "clip_skip %d exceeds the %d layers", clip_skip, c->layers);
    int32_t *pos_ids = malloc((size_t)L * sizeof *pos_ids);
    if (!pos_ids) return ldm_fail(LDM_ERR_NO_MEMORY, "out of memory");
    for (int i = 0; i < L; i++) pos_ids[i] = i;
    /* positional_embedding is a [77, D] parameter: row i is position i's vector. */
    ldm_tensor *tok = op_embedding(ex, W(P "token_embedding.weight"), ids, n * L);
    ldm_tensor *pos = op_embedding(ex, W(P "positional_embedding"), pos_ids, L);
    free(pos_ids);
    ldm_tensor *x = op_add(ex, tok, pos);
    op_free(ex, tok);
    op_free(ex, pos);
    x = op_reshape(ex, x, 3, (int64_t[]){n, L, D});
    size_t per = (size_t)(n * L * D);
    if (hidden) op_to_host(ex, x, hidden);
    /* With hidden requested every layer runs (hidden_states has layers + 1 entries); the output
     * is taken after layer (layers - skip). */
    int last = c->layers - skip, run_to = hidden ? c->layers : last;
    ldm_tensor *y = NULL;
    for (int i = 0; i < run_to; i++) {
        ldm_tensor *h = op_layer_norm(ex, x, W(P "transformer.resblocks.%d.ln_1.weight", i),
                                      W(P "transformer.resblocks.%d.ln_1.bias", i), 1e-5f);
        ldm_tensor *a = attention(r, h, i);
        op_free(ex, h);
        x = op_add_into(ex, x, a);
        h = op_layer_norm(ex, x, W(P "transformer.resblocks.%d.ln_2.weight", i),
                          W(P "transformer.resblocks.%d.ln_2.bias", i), 1e-5f);
        ldm_tensor *f = mlp(r, h, i);
        op_free(ex, h);
        x = op_add_into(ex, x, f);
        if (hidden) op_to_host(ex, x, hidden + per * (size_t)(i + 1));
        if (i + 1 == last) y = op_layer_norm(ex, x, W(P "ln_final.weight"), W(P "ln_final.bias"), 1e-5f);
    }
    op_free(ex, x);
    op_to_host(ex, y, out);
    op_free(ex, y);
    return ex->status;
}
