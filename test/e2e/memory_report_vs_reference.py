#!/usr/bin/env python3
"""The memory report (`hasten-compile --memory-report`) against an independent
computation, for the tiny GPT-2-style and Llama-style decoders with a
contiguous and a paged cache.

- KV figures from first principles: layers, kv_heads, head_dim and element
  size read from the ONNX model's past_key_values inputs; bytes per token,
  bytes per sequence, blocks per sequence, block bytes, fragmentation (worst
  and mean) and the tokens a --kv-budget holds computed here.
- Activation figures from the IR the plan is read from (dumped with
  --mlir-print-ir-after=hasten-dealloc-after-last-use): every memref.alloc
  sized by evaluating its dynamic sizes at the entry's workload (a full
  prefill or verification, a decode at the last position), and each buffer live from its
  allocation to the memref.dealloc that frees it (or to the end). That is
  where the generated code really frees memory, while the compiler's plan
  works from the uses of the buffer and of its views: the two must agree on
  buffers, total and peak, and the arena must lie between peak and total.

usage: memory_report_vs_reference.py BUILD_BIN_DIR
"""
import json
import math
import os
import re
import subprocess
import sys
import tempfile

import onnx

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from e2e_common import Checks  # noqa: E402

ELEMENT_BYTES = {"f64": 8, "i64": 8, "f32": 4, "i32": 4, "bf16": 2, "f16": 2, "i16": 2,
                 "i8": 1, "i1": 1, "ui8": 1}


def balanced(text, start):
    """The end of the <...> group opening at text[start]."""
    depth = 0
    for i in range(start, len(text)):
        depth += {"<": 1, ">": -1}.get(text[i], 0)
        if depth == 0:
            return i + 1
    raise ValueError(text)


def parse_memref(text):
    """'memref<1x?x64xf32, strided<...>>' -> ([1, None, 64], 'f32')."""
    body = text[len("memref<"):-1].split(",")[0].strip()
    parts = body.split("x")
    dims = [None if p == "?" else int(p) for p in parts[:-1]]
    return dims, parts[-1]


def memref_types(line):
    out, i = [], 0
    while True:
        i = line.find("memref<", i)
        if i < 0:
            return out
        j = balanced(line, i + len("memref"))
        out.append(line[i:j])
        i = j


class Function:
    """One func.func of the dump: its argument names and types, its SSA
    definitions, and its ops in order with their top-level positions."""

    def __init__(self, header, lines):
        self.args = {}
        for m in re.finditer(r"(%arg\d+): ", header):
            rest = header[m.end():]
            if rest.startswith("memref<"):
                mtype = rest[:balanced(rest, len("memref"))]
            else:
                mtype = re.match(r"[^,) ]*", rest).group(0)
            attrs = re.match(r" \{[^}]*\}", rest[len(mtype):])
            role = re.search(r'hasten\.role = "([^"]*)"', attrs.group(0)) if attrs else None
            self.args[m.group(1)] = (mtype, role.group(1) if role else "")
        self.defs, self.types, self.ops = {}, {}, []
        position = -1
        for line in lines:
            indent = len(line) - len(line.lstrip(" "))
            stripped = line.strip()
            if not stripped or stripped.startswith(("}", "^", "//")):
                continue
            if indent == 4:
                position += 1
            self.ops.append((position, stripped))
            m = re.match(r"(%[\w.$-]+) = ([\w.]+)(.*)$", stripped)
            if m:
                self.defs[m.group(1)] = (m.group(2), m.group(3))
                types = memref_types(stripped)
                if types:
                    self.types[m.group(1)] = types[-1]
        self.end = position + 1


