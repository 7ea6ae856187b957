/* Tiled VAE decoding: one mechanism for every backend and both memory budgets (vae_tiling.h).
 *
 * Why: the KL-f8 decoder holds ~2.5 KB of activations per output pixel at its peak (0.64 GB at
 * 512^2, 2.5 GB at 1024^2 for SD), nearly all of it after the first upsampling; the part at the
 * latent's resolution (post_quant_conv, conv_in, the mid block with its attention, the lowest
 * level's blocks: vae_decoder_head) is small. So:
 *  1. the head runs over the whole latent, exactly as untiled (global attention included);
 *  2. the rest, the tail, is a list of segments (build_segments): GroupNorm + SiLU + 3x3 conv
 *     (two per ResnetBlock, the second adding the residual; norm_out + conv_out), or nearest 2x
 *     upsampling + 3x3 conv. The latent is cut into cores that partition it; a tile is its core
 *     grown by the tail's receptive field (the halo: 7 latent pixels for SD), so that every
 *     convolution at the core sees the pixels it sees untiled, and only the core is kept: no
 *     seams and nothing to blend;
 *  3. every GroupNorm of the tail uses statistics of the whole image, applied as the
 *     per-channel affine map x -> a_c x + b_c (a 1x1 convolution), so all tiles share one tone.
 *     (Tile-local statistics, what diffusers' tiled_decode and most tiled VAEs use, shift each
 *     tile's tone and need overlap blending to hide it.)
 * Two schedules differ only in where the whole-image statistics come from:
 *  - hold (VAE_TILE_STATS_WHOLE; what vae_decode uses when a device's memory is short): segment
 *    by segment over all tiles, the activations waiting on the host in between, so that each
 *    GroupNorm sums over the previous segment's real outputs: the untiled decode up to float
 *    summation order. Device memory: one tile's segment; host memory: the image's activations.
 *  - recompute (VAE_TILE_STATS_TILES; a host-memory budget: --vae-tile, --max-memory): tile by
 *    tile, twice. The first pass normalises each tile with its own statistics and records the
 *    sums over the cores; the second applies those image-wide sums and is kept. Memory: one
 *    tile. It differs from the untiled decode by the first pass's tile-local statistics
 *    (tests/test_vae_tiling.c measures it).
 * A decoder with attention above the latent resolution has no segment list (its attention would
 * see only its tile): it is decoded whole per tile, with a fixed halo and its own statistics. */
#include "vae_tiling.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DEC "first_stage_model.decoder."
#define PQC "first_stage_model.post_quant_conv."
#define GN_GROUPS 32
#define GN_EPS 1e-6 /* model.py Normalize(): GroupNorm(32, eps=1e-6) */
#define MAX_SEGS 96
#define MAX_CORES 128 /* per axis */
/* Halo when the whole decoder runs per tile: its receptive field is the whole tile, so this only
 * keeps the tile borders out of the image. */
static const int32_t whole_decoder_halo = 8;

/* ---------------------------------------------------------------------------------------- */
/* Geometry                                                                                 */
/* ---------------------------------------------------------------------------------------- */

typedef struct rect {
    int32_t y0, x0, y1, x1; /* [y0, y1) x [x0, x1) */
} rect;

static int32_t rh(rect r) { return r.y1 - r.y0; }
static int32_t rw(rect r) { return r.x1 - r.x0; }
static rect scaled(rect r, int32_t s) { return (rect){r.y0 * s, r.x0 * s, r.y1 * s, r.x1 * s}; }

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

/* The cores: a partition of the h x w latent by the boundaries by[0..ny] and bx[0..nx]. */
typedef struct grid {
    int32_t ny, nx;
    int32_t by[MAX_CORES + 1], bx[MAX_CORES + 1];
} grid;

/* Boundaries of n cores of at most `core` pixels (as many as MAX_CORES allows), evenly spread. */
static int32_t spread(int32_t size, int32_t core, int32_t *b) {
    int32_t n = (size + core - 1) / core;
    if (n > MAX_CORES) n = MAX_CORES;
    for (int32_t i = 0; i <= n; i++) b[i] = (int32_t)((int64_t)i * size / n);
    return n;
}

