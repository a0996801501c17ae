// RUN: hasten-opt %s -split-input-file -hasten-gpu-gemm | FileCheck %s
// RUN: hasten-opt %s -split-input-file -hasten-gpu-gemm=precision=bf16 | FileCheck %s --check-prefix=BF16
// RUN: hasten-opt %s -split-input-file -hasten-gpu-gemm=precision=tf32 | FileCheck %s --check-prefix=TF32

// A Gemm with its bias, as imported and bufferized: the zero fill is
// dropped (the product overwrites), the bias add after it (through a
// reshape) becomes the product's epilogue, and nothing else is left.
// CHECK-LABEL: func.func @bias
// CHECK-SAME: (%[[A:.*]]: memref<?x4xf32>
// CHECK: %[[W:.*]] = memref.get_global @w
// CHECK: %[[B:.*]] = memref.get_global @b
// CHECK: %[[C:.*]] = memref.alloc
// CHECK-NOT: linalg.fill
// CHECK: hasten.gpu_gemm %[[A]], %[[W]] bias(%[[B]] : memref<6xf32>) into %[[C]] : memref<?x4xf32>, memref<4x6xf32> into memref<?x6xf32>
// CHECK-NOT: linalg.
// TF32-LABEL: func.func @bias
// TF32: hasten.gpu_gemm {{.*}} into %{{.*}} tf32 :
// With bf16 operands the weight is stored as bf16 (the f32 copy dropped:
// nothing else reads it) and the activation converted by a loop nest (a
// kernel, later) into a buffer freed after the product; the bias and the
// product stay f32.
// BF16: memref.global "private" constant @w_bf16 : memref<4x6xbf16>
// BF16-NOT: @w :
// BF16-LABEL: func.func @bias
// BF16-SAME: (%[[A:.*]]: memref<?x4xf32>
// BF16: %[[W:.*]] = memref.get_global @w_bf16 : memref<4x6xbf16>
// BF16: %[[AB:.*]] = memref.alloc(%{{.*}}) : memref<?x4xbf16>
// BF16: linalg.generic {{.*}} ins(%[[A]] : memref<?x4xf32>) outs(%[[AB]] : memref<?x4xbf16>)
// BF16: arith.truncf %{{.*}} : f32 to bf16
// BF16: hasten.gpu_gemm %[[AB]], %[[W]] bias(%{{.*}} : memref<6xf32>) into %{{.*}} : memref<?x4xbf16>, memref<4x6xbf16> into memref<?x6xf32>
// BF16-NEXT: memref.dealloc %[[AB]]
memref.global "private" constant @w : memref<4x6xf32> = dense<1.5>
memref.global "private" constant @b : memref<6xf32> = dense<0.25>
func.func @bias(%a: memref<?x4xf32>, %n: index) -> memref<1x?x6xf32> {
  %zero = arith.constant 0.0 : f32
  %w = memref.get_global @w : memref<4x6xf32>
  %b = memref.get_global @b : memref<6xf32>
  %c = memref.alloc(%n) : memref<?x6xf32>
  linalg.fill ins(%zero : f32) outs(%c : memref<?x6xf32>)
  linalg.matmul ins(%a, %w : memref<?x4xf32>, memref<4x6xf32>) outs(%c : memref<?x6xf32>)
  %e = memref.expand_shape %c [[0, 1], [2]] output_shape [1, %n, 6] : memref<?x6xf32> into memref<1x?x6xf32>
  linalg.generic {indexing_maps = [affine_map<(d0, d1, d2) -> (d0, d1, d2)>, affine_map<(d0, d1, d2) -> (d2)>, affine_map<(d0, d1, d2) -> (d0, d1, d2)>], iterator_types = ["parallel", "parallel", "parallel"]} ins(%e, %b : memref<1x?x6xf32>, memref<6xf32>) outs(%e : memref<1x?x6xf32>) {
  ^bb0(%x: f32, %y: f32, %o: f32):
    %s = arith.addf %y, %x : f32
    linalg.yield %s : f32
  }
  return %e : memref<1x?x6xf32>
}

