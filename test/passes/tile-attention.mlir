// RUN: hasten-opt %s -split-input-file --hasten-tile-attention --canonicalize --cse -verify-diagnostics | FileCheck %s

// Causal GQA prefill with a hand-written tiling (16-query blocks, 32-key
// tiles): query blocks are the parallel work; each block's key loop carries
// the running max, sum and accumulator, and ends at the last key its last
// row may see (tiles above the diagonal are never computed). The scores
// exist only as a 32 x 16 tile, kept keys-major (S^T = K Q^T): Q^T is built
// once per block, already scaled into base-2 units, K is read in place, and
// the reductions over keys run along the tile's outer dimension. Only tiles
// that cross the diagonal build the causal mask, from indices, under an
// scf.if; the others leave the scores as the product made them.

// CHECK: #[[TRANSPOSED:.*]] = affine_map<(d0, d1) -> (d1, d0)>
// CHECK-LABEL: func.func @causal_gqa(
// CHECK-SAME: %[[Q:[^:]*]]: tensor<1x4x?x16xf32>, %[[K:[^:]*]]: tensor<1x2x?x16xf32>, %[[V:[^:]*]]: tensor<1x2x?x16xf32>
// CHECK-DAG: %[[ZEROS:.*]] = arith.constant dense<0.000000e+00> : vector<16xf32>
// CHECK-DAG: %[[SCALE2:.*]] = arith.constant 0.360673755 : f32
// CHECK-DAG: %[[S:.*]] = tensor.dim %[[Q]], %c2
// CHECK-DAG: %[[T:.*]] = tensor.dim %[[K]], %c2
// CHECK: %[[DIAG:.*]] = arith.subi %[[T]], %[[S]] : index
// CHECK: %[[BLOCKS:.*]] = arith.ceildivsi %[[S]], %c16 : index
// CHECK: scf.forall (%[[H:.*]], %[[BLK:.*]]) in (4, %[[BLOCKS]]) shared_outs(%[[OUT:.*]] = %{{.*}}) -> (tensor<1x4x?x16xf32>)
// CHECK: %[[Q0:.*]] = arith.muli %[[BLK]], %c16
// CHECK: %[[NQ:.*]] = arith.minsi %{{.*}}, %c16
// CHECK: %[[LAST:.*]] = arith.addi %[[Q0]], %[[NQ]]
// CHECK: %[[LASTDIAG:.*]] = arith.addi %[[LAST]], %[[DIAG]]
// CHECK: %[[CLAMPED:.*]] = arith.minsi %[[T]], %[[LASTDIAG]]
// CHECK: %[[END:.*]] = arith.maxsi %[[CLAMPED]], %c0
// CHECK: %[[KVH:.*]] = arith.divui %[[H]], %c2
// CHECK: %[[QS:.*]] = tensor.extract_slice %[[Q]][0, %[[H]], %[[Q0]], 0]
// CHECK: %[[QT:.*]] = linalg.generic {indexing_maps = [#[[TRANSPOSED]], #{{.*}}], iterator_types = ["parallel", "parallel"]} ins(%[[QS]] : tensor<?x16xf32>) outs(%{{.*}} : tensor<16x?xf32>)
// CHECK: arith.mulf %{{.*}}, %[[SCALE2]] : f32
// CHECK: scf.for %[[K0:.*]] = %c0 to %[[END]] step %c32 iter_args(%[[M:.*]] = %{{.*}}, %[[L:.*]] = %{{.*}}, %[[ACC:.*]] = %{{.*}}) -> (tensor<?xf32>, tensor<?xf32>, tensor<?x16xf32>)
// CHECK-NOT: linalg.transpose
// CHECK: %[[KTILE:.*]] = tensor.extract_slice %[[K]][0, %[[KVH]], %[[K0]], 0]
// CHECK: %[[VTILE:.*]] = tensor.extract_slice %[[V]][0, %[[KVH]], %[[K0]], 0]
// Full 32 x 16 tiles of S^T run register-blocked: 6 keys' rows of 16-wide
// accumulators (a lane per query; 16-lane vectors keep groups of six),
// started from zero registers, across the head dim; each step one Q^T row
// times 6 broadcast K elements; the last 2 rows as one group of two. Edge
// tiles take the loop form, which alone fills zeros.
// CHECK: %[[FULL:.*]] = arith.andi
// CHECK: %[[SCORES:.*]] = scf.if %[[FULL]] -> (tensor<?x?xf32>)
// CHECK-NOT: linalg.fill
// CHECK: scf.for %{{.*}} = %c0 to %c30 step %c6 iter_args(%{{.*}}) -> (tensor<32x16xf32>)
// CHECK: scf.for %{{.*}} = %c0 to %c16 step %c1 iter_args(%{{.*}} = %[[ZEROS]], %{{.*}} = %[[ZEROS]], %{{.*}} = %[[ZEROS]], %{{.*}} = %[[ZEROS]], %{{.*}} = %[[ZEROS]], %{{.*}} = %[[ZEROS]]) -> (vector<16xf32>, vector<16xf32>, vector<16xf32>, vector<16xf32>, vector<16xf32>, vector<16xf32>)
// CHECK-COUNT-6: tensor.extract %[[KTILE]]
// CHECK: scf.for %{{.*}} = %c0 to %c16 step %c1 iter_args(%{{.*}} = %[[ZEROS]], %{{.*}} = %[[ZEROS]]) -> (vector<16xf32>, vector<16xf32>)
// CHECK: tensor.extract %[[KTILE]][%c30,
// CHECK: tensor.extract %[[KTILE]][%c31,
// CHECK: } else {
// CHECK: linalg.fill
// CHECK: linalg.generic {{.*}}iterator_types = ["parallel", "reduction", "parallel"]} ins(%[[KTILE]], %[[QT]] : tensor<?x16xf32>, tensor<16x?xf32>) outs(%{{.*}} : tensor<?x?xf32>)
// The tile crosses the diagonal: its key index (dim 0) against its query
// index (dim 1) plus the diagonal.
// CHECK: %[[CROSSES:.*]] = arith.cmpi sgt
// CHECK: scf.if %[[CROSSES]] -> (tensor<?x?xf32>)
// CHECK: %[[J:.*]] = linalg.index 0
// CHECK: %[[KEY:.*]] = arith.addi %[[K0]], %[[J]]
// CHECK: %[[I:.*]] = linalg.index 1
// CHECK: %[[ROW:.*]] = arith.addi %[[Q0]], %[[I]]
// CHECK: %[[LIMIT:.*]] = arith.addi %[[ROW]], %[[DIAG]]
// CHECK: arith.cmpi sgt, %[[KEY]], %[[LIMIT]]
// CHECK: arith.select
// CHECK: } else {
// CHECK-NEXT: scf.yield %[[SCORES]] : tensor<?x?xf32>
// CHECK-NEXT: }
// The online-softmax update in base-2 units (the scale, 1/4, times
// log2(e)): the new max reduces over keys, dim 0 of the tile; a max of
// -inf (every key masked so far) becomes 0 once per query, not per score;
// rescale exp2(m - m'); then one pass over the tile makes P^T =
// exp2(S^T - m') in place and sums it into l' = alpha l + sum P;
// acc' = alpha acc + P V with P read from P^T.
// CHECK: iterator_types = ["reduction", "parallel"]} ins(%{{.*}} : tensor<?x?xf32>) outs(%[[M]] : tensor<?xf32>)
// CHECK: arith.maximumf
// CHECK: %[[MSAFE:.*]] = linalg.generic
// CHECK: arith.cmpf oeq
// CHECK: arith.select
// CHECK: math.exp2
// CHECK: %[[PL:.*]]:2 = linalg.generic {{.*}}iterator_types = ["reduction", "parallel"]} ins(%[[MSAFE]] : tensor<?xf32>) outs(%{{.*}}, %{{.*}} : tensor<?x?xf32>, tensor<?xf32>)
// CHECK: %[[SHIFTED:.*]] = arith.subf
// CHECK: %[[PE:.*]] = math.exp2 %[[SHIFTED]]
// CHECK: %[[SUM:.*]] = arith.addf %{{.*}}, %[[PE]] fastmath<reassoc>
// CHECK: linalg.yield %[[PE]], %[[SUM]]
// CHECK: scf.for %{{.*}} = %c0 to %c32 step %c1 iter_args
// CHECK: tensor.extract %[[PL]]#0[%[[KK:.*]], %{{.*}}] : tensor<?x?xf32>
// CHECK: vector.fma
// CHECK: iterator_types = ["parallel", "reduction", "parallel"]} ins(%[[PL]]#0, %[[VTILE]] : tensor<?x?xf32>, tensor<?x16xf32>) outs(%{{.*}} : tensor<?x16xf32>)
// CHECK: scf.yield
// CHECK: arith.divf
// CHECK: scf.forall.in_parallel
// CHECK-NEXT: tensor.parallel_insert_slice %{{.*}} into %[[OUT]][0, %[[H]], %[[Q0]], 0] [1, 1, %[[NQ]], 16]
// CHECK-NOT: hasten.attention
func.func @causal_gqa(%q: tensor<1x4x?x16xf32>, %k: tensor<1x2x?x16xf32>, %v: tensor<1x2x?x16xf32>) -> tensor<1x4x?x16xf32> {
  %o = hasten.attention %q, %k, %v heads(4, 2) causal tiling(#hasten.attention_tiling<target = "cpu", block_q = 16, tile_q = 16, tile_kv = 32, kv_splits = 1, skip_masked = true, diagonal_mask = true, warps = 0, mma = "", smem_layout = "row", vector_lanes = 16>) : tensor<1x4x?x16xf32>, tensor<1x2x?x16xf32>, tensor<1x2x?x16xf32> -> tensor<1x4x?x16xf32>
  return %o : tensor<1x4x?x16xf32>
}

// -----

// Without skip_masked and diagonal_mask, every key tile is computed and
// every tile masks by index: no diagonal test, the loop runs to kv_len.

// CHECK-LABEL: func.func @causal_unskipped(
// CHECK-SAME: %{{[^:]*}}: tensor<1x2x?x16xf32>, %[[K:[^:]*]]: tensor<1x2x?x16xf32>
// CHECK: %[[T:.*]] = tensor.dim %[[K]], %c2
// CHECK: scf.for %{{.*}} = %c0 to %[[T]] step %c32
// CHECK-NOT: arith.cmpi sgt
// CHECK: linalg.index 1
// CHECK: arith.cmpi sgt
// CHECK: scf.yield
func.func @causal_unskipped(%q: tensor<1x2x?x16xf32>, %k: tensor<1x2x?x16xf32>, %v: tensor<1x2x?x16xf32>) -> tensor<1x2x?x16xf32> {
  %o = hasten.attention %q, %k, %v heads(2, 2) causal tiling(#hasten.attention_tiling<target = "cpu", block_q = 16, tile_q = 16, tile_kv = 32, kv_splits = 1, skip_masked = false, diagonal_mask = false, warps = 0, mma = "", smem_layout = "row", vector_lanes = 16>) : tensor<1x2x?x16xf32>, tensor<1x2x?x16xf32>, tensor<1x2x?x16xf32> -> tensor<1x2x?x16xf32>
  return %o : tensor<1x2x?x16xf32>
}

// -----

// A mask is read in place, by index: the query and key indices of the tile
// element, batch broadcast (size 1). No causal structure: no diagonal test.

// CHECK-LABEL: func.func @masked(
// CHECK-SAME: %[[MASK:[^:]*]]: tensor<1x1x?x?xf32>
// CHECK: scf.for
// CHECK-NOT: arith.cmpi sgt
// CHECK: tensor.extract %[[MASK]][%c0, %c0, %{{.*}}, %{{.*}}] : tensor<1x1x?x?xf32>
// CHECK: arith.addf
func.func @masked(%q: tensor<2x4x?x16xf32>, %k: tensor<2x4x?x16xf32>, %v: tensor<2x4x?x16xf32>, %m: tensor<1x1x?x?xf32>) -> tensor<2x4x?x16xf32> {
  %o = hasten.attention %q, %k, %v mask(%m : tensor<1x1x?x?xf32>) heads(4, 4) : tensor<2x4x?x16xf32>, tensor<2x4x?x16xf32>, tensor<2x4x?x16xf32> -> tensor<2x4x?x16xf32>
  return %o : tensor<2x4x?x16xf32>
}

// -----

// One-query decode with kv_splits = 4 (flash-decoding): (batch, head,
// partition) in parallel, each over its own whole key tiles, then a
// log-sum-exp merge (base 2): the max over partitions, weights
// exp2(m_p - max), the weighted sums and a division.

// CHECK-LABEL: func.func @decode_split(
// CHECK: %[[CHUNK_TILES:.*]] = arith.ceildivsi
// CHECK: scf.forall (%{{.*}}, %[[P:.*]]) in (8, 4) shared_outs(%[[PM:.*]] = %{{.*}}, %[[PL:.*]] = %{{.*}}, %[[PACC:.*]] = %{{.*}}) -> (tensor<1x8x4xf32>, tensor<1x8x4xf32>, tensor<1x8x4x64xf32>)
// CHECK: scf.for
// One query: each key's score is a dot product, the head dim as one vector
// reduced across its lanes (in any order), no transposed tile. The tile's
// rows are read as four streams side by side (rows r, part + r, 2 part + r,
// 3 part + r), then the rows past 4 part alone; P V likewise, with one
// accumulator vector per stream.
// CHECK-NOT: linalg.transpose
// CHECK: %[[PART:.*]] = arith.divsi %[[NK:.*]], %c4 : index
// CHECK: scf.for %[[R:.*]] = %c0 to %[[PART]] step %c1
// CHECK: %[[R1:.*]] = arith.addi %[[PART]], %[[R]]
// CHECK: %[[KROW:.*]] = vector.transfer_read %[[KTILE:.*]][%[[R]], %c0]{{.*}} : tensor<?x64xf32>, vector<64xf32>
// CHECK: %[[PROD:.*]] = arith.mulf %[[KROW]], %{{.*}} : vector<64xf32>
// CHECK: vector.reduction <add>, %[[PROD]] fastmath<reassoc> : vector<64xf32> into f32
// CHECK: vector.transfer_read %[[KTILE]][%[[R1]], %c0]
// CHECK-COUNT-2: vector.reduction <add>
// CHECK: %[[REST:.*]] = arith.muli %[[PART]], %c4 : index
// CHECK: scf.for %{{.*}} = %[[REST]] to %[[NK]] step %c1
// CHECK: vector.reduction <add>
// CHECK: scf.for %{{.*}} = %c0 to %{{.*}} step %c1 iter_args(%{{.*}}, %{{.*}} = %[[Z:[^,]*]], %{{.*}} = %[[Z]], %{{.*}} = %[[Z]]) -> (vector<64xf32>, vector<64xf32>, vector<64xf32>, vector<64xf32>)
// CHECK-COUNT-4: vector.fma
// CHECK: scf.forall.in_parallel
// CHECK-COUNT-3: tensor.parallel_insert_slice
// CHECK: arith.maximumf
// CHECK: math.exp2
// CHECK: arith.divf
// CHECK: tensor.expand_shape {{.*}} into tensor<1x8x1x64xf32>
func.func @decode_split(%q: tensor<1x8x1x64xf32>, %k: tensor<1x8x?x64xf32>, %v: tensor<1x8x?x64xf32>) -> tensor<1x8x1x64xf32> {
  %o = hasten.attention %q, %k, %v heads(8, 8) causal tiling(#hasten.attention_tiling<target = "cpu", block_q = 1, tile_q = 1, tile_kv = 64, kv_splits = 4, skip_masked = true, diagonal_mask = true, warps = 0, mma = "", smem_layout = "row", vector_lanes = 16>) : tensor<1x8x1x64xf32>, tensor<1x8x?x64xf32>, tensor<1x8x?x64xf32> -> tensor<1x8x1x64xf32>
  return %o : tensor<1x8x1x64xf32>
}

// -----

// Only f32 is generated so far: anything else stays, with a remark.

// CHECK-LABEL: func.func @half
// CHECK: hasten.attention
func.func @half(%q: tensor<1x2x8x16xf16>, %k: tensor<1x2x8x16xf16>, %v: tensor<1x2x8x16xf16>) -> tensor<1x2x8x16xf16> {
  // expected-remark @+1 {{attention left untiled: only f32 is generated so far}}
  %o = hasten.attention %q, %k, %v heads(2, 2) : tensor<1x2x8x16xf16>, tensor<1x2x8x16xf16>, tensor<1x2x8x16xf16> -> tensor<1x2x8x16xf16>
  return %o : tensor<1x2x8x16xf16>
}

// -----

// Two levels (an Ascend plan: a 32-query block per core, 8-query tiles
// sized to the local buffer): the block's tiles run in turn, each with its
// own key loop that stops at that tile's diagonal, and are written into the
// block's output, which the block then writes out.

// CHECK-LABEL: func.func @two_level(
// CHECK: scf.forall (%[[H:.*]], %[[BLK:.*]]) in (4, %{{.*}}) shared_outs
// CHECK: %[[NQ:.*]] = arith.minsi %{{.*}}, %c32
// CHECK: %[[BLOCK:.*]] = scf.for %[[T:.*]] = %c0 to %[[NQ]] step %c8 iter_args(%[[ACC:.*]] = %{{.*}}) -> (tensor<?x16xf32>)
// CHECK: scf.for %{{.*}} step %c16 iter_args
// CHECK: scf.if
// CHECK: tensor.insert_slice %{{.*}} into %[[ACC]][%[[T]], 0]
// CHECK: scf.forall.in_parallel
// CHECK-NEXT: tensor.parallel_insert_slice %[[BLOCK]]
func.func @two_level(%q: tensor<1x4x?x16xf32>, %k: tensor<1x2x?x16xf32>, %v: tensor<1x2x?x16xf32>) -> tensor<1x4x?x16xf32> {
  %o = hasten.attention %q, %k, %v heads(4, 2) causal tiling(#hasten.attention_tiling<target = "ascend", block_q = 32, tile_q = 8, tile_kv = 16, kv_splits = 1, skip_masked = true, diagonal_mask = true, warps = 0, mma = "cube16x16x16", smem_layout = "nz", vector_lanes = 0>) : tensor<1x4x?x16xf32>, tensor<1x2x?x16xf32>, tensor<1x2x?x16xf32> -> tensor<1x4x?x16xf32>
  return %o : tensor<1x4x?x16xf32>
}
