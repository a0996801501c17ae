//===- CudaDriver.cpp - CUDA modules on the driver API, loaded at run time -===//
//
// The runtime must load and run CPU modules on machines without a GPU or a
// CUDA driver, so it links no CUDA library: libcuda.so.1 is opened with
// dlopen the first time a CUDA module is loaded, and a machine without one
// gets an error naming the module and the reason.
//
// Generated host code launches kernels through the GPU ABI that MLIR's
// gpu-to-llvm lowering calls (mgpuModuleLoad, mgpuLaunchKernel, ...),
// implemented here on the driver API. Those calls have no error path back
// through generated code: the first failure of a run is recorded as the
// run's kernel error (hasten_run reports it) and later calls of the run do
// nothing. Module images are bundles of cubins and PTX
// (hasten/CudaBundle.h); the cubin of the device's architecture is loaded
// when there is one, else the driver compiles the PTX.
//
//===----------------------------------------------------------------------===//

#include "CudaDriver.h"
#include "DynamicSymbols.h"
#include "RuntimeInternal.h"

#include "hasten/CudaBundle.h"

#include <dlfcn.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <vector>

namespace {

using hasten::runtime::resolveSymbol;

// The driver API's types, as cuda.h declares them (the runtime builds
// without the toolkit's headers).
using CUresult = int;
using CUdevice = int;
using CUdeviceptr = unsigned long long;
using CUcontext = struct CUctx_st *;
using CUmodule = struct CUmod_st *;
using CUfunction = struct CUfunc_st *;
using CUstream = struct CUstream_st *;
using CUgraph = struct CUgraph_st *;
using CUgraphExec = struct CUgraphExec_st *;
struct CUgraphExecUpdateResultInfo {
  int result;
  void *errorNode, *errorFromNode;
};
constexpr CUresult CUDA_SUCCESS = 0;
constexpr int CU_STREAM_CAPTURE_MODE_THREAD_LOCAL = 1;
constexpr int CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR = 75;
constexpr int CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR = 76;
constexpr unsigned CU_STREAM_NON_BLOCKING = 1;
constexpr unsigned CU_MEM_ATTACH_GLOBAL = 1;
// Virtual memory management (CUDA 10.2; host-located memory, CUDA 12.2).
using CUmemGenericAllocationHandle = unsigned long long;
struct CUmemLocation {
  int type, id;
};
struct CUmemAllocationProp {
  int type, requestedHandleTypes;
  CUmemLocation location;
  void *win32HandleMetaData;
  struct {
    unsigned char compressionType, gpuDirectRDMACapable;
    unsigned short usage;
    unsigned char reserved[4];
  } allocFlags;
};
struct CUmemAccessDesc {
  CUmemLocation location;
  int flags;
};
static_assert(sizeof(CUmemAllocationProp) == 32 && sizeof(CUmemAccessDesc) == 12,
              "the layouts of cuda.h");
constexpr int CU_MEM_ALLOCATION_TYPE_PINNED = 1, CU_MEM_LOCATION_TYPE_DEVICE = 1,
              CU_MEM_LOCATION_TYPE_HOST = 2, CU_MEM_ACCESS_FLAGS_PROT_READWRITE = 3,
              CU_MEM_ALLOC_GRANULARITY_MINIMUM = 0;
constexpr int CU_DEVICE_ATTRIBUTE_HOST_VIRTUAL_MEMORY_MANAGEMENT_SUPPORTED = 145;

struct Driver {
  void *library = nullptr;
  CUresult (*cuInit)(unsigned);
  CUresult (*cuGetErrorName)(CUresult, const char **);
  CUresult (*cuGetErrorString)(CUresult, const char **);
  CUresult (*cuDeviceGetCount)(int *);
  CUresult (*cuDeviceGet)(CUdevice *, int);
  CUresult (*cuDeviceGetName)(char *, int, CUdevice);
  CUresult (*cuDeviceGetAttribute)(int *, int, CUdevice);
  CUresult (*cuDevicePrimaryCtxRetain)(CUcontext *, CUdevice);
  CUresult (*cuCtxSetCurrent)(CUcontext);
  CUresult (*cuModuleLoadData)(CUmodule *, const void *);
  CUresult (*cuModuleUnload)(CUmodule);
  CUresult (*cuModuleGetFunction)(CUfunction *, CUmodule, const char *);
  CUresult (*cuLaunchKernel)(CUfunction, unsigned, unsigned, unsigned, unsigned, unsigned,
                             unsigned, unsigned, CUstream, void **, void **);
  CUresult (*cuStreamCreate)(CUstream *, unsigned);
  CUresult (*cuStreamSynchronize)(CUstream);
  CUresult (*cuMemAlloc)(CUdeviceptr *, size_t);
  CUresult (*cuMemAllocManaged)(CUdeviceptr *, size_t, unsigned);
  CUresult (*cuMemFree)(CUdeviceptr);
  CUresult (*cuMemAllocAsync)(CUdeviceptr *, size_t, CUstream);
  CUresult (*cuMemFreeAsync)(CUdeviceptr, CUstream);
  CUresult (*cuMemcpyHtoD)(CUdeviceptr, const void *, size_t);
  CUresult (*cuMemcpyDtoH)(void *, CUdeviceptr, size_t);
  CUresult (*cuMemcpyDtoD)(CUdeviceptr, CUdeviceptr, size_t);
  CUresult (*cuMemcpyAsync)(CUdeviceptr, CUdeviceptr, size_t, CUstream);
  CUresult (*cuMemsetD8)(CUdeviceptr, unsigned char, size_t);
  CUresult (*cuMemcpyHtoDAsync)(CUdeviceptr, const void *, size_t, CUstream);
  CUresult (*cuMemcpyDtoHAsync)(void *, CUdeviceptr, size_t, CUstream);
  CUresult (*cuMemsetD8Async)(CUdeviceptr, unsigned char, size_t, CUstream);
  CUresult (*cuMemcpyDtoDAsync)(CUdeviceptr, CUdeviceptr, size_t, CUstream);
  CUresult (*cuMemAllocHost)(void **, size_t);
  CUresult (*cuMemFreeHost)(void *);
  // Graphs (CUDA 12 and newer; without them every call runs directly).
  CUresult (*cuStreamBeginCapture)(CUstream, int);
  CUresult (*cuStreamEndCapture)(CUstream, CUgraph *);
  CUresult (*cuGraphInstantiate)(CUgraphExec *, CUgraph, unsigned long long);
  CUresult (*cuGraphExecUpdate)(CUgraphExec, CUgraph, CUgraphExecUpdateResultInfo *);
  CUresult (*cuGraphLaunch)(CUgraphExec, CUstream);
  CUresult (*cuGraphDestroy)(CUgraph);
  CUresult (*cuGraphExecDestroy)(CUgraphExec);
  std::string noGraphs; // why there are none ("" when there are)
  // Virtual memory management (KV pools that spill to the host).
  CUresult (*cuMemGetAllocationGranularity)(size_t *, const CUmemAllocationProp *, int);
  CUresult (*cuMemAddressReserve)(CUdeviceptr *, size_t, size_t, CUdeviceptr,
                                  unsigned long long);
  CUresult (*cuMemAddressFree)(CUdeviceptr, size_t);
  CUresult (*cuMemCreate)(CUmemGenericAllocationHandle *, size_t, const CUmemAllocationProp *,
                          unsigned long long);
  CUresult (*cuMemRelease)(CUmemGenericAllocationHandle);
  CUresult (*cuMemMap)(CUdeviceptr, size_t, size_t, CUmemGenericAllocationHandle,
                       unsigned long long);
  CUresult (*cuMemUnmap)(CUdeviceptr, size_t);
  CUresult (*cuMemSetAccess)(CUdeviceptr, size_t, const CUmemAccessDesc *, size_t);
  std::string noHostMapping; // why host memory cannot join a device range
  CUdevice device = 0;
  CUcontext context = nullptr;
  /// Compute capability as a number: 80 for 8.0.
  uint32_t arch = 0;
  std::string name;
};

/// Names of the errors a user meets first, for drivers (the toolkit's stub)
/// that do not name their own.
const char *knownErrorName(CUresult result) {
  switch (result) {
  case 2:
    return "CUDA_ERROR_OUT_OF_MEMORY";
  case 3:
    return "CUDA_ERROR_NOT_INITIALIZED";
  case 34:
    return "CUDA_ERROR_STUB_LIBRARY (the toolkit's stub libcuda, not a driver)";
  case 35:
    return "CUDA_ERROR_INSUFFICIENT_DRIVER (the driver is older than the CUDA runtime needs)";
  case 100:
    return "CUDA_ERROR_NO_DEVICE";
  case 209:
    return "CUDA_ERROR_NO_BINARY_FOR_GPU";
  case 218:
    return "CUDA_ERROR_INVALID_PTX";
  case 222:
    return "CUDA_ERROR_UNSUPPORTED_PTX_VERSION (the driver is older than the PTX)";
  default:
    return nullptr;
  }
}

/// "cuInit: CUDA_ERROR_NO_DEVICE (no CUDA-capable device is detected)".
std::string describe(const Driver &d, const char *call, CUresult result) {
  const char *name = nullptr, *text = nullptr;
  if (d.cuGetErrorName && d.cuGetErrorName(result, &name) != CUDA_SUCCESS)
    name = nullptr;
  if (d.cuGetErrorString && d.cuGetErrorString(result, &text) != CUDA_SUCCESS)
    text = nullptr;
  if (!name)
    name = knownErrorName(result);
  std::string out = std::string(call) + ": " + (name ? name : "error " + std::to_string(result));
  if (text)
    out += std::string(" (") + text + ")";
  return out;
}

/// The driver, opened and initialized once per process; null with the
/// reason in `error` when this machine cannot run CUDA modules. The
/// library path can be overridden with HASTEN_CUDA_DRIVER (tests point it
/// at the toolkit's stub, which loads but has no device).
const Driver *driver(std::string &error) {
  static std::once_flag once;
  static Driver d;
  static std::string failure;
  static bool ok = false;
  std::call_once(once, [] {
    const char *path = std::getenv("HASTEN_CUDA_DRIVER");
    if (!path || !*path)
      path = "libcuda.so.1";
    d.library = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!d.library) {
      const char *why = dlerror();
      failure = std::string("no CUDA driver (") + (why ? why : path) + ")";
      return;
    }
    std::string missing;
    auto get = [&](auto &fn, const char *symbol) {
      return resolveSymbol(d.library, fn, symbol, missing);
    };
    get(d.cuGetErrorName, "cuGetErrorName");
    get(d.cuGetErrorString, "cuGetErrorString");
    bool all = get(d.cuInit, "cuInit") &&
               get(d.cuDeviceGetCount, "cuDeviceGetCount") &&
               get(d.cuDeviceGet, "cuDeviceGet") &&
               get(d.cuDeviceGetName, "cuDeviceGetName") &&
               get(d.cuDeviceGetAttribute, "cuDeviceGetAttribute") &&
               get(d.cuDevicePrimaryCtxRetain, "cuDevicePrimaryCtxRetain") &&
               get(d.cuCtxSetCurrent, "cuCtxSetCurrent") &&
               get(d.cuModuleLoadData, "cuModuleLoadData") &&
               get(d.cuModuleUnload, "cuModuleUnload") &&
               get(d.cuModuleGetFunction, "cuModuleGetFunction") &&
               get(d.cuLaunchKernel, "cuLaunchKernel") &&
               get(d.cuStreamCreate, "cuStreamCreate") &&
               get(d.cuStreamSynchronize, "cuStreamSynchronize") &&
               get(d.cuMemAlloc, "cuMemAlloc_v2") &&
               get(d.cuMemAllocManaged, "cuMemAllocManaged") &&
               get(d.cuMemFree, "cuMemFree_v2") &&
               get(d.cuMemAllocAsync, "cuMemAllocAsync") &&
               get(d.cuMemFreeAsync, "cuMemFreeAsync") &&
               get(d.cuMemcpyHtoD, "cuMemcpyHtoD_v2") &&
               get(d.cuMemcpyDtoH, "cuMemcpyDtoH_v2") &&
               get(d.cuMemcpyDtoD, "cuMemcpyDtoD_v2") &&
               get(d.cuMemcpyAsync, "cuMemcpyAsync") &&
               get(d.cuMemsetD8, "cuMemsetD8_v2") &&
               get(d.cuMemcpyHtoDAsync, "cuMemcpyHtoDAsync_v2") &&
               get(d.cuMemcpyDtoHAsync, "cuMemcpyDtoHAsync_v2") &&
               get(d.cuMemsetD8Async, "cuMemsetD8Async") &&
               get(d.cuMemcpyDtoDAsync, "cuMemcpyDtoDAsync_v2") &&
               get(d.cuMemAllocHost, "cuMemAllocHost_v2") &&
               get(d.cuMemFreeHost, "cuMemFreeHost");
    if (!all) {
      failure = std::string("the CUDA driver '") + path + "' lacks " + missing +
                " (CUDA 11.2 or newer is needed)";
      return;
    }
    std::string noGraph;
    auto graph = [&](auto &fn, const char *symbol) {
      return resolveSymbol(d.library, fn, symbol, noGraph);
    };
    if (!(graph(d.cuStreamBeginCapture, "cuStreamBeginCapture_v2") &&
          graph(d.cuStreamEndCapture, "cuStreamEndCapture") &&
          graph(d.cuGraphInstantiate, "cuGraphInstantiateWithFlags") &&
          graph(d.cuGraphExecUpdate, "cuGraphExecUpdate_v2") &&
          graph(d.cuGraphLaunch, "cuGraphLaunch") &&
          graph(d.cuGraphDestroy, "cuGraphDestroy") &&
          graph(d.cuGraphExecDestroy, "cuGraphExecDestroy")))
      d.noGraphs = "the CUDA driver lacks " + noGraph + " (CUDA 12 or newer has it)";
    std::string noVmm;
    auto vmm = [&](auto &fn, const char *symbol) {
      return resolveSymbol(d.library, fn, symbol, noVmm);
    };
    if (!(vmm(d.cuMemGetAllocationGranularity, "cuMemGetAllocationGranularity") &&
          vmm(d.cuMemAddressReserve, "cuMemAddressReserve") &&
          vmm(d.cuMemAddressFree, "cuMemAddressFree") && vmm(d.cuMemCreate, "cuMemCreate") &&
          vmm(d.cuMemRelease, "cuMemRelease") && vmm(d.cuMemMap, "cuMemMap") &&
          vmm(d.cuMemUnmap, "cuMemUnmap") && vmm(d.cuMemSetAccess, "cuMemSetAccess")))
      d.noHostMapping = "the CUDA driver lacks " + noVmm + " (CUDA 12.2 or newer has it)";
    CUresult r = d.cuInit(0);
    if (r != CUDA_SUCCESS) {
      failure = describe(d, "cuInit", r);
      return;
    }
    int count = 0;
    if ((r = d.cuDeviceGetCount(&count)) != CUDA_SUCCESS || count == 0) {
      failure = r != CUDA_SUCCESS ? describe(d, "cuDeviceGetCount", r) : "no CUDA device";
      return;
    }
    int major = 0, minor = 0;
    char name[256] = {};
    if ((r = d.cuDeviceGet(&d.device, 0)) != CUDA_SUCCESS ||
        (r = d.cuDeviceGetAttribute(&major, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR,
                                    d.device)) != CUDA_SUCCESS ||
        (r = d.cuDeviceGetAttribute(&minor, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR,
                                    d.device)) != CUDA_SUCCESS ||
        (r = d.cuDeviceGetName(name, sizeof(name) - 1, d.device)) != CUDA_SUCCESS ||
        (r = d.cuDevicePrimaryCtxRetain(&d.context, d.device)) != CUDA_SUCCESS) {
      failure = describe(d, "opening device 0", r);
      return;
    }
    d.arch = uint32_t(major * 10 + minor);
    d.name = name;
    int hostVmm = 0;
    if (d.noHostMapping.empty() &&
        (d.cuDeviceGetAttribute(&hostVmm,
                                CU_DEVICE_ATTRIBUTE_HOST_VIRTUAL_MEMORY_MANAGEMENT_SUPPORTED,
                                d.device) != CUDA_SUCCESS ||
         !hostVmm))
      d.noHostMapping = "the GPU (" + d.name + ") cannot map host memory into a device "
                        "address range (CU_DEVICE_ATTRIBUTE_HOST_VIRTUAL_MEMORY_MANAGEMENT_"
                        "SUPPORTED is 0)";
    ok = true;
  });
  if (!ok) {
    error = failure;
    return nullptr;
  }
  // The primary context, current on whichever thread calls.
  d.cuCtxSetCurrent(d.context);
  return &d;
}

