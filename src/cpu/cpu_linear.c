/* linear: y[M, out] = x[M, in] w[out, in]^T + b, one GEMM: the backend's own (the weight read
 * as the transposed B operand in its file dtype, widened while packed; the bias added in the
 * kernel's epilogue), or with LDM_CPU_GEMM=openblas an F32 copy of the weight and cblas_sgemm. */
#include "cpu_gemm.h"
#include "cpu_internal.h"

#include <cblas.h>

ldm_status cpu_linear(ldm_backend *be, const ldm_tensor *x, const ldm_tensor *w, const ldm_tensor *b,
                      ldm_tensor *y) {
    const char *op = "linear";
    ldm_status st;
    if ((st = cpu_check_act(op, "x", x)) || (st = cpu_check_weight(op, "w", w)) ||
        (st = cpu_check_act(op, "y", y)))
        return st;
    if (b && (st = cpu_check_weight(op, "b", b))) return st;
    char s1[64], s2[64], s3[64];
    const int64_t in = x->ne[x->ndim - 1];
    bool ok = w->ndim == 2 && w->ne[1] == in && y->ndim == x->ndim && y->ne[y->ndim - 1] == w->ne[0];
    for (int i = 0; ok && i < x->ndim - 1; i++) ok = x->ne[i] == y->ne[i];
    if (!ok)
        return ldm_fail(LDM_ERR_INVALID_ARG, "linear: x %s, w %s, y %s do not match (x [..., in], w [out, in], y [..., out])",
                        cpu_shape_str(x, s1, sizeof s1), cpu_shape_str(w, s2, sizeof s2),
                        cpu_shape_str(y, s3, sizeof s3));
    const int64_t out = w->ne[0], m = ldm_numel(x) / in;
    if (b && ldm_numel(b) != out)
        return ldm_fail(LDM_ERR_INVALID_ARG, "linear: bias has %lld elements for %lld outputs",
                        (long long)ldm_numel(b), (long long)out);
    if (m > INT32_MAX || in > INT32_MAX || out > INT32_MAX)
        return ldm_fail(LDM_ERR_INVALID_ARG, "linear: dimensions exceed the BLAS index range");
    if ((st = cpu_check_no_alias(op, y, x))) return st;

    const int nt = cpu_threads(be);
    cpu_weight wf, bf;
    if (!cpu_gemm_use_openblas()) {
        if ((st = cpu_weight_get(op, b, 1, &bf))) return st;
        cpu_gemm_mat B = {w->dtype, w->data, 1, in, 0, 1.0f, false};
        cpu_gemm_args a = {.m = m, .n = out, .k = in, .batch = 1, .A = {LDM_DT_F32, x->data, in, 1, 0, 1.0f, false}, .B = &B,
                           .C = y->data, .ldc = out, .bias_n = bf.p};
        st = cpu_gemm(nt, &a);
        cpu_weight_release(&bf);
        return st;
    }
    if ((st = cpu_weight_get(op, w, nt, &wf))) return st;
    if ((st = cpu_weight_get(op, b, nt, &bf))) {
        cpu_weight_release(&wf);
        return st;
    }
    float *yd = y->data;
    const float *B = bf.p;
    if (B) {
        int nt2 = m * out >= 65536 ? nt : 1;
#pragma omp parallel for num_threads(nt2) schedule(static)
        for (int64_t i = 0; i < m; i++) memcpy(yd + i * out, B, (size_t)out * sizeof(float));
    }
    cpu_sgemm_openblas(nt, true, m, out, in, 1.0f, (const float *)x->data, in, wf.p, in, B ? 1.0f : 0.0f, yd, out);
    cpu_weight_release(&wf);
    cpu_weight_release(&bf);
    return LDM_OK;
}
