/* The Vulkan backend: instance and device selection, memory pools, command batching, pipelines,
 * the weight cache, storage and the vtable. The ops are in vk_ops.c. */
#include "vk_internal.h"
#include "vk_api.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MIB ((VkDeviceSize)1 << 20)
#define POOL_BLOCK_BYTES (64 * MIB)
#define STAGING_BYTES (16 * MIB)

static VkDeviceSize round_up(VkDeviceSize v, VkDeviceSize a) { return (v + a - 1) / a * a; }

static ldm_status vk_error(ldm_vk_backend *b, VkResult r, const char *what) {
    ldm_status st = ldm_fail(LDM_ERR_BACKEND, "vulkan: %s failed (VkResult %d)", what, (int)r);
    if (b && (r == VK_ERROR_DEVICE_LOST || r == VK_ERROR_OUT_OF_DEVICE_MEMORY)) b->sticky = st;
    return st;
}

static const char *type_name(VkPhysicalDeviceType t) {
    switch (t) {
    case VK_PHYSICAL_DEVICE_TYPE_DISCRETE_GPU: return "discrete GPU";
    case VK_PHYSICAL_DEVICE_TYPE_INTEGRATED_GPU: return "integrated GPU";
    case VK_PHYSICAL_DEVICE_TYPE_VIRTUAL_GPU: return "virtual GPU";
    case VK_PHYSICAL_DEVICE_TYPE_CPU: return "CPU";
    default: return "other";
    }
}

/* Selection order: discrete > integrated > virtual > CPU > other. */
static int type_rank(VkPhysicalDeviceType t) {
    switch (t) {
    case VK_PHYSICAL_DEVICE_TYPE_DISCRETE_GPU: return 4;
    case VK_PHYSICAL_DEVICE_TYPE_INTEGRATED_GPU: return 3;
    case VK_PHYSICAL_DEVICE_TYPE_VIRTUAL_GPU: return 2;
    case VK_PHYSICAL_DEVICE_TYPE_CPU: return 1;
    default: return 0;
    }
}

void ldm_vk_options_init(ldm_vk_options *o) {
    memset(o, 0, sizeof *o);
    o->device_index = -1;
    o->allow_cpu_device = true;
    o->validation = -1;
}

/* ------------------------------------------------------------------------------------------ */
/* Instance, validation                                                                       */
/* ------------------------------------------------------------------------------------------ */

static VKAPI_ATTR VkBool32 VKAPI_CALL debug_cb(VkDebugUtilsMessageSeverityFlagBitsEXT sev,
                                               VkDebugUtilsMessageTypeFlagsEXT type,
                                               const VkDebugUtilsMessengerCallbackDataEXT *data, void *user) {
    (void)type;
    ldm_vk_backend *b = user;
    if (!(sev & VK_DEBUG_UTILS_MESSAGE_SEVERITY_ERROR_BIT_EXT)) return VK_FALSE;
    const char *msg = data && data->pMessage ? data->pMessage : "(no message)";
    fprintf(stderr, "ldm vulkan validation error: %s\n", msg);
    if (b) {
        if (b->validation_errors == 0) snprintf(b->validation_first, sizeof b->validation_first, "%s", msg);
        b->validation_errors++;
    }
    return VK_FALSE;
}

static bool has_layer(const char *name) {
    uint32_t n = 0;
    if (vkEnumerateInstanceLayerProperties(&n, NULL) != VK_SUCCESS || n == 0) return false;
    VkLayerProperties *p = calloc(n, sizeof *p);
    if (!p) return false;
    bool found = false;
    if (vkEnumerateInstanceLayerProperties(&n, p) == VK_SUCCESS)
        for (uint32_t i = 0; i < n && !found; i++) found = strcmp(p[i].layerName, name) == 0;
    free(p);
    return found;
}

static bool has_instance_ext(const char *layer, const char *name) {
    uint32_t n = 0;
    if (vkEnumerateInstanceExtensionProperties(layer, &n, NULL) != VK_SUCCESS || n == 0) return false;
    VkExtensionProperties *p = calloc(n, sizeof *p);
    if (!p) return false;
    bool found = false;
    if (vkEnumerateInstanceExtensionProperties(layer, &n, p) == VK_SUCCESS)
        for (uint32_t i = 0; i < n && !found; i++) found = strcmp(p[i].extensionName, name) == 0;
    free(p);
    return found;
}

#define VALIDATION_LAYER "VK_LAYER_KHRONOS_validation"

/* b may be NULL (device listing). */
static ldm_status create_instance(ldm_vk_backend *b, bool validation, VkInstance *out) {
    *out = VK_NULL_HANDLE;
    uint32_t api = 0;
    if (vkEnumerateInstanceVersion(&api) != VK_SUCCESS || api < VK_API_VERSION_1_1)
        return ldm_fail(LDM_ERR_BACKEND, "vulkan: the loader supports Vulkan %u.%u; 1.1 is needed",
                        VK_API_VERSION_MAJOR(api), VK_API_VERSION_MINOR(api));
    const char *exts[4];
    uint32_t next = 0;
    VkInstanceCreateFlags flags = 0;
#ifdef VK_KHR_portability_enumeration
    if (has_instance_ext(NULL, VK_KHR_PORTABILITY_ENUMERATION_EXTENSION_NAME)) {
        exts[next++] = VK_KHR_PORTABILITY_ENUMERATION_EXTENSION_NAME;
        flags |= VK_INSTANCE_CREATE_ENUMERATE_PORTABILITY_BIT_KHR;
    }
#endif
    const char *layers[1] = {VALIDATION_LAYER};
    VkValidationFeatureEnableEXT enables[1] = {VK_VALIDATION_FEATURE_ENABLE_SYNCHRONIZATION_VALIDATION_EXT};
    VkValidationFeaturesEXT vfeat = {.sType = VK_STRUCTURE_TYPE_VALIDATION_FEATURES_EXT,
                                     .enabledValidationFeatureCount = 1,
                                     .pEnabledValidationFeatures = enables};
    VkDebugUtilsMessengerCreateInfoEXT mci = {
        .sType = VK_STRUCTURE_TYPE_DEBUG_UTILS_MESSENGER_CREATE_INFO_EXT,
        .messageSeverity = VK_DEBUG_UTILS_MESSAGE_SEVERITY_ERROR_BIT_EXT | VK_DEBUG_UTILS_MESSAGE_SEVERITY_WARNING_BIT_EXT,
        .messageType = VK_DEBUG_UTILS_MESSAGE_TYPE_GENERAL_BIT_EXT | VK_DEBUG_UTILS_MESSAGE_TYPE_VALIDATION_BIT_EXT |
                       VK_DEBUG_UTILS_MESSAGE_TYPE_PERFORMANCE_BIT_EXT,
        .pfnUserCallback = debug_cb,
        .pUserData = b};
    const void *pnext = NULL;
    if (validation) {
        if (!has_layer(VALIDATION_LAYER))
            return ldm_fail(LDM_ERR_BACKEND, "vulkan: validation requested but %s is not installed "
                                             "(Debian: vulkan-validationlayers)", VALIDATION_LAYER);
        if (!has_instance_ext(NULL, VK_EXT_DEBUG_UTILS_EXTENSION_NAME))
            return ldm_fail(LDM_ERR_BACKEND, "vulkan: validation requested but VK_EXT_debug_utils is missing");
        exts[next++] = VK_EXT_DEBUG_UTILS_EXTENSION_NAME;
        /* the messenger chained here also sees instance creation and destruction */
        mci.pNext = NULL;
        if (has_instance_ext(VALIDATION_LAYER, VK_EXT_VALIDATION_FEATURES_EXTENSION_NAME)) {
            exts[next++] = VK_EXT_VALIDATION_FEATURES_EXTENSION_NAME;
            vfeat.pNext = &mci;
            pnext = &vfeat;
        } else {
            pnext = &mci;
        }
    }
    VkApplicationInfo app = {.sType = VK_STRUCTURE_TYPE_APPLICATION_INFO,
                             .pApplicationName = "libldm",
                             .pEngineName = "libldm",
                             .apiVersion = VK_API_VERSION_1_1};
    VkInstanceCreateInfo ici = {.sType = VK_STRUCTURE_TYPE_INSTANCE_CREATE_INFO,
                                .pNext = pnext,
                                .flags = flags,
                                .pApplicationInfo = &app,
                                .enabledLayerCount = validation ? 1u : 0u,
                                .ppEnabledLayerNames = validation ? layers : NULL,
                                .enabledExtensionCount = next,
                                .ppEnabledExtensionNames = next ? exts : NULL};
    VkResult r = vkCreateInstance(&ici, NULL, out);
    if (r != VK_SUCCESS) {
        *out = VK_NULL_HANDLE;
        return r == VK_ERROR_INCOMPATIBLE_DRIVER ? ldm_fail(LDM_ERR_BACKEND, "vulkan: no Vulkan driver is installed")
                                                 : vk_error(NULL, r, "vkCreateInstance");
    }
    if (validation && b) {
        PFN_vkCreateDebugUtilsMessengerEXT create =
            (PFN_vkCreateDebugUtilsMessengerEXT)vkGetInstanceProcAddr(*out, "vkCreateDebugUtilsMessengerEXT");
        if (!create || create(*out, &mci, NULL, &b->messenger) != VK_SUCCESS) {
            vkDestroyInstance(*out, NULL);
            *out = VK_NULL_HANDLE;
            return ldm_fail(LDM_ERR_BACKEND, "vulkan: cannot create the debug messenger");
        }
    }
    return LDM_OK;
}

/* ------------------------------------------------------------------------------------------ */
/* Devices                                                                                    */
/* ------------------------------------------------------------------------------------------ */

