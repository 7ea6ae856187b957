/* Every op of the Vulkan backend against the CPU backend (the numeric reference) on small shapes
 * with random inputs, run with VK_LAYER_KHRONOS_validation (synchronisation validation included)
 * and a debug messenger: any validation error fails the op and this test.
 *
 * Tolerance per element: |vulkan - cpu| <= 1e-4 + 1e-4 |cpu| (the single-op rule of
 * shared/golden/CONFORM.md); data movement and embedding must match exactly. Every failure
 * prints the op's parameters. Also: in-place use, argument errors (LDM_ERR_INVALID_ARG, never a
 * crash), the windowed paths under a forced small binding range, the weight cache (a weight
 * changed at the same address is uploaded again), the memory budget (eviction, then
 * LDM_ERR_NO_MEMORY), determinism (the same op twice is bit-identical).
 *
 * usage: LDM_VULKAN_VALIDATION=1 test_vulkan_ops (uses whatever device LDM's device selection
 * picks; CI selects lavapipe through VK_DRIVER_FILES / VK_ICD_FILENAMES). */
#include "core/backend.h"
#include "core/common.h"
#include "core/dtype.h"
#include "vulkan/vk_api.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define ATOL 1e-4
#define RTOL 1e-4

static int failures = 0, checks = 0;
static double worst_ratio = 0.0; /* max over all checks of max|d| / allowed */

#define FAILF(...)                                                                                           \
    do {                                                                                                     \
        failures++;                                                                                          \
        fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__);                                                 \
        fprintf(stderr, __VA_ARGS__);                                                                        \
        fprintf(stderr, "\n");                                                                               \
    } while (0)

static ldm_backend *cpu, *vk;

/* ---- random numbers ---- */
static uint64_t rng_state = 0x2545f4914f6cdd1dull;
static double urand(void) {
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (double)(rng_state >> 11) * (1.0 / 9007199254740992.0);
}
static float frand(float lo, float hi) { return (float)(lo + (hi - lo) * urand()); }

/* ---- paired tensors: the same values on both backends ---- */
typedef struct pair {
    ldm_tensor *c, *v;
    int64_t n;
} pair;

static ldm_tensor *new_on(ldm_backend *be, int nd, const int64_t *sh) {
    ldm_tensor *t = be->ops->new_tensor(be, nd, sh);
    if (!t) {
        fprintf(stderr, "new_tensor on %s failed: %s\n", be->ops->name, ldm_last_error());
        exit(1);
    }
    return t;
}

static pair pair_new(int nd, int64_t a, int64_t b, int64_t c, int64_t d) {
    int64_t sh[4] = {a, b, c, d};
    pair p = {new_on(cpu, nd, sh), new_on(vk, nd, sh), 1};
    p.n = ldm_numel(p.c);
    return p;
}

static pair pair_rand(int nd, int64_t a, int64_t b, int64_t c, int64_t d, float lo, float hi) {
    pair p = pair_new(nd, a, b, c, d);
    float *h = malloc((size_t)p.n * sizeof *h);
    for (int64_t i = 0; i < p.n; i++) h[i] = frand(lo, hi);
    if (cpu->ops->upload(cpu, p.c, h) || vk->ops->upload(vk, p.v, h)) {
        fprintf(stderr, "upload failed: %s\n", ldm_last_error());
        exit(1);
    }
    free(h);
    return p;
}

static void pair_free(pair *p) {
    cpu->ops->free_tensor(cpu, p->c);
    vk->ops->free_tensor(vk, p->v);
    p->c = p->v = NULL;
}

/* A weight in file precision at a misaligned address (as inside an mmap'ed checkpoint): the
 * same host tensor goes to both backends. */
typedef struct weight {
    ldm_tensor t;
    void *alloc;
} weight;

static weight *wt_rand(ldm_dtype dt, size_t misalign, int nd, int64_t a, int64_t b, int64_t c, int64_t d, float lo,
                       float hi) {
    weight *w = calloc(1, sizeof *w);
    w->t.dtype = dt;
    w->t.ndim = nd;
    int64_t sh[4] = {a, b, c, d};
    for (int i = 0; i < nd; i++) w->t.ne[i] = sh[i];
    size_t n = (size_t)ldm_numel(&w->t), es = ldm_dtype_size(dt);
    w->alloc = malloc(n * es + 16);
    w->t.data = (char *)w->alloc + misalign;
    for (size_t i = 0; i < n; i++) {
        float v = frand(lo, hi);
        unsigned char *dst = (unsigned char *)w->t.data + i * es;
        if (dt == LDM_DT_F32) {
            memcpy(dst, &v, 4);
        } else if (dt == LDM_DT_F16) {
            uint16_t h = ldm_f32_to_f16(v);
            memcpy(dst, &h, 2);
        } else {
            uint32_t u;
            memcpy(&u, &v, 4);
            uint16_t h = (uint16_t)(u >> 16);
            memcpy(dst, &h, 2);
        }
    }
    return w;
}

static void wt_free(weight *w) {
    if (!w) return;
    free(w->alloc);
    free(w);
}

static const ldm_tensor *W(weight *w) { return w ? &w->t : NULL; }

/* Downloads both and compares; `what` carries every parameter of the case. */
static void compare_pair(const char *what, pair *y, bool exact) {
    checks++;
    float *gv = malloc((size_t)y->n * sizeof *gv), *gc = malloc((size_t)y->n * sizeof *gc);
    ldm_status st = vk->ops->download(vk, y->v, gv);
    if (st) {
        FAILF("%s: download: %s", what, ldm_last_error());
        free(gv);
        free(gc);
        return;
    }
    cpu->ops->download(cpu, y->c, gc);
    double maxd = 0, ratio = 0, maxref = 0;
    int64_t worst = 0, bad = 0;
    for (int64_t i = 0; i < y->n; i++) {
        double d = fabs((double)gv[i] - (double)gc[i]);
        double lim = exact ? 0.0 : ATOL + RTOL * fabs((double)gc[i]);
        if (!(d <= lim) || !isfinite(gv[i])) bad++;
        if (d > maxd || !isfinite(d)) {
            maxd = isfinite(d) ? d : INFINITY;
            worst = i;
        }
        if (lim > 0 && d / lim > ratio) ratio = d / lim;
        if (fabs(gc[i]) > maxref) maxref = fabs(gc[i]);
    }
    if (!exact && ratio > worst_ratio) worst_ratio = ratio;
    if (bad)
        FAILF("%s: %lld of %lld elements off (max|d| %.3g at %lld: vulkan %.9g cpu %.9g; normalised max|d|/max|ref| "
              "%.3g)",
              what, (long long)bad, (long long)y->n, maxd, (long long)worst, (double)gv[worst], (double)gc[worst],
              maxref > 0 ? maxd / maxref : maxd);
    free(gv);
    free(gc);
}

