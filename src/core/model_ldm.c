/* Loading the LDM-paper models and the SD x4 upscaler (model.c calls these at fixed points):
 *
 *  - ldm-sr (CompVis latent-diffusion models/ldm/bsr_sr/config.yaml): VQModelInterface f4 first
 *    stage, UNet with legacy AttentionBlocks and no cross-attention, input = cat(latent, low-res
 *    RGB in [-1, 1]) (concat_mode), eps, linear 0.0015..0.0155, scale_factor 1;
 *  - x4-upscaler (Stability configs/stable-diffusion/x4-upscaling.yaml): AutoencoderKL f4,
 *    input = cat(latent, noise-augmented low-res RGB), noise level through label_emb, OpenCLIP
 *    penultimate context, v, linear 0.0001..0.02, scale_factor 0.08333, max_noise_level 350;
 *  - ldm-txt2img (CompVis configs/latent-diffusion/txt2img-1p4B-eval.yaml, LDM-KL-8-G):
 *    AutoencoderKL f8, BERTEmbedder context, eps, linear 0.00085..0.012, scale_factor 0.18215.
 * What the weights do not tell comes from those configs or the model's config JSON. */
#include "model.h"

#include "bert_tokenizer.h"
#include "json.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define UNET "model.diffusion_model."
#define VAE "first_stage_model."
#define BERT "cond_stage_model.transformer."
#define OPENCLIP "cond_stage_model.model."

ldm_family model_ldm_recognise(const ldm_model *m, const char **name) {
    bool unet = model_has(m, UNET "input_blocks.0.0.weight") && model_has(m, UNET "out.2.weight");
    bool vae = model_has(m, VAE "encoder.conv_in.weight") && model_has(m, VAE "decoder.conv_out.weight");
    if (!unet || !vae) return LDM_FAMILY_UNKNOWN;
    bool vq = model_has(m, VAE "quantize.embedding.weight");
    /* cond_stage Identity: no cond_stage_model keys at all (LDM inpainting_big aliases its VQ there). */
    bool no_cond = true;
    for (size_t i = 0; i < m->n_weights && no_cond; i++)
        no_cond = strncmp(st_at(m->file, i)->name, "cond_stage_model.", 17) != 0;
    if (vq && no_cond && !model_has(m, UNET "input_blocks.1.1.proj_in.weight")) {
        *name = "ldm-sr";
        return LDM_FAMILY_LDM_SR;
    }
    if (!vq && model_has(m, UNET "label_emb.weight") && model_has(m, OPENCLIP "token_embedding.weight")) {
        *name = "x4-upscaler";
        return LDM_FAMILY_X4_UPSCALER;
    }
    if (!vq && model_has(m, BERT "token_emb.weight") && model_has(m, BERT "attn_layers.layers.0.1.to_q.weight")) {
        *name = "ldm-txt2img";
        return LDM_FAMILY_LDM_TXT2IMG;
    }
    return LDM_FAMILY_UNKNOWN;
}

static bool is_ldm_family(const ldm_model *m) {
    return m->family == LDM_FAMILY_LDM_SR || m->family == LDM_FAMILY_X4_UPSCALER || m->family == LDM_FAMILY_LDM_TXT2IMG;
}

