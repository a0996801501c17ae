//===- ImportCommandLine.h - the import options the tools share -*- C++ -*-===//
//
// hasten-import and hasten-compile take the same ONNX import options; this
// defines them once, in the tool's option category, and applies them.
//
//===----------------------------------------------------------------------===//

#ifndef HASTEN_IMPORT_IMPORTCOMMANDLINE_H
#define HASTEN_IMPORT_IMPORTCOMMANDLINE_H

#include "hasten/Import/OnnxImporter.h"

#include "llvm/Support/CommandLine.h"

#include <string>

namespace hasten {

struct ImportCommandLine {
  explicit ImportCommandLine(llvm::cl::OptionCategory &category);

  /// Copies the options given into `options`; false, with `error` set, for a
  /// --bind-input or --bind-dim that is malformed.
  bool apply(OnnxImportOptions &options, std::string &error) const;

  llvm::cl::opt<bool> noCheck;
  llvm::cl::list<std::string> bindInputs;
  llvm::cl::list<std::string> bindDims;
  llvm::cl::list<std::string> externalDataDirs;
};

} // namespace hasten

#endif // HASTEN_IMPORT_IMPORTCOMMANDLINE_H
