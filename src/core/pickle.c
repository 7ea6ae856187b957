/* Restricted pickle evaluator for PyTorch checkpoints. Semantics follow CPython's
 * Lib/pickle.py _Unpickler (the stack, the mark stack, the memo) and torch/serialization.py
 * (persistent ids ('storage', <torch.XStorage>, key, location, numel) and
 * torch._utils._rebuild_tensor_v2(storage, offset, size, stride, requires_grad, hooks[, meta])).
 * Values live in an arena freed in one linear walk, so cyclic or deeply nested structures cost
 * nothing special; no function of the file is ever called: globals resolve to a fixed table. */
#include "pickle.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PK_MAX_OBJECTS ((size_t)1 << 21) /* an SD 1.x .ckpt builds ~40k, SDXL ~100k */
#define PK_MAX_STACK ((size_t)1 << 20)   /* values and marks; torch pickles stay below a few thousand */
#define PK_MAX_MEMO ((size_t)1 << 24)
#define PK_MAX_LINE 256 /* GLOBAL module/name lines */

typedef enum {
    PV_NONE,
    PV_BOOL,
    PV_INT,
    PV_BIGINT, /* LONG1/LONG4 wider than 64 bits: kept, never used as a number */
    PV_FLOAT,
    PV_STR,
    PV_BYTES,
    PV_TUPLE,
    PV_LIST,
    PV_DICT, /* dict or OrderedDict: items are key, value, key, value, ... */
    PV_SET,
    PV_GLOBAL,
    PV_STORAGE,
    PV_TENSOR,
    PV_INERT, /* an allowed metadata object (numpy scalar, Lightning callback): opaque */
} pv_kind;

typedef enum {
    G_REBUILD_TENSOR_V2,
    G_REBUILD_TENSOR,
    G_REBUILD_PARAMETER,
    G_REBUILD_PARAMETER_WITH_STATE,
    G_ORDERED_DICT,
    G_STORAGE,
    G_INERT,
} global_id;

typedef struct pv pv;

typedef struct pk_view {
    pv *storage;
    uint64_t offset;
    int32_t ndim;
    int64_t shape[PK_MAX_DIMS], stride[PK_MAX_DIMS];
} pk_view;

struct pv {
    uint8_t kind;
    union {
        int64_t i; /* BOOL, INT */
        double f;
        struct {
            const char *p; /* inside the pickle buffer, not NUL-terminated */
            size_t n;
        } s;
        struct {
            pv **v;
            size_t n, cap;
        } seq;
        struct {
            uint8_t id;
            uint8_t dtype;
        } g;
        struct {
            const char *key;
            size_t key_len;
            uint64_t numel;
            uint8_t dtype;
        } storage;
        pk_view *view;
    } u;
};

typedef struct pv_chunk {
    struct pv_chunk *next;
    size_t used;
    pv nodes[512];
} pv_chunk;

typedef struct {
    const unsigned char *p;
    size_t size, pos, op_pos;
    pv_chunk *chunks;
    size_t n_objects;
    pv **stack;
    size_t sp, stack_cap;
    size_t *marks;
    size_t n_marks, marks_cap;
    pv **memo;
    size_t memo_cap, memo_len; /* memo_len: distinct indices set, as len(memo) in pickle.py */
    pv none_value;
} vm;

/* ---- allocation ------------------------------------------------------------------------- */

