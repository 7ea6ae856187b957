/* Model loading: map the file, index the weights, recognise the family from the key names, read
 * the hyper-parameters off the tensor shapes, then apply family defaults and the optional config
 * file for what the weights cannot tell. See docs/model-config.md for the config keys read. */
#include "model.h"

#include "checkpoint.h"
#include "clip_tokenizer.h"
#include "json.h"
#include "nets.h"

#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define UNET "model.diffusion_model."
#define VAE "first_stage_model."
#define CLIP_HF "cond_stage_model.transformer.text_model."
#define OPENCLIP "cond_stage_model.model."

const ldm_tensor *model_weight(const ldm_model *m, const char *name) {
    const st_tensor *t = st_find(m->file, name);
    if (!t) {
        for (size_t i = 0; i < m->n_derived; i++)
            if (strcmp(m->derived[i].name, name) == 0) return &m->derived[i].t;
        return NULL;
    }
    return &m->weights[t - st_at(m->file, 0)];
}

static const ldm_tensor *weight_va(const ldm_model *m, const char *fmt, va_list ap, char *name, size_t cap) {
    vsnprintf(name, cap, fmt, ap);
    return model_weight(m, name);
}

const ldm_tensor *model_weightf(const ldm_model *m, ldm_status *status, const char *fmt, ...) {
    char name[512];
    va_list ap;
    va_start(ap, fmt);
    const ldm_tensor *t = weight_va(m, fmt, ap, name, sizeof name);
    va_end(ap);
    if (!t && *status == LDM_OK) *status = ldm_fail(LDM_ERR_FORMAT, "checkpoint lacks tensor '%s'", name);
    return t;
}

bool model_has(const ldm_model *m, const char *fmt, ...) {
    char name[512];
    va_list ap;
    va_start(ap, fmt);
    const ldm_tensor *t = weight_va(m, fmt, ap, name, sizeof name);
    va_end(ap);
    return t != NULL;
}

/* Dimension d of a tensor, or -1 if absent or of another rank. */
static int64_t dim_of(const ldm_model *m, const char *name, int ndim, int d) {
    const ldm_tensor *t = model_weight(m, name);
    if (!t || t->ndim != ndim) return -1;
    return t->ne[d];
}

static ldm_status index_weights(ldm_model *m) {
    size_t n = st_count(m->file);
    m->weights = calloc(n ? n : 1, sizeof *m->weights);
    if (!m->weights) return ldm_fail(LDM_ERR_NO_MEMORY, "out of memory indexing weights");
    m->n_weights = n;
    for (size_t i = 0; i < n; i++) {
        const st_tensor *s = st_at(m->file, i);
        ldm_tensor *t = &m->weights[i];
        t->dtype = s->dtype;
        t->data = (void *)s->data;
        if (s->ndim == 0) {
            t->ndim = 1;
            t->ne[0] = 1;
        } else if (s->ndim <= LDM_MAX_DIMS) {
            t->ndim = s->ndim;
            for (int d = 0; d < s->ndim; d++) t->ne[d] = s->shape[d];
        } else {
            t->ndim = 0; /* not usable as a weight; never looked up by the models */
        }
    }
    return LDM_OK;
}

/* Names what the file looks like when it is not a family this build runs. */
static const char *recognise_other(const ldm_model *m) {
    if (model_has(m, "conditioner.embedders.1.model.token_embedding.weight")) return "SDXL (two text encoders)";
    if (model_has(m, "cond_stage_model.model.token_embedding.weight") && model_has(m, UNET "label_emb.0.weight"))
        return "the Stable Diffusion x4 upscaler";
    /* Reached only when the UNet or VAE is missing (a full SD 2.x file is loaded). */
    if (model_has(m, "cond_stage_model.model.token_embedding.weight"))
        return "a Stable Diffusion 2.x (OpenCLIP) text encoder without a complete UNet and VAE";
    if (model_has(m, "cond_stage_model.transformer.token_emb.weight")) return "an LDM with a BERT text encoder (LDM-KL-8-G)";
    if (model_has(m, "first_stage_model.quantize.embedding.weight")) return "an LDM with a VQ autoencoder (e.g. LDM super-resolution)";
    if (model_has(m, UNET "input_blocks.0.0.weight")) return "an LDM UNet of an unknown family";
    return NULL;
}

