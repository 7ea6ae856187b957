/* Every sampler on an analytic case (issue 3). Data x0 ~ N(MU, S^2) per element; its exact denoiser
 * in sigma space is D(x; sigma) = (S^2 x + sigma^2 MU) / (S^2 + sigma^2), and for the CompVis
 * samplers the exact eps at timestep t follows from the VP relation x_vp = sqrt(a_t) x_ve,
 * sigma_t^2 = (1 - a_t) / a_t, with a_t the SD alphas_cumprod (as model.c computes it).
 *
 * Deterministic samplers: the probability-flow ODE started at x(sigma_0) has the closed form
 *   x(sigma) = MU + (x(sigma_0) - MU) sqrt(S^2 + sigma^2) / sqrt(S^2 + sigma_0^2).
 * Each is compared with it after step N-1 (at the last nonzero sigma: the step to sigma 0 returns
 * D(x; sigma_min), which differs from x(0) by an N-independent O(sigma_min^2) and would hide the
 * order), DDIM/PLMS at their last step (alphas_cumprod[0]). The order is the slope of
 * log2(error) from N = 20 to 40 steps; it must match on the Karras and exponential schedules (and
 * DDIM's own grid); on the t-uniform schedules the error must decrease (see smooth_schedule).
 *
 * Stochastic samplers: with the exact denoiser every sampler is an affine map of x_init and its
 * noise draws, so (a) the mean stays MU exactly and (b) the exact output variance V(N) is found by
 * linear response (run the sampler on unit vectors: element 0 carries x_init, element k draw k).
 * The Monte Carlo run over 65,536 independent elements (draw 0 and the injections from one seeded
 * Philox stream) must match MU and V(N) within 5 standard errors, and V(N) must converge, as N
 * grows, to the variance of the exact law at the end of the schedule: S^4 / (S^2 + sigma_last^2)
 * (the step to 0 returns D(x; sigma_last)) for k-diffusion samplers, S^2 + sigma_min^2 for DDIM,
 * with a weak order (slope of |V(N) - V*| over N = 50 -> 200) of about 1 for Euler ancestral and
 * DDIM eta 1, about 2 for the others, on smooth schedules. The sample std is checked against S
 * within 5 standard errors plus the exact bias sqrt(V(N)) - S.
 * LCM is no sampler of the posterior-mean denoiser (it assumes a consistency model): its exact
 * law follows the recursion v' = S^4 v / (S^2 + s^2)^2 + s'^2, checked instead.
 *
 * Also: model calls and noise draws per run (docs/samplers.md), the new schedules, the names. */
#include "core/rng.h"
#include "core/sampler.h"
#include "core/schedule.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MU 0.5
#define S 0.7
#define MC_N 65536
#define MC_STEPS 50

static int failures = 0;

#define CHECK(cond, ...)                                                                                     \
    do {                                                                                                     \
        if (!(cond)) {                                                                                       \
            failures++;                                                                                      \
            fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__);                                             \
            fprintf(stderr, __VA_ARGS__);                                                                    \
            fprintf(stderr, "\n");                                                                           \
        }                                                                                                    \
    } while (0)

static float g_ac[LDM_TRAIN_STEPS];
static ldm_discrete_schedule g_sched;

/* model.c compute_alphas_cumprod for SD 1.x: betas = linspace(sqrt(0.00085), sqrt(0.012), 1000)^2
 * in float64 (torch.linspace fills the second half from the end), cumprod, stored as float32. */
static void init_schedule(void) {
    double a = sqrt(0.00085), b = sqrt(0.012), step = (b - a) / (LDM_TRAIN_STEPS - 1), prod = 1.0;
    for (int i = 0; i < LDM_TRAIN_STEPS; i++) {
        double s = i < LDM_TRAIN_STEPS / 2 ? a + step * i : b - step * (LDM_TRAIN_STEPS - 1 - i);
        prod *= 1.0 - s * s;
        g_ac[i] = (float)prod;
    }
    schedule_init(&g_sched, g_ac);
}

static double vp_sigma(int32_t t) {
    double a = g_ac[t < LDM_TRAIN_STEPS ? t : LDM_TRAIN_STEPS - 1];
    return sqrt((1.0 - a) / a);
}

/* ---- the hand-made sample run ---- */

