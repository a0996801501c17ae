#!/usr/bin/env python3
"""The installed SDK, used as a deployer uses it: `cmake --install` into a
temporary prefix, then examples/deploy/ built against that prefix with
find_package(hasten) and with pkg-config, run on models compiled by the
installed hasten-compile.

Checks:
- the prefix holds the tools, libhasten_runtime.so with its SONAME, the
  public headers, hastenConfig.cmake and hasten.pc, and no static libraries
  of the compiler;
- a module's RUNPATH names the prefix's lib folder and $ORIGIN (not the
  build tree), so a process that does not link the runtime can load it, and
  --runtime-rpath replaces it;
- the installed Python package (lib/python3/dist-packages) compiles with
  the installed hasten-compile and runs the module, as numpy computes;
- run_graph (C) prints tanh(x·W + b) as numpy computes it, and generate
  (C++) prints the greedy tokens of the numpy reference decoder, each built
  both ways.

usage: deploy_examples.py BUILD_DIR
"""
import ctypes
import os
import shutil
import subprocess
import sys
import tempfile

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(HERE, "..", "e2e"))
sys.path.insert(0, os.path.join(HERE, "..", "models"))
import e2e_common as e2e  # noqa: E402
import generation_vs_numpy as gen  # noqa: E402
import make_decoder as md  # noqa: E402

CC = "/usr/lib/llvm-22/bin/clang"
CXX = "/usr/lib/llvm-22/bin/clang++"
READELF = "/usr/lib/llvm-22/bin/llvm-readelf"


def run(cmd, **kw):
    proc = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if proc.returncode:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n"
                           f"{proc.stdout[-2000:]}{proc.stderr[-2000:]}")
    return proc.stdout


def dynamic_entry(path, tag):
    """The value of a dynamic-section entry (RUNPATH, SONAME), or None."""
    for line in run([READELF, "-d", path]).splitlines():
        if f"({tag})" in line:
            return line.split("[", 1)[1].rsplit("]", 1)[0]
    return None


