/* ZIP central-directory reader (APPNOTE.TXT 6.3: end of central directory record, ZIP64 end
 * record and locator, central file headers, local file headers). Every number read from the
 * archive is checked against the buffer before it is used; entry names must be unique. */
#include "zip.h"

#include <stdlib.h>
#include <string.h>

#define SIG_LOCAL 0x04034b50u
#define SIG_CENTRAL 0x02014b50u
#define SIG_EOCD 0x06054b50u
#define SIG_EOCD64 0x06064b50u
#define SIG_LOCATOR64 0x07064b50u

static uint16_t rd16(const unsigned char *p) { return (uint16_t)(p[0] | p[1] << 8); }
static uint32_t rd32(const unsigned char *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static uint64_t rd64(const unsigned char *p) { return (uint64_t)rd32(p) | (uint64_t)rd32(p + 4) << 32; }

uint32_t zip_crc32(const void *data, size_t n) {
    /* Reflected CRC-32 (polynomial 0xEDB88320), a nibble at a time. */
    static const uint32_t tbl[16] = {0x00000000u, 0x1db71064u, 0x3b6e20c8u, 0x26d930acu, 0x76dc4190u, 0x6b6b51f4u,
                                     0x4db26158u, 0x5005713cu, 0xedb88320u, 0xf00f9344u, 0xd6d6a3e8u, 0xcb61b38cu,
                                     0x9b64c2b0u, 0x86d3d2d4u, 0xa00ae278u, 0xbdbdf21cu};
    const unsigned char *p = data;
    uint32_t c = 0xffffffffu;
    for (size_t i = 0; i < n; i++) {
        c = tbl[(c ^ p[i]) & 15] ^ (c >> 4);
        c = tbl[(c ^ (p[i] >> 4)) & 15] ^ (c >> 4);
    }
    return c ^ 0xffffffffu;
}

bool zip_is_zip(const void *data, size_t size) {
    return size >= 4 && rd32(data) == SIG_LOCAL;
}

static uint32_t hash_name(const char *s, size_t n) {
    uint32_t h = 2166136261u; /* FNV-1a */
    for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)s[i]) * 16777619u;
    return h;
}

void zip_close(zip_archive *z) {
    if (!z) return;
    free(z->slots);
    free(z->entries);
    memset(z, 0, sizeof *z);
}

const zip_entry *zip_find(const zip_archive *z, const char *name) {
    if (!z->slots) return NULL;
    size_t n = strlen(name), mask = z->slots_cap - 1;
    for (size_t i = hash_name(name, n) & mask;; i = (i + 1) & mask) {
        uint32_t s = z->slots[i];
        if (!s) return NULL;
        const zip_entry *e = &z->entries[s - 1];
        if (e->name_len == n && memcmp(e->name, name, n) == 0) return e;
    }
}

ldm_status zip_stored_data(const zip_archive *z, const zip_entry *e, const unsigned char **data) {
    *data = NULL;
    if (e->flags & 1u)
        return ldm_fail(LDM_ERR_UNSUPPORTED, "zip: entry '%.*s' is encrypted", (int)LDM_MIN(e->name_len, 200),
                        e->name);
    if (e->method != 0)
        return ldm_fail(LDM_ERR_UNSUPPORTED,
                        "zip: entry '%.*s' is compressed (method %u); torch.save stores entries uncompressed, "
                        "re-save the checkpoint with torch.save or convert it to safetensors",
                        (int)LDM_MIN(e->name_len, 200), e->name, e->method);
    *data = z->data + e->data_off;
    return LDM_OK;
}