static ldm_status derive_unet(ldm_model *m) {
    unet_config *u = &m->unet;
    ldm_status st = LDM_OK;
    const ldm_tensor *conv_in = model_weightf(m, &st, UNET "input_blocks.0.0.weight");
    const ldm_tensor *conv_out = model_weightf(m, &st, UNET "out.2.weight");
    if (st) return st;
    if (conv_in->ndim != 4 || conv_out->ndim != 4) return ldm_fail(LDM_ERR_FORMAT, "UNet conv_in/out are not 4-D");
    if (conv_in->ne[0] < 1 || conv_in->ne[0] > 65536)
        return ldm_fail(LDM_ERR_FORMAT, "UNet '%sinput_blocks.0.0.weight' has %lld output channels", UNET,
                        (long long)conv_in->ne[0]);
    u->model_channels = (int32_t)conv_in->ne[0];
    u->in_channels = (int32_t)conv_in->ne[1];
    u->out_channels = (int32_t)conv_out->ne[0];
    /* input_blocks: [conv_in] then per level num_res_blocks blocks and a downsample (not on the last). */
    int nres = 0;
    while (model_has(m, UNET "input_blocks.%d.0.in_layers.0.weight", 1 + nres)) nres++;
    if (nres == 0) return ldm_fail(LDM_ERR_FORMAT, "UNet has no residual blocks");
    u->num_res_blocks = nres;
    int idx = 1, level = 0;
    for (;;) {
        if (level >= LDM_MAX_LEVELS) return ldm_fail(LDM_ERR_UNSUPPORTED, "UNet has too many levels");
        int64_t oc;
        char name[256];
        snprintf(name, sizeof name, UNET "input_blocks.%d.0.out_layers.3.weight", idx);
        oc = dim_of(m, name, 4, 0);
        if (oc <= 0 || oc % u->model_channels) return ldm_fail(LDM_ERR_FORMAT, "UNet block %d has a bad shape", idx);
        u->channel_mult[level] = (int32_t)(oc / u->model_channels);
        u->attn_at_level[level] = model_has(m, UNET "input_blocks.%d.1.norm.weight", idx);
        idx += nres;
        level++;
        if (!model_has(m, UNET "input_blocks.%d.0.op.weight", idx)) break;
        idx++;
    }
    u->n_levels = level;
    /* Transformer details from the first transformer found. */
    char prefix[256] = "";
    for (int i = 1; i < idx && !prefix[0]; i++)
        if (model_has(m, UNET "input_blocks.%d.1.norm.weight", i)) snprintf(prefix, sizeof prefix, UNET "input_blocks.%d.1.", i);
    if (!prefix[0] && model_has(m, UNET "middle_block.1.norm.weight")) snprintf(prefix, sizeof prefix, UNET "middle_block.1.");
    /* openaimodel AttentionBlock (qkv, proj_out, no context) rather than a SpatialTransformer. */
    if (prefix[0] && model_has(m, "%sqkv.weight", prefix)) {
        u->legacy_attn = true;
        prefix[0] = '\0';
    }
    if (prefix[0]) {
        char name[300];
        snprintf(name, sizeof name, "%sproj_in.weight", prefix);
        const ldm_tensor *pin = model_weight(m, name);
        if (!pin) return ldm_fail(LDM_ERR_FORMAT, "checkpoint lacks '%s'", name);
        u->linear_proj = pin->ndim == 2;
        snprintf(name, sizeof name, "%stransformer_blocks.0.attn2.to_k.weight", prefix);
        int64_t cd = dim_of(m, name, 2, 1);
        if (cd <= 0) return ldm_fail(LDM_ERR_FORMAT, "UNet cross-attention '%s' missing or malformed", name);
        u->context_dim = (int32_t)cd;
        int depth = 0;
        for (;;) {
            snprintf(name, sizeof name, "%stransformer_blocks.%d.norm1.weight", prefix, depth);
            if (!model_weight(m, name)) break;
            depth++;
        }
        u->transformer_depth = depth;
    }
    return LDM_OK;
}

