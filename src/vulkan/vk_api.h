/* The Vulkan backend's entry points for the rest of the library (context selection, the device
 * list of the public API) and for the tests. Only in builds with Vulkan (LDM_HAVE_VULKAN). */
#ifndef LDM_VK_API_H
#define LDM_VK_API_H

#include "core/backend.h"

typedef struct ldm_vk_options {
    int32_t device_index;       /* index in the device list, -1 = the best device */
    bool allow_cpu_device;      /* false: refuse CPU implementations (lavapipe, SwiftShader) */
    int32_t validation;         /* 1: VK_LAYER_KHRONOS_validation + a debug messenger that fails
                                   the next op on any error; 0: off; -1: from the environment
                                   (LDM_VULKAN_VALIDATION=1) */
    uint64_t budget_bytes;      /* device memory the backend may hold; 0 = LDM_VULKAN_BUDGET_MB
                                   from the environment, else 90% of the device-local heap */
    uint64_t max_binding_bytes; /* 0 = maxStorageBufferRange; smaller forces the split paths */
    bool fp16_weights;          /* store linear and conv2d weights as float16 (fp32 arithmetic),
                                   where the device has storageBuffer16BitAccess; else ignored */
} ldm_vk_options;

void ldm_vk_options_init(ldm_vk_options *o);

/* LDM_ERR_BACKEND (with a message naming why) when no suitable device exists. */
ldm_status ldm_vk_backend_create(const ldm_vk_options *o, int32_t n_threads, ldm_backend **out);

/* Device name and kind ("discrete GPU", "CPU", ...) of a Vulkan backend. */
const char *ldm_vk_device_name(const ldm_backend *be);
bool ldm_vk_is_cpu_device(const ldm_backend *be);
/* Validation errors the debug messenger has seen (0 without validation). */
int ldm_vk_validation_errors(const ldm_backend *be);
/* Device memory the backend may hold (its budget) and holds now, in bytes. */
uint64_t ldm_vk_budget(const ldm_backend *be);
uint64_t ldm_vk_pool_bytes(const ldm_backend *be);
/* Whether linear/conv2d weights are stored as float16 (fp16_weights was asked for and the
 * device has storageBuffer16BitAccess), and the device bytes of the weights uploaded so far. */
bool ldm_vk_fp16_weights(const ldm_backend *be);
uint64_t ldm_vk_weight_bytes(const ldm_backend *be);
/* Waits for all recorded work (tests and timing). */
ldm_status ldm_vk_sync(ldm_backend *be);

/* The public device list (core/context.c): the number of devices and, for 0 <= index < count,
 * what ldm_device_info reports about device `index` (any out-pointer may be NULL). Creates and
 * destroys its own instance. */
ldm_status ldm_vk_list_devices(int32_t index, int32_t *count, char *name, size_t name_size, int32_t *type,
                               uint64_t *memory, uint32_t *vendor, uint32_t *device, int32_t *preferred,
                               int32_t *suitable);

#endif