typedef struct dev_desc {
    VkPhysicalDevice pd;
    VkPhysicalDeviceProperties props;
    uint64_t memory; /* largest device-local heap */
    uint32_t qfam;
    bool suitable;
    char why[160]; /* when not suitable */
} dev_desc;

static void describe(VkPhysicalDevice pd, dev_desc *d) {
    memset(d, 0, sizeof *d);
    d->pd = pd;
    vkGetPhysicalDeviceProperties(pd, &d->props);
    VkPhysicalDeviceMemoryProperties mp;
    vkGetPhysicalDeviceMemoryProperties(pd, &mp);
    for (uint32_t i = 0; i < mp.memoryHeapCount; i++)
        if ((mp.memoryHeaps[i].flags & VK_MEMORY_HEAP_DEVICE_LOCAL_BIT) && mp.memoryHeaps[i].size > d->memory)
            d->memory = mp.memoryHeaps[i].size;
    uint32_t nq = 0;
    vkGetPhysicalDeviceQueueFamilyProperties(pd, &nq, NULL);
    VkQueueFamilyProperties qp[16];
    if (nq > 16) nq = 16;
    vkGetPhysicalDeviceQueueFamilyProperties(pd, &nq, qp);
    /* prefer a compute queue without graphics (an async compute family), else any compute one */
    int best = -1;
    for (uint32_t i = 0; i < nq; i++) {
        if (!(qp[i].queueFlags & VK_QUEUE_COMPUTE_BIT) || qp[i].queueCount == 0) continue;
        if (best < 0 || (!(qp[i].queueFlags & VK_QUEUE_GRAPHICS_BIT) && (qp[best].queueFlags & VK_QUEUE_GRAPHICS_BIT)))
            best = (int)i;
    }
    const VkPhysicalDeviceLimits *l = &d->props.limits;
    if (d->props.apiVersion < VK_API_VERSION_1_1)
        snprintf(d->why, sizeof d->why, "supports Vulkan %u.%u only (1.1 needed)", VK_API_VERSION_MAJOR(d->props.apiVersion),
                 VK_API_VERSION_MINOR(d->props.apiVersion));
    else if (best < 0)
        snprintf(d->why, sizeof d->why, "has no compute queue");
    else if (l->maxComputeWorkGroupInvocations < 256 || l->maxComputeWorkGroupSize[0] < 256 ||
             l->maxComputeWorkGroupSize[1] < 16)
        snprintf(d->why, sizeof d->why, "allows %u invocations per workgroup (256 needed)",
                 l->maxComputeWorkGroupInvocations);
    else if (l->maxComputeSharedMemorySize < 16384)
        snprintf(d->why, sizeof d->why, "has %u bytes of shared memory (16 KiB needed)", l->maxComputeSharedMemorySize);
    else if (l->maxPushConstantsSize < VK_PUSH_BYTES)
        snprintf(d->why, sizeof d->why, "has %u bytes of push constants", l->maxPushConstantsSize);
    else if (l->maxStorageBufferRange < (1u << 24))
        snprintf(d->why, sizeof d->why, "binds at most %u bytes per storage buffer", l->maxStorageBufferRange);
    else
        d->suitable = true;
    d->qfam = best < 0 ? 0 : (uint32_t)best;
}

static ldm_status enumerate(VkInstance inst, dev_desc **out, uint32_t *count) {
    *out = NULL;
    *count = 0;
    uint32_t n = 0;
    VkResult r = vkEnumeratePhysicalDevices(inst, &n, NULL);
    if (r != VK_SUCCESS) return vk_error(NULL, r, "vkEnumeratePhysicalDevices");
    if (n == 0) return LDM_OK;
    VkPhysicalDevice *pds = calloc(n, sizeof *pds);
    dev_desc *d = calloc(n, sizeof *d);
    if (!pds || !d) {
        free(pds);
        free(d);
        return ldm_fail(LDM_ERR_NO_MEMORY, "out of memory");
    }
    r = vkEnumeratePhysicalDevices(inst, &n, pds);
    if (r != VK_SUCCESS && r != VK_INCOMPLETE) {
        free(pds);
        free(d);
        return vk_error(NULL, r, "vkEnumeratePhysicalDevices");
    }
    for (uint32_t i = 0; i < n; i++) describe(pds[i], &d[i]);
    free(pds);
    *out = d;
    *count = n;
    return LDM_OK;
}

/* The best suitable device (first in enumeration order among equals), or -1. */
static int pick_best(const dev_desc *d, uint32_t n, bool allow_cpu) {
    int best = -1;
    for (uint32_t i = 0; i < n; i++) {
        if (!d[i].suitable) continue;
        if (!allow_cpu && d[i].props.deviceType == VK_PHYSICAL_DEVICE_TYPE_CPU) continue;
        if (best < 0 || type_rank(d[i].props.deviceType) > type_rank(d[best].props.deviceType)) best = (int)i;
    }
    return best;
}

ldm_status ldm_vk_list_devices(int32_t index, int32_t *count, char *name, size_t name_size, int32_t *type,
                               uint64_t *memory, uint32_t *vendor, uint32_t *device, int32_t *preferred,
                               int32_t *suitable) {
    *count = 0;
    VkInstance inst;
    ldm_status st = create_instance(NULL, false, &inst);
    if (st) return st;
    dev_desc *d = NULL;
    uint32_t n = 0;
    st = enumerate(inst, &d, &n);
    if (!st) {
        *count = (int32_t)n;
        if (index >= 0 && (uint32_t)index < n) {
            const dev_desc *e = &d[index];
            if (name) snprintf(name, name_size, "%s", e->props.deviceName);
            if (type) *type = (int32_t)e->props.deviceType;
            if (memory) *memory = e->memory;
            if (vendor) *vendor = e->props.vendorID;
            if (device) *device = e->props.deviceID;
            if (preferred) *preferred = pick_best(d, n, true) == index;
            if (suitable) *suitable = e->suitable;
        }
    }
    free(d);
    vkDestroyInstance(inst, NULL);
    return st;
}

/* ------------------------------------------------------------------------------------------ */
/* Memory                                                                                     */
/* ------------------------------------------------------------------------------------------ */

static int find_mem_type(const VkPhysicalDeviceMemoryProperties *mp, uint32_t bits, VkMemoryPropertyFlags want,
                         VkMemoryPropertyFlags avoid) {
    for (uint32_t i = 0; i < mp->memoryTypeCount; i++)
        if ((bits & (1u << i)) && (mp->memoryTypes[i].propertyFlags & want) == want &&
            !(mp->memoryTypes[i].propertyFlags & avoid))
            return (int)i;
    return -1;
}

static void block_destroy(ldm_vk_backend *b, vk_block *k) {
    if (!k) return;
    if (k->buf) vkDestroyBuffer(b->dev, k->buf, NULL);
    if (k->mem) vkFreeMemory(b->dev, k->mem, NULL);
    free(k->free_off);
    free(k->free_len);
    free(k);
}

static ldm_status block_create(ldm_vk_backend *b, VkDeviceSize size, bool staging, vk_block **out) {
    *out = NULL;
    vk_block *k = calloc(1, sizeof *k);
    if (!k) return ldm_fail(LDM_ERR_NO_MEMORY, "out of memory");
    VkBufferCreateInfo bci = {.sType = VK_STRUCTURE_TYPE_BUFFER_CREATE_INFO,
                              .size = size,
                              .usage = VK_BUFFER_USAGE_TRANSFER_SRC_BIT | VK_BUFFER_USAGE_TRANSFER_DST_BIT |
                                       (staging ? 0 : VK_BUFFER_USAGE_STORAGE_BUFFER_BIT),
                              .sharingMode = VK_SHARING_MODE_EXCLUSIVE};
    VkResult r = vkCreateBuffer(b->dev, &bci, NULL, &k->buf);
    if (r != VK_SUCCESS) {
        block_destroy(b, k);
        return vk_error(NULL, r, "vkCreateBuffer");
    }
    VkMemoryRequirements req;
    vkGetBufferMemoryRequirements(b->dev, k->buf, &req);
    VkPhysicalDeviceMemoryProperties mp;
    vkGetPhysicalDeviceMemoryProperties(b->phys, &mp);
    int type = -1;
    if (staging) {
        type = find_mem_type(&mp, req.memoryTypeBits,
                             VK_MEMORY_PROPERTY_HOST_VISIBLE_BIT | VK_MEMORY_PROPERTY_HOST_COHERENT_BIT |
                                 VK_MEMORY_PROPERTY_HOST_CACHED_BIT, 0);
        if (type < 0)
            type = find_mem_type(&mp, req.memoryTypeBits,
                                 VK_MEMORY_PROPERTY_HOST_VISIBLE_BIT | VK_MEMORY_PROPERTY_HOST_COHERENT_BIT, 0);
    } else {
        type = find_mem_type(&mp, req.memoryTypeBits, VK_MEMORY_PROPERTY_DEVICE_LOCAL_BIT, 0);
        if (type < 0) type = find_mem_type(&mp, req.memoryTypeBits, 0, 0);
    }
    if (type < 0) {
        block_destroy(b, k);
        return ldm_fail(LDM_ERR_BACKEND, "vulkan: no suitable memory type for a %s buffer", staging ? "staging" : "device");
    }
    VkMemoryAllocateInfo mai = {.sType = VK_STRUCTURE_TYPE_MEMORY_ALLOCATE_INFO,
                                .allocationSize = req.size,
                                .memoryTypeIndex = (uint32_t)type};
    r = vkAllocateMemory(b->dev, &mai, NULL, &k->mem);
    if (r != VK_SUCCESS) {
        k->mem = VK_NULL_HANDLE;
        block_destroy(b, k);
        return r == VK_ERROR_OUT_OF_DEVICE_MEMORY || r == VK_ERROR_OUT_OF_HOST_MEMORY
                   ? ldm_fail(LDM_ERR_NO_MEMORY, "vulkan: cannot allocate %llu MiB of device memory",
                              (unsigned long long)(size / MIB))
                   : vk_error(NULL, r, "vkAllocateMemory");
    }
    r = vkBindBufferMemory(b->dev, k->buf, k->mem, 0);
    if (r != VK_SUCCESS) {
        block_destroy(b, k);
        return vk_error(NULL, r, "vkBindBufferMemory");
    }
    if (staging) {
        r = vkMapMemory(b->dev, k->mem, 0, VK_WHOLE_SIZE, 0, &k->mapped);
        if (r != VK_SUCCESS) {
            block_destroy(b, k);
            return vk_error(NULL, r, "vkMapMemory");
        }
    }
    k->size = size;
    k->capfree = 8;
    k->free_off = malloc(k->capfree * sizeof *k->free_off);
    k->free_len = malloc(k->capfree * sizeof *k->free_len);
    if (!k->free_off || !k->free_len) {
        block_destroy(b, k);
        return ldm_fail(LDM_ERR_NO_MEMORY, "out of memory");
    }
    k->nfree = 1;
    k->free_off[0] = 0;
    k->free_len[0] = size;
    *out = k;
    return LDM_OK;
}

