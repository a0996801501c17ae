//===- Passes.td - hasten pass definitions -------------------*- tablegen -*-===//
//
// Every hasten pass is declared here; docs/passes.md is generated from this
// file with `mlir-tblgen -gen-pass-doc` (target `hasten-docs`).
//
//===----------------------------------------------------------------------===//

#ifndef HASTEN_PASSES_TD
#define HASTEN_PASSES_TD

include "mlir/Pass/PassBase.td"

def MaterializeAttentionScale : Pass<"hasten-materialize-attention-scale"> {
  let summary = "Make the implicit softmax scale of hasten.attention explicit";
  let description = [{
    `hasten.attention` without a `scale` attribute scales the scores by
    `1/sqrt(head_dim)`. This pass writes that value into the op wherever
    `head_dim` is static, so that later passes and kernels read one attribute
    instead of re-deriving the default. Ops with a dynamic `head_dim` keep
    their implicit scale; with `report-dynamic` each one gets a remark.

    ```mlir
    // Before
    %o = hasten.attention %q, %k, %v heads(8, 8)
        : tensor<1x8x?x64xf32>, tensor<1x8x?x64xf32>, tensor<1x8x?x64xf32> -> tensor<1x8x?x64xf32>
    // After
    %o = hasten.attention %q, %k, %v heads(8, 8) scale(1.250000e-01)
        : tensor<1x8x?x64xf32>, tensor<1x8x?x64xf32>, tensor<1x8x?x64xf32> -> tensor<1x8x?x64xf32>
    ```
  }];
  let options = [
    Option<"reportDynamic", "report-dynamic", "bool", /*default=*/"false",
           "Emit a remark for each attention whose scale stays implicit "
           "because its head_dim is dynamic">
  ];
}

