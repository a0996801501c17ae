//===- CompileForTest.h - compile a model in process for a unit test ----*- C++ -*-===//

#ifndef HASTEN_TEST_UNIT_COMPILEFORTEST_H
#define HASTEN_TEST_UNIT_COMPILEFORTEST_H

#include "hasten/Compiler/Compiler.h"

#include "mlir/IR/Diagnostics.h"
#include "mlir/IR/MLIRContext.h"

#include <string>

namespace hasten::test {

/// Compiles `onnxPath` to the shared library `modulePath` with the
/// runtime of this build; returns the diagnostics, "" on success.
inline std::string compileForTest(const std::string &onnxPath, const std::string &modulePath,
                                  CompileOptions options = {}) {
  mlir::MLIRContext context;
  std::string diagnostics;
  mlir::ScopedDiagnosticHandler handler(&context, [&](mlir::Diagnostic &d) {
    diagnostics += d.str() + "\n";
    return mlir::success();
  });
  options.cpu.runtimeLibraryDir = HASTEN_RUNTIME_DIR;
  if (failed(compileOnnxFile(onnxPath, modulePath, options, context)) && diagnostics.empty())
    diagnostics = "compilation failed without a diagnostic";
  return diagnostics;
}

} // namespace hasten::test

#endif // HASTEN_TEST_UNIT_COMPILEFORTEST_H
