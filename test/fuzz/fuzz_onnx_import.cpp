//===- fuzz_onnx_import.cpp - libFuzzer target: the ONNX importer ---------===//
//
// Any bytes given as a model file end in an imported module that verifies
// or in a diagnostic; never in a crash, a hang or a sanitizer report. The
// model is written to a private folder, so external data may name only
// files there (none exist).
//
//===----------------------------------------------------------------------===//

#include "hasten/Import/OnnxImporter.h"

#include "mlir/IR/BuiltinOps.h"
#include "mlir/IR/Diagnostics.h"
#include "mlir/IR/MLIRContext.h"
#include "mlir/IR/Verifier.h"

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>
#include <unistd.h>

namespace {

std::string modelPath() {
  static std::string path = [] {
    char dir[] = "/tmp/hasten-fuzz-import-XXXXXX";
    if (!mkdtemp(dir))
      std::abort();
    return std::string(dir) + "/model.onnx";
  }();
  return path;
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  {
    std::ofstream out(modelPath(), std::ios::binary | std::ios::trunc);
    out.write(reinterpret_cast<const char *>(data), std::streamsize(size));
  }
  // A fresh context per input: nothing one input interns affects the next.
  mlir::MLIRContext context(mlir::MLIRContext::Threading::DISABLED);
  bool reported = false;
  mlir::ScopedDiagnosticHandler handler(&context, [&](mlir::Diagnostic &diag) {
    reported |= diag.getSeverity() == mlir::DiagnosticSeverity::Error;
    return mlir::success();
  });
  hasten::OnnxImportOptions options;
  auto module = hasten::importOnnxFile(modelPath(), context, options);
  if (mlir::failed(module)) {
    if (!reported) {
      std::fprintf(stderr, "import failed without an error\n");
      std::abort();
    }
    return 0;
  }
  if (mlir::failed(mlir::verify(module->get()))) {
    std::fprintf(stderr, "the imported module does not verify\n");
    std::abort();
  }
  return 0;
}
