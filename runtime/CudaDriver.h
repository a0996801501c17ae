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
// The runtime's own copies and fills go on the calling thread's stream, the
// one its entries' work queues on (a non-blocking stream, which the legacy
// stream's copies would not be ordered with). Those that make memory other
// threads may use (weights, caches, blocks) wait for it to finish.

/// A device copy of `bytes` bytes at `host` (null with `error` on failure).
void *cudaUpload(const void *host, size_t bytes, std::string &error);
/// `bytes` zeroed bytes of device memory (null with `error` on failure).
void *cudaZeros(size_t bytes, std::string &error);
/// `bytes` zeroed bytes in one device address range whose first
/// `deviceBytes` (rounded up to the driver's granularity) are device memory
/// and the rest pinned host memory mapped for the GPU (CUDA's virtual memory
/// management), which kernels read over the bus: a KV pool whose older
/// blocks spill to the host. `deviceMapped` receives the bytes that are
/// device memory. Null with `error` on failure, or when this driver or GPU
/// cannot map host memory that way.
void *cudaSpillZeros(size_t bytes, size_t deviceBytes, size_t &deviceMapped,
                     std::string &error);
/// Frees memory from cudaSpillZeros.
void cudaSpillFree(void *memory);
/// Copies `bytes` between device buffers.
bool cudaCopy(void *to, const void *from, size_t bytes, std::string &error);

/// One host buffer and its device side, for the staged copies of a call.
struct StagedCopy {
  void *host;
  void *device;
  size_t bytes;
};
/// A call's inputs: each gets a device buffer (`device`) and its bytes are
/// queued to it through the thread's pinned staging memory (true DMA, and
/// the entry's work on the same stream runs after it). Null `device`s and
/// `error` on failure.
bool cudaUploadInputs(std::vector<StagedCopy> &inputs, std::string &error);
/// A call's outputs: every device buffer to its host one through the pinned
/// staging memory, queued behind the call's work, then one wait for all
/// (the call's last: a graph launch leaves its waiting to this).
bool cudaDownloadOutputs(const std::vector<StagedCopy> &outputs, std::string &error);
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
/// run's kernel error, as for a direct call. A graph launch is not waited
/// for: cudaDownloadOutputs does that.
GraphRun cudaRunGraphed(CudaGraph &graph, const std::function<void()> &call);
/// Drops the calling thread's open capture, if any (a run that escaped from
/// generated code on a failed host allocation).
void cudaAbandonCapture();

} // namespace hasten::runtime

#endif // HASTEN_RUNTIME_CUDADRIVER_H
