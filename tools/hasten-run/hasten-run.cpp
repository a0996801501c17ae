//===- hasten-run.cpp - run an entry point of a compiled module ------------===//
//
// hasten-run model.so --input x=x.npy [--entry NAME] [--output-dir DIR]
//            [--output-format=npy|pb] [--repeat N]
//
// Uses only the runtime C API (and tensor file I/O).
//
//===----------------------------------------------------------------------===//

#include "hasten/TensorIO.h"
#include "hasten/runtime.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <string>
#include <sys/stat.h>
#include <vector>

namespace {

void usage() {
  std::fprintf(stderr,
               "usage: hasten-run MODULE.so [--entry NAME] [--input NAME=PATH]... "
               "[--output-dir DIR] [--output-format=npy|pb] [--repeat N] [--warmup N] [--signature]\n"
               "  PATH is a .npy file or an ONNX TensorProto .pb file (by extension).\n");
}

int die(const std::string &message) {
  std::fprintf(stderr, "hasten-run: error: %s\n", message.c_str());
  return 1;
}

std::string describe(const hasten_module *m, const char *entry, int isOutput, size_t i) {
  int64_t dims[16];
  int rank = hasten_signature_dims(m, entry, isOutput, i, dims, 16);
  std::string s = std::string(hasten_signature_name(m, entry, isOutput, i)) + ": " +
                  hasten_dtype_name(hasten_signature_dtype(m, entry, isOutput, i)) + "[";
  for (int d = 0; d < rank; ++d) {
    s += d ? ", " : "";
    const char *name = hasten_signature_dim_name(m, entry, isOutput, i, d);
    s += dims[d] >= 0 ? std::to_string(dims[d]) : (*name ? name : "?");
  }
  return s + "]";
}

} // namespace

