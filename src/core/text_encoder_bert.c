/* The BERTEmbedder text transformer of LDM-KL-8-G (CompVis/latent-diffusion
 * ldm/modules/encoders/modules.py BERTEmbedder -> modules/x_transformer.py TransformerWrapper with
 * an Encoder), read by keys under cond_stage_model.transformer.:
 *
 *   x = token_emb(ids) + pos_emb.emb.weight[:77]
 *   per layer i: x += to_out(attn(LN_{2i}(x)))   attn: q/k/v without bias, heads x dim_head
 *                                                (x-transformers defaults 8 x 64), softmax over
 *                                                all 77 keys: no mask, not causal
 *                x += net.2(GELU(net.0.0(LN_{2i+1}(x))))
 *   context = norm(x)
 * (pre-norm residual blocks, LayerNorm eps 1e-5, exact GELU; to_logits is unused because
 * BERTEmbedder asks for return_embeddings). */
#include "nets.h"

#include <math.h>
#include <stdlib.h>

#define P "cond_stage_model.transformer."

#define W(...) model_weightf(m, &ex->status, __VA_ARGS__)

ldm_status bert_text_forward(ldm_exec *ex, const ldm_model *m, const int32_t *ids, int32_t n, float *out,
                             float *hidden) {
    const bert_config *c = &m->bert;
    const int64_t L = c->n_pos, D = c->width;
    int32_t *pos_ids = malloc((size_t)L * sizeof *pos_ids);
    if (!pos_ids) return ldm_fail(LDM_ERR_NO_MEMORY, "out of memory");
    for (int i = 0; i < L; i++) pos_ids[i] = i;
    ldm_tensor *tok = op_embedding(ex, W(P "token_emb.weight"), ids, (int64_t)n * L);
    ldm_tensor *pos = op_embedding(ex, W(P "pos_emb.emb.weight"), pos_ids, L);
    free(pos_ids);
    ldm_tensor *x = op_add(ex, tok, pos); /* pos [L, D] repeats over the batch */
    op_free(ex, tok);
    op_free(ex, pos);
    x = op_reshape(ex, x, 3, (int64_t[]){n, L, D});
    size_t per = (size_t)n * L * D;
    if (hidden) op_to_host(ex, x, hidden);
    float scale = 1.0f / sqrtf((float)c->dim_head); /* x_transformer Attention: dim_head ** -0.5 */
    for (int i = 0; i < c->layers; i++) {
        int a = 2 * i, f = 2 * i + 1;
        ldm_tensor *h = op_layer_norm(ex, x, W(P "attn_layers.layers.%d.0.weight", a), W(P "attn_layers.layers.%d.0.bias", a),
                                      1e-5f);
        ldm_tensor *q = op_linear(ex, h, W(P "attn_layers.layers.%d.1.to_q.weight", a), NULL);
        ldm_tensor *k = op_linear(ex, h, W(P "attn_layers.layers.%d.1.to_k.weight", a), NULL);
        ldm_tensor *v = op_linear(ex, h, W(P "attn_layers.layers.%d.1.to_v.weight", a), NULL);
        op_free(ex, h);
        ldm_tensor *at = op_attention(ex, q, k, v, c->heads, scale, 0);
        op_free(ex, q);
        op_free(ex, k);
        op_free(ex, v);
        ldm_tensor *o = op_linear(ex, at, W(P "attn_layers.layers.%d.1.to_out.weight", a),
                                  W(P "attn_layers.layers.%d.1.to_out.bias", a));
        op_free(ex, at);
        x = op_add_into(ex, x, o);
        if (hidden) op_to_host(ex, x, hidden + per * (size_t)(a + 1));
        h = op_layer_norm(ex, x, W(P "attn_layers.layers.%d.0.weight", f), W(P "attn_layers.layers.%d.0.bias", f), 1e-5f);
        ldm_tensor *u = op_linear(ex, h, W(P "attn_layers.layers.%d.1.net.0.0.weight", f),
                                  W(P "attn_layers.layers.%d.1.net.0.0.bias", f));
        op_free(ex, h);
        ldm_tensor *g = op_unary(ex, LDM_UNARY_GELU, u);
        op_free(ex, u);
        o = op_linear(ex, g, W(P "attn_layers.layers.%d.1.net.2.weight", f), W(P "attn_layers.layers.%d.1.net.2.bias", f));
        op_free(ex, g);
        x = op_add_into(ex, x, o);
        if (hidden) op_to_host(ex, x, hidden + per * (size_t)(f + 1));
    }
    ldm_tensor *y = op_layer_norm(ex, x, W(P "norm.weight"), W(P "norm.bias"), 1e-5f);
    op_free(ex, x);
    op_to_host(ex, y, out);
    op_free(ex, y);
    return ex->status;
}