/* Locates the (ZIP64) end records and returns the central directory's extent. */
static ldm_status find_directory(const unsigned char *d, size_t size, uint64_t *cd_off, uint64_t *cd_size,
                                 uint64_t *count) {
    if (size < 22) return ldm_fail(LDM_ERR_FORMAT, "zip: %zu bytes, too short for an archive", size);
    size_t lo = size - 22 > 65535 ? size - 22 - 65535 : 0, pos = size - 22 + 1;
    bool found = false;
    while (pos-- > lo) {
        if (rd32(d + pos) == SIG_EOCD && pos + 22 + (size_t)rd16(d + pos + 20) <= size) {
            found = true;
            break;
        }
    }
    if (!found) return ldm_fail(LDM_ERR_FORMAT, "zip: no end-of-central-directory record (truncated file?)");
    const unsigned char *e = d + pos;
    if (rd16(e + 4) != 0 || rd16(e + 6) != 0)
        return ldm_fail(LDM_ERR_UNSUPPORTED, "zip: multi-part archives are not supported");
    *count = rd16(e + 10);
    *cd_size = rd32(e + 12);
    *cd_off = rd32(e + 16);
    uint64_t dir_end = pos; /* the directory must end before the records that describe it */
    if (*count == 0xffffu || *cd_size == 0xffffffffu || *cd_off == 0xffffffffu) {
        if (pos < 20 || rd32(d + pos - 20) != SIG_LOCATOR64)
            return ldm_fail(LDM_ERR_FORMAT, "zip: saturated end record without a ZIP64 locator");
        uint64_t off64 = rd64(d + pos - 20 + 8);
        if (rd32(d + pos - 20 + 4) != 0 || rd32(d + pos - 20 + 16) > 1)
            return ldm_fail(LDM_ERR_UNSUPPORTED, "zip: multi-part archives are not supported");
        if (off64 > pos - 20 || pos - 20 - off64 < 56 || rd32(d + off64) != SIG_EOCD64)
            return ldm_fail(LDM_ERR_FORMAT, "zip: bad ZIP64 end record offset %llu", (unsigned long long)off64);
        const unsigned char *z = d + off64;
        if (rd32(z + 16) != 0 || rd32(z + 20) != 0)
            return ldm_fail(LDM_ERR_UNSUPPORTED, "zip: multi-part archives are not supported");
        *count = rd64(z + 32);
        *cd_size = rd64(z + 40);
        *cd_off = rd64(z + 48);
        dir_end = off64;
    }
    if (*cd_off > dir_end || *cd_size > dir_end - *cd_off)
        return ldm_fail(LDM_ERR_FORMAT, "zip: central directory (offset %llu, %llu bytes) lies outside the file",
                        (unsigned long long)*cd_off, (unsigned long long)*cd_size);
    if (*count > *cd_size / 46)
        return ldm_fail(LDM_ERR_FORMAT, "zip: %llu entries cannot fit in a %llu-byte central directory",
                        (unsigned long long)*count, (unsigned long long)*cd_size);
    return LDM_OK;
}

/* Replaces saturated 32-bit fields by their ZIP64 extra-field values (APPNOTE 4.5.3: present
 * in this order, and only those that are saturated). */
static ldm_status read_zip64_extra(const unsigned char *x, size_t xlen, uint64_t *usize, uint64_t *csize,
                                   uint64_t *lho, bool need_disk) {
    bool nu = *usize == 0xffffffffu, nc = *csize == 0xffffffffu, no = *lho == 0xffffffffu;
    if (!nu && !nc && !no && !need_disk) return LDM_OK;
    size_t p = 0;
    while (xlen - p >= 4) {
        uint16_t id = rd16(x + p), len = rd16(x + p + 2);
        if (len > xlen - p - 4) break;
        if (id == 0x0001) {
            const unsigned char *f = x + p + 4;
            size_t need = 8 * ((size_t)nu + nc + no) + 4 * (size_t)need_disk;
            if (len < need) break;
            if (nu) *usize = rd64(f), f += 8;
            if (nc) *csize = rd64(f), f += 8;
            if (no) *lho = rd64(f), f += 8;
            if (need_disk && rd32(f) != 0) return ldm_fail(LDM_ERR_UNSUPPORTED, "zip: multi-part archives are not supported");
            return LDM_OK;
        }
        p += 4 + (size_t)len;
    }
    return ldm_fail(LDM_ERR_FORMAT, "zip: an entry has saturated sizes but no usable ZIP64 extra field");
}

