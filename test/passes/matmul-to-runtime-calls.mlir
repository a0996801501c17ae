// RUN: hasten-opt %s -split-input-file -hasten-matmul-to-runtime-calls | FileCheck %s
// RUN: hasten-opt %s -split-input-file -hasten-matmul-to-runtime-calls="weights=bf16" | FileCheck %s --check-prefix=BF16
// RUN: hasten-opt %s -split-input-file -hasten-matmul-to-runtime-calls="weight-layout=strips" | FileCheck %s --check-prefix=STRIPS
// RUN: hasten-opt %s -split-input-file -hasten-matmul-to-runtime-calls="weights=bf16 weight-layout=strips" | FileCheck %s --check-prefix=BF16STRIPS
// RUN: hasten-opt %s -split-input-file -hasten-matmul-to-runtime-calls="weights=int8" | FileCheck %s --check-prefix=INT8
// RUN: hasten-opt %s -split-input-file -hasten-matmul-to-runtime-calls="weights=int4" | FileCheck %s --check-prefix=INT4
// RUN: hasten-opt %s -split-input-file -hasten-matmul-to-runtime-calls="weights=int4 int4-group=64" | FileCheck %s --check-prefix=INT4G64

// A matmul whose B is a constant global: flag 1 (constant weights).
// CHECK-LABEL: func.func private @hasten_rt_matmul_f32(memref<?x?xf32, strided<[?, ?], offset: ?>>, memref<?x?xf32, strided<[?, ?], offset: ?>>, memref<?x?xf32, strided<[?, ?], offset: ?>>, i32) attributes {llvm.emit_c_interface}
// CHECK-LABEL: func @weights
// CHECK: %[[W:.*]] = memref.get_global @w
// CHECK: %[[A:.*]] = memref.cast %arg0 : memref<4x8xf32> to memref<?x?xf32, strided<[?, ?], offset: ?>>
// CHECK: %[[B:.*]] = memref.cast %[[W]] : memref<8x16xf32> to memref<?x?xf32, strided<[?, ?], offset: ?>>
// CHECK: %[[C:.*]] = memref.cast %arg1
// CHECK: %[[FLAGS:.*]] = arith.constant 1 : i32
// CHECK: call @hasten_rt_matmul_f32(%[[A]], %[[B]], %[[C]], %[[FLAGS]])
// CHECK-NOT: linalg.matmul
// With weights=bf16 the module stores the weight as bf16 (1.0 is 0x3F80)
// and the f32 global is gone.
// BF16: memref.global "private" constant @w_bf16 : memref<8x16xbf16> = dense_resource<weight_bf16>
// BF16-NOT: memref.global "private" constant @w :
// BF16-LABEL: func @weights
// BF16: %[[W:.*]] = memref.get_global @w_bf16 : memref<8x16xbf16>
// BF16: %[[B:.*]] = memref.cast %[[W]] : memref<8x16xbf16> to memref<?x?xbf16, strided<[?, ?], offset: ?>>
// BF16: %[[FLAGS:.*]] = arith.constant 3 : i32
// BF16: call @hasten_rt_matmul_bf16w(%{{.*}}, %[[B]], %{{.*}}, %[[FLAGS]])
// BF16: weight_bf16: "0x02000000803F803F
module {
  memref.global "private" constant @w : memref<8x16xf32> = dense<1.0>
  func.func @weights(%a: memref<4x8xf32>, %c: memref<4x16xf32>) {
    %w = memref.get_global @w : memref<8x16xf32>
    linalg.matmul ins(%a, %w : memref<4x8xf32>, memref<8x16xf32>) outs(%c : memref<4x16xf32>)
    return
  }
}

// -----

