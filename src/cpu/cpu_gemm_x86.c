/* x86 micro-kernels of the CPU GEMM (cpu_gemm.h), compiled with function-level target attributes
 * so the library itself stays at the baseline ISA; cpu_gemm.c picks one at run time.
 *
 * Both compute a C tile of MR rows x NR columns from a packed A micro-panel (kc x MR, k-major:
 * the MR values of one k adjacent, broadcast one by one) and a packed B micro-panel (kc x NR,
 * k-major: NR adjacent values = NR/16 (NR/8) vectors), accumulators in registers for the whole
 * kc loop:
 *   AVX-512F: 12 x 32 = 24 zmm accumulators, 2 B vectors, 1 broadcast register (27 of 32);
 *   AVX2+FMA:  6 x 16 = 12 ymm accumulators, 2 B vectors, 1 broadcast register (15 of 16).
 * Per k: NR/VL loads and MR broadcasts against MR*NR/VL FMAs, so both FMA ports stay busy.
 * The epilogue adds the bias (per row or per column), optionally C, and stores the valid
 * mr x nr part (masked stores for nr < NR). */
#include "cpu_gemm.h"

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>

bool cpu_gemm_x86_have_avx512(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
           __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c");
}

bool cpu_gemm_x86_have_avx2(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
}

/* ---------------------------------------------------------------------------------------- */
/* AVX-512F 12 x 32                                                                         */
/* ---------------------------------------------------------------------------------------- */

#define K512_ROW(i)                                                                                                   \
    do {                                                                                                              \
        __m512 av = _mm512_set1_ps(a[i]);                                                                             \
        c##i##0 = _mm512_fmadd_ps(av, b0, c##i##0);                                                                   \
        c##i##1 = _mm512_fmadd_ps(av, b1, c##i##1);                                                                   \
    } while (0)

#define K512_STEP()                                                                                                   \
    do {                                                                                                              \
        __m512 b0 = _mm512_load_ps(b), b1 = _mm512_load_ps(b + 16);                                                   \
        K512_ROW(0); K512_ROW(1); K512_ROW(2); K512_ROW(3); K512_ROW(4); K512_ROW(5);                                 \
        K512_ROW(6); K512_ROW(7); K512_ROW(8); K512_ROW(9); K512_ROW(10); K512_ROW(11);                               \
        a += 12;                                                                                                      \
        b += 32;                                                                                                      \
    } while (0)

#define K512_OUT(i)                                                                                                   \
    do {                                                                                                              \
        if ((i) < mr) {                                                                                               \
            float *cr = c + (int64_t)(i) * ldc;                                                                       \
            __m512 v0 = _mm512_add_ps(c##i##0, bn0), v1 = _mm512_add_ps(c##i##1, bn1);                                \
            if (bias_m) {                                                                                             \
                __m512 bm = _mm512_set1_ps(bias_m[i]);                                                                \
                v0 = _mm512_add_ps(v0, bm);                                                                           \
                v1 = _mm512_add_ps(v1, bm);                                                                           \
            }                                                                                                         \
            if (load) {                                                                                               \
                v0 = _mm512_add_ps(v0, _mm512_maskz_loadu_ps(m0, cr));                                                \
                v1 = _mm512_add_ps(v1, _mm512_maskz_loadu_ps(m1, cr + 16));                                           \
            }                                                                                                         \
            _mm512_mask_storeu_ps(cr, m0, v0);                                                                        \
            _mm512_mask_storeu_ps(cr + 16, m1, v1);                                                                   \
        }                                                                                                             \
    } while (0)

__attribute__((target("avx512f,fma"))) void cpu_gemm_kernel_avx512_12x32(int64_t kc, const float *a, const float *b,
                                                                          float *c, int64_t ldc, int mr, int nr,
                                                                          int flags, const float *bias_m,
                                                                          const float *bias_n) {
    __m512 c00 = _mm512_setzero_ps(), c01 = c00, c10 = c00, c11 = c00, c20 = c00, c21 = c00, c30 = c00, c31 = c00;
    __m512 c40 = c00, c41 = c00, c50 = c00, c51 = c00, c60 = c00, c61 = c00, c70 = c00, c71 = c00;
    __m512 c80 = c00, c81 = c00, c90 = c00, c91 = c00, c100 = c00, c101 = c00, c110 = c00, c111 = c00;
    for (int i = 0; i < 12 && i < mr; i++) {
        _mm_prefetch((const char *)(c + i * ldc), _MM_HINT_T0);
        _mm_prefetch((const char *)(c + i * ldc + 16), _MM_HINT_T0);
    }
    int64_t k = kc;
    for (; k >= 4; k -= 4) {
        /* the A micro-panel streams from L2: fetch 4 steps (192 bytes) ahead of use */
        _mm_prefetch((const char *)(a + 192), _MM_HINT_T0);
        _mm_prefetch((const char *)(a + 208), _MM_HINT_T0);
        _mm_prefetch((const char *)(a + 224), _MM_HINT_T0);
        K512_STEP();
        K512_STEP();
        K512_STEP();
        K512_STEP();
    }
    for (; k > 0; k--) K512_STEP();
    const __mmask16 m0 = nr >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << nr) - 1u);
    const __mmask16 m1 = nr >= 32 ? (__mmask16)0xffff : nr > 16 ? (__mmask16)((1u << (nr - 16)) - 1u) : (__mmask16)0;
    const int load = flags & CPU_GEMM_LOAD_C;
    __m512 bn0 = _mm512_setzero_ps(), bn1 = bn0;
    if (bias_n) {
        bn0 = _mm512_maskz_loadu_ps(m0, bias_n);
        bn1 = _mm512_maskz_loadu_ps(m1, bias_n + 16);
    }
    K512_OUT(0); K512_OUT(1); K512_OUT(2); K512_OUT(3); K512_OUT(4); K512_OUT(5);
    K512_OUT(6); K512_OUT(7); K512_OUT(8); K512_OUT(9); K512_OUT(10); K512_OUT(11);
}