// -----

// A tied LM head reads the embedding through a transposed copy: the product
// reads the embedding itself through a transposed view (cuBLASLt's
// transposed operand), and the copy is gone. A scale after the product is
// no bias; without a zero fill the product accumulates.
// CHECK-LABEL: func.func @tied
// CHECK-SAME: (%[[A:.*]]: memref<?x4xf32>, %[[C:.*]]: memref<?x6xf32>
// CHECK: %[[E:.*]] = memref.get_global @e : memref<6x4xf32>
// CHECK-NOT: linalg.transpose
// CHECK: %[[T:.*]] = memref.transpose %[[E]] (d0, d1) -> (d1, d0) : memref<6x4xf32> to memref<4x6xf32, strided<[1, 4]>>
// CHECK: hasten.gpu_gemm %[[A]], %[[T]] into %[[C]] accumulate : memref<?x4xf32>, memref<4x6xf32, strided<[1, 4]>> into memref<?x6xf32>
// CHECK: linalg.generic
// CHECK: arith.mulf
// The weight's bf16 copy is transposed the same way.
// BF16-LABEL: func.func @tied
// BF16: %[[E:.*]] = memref.get_global @e_bf16 : memref<6x4xbf16>
// BF16: %[[T:.*]] = memref.transpose %[[E]] (d0, d1) -> (d1, d0) : memref<6x4xbf16> to memref<4x6xbf16, strided<[1, 4]>>
// BF16: hasten.gpu_gemm %{{.*}}, %[[T]] into
memref.global "private" constant @e : memref<6x4xf32> = dense<2.0>
func.func @tied(%a: memref<?x4xf32>, %c: memref<?x6xf32>) {
  %two = arith.constant 2.0 : f32
  %e = memref.get_global @e : memref<6x4xf32>
  %t = memref.alloc() : memref<4x6xf32>
  linalg.transpose ins(%e : memref<6x4xf32>) outs(%t : memref<4x6xf32>) permutation = [1, 0]
  linalg.matmul ins(%a, %t : memref<?x4xf32>, memref<4x6xf32>) outs(%c : memref<?x6xf32>)
  memref.dealloc %t : memref<4x6xf32>
  linalg.generic {indexing_maps = [affine_map<(d0, d1) -> (d0, d1)>, affine_map<(d0, d1) -> (d0, d1)>], iterator_types = ["parallel", "parallel"]} ins(%c : memref<?x6xf32>) outs(%c : memref<?x6xf32>) {
  ^bb0(%x: f32, %o: f32):
    %s = arith.mulf %x, %two : f32
    linalg.yield %s : f32
  }
  return
}

// -----

// Batched products of activations (both operands converted with bf16); a
// bias computed after the product is not there yet, so it stays an add.
// CHECK-LABEL: func.func @batched
// CHECK: hasten.gpu_gemm %{{.*}}, %{{.*}} into %{{.*}} : memref<2x?x8xf32>, memref<2x8x?xf32> into memref<2x?x?xf32>
// CHECK: memref.alloc
// CHECK: linalg.generic
// CHECK: arith.addf
// BF16-LABEL: func.func @batched
// BF16-COUNT-2: arith.truncf
// BF16: hasten.gpu_gemm %{{.*}}, %{{.*}} into %{{.*}} : memref<2x?x8xbf16>, memref<2x8x?xbf16> into memref<2x?x?xf32>
func.func @batched(%q: memref<2x?x8xf32>, %k: memref<2x8x?xf32>, %c: memref<2x?x?xf32>, %n: index) {
  %zero = arith.constant 0.0 : f32
  linalg.fill ins(%zero : f32) outs(%c : memref<2x?x?xf32>)
  linalg.batch_matmul ins(%q, %k : memref<2x?x8xf32>, memref<2x8x?xf32>) outs(%c : memref<2x?x?xf32>)
  %b = memref.alloc(%n) : memref<?xf32>
  linalg.fill ins(%zero : f32) outs(%b : memref<?xf32>)
  linalg.generic {indexing_maps = [affine_map<(d0, d1, d2) -> (d0, d1, d2)>, affine_map<(d0, d1, d2) -> (d2)>, affine_map<(d0, d1, d2) -> (d0, d1, d2)>], iterator_types = ["parallel", "parallel", "parallel"]} ins(%c, %b : memref<2x?x?xf32>, memref<?xf32>) outs(%c : memref<2x?x?xf32>) {
  ^bb0(%x: f32, %y: f32, %o: f32):
    %s = arith.addf %x, %y : f32
    linalg.yield %s : f32
  }
  memref.dealloc %b : memref<?xf32>
  return
}