#define RUN2(what, call_c, call_v)                                                                           \
    do {                                                                                                     \
        ldm_status sc_ = (call_c);                                                                           \
        if (sc_) FAILF("%s: cpu: %s", what, ldm_last_error());                                               \
        ldm_status sv_ = (call_v);                                                                           \
        if (sv_) FAILF("%s: vulkan -> %d: %s", what, (int)sv_, ldm_last_error());                            \
    } while (0)

static const char *dtn(ldm_dtype dt) { return ldm_dtype_name(dt); }

/* ---- cases ---- */

static void test_elementwise(void) {
    char what[256];
    int64_t shapes[][4] = {{2, 3, 5, 7}, {1, 64, 16, 16}, {3, 1, 1, 1}};
    for (int s = 0; s < 3; s++) {
        int64_t *sh = shapes[s];
        for (int op = 0; op < 3; op++) {
            pair x = pair_rand(4, sh[0], sh[1], sh[2], sh[3], -12.0f, 12.0f), y = pair_new(4, sh[0], sh[1], sh[2], sh[3]);
            snprintf(what, sizeof what, "unary op %d x [%lld,%lld,%lld,%lld] in [-12,12]", op, (long long)sh[0],
                     (long long)sh[1], (long long)sh[2], (long long)sh[3]);
            RUN2(what, cpu->ops->unary(cpu, (ldm_unary_op)op, x.c, y.c), vk->ops->unary(vk, (ldm_unary_op)op, x.v, y.v));
            compare_pair(what, &y, false);
            /* in place */
            snprintf(what, sizeof what, "unary op %d in place, x [%lld,%lld,%lld,%lld]", op, (long long)sh[0],
                     (long long)sh[1], (long long)sh[2], (long long)sh[3]);
            RUN2(what, cpu->ops->unary(cpu, (ldm_unary_op)op, x.c, x.c), vk->ops->unary(vk, (ldm_unary_op)op, x.v, x.v));
            compare_pair(what, &x, false);
            pair_free(&x);
            pair_free(&y);
        }
        pair x = pair_rand(4, sh[0], sh[1], sh[2], sh[3], -3.0f, 3.0f), y = pair_new(4, sh[0], sh[1], sh[2], sh[3]);
        snprintf(what, sizeof what, "scale 0.18215 x [%lld,%lld,%lld,%lld]", (long long)sh[0], (long long)sh[1],
                 (long long)sh[2], (long long)sh[3]);
        RUN2(what, cpu->ops->scale(cpu, x.c, 0.18215f, y.c), vk->ops->scale(vk, x.v, 0.18215f, y.v));
        compare_pair(what, &y, false);
        RUN2(what, cpu->ops->scale(cpu, x.c, -7.5f, x.c), vk->ops->scale(vk, x.v, -7.5f, x.v));
        compare_pair("scale -7.5 in place", &x, false);
        /* add: same size, broadcast of the trailing block, scalar, weight operand, in place */
        pair b = pair_rand(4, sh[0], sh[1], sh[2], sh[3], -3.0f, 3.0f);
        snprintf(what, sizeof what, "add same shape [%lld,%lld,%lld,%lld]", (long long)sh[0], (long long)sh[1],
                 (long long)sh[2], (long long)sh[3]);
        RUN2(what, cpu->ops->add(cpu, x.c, b.c, y.c), vk->ops->add(vk, x.v, b.v, y.v));
        compare_pair(what, &y, false);
        RUN2(what, cpu->ops->add(cpu, x.c, b.c, x.c), vk->ops->add(vk, x.v, b.v, x.v));
        compare_pair("add in place (y == a)", &x, false);
        pair_free(&b);
        pair bb = pair_rand(3, sh[1], sh[2], sh[3], 1, -3.0f, 3.0f);
        RUN2(what, cpu->ops->add(cpu, x.c, bb.c, y.c), vk->ops->add(vk, x.v, bb.v, y.v));
        snprintf(what, sizeof what, "add broadcast b [%lld,%lld,%lld] over a [%lld,...]", (long long)sh[1],
                 (long long)sh[2], (long long)sh[3], (long long)sh[0]);
        compare_pair(what, &y, false);
        pair_free(&bb);
        for (int dt = 0; dt < 3; dt++) {
            weight *wb = wt_rand((ldm_dtype)dt, 1 + dt, 1, sh[3], 0, 0, 0, -2.0f, 2.0f);
            RUN2(what, cpu->ops->add(cpu, x.c, W(wb), y.c), vk->ops->add(vk, x.v, W(wb), y.v));
            snprintf(what, sizeof what, "add %s weight b [%lld] over a [%lld,%lld,%lld,%lld]", dtn((ldm_dtype)dt),
                     (long long)sh[3], (long long)sh[0], (long long)sh[1], (long long)sh[2], (long long)sh[3]);
            compare_pair(what, &y, false);
            wt_free(wb);
        }
        /* add_per_channel */
        pair pc = pair_rand(2, sh[0], sh[1], 1, 1, -3.0f, 3.0f);
        snprintf(what, sizeof what, "add_per_channel x [%lld,%lld,%lld,%lld] b [%lld,%lld]", (long long)sh[0],
                 (long long)sh[1], (long long)sh[2], (long long)sh[3], (long long)sh[0], (long long)sh[1]);
        RUN2(what, cpu->ops->add_per_channel(cpu, x.c, pc.c, y.c), vk->ops->add_per_channel(vk, x.v, pc.v, y.v));
        compare_pair(what, &y, false);
        RUN2(what, cpu->ops->add_per_channel(cpu, x.c, pc.c, x.c), vk->ops->add_per_channel(vk, x.v, pc.v, x.v));
        compare_pair("add_per_channel in place", &x, false);
        pair_free(&pc);
        pair_free(&x);
        pair_free(&y);
    }
    /* geglu */
    int64_t gs[][3] = {{2, 16, 64}, {1, 77, 40}, {3, 5, 2}};
    for (int s = 0; s < 3; s++) {
        pair x = pair_rand(3, gs[s][0], gs[s][1], 2 * gs[s][2], 1, -6.0f, 6.0f);
        pair y = pair_new(3, gs[s][0], gs[s][1], gs[s][2], 1);
        snprintf(what, sizeof what, "geglu x [%lld,%lld,%lld]", (long long)gs[s][0], (long long)gs[s][1],
                 (long long)(2 * gs[s][2]));
        RUN2(what, cpu->ops->geglu(cpu, x.c, y.c), vk->ops->geglu(vk, x.v, y.v));
        compare_pair(what, &y, false);
        pair_free(&x);
        pair_free(&y);
    }
}

