// The public header must compile as C++ (extern "C", no C-only constructs) and link against the
// shared library from a C++ program.
#include <ldm/ldm.h>

#include <cstdio>
#include <cstring>

int main() {
    int failures = 0;
    if (std::strcmp(ldm_version(), LDM_VERSION_STRING) != 0) {
        std::fprintf(stderr, "ldm_version() %s != %s\n", ldm_version(), LDM_VERSION_STRING);
        failures++;
    }
    if (ldm_version_number() != LDM_VERSION_NUMBER) {
        std::fprintf(stderr, "ldm_version_number() %d != %d\n", ldm_version_number(), LDM_VERSION_NUMBER);
        failures++;
    }
    ldm_txt2img_params p;
    ldm_txt2img_params_init(&p);
    if (p.struct_size != sizeof p || p.width != 0) failures++;
    ldm_context_params cp;
    ldm_context_params_init(&cp);
    cp.backend = LDM_BACKEND_CPU;
    if (std::strcmp(ldm_status_string(LDM_ERR_FORMAT), "LDM_ERR_FORMAT") != 0) failures++;
    ldm_sampler *s = nullptr;
    if (ldm_sampler_create("euler", &s) != LDM_OK || std::strcmp(ldm_sampler_name(s), "euler") != 0) failures++;
    ldm_sampler_destroy(s);
    std::printf("C++: libldm %s, %d failures\n", ldm_version(), failures);
    return failures ? 1 : 0;
}
