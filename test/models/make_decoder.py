#!/usr/bin/env python3
"""Builds GPT-2-style and Llama-style decoder ONNX models, and computes their
logits with numpy.

The exports follow Hugging Face Optimum's decoder-with-past conventions:
inputs `input_ids` [batch, sequence_length], `attention_mask`
[batch, past_sequence_length + sequence_length], `position_ids`
[batch, sequence_length] and `past_key_values.N.key` / `.value`
[batch, num_kv_heads, past_sequence_length, head_dim]; outputs `logits`
[batch, sequence_length, vocab] and `present.N.key` / `.value`
[batch, num_kv_heads, past_sequence_length + sequence_length, head_dim].
Weights are deterministic for a given seed.

  make_decoder.py --arch gpt2 --layers 2 --hidden 64 --heads 4 -o tiny.onnx
  make_decoder.py --preset gpt2-124m --external-data -o gpt2.onnx

Use /usr/bin/python3 (it has onnx and numpy).
"""

import argparse
import math
import os
import sys
from dataclasses import dataclass

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17


@dataclass
class Config:
    arch: str = "gpt2"          # "gpt2" or "llama"
    layers: int = 2
    hidden: int = 64
    heads: int = 4
    kv_heads: int = 0           # 0: same as heads
    intermediate: int = 0       # 0: 4 * hidden (gpt2) or 8/3 * hidden (llama)
    vocab: int = 256
    max_positions: int = 128    # gpt2 learned positions
    # > 0: also add the row clip(last position - position, 0, N - 1) of an
    # N-row table to each token's embedding, as relative-position biases
    # index tables by differences of positions (which bound no context).
    relative_rows: int = 0
    rope_theta: float = 10000.0
    eps: float = 1e-5
    seed: int = 0

    def __post_init__(self):
        if self.kv_heads == 0:
            self.kv_heads = self.heads
        if self.intermediate == 0:
            self.intermediate = 4 * self.hidden if self.arch == "gpt2" \
                else int(8 * self.hidden / 3 + 63) // 64 * 64
        assert self.hidden % self.heads == 0
        assert self.heads % self.kv_heads == 0

    @property
    def head_dim(self):
        return self.hidden // self.heads


PRESETS = {
    "gpt2-124m": dict(arch="gpt2", layers=12, hidden=768, heads=12, vocab=50257,
                      max_positions=1024),
    "gpt2-tiny": dict(arch="gpt2", layers=2, hidden=64, heads=4, vocab=256,
                      max_positions=128),
    "llama-tiny": dict(arch="llama", layers=2, hidden=64, heads=4, kv_heads=2,
                       vocab=256),
}


def make_weights(cfg):
    """Deterministic weights, scaled so that activations stay O(1)."""
    rng = np.random.default_rng(cfg.seed)

    def normal(*shape, scale=0.02):
        return (rng.standard_normal(shape, dtype=np.float32) * scale).astype(np.float32)

    h, kvd, inter = cfg.hidden, cfg.kv_heads * cfg.head_dim, cfg.intermediate
    w = {"embed": normal(cfg.vocab, h)}
    if cfg.arch == "gpt2":
        w["pos_embed"] = normal(cfg.max_positions, h, scale=0.01)
    if cfg.relative_rows:
        w["relative_embed"] = normal(cfg.relative_rows, h, scale=0.01)
    for i in range(cfg.layers):
        p = f"layers.{i}."
        w[p + "norm1.weight"] = (1.0 + normal(h, scale=0.1)).astype(np.float32)
        w[p + "norm2.weight"] = (1.0 + normal(h, scale=0.1)).astype(np.float32)
        if cfg.arch == "gpt2":
            w[p + "norm1.bias"] = normal(h)
            w[p + "norm2.bias"] = normal(h)
            w[p + "attn.qkv.weight"] = normal(h, 3 * h)
            w[p + "attn.qkv.bias"] = normal(3 * h)
            w[p + "attn.out.weight"] = normal(h, h)
            w[p + "attn.out.bias"] = normal(h)
            w[p + "mlp.fc.weight"] = normal(h, inter)
            w[p + "mlp.fc.bias"] = normal(inter)
            w[p + "mlp.proj.weight"] = normal(inter, h)
            w[p + "mlp.proj.bias"] = normal(h)
        else:
            w[p + "attn.q.weight"] = normal(h, h)
            w[p + "attn.k.weight"] = normal(h, kvd)
            w[p + "attn.v.weight"] = normal(h, kvd)
            w[p + "attn.o.weight"] = normal(h, h)
            w[p + "mlp.gate.weight"] = normal(h, inter)
            w[p + "mlp.up.weight"] = normal(h, inter)
            w[p + "mlp.down.weight"] = normal(inter, h)
    w["final_norm.weight"] = (1.0 + normal(h, scale=0.1)).astype(np.float32)
    if cfg.arch == "gpt2":
        w["final_norm.bias"] = normal(h)
    return w