static void grid_init(grid *g, int32_t h, int32_t w, int32_t core_h, int32_t core_w) {
    g->ny = spread(h, LDM_MAX(core_h, 1), g->by);
    g->nx = spread(w, LDM_MAX(core_w, 1), g->bx);
}

static rect grid_core(const grid *g, int32_t i) {
    const int32_t iy = i / g->nx, ix = i % g->nx;
    return (rect){g->by[iy], g->bx[ix], g->by[iy + 1], g->bx[ix + 1]};
}

/* The largest tile (a core grown by `halo`, within the latent), latent pixels: the buffers' size. */
static void largest_tile(const grid *g, int32_t halo, int32_t h, int32_t w, int32_t *th, int32_t *tw) {
    *th = *tw = 0;
    for (int32_t i = 0; i < g->ny * g->nx; i++) {
        const rect r = grow(grid_core(g, i), 1, halo, h, w);
        *th = LDM_MAX(*th, rh(r));
        *tw = LDM_MAX(*tw, rw(r));
    }
}

/* ---------------------------------------------------------------------------------------- */
/* The tail as segments                                                                     */
/* ---------------------------------------------------------------------------------------- */

enum { SEG_UP, SEG_GN, SEG_GN_RES };

typedef struct seg {
    int kind;           /* UP: upsample, conv; GN: GroupNorm+SiLU, conv; GN_RES: the same + the residual */
    char norm[128], conv[128], shortcut[128]; /* key prefixes; shortcut "" = identity */
    bool save_x;        /* the input is a ResnetBlock's input: keep it for the residual */
    int32_t halo;       /* halo of the input region, in pixels at the input's resolution */
    int32_t scale;      /* input resolution / latent resolution */
    int32_t c_in, c_out;
    int32_t c_res;      /* GN_RES: channels of the residual (the block's input) */
} seg;

typedef struct tail {
    seg s[MAX_SEGS];
    int n;
    int32_t c_head; /* channels of the head's output */
    int32_t c_max;  /* the widest tensor of the tail */
} tail;

/* The decoder after its head as a list of segments, with halos. False when it cannot be split
 * (attention above the latent resolution, an unexpected layout). */
static bool build_segments(const ldm_model *m, tail *tl) {
    const vae_config *v = &m->vae;
    seg *s = tl->s;
    int n = 0;
    char name[256];
    if (v->n_levels < 1) return false;
    /* the head's output channels: those of the last block of the lowest level */
    snprintf(name, sizeof name, DEC "up.%d.block.%d.conv2.weight", v->n_levels - 1, v->num_res_blocks);
    const ldm_tensor *t = model_weight(m, name);
    if (!t || t->ndim != 4) return false;
    int32_t c = (int32_t)t->ne[0], scale = 1;
    tl->c_head = c;
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
            b->c_res = c;
            snprintf(name, sizeof name, "%sweight", b->conv);
            if (!(t = model_weight(m, name)) || t->ndim != 4) return false;
            b->c_out = (int32_t)t->ne[0];
            b->scale = scale;
            if (!b->shortcut[0] && b->c_res != b->c_out) return false;
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
    o->kind = SEG_GN; /* norm_out, swish, conv_out (model.py Decoder.forward) */
    snprintf(o->norm, sizeof o->norm, DEC "norm_out.");
    snprintf(o->conv, sizeof o->conv, DEC "conv_out.");
    if (!(t = model_weight(m, DEC "conv_out.weight")) || t->ndim != 4) return false;
    o->c_in = c;
    o->c_out = (int32_t)t->ne[0];
    o->scale = scale;
    tl->c_max = tl->c_head;
    for (int k = 0; k < n; k++) {
        if (s[k].c_in % GN_GROUPS && s[k].kind != SEG_UP) return false;
        tl->c_max = LDM_MAX(tl->c_max, LDM_MAX(s[k].c_in, s[k].c_out));
    }
    /* halos, from the output back: each 3x3 convolution adds one pixel at its resolution; an
     * upsampling halves (rounding up) what its convolution needs */
    int32_t h = 0;
    for (int k = n - 1; k >= 0; k--) {
        h = s[k].kind == SEG_UP ? (h + 2) / 2 : h + 1;
        s[k].halo = h;
    }
    tl->n = n;
    return true;
}

