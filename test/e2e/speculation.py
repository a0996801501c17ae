#!/usr/bin/env python3
"""Speculative decoding end to end: a target decoder compiled with a draft
into one module (hasten-compile --draft), driven through the runtime's
hasten_generate_speculative (ctypes) and hasten-run, against the numpy
reference of test/models/make_decoder.py.

Checks, on tiny random-weight pairs (the properties hold for any pair):
- the verify entries (target and draft namespaces) return every position's
  logits, as the reference computes them;
- greedy speculative output equals the target's greedy reference for several
  prompts, K = 1 to 8 and auto, with an unrelated draft, with the target as
  its own draft (acceptance near one) and with prompt lookup (n-gram), on
  contiguous and paged caches; the same through the fused spec_step entry,
  contiguous and paged;
- after generating, both caches hold what a fresh run over their tokens
  would: the next logits match the reference;
- with temperature 1 and top-k 3, the first three tokens follow the target's
  joint distribution (chi-square over 3000 seeds), for a draft model and for
  prompt lookup, while the draft's own distribution is rejected by the same
  test;
- the fused spec_step samples inside (rejection sampling in IR): on a
  21-token vocabulary (16 read at a time, then 5) at temperature 0.3, with
  every step after the first token fused, the first four tokens follow the
  target's joint distribution and not the draft's (chi-square over 3000
  seeds); greedy, it gives the target's greedy output there too;
- K=auto sampling at temperature 0.1 over 24 tokens: each token's rank
  under the target's distribution given the tokens before it follows that
  distribution (chi-square over 3000 seeds), once the policy has learned
  its acceptance rates and stops by confidence;
- BiLD fallback keeps the output and proposes less; BiLD rollback with a huge
  threshold accepts every proposal;
- RAPID: the draft holds the BM25-selected chunks (recomputed here) and the
  output is still the target's;
- a draft of another vocabulary, a target without a verify entry and a full
  cache are refused with clear errors;
- hasten-run --generate speculates on a pair module and prints the same ids
  as --no-speculation and --draft=ngram.

usage: speculation.py BUILD_DIR [--compile-flag FLAG]...
"""
import json
import math
import os
import subprocess
import sys
import tempfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "models"))
sys.path.insert(0, HERE)
import e2e_common as e2e  # noqa: E402
import hasten_ctypes as hc  # noqa: E402
import make_decoder as md  # noqa: E402

REL_TOL = 1e-4
CAPACITY = 128
PROMPTS = [[1, 17, 42, 99, 5, 200, 3], [7, 7, 7, 7], [250, 3, 250, 3, 250, 3, 12],
           [64, 65, 66, 67, 68, 69, 70, 71, 72, 73, 74]]
NEW_TOKENS = 24
# chi-square critical value for p = 0.001 by degrees of freedom (scipy-free).
CHI2_CRITICAL = {df: v for df, v in enumerate(
    [0, 10.83, 13.82, 16.27, 18.47, 20.52, 22.46, 24.32, 26.12, 27.88, 29.59, 31.26, 32.91,
     34.53, 36.12, 37.70, 39.25, 40.79, 42.31, 43.82, 45.31, 46.80, 48.27, 49.73, 51.18, 52.62,
     54.05])}


def chi2_critical(df):
    """The p = 0.001 critical value: the table, then Wilson and Hilferty's
    cube-root normal approximation (within 0.5% there)."""
    if df in CHI2_CRITICAL:
        return CHI2_CRITICAL[df]
    h = 2.0 / (9.0 * df)
    return df * (1.0 - h + 3.0902 * math.sqrt(h)) ** 3


def rel_error(got, want):
    return float(np.max(np.abs(got - want)) / max(1e-6, np.max(np.abs(want))))


def ref_logits(cfg, w, tokens):
    """Reference logits of every position of `tokens`, [len, vocab]."""
    logits, _ = md.reference(cfg, w, np.array([tokens]))
    return logits[0]


def greedy_reference(cfg, w, prompt, count):
    logits, past = md.reference(cfg, w, np.array([prompt]))
    out = []
    for i in range(count):
        token = int(np.argmax(logits[0, -1]))
        out.append(token)
        if i + 1 < count:
            logits, past = md.reference(cfg, w, np.array([[token]]), past=past)
    return out


def softmax_topk(row, k):
    z = row.astype(np.float64)
    keep = np.argsort(-z, kind="stable")[:k]
    p = np.exp(z[keep] - z[keep].max())
    probs = np.zeros(len(row))
    probs[keep] = p / p.sum()
    return probs


