/* The CPU backend: creation, storage (with a small cache of freed activation buffers), argument
 * checks, weight conversion, the sgemm helper and the vtable.
 *
 * Threading: all parallelism is OpenMP, every parallel construct with an explicit
 * num_threads(n) clause (n = the backend's n_threads), so the backend never changes the
 * process-wide OpenMP default. The heavy math is the backend's own GEMM (cpu_gemm.h), which runs
 * its tasks on those same OpenMP threads: one pool, no oversubscription.
 *
 * LDM_CPU_GEMM=openblas keeps the earlier path for comparison: OpenBLAS sgemm called
 * single-threaded from inside the OpenMP regions on disjoint blocks (measured: letting OpenBLAS
 * thread each product instead was 3x slower for attention and ~20% less efficient for conv2d,
 * its pthread pool and the OpenMP pool alternating and spinning). OpenBLAS's thread count is
 * process-global (openblas_set_num_threads): that path sets it to 1 (cpu_blas_set_threads),
 * which also affects any other OpenBLAS user in the process; speed only, never results. */
#include "cpu_gemm.h"
#include "cpu_internal.h"
#include "cpu_math.h"

#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cblas.h>

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define LDM_CPU_HAVE_F16C_PATH 1
#endif

/* ------------------------------------------------------------------------------------------ */
/* Memory                                                                                     */
/* ------------------------------------------------------------------------------------------ */

void *cpu_alloc(size_t count, size_t elem, const char *what) {
    size_t bytes;
    if (!ldm_mul_size(count, elem, &bytes)) {
        ldm_fail(LDM_ERR_NO_MEMORY, "cpu: %s: size overflow", what);
        return NULL;
    }
    /* round up to the alignment (aligned_alloc wants a multiple; harmless for posix_memalign) */
    if (bytes == 0) bytes = LDM_CPU_ALIGN;
    if (bytes > SIZE_MAX - LDM_CPU_ALIGN) {
        ldm_fail(LDM_ERR_NO_MEMORY, "cpu: %s: size overflow", what);
        return NULL;
    }
    bytes = (bytes + LDM_CPU_ALIGN - 1) / LDM_CPU_ALIGN * LDM_CPU_ALIGN;
    /* Large buffers on 2 MiB boundaries, in 2 MiB multiples, with transparent huge pages asked
     * for (THP "madvise" mode, the common default): a fresh 100 MB activation then costs 50 page
     * faults instead of 25 000 (measured: ~8 M minor faults, 6 % of the CPU time, in a 512x512
     * txt2img with 4 KiB pages), and the GEMM's streams miss the TLB less. */
    const size_t huge = (size_t)2 << 20;
    const bool big = bytes >= 2 * huge && bytes <= SIZE_MAX - huge;
    if (big) bytes = (bytes + huge - 1) / huge * huge;
    void *p = NULL;
    if (posix_memalign(&p, big ? huge : LDM_CPU_ALIGN, bytes) != 0 || !p) {
        ldm_fail(LDM_ERR_NO_MEMORY, "cpu: %s: cannot allocate %zu bytes", what, bytes);
        return NULL;
    }
#ifdef MADV_HUGEPAGE
    if (big) (void)madvise(p, bytes, MADV_HUGEPAGE); /* advice: no THP, no harm */
#endif
    return p;
}

void cpu_free(void *p) { free(p); }

/* OpenBLAS keeps one thread count for the whole process: whoever sets it last (this backend,
 * another backend or context on another thread, the application) sets it for every caller.
 * That changes speed only, never results. With a non-OpenBLAS BLAS this does nothing. */
void cpu_blas_set_threads(int n) {
#ifdef OPENBLAS_VERSION
    if (n < 1) n = 1;
    if (openblas_get_num_threads() != n) openblas_set_num_threads(n);
#else
    (void)n;
#endif
}

