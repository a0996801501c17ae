//===- HastenOps.td - hasten dialect operations --------------*- tablegen -*-===//

#ifndef HASTEN_OPS_TD
#define HASTEN_OPS_TD

include "Hasten/HastenTypes.td"
include "Hasten/HastenAttrs.td"
include "mlir/Interfaces/InferTypeOpInterface.td"
include "mlir/Interfaces/SideEffectInterfaces.td"
include "mlir/IR/SymbolInterfaces.td"
include "mlir/Dialect/GPU/IR/GPUBase.td"

class Hasten_Op<string mnemonic, list<Trait> traits = []>
    : Op<Hasten_Dialect, mnemonic, traits>;

// Cache ops read and write through a handle, so their memory effects are
// declared on the handle operand: that keeps appends ordered before the views
// that follow them.

def Hasten_AttentionOp : Hasten_Op<"attention", [
    Pure, InferTypeOpAdaptor]> {
  let summary = "Scaled dot-product attention with MHA, GQA and MQA head sharing";
  let description = [{
    Computes `softmax(scale * Q K^T + mask) V` per head, where

    - `query` is `[batch, num_heads, q_len, head_dim]`,
    - `key` is `[batch, num_kv_heads, kv_len, head_dim]`,
    - `value` is `[batch, num_kv_heads, kv_len, v_head_dim]`,
    - the result is `[batch, num_heads, q_len, v_head_dim]`.

    Query head `h` reads key/value head `h / (num_heads / num_kv_heads)`:
    equal counts are multi-head attention, `num_kv_heads = 1` is multi-query
    attention, anything between is grouped-query attention.

    `mask` is optional and broadcasts (numpy-style, aligned to the right) to
    `[batch, num_heads, q_len, kv_len]`. An `i1` mask keeps the positions that
    are true; a floating-point mask is added to the scores. `causal` masks
    key position `j` for query position `i` when `j > i + kv_len - q_len`,
    which is the usual rule when the queries are the last `q_len` tokens.
    Without `scale` the scale is `1/sqrt(head_dim)`. A query row that sees no
    key (every score masked to -inf, a fully padded row) gives zeros, not the
    0/0 of a literal softmax; torch.onnx's `Where(IsNaN(p), 0, p)` after the
    softmax says the same.

    The op carries no memory layout: tiling passes decide how it is computed
    and never need to materialize the `q_len x kv_len` score matrix. The
    optional `tiling` (`#hasten.attention_tiling`) records that decision:
    `--hasten-plan-attention` writes it for a target, a compiler engineer may
    change it, and `--hasten-tile-attention` follows it.

    ```mlir
    %o = hasten.attention %q, %k, %v heads(32, 8) causal
        : tensor<1x32x?x128xf16>, tensor<1x8x?x128xf16>, tensor<1x8x?x128xf16>
        -> tensor<1x32x?x128xf16>
    ```
  }];
  let arguments = (ins
    4DTensorOf<[AnyFloat]>:$query,
    4DTensorOf<[AnyFloat]>:$key,
    4DTensorOf<[AnyFloat]>:$value,
    Optional<RankedTensorOf<[AnyFloat, I1]>>:$mask,
    I64Attr:$num_heads,
    I64Attr:$num_kv_heads,
    UnitAttr:$causal,
    OptionalAttr<F32Attr>:$scale,
    OptionalAttr<Hasten_AttentionTilingAttr>:$tiling
  );
  let results = (outs 4DTensorOf<[AnyFloat]>:$result);
  let assemblyFormat = [{
    $query `,` $key `,` $value (`mask` `(` $mask^ `:` type($mask) `)`)?
    `heads` `(` $num_heads `,` $num_kv_heads `)` (`causal` $causal^)?
    (`scale` `(` $scale^ `)`)? (`tiling` `(` $tiling^ `)`)? attr-dict
    `:` type($query) `,` type($key) `,` type($value) `->` type($result)
  }];
  let hasVerifier = 1;
  // Folds tensor.cast operands that lose static shape information.
  let hasCanonicalizer = 1;
  let extraClassDeclaration = [{
    /// The scale applied to Q K^T: the attribute if present, otherwise
    /// 1/sqrt(head_dim) when head_dim is static, otherwise std::nullopt.
    std::optional<double> getEffectiveScale();
  }];
}