// -----

// A vector added along the rows is no bias epilogue (cuBLASLt adds one per
// column of the row-major product): the add stays.
// CHECK-LABEL: func.func @per_row
// CHECK: hasten.gpu_gemm %{{.*}}, %{{.*}} into %{{.*}} : memref<3x4xf32>, memref<4x6xf32> into memref<3x6xf32>
// CHECK: linalg.generic
// CHECK: arith.addf
memref.global "private" constant @r : memref<3xf32> = dense<1.0>
func.func @per_row(%a: memref<3x4xf32>, %w: memref<4x6xf32>, %c: memref<3x6xf32>) {
  %zero = arith.constant 0.0 : f32
  %r = memref.get_global @r : memref<3xf32>
  linalg.fill ins(%zero : f32) outs(%c : memref<3x6xf32>)
  linalg.matmul ins(%a, %w : memref<3x4xf32>, memref<4x6xf32>) outs(%c : memref<3x6xf32>)
  linalg.generic {indexing_maps = [affine_map<(d0, d1) -> (d0, d1)>, affine_map<(d0, d1) -> (d0)>, affine_map<(d0, d1) -> (d0, d1)>], iterator_types = ["parallel", "parallel"]} ins(%c, %r : memref<3x6xf32>, memref<3xf32>) outs(%c : memref<3x6xf32>) {
  ^bb0(%x: f32, %y: f32, %o: f32):
    %s = arith.addf %x, %y : f32
    linalg.yield %s : f32
  }
  return
}

// -----

// GPT-2's MLP after elementwise fusion: bias and tanh-GELU in one generic,
// in place on the product (the bias its first input, as elementwise fusion
// may order them), spelled with x*x*x, through a reshape. The generic
// becomes the GELU epilogue with the bias.
// CHECK-LABEL: func.func @bias_gelu_tanh
// CHECK: %[[B:.*]] = memref.get_global @b2
// CHECK: hasten.gpu_gemm %{{.*}}, %{{.*}} bias(%[[B]] : memref<6xf32>) into %{{.*}} activation "gelu_tanh" :
// CHECK-NOT: linalg.generic
// CHECK: return
memref.global "private" constant @w2 : memref<4x6xf32> = dense<0.5>
memref.global "private" constant @b2 : memref<6xf32> = dense<0.125>
func.func @bias_gelu_tanh(%a: memref<?x4xf32>, %n: index) -> memref<1x?x6xf32> {
  %zero = arith.constant 0.0 : f32
  %half = arith.constant 0.5 : f32
  %one = arith.constant 1.0 : f32
  %c0 = arith.constant 0.044715 : f32
  %c1 = arith.constant 0.797884583 : f32
  %w = memref.get_global @w2 : memref<4x6xf32>
  %b = memref.get_global @b2 : memref<6xf32>
  %c = memref.alloc(%n) : memref<?x6xf32>
  linalg.fill ins(%zero : f32) outs(%c : memref<?x6xf32>)
  linalg.matmul ins(%a, %w : memref<?x4xf32>, memref<4x6xf32>) outs(%c : memref<?x6xf32>)
  %e = memref.expand_shape %c [[0, 1], [2]] output_shape [1, %n, 6] : memref<?x6xf32> into memref<1x?x6xf32>
  linalg.generic {indexing_maps = [affine_map<(d0, d1, d2) -> (d2)>, affine_map<(d0, d1, d2) -> (d0, d1, d2)>, affine_map<(d0, d1, d2) -> (d0, d1, d2)>], iterator_types = ["parallel", "parallel", "parallel"]} ins(%b, %e : memref<6xf32>, memref<1x?x6xf32>) outs(%e : memref<1x?x6xf32>) {
  ^bb0(%y: f32, %x: f32, %o: f32):
    %v = arith.addf %y, %x : f32
    %v2 = arith.mulf %v, %v : f32
    %v3 = arith.mulf %v2, %v : f32
    %k = arith.mulf %v3, %c0 : f32
    %u = arith.addf %v, %k : f32
    %s = arith.mulf %u, %c1 : f32
    %t = math.tanh %s : f32
    %p = arith.addf %t, %one : f32
    %h = arith.mulf %v, %half : f32
    %g = arith.mulf %h, %p : f32
    linalg.yield %g : f32
  }
  return %e : memref<1x?x6xf32>
}

