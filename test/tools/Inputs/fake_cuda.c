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
 * It is also a stand-in for cuBLASLt (HASTEN_CUBLASLT points the runtime at
 * this same library): the subset the runtime calls (handles, matmul and
 * layout descriptors, the heuristic, cublasLtMatmul), with the semantics
 * cublasLt.h documents (column-major layouts with a leading dimension,
 * transposed operands, strided batches, alpha and beta, the bias epilogue,
 * f32/bf16/f16 data and TF32 rounding), computed on the CPU. Arguments
 * real cuBLASLt refuses are refused (CUBLAS_STATUS_INVALID_VALUE or
 * NOT_SUPPORTED), and a product that would reach outside the device
 * allocations fails (EXECUTION_FAILED) with an account on stderr.
 * FAKE_CUDA_FAIL=cublasLtMatmul makes the product fail.
 *
 * When the module is loaded as PTX, each kernel's parameter list is read
 * from it, and every pointer a launch passes must lie in a live device
 * allocation: a host address reaching a kernel is logged ("host pointer").
 * A kernel's access outside every device allocation fails its launch with
 * CUDA_ERROR_ILLEGAL_ADDRESS and the emulator's account on stderr.
 * Device memory is mapped without access but while the driver copies or a
 * kernel runs, so host code that reads it dies with SIGSEGV, as it would on
 * a real GPU.
 *
 * Stream capture and graphs (cuStreamBeginCapture .. cuGraphLaunch): work
 * queued on a capturing stream (launches, with their parameters copied as
 * the PTX declares them; cuMemcpyAsync; cublasLtMatmul) is recorded, not
 * run, and runs when the instantiated graph is launched. A synchronizing
 * call while a capture is open (cuStreamSynchronize, cuMemAlloc, the
 * synchronous copies) fails with CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED and
 * invalidates the capture, as the driver's thread-local mode does. Stricter
 * than the driver: stream-ordered allocations (cuMemAllocAsync,
 * cuMemFreeAsync) inside a capture are refused too, since hasten's runtime
 * serves captured calls from its own pool. cuGraphExecUpdate takes a graph
 * of the same nodes (kinds and kernels) and refuses any other.
 *
 * Virtual memory management (cuMemAddressReserve, cuMemCreate, cuMemMap,
 * cuMemSetAccess and their inverses) with device and host locations, at a
 * 64 KiB granularity (FAKE_CUDA_GRANULE sets another): sizes and offsets off it, a mapping outside its
 * reservation or over another, access to a range not wholly mapped, and a
 * reservation freed while mapped are refused (CUDA_ERROR_INVALID_VALUE); a
 * range becomes device memory (as above) once its access is set. The log
 * counts what was mapped where. FAKE_CUDA_NO_HOST_VMM=1 makes the device
 * report no host-located mappings (attribute 145).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>
#include <sys/mman.h>

#include "ptx_emulator.h"

typedef int CUresult;
enum { OK = 0, INVALID_VALUE = 1, OUT_OF_MEMORY = 2, INVALID_PTX = 218, ILLEGAL_STATE = 401,
       ILLEGAL_ADDRESS = 700, LAUNCH_FAILED = 719, CAPTURE_UNSUPPORTED = 900,
       CAPTURE_INVALIDATED = 901, CAPTURE_UNMATCHED = 903, UPDATE_FAILURE = 910 };

static long live, modules, launches, hostPointers, uploads, emulated, gemms, reluGemms, geluGemms;
static long pinnedCopies, pageableCopies, pinnedLive;
static long synchronizations, captures, instantiations, updates, refusedUpdates, graphLaunches;
static long liveGraphs;
static unsigned long long uploadBytes;
static long reservationsMade, reservationsLive, physicalLive;
static unsigned long long mappedDeviceBytes, mappedHostBytes;
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
  unsigned short size[512]; /* bytes of each parameter (0: unknown) */
};
static CUresult emulate(struct Kernel *kernel, const unsigned grid[3], const unsigned block[3],
                        unsigned shared, void **params);
static CUresult run(struct Kernel *kernel, const unsigned grid[3], const unsigned block[3],
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
    fprintf(logFile, "stream synchronizations %ld\n", synchronizations);
    fprintf(logFile,
            "asynchronous host copies: through pinned memory %ld, from pageable memory %ld; "
            "pinned allocations live at exit %ld\n",
            pinnedCopies, pageableCopies, pinnedLive);
    if (captures)
      fprintf(logFile,
              "graphs: captured %ld, instantiated %ld, updated %ld, updates refused %ld, "
              "launched %ld, graphs and executables live at exit %ld\n",
              captures, instantiations, updates, refusedUpdates, graphLaunches, liveGraphs);
    if (reservationsMade)
      fprintf(logFile,
              "virtual memory: mapped device bytes %llu, mapped host bytes %llu; reservations "
              "live at exit %ld, physical allocations live at exit %ld\n",
              mappedDeviceBytes, mappedHostBytes, reservationsLive, physicalLive);
    fprintf(logFile,
            "copies to the device %ld (%llu bytes), launches %ld, host pointers passed to "
            "kernels %ld, modules loaded at exit %ld, live allocations at exit %ld, "
            "cuBLASLt GEMMs %ld (ReLU epilogue %ld, GELU epilogue %ld), launches emulated %ld\n",
            uploads, uploadBytes, launches, hostPointers, modules, live, gemms, reluGemms,
            geluGemms, emulated);
    fclose(logFile);
  }
}

