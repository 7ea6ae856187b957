/* conv2d. 3x3 stride-1 convs with enough channels and pixels: Winograd F(4x4, 3x3)
 * (cpu_winograd.c; LDM_CPU_WINOGRAD=0 turns it off). Otherwise implicit GEMM on the backend's own
 * GEMM (cpu_gemm.h): the weight [cout, K]
 * is the A operand (widened from F16/BF16 while packed), the input is packed straight from the
 * image into B micro-panels (no column matrix), the bias is added in the kernel's epilogue; a
 * 1x1 stride-1 unpadded conv reads the image as a dense [cin, H*W] B.
 * With LDM_CPU_GEMM=openblas: im2col + cblas_sgemm, tiled over the flattened output positions so
 * that the column buffer never exceeds LDM_CPU_CONV_COL_BYTES. */
#include "cpu_gemm.h"
#include "cpu_internal.h"
#include "cpu_winograd.h"

#include <cblas.h>
#include <omp.h>
#include <stdlib.h>

typedef struct conv_geom {
    int64_t n, cin, h, w;      /* input */
    int64_t cout, kh, kw;      /* kernel */
    int64_t oh, ow;            /* output */
    int64_t s, pt, pl;         /* stride, top/left padding */
    int64_t k;                 /* cin * kh * kw: rows of the column matrix */
    int64_t p;                 /* oh * ow: output positions per image */
} conv_geom;

static inline int64_t ceil_div_nonneg(int64_t a, int64_t b) { return (a + b - 1) / b; }

/* Fills row `kidx` = (ci, ky, kx) of the column matrix for output positions [p0, p0 + cnt) of
 * one image: dst[j] = xpad[ci, oh*s + ky, ow*s + kx] where oh*ow flattened = p0 + j. */
static void im2col_row(const conv_geom *g, const float *x, int64_t kidx, int64_t p0, int64_t cnt, float *dst) {
    int64_t kx = kidx % g->kw, ky = (kidx / g->kw) % g->kh, ci = kidx / (g->kw * g->kh);
    const float *plane = x + ci * g->h * g->w;
    /* output columns whose input column is inside the image: [lo_all, hi_all) */
    int64_t off = g->pl - kx; /* iw = ow*s - off */
    int64_t lo_all = off <= 0 ? 0 : ceil_div_nonneg(off, g->s);
    int64_t lim = g->w - 1 + off; /* need ow*s <= lim */
    int64_t hi_all = lim < 0 ? 0 : LDM_MIN(g->ow, lim / g->s + 1);
    int64_t p = p0, end = p0 + cnt;
    while (p < end) {
        int64_t oh = p / g->ow, ow0 = p % g->ow;
        int64_t ow1 = LDM_MIN(g->ow, ow0 + (end - p));
        int64_t seg = ow1 - ow0;
        int64_t ih = oh * g->s - g->pt + ky;
        int64_t lo = LDM_MAX(lo_all, ow0), hi = LDM_MIN(hi_all, ow1);
        if (ih < 0 || ih >= g->h || lo >= hi) {
            memset(dst, 0, (size_t)seg * sizeof(float));
        } else {
            const float *src = plane + ih * g->w;
            if (lo > ow0) memset(dst, 0, (size_t)(lo - ow0) * sizeof(float));
            float *d = dst + (lo - ow0);
            if (g->s == 1) {
                memcpy(d, src + lo - off, (size_t)(hi - lo) * sizeof(float));
            } else {
                const float *sp = src + lo * g->s - off;
                for (int64_t i = 0; i < hi - lo; i++) d[i] = sp[i * g->s];
            }
            if (hi < ow1) memset(dst + (hi - ow0), 0, (size_t)(ow1 - hi) * sizeof(float));
        }
        dst += seg;
        p += seg;
    }
}

/* y[co, p0 .. p0+cnt) of one image (row stride ldy) = bias[co], or nothing when bias is NULL. */
static void fill_bias(float *y, int64_t ldy, int64_t cout, int64_t cnt, const float *bias) {
    for (int64_t co = 0; co < cout; co++) {
        float bv = bias[co];
        float *r = y + co * ldy;
        for (int64_t j = 0; j < cnt; j++) r[j] = bv;
    }
}

