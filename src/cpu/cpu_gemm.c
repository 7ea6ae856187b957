/* The CPU GEMM driver (see cpu_gemm.h): kernel choice, packing, cache blocking, threading.
 *
 * Blocking (per task, BLIS loop order): for each KC slice of k, pack the task's B block
 * (KC x its columns) once; for each MC block of its rows pack A (MC x KC); then every NR-column
 * B micro-panel (kept in L1: KC*NR*4 = 32 KiB) meets every MR-row A micro-panel of the block
 * (streamed from L2) in the micro-kernel.
 *
 * Threading: C is cut into tasks (batch item x row chunk x column chunk), each packing its own
 * operands, handed out dynamically over the backend's OpenMP threads. No barriers inside a
 * product, and a thread descheduled by other load on the machine only delays its current task. */
#include "cpu_gemm.h"
#include "cpu_math.h"

#include <omp.h>
#include <pthread.h>
#include <stdlib.h>
#include <strings.h>

#define GEMM_KC CPU_GEMM_KC /* k slice: B micro-panel KC x 32 floats = 48 KiB, the L1; measured best of 256/320/384 */
#define GEMM_MC 144  /* rows per packed A block: MC x KC = 144 KiB (L2) */
#define GEMM_NC 1024 /* columns per task at most: the packed B block KC x NC = 1 MiB (L2) */

/* ---------------------------------------------------------------------------------------- */
/* The portable kernel (4 x 16; the compiler vectorises the j loops)                         */
/* ---------------------------------------------------------------------------------------- */

static void kernel_c_4x16(int64_t kc, const float *a, const float *b, float *c, int64_t ldc, int mr, int nr, int flags,
                          const float *bias_m, const float *bias_n) {
    float acc[4][16];
    memset(acc, 0, sizeof acc);
    for (int64_t k = 0; k < kc; k++) {
        for (int i = 0; i < 4; i++) {
            const float av = a[i];
            for (int j = 0; j < 16; j++) acc[i][j] += av * b[j];
        }
        a += 4;
        b += 16;
    }
    for (int i = 0; i < mr; i++) {
        float *cr = c + i * ldc;
        for (int j = 0; j < nr; j++) {
            float v = acc[i][j];
            if (bias_n) v += bias_n[j];
            if (bias_m) v += bias_m[i];
            if (flags & CPU_GEMM_LOAD_C) v += cr[j];
            cr[j] = v;
        }
    }
}

/* ---------------------------------------------------------------------------------------- */
/* Kernel choice                                                                            */
/* ---------------------------------------------------------------------------------------- */

static const cpu_gemm_impl impl_avx512 = {"avx512 12x32", 12, 32, cpu_gemm_kernel_avx512_12x32, cpu_gemm_pack_a_avx512,
                                          cpu_gemm_pack_b_avx512};
static const cpu_gemm_impl impl_avx2 = {"avx2 6x16", 6, 16, cpu_gemm_kernel_avx2_6x16, NULL, NULL};
static const cpu_gemm_impl impl_c = {"portable 4x16", 4, 16, kernel_c_4x16, NULL, NULL};

static const cpu_gemm_impl *g_impl;
static bool g_openblas;
static pthread_once_t g_once = PTHREAD_ONCE_INIT;

static void choose_impl(void) {
    const char *env = getenv("LDM_CPU_GEMM");
    g_openblas = env && strcasecmp(env, "openblas") == 0;
    bool want512 = !env || !*env || g_openblas || strcasecmp(env, "avx512") == 0 || strcasecmp(env, "auto") == 0;
    bool want2 = want512 || (env && strcasecmp(env, "avx2") == 0);
    if (want512 && cpu_gemm_x86_have_avx512())
        g_impl = &impl_avx512;
    else if (want2 && cpu_gemm_x86_have_avx2())
        g_impl = &impl_avx2;
    else
        g_impl = &impl_c;
}

const cpu_gemm_impl *cpu_gemm_get_impl(void) {
    pthread_once(&g_once, choose_impl);
    return g_impl;
}

bool cpu_gemm_use_openblas(void) {
    pthread_once(&g_once, choose_impl);
    return g_openblas;
}

