// RUN: hasten-opt %s -split-input-file -hasten-unroll-speculation=k=3 -verify-diagnostics | FileCheck %s

// A target with a verify entry and a draft decode entry, as
// --hasten-plan-kv-cache leaves them (the bodies only need the right types).
// The pass adds spec_step: three draft steps, each followed by an argmax,
// the target's verification of the pending token and the three proposals,
// the greedy acceptance and both caches' new lengths.

// CHECK-LABEL: func.func @spec_step(
// CHECK-SAME: %[[PENDING:[^:]*]]: tensor<1x1xi64> {hasten.onnx_elem_type = 7 : i32, hasten.onnx_name = "input_ids", hasten.role = "token_ids"},
// CHECK-SAME: %[[CACHE:[^:]*]]: !hasten.kv_cache<layers = 2, kv_heads = 2, head_dim = 4, capacity = 64, f32> {hasten.onnx_name = "kv_cache", hasten.role = "kv_cache"},
// CHECK-SAME: %[[PAST:[^:]*]]: tensor<i64> {hasten.onnx_elem_type = 7 : i32, hasten.onnx_name = "past_length", hasten.role = "past_length"},
// CHECK-SAME: %[[DCACHE:[^:]*]]: !hasten.kv_cache<layers = 1, kv_heads = 1, head_dim = 4, capacity = 64, f32> {hasten.onnx_name = "draft_kv_cache", hasten.role = "draft_kv_cache"},
// CHECK-SAME: %[[DPAST:[^:]*]]: tensor<i64> {hasten.onnx_elem_type = 7 : i32, hasten.onnx_name = "draft_past_length", hasten.role = "draft_past_length"})
// CHECK-SAME: -> (tensor<1x4xi64> {{.*}}hasten.role = "accepted_tokens"}, tensor<i64> {{.*}}hasten.role = "past_length"}, tensor<i64> {{.*}}hasten.role = "draft_past_length"})
// CHECK-SAME: attributes {hasten.entry_kind = "spec_step"}
// CHECK: %[[FIRST:.*]] = tensor.extract %[[PENDING]]
// CHECK: %[[DLEN:.*]] = tensor.extract %[[DPAST]][]
// CHECK: %[[TLEN:.*]] = tensor.extract %[[PAST]][]
// The draft runs the pending token at its own past length...
// CHECK: %[[P0:.*]] = tensor.from_elements %{{.*}} : tensor<i64>
// CHECK: %[[L0:.*]] = hasten.decode_step @draft_decode(%[[PENDING]]) cache(%[[DCACHE]]) past(%[[P0]]) : tensor<1x1xi64>, {{.*}} -> tensor<1x1x8xf32>
// CHECK: %[[A0:.*]]:2 = linalg.generic {{.*}} iterator_types = ["parallel", "parallel", "reduction"]{{.*}} ins(%[[L0]] : tensor<1x1x8xf32>)
// CHECK: arith.cmpf ogt
// CHECK: %[[T1:.*]] = tensor.extract %[[A0]]#1
// ...then each proposal in turn, one position further.
// CHECK: %[[T1T:.*]] = tensor.from_elements %[[T1]] : tensor<1x1xi64>
// CHECK: %[[L1:.*]] = hasten.decode_step @draft_decode(%[[T1T]]) cache(%[[DCACHE]])
// CHECK: %[[T2:.*]] = tensor.extract
// CHECK: hasten.decode_step @draft_decode
// CHECK: %[[T3:.*]] = tensor.extract
// CHECK-NOT: hasten.decode_step @draft_decode
// One verification of [pending, t1, t2, t3] on the target's cache.
// CHECK: %[[CANDS:.*]] = tensor.from_elements %[[FIRST]], %[[T1]], %[[T2]], %[[T3]] : tensor<1x4xi64>
// CHECK: %[[SCORES:.*]] = hasten.decode_step @verify(%[[CANDS]]) cache(%[[CACHE]]) past(%[[PAST]]) : tensor<1x4xi64>, {{.*}} -> tensor<1x4x8xf32>
// CHECK: %[[CHOICE:.*]]:2 = linalg.generic {{.*}} ins(%[[SCORES]] : tensor<1x4x8xf32>)
// Acceptance: a running "all equal so far", counted.
// CHECK: %[[C0:.*]] = tensor.extract %[[CHOICE]]#1[%c0, %{{.*}}]
// CHECK: %[[EQ0:.*]] = arith.cmpi eq, %[[T1]], %[[C0]]
// CHECK: %[[M0:.*]] = arith.andi %true, %[[EQ0]]
// CHECK: arith.cmpi eq, %[[T2]]
// CHECK: arith.cmpi eq, %[[T3]]
// CHECK: %[[N:.*]] = arith.addi
// CHECK: %[[NEXT:.*]] = tensor.extract %[[CHOICE]]#1[%{{.*}}, %[[N]]]
// The target keeps the pending token and the accepted proposals; the draft
// keeps at most the three tokens it ran.
// CHECK: %[[KEPT:.*]] = arith.addi %{{.*}}, %c1_i64{{.*}} : i64
// CHECK: %[[NEWT:.*]] = arith.addi %[[TLEN]], %[[KEPT]]
// CHECK: %[[RAN:.*]] = arith.minsi %[[KEPT]], %c3_i64
// CHECK: %[[NEWD:.*]] = arith.addi %[[DLEN]], %[[RAN]]
// CHECK: %[[OUT:.*]] = tensor.from_elements {{.*}} : tensor<1x4xi64>
// CHECK: %[[RT:.*]] = tensor.from_elements %[[NEWT]] : tensor<i64>
// CHECK: %[[RD:.*]] = tensor.from_elements %[[NEWD]] : tensor<i64>
// CHECK: return %[[OUT]], %[[RT]], %[[RD]]
!target = !hasten.kv_cache<layers = 2, kv_heads = 2, head_dim = 4, capacity = 64, f32>
!draft = !hasten.kv_cache<layers = 1, kv_heads = 1, head_dim = 4, capacity = 64, f32>
func.func @verify(%ids: tensor<1x?xi64> {hasten.role = "token_ids"},
                  %cache: !target {hasten.role = "kv_cache"},
                  %past: tensor<i64> {hasten.role = "past_length"})
    -> (tensor<1x?x8xf32> {hasten.role = "logits"}) attributes {hasten.entry_kind = "verify"} {
  %c1 = arith.constant 1 : index
  %n = tensor.dim %ids, %c1 : tensor<1x?xi64>
  %e = tensor.empty(%n) : tensor<1x?x8xf32>
  return %e : tensor<1x?x8xf32>
}
func.func @draft_decode(%ids: tensor<1x1xi64> {hasten.role = "token_ids"},
                        %cache: !draft {hasten.role = "kv_cache"},
                        %past: tensor<i64> {hasten.role = "past_length"})
    -> (tensor<1x1x8xf32> {hasten.role = "logits"})
    attributes {hasten.entry_kind = "decode", hasten.model = "draft"} {
  %e = tensor.empty() : tensor<1x1x8xf32>
  return %e : tensor<1x1x8xf32>
}

