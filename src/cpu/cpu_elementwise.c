/* Elementwise and data-movement ops: unary activations, geglu, add, add_per_channel, scale,
 * nearest upsampling, channel concat, NCHW <-> NLC transposes and embedding lookup.
 *
 * In place: unary, scale, add (y == a) and add_per_channel (y == x) accept y sharing x's storage
 * exactly; any other overlap of output and input is refused. */
#include "cpu_internal.h"
#include "cpu_math.h"


/* Below this many elements a loop runs on the calling thread only. */
#define PAR_MIN 32768

static inline int par_threads(const ldm_backend *be, int64_t work) { return work >= PAR_MIN ? cpu_threads(be) : 1; }

/* Chunks of a flat range for parallel loops over elementwise kernels. */
#define CHUNK 16384

/* In place allowed (exact same storage) or no overlap at all. */
static ldm_status same_or_disjoint(const char *op, const ldm_tensor *out, const ldm_tensor *in) {
    if (out->data == in->data && ldm_numel(out) == ldm_numel(in)) return LDM_OK;
    return cpu_check_no_alias(op, out, in);
}

/* ------------------------------------------------------------------------------------------ */
/* unary, geglu                                                                               */
/* ------------------------------------------------------------------------------------------ */

LDM_CPU_CLONES static void silu_k(const float *x, float *y, int64_t n) {
#pragma omp simd
    for (int64_t i = 0; i < n; i++) y[i] = x[i] * cpu_sigmoidf(x[i]);
}

LDM_CPU_CLONES static void quick_gelu_k(const float *x, float *y, int64_t n) {
#pragma omp simd
    for (int64_t i = 0; i < n; i++) y[i] = x[i] * cpu_sigmoidf(1.702f * x[i]);
}

/* Exact GELU through cpu_gelu (a vectorisable erf; glibc's scalar erff made GELU cost ~20 ns per
 * element, a sizeable part of a CPU UNet step through GEGLU). */
LDM_CPU_CLONES static void gelu_k(const float *x, float *y, int64_t n) {
#pragma omp simd
    for (int64_t i = 0; i < n; i++) y[i] = cpu_gelu(x[i]);
}

LDM_CPU_CLONES static void geglu_k(const float *a, const float *g, float *y, int64_t n) {
#pragma omp simd
    for (int64_t i = 0; i < n; i++) y[i] = a[i] * cpu_gelu(g[i]);
}

ldm_status cpu_unary(ldm_backend *be, ldm_unary_op op, const ldm_tensor *x, ldm_tensor *y) {
    ldm_status st;
    if ((st = cpu_check_act("unary", "x", x)) || (st = cpu_check_act("unary", "y", y))) return st;
    char s1[64], s2[64];
    if (!cpu_same_shape(x, y))
        return ldm_fail(LDM_ERR_INVALID_ARG, "unary: x %s and y %s differ in shape", cpu_shape_str(x, s1, sizeof s1),
                        cpu_shape_str(y, s2, sizeof s2));
    if (op != LDM_UNARY_SILU && op != LDM_UNARY_GELU && op != LDM_UNARY_QUICK_GELU)
        return ldm_fail(LDM_ERR_INVALID_ARG, "unary: unknown op %d", (int)op);
    if ((st = same_or_disjoint("unary", y, x))) return st;
    const float *xd = x->data;
    float *yd = y->data;
    const int64_t n = ldm_numel(x), chunks = (n + CHUNK - 1) / CHUNK;
#pragma omp parallel for num_threads(par_threads(be, n)) schedule(static)
    for (int64_t c = 0; c < chunks; c++) {
        int64_t i0 = c * CHUNK, cnt = LDM_MIN(CHUNK, n - i0);
        switch (op) {
        case LDM_UNARY_SILU: silu_k(xd + i0, yd + i0, cnt); break;
        case LDM_UNARY_GELU: gelu_k(xd + i0, yd + i0, cnt); break;
        default: quick_gelu_k(xd + i0, yd + i0, cnt); break;
        }
    }
    return LDM_OK;
}

