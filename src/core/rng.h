/* Seeded noise streams, bit-exact with the Python tools (see shared/golden/rng/README.md):
 *
 *  - LDM_RNG_KIND_PHILOX: AUTOMATIC1111 modules/rng_philox.py (RNG source "NV"). Philox4x32-10
 *    keyed with all 64 bits of the seed, counter (offset, 0, i, 0), one double-precision
 *    Box-Muller output per element; the offset goes up by one per randn call.
 *  - LDM_RNG_KIND_TORCH_CPU: torch.manual_seed(seed); torch.randn(shape) on an x86-64 CPU
 *    (MT19937 seeded with the low 32 bits; the AVX2 normal_fill kernel for numel >= 16, emulated
 *    in portable C with explicit fmaf()).
 *  - LDM_RNG_KIND_TORCH_CPU_SCALAR: the same, with PyTorch's portable kernel (logf/cosf/sinf)
 *    for numel >= 16; bit-exact with glibc's libm, within 2 ulp elsewhere.
 *
 * The generator is a plain struct (no heap): copy it to fork a stream. Not thread-safe. */
#ifndef LDM_CORE_RNG_H
#define LDM_CORE_RNG_H

#include "common.h"

typedef enum {
    LDM_RNG_KIND_PHILOX = 0,          /* A1111 "NV" */
    LDM_RNG_KIND_TORCH_CPU = 1,       /* torch CPU, AVX2 kernel */
    LDM_RNG_KIND_TORCH_CPU_SCALAR = 2 /* torch CPU, portable kernel */
} ldm_rng_kind_internal;

#define LDM_RNG_MT_N 624

typedef struct ldm_rng {
    int kind;
    /* torch: MT19937 engine and the cached second Box-Muller value of normal_distribution<double> */
    uint32_t mt[LDM_RNG_MT_N];
    uint32_t mt_index; /* next word to temper; LDM_RNG_MT_N means "twist first" */
    int has_cache;
    double cache;
    /* philox */
    uint32_t key[2]; /* low, high 32 bits of the seed */
    uint64_t offset; /* randn calls made so far (counter word 0, mod 2^32) */
} ldm_rng;

/* Seeds `rng` (any kind value other than the three above is treated as LDM_RNG_KIND_PHILOX;
 * check the kind before calling if that matters). Clears the normal cache. */
void ldm_rng_init(ldm_rng *rng, int kind, uint64_t seed);

/* One randn call of n elements, as torch.randn(shape) / Generator(seed).randn(shape) with
 * numel(shape) == n, written in C order to out. n == 0 is a no-op (torch: no draw; philox: the
 * offset still advances, as upstream). LDM_ERR_INVALID_ARG for NULL, or n >= 2^32 (philox). */
ldm_status ldm_rng_randn(ldm_rng *rng, float *out, size_t n);

/* Raw 32-bit MT19937 output (torch kinds); exposed for tests. */
uint32_t ldm_rng_mt_next(ldm_rng *rng);

/* Per-kind implementations (used by ldm_rng_randn). */
void ldm_rng_torch_seed(ldm_rng *rng, uint64_t seed);
ldm_status ldm_rng_torch_randn(ldm_rng *rng, float *out, size_t n, int avx2_kernel);
void ldm_rng_philox_seed(ldm_rng *rng, uint64_t seed);
ldm_status ldm_rng_philox_randn(ldm_rng *rng, float *out, size_t n);

#endif
