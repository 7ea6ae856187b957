/* Private declarations of the CPU backend: the backend struct, argument checks, weight
 * conversion, BLAS thread control and the op entry points the vtable in cpu_backend.c uses. */
#ifndef LDM_CPU_INTERNAL_H
#define LDM_CPU_INTERNAL_H

#include "core/backend.h"
#include "core/common.h"
#include "core/tensor.h"

#include <pthread.h>
#include <stdint.h>
#include <string.h>

/* Freed activation buffers kept for reuse (cpu_backend.c): a fresh multi-megabyte buffer costs a
 * page fault per 4 KiB (~5% of a UNet step); a forward pass allocates the same few sizes over
 * and over. Bounded so the peak RSS grows by at most CPU_CACHE_MAX_BYTES. */
#define CPU_CACHE_SLOTS 8
#define CPU_CACHE_MIN_BYTES ((size_t)1 << 20)
#define CPU_CACHE_MAX_BYTES ((size_t)64 << 20)

typedef struct ldm_cpu_backend {
    ldm_backend base; /* must stay first: ldm_backend * <-> ldm_cpu_backend * */
    pthread_mutex_t cache_lock;
    struct cpu_cached_buf {
        void *p;
        size_t bytes;
    } cache[CPU_CACHE_SLOTS]; /* cache[0 .. cache_n), oldest first */
    int cache_n;
    size_t cache_bytes;
} ldm_cpu_backend;

/* Alignment of every buffer the backend allocates (one cache line, and enough for AVX-512). */
#define LDM_CPU_ALIGN 64

/* Upper bound on the im2col buffer of one conv2d call, and on the score tile of attention. */
#define LDM_CPU_CONV_COL_BYTES ((size_t)16 << 20)
#define LDM_CPU_ATTN_TILE_BYTES ((size_t)4 << 20)

/* At most this many threads call sgemm at once: OpenBLAS (pthreads build) hands each running call
 * one of a fixed table of work buffers (2 x its MAX_THREADS, 128 in common builds) and aborts the
 * process when they run out. */
#define LDM_CPU_MAX_BLAS_CALLERS 64

static inline int cpu_threads(const ldm_backend *be) { return be->n_threads > 0 ? be->n_threads : 1; }

/* Aligned scratch allocation; NULL (with ldm_fail(LDM_ERR_NO_MEMORY, ...) naming `what`) on failure
 * or when count * elem overflows. Free with cpu_free. */
LDM_INTERNAL void *cpu_alloc(size_t count, size_t elem, const char *what);
LDM_INTERNAL void cpu_free(void *p);

/* Sets OpenBLAS's thread count (a no-op with another BLAS). The setting is process-global. */
LDM_INTERNAL void cpu_blas_set_threads(int n);

/* Row-major C[m, n] = alpha * A[m, k] op(B) + beta * C, op(B) = B[k, n] or, with trans_b, B[n, k]^T,
 * on n_threads threads: the backend's own GEMM (cpu_gemm.h) for beta 0 or 1, else (and with
 * LDM_CPU_GEMM=openblas) cpu_sgemm_openblas. */
LDM_INTERNAL void cpu_sgemm(int n_threads, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha, const float *a,
                            int64_t lda, const float *b, int64_t ldb, float beta, float *c, int64_t ldc);
/* The same through OpenBLAS: C split into row or column blocks, one single-threaded cblas_sgemm
 * each inside an OpenMP region. */
LDM_INTERNAL void cpu_sgemm_openblas(int n_threads, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
                                     const float *a, int64_t lda, const float *b, int64_t ldb, float beta, float *c,
                                     int64_t ldc);

/* ---- argument checks: each returns LDM_OK or ldm_fail(LDM_ERR_INVALID_ARG, "<op>: ...") ---- */