ldm_status cpu_geglu(ldm_backend *be, const ldm_tensor *x, ldm_tensor *y) {
    ldm_status st;
    if ((st = cpu_check_act("geglu", "x", x)) || (st = cpu_check_act("geglu", "y", y))) return st;
    char s1[64], s2[64];
    const int64_t d2 = x->ne[x->ndim - 1], d = d2 / 2;
    bool ok = d2 % 2 == 0 && y->ndim == x->ndim && y->ne[y->ndim - 1] == d;
    for (int i = 0; ok && i < x->ndim - 1; i++) ok = x->ne[i] == y->ne[i];
    if (!ok)
        return ldm_fail(LDM_ERR_INVALID_ARG, "geglu: x %s must be [..., 2D] and y %s [..., D]",
                        cpu_shape_str(x, s1, sizeof s1), cpu_shape_str(y, s2, sizeof s2));
    if ((st = cpu_check_no_alias("geglu", y, x))) return st;
    const float *xd = x->data;
    float *yd = y->data;
    const int64_t rows = ldm_numel(y) / d;
#pragma omp parallel for num_threads(par_threads(be, rows * d)) schedule(static)
    for (int64_t r = 0; r < rows; r++) {
        const float *a = xd + r * d2, *g = a + d;
        float *o = yd + r * d;
        geglu_k(a, g, o, d);
    }
    return LDM_OK;
}

/* ------------------------------------------------------------------------------------------ */
/* add, add_per_channel, scale                                                                */
/* ------------------------------------------------------------------------------------------ */

LDM_CPU_CLONES static void add_k(const float *a, const float *b, float *y, int64_t n) {
    for (int64_t i = 0; i < n; i++) y[i] = a[i] + b[i];
}

LDM_CPU_CLONES static void add_scalar_k(const float *a, float b, float *y, int64_t n) {
    for (int64_t i = 0; i < n; i++) y[i] = a[i] + b;
}

LDM_CPU_CLONES static void scale_k(const float *a, float s, float *y, int64_t n) {
    for (int64_t i = 0; i < n; i++) y[i] = a[i] * s;
}

ldm_status cpu_add(ldm_backend *be, const ldm_tensor *a, const ldm_tensor *b, ldm_tensor *y) {
    const char *op = "add";
    ldm_status st;
    if ((st = cpu_check_act(op, "a", a)) || (st = cpu_check_weight(op, "b", b)) || (st = cpu_check_act(op, "y", y)))
        return st;
    char s1[64], s2[64], s3[64];
    const int64_t n = ldm_numel(a), nb = ldm_numel(b);
    if (!cpu_same_shape(a, y) || n % nb != 0)
        return ldm_fail(LDM_ERR_INVALID_ARG, "add: a %s, b %s, y %s: y must match a and numel(b) divide numel(a)",
                        cpu_shape_str(a, s1, sizeof s1), cpu_shape_str(b, s2, sizeof s2),
                        cpu_shape_str(y, s3, sizeof s3));
    if ((st = same_or_disjoint(op, y, a))) return st;
    if (!(y->data == b->data && nb == n) && (st = cpu_check_no_alias(op, y, b))) return st;
    cpu_weight bw; /* b is normally an F32 activation (used in place), but a stored weight works too */
    if ((st = cpu_weight_get(op, b, cpu_threads(be), &bw))) return st;
    const float *ad = a->data, *bd = bw.p;
    float *yd = y->data;
    if (nb == n) {
        const int64_t chunks = (n + CHUNK - 1) / CHUNK;
#pragma omp parallel for num_threads(par_threads(be, n)) schedule(static)
        for (int64_t c = 0; c < chunks; c++) {
            int64_t i0 = c * CHUNK;
            add_k(ad + i0, bd + i0, yd + i0, LDM_MIN(CHUNK, n - i0));
        }
    } else if (nb == 1) {
        const int64_t chunks = (n + CHUNK - 1) / CHUNK;
        const float bv = bd[0];
#pragma omp parallel for num_threads(par_threads(be, n)) schedule(static)
        for (int64_t c = 0; c < chunks; c++) {
            int64_t i0 = c * CHUNK;
            add_scalar_k(ad + i0, bv, yd + i0, LDM_MIN(CHUNK, n - i0));
        }
    } else {
        const int64_t reps = n / nb;
#pragma omp parallel for num_threads(par_threads(be, n)) schedule(static)
        for (int64_t r = 0; r < reps; r++) add_k(ad + r * nb, bd, yd + r * nb, nb);
    }
    cpu_weight_release(&bw);
    return LDM_OK;
}