// -----

// A ReLU alone (no bias) written as a compare and select, and a GELU with
// pow(x, 3) whose tanh is --hasten-approximate-math's polynomial: epilogues.
// CHECK-LABEL: func.func @relu_and_approximated_gelu
// CHECK: hasten.gpu_gemm %{{.*}}, %{{.*}} into %{{.*}} activation "relu" :
// CHECK: hasten.gpu_gemm %{{.*}}, %{{.*}} into %{{.*}} activation "gelu_tanh" :
// CHECK-NOT: linalg.generic
// CHECK: return
func.func @relu_and_approximated_gelu(%a: memref<3x4xf32>, %w: memref<4x6xf32>, %c: memref<3x6xf32>,
                                      %d: memref<3x6xf32>) {
  %zero = arith.constant 0.0 : f32
  linalg.fill ins(%zero : f32) outs(%c : memref<3x6xf32>)
  linalg.matmul ins(%a, %w : memref<3x4xf32>, memref<4x6xf32>) outs(%c : memref<3x6xf32>)
  linalg.generic {indexing_maps = [affine_map<(d0, d1) -> (d0, d1)>, affine_map<(d0, d1) -> (d0, d1)>], iterator_types = ["parallel", "parallel"]} ins(%c : memref<3x6xf32>) outs(%c : memref<3x6xf32>) {
  ^bb0(%x: f32, %o: f32):
    %positive = arith.cmpf ogt, %x, %zero : f32
    %r = arith.select %positive, %x, %zero : f32
    linalg.yield %r : f32
  }
  linalg.fill ins(%zero : f32) outs(%d : memref<3x6xf32>)
  linalg.matmul ins(%a, %w : memref<3x4xf32>, memref<4x6xf32>) outs(%d : memref<3x6xf32>)
  linalg.generic {indexing_maps = [affine_map<(d0, d1) -> (d0, d1)>, affine_map<(d0, d1) -> (d0, d1)>], iterator_types = ["parallel", "parallel"]} ins(%d : memref<3x6xf32>) outs(%d : memref<3x6xf32>) {
  ^bb0(%x: f32, %o: f32):
    %three = arith.constant 3.0 : f32
    %half = arith.constant 0.5 : f32
    %one = arith.constant 1.0 : f32
    %c0 = arith.constant 0.044715 : f32
    %c1 = arith.constant 0.797884583 : f32
    %cube = math.powf %x, %three : f32
    %k = arith.mulf %c0, %cube : f32
    %u = arith.addf %x, %k : f32
    %s = arith.mulf %c1, %u : f32
    %t = math.tanh %s : f32
    %p = arith.addf %one, %t : f32
    %h = arith.mulf %half, %x : f32
    %g = arith.mulf %h, %p : f32
    linalg.yield %g : f32
  }
  return
}

// -----

