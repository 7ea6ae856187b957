/* bench-sd: times the networks of a full-size Stable Diffusion 1.x checkpoint on the CPU.
 *
 *   bench-sd MODEL [--sizes 256,512] [--threads N] [--steps-only] [--reps N] [--warmup-all]
 *                  [--no-profile]
 *
 * Loads MODEL with ldm_model_load (no config file: family defaults) and measures, each as the mean
 * (and min/max) of a few timed repetitions after an untimed warm-up run (one per network, before
 * its first size; --warmup-all: before every size):
 *   - text encoding of one prompt (tokenizer + clip_text_forward, batch 1);
 *   - one UNet evaluation with batch 2 (as with classifier-free guidance) per image size, latent
 *     size/8, with the effective GFLOP/s from an analytical FLOP count;
 *   - VAE decode (batch 1) per image size;
 *   - sgemm GFLOP/s with the same thread count, OpenBLAS-threaded and through the backend's
 *     cpu_sgemm (2048^3 and shapes typical of the UNet);
 *   - peak RSS (getrusage ru_maxrss) and current RSS after each phase;
 *   - the process CPU time per run next to the wall time (the machine may be shared).
 * Unless --no-profile, every timed UNet/VAE run goes through a thin wrapper of the backend vtable that
 * times each op kind and counts the FLOPs of conv/linear/attention from the actual operand shapes,
 * which cross-checks the analytical count and shows where the time goes.
 *
 * This is a benchmark, not a test: it exits 0 when every phase ran and gave finite outputs. */
#include "core/clip_tokenizer.h"
#include "core/context.h"
#include "core/model.h"
#include "core/nets.h"
#include "cpu/cpu_gemm.h"
#include "cpu/cpu_internal.h"

#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#define UNET "model.diffusion_model."

/* ------------------------------------------------------------------------------------------ */
/* Small utilities                                                                            */
/* ------------------------------------------------------------------------------------------ */

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static double cpu_s(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + 1e-6 * (double)ru.ru_utime.tv_usec + (double)ru.ru_stime.tv_sec +
           1e-6 * (double)ru.ru_stime.tv_usec;
}

static double peak_rss_mib(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_maxrss / 1024.0; /* ru_maxrss is in KiB on Linux */
}

/* Current resident set (all of it, and the file-backed/shared part: the mapped checkpoint). */
static void cur_rss_mib(double *rss, double *shared) {
    *rss = *shared = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    if (!f) return;
    long size, res, shr;
    if (fscanf(f, "%ld %ld %ld", &size, &res, &shr) == 3) {
        double pg = (double)sysconf(_SC_PAGESIZE) / (1024.0 * 1024.0);
        *rss = (double)res * pg;
        *shared = (double)shr * pg;
    }
    fclose(f);
}

static double loadavg1(void) {
    double l = -1;
    FILE *f = fopen("/proc/loadavg", "r");
    if (f) {
        if (fscanf(f, "%lf", &l) != 1) l = -1;
        fclose(f);
    }
    return l;
}

/* Deterministic N(0, 1)-ish fill (sum of 4 uniforms, rescaled): no RNG stream needed here. */
static void fill_noise(float *p, size_t n, uint64_t seed, float scale) {
    uint64_t s = seed * 0x9E3779B97F4A7C15ull + 1;
    for (size_t i = 0; i < n; i++) {
        float acc = 0;
        for (int k = 0; k < 4; k++) {
            s = s * 6364136223846793005ull + 1442695040888963407ull;
            acc += (float)(s >> 40) / (float)(1u << 24);
        }
        p[i] = (acc - 2.0f) * 1.7320508f * scale; /* var of a sum of 4 U(0,1) is 1/3 */
    }
}

/* Fraction of finite values and the mean |x| of the finite ones. */
static void finite_stats(const float *p, size_t n, double *frac, double *mabs) {
    size_t ok = 0;
    double s = 0;
    for (size_t i = 0; i < n; i++)
        if (isfinite(p[i])) {
            ok++;
            s += fabs(p[i]);
        }
    *frac = n ? (double)ok / (double)n : 0;
    *mabs = ok ? s / (double)ok : 0;
}

static void *xmalloc(size_t n) {
    void *p = malloc(n ? n : 1);
    if (!p) {
        fprintf(stderr, "bench-sd: out of memory (%zu bytes)\n", n);
        exit(1);
    }
    return p;
}

/* ------------------------------------------------------------------------------------------ */
/* Profiling backend: wraps the real backend's vtable, times every op and counts FLOPs from     */
/* the actual shapes.                                                                          */
/* ------------------------------------------------------------------------------------------ */

enum {
    K_CONV3, /* conv2d with a kernel larger than 1x1 (3x3 in SD) */
    K_CONV1, /* 1x1 conv2d */
    K_LINEAR,
    K_ATTN,
    K_GNORM,
    K_LNORM,
    K_GEGLU,
    K_UNARY,
    K_ADD, /* add, add_per_channel, scale */
    K_LAYOUT, /* upsample, concat, nchw<->nlc */
    K_EMBED,
    K_IO, /* upload/download */
    K_COUNT
};
static const char *kind_name[K_COUNT] = {"conv 3x3",  "conv 1x1",  "linear", "attention (QK^T, AV)", "group_norm",
                                         "layer_norm", "geglu",    "unary",  "add/scale",            "layout",
                                         "embedding",  "upload/download"};

typedef struct prof_stats {
    double t[K_COUNT];
    double flops[K_COUNT];
    long calls[K_COUNT];
} prof_stats;

typedef struct prof_backend {
    ldm_backend base; /* first: ldm_backend * <-> prof_backend * */
    ldm_backend *inner;
    prof_stats st;
} prof_backend;

#define INNER(be) (((prof_backend *)(be))->inner)
#define ACC(be, k, t0, fl)                                                                                       \
    do {                                                                                                         \
        prof_backend *pb_ = (prof_backend *)(be);                                                                \
        pb_->st.t[k] += now_s() - (t0);                                                                          \
        pb_->st.flops[k] += (fl);                                                                                \
        pb_->st.calls[k]++;                                                                                      \
    } while (0)

