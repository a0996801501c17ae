// RUN: hasten-opt %s -split-input-file -verify-diagnostics

!cache = !hasten.kv_cache<layers = 2, kv_heads = 4, head_dim = 64, capacity = 128, f32>

func.func @append_layer(%c: !cache, %k: tensor<1x4x1x64xf32>, %p: index) {
  // expected-error @+1 {{'hasten.kv_cache.append' op layer 2 is out of range for a cache of 2 layers}}
  hasten.kv_cache.append %k, %k into %c[layer 2] at %p : tensor<1x4x1x64xf32>, tensor<1x4x1x64xf32> into !cache
  return
}

// -----

!cache = !hasten.kv_cache<layers = 2, kv_heads = 4, head_dim = 64, capacity = 128, f32>

func.func @append_key_value(%c: !cache, %k: tensor<1x4x1x64xf32>, %v: tensor<1x4x2x64xf32>, %p: index) {
  // expected-error @+1 {{'hasten.kv_cache.append' op key type 'tensor<1x4x1x64xf32>' and value type 'tensor<1x4x2x64xf32>' must match}}
  hasten.kv_cache.append %k, %v into %c[layer 0] at %p : tensor<1x4x1x64xf32>, tensor<1x4x2x64xf32> into !cache
  return
}

// -----

!cache = !hasten.kv_cache<layers = 2, kv_heads = 4, head_dim = 64, capacity = 128, f16>

func.func @append_element(%c: !cache, %k: tensor<1x4x1x64xf32>, %p: index) {
  // expected-error @+1 {{'hasten.kv_cache.append' op key element type 'f32' does not match the cache element type 'f16'}}
  hasten.kv_cache.append %k, %k into %c[layer 0] at %p : tensor<1x4x1x64xf32>, tensor<1x4x1x64xf32> into !cache
  return
}

// -----

!cache = !hasten.kv_cache<layers = 2, kv_heads = 4, head_dim = 64, capacity = 128, f32>

func.func @append_batch(%c: !cache, %k: tensor<2x4x1x64xf32>, %p: index) {
  // expected-error @+1 {{'hasten.kv_cache.append' op keys must have batch size 1 (a cache holds one sequence), got 2}}
  hasten.kv_cache.append %k, %k into %c[layer 0] at %p : tensor<2x4x1x64xf32>, tensor<2x4x1x64xf32> into !cache
  return
}

// -----

!cache = !hasten.kv_cache<layers = 2, kv_heads = 4, head_dim = 64, capacity = 128, f32>

func.func @append_heads(%c: !cache, %k: tensor<1x8x1x64xf32>, %p: index) {
  // expected-error @+1 {{'hasten.kv_cache.append' op keys have 8 heads but the cache has 4}}
  hasten.kv_cache.append %k, %k into %c[layer 0] at %p : tensor<1x8x1x64xf32>, tensor<1x8x1x64xf32> into !cache
  return
}

// -----

!cache = !hasten.kv_cache<layers = 2, kv_heads = 4, head_dim = 64, capacity = 128, f32>

func.func @append_head_dim(%c: !cache, %k: tensor<1x4x1x32xf32>, %p: index) {
  // expected-error @+1 {{'hasten.kv_cache.append' op keys have head_dim 32 but the cache has 64}}
  hasten.kv_cache.append %k, %k into %c[layer 0] at %p : tensor<1x4x1x32xf32>, tensor<1x4x1x32xf32> into !cache
  return
}

// -----

!cache = !hasten.kv_cache<layers = 2, kv_heads = 4, head_dim = 64, capacity = 128, f32>

func.func @append_too_many(%c: !cache, %k: tensor<1x4x129x64xf32>, %p: index) {
  // expected-error @+1 {{'hasten.kv_cache.append' op appending 129 tokens exceeds the cache capacity of 128}}
  hasten.kv_cache.append %k, %k into %c[layer 0] at %p : tensor<1x4x129x64xf32>, tensor<1x4x129x64xf32> into !cache
  return
}

// -----

!cache = !hasten.kv_cache<layers = 2, kv_heads = 4, head_dim = 64, capacity = 128, f32>

func.func @append_negative(%c: !cache, %k: tensor<1x4x1x64xf32>) {
  %p = arith.constant -1 : index
  // expected-error @+1 {{'hasten.kv_cache.append' op position must be non-negative, got -1}}
  hasten.kv_cache.append %k, %k into %c[layer 0] at %p : tensor<1x4x1x64xf32>, tensor<1x4x1x64xf32> into !cache
  return
}

// -----

!cache = !hasten.kv_cache<layers = 2, kv_heads = 4, head_dim = 64, capacity = 128, f32>

func.func @append_overflow(%c: !cache, %k: tensor<1x4x16x64xf32>) {
  %p = arith.constant 120 : index
  // expected-error @+1 {{'hasten.kv_cache.append' op appending 16 tokens at position 120 exceeds the cache capacity of 128}}
  hasten.kv_cache.append %k, %k into %c[layer 0] at %p : tensor<1x4x16x64xf32>, tensor<1x4x16x64xf32> into !cache
  return
}

// -----

!cache = !hasten.kv_cache<layers = 2, kv_heads = 4, head_dim = 64, capacity = 128, f32>

func.func @view_layer(%c: !cache, %n: index) {
  // expected-error @+1 {{'hasten.kv_cache.view' op layer -1 is out of range for a cache of 2 layers}}
  %k, %v = hasten.kv_cache.view %c[layer -1] length %n : !cache
  return
}

// -----

!cache = !hasten.kv_cache<layers = 2, kv_heads = 4, head_dim = 64, capacity = 128, f32>

