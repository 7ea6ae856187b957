/* Vectorisable scalar math for the CPU kernels. Written so that GCC/Clang auto-vectorise the loops
 * that call these without -ffast-math: no libm calls, no branches (selects only). */
#ifndef LDM_CPU_MATH_H
#define LDM_CPU_MATH_H

#include <stdint.h>
#include <string.h>

/* Function multiversioning: the hot elementwise loops get an AVX2 clone chosen at load time
 * (ifunc) next to the baseline SSE2 one. Only where GCC's ifunc-based target_clones works. */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && defined(__linux__) && \
    !defined(LDM_CPU_NO_CLONES)
#define LDM_CPU_CLONES __attribute__((target_clones("default", "arch=x86-64-v3", "arch=x86-64-v4")))
#else
#define LDM_CPU_CLONES
#endif

static inline float cpu_bits_to_f32(uint32_t u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static inline uint32_t cpu_f32_to_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

/* exp(x) to within ~2 ulp for x in [-87.3, 88]; outside, the input is clamped to that range (so
 * the result neither overflows to inf nor goes subnormal: exp(-87.3) ~ 1.2e-38; exp(+inf) gives
 * exp(88) ~ 1.65e38, exp(-inf) ~ 1.2e-38); NaN propagates.
 * Cody-Waite reduction x = n ln2 + r, |r| <= ln2/2, a degree-6 polynomial (the Cephes
 * coefficients), 2^n built in the exponent field.
 * Only integer min/select and float arithmetic: float compares keep GCC from if-converting
 * (hence vectorising) the loop under the default -ftrapping-math, and a range test that makes a
 * constant path gets jump-threaded into control flow. No float -> int conversion either (n is
 * read from the bits of the magic-number rounding). */
static inline float cpu_expf(float x) {
    const uint32_t xb = cpu_f32_to_bits(x);
    /* Clamp as integer minima on the bit pattern: signed, it caps positive floats at 88.0f
     * (0x42b00000); unsigned, it caps negative floats at -87.3f (0xc2ae999a). */
    int32_t i = (int32_t)xb;
    i = i < 0x42b00000 ? i : 0x42b00000;
    uint32_t u = (uint32_t)i;
    u = u < 0xc2ae999au ? u : 0xc2ae999au;
    float xc = cpu_bits_to_f32(u);
    float k = xc * 1.44269504088896341f + 12582912.0f; /* 1.5 * 2^23: rounds to an integer */
    float n = k - 12582912.0f;
    int32_t ni = (int32_t)(cpu_f32_to_bits(k) - 0x4b400000u); /* that integer, |ni| <= 127 */
    float r = xc - n * 0.693359375f;
    r = r - n * -2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * (r * r) + r + 1.0f;
    uint32_t res = cpu_f32_to_bits(p * cpu_bits_to_f32((uint32_t)(ni + 127) << 23));
    /* NaN in, NaN out (the clamps above turned it into a number) */
    uint32_t nan_mask = (uint32_t)0 - (uint32_t)((xb & 0x7fffffffu) > 0x7f800000u);
    res = (xb & nan_mask) | (res & ~nan_mask);
    return cpu_bits_to_f32(res);
}

/* 1 / (1 + exp(-x)). */
static inline float cpu_sigmoidf(float x) { return 1.0f / (1.0f + cpu_expf(-x)); }

/* Bitwise select: m all ones -> a, m zero -> b. (A mask blend rather than ?: on floats, which GCC
 * may turn back into a branch.) */
static inline float cpu_select(uint32_t m, float a, float b) {
    return cpu_bits_to_f32((cpu_f32_to_bits(a) & m) | (cpu_f32_to_bits(b) & ~m));
}

/* Exact (erf-based) GELU, 0.5 x (1 + erf(x / sqrt 2)), vectorisable. With a = |x| / sqrt 2:
 *   a < 1.5:  erf(a) = a P(a^2), P of degree 7;
 *   a >= 1.5: erfc(a) = exp(-a^2) Q(1 / a), Q of degree 8, a clamped to 9.3 inside Q
 *             (erfc(9.3) ~ 1e-39: beyond it only a vanishing absolute error), and for x < 0 the result is 0.5 x erfc(a) directly, so the
 *             negative tail keeps its relative precision (no 1 - erf cancellation).
 * P and Q are our own weighted least-squares fits (minimising relative error, Lawson
 * iterations in 40-digit arithmetic): max relative error 1.5e-8 and 3.2e-8 in exact arithmetic.
 * In float: max abs error 3.9e-7 over [-20, 20] (erff-based 0.5x(1+erff(..)) gives 4.5e-7). */
static inline float cpu_gelu(float x) {
    const uint32_t xb = cpu_f32_to_bits(x);
    const float a = cpu_bits_to_f32(xb & 0x7fffffffu) * 0.70710678118654752f;
    const uint32_t ab = cpu_f32_to_bits(a);
    const float s = a * a;
    float p = -5.65576146982e-6f;
    p = p * s + 9.1973656172e-5f;
    p = p * s - 8.04373854924e-4f;
    p = p * s + 5.17245055267e-3f;
    p = p * s - 2.6836861727e-2f;
    p = p * s + 1.12829571003e-1f;
    p = p * s - 3.76125466672e-1f;
    p = p * s + 1.12837914998f;
    const float erf_small = a * p;
    uint32_t cb = ab < 0x3fc00000u ? 0x3fc00000u : ab; /* clamp a to [1.5, 9.3] (a >= 0: bits are monotonic) */
    cb = cb < 0x4114cccdu ? cb : 0x4114cccdu;
    const float u = 1.0f / cpu_bits_to_f32(cb);
    float q = -0.197007415437f;
    q = q * u + 0.720322857715f;
    q = q * u - 1.07997603914f;
    q = q * u + 0.752480109373f;
    q = q * u - 0.0559475163374f;
    q = q * u - 0.27749681177f;
    q = q * u - 8.73868771061e-6f;
    q = q * u + 0.564164211756f;
    q = q * u + 1.24362795421e-6f;
    const float erfc_big = cpu_expf(-s) * q;
    const uint32_t neg = (uint32_t)0 - (xb >> 31);                             /* all ones when x < 0 */
    const uint32_t small = (uint32_t)0 - (uint32_t)(ab < 0x3fc00000u);         /* all ones when a < 1.5 */
    const float phi_small = cpu_select(neg, 1.0f - erf_small, 1.0f + erf_small); /* 1 + erf(x / sqrt 2) */
    const float phi_big = cpu_select(neg, erfc_big, 2.0f - erfc_big);
    return 0.5f * x * cpu_select(small, phi_small, phi_big);
}

#endif
