#!/usr/bin/env python3
"""flip_bytes.py HASTEN_RUN MODULE.so COUNT ARGS...: flips one byte at COUNT
seeded random positions of MODULE.so, runs HASTEN_RUN on each damaged copy
with ARGS, and prints how the runs ended. A run may be refused (exit 1) or,
never, succeed or die by a signal."""
import os
import random
import subprocess
import sys
import tempfile

run, module, count, args = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4:]
data = open(module, "rb").read()
rng = random.Random(7)
refused, ran, crashed = 0, 0, []
with tempfile.TemporaryDirectory() as work:
    for n in range(count):
        at = rng.randrange(len(data))
        damaged = bytearray(data)
        damaged[at] ^= 1 << rng.randrange(8)
        path = os.path.join(work, f"flip{n}.so")
        open(path, "wb").write(damaged)
        result = subprocess.run([run, path] + args, capture_output=True, text=True, timeout=60)
        if result.returncode == 1 and "error:" in result.stderr:
            refused += 1
        elif result.returncode == 0:
            ran += 1
        else:
            crashed.append((at, result.returncode))
print(f"{count} flips: {refused} refused, {ran} ran, {len(crashed)} crashed {crashed}")
