/* The autoencoder decode within a backend's memory limits, exactly.
 *
 * When the decoder's activations for the whole image would not fit the device budget (or one of
 * them would exceed the largest tensor the backend's ops take), the decode runs in two parts:
 *  1. the head — everything at the latent's resolution (post_quant_conv, conv_in, the mid block
 *     with its attention, the blocks of the lowest level) — over the whole latent, as usual;
 *  2. the rest — upsamplings and ResnetBlocks at 2x, 4x, 8x — tile by tile, one GroupNorm-to-
 *     GroupNorm segment at a time over all tiles. Each tile carries a halo as wide as the rest of
 *     the network's receptive field (so convolutions at its core see exactly the pixels they
 *     would see untiled), and every GroupNorm uses statistics summed over the cores of all tiles,
 *     i.e. over the whole image, applied as a per-channel affine map (a 1x1 convolution).
 * Tiles therefore need no overlap blending and the result is the untiled decode up to float
 * summation order (tests/test_vulkan_vae_tiling.c), unlike the usual tiled VAE whose per-tile
 * GroupNorm statistics change the image. Activations wait on the host between segments. */
#include "nets.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DEC "first_stage_model.decoder."
#define PQC "first_stage_model.post_quant_conv."
#define GN_GROUPS 32
#define GN_EPS 1e-6 /* model.py Normalize() */
#define MAX_SEGS 96
#define MAX_TILES_AXIS 128

typedef struct rect {
    int32_t y0, x0, y1, x1; /* [y0, y1) x [x0, x1) */
} rect;

static int32_t rh(rect r) { return r.y1 - r.y0; }
static int32_t rw(rect r) { return r.x1 - r.x0; }

/* r scaled by s, grown by `halo` on every side, clipped to [0, H) x [0, W). */
static rect grow(rect core, int32_t s, int32_t halo, int32_t H, int32_t W) {
    rect r = {core.y0 * s - halo, core.x0 * s - halo, core.y1 * s + halo, core.x1 * s + halo};
    r.y0 = LDM_MAX(r.y0, 0);
    r.x0 = LDM_MAX(r.x0, 0);
    r.y1 = LDM_MIN(r.y1, H);
    r.x1 = LDM_MIN(r.x1, W);
    return r;
}

/* Copies channel planes of region `in` (from src laid out over `from`) into dst laid out over `in`. */
static void crop(const float *src, rect from, float *dst, rect in, int32_t c) {
    for (int32_t ch = 0; ch < c; ch++)
        for (int32_t y = in.y0; y < in.y1; y++)
            memcpy(dst + ((size_t)ch * rh(in) + (size_t)(y - in.y0)) * rw(in),
                   src + ((size_t)ch * rh(from) + (size_t)(y - from.y0)) * rw(from) + (in.x0 - from.x0),
                   (size_t)rw(in) * sizeof *dst);
}

enum { SEG_UP, SEG_GN, SEG_GN_RES };

typedef struct seg {
    int kind;           /* UP: upsample, conv; GN: GroupNorm+SiLU, conv; GN_RES: the same + shortcut */
    char norm[128], conv[128], shortcut[128]; /* key prefixes; shortcut "" = identity */
    bool save_x;        /* the input is a ResnetBlock's input: keep it for the residual */
    int32_t halo;       /* halo of the input region, in pixels at the input's resolution */
    int32_t scale;      /* input resolution / latent resolution */
    int32_t c_in, c_out;
} seg;

/* The decoder after its head as a list of segments, with halos. False when it cannot be tiled
 * exactly (attention above the latent resolution, an unexpected layout). */
