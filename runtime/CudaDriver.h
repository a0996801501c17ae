//===- CudaDriver.h - what the runtime asks of the CUDA driver -------------===//
//
// The CUDA driver is opened at run time (runtime/CudaDriver.cpp); these are
// the calls the module loader and hasten_run make for CUDA modules.
//
//===----------------------------------------------------------------------===//

#ifndef HASTEN_RUNTIME_CUDADRIVER_H
#define HASTEN_RUNTIME_CUDADRIVER_H

#include <cstddef>
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

} // namespace hasten::runtime

#endif // HASTEN_RUNTIME_CUDADRIVER_H
