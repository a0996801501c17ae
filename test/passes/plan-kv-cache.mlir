// RUN: hasten-opt %s -split-input-file -hasten-plan-kv-cache=capacity=64 | FileCheck %s
// RUN: hasten-opt %s -split-input-file -hasten-plan-kv-cache="capacity=64 block-size=16" | FileCheck %s --check-prefix=PAGED
// RUN: hasten-opt %s -split-input-file -hasten-plan-kv-cache="capacity=64 draft-capacity=16" | FileCheck %s --check-prefix=DRAFT

// One layer of a decode entry: the past keys/values grow by Concat and are
// returned as presents. After planning, the pasts and presents are gone, a
// cache and the past length are arguments, the new tokens are appended in
// place, and the attention reads a view of the cache.
// CHECK-LABEL: func.func @decode(
// CHECK-SAME: %[[K:[^:]*]]: tensor<1x2x1x4xf32>, %[[V:[^:]*]]: tensor<1x2x1x4xf32>,
// CHECK-SAME: %[[CACHE:.*]]: !hasten.kv_cache<layers = 1, kv_heads = 2, head_dim = 4, capacity = 64, f32> {{{.*}}hasten.onnx_name = "kv_cache", hasten.role = "kv_cache"},
// CHECK-SAME: %[[PAST:.*]]: tensor<i64> {{{.*}}hasten.onnx_name = "past_length", hasten.role = "past_length"})
// CHECK-SAME: -> (tensor<1x2x1x4xf32> {hasten.onnx_name = "logits"})
// CHECK-NOT: tensor.concat
// CHECK: %[[P64:.*]] = tensor.extract %[[PAST]][]
// CHECK: %[[P:.*]] = arith.index_cast %[[P64]] : i64 to index
// CHECK: hasten.kv_cache.append %[[K]], %[[V]] into %[[CACHE]][layer 0] at %[[P]]
// CHECK: %[[N:.*]] = tensor.dim %[[K]], %{{.*}}
// CHECK: %[[LEN:.*]] = arith.addi %[[P]], %[[N]]
// CHECK: %[[KEYS:.*]], %[[VALUES:.*]] = hasten.kv_cache.view %[[CACHE]][layer 0] length %[[LEN]]
// CHECK: %[[O:.*]] = hasten.attention %{{.*}}, %[[KEYS]], %[[VALUES]]
// CHECK-NOT: tensor.concat
// CHECK: return %[[O]] : tensor<1x2x1x4xf32>
// PAGED: !hasten.kv_cache<layers = 1, kv_heads = 2, head_dim = 4, capacity = 64, f32, paged<block_size = 16>>
func.func @decode(%pk: tensor<1x2x?x4xf32> {hasten.onnx_name = "past_key_values.0.key"},
                  %pv: tensor<1x2x?x4xf32> {hasten.onnx_name = "past_key_values.0.value"},
                  %k: tensor<1x2x1x4xf32>, %v: tensor<1x2x1x4xf32>)
    -> (tensor<1x2x1x4xf32> {hasten.onnx_name = "logits"},
        tensor<1x2x?x4xf32> {hasten.onnx_name = "present.0.key"},
        tensor<1x2x?x4xf32> {hasten.onnx_name = "present.0.value"})
    attributes {hasten.entry_kind = "decode"} {
  %keys = tensor.concat dim(2) %pk, %k : (tensor<1x2x?x4xf32>, tensor<1x2x1x4xf32>) -> tensor<1x2x?x4xf32>
  %values = tensor.concat dim(2) %pv, %v : (tensor<1x2x?x4xf32>, tensor<1x2x1x4xf32>) -> tensor<1x2x?x4xf32>
  %o = hasten.attention %k, %keys, %values heads(2, 2)
      : tensor<1x2x1x4xf32>, tensor<1x2x?x4xf32>, tensor<1x2x?x4xf32> -> tensor<1x2x1x4xf32>
  return %o, %keys, %values : tensor<1x2x1x4xf32>, tensor<1x2x?x4xf32>, tensor<1x2x?x4xf32>
}

