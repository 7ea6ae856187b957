/* Checkpoint containers other than a single safetensors file, indexed through st_builder so the
 * model code sees one st_file whatever the source. See checkpoint.h. */
#include "checkpoint.h"

#include "json.h"
#include "pickle.h"
#include "zip.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

_Static_assert(PK_MAX_DIMS <= ST_MAX_DIMS, "pickle tensors fit st_tensor");

/* Prefixes an error message with the file it concerns (ldm_fail formats into the buffer
 * ldm_last_error() returns, so the message is copied out first). */
static ldm_status fail_in(ldm_status st, const char *path) {
    char why[768];
    snprintf(why, sizeof why, "%s", ldm_last_error());
    return ldm_fail(st, "'%s': %s", path, why);
}

/* ---- torch zip checkpoints --------------------------------------------------------------- */

/* Finds "<archive>/data.pkl": torch names the top folder after the file (torch 1.x) or
 * "archive" (buffers, newer releases), so any single-level folder is accepted, but only one. */
static ldm_status find_pickle(const zip_archive *z, const zip_entry **pkl, size_t *prefix_len) {
    *pkl = NULL;
    for (size_t i = 0; i < z->count; i++) {
        const zip_entry *e = &z->entries[i];
        if (e->name_len < 9 || memcmp(e->name + e->name_len - 9, "/data.pkl", 9) != 0) continue;
        if (memchr(e->name, '/', e->name_len - 9) || memchr(e->name, '\0', e->name_len)) continue;
        if (*pkl) return ldm_fail(LDM_ERR_FORMAT, "torch checkpoint: the archive holds more than one data.pkl");
        *pkl = e;
        *prefix_len = e->name_len - 9;
    }
    if (!*pkl) {
        if (z->count && zip_find(z, "model_index.json"))
            return ldm_fail(LDM_ERR_FORMAT, "a zipped diffusers folder: unpack it and pass the folder");
        return ldm_fail(LDM_ERR_FORMAT, "a ZIP archive without <archive>/data.pkl: not a torch.save checkpoint");
    }
    return LDM_OK;
}

/* Gathers a strided view (element-wise, in storage order of the view) into dst. */
static void gather(unsigned char *dst, const unsigned char *base, size_t es, const pk_tensor *t) {
    int64_t idx[PK_MAX_DIMS] = {0};
    size_t n = 1;
    for (int d = 0; d < t->ndim; d++) n *= (size_t)t->shape[d];
    uint64_t off = t->offset;
    for (size_t i = 0; i < n; i++) {
        memcpy(dst + i * es, base + off * es, es);
        for (int d = t->ndim - 1; d >= 0; d--) {
            off += (uint64_t)t->stride[d];
            if (++idx[d] < t->shape[d]) break;
            off -= (uint64_t)t->stride[d] * (uint64_t)t->shape[d];
            idx[d] = 0;
        }
    }
}

/* Checks one tensor's view against its storage entry and adds it: contiguous views point into
 * the mapped entry, strided ones (transposes, expands, slices) are copied. */
static ldm_status add_torch_tensor(st_builder *b, const zip_archive *z, const char *prefix, size_t prefix_len,
                                   const pk_tensor *t, size_t *copy_budget) {
    size_t key_len = strlen(t->storage_key);
    char *ename = malloc(prefix_len + 6 + key_len + 1);
    if (!ename) return ldm_fail(LDM_ERR_NO_MEMORY, "out of memory");
    memcpy(ename, prefix, prefix_len);
    memcpy(ename + prefix_len, "/data/", 6);
    memcpy(ename + prefix_len + 6, t->storage_key, key_len + 1);
    const zip_entry *e = zip_find(z, ename);
    free(ename);
    if (!e)
        return ldm_fail(LDM_ERR_FORMAT, "torch checkpoint: tensor '%s' uses storage '%s', which the archive lacks",
                        t->name, t->storage_key);
    const unsigned char *base;
    ldm_status st = zip_stored_data(z, e, &base);
    if (st) return st;
    size_t es = ldm_dtype_size(t->dtype), storage_bytes, numel = 1;
    if (t->storage_numel > SIZE_MAX || !ldm_mul_size((size_t)t->storage_numel, es, &storage_bytes) ||
        storage_bytes > e->size)
        return ldm_fail(LDM_ERR_FORMAT, "torch checkpoint: storage '%s' holds %llu bytes, fewer than the %llu %s elements the pickle states",
                        t->storage_key, (unsigned long long)e->size, (unsigned long long)t->storage_numel,
                        ldm_dtype_name(t->dtype));
    for (int d = 0; d < t->ndim; d++)
        if (!ldm_mul_size(numel, (size_t)t->shape[d], &numel))
            return ldm_fail(LDM_ERR_FORMAT, "torch checkpoint: tensor '%s' has an absurd shape", t->name);
    if (numel == 0) return st_builder_add(b, t->name, t->dtype, t->ndim, t->shape, base);
    /* Highest element the view touches: offset + sum((size - 1) * stride), overflow-checked. */
    uint64_t last = t->offset, span;
    bool contiguous = true;
    uint64_t expect = 1;
    for (int d = t->ndim - 1; d >= 0; d--) {
        if (__builtin_mul_overflow((uint64_t)(t->shape[d] - 1), (uint64_t)t->stride[d], &span) ||
            __builtin_add_overflow(last, span, &last))
            return ldm_fail(LDM_ERR_FORMAT, "torch checkpoint: tensor '%s' has absurd strides", t->name);
        if (t->shape[d] != 1 && (uint64_t)t->stride[d] != expect) contiguous = false;
        expect *= (uint64_t)t->shape[d]; /* <= numel, no overflow */
    }
    if (last >= t->storage_numel)
        return ldm_fail(LDM_ERR_FORMAT,
                        "torch checkpoint: tensor '%s' (offset %llu) reaches element %llu of storage '%s', which holds %llu",
                        t->name, (unsigned long long)t->offset, (unsigned long long)last, t->storage_key,
                        (unsigned long long)t->storage_numel);
    if (contiguous) return st_builder_add(b, t->name, t->dtype, t->ndim, t->shape, base + t->offset * es);
    /* A broadcast view (stride 0) can name far more elements than its storage holds: the copies
     * together may not exceed twice the archive plus 16 MiB (a checkpoint of transposed weights
     * needs about its own size). */
    size_t bytes;
    if (!ldm_mul_size(numel, es, &bytes) || bytes > *copy_budget)
        return ldm_fail(LDM_ERR_FORMAT,
                        "torch checkpoint: strided tensor '%s' would expand to %zu elements, more than the archive "
                        "can reasonably hold",
                        t->name, numel);
    *copy_budget -= bytes;
    unsigned char *copy = malloc(bytes ? bytes : 1);
    if (!copy) return ldm_fail(LDM_ERR_NO_MEMORY, "out of memory copying strided tensor '%s'", t->name);
    gather(copy, base, es, t);
    if ((st = st_builder_keep(b, ST_KEEP_FREE, copy, 0))) return st;
    return st_builder_add(b, t->name, t->dtype, t->ndim, t->shape, copy);
}