def joint_distribution(cfg, w, prompt, depth, k):
    """{(t1, ..., t_depth): probability} under top-k sampling at temperature 1."""
    out = {}

    def walk(prefix, prob):
        if len(prefix) == depth:
            out[tuple(prefix)] = prob
            return
        row = ref_logits(cfg, w, prompt + prefix)[-1]
        for t, p in enumerate(softmax_topk(row, k)):
            if p > 0:
                walk(prefix + [t], prob * p)
    walk([], 1.0)
    return out


def joint_distribution_pruned(cfg, w, prompt, depth, temperature, n):
    """{cells: probability} of the first `depth` tokens sampled at
    `temperature`: a prefix is followed while n times its probability is at
    least 5, and the tokens not followed after a prefix pool into the cell
    prefix + ("*",). Also returns the function mapping a sample to its cell."""
    out, followed = {}, set()

    def walk(prefix, prob):
        if len(prefix) == depth:
            out[tuple(prefix)] = prob
            return
        z = ref_logits(cfg, w, prompt + prefix)[-1].astype(np.float64) / temperature
        p = np.exp(z - z.max())
        p /= p.sum()
        rest = 0.0
        for t, pt in enumerate(p):
            if n * prob * pt >= 5:
                followed.add(tuple(prefix + [t]))
                walk(prefix + [t], prob * pt)
            else:
                rest += prob * pt
        if rest > 0:
            out[tuple(prefix) + ("*",)] = rest
    walk([], 1.0)

    def cell(sample):
        for d in range(depth):
            if tuple(sample[:d + 1]) not in followed:
                return tuple(sample[:d]) + ("*",)
        return tuple(sample[:depth])
    return out, cell


def chi_square(samples, joint):
    """Pearson's statistic and degrees of freedom; cells expected below 5
    are pooled, and samples outside the support count against it."""
    n = len(samples)
    counts = {}
    for s in samples:
        counts[s] = counts.get(s, 0) + 1
    outside = sum(c for s, c in counts.items() if s not in joint)
    cells, pooled_obs, pooled_exp = [], 0, 0.0
    for cell, p in joint.items():
        if n * p < 5:
            pooled_obs += counts.get(cell, 0)
            pooled_exp += n * p
        else:
            cells.append((counts.get(cell, 0), n * p))
    if pooled_exp > 0:
        cells.append((pooled_obs, pooled_exp))
    stat = sum((o - e) ** 2 / e for o, e in cells)
    if outside:
        stat = math.inf
    return stat, len(cells) - 1


def conditional_rank_test(target, draft, cfg, w, prompt, temperature, count, draws):
    """Speculative sampling, `count` tokens per seed for `draws` seeds: every
    token's rank class (the target's most likely token given the tokens
    before it, the second, the third or fourth, the rest) counted against
    the sum of those classes' probabilities over the same positions.
    Lossless sampling draws each token from the target's distribution given
    its prefix, whatever came before, so the counts follow the sums (the
    positions' spread is below a multinomial's: Pearson's statistic is
    conservative). Returns the statistic, its degrees of freedom and the
    proposals made and kept."""
    observed, expected, drafted, accepted = np.zeros(4), np.zeros(4), 0, 0
    for seed in range(draws):
        target.truncate(0)
        draft.truncate(0)
        got, _, ss, status, error = target.generate(
            prompt, count, draft=draft, speculative=True, k=0, temperature=temperature,
            seed=seed + 1)
        if status:
            raise RuntimeError(error)
        drafted += ss.drafted
        accepted += ss.accepted
        z = ref_logits(cfg, w, prompt + got[:-1])[len(prompt) - 1:].astype(np.float64)
        z /= temperature
        p = np.exp(z - z.max(axis=1, keepdims=True))
        p /= p.sum(axis=1, keepdims=True)
        order = np.argsort(-p, axis=1, kind="stable")
        for row, token in enumerate(got):
            ranked = p[row][order[row]]
            expected += [ranked[0], ranked[1], ranked[2:4].sum(), ranked[4:].sum()]
            rank = int(np.nonzero(order[row] == token)[0][0])
            observed[0 if rank == 0 else 1 if rank == 1 else 2 if rank < 4 else 3] += 1
    return float(((observed - expected) ** 2 / expected).sum()), 3, drafted, accepted


