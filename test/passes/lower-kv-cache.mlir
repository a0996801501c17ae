// RUN: hasten-opt %s -split-input-file -hasten-lower-kv-cache | FileCheck %s
// RUN: hasten-opt %s -split-input-file -hasten-lower-kv-cache=attention-kernel=false | FileCheck %s --check-prefix=GATHER
// RUN: hasten-opt %s -split-input-file -hasten-lower-kv-cache="attention-kernel=false keep-paged-reads=true" | FileCheck %s --check-prefix=KEEP

// Contiguous: the cache is one slab; the append copies the new tokens only
// into a subview, and the view reads a subview in place.
// CHECK-LABEL: func.func @contiguous(
// CHECK-SAME: %[[K:.*]]: tensor<1x2x1x4xf32>, %[[V:.*]]: tensor<1x2x1x4xf32>,
// CHECK-SAME: %[[SLAB:.*]]: memref<3x2x2x64x4xf32> {hasten.onnx_elem_type = 1 : i32, hasten.onnx_name = "kv_cache"},
// CHECK-SAME: %[[POS:.*]]: index
// CHECK: %[[DST_K:.*]] = memref.subview %[[SLAB]][1, 0, 0, %[[POS]], 0] [1, 1, 2, 1, 4] [1, 1, 1, 1, 1]
// CHECK: %[[SRC_K:.*]] = tensor.expand_shape %[[K]] {{\[\[}}0, 1], [2], [3], [4]]
// CHECK: bufferization.materialize_in_destination %[[SRC_K]] in restrict writable %[[DST_K]]
// CHECK: %[[DST_V:.*]] = memref.subview %[[SLAB]][1, 1, 0, %[[POS]], 0]
// CHECK: bufferization.materialize_in_destination {{.*}} in restrict writable %[[DST_V]]
// CHECK: %[[LEN:.*]] = arith.addi %[[POS]]
// CHECK: %[[SRC:.*]] = memref.subview %[[SLAB]][1, 0, 0, 0, 0] [1, 1, 2, %[[LEN]], 4]
// CHECK: %[[KEYS:.*]] = bufferization.to_tensor %[[SRC]] restrict
// CHECK: %[[KEYS4:.*]] = tensor.collapse_shape %[[KEYS]] {{\[\[}}0, 1], [2], [3], [4]] : tensor<1x1x2x?x4xf32> into tensor<1x2x?x4xf32>
// CHECK: %[[SRC_V:.*]] = memref.subview %[[SLAB]][1, 1, 0, 0, 0] [1, 1, 2, %[[LEN]], 4]
// CHECK: %[[VALUES:.*]] = bufferization.to_tensor %[[SRC_V]] restrict
// CHECK: %[[VALUES4:.*]] = tensor.collapse_shape %[[VALUES]] {{\[\[}}0, 1], [2], [3], [4]] : tensor<1x1x2x?x4xf32> into tensor<1x2x?x4xf32>
// CHECK: return %[[KEYS4]], %[[VALUES4]]
// CHECK-NOT: hasten.kv_cache
!cache = !hasten.kv_cache<layers = 3, kv_heads = 2, head_dim = 4, capacity = 64, f32>
func.func @contiguous(%k: tensor<1x2x1x4xf32>, %v: tensor<1x2x1x4xf32>,
                      %cache: !cache {hasten.onnx_name = "kv_cache"}, %pos: index)
    -> (tensor<1x2x?x4xf32>, tensor<1x2x?x4xf32>) {
  hasten.kv_cache.append %k, %v into %cache[layer 1] at %pos
      : tensor<1x2x1x4xf32>, tensor<1x2x1x4xf32> into !cache
  %c1 = arith.constant 1 : index
  %len = arith.addi %pos, %c1 : index
  %keys, %values = hasten.kv_cache.view %cache[layer 1] length %len : !cache
  return %keys, %values : tensor<1x2x?x4xf32>, tensor<1x2x?x4xf32>
}

// -----