static ldm_status torch_zip_fill(st_builder *b, const unsigned char *data, size_t size) {
    zip_archive z;
    ldm_status st = zip_open(data, size, &z);
    if (st) return st;
    const zip_entry *pkl_entry;
    size_t prefix_len = 0;
    const unsigned char *pkl = NULL;
    if (!(st = find_pickle(&z, &pkl_entry, &prefix_len))) st = zip_stored_data(&z, pkl_entry, &pkl);
    char prefix[300];
    if (!st && prefix_len >= sizeof prefix - 16)
        st = ldm_fail(LDM_ERR_FORMAT, "torch checkpoint: archive folder name of %zu bytes", prefix_len);
    if (!st) {
        memcpy(prefix, pkl_entry->name, prefix_len);
        prefix[prefix_len] = '\0';
#ifndef FUZZING_BUILD_MODE_UNSAFE_FOR_PRODUCTION /* libFuzzer builds: let mutations reach the pickle */
        if (zip_crc32(pkl, pkl_entry->size) != pkl_entry->crc32)
            st = ldm_fail(LDM_ERR_FORMAT, "torch checkpoint: %s/data.pkl fails its CRC-32 check (corrupt file)", prefix);
#endif
    }
    if (!st) {
        /* torch >= 1.10 records the byte order; tensors are read as little-endian */
        char bo_name[320];
        snprintf(bo_name, sizeof bo_name, "%s/byteorder", prefix);
        const zip_entry *bo = zip_find(&z, bo_name);
        const unsigned char *bod;
        if (bo && !zip_stored_data(&z, bo, &bod) && !(bo->size == 6 && memcmp(bod, "little", 6) == 0))
            st = ldm_fail(LDM_ERR_UNSUPPORTED, "torch checkpoint: saved on a big-endian machine");
    }
    pk_state_dict sd = {0};
    if (!st) st = pk_load_state_dict(pkl, (size_t)pkl_entry->size, &sd);
    size_t copy_budget = (size > SIZE_MAX / 4 ? SIZE_MAX / 2 : 2 * size) + ((size_t)16 << 20);
    for (size_t i = 0; !st && i < sd.count; i++)
        st = add_torch_tensor(b, &z, prefix, prefix_len, &sd.tensors[i], &copy_budget);
    if (!st) st = st_builder_meta(b, "ldm.container", "torch-zip");
    if (!st && sd.unwrapped) st = st_builder_meta(b, "ldm.torch.state_dict", "nested");
    pk_state_dict_free(&sd);
    zip_close(&z);
    return st;
}

ldm_status ckpt_open_torch_memory(const void *data, size_t size, st_file **out) {
    *out = NULL;
    st_builder *b = st_builder_new();
    if (!b) return ldm_fail(LDM_ERR_NO_MEMORY, "out of memory");
    ldm_status st = torch_zip_fill(b, data, size);
    if (st) {
        st_builder_free(b);
        return st;
    }
    return st_builder_finish(b, out);
}

/* ---- files ------------------------------------------------------------------------------- */

static ldm_status open_torch_file(const char *path, int fd, size_t size, st_file **out) {
    void *map = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (map == MAP_FAILED) return ldm_fail(LDM_ERR_IO, "cannot map '%s': %s", path, strerror(errno));
    st_builder *b = st_builder_new();
    if (!b) {
        munmap(map, size);
        return ldm_fail(LDM_ERR_NO_MEMORY, "out of memory");
    }
    ldm_status st = st_builder_keep(b, ST_KEEP_MUNMAP, map, size);
    if (!st) st = torch_zip_fill(b, map, size);
    if (st) {
        st = fail_in(st, path);
        st_builder_free(b);
        return st;
    }
    if ((st = st_builder_finish(b, out))) return fail_in(st, path);
    return LDM_OK;
}

