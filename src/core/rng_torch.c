/* PyTorch CPU generator (1.13.1): torch.manual_seed(seed); torch.randn(shape), float32.
 *
 * MT19937 engine, float/double uniforms, and the two normal paths of normal_kernel:
 *   n >= 16: normal_fill (16-element Box-Muller blocks, the last block recomputed from 16 fresh
 *            uniforms when n % 16 != 0), with either the AVX2 kernel (Cephes log/sincos in float,
 *            emulated here with fmaf() exactly where GCC fuses the real kernel) or the portable
 *            kernel (logf/cosf/sinf);
 *   n < 16:  normal_distribution<double> with the generator's cached second value.
 * The algorithm description is in shared/golden/rng/README.md.
 *
 * This file MUST be compiled with -ffp-contract=off (see src/meson.build): every float
 * operation is rounded on its own unless it is written as fmaf(). It also needs
 * FLT_EVAL_METHOD == 0 (SSE, not x87). */
#include "rng.h"

#include <float.h>
#include <math.h>
#include <string.h>

#if defined(FLT_EVAL_METHOD) && FLT_EVAL_METHOD != 0
#warning "rng_torch.c: FLT_EVAL_METHOD != 0, the torch noise stream will not be bit-exact"
#endif

/* ---- MT19937 ---- */

#define MT_M 397
#define MT_MATRIX_A 0x9908B0DFu
#define MT_UPPER 0x80000000u
#define MT_LOWER 0x7FFFFFFFu

void ldm_rng_torch_seed(ldm_rng *rng, uint64_t seed) {
    /* torch keeps the low 32 bits (init_genrand) */
    rng->mt[0] = (uint32_t)(seed & 0xFFFFFFFFu);
    for (uint32_t j = 1; j < LDM_RNG_MT_N; j++)
        rng->mt[j] = 1812433253u * (rng->mt[j - 1] ^ (rng->mt[j - 1] >> 30)) + j;
    rng->mt_index = LDM_RNG_MT_N;
    rng->has_cache = 0;
    rng->cache = 0.0;
}

static void mt_twist(uint32_t *s) {
    for (int k = 0; k < LDM_RNG_MT_N; k++) {
        uint32_t y = (s[k] & MT_UPPER) | (s[(k + 1) % LDM_RNG_MT_N] & MT_LOWER);
        s[k] = s[(k + MT_M) % LDM_RNG_MT_N] ^ (y >> 1) ^ ((y & 1u) ? MT_MATRIX_A : 0u);
    }
}

uint32_t ldm_rng_mt_next(ldm_rng *rng) {
    if (rng->mt_index >= LDM_RNG_MT_N) {
        mt_twist(rng->mt);
        rng->mt_index = 0;
    }
    uint32_t y = rng->mt[rng->mt_index++];
    y ^= y >> 11;
    y ^= (y << 7) & 0x9D2C5680u;
    y ^= (y << 15) & 0xEFC60000u;
    y ^= y >> 18;
    return y;
}

/* uniform_real_distribution<float>(0, 1): 24 random bits, exact */
static float uniform_f32(ldm_rng *rng) {
    return (float)(ldm_rng_mt_next(rng) & 0xFFFFFFu) * 0x1p-24f;
}

/* uniform_real_distribution<double>(0, 1): random64() = (first << 32) | second, 53 bits */
static double uniform_f64(ldm_rng *rng) {
    uint64_t hi = ldm_rng_mt_next(rng);
    uint64_t lo = ldm_rng_mt_next(rng);
    uint64_t r = (hi << 32) | lo;
    return (double)(r & ((UINT64_C(1) << 53) - 1)) * 0x1p-53;
}

/* at::normal_distribution<double>(0, 1) */
static double normal_f64(ldm_rng *rng) {
    if (rng->has_cache) {
        rng->has_cache = 0;
        return rng->cache * 1.0 + 0.0; /* transformation::normal(x, mean 0, std 1) */
    }
    const double u1 = uniform_f64(rng);
    const double u2 = uniform_f64(rng);
    const double r = sqrt(-2.0 * log(1.0 - u2));
    const double theta = 2.0 * 3.14159265358979323846 * u1;
    rng->cache = r * sin(theta);
    rng->has_cache = 1;
    return r * cos(theta) * 1.0 + 0.0;
}

/* ---- AVX2 kernel emulation (aten/src/ATen/native/cpu/avx_mathfun.h, as GCC compiles it) ---- */

static inline float f32_from_bits(uint32_t b) {
    float f;
    memcpy(&f, &b, sizeof f);
    return f;
}

static inline uint32_t f32_bits(float f) {
    uint32_t b;
    memcpy(&b, &f, sizeof b);
    return b;
}