// Paged: a block pool and a block table replace the cache; each new token
// goes to slot (p mod 16) of block table[p / 16], and the view gathers.
// CHECK-LABEL: func.func @paged(
// CHECK-SAME: %[[POOL:[^:]*]]: memref<?x3x2x2x16x4xf32> {hasten.onnx_elem_type = 1 : i32, hasten.onnx_name = "kv_block_pool", hasten.role = "kv_block_pool"},
// CHECK-SAME: %[[TABLE:[^:]*]]: memref<4xi32> {hasten.onnx_elem_type = 6 : i32, hasten.onnx_name = "kv_block_table", hasten.role = "kv_block_table"},
// CHECK-SAME: %[[POS:.*]]: index
// The new keys are scattered by one parallel loop over (token, head,
// element), each reading its block from the table (a GPU kernel; no host
// code reads the table); then the values.
// CHECK: %[[KSRC:.*]] = bufferization.to_buffer %{{.*}} read_only : tensor<1x2x?x4xf32> to memref<1x2x?x4xf32>
// CHECK: scf.parallel (%[[T:.*]], %[[AH:.*]], %[[AD:.*]]) = (%{{.*}}, %{{.*}}, %{{.*}}) to (%{{.*}}, %{{.*}}, %{{.*}})
// CHECK:   %[[P:.*]] = arith.addi %[[POS]], %[[T]]
// CHECK:   %[[LOGICAL:.*]] = arith.divui %[[P]], %[[BS:.*]] : index
// CHECK:   %[[SLOT:.*]] = arith.remui %[[P]], %[[BS]] : index
// CHECK:   %[[ENTRY:.*]] = memref.load %[[TABLE]][%[[LOGICAL]]]
// CHECK:   %[[BLOCK:.*]] = arith.index_cast %[[ENTRY]] : i32 to index
// CHECK:   %[[X:.*]] = memref.load %[[KSRC]][%{{.*}}, %[[AH]], %[[T]], %[[AD]]]
// CHECK:   memref.store %[[X]], %[[POOL]][%[[BLOCK]], %{{.*}}, %{{.*}}, %[[AH]], %[[SLOT]], %[[AD]]]
// CHECK: scf.parallel
// CHECK:   memref.store %{{.*}}, %[[POOL]]
// The views gather token t of head h from slot t mod 16 of block
// table[t / 16], layer 2, keys (0) then values (1).
// CHECK: %[[L2:.*]] = arith.constant 2 : index
// CHECK: %[[C0:.*]] = arith.constant 0 : index
// CHECK: %[[KEYS:.*]] = tensor.generate %[[POS]] {
// CHECK: ^bb0(%{{.*}}: index, %[[H:.*]]: index, %[[TK:.*]]: index, %[[D:.*]]: index):
// CHECK:   %[[KB:.*]] = arith.divui %[[TK]], %[[B16:.*]] : index
// CHECK:   %[[KS:.*]] = arith.remui %[[TK]], %[[B16]] : index
// CHECK:   %[[KE:.*]] = memref.load %[[TABLE]][%[[KB]]]
// CHECK:   %[[KBLOCK:.*]] = arith.index_cast %[[KE]] : i32 to index
// CHECK:   memref.load %[[POOL]][%[[KBLOCK]], %[[L2]], %[[C0]], %[[H]], %[[KS]], %[[D]]]
// CHECK: %[[VL2:.*]] = arith.constant 2 : index
// CHECK: %[[C1:.*]] = arith.constant 1 : index
// CHECK: %[[VALUES:.*]] = tensor.generate %[[POS]] {
// CHECK: ^bb0(%{{.*}}: index, %[[VH:.*]]: index, %[[TV:.*]]: index, %[[VD:.*]]: index):
// CHECK:   %[[VB:.*]] = arith.divui %[[TV]], %{{.*}} : index
// CHECK:   %[[VS:.*]] = arith.remui %[[TV]], %{{.*}} : index
// CHECK:   %[[VE:.*]] = memref.load %[[TABLE]][%[[VB]]]
// CHECK:   %[[VBLOCK:.*]] = arith.index_cast %[[VE]] : i32 to index
// CHECK:   memref.load %[[POOL]][%[[VBLOCK]], %[[VL2]], %[[C1]], %[[VH]], %[[VS]], %[[VD]]]
// CHECK: return %[[KEYS]], %[[VALUES]]
!paged = !hasten.kv_cache<layers = 3, kv_heads = 2, head_dim = 4, capacity = 64, f32, paged<block_size = 16>>
func.func @paged(%k: tensor<1x2x?x4xf32>, %v: tensor<1x2x?x4xf32>,
                 %cache: !paged {hasten.onnx_name = "kv_cache"}, %pos: index)
    -> (tensor<1x2x?x4xf32>, tensor<1x2x?x4xf32>) {
  hasten.kv_cache.append %k, %v into %cache[layer 2] at %pos
      : tensor<1x2x?x4xf32>, tensor<1x2x?x4xf32> into !paged
  %keys, %values = hasten.kv_cache.view %cache[layer 2] length %pos : !paged
  return %keys, %values : tensor<1x2x?x4xf32>, tensor<1x2x?x4xf32>
}

// -----

