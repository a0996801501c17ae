/* A stand-in for libcuda.so.1 for the runtime's tests on machines without
 * a GPU (HASTEN_CUDA_DRIVER points the runtime at it). Device memory is host
 * memory, and kernels loaded as PTX run on the CPU through the PTX emulator
 * (ptx_emulator.cpp), so a CUDA module's outputs can be checked against the
 * CPU target's; cubins cannot run here (their launches do nothing). It also
 * checks the runtime's side: which image it loads for a device, that every
 * allocation is freed, and that a failing driver call becomes a clean error.
 *
 *   FAKE_CUDA_ARCH=80       the device's compute capability (default 80;
 *                           an architecture no cubin fits, such as 72,
 *                           makes the runtime load the PTX)
 *   FAKE_CUDA_FAIL=name     that driver call fails (CUDA_ERROR_OUT_OF_MEMORY
 *                           for allocations, CUDA_ERROR_LAUNCH_FAILED else)
 *   FAKE_CUDA_EXECUTE=0     PTX kernels are not run
 *   FAKE_CUDA_LOG=path      one line per module load and the first launch,
 *                           and at exit the modules and allocations still live
 *
 * When the module is loaded as PTX, each kernel's parameter list is read
 * from it, and every pointer a launch passes must lie in a live device
 * allocation: a host address reaching a kernel is logged ("host pointer").
 * A kernel's access outside every device allocation fails its launch with
 * CUDA_ERROR_ILLEGAL_ADDRESS and the emulator's account on stderr.
 * Device memory is mapped without access but while the driver copies or a
 * kernel runs, so host code that reads it dies with SIGSEGV, as it would on
 * a real GPU.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "ptx_emulator.h"

typedef int CUresult;
enum { OK = 0, OUT_OF_MEMORY = 2, INVALID_PTX = 218, ILLEGAL_ADDRESS = 700, LAUNCH_FAILED = 719 };

static long live, modules, launches, hostPointers, uploads, emulated;
static unsigned long long uploadBytes;
static FILE *logFile;

/* Live allocations, to tell device addresses from host ones. */
enum { kMaxAllocations = 1 << 16 };
static struct {
  char *base;
  size_t size;
} allocations[kMaxAllocations];

static int highWater; /* slots above it were never used */

static void remember(void *base, size_t size) {
  for (int i = 0; i < kMaxAllocations; ++i)
    if (!allocations[i].base) {
      allocations[i].base = (char *)base;
      allocations[i].size = size;
      if (i >= highWater)
        highWater = i + 1;
      return;
    }
}
static int isDevice(const char *address) {
  for (int i = 0; i < highWater; ++i)
    if (allocations[i].base && address >= allocations[i].base &&
        address <= allocations[i].base + allocations[i].size)
      return 1;
  return 0;
}

/* A loaded module: its PTX, parsed to run (NULL for a cubin). */
struct Module {
  char *ptx;
  PtxModule *program;
};
/* Per kernel which parameters are pointers. */
struct Kernel {
  char name[256];
  struct Module *module;
  int count;
  unsigned char pointer[512];
};
static CUresult emulate(struct Kernel *kernel, const unsigned grid[3], const unsigned block[3],
                        unsigned shared, void **params);

static FILE *logged(void) {
  if (!logFile && getenv("FAKE_CUDA_LOG"))
    logFile = fopen(getenv("FAKE_CUDA_LOG"), "a");
  return logFile;
}

static int failing(const char *name) {
  const char *fail = getenv("FAKE_CUDA_FAIL");
  return fail && strcmp(fail, name) == 0;
}

static int executing(void) {
  const char *execute = getenv("FAKE_CUDA_EXECUTE");
  return !execute || strcmp(execute, "0") != 0;
}

static int arch(void) { return getenv("FAKE_CUDA_ARCH") ? atoi(getenv("FAKE_CUDA_ARCH")) : 80; }

__attribute__((destructor)) static void report(void) {
  if (logged()) {
    fprintf(logFile,
            "copies to the device %ld (%llu bytes), launches %ld, host pointers passed to "
            "kernels %ld, modules loaded at exit %ld, live allocations at exit %ld, "
            "launches emulated %ld\n",
            uploads, uploadBytes, launches, hostPointers, modules, live, emulated);
    fclose(logFile);
  }
}

