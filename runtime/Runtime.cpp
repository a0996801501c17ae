//===- Runtime.cpp - the hasten runtime ------------------------------------===//
//
// Loads compiled modules (dlopen), verifies their manifest, and calls entry
// points with MLIR memref descriptors built from hasten tensors. Links no
// MLIR or LLVM.
//
//===----------------------------------------------------------------------===//

#include "hasten/runtime.h"
#include "hasten/CheckedSize.h"

#include "CpuFeatures.h"
#include "Manifest.h"
#include "ModuleFile.h"
#include "CudaDriver.h"
#include "RuntimeInternal.h"
#include "ThreadChoice.h"

#include <flatbuffers/flatbuffers.h>

#include <dlfcn.h>
#include <fcntl.h>
#include <link.h>
#include <malloc.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdarg>
#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <limits>
#include <atomic>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

// The OpenMP runtime (libgomp, as oneDNN uses); declared here because
// clang's own omp.h belongs to LLVM's libomp.
extern "C" void omp_set_num_threads(int);
extern "C" int omp_get_max_threads(void);

using hasten::runtime::fail;

namespace {

thread_local std::string lastError;
thread_local std::string kernelError;

/// HASTEN_NUM_THREADS sizes the one thread pool (OpenMP, shared with oneDNN).
/// Freed buffers stay in the heap: a run allocates the same large buffers as
/// the run before it, and returning them to the kernel each time (glibc's
/// default for blocks over its mmap threshold) costs a page fault per page
/// on every run.
struct RuntimeStartup {
  RuntimeStartup() {
    mallopt(M_MMAP_THRESHOLD, 1 << 30);
    mallopt(M_TRIM_THRESHOLD, 1 << 30);
    // Decide the instruction sets (and oneDNN's ceiling) before any kernel.
    hasten::runtime::cpuCapabilities();
    if (const char *value = getenv("HASTEN_NUM_THREADS")) {
      int n = atoi(value);
      if (n > 0)
        omp_set_num_threads(n);
    }
  }
} runtimeStartup;


using EntryFn = void (*)(void **inputs, void *results);

struct Entry {
  const hasten::manifest::Entry *sig;
  EntryFn fn;
};

} // namespace

void hasten::runtime::setKernelError(const std::string &message) {
  if (kernelError.empty())
    kernelError = message;
}

bool hasten::runtime::hasKernelError() { return !kernelError.empty(); }

hasten_status hasten::runtime::failWith(hasten_status status, const std::string &message) {
  lastError = message;
  return status;
}

hasten_status hasten::runtime::fail(hasten_status status, const char *format, ...) {
  char buffer[2048];
  va_list args;
  va_start(args, format);
  vsnprintf(buffer, sizeof(buffer), format, args);
  va_end(args);
  return failWith(status, buffer);
}

std::string hasten::runtime::takeKernelError() {
  std::string message;
  message.swap(kernelError);
  return message;
}

struct hasten_tensor {
  hasten_dtype dtype;
  std::vector<int64_t> dims;
  void *data = nullptr;
  /// What to free(): null for borrowed memory.
  void *owned = nullptr;
  /// The data is device memory (a CUDA module's KV cache), which hasten_run
  /// hands to a CUDA entry as it is.
  bool device = false;
};

hasten_status hasten::runtime::wrapDeviceTensor(hasten_dtype dtype, int rank,
                                                const int64_t *dims, void *device,
                                                hasten_tensor **out) {
  hasten_status status = hasten_tensor_wrap(dtype, rank, dims, device, out);
  if (status == HASTEN_OK)
    (*out)->device = true;
  return status;
}

struct hasten_module {
  std::string path;
  void *handle = nullptr;
  std::vector<uint8_t> manifestBytes; // a copy, aligned for FlatBuffers
  const hasten::manifest::Module *manifest = nullptr;
  std::map<std::string, Entry> entries;
  std::vector<std::string> entryNames;
  std::string cpuFeatures; // joined, for hasten_module_cpu_features
  /// The mapped weight segment (read-only), and the file it comes from.
  void *weights = nullptr;
  uint64_t weightsSize = 0;
  std::string weightsPath;
  /// A CUDA module: its entries take and return device buffers, and its
  /// kernels read the weights from a device copy of the segment.
  bool cuda = false;
  void *deviceWeights = nullptr;
  /// CUDA graphs of the decode entries' calls, per thread and entry
  /// (hasten_module_set_cuda_graphs), and what they did.
  bool cudaGraphs = true;
  mutable std::mutex graphsMutex;
  std::map<std::pair<std::thread::id, const Entry *>,
           std::unique_ptr<hasten::runtime::CudaGraph>>
      graphs;
  hasten_cuda_graph_stats graphStats{};
  std::string graphDirectWhy;
  /// hasten_module_set_kv_device_tokens.
  std::atomic<int64_t> kvDeviceTokens{-1};
  /// Per entry and input shape: whether its calls run on the thread pool or
  /// on the calling thread alone (ThreadChoice.h); and the threads of each
  /// entry's last call (hasten_entry_last_threads).
  std::mutex threadsMutex;
  std::map<std::pair<const Entry *, std::vector<int64_t>>, hasten::runtime::ThreadChoice>
      threadChoices;
  std::map<const Entry *, int> lastThreads;
};

int64_t hasten::runtime::kvDeviceTokens(const hasten_module *module) {
  return module->kvDeviceTokens.load();
}

void hasten::runtime::setKVDeviceTokens(hasten_module *module, int64_t tokens) {
  module->kvDeviceTokens.store(tokens);
}

namespace {

/// The address ranges of a loaded library's segments (its code, constants
/// and data, where weights the module embeds in its image live).
std::vector<std::pair<const char *, const char *>> segmentsOf(void *handle) {
  std::vector<std::pair<const char *, const char *>> ranges;
  struct link_map *map = nullptr;
  if (dlinfo(handle, RTLD_DI_LINKMAP, &map) != 0 || !map)
    return ranges;
  struct Search {
    const link_map *map;
    std::vector<std::pair<const char *, const char *>> *ranges;
  } search{map, &ranges};
  dl_iterate_phdr(
      [](dl_phdr_info *info, size_t, void *data) -> int {
        auto *search = static_cast<Search *>(data);
        if (info->dlpi_addr != search->map->l_addr ||
            strcmp(info->dlpi_name, search->map->l_name) != 0)
          return 0;
        for (int i = 0; i < info->dlpi_phnum; ++i)
          if (info->dlpi_phdr[i].p_type == PT_LOAD) {
            auto *begin = reinterpret_cast<const char *>(info->dlpi_addr +
                                                         info->dlpi_phdr[i].p_vaddr);
            search->ranges->emplace_back(begin, begin + info->dlpi_phdr[i].p_memsz);
          }
        return 1;
      },
      &search);
  return ranges;
}

/// Modules open per library handle: dlopen gives a second module of the
/// same file the same mapping, which stays until the last one is freed.
std::mutex openLibrariesMutex;
std::map<void *, int> openLibraries;

/// Maps `size` bytes at `offset` of the open file read-only, or says why not.
void *mapWeights(int fd, uint64_t offset, uint64_t size, std::string &error) {
  void *mapped = mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, off_t(offset));
  if (mapped == MAP_FAILED) {
    error = std::string("cannot map the weights: ") + strerror(errno);
    return nullptr;
  }
  return mapped;
}