/* ---------------------------------------------------------------------------------------- */
/* Packing                                                                                  */
/* ---------------------------------------------------------------------------------------- */

/* n elements of a dense source starting at element `first` -> floats, times scale. */
static inline void load_run(ldm_dtype dt, const void *base, int64_t first, int64_t n, float scale, float *dst) {
    cpu_convert_f32(dt, base, (size_t)first, dst, (size_t)n);
    if (scale != 1.0f)
        for (int64_t i = 0; i < n; i++) dst[i] *= scale;
}

void cpu_gemm_pack_a(const cpu_gemm_impl *im, const cpu_gemm_mat *A, const void *base, int64_t i0, int64_t mc,
                     int64_t k0, int64_t kc, float *dst) {
    const int MR = im->mr;
    if (im->pack_a && im->pack_a(A, base, i0, mc, k0, kc, dst)) return;
    float tmp[GEMM_KC];
    for (int64_t p = 0; p < mc; p += MR, dst += kc * MR) {
        const int rows = (int)LDM_MIN((int64_t)MR, mc - p);
        if (A->rs == 1 && rows == MR) {
            /* transposed source: the MR values of one k are adjacent */
            for (int64_t k = 0; k < kc; k++)
                load_run(A->dt, base, (k0 + k) * A->cs + i0 + p, MR, A->scale, dst + k * MR);
            continue;
        }
        for (int i = 0; i < MR; i++) {
            if (i >= rows) {
                for (int64_t k = 0; k < kc; k++) dst[k * MR + i] = 0.0f;
                continue;
            }
            const int64_t r = i0 + p + i;
            for (int64_t k0b = 0; k0b < kc; k0b += GEMM_KC) {
                const int64_t cnt = LDM_MIN((int64_t)GEMM_KC, kc - k0b);
                if (A->cs == 1) {
                    load_run(A->dt, base, r * A->rs + k0 + k0b, cnt, A->scale, tmp);
                } else {
                    for (int64_t k = 0; k < cnt; k++) load_run(A->dt, base, r * A->rs + (k0 + k0b + k) * A->cs, 1, A->scale, tmp + k);
                }
                float *d = dst + k0b * MR + i;
                for (int64_t k = 0; k < cnt; k++) d[k * MR] = tmp[k];
            }
        }
    }
}

void cpu_gemm_pack_b(const cpu_gemm_impl *im, const cpu_gemm_mat *B, const void *base, int64_t k0, int64_t kc,
                     int64_t j0, int64_t nc, float *dst) {
    const int NR = im->nr;
    if (im->pack_b && im->pack_b(B, base, k0, kc, j0, nc, dst)) return;
    float tmp[GEMM_KC];
    for (int64_t p = 0; p < nc; p += NR, dst += kc * NR) {
        const int cols = (int)LDM_MIN((int64_t)NR, nc - p);
        if (B->cs == 1) {
            /* row-major source: each k row of the panel is a contiguous run */
            for (int64_t k = 0; k < kc; k++) {
                float *d = dst + k * NR;
                load_run(B->dt, base, (k0 + k) * B->rs + j0 + p, cols, B->scale, d);
                for (int j = cols; j < NR; j++) d[j] = 0.0f;
            }
            continue;
        }
        for (int j = 0; j < NR; j++) {
            if (j >= cols) {
                for (int64_t k = 0; k < kc; k++) dst[k * NR + j] = 0.0f;
                continue;
            }
            const int64_t col = j0 + p + j;
            for (int64_t k0b = 0; k0b < kc; k0b += GEMM_KC) {
                const int64_t cnt = LDM_MIN((int64_t)GEMM_KC, kc - k0b);
                if (B->rs == 1) {
                    load_run(B->dt, base, col * B->cs + k0 + k0b, cnt, B->scale, tmp);
                } else {
                    for (int64_t k = 0; k < cnt; k++) load_run(B->dt, base, (k0 + k0b + k) * B->rs + col * B->cs, 1, B->scale, tmp + k);
                }
                float *d = dst + k0b * NR + j;
                for (int64_t k = 0; k < cnt; k++) d[k * NR] = tmp[k];
            }
        }
    }
}

/* Implicit-GEMM packing of a convolution input: rows [k0, k0 + kc) x output positions
 * [j0, j0 + nc) of the virtual column matrix, straight from the image x (one batch item). */
