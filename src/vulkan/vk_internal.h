/* Private declarations of the Vulkan backend: device, memory pools, command batching, pipelines
 * and the weight cache (vk_backend.c), the ops (vk_ops.c).
 *
 * Execution model: ops record compute dispatches into the current command buffer and return;
 * nothing waits for the device until a download (or a full staging area) needs it. Command
 * buffers rotate through VK_FRAMES frames and are submitted every VK_DISPATCHES_PER_SUBMIT
 * dispatches, so one UNet evaluation is a handful of submissions. All work goes to one queue; a
 * pipeline barrier is recorded before a command that touches memory an earlier, unbarriered
 * command wrote (or writes memory it read), so freed activation memory can be reused by later
 * commands immediately. */
#ifndef LDM_VK_INTERNAL_H
#define LDM_VK_INTERNAL_H

#include "core/backend.h"
#include "core/common.h"
#include "core/tensor.h"
#include "vk_shaders.h"

#include <vulkan/vulkan.h>

#define VK_FRAMES 3
#define VK_MAX_BINDINGS 4
#define VK_SETS_PER_FRAME 256
#define VK_DISPATCHES_PER_SUBMIT 64
#define VK_PUSH_BYTES 128
#define VK_MAX_SPEC 4

/* A device memory block with one buffer over all of it; sub-allocated first fit. */
typedef struct vk_block {
    VkDeviceMemory mem;
    VkBuffer buf;
    VkDeviceSize size, used;
    void *mapped; /* staging blocks only */
    VkDeviceSize *free_off, *free_len; /* free ranges, sorted by offset, coalesced */
    size_t nfree, capfree;
} vk_block;

typedef struct vk_alloc {
    vk_block *block;
    VkDeviceSize off, size;
} vk_alloc;

typedef struct vk_pool {
    const char *name;
    vk_block **blocks;
    size_t n, cap;
    VkDeviceSize block_size;
} vk_pool;

/* What a shader binds: a range of a block's buffer. */
typedef struct vk_view {
    vk_block *block;
    VkDeviceSize off, size;
} vk_view;

/* A weight uploaded once (converted to float32, or to float16 for the fp16 weight path), found
 * again by its host address and storage type. */
typedef struct vk_weight {
    const void *host; /* NULL: empty slot */
    size_t bytes;
    int32_t dtype;
    bool f16;      /* stored as float16 */
    bool f16_tried; /* made for an fp16 request: float32 only because a value exceeds the half range */
    int64_t numel;
    uint64_t fingerprint;
    vk_alloc a;
    uint64_t last_use;
} vk_weight;

typedef struct vk_pipeline {
    ldm_vk_shader_id shader;
    uint32_t nspec, spec[VK_MAX_SPEC];
    VkPipeline pipe;
    int nbind;
} vk_pipeline;

typedef struct vk_frame {
    VkCommandBuffer cb;
    VkFence fence;
    VkDescriptorPool dpool;
    uint32_t sets, dispatches;
    bool recording, pending;
    vk_block *staging;
    VkDeviceSize staging_used;
} vk_frame;

typedef struct vk_range {
    const vk_block *block;
    VkDeviceSize off, end;
} vk_range;

typedef struct vk_ranges {
    vk_range *r;
    size_t n, cap;
} vk_ranges;

typedef struct ldm_vk_backend {
    ldm_backend base; /* must stay first */
    VkInstance inst;
    VkDebugUtilsMessengerEXT messenger;
    bool validation;
    int validation_errors, validation_reported;
    char validation_first[512];
    VkPhysicalDevice phys;
    VkDevice dev;
    VkQueue queue;
    uint32_t qfam;
    char device_name[256];
    VkPhysicalDeviceType device_type;
    uint32_t subgroup_size;
    bool fp16_weights; /* linear/conv2d weights stored as float16 (storageBuffer16BitAccess on) */
    VkDeviceSize max_range;  /* maxStorageBufferRange (or a smaller forced window) */
    VkDeviceSize align;      /* minStorageBufferOffsetAlignment, at least 16 */
    VkDeviceSize max_alloc;  /* maxMemoryAllocationSize */
    VkDeviceSize budget;     /* bytes the pools may hold */
    VkDeviceSize pool_bytes; /* bytes the pools hold now */
    uint32_t shared_mem;     /* maxComputeSharedMemorySize */
    uint32_t max_groups[3];
    uint32_t mem_device, mem_staging;
    vk_pool act_pool, weight_pool;
    VkDescriptorSetLayout dsl[VK_MAX_BINDINGS + 1];
    VkPipelineLayout layout[VK_MAX_BINDINGS + 1];
    VkShaderModule modules[LDM_VK_SHADER_COUNT];
    VkPipelineCache pcache;
    vk_pipeline *pipes;
    size_t npipes, cappipes;
    VkCommandPool cmdpool;
    vk_frame frames[VK_FRAMES];
    int cur;
    VkDeviceSize staging_size;
    vk_ranges written, read; /* since the last barrier */
    vk_weight *wc;
    size_t wc_cap, wc_n;
    uint64_t tick;
    ldm_status sticky; /* a device loss or validation failure: every later op fails */
    /* counters, printed at destroy when LDM_VULKAN_STATS is set */
    uint64_t n_dispatch, n_submit, n_wait, n_barrier, upload_bytes, download_bytes, weight_bytes;
    double pipeline_seconds;
} ldm_vk_backend;

