/* safetensors container: memory-mapped reader with every offset, size and shape checked, and a
 * writer (used by the conformance runner and tests).
 * Format: u64 little-endian header length N, N bytes of JSON, then the data section. */
#ifndef LDM_CORE_SAFETENSORS_H
#define LDM_CORE_SAFETENSORS_H

#include "common.h"
#include "dtype.h"

#define ST_MAX_DIMS 8
#define ST_MAX_HEADER ((size_t)100 << 20) /* 100 MiB, as the reference implementation */

typedef struct st_tensor {
    const char *name;
    ldm_dtype dtype;
    int32_t ndim;
    int64_t shape[ST_MAX_DIMS];
    size_t nbytes;    /* product(shape) * dtype size, checked against the offsets */
    const void *data; /* points into the mapping; unaligned access must be memcpy'd */
} st_tensor;

typedef struct st_file st_file;

ldm_status st_open(const char *path, st_file **out);
/* Parses a buffer the caller keeps alive (fuzzing, in-memory files). */
ldm_status st_open_memory(const void *data, size_t size, st_file **out);
void st_close(st_file *f);

size_t st_count(const st_file *f);
const st_tensor *st_at(const st_file *f, size_t i);
const st_tensor *st_find(const st_file *f, const char *name);
/* A string value of "__metadata__", or NULL. */
const char *st_meta(const st_file *f, const char *key);
size_t st_numel(const st_tensor *t);
/* True when [p, p + n) lies inside a read-only file mapping owned by f (its own mmap, a kept
 * ST_KEEP_MUNMAP region or a kept component file): pages there can be dropped with
 * madvise(MADV_DONTNEED) and fault back in from the file (core/memory.c). */
bool st_is_file_mapped(const st_file *f, const void *p, size_t n);
/* Copies a float tensor (F32/F16/BF16/F64) into a new float32 array (caller frees). */
ldm_status st_read_f32(const st_tensor *t, float **out);

/* Builder: an st_file assembled by another container reader (torch zip checkpoints, diffusers
 * folders; see checkpoint.h), so the model code reads every format through the same index.
 * Tensor data is not copied: it must stay valid until st_close(), which is what st_builder_keep
 * arranges by handing the builder ownership of the memory it lives in. On any error the builder
 * still owns (and releases) everything given to it. */
typedef struct st_builder st_builder;
typedef enum {
    ST_KEEP_FREE = 0,  /* free(p) */
    ST_KEEP_MUNMAP = 1, /* munmap(p, n) */
    ST_KEEP_FILE = 2,  /* st_close((st_file *)p) */
} st_keep_kind;
st_builder *st_builder_new(void);
/* Adds a tensor; the name is copied, `data` must hold product(shape) * dtype-size bytes. */
ldm_status st_builder_add(st_builder *b, const char *name, ldm_dtype dt, int32_t ndim, const int64_t *shape,
                          const void *data);
/* Transfers ownership of p to the builder (released at st_close, or at once when this fails). */
ldm_status st_builder_keep(st_builder *b, st_keep_kind kind, void *p, size_t n);
ldm_status st_builder_meta(st_builder *b, const char *key, const char *value);
/* Indexes the names (a repeated name is LDM_ERR_FORMAT) and returns the file; the builder is
 * consumed whatever the outcome. */
ldm_status st_builder_finish(st_builder *b, st_file **out);
void st_builder_free(st_builder *b);

/* Writer: add tensors (data is copied), then write. */
typedef struct st_writer st_writer;
st_writer *st_writer_new(void);
ldm_status st_writer_add(st_writer *w, const char *name, ldm_dtype dt, int32_t ndim,
                         const int64_t *shape, const void *data);
ldm_status st_writer_meta(st_writer *w, const char *key, const char *value);
ldm_status st_writer_save(st_writer *w, const char *path);
void st_writer_free(st_writer *w);

#endif