LDM_CPU_CLONES static void pack_b_conv(const cpu_gemm_impl *im, const cpu_gemm_conv *cv, const float *x, int64_t k0, int64_t kc,
                        int64_t j0, int64_t nc, float *dst) {
    const int NR = im->nr;
    const int64_t khw = cv->kh * cv->kw, s = cv->s, H = cv->h, Wd = cv->w;
    /* segments of one panel: runs of output positions within one output row */
    int64_t seg_oh[64], seg_ow[64], seg_len[64];
    for (int64_t p = 0; p < nc; p += NR, dst += kc * NR) {
        const int cols = (int)LDM_MIN((int64_t)NR, nc - p);
        int nseg = 0;
        for (int64_t j = j0 + p, end = j0 + p + cols; j < end;) {
            int64_t oh = j / cv->ow, ow = j % cv->ow, len = LDM_MIN(cv->ow - ow, end - j);
            seg_oh[nseg] = oh;
            seg_ow[nseg] = ow;
            seg_len[nseg] = len;
            nseg++;
            j += len;
        }
        int64_t ci = k0 / khw, r = k0 % khw, ky = r / cv->kw, kx = r % cv->kw;
        for (int64_t k = 0; k < kc; k++) {
            float *d = dst + k * NR;
            const float *plane = x + ci * H * Wd;
            for (int sg = 0; sg < nseg; sg++) {
                const int64_t len = seg_len[sg];
                const int64_t ih = seg_oh[sg] * s - cv->pt + ky;
                if (ih < 0 || ih >= H) {
                    for (int64_t t = 0; t < len; t++) d[t] = 0.0f;
                } else {
                    const int64_t iw0 = seg_ow[sg] * s - cv->pl + kx; /* input column of t = 0 */
                    int64_t lo = iw0 >= 0 ? 0 : (-iw0 + s - 1) / s;
                    int64_t hi = iw0 > Wd - 1 ? 0 : LDM_MIN(len, (Wd - 1 - iw0) / s + 1);
                    if (hi < lo) hi = lo;
                    const float *src = plane + ih * Wd + iw0;
                    for (int64_t t = 0; t < lo; t++) d[t] = 0.0f;
                    if (s == 1) {
                        for (int64_t t = lo; t < hi; t++) d[t] = src[t];
                    } else {
                        for (int64_t t = lo; t < hi; t++) d[t] = src[t * s];
                    }
                    for (int64_t t = hi; t < len; t++) d[t] = 0.0f;
                }
                d += len;
            }
            for (int j = cols; j < NR; j++) dst[k * NR + j] = 0.0f;
            if (++kx == cv->kw) {
                kx = 0;
                if (++ky == cv->kh) {
                    ky = 0;
                    ci++;
                }
            }
        }
    }
}

/* ---------------------------------------------------------------------------------------- */
/* Driver                                                                                   */
/* ---------------------------------------------------------------------------------------- */

typedef struct gemm_plan {
    int64_t mchunk, nchunk, mtiles, ntiles, tasks;
    /* A is shared by the batch items (a conv's weight over the images): a task packs each k
     * slice of its rows once and runs every batch item with it, instead of one task per item
     * repacking it (which costs as much as the product when N is small, e.g. 8x8 images) */
    bool batch_inside;
    size_t a_floats, b_floats; /* per-thread pack buffers */
} gemm_plan;

static inline int64_t round_up(int64_t a, int64_t b) { return (a + b - 1) / b * b; }

