//===- CudaDriver.h - what the runtime asks of the CUDA driver -------------===//
//
// The CUDA driver is opened at run time (runtime/CudaDriver.cpp); these are
// the calls the module loader and hasten_run make for CUDA modules.
//
//===----------------------------------------------------------------------===//

#ifndef HASTEN_RUNTIME_CUDADRIVER_H
#define HASTEN_RUNTIME_CUDADRIVER_H

#include <cstddef>
#include <functional>
#include <string>
#include <vector>

namespace hasten::runtime {

/// Whether this machine can run a CUDA module built for `gpus` ("sm_80"):
/// a driver, a device, and one not older than the oldest of them. If not,
/// `error` says why ("no CUDA driver (libcuda.so.1: cannot open ...)").
bool cudaAvailable(const std::vector<std::string> &gpus, std::string &error);
/// Whether cuBLASLt, which a CUDA module's GEMMs run on, can be opened; if
/// not, `error` says why ("no cuBLASLt (libcublasLt.so.13: cannot open ...)").
bool cudaBlasAvailable(std::string &error);
/// A device copy of `bytes` bytes at `host` (null with `error` on failure).
void *cudaUpload(const void *host, size_t bytes, std::string &error);
/// Copies `bytes` from device memory to `host`.
bool cudaDownload(void *host, const void *device, size_t bytes, std::string &error);
/// `bytes` zeroed bytes of device memory (null with `error` on failure).
void *cudaZeros(size_t bytes, std::string &error);
/// Copies `bytes` between device buffers.
bool cudaCopy(void *to, const void *from, size_t bytes, std::string &error);
/// Frees device memory from cudaUpload, cudaZeros or a module's allocations.
void cudaFree(void *device);

/// One entry's CUDA graph on one thread. The first call runs directly (it
/// loads the kernels and sets up cuBLASLt, neither of which a capture
/// allows); each later call is captured on the thread's stream, updates the
/// executable graph in place (or instantiates it again when the update is
/// refused: work of a different shape), and runs as one graph launch. The
/// captured calls' allocations come from a device pool the graph keeps, so
/// they keep their addresses from call to call and the graph has no memory
/// nodes. A call that cannot be captured runs directly, and so do the
/// entry's later calls (`directWhy` says why).
struct CudaGraph {
  CudaGraph() = default;
  CudaGraph(const CudaGraph &) = delete;
  CudaGraph &operator=(const CudaGraph &) = delete;
  ~CudaGraph();
  /// Whether `pointer` is in the pool (an output of a captured call, which
  /// the next call reuses; not to be freed).
  bool owns(const void *pointer) const;

  bool warm = false;
  std::string directWhy;
  void *exec = nullptr; // CUgraphExec
  char *pool = nullptr;
  size_t poolBytes = 0;
  /// What the first call allocated: the pool's first size.
  size_t poolHint = 0;
};

/// How cudaRunGraphed ran a call.
enum class GraphRun { Direct, Instantiated, Updated };

/// Runs `call` (one call of a graph-capturable entry's host code) on the
/// calling thread as `graph` says. Failures of the call's work are the
/// run's kernel error, as for a direct call.
GraphRun cudaRunGraphed(CudaGraph &graph, const std::function<void()> &call);
/// Drops the calling thread's open capture, if any (a run that escaped from
/// generated code on a failed host allocation).
void cudaAbandonCapture();

} // namespace hasten::runtime

#endif // HASTEN_RUNTIME_CUDADRIVER_H