int main(int argc, char **argv) {
  std::string modulePath, entryName, outputDir, outputFormat = "npy";
  std::map<std::string, std::string> inputFiles;
  int repeat = 1, warmup = 0;
  bool signatureOnly = false;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    auto value = [&](const std::string &flag) -> const char * {
      if (arg.rfind(flag + "=", 0) == 0)
        return argv[i] + flag.size() + 1;
      if (arg == flag && i + 1 < argc)
        return argv[++i];
      return nullptr;
    };
    if (const char *v = value("--entry")) {
      entryName = v;
    } else if (const char *v = value("--input")) {
      std::string binding = v;
      size_t eq = binding.find('=');
      if (eq == std::string::npos || eq == 0)
        return die("--input expects NAME=PATH, got '" + binding + "'");
      inputFiles[binding.substr(0, eq)] = binding.substr(eq + 1);
    } else if (const char *v = value("--output-dir")) {
      outputDir = v;
    } else if (const char *v = value("--output-format")) {
      outputFormat = v;
      if (outputFormat != "npy" && outputFormat != "pb")
        return die("--output-format must be npy or pb");
    } else if (const char *v = value("--repeat")) {
      repeat = std::atoi(v);
      if (repeat < 1)
        return die("--repeat must be at least 1");
    } else if (const char *v = value("--warmup")) {
      warmup = std::atoi(v);
      if (warmup < 0)
        return die("--warmup must not be negative");
    } else if (arg == "--signature") {
      signatureOnly = true;
    } else if (arg == "-h" || arg == "--help") {
      usage();
      return 0;
    } else if (arg.rfind("-", 0) == 0) {
      usage();
      return die("unknown option '" + arg + "'");
    } else if (modulePath.empty()) {
      modulePath = arg;
    } else {
      usage();
      return die("more than one module given");
    }
  }
  if (modulePath.empty()) {
    usage();
    return die("no module given");
  }

  hasten_module *module = nullptr;
  if (hasten_module_load(modulePath.c_str(), &module) != HASTEN_OK)
    return die(hasten_last_error());
  if (entryName.empty()) {
    if (hasten_module_num_entries(module) != 1)
      return die("the module has several entries; choose one with --entry");
    entryName = hasten_module_entry_name(module, 0);
  }
  const char *entry = entryName.c_str();
  size_t numInputs = 0, numOutputs = 0;
  if (hasten_entry_num_tensors(module, entry, 0, &numInputs) != HASTEN_OK ||
      hasten_entry_num_tensors(module, entry, 1, &numOutputs) != HASTEN_OK)
    return die(hasten_last_error());
  if (signatureOnly) {
    std::printf("entry %s (%s, %s)\n", entry, hasten_module_compiler_version(module),
                hasten_module_target(module));
    std::printf("  weights: %zu tensors, %.3f MB\n", hasten_module_num_weights(module),
                hasten_module_weight_bytes(module) / 1e6);
    std::printf("  cpu: %s, requires: %s\n", hasten_module_cpu(module),
                *hasten_module_cpu_features(module) ? hasten_module_cpu_features(module)
                                                    : "(nothing beyond the base ISA)");
    for (size_t i = 0; i < numInputs; ++i)
      std::printf("  input  %s\n", describe(module, entry, 0, i).c_str());
    for (size_t i = 0; i < numOutputs; ++i)
      std::printf("  output %s\n", describe(module, entry, 1, i).c_str());
    hasten_module_free(module);
    return 0;
  }

  std::vector<hasten_tensor *> inputs(numInputs, nullptr);
  for (size_t i = 0; i < numInputs; ++i) {
    std::string name = hasten_signature_name(module, entry, 0, i);
    auto it = inputFiles.find(name);
    if (it == inputFiles.end())
      return die("missing input '" + name + "' (" + describe(module, entry, 0, i) +
                 "); pass --input " + name + "=FILE");
    std::string error;
    inputs[i] = hasten::readTensorFile(it->second, error);
    if (!inputs[i])
      return die(error);
    inputFiles.erase(it);
    // numpy has no bfloat16: ONNX test data stores it as uint16 bits.
    if (hasten_signature_dtype(module, entry, 0, i) == HASTEN_BF16 &&
        hasten_tensor_dtype(inputs[i]) == HASTEN_U16) {
      hasten_tensor *bits = inputs[i];
      hasten_tensor *asBf16 = nullptr;
      if (hasten_tensor_create(HASTEN_BF16, hasten_tensor_rank(bits), hasten_tensor_dims(bits),
                               &asBf16) != HASTEN_OK)
        return die(hasten_last_error());
      std::memcpy(hasten_tensor_data(asBf16), hasten_tensor_data(bits),
                  hasten_tensor_size_bytes(bits));
      hasten_tensor_free(bits);
      inputs[i] = asBf16;
    }
  }
  if (!inputFiles.empty())
    return die("entry '" + entryName + "' has no input named '" + inputFiles.begin()->first +
               "'");

  std::vector<hasten_tensor *> outputs(numOutputs, nullptr);
  std::vector<double> latencies;
  // Warm-up runs (weight packing, caches) are not timed.
  for (int r = 0; r < warmup + repeat; ++r) {
    for (hasten_tensor *&t : outputs) {
      hasten_tensor_free(t);
      t = nullptr;
    }
    auto start = std::chrono::steady_clock::now();
    if (hasten_run(module, entry, inputs.data(), numInputs, outputs.data(), numOutputs) !=
        HASTEN_OK)
      return die(hasten_last_error());
    if (r >= warmup)
      latencies.push_back(
          std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start)
              .count());
  }

  for (size_t o = 0; o < numOutputs; ++o) {
    std::string name = hasten_signature_name(module, entry, 1, o);
    hasten_tensor *t = outputs[o];
    std::string shape;
    for (int d = 0; d < hasten_tensor_rank(t); ++d)
      shape += (d ? "x" : "") + std::to_string(hasten_tensor_dims(t)[d]);
    std::printf("output %s: %s[%s]\n", name.c_str(), hasten_dtype_name(hasten_tensor_dtype(t)),
                shape.c_str());
    if (!outputDir.empty()) {
      mkdir(outputDir.c_str(), 0755);
      std::string safe = name;
      for (char &c : safe)
        if (c == '/' || c == '\\')
          c = '_';
      std::string path = outputDir + "/" + safe + "." + outputFormat;
      std::string error;
      if (!hasten::writeTensorFile(path, t, name, error))
        return die(error);
    }
  }
  if (repeat > 1) {
    std::vector<double> sorted = latencies;
    std::sort(sorted.begin(), sorted.end());
    auto pct = [&](double p) { return sorted[(size_t)(p * (sorted.size() - 1) + 0.5)]; };
    double mean = 0;
    for (double l : latencies)
      mean += l;
    mean /= latencies.size();
    std::printf("latency over %d runs: p50 %.3f ms, p90 %.3f ms, p99 %.3f ms, min %.3f ms, "
                "mean %.3f ms\n",
                repeat, pct(0.5), pct(0.9), pct(0.99), sorted.front(), mean);
  } else {
    std::printf("latency: %.3f ms\n", latencies[0]);
  }
  for (hasten_tensor *t : inputs)
    hasten_tensor_free(t);
  for (hasten_tensor *t : outputs)
    hasten_tensor_free(t);
  hasten_module_free(module);
  return 0;
}