static bool build_segments(const ldm_model *m, seg *s, int *count, int32_t *c_head) {
    const vae_config *v = &m->vae;
    int n = 0;
    const ldm_tensor *t = model_weight(m, DEC "conv_in.weight");
    if (!t || t->ndim != 4) return false;
    int32_t c = (int32_t)t->ne[0], scale = 1;
    char name[256];
    /* the head's output channels: those of the last block of the lowest level */
    snprintf(name, sizeof name, DEC "up.%d.block.%d.conv2.weight", v->n_levels - 1, v->num_res_blocks);
    if (!(t = model_weight(m, name))) return false;
    c = (int32_t)t->ne[0];
    *c_head = c;
    for (int i = v->n_levels - 1; i >= 0; i--) {
        for (int j = 0; i != v->n_levels - 1 && j <= v->num_res_blocks; j++) {
            if (n + 2 > MAX_SEGS || model_has(m, DEC "up.%d.attn.%d.norm.weight", i, j)) return false;
            seg *a = &s[n++], *b = &s[n++];
            memset(a, 0, 2 * sizeof *a);
            snprintf(a->norm, sizeof a->norm, DEC "up.%d.block.%d.norm1.", i, j);
            snprintf(a->conv, sizeof a->conv, DEC "up.%d.block.%d.conv1.", i, j);
            snprintf(name, sizeof name, "%sweight", a->conv);
            if (!(t = model_weight(m, name)) || t->ndim != 4 || t->ne[1] != c) return false;
            a->kind = SEG_GN;
            a->save_x = true;
            a->c_in = c;
            a->c_out = (int32_t)t->ne[0];
            a->scale = scale;
            b->kind = SEG_GN_RES;
            snprintf(b->norm, sizeof b->norm, DEC "up.%d.block.%d.norm2.", i, j);
            snprintf(b->conv, sizeof b->conv, DEC "up.%d.block.%d.conv2.", i, j);
            if (model_has(m, DEC "up.%d.block.%d.nin_shortcut.weight", i, j))
                snprintf(b->shortcut, sizeof b->shortcut, DEC "up.%d.block.%d.nin_shortcut.", i, j);
            b->c_in = a->c_out;
            snprintf(name, sizeof name, "%sweight", b->conv);
            if (!(t = model_weight(m, name)) || t->ndim != 4) return false;
            b->c_out = (int32_t)t->ne[0];
            b->scale = scale;
            c = b->c_out;
        }
        if (i != 0) {
            if (n + 1 > MAX_SEGS) return false;
            seg *u = &s[n++];
            memset(u, 0, sizeof *u);
            u->kind = SEG_UP;
            snprintf(u->conv, sizeof u->conv, DEC "up.%d.upsample.conv.", i);
            snprintf(name, sizeof name, "%sweight", u->conv);
            if (!(t = model_weight(m, name)) || t->ndim != 4) return false;
            u->c_in = c;
            u->c_out = c = (int32_t)t->ne[0];
            u->scale = scale;
            scale *= 2;
        }
    }
    if (n + 1 > MAX_SEGS || scale != m->downscale) return false;
    seg *o = &s[n++];
    memset(o, 0, sizeof *o);
    o->kind = SEG_GN;
    snprintf(o->norm, sizeof o->norm, DEC "norm_out.");
    snprintf(o->conv, sizeof o->conv, DEC "conv_out.");
    if (!(t = model_weight(m, DEC "conv_out.weight")) || t->ndim != 4) return false;
    o->c_in = c;
    o->c_out = (int32_t)t->ne[0];
    o->scale = scale;
    for (int k = 0; k < n; k++)
        if (s[k].c_in % GN_GROUPS && s[k].kind != SEG_UP) return false;
    /* halos, from the output back: each 3x3 convolution adds one pixel at its resolution; an
     * upsampling halves (rounding up) what its convolution needs */
    int32_t h = 0;
    for (int k = n - 1; k >= 0; k--) {
        h = s[k].kind == SEG_UP ? (h + 2) / 2 : h + 1;
        s[k].halo = h;
    }
    *count = n;
    return true;
}

