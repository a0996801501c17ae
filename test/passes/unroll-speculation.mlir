// RUN: hasten-opt %s -split-input-file -hasten-unroll-speculation=k=3 -verify-diagnostics | FileCheck %s
// RUN: hasten-opt %s -split-input-file -hasten-unroll-speculation="k=3 greedy-only=true" -verify-diagnostics | FileCheck %s --check-prefix=GREEDY

// greedy-only (GPU targets): no temperature or uniforms, no sampling branch,
// each argmax a linalg reduction (a kernel there), read back as scalars.
// GREEDY-LABEL: func.func @spec_step(
// GREEDY-SAME: %{{[^:]*}}: tensor<i64> {{.*}}hasten.role = "draft_past_length"})
// GREEDY: %[[GL0:.*]] = hasten.decode_step @draft_decode
// GREEDY-NOT: {{scf.if|vector\.}}
// GREEDY: %[[GA0:.*]]:2 = linalg.generic {{.*}} iterator_types = ["parallel", "parallel", "reduction"]{{.*}} ins(%[[GL0]] : tensor<1x1x20xf32>)
// GREEDY-NOT: {{scf.if|vector\.}}
// GREEDY: %[[GT1:.*]] = tensor.extract %[[GA0]]#1
// GREEDY-NOT: {{scf.if|vector\.}}
// GREEDY: hasten.decode_step @draft_decode
// GREEDY-NOT: {{scf.if|vector\.}}
// GREEDY: hasten.decode_step @draft_decode
// GREEDY-NOT: {{scf.if|vector\.}}
// GREEDY: %[[GSCORES:.*]] = hasten.decode_step @verify
// GREEDY-NOT: {{scf.if|vector\.}}
// GREEDY: %[[GC:.*]]:2 = linalg.generic {{.*}} ins(%[[GSCORES]] : tensor<1x4x20xf32>)
// GREEDY-NOT: {{scf.if|vector\.}}
// GREEDY: %[[GC0:.*]] = tensor.extract %[[GC]]#1[%{{.*}}, %c0{{.*}}]
// GREEDY-NOT: {{scf.if|vector\.}}
// GREEDY: arith.cmpi eq, %[[GT1]], %[[GC0]]
// GREEDY-NOT: {{scf.if|vector\.}}
// GREEDY: return

// A target with a verify entry and a draft decode entry, as
// --hasten-plan-kv-cache leaves them (the bodies only need the right types).
// The pass adds spec_step: three draft steps, each choosing its proposal by
// argmax, or at a positive temperature by a draw from the draft's softmax;
// the target's verification of the pending token and the three proposals;
// acceptance (exact match, or rejection sampling) and both caches' new
// lengths.