#define W(...) model_weightf(m, &ex->status, __VA_ARGS__)

/* One segment on a tile: x [1, c_in, h, w] -> y. res: the ResnetBlock's input over the same
 * region (GN_RES). aw, ab: the GroupNorm as an affine 1x1 convolution, or NULL to normalise with
 * the tile's own statistics. The same ops, in the same order, as vae.c's ResnetBlock. */
static ldm_tensor *seg_forward(ldm_exec *ex, const ldm_model *m, const seg *s, const ldm_tensor *x,
                               const ldm_tensor *res, const ldm_tensor *aw, const ldm_tensor *ab) {
    const ldm_tensor *cw = W("%sweight", s->conv), *cb = W("%sbias", s->conv);
    if (s->kind == SEG_UP) {
        ldm_tensor *u = op_upsample2x(ex, x);
        ldm_tensor *y = op_conv2d(ex, u, cw, cb, 1, 1);
        op_free(ex, u);
        return y;
    }
    ldm_tensor *g;
    if (aw) {
        ldm_tensor *a = op_conv2d(ex, x, aw, ab, 1, 0);
        g = op_unary(ex, LDM_UNARY_SILU, a);
        op_free(ex, a);
    } else {
        g = op_group_norm(ex, x, W("%sweight", s->norm), W("%sbias", s->norm), GN_GROUPS, (float)GN_EPS, 1);
    }
    ldm_tensor *y = op_conv2d(ex, g, cw, cb, 1, 1);
    op_free(ex, g);
    if (s->kind != SEG_GN_RES) return y;
    if (s->shortcut[0]) {
        ldm_tensor *sc = op_conv2d(ex, res, W("%sweight", s->shortcut), W("%sbias", s->shortcut), 1, 0);
        return op_add_into(ex, sc, y);
    }
    ldm_tensor *out = op_add(ex, res, y);
    op_free(ex, y);
    return out;
}

/* Adds the per-channel sums over `core` of x (c planes laid out over r). */
static void accumulate(const float *x, rect r, rect core, int32_t c, double *sum, double *sq) {
    for (int32_t ch = 0; ch < c; ch++) {
        double a = 0, b = 0;
        for (int32_t y = core.y0; y < core.y1; y++) {
            const float *row = x + ((size_t)ch * rh(r) + (size_t)(y - r.y0)) * rw(r) + (core.x0 - r.x0);
            for (int32_t i = 0; i < rw(core); i++) {
                a += row[i];
                b += (double)row[i] * row[i];
            }
        }
        sum[ch] += a;
        sq[ch] += b;
    }
}

/* Segment s's GroupNorm with the statistics of `pixels` positions per channel (sums per channel)
 * as y = a_c x + b_c, a_c = gamma_c rstd_g, b_c = beta_c - mean_g a_c (in double): the weight and
 * bias of a 1x1 convolution. */
static ldm_status gn_affine(ldm_exec *ex, const ldm_model *m, const seg *s, const double *sum, const double *sq,
                            double pixels, ldm_tensor **aw, ldm_tensor **ab) {
    const int32_t c = s->c_in, cg = c / GN_GROUPS;
    const ldm_tensor *gamma = W("%sweight", s->norm), *beta = W("%sbias", s->norm);
    *aw = *ab = NULL;
    if (ex->status) return ex->status;
    if (ldm_numel(gamma) != c || ldm_numel(beta) != c) {
        ldm_fail(LDM_ERR_FORMAT, "VAE GroupNorm '%s' parameters do not match %d channels", s->norm, (int)c);
        return ex->status = LDM_ERR_FORMAT;
    }
    float *w = calloc((size_t)c * c, sizeof *w), *b = malloc((size_t)c * sizeof *b), *g = malloc((size_t)c * sizeof *g),
          *be = malloc((size_t)c * sizeof *be);
    if (!w || !b || !g || !be) {
        op_error(ex, ldm_fail(LDM_ERR_NO_MEMORY, "out of memory for a VAE GroupNorm"));
    } else {
        ldm_convert_to_f32(gamma->dtype, gamma->data, g, (size_t)c);
        ldm_convert_to_f32(beta->dtype, beta->data, be, (size_t)c);
        const double cnt = (double)cg * pixels;
        for (int32_t gr = 0; gr < GN_GROUPS; gr++) {
            double a = 0, q = 0;
            for (int32_t ch = gr * cg; ch < (gr + 1) * cg; ch++) {
                a += sum[ch];
                q += sq[ch];
            }
            const double mean = a / cnt, var = LDM_MAX(q / cnt - mean * mean, 0.0), rstd = 1.0 / sqrt(var + GN_EPS);
            for (int32_t ch = gr * cg; ch < (gr + 1) * cg; ch++) {
                const double sc = (double)g[ch] * rstd;
                w[(size_t)ch * c + ch] = (float)sc;
                b[ch] = (float)((double)be[ch] - mean * sc);
            }
        }
        *aw = op_from_host(ex, 4, (int64_t[]){c, c, 1, 1}, w);
        *ab = op_from_host(ex, 1, (int64_t[]){c}, b);
    }
    free(w);
    free(b);
    free(g);
    free(be);
    return ex->status;
}

