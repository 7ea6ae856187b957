/* The CPU backend's own single-precision GEMM (BLIS-style: operands packed into cache-sized
 * blocks of MR-row / NR-column micro-panels, a register-blocked micro-kernel over them).
 *
 * Why not OpenBLAS: the Debian build (DYNAMIC_ARCH, 0.3.21) does not recognise recent Xeons and
 * runs its SSE3 "Prescott" kernels at ~1/7 of the machine's rate, fixable only by an environment
 * variable set before the process starts; its pthread pool also fights the backend's OpenMP
 * threads. This GEMM runs on the calling OpenMP threads, widens F16/BF16 weights while packing
 * (no separate conversion pass, no F32 copy of a weight) and packs convolution inputs straight
 * from the image (implicit GEMM: no im2col buffer).
 *
 * Micro-kernels, chosen once at run time (__builtin_cpu_supports): AVX-512F 12x32, AVX2+FMA 6x16,
 * portable C 4x16. LDM_CPU_GEMM=openblas routes the dense products of cpu_sgemm(), linear and
 * conv2d to cblas_sgemm instead (for comparison); LDM_CPU_GEMM=avx2 / scalar force a smaller
 * kernel. Accumulation is float32 FMA in k order within a KC block, block partial sums added in
 * k order: the same error behaviour as any blocked sgemm. */
#ifndef LDM_CPU_GEMM_H
#define LDM_CPU_GEMM_H

#include "cpu_internal.h"

/* A logical matrix operand: element (r, c) is at p[r * rs + c * cs] in dtype dt (F32/F16/BF16),
 * plus `batch_stride` elements per batch item. Row-major [R, C] with leading dimension ld is
 * {rs = ld, cs = 1}; its transpose is {rs = 1, cs = ld}. Scaled by `scale` while packing (1 for
 * none). */
typedef struct cpu_gemm_mat {
    ldm_dtype dt;
    const void *p;
    int64_t rs, cs;
    int64_t batch_stride;
    float scale;
    /* A only: already in the kernel's panel layout (cpu_gemm_prepack_a); p, dt F32, the
     * strides and scale are then ignored, batch_stride counts floats of the packed layout */
    bool prepacked;
} cpu_gemm_mat;

/* An implicit-GEMM convolution input as the B operand: B(k, j) for k = (ci, ky, kx) and output
 * position j = oh * ow_n + ow is x[ci, oh * s - pt + ky, ow * s - pl + kx] (0 outside). */
typedef struct cpu_gemm_conv {
    const float *x;       /* [batch, cin, h, w] */
    int64_t cin, h, w;    /* input */
    int64_t kh, kw, s;    /* kernel, stride */
    int64_t pt, pl;       /* top/left padding */
    int64_t oh, ow;       /* output */
} cpu_gemm_conv;

/* C[b] (m x n, leading dimension ldc, + b * c_batch_stride) = A[b] (m x k) * B[b] (k x n)
 * [+ bias_m[i] per row] [+ bias_n[j] per column] [+ C[b] when accumulate], for b < batch.
 * Exactly one of B and Bconv is given. Runs on n_threads OpenMP threads (called from outside any
 * parallel region). Returns LDM_OK or LDM_ERR_NO_MEMORY (ldm_fail called). */
typedef struct cpu_gemm_args {
    int64_t m, n, k, batch;
    cpu_gemm_mat A;
    const cpu_gemm_mat *B;
    const cpu_gemm_conv *Bconv;
    float *C;
    int64_t ldc, c_batch_stride;
    bool accumulate;
    const float *bias_m, *bias_n; /* F32 or NULL */
} cpu_gemm_args;

LDM_INTERNAL ldm_status cpu_gemm(int n_threads, const cpu_gemm_args *g);

/* The calling thread's scratch of at least `floats` floats (64-byte aligned), kept between calls
 * and freed at thread exit; NULL when out of memory. Shared by cpu_gemm and attention: valid
 * until the thread's next call. */
LDM_INTERNAL float *cpu_gemm_thread_buffer(size_t floats);
/* The same mechanism, slot 0 (= cpu_gemm_thread_buffer) or 1 (for callers of cpu_gemm). */
LDM_INTERNAL float *cpu_thread_scratch(int slot, size_t floats);

/* ---- the pieces, for callers with their own loop structure (attention) ---- */

typedef void (*cpu_gemm_kernel_fn)(int64_t kc, const float *a, const float *b, float *c, int64_t ldc, int mr, int nr,
                                   int flags, const float *bias_m, const float *bias_n);
#define CPU_GEMM_LOAD_C 1 /* c += a*b (else c = a*b [+ bias]) */

/* Vectorised packers for the kernel's panel shape; return false for layouts they do not handle
 * (then the portable packer runs). */