/* First fit inside one block; false when nothing fits. */
static bool block_take(vk_block *k, VkDeviceSize size, VkDeviceSize *off) {
    for (size_t i = 0; i < k->nfree; i++) {
        if (k->free_len[i] < size) continue;
        *off = k->free_off[i];
        k->free_off[i] += size;
        k->free_len[i] -= size;
        if (k->free_len[i] == 0) {
            memmove(k->free_off + i, k->free_off + i + 1, (k->nfree - i - 1) * sizeof *k->free_off);
            memmove(k->free_len + i, k->free_len + i + 1, (k->nfree - i - 1) * sizeof *k->free_len);
            k->nfree--;
        }
        k->used += size;
        return true;
    }
    return false;
}

/* Returns [off, off + size) to the block, merging with its neighbours. */
static void block_give(vk_block *k, VkDeviceSize off, VkDeviceSize size) {
    size_t i = 0;
    while (i < k->nfree && k->free_off[i] < off) i++;
    bool left = i > 0 && k->free_off[i - 1] + k->free_len[i - 1] == off;
    bool right = i < k->nfree && off + size == k->free_off[i];
    k->used -= size;
    if (left && right) {
        k->free_len[i - 1] += size + k->free_len[i];
        memmove(k->free_off + i, k->free_off + i + 1, (k->nfree - i - 1) * sizeof *k->free_off);
        memmove(k->free_len + i, k->free_len + i + 1, (k->nfree - i - 1) * sizeof *k->free_len);
        k->nfree--;
    } else if (left) {
        k->free_len[i - 1] += size;
    } else if (right) {
        k->free_off[i] = off;
        k->free_len[i] += size;
    } else {
        if (k->nfree == k->capfree) {
            size_t nc = k->capfree * 2;
            VkDeviceSize *no = realloc(k->free_off, nc * sizeof *no);
            if (no) k->free_off = no;
            VkDeviceSize *nl = no ? realloc(k->free_len, nc * sizeof *nl) : NULL;
            if (nl) k->free_len = nl;
            if (!no || !nl) return; /* out of host memory: the range is lost until destroy */
            k->capfree = nc;
        }
        memmove(k->free_off + i + 1, k->free_off + i, (k->nfree - i) * sizeof *k->free_off);
        memmove(k->free_len + i + 1, k->free_len + i, (k->nfree - i) * sizeof *k->free_len);
        k->free_off[i] = off;
        k->free_len[i] = size;
        k->nfree++;
    }
}

static ldm_status finish_all(ldm_vk_backend *b);
static void weights_evict_unused(ldm_vk_backend *b);

/* Waits for the device, then frees every empty block of both pools (they may be referenced by
 * pending commands until then). */
static void release_empty_blocks(ldm_vk_backend *b) {
    if (finish_all(b)) return;
    vk_pool *pools[2] = {&b->act_pool, &b->weight_pool};
    for (int p = 0; p < 2; p++) {
        vk_pool *pool = pools[p];
        size_t j = 0;
        for (size_t i = 0; i < pool->n; i++) {
            vk_block *k = pool->blocks[i];
            if (k->used == 0) {
                /* forget the block in the hazard lists (a new block may get its address) */
                vk_ranges *lists[2] = {&b->written, &b->read};
                for (int l = 0; l < 2; l++) {
                    size_t m = 0;
                    for (size_t e = 0; e < lists[l]->n; e++)
                        if (lists[l]->r[e].block != k) lists[l]->r[m++] = lists[l]->r[e];
                    lists[l]->n = m;
                }
                b->pool_bytes -= k->size;
                block_destroy(b, k);
            } else {
                pool->blocks[j++] = k;
            }
        }
        pool->n = j;
    }
}

static ldm_status pool_alloc(ldm_vk_backend *b, vk_pool *pool, VkDeviceSize bytes, vk_alloc *out) {
    VkDeviceSize size = round_up(bytes ? bytes : 4, b->align);
    for (size_t i = 0; i < pool->n; i++) {
        VkDeviceSize off;
        if (block_take(pool->blocks[i], size, &off)) {
            *out = (vk_alloc){pool->blocks[i], off, size};
            return LDM_OK;
        }
    }
    VkDeviceSize bsize = size > pool->block_size ? size : pool->block_size;
    if (bsize > b->max_alloc) bsize = size;
    if (size > b->max_alloc)
        return ldm_fail(LDM_ERR_NO_MEMORY, "vulkan: %s buffer of %llu MiB exceeds the device's largest allocation (%llu MiB)",
                        pool->name, (unsigned long long)(size / MIB), (unsigned long long)(b->max_alloc / MIB));
    for (int attempt = 0; attempt < 2; attempt++) {
        if (b->pool_bytes + bsize > b->budget && bsize > size && b->pool_bytes + size <= b->budget) bsize = size;
        if (b->pool_bytes + bsize <= b->budget) {
            vk_block *k;
            ldm_status st = block_create(b, bsize, false, &k);
            if (!st) {
                if (pool->n == pool->cap) {
                    size_t nc = pool->cap ? pool->cap * 2 : 8;
                    vk_block **nb = realloc(pool->blocks, nc * sizeof *nb);
                    if (!nb) {
                        block_destroy(b, k);
                        return ldm_fail(LDM_ERR_NO_MEMORY, "out of memory");
                    }
                    pool->blocks = nb;
                    pool->cap = nc;
                }
                pool->blocks[pool->n++] = k;
                b->pool_bytes += bsize;
                VkDeviceSize off;
                block_take(k, size, &off);
                *out = (vk_alloc){k, off, size};
                return LDM_OK;
            }
            if (st != LDM_ERR_NO_MEMORY || attempt == 1) return st;
        }
        if (attempt == 0) {
            /* over the budget (or the device is full): drop cached weights the current op does
             * not use and give empty blocks back, then try once more */
            weights_evict_unused(b);
            release_empty_blocks(b);
            for (size_t i = 0; i < pool->n; i++) {
                VkDeviceSize off;
                if (block_take(pool->blocks[i], size, &off)) {
                    *out = (vk_alloc){pool->blocks[i], off, size};
                    return LDM_OK;
                }
            }
        }
    }
    return ldm_fail(LDM_ERR_NO_MEMORY,
                    "vulkan: a %llu KiB %s buffer does not fit in the device budget (%llu MiB, %llu MiB in use)",
                    (unsigned long long)(size >> 10), pool->name, (unsigned long long)(b->budget / MIB),
                    (unsigned long long)(b->pool_bytes / MIB));
}

static void pool_free(vk_alloc *a) {
    if (a->block) block_give(a->block, a->off, a->size);
    a->block = NULL;
}

/* ------------------------------------------------------------------------------------------ */
/* Command batching and synchronisation                                                       */
/* ------------------------------------------------------------------------------------------ */

static ldm_status check_validation(ldm_vk_backend *b) {
    if (b->validation_errors > b->validation_reported) {
        b->validation_reported = b->validation_errors;
        b->sticky = ldm_fail(LDM_ERR_BACKEND, "vulkan validation error: %s", b->validation_first);
    }
    return b->sticky;
}

static ldm_status frame_begin(ldm_vk_backend *b, vk_frame **out) {
    vk_frame *f = &b->frames[b->cur];
    *out = f;
    if (f->recording) return LDM_OK;
    VkResult r;
    if (f->pending) {
        r = vkWaitForFences(b->dev, 1, &f->fence, VK_TRUE, UINT64_MAX);
        if (r != VK_SUCCESS) return vk_error(b, r, "vkWaitForFences");
        f->pending = false;
    }
    if ((r = vkResetFences(b->dev, 1, &f->fence)) != VK_SUCCESS) return vk_error(b, r, "vkResetFences");
    if ((r = vkResetDescriptorPool(b->dev, f->dpool, 0)) != VK_SUCCESS) return vk_error(b, r, "vkResetDescriptorPool");
    if ((r = vkResetCommandBuffer(f->cb, 0)) != VK_SUCCESS) return vk_error(b, r, "vkResetCommandBuffer");
    VkCommandBufferBeginInfo bi = {.sType = VK_STRUCTURE_TYPE_COMMAND_BUFFER_BEGIN_INFO,
                                   .flags = VK_COMMAND_BUFFER_USAGE_ONE_TIME_SUBMIT_BIT};
    if ((r = vkBeginCommandBuffer(f->cb, &bi)) != VK_SUCCESS) return vk_error(b, r, "vkBeginCommandBuffer");
    f->sets = f->dispatches = 0;
    f->staging_used = 0;
    f->recording = true;
    return LDM_OK;
}