// -----

// Two layers share one cache; sizes read from a past become the past length
// (sequence axis) or constants. Functions that are not decoder entries keep
// their ONNX signature.
// CHECK-LABEL: func.func @main(
// CHECK: tensor.concat
// CHECK-LABEL: func.func @prefill(
// CHECK-SAME: !hasten.kv_cache<layers = 2, kv_heads = 2, head_dim = 4, capacity = 64, f32>
// CHECK: %[[P:.*]] = arith.index_cast
// CHECK-DAG: hasten.kv_cache.append {{.*}}[layer 0] at %[[P]]
// CHECK-DAG: hasten.kv_cache.append {{.*}}[layer 1] at %[[P]]
// CHECK: %[[HEAD_DIM:.*]] = arith.constant 4 : index
// CHECK-NEXT: return %[[P]], %[[HEAD_DIM]] : index, index
func.func @main(%pk: tensor<1x2x?x4xf32> {hasten.onnx_name = "past_key_values.0.key"},
                %k: tensor<1x2x?x4xf32>) -> tensor<1x2x?x4xf32> {
  %keys = tensor.concat dim(2) %pk, %k : (tensor<1x2x?x4xf32>, tensor<1x2x?x4xf32>) -> tensor<1x2x?x4xf32>
  return %keys : tensor<1x2x?x4xf32>
}
func.func @prefill(%pk0: tensor<1x2x?x4xf32> {hasten.onnx_name = "past_key_values.0.key"},
                   %pv0: tensor<1x2x?x4xf32> {hasten.onnx_name = "past_key_values.0.value"},
                   %pk1: tensor<1x2x?x4xf32> {hasten.onnx_name = "past_key_values.1.key"},
                   %pv1: tensor<1x2x?x4xf32> {hasten.onnx_name = "past_key_values.1.value"},
                   %k: tensor<1x2x?x4xf32>, %v: tensor<1x2x?x4xf32>) -> (index, index)
    attributes {hasten.entry_kind = "prefill"} {
  %c2 = arith.constant 2 : index
  %c3 = arith.constant 3 : index
  %past = tensor.dim %pk0, %c2 : tensor<1x2x?x4xf32>
  %head_dim = tensor.dim %pv1, %c3 : tensor<1x2x?x4xf32>
  %k0 = tensor.concat dim(2) %pk0, %k : (tensor<1x2x?x4xf32>, tensor<1x2x?x4xf32>) -> tensor<1x2x?x4xf32>
  %v0 = tensor.concat dim(2) %pv0, %v : (tensor<1x2x?x4xf32>, tensor<1x2x?x4xf32>) -> tensor<1x2x?x4xf32>
  %k1 = tensor.concat dim(2) %pk1, %k : (tensor<1x2x?x4xf32>, tensor<1x2x?x4xf32>) -> tensor<1x2x?x4xf32>
  %v1 = tensor.concat dim(2) %pv1, %v : (tensor<1x2x?x4xf32>, tensor<1x2x?x4xf32>) -> tensor<1x2x?x4xf32>
  return %past, %head_dim : index, index
}

// -----