static ldm_status derive_vae(ldm_model *m) {
    vae_config *v = &m->vae;
    ldm_status st = LDM_OK;
    const ldm_tensor *cin = model_weightf(m, &st, VAE "encoder.conv_in.weight");
    const ldm_tensor *cout = model_weightf(m, &st, VAE "decoder.conv_out.weight");
    const ldm_tensor *pq = model_weightf(m, &st, VAE "post_quant_conv.weight");
    const ldm_tensor *dec_in = model_weightf(m, &st, VAE "decoder.conv_in.weight");
    if (st) return st;
    if (cin->ndim != 4 || cin->ne[0] < 1 || cin->ne[0] > 65536)
        return ldm_fail(LDM_ERR_FORMAT, "VAE '%sencoder.conv_in.weight' has a bad shape", VAE);
    v->ch = (int32_t)cin->ne[0];
    v->in_channels = (int32_t)cin->ne[1];
    v->out_ch = (int32_t)cout->ne[0];
    v->embed_dim = (int32_t)pq->ne[1];
    v->z_channels = (int32_t)dec_in->ne[1];
    int nres = 0;
    while (model_has(m, VAE "encoder.down.0.block.%d.conv1.weight", nres)) nres++;
    int levels = 0;
    while (model_has(m, VAE "encoder.down.%d.block.0.conv1.weight", levels)) {
        if (levels >= LDM_MAX_LEVELS) return ldm_fail(LDM_ERR_UNSUPPORTED, "VAE has too many levels");
        char name[256];
        snprintf(name, sizeof name, VAE "encoder.down.%d.block.0.conv1.weight", levels);
        v->ch_mult[levels] = (int32_t)(dim_of(m, name, 4, 0) / v->ch);
        levels++;
    }
    if (!nres || !levels) return ldm_fail(LDM_ERR_FORMAT, "VAE encoder blocks missing");
    v->num_res_blocks = nres;
    v->n_levels = levels;
    return LDM_OK;
}

static ldm_status derive_clip_hf(ldm_model *m) {
    clip_config *c = &m->clip;
    ldm_status st = LDM_OK;
    const ldm_tensor *tok = model_weightf(m, &st, CLIP_HF "embeddings.token_embedding.weight");
    const ldm_tensor *pos = model_weightf(m, &st, CLIP_HF "embeddings.position_embedding.weight");
    const ldm_tensor *fc1 = model_weightf(m, &st, CLIP_HF "encoder.layers.0.mlp.fc1.weight");
    if (st) return st;
    c->vocab = (int32_t)tok->ne[0];
    c->width = (int32_t)tok->ne[1];
    c->n_pos = (int32_t)pos->ne[0];
    c->ff_dim = (int32_t)fc1->ne[0];
    int layers = 0;
    while (model_has(m, CLIP_HF "encoder.layers.%d.self_attn.q_proj.weight", layers)) layers++;
    c->layers = layers;
    c->heads = c->width / 64 > 0 ? c->width / 64 : 1; /* CLIP ViT-L: 768 / 64 = 12 heads */
    c->act = CLIP_ACT_QUICK_GELU;
    c->pad_id = 49407; /* SD 1.x pads with the end token */
    c->kind = CLIP_KIND_HF;
    c->default_skip = 1;
    if (c->n_pos != 77) return ldm_fail(LDM_ERR_UNSUPPORTED, "text encoder has %d positions (77 expected)", c->n_pos);
    return LDM_OK;
}

/* SD 2.x OpenCLIP text tower (open_clip transformer.py): ViT-H/14 text = width 1024, 24 layers,
 * 16 heads (width / 64), exact GELU, 0 padding (open_clip.tokenize), penultimate layer. */