typedef struct {
    ldm_sample_run run; /* first: callbacks get &run */
    double mu;
    ldm_rng rng;
    int one_hot; /* linear response: draw k is the unit vector e_k */
    int32_t draws, calls;
    int32_t capture_step;
    float *captured;
} harness;

static ldm_status h_denoise(ldm_sample_run *r, const float *x, float sigma, float *den) {
    harness *h = (harness *)r;
    double sg2 = (double)sigma * sigma;
    for (int32_t j = 0; j < r->n; j++) den[j] = (float)((S * S * x[j] + sg2 * h->mu) / (S * S + sg2));
    h->calls++;
    return LDM_OK;
}

static ldm_status h_eps(ldm_sample_run *r, const float *x, int32_t t, float *eps) {
    harness *h = (harness *)r;
    double a = sampler_alpha_at(r, t), sg = sqrt((1.0 - a) / a), sa = sqrt(a), sg2 = sg * sg;
    for (int32_t j = 0; j < r->n; j++) {
        double xv = x[j] / sa, d = (S * S * xv + sg2 * h->mu) / (S * S + sg2);
        eps[j] = (float)((xv - d) / sg);
    }
    h->calls++;
    return LDM_OK;
}

static ldm_status h_randn(ldm_sample_run *r, float *out) {
    harness *h = (harness *)r;
    h->draws++;
    if (!h->one_hot) return ldm_rng_randn(&h->rng, out, (size_t)r->n);
    memset(out, 0, (size_t)r->n * sizeof *out);
    if (h->draws >= r->n) return ldm_fail(LDM_ERR_INVALID_ARG, "more draws than the response run has room for");
    out[h->draws] = 1.0f;
    return LDM_OK;
}

static ldm_status h_step_done(ldm_sample_run *r, int32_t step, const float *x, const float *x0) {
    harness *h = (harness *)r;
    (void)x0;
    if (step == h->capture_step && h->captured) memcpy(h->captured, x, (size_t)r->n * sizeof *x);
    return LDM_OK;
}

/* What one sampler walks for `steps`, and the VE noise levels at its start and its end. */
typedef struct {
    int32_t steps;
    float sigmas[LDM_TRAIN_STEPS + 1];
    int32_t ts[LDM_TRAIN_STEPS];
    double sigma_start, sigma_last; /* sigma of x_init; last nonzero sigma (DDIM: its final level) */
    double to_space;                /* x_sampler = to_space * x_ve at the start */
    double from_space;              /* x_ve = from_space * x_sampler at the end */
} plan;

static void make_plan(plan *p, const ldm_sampler_def *def, ldm_scheduler_kind kind, int32_t steps) {
    if (def->space == LDM_SAMPLER_SIGMA) {
        ldm_status st = schedule_sigmas(&g_sched, kind, steps, p->sigmas);
        CHECK(st == LDM_OK, "schedule_sigmas(%d, %d): %s", (int)kind, steps, ldm_last_error());
        p->steps = steps;
        p->sigma_start = p->sigmas[0];
        p->sigma_last = p->sigmas[steps - 1];
        p->to_space = p->from_space = 1.0;
    } else {
        p->steps = schedule_ddim_timesteps(steps, p->ts);
        int32_t t0 = p->ts[p->steps - 1];
        p->sigma_start = vp_sigma(t0);
        p->sigma_last = vp_sigma(0);
        p->to_space = sqrt((double)g_ac[t0]);
        p->from_space = 1.0 / sqrt((double)g_ac[0]);
    }
}

static ldm_status drive(harness *h, const ldm_sampler_def *def, const plan *p, float eta, float *x, int32_t n,
                        int32_t capture_step, float *captured) {
    h->run = (ldm_sample_run){.n = n, .x = x, .steps = p->steps, .sigmas = p->sigmas, .timesteps = p->ts,
                              .sched = &g_sched, .eta = eta, .denoise = h_denoise, .eps = h_eps,
                              .randn = h_randn, .step_done = h_step_done};
    h->draws = h->calls = 0;
    h->capture_step = capture_step;
    h->captured = captured;
    return def->run(&h->run);
}

static const char *const sched_names[LDM_SCHED_COUNT] = {"discrete", "karras", "exponential", "simple",
                                                         "sgm_uniform"};

/* ---- deterministic samplers: convergence order against the closed-form ODE solution ---- */