// Two layers with their own new keys/values and attention: each append takes
// its own layer's tensors, and each attention reads the view of its own
// layer, keys and values in that order.
// CHECK-LABEL: func.func @two_layers(
// CHECK-SAME: %[[Q:[^:]*]]: tensor<1x2x1x4xf32>, %[[K0:[^:]*]]: tensor<1x2x1x4xf32>, %[[V0:[^:]*]]: tensor<1x2x1x4xf32>, %[[K1:[^:]*]]: tensor<1x2x1x4xf32>, %[[V1:[^:]*]]: tensor<1x2x1x4xf32>,
// CHECK-SAME: %[[CACHE:[^:]*]]: !hasten.kv_cache<layers = 2, kv_heads = 2, head_dim = 4, capacity = 64, f32>
// CHECK-DAG: hasten.kv_cache.append %[[K0]], %[[V0]] into %[[CACHE]][layer 0] at
// CHECK-DAG: hasten.kv_cache.append %[[K1]], %[[V1]] into %[[CACHE]][layer 1] at
// CHECK-DAG: %[[KEYS0:.*]], %[[VALUES0:.*]] = hasten.kv_cache.view %[[CACHE]][layer 0] length
// CHECK-DAG: %[[KEYS1:.*]], %[[VALUES1:.*]] = hasten.kv_cache.view %[[CACHE]][layer 1] length
// CHECK-DAG: %[[O0:.*]] = hasten.attention %[[Q]], %[[KEYS0]], %[[VALUES0]] heads(2, 2)
// CHECK-DAG: %[[O1:.*]] = hasten.attention %[[O0]], %[[KEYS1]], %[[VALUES1]] heads(2, 2)
// CHECK: return %[[O1]] : tensor<1x2x1x4xf32>
func.func @two_layers(%pk0: tensor<1x2x?x4xf32> {hasten.onnx_name = "past_key_values.0.key"},
                      %pv0: tensor<1x2x?x4xf32> {hasten.onnx_name = "past_key_values.0.value"},
                      %pk1: tensor<1x2x?x4xf32> {hasten.onnx_name = "past_key_values.1.key"},
                      %pv1: tensor<1x2x?x4xf32> {hasten.onnx_name = "past_key_values.1.value"},
                      %q: tensor<1x2x1x4xf32>,
                      %k0: tensor<1x2x1x4xf32>, %v0: tensor<1x2x1x4xf32>,
                      %k1: tensor<1x2x1x4xf32>, %v1: tensor<1x2x1x4xf32>)
    -> (tensor<1x2x1x4xf32> {hasten.onnx_name = "logits"},
        tensor<1x2x?x4xf32> {hasten.onnx_name = "present.0.key"},
        tensor<1x2x?x4xf32> {hasten.onnx_name = "present.0.value"},
        tensor<1x2x?x4xf32> {hasten.onnx_name = "present.1.key"},
        tensor<1x2x?x4xf32> {hasten.onnx_name = "present.1.value"})
    attributes {hasten.entry_kind = "decode"} {
  %keys0 = tensor.concat dim(2) %pk0, %k0 : (tensor<1x2x?x4xf32>, tensor<1x2x1x4xf32>) -> tensor<1x2x?x4xf32>
  %values0 = tensor.concat dim(2) %pv0, %v0 : (tensor<1x2x?x4xf32>, tensor<1x2x1x4xf32>) -> tensor<1x2x?x4xf32>
  %o0 = hasten.attention %q, %keys0, %values0 heads(2, 2)
      : tensor<1x2x1x4xf32>, tensor<1x2x?x4xf32>, tensor<1x2x?x4xf32> -> tensor<1x2x1x4xf32>
  %keys1 = tensor.concat dim(2) %pk1, %k1 : (tensor<1x2x?x4xf32>, tensor<1x2x1x4xf32>) -> tensor<1x2x?x4xf32>
  %values1 = tensor.concat dim(2) %pv1, %v1 : (tensor<1x2x?x4xf32>, tensor<1x2x1x4xf32>) -> tensor<1x2x?x4xf32>
  %o1 = hasten.attention %o0, %keys1, %values1 heads(2, 2)
      : tensor<1x2x1x4xf32>, tensor<1x2x?x4xf32>, tensor<1x2x?x4xf32> -> tensor<1x2x1x4xf32>
  return %o1, %keys0, %values0, %keys1, %values1
      : tensor<1x2x1x4xf32>, tensor<1x2x?x4xf32>, tensor<1x2x?x4xf32>, tensor<1x2x?x4xf32>, tensor<1x2x?x4xf32>
}

