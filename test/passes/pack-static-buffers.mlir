// RUN: hasten-opt %s -split-input-file -hasten-pack-static-buffers | FileCheck %s
// RUN: hasten-opt %s -split-input-file -hasten-pack-static-buffers=alignment=1024 | FileCheck %s --check-prefix=ALIGN
// RUN: not hasten-opt %s -split-input-file -hasten-pack-static-buffers=alignment=96 2>&1 | FileCheck %s --check-prefix=BAD-ALIGN

// Three buffers: %a and %b are alive together, %c only after %a's last
// use, so %c takes %a's place. The arena is one allocation, freed at the
// return; the dynamic buffer keeps its own allocation.
// CHECK-LABEL: func.func @three(
// CHECK-SAME: attributes {hasten.arena_buffers = 3 : i64, hasten.arena_bytes = 512 : i64}
// CHECK: %[[ARENA:.*]] = memref.alloc() {alignment = 64 : i64} : memref<512xi8>
// CHECK: %[[A_OFF:.*]] = arith.constant 0 : index
// CHECK: %[[A:.*]] = memref.view %[[ARENA]][%[[A_OFF]]][] : memref<512xi8> to memref<64xf32>
// CHECK: %[[B_OFF:.*]] = arith.constant 256 : index
// CHECK: %[[B:.*]] = memref.view %[[ARENA]][%[[B_OFF]]][] : memref<512xi8> to memref<64xf32>
// CHECK: %[[C_OFF:.*]] = arith.constant 0 : index
// CHECK: %[[C:.*]] = memref.view %[[ARENA]][%[[C_OFF]]][] : memref<512xi8> to memref<16xf32>
// CHECK: %[[D:.*]] = memref.alloc(%arg1) : memref<?xf32>
// CHECK-NOT: memref.dealloc %[[A]]
// CHECK: memref.dealloc %[[D]]
// CHECK: memref.dealloc %[[ARENA]]
// CHECK-NEXT: return
// With 1024-byte alignment (the CUDA target asks for 256) %b starts at the
// next multiple of it, and the arena is that much larger.
// ALIGN-LABEL: func.func @three(
// ALIGN-SAME: hasten.arena_bytes = 1280 : i64
// ALIGN: memref.alloc() {alignment = 1024 : i64} : memref<1280xi8>
// ALIGN: arith.constant 1024 : index
// BAD-ALIGN: error: --hasten-pack-static-buffers: alignment must be a power of two, got 96
func.func @three(%out: memref<64xf32>, %n: index) {
  %f = arith.constant 1.0 : f32
  %a = memref.alloc() : memref<64xf32>
  linalg.fill ins(%f : f32) outs(%a : memref<64xf32>)
  %b = memref.alloc() : memref<64xf32>
  linalg.copy ins(%a : memref<64xf32>) outs(%b : memref<64xf32>)
  memref.dealloc %a : memref<64xf32>
  %c = memref.alloc() : memref<16xf32>
  linalg.fill ins(%f : f32) outs(%c : memref<16xf32>)
  %d = memref.alloc(%n) : memref<?xf32>
  linalg.fill ins(%f : f32) outs(%d : memref<?xf32>)
  linalg.copy ins(%b : memref<64xf32>) outs(%out : memref<64xf32>)
  memref.dealloc %b : memref<64xf32>
  memref.dealloc %c : memref<16xf32>
  memref.dealloc %d : memref<?xf32>
  return
}

// -----

// A returned buffer is not the function's to place.
// CHECK-LABEL: func.func @returned(
// CHECK-NOT: memref.view
// CHECK: %[[R:.*]] = memref.alloc() : memref<8xf32>
// CHECK: return %[[R]]
func.func @returned() -> memref<8xf32> {
  %f = arith.constant 1.0 : f32
  %t = memref.alloc() : memref<8xf32>
  linalg.fill ins(%f : f32) outs(%t : memref<8xf32>)
  memref.dealloc %t : memref<8xf32>
  %r = memref.alloc() : memref<8xf32>
  linalg.fill ins(%f : f32) outs(%r : memref<8xf32>)
  return %r : memref<8xf32>
}