static void p_destroy(ldm_backend *be) { (void)be; }
static ldm_tensor *p_new_tensor(ldm_backend *be, int32_t ndim, const int64_t *shape) {
    return INNER(be)->ops->new_tensor(INNER(be), ndim, shape);
}
static void p_free_tensor(ldm_backend *be, ldm_tensor *t) { INNER(be)->ops->free_tensor(INNER(be), t); }
static ldm_status p_upload(ldm_backend *be, ldm_tensor *dst, const float *src) {
    double t0 = now_s();
    ldm_status st = INNER(be)->ops->upload(INNER(be), dst, src);
    ACC(be, K_IO, t0, 0);
    return st;
}
static ldm_status p_download(ldm_backend *be, const ldm_tensor *src, float *dst) {
    double t0 = now_s();
    ldm_status st = INNER(be)->ops->download(INNER(be), src, dst);
    ACC(be, K_IO, t0, 0);
    return st;
}
static ldm_status p_conv2d(ldm_backend *be, const ldm_tensor *x, const ldm_tensor *w, const ldm_tensor *b,
                           const ldm_conv2d_params *p, ldm_tensor *y) {
    double t0 = now_s();
    ldm_status st = INNER(be)->ops->conv2d(INNER(be), x, w, b, p, y);
    /* 2 * N * Cout * OH * OW * Cin * KH * KW */
    double fl = 2.0 * (double)ldm_numel(y) * (double)(w->ne[1] * w->ne[2] * w->ne[3]);
    ACC(be, w->ne[2] * w->ne[3] > 1 ? K_CONV3 : K_CONV1, t0, fl);
    return st;
}
static ldm_status p_linear(ldm_backend *be, const ldm_tensor *x, const ldm_tensor *w, const ldm_tensor *b,
                           ldm_tensor *y) {
    double t0 = now_s();
    ldm_status st = INNER(be)->ops->linear(INNER(be), x, w, b, y);
    ACC(be, K_LINEAR, t0, 2.0 * (double)ldm_numel(y) * (double)w->ne[1]);
    return st;
}
static ldm_status p_group_norm(ldm_backend *be, const ldm_tensor *x, const ldm_tensor *g, const ldm_tensor *b,
                               int32_t groups, float eps, int32_t silu, ldm_tensor *y) {
    double t0 = now_s();
    ldm_status st = INNER(be)->ops->group_norm(INNER(be), x, g, b, groups, eps, silu, y);
    ACC(be, K_GNORM, t0, 0);
    return st;
}
static ldm_status p_layer_norm(ldm_backend *be, const ldm_tensor *x, const ldm_tensor *g, const ldm_tensor *b,
                               float eps, ldm_tensor *y) {
    double t0 = now_s();
    ldm_status st = INNER(be)->ops->layer_norm(INNER(be), x, g, b, eps, y);
    ACC(be, K_LNORM, t0, 0);
    return st;
}
static ldm_status p_attention(ldm_backend *be, const ldm_tensor *q, const ldm_tensor *k, const ldm_tensor *v,
                              int32_t heads, float scale, int32_t causal, ldm_tensor *y) {
    double t0 = now_s();
    ldm_status st = INNER(be)->ops->attention(INNER(be), q, k, v, heads, scale, causal, y);
    /* QK^T and AV: 2 * (2 * B * Lq * Lk * H*D), the full (unmasked) products. */
    ACC(be, K_ATTN, t0, 4.0 * (double)q->ne[0] * (double)q->ne[1] * (double)k->ne[1] * (double)q->ne[2]);
    return st;
}
static ldm_status p_unary(ldm_backend *be, ldm_unary_op op, const ldm_tensor *x, ldm_tensor *y) {
    double t0 = now_s();
    ldm_status st = INNER(be)->ops->unary(INNER(be), op, x, y);
    ACC(be, K_UNARY, t0, 0);
    return st;
}
static ldm_status p_geglu(ldm_backend *be, const ldm_tensor *x, ldm_tensor *y) {
    double t0 = now_s();
    ldm_status st = INNER(be)->ops->geglu(INNER(be), x, y);
    ACC(be, K_GEGLU, t0, 0);
    return st;
}
static ldm_status p_add(ldm_backend *be, const ldm_tensor *a, const ldm_tensor *b, ldm_tensor *y) {
    double t0 = now_s();
    ldm_status st = INNER(be)->ops->add(INNER(be), a, b, y);
    ACC(be, K_ADD, t0, 0);
    return st;
}
static ldm_status p_add_per_channel(ldm_backend *be, const ldm_tensor *x, const ldm_tensor *b, ldm_tensor *y) {
    double t0 = now_s();
    ldm_status st = INNER(be)->ops->add_per_channel(INNER(be), x, b, y);
    ACC(be, K_ADD, t0, 0);
    return st;
}
static ldm_status p_scale(ldm_backend *be, const ldm_tensor *x, float s, ldm_tensor *y) {
    double t0 = now_s();
    ldm_status st = INNER(be)->ops->scale(INNER(be), x, s, y);
    ACC(be, K_ADD, t0, 0);
    return st;
}
static ldm_status p_upsample(ldm_backend *be, const ldm_tensor *x, ldm_tensor *y) {
    double t0 = now_s();
    ldm_status st = INNER(be)->ops->upsample_nearest2x(INNER(be), x, y);
    ACC(be, K_LAYOUT, t0, 0);
    return st;
}
static ldm_status p_concat(ldm_backend *be, const ldm_tensor *a, const ldm_tensor *b, ldm_tensor *y) {
    double t0 = now_s();
    ldm_status st = INNER(be)->ops->concat_channels(INNER(be), a, b, y);
    ACC(be, K_LAYOUT, t0, 0);
    return st;
}
static ldm_status p_to_nlc(ldm_backend *be, const ldm_tensor *x, ldm_tensor *y) {
    double t0 = now_s();
    ldm_status st = INNER(be)->ops->nchw_to_nlc(INNER(be), x, y);
    ACC(be, K_LAYOUT, t0, 0);
    return st;
}
static ldm_status p_to_nchw(ldm_backend *be, const ldm_tensor *x, ldm_tensor *y) {
    double t0 = now_s();
    ldm_status st = INNER(be)->ops->nlc_to_nchw(INNER(be), x, y);
    ACC(be, K_LAYOUT, t0, 0);
    return st;
}
static ldm_status p_embedding(ldm_backend *be, const ldm_tensor *w, const int32_t *ids, int64_t n, ldm_tensor *y) {
    double t0 = now_s();
    ldm_status st = INNER(be)->ops->embedding(INNER(be), w, ids, n, y);
    ACC(be, K_EMBED, t0, 0);
    return st;
}

static const ldm_backend_ops prof_ops = {
    .name = "profile",
    .destroy = p_destroy,
    .new_tensor = p_new_tensor,
    .free_tensor = p_free_tensor,
    .upload = p_upload,
    .download = p_download,
    .conv2d = p_conv2d,
    .linear = p_linear,
    .group_norm = p_group_norm,
    .layer_norm = p_layer_norm,
    .attention = p_attention,
    .unary = p_unary,
    .geglu = p_geglu,
    .add = p_add,
    .add_per_channel = p_add_per_channel,
    .scale = p_scale,
    .upsample_nearest2x = p_upsample,
    .concat_channels = p_concat,
    .nchw_to_nlc = p_to_nlc,
    .nlc_to_nchw = p_to_nchw,
    .embedding = p_embedding,
};

