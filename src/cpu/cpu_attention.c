/* Multi-head attention without any Lq x Lk score matrix.
 *
 * Default (flash-style, on the backend's GEMM micro-kernel): per (batch, head), K is packed once
 * as A micro-panels (keys x D) and V^T as A micro-panels (D x keys). Each task takes NR queries
 * (the kernel's column width) and walks the keys in chunks of KEY_CHUNK:
 *   S^T = K_chunk (scale Q)^T       [keys x NR]: the kernel's C tile layout is exactly the packed
 *                                   B layout the second product needs, so nothing is repacked;
 *   online softmax down the columns (one query per column: max and sum are vector ops across
 *   keys, no horizontal reductions), rescaling the running output by exp(m_old - m_new);
 *   O^T += V^T_chunk P^T            [D x NR], k = the chunk's keys.
 * At the end y[q, head] = O^T[:, q] / l[q]. Per thread: NR x KEY_CHUNK scores plus D x NR
 * outputs, whatever L is. Cross-attention (77 keys) is one chunk: one GEMM pair per query block.
 *
 * With LDM_CPU_GEMM=openblas: tiles of query rows, S = scale Q K^T by cblas_sgemm (the head's
 * columns read in place), row softmax, O = P V, rows divided by their sums. */
#include "cpu_gemm.h"
#include "cpu_internal.h"
#include "cpu_math.h"

#include <math.h>

#include <cblas.h>
#include <omp.h>
#include <stdlib.h>

/* Softmax numerator of row s[0, valid) in place, zeroes s[valid, n); returns 1 / sum. */
LDM_CPU_CLONES static float softmax_row(float *s, int64_t n, int64_t valid) {
    float m = s[0];
#pragma omp simd reduction(max : m)
    for (int64_t i = 0; i < valid; i++) m = s[i] > m ? s[i] : m;
    float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
    for (int64_t i = 0; i < valid; i++) {
        float e = cpu_expf(s[i] - m);
        s[i] = e;
        sum += e;
    }
    for (int64_t i = valid; i < n; i++) s[i] = 0.0f;
    return 1.0f / sum;
}

typedef struct attn_geom {
    int64_t b, lq, lk, h, d, hd;
    float scale;
    int causal;
    int64_t tq, ntiles;
} attn_geom;

/* One (batch, head, query tile) task with single-threaded sgemm; s holds tq x lk floats. */
static void attn_task(const attn_geom *g, const float *q, const float *k, const float *v, float *y, int64_t task,
                      float *s, float *inv) {
    int64_t tile = task % g->ntiles, bh = task / g->ntiles, hh = bh % g->h, bb = bh / g->h;
    int64_t i0 = tile * g->tq, rows = LDM_MIN(g->tq, g->lq - i0);
    int64_t kv = g->causal ? LDM_MIN(g->lk, i0 + rows) : g->lk;
    const float *Q = q + (bb * g->lq + i0) * g->hd + hh * g->d;
    const float *K = k + bb * g->lk * g->hd + hh * g->d;
    const float *V = v + bb * g->lk * g->hd + hh * g->d;
    float *Y = y + (bb * g->lq + i0) * g->hd + hh * g->d;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)rows, (int)kv, (int)g->d, g->scale, Q, (int)g->hd, K,
                (int)g->hd, 0.0f, s, (int)kv);
    for (int64_t r = 0; r < rows; r++) {
        int64_t valid = g->causal ? LDM_MIN(kv, i0 + r + 1) : kv;
        inv[r] = softmax_row(s + r * kv, kv, valid);
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)rows, (int)g->d, (int)kv, 1.0f, s, (int)kv, V,
                (int)g->hd, 0.0f, Y, (int)g->hd);
    for (int64_t r = 0; r < rows; r++) {
        float *yr = Y + r * g->hd, f = inv[r];
        for (int64_t j = 0; j < g->d; j++) yr[j] *= f;
    }
}

/* ---------------------------------------------------------------------------------------- */
/* Flash-style path                                                                          */
/* ---------------------------------------------------------------------------------------- */

#define KEY_CHUNK 512 /* keys per chunk: NR x 512 scores = 64 KiB at NR = 32 (L2-resident) */

