// RUN: hasten-opt %s | FileCheck %s
// RUN: hasten-opt %s | hasten-opt | FileCheck %s
// RUN: hasten-opt -mlir-print-op-generic %s | hasten-opt | FileCheck %s

// CHECK-LABEL: func @contiguous
// CHECK-SAME: !hasten.kv_cache<layers = 12, kv_heads = 12, head_dim = 64, capacity = 1024, f32>
func.func @contiguous(%c: !hasten.kv_cache<layers = 12, kv_heads = 12, head_dim = 64, capacity = 1024, f32>) {
  return
}

// The explicit `contiguous` keyword is accepted and printed in the short form.
// CHECK-LABEL: func @contiguous_keyword
// CHECK-SAME: !hasten.kv_cache<layers = 1, kv_heads = 1, head_dim = 8, capacity = 3, f16>)
func.func @contiguous_keyword(%c: !hasten.kv_cache<layers = 1, kv_heads = 1, head_dim = 8, capacity = 3, f16, contiguous>) {
  return
}

// CHECK-LABEL: func @paged
// CHECK-SAME: !hasten.kv_cache<layers = 32, kv_heads = 8, head_dim = 128, capacity = 4096, bf16, paged<block_size = 16>>
func.func @paged(%c: !hasten.kv_cache<layers = 32, kv_heads = 8, head_dim = 128, capacity = 4096, bf16, paged<block_size = 16>>) {
  return
}