func.func @view_length(%c: !cache) {
  %n = arith.constant 129 : index
  // expected-error @+1 {{'hasten.kv_cache.view' op length 129 is outside the cache capacity of 128}}
  %k, %v = hasten.kv_cache.view %c[layer 0] length %n : !cache
  return
}

// -----

// A decode step calls a decoder entry, nothing else.
!cache = !hasten.kv_cache<layers = 1, kv_heads = 1, head_dim = 4, capacity = 16, f32>
func.func @helper(%ids: tensor<1x1xi64>) -> tensor<1x1x8xf32> {
  %e = tensor.empty() : tensor<1x1x8xf32>
  return %e : tensor<1x1x8xf32>
}
func.func @step_not_an_entry(%t: tensor<1x1xi64>, %c: !cache, %p: tensor<i64>) -> tensor<1x1x8xf32> {
  // expected-error @+1 {{'hasten.decode_step' op 'helper' is not a prefill, decode or verify entry (hasten.entry_kind)}}
  %l = hasten.decode_step @helper(%t) cache(%c) past(%p) : tensor<1x1xi64>, !cache, tensor<i64> -> tensor<1x1x8xf32>
  return %l : tensor<1x1x8xf32>
}

// -----

// The cache must be the one the entry was planned for.
!cache = !hasten.kv_cache<layers = 1, kv_heads = 1, head_dim = 4, capacity = 16, f32>
!other = !hasten.kv_cache<layers = 2, kv_heads = 1, head_dim = 4, capacity = 16, f32>
func.func @decode(%ids: tensor<1x1xi64> {hasten.role = "token_ids"}, %c: !cache {hasten.role = "kv_cache"},
                  %p: tensor<i64> {hasten.role = "past_length"})
    -> (tensor<1x1x8xf32> {hasten.role = "logits"}) attributes {hasten.entry_kind = "decode"} {
  %e = tensor.empty() : tensor<1x1x8xf32>
  return %e : tensor<1x1x8xf32>
}
func.func @step_wrong_cache(%t: tensor<1x1xi64>, %c: !other, %p: tensor<i64>) -> tensor<1x1x8xf32> {
  // expected-error @+1 {{'hasten.decode_step' op the cache '!hasten.kv_cache<layers = 2, kv_heads = 1, head_dim = 4, capacity = 16, f32>' is not 'decode''s '!hasten.kv_cache<layers = 1, kv_heads = 1, head_dim = 4, capacity = 16, f32>'}}
  %l = hasten.decode_step @decode(%t) cache(%c) past(%p) : tensor<1x1xi64>, !other, tensor<i64> -> tensor<1x1x8xf32>
  return %l : tensor<1x1x8xf32>
}

// -----

// Two tokens do not fit a decode entry's one.
!cache = !hasten.kv_cache<layers = 1, kv_heads = 1, head_dim = 4, capacity = 16, f32>
func.func @decode(%ids: tensor<1x1xi64> {hasten.role = "token_ids"}, %c: !cache {hasten.role = "kv_cache"},
                  %p: tensor<i64> {hasten.role = "past_length"})
    -> (tensor<1x1x8xf32> {hasten.role = "logits"}) attributes {hasten.entry_kind = "decode"} {
  %e = tensor.empty() : tensor<1x1x8xf32>
  return %e : tensor<1x1x8xf32>
}
func.func @step_two_tokens(%t: tensor<1x2xi64>, %c: !cache, %p: tensor<i64>) -> tensor<1x2x8xf32> {
  // expected-error @+1 {{'hasten.decode_step' op tokens 'tensor<1x2xi64>' do not fit 'decode''s token ids 'tensor<1x1xi64>'}}
  %l = hasten.decode_step @decode(%t) cache(%c) past(%p) : tensor<1x2xi64>, !cache, tensor<i64> -> tensor<1x2x8xf32>
  return %l : tensor<1x2x8xf32>
}

// -----

func.func @paged_read_part(%pool: memref<?x2x2x4x16x64xf32>, %t: memref<8xi32>, %n: index) {
  // expected-error @+1 {{'hasten.paged_kv.read' op part 2 is neither keys (0) nor values (1)}}
  %k = hasten.paged_kv.read %pool[layer 0, part 2] table %t length %n : memref<?x2x2x4x16x64xf32>, memref<8xi32> -> tensor<1x4x?x64xf32>
  return
}

// -----

func.func @paged_read_layer(%pool: memref<?x2x2x4x16x64xf32>, %t: memref<8xi32>, %n: index) {
  // expected-error @+1 {{'hasten.paged_kv.read' op layer 2 is outside the pool's 2 layers}}
  %k = hasten.paged_kv.read %pool[layer 2, part 0] table %t length %n : memref<?x2x2x4x16x64xf32>, memref<8xi32> -> tensor<1x4x?x64xf32>
  return
}

// -----

func.func @paged_read_shape(%pool: memref<?x2x2x4x16x64xf32>, %t: memref<8xi32>, %n: index) {
  // expected-error @+1 {{'hasten.paged_kv.read' op result 'tensor<1x2x?x64xf32>' is not [1, kv_heads, length, head_dim] of the pool 'memref<?x2x2x4x16x64xf32>'}}
  %k = hasten.paged_kv.read %pool[layer 0, part 0] table %t length %n : memref<?x2x2x4x16x64xf32>, memref<8xi32> -> tensor<1x2x?x64xf32>
  return
}

// -----

func.func @paged_read_type(%pool: memref<?x2x2x4x16x64xf32>, %t: memref<8xi32>, %n: index) {
  // expected-error @+1 {{'hasten.paged_kv.read' op result element type 'bf16' is not the pool's 'f32'}}
  %k = hasten.paged_kv.read %pool[layer 0, part 0] table %t length %n : memref<?x2x2x4x16x64xf32>, memref<8xi32> -> tensor<1x4x?x64xbf16>
  return
}
