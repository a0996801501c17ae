//===- CpuFeatures.h - what the runtime's kernels may use on this CPU -----===//
//
// One decision, made once per process from CPUID (never from the build host):
// which instruction sets the runtime's kernels dispatch to, which features a
// module may require, and the ceiling oneDNN is given. HASTEN_MAX_CPU_ISA
// (baseline, avx2, avx512, native) caps it, so that an AVX2-only host can be
// tested on a larger one.
//
//===----------------------------------------------------------------------===//

#ifndef HASTEN_RUNTIME_CPUFEATURES_H
#define HASTEN_RUNTIME_CPUFEATURES_H

#include <set>
#include <string>

namespace hasten::runtime {

struct CpuCapabilities {
  /// AVX2 with FMA: the 256-bit kernel variants.
  bool avx2 = false;
  /// AVX-512 F/BW/DQ/VL: the 512-bit kernels, and oneDNN's bf16 matmuls
  /// (emulated on AVX-512 cores without bf16 instructions).
  bool avx512 = false;
  /// AVX512-BF16 (vdpbf16ps): the bf16 GEMV.
  bool avx512Bf16 = false;
  /// AVX512-VNNI (vpdpbusd): the int8 and int4 GEMVs (off under
  /// HASTEN_MAX_CPU_ISA=avx512).
  bool avx512Vnni = false;
  /// Whether kernels prefetch data for their next step into L2 ahead of
  /// use: Intel cores, where it was measured to help. On AMD's (Zen 4
  /// measured) the attention kernel ran 1.5-2% faster without its prefetch
  /// of the next part of keys and values. The cause was not isolated: AMD
  /// documents Zen 4's prefetcht1 as filling L2, as Intel's does; the parts
  /// are contiguous runs that the hardware prefetchers follow by
  /// themselves, so the prefetches may only take load slots and miss
  /// buffers there.
  bool prefetchToL2 = false;
  /// The HASTEN_MAX_CPU_ISA value in force, or "" for none.
  std::string limit;
  /// /proc/cpuinfo flags of this CPU, less those above the limit.
  std::set<std::string> features;
};

/// This process's capabilities (computed on first use; the runtime's
/// startup calls it before any kernel, so oneDNN sees the same limit).
const CpuCapabilities &cpuCapabilities();

} // namespace hasten::runtime

#endif // HASTEN_RUNTIME_CPUFEATURES_H