class Evaluator:
    def __init__(self, func, tokens, past):
        self.f, self.tokens, self.past = func, tokens, past

    def value(self, name):
        if name in self.f.args:
            raise ValueError(f"scalar argument {name}")
        op, rest = self.f.defs[name]
        operands = re.findall(r"%[\w.$-]+", rest.split(" : ")[0])
        if op == "arith.constant":
            return int(re.match(r"\s*(-?\d+)", rest).group(1))
        if op in ("arith.index_cast", "arith.index_castui"):
            return self.value(operands[0])
        binary = {"arith.addi": lambda a, b: a + b, "arith.subi": lambda a, b: a - b,
                  "arith.muli": lambda a, b: a * b, "arith.divui": lambda a, b: a // b,
                  "arith.divsi": lambda a, b: int(a / b), "arith.remui": lambda a, b: a % b,
                  "arith.ceildivui": lambda a, b: -(-a // b),
                  "arith.ceildivsi": lambda a, b: -(-a // b),
                  "arith.maxsi": max, "arith.minsi": min, "arith.maxui": max, "arith.minui": min}
        if op in binary:
            return binary[op](self.value(operands[0]), self.value(operands[1]))
        if op == "memref.dim":
            return self.dim(operands[0], self.value(operands[1]))
        if op == "affine.apply":
            m = re.match(r"\s*(#\w+)\(([^)]*)\)(?:\[([^\]]*)\])?", rest)
            dims = [self.value(x.strip()) for x in m.group(2).split(",") if x.strip()]
            syms = [self.value(x.strip()) for x in (m.group(3) or "").split(",") if x.strip()]
            return self.f.maps[m.group(1)](dims, syms)
        if op == "memref.load" and self.f.args.get(operands[0], ("", ""))[1] == "past_length":
            return self.past
        raise ValueError(f"cannot evaluate {name} = {op}{rest}")

    def dim(self, name, d):
        mtype = self.f.args[name][0] if name in self.f.args else self.f.types[name]
        dims, _ = parse_memref(mtype)
        if dims[d] is not None:
            return dims[d]
        if name in self.f.args:
            return self.tokens if self.f.args[name][1] == "token_ids" else 1
        op, rest = self.f.defs[name]
        operands = re.findall(r"%[\w.$-]+", rest.split(" : ")[0])
        if op == "memref.alloc":
            return self.value(operands[dims[:d].count(None)])
        if op == "memref.cast":
            return self.dim(operands[0], d)
        if op == "memref.expand_shape":
            shape = re.search(r"output_shape \[([^\]]*)\]", rest).group(1).split(",")
            return self.scalar(shape[d])
        if op == "memref.reinterpret_cast":
            sizes = re.search(r"sizes: \[([^\]]*)\]", rest).group(1).split(",")
            return self.scalar(sizes[d])
        if op == "memref.subview":
            groups = re.findall(r"\[([^\]]*)\]", rest.split(" : ")[0])
            return self.scalar(groups[1].split(",")[d])
        if op == "memref.collapse_shape":
            groups = re.search(r"\[(\[.*\])\]", rest).group(1)
            group = [int(x) for x in re.findall(r"\[([^\]]*)\]", groups)[d].split(",")]
            return math.prod(self.dim(operands[0], i) for i in group)
        raise ValueError(f"cannot size dim {d} of {name} = {op}")

    def scalar(self, text):
        text = text.strip()
        return int(text) if re.fullmatch(r"-?\d+", text) else self.value(text)


def plan(func, tokens, past):
    """buffers, total and peak bytes with liveness from the deallocs."""
    ev = Evaluator(func, tokens, past)
    allocs, freed = {}, {}
    view_source = {}
    for name, (op, rest) in func.defs.items():
        if op in ("memref.cast", "memref.subview", "memref.expand_shape",
                  "memref.collapse_shape", "memref.reinterpret_cast"):
            view_source[name] = re.findall(r"%[\w.$-]+", rest)[0]
    for position, text in func.ops:
        m = re.match(r"(%[\w.$-]+) = memref\.alloc\(", text)
        if m:
            dims, element = parse_memref(memref_types(text)[-1])
            sizes = [d if d is not None else ev.dim(m.group(1), i) for i, d in enumerate(dims)]
            allocs[m.group(1)] = (position, math.prod(sizes) * ELEMENT_BYTES[element])
        m = re.match(r"memref\.dealloc (%[\w.$-]+)", text)
        if m:
            base = m.group(1)
            while base in view_source:
                base = view_source[base]
            freed[base] = position
    delta = [0] * (func.end + 2)
    for name, (start, size) in allocs.items():
        delta[start] += size
        delta[freed.get(name, func.end + 1)] -= size
    live = peak = 0
    for d in delta:
        live += d
        peak = max(peak, live)
    return len(allocs), sum(s for _, s in allocs.values()), peak


def affine_maps(module_text):
    """'#map3 = affine_map<()[s0, s1] -> (s0 + s1)>' -> a function of the
    dims and symbols (one result; floordiv, ceildiv and mod as Python)."""
    maps = {}
    for m in re.finditer(r"^(#\w+) = affine_map<\(([^)]*)\)(?:\[([^\]]*)\])? -> \((.*)\)>$",
                         module_text, re.M):
        dims = [d.strip() for d in m.group(2).split(",") if d.strip()]
        syms = [x.strip() for x in (m.group(3) or "").split(",") if x.strip()]
        expr = m.group(4)
        if "," in expr:
            continue
        expr = re.sub(r"(\w+) ceildiv (\w+)", r"(-(-\1 // \2))", expr)
        expr = expr.replace("floordiv", "//").replace(" mod ", " % ")

        def apply(dv, sv, dims=dims, syms=syms, expr=expr):
            return eval(expr, {}, dict(zip(dims, dv)) | dict(zip(syms, sv)))
        maps[m.group(1)] = apply
    return maps


def last_dump(text):
    marker = "// -----// IR Dump After DeallocAfterLastUse"
    return text[text.rindex(marker):].split("\n", 1)[1]


def functions(module_text):
    lines = module_text.splitlines()
    maps = affine_maps(module_text)
    out, i = {}, 0
    while i < len(lines):
        m = re.match(r"  func\.func @(\w+)\(", lines[i])
        if m and "{" in lines[i].rstrip()[-1:]:
            j = i + 1
            while lines[j] != "  }":
                j += 1
            out[m.group(1)] = Function(lines[i], lines[i + 1:j])
            out[m.group(1)].maps = maps
            i = j
        i += 1
    return out


def kv_first_principles(onnx_path, capacity, block, budget):
    model = onnx.load(onnx_path, load_external_data=False)
    keys = [i for i in model.graph.input if re.fullmatch(r"past_key_values\.\d+\.key", i.name)]
    shape = keys[0].type.tensor_type.shape.dim
    element = onnx.mapping.TENSOR_TYPE_TO_NP_TYPE[keys[0].type.tensor_type.elem_type].itemsize
    layers, kv_heads, head_dim = len(keys), shape[1].dim_value, shape[3].dim_value
    per_token = 2 * layers * kv_heads * head_dim * element
    expected = {"layers": layers, "kv_heads": kv_heads, "head_dim": head_dim,
                "element_bytes": element, "bytes_per_token": per_token,
                "capacity_tokens": capacity, "bytes_per_sequence": capacity * per_token,
                "layout": "paged" if block else "contiguous"}
    # A table gathered at position_ids (GPT-2's learned positions) bounds
    # the capacity.
    tables = {t.name: t for t in model.graph.initializer}
    gathered = [tables[n.input[0]] for n in model.graph.node
                if n.op_type == "Gather" and n.input[1] == "position_ids" and n.input[0] in tables]
    if gathered:
        expected["position_table"] = {"name": gathered[0].name, "rows": gathered[0].dims[0]}
    if budget:
        unit = max(block, 1)
        expected["budget_bytes"] = budget
        expected["max_tokens_under_budget"] = budget // (per_token * unit) * unit
    if block:
        expected["block_size"] = block
        expected["blocks_per_sequence"] = -(-capacity // block)
        expected["block_bytes"] = block * per_token
    return expected


def main():
    bin_dir = sys.argv[1]
    c = Checks()
    with tempfile.TemporaryDirectory(prefix="hasten-memory-") as work:
        for preset in ("gpt2-tiny", "llama-tiny"):
            onnx_path = os.path.join(work, preset + ".onnx")
            subprocess.run([sys.executable, os.path.join(HERE, "..", "models", "make_decoder.py"),
                            "--preset", preset, "-o", onnx_path], check=True, capture_output=True)
            for layout, capacity, block, budget in (("contiguous", 96, 0, 0),
                                                    ("paged", 112, 16, 0),
                                                    ("paged, budget", None, 16, 200000)):
                tag = f"{preset} {layout}"
                flags = [f"--kv-block-size={block}"] if block else []
                flags += [f"--kv-capacity={capacity}"] if capacity else [f"--kv-budget={budget}"]
                proc = subprocess.run(
                    [os.path.join(bin_dir, "hasten-compile"), onnx_path, "-o",
                     os.path.join(work, "out.mlir"), "--emit=mlir", "--memory-report",
                     "--mlir-print-ir-after=hasten-dealloc-after-last-use",
                     "--mlir-print-ir-module-scope", "--mlir-disable-threading"] + flags,
                    capture_output=True, text=True)
                if proc.returncode:
                    c.check(False, f"{tag}: hasten-compile failed: {proc.stderr[-500:]}")
                    continue
                report = json.loads(proc.stdout)
                kv = report["kv_cache"]
                expected = kv_first_principles(onnx_path, capacity or kv["capacity_tokens"],
                                               block, budget)
                if not capacity:
                    expected["capacity_tokens"] = expected["max_tokens_under_budget"]
                    if "position_table" in expected:
                        rows = expected["position_table"]["rows"]
                        expected["capacity_tokens"] = min(expected["capacity_tokens"],
                                                          rows // block * block)
                    expected["bytes_per_sequence"] = (expected["capacity_tokens"]
                                                      * expected["bytes_per_token"])
                    expected["blocks_per_sequence"] = expected["capacity_tokens"] // block
                wrong = {k: (kv.get(k), v) for k, v in expected.items() if kv.get(k) != v}
                c.check(not wrong, f"{tag}: KV figures {sorted(expected)} match "
                                   f"(report, expected where they differ: {wrong})")
                if block:
                    per_token, cap = expected["bytes_per_token"], expected["capacity_tokens"]
                    # A sequence's last block is partly empty: 0 to block-1
                    # unused slots, (block-1)/2 on average.
                    frag = {"worst_bytes_per_sequence": (block - 1) * per_token,
                            "mean_bytes_per_sequence": (block - 1) * per_token // 2,
                            "worst_fraction_at_capacity": round((block - 1) / cap, 4)}
                    got = kv.get("fragmentation", {})
                    c.check(got == frag, f"{tag}: fragmentation {got} == {frag}")

                funcs = functions(last_dump(proc.stderr))
                cap = expected["capacity_tokens"]
                for entry in report["activations"]:
                    name = entry["entry"]
                    workload = {"prefill": (cap, 0), "verify": (cap, 0),
                                "decode": (1, cap - 1)}.get(name, (1, 0))
                    c.check((entry["tokens"], entry["past_length"]) == workload,
                            f"{tag}: {name} planned at tokens {entry['tokens']}, past "
                            f"{entry['past_length']} (expected {workload})")
                    try:
                        buffers, total, peak = plan(funcs[name], *workload)
                    except (KeyError, ValueError) as e:
                        c.check(False, f"{tag}: {name}: the reference cannot read the IR: {e}")
                        continue
                    got = (entry["buffers"], entry["total_bytes"], entry["peak_live_bytes"])
                    c.check(got == (buffers, total, peak) and entry["unknown_sizes"] == 0,
                            f"{tag}: {name}: buffers, total, peak {got} == reference "
                            f"{(buffers, total, peak)}")
                    arena = entry["planned_arena_bytes"]
                    c.check(peak <= arena <= total + 64 * buffers,
                            f"{tag}: {name}: arena {arena} lies between the peak {peak} and "
                            f"the total {total} (+64-byte alignment per buffer)")
    print(f"{c.passed} passed, {c.failed} failed")
    return 1 if c.failed else 0


if __name__ == "__main__":
    sys.exit(main())
