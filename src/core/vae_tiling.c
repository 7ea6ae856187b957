/* Tiled VAE decoding under a host-memory budget (vae_tiling.h).
 *
 * Why: the KL-f8 decoder holds ~2.5 KB of activations per output pixel at its peak (0.64 GB at
 * 512^2, 2.5 GB at 1024^2 for SD), nearly all of it after the first upsampling; the part at the
 * latent's resolution (post_quant_conv, conv_in, the mid block with its attention, the lowest
 * level's blocks: vae_decoder_head) is small. So:
 *  1. the head runs over the whole latent, exactly as untiled (global attention included), and
 *     waits on the host (c x h x w floats: 32 MiB at 1024^2);
 *  2. the latent is cut into cores that partition it; each tile is its core grown by the halo of
 *     the rest of the decoder (tail_halo: its receptive field, 7 latent pixels for SD), so the
 *     convolutions at the core see exactly the pixels they see untiled and only the core of the
 *     tile's output is kept: no seams, no blending;
 *  3. the rest runs twice over the tiles: a first pass with each tile's own GroupNorm statistics
 *     records, for every GroupNorm, the sums over the cores (so over the whole image); the
 *     second normalises every tile with those image-wide statistics (the map x -> a_c x + b_c as
 *     a 1x1 convolution, as core/vae_tiled.c does) and is kept.
 * What differs from the untiled decode are the statistics: those of the first pass, whose own
 * GroupNorms were tile-local (tests/test_vae_tiling.c measures it). Tile-local statistics (what
 * diffusers' tiled_decode and most tiled VAEs use) shift each tile's tone; shared ones keep the
 * tiles consistent. core/vae_tiled.c is the exact variant for devices: it holds the whole
 * image's activations on the host between GroupNorms instead of recomputing.
 * A decoder with attention above the latent resolution is tiled whole (every tile runs
 * vae_decode with its own statistics and a fixed halo). */
#include "vae_tiling.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PD "first_stage_model.decoder."
#define GN_GROUPS 32
#define GN_EPS 1e-6 /* model.py Normalize() */
#define MAX_GN 128
#define MAX_TILES 1024
/* Halo when the whole decoder runs per tile (attention above the latent resolution): its
 * receptive field is the whole tile, so this only keeps the tile borders out of the image. */
static const int32_t mem_fallback_halo = 8;

/* ---------------------------------------------------------------------------------------- */
/* The decoder after its head, with shared GroupNorm statistics                             */
/* ---------------------------------------------------------------------------------------- */

enum { GN_LOCAL = 0, GN_CAPTURE = 1, GN_APPLY = 2 };

typedef struct tail_run {
    ldm_exec *ex;
    const ldm_model *m;
    int mode;
    int layer;                       /* GroupNorm index within this run */
    int32_t th, tw;                  /* the tile, latent pixels */
    int32_t cy0, cy1, cx0, cx1;      /* its core, tile-local latent pixels */
    double (*sum)[GN_GROUPS], (*sq)[GN_GROUPS], *count; /* [MAX_GN]: sums over the cores */
    double (*mean)[GN_GROUPS], (*rstd)[GN_GROUPS];       /* [MAX_GN]: what GN_APPLY uses */
    float *host;                     /* download buffer for GN_CAPTURE */
    size_t host_cap;
} tail_run;

#define W(...) model_weightf(r->m, &r->ex->status, __VA_ARGS__)

/* Host float32 copy of a per-channel weight (any dtype) of c elements. */
static bool channel_params(const ldm_tensor *t, int64_t c, float *out) {
    if (!t || ldm_numel(t) != c) return false;
    ldm_convert_to_f32(t->dtype, t->data, out, (size_t)c);
    return true;
}

static void capture(tail_run *r, int idx, const ldm_tensor *x) {
    const int64_t C = x->ne[1], Hl = x->ne[2], Wl = x->ne[3], cg = C / GN_GROUPS, s = Hl / r->th;
    const size_t n = (size_t)ldm_numel(x);
    if (r->host_cap < n) {
        float *p = realloc(r->host, n * sizeof(float));
        if (!p) {
            op_error(r->ex, ldm_fail(LDM_ERR_NO_MEMORY, "out of memory for the VAE tile statistics"));
            return;
        }
        r->host = p;
        r->host_cap = n;
    }
    if (op_to_host(r->ex, x, r->host)) return;
    for (int64_t c = 0; c < C; c++) {
        double a = 0, b = 0;
        for (int64_t y = r->cy0 * s; y < r->cy1 * s; y++) {
            const float *row = r->host + (c * Hl + y) * Wl;
            for (int64_t xx = r->cx0 * s; xx < r->cx1 * s; xx++) {
                a += row[xx];
                b += (double)row[xx] * row[xx];
            }
        }
        r->sum[idx][c / cg] += a;
        r->sq[idx][c / cg] += b;
    }
    r->count[idx] += (double)cg * (r->cy1 - r->cy0) * s * (r->cx1 - r->cx0) * s;
}