/* The head over the whole latent, on the host: c_head x h x w floats. */
static float *head_to_host(ldm_exec *ex, const ldm_model *m, const tail *tl, int32_t h, int32_t w, const float *z) {
    float *head = malloc((size_t)tl->c_head * h * w * sizeof *head);
    if (!head) {
        op_error(ex, ldm_fail(LDM_ERR_NO_MEMORY, "out of memory for the VAE decoder head"));
        return NULL;
    }
    ldm_tensor *t = vae_decoder_head(ex, m, 1, h, w, z);
    if (t && (t->ndim != 4 || t->ne[1] != tl->c_head || t->ne[2] != h || t->ne[3] != w))
        op_error(ex, ldm_fail(LDM_ERR_INTERNAL, "VAE tiles: unexpected decoder head shape"));
    op_to_host(ex, t, head);
    op_free(ex, t);
    if (ex->status) {
        free(head);
        return NULL;
    }
    return head;
}

/* Copies the core of a decoded tile (3 planes over region r of the image) into the image. */
static void put_core(float *image, int32_t H, int32_t Wd, const float *tile, rect r, rect core) {
    for (int32_t c = 0; c < 3; c++)
        for (int32_t y = core.y0; y < core.y1; y++)
            memcpy(image + ((size_t)c * H + (size_t)y) * Wd + core.x0,
                   tile + ((size_t)c * rh(r) + (size_t)(y - r.y0)) * rw(r) + (core.x0 - r.x0),
                   (size_t)rw(core) * sizeof *image);
}

/* ---------------------------------------------------------------------------------------- */
/* Schedule 1, hold: segment by segment over all tiles, exact statistics                    */
/* ---------------------------------------------------------------------------------------- */

typedef struct held {
    rect core;      /* latent pixels */
    rect r, rx;     /* regions of cur and x at the current resolution */
    float *cur, *x; /* activations waiting on the host */
} held;