/// The driver for a call from generated code: null (and the run's error
/// set, once) if it is unavailable or the run already failed.
const Driver *runDriver() {
  std::string error;
  const Driver *d = driver(error);
  if (!d)
    hasten::runtime::setKernelError("CUDA: " + error);
  return d;
}

bool check(const Driver &d, const char *call, CUresult result) {
  if (result == CUDA_SUCCESS)
    return true;
  hasten::runtime::setKernelError("CUDA " + describe(d, call, result));
  return false;
}

/// A module image registered by a module's constructor at dlopen, loaded
/// into the driver on its first launch.
struct LazyModule {
  const uint8_t *data;
  size_t size;
  std::mutex mutex;
  CUmodule module = nullptr;
  bool failed = false;
  std::map<std::string, CUfunction> functions;
};

/// The calling thread's stream: entries create and destroy one per call,
/// which the driver would serialize; one per thread is enough. `result`
/// says why there is none.
CUstream threadStream(const Driver &d, CUresult &result) {
  thread_local CUstream stream = nullptr;
  result = CUDA_SUCCESS;
  if (!stream)
    result = d.cuStreamCreate(&stream, CU_STREAM_NON_BLOCKING);
  return result == CUDA_SUCCESS ? stream : nullptr;
}
/// The same for generated code's calls: a failure is the run's error.
CUstream threadStream(const Driver &d) {
  CUresult result;
  CUstream stream = threadStream(d, result);
  check(d, "cuStreamCreate", result);
  return stream;
}