/* x-transformers Encoder under cond_stage_model.transformer.: layers.{2i} attention, {2i+1} FF. */
static ldm_status derive_bert(ldm_model *m) {
    bert_config *b = &m->bert;
    ldm_status st = LDM_OK;
    const ldm_tensor *tok = model_weightf(m, &st, BERT "token_emb.weight");
    const ldm_tensor *pos = model_weightf(m, &st, BERT "pos_emb.emb.weight");
    const ldm_tensor *q = model_weightf(m, &st, BERT "attn_layers.layers.0.1.to_q.weight");
    const ldm_tensor *ff = model_weightf(m, &st, BERT "attn_layers.layers.1.1.net.0.0.weight");
    model_weightf(m, &st, BERT "norm.weight");
    if (st) return st;
    if (tok->ndim != 2 || pos->ndim != 2 || q->ndim != 2 || ff->ndim != 2 || pos->ne[1] != tok->ne[1] ||
        q->ne[1] != tok->ne[1] || ff->ne[1] != tok->ne[1])
        return ldm_fail(LDM_ERR_FORMAT, "BERT text encoder weights have inconsistent shapes");
    b->vocab = (int32_t)tok->ne[0];
    b->width = (int32_t)tok->ne[1];
    b->n_pos = (int32_t)pos->ne[0];
    b->ff_dim = (int32_t)ff->ne[0];
    int layers = 0;
    while (model_has(m, BERT "attn_layers.layers.%d.1.to_q.weight", 2 * layers)) layers++;
    b->layers = layers;
    b->dim_head = 64; /* x_transformer DEFAULT_DIM_HEAD; BERTEmbedder passes neither heads nor dim_head */
    b->heads = (int32_t)(q->ne[0] / 64);
    if (b->heads < 1 || q->ne[0] % 64) return ldm_fail(LDM_ERR_FORMAT, "BERT attention width %lld is not heads x 64", (long long)q->ne[0]);
    if (b->n_pos != LDM_BERT_CONTEXT_LENGTH)
        return ldm_fail(LDM_ERR_UNSUPPORTED, "BERT text encoder has %d positions (77 expected)", b->n_pos);
    if (b->vocab != LDM_BERT_VOCAB_SIZE)
        return ldm_fail(LDM_ERR_UNSUPPORTED, "BERT text encoder has a vocabulary of %d (bert-base-uncased: %d)", b->vocab,
                        LDM_BERT_VOCAB_SIZE);
    /* The context shape the rest of the library reads from clip_config. */
    m->clip.n_pos = b->n_pos;
    m->clip.width = b->width;
    m->clip.heads = 1;
    m->clip.pad_id = LDM_BERT_PAD;
    return LDM_OK;
}

/* Per level (and the middle block): does attn1 attend to the context (disable_self_attentions)?
 * attn1.to_k takes context_dim inputs then, the block's channels otherwise. */
static void derive_attn1(ldm_model *m) {
    unet_config *u = &m->unet;
    int idx = 1;
    for (int l = 0; l < u->n_levels; l++) {
        int32_t C = u->model_channels * u->channel_mult[l];
        int64_t k = -1;
        char name[256];
        snprintf(name, sizeof name, UNET "input_blocks.%d.1.transformer_blocks.0.attn1.to_k.weight", idx);
        const ldm_tensor *w = model_weight(m, name);
        if (w && w->ndim == 2) k = w->ne[1];
        u->attn1_on_context[l] = k > 0 && k != C;
        idx += u->num_res_blocks + 1;
    }
    const ldm_tensor *w = model_weight(m, UNET "middle_block.1.transformer_blocks.0.attn1.to_k.weight");
    int32_t Cm = u->model_channels * u->channel_mult[u->n_levels - 1];
    u->attn1_on_context_mid = w && w->ndim == 2 && w->ne[1] != Cm;
}

ldm_status model_ldm_derive(ldm_model *m) {
    if (!is_ldm_family(m)) return LDM_OK;
    ldm_status st = LDM_OK;
    unet_config *u = &m->unet;
    vae_config *v = &m->vae;
    if (m->family == LDM_FAMILY_LDM_SR) {
        const ldm_tensor *cb = model_weightf(m, &st, VAE "quantize.embedding.weight");
        if (st) return st;
        if (cb->ndim != 2 || cb->ne[1] != v->embed_dim || cb->ne[0] < 1)
            return ldm_fail(LDM_ERR_FORMAT, "VQ codebook '%squantize.embedding.weight' does not have %d columns", VAE,
                            v->embed_dim);
        v->kind = FIRST_STAGE_VQ;
        v->n_embed = (int32_t)cb->ne[0];
        m->cond = COND_NONE;
        m->clip.heads = 1;
        if (!u->legacy_attn && u->context_dim)
            return ldm_fail(LDM_ERR_UNSUPPORTED, "LDM-SR UNet with cross-attention is not supported");
    } else if (m->family == LDM_FAMILY_LDM_TXT2IMG) {
        m->cond = COND_BERT;
        st = derive_bert(m);
        if (st) return st;
    } else {
        m->cond = COND_CLIP; /* OpenCLIP, derived by model.c */
        const ldm_tensor *le = model_weightf(m, &st, UNET "label_emb.weight");
        if (st) return st;
        if (le->ndim != 2 || le->ne[1] != 4 * (int64_t)u->model_channels)
            return ldm_fail(LDM_ERR_FORMAT, "label_emb.weight has a bad shape (want [classes, %d])", 4 * u->model_channels);
        u->num_classes = (int32_t)le->ne[0];
        derive_attn1(m);
    }
    /* The low-res RGB image is concatenated to the latent (ldm-sr: as is; x4: noise-augmented). */
    if (m->family != LDM_FAMILY_LDM_TXT2IMG) {
        if (u->in_channels != u->out_channels + 3)
            return ldm_fail(LDM_ERR_FORMAT, "%s UNet takes %d channels, %d expected (latent %d + RGB 3)", m->family_name,
                            u->in_channels, u->out_channels + 3, u->out_channels);
        m->concat_channels = 3;
    }
    return LDM_OK;
}