static ldm_status derive_clip_openclip(ldm_model *m) {
    clip_config *c = &m->clip;
    ldm_status st = LDM_OK;
    const ldm_tensor *tok = model_weightf(m, &st, OPENCLIP "token_embedding.weight");
    const ldm_tensor *pos = model_weightf(m, &st, OPENCLIP "positional_embedding");
    const ldm_tensor *fc = model_weightf(m, &st, OPENCLIP "transformer.resblocks.0.mlp.c_fc.weight");
    model_weightf(m, &st, OPENCLIP "ln_final.weight");
    if (st) return st;
    if (tok->ndim != 2 || pos->ndim != 2 || fc->ndim != 2 || pos->ne[1] != tok->ne[1] || fc->ne[1] != tok->ne[1])
        return ldm_fail(LDM_ERR_FORMAT, "OpenCLIP text encoder embeddings have inconsistent shapes");
    c->kind = CLIP_KIND_OPENCLIP;
    c->vocab = (int32_t)tok->ne[0];
    c->width = (int32_t)tok->ne[1];
    c->n_pos = (int32_t)pos->ne[0];
    c->ff_dim = (int32_t)fc->ne[0];
    int layers = 0;
    while (model_has(m, OPENCLIP "transformer.resblocks.%d.attn.in_proj_weight", layers)) layers++;
    if (layers < 1) return ldm_fail(LDM_ERR_FORMAT, "OpenCLIP text encoder has no resblocks");
    c->layers = layers;
    c->heads = c->width / 64 > 0 ? c->width / 64 : 1;
    c->act = CLIP_ACT_GELU;
    c->pad_id = 0;
    c->default_skip = 2; /* FrozenOpenCLIPEmbedder(layer="penultimate") */
    if (c->n_pos != 77) return ldm_fail(LDM_ERR_UNSUPPORTED, "text encoder has %d positions (77 expected)", c->n_pos);
    return LDM_OK;
}

/* Applies the keys of a CompVis-style config JSON that the weights cannot tell. */
static ldm_status apply_config(ldm_model *m, const char *path) {
    char *text;
    size_t len;
    ldm_status st = ldm_read_file(path, &text, &len);
    if (st) return st;
    json_value *root;
    st = json_parse(text, len, &root);
    free(text);
    if (st) {
        /* ldm_fail() formats into the buffer ldm_last_error() returns: copy the message out first. */
        char why[512];
        snprintf(why, sizeof why, "%s", ldm_last_error());
        return ldm_fail(st, "config '%s': %s", path, why);
    }
    const json_value *p = json_path(root, "model.params");
    if (!p) p = json_get(root, "params");
    int64_t iv;
    const json_value *v;
    if ((v = json_get(p, "scale_factor")) && v->type == JSON_NUMBER) m->scale_factor = (float)v->number;
    if ((v = json_get(p, "linear_start")) && v->type == JSON_NUMBER) m->sched.linear_start = v->number;
    if ((v = json_get(p, "linear_end")) && v->type == JSON_NUMBER) m->sched.linear_end = v->number;
    if ((v = json_get(p, "timesteps")) && json_as_int64(v, &iv)) m->sched.timesteps = (int32_t)iv;
    if ((v = json_get(p, "parameterization")) && v->type == JSON_STRING) {
        m->prediction = strcmp(v->string, "v") == 0 ? LDM_PREDICTION_V : LDM_PREDICTION_EPS;
        m->config_prediction = true;
    }
    const json_value *up = json_path(p, "unet_config.params");
    if ((v = json_get(up, "num_heads")) && json_as_int64(v, &iv)) m->unet.num_heads = (int32_t)iv;
    if ((v = json_get(up, "num_head_channels")) && json_as_int64(v, &iv)) m->unet.num_head_channels = (int32_t)iv;
    const json_value *hf = json_path(root, "cond_stage.hf_text_config");
    if ((v = json_get(hf, "num_attention_heads")) && json_as_int64(v, &iv) && iv > 0) m->clip.heads = (int32_t)iv;
    if ((v = json_get(hf, "hidden_act")) && v->type == JSON_STRING)
        m->clip.act = strcmp(v->string, "gelu") == 0 ? CLIP_ACT_GELU : CLIP_ACT_QUICK_GELU;
    if ((v = json_path(root, "cond_stage.tokenizer.pad")) && json_as_int64(v, &iv)) m->clip.pad_id = (int32_t)iv;
    /* SD 2.x: the open_clip text config (heads) and FrozenOpenCLIPEmbedder's layer. */
    if ((v = json_path(root, "open_clip_model_cfg.text_cfg.heads")) && json_as_int64(v, &iv) && iv > 0)
        m->clip.heads = (int32_t)iv;
    if ((v = json_path(p, "cond_stage_config.params.layer")) && v->type == JSON_STRING)
        m->clip.default_skip = strcmp(v->string, "last") == 0 ? 1 : 2;
    json_free(root);
    if (m->sched.timesteps != 1000)
        return ldm_fail(LDM_ERR_UNSUPPORTED, "config '%s': %d training timesteps (1000 supported)", path,
                        m->sched.timesteps);
    return LDM_OK;
}