static void test_movement(void) {
    char what[256];
    int64_t shapes[][4] = {{2, 3, 5, 7}, {1, 64, 8, 8}, {2, 32, 1, 3}};
    for (int s = 0; s < 3; s++) {
        int64_t *sh = shapes[s];
        pair x = pair_rand(4, sh[0], sh[1], sh[2], sh[3], -5.0f, 5.0f);
        pair u = pair_new(4, sh[0], sh[1], 2 * sh[2], 2 * sh[3]);
        snprintf(what, sizeof what, "upsample_nearest2x x [%lld,%lld,%lld,%lld]", (long long)sh[0], (long long)sh[1],
                 (long long)sh[2], (long long)sh[3]);
        RUN2(what, cpu->ops->upsample_nearest2x(cpu, x.c, u.c), vk->ops->upsample_nearest2x(vk, x.v, u.v));
        compare_pair(what, &u, true);
        pair b = pair_rand(4, sh[0], sh[1] + 5, sh[2], sh[3], -5.0f, 5.0f);
        pair c = pair_new(4, sh[0], 2 * sh[1] + 5, sh[2], sh[3]);
        snprintf(what, sizeof what, "concat_channels [%lld,%lld,...] + [.., %lld, ...]", (long long)sh[0],
                 (long long)sh[1], (long long)(sh[1] + 5));
        RUN2(what, cpu->ops->concat_channels(cpu, x.c, b.c, c.c), vk->ops->concat_channels(vk, x.v, b.v, c.v));
        compare_pair(what, &c, true);
        pair t = pair_new(3, sh[0], sh[2] * sh[3], sh[1], 1);
        snprintf(what, sizeof what, "nchw_to_nlc x [%lld,%lld,%lld,%lld]", (long long)sh[0], (long long)sh[1],
                 (long long)sh[2], (long long)sh[3]);
        RUN2(what, cpu->ops->nchw_to_nlc(cpu, x.c, t.c), vk->ops->nchw_to_nlc(vk, x.v, t.v));
        compare_pair(what, &t, true);
        pair back = pair_new(4, sh[0], sh[1], sh[2], sh[3]);
        snprintf(what, sizeof what, "nlc_to_nchw back to [%lld,%lld,%lld,%lld]", (long long)sh[0], (long long)sh[1],
                 (long long)sh[2], (long long)sh[3]);
        RUN2(what, cpu->ops->nlc_to_nchw(cpu, t.c, back.c), vk->ops->nlc_to_nchw(vk, t.v, back.v));
        compare_pair(what, &back, true);
        pair_free(&x);
        pair_free(&u);
        pair_free(&b);
        pair_free(&c);
        pair_free(&t);
        pair_free(&back);
    }
    /* concat of 3-D tensors */
    pair a = pair_rand(3, 2, 3, 10, 1, -1, 1), b = pair_rand(3, 2, 4, 10, 1, -1, 1), c = pair_new(3, 2, 7, 10, 1);
    RUN2("concat 3-D", cpu->ops->concat_channels(cpu, a.c, b.c, c.c), vk->ops->concat_channels(vk, a.v, b.v, c.v));
    compare_pair("concat_channels [2,3,10] + [2,4,10]", &c, true);
    pair_free(&a);
    pair_free(&b);
    pair_free(&c);
    /* embedding */
    for (int dt = 0; dt < 3; dt++) {
        weight *tab = wt_rand((ldm_dtype)dt, 3, 2, 50, 24, 0, 0, -1.0f, 1.0f);
        int32_t ids[9] = {0, 49, 7, 7, 13, 1, 48, 25, 0};
        pair y = pair_new(2, 9, 24, 1, 1);
        snprintf(what, sizeof what, "embedding %s table [50,24], 9 ids", dtn((ldm_dtype)dt));
        RUN2(what, cpu->ops->embedding(cpu, W(tab), ids, 9, y.c), vk->ops->embedding(vk, W(tab), ids, 9, y.v));
        compare_pair(what, &y, true);
        int32_t badid = 50;
        if (vk->ops->embedding(vk, W(tab), &badid, 1, y.v) != LDM_ERR_INVALID_ARG)
            FAILF("embedding with id 50 of 50 did not return LDM_ERR_INVALID_ARG");
        pair_free(&y);
        wt_free(tab);
    }
}

