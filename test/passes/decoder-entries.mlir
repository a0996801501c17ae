// RUN: hasten-opt %s -split-input-file -hasten-decoder-entries | FileCheck %s
// RUN: hasten-opt %s -split-input-file -hasten-decoder-entries=verify | FileCheck %s --check-prefix=VERIFY

// A one-layer decoder with the Optimum signature, written for any batch: the
// hidden state is token id + position + the number of attended tokens, the
// new keys and values are the hidden state split into 2 heads of 4, and the
// LM head is a matmul over the flattened [batch * seq, 8] hidden state.

// The graph's own function is kept as it is.
// CHECK-LABEL: func.func @main(
// CHECK-SAME: hasten.onnx_name = "attention_mask"
// CHECK-SAME: hasten.onnx_name = "position_ids"
// CHECK-NOT: hasten.entry_kind
// CHECK: linalg.matmul ins(%{{.*}}, %{{.*}} : tensor<?x8xf32>, tensor<8x8xf32>)

// prefill: batch 1, any number of tokens; no mask or position arguments.
// CHECK-LABEL: func.func @prefill(
// CHECK-SAME: %[[IDS:[^:]*]]: tensor<1x?xi64> {hasten.onnx_name = "input_ids", hasten.role = "token_ids"},
// CHECK-SAME: %[[PK:[^:]*]]: tensor<1x2x?x4xf32> {hasten.onnx_name = "past_key_values.0.key"},
// CHECK-SAME: %[[PV:[^:]*]]: tensor<1x2x?x4xf32> {hasten.onnx_name = "past_key_values.0.value"})
// CHECK-SAME: -> (tensor<1x1x8xf32> {hasten.onnx_name = "logits", hasten.role = "logits"},
// CHECK-SAME: tensor<1x2x?x4xf32> {hasten.onnx_name = "present.0.key"},
// CHECK-SAME: tensor<1x2x?x4xf32> {hasten.onnx_name = "present.0.value"})
// CHECK-SAME: attributes {hasten.entry_kind = "prefill"}
// Positions continue after the past: past (dim 2 of the first past key) plus
// the token index.
// CHECK-DAG: %[[PAST:.*]] = tensor.dim %[[PK]], %c2
// CHECK-DAG: %[[SEQ:.*]] = tensor.dim %[[IDS]], %c1
// CHECK: %[[POS_INIT:.*]] = tensor.empty(%[[SEQ]]) : tensor<1x?xi64>
// CHECK: linalg.generic {{.*}} outs(%[[POS_INIT]] : tensor<1x?xi64>)
// CHECK: %[[I:.*]] = linalg.index 1
// CHECK: %[[POS:.*]] = arith.addi %[[PAST]], %[[I]]
// CHECK: arith.index_cast %[[POS]] : index to i64
// The mask attends to every past and new token.
// CHECK: %[[TOTAL:.*]] = arith.addi %[[PAST]], %[[SEQ]]
// CHECK: %[[MASK_INIT:.*]] = tensor.empty(%[[TOTAL]]) : tensor<1x?xi64>
// CHECK: linalg.fill ins(%c1_i64 : i64) outs(%[[MASK_INIT]] : tensor<1x?xi64>)
// The keys keep the static batch and heads through the concat.
// CHECK: tensor.concat dim(2) %[[PK]], %{{.*}} : (tensor<1x2x?x4xf32>, tensor<1x2x?x4xf32>) -> tensor<1x2x?x4xf32>
// The LM head multiplies the last row only.
// CHECK: %[[LAST:.*]] = arith.subi %[[SEQ]], %c1
// CHECK: tensor.extract_slice %{{.*}}[0, %[[LAST]], 0] [1, 1, 8] [1, 1, 1] : tensor<1x?x8xf32> to tensor<1x1x8xf32>
// CHECK: linalg.matmul ins(%{{.*}}, %{{.*}} : tensor<1x8xf32>, tensor<8x8xf32>) outs(%{{.*}} : tensor<1x8xf32>)
// CHECK-NOT: tensor.cast
// CHECK: return

// decode: one token; everything but the past length is static.
// CHECK-LABEL: func.func @decode(
// CHECK-SAME: tensor<1x1xi64> {hasten.onnx_name = "input_ids", hasten.role = "token_ids"},
// CHECK-SAME: attributes {hasten.entry_kind = "decode"}
// CHECK-NOT: tensor<?x
// CHECK-NOT: tensor<1x?x8xf32>
// CHECK: tensor.concat dim(2) %{{.*}}, %{{.*}} : (tensor<1x2x?x4xf32>, tensor<1x2x1x4xf32>) -> tensor<1x2x?x4xf32>
// CHECK: linalg.matmul ins(%{{.*}}, %{{.*}} : tensor<1x8xf32>, tensor<8x8xf32>) outs(%{{.*}} : tensor<1x8xf32>)
// CHECK: return %{{.*}} : tensor<1x1x8xf32>, tensor<1x2x?x4xf32>, tensor<1x2x?x4xf32>
// Without the option there is no verify entry.
// CHECK-NOT: hasten.entry_kind = "verify"