/* Device bytes of one tile's segment (input, intermediates, output, the affine map). */
static uint64_t seg_bytes(const seg *s, int32_t ty, int32_t tx, int32_t h, int32_t w) {
    int64_t ah = LDM_MIN((int64_t)ty * s->scale + 2 * s->halo, (int64_t)h * s->scale);
    int64_t aw = LDM_MIN((int64_t)tx * s->scale + 2 * s->halo, (int64_t)w * s->scale);
    int64_t a = ah * aw;
    int64_t fl = s->kind == SEG_UP ? a * s->c_in + 4 * a * (s->c_in + s->c_out)
                                   : a * (2 * (int64_t)s->c_in + s->c_out) + (int64_t)s->c_in * s->c_in;
    if (s->kind == SEG_GN_RES) fl += a * (s->c_in + s->c_out); /* the shortcut's input and output */
    return (uint64_t)fl * 4;
}

static uint64_t seg_max_tensor(const seg *s, int32_t ty, int32_t tx, int32_t h, int32_t w) {
    int64_t ah = LDM_MIN((int64_t)ty * s->scale + 2 * s->halo, (int64_t)h * s->scale);
    int64_t aw = LDM_MIN((int64_t)tx * s->scale + 2 * s->halo, (int64_t)w * s->scale);
    int64_t c = LDM_MAX(s->c_in, s->c_out);
    return (uint64_t)(ah * aw * c * (s->kind == SEG_UP ? 4 : 1)) * 4;
}

/* Untiled decoder activations for an h x w latent (one image): the largest tensor and the peak
 * of live tensors, walking the levels as vae.c does (a ResnetBlock holds two inputs' worth and
 * three outputs' worth; an upsampling its input and two tensors at twice the size). */
static void whole_estimate(const vae_config *v, int64_t h, int64_t w, uint64_t *max_tensor, uint64_t *peak,
                           uint64_t *head_peak) {
    int64_t res = h * w;
    int64_t c_in = (int64_t)v->ch * v->ch_mult[v->n_levels - 1];
    int64_t mx = c_in * res, pk = 6 * c_in * res; /* the mid block's attention holds q, k, v twice */
    *head_peak = (uint64_t)pk * 4;
    for (int i = v->n_levels - 1; i >= 0; i--) {
        int64_t c_out = (int64_t)v->ch * v->ch_mult[i];
        mx = LDM_MAX(mx, LDM_MAX(c_in, c_out) * res);
        pk = LDM_MAX(pk, (2 * c_in + 3 * c_out) * res);
        c_in = c_out;
        if (i != 0) {
            res *= 4;
            mx = LDM_MAX(mx, c_out * res);
            pk = LDM_MAX(pk, c_out * res / 4 + 2 * c_out * res);
        }
    }
    mx = LDM_MAX(mx, (int64_t)3 * res);
    *max_tensor = (uint64_t)mx * 4;
    *peak = (uint64_t)pk * 4;
}

/* Device bytes of the decoder's weights once uploaded as float32 (they may not be resident yet). */
static uint64_t decoder_weight_bytes(const ldm_model *m) {
    uint64_t bytes = 0;
    for (size_t i = 0; i < m->n_weights; i++) {
        const char *name = st_at(m->file, i)->name;
        if (strncmp(name, DEC, strlen(DEC)) == 0 || strncmp(name, PQC, strlen(PQC)) == 0)
            bytes += (uint64_t)ldm_numel(&m->weights[i]) * 4;
    }
    return bytes;
}

static ldm_status weight_f32(const ldm_model *m, const char *prefix, const char *what, int32_t c, float *out) {
    char name[256];
    snprintf(name, sizeof name, "%s%s", prefix, what);
    const ldm_tensor *t = model_weight(m, name);
    if (!t || ldm_numel(t) != c) return ldm_fail(LDM_ERR_FORMAT, "checkpoint lacks tensor '%s' of %d elements", name, (int)c);
    const unsigned char *p = t->data;
    for (int32_t i = 0; i < c; i++) {
        if (t->dtype == LDM_DT_F32) {
            memcpy(&out[i], p + 4 * (size_t)i, 4);
        } else {
            uint16_t hv;
            memcpy(&hv, p + 2 * (size_t)i, 2);
            out[i] = t->dtype == LDM_DT_F16 ? ldm_f16_to_f32(hv) : ldm_bf16_to_f32(hv);
        }
    }
    return LDM_OK;
}