def FuseAttention : Pass<"hasten-fuse-attention"> {
  let summary = "Fuse decomposed attention (matmul, scale, masks, softmax, matmul) into hasten.attention";
  let description = [{
    Exporters write attention as two batched matmuls around a softmax, and
    import turns that into `linalg.batch_matmul`s, elementwise
    `linalg.generic`s and `linalg.softmax` that build the `q_len x kv_len`
    score matrix. This pass finds each such chain and replaces it by one
    `hasten.attention`, which later passes run tiled. It recognizes:

    - the softmax as `linalg.softmax` over the last axis, or written out as
      a max reduction, subtract, exp, sum reduction and divide;
    - the softmax's probabilities guarded by `select(p != p, 0, p)`
      (torch.onnx's `Where(IsNaN(p), 0, p)`), which the op's zeros for a
      row with no visible key make redundant;
    - the scale as a multiply or divide of the scores by a constant (also
      computed in the graph on one-element tensors), or split over Q and K
      (Whisper's `q * d^-1/4`, `k * d^-1/4`);
    - masks as an added bias and as `select(cond, scores, k)` or
      `select(cond, k, scores)` with `k` at most -1e30 (`masked_fill` and
      `torch.where` with `-inf` or the float minimum), in any number and
      combination (a causal mask and a padding mask, say); they become one
      additive mask, computed only over the axes the masks vary on, that
      equals the chain evaluated at zero scores;
    - causal masks: a `select` on a slice of a constant lower-triangular
      buffer (nanoGPT's and Hugging Face's `bias`, compared with 0 or
      boolean), on Trilu of ones (possibly negated) or on a comparison of
      two Ranges broadcast along the queries and the keys becomes the op's
      `causal` rule, with no mask stored, when the triangle's diagonal is
      `kv_len - q_len`: proved statically, or tested at run time with both
      forms compiled behind an `scf.if`. With a finite masked value
      (`finfo.min`) only when no other mask follows, since an added padding
      mask would make fully padded rows differ. The Ranges may start at a
      run-time value (cache positions from the past length). An added
      `select(causal & other, 0, -inf)` (transformers 4.5x) splits into the
      causal rule and `select(other, 0, -inf)` over the axes `other` varies
      on;
    - head repeats on K and V: a broadcast along the heads axis (MQA), and
      Llama's `repeat_kv` (a rank-5 broadcast and a reshape) for GQA; a
      rank-5 repeat read by the product directly (torch.export) is merged
      into the heads when the other operand's repeat cannot be looked
      through;
    - the transposes around Q, K and V, composed into one per operand.

    Each step is proved before the rewrite: reduction axes and keepdims,
    broadcast maps, that reshapes keep rows and heads (dims compared
    statically or by value-bounds analysis), and that every intermediate
    value dies with the match. A chain that fails a check is left alone;
    with `report-unfused` each one gets a remark that says why.

    ```mlir
    // Before (abridged)
    %s = linalg.batch_matmul ins(%q3, %kt3 ...)    // [b*h, s, t]
    %m = linalg.generic {...} ins(%s4, %scale)     // arith.mulf
    %w = linalg.generic {...} ins(%causal, %ninf, %m) // arith.select
    %p = linalg.softmax dimension(3) ins(%w ...)
    %o = linalg.batch_matmul ins(%p3, %v3 ...)
    // After
    %o = hasten.attention %q, %k, %v mask(%mask : tensor<1x1x?x?xf32>)
        heads(4, 4) scale(0.353553385) : ...
    ```

    The op computes in f32 (the runtime kernel and the tiled code are f32):
    a bf16 or f16 attention is fused with its operands and mask widened to
    f32 and its result rounded back, which is at least as accurate as the
    half-precision chain it replaces. f64 attention is left unfused.
  }];
  let options = [
    Option<"reportUnfused", "report-unfused", "bool", /*default=*/"false",
           "Emit a remark for each softmax-weighted batch matmul that is left "
           "unfused, saying which check failed">
  ];
  let dependentDialects = ["::hasten::HastenDialect", "::mlir::linalg::LinalgDialect",
                           "::mlir::tensor::TensorDialect", "::mlir::arith::ArithDialect",
                           "::mlir::scf::SCFDialect"];
}

def PlanAttention : Pass<"hasten-plan-attention"> {
  let summary = "Record a tiling plan (#hasten.attention_tiling) on each hasten.attention for a target";
  let description = [{
    Chooses how each `hasten.attention` is tiled on `target` and writes it
    on the op as `tiling(#hasten.attention_tiling<...>)`, where a compiler
    engineer can read it, change it, and have `--hasten-tile-attention` and
    the GPU code generators follow the change. An op that already has a
    tiling keeps it unless `replace` is set.

    - `cpu`: K and V tiles sized to the L1, the query block, its
      accumulator and a scores tile to half the L2 (at most 64 rows, so that
      sequences split into enough blocks for every thread), one level.
      One-query decode reuses no K or V row, so its tiles are 4096 keys:
      its passes walk four far-apart streams of a tile at once.
    - `ascend`: FastAttention's two levels: a block of 4 query tiles per AI
      core, tiles whose f32 scores and fp16 probabilities fit half the
      unified buffer, operands in the cube unit's `nz` fractal layout.
    - `sm_70`, `sm_80`, `sm_90`: query rows per warp (warpgroup on sm_90),
      double-buffered K and V tiles shrunk until they fit shared memory next
      to the Q block, and an operand layout free of bank conflicts for the
      target's loads: rows padded by 8 fp16 elements for Volta's
      `mma.m8n8k4` when a row is an even number of 16-byte chunks, a
      128/64/32-byte XOR swizzle for `ldmatrix` and TMA on sm_80 and sm_90.

    Every target skips tiles above the causal diagonal and masks only the
    tiles that cross it (the tiling-mask). One-query decode gets
    `kv_splits > 1`: the keys split into partitions computed in parallel
    and merged by log-sum-exp. With `print-plan` each op's plan and its
    on-chip working set are printed to stdout.

    ```mlir
    %o = hasten.attention %q, %k, %v heads(12, 12) causal
        tiling(#hasten.attention_tiling<target = "cpu", block_q = 64, tile_q = 64,
            tile_kv = 64, kv_splits = 1, skip_masked = true, diagonal_mask = true,
            warps = 0, mma = "", smem_layout = "row", vector_lanes = 16>) : ...
    ```
  }];
  let options = [
    Option<"target", "target", "std::string", /*default=*/"\"cpu\"",
           "The target: cpu, ascend, sm_70, sm_80 or sm_90">,
    Option<"l1Bytes", "l1-bytes", "int64_t", /*default=*/"0",
           "CPU L1 data cache bytes per core (0: 48 KiB)">,
    Option<"l2Bytes", "l2-bytes", "int64_t", /*default=*/"0",
           "CPU L2 cache bytes per core (0: 1 MiB)">,
    Option<"vectorBits", "vector-bits", "int64_t", /*default=*/"0",
           "CPU vector register width in bits (0: 512)">,
    Option<"replace", "replace", "bool", /*default=*/"false",
           "Replace tilings already on the ops">,
    Option<"printPlan", "print-plan", "bool", /*default=*/"false",
           "Print each op's plan and working set to stdout">
  ];
}

def TileAttention : Pass<"hasten-tile-attention"> {
  let summary = "Lower hasten.attention into tiled online-softmax IR (FlashAttention-2) by its tiling plan";
  let description = [{
    Replaces each f32 `hasten.attention` by upstream ops that follow its
    `#hasten.attention_tiling` (planned for `target` first when the op has
    none):

    - an `scf.forall` over (batch, head, query block) — the parallel work;
    - in each block, an `scf.for` over key tiles carrying the running row
      maximum, row sum and output accumulator; each step computes one
      `tile_kv x tile_q` tile of transposed scores, `S^T = K Q^T` (K read
      in place, Q transposed once per block; full tiles as register-blocked
      vector code), rescales the accumulator by `exp(m - m')` and adds
      `P V`; the block's output is `acc / l`. Keeping the scores keys-major
      puts every reduction over keys (max, sum) on the outer dimension, so
      it vectorizes along the queries. A one-query tile takes each key's
      score as a vector dot product along the head dim instead.

    When `tile_q < block_q` (two levels: Ascend's per-core block, a GPU
    block's warps), each block runs its query tiles in turn, each with its
    own key loop, and writes them into the block's output.

    The `q_len x kv_len` scores never exist: memory is O(S d). With
    `causal` and `skip_masked`, a block's loop ends at the last key its
    last row may see, so tiles above the diagonal are never computed; with
    `diagonal_mask`, only the tiles that cross the diagonal build the causal
    mask, from their indices, under an `scf.if` (FastAttention's
    tiling-mask). A mask operand is read in place, broadcast by index.

    One-query decode with `kv_splits > 1` becomes flash-decoding: an
    `scf.forall` over (batch, head, partition) computes each partition's
    max, sum and accumulator, and a log-sum-exp merge combines them.

    ```mlir
    %o = hasten.attention %q, %k, %v heads(4, 2) causal scale(0.125) : ...
    // becomes
    %o = scf.forall (%b, %h, %blk) in (%B, 4, %nblocks) shared_outs(%out = %init) {
      %r:3 = scf.for %k0 = %c0 to %end step %c64 iter_args(%m = .., %l = .., %acc = ..) {
        ... linalg.generic (scores), scf.if (diagonal tile), linalg.generic (exp, sums, P V)
      }
      ...
    }
    ```
  }];
  let options = [
    Option<"target", "target", "std::string", /*default=*/"\"cpu\"",
           "Target to plan for when an op has no tiling: cpu, ascend, sm_70, sm_80 or sm_90">
  ];
  let dependentDialects = ["::mlir::scf::SCFDialect", "::mlir::linalg::LinalgDialect",
                           "::mlir::tensor::TensorDialect", "::mlir::arith::ArithDialect",
                           "::mlir::math::MathDialect", "::mlir::vector::VectorDialect"];
}

def GpuAttention : Pass<"hasten-gpu-attention"> {
  let summary = "Lower hasten.attention into a GPU kernel: K/V tiles in shared memory, online softmax per thread";
  let description = [{
    Replaces each `hasten.attention` with static head dims by a `gpu.launch`
    that never builds the `q_len x kv_len` scores (FlashAttention-2's online
    softmax, O(S d) memory), following the op's `#hasten.attention_tiling`
    (planned for `target` first when the op has none):

    - one thread block per (query block, head, batch), `block_q` threads,
      one query row per thread, its query row (pre-scaled) and output
      accumulator in private memory;
    - an `scf.for` over key tiles carrying the row's running maximum and
      sum: the block stages a tile of K and V in shared memory (`gpu.barrier`
      before and after), each thread scores its row against the tile, takes
      the tile's maximum, rescales its accumulator by `exp(m - m')` once per
      tile and adds `P V`;
    - with `causal`, the key loop of a block ends at the last key its last
      row may see, so tiles above the diagonal are never loaded or computed;
      keys past a row's diagonal inside a tile score `-inf`;
    - a mask operand (additive or boolean) is read in place, broadcast by
      index; grouped and multi-query heads read their shared K/V head;
    - one query (decode) is flash-decoding instead: the keys split into the
      plan's `kv_splits` parts, one block of 128 threads per (part, head,
      batch), each thread with its own online softmax over keys `t, t +
      128, ...`, merged across the warp with butterfly `gpu.shuffle`s and
      across warps through shared memory into the part's (accumulator, max,
      sum); a second kernel merges the parts by log-sum-exp.

    With `precision=f32` (the default) operands of any float type are
    computed in f32 with FMA (the SIMT form, which f32 models need: their
    products would lose precision on tensor cores); the key tile is the
    plan's `tile_kv`, halved until the f32 K and V tiles fit 40 KB of static
    shared memory. Ops with a dynamic head dim are left to
    `--hasten-tile-attention`, with a remark.

    With `precision=bf16` or `f16` on sm_80 and sm_90 plans, prefill runs on
    tensor cores, FlashAttention-2's way:

    - `warps` warps per block (the plan's), each owning `tile_q / 16` (at
      most 2) 16-row MMA tiles and keeping their Q fragments, running max
      and sum and output accumulators in registers;
    - per key tile the block stages Q (once), K and V in one shared buffer
      as bf16/f16 in the plan's `smem_layout` (`swizzle<S>`: each row's
      16-byte chunks XORed with the row; `padded<P>`: P elements of padding
      per row; `row`), 8 elements per thread and store; operands already of
      that type (an f16 model) are copied with `nvgpu.device_async_copy`
      (cp.async, 16 bytes, zero-filled past the keys) when their rows are
      contiguous at run time, and each thread waits for its copies before
      the barrier that publishes the tile;
    - fragments come from `nvgpu.ldmatrix` (`transpose` for V), scores from
      `nvvm.mma.sync` m16n8k16 with f32 accumulators, masked and scaled in
      f32; a row's max and sum are reduced over the four lanes that hold it
      with shuffles; the probabilities' accumulator registers become the A
      operand of `P V` (converted to bf16/f16) without touching memory;
    - the key tile is the plan's, halved (then the tiles per warp) until
      the fragments and accumulators take at most 128 registers per thread
      and the shared buffer 40 KB; where the accumulators alone are too
      many (head dims above 128), Q's fragments stay in shared memory next
      to K and V and are reloaded at each use. Head dims that are not
      multiples of 16 keep the SIMT kernel, with a remark. Decode (one
      query) keeps flash-decoding in f32.

    With `precision=f16` on an sm_70 plan (bf16 is an error there), Volta's
    `nvvm.mma.sync` m8n8k4 takes prefill: one instruction is four 8x8x4
    products, one per quad pair of lanes, which tile a 16 x 16 block of the
    warp's output; each warp owns 16 query rows. Q's fragments (4 head dims
    of a row per lane, row-major) stay in registers; S = Q K^T takes K
    column-major, the online softmax reduces a row over the lanes xor 2
    and xor 8, P goes to shared memory in f16 (the accumulator layout is
    not an operand layout on Volta), and O += P V reads P and V row-major,
    8 bytes per fragment. Operand rows are padded as planned (`padded<8>`).

    Keys and values that are the two parts of one layer of a paged cache
    (`hasten.paged_kv.read`, left by `--hasten-lower-kv-cache{keep-paged-reads}`)
    are read in place through the block table by every kernel: slot `j mod
    block_size` of pool block `table[j / block_size]`, looked up once per
    key (decode) or per staged row (prefill, whose cp.async copies read the
    pool's rows directly). Paged reads no kernel took are gathered.

    The shared tiles are `memref.alloca`s in workgroup memory and the
    barriers calls of `@hasten_gpu_barrier` until
    `--hasten-finalize-gpu-kernels`, after buffer deallocation.

    ```mlir
    %o = hasten.attention %q, %k, %v heads(4, 2) causal : ...
    // becomes
    %out = memref.alloc(...)
    gpu.launch blocks(%qb, %h, %b) in (%nq, 4, %B) threads(%t, %y, %z) in (64, 1, 1) {
      %ks = memref.alloca() : memref<64x32xf32, #gpu.address_space<workgroup>>
      %qrow = memref.alloca() : memref<32xf32>
      ...
      %r:2 = scf.for %k0 = %c0 to %end step %c64 iter_args(%m = %ninf, %l = %zero) {
        ... stage K and V, barrier, scores, rescale, P V, barrier
      }
      ...
    }
    %o = bufferization.to_tensor %out
    ```
  }];
  let options = [
    Option<"target", "target", "std::string", /*default=*/"\"sm_80\"",
           "Target to plan for when an op has no tiling: sm_70, sm_80 or sm_90">,
    Option<"precision", "precision", "std::string", /*default=*/"\"f32\"",
           "Operands of prefill's products: f32 (SIMT FMA), or bf16/f16 (tensor-core "
           "mma.sync with f32 accumulators, sm_80 and newer)">
  ];
  let dependentDialects = ["::mlir::gpu::GPUDialect", "::mlir::scf::SCFDialect",
                           "::mlir::memref::MemRefDialect", "::mlir::arith::ArithDialect",
                           "::mlir::math::MathDialect", "::mlir::tensor::TensorDialect",
                           "::mlir::bufferization::BufferizationDialect",
                           "::mlir::vector::VectorDialect", "::mlir::nvgpu::NVGPUDialect",
                           "::mlir::NVVM::NVVMDialect", "::mlir::LLVM::LLVMDialect"];
}

def GpuGemm : Pass<"hasten-gpu-gemm", "::mlir::ModuleOp"> {
  let summary = "Hand the CUDA target's matmuls on buffers to cuBLASLt (hasten.gpu_gemm), with the fill, bias, activation and transposes they imply folded in";
  let description = [{
    Replaces each `linalg.matmul` and `linalg.batch_matmul` on buffers with
    default indexing maps and f32, bf16 or f16 operands by a
    `hasten.gpu_gemm`, the runtime's product on cuBLASLt, folding into it
    what the library does anyway:

    - a `linalg.fill` of zero that last wrote the output (nothing touching
      memory between) is erased, and the product overwrites the output;
      otherwise it accumulates into it (`accumulate`);
    - when the next op to touch the output (through reshapes) is an
      elementwise generic in place on it that computes `act(out + bias[j])`
      (the importer's Gemm C or MatMul + Add, and what elementwise fusion
      joined to it), with the bias there already (a weight) or absent, and
      `act` one of cuBLASLt's epilogues, that generic is erased and the bias
      and activation become the product's epilogue. `act` is the identity,
      ReLU or GELU's tanh approximation (GPT-2's), recognized by what the
      body computes at sample points, whatever its spelling (including the
      polynomial tanh of `--hasten-approximate-math`); erf-GELU and
      sigmoid-GELU differ from it and stay generated kernels;
    - a weight transposed into a copy (a tied LM head's
      `Transpose(embedding)`) is read through a transposed view instead.

    `precision` sets what the operands of f32 products become: `f32`
    (exact, the default), `tf32` (rounded to TF32 on tensor cores, sm_80
    and newer), `bf16` or `f16` (constant weights stored narrowed in the
    module, other operands narrowed by a conversion kernel before the
    product; f32 accumulation and result either way). Products of bf16 or
    f16 operands keep them.

    ```mlir
    linalg.fill ins(%zero : f32) outs(%c : memref<?x384xf32>)
    linalg.matmul ins(%a, %w : memref<?x128xf32>, memref<128x384xf32>) outs(%c : memref<?x384xf32>)
    %e = memref.expand_shape %c [[0, 1], [2]] ... into memref<1x?x384xf32>
    linalg.generic ... ins(%e, %b : memref<1x?x384xf32>, memref<384xf32>) outs(%e ...) { addf }
    // becomes
    hasten.gpu_gemm %a, %w bias(%b : memref<384xf32>) into %c
        : memref<?x128xf32>, memref<128x384xf32> into memref<?x384xf32>
    ```
  }];
  let options = [
    Option<"precision", "precision", "std::string", /*default=*/"\"f32\"",
           "Operands of f32 products: f32, tf32, bf16 or f16">,
  ];
  let dependentDialects = ["::hasten::HastenDialect", "::mlir::arith::ArithDialect",
                           "::mlir::linalg::LinalgDialect", "::mlir::memref::MemRefDialect"];
}

def GpuMatmul : Pass<"hasten-gpu-matmul"> {
  let summary = "Lower linalg matmuls on buffers into tiled GPU kernels (shared-memory tiles, register blocking)";
  let description = [{
    Replaces each `linalg.matmul` and `linalg.batch_matmul` on float buffers
    with default indexing maps (`C += A B`, one batch dim leading) by a
    `gpu.launch`: one block of 256 threads per 64 x 64 tile of C (and batch),
    each thread accumulating a 4 x 4 piece of it in registers (the iteration
    arguments of the K loop). Per 16-deep step of K the block stages A's
    64 x 16 tile (transposed, k-major) and B's 16 x 64 tile in workgroup
    memory between two `gpu.barrier`s, so each element loaded from global
    memory serves 64 multiply-adds, where the generic lowering's one thread
    per output element reloads every operand. Out-of-range rows, columns and
    depths read zeros and are not written. Operands of any float type are
    computed in f32 with FMA. Products with a static row count below 16 (a
    decode step's one token) and other contractions are left to the
    generic lowering, whose one thread per output column reads B coalesced.

    ```mlir
    linalg.matmul ins(%a, %b : memref<?x128xf32>, memref<128x384xf32>) outs(%c : memref<?x384xf32>)
    // becomes
    gpu.launch blocks(%bx, %by, %bz) in (6, ceil(M/64), 1) threads(%t, ...) in (256, 1, 1)
        workgroup(%at : memref<16x64xf32, 3>, %bt : memref<16x64xf32, 3>) {
      %acc:16 = scf.for %k0 = 0 to 128 step 16 iter_args(...) {
        ... stage, gpu.barrier, 16 x 16 fma, gpu.barrier
      }
      ... C[row, col] += acc (inside the matrix)
    }
    ```
  }];
  let dependentDialects = ["::mlir::gpu::GPUDialect", "::mlir::scf::SCFDialect",
                           "::mlir::memref::MemRefDialect", "::mlir::arith::ArithDialect",
                           "::mlir::math::MathDialect"];
}

def FinalizeGpuKernels : Pass<"hasten-finalize-gpu-kernels", "::mlir::ModuleOp"> {
  let summary = "Resolve the placeholders that let kernels built on tensors pass buffer deallocation";
  let description = [{
    Kernels generated on tensors (`--hasten-gpu-attention`) go through
    bufferization and ownership-based buffer deallocation inside their
    `gpu.launch`. That pass refuses ops that declare no memory effects,
    `gpu.barrier` among them (it accepts calls), and gives every block with
    memref arguments ownership arguments as well, which a launch's
    attribution arguments cannot have. So such kernels hold placeholders
    until this pass, the first of the CUDA lowering, resolves them:

    - each call of the private function `@hasten_gpu_barrier` becomes
      `gpu.barrier` (and the declaration goes); a call outside a
      `gpu.launch` has no block to synchronize and is an error;
    - each static `memref.alloca` in `#gpu.address_space<workgroup>` inside
      a launch becomes a workgroup attribution of that launch (shared
      memory); a dynamic one is an error.

    ```mlir
    gpu.launch ... {
      %tile = memref.alloca() : memref<64x32xf32, #gpu.address_space<workgroup>>
      func.call @hasten_gpu_barrier() : () -> ()
    // becomes
    gpu.launch ... workgroup(%tile : memref<64x32xf32, #gpu.address_space<workgroup>>) {
      gpu.barrier
    ```
  }];
  let dependentDialects = ["::mlir::gpu::GPUDialect"];
}

def DecomposeAggregatedOps : Pass<"hasten-decompose-aggregated-ops"> {
  let summary = "Decompose aggregated linalg ops (softmax) into linalg.generic chains";
  let description = [{
    Named linalg ops that aggregate several computations, such as
    `linalg.softmax`, implement `AggregatedOpInterface` but have no direct
    loop lowering. This pass replaces each of them with its decomposition (for
    softmax: a max reduction, a subtract-and-exp, a sum reduction and a
    divide), which the generic CPU lowering then turns into loops. Runs after
    the passes that want to match the named op.

    ```mlir
    %y = linalg.softmax dimension(1) ins(%x : tensor<2x8xf32>) outs(%e : tensor<2x8xf32>) -> tensor<2x8xf32>
    // becomes linalg.fill/linalg.generic reductions and elementwise generics
    ```
  }];
  let dependentDialects = ["::mlir::linalg::LinalgDialect", "::mlir::arith::ArithDialect",
                           "::mlir::math::MathDialect", "::mlir::tensor::TensorDialect"];
}

def MemrefCopyToLinalg : Pass<"hasten-memref-copy-to-linalg"> {
  let summary = "Rewrite memref.copy as linalg.copy so that it lowers to loops";
  let description = [{
    The LLVM lowering of `memref.copy` between non-contiguous memrefs calls
    `memrefCopy` from MLIR's C runner utilities, which a deployed hasten
    module must not depend on. Rewriting every copy as `linalg.copy` lets
    `convert-linalg-to-loops` turn it into plain loops instead.

    ```mlir
    memref.copy %a, %b : memref<4x?xf32, strided<[?, 1], offset: ?>> to memref<4x?xf32>
    // becomes
    linalg.copy ins(%a : memref<4x?xf32, strided<[?, 1], offset: ?>>) outs(%b : memref<4x?xf32>)
    ```
  }];
  let dependentDialects = ["::mlir::linalg::LinalgDialect"];
}

def PromoteLoopAccumulators : Pass<"hasten-promote-loop-accumulators"> {
  let summary = "Keep a loop's reduction accumulator in a register instead of memory";
  let description = [{
    A reduction lowered from linalg to loops (`convert-linalg-to-parallel-loops`)
    loads its output element, updates it and stores it back on every
    iteration of its `scf.for`. LLVM cannot keep the element in a register:
    it cannot prove that the loop's other loads do not read it, so every
    step waits on a store and a reload. This pass carries such an element
    as an `iter_arg` instead, loaded once before the loop and stored once
    after:

    ```mlir
    scf.for %j = %c0 to %c128 step %c1 {
      %x = memref.load %in[%i, %j] : memref<64x128xf32>
      %acc = memref.load %out[%i] : memref<64xf32>
      %sum = arith.addf %acc, %x : f32
      memref.store %sum, %out[%i] : memref<64xf32>
    }
    // becomes
    %init = memref.load %out[%i] : memref<64xf32>
    %r = scf.for %j = %c0 to %c128 step %c1 iter_args(%acc = %init) -> (f32) {
      %x = memref.load %in[%i, %j] : memref<64x128xf32>
      %sum = arith.addf %acc, %x : f32
      scf.yield %sum : f32
    }
    memref.store %r, %out[%i] : memref<64xf32>
    ```

    It applies when the load and the store are directly in the loop's
    body, at the same loop-invariant indices, every write in the loop
    (nested ones included) is such a store, and nothing else in the loop
    reads the accumulator's buffer or a view of it. Loops are visited
    innermost first, so an accumulator moves out through every enclosing
    reduction loop. Distinct buffers (allocations, arguments) are taken not
    to overlap, as linalg's lowering of one op's inputs and outputs
    assumes.
  }];
  let statistics = [
    Statistic<"promoted", "promoted-loops", "Loops whose accumulators now live in registers">
  ];
  let dependentDialects = ["::mlir::scf::SCFDialect", "::mlir::memref::MemRefDialect"];
}

def MatmulToRuntimeCalls : Pass<"hasten-matmul-to-runtime-calls", "::mlir::ModuleOp"> {
  let summary = "Run f32 matmuls on buffers through the runtime's kernels, weights packed for them";
  let description = [{
    Replaces `linalg.matmul` and `linalg.batch_matmul` on f32 memrefs (after
    bufferization) with calls to the runtime:

    ```mlir
    func.call @hasten_rt_matmul_f32(%a, %b, %c, %flags)
        : (memref<?x?xf32, strided<[?, ?], offset: ?>>, ..., i32) -> ()
    ```

    The call computes `C += A * B`, as the linalg op does. `flags` tells the
    runtime that B is a constant weight (bit 0), whether to compute in bf16
    with f32 accumulation (bit 1, from the `weights` option), and that C may
    be overwritten (bit 2: the zero `linalg.fill` that preceded the matmul is
    removed, saving a pass over C and the accumulation). Matmuls on other
    element types keep their loop lowering.

    A 2-D matmul's constant weight (a constant global, read directly or
    transposed) is stored in the layout the kernel reads
    (`include/hasten/WeightLayout.h`), so that the runtime never repacks it:
    a byte global marked with `hasten.weight_format` and the logical
    `hasten.weight_dims` (K, N), passed to `hasten_rt_matmul_packed` with the
    format in flag bits 8-15. `weights=int8` (per output column scales) and
    `weights=int4` (per group of `int4-group` rows and column, f16 scales)
    always pack; f32 and bf16 pack with `weight-layout=strips` (the layout of
    the AVX-512 kernels and oneDNN's BA16a64b / BA16a64b2a), except an f32
    weight read transposed, which stays shared with its other readers. The
    f32 global goes when nothing else reads it.

    A weight that arrives quantized is packed from its own values, scales
    and zero points, whatever `weights` says, and its dequantization goes:
    B computed just before the matmul as `(itofp(q) - itofp(zp)) * scale`
    from constants, either [K, N] with a per-column or per-tensor scale and
    zero point (ONNX's DequantizeLinear of an int8 or uint8 weight: `int8`,
    or `int8-zp` when the zero points differ between columns), or
    [K / G, G, N] read through a collapse (and a slice of K rows) with one
    scale and zero point per block of G = 32, 64 or 128 rows and column
    (ONNX Runtime's MatMulNBits: `int4-gG`, or `int4-gG-zp` with zero
    points other than 8). The int4 scales are stored as f16.
  }];
  let options = [
    Option<"weights", "weights", "std::string", /*default=*/"\"f32\"",
           "Precision of constant weights: f32, bf16 (bf16 x bf16 with f32 accumulation, "
           "AMX/AVX512-BF16 where the CPU has them), int8 or int4 (weight-only, f32 "
           "activations)">,
    Option<"weightLayout", "weight-layout", "std::string", /*default=*/"\"plain\"",
           "How f32 and bf16 weights are stored: plain (packed by the runtime at first use), "
           "or strips (packed here, as the AVX-512 kernels read them)">,
    Option<"int4Group", "int4-group", "int64_t", /*default=*/"32",
           "Rows of W that share one int4 scale: 32, 64 or 128">
  ];
  let dependentDialects = ["::mlir::func::FuncDialect", "::mlir::memref::MemRefDialect",
                           "::mlir::arith::ArithDialect"];
}

def ExternalizeWeights : Pass<"hasten-externalize-weights", "::mlir::ModuleOp"> {
  let summary = "Move constant globals into one weight segment that the runtime maps";
  let description = [{
    On the LLVM dialect: each constant internal `llvm.mlir.global` of at
    least `min-bytes` bytes (byte-sized elements, dense or resource values,
    and dense booleans, stored a byte each as memory holds them) gets an
    offset in one weight segment (64-byte aligned), its addresses
    become `hasten_weights_base + offset`, and the global leaves the module:

    ```mlir
    %slot = llvm.mlir.addressof @hasten_weights_base : !llvm.ptr
    %base = llvm.load %slot : !llvm.ptr -> !llvm.ptr
    %w = llvm.getelementptr inbounds %base[4096] : (!llvm.ptr) -> !llvm.ptr, i8
    ```

    `hasten_weights_base` is an exported pointer, null until the runtime
    maps the segment and stores its address there at load. The values move
    to the module attribute `hasten.weight_segment` (`bytes`, and `weights`:
    name, offset and value of each), from which hasten-compile writes the
    segment into the module file or a sidecar (`--weights-file`). LLVM never
    sees the weight bytes, so compile time no longer grows with them.
  }];
  let options = [
    Option<"minBytes", "min-bytes", "int64_t", /*default=*/"64",
           "Smaller constants stay in the code, where LLVM can fold their loads">
  ];
  let dependentDialects = ["::mlir::LLVM::LLVMDialect"];
}

def MapParallelLoopsToGpu : Pass<"hasten-map-parallel-loops-to-gpu", "::mlir::ModuleOp"> {
  let summary = "Run each outermost scf.parallel loop as a GPU kernel, one thread per iteration";
  let description = [{
    The CUDA target's counterpart of `hasten-outline-parallel-loops`. Each
    outermost `scf.parallel` of a host function (the parallel dimensions of
    a linalg op, after `convert-linalg-to-parallel-loops`; the sequential
    reduction loops stay inside its body) becomes a `gpu.launch` over its
    whole iteration space, flattened: `block-size` threads per block and
    `ceil(iterations / block-size)` blocks along x. Thread `t` of block `b`
    runs iteration `b * block-size + t`, delinearized with the last
    dimension fastest, so that neighbouring threads touch neighbouring
    elements (coalesced accesses for row-major buffers). Iterations past
    the end are masked off, and an empty iteration space launches nothing:

    ```mlir
    scf.parallel (%i, %j) = (%c0, %c0) to (%m, %n) step (%c1, %c1) { ... }
    // becomes
    %total = arith.muli %m, %n : index
    scf.if (%total > 0) {
      gpu.launch blocks(...) in (%gx = ceildiv(%total, 256), ...) threads(...) in (%bx = 256, ...) {
        %id = block_id.x * 256 + thread_id.x
        scf.if (%id < %total) { %i = %id / %n, %j = %id % %n ... }
      }
    }
    ```

    Loops that carry reductions (`scf.reduce` with operands) are refused
    with an error: the linalg lowering writes reductions as sequential
    loops inside the body.

    The serial work on device buffers left on the host after that, the
    loops of ops without parallel dimensions (a reduction to one value) and
    single loads and stores whose results the host does not use, runs as a
    kernel of one thread: each such op, or its outermost enclosing
    `scf.for`/`scf.while`, moves into a `gpu.launch` of one block of one
    thread. Device buffers are those a kernel uses, an entry's arguments
    and results, constants, and every view or value passed along with one
    (passes/DeviceBuffers.h); the host's own (the deallocation helper's
    pointer tables) stay on the host. A load whose value the host uses (a
    length that sizes a buffer) stays too, for `hasten-gpu-device-memory`
    to refuse by name.
  }];
  let options = [
    Option<"blockSize", "block-size", "int64_t", /*default=*/"256",
           "Threads per block">
  ];
  let dependentDialects = ["::mlir::gpu::GPUDialect", "::mlir::scf::SCFDialect",
                           "::mlir::arith::ArithDialect", "::mlir::memref::MemRefDialect"];
}

def GpuHostScalars : Pass<"hasten-gpu-host-scalars", "::mlir::ModuleOp"> {
  let summary = "Read a CUDA entry's scalar inputs once, on the host";
  let description = [{
    In the CUDA entry ABI an entry's rank-0 inputs (a cache length, a step
    number) stay in host memory, where the host code that sizes buffers and
    launches reads them; every other tensor is a device buffer. This pass
    reads each rank-0 argument of a public function once, at the function's
    start, and replaces every other read of it with that value, so that a
    kernel that uses it receives the value, not the host address:

    ```mlir
    func.func @decode(%past: memref<i64>, ...) {
      ... scf.parallel ... { %p = memref.load %past[] ... }
    // becomes
    func.func @decode(%past: memref<i64>, ...) {
      %p = memref.load %past[] : memref<i64>
      ... scf.parallel ... { ... %p ... }
    ```

    An argument that is also written, or used otherwise than by loads, is
    left alone (and `hasten-gpu-device-memory` refuses it if a kernel uses
    it).
  }];
  let dependentDialects = ["::mlir::memref::MemRefDialect"];
}