ldm_status cpu_add_per_channel(ldm_backend *be, const ldm_tensor *x, const ldm_tensor *b, ldm_tensor *y) {
    const char *op = "add_per_channel";
    ldm_status st;
    if ((st = cpu_check_act(op, "x", x)) || (st = cpu_check_weight(op, "b", b)) || (st = cpu_check_act(op, "y", y)))
        return st;
    char s1[64], s2[64], s3[64];
    if (x->ndim < 2 || !cpu_same_shape(x, y) || ldm_numel(b) != x->ne[0] * x->ne[1] || b->ne[0] != x->ne[0])
        return ldm_fail(LDM_ERR_INVALID_ARG, "add_per_channel: x %s, b %s, y %s: need x [N, C, ...], b [N, C], y like x",
                        cpu_shape_str(x, s1, sizeof s1), cpu_shape_str(b, s2, sizeof s2),
                        cpu_shape_str(y, s3, sizeof s3));
    if ((st = same_or_disjoint(op, y, x)) || (st = cpu_check_no_alias(op, y, b))) return st;
    cpu_weight bw;
    if ((st = cpu_weight_get(op, b, 1, &bw))) return st;
    const float *xd = x->data, *bd = bw.p;
    float *yd = y->data;
    const int64_t planes = x->ne[0] * x->ne[1], sp = ldm_numel_from(x, 2);
#pragma omp parallel for num_threads(par_threads(be, planes * sp)) schedule(static)
    for (int64_t pl = 0; pl < planes; pl++) add_scalar_k(xd + pl * sp, bd[pl], yd + pl * sp, sp);
    cpu_weight_release(&bw);
    return LDM_OK;
}

ldm_status cpu_scale(ldm_backend *be, const ldm_tensor *x, float s, ldm_tensor *y) {
    ldm_status st;
    if ((st = cpu_check_act("scale", "x", x)) || (st = cpu_check_act("scale", "y", y))) return st;
    char s1[64], s2[64];
    if (!cpu_same_shape(x, y))
        return ldm_fail(LDM_ERR_INVALID_ARG, "scale: x %s and y %s differ in shape", cpu_shape_str(x, s1, sizeof s1),
                        cpu_shape_str(y, s2, sizeof s2));
    if ((st = same_or_disjoint("scale", y, x))) return st;
    const float *xd = x->data;
    float *yd = y->data;
    const int64_t n = ldm_numel(x), chunks = (n + CHUNK - 1) / CHUNK;
#pragma omp parallel for num_threads(par_threads(be, n)) schedule(static)
    for (int64_t c = 0; c < chunks; c++) {
        int64_t i0 = c * CHUNK;
        scale_k(xd + i0, s, yd + i0, LDM_MIN(CHUNK, n - i0));
    }
    return LDM_OK;
}

/* ------------------------------------------------------------------------------------------ */
/* upsample, concat                                                                           */
/* ------------------------------------------------------------------------------------------ */

ldm_status cpu_upsample_nearest2x(ldm_backend *be, const ldm_tensor *x, ldm_tensor *y) {
    const char *op = "upsample_nearest2x";
    ldm_status st;
    if ((st = cpu_check_act(op, "x", x)) || (st = cpu_check_act(op, "y", y))) return st;
    char s1[64], s2[64];
    if (x->ndim != 4 || y->ndim != 4 || y->ne[0] != x->ne[0] || y->ne[1] != x->ne[1] || y->ne[2] != 2 * x->ne[2] ||
        y->ne[3] != 2 * x->ne[3])
        return ldm_fail(LDM_ERR_INVALID_ARG, "upsample_nearest2x: x %s, y %s: need [N, C, H, W] -> [N, C, 2H, 2W]",
                        cpu_shape_str(x, s1, sizeof s1), cpu_shape_str(y, s2, sizeof s2));
    if ((st = cpu_check_no_alias(op, y, x))) return st;
    const int64_t rows = x->ne[0] * x->ne[1] * x->ne[2], w = x->ne[3];
    const float *xd = x->data;
    float *yd = y->data;
#pragma omp parallel for num_threads(par_threads(be, rows * w * 4)) schedule(static)
    for (int64_t r = 0; r < rows; r++) {
        const float *s = xd + r * w;
        float *d = yd + r * 4 * w; /* output rows 2r and 2r+1 */
        for (int64_t i = 0; i < w; i++) {
            d[2 * i] = s[i];
            d[2 * i + 1] = s[i];
        }
        memcpy(d + 2 * w, d, (size_t)(2 * w) * sizeof(float));
    }
    return LDM_OK;
}