static ldm_status frame_submit(ldm_vk_backend *b) {
    vk_frame *f = &b->frames[b->cur];
    if (!f->recording) return LDM_OK;
    f->recording = false;
    VkResult r = vkEndCommandBuffer(f->cb);
    if (r != VK_SUCCESS) return vk_error(b, r, "vkEndCommandBuffer");
    VkSubmitInfo si = {.sType = VK_STRUCTURE_TYPE_SUBMIT_INFO, .commandBufferCount = 1, .pCommandBuffers = &f->cb};
    r = vkQueueSubmit(b->queue, 1, &si, f->fence);
    if (r != VK_SUCCESS) return vk_error(b, r, "vkQueueSubmit");
    f->pending = true;
    b->cur = (b->cur + 1) % VK_FRAMES;
    b->n_submit++;
    return LDM_OK;
}

static ldm_status finish_all(ldm_vk_backend *b) {
    ldm_status st = frame_submit(b);
    for (int i = 0; i < VK_FRAMES; i++) {
        vk_frame *f = &b->frames[i];
        if (!f->pending) continue;
        VkResult r = vkWaitForFences(b->dev, 1, &f->fence, VK_TRUE, UINT64_MAX);
        if (r != VK_SUCCESS && !st) st = vk_error(b, r, "vkWaitForFences");
        f->pending = false;
    }
    if (!st) st = check_validation(b);
    return st;
}

static bool ranges_overlap(const vk_ranges *rs, const vk_view *v) {
    VkDeviceSize end = v->off + v->size;
    for (size_t i = 0; i < rs->n; i++)
        if (rs->r[i].block == v->block && rs->r[i].off < end && v->off < rs->r[i].end) return true;
    return false;
}

static bool ranges_add(vk_ranges *rs, const vk_view *v) {
    if (rs->n == rs->cap) {
        size_t nc = rs->cap ? rs->cap * 2 : 64;
        vk_range *nr = realloc(rs->r, nc * sizeof *nr);
        if (!nr) return false;
        rs->r = nr;
        rs->cap = nc;
    }
    rs->r[rs->n++] = (vk_range){v->block, v->off, v->off + v->size};
    return true;
}

/* Records a barrier when the command about to be recorded (reading `reads`, writing `writes`)
 * touches memory that an earlier command since the last barrier wrote, or writes memory it read. */
static void hazard(ldm_vk_backend *b, vk_frame *f, const vk_view *reads, int nr, const vk_view *writes, int nw) {
    bool need = false;
    for (int i = 0; i < nr && !need; i++) need = ranges_overlap(&b->written, &reads[i]);
    for (int i = 0; i < nw && !need; i++) need = ranges_overlap(&b->written, &writes[i]) || ranges_overlap(&b->read, &writes[i]);
    if (need) {
        b->n_barrier++;
        VkMemoryBarrier mb = {.sType = VK_STRUCTURE_TYPE_MEMORY_BARRIER,
                              .srcAccessMask = VK_ACCESS_SHADER_WRITE_BIT | VK_ACCESS_TRANSFER_WRITE_BIT,
                              .dstAccessMask = VK_ACCESS_SHADER_READ_BIT | VK_ACCESS_SHADER_WRITE_BIT |
                                               VK_ACCESS_TRANSFER_READ_BIT | VK_ACCESS_TRANSFER_WRITE_BIT};
        vkCmdPipelineBarrier(f->cb, VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT | VK_PIPELINE_STAGE_TRANSFER_BIT,
                             VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT | VK_PIPELINE_STAGE_TRANSFER_BIT, 0, 1, &mb, 0, NULL, 0,
                             NULL);
        b->written.n = b->read.n = 0;
    }
    bool ok = true;
    for (int i = 0; i < nr; i++) ok &= ranges_add(&b->read, &reads[i]);
    for (int i = 0; i < nw; i++) ok &= ranges_add(&b->written, &writes[i]);
    if (!ok) { /* out of host memory for the lists: fall back to a barrier before the next command */
        VkMemoryBarrier mb = {.sType = VK_STRUCTURE_TYPE_MEMORY_BARRIER,
                              .srcAccessMask = VK_ACCESS_SHADER_WRITE_BIT | VK_ACCESS_TRANSFER_WRITE_BIT,
                              .dstAccessMask = VK_ACCESS_SHADER_READ_BIT | VK_ACCESS_SHADER_WRITE_BIT |
                                               VK_ACCESS_TRANSFER_READ_BIT | VK_ACCESS_TRANSFER_WRITE_BIT};
        vkCmdPipelineBarrier(f->cb, VK_PIPELINE_STAGE_ALL_COMMANDS_BIT, VK_PIPELINE_STAGE_ALL_COMMANDS_BIT, 0, 1, &mb,
                             0, NULL, 0, NULL);
        b->written.n = b->read.n = 0;
    }
}

/* ------------------------------------------------------------------------------------------ */
/* Pipelines                                                                                  */
/* ------------------------------------------------------------------------------------------ */

static int shader_bindings(ldm_vk_shader_id s) {
    switch (s) {
    case LDM_VK_SHADER_ELTWISE:
    case LDM_VK_SHADER_LAYOUT: return 3;
    default: return 4;
    }
}