class GraphBuilder:
    """A small helper that names nodes and values like an exporter does."""

    def __init__(self):
        self.nodes, self.initializers, self.count = [], [], 0

    def op(self, op_type, inputs, outputs=1, name=None, **attrs):
        self.count += 1
        base = name or f"/{op_type}_{self.count}"
        outs = [f"{base}_output_{i}" for i in range(outputs)]
        self.nodes.append(helper.make_node(op_type, inputs, outs, name=base, **attrs))
        return outs[0] if outputs == 1 else outs

    def const(self, value, name=None, dtype=np.int64):
        self.count += 1
        array = np.asarray(value, dtype=dtype)
        cname = name or f"const_{self.count}"
        self.initializers.append(numpy_helper.from_array(array, cname))
        return cname

    def weight(self, name, array):
        self.initializers.append(numpy_helper.from_array(array, name))
        return name


def build_model(cfg, weights):
    g = GraphBuilder()
    H, KVH, D, hidden = cfg.heads, cfg.kv_heads, cfg.head_dim, cfg.hidden
    for name, array in weights.items():
        g.weight(name, array)

    # Dynamic sizes: batch, sequence length, past length.
    ids_shape = g.op("Shape", ["input_ids"])
    batch = g.op("Gather", [ids_shape, g.const(0)], axis=0)
    seq = g.op("Gather", [ids_shape, g.const(1)], axis=0)
    past_shape = g.op("Shape", ["past_key_values.0.key"])
    past = g.op("Gather", [past_shape, g.const(2)], axis=0)
    total = g.op("Add", [past, seq])

    def unsq(x):
        return g.op("Unsqueeze", [x, g.const([0])])

    def to_heads(x, heads):
        # [B, S, heads*D] -> [B, heads, S, D]
        shape = g.op("Concat", [unsq(batch), unsq(seq), g.const([heads]), g.const([D])], axis=0)
        return g.op("Transpose", [g.op("Reshape", [x, shape])], perm=[0, 2, 1, 3])

    x = g.op("Gather", ["embed", "input_ids"], axis=0)
    if cfg.arch == "gpt2":
        x = g.op("Add", [x, g.op("Gather", ["pos_embed", "position_ids"], axis=0)])
    if cfg.relative_rows:
        last = g.op("Slice", ["position_ids", g.const([-1]), g.const([2**62]), g.const([1])])
        distance = g.op("Clip", [g.op("Sub", [last, "position_ids"]),
                                 g.const(0, dtype=np.int64), g.const(cfg.relative_rows - 1)])
        x = g.op("Add", [x, g.op("Gather", ["relative_embed", distance], axis=0)])
    if cfg.arch != "gpt2":
        # RoPE tables from position_ids: [B, 1, S, D].
        inv_freq = 1.0 / (cfg.rope_theta ** (np.arange(0, D, 2, dtype=np.float32) / D))
        pos = g.op("Cast", [g.op("Unsqueeze", ["position_ids", g.const([2])])], to=TensorProto.FLOAT)
        freqs = g.op("Mul", [pos, g.const(inv_freq, dtype=np.float32)])
        emb = g.op("Concat", [freqs, freqs], axis=-1)
        cos = g.op("Unsqueeze", [g.op("Cos", [emb]), g.const([1])])
        sin = g.op("Unsqueeze", [g.op("Sin", [emb]), g.const([1])])

        def rope(t):
            half = D // 2
            x1 = g.op("Slice", [t, g.const([0]), g.const([half]), g.const([3])])
            x2 = g.op("Slice", [t, g.const([half]), g.const([D]), g.const([3])])
            rotated = g.op("Concat", [g.op("Neg", [x2]), x1], axis=-1)
            return g.op("Add", [g.op("Mul", [t, cos]), g.op("Mul", [rotated, sin])])

    # Additive mask [B, 1, S, T]: causal (query i sees keys <= past + i) and
    # the attention mask.
    q_pos = g.op("Range", [past, total, g.const(1)])
    k_pos = g.op("Range", [g.const(0), total, g.const(1)])
    causal = g.op("LessOrEqual", [g.op("Unsqueeze", [k_pos, g.const([0])]),
                                  g.op("Unsqueeze", [q_pos, g.const([1])])])
    mask_bool = g.op("Cast", [g.op("Unsqueeze", ["attention_mask", g.const([1, 2])])],
                     to=TensorProto.BOOL)
    allowed = g.op("And", [causal, mask_bool])
    neg = g.const(np.float32(-1e9), dtype=np.float32)
    zero = g.const(np.float32(0), dtype=np.float32)
    additive_mask = g.op("Where", [allowed, zero, neg])
    scale = g.const(np.float32(1.0 / math.sqrt(D)), dtype=np.float32)

    def norm(t, prefix):
        if cfg.arch == "gpt2":
            return g.op("LayerNormalization", [t, prefix + ".weight", prefix + ".bias"],
                        axis=-1, epsilon=cfg.eps)
        # RMSNorm: t / sqrt(mean(t^2) + eps) * w
        ms = g.op("ReduceMean", [g.op("Pow", [t, g.const(np.float32(2), dtype=np.float32)])],
                  axes=[-1], keepdims=1)
        denom = g.op("Sqrt", [g.op("Add", [ms, g.const(np.float32(cfg.eps), dtype=np.float32)])])
        return g.op("Mul", [g.op("Div", [t, denom]), prefix + ".weight"])

    outputs = []
    for i in range(cfg.layers):
        p = f"layers.{i}."
        hx = norm(x, p + "norm1")
        if cfg.arch == "gpt2":
            qkv = g.op("Add", [g.op("MatMul", [hx, p + "attn.qkv.weight"]), p + "attn.qkv.bias"])
            q, k, v = g.op("Split", [qkv, g.const([hidden] * 3)], outputs=3, axis=2)
            q, k, v = to_heads(q, H), to_heads(k, KVH), to_heads(v, KVH)
        else:
            q = to_heads(g.op("MatMul", [hx, p + "attn.q.weight"]), H)
            k = to_heads(g.op("MatMul", [hx, p + "attn.k.weight"]), KVH)
            v = to_heads(g.op("MatMul", [hx, p + "attn.v.weight"]), KVH)
            q, k = rope(q), rope(k)
        present_k = f"present.{i}.key"
        present_v = f"present.{i}.value"
        g.nodes.append(helper.make_node("Concat", [f"past_key_values.{i}.key", k],
                                        [present_k], name=f"/layers.{i}/concat_k", axis=2))
        g.nodes.append(helper.make_node("Concat", [f"past_key_values.{i}.value", v],
                                        [present_v], name=f"/layers.{i}/concat_v", axis=2))
        keys, values = present_k, present_v
        if KVH != H:
            # Repeat each kv head for its group of query heads.
            def repeat(t):
                t5 = g.op("Unsqueeze", [t, g.const([2])])
                shape = g.op("Concat", [unsq(batch), g.const([KVH, H // KVH]), unsq(total),
                                        g.const([D])], axis=0)
                expanded = g.op("Expand", [t5, shape])
                shape4 = g.op("Concat", [unsq(batch), g.const([H]), unsq(total), g.const([D])],
                              axis=0)
                return g.op("Reshape", [expanded, shape4])
            keys, values = repeat(keys), repeat(values)
        scores = g.op("Mul", [g.op("MatMul", [q, g.op("Transpose", [keys], perm=[0, 1, 3, 2])]),
                              scale])
        probs = g.op("Softmax", [g.op("Add", [scores, additive_mask])], axis=-1)
        ctx = g.op("Transpose", [g.op("MatMul", [probs, values])], perm=[0, 2, 1, 3])
        merged = g.op("Reshape", [ctx, g.op("Concat", [unsq(batch), unsq(seq), g.const([hidden])],
                                             axis=0)])
        if cfg.arch == "gpt2":
            attn = g.op("Add", [g.op("MatMul", [merged, p + "attn.out.weight"]), p + "attn.out.bias"])
        else:
            attn = g.op("MatMul", [merged, p + "attn.o.weight"])
        x = g.op("Add", [x, attn])
        hx = norm(x, p + "norm2")
        if cfg.arch == "gpt2":
            up = g.op("Add", [g.op("MatMul", [hx, p + "mlp.fc.weight"]), p + "mlp.fc.bias"])
            # GELU, tanh approximation, as GPT-2 exports spell it.
            cube = g.op("Pow", [up, g.const(np.float32(3), dtype=np.float32)])
            inner = g.op("Mul", [g.op("Add", [up, g.op("Mul", [cube, g.const(np.float32(0.044715), dtype=np.float32)])]),
                                 g.const(np.float32(math.sqrt(2 / math.pi)), dtype=np.float32)])
            act = g.op("Mul", [g.op("Mul", [up, g.const(np.float32(0.5), dtype=np.float32)]),
                               g.op("Add", [g.op("Tanh", [inner]), g.const(np.float32(1), dtype=np.float32)])])
            mlp = g.op("Add", [g.op("MatMul", [act, p + "mlp.proj.weight"]), p + "mlp.proj.bias"])
        else:
            gate = g.op("MatMul", [hx, p + "mlp.gate.weight"])
            up = g.op("MatMul", [hx, p + "mlp.up.weight"])
            act = g.op("Mul", [g.op("Mul", [gate, g.op("Sigmoid", [gate])]), up])
            mlp = g.op("MatMul", [act, p + "mlp.down.weight"])
        x = g.op("Add", [x, mlp])
        outputs += [present_k, present_v]
    x = norm(x, "final_norm")
    # The LM head shares the embedding matrix (tied weights).
    g.nodes.append(helper.make_node("MatMul", [x, g.op("Transpose", ["embed"], perm=[1, 0])],
                                    ["logits"], name="/lm_head/MatMul"))

    inputs = [
        helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch_size", "sequence_length"]),
        helper.make_tensor_value_info("attention_mask", TensorProto.INT64,
                                      ["batch_size", "past_sequence_length + sequence_length"]),
        helper.make_tensor_value_info("position_ids", TensorProto.INT64, ["batch_size", "sequence_length"]),
    ]
    outs = [helper.make_tensor_value_info("logits", TensorProto.FLOAT,
                                          ["batch_size", "sequence_length", cfg.vocab])]
    for i in range(cfg.layers):
        for kind in ("key", "value"):
            inputs.append(helper.make_tensor_value_info(
                f"past_key_values.{i}.{kind}", TensorProto.FLOAT,
                ["batch_size", KVH, "past_sequence_length", D]))
            outs.append(helper.make_tensor_value_info(
                f"present.{i}.{kind}", TensorProto.FLOAT,
                ["batch_size", KVH, "past_sequence_length + sequence_length", D]))
    graph = helper.make_graph(g.nodes, f"{cfg.arch}_decoder", inputs, outs, g.initializers)
    model = helper.make_model(graph, producer_name="hasten-make-decoder",
                              opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 8
    model.metadata_props.append(onnx.StringStringEntryProto(key="hasten.config", value=repr(cfg)))
    return model


# ----------------------------------------------------------------------------
# numpy reference
# ----------------------------------------------------------------------------

def reference(cfg, w, input_ids, past=None, attention_mask=None, position_ids=None):
    """Logits and presents for `input_ids` [B, S] after `past` (a list of
    (key, value) per layer, [B, KVH, P, D]), computed with numpy in float64."""
    B, S = input_ids.shape
    H, KVH, D = cfg.heads, cfg.kv_heads, cfg.head_dim
    P = 0 if past is None else past[0][0].shape[2]
    if past is None:
        past = [(np.zeros((B, KVH, 0, D)), np.zeros((B, KVH, 0, D)))] * cfg.layers
    if attention_mask is None:
        attention_mask = np.ones((B, P + S), dtype=np.int64)
    if position_ids is None:
        position_ids = np.broadcast_to(np.arange(P, P + S), (B, S))
    f = lambda name: w[name].astype(np.float64)
    x = f("embed")[input_ids]
    if cfg.arch == "gpt2":
        x = x + f("pos_embed")[position_ids]
    if cfg.relative_rows:
        distance = np.clip(position_ids[:, -1:] - position_ids, 0, cfg.relative_rows - 1)
        x = x + f("relative_embed")[distance]
    if cfg.arch != "gpt2":
        inv_freq = 1.0 / (cfg.rope_theta ** (np.arange(0, D, 2, dtype=np.float32) / D))
        freqs = position_ids[..., None].astype(np.float64) * inv_freq.astype(np.float64)
        emb = np.concatenate([freqs, freqs], axis=-1)
        cos, sin = np.cos(emb)[:, None], np.sin(emb)[:, None]

        def rope(t):
            rotated = np.concatenate([-t[..., D // 2:], t[..., :D // 2]], axis=-1)
            return t * cos + rotated * sin

    def norm(t, prefix):
        if cfg.arch == "gpt2":
            mean = t.mean(-1, keepdims=True)
            var = ((t - mean) ** 2).mean(-1, keepdims=True)
            return (t - mean) / np.sqrt(var + cfg.eps) * f(prefix + ".weight") + f(prefix + ".bias")
        return t / np.sqrt((t ** 2).mean(-1, keepdims=True) + cfg.eps) * f(prefix + ".weight")

    heads = lambda t, n: t.reshape(B, S, n, D).transpose(0, 2, 1, 3)
    q_pos = np.arange(P, P + S)[:, None]
    k_pos = np.arange(P + S)[None, :]
    allowed = (k_pos <= q_pos)[None, None] & (attention_mask[:, None, None, :] != 0)
    presents = []
    for i in range(cfg.layers):
        p = f"layers.{i}."
        hx = norm(x, p + "norm1")
        if cfg.arch == "gpt2":
            qkv = hx @ f(p + "attn.qkv.weight") + f(p + "attn.qkv.bias")
            q, k, v = np.split(qkv, 3, axis=-1)
            q, k, v = heads(q, H), heads(k, KVH), heads(v, KVH)
        else:
            q = rope(heads(hx @ f(p + "attn.q.weight"), H))
            k = rope(heads(hx @ f(p + "attn.k.weight"), KVH))
            v = heads(hx @ f(p + "attn.v.weight"), KVH)
        keys = np.concatenate([past[i][0], k], axis=2)
        values = np.concatenate([past[i][1], v], axis=2)
        presents.append((keys, values))
        rk = np.repeat(keys, H // KVH, axis=1)
        rv = np.repeat(values, H // KVH, axis=1)
        scores = q @ rk.transpose(0, 1, 3, 2) / math.sqrt(D)
        scores = np.where(allowed, scores, scores - 1e9)
        scores = scores - scores.max(-1, keepdims=True)
        probs = np.exp(scores)
        probs /= probs.sum(-1, keepdims=True)
        merged = (probs @ rv).transpose(0, 2, 1, 3).reshape(B, S, cfg.hidden)
        if cfg.arch == "gpt2":
            x = x + merged @ f(p + "attn.out.weight") + f(p + "attn.out.bias")
            up = norm(x, p + "norm2") @ f(p + "mlp.fc.weight") + f(p + "mlp.fc.bias")
            act = 0.5 * up * (1 + np.tanh(math.sqrt(2 / math.pi) * (up + 0.044715 * up ** 3)))
            x = x + act @ f(p + "mlp.proj.weight") + f(p + "mlp.proj.bias")
        else:
            x = x + merged @ f(p + "attn.o.weight")
            hx = norm(x, p + "norm2")
            gate, up = hx @ f(p + "mlp.gate.weight"), hx @ f(p + "mlp.up.weight")
            x = x + (gate / (1 + np.exp(-gate)) * up) @ f(p + "mlp.down.weight")
    logits = norm(x, "final_norm") @ f("embed").T
    return logits, presents


def config_from_args(args):
    fields = dict(PRESETS[args.preset]) if args.preset else {}
    for key in ("arch", "layers", "hidden", "heads", "kv_heads", "intermediate", "vocab",
                "max_positions", "relative_rows", "seed"):
        value = getattr(args, key)
        if value is not None:
            fields[key] = value
    return Config(**fields)


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", choices=sorted(PRESETS))
    parser.add_argument("--arch", choices=["gpt2", "llama"])
    for key in ("layers", "hidden", "heads", "kv_heads", "intermediate", "vocab",
                "max_positions", "relative_rows", "seed"):
        parser.add_argument("--" + key.replace("_", "-"), dest=key, type=int)
    parser.add_argument("--external-data", action="store_true",
                        help="store weights in <output>.data next to the model")
    parser.add_argument("-o", "--output", required=True)
    args = parser.parse_args()
    cfg = config_from_args(args)
    weights = make_weights(cfg)
    model = build_model(cfg, weights)
    onnx.checker.check_model(model)
    if args.external_data:
        location = os.path.basename(args.output) + ".data"
        onnx.save_model(model, args.output, save_as_external_data=True,
                        all_tensors_to_one_file=True, location=location,
                        size_threshold=1024)
    else:
        onnx.save(model, args.output)
    params = sum(a.size for a in weights.values())
    print(f"wrote {args.output}: {cfg.arch}, {cfg.layers} layers, hidden {cfg.hidden}, "
          f"{cfg.heads} heads ({cfg.kv_heads} kv), vocab {cfg.vocab}, {params / 1e6:.1f}M parameters")


if __name__ == "__main__":
    sys.exit(main())