static ldm_status conv_check(const ldm_tensor *x, const ldm_tensor *w, const ldm_tensor *b,
                             const ldm_conv2d_params *p, const ldm_tensor *y, conv_geom *g) {
    const char *op = "conv2d";
    ldm_status st;
    if ((st = cpu_check_act(op, "x", x)) || (st = cpu_check_weight(op, "w", w)) ||
        (st = cpu_check_act(op, "y", y)))
        return st;
    if (b && (st = cpu_check_weight(op, "b", b))) return st;
    if (!p) return ldm_fail(LDM_ERR_INVALID_ARG, "conv2d: params is NULL");
    char s1[64], s2[64];
    if (x->ndim != 4 || w->ndim != 4 || y->ndim != 4)
        return ldm_fail(LDM_ERR_INVALID_ARG, "conv2d: x %s, w %s and y %s must all be 4-D",
                        cpu_shape_str(x, s1, sizeof s1), cpu_shape_str(w, s2, sizeof s2),
                        y->ndim == 4 ? "[4-D]" : "[not 4-D]");
    if (w->ne[1] != x->ne[1])
        return ldm_fail(LDM_ERR_INVALID_ARG, "conv2d: w %s expects %lld input channels, x %s has %lld",
                        cpu_shape_str(w, s1, sizeof s1), (long long)w->ne[1], cpu_shape_str(x, s2, sizeof s2),
                        (long long)x->ne[1]);
    if (b && ldm_numel(b) != w->ne[0])
        return ldm_fail(LDM_ERR_INVALID_ARG, "conv2d: bias has %lld elements for %lld output channels",
                        (long long)ldm_numel(b), (long long)w->ne[0]);
    if (p->stride < 1 || p->pad_top < 0 || p->pad_left < 0 || p->pad_bottom < 0 || p->pad_right < 0)
        return ldm_fail(LDM_ERR_INVALID_ARG, "conv2d: bad stride %d / padding %d,%d,%d,%d", (int)p->stride,
                        (int)p->pad_top, (int)p->pad_left, (int)p->pad_bottom, (int)p->pad_right);
    g->n = x->ne[0];
    g->cin = x->ne[1];
    g->h = x->ne[2];
    g->w = x->ne[3];
    g->cout = w->ne[0];
    g->kh = w->ne[2];
    g->kw = w->ne[3];
    g->s = p->stride;
    g->pt = p->pad_top;
    g->pl = p->pad_left;
    int64_t hp = g->h + p->pad_top + p->pad_bottom, wp = g->w + p->pad_left + p->pad_right;
    if (hp < g->kh || wp < g->kw)
        return ldm_fail(LDM_ERR_INVALID_ARG, "conv2d: kernel %lldx%lld larger than padded input %lldx%lld",
                        (long long)g->kh, (long long)g->kw, (long long)hp, (long long)wp);
    g->oh = (hp - g->kh) / g->s + 1;
    g->ow = (wp - g->kw) / g->s + 1;
    if (y->ne[0] != g->n || y->ne[1] != g->cout || y->ne[2] != g->oh || y->ne[3] != g->ow)
        return ldm_fail(LDM_ERR_INVALID_ARG, "conv2d: y is %s, expected [%lld, %lld, %lld, %lld]",
                        cpu_shape_str(y, s1, sizeof s1), (long long)g->n, (long long)g->cout, (long long)g->oh,
                        (long long)g->ow);
    g->k = g->cin * g->kh * g->kw;
    g->p = g->oh * g->ow;
    if (g->k > INT32_MAX || g->p > INT32_MAX || g->cout > INT32_MAX)
        return ldm_fail(LDM_ERR_INVALID_ARG, "conv2d: dimensions exceed the BLAS index range");
    return cpu_check_no_alias(op, y, x);
}

