/* Seeded noise streams: dispatch on the generator kind (see rng.h). */
#include "rng.h"

#include <string.h>

void ldm_rng_init(ldm_rng *rng, int kind, uint64_t seed) {
    memset(rng, 0, sizeof(*rng));
    switch (kind) {
    case LDM_RNG_KIND_TORCH_CPU:
    case LDM_RNG_KIND_TORCH_CPU_SCALAR:
        rng->kind = kind;
        ldm_rng_torch_seed(rng, seed);
        break;
    default:
        rng->kind = LDM_RNG_KIND_PHILOX;
        ldm_rng_philox_seed(rng, seed);
        break;
    }
}

ldm_status ldm_rng_randn(ldm_rng *rng, float *out, size_t n) {
    if (!rng || (!out && n > 0)) return ldm_fail(LDM_ERR_INVALID_ARG, "ldm_rng_randn: NULL argument");
    switch (rng->kind) {
    case LDM_RNG_KIND_TORCH_CPU: return ldm_rng_torch_randn(rng, out, n, 1);
    case LDM_RNG_KIND_TORCH_CPU_SCALAR: return ldm_rng_torch_randn(rng, out, n, 0);
    case LDM_RNG_KIND_PHILOX: return ldm_rng_philox_randn(rng, out, n);
    default: return ldm_fail(LDM_ERR_INVALID_ARG, "ldm_rng_randn: unknown generator kind %d", rng->kind);
    }
}