void cpu_sgemm(int n_threads, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha, const float *a,
               int64_t lda, const float *b, int64_t ldb, float beta, float *c, int64_t ldc) {
    if (!cpu_gemm_use_openblas() && (beta == 0.0f || beta == 1.0f)) {
        cpu_gemm_mat B = {LDM_DT_F32, b, trans_b ? 1 : ldb, trans_b ? ldb : 1, 0, 1.0f, false};
        cpu_gemm_args g = {.m = m, .n = n, .k = k, .batch = 1, .A = {LDM_DT_F32, a, lda, 1, 0, alpha, false}, .B = &B,
                           .C = c, .ldc = ldc, .accumulate = beta == 1.0f};
        if (cpu_gemm(n_threads, &g) == LDM_OK) return;
        /* out of memory for the pack buffers: OpenBLAS needs none of ours */
    }
    cpu_sgemm_openblas(n_threads, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

void cpu_sgemm_openblas(int n_threads, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha, const float *a,
                        int64_t lda, const float *b, int64_t ldb, float beta, float *c, int64_t ldc) {
    const CBLAS_TRANSPOSE tb = trans_b ? CblasTrans : CblasNoTrans;
    /* Split the larger side of C: every thread packs all of the other operand, so this
     * minimises the redundant packing. Blocks of at least 64 rows/columns (fewer threads for
     * small products), on multiples of 16 (the kernels' unroll). */
    const bool split_rows = m >= n;
    const int64_t len = split_rows ? m : n;
    int64_t nt = LDM_MIN((int64_t)n_threads, LDM_CPU_MAX_BLAS_CALLERS);
    nt = LDM_MIN(nt, LDM_MAX((int64_t)1, len / 64));
    cpu_blas_set_threads(1);
    if (nt <= 1) {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, tb, (int)m, (int)n, (int)k, alpha, a, (int)lda, b, (int)ldb, beta, c,
                    (int)ldc);
        return;
    }
    int64_t block = (len + nt - 1) / nt;
    block = (block + 15) / 16 * 16;
    const int64_t nblocks = (len + block - 1) / block;
#pragma omp parallel for num_threads((int)nt) schedule(static, 1)
    for (int64_t i = 0; i < nblocks; i++) {
        int64_t s0 = i * block, cnt = LDM_MIN(block, len - s0);
        if (split_rows)
            cblas_sgemm(CblasRowMajor, CblasNoTrans, tb, (int)cnt, (int)n, (int)k, alpha, a + s0 * lda, (int)lda, b,
                        (int)ldb, beta, c + s0 * ldc, (int)ldc);
        else
            cblas_sgemm(CblasRowMajor, CblasNoTrans, tb, (int)m, (int)cnt, (int)k, alpha, a, (int)lda,
                        trans_b ? b + s0 * ldb : b + s0, (int)ldb, beta, c + s0, (int)ldc);
    }
}

/* ------------------------------------------------------------------------------------------ */
/* Checks                                                                                     */
/* ------------------------------------------------------------------------------------------ */

const char *cpu_shape_str(const ldm_tensor *t, char *buf, size_t size) {
    if (!t) {
        snprintf(buf, size, "(null)");
        return buf;
    }
    size_t off = 0;
    off += (size_t)snprintf(buf + off, size - off, "[");
    for (int i = 0; i < t->ndim && i < LDM_MAX_DIMS && off < size; i++)
        off += (size_t)snprintf(buf + off, size - off, i ? ", %lld" : "%lld", (long long)t->ne[i]);
    if (off < size) snprintf(buf + off, size - off, "]");
    return buf;
}

static ldm_status check_shape(const char *op, const char *name, const ldm_tensor *t) {
    if (t->ndim < 1 || t->ndim > LDM_MAX_DIMS)
        return ldm_fail(LDM_ERR_INVALID_ARG, "%s: %s has ndim %d (need 1..%d)", op, name, (int)t->ndim,
                        LDM_MAX_DIMS);
    for (int i = 0; i < t->ndim; i++)
        if (t->ne[i] <= 0)
            return ldm_fail(LDM_ERR_INVALID_ARG, "%s: %s has dimension %d of size %lld", op, name, i,
                            (long long)t->ne[i]);
    /* Bound the element count so that byte offsets never overflow (2^40 elements). */
    int64_t n = 1;
    for (int i = 0; i < t->ndim; i++) {
        if (t->ne[i] > ((int64_t)1 << 40) / n)
            return ldm_fail(LDM_ERR_INVALID_ARG, "%s: %s is too large", op, name);
        n *= t->ne[i];
    }
    return LDM_OK;
}

ldm_status cpu_check_act(const char *op, const char *name, const ldm_tensor *t) {
    if (!t) return ldm_fail(LDM_ERR_INVALID_ARG, "%s: %s is NULL", op, name);
    if (t->dtype != LDM_DT_F32)
        return ldm_fail(LDM_ERR_INVALID_ARG, "%s: %s must be F32 (is %s)", op, name, ldm_dtype_name(t->dtype));
    if (!t->data) return ldm_fail(LDM_ERR_INVALID_ARG, "%s: %s has no host storage", op, name);
    return check_shape(op, name, t);
}

ldm_status cpu_check_weight(const char *op, const char *name, const ldm_tensor *t) {
    if (!t) return ldm_fail(LDM_ERR_INVALID_ARG, "%s: %s is NULL", op, name);
    if (t->dtype != LDM_DT_F32 && t->dtype != LDM_DT_F16 && t->dtype != LDM_DT_BF16)
        return ldm_fail(LDM_ERR_INVALID_ARG, "%s: %s must be F32, F16 or BF16 (is %s)", op, name,
                        ldm_dtype_name(t->dtype));
    if (!t->data) return ldm_fail(LDM_ERR_INVALID_ARG, "%s: %s has no host storage", op, name);
    return check_shape(op, name, t);
}

bool cpu_same_shape(const ldm_tensor *a, const ldm_tensor *b) {
    if (a->ndim != b->ndim) return false;
    for (int i = 0; i < a->ndim; i++)
        if (a->ne[i] != b->ne[i]) return false;
    return true;
}

ldm_status cpu_check_no_alias(const char *op, const ldm_tensor *out, const ldm_tensor *in) {
    uintptr_t o0 = (uintptr_t)out->data, o1 = o0 + (uintptr_t)ldm_numel(out) * ldm_dtype_size(out->dtype);
    uintptr_t i0 = (uintptr_t)in->data, i1 = i0 + (uintptr_t)ldm_numel(in) * ldm_dtype_size(in->dtype);
    if (o0 < i1 && i0 < o1)
        return ldm_fail(LDM_ERR_INVALID_ARG, "%s: the output overlaps an input (not supported in place)", op);
    return LDM_OK;
}

/* ------------------------------------------------------------------------------------------ */
/* Weight conversion                                                                          */
/* ------------------------------------------------------------------------------------------ */

#ifdef LDM_CPU_HAVE_F16C_PATH
__attribute__((target("avx,f16c"))) static void f16_to_f32_f16c(const unsigned char *src, float *dst, size_t n) {
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m128i h = _mm_loadu_si128((const __m128i *)(const void *)(src + 2 * i));
        _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(h));
    }
    for (; i < n; i++) {
        uint16_t h;
        memcpy(&h, src + 2 * i, 2);
        dst[i] = ldm_f16_to_f32(h);
    }
}
#endif

