#!/usr/bin/env python3
"""Checks `hasten-compile --timing` output (stdin): every phase of the
library pipeline once, in order, with a time in seconds; the total at least
the sum of the phases (they run one after the other) and no more than the
wall time of the command (argv[1], seconds). Prints 'TIMING OK' or why not."""
import re
import sys

PHASES = ["import", "attention fusion", "decoder entries", "tensor passes", "bufferization", "lowering to LLVM dialect", "weight segment", "translation to LLVM IR", "LLVM O3", "code generation",
          "link"]

lines = [l for l in sys.stdin.read().splitlines() if re.match(r"\s+[0-9.]+ s  ", l)]
parsed = [(m.group(2), float(m.group(1)))
          for m in (re.match(r"\s+([0-9.]+) s  (.*)$", l) for l in lines)]
names = [n for n, _ in parsed]
problems = []
if names != PHASES + ["total"]:
    problems.append(f"phases {names}, expected {PHASES + ['total']}")
else:
    phase_sum = sum(t for n, t in parsed[:-1])
    total = parsed[-1][1]
    wall = float(sys.argv[1])
    # Each figure is rounded to the millisecond.
    if total + 0.001 * len(PHASES) < phase_sum:
        problems.append(f"total {total} s is less than the phases' sum {phase_sum:.3f} s")
    if total > wall:
        problems.append(f"total {total} s exceeds the command's wall time {wall:.3f} s")
print("TIMING OK" if not problems else "TIMING BAD: " + "; ".join(problems))