typedef struct {
    const char *name;
    double order_min, order_max; /* accepted N = 20 -> 40 slope on karras / exponential (DDIM grid) */
    int calls_per_step, calls_last; /* model calls: per step, and on the step to sigma 0 */
    int calls_extra;                /* once per run (PLMS: the first step's second call) */
} det_case;

/* Karras and exponential sigmas are smooth functions of the step index that end at sigma_min, so
 * the asymptotic order shows at N = 10..40. The t-uniform ones (discrete, simple, sgm_uniform) are
 * not: near t = 0, sigma(t) ~ sqrt(beta_0 (t + 1)), so the last steps do not shrink like 1/N in
 * log sigma (sgm_uniform/simple even end at a sigma that depends on N); on them only a decreasing
 * error is required, and the slopes are reported. */
static int smooth_schedule(int k) { return k == LDM_SCHED_KARRAS || k == LDM_SCHED_EXPONENTIAL; }

static double det_error(const ldm_sampler_def *def, ldm_scheduler_kind kind, int32_t steps, int32_t *calls,
                        int32_t *draws) {
    enum { NE = 9 };
    plan *p = malloc(sizeof *p);
    make_plan(p, def, kind, steps);
    float x[NE], cap[NE];
    double x0[NE], v0 = S * S + p->sigma_start * p->sigma_start;
    for (int j = 0; j < NE; j++) {
        x0[j] = MU + sqrt(v0) * (-2.0 + 0.5 * j);
        x[j] = (float)(p->to_space * x0[j]);
    }
    harness h = {.mu = MU};
    ldm_rng_init(&h.rng, LDM_RNG_KIND_PHILOX, 7);
    int32_t cap_step = def->space == LDM_SAMPLER_SIGMA ? p->steps - 1 : p->steps;
    ldm_status st = drive(&h, def, p, 0.0f, x, NE, cap_step, cap);
    CHECK(st == LDM_OK, "%s: %s", def->name, ldm_last_error());
    double g = sqrt(S * S + p->sigma_last * p->sigma_last) / sqrt(v0), err = 0.0;
    for (int j = 0; j < NE; j++) {
        double exact = MU + (x0[j] - MU) * g, got = p->from_space * cap[j];
        err = fmax(err, fabs(got - exact));
    }
    err /= 2.0 * sqrt(S * S + p->sigma_last * p->sigma_last); /* relative to the spread of x - MU */
    *calls = h.calls;
    *draws = h.draws;
    free(p);
    return err;
}

static void test_deterministic(void) {
    /* Expected orders: Euler, DDIM 1; Heun, DPM2, DPM++ 2M 2; LMS (order 4, started at orders 1-3)
     * 3 or more in this range of N; PLMS (AB4 with constant coefficients on a t-uniform grid) > 1.5. */
    static const det_case cases[] = {
        {"euler", 0.9, 1.1, 1, 1, 0},    {"heun", 1.9, 2.3, 2, 1, 0},     {"dpm2", 1.9, 2.3, 2, 1, 0},
        {"dpmpp_2m", 1.9, 2.3, 1, 1, 0}, {"lms", 3.0, 4.5, 1, 1, 0},      {"ddim", 0.8, 1.2, 1, 1, 0},
        {"plms", 1.5, 4.5, 1, 1, 1},
    };
    printf("deterministic samplers: max |x - x_exact| / spread after step N-1, N = 10, 20, 40; slopes\n");
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        const ldm_sampler_def *def = sampler_find(cases[c].name);
        CHECK(def != NULL, "sampler %s missing", cases[c].name);
        if (!def) continue;
        int n_kinds = def->space == LDM_SAMPLER_SIGMA ? LDM_SCHED_COUNT : 1;
        for (int k = 0; k < n_kinds; k++) {
            double e[3];
            int32_t n_steps[3] = {10, 20, 40};
            for (int q = 0; q < 3; q++) {
                int32_t calls, draws, n = n_steps[q];
                e[q] = det_error(def, (ldm_scheduler_kind)k, n, &calls, &draws);
                int32_t want = def->space == LDM_SAMPLER_SIGMA
                                   ? cases[c].calls_per_step * (n - 1) + cases[c].calls_last + cases[c].calls_extra
                                   : n + cases[c].calls_extra;
                CHECK(calls == want, "%s %d steps: %d model calls, documented %d", def->name, n, calls, want);
                CHECK(draws == 0, "%s: %d noise draws, documented none", def->name, draws);
            }
            double p1 = log2(e[0] / e[1]), p2 = log2(e[1] / e[2]);
            const char *sk = def->space == LDM_SAMPLER_SIGMA ? sched_names[k] : "ddim-uniform";
            int strict = def->space != LDM_SAMPLER_SIGMA || smooth_schedule(k);
            printf("  %-9s %-12s err %.3e %.3e %.3e  order %.2f %.2f%s\n", def->name, sk, e[0], e[1], e[2], p1, p2,
                   strict ? "" : "  (not asymptotic)");
            if (strict)
                CHECK(p2 >= cases[c].order_min && p2 <= cases[c].order_max, "%s/%s: order %.2f outside [%.1f, %.1f]",
                      def->name, sk, p2, cases[c].order_min, cases[c].order_max);
            else
                CHECK(e[2] < e[1] / 1.2, "%s/%s: error does not decrease: %.3e %.3e %.3e",
                      def->name, sk, e[0], e[1], e[2]);
        }
    }
}