def GpuDeviceMemory : Pass<"hasten-gpu-device-memory", "::mlir::ModuleOp"> {
  let summary = "Put a CUDA module's buffers in device memory; host reads of small ones through a copy, others refused";
  let description = [{
    After `hasten-map-parallel-loops-to-gpu`, the host functions of a CUDA
    module only allocate, view and pass device buffers; kernels read and
    write them. This pass moves every allocation of a device buffer (one a
    kernel uses, an entry's argument or result, or any view or value passed
    along with one: passes/DeviceBuffers.h) to the device (`memref.alloc`
    -> `gpu.alloc`, `memref.dealloc` -> `gpu.dealloc`) and checks the
    contract the runtime relies on: an entry's arguments and results are
    device buffers, and no host operation reads or writes one. A host
    `memref.load` from a device buffer of static shape and at most 4 KB (a
    scale a kernel computed) reads a copy instead: the buffer is copied
    into a host stack buffer (`gpu.memcpy`) just before it, and
    `gpu-async-region` waits for the copy. Any other operation that would
    (a `memref.load` of a dynamic-length buffer, a call into a CPU kernel of
    the runtime) is refused with an error that names it. Buffers no kernel
    sees (the deallocation helper's pointer tables) stay in host memory,
    where the host may read them. Constant globals stay where they are and
    become device memory when `hasten-externalize-weights` moves them into
    the weight segment, which the runtime uploads to the device.
  }];
  let dependentDialects = ["::mlir::gpu::GPUDialect"];
}

def LowerBf16Mma : Pass<"hasten-lower-bf16-mma"> {
  let summary = "Lower bf16 nvgpu.mma.sync to nvvm.mma.sync (upstream's conversion lacks bf16)";
  let description = [{
    `--convert-nvgpu-to-nvvm` deduces no PTX type for `nvgpu.mma.sync` with
    bf16 operands, so the CUDA lowering runs this pass on each device module
    first: every bf16 m16n8k16 `nvgpu.mma.sync` (A `vector<4x2xbf16>`, B
    `vector<2x2xbf16>`, C `vector<2x2xf32>`) becomes an `nvvm.mma.sync` with
    `bf16` multiplicand types, row-major A and column-major B, whose
    operands are the fragments' registers: each `vector<2xbf16>` row bit
    cast to the `i32` it occupies (the lower half first), the accumulators'
    four f32 values, and the result struct's four values put back into a
    `vector<2x2xf32>`. Other shapes with bf16 operands are errors; f16 and
    other types are left to the upstream conversion.

    ```mlir
    %d = nvgpu.mma.sync (%a, %b, %c) {mmaShape = [16, 8, 16]}
        : (vector<4x2xbf16>, vector<2x2xbf16>, vector<2x2xf32>) -> vector<2x2xf32>
    // becomes
    %a0 = llvm.bitcast (vector.extract %a[0]) : vector<2xbf16> to i32   // ... a3, b0, b1
    %s = nvvm.mma.sync A[%a0, %a1, %a2, %a3] B[%b0, %b1] C[%c0, %c1, %c2, %c3]
        {multiplicandAPtxType = #nvvm.mma_type<bf16>, ...}
    %d = vector.from_elements (llvm.extractvalue %s[0..3]) : vector<2x2xf32>
    ```
  }];
  let dependentDialects = ["::mlir::NVVM::NVVMDialect", "::mlir::LLVM::LLVMDialect",
                           "::mlir::vector::VectorDialect"];
}

def AlignSharedMemory : Pass<"hasten-align-shared-memory", "::mlir::ModuleOp"> {
  let summary = "Align every kernel's shared-memory buffers, so that vector accesses stay whole";
  let description = [{
    NVPTX declares a kernel's workgroup buffer with its element type's
    alignment unless the attribution carries `llvm.align`, and splits each
    vector load or store it cannot prove aligned into scalar ones (a 16-byte
    store of eight bf16 into eight 2-byte stores). The tensor-core attention
    stages tiles 16 bytes per store and `ldmatrix` needs 16-byte rows, so
    after outlining this pass gives every workgroup attribution of every
    `gpu.func` an `llvm.align` of `alignment` bytes (16 by default; a larger
    one already there stays).

    ```mlir
    gpu.func @k() workgroup(%tile : memref<4096xbf16, #gpu.address_space<workgroup>>) kernel
    // becomes
    gpu.func @k() workgroup(%tile : memref<4096xbf16, #gpu.address_space<workgroup>> {llvm.align = 16 : i64}) kernel
    ```
  }];
  let options = [
    Option<"alignment", "alignment", "int64_t", /*default=*/"16",
           "Bytes each workgroup buffer is aligned to (a power of two)">
  ];
  let dependentDialects = ["::mlir::gpu::GPUDialect", "::mlir::LLVM::LLVMDialect"];
}

def GatherGpuKernels : Pass<"hasten-gather-gpu-kernels", "::mlir::ModuleOp"> {
  let summary = "Move every outlined kernel into one gpu.module";
  let description = [{
    `gpu-kernel-outlining` puts each kernel in a `gpu.module` of its own,
    every kernel function named after its host function (`@main_kernel_3::@main_kernel`).
    Compiled as they are, a model's hundreds of kernels would be hundreds of
    PTX files, `ptxas` runs per architecture and driver modules. This pass
    moves them all into the first module, each renamed after the module it
    came from (`@main_kernel::@main_kernel_3`), and retargets the launches:

    ```mlir
    gpu.launch_func @main_kernel_0::@main_kernel ...
    // becomes
    gpu.launch_func @main_kernel::@main_kernel_0 ...
    ```
  }];
  let dependentDialects = ["::mlir::gpu::GPUDialect"];
}

def EmbedCudaBinaries : Pass<"hasten-embed-cuda-binaries", "::mlir::ModuleOp"> {
  let summary = "Assemble each gpu.binary's PTX into cubins and embed them with the PTX";
  let description = [{
    Runs after `gpu-module-to-binary{format=isa}`, which leaves PTX for the
    lowest requested architecture in each `gpu.binary`. For every
    architecture in `archs` that `ptxas` (CUDA 13: sm_75 and newer)
    assembles, the PTX becomes a cubin (`cuda-path/bin/ptxas -arch=sm_XX`); the binary's
    single object is then replaced by a `hasten-cuda-bundle` (the format in
    `include/hasten/CudaBundle.h`): the cubins and the PTX, from which the
    runtime loads the cubin of the device's own architecture, or lets the
    driver compile the PTX for any other (Volta, which CUDA 13's `ptxas`
    no longer targets, and cards newer than the module). An architecture
    that `ptxas` refuses is an error that quotes `ptxas`; `sm_70` is
    PTX-only by design.
  }];
  let options = [
    ListOption<"archs", "archs", "std::string",
               "GPU architectures (sm_70, sm_75, sm_80, sm_86, sm_89, sm_90)">,
    Option<"cudaPath", "cuda-path", "std::string", /*default=*/"\"/usr/local/cuda\"",
           "The CUDA toolkit whose bin/ptxas assembles the cubins">
  ];
}

def FuseElementwise : Pass<"hasten-fuse-elementwise"> {
  let summary = "Fuse chains of elementwise linalg.generic ops into single loops";
  let description = [{
    Fuses a producer `linalg.generic` into its consumer when both are
    elementwise (all loops parallel) and the producer has no other user, so
    that a chain such as bias-add, GELU and scale becomes one loop nest with
    no intermediate tensors.

    Unlike upstream `linalg-fuse-elementwise-ops`, this pass moves no reshape
    across ops and never touches named ops: a `linalg.matmul` stays a named
    op that the matmul lowering can hand to the runtime's GEMM kernels.
  }];
  let dependentDialects = ["::mlir::linalg::LinalgDialect"];
}

def ApproximateMath : Pass<"hasten-approximate-math"> {
  let summary = "Replace libm calls for exp, tanh, erf, log... with inline polynomials";
  let description = [{
    Applies MLIR's polynomial approximations to f32 `math` ops (exp, expm1,
    log, log1p, log2, tanh, erf, sin, cos, atan, atan2, rsqrt...), so that
    softmax, GELU and friends become straight-line arithmetic that LLVM can
    vectorize instead of one libm call per element. The approximations are
    accurate to a few ulp in f32; the ONNX conformance sweep checks them.
    `math.exp2`, which upstream only expands into `exp`, gets a shorter form
    of its own (a degree-5 polynomial and the exponent built from bits, no
    float-to-int conversion): the tiled attention's base-2 softmax runs on
    it, and the attention end-to-end tests check it.
  }];
  let dependentDialects = ["::mlir::math::MathDialect", "::mlir::arith::ArithDialect",
                           "::mlir::vector::VectorDialect", "::mlir::x86vector::X86VectorDialect"];
}