/// The sidecar named by the manifest, next to the module: checked against
/// the manifest (its header), then mapped.
hasten_status mapSidecar(const std::string &modulePath,
                         const hasten::manifest::Module *manifest, void *&mapped,
                         std::string &weightsPath, std::string &error) {
  std::string name = manifest->weights_file() ? manifest->weights_file()->str() : "";
  // A plain file name: the manifest cannot send the runtime elsewhere.
  if (name.empty() || name == "." || name == ".." || name.find('/') != std::string::npos ||
      name.find('\0') != std::string::npos) {
    error = modulePath + ": corrupt manifest: bad weights file name '" + name + "'";
    return HASTEN_ERROR_INVALID_MODULE;
  }
  size_t slash = modulePath.rfind('/');
  weightsPath = (slash == std::string::npos ? std::string() : modulePath.substr(0, slash + 1)) +
                name;
  int fd = open(weightsPath.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  struct stat st;
  if (fd < 0 || fstat(fd, &st) != 0) {
    int saved = errno;
    if (fd >= 0)
      close(fd);
    error = modulePath + ": its weights file " + weightsPath + " cannot be opened: " +
            strerror(saved) + " (copy it next to the module)";
    return HASTEN_ERROR_NOT_FOUND;
  }
  hasten::SidecarHeader header;
  uint64_t bytes = manifest->weight_segment_bytes();
  bool ok = S_ISREG(st.st_mode) &&
            pread(fd, &header, sizeof(header), 0) == ssize_t(sizeof(header)) &&
            std::memcmp(header.magic, hasten::kSidecarMagic, sizeof(header.magic)) == 0;
  if (!ok) {
    close(fd);
    error = weightsPath + ": not a hasten weights file";
    return HASTEN_ERROR_INVALID_MODULE;
  }
  if (header.segmentBytes != bytes || header.segmentHash != manifest->weight_segment_hash()) {
    close(fd);
    error = weightsPath + ": these weights belong to another compile, not to " + modulePath +
            " (recompile, or copy the .weights file written with this module)";
    return HASTEN_ERROR_INCOMPATIBLE;
  }
  if (uint64_t(st.st_size) < hasten::kSidecarHeaderBytes + bytes) {
    close(fd);
    error = weightsPath + ": truncated: " + std::to_string(st.st_size) + " bytes, expected " +
            std::to_string(hasten::kSidecarHeaderBytes + bytes);
    return HASTEN_ERROR_INVALID_MODULE;
  }
  mapped = mapWeights(fd, hasten::kSidecarHeaderBytes, bytes, error);
  close(fd);
  if (!mapped)
    error = weightsPath + ": " + error;
  return mapped ? HASTEN_OK : HASTEN_ERROR_OUT_OF_MEMORY;
}

} // namespace

static const hasten::manifest::TensorSig *signature(const hasten_module *m,
                                                    const char *entry,
                                                    int isOutput, size_t i);

