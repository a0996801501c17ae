//===- HastenDialect.h - the hasten dialect ---------------------*- C++ -*-===//
//
// Include this header to use the hasten dialect, its types and its ops.
//
//===----------------------------------------------------------------------===//

#ifndef HASTEN_DIALECT_HASTEN_HASTENDIALECT_H
#define HASTEN_DIALECT_HASTEN_HASTENDIALECT_H

#include "mlir/Bytecode/BytecodeOpInterface.h"
#include "mlir/Dialect/GPU/IR/GPUDialect.h"
#include "mlir/IR/BuiltinTypes.h"
#include "mlir/IR/Dialect.h"
#include "mlir/IR/OpDefinition.h"
#include "mlir/Interfaces/InferTypeOpInterface.h"
#include "mlir/Interfaces/SideEffectInterfaces.h"
#include "mlir/IR/SymbolTable.h"

#include "hasten/Dialect/Hasten/HastenEnums.h.inc"

#include "hasten/Dialect/Hasten/HastenDialect.h.inc"

#define GET_TYPEDEF_CLASSES
#include "hasten/Dialect/Hasten/HastenTypes.h.inc"

#define GET_ATTRDEF_CLASSES
#include "hasten/Dialect/Hasten/HastenAttrs.h.inc"

#define GET_OP_CLASSES
#include "hasten/Dialect/Hasten/HastenOps.h.inc"

namespace hasten {

/// `operands` with every tensor.cast that only drops static shape information
/// replaced by its source, or std::nullopt when there is no such cast: what
/// the patterns folding those casts into type-inferring ops (hasten.attention,
/// tensor.concat in --hasten-decoder-entries) rebuild the op from.
std::optional<llvm::SmallVector<mlir::Value>> sourcesOfFoldableCasts(mlir::ValueRange operands);

} // namespace hasten

#endif // HASTEN_DIALECT_HASTEN_HASTENDIALECT_H