CUresult cuGetErrorName(CUresult r, const char **name) {
  *name = r == OUT_OF_MEMORY           ? "CUDA_ERROR_OUT_OF_MEMORY"
          : r == LAUNCH_FAILED         ? "CUDA_ERROR_LAUNCH_FAILED"
          : r == ILLEGAL_ADDRESS       ? "CUDA_ERROR_ILLEGAL_ADDRESS"
          : r == INVALID_VALUE         ? "CUDA_ERROR_INVALID_VALUE"
          : r == CAPTURE_UNSUPPORTED   ? "CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED"
          : r == CAPTURE_INVALIDATED   ? "CUDA_ERROR_STREAM_CAPTURE_INVALIDATED"
          : r == UPDATE_FAILURE        ? "CUDA_ERROR_GRAPH_EXEC_UPDATE_FAILURE"
                                       : "CUDA_ERROR_UNKNOWN";
  return OK;
}
CUresult cuGetErrorString(CUresult r, const char **text) {
  *text = r == OUT_OF_MEMORY         ? "out of memory"
          : r == ILLEGAL_ADDRESS     ? "an illegal memory access was encountered"
          : r == INVALID_VALUE       ? "invalid argument"
          : r == CAPTURE_UNSUPPORTED ? "operation not permitted when stream is capturing"
          : r == CAPTURE_INVALIDATED ? "operation failed due to a previous error during capture"
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
  const char *noHostVmm = getenv("FAKE_CUDA_NO_HOST_VMM");
  *value = attribute == 75   ? arch() / 10
           : attribute == 76 ? arch() % 10
           : attribute == 145 ? !(noHostVmm && atoi(noHostVmm))
                              : 0;
  return OK;
}
CUresult cuDevicePrimaryCtxRetain(void **context, int device) {
  *context = (void *)0x1;
  return OK;
}
CUresult cuCtxSetCurrent(void *context) { return OK; }

/* ---- stream capture and graphs ---------------------------------------- */

enum { NODE_KERNEL, NODE_COPY, NODE_GEMM };
struct Node {
  int kind;
  struct Kernel *kernel; /* NODE_KERNEL */
  unsigned grid[3], block[3], shared;
  unsigned char *params; /* the parameters' bytes, back to back */
  size_t paramBytes;
  unsigned long long to, from, size; /* NODE_COPY */
  void *gemm;                        /* NODE_GEMM: a recorded cublasLtMatmul */
  size_t gemmBytes;
};
struct Graph {
  int count, capacity;
  struct Node *nodes;
};
static struct Graph *capturing;
static void *captureStream;
static int captureBroken;

static int capturingOn(void *stream) { return capturing && stream == captureStream; }
/* A call that synchronizes with the device while a capture is open: the
   driver refuses it and invalidates the capture. */
static int refusedInCapture(const char *name) {
  if (!capturing)
    return 0;
  captureBroken = 1;
  if (logged())
    fprintf(logFile, "%s refused during a stream capture\n", name);
  return 1;
}
static struct Node *addNode(int kind) {
  if (capturing->count == capturing->capacity) {
    capturing->capacity = capturing->capacity ? 2 * capturing->capacity : 64;
    capturing->nodes = realloc(capturing->nodes, capturing->capacity * sizeof(struct Node));
  }
  struct Node *node = &capturing->nodes[capturing->count++];
  memset(node, 0, sizeof(*node));
  node->kind = kind;
  return node;
}
/* A recorded parameter's room: 16-byte aligned, as the kernel reads it. */
static size_t paramSlot(size_t size) { return (size + 15) / 16 * 16; }
static void *duplicate(const void *bytes, size_t size) {
  void *copy = malloc(size ? size : 1);
  memcpy(copy, bytes, size);
  return copy;
}
static void clearGraph(struct Graph *g) {
  for (int i = 0; i < g->count; ++i) {
    free(g->nodes[i].params);
    free(g->nodes[i].gemm);
  }
  free(g->nodes);
  memset(g, 0, sizeof(*g));
}
static void copyGraph(struct Graph *to, const struct Graph *from) {
  to->count = to->capacity = from->count;
  to->nodes = calloc(from->count ? from->count : 1, sizeof(struct Node));
  for (int i = 0; i < from->count; ++i) {
    to->nodes[i] = from->nodes[i];
    if (from->nodes[i].params)
      to->nodes[i].params = duplicate(from->nodes[i].params, from->nodes[i].paramBytes);
    if (from->nodes[i].gemm)
      to->nodes[i].gemm = duplicate(from->nodes[i].gemm, from->nodes[i].gemmBytes);
  }
}

