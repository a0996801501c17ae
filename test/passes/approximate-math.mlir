// RUN: hasten-opt %s -split-input-file -hasten-approximate-math | FileCheck %s

// exp, tanh, erf and log on f32 become inline polynomial arithmetic, not
// calls; f64 keeps its libm-backed op.
// CHECK-LABEL: func @f32_ops
// CHECK-NOT: math.exp
// CHECK-NOT: math.tanh
// CHECK-NOT: math.erf
// CHECK-NOT: math.log
// CHECK: return
func.func @f32_ops(%x: f32) -> (f32, f32, f32, f32) {
  %e = math.exp %x : f32
  %t = math.tanh %x : f32
  %r = math.erf %x : f32
  %l = math.log %x : f32
  return %e, %t, %r, %l : f32, f32, f32, f32
}

// CHECK-LABEL: func @f64_op
// CHECK: math.exp %{{.*}} : f64
func.func @f64_op(%x: f64) -> f64 {
  %e = math.exp %x : f64
  return %e : f64
}

// -----

// exp(x) = 2^n * p(r): x clamped to [-87.8, 88.8], n = floor(x log2(e) + 1/2)
// clamped to [-127, 127], r = x - n ln(2) with ln(2) split in two for
// accuracy, a degree-7 polynomial in r, and 2^n built from n's bits.
// CHECK-LABEL: func @exp
// CHECK-SAME: (%[[X:.*]]: f32)
// CHECK-DAG: %[[HALF:.*]] = arith.constant 5.000000e-01 : f32
// CHECK-DAG: %[[LOG2E:.*]] = arith.constant 1.44269502 : f32
// CHECK-DAG: %[[LN2HI:.*]] = arith.constant -0.693359375 : f32
// CHECK-DAG: %[[LN2LO:.*]] = arith.constant 2.12194442E-4 : f32
// CHECK-DAG: %[[HI:.*]] = arith.constant 8.880000e+01 : f32
// CHECK-DAG: %[[LO:.*]] = arith.constant -8.780000e+01 : f32
// CHECK-DAG: %[[BIAS:.*]] = arith.constant 127 : i32
// CHECK-DAG: %[[MANT:.*]] = arith.constant 23 : i32
// CHECK: %[[GE:.*]] = arith.cmpf uge, %[[X]], %[[LO]] : f32
// CHECK: %[[X1:.*]] = arith.select %[[GE]], %[[X]], %[[LO]] : f32
// CHECK: %[[LE:.*]] = arith.cmpf ule, %[[X1]], %[[HI]] : f32
// CHECK: %[[XC:.*]] = arith.select %[[LE]], %[[X1]], %[[HI]] : f32
// CHECK: %[[T:.*]] = math.fma %[[XC]], %[[LOG2E]], %[[HALF]] : f32
// CHECK: %[[N0:.*]] = math.floor %[[T]] : f32
// CHECK: %[[N1:.*]] = arith.select %{{.*}}, %[[N0]], %{{.*}} : f32
// CHECK: %[[N:.*]] = arith.select %{{.*}}, %[[N1]], %{{.*}} : f32
// CHECK: %[[R0:.*]] = math.fma %[[LN2HI]], %[[N]], %[[XC]] : f32
// CHECK: %[[R:.*]] = math.fma %[[LN2LO]], %[[N]], %[[R0]] : f32
// CHECK: math.fma %[[R]], %{{.*}}, %{{.*}} : f32
// CHECK-COUNT-4: math.fma %{{.*}}, %[[R]], %{{.*}} : f32
// CHECK: %[[R2:.*]] = arith.mulf %[[R]], %[[R]] : f32
// CHECK: %[[PR:.*]] = math.fma %{{.*}}, %[[R2]], %[[R]] : f32
// CHECK: %[[P:.*]] = arith.addf %[[PR]], %{{.*}} : f32
// CHECK: %[[NI:.*]] = arith.fptosi %[[N]] : f32 to i32
// CHECK: %[[E:.*]] = arith.addi %[[NI]], %[[BIAS]] : i32
// CHECK: %[[BITS:.*]] = arith.shli %[[E]], %[[MANT]] : i32
// CHECK: %[[POW2:.*]] = arith.bitcast %[[BITS]] : i32 to f32
// CHECK: %[[Y:.*]] = arith.mulf %[[P]], %[[POW2]] : f32
// CHECK: return %[[Y]]
func.func @exp(%x: f32) -> f32 {
  %e = math.exp %x : f32
  return %e : f32
}

// -----

// exp2(x) = 2^n * p(f): x clamped to [-127, 128], n = x rounded by adding
// and subtracting 1.5 * 2^23, f = x - n, a degree-5 polynomial in f, and
// 2^n from the bits of x + 1.5 * 2^23 (n in its low mantissa bits), with
// no float-to-int conversion. Vectors take the same form.
// CHECK-LABEL: func @exp2
// CHECK-SAME: (%[[X:.*]]: vector<16xf32>)
// CHECK-DAG: %[[LO:.*]] = arith.constant dense<-1.270000e+02> : vector<16xf32>
// CHECK-DAG: %[[HI:.*]] = arith.constant dense<1.280000e+02> : vector<16xf32>
// CHECK-DAG: %[[MAGIC:.*]] = arith.constant dense<0x4B400000> : vector<16xf32>
// CHECK-DAG: %[[BIAS:.*]] = arith.constant dense<1262485377> : vector<16xi32>
// CHECK-DAG: %[[MANT:.*]] = arith.constant dense<23> : vector<16xi32>
// CHECK: %[[X0:.*]] = arith.maximumf %[[X]], %[[LO]]
// CHECK: %[[XC:.*]] = arith.minimumf %[[X0]], %[[HI]]
// CHECK: %[[S:.*]] = arith.addf %[[XC]], %[[MAGIC]]
// CHECK: %[[N:.*]] = arith.subf %[[S]], %[[MAGIC]]
// CHECK: %[[F:.*]] = arith.subf %[[XC]], %[[N]]
// CHECK-COUNT-5: math.fma %{{.*}}, %[[F]], %{{.*}} : vector<16xf32>
// CHECK: %[[BITS:.*]] = arith.bitcast %[[S]] : vector<16xf32> to vector<16xi32>
// CHECK: %[[E:.*]] = arith.subi %[[BITS]], %[[BIAS]]
// CHECK: %[[SH:.*]] = arith.shli %[[E]], %[[MANT]]
// CHECK: %[[POW2:.*]] = arith.bitcast %[[SH]] : vector<16xi32> to vector<16xf32>
// CHECK: %[[Y:.*]] = arith.mulf %{{.*}}, %[[POW2]]
// CHECK: return %[[Y]]
func.func @exp2(%x: vector<16xf32>) -> vector<16xf32> {
  %e = math.exp2 %x : vector<16xf32>
  return %e : vector<16xf32>
}

// CHECK-LABEL: func @exp2_f64
// CHECK: math.exp2 %{{.*}} : f64
func.func @exp2_f64(%x: f64) -> f64 {
  %e = math.exp2 %x : f64
  return %e : f64
}