def ExpandShapeToReinterpretCast : Pass<"hasten-expand-shape-to-reinterpret-cast"> {
  let summary = "Lower memref.expand_shape with several dynamic sizes per group to reinterpret_cast";
  let description = [{
    MLIR 22's `expand-strided-metadata` crashes on a `memref.expand_shape`
    whose reassociation group holds more than one dynamic size, such as
    `memref<?x192xf32> into memref<?x?x192xf32>` (batch and sequence both
    dynamic). This pass rewrites exactly those expands into
    `memref.extract_strided_metadata` plus `memref.reinterpret_cast`, with the
    expanded strides computed from the output sizes: within a group the last
    dimension keeps the source stride and each earlier one multiplies by the
    sizes after it. Run it before `expand-strided-metadata`.
  }];
  let dependentDialects = ["::mlir::memref::MemRefDialect", "::mlir::arith::ArithDialect"];
}

def OutlineParallelLoops : Pass<"hasten-outline-parallel-loops", "::mlir::ModuleOp"> {
  let summary = "Run top-level scf.parallel loops on the runtime's thread pool";
  let description = [{
    Outlines each outermost `scf.parallel` loop (the parallel dimensions of
    a linalg op, after `convert-linalg-to-parallel-loops`) into a function

    ```mlir
    func.func private @__hasten_parallel_N(%begin: index, %end: index, %ctx: !llvm.ptr)
    ```

    that runs iterations `[begin, end)` of the loop's first dimension not
    statically known to run once (a leading batch dimension of 1 is fixed at
    its lower bound; the dimensions after the split one stay an inner
    `scf.parallel`). The values the loop uses
    from outside are stored into a stack struct passed as `ctx`: of a
    memref with a strided layout, its aligned pointer and the sizes,
    strides and offset its type leaves dynamic (the body rebuilds the
    descriptor from the type); constants are cloned into the body instead.
    The loop itself becomes

    ```mlir
    call @hasten_rt_parallel_for(%trip_count, %work, %body, %ctx)
    ```

    where the runtime splits the trip count across its OpenMP threads (the
    pool oneDNN uses) and runs loops whose `work` is below `min-work`
    serially on the calling thread. The work is the product of all parallel
    trip counts and of the static trip counts of the sequential loops nested
    in the body (a row reduction counts its row).
  }];
  let options = [
    Option<"minWork", "min-work", "int64_t", /*default=*/"32768",
           "Loops with fewer total iterations than this run serially">
  ];
  let dependentDialects = ["::mlir::func::FuncDialect", "::mlir::scf::SCFDialect",
                           "::mlir::arith::ArithDialect", "::mlir::LLVM::LLVMDialect"];
}

