/*
 * A stand-in libnvidia-ml.so.1 for CPU-only test machines. It exists ONLY to exercise the bun:ffi
 * calling conventions and struct layouts of src/gpu/nvml.ts (argument types, buffer sizes, field
 * offsets); it knows nothing about real GPUs. The real check is running `studio-runner gpus` on
 * an NVIDIA machine (H200). Written from the documented nvml.h ABI; two synthetic devices:
 *   0: every field supported, no ECC errors, MIG off;
 *   1: utilization and MIG NOT_SUPPORTED, 2 uncorrected volatile ECC errors.
 * FAKE_NVML_INIT_FAIL=1 in the environment, or fakeNvmlSetInitFail(1), makes nvmlInit_v2 fail
 * with NVML_ERROR_DRIVER_NOT_LOADED; fakeNvmlOpenSessions() tells whether every init was shut down.
 */
#include <stdlib.h>
#include <string.h>

typedef int nvmlReturn_t;
#define NVML_SUCCESS 0
#define NVML_ERROR_UNINITIALIZED 1
#define NVML_ERROR_INVALID_ARGUMENT 2
#define NVML_ERROR_NOT_SUPPORTED 3
#define NVML_ERROR_INSUFFICIENT_SIZE 7
#define NVML_ERROR_DRIVER_NOT_LOADED 9

typedef struct {
  char busIdLegacy[16];
  unsigned int domain;
  unsigned int bus;
  unsigned int device;
  unsigned int pciDeviceId;
  unsigned int pciSubSystemId;
  char busId[32];
} nvmlPciInfo_t;

typedef struct { unsigned long long total, free, used; } nvmlMemory_t;
typedef struct { unsigned int gpu, memory; } nvmlUtilization_t;

typedef struct {
  const char *uuid;
  const char *name;
  const char *busId;
  unsigned int bus;
  unsigned long long total, free;
  int hasUtil; unsigned int util, memUtil;
  unsigned long long eccUncorrected;
  int hasMig; unsigned int mig;
} fakeDevice;

static fakeDevice devices[2] = {
  {"GPU-11111111-2222-3333-4444-555555555555", "Fake NVIDIA H200", "00000000:19:00.0", 0x19,
   150754820096ULL, 150000000000ULL, 1, 7, 3, 0, 1, 0},
  {"GPU-aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee", "Fake NVIDIA H200 (ECC)", "00000000:3B:00.0", 0x3B,
   150754820096ULL, 100000000000ULL, 0, 0, 0, 2, 0, 0},
};

static int initCount = 0;
static int initFail = 0;

void fakeNvmlSetInitFail(int fail) { initFail = fail; }
int fakeNvmlOpenSessions(void) { return initCount; }

nvmlReturn_t nvmlInit_v2(void) {
  const char *fail = getenv("FAKE_NVML_INIT_FAIL");
  if (initFail || (fail && strcmp(fail, "1") == 0)) return NVML_ERROR_DRIVER_NOT_LOADED;
  initCount++;
  return NVML_SUCCESS;
}

nvmlReturn_t nvmlShutdown(void) {
  if (initCount == 0) return NVML_ERROR_UNINITIALIZED;
  initCount--;
  return NVML_SUCCESS;
}

const char *nvmlErrorString(nvmlReturn_t r) {
  switch (r) {
    case NVML_SUCCESS: return "Success";
    case NVML_ERROR_UNINITIALIZED: return "Uninitialized";
    case NVML_ERROR_INVALID_ARGUMENT: return "Invalid Argument";
    case NVML_ERROR_NOT_SUPPORTED: return "Not Supported";
    case NVML_ERROR_INSUFFICIENT_SIZE: return "Insufficient Size";
    case NVML_ERROR_DRIVER_NOT_LOADED: return "Driver Not Loaded";
    default: return "Unknown Error";
  }
}