LDM_CPU_CLONES static void bf16_to_f32(const unsigned char *src, float *dst, size_t n) {
#pragma omp simd
    for (size_t i = 0; i < n; i++) {
        uint16_t h;
        memcpy(&h, src + 2 * i, 2);
        dst[i] = cpu_bits_to_f32((uint32_t)h << 16);
    }
}

void cpu_convert_f32(ldm_dtype dt, const void *src, size_t first, float *dst, size_t n) {
    const unsigned char *s = src;
    switch (dt) {
    case LDM_DT_F32: memcpy(dst, s + 4 * first, 4 * n); break;
    case LDM_DT_F16: {
        s += 2 * first;
#ifdef LDM_CPU_HAVE_F16C_PATH
        if (__builtin_cpu_supports("f16c") && __builtin_cpu_supports("avx")) {
            f16_to_f32_f16c(s, dst, n);
            break;
        }
#endif
        for (size_t i = 0; i < n; i++) {
            uint16_t h;
            memcpy(&h, s + 2 * i, 2);
            dst[i] = ldm_f16_to_f32(h);
        }
        break;
    }
    case LDM_DT_BF16: bf16_to_f32(s + 2 * first, dst, n); break;
    default: /* not reached: callers check the dtype */
        memset(dst, 0, 4 * n);
        break;
    }
}

