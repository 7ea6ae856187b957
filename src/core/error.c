/* Thread-local last-error message and status names. */
#include "common.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static _Thread_local char last_error[1024];

ldm_status ldm_fail(ldm_status status, const char *fmt, ...) {
    /* Format into a local buffer first: callers may pass ldm_last_error() as an argument. */
    char msg[sizeof last_error];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    memcpy(last_error, msg, sizeof msg);
    return status;
}

void ldm_clear_error(void) { last_error[0] = '\0'; }

LDM_API const char *ldm_last_error(void) { return last_error; }

LDM_API const char *ldm_status_string(ldm_status status) {
    switch (status) {
    case LDM_OK: return "LDM_OK";
    case LDM_ERR_INVALID_ARG: return "LDM_ERR_INVALID_ARG";
    case LDM_ERR_NO_MEMORY: return "LDM_ERR_NO_MEMORY";
    case LDM_ERR_IO: return "LDM_ERR_IO";
    case LDM_ERR_FORMAT: return "LDM_ERR_FORMAT";
    case LDM_ERR_UNSUPPORTED: return "LDM_ERR_UNSUPPORTED";
    case LDM_ERR_BACKEND: return "LDM_ERR_BACKEND";
    case LDM_ERR_CANCELLED: return "LDM_ERR_CANCELLED";
    case LDM_ERR_INTERNAL: return "LDM_ERR_INTERNAL";
    default: return "LDM_ERR_UNKNOWN";
    }
}

LDM_API const char *ldm_version(void) { return LDM_VERSION_STRING; }
LDM_API int32_t ldm_version_number(void) { return LDM_VERSION_NUMBER; }

void *ldm_xmalloc(size_t n) { return malloc(n ? n : 1); }
void *ldm_xcalloc(size_t n, size_t size) { return calloc(n ? n : 1, size ? size : 1); }

char *ldm_strdup(const char *s) {
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    if (d) memcpy(d, s, n);
    return d;
}

ldm_status ldm_read_file(const char *path, char **data, size_t *size) {
    *data = NULL;
    *size = 0;
    FILE *f = fopen(path, "rb");
    if (!f) return ldm_fail(LDM_ERR_IO, "cannot open '%s': %s", path, strerror(errno));
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap + 1);
    if (!buf) {
        fclose(f);
        return ldm_fail(LDM_ERR_NO_MEMORY, "out of memory reading '%s'", path);
    }
    for (;;) {
        if (n == cap) {
            if (cap > ((size_t)1 << 30)) {
                free(buf);
                fclose(f);
                return ldm_fail(LDM_ERR_FORMAT, "'%s' is too large (over 1 GiB)", path);
            }
            char *nb = realloc(buf, cap * 2 + 1);
            if (!nb) {
                free(buf);
                fclose(f);
                return ldm_fail(LDM_ERR_NO_MEMORY, "out of memory reading '%s'", path);
            }
            buf = nb;
            cap *= 2;
        }
        size_t got = fread(buf + n, 1, cap - n, f);
        n += got;
        if (got == 0) break;
    }
    int err = ferror(f);
    fclose(f);
    if (err) {
        free(buf);
        return ldm_fail(LDM_ERR_IO, "read error on '%s'", path);
    }
    buf[n] = '\0';
    *data = buf;
    *size = n;
    return LDM_OK;
}