CUresult cuModuleLoadData(void **module, const void *image) {
  if (refusedInCapture("cuModuleLoadData"))
    return CAPTURE_UNSUPPORTED;
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
/* The bytes of the parameter declared from `p` to `end`: its type's size
   times the array's length (".param .align 8 .b8 name[16]"). */
static unsigned short paramBytes(const char *p, const char *end) {
  static const struct {
    const char *type;
    unsigned bytes;
  } types[] = {{".u64", 8}, {".s64", 8}, {".b64", 8}, {".f64", 8}, {".u32", 4}, {".s32", 4},
               {".b32", 4}, {".f32", 4}, {".u16", 2}, {".s16", 2}, {".b16", 2}, {".f16", 2},
               {".u8", 1},  {".s8", 1},  {".b8", 1}};
  unsigned bytes = 0;
  for (unsigned i = 0; i < sizeof(types) / sizeof(types[0]) && !bytes; ++i) {
    const char *at = strstr(p, types[i].type);
    if (at && at < end)
      bytes = types[i].bytes;
  }
  const char *bracket = memchr(p, '[', (size_t)(end - p));
  if (bracket)
    bytes *= (unsigned)atoi(bracket + 1);
  return (unsigned short)bytes;
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
      kernel->size[kernel->count] = paramBytes(p, line ? line : end);
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
  /* The driver refuses a launch with no blocks or no threads. */
  if (!gx || !gy || !gz || !bx || !by || !bz) {
    if (logged())
      fprintf(logFile, "launch with an empty grid refused\n");
    return INVALID_VALUE;
  }
  struct Kernel *kernel = f;
  if (capturingOn(stream)) {
    /* The parameters are copied now, as the driver does; they are checked
       when the graph runs them. */
    struct Node *node = addNode(NODE_KERNEL);
    node->kernel = kernel;
    node->grid[0] = gx, node->grid[1] = gy, node->grid[2] = gz;
    node->block[0] = bx, node->block[1] = by, node->block[2] = bz;
    node->shared = shared;
    for (int i = 0; i < kernel->count; ++i)
      node->paramBytes += paramSlot(kernel->size[i]);
    node->params = malloc(node->paramBytes ? node->paramBytes : 1);
    size_t at = 0;
    for (int i = 0; i < kernel->count; ++i) {
      memcpy(node->params + at, params[i], kernel->size[i]);
      at += paramSlot(kernel->size[i]);
    }
    return OK;
  }
  const unsigned grid[3] = {gx, gy, gz}, block[3] = {bx, by, bz};
  return run(kernel, grid, block, shared, params);
}

/* A launch that runs: its pointers checked, then emulated (PTX) or not
   (cubins). */
static CUresult run(struct Kernel *kernel, const unsigned grid[3], const unsigned block[3],
                    unsigned shared, void **params) {
  ++launches;
  if (logged() && launches == 1)
    fprintf(logFile, "first launch %s grid %ux%ux%u block %ux%ux%u\n", kernel->name, grid[0],
            grid[1], grid[2], block[0], block[1], block[2]);
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
  if (kernel->module && kernel->module->program)
    return emulate(kernel, grid, block, shared, params);
  return OK;
}
CUresult cuStreamCreate(void **stream, unsigned flags) {
  *stream = malloc(1);
  return OK;
}
CUresult cuStreamSynchronize(void *stream) {
  if (refusedInCapture("cuStreamSynchronize"))
    return CAPTURE_UNSUPPORTED;
  ++synchronizations;
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
  if (refusedInCapture("cuMemAlloc"))
    return CAPTURE_UNSUPPORTED;
  return allocate(pointer, size, "cuMemAlloc");
}
CUresult cuMemAllocManaged(unsigned long long *pointer, size_t size, unsigned flags) {
  if (refusedInCapture("cuMemAllocManaged"))
    return CAPTURE_UNSUPPORTED;
  return allocate(pointer, size, "cuMemAllocManaged");
}
CUresult cuMemAllocAsync(unsigned long long *pointer, size_t size, void *stream) {
  if (capturingOn(stream) && refusedInCapture("cuMemAllocAsync"))
    return CAPTURE_UNSUPPORTED;
  return allocate(pointer, size, "cuMemAllocAsync");
}
static CUresult release(unsigned long long pointer) {
  for (int i = 0; i < kMaxAllocations; ++i)
    if (allocations[i].base == (char *)pointer) {
      munmap(allocations[i].base, pages(allocations[i].size));
      allocations[i].base = NULL;
      --live;
      return OK;
    }
  return LAUNCH_FAILED;
}
CUresult cuMemFree_v2(unsigned long long pointer) {
  if (refusedInCapture("cuMemFree"))
    return CAPTURE_UNSUPPORTED;
  return release(pointer);
}
CUresult cuMemFreeAsync(unsigned long long pointer, void *stream) {
  if (capturingOn(stream) && refusedInCapture("cuMemFreeAsync"))
    return CAPTURE_UNSUPPORTED;
  return release(pointer);
}
/* The copies between host and device memory, synchronous or not (the
   stand-in runs both at once). */
static CUresult upload(unsigned long long device, const void *host, size_t size) {
  ++uploads;
  uploadBytes += size;
  access((void *)device, 1);
  memcpy((void *)device, host, size);
  access((void *)device, 0);
  return OK;
}
static CUresult download(void *host, unsigned long long device, size_t size) {
  access((void *)device, 1);
  memcpy(host, (const void *)device, size);
  access((void *)device, 0);
  return OK;
}
static CUresult fill(unsigned long long device, unsigned char value, size_t size) {
  access((void *)device, 1);
  memset((void *)device, value, size);
  access((void *)device, 0);
  return OK;
}
CUresult cuMemcpyHtoD_v2(unsigned long long device, const void *host, size_t size) {
  if (refusedInCapture("cuMemcpyHtoD"))
    return CAPTURE_UNSUPPORTED;
  if (failing("cuMemcpyHtoD"))
    return LAUNCH_FAILED;
  return upload(device, host, size);
}
CUresult cuMemcpyDtoH_v2(void *host, unsigned long long device, size_t size) {
  if (refusedInCapture("cuMemcpyDtoH"))
    return CAPTURE_UNSUPPORTED;
  if (failing("cuMemcpyDtoH"))
    return LAUNCH_FAILED;
  return download(host, device, size);
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
  if (refusedInCapture("cuMemcpyDtoD"))
    return CAPTURE_UNSUPPORTED;
  return copy(to, from, size, "cuMemcpyDtoD");
}
CUresult cuMemcpyAsync(unsigned long long to, unsigned long long from, size_t size,
                       void *stream) {
  if (capturingOn(stream)) {
    struct Node *node = addNode(NODE_COPY);
    node->to = to, node->from = from, node->size = size;
    return OK;
  }
  return copy(to, from, size, "cuMemcpyAsync");
}
/* Pinned host memory (cuMemAllocHost), to tell the asynchronous copies
   that are DMA from the ones the driver stages through its own buffer. */
enum { kMaxPinned = 64 };
static struct {
  char *base;
  size_t size;
} pinned[kMaxPinned];
/* ---- virtual memory management ---------------------------------------- */

enum { kMaxVmm = 256 };
/* FAKE_CUDA_GRANULE sets it (default 64 KiB). */
static size_t granule(void) {
  const char *set = getenv("FAKE_CUDA_GRANULE");
  return set && atol(set) > 0 ? (size_t)atol(set) : 65536;
}
struct CUmemLocation {
  int type, id;
};
struct CUmemAllocationProp {
  int type, requestedHandleTypes;
  struct CUmemLocation location;
  void *win32HandleMetaData;
  unsigned char allocFlags[8];
};
struct CUmemAccessDesc {
  struct CUmemLocation location;
  int flags;
};
static struct {
  char *base;
  size_t size;
} reservations[kMaxVmm];
static struct {
  size_t size;
  int location, released, mapped;
} physical[kMaxVmm]; /* handle h is slot h - 1 */
static struct {
  char *base;
  size_t size;
  int handle;
} mappings[kMaxVmm];

static int vmmLocation(const struct CUmemAllocationProp *prop) {
  return prop && prop->type == 1 && (prop->location.type == 1 || prop->location.type == 2)
             ? prop->location.type
             : 0;
}
CUresult cuMemGetAllocationGranularity(size_t *granularity,
                                       const struct CUmemAllocationProp *prop, int option) {
  if (!vmmLocation(prop))
    return INVALID_VALUE;
  *granularity = granule();
  return OK;
}
CUresult cuMemAddressReserve(unsigned long long *pointer, size_t size, size_t alignment,
                             unsigned long long address, unsigned long long flags) {
  if (!size || size % granule() || address || flags)
    return INVALID_VALUE;
  for (int i = 0; i < kMaxVmm; ++i)
    if (!reservations[i].base) {
      void *memory = mmap(NULL, size, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
      if (memory == MAP_FAILED)
        return OUT_OF_MEMORY;
      reservations[i].base = memory;
      reservations[i].size = size;
      ++reservationsMade;
      ++reservationsLive;
      *pointer = (unsigned long long)memory;
      return OK;
    }
  return OUT_OF_MEMORY;
}
CUresult cuMemAddressFree(unsigned long long pointer, size_t size) {
  for (int i = 0; i < kMaxVmm; ++i)
    if (mappings[i].base && mappings[i].base >= (char *)pointer &&
        mappings[i].base < (char *)pointer + size)
      return INVALID_VALUE;
  for (int i = 0; i < kMaxVmm; ++i)
    if (reservations[i].base == (char *)pointer && reservations[i].size == size) {
      munmap(reservations[i].base, size);
      reservations[i].base = NULL;
      --reservationsLive;
      return OK;
    }
  return INVALID_VALUE;
}
CUresult cuMemCreate(unsigned long long *handle, size_t size,
                     const struct CUmemAllocationProp *prop, unsigned long long flags) {
  if (!size || size % granule() || !vmmLocation(prop) || flags)
    return INVALID_VALUE;
  if (failing("cuMemCreate"))
    return OUT_OF_MEMORY;
  for (int i = 0; i < kMaxVmm; ++i)
    if (!physical[i].size) {
      physical[i].size = size;
      physical[i].location = vmmLocation(prop);
      physical[i].released = physical[i].mapped = 0;
      ++physicalLive;
      *handle = (unsigned long long)i + 1;
      return OK;
    }
  return OUT_OF_MEMORY;
}
static void dropPhysical(int slot) {
  if (physical[slot].released && !physical[slot].mapped) {
    physical[slot].size = 0;
    --physicalLive;
  }
}
CUresult cuMemRelease(unsigned long long handle) {
  if (handle < 1 || handle > kMaxVmm || !physical[handle - 1].size ||
      physical[handle - 1].released)
    return INVALID_VALUE;
  physical[handle - 1].released = 1;
  dropPhysical((int)handle - 1);
  return OK;
}
CUresult cuMemMap(unsigned long long pointer, size_t size, size_t offset,
                  unsigned long long handle, unsigned long long flags) {
  char *at = (char *)pointer;
  if (handle < 1 || handle > kMaxVmm || !physical[handle - 1].size ||
      physical[handle - 1].released || physical[handle - 1].mapped || offset || flags ||
      size != physical[handle - 1].size)
    return INVALID_VALUE;
  /* Whole granules of one reservation (whose base stands for an aligned
     one: mmap's pages are smaller than a granule). */
  int inside = 0;
  for (int i = 0; i < kMaxVmm; ++i)
    inside |= reservations[i].base && at >= reservations[i].base &&
              at + size <= reservations[i].base + reservations[i].size &&
              (at - reservations[i].base) % granule() == 0;
  for (int i = 0; i < kMaxVmm; ++i)
    if (mappings[i].base && at < mappings[i].base + mappings[i].size &&
        mappings[i].base < at + size)
      return INVALID_VALUE;
  if (!inside)
    return INVALID_VALUE;
  for (int i = 0; i < kMaxVmm; ++i)
    if (!mappings[i].base) {
      mappings[i].base = at;
      mappings[i].size = size;
      mappings[i].handle = (int)handle;
      physical[handle - 1].mapped = 1;
      if (physical[handle - 1].location == 2)
        mappedHostBytes += size;
      else
        mappedDeviceBytes += size;
      if (logged())
        fprintf(logFile, "map %zu bytes of %s memory\n", size,
                physical[handle - 1].location == 2 ? "host" : "device");
      return OK;
    }
  return OUT_OF_MEMORY;
}
/* Forgets the device allocation a mapped range became (its access set). */
static void forgetRange(const char *at) {
  for (int i = 0; i < highWater; ++i)
    if (allocations[i].base && at >= allocations[i].base &&
        at < allocations[i].base + allocations[i].size) {
      mprotect(allocations[i].base, allocations[i].size, PROT_NONE);
      allocations[i].base = NULL;
      return;
    }
}
CUresult cuMemUnmap(unsigned long long pointer, size_t size) {
  char *at = (char *)pointer;
  int found = 0;
  for (int i = 0; i < kMaxVmm; ++i)
    if (mappings[i].base && mappings[i].base >= at && mappings[i].base < at + size) {
      forgetRange(mappings[i].base);
      physical[mappings[i].handle - 1].mapped = 0;
      dropPhysical(mappings[i].handle - 1);
      mappings[i].base = NULL;
      found = 1;
    }
  return found ? OK : INVALID_VALUE;
}
CUresult cuMemSetAccess(unsigned long long pointer, size_t size,
                        const struct CUmemAccessDesc *desc, size_t count) {
  if (count != 1 || desc->location.type != 1 || desc->flags != 3)
    return INVALID_VALUE;
  /* Every byte of the range must be mapped. */
  for (char *at = (char *)pointer; at < (char *)pointer + size;) {
    int next = -1;
    for (int i = 0; i < kMaxVmm; ++i)
      if (mappings[i].base && at >= mappings[i].base && at < mappings[i].base + mappings[i].size)
        next = i;
    if (next < 0)
      return INVALID_VALUE;
    at = mappings[next].base + mappings[next].size;
  }
  remember((void *)pointer, size);
  return OK;
}

CUresult cuMemAllocHost_v2(void **pointer, size_t size) {
  if (refusedInCapture("cuMemAllocHost"))
    return CAPTURE_UNSUPPORTED;
  if (failing("cuMemAllocHost"))
    return OUT_OF_MEMORY;
  for (int i = 0; i < kMaxPinned; ++i)
    if (!pinned[i].base) {
      pinned[i].base = malloc(size ? size : 1);
      pinned[i].size = size;
      *pointer = pinned[i].base;
      ++pinnedLive;
      return OK;
    }
  return OUT_OF_MEMORY;
}
CUresult cuMemFreeHost(void *pointer) {
  for (int i = 0; i < kMaxPinned; ++i)
    if (pinned[i].base && pinned[i].base == pointer) {
      free(pinned[i].base);
      pinned[i].base = NULL;
      --pinnedLive;
      return OK;
    }
  return INVALID_VALUE;
}
static void countHostCopy(const void *host, size_t size) {
  for (int i = 0; i < kMaxPinned; ++i)
    if (pinned[i].base && (const char *)host >= pinned[i].base &&
        (const char *)host + size <= pinned[i].base + pinned[i].size) {
      ++pinnedCopies;
      return;
    }
  ++pageableCopies;
}
/* The asynchronous forms run at once: the stand-in's streams are in order
   and its host waits for everything. */
CUresult cuMemcpyHtoDAsync_v2(unsigned long long device, const void *host, size_t size,
                              void *stream) {
  if (capturingOn(stream) && refusedInCapture("cuMemcpyHtoDAsync"))
    return CAPTURE_UNSUPPORTED;
  if (failing("cuMemcpyHtoDAsync"))
    return LAUNCH_FAILED;
  countHostCopy(host, size);
  return upload(device, host, size);
}
CUresult cuMemcpyDtoHAsync_v2(void *host, unsigned long long device, size_t size, void *stream) {
  if (capturingOn(stream) && refusedInCapture("cuMemcpyDtoHAsync"))
    return CAPTURE_UNSUPPORTED;
  if (failing("cuMemcpyDtoHAsync"))
    return LAUNCH_FAILED;
  countHostCopy(host, size);
  return download(host, device, size);
}
CUresult cuMemcpyDtoDAsync_v2(unsigned long long to, unsigned long long from, size_t size,
                              void *stream) {
  if (capturingOn(stream) && refusedInCapture("cuMemcpyDtoDAsync"))
    return CAPTURE_UNSUPPORTED;
  return copy(to, from, size, "cuMemcpyDtoDAsync");
}
CUresult cuMemsetD8Async(unsigned long long device, unsigned char value, size_t size,
                         void *stream) {
  if (capturingOn(stream) && refusedInCapture("cuMemsetD8Async"))
    return CAPTURE_UNSUPPORTED;
  return fill(device, value, size);
}
CUresult cuMemsetD8_v2(unsigned long long device, unsigned char value, size_t size) {
  if (refusedInCapture("cuMemsetD8"))
    return CAPTURE_UNSUPPORTED;
  return fill(device, value, size);
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
static void deviceFree(void *pointer) { release((unsigned long long)pointer); }

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

/* ---- cuBLASLt ---------------------------------------------------------- */

enum { BLAS_OK = 0, BLAS_INVALID_VALUE = 7, BLAS_EXECUTION_FAILED = 13, BLAS_NOT_SUPPORTED = 15 };
enum { R_32F = 0, R_16F = 2, R_16BF = 14 };
enum { COMPUTE_32F = 68, COMPUTE_32F_FAST_TF32 = 77 };

struct LtHandle {
  int magic;
};
struct LtDesc {
  int compute, scale, transA, transB;
  unsigned epilogue;
  const void *bias;
};
struct LtLayout {
  int type;
  unsigned long long rows, cols;
  long long ld, batchStride;
  int batch;
};
struct LtPref {
  unsigned long long workspace;
};
typedef struct {
  unsigned long long data[8];
} LtAlgo;
typedef struct {
  LtAlgo algo;
  size_t workspaceSize;
  int state;
  float wavesCount;
  int reserved[4];
} LtHeuristic;

const char *cublasLtGetStatusName(int status) {
  return status == BLAS_OK                 ? "CUBLAS_STATUS_SUCCESS"
         : status == BLAS_INVALID_VALUE    ? "CUBLAS_STATUS_INVALID_VALUE"
         : status == BLAS_EXECUTION_FAILED ? "CUBLAS_STATUS_EXECUTION_FAILED"
         : status == BLAS_NOT_SUPPORTED    ? "CUBLAS_STATUS_NOT_SUPPORTED"
                                           : "CUBLAS_STATUS_UNKNOWN";
}
int cublasLtCreate(struct LtHandle **handle) {
  *handle = calloc(1, sizeof(struct LtHandle));
  (*handle)->magic = 0x17;
  return BLAS_OK;
}
int cublasLtDestroy(struct LtHandle *handle) {
  free(handle);
  return BLAS_OK;
}
int cublasLtMatmulDescCreate(struct LtDesc **desc, int compute, int scale) {
  if (compute != COMPUTE_32F && compute != COMPUTE_32F_FAST_TF32)
    return BLAS_NOT_SUPPORTED;
  if (scale != R_32F)
    return BLAS_INVALID_VALUE;
  *desc = calloc(1, sizeof(struct LtDesc));
  (*desc)->compute = compute;
  (*desc)->scale = scale;
  (*desc)->epilogue = 1;
  return BLAS_OK;
}
int cublasLtMatmulDescDestroy(struct LtDesc *desc) {
  free(desc);
  return BLAS_OK;
}
int cublasLtMatmulDescSetAttribute(struct LtDesc *desc, int attr, const void *buf, size_t size) {
  switch (attr) {
  case 3: /* TRANSA */
  case 4: /* TRANSB */ {
    int op;
    if (size != sizeof(int))
      return BLAS_INVALID_VALUE;
    memcpy(&op, buf, sizeof(int));
    if (op != 0 && op != 1)
      return BLAS_INVALID_VALUE;
    *(attr == 3 ? &desc->transA : &desc->transB) = op;
    return BLAS_OK;
  }
  case 7: /* EPILOGUE */
    if (size != sizeof(unsigned))
      return BLAS_INVALID_VALUE;
    memcpy(&desc->epilogue, buf, sizeof(unsigned));
    /* DEFAULT, RELU, BIAS, RELU_BIAS, GELU, GELU_BIAS */
    switch (desc->epilogue) {
    case 1: case 2: case 4: case 6: case 32: case 36:
      return BLAS_OK;
    default:
      return BLAS_NOT_SUPPORTED;
    }
  case 8: /* BIAS_POINTER */
    if (size != sizeof(void *))
      return BLAS_INVALID_VALUE;
    memcpy(&desc->bias, buf, sizeof(void *));
    return BLAS_OK;
  default:
    return BLAS_INVALID_VALUE;
  }
}
int cublasLtMatrixLayoutCreate(struct LtLayout **layout, int type, unsigned long long rows,
                               unsigned long long cols, long long ld) {
  if (type != R_32F && type != R_16F && type != R_16BF)
    return BLAS_NOT_SUPPORTED;
  *layout = calloc(1, sizeof(struct LtLayout));
  (*layout)->type = type;
  (*layout)->rows = rows;
  (*layout)->cols = cols;
  (*layout)->ld = ld;
  (*layout)->batch = 1;
  return BLAS_OK;
}
int cublasLtMatrixLayoutDestroy(struct LtLayout *layout) {
  free(layout);
  return BLAS_OK;
}
int cublasLtMatrixLayoutSetAttribute(struct LtLayout *layout, int attr, const void *buf,
                                     size_t size) {
  if (attr == 5 && size == sizeof(int)) { /* BATCH_COUNT */
    memcpy(&layout->batch, buf, sizeof(int));
    return layout->batch >= 1 ? BLAS_OK : BLAS_INVALID_VALUE;
  }
  if (attr == 6 && size == sizeof(long long)) { /* STRIDED_BATCH_OFFSET */
    memcpy(&layout->batchStride, buf, sizeof(long long));
    return BLAS_OK;
  }
  return BLAS_INVALID_VALUE;
}
int cublasLtMatmulPreferenceCreate(struct LtPref **pref) {
  *pref = calloc(1, sizeof(struct LtPref));
  return BLAS_OK;
}
int cublasLtMatmulPreferenceDestroy(struct LtPref *pref) {
  free(pref);
  return BLAS_OK;
}
int cublasLtMatmulPreferenceSetAttribute(struct LtPref *pref, int attr, const void *buf,
                                         size_t size) {
  if (attr == 1 && size == sizeof(unsigned long long)) { /* MAX_WORKSPACE_BYTES */
    memcpy(&pref->workspace, buf, size);
    return BLAS_OK;
  }
  if (attr >= 5 && attr <= 8 && size == sizeof(unsigned)) { /* MIN_ALIGNMENT_*_BYTES */
    unsigned alignment;
    memcpy(&alignment, buf, size);
    return alignment && !(alignment & (alignment - 1)) ? BLAS_OK : BLAS_INVALID_VALUE;
  }
  return BLAS_INVALID_VALUE;
}

/* What cuBLASLt checks of a problem: op(A) is m x k, op(B) k x n, C and D
   m x n, in one layout; the types are a combination it has; leading
   dimensions cover the rows; batch counts agree. */
static int validate(const struct LtDesc *d, const struct LtLayout *a, const struct LtLayout *b,
                    const struct LtLayout *c, const struct LtLayout *dd) {
  unsigned long long m = d->transA ? a->cols : a->rows, ka = d->transA ? a->rows : a->cols;
  unsigned long long kb = d->transB ? b->cols : b->rows, n = d->transB ? b->rows : b->cols;
  if (ka != kb || dd->rows != m || dd->cols != n || c->rows != m || c->cols != n)
    return BLAS_INVALID_VALUE;
  const struct LtLayout *all[4] = {a, b, c, dd};
  for (int i = 0; i < 4; ++i)
    if (all[i]->ld < (long long)all[i]->rows || all[i]->ld <= 0 || all[i]->batch != dd->batch)
      return BLAS_INVALID_VALUE;
  if (a->type != b->type || c->type != dd->type || (dd->type != R_32F && dd->type != a->type))
    return BLAS_NOT_SUPPORTED;
  if (d->compute == COMPUTE_32F_FAST_TF32 && a->type != R_32F)
    return BLAS_NOT_SUPPORTED;
  return BLAS_OK;
}

int cublasLtMatmulAlgoGetHeuristic(struct LtHandle *handle, struct LtDesc *desc,
                                   struct LtLayout *a, struct LtLayout *b, struct LtLayout *c,
                                   struct LtLayout *d, struct LtPref *pref, int requested,
                                   LtHeuristic *results, int *found) {
  if (!handle || handle->magic != 0x17 || requested < 1)
    return BLAS_INVALID_VALUE;
  int status = validate(desc, a, b, c, d);
  *found = 0;
  if (status != BLAS_OK)
    return status;
  memset(&results[0], 0, sizeof(LtHeuristic));
  results[0].algo.data[0] = 0xa160;
  results[0].wavesCount = 1.0f;
  *found = 1;
  return BLAS_OK;
}

static float halfToFloat(unsigned short h) {
  unsigned sign = (h >> 15) & 1, exponent = (h >> 10) & 31, mantissa = h & 1023;
  float value;
  if (exponent == 0)
    value = ldexpf((float)mantissa, -24);
  else if (exponent == 31)
    value = mantissa ? NAN : INFINITY;
  else
    value = ldexpf((float)(mantissa | 1024), (int)exponent - 25);
  return sign ? -value : value;
}
static unsigned short floatToHalf(float f) {
  /* Round to nearest even through the exact scaled mantissa. */
  unsigned short sign = signbit(f) ? 0x8000 : 0;
  float a = fabsf(f);
  if (isnan(f))
    return 0x7e00;
  if (a >= 65520.0f)
    return sign | 0x7c00;
  if (a < ldexpf(1.0f, -14)) /* subnormal: units of 2^-24 */
    return sign | (unsigned short)nearbyintf(a * ldexpf(1.0f, 24));
  int e;
  frexpf(a, &e); /* a = m * 2^e, m in [0.5, 1) */
  float scaled = nearbyintf(ldexpf(a, 11 - e)); /* 11 significant bits */
  if (scaled >= 2048.0f) {
    scaled /= 2;
    ++e;
  }
  return sign | (unsigned short)(((e + 14) << 10) | ((unsigned)scaled - 1024));
}
static float bf16ToFloat(unsigned short h) {
  unsigned bits = (unsigned)h << 16;
  float f;
  memcpy(&f, &bits, 4);
  return f;
}
static unsigned short floatToBf16(float f) {
  unsigned bits;
  memcpy(&bits, &f, 4);
  if ((bits & 0x7fffffff) > 0x7f800000)
    return (unsigned short)((bits >> 16) | 0x40);
  bits += 0x7fff + ((bits >> 16) & 1);
  return (unsigned short)(bits >> 16);
}
/* TF32: 10 explicit mantissa bits, rounded to nearest. */
static float toTf32(float f) {
  unsigned bits;
  memcpy(&bits, &f, 4);
  if ((bits & 0x7f800000) != 0x7f800000)
    bits = (bits + 0x1000) & 0xffffe000;
  memcpy(&f, &bits, 4);
  return f;
}
static size_t elementBytes(int type) { return type == R_32F ? 4 : 2; }
static float load(const char *base, int type, long long index) {
  if (type == R_32F) {
    float f;
    memcpy(&f, base + index * 4, 4);
    return f;
  }
  unsigned short h;
  memcpy(&h, base + index * 2, 2);
  return type == R_16F ? halfToFloat(h) : bf16ToFloat(h);
}
static void store(char *base, int type, long long index, float value) {
  if (type == R_32F) {
    memcpy(base + index * 4, &value, 4);
    return;
  }
  unsigned short h = type == R_16F ? floatToHalf(value) : floatToBf16(value);
  memcpy(base + index * 2, &h, 2);
}
/* Whether every element a layout addresses from `base` lies in one device
   allocation. */
static int inDevice(const void *base, const struct LtLayout *l) {
  long long last = (long long)(l->rows - 1) + (long long)(l->cols - 1) * l->ld +
                   (long long)(l->batch - 1) * (l->batchStride < 0 ? 0 : l->batchStride);
  const char *first = (const char *)base, *end = first + (last + 1) * elementBytes(l->type);
  for (int i = 0; i < highWater; ++i)
    if (allocations[i].base && first >= allocations[i].base &&
        end <= allocations[i].base + allocations[i].size)
      return 1;
  return 0;
}

/* A cublasLtMatmul call, as a capture records it. */
struct RecordedGemm {
  struct LtDesc desc;
  struct LtLayout a, b, c, d;
  float alpha, beta;
  const void *A, *B, *C;
  void *D;
  void *workspace;
  size_t workspaceBytes;
};
static int multiply(const struct RecordedGemm *g);

int cublasLtMatmul(struct LtHandle *handle, struct LtDesc *desc, const void *alpha,
                   const void *A, struct LtLayout *a, const void *B, struct LtLayout *b,
                   const void *beta, const void *C, struct LtLayout *c, void *D,
                   struct LtLayout *d, const LtAlgo *algo, void *workspace, size_t workspaceBytes,
                   void *stream) {
  if (!handle || handle->magic != 0x17 || !algo || algo->data[0] != 0xa160)
    return BLAS_INVALID_VALUE;
  int status = validate(desc, a, b, c, d);
  if (status != BLAS_OK)
    return status;
  if (failing("cublasLtMatmul"))
    return BLAS_EXECUTION_FAILED;
  struct RecordedGemm g = {*desc, *a, *b, *c, *d, 0, 0, A, B, C, D, workspace, workspaceBytes};
  memcpy(&g.alpha, alpha, 4);
  memcpy(&g.beta, beta, 4);
  if (capturingOn(stream)) {
    struct Node *node = addNode(NODE_GEMM);
    node->gemm = duplicate(&g, sizeof(g));
    node->gemmBytes = sizeof(g);
    return BLAS_OK;
  }
  return multiply(&g);
}

/* D = act(alpha A B + beta C (+ bias)), on the CPU, act being the epilogue's
   ReLU or GELU (cuBLASLt's GELU is the tanh approximation); a product that
   would reach outside the device allocations fails. */
static int multiply(const struct RecordedGemm *g) {
  const struct LtDesc *desc = &g->desc;
  const struct LtLayout *a = &g->a, *b = &g->b, *c = &g->c, *d = &g->d;
  const void *A = g->A, *B = g->B, *C = g->C;
  void *D = g->D;
  const void *workspace = g->workspace;
  size_t workspaceBytes = g->workspaceBytes;
  float alphaValue = g->alpha, betaValue = g->beta;
  int hasBias = (desc->epilogue & 4) != 0, relu = (desc->epilogue & 2) != 0,
      gelu = (desc->epilogue & 32) != 0;
  struct LtLayout biasLayout = {d->type, d->rows, 1, (long long)d->rows, 0, 1};
  const char *which = !inDevice(A, a)                           ? "A"
                      : !inDevice(B, b)                         ? "B"
                      : betaValue != 0 && !inDevice(C, c)       ? "C"
                      : !inDevice(D, d)                         ? "D"
                      : hasBias && !inDevice(desc->bias, &biasLayout) ? "the bias"
                      : workspaceBytes && !isDevice((const char *)workspace) ? "the workspace"
                                                                : NULL;
  if (which) {
    fprintf(stderr, "fake_cublasLt: cublasLtMatmul: %s reaches outside device memory\n", which);
    if (logged())
      fprintf(logFile, "cublasLtMatmul: %s outside device memory\n", which);
    return BLAS_EXECUTION_FAILED;
  }
  ++gemms;
  reluGemms += relu;
  geluGemms += gelu;
  int tf32 = desc->compute == COMPUTE_32F_FAST_TF32;
  unsigned long long m = d->rows, n = d->cols, k = desc->transA ? a->rows : a->cols;
  openAll(1);
  for (int batch = 0; batch < d->batch; ++batch) {
    const char *ab = (const char *)A + batch * a->batchStride * (long long)elementBytes(a->type);
    const char *bb = (const char *)B + batch * b->batchStride * (long long)elementBytes(b->type);
    const char *cb = (const char *)C + batch * c->batchStride * (long long)elementBytes(c->type);
    char *db = (char *)D + batch * d->batchStride * (long long)elementBytes(d->type);
    for (unsigned long long j = 0; j < n; ++j)
      for (unsigned long long i = 0; i < m; ++i) {
        double sum = 0;
        for (unsigned long long p = 0; p < k; ++p) {
          long long ai = desc->transA ? (long long)(p + i * a->ld) : (long long)(i + p * a->ld);
          long long bi = desc->transB ? (long long)(j + p * b->ld) : (long long)(p + j * b->ld);
          float x = load(ab, a->type, ai), y = load(bb, b->type, bi);
          if (tf32) {
            x = toTf32(x);
            y = toTf32(y);
          }
          sum += (double)x * (double)y;
        }
        float value = alphaValue * (float)sum;
        if (betaValue != 0)
          value += betaValue * load(cb, c->type, (long long)(i + j * c->ld));
        if (hasBias)
          value += load((const char *)desc->bias, d->type, (long long)i);
        if (relu && !(value > 0))
          value = 0;
        if (gelu)
          value = (float)(0.5 * value *
                          (1 + tanh(0.7978845608028654 * (value + 0.044715 * value * value *
                                                                      value))));
        store(db, d->type, (long long)(i + j * d->ld), value);
      }
  }
  openAll(0);
  return BLAS_OK;
}

/* ---- graphs ------------------------------------------------------------- */

CUresult cuStreamBeginCapture_v2(void *stream, int mode) {
  if (capturing)
    return ILLEGAL_STATE;
  capturing = calloc(1, sizeof(struct Graph));
  captureStream = stream;
  captureBroken = 0;
  return OK;
}
CUresult cuStreamEndCapture(void *stream, void **graph) {
  *graph = NULL;
  if (!capturing || stream != captureStream)
    return CAPTURE_UNMATCHED;
  struct Graph *g = capturing;
  capturing = NULL;
  if (captureBroken) {
    clearGraph(g);
    free(g);
    return CAPTURE_INVALIDATED;
  }
  ++captures;
  ++liveGraphs;
  *graph = g;
  return OK;
}
CUresult cuGraphInstantiateWithFlags(void **exec, void *graph, unsigned long long flags) {
  if (failing("cuGraphInstantiate"))
    return OUT_OF_MEMORY;
  struct Graph *e = calloc(1, sizeof(struct Graph));
  copyGraph(e, graph);
  ++instantiations;
  ++liveGraphs;
  *exec = e;
  return OK;
}
/* CUgraphExecUpdateResultInfo: the result, then the nodes at fault. */
struct UpdateResult {
  int result;
  void *errorNode, *errorFromNode;
};
CUresult cuGraphExecUpdate_v2(void *exec, void *graph, struct UpdateResult *info) {
  struct Graph *e = exec;
  const struct Graph *g = graph;
  info->result = 0;
  info->errorNode = info->errorFromNode = NULL;
  if (e->count != g->count)
    info->result = 2; /* CU_GRAPH_EXEC_UPDATE_ERROR_TOPOLOGY_CHANGED */
  for (int i = 0; i < g->count && !info->result; ++i)
    if (e->nodes[i].kind != g->nodes[i].kind)
      info->result = 3; /* NODE_TYPE_CHANGED */
    else if (e->nodes[i].kernel != g->nodes[i].kernel)
      info->result = 4; /* FUNCTION_CHANGED */
  if (info->result || failing("cuGraphExecUpdate")) {
    if (!info->result)
      info->result = 1;
    ++refusedUpdates;
    return UPDATE_FAILURE;
  }
  clearGraph(e);
  copyGraph(e, g);
  ++updates;
  return OK;
}
CUresult cuGraphLaunch(void *exec, void *stream) {
  if (capturing)
    return ILLEGAL_STATE;
  if (failing("cuGraphLaunch"))
    return LAUNCH_FAILED;
  ++graphLaunches;
  const struct Graph *e = exec;
  for (int i = 0; i < e->count; ++i) {
    const struct Node *node = &e->nodes[i];
    CUresult r = OK;
    if (node->kind == NODE_KERNEL) {
      void *params[512];
      size_t at = 0;
      for (int p = 0; p < node->kernel->count; ++p) {
        params[p] = node->params + at;
        at += paramSlot(node->kernel->size[p]);
      }
      r = run(node->kernel, node->grid, node->block, node->shared, params);
    } else if (node->kind == NODE_COPY) {
      r = copy(node->to, node->from, node->size, "cuMemcpyAsync");
    } else if (multiply(node->gemm) != BLAS_OK) {
      r = LAUNCH_FAILED;
    }
    if (r != OK)
      return r;
  }
  return OK;
}
static CUresult destroyGraph(void *graph) {
  if (!graph)
    return OK;
  clearGraph(graph);
  free(graph);
  --liveGraphs;
  return OK;
}
CUresult cuGraphDestroy(void *graph) { return destroyGraph(graph); }
CUresult cuGraphExecDestroy(void *exec) { return destroyGraph(exec); }