ldm_status zip_open(const void *data, size_t size, zip_archive *out) {
    memset(out, 0, sizeof *out);
    const unsigned char *d = data;
    uint64_t cd_off = 0, cd_size = 0, count = 0;
    ldm_status st = find_directory(d, size, &cd_off, &cd_size, &count);
    if (st) return st;
    if (count >= UINT32_MAX) return ldm_fail(LDM_ERR_FORMAT, "zip: too many entries");
    zip_entry *entries = calloc(count ? (size_t)count : 1, sizeof *entries);
    if (!entries) return ldm_fail(LDM_ERR_NO_MEMORY, "zip: out of memory");
    out->data = d;
    out->size = size;
    out->entries = entries;
    out->count = (size_t)count;
    out->slots_cap = 16;
    while (out->slots_cap < out->count * 2) out->slots_cap <<= 1;
    out->slots = calloc(out->slots_cap, sizeof *out->slots);
    if (!out->slots) {
        zip_close(out);
        return ldm_fail(LDM_ERR_NO_MEMORY, "zip: out of memory");
    }
    const unsigned char *cd = d + cd_off;
    size_t p = 0;
    for (size_t i = 0; i < out->count; i++) {
        if (cd_size - p < 46 || rd32(cd + p) != SIG_CENTRAL) {
            st = ldm_fail(LDM_ERR_FORMAT, "zip: central directory entry %zu is malformed or cut", i);
            break;
        }
        const unsigned char *h = cd + p;
        size_t nlen = rd16(h + 28), xlen = rd16(h + 30), clen = rd16(h + 32);
        if (cd_size - p - 46 < nlen + xlen + clen) {
            st = ldm_fail(LDM_ERR_FORMAT, "zip: central directory entry %zu runs past the directory", i);
            break;
        }
        zip_entry *e = &entries[i];
        e->name = (const char *)h + 46;
        e->name_len = nlen;
        e->flags = rd16(h + 8);
        e->method = rd16(h + 10);
        e->crc32 = rd32(h + 16);
        uint64_t csize = rd32(h + 20), usize = rd32(h + 24), lho = rd32(h + 42);
        if ((st = read_zip64_extra(h + 46 + nlen, xlen, &usize, &csize, &lho, rd16(h + 34) == 0xffffu))) break;
        if (rd16(h + 34) != 0 && rd16(h + 34) != 0xffffu) {
            st = ldm_fail(LDM_ERR_UNSUPPORTED, "zip: multi-part archives are not supported");
            break;
        }
        p += 46 + nlen + xlen + clen;
        /* The local header repeats the name; its own extra field (torch pads with it to align
         * the data) decides where the data begins. */
        if (lho > size || size - lho < 30 || rd32(d + lho) != SIG_LOCAL) {
            st = ldm_fail(LDM_ERR_FORMAT, "zip: entry '%.*s' has a bad local header offset %llu",
                          (int)LDM_MIN(nlen, 200), e->name, (unsigned long long)lho);
            break;
        }
        size_t lnlen = rd16(d + lho + 26), lxlen = rd16(d + lho + 28);
        if (lnlen != nlen || size - lho - 30 < lnlen + lxlen || memcmp(d + lho + 30, e->name, nlen) != 0) {
            st = ldm_fail(LDM_ERR_FORMAT, "zip: entry '%.*s': local header disagrees with the central directory",
                          (int)LDM_MIN(nlen, 200), e->name);
            break;
        }
        e->data_off = lho + 30 + lnlen + lxlen;
        e->size = csize;
        if (csize > size - e->data_off) {
            st = ldm_fail(LDM_ERR_FORMAT, "zip: entry '%.*s' (%llu bytes at offset %llu) runs past the end of the file",
                          (int)LDM_MIN(nlen, 200), e->name, (unsigned long long)csize,
                          (unsigned long long)e->data_off);
            break;
        }
        if (e->method == 0 && csize != usize) {
            st = ldm_fail(LDM_ERR_FORMAT, "zip: stored entry '%.*s' claims %llu bytes compressed but %llu uncompressed",
                          (int)LDM_MIN(nlen, 200), e->name, (unsigned long long)csize, (unsigned long long)usize);
            break;
        }
        size_t mask = out->slots_cap - 1, j = hash_name(e->name, nlen) & mask;
        while (out->slots[j]) {
            const zip_entry *o = &entries[out->slots[j] - 1];
            if (o->name_len == nlen && memcmp(o->name, e->name, nlen) == 0) {
                st = ldm_fail(LDM_ERR_FORMAT, "zip: duplicate entry '%.*s'", (int)LDM_MIN(nlen, 200), e->name);
                break;
            }
            j = (j + 1) & mask;
        }
        if (st) break;
        out->slots[j] = (uint32_t)(i + 1);
    }
    if (st) zip_close(out);
    return st;
}