ldm_status cpu_weight_get(const char *op, const ldm_tensor *t, int n_threads, cpu_weight *out) {
    out->p = NULL;
    out->owned = NULL;
    if (!t) return LDM_OK;
    if (t->dtype == LDM_DT_F32 && ((uintptr_t)t->data & 3u) == 0) {
        out->p = t->data;
        return LDM_OK;
    }
    size_t n = (size_t)ldm_numel(t);
    float *buf = cpu_alloc(n, sizeof(float), op);
    if (!buf) return LDM_ERR_NO_MEMORY;
    const size_t block = (size_t)1 << 16;
    size_t nblocks = (n + block - 1) / block;
    int nt = nblocks > 1 ? n_threads : 1;
    ldm_dtype dt = t->dtype;
    const void *src = t->data;
#pragma omp parallel for num_threads(nt) schedule(static)
    for (size_t i = 0; i < nblocks; i++) {
        size_t first = i * block, cnt = LDM_MIN(block, n - first);
        cpu_convert_f32(dt, src, first, buf + first, cnt);
    }
    out->p = buf;
    out->owned = buf;
    return LDM_OK;
}

void cpu_weight_release(cpu_weight *w) {
    cpu_free(w->owned);
    w->owned = NULL;
    w->p = NULL;
}

/* ------------------------------------------------------------------------------------------ */
/* Storage                                                                                    */
/* ------------------------------------------------------------------------------------------ */

#define LDM_CPU_MAX_TENSOR_BYTES ((uint64_t)1 << 34)

/* A cached buffer of exactly `bytes` (the forward passes reuse exact sizes), or NULL. */
static void *cache_take(ldm_cpu_backend *cb, size_t bytes) {
    if (bytes < CPU_CACHE_MIN_BYTES || bytes > CPU_CACHE_MAX_BYTES / 2) return NULL;
    void *p = NULL;
    pthread_mutex_lock(&cb->cache_lock);
    for (int i = cb->cache_n - 1; i >= 0; i--)
        if (cb->cache[i].bytes == bytes) {
            p = cb->cache[i].p;
            cb->cache_bytes -= bytes;
            memmove(&cb->cache[i], &cb->cache[i + 1], (size_t)(cb->cache_n - 1 - i) * sizeof cb->cache[0]);
            cb->cache_n--;
            break;
        }
    pthread_mutex_unlock(&cb->cache_lock);
    return p;
}

/* Keeps a freed buffer for reuse, evicting the oldest entries to stay within the bounds; false
 * when the caller must free it itself. */
static bool cache_put(ldm_cpu_backend *cb, void *p, size_t bytes) {
    if (bytes < CPU_CACHE_MIN_BYTES || bytes > CPU_CACHE_MAX_BYTES / 2) return false;
    void *evict[CPU_CACHE_SLOTS];
    int ne = 0;
    pthread_mutex_lock(&cb->cache_lock);
    while (cb->cache_n > 0 && (cb->cache_n == CPU_CACHE_SLOTS || cb->cache_bytes + bytes > CPU_CACHE_MAX_BYTES)) {
        evict[ne++] = cb->cache[0].p;
        cb->cache_bytes -= cb->cache[0].bytes;
        memmove(&cb->cache[0], &cb->cache[1], (size_t)(cb->cache_n - 1) * sizeof cb->cache[0]);
        cb->cache_n--;
    }
    cb->cache[cb->cache_n].p = p;
    cb->cache[cb->cache_n].bytes = bytes;
    cb->cache_n++;
    cb->cache_bytes += bytes;
    pthread_mutex_unlock(&cb->cache_lock);
    for (int k = 0; k < ne; k++) cpu_free(evict[k]);
    return true;
}