// Attention reading a paged view gets the pool and block table: the kernel
// walks the blocks, and nothing gathers them.
// CHECK-LABEL: func.func @paged_attention(
// CHECK-SAME: %[[POOL:[^:]*]]: memref<?x3x2x2x16x4xf32>
// CHECK-SAME: %[[TABLE:[^:]*]]: memref<4xi32>
// CHECK-NOT: tensor.generate
// CHECK: %[[LAYER:.*]] = arith.constant 2 : i64
// CHECK: %[[LEN:.*]] = arith.index_cast %{{.*}} : index to i64
// CHECK: %[[P:.*]] = memref.cast %[[POOL]]
// CHECK: %[[T:.*]] = memref.cast %[[TABLE]]
// CHECK: call @hasten_rt_paged_attention_f32(%{{.*}}, %[[P]], %[[T]], %[[LAYER]], %[[LEN]],
// CHECK-NOT: tensor.generate
// Without the runtime's kernel (GPU targets) the view gathers the blocks and
// the attention stays for the target's own lowering.
// GATHER-LABEL: func.func @paged_attention(
// GATHER-NOT: hasten_rt_paged_attention
// GATHER: %[[K:.*]] = tensor.generate
// GATHER: %[[V:.*]] = tensor.generate
// GATHER: hasten.attention %{{.*}}, %[[K]], %[[V]] heads(4, 2)
// keep-paged-reads: the view stays a read through the block table (keys,
// part 0; values, part 1) for the GPU attention kernel to read in place.
// KEEP-LABEL: func.func @paged_attention(
// KEEP-SAME: %[[POOL:[^:]*]]: memref<?x3x2x2x16x4xf32>
// KEEP-SAME: %[[TABLE:[^:]*]]: memref<4xi32>
// KEEP-NOT: tensor.generate
// KEEP: %[[K:.*]] = hasten.paged_kv.read %[[POOL]][layer 2, part 0] table %[[TABLE]] length %[[LEN:.*]] : memref<?x3x2x2x16x4xf32>, memref<4xi32> -> tensor<1x2x?x4xf32>
// KEEP: %[[V:.*]] = hasten.paged_kv.read %[[POOL]][layer 2, part 1] table %[[TABLE]] length %[[LEN]]
// KEEP: hasten.attention %{{.*}}, %[[K]], %[[V]] heads(4, 2)
// KEEP-NOT: tensor.generate
!paged = !hasten.kv_cache<layers = 3, kv_heads = 2, head_dim = 4, capacity = 64, f32, paged<block_size = 16>>
func.func @paged_attention(%q: tensor<1x4x1x4xf32>, %k: tensor<1x2x1x4xf32>, %v: tensor<1x2x1x4xf32>,
                           %cache: !paged {hasten.onnx_name = "kv_cache"}, %pos: index) -> tensor<1x4x1x4xf32> {
  hasten.kv_cache.append %k, %v into %cache[layer 2] at %pos
      : tensor<1x2x1x4xf32>, tensor<1x2x1x4xf32> into !paged
  %c1 = arith.constant 1 : index
  %len = arith.addi %pos, %c1 : index
  %keys, %values = hasten.kv_cache.view %cache[layer 2] length %len : !paged
  %o = hasten.attention %q, %keys, %values heads(4, 2) scale(0.5)
      : tensor<1x4x1x4xf32>, tensor<1x2x?x4xf32>, tensor<1x2x?x4xf32> -> tensor<1x4x1x4xf32>
  return %o : tensor<1x4x1x4xf32>
}

// -----

// A decode step becomes a call of its entry, the operands in the entry's
// order (by role), the tokens cast to its type; the cache it passes is the
// caller's cache buffer, which the callee writes in place.
// CHECK-LABEL: func.func @step(
// CHECK-SAME: %[[T:[^:]*]]: tensor<1x3xi64>, %[[C:[^:]*]]: memref<1x2x1x16x4xf32>
// CHECK-SAME: %[[P:[^:]*]]: tensor<i64>
// CHECK: %[[CAST:.*]] = tensor.cast %[[T]] : tensor<1x3xi64> to tensor<1x?xi64>
// CHECK: %[[L:.*]] = call @verify(%[[P]], %[[CAST]], %[[C]]) : (tensor<i64>, tensor<1x?xi64>, memref<1x2x1x16x4xf32>) -> tensor<1x?x8xf32>
// CHECK: %[[R:.*]] = tensor.cast %[[L]] : tensor<1x?x8xf32> to tensor<1x3x8xf32>
// CHECK: return %[[R]]
!cache = !hasten.kv_cache<layers = 1, kv_heads = 1, head_dim = 4, capacity = 16, f32>
func.func @verify(%p: tensor<i64> {hasten.role = "past_length"},
                  %ids: tensor<1x?xi64> {hasten.role = "token_ids"},
                  %c: !cache {hasten.role = "kv_cache"})
    -> (tensor<1x?x8xf32> {hasten.role = "logits"}) attributes {hasten.entry_kind = "verify"} {
  %c1 = arith.constant 1 : index
  %n = tensor.dim %ids, %c1 : tensor<1x?xi64>
  %e = tensor.empty(%n) : tensor<1x?x8xf32>
  return %e : tensor<1x?x8xf32>
}
func.func @step(%t: tensor<1x3xi64>, %c: !cache, %p: tensor<i64>) -> tensor<1x3x8xf32> {
  %l = hasten.decode_step @verify(%t) cache(%c) past(%p) : tensor<1x3xi64>, !cache, tensor<i64> -> tensor<1x3x8xf32>
  return %l : tensor<1x3x8xf32>
}