def graph_model(path):
    rng = np.random.default_rng(7)
    w = rng.standard_normal((5, 4)).astype(np.float32)
    b = rng.standard_normal(4).astype(np.float32)
    nodes = [helper.make_node("MatMul", ["x", "w"], ["xw"]),
             helper.make_node("Add", ["xw", "b"], ["z"]),
             helper.make_node("Tanh", ["z"], ["y"])]
    graph = helper.make_graph(
        nodes, "affine_tanh",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [3, 5])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [3, 4])],
        [numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b")])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    x = ((np.arange(15) % 7) * 0.5 - 1.0).astype(np.float32).reshape(3, 5)
    return np.tanh(x @ w + b)


def main():
    build = os.path.abspath(sys.argv[1])
    c = e2e.Checks()
    with tempfile.TemporaryDirectory(prefix="hasten-install-") as work:
        prefix = os.path.join(work, "prefix")
        run(["cmake", "--install", build, "--prefix", prefix])
        lib = os.path.join(prefix, "lib")

        tools = ["hasten-compile", "hasten-run", "hasten-opt", "hasten-import"]
        c.check(all(os.access(os.path.join(prefix, "bin", t), os.X_OK) for t in tools),
                "the four tools are installed")
        runtime = os.path.join(lib, "libhasten_runtime.so")
        c.check(os.path.exists(runtime) and
                dynamic_entry(runtime, "SONAME") == "libhasten_runtime.so.0",
                f"libhasten_runtime.so has SONAME {dynamic_entry(runtime, 'SONAME')}")
        wanted = ["include/hasten/runtime.h", "include/hasten/runtime.hpp",
                  "lib/cmake/hasten/hastenConfig.cmake", "lib/pkgconfig/hasten.pc"]
        missing = [f for f in wanted if not os.path.exists(os.path.join(prefix, f))]
        c.check(not missing, f"headers, CMake package and pkg-config file installed "
                             f"(missing: {missing})")
        static = [f for f in os.listdir(lib) if f.endswith(".a")]
        c.check(not static, f"no compiler static libraries installed ({static})")

        # Models, compiled by the installed compiler.
        compile_ = os.path.join(prefix, "bin", "hasten-compile")
        expected_graph = graph_model(os.path.join(work, "graph.onnx"))
        graph_so = os.path.join(work, "graph.so")
        run([compile_, os.path.join(work, "graph.onnx"), "-o", graph_so])
        cfg = md.Config(**md.PRESETS["gpt2-tiny"])
        decoder_onnx = os.path.join(work, "decoder.onnx")
        run(["/usr/bin/python3", os.path.join(ROOT, "test", "models", "make_decoder.py"),
             "--preset", "gpt2-tiny", "-o", decoder_onnx])
        decoder_so = os.path.join(work, "decoder.so")
        run([compile_, decoder_onnx, "-o", decoder_so, "--kv-capacity=64"])
        # The tiny random decoder repeats one token per prompt, so two
        # prompts make sure the answer depends on the prompt.
        prompts, count = ([1, 17, 42, 99, 5], [72, 101, 108, 108, 111]), 12
        weights = md.make_weights(cfg)
        expected_tokens = [gen.greedy_reference(cfg, weights, p, count) for p in prompts]

        rpath = dynamic_entry(decoder_so, "RUNPATH")
        c.check(rpath == f"{lib}:$ORIGIN", f"the module's RUNPATH is {rpath}")
        # A process that does not link the runtime (this Python) loads the
        # module; the loader finds libhasten_runtime.so.0 through the RUNPATH.
        probe = subprocess.run(["/usr/bin/python3", "-c",
                                f"import ctypes; ctypes.CDLL({decoder_so!r}); print('loaded')"],
                               capture_output=True, text=True,
                               env={k: v for k, v in os.environ.items()
                                    if k != "LD_LIBRARY_PATH"})
        c.check(probe.stdout.strip() == "loaded",
                f"dlopen of the module alone resolves the runtime {probe.stderr.strip()[-200:]}")
        custom = os.path.join(work, "custom.so")
        run([compile_, os.path.join(work, "graph.onnx"), "-o", custom,
             "--runtime-rpath=/opt/hasten/lib"])
        c.check(dynamic_entry(custom, "RUNPATH") == "/opt/hasten/lib",
                f"--runtime-rpath sets it ({dynamic_entry(custom, 'RUNPATH')})")

        def check_programs(how, run_graph, generate):
            out = run([run_graph, graph_so])
            got = np.array([float(v) for v in out.split()], dtype=np.float32)
            ok = got.size == expected_graph.size and np.allclose(
                got, expected_graph.ravel(), rtol=1e-5, atol=1e-6)
            c.check(ok, f"{how}: run_graph prints numpy's tanh(x·W + b)")
            got = [[int(t) for t in run([generate, decoder_so, str(count)] +
                                        [str(t) for t in prompt]).split()]
                   for prompt in prompts]
            c.check(got == expected_tokens,
                    f"{how}: generate prints the reference's greedy tokens for two "
                    f"prompts {[g[:3] for g in got]}...")
            bad = subprocess.run([run_graph, os.path.join(work, "graph.onnx")],
                                 capture_output=True, text=True)
            c.check(bad.returncode == 1 and "graph.onnx" in bad.stderr,
                    f"{how}: a file that is not a module is refused by name "
                    f"({bad.stderr.strip()[:120]})")

        # The Python package from the prefix, compiling with the installed tools.
        site = os.path.join(lib, "python3", "dist-packages")
        script = ("import hasten, numpy as np, sys\n"
                  "print(hasten.__file__)\n"
                  f"so = hasten.compile({os.path.join(work, 'graph.onnx')!r}, "
                  f"{os.path.join(work, 'py-graph.so')!r})\n"
                  "x = ((np.arange(15) % 7) * 0.5 - 1.0).astype(np.float32).reshape(3, 5)\n"
                  "print(' '.join(repr(float(v)) for v in hasten.load(so).run(x=x)['y'].ravel()))\n")
        env = {k: v for k, v in os.environ.items() if k not in ("LD_LIBRARY_PATH", "PYTHONPATH")}
        env["PYTHONPATH"] = site
        out = run(["/usr/bin/python3", "-c", script], env=env).splitlines()
        got = np.array([float(v) for v in out[1].split()], dtype=np.float32)
        c.check(out[0].startswith(site) and np.allclose(got, expected_graph.ravel(), rtol=1e-5,
                                                        atol=1e-6),
                "the installed Python package compiles with the installed tools and runs "
                "(numpy's values)")

        # find_package(hasten)
        example_build = os.path.join(work, "cmake-build")
        run(["cmake", "-S", os.path.join(ROOT, "examples", "deploy"), "-B", example_build,
             f"-DCMAKE_PREFIX_PATH={prefix}", f"-DCMAKE_C_COMPILER={CC}",
             f"-DCMAKE_CXX_COMPILER={CXX}"])
        run(["cmake", "--build", example_build])
        check_programs("find_package", os.path.join(example_build, "run_graph"),
                       os.path.join(example_build, "generate"))

        # pkg-config
        env = dict(os.environ, PKG_CONFIG_PATH=os.path.join(lib, "pkgconfig"))
        flags = run(["pkg-config", "--cflags", "--libs", "hasten"], env=env).split()
        src = os.path.join(ROOT, "examples", "deploy")
        pc_graph, pc_generate = os.path.join(work, "pc_run_graph"), os.path.join(work, "pc_generate")
        run([CC, os.path.join(src, "run_graph.c"), "-o", pc_graph] + flags)
        run([CXX, "-std=c++17", os.path.join(src, "generate.cpp"), "-o", pc_generate] + flags)
        check_programs("pkg-config", pc_graph, pc_generate)

    print(f"{c.passed} passed, {c.failed} failed")
    return 1 if c.failed else 0


if __name__ == "__main__":
    sys.exit(main())