static ldm_status get_pipeline(ldm_vk_backend *b, ldm_vk_shader_id shader, const uint32_t *spec, uint32_t nspec,
                               vk_pipeline **out) {
    for (size_t i = 0; i < b->npipes; i++) {
        vk_pipeline *p = &b->pipes[i];
        if (p->shader == shader && p->nspec == nspec && (nspec == 0 || memcmp(p->spec, spec, nspec * sizeof *spec) == 0)) {
            *out = p;
            return LDM_OK;
        }
    }
    if (shader < 0 || shader >= LDM_VK_SHADER_COUNT || nspec > VK_MAX_SPEC)
        return ldm_fail(LDM_ERR_INTERNAL, "vulkan: bad shader %d", (int)shader);
    VkResult r;
    if (!b->modules[shader]) {
        VkShaderModuleCreateInfo smi = {.sType = VK_STRUCTURE_TYPE_SHADER_MODULE_CREATE_INFO,
                                        .codeSize = ldm_vk_shaders[shader].size,
                                        .pCode = ldm_vk_shaders[shader].code};
        if ((r = vkCreateShaderModule(b->dev, &smi, NULL, &b->modules[shader])) != VK_SUCCESS)
            return vk_error(b, r, "vkCreateShaderModule");
    }
    if (b->npipes == b->cappipes) {
        size_t nc = b->cappipes ? b->cappipes * 2 : 16;
        vk_pipeline *np = realloc(b->pipes, nc * sizeof *np);
        if (!np) return ldm_fail(LDM_ERR_NO_MEMORY, "out of memory");
        b->pipes = np;
        b->cappipes = nc;
    }
    VkSpecializationMapEntry entries[VK_MAX_SPEC];
    for (uint32_t i = 0; i < nspec; i++) entries[i] = (VkSpecializationMapEntry){i, i * 4, 4};
    VkSpecializationInfo si = {.mapEntryCount = nspec, .pMapEntries = entries, .dataSize = nspec * 4, .pData = spec};
    int nbind = shader_bindings(shader);
    VkComputePipelineCreateInfo ci = {
        .sType = VK_STRUCTURE_TYPE_COMPUTE_PIPELINE_CREATE_INFO,
        .stage = {.sType = VK_STRUCTURE_TYPE_PIPELINE_SHADER_STAGE_CREATE_INFO,
                  .stage = VK_SHADER_STAGE_COMPUTE_BIT,
                  .module = b->modules[shader],
                  .pName = "main",
                  .pSpecializationInfo = nspec ? &si : NULL},
        .layout = b->layout[nbind]};
    vk_pipeline *p = &b->pipes[b->npipes];
    memset(p, 0, sizeof *p);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    if ((r = vkCreateComputePipelines(b->dev, b->pcache, 1, &ci, NULL, &p->pipe)) != VK_SUCCESS)
        return vk_error(b, r, "vkCreateComputePipelines");
    clock_gettime(CLOCK_MONOTONIC, &t1);
    b->pipeline_seconds += (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
    p->shader = shader;
    p->nspec = nspec;
    if (nspec) memcpy(p->spec, spec, nspec * sizeof *spec);
    p->nbind = nbind;
    b->npipes++;
    *out = p;
    return LDM_OK;
}

ldm_status vk_grid(ldm_vk_backend *b, uint64_t items, uint32_t per_group, uint32_t *gx, uint32_t *gy) {
    uint64_t groups = (items + per_group - 1) / per_group;
    uint64_t mx = b->max_groups[0];
    if (groups <= mx) {
        *gx = (uint32_t)groups;
        *gy = 1;
        return LDM_OK;
    }
    uint64_t y = (groups + mx - 1) / mx;
    if (y > b->max_groups[1]) return ldm_fail(LDM_ERR_INVALID_ARG, "vulkan: %llu work items are too many for one dispatch",
                                              (unsigned long long)items);
    *gx = (uint32_t)mx;
    *gy = (uint32_t)y;
    return LDM_OK;
}

ldm_status vk_dispatch(ldm_vk_backend *b, ldm_vk_shader_id shader, const uint32_t *spec, uint32_t nspec,
                       const vk_view *views, int nviews, unsigned writes, const void *push, uint32_t push_size,
                       uint32_t gx, uint32_t gy, uint32_t gz) {
    ldm_status st;
    if ((st = check_validation(b))) return st;
    if (gx == 0 || gy == 0 || gz == 0) return LDM_OK;
    if (gx > b->max_groups[0] || gy > b->max_groups[1] || gz > b->max_groups[2])
        return ldm_fail(LDM_ERR_INVALID_ARG, "vulkan: dispatch of %ux%ux%u workgroups exceeds the device limit", gx, gy, gz);
    vk_pipeline *p = NULL;
    if ((st = get_pipeline(b, shader, spec, nspec, &p))) return st;
    if (nviews != p->nbind || push_size > VK_PUSH_BYTES)
        return ldm_fail(LDM_ERR_INTERNAL, "vulkan: %s takes %d buffers", ldm_vk_shaders[shader].name, p->nbind);
    for (int i = 0; i < nviews; i++) {
        if (views[i].size > b->max_range)
            return ldm_fail(LDM_ERR_BACKEND, "vulkan: %s would bind %llu bytes, over the device's storage buffer range of %llu",
                            ldm_vk_shaders[shader].name, (unsigned long long)views[i].size,
                            (unsigned long long)b->max_range);
        if (views[i].off % b->align) return ldm_fail(LDM_ERR_INTERNAL, "vulkan: misaligned binding");
    }
    vk_frame *f;
    if ((st = frame_begin(b, &f))) return st;
    if (f->sets >= VK_SETS_PER_FRAME || f->dispatches >= VK_DISPATCHES_PER_SUBMIT) {
        if ((st = frame_submit(b)) || (st = frame_begin(b, &f))) return st;
    }
    VkDescriptorSetAllocateInfo ai = {.sType = VK_STRUCTURE_TYPE_DESCRIPTOR_SET_ALLOCATE_INFO,
                                      .descriptorPool = f->dpool,
                                      .descriptorSetCount = 1,
                                      .pSetLayouts = &b->dsl[nviews]};
    VkDescriptorSet set;
    VkResult r = vkAllocateDescriptorSets(b->dev, &ai, &set);
    if (r != VK_SUCCESS) return vk_error(b, r, "vkAllocateDescriptorSets");
    f->sets++;
    VkDescriptorBufferInfo bi[VK_MAX_BINDINGS];
    VkWriteDescriptorSet wr[VK_MAX_BINDINGS];
    vk_view rd[VK_MAX_BINDINGS], wt[VK_MAX_BINDINGS];
    int nr = 0, nw = 0;
    for (int i = 0; i < nviews; i++) {
        bi[i] = (VkDescriptorBufferInfo){views[i].block->buf, views[i].off, views[i].size};
        wr[i] = (VkWriteDescriptorSet){.sType = VK_STRUCTURE_TYPE_WRITE_DESCRIPTOR_SET,
                                       .dstSet = set,
                                       .dstBinding = (uint32_t)i,
                                       .descriptorCount = 1,
                                       .descriptorType = VK_DESCRIPTOR_TYPE_STORAGE_BUFFER,
                                       .pBufferInfo = &bi[i]};
        if (writes & (1u << i)) wt[nw++] = views[i];
        else rd[nr++] = views[i];
    }
    vkUpdateDescriptorSets(b->dev, (uint32_t)nviews, wr, 0, NULL);
    hazard(b, f, rd, nr, wt, nw);
    vkCmdBindPipeline(f->cb, VK_PIPELINE_BIND_POINT_COMPUTE, p->pipe);
    vkCmdBindDescriptorSets(f->cb, VK_PIPELINE_BIND_POINT_COMPUTE, b->layout[nviews], 0, 1, &set, 0, NULL);
    if (push_size) vkCmdPushConstants(f->cb, b->layout[nviews], VK_SHADER_STAGE_COMPUTE_BIT, 0, push_size, push);
    vkCmdDispatch(f->cb, gx, gy, gz);
    f->dispatches++;
    b->n_dispatch++;
    return LDM_OK;
}

/* ------------------------------------------------------------------------------------------ */
/* Transfers                                                                                  */
/* ------------------------------------------------------------------------------------------ */

static void convert_to_f32(int32_t dtype, const unsigned char *src, float *dst, size_t n) {
    switch (dtype) {
    case LDM_DT_F16:
        for (size_t i = 0; i < n; i++) {
            uint16_t h;
            memcpy(&h, src + 2 * i, 2);
            dst[i] = ldm_f16_to_f32(h);
        }
        break;
    case LDM_DT_BF16:
        for (size_t i = 0; i < n; i++) {
            uint16_t h;
            memcpy(&h, src + 2 * i, 2);
            dst[i] = ldm_bf16_to_f32(h);
        }
        break;
    default: memcpy(dst, src, 4 * n); break;
    }
}

/* Float16 bits of n elements of `dtype` (round to nearest even; F16 is copied). */
static void convert_to_f16(int32_t dtype, const unsigned char *src, uint16_t *dst, size_t n) {
    switch (dtype) {
    case LDM_DT_F16: memcpy(dst, src, 2 * n); break;
    case LDM_DT_BF16:
        for (size_t i = 0; i < n; i++) {
            uint16_t h;
            memcpy(&h, src + 2 * i, 2);
            dst[i] = ldm_f32_to_f16(ldm_bf16_to_f32(h));
        }
        break;
    default:
        for (size_t i = 0; i < n; i++) {
            float f;
            memcpy(&f, src + 4 * i, 4);
            dst[i] = ldm_f32_to_f16(f);
        }
        break;
    }
}

/* Uploads elements of `dtype` from src into dst at dst_off, converted to float32 (dst_es 4) or
 * float16 (dst_es 2); bytes counts device bytes. */
static ldm_status upload_converted(ldm_vk_backend *b, const vk_view *dst, VkDeviceSize dst_off, const void *src,
                                   VkDeviceSize bytes, int32_t dtype, VkDeviceSize dst_es) {
    const size_t es = dtype == LDM_DT_F16 || dtype == LDM_DT_BF16 ? 2 : 4;
    const unsigned char *s = src;
    VkDeviceSize done = 0;
    ldm_status st;
    if ((st = check_validation(b))) return st;
    while (done < bytes) {
        vk_frame *f;
        if ((st = frame_begin(b, &f))) return st;
        VkDeviceSize avail = b->staging_size - f->staging_used;
        if (avail < 4096 && avail < bytes - done) {
            if ((st = frame_submit(b)) || (st = frame_begin(b, &f))) return st;
            avail = b->staging_size - f->staging_used;
        }
        VkDeviceSize chunk = bytes - done < avail ? bytes - done : avail & ~(VkDeviceSize)3;
        size_t n = (size_t)(chunk / dst_es);
        void *stage = (char *)f->staging->mapped + f->staging_used;
        if (dst_es == 2) convert_to_f16(dtype, s + (done / 2) * es, stage, n);
        else convert_to_f32(dtype, s + (done / 4) * es, stage, n);
        vk_view w = {dst->block, dst->off + dst_off + done, chunk};
        hazard(b, f, NULL, 0, &w, 1);
        VkBufferCopy c = {f->staging_used, w.off, chunk};
        vkCmdCopyBuffer(f->cb, f->staging->buf, dst->block->buf, 1, &c);
        f->staging_used = round_up(f->staging_used + chunk, 16);
        done += chunk;
        b->upload_bytes += chunk;
    }
    return LDM_OK;
}

ldm_status vk_upload_bytes(ldm_vk_backend *b, const vk_view *dst, VkDeviceSize dst_off, const void *src,
                           VkDeviceSize bytes, int32_t dtype) {
    /* bytes counts float32 bytes on the device; the source has elements of `dtype` */
    return upload_converted(b, dst, dst_off, src, bytes, dtype, 4);
}

static ldm_status download_bytes(ldm_vk_backend *b, const vk_view *src, float *dst, VkDeviceSize bytes) {
    VkDeviceSize done = 0;
    ldm_status st;
    while (done < bytes) {
        vk_frame *f;
        if ((st = frame_begin(b, &f))) return st;
        if (b->staging_size - f->staging_used < (bytes - done < b->staging_size ? bytes - done : b->staging_size)) {
            if ((st = frame_submit(b)) || (st = frame_begin(b, &f))) return st;
        }
        VkDeviceSize avail = b->staging_size - f->staging_used;
        VkDeviceSize chunk = bytes - done < avail ? bytes - done : avail;
        vk_view r = {src->block, src->off + done, chunk};
        hazard(b, f, &r, 1, NULL, 0);
        VkDeviceSize soff = f->staging_used;
        VkBufferCopy c = {r.off, soff, chunk};
        vkCmdCopyBuffer(f->cb, src->block->buf, f->staging->buf, 1, &c);
        VkMemoryBarrier mb = {.sType = VK_STRUCTURE_TYPE_MEMORY_BARRIER,
                              .srcAccessMask = VK_ACCESS_TRANSFER_WRITE_BIT,
                              .dstAccessMask = VK_ACCESS_HOST_READ_BIT};
        vkCmdPipelineBarrier(f->cb, VK_PIPELINE_STAGE_TRANSFER_BIT, VK_PIPELINE_STAGE_HOST_BIT, 0, 1, &mb, 0, NULL, 0,
                             NULL);
        f->staging_used = round_up(soff + chunk, 16);
        const char *mapped = f->staging->mapped;
        if ((st = finish_all(b))) return st;
        memcpy((char *)dst + done, mapped + soff, (size_t)chunk);
        done += chunk;
        b->n_wait++;
        b->download_bytes += chunk;
    }
    return LDM_OK;
}

/* ------------------------------------------------------------------------------------------ */
/* Weight cache                                                                               */
/* ------------------------------------------------------------------------------------------ */

/* FNV-1a over the whole tensor when it is small, else over 64 spans of 64 bytes spread evenly:
 * tells a weight from another one mapped later at the same address (a model reloaded into the
 * same context) without reading gigabytes per op. */
static uint64_t fingerprint(const void *p, size_t bytes) {
    const unsigned char *s = p;
    uint64_t h = 1469598103934665603ull ^ bytes;
    if (bytes <= 65536) {
        for (size_t i = 0; i < bytes; i++) h = (h ^ s[i]) * 1099511628211ull;
        return h;
    }
    for (size_t k = 0; k < 64; k++) {
        size_t at = (bytes - 64) / 63 * k;
        for (size_t i = 0; i < 64; i++) h = (h ^ s[at + i]) * 1099511628211ull;
    }
    return h;
}

static size_t ptr_hash(const void *p) {
    uint64_t x = (uint64_t)(uintptr_t)p;
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    return (size_t)x;
}

static bool wc_insert_slot(vk_weight *tab, size_t cap, const vk_weight *w) {
    size_t i = ptr_hash(w->host) & (cap - 1);
    for (size_t k = 0; k < cap; k++, i = (i + 1) & (cap - 1)) {
        if (!tab[i].host) {
            tab[i] = *w;
            return true;
        }
    }
    return false;
}

static ldm_status wc_rehash(ldm_vk_backend *b, size_t cap) {
    vk_weight *nt = calloc(cap, sizeof *nt);
    if (!nt) return ldm_fail(LDM_ERR_NO_MEMORY, "out of memory");
    for (size_t i = 0; i < b->wc_cap; i++)
        if (b->wc[i].host) wc_insert_slot(nt, cap, &b->wc[i]);
    free(b->wc);
    b->wc = nt;
    b->wc_cap = cap;
    return LDM_OK;
}

/* Frees every cached weight the current op has not looked up (their memory can be reused by
 * later commands right away: the queue orders them after the earlier readers). */
static void weights_evict_unused(ldm_vk_backend *b) {
    bool any = false;
    for (size_t i = 0; i < b->wc_cap; i++) {
        vk_weight *w = &b->wc[i];
        if (w->host && w->last_use != b->tick) {
            pool_free(&w->a);
            w->host = NULL;
            b->wc_n--;
            any = true;
        }
    }
    if (any) wc_rehash(b, b->wc_cap); /* open addressing: rebuild the probe chains */
}

/* Whether every value of a host weight fits float16 (|v| <= 65504 after rounding; an infinity or
 * NaN of the file is kept as it is). F16 always does. */
static bool fits_f16(const ldm_tensor *t, int64_t n) {
    if (t->dtype == LDM_DT_F16) return true;
    for (int64_t i = 0; i < n; i++) {
        float v;
        if (t->dtype == LDM_DT_BF16) {
            uint16_t h;
            memcpy(&h, (const char *)t->data + 2 * i, 2);
            v = ldm_bf16_to_f32(h);
        } else {
            memcpy(&v, (const char *)t->data + 4 * i, 4);
        }
        if (isfinite(v) && (ldm_f32_to_f16(v) & 0x7c00u) == 0x7c00u) return false;
    }
    return true;
}

/* The cached device copy of host weight t, stored as float16 when want_f16 (and every value
 * fits), else float32; *f16 tells which. A weight used both ways has two entries. */
static ldm_status weight_view(ldm_vk_backend *b, const ldm_tensor *t, bool want_f16, vk_view *out, bool *f16) {
    const int64_t n = ldm_numel(t);
    const size_t bytes = (size_t)n * ldm_dtype_size(t->dtype);
    const uint64_t fp = fingerprint(t->data, bytes);
    if (b->wc_cap) {
        size_t i = ptr_hash(t->data) & (b->wc_cap - 1);
        for (size_t k = 0; k < b->wc_cap && b->wc[i].host; k++, i = (i + 1) & (b->wc_cap - 1)) {
            vk_weight *w = &b->wc[i];
            if (w->host != t->data) continue;
            /* an fp16 request takes a float16 copy, or the float32 one made because the values do
             * not fit; a float32 request takes a float32 copy */
            if (want_f16 ? !(w->f16 || w->f16_tried) : w->f16) continue;
            if (w->bytes == bytes && w->dtype == (int32_t)t->dtype && w->numel == n && w->fingerprint == fp) {
                w->last_use = b->tick;
                *out = (vk_view){w->a.block, w->a.off, (VkDeviceSize)n * (w->f16 ? 2 : 4)};
                *f16 = w->f16;
                return LDM_OK;
            }
            /* another tensor now lives at this address: drop the stale copy */
            pool_free(&w->a);
            w->host = NULL;
            b->wc_n--;
            ldm_status st = wc_rehash(b, b->wc_cap);
            if (st) return st;
            break;
        }
    }
    if ((b->wc_n + 1) * 2 > b->wc_cap) {
        ldm_status st = wc_rehash(b, b->wc_cap ? b->wc_cap * 2 : 256);
        if (st) return st;
    }
    const bool as_f16 = want_f16 && fits_f16(t, n);
    const VkDeviceSize es = as_f16 ? 2 : 4;
    vk_weight w = {.host = t->data, .bytes = bytes, .dtype = t->dtype, .f16 = as_f16, .f16_tried = want_f16,
                   .numel = n, .fingerprint = fp, .last_use = b->tick};
    ldm_status st = pool_alloc(b, &b->weight_pool, (VkDeviceSize)n * es, &w.a);
    if (st) return st;
    vk_view v = {w.a.block, w.a.off, (VkDeviceSize)n * es};
    if ((st = upload_converted(b, &v, 0, t->data, v.size, t->dtype, es))) {
        pool_free(&w.a);
        return st;
    }
    wc_insert_slot(b->wc, b->wc_cap, &w);
    b->wc_n++;
    b->weight_bytes += v.size;
    *out = v;
    *f16 = as_f16;
    return LDM_OK;
}

ldm_status vk_view_of(ldm_vk_backend *b, const char *op, const char *what, const ldm_tensor *t, vk_view *out) {
    if (!t) return ldm_fail(LDM_ERR_INVALID_ARG, "%s: %s is NULL", op, what);
    if (t->device) {
        if (t->dtype != LDM_DT_F32) return ldm_fail(LDM_ERR_INVALID_ARG, "%s: %s must be F32", op, what);
        const vk_alloc *a = t->device;
        *out = (vk_view){a->block, a->off, (VkDeviceSize)ldm_numel(t) * 4};
        return LDM_OK;
    }
    if (!t->data) return ldm_fail(LDM_ERR_INVALID_ARG, "%s: %s has no storage", op, what);
    if (t->dtype != LDM_DT_F32 && t->dtype != LDM_DT_F16 && t->dtype != LDM_DT_BF16)
        return ldm_fail(LDM_ERR_INVALID_ARG, "%s: %s must be F32, F16 or BF16 (is %s)", op, what,
                        ldm_dtype_name(t->dtype));
    bool f16;
    return weight_view(b, t, false, out, &f16);
}

ldm_status vk_matrix_view_of(ldm_vk_backend *b, const char *op, const char *what, const ldm_tensor *t, vk_view *out,
                             bool *f16) {
    *f16 = false;
    if (!b->fp16_weights || !t || t->device || !t->data) return vk_view_of(b, op, what, t, out);
    if (t->dtype != LDM_DT_F32 && t->dtype != LDM_DT_F16 && t->dtype != LDM_DT_BF16)
        return vk_view_of(b, op, what, t, out); /* its message */
    return weight_view(b, t, true, out, f16);
}

/* ------------------------------------------------------------------------------------------ */
/* Storage                                                                                    */
/* ------------------------------------------------------------------------------------------ */

#define MAX_TENSOR_BYTES ((uint64_t)1 << 34)

static ldm_tensor *vk_new_tensor(ldm_backend *be, int32_t ndim, const int64_t *shape) {
    ldm_vk_backend *b = vkb(be);
    if (b->sticky) {
        ldm_fail(b->sticky, "vulkan: the device failed earlier");
        return NULL;
    }
    if (ndim < 1 || ndim > LDM_MAX_DIMS || !shape) {
        ldm_fail(LDM_ERR_NO_MEMORY, "vulkan new_tensor: bad rank %d (need 1..%d)", (int)ndim, LDM_MAX_DIMS);
        return NULL;
    }
    uint64_t bytes = 4;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] <= 0) {
            ldm_fail(LDM_ERR_NO_MEMORY, "vulkan new_tensor: dimension %d is %lld", i, (long long)shape[i]);
            return NULL;
        }
        if ((uint64_t)shape[i] > MAX_TENSOR_BYTES || bytes * (uint64_t)shape[i] > MAX_TENSOR_BYTES) {
            ldm_fail(LDM_ERR_NO_MEMORY, "vulkan new_tensor: tensor larger than 16 GiB refused");
            return NULL;
        }
        bytes *= (uint64_t)shape[i];
    }
    ldm_tensor *t = calloc(1, sizeof *t);
    vk_alloc *a = calloc(1, sizeof *a);
    if (!t || !a) {
        free(t);
        free(a);
        ldm_fail(LDM_ERR_NO_MEMORY, "vulkan new_tensor: out of memory");
        return NULL;
    }
    if (pool_alloc(b, &b->act_pool, bytes, a)) {
        free(t);
        free(a);
        return NULL;
    }
    t->dtype = LDM_DT_F32;
    t->ndim = ndim;
    for (int i = 0; i < ndim; i++) t->ne[i] = shape[i];
    t->device = a;
    return t;
}