/// The calling thread's pinned host memory for a call's input and output
/// copies: one buffer, grown as needed, freed at thread exit. While
/// `pending`, copies queued from it may not have run yet.
struct Staging {
  const Driver *driver = nullptr;
  char *memory = nullptr;
  size_t bytes = 0;
  bool pending = false;
  ~Staging() {
    if (memory)
      driver->cuMemFreeHost(memory);
  }
};
thread_local Staging staging;

/// The thread's staging memory, at least `bytes` of it, and idle if the
/// host is to write it (the device writing it is ordered on the stream).
CUresult stage(const Driver &d, CUstream stream, size_t bytes, bool hostWrites) {
  CUresult r = CUDA_SUCCESS;
  if (staging.pending && (hostWrites || bytes > staging.bytes)) {
    if ((r = d.cuStreamSynchronize(stream)) != CUDA_SUCCESS)
      return r;
    staging.pending = false;
  }
  if (bytes <= staging.bytes)
    return CUDA_SUCCESS;
  if (staging.memory)
    d.cuMemFreeHost(staging.memory);
  staging.memory = nullptr;
  staging.bytes = 0;
  void *memory = nullptr;
  size_t size = std::max<size_t>(bytes, 2 * staging.bytes);
  if ((r = d.cuMemAllocHost(&memory, size)) != CUDA_SUCCESS)
    return r;
  staging.driver = &d;
  staging.memory = static_cast<char *>(memory);
  staging.bytes = size;
  return CUDA_SUCCESS;
}

