//===- HastenAttrs.td - hasten dialect attributes ------------*- tablegen -*-===//

#ifndef HASTEN_ATTRS_TD
#define HASTEN_ATTRS_TD

include "Hasten/HastenBase.td"

class Hasten_Attr<string name, string attrMnemonic, list<Trait> traits = []>
    : AttrDef<Hasten_Dialect, name, traits> {
  let mnemonic = attrMnemonic;
}

def Hasten_AttentionTilingAttr : Hasten_Attr<"AttentionTiling", "attention_tiling"> {
  let summary = "How one hasten.attention is tiled for a target";
  let description = [{
    The tiling that `--hasten-plan-attention` chose for an attention op (or
    that a compiler engineer wrote on it by hand), read by
    `--hasten-tile-attention` and by the GPU code generators:

    - `target`: `cpu`, `ascend`, `sm_70`, `sm_80` or `sm_90`;
    - `block_q`: queries per outer block, the unit of parallel work (a
      thread's block on a CPU, an AI core's block on Ascend, a thread
      block's on a GPU);
    - `tile_q`, `tile_kv`: queries and keys per inner tile. The S x T scores
      only ever exist as `tile_q x tile_kv` tiles; `tile_q < block_q` is the
      second level of a two-level tiling (FastAttention's per-core block
      split into tiles sized to the local buffer, or a GPU block's warps);
    - `kv_splits`: partitions of the keys computed in parallel and merged
      with their log-sum-exp (flash-decoding, for one-query decode); 1 is
      no split;
    - `skip_masked`: tiles entirely above the causal diagonal are never
      computed; `diagonal_mask`: only tiles that cross the diagonal build a
      mask, from their indices (FastAttention's tiling-mask), others run
      unmasked;
    - `warps`, `mma`: the warps per block and the matrix instruction
      (`m8n8k4` on Volta, `m16n8k16` with `ldmatrix` on sm_80, `wgmma` on
      sm_90, `cube16x16x16` on Ascend; empty on CPUs);
    - `smem_layout`: the shared-memory (or local-buffer) operand layout:
      `row`, `padded<N>` (each row padded by N elements so that the rows an
      instruction reads fall in different banks), `swizzle<B>` (16-byte
      chunks XOR-swizzled within B-byte rows), `nz` (Ascend's 16 x 16
      fractal layout);
    - `vector_lanes`: f32 lanes of the CPU's vectors (0 on accelerators).

    ```mlir
    #hasten.attention_tiling<target = "sm_70", block_q = 64, tile_q = 16,
        tile_kv = 64, kv_splits = 1, skip_masked = true, diagonal_mask = true,
        warps = 4, mma = "m8n8k4", smem_layout = "padded<8>", vector_lanes = 0>
    ```
  }];
  let parameters = (ins
    StringRefParameter<"target name">:$target,
    "int64_t":$block_q,
    "int64_t":$tile_q,
    "int64_t":$tile_kv,
    "int64_t":$kv_splits,
    "bool":$skip_masked,
    "bool":$diagonal_mask,
    "int64_t":$warps,
    StringRefParameter<"matrix instruction">:$mma,
    StringRefParameter<"operand layout">:$smem_layout,
    "int64_t":$vector_lanes
  );
  let assemblyFormat = "`<` struct(params) `>`";
  let genVerifyDecl = 1;
}

#endif // HASTEN_ATTRS_TD