// Activations cuBLASLt does not compute stay generated kernels: erf-GELU
// (4e-4 from the tanh form), sigmoid-GELU and a leaky ReLU.
// CHECK-LABEL: func.func @not_epilogues
// CHECK-NOT: activation
// CHECK: hasten.gpu_gemm
// CHECK: linalg.generic
// CHECK: math.erf
// CHECK: hasten.gpu_gemm
// CHECK: linalg.generic
// CHECK: math.exp
// CHECK: hasten.gpu_gemm
// CHECK: linalg.generic
// CHECK: arith.select
func.func @not_epilogues(%a: memref<3x4xf32>, %w: memref<4x6xf32>, %c: memref<3x6xf32>,
                         %d: memref<3x6xf32>, %e: memref<3x6xf32>) {
  %zero = arith.constant 0.0 : f32
  %half = arith.constant 0.5 : f32
  %one = arith.constant 1.0 : f32
  %rsqrt2 = arith.constant 0.707106769 : f32
  linalg.fill ins(%zero : f32) outs(%c : memref<3x6xf32>)
  linalg.matmul ins(%a, %w : memref<3x4xf32>, memref<4x6xf32>) outs(%c : memref<3x6xf32>)
  linalg.generic {indexing_maps = [affine_map<(d0, d1) -> (d0, d1)>, affine_map<(d0, d1) -> (d0, d1)>], iterator_types = ["parallel", "parallel"]} ins(%c : memref<3x6xf32>) outs(%c : memref<3x6xf32>) {
  ^bb0(%x: f32, %o: f32):
    %s = arith.mulf %x, %rsqrt2 : f32
    %t = math.erf %s : f32
    %p = arith.addf %t, %one : f32
    %h = arith.mulf %x, %half : f32
    %g = arith.mulf %h, %p : f32
    linalg.yield %g : f32
  }
  linalg.fill ins(%zero : f32) outs(%d : memref<3x6xf32>)
  linalg.matmul ins(%a, %w : memref<3x4xf32>, memref<4x6xf32>) outs(%d : memref<3x6xf32>)
  linalg.generic {indexing_maps = [affine_map<(d0, d1) -> (d0, d1)>, affine_map<(d0, d1) -> (d0, d1)>], iterator_types = ["parallel", "parallel"]} ins(%d : memref<3x6xf32>) outs(%d : memref<3x6xf32>) {
  ^bb0(%x: f32, %o: f32):
    %k = arith.constant -1.702 : f32
    %s = arith.mulf %x, %k : f32
    %x2 = math.exp %s : f32
    %den = arith.addf %x2, %one : f32
    %g = arith.divf %x, %den : f32
    linalg.yield %g : f32
  }
  linalg.fill ins(%zero : f32) outs(%e : memref<3x6xf32>)
  linalg.matmul ins(%a, %w : memref<3x4xf32>, memref<4x6xf32>) outs(%e : memref<3x6xf32>)
  linalg.generic {indexing_maps = [affine_map<(d0, d1) -> (d0, d1)>, affine_map<(d0, d1) -> (d0, d1)>], iterator_types = ["parallel", "parallel"]} ins(%e : memref<3x6xf32>) outs(%e : memref<3x6xf32>) {
  ^bb0(%x: f32, %o: f32):
    %slope = arith.constant 0.01 : f32
    %positive = arith.cmpf ogt, %x, %zero : f32
    %small = arith.mulf %x, %slope : f32
    %r = arith.select %positive, %x, %small : f32
    linalg.yield %r : f32
  }
  return
}

// -----

// What cuBLASLt does not take stays for the generated kernels: integer
// products, mixed operand types, other indexing maps.
// CHECK-LABEL: func.func @left_alone
// CHECK-NOT: hasten.gpu_gemm
// CHECK-COUNT-2: linalg.matmul
func.func @left_alone(%a: memref<4x8xi8>, %b: memref<8x4xi8>, %c: memref<4x4xi32>,
                      %x: memref<4x8xf32>, %y: memref<8x4xf16>, %z: memref<4x4xf32>) {
  linalg.matmul ins(%a, %b : memref<4x8xi8>, memref<8x4xi8>) outs(%c : memref<4x4xi32>)
  linalg.matmul ins(%x, %y : memref<4x8xf32>, memref<8x4xf16>) outs(%z : memref<4x4xf32>)
  return
}