/// What a captured call's allocations in the graph's pool are aligned to
/// (as the arena's buffers: cuBLASLt's and vector accesses' alignment).
constexpr size_t kPoolAlignment = 256;

/// The capture open on this thread (cudaRunGraphed): the GPU ABI's
/// allocations come from the graph's pool, its frees and waits are left to
/// the graph launch, and anything that would read device memory on the
/// host makes the call one that cannot be captured.
struct Capture {
  hasten::runtime::CudaGraph *graph = nullptr;
  size_t used = 0;       // pool bytes handed out
  bool overflow = false; // the pool is too small: `used` is what the call needs
  std::string failure;   // why the call cannot be captured
  std::vector<void *> hostStandIns;
};
thread_local Capture *openCapture = nullptr;
/// While a graph entry's first call runs directly: the bytes it allocates,
/// which size the pool its captures draw from.
thread_local size_t *measuredAllocations = nullptr;

size_t poolBytesFor(uint64_t bytes) {
  return (std::max<size_t>(bytes, 1) + kPoolAlignment - 1) / kPoolAlignment * kPoolAlignment;
}

} // namespace

hasten::runtime::CudaGraph::~CudaGraph() {
  std::string error;
  const Driver *d = (exec || pool) ? driver(error) : nullptr;
  if (!d)
    return;
  if (exec)
    d->cuGraphExecDestroy(static_cast<CUgraphExec>(exec));
  if (pool)
    d->cuMemFree(reinterpret_cast<CUdeviceptr>(pool));
}

void hasten::runtime::cudaAbandonCapture() {
  if (!openCapture)
    return;
  openCapture = nullptr;
  std::string error;
  if (const Driver *d = driver(error)) {
    CUgraph captured = nullptr;
    if (CUstream stream = threadStream(*d);
        stream && d->cuStreamEndCapture(stream, &captured) == CUDA_SUCCESS && captured)
      d->cuGraphDestroy(captured);
  }
}

bool hasten::runtime::CudaGraph::owns(const void *pointer) const {
  const char *p = static_cast<const char *>(pointer);
  return pool && p >= pool && p < pool + poolBytes;
}