extern "C" {

int hasten_runtime_api_version(void) { return HASTEN_RUNTIME_API_VERSION; }

const char *hasten_last_error(void) { return lastError.c_str(); }

hasten_status hasten_set_num_threads(int threads) {
  if (threads < 1)
    return fail(HASTEN_ERROR_INVALID_ARGUMENT, "the thread count must be at least 1, got %d",
                threads);
  omp_set_num_threads(threads);
  return HASTEN_OK;
}

int hasten_get_num_threads(void) { return omp_get_max_threads(); }

namespace {
/// HASTEN_ADAPTIVE_THREADS=0 runs every call on the whole pool.
bool adaptiveThreads() {
  static const bool enabled = [] {
    const char *value = getenv("HASTEN_ADAPTIVE_THREADS");
    return !value || std::strcmp(value, "0") != 0;
  }();
  return enabled;
}
} // namespace

size_t hasten_dtype_size(hasten_dtype dtype) {
  switch (dtype) {
  case HASTEN_F64:
  case HASTEN_I64:
  case HASTEN_U64:
    return 8;
  case HASTEN_F32:
  case HASTEN_I32:
  case HASTEN_U32:
    return 4;
  case HASTEN_F16:
  case HASTEN_BF16:
  case HASTEN_I16:
  case HASTEN_U16:
    return 2;
  case HASTEN_BOOL:
  case HASTEN_I8:
  case HASTEN_U8:
    return 1;
  case HASTEN_DTYPE_INVALID:
    return 0;
  }
  return 0;
}

const char *hasten_dtype_name(hasten_dtype dtype) {
  static const char *names[] = {"f32", "f64", "f16", "bf16", "bool", "i8", "i16",
                                "i32", "i64", "u8",  "u16", "u32",  "u64"};
  if (dtype < HASTEN_F32 || dtype > HASTEN_U64)
    return "?";
  return names[dtype];
}

hasten_status hasten_module_load(const char *path, hasten_module **out) {
  if (!path || !out)
    return fail(HASTEN_ERROR_INVALID_ARGUMENT, "hasten_module_load: null argument");
  *out = nullptr;
  // The manifest comes from the file, checked, before dlopen maps it.
  std::vector<uint8_t> manifestBytes;
  hasten::runtime::EmbeddedWeights embedded;
  void *embeddedWeights = nullptr;
  {
    // O_NONBLOCK: opening a FIFO must not wait for a writer.
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0) {
      int saved = errno;
      if (fd >= 0)
        close(fd);
      return fail(HASTEN_ERROR_NOT_FOUND, "%s: cannot open: %s", path, strerror(saved));
    }
    if (!S_ISREG(st.st_mode)) {
      close(fd);
      return fail(HASTEN_ERROR_INVALID_MODULE, "%s: not a loadable shared library: not a "
                  "regular file", path);
    }
    hasten::runtime::FileReader reader;
    reader.size = uint64_t(st.st_size);
    reader.read = [&](uint64_t offset, uint64_t length, void *out) {
      if (offset > reader.size || length > reader.size - offset)
        return false;
      for (uint64_t done = 0; done < length;) {
        ssize_t got = pread(fd, static_cast<char *>(out) + done, length - done,
                            off_t(offset + done));
        if (got <= 0)
          return false;
        done += uint64_t(got);
      }
      return true;
    };
    std::string error;
    hasten_status status =
        hasten::runtime::readModuleManifest(reader, manifestBytes, embedded, error);
    if (status == HASTEN_OK && embedded.size) {
      embeddedWeights = mapWeights(fd, embedded.offset, embedded.size, error);
      if (!embeddedWeights)
        status = HASTEN_ERROR_OUT_OF_MEMORY;
    }
    close(fd);
    if (status != HASTEN_OK)
      return fail(status, "%s: %s", path, error.c_str());
  }
  // A CUDA module needs a driver and a device before its code is mapped.
  const auto *header = hasten::manifest::GetModule(manifestBytes.data());
  bool cuda = header->device() && header->device()->str() == "cuda";
  if (cuda) {
    std::vector<std::string> gpus;
    std::string archs, error;
    if (header->gpu_archs())
      for (const auto *gpu : *header->gpu_archs()) {
        gpus.push_back(gpu->str());
        archs += (archs.empty() ? "" : ",") + gpu->str();
      }
    bool usable = hasten::runtime::cudaAvailable(gpus, error);
    if (usable && header->gpu_libraries())
      for (const auto *library : *header->gpu_libraries())
        if (library->str() == "cublasLt" && !hasten::runtime::cudaBlasAvailable(error)) {
          error += ", which its GEMMs run on";
          usable = false;
        }
    if (!usable) {
      if (embeddedWeights)
        munmap(embeddedWeights, embedded.size);
      return fail(HASTEN_ERROR_INCOMPATIBLE,
                  "%s: a CUDA module (%s), and this machine cannot run it: %s", path,
                  archs.c_str(), error.c_str());
    }
  }
  // A name without a slash would send dlopen searching the library path;
  // a module path always means a file.
  std::string file = strchr(path, '/') ? path : std::string("./") + path;
  // RTLD_LOCAL keeps two modules' symbols apart.
  void *handle = dlopen(file.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (!handle) {
    if (embeddedWeights)
      munmap(embeddedWeights, embedded.size);
    return fail(HASTEN_ERROR_INVALID_MODULE, "%s: not a loadable shared library: %s",
                path, dlerror());
  }
  auto module = std::make_unique<hasten_module>();
  module->path = path;
  module->handle = handle;
  module->manifestBytes = std::move(manifestBytes);
  if (embeddedWeights) {
    module->weights = embeddedWeights;
    module->weightsSize = embedded.size;
    module->weightsPath = path;
  }
  module->cuda = cuda;
  // The main model's --kv-device-tokens, until the caller sets another.
  const auto *kept = hasten::manifest::GetModule(module->manifestBytes.data());
  if (cuda && kept->kv_caches())
    for (const auto *kv : *kept->kv_caches())
      if (!kv->model() || kv->model()->str().empty())
        module->kvDeviceTokens = kv->device_tokens();
  auto closeAndFail = [&](hasten_status status) {
    dlclose(handle);
    module->handle = nullptr;
    if (module->weights)
      munmap(module->weights, module->weightsSize);
    module->weights = nullptr;
    hasten::runtime::cudaFree(module->deviceWeights);
    module->deviceWeights = nullptr;
    return status;
  };
  const auto *manifest = hasten::manifest::GetModule(module->manifestBytes.data());
  module->manifest = manifest;
  // The weights: mapped above from the module's section, or now from the
  // sidecar; generated code finds them through hasten_weights_base.
  if (manifest->weight_storage() == hasten::manifest::WeightStorage_sidecar) {
    std::string error;
    hasten_status status =
        mapSidecar(path, manifest, module->weights, module->weightsPath, error);
    if (status != HASTEN_OK)
      return closeAndFail(fail(status, "%s", error.c_str()));
    module->weightsSize = manifest->weight_segment_bytes();
  }
  if (manifest->weight_storage() != hasten::manifest::WeightStorage_none) {
    auto **base = static_cast<void **>(dlsym(handle, hasten::kWeightsBaseSymbol));
    if (!base)
      return closeAndFail(fail(HASTEN_ERROR_INVALID_MODULE,
                               "%s: the module stores weights but exports no %s", path,
                               hasten::kWeightsBaseSymbol));
    *base = module->weights;
    if (cuda) {
      // Kernels read every constant, so the whole segment goes to the device.
      std::string error;
      module->deviceWeights =
          hasten::runtime::cudaUpload(module->weights, module->weightsSize, error);
      if (!module->deviceWeights)
        return closeAndFail(fail(HASTEN_ERROR_OUT_OF_MEMORY,
                                 "%s: cannot put the %llu bytes of weights on the GPU: %s",
                                 path, (unsigned long long)module->weightsSize,
                                 error.c_str()));
      *base = module->deviceWeights;
    }
  }
  if (manifest->cpu_features()) {
    std::string missing;
    const hasten::runtime::CpuCapabilities &host = hasten::runtime::cpuCapabilities();
    for (const auto *feature : *manifest->cpu_features()) {
      module->cpuFeatures += (module->cpuFeatures.empty() ? "" : ",") + feature->str();
      if (!host.features.count(feature->str()))
        missing += (missing.empty() ? "" : ", ") + feature->str();
    }
    std::string limit =
        host.limit.empty() ? "" : " (HASTEN_MAX_CPU_ISA=" + host.limit + " limits it)";
    if (!missing.empty())
      return closeAndFail(fail(HASTEN_ERROR_INCOMPATIBLE,
                               "%s: compiled for CPU features this machine lacks: %s%s; "
                               "recompile with --cpu=native on this machine, or with "
                               "--cpu=x86-64-v3 for any x86-64 CPU with AVX2",
                               path, missing.c_str(), limit.c_str()));
  }
  for (const auto *entry : *manifest->entries()) {
    auto fn = reinterpret_cast<EntryFn>(dlsym(handle, entry->symbol()->c_str()));
    if (!fn)
      return closeAndFail(fail(HASTEN_ERROR_INVALID_MODULE,
                               "%s: entry '%s' names symbol '%s', which the library lacks",
                               path, entry->name()->c_str(), entry->symbol()->c_str()));
    module->entries[entry->name()->str()] = {entry, fn};
    module->entryNames.push_back(entry->name()->str());
  }
  {
    std::lock_guard<std::mutex> lock(openLibrariesMutex);
    ++openLibraries[handle];
  }
  *out = module.release();
  return HASTEN_OK;
}

void hasten_module_free(hasten_module *module) {
  if (!module)
    return;
  // The graphs launch the module's kernels: gone before its code.
  module->graphs.clear();
  // The kernels find what they packed from a weight by its address: this
  // module's packs go with its mappings, before a module loaded later can
  // be mapped where they were and find them for its own weights.
  if (module->handle) {
    bool last;
    {
      std::lock_guard<std::mutex> lock(openLibrariesMutex);
      last = --openLibraries[module->handle] == 0;
      if (last)
        openLibraries.erase(module->handle);
    }
    if (last)
      for (auto [begin, end] : segmentsOf(module->handle))
        hasten::runtime::forgetWeights(begin, end);
    dlclose(module->handle);
  }
  if (module->weights) {
    hasten::runtime::forgetWeights(module->weights,
                                   static_cast<char *>(module->weights) + module->weightsSize);
    munmap(module->weights, module->weightsSize);
  }
  hasten::runtime::cudaFree(module->deviceWeights);
  delete module;
}

size_t hasten_module_num_entries(const hasten_module *module) {
  return module ? module->entryNames.size() : 0;
}

const char *hasten_module_entry_name(const hasten_module *module, size_t index) {
  if (!module || index >= module->entryNames.size()) {
    fail(HASTEN_ERROR_INVALID_ARGUMENT, "no entry %zu: the module has %zu", index,
         module ? module->entryNames.size() : 0);
    return nullptr;
  }
  return module->entryNames[index].c_str();
}

const char *hasten_module_compiler_version(const hasten_module *module) {
  return module && module->manifest->compiler_version()
             ? module->manifest->compiler_version()->c_str()
             : "";
}

const char *hasten_module_cpu(const hasten_module *module) {
  return module && module->manifest->cpu() ? module->manifest->cpu()->c_str() : "";
}

const char *hasten_module_cpu_features(const hasten_module *module) {
  return module ? module->cpuFeatures.c_str() : "";
}

size_t hasten_module_num_weights(const hasten_module *module) {
  return module && module->manifest->weights() ? module->manifest->weights()->size() : 0;
}

uint64_t hasten_module_weight_bytes(const hasten_module *module) {
  return module ? module->manifest->weight_bytes() : 0;
}

static const hasten::manifest::Weight *weightAt(const hasten_module *module, size_t index) {
  if (!module || !module->manifest->weights() || index >= module->manifest->weights()->size()) {
    fail(HASTEN_ERROR_INVALID_ARGUMENT, "no weight %zu: the module has %zu", index,
         hasten_module_num_weights(module));
    return nullptr;
  }
  return module->manifest->weights()->Get(index);
}

const char *hasten_module_weight_name(const hasten_module *module, size_t index) {
  const auto *w = weightAt(module, index);
  return w && w->name() ? w->name()->c_str() : nullptr;
}

const char *hasten_module_weight_format(const hasten_module *module, size_t index) {
  const auto *w = weightAt(module, index);
  return !w ? nullptr : w->format() ? w->format()->c_str() : "plain";
}

uint64_t hasten_module_weight_size(const hasten_module *module, size_t index) {
  const auto *w = weightAt(module, index);
  return w ? w->bytes() : 0;
}

const char *hasten_module_weights_path(const hasten_module *module) {
  return module ? module->weightsPath.c_str() : "";
}

hasten_status hasten_module_verify_weights(const hasten_module *module) {
  if (!module)
    return fail(HASTEN_ERROR_INVALID_ARGUMENT, "hasten_module_verify_weights: null module");
  if (!module->weights)
    return HASTEN_OK;
  hasten::ModuleHasher hasher;
  hasher.update(static_cast<const uint8_t *>(module->weights), module->weightsSize);
  if (hasher.finish() != module->manifest->weight_segment_hash())
    return fail(HASTEN_ERROR_INVALID_MODULE,
                "%s: the weights are damaged: their bytes do not match the digest the "
                "compiler recorded",
                module->weightsPath.c_str());
  return HASTEN_OK;
}

const char *hasten_runtime_kernel_isa(void) {
  static const std::string isa = [] {
    const hasten::runtime::CpuCapabilities &cpu = hasten::runtime::cpuCapabilities();
    std::string name = cpu.avx512Bf16 ? "avx512_bf16"
                       : cpu.avx512   ? "avx512"
                       : cpu.avx2     ? "avx2"
                                      : "baseline";
    return cpu.limit.empty() ? name : name + " (HASTEN_MAX_CPU_ISA=" + cpu.limit + ")";
  }();
  return isa.c_str();
}

const char *hasten_module_target(const hasten_module *module) {
  return module && module->manifest->target_triple()
             ? module->manifest->target_triple()->c_str()
             : "";
}

} // extern "C"

