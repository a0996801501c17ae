#!/usr/bin/env python3
"""Writes .npy inputs for the tool tests: make_arrays.py DIR."""
import os
import sys

import numpy as np

d = sys.argv[1]
os.makedirs(d, exist_ok=True)
x = np.arange(2 * 3 * 4, dtype=np.float32).reshape(2, 3, 4) - 7.5
np.save(os.path.join(d, "x.npy"), x)
np.save(os.path.join(d, "b.npy"), np.array([0.5, -1.0, 2.0, 0.25], np.float32))
np.save(os.path.join(d, "expected.npy"), (x + np.array([0.5, -1.0, 2.0, 0.25], np.float32)) * 2)
np.save(os.path.join(d, "x_f64.npy"), x.astype(np.float64))
np.save(os.path.join(d, "x_rank2.npy"), x.reshape(6, 4))
np.save(os.path.join(d, "b_wrong.npy"), np.ones(5, np.float32))