def Hasten_KVCacheAppendOp : Hasten_Op<"kv_cache.append"> {
  let summary = "Write new keys and values into a KV cache layer in place";
  let description = [{
    Stores `key` and `value`, each `[1, kv_heads, tokens, head_dim]`, at token
    positions `[position, position + tokens)` of layer `layer`. The cache is
    updated in place; nothing is copied. Writing past `capacity` is an error:
    the verifier rejects it when the position and token count are constants,
    and the runtime reports it otherwise.

    ```mlir
    hasten.kv_cache.append %k, %v into %cache[layer 3] at %pos
        : tensor<1x4x1x64xf32>, tensor<1x4x1x64xf32>
        into !hasten.kv_cache<layers = 12, kv_heads = 4, head_dim = 64, capacity = 1024, f32>
    ```
  }];
  let arguments = (ins
    4DTensorOf<[AnyFloat]>:$key,
    4DTensorOf<[AnyFloat]>:$value,
    Arg<Hasten_KVCacheType, "the KV cache handle", [MemRead, MemWrite]>:$cache,
    I64Attr:$layer,
    Index:$position
  );
  let assemblyFormat = [{
    $key `,` $value `into` $cache `[` `layer` $layer `]` `at` $position attr-dict
    `:` type($key) `,` type($value) `into` qualified(type($cache))
  }];
  let hasVerifier = 1;
}

def Hasten_KVCacheViewOp : Hasten_Op<"kv_cache.view", [
    InferTypeOpAdaptor]> {
  let summary = "Read the first tokens of a KV cache layer as tensors";
  let description = [{
    Returns the keys and values of layer `layer` at token positions
    `[0, length)`, each as `[1, kv_heads, length, head_dim]`. This is a view
    of the cache in the sense of data flow: lowering reads the cache in place
    rather than copying it out.

    ```mlir
    %k, %v = hasten.kv_cache.view %cache[layer 3] length %len
        : !hasten.kv_cache<layers = 12, kv_heads = 4, head_dim = 64, capacity = 1024, f32>
    ```
  }];
  let arguments = (ins
    Arg<Hasten_KVCacheType, "the KV cache handle", [MemRead]>:$cache,
    I64Attr:$layer,
    Index:$length
  );
  let results = (outs
    4DTensorOf<[AnyFloat]>:$keys,
    4DTensorOf<[AnyFloat]>:$values
  );
  let assemblyFormat = [{
    $cache `[` `layer` $layer `]` `length` $length attr-dict `:` qualified(type($cache))
  }];
  let hasVerifier = 1;
}

