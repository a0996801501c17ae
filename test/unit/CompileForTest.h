//===- CompileForTest.h - compile a model in process for a unit test ----*- C++ -*-===//

#ifndef HASTEN_TEST_UNIT_COMPILEFORTEST_H
#define HASTEN_TEST_UNIT_COMPILEFORTEST_H

#include "hasten/Compiler/Compiler.h"

#include "mlir/IR/Diagnostics.h"
#include "mlir/IR/MLIRContext.h"

#include "llvm/Support/Program.h"

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

/// Writes test/models/make_decoder.py's `preset` decoder (random weights,
/// deterministic) to `onnxPath` with the system's python3; false if that
/// failed.
inline bool makeTestDecoder(const std::string &preset, const std::string &onnxPath) {
  auto python = llvm::sys::findProgramByName("python3", {"/usr/bin"});
  if (!python)
    return false;
  llvm::StringRef args[] = {*python, HASTEN_SOURCE_DIR "/test/models/make_decoder.py",
                            "--preset", preset, "-o", onnxPath};
  std::optional<llvm::StringRef> quiet[] = {std::nullopt, llvm::StringRef(""),
                                            llvm::StringRef("")};
  return llvm::sys::ExecuteAndWait(*python, args, std::nullopt, quiet) == 0;
}

} // namespace hasten::test

#endif // HASTEN_TEST_UNIT_COMPILEFORTEST_H