CUresult cuGetErrorName(CUresult r, const char **name) {
  *name = r == OUT_OF_MEMORY     ? "CUDA_ERROR_OUT_OF_MEMORY"
          : r == LAUNCH_FAILED   ? "CUDA_ERROR_LAUNCH_FAILED"
          : r == ILLEGAL_ADDRESS ? "CUDA_ERROR_ILLEGAL_ADDRESS"
                                 : "CUDA_ERROR_UNKNOWN";
  return OK;
}
CUresult cuGetErrorString(CUresult r, const char **text) {
  *text = r == OUT_OF_MEMORY     ? "out of memory"
          : r == ILLEGAL_ADDRESS ? "an illegal memory access was encountered"
                                 : "the fake driver was told to fail";
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
  struct Module *m = calloc(1, sizeof(struct Module));
  if (memcmp(bytes, "\x7f" "ELF", 4) != 0) {
    m->ptx = strdup(bytes);
    if (executing()) {
      char error[1024];
      m->program = ptxLoad(bytes, error, sizeof(error));
      if (!m->program) { /* a real driver would accept it: say why it cannot run here */
        fprintf(stderr, "fake_cuda: the PTX emulator cannot run this module: %s\n", error);
        if (logged())
          fprintf(logFile, "PTX emulator: %s\n", error);
        free(m->ptx);
        free(m);
        return INVALID_PTX;
      }
    }
  }
  *module = m;
  ++modules;
  return OK;
}
CUresult cuModuleUnload(void *module) {
  struct Module *m = module;
  if (m->program)
    ptxUnload(m->program);
  free(m->ptx);
  free(m);
  --modules;
  return OK;
}
CUresult cuModuleGetFunction(void **function, void *module, const char *name) {
  if (failing("cuModuleGetFunction"))
    return LAUNCH_FAILED;
  struct Kernel *kernel = calloc(1, sizeof(struct Kernel));
  snprintf(kernel->name, sizeof(kernel->name), "%s", name);
  kernel->count = -1;
  kernel->module = module;
  const char *ptx = kernel->module->ptx;
  /* ".entry NAME(\n .param .u64 .ptr .align 1 NAME_param_0,\n .param .f32 ..." */
  char header[300];
  snprintf(header, sizeof(header), ".entry %s(", name);
  const char *at = ptx ? strstr(ptx, header) : NULL;
  if (at) {
    const char *end = strchr(at, ')');
    kernel->count = 0;
    for (const char *p = strstr(at, ".param"); p && p < end && kernel->count < 512;
         p = strstr(p + 1, ".param")) {
      const char *line = strchr(p, '\n');
      const char *pointer = strstr(p, ".ptr");
      kernel->pointer[kernel->count++] = pointer && (!line || pointer < line);
    }
  }
  *function = kernel;
  return OK;
}
CUresult cuLaunchKernel(void *f, unsigned gx, unsigned gy, unsigned gz, unsigned bx,
                        unsigned by, unsigned bz, unsigned shared, void *stream, void **params,
                        void **extra) {
  if (failing("cuLaunchKernel"))
    return LAUNCH_FAILED;
  struct Kernel *kernel = f;
  ++launches;
  if (logged() && launches == 1)
    fprintf(logFile, "first launch %s grid %ux%ux%u block %ux%ux%u\n", kernel->name, gx, gy,
            gz, bx, by, bz);
  for (int i = 0; i < kernel->count; ++i) {
    if (!kernel->pointer[i])
      continue;
    const char *address = *(const char *const *)params[i];
    /* MLIR's memref of a global has 0xdeadbeef as its never-freed
       "allocated" pointer; only the aligned one is read. */
    if (address == (const char *)0xdeadbeef)
      continue;
    if (!isDevice(address)) {
      ++hostPointers;
      if (logged())
        fprintf(logFile, "host pointer %p passed to %s parameter %d\n", (const void *)address,
                kernel->name, i);
    }
  }
  if (kernel->module && kernel->module->program) {
    const unsigned grid[3] = {gx, gy, gz}, block[3] = {bx, by, bz};
    return emulate(kernel, grid, block, shared, params);
  }
  return OK;
}
CUresult cuStreamCreate(void **stream, unsigned flags) {
  *stream = malloc(1);
  return OK;
}
CUresult cuStreamSynchronize(void *stream) {
  return failing("cuStreamSynchronize") ? LAUNCH_FAILED : OK;
}

static size_t pages(size_t size) { return (size + 4095) / 4096 * 4096; }

