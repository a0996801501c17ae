//===- CpuFeatures.cpp - what the runtime's kernels may use on this CPU ---===//

#include "CpuFeatures.h"

#include <oneapi/dnnl/dnnl.hpp>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>

namespace {

std::set<std::string> readCpuinfoFlags() {
  std::set<std::string> result;
  std::ifstream cpuinfo("/proc/cpuinfo");
  std::string line;
  while (std::getline(cpuinfo, line)) {
    if (line.rfind("flags", 0) != 0)
      continue;
    std::istringstream words(line.substr(line.find(':') + 1));
    std::string word;
    while (words >> word)
      result.insert(word);
    break;
  }
  return result;
}

/// Drops the flags of instruction sets above the limit: everything from
/// AVX-512 and AMX up for `avx2`, and AVX and its kin too for `baseline`.
void dropAbove(std::set<std::string> &flags, bool keepAvx2, bool keepAvx512) {
  for (auto it = flags.begin(); it != flags.end();) {
    const std::string &f = *it;
    bool avx512Class = f.rfind("avx512", 0) == 0 || f.rfind("amx", 0) == 0;
    bool avx2Class = f == "avx" || f == "avx2" || f == "fma" || f == "f16c" || f == "bmi1" ||
                     f == "bmi2" || f == "abm" || f == "movbe" || f.rfind("avx_", 0) == 0 ||
                     f == "vaes" || f == "vpclmulqdq" || f == "gfni";
    if ((avx512Class && !keepAvx512) || (avx2Class && !keepAvx2))
      it = flags.erase(it);
    else
      ++it;
  }
}

hasten::runtime::CpuCapabilities detect() {
  hasten::runtime::CpuCapabilities caps;
  caps.features = readCpuinfoFlags();
  __builtin_cpu_init();
  caps.avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  caps.avx512 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl");
  caps.avx512Bf16 = caps.avx512 && __builtin_cpu_supports("avx512bf16");
  caps.avx512Vnni = caps.avx512 && __builtin_cpu_supports("avx512vnni");
  caps.prefetchToL2 = __builtin_cpu_is("intel");
  const char *limit = getenv("HASTEN_MAX_CPU_ISA");
  if (!limit || !*limit || !strcmp(limit, "native"))
    return caps;
  caps.limit = limit;
  if (!strcmp(limit, "avx512")) {
    caps.avx512Bf16 = caps.avx512Vnni = false;
    caps.features.erase("avx512_bf16");
    for (const char *amx : {"amx_tile", "amx_bf16", "amx_int8", "amx_fp16"})
      caps.features.erase(amx);
    dnnl::set_max_cpu_isa(dnnl::cpu_isa::avx512_core);
  } else if (!strcmp(limit, "avx2")) {
    caps.avx512 = caps.avx512Bf16 = caps.avx512Vnni = false;
    dropAbove(caps.features, /*keepAvx2=*/true, /*keepAvx512=*/false);
    dnnl::set_max_cpu_isa(dnnl::cpu_isa::avx2);
  } else if (!strcmp(limit, "baseline")) {
    caps.avx2 = caps.avx512 = caps.avx512Bf16 = caps.avx512Vnni = false;
    dropAbove(caps.features, /*keepAvx2=*/false, /*keepAvx512=*/false);
    dnnl::set_max_cpu_isa(dnnl::cpu_isa::sse41);
  } else {
    fprintf(stderr,
            "hasten: warning: ignoring HASTEN_MAX_CPU_ISA=%s (expected baseline, avx2, "
            "avx512 or native)\n",
            limit);
    caps.limit.clear();
  }
  return caps;
}

} // namespace

const hasten::runtime::CpuCapabilities &hasten::runtime::cpuCapabilities() {
  static const CpuCapabilities caps = detect();
  return caps;
}