/* ---------------------------------------------------------------------------------------- */
/* AVX2 + FMA 6 x 16                                                                        */
/* ---------------------------------------------------------------------------------------- */

#define K256_ROW(i)                                                                                                   \
    do {                                                                                                              \
        __m256 av = _mm256_broadcast_ss(a + (i));                                                                     \
        c##i##0 = _mm256_fmadd_ps(av, b0, c##i##0);                                                                   \
        c##i##1 = _mm256_fmadd_ps(av, b1, c##i##1);                                                                   \
    } while (0)

#define K256_STEP()                                                                                                   \
    do {                                                                                                              \
        __m256 b0 = _mm256_load_ps(b), b1 = _mm256_load_ps(b + 8);                                                    \
        K256_ROW(0); K256_ROW(1); K256_ROW(2); K256_ROW(3); K256_ROW(4); K256_ROW(5);                                 \
        a += 6;                                                                                                       \
        b += 16;                                                                                                      \
    } while (0)

#define K256_OUT(i)                                                                                                   \
    do {                                                                                                              \
        if ((i) < mr) {                                                                                               \
            float *cr = c + (int64_t)(i) * ldc;                                                                       \
            __m256 v0 = _mm256_add_ps(c##i##0, bn0), v1 = _mm256_add_ps(c##i##1, bn1);                                \
            if (bias_m) {                                                                                             \
                __m256 bm = _mm256_set1_ps(bias_m[i]);                                                                \
                v0 = _mm256_add_ps(v0, bm);                                                                           \
                v1 = _mm256_add_ps(v1, bm);                                                                           \
            }                                                                                                         \
            if (load) {                                                                                               \
                v0 = _mm256_add_ps(v0, _mm256_maskload_ps(cr, k0));                                                   \
                v1 = _mm256_add_ps(v1, _mm256_maskload_ps(cr + 8, k1));                                               \
            }                                                                                                         \
            _mm256_maskstore_ps(cr, k0, v0);                                                                          \
            _mm256_maskstore_ps(cr + 8, k1, v1);                                                                      \
        }                                                                                                             \
    } while (0)

__attribute__((target("avx2,fma"))) void cpu_gemm_kernel_avx2_6x16(int64_t kc, const float *a, const float *b,
                                                                    float *c, int64_t ldc, int mr, int nr, int flags,
                                                                    const float *bias_m, const float *bias_n) {
    __m256 c00 = _mm256_setzero_ps(), c01 = c00, c10 = c00, c11 = c00, c20 = c00, c21 = c00;
    __m256 c30 = c00, c31 = c00, c40 = c00, c41 = c00, c50 = c00, c51 = c00;
    int64_t k = kc;
    for (; k >= 4; k -= 4) {
        K256_STEP();
        K256_STEP();
        K256_STEP();
        K256_STEP();
    }
    for (; k > 0; k--) K256_STEP();
    const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    const __m256i k0 = _mm256_cmpgt_epi32(_mm256_set1_epi32(nr), lane);
    const __m256i k1 = _mm256_cmpgt_epi32(_mm256_set1_epi32(nr - 8), lane);
    const int load = flags & CPU_GEMM_LOAD_C;
    __m256 bn0 = _mm256_setzero_ps(), bn1 = bn0;
    if (bias_n) {
        bn0 = _mm256_maskload_ps(bias_n, k0);
        bn1 = _mm256_maskload_ps(bias_n + 8, k1);
    }
    K256_OUT(0); K256_OUT(1); K256_OUT(2); K256_OUT(3); K256_OUT(4); K256_OUT(5);
}

/* ---------------------------------------------------------------------------------------- */
/* AVX-512 packing (12 x 32 panels): F16/BF16 widened on the way                             */
/* ---------------------------------------------------------------------------------------- */

#define T512 __attribute__((target("avx512f,avx512bw,avx512vl,fma,f16c")))

/* Up to 16 elements (mask m) at element index idx of a dense F32/F16/BF16 array -> floats. */
T512 static inline __m512 ld16(ldm_dtype dt, const void *base, int64_t idx, __mmask16 m) {
    if (dt == LDM_DT_F32) return _mm512_maskz_loadu_ps(m, (const float *)base + idx);
    __m256i h = _mm256_maskz_loadu_epi16(m, (const uint16_t *)base + idx);
    if (dt == LDM_DT_F16) return _mm512_cvtph_ps(h);
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}

static inline __mmask16 mask_n(int64_t n) { return n >= 16 ? (__mmask16)0xffff : n <= 0 ? 0 : (__mmask16)((1u << n) - 1u); }

/* In-register transpose of 16 x 16 floats. */
T512 static void tr16(__m512 r[16]) {
    __m512 t[16];
    for (int i = 0; i < 8; i++) {
        t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
    }
    for (int i = 0; i < 4; i++) {
        for (int j = 0; j < 2; j++) {
            __m512d a = _mm512_castps_pd(t[4 * i + j]), b = _mm512_castps_pd(t[4 * i + j + 2]);
            r[4 * i + 2 * j] = _mm512_castpd_ps(_mm512_unpacklo_pd(a, b));
            r[4 * i + 2 * j + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(a, b));
        }
    }
    /* r[4i + q] now holds, in each 128-bit lane L, elements (rows 4i..4i+3, column 4L + q) */
    for (int i = 0; i < 2; i++) {
        for (int q = 0; q < 4; q++) {
            __m512 a = r[8 * i + q], b = r[8 * i + 4 + q];
            t[8 * i + q] = _mm512_shuffle_f32x4(a, b, 0x88);     /* lanes 0, 2 of a, then of b */
            t[8 * i + 4 + q] = _mm512_shuffle_f32x4(a, b, 0xdd); /* lanes 1, 3 */
        }
    }
    for (int q = 0; q < 4; q++) {
        for (int h = 0; h < 2; h++) {
            __m512 a = t[4 * h + q], b = t[8 + 4 * h + q];
            r[q + 4 * h] = _mm512_shuffle_f32x4(a, b, 0x88);
            r[q + 8 + 4 * h] = _mm512_shuffle_f32x4(a, b, 0xdd);
        }
    }
}

/* B micro-panels from rows contiguous in memory (cs == 1). */
T512 static void pack_b_rows_512(const cpu_gemm_mat *B, const void *base, int64_t k0, int64_t kc, int64_t j0,
                                 int cols, float *dst) {
    const __mmask16 m0 = mask_n(cols), m1 = mask_n(cols - 16);
    const __m512 sc = _mm512_set1_ps(B->scale);
    const bool scaled = B->scale != 1.0f;
    for (int64_t k = 0; k < kc; k++) {
        const int64_t idx = (k0 + k) * B->rs + j0;
        __m512 v0 = ld16(B->dt, base, idx, m0), v1 = ld16(B->dt, base, idx + 16, m1);
        if (scaled) {
            v0 = _mm512_mul_ps(v0, sc);
            v1 = _mm512_mul_ps(v1, sc);
        }
        _mm512_store_ps(dst + k * 32, v0);
        _mm512_store_ps(dst + k * 32 + 16, v1);
    }
}

/* B micro-panels from columns contiguous in memory (rs == 1: a transposed operand, e.g. a
 * linear weight [out, in]): 16 x 16 blocks transposed in registers. */
T512 static void pack_b_cols_512(const cpu_gemm_mat *B, const void *base, int64_t k0, int64_t kc, int64_t j0,
                                 int cols, float *dst) {
    const __m512 sc = _mm512_set1_ps(B->scale);
    const bool scaled = B->scale != 1.0f;
    for (int g = 0; g < 2; g++) {
        for (int64_t kb = 0; kb < kc; kb += 16) {
            const __mmask16 mk = mask_n(kc - kb);
            __m512 r[16];
            for (int j = 0; j < 16; j++) {
                const int col = g * 16 + j;
                r[j] = col < cols ? ld16(B->dt, base, (j0 + col) * B->cs + k0 + kb, mk) : _mm512_setzero_ps();
            }
            tr16(r);
            const int64_t kn = LDM_MIN((int64_t)16, kc - kb);
            for (int64_t k = 0; k < kn; k++)
                _mm512_store_ps(dst + (kb + k) * 32 + g * 16, scaled ? _mm512_mul_ps(r[k], sc) : r[k]);
        }
    }
}

/* A micro-panel (12 rows) from rows contiguous in memory (cs == 1: a weight [out, k]). */
T512 static void pack_a_rows_512(const cpu_gemm_mat *A, const void *base, int64_t i0, int rows, int64_t k0,
                                 int64_t kc, float *dst) {
    const __m512 sc = _mm512_set1_ps(A->scale);
    const bool scaled = A->scale != 1.0f;
    for (int64_t kb = 0; kb < kc; kb += 16) {
        const __mmask16 mk = mask_n(kc - kb);
        __m512 r[16];
        for (int i = 0; i < 16; i++)
            r[i] = i < rows ? ld16(A->dt, base, (i0 + i) * A->rs + k0 + kb, mk) : _mm512_setzero_ps();
        tr16(r);
        const int64_t kn = LDM_MIN((int64_t)16, kc - kb);
        for (int64_t k = 0; k < kn; k++)
            _mm512_mask_storeu_ps(dst + (kb + k) * 12, 0x0fff, scaled ? _mm512_mul_ps(r[k], sc) : r[k]);
    }
}

/* A micro-panel from columns contiguous in memory (rs == 1). */
T512 static void pack_a_cols_512(const cpu_gemm_mat *A, const void *base, int64_t i0, int rows, int64_t k0,
                                 int64_t kc, float *dst) {
    const __mmask16 m = mask_n(rows);
    const __m512 sc = _mm512_set1_ps(A->scale);
    for (int64_t k = 0; k < kc; k++) {
        __m512 v = ld16(A->dt, base, (k0 + k) * A->cs + i0, m);
        _mm512_mask_storeu_ps(dst + k * 12, 0x0fff, _mm512_mul_ps(v, sc));
    }
}

bool cpu_gemm_pack_a_avx512(const cpu_gemm_mat *A, const void *base, int64_t i0, int64_t mc, int64_t k0, int64_t kc,
                            float *dst) {
    if (A->cs != 1 && A->rs != 1) return false;
    for (int64_t p = 0; p < mc; p += 12, dst += kc * 12) {
        const int rows = (int)LDM_MIN((int64_t)12, mc - p);
        if (A->cs == 1)
            pack_a_rows_512(A, base, i0 + p, rows, k0, kc, dst);
        else
            pack_a_cols_512(A, base, i0 + p, rows, k0, kc, dst);
    }
    return true;
}

bool cpu_gemm_pack_b_avx512(const cpu_gemm_mat *B, const void *base, int64_t k0, int64_t kc, int64_t j0, int64_t nc,
                            float *dst) {
    if (B->cs != 1 && B->rs != 1) return false;
    for (int64_t p = 0; p < nc; p += 32, dst += kc * 32) {
        const int cols = (int)LDM_MIN((int64_t)32, nc - p);
        if (B->cs == 1)
            pack_b_rows_512(B, base, k0, kc, j0 + p, cols, dst);
        else
            pack_b_cols_512(B, base, k0, kc, j0 + p, cols, dst);
    }
    return true;
}

#else /* not x86-64 GCC/Clang: the portable kernel only */

bool cpu_gemm_x86_have_avx512(void) { return false; }
bool cpu_gemm_x86_have_avx2(void) { return false; }
void cpu_gemm_kernel_avx512_12x32(int64_t kc, const float *a, const float *b, float *c, int64_t ldc, int mr, int nr,
                                  int flags, const float *bias_m, const float *bias_n) {
    (void)kc, (void)a, (void)b, (void)c, (void)ldc, (void)mr, (void)nr, (void)flags, (void)bias_m, (void)bias_n;
}
void cpu_gemm_kernel_avx2_6x16(int64_t kc, const float *a, const float *b, float *c, int64_t ldc, int mr, int nr,
                               int flags, const float *bias_m, const float *bias_n) {
    (void)kc, (void)a, (void)b, (void)c, (void)ldc, (void)mr, (void)nr, (void)flags, (void)bias_m, (void)bias_n;
}
bool cpu_gemm_pack_a_avx512(const cpu_gemm_mat *A, const void *base, int64_t i0, int64_t mc, int64_t k0, int64_t kc,
                            float *dst) {
    (void)A, (void)base, (void)i0, (void)mc, (void)k0, (void)kc, (void)dst;
    return false;
}
bool cpu_gemm_pack_b_avx512(const cpu_gemm_mat *B, const void *base, int64_t k0, int64_t kc, int64_t j0, int64_t nc,
                            float *dst) {
    (void)B, (void)base, (void)k0, (void)kc, (void)j0, (void)nc, (void)dst;
    return false;
}

#endif