def DecoderEntries : Pass<"hasten-decoder-entries", "::mlir::ModuleOp"> {
  let summary = "Add the prefill, decode and verify entries of an imported decoder";
  let description = [{
    An imported decoder is one function with the Optimum decoder-with-past
    signature, its arguments and results named by `hasten.onnx_name`:
    `input_ids` `[batch, seq]`, optional `attention_mask` and `position_ids`,
    `past_key_values.N.key/value` `[batch, kv_heads, past, head_dim]`, and the
    results `logits` `[batch, seq, vocab]` and `present.N.key/value`. For such
    a function this pass adds two entries that generation calls, leaving the
    original function as it is:

    - `prefill` (`hasten.entry_kind = "prefill"`): one sequence (batch 1) of
      any length on a past of any length;
    - `decode` (`hasten.entry_kind = "decode"`): one sequence and one token;
    - with `verify`, `verify` (`hasten.entry_kind = "verify"`): like
      `prefill`, but returning the logits of every position
      (`[1, seq, vocab]`), which speculative decoding needs to check
      several proposed tokens in one pass.

    In all of them, `position_ids` becomes `past + [0, seq)` and `attention_mask`
    becomes `ones(past + seq)`, computed from the length of
    `past_key_values.0.key` instead of being passed in, and, but for
    `verify`, `logits` is computed for the last position only (`[1, 1, vocab]`): the slice of the
    last row is moved up through the LM head, so that it multiplies one row.
    The specialized shapes are then propagated through the entry, so that
    the decode entry is static except for the past length. `input_ids` gets
    `hasten.role = "token_ids"` and `logits` `hasten.role = "logits"`.

    ```mlir
    // Before
    func.func @main(%ids: tensor<?x?xi64> {hasten.onnx_name = "input_ids"},
                    %mask: tensor<?x?xi64> {hasten.onnx_name = "attention_mask"}, ...)
    // After: @main, and
    func.func @prefill(%ids: tensor<1x?xi64> {hasten.onnx_name = "input_ids",
                                               hasten.role = "token_ids"}, ...)
        -> (tensor<1x1x256xf32> {hasten.onnx_name = "logits", hasten.role = "logits"}, ...)
        attributes {hasten.entry_kind = "prefill"}
    func.func @decode(%ids: tensor<1x1xi64> ...) attributes {hasten.entry_kind = "decode"}
    ```

    A module without such a function is left alone, or with `require`
    reported as an error; a decoder whose `attention_mask` or `position_ids`
    is not `[batch, ...]` of rank 2 is reported naming the argument.
  }];
  let options = [
    Option<"require", "require", "bool", /*default=*/"false",
           "Fail when the module has no decoder function">,
    Option<"verify", "verify", "bool", /*default=*/"false",
           "Also add the verify entry (logits for every given token)">
  ];
  let dependentDialects = ["::mlir::linalg::LinalgDialect", "::mlir::arith::ArithDialect",
                           "::mlir::tensor::TensorDialect"];
}

