/* Every op of the CPU backend against a naive double-precision reference on random inputs.
 *
 * Tolerance: |got - ref| <= 1e-4 + 1e-4 * |ref| per element (ref computed in double from the same
 * float inputs and the same rounded F16/BF16 weights). Ops that only move data must match exactly.
 * Also: shape/dtype mismatches must return LDM_ERR_INVALID_ARG (never crash), storage edge cases.
 * The whole suite runs for a 1-thread and a 3-thread backend. */
#include "core/backend.h"
#include "core/common.h"
#include "core/dtype.h"
#include "cpu/cpu_winograd.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ATOL 1e-4
#define RTOL 1e-4

static int failures = 0;

#define CHECK(cond, ...)                                                                                     \
    do {                                                                                                     \
        if (!(cond)) {                                                                                       \
            failures++;                                                                                      \
            fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__);                                             \
            fprintf(stderr, __VA_ARGS__);                                                                    \
            fprintf(stderr, "\n");                                                                           \
        }                                                                                                    \
    } while (0)

#define CHECK_OK(expr)                                                                                       \
    do {                                                                                                     \
        ldm_status st_ = (expr);                                                                             \
        CHECK(st_ == LDM_OK, "%s -> %d (%s)", #expr, (int)st_, ldm_last_error());                            \
    } while (0)

#define CHECK_INVALID(expr)                                                                                  \
    do {                                                                                                     \
        ldm_status st_ = (expr);                                                                             \
        CHECK(st_ == LDM_ERR_INVALID_ARG, "%s -> %d, expected LDM_ERR_INVALID_ARG", #expr, (int)st_);        \
        CHECK(st_ == LDM_OK || strlen(ldm_last_error()) > 0, "%s: no error message", #expr);                 \
    } while (0)

/* ---- random numbers ---- */
static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static double urand(void) { /* [0, 1) */
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (double)(rng_state >> 11) * (1.0 / 9007199254740992.0);
}
static float frand(float lo, float hi) { return (float)(lo + (hi - lo) * urand()); }

/* ---- tensors ---- */
static ldm_backend *be;

static ldm_tensor *act(int nd, int64_t a, int64_t b, int64_t c, int64_t d) {
    int64_t sh[4] = {a, b, c, d};
    ldm_tensor *t = be->ops->new_tensor(be, nd, sh);
    if (!t) {
        fprintf(stderr, "new_tensor failed: %s\n", ldm_last_error());
        exit(1);
    }
    return t;
}

static ldm_tensor *act_rand(int nd, int64_t a, int64_t b, int64_t c, int64_t d, float lo, float hi) {
    ldm_tensor *t = act(nd, a, b, c, d);
    float *p = t->data;
    for (int64_t i = 0; i < ldm_numel(t); i++) p[i] = frand(lo, hi);
    return t;
}

static void fr(ldm_tensor *t) { be->ops->free_tensor(be, t); }

/* A weight tensor of dtype dt whose data sits at byte offset `misalign` into its own allocation
 * (as inside an mmap'ed file). `ref` gets the float value of every (rounded) element. */
typedef struct weight {
    ldm_tensor t;
    void *alloc;
    float *ref;
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
    w->ref = malloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++) {
        float v = frand(lo, hi);
        unsigned char *dst = (unsigned char *)w->t.data + i * es;
        if (dt == LDM_DT_F32) {
            memcpy(dst, &v, 4);
        } else if (dt == LDM_DT_F16) {
            uint16_t h = ldm_f32_to_f16(v);
            memcpy(dst, &h, 2);
            v = ldm_f16_to_f32(h);
        } else { /* BF16 by truncation */
            uint32_t u;
            memcpy(&u, &v, 4);
            uint16_t h = (uint16_t)(u >> 16);
            memcpy(dst, &h, 2);
            v = ldm_bf16_to_f32(h);
        }
        w->ref[i] = v;
    }
    return w;
}

static void wt_free(weight *w) {
    if (!w) return;
    free(w->alloc);
    free(w->ref);
    free(w);
}

/* ---- comparison ---- */
static void compare(const char *what, const float *got, const double *ref, int64_t n) {
    double worst = 0.0;
    int64_t bad = 0, first = -1;
    for (int64_t i = 0; i < n; i++) {
        double d = fabs((double)got[i] - ref[i]);
        double lim = ATOL + RTOL * fabs(ref[i]);
        if (!(d <= lim)) {
            if (first < 0) first = i;
            bad++;
        }
        if (d / lim > worst) worst = d / lim;
    }
    CHECK(bad == 0, "%s: %lld of %lld elements off (first at %lld: got %.8g want %.8g)", what, (long long)bad,
          (long long)n, (long long)first, first >= 0 ? got[first] : 0.0, first >= 0 ? ref[first] : 0.0);
    if (getenv("VERBOSE")) printf("  %-44s max err/tol %.3f\n", what, worst);
}

static void compare_exact(const char *what, const float *got, const float *want, int64_t n) {
    int64_t bad = 0;
    for (int64_t i = 0; i < n; i++) bad += memcmp(&got[i], &want[i], 4) != 0;
    CHECK(bad == 0, "%s: %lld of %lld elements differ", what, (long long)bad, (long long)n);
}

static const char *dtn(ldm_dtype dt) { return ldm_dtype_name(dt); }

/* ------------------------------------------------------------------------------------------ */
/* conv2d                                                                                     */
/* ------------------------------------------------------------------------------------------ */

static void test_conv_case(int64_t n, int64_t cin, int64_t cout, int64_t h, int64_t wd, int64_t kh, int64_t kw,
                           int s, int pt, int pl, int pb, int pr, ldm_dtype dt, size_t misalign, int with_bias) {
    int64_t oh = (h + pt + pb - kh) / s + 1, ow = (wd + pl + pr - kw) / s + 1;
    float sc = 1.0f / sqrtf((float)(cin * kh * kw));
    ldm_tensor *x = act_rand(4, n, cin, h, wd, -1, 1);
    weight *w = wt_rand(dt, misalign, 4, cout, cin, kh, kw, -sc, sc);
    weight *b = with_bias ? wt_rand(dt, misalign, 1, cout, 0, 0, 0, -1, 1) : NULL;
    ldm_tensor *y = act(4, n, cout, oh, ow);
    ldm_conv2d_params p = {s, pt, pl, pb, pr};
    CHECK_OK(be->ops->conv2d(be, x, &w->t, b ? &b->t : NULL, &p, y));
    double *ref = malloc(sizeof(double) * (size_t)ldm_numel(y));
    const float *xd = x->data;
    for (int64_t in = 0; in < n; in++)
        for (int64_t co = 0; co < cout; co++)
            for (int64_t i = 0; i < oh; i++)
                for (int64_t j = 0; j < ow; j++) {
                    double acc = b ? b->ref[co] : 0.0;
                    for (int64_t ci = 0; ci < cin; ci++)
                        for (int64_t u = 0; u < kh; u++) {
                            int64_t ih = i * s - pt + u;
                            if (ih < 0 || ih >= h) continue;
                            for (int64_t v = 0; v < kw; v++) {
                                int64_t iw = j * s - pl + v;
                                if (iw < 0 || iw >= wd) continue;
                                acc += (double)w->ref[((co * cin + ci) * kh + u) * kw + v] *
                                       xd[((in * cin + ci) * h + ih) * wd + iw];
                            }
                        }
                    ref[((in * cout + co) * oh + i) * ow + j] = acc;
                }
    char what[160];
    snprintf(what, sizeof what, "conv2d n%lld %lld->%lld %lldx%lld k%lldx%lld s%d pad %d,%d,%d,%d %s%s",
             (long long)n, (long long)cin, (long long)cout, (long long)h, (long long)wd, (long long)kh,
             (long long)kw, s, pt, pl, pb, pr, dtn(dt), misalign ? " unaligned" : "");
    compare(what, y->data, ref, ldm_numel(y));
    free(ref);
    fr(x);
    fr(y);
    wt_free(w);
    wt_free(b);
}

static void test_conv(void) {
    test_conv_case(2, 3, 5, 7, 9, 3, 3, 1, 1, 1, 1, 1, LDM_DT_F32, 0, 1);
    test_conv_case(1, 4, 6, 8, 7, 3, 3, 2, 0, 0, 1, 1, LDM_DT_F16, 0, 1);  /* VAE downsample */
    test_conv_case(2, 5, 3, 9, 9, 3, 3, 2, 0, 0, 1, 1, LDM_DT_BF16, 1, 1); /* odd size, unaligned */
    test_conv_case(2, 8, 5, 6, 5, 1, 1, 1, 0, 0, 0, 0, LDM_DT_BF16, 0, 0); /* 1x1 -> sgemm */
    test_conv_case(1, 8, 5, 6, 5, 1, 1, 1, 0, 0, 0, 0, LDM_DT_F32, 2, 1);  /* 1x1, unaligned F32 */
    test_conv_case(2, 4, 3, 7, 6, 1, 1, 2, 0, 0, 0, 0, LDM_DT_F16, 0, 1);  /* 1x1 stride 2 */
    test_conv_case(1, 3, 4, 5, 6, 1, 1, 1, 1, 2, 0, 1, LDM_DT_F32, 0, 1);  /* 1x1 padded */
    test_conv_case(2, 3, 4, 11, 8, 5, 3, 2, 2, 1, 0, 3, LDM_DT_F32, 0, 1); /* non-square, odd pads */
    test_conv_case(1, 2, 3, 3, 4, 3, 3, 1, 3, 3, 3, 3, LDM_DT_F16, 0, 0);  /* padding wider than kernel */
    test_conv_case(1, 3, 2, 2, 2, 3, 3, 1, 1, 1, 0, 0, LDM_DT_F32, 0, 1);  /* tiny */
    /* fewer output positions than output channels (the UNet's deep levels): channel split */
    test_conv_case(1, 6, 40, 5, 5, 3, 3, 1, 1, 1, 1, 1, LDM_DT_F16, 0, 1);
    test_conv_case(2, 5, 150, 9, 7, 3, 3, 2, 0, 0, 1, 1, LDM_DT_F32, 0, 1);
    test_conv_case(2, 16, 200, 8, 8, 1, 1, 1, 0, 0, 0, 0, LDM_DT_BF16, 0, 1);
    /* K * P * 4 = 576 * 9216 * 4 = 21 MB > the 16 MiB column budget: several tiles, tile
     * boundaries in the middle of output rows */
    test_conv_case(1, 64, 4, 96, 96, 3, 3, 1, 1, 1, 1, 1, LDM_DT_F16, 0, 1);
    test_conv_case(2, 64, 3, 100, 50, 3, 3, 2, 0, 0, 1, 1, LDM_DT_F32, 0, 1);
    /* 3x3 stride 1 with enough channels and tiles: Winograd F(4x4, 3x3) (cpu_winograd.c), sizes
     * not multiples of the 4x4 tile, several chunks of tiles */
    if (cpu_winograd_enabled()) {
        CHECK(cpu_winograd_eligible(40, 36, 3, 3, 1, 30, 33, 2, be->n_threads) &&
                  cpu_winograd_eligible(300, 48, 3, 3, 1, 29, 70, 1, be->n_threads) &&
                  cpu_winograd_eligible(33, 40, 3, 3, 1, 49, 45, 1, be->n_threads) &&
                  cpu_winograd_eligible(400, 50, 3, 3, 1, 47, 45, 1, be->n_threads),
              "the Winograd cases below take the Winograd path");
        CHECK(!cpu_winograd_eligible(320, 320, 3, 3, 1, 32, 32, 1, be->n_threads), "64 tiles: implicit GEMM");
    }
    test_conv_case(2, 40, 36, 30, 33, 3, 3, 1, 1, 1, 1, 1, LDM_DT_F16, 0, 1);
    test_conv_case(1, 300, 48, 29, 70, 3, 3, 1, 1, 1, 1, 1, LDM_DT_F32, 0, 1);
    test_conv_case(1, 33, 40, 51, 47, 3, 3, 1, 0, 0, 0, 0, LDM_DT_BF16, 1, 0); /* no padding */
    /* more than CPU_GEMM_KC input channels: the prepacked transformed weight in two k blocks;
     * 50 output channels: zero rows in the last micro-panel for every kernel's MR */
    test_conv_case(1, 400, 50, 47, 45, 3, 3, 1, 1, 1, 1, 1, LDM_DT_F16, 1, 1);
}

/* ------------------------------------------------------------------------------------------ */
/* linear                                                                                     */
/* ------------------------------------------------------------------------------------------ */

static void test_linear_case(int nd, int64_t a, int64_t b, int64_t c, int64_t out, ldm_dtype dt, size_t mis,
                             int with_bias) {
    int64_t sh[3] = {a, b, c};
    int64_t in = sh[nd - 1];
    ldm_tensor *x = act_rand(nd, a, b, c, 0, -1, 1);
    float sc = 1.0f / sqrtf((float)in);
    weight *w = wt_rand(dt, mis, 2, out, in, 0, 0, -sc, sc);
    weight *bias = with_bias ? wt_rand(dt, mis, 1, out, 0, 0, 0, -1, 1) : NULL;
    int64_t ysh[4] = {a, b, c, 0};
    ysh[nd - 1] = out;
    ldm_tensor *y = act(nd, ysh[0], ysh[1], ysh[2], 0);
    CHECK_OK(be->ops->linear(be, x, &w->t, bias ? &bias->t : NULL, y));
    int64_t m = ldm_numel(x) / in;
    double *ref = malloc(sizeof(double) * (size_t)(m * out));
    const float *xd = x->data;
    for (int64_t i = 0; i < m; i++)
        for (int64_t o = 0; o < out; o++) {
            double acc = bias ? bias->ref[o] : 0.0;
            for (int64_t k = 0; k < in; k++) acc += (double)xd[i * in + k] * w->ref[o * in + k];
            ref[i * out + o] = acc;
        }
    char what[128];
    snprintf(what, sizeof what, "linear %dD M=%lld %lld->%lld %s%s%s", nd, (long long)m, (long long)in,
             (long long)out, dtn(dt), with_bias ? " bias" : "", mis ? " unaligned" : "");
    compare(what, y->data, ref, m * out);
    free(ref);
    fr(x);
    fr(y);
    wt_free(w);
    wt_free(bias);
}

static void test_linear(void) {
    test_linear_case(3, 2, 5, 7, 3, LDM_DT_F32, 0, 1);
    test_linear_case(3, 2, 5, 7, 3, LDM_DT_F16, 0, 1);
    test_linear_case(2, 13, 33, 0, 17, LDM_DT_BF16, 1, 0);
    test_linear_case(1, 37, 0, 0, 5, LDM_DT_F32, 0, 1);
    test_linear_case(2, 77, 96, 0, 130, LDM_DT_F32, 2, 1);
    test_linear_case(2, 300, 64, 0, 200, LDM_DT_F16, 1, 1);
}

/* ------------------------------------------------------------------------------------------ */
/* norms                                                                                      */
/* ------------------------------------------------------------------------------------------ */

static void test_group_norm_case(int nd, int64_t n, int64_t c, int64_t h, int64_t w, int32_t groups, float eps,
                                 int silu, ldm_dtype dt, int with_gamma, int with_beta, float offset) {
    ldm_tensor *x = act_rand(nd, n, c, h, w, offset - 2.0f, offset + 2.0f);
    weight *g = with_gamma ? wt_rand(dt, 1, 1, c, 0, 0, 0, 0.5f, 1.5f) : NULL;
    weight *b = with_beta ? wt_rand(dt, 1, 1, c, 0, 0, 0, -1, 1) : NULL;
    ldm_tensor *y = act(nd, n, c, h, w);
    CHECK_OK(be->ops->group_norm(be, x, g ? &g->t : NULL, b ? &b->t : NULL, groups, eps, silu, y));
    int64_t sp = ldm_numel_from(x, 2), cg = c / groups;
    double *ref = malloc(sizeof(double) * (size_t)ldm_numel(x));
    const float *xd = x->data;
    for (int64_t in = 0; in < n; in++)
        for (int64_t gi = 0; gi < groups; gi++) {
            const float *p = xd + (in * c + gi * cg) * sp;
            double s = 0, ss = 0;
            for (int64_t i = 0; i < cg * sp; i++) s += p[i];
            double mean = s / (double)(cg * sp);
            for (int64_t i = 0; i < cg * sp; i++) ss += (p[i] - mean) * (p[i] - mean);
            double rstd = 1.0 / sqrt(ss / (double)(cg * sp) + eps);
            for (int64_t j = 0; j < cg; j++) {
                int64_t ch = gi * cg + j;
                for (int64_t i = 0; i < sp; i++) {
                    double v = (p[j * sp + i] - mean) * rstd;
                    if (g) v *= g->ref[ch];
                    if (b) v += b->ref[ch];
                    if (silu) v = v / (1.0 + exp(-v));
                    ref[(in * c + ch) * sp + i] = v;
                }
            }
        }
    char what[128];
    snprintf(what, sizeof what, "group_norm %dD c%lld g%d silu%d %s%s%s off%g", nd, (long long)c, groups, silu,
             dtn(dt), g ? " gamma" : "", b ? " beta" : "", (double)offset);
    compare(what, y->data, ref, ldm_numel(y));
    /* in place gives the same */
    float *copy = malloc(sizeof(float) * (size_t)ldm_numel(x));
    memcpy(copy, y->data, sizeof(float) * (size_t)ldm_numel(x));
    CHECK_OK(be->ops->group_norm(be, x, g ? &g->t : NULL, b ? &b->t : NULL, groups, eps, silu, x));
    compare_exact("group_norm in place", x->data, copy, ldm_numel(x));
    free(copy);
    free(ref);
    fr(x);
    fr(y);
    wt_free(g);
    wt_free(b);
}

static void test_layer_norm_case(int nd, int64_t a, int64_t b, int64_t c, ldm_dtype dt, int affine, float offset) {
    ldm_tensor *x = act_rand(nd, a, b, c, 0, offset - 1.5f, offset + 1.5f);
    int64_t sh[3] = {a, b, c}, C = sh[nd - 1];
    weight *g = affine ? wt_rand(dt, 0, 1, C, 0, 0, 0, 0.5f, 1.5f) : NULL;
    weight *bb = affine ? wt_rand(dt, 0, 1, C, 0, 0, 0, -1, 1) : NULL;
    ldm_tensor *y = act(nd, a, b, c, 0);
    const float eps = 1e-5f;
    CHECK_OK(be->ops->layer_norm(be, x, g ? &g->t : NULL, bb ? &bb->t : NULL, eps, y));
    int64_t rows = ldm_numel(x) / C;
    double *ref = malloc(sizeof(double) * (size_t)ldm_numel(x));
    const float *xd = x->data;
    for (int64_t r = 0; r < rows; r++) {
        const float *p = xd + r * C;
        double s = 0, ss = 0;
        for (int64_t i = 0; i < C; i++) s += p[i];
        double mean = s / (double)C;
        for (int64_t i = 0; i < C; i++) ss += (p[i] - mean) * (p[i] - mean);
        double rstd = 1.0 / sqrt(ss / (double)C + eps);
        for (int64_t i = 0; i < C; i++) {
            double v = (p[i] - mean) * rstd;
            if (g) v = v * g->ref[i] + bb->ref[i];
            ref[r * C + i] = v;
        }
    }
    char what[128];
    snprintf(what, sizeof what, "layer_norm %dD rows %lld C %lld %s%s off%g", nd, (long long)rows, (long long)C,
             dtn(dt), affine ? " affine" : "", (double)offset);
    compare(what, y->data, ref, ldm_numel(y));
    free(ref);
    fr(x);
    fr(y);
    wt_free(g);
    wt_free(bb);
}

static void test_norms(void) {
    test_group_norm_case(4, 2, 12, 5, 3, 4, 1e-5f, 0, LDM_DT_F32, 1, 1, 0.0f);
    test_group_norm_case(4, 2, 12, 5, 3, 4, 1e-6f, 1, LDM_DT_F16, 1, 1, 3.0f);
    test_group_norm_case(3, 1, 6, 7, 0, 3, 1e-5f, 1, LDM_DT_BF16, 1, 0, -1.0f);
    test_group_norm_case(4, 1, 64, 16, 16, 32, 1e-6f, 0, LDM_DT_F32, 0, 0, 0.5f);
    test_group_norm_case(2, 3, 8, 0, 0, 2, 1e-5f, 1, LDM_DT_F32, 1, 1, 0.0f);
    test_group_norm_case(4, 2, 32, 9, 11, 32, 1e-5f, 1, LDM_DT_F16, 1, 1, 0.0f); /* one channel per group */
    test_layer_norm_case(3, 2, 3, 37, LDM_DT_F32, 1, 0.0f);
    test_layer_norm_case(3, 2, 77, 768, LDM_DT_BF16, 1, 2.0f);
    test_layer_norm_case(2, 5, 19, 0, LDM_DT_F16, 0, -0.5f);
    test_layer_norm_case(1, 1000, 0, 0, LDM_DT_F16, 1, 0.0f);
}

/* ------------------------------------------------------------------------------------------ */
/* attention                                                                                  */
/* ------------------------------------------------------------------------------------------ */

static void test_attention_case(int64_t B, int64_t lq, int64_t lk, int64_t H, int64_t D, int causal) {
    int64_t hd = H * D;
    float range = 2.0f;
    ldm_tensor *q = act_rand(3, B, lq, hd, 0, -range, range), *k = act_rand(3, B, lk, hd, 0, -range, range),
               *v = act_rand(3, B, lk, hd, 0, -1, 1), *y = act(3, B, lq, hd, 0);
    float scale = 1.0f / sqrtf((float)D);
    CHECK_OK(be->ops->attention(be, q, k, v, (int32_t)H, scale, causal, y));
    double *ref = malloc(sizeof(double) * (size_t)(B * lq * hd)), *s = malloc(sizeof(double) * (size_t)lk);
    const float *qd = q->data, *kd = k->data, *vd = v->data;
    for (int64_t b = 0; b < B; b++)
        for (int64_t h = 0; h < H; h++)
            for (int64_t i = 0; i < lq; i++) {
                int64_t n = causal ? (i + 1 < lk ? i + 1 : lk) : lk;
                double m = -INFINITY;
                for (int64_t j = 0; j < n; j++) {
                    double acc = 0;
                    for (int64_t d = 0; d < D; d++)
                        acc += (double)qd[(b * lq + i) * hd + h * D + d] * kd[(b * lk + j) * hd + h * D + d];
                    s[j] = acc * scale;
                    if (s[j] > m) m = s[j];
                }
                double sum = 0;
                for (int64_t j = 0; j < n; j++) sum += (s[j] = exp(s[j] - m));
                for (int64_t d = 0; d < D; d++) {
                    double acc = 0;
                    for (int64_t j = 0; j < n; j++) acc += s[j] * vd[(b * lk + j) * hd + h * D + d];
                    ref[(b * lq + i) * hd + h * D + d] = acc / sum;
                }
            }
    char what[128];
    snprintf(what, sizeof what, "attention B%lld Lq%lld Lk%lld H%lld D%lld%s", (long long)B, (long long)lq,
             (long long)lk, (long long)H, (long long)D, causal ? " causal" : "");
    compare(what, y->data, ref, B * lq * hd);
    free(ref);
    free(s);
    fr(q);
    fr(k);
    fr(v);
    fr(y);
}

static void test_attention(void) {
    test_attention_case(2, 300, 300, 2, 8, 0);   /* Lq > tile (256 rows at this Lk) */
    test_attention_case(2, 300, 77, 3, 16, 0);   /* cross attention, Lq != Lk */
    test_attention_case(1, 77, 77, 2, 32, 1);    /* CLIP-like causal */
    test_attention_case(1, 270, 270, 1, 8, 1);   /* causal across tiles */
    test_attention_case(2, 50, 40, 2, 4, 1);     /* causal, Lq > Lk */
    test_attention_case(1, 30, 45, 1, 5, 1);     /* causal, Lq < Lk */
    test_attention_case(1, 130, 20000, 1, 4, 0); /* long keys: small query tiles */
    test_attention_case(1, 1, 1, 1, 1, 0);
    test_attention_case(3, 17, 9, 5, 3, 0);
}

/* ------------------------------------------------------------------------------------------ */
/* elementwise                                                                                */
/* ------------------------------------------------------------------------------------------ */

static double ref_unary(ldm_unary_op op, double x) {
    switch (op) {
    case LDM_UNARY_SILU: return x / (1.0 + exp(-x));
    case LDM_UNARY_GELU: return 0.5 * x * (1.0 + erf(x / sqrt(2.0)));
    default: return x / (1.0 + exp(-1.702 * x));
    }
}

static void test_unary(void) {
    const char *names[3] = {"silu", "gelu", "quick_gelu"};
    for (int op = 0; op < 3; op++) {
        ldm_tensor *x = act_rand(3, 3, 7, 4801, 0, -8, 8), *y = act(3, 3, 7, 4801, 0);
        float *xd = x->data;
        /* extremes */
        xd[0] = -100.0f;
        xd[1] = 100.0f;
        xd[2] = 0.0f;
        xd[3] = -30.0f;
        xd[4] = 1e-20f;
        xd[5] = -87.5f;
        xd[6] = 90.0f;
        int64_t n = ldm_numel(x);
        CHECK_OK(be->ops->unary(be, (ldm_unary_op)op, x, y));
        double *ref = malloc(sizeof(double) * (size_t)n);
        for (int64_t i = 0; i < n; i++) ref[i] = ref_unary((ldm_unary_op)op, xd[i]);
        char what[64];
        snprintf(what, sizeof what, "unary %s", names[op]);
        compare(what, y->data, ref, n);
        /* in place */
        CHECK_OK(be->ops->unary(be, (ldm_unary_op)op, x, x));
        compare_exact("unary in place", x->data, y->data, n);
        free(ref);
        fr(x);
        fr(y);
    }
    /* dense sweep, tighter tolerance: 2e-6 absolute + 1e-5 relative */
    for (int op = 0; op < 3; op++) {
        const int64_t n = 24001;
        ldm_tensor *x = act(1, n, 0, 0, 0), *y = act(1, n, 0, 0, 0);
        float *xd = x->data;
        for (int64_t i = 0; i < n; i++) xd[i] = -12.0f + 0.001f * (float)i;
        CHECK_OK(be->ops->unary(be, (ldm_unary_op)op, x, y));
        const float *yd = y->data;
        int64_t bad = 0;
        for (int64_t i = 0; i < n; i++) {
            double r = ref_unary((ldm_unary_op)op, xd[i]);
            bad += !(fabs(yd[i] - r) <= 2e-6 + 1e-5 * fabs(r));
        }
        CHECK(bad == 0, "unary %s sweep: %lld elements off", names[op], (long long)bad);
        fr(x);
        fr(y);
    }
    ldm_tensor *x = act_rand(1, 5, 0, 0, 0, -1, 1);
    float nan = NAN;
    memcpy(x->data, &nan, 4);
    CHECK_OK(be->ops->unary(be, LDM_UNARY_SILU, x, x));
    CHECK(isnan(((float *)x->data)[0]), "silu(NaN) is not NaN");
    memcpy(x->data, &nan, 4);
    CHECK_OK(be->ops->unary(be, LDM_UNARY_GELU, x, x));
    CHECK(isnan(((float *)x->data)[0]), "gelu(NaN) is not NaN");
    fr(x);
}

static void test_geglu(void) {
    ldm_tensor *x = act_rand(3, 2, 33, 2 * 13, 0, -4, 4), *y = act(3, 2, 33, 13, 0);
    CHECK_OK(be->ops->geglu(be, x, y));
    double *ref = malloc(sizeof(double) * (size_t)ldm_numel(y));
    const float *xd = x->data;
    for (int64_t r = 0; r < 2 * 33; r++)
        for (int64_t i = 0; i < 13; i++)
            ref[r * 13 + i] = xd[r * 26 + i] * ref_unary(LDM_UNARY_GELU, xd[r * 26 + 13 + i]);
    compare("geglu [2, 33, 26]", y->data, ref, ldm_numel(y));
    free(ref);
    fr(x);
    fr(y);
}

static void test_add(void) {
    /* same shape, a repeated b, scalar b, weight-typed b */
    struct {
        int nd;
        int64_t b[4];
        int bnd;
        ldm_dtype dt;
    } cases[] = {
        {4, {2, 3, 40, 50}, 4, LDM_DT_F32},
        {4, {40, 50}, 2, LDM_DT_F32},
        {4, {1}, 1, LDM_DT_F32},
        {4, {3, 40, 50}, 3, LDM_DT_F16},
        {4, {50}, 1, LDM_DT_BF16},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        ldm_tensor *a = act_rand(4, 2, 3, 40, 50, -1, 1), *y = act(4, 2, 3, 40, 50);
        weight *b = wt_rand(cases[c].dt, cases[c].dt == LDM_DT_F32 ? 0 : 1, cases[c].bnd, cases[c].b[0],
                            cases[c].b[1], cases[c].b[2], cases[c].b[3], -1, 1);
        CHECK_OK(be->ops->add(be, a, &b->t, y));
        int64_t n = ldm_numel(a), nb = ldm_numel(&b->t);
        double *ref = malloc(sizeof(double) * (size_t)n);
        const float *ad = a->data;
        for (int64_t i = 0; i < n; i++) ref[i] = (double)ad[i] + b->ref[i % nb];
        char what[64];
        snprintf(what, sizeof what, "add numel(b)=%lld %s", (long long)nb, dtn(cases[c].dt));
        compare(what, y->data, ref, n);
        CHECK_OK(be->ops->add(be, a, &b->t, a)); /* in place into a */
        compare_exact("add in place", a->data, y->data, n);
        free(ref);
        fr(a);
        fr(y);
        wt_free(b);
    }
}

static void test_add_per_channel_scale(void) {
    ldm_tensor *x = act_rand(4, 2, 3, 7, 5, -1, 1), *b = act_rand(2, 2, 3, 0, 0, -1, 1), *y = act(4, 2, 3, 7, 5);
    CHECK_OK(be->ops->add_per_channel(be, x, b, y));
    int64_t n = ldm_numel(x);
    double *ref = malloc(sizeof(double) * (size_t)n);
    const float *xd = x->data, *bd = b->data;
    for (int64_t i = 0; i < n; i++) ref[i] = (double)xd[i] + bd[i / 35];
    compare("add_per_channel", y->data, ref, n);
    CHECK_OK(be->ops->scale(be, x, -0.37f, y));
    for (int64_t i = 0; i < n; i++) ref[i] = (double)xd[i] * -0.37f;
    compare("scale", y->data, ref, n);
    CHECK_OK(be->ops->scale(be, x, -0.37f, x));
    compare_exact("scale in place", x->data, y->data, n);
    free(ref);
    fr(x);
    fr(b);
    fr(y);
}

static void test_data_movement(void) {
    /* upsample */
    {
        ldm_tensor *x = act_rand(4, 2, 3, 5, 7, -1, 1), *y = act(4, 2, 3, 10, 14);
        CHECK_OK(be->ops->upsample_nearest2x(be, x, y));
        float *want = malloc(sizeof(float) * (size_t)ldm_numel(y));
        const float *xd = x->data;
        for (int64_t p = 0; p < 6; p++)
            for (int64_t i = 0; i < 10; i++)
                for (int64_t j = 0; j < 14; j++) want[(p * 10 + i) * 14 + j] = xd[(p * 5 + i / 2) * 7 + j / 2];
        compare_exact("upsample_nearest2x", y->data, want, ldm_numel(y));
        free(want);
        fr(x);
        fr(y);
    }
    /* concat */
    {
        ldm_tensor *a = act_rand(4, 2, 3, 4, 5, -1, 1), *b = act_rand(4, 2, 2, 4, 5, -1, 1), *y = act(4, 2, 5, 4, 5);
        CHECK_OK(be->ops->concat_channels(be, a, b, y));
        float *want = malloc(sizeof(float) * 200);
        for (int64_t n = 0; n < 2; n++) {
            memcpy(want + n * 100, (float *)a->data + n * 60, 60 * sizeof(float));
            memcpy(want + n * 100 + 60, (float *)b->data + n * 40, 40 * sizeof(float));
        }
        compare_exact("concat_channels", y->data, want, ldm_numel(y));
        free(want);
        fr(a);
        fr(b);
        fr(y);
        /* larger than one copy chunk */
        a = act_rand(3, 1, 300, 100, 0, -1, 1);
        b = act_rand(3, 1, 7, 100, 0, -1, 1);
        y = act(3, 1, 307, 100, 0);
        CHECK_OK(be->ops->concat_channels(be, a, b, y));
        compare_exact("concat_channels big a", y->data, a->data, 30000);
        compare_exact("concat_channels big b", (float *)y->data + 30000, b->data, 700);
        fr(a);
        fr(b);
        fr(y);
    }
    /* transposes */
    {
        const int64_t N = 2, C = 37, H = 9, W = 11, L = H * W;
        ldm_tensor *x = act_rand(4, N, C, H, W, -1, 1), *t = act(3, N, L, C, 0), *back = act(4, N, C, H, W);
        CHECK_OK(be->ops->nchw_to_nlc(be, x, t));
        float *want = malloc(sizeof(float) * (size_t)ldm_numel(x));
        const float *xd = x->data;
        for (int64_t n = 0; n < N; n++)
            for (int64_t c = 0; c < C; c++)
                for (int64_t l = 0; l < L; l++) want[(n * L + l) * C + c] = xd[(n * C + c) * L + l];
        compare_exact("nchw_to_nlc", t->data, want, ldm_numel(t));
        CHECK_OK(be->ops->nlc_to_nchw(be, t, back));
        compare_exact("nlc_to_nchw round trip", back->data, x->data, ldm_numel(x));
        free(want);
        fr(x);
        fr(t);
        fr(back);
    }
}

static void test_embedding(void) {
    const ldm_dtype dts[3] = {LDM_DT_F32, LDM_DT_F16, LDM_DT_BF16};
    for (int d = 0; d < 3; d++) {
        weight *w = wt_rand(dts[d], d == 0 ? 0 : 1, 2, 50, 12, 0, 0, -1, 1);
        int32_t ids[7] = {0, 49, 3, 3, 17, 48, 1};
        ldm_tensor *y = act(2, 7, 12, 0, 0);
        CHECK_OK(be->ops->embedding(be, &w->t, ids, 7, y));
        float *want = malloc(sizeof(float) * 84);
        for (int i = 0; i < 7; i++) memcpy(want + i * 12, w->ref + ids[i] * 12, 12 * sizeof(float));
        char what[64];
        snprintf(what, sizeof what, "embedding %s", dtn(dts[d]));
        compare_exact(what, y->data, want, 84);
        ids[4] = 50;
        CHECK_INVALID(be->ops->embedding(be, &w->t, ids, 7, y));
        ids[4] = -1;
        CHECK_INVALID(be->ops->embedding(be, &w->t, ids, 7, y));
        CHECK_INVALID(be->ops->embedding(be, &w->t, NULL, 7, y));
        ids[4] = 0;
        CHECK_INVALID(be->ops->embedding(be, &w->t, ids, 6, y)); /* y has 7 rows */
        free(want);
        fr(y);
        wt_free(w);
    }
}

/* ------------------------------------------------------------------------------------------ */
/* storage and argument checks                                                                */
/* ------------------------------------------------------------------------------------------ */

static void test_storage(void) {
    int64_t sh[4] = {2, 3, 5, 7};
    ldm_tensor *t = be->ops->new_tensor(be, 4, sh);
    CHECK(t && t->dtype == LDM_DT_F32 && t->owns_data && ((uintptr_t)t->data % 64) == 0 && ldm_numel(t) == 210,
          "new_tensor");
    float src[210], dst[210];
    for (int i = 0; i < 210; i++) src[i] = (float)i * 0.5f;
    CHECK_OK(be->ops->upload(be, t, src));
    CHECK_OK(be->ops->download(be, t, dst));
    CHECK(memcmp(src, dst, sizeof src) == 0, "upload/download round trip");
    CHECK_INVALID(be->ops->upload(be, t, NULL));
    CHECK_INVALID(be->ops->download(be, t, NULL));
    fr(t);
    be->ops->free_tensor(be, NULL);

    int64_t bad0[4] = {2, 0, 3, 3}, badneg[2] = {-1, 4}, huge[4] = {1 << 20, 1 << 20, 1 << 20, 1 << 20};
    int64_t big[2] = {(int64_t)1 << 31, 5}; /* 40 GiB: over the 16 GiB cap */
    CHECK(be->ops->new_tensor(be, 4, bad0) == NULL, "zero dim accepted");
    CHECK(be->ops->new_tensor(be, 2, badneg) == NULL, "negative dim accepted");
    CHECK(be->ops->new_tensor(be, 4, huge) == NULL, "overflowing shape accepted");
    CHECK(be->ops->new_tensor(be, 2, big) == NULL, "40 GiB tensor accepted");
    CHECK(be->ops->new_tensor(be, 0, sh) == NULL, "rank 0 accepted");
    CHECK(be->ops->new_tensor(be, 5, sh) == NULL, "rank 5 accepted");
}

static void test_invalid(void) {
    ldm_tensor *x = act_rand(4, 1, 4, 6, 6, -1, 1), *y = act(4, 1, 8, 6, 6), *ybad = act(4, 1, 8, 5, 6);
    weight *w = wt_rand(LDM_DT_F32, 0, 4, 8, 4, 3, 3, -1, 1), *wbad = wt_rand(LDM_DT_F32, 0, 4, 8, 3, 3, 3, -1, 1);
    weight *b7 = wt_rand(LDM_DT_F32, 0, 1, 7, 0, 0, 0, -1, 1);
    ldm_conv2d_params p = {1, 1, 1, 1, 1}, p0 = {0, 1, 1, 1, 1}, pneg = {1, -1, 1, 1, 1};
    CHECK_OK(be->ops->conv2d(be, x, &w->t, NULL, &p, y));
    CHECK_INVALID(be->ops->conv2d(be, x, &w->t, NULL, &p, ybad));
    CHECK_INVALID(be->ops->conv2d(be, x, &wbad->t, NULL, &p, y));
    CHECK_INVALID(be->ops->conv2d(be, x, &w->t, &b7->t, &p, y));
    CHECK_INVALID(be->ops->conv2d(be, x, &w->t, NULL, &p0, y));
    CHECK_INVALID(be->ops->conv2d(be, x, &w->t, NULL, &pneg, y));
    CHECK_INVALID(be->ops->conv2d(be, x, &w->t, NULL, NULL, y));
    CHECK_INVALID(be->ops->conv2d(be, NULL, &w->t, NULL, &p, y));
    CHECK_INVALID(be->ops->conv2d(be, x, &w->t, NULL, &p, x)); /* aliasing output */
    {
        weight *w8 = wt_rand(LDM_DT_F32, 0, 4, 8, 4, 7, 7, -1, 1); /* kernel larger than padded input */
        CHECK_INVALID(be->ops->conv2d(be, x, &w8->t, NULL, &(ldm_conv2d_params){1, 0, 0, 0, 0}, y));
        wt_free(w8);
    }
    {
        weight *wi = wt_rand(LDM_DT_F32, 0, 4, 8, 4, 3, 3, -1, 1);
        wi->t.dtype = LDM_DT_I32;
        CHECK_INVALID(be->ops->conv2d(be, x, &wi->t, NULL, &p, y));
        wt_free(wi);
    }
    {
        ldm_tensor fake = *x;
        fake.dtype = LDM_DT_F16; /* activations must be F32 */
        CHECK_INVALID(be->ops->conv2d(be, &fake, &w->t, NULL, &p, y));
        fake = *x;
        fake.data = NULL;
        CHECK_INVALID(be->ops->conv2d(be, &fake, &w->t, NULL, &p, y));
        fake = *x;
        fake.ne[2] = 0;
        CHECK_INVALID(be->ops->conv2d(be, &fake, &w->t, NULL, &p, y));
        fake = *x;
        fake.ndim = 7;
        CHECK_INVALID(be->ops->conv2d(be, &fake, &w->t, NULL, &p, y));
    }

    /* linear */
    ldm_tensor *lx = act_rand(3, 2, 5, 7, 0, -1, 1), *ly = act(3, 2, 5, 3, 0), *ly2 = act(3, 2, 4, 3, 0);
    weight *lw = wt_rand(LDM_DT_F16, 0, 2, 3, 7, 0, 0, -1, 1), *lw2 = wt_rand(LDM_DT_F16, 0, 2, 3, 6, 0, 0, -1, 1);
    CHECK_OK(be->ops->linear(be, lx, &lw->t, NULL, ly));
    CHECK_INVALID(be->ops->linear(be, lx, &lw2->t, NULL, ly));
    CHECK_INVALID(be->ops->linear(be, lx, &lw->t, NULL, ly2));
    CHECK_INVALID(be->ops->linear(be, lx, &lw->t, &b7->t, ly));

    /* norms */
    CHECK_INVALID(be->ops->group_norm(be, x, NULL, NULL, 3, 1e-5f, 0, x)); /* 4 channels, 3 groups */
    CHECK_INVALID(be->ops->group_norm(be, x, NULL, NULL, 0, 1e-5f, 0, x));
    CHECK_INVALID(be->ops->group_norm(be, x, &b7->t, NULL, 2, 1e-5f, 0, x));
    CHECK_INVALID(be->ops->group_norm(be, x, NULL, NULL, 2, 1e-5f, 0, y));
    CHECK_INVALID(be->ops->group_norm(be, x, NULL, NULL, 2, -1.0f, 0, x));
    CHECK_INVALID(be->ops->layer_norm(be, lx, NULL, &lw2->t, 1e-5f, lx)); /* 18 elements for C = 7 */
    CHECK_INVALID(be->ops->layer_norm(be, lx, NULL, NULL, 1e-5f, ly));

    /* attention */
    ldm_tensor *q = act_rand(3, 2, 10, 12, 0, -1, 1), *k = act_rand(3, 2, 6, 12, 0, -1, 1),
               *v = act_rand(3, 2, 6, 12, 0, -1, 1), *ay = act(3, 2, 10, 12, 0), *kbad = act_rand(3, 2, 6, 8, 0, -1, 1),
               *vbad = act_rand(3, 2, 7, 12, 0, -1, 1);
    CHECK_OK(be->ops->attention(be, q, k, v, 3, 0.5f, 0, ay));
    CHECK_INVALID(be->ops->attention(be, q, k, v, 5, 0.5f, 0, ay)); /* 12 not divisible by 5 */
    CHECK_INVALID(be->ops->attention(be, q, k, v, 0, 0.5f, 0, ay));
    CHECK_INVALID(be->ops->attention(be, q, kbad, v, 3, 0.5f, 0, ay));
    CHECK_INVALID(be->ops->attention(be, q, k, vbad, 3, 0.5f, 0, ay));
    CHECK_INVALID(be->ops->attention(be, q, k, v, 3, 0.5f, 0, q));
    CHECK_INVALID(be->ops->attention(be, q, k, v, 3, 0.5f, 0, ly));

    /* elementwise */
    CHECK_INVALID(be->ops->unary(be, LDM_UNARY_GELU, x, y));
    CHECK_INVALID(be->ops->unary(be, (ldm_unary_op)7, x, x));
    CHECK_INVALID(be->ops->geglu(be, lx, ly)); /* 7 is odd */
    CHECK_INVALID(be->ops->geglu(be, q, ay));
    CHECK_INVALID(be->ops->add(be, x, &b7->t, x)); /* 144 % 7 != 0 */
    CHECK_INVALID(be->ops->add(be, x, x, y));
    CHECK_INVALID(be->ops->add_per_channel(be, x, k, x));
    CHECK_INVALID(be->ops->scale(be, x, 2.0f, y));
    CHECK_INVALID(be->ops->upsample_nearest2x(be, x, y));
    CHECK_INVALID(be->ops->upsample_nearest2x(be, q, ay));
    CHECK_INVALID(be->ops->concat_channels(be, x, x, x));
    CHECK_INVALID(be->ops->concat_channels(be, x, q, y));
    CHECK_INVALID(be->ops->nchw_to_nlc(be, x, q));
    CHECK_INVALID(be->ops->nlc_to_nchw(be, q, x));
    {
        /* partial overlap of output and input */
        ldm_tensor shifted = *x;
        shifted.data = (float *)x->data + 1;
        shifted.ne[3] = 5;
        ldm_tensor xs = *x;
        xs.ne[3] = 5;
        CHECK_INVALID(be->ops->scale(be, &xs, 2.0f, &shifted));
    }
    fr(x);
    fr(y);
    fr(ybad);
    fr(lx);
    fr(ly);
    fr(ly2);
    fr(q);
    fr(k);
    fr(v);
    fr(ay);
    fr(kbad);
    fr(vbad);
    wt_free(w);
    wt_free(wbad);
    wt_free(b7);
    wt_free(lw);
    wt_free(lw2);
}

int main(void) {
    const int thread_counts[2] = {1, 3};
    CHECK(ldm_cpu_backend_create(0, NULL) == LDM_ERR_INVALID_ARG, "create with NULL out");
    for (int ti = 0; ti < 2; ti++) {
        CHECK_OK(ldm_cpu_backend_create(thread_counts[ti], &be));
        if (!be) return 1;
        CHECK(be->n_threads == thread_counts[ti], "n_threads");
        printf("cpu backend, %d thread(s)\n", be->n_threads);
        test_storage();
        test_conv();
        test_linear();
        test_norms();
        test_attention();
        test_unary();
        test_geglu();
        test_add();
        test_add_per_channel_scale();
        test_data_movement();
        test_embedding();
        test_invalid();
        be->ops->destroy(be);
    }
    ldm_backend *dflt = NULL;
    CHECK_OK(ldm_cpu_backend_create(0, &dflt));
    CHECK(dflt && dflt->n_threads >= 1, "default thread count");
    if (dflt) dflt->ops->destroy(dflt);
    if (failures) {
        printf("%d failure(s)\n", failures);
        return 1;
    }
    printf("all CPU op tests passed\n");
    return 0;
}