def bm25_context(context, budget, chunk):
    """RAPID's shortened context, recomputed independently of the runtime."""
    if len(context) <= budget:
        return list(context)
    recent_start = len(context) - chunk
    query = set(context[recent_start:])
    chunks = [context[b:min(b + chunk, recent_start)] for b in range(0, recent_start, chunk)]
    mean_length = recent_start / len(chunks)
    scores = []
    for c in chunks:
        score = 0.0
        for term in query:
            f = c.count(term)
            if not f:
                continue
            containing = sum(term in other for other in chunks)
            idf = math.log((len(chunks) - containing + 0.5) / (containing + 0.5) + 1.0)
            score += idf * f * 2.2 / (f + 1.2 * (0.25 + 0.75 * len(c) / mean_length))
        scores.append(score)
    order = sorted(range(len(chunks)), key=lambda i: (-scores[i], -i))
    room, chosen = budget - chunk, set()
    for i in order:
        if len(chunks[i]) <= room:
            chosen.add(i)
            room -= len(chunks[i])
    return [t for i in sorted(chosen) for t in chunks[i]] + list(context[recent_start:])


def write_decoder(cfg, path):
    """The ONNX file of make_decoder.py for `cfg` (the weights that
    md.make_weights(cfg) gives the reference)."""
    subprocess.run([sys.executable, os.path.join(HERE, "..", "models", "make_decoder.py"),
                    "--arch", cfg.arch, "--layers", str(cfg.layers), "--hidden", str(cfg.hidden),
                    "--heads", str(cfg.heads), "--kv-heads", str(cfg.kv_heads), "--vocab",
                    str(cfg.vocab), "--seed", str(cfg.seed), "-o", path],
                   check=True, capture_output=True)
    return path


def blind_copy(path, out):
    """`path` with its final norm's weights zeroed: every logit is 0, so the
    draft proposes token 0 with confidence 1/vocab, and is rarely right."""
    import onnx
    from onnx import numpy_helper
    model = onnx.load(path)
    for init in model.graph.initializer:
        if init.name.startswith("final_norm."):
            init.CopyFrom(numpy_helper.from_array(
                np.zeros_like(numpy_helper.to_array(init)), init.name))
    onnx.save(model, out)
    return out


def compile_module(build, onnx_path, out, flags):
    proc = subprocess.run([os.path.join(build, "bin", "hasten-compile"), onnx_path, "-o", out,
                           f"--kv-capacity={CAPACITY}"] + flags, capture_output=True, text=True)
    if proc.returncode:
        raise RuntimeError(proc.stderr)
    return proc.stdout


def run_generate(build, module_path, prompt, count, flags):
    proc = subprocess.run([os.path.join(build, "bin", "hasten-run"), module_path, "--generate",
                           "--prompt-ids", ",".join(map(str, prompt)), "--max-new-tokens",
                           str(count), "--print-ids", "--quiet"] + flags,
                          capture_output=True, text=True)
    if proc.returncode:
        raise RuntimeError(proc.stderr)
    line = next(l for l in proc.stdout.splitlines() if l.startswith("ids: "))
    return [int(t) for t in line[len("ids: "):].split(",")], proc.stderr