static ldm_status conv2d_gemm(ldm_backend *be, const conv_geom *g, const ldm_tensor *x, const ldm_tensor *w,
                              const ldm_tensor *b, ldm_tensor *y) {
    const int nt = cpu_threads(be);
    cpu_weight bf;
    ldm_status st = cpu_weight_get("conv2d", b, 1, &bf);
    if (st) return st;
    if (cpu_winograd_enabled() && cpu_winograd_eligible(g->cin, g->cout, g->kh, g->kw, g->s, g->oh, g->ow, g->n, nt)) {
        st = cpu_conv2d_winograd(nt, x, w, bf.p, g->pt, g->pl, y);
        cpu_weight_release(&bf);
        if (st == LDM_OK) return st;
        /* out of memory for the transforms: the implicit GEMM needs less */
        if ((st = cpu_weight_get("conv2d", b, 1, &bf))) return st;
    }
    cpu_gemm_args a = {.m = g->cout, .n = g->p, .k = g->k, .batch = g->n};
    a.A = (cpu_gemm_mat){w->dtype, w->data, g->k, 1, 0, 1.0f, false};
    cpu_gemm_mat B;
    cpu_gemm_conv cv;
    if (g->kh == 1 && g->kw == 1 && g->s == 1 && g->pt == 0 && g->pl == 0 && g->oh == g->h && g->ow == g->w) {
        B = (cpu_gemm_mat){LDM_DT_F32, x->data, g->p, 1, g->cin * g->p, 1.0f, false};
        a.B = &B;
    } else {
        cv = (cpu_gemm_conv){x->data, g->cin, g->h, g->w, g->kh, g->kw, g->s, g->pt, g->pl, g->oh, g->ow};
        a.Bconv = &cv;
    }
    a.C = y->data;
    a.ldc = g->p;
    a.c_batch_stride = g->cout * g->p;
    a.bias_m = bf.p;
    st = cpu_gemm(nt, &a);
    cpu_weight_release(&bf);
    return st;
}

