//===- CommandLine.cpp - what the hasten tools show in --help -------------===//

#include "hasten/Support/CommandLine.h"

#include "llvm/ADT/STLExtras.h"

using namespace llvm;

void hasten::hideForeignOptions(ArrayRef<const cl::OptionCategory *> keep) {
  for (auto &entry : cl::getRegisteredOptions()) {
    cl::Option *option = entry.second;
    bool ours = any_of(option->Categories, [&](const cl::OptionCategory *category) {
      return is_contained(keep, category) || category->getName() == "Generic Options";
    });
    if (!ours && option->getOptionHiddenFlag() == cl::NotHidden)
      option->setHiddenFlag(cl::Hidden);
  }
}