static ldm_tensor *cpu_new_tensor(ldm_backend *be, int32_t ndim, const int64_t *shape) {
    (void)be;
    if (ndim < 1 || ndim > LDM_MAX_DIMS || !shape) {
        ldm_fail(LDM_ERR_NO_MEMORY, "cpu new_tensor: bad rank %d (need 1..%d)", (int)ndim, LDM_MAX_DIMS);
        return NULL;
    }
    uint64_t bytes = sizeof(float);
    for (int i = 0; i < ndim; i++) {
        if (shape[i] <= 0) {
            ldm_fail(LDM_ERR_NO_MEMORY, "cpu new_tensor: dimension %d is %lld", i, (long long)shape[i]);
            return NULL;
        }
        if ((uint64_t)shape[i] > LDM_CPU_MAX_TENSOR_BYTES || bytes * (uint64_t)shape[i] > LDM_CPU_MAX_TENSOR_BYTES) {
            ldm_fail(LDM_ERR_NO_MEMORY, "cpu new_tensor: tensor larger than 16 GiB refused");
            return NULL;
        }
        bytes *= (uint64_t)shape[i];
    }
    ldm_tensor *t = calloc(1, sizeof *t);
    if (!t) {
        ldm_fail(LDM_ERR_NO_MEMORY, "cpu new_tensor: out of memory");
        return NULL;
    }
    t->data = cache_take((ldm_cpu_backend *)be, (size_t)bytes);
    if (!t->data) t->data = cpu_alloc((size_t)bytes, 1, "new_tensor");
    if (!t->data) {
        free(t);
        return NULL;
    }
    t->dtype = LDM_DT_F32;
    t->ndim = ndim;
    for (int i = 0; i < ndim; i++) t->ne[i] = shape[i];
    t->device = NULL;
    t->owns_data = true;
    return t;
}

static void cpu_free_tensor(ldm_backend *be, ldm_tensor *t) {
    if (!t) return;
    if (t->owns_data && !cache_put((ldm_cpu_backend *)be, t->data, (size_t)ldm_numel(t) * sizeof(float)))
        cpu_free(t->data);
    free(t);
}

static ldm_status cpu_upload(ldm_backend *be, ldm_tensor *dst, const float *src) {
    (void)be;
    ldm_status st = cpu_check_act("upload", "dst", dst);
    if (st) return st;
    if (!src) return ldm_fail(LDM_ERR_INVALID_ARG, "upload: src is NULL");
    memcpy(dst->data, src, (size_t)ldm_numel(dst) * sizeof(float));
    return LDM_OK;
}

static ldm_status cpu_download(ldm_backend *be, const ldm_tensor *src, float *dst) {
    (void)be;
    ldm_status st = cpu_check_act("download", "src", src);
    if (st) return st;
    if (!dst) return ldm_fail(LDM_ERR_INVALID_ARG, "download: dst is NULL");
    memcpy(dst, src->data, (size_t)ldm_numel(src) * sizeof(float));
    return LDM_OK;
}

static void cpu_destroy(ldm_backend *be) {
    ldm_cpu_backend *cb = (ldm_cpu_backend *)be;
    for (int i = 0; i < cb->cache_n; i++) cpu_free(cb->cache[i].p);
    pthread_mutex_destroy(&cb->cache_lock);
    free(be);
}

static const ldm_backend_ops cpu_ops = {
    .name = "cpu",
    .destroy = cpu_destroy,
    .new_tensor = cpu_new_tensor,
    .free_tensor = cpu_free_tensor,
    .upload = cpu_upload,
    .download = cpu_download,
    .conv2d = cpu_conv2d,
    .linear = cpu_linear,
    .group_norm = cpu_group_norm,
    .layer_norm = cpu_layer_norm,
    .attention = cpu_attention,
    .unary = cpu_unary,
    .geglu = cpu_geglu,
    .add = cpu_add,
    .add_per_channel = cpu_add_per_channel,
    .scale = cpu_scale,
    .upsample_nearest2x = cpu_upsample_nearest2x,
    .concat_channels = cpu_concat_channels,
    .nchw_to_nlc = cpu_nchw_to_nlc,
    .nlc_to_nchw = cpu_nlc_to_nchw,
    .embedding = cpu_embedding,
};

ldm_status ldm_cpu_backend_create(int32_t n_threads, ldm_backend **out) {
    if (!out) return ldm_fail(LDM_ERR_INVALID_ARG, "ldm_cpu_backend_create: out is NULL");
    *out = NULL;
    if (n_threads <= 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        n_threads = n > 0 ? (int32_t)LDM_MIN(n, 1024) : 1;
    }
    if (n_threads > 1024) n_threads = 1024;
    ldm_cpu_backend *cb = calloc(1, sizeof *cb);
    if (!cb) return ldm_fail(LDM_ERR_NO_MEMORY, "ldm_cpu_backend_create: out of memory");
    cb->base.ops = &cpu_ops;
    cb->base.n_threads = n_threads;
    pthread_mutex_init(&cb->cache_lock, NULL);
    *out = &cb->base;
    return LDM_OK;
}
