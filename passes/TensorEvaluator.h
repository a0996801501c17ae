//===- TensorEvaluator.h - compile-time evaluation of small tensor ops -*- C++ -*-===//
//
// Evaluates static-shaped tensor ops whose operands are all known (linalg
// structured ops through their indexing maps and scalar bodies, reshapes,
// slices, concatenation, constants), so that a pass can replace a value
// that depends only on constants by the constant itself. The sampler
// fusion folds each step's timestep-only subgraph (time embeddings, time
// MLPs, adaLN modulation) with it. Arithmetic is in double and rounded to
// the element type once, at the end.
//
//===----------------------------------------------------------------------===//

#ifndef HASTEN_PASSES_TENSOREVALUATOR_H
#define HASTEN_PASSES_TENSOREVALUATOR_H

#include "mlir/IR/BuiltinAttributes.h"
#include "mlir/IR/BuiltinTypes.h"
#include "mlir/IR/Operation.h"
#include "llvm/ADT/DenseMap.h"

#include <cstdint>
#include <optional>
#include <vector>

namespace hasten {

/// A tensor value known at compile time: row-major elements as doubles
/// (integers and booleans are exact up to 2^53).
struct KnownTensor {
  mlir::RankedTensorType type;
  std::vector<double> elements;
};

/// Values known so far, by SSA value.
class TensorEvaluator {
public:
  /// Evaluation refuses ops whose loops would visit more than this many
  /// points (a guard against folding a weight-sized product per step).
  explicit TensorEvaluator(int64_t maxPoints = int64_t(1) << 24) : maxPoints(maxPoints) {}

  /// Records a known value.
  void set(mlir::Value value, KnownTensor tensor) { known[value] = std::move(tensor); }
  const KnownTensor *lookup(mlir::Value value) const;

  /// Reads a constant's value (dense or resource elements); nullopt for
  /// other attributes or element types it cannot read.
  static std::optional<KnownTensor> fromAttribute(mlir::Attribute attr);

  /// Evaluates `op` when every operand it reads is known and it is an op
  /// the evaluator handles; records its results and returns true.
  bool evaluate(mlir::Operation *op);

  /// The value as an attribute of its type.
  static mlir::DenseElementsAttr toAttribute(const KnownTensor &tensor);

private:
  bool evaluateLinalg(mlir::Operation *op);
  int64_t maxPoints;
  llvm::DenseMap<mlir::Value, KnownTensor> known;
};

} // namespace hasten

#endif // HASTEN_PASSES_TENSOREVALUATOR_H
