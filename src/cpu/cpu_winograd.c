/* Winograd F(4x4, 3x3) convolution for 3x3 stride-1 convs on large images (Lavin & Gray,
 * "Fast Algorithms for Convolutional Neural Networks", 2016; points 0, +-1, +-2, inf).
 *
 * Each 4x4 output tile is A^T [ (G g G^T) (.) (B^T d B) ] A over its 6x6 input patch d: 36
 * multiplications per tile and channel pair instead of 144, so the channel contraction becomes
 * 36 independent GEMMs  M_p[k, t] = sum_c U_p[k, c] V_p[c, t]  (p = one of the 6x6 transform
 * points, t = a tile) run on the backend's GEMM micro-kernel:
 *  - U = G g G^T for every (k, c), once per call ([36][K][C], at most 64 MiB: eligibility);
 *  - each thread takes chunks of whole tile rows (dynamic schedule, no barrier inside the
 *    conv): V = B^T d B for the chunk (along y over whole input rows, vectorised, then along x
 *    per tile), the 36 GEMMs on its own thread, then y = A^T M A (+ bias) row by row.
 * Float32 error: the transforms' coefficients (up to 5 and 8, 1/24) cost ~1e-6 relative per
 * output, against ~1e-7 for a direct sum; every golden case of the project stays inside its
 * tolerance (meson test). */
#include "cpu_gemm.h"
#include "cpu_math.h"
#include "cpu_winograd.h"

#include <omp.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

static bool g_wg_on;
static pthread_once_t g_wg_once = PTHREAD_ONCE_INIT;
static void wg_init(void) {
    const char *e = getenv("LDM_CPU_WINOGRAD");
    g_wg_on = !(e && e[0] == '0') && !cpu_gemm_use_openblas();
}
bool cpu_winograd_enabled(void) {
    pthread_once(&g_wg_once, wg_init);
    return g_wg_on;
}

/* The fewest tile rows per chunk: at least WG_MIN_CHUNK_TILES tiles (the GEMM kernel's width),
 * whole rows, at most the image. */
#define WG_MIN_CHUNK_TILES 32
static int64_t min_chunk_rows(int64_t tx, int64_t ty) {
    return LDM_MIN(ty, (WG_MIN_CHUNK_TILES + tx - 1) / tx);
}

bool cpu_winograd_eligible(int64_t cin, int64_t cout, int64_t kh, int64_t kw, int64_t stride, int64_t oh, int64_t ow,
                           int64_t n, int n_threads) {
    if (kh != 3 || kw != 3 || stride != 1) return false;
    /* enough channels for the GEMMs to run at speed, and enough tiles to amortise the weight
     * transform (36 K x C floats, at most 64 MiB of them): it costs ~36 K C against 36 K C T
     * GEMM MACs. Measured single-threaded (docs/cpu-backend.md, bench_ops --conv3x3): 64 tiles
     * lose (0.97x for 320->320, 0.8x for 640->640), 128 tiles win 1.15-1.4x, 256 and more 1.2-2.7x;
     * weights past 64 MiB break even at 128 tiles (1280->640 32x32 x2: 1.00x). */
    const int64_t ty = (oh + 3) / 4, tx = (ow + 3) / 4, tiles = n * ty * tx;
    if (cin < 32 || cout < 32 || tiles < 128) return false;
    if (36 * cin * cout * (int64_t)sizeof(float) > ((int64_t)64 << 20)) return false;
    /* the threads split the tiles only (whole tile rows, >= 32 tiles a chunk): with fewer chunks
     * than threads, the implicit GEMM (split over channels too) keeps them all busy */
    if (n * ((ty + min_chunk_rows(tx, ty) - 1) / min_chunk_rows(tx, ty)) < (int64_t)(n_threads > 0 ? n_threads : 1))
        return false;
    return true;
}