// -----

// Paged caches: each becomes its pool and its block table, the draft's
// (role draft_kv_cache, as spec_step has it) with draft names and the draft
// table role, and a decode step passes the caller's pool and table to its
// entry, which is lowered the same way whether it comes before or after.
// CHECK-LABEL: func.func @step(
// CHECK-SAME: %[[T:[^:]*]]: tensor<1x2xi64>,
// CHECK-SAME: %[[POOL:[^:]*]]: memref<?x1x2x1x4x4xf32> {hasten.onnx_elem_type = 1 : i32, hasten.onnx_name = "kv_block_pool", hasten.role = "kv_block_pool"},
// CHECK-SAME: %[[TABLE:[^:]*]]: memref<4xi32> {hasten.onnx_elem_type = 6 : i32, hasten.onnx_name = "kv_block_table", hasten.role = "kv_block_table"},
// CHECK-SAME: %[[P:[^:]*]]: tensor<i64>,
// CHECK-SAME: %[[DPOOL:[^:]*]]: memref<?x1x2x1x4x4xf32> {hasten.onnx_elem_type = 1 : i32, hasten.onnx_name = "draft_kv_block_pool", hasten.role = "draft_kv_cache"},
// CHECK-SAME: %[[DTABLE:[^:]*]]: memref<4xi32> {hasten.onnx_elem_type = 6 : i32, hasten.onnx_name = "draft_kv_block_table", hasten.role = "draft_kv_block_table"},
// CHECK-SAME: %[[DP:[^:]*]]: tensor<i64>
// CHECK: call @draft_decode(%{{.*}}, %[[DPOOL]], %[[DTABLE]], %[[DP]])
// CHECK: call @verify(%{{.*}}, %[[POOL]], %[[TABLE]], %[[P]])
// CHECK-LABEL: func.func @verify(
// CHECK-SAME: memref<?x1x2x1x4x4xf32> {{.*}}hasten.role = "kv_block_pool"}, %{{[^:]*}}: memref<4xi32> {{.*}}hasten.role = "kv_block_table"}
!paged = !hasten.kv_cache<layers = 1, kv_heads = 1, head_dim = 4, capacity = 16, f32, paged<block_size = 4>>
func.func @step(%t: tensor<1x2xi64>, %c: !paged {hasten.role = "kv_cache"}, %p: tensor<i64>,
                %d: !paged {hasten.role = "draft_kv_cache"}, %dp: tensor<i64>)
    -> tensor<1x2x8xf32> {
  %c0 = arith.constant 0 : index
  %first = tensor.extract_slice %t[0, 0] [1, 1] [1, 1] : tensor<1x2xi64> to tensor<1x1xi64>
  %dl = hasten.decode_step @draft_decode(%first) cache(%d) past(%dp) : tensor<1x1xi64>, !paged, tensor<i64> -> tensor<1x1x8xf32>
  %l = hasten.decode_step @verify(%t) cache(%c) past(%p) : tensor<1x2xi64>, !paged, tensor<i64> -> tensor<1x2x8xf32>
  return %l : tensor<1x2x8xf32>
}
func.func @verify(%ids: tensor<1x?xi64> {hasten.role = "token_ids"},
                  %c: !paged {hasten.role = "kv_cache"},
                  %p: tensor<i64> {hasten.role = "past_length"})
    -> (tensor<1x?x8xf32> {hasten.role = "logits"}) attributes {hasten.entry_kind = "verify"} {
  %c1 = arith.constant 1 : index
  %n = tensor.dim %ids, %c1 : tensor<1x?xi64>
  %e = tensor.empty(%n) : tensor<1x?x8xf32>
  return %e : tensor<1x?x8xf32>
}
func.func @draft_decode(%ids: tensor<1x1xi64> {hasten.role = "token_ids"},
                        %c: !paged {hasten.role = "kv_cache"},
                        %p: tensor<i64> {hasten.role = "past_length"})
    -> (tensor<1x1x8xf32> {hasten.role = "logits"})
    attributes {hasten.entry_kind = "decode", hasten.model = "draft"} {
  %e = tensor.empty() : tensor<1x1x8xf32>
  return %e : tensor<1x1x8xf32>
}