// verify: any number of tokens, like prefill, but the LM head runs on every
// row and the logits of every position are returned.
// VERIFY-LABEL: func.func @decode(
// VERIFY-LABEL: func.func @verify(
// VERIFY-SAME: tensor<1x?xi64> {hasten.onnx_name = "input_ids", hasten.role = "token_ids"},
// VERIFY-SAME: -> (tensor<1x?x8xf32> {hasten.onnx_name = "logits", hasten.role = "logits"},
// VERIFY-SAME: attributes {hasten.entry_kind = "verify"}
// VERIFY-NOT: tensor.extract_slice
// VERIFY: linalg.matmul ins(%{{.*}}, %{{.*}} : tensor<?x8xf32>, tensor<8x8xf32>)
// VERIFY-NOT: tensor.extract_slice
// VERIFY: return %{{.*}} : tensor<1x?x8xf32>, tensor<1x2x?x4xf32>, tensor<1x2x?x4xf32>
#pair = affine_map<(b, s, h) -> (b, s)>
#row = affine_map<(b, s, h) -> (b)>
#all3 = affine_map<(b, s, h) -> (b, s, h)>
func.func @main(%ids: tensor<?x?xi64> {hasten.onnx_name = "input_ids"},
                %mask: tensor<?x?xi64> {hasten.onnx_name = "attention_mask"},
                %pos: tensor<?x?xi64> {hasten.onnx_name = "position_ids"},
                %pk: tensor<?x2x?x4xf32> {hasten.onnx_name = "past_key_values.0.key"},
                %pv: tensor<?x2x?x4xf32> {hasten.onnx_name = "past_key_values.0.value"})
    -> (tensor<?x?x8xf32> {hasten.onnx_name = "logits"},
        tensor<?x2x?x4xf32> {hasten.onnx_name = "present.0.key"},
        tensor<?x2x?x4xf32> {hasten.onnx_name = "present.0.value"}) {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %zero = arith.constant 0.0 : f32
  %w = arith.constant dense<0.5> : tensor<8x8xf32>
  %b = tensor.dim %ids, %c0 : tensor<?x?xi64>
  %s = tensor.dim %ids, %c1 : tensor<?x?xi64>
  %t = tensor.dim %mask, %c1 : tensor<?x?xi64>
  %count_init = tensor.empty(%b) : tensor<?xf32>
  %count_zero = linalg.fill ins(%zero : f32) outs(%count_init : tensor<?xf32>) -> tensor<?xf32>
  %count = linalg.generic {indexing_maps = [affine_map<(b, t) -> (b, t)>, affine_map<(b, t) -> (b)>],
                           iterator_types = ["parallel", "reduction"]}
      ins(%mask : tensor<?x?xi64>) outs(%count_zero : tensor<?xf32>) {
  ^bb0(%m: i64, %acc: f32):
    %mf = arith.sitofp %m : i64 to f32
    %sum = arith.addf %acc, %mf : f32
    linalg.yield %sum : f32
  } -> tensor<?xf32>
  %hidden_init = tensor.empty(%b, %s) : tensor<?x?x8xf32>
  %hidden = linalg.generic {indexing_maps = [#pair, #pair, #row, #all3],
                            iterator_types = ["parallel", "parallel", "parallel"]}
      ins(%ids, %pos, %count : tensor<?x?xi64>, tensor<?x?xi64>, tensor<?xf32>)
      outs(%hidden_init : tensor<?x?x8xf32>) {
  ^bb0(%id: i64, %p: i64, %n: f32, %out: f32):
    %idf = arith.sitofp %id : i64 to f32
    %pf = arith.sitofp %p : i64 to f32
    %x = arith.addf %idf, %pf : f32
    %y = arith.addf %x, %n : f32
    linalg.yield %y : f32
  } -> tensor<?x?x8xf32>
  %split = tensor.expand_shape %hidden [[0], [1], [2, 3]] output_shape [%b, %s, 2, 4]
      : tensor<?x?x8xf32> into tensor<?x?x2x4xf32>
  %heads_init = tensor.empty(%b, %s) : tensor<?x2x?x4xf32>
  %heads = linalg.transpose ins(%split : tensor<?x?x2x4xf32>) outs(%heads_init : tensor<?x2x?x4xf32>)
      permutation = [0, 2, 1, 3]
  %keys = tensor.concat dim(2) %pk, %heads : (tensor<?x2x?x4xf32>, tensor<?x2x?x4xf32>) -> tensor<?x2x?x4xf32>
  %values = tensor.concat dim(2) %pv, %heads : (tensor<?x2x?x4xf32>, tensor<?x2x?x4xf32>) -> tensor<?x2x?x4xf32>
  %flat = tensor.collapse_shape %hidden [[0, 1], [2]] : tensor<?x?x8xf32> into tensor<?x8xf32>
  %rows = tensor.dim %flat, %c0 : tensor<?x8xf32>
  %logits_init = tensor.empty(%rows) : tensor<?x8xf32>
  %logits_zero = linalg.fill ins(%zero : f32) outs(%logits_init : tensor<?x8xf32>) -> tensor<?x8xf32>
  %logits_flat = linalg.matmul ins(%flat, %w : tensor<?x8xf32>, tensor<8x8xf32>)
      outs(%logits_zero : tensor<?x8xf32>) -> tensor<?x8xf32>
  %logits = tensor.expand_shape %logits_flat [[0, 1], [2]] output_shape [%b, %s, 8]
      : tensor<?x8xf32> into tensor<?x?x8xf32>
  return %logits, %keys, %values : tensor<?x?x8xf32>, tensor<?x2x?x4xf32>, tensor<?x2x?x4xf32>
}

// -----

// A function without the decoder signature gets no entries.
// CHECK-LABEL: func.func @add(
// CHECK-NOT: func.func @prefill
func.func @add(%a: tensor<4xf32> {hasten.onnx_name = "a"}) -> (tensor<4xf32> {hasten.onnx_name = "y"}) {
  return %a : tensor<4xf32>
}