static void vk_free_tensor(ldm_backend *be, ldm_tensor *t) {
    (void)be;
    if (!t) return;
    if (t->device) {
        pool_free(t->device);
        free(t->device);
    }
    free(t);
}

static ldm_status vk_upload(ldm_backend *be, ldm_tensor *dst, const float *src) {
    ldm_vk_backend *b = vkb(be);
    if (b->sticky) return ldm_fail(b->sticky, "vulkan: the device failed earlier");
    if (!dst || !dst->device || dst->dtype != LDM_DT_F32)
        return ldm_fail(LDM_ERR_INVALID_ARG, "upload: dst is not a Vulkan F32 tensor");
    if (!src) return ldm_fail(LDM_ERR_INVALID_ARG, "upload: src is NULL");
    vk_view v;
    ldm_status st = vk_view_of(b, "upload", "dst", dst, &v);
    if (st) return st;
    return vk_upload_bytes(b, &v, 0, src, v.size, LDM_DT_F32);
}

static ldm_status vk_download(ldm_backend *be, const ldm_tensor *src, float *dst) {
    ldm_vk_backend *b = vkb(be);
    if (b->sticky) return ldm_fail(b->sticky, "vulkan: the device failed earlier");
    if (!src || !src->device || src->dtype != LDM_DT_F32)
        return ldm_fail(LDM_ERR_INVALID_ARG, "download: src is not a Vulkan F32 tensor");
    if (!dst) return ldm_fail(LDM_ERR_INVALID_ARG, "download: dst is NULL");
    vk_view v;
    ldm_status st = vk_view_of(b, "download", "src", src, &v);
    if (st) return st;
    return download_bytes(b, &v, dst, v.size);
}