static void plan_tasks(const cpu_gemm_impl *im, const cpu_gemm_args *g, int nt, gemm_plan *pl) {
    pl->batch_inside = g->batch > 1 && g->A.batch_stride == 0 && !g->A.prepacked;
    const int64_t tb = pl->batch_inside ? 1 : g->batch;
    /* balanced chunks: N = 1280 is 640 + 640, not 1024 + 256 (a narrow task repacks its A rows
     * for few columns) */
    const int64_t mparts = (g->m + 767) / 768, nparts = (g->n + GEMM_NC - 1) / GEMM_NC;
    int64_t mchunk = round_up((g->m + mparts - 1) / mparts, im->mr);
    int64_t nchunk = round_up((g->n + nparts - 1) / nparts, im->nr);
    /* enough tasks for dynamic balancing (3 per thread), without going below 96 rows or
     * 256 columns per task (packing would start to cost) */
    for (;;) {
        int64_t tasks = tb * ((g->m + mchunk - 1) / mchunk) * ((g->n + nchunk - 1) / nchunk);
        if (nt <= 1 || tasks >= 3 * (int64_t)nt) break;
        bool can_n = nchunk > 256, can_m = mchunk > 96;
        if (can_n && (nchunk >= mchunk || !can_m))
            nchunk = round_up(nchunk / 2, im->nr);
        else if (can_m)
            mchunk = round_up(mchunk / 2, im->mr);
        else
            break;
    }
    pl->mchunk = mchunk;
    pl->nchunk = nchunk;
    pl->mtiles = (g->m + mchunk - 1) / mchunk;
    pl->ntiles = (g->n + nchunk - 1) / nchunk;
    pl->tasks = tb * pl->mtiles * pl->ntiles;
    const int64_t kc = cpu_gemm_kblock(g->k);
    /* a multiple of 16 floats, so the B block after it stays 64-byte aligned */
    const int64_t arows = pl->batch_inside ? mchunk : LDM_MIN(mchunk, (int64_t)GEMM_MC);
    pl->a_floats = (size_t)round_up(round_up(arows, im->mr) * kc, 16);
    pl->b_floats = (size_t)(round_up(nchunk, im->nr) * kc);
}

static void run_task(const cpu_gemm_impl *im, const cpu_gemm_args *g, const gemm_plan *pl, int64_t t, float *abuf,
                     float *bbuf) {
    const int64_t bt = t / (pl->mtiles * pl->ntiles), rem = t % (pl->mtiles * pl->ntiles);
    const int64_t i0 = (rem / pl->ntiles) * pl->mchunk, j0 = (rem % pl->ntiles) * pl->nchunk;
    const int64_t i1 = LDM_MIN(g->m, i0 + pl->mchunk), nc = LDM_MIN(g->n, j0 + pl->nchunk) - j0;
    const int MR = im->mr, NR = im->nr;
    const size_t esz = ldm_dtype_size(g->A.dt);
    const int64_t b0 = pl->batch_inside ? 0 : bt, b1 = pl->batch_inside ? g->batch : bt + 1;
    const int64_t mstep = pl->batch_inside ? i1 - i0 : GEMM_MC;
    const int64_t kb = cpu_gemm_kblock(g->k);
    int64_t pc = 0;
    do {
        const int64_t kc = LDM_MIN(kb, g->k - pc);
        const bool first = pc == 0;
        const int flags = (!first || g->accumulate) ? CPU_GEMM_LOAD_C : 0;
        /* batch_inside: the task's rows of A once for this k slice, for every batch item */
        if (pl->batch_inside) cpu_gemm_pack_a(im, &g->A, g->A.p, i0, i1 - i0, pc, kc, abuf);
        for (int64_t b = b0; b < b1; b++) {
            const void *abase = (const char *)g->A.p + (size_t)(b * g->A.batch_stride) * esz;
            float *C = g->C + b * g->c_batch_stride;
            if (g->Bconv) {
                const cpu_gemm_conv *cv = g->Bconv;
                pack_b_conv(im, cv, cv->x + b * cv->cin * cv->h * cv->w, pc, kc, j0, nc, bbuf);
            } else {
                const void *bbase = (const char *)g->B->p + (size_t)(b * g->B->batch_stride) * ldm_dtype_size(g->B->dt);
                cpu_gemm_pack_b(im, g->B, bbase, pc, kc, j0, nc, bbuf);
            }
            for (int64_t ic = i0; ic < i1; ic += mstep) {
                const int64_t mc = LDM_MIN(mstep, i1 - ic);
                const float *ap = abuf;
                if (g->A.prepacked) /* the block's panels are already in place */
                    ap = (const float *)g->A.p + b * g->A.batch_stride + pc * ((g->m + MR - 1) / MR * MR) +
                         (ic / MR) * kc * MR;
                else if (!pl->batch_inside)
                    cpu_gemm_pack_a(im, &g->A, abase, ic, mc, pc, kc, abuf);
                for (int64_t jr = 0; jr < nc; jr += NR) {
                    const int nr = (int)LDM_MIN((int64_t)NR, nc - jr);
                    const float *bp = bbuf + (jr / NR) * kc * NR;
                    const float *bn = first && g->bias_n ? g->bias_n + j0 + jr : NULL;
                    for (int64_t ir = 0; ir < mc; ir += MR) {
                        const int mr = (int)LDM_MIN((int64_t)MR, mc - ir);
                        const float *bm = first && g->bias_m ? g->bias_m + ic + ir : NULL;
                        im->kernel(kc, ap + (ir / MR) * kc * MR, bp, C + (ic + ir) * g->ldc + j0 + jr, g->ldc, mr, nr,
                                   flags, bm, bn);
                    }
                }
            }
        }
        pc += kc;
    } while (pc < g->k);
}

