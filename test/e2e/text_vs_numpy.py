#!/usr/bin/env python3
"""TfIdfVectorizer beyond ONNX's own cases (all TF mode, unigrams and
bigrams, identity output positions), against a numpy port of ONNX's
reference walk (a trie of the pool followed from every start position, for
every skip distance, unigrams at distance 1 only): IDF and TFIDF with
weights, permuted output positions (a weight belongs to its pool n-gram, as
the specification and ONNX Runtime have it), trigrams, int32 ids, batches;
and the refusal of string pools.

Run with a Python that has onnxruntime (bench/ort_env.py's venv) and every
case is also compared with ONNX Runtime.

usage: text_vs_numpy.py BIN_DIR
"""
import os
import sys
import tempfile

import numpy as np
from onnx import TensorProto, helper

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import e2e_common as e2e  # noqa: E402


def reference(x, mode, min_n, max_n, max_skip, counts, indexes, pool, weights):
    """ONNX's reference algorithm: the pool as a trie, walked from each start."""
    trie = {}
    entry = 0
    for n in range(1, len(counts) + 1):
        begin = counts[n - 1]
        end = counts[n] if n < len(counts) else len(pool)
        for at in range(begin, end, n):
            node = trie
            for k, token in enumerate(pool[at:at + n]):
                node = node.setdefault(token, [None, {}])
                if k == n - 1:
                    node[0] = entry
                node = node[1]
            entry += 1
    rows = x.reshape(-1, x.shape[-1])
    size = max(indexes) + 1
    freq = np.zeros((rows.shape[0], size), np.int64)
    for r, row in enumerate(rows):
        start_n = min_n
        for distance in range(1, max_skip + 2):
            for start in range(len(row)):
                if start + distance * (start_n - 1) >= len(row):
                    break
                node, item, n = trie, start, 1
                while node and n <= max_n and item < len(row):
                    hit = node.get(int(row[item]))
                    if hit is None:
                        break
                    if n >= start_n and hit[0] is not None:
                        freq[r, indexes[hit[0]]] += 1
                    node, n, item = hit[1], n + 1, item + distance
            if start_n == 1:
                start_n += 1
                if start_n > max_n:
                    break
    # A weight belongs to a pool n-gram, as the specification says and ONNX
    # Runtime computes (ONNX's Python reference reads it by output position).
    w = np.ones(size, np.float32)
    for p, weight in enumerate(weights):
        w[indexes[p]] = weight
    if mode == "TF":
        y = freq.astype(np.float32)
    elif mode == "IDF":
        y = np.where(freq > 0, w, 0).astype(np.float32)
    else:
        y = (freq * w).astype(np.float32)
    return y.reshape(x.shape[:-1] + (size,))


def main():
    bin_dir = sys.argv[1]
    c = e2e.Checks()
    rng = np.random.default_rng(2)
    pool_uni, pool_bi, pool_tri = [2, 3, 5, 4], [5, 6, 7, 8, 6, 7, 3, 3], [5, 6, 7, 2, 2, 2]
    pool = pool_uni + pool_bi + pool_tri
    counts = [0, 4, 12]
    entries = 4 + 4 + 2
    permuted = [int(i) for i in rng.permutation(entries)]
    cases = [
        ("tfidf_weights_permuted", "TFIDF", 1, 3, 2, permuted,
         [float(v) for v in rng.uniform(0.5, 2, entries)], np.int64, (3, 9)),
        ("idf_weights", "IDF", 2, 3, 1, list(range(entries)),
         [float(v) for v in rng.uniform(0.5, 2, entries)], np.int64, (2, 10)),
        ("idf_no_weights_int32", "IDF", 1, 2, 0, list(range(entries)), [], np.int32, (12,)),
        ("tf_trigrams_only", "TF", 3, 3, 3, list(range(entries)), [], np.int64, (2, 11)),
        ("tf_shared_outputs", "TF", 1, 2, 1, [0, 1, 2, 3, 0, 1, 2, 3, 4, 4], [], np.int64, (15,)),
    ]
    with tempfile.TemporaryDirectory(prefix="hasten-text-") as work:
        for name, mode, min_n, max_n, skip, indexes, weights, dtype, shape in cases:
            x = rng.choice([2, 3, 5, 6, 7, 8, 9], size=shape).astype(dtype)
            attrs = dict(mode=mode, min_gram_length=min_n, max_gram_length=max_n,
                         max_skip_count=skip, ngram_counts=counts, ngram_indexes=indexes,
                         pool_int64s=pool)
            if weights:
                attrs["weights"] = weights
            node = helper.make_node("TfIdfVectorizer", ["x"], ["y"], **attrs)
            out_shape = list(shape[:-1]) + [max(indexes) + 1]
            compiled = e2e.compile_node(c, bin_dir, work, name, node, {"x": x},
                                        [("y", TensorProto.FLOAT, out_shape)], 11)
            if not compiled:
                continue
            (got,), ort = e2e.run_with_ort(bin_dir, work, compiled, {"x": x}, ["y"], name)
            want = reference(x, mode, min_n, max_n, skip, counts, indexes, pool, weights)
            ok = got.shape == want.shape and np.allclose(got, want, rtol=1e-6)
            ort_ok = ort is None or np.allclose(ort[0], want, rtol=1e-6)
            c.check(ok and ort_ok, f"{name}: {mode} n-grams {min_n}..{max_n}, skip {skip}, "
                    f"{int((want > 0).sum())} nonzero of {want.size} = numpy"
                    + ("" if ort is None else " = ONNX Runtime")
                    + ("" if ok else f"; got {got.tolist()}, want {want.tolist()}")
                    + ("" if ort_ok else f"; ONNX Runtime {ort[0].tolist()}, want {want.tolist()}"))
        node = helper.make_node("TfIdfVectorizer", ["x"], ["y"], name="words", mode="TF",
                                min_gram_length=1, max_gram_length=1, max_skip_count=0,
                                ngram_counts=[0], ngram_indexes=[0, 1],
                                pool_strings=["a", "b"])
        status, stderr = e2e.compile_refused(bin_dir, work, "tfidf_strings", node,
                                             {"x": np.zeros(3, np.int64)},
                                             [("y", TensorProto.FLOAT, [2])], 11)
        c.check(status == 1 and "node 'words'" in stderr and "string pools" in stderr,
                f"a string pool is refused naming the node: {stderr[-160:]}")
    print(f"{c.passed} passed, {c.failed} failed")
    return 1 if c.failed else 0


if __name__ == "__main__":
    sys.exit(main())