/* GroupNorm (+ SiLU) with the tile's own statistics, recording them (GN_CAPTURE), or with the
 * image-wide ones as a per-channel affine 1x1 convolution (GN_APPLY). */
static ldm_tensor *gn(tail_run *r, const ldm_tensor *x, const char *p, int silu) {
    ldm_exec *ex = r->ex;
    const ldm_tensor *gamma = W("%sweight", p), *beta = W("%sbias", p);
    if (!x || ex->status) return NULL;
    const int idx = r->layer++;
    const int64_t C = x->ne[1];
    if (idx >= MAX_GN || C % GN_GROUPS) return op_error(ex, ldm_fail(LDM_ERR_INTERNAL, "VAE tiles: GroupNorm layout"));
    if (r->mode & GN_CAPTURE) capture(r, idx, x);
    if (!(r->mode & GN_APPLY)) return op_group_norm(ex, x, gamma, beta, GN_GROUPS, (float)GN_EPS, silu);
    float *aw = calloc((size_t)(C * C), sizeof(float)), *ab = malloc((size_t)C * sizeof(float)),
          *g = malloc((size_t)C * sizeof(float)), *b = malloc((size_t)C * sizeof(float));
    ldm_tensor *y = NULL;
    if (!aw || !ab || !g || !b) {
        op_error(ex, ldm_fail(LDM_ERR_NO_MEMORY, "out of memory"));
    } else if (!channel_params(gamma, C, g) || !channel_params(beta, C, b)) {
        op_error(ex, ldm_fail(LDM_ERR_FORMAT, "VAE GroupNorm '%s' parameters do not match %lld channels", p, (long long)C));
    } else {
        const int64_t cg = C / GN_GROUPS;
        for (int64_t c = 0; c < C; c++) {
            const double a = (double)g[c] * r->rstd[idx][c / cg];
            aw[c * C + c] = (float)a;
            ab[c] = (float)((double)b[c] - r->mean[idx][c / cg] * a);
        }
        ldm_tensor *wt = op_from_host(ex, 4, (int64_t[]){C, C, 1, 1}, aw), *bt = op_from_host(ex, 1, (int64_t[]){C}, ab);
        y = op_conv2d(ex, x, wt, bt, 1, 0);
        op_free(ex, wt);
        op_free(ex, bt);
        if (silu) {
            ldm_tensor *s = op_unary(ex, LDM_UNARY_SILU, y);
            op_free(ex, y);
            y = s;
        }
    }
    free(aw);
    free(ab);
    free(g);
    free(b);
    return y;
}