static void linear_case(int nd, int64_t a, int64_t b, int64_t c, int64_t out, ldm_dtype dt, bool bias) {
    char what[256];
    int64_t in = nd == 2 ? b : c;
    snprintf(what, sizeof what, "linear x [%lld,%lld%s%lld] w [%lld,%lld] %s bias %s", (long long)a, (long long)b,
             nd == 3 ? "," : "", nd == 3 ? (long long)c : 0LL, (long long)out, (long long)in, dtn(dt), bias ? "yes" : "no");
    if (nd == 2) snprintf(what, sizeof what, "linear x [%lld,%lld] w [%lld,%lld] %s bias %s", (long long)a, (long long)b,
                          (long long)out, (long long)in, dtn(dt), bias ? "yes" : "no");
    pair x = pair_rand(nd, a, b, c, 1, -1.0f, 1.0f);
    weight *w = wt_rand(dt, 2, 2, out, in, 0, 0, -0.5f, 0.5f);
    weight *bw = bias ? wt_rand(dt, 1, 1, out, 0, 0, 0, -1.0f, 1.0f) : NULL;
    pair y = nd == 2 ? pair_new(2, a, out, 1, 1) : pair_new(3, a, b, out, 1);
    RUN2(what, cpu->ops->linear(cpu, x.c, W(w), W(bw), y.c), vk->ops->linear(vk, x.v, W(w), W(bw), y.v));
    compare_pair(what, &y, false);
    pair_free(&x);
    pair_free(&y);
    wt_free(w);
    wt_free(bw);
}

static void test_linear(void) {
    linear_case(2, 2, 32, 1, 128, LDM_DT_F32, true);   /* time embedding */
    linear_case(3, 2, 77, 64, 192, LDM_DT_F32, true);  /* CLIP-like */
    linear_case(3, 1, 130, 300, 70, LDM_DT_F16, false); /* nothing a multiple of the tiles */
    linear_case(2, 65, 17, 1, 65, LDM_DT_BF16, true);
    linear_case(3, 2, 64, 320, 40, LDM_DT_F32, false);
    linear_case(2, 1, 1, 1, 1, LDM_DT_F32, true);
}

static void conv_case(int64_t n, int64_t cin, int64_t cout, int64_t h, int64_t wd, int64_t kh, int64_t kw, int32_t s,
                      int32_t pt, int32_t pl, int32_t pb, int32_t pr, ldm_dtype dt, bool bias) {
    char what[256];
    snprintf(what, sizeof what,
             "conv2d x [%lld,%lld,%lld,%lld] w [%lld,%lld,%lld,%lld] %s stride %d pad t%d l%d b%d r%d bias %s",
             (long long)n, (long long)cin, (long long)h, (long long)wd, (long long)cout, (long long)cin, (long long)kh,
             (long long)kw, dtn(dt), s, pt, pl, pb, pr, bias ? "yes" : "no");
    ldm_conv2d_params p = {s, pt, pl, pb, pr};
    int64_t oh = (h + pt + pb - kh) / s + 1, ow = (wd + pl + pr - kw) / s + 1;
    pair x = pair_rand(4, n, cin, h, wd, -1.0f, 1.0f);
    weight *w = wt_rand(dt, 1, 4, cout, cin, kh, kw, -0.3f, 0.3f);
    weight *bw = bias ? wt_rand(dt, 3, 1, cout, 0, 0, 0, -1.0f, 1.0f) : NULL;
    pair y = pair_new(4, n, cout, oh, ow);
    RUN2(what, cpu->ops->conv2d(cpu, x.c, W(w), W(bw), &p, y.c), vk->ops->conv2d(vk, x.v, W(w), W(bw), &p, y.v));
    compare_pair(what, &y, false);
    pair_free(&x);
    pair_free(&y);
    wt_free(w);
    wt_free(bw);
}

static void test_conv(void) {
    conv_case(1, 4, 32, 8, 8, 3, 3, 1, 1, 1, 1, 1, LDM_DT_F32, true);   /* UNet conv_in */
    conv_case(2, 32, 64, 8, 6, 3, 3, 1, 1, 1, 1, 1, LDM_DT_F16, true);  /* batch 2, non-square */
    conv_case(1, 32, 32, 8, 8, 3, 3, 2, 1, 1, 1, 1, LDM_DT_F32, true);  /* UNet downsample */
    conv_case(1, 16, 16, 9, 7, 3, 3, 2, 0, 0, 1, 1, LDM_DT_BF16, true); /* VAE downsample: pad (0,1,0,1) */
    conv_case(2, 64, 70, 5, 5, 1, 1, 1, 0, 0, 0, 0, LDM_DT_F32, false); /* 1x1, Cout not a tile multiple */
    conv_case(1, 3, 8, 16, 16, 3, 3, 1, 1, 1, 1, 1, LDM_DT_F32, true);  /* VAE conv_in (3 channels) */
    conv_case(1, 5, 3, 4, 11, 2, 5, 3, 0, 2, 1, 0, LDM_DT_F32, true);   /* odd kernel, stride 3 */
}

static void gn_case(int nd, int64_t n, int64_t c, int64_t h, int64_t w, int32_t groups, float eps, int silu,
                    ldm_dtype dt, int affine, float offset, bool inplace) {
    char what[256];
    snprintf(what, sizeof what, "group_norm x [%lld,%lld,%lld,%lld] (%d-D) groups %d eps %g silu %d %s affine %d "
             "offset %g in place %d",
             (long long)n, (long long)c, (long long)h, (long long)w, nd, groups, (double)eps, silu, dtn(dt), affine,
             (double)offset, inplace);
    pair x = pair_rand(nd, n, c, h, w, offset - 2.0f, offset + 2.0f);
    weight *g = affine ? wt_rand(dt, 1, 1, c, 0, 0, 0, 0.5f, 1.5f) : NULL;
    weight *b = affine ? wt_rand(dt, 2, 1, c, 0, 0, 0, -0.5f, 0.5f) : NULL;
    pair y = inplace ? x : pair_new(nd, n, c, h, w);
    RUN2(what, cpu->ops->group_norm(cpu, x.c, W(g), W(b), groups, eps, silu, y.c),
         vk->ops->group_norm(vk, x.v, W(g), W(b), groups, eps, silu, y.v));
    compare_pair(what, &y, false);
    pair_free(&x);
    if (!inplace) pair_free(&y);
    wt_free(g);
    wt_free(b);
}