def PlanKVCache : Pass<"hasten-plan-kv-cache", "::mlir::ModuleOp"> {
  let summary = "Turn the past/present KV concats of decoder entries into in-place cache appends";
  let description = [{
    A decoder exported with past/present pairs grows its KV cache by
    concatenating the new keys and values to the past ones
    (`present.N.key = Concat(past_key_values.N.key, k)`), which copies the
    whole cache on every step. In the functions marked `hasten.entry_kind`
    (the `prefill` and `decode` entries the importer adds), this pass:

    - finds each `past_key_values.N.key/value` argument and the
      `tensor.concat` along the sequence axis that grows it;
    - replaces the pair by one preallocated `!hasten.kv_cache` argument
      (`kv_cache`) and an `i64` scalar argument (`past_length`);
    - rewrites each layer's two concats into a `hasten.kv_cache.append` of
      the new keys and values at `past_length`, followed by a
      `hasten.kv_cache.view` of the first `past_length + tokens` positions
      that the attention reads;
    - drops the `present.N.*` results, since the cache now holds them.

    The cache keeps each layer's keys and values head-major
    (`[kv_heads, tokens, head_dim]`), the order the attention reads them in,
    either in one slab per layer or, with `block-size`, in blocks of
    `block-size` tokens reached through a block table.

    ```mlir
    // Before
    %present = tensor.concat dim(2) %past, %k : (tensor<1x4x?x16xf32>, tensor<1x4x1x16xf32>) -> tensor<1x4x?x16xf32>
    // After
    hasten.kv_cache.append %k, %v into %cache[layer 0] at %past_length : ...
    %keys, %values = hasten.kv_cache.view %cache[layer 0] length %total : ...
    ```

    Arguments that are used in any other way than by the concat and by
    `tensor.dim` are reported as errors naming the argument.
  }];
  let options = [
    Option<"capacity", "capacity", "int64_t", /*default=*/"1024",
           "Tokens the cache of one sequence holds">,
    Option<"blockSize", "block-size", "int64_t", /*default=*/"0",
           "Tokens per block of a paged cache; 0 for a contiguous cache">,
    Option<"draftCapacity", "draft-capacity", "int64_t", /*default=*/"0",
           "Tokens the cache of a `draft` model's sequence holds (the positions "
           "a draft knows may be fewer than its target's); 0: `capacity`">
  ];
  let dependentDialects = ["::hasten::HastenDialect", "::mlir::arith::ArithDialect",
                           "::mlir::tensor::TensorDialect"];
}

def UnrollSpeculation : Pass<"hasten-unroll-speculation", "::mlir::ModuleOp"> {
  let summary = "Add the fused spec_step entry: K draft steps, one verification, acceptance";
  let description = [{
    For a module holding a target decoder and a draft (`hasten-compile
    --draft`), after `--hasten-plan-kv-cache`, adds the entry `spec_step`
    (`hasten.entry_kind = "spec_step"`) that runs one speculative decoding
    step in one call, greedy or sampled:

    - `k` draft decode steps, unrolled: `hasten.decode_step @draft_decode`
      on the pending token, then on each proposal in turn. Each proposal is
      the argmax of the draft's logits, or at a positive temperature T a
      token drawn from softmax(logits / T) with one of the given uniforms;
    - the target's verification of the pending token and the `k` proposals
      in one pass: `hasten.decode_step @verify` on `[1, k + 1]` tokens;
    - acceptance. Greedy: the longest prefix of proposals equal to the
      target's argmax, then the target's argmax after it. Sampled
      (rejection sampling): proposal i, drawn with the draft's probability
      q, is kept while u·q < p, the target's probability of it; at the
      first rejection the next token is drawn from max(0, p - q)
      normalized, after `k` acceptances from the target's last row. The
      output is distributed as the target's own samples at temperature T;
    - the new lengths of both caches: the target keeps the pending token and
      the accepted proposals; the draft keeps as many of the tokens it ran.
      Rejected tokens stay in the caches past those lengths and are
      overwritten later: rolling back copies nothing.

    The choice between the two is an `scf.if` on the temperature, so the
    greedy step runs no softmax. Each pass over the vocabulary (a row's
    maximum and argmax, a softmax sum, the sums of 16-token chunks a draw
    scans) reads 16 logits at a time into vector accumulators, one row
    after another. Top-k and top-p cuts are not applied inside; the runtime
    runs such requests step by step. With `greedy-only` (the GPU targets)
    the step is greedy alone and its argmaxes are linalg reductions, which
    become kernels; it takes no `temperature` or `uniforms`.

    Arguments: `input_ids` (`[1, 1]`, the pending token, role `token_ids`),
    the target's `kv_cache` and `past_length`, the draft's `draft_kv_cache`
    and `draft_past_length`, the `temperature` (f32 scalar; 0 or less is
    greedy) and `uniforms` (f32 `[2k + 1]` draws in [0, 1): one per
    proposal, one per acceptance test, one for the next token). Results:
    `accepted_tokens` (`[1, k + 1]`: the accepted proposals, the target's
    next token, then -1), and the new `past_length` and
    `draft_past_length`.

    ```mlir
    func.func @spec_step(%pending: tensor<1x1xi64>, %cache: !hasten.kv_cache<...>,
                         %past: tensor<i64>, %draft_cache: !hasten.kv_cache<...>,
                         %draft_past: tensor<i64>, %temperature: tensor<f32>,
                         %uniforms: tensor<9xf32>)
        -> (tensor<1x5xi64>, tensor<i64>, tensor<i64>) attributes {hasten.entry_kind = "spec_step"} {
      %l0 = hasten.decode_step @draft_decode(%pending) cache(%draft_cache) past(%p0) : ...
      %t1:4 = scf.if %sampling -> (i64, f32, f32, f32) {
        ...                                 // softmax normalizers, a draw, q
      } else {
        ...                                 // argmax
      }
      ...                                   // three more draft steps
      %scores = hasten.decode_step @verify(%candidates) cache(%cache) past(%past)
          : tensor<1x5xi64>, !hasten.kv_cache<...>, tensor<i64> -> tensor<1x5x256xf32>
      %accepted:2 = scf.if %sampling -> (index, i64) { ... } else { ... }
      ...                                   // the emitted tokens, lengths
    }
    ```

    The caches may be contiguous or paged (`--hasten-lower-kv-cache` then
    gives `spec_step` each paged cache's pool and block table, and passes
    them to the calls).

    Errors name what is missing: the verify entry or the draft's decode
    entry, planned caches, vocabularies that differ, or an existing
    `spec_step` symbol.
  }];
  let options = [
    Option<"k", "k", "int64_t", /*default=*/"4", "Draft tokens proposed per step (1 to 32)">,
    Option<"greedyOnly", "greedy-only", "bool", /*default=*/"false",
           "The greedy step alone (no temperature or uniforms), its argmaxes linalg "
           "reductions: for GPU targets, whose host code cannot read the logits">
  ];
  let dependentDialects = ["::hasten::HastenDialect", "::mlir::arith::ArithDialect",
                           "::mlir::linalg::LinalgDialect", "::mlir::math::MathDialect",
                           "::mlir::scf::SCFDialect", "::mlir::tensor::TensorDialect",
                           "::mlir::vector::VectorDialect"];
}