typedef struct tile {
    rect core;      /* latent pixels */
    rect r, rx;     /* regions of cur and x at the current resolution */
    float *cur, *x; /* activations waiting on the host */
} tile;

/* Adds the per-channel sums over the core of `t` (cur laid out over t->r) at scale s. */
static void accumulate(const tile *t, int32_t s, int32_t c, double *sum, double *sq) {
    rect core = {t->core.y0 * s, t->core.x0 * s, t->core.y1 * s, t->core.x1 * s};
    for (int32_t ch = 0; ch < c; ch++) {
        double a = 0, b = 0;
        for (int32_t y = core.y0; y < core.y1; y++) {
            const float *row = t->cur + ((size_t)ch * rh(t->r) + (size_t)(y - t->r.y0)) * rw(t->r) + (core.x0 - t->r.x0);
            for (int32_t x = 0; x < rw(core); x++) {
                a += row[x];
                b += (double)row[x] * row[x];
            }
        }
        sum[ch] += a;
        sq[ch] += b;
    }
}

/* One image, tiles of ty x tx latent pixels. */
static ldm_status decode_exact(ldm_exec *ex, const ldm_model *m, int32_t h, int32_t w, const float *z, float *image,
                               const seg *segs, int nseg, int32_t c_head, int32_t ty, int32_t tx) {
    const int32_t nty = (h + ty - 1) / ty, ntx = (w + tx - 1) / tx, nt = nty * ntx;
    tile *tiles = calloc((size_t)nt, sizeof *tiles);
    int32_t cmax = c_head;
    for (int k = 0; k < nseg; k++) cmax = LDM_MAX(cmax, LDM_MAX(segs[k].c_in, segs[k].c_out));
    double *sum = calloc((size_t)cmax, sizeof *sum), *sq = calloc((size_t)cmax, sizeof *sq);
    float *aff_w = NULL, *aff_b = malloc((size_t)cmax * sizeof *aff_b), *gamma = malloc((size_t)cmax * sizeof *gamma),
          *beta = malloc((size_t)cmax * sizeof *beta), *head = malloc((size_t)c_head * h * w * sizeof *head);
    ldm_status st = LDM_OK;
    if (!tiles || !sum || !sq || !aff_b || !gamma || !beta || !head) st = ldm_fail(LDM_ERR_NO_MEMORY, "out of memory");

    /* 1. the head over the whole latent */
    if (!st) {
        ldm_tensor *t0 = vae_decoder_head(ex, m, 1, h, w, z);
        op_to_host(ex, t0, head);
        op_free(ex, t0);
        st = ex->status;
    }
    for (int32_t i = 0; i < nt && !st; i++) {
        tile *t = &tiles[i];
        t->core = (rect){(i / ntx) * ty, (i % ntx) * tx, LDM_MIN(h, (i / ntx + 1) * ty), LDM_MIN(w, (i % ntx + 1) * tx)};
        t->r = grow(t->core, 1, segs[0].halo, h, w);
        t->cur = malloc((size_t)c_head * rh(t->r) * rw(t->r) * sizeof *t->cur);
        if (!t->cur) {
            st = ldm_fail(LDM_ERR_NO_MEMORY, "out of memory");
            break;
        }
        crop(head, (rect){0, 0, h, w}, t->cur, t->r, c_head);
        accumulate(t, 1, c_head, sum, sq);
    }
    free(head);

    /* 2. the segments, each over all tiles */
    for (int k = 0; k < nseg && !st; k++) {
        const seg *s = &segs[k];
        const int32_t S = s->scale, Hs = h * S, Ws = w * S;
        const int32_t So = s->kind == SEG_UP ? 2 * S : S, Ho = h * So, Wo = w * So;
        const int32_t halo_out = k + 1 < nseg ? segs[k + 1].halo : 0;
        ldm_tensor *aw = NULL, *ab = NULL;
        if (s->kind != SEG_UP) {
            /* GroupNorm over the whole image as y = a_c x + b_c: a_c = gamma_c rstd_g,
             * b_c = beta_c - mean_g a_c (statistics in double) */
            const int32_t c = s->c_in, cg = c / GN_GROUPS;
            if ((st = weight_f32(m, s->norm, "weight", c, gamma)) || (st = weight_f32(m, s->norm, "bias", c, beta))) break;
            aff_w = calloc((size_t)c * c, sizeof *aff_w);
            if (!aff_w) {
                st = ldm_fail(LDM_ERR_NO_MEMORY, "out of memory");
                break;
            }
            const double cnt = (double)cg * Hs * Ws;
            for (int32_t g = 0; g < GN_GROUPS; g++) {
                double a = 0, b = 0;
                for (int32_t ch = g * cg; ch < (g + 1) * cg; ch++) {
                    a += sum[ch];
                    b += sq[ch];
                }
                double mean = a / cnt, var = LDM_MAX(b / cnt - mean * mean, 0.0), rstd = 1.0 / sqrt(var + GN_EPS);
                for (int32_t ch = g * cg; ch < (g + 1) * cg; ch++) {
                    double sc = (double)gamma[ch] * rstd;
                    aff_w[(size_t)ch * c + ch] = (float)sc;
                    aff_b[ch] = (float)((double)beta[ch] - mean * sc);
                }
            }
            aw = op_from_host(ex, 4, (int64_t[]){c, c, 1, 1}, aff_w);
            ab = op_from_host(ex, 1, (int64_t[]){c}, aff_b);
            free(aff_w);
            aff_w = NULL;
        }
        memset(sum, 0, (size_t)cmax * sizeof *sum);
        memset(sq, 0, (size_t)cmax * sizeof *sq);
        char wn[160], bn[160];
        snprintf(wn, sizeof wn, "%sweight", s->conv);
        snprintf(bn, sizeof bn, "%sbias", s->conv);
        for (int32_t i = 0; i < nt && !st; i++) {
            tile *t = &tiles[i];
            ldm_tensor *xin = op_from_host(ex, 4, (int64_t[]){1, s->c_in, rh(t->r), rw(t->r)}, t->cur);
            ldm_tensor *y;
            rect ry; /* the convolution's output region; its border pixels next to other tiles are wrong */
            if (s->kind == SEG_UP) {
                ldm_tensor *u = op_upsample2x(ex, xin);
                y = op_conv2d(ex, u, model_weight(m, wn), model_weight(m, bn), 1, 1);
                op_free(ex, u);
                ry = (rect){2 * t->r.y0, 2 * t->r.x0, 2 * t->r.y1, 2 * t->r.x1};
            } else {
                ldm_tensor *g = op_conv2d(ex, xin, aw, ab, 1, 0);
                ldm_tensor *a = op_unary(ex, LDM_UNARY_SILU, g);
                op_free(ex, g);
                y = op_conv2d(ex, a, model_weight(m, wn), model_weight(m, bn), 1, 1);
                op_free(ex, a);
                ry = t->r;
            }
            op_free(ex, xin);
            rect valid = {ry.y0 > 0 ? ry.y0 + 1 : 0, ry.x0 > 0 ? ry.x0 + 1 : 0, ry.y1 < Ho ? ry.y1 - 1 : Ho,
                          ry.x1 < Wo ? ry.x1 - 1 : Wo};
            rect rn = grow(t->core, So, halo_out, Ho, Wo);
            float *yh = malloc((size_t)s->c_out * rh(ry) * rw(ry) * sizeof *yh);
            float *next = malloc((size_t)s->c_out * rh(rn) * rw(rn) * sizeof *next);
            if (!yh || !next) st = ldm_fail(LDM_ERR_NO_MEMORY, "out of memory");
            else if (rn.y0 < valid.y0 || rn.x0 < valid.x0 || rn.y1 > valid.y1 || rn.x1 > valid.x1)
                st = ldm_fail(LDM_ERR_INTERNAL, "VAE tiles: halo too small at segment %d", k);
            if (!st) st = op_to_host(ex, y, yh);
            op_free(ex, y);
            if (!st) crop(yh, ry, next, rn, s->c_out);
            free(yh);
            if (!st && s->kind == SEG_GN_RES) {
                /* residual: x (the block's input) over the new region, through nin_shortcut */
                const int32_t cx = segs[k - 1].c_in;
                float *sc = NULL, *xs = malloc((size_t)cx * rh(rn) * rw(rn) * sizeof *xs);
                if (!xs) st = ldm_fail(LDM_ERR_NO_MEMORY, "out of memory");
                else if (!s->shortcut[0] && cx != s->c_out) st = ldm_fail(LDM_ERR_FORMAT, "VAE block without nin_shortcut changes the width");
                if (!st) crop(t->x, t->rx, xs, rn, cx);
                if (!st && s->shortcut[0]) {
                    char sw[160], sb[160];
                    snprintf(sw, sizeof sw, "%sweight", s->shortcut);
                    snprintf(sb, sizeof sb, "%sbias", s->shortcut);
                    ldm_tensor *xt = op_from_host(ex, 4, (int64_t[]){1, cx, rh(rn), rw(rn)}, xs);
                    ldm_tensor *so = op_conv2d(ex, xt, model_weight(m, sw), model_weight(m, sb), 1, 0);
                    op_free(ex, xt);
                    sc = malloc((size_t)s->c_out * rh(rn) * rw(rn) * sizeof *sc);
                    if (!sc) st = ldm_fail(LDM_ERR_NO_MEMORY, "out of memory");
                    if (!st) st = op_to_host(ex, so, sc);
                    op_free(ex, so);
                }
                const float *add = sc ? sc : xs;
                for (size_t e = 0; !st && e < (size_t)s->c_out * rh(rn) * rw(rn); e++) next[e] = add[e] + next[e];
                free(xs);
                free(sc);
                free(t->x);
                t->x = NULL;
            }
            if (st) {
                free(next);
                break;
            }
            if (s->save_x) { /* keep the block's input for the residual of the next segment */
                free(t->x);
                t->x = t->cur;
                t->rx = t->r;
            } else {
                free(t->cur);
            }
            t->cur = next;
            t->r = rn;
            if (k + 1 < nseg && segs[k + 1].kind != SEG_UP) accumulate(t, So, s->c_out, sum, sq);
        }
        op_free(ex, aw);
        op_free(ex, ab);
        if (!st) st = ex->status;
    }

    /* 3. the cores of the last segment's outputs are the image */
    if (!st) {
        const int32_t f = m->downscale, H = h * f, W = w * f, c = segs[nseg - 1].c_out;
        for (int32_t i = 0; i < nt; i++) {
            const tile *t = &tiles[i];
            for (int32_t ch = 0; ch < c; ch++)
                for (int32_t y = t->r.y0; y < t->r.y1; y++)
                    memcpy(image + ((size_t)ch * H + (size_t)y) * W + t->r.x0,
                           t->cur + ((size_t)ch * rh(t->r) + (size_t)(y - t->r.y0)) * rw(t->r),
                           (size_t)rw(t->r) * sizeof *image);
        }
    }
    for (int32_t i = 0; tiles && i < nt; i++) {
        free(tiles[i].cur);
        free(tiles[i].x);
    }
    free(tiles);
    free(sum);
    free(sq);
    free(aff_w);
    free(aff_b);
    free(gamma);
    free(beta);
    if (st && !ex->status) ex->status = st;
    return st;
}