def Hasten_PagedKVReadOp : Hasten_Op<"paged_kv.read"> {
  let summary = "One layer's keys or values of a paged KV cache, through its block table";
  let description = [{
    The keys (`part` 0) or values (`part` 1) of layer `layer` at token
    positions `[0, length)` of a paged cache, as `[1, kv_heads, length,
    head_dim]`: position `p` is slot `p % block_size` of pool block
    `table[p / block_size]`. `pool` is the cache's block pool, `[blocks,
    layers, 2, kv_heads, block_size, head_dim]`, and `table` the sequence's
    block table.

    `--hasten-lower-kv-cache{keep-paged-reads=true}` leaves a paged view as
    these, so that a consumer able to read through the table does so in
    place (the GPU decode attention kernel: `--hasten-gpu-attention`);
    whatever no consumer took is expanded into a gather of the blocks.

    ```mlir
    %k = hasten.paged_kv.read %pool[layer 1, part 0] table %table length %len
        : memref<64x2x2x4x16x32xf32>, memref<64xi32> -> tensor<1x4x?x32xf32>
    ```
  }];
  let arguments = (ins
    Arg<MemRefRankOf<[AnyFloat], [6]>, "the block pool", [MemRead]>:$pool,
    Arg<MemRefRankOf<[I32], [1]>, "the block table", [MemRead]>:$table,
    Index:$length,
    I64Attr:$layer,
    I64Attr:$part
  );
  let results = (outs 4DTensorOf<[AnyFloat]>:$result);
  let assemblyFormat = [{
    $pool `[` `layer` $layer `,` `part` $part `]` `table` $table `length` $length attr-dict
    `:` type($pool) `,` type($table) `->` type($result)
  }];
  let hasVerifier = 1;
}

def Hasten_DecodeStepOp : Hasten_Op<"decode_step", [
    DeclareOpInterfaceMethods<SymbolUserOpInterface>]> {
  let summary = "Run a decoder entry on tokens after a KV cache's past, appending them";
  let description = [{
    Calls the decoder entry `callee` (a `prefill`, `decode` or `verify`
    entry after `--hasten-plan-kv-cache`, taking token ids, one
    `!hasten.kv_cache` and its `past_length`) on `tokens`, which it appends
    to `cache` at `past_length`, and returns the entry's logits. This is how
    one entry runs another model's step, as the speculative `spec_step`
    runs draft decode steps and the target's verification; the cache is
    written in place, so a rejected token is undone by a shorter length, not
    a copy.

    The tokens and logits may be more static than the callee's types (a
    `verify` entry takes `tensor<1x?xi64>`); the shapes must be compatible.
    `--hasten-lower-kv-cache` turns the op into a `func.call`.

    ```mlir
    %logits = hasten.decode_step @draft_decode(%token) cache(%draft_cache) past(%draft_past)
        : tensor<1x1xi64>, !hasten.kv_cache<layers = 2, kv_heads = 4, head_dim = 64, capacity = 1024, f32>,
          tensor<i64> -> tensor<1x1x256xf32>
    ```
  }];
  let arguments = (ins
    FlatSymbolRefAttr:$callee,
    2DTensorOf<[I64]>:$tokens,
    Arg<Hasten_KVCacheType, "the KV cache the tokens are appended to", [MemRead, MemWrite]>:$cache,
    0DTensorOf<[I64]>:$past_length
  );
  let results = (outs 3DTensorOf<[AnyFloat]>:$logits);
  let assemblyFormat = [{
    $callee `(` $tokens `)` `cache` `(` $cache `)` `past` `(` $past_length `)` attr-dict
    `:` type($tokens) `,` qualified(type($cache)) `,` type($past_length) `->` type($logits)
  }];
}

def Hasten_SamplerLoopOp : Hasten_Op<"sampler_loop", [
    AttrSizedOperandSegments, DeclareOpInterfaceMethods<SymbolUserOpInterface>]> {
  let summary = "A few-step diffusion or flow sampler around a denoiser function";
  let description = [{
    Runs the sampler `rule` for `timesteps.size()` steps, each calling the
    denoiser function `denoiser` on the current sample, the step's
    timestep and the conditioning, and returns the final sample.
    `--hasten-fuse-sampler-steps` unrolls it into calls of one fused step
    function.

    - `sample` is the initial noise; `sample_index` and `time_index` are
      the denoiser's sample and time arguments. The time argument is filled
      with the step's entry of `timesteps`, in its own element type (an
      integer timestep or a float time), for the whole batch.
    - `conditioning` are the denoiser's other arguments, in its order.
    - `rule` and `prediction`: `euler-flow` (`velocity`:
      x += (t[i+1] - t[i]) v, `schedule` holding the times t and the end
      time); `ddim` and `consistency` (`eps`, `v` or `sample`; `schedule`
      holding the cumulative alpha of each timestep and, last, the one the
      sampler ends at, 1 for a clean sample). DDIM steps deterministically;
      a consistency step takes the boundary-conditioned clean estimate
      (c_skip x + c_out x0, LCM's, sigma_data 0.5, timestep scaling 10) and
      re-noises it with the step's slice of `renoise` ([steps - 1, sample]),
      as multi-step consistency sampling does.
    - `cfg`: `none`; `full` (the denoiser runs on the batch of the
      conditional and the `negative` conditioning at once, twice the
      sample's batch, and the prediction is u + cfg_scale (c - u));
      `rcfg-self` and `rcfg-onetime` (StreamDiffusion's residual CFG for
      `eps` prediction: a virtual residual noise stands for u, starting
      from the initial noise, or from one negative pass at the first step,
      and following (x[i+1] - sqrt(alpha[i+1]) x0[i]) / sqrt(1 - alpha[i+1])).

    ```mlir
    %x = hasten.sampler_loop @main(%noise) cond(%context : tensor<1x4x16xf32>) {
        rule = "ddim", prediction = "eps", timesteps = array<f64: 999, 499>,
        schedule = array<f64: 0.0047, 0.2763, 1.0>, sample_index = 0, time_index = 1}
        : tensor<1x4x8x8xf32> -> tensor<1x4x8x8xf32>
    ```
  }];
  let arguments = (ins
    FlatSymbolRefAttr:$denoiser,
    AnyStaticShapeTensor:$sample,
    Variadic<AnyStaticShapeTensor>:$conditioning,
    Variadic<AnyStaticShapeTensor>:$negative,
    Optional<AnyStaticShapeTensor>:$renoise,
    StrAttr:$rule,
    StrAttr:$prediction,
    DenseF64ArrayAttr:$timesteps,
    DenseF64ArrayAttr:$schedule,
    I64Attr:$sample_index,
    I64Attr:$time_index,
    DefaultValuedStrAttr<StrAttr, "none">:$cfg,
    DefaultValuedAttr<F64Attr, "1.0">:$cfg_scale
  );
  let results = (outs AnyStaticShapeTensor:$result);
  let assemblyFormat = [{
    $denoiser `(` $sample `)`
    (`cond` `(` $conditioning^ `:` type($conditioning) `)`)?
    (`negative` `(` $negative^ `:` type($negative) `)`)?
    (`renoise` `(` $renoise^ `:` type($renoise) `)`)?
    attr-dict `:` type($sample) `->` type($result)
  }];
  let hasVerifier = 1;
}

def Hasten_SamplerStreamOp : Hasten_Op<"sampler_stream", [
    AttrSizedOperandSegments, DeclareOpInterfaceMethods<SymbolUserOpInterface>]> {
  let summary = "One tick of a stream-batched sampler: N frames at N different steps";
  let description = [{
    StreamDiffusion's stream batch: the frames of a stream are in flight at
    once, each at its own step of an N-step sampler (N = `timesteps.size()`),
    and one tick denoises all of them in one batched denoiser call. The new
    frame's noise `sample` enters at the first step with its
    `conditioning`; `state` holds the N - 1 frames already in flight
    (`[N - 1, sample...]`, the frame after step k at index k) and
    `state_conditioning` theirs. The results are the frame that finished
    its last step this tick, and the new states.

    The rule, prediction, timesteps, schedule and argument indices mean
    what they mean on `hasten.sampler_loop`; `ddim` and `euler-flow` only,
    without CFG. The denoiser runs at N times the sample's batch.
  }];
  let arguments = (ins
    FlatSymbolRefAttr:$denoiser,
    AnyStaticShapeTensor:$sample,
    Variadic<AnyStaticShapeTensor>:$conditioning,
    AnyStaticShapeTensor:$state,
    Variadic<AnyStaticShapeTensor>:$state_conditioning,
    StrAttr:$rule,
    StrAttr:$prediction,
    DenseF64ArrayAttr:$timesteps,
    DenseF64ArrayAttr:$schedule,
    I64Attr:$sample_index,
    I64Attr:$time_index
  );
  let results = (outs AnyStaticShapeTensor:$result, AnyStaticShapeTensor:$new_state,
                 Variadic<AnyStaticShapeTensor>:$new_state_conditioning);
  let assemblyFormat = [{
    $denoiser `(` $sample `)`
    (`cond` `(` $conditioning^ `:` type($conditioning) `)`)?
    `state` `(` $state (`,` $state_conditioning^)? `:` type($state) (`,` type($state_conditioning)^)? `)`
    attr-dict `:` type($sample) `->` type($result) `,` type($new_state)
    (`,` type($new_state_conditioning)^)?
  }];
  let hasVerifier = 1;
}

def Hasten_GpuGemmOp : Hasten_Op<"gpu_gemm", [
    AttrSizedOperandSegments, GPU_AsyncOpInterface]> {
  let summary = "A dense matrix product on the GPU by the runtime's BLAS library (cuBLASLt)";
  let description = [{
    `out = lhs · rhs (+ out if accumulate) (+ bias)` on device buffers, by
    the runtime's GEMM (`hasten_cuda_gemm`, on cuBLASLt), the way upstream's
    `gpu.spmm` hands sparse products to cuSPARSE: upstream has no dense
    library product.

    - `lhs` is `[M, K]`, `rhs` `[K, N]`, `out` `[M, N]`; rank 3 adds a
      leading batch dimension to all three (a batch dimension of size 1 or
      stride 0 broadcasts).
    - `lhs` and `rhs` have one element type, f32, bf16 or f16; `out` is f32
      or that type; products accumulate in f32. `tf32` lets f32 operands
      round to TF32 on tensor cores (sm_80 and newer).
    - `bias`, `[N]` and of `out`'s element type, is added to every row
      (cuBLASLt's bias epilogue).
    - `activation`, `relu` or `gelu_tanh` (GELU's tanh approximation,
      `0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))`), is applied last,
      after the bias (cuBLASLt's RELU and GELU epilogues).
    - Any strides: each matrix needs a unit stride in one of its two
      dimensions (a transposed view reads as a transposed operand), `out`
      in its last; the runtime checks them and reports a run error
      otherwise.

    Like a kernel launch it is queued on the stream of its async token
    (`gpu-async-region` threads the tokens), and `gpu-to-llvm` lowers it
    to the runtime call on that stream.

    ```mlir
    %t1 = hasten.gpu_gemm async [%t0] %a, %w bias(%b : memref<384xf32>) into %c
        activation "gelu_tanh" : memref<?x128xf32>, memref<128x384xf32> into memref<?x384xf32>
    ```
  }];
  let arguments = (ins
    Variadic<GPU_AsyncToken>:$asyncDependencies,
    Arg<AnyMemRef, "the left operand", [MemRead]>:$lhs,
    Arg<AnyMemRef, "the right operand", [MemRead]>:$rhs,
    Arg<Optional<AnyMemRef>, "a bias for each column of out", [MemRead]>:$bias,
    Arg<AnyMemRef, "the product", [MemRead, MemWrite]>:$out,
    UnitAttr:$accumulate,
    UnitAttr:$tf32,
    OptionalAttr<StrAttr>:$activation
  );
  let results = (outs Optional<GPU_AsyncToken>:$asyncToken);
  let assemblyFormat = [{
    custom<GpuAsyncDependencies>(type($asyncToken), $asyncDependencies)
    $lhs `,` $rhs (`bias` `(` $bias^ `:` type($bias) `)`)? `into` $out
    (`accumulate` $accumulate^)? (`tf32` $tf32^)? (`activation` $activation^)? attr-dict
    `:` type($lhs) `,` type($rhs) `into` type($out)
  }];
  let hasVerifier = 1;
}

#endif // HASTEN_OPS_TD