/* ---- stochastic samplers: moments ---- */

typedef struct {
    const char *name;
    float eta;
    int calls_per_step, calls_last;
    int draws_less;      /* draws = N - draws_less */
    double weak_min;     /* least slope of |V(N) - V*| over N = 50 -> 200 on karras/exponential */
} sto_case;

/* Exact output variance (in x_ve) by linear response; also the calls and draws of that run. */
static double response_variance(const ldm_sampler_def *def, ldm_scheduler_kind kind, int32_t steps, float eta,
                                plan *p, int32_t *calls, int32_t *draws) {
    make_plan(p, def, kind, steps);
    int32_t n = p->steps + 2;
    float *x = calloc((size_t)n, sizeof *x);
    x[0] = (float)p->to_space; /* x_ve = 1 on element 0; mu = 0 makes the map linear */
    harness h = {.mu = 0.0, .one_hot = 1};
    ldm_status st = drive(&h, def, p, eta, x, n, -1, NULL);
    CHECK(st == LDM_OK, "%s response: %s", def->name, ldm_last_error());
    double a = p->from_space * x[0], v = a * a * (S * S + p->sigma_start * p->sigma_start);
    for (int32_t k = 1; k < n; k++) v += (p->from_space * x[k]) * (p->from_space * x[k]);
    *calls = h.calls;
    *draws = h.draws;
    free(x);
    return v;
}

/* Variance of the exact law at the end of the run (see the header comment). */
static double target_variance(const ldm_sampler_def *def, const plan *p) {
    double sl2 = p->sigma_last * p->sigma_last;
    return def->space == LDM_SAMPLER_SIGMA ? S * S * S * S / (S * S + sl2) : S * S + sl2;
}

/* LCM's own law: v_0 = S^2 + s_0^2, v <- S^4 v / (S^2 + s_i^2)^2 + s_{i+1}^2. */
static double lcm_variance(const plan *p) {
    double v = S * S + (double)p->sigmas[0] * p->sigmas[0];
    for (int i = 0; i < p->steps; i++) {
        double si2 = (double)p->sigmas[i] * p->sigmas[i], k = S * S / (S * S + si2);
        v = k * k * v + (double)p->sigmas[i + 1] * p->sigmas[i + 1];
    }
    return v;
}