typedef struct wg {
    int64_t n, C, K, H, W, oh, ow, pt, pl;
    int64_t ty, tx;    /* tiles per column / row of one image */
    int64_t rows;      /* tile rows per chunk */
    float *U;          /* [36][K][C] */
} wg;

/* u[36][c] = (G g_c G^T) for a row of C 3x3 kernels g[9][c] (float, vectorised over c). */
LDM_CPU_CLONES static void wt_row(const float *g, int64_t C, float *u) {
    for (int64_t c = 0; c < C; c++) {
        float t[18];
        for (int j = 0; j < 3; j++) { /* along y, column j: t[i][j] = (G g[:, j])_i */
            const float g0 = g[j * C + c], g1 = g[(3 + j) * C + c], g2 = g[(6 + j) * C + c];
            t[j] = g0 * 0.25f;
            t[3 + j] = -(g0 + g1 + g2) * (1.0f / 6.0f);
            t[6 + j] = -(g0 - g1 + g2) * (1.0f / 6.0f);
            t[9 + j] = g0 * (1.0f / 24.0f) + g1 * (1.0f / 12.0f) + g2 * (1.0f / 6.0f);
            t[12 + j] = g0 * (1.0f / 24.0f) - g1 * (1.0f / 12.0f) + g2 * (1.0f / 6.0f);
            t[15 + j] = g2;
        }
        for (int i = 0; i < 6; i++) { /* along x */
            const float g0 = t[3 * i], g1 = t[3 * i + 1], g2 = t[3 * i + 2];
            u[(6 * i + 0) * C + c] = g0 * 0.25f;
            u[(6 * i + 1) * C + c] = -(g0 + g1 + g2) * (1.0f / 6.0f);
            u[(6 * i + 2) * C + c] = -(g0 - g1 + g2) * (1.0f / 6.0f);
            u[(6 * i + 3) * C + c] = g0 * (1.0f / 24.0f) + g1 * (1.0f / 12.0f) + g2 * (1.0f / 6.0f);
            u[(6 * i + 4) * C + c] = g0 * (1.0f / 24.0f) - g1 * (1.0f / 12.0f) + g2 * (1.0f / 6.0f);
            u[(6 * i + 5) * C + c] = g2;
        }
    }
}

/* U_p = (G g G^T)_p for every (k, c), each U_p (K x C) in the GEMM kernel's A panel layout
 * (cpu_gemm_prepacked_index), so the 36 GEMMs of every chunk use it as it is. Per output
 * channel k: its C kernels widened to float and transposed to [9][C], transformed together. */
static ldm_status weight_transform(const wg *s, const cpu_gemm_impl *im, const ldm_tensor *w, int nt) {
    const int64_t K = s->K, C = s->C, MR = im->mr;
    const size_t per_p = cpu_gemm_prepacked_floats(im, K, C);
    float *U = s->U;
    /* rows K .. Kp of the panels are zero */
    if ((K % MR) != 0) memset(U, 0, 36 * per_p * sizeof(float));
    float *scratch = cpu_alloc((size_t)nt * (size_t)(54 * C), sizeof(float), "winograd weight rows");
    if (!scratch) return LDM_ERR_NO_MEMORY;
    const int64_t kb = cpu_gemm_kblock(C), mp = (K + MR - 1) / MR * MR;
#pragma omp parallel num_threads(nt)
    {
        float *raw = scratch + (size_t)omp_get_thread_num() * (size_t)(54 * C), *g = raw + 9 * C, *u = g + 9 * C;
#pragma omp for schedule(static)
        for (int64_t k = 0; k < K; k++) {
            cpu_convert_f32(w->dtype, w->data, (size_t)(k * C * 9), raw, (size_t)(9 * C));
            for (int64_t c = 0; c < C; c++)
                for (int j = 0; j < 9; j++) g[j * C + c] = raw[c * 9 + j];
            wt_row(g, C, u);
            /* scatter into the panels: column c of row k (cpu_gemm_prepacked_index, unrolled) */
            const int64_t q = k / MR, i = k % MR;
            for (int64_t c0 = 0; c0 < C; c0 += kb) {
                const int64_t kc = LDM_MIN(kb, C - c0);
                for (int p = 0; p < 36; p++) {
                    float *dst = U + p * per_p + c0 * mp + q * kc * MR + i;
                    const float *src = u + p * C + c0;
                    for (int64_t c = 0; c < kc; c++) dst[c * MR] = src[c];
                }
            }
        }
    }
    cpu_free(scratch);
    return LDM_OK;
}