/* One checkpoint file, dispatched on its first bytes. */
static ldm_status open_file(const char *path, st_file **out) {
    *out = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return ldm_fail(LDM_ERR_IO, "cannot open '%s': %s", path, strerror(errno));
    struct stat sb;
    unsigned char head[16] = {0};
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        close(fd);
        return ldm_fail(LDM_ERR_IO, "'%s' is not a regular file", path);
    }
    ssize_t got = pread(fd, head, sizeof head, 0);
    size_t size = (size_t)sb.st_size;
    ldm_status st = LDM_OK;
    if (got >= 9 && head[8] == '{') {
        /* a safetensors header: u64 length, then the JSON object */
    } else if (zip_is_zip(head, got > 0 ? (size_t)got : 0)) {
        st = open_torch_file(path, fd, size, out);
        close(fd);
        return st;
    } else if (got >= 4 && memcmp(head, "\x80\x02\x8a\x0a", 4) == 0) {
        st = ldm_fail(LDM_ERR_UNSUPPORTED,
                      "'%s': a legacy (pre-1.6, non-zip) torch checkpoint; re-save it with a current torch.save or "
                      "convert it to safetensors",
                      path);
    } else if (got >= 2 && head[0] == 0x80 && head[1] <= 5) {
        st = ldm_fail(LDM_ERR_UNSUPPORTED, "'%s': a bare pickle, not a torch.save zip checkpoint", path);
    }
    close(fd);
    if (st) return st;
    return st_open(path, out);
}

/* ---- diffusers folders ------------------------------------------------------------------- */

static bool take(const char **s, const char *lit) {
    size_t n = strlen(lit);
    if (strncmp(*s, lit, n) != 0) return false;
    *s += n;
    return true;
}

/* A decimal index followed by '.', at most 4 digits, no leading zeros. */
static bool take_index(const char **s, int *v) {
    const char *p = *s;
    int n = 0, digits = 0;
    while (*p >= '0' && *p <= '9' && digits < 5) {
        n = n * 10 + (*p++ - '0');
        digits++;
    }
    if (digits == 0 || digits > 4 || (digits > 1 && **s == '0') || *p != '.') return false;
    *v = n;
    *s = p + 1;
    return true;
}

void ckpt_layout_scan(ckpt_layout *l, ckpt_component c, const char *name) {
    const char *s = name;
    int i, j;
    if (c == CKPT_UNET) {
        if (take(&s, "down_blocks.") && take_index(&s, &i) && take(&s, "resnets.") && take_index(&s, &j)) {
            if (j + 1 > l->layers_per_block) l->layers_per_block = j + 1;
        } else if (s = name, take(&s, "up_blocks.") && take_index(&s, &i)) {
            if (i + 1 > l->n_up) l->n_up = i + 1;
            if (take(&s, "attentions.") && i < 32) l->up_has_attn |= 1u << i;
        }
    } else if (c == CKPT_VAE) {
        if (take(&s, "decoder.up_blocks.") && take_index(&s, &i) && i + 1 > l->n_vae_up) l->n_vae_up = i + 1;
    } else {
        if (take(&s, "text_model.encoder.layers.") && take_index(&s, &i) && i + 1 > l->n_text_layers)
            l->n_text_layers = i + 1;
    }
}

typedef struct {
    const char *from, *to;
} name_map;

/* Replaces one leading component of *s from the table; NULL when none matches. */
static const char *take_renamed(const char **s, const name_map *table, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (take(s, table[i].from)) return table[i].to;
    return NULL;
}

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

/* diffusers ResnetBlock2D -> openaimodel ResBlock (convert_diffusers_to_original_stable_diffusion.py
 * unet_conversion_map_resnet). */
static const name_map unet_resnet[] = {
    {"norm1.", "in_layers.0."},        {"conv1.", "in_layers.2."},   {"time_emb_proj.", "emb_layers.1."},
    {"norm2.", "out_layers.0."},       {"conv2.", "out_layers.3."},  {"conv_shortcut.", "skip_connection."},
};
static const name_map unet_top[] = {
    {"conv_in.", "input_blocks.0.0."},      {"time_embedding.linear_1.", "time_embed.0."},
    {"time_embedding.linear_2.", "time_embed.2."}, {"conv_norm_out.", "out.0."},
    {"conv_out.", "out.2."},
};
/* VAE: ResnetBlock2D keeps norm/conv names, the shortcut is nin_shortcut; the mid attention is
 * the old (query/key/value/proj_attn) or new (to_q/to_k/to_v/to_out.0) diffusers naming. */
static const name_map vae_resnet[] = {
    {"norm1.", "norm1."}, {"conv1.", "conv1."}, {"norm2.", "norm2."}, {"conv2.", "conv2."},
    {"conv_shortcut.", "nin_shortcut."},
};
static const name_map vae_attn[] = {
    {"group_norm.", "norm."}, {"query.", "q."}, {"key.", "k."},   {"value.", "v."}, {"proj_attn.", "proj_out."},
    {"to_q.", "q."},          {"to_k.", "k."},  {"to_v.", "v."}, {"to_out.0.", "proj_out."},
};

