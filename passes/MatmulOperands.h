//===- MatmulOperands.h - where a matmul's operands come from -*- C++ -*-===//
//
// Shared by the passes that hand matmuls on buffers to a library (the CPU's
// runtime kernels, the GPU's cuBLASLt): recognizing constant weights, the
// zero fill a product may overwrite instead of accumulating into, a
// transposed copy of a weight that a strided view can replace, and
// narrowed (bf16, f16) copies of constant weights.
//
//===----------------------------------------------------------------------===//

#ifndef HASTEN_PASSES_MATMULOPERANDS_H
#define HASTEN_PASSES_MATMULOPERANDS_H

#include "mlir/Dialect/Linalg/IR/Linalg.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/IR/PatternMatch.h"
#include "mlir/IR/SymbolTable.h"

#include <optional>
#include <string>
#include <vector>

namespace hasten {

/// True when `value` is (a view of) a constant global: a weight.
bool isConstantWeight(mlir::Value value);

/// The linalg.fill of zero that last wrote `op`'s output, when nothing else
/// touches memory in between: the matmul can then overwrite instead of
/// accumulate, and the fill is dead.
mlir::linalg::FillOp zeroFillBefore(mlir::linalg::LinalgOp op);

/// When B is a transposed copy of a constant weight (a tied LM head reads
/// the embedding matrix as Transpose(embed)), returns a transposed view of
/// the weight itself, sets it as B and erases the copy; null otherwise.
mlir::Value viewThroughConstantTranspose(mlir::IRRewriter &rewriter, mlir::linalg::LinalgOp op);

/// The values of the constant f32 global `global`, or nothing when they
/// cannot be read.
std::optional<std::vector<float>> readF32Values(mlir::memref::GlobalOp global);

/// The resource key a copy of `global` is stored under: the weight's ONNX
/// name (the manifest lists weights by it) with `suffix`.
std::string copyKey(mlir::memref::GlobalOp global, llvm::StringRef suffix);

/// A copy of the constant f32 global `global` in `element` (bf16, rounded
/// as the runtime rounds, or f16), created once next to it and named with
/// the type as suffix; null when its value cannot be read.
mlir::memref::GlobalOp narrowedGlobalFor(mlir::memref::GlobalOp global,
                                         mlir::FloatType element, mlir::SymbolTable &symbols);

} // namespace hasten

#endif // HASTEN_PASSES_MATMULOPERANDS_H