/* The hyper-parameters a diffusers folder states in its configs (checkpoint.c exports them as
 * metadata); an explicit config file, applied after, still wins. scaled_linear is ldm's "linear"
 * (diffusers DDPMScheduler: linspace(sqrt(start), sqrt(end))^2). */
static void apply_container_meta(ldm_model *m) {
    const char *v;
    if ((v = st_meta(m->file, "diffusers.unet.num_heads")) && atoi(v) > 0) m->unet.num_heads = atoi(v);
    if ((v = st_meta(m->file, "diffusers.unet.num_head_channels")) && atoi(v) > 0) {
        m->unet.num_heads = -1;
        m->unet.num_head_channels = atoi(v);
    }
    if ((v = st_meta(m->file, "diffusers.text.num_heads")) && atoi(v) > 0) m->clip.heads = atoi(v);
    if ((v = st_meta(m->file, "diffusers.vae.scaling_factor")) && strtof(v, NULL) > 0)
        m->scale_factor = strtof(v, NULL);
    if ((v = st_meta(m->file, "diffusers.prediction_type")) &&
        (strcmp(v, "epsilon") == 0 || strcmp(v, "v_prediction") == 0)) {
        m->prediction = strcmp(v, "epsilon") == 0 ? LDM_PREDICTION_EPS : LDM_PREDICTION_V;
        m->config_prediction = true;
    }
    const char *bs = st_meta(m->file, "diffusers.beta_schedule"), *b0 = st_meta(m->file, "diffusers.beta_start"),
               *b1 = st_meta(m->file, "diffusers.beta_end");
    if (bs && strcmp(bs, "scaled_linear") == 0 && b0 && b1) {
        m->sched.linear_start = strtod(b0, NULL);
        m->sched.linear_end = strtod(b1, NULL);
    }
}

/* ldm "linear" schedule: betas = linspace(sqrt(start), sqrt(end), T)^2 in float64, cumulative
 * product of 1 - beta in float64, stored as float32 (ldm/models/diffusion/ddpm.py register_schedule). */
static void compute_alphas_cumprod(ldm_model *m) {
    int T = m->sched.timesteps;
    double a = sqrt(m->sched.linear_start), b = sqrt(m->sched.linear_end), prod = 1.0;
    double step = (b - a) / (T - 1);
    for (int i = 0; i < T; i++) {
        /* torch.linspace fills the first half from the start and the second from the end. */
        double s = i < T / 2 ? a + step * i : b - step * (T - 1 - i);
        prod *= 1.0 - s * s;
        m->alphas_cumprod[i] = (float)prod;
        m->sqrt_alphas_cumprod[i] = (float)sqrt(prod);
        m->sqrt_one_minus_alphas_cumprod[i] = (float)sqrt(1.0 - prod);
    }
}

static void validate_heads(ldm_model *m, ldm_status *st) {
    if (*st) return;
    const unet_config *u = &m->unet;
    if (u->num_heads <= 0 && u->num_head_channels <= 0)
        *st = ldm_fail(LDM_ERR_FORMAT, "UNet attention heads unknown (set num_heads in the config)");
    /* num_head_channels wins when set (openaimodel.py: num_heads = ch // num_head_channels). */
    for (int l = 0; !*st && u->num_head_channels > 0 && l < u->n_levels; l++) {
        int32_t ch = u->model_channels * u->channel_mult[l];
        if ((u->attn_at_level[l] || l == u->n_levels - 1) && ch % u->num_head_channels)
            *st = ldm_fail(LDM_ERR_FORMAT, "UNet level %d has %d channels, not a multiple of num_head_channels %d", l,
                           ch, u->num_head_channels);
    }
    if (m->clip.heads <= 0 || m->clip.width % m->clip.heads)
        *st = ldm_fail(LDM_ERR_FORMAT, "text encoder width %d is not divisible by %d heads", m->clip.width,
                       m->clip.heads);
}