typedef struct flash_geom {
    const cpu_gemm_impl *im;
    int64_t b, lq, lk, h, d, hd;
    float scale;
    int causal;
    int64_t kp_floats, vp_floats; /* packed K and V^T per (batch, head) */
    int64_t qblocks;
    int64_t chunk;                /* keys per chunk: KEY_CHUNK rounded down to a multiple of MR */
    bool softmax32;               /* the AVX-512 column softmax can run */
    float *packed;                /* [b * h] x (kp + vp) */
} flash_geom;

/* Column softmax pass over rows [0, rows) of s (NR columns): running max m, sum l, correction
 * factors corr (exp(m_old - m_new)); s becomes P. first: no previous state. Causal: key index
 * key0 + r is masked for query q0 + j < key0 + r. */
LDM_CPU_CLONES static void flash_softmax(float *s, int64_t rows, int nr, float *m, float *l, float *corr, int first,
                                         int causal, int64_t key0, int64_t q0) {
    float cm[64];
    for (int j = 0; j < nr; j++) cm[j] = -INFINITY;
    for (int64_t r = 0; r < rows; r++) {
        float *sr = s + r * nr;
        if (causal) {
            const int64_t key = key0 + r;
            for (int j = 0; j < nr; j++)
                if (q0 + j < key) sr[j] = -INFINITY;
        }
        for (int j = 0; j < nr; j++) cm[j] = sr[j] > cm[j] ? sr[j] : cm[j];
    }
    for (int j = 0; j < nr; j++) {
        /* a column whose keys are all masked in this chunk keeps its state (causal only) */
        float mn = first ? cm[j] : (cm[j] > m[j] ? cm[j] : m[j]);
        corr[j] = first ? 0.0f : (mn == m[j] ? 1.0f : cpu_expf(m[j] - mn));
        m[j] = mn;
        cm[j] = 0.0f; /* reused as the chunk's column sums */
    }
    for (int64_t r = 0; r < rows; r++) {
        float *sr = s + r * nr;
#pragma omp simd
        for (int j = 0; j < nr; j++) {
            /* exp(-inf - m) must be an exact 0 (cpu_expf clamps its argument) */
            float e = cpu_expf(sr[j] - m[j]);
            e = sr[j] == -INFINITY ? 0.0f : e;
            sr[j] = e;
            cm[j] += e;
        }
    }
    for (int j = 0; j < nr; j++) l[j] = first ? cm[j] : l[j] * corr[j] + cm[j];
}

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define HAVE_SOFTMAX32 1

/* exp(x) for x <= 0 (scores minus their running max), as cpu_expf: Cody-Waite reduction, the
 * Cephes degree-6 polynomial, 2^n applied by vscalefps. Inputs below -87.3 give ~1e-38. */
__attribute__((target("avx512f"))) static inline __m512 exp512(__m512 x) {
    x = _mm512_max_ps(x, _mm512_set1_ps(-87.3f));
    const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                          _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
    __m512 p = _mm512_set1_ps(1.9875691500e-4f);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
    p = _mm512_fmadd_ps(p, _mm512_mul_ps(r, r), _mm512_add_ps(r, _mm512_set1_ps(1.0f)));
    return _mm512_scalef_ps(p, n);
}