ldm_status vae_decode(ldm_exec *ex, const ldm_model *m, int32_t n, int32_t h, int32_t w, const float *z,
                      float *image) {
    if (ex->status) return ex->status;
    uint64_t free_bytes = UINT64_MAX, max_tensor = UINT64_MAX;
    if (ex->be->ops->memory_limits) ex->be->ops->memory_limits(ex->be, &free_bytes, &max_tensor);
    if (free_bytes == UINT64_MAX && max_tensor == UINT64_MAX) return vae_decode_untiled(ex, m, n, h, w, z, image);
    uint64_t mx, pk, head;
    whole_estimate(&m->vae, h, w, &mx, &pk, &head);
    /* room for the activations once the decoder's weights are on the device */
    const uint64_t wbytes = decoder_weight_bytes(m);
    const uint64_t avail = free_bytes > wbytes ? free_bytes - wbytes : 0;
    /* a quarter in reserve: the pools' blocks fragment, and the estimates are estimates */
    if (mx <= max_tensor && pk / 4 * 5 * (uint64_t)n <= avail) return vae_decode_untiled(ex, m, n, h, w, z, image);

    seg segs[MAX_SEGS];
    int nseg = 0;
    int32_t c_head = 0;
    if (!build_segments(m, segs, &nseg, &c_head)) {
        ldm_fail(LDM_ERR_NO_MEMORY,
                 "VAE decode: %llu MiB of activations do not fit the %llu MiB free, and this decoder (attention "
                 "above the latent resolution) cannot be tiled",
                 (unsigned long long)(pk >> 20), (unsigned long long)(avail >> 20));
        return ex->status = LDM_ERR_NO_MEMORY;
    }
    if (head > avail || (uint64_t)c_head * h * w * 4 > max_tensor) {
        ldm_fail(LDM_ERR_NO_MEMORY, "VAE decode: the decoder's latent-resolution part alone needs %llu MiB (%llu MiB free)",
                 (unsigned long long)(head >> 20), (unsigned long long)(avail >> 20));
        return ex->status = LDM_ERR_NO_MEMORY;
    }
    /* halve the longer side of the tile until every segment of one tile fits */
    int32_t ty = h, tx = w;
    for (;;) {
        uint64_t need = 0, big = 0;
        for (int k = 0; k < nseg; k++) {
            need = LDM_MAX(need, seg_bytes(&segs[k], ty, tx, h, w));
            big = LDM_MAX(big, seg_max_tensor(&segs[k], ty, tx, h, w));
        }
        if (need / 4 * 5 <= avail && big <= max_tensor && (h + ty - 1) / ty <= MAX_TILES_AXIS && (w + tx - 1) / tx <= MAX_TILES_AXIS)
            break;
        if ((ty == 1 && tx == 1) || (h + ty - 1) / ty > MAX_TILES_AXIS || (w + tx - 1) / tx > MAX_TILES_AXIS) {
            ldm_fail(LDM_ERR_NO_MEMORY, "VAE decode: even %dx%d latent tiles need %llu MiB (%llu MiB free)", (int)ty,
                     (int)tx, (unsigned long long)(need >> 20), (unsigned long long)(avail >> 20));
            return ex->status = LDM_ERR_NO_MEMORY;
        }
        if (ty >= tx) ty = (ty + 1) / 2;
        else tx = (tx + 1) / 2;
    }
    const size_t per_z = (size_t)m->vae.embed_dim * h * w, per_img = (size_t)3 * h * m->downscale * w * m->downscale;
    for (int32_t b = 0; b < n; b++) {
        ldm_status st = decode_exact(ex, m, h, w, z + b * per_z, image + b * per_img, segs, nseg, c_head, ty, tx);
        if (st) return st;
    }
    return LDM_OK;
}
