/* AUTOMATIC1111 "NV" noise (modules/rng_philox.py): Philox4x32-10 plus a double-precision
 * Box-Muller transform, one output per element. Built with -ffp-contract=off: every double
 * operation below must be rounded on its own, as numpy does. */
#include "rng.h"

#include <math.h>

#define PHILOX_M0 0xD2511F53u
#define PHILOX_M1 0xCD9E8D57u
#define PHILOX_W0 0x9E3779B9u
#define PHILOX_W1 0xBB67AE85u

void ldm_rng_philox_seed(ldm_rng *rng, uint64_t seed) {
    rng->key[0] = (uint32_t)(seed & 0xFFFFFFFFu);
    rng->key[1] = (uint32_t)(seed >> 32);
    rng->offset = 0;
}

/* Ten rounds on counter c with key (k0, k1); the key is bumped between rounds. */
static void philox4x32_10(uint32_t c[4], uint32_t k0, uint32_t k1) {
    for (int round = 0; round < 10; round++) {
        uint64_t p0 = (uint64_t)c[0] * PHILOX_M0;
        uint64_t p1 = (uint64_t)c[2] * PHILOX_M1;
        uint32_t hi0 = (uint32_t)(p0 >> 32), lo0 = (uint32_t)p0;
        uint32_t hi1 = (uint32_t)(p1 >> 32), lo1 = (uint32_t)p1;
        uint32_t n0 = hi1 ^ c[1] ^ k0;
        uint32_t n2 = hi0 ^ c[3] ^ k1;
        c[0] = n0;
        c[1] = lo1;
        c[2] = n2;
        c[3] = lo0;
        if (round < 9) {
            k0 += PHILOX_W0;
            k1 += PHILOX_W1;
        }
    }
}

ldm_status ldm_rng_philox_randn(ldm_rng *rng, float *out, size_t n) {
    if ((uint64_t)n > 0xFFFFFFFFull)
        return ldm_fail(LDM_ERR_INVALID_ARG, "philox randn: %zu elements (at most 2^32 - 1)", n);
    /* upstream: float32 constants 2.3283064e-10 (== 2^-32) and 2.3283064e-10 * 6.2831855
     * (== 0x1.921fb6p-30), promoted to double together with the uint32 words; their halves are
     * taken in float32, which is exact. */
    const double c1 = 0x1p-32, c1h = 0x1p-33;
    const double c2 = 0x1.921fb6p-30, c2h = 0x1.921fb6p-31;
    const uint32_t off = (uint32_t)rng->offset;
    for (size_t i = 0; i < n; i++) {
        uint32_t c[4] = {off, 0u, (uint32_t)i, 0u};
        philox4x32_10(c, rng->key[0], rng->key[1]);
        double u = (double)c[0] * c1;
        u = u + c1h;
        double v = (double)c[1] * c2;
        v = v + c2h;
        double s = sqrt(-2.0 * log(u));
        out[i] = (float)(s * sin(v));
    }
    rng->offset++;
    return LDM_OK;
}