static ldm_status decode_hold(ldm_exec *ex, const ldm_model *m, const tail *tl, const grid *gd, int32_t h, int32_t w,
                              const float *z, float *image) {
    const seg *segs = tl->s;
    const int nseg = tl->n, nt = gd->ny * gd->nx;
    held *tiles = calloc((size_t)nt, sizeof *tiles);
    double *sum = calloc((size_t)tl->c_max, sizeof *sum), *sq = calloc((size_t)tl->c_max, sizeof *sq);
    if (!tiles || !sum || !sq) op_error(ex, ldm_fail(LDM_ERR_NO_MEMORY, "out of memory for the VAE tiles"));
    float *head = ex->status ? NULL : head_to_host(ex, m, tl, h, w, z);
    for (int32_t i = 0; i < nt && !ex->status; i++) {
        held *t = &tiles[i];
        t->core = grid_core(gd, i);
        t->r = grow(t->core, 1, segs[0].halo, h, w);
        t->cur = malloc((size_t)tl->c_head * rh(t->r) * rw(t->r) * sizeof *t->cur);
        if (!t->cur) {
            op_error(ex, ldm_fail(LDM_ERR_NO_MEMORY, "out of memory for the VAE tiles"));
            break;
        }
        crop(head, (rect){0, 0, h, w}, t->cur, t->r, tl->c_head);
        if (segs[0].kind != SEG_UP) accumulate(t->cur, t->r, t->core, tl->c_head, sum, sq);
    }
    free(head);
    double pixels = (double)h * w; /* positions per channel behind sum and sq */

    for (int k = 0; k < nseg && !ex->status; k++) {
        const seg *s = &segs[k];
        const int32_t So = s->kind == SEG_UP ? 2 * s->scale : s->scale, Ho = h * So, Wo = w * So;
        const int32_t halo_out = k + 1 < nseg ? segs[k + 1].halo : 0;
        ldm_tensor *aw = NULL, *ab = NULL;
        if (s->kind != SEG_UP) gn_affine(ex, m, s, sum, sq, pixels, &aw, &ab);
        memset(sum, 0, (size_t)tl->c_max * sizeof *sum);
        memset(sq, 0, (size_t)tl->c_max * sizeof *sq);
        pixels = (double)Ho * Wo;
        for (int32_t i = 0; i < nt && !ex->status; i++) {
            held *t = &tiles[i];
            ldm_tensor *xin = op_from_host(ex, 4, (int64_t[]){1, s->c_in, rh(t->r), rw(t->r)}, t->cur), *res = NULL;
            if (s->kind == SEG_GN_RES) { /* the block's input over this region */
                float *xs = malloc((size_t)s->c_res * rh(t->r) * rw(t->r) * sizeof *xs);
                if (!xs) op_error(ex, ldm_fail(LDM_ERR_NO_MEMORY, "out of memory for the VAE tiles"));
                else crop(t->x, t->rx, xs, t->r, s->c_res);
                if (xs) res = op_from_host(ex, 4, (int64_t[]){1, s->c_res, rh(t->r), rw(t->r)}, xs);
                free(xs);
                free(t->x);
                t->x = NULL;
            }
            ldm_tensor *y = seg_forward(ex, m, s, xin, res, aw, ab);
            op_free(ex, xin);
            op_free(ex, res);
            /* the output's region; its border pixels next to other tiles are wrong (zero padding) */
            const rect ry = s->kind == SEG_UP ? scaled(t->r, 2) : t->r;
            const rect valid = {ry.y0 > 0 ? ry.y0 + 1 : 0, ry.x0 > 0 ? ry.x0 + 1 : 0, ry.y1 < Ho ? ry.y1 - 1 : Ho,
                                ry.x1 < Wo ? ry.x1 - 1 : Wo};
            const rect rn = grow(t->core, So, halo_out, Ho, Wo);
            float *yh = malloc((size_t)s->c_out * rh(ry) * rw(ry) * sizeof *yh);
            float *next = malloc((size_t)s->c_out * rh(rn) * rw(rn) * sizeof *next);
            if (!yh || !next) op_error(ex, ldm_fail(LDM_ERR_NO_MEMORY, "out of memory for the VAE tiles"));
            else if (rn.y0 < valid.y0 || rn.x0 < valid.x0 || rn.y1 > valid.y1 || rn.x1 > valid.x1)
                op_error(ex, ldm_fail(LDM_ERR_INTERNAL, "VAE tiles: halo too small at segment %d", k));
            if (!ex->status) op_to_host(ex, y, yh);
            op_free(ex, y);
            if (!ex->status) crop(yh, ry, next, rn, s->c_out);
            free(yh);
            if (ex->status) {
                free(next);
                break;
            }
            if (s->save_x) { /* keep the block's input for the residual of the next segment */
                t->x = t->cur;
                t->rx = t->r;
            } else {
                free(t->cur);
            }
            t->cur = next;
            t->r = rn;
            if (k + 1 < nseg && segs[k + 1].kind != SEG_UP) accumulate(t->cur, t->r, scaled(t->core, So), s->c_out, sum, sq);
        }
        op_free(ex, aw);
        op_free(ex, ab);
    }

    /* the cores of the last segment's outputs are the image */
    const int32_t f = m->downscale;
    for (int32_t i = 0; i < nt && !ex->status; i++)
        put_core(image, h * f, w * f, tiles[i].cur, tiles[i].r, scaled(tiles[i].core, f));
    for (int32_t i = 0; tiles && i < nt; i++) {
        free(tiles[i].cur);
        free(tiles[i].x);
    }
    free(tiles);
    free(sum);
    free(sq);
    return ex->status;
}