/* The chunk's tiles: rows [r0, r0 + nr) of image img, tile j = (row - r0) * tx + col.
 * V[p][c][j] = (B^T d B)_p. Along y first for whole input rows (contiguous, vectorised over x),
 * then along x per tile. rowbuf: 6 * X + 6 * X floats, X = 4 tx + 2. */
LDM_CPU_CLONES static void input_chunk(const wg *s, const float *x, int64_t img, int64_t r0, int64_t nr, float *V,
                                       float *rowbuf) {
    const int64_t C = s->C, tx = s->tx, X = 4 * tx + 2, tc = nr * tx;
    float *in = rowbuf, *tmp = rowbuf + 6 * X;
    for (int64_t c = 0; c < C; c++) {
        const float *plane = x + (img * C + c) * s->H * s->W;
        for (int64_t r = r0; r < r0 + nr; r++) {
            /* the 6 input rows of this tile row, zero-padded to X columns starting at -pl */
            for (int yy = 0; yy < 6; yy++) {
                const int64_t iy = r * 4 - s->pt + yy;
                float *dst = in + yy * X;
                if (iy < 0 || iy >= s->H) {
                    for (int64_t i = 0; i < X; i++) dst[i] = 0.0f;
                    continue;
                }
                const float *src = plane + iy * s->W;
                for (int64_t i = 0; i < X; i++) {
                    const int64_t ix = i - s->pl;
                    dst[i] = ix >= 0 && ix < s->W ? src[ix] : 0.0f;
                }
            }
            /* along y: tmp[i][xi] = (B^T column)_i */
            for (int64_t xi = 0; xi < X; xi++) {
                const float z0 = in[xi], z1 = in[X + xi], z2 = in[2 * X + xi], z3 = in[3 * X + xi], z4 = in[4 * X + xi],
                            z5 = in[5 * X + xi];
                tmp[xi] = 4.0f * z0 - 5.0f * z2 + z4;
                tmp[X + xi] = -4.0f * z1 - 4.0f * z2 + z3 + z4;
                tmp[2 * X + xi] = 4.0f * z1 - 4.0f * z2 - z3 + z4;
                tmp[3 * X + xi] = -2.0f * z1 - z2 + 2.0f * z3 + z4;
                tmp[4 * X + xi] = 2.0f * z1 - z2 - 2.0f * z3 + z4;
                tmp[5 * X + xi] = 4.0f * z1 - 5.0f * z3 + z5;
            }
            /* along x, per tile */
            const int64_t j0 = (r - r0) * tx;
            for (int i = 0; i < 6; i++) {
                const float *ti = tmp + i * X;
                float *v0 = V + ((6 * i + 0) * C + c) * tc + j0, *v1 = V + ((6 * i + 1) * C + c) * tc + j0,
                      *v2 = V + ((6 * i + 2) * C + c) * tc + j0, *v3 = V + ((6 * i + 3) * C + c) * tc + j0,
                      *v4 = V + ((6 * i + 4) * C + c) * tc + j0, *v5 = V + ((6 * i + 5) * C + c) * tc + j0;
                for (int64_t t = 0; t < tx; t++) {
                    const float *z = ti + 4 * t;
                    v0[t] = 4.0f * z[0] - 5.0f * z[2] + z[4];
                    v1[t] = -4.0f * z[1] - 4.0f * z[2] + z[3] + z[4];
                    v2[t] = 4.0f * z[1] - 4.0f * z[2] - z[3] + z[4];
                    v3[t] = -2.0f * z[1] - z[2] + 2.0f * z[3] + z[4];
                    v4[t] = 2.0f * z[1] - z[2] - 2.0f * z[3] + z[4];
                    v5[t] = 4.0f * z[1] - 5.0f * z[3] + z[5];
                }
            }
        }
    }
}

