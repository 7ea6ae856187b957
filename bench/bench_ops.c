/* Throughput of the CPU backend's heavy ops next to raw sgemm measured in the same run:
 *   - sgemm 4096 x 4096 x 320 and the sgemm a 3x3 320->320 64x64 conv reduces to (320 x 4096 x 2880),
 *     both through OpenBLAS (as it detected the CPU; OPENBLAS_CORETYPE overrides) and through the
 *     backend's own GEMM (cpu_gemm.h)
 *   - conv2d 3x3, 320 -> 320 channels, 64x64, stride 1, pad 1 (SD UNet level 1)
 *   - attention L = 4096, H = 8, D = 40 (SD UNet level-1 self-attention at 512x512)
 * Usage: bench_ops [threads] [repeats]. Prints the best of `repeats` runs.
 *
 * bench_ops --conv3x3 [threads] [repeats] [f16]: the 3x3 stride-1 conv shapes of SD 1.x (UNet at
 * 512x512 and 256x256, batch 2 and 1; VAE decoder/encoder at 512x512 and 256x256), F32 weights or
 * (f16) F16 weights as in the usual checkpoints, through the Winograd path
 * (cpu_conv2d_winograd, called directly, whatever cpu_winograd_eligible says) and through the
 * implicit GEMM (conv2d with LDM_CPU_WINOGRAD=0), alternating, best of `repeats`. */
#include "core/backend.h"
#include "core/common.h"
#include "core/dtype.h"
#include "cpu/cpu_gemm.h"
#include "cpu/cpu_winograd.h"

#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static double cpu_now(void) { /* CPU time of the whole process (all threads) */
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Best wall time and best CPU time (over all threads) of one op; the CPU time makes runs on a
 * loaded machine comparable: flop / cpu-second = per-core efficiency, spin-waits included. */
typedef struct timing {
    double wall, cpu;
} timing;

static void keep_best(timing *best, double w0, double c0) {
    double w = now() - w0, c = cpu_now() - c0;
    if (w < best->wall) best->wall = w;
    if (c < best->cpu) best->cpu = c;
}

static void report(const char *what, double flop, timing t, int threads) {
    printf("%-44s: %7.1f GFLOP/s  (%7.1f ms; %5.1f GFLOP per core-second)\n", what, flop / t.wall * 1e-9,
           t.wall * 1e3, flop / t.cpu * 1e-9);
    (void)threads;
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

static void bench_sgemm(const char *what, int m, int n, int k, int reps, int threads) {
    float *a = malloc(sizeof(float) * (size_t)m * k), *b = malloc(sizeof(float) * (size_t)k * n),
          *c = malloc(sizeof(float) * (size_t)m * n);
    fill(a, (size_t)m * k, 1);
    fill(b, (size_t)k * n, 2);
#ifdef OPENBLAS_VERSION
    openblas_set_num_threads(threads);
#else
    (void)threads;
#endif
    timing best = {1e30, 1e30}, own = {1e30, 1e30};
    cpu_gemm_mat B = {LDM_DT_F32, b, n, 1, 0, 1.0f, false};
    cpu_gemm_args g = {.m = m, .n = n, .k = k, .batch = 1, .A = {LDM_DT_F32, a, k, 1, 0, 1.0f, false}, .B = &B, .C = c,
                       .ldc = n};
    for (int r = 0; r < reps + 1; r++) {
        double t0 = now(), c0 = cpu_now();
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, m, n, k, 1.0f, a, k, b, n, 0.0f, c, n);
        if (r > 0) keep_best(&best, t0, c0); /* the first run warms up */
        t0 = now();
        c0 = cpu_now();
        if (cpu_gemm(threads, &g) != LDM_OK) exit(1);
        if (r > 0) keep_best(&own, t0, c0);
    }
    free(a);
    free(b);
    free(c);
    char line[96];
    snprintf(line, sizeof line, "%s, OpenBLAS", what);
    report(line, 2.0 * m * n * k, best, threads);
    snprintf(line, sizeof line, "%s, backend", what);
    report(line, 2.0 * m * n * k, own, threads);
}

