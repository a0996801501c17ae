//===- OnnxImporter.h - ONNX to MLIR import ---------------------*- C++ -*-===//
//
// Imports an ONNX model into a module of upstream ops (linalg named ops,
// tensor, arith, math) and hasten ops, keeping symbolic dimensions dynamic.
// Used by hasten-import and by the compiler driver.
//
//===----------------------------------------------------------------------===//

#ifndef HASTEN_IMPORT_ONNXIMPORTER_H
#define HASTEN_IMPORT_ONNXIMPORTER_H

#include "mlir/IR/BuiltinOps.h"
#include "mlir/IR/OwningOpRef.h"
#include "mlir/Support/LLVM.h"

#include <map>
#include <string>
#include <vector>

namespace mlir {
class DialectRegistry;
class MLIRContext;
class Type;
} // namespace mlir

namespace hasten {

struct OnnxImportOptions {
  /// Name of the function the graph becomes.
  std::string entryName = "main";
  /// Run onnx::checker on the model before importing it.
  bool checkModel = true;
  /// Run ONNX shape inference to type intermediate values.
  bool inferShapes = true;
  /// Initializers with at most this many elements become inline dense
  /// constants (readable, foldable); larger ones become resource blobs.
  int64_t inlineConstantLimit = 64;
  /// Graph inputs fixed at compile time: input name -> path of a serialized
  /// TensorProto (.pb). They become constants instead of function arguments,
  /// which lets shape-like inputs (Reshape shapes, Slice axes, Resize scales)
  /// fold.
  std::map<std::string, std::string> boundInputs;
  /// Symbolic dimensions fixed at compile time, before shape inference:
  /// either a dimension name (`batch`) or one input's axis (`sample[0]`),
  /// which fixes that axis's name everywhere it appears. A static axis must
  /// already have the size given.
  std::map<std::string, int64_t> dimBindings;
  /// External data is read only from regular files inside the model's own
  /// folder (relative locations, no "..", symlinks resolved) or inside one
  /// of these folders, given explicitly.
  std::vector<std::string> externalDataDirs;
};

/// Adds a `NAME=PATH` binding (the tools' --bind-input) to
/// `options.boundInputs`. Returns false, with `error` set, when the text is
/// not of that form.
bool addInputBinding(OnnxImportOptions &options, llvm::StringRef binding,
                     std::string &error);

/// Adds a `NAME=SIZE` or `INPUT[AXIS]=SIZE` binding (the tools'
/// --bind-dim) to `options.dimBindings`. Returns false, with `error` set,
/// when the text is not of that form.
bool addDimBinding(OnnxImportOptions &options, llvm::StringRef binding, std::string &error);

/// Registers every dialect an imported module may contain.
void registerOnnxImportDialects(mlir::DialectRegistry &registry);

/// Imports the ONNX model at `path`. External data files are resolved next to
/// it. On failure, errors naming the file and the offending node have been
/// emitted through the context's diagnostic engine.
mlir::FailureOr<mlir::OwningOpRef<mlir::ModuleOp>>
importOnnxFile(llvm::StringRef path, mlir::MLIRContext &context,
               const OnnxImportOptions &options = {});

/// The ONNX op types (default domain) the importer can convert.
std::vector<std::string> getSupportedOnnxOps();

/// The ONNX TensorProto data type of an MLIR element type, as
/// `hasten.onnx_elem_type` records it (integers are signed unless
/// `isUnsigned`).
int32_t onnxElementType(mlir::Type element, bool isUnsigned = false);

} // namespace hasten

#endif // HASTEN_IMPORT_ONNXIMPORTER_H