// -----

// A pair: the draft's entries (model namespace "draft") get a cache of
// draft-capacity tokens (the positions a draft knows may be fewer than its
// target's); without it, the target's capacity. The target's stays.
// CHECK-LABEL: func.func @decode(
// CHECK-SAME: !hasten.kv_cache<layers = 1, kv_heads = 2, head_dim = 4, capacity = 64, f32>
// CHECK-LABEL: func.func @draft_decode(
// CHECK-SAME: !hasten.kv_cache<layers = 1, kv_heads = 2, head_dim = 4, capacity = 64, f32>
// DRAFT-LABEL: func.func @decode(
// DRAFT-SAME: !hasten.kv_cache<layers = 1, kv_heads = 2, head_dim = 4, capacity = 64, f32>
// DRAFT-LABEL: func.func @draft_decode(
// DRAFT-SAME: !hasten.kv_cache<layers = 1, kv_heads = 2, head_dim = 4, capacity = 16, f32>
func.func @decode(%pk: tensor<1x2x?x4xf32> {hasten.onnx_name = "past_key_values.0.key"},
                  %pv: tensor<1x2x?x4xf32> {hasten.onnx_name = "past_key_values.0.value"},
                  %k: tensor<1x2x1x4xf32>, %v: tensor<1x2x1x4xf32>)
    -> (tensor<1x2x1x4xf32> {hasten.onnx_name = "logits"},
        tensor<1x2x?x4xf32> {hasten.onnx_name = "present.0.key"},
        tensor<1x2x?x4xf32> {hasten.onnx_name = "present.0.value"})
    attributes {hasten.entry_kind = "decode"} {
  %keys = tensor.concat dim(2) %pk, %k : (tensor<1x2x?x4xf32>, tensor<1x2x1x4xf32>) -> tensor<1x2x?x4xf32>
  %values = tensor.concat dim(2) %pv, %v : (tensor<1x2x?x4xf32>, tensor<1x2x1x4xf32>) -> tensor<1x2x?x4xf32>
  %o = hasten.attention %k, %keys, %values heads(2, 2)
      : tensor<1x2x1x4xf32>, tensor<1x2x?x4xf32>, tensor<1x2x?x4xf32> -> tensor<1x2x1x4xf32>
  return %o, %keys, %values : tensor<1x2x1x4xf32>, tensor<1x2x?x4xf32>, tensor<1x2x?x4xf32>
}
func.func @draft_decode(%pk: tensor<1x2x?x4xf32> {hasten.onnx_name = "past_key_values.0.key"},
                        %pv: tensor<1x2x?x4xf32> {hasten.onnx_name = "past_key_values.0.value"},
                        %k: tensor<1x2x1x4xf32>, %v: tensor<1x2x1x4xf32>)
    -> (tensor<1x2x1x4xf32> {hasten.onnx_name = "logits"},
        tensor<1x2x?x4xf32> {hasten.onnx_name = "present.0.key"},
        tensor<1x2x?x4xf32> {hasten.onnx_name = "present.0.value"})
    attributes {hasten.entry_kind = "decode", hasten.model = "draft"} {
  %keys = tensor.concat dim(2) %pk, %k : (tensor<1x2x?x4xf32>, tensor<1x2x1x4xf32>) -> tensor<1x2x?x4xf32>
  %values = tensor.concat dim(2) %pv, %v : (tensor<1x2x?x4xf32>, tensor<1x2x1x4xf32>) -> tensor<1x2x?x4xf32>
  %o = hasten.attention %k, %keys, %values heads(2, 2)
      : tensor<1x2x1x4xf32>, tensor<1x2x?x4xf32>, tensor<1x2x?x4xf32> -> tensor<1x2x1x4xf32>
  return %o, %keys, %values : tensor<1x2x1x4xf32>, tensor<1x2x?x4xf32>, tensor<1x2x?x4xf32>
}