/// The entry named `name`, or the only one when `name` is null.
static const Entry *findEntry(const hasten_module *module, const char *name) {
  if (!module)
    return nullptr;
  if (!name) {
    if (module->entries.size() == 1)
      return &module->entries.begin()->second;
    return nullptr;
  }
  auto it = module->entries.find(name);
  return it == module->entries.end() ? nullptr : &it->second;
}

int hasten_entry_last_threads(hasten_module *module, const char *entryName) {
  const Entry *entry = module ? findEntry(module, entryName) : nullptr;
  if (!entry)
    return 0;
  std::lock_guard<std::mutex> lock(module->threadsMutex);
  auto it = module->lastThreads.find(entry);
  return it == module->lastThreads.end() ? 0 : it->second;
}

/// The signature of one input or output of `entry`; an unknown entry is
/// HASTEN_ERROR_NOT_FOUND and an index out of range
/// HASTEN_ERROR_INVALID_ARGUMENT, with hasten_last_error() set.
static hasten_status findSignature(const hasten_module *m, const char *entry, int isOutput,
                                   size_t i, const hasten::manifest::TensorSig **out) {
  const Entry *e = findEntry(m, entry);
  if (!e)
    return fail(HASTEN_ERROR_NOT_FOUND, "no entry '%s' in the module",
                entry ? entry : "(default)");
  const auto *list = isOutput ? e->sig->outputs() : e->sig->inputs();
  if (i >= list->size())
    return fail(HASTEN_ERROR_INVALID_ARGUMENT, "entry '%s' has %u %s, no index %zu",
                entry ? entry : "(default)", list->size(), isOutput ? "outputs" : "inputs", i);
  *out = list->Get(i);
  return HASTEN_OK;
}

/// The same for the accessors that return a value: null on an error.
static const hasten::manifest::TensorSig *signature(const hasten_module *m,
                                                    const char *entry,
                                                    int isOutput, size_t i) {
  const hasten::manifest::TensorSig *sig = nullptr;
  return findSignature(m, entry, isOutput, i, &sig) == HASTEN_OK ? sig : nullptr;
}