void model_ldm_defaults(ldm_model *m) {
    switch (m->family) {
    case LDM_FAMILY_LDM_SR: /* bsr_sr/config.yaml */
        m->unet.num_heads = -1;
        m->unet.num_head_channels = 32;
        m->scale_factor = 1.0f;
        m->sched = (ldm_schedule_config){1000, 0.0015, 0.0155};
        m->prediction = LDM_PREDICTION_EPS;
        m->prediction_source = "family default";
        break;
    case LDM_FAMILY_X4_UPSCALER: /* x4-upscaling.yaml */
        m->unet.num_heads = 8;
        m->unet.num_head_channels = -1;
        m->scale_factor = 0.08333f;
        m->sched = (ldm_schedule_config){1000, 0.0001, 0.02};
        m->lr_sched = (ldm_schedule_config){1000, 0.0001, 0.02};
        m->max_noise_level = 350;
        m->prediction = LDM_PREDICTION_V;
        m->prediction_source = "family default";
        break;
    case LDM_FAMILY_LDM_TXT2IMG: /* txt2img-1p4B-eval.yaml */
        m->unet.num_heads = 8;
        m->unet.num_head_channels = -1;
        m->scale_factor = 0.18215f;
        m->sched = (ldm_schedule_config){1000, 0.00085, 0.012};
        m->prediction = LDM_PREDICTION_EPS;
        m->prediction_source = "family default";
        break;
    default:
        break;
    }
}

/* ldm "linear" betas in float64 (torch.linspace fills the first half from the start, the second
 * from the end), cumulative product of 1 - beta in float64, sqrt in float64, then float32. */
static void lr_schedule(ldm_model *m) {
    int T = m->lr_sched.timesteps;
    double a = sqrt(m->lr_sched.linear_start), b = sqrt(m->lr_sched.linear_end), prod = 1.0;
    double step = (b - a) / (T - 1);
    for (int i = 0; i < T; i++) {
        double s = i < T / 2 ? a + step * i : b - step * (T - 1 - i);
        prod *= 1.0 - s * s;
        m->lr_sqrt_alphas_cumprod[i] = (float)sqrt(prod);
        m->lr_sqrt_one_minus_alphas_cumprod[i] = (float)sqrt(1.0 - prod);
    }
}

/* QKVAttentionLegacy reads the qkv conv output as [heads, 3, ch] (q, k, v of one head together).
 * Regroup the rows once into q of every head, then k, then v, so one linear each gives the
 * head-major [L, heads * ch] layout the attention op takes. */