/* flash_softmax for 32 columns without a mask, in registers. */
__attribute__((target("avx512f"))) static void flash_softmax32(float *s, int64_t rows, float *m, float *l,
                                                                float *corr, int first) {
    __m512 c0 = _mm512_set1_ps(-INFINITY), c1 = c0;
    for (int64_t r = 0; r < rows; r++) {
        c0 = _mm512_max_ps(c0, _mm512_load_ps(s + r * 32));
        c1 = _mm512_max_ps(c1, _mm512_load_ps(s + r * 32 + 16));
    }
    __m512 m0 = c0, m1 = c1;
    if (!first) {
        const __m512 o0 = _mm512_loadu_ps(m), o1 = _mm512_loadu_ps(m + 16);
        m0 = _mm512_max_ps(c0, o0);
        m1 = _mm512_max_ps(c1, o1);
        _mm512_storeu_ps(corr, exp512(_mm512_sub_ps(o0, m0)));
        _mm512_storeu_ps(corr + 16, exp512(_mm512_sub_ps(o1, m1)));
    }
    _mm512_storeu_ps(m, m0);
    _mm512_storeu_ps(m + 16, m1);
    __m512 s0 = _mm512_setzero_ps(), s1 = s0;
    for (int64_t r = 0; r < rows; r++) {
        const __m512 e0 = exp512(_mm512_sub_ps(_mm512_load_ps(s + r * 32), m0));
        const __m512 e1 = exp512(_mm512_sub_ps(_mm512_load_ps(s + r * 32 + 16), m1));
        _mm512_store_ps(s + r * 32, e0);
        _mm512_store_ps(s + r * 32 + 16, e1);
        s0 = _mm512_add_ps(s0, e0);
        s1 = _mm512_add_ps(s1, e1);
    }
    if (!first) {
        s0 = _mm512_fmadd_ps(_mm512_loadu_ps(l), _mm512_loadu_ps(corr), s0);
        s1 = _mm512_fmadd_ps(_mm512_loadu_ps(l + 16), _mm512_loadu_ps(corr + 16), s1);
    }
    _mm512_storeu_ps(l, s0);
    _mm512_storeu_ps(l + 16, s1);
}
#endif

static void flash_pack(const flash_geom *g, const float *k, const float *v, int64_t bh) {
    const cpu_gemm_impl *im = g->im;
    const int64_t bb = bh / g->h, hh = bh % g->h;
    float *kp = g->packed + bh * (g->kp_floats + g->vp_floats), *vp = kp + g->kp_floats;
    const float *K = k + bb * g->lk * g->hd + hh * g->d, *V = v + bb * g->lk * g->hd + hh * g->d;
    /* K as A: rows = keys, k = d (rows contiguous); V^T as A: rows = d, k = keys (columns contiguous) */
    cpu_gemm_mat KA = {LDM_DT_F32, K, g->hd, 1, 0, 1.0f, false}, VA = {LDM_DT_F32, V, 1, g->hd, 0, 1.0f, false};
    cpu_gemm_pack_a(im, &KA, K, 0, g->lk, 0, g->d, kp);
    cpu_gemm_pack_a(im, &VA, V, 0, g->d, 0, g->lk, vp);
}

/* One task: NR queries of one (batch, head). buf: d*NR (Q^T) + KEY_CHUNK*NR (S) + dpad*NR (O^T)
 * + 3*NR floats. */
static void flash_task(const flash_geom *g, const float *q, float *y, int64_t task, float *buf) {
    const cpu_gemm_impl *im = g->im;
    const int MR = im->mr, NR = im->nr;
    const int64_t bh = task / g->qblocks, qb = task % g->qblocks, bb = bh / g->h, hh = bh % g->h;
    const int64_t q0 = qb * NR, nq = LDM_MIN((int64_t)NR, g->lq - q0);
    const int64_t dpad = (g->d + MR - 1) / MR * MR;
    const float *kp = g->packed + bh * (g->kp_floats + g->vp_floats), *vp = kp + g->kp_floats;
    float *qt = buf, *s = qt + g->d * NR, *o = s + (int64_t)KEY_CHUNK * NR, *m = o + dpad * NR, *l = m + NR,
          *corr = l + NR;
    /* Q^T (scaled) as one B micro-panel: k = d, columns = queries */
    const float *Q = q + (bb * g->lq + q0) * g->hd + hh * g->d;
    cpu_gemm_mat QB = {LDM_DT_F32, Q, 1, g->hd, 0, g->scale, false};
    cpu_gemm_pack_b(im, &QB, Q, 0, g->d, 0, nq, qt);
    const int64_t lk = g->causal ? LDM_MIN(g->lk, q0 + nq) : g->lk;
    for (int64_t c0 = 0; c0 < lk; c0 += g->chunk) {
        const int64_t rows = LDM_MIN(g->chunk, lk - c0);
        const int first = c0 == 0;
        /* S^T = K_chunk Q^T: K panels start at key c0 (a multiple of MR) */
        for (int64_t r = 0; r < rows; r += MR)
            im->kernel(g->d, kp + (c0 + r) * g->d, qt, s + r * NR, NR, (int)LDM_MIN((int64_t)MR, rows - r), NR, 0, NULL,
                       NULL);
#ifdef HAVE_SOFTMAX32
        if (NR == 32 && !g->causal && g->softmax32)
            flash_softmax32(s, rows, m, l, corr, first);
        else
#endif
            flash_softmax(s, rows, NR, m, l, corr, first, g->causal, c0, q0);
        if (!first) {
            for (int64_t dd = 0; dd < g->d; dd++) {
                float *od = o + dd * NR;
                for (int j = 0; j < NR; j++) od[j] *= corr[j];
            }
        }
        /* O^T += V^T_chunk P^T: the V^T panel of rows dp.. starts its keys at c0 * MR */
        for (int64_t dp = 0; dp < g->d; dp += MR)
            im->kernel(rows, vp + dp * g->lk + c0 * MR, s, o + dp * NR, NR, (int)LDM_MIN((int64_t)MR, g->d - dp), NR,
                       first ? 0 : CPU_GEMM_LOAD_C, NULL, NULL);
    }
    float *Y = y + (bb * g->lq + q0) * g->hd + hh * g->d;
    for (int64_t j = 0; j < nq; j++) {
        const float inv = 1.0f / l[j];
        float *yr = Y + j * g->hd;
        for (int64_t dd = 0; dd < g->d; dd++) yr[dd] = o[dd * NR + j] * inv;
    }
}

