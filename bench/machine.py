"""The machine a benchmark runs on: its CPU, as /proc/cpuinfo and LLVM name
it, and its memory read bandwidth, measured in the same run (the floor of
a bandwidth-bound decode step is bytes read / this bandwidth)."""
import os
import re
import subprocess

HERE = os.path.dirname(os.path.abspath(__file__))


def cpu_description(bin_dir=None):
    """'AMD EPYC (znver5; AVX-512 yes, AVX512-BF16 yes, AVX512-FP16 no, AMX no), 2 cores'."""
    model, flags = "unknown CPU", set()
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name") and model == "unknown CPU":
                model = line.split(":", 1)[1].strip()
            elif line.startswith("flags") and not flags:
                flags = set(line.split(":", 1)[1].split())
    llvm_name = ""
    try:
        out = subprocess.run(["/usr/lib/llvm-22/bin/llc", "--version"], capture_output=True,
                             text=True).stdout
        m = re.search(r"Host CPU: (\S+)", out)
        llvm_name = m.group(1) + "; " if m else ""
    except OSError:
        pass
    yes = lambda f: "yes" if f in flags else "no"  # noqa: E731
    return (f"{model} ({llvm_name}AVX-512 {yes('avx512f')}, AVX512-BF16 {yes('avx512_bf16')}, "
            f"AVX512-FP16 {yes('avx512_fp16')}, AMX {yes('amx_tile')}), {os.cpu_count()} cores")


def fma_peak(work_dir, threads):
    """The best of 3 passes of independent f32 FMA chains on `threads` threads, in
    FLOP/s (bench/fmapeak.c, built for this machine)."""
    exe = os.path.join(work_dir, "fmapeak")
    source = os.path.join(HERE, "fmapeak.c")
    if not os.path.exists(exe) or os.path.getmtime(exe) < max(os.path.getmtime(source),
                                                              os.path.getmtime(__file__)):
        # 512-bit vectors even where LLVM's tuning prefers 256-bit ones
        # (Intel's server cores): their two 512-bit FMA ports are the peak.
        subprocess.run(["/usr/lib/llvm-22/bin/clang", "-O2", "-march=native",
                        "-mprefer-vector-width=512", "-ffp-contract=fast", "-pthread", source,
                        "-o", exe], check=True)
    out = subprocess.run([exe, str(threads)], capture_output=True, text=True, check=True).stdout
    return float(re.search(r"fma_gflops ([0-9.]+)", out).group(1)) * 1e9


def membw_binary(work_dir):
    """bench/membw.c built for this machine into work_dir."""
    exe = os.path.join(work_dir, "membw")
    source = os.path.join(HERE, "membw.c")
    if not os.path.exists(exe) or os.path.getmtime(exe) < max(os.path.getmtime(source),
                                                              os.path.getmtime(__file__)):
        subprocess.run(["/usr/lib/llvm-22/bin/clang", "-O3", "-march=native", "-ffast-math",
                        "-pthread", source, "-o", exe], check=True)
    return exe


def read_bandwidth(work_dir, threads, mib=512, passes=7):
    """The best of `passes` read-bandwidth passes, in bytes/s, over a `mib` MiB buffer with
    `threads` threads (a few seconds at the defaults)."""
    out = subprocess.run([membw_binary(work_dir), str(threads), str(mib), str(passes)],
                         capture_output=True, text=True, check=True).stdout
    return float(re.search(r"read_gbps ([0-9.]+)", out).group(1)) * 1e9