static bool is_leaf(const char *s) { return strcmp(s, "weight") == 0 || strcmp(s, "bias") == 0; }

/* A transformer's inner names are the same in both layouts; only a non-empty, dot-free-at-the-
 * ends remainder is accepted. */
static bool is_path(const char *s) {
    size_t n = strlen(s);
    return n > 0 && s[0] != '.' && s[n - 1] != '.';
}

static ldm_status map_unet(const ckpt_layout *l, const char *name, char *out, size_t cap) {
    const char *s = name, *to;
    int i, j, L = l->layers_per_block;
    int w = -1;
    if ((to = take_renamed(&s, unet_top, COUNT(unet_top))) && is_leaf(s)) {
        w = snprintf(out, cap, "model.diffusion_model.%s%s", to, s);
    } else if (s = name, take(&s, "down_blocks.") && take_index(&s, &i) && L > 0) {
        if (take(&s, "resnets.") && take_index(&s, &j) && j < L && (to = take_renamed(&s, unet_resnet, COUNT(unet_resnet))) &&
            is_leaf(s))
            w = snprintf(out, cap, "model.diffusion_model.input_blocks.%d.0.%s%s", 1 + i * (L + 1) + j, to, s);
        else if (take(&s, "attentions.") && take_index(&s, &j) && j < L && is_path(s))
            w = snprintf(out, cap, "model.diffusion_model.input_blocks.%d.1.%s", 1 + i * (L + 1) + j, s);
        else if (take(&s, "downsamplers.0.conv.") && is_leaf(s))
            w = snprintf(out, cap, "model.diffusion_model.input_blocks.%d.0.op.%s", (i + 1) * (L + 1), s);
    } else if (s = name, take(&s, "mid_block.")) {
        if (take(&s, "resnets.") && take_index(&s, &j) && j < 2 && (to = take_renamed(&s, unet_resnet, COUNT(unet_resnet))) &&
            is_leaf(s))
            w = snprintf(out, cap, "model.diffusion_model.middle_block.%d.%s%s", 2 * j, to, s);
        else if (take(&s, "attentions.0.") && is_path(s))
            w = snprintf(out, cap, "model.diffusion_model.middle_block.1.%s", s);
    } else if (s = name, take(&s, "up_blocks.") && take_index(&s, &i) && L > 0) {
        if (take(&s, "resnets.") && take_index(&s, &j) && j <= L && (to = take_renamed(&s, unet_resnet, COUNT(unet_resnet))) &&
            is_leaf(s))
            w = snprintf(out, cap, "model.diffusion_model.output_blocks.%d.0.%s%s", i * (L + 1) + j, to, s);
        else if (take(&s, "attentions.") && take_index(&s, &j) && j <= L && is_path(s))
            w = snprintf(out, cap, "model.diffusion_model.output_blocks.%d.1.%s", i * (L + 1) + j, s);
        else if (take(&s, "upsamplers.0.conv.") && is_leaf(s))
            /* the upsampler follows the block's attention when it has one (output_blocks.2.1 vs .5.2 in SD) */
            w = snprintf(out, cap, "model.diffusion_model.output_blocks.%d.%d.conv.%s", i * (L + 1) + L,
                         i < 32 && (l->up_has_attn >> i & 1u) ? 2 : 1, s);
    }
    if (w < 0) return ldm_fail(LDM_ERR_FORMAT, "diffusers unet: cannot map tensor '%s' to the single-file layout", name);
    if ((size_t)w >= cap) return ldm_fail(LDM_ERR_FORMAT, "diffusers unet: tensor name '%s' too long", name);
    return LDM_OK;
}