/* Opens device memory to the driver's own copies, and closes it after. */
static void access(const void *device, int open) {
  for (int i = 0; i < kMaxAllocations; ++i)
    if (allocations[i].base && (const char *)device >= allocations[i].base &&
        (const char *)device <= allocations[i].base + allocations[i].size) {
      mprotect(allocations[i].base, pages(allocations[i].size),
               open ? PROT_READ | PROT_WRITE : PROT_NONE);
      return;
    }
}

static CUresult allocate(unsigned long long *pointer, size_t size, const char *name) {
  if (failing(name) || failing("allocations"))
    return OUT_OF_MEMORY;
  if (!size)
    size = 1;
  void *memory = mmap(NULL, pages(size), PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (memory == MAP_FAILED)
    return OUT_OF_MEMORY;
  *pointer = (unsigned long long)memory;
  remember(memory, size);
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
  for (int i = 0; i < kMaxAllocations; ++i)
    if (allocations[i].base == (char *)pointer) {
      munmap(allocations[i].base, pages(allocations[i].size));
      allocations[i].base = NULL;
      --live;
      return OK;
    }
  return LAUNCH_FAILED;
}
CUresult cuMemFreeAsync(unsigned long long pointer, void *stream) {
  return cuMemFree_v2(pointer);
}
CUresult cuMemcpyHtoD_v2(unsigned long long device, const void *host, size_t size) {
  if (failing("cuMemcpyHtoD"))
    return LAUNCH_FAILED;
  ++uploads;
  uploadBytes += size;
  access((void *)device, 1);
  memcpy((void *)device, host, size);
  access((void *)device, 0);
  return OK;
}
CUresult cuMemcpyDtoH_v2(void *host, unsigned long long device, size_t size) {
  if (failing("cuMemcpyDtoH"))
    return LAUNCH_FAILED;
  access((void *)device, 1);
  memcpy(host, (const void *)device, size);
  access((void *)device, 0);
  return OK;
}
/* Either side may be host or device memory (unified addressing). */
static CUresult copy(unsigned long long to, unsigned long long from, size_t size,
                     const char *name) {
  if (failing(name))
    return LAUNCH_FAILED;
  access((void *)to, 1);
  access((void *)from, 1);
  memmove((void *)to, (const void *)from, size);
  access((void *)to, 0);
  access((void *)from, 0);
  return OK;
}
CUresult cuMemcpyDtoD_v2(unsigned long long to, unsigned long long from, size_t size) {
  return copy(to, from, size, "cuMemcpyDtoD");
}
CUresult cuMemcpyAsync(unsigned long long to, unsigned long long from, size_t size,
                       void *stream) {
  return copy(to, from, size, "cuMemcpyAsync");
}
CUresult cuMemsetD8_v2(unsigned long long device, unsigned char value, size_t size) {
  access((void *)device, 1);
  memset((void *)device, value, size);
  access((void *)device, 0);
  return OK;
}

/* Kernels run with every device allocation open; memory they allocate
   (device-side malloc) is device memory like any other. */
static void openAll(int open) {
  for (int i = 0; i < highWater; ++i)
    if (allocations[i].base)
      mprotect(allocations[i].base, pages(allocations[i].size),
               open ? PROT_READ | PROT_WRITE : PROT_NONE);
}
static void *deviceMalloc(size_t size) {
  unsigned long long pointer;
  if (allocate(&pointer, size, "deviceMalloc") != OK)
    return NULL;
  mprotect((void *)pointer, pages(size ? size : 1), PROT_READ | PROT_WRITE);
  return (void *)pointer;
}
static void deviceFree(void *pointer) { cuMemFree_v2((unsigned long long)pointer); }

static CUresult emulate(struct Kernel *kernel, const unsigned grid[3], const unsigned block[3],
                        unsigned shared, void **params) {
  static unsigned long long bases[kMaxAllocations], sizes[kMaxAllocations];
  size_t count = 0;
  for (int i = 0; i < highWater; ++i)
    if (allocations[i].base) {
      bases[count] = (unsigned long long)allocations[i].base;
      sizes[count++] = allocations[i].size;
    }
  PtxMemory memory = {(const uint64_t *)bases, (const uint64_t *)sizes, count, deviceMalloc,
                      deviceFree};
  char error[1024];
  openAll(1);
  int failed = ptxLaunch(kernel->module->program, kernel->name, grid, block, shared, params,
                         &memory, error, sizeof(error));
  openAll(0);
  ++emulated;
  if (failed) {
    fprintf(stderr, "fake_cuda: %s\n", error);
    if (logged())
      fprintf(logFile, "kernel failed: %s\n", error);
    return ILLEGAL_ADDRESS;
  }
  return OK;
}