static ldm_status fail_at(vm *m, ldm_status st, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static ldm_status fail_at(vm *m, ldm_status st, const char *fmt, ...) {
    char msg[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return ldm_fail(st, "pickle: %s (opcode at byte %zu)", msg, m->op_pos);
}

static pv *new_pv(vm *m, pv_kind kind) {
    if (m->n_objects >= PK_MAX_OBJECTS) return NULL;
    if (!m->chunks || m->chunks->used == sizeof m->chunks->nodes / sizeof m->chunks->nodes[0]) {
        pv_chunk *c = malloc(sizeof *c);
        if (!c) return NULL;
        c->next = m->chunks;
        c->used = 0;
        m->chunks = c;
    }
    pv *v = &m->chunks->nodes[m->chunks->used++];
    memset(v, 0, sizeof *v);
    v->kind = (uint8_t)kind;
    m->n_objects++;
    return v;
}

static ldm_status oom_or_limit(vm *m) {
    if (m->n_objects >= PK_MAX_OBJECTS)
        return fail_at(m, LDM_ERR_FORMAT, "more than %zu objects", PK_MAX_OBJECTS);
    return fail_at(m, LDM_ERR_NO_MEMORY, "out of memory");
}

static void vm_free(vm *m) {
    while (m->chunks) {
        pv_chunk *c = m->chunks;
        for (size_t i = 0; i < c->used; i++) {
            pv *v = &c->nodes[i];
            if (v->kind == PV_TUPLE || v->kind == PV_LIST || v->kind == PV_DICT || v->kind == PV_SET) free(v->u.seq.v);
            else if (v->kind == PV_TENSOR) free(v->u.view);
        }
        m->chunks = c->next;
        free(c);
    }
    free(m->stack);
    free(m->marks);
    free(m->memo);
}

static bool seq_push(pv *s, pv *item) {
    if (s->u.seq.n == s->u.seq.cap) {
        size_t nc = s->u.seq.cap ? s->u.seq.cap * 2 : 4;
        pv **nv = realloc(s->u.seq.v, nc * sizeof *nv);
        if (!nv) return false;
        s->u.seq.v = nv;
        s->u.seq.cap = nc;
    }
    s->u.seq.v[s->u.seq.n++] = item;
    return true;
}

/* ---- stack ------------------------------------------------------------------------------ */

static size_t frame_base(const vm *m) { return m->n_marks ? m->marks[m->n_marks - 1] : 0; }

static ldm_status push(vm *m, pv *v) {
    if (!v) return oom_or_limit(m);
    if (m->sp == m->stack_cap) {
        if (m->stack_cap >= PK_MAX_STACK) return fail_at(m, LDM_ERR_FORMAT, "stack deeper than %zu", PK_MAX_STACK);
        size_t nc = m->stack_cap ? m->stack_cap * 2 : 64;
        pv **ns = realloc(m->stack, nc * sizeof *ns);
        if (!ns) return fail_at(m, LDM_ERR_NO_MEMORY, "out of memory");
        m->stack = ns;
        m->stack_cap = nc;
    }
    m->stack[m->sp++] = v;
    return LDM_OK;
}

/* Pops one value of the current mark frame (pickle.py: self.stack.pop()). */
static ldm_status pop(vm *m, pv **out) {
    if (m->sp <= frame_base(m)) return fail_at(m, LDM_ERR_FORMAT, "stack underflow");
    *out = m->stack[--m->sp];
    return LDM_OK;
}

static ldm_status top(vm *m, pv **out) {
    if (m->sp <= frame_base(m)) return fail_at(m, LDM_ERR_FORMAT, "stack underflow");
    *out = m->stack[m->sp - 1];
    return LDM_OK;
}

/* Pops everything above the last mark (pickle.py pop_mark): items [*first, m->sp) stay readable
 * in m->stack until the next push. */
static ldm_status pop_mark(vm *m, size_t *first, size_t *count) {
    if (!m->n_marks) return fail_at(m, LDM_ERR_FORMAT, "no MARK to pop");
    *first = m->marks[--m->n_marks];
    *count = m->sp - *first;
    m->sp = *first;
    return LDM_OK;
}

static ldm_status memo_put(vm *m, uint64_t idx, pv *v) {
    /* pickle.py numbers memo entries 0, 1, 2, ... as it writes them, so an index can never
     * exceed the opcodes read so far: larger ones are lies that would only cost memory. */
    if (idx > m->op_pos || idx >= PK_MAX_MEMO)
        return fail_at(m, LDM_ERR_FORMAT, "memo index %llu out of range", (unsigned long long)idx);
    if (idx >= m->memo_cap) {
        size_t nc = m->memo_cap ? m->memo_cap : 64;
        while (nc <= idx) nc *= 2;
        pv **nm = realloc(m->memo, nc * sizeof *nm);
        if (!nm) return fail_at(m, LDM_ERR_NO_MEMORY, "out of memory");
        memset(nm + m->memo_cap, 0, (nc - m->memo_cap) * sizeof *nm);
        m->memo = nm;
        m->memo_cap = nc;
    }
    if (!m->memo[idx]) m->memo_len++;
    m->memo[idx] = v;
    return LDM_OK;
}

static ldm_status memo_get(vm *m, uint64_t idx) {
    if (idx >= m->memo_cap || !m->memo[idx])
        return fail_at(m, LDM_ERR_FORMAT, "memo index %llu was never set", (unsigned long long)idx);
    return push(m, m->memo[idx]);
}

/* ---- reading ---------------------------------------------------------------------------- */

static ldm_status need(vm *m, size_t n) {
    if (m->size - m->pos < n) return fail_at(m, LDM_ERR_FORMAT, "truncated (needs %zu more bytes)", n);
    return LDM_OK;
}

static uint64_t rd_le(const unsigned char *p, int n) {
    uint64_t v = 0;
    for (int i = n - 1; i >= 0; i--) v = (v << 8) | p[i];
    return v;
}

static ldm_status push_int(vm *m, int64_t i) {
    pv *v = new_pv(m, PV_INT);
    if (v) v->u.i = i;
    return push(m, v);
}

static ldm_status push_bytes(vm *m, pv_kind kind, size_t len_bytes) {
    ldm_status st = need(m, len_bytes);
    if (st) return st;
    uint64_t n = rd_le(m->p + m->pos, (int)len_bytes);
    m->pos += len_bytes;
    if (n > m->size - m->pos) return fail_at(m, LDM_ERR_FORMAT, "string of %llu bytes runs past the end", (unsigned long long)n);
    pv *v = new_pv(m, kind);
    if (v) {
        v->u.s.p = (const char *)m->p + m->pos;
        v->u.s.n = (size_t)n;
    }
    m->pos += (size_t)n;
    return push(m, v);
}

/* LONG1 / LONG4: little-endian two's complement of n bytes. */
static ldm_status push_long(vm *m, size_t len_bytes) {
    ldm_status st = need(m, len_bytes);
    if (st) return st;
    uint64_t n = rd_le(m->p + m->pos, (int)len_bytes);
    m->pos += len_bytes;
    if (n > m->size - m->pos) return fail_at(m, LDM_ERR_FORMAT, "long of %llu bytes runs past the end", (unsigned long long)n);
    const unsigned char *b = m->p + m->pos;
    m->pos += (size_t)n;
    if (n > 8) return push(m, new_pv(m, PV_BIGINT));
    uint64_t u = n ? rd_le(b, (int)n) : 0;
    if (n && n < 8 && (b[n - 1] & 0x80)) u |= ~(uint64_t)0 << (8 * n); /* sign-extend */
    int64_t i;
    memcpy(&i, &u, sizeof i);
    return push_int(m, i);
}

static bool str_eq(const pv *v, const char *s) {
    size_t n = strlen(s);
    return v->kind == PV_STR && v->u.s.n == n && memcmp(v->u.s.p, s, n) == 0;
}

/* ---- globals ---------------------------------------------------------------------------- */

typedef struct {
    const char *module, *name;
    global_id id;
    ldm_dtype dtype;
} global_def;

static const global_def allowed_globals[] = {
    {"torch._utils", "_rebuild_tensor_v2", G_REBUILD_TENSOR_V2, 0},
    {"torch._utils", "_rebuild_tensor", G_REBUILD_TENSOR, 0},
    {"torch._utils", "_rebuild_parameter", G_REBUILD_PARAMETER, 0},
    {"torch._utils", "_rebuild_parameter_with_state", G_REBUILD_PARAMETER_WITH_STATE, 0},
    {"collections", "OrderedDict", G_ORDERED_DICT, 0},
    {"torch", "FloatStorage", G_STORAGE, LDM_DT_F32},
    {"torch", "HalfStorage", G_STORAGE, LDM_DT_F16},
    {"torch", "BFloat16Storage", G_STORAGE, LDM_DT_BF16},
    {"torch", "DoubleStorage", G_STORAGE, LDM_DT_F64},
    {"torch", "LongStorage", G_STORAGE, LDM_DT_I64},
    {"torch", "IntStorage", G_STORAGE, LDM_DT_I32},
    {"torch", "ShortStorage", G_STORAGE, LDM_DT_I16},
    {"torch", "CharStorage", G_STORAGE, LDM_DT_I8},
    {"torch", "ByteStorage", G_STORAGE, LDM_DT_U8},
    {"torch", "BoolStorage", G_STORAGE, LDM_DT_BOOL},
    /* Inert metadata found beside the weights in real .ckpt files (the set A1111's
     * modules/safe.py admits): built as opaque values, never called. */
    {"numpy.core.multiarray", "scalar", G_INERT, 0},
    {"numpy.core.multiarray", "_reconstruct", G_INERT, 0},
    {"numpy", "dtype", G_INERT, 0},
    {"numpy", "ndarray", G_INERT, 0},
    {"_codecs", "encode", G_INERT, 0},
    {"__builtin__", "set", G_INERT, 0},
    {"builtins", "set", G_INERT, 0},
    {"builtins", "frozenset", G_INERT, 0},
    {"torch", "Size", G_INERT, 0},
    {"torch", "device", G_INERT, 0},
    {"argparse", "Namespace", G_INERT, 0},
};

/* torch functions that build tensors this reader cannot represent. */
static const char *const unsupported_torch[] = {
    "_rebuild_tensor_v3",  "_rebuild_qtensor",     "_rebuild_sparse_tensor", "_rebuild_nested_tensor",
    "_rebuild_device_tensor_from_numpy", "_rebuild_meta_tensor_no_storage", "_rebuild_wrapper_subclass",
    "_rebuild_from_type_v2", "_rebuild_xla_tensor", "_rebuild_mlc_tensor", "_rebuild_sparse_csr_tensor",
};

static ldm_status resolve_global(vm *m, const char *mod, size_t mod_len, const char *name, size_t name_len) {
    for (size_t i = 0; i < sizeof allowed_globals / sizeof allowed_globals[0]; i++) {
        const global_def *g = &allowed_globals[i];
        if (strlen(g->module) == mod_len && memcmp(g->module, mod, mod_len) == 0 && strlen(g->name) == name_len &&
            memcmp(g->name, name, name_len) == 0) {
            pv *v = new_pv(m, PV_GLOBAL);
            if (v) {
                v->u.g.id = (uint8_t)g->id;
                v->u.g.dtype = (uint8_t)g->dtype;
            }
            return push(m, v);
        }
    }
    /* Lightning training state (ModelCheckpoint callbacks, ...) in CompVis checkpoints; ComfyUI
     * likewise maps every pytorch_lightning class to an empty object. */
    if (mod_len >= 18 && memcmp(mod, "pytorch_lightning.", 18) == 0) {
        pv *v = new_pv(m, PV_GLOBAL);
        if (v) v->u.g.id = G_INERT;
        return push(m, v);
    }
    int ml = (int)LDM_MIN(mod_len, 100), nl = (int)LDM_MIN(name_len, 100);
    if (mod_len >= 5 && memcmp(mod, "torch", 5) == 0)
        for (size_t i = 0; i < sizeof unsupported_torch / sizeof unsupported_torch[0]; i++)
            if (strlen(unsupported_torch[i]) == name_len && memcmp(unsupported_torch[i], name, name_len) == 0)
                return fail_at(m, LDM_ERR_UNSUPPORTED,
                               "'%.*s.%.*s' rebuilds a kind of tensor this reader does not support (quantized, "
                               "sparse, numpy-backed or subclassed); save plain dense tensors",
                               ml, mod, nl, name);
    return fail_at(m, LDM_ERR_FORMAT,
                   "refusing global '%.*s.%.*s': a checkpoint may only name torch's tensor rebuild functions and "
                   "storage types, collections.OrderedDict and inert numpy/Lightning metadata (nothing in a "
                   "checkpoint is ever executed)",
                   ml, mod, nl, name);
}

/* GLOBAL: "module\nname\n" */
static ldm_status read_line(vm *m, const char **s, size_t *n) {
    const unsigned char *start = m->p + m->pos;
    size_t left = m->size - m->pos, lim = LDM_MIN(left, (size_t)PK_MAX_LINE + 1);
    const unsigned char *nl = memchr(start, '\n', lim);
    if (!nl) return fail_at(m, LDM_ERR_FORMAT, "GLOBAL name is unterminated or longer than %d bytes", PK_MAX_LINE);
    *s = (const char *)start;
    *n = (size_t)(nl - start);
    m->pos += *n + 1;
    return LDM_OK;
}

/* ---- torch semantics -------------------------------------------------------------------- */

static bool as_int(const pv *v, int64_t *out) {
    if (v->kind != PV_INT) return false;
    *out = v->u.i;
    return true;
}

/* ('storage', <torch.XStorage>, key, location, numel) -> storage (torch/serialization.py
 * _load.persistent_load; the 6-element form with view metadata is the legacy format). */
static ldm_status persistent_load(vm *m, pv *pid) {
    if (pid->kind != PV_TUPLE || pid->u.seq.n < 1 || !str_eq(pid->u.seq.v[0], "storage"))
        return fail_at(m, LDM_ERR_FORMAT, "persistent id is not a ('storage', ...) tuple");
    pv **a = pid->u.seq.v;
    if (pid->u.seq.n != 5)
        return fail_at(m, LDM_ERR_FORMAT, "storage persistent id has %zu fields (5 expected)", pid->u.seq.n);
    int64_t numel;
    if (a[1]->kind != PV_GLOBAL || a[1]->u.g.id != G_STORAGE)
        return fail_at(m, LDM_ERR_FORMAT, "persistent id does not name a torch storage type");
    if (a[2]->kind != PV_STR || a[3]->kind != PV_STR || !as_int(a[4], &numel) || numel < 0)
        return fail_at(m, LDM_ERR_FORMAT, "storage persistent id has a bad key, location or size");
    pv *s = new_pv(m, PV_STORAGE);
    if (s) {
        s->u.storage.key = a[2]->u.s.p;
        s->u.storage.key_len = a[2]->u.s.n;
        s->u.storage.numel = (uint64_t)numel;
        s->u.storage.dtype = a[1]->u.g.dtype;
    }
    return push(m, s);
}

static ldm_status int_tuple(vm *m, const pv *t, int64_t *out, int32_t *n, const char *what) {
    if (t->kind != PV_TUPLE) return fail_at(m, LDM_ERR_FORMAT, "tensor %s is not a tuple", what);
    if (t->u.seq.n > PK_MAX_DIMS)
        return fail_at(m, LDM_ERR_FORMAT, "tensor has %zu dimensions (max %d)", t->u.seq.n, PK_MAX_DIMS);
    for (size_t i = 0; i < t->u.seq.n; i++)
        if (!as_int(t->u.seq.v[i], &out[i]) || out[i] < 0)
            return fail_at(m, LDM_ERR_FORMAT, "tensor %s holds a negative or non-integer value", what);
    *n = (int32_t)t->u.seq.n;
    return LDM_OK;
}

/* _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad, backward_hooks[,
 * metadata]) and the older _rebuild_tensor(storage, storage_offset, size, stride). */
static ldm_status rebuild_tensor(vm *m, const pv *args, bool v2) {
    size_t n = args->u.seq.n;
    if (v2 ? (n != 6 && n != 7) : n != 4)
        return fail_at(m, LDM_ERR_FORMAT, "tensor rebuild called with %zu arguments", n);
    pv **a = args->u.seq.v;
    int64_t offset;
    if (a[0]->kind != PV_STORAGE) return fail_at(m, LDM_ERR_FORMAT, "tensor rebuilt from something not a storage");
    if (!as_int(a[1], &offset) || offset < 0) return fail_at(m, LDM_ERR_FORMAT, "tensor has a bad storage offset");
    pk_view *view = calloc(1, sizeof *view);
    if (!view) return fail_at(m, LDM_ERR_NO_MEMORY, "out of memory");
    int32_t nd_stride = 0;
    ldm_status st = int_tuple(m, a[2], view->shape, &view->ndim, "size");
    if (!st) st = int_tuple(m, a[3], view->stride, &nd_stride, "stride");
    if (!st && nd_stride != view->ndim)
        st = fail_at(m, LDM_ERR_FORMAT, "tensor has %d sizes but %d strides", view->ndim, nd_stride);
    pv *t = st ? NULL : new_pv(m, PV_TENSOR);
    if (st || !t) {
        free(view);
        return st ? st : oom_or_limit(m);
    }
    view->storage = a[0];
    view->offset = (uint64_t)offset;
    t->u.view = view;
    return push(m, t);
}

static ldm_status reduce(vm *m, pv *func, pv *args) {
    if (args->kind != PV_TUPLE) return fail_at(m, LDM_ERR_FORMAT, "REDUCE arguments are not a tuple");
    if (func->kind == PV_INERT) return push(m, new_pv(m, PV_INERT));
    if (func->kind != PV_GLOBAL) return fail_at(m, LDM_ERR_FORMAT, "REDUCE of something not callable");
    switch ((global_id)func->u.g.id) {
    case G_REBUILD_TENSOR_V2:
    case G_REBUILD_TENSOR:
        return rebuild_tensor(m, args, func->u.g.id == G_REBUILD_TENSOR_V2);
    case G_REBUILD_PARAMETER:
    case G_REBUILD_PARAMETER_WITH_STATE:
        /* (data, requires_grad, backward_hooks[, state]): the parameter is its data */
        if (args->u.seq.n != (func->u.g.id == G_REBUILD_PARAMETER ? 3u : 4u) || args->u.seq.v[0]->kind != PV_TENSOR)
            return fail_at(m, LDM_ERR_FORMAT, "bad _rebuild_parameter arguments");
        return push(m, args->u.seq.v[0]);
    case G_ORDERED_DICT:
        /* torch pickles OrderedDict() and fills it with SETITEMS */
        if (args->u.seq.n != 0) return fail_at(m, LDM_ERR_FORMAT, "OrderedDict called with arguments");
        return push(m, new_pv(m, PV_DICT));
    case G_INERT:
        return push(m, new_pv(m, PV_INERT));
    case G_STORAGE:
    default:
        return fail_at(m, LDM_ERR_FORMAT, "a storage type is only valid inside a persistent id");
    }
}

/* ---- the machine ------------------------------------------------------------------------ */

static ldm_status make_seq(vm *m, pv_kind kind, size_t first, size_t count) {
    pv *t = new_pv(m, kind);
    if (!t) return oom_or_limit(m);
    if (count) {
        t->u.seq.v = malloc(count * sizeof *t->u.seq.v);
        if (!t->u.seq.v) return fail_at(m, LDM_ERR_NO_MEMORY, "out of memory");
        memcpy(t->u.seq.v, m->stack + first, count * sizeof *t->u.seq.v);
        t->u.seq.n = t->u.seq.cap = count;
    }
    return push(m, t);
}

/* Adds items [first, first+count) of the stack to container c (APPEND(S), SETITEM(S), ADDITEMS). */
static ldm_status extend(vm *m, pv *c, pv_kind want, size_t first, size_t count) {
    if (c->kind == PV_INERT) return LDM_OK;
    if (c->kind != want)
        return fail_at(m, LDM_ERR_FORMAT, "%s applied to a value that is not a %s",
                       want == PV_DICT ? "SETITEM" : want == PV_LIST ? "APPEND" : "ADDITEMS",
                       want == PV_DICT ? "dict" : want == PV_LIST ? "list" : "set");
    if (want == PV_DICT && (count & 1)) return fail_at(m, LDM_ERR_FORMAT, "SETITEMS with an odd number of values");
    for (size_t i = 0; i < count; i++)
        if (!seq_push(c, m->stack[first + i])) return fail_at(m, LDM_ERR_NO_MEMORY, "out of memory");
    return LDM_OK;
}

static ldm_status run(vm *m, pv **result) {
    ldm_status st = LDM_OK;
    pv *a = NULL, *b = NULL, *c = NULL;
    size_t first = 0, count = 0;
    while (!st) {
        m->op_pos = m->pos;
        if (m->pos >= m->size) return fail_at(m, LDM_ERR_FORMAT, "truncated: no STOP opcode");
        unsigned char op = m->p[m->pos++];
        switch (op) {
        case 0x80: /* PROTO */
            if (!(st = need(m, 1)) && m->p[m->pos++] > 5)
                st = fail_at(m, LDM_ERR_UNSUPPORTED, "pickle protocol %u (max 5)", m->p[m->pos - 1]);
            break;
        case 0x95: /* FRAME: a length prefix only */
            if (!(st = need(m, 8))) m->pos += 8;
            break;
        case '.': /* STOP */
            if ((st = pop(m, result))) return st;
            return LDM_OK;
        case '(': /* MARK */
            if (m->n_marks == m->marks_cap) {
                if (m->marks_cap >= PK_MAX_STACK) return fail_at(m, LDM_ERR_FORMAT, "more than %zu marks", PK_MAX_STACK);
                size_t nc = m->marks_cap ? m->marks_cap * 2 : 32;
                size_t *nm = realloc(m->marks, nc * sizeof *nm);
                if (!nm) return fail_at(m, LDM_ERR_NO_MEMORY, "out of memory");
                m->marks = nm;
                m->marks_cap = nc;
            }
            m->marks[m->n_marks++] = m->sp;
            break;
        case '0': /* POP */
            if (m->sp > frame_base(m)) m->sp--;
            else st = pop_mark(m, &first, &count);
            break;
        case '1': /* POP_MARK */
            st = pop_mark(m, &first, &count);
            break;
        case '2': /* DUP */
            if (!(st = top(m, &a))) st = push(m, a);
            break;
        case 'N': /* NONE */
            st = push(m, &m->none_value);
            break;
        case 0x88: /* NEWTRUE */
        case 0x89: /* NEWFALSE */
            if ((a = new_pv(m, PV_BOOL))) a->u.i = op == 0x88;
            st = push(m, a);
            break;
        case 'K': /* BININT1 */
            if (!(st = need(m, 1))) st = push_int(m, m->p[m->pos++]);
            break;
        case 'M': /* BININT2 */
            if (!(st = need(m, 2))) {
                st = push_int(m, (int64_t)rd_le(m->p + m->pos, 2));
                m->pos += 2;
            }
            break;
        case 'J': /* BININT: signed 32-bit */
            if (!(st = need(m, 4))) {
                st = push_int(m, (int32_t)(uint32_t)rd_le(m->p + m->pos, 4));
                m->pos += 4;
            }
            break;
        case 0x8a: /* LONG1 */
            st = push_long(m, 1);
            break;
        case 0x8b: /* LONG4 */
            st = push_long(m, 4);
            break;
        case 'G': /* BINFLOAT: big-endian double */
            if (!(st = need(m, 8))) {
                uint64_t u = 0;
                for (int i = 0; i < 8; i++) u = (u << 8) | m->p[m->pos + i];
                m->pos += 8;
                if ((a = new_pv(m, PV_FLOAT))) memcpy(&a->u.f, &u, sizeof u);
                st = push(m, a);
            }
            break;
        case 0x8c: /* SHORT_BINUNICODE */
        case 'U':  /* SHORT_BINSTRING */
            st = push_bytes(m, PV_STR, 1);
            break;
        case 'X': /* BINUNICODE */
        case 'T': /* BINSTRING */
            st = push_bytes(m, PV_STR, 4);
            break;
        case 0x8d: /* BINUNICODE8 */
            st = push_bytes(m, PV_STR, 8);
            break;
        case 'C': /* SHORT_BINBYTES */
            st = push_bytes(m, PV_BYTES, 1);
            break;
        case 'B': /* BINBYTES */
            st = push_bytes(m, PV_BYTES, 4);
            break;
        case 0x8e: /* BINBYTES8 */
        case 0x96: /* BYTEARRAY8 */
            st = push_bytes(m, PV_BYTES, 8);
            break;
        case ')': /* EMPTY_TUPLE */
            st = push(m, new_pv(m, PV_TUPLE));
            break;
        case ']': /* EMPTY_LIST */
            st = push(m, new_pv(m, PV_LIST));
            break;
        case '}': /* EMPTY_DICT */
            st = push(m, new_pv(m, PV_DICT));
            break;
        case 0x8f: /* EMPTY_SET */
            st = push(m, new_pv(m, PV_SET));
            break;
        case 't': /* TUPLE */
        case 'l': /* LIST */
        case 'd': /* DICT */
        case 0x91: /* FROZENSET */
            if ((st = pop_mark(m, &first, &count))) break;
            if (op == 'd' && (count & 1)) {
                st = fail_at(m, LDM_ERR_FORMAT, "DICT with an odd number of values");
                break;
            }
            st = make_seq(m, op == 't' ? PV_TUPLE : op == 'l' ? PV_LIST : op == 'd' ? PV_DICT : PV_SET, first, count);
            break;
        case 0x85: /* TUPLE1 */
        case 0x86: /* TUPLE2 */
        case 0x87: /* TUPLE3 */
            count = (size_t)(op - 0x84);
            if (m->sp - frame_base(m) < count) {
                st = fail_at(m, LDM_ERR_FORMAT, "stack underflow");
                break;
            }
            m->sp -= count;
            st = make_seq(m, PV_TUPLE, m->sp, count);
            break;
        case 'a': /* APPEND */
            if (!(st = pop(m, &a)) && !(st = top(m, &b))) st = extend(m, b, PV_LIST, m->sp, 1);
            break;
        case 's': /* SETITEM */
            if (!(st = pop(m, &a)) && !(st = pop(m, &b)) && !(st = top(m, &c))) st = extend(m, c, PV_DICT, m->sp, 2);
            break;
        case 'e':  /* APPENDS */
        case 'u':  /* SETITEMS */
        case 0x90: /* ADDITEMS */
            if (!(st = pop_mark(m, &first, &count)) && !(st = top(m, &c)))
                st = extend(m, c, op == 'e' ? PV_LIST : op == 'u' ? PV_DICT : PV_SET, first, count);
            break;
        case 'q': /* BINPUT */
        case 'r': /* LONG_BINPUT */
            if ((st = need(m, op == 'q' ? 1 : 4)) || (st = top(m, &a))) break;
            st = memo_put(m, rd_le(m->p + m->pos, op == 'q' ? 1 : 4), a);
            m->pos += op == 'q' ? 1 : 4;
            break;
        case 0x94: /* MEMOIZE */
            if (!(st = top(m, &a))) st = memo_put(m, m->memo_len, a);
            break;
        case 'h': /* BINGET */
        case 'j': /* LONG_BINGET */
            if ((st = need(m, op == 'h' ? 1 : 4))) break;
            st = memo_get(m, rd_le(m->p + m->pos, op == 'h' ? 1 : 4));
            m->pos += op == 'h' ? 1 : 4;
            break;
        case 'c': { /* GLOBAL */
            const char *mod = NULL, *name = NULL;
            size_t ml = 0, nl = 0;
            if (!(st = read_line(m, &mod, &ml)) && !(st = read_line(m, &name, &nl)))
                st = resolve_global(m, mod, ml, name, nl);
            break;
        }
        case 0x93: /* STACK_GLOBAL */
            if ((st = pop(m, &b)) || (st = pop(m, &a))) break;
            if (a->kind != PV_STR || b->kind != PV_STR) {
                st = fail_at(m, LDM_ERR_FORMAT, "STACK_GLOBAL of non-strings");
                break;
            }
            st = resolve_global(m, a->u.s.p, a->u.s.n, b->u.s.p, b->u.s.n);
            break;
        case 'R': /* REDUCE */
            if (!(st = pop(m, &b)) && !(st = pop(m, &a))) st = reduce(m, a, b);
            break;
        case 0x81: /* NEWOBJ: cls.__new__(cls, *args) */
        case 0x92: /* NEWOBJ_EX */
            if (op == 0x92 && (st = pop(m, &c))) break;
            if ((st = pop(m, &b)) || (st = pop(m, &a))) break;
            if (a->kind == PV_GLOBAL && a->u.g.id == G_ORDERED_DICT) st = push(m, new_pv(m, PV_DICT));
            else if (a->kind == PV_INERT || (a->kind == PV_GLOBAL && a->u.g.id == G_INERT))
                st = push(m, new_pv(m, PV_INERT));
            else st = fail_at(m, LDM_ERR_FORMAT, "NEWOBJ of a class that is not allowed");
            break;
        case 'b': /* BUILD: state on a dict (OrderedDict._metadata) or an inert object only */
            if ((st = pop(m, &a)) || (st = top(m, &b))) break;
            if (b->kind != PV_DICT && b->kind != PV_INERT)
                st = fail_at(m, LDM_ERR_FORMAT, "BUILD on a value that takes no state");
            break;
        case 'Q': /* BINPERSID */
            if (!(st = pop(m, &a))) st = persistent_load(m, a);
            break;
        default: {
            static const char *const names[][2] = {
                {"P", "PERSID"}, {"i", "INST"},  {"o", "OBJ"},    {"I", "INT"},     {"L", "LONG"},
                {"F", "FLOAT"},  {"S", "STRING"}, {"V", "UNICODE"}, {"p", "PUT"},    {"g", "GET"},
                {"\x82", "EXT1"}, {"\x83", "EXT2"}, {"\x84", "EXT4"}, {"\x97", "NEXT_BUFFER"},
                {"\x98", "READONLY_BUFFER"},
            };
            for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
                if ((unsigned char)names[i][0][0] == op)
                    return fail_at(m, LDM_ERR_FORMAT, "opcode %s (0x%02x) is not used by torch checkpoints", names[i][1], op);
            return fail_at(m, LDM_ERR_FORMAT, "unknown opcode 0x%02x", op);
        }
        }
    }
    return st;
}

/* ---- extraction ------------------------------------------------------------------------- */

static const pv *dict_get(const pv *d, const char *key) {
    const pv *found = NULL;
    for (size_t i = 0; i + 1 < d->u.seq.n; i += 2)
        if (str_eq(d->u.seq.v[i], key)) found = d->u.seq.v[i + 1]; /* the last assignment wins */
    return found;
}

static char *dup_n(const char *s, size_t n) {
    char *c = malloc(n + 1);
    if (c) {
        memcpy(c, s, n);
        c[n] = '\0';
    }
    return c;
}

void pk_state_dict_free(pk_state_dict *sd) {
    if (!sd) return;
    for (size_t i = 0; i < sd->count; i++) {
        free(sd->tensors[i].name);
        free(sd->tensors[i].storage_key);
    }
    free(sd->tensors);
    memset(sd, 0, sizeof *sd);
}

static ldm_status collect(const pv *root, pk_state_dict *out) {
    if (root->kind != PV_DICT)
        return ldm_fail(LDM_ERR_FORMAT, "pickle: the checkpoint's top-level object is not a dict");
    const pv *sd = dict_get(root, "state_dict");
    if (sd && sd->kind == PV_DICT) {
        root = sd;
        out->unwrapped = true;
    }
    size_t n = 0;
    for (size_t i = 1; i < root->u.seq.n; i += 2) n += root->u.seq.v[i]->kind == PV_TENSOR;
    out->tensors = calloc(n ? n : 1, sizeof *out->tensors);
    if (!out->tensors) return ldm_fail(LDM_ERR_NO_MEMORY, "pickle: out of memory");
    for (size_t i = 0; i + 1 < root->u.seq.n; i += 2) {
        const pv *k = root->u.seq.v[i], *v = root->u.seq.v[i + 1];
        if (v->kind != PV_TENSOR) continue;
        if (k->kind != PV_STR || memchr(k->u.s.p, '\0', k->u.s.n))
            return ldm_fail(LDM_ERR_FORMAT, "pickle: a tensor's state-dict key is not a string");
        const pk_view *w = v->u.view;
        const pv *s = w->storage;
        if (memchr(s->u.storage.key, '\0', s->u.storage.key_len))
            return ldm_fail(LDM_ERR_FORMAT, "pickle: a storage key contains a NUL byte");
        pk_tensor *t = &out->tensors[out->count];
        t->name = dup_n(k->u.s.p, k->u.s.n);
        t->storage_key = dup_n(s->u.storage.key, s->u.storage.key_len);
        out->count++;
        if (!t->name || !t->storage_key) return ldm_fail(LDM_ERR_NO_MEMORY, "pickle: out of memory");
        t->dtype = (ldm_dtype)s->u.storage.dtype;
        t->storage_numel = s->u.storage.numel;
        t->offset = w->offset;
        t->ndim = w->ndim;
        memcpy(t->shape, w->shape, sizeof t->shape);
        memcpy(t->stride, w->stride, sizeof t->stride);
    }
    return LDM_OK;
}

ldm_status pk_load_state_dict(const void *pkl, size_t size, pk_state_dict *out) {
    memset(out, 0, sizeof *out);
    vm m;
    memset(&m, 0, sizeof m);
    m.p = pkl;
    m.size = size;
    m.none_value.kind = PV_NONE;
    pv *root = NULL;
    ldm_status st = run(&m, &root);
    if (!st) st = collect(root, out);
    vm_free(&m);
    if (st) pk_state_dict_free(out);
    return st;
}