static ldm_status map_vae(const ckpt_layout *l, const char *name, char *out, size_t cap, bool *conv1x1) {
    const char *s = name, *to, *part;
    int i, j, w = -1;
    if (take(&s, "quant_conv.") || take(&s, "post_quant_conv.")) {
        if (is_leaf(s)) w = snprintf(out, cap, "first_stage_model.%s", name);
    } else if ((part = take(&s, "encoder.") ? "encoder" : take(&s, "decoder.") ? "decoder" : NULL)) {
        bool enc = part[0] == 'e';
        const char *sub = s;
        if (take(&s, "conv_in.") || take(&s, "conv_out.")) {
            if (is_leaf(s)) w = snprintf(out, cap, "first_stage_model.%s.%s", part, sub);
        } else if (take(&s, "conv_norm_out.")) {
            if (is_leaf(s)) w = snprintf(out, cap, "first_stage_model.%s.norm_out.%s", part, s);
        } else if (enc && take(&s, "down_blocks.") && take_index(&s, &i)) {
            if (take(&s, "resnets.") && take_index(&s, &j) && (to = take_renamed(&s, vae_resnet, COUNT(vae_resnet))) &&
                is_leaf(s))
                w = snprintf(out, cap, "first_stage_model.encoder.down.%d.block.%d.%s%s", i, j, to, s);
            else if (take(&s, "downsamplers.0.conv.") && is_leaf(s))
                w = snprintf(out, cap, "first_stage_model.encoder.down.%d.downsample.conv.%s", i, s);
        } else if (!enc && take(&s, "up_blocks.") && take_index(&s, &i) && i < l->n_vae_up) {
            /* diffusers numbers the decoder's blocks from the lowest resolution, SD from the highest */
            int k = l->n_vae_up - 1 - i;
            if (take(&s, "resnets.") && take_index(&s, &j) && (to = take_renamed(&s, vae_resnet, COUNT(vae_resnet))) &&
                is_leaf(s))
                w = snprintf(out, cap, "first_stage_model.decoder.up.%d.block.%d.%s%s", k, j, to, s);
            else if (take(&s, "upsamplers.0.conv.") && is_leaf(s))
                w = snprintf(out, cap, "first_stage_model.decoder.up.%d.upsample.conv.%s", k, s);
        } else if (take(&s, "mid_block.")) {
            if (take(&s, "resnets.") && take_index(&s, &j) && j < 2 &&
                (to = take_renamed(&s, vae_resnet, COUNT(vae_resnet))) && is_leaf(s))
                w = snprintf(out, cap, "first_stage_model.%s.mid.block_%d.%s%s", part, j + 1, to, s);
            else if (take(&s, "attentions.0.") && (to = take_renamed(&s, vae_attn, COUNT(vae_attn))) && is_leaf(s)) {
                w = snprintf(out, cap, "first_stage_model.%s.mid.attn_1.%s%s", part, to, s);
                *conv1x1 = strcmp(to, "norm.") != 0 && strcmp(s, "weight") == 0;
            }
        }
    }
    if (w < 0) return ldm_fail(LDM_ERR_FORMAT, "diffusers vae: cannot map tensor '%s' to the single-file layout", name);
    if ((size_t)w >= cap) return ldm_fail(LDM_ERR_FORMAT, "diffusers vae: tensor name '%s' too long", name);
    return LDM_OK;
}

/* HF CLIPTextModel -> open_clip (the inverse of diffusers' convert_open_clip_checkpoint /
 * convert_text_enc_state_dict_v20 tables); q/k/v go into rows 0/1/2 of the fused in_proj. */
static const name_map openclip_layer[] = {
    {"layer_norm1.", "ln_1."},   {"layer_norm2.", "ln_2."},           {"mlp.fc1.", "mlp.c_fc."},
    {"mlp.fc2.", "mlp.c_proj."}, {"self_attn.out_proj.", "attn.out_proj."},
};

static ldm_status map_openclip(const ckpt_layout *l, const char *name, char *out, size_t cap, ckpt_name_info *info) {
    const char *s = name, *to;
    int i, w = -1;
    if (take(&s, "text_model.embeddings.token_embedding.weight") && !*s) {
        w = snprintf(out, cap, "cond_stage_model.model.token_embedding.weight");
    } else if (s = name, take(&s, "text_model.embeddings.position_embedding.weight") && !*s) {
        w = snprintf(out, cap, "cond_stage_model.model.positional_embedding");
    } else if (s = name, take(&s, "text_model.embeddings.position_ids") && !*s) {
        info->drop = true;
        w = snprintf(out, cap, "%s", "");
    } else if (s = name, take(&s, "text_model.final_layer_norm.") && is_leaf(s)) {
        w = snprintf(out, cap, "cond_stage_model.model.ln_final.%s", s);
    } else if (s = name, take(&s, "text_model.encoder.layers.") && take_index(&s, &i) && i < l->n_text_layers) {
        if ((to = take_renamed(&s, openclip_layer, COUNT(openclip_layer))) && is_leaf(s)) {
            w = snprintf(out, cap, "cond_stage_model.model.transformer.resblocks.%d.%s%s", i, to, s);
        } else if (take(&s, "self_attn.") && (s[0] == 'q' || s[0] == 'k' || s[0] == 'v') &&
                   strncmp(s + 1, "_proj.", 6) == 0 && is_leaf(s + 7)) {
            info->qkv = s[0] == 'q' ? 0 : s[0] == 'k' ? 1 : 2;
            w = snprintf(out, cap, "cond_stage_model.model.transformer.resblocks.%d.attn.in_proj_%s", i, s + 7);
        }
    }
    if (w < 0) return ldm_fail(LDM_ERR_FORMAT, "diffusers text_encoder: cannot map tensor '%s' to open_clip names", name);
    if ((size_t)w >= cap) return ldm_fail(LDM_ERR_FORMAT, "diffusers text_encoder: tensor name '%s' too long", name);
    return LDM_OK;
}

ldm_status ckpt_diffusers_name(ckpt_component c, const ckpt_layout *l, const char *name, char *out, size_t cap,
                               ckpt_name_info *info) {
    *info = (ckpt_name_info){false, -1, false};
    if (cap) out[0] = '\0';
    if (c == CKPT_UNET) return map_unet(l, name, out, cap);
    if (c == CKPT_VAE) return map_vae(l, name, out, cap, &info->conv1x1);
    if (c == CKPT_TEXT_OPENCLIP) return map_openclip(l, name, out, cap, info);
    /* HF CLIPTextModel: the SD 1.x checkpoint keeps the same names under cond_stage_model.transformer */
    const char *s = name;
    if (!take(&s, "text_model.") || !is_path(s))
        return ldm_fail(LDM_ERR_FORMAT, "diffusers text_encoder: cannot map tensor '%s' to the single-file layout",
                        name);
    int w = snprintf(out, cap, "cond_stage_model.transformer.%s", name);
    if (w < 0 || (size_t)w >= cap) return ldm_fail(LDM_ERR_FORMAT, "diffusers text_encoder: tensor name '%s' too long", name);
    return LDM_OK;
}