extern "C" {

hasten_status hasten_entry_num_tensors(const hasten_module *module, const char *entry,
                                       int isOutput, size_t *count) {
  const Entry *e = findEntry(module, entry);
  if (!e || !count)
    return fail(HASTEN_ERROR_NOT_FOUND, "no entry '%s' in the module", entry ? entry : "(default)");
  *count = (isOutput ? e->sig->outputs() : e->sig->inputs())->size();
  return HASTEN_OK;
}

const char *hasten_signature_name(const hasten_module *module, const char *entry,
                                  int isOutput, size_t index) {
  const auto *sig = signature(module, entry, isOutput, index);
  return sig && sig->name() ? sig->name()->c_str() : nullptr;
}

hasten_dtype hasten_signature_dtype(const hasten_module *module, const char *entry,
                                    int isOutput, size_t index) {
  const auto *sig = signature(module, entry, isOutput, index);
  return sig ? static_cast<hasten_dtype>(sig->dtype()) : HASTEN_DTYPE_INVALID;
}

int hasten_signature_dims(const hasten_module *module, const char *entry, int isOutput,
                          size_t index, int64_t *dims, int maxDims) {
  const auto *sig = signature(module, entry, isOutput, index);
  if (!sig)
    return -1;
  int rank = sig->dims() ? sig->dims()->size() : 0;
  for (int d = 0; d < rank && d < maxDims; ++d)
    dims[d] = sig->dims()->Get(d)->size();
  return rank;
}

const char *hasten_signature_dim_name(const hasten_module *module, const char *entry,
                                      int isOutput, size_t index, int dim) {
  const auto *sig = signature(module, entry, isOutput, index);
  if (!sig)
    return nullptr;
  if (!sig->dims() || dim < 0 || dim >= (int)sig->dims()->size()) {
    fail(HASTEN_ERROR_INVALID_ARGUMENT, "entry '%s': tensor %zu has no dimension %d",
         entry ? entry : "(default)", index, dim);
    return nullptr;
  }
  const auto *name = sig->dims()->Get(dim)->name();
  return name ? name->c_str() : "";
}

hasten_status hasten_entry_info(const hasten_module *module, const char *entry,
                                hasten_entry_kind *kind, const char **model) {
  const Entry *e = findEntry(module, entry);
  if (!e)
    return fail(HASTEN_ERROR_NOT_FOUND, "no entry '%s' in the module",
                entry ? entry : "(default)");
  if (kind)
    *kind = static_cast<hasten_entry_kind>(e->sig->kind());
  if (model)
    *model = e->sig->model() ? e->sig->model()->c_str() : "";
  return HASTEN_OK;
}

int64_t hasten_entry_sampler_steps(const hasten_module *module, const char *entry) {
  const Entry *e = findEntry(module, entry);
  return e ? e->sig->sampler_steps() : 0;
}

hasten_status hasten_find_entry(const hasten_module *module, const char *model,
                                hasten_entry_kind kind, const char **entry) {
  if (!module || !entry)
    return fail(HASTEN_ERROR_INVALID_ARGUMENT, "hasten_find_entry: null module or result");
  std::string wanted = model ? model : "";
  for (const auto &[name, e] : module->entries) {
    std::string entryModel = e.sig->model() ? e.sig->model()->str() : "";
    if (static_cast<hasten_entry_kind>(e.sig->kind()) == kind && entryModel == wanted) {
      *entry = name.c_str();
      return HASTEN_OK;
    }
  }
  return fail(HASTEN_ERROR_NOT_FOUND, "%s: no entry of kind %d for model '%s'",
              module->path.c_str(), int(kind), wanted.c_str());
}

hasten_status hasten_signature_role(const hasten_module *module, const char *entry,
                                    int isOutput, size_t index, hasten_tensor_role *role) {
  if (!role)
    return fail(HASTEN_ERROR_INVALID_ARGUMENT, "hasten_signature_role: null result");
  const hasten::manifest::TensorSig *sig = nullptr;
  if (hasten_status status = findSignature(module, entry, isOutput, index, &sig))
    return status;
  *role = static_cast<hasten_tensor_role>(sig->role());
  return HASTEN_OK;
}

hasten_status hasten_module_kv_cache(const hasten_module *module, const char *model,
                                     hasten_kv_cache_info *info) {
  // position_limit came later: a caller built before it passes less.
  if (!module || !info ||
      info->struct_size < offsetof(hasten_kv_cache_info, position_limit))
    return fail(HASTEN_ERROR_INVALID_ARGUMENT,
                "hasten_module_kv_cache: null argument or struct_size not set");
  std::string wanted = model ? model : "";
  if (module->manifest->kv_caches())
    for (const auto *kv : *module->manifest->kv_caches()) {
      if ((kv->model() ? kv->model()->str() : "") != wanted)
        continue;
      info->paged = kv->layout() == hasten::manifest::KVLayout_paged;
      info->dtype = static_cast<hasten_dtype>(kv->dtype());
      info->layers = kv->layers();
      info->kv_heads = kv->kv_heads();
      info->head_dim = kv->head_dim();
      info->capacity = kv->capacity();
      info->block_size = kv->block_size();
      if (info->struct_size >= sizeof(hasten_kv_cache_info))
        info->position_limit = kv->position_limit();
      return HASTEN_OK;
    }
  return fail(HASTEN_ERROR_NOT_FOUND, "%s: model '%s' has no KV cache", module->path.c_str(),
              wanted.c_str());
}

const char *hasten_module_device(const hasten_module *module) {
  return module && module->manifest->device() ? module->manifest->device()->c_str() : "";
}

hasten_status hasten_module_set_cuda_graphs(hasten_module *module, int enabled) {
  if (!module)
    return fail(HASTEN_ERROR_INVALID_ARGUMENT, "hasten_module_set_cuda_graphs: null module");
  std::lock_guard<std::mutex> lock(module->graphsMutex);
  module->cudaGraphs = enabled != 0;
  return HASTEN_OK;
}

int hasten_entry_cuda_graph_capturable(const hasten_module *module, const char *entry) {
  const Entry *e = module ? findEntry(module, entry) : nullptr;
  if (!e) {
    fail(HASTEN_ERROR_NOT_FOUND, "no entry '%s'", entry ? entry : "(null)");
    return -1;
  }
  return module->cuda && e->sig->gpu_graph() ? 1 : 0;
}

hasten_status hasten_module_cuda_graph_stats(const hasten_module *module,
                                             hasten_cuda_graph_stats *stats) {
  if (!module || !stats || stats->struct_size < sizeof(hasten_cuda_graph_stats))
    return fail(HASTEN_ERROR_INVALID_ARGUMENT,
                "hasten_module_cuda_graph_stats: null module or stats, or struct_size unset");
  std::lock_guard<std::mutex> lock(module->graphsMutex);
  *stats = module->graphStats;
  stats->struct_size = sizeof(hasten_cuda_graph_stats);
  return HASTEN_OK;
}

const char *hasten_module_cuda_graph_note(const hasten_module *module) {
  if (!module)
    return "";
  std::lock_guard<std::mutex> lock(module->graphsMutex);
  return module->graphDirectWhy.c_str();
}

static hasten_status makeTensor(hasten_dtype dtype, int rank, const int64_t *dims,
                                hasten_tensor **out) {
  if (!out || rank < 0 || (rank > 0 && !dims) || hasten_dtype_size(dtype) == 0)
    return fail(HASTEN_ERROR_INVALID_ARGUMENT, "invalid tensor description");
  for (int d = 0; d < rank; ++d)
    if (dims[d] < 0)
      return fail(HASTEN_ERROR_INVALID_ARGUMENT, "dimension %d is negative (%lld)", d,
                  (long long)dims[d]);
  if (!hasten::checkedByteSize(dims, rank, hasten_dtype_size(dtype))) {
    std::string shape;
    for (int d = 0; d < rank; ++d)
      shape += (d ? ", " : "") + std::to_string(dims[d]);
    return fail(HASTEN_ERROR_INVALID_ARGUMENT,
                "a %s tensor of shape [%s] has more bytes than can be addressed",
                hasten_dtype_name(dtype), shape.c_str());
  }
  auto *t = new hasten_tensor;
  t->dtype = dtype;
  t->dims.assign(dims, dims + rank);
  *out = t;
  return HASTEN_OK;
}

hasten_status hasten_tensor_create(hasten_dtype dtype, int rank, const int64_t *dims,
                                   hasten_tensor **out) {
  if (hasten_status s = makeTensor(dtype, rank, dims, out))
    return s;
  size_t bytes = hasten_tensor_size_bytes(*out);
  // calloc zeroes without touching fresh pages (a large tensor costs no
  // memory until it is written); 64 more bytes leave room to align.
  void *owned = bytes <= SIZE_MAX - 64 ? calloc(1, bytes + 64) : nullptr;
  if (!owned) {
    delete *out;
    *out = nullptr;
    return fail(HASTEN_ERROR_OUT_OF_MEMORY, "cannot allocate %zu bytes", bytes);
  }
  (*out)->owned = owned;
  uintptr_t aligned = (reinterpret_cast<uintptr_t>(owned) + 63) & ~uintptr_t(63);
  (*out)->data = reinterpret_cast<void *>(aligned);
  return HASTEN_OK;
}

hasten_status hasten_tensor_wrap(hasten_dtype dtype, int rank, const int64_t *dims,
                                 void *data, hasten_tensor **out) {
  if (!data && rank >= 0) {
    bool empty = false;
    for (int d = 0; d < rank; ++d)
      empty |= dims && dims[d] == 0;
    if (!empty)
      return fail(HASTEN_ERROR_INVALID_ARGUMENT, "hasten_tensor_wrap: null data");
  }
  if (hasten_status s = makeTensor(dtype, rank, dims, out))
    return s;
  (*out)->data = data;
  return HASTEN_OK;
}

void hasten_tensor_free(hasten_tensor *tensor) {
  if (!tensor)
    return;
  free(tensor->owned);
  delete tensor;
}

hasten_dtype hasten_tensor_dtype(const hasten_tensor *t) { return t->dtype; }
int hasten_tensor_rank(const hasten_tensor *t) { return (int)t->dims.size(); }
const int64_t *hasten_tensor_dims(const hasten_tensor *t) { return t->dims.data(); }
size_t hasten_tensor_num_elements(const hasten_tensor *t) {
  size_t n = 1;
  for (int64_t d : t->dims)
    n *= (size_t)d;
  return n;
}
size_t hasten_tensor_size_bytes(const hasten_tensor *t) {
  return hasten_tensor_num_elements(t) * hasten_dtype_size(t->dtype);
}
void *hasten_tensor_data(hasten_tensor *t) { return t->data; }

} // extern "C"