static ldm_status prepare_legacy_qkv(ldm_model *m, const char *prefix, int32_t C) {
    char name[320];
    snprintf(name, sizeof name, "%sqkv.weight", prefix);
    const ldm_tensor *w = model_weight(m, name);
    snprintf(name, sizeof name, "%sqkv.bias", prefix);
    const ldm_tensor *b = model_weight(m, name);
    if (!w || !b || w->ndim != 3 || w->ne[0] != 3 * (int64_t)C || w->ne[1] != C || w->ne[2] != 1 || b->ne[0] != 3 * (int64_t)C)
        return ldm_fail(LDM_ERR_FORMAT, "legacy attention '%sqkv' is missing or not [%d, %d, 1]", prefix, 3 * C, C);
    int32_t heads = m->unet.num_head_channels > 0 ? C / m->unet.num_head_channels : m->unet.num_heads;
    if (heads < 1 || C % heads) return ldm_fail(LDM_ERR_FORMAT, "legacy attention at %s: %d channels, %d heads", prefix, C, heads);
    int32_t ch = C / heads;
    static const char *const part[3] = {"q", "k", "v"};
    for (int j = 0; j < 3; j++) {
        size_t es = ldm_dtype_size(w->dtype), row = (size_t)C * es, bes = ldm_dtype_size(b->dtype);
        char *wd = malloc((size_t)C * row), *bd = malloc((size_t)C * bes);
        if (!wd || !bd) {
            free(wd);
            free(bd);
            return ldm_fail(LDM_ERR_NO_MEMORY, "out of memory");
        }
        for (int h = 0; h < heads; h++)
            for (int c = 0; c < ch; c++) {
                size_t src = (size_t)h * 3 * ch + (size_t)j * ch + c, dst = (size_t)h * ch + c;
                memcpy(wd + dst * row, (const char *)w->data + src * row, row);
                memcpy(bd + dst * bes, (const char *)b->data + src * bes, bes);
            }
        snprintf(name, sizeof name, "%sqkv.%s.weight", prefix, part[j]);
        ldm_status st = model_add_derived(m, name, w->dtype, 2, (int64_t[]){C, C}, wd);
        if (st) {
            free(bd);
            return st;
        }
        snprintf(name, sizeof name, "%sqkv.%s.bias", prefix, part[j]);
        if ((st = model_add_derived(m, name, b->dtype, 1, (int64_t[]){C}, bd))) return st;
    }
    /* proj_out is a conv1d [C, C, 1]: the same bytes as a linear [C, C]. */
    snprintf(name, sizeof name, "%sproj_out.weight", prefix);
    const ldm_tensor *po = model_weight(m, name);
    if (!po || po->ndim != 3 || po->ne[0] != C || po->ne[1] != C || po->ne[2] != 1)
        return ldm_fail(LDM_ERR_FORMAT, "legacy attention '%s' is missing or not [%d, %d, 1]", name, C, C);
    size_t bytes = (size_t)C * C * ldm_dtype_size(po->dtype);
    void *pd = malloc(bytes);
    if (!pd) return ldm_fail(LDM_ERR_NO_MEMORY, "out of memory");
    memcpy(pd, po->data, bytes);
    snprintf(name, sizeof name, "%sproj_out.linear", prefix);
    return model_add_derived(m, name, po->dtype, 2, (int64_t[]){C, C}, pd);
}

static ldm_status prepare_legacy_attention(ldm_model *m) {
    const unet_config *u = &m->unet;
    char prefix[256];
    int idx = 1;
    ldm_status st = LDM_OK;
    for (int l = 0; l < u->n_levels && !st; l++) {
        int32_t C = u->model_channels * u->channel_mult[l];
        for (int i = 0; i < u->num_res_blocks && !st; i++, idx++) {
            snprintf(prefix, sizeof prefix, UNET "input_blocks.%d.1.", idx);
            if (model_has(m, "%sqkv.weight", prefix)) st = prepare_legacy_qkv(m, prefix, C);
        }
        if (l != u->n_levels - 1) idx++;
    }
    if (!st && model_has(m, UNET "middle_block.1.qkv.weight"))
        st = prepare_legacy_qkv(m, UNET "middle_block.1.", u->model_channels * u->channel_mult[u->n_levels - 1]);
    /* Output blocks: the ResBlock changes the channel count to the level's. */
    idx = 0;
    for (int l = u->n_levels - 1; l >= 0 && !st; l--) {
        int32_t C = u->model_channels * u->channel_mult[l];
        for (int i = 0; i <= u->num_res_blocks && !st; i++, idx++) {
            snprintf(prefix, sizeof prefix, UNET "output_blocks.%d.1.", idx);
            if (model_has(m, "%sqkv.weight", prefix)) st = prepare_legacy_qkv(m, prefix, C);
        }
    }
    return st;
}

/* Keys of the config JSON beyond model.c's: the disable_self_attentions list (where the shapes
 * cannot tell), the low-res noise schedule and max_noise_level (x4), the BERT heads. */
