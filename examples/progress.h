/*
 * A sampling progress bar on a stdio stream (stderr in ldm), fed by ldm_progress_fn calls.
 *
 * On a terminal the bar is redrawn in place with '\r'; when the stream is a file or a pipe
 * (CI logs, `2> log`), carriage returns would pile up into one huge line, so it prints a plain
 * line per step for short runs and one per 10% otherwise.
 */
#ifndef LDM_PROGRESS_H
#define LDM_PROGRESS_H

#include <stdio.h>

typedef struct progress {
    FILE *out;
    int tty;             /* redraw in place */
    double round_start;  /* when the current run of steps began (monotonic seconds) */
    double last_time;    /* time of the previous update */
    int last_step;       /* previous step, to notice the next image of a batch starting at 1 */
    int last_tenth;      /* last 10% mark printed (non-tty) */
    size_t drawn;        /* length of the bar now on screen (tty), to blank a shorter redraw */
    int line_open;       /* a bar is on screen without its newline */
    int images;          /* images the call makes; above 1 each bar is labelled "k/N" */
    int image;           /* 1-based image the current bar belongs to */
} progress;

/* Starts timing now; call right before the call that reports progress for `images` images. */
void progress_init(progress *p, FILE *out, int images);

/* Shows step (1..total). A step not above the previous one starts a new bar (next image). */
void progress_update(progress *p, int step, int total);

/* Ends a half-drawn bar with a newline so that a following message starts on its own line. */
void progress_break(progress *p);

/* Monotonic seconds, for callers that time other stages the same way. */
double progress_now(void);

#endif /* LDM_PROGRESS_H */