ldm_status cpu_conv2d(ldm_backend *be, const ldm_tensor *x, const ldm_tensor *w, const ldm_tensor *b,
                      const ldm_conv2d_params *p, ldm_tensor *y) {
    conv_geom g;
    ldm_status st = conv_check(x, w, b, p, y, &g);
    if (st) return st;
    if (!cpu_gemm_use_openblas()) return conv2d_gemm(be, &g, x, w, b, y);
    const int nt = cpu_threads(be);
    cpu_weight wf, bf;
    if ((st = cpu_weight_get("conv2d", w, nt, &wf))) return st;
    if ((st = cpu_weight_get("conv2d", b, nt, &bf))) {
        cpu_weight_release(&wf);
        return st;
    }
    const float *xd = x->data;
    float *yd = y->data;
    const float *W = wf.p, *B = bf.p;
    const float beta = B ? 1.0f : 0.0f;
    const int64_t img_in = g.cin * g.h * g.w, img_out = g.cout * g.p;

    if (g.kh == 1 && g.kw == 1 && g.s == 1 && g.pt == 0 && g.pl == 0 && g.oh == g.h && g.ow == g.w) {
        /* 1x1: Y_n[cout, P] = W[cout, cin] X_n[cin, P], no column matrix */
        for (int64_t n = 0; n < g.n; n++) {
            float *yn = yd + n * img_out;
            if (B) {
#pragma omp parallel for num_threads(g.cout * g.p >= 65536 ? nt : 1) schedule(static)
                for (int64_t co = 0; co < g.cout; co++) fill_bias(yn + co * g.p, g.p, 1, g.p, B + co);
            }
            cpu_sgemm_openblas(nt, false, g.cout, g.p, g.cin, 1.0f, W, g.cin, xd + n * img_in, g.p, beta, yn, g.p);
        }
        goto done;
    }

    if (g.p >= g.cout || nt == 1) {
        /* Many output positions (the common case): independent (image, column tile) tasks, each
         * thread building its own column tile and running a single-threaded sgemm on it. No
         * barrier between im2col and the product, and the tile is still in the thread's cache
         * when sgemm packs it. Per thread min(4 MiB, budget / threads): smaller tiles make sgemm
         * repack the weights too often (measured: 1 MiB tiles cost ~20% at K = 2880, 4 MiB is the
         * best single-thread point). */
        size_t per = LDM_MIN((size_t)4 << 20, LDM_CPU_CONV_COL_BYTES / (size_t)nt);
        int64_t tile = (int64_t)(per / sizeof(float)) / g.k;
        if (tile >= 32) tile = tile / 16 * 16;
        tile = LDM_MAX(1, LDM_MIN(tile, g.p));
        int64_t ntiles = (g.p + tile - 1) / tile;
        if (g.n * ntiles < nt) { /* too few tasks: spread each image over the threads */
            int64_t want = (nt + g.n - 1) / g.n;
            tile = LDM_MAX(1, (g.p + want - 1) / want);
            ntiles = (g.p + tile - 1) / tile;
        }
        const int64_t tasks = g.n * ntiles;
        const int nt2 = (int)LDM_MIN((int64_t)nt, tasks);
        const size_t col_elems = (size_t)(g.k * tile);
        float *col = cpu_alloc(col_elems * (size_t)nt2, sizeof(float), "conv2d column buffer");
        if (!col) {
            st = LDM_ERR_NO_MEMORY;
            goto done;
        }
        cpu_blas_set_threads(1);
#pragma omp parallel num_threads(nt2)
        {
            float *mycol = col + (size_t)omp_get_thread_num() * col_elems;
#pragma omp for schedule(dynamic, 1)
            for (int64_t t = 0; t < tasks; t++) {
                int64_t n = t / ntiles, p0 = (t % ntiles) * tile, cnt = LDM_MIN(tile, g.p - p0);
                const float *xn = xd + n * img_in;
                float *yn = yd + n * img_out;
                for (int64_t kidx = 0; kidx < g.k; kidx++) im2col_row(&g, xn, kidx, p0, cnt, mycol + kidx * cnt);
                if (B) fill_bias(yn + p0, g.p, g.cout, cnt, B);
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)g.cout, (int)cnt, (int)g.k, 1.0f, W,
                            (int)g.k, mycol, (int)cnt, beta, yn + p0, (int)g.p);
            }
        }
        cpu_free(col);
        goto done;
    }

    {
        /* Few output positions, many output channels (the UNet's 16x16 and 8x8 levels): one shared
         * column tile (whole budget) built by all threads, then the product split over output
         * channels, so each thread packs only its slice of the (large) weight matrix. */
        int64_t tile = (int64_t)(LDM_CPU_CONV_COL_BYTES / sizeof(float)) / g.k;
        tile = LDM_MAX(1, LDM_MIN(tile, g.p));
        float *col = cpu_alloc((size_t)(g.k * tile), sizeof(float), "conv2d column buffer");
        if (!col) {
            st = LDM_ERR_NO_MEMORY;
            goto done;
        }
        for (int64_t n = 0; n < g.n; n++) {
            const float *xn = xd + n * img_in;
            float *yn = yd + n * img_out;
            for (int64_t p0 = 0; p0 < g.p; p0 += tile) {
                int64_t cnt = LDM_MIN(tile, g.p - p0);
#pragma omp parallel num_threads(nt)
                {
#pragma omp for schedule(static) nowait
                    for (int64_t kidx = 0; kidx < g.k; kidx++) im2col_row(&g, xn, kidx, p0, cnt, col + kidx * cnt);
                    if (B) {
#pragma omp for schedule(static) nowait
                        for (int64_t co = 0; co < g.cout; co++) fill_bias(yn + co * g.p + p0, g.p, 1, cnt, B + co);
                    }
                }
                cpu_sgemm_openblas(nt, false, g.cout, cnt, g.k, 1.0f, W, g.k, col, cnt, beta, yn + p0, g.p);
            }
        }
        cpu_free(col);
    }
done:
    cpu_weight_release(&wf);
    cpu_weight_release(&bf);
    return st;
}