/* Cephes logf for x in (0, 1] (normal numbers; u1 >= 2^-24 here) */
static float avx2_log(float x) {
    static const uint32_t p_bits[9] = {0x3D9021BBu, 0xBDEBD1B8u, 0x3DEF251Au, 0xBDFE5D4Fu, 0x3E11E9BFu,
                                       0xBE2AAE50u, 0x3E4CCEACu, 0xBE7FFFFCu, 0x3EAAAAAAu};
    const float q1 = f32_from_bits(0xB95E8083u);
    const float q2 = f32_from_bits(0x3F318000u);
    const float sqrthf = f32_from_bits(0x3F3504F3u);
    const float min_norm = f32_from_bits(0x00800000u);

    if (x < min_norm) x = min_norm; /* _mm256_max_ps(x, min_norm_pos) */
    uint32_t bits = f32_bits(x);
    int32_t expo = (int32_t)(bits >> 23) - 0x7F;
    float m = f32_from_bits((bits & ~0x7F800000u) | 0x3F000000u); /* mantissa in [0.5, 1) */
    float e = (float)expo + 1.0f;
    if (m < sqrthf) {
        e = e - 1.0f;
        m = (m - 1.0f) + m;
    } else {
        m = (m - 1.0f) + 0.0f;
    }
    const float z = m * m;
    float y = f32_from_bits(p_bits[0]);
    for (int k = 1; k < 9; k++) y = fmaf(y, m, f32_from_bits(p_bits[k])); /* fused Horner */
    y = y * m;
    y = fmaf(y, z, e * q1); /* fused */
    y = y - z * 0.5f;       /* z * 0.5 is exact: fusion would not change it */
    float r = m + y;
    r = r + e * q2; /* e * q2 is exact (q2 has 9 significant bits, |e| <= 126) */
    return r;
}

/* Cephes sincosf for x >= 0 (theta = 2pi * u2 in [0, 2pi)) */
static void avx2_sincos(float x, float *s_out, float *c_out) {
    const float fopi = f32_from_bits(0x3FA2F983u);
    const float dp1 = f32_from_bits(0xBF490000u);
    const float dp2 = f32_from_bits(0xB97DA000u);
    const float dp3 = f32_from_bits(0xB3222169u);
    const float c0 = f32_from_bits(0x37CCF5CEu), c1 = f32_from_bits(0xBAB6061Au),
                c2 = f32_from_bits(0x3D2AAAA5u);
    const float s0 = f32_from_bits(0xB94CA1F9u), s1 = f32_from_bits(0x3C08839Eu),
                s2 = f32_from_bits(0xBE2AAAA3u);

    uint32_t sign_sin = f32_bits(x) & 0x80000000u;
    x = fabsf(x);
    int32_t j = (int32_t)(x * fopi); /* _mm256_cvttps_epi32: truncation */
    j = (int32_t)(((uint32_t)j + 1u) & ~1u);
    const float y = (float)j;
    const uint32_t swap_sign_sin = ((uint32_t)j & 4u) << 29;
    const int poly_mask = ((uint32_t)j & 2u) == 0;
    const uint32_t sign_cos = (~((uint32_t)j - 2u) & 4u) << 29;
    sign_sin ^= swap_sign_sin;

    /* extended-precision range reduction x - y*pi/4, fused */
    x = fmaf(y, dp3, fmaf(y, dp2, fmaf(y, dp1, x)));
    const float z = x * x;

    float c = fmaf(fmaf(c0, z, c1), z, c2) * z;
    c = fmaf(c, z, -(z * 0.5f)) + 1.0f;

    float s = fmaf(fmaf(s0, z, s1), z, s2) * z;
    s = fmaf(s, x, x);

    /* the kernel selects with masks and then adds the zeroed lane: keep the +0.0f (it maps -0 to +0) */
    float sin_v, cos_v;
    if (poly_mask) {
        sin_v = 0.0f + s;
        cos_v = c + 0.0f;
    } else {
        sin_v = c + 0.0f;
        cos_v = 0.0f + s;
    }
    *s_out = f32_from_bits(f32_bits(sin_v) ^ sign_sin);
    *c_out = f32_from_bits(f32_bits(cos_v) ^ sign_cos);
}

/* normal_fill_16_AVX2 on d[0..15]: pairs (j, j+8) */
static void fill16_avx2(float *d) {
    const float two_pi = f32_from_bits(0x40C90FDBu); /* (float)(2 * pi) */
    for (int j = 0; j < 8; j++) {
        const float u1 = 1.0f - d[j];
        const float u2 = d[j + 8];
        const float radius = sqrtf(-2.0f * avx2_log(u1));
        const float theta = two_pi * u2;
        float s, c;
        avx2_sincos(theta, &s, &c);
        d[j] = fmaf(radius * c, 1.0f, 0.0f); /* _mm256_fmadd_ps(n, std, mean) */
        d[j + 8] = fmaf(radius * s, 1.0f, 0.0f);
    }
}

/* portable normal_fill_16 (logf/cosf/sinf) */
static void fill16_scalar(float *d) {
    for (int j = 0; j < 8; j++) {
        const float u1 = 1.0f - d[j];
        const float u2 = d[j + 8];
        const float radius = sqrtf(-2.0f * logf(u1));
        const float theta = (float)(6.283185307179586 * (double)u2);
        d[j] = radius * cosf(theta) * 1.0f + 0.0f;
        d[j + 8] = radius * sinf(theta) * 1.0f + 0.0f;
    }
}

ldm_status ldm_rng_torch_randn(ldm_rng *rng, float *out, size_t n, int avx2_kernel) {
    if (n < 16) {
        for (size_t i = 0; i < n; i++) out[i] = (float)normal_f64(rng);
        return LDM_OK;
    }
    void (*fill16)(float *) = avx2_kernel ? fill16_avx2 : fill16_scalar;
    for (size_t i = 0; i < n; i++) out[i] = uniform_f32(rng);
    for (size_t i = 0; i + 16 <= n; i += 16) fill16(out + i);
    if (n % 16 != 0) {
        float *tail = out + n - 16;
        for (size_t i = 0; i < 16; i++) tail[i] = uniform_f32(rng);
        fill16(tail);
    }
    return LDM_OK;
}