/* ---------------------------------------------------------------------------------------- */
/* Schedule 2, recompute: tile by tile, twice                                               */
/* ---------------------------------------------------------------------------------------- */

static ldm_status decode_recompute(ldm_exec *ex, const ldm_model *m, const tail *tl, const grid *gd, int32_t h,
                                   int32_t w, const float *z, float *image) {
    const seg *segs = tl->s;
    const int nseg = tl->n, nt = gd->ny * gd->nx;
    const int32_t f = m->downscale, halo = segs[0].halo;
    int32_t th, tw;
    largest_tile(gd, halo, h, w, &th, &tw);
    /* per GroupNorm segment: sums per channel over the cores, then the affine map */
    double *sum = calloc((size_t)nseg * tl->c_max, sizeof *sum), *sq = calloc((size_t)nseg * tl->c_max, sizeof *sq);
    ldm_tensor **aff = calloc((size_t)2 * nseg, sizeof *aff);
    float *tin = malloc((size_t)tl->c_head * th * tw * sizeof *tin), *host = NULL, *it = NULL;
    size_t host_cap = 0;
    if (!sum || !sq || !aff || !tin) op_error(ex, ldm_fail(LDM_ERR_NO_MEMORY, "out of memory for the VAE tiles"));
    float *head = ex->status ? NULL : head_to_host(ex, m, tl, h, w, z);

    for (int pass = 0; pass < 2 && !ex->status; pass++) {
        for (int k = 0; pass == 1 && k < nseg && !ex->status; k++)
            if (segs[k].kind != SEG_UP)
                gn_affine(ex, m, &segs[k], sum + (size_t)k * tl->c_max, sq + (size_t)k * tl->c_max,
                          (double)h * w * segs[k].scale * segs[k].scale, &aff[2 * k], &aff[2 * k + 1]);
        for (int32_t i = 0; i < nt && !ex->status; i++) {
            const rect core = grid_core(gd, i), r = grow(core, 1, halo, h, w);
            crop(head, (rect){0, 0, h, w}, tin, r, tl->c_head);
            ldm_tensor *t = op_from_host(ex, 4, (int64_t[]){1, tl->c_head, rh(r), rw(r)}, tin), *x = NULL;
            int32_t S = 1;
            for (int k = 0; k < nseg && !ex->status; k++) {
                const seg *s = &segs[k];
                if (pass == 0 && s->kind != SEG_UP) { /* record the statistics of the GroupNorm's input */
                    const size_t n = (size_t)ldm_numel(t);
                    if (host_cap < n) {
                        float *p = realloc(host, n * sizeof *p);
                        if (!p) {
                            op_error(ex, ldm_fail(LDM_ERR_NO_MEMORY, "out of memory for the VAE tile statistics"));
                            break;
                        }
                        host = p;
                        host_cap = n;
                    }
                    if (op_to_host(ex, t, host)) break;
                    accumulate(host, scaled(r, S), scaled(core, S), s->c_in, sum + (size_t)k * tl->c_max,
                               sq + (size_t)k * tl->c_max);
                }
                ldm_tensor *y = seg_forward(ex, m, s, t, x, aff[2 * k], aff[2 * k + 1]);
                if (s->kind == SEG_GN_RES) {
                    op_free(ex, x);
                    x = NULL;
                }
                if (s->save_x) x = t;
                else op_free(ex, t);
                t = y;
                if (s->kind == SEG_UP) S *= 2;
            }
            if (pass == 1 && !ex->status) {
                const rect ri = scaled(r, f);
                if (!it) it = malloc((size_t)3 * th * f * tw * f * sizeof *it);
                if (!it) op_error(ex, ldm_fail(LDM_ERR_NO_MEMORY, "out of memory for the VAE tiles"));
                else if (!op_to_host(ex, t, it)) put_core(image, h * f, w * f, it, ri, scaled(core, f));
            }
            op_free(ex, t);
            op_free(ex, x);
        }
    }
    for (int k = 0; aff && k < 2 * nseg; k++) op_free(ex, aff[k]);
    free(aff);
    free(sum);
    free(sq);
    free(tin);
    free(host);
    free(it);
    free(head);
    return ex->status;
}