static ldm_status attention_flash(ldm_backend *be, const ldm_tensor *q, const ldm_tensor *k, const ldm_tensor *v,
                                  int32_t heads, float scale, int32_t causal, ldm_tensor *y) {
    flash_geom g;
    g.im = cpu_gemm_get_impl();
    const int MR = g.im->mr, NR = g.im->nr;
    g.b = q->ne[0];
    g.lq = q->ne[1];
    g.lk = k->ne[1];
    g.h = heads;
    g.hd = q->ne[2];
    g.d = g.hd / heads;
    g.scale = scale;
    g.causal = causal != 0;
    const int64_t lkpad = (g.lk + MR - 1) / MR * MR, dpad = (g.d + MR - 1) / MR * MR;
    g.kp_floats = lkpad * g.d;
    g.vp_floats = dpad * g.lk;
    g.qblocks = (g.lq + NR - 1) / NR;
    g.chunk = KEY_CHUNK / MR * MR;
#ifdef HAVE_SOFTMAX32
    g.softmax32 = NR == 32 && __builtin_cpu_supports("avx512f");
#else
    g.softmax32 = false;
#endif
    const int64_t bh = g.b * g.h, tasks = bh * g.qblocks;
    g.packed = cpu_alloc((size_t)(bh * (g.kp_floats + g.vp_floats)), sizeof(float), "attention packed K/V");
    if (!g.packed) return LDM_ERR_NO_MEMORY;
    const size_t per = (size_t)((g.d + KEY_CHUNK + dpad + 3) * NR);
    const int nt = cpu_threads(be);
    const int ntp = (int)LDM_MIN((int64_t)nt, bh);
    const int ntt = (int)LDM_MIN((int64_t)nt, tasks);
    const float *kd = k->data, *vd = v->data, *qd = q->data;
    float *yd = y->data;
#pragma omp parallel for num_threads(ntp) schedule(dynamic, 1)
    for (int64_t i = 0; i < bh; i++) flash_pack(&g, kd, vd, i);
    int failed = 0;
#pragma omp parallel num_threads(ntt)
    {
        float *buf = cpu_gemm_thread_buffer(per);
        if (!buf) {
#pragma omp atomic write
            failed = 1;
        }
#pragma omp for schedule(dynamic, 1)
        for (int64_t t = 0; t < tasks; t++)
            if (buf) flash_task(&g, qd, yd, t, buf);
    }
    cpu_free(g.packed);
    return failed ? ldm_fail(LDM_ERR_NO_MEMORY, "attention: cannot allocate scratch") : LDM_OK;
}

