/* group_norm and layer_norm. Statistics are accumulated in double, two-pass (mean, then the mean
 * of squared deviations: biased variance), eps inside the square root. */
#include "cpu_internal.h"
#include "cpu_math.h"

#include <math.h>

/* mean and 1/sqrt(var + eps) of n floats, in double. */
static void stats(const float *x, int64_t n, float eps, float *mean_out, float *rstd_out) {
    double s = 0.0;
#pragma omp simd reduction(+ : s)
    for (int64_t i = 0; i < n; i++) s += (double)x[i];
    double mean = s / (double)n, ss = 0.0;
#pragma omp simd reduction(+ : ss)
    for (int64_t i = 0; i < n; i++) {
        double d = (double)x[i] - mean;
        ss += d * d;
    }
    *mean_out = (float)mean;
    *rstd_out = (float)(1.0 / sqrt(ss / (double)n + (double)eps));
}

/* y = (x - mean) * a + c, then SiLU when silu. */
LDM_CPU_CLONES static void norm_apply(const float *x, float *y, int64_t n, float mean, float a, float c, int silu) {
    if (silu) {
#pragma omp simd
        for (int64_t i = 0; i < n; i++) {
            float v = (x[i] - mean) * a + c;
            y[i] = v * cpu_sigmoidf(v);
        }
    } else {
        for (int64_t i = 0; i < n; i++) y[i] = (x[i] - mean) * a + c;
    }
}

/* y = (x - mean) * rstd * g[i] + b[i] over one row (g, b may be NULL). */
LDM_CPU_CLONES static void row_apply(const float *x, float *y, int64_t n, float mean, float rstd, const float *g,
                                     const float *b) {
    if (g && b) {
        for (int64_t i = 0; i < n; i++) y[i] = (x[i] - mean) * rstd * g[i] + b[i];
    } else {
        for (int64_t i = 0; i < n; i++) {
            float v = (x[i] - mean) * rstd;
            if (g) v *= g[i];
            if (b) v += b[i];
            y[i] = v;
        }
    }
}

static ldm_status affine_check(const char *op, const ldm_tensor *gamma, const ldm_tensor *beta, int64_t c) {
    ldm_status st;
    if (gamma && ((st = cpu_check_weight(op, "gamma", gamma)))) return st;
    if (beta && ((st = cpu_check_weight(op, "beta", beta)))) return st;
    if (gamma && ldm_numel(gamma) != c)
        return ldm_fail(LDM_ERR_INVALID_ARG, "%s: gamma has %lld elements for %lld channels", op,
                        (long long)ldm_numel(gamma), (long long)c);
    if (beta && ldm_numel(beta) != c)
        return ldm_fail(LDM_ERR_INVALID_ARG, "%s: beta has %lld elements for %lld channels", op,
                        (long long)ldm_numel(beta), (long long)c);
    return LDM_OK;
}

ldm_status cpu_group_norm(ldm_backend *be, const ldm_tensor *x, const ldm_tensor *gamma, const ldm_tensor *beta,
                          int32_t groups, float eps, int32_t silu, ldm_tensor *y) {
    const char *op = "group_norm";
    ldm_status st;
    if ((st = cpu_check_act(op, "x", x)) || (st = cpu_check_act(op, "y", y))) return st;
    char s1[64], s2[64];
    if (x->ndim < 2 || !cpu_same_shape(x, y))
        return ldm_fail(LDM_ERR_INVALID_ARG, "group_norm: x %s and y %s must have the same shape [N, C, ...]",
                        cpu_shape_str(x, s1, sizeof s1), cpu_shape_str(y, s2, sizeof s2));
    const int64_t n = x->ne[0], c = x->ne[1], sp = ldm_numel_from(x, 2);
    if (groups < 1 || c % groups != 0)
        return ldm_fail(LDM_ERR_INVALID_ARG, "group_norm: %lld channels not divisible into %d groups", (long long)c,
                        (int)groups);
    if (!(eps >= 0.0f) || isinf(eps)) return ldm_fail(LDM_ERR_INVALID_ARG, "group_norm: bad eps %g", (double)eps);
    if ((st = affine_check(op, gamma, beta, c))) return st;
    /* y may be x: each task reads its whole group for the statistics before writing it. */
    if (x->data != y->data && (st = cpu_check_no_alias(op, y, x))) return st;

    const int nt = cpu_threads(be);
    cpu_weight gf, bf;
    if ((st = cpu_weight_get(op, gamma, 1, &gf))) return st;
    if ((st = cpu_weight_get(op, beta, 1, &bf))) {
        cpu_weight_release(&gf);
        return st;
    }
    const float *G = gf.p, *B = bf.p;
    const float *xd = x->data;
    float *yd = y->data;
    const int64_t cg = c / groups, tasks = n * groups, gsize = cg * sp;
    int nt2 = tasks > 1 && ldm_numel(x) >= 16384 ? nt : 1;
#pragma omp parallel for num_threads(nt2) schedule(dynamic, 1)
    for (int64_t t = 0; t < tasks; t++) {
        const float *xg = xd + t * gsize;
        float *yg = yd + t * gsize;
        float mean, rstd;
        stats(xg, gsize, eps, &mean, &rstd);
        int64_t c0 = (t % groups) * cg;
        for (int64_t j = 0; j < cg; j++) {
            float a = G ? G[c0 + j] * rstd : rstd;
            float b0 = B ? B[c0 + j] : 0.0f;
            norm_apply(xg + j * sp, yg + j * sp, sp, mean, a, b0, silu);
        }
    }
    cpu_weight_release(&gf);
    cpu_weight_release(&bf);
    return LDM_OK;
}

ldm_status cpu_layer_norm(ldm_backend *be, const ldm_tensor *x, const ldm_tensor *gamma, const ldm_tensor *beta,
                          float eps, ldm_tensor *y) {
    const char *op = "layer_norm";
    ldm_status st;
    if ((st = cpu_check_act(op, "x", x)) || (st = cpu_check_act(op, "y", y))) return st;
    char s1[64], s2[64];
    if (!cpu_same_shape(x, y))
        return ldm_fail(LDM_ERR_INVALID_ARG, "layer_norm: x %s and y %s must have the same shape",
                        cpu_shape_str(x, s1, sizeof s1), cpu_shape_str(y, s2, sizeof s2));
    const int64_t c = x->ne[x->ndim - 1], rows = ldm_numel(x) / c;
    if (!(eps >= 0.0f) || isinf(eps)) return ldm_fail(LDM_ERR_INVALID_ARG, "layer_norm: bad eps %g", (double)eps);
    if ((st = affine_check(op, gamma, beta, c))) return st;
    if (x->data != y->data && (st = cpu_check_no_alias(op, y, x))) return st;

    const int nt = cpu_threads(be);
    cpu_weight gf, bf;
    if ((st = cpu_weight_get(op, gamma, 1, &gf))) return st;
    if ((st = cpu_weight_get(op, beta, 1, &bf))) {
        cpu_weight_release(&gf);
        return st;
    }
    const float *G = gf.p, *B = bf.p;
    const float *xd = x->data;
    float *yd = y->data;
    int nt2 = rows > 1 && ldm_numel(x) >= 16384 ? nt : 1;
#pragma omp parallel for num_threads(nt2) schedule(static)
    for (int64_t r = 0; r < rows; r++) {
        float mean, rstd;
        stats(xd + r * c, c, eps, &mean, &rstd);
        row_apply(xd + r * c, yd + r * c, c, mean, rstd, G, B);
    }
    cpu_weight_release(&gf);
    cpu_weight_release(&bf);
    return LDM_OK;
}