hasten::runtime::GraphRun
hasten::runtime::cudaRunGraphed(CudaGraph &graph, const std::function<void()> &call) {
  auto direct = [&] {
    call();
    return GraphRun::Direct;
  };
  std::string error;
  const Driver *d = driver(error);
  if (!d || hasKernelError())
    return direct(); // which fails as a direct call does
  if (!graph.warm) {
    graph.warm = true;
    size_t allocated = 0;
    measuredAllocations = &allocated;
    call();
    measuredAllocations = nullptr;
    graph.poolHint = allocated;
    return GraphRun::Direct;
  }
  if (graph.directWhy.empty() && !d->noGraphs.empty())
    graph.directWhy = d->noGraphs;
  CUstream stream = graph.directWhy.empty() ? threadStream(*d) : nullptr;
  if (!stream)
    return direct();
  // The pool, outside any capture (an allocation there is refused).
  auto growPool = [&](size_t bytes) {
    CUdeviceptr pool = 0;
    CUresult r = d->cuMemAlloc(&pool, bytes);
    if (r != CUDA_SUCCESS) {
      graph.directWhy = describe(*d, "cuMemAlloc (the graph's pool)", r);
      return false;
    }
    if (graph.pool)
      d->cuMemFree(reinterpret_cast<CUdeviceptr>(graph.pool));
    graph.pool = reinterpret_cast<char *>(pool);
    graph.poolBytes = bytes;
    return true;
  };
  if (!graph.pool && graph.poolHint && !growPool(graph.poolHint))
    return direct();
  for (int attempt = 0;; ++attempt) {
    Capture capture;
    capture.graph = &graph;
    CUresult r = d->cuStreamBeginCapture(stream, CU_STREAM_CAPTURE_MODE_THREAD_LOCAL);
    if (r != CUDA_SUCCESS) {
      graph.directWhy = describe(*d, "cuStreamBeginCapture", r);
      return direct();
    }
    openCapture = &capture;
    call();
    openCapture = nullptr;
    CUgraph captured = nullptr;
    r = d->cuStreamEndCapture(stream, &captured);
    for (void *standIn : capture.hostStandIns)
      std::free(standIn);
    // Nothing of the call ran: an error it met is the capture's.
    std::string callError = takeKernelError();
    if (capture.failure.empty() && !callError.empty())
      capture.failure = callError;
    if (capture.failure.empty() && r != CUDA_SUCCESS)
      capture.failure = describe(*d, "cuStreamEndCapture", r);
    if (!capture.failure.empty() || capture.overflow) {
      if (captured)
        d->cuGraphDestroy(captured);
      if (!capture.failure.empty() || attempt > 0) {
        graph.directWhy = capture.failure.empty() ? "the call's allocations kept growing"
                                                  : capture.failure;
        return direct();
      }
      // A pool for what the call allocates (doubling, so that allocations
      // that grow with the sequence rarely capture twice), then again.
      if (!growPool(std::max(capture.used, 2 * graph.poolBytes)))
        return direct();
      continue;
    }
    GraphRun how = GraphRun::Updated;
    if (graph.exec) {
      CUgraphExecUpdateResultInfo info{};
      if (d->cuGraphExecUpdate(static_cast<CUgraphExec>(graph.exec), captured, &info) !=
          CUDA_SUCCESS) {
        d->cuGraphExecDestroy(static_cast<CUgraphExec>(graph.exec));
        graph.exec = nullptr;
      }
    }
    if (!graph.exec) {
      how = GraphRun::Instantiated;
      CUgraphExec exec = nullptr;
      r = d->cuGraphInstantiate(&exec, captured, 0);
      if (r != CUDA_SUCCESS) {
        d->cuGraphDestroy(captured);
        graph.directWhy = describe(*d, "cuGraphInstantiate", r);
        return direct();
      }
      graph.exec = exec;
    }
    d->cuGraphDestroy(captured);
    // Not waited for here: the outputs' copies queue behind it, and their
    // wait is the call's only one (cudaDownloadOutputs).
    check(*d, "cuGraphLaunch", d->cuGraphLaunch(static_cast<CUgraphExec>(graph.exec), stream));
    return how;
  }
}

bool hasten::runtime::cudaAvailable(const std::vector<std::string> &gpus, std::string &error) {
  const Driver *d = driver(error);
  if (!d)
    return false;
  uint32_t oldest = ~0u;
  for (const std::string &gpu : gpus)
    if (std::optional<uint32_t> number = hasten::cuda::archNumber(gpu))
      oldest = std::min(oldest, *number);
  if (oldest != ~0u && d->arch < oldest) {
    error = "the GPU (" + d->name + ", sm_" + std::to_string(d->arch) +
            ") is older than the module's oldest architecture, sm_" + std::to_string(oldest);
    return false;
  }
  return true;
}

namespace {

/// A device allocation of `bytes` (at least one) that `fill` initializes on
/// the thread's stream, waited for (any thread's stream may use it next), or
/// null with `error` saying what failed.
template <typename Fill>
void *allocateFilled(size_t bytes, const char *what, std::string &error, Fill fill) {
  const Driver *d = driver(error);
  if (!d)
    return nullptr;
  CUdeviceptr device = 0;
  CUresult r;
  CUstream stream = threadStream(*d, r);
  if (stream)
    r = d->cuMemAlloc(&device, bytes ? bytes : 1);
  if (r == CUDA_SUCCESS)
    r = fill(*d, device, stream);
  if (r == CUDA_SUCCESS)
    r = d->cuStreamSynchronize(stream);
  if (r != CUDA_SUCCESS) {
    if (device)
      d->cuMemFree(device);
    error = describe(*d, what, r);
    return nullptr;
  }
  return reinterpret_cast<void *>(device);
}

} // namespace

