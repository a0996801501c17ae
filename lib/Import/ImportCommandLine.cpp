//===- ImportCommandLine.cpp - the import options the tools share ----------===//

#include "hasten/Import/ImportCommandLine.h"

using namespace llvm;

hasten::ImportCommandLine::ImportCommandLine(cl::OptionCategory &category)
    : noCheck("no-check", cl::desc("Skip the ONNX checker (shape inference still runs)"),
              cl::cat(category)),
      bindInputs("bind-input",
                 cl::desc("Fix a graph input at compile time: NAME=tensor.pb (repeatable)"),
                 cl::value_desc("NAME=PATH"), cl::cat(category)),
      bindDims("bind-dim",
               cl::desc("Fix a symbolic dimension before shape inference: NAME=SIZE, or "
                        "INPUT[AXIS]=SIZE for the dimension that input's axis has "
                        "(repeatable)"),
               cl::value_desc("NAME=SIZE"), cl::cat(category)),
      externalDataDirs("external-data-dir",
                       cl::desc("Also read external data from this folder (repeatable; by "
                                "default only the model's own folder)"),
                       cl::value_desc("DIR"), cl::cat(category)) {}

bool hasten::ImportCommandLine::apply(OnnxImportOptions &options, std::string &error) const {
  options.checkModel = !noCheck;
  options.externalDataDirs.assign(externalDataDirs.begin(), externalDataDirs.end());
  for (const std::string &binding : bindInputs)
    if (!addInputBinding(options, binding, error))
      return false;
  for (const std::string &binding : bindDims)
    if (!addDimBinding(options, binding, error))
      return false;
  return true;
}