static inline ldm_vk_backend *vkb(ldm_backend *be) { return (ldm_vk_backend *)be; }

/* ---- vk_backend.c ---- */

/* Device storage of an activation tensor, or the cached device copy of a weight (uploaded on
 * first use). `what` names the argument in messages. */
LDM_INTERNAL ldm_status vk_view_of(ldm_vk_backend *b, const char *op, const char *what, const ldm_tensor *t,
                                   vk_view *out);
/* The device copy of a linear/conv2d weight: float16 (*f16 set) when the backend stores weights
 * as float16 and every value fits the half range, else as vk_view_of. */
LDM_INTERNAL ldm_status vk_matrix_view_of(ldm_vk_backend *b, const char *op, const char *what, const ldm_tensor *t,
                                          vk_view *out, bool *f16);
/* Records one dispatch of `shader` specialised by spec[0..nspec), binding views[0..nviews)
 * (in binding order; `writes` is a bit mask of the bindings written), with push constants. */
LDM_INTERNAL ldm_status vk_dispatch(ldm_vk_backend *b, ldm_vk_shader_id shader, const uint32_t *spec, uint32_t nspec,
                                    const vk_view *views, int nviews, unsigned writes, const void *push,
                                    uint32_t push_size, uint32_t gx, uint32_t gy, uint32_t gz);
/* Host upload into device storage. */
LDM_INTERNAL ldm_status vk_upload_bytes(ldm_vk_backend *b, const vk_view *dst, VkDeviceSize dst_off, const void *src,
                                        VkDeviceSize bytes, int32_t dtype);
/* Splits n work items over a 2-D grid of groups of `per_group` items (x first). */
LDM_INTERNAL ldm_status vk_grid(ldm_vk_backend *b, uint64_t items, uint32_t per_group, uint32_t *gx, uint32_t *gy);

/* ---- vk_ops.c ---- */
LDM_INTERNAL ldm_status vk_conv2d(ldm_backend *be, const ldm_tensor *x, const ldm_tensor *w, const ldm_tensor *b,
                                  const ldm_conv2d_params *p, ldm_tensor *y);
LDM_INTERNAL ldm_status vk_linear(ldm_backend *be, const ldm_tensor *x, const ldm_tensor *w, const ldm_tensor *b,
                                  ldm_tensor *y);
LDM_INTERNAL ldm_status vk_group_norm(ldm_backend *be, const ldm_tensor *x, const ldm_tensor *gamma,
                                      const ldm_tensor *beta, int32_t groups, float eps, int32_t silu, ldm_tensor *y);
LDM_INTERNAL ldm_status vk_layer_norm(ldm_backend *be, const ldm_tensor *x, const ldm_tensor *gamma,
                                      const ldm_tensor *beta, float eps, ldm_tensor *y);
LDM_INTERNAL ldm_status vk_attention(ldm_backend *be, const ldm_tensor *q, const ldm_tensor *k, const ldm_tensor *v,
                                     int32_t heads, float scale, int32_t causal, ldm_tensor *y);
LDM_INTERNAL ldm_status vk_unary(ldm_backend *be, ldm_unary_op op, const ldm_tensor *x, ldm_tensor *y);
LDM_INTERNAL ldm_status vk_geglu(ldm_backend *be, const ldm_tensor *x, ldm_tensor *y);
LDM_INTERNAL ldm_status vk_add(ldm_backend *be, const ldm_tensor *a, const ldm_tensor *b, ldm_tensor *y);
LDM_INTERNAL ldm_status vk_add_per_channel(ldm_backend *be, const ldm_tensor *x, const ldm_tensor *b, ldm_tensor *y);
LDM_INTERNAL ldm_status vk_scale(ldm_backend *be, const ldm_tensor *x, float s, ldm_tensor *y);
LDM_INTERNAL ldm_status vk_upsample_nearest2x(ldm_backend *be, const ldm_tensor *x, ldm_tensor *y);
LDM_INTERNAL ldm_status vk_concat_channels(ldm_backend *be, const ldm_tensor *a, const ldm_tensor *b, ldm_tensor *y);
LDM_INTERNAL ldm_status vk_nchw_to_nlc(ldm_backend *be, const ldm_tensor *x, ldm_tensor *y);
LDM_INTERNAL ldm_status vk_nlc_to_nchw(ldm_backend *be, const ldm_tensor *x, ldm_tensor *y);
LDM_INTERNAL ldm_status vk_embedding(ldm_backend *be, const ldm_tensor *weight, const int32_t *ids, int64_t n,
                                     ldm_tensor *y);

#endif