void *hasten::runtime::cudaUpload(const void *host, size_t bytes, std::string &error) {
  return allocateFilled(bytes, "copying to the device", error,
                        [&](const Driver &d, CUdeviceptr device, CUstream stream) {
                          return bytes ? d.cuMemcpyHtoDAsync(device, host, bytes, stream)
                                       : CUDA_SUCCESS;
                        });
}

void *hasten::runtime::cudaZeros(size_t bytes, std::string &error) {
  return allocateFilled(bytes, "allocating on the device", error,
                        [&](const Driver &d, CUdeviceptr device, CUstream stream) {
                          return d.cuMemsetD8Async(device, 0, bytes ? bytes : 1, stream);
                        });
}

namespace {

/// A device address range from cudaSpillZeros: its size and the physical
/// allocations mapped into it.
struct SpillRange {
  size_t bytes = 0;
  std::vector<std::pair<CUmemGenericAllocationHandle, size_t>> parts;
};
std::mutex spillMutex;
std::map<CUdeviceptr, SpillRange> spillRanges;

/// Unmaps and releases what `range` at `base` holds, and frees the range.
void releaseSpill(const Driver &d, CUdeviceptr base, const SpillRange &range) {
  size_t offset = 0;
  for (auto [handle, bytes] : range.parts) {
    d.cuMemUnmap(base + offset, bytes);
    d.cuMemRelease(handle);
    offset += bytes;
  }
  d.cuMemAddressFree(base, range.bytes);
}

} // namespace

void *hasten::runtime::cudaSpillZeros(size_t bytes, size_t deviceBytes, size_t &deviceMapped,
                                      std::string &error) {
  const Driver *d = driver(error);
  if (!d)
    return nullptr;
  if (!d->noHostMapping.empty()) {
    error = d->noHostMapping;
    return nullptr;
  }
  CUmemAllocationProp onDevice{};
  onDevice.type = CU_MEM_ALLOCATION_TYPE_PINNED;
  onDevice.location = {CU_MEM_LOCATION_TYPE_DEVICE, d->device};
  CUmemAllocationProp onHost = onDevice;
  onHost.location = {CU_MEM_LOCATION_TYPE_HOST, 0};
  size_t deviceGranule = 0, hostGranule = 0;
  CUresult r = d->cuMemGetAllocationGranularity(&deviceGranule, &onDevice,
                                                CU_MEM_ALLOC_GRANULARITY_MINIMUM);
  if (r == CUDA_SUCCESS)
    r = d->cuMemGetAllocationGranularity(&hostGranule, &onHost,
                                         CU_MEM_ALLOC_GRANULARITY_MINIMUM);
  if (r != CUDA_SUCCESS) {
    error = describe(*d, "cuMemGetAllocationGranularity", r);
    return nullptr;
  }
  auto roundUp = [](size_t n, size_t to) { return to ? (n + to - 1) / to * to : n; };
  // The device part, whole granules (it may hold the first bytes of the
  // block that straddles it), then the host part.
  size_t total = std::max<size_t>(bytes, 1);
  size_t devicePart =
      std::min(roundUp(deviceBytes, deviceGranule), roundUp(total, deviceGranule));
  size_t hostPart = devicePart >= total ? 0 : roundUp(total - devicePart, hostGranule);
  SpillRange range;
  range.bytes = devicePart + hostPart;
  CUdeviceptr base = 0;
  if ((r = d->cuMemAddressReserve(&base, range.bytes, std::max(deviceGranule, hostGranule), 0,
                                  0)) != CUDA_SUCCESS) {
    error = describe(*d, "cuMemAddressReserve", r);
    return nullptr;
  }
  const char *failed = nullptr;
  size_t offset = 0;
  for (auto [prop, size] : {std::pair{&onDevice, devicePart}, std::pair{&onHost, hostPart}}) {
    if (!size)
      continue;
    CUmemGenericAllocationHandle handle = 0;
    if ((r = d->cuMemCreate(&handle, size, prop, 0)) != CUDA_SUCCESS) {
      failed = prop == &onDevice ? "cuMemCreate (device memory)" : "cuMemCreate (host memory)";
      break;
    }
    if ((r = d->cuMemMap(base + offset, size, 0, handle, 0)) != CUDA_SUCCESS) {
      d->cuMemRelease(handle);
      failed = "cuMemMap";
      break;
    }
    range.parts.push_back({handle, size});
    offset += size;
  }
  // The device reads and writes all of it; the host never touches it.
  CUmemAccessDesc access{{CU_MEM_LOCATION_TYPE_DEVICE, d->device},
                         CU_MEM_ACCESS_FLAGS_PROT_READWRITE};
  if (!failed && (r = d->cuMemSetAccess(base, range.bytes, &access, 1)) != CUDA_SUCCESS)
    failed = "cuMemSetAccess";
  CUstream stream = nullptr;
  if (!failed && !(stream = threadStream(*d, r)))
    failed = "cuStreamCreate";
  if (!failed && ((r = d->cuMemsetD8Async(base, 0, range.bytes, stream)) != CUDA_SUCCESS ||
                  (r = d->cuStreamSynchronize(stream)) != CUDA_SUCCESS))
    failed = "zeroing the KV pool";
  if (failed) {
    error = describe(*d, failed, r);
    releaseSpill(*d, base, range);
    return nullptr;
  }
  deviceMapped = std::min(devicePart, total);
  std::lock_guard<std::mutex> lock(spillMutex);
  spillRanges[base] = std::move(range);
  return reinterpret_cast<void *>(base);
}

