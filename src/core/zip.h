/* Read-only view of a ZIP archive held in memory (PyTorch's checkpoint container, written by
 * torch.save since 1.6 through miniz: every entry stored, data 64-byte aligned, ZIP64 records
 * once the file passes 4 GiB). Only the central directory is trusted for sizes; every offset and
 * size is checked against the buffer before an entry is returned. Nothing is decompressed. */
#ifndef LDM_CORE_ZIP_H
#define LDM_CORE_ZIP_H

#include "common.h"

typedef struct zip_entry {
    const char *name; /* not NUL-terminated: name_len bytes inside the archive */
    size_t name_len;
    uint16_t method; /* 0 = stored; anything else is reported, never inflated */
    uint16_t flags;
    uint32_t crc32;
    uint64_t size;      /* compressed size (== uncompressed size when stored) */
    uint64_t data_off;  /* where the entry's bytes begin; data_off + size <= archive size */
} zip_entry;

typedef struct zip_archive {
    const unsigned char *data;
    size_t size;
    zip_entry *entries;
    size_t count;
    uint32_t *slots; /* open-addressing name index: entry number + 1, 0 = empty */
    size_t slots_cap;
} zip_archive;

/* True when the buffer starts with a local file header ("PK\3\4"). */
bool zip_is_zip(const void *data, size_t size);
ldm_status zip_open(const void *data, size_t size, zip_archive *out);
void zip_close(zip_archive *z);
/* The entry named exactly `name`, or NULL. */
const zip_entry *zip_find(const zip_archive *z, const char *name);
/* The stored bytes of an entry: LDM_ERR_UNSUPPORTED for compressed or encrypted entries. */
ldm_status zip_stored_data(const zip_archive *z, const zip_entry *e, const unsigned char **data);
uint32_t zip_crc32(const void *data, size_t n);

#endif
