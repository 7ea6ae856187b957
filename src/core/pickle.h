/* The pickle inside a PyTorch checkpoint (data.pkl of a torch.save zip), read by a small stack
 * machine that understands only what torch checkpoints use: the protocol 2-5 opcodes for
 * primitives, tuples, lists, dicts and the memo; the tensor rebuild functions and typed storages
 * of torch._utils / torch; collections.OrderedDict; and a few inert metadata types (numpy
 * scalars, Lightning callbacks) that are represented as opaque values. Any other global is
 * refused with LDM_ERR_FORMAT; nothing named by the file is ever called or imported.
 * The evaluator never recurses, caps its object count, stack depth and memo size, and frees
 * everything on every path. */
#ifndef LDM_CORE_PICKLE_H
#define LDM_CORE_PICKLE_H

#include "common.h"
#include "dtype.h"

#define PK_MAX_DIMS 8

/* One tensor of the state dict: a view (offset, shape, strides, in elements) of a storage that
 * the checkpoint keeps as the zip entry "<archive>/data/<storage_key>". */
typedef struct pk_tensor {
    char *name;
    char *storage_key;
    ldm_dtype dtype;
    uint64_t storage_numel; /* elements the storage holds, as the pickle states it */
    uint64_t offset;
    int32_t ndim;
    int64_t shape[PK_MAX_DIMS], stride[PK_MAX_DIMS];
} pk_tensor;

typedef struct pk_state_dict {
    pk_tensor *tensors;
    size_t count;
    bool unwrapped; /* the tensors came from a nested "state_dict" entry (CompVis/Lightning .ckpt) */
} pk_state_dict;

/* Evaluates the pickle and collects the tensors of its top-level dict, or of the dict under its
 * "state_dict" key when there is one. Entries whose values are not tensors are skipped. */
ldm_status pk_load_state_dict(const void *pkl, size_t size, pk_state_dict *out);
void pk_state_dict_free(pk_state_dict *sd);

#endif