def ConvolutionToMatmul : Pass<"hasten-convolution-to-matmul", "::mlir::func::FuncOp"> {
  let summary = "Rewrite 1-D and 2-D convolutions (f32, or 2-D int8) with constant filters as im2col and one matmul";
  let description = [{
    `linalg.conv_1d_ncw_fcw` and `linalg.conv_2d_nchw_fchw` on static f32
    tensors whose filter is a constant (possibly reshaped or transposed)
    become, for one image (`n = 1`):

    - the gather of the input windows, `[c, k..., o...]` (one parallel
      `linalg.generic` reading `x[0, c, o * stride + k * dilation]`, along
      output rows), collapsed to `[c k..., o...]`;
    - one `linalg.matmul` of the filter collapsed to `[f, c k...]` by the
      windows, accumulating into the convolution's init (the bias, or a
      fill in the new shape) collapsed to `[f, o...]`; the product expands
      back to `[1, f, o...]` with no move;

    for a batch whose output rows (the last output dimension) have 32
    positions or more, the same with the images inside the columns:

    - the gather `[c, k..., n, o...]` (reading `x[n, c, ...]` along output
      rows), collapsed to `[c k..., n o...]`;
    - the filter `[f, c k...]` times the windows, accumulating into the init
      moved to `[f, n o...]`, and the product moved back to `[n, f, o...]`
      a whole output row at a time;

    and for other batches (short rows, where moving the product back by
    rows would not pay):

    - the gather `[n, o..., c, k...]`, collapsed to `[n o..., c k...]`;
    - the filter collapsed to `[f, c k...]` and transposed;
    - one `linalg.matmul` accumulating into the init moved to
      `[n o..., f]`, and the product moved back to `[n, f, o...]`.

    `linalg.conv_2d_nchw_fchw_q` of int8 operands (a QDQ model's, from
    `--hasten-fold-quantized-contractions`) becomes the same, in int8, with
    `linalg.quantized_matmul` and the convolution's zero points.

    The matmul then runs on the runtime's kernels
    (`--hasten-matmul-to-runtime-calls`; a batch's filter packed at compile
    time) instead of as a loop nest over the kernel window. Windows of fewer than 8 elements, a single
    output position, and gathers above 2^26 elements are left as they are.
  }];
  let dependentDialects = ["::mlir::linalg::LinalgDialect", "::mlir::tensor::TensorDialect"];
}