/* ---------------------------------------------------------------------------------------- */
/* Decoders that cannot be split: the whole decoder per tile                                */
/* ---------------------------------------------------------------------------------------- */

static ldm_status decode_whole_per_tile(ldm_exec *ex, const ldm_model *m, const grid *gd, int32_t h, int32_t w,
                                        const float *z, float *image) {
    const int32_t f = m->downscale, C = m->vae.embed_dim, halo = whole_decoder_halo, nt = gd->ny * gd->nx;
    int32_t th, tw;
    largest_tile(gd, halo, h, w, &th, &tw);
    float *tin = malloc((size_t)C * th * tw * sizeof *tin), *it = malloc((size_t)3 * th * f * tw * f * sizeof *it);
    if (!tin || !it) op_error(ex, ldm_fail(LDM_ERR_NO_MEMORY, "out of memory for the VAE tiles"));
    for (int32_t i = 0; i < nt && !ex->status; i++) {
        const rect core = grid_core(gd, i), r = grow(core, 1, halo, h, w);
        crop(z, (rect){0, 0, h, w}, tin, r, C);
        if (!vae_decode(ex, m, 1, rh(r), rw(r), tin, it)) put_core(image, h * f, w * f, it, scaled(r, f), scaled(core, f));
    }
    free(tin);
    free(it);
    return ex->status;
}

/* ---------------------------------------------------------------------------------------- */
/* Entry points                                                                             */
/* ---------------------------------------------------------------------------------------- */

int32_t vae_tile_halo(const ldm_model *m) {
    tail *tl = malloc(sizeof *tl);
    const int32_t halo = tl && build_segments(m, tl) ? tl->s[0].halo : whole_decoder_halo;
    free(tl);
    return halo;
}

ldm_status vae_decode_tiled(ldm_exec *ex, const ldm_model *m, int32_t n, int32_t h, int32_t w, const float *z,
                            float *image, int32_t tile) {
    return vae_decode_tiled_ex(ex, m, n, h, w, z, image, tile, VAE_TILE_STATS_TILES);
}

ldm_status vae_decode_tiled_ex(ldm_exec *ex, const ldm_model *m, int32_t n, int32_t h, int32_t w, const float *z,
                               float *image, int32_t tile, vae_tile_stats stats) {
    if (tile <= 0 || (tile >= h && tile >= w)) return vae_decode(ex, m, n, h, w, z, image);
    if (ex->status) return ex->status;
    tail *tl = malloc(sizeof *tl);
    grid *gd = malloc(sizeof *gd);
    if (!tl || !gd) {
        free(tl);
        free(gd);
        op_error(ex, ldm_fail(LDM_ERR_NO_MEMORY, "out of memory"));
        return ex->status;
    }
    const bool split = build_segments(m, tl);
    const int32_t halo = split ? tl->s[0].halo : whole_decoder_halo;
    if (tile < 2 * halo + 4) {
        ldm_fail(LDM_ERR_INVALID_ARG, "VAE tile %d: at least %d latent pixels (a halo of %d on each side)", tile,
                 2 * halo + 4, halo);
        free(tl);
        free(gd);
        return LDM_ERR_INVALID_ARG;
    }
    grid_init(gd, h, w, tile - 2 * halo, tile - 2 * halo);
    const size_t per_z = (size_t)m->vae.embed_dim * h * w, per_img = (size_t)3 * h * m->downscale * w * m->downscale;
    for (int32_t b = 0; b < n && !ex->status; b++) {
        const float *zb = z + b * per_z;
        float *ib = image + b * per_img;
        if (!split) decode_whole_per_tile(ex, m, gd, h, w, zb, ib);
        else if (stats == VAE_TILE_STATS_WHOLE) decode_hold(ex, m, tl, gd, h, w, zb, ib);
        else decode_recompute(ex, m, tl, gd, h, w, zb, ib);
    }
    free(tl);
    free(gd);
    return ex->status;
}