static void test_stochastic(void) {
    static const sto_case cases[] = {
        {"euler_ancestral", 1.0f, 1, 1, 1, 0.8},    {"dpm2_ancestral", 1.0f, 2, 1, 1, 1.7},
        {"dpmpp_2s_ancestral", 1.0f, 2, 1, 1, 1.7}, {"dpmpp_2m_sde", 1.0f, 1, 1, 1, 1.7},
        {"lcm", 1.0f, 1, 1, 1, 0.0},                {"ddim", 1.0f, 1, 1, 0, 0.7},
    };
    printf("stochastic samplers: exact variance V(N) by linear response vs the exact law's V*\n");
    float *x = malloc((size_t)MC_N * sizeof *x);
    plan *p = malloc(sizeof *p);
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        const ldm_sampler_def *def = sampler_find(cases[c].name);
        CHECK(def != NULL, "sampler %s missing", cases[c].name);
        if (!def) continue;
        int is_lcm = strcmp(def->name, "lcm") == 0;
        int n_kinds = def->space == LDM_SAMPLER_SIGMA ? LDM_SCHED_COUNT : 1;
        for (int k = 0; k < n_kinds; k++) {
            /* Convergence of the exact variance with N (weak order of the variance). */
            int32_t ns[4] = {25, 50, 100, 200};
            double bias[4], v_n[4];
            for (int q = 0; q < 4; q++) {
                int32_t calls, draws, n = ns[q];
                v_n[q] = response_variance(def, (ldm_scheduler_kind)k, n, cases[c].eta, p, &calls, &draws);
                double target = is_lcm ? lcm_variance(p) : target_variance(def, p);
                bias[q] = v_n[q] - target;
                int32_t want_calls = def->space == LDM_SAMPLER_SIGMA
                                         ? cases[c].calls_per_step * (n - 1) + cases[c].calls_last
                                         : n;
                CHECK(calls == want_calls, "%s %d steps: %d model calls, documented %d", def->name, n, calls,
                      want_calls);
                CHECK(draws == n - cases[c].draws_less, "%s %d steps: %d draws, documented %d", def->name, n, draws,
                      n - cases[c].draws_less);
            }
            const char *sk = def->space == LDM_SAMPLER_SIGMA ? sched_names[k] : "ddim-uniform";
            if (is_lcm) {
                /* LCM's exact law is known in closed form: the linear response must equal it. */
                printf("  %-18s %-12s V(25..200) %.6f %.6f %.6f %.6f  |V - V_lcm| max %.1e (S^2 = %.2f)\n",
                       def->name, sk, v_n[0], v_n[1], v_n[2], v_n[3],
                       fmax(fmax(fabs(bias[0]), fabs(bias[1])), fmax(fabs(bias[2]), fabs(bias[3]))), S * S);
                for (int q = 0; q < 4; q++)
                    CHECK(fabs(bias[q]) < 2e-5, "lcm/%s %d steps: V %.7f, closed form %.7f", sk, ns[q], v_n[q],
                          v_n[q] - bias[q]);
            } else {
                double ord = log2(fabs(bias[1]) / fabs(bias[3])) / 2.0;
                printf("  %-18s %-12s V-V* (N=25..200) %+.2e %+.2e %+.2e %+.2e  weak order %.2f\n", def->name, sk,
                       bias[0], bias[1], bias[2], bias[3], ord);
                /* The t-uniform schedules converge, more slowly (see smooth_schedule). */
                double want = def->space != LDM_SAMPLER_SIGMA || smooth_schedule(k) ? cases[c].weak_min : 0.6;
                CHECK(ord >= want, "%s/%s: V(N) - V* = %.3e -> %.3e, slope %.2f < %.1f", def->name, sk, bias[1],
                      bias[3], ord, want);
            }
            if (k != (def->space == LDM_SAMPLER_SIGMA ? LDM_SCHED_KARRAS : 0)) continue;

            /* Monte Carlo at MC_STEPS steps on MC_N independent elements. */
            int32_t calls, draws;
            double v_pred = response_variance(def, (ldm_scheduler_kind)k, MC_STEPS, cases[c].eta, p, &calls, &draws);
            double v_star = is_lcm ? lcm_variance(p) : target_variance(def, p);
            harness h = {.mu = MU};
            ldm_rng_init(&h.rng, LDM_RNG_KIND_PHILOX, 1234 + c);
            ldm_status st = ldm_rng_randn(&h.rng, x, MC_N); /* draw 0, as the pipeline */
            double sd0 = sqrt(S * S + p->sigma_start * p->sigma_start);
            for (int j = 0; j < MC_N; j++) x[j] = (float)(p->to_space * (MU + sd0 * x[j]));
            if (!st) st = drive(&h, def, p, cases[c].eta, x, MC_N, -1, NULL);
            CHECK(st == LDM_OK, "%s MC: %s", def->name, ldm_last_error());
            double sum = 0.0, sum2 = 0.0;
            for (int j = 0; j < MC_N; j++) sum += p->from_space * x[j];
            double mean = sum / MC_N;
            for (int j = 0; j < MC_N; j++) {
                double d = p->from_space * x[j] - mean;
                sum2 += d * d;
            }
            double var = sum2 / (MC_N - 1), se_mean = sqrt(v_pred / MC_N), se_var = v_pred * sqrt(2.0 / (MC_N - 1));
            double sd = sqrt(var), se_sd = sqrt(v_pred) / sqrt(2.0 * (MC_N - 1));
            double want_sd = def->space == LDM_SAMPLER_SIGMA ? S : sqrt(S * S + p->sigma_last * p->sigma_last);
            printf("    MC %d steps x %d: mean %.5f (mu %.2f, 5 SE %.5f)  var %.5f (V(N) %.5f, 5 SE %.5f)  "
                   "std %.5f vs %.5f (bias %+.5f, 5 SE %.5f)\n",
                   MC_STEPS, MC_N, mean, MU, 5 * se_mean, var, v_pred, 5 * se_var, sd, want_sd,
                   sqrt(v_pred) - want_sd, 5 * se_sd);
            CHECK(fabs(mean - MU) <= 5 * se_mean, "%s MC mean %.5f, mu %.2f (5 SE %.5f)", def->name, mean, MU,
                  5 * se_mean);
            CHECK(fabs(var - v_pred) <= 5 * se_var, "%s MC var %.5f, exact %.5f (5 SE %.5f)", def->name, var, v_pred,
                  5 * se_var);
            if (!is_lcm) {
                /* std within 5 SE plus the sampler's discretisation bias, which must stay small. */
                double bias_sd = fabs(sqrt(v_pred) - want_sd);
                CHECK(fabs(sd - want_sd) <= 5 * se_sd + bias_sd, "%s MC std %.5f, target %.5f", def->name, sd,
                      want_sd);
                CHECK(fabs(v_star - want_sd * want_sd) <= 2 * p->sigma_last * p->sigma_last, "V* sanity");
            }
        }
    }
    free(p);
    free(x);
}

