//===- Target.cpp - a code generation target -------------------------------===//

#include "hasten/Target/Target.h"

using namespace mlir;

hasten::Target::~Target() = default;

LogicalResult hasten::Target::checkTensorLevel(ModuleOp) const { return success(); }