static void ln_case(int nd, int64_t a, int64_t b, int64_t c, ldm_dtype dt, int affine, float offset, bool inplace) {
    char what[256];
    snprintf(what, sizeof what, "layer_norm x [%lld,%lld,%lld] (%d-D) %s affine %d offset %g in place %d", (long long)a,
             (long long)b, (long long)c, nd, dtn(dt), affine, (double)offset, inplace);
    int64_t C = nd == 2 ? b : c;
    pair x = pair_rand(nd, a, b, c, 1, offset - 1.0f, offset + 1.0f);
    weight *g = affine ? wt_rand(dt, 1, 1, C, 0, 0, 0, 0.5f, 1.5f) : NULL;
    weight *bb = affine ? wt_rand(dt, 2, 1, C, 0, 0, 0, -0.5f, 0.5f) : NULL;
    pair y = inplace ? x : pair_new(nd, a, b, c, 1);
    RUN2(what, cpu->ops->layer_norm(cpu, x.c, W(g), W(bb), 1e-5f, y.c), vk->ops->layer_norm(vk, x.v, W(g), W(bb), 1e-5f, y.v));
    compare_pair(what, &y, false);
    pair_free(&x);
    if (!inplace) pair_free(&y);
    wt_free(g);
    wt_free(bb);
}

static void test_norms(void) {
    gn_case(4, 2, 64, 8, 8, 32, 1e-5f, 1, LDM_DT_F32, 1, 0.0f, false);
    gn_case(4, 1, 64, 5, 7, 32, 1e-6f, 0, LDM_DT_F16, 1, 3.0f, false);
    gn_case(3, 2, 32, 10, 1, 8, 1e-5f, 1, LDM_DT_BF16, 1, -1.0f, false);
    gn_case(4, 1, 32, 16, 16, 32, 1e-6f, 0, LDM_DT_F32, 0, 0.0f, false);
    gn_case(4, 2, 32, 4, 4, 32, 1e-5f, 1, LDM_DT_F32, 1, 0.5f, true);
    gn_case(4, 1, 128, 32, 32, 32, 1e-6f, 1, LDM_DT_F32, 1, 0.0f, false); /* 4096 elements per group */
    ln_case(3, 2, 77, 64, LDM_DT_F32, 1, 0.0f, false);
    ln_case(2, 5, 320, 1, LDM_DT_F16, 1, 10.0f, false);
    ln_case(3, 1, 3, 1280, LDM_DT_BF16, 0, -2.0f, false);
    ln_case(3, 2, 9, 33, LDM_DT_F32, 1, 0.0f, true);
}

static void attn_case(int64_t B, int64_t lq, int64_t lk, int64_t H, int64_t D, int causal, float range) {
    char what[256];
    snprintf(what, sizeof what, "attention B %lld Lq %lld Lk %lld heads %lld D %lld causal %d inputs in [-%g,%g]",
             (long long)B, (long long)lq, (long long)lk, (long long)H, (long long)D, causal, (double)range, (double)range);
    pair q = pair_rand(3, B, lq, H * D, 1, -range, range), k = pair_rand(3, B, lk, H * D, 1, -range, range);
    pair v = pair_rand(3, B, lk, H * D, 1, -1.0f, 1.0f), y = pair_new(3, B, lq, H * D, 1);
    float scale = 1.0f / sqrtf((float)D);
    RUN2(what, cpu->ops->attention(cpu, q.c, k.c, v.c, (int32_t)H, scale, causal, y.c),
         vk->ops->attention(vk, q.v, k.v, v.v, (int32_t)H, scale, causal, y.v));
    compare_pair(what, &y, false);
    pair_free(&q);
    pair_free(&k);
    pair_free(&v);
    pair_free(&y);
}

static void test_attention(void) {
    attn_case(2, 64, 64, 2, 32, 0, 1.0f);   /* UNet self-attention */
    attn_case(2, 64, 77, 2, 32, 0, 1.0f);   /* cross-attention, Lk not a tile multiple */
    attn_case(1, 77, 77, 4, 16, 1, 2.0f);   /* CLIP causal */
    attn_case(2, 33, 33, 3, 40, 1, 1.0f);   /* causal, odd lengths, D 40 */
    attn_case(1, 100, 50, 8, 40, 0, 1.0f);  /* SD 1.x head width */
    attn_case(1, 17, 19, 2, 80, 0, 1.0f);
    attn_case(1, 9, 9, 1, 160, 0, 1.0f);
    attn_case(1, 64, 64, 1, 128, 0, 0.5f);  /* VAE mid-block: one head over the channels */
    attn_case(1, 20, 20, 1, 512, 0, 0.2f);  /* SD VAE head width */
    attn_case(1, 7, 5, 1, 600, 0, 0.2f);    /* wider than 512: more registers per invocation */
    attn_case(1, 40, 40, 1, 8, 0, 8.0f);    /* large logits: the online max matters */
}

/* Errors come back as LDM_ERR_INVALID_ARG with a message, never a crash. */
static void test_errors(void) {
    pair x = pair_rand(4, 1, 4, 4, 4, -1, 1), y = pair_new(4, 1, 4, 4, 5), z = pair_new(3, 2, 2, 2, 1);
    weight *w = wt_rand(LDM_DT_F32, 0, 2, 3, 5, 0, 0, -1, 1);
    struct {
        const char *what;
        ldm_status st;
    } cases[] = {
        {"unary shape mismatch", vk->ops->unary(vk, LDM_UNARY_SILU, x.v, y.v)},
        {"unary unknown op", vk->ops->unary(vk, (ldm_unary_op)9, x.v, x.v)},
        {"add b does not divide a", vk->ops->add(vk, x.v, y.v, x.v)},
        {"linear w mismatch", vk->ops->linear(vk, x.v, W(w), NULL, y.v)},
        {"group_norm groups", vk->ops->group_norm(vk, x.v, NULL, NULL, 3, 1e-5f, 0, x.v)},
        {"geglu odd width", vk->ops->geglu(vk, x.v, y.v)},
        {"attention heads", vk->ops->attention(vk, z.v, z.v, z.v, 3, 1.0f, 0, z.v)},
        {"concat in place", vk->ops->concat_channels(vk, x.v, x.v, x.v)},
        {"upsample shape", vk->ops->upsample_nearest2x(vk, x.v, y.v)},
        {"nchw_to_nlc shape", vk->ops->nchw_to_nlc(vk, x.v, y.v)},
        {"conv2d cin", vk->ops->conv2d(vk, x.v, W(w), NULL, &(ldm_conv2d_params){1, 0, 0, 0, 0}, y.v)},
        {"a CPU tensor given to Vulkan", vk->ops->scale(vk, x.c, 1.0f, x.v)},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        checks++;
        if (cases[i].st != LDM_ERR_INVALID_ARG && cases[i].st != LDM_ERR_UNSUPPORTED)
            FAILF("%s: got %d, expected LDM_ERR_INVALID_ARG", cases[i].what, (int)cases[i].st);
    }
    pair_free(&x);
    pair_free(&y);
    pair_free(&z);
    wt_free(w);
}