/* ---- schedules ---- */

static void test_schedules(void) {
    float sg[1001];
    double lmax = log((double)g_sched.sigmas[LDM_TRAIN_STEPS - 1]), lmin = log((double)g_sched.sigmas[0]);
    int32_t ns[] = {1, 2, 7, 10, 30, 1000};
    for (size_t q = 0; q < sizeof ns / sizeof ns[0]; q++) {
        int32_t n = ns[q];
        for (int k = 0; k < LDM_SCHED_COUNT; k++) {
            CHECK(schedule_sigmas(&g_sched, (ldm_scheduler_kind)k, n, sg) == LDM_OK, "schedule %d", k);
            CHECK(sg[n] == 0.0f, "%s: last sigma %g", sched_names[k], (double)sg[n]);
            for (int i = 0; i + 1 < n; i++)
                CHECK(sg[i] > sg[i + 1], "%s %d: not decreasing at %d", sched_names[k], n, i);
            CHECK(sg[0] <= g_sched.sigmas[LDM_TRAIN_STEPS - 1] * (1 + 1e-6), "%s: starts above sigma_max",
                  sched_names[k]);
        }
        /* exponential: log-uniform from sigma_max to sigma_min (get_sigmas_exponential). */
        schedule_sigmas(&g_sched, LDM_SCHED_EXPONENTIAL, n, sg);
        for (int i = 0; i < n; i++) {
            double want = n == 1 ? lmax : lmax + (lmin - lmax) * i / (n - 1);
            CHECK(fabs(log((double)sg[i]) - want) < 2e-6 * fmax(1.0, fabs(want)), "exponential %d[%d]: %g", n, i,
                  (double)sg[i]);
        }
        /* simple: table entries 999 - floor(i * 1000 / n) (ComfyUI simple_scheduler). */
        schedule_sigmas(&g_sched, LDM_SCHED_SIMPLE, n, sg);
        for (int i = 0; i < n; i++) {
            int idx = LDM_TRAIN_STEPS - 1 - (int)floor((double)i * LDM_TRAIN_STEPS / n);
            CHECK(sg[i] == g_sched.sigmas[idx], "simple %d[%d]: %g, table[%d] %g", n, i, (double)sg[i], idx,
                  (double)g_sched.sigmas[idx]);
        }
        /* sgm_uniform: t = 999 (1 - i / n), log-linear in the table (ComfyUI normal_scheduler sgm). */
        schedule_sigmas(&g_sched, LDM_SCHED_SGM_UNIFORM, n, sg);
        for (int i = 0; i < n; i++) {
            double t = 999.0 * (1.0 - (double)i / n), lo = floor(t), w = t - lo;
            int a = (int)lo, b = a + (w > 0 ? 1 : 0);
            double want = exp((1 - w) * log((double)g_sched.sigmas[a]) + w * log((double)g_sched.sigmas[b]));
            CHECK(fabs(sg[i] / want - 1.0) < 1e-5, "sgm_uniform %d[%d]: %g, want %g", n, i, (double)sg[i], want);
        }
    }
    /* Names. */
    static const struct {
        const char *name;
        ldm_scheduler_kind kind;
    } names[] = {{"discrete", LDM_SCHED_DISCRETE},   {"normal", LDM_SCHED_DISCRETE},
                 {"Karras", LDM_SCHED_KARRAS},       {"exponential", LDM_SCHED_EXPONENTIAL},
                 {"simple", LDM_SCHED_SIMPLE},       {"sgm_uniform", LDM_SCHED_SGM_UNIFORM},
                 {"SGM Uniform", LDM_SCHED_SGM_UNIFORM}};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        ldm_scheduler_kind k = (ldm_scheduler_kind)-1;
        CHECK(schedule_find(names[i].name, &k) && k == names[i].kind, "scheduler name %s", names[i].name);
    }
    ldm_scheduler_kind k;
    CHECK(!schedule_find("nope", &k) && !schedule_find(NULL, &k), "unknown scheduler accepted");
    for (int i = 0; i < LDM_SCHED_COUNT; i++) {
        CHECK(schedule_name((ldm_scheduler_kind)i) && strcmp(schedule_name((ldm_scheduler_kind)i), sched_names[i]) == 0,
              "schedule_name(%d)", i);
        CHECK(schedule_find(sched_names[i], &k) && (int)k == i, "round trip %s", sched_names[i]);
    }
    CHECK(schedule_name((ldm_scheduler_kind)LDM_SCHED_COUNT) == NULL, "schedule_name out of range");
}

