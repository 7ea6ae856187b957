/* Progress bar (see progress.h). */
#include "progress.h"

#include <string.h>
#include <time.h>
#include <unistd.h>

#define BAR_WIDTH 24

double progress_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts); /* wall-clock jumps must not distort s/it */
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

void progress_init(progress *p, FILE *out, int images)
{
    memset(p, 0, sizeof *p);
    p->out = out;
    p->tty = isatty(fileno(out));
    p->round_start = progress_now();
    p->last_time = p->round_start;
    p->last_tenth = -1;
    p->images = images;
    p->image = 1;
}

/* "9.4s" below a minute, "3m07s" above: what a person reads at a glance. */
static void format_duration(char *buf, size_t size, double seconds)
{
    if (seconds < 0) {
        seconds = 0;
    }
    if (seconds < 60) {
        snprintf(buf, size, "%.1fs", seconds);
    } else {
        long s = (long)(seconds + 0.5);
        snprintf(buf, size, "%ldm%02lds", s / 60, s % 60);
    }
}

/* The label of the bar: "sampling", or "image 2/4" in a batch. */
static void format_label(const progress *p, char *buf, size_t size)
{
    if (p->images > 1) {
        snprintf(buf, size, "image %d/%d", p->image, p->images);
    } else {
        snprintf(buf, size, "sampling");
    }
}

/* The text shared by both modes: "step 12/20  60%  elapsed 9.4s  0.78 s/it  eta 6.2s". */
static void format_status(char *buf, size_t size, int step, int total, double elapsed)
{
    double per_step = elapsed / step;
    char el[32], eta[32];
    format_duration(el, sizeof el, elapsed);
    format_duration(eta, sizeof eta, per_step * (total - step));
    snprintf(buf, size, "step %d/%d %3d%%  elapsed %s  %.2f s/it  eta %s", step, total,
             (int)(100L * step / total), el, per_step, eta);
}

static void draw_tty(progress *p, int step, int total, const char *status)
{
    char bar[BAR_WIDTH + 1];
    int filled = (int)((long)BAR_WIDTH * step / total);
    for (int i = 0; i < BAR_WIDTH; i++) {
        bar[i] = i < filled ? '#' : '.';
    }
    bar[BAR_WIDTH] = '\0';

    char label[32], line[256];
    format_label(p, label, sizeof label);
    int len = snprintf(line, sizeof line, "%s [%s] %s", label, bar, status);
    size_t n = len < 0 ? 0 : (size_t)len;
    /* Pad with blanks over the previous, possibly longer, line: no terminal escapes needed. */
    int pad = p->drawn > n ? (int)(p->drawn - n) : 0;
    fprintf(p->out, "\r%s%*s", line, pad, "");
    p->drawn = n;
    p->line_open = 1;
    if (step == total) {
        progress_break(p);
    }
}

static void print_line(progress *p, int step, int total, const char *status)
{
    int tenth = (int)(10L * step / total);
    if (total <= 10 || tenth != p->last_tenth || step == total) {
        char label[32];
        format_label(p, label, sizeof label);
        fprintf(p->out, "%s %s\n", label, status);
        p->last_tenth = tenth;
    }
}

void progress_update(progress *p, int step, int total)
{
    double now = progress_now();
    if (total <= 0) {
        return; /* nothing meaningful to show, and it would divide by zero */
    }
    if (step < 1) {
        step = 1;
    } else if (step > total) {
        step = total;
    }
    if (step <= p->last_step) {
        /* The next image of a batch: its steps started when the previous image's ended. */
        progress_break(p);
        p->round_start = p->last_time;
        p->last_tenth = -1;
        p->image++;
    }
    p->last_step = step;
    p->last_time = now;

    char status[160];
    format_status(status, sizeof status, step, total, now - p->round_start);
    if (p->tty) {
        draw_tty(p, step, total, status);
    } else {
        print_line(p, step, total, status);
    }
    fflush(p->out);
}

void progress_break(progress *p)
{
    if (p->line_open) {
        fputc('\n', p->out);
        fflush(p->out);
        p->line_open = 0;
        p->drawn = 0;
    }
}