/* y rows of the chunk from M[p][k][j] (+ bias): A^T along x per tile (vectorised over the
 * tiles of a row), then along y, assembled into output rows. buf: 24 * tx + 4 * (4 tx) floats. */
LDM_CPU_CLONES static void output_chunk(const wg *s, const float *M, int64_t img, int64_t r0, int64_t nr,
                                        const float *bias, float *y, float *buf) {
    const int64_t K = s->K, tx = s->tx, tc = nr * tx, OW = 4 * tx;
    float *tmp = buf, *rows = buf + 24 * tx; /* tmp[6][4][tx], rows[4][OW] */
    for (int64_t k = 0; k < K; k++) {
        const float bk = bias ? bias[k] : 0.0f;
        float *plane = y + (img * K + k) * s->oh * s->ow;
        for (int64_t r = r0; r < r0 + nr; r++) {
            const int64_t j0 = (r - r0) * tx;
            for (int i = 0; i < 6; i++) {
                const float *m0 = M + ((6 * i + 0) * K + k) * tc + j0, *m1 = M + ((6 * i + 1) * K + k) * tc + j0,
                            *m2 = M + ((6 * i + 2) * K + k) * tc + j0, *m3 = M + ((6 * i + 3) * K + k) * tc + j0,
                            *m4 = M + ((6 * i + 4) * K + k) * tc + j0, *m5 = M + ((6 * i + 5) * K + k) * tc + j0;
                float *o = tmp + i * 4 * tx;
                for (int64_t t = 0; t < tx; t++) {
                    const float a = m1[t] + m2[t], b = m1[t] - m2[t], c = m3[t] + m4[t], d = m3[t] - m4[t];
                    o[t] = m0[t] + a + c;
                    o[tx + t] = b + 2.0f * d;
                    o[2 * tx + t] = a + 4.0f * c;
                    o[3 * tx + t] = b + 8.0f * d + m5[t];
                }
            }
            /* along y: row yy, column 4 t + xx */
            for (int xx = 0; xx < 4; xx++) {
                const float *q0 = tmp + xx * tx, *q1 = q0 + 4 * tx, *q2 = q1 + 4 * tx, *q3 = q2 + 4 * tx,
                            *q4 = q3 + 4 * tx, *q5 = q4 + 4 * tx;
                for (int64_t t = 0; t < tx; t++) {
                    const float a = q1[t] + q2[t], b = q1[t] - q2[t], c = q3[t] + q4[t], d = q3[t] - q4[t];
                    rows[4 * t + xx] = q0[t] + a + c + bk;
                    rows[OW + 4 * t + xx] = b + 2.0f * d + bk;
                    rows[2 * OW + 4 * t + xx] = a + 4.0f * c + bk;
                    rows[3 * OW + 4 * t + xx] = b + 8.0f * d + q5[t] + bk;
                }
            }
            const int64_t ny = LDM_MIN((int64_t)4, s->oh - 4 * r);
            for (int64_t yy = 0; yy < ny; yy++) memcpy(plane + (4 * r + yy) * s->ow, rows + yy * OW, (size_t)s->ow * sizeof(float));
        }
    }
}

