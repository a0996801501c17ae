//===- hasten-opt.cpp - the hasten optimizer driver ------------------------===//
//
// mlir-opt with the hasten dialect and passes registered next to every
// upstream dialect and pass.
//
//===----------------------------------------------------------------------===//

#include "hasten/Pipelines/Pipelines.h"
#include "hasten/Dialect/Hasten/HastenDialect.h"
#include "hasten/Passes/Passes.h"
#include "hasten/Support/CommandLine.h"
#include "hasten/Support/Version.h"

#include "mlir/IR/DialectRegistry.h"
#include "mlir/InitAllDialects.h"
#include "mlir/InitAllExtensions.h"
#include "mlir/InitAllPasses.h"
#include "mlir/Target/LLVMIR/Dialect/All.h"
#include "mlir/Tools/mlir-opt/MlirOptMain.h"

int main(int argc, char **argv) {
  // LLVM's backend flags go behind --help-hidden; mlir-opt's own options and
  // the pass list are registered later, inside MlirOptMain, and stay shown.
  hasten::hideForeignOptions();
  hasten::installVersionPrinter("hasten-opt");
  mlir::registerAllPasses();
  hasten::registerHastenPasses();
  hasten::registerHastenPipelines();

  mlir::DialectRegistry registry;
  mlir::registerAllDialects(registry);
  mlir::registerAllExtensions(registry);
  registry.insert<hasten::HastenDialect>();
  hasten::registerGpuKernelInterfaces(registry);
  hasten::registerGpuGemmToLLVM(registry);
  // gpu-module-to-binary translates kernels to LLVM IR inside the pipeline.
  mlir::registerAllToLLVMIRTranslations(registry);

  return mlir::asMainReturnCode(mlir::MlirOptMain(
      argc, argv, "hasten optimizer driver\n", registry));
}