/* The same weight address with new contents is uploaded again; the same op twice is
 * bit-identical. */
static void test_cache_and_determinism(void) {
    weight *w = wt_rand(LDM_DT_F32, 0, 2, 48, 40, 0, 0, -1, 1);
    pair x = pair_rand(2, 7, 40, 1, 1, -1, 1), y = pair_new(2, 7, 48, 1, 1);
    RUN2("linear (cache 1)", cpu->ops->linear(cpu, x.c, W(w), NULL, y.c), vk->ops->linear(vk, x.v, W(w), NULL, y.v));
    compare_pair("linear before the weight changes", &y, false);
    for (int i = 0; i < 48 * 40; i++) ((float *)w->t.data)[i] = frand(-2, 2);
    RUN2("linear (cache 2)", cpu->ops->linear(cpu, x.c, W(w), NULL, y.c), vk->ops->linear(vk, x.v, W(w), NULL, y.v));
    compare_pair("linear after the weight at the same address changed", &y, false);
    float *a = malloc(7 * 48 * sizeof *a), *b = malloc(7 * 48 * sizeof *b);
    pair y2 = pair_new(2, 7, 48, 1, 1);
    vk->ops->linear(vk, x.v, W(w), NULL, y2.v);
    vk->ops->download(vk, y.v, a);
    vk->ops->download(vk, y2.v, b);
    checks++;
    if (memcmp(a, b, 7 * 48 * sizeof *a) != 0) FAILF("the same linear twice differs on Vulkan");
    free(a);
    free(b);
    pair_free(&x);
    pair_free(&y);
    pair_free(&y2);
    wt_free(w);
}

/* A second device context with a 64 KiB binding window and a 6 MiB budget: the elementwise ops
 * and the per-image conv split run in windows; an op that cannot split fails with
 * LDM_ERR_BACKEND; cached weights are evicted to stay in the budget; a tensor over the budget
 * gives LDM_ERR_NO_MEMORY. */
static void test_limits(void) {
    ldm_vk_options o;
    ldm_vk_options_init(&o);
    o.validation = -1;
    o.max_binding_bytes = 64 << 10;
    o.budget_bytes = 6 << 20;
    ldm_backend *small = NULL;
    if (ldm_vk_backend_create(&o, 1, &small)) {
        FAILF("second Vulkan backend: %s", ldm_last_error());
        return;
    }
    ldm_backend *saved = vk;
    vk = small;
    char what[128];
    pair x = pair_rand(4, 2, 16, 32, 33, -4, 4), y = pair_new(4, 2, 16, 32, 33); /* 132 KiB */
    for (int op = 0; op < 3; op++) {
        snprintf(what, sizeof what, "windowed unary op %d [2,16,32,33] with 64 KiB bindings", op);
        RUN2(what, cpu->ops->unary(cpu, (ldm_unary_op)op, x.c, y.c), vk->ops->unary(vk, (ldm_unary_op)op, x.v, y.v));
        compare_pair(what, &y, false);
    }
    pair b = pair_rand(4, 2, 16, 32, 33, -4, 4);
    RUN2("windowed add", cpu->ops->add(cpu, x.c, b.c, y.c), vk->ops->add(vk, x.v, b.v, y.v));
    compare_pair("windowed add [2,16,32,33]", &y, false);
    pair bc = pair_rand(2, 2, 16, 1, 1, -4, 4);
    RUN2("windowed add_per_channel", cpu->ops->add_per_channel(cpu, x.c, bc.c, y.c),
         vk->ops->add_per_channel(vk, x.v, bc.v, y.v));
    compare_pair("windowed add_per_channel [2,16,32,33]", &y, false);
    pair bs = pair_rand(1, 33, 1, 1, 1, -4, 4);
    RUN2("windowed broadcast add", cpu->ops->add(cpu, x.c, bs.c, y.c), vk->ops->add(vk, x.v, bs.v, y.v));
    compare_pair("windowed add of a [33] row", &y, false);
    pair gx = pair_rand(3, 4, 50, 200, 1, -4, 4), gy = pair_new(3, 4, 50, 100, 1);
    RUN2("windowed geglu", cpu->ops->geglu(cpu, gx.c, gy.c), vk->ops->geglu(vk, gx.v, gy.v));
    compare_pair("windowed geglu [4,50,200]", &gy, false);
    /* conv: the batch of 2 does not fit one binding, each image does */
    pair cx = pair_rand(4, 3, 8, 32, 32, -1, 1), cy = pair_new(4, 3, 8, 32, 32);
    weight *cw = wt_rand(LDM_DT_F32, 0, 4, 8, 8, 3, 3, -0.3f, 0.3f);
    ldm_conv2d_params p = {1, 1, 1, 1, 1};
    RUN2("conv split per image", cpu->ops->conv2d(cpu, cx.c, W(cw), NULL, &p, cy.c),
         vk->ops->conv2d(vk, cx.v, W(cw), NULL, &p, cy.v));
    compare_pair("conv2d x [3,8,32,32] split per image (64 KiB bindings)", &cy, false);
    /* attention cannot split: an honest LDM_ERR_BACKEND */
    pair q = pair_rand(3, 1, 200, 128, 1, -1, 1), ay = pair_new(3, 1, 200, 128, 1);
    checks++;
    ldm_status st = vk->ops->attention(vk, q.v, q.v, q.v, 2, 0.1f, 0, ay.v);
    if (st != LDM_ERR_BACKEND) FAILF("attention over the binding range: got %d, expected LDM_ERR_BACKEND", (int)st);
    /* budget: weights are evicted as new ones arrive; every result stays right */
    for (int i = 0; i < 12; i++) {
        weight *lw = wt_rand(LDM_DT_F16, 0, 2, 256, 512, 0, 0, -0.1f, 0.1f); /* 512 KiB on the device each */
        pair lx = pair_rand(2, 4, 512, 1, 1, -1, 1), ly = pair_new(2, 4, 256, 1, 1);
        snprintf(what, sizeof what, "linear %d with a 6 MiB budget (weights evicted)", i);
        RUN2(what, cpu->ops->linear(cpu, lx.c, W(lw), NULL, ly.c), vk->ops->linear(vk, lx.v, W(lw), NULL, ly.v));
        compare_pair(what, &ly, false);
        pair_free(&lx);
        pair_free(&ly);
        wt_free(lw);
    }
    checks++;
    if (ldm_vk_pool_bytes(vk) > ldm_vk_budget(vk))
        FAILF("pools hold %llu bytes over the %llu budget", (unsigned long long)ldm_vk_pool_bytes(vk),
              (unsigned long long)ldm_vk_budget(vk));
    checks++;
    int64_t big[2] = {1024, 2048}; /* 8 MiB */
    ldm_tensor *t = vk->ops->new_tensor(vk, 2, big);
    if (t) {
        FAILF("an 8 MiB tensor was allocated within a 6 MiB budget");
        vk->ops->free_tensor(vk, t);
    }
    pair_free(&x);
    pair_free(&y);
    pair_free(&b);
    pair_free(&bc);
    pair_free(&bs);
    pair_free(&gx);
    pair_free(&gy);
    pair_free(&cx);
    pair_free(&cy);
    pair_free(&q);
    pair_free(&ay);
    wt_free(cw);
    checks++;
    if (ldm_vk_validation_errors(vk)) FAILF("validation errors on the limited backend");
    vk = saved;
    small->ops->destroy(small);
}