/* ------------------------------------------------------------------------------------------ */
/* Creation                                                                                   */
/* ------------------------------------------------------------------------------------------ */

/* Free bytes: the budget less the live activations. Cached weights count as free: between ops
 * every one of them may be evicted (pool_alloc does so when the budget runs out). */
static void vk_memory_limits(ldm_backend *be, uint64_t *free_bytes, uint64_t *max_tensor_bytes) {
    ldm_vk_backend *b = vkb(be);
    uint64_t used = 0;
    for (size_t i = 0; i < b->act_pool.n; i++) used += b->act_pool.blocks[i]->used;
    *free_bytes = b->budget > used ? b->budget - used : 0;
    *max_tensor_bytes = b->max_range < b->max_alloc ? b->max_range : b->max_alloc;
}

static void vk_destroy(ldm_backend *be) {
    ldm_vk_backend *b = vkb(be);
    if (!b) return;
    if (b->dev) {
        finish_all(b);
        const char *stats = getenv("LDM_VULKAN_STATS");
        if (stats && stats[0] && strcmp(stats, "0") != 0)
            fprintf(stderr,
                    "ldm vulkan stats: %s (%s): %zu pipelines (%.2f s to create), %llu dispatches, %llu barriers, %llu "
                    "submissions, %llu waits, %.1f MiB weights, %.1f MiB up, %.1f MiB down, pools %.1f MiB\n",
                    b->device_name, type_name(b->device_type), b->npipes, b->pipeline_seconds, (unsigned long long)b->n_dispatch,
                    (unsigned long long)b->n_barrier, (unsigned long long)b->n_submit, (unsigned long long)b->n_wait,
                    (double)b->weight_bytes / MIB, (double)b->upload_bytes / MIB, (double)b->download_bytes / MIB,
                    (double)b->pool_bytes / MIB);
        vkDeviceWaitIdle(b->dev);
        for (size_t i = 0; i < b->npipes; i++) vkDestroyPipeline(b->dev, b->pipes[i].pipe, NULL);
        for (int i = 0; i < LDM_VK_SHADER_COUNT; i++)
            if (b->modules[i]) vkDestroyShaderModule(b->dev, b->modules[i], NULL);
        if (b->pcache) vkDestroyPipelineCache(b->dev, b->pcache, NULL);
        for (int i = 0; i <= VK_MAX_BINDINGS; i++) {
            if (b->layout[i]) vkDestroyPipelineLayout(b->dev, b->layout[i], NULL);
            if (b->dsl[i]) vkDestroyDescriptorSetLayout(b->dev, b->dsl[i], NULL);
        }
        for (int i = 0; i < VK_FRAMES; i++) {
            vk_frame *f = &b->frames[i];
            if (f->fence) vkDestroyFence(b->dev, f->fence, NULL);
            if (f->dpool) vkDestroyDescriptorPool(b->dev, f->dpool, NULL);
            block_destroy(b, f->staging);
        }
        if (b->cmdpool) vkDestroyCommandPool(b->dev, b->cmdpool, NULL);
        vk_pool *pools[2] = {&b->act_pool, &b->weight_pool};
        for (int p = 0; p < 2; p++) {
            for (size_t i = 0; i < pools[p]->n; i++) block_destroy(b, pools[p]->blocks[i]);
            free(pools[p]->blocks);
        }
        vkDestroyDevice(b->dev, NULL);
    }
    if (b->messenger) {
        PFN_vkDestroyDebugUtilsMessengerEXT destroy =
            (PFN_vkDestroyDebugUtilsMessengerEXT)vkGetInstanceProcAddr(b->inst, "vkDestroyDebugUtilsMessengerEXT");
        if (destroy) destroy(b->inst, b->messenger, NULL);
    }
    if (b->inst) vkDestroyInstance(b->inst, NULL);
    /* Validation errors raised at teardown (leaked objects) can no longer fail an op: with
     * validation requested, they end the process so that no test passes over them. */
    if (b->validation && b->validation_errors > b->validation_reported) {
        fprintf(stderr, "ldm vulkan: %d validation error(s) at teardown; first: %s\n",
                b->validation_errors - b->validation_reported, b->validation_first);
        abort();
    }
    free(b->pipes);
    free(b->wc);
    free(b->written.r);
    free(b->read.r);
    free(b);
}

static const ldm_backend_ops vk_ops = {
    .name = "vulkan",
    .destroy = vk_destroy,
    .new_tensor = vk_new_tensor,
    .free_tensor = vk_free_tensor,
    .upload = vk_upload,
    .download = vk_download,
    .conv2d = vk_conv2d,
    .linear = vk_linear,
    .group_norm = vk_group_norm,
    .layer_norm = vk_layer_norm,
    .attention = vk_attention,
    .unary = vk_unary,
    .geglu = vk_geglu,
    .add = vk_add,
    .add_per_channel = vk_add_per_channel,
    .scale = vk_scale,
    .upsample_nearest2x = vk_upsample_nearest2x,
    .concat_channels = vk_concat_channels,
    .nchw_to_nlc = vk_nchw_to_nlc,
    .nlc_to_nchw = vk_nlc_to_nchw,
    .embedding = vk_embedding,
    .memory_limits = vk_memory_limits,
};

static bool device_has_ext(VkPhysicalDevice pd, const char *name) {
    uint32_t n = 0;
    if (vkEnumerateDeviceExtensionProperties(pd, NULL, &n, NULL) != VK_SUCCESS || n == 0) return false;
    VkExtensionProperties *p = calloc(n, sizeof *p);
    if (!p) return false;
    bool found = false;
    if (vkEnumerateDeviceExtensionProperties(pd, NULL, &n, p) == VK_SUCCESS)
        for (uint32_t i = 0; i < n && !found; i++) found = strcmp(p[i].extensionName, name) == 0;
    free(p);
    return found;
}