static bool is_file(const char *path) {
    struct stat sb;
    return stat(path, &sb) == 0 && S_ISREG(sb.st_mode);
}

/* Opens <dir>/<sub>/<the first weight file that exists>. */
static ldm_status open_component(const char *dir, const char *sub, const char *stem, st_file **out, char *used,
                                 size_t used_cap) {
    *out = NULL;
    static const char *const suffixes[] = {".safetensors", ".fp16.safetensors", ".bin", ".fp16.bin"};
    const char *const bin_stem = strcmp(stem, "model") == 0 ? "pytorch_model" : stem;
    char path[4096];
    for (size_t i = 0; i < COUNT(suffixes); i++) {
        int w = snprintf(path, sizeof path, "%s/%s/%s%s", dir, sub, i < 2 ? stem : bin_stem, suffixes[i]);
        if (w < 0 || (size_t)w >= sizeof path) return ldm_fail(LDM_ERR_IO, "path too long: '%s'", dir);
        if (!is_file(path)) continue;
        snprintf(used, used_cap, "%s", path);
        return open_file(path, out);
    }
    snprintf(path, sizeof path, "%s/%s/%s.safetensors.index.json", dir, sub, stem);
    if (is_file(path))
        return ldm_fail(LDM_ERR_UNSUPPORTED, "diffusers folder '%s': %s/ is sharded (%s), which is not supported", dir,
                        sub, path);
    return ldm_fail(LDM_ERR_FORMAT, "diffusers folder '%s' lacks %s/%s{,.fp16}.safetensors (or %s.bin)", dir, sub, stem,
                    bin_stem);
}

/* The value at `key` of <dir>/<file> as text (strings as they are, numbers as %.17g), copied
 * into out; *found false when the file, the key or a string/number value is absent. A config
 * that exists but does not parse is an error. */
static ldm_status read_config_value(const char *dir, const char *file, const char *key, char *out, size_t cap,
                                    bool *found) {
    *found = false;
    char path[4096];
    int w = snprintf(path, sizeof path, "%s/%s", dir, file);
    if (w < 0 || (size_t)w >= sizeof path || !is_file(path)) return LDM_OK;
    char *text;
    size_t len;
    ldm_status st = ldm_read_file(path, &text, &len);
    if (st) return st;
    json_value *root;
    st = json_parse(text, len, &root);
    free(text);
    if (st) return fail_in(st, path);
    const json_value *v = json_get(root, key);
    if (v && v->type == JSON_STRING) {
        snprintf(out, cap, "%s", v->string);
        *found = true;
    } else if (v && v->type == JSON_NUMBER) {
        snprintf(out, cap, "%.17g", v->number);
        *found = true;
    }
    json_free(root);
    return LDM_OK;
}

/* Fuses the q, k, v projections of each open_clip layer into in_proj_weight [3C, C] and
 * in_proj_bias [3C] (torch.cat order q, k, v, as nn.MultiheadAttention packs them). */
static ldm_status add_fused_qkv(st_builder *b, const st_tensor *const (*qkv)[2][3], int layers, const char *path) {
    for (int i = 0; i < layers; i++) {
        for (int wb = 0; wb < 2; wb++) {
            const st_tensor *const *p = qkv[i][wb];
            if (!p[0] || !p[1] || !p[2])
                return ldm_fail(LDM_ERR_FORMAT, "'%s': text encoder layer %d lacks one of its q/k/v %s", path, i,
                                wb ? "biases" : "weights");
            int nd = wb ? 1 : 2;
            for (int k = 0; k < 3; k++)
                if (p[k]->ndim != nd || p[k]->dtype != p[0]->dtype || p[k]->shape[0] != p[0]->shape[0] ||
                    (nd == 2 && p[k]->shape[1] != p[0]->shape[1]))
                    return ldm_fail(LDM_ERR_FORMAT, "'%s': text encoder layer %d has q/k/v %s of unequal shapes or types",
                                    path, i, wb ? "biases" : "weights");
            size_t part = p[0]->nbytes;
            unsigned char *buf = malloc(part ? 3 * part : 1);
            if (!buf) return ldm_fail(LDM_ERR_NO_MEMORY, "out of memory");
            ldm_status st = st_builder_keep(b, ST_KEEP_FREE, buf, 0);
            if (st) return st;
            for (int k = 0; k < 3; k++) memcpy(buf + k * part, p[k]->data, part);
            int64_t shape[2] = {3 * p[0]->shape[0], nd == 2 ? p[0]->shape[1] : 0};
            char name[160];
            snprintf(name, sizeof name, "cond_stage_model.model.transformer.resblocks.%d.attn.in_proj_%s", i,
                     wb ? "bias" : "weight");
            if ((st = st_builder_add(b, name, p[0]->dtype, nd, shape, buf))) return st;
        }
    }
    return LDM_OK;
}

/* diffusers keeps SD 2.x's OpenCLIP tower without its last layer (FrozenOpenCLIPEmbedder
 * layer="penultimate" never runs it; diffusers' single-file converter skips resblocks.23). The
 * single-file layout has it, and the model skips the last layer by default, so an all-zero layer
 * is appended: with zero LayerNorm gains and zero projections a pre-norm residual block is exactly
 * the identity, so the default path computes what diffusers computes and a "last layer" request
 * (clip skip 1) gives the same values instead of failing. */