/* ResnetBlock (vae.c's, with gn()); keeps x. */
static ldm_tensor *resnet(tail_run *r, const ldm_tensor *x, const char *p) {
    ldm_exec *ex = r->ex;
    char q[192];
    snprintf(q, sizeof q, "%snorm1.", p);
    ldm_tensor *h = gn(r, x, q, 1);
    ldm_tensor *h2 = op_conv2d(ex, h, W("%sconv1.weight", p), W("%sconv1.bias", p), 1, 1);
    op_free(ex, h);
    snprintf(q, sizeof q, "%snorm2.", p);
    h = gn(r, h2, q, 1);
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

/* The decoder after vae_decoder_head: x [1, c_head, th, tw] (consumed) -> image [1, 3, f th, f tw]
 * (to the host when image != NULL). */
static ldm_status tail(tail_run *r, ldm_tensor *t, float *image) {
    ldm_exec *ex = r->ex;
    const vae_config *v = &r->m->vae;
    r->layer = 0;
    char p[160];
    for (int i = v->n_levels - 1; i >= 0; i--) {
        for (int j = 0; i != v->n_levels - 1 && j <= v->num_res_blocks; j++) {
            snprintf(p, sizeof p, PD "up.%d.block.%d.", i, j);
            ldm_tensor *y = resnet(r, t, p);
            op_free(ex, t);
            t = y;
        }
        if (i != 0) {
            ldm_tensor *u = op_upsample2x(ex, t);
            op_free(ex, t);
            t = op_conv2d(ex, u, W(PD "up.%d.upsample.conv.weight", i), W(PD "up.%d.upsample.conv.bias", i), 1, 1);
            op_free(ex, u);
        }
    }
    ldm_tensor *o = gn(r, t, PD "norm_out.", 1);
    op_free(ex, t);
    ldm_tensor *y = op_conv2d(ex, o, W(PD "conv_out.weight"), W(PD "conv_out.bias"), 1, 1);
    op_free(ex, o);
    if (image) op_to_host(ex, y, image);
    op_free(ex, y);
    return ex->status;
}

/* Attention above the latent resolution would see only its tile: such decoders are tiled whole. */
static bool tail_tileable(const ldm_model *m) {
    const vae_config *v = &m->vae;
    if (m->vae.n_levels < 1) return false;
    for (int i = 0; i < v->n_levels - 1; i++)
        for (int j = 0; j <= v->num_res_blocks; j++)
            if (model_has(m, PD "up.%d.attn.%d.norm.weight", i, j)) return false;
    return true;
}

/* Halo of the part after the head, in latent pixels: from the output back, every 3x3
 * convolution needs one more pixel at its resolution and a nearest-neighbour 2x upsampling
 * halves (rounding up) what the convolution after it needs. A tile's core, grown by the halo,
 * therefore decodes exactly as it would untiled (up to the GroupNorm statistics). */
static int32_t tail_halo(const ldm_model *m) {
    const vae_config *v = &m->vae;
    int32_t hl = 1; /* conv_out */
    for (int i = 0; i < v->n_levels - 1; i++) {
        hl += 2 * (v->num_res_blocks + 1); /* level i's ResnetBlocks */
        hl = (hl + 1 + 1) / 2;             /* the upsampling conv into level i, then the upsampling */
    }
    return hl;
}

/* ---------------------------------------------------------------------------------------- */
/* Tiles                                                                                    */
/* ---------------------------------------------------------------------------------------- */

/* Core boundaries along one axis: n cores of at most `core` pixels, evenly spread over size. */
static int32_t cores(int32_t size, int32_t core, int32_t *b, int32_t max) {
    int32_t n = (size + core - 1) / core;
    if (n > max - 1) n = max - 1;
    for (int32_t i = 0; i <= n; i++) b[i] = (int32_t)((int64_t)i * size / n);
    return n;
}

int32_t vae_tile_halo(const ldm_model *m) { return tail_tileable(m) ? tail_halo(m) : mem_fallback_halo; }

ldm_status vae_decode_tiled(ldm_exec *ex, const ldm_model *m, int32_t n, int32_t h, int32_t w, const float *z,
                            float *image, int32_t tile) {
    return vae_decode_tiled_ex(ex, m, n, h, w, z, image, tile, VAE_TILE_STATS_TILES);
}

ldm_status vae_decode_tiled_ex(ldm_exec *ex, const ldm_model *m, int32_t n, int32_t h, int32_t w, const float *z,
                               float *image, int32_t tile, vae_tile_stats stats_mode) {
    if (tile <= 0 || (tile >= h && tile >= w)) return vae_decode(ex, m, n, h, w, z, image);
    if (ex->status) return ex->status;
    const bool shared = tail_tileable(m);
    const int32_t halo = vae_tile_halo(m);
    if (tile < 2 * halo + 4)
        return ldm_fail(LDM_ERR_INVALID_ARG, "VAE tile %d: at least %d latent pixels (a halo of %d on each side)", tile,
                        2 * halo + 4, halo);
    static const int32_t maxb = MAX_TILES;
    int32_t *by = malloc(maxb * sizeof *by), *bx = malloc(maxb * sizeof *bx);
    if (!by || !bx) {
        free(by);
        free(bx);
        return ldm_fail(LDM_ERR_NO_MEMORY, "out of memory");
    }
    const int32_t ny = cores(h, tile - 2 * halo, by, maxb), nx = cores(w, tile - 2 * halo, bx, maxb);
    const bool whole_stats = stats_mode == VAE_TILE_STATS_WHOLE;
    const int64_t f = m->downscale, C = m->vae.embed_dim, H = (int64_t)h * f, Wd = (int64_t)w * f;
    const int64_t tmax = LDM_MIN((int64_t)tile, (int64_t)LDM_MAX(h, w)); /* largest region side */
    const ldm_tensor *ci = model_weight(m, PD "conv_in.weight");
    const int64_t ch = ci && ci->ndim == 4 ? ci->ne[0] : 0;
    float *head = shared ? malloc((size_t)(ch * h * w) * sizeof(float)) : NULL;
    const int64_t tpix = whole_stats ? (int64_t)h * w : tmax * tmax; /* the largest region */
    float *tin = malloc((size_t)(LDM_MAX(C, ch) * tpix) * sizeof(float)),
          *it = malloc((size_t)(3 * tpix * f * f) * sizeof(float));
    double(*stats)[GN_GROUPS] = shared ? calloc((size_t)MAX_GN * 4, sizeof *stats) : NULL;
    double *count = shared ? calloc(MAX_GN, sizeof *count) : NULL;
    tail_run tr = {.ex = ex, .m = m};
    ldm_status st = LDM_OK;
    if ((shared && (!head || !stats || !count || !ch)) || !tin || !it) {
        st = ldm_fail(LDM_ERR_NO_MEMORY, "out of memory for the VAE tiles");
        goto done;
    }
    if (shared) {
        tr.sum = stats;
        tr.sq = stats + MAX_GN;
        tr.mean = stats + 2 * MAX_GN;
        tr.rstd = stats + 3 * MAX_GN;
        tr.count = count;
    }
    for (int32_t b = 0; b < n && !st; b++) {
        const float *zb = z + (size_t)(b * C * h * w);
        float *img = image + (size_t)(b * 3 * H * Wd);
        const float *src = zb;
        int64_t sc = C;
        if (shared) {
            ldm_tensor *t = vae_decoder_head(ex, m, 1, h, w, zb);
            if (t && (t->ndim != 4 || t->ne[1] != ch || t->ne[2] != h || t->ne[3] != w))
                op_error(ex, ldm_fail(LDM_ERR_INTERNAL, "VAE tiles: unexpected decoder head shape"));
            op_to_host(ex, t, head);
            op_free(ex, t);
            if ((st = ex->status)) break;
            src = head;
            sc = ch;
        }
        /* pass 0 (shared statistics only): record the statistics; pass 1: decode the cores */
        for (int pass = shared ? 0 : 1; pass < 2 && !st; pass++) {
            tr.mode = pass == 0 ? GN_CAPTURE : shared ? GN_APPLY : 0;
            if (tr.mode & GN_CAPTURE) {
                memset(stats, 0, (size_t)MAX_GN * 2 * sizeof *stats);
                memset(count, 0, MAX_GN * sizeof *count);
            }
            /* VAE_TILE_STATS_WHOLE: the recording pass runs over the whole latent as one region */
            const int32_t one_y[2] = {0, h}, one_x[2] = {0, w};
            const bool one = pass == 0 && whole_stats;
            const int32_t *py = one ? one_y : by, *px = one ? one_x : bx, pny = one ? 1 : ny, pnx = one ? 1 : nx;
            for (int32_t ty = 0; ty < pny && !st; ty++) {
                for (int32_t tx = 0; tx < pnx && !st; tx++) {
                    /* the region: the core grown by the halo, within the latent */
                    const int32_t y0 = LDM_MAX(py[ty] - halo, 0), y1 = LDM_MIN(py[ty + 1] + halo, h);
                    const int32_t x0 = LDM_MAX(px[tx] - halo, 0), x1 = LDM_MIN(px[tx + 1] + halo, w);
                    const int64_t th = y1 - y0, tw = x1 - x0;
                    for (int64_t c = 0; c < sc; c++)
                        for (int64_t y = 0; y < th; y++)
                            memcpy(tin + (c * th + y) * tw, src + (c * h + y0 + y) * w + x0, (size_t)tw * sizeof(float));
                    if (!shared) {
                        st = vae_decode(ex, m, 1, (int32_t)th, (int32_t)tw, tin, it);
                    } else {
                        tr.th = (int32_t)th;
                        tr.tw = (int32_t)tw;
                        tr.cy0 = py[ty] - y0;
                        tr.cy1 = py[ty + 1] - y0;
                        tr.cx0 = px[tx] - x0;
                        tr.cx1 = px[tx + 1] - x0;
                        ldm_tensor *t = op_from_host(ex, 4, (int64_t[]){1, ch, th, tw}, tin);
                        st = tail(&tr, t, pass == 1 ? it : NULL);
                    }
                    if (st || pass == 0) continue;
                    /* the core of the decoded region */
                    const int64_t oy = (py[ty] - y0) * f, ox = (px[tx] - x0) * f, ch_ = (py[ty + 1] - py[ty]) * f,
                                  cw = (px[tx + 1] - px[tx]) * f, TW = tw * f, TH = th * f;
                    for (int64_t c = 0; c < 3; c++)
                        for (int64_t y = 0; y < ch_; y++)
                            memcpy(img + (c * H + py[ty] * f + y) * Wd + px[tx] * f, it + (c * TH + oy + y) * TW + ox,
                                   (size_t)cw * sizeof(float));
                }
            }
            if ((tr.mode & GN_CAPTURE) && !st) {
                for (int l = 0; l < MAX_GN && count[l] > 0; l++)
                    for (int g = 0; g < GN_GROUPS; g++) {
                        const double mean = tr.sum[l][g] / count[l], var = tr.sq[l][g] / count[l] - mean * mean;
                        tr.mean[l][g] = mean;
                        tr.rstd[l][g] = 1.0 / sqrt(LDM_MAX(var, 0.0) + GN_EPS);
                    }
            }
        }
    }
    if (!st) st = ex->status;
done:
    free(by);
    free(bx);
    free(head);
    free(tin);
    free(it);
    free(stats);
    free(count);
    free(tr.host);
    return st;
}
