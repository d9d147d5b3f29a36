/*
 * A stand-in for the NVIDIA driver's libcuda.so.1, for hosts without a GPU.
 *
 * It exports the few driver API calls TCV's binding makes (tcv/gpu/cuda.py), with
 * the driver's signatures and error codes (cuda.h). What it reports is chosen at
 * run time by the environment:
 *
 *   FAKECUDA_SCENARIO  none        cuInit answers CUDA_ERROR_NO_DEVICE (100)
 *                      h100        one H100: compute capability 9.0, PCI 0000:3b:00.0
 *                      two         an H100 and an A100 (8.0, PCI 0000:86:00.0)
 *                      init-error  cuInit answers $FAKECUDA_INIT_ERROR (default 999)
 *                      crash       cuInit dies of SIGSEGV, as a broken driver would
 *   FAKECUDA_DRIVER    what cuDriverGetVersion answers (default 12040, CUDA 12.4)
 */
#include <signal.h>
#include <stdlib.h>
#include <string.h>

typedef int CUresult;
typedef int CUdevice;
typedef struct { char bytes[16]; } CUuuid;

struct fake_gpu {
    const char *name;
    int major, minor, smem_optin, bus;
    unsigned char uuid[16];
};

static const struct fake_gpu H100 = {
    "NVIDIA H100 80GB HBM3", 9, 0, 232448, 0x3b,
    {0x5e, 0x3a, 0x1f, 0x20, 0x90, 0x0d, 0x4c, 0x11, 0x8a, 0x7e, 0x01, 0x23, 0x45, 0x67, 0x89, 0xab}};
static const struct fake_gpu A100 = {
    "NVIDIA A100-SXM4-80GB", 8, 0, 166912, 0x86,
    {0x0a, 0x10, 0x00, 0x00, 0x11, 0x11, 0x22, 0x22, 0x33, 0x33, 0x44, 0x44, 0x55, 0x55, 0x66, 0x66}};

static int initialised;

static const char *scenario(void) {
    const char *s = getenv("FAKECUDA_SCENARIO");
    return s ? s : "none";
}

static int device_count(void) {
    if (strcmp(scenario(), "h100") == 0) return 1;
    if (strcmp(scenario(), "two") == 0) return 2;
    return 0;
}

static const struct fake_gpu *device(CUdevice dev) {
    if (dev < 0 || dev >= device_count()) return NULL;
    return dev == 0 ? &H100 : &A100;
}

CUresult cuDriverGetVersion(int *version) {
    const char *v = getenv("FAKECUDA_DRIVER");
    if (!version) return 1;
    *version = v ? atoi(v) : 12040;
    return 0;
}

CUresult cuInit(unsigned int flags) {
    (void)flags;
    if (strcmp(scenario(), "crash") == 0) raise(SIGSEGV);
    if (strcmp(scenario(), "init-error") == 0) {
        const char *code = getenv("FAKECUDA_INIT_ERROR");
        return code ? atoi(code) : 999;
    }
    if (device_count() == 0) return 100; /* CUDA_ERROR_NO_DEVICE */
    initialised = 1;
    return 0;
}

CUresult cuDeviceGetCount(int *count) {
    if (!initialised) return 3; /* CUDA_ERROR_NOT_INITIALIZED */
    *count = device_count();
    return 0;
}

CUresult cuDeviceGet(CUdevice *out, int ordinal) {
    if (!initialised) return 3;
    if (!device(ordinal)) return 101; /* CUDA_ERROR_INVALID_DEVICE */
    *out = ordinal;
    return 0;
}

CUresult cuDeviceGetAttribute(int *value, int attrib, CUdevice dev) {
    const struct fake_gpu *g = device(dev);
    if (!initialised) return 3;
    if (!g) return 101;
    switch (attrib) {
    case 8: *value = 49152; return 0;           /* MAX_SHARED_MEMORY_PER_BLOCK */
    case 10: *value = 32; return 0;             /* WARP_SIZE */
    case 33: *value = g->bus; return 0;         /* PCI_BUS_ID */
    case 34: *value = 0; return 0;              /* PCI_DEVICE_ID */
    case 50: *value = 0; return 0;              /* PCI_DOMAIN_ID */
    case 75: *value = g->major; return 0;       /* COMPUTE_CAPABILITY_MAJOR */
    case 76: *value = g->minor; return 0;       /* COMPUTE_CAPABILITY_MINOR */
    case 97: *value = g->smem_optin; return 0;  /* MAX_SHARED_MEMORY_PER_BLOCK_OPTIN */
    default: return 1;                          /* CUDA_ERROR_INVALID_VALUE */
    }
}

CUresult cuDeviceGetName(char *name, int len, CUdevice dev) {
    const struct fake_gpu *g = device(dev);
    if (!initialised) return 3;
    if (!g || len <= 0) return 101;
    strncpy(name, g->name, (size_t)len - 1);
    name[len - 1] = 0;
    return 0;
}

CUresult cuDeviceGetUuid(CUuuid *uuid, CUdevice dev) {
    const struct fake_gpu *g = device(dev);
    if (!initialised) return 3;
    if (!g) return 101;
    memcpy(uuid->bytes, g->uuid, 16);
    return 0;
}

CUresult cuGetErrorName(CUresult error, const char **name) {
    switch (error) {
    case 0: *name = "CUDA_SUCCESS"; return 0;
    case 3: *name = "CUDA_ERROR_NOT_INITIALIZED"; return 0;
    case 35: *name = "CUDA_ERROR_INSUFFICIENT_DRIVER"; return 0;
    case 100: *name = "CUDA_ERROR_NO_DEVICE"; return 0;
    case 999: *name = "CUDA_ERROR_UNKNOWN"; return 0;
    default: *name = 0; return 1;
    }
}
