/* CLIP text transformer as stored in SD 1.x checkpoints (HF CLIPTextModel names under
 * cond_stage_model.transformer.text_model.). Pre-LN residual blocks, causal self-attention,
 * quick-GELU MLP, final layer norm (transformers' modeling_clip.py; openai CLIP model.py). */
#include "nets.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define P "cond_stage_model.transformer.text_model."

typedef struct {
    ldm_exec *ex;
    const ldm_model *m;
} clip_run;

#define W(...) model_weightf(r->m, &r->ex->status, __VA_ARGS__)

static ldm_tensor *self_attention(clip_run *r, const ldm_tensor *x, int layer) {
    ldm_exec *ex = r->ex;
    const clip_config *c = &r->m->clip;
    ldm_tensor *q = op_linear(ex, x, W(P "encoder.layers.%d.self_attn.q_proj.weight", layer),
                              W(P "encoder.layers.%d.self_attn.q_proj.bias", layer));
    ldm_tensor *k = op_linear(ex, x, W(P "encoder.layers.%d.self_attn.k_proj.weight", layer),
                              W(P "encoder.layers.%d.self_attn.k_proj.bias", layer));
    ldm_tensor *v = op_linear(ex, x, W(P "encoder.layers.%d.self_attn.v_proj.weight", layer),
                              W(P "encoder.layers.%d.self_attn.v_proj.bias", layer));
    float scale = 1.0f / sqrtf((float)(c->width / c->heads));
    ldm_tensor *a = op_attention(ex, q, k, v, c->heads, scale, 1);
    op_free(ex, q);
    op_free(ex, k);
    op_free(ex, v);
    ldm_tensor *o = op_linear(ex, a, W(P "encoder.layers.%d.self_attn.out_proj.weight", layer),
                              W(P "encoder.layers.%d.self_attn.out_proj.bias", layer));
    op_free(ex, a);
    return o;
}

static ldm_tensor *mlp(clip_run *r, const ldm_tensor *x, int layer) {
    ldm_exec *ex = r->ex;
    ldm_tensor *h = op_linear(ex, x, W(P "encoder.layers.%d.mlp.fc1.weight", layer),
                              W(P "encoder.layers.%d.mlp.fc1.bias", layer));
    ldm_tensor *a = op_unary(ex, r->m->clip.act == CLIP_ACT_GELU ? LDM_UNARY_GELU : LDM_UNARY_QUICK_GELU, h);
    op_free(ex, h);
    ldm_tensor *o = op_linear(ex, a, W(P "encoder.layers.%d.mlp.fc2.weight", layer),
                              W(P "encoder.layers.%d.mlp.fc2.bias", layer));
    op_free(ex, a);
    return o;
}

ldm_status clip_text_forward(ldm_exec *ex, const ldm_model *m, const int32_t *ids, int32_t n, int32_t clip_skip,
                             float *out, float *hidden) {
    if (m->clip.kind == CLIP_KIND_OPENCLIP) return openclip_text_forward(ex, m, ids, n, clip_skip, out, hidden);
    clip_run run = {ex, m}, *r = &run;
    const clip_config *c = &m->clip;
    const int64_t L = c->n_pos, D = c->width;
    int skip = clip_skip > 1 ? clip_skip - 1 : 0;
    if (skip >= c->layers) return ldm_fail(LDM_ERR_INVALID_ARG, "clip_skip %d exceeds the %d layers", clip_skip, c->layers);
    int32_t *pos_ids = malloc((size_t)L * sizeof *pos_ids);
    if (!pos_ids) return ldm_fail(LDM_ERR_NO_MEMORY, "out of memory");
    for (int i = 0; i < L; i++) pos_ids[i] = i;
    ldm_tensor *tok = op_embedding(ex, W(P "embeddings.token_embedding.weight"), ids, n * L);
    ldm_tensor *pos = op_embedding(ex, W(P "embeddings.position_embedding.weight"), pos_ids, L);
    free(pos_ids);
    ldm_tensor *x = op_add(ex, tok, pos);
    op_free(ex, tok);
    op_free(ex, pos);
    int64_t shape[3] = {n, L, D};
    x = op_reshape(ex, x, 3, shape);
    size_t per = (size_t)(n * L * D);
    if (hidden) op_to_host(ex, x, hidden);
    int last = c->layers - skip;
    for (int i = 0; i < last; i++) {
        ldm_tensor *h = op_layer_norm(ex, x, W(P "encoder.layers.%d.layer_norm1.weight", i),
                                      W(P "encoder.layers.%d.layer_norm1.bias", i), 1e-5f);
        ldm_tensor *a = self_attention(r, h, i);
        op_free(ex, h);
        x = op_add_into(ex, x, a);
        h = op_layer_norm(ex, x, W(P "encoder.layers.%d.layer_norm2.weight", i),
                          W(P "encoder.layers.%d.layer_norm2.bias", i), 1e-5f);
        ldm_tensor *f = mlp(r, h, i);
        op_free(ex, h);
        x = op_add_into(ex, x, f);
        if (hidden) op_to_host(ex, x, hidden + per * (size_t)(i + 1));
    }
    ldm_tensor *y = op_layer_norm(ex, x, W(P "final_layer_norm.weight"), W(P "final_layer_norm.bias"), 1e-5f);
    op_free(ex, x);
    op_to_host(ex, y, out);
    op_free(ex, y);
    return ex->status;
}
