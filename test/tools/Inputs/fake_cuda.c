/* A stand-in for libcuda.so.1 for the runtime's tests on machines without
 * a GPU (HASTEN_CUDA_DRIVER points the runtime at it). Device memory is host
 * memory and kernels do not run, so outputs mean nothing; what it checks is
 * the runtime's side: which image it loads for a device, that every
 * allocation is freed, and that a failing driver call becomes a clean error.
 *
 *   FAKE_CUDA_ARCH=80       the device's compute capability (default 80)
 *   FAKE_CUDA_FAIL=name     that driver call fails (CUDA_ERROR_OUT_OF_MEMORY
 *                           for allocations, CUDA_ERROR_LAUNCH_FAILED else)
 *   FAKE_CUDA_LOG=path      one line per module load and the first launch,
 *                           and at exit the modules and allocations still live
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef int CUresult;
enum { OK = 0, OUT_OF_MEMORY = 2, LAUNCH_FAILED = 719 };

static long live, modules, launches;
static FILE *logFile;

static FILE *logged(void) {
  if (!logFile && getenv("FAKE_CUDA_LOG"))
    logFile = fopen(getenv("FAKE_CUDA_LOG"), "a");
  return logFile;
}

static int failing(const char *name) {
  const char *fail = getenv("FAKE_CUDA_FAIL");
  return fail && strcmp(fail, name) == 0;
}

static int arch(void) { return getenv("FAKE_CUDA_ARCH") ? atoi(getenv("FAKE_CUDA_ARCH")) : 80; }

__attribute__((destructor)) static void report(void) {
  if (logged()) {
    fprintf(logFile, "launches %ld, modules loaded at exit %ld, live allocations at exit %ld\n",
            launches, modules, live);
    fclose(logFile);
  }
}

CUresult cuGetErrorName(CUresult r, const char **name) {
  *name = r == OUT_OF_MEMORY ? "CUDA_ERROR_OUT_OF_MEMORY"
          : r == LAUNCH_FAILED ? "CUDA_ERROR_LAUNCH_FAILED"
                               : "CUDA_ERROR_UNKNOWN";
  return OK;
}
CUresult cuGetErrorString(CUresult r, const char **text) {
  *text = r == OUT_OF_MEMORY ? "out of memory" : "the fake driver was told to fail";
  return OK;
}
CUresult cuInit(unsigned flags) { return failing("cuInit") ? LAUNCH_FAILED : OK; }
CUresult cuDeviceGetCount(int *count) {
  *count = 1;
  return OK;
}
CUresult cuDeviceGet(int *device, int ordinal) {
  *device = ordinal;
  return OK;
}
CUresult cuDeviceGetName(char *name, int length, int device) {
  snprintf(name, (size_t)length, "Fake GPU");
  return OK;
}
CUresult cuDeviceGetAttribute(int *value, int attribute, int device) {
  *value = attribute == 75 ? arch() / 10 : attribute == 76 ? arch() % 10 : 0;
  return OK;
}
CUresult cuDevicePrimaryCtxRetain(void **context, int device) {
  *context = (void *)0x1;
  return OK;
}
CUresult cuCtxSetCurrent(void *context) { return OK; }

CUresult cuModuleLoadData(void **module, const void *image) {
  if (failing("cuModuleLoadData"))
    return LAUNCH_FAILED;
  const char *bytes = (const char *)image;
  if (logged()) {
    if (memcmp(bytes, "\x7f" "ELF", 4) == 0)
      fprintf(logFile, "load cubin\n");
    else {
      const char *target = strstr(bytes, ".target ");
      int n = 0;
      while (target && target[8 + n] && target[8 + n] != '\n' && target[8 + n] != ',')
        ++n;
      fprintf(logFile, "load PTX for %.*s\n", n, target ? target + 8 : "?");
    }
  }
  *module = malloc(1);
  ++modules;
  return OK;
}
CUresult cuModuleUnload(void *module) {
  free(module);
  --modules;
  return OK;
}
CUresult cuModuleGetFunction(void **function, void *module, const char *name) {
  /* The handle is a copy of the name, so that launches can say which kernel. */
  *function = strdup(name);
  return failing("cuModuleGetFunction") ? LAUNCH_FAILED : OK;
}
CUresult cuLaunchKernel(void *f, unsigned gx, unsigned gy, unsigned gz, unsigned bx,
                        unsigned by, unsigned bz, unsigned shared, void *stream, void **params,
                        void **extra) {
  if (failing("cuLaunchKernel"))
    return LAUNCH_FAILED;
  ++launches;
  if (logged() && launches == 1)
    fprintf(logFile, "first launch %s grid %ux%ux%u block %ux%ux%u\n", (const char *)f, gx, gy,
            gz, bx, by, bz);
  return OK;
}
CUresult cuStreamCreate(void **stream, unsigned flags) {
  *stream = malloc(1);
  return OK;
}
CUresult cuStreamSynchronize(void *stream) {
  return failing("cuStreamSynchronize") ? LAUNCH_FAILED : OK;
}

static CUresult allocate(unsigned long long *pointer, size_t size, const char *name) {
  if (failing(name) || failing("allocations"))
    return OUT_OF_MEMORY;
  void *memory = calloc(size, 1);
  if (!memory)
    return OUT_OF_MEMORY;
  *pointer = (unsigned long long)memory;
  ++live;
  return OK;
}
CUresult cuMemAlloc_v2(unsigned long long *pointer, size_t size) {
  return allocate(pointer, size, "cuMemAlloc");
}
CUresult cuMemAllocManaged(unsigned long long *pointer, size_t size, unsigned flags) {
  return allocate(pointer, size, "cuMemAllocManaged");
}
CUresult cuMemAllocAsync(unsigned long long *pointer, size_t size, void *stream) {
  return allocate(pointer, size, "cuMemAllocAsync");
}
CUresult cuMemFree_v2(unsigned long long pointer) {
  free((void *)pointer);
  --live;
  return OK;
}
CUresult cuMemFreeAsync(unsigned long long pointer, void *stream) {
  return cuMemFree_v2(pointer);
}
CUresult cuMemcpyHtoD_v2(unsigned long long device, const void *host, size_t size) {
  if (failing("cuMemcpyHtoD"))
    return LAUNCH_FAILED;
  memcpy((void *)device, host, size);
  return OK;
}
CUresult cuMemcpyDtoH_v2(void *host, unsigned long long device, size_t size) {
  if (failing("cuMemcpyDtoH"))
    return LAUNCH_FAILED;
  memcpy(host, (const void *)device, size);
  return OK;
}