ldm_status cpu_conv2d_winograd(int n_threads, const ldm_tensor *x, const ldm_tensor *w, const float *bias,
                               int64_t pt, int64_t pl, ldm_tensor *y) {
    wg s;
    s.n = x->ne[0];
    s.C = x->ne[1];
    s.H = x->ne[2];
    s.W = x->ne[3];
    s.K = w->ne[0];
    s.oh = y->ne[2];
    s.ow = y->ne[3];
    s.pt = pt;
    s.pl = pl;
    s.ty = (s.oh + 3) / 4;
    s.tx = (s.ow + 3) / 4;
    /* a chunk: whole tile rows of one image, >= 64 tiles where the image allows, V and M of
     * the chunk under ~8 MiB per thread where one row allows */
    const int64_t per_row = 36 * (s.C + s.K) * s.tx * (int64_t)sizeof(float);
    s.rows = LDM_MAX((int64_t)1, LDM_MIN((64 + s.tx - 1) / s.tx, ((int64_t)8 << 20) / per_row));
    s.rows = LDM_MIN(s.rows, s.ty);
    /* smaller chunks (down to 32 tiles) where that gives every thread one */
    const int64_t rmin = min_chunk_rows(s.tx, s.ty);
    while (s.rows > rmin && s.n * ((s.ty + s.rows - 1) / s.rows) < (int64_t)n_threads) s.rows--;
    const int64_t nchunks_img = (s.ty + s.rows - 1) / s.rows, chunks = s.n * nchunks_img;
    const int64_t tcmax = s.rows * s.tx;
    const size_t vfl = (size_t)(36 * s.C * tcmax), mfl = (size_t)(36 * s.K * tcmax),
                 bfl = (size_t)(12 * (4 * s.tx + 2) + 24 * s.tx + 16 * s.tx + 64);
    const size_t per = vfl + mfl + bfl;
    const int nt = (int)LDM_MIN((int64_t)(n_threads > 0 ? n_threads : 1), chunks);
    const cpu_gemm_impl *im = cpu_gemm_get_impl();
    const size_t per_p = cpu_gemm_prepacked_floats(im, s.K, s.C);
    s.U = cpu_alloc(36 * per_p, sizeof(float), "winograd weights");
    if (!s.U) return LDM_ERR_NO_MEMORY;
    if (weight_transform(&s, im, w, nt)) {
        cpu_free(s.U);
        return LDM_ERR_NO_MEMORY;
    }
    int failed = 0;
#pragma omp parallel num_threads(nt)
    {
        /* the chunk's V, M and row buffers: this thread's scratch slot 1 (cpu_gemm uses slot 0) */
        float *V = cpu_thread_scratch(1, per), *M = V ? V + vfl : NULL, *buf = M ? M + mfl : NULL;
        if (!V) {
#pragma omp atomic write
            failed = 1;
        }
#pragma omp for schedule(dynamic, 1)
        for (int64_t ch = 0; ch < chunks; ch++) {
            if (!V) continue;
            const int64_t img = ch / nchunks_img, r0 = (ch % nchunks_img) * s.rows, nr = LDM_MIN(s.rows, s.ty - r0),
                          tc = nr * s.tx;
            input_chunk(&s, x->data, img, r0, nr, V, buf);
            /* the 36 products M_p = U_p V_p, on this thread */
            cpu_gemm_mat B = {LDM_DT_F32, V, tc, 1, s.C * tc, 1.0f, false};
            cpu_gemm_args a = {.m = s.K, .n = tc, .k = s.C, .batch = 36,
                               .A = {LDM_DT_F32, s.U, 0, 0, (int64_t)per_p, 1.0f, true}, .B = &B, .C = M, .ldc = tc,
                               .c_batch_stride = s.K * tc};
            if (cpu_gemm(1, &a)) {
#pragma omp atomic write
                failed = 1;
                continue;
            }
            output_chunk(&s, M, img, r0, nr, bias, y->data, buf);
        }
    }
    cpu_free(s.U);
    return failed ? ldm_fail(LDM_ERR_NO_MEMORY, "conv2d: out of memory for the Winograd tiles") : LDM_OK;
}