/* Parameters, bytes and dtypes per component, by key prefix (ldm_model_get_info). */
static void count_components(ldm_model *m) {
    static const char *const prefixes[3] = {UNET, VAE, "cond_stage_model."};
    int64_t by_dtype[4][LDM_DT_COUNT];
    memset(by_dtype, 0, sizeof by_dtype);
    for (size_t i = 0; i < m->n_weights; i++) {
        const st_tensor *t = st_at(m->file, i);
        int k = 3;
        for (int j = 0; j < 3; j++)
            if (strncmp(t->name, prefixes[j], strlen(prefixes[j])) == 0) k = j;
        /* Integer buffers (position_ids) are not parameters. */
        if (t->dtype != LDM_DT_F32 && t->dtype != LDM_DT_F16 && t->dtype != LDM_DT_BF16 && t->dtype != LDM_DT_F64)
            continue;
        int64_t numel = (int64_t)st_numel(t);
        m->comp[k].params += numel;
        m->comp[k].bytes += numel * (int64_t)ldm_dtype_size(t->dtype);
        if ((unsigned)t->dtype < LDM_DT_COUNT) by_dtype[k][t->dtype] += numel;
    }
    for (int k = 0; k < 4; k++) {
        /* dtypes by decreasing parameter count, joined by '+' */
        char *d = m->comp[k].dtype;
        size_t cap = sizeof m->comp[k].dtype;
        for (;;) {
            int best = -1;
            for (int dt = 0; dt < LDM_DT_COUNT; dt++)
                if (by_dtype[k][dt] > 0 && (best < 0 || by_dtype[k][dt] > by_dtype[k][best])) best = dt;
            if (best < 0) break;
            size_t len = strlen(d);
            snprintf(d + len, cap - len, "%s%s", len ? "+" : "", ldm_dtype_name((ldm_dtype)best));
            for (char *p = d + len; *p; p++) *p = (char)tolower((unsigned char)*p); /* "f16" */
            by_dtype[k][best] = 0;
        }
    }
}

LDM_API void ldm_model_params_init(ldm_model_params *params) {
    if (!params) return;
    memset(params, 0, sizeof *params);
    params->struct_size = sizeof *params;
    params->prediction = LDM_PREDICTION_AUTO;
}

LDM_API void ldm_model_destroy(ldm_model *model) {
    if (!model) return;
    ldm_clip_tokenizer_destroy(model->tokenizer);
    model_ldm_free(model);
    free(model->qkv_views);
    free(model->weights);
    st_close(model->file);
    free(model);
}