ldm_status cpu_concat_channels(ldm_backend *be, const ldm_tensor *a, const ldm_tensor *b, ldm_tensor *y) {
    const char *op = "concat_channels";
    ldm_status st;
    if ((st = cpu_check_act(op, "a", a)) || (st = cpu_check_act(op, "b", b)) || (st = cpu_check_act(op, "y", y)))
        return st;
    char s1[64], s2[64], s3[64];
    bool ok = a->ndim >= 2 && a->ndim == b->ndim && a->ndim == y->ndim && a->ne[0] == b->ne[0] &&
              y->ne[0] == a->ne[0] && y->ne[1] == a->ne[1] + b->ne[1];
    for (int i = 2; ok && i < a->ndim; i++) ok = a->ne[i] == b->ne[i] && a->ne[i] == y->ne[i];
    if (!ok)
        return ldm_fail(LDM_ERR_INVALID_ARG, "concat_channels: a %s, b %s, y %s: need [N, Ca, ...] + [N, Cb, ...] -> [N, Ca+Cb, ...]",
                        cpu_shape_str(a, s1, sizeof s1), cpu_shape_str(b, s2, sizeof s2),
                        cpu_shape_str(y, s3, sizeof s3));
    if ((st = cpu_check_no_alias(op, y, a)) || (st = cpu_check_no_alias(op, y, b))) return st;
    const int64_t n = a->ne[0], na = ldm_numel_from(a, 1), nb = ldm_numel_from(b, 1);
    const float *ad = a->data, *bd = b->data;
    float *yd = y->data;
    /* 2n copies, split further into chunks so a single image still spreads over the threads */
    const int64_t per = na + nb, chunks_per = (per + CHUNK - 1) / CHUNK, tasks = n * chunks_per;
#pragma omp parallel for num_threads(par_threads(be, n * per)) schedule(static)
    for (int64_t t = 0; t < tasks; t++) {
        int64_t img = t / chunks_per, i0 = (t % chunks_per) * CHUNK, i1 = LDM_MIN(per, i0 + CHUNK);
        float *d = yd + img * per;
        if (i0 < na) memcpy(d + i0, ad + img * na + i0, (size_t)(LDM_MIN(i1, na) - i0) * sizeof(float));
        if (i1 > na) {
            int64_t j0 = LDM_MAX(i0, na);
            memcpy(d + j0, bd + img * nb + (j0 - na), (size_t)(i1 - j0) * sizeof(float));
        }
    }
    return LDM_OK;
}

/* ------------------------------------------------------------------------------------------ */
/* transposes                                                                                 */
/* ------------------------------------------------------------------------------------------ */

#define TB 32

/* dst[c, r] = src[r, c] for `count` matrices of rows x cols, in TB x TB blocks. */
static void transpose_batched(const ldm_backend *be, const float *src, float *dst, int64_t count, int64_t rows,
                              int64_t cols) {
    const int64_t br = (rows + TB - 1) / TB, bc = (cols + TB - 1) / TB, tasks = count * br * bc;
#pragma omp parallel for num_threads(par_threads(be, count * rows * cols)) schedule(static)
    for (int64_t t = 0; t < tasks; t++) {
        int64_t m = t / (br * bc), rem = t % (br * bc);
        int64_t r0 = (rem / bc) * TB, c0 = (rem % bc) * TB;
        int64_t r1 = LDM_MIN(rows, r0 + TB), c1 = LDM_MIN(cols, c0 + TB);
        const float *s = src + m * rows * cols;
        float *d = dst + m * rows * cols;
        for (int64_t c = c0; c < c1; c++)
            for (int64_t r = r0; r < r1; r++) d[c * rows + r] = s[r * cols + c];
    }
}