void hasten::runtime::cudaSpillFree(void *memory) {
  std::string error;
  const Driver *d = driver(error);
  if (!d || !memory)
    return;
  SpillRange range;
  {
    std::lock_guard<std::mutex> lock(spillMutex);
    auto it = spillRanges.find(reinterpret_cast<CUdeviceptr>(memory));
    if (it == spillRanges.end())
      return;
    range = std::move(it->second);
    spillRanges.erase(it);
  }
  releaseSpill(*d, reinterpret_cast<CUdeviceptr>(memory), range);
}

bool hasten::runtime::cudaCopy(void *to, const void *from, size_t bytes, std::string &error) {
  const Driver *d = driver(error);
  if (!d)
    return false;
  CUresult r;
  CUstream stream = threadStream(*d, r);
  if (stream)
    r = d->cuMemcpyDtoDAsync(reinterpret_cast<CUdeviceptr>(to),
                             reinterpret_cast<CUdeviceptr>(from), bytes, stream);
  if (r == CUDA_SUCCESS)
    r = d->cuStreamSynchronize(stream);
  if (r != CUDA_SUCCESS) {
    error = describe(*d, "copying on the device", r);
    return false;
  }
  return true;
}

bool hasten::runtime::cudaUploadInputs(std::vector<StagedCopy> &inputs, std::string &error) {
  const Driver *d = driver(error);
  if (!d)
    return false;
  size_t total = 0;
  for (const StagedCopy &input : inputs)
    total += input.bytes;
  CUresult r;
  CUstream stream = threadStream(*d, r);
  const char *what = "staging the inputs";
  if (stream)
    r = stage(*d, stream, total, /*hostWrites=*/true);
  size_t at = 0;
  for (StagedCopy &input : inputs) {
    input.device = nullptr;
    if (r != CUDA_SUCCESS)
      break;
    CUdeviceptr device = 0;
    what = "allocating an input on the device";
    if ((r = d->cuMemAlloc(&device, input.bytes ? input.bytes : 1)) != CUDA_SUCCESS)
      break;
    input.device = reinterpret_cast<void *>(device);
    if (!input.bytes)
      continue;
    std::memcpy(staging.memory + at, input.host, input.bytes);
    what = "copying an input to the device";
    r = d->cuMemcpyHtoDAsync(device, staging.memory + at, input.bytes, stream);
    staging.pending = true;
    at += input.bytes;
  }
  if (r != CUDA_SUCCESS) {
    for (StagedCopy &input : inputs)
      if (input.device)
        d->cuMemFree(reinterpret_cast<CUdeviceptr>(input.device));
    for (StagedCopy &input : inputs)
      input.device = nullptr;
    error = describe(*d, what, r);
    return false;
  }
  return true;
}

bool hasten::runtime::cudaDownloadOutputs(const std::vector<StagedCopy> &outputs,
                                          std::string &error) {
  const Driver *d = driver(error);
  if (!d)
    return false;
  size_t total = 0;
  for (const StagedCopy &output : outputs)
    total += output.bytes;
  CUresult r;
  CUstream stream = threadStream(*d, r);
  if (stream)
    r = stage(*d, stream, total, /*hostWrites=*/false);
  size_t at = 0;
  for (const StagedCopy &output : outputs) {
    if (r != CUDA_SUCCESS)
      break;
    if (output.bytes)
      r = d->cuMemcpyDtoHAsync(staging.memory + at, reinterpret_cast<CUdeviceptr>(output.device),
                               output.bytes, stream);
    at += output.bytes;
  }
  // The call's work ends here too (a graph launch does not wait).
  if (r == CUDA_SUCCESS)
    r = d->cuStreamSynchronize(stream);
  staging.pending = r != CUDA_SUCCESS;
  if (r != CUDA_SUCCESS) {
    error = describe(*d, "finishing the call and copying its outputs from the device", r);
    return false;
  }
  at = 0;
  for (const StagedCopy &output : outputs) {
    std::memcpy(output.host, staging.memory + at, output.bytes);
    at += output.bytes;
  }
  return true;
}

void hasten::runtime::cudaFree(void *device) {
  // Null (a CPU module's) must not open the driver: a CPU-only program
  // never initializes CUDA.
  if (!device)
    return;
  std::string error;
  if (const Driver *d = driver(error))
    d->cuMemFree(reinterpret_cast<CUdeviceptr>(device));
}