/* An F32 activation tensor with storage and a sane shape. `name` names the argument. */
LDM_INTERNAL ldm_status cpu_check_act(const char *op, const char *name, const ldm_tensor *t);
/* A weight tensor: F32, F16 or BF16, with storage and a sane shape. */
LDM_INTERNAL ldm_status cpu_check_weight(const char *op, const char *name, const ldm_tensor *t);
/* Same ndim and dims. */
LDM_INTERNAL bool cpu_same_shape(const ldm_tensor *a, const ldm_tensor *b);
/* Fails when the storage of a and b overlaps (for ops that cannot run in place). */
LDM_INTERNAL ldm_status cpu_check_no_alias(const char *op, const ldm_tensor *out, const ldm_tensor *in);
/* Formats a shape as "[2, 3, 4]" into buf (for messages). */
LDM_INTERNAL const char *cpu_shape_str(const ldm_tensor *t, char *buf, size_t size);

/* ---- weights ---- */

/* A float32 view of a weight tensor. For an F32 weight whose data is 4-byte aligned, `p` points
 * straight at the weight; otherwise the weight is converted into `owned` (freed by
 * cpu_weight_release). */
typedef struct cpu_weight {
    const float *p;
    float *owned;
} cpu_weight;

/* Converts (or borrows) the whole weight. NULL `t` gives p == NULL and LDM_OK. */
LDM_INTERNAL ldm_status cpu_weight_get(const char *op, const ldm_tensor *t, int n_threads, cpu_weight *out);
LDM_INTERNAL void cpu_weight_release(cpu_weight *w);
/* Converts n elements starting at element `first` of a float-typed buffer (F32/F16/BF16, any
 * alignment) to float32. Single-threaded. */
LDM_INTERNAL void cpu_convert_f32(ldm_dtype dt, const void *src, size_t first, float *dst, size_t n);

/* ---- ops ---- */
LDM_INTERNAL ldm_status cpu_conv2d(ldm_backend *be, const ldm_tensor *x, const ldm_tensor *w, const ldm_tensor *b,
                                   const ldm_conv2d_params *p, ldm_tensor *y);
LDM_INTERNAL ldm_status cpu_linear(ldm_backend *be, const ldm_tensor *x, const ldm_tensor *w, const ldm_tensor *b,
                                   ldm_tensor *y);
LDM_INTERNAL ldm_status cpu_group_norm(ldm_backend *be, const ldm_tensor *x, const ldm_tensor *gamma,
                                       const ldm_tensor *beta, int32_t groups, float eps, int32_t silu,
                                       ldm_tensor *y);
LDM_INTERNAL ldm_status cpu_layer_norm(ldm_backend *be, const ldm_tensor *x, const ldm_tensor *gamma,
                                       const ldm_tensor *beta, float eps, ldm_tensor *y);
LDM_INTERNAL ldm_status cpu_attention(ldm_backend *be, const ldm_tensor *q, const ldm_tensor *k,
                                      const ldm_tensor *v, int32_t heads, float scale, int32_t causal,
                                      ldm_tensor *y);
LDM_INTERNAL ldm_status cpu_unary(ldm_backend *be, ldm_unary_op op, const ldm_tensor *x, ldm_tensor *y);
LDM_INTERNAL ldm_status cpu_geglu(ldm_backend *be, const ldm_tensor *x, ldm_tensor *y);
LDM_INTERNAL ldm_status cpu_add(ldm_backend *be, const ldm_tensor *a, const ldm_tensor *b, ldm_tensor *y);
LDM_INTERNAL ldm_status cpu_add_per_channel(ldm_backend *be, const ldm_tensor *x, const ldm_tensor *b,
                                            ldm_tensor *y);
LDM_INTERNAL ldm_status cpu_scale(ldm_backend *be, const ldm_tensor *x, float s, ldm_tensor *y);
LDM_INTERNAL ldm_status cpu_upsample_nearest2x(ldm_backend *be, const ldm_tensor *x, ldm_tensor *y);
LDM_INTERNAL ldm_status cpu_concat_channels(ldm_backend *be, const ldm_tensor *a, const ldm_tensor *b,
                                            ldm_tensor *y);
LDM_INTERNAL ldm_status cpu_nchw_to_nlc(ldm_backend *be, const ldm_tensor *x, ldm_tensor *y);
LDM_INTERNAL ldm_status cpu_nlc_to_nchw(ldm_backend *be, const ldm_tensor *x, ldm_tensor *y);
LDM_INTERNAL ldm_status cpu_embedding(ldm_backend *be, const ldm_tensor *weight, const int32_t *ids, int64_t n,
                                      ldm_tensor *y);

#endif