static void test_names(void) {
    int count = 0;
    for (const char *const *l = ldm_sampler_list(); *l; l++, count++) {
        const ldm_sampler_def *d = sampler_find(*l);
        CHECK(d && strcmp(d->name, *l) == 0, "listed sampler %s", *l);
    }
    CHECK(count == 12, "%d samplers listed", count);
    static const char *const pairs[][2] = {
        {"euler_a", "euler_ancestral"},      {"k_euler_a", "euler_ancestral"},   {"Euler a", "euler_ancestral"},
        {"dpm++2m", "dpmpp_2m"},             {"k_dpmpp_2m", "dpmpp_2m"},         {"dpm++2s_a", "dpmpp_2s_ancestral"},
        {"k_dpmpp_2s_a", "dpmpp_2s_ancestral"}, {"DPM++ 2S a", "dpmpp_2s_ancestral"}, {"dpm++2m_sde", "dpmpp_2m_sde"},
        {"DPM++ 2M SDE", "dpmpp_2m_sde"},    {"dpm2_a", "dpm2_ancestral"},       {"dpm_2_ancestral", "dpm2_ancestral"},
        {"k_dpm_2_a", "dpm2_ancestral"},     {"dpm_2", "dpm2"},                  {"k_dpm_2", "dpm2"},
        {"k_lms", "lms"},                    {"k_heun", "heun"},                 {"k_euler", "euler"},
        {"LCM", "lcm"},                      {"DDIM", "ddim"},                   {"plms", "plms"},
    };
    for (size_t i = 0; i < sizeof pairs / sizeof pairs[0]; i++) {
        const ldm_sampler_def *d = sampler_find(pairs[i][0]);
        CHECK(d && strcmp(d->name, pairs[i][1]) == 0, "alias %s -> %s", pairs[i][0], d ? d->name : "NULL");
    }
    CHECK(sampler_find("dpm++") == NULL && sampler_find(NULL) == NULL, "bad names accepted");
}

int main(void) {
    clock_t t0 = clock();
    init_schedule();
    test_names();
    test_schedules();
    test_deterministic();
    test_stochastic();
    printf("%s (%d failures, %.2f s CPU)\n", failures ? "FAILED" : "ok", failures,
           (double)(clock() - t0) / CLOCKS_PER_SEC);
    return failures ? 1 : 0;
}