ldm_status cpu_attention(ldm_backend *be, const ldm_tensor *q, const ldm_tensor *k, const ldm_tensor *v,
                         int32_t heads, float scale, int32_t causal, ldm_tensor *y) {
    const char *op = "attention";
    ldm_status st;
    if ((st = cpu_check_act(op, "q", q)) || (st = cpu_check_act(op, "k", k)) || (st = cpu_check_act(op, "v", v)) ||
        (st = cpu_check_act(op, "y", y)))
        return st;
    char s1[64], s2[64], s3[64];
    if (q->ndim != 3 || !cpu_same_shape(k, v) || k->ndim != 3 || k->ne[0] != q->ne[0] || k->ne[2] != q->ne[2] ||
        !cpu_same_shape(q, y))
        return ldm_fail(LDM_ERR_INVALID_ARG, "attention: q %s, k/v %s, y %s: need q, y [B, Lq, H*D], k, v [B, Lk, H*D]",
                        cpu_shape_str(q, s1, sizeof s1), cpu_shape_str(k, s2, sizeof s2),
                        cpu_shape_str(y, s3, sizeof s3));
    if (heads < 1 || q->ne[2] % heads != 0)
        return ldm_fail(LDM_ERR_INVALID_ARG, "attention: width %lld is not divisible into %d heads",
                        (long long)q->ne[2], (int)heads);
    if ((st = cpu_check_no_alias(op, y, q)) || (st = cpu_check_no_alias(op, y, k)) ||
        (st = cpu_check_no_alias(op, y, v)))
        return st;
    attn_geom g;
    g.b = q->ne[0];
    g.lq = q->ne[1];
    g.lk = k->ne[1];
    g.h = heads;
    g.hd = q->ne[2];
    g.d = g.hd / heads;
    g.scale = scale;
    g.causal = causal != 0;
    if (g.lq > INT32_MAX || g.lk > INT32_MAX || g.hd > INT32_MAX)
        return ldm_fail(LDM_ERR_INVALID_ARG, "attention: dimensions exceed the BLAS index range");

    if (!cpu_gemm_use_openblas()) return attention_flash(be, q, k, v, heads, scale, causal, y);

    const int nt = (int)LDM_MIN(cpu_threads(be), LDM_CPU_MAX_BLAS_CALLERS);
    /* Query tile: its score block (tq x Lk floats) stays within LDM_CPU_ATTN_TILE_BYTES per
     * thread; 16..256 rows. Measured single-threaded at Lk = 4096, D = 40: 256-row tiles (4 MiB)
     * beat 128 / 64 / 32 rows by 8% / 15% / 40%, since every tile repacks K and V inside sgemm;
     * taller tiles gain nothing more. */
    int64_t tq = (int64_t)(LDM_CPU_ATTN_TILE_BYTES / sizeof(float)) / g.lk;
    tq = LDM_MAX(16, LDM_MIN(256, tq));
    tq = LDM_MIN(tq, g.lq);
    const int64_t bh = g.b * g.h;
    if (bh * ((g.lq + tq - 1) / tq) < nt) { /* too few tasks for the threads: shorter tiles */
        int64_t want = (nt + bh - 1) / bh;
        tq = LDM_MIN(g.lq, LDM_MAX(16, (g.lq + want - 1) / want));
    }
    g.tq = tq;
    g.ntiles = (g.lq + tq - 1) / tq;
    const int64_t tasks = bh * g.ntiles;
    const int nt2 = (int)LDM_MIN((int64_t)nt, tasks);
    const size_t per = (size_t)(tq * g.lk + tq + 16) / 16 * 16; /* scores + 1/sums, 64-byte multiple */
    float *buf = cpu_alloc((size_t)nt2 * per, sizeof(float), "attention scores");
    if (!buf) return LDM_ERR_NO_MEMORY;
    const float *qd = q->data, *kd = k->data, *vd = v->data;
    float *yd = y->data;
    /* Parallel over (batch, head, query tile) tasks, each with single-threaded sgemm. Measured
     * against a serial loop over the tasks with OpenBLAS threading the two products (and the
     * softmax parallel over rows): 3x faster on 2 threads, because the products are skinny
     * (K = D or N = D) and short, and two thread pools alternating waste their spin-waits. */
    cpu_blas_set_threads(1);
#pragma omp parallel num_threads(nt2)
    {
        float *s = buf + (size_t)omp_get_thread_num() * per;
#pragma omp for schedule(dynamic, 1)
        for (int64_t t = 0; t < tasks; t++) attn_task(&g, qd, kd, vd, yd, t, s, s + tq * g.lk);
    }
    cpu_free(buf);
    return LDM_OK;
}