typedef bool (*cpu_gemm_pack_a_fn)(const cpu_gemm_mat *A, const void *base, int64_t i0, int64_t mc, int64_t k0,
                                   int64_t kc, float *dst);
typedef bool (*cpu_gemm_pack_b_fn)(const cpu_gemm_mat *B, const void *base, int64_t k0, int64_t kc, int64_t j0,
                                   int64_t nc, float *dst);

typedef struct cpu_gemm_impl {
    const char *name;
    int mr, nr;
    cpu_gemm_kernel_fn kernel;
    cpu_gemm_pack_a_fn pack_a; /* or NULL */
    cpu_gemm_pack_b_fn pack_b; /* or NULL */
} cpu_gemm_impl;

/* The kernel in use (chosen once; thread-safe). */
LDM_INTERNAL const cpu_gemm_impl *cpu_gemm_get_impl(void);
/* true when LDM_CPU_GEMM=openblas asks for OpenBLAS on the dense products. */
LDM_INTERNAL bool cpu_gemm_use_openblas(void);

/* Packs rows [i0, i0 + mc) x cols [k0, k0 + kc) of A into ceil(mc / mr) micro-panels of kc x mr
 * floats (panel-major, k-major inside, zero rows past mc). */
LDM_INTERNAL void cpu_gemm_pack_a(const cpu_gemm_impl *im, const cpu_gemm_mat *A, const void *base, int64_t i0,
                                  int64_t mc, int64_t k0, int64_t kc, float *dst);
/* Packs rows [k0, k0 + kc) x cols [j0, j0 + nc) of B into ceil(nc / nr) micro-panels of kc x nr
 * floats (zero columns past nc). */
LDM_INTERNAL void cpu_gemm_pack_b(const cpu_gemm_impl *im, const cpu_gemm_mat *B, const void *base, int64_t k0,
                                  int64_t kc, int64_t j0, int64_t nc, float *dst);

/* k is sliced into blocks of at most this many for packing (the kernel's kc), all of the same
 * size but the last (k = 320 -> 160 + 160, not 256 + 64: a short slice pays the C tile's loads
 * and stores for little work). */
#define CPU_GEMM_KC 384
static inline int64_t cpu_gemm_kblock(int64_t k) {
    const int64_t nb = (k + CPU_GEMM_KC - 1) / CPU_GEMM_KC;
    return nb > 1 ? (k + nb - 1) / nb : (k > 0 ? k : 1);
}

/* Floats of an m x k A operand in the kernel's panel layout: for each k block (cpu_gemm_kblock
 * columns, the last shorter), ceil(m / MR) micro-panels of kc x MR, zero rows past m. Element
 * (i, c) of block starting at column c0 (kc columns) is at c0 * Mp + (i / MR) * kc * MR +
 * (c - c0) * MR + i % MR, Mp = m rounded up to MR. */
static inline size_t cpu_gemm_prepacked_floats(const cpu_gemm_impl *im, int64_t m, int64_t k) {
    return (size_t)((m + im->mr - 1) / im->mr * im->mr * k);
}
static inline size_t cpu_gemm_prepacked_index(const cpu_gemm_impl *im, int64_t m, int64_t k, int64_t i, int64_t c) {
    const int64_t kb = cpu_gemm_kblock(k), mp = (m + im->mr - 1) / im->mr * im->mr, c0 = c / kb * kb,
                  kc = k - c0 < kb ? k - c0 : kb;
    return (size_t)(c0 * mp + (i / im->mr) * kc * im->mr + (c - c0) * im->mr + i % im->mr);
}

/* Kernels (cpu_gemm_x86.c); NULL where not compiled. */
LDM_INTERNAL void cpu_gemm_kernel_avx512_12x32(int64_t kc, const float *a, const float *b, float *c, int64_t ldc,
                                               int mr, int nr, int flags, const float *bias_m, const float *bias_n);
LDM_INTERNAL void cpu_gemm_kernel_avx2_6x16(int64_t kc, const float *a, const float *b, float *c, int64_t ldc, int mr,
                                            int nr, int flags, const float *bias_m, const float *bias_n);
LDM_INTERNAL bool cpu_gemm_pack_a_avx512(const cpu_gemm_mat *A, const void *base, int64_t i0, int64_t mc, int64_t k0,
                                         int64_t kc, float *dst);
LDM_INTERNAL bool cpu_gemm_pack_b_avx512(const cpu_gemm_mat *B, const void *base, int64_t k0, int64_t kc, int64_t j0,
                                         int64_t nc, float *dst);
LDM_INTERNAL bool cpu_gemm_x86_have_avx512(void);
LDM_INTERNAL bool cpu_gemm_x86_have_avx2(void);

#endif
