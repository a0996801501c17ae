//===- HastenDialect.cpp - hasten dialect registration ---------------------===//

#include "hasten/Dialect/Hasten/HastenDialect.h"

#include "mlir/IR/Builders.h"
#include "mlir/IR/DialectImplementation.h"
#include "llvm/ADT/TypeSwitch.h"

using namespace mlir;
using namespace hasten;

#include "hasten/Dialect/Hasten/HastenDialect.cpp.inc"
#include "hasten/Dialect/Hasten/HastenEnums.cpp.inc"

#define GET_TYPEDEF_CLASSES
#include "hasten/Dialect/Hasten/HastenTypes.cpp.inc"

void HastenDialect::initialize() {
  addTypes<
#define GET_TYPEDEF_LIST
#include "hasten/Dialect/Hasten/HastenTypes.cpp.inc"
      >();
  addOperations<
#define GET_OP_LIST
#include "hasten/Dialect/Hasten/HastenOps.cpp.inc"
      >();
}