/* ------------------------------------------------------------------------------------------ */
/* Analytical FLOP count of one UNet evaluation, from the config and the weight shapes. It walks */
/* the same block structure as unet_forward (src/core/unet.c).                                 */
/*   counted: 2 * MACs of every conv2d (N*Cout*OH*OW*Cin*KH*KW) and linear (M*in*out), and the   */
/*            attention matmuls QK^T and AV (2 * 2*B*Lq*Lk*C each head summed);                  */
/*   not counted: biases, norms, softmax, activations, GEGLU gating, residual adds, upsampling. */
/* ------------------------------------------------------------------------------------------ */

typedef struct flop_count {
    double f[K_COUNT]; /* by kind: K_CONV3, K_CONV1, K_LINEAR, K_ATTN */
    int missing;       /* weights not found (layout mismatch) */
} flop_count;

static const ldm_tensor *fw(const ldm_model *m, flop_count *fc, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static const ldm_tensor *fw(const ldm_model *m, flop_count *fc, const char *fmt, ...) {
    char name[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(name, sizeof name, fmt, ap);
    va_end(ap);
    const ldm_tensor *t = model_weight(m, name);
    if (!t) {
        if (!fc->missing) fprintf(stderr, "bench-sd: flop count: no tensor '%s'\n", name);
        fc->missing++;
    }
    return t;
}

/* conv with weight w producing n x oh x ow outputs per output channel */
static void fc_conv(flop_count *fc, const ldm_tensor *w, int64_t n, int64_t oh, int64_t ow) {
    if (!w) return;
    double macs = (double)n * (double)oh * (double)ow * (double)ldm_numel(w);
    fc->f[w->ndim == 4 && w->ne[2] * w->ne[3] > 1 ? K_CONV3 : K_CONV1] += 2 * macs;
}
/* linear with weight w [out, in] applied to `rows` rows */
static void fc_linear(flop_count *fc, const ldm_tensor *w, int64_t rows) {
    if (!w) return;
    fc->f[K_LINEAR] += 2.0 * (double)rows * (double)ldm_numel(w);
}

/* ResBlock at resolution h x w; returns the output channels. */
static int64_t fc_res(const ldm_model *m, flop_count *fc, const char *p, int64_t n, int64_t h, int64_t w) {
    const ldm_tensor *c1 = fw(m, fc, "%sin_layers.2.weight", p);
    const ldm_tensor *c2 = fw(m, fc, "%sout_layers.3.weight", p);
    fc_conv(fc, c1, n, h, w);
    fc_linear(fc, fw(m, fc, "%semb_layers.1.weight", p), n);
    fc_conv(fc, c2, n, h, w);
    if (model_has(m, "%sskip_connection.weight", p)) fc_conv(fc, fw(m, fc, "%sskip_connection.weight", p), n, h, w);
    return c2 ? c2->ne[0] : 0;
}

static void fc_transformer(const ldm_model *m, flop_count *fc, const char *p, int64_t n, int64_t h, int64_t w,
                           int64_t tokens) {
    const unet_config *u = &m->unet;
    int64_t L = h * w;
    const ldm_tensor *pin = fw(m, fc, "%sproj_in.weight", p), *pout = fw(m, fc, "%sproj_out.weight", p);
    if (u->linear_proj) {
        fc_linear(fc, pin, n * L);
        fc_linear(fc, pout, n * L);
    } else {
        fc_conv(fc, pin, n, h, w);
        fc_conv(fc, pout, n, h, w);
    }
    for (int d = 0; d < u->transformer_depth; d++) {
        char b[400];
        snprintf(b, sizeof b, "%stransformer_blocks.%d.", p, d);
        for (int a = 1; a <= 2; a++) {
            int64_t lk = a == 1 ? L : tokens;
            const ldm_tensor *q = fw(m, fc, "%sattn%d.to_q.weight", b, a);
            fc_linear(fc, q, n * L);
            fc_linear(fc, fw(m, fc, "%sattn%d.to_k.weight", b, a), n * lk);
            fc_linear(fc, fw(m, fc, "%sattn%d.to_v.weight", b, a), n * lk);
            fc_linear(fc, fw(m, fc, "%sattn%d.to_out.0.weight", b, a), n * L);
            int64_t inner = q ? q->ne[0] : 0;
            fc->f[K_ATTN] += 2.0 * 2.0 * (double)n * (double)L * (double)lk * (double)inner; /* QK^T + AV */
        }
        fc_linear(fc, fw(m, fc, "%sff.net.0.proj.weight", b), n * L);
        fc_linear(fc, fw(m, fc, "%sff.net.2.weight", b), n * L);
    }
}

static void fc_res_attn(const ldm_model *m, flop_count *fc, const char *block, int64_t n, int64_t h, int64_t w,
                        int64_t tokens) {
    char p[300];
    snprintf(p, sizeof p, "%s0.", block);
    fc_res(m, fc, p, n, h, w);
    if (model_has(m, "%s1.norm.weight", block)) {
        snprintf(p, sizeof p, "%s1.", block);
        fc_transformer(m, fc, p, n, h, w, tokens);
    }
}

static flop_count unet_flops(const ldm_model *m, int64_t n, int64_t h, int64_t w, int64_t tokens) {
    flop_count fc;
    memset(&fc, 0, sizeof fc);
    const unet_config *u = &m->unet;
    fc_linear(&fc, fw(m, &fc, UNET "time_embed.0.weight"), n);
    fc_linear(&fc, fw(m, &fc, UNET "time_embed.2.weight"), n);
    fc_conv(&fc, fw(m, &fc, UNET "input_blocks.0.0.weight"), n, h, w);
    int idx = 1;
    int64_t ch = h, cw = w;
    for (int level = 0; level < u->n_levels; level++) {
        for (int i = 0; i < u->num_res_blocks; i++, idx++) {
            char block[128];
            snprintf(block, sizeof block, UNET "input_blocks.%d.", idx);
            fc_res_attn(m, &fc, block, n, ch, cw, tokens);
        }
        if (level != u->n_levels - 1) {
            ch = (ch + 2 - 3) / 2 + 1;
            cw = (cw + 2 - 3) / 2 + 1;
            fc_conv(&fc, fw(m, &fc, UNET "input_blocks.%d.0.op.weight", idx), n, ch, cw);
            idx++;
        }
    }
    fc_res(m, &fc, UNET "middle_block.0.", n, ch, cw);
    if (model_has(m, UNET "middle_block.1.norm.weight")) fc_transformer(m, &fc, UNET "middle_block.1.", n, ch, cw, tokens);
    fc_res(m, &fc, model_has(m, UNET "middle_block.2.in_layers.0.weight") ? UNET "middle_block.2." : UNET "middle_block.1.",
           n, ch, cw);
    idx = 0;
    for (int level = u->n_levels - 1; level >= 0; level--) {
        for (int i = 0; i <= u->num_res_blocks; i++, idx++) {
            char block[128];
            snprintf(block, sizeof block, UNET "output_blocks.%d.", idx);
            fc_res_attn(m, &fc, block, n, ch, cw, tokens);
            if (level != 0 && i == u->num_res_blocks) {
                ch *= 2;
                cw *= 2;
                int j = model_has(m, UNET "output_blocks.%d.1.conv.weight", idx) ? 1 : 2;
                fc_conv(&fc, fw(m, &fc, UNET "output_blocks.%d.%d.conv.weight", idx, j), n, ch, cw);
            }
        }
    }
    fc_conv(&fc, fw(m, &fc, UNET "out.2.weight"), n, ch, cw);
    return fc;
}

static double fc_total(const flop_count *fc) {
    double s = 0;
    for (int k = 0; k < K_COUNT; k++) s += fc->f[k];
    return s;
}

/* ------------------------------------------------------------------------------------------ */
/* sgemm reference                                                                             */
/* ------------------------------------------------------------------------------------------ */

typedef struct gemm_shape {
    const char *what;
    int m, n, k;
    int trans_b; /* B given as [n, k] (torch Linear weight) */
} gemm_shape;

/* One product: OpenBLAS threading itself (via_backend = 0, openblas_set_num_threads(threads)), or
 * the CPU backend's cpu_sgemm (via_backend = 1: C split into blocks over `threads` OpenMP threads,
 * one single-threaded OpenBLAS call each, which is how the backend runs conv/linear). */
static void gemm_once(const gemm_shape *g, int threads, int via_backend, const float *a, const float *b, float *c) {
    int ldb = g->trans_b ? g->k : g->n;
    if (via_backend) {
        cpu_sgemm(threads, g->trans_b != 0, g->m, g->n, g->k, 1.0f, a, g->k, b, ldb, 0.0f, c, g->n);
    } else {
        cpu_blas_set_threads(threads);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, g->trans_b ? CblasTrans : CblasNoTrans, g->m, g->n, g->k, 1.0f, a,
                    g->k, b, ldb, 0.0f, c, g->n);
    }
}

/* GFLOP/s of C[m,n] = A[m,k] B; repeats until about min_s seconds (after one warm-up call).
 * *per_cpu (optional) receives GFLOP per second of process CPU time. */
static double sgemm_gflops(const gemm_shape *g, int threads, int via_backend, double min_s, double *per_cpu) {
    float *a = xmalloc((size_t)g->m * g->k * sizeof(float));
    float *b = xmalloc((size_t)g->k * g->n * sizeof(float));
    float *c = xmalloc((size_t)g->m * g->n * sizeof(float));
    fill_noise(a, (size_t)g->m * g->k, 1, 1.0f);
    fill_noise(b, (size_t)g->k * g->n, 2, 1.0f);
    gemm_once(g, threads, via_backend, a, b, c);
    int reps = 0;
    double t0 = now_s(), c0 = cpu_s(), t;
    do {
        gemm_once(g, threads, via_backend, a, b, c);
        reps++;
        t = now_s() - t0;
    } while (t < min_s || reps < 2);
    double cpu = cpu_s() - c0;
    free(a);
    free(b);
    free(c);
    double gflop = 2.0 * g->m * (double)g->n * g->k * reps / 1e9;
    if (per_cpu) *per_cpu = cpu > 0 ? gflop / cpu : 0;
    return gflop / t;
}

/* ------------------------------------------------------------------------------------------ */
/* Phases                                                                                      */
/* ------------------------------------------------------------------------------------------ */

typedef struct timing {
    double mean, min, max, cpu_util; /* seconds; cpu_util = (user+sys CPU) / wall over the timed runs */
    double cpu_per_run;              /* process CPU seconds (user+sys) per timed run */
    double first;                    /* the (last) untimed warm-up run, 0 without one */
    int reps;
} timing;

typedef ldm_status (*run_fn)(void *arg);

/* warmup untimed runs, then reps timed ones. */
static ldm_status time_runs(run_fn fn, void *arg, int warmup, int reps, timing *out) {
    memset(out, 0, sizeof *out);
    for (int i = 0; i < warmup; i++) {
        double t0 = now_s();
        ldm_status st = fn(arg);
        out->first = now_s() - t0;
        if (st) return st;
    }
    double sum = 0, c0 = cpu_s();
    out->min = 1e30;
    for (int i = 0; i < reps; i++) {
        double t0 = now_s();
        ldm_status st = fn(arg);
        double t = now_s() - t0;
        if (st) return st;
        sum += t;
        if (t < out->min) out->min = t;
        if (t > out->max) out->max = t;
    }
    out->reps = reps;
    out->mean = reps ? sum / reps : 0;
    double cpu = cpu_s() - c0;
    out->cpu_util = sum > 0 ? cpu / sum : 0;
    out->cpu_per_run = reps ? cpu / reps : 0;
    return LDM_OK;
}

typedef struct bench {
    ldm_context *ctx;
    ldm_model *m;
    ldm_backend *be; /* what the exec runs on: the profiler or the context's backend */
    /* text */
    int32_t ids[LDM_CLIP_CONTEXT_LENGTH];
    const char *prompt;
    float *text_out;
    /* unet */
    int32_t n, lh, lw;
    float *x, *t, *context, *out;
    /* vae */
    float *z, *image;
} bench;

static void exec_begin(bench *b, ldm_exec *ex) {
    ctx_begin(b->ctx, ex);
    ex->be = b->be;
}

static ldm_status run_text(void *arg) {
    bench *b = arg;
    ldm_exec ex;
    exec_begin(b, &ex);
    ldm_status st = ldm_clip_encode(b->m->tokenizer, b->prompt, b->m->clip.pad_id, b->ids);
    if (st) return st;
    return clip_text_forward(&ex, b->m, b->ids, 1, 0, b->text_out, NULL);
}

static ldm_status run_unet(void *arg) {
    bench *b = arg;
    ldm_exec ex;
    exec_begin(b, &ex);
    return unet_forward(&ex, b->m, b->n, b->lh, b->lw, b->x, b->t, b->m->clip.n_pos, b->context, b->out);
}

static ldm_status run_vae(void *arg) {
    bench *b = arg;
    ldm_exec ex;
    exec_begin(b, &ex);
    return vae_decode(&ex, b->m, 1, b->lh, b->lw, b->z, b->image);
}

/* F16/BF16 -> F32 conversion of every UNet weight that goes through conv/linear: the CPU
 * backend does this inside each conv/linear call, so it is part of every UNet evaluation. */
static double unet_weight_convert_s(const ldm_model *m, int threads, double *gb) {
    double t0 = now_s();
    double bytes = 0;
    for (size_t i = 0; i < m->n_weights; i++) {
        const st_tensor *s = st_at(m->file, i);
        const ldm_tensor *t = &m->weights[i];
        if (strncmp(s->name, UNET, strlen(UNET)) != 0 || t->ndim < 2) continue;
        cpu_weight w;
        if (cpu_weight_get("bench", t, threads, &w)) continue;
        cpu_weight_release(&w);
        bytes += (double)ldm_numel(t) * 4.0;
    }
    *gb = bytes / 1e9;
    return now_s() - t0;
}

/* ------------------------------------------------------------------------------------------ */
/* Reporting                                                                                   */
/* ------------------------------------------------------------------------------------------ */

typedef struct mem_row {
    char phase[48];
    double peak, cur, shared;
} mem_row;
static mem_row mem_rows[32];
static int n_mem;

static void mem_mark(const char *phase) {
    if (n_mem >= 32) return;
    mem_row *r = &mem_rows[n_mem++];
    snprintf(r->phase, sizeof r->phase, "%s", phase);
    r->peak = peak_rss_mib();
    cur_rss_mib(&r->cur, &r->shared);
}

/* The warm-up time as a table cell ("-" when there was none). Uses a rotating static buffer. */
static const char *fmt_first(const timing *t) {
    static char buf[4][16];
    static int i;
    char *b = buf[i++ & 3];
    if (t->first > 0)
        snprintf(b, 16, "%.3f", t->first);
    else
        snprintf(b, 16, "-");
    return b;
}

static void print_profile(const prof_stats *ps, int runs, double wall_per_run) {
    double tot = 0;
    for (int k = 0; k < K_COUNT; k++) tot += ps->t[k];
    printf("    %-22s %9s %7s %8s %10s %9s\n", "op", "s/eval", "share", "calls", "GFLOP", "GFLOP/s");
    for (int k = 0; k < K_COUNT; k++) {
        if (!ps->calls[k]) continue;
        double t = ps->t[k] / runs, f = ps->flops[k] / runs / 1e9;
        printf("    %-22s %9.3f %6.1f%% %8ld", kind_name[k], t, 100.0 * t / wall_per_run, ps->calls[k] / runs);
        if (f > 0)
            printf(" %10.1f %9.1f\n", f, f / t);
        else
            printf(" %10s %9s\n", "-", "-");
    }
    double rest = wall_per_run - tot / runs;
    printf("    %-22s %9.3f %6.1f%%   (weight lookups, allocation, outside the ops)\n", "other", rest,
           100.0 * rest / wall_per_run);
}

static void usage(FILE *f) {
    fprintf(f,
            "usage: bench-sd MODEL [--sizes 256,512] [--threads N] [--steps-only] [--reps N] [--warmup-all]\n"
            "                      [--no-profile]\n"
            "  MODEL         a full-size SD 1.x .safetensors (loaded with the family defaults)\n"
            "  --sizes LIST  image sizes in pixels (square), default 256,512\n"
            "  --threads N   backend and OpenBLAS threads (default: online CPUs)\n"
            "  --steps-only  only the UNet evaluations and sgemm (no text encoder, no VAE)\n"
            "  --reps N      timed repetitions of every measurement (default: text 3; UNet 3, or 2 from\n"
            "                512 px; VAE 2, or 1 from 512 px)\n"
            "  --warmup-all  one untimed warm-up run before every size (default: before the first size\n"
            "                of each network only; later sizes find the weights already paged in)\n"
            "  --no-profile  run the UNet on the plain backend (no per-op timing)\n");
}

int main(int argc, char **argv) {
    const char *model_path = NULL;
    int sizes[8] = {256, 512}, n_sizes = 2, threads = 0, steps_only = 0, reps_opt = 0, profile = 1, warmup_all = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--sizes") && i + 1 < argc) {
            n_sizes = 0;
            char *s = argv[++i], *end;
            while (*s && n_sizes < 8) {
                long v = strtol(s, &end, 10);
                if (end == s || v < 64 || v > 2048 || v % 64) {
                    fprintf(stderr, "bench-sd: bad size list '%s' (multiples of 64 in 64..2048)\n", argv[i]);
                    return 2;
                }
                sizes[n_sizes++] = (int)v;
                s = *end == ',' ? end + 1 : end;
                if (*end && *end != ',') {
                    fprintf(stderr, "bench-sd: bad size list '%s'\n", argv[i]);
                    return 2;
                }
            }
        } else if (!strcmp(a, "--threads") && i + 1 < argc) {
            threads = atoi(argv[++i]);
            if (threads < 1 || threads > 1024) {
                fprintf(stderr, "bench-sd: bad thread count\n");
                return 2;
            }
        } else if (!strcmp(a, "--reps") && i + 1 < argc) {
            reps_opt = atoi(argv[++i]);
            if (reps_opt < 1 || reps_opt > 100) {
                fprintf(stderr, "bench-sd: bad --reps\n");
                return 2;
            }
        } else if (!strcmp(a, "--steps-only")) {
            steps_only = 1;
        } else if (!strcmp(a, "--warmup-all")) {
            warmup_all = 1;
        } else if (!strcmp(a, "--no-profile")) {
            profile = 0;
        } else if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        } else if (a[0] == '-' || model_path) {
            usage(stderr);
            return 2;
        } else {
            model_path = a;
        }
    }
    if (!model_path) {
        usage(stderr);
        return 2;
    }

    ldm_context_params cp;
    ldm_context_params_init(&cp);
    cp.backend = LDM_BACKEND_CPU;
    cp.n_threads = threads;
    ldm_context *ctx = NULL;
    if (ldm_context_create(&cp, &ctx)) {
        fprintf(stderr, "bench-sd: context: %s\n", ldm_last_error());
        return 1;
    }
    threads = ctx->n_threads;
    double load0 = loadavg1();
    printf("bench-sd: libldm %s, backend %s, %d thread(s), %ld online CPU(s), load average %.2f at start\n",
           ldm_version(), ldm_context_backend_name(ctx), threads, sysconf(_SC_NPROCESSORS_ONLN), load0);