// Activations times activations (attention scores): flag 0; batched.
// CHECK-LABEL: func @activations
// CHECK: %[[FLAGS:.*]] = arith.constant 0 : i32
// CHECK: call @hasten_rt_batch_matmul_f32(%{{.*}}, %{{.*}}, %{{.*}}, %[[FLAGS]]) : (memref<?x?x?xf32, strided<[?, ?, ?], offset: ?>>
// BF16-LABEL: func @activations
// BF16: arith.constant 2 : i32
func.func @activations(%a: memref<2x4x8xf32>, %b: memref<2x8x?xf32>, %c: memref<2x4x?xf32>) {
  linalg.batch_matmul ins(%a, %b : memref<2x4x8xf32>, memref<2x8x?xf32>) outs(%c : memref<2x4x?xf32>)
  return
}

// -----

// Integer matmuls and matmuls on tensors keep their linalg form.
// CHECK-LABEL: func @integer
// CHECK: linalg.matmul
// CHECK-NOT: call
// CHECK: linalg.matmul
func.func @integer(%a: memref<4x8xi32>, %b: memref<8x16xi32>, %c: memref<4x16xi32>,
                   %ta: tensor<4x8xf32>, %tb: tensor<8x16xf32>, %tc: tensor<4x16xf32>) -> tensor<4x16xf32> {
  linalg.matmul ins(%a, %b : memref<4x8xi32>, memref<8x16xi32>) outs(%c : memref<4x16xi32>)
  %r = linalg.matmul ins(%ta, %tb : tensor<4x8xf32>, tensor<8x16xf32>) outs(%tc : tensor<4x16xf32>) -> tensor<4x16xf32>
  return %r : tensor<4x16xf32>
}

// -----

// A zero fill right before the matmul into the same buffer is dropped and
// the runtime told to overwrite (bit 2); any other writer in between keeps
// the accumulate form.
// CHECK-LABEL: func @overwrite
// CHECK-NOT: linalg.fill
// CHECK: %[[FLAGS:.*]] = arith.constant 4 : i32
// CHECK: call @hasten_rt_matmul_f32(%{{.*}}, %{{.*}}, %{{.*}}, %[[FLAGS]])
func.func @overwrite(%a: memref<4x8xf32>, %b: memref<8x16xf32>, %c: memref<4x16xf32>) {
  %zero = arith.constant 0.0 : f32
  linalg.fill ins(%zero : f32) outs(%c : memref<4x16xf32>)
  linalg.matmul ins(%a, %b : memref<4x8xf32>, memref<8x16xf32>) outs(%c : memref<4x16xf32>)
  return
}

// -----

// CHECK-LABEL: func @accumulate
// CHECK: linalg.fill
// CHECK: memref.store
// CHECK: %[[FLAGS:.*]] = arith.constant 0 : i32
// CHECK: call @hasten_rt_matmul_f32(%{{.*}}, %{{.*}}, %{{.*}}, %[[FLAGS]])
func.func @accumulate(%a: memref<4x8xf32>, %b: memref<8x16xf32>, %c: memref<4x16xf32>, %v: f32) {
  %zero = arith.constant 0.0 : f32
  %i = arith.constant 1 : index
  linalg.fill ins(%zero : f32) outs(%c : memref<4x16xf32>)
  memref.store %v, %c[%i, %i] : memref<4x16xf32>
  linalg.matmul ins(%a, %b : memref<4x8xf32>, memref<8x16xf32>) outs(%c : memref<4x16xf32>)
  return
}

// -----