/* ---------------------------------------------------------------------------------------- */
/* vae_decode: whole when the backend's memory allows, else held tiles sized to fit         */
/* ---------------------------------------------------------------------------------------- */

/* Device bytes of one tile's segment (input, intermediates, output, the affine map). */
static uint64_t seg_bytes(const seg *s, int32_t ty, int32_t tx, int32_t h, int32_t w) {
    const int64_t ah = LDM_MIN((int64_t)ty * s->scale + 2 * s->halo, (int64_t)h * s->scale);
    const int64_t aw = LDM_MIN((int64_t)tx * s->scale + 2 * s->halo, (int64_t)w * s->scale);
    const int64_t a = ah * aw;
    int64_t fl = s->kind == SEG_UP ? a * s->c_in + 4 * a * (s->c_in + s->c_out)
                                   : a * (2 * (int64_t)s->c_in + s->c_out) + (int64_t)s->c_in * s->c_in;
    if (s->kind == SEG_GN_RES) fl += a * (s->c_res + 2 * (int64_t)s->c_out); /* the residual, shortcut, sum */
    return (uint64_t)fl * 4;
}

static uint64_t seg_max_tensor(const seg *s, int32_t ty, int32_t tx, int32_t h, int32_t w) {
    const int64_t ah = LDM_MIN((int64_t)ty * s->scale + 2 * s->halo, (int64_t)h * s->scale);
    const int64_t aw = LDM_MIN((int64_t)tx * s->scale + 2 * s->halo, (int64_t)w * s->scale);
    const int64_t c = LDM_MAX(LDM_MAX(s->c_in, s->c_out), s->c_res);
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
        const int64_t c_out = (int64_t)v->ch * v->ch_mult[i];
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

    tail *tl = malloc(sizeof *tl);
    if (!tl) {
        op_error(ex, ldm_fail(LDM_ERR_NO_MEMORY, "out of memory"));
    } else if (!build_segments(m, tl)) {
        op_error(ex, ldm_fail(LDM_ERR_NO_MEMORY,
                              "VAE decode: %llu MiB of activations do not fit the %llu MiB free, and this decoder "
                              "(attention above the latent resolution) cannot be tiled",
                              (unsigned long long)(pk >> 20), (unsigned long long)(avail >> 20)));
    } else if (head > avail || (uint64_t)tl->c_head * h * w * 4 > max_tensor) {
        op_error(ex, ldm_fail(LDM_ERR_NO_MEMORY, "VAE decode: the decoder's latent-resolution part alone needs %llu MiB (%llu MiB free)",
                              (unsigned long long)(head >> 20), (unsigned long long)(avail >> 20)));
    }
    if (ex->status) {
        free(tl);
        return ex->status;
    }
    /* halve the longer side of the cores until every segment of one tile fits */
    int32_t ty = h, tx = w;
    for (;;) {
        uint64_t need = 0, big = 0;
        for (int k = 0; k < tl->n; k++) {
            need = LDM_MAX(need, seg_bytes(&tl->s[k], ty, tx, h, w));
            big = LDM_MAX(big, seg_max_tensor(&tl->s[k], ty, tx, h, w));
        }
        const bool few = (h + ty - 1) / ty <= MAX_CORES && (w + tx - 1) / tx <= MAX_CORES;
        if (need / 4 * 5 <= avail && big <= max_tensor && few) break;
        if ((ty == 1 && tx == 1) || !few) {
            op_error(ex, ldm_fail(LDM_ERR_NO_MEMORY, "VAE decode: even %dx%d latent tiles need %llu MiB (%llu MiB free)",
                                  (int)ty, (int)tx, (unsigned long long)(need >> 20), (unsigned long long)(avail >> 20)));
            free(tl);
            return ex->status;
        }
        if (ty >= tx) ty = (ty + 1) / 2;
        else tx = (tx + 1) / 2;
    }
    grid gd;
    grid_init(&gd, h, w, ty, tx);
    const size_t per_z = (size_t)m->vae.embed_dim * h * w, per_img = (size_t)3 * h * m->downscale * w * m->downscale;
    for (int32_t b = 0; b < n && !ex->status; b++) decode_hold(ex, m, tl, &gd, h, w, z + b * per_z, image + b * per_img);
    free(tl);
    return ex->status;
}