#ifdef OPENBLAS_VERSION
    {
        /* OpenBLAS picks its kernels by CPUID when the library loads; a CPU it does not know gets
         * a generic fallback (e.g. "Prescott", SSE3 only), several times slower on AVX-512 parts.
         * OPENBLAS_CORETYPE=SkylakeX (or Haswell) in the environment overrides the choice. */
        const char *core = openblas_get_corename(), *env = getenv("OPENBLAS_CORETYPE"), *ver = OPENBLAS_VERSION;
        while (*ver == ' ') ver++;
        int ver_len = (int)strlen(ver);
        while (ver_len > 0 && ver[ver_len - 1] == ' ') ver_len--;
        printf("          BLAS: %.*s, kernels for core '%s'%s%s%s, %d BLAS thread(s) max\n", ver_len, ver, core,
               env ? " (OPENBLAS_CORETYPE=" : "", env ? env : "", env ? ")" : "", openblas_get_num_threads());
        int old_core = core && (!strcmp(core, "Prescott") || !strcmp(core, "Core2") || !strcmp(core, "Penryn") ||
                                !strcmp(core, "Dunnington") || !strcmp(core, "Nehalem") || !strcmp(core, "Sandybridge"));
        if (old_core && __builtin_cpu_supports("avx2"))
            printf("          WARNING: this CPU has AVX2%s but OpenBLAS uses its '%s' kernels (CPU model not\n"
                   "          recognised); try OPENBLAS_CORETYPE=%s\n",
                   __builtin_cpu_supports("avx512f") ? "/AVX-512" : "", core,
                   __builtin_cpu_supports("avx512f") ? "SkylakeX" : "Haswell");
    }