/* The half-precision rule (CONFORM.md): max|d| <= rel * max|ref| over the tensor. */
static void compare_pair_rel(const char *what, pair *y, double rel) {
    checks++;
    float *gv = malloc((size_t)y->n * sizeof *gv), *gc = malloc((size_t)y->n * sizeof *gc);
    if (vk->ops->download(vk, y->v, gv) || cpu->ops->download(cpu, y->c, gc)) {
        FAILF("%s: download: %s", what, ldm_last_error());
    } else {
        double maxd = 0, maxref = 0;
        bool finite = true;
        for (int64_t i = 0; i < y->n; i++) {
            finite = finite && isfinite(gv[i]);
            maxd = fmax(maxd, fabs((double)gv[i] - (double)gc[i]));
            maxref = fmax(maxref, fabs((double)gc[i]));
        }
        if (!finite || !(maxd <= rel * maxref))
            FAILF("%s: max|d| %.3g > %.0e * max|ref| %.3g", what, maxd, rel, maxref);
        else
            printf("  %s: max|d|/max|ref| %.2e\n", what, maxd / maxref);
    }
    free(gv);
    free(gc);
}

/* fp16 weight storage (ldm_vk_options.fp16_weights): linear and conv2d weights are stored as
 * float16 where the device has storageBuffer16BitAccess. F16 files are then exact (the fp32
 * rule holds); F32/BF16 weights are rounded and held to the half-precision rule; each weight
 * takes 2 bytes per element on the device; a weight with a value beyond the half range stays
 * float32; a weight also used by a float32 op (add) gets its own float32 copy. 64 KiB bindings
 * force the sliced linear path over float16 rows. */