/* Winograd against implicit GEMM for the 3x3 stride-1 convs of SD 1.x. */
static int bench_conv3x3(int threads, int reps, bool f16) {
    static const struct {
        const char *net;
        int64_t n, cin, cout, hw;
    } shapes[] = {
        {"UNet 512^2", 2, 320, 320, 64},   {"UNet 512^2", 2, 640, 320, 64},  {"UNet 512^2", 2, 960, 320, 64},
        {"UNet 512^2", 2, 320, 640, 32},   {"UNet 512^2", 2, 640, 640, 32},  {"UNet 512^2", 2, 960, 640, 32},
        {"UNet 512^2", 2, 1280, 640, 32},  {"UNet 512^2", 2, 640, 1280, 16}, {"UNet 512^2", 2, 1280, 1280, 16},
        {"UNet 512^2", 2, 1280, 1280, 8},  {"UNet 256^2", 2, 320, 320, 32},  {"UNet 256^2", 2, 640, 640, 16},
        {"VAE dec 512^2", 1, 512, 512, 64}, {"VAE dec 512^2", 1, 512, 512, 128}, {"VAE dec 512^2", 1, 512, 256, 256},
        {"VAE dec 512^2", 1, 256, 256, 256}, {"VAE dec 512^2", 1, 256, 128, 512}, {"VAE dec 512^2", 1, 128, 128, 512},
        {"VAE enc 512^2", 1, 128, 256, 256}, {"VAE enc 512^2", 1, 256, 512, 128},
        /* around the eligibility bounds: 64 tiles (one 32x32 image), 128 tiles with large weights */
        {"UNet 256^2 b1", 1, 320, 320, 32}, {"UNet 256^2 b1", 1, 640, 640, 16}, {"UNet 512^2 b1", 1, 640, 640, 32},
        {"UNet 512^2 b1", 1, 320, 640, 32}, {"VAE dec 256^2", 1, 512, 512, 32}, {"VAE dec 256^2", 1, 512, 512, 64},
        {"VAE dec 256^2", 1, 256, 128, 256},
    };
    setenv("LDM_CPU_WINOGRAD", "0", 1); /* before the backend's first conv: be->ops->conv2d = implicit GEMM */
    ldm_backend *be;
    if (ldm_cpu_backend_create(threads, &be) != LDM_OK) {
        fprintf(stderr, "%s\n", ldm_last_error());
        return 1;
    }
    threads = be->n_threads;
    printf("threads %d, best of %d, backend GEMM %s; %s weights; ms per conv, GFLOP/s counted as direct conv\n",
           threads, reps, cpu_gemm_get_impl()->name, f16 ? "F16" : "F32");
    printf("%-14s %-22s %9s %9s %9s %9s %7s %s\n", "net", "conv", "gemm ms", "wino ms", "gemm GF/s", "wino GF/s",
           "speedup", "eligible");
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
        const int64_t n = shapes[i].n, C = shapes[i].cin, K = shapes[i].cout, hw = shapes[i].hw;
        ldm_tensor *x = mk(be, 4, n, C, hw, hw, 3), *wf = mk(be, 4, K, C, 3, 3, 4), *b = mk(be, 1, K, 1, 1, 1, 5),
                   *y = mk(be, 4, n, K, hw, hw, 6), *w = wf;
        ldm_conv2d_params p = {1, 1, 1, 1, 1};
        uint16_t *h16 = NULL;
        ldm_tensor w16 = *wf;
        if (f16) { /* the same weight as F16, the way checkpoints store it */
            const size_t nw = (size_t)ldm_numel(w);
            h16 = malloc(nw * sizeof *h16);
            if (!h16) return 1;
            for (size_t j = 0; j < nw; j++) h16[j] = ldm_f32_to_f16(((const float *)wf->data)[j]);
            w16.dtype = LDM_DT_F16;
            w16.data = h16;
            w16.owns_data = false;
            w = &w16;
        }
        timing tg = {1e30, 1e30}, tw = {1e30, 1e30};
        for (int r = 0; r < reps + 1; r++) {
            double t0 = now(), c0 = cpu_now();
            if (be->ops->conv2d(be, x, w, b, &p, y) != LDM_OK) {
                fprintf(stderr, "conv2d: %s\n", ldm_last_error());
                return 1;
            }
            if (r > 0) keep_best(&tg, t0, c0);
            t0 = now();
            c0 = cpu_now();
            if (cpu_conv2d_winograd(threads, x, w, b->data, 1, 1, y) != LDM_OK) {
                fprintf(stderr, "winograd: %s\n", ldm_last_error());
                return 1;
            }
            if (r > 0) keep_best(&tw, t0, c0);
        }
        const double flop = 2.0 * (double)(n * K * C * 9 * hw * hw);
        char conv[64];
        snprintf(conv, sizeof conv, "%lldx %lld->%lld %lldx%lld", (long long)n, (long long)C, (long long)K,
                 (long long)hw, (long long)hw);
        printf("%-14s %-22s %9.1f %9.1f %9.1f %9.1f %6.2fx %s\n", shapes[i].net, conv, tg.wall * 1e3, tw.wall * 1e3,
               flop / tg.wall * 1e-9, flop / tw.wall * 1e-9, tg.wall / tw.wall,
               cpu_winograd_eligible(C, K, 3, 3, 1, hw, hw, n, threads) ? "yes" : "no");
        fflush(stdout);
        free(h16);
        be->ops->free_tensor(be, wf);
        be->ops->free_tensor(be, x);
        be->ops->free_tensor(be, b);
        be->ops->free_tensor(be, y);
    }
    be->ops->destroy(be);
    return 0;
}

