//===- hasten/runtime.hpp - C++ RAII wrapper over the runtime C API --------===//
//
// Header-only: owns modules and tensors, turns status codes into
// hasten::Error values. No exceptions are thrown; failures come back as
// std::optional/empty results plus the error message.
//
//   hasten::Module model;
//   std::string error;
//   if (!model.load("model.so", &error)) { ... }
//   hasten::Tensor x = hasten::Tensor::create(HASTEN_F32, {1, 8});
//   std::vector<hasten::Tensor> outputs;
//   if (!model.run("main", {&x}, outputs, &error)) { ... }
//
//===----------------------------------------------------------------------===//

#ifndef HASTEN_RUNTIME_HPP
#define HASTEN_RUNTIME_HPP

#include "hasten/runtime.h"

#include <initializer_list>
#include <string>
#include <utility>
#include <vector>

namespace hasten {

/// An owned hasten_tensor, released on destruction.
class Tensor {
public:
  Tensor() = default;
  explicit Tensor(hasten_tensor *tensor) : tensor_(tensor) {}
  Tensor(Tensor &&other) noexcept : tensor_(std::exchange(other.tensor_, nullptr)) {}
  Tensor &operator=(Tensor &&other) noexcept {
    std::swap(tensor_, other.tensor_);
    return *this;
  }
  Tensor(const Tensor &) = delete;
  Tensor &operator=(const Tensor &) = delete;
  ~Tensor() { hasten_tensor_free(tensor_); }

  /// Zero-initialized owned memory; an empty Tensor on failure.
  static Tensor create(hasten_dtype dtype, const std::vector<int64_t> &dims) {
    hasten_tensor *t = nullptr;
    hasten_tensor_create(dtype, (int)dims.size(), dims.data(), &t);
    return Tensor(t);
  }
  /// Borrows `data`, which must outlive the tensor.
  static Tensor wrap(hasten_dtype dtype, const std::vector<int64_t> &dims, void *data) {
    hasten_tensor *t = nullptr;
    hasten_tensor_wrap(dtype, (int)dims.size(), dims.data(), data, &t);
    return Tensor(t);
  }

  explicit operator bool() const { return tensor_ != nullptr; }
  hasten_tensor *get() const { return tensor_; }
  hasten_dtype dtype() const { return hasten_tensor_dtype(tensor_); }
  std::vector<int64_t> dims() const {
    const int64_t *d = hasten_tensor_dims(tensor_);
    return std::vector<int64_t>(d, d + hasten_tensor_rank(tensor_));
  }
  size_t numElements() const { return hasten_tensor_num_elements(tensor_); }
  template <typename T> T *data() const { return static_cast<T *>(hasten_tensor_data(tensor_)); }

private:
  hasten_tensor *tensor_ = nullptr;
};

/// A loaded module. Safe to run from several threads at once.
class Module {
public:
  Module() = default;
  Module(Module &&other) noexcept : module_(std::exchange(other.module_, nullptr)) {}
  Module &operator=(Module &&other) noexcept {
    std::swap(module_, other.module_);
    return *this;
  }
  Module(const Module &) = delete;
  Module &operator=(const Module &) = delete;
  ~Module() { hasten_module_free(module_); }

  bool load(const std::string &path, std::string *error = nullptr) {
    hasten_module_free(module_);
    module_ = nullptr;
    if (hasten_module_load(path.c_str(), &module_) == HASTEN_OK)
      return true;
    if (error)
      *error = hasten_last_error();
    return false;
  }

  explicit operator bool() const { return module_ != nullptr; }
  hasten_module *get() const { return module_; }

  std::vector<std::string> entries() const {
    std::vector<std::string> names;
    for (size_t i = 0; i < hasten_module_num_entries(module_); ++i)
      names.push_back(hasten_module_entry_name(module_, i));
    return names;
  }

  /// Runs `entry` on `inputs`; fills `outputs` with owned tensors.
  bool run(const std::string &entry, std::initializer_list<const Tensor *> inputs,
           std::vector<Tensor> &outputs, std::string *error = nullptr) {
    std::vector<hasten_tensor *> in;
    for (const Tensor *t : inputs)
      in.push_back(t ? t->get() : nullptr);
    return run(entry, in, outputs, error);
  }
  bool run(const std::string &entry, const std::vector<hasten_tensor *> &inputs,
           std::vector<Tensor> &outputs, std::string *error = nullptr) {
    size_t count = 0;
    if (hasten_entry_num_tensors(module_, entry.c_str(), 1, &count) != HASTEN_OK) {
      if (error)
        *error = hasten_last_error();
      return false;
    }
    std::vector<hasten_tensor *> out(count, nullptr);
    if (hasten_run(module_, entry.c_str(), inputs.data(), inputs.size(), out.data(),
                   out.size()) != HASTEN_OK) {
      if (error)
        *error = hasten_last_error();
      return false;
    }
    outputs.clear();
    for (hasten_tensor *t : out)
      outputs.emplace_back(t);
    return true;
  }

private:
  hasten_module *module_ = nullptr;
};

} // namespace hasten

#endif // HASTEN_RUNTIME_HPP