/* Per-thread scratch, kept between calls (grown when needed, freed at thread exit): a fresh
 * allocation per product costs page faults that show up at small sizes. Slot 0: the GEMM's
 * pack buffers (and attention's scratch); slot 1: the callers of cpu_gemm that need scratch of
 * their own around it (Winograd). */
#define N_SLOTS 2
static pthread_key_t g_buf_key[N_SLOTS];
static pthread_once_t g_buf_once = PTHREAD_ONCE_INIT;
static _Thread_local float *t_buf[N_SLOTS];
static _Thread_local size_t t_buf_floats[N_SLOTS];

static void buf_destroy(void *p) { cpu_free(p); }
static void buf_key_init(void) {
    for (int i = 0; i < N_SLOTS; i++)
        if (pthread_key_create(&g_buf_key[i], buf_destroy) != 0) abort();
}

float *cpu_thread_scratch(int slot, size_t floats) {
    if (slot < 0 || slot >= N_SLOTS) return NULL;
    if (t_buf_floats[slot] >= floats) return t_buf[slot];
    pthread_once(&g_buf_once, buf_key_init);
    size_t want = floats + floats / 4;
    float *p = cpu_alloc(want, sizeof(float), "thread scratch");
    if (!p) return NULL;
    cpu_free(t_buf[slot]);
    t_buf[slot] = p;
    t_buf_floats[slot] = want;
    pthread_setspecific(g_buf_key[slot], p);
    return p;
}

float *cpu_gemm_thread_buffer(size_t floats) { return cpu_thread_scratch(0, floats); }

ldm_status cpu_gemm(int n_threads, const cpu_gemm_args *g) {
    if (g->m <= 0 || g->n <= 0 || g->batch <= 0) return LDM_OK;
    const cpu_gemm_impl *im = cpu_gemm_get_impl();
    /* below ~2 MFLOP a parallel region costs more than it saves (thread wake-up, the barrier) */
    const int nt0 = n_threads > 0 && (double)g->m * g->n * g->k * g->batch >= (double)(1 << 20) ? n_threads : 1;
    gemm_plan pl;
    plan_tasks(im, g, nt0, &pl);
    const int nt = (int)LDM_MIN((int64_t)nt0, pl.tasks);
    const size_t per = pl.a_floats + pl.b_floats;
    if (nt <= 1) {
        float *buf = cpu_gemm_thread_buffer(per);
        if (!buf) return LDM_ERR_NO_MEMORY;
        for (int64_t t = 0; t < pl.tasks; t++) run_task(im, g, &pl, t, buf, buf + pl.a_floats);
        return LDM_OK;
    }
    int failed = 0;
#pragma omp parallel num_threads(nt)
    {
        float *mine = cpu_gemm_thread_buffer(per);
        if (!mine) {
#pragma omp atomic write
            failed = 1;
        }
#pragma omp for schedule(dynamic, 1)
        for (int64_t t = 0; t < pl.tasks; t++) {
            /* a thread without a buffer leaves its tasks undone; the call then fails */
            if (mine) run_task(im, g, &pl, t, mine, mine + pl.a_floats);
        }
    }
    /* (the worker's message went to its own thread-local error slot) */
    return failed ? ldm_fail(LDM_ERR_NO_MEMORY, "gemm: cannot allocate pack buffers") : LDM_OK;
}