ldm_status ldm_model_load_internal(const char *path, const ldm_model_params *params, ldm_model **out) {
    ldm_model *m = calloc(1, sizeof *m);
    if (!m) return ldm_fail(LDM_ERR_NO_MEMORY, "out of memory");
    ldm_status st = ckpt_open(path, &m->file); /* safetensors, torch zip or diffusers folder */
    if (!st) st = index_weights(m);
    if (!st) {
        bool unet_vae = model_has(m, UNET "input_blocks.0.0.weight") && model_has(m, VAE "encoder.conv_in.weight");
        bool sd1 = unet_vae && model_has(m, CLIP_HF "embeddings.token_embedding.weight");
        /* OpenCLIP text + a UNet without label_emb (the x4 upscaler has one). */
        bool sd2 = unet_vae && model_has(m, OPENCLIP "token_embedding.weight") && !model_has(m, UNET "label_emb.0.weight");
        const char *other = recognise_other(m), *paper_name = NULL;
        ldm_family paper = model_ldm_recognise(m, &paper_name);
        if (paper != LDM_FAMILY_UNKNOWN) {
            m->family = paper;
            m->family_name = paper_name;
        } else if (sd1) {
            m->family = LDM_FAMILY_SD1;
            m->family_name = "sd1";
        } else if (sd2) {
            m->family = LDM_FAMILY_SD2;
            m->family_name = "sd2";
        } else if (other) {
            st = ldm_fail(LDM_ERR_UNSUPPORTED, "'%s': recognised %s, which this build does not run yet", path, other);
        } else {
            st = ldm_fail(LDM_ERR_UNSUPPORTED, "'%s': not a recognised diffusion checkpoint (%zu tensors, no UNet keys)",
                          path, m->n_weights);
        }
    }
    if (!st) st = derive_unet(m);
    if (!st) st = derive_vae(m);
    if (!st) {
        if (m->family == LDM_FAMILY_SD2 || m->family == LDM_FAMILY_X4_UPSCALER) st = derive_clip_openclip(m);
        else if (m->family == LDM_FAMILY_SD1) st = derive_clip_hf(m);
        if (!st) st = model_ldm_derive(m); /* cond stage, VQ, label_emb, concat of the paper families */
    }
    /* The sampler's latent feeds the UNet input and the VAE decoder: the channel counts must
     * agree, or the buffers sized by one are read as the other. Inpainting UNets (conditioning_key
     * hybrid) take latent + mask + masked-image latent (runwayml v1-inpainting-inference.yaml: 9). */
    if (!st && m->unet.in_channels == m->unet.out_channels + 1 + m->vae.embed_dim)
        m->concat_channels = m->unet.in_channels - m->unet.out_channels;
    if (!st && ((m->unet.in_channels != m->unet.out_channels && !m->concat_channels) ||
                m->vae.embed_dim != m->unet.out_channels))
        st = ldm_fail(LDM_ERR_FORMAT,
                      "'%s': the UNet takes %d latent channels and gives %d, the VAE latent has %d (they must agree)",
                      path, m->unet.in_channels, m->unet.out_channels, m->vae.embed_dim);
    if (!st) {
        /* SD 1.x defaults (CompVis configs/stable-diffusion/v1-inference.yaml); SD 2.x
         * (Stability configs/stable-diffusion/v2-inference[-v].yaml) differs in the heads:
         * num_head_channels 64. The prediction type is resolved after loading (AUTO). */
        if (m->family == LDM_FAMILY_SD2) {
            m->unet.num_heads = -1;
            m->unet.num_head_channels = 64;
        } else {
            m->unet.num_heads = 8;
        }
        m->scale_factor = 0.18215f;
        m->prediction = LDM_PREDICTION_AUTO;
        m->sched = (ldm_schedule_config){1000, 0.00085, 0.012};
        m->latent_channels = m->unet.out_channels;
        m->downscale = 1 << (m->vae.n_levels - 1);
        model_ldm_defaults(m);
        apply_container_meta(m); /* a diffusers folder's own configs (checkpoint.h) */
        if (params && params->config_path) st = apply_config(m, params->config_path);
        if (m->config_prediction) m->prediction_source = "config";
    }
    if (!st && params && params->prediction != LDM_PREDICTION_AUTO) {
        if (params->prediction != LDM_PREDICTION_EPS && params->prediction != LDM_PREDICTION_V)
            st = ldm_fail(LDM_ERR_INVALID_ARG, "prediction must be auto, eps or v");
        else {
            m->prediction = params->prediction;
            m->prediction_source = "parameter";
        }
    }
    /* What no probe can improve on: SD 1.x and every inpainting model are eps (A1111
     * sd_models_config.py picks v only for 4-channel SD 2.x). */
    if (!st && m->prediction == LDM_PREDICTION_AUTO && (m->family != LDM_FAMILY_SD2 || m->concat_channels)) {
        m->prediction = LDM_PREDICTION_EPS;
        m->prediction_source = "family default";
    }
    if (!st) st = model_ldm_configure(m, params ? params->config_path : NULL);
    if (!st && m->clip.kind == CLIP_KIND_OPENCLIP) st = openclip_prepare(m);
    if (!st) count_components(m);
    validate_heads(m, &st);
    if (!st) {
        compute_alphas_cumprod(m);
        st = ldm_clip_tokenizer_create(&m->tokenizer);
    }
    if (st) {
        ldm_model_destroy(m);
        return st;
    }
    *out = m;
    return LDM_OK;
}

/* A1111 modules/sd_models_config.py is_using_v_parameterization_for_sd2 (stable-diffusion.cpp
 * does the same): the UNet on x = 0.5 everywhere (8x8 latent), t = 999, a 2-token context of 0.5;
 * mean(out - x) < -1 means v. An empirical rule for trained SD 2.x weights (eps models stay near
 * 0 there); on random weights it decides arbitrarily, so configs/--prediction take precedence. */