ldm_status cpu_nchw_to_nlc(ldm_backend *be, const ldm_tensor *x, ldm_tensor *y) {
    const char *op = "nchw_to_nlc";
    ldm_status st;
    if ((st = cpu_check_act(op, "x", x)) || (st = cpu_check_act(op, "y", y))) return st;
    char s1[64], s2[64];
    if (x->ndim != 4 || y->ndim != 3 || y->ne[0] != x->ne[0] || y->ne[1] != x->ne[2] * x->ne[3] ||
        y->ne[2] != x->ne[1])
        return ldm_fail(LDM_ERR_INVALID_ARG, "nchw_to_nlc: x %s, y %s: need [N, C, H, W] -> [N, H*W, C]",
                        cpu_shape_str(x, s1, sizeof s1), cpu_shape_str(y, s2, sizeof s2));
    if ((st = cpu_check_no_alias(op, y, x))) return st;
    transpose_batched(be, x->data, y->data, x->ne[0], x->ne[1], x->ne[2] * x->ne[3]);
    return LDM_OK;
}

ldm_status cpu_nlc_to_nchw(ldm_backend *be, const ldm_tensor *x, ldm_tensor *y) {
    const char *op = "nlc_to_nchw";
    ldm_status st;
    if ((st = cpu_check_act(op, "x", x)) || (st = cpu_check_act(op, "y", y))) return st;
    char s1[64], s2[64];
    if (x->ndim != 3 || y->ndim != 4 || y->ne[0] != x->ne[0] || x->ne[1] != y->ne[2] * y->ne[3] ||
        x->ne[2] != y->ne[1])
        return ldm_fail(LDM_ERR_INVALID_ARG, "nlc_to_nchw: x %s, y %s: need [N, H*W, C] -> [N, C, H, W]",
                        cpu_shape_str(x, s1, sizeof s1), cpu_shape_str(y, s2, sizeof s2));
    if ((st = cpu_check_no_alias(op, y, x))) return st;
    transpose_batched(be, x->data, y->data, x->ne[0], x->ne[1], x->ne[2]);
    return LDM_OK;
}

/* ------------------------------------------------------------------------------------------ */
/* embedding                                                                                  */
/* ------------------------------------------------------------------------------------------ */

ldm_status cpu_embedding(ldm_backend *be, const ldm_tensor *weight, const int32_t *ids, int64_t n, ldm_tensor *y) {
    const char *op = "embedding";
    ldm_status st;
    if ((st = cpu_check_weight(op, "weight", weight)) || (st = cpu_check_act(op, "y", y))) return st;
    if (!ids) return ldm_fail(LDM_ERR_INVALID_ARG, "embedding: ids is NULL");
    char s1[64], s2[64];
    if (weight->ndim != 2 || n < 1 || y->ne[y->ndim - 1] != weight->ne[1] || ldm_numel(y) != n * weight->ne[1])
        return ldm_fail(LDM_ERR_INVALID_ARG, "embedding: weight %s, %lld ids, y %s: need [V, D], y [n, D]",
                        cpu_shape_str(weight, s1, sizeof s1), (long long)n, cpu_shape_str(y, s2, sizeof s2));
    const int64_t v = weight->ne[0], d = weight->ne[1];
    for (int64_t i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= v)
            return ldm_fail(LDM_ERR_INVALID_ARG, "embedding: id %d at position %lld is outside [0, %lld)", (int)ids[i],
                            (long long)i, (long long)v);
    if ((st = cpu_check_no_alias(op, y, weight))) return st;
    float *yd = y->data;
    const ldm_dtype dt = weight->dtype;
    const void *wd = weight->data;
#pragma omp parallel for num_threads(par_threads(be, n * d)) schedule(static)
    for (int64_t i = 0; i < n; i++) cpu_convert_f32(dt, wd, (size_t)ids[i] * (size_t)d, yd + i * d, (size_t)d);
    return LDM_OK;
}