// A transposed copy of a constant weight (a tied LM head) is not made: the
// kernel reads the weight through a transposed view, as a constant.
// CHECK-LABEL: func @tied_lm_head
// CHECK-NOT: memref.alloc
// CHECK-NOT: linalg.transpose
// CHECK: %[[W:.*]] = memref.get_global @embed
// CHECK: %[[T:.*]] = memref.transpose %[[W]] (d0, d1) -> (d1, d0) : memref<256x64xf32> to memref<64x256xf32, strided<[1, 64]>>
// CHECK: %[[B:.*]] = memref.cast %[[T]]
// CHECK: %[[FLAGS:.*]] = arith.constant 1 : i32
// CHECK: call @hasten_rt_matmul_f32(%{{.*}}, %[[B]], %{{.*}}, %[[FLAGS]])
// CHECK-NOT: memref.dealloc
module {
  memref.global "private" constant @embed : memref<256x64xf32> = dense<1.0>
  func.func @tied_lm_head(%a: memref<1x64xf32>, %c: memref<1x256xf32>) {
    %w = memref.get_global @embed : memref<256x64xf32>
    %t = memref.alloc() : memref<64x256xf32>
    linalg.transpose ins(%w : memref<256x64xf32>) outs(%t : memref<64x256xf32>) permutation = [1, 0]
    linalg.matmul ins(%a, %t : memref<1x64xf32>, memref<64x256xf32>) outs(%c : memref<1x256xf32>)
    memref.dealloc %t : memref<64x256xf32>
    return
  }
}

// -----

// A transpose of an activation stays a copy: it is written before the
// matmul and only constants are known not to change.
// CHECK-LABEL: func @activation_transpose
// CHECK: linalg.transpose
// CHECK: arith.constant 0 : i32
module {
  func.func @activation_transpose(%a: memref<1x64xf32>, %x: memref<256x64xf32>, %c: memref<1x256xf32>) {
    %t = memref.alloc() : memref<64x256xf32>
    linalg.transpose ins(%x : memref<256x64xf32>) outs(%t : memref<64x256xf32>) permutation = [1, 0]
    linalg.matmul ins(%a, %t : memref<1x64xf32>, memref<64x256xf32>) outs(%c : memref<1x256xf32>)
    memref.dealloc %t : memref<64x256xf32>
    return
  }
}

// -----

// Weights packed here, as the kernels read them (include/hasten/WeightLayout.h):
// a byte global with the format and [K, N], the call to the packed kernel
// with the format in flag bits 8-15, and the f32 weight gone.
// STRIPS: memref.global "private" constant @w_f32_strips : memref<4096xi8> = dense_resource<"w.f32-strips"> {alignment = 64 : i64, hasten.weight_dims = array<i64: 8, 16>, hasten.weight_format = "f32-strips"}
// STRIPS-NOT: memref.global "private" constant @w :
// STRIPS-LABEL: func @packed
// STRIPS: %[[W:.*]] = memref.get_global @w_f32_strips : memref<4096xi8>
// STRIPS: %[[B:.*]] = memref.cast %[[W]] : memref<4096xi8> to memref<?xi8, strided<[?], offset: ?>>
// STRIPS: %[[FLAGS:.*]] = arith.constant 261 : i32
// STRIPS: call @hasten_rt_matmul_packed(%{{.*}}, %[[B]], %{{.*}}, %[[FLAGS]])
// 16 rows (K padded to 16) of 64 floats: columns 0-15 are 1.0, the rest 0.
// STRIPS: "w.f32-strips": "0x400000000000803F0000803F
// bf16 strips: row pairs interleaved (0x3F80 twice), flags 1 | 2 | 4 | 2 << 8.
// BF16STRIPS: memref.global "private" constant @w_bf16_strips : memref<4096xi8>
// BF16STRIPS: arith.constant 519 : i32
// BF16STRIPS: call @hasten_rt_matmul_packed
// BF16STRIPS: "w.bf16-strips": "0x40000000803F803F803F803F
// int8: q = 127 for every 1.0 (scale 1/127 per column), stored + 128; a
// quad of rows is four sixteens of columns, byte 4 j + i holding row i of
// column j; then the scales.
// INT8: memref.global "private" constant @w_int8 : memref<2304xi8> = dense_resource<w.int8> {alignment = 64 : i64, hasten.weight_dims = array<i64: 8, 16>, hasten.weight_format = "int8"}
// INT8: arith.constant 773 : i32
// INT8: call @hasten_rt_matmul_packed
// INT8: w.int8: "0x40000000FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF808080808080808080808080808080808080808080808080808080808080808080808080808080808080808080808080808080808080808080808080808080808080808080808080808080808080808080808080808080808080808080808080808080808080808080808080808080808080808080808080808080808080808080808080808080808080808080808080808080808080808080808080808080808080808080808080808080808080808080808080808080808080808080808080FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF80
// int4 (groups of 32 rows, K padded to 32): nibble 0 for the 16 columns
// (each group's extreme maps to -8, the scale -1/8), 8 (zero) elsewhere; a
// quad of rows is two halves of 64 bytes, byte 4 j + i holding row i of
// columns j (low nibble) and j + 16 (high) of the half's 32.
// INT4: memref.global "private" constant @w_int4_g32 : memref<1152xi8>
// INT4-SAME: hasten.weight_format = "int4-g32"
// INT4: arith.constant 1029 : i32
// INT4: call @hasten_rt_matmul_packed
// INT4: "w.int4-g32": "0x4000000080808080808080808080808080808080808080808080808080808080808080808080808080808080808080808080808080808080808080808080808080808080888888888888888888888888888888888888888888888888888888888888888888888888888888888888888888888888888888888888888888888888888888888080808080808080808080808080808080808080808080808080808080808080808080808080808080808080808080808080808080808080808080808080808088
// INT4G64: memref.global "private" constant @w_int4_g64 : memref<2176xi8>
// INT4G64: arith.constant 1285 : i32
module {
  memref.global "private" constant @w : memref<8x16xf32> = dense_resource<w> {alignment = 64 : i64}
  func.func @packed(%a: memref<4x8xf32>, %c: memref<4x16xf32>) {
    %zero = arith.constant 0.0 : f32
    linalg.fill ins(%zero : f32) outs(%c : memref<4x16xf32>)
    %w = memref.get_global @w : memref<8x16xf32>
    linalg.matmul ins(%a, %w : memref<4x8xf32>, memref<8x16xf32>) outs(%c : memref<4x16xf32>)
    return
  }
}

