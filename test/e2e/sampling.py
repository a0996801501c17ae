#!/usr/bin/env python3
"""The runtime's sampler (hasten_sample, which hasten_generate uses) against
the distributions it should draw from, computed with numpy: greedy at
temperature 0; softmax(logits / T); top-k renormalized over the k most
likely; top-p over the smallest set reaching p; the same seed giving the same
draws. Frequencies over 40000 draws must be within 0.012 of the exact
probabilities (about 5 standard deviations), and excluded tokens must never
appear.

usage: sampling.py BUILD_DIR
"""
import ctypes
import os
import sys

import numpy as np


class Options(ctypes.Structure):
    _fields_ = [("struct_size", ctypes.c_size_t), ("max_new_tokens", ctypes.c_int64), ("temperature", ctypes.c_float),
                ("top_k", ctypes.c_int32), ("top_p", ctypes.c_float),
                ("seed", ctypes.c_uint64), ("stop_tokens", ctypes.c_void_p),
                ("num_stop_tokens", ctypes.c_size_t), ("on_token", ctypes.c_void_p),
                ("user_data", ctypes.c_void_p)]


def main():
    lib = ctypes.CDLL(os.path.join(sys.argv[1], "lib", "libhasten_runtime.so"))
    lib.hasten_sample.argtypes = [ctypes.POINTER(ctypes.c_float), ctypes.c_int64,
                                  ctypes.POINTER(Options), ctypes.POINTER(ctypes.c_uint64),
                                  ctypes.POINTER(ctypes.c_int64)]
    lib.hasten_generate_options_init.argtypes = [ctypes.POINTER(Options)]
    logits = np.array([2.0, 1.0, 0.5, 3.0, -1.0, 0.0, 1.5, -2.0], np.float32)
    draws = 40000
    passed = failed = 0

    def sample(opts, n, seed=12345):
        state = ctypes.c_uint64(seed)
        token = ctypes.c_int64()
        out = np.empty(n, np.int64)
        ptr = logits.ctypes.data_as(ctypes.POINTER(ctypes.c_float))
        for i in range(n):
            assert lib.hasten_sample(ptr, len(logits), ctypes.byref(opts), ctypes.byref(state),
                                     ctypes.byref(token)) == 0
            out[i] = token.value
        return out

    def options(temperature=1.0, top_k=0, top_p=1.0):
        o = Options()
        lib.hasten_generate_options_init(ctypes.byref(o))
        o.temperature, o.top_k, o.top_p = temperature, top_k, top_p
        return o

    def expected(temperature=1.0, top_k=0, top_p=1.0):
        z = logits.astype(np.float64) / temperature
        order = np.argsort(-z, kind="stable")
        keep = order[:top_k] if top_k else order
        p = np.exp(z[keep] - z[keep].max())
        p /= p.sum()
        if top_p < 1.0:
            cut = int(np.searchsorted(np.cumsum(p), top_p) + 1)
            keep, p = keep[:cut], p[:cut] / p[:cut].sum()
        probs = np.zeros(len(logits))
        probs[keep] = p
        return probs

    def check(ok, what):
        nonlocal passed, failed
        passed += ok
        failed += not ok
        print(f"{'ok  ' if ok else 'FAIL'} {what}")

    greedy = sample(options(temperature=0.0), 50)
    check(np.all(greedy == np.argmax(logits)), "temperature 0 is the argmax")
    for name, kw in (("temperature 1", {}), ("temperature 0.5", {"temperature": 0.5}),
                     ("temperature 2", {"temperature": 2.0}), ("top-k 3", {"top_k": 3}),
                     ("top-p 0.8", {"top_p": 0.8}), ("top-k 4, top-p 0.9", {"top_k": 4, "top_p": 0.9})):
        got = np.bincount(sample(options(**kw), draws), minlength=len(logits)) / draws
        want = expected(**kw)
        worst = float(np.max(np.abs(got - want)))
        never = bool(np.all(got[want == 0] == 0))
        check(worst < 0.012 and never,
              f"{name}: frequencies within {worst:.4f} of the exact distribution"
              + ("" if never else ", but excluded tokens were drawn"))
    a, b = sample(options(), 200, seed=7), sample(options(), 200, seed=7)
    c = sample(options(), 200, seed=8)
    check(np.array_equal(a, b) and not np.array_equal(a, c),
          "the same seed gives the same draws, another seed others")
    # Options that were not initialized (struct_size 0) are refused, not
    # read past their end.
    lib.hasten_last_error.restype = ctypes.c_char_p
    raw = Options()
    state, token = ctypes.c_uint64(1), ctypes.c_int64()
    status = lib.hasten_sample(logits.ctypes.data_as(ctypes.POINTER(ctypes.c_float)),
                               len(logits), ctypes.byref(raw), ctypes.byref(state),
                               ctypes.byref(token))
    message = lib.hasten_last_error().decode()
    check(status != 0 and "struct_size is 0" in message and "hasten_generate_options_init"
          in message, f"options without struct_size are refused: {message}")
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
