//===- HastenDialect.h - the hasten dialect ---------------------*- C++ -*-===//
//
// Include this header to use the hasten dialect, its types and its ops.
//
//===----------------------------------------------------------------------===//

#ifndef HASTEN_DIALECT_HASTEN_HASTENDIALECT_H
#define HASTEN_DIALECT_HASTEN_HASTENDIALECT_H

#include "mlir/Bytecode/BytecodeOpInterface.h"
#include "mlir/IR/BuiltinTypes.h"
#include "mlir/IR/Dialect.h"
#include "mlir/IR/OpDefinition.h"
#include "mlir/Interfaces/InferTypeOpInterface.h"
#include "mlir/Interfaces/SideEffectInterfaces.h"

#include "hasten/Dialect/Hasten/HastenEnums.h.inc"

#include "hasten/Dialect/Hasten/HastenDialect.h.inc"

#define GET_TYPEDEF_CLASSES
#include "hasten/Dialect/Hasten/HastenTypes.h.inc"

#define GET_OP_CLASSES
#include "hasten/Dialect/Hasten/HastenOps.h.inc"

#endif // HASTEN_DIALECT_HASTEN_HASTENDIALECT_H