// The GPU ABI of MLIR's gpu-to-llvm lowering, as generated host code calls it.
extern "C" {

__attribute__((visibility("default"))) void *mgpuModuleLoad(void *data, size_t size) {
  // At dlopen, from the module's constructor: nothing touches the driver yet.
  auto *lazy = new LazyModule;
  lazy->data = static_cast<const uint8_t *>(data);
  lazy->size = size;
  return lazy;
}

__attribute__((visibility("default"))) void mgpuModuleUnload(void *module) {
  auto *lazy = static_cast<LazyModule *>(module);
  if (!lazy)
    return;
  if (lazy->module) {
    std::string error;
    if (const Driver *d = driver(error))
      d->cuModuleUnload(lazy->module);
  }
  delete lazy;
}

__attribute__((visibility("default"))) void *mgpuModuleGetFunction(void *module,
                                                                    const char *name) {
  auto *lazy = static_cast<LazyModule *>(module);
  const Driver *d = runDriver();
  if (!d || !lazy)
    return nullptr;
  std::lock_guard<std::mutex> lock(lazy->mutex);
  if (!lazy->module && !lazy->failed) {
    std::vector<hasten::cuda::Image> images;
    std::string error;
    lazy->failed = true;
    if (!hasten::cuda::readBundle(lazy->data, lazy->size, images, error)) {
      hasten::runtime::setKernelError("CUDA: the module's device code: " + error);
      return nullptr;
    }
    const hasten::cuda::Image *image = hasten::cuda::chooseImage(images, d->arch);
    if (!image) {
      hasten::runtime::setKernelError("CUDA: the module has no code for this GPU (" + d->name +
                                      ", sm_" + std::to_string(d->arch) + ")");
      return nullptr;
    }
    if (!check(*d, image->kind == hasten::cuda::ImageKind::Ptx
                       ? "cuModuleLoadData (compiling the PTX)"
                       : "cuModuleLoadData",
               d->cuModuleLoadData(&lazy->module, image->data)))
      return nullptr;
    lazy->failed = false;
  }
  if (!lazy->module)
    return nullptr;
  auto [it, inserted] = lazy->functions.insert({name, nullptr});
  if (inserted && !check(*d, "cuModuleGetFunction",
                         d->cuModuleGetFunction(&it->second, lazy->module, name)))
    it->second = nullptr;
  return it->second;
}

__attribute__((visibility("default"))) void
mgpuLaunchKernel(void *function, intptr_t gridX, intptr_t gridY, intptr_t gridZ,
                 intptr_t blockX, intptr_t blockY, intptr_t blockZ, int32_t sharedBytes,
                 void *stream, void **params, void **extra, size_t /*paramsCount*/) {
  const Driver *d = runDriver();
  if (!d || !function || hasten::runtime::hasKernelError())
    return;
  // A grid with no blocks is an empty loop nest: it launches nothing (the
  // compiler emits such launches unguarded, so that no host-side branch
  // splits the call's stream; CUDA itself would refuse them).
  if (gridX <= 0 || gridY <= 0 || gridZ <= 0)
    return;
  check(*d, "cuLaunchKernel",
        d->cuLaunchKernel(static_cast<CUfunction>(function), unsigned(gridX), unsigned(gridY),
                          unsigned(gridZ), unsigned(blockX), unsigned(blockY), unsigned(blockZ),
                          unsigned(sharedBytes), static_cast<CUstream>(stream), params, extra));
}

__attribute__((visibility("default"))) void *mgpuStreamCreate() {
  const Driver *d = runDriver();
  return d ? threadStream(*d) : nullptr;
}

__attribute__((visibility("default"))) void mgpuStreamDestroy(void *) {
  // The thread's stream outlives the call (threadStream).
}

__attribute__((visibility("default"))) void mgpuStreamSynchronize(void *stream) {
  // A captured call's wait is the graph launch's.
  if (openCapture)
    return;
  const Driver *d = runDriver();
  if (d && stream)
    check(*d, "cuStreamSynchronize (a kernel of this run failed)",
          d->cuStreamSynchronize(static_cast<CUstream>(stream)));
}

__attribute__((visibility("default"))) void *mgpuMemAlloc(uint64_t bytes, void *stream,
                                                          bool hostShared) {
  if (Capture *capture = openCapture) {
    if (hostShared) {
      // Host code would read it after a wait: not something a graph can
      // replay. Zeroed host memory stands in while the capture is dropped.
      capture->failure = "the entry's host code reads device memory";
      capture->hostStandIns.push_back(std::calloc(bytes ? size_t(bytes) : 1, 1));
      return capture->hostStandIns.back();
    }
    size_t offset = capture->used;
    capture->used += poolBytesFor(bytes);
    if (capture->used > capture->graph->poolBytes) {
      // Recorded, never run: the call is captured again with a larger pool.
      capture->overflow = true;
      return reinterpret_cast<void *>(kPoolAlignment);
    }
    return capture->graph->pool + offset;
  }
  const Driver *d = runDriver();
  if (!d || hasten::runtime::hasKernelError())
    return nullptr;
  if (measuredAllocations && !hostShared)
    *measuredAllocations += poolBytesFor(bytes);
  CUdeviceptr pointer = 0;
  size_t size = bytes ? size_t(bytes) : 1;
  bool ok = hostShared
                ? check(*d, "cuMemAllocManaged",
                        d->cuMemAllocManaged(&pointer, size, CU_MEM_ATTACH_GLOBAL))
                : check(*d, "cuMemAllocAsync",
                        d->cuMemAllocAsync(&pointer, size, static_cast<CUstream>(stream)));
  return ok ? reinterpret_cast<void *>(pointer) : nullptr;
}

// Host code reading a value a kernel computed (unified addressing: the
// driver tells host from device pointers).
__attribute__((visibility("default"))) void mgpuMemcpy(void *to, void *from, size_t bytes,
                                                       void *stream) {
  if (openCapture) {
    openCapture->failure = "the entry's host code copies device memory";
    return;
  }
  const Driver *d = runDriver();
  if (!d || hasten::runtime::hasKernelError() || !bytes)
    return;
  check(*d, "cuMemcpyAsync",
        d->cuMemcpyAsync(reinterpret_cast<CUdeviceptr>(to), reinterpret_cast<CUdeviceptr>(from),
                         bytes, static_cast<CUstream>(stream)));
}

__attribute__((visibility("default"))) void mgpuMemFree(void *pointer, void *stream) {
  // The pool's memory is the graph's, for its next call.
  if (Capture *capture = openCapture) {
    if (!capture->graph->owns(pointer) && !capture->overflow)
      capture->failure = "the entry's host code frees memory it did not allocate";
    return;
  }
  const Driver *d = runDriver();
  if (d && pointer)
    d->cuMemFreeAsync(reinterpret_cast<CUdeviceptr>(pointer), static_cast<CUstream>(stream));
}

} // extern "C"