static void test_fp16_weights(void) {
    ldm_vk_options o;
    ldm_vk_options_init(&o);
    o.validation = -1;
    o.fp16_weights = true;
    o.max_binding_bytes = 64 << 10;
    ldm_backend *h = NULL;
    if (ldm_vk_backend_create(&o, 1, &h)) {
        FAILF("fp16 Vulkan backend: %s", ldm_last_error());
        return;
    }
    if (!ldm_vk_fp16_weights(h)) {
        printf("SKIP: fp16 weights (the device lacks storageBuffer16BitAccess)\n");
        h->ops->destroy(h);
        return;
    }
    ldm_backend *saved = vk;
    vk = h;
    char what[160];
    const ldm_dtype dts[3] = {LDM_DT_F32, LDM_DT_F16, LDM_DT_BF16};
    for (int k = 0; k < 3; k++) {
        ldm_dtype dt = dts[k];
        /* linear: CLIP-like (activations within the 64 KiB bindings), then a [256, 512] weight
         * (256 KiB as halves: bound in four 64 KiB slices) */
        const int64_t shapes[2][3] = {{20, 64, 192}, {5, 512, 256}};
        for (int s = 0; s < 2; s++) {
            int64_t l = shapes[s][0], in = shapes[s][1], out = shapes[s][2];
            pair x = pair_rand(3, 2, l, in, 1, -1.0f, 1.0f), y = pair_new(3, 2, l, out, 1);
            weight *w = wt_rand(dt, 2, 2, out, in, 0, 0, -0.5f, 0.5f);
            weight *bw = wt_rand(dt, 1, 1, out, 0, 0, 0, -1.0f, 1.0f);
            uint64_t before = ldm_vk_weight_bytes(vk);
            snprintf(what, sizeof what, "fp16 weights: linear x [2,%lld,%lld] w [%lld,%lld] %s", (long long)l,
                     (long long)in, (long long)out, (long long)in, dtn(dt));
            RUN2(what, cpu->ops->linear(cpu, x.c, W(w), W(bw), y.c), vk->ops->linear(vk, x.v, W(w), W(bw), y.v));
            if (dt == LDM_DT_F16) compare_pair(what, &y, false);
            else compare_pair_rel(what, &y, 1e-2);
            checks++;
            uint64_t got = ldm_vk_weight_bytes(vk) - before, want = (uint64_t)(out * in) * 2 + (uint64_t)out * 4;
            if (got != want)
                FAILF("%s: %llu weight bytes on the device, expected %llu (halves + a float32 bias)", what,
                      (unsigned long long)got, (unsigned long long)want);
            pair_free(&x);
            pair_free(&y);
            wt_free(w);
            wt_free(bw);
        }
        pair x = pair_rand(4, 2, 32, 8, 6, -1.0f, 1.0f), y = pair_new(4, 2, 64, 8, 6);
        weight *w = wt_rand(dt, 1, 4, 64, 32, 3, 3, -0.3f, 0.3f);
        weight *bw = wt_rand(dt, 3, 1, 64, 0, 0, 0, -1.0f, 1.0f);
        ldm_conv2d_params p = {1, 1, 1, 1, 1};
        snprintf(what, sizeof what, "fp16 weights: conv2d x [2,32,8,6] w [64,32,3,3] %s", dtn(dt));
        RUN2(what, cpu->ops->conv2d(cpu, x.c, W(w), W(bw), &p, y.c), vk->ops->conv2d(vk, x.v, W(w), W(bw), &p, y.v));
        if (dt == LDM_DT_F16) compare_pair(what, &y, false);
        else compare_pair_rel(what, &y, 1e-2);
        pair_free(&x);
        pair_free(&y);
        wt_free(w);
        wt_free(bw);
    }
    /* a value beyond the half range: the weight stays float32 (and exact) */
    {
        pair x = pair_rand(2, 3, 40, 1, 1, -1.0f, 1.0f), y = pair_new(2, 3, 24, 1, 1);
        weight *w = wt_rand(LDM_DT_F32, 0, 2, 24, 40, 0, 0, -0.5f, 0.5f);
        float big = 1e5f;
        memcpy((char *)w->t.data + 4 * 17, &big, 4);
        uint64_t before = ldm_vk_weight_bytes(vk);
        RUN2("fp16 weights: linear with a value of 1e5", cpu->ops->linear(cpu, x.c, W(w), NULL, y.c),
             vk->ops->linear(vk, x.v, W(w), NULL, y.v));
        compare_pair("fp16 weights: linear with a value of 1e5 (kept float32)", &y, false);
        checks++;
        if (ldm_vk_weight_bytes(vk) - before != 24 * 40 * 4)
            FAILF("fp16 weights: a weight beyond the half range took %llu bytes, expected %d",
                  (unsigned long long)(ldm_vk_weight_bytes(vk) - before), 24 * 40 * 4);
        /* once more: found in the cache, nothing uploaded */
        before = ldm_vk_weight_bytes(vk);
        RUN2("fp16 weights: linear again", cpu->ops->linear(cpu, x.c, W(w), NULL, y.c),
             vk->ops->linear(vk, x.v, W(w), NULL, y.v));
        compare_pair("fp16 weights: linear again (cached float32 copy)", &y, false);
        checks++;
        if (ldm_vk_weight_bytes(vk) != before) FAILF("fp16 weights: the kept float32 copy was uploaded again");
        pair_free(&x);
        pair_free(&y);
        wt_free(w);
    }
    /* one weight as a linear weight (float16) and as an add operand (float32), alternately */
    {
        weight *w = wt_rand(LDM_DT_F32, 0, 2, 16, 16, 0, 0, -0.5f, 0.5f);
        pair x = pair_rand(2, 16, 16, 1, 1, -1.0f, 1.0f), y = pair_new(2, 16, 16, 1, 1);
        for (int r = 0; r < 2; r++) {
            RUN2("fp16 weights: shared weight in linear", cpu->ops->linear(cpu, x.c, W(w), NULL, y.c),
                 vk->ops->linear(vk, x.v, W(w), NULL, y.v));
            compare_pair_rel("fp16 weights: shared weight in linear", &y, 1e-2);
            RUN2("fp16 weights: shared weight in add", cpu->ops->add(cpu, x.c, W(w), y.c),
                 vk->ops->add(vk, x.v, W(w), y.v));
            compare_pair("fp16 weights: shared weight in add (float32 copy)", &y, false);
        }
        pair_free(&x);
        pair_free(&y);
        wt_free(w);
    }
    checks++;
    if (ldm_vk_sync(vk) || ldm_vk_validation_errors(vk)) FAILF("validation errors on the fp16 backend");
    vk = saved;
    h->ops->destroy(h);
}

int main(void) {
    ldm_vk_options o;
    ldm_vk_options_init(&o);
    o.validation = -1; /* LDM_VULKAN_VALIDATION: set by meson test (but in sanitizer builds) */
    if (ldm_cpu_backend_create(2, &cpu)) {
        fprintf(stderr, "cpu backend: %s\n", ldm_last_error());
        return 1;
    }
    if (ldm_vk_backend_create(&o, 1, &vk)) {
        fprintf(stderr, "FAIL: no Vulkan backend: %s\n", ldm_last_error());
        return 1;
    }
    const char *val = getenv("LDM_VULKAN_VALIDATION");
    printf("device: %s, validation layer %s\n", ldm_vk_device_name(vk), val && strcmp(val, "0") && val[0] ? "on" : "off");
    clock_t t0 = clock();
    test_elementwise();
    test_movement();
    test_linear();
    test_conv();
    test_norms();
    test_attention();
    test_errors();
    test_cache_and_determinism();
    test_limits();
    test_fp16_weights();
    checks++;
    if (ldm_vk_sync(vk) || ldm_vk_validation_errors(vk))
        FAILF("validation: %d error(s): %s", ldm_vk_validation_errors(vk), ldm_last_error());
    printf("%d checks, %d failures; worst element error %.1f%% of the allowed 1e-4 + 1e-4|ref| (%.1f s CPU)\n", checks,
           failures, 100.0 * worst_ratio, (double)(clock() - t0) / CLOCKS_PER_SEC);
    vk->ops->destroy(vk);
    cpu->ops->destroy(cpu);
    return failures ? 1 : 0;
}
