/* Throughput of the CPU backend's heavy ops next to raw sgemm measured in the same run:
 *   - sgemm 4096 x 4096 x 320 and the sgemm a 3x3 320->320 64x64 conv reduces to (320 x 4096 x 2880)
 *   - conv2d 3x3, 320 -> 320 channels, 64x64, stride 1, pad 1 (SD UNet level 1)
 *   - attention L = 4096, H = 8, D = 40 (SD UNet level-1 self-attention at 512x512)
 * Usage: bench_ops [threads] [repeats]. Prints the best of `repeats` runs. */
#include "core/backend.h"
#include "core/common.h"

#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void fill(float *p, size_t n, unsigned seed) {
    for (size_t i = 0; i < n; i++) {
        seed = seed * 1664525u + 1013904223u;
        p[i] = (float)((seed >> 8) & 0xffff) / 65536.0f - 0.5f;
    }
}

static ldm_tensor *mk(ldm_backend *be, int nd, int64_t a, int64_t b, int64_t c, int64_t d, unsigned seed) {
    int64_t sh[4] = {a, b, c, d};
    ldm_tensor *t = be->ops->new_tensor(be, nd, sh);
    if (!t) {
        fprintf(stderr, "alloc failed: %s\n", ldm_last_error());
        exit(1);
    }
    fill(t->data, (size_t)ldm_numel(t), seed);
    return t;
}

static double bench_sgemm(int m, int n, int k, int reps, int threads) {
    float *a = malloc(sizeof(float) * (size_t)m * k), *b = malloc(sizeof(float) * (size_t)k * n),
          *c = malloc(sizeof(float) * (size_t)m * n);
    fill(a, (size_t)m * k, 1);
    fill(b, (size_t)k * n, 2);
#ifdef OPENBLAS_VERSION
    openblas_set_num_threads(threads);
#else
    (void)threads;
#endif
    double best = 1e30;
    for (int r = 0; r < reps + 1; r++) {
        double t0 = now();
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, m, n, k, 1.0f, a, k, b, n, 0.0f, c, n);
        double t = now() - t0;
        if (r > 0 && t < best) best = t; /* first run warms up */
    }
    free(a);
    free(b);
    free(c);
    return 2.0 * m * n * k / best * 1e-9;
}

int main(int argc, char **argv) {
    int threads = argc > 1 ? atoi(argv[1]) : 0, reps = argc > 2 ? atoi(argv[2]) : 3;
    ldm_backend *be;
    if (ldm_cpu_backend_create(threads, &be) != LDM_OK) {
        fprintf(stderr, "%s\n", ldm_last_error());
        return 1;
    }
    threads = be->n_threads;
    printf("threads %d, best of %d\n", threads, reps);
    printf("sgemm 4096x4096x320          : %7.1f GFLOP/s\n", bench_sgemm(4096, 4096, 320, reps, threads));
    printf("sgemm 320x4096x2880 (conv)   : %7.1f GFLOP/s\n", bench_sgemm(320, 4096, 2880, reps, threads));

    {
        ldm_tensor *x = mk(be, 4, 1, 320, 64, 64, 3), *w = mk(be, 4, 320, 320, 3, 3, 4), *b = mk(be, 1, 320, 1, 1, 1, 5),
                   *y = mk(be, 4, 1, 320, 64, 64, 6);
        ldm_conv2d_params p = {1, 1, 1, 1, 1};
        double best = 1e30;
        for (int r = 0; r < reps + 1; r++) {
            double t0 = now();
            if (be->ops->conv2d(be, x, w, b, &p, y) != LDM_OK) {
                fprintf(stderr, "conv2d: %s\n", ldm_last_error());
                return 1;
            }
            double t = now() - t0;
            if (r > 0 && t < best) best = t;
        }
        double fl = 2.0 * 320 * 320 * 9 * 64 * 64;
        printf("conv2d 3x3 320->320 64x64    : %7.1f GFLOP/s (%.1f ms)\n", fl / best * 1e-9, best * 1e3);
        be->ops->free_tensor(be, x);
        be->ops->free_tensor(be, w);
        be->ops->free_tensor(be, b);
        be->ops->free_tensor(be, y);
    }
    {
        const int64_t L = 4096, H = 8, D = 40;
        ldm_tensor *q = mk(be, 3, 1, L, H * D, 1, 7), *k = mk(be, 3, 1, L, H * D, 1, 8), *v = mk(be, 3, 1, L, H * D, 1, 9),
                   *y = mk(be, 3, 1, L, H * D, 1, 10);
        double best = 1e30;
        for (int r = 0; r < reps + 1; r++) {
            double t0 = now();
            if (be->ops->attention(be, q, k, v, (int32_t)H, 0.158113883f, 0, y) != LDM_OK) {
                fprintf(stderr, "attention: %s\n", ldm_last_error());
                return 1;
            }
            double t = now() - t0;
            if (r > 0 && t < best) best = t;
        }
        double fl = 4.0 * L * L * D * H;
        printf("attention L=4096 H=8 D=40    : %7.1f GFLOP/s (%.1f ms)\n", fl / best * 1e-9, best * 1e3);
        be->ops->free_tensor(be, q);
        be->ops->free_tensor(be, k);
        be->ops->free_tensor(be, v);
        be->ops->free_tensor(be, y);
    }
    be->ops->destroy(be);
    return 0;
}