def main():
    args = e2e.parse_args("build")
    build = args.build
    rt = hc.Runtime(os.path.join(build, "lib"))
    c = e2e.Checks()
    tcfg = md.Config(**md.PRESETS["llama-tiny"])
    dcfg = md.Config(arch="gpt2", layers=1, hidden=32, heads=2, vocab=256, seed=7)
    vcfg = md.Config(arch="gpt2", layers=1, hidden=32, heads=2, vocab=128, seed=3)
    tw, dw = md.make_weights(tcfg), md.make_weights(dcfg)
    with tempfile.TemporaryDirectory(prefix="hasten-spec-") as work:
        paths = {name: write_decoder(cfg, os.path.join(work, name + ".onnx"))
                 for name, cfg in (("target", tcfg), ("draft", dcfg), ("v128", vcfg))}
        pair = os.path.join(work, "pair.so")
        report = json.loads(compile_module(build, paths["target"], pair,
                                           ["--draft", paths["draft"], "--memory-report"] +
                                           args.compile_flag))
        want_kv = {"layers": dcfg.layers, "kv_heads": dcfg.kv_heads, "head_dim": dcfg.head_dim,
                   "capacity_tokens": CAPACITY,
                   "bytes_per_token": dcfg.layers * 2 * dcfg.kv_heads * dcfg.head_dim * 4}
        got_kv = {key: report.get("draft_kv_cache", {}).get(key) for key in want_kv}
        c.check(got_kv == want_kv and report["kv_cache"]["layers"] == tcfg.layers,
                f"the memory report shows the draft's cache: {got_kv}")
        self_pair = os.path.join(work, "self-pair.so")
        compile_module(build, paths["target"], self_pair, ["--draft", paths["target"]] +
                       args.compile_flag)
        blind_pair = os.path.join(work, "blind-pair.so")
        compile_module(build, paths["target"], blind_pair,
                       ["--draft", blind_copy(paths["draft"], os.path.join(work, "blind.onnx"))] +
                       args.compile_flag)
        paged_pair = os.path.join(work, "paged-pair.so")
        compile_module(build, paths["target"], paged_pair,
                       ["--draft", paths["draft"], "--kv-block-size=16"] + args.compile_flag)
        fused_pair = os.path.join(work, "fused-pair.so")
        compile_module(build, paths["target"], fused_pair,
                       ["--draft", paths["draft"], "--spec-k=4"] + args.compile_flag)
        fused_paged_pair = os.path.join(work, "fused-paged-pair.so")
        compile_module(build, paths["target"], fused_paged_pair,
                       ["--draft", paths["draft"], "--spec-k=4", "--kv-block-size=8"] +
                       args.compile_flag)
        v128 = os.path.join(work, "v128.so")
        compile_module(build, paths["v128"], v128, ["--no-verify-entry"] + args.compile_flag)

        # The compiler refuses a draft with another vocabulary.
        try:
            compile_module(build, paths["target"], os.path.join(work, "bad.so"),
                           ["--draft", paths["v128"]])
            c.check(False, "a draft of another vocabulary is refused by hasten-compile")
        except RuntimeError as e:
            c.check("vocabulary of 128 tokens, the target 256" in str(e),
                    f"a draft of another vocabulary is refused: {str(e).strip()}")

        module = rt.load(pair)
        # Verify entries: every position's logits.
        for model, cfg, w in ((None, tcfg, tw), ("draft", dcfg, dw)):
            seq = module.sequence(model=model)
            prompt, more = PROMPTS[0], [9, 8, 7, 6, 5]
            seq.append(prompt)
            got = seq.verify(more)
            want = ref_logits(cfg, w, prompt + more)[len(prompt):]
            err = rel_error(got, want)
            c.check(err <= REL_TOL and len(seq) == len(prompt) + len(more),
                    f"verify ({model or 'target'}): logits of 5 positions after 7, "
                    f"relative error {err:.1e}")
            seq.free()

        references = {tuple(p): greedy_reference(tcfg, tw, p, NEW_TOKENS) for p in PROMPTS}
        proposed_per_pass = {}

        def greedy_runs(mod, label, runs):
            for kw_label, use_draft, kw in runs:
                mismatches, drafted, accepted, steps = [], 0, 0, 0
                for p in PROMPTS:
                    target = mod.sequence()
                    draft = mod.sequence(model="draft") if use_draft else None
                    got, _, ss, status, error = target.generate(p, NEW_TOKENS, draft=draft,
                                                                speculative=True, **kw)
                    if status or got != references[tuple(p)]:
                        mismatches.append((p, got, error))
                    drafted += ss.drafted
                    accepted += ss.accepted
                    steps += ss.steps
                    target.free()
                    if draft is not None:
                        draft.free()
                rate = accepted / drafted if drafted else 0.0
                c.check(not mismatches,
                        f"{label}, {kw_label}: greedy output = target's reference on "
                        f"{len(PROMPTS)} prompts (acceptance {rate:.2f} of {drafted})"
                        + (f"; first mismatch {mismatches[0]}" if mismatches else ""))
                proposed_per_pass[(label, kw_label)] = drafted / max(1, steps)
                yield kw_label, rate

        # Target alone, for the record, then each K.
        plain = [module.sequence().generate(p, NEW_TOKENS)[0] for p in PROMPTS]
        c.check(plain == [references[tuple(p)] for p in PROMPTS],
                "target alone (hasten_generate) = reference")
        runs = [(f"K={k}", True, {"k": k}) for k in range(1, 9)] + [("K=auto", True, {})]
        list(greedy_runs(module, "unrelated draft", runs))
        # k = 0 with a draft model stops proposing what the target rejects; a
        # fixed K (or a K chosen per generation, at least 1) proposes every
        # pass. A blind draft (uniform logits) is right about 1 time in 256.
        blind_rates = dict(greedy_runs(rt.load(blind_pair), "blind draft",
                                       [("K=2", True, {"k": 2}), ("K=auto", True, {})]))
        auto_rate = proposed_per_pass[("blind draft", "K=auto")]
        c.check(blind_rates["K=2"] < 0.1 and auto_rate < 1.0,
                f"blind draft (acceptance {blind_rates['K=2']:.2f} at K=2), K=auto: "
                f"{auto_rate:.2f} proposals per pass (< 1: it stops proposing what is rejected)")
        ngram = dict(greedy_runs(module, "prompt lookup", [("K=auto", False, {}),
                                                            ("K=8", False, {"k": 8})]))
        c.check(ngram["K=8"] > 0, f"prompt lookup proposes and some are accepted "
                                  f"(rate {ngram['K=8']:.2f})")
        self_module = rt.load(self_pair)
        rates = dict(greedy_runs(self_module, "target as its own draft",
                                 [("K=4", True, {"k": 4}), ("K=auto", True, {})]))
        c.check(rates["K=4"] >= 0.95, f"the target as its own draft is accepted "
                                      f"(rate {rates['K=4']:.3f} >= 0.95)")
        paged = rt.load(paged_pair)
        list(greedy_runs(paged, "paged caches, unrelated draft",
                         [("K=3", True, {"k": 3}), ("K=auto", True, {})]))

        # The fused spec_step entry (hasten-compile --spec-k=4) runs the steps
        # at K = 4 and gives the same output; another K runs the runtime's loop.
        # On paged caches (blocks of 8: steps cross block boundaries) too.
        fused, fused_paged = rt.load(fused_pair), rt.load(fused_paged_pair)
        for mod, k, label in ((fused, 4, "fused spec_step module"),
                              (fused, 3, "fused spec_step module"),
                              (fused_paged, 4, "fused spec_step, paged caches")):
            bad, fused_steps, steps = [], 0, 0
            for p in PROMPTS:
                target, draft = mod.sequence(), mod.sequence(model="draft")
                got, _, ss, status, error = target.generate(p, NEW_TOKENS, draft=draft,
                                                            speculative=True, k=k)
                if status or got != references[tuple(p)]:
                    bad.append((p, got, error))
                fused_steps += ss.fused_steps
                steps += ss.steps
                # The caches hold what a fresh run over their tokens would.
                held = target.tokens()
                err = rel_error(target.append([got[-1]]), ref_logits(tcfg, tw, p + got)[-1])
                draft_held = draft.tokens()
                probe = (p + got)[len(draft_held)]
                err_d = rel_error(draft.append([probe]),
                                  ref_logits(dcfg, dw, draft_held + [probe])[-1])
                if held != p + got[:-1] or draft_held != (p + got)[:len(draft_held)] or \
                        err > REL_TOL or err_d > REL_TOL:
                    bad.append((p, "caches", err, err_d))
                # A paged sequence holds the blocks of its tokens and no more
                # (blocks of 8; the probes above added one token to each).
                for seq in (target, draft) if mod is fused_paged else ():
                    if seq.blocks_held() != (len(seq) + 7) // 8:
                        bad.append((p, "blocks", seq.blocks_held(), len(seq)))
                target.free()
                draft.free()
            want_fused = k == 4
            c.check(not bad and (fused_steps > 0) == want_fused and
                    (2 * fused_steps > steps if want_fused else True),
                    f"{label}, K={k}: output = reference, caches = fresh runs, "
                    f"{fused_steps} of {steps} steps fused" + (f"; {bad[0]}" if bad else ""))
        # A fork shares its original's blocks, the last one partly full:
        # after fused steps on the original (which must not keep the blocks
        # of rejected tokens, or the fork would share them), the fork and
        # the original continue with fused steps, each copying the shared
        # block before writing it; both continue as the reference.
        p = PROMPTS[3]
        want = references[tuple(p)]
        original, draft = fused_paged.sequence(), fused_paged.sequence(model="draft")
        first, _, first_ss, status, error = original.generate(p, 10, draft=draft,
                                                              speculative=True, k=4)
        draft.free()
        forked = original.fork()
        outputs = []
        for seq in (forked, original):
            draft = fused_paged.sequence(model="draft")
            got, _, ss, status, error = seq.generate([first[-1]], NEW_TOKENS - 10, draft=draft,
                                                     speculative=True, k=4)
            err = rel_error(seq.append([got[-1]]), ref_logits(tcfg, tw, p + first + got)[-1])
            outputs.append((got, ss.fused_steps, status, err))
            draft.free()
        c.check(first == want[:10] and first_ss.fused_steps > 0 and
                all(g == want[10:] and f > 0 and not st and e <= REL_TOL
                    for g, f, st, e in outputs),
                f"paged fused steps, then a fork: the fork and the original both continue as "
                f"the reference, caches = fresh runs "
                f"({[(f, float('%.1g' % e)) for _, f, _, e in outputs]})")
        forked.free()
        original.free()

        # Both caches after generating hold what a fresh run would.
        for mod, label in ((module, "contiguous"), (paged, "paged")):
            target, draft = mod.sequence(), mod.sequence(model="draft")
            p = PROMPTS[2]
            got, _, ss, status, _ = target.generate(p, 20, draft=draft, speculative=True, k=5)
            held = target.tokens()
            ok = held == p + got[:-1]
            next_logits = target.append([got[-1]])
            err_t = rel_error(next_logits, ref_logits(tcfg, tw, p + got)[-1])
            draft_held = draft.tokens()
            ok_d = draft_held == (p + got)[:len(draft_held)] and len(draft_held) > len(p)
            probe = (p + got)[len(draft_held)] if len(draft_held) < len(p + got) else 0
            err_d = rel_error(draft.append([probe]), ref_logits(dcfg, dw, draft_held + [probe])[-1])
            c.check(ok and ok_d and err_t <= REL_TOL and err_d <= REL_TOL,
                    f"{label}: after speculation the target holds prompt + generated[:-1] "
                    f"({len(held)} tokens) and the draft a prefix ({len(draft_held)}); next "
                    f"logits relative error target {err_t:.1e}, draft {err_d:.1e}")
            target.free()
            draft.free()

        # Stochastic: the joint distribution of the first three tokens.
        prompt = [5, 6, 7, 5, 6, 7, 5, 6]
        joint = joint_distribution(tcfg, tw, prompt, 3, 3)
        draft_joint = joint_distribution(dcfg, dw, prompt, 3, 3)
        # K=auto decides each step's length from the draft's distribution
        # (here from its priors: 4 tokens are too few to measure costs).
        for label, use_draft, k in (("draft model", True, 3), ("prompt lookup", False, 3),
                                    ("draft model, K=auto", True, 0)):
            target = module.sequence()
            draft = module.sequence(model="draft") if use_draft else None
            samples, drafted, accepted = [], 0, 0
            for seed in range(3000):
                target.truncate(0)
                got, _, ss, status, error = target.generate(
                    prompt, 4, draft=draft, speculative=True, k=k, temperature=1.0, top_k=3,
                    seed=seed + 1)
                if status:
                    raise RuntimeError(error)
                samples.append(tuple(got[:3]))
                drafted += ss.drafted
                accepted += ss.accepted
            stat, df = chi_square(samples, joint)
            c.check(stat < chi2_critical(df) and drafted > 0,
                    f"{label}, temperature 1, top-k 3: first 3 tokens follow the target's "
                    f"distribution, chi-square {stat:.1f} < {chi2_critical(df):.1f} "
                    f"({df} dof, acceptance {accepted / max(1, drafted):.2f} of {drafted})")
            if use_draft:
                dstat, ddf = chi_square(samples, draft_joint)
                c.check(dstat > chi2_critical(ddf),
                        f"the same test rejects the draft's own distribution "
                        f"(chi-square {dstat:.1f})")
            target.free()
            if draft is not None:
                draft.free()

        # The fused step samples inside: a 21-token pair (a 16-token chunk and
        # a tail of 5 for its vector passes) at temperature 0.3
        # (where the two models' distributions differ), K = 2, 5 new tokens:
        # the runtime draws the first token, and every step until the fourth
        # token is at least K + 1 from the end, so the fused entry emits
        # tokens 2 and 3 always and token 4 whenever it accepts both
        # proposals (its draw from the target's last row).
        scfg = md.Config(arch="llama", layers=2, hidden=64, heads=4, kv_heads=2, vocab=21, seed=1)
        sdcfg = md.Config(arch="gpt2", layers=1, hidden=32, heads=2, vocab=21, seed=7)
        small_fused = os.path.join(work, "small-fused.so")
        compile_module(build, write_decoder(scfg, os.path.join(work, "small-target.onnx")),
                       small_fused,
                       ["--draft", write_decoder(sdcfg, os.path.join(work, "small-draft.onnx")),
                        "--spec-k=2"] + args.compile_flag)
        temperature, draws = 0.3, 3000
        sw, sdw = md.make_weights(scfg), md.make_weights(sdcfg)
        small_joint, small_cell = joint_distribution_pruned(scfg, sw, prompt, 4, temperature,
                                                            draws)
        small_draft_joint, small_draft_cell = joint_distribution_pruned(sdcfg, sdw, prompt, 4,
                                                                        temperature, draws)
        small_module = rt.load(small_fused)
        target, draft = small_module.sequence(), small_module.sequence(model="draft")

        def sample_runs(k, temp, cells):
            """5 tokens per seed from the small pair: the cells each of
            `cells` puts them in, and the fused steps, proposals and
            acceptances in all."""
            cell_samples, totals = [[] for _ in cells], [0, 0, 0]
            for seed in range(draws):
                target.truncate(0)
                draft.truncate(0)
                got, _, ss, status, error = target.generate(
                    prompt, 5, draft=draft, speculative=True, k=k, temperature=temp,
                    seed=seed + 1)
                if status:
                    raise RuntimeError(error)
                for samples_of, cell in zip(cell_samples, cells):
                    samples_of.append(cell(got))
                totals = [totals[0] + ss.fused_steps, totals[1] + ss.drafted,
                          totals[2] + ss.accepted]
            return cell_samples, totals

        (samples, draft_cells), (fused_steps, drafted, accepted) = sample_runs(
            2, temperature, [small_cell, small_draft_cell])
        stat, df = chi_square(samples, small_joint)
        c.check(stat < chi2_critical(df) and fused_steps >= draws,
                f"fused spec_step, temperature {temperature}: the first 4 tokens follow the "
                f"target's distribution, chi-square {stat:.1f} < {chi2_critical(df):.1f} "
                f"({df} dof; {fused_steps} fused steps, acceptance "
                f"{accepted / max(1, drafted):.2f} of {drafted})")
        dstat, ddf = chi_square(draft_cells, small_draft_joint)
        c.check(dstat > chi2_critical(ddf),
                f"the same test rejects the draft's own distribution (chi-square {dstat:.1f})")
        # The same pair with K=auto (the runtime's loop) at temperature 0.1,
        # where the draft's first distribution has a top probability of 0.63
        # and the rest below 0.07: a step proposes by that distribution (its
        # priors: 5 tokens measure no costs), never by the token it draws
        # (proposing only its likely draws would skew the first token).
        auto_t = 0.1
        auto_joint, auto_cell = joint_distribution_pruned(scfg, sw, prompt, 4, auto_t, draws)
        (samples,), (_, drafted, accepted) = sample_runs(0, auto_t, [auto_cell])
        stat, df = chi_square(samples, auto_joint)
        c.check(stat < chi2_critical(df) and drafted > 0,
                f"K=auto, temperature {auto_t}: the first 4 tokens follow the target's "
                f"distribution, chi-square {stat:.1f} < {chi2_critical(df):.1f} ({df} dof; "
                f"acceptance {accepted / max(1, drafted):.2f} of {drafted})")
        # Past the first steps the policy has learned its bins' acceptance
        # rates, and the confidence it decides on changes its decisions:
        # every token of 24 (not only the first four) must follow the
        # target's distribution given the tokens before it.
        stat, df, drafted, accepted = conditional_rank_test(
            target, draft, scfg, sw, prompt, auto_t, 24, draws)
        c.check(stat < chi2_critical(df) and drafted > 0,
                f"K=auto, temperature {auto_t}, 24 tokens: each token's rank under the "
                f"target's distribution given the tokens before it, chi-square {stat:.1f} < "
                f"{chi2_critical(df):.1f} ({df} dof; acceptance "
                f"{accepted / max(1, drafted):.2f} of {drafted})")
        bad, fused_steps = [], 0
        for p in PROMPTS:
            p = [t % scfg.vocab for t in p]
            target.truncate(0)
            got, _, ss, status, error = target.generate(p, NEW_TOKENS, draft=draft,
                                                        speculative=True, k=2)
            fused_steps += ss.fused_steps
            if status or got != greedy_reference(scfg, sw, p, NEW_TOKENS):
                bad.append((p, got, error))
        c.check(not bad and fused_steps > 0,
                f"the same pair, greedy: output = the target's reference on {len(PROMPTS)} "
                f"prompts ({fused_steps} fused steps)" + (f"; {bad[0]}" if bad else ""))
        target.free()
        draft.free()

        # BiLD policies.
        p = PROMPTS[0]
        target, draft = module.sequence(), module.sequence(model="draft")
        got_k, _, base_ss, _, _ = target.generate(p, NEW_TOKENS, draft=draft, speculative=True,
                                                  k=4)
        base_drafted = base_ss.drafted
        # A threshold at the median of the draft's top probabilities along the
        # output stops some proposals and not others.
        rows = ref_logits(dcfg, dw, p + references[tuple(p)])[len(p) - 1:]
        z = np.exp(rows - rows.max(axis=1, keepdims=True))
        threshold = float(np.median(z.max(axis=1) / z.sum(axis=1)))
        target.truncate(0)
        got, _, ss, status, _ = target.generate(p, NEW_TOKENS, draft=draft, speculative=True,
                                                k=4, fallback_threshold=threshold)
        c.check(got == references[tuple(p)] and 0 < ss.drafted < base_drafted,
                f"BiLD fallback {threshold:.4f}: output unchanged, {ss.drafted} proposals "
                f"instead of {base_drafted}")
        target.truncate(0)
        got, _, ss, status, _ = target.generate(p, NEW_TOKENS, draft=draft, speculative=True,
                                                k=4, rollback_threshold=1e6)
        c.check(status == 0 and ss.drafted > 0 and ss.accepted == ss.drafted,
                f"BiLD rollback with a huge threshold accepts all {ss.drafted} proposals")
        target.free()
        draft.free()

        # RAPID: a long context; the draft reads 48 tokens of it.
        rng = np.random.default_rng(5)
        long_prompt = [int(t) for t in rng.integers(0, 40, 100)]
        target, draft = module.sequence(), module.sequence(model="draft")
        got, _, ss, status, error = target.generate(long_prompt, 12, draft=draft,
                                                    speculative=True, k=3, rapid_context=48,
                                                    rapid_chunk=16)
        expected = bm25_context(long_prompt, 48, 16)
        c.check(status == 0 and ss.draft_context_tokens == 48 and
                draft.tokens()[:48] == expected,
                f"RAPID: the draft read {ss.draft_context_tokens} of {len(long_prompt)} tokens, "
                f"the BM25 selection ({error})")
        c.check(got == greedy_reference(tcfg, tw, long_prompt, 12),
                "RAPID: the output is still the target's greedy output")
        target.free()
        draft.free()

        # Refusals.
        other = rt.load(v128)
        target, small = module.sequence(), other.sequence()
        _, _, _, status, error = target.generate(PROMPTS[0], 8, draft=small, speculative=True)
        c.check(status == 1 and "vocabulary (128 tokens) is not the target's (256)" in error,
                f"a draft of another vocabulary is refused: {error}")
        small.truncate(0)
        _, _, _, status, error = small.generate(PROMPTS[0], 8, speculative=True)
        c.check(status == 2 and "no verify entry" in error,
                f"a target without a verify entry is refused: {error}")
        small.free()
        target.free()
        long_prompt = list(range(1, 101))
        target, draft = module.sequence(), module.sequence(model="draft")
        got_s, _, _, status_s, error_s = target.generate(long_prompt, 64, draft=draft,
                                                         speculative=True, k=4)
        target.free()
        target = module.sequence()
        got_p, _, _, status_p, _ = target.generate(long_prompt, 64)
        c.check(status_s == 5 and status_p == 5 and got_s == got_p and
                "KV cache full" in error_s,
                f"a full cache ends speculation as it ends plain generation, after the "
                f"same {len(got_s)} tokens: {error_s}")
        target.free()
        draft.free()

        # hasten-run.
        ids_spec, log = run_generate(build, pair, PROMPTS[0], NEW_TOKENS, [])
        ids_plain, _ = run_generate(build, pair, PROMPTS[0], NEW_TOKENS, ["--no-speculation"])
        ids_ngram, log_ngram = run_generate(build, pair, PROMPTS[0], NEW_TOKENS,
                                            ["--draft=ngram", "--spec-k=4"])
        ids_fused, log_fused = run_generate(build, fused_pair, PROMPTS[0], NEW_TOKENS, [])
        want = PROMPTS[0] + references[tuple(PROMPTS[0])]
        c.check(ids_fused == want and "K 4" in log_fused and "fused spec_step entry" in log_fused,
                "hasten-run on a --spec-k=4 module runs the fused entry at K 4, same ids")
        c.check(ids_spec == want and ids_plain == want and ids_ngram == want and
                "speculation: draft-model drafter" in log and "acceptance" in log and
                "n-gram drafter, K 4" in log_ngram,
                "hasten-run --generate speculates on a pair module; ids equal "
                "--no-speculation's and --draft=ngram's")

    print(f"{c.passed} passed, {c.failed} failed")
    return 1 if c.failed else 0


if __name__ == "__main__":
    sys.exit(main())