namespace {

/// The memref descriptor layout of MLIR's LLVM lowering, for any rank:
/// {allocated, aligned, offset, sizes[rank], strides[rank]}, all 8 bytes.
size_t descriptorWords(int rank) { return 3 + 2 * (size_t)rank; }

std::string formatDims(const std::vector<int64_t> &dims) {
  std::string s = "[";
  for (size_t i = 0; i < dims.size(); ++i)
    s += (i ? ", " : "") + std::to_string(dims[i]);
  return s + "]";
}

std::string formatSig(const hasten::manifest::TensorSig *sig) {
  std::string s = "[";
  for (size_t i = 0; sig->dims() && i < sig->dims()->size(); ++i) {
    const auto *dim = sig->dims()->Get(i);
    s += i ? ", " : "";
    if (dim->size() >= 0)
      s += std::to_string(dim->size());
    else
      s += dim->name() && dim->name()->size() ? dim->name()->str() : "?";
  }
  return s + "]";
}

} // namespace

/// Why a sequence's data and shape table (HASTEN_ROLE_SEQUENCE_DATA then
/// _SHAPES) do not describe a sequence of tensors, or "" when they do:
/// generated code reads elements where the table says, so a table that
/// points outside the data must never reach it.
/// Exporters name a dimension after others it must equal the sum of
/// (Optimum's attention_mask: "past_sequence_length + sequence_length",
/// "past_sequence_length + 1"). When every term is known (a name bound by
/// another input, or a number), the sum must hold: a shorter mask would be
/// read past its end. Returns the problem, or "" when it holds or cannot be
/// decided.
static std::string checkDimensionSum(
    const std::string &name, int64_t extent,
    const std::map<std::string, std::pair<int64_t, std::string>> &bound) {
  if (name.find('+') == std::string::npos)
    return "";
  int64_t sum = 0;
  std::string terms;
  size_t start = 0;
  while (start <= name.size()) {
    size_t plus = name.find('+', start);
    std::string term = name.substr(start, plus == std::string::npos ? std::string::npos
                                                                     : plus - start);
    term.erase(0, term.find_first_not_of(" \t"));
    term.erase(term.find_last_not_of(" \t") + 1);
    char *end = nullptr;
    long long number = std::strtoll(term.c_str(), &end, 10);
    if (!term.empty() && end && *end == 0) {
      sum += number;
      terms += (terms.empty() ? "" : " + ") + term;
    } else {
      auto it = bound.find(term);
      if (term.empty() || it == bound.end())
        return "";
      sum += it->second.first;
      terms += (terms.empty() ? "" : " + ") + term + " (" + std::to_string(it->second.first) +
               ", from input '" + it->second.second + "')";
    }
    if (plus == std::string::npos)
      break;
    start = plus + 1;
  }
  if (sum == extent)
    return "";
  return "is " + std::to_string(extent) + ", but " + terms + " = " + std::to_string(sum);
}

static std::string checkSequence(const hasten_tensor *data, const hasten_tensor *shapes) {
  if (!data || data->dims.size() != 1)
    return "its data must be a 1-D tensor right before its shape table";
  if (shapes->dtype != HASTEN_I64 || shapes->dims.size() != 2 || shapes->dims[1] < 1)
    return "its shape table must be int64 [count, 1 + largest rank]";
  const auto *table = static_cast<const int64_t *>(shapes->data);
  int64_t count = shapes->dims[0], width = shapes->dims[1];
  uint64_t total = 0;
  for (int64_t row = 0; row < count; ++row) {
    const int64_t *entry = table + row * width;
    if (entry[0] < 0 || entry[0] >= width)
      return "element " + std::to_string(row) + " has rank " + std::to_string(entry[0]) +
             ", which the table's " + std::to_string(width) + " columns cannot hold";
    uint64_t elements = 1;
    for (int64_t d = 1; d <= entry[0]; ++d) {
      if (entry[d] < 0 ||
          (entry[d] != 0 && elements > uint64_t(std::numeric_limits<int64_t>::max() / entry[d])))
        return "element " + std::to_string(row) + " has an invalid dimension " +
               std::to_string(entry[d]);
      elements *= entry[d];
    }
    total += elements;
    if (total > static_cast<uint64_t>(data->dims[0]))
      break;
  }
  if (total != static_cast<uint64_t>(data->dims[0]))
    return "its shape table describes " + std::to_string(total) + " elements but its data has " +
           std::to_string(data->dims[0]);
  return "";
}

/// Why a string tensor's bytes and lengths (HASTEN_ROLE_STRING_BYTES then
/// _LENGTHS) do not agree, or "": a length past its row would have
/// generated code read the next string, or past the end.
static std::string checkStrings(const hasten_tensor *bytes, const hasten_tensor *lengths) {
  if (!bytes || bytes->dims.size() != lengths->dims.size() + 1 ||
      !std::equal(lengths->dims.begin(), lengths->dims.end(), bytes->dims.begin()))
    return "its bytes must be [shape..., width] right before its lengths [shape...]";
  int64_t width = bytes->dims.back();
  const auto *length = static_cast<const int64_t *>(lengths->data);
  size_t n = 1;
  for (int64_t d : lengths->dims)
    n *= static_cast<size_t>(d);
  for (size_t i = 0; i < n; ++i)
    if (length[i] < 0 || length[i] > width)
      return "string " + std::to_string(i) + " has length " + std::to_string(length[i]) +
             " in rows of " + std::to_string(width) + " bytes";
  return "";
}