static fakeDevice *dev(void *handle) {
  if (initCount == 0) return NULL;
  if (handle == &devices[0]) return &devices[0];
  if (handle == &devices[1]) return &devices[1];
  return NULL;
}

nvmlReturn_t nvmlDeviceGetCount_v2(unsigned int *count) {
  if (initCount == 0) return NVML_ERROR_UNINITIALIZED;
  if (!count) return NVML_ERROR_INVALID_ARGUMENT;
  *count = 2;
  return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetHandleByIndex_v2(unsigned int index, void **device) {
  if (initCount == 0) return NVML_ERROR_UNINITIALIZED;
  if (index >= 2 || !device) return NVML_ERROR_INVALID_ARGUMENT;
  *device = &devices[index];
  return NVML_SUCCESS;
}

static nvmlReturn_t copyString(const char *s, char *out, unsigned int length) {
  if (!out) return NVML_ERROR_INVALID_ARGUMENT;
  if (strlen(s) + 1 > length) return NVML_ERROR_INSUFFICIENT_SIZE;
  memset(out, 0, length);
  strcpy(out, s);
  return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetUUID(void *device, char *uuid, unsigned int length) {
  fakeDevice *d = dev(device);
  if (!d) return NVML_ERROR_INVALID_ARGUMENT;
  if (length < 96) return NVML_ERROR_INSUFFICIENT_SIZE; /* the binding passes the v2 size */
  return copyString(d->uuid, uuid, length);
}

nvmlReturn_t nvmlDeviceGetName(void *device, char *name, unsigned int length) {
  fakeDevice *d = dev(device);
  if (!d) return NVML_ERROR_INVALID_ARGUMENT;
  if (length < 96) return NVML_ERROR_INSUFFICIENT_SIZE;
  return copyString(d->name, name, length);
}

nvmlReturn_t nvmlDeviceGetPciInfo_v3(void *device, nvmlPciInfo_t *pci) {
  fakeDevice *d = dev(device);
  if (!d || !pci) return NVML_ERROR_INVALID_ARGUMENT;
  memset(pci, 0, sizeof *pci);
  /* The legacy field holds a different (short-domain) form, so reading the wrong offset shows. */
  strcpy(pci->busIdLegacy, d->busId + 4);
  pci->domain = 0;
  pci->bus = d->bus;
  pci->device = 0;
  pci->pciDeviceId = 0x233510DE;
  pci->pciSubSystemId = 0x18BE10DE;
  strcpy(pci->busId, d->busId);
  return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetMemoryInfo(void *device, nvmlMemory_t *memory) {
  fakeDevice *d = dev(device);
  if (!d || !memory) return NVML_ERROR_INVALID_ARGUMENT;
  memory->total = d->total;
  memory->free = d->free;
  memory->used = d->total - d->free;
  return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetUtilizationRates(void *device, nvmlUtilization_t *u) {
  fakeDevice *d = dev(device);
  if (!d || !u) return NVML_ERROR_INVALID_ARGUMENT;
  if (!d->hasUtil) return NVML_ERROR_NOT_SUPPORTED;
  u->gpu = d->util;
  u->memory = d->memUtil;
  return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetTotalEccErrors(void *device, int errorType, int counterType, unsigned long long *count) {
  fakeDevice *d = dev(device);
  if (!d || !count) return NVML_ERROR_INVALID_ARGUMENT;
  if (errorType != 1 || counterType != 0) return NVML_ERROR_INVALID_ARGUMENT; /* uncorrected, volatile */
  *count = d->eccUncorrected;
  return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetMigMode(void *device, unsigned int *current, unsigned int *pending) {
  fakeDevice *d = dev(device);
  if (!d || !current || !pending) return NVML_ERROR_INVALID_ARGUMENT;
  if (!d->hasMig) return NVML_ERROR_NOT_SUPPORTED;
  *current = d->mig;
  *pending = d->mig;
  return NVML_SUCCESS;
}