def FoldQuantizedContractions : Pass<"hasten-fold-quantized-contractions", "::mlir::func::FuncOp"> {
  let summary = "Rewrite matmuls and convolutions of dequantized int8 operands (QDQ models) as integer ones";
  let description = [{
    A QDQ model (ONNX Runtime's quantizer, `QuantFormat.QDQ`) writes an int8
    matmul or convolution as a `MatMul` or `Conv` of `DequantizeLinear`
    results, which import as `linalg.generic`s computing
    `(itofp(q) - itofp(zp)) * scale` and an f32 `linalg.matmul` or
    `linalg.conv_2d_nchw_fchw`. Since

        sum_k (sa (a - za)) (sw[c] (w - zw)) = sa sw[c] sum_k (a - za) (w - zw)

    this pass replaces each one whose operands are such dequantizations of
    8-bit values, with:

    - for the activation (possibly collapsed from `[batch..., M, K]`, or
      zero-padded for the convolution), one scale and one zero point for the
      tensor;
    - for the weight, one scale for the tensor or one per output channel (a
      matmul's columns, a filter's first dimension), and one zero point;

    by `linalg.quantized_matmul` or `linalg.conv_2d_nchw_fchw_q` of the
    stored values into i32, followed by one elementwise `linalg.generic`
    that multiplies by `scale_a * scale_w[c]` (and adds the init, a bias,
    unless it is zero). A convolution's input padding becomes the zero
    point, which dequantizes to the 0 the f32 graph pads with. The i32 form
    that MatMulInteger, QLinearMatMul, ConvInteger and QLinearConv import
    to, `ext(q) - ext(zp)` operands of an i32 `linalg.matmul` or
    convolution, becomes `linalg.quantized_matmul` or
    `linalg.conv_2d_nchw_fchw_q` the same way, accumulating into the op's
    own init, zero points computed at run time (DynamicQuantizeLinear's)
    included. uint8 operands are read as int8 with the top bit flipped
    (value and zero point both 128 less, the difference unchanged); a
    constant weight is flipped here.

    Then `--hasten-convolution-to-matmul` turns the integer convolution into
    an int8 im2col and `linalg.quantized_matmul`, and
    `--hasten-matmul-to-runtime-calls` runs every integer matmul on the
    runtime's int8 kernel: no f32 copy of a weight is built.

    ```mlir
    // Before (abridged)
    %xq = linalg.generic ... ins(%x, %sx, %zx) { divf, roundeven, ..., fptoui }
    %xd = linalg.generic ... ins(%xq, %sx, %zx) { uitofp, subf, mulf }
    %wd = linalg.generic ... ins(%wq, %sw, %zw) { sitofp, subf, mulf }
    %y = linalg.matmul ins(%xd, %wd : ...) outs(%zeros : tensor<?x96xf32>)
    // After
    %xs = linalg.generic ... ins(%xq) { arith.xori %in, -128 }
    %acc = linalg.quantized_matmul ins(%xs, %wq, %c-18_i32, %c0_i32 : ...)
        outs(%zeros_i32 : tensor<?x96xi32>)
    %y = linalg.generic ... ins(%acc, %scales : tensor<?x96xi32>, tensor<96xf32>)
        { sitofp, mulf }
    ```

    Left alone: per-row activation scales, zero points that vary, scales or
    zero points that are not constants (zero points of the i32 form may be
    run-time scalars), operands that are not 8-bit, batched matmuls, 1-D
    and 3-D convolutions, and inputs padded with another value. With
    `report-unfolded` each matmul or convolution of a dequantized operand
    that stays as it is gets a remark that says why.
  }];
  let options = [
    Option<"reportUnfolded", "report-unfolded", "bool", /*default=*/"false",
           "Emit a remark for each matmul or convolution of dequantized operands that "
           "stays as it is, saying which check failed">
  ];
  let dependentDialects = ["::mlir::arith::ArithDialect", "::mlir::linalg::LinalgDialect",
                           "::mlir::tensor::TensorDialect"];
}

def FuseSamplerSteps : Pass<"hasten-fuse-sampler-steps", "::mlir::ModuleOp"> {
  let summary = "Unroll few-step samplers into calls of one fused denoiser step";
  let description = [{
    Replaces each `hasten.sampler_loop` by its steps. The steps call one new
    private function, `<denoiser>_sampler_step`, which is the denoiser
    with:

    - **the timestep-only subgraph folded**: the ops that read the time
      argument and otherwise only constants (sinusoidal embeddings, time
      MLPs, adaLN modulation vectors) are evaluated at compile time for each
      step's timestep (`TensorEvaluator`), and the values the rest of the
      denoiser reads become arguments that each step passes as constants;
      no step recomputes them, and the network is compiled once;
    - **the conditioning-only subgraph hoisted**: the ops that read the
      conditioning and otherwise only constants (the cross-attention keys
      and values of a context, a conditioning upsampler) are computed once,
      before the steps, and each step receives their values;
    - **CFG batched**: with `cfg = "full"` the sample and the conditional
      and negative conditioning are concatenated into one call at twice the
      batch, and the halves combined as u + s (c - u); with `rcfg-self` /
      `rcfg-onetime` the negative pass is replaced by the residual noise the
      step function also returns (one extra negative call before the first
      step for `rcfg-onetime`);
    - **the update fused**: x' = a x + b p + b' q + c z (every rule is
      linear in the sample x, the predictions p and q and the fresh noise
      z, with per-step coefficients computed here in double and passed as a
      `tensor<8xf32>`) is one `linalg.generic`, fused into the denoiser's
      last elementwise op through reshapes (not with full CFG, whose halves
      come from two slices).

    The function holding the loop gets `hasten.sampler_steps`, the number
    of denoiser calls.

    Each `hasten.sampler_stream` becomes one call of the step function at
    the stream's rows (the new frame and the frames in flight, each row
    with its step's time values and coefficients). What depends only on the
    conditioning is carried with the frames instead of recomputed at every
    tick: the pass proves that each row of those values depends on its own
    frame's conditioning alone and by the same function for every row
    (through linalg ops whose row loop is parallel and reaches no per-row
    constant, reshapes that keep rows contiguous, pads and slices that leave
    rows whole), computes them for the new frame's rows only, and replaces
    the raw conditioning's state arguments and results of the enclosing
    function with theirs (`carried_conditioning_N`). Otherwise a remark
    says which op kept it from doing so, and the state keeps the raw
    conditioning.

    ```mlir
    %x = hasten.sampler_loop @denoise(%noise) {rule = "euler-flow", prediction = "velocity",
        timesteps = array<f64: 0.0, 0.5>, schedule = array<f64: 0.0, 0.5, 1.0>,
        sample_index = 0, time_index = 1} : tensor<1x8xf32> -> tensor<1x8xf32>
    // becomes
    %x1 = call @denoise_sampler_step(%noise, %t0, %time_values0, %coefficients0) : ...
    %x = call @denoise_sampler_step(%x1, %t1, %time_values1, %coefficients1) : ...
    ```
  }];
  let dependentDialects = ["::mlir::arith::ArithDialect", "::mlir::func::FuncDialect",
                           "::mlir::linalg::LinalgDialect", "::mlir::tensor::TensorDialect"];
}

def LowerKVCache : Pass<"hasten-lower-kv-cache", "::mlir::ModuleOp"> {
  let summary = "Lower !hasten.kv_cache arguments and cache ops to memrefs written in place";
  let description = [{
    Replaces each `!hasten.kv_cache` function argument by the buffers that
    hold it, each `hasten.decode_step` by a `func.call` of its entry (which
    passes the cache buffers along), and the cache ops by in-place reads and
    writes of them:

    - contiguous: one `memref<layers x 2 x kv_heads x capacity x head_dim>`
      argument (`kv_cache`); `append` copies the new tokens into a subview,
      and `view` is a subview of the first `length` tokens read as a tensor
      (`bufferization.to_tensor restrict`), so the attention reads the cache
      where it lies;
    - paged: a block pool `memref<? x layers x 2 x kv_heads x block x head_dim>`
      (`kv_block_pool`) and a block table `memref<capacity/block x i32>`
      (`kv_block_table`) mapping each block of the sequence to a pool block;
      `append` scatters the new tokens into their blocks in one parallel
      loop (each element reads its block from the table: on a GPU, one
      kernel), and `view` is read through the block table by the runtime's
      attention kernel (`attention-kernel`, the CPU target), is left as
      `hasten.paged_kv.read` for a later consumer that reads through the
      table (`keep-paged-reads`, GPU targets: `--hasten-gpu-attention`'s
      kernels), or gathers the blocks into a tensor.

    Runs on tensors, before one-shot bufferization.
  }];
  let options = [
    Option<"attentionKernel", "attention-kernel", "bool", /*default=*/"true",
           "Attention on a paged view calls the runtime's kernel, which reads the blocks in "
           "place (the CPU target); off, views gather their blocks (GPU targets)">,
    Option<"keepPagedReads", "keep-paged-reads", "bool", /*default=*/"false",
           "Paged views the runtime's kernel does not take stay hasten.paged_kv.read (for "
           "--hasten-gpu-attention, which reads through the table and gathers the rest); "
           "off, they are gathered here">,
  ];
  let dependentDialects = ["::mlir::arith::ArithDialect", "::mlir::bufferization::BufferizationDialect",
                           "::mlir::memref::MemRefDialect", "::mlir::scf::SCFDialect",
                           "::mlir::tensor::TensorDialect"];
}

def AssignDestinations : Pass<"hasten-assign-destinations", "::mlir::func::FuncOp"> {
  let summary = "Choose the destination of each linalg op so that activations live briefly";
  let description = [{
    One-shot bufferization writes each linalg op's result into the buffer of
    its `outs` operand. When that operand is a `tensor.empty` (the op does
    not read it), which tensor it is decides how long memory stays live.
    This pass, run just before bufferization, picks for every such
    destination:

    - an input of the op that dies there: a tensor of the same type, read
      with the same indexing map as the result is written, whose only use is
      this op, in an op whose loops are all parallel. The op then updates
      that buffer in place (a residual add writes into its input), and no
      new buffer is live next to it;
    - otherwise, when the `tensor.empty` has other uses (CSE merges
      identical ones, such as the matmul inits of every layer once the
      sequence length is one SSA value), a fresh `tensor.empty` created right
      before the op, so that the buffer is allocated where it is first
      needed instead of at the first of the merged ops.

    ```mlir
    // Before
    %e = tensor.empty(%n) : tensor<?x64xf32>
    %sum = linalg.generic {... iterator_types = ["parallel", "parallel"]}
        ins(%x, %y : tensor<?x64xf32>, tensor<?x64xf32>) outs(%e : tensor<?x64xf32>) ...
    // After, when %x has no other use
    %sum = linalg.generic {... iterator_types = ["parallel", "parallel"]}
        ins(%x, %y : tensor<?x64xf32>, tensor<?x64xf32>) outs(%x : tensor<?x64xf32>) ...
    ```
  }];
  let dependentDialects = ["::mlir::tensor::TensorDialect"];
}

def DeallocAfterLastUse : Pass<"hasten-dealloc-after-last-use", "::mlir::func::FuncOp"> {
  let summary = "Free each buffer right after its last use instead of at the end of the function";
  let description = [{
    Ownership-based deallocation (`buffer-deallocation-pipeline`) places the
    `memref.dealloc` of a buffer at the end of its block, so a function holds
    every activation it allocated until it returns, and its peak memory is
    the sum of all of them. This pass moves each unconditional
    `memref.dealloc` of a `memref.alloc` in the function body to just after
    the last op that uses the buffer or any view of it (subviews, reshapes,
    casts). Buffers whose aliases are returned or flow through other ops that
    yield memrefs keep their dealloc where it is. The allocator can then reuse
    the memory within one call, and the function's peak is the
    liveness-based one that `hasten-compile --memory-report` prints.

    ```mlir
    %a = memref.alloc() : memref<64xf32>
    "use"(%a) : (memref<64xf32>) -> ()
    %b = memref.alloc() : memref<64xf32>      // may now reuse %a's memory
    "use"(%b) : (memref<64xf32>) -> ()
    memref.dealloc %a : memref<64xf32>        // moves up, after the first use
    memref.dealloc %b : memref<64xf32>
    ```
  }];
  let dependentDialects = ["::mlir::memref::MemRefDialect"];
}

def AttentionToRuntimeCalls : Pass<"hasten-attention-to-runtime-calls", "::mlir::ModuleOp"> {
  let summary = "Run hasten.attention on the runtime's tiled attention kernel";
  let description = [{
    Replaces each f32 `hasten.attention` (with no mask or an additive one)
    by a call of `hasten_rt_attention_f32`. The kernel computes
    `softmax(scale * Q K^T + mask) V` a block of 64 queries against tiles of
    64 keys at a time with a running maximum and sum per query
    (FlashAttention-2), so the `q_len x kv_len` score matrix is never
    materialized; it reads keys and values in place through their strides
    (a view of a contiguous KV cache needs no copy), shares key/value heads
    for grouped-query attention, and skips key tiles that the causal flag or
    the mask (below -1e8 everywhere) rules out.

    Runs on tensors before one-shot bufferization: the operands become
    read-only buffers (`bufferization.to_buffer`) and the result a new
    buffer read back with `bufferization.to_tensor`.

    ```mlir
    %o = hasten.attention %q, %k, %v mask(%m : tensor<1x1x?x?xf32>) heads(12, 12) scale(1.250000e-01) : ...
    // becomes
    call @hasten_rt_attention_f32(%qb, %kb, %vb, %mb, %out, %scale, %flags) : (...) -> ()
    %o = bufferization.to_tensor %out restrict writable : ...
    ```
  }];
  let dependentDialects = ["::mlir::arith::ArithDialect", "::mlir::bufferization::BufferizationDialect",
                           "::mlir::func::FuncDialect", "::mlir::memref::MemRefDialect",
                           "::mlir::tensor::TensorDialect"];
}

def PackStaticBuffers : Pass<"hasten-pack-static-buffers", "::mlir::func::FuncOp"> {
  let summary = "Place statically shaped activations in one arena by liveness";
  let description = [{
    Gives every statically shaped buffer that the function allocates and
    frees in its body an offset in one arena, allocated once at the start of
    the function and freed at its returns, such that buffers whose lifetimes
    (allocation to last use of the buffer or its views) overlap never
    overlap in the arena. Offsets are chosen largest buffer first, at the
    lowest 64-byte aligned gap. Each `memref.alloc` becomes a `memref.view`
    of the arena and its deallocs disappear. Buffers with dynamic sizes,
    buffers that are returned or whose aliases flow into other ops that
    yield buffers keep their own allocation.

    The function records the arena in `hasten.arena_bytes` and the number of
    buffers placed in it in `hasten.arena_buffers`. `alignment` is the
    arena's and every offset's (64 bytes on CPUs; the CUDA target asks for
    256, what cuBLASLt's fastest kernels and 128-bit loads want); on a GPU
    the arena is one device allocation per call, and reusing its bytes in
    program order is safe because a call's kernels run in order on one
    stream.

    ```mlir
    %a = memref.alloc() : memref<16xf32>      // live [0, 1]
    %b = memref.alloc() : memref<16xf32>      // live [2, 3], reuses %a's bytes
    // becomes
    %arena = memref.alloc() {alignment = 64} : memref<64xi8>
    %a = memref.view %arena[%c0][] : memref<64xi8> to memref<16xf32>
    %b = memref.view %arena[%c0][] : memref<64xi8> to memref<16xf32>
    ```
  }];
  let options = [
    Option<"alignment", "alignment", "int64_t", /*default=*/"64",
           "Alignment of the arena and of every buffer's offset in it (bytes)">,
  ];
  let dependentDialects = ["::mlir::arith::ArithDialect", "::mlir::memref::MemRefDialect"];
}

#endif // HASTEN_PASSES_TD