// CHECK-LABEL: func.func @spec_step(
// CHECK-SAME: %[[PENDING:[^:]*]]: tensor<1x1xi64> {hasten.onnx_elem_type = 7 : i32, hasten.onnx_name = "input_ids", hasten.role = "token_ids"},
// CHECK-SAME: %[[CACHE:[^:]*]]: !hasten.kv_cache<layers = 2, kv_heads = 2, head_dim = 4, capacity = 64, f32> {hasten.onnx_name = "kv_cache", hasten.role = "kv_cache"},
// CHECK-SAME: %[[PAST:[^:]*]]: tensor<i64> {hasten.onnx_elem_type = 7 : i32, hasten.onnx_name = "past_length", hasten.role = "past_length"},
// CHECK-SAME: %[[DCACHE:[^:]*]]: !hasten.kv_cache<layers = 1, kv_heads = 1, head_dim = 4, capacity = 64, f32> {hasten.onnx_name = "draft_kv_cache", hasten.role = "draft_kv_cache"},
// CHECK-SAME: %[[DPAST:[^:]*]]: tensor<i64> {hasten.onnx_elem_type = 7 : i32, hasten.onnx_name = "draft_past_length", hasten.role = "draft_past_length"},
// CHECK-SAME: %[[TEMP:[^:]*]]: tensor<f32> {hasten.onnx_name = "temperature", hasten.role = "temperature"},
// CHECK-SAME: %[[U:[^:]*]]: tensor<7xf32> {hasten.onnx_name = "uniforms", hasten.role = "uniforms"})
// CHECK-SAME: -> (tensor<1x4xi64> {{.*}}hasten.role = "accepted_tokens"}, tensor<i64> {{.*}}hasten.role = "past_length"}, tensor<i64> {{.*}}hasten.role = "draft_past_length"})
// CHECK-SAME: attributes {hasten.entry_kind = "spec_step"}
// CHECK: %[[FIRST:.*]] = tensor.extract %[[PENDING]]
// CHECK: %[[DLEN:.*]] = tensor.extract %[[DPAST]][]
// CHECK: %[[TLEN:.*]] = tensor.extract %[[PAST]][]
// CHECK: %[[T:.*]] = tensor.extract %[[TEMP]][]
// CHECK: %[[SAMPLING:.*]] = arith.cmpf ogt, %[[T]], %{{.*}} : f32
// CHECK: %[[INVT:.*]] = arith.divf %{{.*}}, %[[T]] : f32
// The draft runs the pending token at its own past length; its logits are
// kept for the residual distribution.
// CHECK: %[[P0:.*]] = tensor.from_elements %{{.*}} : tensor<i64>
// CHECK: %[[L0:.*]] = hasten.decode_step @draft_decode(%[[PENDING]]) cache(%[[DCACHE]]) past(%[[P0]]) : tensor<1x1xi64>, {{.*}} -> tensor<1x1x20xf32>
// CHECK: tensor.insert_slice %[[L0]] into %{{.*}}[0, 0, 0] [1, 1, 20] [1, 1, 1] : tensor<1x1x20xf32> into tensor<1x3x20xf32>
// Sampling: the softmax normalizers (the row's largest logit, then the sum
// of exp((l - max) / T)), each pass over the 20 tokens reading 16 at a time
// into vector accumulators, then the other 4 one at a time.
// CHECK: %[[S0:.*]]:4 = scf.if %[[SAMPLING]] -> (i64, f32, f32, f32) {
// CHECK: %[[MAXW:.*]]:2 = scf.for %{{.*}} = %c0{{.*}} to %c16{{.*}} step %c16{{.*}} -> (vector<16xf32>, vector<16xi64>) {
// CHECK: vector.transfer_read %[[L0]]{{.*}} : tensor<1x1x20xf32>, vector<16xf32>
// CHECK: %[[MAXN:.*]]:2 = scf.for %{{.*}} = %c16{{.*}} to %c20{{.*}} step %c1{{.*}} -> (vector<1xf32>, vector<1xi64>) {
// CHECK: vector.reduction <maximumf>, %[[MAXW]]#0
// CHECK: vector.reduction <maximumf>, %[[MAXN]]#0
// CHECK: %[[MAX0:.*]] = arith.maximumf
// CHECK: %[[SUMW:.*]] = scf.for {{.*}} -> (vector<16xf32>) {
// CHECK: vector.broadcast %[[MAX0]]
// CHECK: vector.broadcast %[[INVT]]
// CHECK: math.exp %{{.*}} : vector<16xf32>
// CHECK: %[[SUMN:.*]] = scf.for {{.*}} -> (vector<1xf32>) {
// CHECK: vector.reduction <add>, %[[SUMW]]
// CHECK: vector.reduction <add>, %[[SUMN]]
// CHECK: %[[SUM0:.*]] = arith.addf
// The draw with u0: the sums of 16-token chunks (the last one the 4-token
// tail), the first chunk whose running sum passes u0 times the total, then
// the first token within it.
// CHECK: %[[U0:.*]] = tensor.extract %[[U]][%c0{{.*}}] : tensor<7xf32>
// CHECK: %[[CHUNKS:.*]] = scf.for {{.*}} -> (tensor<2xf32>) {
// CHECK: math.exp %{{.*}} : vector<16xf32>
// CHECK: vector.reduction <add>
// CHECK: tensor.insert
// CHECK: %[[SUMS:.*]] = tensor.insert %{{.*}} into %[[CHUNKS]][%c1{{.*}}] : tensor<2xf32>
// CHECK: %[[THRESHOLD:.*]] = arith.mulf %[[U0]], %[[SUM0]]
// CHECK: %[[CHUNK:.*]]:6 = scf.for {{.*}} -> (f32, index, f32, i1, index, f32) {
// CHECK: tensor.extract %[[SUMS]]
// CHECK: arith.cmpf ogt, %{{.*}}, %[[THRESHOLD]]
// CHECK: %[[WITHIN:.*]]:6 = scf.for {{.*}} -> (f32, index, f32, i1, index, f32) {
// CHECK: vector.transfer_read %[[L0]]{{.*}} vector<1xf32>
// CHECK: arith.cmpf ogt, %{{.*}}, %[[THRESHOLD]]
// CHECK: %[[TOKEN:.*]] = arith.select %[[WITHIN]]#3, %[[WITHIN]]#1, %[[WITHIN]]#4 : index
// CHECK: %[[TOKEN0:.*]] = arith.index_cast %[[TOKEN]] : index to i64
// CHECK: scf.yield %[[TOKEN0]], %{{.*}}, %[[MAX0]], %[[SUM0]] : i64, f32, f32, f32
// Greedy: the argmax (each lane's first largest, then the smallest token
// among the lanes holding the largest value).
// CHECK: } else {
// CHECK: scf.for {{.*}} -> (vector<16xf32>, vector<16xi64>) {
// CHECK: vector.transfer_read %[[L0]]
// CHECK: vector.reduction <minsi>
// CHECK: vector.reduction <minsi>
// CHECK: %[[BEST0:.*]] = arith.select
// CHECK: scf.yield %[[BEST0]], {{.*}} : i64, f32, f32, f32
// ...then each proposal in turn, one position further.
// CHECK: %[[T1T:.*]] = tensor.from_elements %[[S0]]#0 : tensor<1x1xi64>
// CHECK: %[[L1:.*]] = hasten.decode_step @draft_decode(%[[T1T]]) cache(%[[DCACHE]])
// CHECK: %[[S1:.*]]:4 = scf.if %[[SAMPLING]]
// CHECK: tensor.extract %[[U]][%c1{{.*}}]
// CHECK: hasten.decode_step @draft_decode
// CHECK: %[[S2:.*]]:4 = scf.if %[[SAMPLING]]
// CHECK: tensor.extract %[[U]][%c2{{.*}}]
// CHECK-NOT: hasten.decode_step @draft_decode
// One verification of [pending, t1, t2, t3] on the target's cache.
// CHECK: %[[CANDS:.*]] = tensor.from_elements %[[FIRST]], %[[S0]]#0, %[[S1]]#0, %[[S2]]#0 : tensor<1x4xi64>
// CHECK: %[[SCORES:.*]] = hasten.decode_step @verify(%[[CANDS]]) cache(%[[CACHE]]) past(%[[PAST]]) : tensor<1x4xi64>, {{.*}} -> tensor<1x4x20xf32>
// Rejection sampling: the target's normalizers for each of the 4 rows,
// then proposal i is kept while u[3 + i] * q_i < p_i.
// CHECK: %[[ACCEPT:.*]]:2 = scf.if %[[SAMPLING]] -> (index, i64) {
// CHECK-COUNT-4: scf.for {{.*}} -> (vector<16xf32>, vector<16xi64>) {
// CHECK: %[[PROB0:.*]] = arith.divf
// CHECK: %[[UA0:.*]] = tensor.extract %[[U]][%c3{{.*}}]
// CHECK: %[[UQ0:.*]] = arith.mulf %[[UA0]], %[[S0]]#1
// CHECK: %[[KEEP0:.*]] = arith.cmpf olt, %[[UQ0]], %[[PROB0]]
// CHECK: arith.andi %true, %[[KEEP0]]
// CHECK: tensor.extract %[[U]][%c4{{.*}}]
// CHECK: arith.mulf %{{.*}}, %[[S1]]#1
// CHECK: tensor.extract %[[U]][%c5{{.*}}]
// CHECK: arith.mulf %{{.*}}, %[[S2]]#1
// CHECK: %[[N:.*]] = arith.addi
// The next token: drawn with u[6] from max(0, p - q) at the first rejection
// (q is zero after three acceptances).
// CHECK: %[[REJECTED:.*]] = arith.cmpi ult, %[[N]], %c3
// CHECK: %[[DROW:.*]] = arith.minui %[[N]], %c2
// CHECK: scf.for {{.*}} -> (vector<16xf32>) {
// CHECK: vector.transfer_read %{{.*}}[%{{.*}}, %[[DROW]], %{{.*}}]{{.*}} : tensor<1x3x20xf32>, vector<16xf32>
// CHECK: arith.select %[[REJECTED]]
// CHECK: vector.transfer_read %[[SCORES]][%{{.*}}, %[[N]], %{{.*}}]{{.*}} : tensor<1x4x20xf32>, vector<16xf32>
// CHECK: arith.maximumf %{{.*}} : vector<16xf32>
// CHECK: tensor.extract %[[U]][%c6{{.*}}]
// CHECK: scf.for {{.*}} -> (tensor<2xf32>) {
// CHECK: scf.for {{.*}} -> (f32, index, f32, i1, index, f32) {
// CHECK: %[[NEXTDRAW:.*]]:6 = scf.for {{.*}} -> (f32, index, f32, i1, index, f32) {
// CHECK: %[[NEXTTOKEN:.*]] = arith.select %[[NEXTDRAW]]#3
// CHECK: %[[NEXTS:.*]] = arith.index_cast %[[NEXTTOKEN]]
// CHECK: scf.yield %[[N]], %[[NEXTS]] : index, i64
// Greedy: a running "all equal so far", counted.
// CHECK: } else {
// CHECK: scf.for {{.*}} -> (vector<16xf32>, vector<16xi64>) {
// CHECK: vector.transfer_read %[[SCORES]][%{{.*}}, %c0{{.*}}, %{{.*}}]
// CHECK-COUNT-3: scf.for {{.*}} -> (vector<16xf32>, vector<16xi64>) {
// CHECK: %[[EQ0:.*]] = arith.cmpi eq, %[[S0]]#0, %[[C0:[^ ]*]] : i64
// CHECK: %[[M0:.*]] = arith.andi %true{{.*}}, %[[EQ0]]
// CHECK: arith.cmpi eq, %[[S1]]#0, %[[C1:[^ ]*]] : i64
// CHECK: arith.cmpi eq, %[[S2]]#0, %[[C2:[^ ]*]] : i64
// CHECK: %[[GN:.*]] = arith.addi
// CHECK: %[[CHOICES:.*]] = tensor.from_elements %[[C0]], %[[C1]], %[[C2]], %{{.*}} : tensor<4xi64>
// CHECK: %[[NEXT:.*]] = tensor.extract %[[CHOICES]][%[[GN]]]
// CHECK: scf.yield %[[GN]], %[[NEXT]] : index, i64
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
    -> (tensor<1x?x20xf32> {hasten.role = "logits"}) attributes {hasten.entry_kind = "verify"} {
  %c1 = arith.constant 1 : index
  %n = tensor.dim %ids, %c1 : tensor<1x?xi64>
  %e = tensor.empty(%n) : tensor<1x?x20xf32>
  return %e : tensor<1x?x20xf32>
}
func.func @draft_decode(%ids: tensor<1x1xi64> {hasten.role = "token_ids"},
                        %cache: !draft {hasten.role = "kv_cache"},
                        %past: tensor<i64> {hasten.role = "past_length"})
    -> (tensor<1x1x20xf32> {hasten.role = "logits"})
    attributes {hasten.entry_kind = "decode", hasten.model = "draft"} {
  %e = tensor.empty() : tensor<1x1x20xf32>
  return %e : tensor<1x1x20xf32>
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

// Paged caches: spec_step takes them as they are (--hasten-lower-kv-cache
// then gives it each cache's pool and block table).
!paged = !hasten.kv_cache<layers = 1, kv_heads = 1, head_dim = 4, capacity = 64, f32, paged<block_size = 16>>
// CHECK-LABEL: func.func @spec_step(
// CHECK-SAME: %[[PCACHE:[^:]*]]: !hasten.kv_cache<{{.*}}paged<block_size = 16>> {hasten.onnx_name = "kv_cache", hasten.role = "kv_cache"}
// CHECK-SAME: %[[PDCACHE:[^:]*]]: !hasten.kv_cache<{{.*}}paged<block_size = 16>> {hasten.onnx_name = "draft_kv_cache", hasten.role = "draft_kv_cache"}
// CHECK: hasten.decode_step @draft_decode({{.*}}) cache(%[[PDCACHE]])
// CHECK: hasten.decode_step @verify({{.*}}) cache(%[[PCACHE]])
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
