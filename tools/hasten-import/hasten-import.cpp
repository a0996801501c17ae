//===- hasten-import.cpp - ONNX to MLIR ------------------------------------===//
//
// hasten-import model.onnx -o model.mlir
//
// Imports an ONNX model with the hasten import library and prints the MLIR.
//
//===----------------------------------------------------------------------===//

#include "hasten/Import/ImportCommandLine.h"
#include "hasten/Import/OnnxImporter.h"

#include "mlir/Bytecode/BytecodeWriter.h"
#include "mlir/IR/AsmState.h"
#include "mlir/IR/BuiltinOps.h"
#include "mlir/Pass/PassManager.h"
#include "mlir/Support/FileUtilities.h"
#include "mlir/Transforms/Passes.h"
#include "mlir/IR/Diagnostics.h"
#include "mlir/IR/MLIRContext.h"
#include "mlir/IR/OperationSupport.h"
#include "hasten/Support/CommandLine.h"
#include "hasten/Support/Version.h"
#include "llvm/Support/CommandLine.h"
#include "llvm/Support/FileSystem.h"
#include "llvm/Support/InitLLVM.h"
#include "llvm/Support/Timer.h"
#include "llvm/Support/ToolOutputFile.h"
#include "llvm/Support/raw_ostream.h"

#include <chrono>
#include <map>

using namespace llvm;

static cl::OptionCategory toolCategory("hasten-import options");
static hasten::ImportCommandLine importOptions(toolCategory);

static cl::opt<std::string> inputPath(cl::cat(toolCategory), cl::Positional, cl::desc("<model.onnx>"),
                                      cl::Required);
static cl::opt<std::string> outputPath(cl::cat(toolCategory), "o", cl::desc("Output file ('-' for stdout)"),
                                       cl::value_desc("file"), cl::init("-"));
static cl::opt<std::string> entryName(cl::cat(toolCategory), "entry", cl::desc("Name of the imported function"),
                                      cl::init("main"));
static cl::opt<int64_t> elideLarger(cl::cat(toolCategory), 
    "elide-weights-larger",
    cl::desc("Print resource blobs larger than this many bytes as a placeholder "
             "(0 prints everything)"),
    cl::init(0));
static cl::opt<bool> noCleanup(cl::cat(toolCategory), 
    "no-cleanup",
    cl::desc("Print the importer's raw output, without canonicalize and CSE"));
static cl::opt<bool> listOps(cl::cat(toolCategory), "list-ops", cl::desc("Print the supported ONNX ops and exit"));
static cl::opt<bool> printStats(cl::cat(toolCategory), "import-stats",
                                cl::desc("Print import time and op counts to stderr"));
static cl::opt<bool> emitBytecode(cl::cat(toolCategory), "emit-bytecode",
                                  cl::desc("Write MLIR bytecode instead of text"));

int main(int argc, char **argv) {
  InitLLVM init(argc, argv);
  hasten::installVersionPrinter("hasten-import");
  hasten::hideForeignOptions({&toolCategory});
  // --list-ops needs no model; make the positional optional for it.
  for (int i = 1; i < argc; ++i)
    if (StringRef(argv[i]) == "--list-ops" || StringRef(argv[i]) == "-list-ops") {
      for (const std::string &op : hasten::getSupportedOnnxOps())
        outs() << op << "\n";
      return 0;
    }
  cl::ParseCommandLineOptions(argc, argv, "hasten ONNX importer\n");

  mlir::MLIRContext context;
  // Print diagnostics as "error: message", the file and node are in the text.
  mlir::ScopedDiagnosticHandler handler(&context, [](mlir::Diagnostic &diag) {
    errs() << "hasten-import: ";
    switch (diag.getSeverity()) {
    case mlir::DiagnosticSeverity::Error:
      errs() << "error: ";
      break;
    case mlir::DiagnosticSeverity::Warning:
      errs() << "warning: ";
      break;
    default:
      errs() << "note: ";
      break;
    }
    errs() << diag.str() << "\n";
    return mlir::success();
  });

  hasten::OnnxImportOptions options;
  options.entryName = entryName;
  if (std::string error; !importOptions.apply(options, error)) {
    errs() << "hasten-import: error: " << error << "\n";
    return 1;
  }
  auto start = std::chrono::steady_clock::now();
  auto module = hasten::importOnnxFile(inputPath, context, options);
  auto stop = std::chrono::steady_clock::now();
  if (failed(module))
    return 1;

  auto cleanupStart = std::chrono::steady_clock::now();
  if (!noCleanup) {
    // Deduplicate the constants and fold what the per-node folding left.
    mlir::PassManager pm(&context);
    pm.addPass(mlir::createCanonicalizerPass());
    pm.addPass(mlir::createCSEPass());
    if (failed(pm.run(module->get())))
      return 1;
  }

  auto cleanupStop = std::chrono::steady_clock::now();
  auto seconds = [](auto from, auto to) {
    return std::chrono::duration<double>(to - from).count();
  };

  if (printStats) {
    std::map<std::string, int> counts;
    (*module)->walk([&](mlir::Operation *op) {
      ++counts[op->getName().getStringRef().str()];
    });
    errs() << "imported " << inputPath << ": import " << seconds(start, stop)
           << " s, cleanup " << seconds(cleanupStart, cleanupStop) << " s\n";
    for (auto &[name, count] : counts)
      errs() << "  " << count << "  " << name << "\n";
  }

  std::string error;
  auto output = mlir::openOutputFile(outputPath, &error);
  if (!output) {
    errs() << "hasten-import: error: " << error << "\n";
    return 1;
  }
  if (emitBytecode) {
    if (failed(mlir::writeBytecodeToFile(module->get(), output->os()))) {
      errs() << "hasten-import: error: cannot write bytecode\n";
      return 1;
    }
  } else {
    mlir::OpPrintingFlags flags;
    if (elideLarger > 0)
      flags.elideLargeResourceString(elideLarger);
    module->get()->print(output->os(), flags);
  }
  output->keep();
  if (printStats)
    errs() << "printed in " << seconds(cleanupStop, std::chrono::steady_clock::now())
           << " s\n";
  return 0;
}