static ldm_status add_identity_layer(st_builder *b, int layer, ldm_dtype dt, int64_t width, int64_t ff) {
    size_t es = ldm_dtype_size(dt), big = (size_t)LDM_MAX(3 * width, ff) * (size_t)width * es;
    unsigned char *zeros = calloc(big ? big : 1, 1);
    if (!zeros) return ldm_fail(LDM_ERR_NO_MEMORY, "out of memory");
    ldm_status st = st_builder_keep(b, ST_KEEP_FREE, zeros, 0);
    static const struct {
        const char *name;
        int nd;
        int d0, d1; /* 0: width, 1: 3 * width, 2: ff */
    } parts[] = {
        {"attn.in_proj_weight", 2, 1, 0}, {"attn.in_proj_bias", 1, 1, 0}, {"attn.out_proj.weight", 2, 0, 0},
        {"attn.out_proj.bias", 1, 0, 0},  {"ln_1.weight", 1, 0, 0},        {"ln_1.bias", 1, 0, 0},
        {"ln_2.weight", 1, 0, 0},         {"ln_2.bias", 1, 0, 0},          {"mlp.c_fc.weight", 2, 2, 0},
        {"mlp.c_fc.bias", 1, 2, 0},       {"mlp.c_proj.weight", 2, 0, 2},  {"mlp.c_proj.bias", 1, 0, 0},
    };
    for (size_t i = 0; !st && i < COUNT(parts); i++) {
        const int64_t dims[3] = {width, 3 * width, ff};
        int64_t shape[2] = {dims[parts[i].d0], dims[parts[i].d1]};
        char name[160];
        snprintf(name, sizeof name, "cond_stage_model.model.transformer.resblocks.%d.%s", layer, parts[i].name);
        st = st_builder_add(b, name, dt, parts[i].nd, shape, zeros);
    }
    return st;
}

static ldm_status add_component(st_builder *b, ckpt_component c, st_file *f, const char *path) {
    ckpt_layout l = {0};
    size_t n = st_count(f);
    for (size_t i = 0; i < n; i++) ckpt_layout_scan(&l, c, st_at(f, i)->name);
    /* open_clip q/k/v by layer and weight/bias, fused after the pass */
    const st_tensor *(*qkv)[2][3] = NULL;
    if (c == CKPT_TEXT_OPENCLIP) {
        qkv = calloc(l.n_text_layers ? (size_t)l.n_text_layers : 1, sizeof *qkv);
        if (!qkv) return ldm_fail(LDM_ERR_NO_MEMORY, "out of memory");
    }
    ldm_status st = LDM_OK;
    for (size_t i = 0; !st && i < n; i++) {
        const st_tensor *t = st_at(f, i);
        char name[512];
        ckpt_name_info info;
        if ((st = ckpt_diffusers_name(c, &l, t->name, name, sizeof name, &info))) {
            st = fail_in(st, path);
            break;
        }
        if (info.drop) continue;
        if (info.qkv >= 0) {
            int layer = atoi(name + strlen("cond_stage_model.model.transformer.resblocks."));
            bool bias = strcmp(name + strlen(name) - 4, "bias") == 0;
            if (qkv[layer][bias][info.qkv]) {
                st = ldm_fail(LDM_ERR_FORMAT, "'%s': '%s' appears twice", path, t->name);
                break;
            }
            qkv[layer][bias][info.qkv] = t;
            continue;
        }
        int64_t shape[ST_MAX_DIMS];
        memcpy(shape, t->shape, sizeof shape);
        int32_t ndim = t->ndim;
        if (info.conv1x1 && ndim == 2) { /* Linear [C, C] is the same data as a 1x1 conv [C, C, 1, 1] */
            shape[2] = shape[3] = 1;
            ndim = 4;
        }
        st = st_builder_add(b, name, t->dtype, ndim, shape, t->data);
    }
    if (!st && c == CKPT_TEXT_OPENCLIP) {
        st = add_fused_qkv(b, (const st_tensor *const (*)[2][3])qkv, l.n_text_layers, path);
        const st_tensor *fc = st_find(f, "text_model.encoder.layers.0.mlp.fc1.weight");
        if (!st && (!fc || fc->ndim != 2 || !qkv[0][0][0]))
            st = ldm_fail(LDM_ERR_FORMAT, "'%s': the text encoder has no usable layer 0", path);
        if (!st) st = add_identity_layer(b, l.n_text_layers, fc->dtype, fc->shape[1], fc->shape[0]);
        if (!st) st = st_builder_meta(b, "diffusers.text.identity_last_layer", "1");
    }
    free(qkv);
    return st;
}

/* SD 2.x unet configs give attention_head_dim per block (the head count, [5, 10, 20, 20] for
 * block_out_channels [320, 640, 1280, 1280]): when every block has the same channels per head,
 * that is the single-file num_head_channels (64 there). */
