//===- CommandLine.h - what the hasten tools show in --help ----*- C++ -*-===//
//
// libMLIR.so brings every LLVM backend's command-line flags with it (AMDGPU,
// AArch64, ...: hundreds of lines of --help). The tools show their own
// options and keep the rest one --help-hidden away.
//
//===----------------------------------------------------------------------===//

#ifndef HASTEN_SUPPORT_COMMANDLINE_H
#define HASTEN_SUPPORT_COMMANDLINE_H

#include "llvm/ADT/ArrayRef.h"
#include "llvm/Support/CommandLine.h"

namespace hasten {

/// Marks cl::Hidden every option registered so far that is in none of
/// `keep` and not one of LLVM's generic options (--help, --version). Call it
/// first in main: options registered afterwards (MLIR's pass-manager and
/// mlir-opt options) stay visible.
void hideForeignOptions(llvm::ArrayRef<const llvm::cl::OptionCategory *> keep = {});

} // namespace hasten

#endif // HASTEN_SUPPORT_COMMANDLINE_H