static ldm_status read_config(ldm_model *m, const char *path) {
    char *text;
    size_t len;
    ldm_status st = ldm_read_file(path, &text, &len);
    if (st) return st;
    json_value *root;
    st = json_parse(text, len, &root);
    free(text);
    if (st) return st; /* model.c already parsed it once and reported the error */
    const json_value *p = json_path(root, "model.params");
    if (!p) p = json_get(root, "params");
    const json_value *v, *up = json_path(p, "unet_config.params");
    int64_t iv;
    unet_config *u = &m->unet;
    if ((v = json_get(up, "disable_self_attentions")) && v->type == JSON_ARRAY)
        for (size_t l = 0; l < v->count && l < (size_t)u->n_levels; l++)
            if (v->items[l].type == JSON_BOOL && u->context_dim == u->model_channels * u->channel_mult[l])
                u->attn1_on_context[l] = v->items[l].boolean;
    if ((v = json_get(up, "disable_middle_self_attn")) && v->type == JSON_BOOL &&
        u->context_dim == u->model_channels * u->channel_mult[u->n_levels - 1])
        u->attn1_on_context_mid = v->boolean;
    const json_value *ls = json_path(p, "low_scale_config.params");
    if ((v = json_get(ls, "max_noise_level")) && json_as_int64(v, &iv)) m->max_noise_level = (int32_t)iv;
    const json_value *ns = json_get(ls, "noise_schedule_config");
    if ((v = json_get(ns, "linear_start")) && v->type == JSON_NUMBER) m->lr_sched.linear_start = v->number;
    if ((v = json_get(ns, "linear_end")) && v->type == JSON_NUMBER) m->lr_sched.linear_end = v->number;
    if ((v = json_path(root, "cond_stage.heads")) && json_as_int64(v, &iv) && iv > 0) m->bert.heads = (int32_t)iv;
    if ((v = json_path(root, "cond_stage.dim_head")) && json_as_int64(v, &iv) && iv > 0) m->bert.dim_head = (int32_t)iv;
    json_free(root);
    return LDM_OK;
}

ldm_status model_ldm_configure(ldm_model *m, const char *config_path) {
    if (!is_ldm_family(m)) return LDM_OK;
    ldm_status st = LDM_OK;
    if (config_path) st = read_config(m, config_path);
    if (st) return st;
    if (m->family == LDM_FAMILY_X4_UPSCALER) {
        if (m->max_noise_level < 0 || m->max_noise_level >= m->unet.num_classes)
            return ldm_fail(LDM_ERR_FORMAT, "max_noise_level %d does not fit label_emb's %d classes", m->max_noise_level,
                            m->unet.num_classes);
        if (m->lr_sched.timesteps != 1000)
            return ldm_fail(LDM_ERR_UNSUPPORTED, "low-res noise schedule of %d steps", m->lr_sched.timesteps);
        lr_schedule(m);
    }
    if (m->family == LDM_FAMILY_LDM_TXT2IMG) {
        if (m->bert.heads < 1 || m->bert.dim_head < 1 ||
            (int64_t)m->bert.heads * m->bert.dim_head != model_weight(m, BERT "attn_layers.layers.0.1.to_q.weight")->ne[0])
            return ldm_fail(LDM_ERR_FORMAT, "BERT attention: %d heads x %d does not match to_q", m->bert.heads, m->bert.dim_head);
        st = ldm_bert_tokenizer_create(&m->bert_tokenizer);
    }
    if (!st && m->unet.legacy_attn) st = prepare_legacy_attention(m);
    return st;
}

void model_ldm_free(ldm_model *m) {
    ldm_bert_tokenizer_destroy(m->bert_tokenizer);
    for (size_t i = 0; i < m->n_derived; i++) {
        free(m->derived[i].name);
        free(m->derived[i].t.data);
    }
    free(m->derived);
}

ldm_status model_add_derived(ldm_model *m, const char *name, ldm_dtype dtype, int32_t ndim, const int64_t *shape,
                             void *data) {
    model_derived *d = realloc(m->derived, (m->n_derived + 1) * sizeof *d);
    char *nm = ldm_strdup(name);
    if (!d || !nm) {
        if (d) m->derived = d;
        free(nm);
        free(data);
        return ldm_fail(LDM_ERR_NO_MEMORY, "out of memory");
    }
    m->derived = d;
    model_derived *e = &d[m->n_derived++];
    memset(e, 0, sizeof *e);
    e->name = nm;
    e->t.dtype = dtype;
    e->t.ndim = ndim;
    for (int i = 0; i < ndim; i++) e->t.ne[i] = shape[i];
    e->t.data = data;
    return LDM_OK;
}
