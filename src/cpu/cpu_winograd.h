/* Winograd F(4x4, 3x3) convolution (cpu_winograd.c). */
#ifndef LDM_CPU_WINOGRAD_H
#define LDM_CPU_WINOGRAD_H

#include "cpu_internal.h"

/* false when the environment has LDM_CPU_WINOGRAD=0 (or LDM_CPU_GEMM=openblas: the reference
 * path), read once. */
LDM_INTERNAL bool cpu_winograd_enabled(void);
/* Whether a conv of these dimensions takes the Winograd path on n_threads threads (3x3,
 * stride 1, enough channels and tiles, enough chunks of tiles for the threads). */
LDM_INTERNAL bool cpu_winograd_eligible(int64_t cin, int64_t cout, int64_t kh, int64_t kw, int64_t stride, int64_t oh,
                                        int64_t ow, int64_t n, int n_threads);
/* y = conv3x3(x, w, stride 1, top/left padding pt/pl; bottom/right implied by y's size) + bias
 * (F32 [cout] or NULL). */
LDM_INTERNAL ldm_status cpu_conv2d_winograd(int n_threads, const ldm_tensor *x, const ldm_tensor *w, const float *bias,
                                            int64_t pt, int64_t pl, ldm_tensor *y);

#endif