extern "C" hasten_status hasten_run(hasten_module *module, const char *entryName,
                                    hasten_tensor *const *inputs, size_t numInputs,
                                    hasten_tensor **outputs, size_t numOutputs) {
  if (!module)
    return fail(HASTEN_ERROR_INVALID_ARGUMENT, "hasten_run: null module");
  const Entry *entry = findEntry(module, entryName);
  if (!entry) {
    if (!entryName)
      return fail(HASTEN_ERROR_NOT_FOUND,
                  "%s: the module has %zu entries; name the one to run",
                  module->path.c_str(), module->entries.size());
    return fail(HASTEN_ERROR_NOT_FOUND, "%s: no entry named '%s'", module->path.c_str(),
                entryName);
  }
  const auto *ins = entry->sig->inputs();
  const auto *outs = entry->sig->outputs();
  const char *name = entry->sig->name()->c_str();
  if (numInputs != ins->size())
    return fail(HASTEN_ERROR_INVALID_ARGUMENT, "entry '%s' takes %u inputs, got %zu", name,
                ins->size(), numInputs);
  if (numOutputs != outs->size())
    return fail(HASTEN_ERROR_INVALID_ARGUMENT, "entry '%s' has %u outputs, got room for %zu",
                name, outs->size(), numOutputs);
  // Check every input before running anything.
  std::map<std::string, std::pair<int64_t, std::string>> symbolic;
  for (size_t i = 0; i < numInputs; ++i) {
    const auto *sig = ins->Get(i);
    const char *inputName = sig->name() ? sig->name()->c_str() : "?";
    const hasten_tensor *t = inputs[i];
    if (!t)
      return fail(HASTEN_ERROR_INVALID_ARGUMENT, "entry '%s': input '%s' is missing (null)",
                  name, inputName);
    auto expected = static_cast<hasten_dtype>(sig->dtype());
    if (t->dtype != expected)
      return fail(HASTEN_ERROR_INVALID_ARGUMENT,
                  "entry '%s': input '%s' must be %s, got %s", name, inputName,
                  hasten_dtype_name(expected), hasten_dtype_name(t->dtype));
    size_t rank = sig->dims() ? sig->dims()->size() : 0;
    if (t->dims.size() != rank)
      return fail(HASTEN_ERROR_INVALID_ARGUMENT,
                  "entry '%s': input '%s' must have shape %s, got %s", name, inputName,
                  formatSig(sig).c_str(), formatDims(t->dims).c_str());
    for (size_t d = 0; d < rank; ++d) {
      const auto *dim = sig->dims()->Get(d);
      if (dim->size() >= 0 && dim->size() != t->dims[d])
        return fail(HASTEN_ERROR_INVALID_ARGUMENT,
                    "entry '%s': input '%s' must have shape %s, got %s", name, inputName,
                    formatSig(sig).c_str(), formatDims(t->dims).c_str());
      if (dim->size() < 0 && dim->name() && dim->name()->size()) {
        auto [it, inserted] = symbolic.insert(
            {dim->name()->str(), {t->dims[d], inputName}});
        if (!inserted && it->second.first != t->dims[d])
          return fail(HASTEN_ERROR_INVALID_ARGUMENT,
                      "entry '%s': dimension '%s' is %lld in input '%s' but %lld in input '%s'",
                      name, dim->name()->c_str(), (long long)it->second.first,
                      it->second.second.c_str(), (long long)t->dims[d], inputName);
      }
    }
    if (sig->role() == hasten::manifest::Role_string_lengths) {
      std::string problem = checkStrings(i > 0 ? inputs[i - 1] : nullptr, t);
      if (!problem.empty())
        return fail(HASTEN_ERROR_INVALID_ARGUMENT, "entry '%s': strings '%s': %s", name,
                    i > 0 && ins->Get(i - 1)->name() ? ins->Get(i - 1)->name()->c_str() : "?",
                    problem.c_str());
    }
    if (sig->role() == hasten::manifest::Role_sequence_shapes) {
      std::string problem = checkSequence(i > 0 ? inputs[i - 1] : nullptr, t);
      if (!problem.empty())
        return fail(HASTEN_ERROR_INVALID_ARGUMENT, "entry '%s': sequence '%s': %s", name,
                    i > 0 && ins->Get(i - 1)->name() ? ins->Get(i - 1)->name()->c_str() : "?",
                    problem.c_str());
    }
  }
  for (const auto &[dimName, extent] : symbolic) {
    std::string problem = checkDimensionSum(dimName, extent.first, symbolic);
    if (!problem.empty())
      return fail(HASTEN_ERROR_INVALID_ARGUMENT, "entry '%s': dimension '%s' of input '%s' %s",
                  name, dimName.c_str(), extent.second.c_str(), problem.c_str());
  }
  // Descriptors for the inputs.
  std::vector<std::vector<int64_t>> inputDescs(numInputs);
  std::vector<void *> inputPtrs(numInputs);
  for (size_t i = 0; i < numInputs; ++i) {
    const hasten_tensor *t = inputs[i];
    int rank = (int)t->dims.size();
    auto &desc = inputDescs[i];
    desc.assign(descriptorWords(rank), 0);
    desc[0] = desc[1] = reinterpret_cast<int64_t>(t->data);
    int64_t stride = 1;
    for (int d = rank - 1; d >= 0; --d) {
      desc[3 + d] = t->dims[d];
      desc[3 + rank + d] = stride;
      stride *= t->dims[d];
    }
    inputPtrs[i] = desc.data();
  }
  // A CUDA module's entries take device buffers, but for scalars (rank 0:
  // a cache length), which its host code reads: the inputs go over first.
  std::vector<void *> deviceInputs;
  auto freeDeviceInputs = [&] {
    for (void *pointer : deviceInputs)
      hasten::runtime::cudaFree(pointer);
  };
  for (size_t i = 0; i < numInputs; ++i)
    if (inputs[i]->device && !module->cuda)
      return fail(HASTEN_ERROR_INVALID_ARGUMENT,
                  "entry '%s': input '%s' is in GPU memory, and this is a CPU module", name,
                  ins->Get(i)->name() ? ins->Get(i)->name()->c_str() : "?");
  if (module->cuda) {
    std::vector<hasten::runtime::StagedCopy> copies;
    std::vector<size_t> copied;
    for (size_t i = 0; i < numInputs; ++i) {
      if (inputs[i]->dims.empty() || inputs[i]->device)
        continue;
      copies.push_back({inputs[i]->data, nullptr, hasten_tensor_size_bytes(inputs[i])});
      copied.push_back(i);
    }
    std::string error;
    if (!hasten::runtime::cudaUploadInputs(copies, error))
      return fail(HASTEN_ERROR_RUNTIME, "%s: entry '%s': the inputs to the GPU: %s",
                  module->path.c_str(), name, error.c_str());
    for (size_t c = 0; c < copies.size(); ++c) {
      deviceInputs.push_back(copies[c].device);
      inputDescs[copied[c]][0] = inputDescs[copied[c]][1] =
          reinterpret_cast<int64_t>(copies[c].device);
    }
  }
  size_t resultWords = 0;
  for (size_t o = 0; o < numOutputs; ++o)
    resultWords += descriptorWords(outs->Get(o)->dims() ? outs->Get(o)->dims()->size() : 0);
  std::vector<int64_t> results(resultWords, 0);

  // A decode step of a CUDA module runs as a CUDA graph (when its host code
  // allows one): per thread, since each thread queues on its own stream.
  hasten::runtime::CudaGraph *graph = nullptr;
  if (module->cuda && entry->sig->gpu_graph() &&
      entry->sig->kind() == hasten::manifest::EntryKind_decode) {
    std::lock_guard<std::mutex> lock(module->graphsMutex);
    if (module->cudaGraphs) {
      auto &slot = module->graphs[{std::this_thread::get_id(), entry}];
      if (!slot)
        slot = std::make_unique<hasten::runtime::CudaGraph>();
      graph = slot.get();
    }
  }

  // On the pool or on this thread alone, as measured for this entry and
  // shape; a host module only (a CUDA module's host code waits on the GPU).
  const int maxThreads = omp_get_max_threads();
  hasten::runtime::ThreadChoice *choice = nullptr;
  hasten::runtime::ThreadChoice::Plan plan{maxThreads, false, false};
  if (!module->cuda && maxThreads > 1 && adaptiveThreads()) {
    std::vector<int64_t> shape;
    for (size_t i = 0; i < numInputs; ++i) {
      shape.insert(shape.end(), inputs[i]->dims.begin(), inputs[i]->dims.end());
      shape.push_back(-1);
    }
    // Bounded: a prefill of every prompt length would add one per length;
    // shapes past the bound keep the pool (none is ever removed, so the
    // pointer stays valid while other threads add theirs).
    constexpr size_t kMaxShapes = 256;
    std::lock_guard<std::mutex> lock(module->threadsMutex);
    auto key = std::make_pair(entry, std::move(shape));
    auto it = module->threadChoices.find(key);
    if (it == module->threadChoices.end() && module->threadChoices.size() < kMaxShapes)
      it = module->threadChoices.emplace(std::move(key), hasten::runtime::ThreadChoice())
               .first;
    if (it != module->threadChoices.end()) {
      choice = &it->second;
      plan = choice->next(maxThreads);
    }
  }
  const int threads = plan.threads;
  if (threads != maxThreads)
    omp_set_num_threads(threads);
  // What the pool will really give this call (hasten_entry_last_threads).
  const int running = omp_get_max_threads();

  hasten::runtime::takeKernelError();
  // A failed allocation in generated code comes back here (Allocation.cpp).
  hasten::runtime::RunAllocations run;
  hasten::runtime::beginRun(run);
  if (setjmp(run.escape) != 0) {
    if (threads != maxThreads)
      omp_set_num_threads(maxThreads);
    hasten::runtime::cudaAbandonCapture();
    hasten::runtime::endRun(run, /*failed=*/true);
    hasten::runtime::takeKernelError();
    return fail(HASTEN_ERROR_OUT_OF_MEMORY,
                "%s: entry '%s' failed: out of memory allocating %zu bytes", module->path.c_str(),
                name, run.failedBytes);
  }
  if (graph) {
    hasten::runtime::GraphRun how = hasten::runtime::cudaRunGraphed(
        *graph, [&] { entry->fn(inputPtrs.data(), results.data()); });
    std::lock_guard<std::mutex> lock(module->graphsMutex);
    hasten_cuda_graph_stats &stats = module->graphStats;
    if (how == hasten::runtime::GraphRun::Direct) {
      ++stats.direct_calls;
    } else {
      ++stats.graph_launches;
      ++(how == hasten::runtime::GraphRun::Updated ? stats.updates : stats.instantiations);
    }
    if (module->graphDirectWhy.empty())
      module->graphDirectWhy = graph->directWhy;
  } else {
    auto start = std::chrono::steady_clock::now();
    entry->fn(inputPtrs.data(), results.data());
    double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    if (threads != maxThreads)
      omp_set_num_threads(maxThreads);
    std::lock_guard<std::mutex> lock(module->threadsMutex);
    if (choice && plan.timed)
      choice->record(plan, seconds);
    module->lastThreads[entry] = running;
  }
  hasten::runtime::endRun(run, /*failed=*/false);
  if (module->cuda) {
    // The results back to the host, each device allocation freed once
    // (inputs and weights, which a result may view, are not the run's).
    std::set<void *> freed(deviceInputs.begin(), deviceInputs.end());
    const char *weightsBegin = static_cast<const char *>(module->deviceWeights);
    std::vector<hasten::runtime::StagedCopy> copies;
    std::vector<void *> toFree;
    size_t at = 0;
    for (size_t o = 0; o < numOutputs; ++o) {
      const auto *sig = outs->Get(o);
      int rank = sig->dims() ? (int)sig->dims()->size() : 0;
      int64_t *desc = &results[at];
      at += descriptorWords(rank);
      size_t elem = hasten_dtype_size(static_cast<hasten_dtype>(sig->dtype()));
      // The elements the view spans from its aligned pointer.
      int64_t span = desc[2] + 1;
      for (int d = 0; d < rank; ++d) {
        if (desc[3 + d] <= 0)
          span = 0;
        else if (span)
          span += (desc[3 + d] - 1) * std::max<int64_t>(desc[3 + rank + d], 0);
      }
      void *host = calloc(span > 0 ? size_t(span) * elem : 1, 1);
      if (!host)
        hasten::runtime::setKernelError("out of host memory for output '" +
                                        std::string(sig->name() ? sig->name()->c_str() : "?") +
                                        "'");
      else if (span > 0 && desc[1])
        copies.push_back({host, reinterpret_cast<void *>(desc[1]), size_t(span) * elem});
      auto *allocated = reinterpret_cast<char *>(desc[0]);
      bool inWeights = weightsBegin && allocated >= weightsBegin &&
                       allocated < weightsBegin + module->weightsSize;
      // A captured call's outputs live in its graph's pool.
      bool inGraph = graph && graph->owns(allocated);
      if (allocated && !inWeights && !inGraph && freed.insert(allocated).second)
        toFree.push_back(allocated);
      desc[0] = desc[1] = reinterpret_cast<int64_t>(host);
    }
    // All of them at once, after the call's work, which this waits for (a
    // failed run's outputs are not worth the copies, but its work is).
    if (hasten::runtime::hasKernelError())
      copies.clear();
    std::string error;
    if (!hasten::runtime::cudaDownloadOutputs(copies, error))
      hasten::runtime::setKernelError("the outputs from the GPU: " + error);
    for (void *allocated : toFree)
      hasten::runtime::cudaFree(allocated);
    freeDeviceInputs();
  }
  std::string kernelFailure = hasten::runtime::takeKernelError();

  // Wrap the outputs; copy any that are not contiguous row-major. Each
  // output's shape must be the one the manifest declares (a damaged module
  // could return anything); a bad one is an error, after its memory is freed.
  size_t at = 0;
  std::string shapeFailure;
  for (size_t o = 0; o < numOutputs; ++o) {
    const auto *sig = outs->Get(o);
    int rank = sig->dims() ? (int)sig->dims()->size() : 0;
    int64_t *desc = &results[at];
    at += descriptorWords(rank);
    auto *t = new hasten_tensor;
    t->dtype = static_cast<hasten_dtype>(sig->dtype());
    t->dims.assign(desc + 3, desc + 3 + rank);
    size_t elem = hasten_dtype_size(t->dtype);
    bool declared = hasten::checkedByteSize(t->dims.data(), t->dims.size(), elem).has_value();
    for (int d = 0; d < rank && declared; ++d) {
      int64_t size = sig->dims()->Get(d)->size();
      declared = size < 0 || size == t->dims[d];
    }
    if (!declared) {
      if (shapeFailure.empty())
        shapeFailure = "output '" + std::string(sig->name() ? sig->name()->c_str() : "?") +
                       "' has shape " + formatDims(t->dims) + ", but the manifest declares " +
                       formatSig(sig);
      free(reinterpret_cast<void *>(desc[0]));
      t->dims.assign(rank, 0);
      outputs[o] = t;
      continue;
    }
    char *base = reinterpret_cast<char *>(desc[1]) + desc[2] * (int64_t)elem;
    bool contiguous = true;
    int64_t expect = 1;
    for (int d = rank - 1; d >= 0; --d) {
      if (t->dims[d] != 1 && desc[3 + rank + d] != expect)
        contiguous = false;
      expect *= t->dims[d];
    }
    if (contiguous && desc[2] == 0) {
      t->data = base;
      t->owned = reinterpret_cast<void *>(desc[0]);
    } else {
      size_t bytes = hasten_tensor_size_bytes(t);
      t->owned = t->data = malloc(bytes ? bytes : 1);
      std::vector<int64_t> index(rank, 0);
      size_t count = hasten_tensor_num_elements(t);
      for (size_t n = 0; n < count; ++n) {
        int64_t offset = 0;
        for (int d = 0; d < rank; ++d)
          offset += index[d] * desc[3 + rank + d];
        memcpy(static_cast<char *>(t->data) + n * elem, base + offset * (int64_t)elem, elem);
        for (int d = rank - 1; d >= 0; --d) {
          if (++index[d] < t->dims[d])
            break;
          index[d] = 0;
        }
      }
      free(reinterpret_cast<void *>(desc[0]));
    }
    outputs[o] = t;
  }
  if (!kernelFailure.empty() || !shapeFailure.empty()) {
    for (size_t o = 0; o < numOutputs; ++o) {
      hasten_tensor_free(outputs[o]);
      outputs[o] = nullptr;
    }
    return fail(HASTEN_ERROR_RUNTIME, "%s: entry '%s' failed: %s", module->path.c_str(), name,
                (kernelFailure.empty() ? shapeFailure : kernelFailure).c_str());
  }
  return HASTEN_OK;
}
