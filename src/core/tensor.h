/* A tensor: shape, element type and storage. Activations live in backend storage; weights point
 * into the memory-mapped checkpoint in their file dtype. */
#ifndef LDM_CORE_TENSOR_H
#define LDM_CORE_TENSOR_H

#include "dtype.h"
#include <stdbool.h>

#define LDM_MAX_DIMS 4

typedef struct ldm_tensor {
    ldm_dtype dtype;
    int32_t ndim;
    int64_t ne[LDM_MAX_DIMS]; /* shape, outermost first */
    void *data;               /* host storage (CPU backend, and every weight) */
    void *device;             /* backend-private storage (NULL on the CPU) */
    bool owns_data;           /* data was allocated by the backend */
} ldm_tensor;

static inline int64_t ldm_numel(const ldm_tensor *t) {
    int64_t n = 1;
    for (int i = 0; i < t->ndim; i++) n *= t->ne[i];
    return n;
}

/* Product of the dimensions from `from` to the last. */
static inline int64_t ldm_numel_from(const ldm_tensor *t, int from) {
    int64_t n = 1;
    for (int i = from; i < t->ndim; i++) n *= t->ne[i];
    return n;
}

#endif