static ldm_status unet_head_channels(const char *dir, st_builder *b) {
    char path[4096];
    int w = snprintf(path, sizeof path, "%s/unet/config.json", dir);
    if (w < 0 || (size_t)w >= sizeof path || !is_file(path)) return LDM_OK;
    char *text;
    size_t len;
    ldm_status st = ldm_read_file(path, &text, &len);
    if (st) return st;
    json_value *root;
    st = json_parse(text, len, &root);
    free(text);
    if (st) return fail_in(st, path);
    const json_value *h = json_get(root, "attention_head_dim"), *c = json_get(root, "block_out_channels");
    int64_t per_head = 0;
    if (h && c && h->type == JSON_ARRAY && c->type == JSON_ARRAY && h->count == c->count && h->count > 0) {
        for (size_t i = 0; i < h->count; i++) {
            int64_t heads, ch;
            if (!json_as_int64(&h->items[i], &heads) || !json_as_int64(&c->items[i], &ch) || heads <= 0 || ch <= 0 ||
                ch % heads || (per_head && ch / heads != per_head)) {
                per_head = 0;
                break;
            }
            per_head = ch / heads;
        }
    }
    json_free(root);
    if (per_head > 0) {
        char v[32];
        snprintf(v, sizeof v, "%lld", (long long)per_head);
        st = st_builder_meta(b, "diffusers.unet.num_head_channels", v);
    }
    return st;
}

static ldm_status open_diffusers(const char *dir, st_file **out) {
    *out = NULL;
    static const struct {
        const char *sub, *stem;
        ckpt_component c;
    } parts[] = {{"unet", "diffusion_pytorch_model", CKPT_UNET},
                 {"vae", "diffusion_pytorch_model", CKPT_VAE},
                 {"text_encoder", "model", CKPT_TEXT}};
    char path[4096], value[64];
    bool found;
    /* SD 1.x: CLIP ViT-L with quick_gelu (the HF default when unstated); SD 2.x: the OpenCLIP
     * tower with exact GELU, which goes back to open_clip names. */
    ldm_status st = read_config_value(dir, "text_encoder/config.json", "hidden_act", value, sizeof value, &found);
    if (st) return st;
    ckpt_component text = CKPT_TEXT;
    if (found && strcmp(value, "gelu") == 0) text = CKPT_TEXT_OPENCLIP;
    else if (found && strcmp(value, "quick_gelu") != 0)
        return ldm_fail(LDM_ERR_UNSUPPORTED, "diffusers folder '%s': text encoder activation '%s' is not CLIP's", dir,
                        value);
    st_builder *b = st_builder_new();
    if (!b) return ldm_fail(LDM_ERR_NO_MEMORY, "out of memory");
    for (size_t i = 0; !st && i < COUNT(parts); i++) {
        st_file *f;
        if ((st = open_component(dir, parts[i].sub, parts[i].stem, &f, path, sizeof path))) break;
        if ((st = st_builder_keep(b, ST_KEEP_FILE, f, 0))) break;
        st = add_component(b, parts[i].c == CKPT_TEXT ? text : parts[i].c, f, path);
    }
    if (!st) st = st_builder_meta(b, "ldm.container", "diffusers");
    /* What a single file leaves to its yaml, the folder states in its configs. In SD 1.x unet
     * configs attention_head_dim is the head count (a diffusers misnomer, which later releases
     * spell num_attention_heads); a per-block list (SD 2.x) is not a head count and is skipped. */
    static const struct {
        const char *file, *key, *meta;
    } hp[] = {
        {"unet/config.json", "num_attention_heads", "diffusers.unet.num_heads"}, /* first found wins */
        {"unet/config.json", "attention_head_dim", "diffusers.unet.num_heads"},
        {"text_encoder/config.json", "num_attention_heads", "diffusers.text.num_heads"},
        {"vae/config.json", "scaling_factor", "diffusers.vae.scaling_factor"},
        {"scheduler/scheduler_config.json", "prediction_type", "diffusers.prediction_type"},
        {"scheduler/scheduler_config.json", "beta_schedule", "diffusers.beta_schedule"},
        {"scheduler/scheduler_config.json", "beta_start", "diffusers.beta_start"},
        {"scheduler/scheduler_config.json", "beta_end", "diffusers.beta_end"},
        {"scheduler/scheduler_config.json", "num_train_timesteps", "diffusers.num_train_timesteps"},
    };
    for (size_t i = 0; !st && i < COUNT(hp); i++) {
        if (!(st = read_config_value(dir, hp[i].file, hp[i].key, value, sizeof value, &found)) && found)
            st = st_builder_meta(b, hp[i].meta, value);
    }
    if (!st) st = unet_head_channels(dir, b);
    if (st) {
        st_builder_free(b);
        return st;
    }
    return st_builder_finish(b, out);
}

ldm_status ckpt_open(const char *path, st_file **out) {
    *out = NULL;
    struct stat sb;
    if (stat(path, &sb) != 0) return ldm_fail(LDM_ERR_IO, "cannot open '%s': %s", path, strerror(errno));
    if (S_ISDIR(sb.st_mode)) {
        char unet[4096];
        int w = snprintf(unet, sizeof unet, "%s/unet", path);
        struct stat us;
        if (w < 0 || (size_t)w >= sizeof unet || stat(unet, &us) != 0 || !S_ISDIR(us.st_mode))
            return ldm_fail(LDM_ERR_IO, "'%s' is a directory, and not a diffusers folder (no unet/)", path);
        return open_diffusers(path, out);
    }
    return open_file(path, out);
}
