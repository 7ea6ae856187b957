/* The vector quantiser of a VQ first stage (CompVis/latent-diffusion VQModelInterface with
 * taming-transformers VectorQuantizer2, legacy=True, as LDM-SR uses it):
 *
 *   indices = argmin_k |z - e_k|^2 over the codebook quantize.embedding.weight [n_embed, e_dim]
 *   quant   = z + (e_indices - z)      (the straight-through estimator, evaluated in float32)
 *
 * Upstream evaluates the distance as |z|^2 + |e|^2 - 2 z.e in float32; here it is computed in
 * double, which can only differ where two codes are within float32 noise of each other (the
 * reference's argmin is then arbitrary too). Ties go to the lower index, as torch.argmin. */
#include "nets.h"

#include "dtype.h"

#include <float.h>
#include <stdlib.h>
#include <string.h>

ldm_status vq_quantize(const ldm_model *m, int32_t n, int32_t h, int32_t w, const float *z, float *quant,
                       int32_t *indices) {
    ldm_status st = LDM_OK;
    const ldm_tensor *cb = model_weightf(m, &st, "first_stage_model.quantize.embedding.weight");
    if (st) return st;
    const int32_t K = m->vae.n_embed, E = m->vae.embed_dim;
    if (cb->ndim != 2 || cb->ne[0] != K || cb->ne[1] != E)
        return ldm_fail(LDM_ERR_FORMAT, "VQ codebook is not [%d, %d]", K, E);
    double *code = malloc((size_t)K * E * sizeof *code);
    float *codef = malloc((size_t)K * E * sizeof *codef);
    if (!code || !codef) {
        free(code);
        free(codef);
        return ldm_fail(LDM_ERR_NO_MEMORY, "out of memory");
    }
    ldm_convert_to_f32(cb->dtype, cb->data, codef, (size_t)K * E);
    for (size_t i = 0; i < (size_t)K * E; i++) code[i] = codef[i];
    const size_t plane = (size_t)h * w;
    const int64_t total = (int64_t)n * (int64_t)plane;
#pragma omp parallel for schedule(static)
    for (int64_t p = 0; p < total; p++) {
        size_t b = (size_t)p / plane, i = (size_t)p % plane;
        const float *zp = z + b * E * plane + i;
        double best = DBL_MAX;
        int32_t arg = 0;
        for (int32_t k = 0; k < K; k++) {
            const double *e = code + (size_t)k * E;
            double d = 0.0;
            for (int32_t c = 0; c < E; c++) {
                double t = (double)zp[(size_t)c * plane] - e[c];
                d += t * t;
            }
            if (d < best) {
                best = d;
                arg = k;
            }
        }
        if (indices) indices[p] = arg;
        if (quant) {
            for (int32_t c = 0; c < E; c++) {
                float zv = zp[(size_t)c * plane];
                float diff = codef[(size_t)arg * E + c] - zv; /* (z_q - z).detach() */
                quant[b * E * plane + (size_t)c * plane + i] = zv + diff;
            }
        }
    }
    free(code);
    free(codef);
    return LDM_OK;
}
