#!/usr/bin/env python3
"""compare.py ACTUAL.npy EXPECTED.npy: exits 1 unless they match (rtol 1e-6)."""
import sys

import numpy as np

a, e = np.load(sys.argv[1]), np.load(sys.argv[2])
if a.shape != e.shape or a.dtype != e.dtype or not np.allclose(a, e, rtol=1e-6, atol=0):
    print(f"MISMATCH shape {a.shape} vs {e.shape}, dtype {a.dtype} vs {e.dtype}")
    sys.exit(1)
print(f"MATCH {a.shape} {a.dtype}")