int main(int argc, char **argv) {
    if (argc > 1 && strcmp(argv[1], "--conv3x3") == 0)
        return bench_conv3x3(argc > 2 ? atoi(argv[2]) : 0, argc > 3 ? atoi(argv[3]) : 2,
                             argc > 4 && strcmp(argv[4], "f16") == 0);
    int threads = argc > 1 ? atoi(argv[1]) : 0, reps = argc > 2 ? atoi(argv[2]) : 3;
    ldm_backend *be;
    if (ldm_cpu_backend_create(threads, &be) != LDM_OK) {
        fprintf(stderr, "%s\n", ldm_last_error());
        return 1;
    }
    threads = be->n_threads;
    printf("threads %d, best of %d", threads, reps);
#ifdef OPENBLAS_VERSION
    /* OpenBLAS 0.3.21 takes some CPUs it does not know (Sapphire Rapids VMs) for "Prescott" (SSE3
     * kernels, ~5x slower); OPENBLAS_CORETYPE=SkylakeX in the environment fixes that. */
    printf(", OpenBLAS core %s", openblas_get_corename());
#endif
    printf(", backend GEMM %s%s\n", cpu_gemm_get_impl()->name,
           cpu_gemm_use_openblas() ? " (LDM_CPU_GEMM=openblas: conv/linear/attention use OpenBLAS)" : "");
    bench_sgemm("sgemm 4096x4096x320", 4096, 4096, 320, reps, threads);
    bench_sgemm("sgemm 320x4096x2880 (as the conv)", 320, 4096, 2880, reps, threads);

    {
        ldm_tensor *x = mk(be, 4, 1, 320, 64, 64, 3), *w = mk(be, 4, 320, 320, 3, 3, 4), *b = mk(be, 1, 320, 1, 1, 1, 5),
                   *y = mk(be, 4, 1, 320, 64, 64, 6);
        ldm_conv2d_params p = {1, 1, 1, 1, 1};
        timing best = {1e30, 1e30};
        for (int r = 0; r < reps + 1; r++) {
            double t0 = now(), c0 = cpu_now();
            if (be->ops->conv2d(be, x, w, b, &p, y) != LDM_OK) {
                fprintf(stderr, "conv2d: %s\n", ldm_last_error());
                return 1;
            }
            if (r > 0) keep_best(&best, t0, c0);
        }
        report("conv2d 3x3 320->320 64x64", 2.0 * 320 * 320 * 9 * 64 * 64, best, threads);
        be->ops->free_tensor(be, x);
        be->ops->free_tensor(be, w);
        be->ops->free_tensor(be, b);
        be->ops->free_tensor(be, y);
    }
    {
        /* linear: the UNet's level-1 projections and the CLIP MLP */
        const int64_t shapes[2][3] = {{4096, 320, 320}, {77, 768, 3072}};
        for (int i = 0; i < 2; i++) {
            int64_t m = shapes[i][0], in = shapes[i][1], out = shapes[i][2];
            ldm_tensor *x = mk(be, 2, m, in, 1, 1, 11), *w = mk(be, 2, out, in, 1, 1, 12), *b = mk(be, 1, out, 1, 1, 1, 13),
                       *y = mk(be, 2, m, out, 1, 1, 14);
            timing best = {1e30, 1e30};
            for (int r = 0; r < 4 * reps + 1; r++) {
                double t0 = now(), c0 = cpu_now();
                if (be->ops->linear(be, x, w, b, y) != LDM_OK) {
                    fprintf(stderr, "linear: %s\n", ldm_last_error());
                    return 1;
                }
                if (r > 0) keep_best(&best, t0, c0);
            }
            char what[64];
            snprintf(what, sizeof what, "linear [%lld, %lld] -> %lld", (long long)m, (long long)in, (long long)out);
            report(what, 2.0 * m * in * out, best, threads);
            be->ops->free_tensor(be, x);
            be->ops->free_tensor(be, w);
            be->ops->free_tensor(be, b);
            be->ops->free_tensor(be, y);
        }
    }
    {
        const int64_t L = 4096, H = 8, D = 40;
        ldm_tensor *q = mk(be, 3, 1, L, H * D, 1, 7), *k = mk(be, 3, 1, L, H * D, 1, 8), *v = mk(be, 3, 1, L, H * D, 1, 9),
                   *y = mk(be, 3, 1, L, H * D, 1, 10);
        timing best = {1e30, 1e30};
        for (int r = 0; r < reps + 1; r++) {
            double t0 = now(), c0 = cpu_now();
            if (be->ops->attention(be, q, k, v, (int32_t)H, 0.158113883f, 0, y) != LDM_OK) {
                fprintf(stderr, "attention: %s\n", ldm_last_error());
                return 1;
            }
            if (r > 0) keep_best(&best, t0, c0);
        }
        report("attention L=4096 H=8 D=40", 4.0 * L * L * D * H, best, threads);
        be->ops->free_tensor(be, q);
        be->ops->free_tensor(be, k);
        be->ops->free_tensor(be, v);
        be->ops->free_tensor(be, y);
    }
    {
        /* memory-bound ops at SD 512x512 UNet level-1 sizes (batch 2), ms per call */
        ldm_tensor *x = mk(be, 3, 2, 4096, 2560, 1, 15), *y = mk(be, 3, 2, 4096, 1280, 1, 16);
        ldm_tensor *g = mk(be, 4, 2, 320, 64, 64, 17), *gy = mk(be, 4, 2, 320, 64, 64, 18);
        ldm_tensor *t = mk(be, 3, 2, 4096, 320, 1, 19);
        timing tg = {1e30, 1e30}, tn = {1e30, 1e30}, tt = {1e30, 1e30};
        for (int r = 0; r < reps + 1; r++) {
            double t0 = now(), c0 = cpu_now();
            be->ops->geglu(be, x, y);
            if (r > 0) keep_best(&tg, t0, c0);
            t0 = now();
            c0 = cpu_now();
            be->ops->group_norm(be, g, NULL, NULL, 32, 1e-5f, 1, gy);
            if (r > 0) keep_best(&tn, t0, c0);
            t0 = now();
            c0 = cpu_now();
            be->ops->nchw_to_nlc(be, g, t);
            if (r > 0) keep_best(&tt, t0, c0);
        }
        printf("%-34s: %7.2f ms\n", "geglu [2, 4096, 2560]", tg.wall * 1e3);
        printf("%-34s: %7.2f ms\n", "group_norm+silu [2, 320, 64, 64]", tn.wall * 1e3);
        printf("%-34s: %7.2f ms\n", "nchw_to_nlc [2, 320, 64, 64]", tt.wall * 1e3);
        be->ops->free_tensor(be, x);
        be->ops->free_tensor(be, y);
        be->ops->free_tensor(be, g);
        be->ops->free_tensor(be, gy);
        be->ops->free_tensor(be, t);
    }
    be->ops->destroy(be);
    return 0;
}
