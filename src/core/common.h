/* Internal helpers shared by every layer: status setting, checked allocation, logging. */
#ifndef LDM_CORE_COMMON_H
#define LDM_CORE_COMMON_H

#include "ldm/ldm.h"
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define LDM_INTERNAL __attribute__((visibility("hidden")))
#define LDM_UNUSED(x) (void)(x)
#define LDM_MIN(a, b) ((a) < (b) ? (a) : (b))
#define LDM_MAX(a, b) ((a) > (b) ? (a) : (b))

/* Sets the calling thread's last-error message and returns `status`, so that
 * `return ldm_fail(LDM_ERR_FORMAT, "...")` reads naturally. */
ldm_status ldm_fail(ldm_status status, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void ldm_clear_error(void);

/* Overflow-checked size arithmetic: false on overflow. */
static inline bool ldm_mul_size(size_t a, size_t b, size_t *out) {
    return !__builtin_mul_overflow(a, b, out);
}

void *ldm_xmalloc(size_t n);          /* NULL on failure (no message) */
void *ldm_xcalloc(size_t n, size_t size);
char *ldm_strdup(const char *s);

/* Reads a whole file into a NUL-terminated buffer (caller frees). */
ldm_status ldm_read_file(const char *path, char **data, size_t *size);

#endif
