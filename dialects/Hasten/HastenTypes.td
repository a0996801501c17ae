//===- HastenTypes.td - hasten dialect types -----------------*- tablegen -*-===//

#ifndef HASTEN_TYPES_TD
#define HASTEN_TYPES_TD

include "Hasten/HastenBase.td"

class Hasten_Type<string name, string typeMnemonic, list<Trait> traits = []>
    : TypeDef<Hasten_Dialect, name, traits> {
  let mnemonic = typeMnemonic;
}

def Hasten_KVCacheType : Hasten_Type<"KVCache", "kv_cache"> {
  let summary = "A preallocated key/value cache for one sequence";
  let description = [{
    A handle to the keys and values of every attention layer of one sequence,
    preallocated for `capacity` tokens and updated in place. Each layer holds
    keys and values of shape `[kv_heads, capacity, head_dim]`.

    The layout is either `contiguous` (one slab per layer) or
    `paged<block_size = N>`, where tokens live in fixed-size blocks reached
    through a block table; `capacity` must then be a multiple of the block
    size.

    ```mlir
    !hasten.kv_cache<layers = 12, kv_heads = 12, head_dim = 64, capacity = 1024, f32>
    !hasten.kv_cache<layers = 32, kv_heads = 8, head_dim = 128, capacity = 4096, bf16, paged<block_size = 16>>
    ```
  }];
  let parameters = (ins
    "int64_t":$numLayers,
    "int64_t":$numKvHeads,
    "int64_t":$headDim,
    "int64_t":$capacity,
    "::mlir::Type":$elementType,
    "::hasten::KVCacheLayout":$layout,
    "int64_t":$blockSize
  );
  let hasCustomAssemblyFormat = 1;
  let genVerifyDecl = 1;
  let extraClassDeclaration = [{
    bool isPaged() const { return getLayout() == ::hasten::KVCacheLayout::Paged; }
    /// Bytes one element of the cache takes (rounded up to whole bytes).
    int64_t getElementBytes() const;
    /// Bytes that one token adds across all layers, keys and values together.
    int64_t getBytesPerToken() const;
    /// Bytes of the whole preallocated cache.
    int64_t getTotalBytes() const;
    /// Blocks per layer for a paged cache; 1 for a contiguous one.
    int64_t getNumBlocks() const;
  }];
}

#endif // HASTEN_TYPES_TD