// -----

// Without a draft there is nothing to speculate with.
// expected-error @+1 {{speculation needs the target's verify entry and the decode entry of model 'draft' (compile with --draft)}}
module {
  func.func @verify(%ids: tensor<1x?xi64> {hasten.role = "token_ids"})
      -> (tensor<1x?x8xf32> {hasten.role = "logits"}) attributes {hasten.entry_kind = "verify"} {
    %c1 = arith.constant 1 : index
    %n = tensor.dim %ids, %c1 : tensor<1x?xi64>
    %e = tensor.empty(%n) : tensor<1x?x8xf32>
    return %e : tensor<1x?x8xf32>
  }
}

// -----

// A paged cache is refused, not miscompiled.
!paged = !hasten.kv_cache<layers = 1, kv_heads = 1, head_dim = 4, capacity = 64, f32, paged<block_size = 16>>
// expected-error @+1 {{the fused speculation step supports contiguous KV caches only}}
module {
  func.func @verify(%ids: tensor<1x?xi64> {hasten.role = "token_ids"},
                    %cache: !paged {hasten.role = "kv_cache"},
                    %past: tensor<i64> {hasten.role = "past_length"})
      -> (tensor<1x?x8xf32> {hasten.role = "logits"}) attributes {hasten.entry_kind = "verify"} {
    %c1 = arith.constant 1 : index
    %n = tensor.dim %ids, %c1 : tensor<1x?xi64>
    %e = tensor.empty(%n) : tensor<1x?x8xf32>
    return %e : tensor<1x?x8xf32>
  }
  func.func @draft_decode(%ids: tensor<1x1xi64> {hasten.role = "token_ids"},
                          %cache: !paged {hasten.role = "kv_cache"},
                          %past: tensor<i64> {hasten.role = "past_length"})
      -> (tensor<1x1x8xf32> {hasten.role = "logits"})
      attributes {hasten.entry_kind = "decode", hasten.model = "draft"} {
    %e = tensor.empty() : tensor<1x1x8xf32>
    return %e : tensor<1x1x8xf32>
  }
}

// -----

// The draft must speak the target's vocabulary.
!c = !hasten.kv_cache<layers = 1, kv_heads = 1, head_dim = 4, capacity = 64, f32>
// expected-error @+1 {{the draft's vocabulary (16) is not the target's (8)}}
module {
  func.func @verify(%ids: tensor<1x?xi64> {hasten.role = "token_ids"},
                    %cache: !c {hasten.role = "kv_cache"},
                    %past: tensor<i64> {hasten.role = "past_length"})
      -> (tensor<1x?x8xf32> {hasten.role = "logits"}) attributes {hasten.entry_kind = "verify"} {
    %c1 = arith.constant 1 : index
    %n = tensor.dim %ids, %c1 : tensor<1x?xi64>
    %e = tensor.empty(%n) : tensor<1x?x8xf32>
    return %e : tensor<1x?x8xf32>
  }
  func.func @draft_decode(%ids: tensor<1x1xi64> {hasten.role = "token_ids"},
                          %cache: !c {hasten.role = "kv_cache"},
                          %past: tensor<i64> {hasten.role = "past_length"})
      -> (tensor<1x1x16xf32> {hasten.role = "logits"})
      attributes {hasten.entry_kind = "decode", hasten.model = "draft"} {
    %e = tensor.empty() : tensor<1x1x16xf32>
    return %e : tensor<1x1x16xf32>
  }
}