{-#
  dialect_resources: {
    builtin: {
      w: "0x040000000000803F0000803F0000803F0000803F0000803F0000803F0000803F0000803F0000803F0000803F0000803F0000803F0000803F0000803F0000803F0000803F0000803F0000803F0000803F0000803F0000803F0000803F0000803F0000803F0000803F0000803F0000803F0000803F0000803F0000803F0000803F0000803F0000803F0000803F0000803F0000803F0000803F0000803F0000803F0000803F0000803F0000803F0000803F0000803F0000803F0000803F0000803F0000803F0000803F0000803F0000803F0000803F0000803F0000803F0000803F0000803F0000803F0000803F0000803F0000803F0000803F0000803F0000803F0000803F0000803F0000803F0000803F0000803F0000803F0000803F0000803F0000803F0000803F0000803F0000803F0000803F0000803F0000803F0000803F0000803F0000803F0000803F0000803F0000803F0000803F0000803F0000803F0000803F0000803F0000803F0000803F0000803F0000803F0000803F0000803F0000803F0000803F0000803F0000803F0000803F0000803F0000803F0000803F0000803F0000803F0000803F0000803F0000803F0000803F0000803F0000803F0000803F0000803F0000803F0000803F0000803F0000803F0000803F0000803F0000803F0000803F0000803F0000803F0000803F0000803F0000803F0000803F0000803F"
    }
  }
#-}

// -----

// A tied LM head in f32 stays shared with the embedding (read transposed,
// not stored twice); quantized, it is packed from the transposed view.
// STRIPS-LABEL: func @tied_head_packing
// STRIPS: memref.transpose
// STRIPS: call @hasten_rt_matmul_f32
// INT8: memref.global "private" constant @embed_t_int8 : memref<{{[0-9]+}}xi8>
// INT8-SAME: hasten.weight_dims = array<i64: 64, 256>
// INT8-LABEL: func @tied_head_packing
// INT8-NOT: memref.transpose
// INT8: call @hasten_rt_matmul_packed
module {
  memref.global "private" constant @embed : memref<256x64xf32> = dense<1.0>
  func.func @tied_head_packing(%a: memref<1x64xf32>, %c: memref<1x256xf32>) {
    %w = memref.get_global @embed : memref<256x64xf32>
    %t = memref.alloc() : memref<64x256xf32>
    linalg.transpose ins(%w : memref<256x64xf32>) outs(%t : memref<64x256xf32>) permutation = [1, 0]
    linalg.matmul ins(%a, %t : memref<1x64xf32>, memref<64x256xf32>) outs(%c : memref<1x256xf32>)
    memref.dealloc %t : memref<64x256xf32>
    return
  }
}

// -----

// A weight that arrives quantized (DequantizeLinear of an int8 initializer,
// per-column scales, as ONNX Runtime's quantizer writes it) runs on the int8
// kernels as given: its values (5, stored 5 + 128 = 0x85) and scales (0.5)
// are packed without going through f32, the dequantized copy is gone, and
// so are the int8 and scale globals.
// CHECK: memref.global "private" constant @q_int8 : memref<2304xi8> = dense_resource<weight_int8> {alignment = 64 : i64, hasten.weight_dims = array<i64: 8, 16>, hasten.weight_format = "int8"}
// CHECK-NOT: memref.global "private" constant @q :
// CHECK-NOT: memref.global "private" constant @s :
// CHECK-LABEL: func @quantized
// CHECK-NOT: linalg.generic
// CHECK-NOT: memref.alloc() {{.*}} : memref<8x16xf32>
// CHECK: %[[W:.*]] = memref.get_global @q_int8
// CHECK: %[[FLAGS:.*]] = arith.constant 773 : i32
// CHECK: call @hasten_rt_matmul_packed(%{{.*}}, %{{.*}}, %{{.*}}, %[[FLAGS]])
// CHECK-NOT: memref.dealloc
// CHECK: weight_int8: "0x40000000858585858585858585858585
// The scales, after the 2048 bytes of the strip: 0.5 is 0x3F000000.
// CHECK-SAME: 0000003F0000003F
#identity = affine_map<(d0, d1) -> (d0, d1)>
#column = affine_map<(d0, d1) -> (0, d1)>
module {
  memref.global "private" constant @q : memref<8x16xi8> = dense<5>
  memref.global "private" constant @s : memref<16xf32> = dense<0.5>
  func.func @quantized(%a: memref<4x8xf32>, %c: memref<4x16xf32>) {
    %zero = arith.constant 0.0 : f32
    %q = memref.get_global @q : memref<8x16xi8>
    %s = memref.get_global @s : memref<16xf32>
    %s2 = memref.expand_shape %s [[0, 1]] output_shape [1, 16] : memref<16xf32> into memref<1x16xf32>
    %w = memref.alloc() {alignment = 64 : i64} : memref<8x16xf32>
    linalg.generic {indexing_maps = [#identity, #column, #identity], iterator_types = ["parallel", "parallel"]} ins(%q, %s2 : memref<8x16xi8>, memref<1x16xf32>) outs(%w : memref<8x16xf32>) {
    ^bb0(%in: i8, %scale: f32, %out: f32):
      %f = arith.sitofp %in : i8 to f32
      %m = arith.mulf %f, %scale : f32
      linalg.yield %m : f32
    }
    linalg.fill ins(%zero : f32) outs(%c : memref<4x16xf32>)
    linalg.matmul ins(%a, %w : memref<4x8xf32>, memref<8x16xf32>) outs(%c : memref<4x16xf32>)
    memref.dealloc %w : memref<8x16xf32>
    return
  }
}

// -----

// A zero point of 3 for every column is int8 all the same: the stored bytes
// are q + 125 (5 + 125 = 0x82), so that the fixed 128 subtracts q - 3.
// CHECK: memref.global "private" constant @q_int8 : memref<2304xi8> = dense_resource<weight_int8> {{.*}}hasten.weight_format = "int8"}
// CHECK-LABEL: func @asymmetric
// CHECK-NOT: linalg.generic
// CHECK: call @hasten_rt_matmul_packed
// CHECK: weight_int8: "0x40000000828282828282
#identity2 = affine_map<(d0, d1) -> (d0, d1)>
#column2 = affine_map<(d0, d1) -> (0, d1)>
module {
  memref.global "private" constant @q : memref<8x16xi8> = dense<5>
  memref.global "private" constant @s : memref<16xf32> = dense<0.5>
  memref.global "private" constant @z : memref<16xi8> = dense<3>
  func.func @asymmetric(%a: memref<4x8xf32>, %c: memref<4x16xf32>) {
    %q = memref.get_global @q : memref<8x16xi8>
    %s = memref.get_global @s : memref<16xf32>
    %z = memref.get_global @z : memref<16xi8>
    %s2 = memref.expand_shape %s [[0, 1]] output_shape [1, 16] : memref<16xf32> into memref<1x16xf32>
    %z2 = memref.expand_shape %z [[0, 1]] output_shape [1, 16] : memref<16xi8> into memref<1x16xi8>
    %w = memref.alloc() {alignment = 64 : i64} : memref<8x16xf32>
    linalg.generic {indexing_maps = [#identity2, #column2, #column2, #identity2], iterator_types = ["parallel", "parallel"]} ins(%q, %s2, %z2 : memref<8x16xi8>, memref<1x16xf32>, memref<1x16xi8>) outs(%w : memref<8x16xf32>) {
    ^bb0(%in: i8, %scale: f32, %zp: i8, %out: f32):
      %f = arith.sitofp %in : i8 to f32
      %zf = arith.sitofp %zp : i8 to f32
      %d = arith.subf %f, %zf : f32
      %m = arith.mulf %d, %scale : f32
      linalg.yield %m : f32
    }
    linalg.matmul ins(%a, %w : memref<4x8xf32>, memref<8x16xf32>) outs(%c : memref<4x16xf32>)
    memref.dealloc %w : memref<8x16xf32>
    return
  }
}

// -----

// Zero points that differ between columns: int8-zp, the values as given
// (uint8 200 = 0xC8) and the zero points after the scales (7 and 9 =
// 0x07, 0x09, then 128 = 0x80 for the padding columns).
// CHECK: memref.global "private" constant @"qu_int8-zp" : memref<2368xi8> = dense_resource<"weight_int8-zp"> {{.*}}hasten.weight_format = "int8-zp"}
// CHECK-LABEL: func @zero_points
// CHECK-NOT: linalg.generic
// CHECK: %[[FLAGS:.*]] = arith.constant 1793 : i32
// CHECK: call @hasten_rt_matmul_packed(%{{.*}}, %{{.*}}, %{{.*}}, %[[FLAGS]])
// CHECK: "weight_int8-zp": "0x40000000C8C8C8C8
// CHECK-SAME: 0709070907090709070907090709070980808080
#identity3 = affine_map<(d0, d1) -> (d0, d1)>
#column3 = affine_map<(d0, d1) -> (0, d1)>
module {
  memref.global "private" constant @qu : memref<8x16xi8> = dense<-56>
  memref.global "private" constant @s : memref<16xf32> = dense<0.5>
  memref.global "private" constant @z : memref<16xi8> = dense<[7, 9, 7, 9, 7, 9, 7, 9, 7, 9, 7, 9, 7, 9, 7, 9]>
  func.func @zero_points(%a: memref<4x8xf32>, %c: memref<4x16xf32>) {
    %q = memref.get_global @qu : memref<8x16xi8>
    %s = memref.get_global @s : memref<16xf32>
    %z = memref.get_global @z : memref<16xi8>
    %s2 = memref.expand_shape %s [[0, 1]] output_shape [1, 16] : memref<16xf32> into memref<1x16xf32>
    %z2 = memref.expand_shape %z [[0, 1]] output_shape [1, 16] : memref<16xi8> into memref<1x16xi8>
    %w = memref.alloc() {alignment = 64 : i64} : memref<8x16xf32>
    linalg.generic {indexing_maps = [#identity3, #column3, #column3, #identity3], iterator_types = ["parallel", "parallel"]} ins(%q, %s2, %z2 : memref<8x16xi8>, memref<1x16xf32>, memref<1x16xi8>) outs(%w : memref<8x16xf32>) {
    ^bb0(%in: i8, %scale: f32, %zp: i8, %out: f32):
      %f = arith.uitofp %in : i8 to f32
      %zf = arith.uitofp %zp : i8 to f32
      %d = arith.subf %f, %zf : f32
      %m = arith.mulf %d, %scale : f32
      linalg.yield %m : f32
    }
    linalg.matmul ins(%a, %w : memref<4x8xf32>, memref<8x16xf32>) outs(%c : memref<4x16xf32>)
    memref.dealloc %w : memref<8x16xf32>
    return
  }
}

// -----

// MatMulNBits' form: 4-bit values dequantized per block of 32 rows and
// column ([K / 32, 32, N], read as [K, N] through a collapse and a slice of
// the first 40 rows). The values and zero points are kept as given
// (int4-g32-zp): nibbles 3 in the low halves (0x83: columns j + 16, past
// N, hold 8), padding rows hold their block's zero point (block 1: 6 for
// even columns, 5 for odd ones: 0x86, 0x85), then the f16 scales (0.25 =
// 0x3400) and the zero points per block (block 0: 5, 6, ...; block 1: 6,
// 5, ...; 8 for the padding columns).
// CHECK: memref.global "private" constant @"q4_int4-g32-zp" : memref<2432xi8> = dense_resource<"weight_int4-g32-zp"> {{.*}}hasten.weight_dims = array<i64: 40, 16>, hasten.weight_format = "int4-g32-zp"}
// CHECK-LABEL: func @blocked
// CHECK-NOT: linalg.generic
// CHECK-NOT: memref.collapse_shape
// CHECK-NOT: memref.subview
// CHECK: %[[FLAGS:.*]] = arith.constant 2053 : i32
// CHECK: call @hasten_rt_matmul_packed(%{{.*}}, %{{.*}}, %{{.*}}, %[[FLAGS]])
// CHECK: "weight_int4-g32-zp": "0x400000008383838383
// CHECK-SAME: 86868686858585858686868685858585
// CHECK-SAME: 00340034003400340034
// CHECK-SAME: 05060506050605060506050605060506080808
// CHECK-SAME: 06050605060506050605060506050605080808
#block = affine_map<(d0, d1, d2) -> (d0, d1, d2)>
#perBlock = affine_map<(d0, d1, d2) -> (d0, 0, d2)>
module {
  memref.global "private" constant @q4 : memref<2x32x16xi8> = dense<3>
  memref.global "private" constant @s4 : memref<2x1x16xf32> = dense<0.25>
  memref.global "private" constant @z4 : memref<2x1x16xi8> = dense<[[[5, 6, 5, 6, 5, 6, 5, 6, 5, 6, 5, 6, 5, 6, 5, 6]], [[6, 5, 6, 5, 6, 5, 6, 5, 6, 5, 6, 5, 6, 5, 6, 5]]]>
  func.func @blocked(%a: memref<1x40xf32>, %c: memref<1x16xf32>) {
    %zero = arith.constant 0.0 : f32
    %q = memref.get_global @q4 : memref<2x32x16xi8>
    %s = memref.get_global @s4 : memref<2x1x16xf32>
    %z = memref.get_global @z4 : memref<2x1x16xi8>
    %w = memref.alloc() {alignment = 64 : i64} : memref<2x32x16xf32>
    linalg.generic {indexing_maps = [#block, #perBlock, #perBlock, #block], iterator_types = ["parallel", "parallel", "parallel"]} ins(%q, %s, %z : memref<2x32x16xi8>, memref<2x1x16xf32>, memref<2x1x16xi8>) outs(%w : memref<2x32x16xf32>) {
    ^bb0(%in: i8, %scale: f32, %zp: i8, %out: f32):
      %f = arith.sitofp %in : i8 to f32
      %zf = arith.sitofp %zp : i8 to f32
      %d = arith.subf %f, %zf : f32
      %m = arith.mulf %d, %scale : f32
      linalg.yield %m : f32
    }
    %rows = memref.collapse_shape %w [[0, 1], [2]] : memref<2x32x16xf32> into memref<64x16xf32>
    %first = memref.subview %rows[0, 0] [40, 16] [1, 1] : memref<64x16xf32> to memref<40x16xf32, strided<[16, 1]>>
    linalg.fill ins(%zero : f32) outs(%c : memref<1x16xf32>)
    linalg.matmul ins(%a, %first : memref<1x40xf32>, memref<40x16xf32, strided<[16, 1]>>) outs(%c : memref<1x16xf32>)
    memref.dealloc %w : memref<2x32x16xf32>
    return
  }
}

// -----

// An integer matmul of int8 operands into i32 (a QDQ model's, after
// --hasten-fold-quantized-contractions) calls the int8 kernel with the zero
// points as arguments: flags 5 for a constant weight (1) whose output was
// just zeroed (4; the fill goes); a weight computed at run time gets 0 and
// the kernel accumulates into C.
// CHECK-LABEL: func.func private @hasten_rt_matmul_i8(memref<?x?xi8, strided<[?, ?], offset: ?>>, memref<?x?xi8, strided<[?, ?], offset: ?>>, memref<?x?xi32, strided<[?, ?], offset: ?>>, i32, i32, i32) attributes {llvm.emit_c_interface}
// CHECK-LABEL: func @int8_matmuls
// CHECK-SAME: (%[[X:.*]]: memref<4x8xi8>, %[[ACT:.*]]: memref<8x16xi8>, %[[C:.*]]: memref<4x16xi32>, %[[ZA:.*]]: i32)
// CHECK-NOT: linalg.fill
// CHECK: %[[ZB:.*]] = arith.constant 0 : i32
// CHECK: %[[W:.*]] = memref.get_global @wq
// CHECK: %[[A:.*]] = memref.cast %[[X]] : memref<4x8xi8> to memref<?x?xi8, strided<[?, ?], offset: ?>>
// CHECK: %[[B:.*]] = memref.cast %[[W]] : memref<8x16xi8> to memref<?x?xi8, strided<[?, ?], offset: ?>>
// CHECK: %[[OUT:.*]] = memref.cast %[[C]] : memref<4x16xi32> to memref<?x?xi32, strided<[?, ?], offset: ?>>
// CHECK: %[[FLAGS:.*]] = arith.constant 5 : i32
// CHECK: call @hasten_rt_matmul_i8(%[[A]], %[[B]], %[[OUT]], %[[ZA]], %[[ZB]], %[[FLAGS]])
// CHECK: %[[NOFLAGS:.*]] = arith.constant 0 : i32
// CHECK: call @hasten_rt_matmul_i8(%{{.*}}, %{{.*}}, %{{.*}}, %[[ZA]], %[[ZB]], %[[NOFLAGS]])
// CHECK-NOT: linalg.quantized_matmul
module {
  memref.global "private" constant @wq : memref<8x16xi8> = dense<3>
  func.func @int8_matmuls(%x: memref<4x8xi8>, %act: memref<8x16xi8>, %c: memref<4x16xi32>, %za: i32) {
    %zero = arith.constant 0 : i32
    %w = memref.get_global @wq : memref<8x16xi8>
    linalg.fill ins(%zero : i32) outs(%c : memref<4x16xi32>)
    linalg.quantized_matmul ins(%x, %w, %za, %zero : memref<4x8xi8>, memref<8x16xi8>, i32, i32) outs(%c : memref<4x16xi32>)
    linalg.quantized_matmul ins(%x, %act, %za, %zero : memref<4x8xi8>, memref<8x16xi8>, i32, i32) outs(%c : memref<4x16xi32>)
    return
  }
}