#endif
    printf("          backend GEMM: %s\n", cpu_gemm_use_openblas() ? "OpenBLAS (LDM_CPU_GEMM=openblas)"
                                                                 : cpu_gemm_get_impl()->name);
    mem_mark("start");

    double t0 = now_s();
    ldm_model *m = NULL;
    if (ldm_model_load(ctx, model_path, NULL, &m)) {
        fprintf(stderr, "bench-sd: loading '%s': %s\n", model_path, ldm_last_error());
        ldm_context_destroy(ctx);
        return 1;
    }
    double t_load = now_s() - t0;
    mem_mark("after load (mmap)");
    const unet_config *u = &m->unet;
    printf("model: %s, family %s, loaded in %.3f s (memory-mapped)\n", model_path, ldm_model_family(m), t_load);
    printf("  UNet: %d->%d ch, model_channels %d, mult [", u->in_channels, u->out_channels, u->model_channels);
    for (int i = 0; i < u->n_levels; i++) printf(i ? ",%d" : "%d", u->channel_mult[i]);
    printf("], attn [");
    for (int i = 0; i < u->n_levels; i++) printf(i ? ",%d" : "%d", u->attn_at_level[i]);
    printf("], %d res blocks, heads %d, depth %d, context %d\n", u->num_res_blocks, u->num_heads, u->transformer_depth,
           u->context_dim);
    printf("  VAE: ch %d, %d levels, z %d; CLIP: width %d, %d layers, %d heads\n", m->vae.ch, m->vae.n_levels,
           m->vae.z_channels, m->clip.width, m->clip.layers, m->clip.heads);

    prof_backend pb;
    memset(&pb, 0, sizeof pb);
    pb.base.ops = &prof_ops;
    pb.base.n_threads = ctx->be->n_threads;
    pb.inner = ctx->be;

    bench b;
    memset(&b, 0, sizeof b);
    b.ctx = ctx;
    b.m = m;
    b.be = ctx->be;
    b.prompt = "a photograph of an astronaut riding a horse";
    const int tokens = m->clip.n_pos, width = m->clip.width;
    b.text_out = xmalloc((size_t)tokens * width * sizeof(float));
    int failed = 0;

    /* ---- text encoder ---- */
    timing t_text = {0};
    if (!steps_only) {
        ldm_status st = time_runs(run_text, &b, 1, reps_opt ? reps_opt : 3, &t_text);
        if (st) {
            fprintf(stderr, "bench-sd: text encoder failed: %s\n", ldm_last_error());
            failed = 1;
        }
        mem_mark("after text encode");
    }

    /* ---- sgemm reference (before the big runs so it sees a quiet process) ---- */
    gemm_shape gemms[] = {
        {"square 2048^3", 2048, 2048, 2048, 0},
        {"conv3x3 320ch@64^2", 320, 4096, 2880, 0},
        {"conv3x3 1280ch@8^2", 1280, 64, 11520, 0},
        {"linear 8192x320->1280", 8192, 1280, 320, 1},
        {"attn QK^T 64x4096x40", 64, 4096, 40, 1},
    };
    const int n_gemms = (int)(sizeof gemms / sizeof gemms[0]);
    double gemm_gf[8], gemm_be[8], gemm_gf_cpu[8], gemm_be_cpu[8];
    for (int i = 0; i < n_gemms; i++) {
        /* the attention product runs single-threaded inside the backend (parallel over heads) */
        int attn = strncmp(gemms[i].what, "attn", 4) == 0;
        gemm_gf[i] = sgemm_gflops(&gemms[i], attn ? 1 : threads, 0, 1.0, &gemm_gf_cpu[i]);
        gemm_be[i] = sgemm_gflops(&gemms[i], attn ? 1 : threads, 1, 1.0, &gemm_be_cpu[i]);
    }
    mem_mark("after sgemm");

    /* ---- F16 -> F32 weight conversion, done by every conv/linear call ---- */
    double conv_gb = 0, conv_s = unet_weight_convert_s(m, threads, &conv_gb);
    double conv_s2 = unet_weight_convert_s(m, threads, &conv_gb); /* second pass: pages already in */
    if (conv_s2 < conv_s) conv_s = conv_s2;

    /* ---- UNet, batch 2 ---- */
    typedef struct unet_res {
        int size;
        timing t;
        double sgemm_before; /* 2048^3 sgemm GFLOP/s measured just before the timed runs */
        double gflop;
        flop_count fc;
        prof_stats ps;
        double finite, mabs;
        int ok;
    } unet_res;
    unet_res ures[8];
    memset(ures, 0, sizeof ures);
    b.n = 2;
    for (int si = 0; si < n_sizes; si++) {
        unet_res *r = &ures[si];
        r->size = sizes[si];
        b.lh = b.lw = sizes[si] / m->downscale;
        size_t nx = (size_t)b.n * u->in_channels * b.lh * b.lw;
        size_t nout = (size_t)b.n * u->out_channels * b.lh * b.lw;
        b.x = xmalloc(nx * sizeof(float));
        b.out = xmalloc(nout * sizeof(float));
        b.t = xmalloc((size_t)b.n * sizeof(float));
        b.context = xmalloc((size_t)b.n * tokens * u->context_dim * sizeof(float));
        fill_noise(b.x, nx, 10 + si, 1.0f);
        for (int i = 0; i < b.n; i++) b.t[i] = 500.0f;
        if (!steps_only && u->context_dim == width && !failed) {
            for (int i = 0; i < b.n; i++)
                memcpy(b.context + (size_t)i * tokens * width, b.text_out, (size_t)tokens * width * sizeof(float));
        } else {
            fill_noise(b.context, (size_t)b.n * tokens * u->context_dim, 20, 1.0f);
        }
        r->fc = unet_flops(m, b.n, b.lh, b.lw, tokens);
        r->gflop = fc_total(&r->fc) / 1e9;
        int reps = reps_opt ? reps_opt : (sizes[si] >= 512 ? 2 : 3);
        /* warm-up on the plain backend (before the first size, or every size with --warmup-all);
         * the timed runs go through the profiler unless --no-profile */
        timing warm;
        ldm_status st = time_runs(run_unet, &b, si == 0 || warmup_all ? 1 : 0, 0, &warm);
        if (!st) {
            /* the sgemm reference again, right before the timed runs: on a shared machine the
             * load changes from minute to minute */
            r->sgemm_before = sgemm_gflops(&gemms[0], threads, 0, 1.0, NULL);
            memset(&pb.st, 0, sizeof pb.st);
            b.be = profile ? &pb.base : ctx->be;
            st = time_runs(run_unet, &b, 0, reps, &r->t);
            b.be = ctx->be;
            r->ps = pb.st;
            r->t.first = warm.first;
        }
        if (st) {
            fprintf(stderr, "bench-sd: UNet at %dx%d failed: %s\n", sizes[si], sizes[si], ldm_last_error());
            failed = 1;
        } else {
            r->ok = 1;
            finite_stats(b.out, nout, &r->finite, &r->mabs);
            if (r->finite < 1.0) failed = 1;
        }
        char phase[48];
        snprintf(phase, sizeof phase, "after UNet %d^2 x2", sizes[si]);
        mem_mark(phase);
        free(b.x);
        free(b.out);
        free(b.t);
        free(b.context);
        b.x = b.out = b.t = b.context = NULL;
        printf("  [UNet %dx%d batch 2: %.2f s/eval]\n", sizes[si], sizes[si], r->ok ? r->t.mean : -1.0);
        fflush(stdout);
    }

    /* ---- VAE decode, batch 1 ---- */
    typedef struct vae_res {
        int size;
        timing t;
        prof_stats ps;
        double finite, mabs;
        int ok;
    } vae_res;
    vae_res vres[8];
    memset(vres, 0, sizeof vres);
    if (!steps_only) {
        for (int si = 0; si < n_sizes; si++) {
            vae_res *r = &vres[si];
            r->size = sizes[si];
            b.lh = b.lw = sizes[si] / m->downscale;
            size_t nz = (size_t)m->vae.embed_dim * b.lh * b.lw, nimg = (size_t)3 * sizes[si] * sizes[si];
            b.z = xmalloc(nz * sizeof(float));
            b.image = xmalloc(nimg * sizeof(float));
            fill_noise(b.z, nz, 30 + si, 1.0f / m->scale_factor);
            int reps = reps_opt ? reps_opt : (sizes[si] >= 512 ? 1 : 2);
            timing warm;
            ldm_status st = time_runs(run_vae, &b, si == 0 || warmup_all ? 1 : 0, 0, &warm);
            if (!st) {
                memset(&pb.st, 0, sizeof pb.st);
                b.be = profile ? &pb.base : ctx->be;
                st = time_runs(run_vae, &b, 0, reps, &r->t);
                b.be = ctx->be;
                r->ps = pb.st;
                r->t.first = warm.first;
            }
            if (st) {
                fprintf(stderr, "bench-sd: VAE decode at %dx%d failed: %s\n", sizes[si], sizes[si], ldm_last_error());
                failed = 1;
            } else {
                r->ok = 1;
                finite_stats(b.image, nimg, &r->finite, &r->mabs);
                if (r->finite < 1.0) failed = 1;
            }
            char phase[48];
            snprintf(phase, sizeof phase, "after VAE decode %d^2", sizes[si]);
            mem_mark(phase);
            free(b.z);
            free(b.image);
            b.z = b.image = NULL;
            printf("  [VAE decode %dx%d: %.2f s]\n", sizes[si], sizes[si], r->ok ? r->t.mean : -1.0);
            fflush(stdout);
        }
    }
    double load1 = loadavg1();

    /* ---- report ---- */
    printf("\n== timings (%d thread(s); warm-up excluded; mean [min..max] of the timed runs; cpu = CPU time / wall,\n"
           "   %d.00 = all threads busy the whole time; CPU s = process CPU seconds per run, which other load on\n"
           "   the machine changes much less than the wall time) ==\n",
           threads, threads);
    printf("%-34s %4s %9s %21s %5s %8s %8s  %s\n", "phase", "reps", "mean s", "[min .. max] s", "cpu", "CPU s",
           "1st run", "output check");
    if (!steps_only)
        printf("%-34s %4d %9.3f [%8.3f .. %8.3f] %5.2f %8.2f %8s  %s\n", "text encode (1 prompt, 77 tok)", t_text.reps,
               t_text.mean, t_text.min, t_text.max, t_text.cpu_util, t_text.cpu_per_run, fmt_first(&t_text),
               t_text.reps ? "ok" : "FAILED");
    for (int si = 0; si < n_sizes; si++) {
        unet_res *r = &ures[si];
        char what[64], chk[64];
        snprintf(what, sizeof what, "UNet %dx%d (latent %d^2) batch 2", r->size, r->size, r->size / m->downscale);
        if (r->ok)
            snprintf(chk, sizeof chk, "finite %.4f, mean|eps| %.3f", r->finite, r->mabs);
        else
            snprintf(chk, sizeof chk, "FAILED");
        printf("%-34s %4d %9.3f [%8.3f .. %8.3f] %5.2f %8.2f %8s  %s\n", what, r->t.reps, r->t.mean, r->t.min,
               r->t.max, r->t.cpu_util, r->t.cpu_per_run, fmt_first(&r->t), chk);
    }
    if (!steps_only)
        for (int si = 0; si < n_sizes; si++) {
            vae_res *r = &vres[si];
            char what[64], chk[64];
            snprintf(what, sizeof what, "VAE decode %dx%d (batch 1)", r->size, r->size);
            if (r->ok)
                snprintf(chk, sizeof chk, "finite %.4f, mean|x| %.3f", r->finite, r->mabs);
            else
                snprintf(chk, sizeof chk, "FAILED");
            printf("%-34s %4d %9.3f [%8.3f .. %8.3f] %5.2f %8.2f %8s  %s\n", what, r->t.reps, r->t.mean, r->t.min,
                   r->t.max, r->t.cpu_util, r->t.cpu_per_run, fmt_first(&r->t), chk);
        }

    printf("\n== UNet throughput (batch 2) vs OpenBLAS sgemm (%d thread(s)) ==\n", threads);
    printf("FLOPs = 2*MACs of every conv and linear + the attention matmuls QK^T and AV (norms, softmax,\n"
           "activations, biases, adds not counted), from the model's config and weight shapes.\n");
    printf("%-10s %8s %8s %8s %8s %8s %9s %8s %8s %9s %8s %6s\n", "size", "conv3x3", "conv1x1", "linear", "attn",
           "total", "s/eval", "GFLOP/s", "best", "per-CPU-s", "sgemm", "ratio");
    for (int si = 0; si < n_sizes; si++) {
        unet_res *r = &ures[si];
        char sz[16];
        snprintf(sz, sizeof sz, "%dx%d", r->size, r->size);
        double gfs = r->ok && r->t.mean > 0 ? r->gflop / r->t.mean : 0;
        double best = r->ok && r->t.min > 0 ? r->gflop / r->t.min : 0;
        double per_cpu = r->ok && r->t.cpu_per_run > 0 ? r->gflop / r->t.cpu_per_run : 0;
        printf("%-10s %8.1f %8.1f %8.1f %8.1f %8.1f %9.3f %8.1f %8.1f %9.1f %8.1f %5.0f%%\n", sz, r->fc.f[K_CONV3] / 1e9,
               r->fc.f[K_CONV1] / 1e9, r->fc.f[K_LINEAR] / 1e9, r->fc.f[K_ATTN] / 1e9, r->gflop, r->t.mean, gfs, best,
               per_cpu, r->sgemm_before, r->sgemm_before > 0 ? 100.0 * gfs / r->sgemm_before : 0);
        if (r->fc.missing) printf("  (%d weights missing from the count: the layout differs from unet.c's)\n", r->fc.missing);
    }
    printf("(GFLOP: per evaluation of the batch of 2; GFLOP/s from the mean time, 'best' from the fastest run,\n"
           " per-CPU-s = GFLOP per CPU second of the process (x threads = the rate with the cores to itself);\n"
           " sgemm: OpenBLAS 2048^3 GFLOP/s measured just before that size's timed runs; ratio = GFLOP/s / sgemm)\n");
    printf("\nsgemm GFLOP/s (row-major, F32, warm, >= 1 s each, %d thread(s)): 'OpenBLAS' = one cblas_sgemm call threaded by\n"
           "OpenBLAS; 'backend' = the CPU backend's cpu_sgemm (%s):\n", threads,
           cpu_gemm_use_openblas() ? "OpenBLAS, LDM_CPU_GEMM=openblas" : cpu_gemm_get_impl()->name);
    printf("  %-22s %-20s %9s %9s   %s\n", "shape", "M x N x K", "OpenBLAS", "backend",
           "(per CPU-second: OpenBLAS, backend)");
    for (int i = 0; i < n_gemms; i++) {
        char dims[48];
        snprintf(dims, sizeof dims, "%dx%dx%d%s", gemms[i].m, gemms[i].n, gemms[i].k, gemms[i].trans_b ? " B^T" : "");
        printf("  %-22s %-20s %9.1f %9.1f   (%.1f, %.1f)%s\n", gemms[i].what, dims, gemm_gf[i], gemm_be[i],
               gemm_gf_cpu[i], gemm_be_cpu[i], strncmp(gemms[i].what, "attn", 4) == 0 ? " 1 thread" : "");
    }
    printf("\nF16->F32 conversion of all UNet conv/linear weights in one pass: %.3f s (%.2f GB of F32 written)\n",
           conv_s, conv_gb);
    if (cpu_gemm_use_openblas())
        printf("  LDM_CPU_GEMM=openblas converts every F16 weight like this inside each conv/linear call: this is\n"
               "  part of every UNet evaluation.\n");
    else
        printf("  (for reference: the backend's own GEMM widens F16 weights while packing them, with no separate\n"
               "  pass; LDM_CPU_GEMM=openblas pays this inside every conv/linear call)\n");

    if (profile) {
        for (int si = 0; si < n_sizes; si++) {
            unet_res *r = &ures[si];
            if (!r->ok || !r->t.reps) continue;
            double measured = 0;
            for (int k = 0; k < K_COUNT; k++) measured += r->ps.flops[k];
            measured /= r->t.reps;
            printf("\n== UNet %dx%d batch 2: time by op (mean over %d timed run(s)) ==\n", r->size, r->size, r->t.reps);
            print_profile(&r->ps, r->t.reps, r->t.mean);
            printf("    FLOPs counted from the op shapes at run time: %.1f GFLOP (analytical: %.1f GFLOP%s)\n",
                   measured / 1e9, r->gflop, fabs(measured - r->gflop * 1e9) < 1e-6 * measured ? ", match" : ", MISMATCH");
        }
    }

    if (profile && !steps_only) {
        for (int si = 0; si < n_sizes; si++) {
            vae_res *r = &vres[si];
            if (!r->ok || !r->t.reps) continue;
            double fl = 0;
            for (int k = 0; k < K_COUNT; k++) fl += r->ps.flops[k];
            fl /= r->t.reps;
            printf("\n== VAE decode %dx%d: time by op (mean over %d timed run(s)); %.1f GFLOP, %.1f GFLOP/s ==\n",
                   r->size, r->size, r->t.reps, fl / 1e9, fl / 1e9 / r->t.mean);
            print_profile(&r->ps, r->t.reps, r->t.mean);
        }
    }

    printf("\n== memory (peak RSS = getrusage ru_maxrss; current RSS from /proc/self/statm; 'mapped' = its\n"
           "   file-backed part, i.e. pages of the memory-mapped checkpoint; anon = current - mapped) ==\n");
    printf("%-26s %12s %12s %12s %12s\n", "after phase", "peak MiB", "current MiB", "mapped MiB", "anon MiB");
    for (int i = 0; i < n_mem; i++)
        printf("%-26s %12.0f %12.0f %12.0f %12.0f\n", mem_rows[i].phase, mem_rows[i].peak, mem_rows[i].cur,
               mem_rows[i].shared, mem_rows[i].cur - mem_rows[i].shared);
    printf("\nload average (1 min): %.2f at start, %.2f at end (other processes compete for the CPUs when > 0)\n",
           load0, load1);

    free(b.text_out);
    ldm_model_destroy(m);
    ldm_context_destroy(ctx);
    if (failed) {
        printf("bench-sd: some phase FAILED or gave non-finite output\n");
        return 1;
    }
    return 0;
}