static ldm_status setup_device(ldm_vk_backend *b, const dev_desc *d, const ldm_vk_options *o) {
    b->phys = d->pd;
    b->qfam = d->qfam;
    b->device_type = d->props.deviceType;
    snprintf(b->device_name, sizeof b->device_name, "%s", d->props.deviceName);
    const VkPhysicalDeviceLimits *l = &d->props.limits;
    b->max_range = l->maxStorageBufferRange & ~(VkDeviceSize)15;
    if (o->max_binding_bytes && o->max_binding_bytes < b->max_range) b->max_range = o->max_binding_bytes & ~(VkDeviceSize)255;
    b->align = l->minStorageBufferOffsetAlignment > 16 ? l->minStorageBufferOffsetAlignment : 16;
    b->shared_mem = l->maxComputeSharedMemorySize;
    for (int i = 0; i < 3; i++) b->max_groups[i] = l->maxComputeWorkGroupCount[i];
    /* maxMemoryAllocationSize and the subgroup size (queried, never assumed: the kernels use
     * shared-memory reductions only) */
    VkPhysicalDeviceMaintenance3Properties m3 = {.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_MAINTENANCE_3_PROPERTIES};
    VkPhysicalDeviceSubgroupProperties sg = {.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SUBGROUP_PROPERTIES, .pNext = &m3};
    VkPhysicalDeviceProperties2 p2 = {.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_PROPERTIES_2, .pNext = &sg};
    vkGetPhysicalDeviceProperties2(b->phys, &p2);
    b->subgroup_size = sg.subgroupSize;
    b->max_alloc = m3.maxMemoryAllocationSize ? m3.maxMemoryAllocationSize : ((VkDeviceSize)1 << 30);
    if (o->budget_bytes) {
        b->budget = o->budget_bytes;
    } else {
        const char *env = getenv("LDM_VULKAN_BUDGET_MB");
        long long mb = env ? atoll(env) : 0;
        b->budget = mb > 0 ? (VkDeviceSize)mb * MIB : d->memory / 10 * 9;
        if (b->budget == 0) b->budget = (VkDeviceSize)1 << 30;
    }
    b->act_pool = (vk_pool){.name = "activation", .block_size = POOL_BLOCK_BYTES};
    b->weight_pool = (vk_pool){.name = "weight", .block_size = POOL_BLOCK_BYTES};
    if (b->act_pool.block_size > b->max_alloc) b->act_pool.block_size = b->weight_pool.block_size = b->max_alloc;

    float prio = 1.0f;
    VkDeviceQueueCreateInfo qci = {.sType = VK_STRUCTURE_TYPE_DEVICE_QUEUE_CREATE_INFO,
                                   .queueFamilyIndex = b->qfam,
                                   .queueCount = 1,
                                   .pQueuePriorities = &prio};
    const char *exts[1];
    uint32_t next = 0;
    if (device_has_ext(b->phys, "VK_KHR_portability_subset")) exts[next++] = "VK_KHR_portability_subset";
    /* fp16 weights: only with storageBuffer16BitAccess (a Vulkan 1.1 feature), enabled here */
    VkPhysicalDevice16BitStorageFeatures s16 = {.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_16BIT_STORAGE_FEATURES};
    if (o->fp16_weights) {
        VkPhysicalDeviceFeatures2 f2 = {.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_FEATURES_2, .pNext = &s16};
        vkGetPhysicalDeviceFeatures2(b->phys, &f2);
        b->fp16_weights = s16.storageBuffer16BitAccess == VK_TRUE;
        s16 = (VkPhysicalDevice16BitStorageFeatures){.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_16BIT_STORAGE_FEATURES,
                                                     .storageBuffer16BitAccess = VK_TRUE};
    }
    VkDeviceCreateInfo dci = {.sType = VK_STRUCTURE_TYPE_DEVICE_CREATE_INFO,
                              .pNext = b->fp16_weights ? &s16 : NULL,
                              .queueCreateInfoCount = 1,
                              .pQueueCreateInfos = &qci,
                              .enabledExtensionCount = next,
                              .ppEnabledExtensionNames = next ? exts : NULL};
    VkResult r = vkCreateDevice(b->phys, &dci, NULL, &b->dev);
    if (r != VK_SUCCESS) {
        b->dev = VK_NULL_HANDLE;
        return vk_error(NULL, r, "vkCreateDevice");
    }
    vkGetDeviceQueue(b->dev, b->qfam, 0, &b->queue);

    for (int n = 1; n <= VK_MAX_BINDINGS; n++) {
        VkDescriptorSetLayoutBinding bind[VK_MAX_BINDINGS];
        for (int i = 0; i < n; i++)
            bind[i] = (VkDescriptorSetLayoutBinding){.binding = (uint32_t)i,
                                                     .descriptorType = VK_DESCRIPTOR_TYPE_STORAGE_BUFFER,
                                                     .descriptorCount = 1,
                                                     .stageFlags = VK_SHADER_STAGE_COMPUTE_BIT};
        VkDescriptorSetLayoutCreateInfo dl = {.sType = VK_STRUCTURE_TYPE_DESCRIPTOR_SET_LAYOUT_CREATE_INFO,
                                              .bindingCount = (uint32_t)n,
                                              .pBindings = bind};
        if ((r = vkCreateDescriptorSetLayout(b->dev, &dl, NULL, &b->dsl[n])) != VK_SUCCESS)
            return vk_error(NULL, r, "vkCreateDescriptorSetLayout");
        VkPushConstantRange pcr = {VK_SHADER_STAGE_COMPUTE_BIT, 0, VK_PUSH_BYTES};
        VkPipelineLayoutCreateInfo pl = {.sType = VK_STRUCTURE_TYPE_PIPELINE_LAYOUT_CREATE_INFO,
                                         .setLayoutCount = 1,
                                         .pSetLayouts = &b->dsl[n],
                                         .pushConstantRangeCount = 1,
                                         .pPushConstantRanges = &pcr};
        if ((r = vkCreatePipelineLayout(b->dev, &pl, NULL, &b->layout[n])) != VK_SUCCESS)
            return vk_error(NULL, r, "vkCreatePipelineLayout");
    }
    VkPipelineCacheCreateInfo pci = {.sType = VK_STRUCTURE_TYPE_PIPELINE_CACHE_CREATE_INFO};
    if ((r = vkCreatePipelineCache(b->dev, &pci, NULL, &b->pcache)) != VK_SUCCESS)
        return vk_error(NULL, r, "vkCreatePipelineCache");
    VkCommandPoolCreateInfo cpi = {.sType = VK_STRUCTURE_TYPE_COMMAND_POOL_CREATE_INFO,
                                   .flags = VK_COMMAND_POOL_CREATE_RESET_COMMAND_BUFFER_BIT,
                                   .queueFamilyIndex = b->qfam};
    if ((r = vkCreateCommandPool(b->dev, &cpi, NULL, &b->cmdpool)) != VK_SUCCESS)
        return vk_error(NULL, r, "vkCreateCommandPool");
    b->staging_size = STAGING_BYTES;
    for (int i = 0; i < VK_FRAMES; i++) {
        vk_frame *f = &b->frames[i];
        VkCommandBufferAllocateInfo cai = {.sType = VK_STRUCTURE_TYPE_COMMAND_BUFFER_ALLOCATE_INFO,
                                           .commandPool = b->cmdpool,
                                           .level = VK_COMMAND_BUFFER_LEVEL_PRIMARY,
                                           .commandBufferCount = 1};
        if ((r = vkAllocateCommandBuffers(b->dev, &cai, &f->cb)) != VK_SUCCESS)
            return vk_error(NULL, r, "vkAllocateCommandBuffers");
        VkFenceCreateInfo fci = {.sType = VK_STRUCTURE_TYPE_FENCE_CREATE_INFO};
        if ((r = vkCreateFence(b->dev, &fci, NULL, &f->fence)) != VK_SUCCESS) return vk_error(NULL, r, "vkCreateFence");
        VkDescriptorPoolSize ps = {VK_DESCRIPTOR_TYPE_STORAGE_BUFFER, VK_SETS_PER_FRAME * VK_MAX_BINDINGS};
        VkDescriptorPoolCreateInfo dpi = {.sType = VK_STRUCTURE_TYPE_DESCRIPTOR_POOL_CREATE_INFO,
                                          .maxSets = VK_SETS_PER_FRAME,
                                          .poolSizeCount = 1,
                                          .pPoolSizes = &ps};
        if ((r = vkCreateDescriptorPool(b->dev, &dpi, NULL, &f->dpool)) != VK_SUCCESS)
            return vk_error(NULL, r, "vkCreateDescriptorPool");
        ldm_status st = block_create(b, b->staging_size, true, &f->staging);
        if (st) return st;
    }
    return LDM_OK;
}

ldm_status ldm_vk_backend_create(const ldm_vk_options *opts, int32_t n_threads, ldm_backend **out) {
    if (!out) return ldm_fail(LDM_ERR_INVALID_ARG, "ldm_vk_backend_create: out is NULL");
    *out = NULL;
    ldm_vk_options o;
    if (opts) o = *opts;
    else ldm_vk_options_init(&o);
    bool validation = o.validation > 0;
    if (o.validation < 0) {
        const char *env = getenv("LDM_VULKAN_VALIDATION");
        validation = env && env[0] && strcmp(env, "0") != 0;
    }
    ldm_vk_backend *b = calloc(1, sizeof *b);
    if (!b) return ldm_fail(LDM_ERR_NO_MEMORY, "out of memory");
    b->base.ops = &vk_ops;
    b->base.n_threads = n_threads > 0 ? n_threads : 1;
    b->validation = validation;
    ldm_status st = create_instance(b, validation, &b->inst);
    if (st) {
        free(b);
        return st;
    }
    dev_desc *d = NULL;
    uint32_t n = 0;
    if ((st = enumerate(b->inst, &d, &n))) goto fail;
    int pick;
    if (o.device_index >= 0) {
        if ((uint32_t)o.device_index >= n) {
            st = ldm_fail(LDM_ERR_BACKEND, "vulkan: device index %d requested, %u device(s) found", (int)o.device_index, n);
            goto fail;
        }
        pick = o.device_index;
        if (!d[pick].suitable) {
            st = ldm_fail(LDM_ERR_BACKEND, "vulkan: device %d (%s) %s", pick, d[pick].props.deviceName, d[pick].why);
            goto fail;
        }
    } else {
        pick = pick_best(d, n, o.allow_cpu_device);
        if (pick < 0) {
            if (n == 0) st = ldm_fail(LDM_ERR_BACKEND, "vulkan: no Vulkan device found");
            else if (!o.allow_cpu_device && pick_best(d, n, true) >= 0)
                st = ldm_fail(LDM_ERR_BACKEND, "vulkan: only a CPU implementation (%s) is available",
                              d[pick_best(d, n, true)].props.deviceName);
            else st = ldm_fail(LDM_ERR_BACKEND, "vulkan: no suitable device (%s %s)", d[0].props.deviceName, d[0].why);
            goto fail;
        }
    }
    if ((st = setup_device(b, &d[pick], &o))) goto fail;
    free(d);
    *out = &b->base;
    return LDM_OK;
fail:
    free(d);
    {
        /* keep the message: teardown must not overwrite it */
        char msg[1024];
        snprintf(msg, sizeof msg, "%s", ldm_last_error());
        b->validation = false;
        vk_destroy(&b->base);
        ldm_fail(st, "%s", msg);
    }
    return st;
}

const char *ldm_vk_device_name(const ldm_backend *be) { return ((const ldm_vk_backend *)be)->device_name; }

bool ldm_vk_is_cpu_device(const ldm_backend *be) {
    return ((const ldm_vk_backend *)be)->device_type == VK_PHYSICAL_DEVICE_TYPE_CPU;
}

int ldm_vk_validation_errors(const ldm_backend *be) { return ((const ldm_vk_backend *)be)->validation_errors; }

uint64_t ldm_vk_budget(const ldm_backend *be) { return ((const ldm_vk_backend *)be)->budget; }

uint64_t ldm_vk_pool_bytes(const ldm_backend *be) { return ((const ldm_vk_backend *)be)->pool_bytes; }

ldm_status ldm_vk_sync(ldm_backend *be) { return finish_all(vkb(be)); }

bool ldm_vk_fp16_weights(const ldm_backend *be) { return ((const ldm_vk_backend *)be)->fp16_weights; }

uint64_t ldm_vk_weight_bytes(const ldm_backend *be) { return ((const ldm_vk_backend *)be)->weight_bytes; }
