# -*- Python -*-
# lit configuration for hasten: FileCheck tests over hasten-opt and the other
# tools, in folders that mirror the source tree.

import os

import lit.formats
from lit.llvm import llvm_config
from lit.llvm.subst import ToolSubst

config.name = "HASTEN"
config.test_format = lit.formats.ShTest(not llvm_config.use_lit_shell)
config.suffixes = [".mlir", ".test"]
config.excludes = ["CMakeLists.txt", "lit.cfg.py", "lit.site.cfg.py", "Inputs", "unit", "models"]

config.test_source_root = os.path.dirname(__file__)
config.test_exec_root = os.path.join(config.hasten_obj_root, "test")

config.substitutions.append(("%PATH%", config.environment["PATH"]))
config.substitutions.append(("%python", config.python_executable))
config.substitutions.append(("%hasten_src", config.hasten_src_root))
config.substitutions.append(("%hasten_obj", config.hasten_obj_root))

# In the ASan build (scripts/test.sh), tests that run the tools under
# valgrind say `UNSUPPORTED: asan`: the two cannot watch one process.
if "Address" in getattr(config, "hasten_sanitizers", ""):
    config.available_features.add("asan")

# The sanitizer build's options reach the tools the tests run.
for name in ("ASAN_OPTIONS", "UBSAN_OPTIONS", "LSAN_OPTIONS"):
    if name in os.environ:
        config.environment[name] = os.environ[name]

llvm_config.use_default_substitutions()
llvm_config.with_environment("PATH", config.llvm_tools_dir, append_path=True)

tool_dirs = [config.hasten_tools_dir, config.llvm_tools_dir]
tools = ["hasten-opt", "hasten-import", "hasten-compile", "hasten-run", "llvm-nm"]
llvm_config.add_tool_substitutions(tools, tool_dirs)


# A CPU feature this machine lacks, for testing that the runtime refuses a
# module that needs it: AMD parts lack AVX512-FP16 and AMX, Intel parts lack
# SSE4a. (LLVM feature name, /proc/cpuinfo name.)
def cpuinfo_flags():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()

flags = cpuinfo_flags()
for llvm_name, cpuinfo_name in (("avx512fp16", "avx512_fp16"), ("amx-bf16", "amx_bf16"),
                                ("sse4a", "sse4a")):
    if cpuinfo_name not in flags:
        config.substitutions.append(("%missing_cpu_feature_llvm", llvm_name))
        config.substitutions.append(("%missing_cpu_feature", cpuinfo_name))
        config.available_features.add("missing-cpu-feature")
        break

# The stand-in CUDA driver the runtime's CUDA tests load (test/CMakeLists.txt),
# which is also the stand-in cuBLASLt: every test that runs a CUDA module on
# the fake driver gets the fake library for its GEMMs.
fake_cuda = os.path.join(config.hasten_obj_root, "lib", "libhasten_fake_cuda.so")
config.substitutions.append(("%fake_cuda", fake_cuda))
config.environment["HASTEN_CUBLASLT"] = fake_cuda

# The CUDA toolkit's ptxas, which the CUDA target runs for its cubins.
if os.access("/usr/local/cuda/bin/ptxas", os.X_OK):
    config.available_features.add("ptxas")
config.substitutions.append(("%ptxas", "/usr/local/cuda/bin/ptxas"))