ldm_status model_probe_prediction(ldm_exec *ex, ldm_model *m) {
    const unet_config *u = &m->unet;
    int32_t side = 1 << (u->n_levels - 1);
    if (side < 8) side = 8;
    size_t n = (size_t)u->in_channels * side * side, no = (size_t)u->out_channels * side * side;
    size_t nc = (size_t)2 * u->context_dim;
    float *buf = malloc((n + no + nc) * sizeof *buf);
    if (!buf) return ldm_fail(LDM_ERR_NO_MEMORY, "out of memory");
    float *x = buf, *out = buf + n, *ctx = buf + n + no, t = 999.0f;
    for (size_t i = 0; i < n; i++) x[i] = 0.5f;
    for (size_t i = 0; i < nc; i++) ctx[i] = 0.5f;
    ldm_status st = unet_forward(ex, m, 1, side, side, x, &t, 2, ctx, out);
    if (!st) {
        double mean = 0.0;
        for (size_t i = 0; i < no; i++) mean += (double)out[i] - 0.5;
        mean /= (double)no;
        m->prediction = mean < -1.0 ? LDM_PREDICTION_V : LDM_PREDICTION_EPS;
        m->prediction_source = "probe";
        m->probe_value = mean;
    }
    free(buf);
    return st;
}

int32_t model_image_size(const ldm_model *m) {
    if (m->family == LDM_FAMILY_LDM_SR || m->family == LDM_FAMILY_X4_UPSCALER) return 0;
    const char *v = st_meta(m->file, "ldm.image_size");
    if (v) {
        char *end;
        long side = strtol(v, &end, 10);
        if (end != v && *end == '\0' && side >= m->downscale && side <= 8192 && side % m->downscale == 0)
            return (int32_t)side;
    }
    if (m->family == LDM_FAMILY_SD2 && m->prediction == LDM_PREDICTION_V && !m->concat_channels) return 768;
    if (m->family == LDM_FAMILY_LDM_TXT2IMG) return 256;
    return 512;
}

LDM_API const char *ldm_model_family(const ldm_model *model) { return model ? model->family_name : NULL; }
LDM_API int32_t ldm_model_latent_channels(const ldm_model *model) { return model ? model->latent_channels : 0; }
LDM_API int32_t ldm_model_downscale(const ldm_model *model) { return model ? model->downscale : 0; }

LDM_API ldm_status ldm_model_get_info(const ldm_model *model, ldm_model_info *info) {
    if (!model || !info) return ldm_fail(LDM_ERR_INVALID_ARG, "ldm_model_get_info: NULL argument");
    size_t given = info->struct_size;
    if (given < offsetof(ldm_model_info, unet))
        return ldm_fail(LDM_ERR_INVALID_ARG, "ldm_model_info.struct_size %zu is too small", given);
    ldm_model_info v;
    memset(&v, 0, sizeof v);
    v.struct_size = given < sizeof v ? given : sizeof v;
    v.family = model->family_name;
    v.prediction = model->prediction == LDM_PREDICTION_V ? LDM_PREDICTION_V : LDM_PREDICTION_EPS;
    v.prediction_source = model->prediction_source ? model->prediction_source : "family default";
    /* The SR models' concatenated low-res image is not an inpainting mask. */
    bool upscaler = model->family == LDM_FAMILY_LDM_SR || model->family == LDM_FAMILY_X4_UPSCALER;
    v.inpainting = model->concat_channels > 0 && !upscaler;
    v.unet_in_channels = model->unet.in_channels;
    v.latent_channels = model->latent_channels;
    v.downscale = model->downscale;
    v.context_dim = model->unet.context_dim;
    v.text_encoder = model->cond == COND_BERT   ? "bert"
                     : model->cond == COND_NONE ? "none"
                     : model->clip.kind == CLIP_KIND_OPENCLIP ? "openclip" : "clip";
    v.text_layers = model->cond == COND_BERT ? model->bert.layers : model->cond == COND_NONE ? 0 : model->clip.layers;
    v.first_stage = model->vae.kind == FIRST_STAGE_VQ ? "vq" : "kl";
    v.upscaler = upscaler;
    v.clip_skip_default = model->clip.default_skip;
    v.scale_factor = model->scale_factor;
    v.image_size = model_image_size(model);
    ldm_component_info *c[4] = {&v.unet, &v.vae, &v.text, &v.other};
    for (int k = 0; k < 4; k++) {
        c[k]->params = model->comp[k].params;
        c[k]->bytes = model->comp[k].bytes;
        c[k]->dtype = model->comp[k].dtype;
    }
    memcpy(info, &v, v.struct_size);
    return LDM_OK;
}
