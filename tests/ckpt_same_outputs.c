/* Runs one golden case through ldm-conform with a reference checkpoint and with each of its
 * re-saved variants (torch .ckpt, diffusers folder) and requires bit-identical outputs: the
 * containers must change nothing about the numbers.
 * usage: ckpt_same_outputs LDM_CONFORM CASE SCRATCH_DIR REF_MODEL MODEL... */
#include "core/safetensors.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static int run_conform(const char *conform, const char *model, const char *case_path, const char *out) {
    pid_t pid = fork();
    if (pid < 0) return -1;
    if (pid == 0) {
        execl(conform, conform, model, case_path, out, (char *)NULL);
        _exit(127);
    }
    int status = 0;
    if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status)) return -1;
    return WEXITSTATUS(status);
}

int main(int argc, char **argv) {
    if (argc < 6) {
        fprintf(stderr, "usage: %s LDM_CONFORM CASE SCRATCH_DIR REF_MODEL MODEL...\n", argv[0]);
        return 2;
    }
    const char *conform = argv[1], *case_path = argv[2], *scratch = argv[3];
    const char *base = strrchr(case_path, '/') ? strrchr(case_path, '/') + 1 : case_path;
    char ref_out[4096];
    snprintf(ref_out, sizeof ref_out, "%s/same_outputs_ref_%d_%s", scratch, (int)getpid(), base);
    if (run_conform(conform, argv[4], case_path, ref_out) != 0) {
        fprintf(stderr, "ldm-conform failed on the reference %s\n", argv[4]);
        return 1;
    }
    st_file *ref = NULL;
    if (st_open(ref_out, &ref)) {
        fprintf(stderr, "%s\n", ldm_last_error());
        return 1;
    }
    int failures = 0;
    for (int m = 5; m < argc; m++) {
        char out[4096];
        snprintf(out, sizeof out, "%s/same_outputs_%d_%d_%s", scratch, (int)getpid(), m, base);
        st_file *f = NULL;
        if (run_conform(conform, argv[m], case_path, out) != 0 || st_open(out, &f)) {
            fprintf(stderr, "FAIL: ldm-conform on %s: %s\n", argv[m], ldm_last_error());
            failures++;
            continue;
        }
        size_t same = 0;
        for (size_t i = 0; i < st_count(ref); i++) {
            const st_tensor *r = st_at(ref, i), *t = st_find(f, r->name);
            if (t && t->dtype == r->dtype && t->nbytes == r->nbytes && memcmp(t->data, r->data, r->nbytes) == 0) same++;
            else fprintf(stderr, "FAIL: %s: output '%s' differs from the reference's\n", argv[m], r->name);
        }
        if (same != st_count(ref) || st_count(f) != st_count(ref)) failures++;
        else printf("%s: %zu outputs bit-identical to %s\n", argv[m], same, argv[4]);
        st_close(f);
        unlink(out);
    }
    st_close(ref);
    unlink(ref_out);
    return failures ? 1 : 0;
}
