//===- Passes.h - hasten passes ---------------------------------*- C++ -*-===//
//
// Declarations and registration of every pass in passes/Passes.td.
//
//===----------------------------------------------------------------------===//

#ifndef HASTEN_PASSES_PASSES_H
#define HASTEN_PASSES_PASSES_H

#include "mlir/Pass/Pass.h"

namespace hasten {

#define GEN_PASS_DECL
#include "hasten/Passes/Passes.h.inc"

#define GEN_PASS_REGISTRATION
#include "hasten/Passes/Passes.h.inc"

} // namespace hasten

#endif // HASTEN_PASSES_PASSES_H
